"""Checks of one run's data before it enters a model (pure functions, run inside each run's task).

A run whose data cannot be trusted contributes neither counts nor exposure:
:func:`validate_run_events` rejects the whole run with a
:class:`~xbkg.store.events.RunDataError` naming the run, its file and the problem. What is
rejected, and why: docs/architecture.rst.
"""

from __future__ import annotations

import numpy as np

from xbkg.core.runs import RunInfo, as_run_info
from xbkg.store.datastore import takes_store
from xbkg.store.events import RunDataError, describe_run

__all__ = ["GTI_TOLERANCE", "MEDIAN_OFFSET_MAX", "ENERGY_MEDIAN_RANGE", "validate_run_events",
           "outside_gti", "ontime_problems"]

#: Seconds by which an event may lie outside its run's GTI. GTI bounds are often whole
#: seconds: in H.E.S.S. DR1, 89 of 105 runs have events after the STOP, by up to 0.93 s.
GTI_TOLERANCE = 2.0

#: Degrees: a run whose median event offset from the pointing is larger is rejected.
#: H.E.S.S. DR1 runs have median offsets up to 1.7 deg; wide-field cameras stay well below.
MEDIAN_OFFSET_MAX = 6.0

#: TeV: plausible range of a run's median event energy. IACT event lists have medians of
#: 0.05-2 TeV; energies in GeV or MeV labelled TeV (or TeV labelled GeV) fall outside.
ENERGY_MEDIAN_RANGE = (1e-3, 1e2)


def outside_gti(time: np.ndarray, start: np.ndarray, stop: np.ndarray,
                tolerance: float = GTI_TOLERANCE) -> np.ndarray:
    """Boolean mask of the times outside every interval ``[start - tol, stop + tol]``.

    Intervals may be unsorted or overlap.

    >>> outside_gti(np.array([-0.5, 5.0, 7.0, 12.0, 30.0]), np.array([10.0, 1.0]),
    ...             np.array([20.0, 4.0]), tolerance=1.0)
    array([ True, False,  True, False,  True])
    """
    order = np.argsort(start, kind="stable")
    lo = np.asarray(start, dtype=float)[order] - tolerance
    # the farthest STOP among the intervals starting before each time covers it, if any does
    hi = np.maximum.accumulate(np.asarray(stop, dtype=float)[order]) + tolerance
    idx = np.searchsorted(lo, time, side="right") - 1
    inside = idx >= 0
    inside[inside] = time[inside] <= hi[idx[inside]]
    return ~inside


#: Medians (energy, offset) are taken on at most this many events, evenly strided: they only
#: need to tell a right unit or pointing from a wrong one.
_MEDIAN_SAMPLE = 256


def _sample(values: np.ndarray) -> np.ndarray:
    return values[:: max(1, values.size // _MEDIAN_SAMPLE)]


def _median(values: np.ndarray) -> float:
    """``np.median`` of finite values, by partition (``np.median`` costs ~10x more here).

    >>> _median(np.array([3.0, 1.0, 2.0])), _median(np.array([4.0, 1.0, 2.0, 3.0]))
    (2.0, 2.5)
    """
    v = np.asarray(values, dtype=float).ravel()
    k = v.size // 2
    if v.size % 2:
        return float(np.partition(v, k)[k])
    part = np.partition(v, [k - 1, k])
    return float(0.5 * (part[k - 1] + part[k]))


def _offset_deg(ra, dec, ra_pnt, dec_pnt):
    """Angular distance (deg) by the cosine formula: coarse (no better than ~1e-4 deg near 0)
    but with no per-call overhead; enough to compare a median with degrees."""
    ra, dec, ra0, dec0 = (np.radians(v) for v in (ra, dec, ra_pnt, dec_pnt))
    cos = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _fraction(n: int, total: int) -> str:
    return f"{n} of {total} events ({100.0 * n / total:.3g}%)"


def _check_gti(time: np.ndarray, gti, n: int, time_range=None) -> str | None:
    start, stop = (np.asarray(a, dtype=float).ravel() for a in gti)
    if start.size == 0:
        return "the GTI table is empty"
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(stop))):
        return "the GTI has START or STOP values that are NaN or infinite"
    if np.any(stop < start):
        return "the GTI has intervals with STOP < START"
    t_min, t_max = (time.min(), time.max()) if time_range is None else time_range
    if start.size == 1 and start[0] - GTI_TOLERANCE <= t_min and t_max <= stop[0] + GTI_TOLERANCE:
        return None  # the usual single interval: two reductions instead of a search
    out = outside_gti(time, start, stop)
    if out.any():
        return (f"{_fraction(int(out.sum()), n)} have TIME outside the GTI "
                f"[{start.min():.1f}, {stop.max():.1f}] s by more than {GTI_TOLERANCE:g} s "
                f"(TIME range {time.min():.1f} to {time.max():.1f} s): wrong TIME column, time "
                "reference or GTI")
    return None


