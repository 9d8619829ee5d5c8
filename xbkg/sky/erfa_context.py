"""ERFA astrometry contexts of ICRS -> Alt/Az without astropy.coordinates and astropy.time.

:func:`altaz_contexts` makes the ERFA calls astropy's ``ErfaAstrom.apco`` and ``apcs`` make,
with the same inputs, so the contexts agree with astropy's to rounding; it returns None (and
astropy does the work) whenever astropy could give other values (docs/architecture.rst).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from xbkg.sky.iers_cache import cached_table

__all__ = ["altaz_contexts"]

_MJD_ZERO = 2400000.5
_DAY = 86400.0
_ARCSEC = math.pi / (180.0 * 3600.0)


def _astropy_defaults() -> bool:
    """True unless astropy is loaded with a non-default IERS table or ephemeris."""
    iers = sys.modules.get("astropy.utils.iers.iers")
    if iers is not None:
        table = iers.IERS_Auto.iers_table
        if iers.earth_orientation_table._value is not None or (
                table is not None and not getattr(table, "_xbkg_cached", False)):
            return False
    ssys = sys.modules.get("astropy.coordinates.solar_system")
    return ssys is None or ssys.solar_system_ephemeris._value == "builtin"


def _interpolate(table, jd1, jd2):
    """UT1-UTC (s) and polar motion (rad) at UTC dates, as astropy's ``IERS._interpolate``."""
    mjd = np.floor(jd1 - _MJD_ZERO + jd2)
    utc = jd1 - (_MJD_ZERO + mjd) + jd2
    mjds = table["MJD"]
    i = np.searchsorted(mjds, mjd, side="right")
    i1 = np.clip(i, 1, len(mjds) - 1)
    i0 = i1 - 1
    frac = (mjd - mjds[i0] + utc) / (mjds[i1] - mjds[i0])
    out = []
    for name in ("UT1_UTC", "PM_x", "PM_y"):
        v0, v1 = table[name][i0], table[name][i1]
        d = v1 - v0
        if name == "UT1_UTC":
            d -= d.round()  # a leap second between the two table rows
        out.append(v0 + frac * d)
    inside = (i > 0) & (i < len(mjds)) & (mjd <= table["predictive_mjd"])
    return out[0], out[1] * _ARCSEC, out[2] * _ARCSEC, bool(np.all(inside))


def altaz_contexts(mjdref, seconds, scale: str, site):
    """ERFA ``apco`` (Alt/Az, no refraction) and ``apcs`` (geocentre) contexts, or None.

    Parameters
    ----------
    mjdref : (numpy.ndarray, numpy.ndarray)
        MJDREFI and MJDREFF, shape (n,), in the time scale ``scale``.
    seconds : numpy.ndarray
        Shape (n, k): times since MJDREF, s.
    scale : {"tt", "utc", "tai"}
    site : sequence of 3 floats
        Geodetic longitude and latitude (deg) and height (m), WGS84.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray) or None
        The two ``erfa.dt_eraASTROM`` arrays, shape (n * k,) (times in row order), or None
        when astropy must compute them (see the module docstring).
    """
    import erfa


    if not _astropy_defaults():
        return None
    table = cached_table()
    if table is None:
        return None
    shape = np.shape(seconds)
    ref1 = np.broadcast_to(np.asarray(mjdref[0], float)[:, None], shape).ravel() + _MJD_ZERO
    ref2 = np.broadcast_to(np.asarray(mjdref[1], float)[:, None], shape).ravel()
    dt = np.asarray(seconds, float).ravel() / _DAY
    if scale == "utc":
        ref1, ref2 = erfa.utctai(ref1, ref2)
    tt2 = ref2 + dt
    err = (ref2 - (tt2 - dt)) + (dt - (tt2 - (tt2 - dt)))  # two-sum: tt2 + err is exact
    day = np.round(tt2)
    tt1, tt2 = ref1 + day, (tt2 - day) + err  # astropy keeps dates as day + fraction
    if scale in ("utc", "tai"):
        tt1, tt2 = erfa.taitt(tt1, tt2)
    tai1, tai2 = erfa.tttai(tt1, tt2)
    utc1, utc2 = erfa.taiutc(tai1, tai2)
    dut1, xp, yp, inside = _interpolate(table, utc1, utc2)
    if not inside:
        return None
    ut11, ut12 = erfa.utcut1(utc1, utc2, dut1)
    ut = (utc1 - 0.5) + utc2  # UT as a fraction of the day (no effect at the geocentre)
    ut -= np.round(ut)
    tdb1, tdb2 = erfa.tttdb(tt1, tt2, erfa.dtdb(tt1, tt2, ut, 0.0, 0.0, 0.0))
    lon, lat, height = (float(v) for v in site)
    xyz = erfa.gd2gc(1, math.radians(lon), math.radians(lat), height)
    elong, phi, hm = erfa.gc2gd(1, xyz)
    x, y = erfa.bpn2xy(erfa.pnm06a(tt1, tt2))
    s = erfa.s06(tt1, tt2, x, y)
    helio, earth_pv = erfa.epv00(tdb1, tdb2)
    era = erfa.era00(ut11, ut12)
    sp = erfa.sp00(tt1, tt2)
    apco = erfa.apco(tt1, tt2, earth_pv, helio["p"], x, y, s, era, elong, phi, hm, xp, yp, sp,
                     0.0, 0.0)
    apcs = erfa.apcs(tt1, tt2, np.zeros(tt1.shape, erfa.dt_pv), earth_pv, helio["p"])
    return apco, apcs
