"""Per-run cubes and their reduction over runs: the lazy heart of a model build.

:func:`run_cubes` is one run's work (events -> counts and exposure); :func:`group_cubes` writes
the graph: leaf tasks of a few runs each, then per-group tree sums, so memory does not depend on
the number of runs. A run contributes all or nothing. The sums are exact (int64 counts, exposure
time in multiples of :data:`TIME_QUANTUM`), so the model does not depend on the order of the
sums (docs/architecture.rst).
"""

from __future__ import annotations

import dask
import numpy as np

from xbkg.building.histogram import run_counts
from xbkg.building.malloc import tune_malloc
from xbkg.core.binning import Binning, run_energy_mask
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.io.fitstable import read_header
from xbkg.sky.earth import run_altaz_params, runs_altaz_params
from xbkg.sky.exclusion import apply_exclusion
from xbkg.sky.exposure import energy_widths_mev
from xbkg.sky.extent import run_max_offset
from xbkg.sky.fov import haversine, offset_deg
from xbkg.store.altaz_checks import DEFAULT_ALTITUDE_TOLERANCE, check_run_geometry
from xbkg.store.events import (
    DEFAULT_COLUMNS,
    RunDataError,
    complete_run_info,
    describe_run,
    read_run,
)
from xbkg.store.runchecks import validate_run_events
from xbkg.store.selection import event_filter_columns, event_filter_mask

__all__ = ["ON_ERROR", "TIME_QUANTUM", "EVENTS_PER_TASK", "quantize_time", "exposure_scale",
           "run_energy_mask", "with_altaz_params", "filter_events", "run_cubes",
           "run_fit_statistics", "leaf_sizes",
           "group_cubes"]

ON_ERROR = ("raise", "skip")

#: Resolution (s) of the exposure times summed over runs; int64 multiples of it hold up to
#: 2**31 s (68 years) per group, with a rounding of at most 1.2e-10 s per run and bin.
TIME_QUANTUM = 2.0 ** -32


def quantize_time(seconds) -> np.ndarray:
    """Times (s) as int64 multiples of :data:`TIME_QUANTUM` (nearest), for exact sums.

    >>> quantize_time([1.0, 0.25]) * TIME_QUANTUM
    array([1.  , 0.25])
    """
    t = np.asarray(seconds, dtype=float)
    if not (np.isfinite(t).all() and (np.abs(t) < 2.0 ** 31).all()):
        raise ValueError(f"exposure times must be finite and below 2**31 s, got {t.ravel()[:5]}")
    return np.rint(t / TIME_QUANTUM).astype(np.int64)


def exposure_scale(energy_edges: np.ndarray, solid_angle: np.ndarray) -> np.ndarray:
    """Energy width (MeV) x solid angle (sr) of each bin: exposure = time (s) x this.

    Shape ``(E,) + solid_angle.shape``.
    """
    widths = energy_widths_mev(energy_edges)
    return widths.reshape((-1,) + (1,) * np.ndim(solid_angle)) * np.asarray(solid_angle)[None]


