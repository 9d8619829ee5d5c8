"""Per-run cubes and their reduction over runs: the lazy heart of a model build.

Each run is one dask task (:func:`run_cubes`): read its events, compute FoV coordinates,
histogram the counts and compute the run's own exposure (ONTIME x energy width x solid angle, x
the run's energy mask). Counts and exposure are summed per group by a tree reduction, so memory
does not depend on the number of runs and a run's contribution is all or nothing: a run that
fails contributes neither counts nor exposure, and its error is reported (``on_error="skip"``)
or raised (``on_error="raise"``).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from .events import RunDataError, complete_run_info, read_run_events
from .exposure import energy_widths_mev
from .histogram import Binning, run_counts

__all__ = ["ON_ERROR", "run_energy_mask", "run_cubes", "group_cubes"]

ON_ERROR = ("raise", "skip")


def run_energy_mask(info: dict, energy_edges: np.ndarray) -> np.ndarray:
    """1 for energy bins the run contributes to, 0 below its threshold ``info["e_threshold"]``.

    A bin contributes when its lower edge is at or above the threshold (TeV); a run without a
    threshold (missing or NaN) contributes everywhere.
    """
    thr = float(info.get("e_threshold", np.nan))
    if not np.isfinite(thr):
        return np.ones(energy_edges.size - 1)
    # small tolerance: thresholds stored as float32 should not lose the bin that starts at them
    return (energy_edges[:-1] >= thr * (1 - 1e-6)).astype(float)


def run_cubes(info: dict, binning: Binning, solid_angle: np.ndarray, on_error: str = "raise") -> dict:
    """Counts and exposure cubes of one run (the body of each per-run task).

    Returns ``{"counts": int64 cube, "exposure": float64 cube, "error": None or message}``;
    events below the run's threshold are not counted, matching its exposure.
    """
    try:
        columns, header = read_run_events(info["events_file"], info["events_hdu"],
                                          obs_id=info["obs_id"])
        full = complete_run_info(info, header)
        counts = run_counts(columns, full, binning)
    except (RunDataError, OSError, ValueError) as exc:
        if on_error == "raise":
            if isinstance(exc, RunDataError):
                raise
            raise RunDataError(f"run {info['obs_id']} ({info['events_file']}): {exc}") from exc
        shape = binning.shape
        return {"counts": np.zeros(shape, np.int64), "exposure": np.zeros(shape),
                "error": str(exc) if isinstance(exc, RunDataError) else
                f"run {info['obs_id']} ({info['events_file']}): {exc}"}
    mask = run_energy_mask(full, binning.energy_edges)
    counts *= mask.astype(np.int64).reshape((-1,) + (1,) * (counts.ndim - 1))
    t_de = full["ontime"] * mask * energy_widths_mev(binning.energy_edges)
    exposure = t_de.reshape((-1,) + (1,) * solid_angle.ndim) * solid_angle[None]
    return {"counts": counts, "exposure": exposure, "error": None}


def _part(result: dict, name: str):
    """One run's ``counts`` or ``exposure`` cube with a leading run axis, or its ``error``."""
    value = result[name]
    return value if name == "error" else value[None]


def group_cubes(runs: list[dict], groups: np.ndarray, n_groups: int, binning: Binning,
                solid_angle: np.ndarray, *, on_error: str = "raise", split_every: int = 8):
    """Lazy per-group cubes and per-run errors.

    The graph is written directly (one task per run plus one small task per output part), so it
    costs microseconds per run to build and its size grows linearly with the number of runs.

    Returns
    -------
    counts : dask array, int64, shape ``(n_groups,) + binning.shape``
    exposure : dask array, float64, same shape (s MeV sr)
    errors : dask Delayed of a list, one entry per run (None or the error message)
    """
    from dask.delayed import Delayed

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    shape = binning.shape
    token = dask.base.tokenize(binning, solid_angle, on_error, [r["obs_id"] for r in runs], groups)
    run_name, binning_key, solid_key = (f"xbkg-run-{token}", f"xbkg-binning-{token}",
                                        f"xbkg-solid-angle-{token}")
    # the binning and solid angles are one graph node each, shared by every run's task
    dsk = {binning_key: binning, solid_key: solid_angle}
    for i, info in enumerate(runs):
        dsk[(run_name, i)] = (run_cubes, info, binning_key, solid_key, on_error)
    zeros = (0,) * len(shape)
    out = {"counts": [], "exposure": []}
    groups = np.asarray(groups)
    for g in range(n_groups):
        members = np.flatnonzero(groups == g)
        for name, dtype in (("counts", np.int64), ("exposure", np.float64)):
            if not members.size:
                out[name].append(da.zeros(shape, dtype=dtype, chunks=shape))
                continue
            part = f"xbkg-{name}-{g}-{token}"
            layer = {(part, j) + zeros: (_part, (run_name, int(i)), name)
                     for j, i in enumerate(members)}
            arr = da.Array({**dsk, **layer}, part, chunks=((1,) * members.size,) +
                           tuple((n,) for n in shape), dtype=dtype)
            out[name].append(arr.sum(axis=0, split_every=split_every))
    err_name = f"xbkg-errors-{token}"
    err_layer = {(err_name, i): (_part, (run_name, i), "error") for i in range(len(runs))}
    err_layer[err_name] = (list, [(err_name, i) for i in range(len(runs))])
    errors = Delayed(err_name, {**dsk, **err_layer})
    return da.stack(out["counts"]), da.stack(out["exposure"]), errors
