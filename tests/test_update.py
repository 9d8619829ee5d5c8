"""Incremental model updates (xbkg.building.update, ``xbkg update-model``): equal to a full rebuild."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import xbkg
from xbkg.building.update import UpdateError, merge_models, model_options, update_model
from xbkg.cli import main
from xbkg.io.netcdf import write_netcdf
from xbkg.simulate import simulate_store

ZENITH_EDGES = [0, 20, 35, 50]
N_RUNS = 24
OLD, NEW = list(range(1, 17)), list(range(17, N_RUNS + 1))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return simulate_store(tmp_path_factory.mktemp("update") / "store", n_runs=N_RUNS,
                          events_per_run=1500, seed=11, zenith_range=(0, 50))


def _assert_rebuild_equal(updated, full):
    """Counts bitwise; exposure and rate to 1e-12; run and group variables equal."""
    assert updated.sizes == full.sizes
    np.testing.assert_array_equal(updated["obs_id"].values, full["obs_id"].values)
    np.testing.assert_array_equal(updated["counts"].values, full["counts"].values)
    assert updated["counts"].dtype == np.int64
    for name in ("exposure", "rate", "rate_error"):
        np.testing.assert_allclose(updated[name].values, full[name].values, rtol=1e-12, atol=0,
                                   err_msg=name)
    for name in [v for v in full.data_vars if str(v).startswith(("obs_", "group_"))]:
        if full[name].dtype.kind in "US":  # text (obs_pointing_source)
            np.testing.assert_array_equal(updated[name].values, full[name].values, err_msg=name)
            continue
        np.testing.assert_allclose(updated[name].values, full[name].values, rtol=1e-12,
                                   err_msg=name)
    for name in [c for c in full.coords if str(c).endswith("_bounds")]:
        np.testing.assert_array_equal(updated[name].values, full[name].values)
    for key in ("kind", "fov_alignment", "offset_max", "rate_floor", "group_by", "grouping"):
        assert updated.attrs[key] == full.attrs[key], key


@pytest.mark.parametrize("kw", [
    dict(kind="3d", fov_alignment="altaz", zenith_edges=ZENITH_EDGES, energy_threshold="safe"),
    dict(kind="2d", zenith_edges=ZENITH_EDGES, selection="off", where="ZEN_PNT < 45"),
    dict(kind="3d", fov_alignment="radec", grouping={"by": xbkg.building.grouping.NORTH_SOUTH},
         energy_threshold=0.3),
], ids=["3d-altaz-safe", "2d-cuts", "3d-radec-north-south"])
def test_update_equals_full_rebuild(store_dir, kw):
    store = xbkg.open_datastore(store_dir)
    full = xbkg.make_model(store, obs_ids=OLD + NEW, **kw)
    old = xbkg.make_model(store, obs_ids=OLD, **kw)
    updated = update_model(old, store, NEW)
    _assert_rebuild_equal(updated, full)
    assert int(updated["counts"].sum()) > int(old["counts"].sum()) > 0
    prov = json.loads(updated.attrs["provenance"])
    assert prov["n_runs"] == full.sizes["obs_id"]
    assert prov["updates"][-1]["n_runs_added"] == full.sizes["obs_id"] - old.sizes["obs_id"]


def test_update_reads_only_the_new_runs(store_dir, tmp_path):
    """The old runs' event files are gone: the update must not need them."""
    copy = shutil.copytree(store_dir, tmp_path / "store")
    store = xbkg.open_datastore(copy)
    kw = dict(kind="3d", fov_alignment="altaz", zenith_edges=ZENITH_EDGES)
    old = xbkg.make_model(store, obs_ids=OLD, **kw)
    full = xbkg.make_model(store, **kw)
    for path in store["events_file"].sel(obs_id=OLD).values:
        Path(str(path)).unlink()
    updated = update_model(old, copy, on_error="raise")  # default: the runs not in the model
    _assert_rebuild_equal(updated, full)


def test_update_of_saved_model_in_steps(store_dir, tmp_path):
    store = xbkg.open_datastore(store_dir)
    kw = dict(kind="2d", zenith_edges=ZENITH_EDGES)
    model = xbkg.make_model(store, obs_ids=OLD[:8], **kw)
    for chunk in (OLD[8:], NEW[:3], NEW[3:]):  # through netCDF each time
        write_netcdf(model, tmp_path / "m.nc", overwrite=True)
        model = update_model(xbkg.open_model(tmp_path / "m.nc"), store, chunk)
    _assert_rebuild_equal(model, xbkg.make_model(store, **kw))
    assert len(json.loads(model.attrs["provenance"])["updates"]) == 3


