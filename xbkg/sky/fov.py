"""Field-of-view (FoV) coordinates of events: offset and FoV lon/lat, RADEC- or ALTAZ-aligned.

Pure numpy kernels on angles in degrees; inputs broadcast against each other. Conventions are
gammapy's (``gammapy.utils.coordinates.sky_to_fov``): ``fov_lon`` is *minus* the longitude of the
offset frame centred on the pointing. ALTAZ uses per-run constants (:func:`altaz_run_params`),
no per-event astropy; its method and accuracy against astropy: docs/architecture.rst.
"""

from __future__ import annotations

import math

import numpy as np

from xbkg.sky.erfa_context import altaz_contexts
from xbkg.sky.iers_cache import prefill

__all__ = [
    "ALTAZ_PARAMS_SIZE",
    "OMEGA_EARTH",
    "offset_deg",
    "haversine",
    "offset_to_haversine",
    "radec_to_fov",
    "fov_to_radec",
    "altaz_run_params",
    "altaz_runs_params",
    "radec_to_altaz_fov",
    "altaz_fov_to_radec",
    "pointing_altaz",
]

_RAD = math.pi / 180.0
_DEG = 180.0 / math.pi
_BLOCK = 32768  # events per block: a block's work rows (~2 MB) stay in cache
#: Earth's rotation rate: that of the Earth rotation angle (IERS 2003), rad per UT1 second
#: (UT1 vs TT rate: < 1e-7 rad/run).
OMEGA_EARTH = 2.0 * math.pi * 1.00273781191135448 / 86400.0
_TIMESYS = ("tt", "utc", "tai")
_DEFLECTION_GRID_DEG = 6.0  # half-width of the grid the light deflection is linearised on

# Layout of the ALTAZ run-parameter vector (see `altaz_run_params`).
_VERSION = 1.0
_I_VERSION, _I_RA, _I_DEC, _I_T0, _I_RATE = 0, 1, 2, 3, 4
_S_A = slice(5, 14)  # 3x3: unit vector relative to RA_PNT -> CIRS rotated by ERA(t0) + along
_S_AOFF = slice(14, 17)  # the affine part of that map (annual aberration)
_S_K = slice(17, 26)  # 3x3: that frame rotated by ERA(t) - ERA(t0) -> (north, east, up)
_S_DIURNAL = slice(26, 29)  # diurnal aberration in (north, east, up)
_S_DRIFT = slice(29, 32)  # d/dt of the pointing's CIRS vector (aberration, precession), per s
_S_INFO = slice(32, 39)  # geolon, geolat, altitude, tstart, tstop, mjdref, timesys index
#: Length of the vector returned by `altaz_run_params`.
ALTAZ_PARAMS_SIZE = 39
_DRIFT_STEP = 600.0  # s, half-step of the finite difference giving the drift


# --------------------------------------------------------------------------------------------
# Blockwise driver and input checks


def _blockwise(kernel, inputs, n_out, n_work, *args):
    """Run ``kernel(*input_blocks, *output_blocks, work_rows, *args)`` over event blocks.

    Inputs broadcast; 0-d inputs are passed as floats, others as float64 blocks (a view when
    the input is already float64: kernels must not write into their inputs).
    """
    arrays = [np.asarray(a) for a in inputs]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    flat = [float(a) if a.ndim == 0 else np.broadcast_to(a, shape).reshape(-1) for a in arrays]
    size = math.prod(shape)
    outs = [np.empty(size) for _ in range(n_out)]
    work = np.empty((n_work, min(_BLOCK, size)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for start in range(0, size, _BLOCK):
            sl = slice(start, min(start + _BLOCK, size))
            blocks = [x if isinstance(x, float) else np.asarray(x[sl], np.float64) for x in flat]
            rows = [row[: sl.stop - sl.start] for row in work]
            kernel(*blocks, *(o[sl] for o in outs), rows, *args)
    return tuple(o.reshape(shape) for o in outs)


def _check_finite(name, value):
    value = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(value)):
        shown = value if value.ndim == 0 else "an array with NaN or inf"
        raise ValueError(f"{name} must be finite, got {shown}")


def _check_pointing(ra_pnt, dec_pnt):
    _check_finite("ra_pnt", ra_pnt)
    _check_finite("dec_pnt", dec_pnt)
    if np.any(np.abs(np.asarray(dec_pnt, dtype=np.float64)) > 90.0):
        raise ValueError(f"dec_pnt must be within [-90, 90] deg, got {dec_pnt}")


# --------------------------------------------------------------------------------------------
# Elementary functions as Horner series (numpy's float64 sin and arctan take 11-15 ns per
# element on AVX2 machines; these 3-8 ns).

_TOL = 5e-17
_SIN = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(20))
_COS = tuple((-1) ** k / math.factorial(2 * k) for k in range(21))
_ATAN = tuple((-1) ** k / (2 * k + 1) for k in range(30))
_SINCOS_MAX = 3.2  # rad: numpy beyond (never for wrapped angles)
_ATAN_MAX = 0.15  # arctan series for |x| <= 0.15 (FoV angles up to ~8.5 deg), numpy beyond


