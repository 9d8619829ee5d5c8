"""The reduction over runs (xbkg.building.reduce): leaves of a few runs, tree sums, exposure.

Counts and exposure times are summed exactly, so the model must be the same bit for bit
whatever the task sizes: runs per leaf (``split_every``), events per leaf
(:data:`~xbkg.building.reduce.EVENTS_PER_TASK`), the fan-in of the tree and the run order.
"""

import contextlib

import dask
import numpy as np
import pytest
from hypothesis import given, strategies as st
from strategies import FAST, log_edges, partitions, seeds, split

import xbkg
from xbkg.building import reduce
from xbkg.building.grouping import zenith_groups
from xbkg.building.make import make_binning
from xbkg.building.reduce import (
    MAX_RUNS_PER_TASK,
    TIME_QUANTUM,
    exposure_scale,
    group_cubes,
    leaf_sizes,
    quantize_time,
    run_cubes,
)
from xbkg.core.runs import RunInfo
from xbkg.sky.exposure import annulus_solid_angle, box_solid_angle, energy_widths_mev
from xbkg.store.events import fill_from_headers, run_infos
from xbkg.testing import raise_if_dask_computes, small_store

ZENITH_EDGES = [0, 25, 50]
N_RUNS = 6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return small_store(tmp_path_factory.mktemp("reduce"), n_runs=N_RUNS, events_per_run=400,
                       seed=2, zenith_range=(0, 50))


@pytest.fixture(scope="module")
def prepared(store):
    """Run infos, groups and the two binnings with their solid angles, as make_model has them."""
    ds = fill_from_headers(xbkg.open_datastore(store))
    out = {}
    b2 = make_binning("2d", "altaz", energy_edges="0.1:100:8", offset_edges="0:2.5:5")
    out["2d"] = b2, annulus_solid_angle(b2.fov_edges["offset"])
    b3 = make_binning("3d", "radec", energy_edges="0.1:100:8", fov_edges="-2:2:8")
    out["3d"] = b3, box_solid_angle(b3.fov_edges["detx"], b3.fov_edges["dety"], b3.offset_max)
    return run_infos(ds), zenith_groups(ds["zenith"].values, ZENITH_EDGES), out


@contextlib.contextmanager
def _events_per_task(n):
    old = reduce.EVENTS_PER_TASK
    reduce.EVENTS_PER_TASK = n
    try:
        yield
    finally:
        reduce.EVENTS_PER_TASK = old


def _sums(prepared, kind, order=None, **kw):
    runs, groups, binnings = prepared
    binning, solid = binnings[kind]
    order = np.arange(len(runs)) if order is None else order
    counts, exposure, errors = group_cubes([runs[i] for i in order], groups[order],
                                           len(ZENITH_EDGES) - 1, binning, solid, **kw)
    return dask.compute(counts, exposure, errors, scheduler="synchronous")


@FAST
@given(n=st.integers(0, 600), runs_per_task=st.integers(1, 300))
def test_leaf_sizes_by_runs_cover_every_run_once(n, runs_per_task):
    sizes = leaf_sizes([RunInfo(event_count=10)] * n, runs_per_task)
    assert sum(sizes) == n and all(1 <= s <= runs_per_task for s in sizes)
    assert all(s == runs_per_task for s in sizes[:-1])


@FAST
@given(counts=st.lists(st.one_of(st.none(), st.integers(0, 3_000_000)), max_size=400),
       events_per_task=st.integers(1, 5_000_000))
def test_leaf_sizes_by_events_fill_each_leaf_then_start_the_next(counts, events_per_task):
    infos = [RunInfo(event_count=c) for c in counts]
    sizes = leaf_sizes(infos, events_per_task=events_per_task)
    assert sum(sizes) == len(infos) and all(1 <= s <= MAX_RUNS_PER_TASK for s in sizes)
    weight = [events_per_task / reduce.RUNS_PER_TASK_UNKNOWN if c is None else c for c in counts]
    start = 0
    for s in sizes[:-1]:  # every closed leaf reached the events, or the most runs
        leaf = weight[start:start + s]
        assert sum(leaf) >= events_per_task or s == MAX_RUNS_PER_TASK
        assert sum(leaf[:-1]) < events_per_task  # and closed at the first run that did
        start += s


