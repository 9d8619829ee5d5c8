"""The groups table ``bg_observation_groups.ecsv``: one row per group, readable back as a grouping.

Columns: ``GROUP_ID``, ``ZEN_MIN``, ``ZEN_MAX`` (deg), ``N_OBS``, ``ONTIME`` (s),
``MEAN_COS_ZEN`` (ONTIME-weighted mean cos zenith), then ``<COLUMN>_MIN``, ``<COLUMN>_MAX`` for
every extra grouping column (e.g. ``AZ_PNT_MIN``). The table metadata keeps ``group_by`` and the
grouping parameters (``grouping``, JSON). :func:`read_groups_table` returns a grouping Dataset
(:mod:`xbkg.building.grouping`) without runs, which :func:`xbkg.make_model` (``grouping=``) and
:func:`xbkg.building.grouping.assign_groups` accept: runs are assigned from the bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.core.binning import BOUNDS_DIM
from xbkg.core.groups import extra_columns, group_bounds
from xbkg.io.plaintable import PlainTable

__all__ = ["groups_table", "write_groups_table", "read_groups_table"]

_SUMMARY = {"N_OBS": "group_n_obs", "ONTIME": "group_ontime", "MEAN_COS_ZEN": "group_mean_cos_zenith"}


def groups_table(grouping: xr.Dataset, *, plain: bool = False):
    """The groups of a grouping or model Dataset as an astropy Table (module docstring), or
    with ``plain`` as a :class:`~xbkg.io.plaintable.PlainTable`."""
    bounds = group_bounds(grouping)
    zen = bounds["zenith"]
    n = zen.shape[0]
    cols = {"GROUP_ID": np.asarray(grouping["zenith_group"].values, dtype="int64"),
            "ZEN_MIN": zen[:, 0], "ZEN_MAX": zen[:, 1]}
    units = {"ZEN_MIN": "deg", "ZEN_MAX": "deg", "ONTIME": "s"}
    for col, var in _SUMMARY.items():
        values = grouping[var].values if var in grouping else np.full(n, np.nan)
        cols[col] = values.astype("int64") if col == "N_OBS" and var in grouping else values
    for name in extra_columns(grouping):
        b = bounds[name]
        cols[f"{name}_MIN"], cols[f"{name}_MAX"] = b[:, 0], b[:, 1]
        if name == "AZ_PNT":
            units[f"{name}_MIN"] = units[f"{name}_MAX"] = "deg"
    meta = {"group_by": str(grouping.attrs.get("group_by", "")),
            "grouping": str(grouping.attrs.get("grouping", "{}"))}
    t = PlainTable(cols, units=units, meta=meta)
    return t if plain else t.to_astropy()


def write_groups_table(grouping: xr.Dataset, path, *, overwrite: bool = False) -> Path:
    """Write :func:`groups_table` as ECSV; returns the path."""
    path = Path(path)
    groups_table(grouping).write(path, format="ascii.ecsv", overwrite=overwrite)
    return path


def read_groups_table(path) -> xr.Dataset:
    """A grouping Dataset (bounds and group summary, no runs) from a groups table file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from xbkg.building.grouping import make_grouping
    >>> store = xr.Dataset({"zenith": ("obs_id", [10.0, 40.0]), "ontime": ("obs_id", [1e3, 2e3])},
    ...                    coords={"obs_id": [1, 2]})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "groups.ecsv"
    >>> g = read_groups_table(write_groups_table(make_grouping(store, [0, 30, 60]), path))
    >>> g["zenith_bounds"].values.tolist(), g["group_ontime"].values.tolist()
    ([[0.0, 30.0], [30.0, 60.0]], [1000.0, 2000.0])
    """
    from astropy.table import Table

    path = Path(path)
    try:
        t = Table.read(path, format="ascii.ecsv")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read as a groups table: {exc}") from exc
    for col in ("GROUP_ID", "ZEN_MIN", "ZEN_MAX"):
        if col not in t.colnames:
            raise KeyError(f"{path}: groups table has no {col} column")
    names = [c for c in str(t.meta.get("group_by", "")).split(",") if c]
    coords = {"zenith_group": ("zenith_group", np.asarray(t["GROUP_ID"], dtype="int64"))}
    for name, (lo, hi) in [("zenith", ("ZEN_MIN", "ZEN_MAX"))] + \
            [(c, (f"{c}_MIN", f"{c}_MAX")) for c in names]:
        if lo not in t.colnames or hi not in t.colnames:
            raise KeyError(f"{path}: groups table is grouped by {name} but has no {lo}/{hi}")
        coords[f"{name}_bounds"] = (("zenith_group", BOUNDS_DIM),
                                    np.stack([np.asarray(t[lo], float), np.asarray(t[hi], float)], 1))
    ds = xr.Dataset(coords=coords)
    for col, var in _SUMMARY.items():
        if col in t.colnames:
            ds[var] = ("zenith_group", np.asarray(t[col]))
    grouping = str(t.meta.get("grouping", "{}"))
    json.loads(grouping)  # must be valid JSON
    ds.attrs.update(group_by=",".join(names), grouping=grouping)
    return ds