def _horner(z, coefs, out):
    """``out = sum_k coefs[k] z^k``; ``out`` must not alias ``z``."""
    np.multiply(z, coefs[-1], out=out)
    for c in coefs[-2:0:-1]:
        out += c
        out *= z
    out += coefs[0]
    return out


def _sincos(u, scale, s_out, c_out, z):
    """``sin(scale u)`` into s_out and, unless c_out is None, ``cos(scale u)`` (z: scratch)."""
    np.multiply(u, u, out=z)
    xmax = scale * math.sqrt(float(z.max())) if z.size else 0.0
    if not xmax <= _SINCOS_MAX:  # also NaN
        np.multiply(u, scale, out=z)
        np.sin(z, out=s_out)
        if c_out is not None:
            np.cos(z, out=c_out)
        return
    n = 2  # sine terms: relative truncation error < xmax^(2n) / (2n+1)!, cosine below that
    while xmax ** (2 * n) / math.factorial(2 * n + 1) >= _TOL:
        n += 1
    _horner(z, [c * scale ** (2 * k + 1) for k, c in enumerate(_SIN[:n])], s_out)
    s_out *= u
    if c_out is not None:
        _horner(z, [c * scale ** (2 * k) for k, c in enumerate(_COS[: n + 1])], c_out)


def _arctan(x, scale, out, z):
    """``scale * arctan(x)`` into out (z: scratch; neither may alias x)."""
    np.multiply(x, x, out=z)
    zmax = float(z.max()) if z.size else 0.0
    xmax = min(math.sqrt(zmax), _ATAN_MAX) if zmax == zmax else _ATAN_MAX
    n = 2  # alternating series: relative truncation error < xmax^(2n) / (2n+1)
    while xmax ** (2 * n) / (2 * n + 1) >= _TOL:
        n += 1
    _horner(z, [c * scale for c in _ATAN[:n]], out)
    out *= x
    if not zmax <= _ATAN_MAX**2:
        big = np.flatnonzero(z > _ATAN_MAX**2)  # indices: cheaper than a boolean mask
        out[big] = scale * np.arctan(x[big])
    return out


# --------------------------------------------------------------------------------------------
# Vector pieces


def _dec_trig(dec, sin_out, cos_out, tmp):
    """sin(dec), cos(dec) from one sine: with ``k = sin(dec/2)``, ``cos(dec) = 1 - 2k^2`` and
    ``sin(dec) = 2k sqrt(1 - k^2)``, well conditioned since dec/2 is within [-45, 45] deg."""
    k = sin_out
    _sincos(dec, 0.5 * _RAD, k, None, tmp)
    np.multiply(k, k, out=cos_out)
    np.subtract(1.0, cos_out, out=tmp)
    np.sqrt(tmp, out=tmp)
    k *= tmp
    k *= 2.0
    cos_out *= -2.0
    cos_out += 1.0


def _wrapped_turns(ra, ra_ref, out, tmp):
    """``(ra - ra_ref) / 360`` wrapped into [-1/2, 1/2] (any input range)."""
    np.subtract(ra, ra_ref, out=out)
    out *= 1.0 / 360.0
    np.rint(out, out=tmp)
    out -= tmp
    return out


def _unit_rel(ra, dec, ra_ref, qx, qy, qz, t1, t2):
    """Unit vector of (ra, dec) in ICRS rotated by ``ra_ref`` about the pole, into qx, qy, qz."""
    turns = _wrapped_turns(ra, ra_ref, t1, t2)
    _sincos(turns, 2.0 * math.pi, qy, qx, t2)
    _dec_trig(dec, qz, t2, t1)
    qx *= t2
    qy *= t2


def _lonlat_deg(x, y, z, lon_out, lat_out, t1, t2):
    """``lon = atan2(y, x)``, ``lat = atan2(z, hypot(x, y))`` in degrees; x, y, z any scale.

    Uses ``atan2(y, x) = 2 atan(y / (hypot(x, y) + x))``, exact for x > 0 (the FoV side of
    the pointing); elements with x <= 0 fall back to ``arctan2``. Overwrites z, t1, t2.
    """
    np.multiply(x, x, out=t1)
    np.multiply(y, y, out=t2)
    t1 += t2
    rho = np.sqrt(t1, out=t1)
    np.divide(z, rho, out=t2)
    _arctan(t2, _DEG, lat_out, z)
    rho += x
    np.divide(y, rho, out=t2)
    _arctan(t2, 2.0 * _DEG, lon_out, t1)
    back = np.flatnonzero(x <= 0.0)
    if back.size:
        lon_out[back] = np.arctan2(y[back], x[back]) * _DEG


def _lonlat_to_xyz(lon_deg, lat_deg):
    lon, lat = np.multiply(lon_deg, _RAD), np.multiply(lat_deg, _RAD)
    clat = np.cos(lat)
    return clat * np.cos(lon), clat * np.sin(lon), np.sin(lat)


