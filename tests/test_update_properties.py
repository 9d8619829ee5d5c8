"""Updates and merges of models (xbkg.building.update) do not depend on how runs are batched.

A model built from some runs and updated with the others, in any number of batches, is the
model built from all of them at once; merging models of disjoint runs gives the same model in
any order and grouping.
"""

import functools

import pytest
from hypothesis import given, strategies as st
from strategies import FAST, groupings_of

import xbkg
from xbkg.building.update import merge_models, update_model
from xbkg.testing import assert_models_equal, small_store

N_RUNS = 6
IDS = list(range(1, N_RUNS + 1))
OPTIONS = {
    "2d": dict(kind="2d", zenith_edges=[0, 25, 50], energy_edges="0.1:100:6",
               selection="all", scheduler="synchronous"),
    "3d": dict(kind="3d", fov_alignment="radec", zenith_edges=[0, 50], energy_edges="0.1:100:6",
               fov_edges="-2:2:6", selection="all", scheduler="synchronous"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return xbkg.open_datastore(small_store(tmp_path_factory.mktemp("batches"), n_runs=N_RUNS,
                                           events_per_run=400, seed=4, zenith_range=(0, 50)))


@pytest.fixture(scope="module")
def build(store):
    """``build(kind, ids)``: the model of these runs (cached: examples share builds)."""
    @functools.cache
    def make(kind, ids):
        return xbkg.make_model(store, obs_ids=list(ids), **OPTIONS[kind])

    return lambda kind, ids: make(kind, tuple(sorted(ids)))


@FAST
@given(kind=st.sampled_from(["2d", "3d"]), batches=groupings_of(IDS, max_groups=4))
def test_update_in_batches_equals_one_build(store, build, kind, batches):
    model = build(kind, batches[0])
    for batch in batches[1:]:
        model = update_model(model, store, batch, scheduler="synchronous")
    assert_models_equal(model.sortby("obs_id"), build(kind, IDS), rtol=1e-12)


@FAST
@given(kind=st.sampled_from(["2d", "3d"]), batches=groupings_of(IDS, max_groups=4),
       order=st.randoms(use_true_random=False))
def test_merges_of_disjoint_models_do_not_depend_on_order_or_grouping(build, kind, batches,
                                                                       order):
    models = [build(kind, b) for b in batches]
    order.shuffle(models)
    merged = functools.reduce(merge_models, models)
    assert_models_equal(merged.sortby("obs_id"), build(kind, IDS), rtol=1e-12)
