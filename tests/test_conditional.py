"""The conditional background model (xbkg.building.conditional) on simulated stores with a known truth."""

import dataclasses
import json
import logging
import warnings

import numpy as np
import pytest

from xbkg.building.conditional import (
    ConditionRangeWarning,
    model_for_run,
    models_for_runs,
    run_terms,
)
from xbkg.building.make import make_model
from xbkg.cli import main
from xbkg.core.binning import edges_of
from xbkg.io import open_model, save_model
from xbkg.model.group_interpolation import models_for_observations
from xbkg.simulate import TruthModel, load_truth, simulate_store
from xbkg.sky.exposure import annulus_solid_angle, energy_widths_mev
from xbkg.store.conditions import condition_matrix
from xbkg.store.datastore import open_datastore
from xbkg.testing import count_run_reads

#: Known coefficients (terms of xbkg.store.conditions) and per-run scatter of ln level.
TRUTH = {"MUONEFF": 1.5, "N_TELS": 1.0, "zenith": 1.5, "azimuth_cos": 0.1, "azimuth_sin": -0.05,
         "scatter": 0.08}
CONDITIONS = "zenith,MUONEFF,N_TELS,azimuth"
OFFSET_MAX = 2.5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = TruthModel(norm=1.0, zenith_norm_slope=0.0)
    mu0 = base.total_counts(zenith=0.0, ontime=1680.0, offset_max=3.0)
    truth = dataclasses.replace(base, norm=4000.0 / mu0)
    return simulate_store(tmp_path_factory.mktemp("cond") / "store", n_runs=100, truth=truth,
                          seed=3, zenith_range=(0, 50), offset_max=3.0, condition_truth=TRUTH)


@pytest.fixture(scope="module")
def model(store):
    return make_model(store, kind="2d", energy_threshold="safe", conditions=CONDITIONS,
                      offset_max=OFFSET_MAX, scheduler="sync")


def _weighted_coefficient(model, term, e_min=1.0):
    """Counts-weighted mean over energies >= e_min of d ln rate / d term, and its error."""
    k = list(model["cond_term"].values).index(term)
    n_e, n_k = model["cond_coef"].shape
    w = model["obs_fit_counts"].sum(("obs_id", "fit_bin")).values.astype(float)
    w = np.where(model["energy"].values >= e_min, w, 0.0)
    w /= w.sum()
    scale = float(model["cond_scale"].values[k])
    grad = np.zeros((n_e, n_k))
    grad[:, k] = w / scale
    value = float(grad.ravel() @ model["cond_coef"].values.ravel())
    error = float(np.sqrt(grad.ravel() @ model["cond_cov"].values @ grad.ravel()))
    return value, error


@pytest.mark.parametrize("term", ["MUONEFF", "N_TELS", "azimuth_cos", "azimuth_sin"])
def test_coefficients_recovered_within_two_sigma(model, term):
    value, error = _weighted_coefficient(model, term)
    assert 0 < error < 0.5 * max(abs(TRUTH[term]), 0.2)
    assert abs(value - TRUTH[term]) < 2 * error, (value, error)


def test_zenith_coefficient_above_threshold_region(model):
    # the threshold turn-on adds zenith dependence near threshold: look well above it
    value, error = _weighted_coefficient(model, "zenith", e_min=3.0)
    assert abs(value - TRUTH["zenith"]) < 2 * error, (value, error)


def test_scatter_recovered_within_20_percent(model):
    info = json.loads(model.attrs["conditional"])
    assert abs(info["sys_scatter"] / TRUTH["scatter"] - 1) < 0.2, info["sys_scatter"]
    # a model without the conditions sees far more scatter
    assert info["sys_scatter_insample"] <= info["sys_scatter"] * 1.05