# --------------------------------------------------------------------------------------------
# RADEC


def _haversine_kernel(ra, dec, ra_pnt, dec_pnt, out, rows):
    """``out = sin^2(separation / 2)`` of events and pointing (haversine formula).

    ``hav = sin^2(ddec / 2) + cos(dec) cos(dec_pnt) sin^2(dra / 2)`` with ``ddec = dec -
    dec_pnt`` and ``cos(dec) = cos(dec_pnt) cos(ddec) - sin(dec_pnt) sin(ddec)``: every series
    is of a difference from the pointing, short for events in the field of view.
    """
    s, t1, t2 = rows
    h = out
    dp = np.multiply(dec_pnt, _RAD)
    cdp, sdp = np.cos(dp), np.sin(dp)
    _sincos(_wrapped_turns(ra, ra_pnt, t1, t2), math.pi, h, None, t2)  # sin(dra/2)
    np.subtract(dec, dec_pnt, out=t1)
    _sincos(t1, 0.5 * _RAD, s, None, t2)  # sin(ddec/2)
    np.multiply(s, s, out=t1)  # sin^2(ddec/2)
    np.subtract(1.0, t1, out=t2)
    np.sqrt(t2, out=t2)
    t2 *= s
    t2 *= -2.0 * sdp  # -sin(dec_pnt) sin(ddec)
    np.multiply(t1, -2.0 * cdp, out=s)
    s += cdp  # cos(dec_pnt) cos(ddec)
    s += t2  # cos(dec)
    s *= cdp
    h *= h
    h *= s
    h += t1  # haversine of the separation


def _offset_kernel(ra, dec, ra_pnt, dec_pnt, out, rows):
    h, k, t1, t2 = rows
    _haversine_kernel(ra, dec, ra_pnt, dec_pnt, h, (k, t1, t2))
    np.subtract(1.0, h, out=t1)
    h /= t1
    np.sqrt(h, out=h)  # tan(separation / 2)
    _arctan(h, 2.0 * _DEG, out, t1)


def haversine(ra, dec, ra_pnt, dec_pnt):
    """``sin^2(offset / 2)`` of events from the pointing: monotonic in the offset, and cheaper.

    Binning offsets needs only this: an event is beyond an offset edge ``e`` where its
    haversine is beyond :func:`offset_to_haversine` of ``e``. Arguments as :func:`offset_deg`.

    >>> bool(np.isclose(haversine(1.0, 0.0, 0.0, 0.0), offset_to_haversine(1.0), rtol=1e-14))
    True
    """
    _check_pointing(ra_pnt, dec_pnt)
    return _blockwise(_haversine_kernel, (ra, dec, ra_pnt, dec_pnt), 1, 3)[0]


def offset_to_haversine(offset):
    """``sin^2(offset / 2)`` of offsets in deg (the values :func:`haversine` returns)."""
    return np.sin(np.radians(np.asarray(offset, dtype=float)) / 2.0) ** 2


def offset_deg(ra, dec, ra_pnt, dec_pnt):
    """Angular separation between events and the pointing, in degrees.

    Haversine formula: ~1e-16 rad for small separations, ~1e-8 rad within a few degrees of
    180 deg.

    Parameters
    ----------
    ra, dec, ra_pnt, dec_pnt : array_like
        ICRS coordinates (deg) of the events and of the pointing, broadcast against each other.

    Returns
    -------
    numpy.ndarray
        Separation in deg, float64, with the broadcast shape of the inputs.

    Examples
    --------
    >>> round(float(offset_deg(359.5, 0.0, 0.5, 0.0)), 12)
    1.0
    """
    _check_pointing(ra_pnt, dec_pnt)
    return _blockwise(_offset_kernel, (ra, dec, ra_pnt, dec_pnt), 1, 4)[0]


def _radec_kernel(ra, dec, ra_pnt, dec_pnt, lon, lat, rows):
    qx, qy, qz, t1, t2, x = rows
    dp = np.multiply(dec_pnt, _RAD)
    cdp, sdp = np.cos(dp), np.sin(dp)
    _unit_rel(ra, dec, ra_pnt, qx, qy, qz, t1, t2)
    # offset frame: x toward the pointing, y toward increasing RA, z toward north
    np.multiply(qx, cdp, out=x)
    np.multiply(qz, sdp, out=t1)
    x += t1
    qz *= cdp
    qx *= sdp
    qz -= qx
    qy *= -1.0  # gammapy sign: fov_lon = -(offset-frame lon)
    _lonlat_deg(x, qy, qz, lon, lat, t1, t2)


