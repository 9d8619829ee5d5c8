"""Per-run energy thresholds: exposure only above each run's threshold, and what the model hands
to gammapy in the energy slices that thresholds leave without exposure."""

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.building.thresholds import fit_zenith_rule, run_energy_thresholds, zenith_threshold
from xbkg.core.schema import MAX_CONTINUATION_FACTOR, fill_unexposed
from xbkg.simulate import NOMINAL_ONTIME, TruthModel, simulate_store

E_EDGES = np.geomspace(0.1, 100, 21)
O_EDGES = np.linspace(0, 2.5, 6)


def _obs(zenith, safe=None, unit="TeV"):
    ds = xr.Dataset({"zenith": ("obs_id", np.asarray(zenith, float))},
                    coords={"obs_id": np.arange(len(zenith))})
    if safe is not None:
        ds["SAFE_ENERGY_LO"] = ("obs_id", np.asarray(safe, float), {"units": unit})
    return ds


def test_policies():
    z = [10.0, 30.0, 50.0, 40.0]
    store = _obs(z, [0.3, 0.4, np.nan, -1.0])
    thr, text = run_energy_thresholds(store, "none")
    assert np.isnan(thr).all() and text == "none"
    # 2 of 4 runs with a SAFE_ENERGY_LO: the zenith rule for the others comes from the store's
    # own counts peaks, never from another instrument's fit
    with pytest.raises(ValueError, match="counts peak"):
        run_energy_thresholds(store, "safe")
    peaks = zenith_threshold(z, 0.5, 2.5)
    thr, text = run_energy_thresholds(store, "safe", peaks=peaks)
    assert thr[:2].tolist() == [0.3, 0.4]
    np.testing.assert_allclose(thr[2:], peaks[2:], rtol=1e-10)
    assert "SAFE_ENERGY_LO (2 runs)" in text and "fitted to counts peak of 4 runs" in text
    thr, _ = run_energy_thresholds(store, 0.5)
    assert thr.tolist() == [0.5] * 4
    assert run_energy_thresholds(store, "0.7")[0].tolist() == [0.7] * 4
    with pytest.raises(ValueError, match="energy_threshold"):
        run_energy_thresholds(store, "sometimes")
    with pytest.raises(ValueError, match=">= 0"):
        run_energy_thresholds(store, -1.0)
    # units are converted
    assert run_energy_thresholds(_obs([10.0], [300.0], "GeV"), "safe")[0].tolist() == [0.3]
    with pytest.raises(ValueError, match="not an energy"):
        run_energy_thresholds(_obs([10.0], [1.0], "deg"), "safe")


def test_zenith_rule_is_fitted_to_the_runs_that_have_it():
    z = np.array([5.0, 20.0, 35.0, 50.0, 60.0])
    safe = zenith_threshold(z, 0.4, 2.0)
    store = _obs(z, np.where(z < 55, safe, np.nan))
    thr, text = run_energy_thresholds(store, "safe")
    np.testing.assert_allclose(thr, safe, rtol=1e-10)  # the 60 deg run from the fitted rule
    assert "0.4 TeV / cos(z)**2" in text
    assert fit_zenith_rule([10.0, 10.0, 10.0], [0.5, 0.5, 0.5]) == pytest.approx((0.5 * np.cos(
        np.radians(10)) ** 3.2, 3.2))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    base = replace(TruthModel(), zenith_norm_slope=0.5, norm=1.0)
    mu0 = base.total_counts(zenith=0.0, ontime=NOMINAL_ONTIME, offset_max=4.0)
    return simulate_store(tmp_path_factory.mktemp("thr") / "store", n_runs=24, seed=7,
                          truth=replace(base, norm=8000 / mu0), zenith_range=(0, 60))


@pytest.fixture(scope="module")
def models(store_dir):
    kw = dict(kind="2d", energy_edges=E_EDGES, offset_edges=O_EDGES, offset_max=2.5)
    return {policy: xbkg.make_model(store_dir, energy_threshold=policy, **kw)
            for policy in ("none", "safe")}


