"""A run's pointing RA/Dec when neither the obs index nor the EVENTS header has RA_PNT nor DEC_PNT.

LST-1 stores written by lstchain may give the pointing only as Alt/Az and in a ``POINTING`` HDU;
xbkg then converts it to ICRS for the site of the header, without refraction. The order of the
sources and the time the Alt/Az refers to: docs/architecture.rst.
"""

from __future__ import annotations

import numpy as np

from xbkg.io.fitstable import read_header, read_tables

__all__ = ["radec_from_altaz", "run_pointing_radec"]


def radec_from_altaz(alt, az, met, *, geolon, geolat, altitude, mjdrefi, mjdreff,
                     timesys="TT") -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA/Dec (deg) of Alt/Az directions (deg) at times ``met`` (s since MJDREF).

    No refraction; astropy's bundled Earth orientation tables (no download).
    """
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time, TimeDelta
    from astropy.utils import iers

    scale = str(timesys or "TT").strip().lower()
    if scale not in ("tt", "utc", "tai"):
        raise ValueError(f"TIMESYS must be TT, UTC or TAI, got {timesys!r}")
    with iers.conf.set_temp("auto_download", False), \
            iers.conf.set_temp("iers_degraded_accuracy", "warn"):
        time = Time(float(mjdrefi), float(mjdreff), format="mjd", scale=scale) + \
            TimeDelta(np.asarray(met, dtype=float), format="sec")
        location = EarthLocation.from_geodetic(float(geolon) * u.deg, float(geolat) * u.deg,
                                               float(altitude) * u.m)
        coord = SkyCoord(alt=np.asarray(alt, float) * u.deg, az=np.asarray(az, float) * u.deg,
                         frame=AltAz(obstime=time, location=location)).icrs
    return np.asarray(coord.ra.deg), np.asarray(coord.dec.deg)


def _number(header: dict, key: str) -> float:
    value = header.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else float("nan")


def _mean_radec(ra, dec) -> tuple[float, float]:
    """Mean direction of RA/Dec points (deg), safe across RA = 0."""
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    v = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).mean(axis=1)
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), \
        float(np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1]))))


def run_pointing_radec(header: dict, *, pointing_file: str = "", pointing_hdu: str = "",
                       site: dict | None = None) -> tuple[float, float, str]:
    """``(ra, dec, source)`` of a run's pointing from its POINTING HDU or Alt/Az (module
    docstring); ``header`` is the EVENTS header. NaNs and ``""`` when nothing gives it.

    ``site`` (``geolon, geolat, altitude, mjdrefi, mjdreff, timesys``) fills values missing
    from the header (e.g. from the obs index's header).
    """

    ref = {"geolon": _number(header, "GEOLON"), "geolat": _number(header, "GEOLAT"),
           "altitude": _number(header, "ALTITUDE"), "mjdrefi": _number(header, "MJDREFI"),
           "mjdreff": _number(header, "MJDREFF"),
           "timesys": str(header.get("TIMESYS", "") or "").strip()}
    for key, value in (site or {}).items():
        if key in ref and (ref[key] == "" or (not isinstance(ref[key], str)
                                              and not np.isfinite(ref[key]))):
            ref[key] = value
    ref["timesys"] = ref["timesys"] or "TT"
    if pointing_file:
        head = read_header(pointing_file, pointing_hdu)
        names = [str(head.get(f"TTYPE{i}", "")).strip().upper()
                 for i in range(1, int(head.get("TFIELDS", 0)) + 1)]
        if {"RA_PNT", "DEC_PNT"} <= set(names):
            cols, _, _ = read_tables(pointing_file, {pointing_hdu: ["RA_PNT", "DEC_PNT"]})[pointing_hdu]
            if len(cols["RA_PNT"]):
                return (*_mean_radec(cols["RA_PNT"], cols["DEC_PNT"]), "POINTING HDU RA/Dec")
        if {"ALT_PNT", "AZ_PNT", "TIME"} <= set(names):
            cols, _, _ = read_tables(pointing_file,
                                     {pointing_hdu: ["TIME", "ALT_PNT", "AZ_PNT"]})[pointing_hdu]
            if len(cols["TIME"]) and all(np.isfinite(v) for k, v in ref.items() if k != "timesys"):
                ra, dec = radec_from_altaz(cols["ALT_PNT"], cols["AZ_PNT"], cols["TIME"], **ref)
                return (*_mean_radec(ra, dec), "POINTING HDU Alt/Az")
    alt, az = _number(header, "ALT_PNT"), _number(header, "AZ_PNT")
    mid = 0.5 * (_number(header, "TSTART") + _number(header, "TSTOP"))
    if np.isfinite([alt, az, mid]).all() and \
            all(np.isfinite(v) for k, v in ref.items() if k != "timesys"):
        ra, dec = radec_from_altaz(alt, az, mid, **ref)
        return float(ra) % 360.0, float(dec), "EVENTS header Alt/Az at mid time"
    return float("nan"), float("nan"), ""
