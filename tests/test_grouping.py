"""Groups of runs (xbkg.building.grouping): fixed and adaptive zenith edges, extra columns."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, strategies as st
from strategies import FAST, edges, seeds

from xbkg.building.grouping import (
    NORTH_SOUTH,
    GroupingError,
    adaptive_zenith_edges,
    column_groups,
    make_grouping,
    zenith_groups,
)


def _store(zenith, ontime=1800.0, **columns):
    zenith = np.asarray(zenith, dtype=float)
    data = {"zenith": ("obs_id", zenith),
            "ontime": ("obs_id", np.broadcast_to(np.asarray(ontime, float), zenith.shape))}
    data.update({k: ("obs_id", np.asarray(v, float)) for k, v in columns.items()})
    return xr.Dataset(data, coords={"obs_id": np.arange(1, zenith.size + 1)})


@FAST
@given(edges=edges(lo=0.0, hi=90.0), seed=seeds)
def test_zenith_groups_put_each_run_in_the_bin_holding_it(edges, seed):
    zenith = np.concatenate([np.random.default_rng(seed).uniform(-5, 95, 200), edges, [np.nan]])
    groups = zenith_groups(zenith, edges)
    inside = (zenith >= edges[0]) & (zenith <= edges[-1])
    assert np.all(groups[~inside] == -1)
    g = groups[inside]
    z = zenith[inside]
    last = (g == edges.size - 2) & (z == edges[-1])
    assert np.all((edges[g] <= z) & ((z < edges[g + 1]) | last))


@FAST
@given(zenith=st.lists(st.floats(0, 70), min_size=0, max_size=60),
       min_ontime=st.sampled_from([0.0, 1800.0, 5000.0, 1e5]), min_runs=st.integers(0, 5))
def test_adaptive_groups_each_reach_the_minimum_time_and_runs(zenith, min_ontime, min_runs):
    zenith = np.asarray(zenith)
    edges = adaptive_zenith_edges(zenith, 1800.0, min_ontime=min_ontime, min_runs=min_runs,
                                  zenith_range=(0, 70))
    assert edges[0] == 0 and edges[-1] == 70 and np.all(np.diff(edges) > 0)
    groups = zenith_groups(zenith, edges)
    assert np.all(groups >= 0)  # every run in range has a group
    if edges.size > 2:  # several groups: each one has what it needs
        n = np.bincount(groups, minlength=edges.size - 1)
        assert np.all(n * 1800.0 >= min_ontime) and np.all(n >= max(1, min_runs))


def test_adaptive_refuses_bad_parameters():
    with pytest.raises(GroupingError, match="zenith_range"):
        adaptive_zenith_edges([10.0], [1800.0], zenith_range=(50, 10))
    with pytest.raises(GroupingError, match="cos_zenith_step"):
        adaptive_zenith_edges([10.0], [1800.0], cos_zenith_step=0)


def test_column_groups_wrap_periodic_values():
    az = np.array([-100.0, 0.0, 89.9, 90.0, 269.9, 270.0, 359.0, 720.0])
    np.testing.assert_array_equal(column_groups(az, [-90, 90, 270], period=360),
                                  [1, 0, 0, 1, 1, 0, 0, 0])
    with pytest.raises(GroupingError, match="more than one period"):
        column_groups(az, [0, 200, 400], period=360)


def test_make_grouping_fixed_and_by_azimuth():
    store = _store([5.0, 25.0, 45.0, 65.0], AZ_PNT=[0.0, 180.0, 100.0, 350.0])
    g = make_grouping(store, [0, 30, 60])
    assert g["obs_group"].values.tolist() == [0, 0, 1, -1]
    np.testing.assert_array_equal(g["zenith_bounds"].values, [[0, 30], [30, 60]])
    ns = make_grouping(store, [0, 30, 60], by=NORTH_SOUTH)
    assert ns.sizes["zenith_group"] == 4
    # runs with the same zenith bin but opposite azimuth are in different groups
    assert ns["obs_group"].values[0] != ns["obs_group"].values[1]
    with pytest.raises(GroupingError, match="not in the observation table"):
        make_grouping(store, [0, 60], by={"MUONEFF": [0, 1]})
    with pytest.raises(GroupingError, match="either"):
        make_grouping(store, [0, 60], adaptive=True)
