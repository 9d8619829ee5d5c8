"""The run record (:mod:`xbkg.core.runs`): immutable, cheap to send to workers, and left
unchanged by every stage that adds to it."""

import copy
import dataclasses
import pickle

import numpy as np
import pytest

from xbkg.building.make import make_binning
from xbkg.building.reduce import group_cubes, run_cubes, with_altaz_params
from xbkg.core.circles import SkyCircles
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.simulate import simulate_store
from xbkg.sky.exclusion import (
    attach_exclusions,
    attach_plan,
    plan_exclusion,
    run_exclusion_fraction,
)
from xbkg.sky.exposure import fov_solid_angle
from xbkg.store.altaz_checks import check_run_geometry
from xbkg.store.datastore import open_datastore
from xbkg.store.events import complete_run_info, fill_from_headers, read_run, run_infos

BINNING = make_binning("3d", "altaz", energy_edges="0.1:100:6", fov_edges="-2:2:8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    store = simulate_store(tmp_path_factory.mktemp("runs") / "store", n_runs=3,
                           events_per_run=400, seed=3)
    return run_infos(fill_from_headers(open_datastore(store)))


def _snapshot(records):
    """Deep copies, and the ALTAZ constants (not part of ``==``)."""
    return copy.deepcopy(records), [r.altaz_params for r in records]


def _unchanged(records, snapshot):
    copies, params = snapshot
    assert records == copies  # every compared field, the exclusion dicts' contents included
    assert all(a is b for a, b in zip((r.altaz_params for r in records), params))


def test_records_are_frozen(runs):
    with pytest.raises(dataclasses.FrozenInstanceError):
        runs[0].e_threshold = 1.0
    later = runs[0].with_(e_threshold=1.0)
    assert later.e_threshold == 1.0 and np.isnan(runs[0].e_threshold)
    assert later.obs_id == runs[0].obs_id and later is not runs[0]


def test_build_stages_return_new_records_and_leave_theirs_unchanged(runs):
    """Each stage of a 3D ALTAZ build with exclusion regions, an event filter and the outer
    count: the records it gets are equal to copies taken before."""
    circles = SkyCircles([runs[0].ra_pnt + 1.0], [runs[0].dec_pnt], [0.4])
    given = [r.with_(event_filter="ENERGY > 0.2", e_threshold=0.3, outer_offset=1.5)
             for r in runs]
    before = _snapshot(given)
    with_regions, n = attach_exclusions(given, circles, BINNING.offset_max)
    assert n >= 1 and with_regions[0].exclusion["ra"] == circles.to_dict()["ra"]
    plan = plan_exclusion(circles, "regions", None, reach=BINNING.offset_max)
    assert attach_plan(given, plan, BINNING.offset_max)[0] == with_regions
    _unchanged(given, before)

    regions = _snapshot(with_regions)
    params = with_altaz_params(with_regions)
    assert all(p.altaz_params is not None for p in params)
    header = read_run(with_regions[0])[1]
    full = complete_run_info(with_regions[0], header)
    assert full.pointing_source is not None and with_regions[0].pointing_source is None
    check_run_geometry(full)
    solid = fov_solid_angle(BINNING.kind, BINNING.fov_edges, BINNING.offset_max)
    parts = [run_cubes(r, BINNING, solid) for r in params + with_regions]
    assert all(p["error"] is None for p in parts)
    counts = group_cubes(params, np.zeros(len(params), int), 1, BINNING, solid)[0]
    assert np.asarray(counts.compute(scheduler="sync")).sum() > 0
    _unchanged(with_regions, regions)
    _unchanged(given, before)
    # the constants computed in the task (no altaz_params given) are those given in bulk
    for a, b in zip(parts[:len(params)], parts[len(params):]):
        np.testing.assert_array_equal(a["counts"], b["counts"])
        np.testing.assert_array_equal(a["time"], b["time"])


def test_records_are_cheap_to_send(runs):
    """A record pickles to about the size of a dict of its fields and comes back equal."""
    info = runs[0].with_(exclusion={"ra": [1.0], "dec": [2.0], "radius": [0.3], "names": ["a"],
                                    "oversample": 8, "max_step": None})
    info = with_altaz_params([info])[0]
    data = pickle.dumps(info)
    back = pickle.loads(data)
    assert back == info and hash(back) == hash(info)  # NaN fields included
    np.testing.assert_array_equal(back.altaz_params, info.altaz_params)
    # no bigger than a dict of its fields; a list shares the field names (about 360 bytes a
    # run for H.E.S.S. DR1, a few regions and the ALTAZ constants add their own size)
    as_dict = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    assert len(data) < len(pickle.dumps(as_dict)) + 100
    assert len(pickle.dumps(runs)) < 150 + 450 * len(runs)


def test_former_dicts_still_work_with_a_warning(runs):
    info = runs[0]
    with pytest.warns(DeprecationWarning, match=r"use info\.ra_pnt"):
        assert info["ra_pnt"] == info.ra_pnt
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError):
        info["nope"]
    with pytest.warns(DeprecationWarning, match="pass an xbkg.core.runs.RunInfo"):
        converted = as_run_info({"ra_pnt": 1.0, "dec_pnt": 2.0})
    assert converted == RunInfo(ra_pnt=1.0, dec_pnt=2.0)
    with pytest.raises(TypeError, match=r"unknown run parameter\(s\) \['ra'\]"):
        RunInfo.from_mapping({"ra": 1.0})
    with pytest.raises(TypeError, match="must be a RunInfo"):
        as_run_info([1.0])
    # a kernel that took dicts takes them still, with the same result
    binning = make_binning("3d", "radec", fov_edges="-2:2:8")
    circles = {"ra": [info.ra_pnt + 0.5], "dec": [info.dec_pnt], "radius": [0.3]}
    new = run_exclusion_fraction(info, binning, circles)
    with pytest.warns(DeprecationWarning):
        old = run_exclusion_fraction({"ra_pnt": info.ra_pnt, "dec_pnt": info.dec_pnt}, binning,
                                     circles)
    np.testing.assert_array_equal(old, new)
    assert new.min() < 1
