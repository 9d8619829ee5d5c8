"""Geometry sanity of a run for Alt/Az-aligned models (a pure check, run inside each run's task).

:func:`check_run_geometry` rejects, for ALTAZ builds only, a run whose pointing computed at
mid-run from the site keywords is below the horizon or disagrees with the store's altitude by
more than a tolerance (CTA 1DC's site keywords are not physical); :func:`geometry_advice` turns
the rejections into one message with the fix (docs/architecture.rst).
"""

from __future__ import annotations

import numpy as np

from xbkg.core.defaults import DEFAULTS
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.sky import fov
from xbkg.sky.earth import run_altaz_params
from xbkg.store.events import RunDataError, describe_run

__all__ = ["DEFAULT_ALTITUDE_TOLERANCE", "GEOMETRY_PROBLEM", "pointing_altitude",
           "check_run_geometry", "geometry_advice"]

#: Degrees: largest accepted difference between the pointing altitude computed at mid-run and
#: the store's. H.E.S.S. DR1 index altitudes differ from the run mean by -1.93..+0.71 deg, and a
#: pointing moves by up to ~4 deg in altitude in half a 28-min run: 10 deg leaves room for both.
DEFAULT_ALTITUDE_TOLERANCE = DEFAULTS.altitude_tolerance

#: Text that starts every rejection reason of :func:`check_run_geometry`.
GEOMETRY_PROBLEM = "Alt/Az geometry"


def pointing_altitude(info: RunInfo) -> float:
    """Altitude (deg) of the pointing at mid-run, from time, site and RA/Dec (no refraction).

    Uses ``info.altaz_params`` when present (:func:`xbkg.sky.fov.altaz_run_params`), else
    computes them from the run parameters (``ra_pnt``, ``dec_pnt``, ``geolon``, ``geolat``,
    ``altitude``, ``mjdrefi``, ``mjdreff``, ``timesys``, ``tstart``, ``tstop``).
    """
    info = as_run_info(info)
    params = run_altaz_params(info)
    mid = np.array([0.5 * (info.tstart + info.tstop)])
    alt, _ = fov.pointing_altaz(mid, params)
    return float(np.ravel(alt)[0])


def check_run_geometry(info: RunInfo, tolerance: float = DEFAULT_ALTITUDE_TOLERANCE) -> float:
    """Raise :class:`~xbkg.store.events.RunDataError` if the run's Alt/Az geometry is not physical.

    ``info`` holds the run parameters completed from the EVENTS header
    (:func:`xbkg.store.events.complete_run_info`) and ``zenith`` (deg; NaN skips the comparison).
    Returns the computed mid-run altitude (deg).
    """
    info = as_run_info(info)
    alt = pointing_altitude(info)
    where = describe_run(info.obs_id, info.events_file, info.events_hdu)
    site = (f"site GEOLON {info.geolon:.4g}, GEOLAT {info.geolat:.4g} deg, "
            f"ALTITUDE {info.altitude:.4g} m")
    expected = 90.0 - float(info.zenith)
    if alt < 0:
        raise RunDataError(f"{where}: {GEOMETRY_PROBLEM}: the pointing computed from time, {site} "
                           f"and RA/Dec is below the horizon (altitude {alt:.1f} deg)")
    if np.isfinite(expected) and abs(alt - expected) > tolerance:
        raise RunDataError(f"{where}: {GEOMETRY_PROBLEM}: the pointing altitude computed from "
                           f"time, {site} and RA/Dec ({alt:.1f} deg) differs from the store's "
                           f"({expected:.1f} deg, 90 - zenith) by more than {tolerance:g} deg")
    return alt


def geometry_advice(reasons, n_runs: int) -> str | None:
    """One message when every one of ``n_runs`` runs failed the geometry check, else None.

    ``reasons`` are the rejection messages of a build (run -> message or a list of messages).
    """
    reasons = list(reasons.values()) if isinstance(reasons, dict) else list(reasons)
    bad = [r for r in reasons if GEOMETRY_PROBLEM in str(r)]
    if n_runs == 0 or len(bad) < n_runs:
        return None
    return (f"all {n_runs} runs fail the {GEOMETRY_PROBLEM} check: the store's site keywords "
            "(GEOLON, GEOLAT, ALTITUDE) or its Alt/Az values are not physical, so an Alt/Az-"
            "aligned model cannot be built; build a RADEC model (--fov-alignment radec, "
            "fov_alignment='radec') or give the site (--site LON,LAT,HEIGHT, site=(lon, lat, "
            f"height_m)). First run: {bad[0]}")