def test_exposure_only_above_each_threshold(store_dir, models):
    model = models["safe"]
    store = xbkg.open_datastore(store_dir)
    safe = store["SAFE_ENERGY_LO"].sel(obs_id=model.obs_id).values
    np.testing.assert_allclose(model["obs_energy_threshold"].values, safe)
    assert "SAFE_ENERGY_LO (24 runs)" in json.loads(model.attrs["provenance"])["energy_threshold"]
    # exposure: sum over runs of ONTIME x mask x dE x dOmega, exactly
    sa = 2 * np.pi * (np.cos(np.radians(O_EDGES[:-1])) - np.cos(np.radians(O_EDGES[1:])))
    mask = E_EDGES[None, :-1] >= safe[:, None] * (1 - 1e-6)
    t_e = (model["obs_ontime"].values[:, None] * mask).sum(axis=0)
    expected = t_e[:, None] * np.diff(E_EDGES)[:, None] * 1e6 * sa[None, :]
    np.testing.assert_allclose(model["exposure"].values[0], expected, rtol=1e-12)
    # the slices below every threshold have neither counts nor exposure
    first = int(np.argmax(t_e > 0))
    assert first > 0 and model["counts"].values[0, :first].sum() == 0
    # without thresholds the same runs count everywhere
    assert models["none"]["counts"].values[0, :first].sum() > 0
    assert np.isnan(models["none"]["obs_energy_threshold"].values).all()


def _predicted_over_truth(store_dir, model):
    """Sum over runs of model-predicted / true counts in bins above each run's threshold,
    per energy bin."""
    info = json.loads((store_dir / "truth.json").read_text())
    truth = TruthModel.from_dict(info["truth"])
    sa = 2 * np.pi * (np.cos(np.radians(O_EDGES[:-1])) - np.cos(np.radians(O_EDGES[1:])))
    pred = np.zeros(E_EDGES.size - 1)
    true = np.zeros(E_EDGES.size - 1)
    rate = model["rate"].values[0]
    for run in info["runs"]:
        thr = truth.threshold(run["zenith"])
        above = E_EDGES[:-1] >= thr
        x = run["ontime"] * np.diff(E_EDGES)[:, None] * 1e6 * sa[None, :]
        mu = truth.expected_counts(E_EDGES, offset_edges=O_EDGES, zenith=run["zenith"],
                                   ontime=run["ontime"])
        pred += (rate * x).sum(axis=1) * above
        true += mu.sum(axis=1) * above
    return pred, true


def test_thresholds_make_stacks_unbiased(store_dir, models):
    """Runs used above their thresholds: the stacked model predicts them right only when each
    run adds exposure above its own threshold."""
    results = {}
    for policy, model in models.items():
        pred, true = _predicted_over_truth(store_dir, model)
        sel = true > 0
        near = sel & (np.cumsum(sel) <= 4)  # the four lowest energy bins in use
        results[policy] = (pred[sel].sum() / true[sel].sum(), pred[near].sum() / true[near].sum())
    print("predicted/true (all, near threshold):", results)
    assert abs(results["safe"][0] - 1) < 0.02 and abs(results["safe"][1] - 1) < 0.03
    assert results["none"][1] < 0.85  # diluted by runs that see nothing there