def radec_to_fov(ra, dec, ra_pnt, dec_pnt):
    """RADEC-aligned FoV coordinates (gammapy sign) of events around the pointing.

    Parameters
    ----------
    ra, dec : array_like
        Event ICRS coordinates, deg.
    ra_pnt, dec_pnt : float or array_like
        Pointing ICRS coordinates, deg; broadcast against the events.

    Returns
    -------
    lon, lat : numpy.ndarray
        ``fov_lon`` (grows toward decreasing RA) and ``fov_lat``, deg, float64.

    Examples
    --------
    >>> lon, lat = radec_to_fov([359.0, 0.0], [0.0, 1.0], 0.0, 0.0)
    >>> np.round(lon, 12) + 0.0, np.round(lat, 12) + 0.0
    (array([1., 0.]), array([0., 1.]))
    """
    _check_pointing(ra_pnt, dec_pnt)
    return _blockwise(_radec_kernel, (ra, dec, ra_pnt, dec_pnt), 2, 6)


def _fov_radec_kernel(lon, lat, ra_pnt, dec_pnt, ra, dec, rows):
    x, y, z = _lonlat_to_xyz(-lon, lat)
    dp = np.multiply(dec_pnt, _RAD)
    cdp, sdp = np.cos(dp), np.sin(dp)
    xe = x * cdp - z * sdp  # rotate back by dec_pnt about the y axis
    ze = x * sdp + z * cdp
    ra[...] = np.mod(ra_pnt + _DEG * np.arctan2(y, xe), 360.0)
    dec[...] = _DEG * np.arctan2(ze, np.hypot(xe, y))


def fov_to_radec(lon, lat, ra_pnt, dec_pnt):
    """Inverse of `radec_to_fov`: ICRS coordinates of RADEC-aligned FoV coordinates.

    Parameters
    ----------
    lon, lat : array_like
        ``fov_lon``, ``fov_lat``, deg (gammapy sign).
    ra_pnt, dec_pnt : float or array_like
        Pointing ICRS coordinates, deg; broadcast against the FoV coordinates.

    Returns
    -------
    ra, dec : numpy.ndarray
        ICRS coordinates, deg; ra in [0, 360).

    Examples
    --------
    >>> ra, dec = fov_to_radec(1.0, 0.0, 0.0, 0.0)
    >>> round(float(ra), 12), round(float(dec), 12)
    (359.0, 0.0)
    """
    _check_pointing(ra_pnt, dec_pnt)
    return _blockwise(_fov_radec_kernel, (lon, lat, ra_pnt, dec_pnt), 2, 0)


# --------------------------------------------------------------------------------------------
# ALTAZ: per-run constants


def altaz_run_params(
    ra_pnt, dec_pnt, *, geolon, geolat, altitude, mjdrefi, mjdreff, timesys, tstart, tstop
):
    """Per-run constants of the ALTAZ FoV transform (astropy/erfa at the run's mid time).

    Uses astropy's Earth orientation (IERS) tables as configured; global astropy settings are
    not changed. With astropy's default table, the ERFA calls are made by
    `xbkg.sky.erfa_context` on a binary cache of that table (`xbkg.sky.iers_cache`), without
    importing astropy.coordinates (the same contexts to rounding).

    Parameters
    ----------
    ra_pnt, dec_pnt : float
        Pointing, ICRS, deg (fixed on the sky during the run).
    geolon, geolat : float
        Site geodetic (WGS84) east longitude and latitude, deg (EVENTS header GEOLON, GEOLAT).
    altitude : float
        Site height above the WGS84 ellipsoid, m (ALTITUDE).
    mjdrefi, mjdreff : float
        Integer and fractional MJD of time 0 (MJDREFI, MJDREFF).
    timesys : str
        Time scale of MJDREF and of the event times: 'TT', 'UTC' or 'TAI', any case (TIMESYS).
    tstart, tstop : float
        Run start and stop, seconds since MJDREF (TSTART, TSTOP).

    Returns
    -------
    numpy.ndarray
        float64 vector of length `ALTAZ_PARAMS_SIZE` for `radec_to_altaz_fov`,
        `altaz_fov_to_radec` and `pointing_altaz`; its layout is private.

    Raises
    ------
    ValueError
        Unknown ``timesys``, non-scalar or non-finite values, latitudes outside [-90, 90] deg,
        or ``tstop < tstart``.
    """
    scale = str(timesys).strip().lower()
    if scale not in _TIMESYS:
        raise ValueError(f"timesys must be one of TT, UTC, TAI (any case), got {timesys!r}")
    values = dict(ra_pnt=ra_pnt, dec_pnt=dec_pnt, geolon=geolon, geolat=geolat, altitude=altitude,
                  mjdrefi=mjdrefi, mjdreff=mjdreff, tstart=tstart, tstop=tstop)
    for name, value in values.items():
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    return altaz_runs_params(**values, timesys=timesys)[0]