def test_run_statistics_come_from_the_same_pass(model):
    """The per-run ring statistics add up to the model's own counts within offset_max."""
    per_energy = model["obs_fit_counts"].sum(("obs_id", "fit_bin")).values
    offset = edges_of(model, "offset")
    inside = offset[1:] <= OFFSET_MAX + 1e-9
    assert np.array_equal(per_energy, model["counts"].values[0][:, inside].sum(axis=1))
    exposure = model["obs_fit_exposure"].sum(("obs_id", "fit_bin")).values
    np.testing.assert_allclose(exposure, model["exposure"].values[0][:, inside].sum(axis=1),
                               rtol=1e-9)


def _truth_and_predictions(store, models, obs_ids):
    """Per run: truth and predicted counts summed over the bins above its threshold."""
    truth, record = load_truth(store)
    runs = {r["obs_id"]: r for r in record["runs"]}
    ds = open_datastore(store)
    out = []
    for obs_id, one in zip(obs_ids, models):
        run = runs[int(obs_id)]
        energy, offset = edges_of(one, "energy"), edges_of(one, "offset")
        thr = float(ds["SAFE_ENERGY_LO"].sel(obs_id=obs_id))
        emask = energy[:-1] >= thr * (1 - 1e-6)
        expected = truth.expected_counts(energy, offset_edges=offset, zenith=run["zenith"],
                                         ontime=run["ontime"]) * run["condition_factor"]
        scale = energy_widths_mev(energy)[:, None] * annulus_solid_angle(offset, OFFSET_MAX)
        pred = one["rate"].values[0] * scale * run["ontime"]
        out.append((expected[emask].sum(), pred[emask].sum(), run["condition_scatter"]))
    return np.array(out)


def test_per_run_models_closer_to_truth_than_zenith_models(store, model):
    ds = open_datastore(store)
    obs_ids = ds.obs_id.values
    cond = [m for _, m in models_for_runs(model, ds, warn=False)]
    zen = make_model(store, kind="2d", energy_threshold="safe", offset_max=OFFSET_MAX,
                     zenith_edges="0,20,30,40,50", scheduler="sync")
    per_run = [m for _, m in models_for_observations(zen, ds)]
    groups = [zen.sel(zenith_group=[int(g)]) for g in zen["obs_group"].values]
    rms, floor = {}, {}
    for name, models in (("conditional", cond), ("zenith per-run", per_run),
                         ("zenith groups", groups)):
        t = _truth_and_predictions(store, models, obs_ids)
        rms[name] = float(np.sqrt(np.mean(np.log(t[:, 1] / t[:, 0]) ** 2)))
        # against the predictable truth: without each run's random level
        floor[name] = float(np.sqrt(np.mean((np.log(t[:, 1] / t[:, 0]) + t[:, 2]) ** 2)))
    assert rms["conditional"] < 0.6 * rms["zenith per-run"], rms
    assert rms["conditional"] < 0.6 * rms["zenith groups"], rms
    # the unpredictable random level is the floor: the conditional model reaches it
    assert rms["conditional"] < 1.2 * TRUTH["scatter"], rms
    assert floor["conditional"] < 0.04 < floor["zenith per-run"], floor


def test_model_nc_and_gadf_keep_the_uncertainties(model, tmp_path):
    from astropy.io import fits
    from ogadf_schema.irfs import BKG_2D

    path = save_model(model, tmp_path / "model.nc")
    back = open_model(path)
    for name in ("cond_coef", "cond_cov", "cond_center", "obs_fit_counts",
                 "cond_reference_factor"):
        np.testing.assert_array_equal(back[name].values, model[name].values)
    assert json.loads(back.attrs["conditional"])["terms"] == json.loads(
        model.attrs["conditional"])["terms"]
    ds = open_datastore(json.loads(model.attrs["provenance"])["store"])
    one = model_for_run(back, run_terms(back, ds)[0], zenith=float(ds["zenith"][0]),
                        obs_id=int(ds.obs_id[0]))
    from fits_schema.exceptions import AdditionalHeaderCard

    from xbkg.io.gadf import bkg_hdu

    hdu = bkg_hdu(one)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BKG_2D.validate_hdu(hdu)  # raises on a violation
    for w in caught:  # only our documented extra cards (and column) may be remarked on
        assert issubclass(w.category, AdditionalHeaderCard) or "BKG_ERR" in str(w.message), \
            str(w.message)
    info = json.loads(one.attrs["per_run"])
    assert hdu.header["BKG_SYS"] == pytest.approx(info["sys_scatter"], abs=1e-6)
    assert hdu.header["BKG_STAT"] == pytest.approx(info["stat_error"], abs=1e-6)
    assert hdu.header["BKG_OUTR"] is False
    err = hdu.data["BKG_ERR"][0]
    assert err.shape == hdu.data["BKG"][0].shape and (err >= 0).all() and err.max() > 0
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "one.fits")