def test_unexposed_slices_continue_the_spectrum(models):
    model = models["safe"]
    rate = model["rate"].values[0]
    exposed = model["exposure"].values[0].sum(axis=1) > 0
    first = int(np.argmax(exposed))
    assert np.all(rate > 0)
    # below the first exposed slice: one power-law step, then flat (no step to a floor)
    ratio = rate[first - 1] / rate[first]
    assert 1 / MAX_CONTINUATION_FACTOR <= ratio.min() and ratio.max() <= MAX_CONTINUATION_FACTOR
    mean = model["counts"].values[0].sum(axis=1) / np.where(exposed, model["exposure"].values[0]
                                                            .sum(axis=1), 1)
    np.testing.assert_allclose(ratio, mean[first] / mean[first + 1], rtol=1e-9)
    np.testing.assert_array_equal(rate[:first - 1], np.broadcast_to(rate[first - 1],
                                                                    rate[:first - 1].shape))
    assert np.isnan(model["rate_error"].values[0, :first]).all()
    # lazy and eager fills agree
    import dask.array as da

    lazy = fill_unexposed(da.from_array(model["rate"].values, chunks=(1, 5, 5)),
                          da.from_array(model["exposure"].values, chunks=(1, 5, 5)),
                          da.from_array(model["counts"].values, chunks=(1, 5, 5)), E_EDGES)
    np.testing.assert_array_equal(lazy.compute(), rate[None])


@pytest.mark.gammapy
def test_gammapy_predictions_at_the_threshold(store_dir, models, tmp_path):
    """MapDatasetMaker with the model: finite predictions, and the first energy bins above the
    lowest thresholds are predicted right; with the exposure-free slices at 0 (what a plain
    counts/exposure gives) or at a 1e-3 floor they are not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import astropy.units as u
        from gammapy.data import DataStore
        from gammapy.datasets import MapDataset
        from gammapy.irf import EffectiveAreaTable2D
        from gammapy.makers import MapDatasetMaker
        from gammapy.maps import MapAxis, WcsGeom

    from xbkg.building.products import write_products

    model = models["safe"]
    store = xbkg.open_datastore(store_dir)
    exposed = model["exposure"].values[0].sum(axis=1) > 0
    first = int(np.argmax(exposed))
    variants = {"xbkg": model}
    for name, value in (("zero", 0.0), ("floor", 1e-3)):
        other = model.copy(deep=True)
        mean = other["rate"].values[0, first].mean()
        other["rate"].values[0, :first] = value * mean
        variants[name] = other
    thresholds = model["obs_energy_threshold"].values
    runs = model.obs_id.values[E_EDGES[first - 1] < thresholds * 1.0000001]
    runs = runs[thresholds[np.isin(model.obs_id.values, runs)] <= E_EDGES[first]]
    assert runs.size >= 3  # runs whose first bin is the model's first exposed slice
    runs = runs[:4]
    energy = MapAxis.from_energy_edges(E_EDGES * u.TeV)
    aeff = EffectiveAreaTable2D(  # MapDatasetMaker wants an aeff for its metadata only
        axes=[MapAxis.from_energy_bounds(0.01, 300, 4, unit="TeV", name="energy_true"),
              MapAxis.from_bounds(0, 5, 1, unit="deg", name="offset")],
        data=np.ones((4, 1)), unit="m2")
    ratios = {}
    for name, variant in variants.items():
        out = write_products(variant, store.sel(obs_id=runs), tmp_path / name, image=False)
        ds = DataStore.from_dir(out)
        counts = np.zeros(E_EDGES.size - 1)
        background = np.zeros(E_EDGES.size - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for obs in ds.get_observations(runs.tolist(), required_irf=["bkg"]):
                obs.aeff = aeff
                geom = WcsGeom.create(skydir=obs.get_pointing_icrs(obs.tmid), width=(4, 4),
                                      binsz=0.2, frame="icrs", axes=[energy])
                data = MapDatasetMaker(selection=["counts", "background"]).run(
                    MapDataset.create(geom), obs)
                bkg = data.background.data
                assert np.all(np.isfinite(bkg)) and bkg.min() >= 0
                inside = data.counts.geom.separation(obs.get_pointing_icrs(obs.tmid)) < 1.8 * u.deg
                counts += (data.counts.data * inside).sum(axis=(1, 2))
                background += (bkg * inside).sum(axis=(1, 2))
        ratios[name] = counts[first:first + 3] / background[first:first + 3]
    print("counts/predicted in the first 3 exposed bins:", ratios)
    assert np.all(np.abs(ratios["xbkg"] - 1) < 0.1)
    assert ratios["zero"][0] > 1.5 and ratios["floor"][0] > 1.2