def altaz_runs_params(ra_pnt, dec_pnt, *, geolon, geolat, altitude, mjdrefi, mjdreff, timesys,
                      tstart, tstop) -> np.ndarray:
    """`altaz_run_params` of many runs at once, the same vectors bit for bit.

    Parameters are those of `altaz_run_params`, as arrays of one value per run (broadcast
    against each other; ``timesys`` one string or one per run). Earth orientation is
    computed with one astropy call per site and time scale, element by element, so a run's
    vector does not depend on the other runs of the call.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_runs, ALTAZ_PARAMS_SIZE)``.

    Raises
    ------
    ValueError
        As `altaz_run_params`; the message names the run (its index).
    """

    names = ("ra_pnt", "dec_pnt", "geolon", "geolat", "altitude", "mjdrefi", "mjdreff", "tstart",
             "tstop")
    given = (ra_pnt, dec_pnt, geolon, geolat, altitude, mjdrefi, mjdreff, tstart, tstop)
    arrays = [np.ravel(a) for a in np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                                           for v in given))]
    columns = dict(zip(names, arrays))
    n = arrays[0].size
    scales = np.broadcast_to(np.array([str(t).strip().lower() for t in np.ravel(timesys)]), (n,))
    for i in range(n):
        where = "" if n == 1 else f"run {i}: "
        if scales[i] not in _TIMESYS:
            raise ValueError(f"{where}timesys must be one of TT, UTC, TAI (any case), got "
                             f"{np.ravel(timesys)[min(i, np.size(timesys) - 1)]!r}")
        for name in names:
            if not np.isfinite(columns[name][i]):
                raise ValueError(f"{where}{name} must be finite, got {columns[name][i]}")
        for name in ("dec_pnt", "geolat"):
            if abs(columns[name][i]) > 90.0:
                raise ValueError(f"{where}{name} must be within [-90, 90] deg, got "
                                 f"{columns[name][i]}")
        if columns["tstop"][i] < columns["tstart"][i]:
            raise ValueError(f"{where}tstop ({columns['tstop'][i]}) is before tstart "
                             f"({columns['tstart'][i]})")
    out = np.empty((n, ALTAZ_PARAMS_SIZE))
    keys = np.stack([columns["geolon"], columns["geolat"], columns["altitude"]], axis=1)
    for scale in np.unique(scales):
        for site in np.unique(keys[scales == scale], axis=0):
            idx = np.flatnonzero((scales == scale) & np.all(keys == site, axis=1))
            t0 = 0.5 * (columns["tstart"][idx] + columns["tstop"][idx])
            mjdref = (columns["mjdrefi"][idx], columns["mjdreff"][idx])
            seconds = t0[:, None] + np.array([0.0, -_DRIFT_STEP, _DRIFT_STEP])
            # the context of ICRS -> AltAz (its v includes the Earth-rotation velocity and
            # diurab is 0) and the geocentric one (annual aberration alone), at t0 and
            # t0 -+ step of each run: ERFA's, as astropy computes them
            astroms, geos = (altaz_contexts(mjdref, seconds, str(scale), site)
                             or _astropy_contexts(mjdref, seconds, str(scale), site))
            out[idx] = _runs_params({name: columns[name][idx] for name in names}, str(scale),
                                    astroms.reshape(-1, 3), geos.reshape(-1, 3))
    return out


def _astropy_contexts(mjdref, seconds, scale, site):
    """astropy's ``ErfaAstrom.apco`` (AltAz, pressure 0) and ``apcs`` (GCRS) contexts at
    MJDREF + seconds (shape (n, k)), raveled: what `xbkg.sky.erfa_context` reproduces."""
    import astropy.units as u
    from astropy.coordinates import GCRS, AltAz, EarthLocation
    from astropy.coordinates.erfa_astrom import ErfaAstrom
    from astropy.time import Time, TimeDelta


    prefill()  # astropy's IERS table from a binary cache instead of its slow text parse
    obstime = Time(mjdref[0][:, None], mjdref[1][:, None], format="mjd", scale=scale)
    obstime = (obstime + TimeDelta(seconds, format="sec")).ravel()
    location = EarthLocation.from_geodetic(site[0] * u.deg, site[1] * u.deg, site[2] * u.m)
    return (ErfaAstrom.apco(AltAz(obstime=obstime, location=location, pressure=0 * u.hPa)),
            ErfaAstrom.apcs(GCRS(obstime=obstime)))


