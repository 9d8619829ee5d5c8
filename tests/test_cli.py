"""The `xbkg` command: make-models end to end, info, errors and exit codes."""

import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import xbkg
from xbkg.cli import main

SEED_FILES_3D = ["bg_observation_table.fits.gz", "bg_observation_table_grouped.fits.gz",
                 "bg_observation_groups.ecsv", "bg_rejected_runs.ecsv", "model.nc",
                 "hdu-index.fits.gz", "obs-index.fits.gz"]


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["make-models", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--kind", "--fov-alignment", "--selection", "--run-list", "--n-obs-max", "--test",
                "--energy-edges", "--offset-edges", "--fov-edges", "--offset-max", "--zenith-edges",
                "--scheduler", "--progress", "--no-progress", "--overwrite"):
        assert opt in out


def test_bad_input_one_line_exit_2(tmp_path, capsys):
    assert main(["make-models", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0] and "Traceback" not in err[0]


@pytest.mark.subprocess
def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "xbkg", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("xbkg ")


def test_make_models_real_3d(hess_dr1, tmp_path, capsys):
    out = tmp_path / "out"
    run_list = tmp_path / "runs.txt"
    off = Table.read(hess_dr1 / "obs-index.fits.gz")
    off_ids = [int(i) for i, t in zip(off["OBS_ID"], off["TARGET_NAME"]) if t.strip() == "Off data"]
    run_list.write_text("# some off runs\n" + "\n".join(str(i) for i in off_ids[:12]) + "\n")
    code = main(["make-models", str(hess_dr1), str(out), "--kind", "3d", "--fov-alignment", "radec",
                 "--run-list", str(run_list), "--zenith-edges", "0,30,60", "--no-progress",
                 "--fov-edges=-2:2:16", "--energy-edges", "0.3:30:10", "--scheduler", "synchronous"])
    assert code == 0, capsys.readouterr().err
    for name in SEED_FILES_3D:
        assert (out / name).exists(), name
    groups = Table.read(out / "bg_observation_groups.ecsv")
    assert list(groups["GROUP_ID"]) == [0, 1]
    assert groups["N_OBS"].sum() == 12
    grouped = Table.read(out / "bg_observation_table_grouped.fits.gz")
    assert sorted(grouped["OBS_ID"]) == sorted(off_ids[:12]) and "GROUP_ID" in grouped.colnames
    model = xbkg.open_model(out / "model.nc")
    assert model.attrs["fov_alignment"] == "RADEC" and model.sizes["detx"] == 16
    for g in (0, 1):
        table = out / f"bg_cube_model_group{g}_table.fits.gz"
        with fits.open(table) as hdul:
            assert [h.name for h in hdul[1:]] == ["BACKGROUND", "COUNTS", "EXPOSURE"]
            assert hdul["BACKGROUND"].header["FOVALIGN"] == "RADEC"
        assert (out / f"bg_cube_model_group{g}_image.fits.gz").exists()
        one = xbkg.open_model(table)
        np.testing.assert_allclose(one["rate"].isel(zenith_group=0),
                                   model["rate"].isel(zenith_group=g), rtol=1e-6)
    # refuses a non-empty OUTDIR without --overwrite, and leaves it untouched
    before = sorted(p.name for p in out.iterdir())
    assert main(["make-models", str(hess_dr1), str(out), "--test", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    # info
    assert main(["info", str(out / "model.nc")]) == 0
    text = capsys.readouterr().out
    assert "3D, FoV alignment RADEC" in text and "group 1" in text


def test_make_models_real_2d_test_mode(hess_dr1, tmp_path, capsys):
    out = tmp_path / "out2d"
    assert main(["make-models", str(hess_dr1), str(out), "--kind", "2d", "--test",
                 "--no-progress"]) == 0
    assert (out / "bg_offset_model_group0_table.fits.gz").exists()
    model = xbkg.open_model(out / "model.nc")
    assert model.sizes["obs_id"] == 5 and model.attrs["kind"] == "2d"
    rejected = Table.read(out / "bg_rejected_runs.ecsv")
    assert len(rejected) == 100 and set(rejected["REASON"]) >= {"not an off run (TARGET_NAME/OBJECT)"}


@pytest.mark.slow
def test_every_file_of_a_model_carries_the_offset_cut(tmp_path, capsys):
    """model.nc, the BKG table files and the image files report the same offset cut."""
    from xbkg.simulate import simulate_store

    store = simulate_store(tmp_path / "store", n_runs=4, events_per_run=2000, seed=3)
    out = tmp_path / "models"
    assert main(["make-models", str(store), str(out), "--kind", "3d", "--selection", "all",
                 "--fov-edges=-2.5:2.5:10", "--offset-max", "2.5", "--energy-edges", "0.5:20:4",
                 "--zenith-edges", "0,90", "--no-progress", "--scheduler", "synchronous"]) == 0
    capsys.readouterr()
    texts = {}
    for name in ("model.nc", "bg_cube_model_group0_table.fits.gz"):
        assert main(["info", str(out / name)]) == 0
        texts[name] = [line for line in capsys.readouterr().out.splitlines() if "offset_max" in line]
        assert texts[name] and all("2.5 deg" in line for line in texts[name]), texts[name]
    assert xbkg.open_model(out / "bg_cube_model_group0_table.fits.gz").attrs["offset_max"] == 2.5
    with fits.open(out / "bg_cube_model_group0_image.fits.gz") as hdul:
        assert hdul["RATE"].header["OFFMAX"] == 2.5