def test_refusals(store_dir, tmp_path):
    store = xbkg.open_datastore(store_dir)
    old = xbkg.make_model(store, obs_ids=OLD, kind="2d", zenith_edges=ZENITH_EDGES)
    with pytest.raises(UpdateError, match=r"already in the model: \[3, 5\]"):
        update_model(old, store, [3, 5, 20])
    with pytest.raises(UpdateError, match="kind '3d'"):
        update_model(old, store, NEW, kind="3d")
    with pytest.raises(UpdateError, match="energy edges differ"):
        update_model(old, store, NEW, energy_edges="0.1:100:10")
    with pytest.raises(UpdateError, match="zenith edges"):
        update_model(old, store, NEW, zenith_edges=[0, 30, 60])
    update_model(old, store, NEW[:1], kind="2d", zenith_edges=ZENITH_EDGES,
                 offset_edges="0:2.5:10")  # the model's own options pass
    other = xbkg.make_model(store, obs_ids=NEW, kind="2d", zenith_edges=[0, 25, 50])
    with pytest.raises(UpdateError, match="group bounds zenith_bounds differ"):
        merge_models(old, other)
    other = xbkg.make_model(store, obs_ids=NEW, kind="2d", zenith_edges=ZENITH_EDGES,
                            energy_threshold="zenith")
    with pytest.raises(UpdateError, match="energy_threshold_policy"):
        merge_models(old, other)
    with pytest.raises(UpdateError, match="no counts, exposure"):
        update_model(old.drop_vars(["counts", "exposure"]), store, NEW)
    with pytest.raises(xbkg.store.selection.SelectionError, match="nothing to add"):
        update_model(xbkg.make_model(store, kind="2d"), store)


def test_model_options_reproduce_the_build(store_dir):
    store = xbkg.open_datastore(store_dir)
    model = xbkg.make_model(store, obs_ids=OLD, kind="3d", fov_alignment="radec",
                            fov_edges="-2:2:8", zenith_edges=ZENITH_EDGES,
                            energy_threshold="zenith", min_n_tels=2,
                            exclusion=[{"ra": [83.6], "dec": [22.0], "radius": [0.3]}])
    opts = model_options(model)
    assert opts["kind"] == "3d" and opts["fov_alignment"] == "radec"
    np.testing.assert_array_equal(opts["fov_edges"]["detx"], np.linspace(-2, 2, 9))
    assert opts["energy_threshold"]["energy_threshold_policy"] == "zenith"
    assert len(opts["energy_threshold"]["zenith_rule"]) == 2
    assert opts["min_n_tels"] == 2 and opts["exclusion_mode"] == "regions"
    rebuilt = xbkg.make_model(store, obs_ids=OLD, **opts)
    np.testing.assert_array_equal(rebuilt["counts"].values, model["counts"].values)
    np.testing.assert_array_equal(rebuilt["exposure"].values, model["exposure"].values)


def test_smoothed_model_is_smoothed_again(store_dir):
    from xbkg.model.smoothing import smooth_model

    store = xbkg.open_datastore(store_dir)
    kw = dict(kind="2d", zenith_edges=ZENITH_EDGES)
    old = smooth_model(xbkg.make_model(store, obs_ids=OLD, **kw), "gauss", sigma_max=0.4)
    updated = update_model(old, store, NEW)
    expected = smooth_model(xbkg.make_model(store, **kw), "gauss", sigma_max=0.4)
    assert not np.allclose(updated["rate"].values, xbkg.make_model(store, **kw)["rate"].values)
    np.testing.assert_allclose(updated["rate"].values, expected["rate"].values, rtol=1e-10)
    assert json.loads(updated.attrs["smoothing"])["sigma_max"] == 0.4


@pytest.mark.slow
def test_cli_update_model(store_dir, tmp_path, capsys):
    (tmp_path / "old.txt").write_text("\n".join(map(str, OLD)) + "\n")
    (tmp_path / "new.txt").write_text(" ".join(map(str, NEW)) + "\n")
    (tmp_path / "dup.txt").write_text("1 2 20\n")
    out = tmp_path / "models"
    args = ["--selection", "all", "--zenith-edges", "0,20,35,50", "--kind", "2d", "--no-progress"]
    assert main(["make-models", str(store_dir), str(out), "--run-list",
                 str(tmp_path / "old.txt")] + args) == 0
    assert main(["make-models", str(store_dir), str(tmp_path / "full")] + args) == 0
    # a netCDF model to a new file, then the products folder in place
    assert main(["update-model", str(out / "model.nc"), str(store_dir), "--run-list",
                 str(tmp_path / "new.txt"), "--output", str(tmp_path / "up.nc"),
                 "--no-progress"]) == 0
    assert main(["update-model", str(out), str(store_dir), "--run-list",
                 str(tmp_path / "new.txt"), "--kind", "2d", "--no-progress"]) == 0
    assert f"the model now has {N_RUNS} runs" in capsys.readouterr().out
    full = xbkg.open_model(tmp_path / "full" / "model.nc")
    _assert_rebuild_equal(xbkg.open_model(tmp_path / "up.nc"), full)
    _assert_rebuild_equal(xbkg.open_model(out / "model.nc"), full)
    from astropy.table import Table

    assert len(Table.read(out / "bg_observation_table.fits.gz")) == N_RUNS
    assert len(Table.read(out / "bg_rejected_runs.ecsv")) == 0
    assert f"<p>{N_RUNS} runs used.</p>" in (out / "report.html").read_text()  # rewritten too
    # refusals exit with status 2 and one line
    assert main(["update-model", str(out), str(store_dir), "--run-list",
                 str(tmp_path / "dup.txt")]) == 2
    assert "3 run(s) already in the model: [1, 2, 20]" in capsys.readouterr().err
    assert main(["update-model", str(out / "model.nc"), str(store_dir), "--fov-alignment",
                 "radec", "--kind", "3d"]) == 2
    assert "kind '3d'" in capsys.readouterr().err