def _rot_z(angle):
    """Passive rotations about z by ``angle`` rad (astropy ``rotation_matrix`` convention):
    shape ``angle.shape + (3, 3)``."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, s, zero], -1), np.stack([-s, c, zero], -1),
                     np.stack([zero, zero, one], -1)], -2)


def _runs_params(values: dict, scale: str, astroms, geos) -> np.ndarray:
    """Runs' parameter vectors (n, ALTAZ_PARAMS_SIZE) from their astropy contexts.

    ``values``: arrays of one value per run; ``astroms``, ``geos``: shape (n, 3), the contexts
    at t0, t0 - step, t0 + step. Every operation acts on each run separately (element-wise,
    or on its own 3x3 matrices), so a run's vector does not depend on the other runs.
    """
    import erfa

    astrom = astroms[:, 0]
    diurab = np.sqrt(np.sum((astrom["v"] - geos[:, 0]["v"]) ** 2, axis=-1))  # site speed / c
    ra_p, dec_p = values["ra_pnt"], values["dec_pnt"]
    t0 = 0.5 * (values["tstart"] + values["tstop"])
    # 1. ICRS -> CIRS: bpn @ (M_ab @ G @ q + v): erfa ``ab`` before its normalisation (which
    #    directions do not need) is affine in q; G linearises ``ldsun`` near the pointing.
    g = _deflection_matrices(ra_p, dec_p, astrom["eh"], astrom["em"], erfa)
    rel = _rot_z(-np.radians(ra_p))  # unit vector relative to RA_PNT -> ICRS
    dec_r = np.radians(dec_p)
    pnt = rel @ np.stack([np.cos(dec_r), np.zeros_like(dec_r), np.sin(dec_r)], -1)[..., None]

    def icrs_to_cirs(i):
        v, bm1 = geos[:, i]["v"], geos[:, i]["bm1"][:, None, None]
        m_ab = bm1 * np.eye(3) + v[:, :, None] * v[:, None, :] / (1.0 + bm1)
        bpn = astroms[:, i]["bpn"]
        return bpn @ m_ab @ g, bpn @ v[..., None]

    era0 = _rot_z(astrom["eral"])  # CIRS -> rotated by the local ERA at t0
    a, a_off = icrs_to_cirs(0)
    a, a_off = era0 @ a @ rel, era0 @ a_off
    # what is held at t0 drifts (aberration, precession-nutation): the pointing's rate,
    # applied per event as a shift common to event and pointing
    (a1, b1), (a2, b2) = icrs_to_cirs(1), icrs_to_cirs(2)
    drift = era0 @ ((a2 - a1) @ pnt + b2 - b1) / (2.0 * _DRIFT_STEP)
    # 2. -> (north, east, up): erfa ``atioq`` polar motion and latitude, its x axis reversed
    xpl, ypl, sphi, cphi = (astrom[k] for k in ("xpl", "ypl", "sphi", "cphi"))
    zero, one = np.zeros_like(xpl), np.ones_like(xpl)
    polar = np.stack([np.stack([one, zero, xpl], -1), np.stack([zero, one, -ypl], -1),
                      np.stack([-xpl, ypl, one], -1)], -2)
    latitude = np.stack([np.stack([-sphi, zero, cphi], -1), np.stack([zero, one, zero], -1),
                         np.stack([cphi, zero, sphi], -1)], -2)
    k = latitude @ polar

    n = ra_p.size
    info = np.stack([values["geolon"], values["geolat"], values["altitude"], values["tstart"],
                     values["tstop"], values["mjdrefi"] + values["mjdreff"],
                     np.full(n, float(_TIMESYS.index(scale)))], -1)
    params = np.concatenate(
        [np.stack([np.full(n, _VERSION), ra_p, dec_p, t0, np.full(n, OMEGA_EARTH)], -1),
         a.reshape(n, 9), a_off.reshape(n, 3), k.reshape(n, 9),
         np.stack([zero, diurab, zero], -1), drift.reshape(n, 3), info], axis=-1)
    for p in params:
        _check_params(p)
    return params


def _deflection_matrices(ra_p, dec_p, eh, em, erfa):
    """3x3 G per run with ``G @ q ~ erfa.ldsun(q)`` on a grid within 6 deg of its pointing."""
    grid = np.linspace(-_DEFLECTION_GRID_DEG, _DEFLECTION_GRID_DEG, 7)
    lon, lat = (g.ravel() for g in np.meshgrid(grid, grid))
    ra, dec = fov_to_radec(lon[None], lat[None], np.asarray(ra_p)[:, None],
                           np.asarray(dec_p)[:, None])
    q = np.stack(_lonlat_to_xyz(ra, dec), axis=-1)  # (n, 49, 3)
    shift = erfa.ldsun(q, eh[:, None, :], em[:, None]) - q
    # least squares on the small residual (G - 1) keeps rounding at the 1e-16 level
    out = np.empty((q.shape[0], 3, 3))
    for i in range(q.shape[0]):
        resid, *_ = np.linalg.lstsq(q[i], shift[i], rcond=None)
        out[i] = np.eye(3) + resid.T
    return out


def _check_params(params):
    params = np.asarray(params, dtype=np.float64)
    if params.shape != (ALTAZ_PARAMS_SIZE,) or params[_I_VERSION] != _VERSION:
        raise ValueError(
            f"params must be the vector returned by altaz_run_params (shape "
            f"({ALTAZ_PARAMS_SIZE},), version {_VERSION}); got shape {params.shape}"
        )
    if not np.all(np.isfinite(params)):
        raise ValueError("params contain NaN or inf; rebuild them with altaz_run_params")
    return params


class _Run:
    """Unpacked run constants for the per-event kernels."""

    def __init__(self, params):
        p = _check_params(params)
        self.ra, self.dec = float(p[_I_RA]), float(p[_I_DEC])
        self.t0, self.rate = float(p[_I_T0]), float(p[_I_RATE])
        self.a = p[_S_A].reshape(3, 3)
        self.a_off = p[_S_AOFF]
        self.k = p[_S_K].reshape(3, 3)
        self.diurnal = p[_S_DIURNAL]
        dp = math.radians(self.dec)
        wp = self.a @ np.array([math.cos(dp), 0.0, math.sin(dp)]) + self.a_off
        # pointing in (north, east, up): cos(dera) p1 + sin(dera) p2 + p3
        self.p1 = self.k[:, :2] @ wp[:2]
        self.p2 = self.k[:, :2] @ np.array([wp[1], -wp[0]])
        self.p3 = self.k[:, 2] * wp[2] + self.diurnal
        # drift of what is held at the mid time: events get ``tau * drift`` before the ERA
        # rotation; for the pointing, K Rz(rate tau) drift tau = q1 tau + q2 tau^2 + O(tau^3)
        # with tau ~ sin(rate tau) / rate and tau^2 ~ 2 (1 - cos(rate tau)) / rate^2 folds into
        # p1..p3 (error < 1e-10 rad over a run)
        self.drift = p[_S_DRIFT]
        d = self.drift
        q1 = self.k @ d
        q2_over_rate = self.k[:, :2] @ np.array([d[1], -d[0]])
        self.p1 = self.p1 - 2.0 * q2_over_rate / self.rate
        self.p2 = self.p2 + q1 / self.rate
        self.p3 = self.p3 + 2.0 * q2_over_rate / self.rate


# --------------------------------------------------------------------------------------------
# ALTAZ: per-event kernels


def _sincos_era(time, run, s_out, c_out, tmp, z):
    """sin and cos of the Earth rotation angle since the run's mid time (tmp, z: scratch)."""
    np.subtract(time, run.t0, out=tmp)
    _sincos(tmp, run.rate, s_out, c_out, z)


