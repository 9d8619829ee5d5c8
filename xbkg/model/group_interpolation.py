"""Per-run models: interpolate a grouped model between its groups in cos(zenith).

A run at zenith ``z`` gets, bin by bin, the log-linear (default), linear or nearest-group rate,
with weights decided per energy slice from the groups that have exposure there. The result is a
one-group model in the :mod:`xbkg.core.schema` layout; lazy models stay lazy. The rules:
docs/architecture.rst.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from xbkg.core.binning import BOUNDS_DIM, edges_of, run_energy_mask
from xbkg.core.groups import PERIODIC_COLUMNS, bounds_groups, extra_columns, group_bounds
from xbkg.core.runs import RunInfo
from xbkg.core.schema import fov_dims
from xbkg.store.datastore import takes_store

__all__ = ["METHODS", "MIN_LOG_COUNTS", "slice_cos_zenith", "interpolation_weights", "model_for_observation",
           "models_for_observations"]

METHODS = ("log", "linear", "nearest")
#: Fewest counts of every group used in a bin for log interpolation there (else linear).
MIN_LOG_COUNTS = 20

_TINY = float(np.finfo(np.float32).tiny)


def _has_runs(model: xr.Dataset) -> bool:
    return all(v in model for v in ("obs_group", "obs_ontime", "obs_zenith"))


def _run_slice_weights(model: xr.Dataset):
    """Group, cos(zenith) and ``ONTIME x energy mask`` ``(R, E)`` of the model's runs."""
    energy = edges_of(model, "energy")
    groups = np.asarray(model["obs_group"].values, dtype="int64")
    ontime = np.asarray(model["obs_ontime"].values, dtype=float)
    cos_z = np.cos(np.radians(np.asarray(model["obs_zenith"].values, dtype=float)))
    thr = (np.asarray(model["obs_energy_threshold"].values, dtype=float)
           if "obs_energy_threshold" in model else np.full(groups.size, np.nan))
    masks = np.array([run_energy_mask(RunInfo(e_threshold=e), energy) for e in thr]).reshape(
        groups.size, energy.size - 1)
    return groups, cos_z, ontime[:, None] * masks