def run_cubes(info: RunInfo, binning: Binning, solid_angle: np.ndarray, on_error: str = "raise") -> dict:
    """Counts and exposure cubes of one run (the body of each per-run task).

    Returns ``{"counts": int64 cube, "time": int64 cube, "exposure": float64 cube, "error":
    None or message, "pointing": where the pointing came from}`` (the EVENTS header's when it
    has one, see :func:`xbkg.store.events.complete_run_info`): ``time`` is the exposure time (ONTIME x energy mask x fraction of the
    bin outside exclusion regions) in units of :data:`TIME_QUANTUM`, and ``exposure`` that
    time (s) x :func:`exposure_scale`. Events below the run's threshold are not counted,
    matching its exposure. The run's events and GTI are read once and checked by
    :func:`xbkg.store.runchecks.validate_run_events` first (and, for ALTAZ models, its pointing
    geometry by :func:`xbkg.store.altaz_checks.check_run_geometry`); ``info.event_filter`` then
    selects events (:func:`filter_events`). ``info`` is not changed.
    """
    info = as_run_info(info)
    try:
        columns, header, gti = read_run(info, _run_columns(info))
        full = complete_run_info(info, header)
        made_for = info.altaz_pointing or (info.ra_pnt, info.dec_pnt)
        if full.altaz_params is not None and (full.ra_pnt, full.dec_pnt) != tuple(made_for):
            # made for another pointing: redone for the header's
            full = full.with_(altaz_params=None)
        validate_run_events(columns, header, full, gti=gti)
        if binning.kind == "3d" and binning.fov_alignment == "ALTAZ":
            if full.altaz_params is None:  # once for the geometry check, exclusion and counts
                full = full.with_(altaz_params=run_altaz_params(full))
            tolerance = full.altitude_tolerance
            check_run_geometry(full, DEFAULT_ALTITUDE_TOLERANCE if tolerance is None else tolerance)
        raw, hav, max_offset = columns, None, None
        if info.measure_extent:  # the FoV extent, from all the run's events
            hav = haversine(columns["RA"], columns["DEC"], full.ra_pnt, full.dec_pnt)
            max_offset = run_max_offset(columns["RA"], columns["DEC"], full.ra_pnt,
                                        full.dec_pnt, hav=hav)
        columns = filter_events(columns, info)
        n_outer = _outer_events(columns, full)
        # exclusion regions: events inside dropped, FoV exposure fraction (1.0 without regions)
        columns, fov_fraction = apply_exclusion(columns, full, binning, gti=gti)
        counts = run_counts(columns, full, binning, hav=hav if columns is raw else None)
        mask = run_energy_mask(full, binning.energy_edges)
        fov_shape = np.shape(solid_angle)
        time = quantize_time(full.ontime * mask.reshape((-1,) + (1,) * len(fov_shape))
                             * np.broadcast_to(fov_fraction, fov_shape)[None])
    except (RunDataError, OSError, ValueError) as exc:
        if on_error == "raise":
            if isinstance(exc, RunDataError):
                raise
            raise RunDataError(f"run {info.obs_id} ({info.events_file}): {exc}") from exc
        shape = binning.shape
        return {"counts": np.zeros(shape, np.int64), "time": np.zeros(shape, np.int64),
                "exposure": np.zeros(shape), "error": str(exc) if isinstance(exc, RunDataError) else
                f"run {info.obs_id} ({info.events_file}): {exc}", "pointing": None}
    counts *= mask.astype(np.int64).reshape((-1,) + (1,) * (counts.ndim - 1))
    exposure = time * TIME_QUANTUM * exposure_scale(binning.energy_edges, solid_angle)
    return {"counts": counts, "time": time, "exposure": exposure, "error": None,
            "pointing": full.pointing_source, "n_outer": n_outer, "max_offset": max_offset}


def _run_columns(info: RunInfo) -> tuple[str, ...]:
    """Event columns a run task reads: the defaults plus those of its event filter."""
    extra = event_filter_columns(info.event_filter) if info.event_filter else ()
    return DEFAULT_COLUMNS + tuple(c for c in extra if c.upper() not in DEFAULT_COLUMNS)


def filter_events(columns: dict, info: RunInfo) -> dict:
    """The events of one run that pass ``info.event_filter`` (all when it is empty)."""
    info = as_run_info(info)
    expr = info.event_filter
    if not expr:
        return columns
    where = describe_run(info.obs_id, info.events_file, info.events_hdu)
    keep = event_filter_mask(expr, columns, where=where)
    return {name: values[keep] for name, values in columns.items()}

def _outer_events(columns: dict, info: RunInfo) -> int:
    """Events farther than ``info.outer_offset`` (deg) from the pointing (-1: not asked)."""
    if info.outer_offset is None:
        return -1

    offset = offset_deg(columns["RA"], columns["DEC"], info.ra_pnt, info.dec_pnt)
    return int(np.count_nonzero(offset > info.outer_offset))


def run_fit_statistics(part: dict, fit_bins: np.ndarray, scale: np.ndarray) -> dict:
    """One run's counts and exposure summed in coarse fit bins (energy x FoV labels).

    ``part`` is a :func:`run_cubes` result, ``fit_bins`` an int label per FoV bin (``-1``: in
    no fit bin), ``scale`` the :func:`exposure_scale` of the binning. Returns ``{"counts":
    int64 (E, B), "exposure": float64 (E, B)}`` (s MeV sr), the per-run sufficient statistics
    of :mod:`xbkg.building.conditional`, B = ``fit_bins.max() + 1``, and ``n_outer``: the run's events
    beyond ``outer_offset`` (for the ``outer_rate`` condition; -1 when not asked).
    """
    labels = np.asarray(fit_bins).ravel()
    onehot = (labels[:, None] == np.arange(int(labels.max()) + 1)[None]).astype(np.int64)
    n_e = part["counts"].shape[0]
    counts = part["counts"].reshape(n_e, -1) @ onehot
    exposure = (part["time"] * TIME_QUANTUM * scale).reshape(n_e, -1) @ onehot
    return {"counts": counts, "exposure": exposure, "n_outer": part.get("n_outer", -1)}