def _lincomb3(out, x, a, y, b, z, c, d, tmp):
    """``out = a x + b y + c z + d`` for scalars a, b, c, d, skipping zero terms."""
    terms = [(arr, coef) for arr, coef in ((x, a), (y, b), (z, c)) if coef != 0.0]
    if not terms:
        out[...] = d
        return
    np.multiply(terms[0][0], terms[0][1], out=out)
    for arr, coef in terms[1:]:
        np.multiply(arr, coef, out=tmp)
        out += tmp
    if d != 0.0:
        out += d


def _pointing_nev(c, s, run, outs, tmp):
    """Pointing in (north, east, up) into ``outs``; c, s: cos, sin of the ERA change."""
    for row, out in enumerate(outs):
        _lincomb3(out, c, run.p1[row], s, run.p2[row], c, 0.0, run.p3[row], tmp)


def _event_nev(ra, dec, time, run, rows):
    """Event and pointing in (north, east, up) at the event times, in ``rows`` (10).

    Returns ``(e_n, e_e, e_u, p_n, p_e, p_u, tau, free1, free2, free3)``, rows of ``rows``,
    with ``tau`` the time from the run's mid time.
    """
    qx, qy, qz, t1, t2, c, s, wx, wy, tau = rows
    _sincos_era(time, run, s, c, tau, qx)
    _unit_rel(ra, dec, run.ra, qx, qy, qz, t1, t2)
    a, off, drift = run.a, run.a_off, run.drift
    for row, out in ((0, wx), (1, wy), (2, t1)):  # w = A q + a_off + tau drift
        _lincomb3(out, qx, a[row, 0], qy, a[row, 1], qz, a[row, 2], off[row], t2)
        np.multiply(tau, drift[row], out=t2)
        out += t2
    wz = t1
    ux, uy = qx, qy  # rotate by the ERA change
    np.multiply(c, wx, out=ux)
    np.multiply(s, wy, out=t2)
    ux += t2
    np.multiply(c, wy, out=uy)
    np.multiply(s, wx, out=t2)
    uy -= t2
    k, dv = run.k, run.diurnal
    for row, out in ((0, wx), (1, wy), (2, qz)):  # K u + diurnal aberration
        _lincomb3(out, ux, k[row, 0], uy, k[row, 1], wz, k[row, 2], dv[row], t2)
    _pointing_nev(c, s, run, (qx, qy, t1), t2)
    return wx, wy, qz, qx, qy, t1, tau, t2, c, s