def _ontime_problem(ontime: float) -> str | None:
    if np.isfinite(ontime) and ontime > 0:
        return None
    return f"ONTIME is {ontime} s (missing or <= 0 in the obs index and the EVENTS header)"


@takes_store("store")
def ontime_problems(store) -> dict[int, str]:
    """Runs of an observation Dataset whose ``ontime`` is missing or <= 0: OBS_ID -> message.

    The vectorised form of the ONTIME check of :func:`validate_run_events`, for use before
    grouping (a run without exposure must not weigh on the choice of groups).
    """
    ontime = store["ontime"].values.astype(float)
    bad = np.flatnonzero(~(ontime > 0))
    files, hdus = store["events_file"].values, store["events_hdu"].values
    return {int(store.obs_id.values[i]):
            f"{describe_run(int(store.obs_id.values[i]), files[i], hdus[i])}: "
            f"{_ontime_problem(ontime[i])}" for i in bad}


def _problem(columns: dict, info: RunInfo, gti) -> str | None:
    """The first problem found with a run's data, or None."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        return "empty event list (0 events)"
    problem = _ontime_problem(info.ontime)
    if problem:
        return problem
    # one min and one max per column find NaN and inf (they propagate) and the ranges
    ranges = {name: (values.min(), values.max()) for name, values in columns.items()}
    for name, values in columns.items():
        if not np.isfinite(ranges[name]).all():
            bad = ~np.isfinite(values)
            return f"column {name} has {int(bad.sum())} NaN or infinite values (of {n})"
    if "ENERGY" in columns:
        energy = columns["ENERGY"]
        if ranges["ENERGY"][0] <= 0:
            return f"{_fraction(int(np.sum(energy <= 0)), n)} have ENERGY <= 0"
        median, (lo, hi) = _median(_sample(energy)), ENERGY_MEDIAN_RANGE
        if not lo <= median <= hi:
            return (f"median ENERGY is {median:.4g} TeV, outside {lo:g}-{hi:g} TeV: "
                    "wrong energy unit?")
    if "DEC" in columns and max(-ranges["DEC"][0], ranges["DEC"][1]) > 90:
        return f"{_fraction(int(np.sum(np.abs(columns['DEC']) > 90)), n)} have |DEC| > 90 deg"
    if "RA" in columns and "DEC" in columns:
        ra_pnt, dec_pnt = info.ra_pnt, info.dec_pnt
        if not (np.isfinite(ra_pnt) and np.isfinite(dec_pnt) and abs(dec_pnt) <= 90):
            return f"pointing RA_PNT, DEC_PNT = {ra_pnt}, {dec_pnt} deg is missing or invalid"
        median = _median(_offset_deg(_sample(columns["RA"]), _sample(columns["DEC"]), ra_pnt,
                                     dec_pnt))
        if median > MEDIAN_OFFSET_MAX:
            return (f"events are not around the pointing (RA_PNT, DEC_PNT = {ra_pnt:.3f}, "
                    f"{dec_pnt:.3f} deg): median offset {median:.1f} deg > {MEDIAN_OFFSET_MAX:g} "
                    "deg; wrong pointing or angle unit?")
    if gti is not None and "TIME" in columns:
        return _check_gti(columns["TIME"], gti, n, ranges["TIME"])
    return None


def validate_run_events(columns: dict, header: dict, info: RunInfo, *, gti=None) -> None:
    """Raise :class:`~xbkg.store.events.RunDataError` if a run's data must not enter a model.

    The checks and why they reject a run are listed in the module docstring.

    Parameters
    ----------
    columns : dict[str, numpy.ndarray]
        Event columns in canonical units (:func:`xbkg.store.events.read_run`); checks apply to the
        columns present among ENERGY, RA, DEC, TIME.
    header : dict
        The EVENTS header (used for the EVENTS HDU name in messages, ``EXTNAME``).
    info : xbkg.core.runs.RunInfo
        Run parameters completed from the header (:func:`xbkg.store.events.complete_run_info`):
        ``obs_id``, ``events_file``, ``ontime`` (s), ``ra_pnt``, ``dec_pnt`` (deg).
    gti : (array, array), optional
        START and STOP (s, same reference as TIME); None skips the GTI checks.

    Raises
    ------
    RunDataError
        Naming the run, its file and the first problem found.

    Examples
    --------
    >>> info = RunInfo(obs_id=7, events_file="run7.fits", ontime=0.0, ra_pnt=0.0, dec_pnt=0.0)
    >>> validate_run_events({"ENERGY": np.array([1.0])}, {}, info)
    Traceback (most recent call last):
    ...
    xbkg.store.events.RunDataError: run 7 (run7.fits, HDU EVENTS): ONTIME is 0.0 s (missing or <= 0 in the obs index and the EVENTS header)
    """
    info = as_run_info(info)
    problem = _problem(columns, info, gti)
    if problem is not None:
        hdu = info.events_hdu or header.get("EXTNAME") or "EVENTS"
        raise RunDataError(f"{describe_run(info.obs_id, info.events_file, hdu)}: "
                           f"{problem}")
