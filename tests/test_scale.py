"""Scale: determinism over chunkings and schedulers, a real distributed cluster, graph size."""

import contextlib
import os

import dask
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from test_make import _index_only_store  # a store whose event files do not exist

import xbkg
from xbkg.building.grouping import zenith_groups
from xbkg.building.make import make_binning
from xbkg.building.parallel import graph_size, local_cluster
from xbkg.building.reduce import (
    EVENTS_PER_TASK,
    TIME_QUANTUM,
    group_cubes,
    leaf_sizes,
    quantize_time,
)
from xbkg.core.runs import RunInfo
from xbkg.simulate import simulate_store
from xbkg.sky.exposure import box_solid_angle
from xbkg.store.events import fill_from_headers, run_infos
from xbkg.testing import count_run_reads

ZENITH_EDGES = [0, 20, 35, 50]
N_RUNS = 24


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return simulate_store(tmp_path_factory.mktemp("scale") / "store", n_runs=N_RUNS,
                          events_per_run=1500, seed=7, zenith_range=(0, 50))


@pytest.fixture(scope="module")
def cluster():
    """A real cluster: two worker processes of one thread each."""
    with local_cluster(2, dashboard_address=":0") as client:
        yield client


@pytest.fixture(scope="module")
def prepared(store_dir):
    """Per-run infos, groups, binning and solid angles, as make_model prepares them."""
    store = fill_from_headers(xbkg.open_datastore(store_dir))
    binning = make_binning("3d", "altaz", energy_edges="0.1:100:12", fov_edges="-2:2:16")
    solid = box_solid_angle(binning.fov_edges["detx"], binning.fov_edges["dety"],
                            binning.offset_max)
    groups = zenith_groups(store["zenith"].values, ZENITH_EDGES)
    return run_infos(store), groups, binning, solid


@pytest.fixture(scope="module")
def reference(prepared):
    runs, groups, binning, solid = prepared
    counts, exposure, errors = group_cubes(runs, groups, len(ZENITH_EDGES) - 1, binning, solid)
    return dask.compute(counts, exposure, errors, scheduler="synchronous")


def test_quantized_times_sum_exactly_in_any_order():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 2000, 5000) * rng.uniform(0, 1, 5000)  # ONTIME x fractions
    q = quantize_time(t)
    assert np.abs(q * TIME_QUANTUM - t).max() <= TIME_QUANTUM / 2
    sums = {int(np.sum(q[rng.permutation(q.size)])) for _ in range(5)}
    assert len(sums) == 1  # int64 sums do not depend on the order
    float_sums = {sum(t[rng.permutation(t.size)].tolist()) for _ in range(5)}
    assert len(float_sums) > 1  # whereas float sums usually do (what this avoids)
    with pytest.raises(ValueError, match="finite"):
        quantize_time([np.nan])


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split_every=st.integers(2, 30), order_seed=st.integers(0, 2**32 - 1),
       scheduler=st.sampled_from(["synchronous", "threads"]))
def test_group_cubes_do_not_depend_on_chunking(prepared, reference, split_every, order_seed,
                                              scheduler):
    runs, groups, binning, solid = prepared
    order = np.random.default_rng(order_seed).permutation(len(runs))
    counts, exposure, errors = group_cubes([runs[i] for i in order], groups[order],
                                           len(ZENITH_EDGES) - 1, binning, solid,
                                           split_every=split_every)
    counts, exposure, errors = dask.compute(counts, exposure, errors, scheduler=scheduler)
    assert counts.dtype == np.int64 and counts.sum() > 10000
    np.testing.assert_array_equal(counts, reference[0])
    np.testing.assert_array_equal(exposure, reference[1])  # bitwise, not approximately
    assert list(errors) == [reference[2][i] for i in order] == [None] * len(runs)