def _altaz_kernel(ra, dec, time, lon, lat, rows, run):
    e_n, e_e, e_u, p_n, p_e, p_u, _, t1, t2, t3 = _event_nev(ra, dec, time, run, rows)
    # offset frame around the unnormalised pointing p (|p| = r, horizontal part h), all
    # scaled by r h: X = h (e.p), Y = r (p_e e_n - p_n e_e), Z = r^2 e_u - p_u (e.p)
    np.multiply(p_n, p_n, out=t1)
    np.multiply(p_e, p_e, out=t2)
    t1 += t2  # h^2
    np.multiply(p_u, p_u, out=t3)
    t3 += t1  # r^2
    np.sqrt(t1, out=t1)  # h
    np.multiply(e_n, p_n, out=t2)
    p_n *= e_e
    e_n *= p_e
    e_n -= p_n  # p_e e_n - p_n e_e
    np.multiply(e_e, p_e, out=p_e)
    t2 += p_e
    np.multiply(e_u, p_u, out=p_e)
    t2 += p_e  # e.p
    e_u *= t3
    p_u *= t2
    e_u -= p_u  # Z
    np.sqrt(t3, out=t3)
    e_n *= t3  # Y
    t2 *= t1  # X
    _lonlat_deg(t2, e_n, e_u, lon, lat, t1, t3)


def radec_to_altaz_fov(ra, dec, time, params):
    """ALTAZ-aligned FoV coordinates (gammapy sign) of events at their times.

    Parameters
    ----------
    ra, dec, time : array_like
        Events: ICRS coordinates (deg) and times (s since MJDREF, EVENTS column TIME),
        broadcast against each other.
    params : numpy.ndarray
        Run constants from `altaz_run_params`.

    Returns
    -------
    lon, lat : numpy.ndarray
        ``fov_lon`` (grows toward decreasing azimuth) and ``fov_lat`` (toward higher
        altitude), deg, float64.
    """
    return _blockwise(_altaz_kernel, (ra, dec, time), 2, 10, _Run(params))


def _pointing_kernel(time, alt, az, rows, run):
    s, c, tau, p_n, p_e, p_u, t1 = rows
    _sincos_era(time, run, s, c, tau, p_n)
    _pointing_nev(c, s, run, (p_n, p_e, p_u), t1)
    alt[...] = _DEG * np.arctan2(p_u, np.hypot(p_n, p_e))
    az[...] = np.mod(_DEG * np.arctan2(p_e, p_n), 360.0)


def pointing_altaz(time, params):
    """Altitude and azimuth of the pointing at the given times (no refraction).

    Parameters
    ----------
    time : array_like
        Seconds since MJDREF.
    params : numpy.ndarray
        Run constants from `altaz_run_params`.

    Returns
    -------
    alt, az : numpy.ndarray
        deg; az from north through east, in [0, 360).
    """
    return _blockwise(_pointing_kernel, (time,), 2, 7, _Run(params))


def _altaz_inverse_kernel(lon, lat, time, ra, dec, rows, run):
    s, c, tau, p_n, p_e, p_u, t1 = rows
    _sincos_era(time, run, s, c, tau, p_n)
    _pointing_nev(c, s, run, (p_n, p_e, p_u), t1)
    r = np.sqrt(p_n**2 + p_e**2 + p_u**2)
    p_n, p_e, p_u = p_n / r, p_e / r, p_u / r
    h = np.hypot(p_n, p_e)
    x, y, z = _lonlat_to_xyz(lon, lat)  # y toward decreasing azimuth
    # e = x p - y east + z up, east = (-p_e, p_n, 0) / h, up = (-p_u p_n, -p_u p_e, h^2) / h
    e = np.stack([x * p_n + (y * p_e - z * p_u * p_n) / h,
                  x * p_e - (y * p_n + z * p_u * p_e) / h,
                  x * p_u + z * h])
    # undo e ~ K Rz(dera) (A q + a_off + tau drift) + diurnal: q = lam m - n, |q| = 1 fixes
    # lam ~ 1
    u = np.linalg.solve(run.k, e)
    du = np.linalg.solve(run.k, run.diurnal)
    m = np.linalg.solve(run.a, np.stack([c * u[0] - s * u[1], s * u[0] + c * u[1], u[2]]))
    w_n = np.stack([c * du[0] - s * du[1], s * du[0] + c * du[1], np.full_like(c, du[2])])
    n = np.linalg.solve(run.a, w_n + run.a_off[:, None] + np.multiply.outer(run.drift, tau))
    mm, mn, nn = (m * m).sum(0), (m * n).sum(0), (n * n).sum(0)
    q = (mn + np.sqrt(mn * mn - mm * (nn - 1.0))) / mm * m - n
    ra[...] = np.mod(run.ra + _DEG * np.arctan2(q[1], q[0]), 360.0)
    dec[...] = _DEG * np.arctan2(q[2], np.hypot(q[0], q[1]))


def altaz_fov_to_radec(lon, lat, time, params):
    """Inverse of `radec_to_altaz_fov`: ICRS coordinates of ALTAZ FoV coordinates at times.

    Parameters
    ----------
    lon, lat : array_like
        ``fov_lon``, ``fov_lat``, deg (gammapy sign).
    time : array_like
        Seconds since MJDREF; broadcast against lon, lat.
    params : numpy.ndarray
        Run constants from `altaz_run_params`.

    Returns
    -------
    ra, dec : numpy.ndarray
        ICRS, deg; ra in [0, 360).
    """
    return _blockwise(_altaz_inverse_kernel, (lon, lat, time), 2, 7, _Run(params))
