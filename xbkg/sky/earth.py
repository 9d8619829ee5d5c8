"""Earth rotation seen from a site: how fast an Alt/Az field of view turns, when to sample a run.

One place for what the Alt/Az-aligned stages share: Earth's rotation rate (:data:`OMEGA_EARTH`,
the one of the ALTAZ transform of :mod:`xbkg.sky.fov`), the rotation speed of
an Alt/Az FoV tracking a sky position (:func:`rotation_rate`), time samples of a run's good time
intervals spaced by FoV rotation (:func:`time_samples`, :func:`run_time_samples`) and a run's
ALTAZ transform constants from its run parameters (:func:`run_altaz_params`, and for many runs
in one astropy call :func:`runs_altaz_params`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from xbkg.core.runs import RunInfo, as_run_info
from xbkg.sky import fov
from xbkg.sky.fov import OMEGA_EARTH

__all__ = [
    "OMEGA_EARTH",
    "ALTAZ_RUN_KEYS",
    "rotation_rate",
    "time_samples",
    "run_time_samples",
    "run_altaz_params",
    "runs_altaz_params",
]

log = logging.getLogger(__name__)

#: Run parameters (numbers) the ALTAZ constants are made of; ``timesys`` comes with them.
ALTAZ_RUN_KEYS = ("ra_pnt", "dec_pnt", "geolon", "geolat", "altitude", "mjdrefi", "mjdreff",
                  "tstart", "tstop")
_MAX_TIME_SAMPLES = 4096


def rotation_rate(alt, az, geolat) -> np.ndarray:
    """FoV rotation speed (rad/s) of an Alt/Az-aligned FoV tracking a sky position.

    ``omega = Omega_earth cos(lat) cos(az) / cos(alt)``; alt, az, lat in deg.

    >>> round(float(rotation_rate(45.0, 0.0, 0.0) / OMEGA_EARTH), 6)
    1.414214
    """
    alt, az = np.radians(alt), np.radians(az)
    with np.errstate(divide="ignore"):
        return OMEGA_EARTH * math.cos(math.radians(geolat)) * np.cos(az) / np.cos(alt)


def time_samples(starts, stops, rate_of_time, max_angle: float, *, n_grid: int = 257,
                 max_samples: int = _MAX_TIME_SAMPLES):
    """Sample times and weights so that the FoV turns by at most ``max_angle`` (rad) per sample.

    Each time interval ``[starts[i], stops[i]]`` (the run, or its GTIs) is cut into parts of
    equal rotation (``|rate_of_time(t)|`` in rad/s, integrated on an ``n_grid`` grid); samples
    are the parts' mid-times, weights their durations over the total. At most ``max_samples``
    samples in all (then the rotation per sample is larger than asked).

    >>> t, w = time_samples(0.0, 100.0, lambda t: np.full_like(t, 0.01), 0.25)
    >>> t.tolist(), w.tolist()
    ([12.5, 37.5, 62.5, 87.5], [0.25, 0.25, 0.25, 0.25])
    """
    starts = np.atleast_1d(np.asarray(starts, dtype=float))
    stops = np.atleast_1d(np.asarray(stops, dtype=float))
    if starts.shape != stops.shape or not np.all(stops >= starts):
        raise ValueError(f"time intervals must have stops >= starts, got {starts} and {stops}")
    if not np.sum(stops - starts) > 0:
        return np.array([0.5 * (starts[0] + stops[0])]), np.ones(1)
    grids, turned = [], []
    for lo, hi in zip(starts, stops):
        grid = np.linspace(lo, hi, n_grid)
        rate = np.abs(np.asarray(rate_of_time(grid), dtype=float))
        finite = np.isfinite(rate)
        rate = np.where(finite, rate, rate[finite].max() if finite.any() else 0.0)
        grids.append(grid)
        turned.append(np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1])
                                                       * np.diff(grid))]))
    total = sum(float(t[-1]) for t in turned)
    wanted = [max(1, math.ceil(t[-1] / max_angle)) if max_angle > 0 else max_samples
              for t in turned]
    if sum(wanted) > max_samples:
        log.info("FoV rotation of %.3g rad needs %d time samples; using %d", total, sum(wanted),
                 max_samples)
        wanted = [max(1, int(w * max_samples / sum(wanted))) for w in wanted]
    times, widths = [], []
    for grid, turn, n in zip(grids, turned, wanted):
        if turn[-1] > 0:
            bounds = np.interp(np.linspace(0.0, turn[-1], n + 1), turn, grid)
        else:
            bounds = np.linspace(grid[0], grid[-1], n + 1)
        bounds[0], bounds[-1] = grid[0], grid[-1]
        times.append(0.5 * (bounds[1:] + bounds[:-1]))
        widths.append(np.diff(bounds))
    times, widths = np.concatenate(times), np.concatenate(widths)
    keep = widths > 0
    return times[keep], widths[keep] / widths[keep].sum()


def run_altaz_params(info: RunInfo) -> np.ndarray:
    """ALTAZ transform constants of one run (:func:`xbkg.sky.fov.altaz_run_params`): the
    record's own ``altaz_params`` when it carries them (computed once per run), else computed
    from its run parameters (:data:`ALTAZ_RUN_KEYS` and ``timesys``)."""
    info = as_run_info(info)
    if info.altaz_params is not None:
        return info.altaz_params
    return fov.altaz_run_params(**{k: getattr(info, k) for k in ALTAZ_RUN_KEYS},
                                timesys=info.timesys)


def runs_altaz_params(runs: list[RunInfo]) -> list:
    """:func:`run_altaz_params` of many runs in one astropy call per site and time scale.

    The vectors are those each run's own call would give (:func:`xbkg.sky.fov.altaz_runs_params`,
    far cheaper than one call per run). Runs with missing or invalid values get None (their own
    call would raise: left to the caller to report).
    """
    runs = [as_run_info(r) for r in runs]
    values = np.array([[getattr(r, k) for k in ALTAZ_RUN_KEYS] for r in runs], dtype=float)
    values = values.reshape(len(runs), len(ALTAZ_RUN_KEYS))
    timesys = np.array([str(r.timesys).strip().lower() for r in runs])
    ok = (np.isfinite(values).all(axis=1) & np.isin(timesys, ("tt", "utc", "tai"))
          & (np.abs(values[:, 1]) <= 90) & (np.abs(values[:, 3]) <= 90)
          & (values[:, 8] >= values[:, 7]))
    out = [None] * len(runs)
    if ok.any():
        params = fov.altaz_runs_params(*values[ok].T[:2], timesys=timesys[ok],
                                       **dict(zip(ALTAZ_RUN_KEYS[2:], values[ok].T[2:])))
        for i, p in zip(np.flatnonzero(ok), params):
            out[i] = p
    return out


def run_time_samples(info: RunInfo, max_angle: float, *, params=None, gti=None):
    """:func:`time_samples` of one run, spaced by the rotation of its Alt/Az FoV.

    Parameters
    ----------
    info : xbkg.core.runs.RunInfo
        The run: :data:`ALTAZ_RUN_KEYS` and ``timesys``.
    max_angle : float
        Largest FoV rotation (rad) between two samples.
    params : numpy.ndarray, optional
        The run's ALTAZ constants (default: :func:`run_altaz_params`).
    gti : (array, array), optional
        START and STOP of the run's good time intervals (s, as TSTART); default: the run from
        ``info.tstart`` to ``info.tstop``. No sample falls outside them.

    Returns
    -------
    times, weights : numpy.ndarray
        Sample times (s since MJDREF) and weights summing to 1 (each sample's share of the
        observation time).
    """
    info = as_run_info(info)
    params = run_altaz_params(info) if params is None else params
    geolat = float(info.geolat)

    def rate(t):
        alt, az = fov.pointing_altaz(t, params)
        return rotation_rate(alt, az, geolat)

    starts, stops = (info.tstart, info.tstop) if gti is None else gti
    return time_samples(starts, stops, rate, max_angle)