def with_altaz_params(runs: list[RunInfo]) -> list[RunInfo]:
    """Copies of ``runs`` with their ALTAZ constants (``altaz_params``) computed all at once.

    One astropy call per site and time scale (:func:`xbkg.sky.earth.runs_altaz_params`); the
    vectors are those a run's own call would give. Runs that have ``altaz_params`` already, or
    missing or invalid values (filled from, or reported by, their task), are left to their task.
    """
    out = [as_run_info(r) for r in runs]
    todo = [i for i, r in enumerate(out) if r.altaz_params is None]
    for i, params in zip(todo, runs_altaz_params([out[i] for i in todo])):
        if params is not None:
            out[i] = out[i].with_(altaz_params=params)
    return out


def _combine(parts: list, indices=None) -> dict:
    """Sum of run results (``indices``: their run indices) or of partial sums: int64
    ``counts`` and ``time``, ``errors`` ``{run index: message}`` and ``pointing`` ``{run
    index: where its pointing came from}``. Exact: int64 sums."""
    counts = parts[0]["counts"].copy()
    time = parts[0]["time"].copy()
    for part in parts[1:]:
        counts += part["counts"]
        time += part["time"]
    if indices is None:
        errors = {k: v for part in parts for k, v in part["errors"].items()}
        pointing = {k: v for part in parts for k, v in part["pointing"].items()}
        extent = {k: v for part in parts for k, v in part["max_offset"].items()}
    else:
        errors = {i: part["error"] for i, part in zip(indices, parts) if part["error"] is not None}
        pointing = {i: part.get("pointing") for i, part in zip(indices, parts)}
        extent = {i: part.get("max_offset") for i, part in zip(indices, parts)}
    stats = {k: v for part in parts for k, v in part.get("runstats", {}).items()}
    return {"counts": counts, "time": time, "errors": errors, "pointing": pointing,
            "runstats": stats, "max_offset": extent}


def _field(total, name: str, shape, dtype):
    """A group's ``counts`` or ``time`` cube with a leading group axis (zeros for no run)."""
    if total is None:
        return np.zeros((1,) + tuple(shape), dtype=dtype)
    return total[name][None]


def _stacked_field(totals: list, name: str, shape, dtype) -> np.ndarray:
    """Every group's ``counts`` or ``time`` cube, stacked on a leading group axis."""
    return np.concatenate([_field(total, name, shape, dtype) for total in totals])