def test_runs_outside_the_fitted_range_are_flagged(store, tmp_path, caplog):
    low = make_model(store, kind="2d", energy_threshold="safe", conditions="MUONEFF",
                     offset_max=OFFSET_MAX, scheduler="sync", where="MUONEFF < 0.75")
    ds = open_datastore(store)
    x, _ = condition_matrix(ds, ["MUONEFF"])
    far = int(np.argmax(x[:, 0]))
    with pytest.warns(ConditionRangeWarning, match="MUONEFF"):
        one = model_for_run(low, x[far], zenith=float(ds["zenith"][far]), obs_id=1)
    assert json.loads(one.attrs["per_run"])["outside_range"] == ["MUONEFF"]
    from astropy.table import Table

    from xbkg.building.apply import apply_model

    with caplog.at_level(logging.WARNING, logger="xbkg.building.apply"):
        apply_model(low, ds, tmp_path / "out")
    obs = Table.read(tmp_path / "out" / "obs-index.fits.gz")
    muon = np.asarray(obs["MUONEFF"], float)
    lo, hi = float(low["cond_min"][0]), float(low["cond_max"][0])  # ln MUONEFF
    assert np.exp(hi) < 0.75
    expect = np.log(muon) > hi + 0.1 * (hi - lo)
    assert expect.any() and np.array_equal(np.asarray(obs["BKG_OUTSIDE"]), expect)
    assert "outside the conditions" in caplog.text


@pytest.mark.slow
def test_cli_make_info_apply(store, tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["make-models", str(store), str(out), "--kind", "2d", "--energy-threshold",
                 "safe", "--conditions", "zenith,MUONEFF", "--no-progress"]) == 0
    assert main(["info", str(out / "model.nc")]) == 0
    text = capsys.readouterr().out
    assert "conditional model: conditions zenith, MUONEFF" in text
    assert "d ln rate / d MUONEFF" in text
    applied = tmp_path / "applied"
    assert main(["apply-model", str(out), str(store), str(applied)]) == 0
    assert len(list((applied / "bg_run_models").iterdir())) == 100
    assert main(["apply-model", str(out / "bg_observation_groups.ecsv"), str(store),
                 str(tmp_path / "x")]) == 2
    assert main(["make-models", str(store), str(tmp_path / "bad"), "--conditions", "NOPE"]) == 2
    err = capsys.readouterr().err
    assert "condition 'NOPE'" in err and "Traceback" not in err
    plain = tmp_path / "plain"
    assert main(["make-models", str(store), str(plain), "--kind", "2d", "--no-progress"]) == 0
    assert main(["apply-model", str(plain), str(store), str(tmp_path / "y")]) == 2
    assert "not a conditional model" in capsys.readouterr().err
    (tmp_path / "runs.txt").write_text("5\n999\n")
    assert main(["apply-model", str(out), str(store), str(tmp_path / "z"), "--run-list",
                 str(tmp_path / "runs.txt")]) == 2
    err = capsys.readouterr().err
    assert "999" in err and len(err.strip().splitlines()) == 1