def slice_cos_zenith(model: xr.Dataset) -> np.ndarray:
    """cos(zenith) node of each energy slice of each group, shape ``(G, E)``: the
    observation-time-weighted mean cos z of the runs that contribute exposure to the slice
    (with energy thresholds only some of a group's runs reach its lowest energies); NaN where
    no run contributes.

    Uses the model's ``obs_group, obs_ontime, obs_zenith`` and ``obs_energy_threshold`` (when
    present); a model without runs falls back to ``group_mean_cos_zenith`` (or the cosine of
    the middle of the zenith bounds) for every slice of a group.
    """
    n_groups, n_energy = model.sizes["zenith_group"], model.sizes["energy"]
    if not _has_runs(model):
        return np.repeat(_group_nodes(model)[:, None], n_energy, axis=1)
    groups, cos_z, weight = _run_slice_weights(model)
    ok = groups >= 0
    time = np.zeros((n_groups, n_energy))
    weighted = np.zeros((n_groups, n_energy))
    np.add.at(time, groups[ok], weight[ok])
    np.add.at(weighted, groups[ok], weight[ok] * cos_z[ok, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(time > 0, weighted / time, np.nan)


def _group_nodes(model: xr.Dataset) -> np.ndarray:
    """``group_mean_cos_zenith``, else cos of the middle of each group's zenith bounds."""
    middle = np.cos(np.radians(group_bounds(model)["zenith"].mean(axis=1)))
    if "group_mean_cos_zenith" not in model:
        return middle
    nodes = np.asarray(model["group_mean_cos_zenith"].values, dtype=float)
    return np.where(np.isfinite(nodes), nodes, middle)


def interpolation_weights(nodes, cos_zenith: float, method: str = "log", fallback=None, *,
                          extrapolate: bool = False, min_spacing: float = 0.02) -> np.ndarray:
    """Weights ``(G, E)`` of each group in each energy slice for a run at ``cos_zenith``.

    Parameters
    ----------
    nodes : array ``(G, E)``
        cos(zenith) node of each group and slice; NaN where the group cannot be used.
    cos_zenith : float
    method : {"log", "linear", "nearest"}
        "nearest" puts all the weight on the nearest node; the others interpolate linearly
        between the bracketing nodes (they differ in how rates are combined).
    fallback : array ``(G,)``, optional
        Nodes for slices where every node is NaN (default: such slices get weight 0).
    extrapolate : bool
        Beyond the outermost node, extrapolate linearly from the two outermost nodes that are
        at least ``min_spacing`` apart in cos z (weights outside [0, 1]), at most by their
        spacing (farther runs get the value at that distance); default: hold the outermost
        node.
    min_spacing : float

    Examples
    --------
    >>> nodes = np.array([[0.9, 0.9], [np.nan, 0.7]])
    >>> interpolation_weights(nodes, 0.8)
    array([[1. , 0.5],
           [0. , 0.5]])
    >>> interpolation_weights(nodes, 0.6, extrapolate=True)[:, 1]
    array([-0.5,  1.5])
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    nodes = np.asarray(nodes, dtype=float)
    c = float(cos_zenith)
    weights = np.zeros(nodes.shape)
    for e in range(nodes.shape[1]):
        col = nodes[:, e]
        if not np.isfinite(col).any() and fallback is not None:
            col = np.asarray(fallback, dtype=float)
        valid = np.flatnonzero(np.isfinite(col))
        if valid.size == 0:
            continue
        order = valid[np.argsort(col[valid], kind="stable")]
        x = col[order]
        nearest = int(np.argmin(np.abs(x - c)))
        if method == "nearest" or x.size == 1:
            pair = None
        elif x[0] <= c <= x[-1]:
            k = int(np.clip(np.searchsorted(x, c, side="right"), 1, x.size - 1))
            pair = (k - 1, k)
        elif not extrapolate:
            pair = None
        elif c < x[0]:
            far = np.flatnonzero(x - x[0] >= min_spacing)
            pair = (0, int(far[0])) if far.size else None
        else:
            far = np.flatnonzero(x[-1] - x >= min_spacing)
            pair = (int(far[-1]), x.size - 1) if far.size else None
        if pair is None or x[pair[1]] == x[pair[0]]:
            weights[order[nearest], e] = 1.0
            continue
        i0, i1 = pair
        t = float(np.clip((c - x[i0]) / (x[i1] - x[i0]), -1.0, 2.0))
        weights[order[i0], e] += 1.0 - t
        weights[order[i1], e] += t
    return weights


def _candidate_groups(model: xr.Dataset, extra: dict | None) -> np.ndarray:
    """Mask of the groups whose extra-column bounds contain the run's values."""
    names = extra_columns(model)
    n_groups = model.sizes["zenith_group"]
    if not names:
        return np.ones(n_groups, dtype=bool)
    extra = dict(extra or {})
    missing = [n for n in names if n not in extra]
    if missing:
        raise KeyError(f"the model is grouped by {names}: give the run's values of {missing} "
                       "(extra={...})")
    ok = np.ones(n_groups, dtype=bool)
    bounds = group_bounds(model)
    for name in names:
        b = bounds[name]
        value = np.array([float(extra[name])])
        ok &= np.array([bounds_groups({name: value}, {name: b[g:g + 1]}, PERIODIC_COLUMNS)[0] == 0
                        for g in range(n_groups)])
    if not ok.any():
        raise ValueError(f"no group of the model contains the run's values {extra}")
    return ok


def model_for_observation(model: xr.Dataset, zenith: float, *, method: str = "log",
                          extra: dict | None = None, obs_id=None,
                          extrapolate: bool = True,
                          min_counts: int = MIN_LOG_COUNTS) -> xr.Dataset:
    """The model of one run at ``zenith`` (deg), interpolated between groups (module docstring).

    Parameters
    ----------
    model : xarray.Dataset
        A grouped model (:mod:`xbkg.core.schema` layout).
    zenith : float
        The run's mean zenith angle (deg).
    method : {"log", "linear", "nearest"}
        Interpolation in log rate (default), in rate, or the nearest group per energy slice.
    extra : dict, optional
        The run's values of the model's extra grouping columns (e.g. ``{"AZ_PNT": 120.0}``).
    obs_id : int, optional
        Recorded in the ``per_run`` attribute.
    extrapolate : bool
        Beyond the outermost node of a slice, extrapolate from the two outermost nodes (by
        at most their spacing; default) instead of holding the outermost one
        (:func:`interpolation_weights`).
    min_counts : int
        ``method="log"``: in a bin where a group with non-zero weight has fewer counts than
        this, the rate is interpolated linearly between the bracketing groups, without
        extrapolation, instead (needs the model's ``counts``).

    Returns
    -------
    xarray.Dataset
        One-group model.

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> counts = np.array([[[400]], [[100]]])          # 2 groups, 1 energy bin, 1 offset bin
    >>> model = assemble_model(counts, np.ones((2, 1, 1)), kind="2d", energy_edges=[1, 2],
    ...     fov_edges={"offset": [0, 1]}, zenith_edges=[0, 40, 60], fov_alignment="ALTAZ",
    ...     offset_max=1.0)
    >>> model = model.assign(group_mean_cos_zenith=("zenith_group", [0.9, 0.6]))
    >>> run = model_for_observation(model, np.degrees(np.arccos(0.75)))  # half-way in cos z
    >>> round(float(run["rate"].squeeze()), 9)  # geometric mean of 400 and 100
    200.0
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    zenith = float(zenith)
    if not np.isfinite(zenith):
        raise ValueError(f"zenith must be finite, got {zenith!r}")
    candidates = _candidate_groups(model, extra)
    nodes = slice_cos_zenith(model)
    nodes[~candidates] = np.nan
    if not _has_runs(model) and "exposure" in model:
        # no run list (e.g. a model read from FITS): exposure tells which slices are populated
        exposed = model["exposure"].sum([d for d in model["exposure"].dims
                                         if d not in ("zenith_group", "energy")])
        nodes[~(exposed.transpose("zenith_group", "energy").values > 0)] = np.nan
    fallback = np.where(candidates, _group_nodes(model), np.nan)
    cos_z = float(np.cos(np.radians(zenith)))
    w = interpolation_weights(nodes, cos_z, method, fallback=fallback, extrapolate=extrapolate)
    dims = ("zenith_group", "energy") + fov_dims(model.attrs["kind"])
    # plain (numpy or dask) arrays: xarray's alignment would cost more than the arithmetic
    rate = model["rate"].transpose(*dims).data
    wb = w.reshape(w.shape + (1,) * (len(dims) - 2))
    # log and nearest: geometric weighting (an exact copy of the group with weight 1)
    out = np.exp((wb * np.log(np.clip(rate, _TINY, None))).sum(axis=0))
    out = np.where(out > 2 * _TINY, out, 0.0)
    if method == "linear":  # where an extrapolation would go negative, keep the log value
        linear = (wb * rate).sum(axis=0)
        out = np.where(linear > 0, linear, out)
    sparse = None
    if method == "log" and "counts" in model:
        # bins that a used group barely populates (floored or Poisson-noisy rates): log
        # interpolation would follow their log noise (a floored bin drags the rate down by up
        # to e^7 to the power of its weight); use linear interpolation without extrapolation
        counts = model["counts"].transpose(*dims).data
        sparse = ((wb != 0) & (counts < min_counts)).any(axis=0)
        w_lin = interpolation_weights(nodes, cos_z, "linear", fallback=fallback)
        wl = w_lin.reshape(wb.shape)
        out = np.where(sparse, (wl * rate).sum(axis=0), out)
    one = xr.Dataset(coords={k: v for k, v in model.coords.items()
                             if "zenith_group" not in v.dims and "obs_id" not in v.dims})
    one = one.assign_coords(zenith_group=("zenith_group", [0]),
                            zenith_bounds=(("zenith_group", BOUNDS_DIM), [[zenith, zenith]],
                                           {"units": "deg"}))
    one["rate"] = xr.Variable(dims, out[None], model["rate"].attrs)
    if "rate_error" in model:
        error = model["rate_error"].transpose(*dims).data
        used = wb != 0  # groups without exposure (NaN errors) but weight 0 do not count
        if method == "linear":
            err = np.sqrt(np.where(used, wb**2 * error**2, 0.0).sum(axis=0))
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = np.where(rate > 0, error / np.where(rate > 0, rate, 1.0), np.nan)
            err = out * np.sqrt(np.where(used, wb**2 * rel**2, 0.0).sum(axis=0))
        if sparse is not None:
            lin_err = np.sqrt(np.where(wl != 0, wl**2 * error**2, 0.0).sum(axis=0))
            err = np.where(sparse, lin_err, err)
        one["rate_error"] = xr.Variable(dims, err[None], model["rate_error"].attrs)
    one["group_mean_cos_zenith"] = ("zenith_group", [cos_z])
    one["interpolation_weight"] = xr.DataArray(
        w, dims=("source_group", "energy"),
        coords={"source_group": model["zenith_group"].values},
        attrs={"long_name": "weight of each group of the source model in this model"})
    one.attrs = {k: v for k, v in model.attrs.items() if k not in ("group_by", "grouping")}
    one.attrs["per_run"] = json.dumps({
        "obs_id": None if obs_id is None else int(obs_id), "zenith": zenith, "method": method,
        "extrapolate": bool(extrapolate), "min_log_counts": int(min_counts),
        "extra": {k: float(v) for k, v in (extra or {}).items()},
        "source_groups": model["zenith_group"].values.tolist()}, sort_keys=True)
    return one


@takes_store("store")
def models_for_observations(model: xr.Dataset, store: xr.Dataset, *, method: str = "log",
                            extrapolate: bool = True):
    """Yield ``(obs_id, model_for_observation(...))`` for every run of an observation Dataset
    (zenith from ``store["zenith"]``, extra grouping columns from the obs table)."""
    names = extra_columns(model)
    for i, obs_id in enumerate(store.obs_id.values):
        extra = {n: float(store[n].values[i]) for n in names}
        yield int(obs_id), model_for_observation(model, float(store["zenith"].values[i]),
                                                 method=method, extra=extra or None,
                                                 obs_id=int(obs_id), extrapolate=extrapolate)
