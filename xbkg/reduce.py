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


def group_cubes(runs: list[dict], groups: np.ndarray, n_groups: int, binning: Binning,
                solid_angle: np.ndarray, *, on_error: str = "raise", split_every: int = 8):
    """Lazy per-group cubes and per-run errors.

    Returns
    -------
    counts : dask array, int64, shape ``(n_groups,) + binning.shape``
    exposure : dask array, float64, same shape (s MeV sr)
    errors : list of dask delayed objects, one per run (None or the error message)
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    shape = binning.shape
    tasks = [dask.delayed(run_cubes, pure=True)(info, binning, solid_angle, on_error,
                                                 dask_key_name=f"run-cubes-{info['obs_id']}")
             for info in runs]
    out = {"counts": [], "exposure": []}
    for g in range(n_groups):
        members = [t for t, gr in zip(tasks, groups) if gr == g]
        for name, dtype in (("counts", np.int64), ("exposure", np.float64)):
            if not members:
                out[name].append(da.zeros(shape, dtype=dtype, chunks=shape))
                continue
            blocks = [da.from_delayed(t[name], shape=shape, dtype=dtype)[None] for t in members]
            out[name].append(da.concatenate(blocks).sum(axis=0, split_every=split_every))
    return da.stack(out["counts"]), da.stack(out["exposure"]), [t["error"] for t in tasks]