def test_update_refits_on_stored_statistics(store, model, tmp_path):
    """Adding runs to a conditional model refits on old and new runs' statistics: the same
    fit as a build from all runs at once."""
    from xbkg.building.update import UpdateError, update_model

    first = make_model(store, kind="2d", energy_threshold="safe", conditions=CONDITIONS,
                       offset_max=OFFSET_MAX, scheduler="sync", obs_ids=list(range(1, 61)))
    updated = update_model(first, store, list(range(61, 101)), scheduler="sync")
    assert updated.sizes["obs_id"] == 100
    np.testing.assert_array_equal(updated["obs_fit_counts"].values, model["obs_fit_counts"].values)
    np.testing.assert_allclose(updated["cond_coef"].values, model["cond_coef"].values,
                               rtol=1e-6, atol=1e-9)
    with pytest.raises(UpdateError, match="differ from the model"):
        update_model(first, store, [70], conditions="zenith", scheduler="sync")
    plain = make_model(store, kind="2d", energy_threshold="safe", offset_max=OFFSET_MAX,
                       scheduler="sync", obs_ids=list(range(1, 11)))
    with pytest.raises(UpdateError, match="rebuild"):
        update_model(plain, store, [70], conditions="zenith", scheduler="sync")


def test_partial_residuals_and_plot(model):
    import matplotlib

    matplotlib.use("Agg")
    from xbkg.plots.conditional import partial_residuals, plot_conditions

    parts = partial_residuals(model)
    value, resid, effect = parts["MUONEFF"]
    # the fitted effect of ln MUONEFF has the simulated slope (about 1.5) across runs
    slope = np.polyfit(value, resid, 1)[0]
    assert abs(slope - TRUTH["MUONEFF"]) < 0.3
    fig = plot_conditions(model)
    assert len(fig.axes) == len(parts) == 5


@pytest.mark.slow
def test_validate_conditional_on_the_simulator(store, tmp_path):
    """k-fold validation of conditional models: held-out norms scatter as the truth's random
    level (0.08) plus Poisson, and the stated uncertainties give pulls of width about 1."""
    from astropy.table import Table

    from xbkg.checks.crossval import summarise, validate
    from xbkg.report.checks import write_validation

    result = validate(store, n_folds=5, selection="all",
                      model_options={"kind": "2d", "energy_threshold": "safe",
                                     "offset_max": OFFSET_MAX, "conditions": CONDITIONS})
    s = summarise(result)
    poisson = float(np.sqrt(np.mean(result["norm_error"].values ** 2)))
    expected = np.hypot(TRUTH["scatter"], poisson)
    assert abs(s["norm_mean"] - 1) < 0.03, s["norm_mean"]
    assert abs(s["norm_std"] / expected - 1) < 0.25, (s["norm_std"], expected)
    assert 0.8 < s["pull_width"] < 1.2, s["pull_width"]
    write_validation(result, tmp_path / "v", plots=False)
    table = Table.read(tmp_path / "v" / "validation_runs.ecsv")
    assert "PULL" in table.colnames and np.isfinite(table["LEVEL_ERROR"]).all()



@pytest.mark.parametrize("split_every", [None, 3])
def test_conditional_build_reads_every_run_once(store, split_every):
    """The per-run statistics come out of the model's own pass: one read per run."""
    import dask

    with count_run_reads() as reads, dask.config.set(split_every=split_every):
        built = make_model(store, kind="2d", energy_threshold="safe", offset_max=OFFSET_MAX,
                           conditions="zenith,outer_rate", scheduler="threads",
                           obs_ids=range(1, 31))
    assert len(reads) == 30 and set(reads.values()) == {1}
    # outer_rate counted in the pass = counted from the event lists (as apply-model does)
    ds = open_datastore(store).sel(obs_id=built.obs_id.values)
    x, _ = condition_matrix(ds, ["outer_rate"], outer_offset=OFFSET_MAX)
    np.testing.assert_allclose(built["obs_cond_terms"].values[:, 1], x[:, 0], rtol=1e-12)


def test_accessor_for_run_and_html(store, model):
    import xbkg.accessor  # noqa: F401  (registers the .bkg accessor)

    ds = open_datastore(store)
    one = model.bkg.for_run(ds, 7)
    same = dict(models_for_runs(model, ds.sel(obs_id=[7]), warn=False))[7]
    np.testing.assert_array_equal(one["rate"].values, same["rate"].values)
    assert json.loads(one.attrs["per_run"])["obs_id"] == 7
    html = model.bkg._repr_html_()
    assert "conditional model: conditions zenith, MUONEFF, N_TELS, azimuth" in html


