"""gammapy reads every file `xbkg apply-model` writes and predicts the held-out runs as xbkg does."""

import dataclasses
import warnings

import numpy as np
import pytest

from xbkg.checks.crossval import validate
from xbkg.cli import main
from xbkg.core.groups import assign_folds
from xbkg.io.gammapy import respect_fov_alignment

pytestmark = pytest.mark.gammapy

CONDITIONS = "zenith,MUONEFF,outer_rate"


def _gammapy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gammapy.data
        import gammapy.datasets
        import gammapy.makers
        import gammapy.maps
    return gammapy


def _norm(obs):
    """counts / npred of one run as `xbkg validate` evaluates it, with gammapy's makers."""
    gp = _gammapy()
    import astropy.units as u

    energy = gp.maps.MapAxis.from_energy_bounds(0.3, 50, 12, unit="TeV")
    geom = gp.maps.WcsGeom.create(skydir=obs.get_pointing_icrs(obs.tmid), width=(4, 4),
                                  binsz=0.4, frame="icrs", axes=[energy])
    maker = gp.makers.MapDatasetMaker(selection=["counts", "background"])
    safe = gp.makers.SafeMaskMaker(methods=["offset-max", "aeff-default"], offset_max=2.0 * u.deg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = safe.run(maker.run(gp.datasets.MapDataset.create(geom), obs), obs)
    mask = dataset.mask_safe.data
    return float(dataset.counts.data[mask].sum()) / float(dataset.background.data[mask].sum())


def _write_run_list(path, obs_ids):
    path.write_text("\n".join(str(int(o)) for o in obs_ids) + "\n")
    return path


@pytest.mark.slow
def test_dr1_folds_apply_model_and_gammapy_agree_with_validate(hess_dr1, tmp_path):
    """For each of 5 folds: a model of the other off runs, apply-model to the held-out runs,
    gammapy's counts / npred per run; the same figures as `xbkg validate`'s."""
    from xbkg.store.datastore import open_datastore
    from xbkg.store.selection import select_runs

    gp = _gammapy()
    store = open_datastore(hess_dr1)
    off, _ = select_runs(store, "off")
    folds = assign_folds(off, 5, 0)
    gammapy_norm = {}
    for k in range(5):
        train = _write_run_list(tmp_path / f"train{k}.txt", np.asarray(off)[folds != k])
        test = _write_run_list(tmp_path / f"test{k}.txt", np.asarray(off)[folds == k])
        models, applied = tmp_path / f"models{k}", tmp_path / f"applied{k}"
        assert main(["make-models", str(hess_dr1), str(models), "--run-list", str(train),
                     "--kind", "3d", "--energy-threshold", "safe", "--conditions", CONDITIONS,
                     "--no-image", "--no-progress"]) == 0
        assert main(["apply-model", str(models), str(hess_dr1), str(applied), "--run-list",
                     str(test)]) == 0
        data_store = gp.data.DataStore.from_dir(applied)
        for obs_id in np.asarray(off)[folds == k]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obs = respect_fov_alignment(data_store.obs(int(obs_id)))
                assert obs.bkg.fov_alignment.value == "ALTAZ"
                gammapy_norm[int(obs_id)] = _norm(obs)
    result = validate(hess_dr1, n_folds=5, seed=0,
                      model_options={"kind": "3d", "energy_threshold": "safe",
                                     "conditions": CONDITIONS})
    ours = dict(zip(result.obs_id.values.tolist(), result["norm"].values.tolist()))
    g = np.array([gammapy_norm[o] for o in ours])
    x = np.array(list(ours.values()))
    # same models, two evaluations (gammapy: CAR sky grid; xbkg: FoV grid): close per run
    assert np.max(np.abs(g / x - 1)) < 0.05, np.round(g / x - 1, 3)
    assert abs(g.mean() - x.mean()) < 0.01
    assert abs(np.std(g, ddof=1) - np.std(x, ddof=1)) < 0.01


def test_gammapy_reads_every_file_apply_model_writes(hess_dr1, tmp_path):
    """All 105 DR1 runs (off and source runs) from a model of the off runs."""
    gp = _gammapy()
    models, applied = tmp_path / "models", tmp_path / "applied"
    assert main(["make-models", str(hess_dr1), str(models), "--kind", "3d", "--energy-threshold",
                 "safe", "--conditions", "zenith,MUONEFF", "--no-image", "--no-progress"]) == 0
    assert main(["apply-model", str(models), str(hess_dr1), str(applied)]) == 0
    data_store = gp.data.DataStore.from_dir(applied)
    assert len(data_store.obs_table) == 105
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for obs_id in data_store.obs_table["OBS_ID"]:
            obs = respect_fov_alignment(data_store.obs(int(obs_id)))
            assert obs.bkg.data.shape == (20, 25, 25)
            assert np.isfinite(obs.bkg.data).all() and obs.bkg.data.max() > 0
            assert len(obs.events.table) > 1000  # events and IRFs from the store
            assert obs.aeff is not None


def test_gammapy_reads_apply_model_on_a_simulated_store(tmp_path):
    from xbkg.simulate import TruthModel, simulate_store

    gp = _gammapy()
    base = TruthModel(norm=1.0, zenith_norm_slope=0.0)
    truth = dataclasses.replace(base, norm=2000.0 / base.total_counts(zenith=0.0, ontime=1680.0,
                                                                      offset_max=3.0))
    store = simulate_store(tmp_path / "store", n_runs=20, truth=truth, seed=5, offset_max=3.0,
                           condition_truth={"MUONEFF": 1.0, "scatter": 0.05})
    models, applied = tmp_path / "models", tmp_path / "applied"
    for kind in ("2d", "3d"):
        assert main(["make-models", str(store), str(models), "--kind", kind, "--energy-threshold",
                     "safe", "--conditions", "zenith,MUONEFF,outer_rate", "--no-image",
                     "--no-progress", "--overwrite"]) == 0
        assert main(["apply-model", str(models), str(store), str(applied), "--overwrite"]) == 0
        data_store = gp.data.DataStore.from_dir(applied)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for obs_id in data_store.obs_table["OBS_ID"]:
                obs = data_store.obs(int(obs_id), required_irf=["bkg"])  # no IRFs simulated
                assert obs.bkg is not None and np.isfinite(obs.bkg.data).all()
                assert len(obs.events.table) > 100
