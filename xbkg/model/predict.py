"""Expected background counts of a run: the model integrated over its energy and sky bins.

Kernels :func:`time_samples` and :func:`predict_at`; :func:`predict_counts` reads a run from a
store and predicts on a grid of FoV boxes around its pointing. Conventions follow gammapy's
``MapDatasetMaker.make_background`` (docs/architecture.rst).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.core.binning import axis_coords, edges_of
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.io.fitstable import read_header
from xbkg.model.evaluate import _fine_nodes, interpolate_grid, loglog_segment_integrals, model_grid
from xbkg.sky import fov
from xbkg.store.datastore import takes_store
from xbkg.store.events import complete_run_info, run_infos

__all__ = ["ENERGY_INTEGRATION", "time_samples", "predict_at", "predict_counts"]

ENERGY_INTEGRATION = ("exact", "edges")

_OMEGA_EARTH_DEG_S = 360.0 / 86164.0905


def time_samples(info: RunInfo, *, max_rotation: float = 0.25, params=None):
    """Sample times (s since MJDREF) over ``[tstart, tstart + ontime]`` and trapezoid weights.

    The field of view of an Alt/Az-aligned model rotates on the sky at
    ``omega = Omega_earth cos(lat) cos(az) / cos(alt)``; samples are spaced so that it turns by
    at most ``max_rotation`` deg between two of them (at least 2 samples).
    Weights sum to 1.
    """
    info = as_run_info(info)
    t0 = float(info.tstart)
    t1 = t0 + float(info.ontime)
    if params is None:
        params = _altaz_params(info)
    probe = np.linspace(t0, t1, 9)
    alt, az = fov.pointing_altaz(probe, params)
    omega = (_OMEGA_EARTH_DEG_S * np.cos(np.radians(info.geolat)) *
             np.abs(np.cos(np.radians(az))) / np.maximum(np.cos(np.radians(alt)), 1e-3))
    n = max(2, int(np.ceil((t1 - t0) * omega.max() / max_rotation)) + 1)
    times = np.linspace(t0, t1, n)
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] *= 0.5
    return times, weights


def _altaz_params(info: RunInfo):
    return fov.altaz_run_params(
        info.ra_pnt, info.dec_pnt, geolon=info.geolon, geolat=info.geolat,
        altitude=info.altitude, mjdrefi=info.mjdrefi, mjdreff=info.mjdreff,
        timesys=info.timesys, tstart=info.tstart, tstop=info.tstop)


def _energy_integrals(values, centres, edges, log_axes, energy_edges, fov_points, method):
    """Integral of the rate over each analysis energy bin at FoV points: shape (E, *points)."""
    if method == "exact":
        nodes = _fine_nodes(energy_edges, centres[0], edges[0])
    elif method == "edges":
        nodes = np.asarray(energy_edges, dtype=float)
    else:
        raise ValueError(f"energy_integration must be one of {ENERGY_INTEGRATION}, got {method!r}")
    shape = np.broadcast_shapes(*[np.shape(p) for p in fov_points])
    e = nodes.reshape((-1,) + (1,) * len(shape))
    rate = interpolate_grid(values, centres, edges, [e, *fov_points], log_axes)
    segments = loglog_segment_integrals(rate, nodes * 1e6, axis=0)  # TeV -> MeV: rate is per MeV
    starts = np.searchsorted(nodes, energy_edges[:-1])
    return np.add.reduceat(segments, starts, axis=0)


def predict_at(model: xr.Dataset, info: dict, ra, dec, solid_angle, energy_edges, *, group=None,
               zenith=None, energy_integration: str = "edges", max_rotation: float = 0.25):
    """Expected background counts of one run at sky positions.

    Parameters
    ----------
    model : Dataset (xbkg model layout)
    info : xbkg.core.runs.RunInfo
        Run parameters as from :func:`xbkg.store.events.run_infos` (pointing, ONTIME, times, site).
    ra, dec : array (deg)
        Pixel centres; ``solid_angle`` (sr) broadcasts against them.
    energy_edges : array (TeV)
    group, zenith
        Zenith group of the model to use; default: the group containing the run's zenith.

    Returns
    -------
    ndarray, shape ``(E,) + broadcast(ra, dec).shape``: expected counts.
    """
    info = as_run_info(info)
    energy_edges = np.asarray(energy_edges, dtype=float)
    if group is None and zenith is None:
        zenith = info.zenith
    values, centres, edges, log_axes = model_grid(model, group=group, zenith=zenith)
    values = np.asarray(values)
    ra, dec = np.broadcast_arrays(np.asarray(ra, float), np.asarray(dec, float))
    kind, align = model.attrs["kind"], model.attrs["fov_alignment"]
    if kind == "2d":
        points = [fov.offset_deg(ra, dec, info.ra_pnt, info.dec_pnt)]
        integral = _energy_integrals(values, centres, edges, log_axes, energy_edges, points,
                                     energy_integration)
    elif align == "RADEC":
        lon, lat = fov.radec_to_fov(ra, dec, info.ra_pnt, info.dec_pnt)
        # model value order is (energy, dety, detx): points are (lat, lon)
        integral = _energy_integrals(values, centres, edges, log_axes, energy_edges, [lat, lon],
                                     energy_integration)
    else:
        params = _altaz_params(info)
        times, weights = time_samples(info, max_rotation=max_rotation, params=params)
        integral = 0.0
        for t, w in zip(times, weights):
            lon, lat = fov.radec_to_altaz_fov(ra, dec, np.full(ra.shape, t), params)
            integral = integral + w * _energy_integrals(values, centres, edges, log_axes,
                                                        energy_edges, [lat, lon],
                                                        energy_integration)
    return integral * np.asarray(solid_angle) * float(info.ontime)


@takes_store("store")
def predict_counts(model: xr.Dataset, store: xr.Dataset, obs_id: int, *, energy_edges=None,
                   width: float = 5.0, binsz: float = 0.05, group=None, zenith=None,
                   energy_integration: str = "edges", max_rotation: float = 0.25) -> xr.Dataset:
    """Expected background counts of run ``obs_id`` on a FoV grid around its pointing.

    The grid is ``width x width`` deg of ``binsz`` boxes in the RADEC-aligned FoV frame
    (``detx`` = fov_lon, ``dety`` = fov_lat, gammapy sign), i.e. fixed on the sky; each box's
    centre has ``ra``/``dec`` coordinates. Energy bins default to the model's.

    Returns
    -------
    Dataset with ``npred`` ``(energy, dety, detx)``: expected counts, with ``ra``, ``dec`` and
    the ``*_bounds`` coordinates; attrs ``obs_id``, ``ontime``, ``energy_integration``.
    """

    row = store.sel(obs_id=[int(obs_id)])
    info = run_infos(row)[0]
    if not all(np.isfinite(getattr(info, k)) for k in ("geolon", "geolat", "mjdrefi", "tstart")):
        info = complete_run_info(info, read_header(info.events_file, info.events_hdu))
    energy_edges = edges_of(model, "energy") if energy_edges is None else np.asarray(energy_edges)
    n = int(round(width / binsz))
    fov_edges = np.linspace(-width / 2, width / 2, n + 1)
    centres = 0.5 * (fov_edges[1:] + fov_edges[:-1])
    lon, lat = np.meshgrid(centres, centres)  # (dety, detx)
    ra, dec = fov.fov_to_radec(lon, lat, info.ra_pnt, info.dec_pnt)
    x = np.radians(fov_edges)
    omega = np.outer(np.diff(np.sin(x)), np.diff(x))
    counts = predict_at(model, info, ra, dec, omega, energy_edges, group=group, zenith=zenith,
                        energy_integration=energy_integration, max_rotation=max_rotation)
    coords = {}
    coords.update(axis_coords("energy", energy_edges))
    coords.update(axis_coords("detx", fov_edges))
    coords.update(axis_coords("dety", fov_edges))
    coords["ra"] = (("dety", "detx"), ra, {"units": "deg"})
    coords["dec"] = (("dety", "detx"), dec, {"units": "deg"})
    npred = xr.Variable(("energy", "dety", "detx"), counts,
                        {"units": "", "long_name": "expected background counts"})
    return xr.Dataset({"npred": npred}, coords=coords,
                      attrs={"obs_id": int(obs_id), "ontime": float(info.ontime),
                             "energy_integration": energy_integration})
