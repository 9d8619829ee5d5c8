"""Grouping runs: zenith-angle groups (declared or adaptive), optionally split by other columns.

Groups are decided from the observation table alone (no event is read), before any model is
built, so they can be inspected, saved (:mod:`xbkg.io.groups`) and reused. Kernels
(:func:`zenith_groups`, :func:`adaptive_zenith_edges`, ...) under labelled functions
(:func:`make_grouping`, :func:`assign_groups`); the adaptive method and the grouping Dataset
are described in docs/architecture.rst.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import xarray as xr

from xbkg.core.binning import BOUNDS_DIM, parse_edges
from xbkg.core.defaults import DEFAULTS
from xbkg.core.groups import (
    PERIODIC_COLUMNS,
    bounds_groups,
    extra_columns,
    group_bounds,
    group_summary,
)
from xbkg.io.groups import read_groups_table
from xbkg.store.datastore import takes_store

__all__ = [
    "DEFAULT_ZENITH_EDGES",
    "DEFAULT_MIN_ONTIME",
    "NORTH_SOUTH",
    "PERIODIC_COLUMNS",
    "GroupingError",
    "zenith_groups",
    "adaptive_zenith_edges",
    "column_groups",
    "bounds_groups",
    "group_summary",
    "make_grouping",
    "assign_groups",
    "extra_columns",
    "group_bounds",
    "resolve_grouping",
    "attach_grouping",
]

#: One group covering all zenith angles.
DEFAULT_ZENITH_EDGES = np.array([0.0, 90.0])
#: Zenith group edges must lie within these (deg).
ZENITH_LIMITS = (0.0, 90.0)

#: Default minimum observation time of an adaptive group (s), BAccMod's default.
DEFAULT_MIN_ONTIME = DEFAULTS.min_ontime

#: Extra grouping into north (azimuth -90..90 deg) and south (90..270 deg) pointings.
NORTH_SOUTH = {"AZ_PNT": [-90.0, 90.0, 270.0]}


class GroupingError(ValueError):
    """Invalid grouping options, or a grouping that does not fit the runs."""


def zenith_groups(zenith, edges=DEFAULT_ZENITH_EDGES) -> np.ndarray:
    """Group index of each run from its zenith angle (deg); -1 outside the edges.

    Bins are ``[lo, hi)`` except the last, which includes its upper edge.

    >>> zenith_groups([10.0, 25.0, 40.0, 95.0], [0, 20, 40])
    array([ 0,  1,  1, -1])
    """
    edges = parse_edges(edges, name="zenith edges")
    zenith = np.asarray(zenith, dtype=float)
    idx = np.searchsorted(edges, zenith, side="right") - 1
    idx[zenith == edges[-1]] = edges.size - 2
    idx[(idx < 0) | (idx >= edges.size - 1) | ~np.isfinite(zenith)] = -1
    return idx.astype("int64")


def adaptive_zenith_edges(zenith, ontime, *, min_ontime: float = DEFAULT_MIN_ONTIME,
                          min_runs: int = DEFAULTS.min_runs,
                          cos_zenith_step: float = DEFAULTS.cos_zenith_step,
                          zenith_range=(0.0, 90.0)) -> np.ndarray:
    """Zenith edges (deg) of groups merged from fine cos(zenith) bins (module docstring).

    Parameters
    ----------
    zenith, ontime : array
        Mean zenith angle (deg) and observation time (s) of each run. Runs outside
        ``zenith_range`` or with a non-finite zenith are ignored.
    min_ontime : float
        Minimum summed observation time of a group (s).
    min_runs : int
        Minimum number of runs of a group.
    cos_zenith_step : float
        Width of the fine bins in cos(zenith); group edges fall on fine-bin edges.
    zenith_range : (float, float)
        Zenith range (deg) covered by the groups: the first and last edges.

    Returns
    -------
    numpy.ndarray
        Increasing zenith edges; a single group ``zenith_range`` when the runs do not reach
        the minimum (or there are none).

    Examples
    --------
    >>> z = [5, 10, 15, 20, 30, 35, 50, 55]
    >>> adaptive_zenith_edges(z, [1800] * 8, min_ontime=3600, cos_zenith_step=0.05,
    ...                       zenith_range=(0, 60)).round(2)
    array([ 0.  , 25.84, 49.46, 60.  ])
    """
    lo, hi = (float(v) for v in zenith_range)
    if not 0.0 <= lo < hi <= 180.0:
        raise GroupingError(f"zenith_range must satisfy 0 <= lo < hi <= 180 deg, got {zenith_range}")
    if not cos_zenith_step > 0:
        raise GroupingError(f"cos_zenith_step must be > 0, got {cos_zenith_step}")
    if not (np.isfinite(min_ontime) and min_ontime >= 0) or int(min_runs) < 0:
        raise GroupingError(f"min_ontime and min_runs must be >= 0, got {min_ontime}, {min_runs}")
    zenith = np.asarray(zenith, dtype=float)
    ontime = np.broadcast_to(np.asarray(ontime, dtype=float), zenith.shape)
    cos_lo, cos_hi = np.cos(np.radians(hi)), np.cos(np.radians(lo))
    n_fine = max(1, int(np.ceil((cos_hi - cos_lo) / cos_zenith_step - 1e-9)))
    cos_edges = np.linspace(cos_lo, cos_hi, n_fine + 1)
    inside = np.isfinite(zenith) & (zenith >= lo) & (zenith <= hi)
    cos_z = np.cos(np.radians(zenith[inside]))
    fine = np.clip(np.searchsorted(cos_edges, cos_z, side="right") - 1, 0, n_fine - 1)
    time = np.bincount(fine, weights=ontime[inside], minlength=n_fine)
    runs = np.bincount(fine, minlength=n_fine)
    cuts = [0]  # fine-edge indices of the group edges, walking up in cos z (down in zenith)
    acc_t = acc_n = 0
    for i in range(n_fine):
        acc_t += time[i]
        acc_n += runs[i]
        if acc_n >= max(1, int(min_runs)) and acc_t >= min_ontime:
            cuts.append(i + 1)
            acc_t = acc_n = 0
    if len(cuts) == 1:
        cuts.append(n_fine)
    cuts[-1] = n_fine  # the leftover joins the last closed group
    zen = np.degrees(np.arccos(np.clip(cos_edges[cuts], -1.0, 1.0)))[::-1].copy()
    zen[0], zen[-1] = lo, hi
    return zen


def column_groups(values, edges, *, period: float | None = None) -> np.ndarray:
    """Bin index of each value (``[lo, hi)``, last bin closed); -1 outside or NaN.

    With ``period`` (e.g. 360 for azimuth) values are first wrapped into
    ``[edges[0], edges[0] + period)``; the edges must then span at most one period.

    >>> column_groups([0.0, 100.0, 350.0, 200.0], [-90, 90, 270], period=360)
    array([0, 1, 0, 1])
    """
    edges = parse_edges(edges, name="group edges")
    values = np.asarray(values, dtype=float)
    if period is not None:
        if edges[-1] - edges[0] > period + 1e-9:
            raise GroupingError(f"edges {edges.tolist()} span more than one period ({period})")
        values = edges[0] + np.mod(values - edges[0], period)
    return zenith_groups(values, edges)


def _store_column(store: xr.Dataset, name: str) -> np.ndarray:
    if name not in store:
        raise GroupingError(f"grouping column {name!r} is not in the observation table "
                            f"(columns: {sorted(v for v in store.data_vars if v.isupper())})")
    values = np.asarray(store[name].values, dtype=float)
    return values


@takes_store("store")
def make_grouping(store: xr.Dataset, zenith_edges=None, *, adaptive: bool = False,
                  min_ontime: float = DEFAULT_MIN_ONTIME, min_runs: int = DEFAULTS.min_runs,
                  cos_zenith_step: float = DEFAULTS.cos_zenith_step, zenith_range=(0.0, 90.0),
                  by: dict | None = None) -> xr.Dataset:
    """Group the runs of an observation Dataset; returns the grouping Dataset (module docstring).

    Parameters
    ----------
    store : xarray.Dataset
        Observation Dataset (:func:`xbkg.open_datastore`, usually after run selection) with
        ``zenith`` (deg) and ``ontime`` (s) filled.
    zenith_edges : array or str, optional
        Fixed zenith edges (deg); default one group 0-90 deg. Not allowed with ``adaptive``.
    adaptive : bool
        Adaptive zenith groups (:func:`adaptive_zenith_edges`) with ``min_ontime``,
        ``min_runs``, ``cos_zenith_step`` over ``zenith_range``.
    by : dict, optional
        Extra grouping: obs-table column -> edges, e.g. :data:`NORTH_SOUTH` or
        ``{"MUONEFF": [0.7, 0.9, 1.2]}``. Zenith edges are decided per cell of these columns
        (adaptive), and adaptive cells without runs get no group.

    Returns
    -------
    xarray.Dataset
        Groups on dimension ``zenith_group`` and the assignment of every run (``obs_group``;
        -1 for runs outside every group).

    Examples
    --------
    >>> store = xr.Dataset({"zenith": ("obs_id", [10.0, 20.0, 40.0]),
    ...                     "ontime": ("obs_id", [1800.0, 1800.0, 1800.0]),
    ...                     "AZ_PNT": ("obs_id", [10.0, 180.0, 350.0])},
    ...                    coords={"obs_id": [1, 2, 3]})
    >>> g = make_grouping(store, [0, 30, 60], by=NORTH_SOUTH)
    >>> g["obs_group"].values.tolist(), g["AZ_PNT_bounds"].values[:, 0].tolist()
    ([0, 2, 1], [-90.0, -90.0, 90.0, 90.0])
    """
    by = dict(by or {})
    if adaptive and zenith_edges is not None:
        raise GroupingError("give either fixed zenith_edges or adaptive=True, not both")
    zenith = np.asarray(store["zenith"].values, dtype=float)
    ontime = np.asarray(store["ontime"].values, dtype=float)
    extra = {name: _store_column(store, name) for name in by}
    extra_edges = {name: parse_edges(edges, name=f"{name} group edges") for name, edges in by.items()}
    cell_labels = {name: column_groups(extra[name], extra_edges[name],
                                       period=PERIODIC_COLUMNS.get(name)) for name in by}
    fixed = None if adaptive else parse_edges(DEFAULT_ZENITH_EDGES if zenith_edges is None
                                              else zenith_edges, name="zenith edges",
                                              limits=ZENITH_LIMITS)
    zen_bounds, extra_bounds = [], {name: [] for name in by}
    cells = itertools.product(*[range(e.size - 1) for e in extra_edges.values()])
    for cell in cells:
        in_cell = np.ones(zenith.size, dtype=bool)
        for name, k in zip(by, cell):
            in_cell &= cell_labels[name] == k
        if adaptive:
            if by and not in_cell.any():
                continue
            edges = adaptive_zenith_edges(zenith[in_cell], ontime[in_cell], min_ontime=min_ontime,
                                          min_runs=min_runs, cos_zenith_step=cos_zenith_step,
                                          zenith_range=zenith_range)
        else:
            edges = fixed
        for lo, hi in zip(edges[:-1], edges[1:]):
            zen_bounds.append((lo, hi))
            for name, k in zip(by, cell):
                extra_bounds[name].append(extra_edges[name][k:k + 2])
    bounds = {"zenith": np.array(zen_bounds, dtype=float)}
    bounds.update({name: np.array(b, dtype=float) for name, b in extra_bounds.items()})
    values = {"zenith": zenith, **extra}
    groups = bounds_groups(values, bounds, PERIODIC_COLUMNS)
    n_groups = bounds["zenith"].shape[0]
    params = {"method": "adaptive" if adaptive else "fixed",
              "by": {k: v.tolist() for k, v in extra_edges.items()}}
    if adaptive:
        params.update(min_ontime=float(min_ontime), min_runs=int(min_runs),
                      cos_zenith_step=float(cos_zenith_step),
                      zenith_range=[float(v) for v in zenith_range])
    return _grouping_dataset(store.obs_id.values, groups, zenith, ontime, extra, bounds,
                             n_groups, params)


def _grouping_dataset(obs_ids, groups, zenith, ontime, extra, bounds, n_groups, params):
    coords = {"zenith_group": ("zenith_group", np.arange(n_groups, dtype="int64")),
              "obs_id": ("obs_id", np.asarray(obs_ids, dtype="int64"))}
    for name, b in bounds.items():
        coords[f"{name}_bounds"] = (("zenith_group", BOUNDS_DIM), b.reshape(n_groups, 2),
                                    {"units": "deg"} if name in ("zenith", "AZ_PNT") else {})
    ds = xr.Dataset(coords=coords)
    ds["obs_group"] = ("obs_id", np.asarray(groups, dtype="int64"))
    ds["obs_zenith"] = ("obs_id", zenith, {"units": "deg"})
    ds["obs_ontime"] = ("obs_id", ontime, {"units": "s"})
    for name, v in extra.items():
        ds[f"obs_{name}"] = ("obs_id", v)
    for name, v in group_summary(groups, ontime, zenith, n_groups).items():
        ds[name] = ("zenith_group", v, {"units": "s"} if name == "group_ontime" else {})
    ds.attrs.update(group_by=",".join(extra), grouping=json.dumps(params, sort_keys=True))
    return ds


@takes_store("store")
def assign_groups(store: xr.Dataset, grouping: xr.Dataset) -> np.ndarray:
    """Group of each run of ``store`` from the bounds of ``grouping`` (a grouping or a model).

    Runs outside every group get -1. Extra columns (``group_by``) must be in ``store``.
    """
    values = {"zenith": np.asarray(store["zenith"].values, dtype=float)}
    values.update({name: _store_column(store, name) for name in extra_columns(grouping)})
    return bounds_groups(values, group_bounds(grouping), PERIODIC_COLUMNS)


@takes_store("store")
def resolve_grouping(store: xr.Dataset, zenith_edges=None, grouping=None) -> xr.Dataset:
    """The grouping of a model build, from :func:`xbkg.make_model`'s ``zenith_edges`` and
    ``grouping`` arguments.

    ``grouping`` is None (fixed ``zenith_edges``), a dict of :func:`make_grouping` options
    (e.g. ``{"adaptive": True, "min_ontime": 7200, "by": NORTH_SOUTH}``, decided on the runs of
    ``store``), a grouping Dataset or model (its bounds are reused), or the path of a groups
    table (:func:`xbkg.io.groups.read_groups_table`). The result's ``obs_group`` is the group
    of each run of ``store`` (-1: outside every group).
    """
    if grouping is None or isinstance(grouping, dict):
        return make_grouping(store, zenith_edges, **(grouping or {}))
    if zenith_edges is not None:
        raise GroupingError("give either zenith_edges or a ready grouping, not both")
    if not isinstance(grouping, xr.Dataset):
        grouping = read_groups_table(grouping)
    groups = assign_groups(store, grouping)
    names = extra_columns(grouping)
    zenith = np.asarray(store["zenith"].values, dtype=float)
    ontime = np.asarray(store["ontime"].values, dtype=float)
    bounds = group_bounds(grouping)
    params = json.loads(grouping.attrs.get("grouping", "{}") or "{}")
    return _grouping_dataset(store.obs_id.values, groups, zenith, ontime,
                             {n: _store_column(store, n) for n in names}, bounds,
                             grouping.sizes["zenith_group"], params)


def attach_grouping(model: xr.Dataset, grouping: xr.Dataset) -> xr.Dataset:
    """``model`` with the grouping's extra bounds coordinates (``<COLUMN>_bounds``) and its
    ``group_by`` and ``grouping`` attributes."""
    coords = {f"{name}_bounds": grouping[f"{name}_bounds"].variable
              for name in extra_columns(grouping)}
    return model.assign_coords(coords).assign_attrs(
        group_by=str(grouping.attrs.get("group_by", "")),
        grouping=str(grouping.attrs.get("grouping", "{}")))