def _assert_same_model(a, b):
    for name in ("counts", "exposure", "rate", "rate_error", "obs_group", "obs_ontime",
                 "group_ontime"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    np.testing.assert_array_equal(a["obs_id"].values, b["obs_id"].values)


@pytest.mark.parametrize("kind,align", [("2d", "altaz"), ("3d", "radec"), ("3d", "altaz")])
def test_distributed_equals_threads(store_dir, cluster, kind, align, monkeypatch):
    kw = dict(kind=kind, fov_alignment=align, zenith_edges=ZENITH_EDGES, energy_threshold="safe")
    threads = xbkg.make_model(store_dir, scheduler="threads", **kw)  # one leaf task per group
    # leaves of 1-3 runs (by their EVENT_COUNT): partial sums travel between the workers
    monkeypatch.setattr(xbkg.building.reduce, "EVENTS_PER_TASK", 2000)
    lazy = xbkg.make_model(store_dir, compute_now=False, **kw)
    leaves = [k for k in lazy["counts"].data.__dask_graph__() if isinstance(k, tuple)
              and str(k[0]).startswith("xbkg-group") and str(k[0]).endswith("-0")]
    assert len(leaves) >= N_RUNS // 3
    dist = xbkg.make_model(store_dir, scheduler=cluster, **kw)
    assert len(cluster.scheduler_info()["workers"]) == 2
    assert int(dist["counts"].sum()) > 5000
    _assert_same_model(threads, dist)  # counts, exposure and rates bitwise
    # a scheduler address works as well as a Client
    by_address = xbkg.make_model(store_dir, scheduler=cluster.scheduler.address, **kw)
    _assert_same_model(threads, by_address)


def test_model_does_not_depend_on_run_order_or_split_every(store_dir):
    store = xbkg.open_datastore(store_dir)
    kw = dict(kind="3d", fov_alignment="altaz", zenith_edges=ZENITH_EDGES)
    ref = xbkg.make_model(store, scheduler="synchronous", **kw)
    reversed_store = store.isel(obs_id=slice(None, None, -1))
    with dask.config.set(split_every=3):
        other = xbkg.make_model(reversed_store, scheduler="threads", **kw).sortby("obs_id")
    _assert_same_model(ref, other)


@pytest.mark.parametrize("split_every", [None, 2, 5, 100])
def test_every_run_is_read_once(store_dir, tmp_path, split_every):
    """Whatever the tree's depth (one leaf per group, leaves summed by the root, deeper), and
    for eager builds, lazy models computed as a whole and saved lazy models alike."""
    kw = dict(kind="3d", fov_alignment="altaz", zenith_edges=ZENITH_EDGES)
    with count_run_reads() as reads:
        with dask.config.set(split_every=split_every) if split_every else contextlib.nullcontext():
            xbkg.make_model(store_dir, scheduler="synchronous", **kw)
            assert len(reads) == N_RUNS and set(reads.values()) == {1}
            lazy = xbkg.make_model(store_dir, compute_now=False, **kw)
        for use in (lambda: lazy.compute(scheduler="synchronous"),
                    lambda: dask.compute(lazy["counts"].data, lazy["exposure"].data,
                                         lazy["rate"].data, scheduler="synchronous"),
                    lambda: xbkg.save_model(lazy, tmp_path / "lazy.nc", overwrite=True)):
            reads.clear()
            use()
            assert len(reads) == N_RUNS and set(reads.values()) == {1}


def test_graph_size_grows_linearly_with_runs(tmp_path):
    def slopes(**config):
        sizes = {}
        for n in (200, 800, 3200):
            path = tmp_path / f"s{n}"
            if not path.exists():
                _index_only_store(path, n, events_per_run=50_000)
            with dask.config.set(**config):
                model = xbkg.make_model(xbkg.open_datastore(path), kind="3d", compute_now=False,
                                        fov_alignment="altaz", zenith_edges=[0, 30, 60])
            sizes[n] = graph_size(model["counts"].data, model["exposure"].data)
        return (sizes[800] - sizes[200]) / 600, (sizes[3200] - sizes[800]) / 2400, sizes

    # default: leaves of EVENTS_PER_TASK events (30 runs of 50,000), then nodes of 8 partial
    # sums (8/7 task per leaf), plus a few tasks per group
    small, large, sizes = slopes()
    assert large == pytest.approx(small, rel=0.1), sizes
    assert large == pytest.approx(8 / 7 * 50_000 / EVENTS_PER_TASK, rel=0.1), sizes
    assert sizes[3200] < 0.05 * 3200
    # dask's split_every setting: leaves of that many runs and nodes of as many partial sums
    small, large, sizes = slopes(split_every=8)
    assert large == pytest.approx(small, rel=0.05), sizes
    assert large == pytest.approx(1 / 7, rel=0.05), sizes


def test_leaves_hold_runs_by_events():
    runs = [RunInfo(event_count=c) for c in (1_000_000, 400_000, 200_000, 3_000_000, None, 10)]
    assert leaf_sizes(runs) == [3, 1, 2]
    assert leaf_sizes(runs, runs_per_task=4) == [4, 2]
    assert leaf_sizes([RunInfo(event_count=0)] * 600) == [256, 256, 88]
    assert sum(leaf_sizes([RunInfo(event_count=7_000)] * 1000, events_per_task=100_000)) == 1000


def test_partial_sums_are_released_as_the_tree_goes(prepared):
    """Bounded memory: a task holds one run's events at a time, and at most a few partial sums
    are held at any time, however many runs."""
    from dask.callbacks import Callback

    runs, groups, binning, solid = prepared
    many = runs * 3  # 72 runs (each three times)
    counts, exposure, errors = group_cubes(many, np.tile(groups, 3), len(ZENITH_EDGES) - 1,
                                           binning, solid, split_every=4)
    held = []

    def posttask(key, result, dsk, state, worker_id):
        held.append(sum(1 for k in state["cache"] if isinstance(k, tuple)
                        and str(k[0]).startswith("xbkg-group")))

    with Callback(posttask=posttask):
        c, _, _ = dask.compute(counts, exposure, errors, scheduler="synchronous")
    np.testing.assert_array_equal(c, 3 * np.asarray(dask.compute(
        group_cubes(runs, groups, len(ZENITH_EDGES) - 1, binning, solid)[0],
        scheduler="synchronous")[0]))
    assert len(held) > len(many) / 4 and 1 <= max(held) <= 8, max(held)


def test_altaz_constants_of_many_runs_equal_run_by_run(prepared):
    """Computing the runs' ALTAZ constants together gives each run's own vector, bit for bit,
    whatever the other runs of the call (sites, time scales, order)."""
    from xbkg.building.reduce import with_altaz_params
    from xbkg.sky import fov

    runs = list(prepared[0][:6])
    runs[1] = runs[1].with_(geolon=-17.89, geolat=28.76, altitude=2200.0)  # another site
    runs[2] = runs[2].with_(timesys="UTC")
    runs[3] = runs[3].with_(tstop=runs[3].tstart - 1.0)  # invalid: left to the run's own task
    keys = ("ra_pnt", "dec_pnt", "geolon", "geolat", "altitude", "mjdrefi", "mjdreff",
            "timesys", "tstart", "tstop")
    together = with_altaz_params(runs[::-1])[::-1]
    assert together[3].altaz_params is None and runs[0].altaz_params is None
    for i in (0, 1, 2, 4, 5):
        alone = fov.altaz_run_params(**{k: getattr(runs[i], k) for k in keys})
        np.testing.assert_array_equal(together[i].altaz_params, alone)
    with pytest.raises(ValueError, match="run 1: tstop"):
        fov.altaz_runs_params(*([getattr(r, k) for r in runs[2:4]] for k in keys[:2]),
                              **{k: [getattr(r, k) for r in runs[2:4]] for k in keys[2:]})


@pytest.mark.subprocess
@pytest.mark.parametrize("setting, expected", [(None, "True"), ("0", "False")])
def test_tune_malloc_applies_once_and_can_be_turned_off(setting, expected):
    """glibc malloc tuning of the per-run tasks (Linux) and its opt-out variable."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc mallopt only on Linux")
    env = {k: v for k, v in os.environ.items() if k != "XBKG_MALLOC_TUNING"}
    if setting is not None:
        env["XBKG_MALLOC_TUNING"] = setting
    code = ("from xbkg.building.parallel import tune_malloc; a = tune_malloc(); b = tune_malloc(); "
            "print(a, b)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [expected, expected]