def test_zenith_groups_with_conditions(store):
    """Zenith groups as a step in cos z under the smooth terms: each run gets its group's
    template and still reaches the predictable truth."""
    grouped = make_model(store, kind="2d", energy_threshold="safe", conditions=CONDITIONS,
                         offset_max=OFFSET_MAX, zenith_edges="0,25,50", scheduler="sync")
    ds = open_datastore(store)
    runs = dict(models_for_runs(grouped, ds, warn=False))
    groups = dict(zip(grouped.obs_id.values.tolist(), grouped["obs_group"].values.tolist()))
    assert {json.loads(m.attrs["per_run"])["source_group"] == groups[o]
            for o, m in runs.items()} == {True}
    t = _truth_and_predictions(store, list(runs.values()), list(runs))
    floor = float(np.sqrt(np.mean((np.log(t[:, 1] / t[:, 0]) + t[:, 2]) ** 2)))
    assert floor < 0.04, floor


def _at_conditions(model, x_raw):
    """``model`` with its counts and an exposure rescaled so that counts / exposure is its
    rate at the conditions ``x_raw``: a Poisson comparison of two conditional models."""
    one = model_for_run(model, x_raw, zenith=30.0, group=0, warn=False)
    base = model["rate"].values[0]
    k = one["rate"].values[0] / np.where(base > 0, base, 1.0)
    out = model.copy()
    out["exposure"] = model["exposure"] / k[None]
    return out


def test_dr1_all_runs_with_exclusions_agree_with_off_runs_raw(hess_dr1):
    """With the conditional terms, the model of all 105 runs with the four sources cut out and
    the 45 off runs' model agree at common conditions, raw (not shape-only), as the off runs
    among themselves; one group without conditions does not."""
    from test_exclusion_closure import DR1_CIRCLES, _dr1_options

    import xbkg
    from xbkg.checks.compare import rate_consistency

    cond = "zenith,MUONEFF,time,azimuth,outer_rate"
    kw = _dr1_options("3d", "altaz")
    off = xbkg.make_model(hess_dr1, selection="off", conditions=cond, **kw)
    everything = xbkg.make_model(hess_dr1, selection="all", exclusion=DR1_CIRCLES,
                                 conditions=cond, **kw)
    ids = np.sort(off["obs_id"].values)
    halves = [xbkg.make_model(hess_dr1, selection="off", obs_ids=ids[k::2], conditions=cond, **kw)
              for k in (0, 1)]
    x0 = off["cond_center"].values
    c = rate_consistency(_at_conditions(off, x0), _at_conditions(everything, x0), nested=True)
    control = rate_consistency(*[_at_conditions(h, x0) for h in halves])
    plain = rate_consistency(xbkg.make_model(hess_dr1, selection="off", **kw),
                             xbkg.make_model(hess_dr1, selection="all", exclusion=DR1_CIRCLES,
                                             **kw), nested=True)
    assert c.attrs["ndf"] >= 200 and control.attrs["ndf"] >= 200
    assert c.attrs["chi2_ndf"] < 1.2 * control.attrs["chi2_ndf"], (c.attrs, control.attrs)
    assert c.attrs["chi2_ndf"] < 0.2 * plain.attrs["chi2_ndf"]


@pytest.mark.slow
def test_make_models_per_run_files_are_conditional(store, tmp_path):
    from xbkg.io import open_model

    out = tmp_path / "models"
    assert main(["make-models", str(store), str(out), "--kind", "2d", "--energy-threshold",
                 "safe", "--conditions", "zenith,MUONEFF", "--per-run", "--no-progress"]) == 0
    model = open_model(out / "model.nc")
    one = open_model(out / "bg_run_models" / "bg_run_model_obs000007.fits.gz")
    ds = open_datastore(store)
    expected = dict(models_for_runs(model, ds.sel(obs_id=[7]), warn=False))[7]
    np.testing.assert_allclose(one["rate"].values, expected["rate"].values, rtol=1e-12)
