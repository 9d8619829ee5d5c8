"""The FoV extent of a store without OFFSET_MAX is measured in the build's own pass over the
events: each run is read once when the extent cuts nothing, and the model is the one the
separate survey (:func:`xbkg.building.survey.survey_runs`) and an explicit ``fov_extent`` give."""

import json
from collections import Counter

import numpy as np
import pytest

import xbkg
import xbkg.building.reduce
import xbkg.store.events
from xbkg.building.survey import survey_runs
from xbkg.simulate import simulate_store
from xbkg.store.events import run_infos
from xbkg.testing import count_calls

E_EDGES = "0.1:100:12"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A VERITAS-style store (events cut at 2.0 deg) and a H.E.S.S.-style one (no cut)."""
    base = tmp_path_factory.mktemp("single_pass")
    return {style: simulate_store(base / style, n_runs=4, events_per_run=4000, seed=5,
                                  zenith_range=(10, 40), style=style)
            for style in ("veritas", "hess")}


@pytest.mark.parametrize("style,cut", [("hess", False), ("veritas", True)])
@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_extent_measured_in_the_build_pass(stores, style, cut, kind):
    store = xbkg.open_datastore(stores[style])
    survey = survey_runs(run_infos(store), 2.5, scheduler="sync")
    calls = Counter()
    kw = dict(kind=kind, selection="all", energy_edges=E_EDGES, scheduler="sync")
    with count_calls(xbkg.building.reduce, "read_run", counter=calls), \
            count_calls(xbkg.store.events, "read_run_events", counter=calls):
        model = xbkg.make_model(store, **kw)
    # one read of each run's events; a second pass only to build with the cut binning
    assert calls == Counter({"read_run": 4 * (2 if cut else 1)})
    np.testing.assert_array_equal(model["obs_fov_extent"].values, survey["max_offset"])
    prov = json.loads(model.attrs["provenance"])["fov_extent"]
    assert prov["source"] == "largest event offset of each run" and ("cut" in prov) == cut
    assert prov["extent_deg"] == float(np.max(survey["max_offset"]))
    given = xbkg.make_model(store, fov_extent=float(np.max(survey["max_offset"])), **kw)
    assert model.attrs["offset_max"] == given.attrs["offset_max"] == \
        (prov["extent_deg"] if cut else 2.5)
    for name in ("counts", "exposure", "has_data"):
        np.testing.assert_array_equal(model[name].values, given[name].values)


@pytest.mark.parametrize("n", [0, 1, 30, 1000, 60_000])
def test_run_max_offset_is_the_robust_largest_offset(n):
    """The farthest-few shortcut gives robust_max_offset of all offsets (within 1e-12 deg),
    with strays, NaN coordinates and runs too small to have strays."""
    from xbkg.sky.extent import robust_max_offset, run_max_offset
    from xbkg.sky.fov import offset_deg

    rng = np.random.default_rng(n)
    for dec_pnt in (-70.0, 0.0, 45.0):
        ra, dec = rng.uniform(-2, 2, n) + 100.0, rng.uniform(-2, 2, n) + dec_pnt
        if n > 100:
            ra[rng.integers(0, n, 3)] = rng.uniform(110, 140, 3)  # strays
            ra[rng.integers(0, n, n // 4)] = np.nan
        want = robust_max_offset(offset_deg(ra, dec, 100.0, dec_pnt))
        got = run_max_offset(ra.astype(np.float32), dec.astype(np.float32), 100.0, dec_pnt)
        if n == 0:
            assert np.isnan(want) and np.isnan(got)
        else:
            assert want < 3.0 and abs(got - robust_max_offset(offset_deg(
                ra.astype(np.float32), dec.astype(np.float32), 100.0, dec_pnt))) < 1e-12
