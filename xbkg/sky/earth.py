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
    equal rotation (``|rate_of_time(t)|`` in rad/s, integrated on an ``n_grid`` grid); each
    part's sample is the time at which the FoV has turned by the part's time-mean angle (its
    mid-time when the rate is constant), so that the weighted samples average anything linear
    in the angle exactly, however the rate changes within a part; weights are the parts'
    durations over the total. At most ``max_samples`` samples in all (then the rotation per
    sample is larger than asked).

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
        times.append(_mean_angle_times(bounds, grid, turn))
        widths.append(np.diff(bounds))
    times, widths = np.concatenate(times), np.concatenate(widths)
    keep = widths > 0
    return times[keep], widths[keep] / widths[keep].sum()


def _mean_angle_times(bounds, grid, turn) -> np.ndarray:
    """Time in each part ``bounds[k], bounds[k + 1]`` at which the angle ``turn`` (tabulated on
    ``grid``, linear between) takes its time-mean over the part; mid-times where it stays.

    >>> _mean_angle_times(np.array([0.0, 2.0]), np.array([0.0, 1.0, 2.0]),
    ...                   np.array([0.0, 0.0, 1.0])).tolist()  # turning in the second half only
    [1.25]
    """
    cell = np.clip(np.searchsorted(grid, bounds, "right") - 1, 0, grid.size - 2)
    at = np.interp(bounds, grid, turn)
    area = np.concatenate([[0.0], np.cumsum(0.5 * (turn[1:] + turn[:-1]) * np.diff(grid))])
    area = area[cell] + 0.5 * (bounds - grid[cell]) * (turn[cell] + at)  # integral to bounds
    width = np.diff(bounds)
    mid = 0.5 * (bounds[1:] + bounds[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.diff(area) / width
    turns = (at[1:] > at[:-1]) & (width > 0)
    out = mid.copy()
    # first time the angle reaches its mean (turn is non-decreasing: rising segments only)
    up = np.flatnonzero(np.diff(turn) > 0)
    if turns.any() and up.size:
        lo, hi = turn[up], turn[up + 1]
        j = np.clip(np.searchsorted(hi, mean[turns], "left"), 0, up.size - 1)
        k = up[j]
        frac = np.clip((mean[turns] - lo[j]) / (hi[j] - lo[j]), 0.0, 1.0)
        out[turns] = np.clip(grid[k] + frac * (grid[k + 1] - grid[k]), bounds[:-1][turns],
                             bounds[1:][turns])
    return out


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