def test_leaf_sizes_refuse_zero_runs_per_task():
    with pytest.raises(ValueError, match="runs per task"):
        leaf_sizes([RunInfo()] * 3, runs_per_task=0)


@FAST
@given(seed=seeds, sizes_seed=seeds)
def test_quantized_time_sums_do_not_depend_on_grouping(seed, sizes_seed):
    rng = np.random.default_rng(seed)
    q = quantize_time(rng.uniform(0, 2000, 300))
    assert q.dtype == np.int64
    pieces = np.array_split(q[rng.permutation(q.size)], np.random.default_rng(sizes_seed)
                            .integers(1, 20))
    assert sum(int(p.sum()) for p in pieces) == int(q.sum())


@FAST
@given(energy=log_edges())
def test_exposure_scale_is_energy_width_times_solid_angle(energy):
    solid = annulus_solid_angle(np.linspace(0, 2.5, 6))
    scale = exposure_scale(energy, solid)
    assert scale.shape == (energy.size - 1, 5)
    np.testing.assert_allclose(scale, energy_widths_mev(energy)[:, None] * solid[None, :],
                               rtol=1e-15)


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_group_cubes_are_the_sums_of_the_run_cubes(prepared, kind):
    """The tree adds up exactly the per-run cubes of each group, and writing it computes
    nothing."""
    runs, groups, binnings = prepared
    binning, solid = binnings[kind]
    with raise_if_dask_computes():
        lazy = group_cubes(runs, groups, len(ZENITH_EDGES) - 1, binning, solid, split_every=2)
    counts, exposure, errors = dask.compute(*lazy, scheduler="synchronous")
    assert list(errors) == [None] * len(runs)
    for g in range(len(ZENITH_EDGES) - 1):
        parts = [run_cubes(runs[i], binning, solid) for i in np.flatnonzero(groups == g)]
        np.testing.assert_array_equal(counts[g], sum(p["counts"] for p in parts))
        time = sum(np.asarray(p["time"], np.int64) for p in parts)
        np.testing.assert_allclose(exposure[g], time * TIME_QUANTUM * exposure_scale(
            binning.energy_edges, solid), rtol=1e-15)
    assert counts.sum() > 500


@FAST
@given(kind=st.sampled_from(["2d", "3d"]), runs_per_task=st.one_of(st.none(), st.integers(1, 7)),
       events_per_task=st.integers(1, 3000), order_seed=seeds)
def test_group_cubes_do_not_depend_on_task_sizes(prepared, kind, runs_per_task,
                                                 events_per_task, order_seed):
    reference = _sums(prepared, kind, split_every=100)  # one leaf per group
    order = np.random.default_rng(order_seed).permutation(N_RUNS)
    with _events_per_task(events_per_task):
        counts, exposure, errors = _sums(prepared, kind, order, split_every=runs_per_task)
    np.testing.assert_array_equal(counts, reference[0])
    np.testing.assert_array_equal(exposure, reference[1])  # bitwise
    assert [errors[list(order).index(i)] for i in range(N_RUNS)] == list(reference[2])


@FAST
@given(data=st.data())
def test_model_exposure_is_the_sum_over_runs_in_any_batches(store, data):
    """Exposure summed by the build equals exposure of separate builds of any batches of runs
    added together (to float rounding), and counts exactly."""
    ids = list(range(1, N_RUNS + 1))
    sizes = data.draw(partitions(N_RUNS, max_parts=3))
    kw = dict(kind="2d", selection="all", zenith_edges=[0, 90], energy_edges="0.1:100:6",
              scheduler="synchronous")
    whole = xbkg.make_model(store, **kw)
    parts = [xbkg.make_model(store, obs_ids=list(piece), **kw) for piece in split(ids, sizes)]
    np.testing.assert_array_equal(sum(p["counts"].values for p in parts), whole["counts"].values)
    np.testing.assert_allclose(sum(p["exposure"].values for p in parts),
                               whole["exposure"].values, rtol=1e-12)
