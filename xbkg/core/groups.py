"""Groups of runs as data: the bounds of each group, its summary, and folds of runs."""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.core.binning import BOUNDS_DIM

__all__ = ["PERIODIC_COLUMNS", "bounds_groups", "group_summary", "extra_columns", "group_bounds",
           "assign_folds"]


#: Obs-table columns whose values are periodic, with their period.
PERIODIC_COLUMNS = {"AZ_PNT": 360.0}



def _wrap(values, lo, period):
    return values if period is None else lo + np.mod(values - lo, period)



def bounds_groups(values: dict, bounds: dict, periods: dict | None = None) -> np.ndarray:
    """The first group whose bounds contain each run; -1 when none does.

    Parameters
    ----------
    values : dict of column -> array (one value per run)
    bounds : dict of column -> array ``(G, 2)`` of ``[lo, hi)`` bounds per group. A value equal
        to the largest ``hi`` of its column counts as inside (closed last bin).
    periods : dict of column -> period, for periodic columns (values are wrapped per group).

    >>> bounds_groups({"z": np.array([10.0, 30.0, 60.0])}, {"z": np.array([[0, 20], [20, 60]])})
    array([0, 1, 1])
    """
    periods = periods or {}
    names = list(bounds)
    n = np.asarray(values[names[0]]).size
    n_groups = np.asarray(bounds[names[0]]).shape[0]
    member = np.ones((n_groups, n), dtype=bool)
    for name in names:
        b = np.asarray(bounds[name], dtype=float)
        v = np.asarray(values[name], dtype=float)[None, :]
        lo, hi = b[:, :1], b[:, 1:]
        v = _wrap(v, lo, periods.get(name))
        top = np.nanmax(b[:, 1])
        member &= (v >= lo) & ((v < hi) | ((v == hi) & (hi == top)))
    out = np.where(member.any(axis=0), member.argmax(axis=0), -1)
    return out.astype("int64")



def group_summary(groups, ontime, zenith, n_groups: int) -> dict[str, np.ndarray]:
    """Per-group ``group_n_obs``, ``group_ontime`` (s), ``group_mean_cos_zenith`` (weighted by
    ONTIME; NaN for an empty group) from per-run labels (``-1`` ignored)."""
    groups = np.asarray(groups, dtype="int64")
    ok = groups >= 0
    g, t = groups[ok], np.asarray(ontime, dtype=float)[ok]
    cos_z = np.cos(np.radians(np.asarray(zenith, dtype=float)[ok]))
    g_time = np.bincount(g, weights=t, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        g_cos = np.bincount(g, weights=t * cos_z, minlength=n_groups) / g_time
    return {"group_n_obs": np.bincount(g, minlength=n_groups).astype("int64"),
            "group_ontime": g_time, "group_mean_cos_zenith": g_cos}



def extra_columns(grouping: xr.Dataset) -> list[str]:
    """The extra grouping columns of a grouping or model Dataset (``[]`` for zenith only)."""
    text = str(grouping.attrs.get("group_by", "")).strip()
    return [c for c in text.split(",") if c]



def group_bounds(grouping: xr.Dataset) -> dict[str, np.ndarray]:
    """``{"zenith": (G, 2) bounds, <COLUMN>: (G, 2) bounds, ...}`` of a grouping or model."""
    return {name: np.asarray(grouping[f"{name}_bounds"].transpose("zenith_group", BOUNDS_DIM)
                             .values, dtype=float) for name in ["zenith"] + extra_columns(grouping)}


def assign_folds(obs_ids, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold (0 .. n_folds-1) of each run: deterministic for a seed, sizes differ by at most one.

    The result depends on the set of OBS_IDs, not on their order.

    >>> assign_folds([10, 11, 12, 13, 14], n_folds=2, seed=0).tolist()
    [1, 0, 0, 0, 1]
    >>> sorted(np.bincount(assign_folds(range(45), 5)).tolist())
    [9, 9, 9, 9, 9]
    """
    obs = np.asarray(obs_ids, dtype="int64").ravel()
    n_folds = int(n_folds)
    if np.unique(obs).size != obs.size:
        raise ValueError("assign_folds: duplicate OBS_IDs")
    if not 2 <= n_folds <= obs.size:
        raise ValueError(f"n_folds must be between 2 and the number of runs ({obs.size}), "
                         f"got {n_folds}")
    order = np.argsort(obs, kind="stable")
    shuffled = order[np.random.default_rng(seed).permutation(obs.size)]
    folds = np.empty(obs.size, dtype="int64")
    folds[shuffled] = np.arange(obs.size) % n_folds
    return folds