def _exposure(time: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Exposure (s MeV sr) from summed time quanta, as the lazy arrays compute it."""
    return time.astype(np.float64) * TIME_QUANTUM * scale[None]


def _errors(totals: list, n_runs: int, field: str = "errors") -> list:
    """One entry per run: None, or the run's error message (``field`` "pointing": where the
    run's pointing came from, "max_offset": its FoV extent in deg; None for failed runs)."""
    out = [None] * n_runs
    for total in totals:
        for i, message in total[field].items():
            out[i] = message
    return out


#: Events a leaf task reads when the runs' EVENT_COUNT is known (runs are packed in order until
#: their counts reach it): a fraction of a second of one core, long enough that a
#: distributed scheduler's cost per task (a few ms on the scheduler, messages and a transfer
#: on the workers) stays small, short enough that workers finish together.
EVENTS_PER_TASK = 1_500_000
#: Runs per leaf task at most (stores of tiny runs), and when event counts are unknown.
MAX_RUNS_PER_TASK, RUNS_PER_TASK_UNKNOWN = 256, 8


def leaf_sizes(infos: list, runs_per_task: int | None = None,
               events_per_task: int | None = None) -> list[int]:
    """Numbers of consecutive runs the leaf tasks read (summing to ``len(infos)``).

    ``runs_per_task`` given: that many runs each. Otherwise runs are packed in order until
    their ``event_count`` reaches ``events_per_task`` (default :data:`EVENTS_PER_TASK`; at
    most :data:`MAX_RUNS_PER_TASK` runs); a run without a known count weighs
    ``events_per_task /`` :data:`RUNS_PER_TASK_UNKNOWN`.

    >>> leaf_sizes([RunInfo(event_count=600_000)] * 5)
    [3, 2]
    >>> leaf_sizes([RunInfo(event_count=None)] * 10)
    [8, 2]
    """
    n = len(infos)
    if runs_per_task is not None:
        step = int(runs_per_task)
        if step < 1:
            raise ValueError(f"runs per task (split_every) must be >= 1, got {runs_per_task!r}")
        return [min(step, n - i) for i in range(0, n, step)]
    if events_per_task is None:
        events_per_task = EVENTS_PER_TASK
    unknown = events_per_task / RUNS_PER_TASK_UNKNOWN
    sizes, events, runs = [], 0.0, 0
    for info in infos:
        count = as_run_info(info).event_count
        events += unknown if count is None else count
        runs += 1
        if events >= events_per_task or runs == MAX_RUNS_PER_TASK:
            sizes.append(runs)
            events, runs = 0.0, 0
    if runs:
        sizes.append(runs)
    return sizes


def _header_pointing(info: RunInfo) -> RunInfo:
    """``info`` with the pointing its run will use (:func:`xbkg.store.events.complete_run_info`):
    one header-only read (well under a ms); unchanged when the header cannot be read (the
    run's task reports it)."""
    try:
        header = read_header(info.events_file, info.events_hdu)
    except (OSError, ValueError):
        return info
    full = complete_run_info(info, header)
    return info.with_(ra_pnt=full.ra_pnt, dec_pnt=full.dec_pnt)


def _altaz_params_list(infos: list) -> list:
    """ALTAZ constants of these runs at their EVENTS-header pointing (None: left to the run's
    own task), one astropy call."""
    try:
        runs = with_altaz_params([_header_pointing(info) for info in infos])
        return [(r.altaz_params, (r.ra_pnt, r.dec_pnt)) if r.altaz_params is not None
                else None for r in runs]
    except Exception:  # noqa: BLE001 - any failure: each run's task computes and reports its own
        return [None] * len(infos)


def _run_stats(totals: list, n_runs: int, n_energy: int, fit_bins: np.ndarray):
    """Per-run fit statistics ``(counts, exposure, n_outer)``: ``(runs, E, B)`` twice and
    ``(runs,)``; failed runs 0 (``n_outer`` -1)."""
    n_bins = int(np.max(fit_bins)) + 1
    counts = np.zeros((n_runs, n_energy, n_bins), np.int64)
    exposure = np.zeros((n_runs, n_energy, n_bins))
    n_outer = np.full(n_runs, -1, np.int64)
    for total in totals:
        for i, st in total["runstats"].items():
            counts[i], exposure[i], n_outer[i] = st["counts"], st["exposure"], st["n_outer"]
    return counts, exposure, n_outer


def _run_batch(infos: list, indices: list, binning: Binning, solid_angle: np.ndarray,
               on_error: str, fit_bins=None) -> dict:
    """Summed cubes and errors of a few runs read one after the other (a leaf task).

    For a 3D ALTAZ binning the runs' ALTAZ constants are computed first, at their EVENTS
    header pointing (header-only reads, well under a ms each), all in one call
    (:func:`with_altaz_params`). Tunes this process's malloc first
    (:func:`xbkg.building.parallel.tune_malloc`). With ``fit_bins`` each run's
    :func:`run_fit_statistics` travel with the sums (``runstats``).
    """
    tune_malloc()
    params = [None] * len(infos)
    if binning.kind == "3d" and binning.fov_alignment == "ALTAZ":
        params = _altaz_params_list(infos)
    total = None
    scale = None if fit_bins is None else exposure_scale(binning.energy_edges, solid_angle)
    for info, i, p in zip(infos, indices, params):
        if p is not None:
            info = info.with_(altaz_params=p[0], altaz_pointing=p[1])
        part = run_cubes(info, binning, solid_angle, on_error)
        stats = {} if fit_bins is None or part["error"] is not None else {
            i: run_fit_statistics(part, fit_bins, scale)}
        part = _combine([part], [i])
        part["runstats"] = stats
        total = part if total is None else _combine([total, part])
    return total


def _tree(dsk: dict, name: str, infos: list, indices: list, sizes: list, split_every: int,
          run_args: tuple):
    """Add to ``dsk`` the tasks reducing these runs: leaves reading ``sizes`` runs each, then
    nodes of ``split_every`` partial sums; returns the root key."""
    keys, start = [], 0
    for j, size in enumerate(sizes):
        key = (f"{name}-0", j)
        dsk[key] = (_run_batch, infos[start:start + size], indices[start:start + size], *run_args)
        keys.append(key)
        start += size
    level = 1
    while len(keys) > 1:
        new = []
        for j in range(0, len(keys), split_every):
            key = (f"{name}-{level}", j // split_every)
            dsk[key] = (_combine, keys[j:j + split_every])
            new.append(key)
        level, keys = level + 1, new
    return keys[0]


def group_cubes(runs: list[RunInfo], groups: np.ndarray, n_groups: int, binning: Binning,
                solid_angle: np.ndarray, *, on_error: str = "raise",
                split_every: int | None = None, pointing: bool = False, fit_bins=None,
                extent: bool = False, arrays: bool = True):
    """Lazy per-group cubes and per-run errors.

    The graph is written directly, per group: leaf tasks that each read a few runs one after
    the other and sum their counts, exposure times and error messages, then a tree of tasks
    each summing ``split_every`` partial sums. By default (``split_every`` None and no dask
    ``split_every`` setting) a leaf reads runs until :data:`EVENTS_PER_TASK` events by the obs
    index's EVENT_COUNT (:func:`leaf_sizes`; 8 runs when the counts are unknown) and the tree
    sums 8 at a time; a ``split_every`` (argument or dask setting) sets both the runs per leaf
    and the tree's fan-in. A task holds one run's events at a time, and a store makes about
    one task per 1.5 million events (one per run for bigger runs), so scheduling costs little
    (on a distributed cluster, a few ms per task). For ALTAZ, each leaf first computes its
    runs' constants in one astropy call (:func:`with_altaz_params`). Building the graph
    computes nothing and costs microseconds per run. The sums are exact, so the result does not depend on the task
    sizes or the order of the runs (module docstring).

    With ``arrays`` False, ``counts`` and ``exposure`` are dask Delayed objects of the whole
    numpy cubes instead of dask arrays: the same graph and the same values, for a build that
    computes at once without importing :mod:`dask.array`.

    Returns
    -------
    counts : dask array, int64, shape ``(n_groups,) + binning.shape``
    exposure : dask array, float64, same shape (s MeV sr)
    errors : dask Delayed of a list, one entry per run (None or the error message)
    pointing_sources : dask Delayed of a list, only with ``pointing=True``
        One entry per run: where its pointing came from (see
        :func:`xbkg.store.events.complete_run_info`), None for runs that failed.
    run_stats : dask Delayed of ``(counts, exposure, n_outer)``: ``(runs, E, B)`` twice, ``(runs,)``
        Only with ``fit_bins`` (an int label per FoV bin, -1 for none): every run's counts and
        exposure in the coarse fit bins (:func:`run_fit_statistics`), gathered by the same
        leaf tasks in the same pass over the events (a few numbers per run travel with the
        partial sums).
    max_offsets : dask Delayed of a list, only with ``extent=True``
        One entry per run: its FoV extent (deg, :func:`xbkg.building.survey.run_max_offset` of all its
        events), measured by the same leaf tasks; None for failed runs.
    """
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if split_every is None:
        split_every = dask.config.get("split_every", None)
    if split_every is not None and (isinstance(split_every, bool) or int(split_every) < 1):
        raise ValueError(f"split_every must be an integer >= 1, got {split_every!r}")
    runs_per_task = split_every
    split_every = max(2, int(split_every or 8))
    shape = binning.shape
    runs = [as_run_info(r) for r in runs]
    if extent:
        runs = [r.with_(measure_extent=True) for r in runs]
    groups = np.asarray(groups)
    # the runs of each group, and of none (last: for their errors only), and their leaves
    members = [np.flatnonzero(groups == g) for g in range(n_groups)]
    members.append(np.flatnonzero((groups < 0) | (groups >= n_groups)))
    sizes = [leaf_sizes([runs[i] for i in m], runs_per_task) for m in members]
    token = dask.base.tokenize(binning, solid_angle, on_error, [r.obs_id for r in runs], groups,
                               [r.events_file for r in runs], sizes, split_every,
                               # per-run options that change a run's cubes: their own keys
                               [r.e_threshold for r in runs],
                               [(i, r.exclusion) for i, r in enumerate(runs) if r.exclusion],
                               fit_bins, [r.outer_offset for r in runs], extent)
    binning_key, solid_key = f"xbkg-binning-{token}", f"xbkg-solid-angle-{token}"
    # the binning and solid angles are one graph node each, shared by every leaf task
    dsk = {binning_key: binning, solid_key: solid_angle}
    run_args = (binning_key, solid_key, on_error)
    if fit_bins is not None:
        fit_bins = np.asarray(fit_bins, dtype=np.int64).reshape(np.shape(solid_angle))
        dsk[f"xbkg-fit-bins-{token}"] = fit_bins
        run_args += (f"xbkg-fit-bins-{token}",)
    roots = []
    for g, m, size in zip(list(range(n_groups)) + [-1], members, sizes):
        roots.append(_tree(dsk, f"xbkg-group{g}-{token}", [runs[i] for i in m], m.tolist(), size,
                           split_every, run_args)
                     if m.size else None)
    # the tree is one named layer that counts, time and errors all depend on: merged, they
    # share it, and dask's graph optimisation cannot fuse a copy of it into each (which read
    # every run two or three times when the model's arrays were computed together)
    tree = f"xbkg-tree-{token}"

    def graph(name: str, layer: dict) -> HighLevelGraph:
        return HighLevelGraph({tree: dsk, name: layer}, {tree: set(), name: {tree}})

    scale = exposure_scale(binning.energy_edges, solid_angle)
    if arrays:
        counts, exposure = _cube_arrays(graph, token, roots[:n_groups], shape, scale)
    else:
        counts, exposure = _cube_delayed(graph, token, roots[:n_groups], shape, scale)
    err_name, pnt_name = f"xbkg-errors-{token}", f"xbkg-pointing-{token}"
    errors = Delayed(err_name, graph(err_name, {err_name: (
        _errors, [r for r in roots if r is not None], len(runs))}))
    out = [counts, exposure, errors]
    if pointing:
        out.append(Delayed(pnt_name, graph(pnt_name, {pnt_name: (
            _errors, [r for r in roots if r is not None], len(runs), "pointing")})))
    if fit_bins is not None:
        stats_name = f"xbkg-runstats-{token}"
        out.append(Delayed(stats_name, graph(stats_name, {stats_name: (
            _run_stats, [r for r in roots if r is not None], len(runs),
            len(binning.energy_edges) - 1, fit_bins)})))
    if extent:
        ext_name = f"xbkg-max-offset-{token}"
        out.append(Delayed(ext_name, graph(ext_name, {ext_name: (
            _errors, [r for r in roots if r is not None], len(runs), "max_offset")})))
    return tuple(out)


def _cube_arrays(graph, token: str, roots: list, shape: tuple, scale: np.ndarray):
    """Counts and exposure of :func:`group_cubes` as dask arrays, one chunk per group."""
    import dask.array as da

    zeros = (0,) * len(shape)
    arrays = {}
    for name in ("counts", "time"):
        key = f"xbkg-{name}-{token}"
        layer = {(key, g) + zeros: (_field, root, name, shape, np.int64)
                 for g, root in enumerate(roots)}
        arrays[name] = da.Array(graph(key, layer), key, dtype=np.int64,
                                chunks=((1,) * len(roots),) + tuple((n,) for n in shape))
    return arrays["counts"], arrays["time"].astype(np.float64) * TIME_QUANTUM * scale[None]


def _cube_delayed(graph, token: str, roots: list, shape: tuple, scale: np.ndarray):
    """Counts and exposure of :func:`group_cubes` as dask Delayed of numpy cubes."""
    from dask.delayed import Delayed

    counts_key, time_key = f"xbkg-counts-{token}", f"xbkg-time-{token}"
    exposure_key = f"xbkg-exposure-{token}"
    counts = Delayed(counts_key, graph(counts_key, {counts_key: (
        _stacked_field, list(roots), "counts", shape, np.int64)}))
    layer = {time_key: (_stacked_field, list(roots), "time", shape, np.int64),
             exposure_key: (_exposure, time_key, scale)}
    return counts, Delayed(exposure_key, graph(exposure_key, layer))
