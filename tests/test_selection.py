"""Run selection: kinds of runs, zenith range, quality cuts, the safe `where` parser, runs near sources."""

import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.store.selection import (
    SelectionError,
    WhereError,
    evaluate_where,
    parse_where,
    select_runs,
    where_mask,
)


@pytest.fixture
def store():
    """Six runs with the obs-table columns the cuts look at (no files: nothing is read)."""
    n = 6
    return xr.Dataset(
        {"TARGET_NAME": ("obs_id", ["Off data", "Crab", "Off data", "PKS 2155-304", "Off data",
                                    "Off data"]),
         "OBJECT": ("obs_id", ["", "", "", "", "", "OFF field"]),
         "GLAT_PNT": ("obs_id", [-30.0, -5.8, 2.0, -52.0, 40.0, -3.0]),
         "MUONEFF": ("obs_id", [0.8, 0.9, 0.6, np.nan, 0.75, 0.95]),
         "N_TELS": ("obs_id", [4, 4, 3, 4, 2, 4]),
         "QUALITY": ("obs_id", [0, 0, 0, 1, 0, 0]),
         "DATE-OBS": ("obs_id", ["2004-01-01"] * n),
         "zenith": ("obs_id", [10.0, 46.0, 25.0, 30.0, 55.0, 20.0]),
         "ra_pnt": ("obs_id", [10.0, 83.63, 20.0, 329.7, 40.0, 84.2]),
         "dec_pnt": ("obs_id", [-20.0, 22.51, -30.0, -30.7, 10.0, 22.0]),
         "events_file": ("obs_id", ["f1", "f2", "f3", "f4", "", "f6"])},
        coords={"obs_id": np.array([101, 102, 103, 104, 105, 106])})


def test_kinds_of_runs_and_reasons(store):
    ids, rejected = select_runs(store, "off")
    assert ids.tolist() == [101, 103, 106]  # 106: OBJECT says off
    assert rejected == {102: "not an off run (TARGET_NAME/OBJECT)",
                        104: "not an off run (TARGET_NAME/OBJECT)",
                        105: "no events file in the HDU index"}
    ids, _ = select_runs(store, "offplane", glat_min=5.0)
    assert ids.tolist() == [101, 102, 104]
    ids, rejected = select_runs(store, "all", obs_ids=[101, 102, 103], n_obs_max=2)
    assert ids.tolist() == [101, 102]
    assert rejected[103] == "beyond n_obs_max=2" and rejected[106] == "not in the run list"
    with pytest.raises(SelectionError, match="not in the store: \\[999\\]"):
        select_runs(store, obs_ids=[101, 999])


def test_zenith_range_and_quality_cuts(store, caplog):
    ids, rejected = select_runs(store, zenith_range=(15, 50))
    assert ids.tolist() == [102, 103, 104, 106]
    assert rejected[101] == "zenith outside [15, 50] deg"
    ids, rejected = select_runs(store, min_n_tels=4, min_muoneff=0.7, max_quality=0)
    assert ids.tolist() == [101, 102, 106]
    assert rejected[103] == "N_TELS < 4" and rejected[104] == "MUONEFF < 0.7"  # NaN fails
    # a cut on a column the table lacks is skipped with a warning
    with caplog.at_level("WARNING"):
        ids, _ = select_runs(store.drop_vars("MUONEFF"), min_muoneff=0.99)
    assert ids.size == 5 and "no MUONEFF column" in caplog.text
    with pytest.raises(SelectionError, match="lo <= hi"):
        select_runs(store, zenith_range=(50, 10))


def test_nothing_left_says_why(store):
    with pytest.raises(SelectionError, match=r"no run selected .*3 x fails where"):
        select_runs(store, "off", where="MUONEFF > 5")


def test_where_expressions(store):
    mask = where_mask(store, "MUONEFF > 0.7 and (N_TELS >= 4 or TARGET_NAME == 'Off data')")
    assert mask.tolist() == [True, True, False, False, True, True]
    assert where_mask(store, "not QUALITY != 0").tolist() == [True, True, True, False, True, True]
    assert where_mask(store, "0.7 < muoneff <= 0.9").tolist() == [True, True, False, False,
                                                                  True, False]
    assert where_mask(store, "zenith<20|GLAT_PNT>-4 & ~(N_TELS=2)").tolist() == [
        True, False, True, False, False, True]
    assert where_mask(store, 'TARGET_NAME != "Off data"').tolist() == [False, True, False, True,
                                                                       False, False]
    assert where_mask(store, "GLAT_PNT < -5.5 AND GLAT_PNT > -1e2").tolist() == [
        True, True, False, True, False, False]
    assert where_mask(store, "DATE-OBS == '2004-01-01'").all()
    ids, rejected = select_runs(store, where="N_TELS >= 4")
    assert 103 not in ids and rejected[103] == "fails where 'N_TELS >= 4'"


@pytest.mark.parametrize("text,message", [
    ("__import__('os')", "expected a comparison operator"),
    ("__import__('os').system('rm -rf /')", "unexpected character '.' at position 16"),
    ("MUONEFF.__class__ == 1", "unexpected character '.'"),
    ("open('/etc/passwd') == 1", "expected a comparison operator"),
    ("MUONEFF > 0.7; import os", "unexpected character ';'"),
    ("lambda: 1", "unexpected character ':'"),
    ("MUONEFF > 0.7 +1", "arithmetic is not supported"),
    ("MUONEFF * 2 > 1", "unexpected character '\\*'"),
    ("(MUONEFF > 0.7", "expected '\\)'"),
    ("MUONEFF > ", "expected a column name, a number or a quoted string"),
    ("1 < 2", "a comparison needs at least one column"),
    ("MUONEFF > 0.7 N_TELS > 2", "expected 'and', 'or' or the end"),
    ("'unterminated == MUONEFF", "unexpected character"),
    ("", "empty"),
    ("(" * 60 + "N_TELS > 1" + ")" * 60, "nesting deeper"),
])
def test_where_rejects_anything_but_comparisons(text, message):
    with pytest.raises(WhereError, match=message):
        parse_where(text)


def test_where_evaluation_errors(store):
    with pytest.raises(WhereError, match="unknown column 'NOPE'.*MUONEFF"):
        where_mask(store, "NOPE > 1")
    with pytest.raises(WhereError, match="cannot compare a string with a number"):
        where_mask(store, "TARGET_NAME > 1")
    with pytest.raises(WhereError, match="not a parsed expression"):
        evaluate_where(("call", "__import__"), {})
    assert issubclass(WhereError, ValueError)  # the CLI reports it in one line


def test_runs_near_excluded_regions(store):
    crab = {"ra": [83.633], "dec": [22.0145], "radius": [0.3], "names": ["Crab"]}
    ids, rejected = select_runs(store, exclude_near=crab, exclusion_distance=0.5)
    # 102 is 0.5 deg from the Crab (0.2 from the circle's edge), 106 0.54 deg (0.24)
    assert 102 not in ids and 106 not in ids and 101 in ids
    assert rejected[102] == "pointed 0.20 deg from the edge of excluded region 'Crab' (< 0.5 deg)"
    ids, rejected = select_runs(store, exclude_near=crab, exclusion_distance=0.22)
    assert 102 not in ids and 106 in ids
    inside = dict(crab, radius=[0.6])
    _, rejected = select_runs(store, exclude_near=inside, exclusion_distance=0.0)
    assert rejected[102] == "pointed inside excluded region 'Crab'"


def test_make_model_applies_the_cuts(tmp_path):
    from xbkg.simulate import simulate_store

    path = simulate_store(tmp_path / "s", n_runs=4, events_per_run=300, seed=2,
                          zenith_range=(10, 50))
    store = xbkg.open_datastore(path)
    zen = store["zenith"].values
    model = xbkg.make_model(path, kind="2d", zenith_range=(0, float(np.median(zen))),
                            where="N_TELS >= 4")
    assert sorted(model.obs_id.values.tolist()) == sorted(
        store.obs_id.values[zen <= np.median(zen)].tolist())
    assert '"where": "N_TELS >= 4"' in model.attrs["provenance"]


@pytest.mark.slow
def test_cli_cuts_and_exclusions(tmp_path, capsys):
    from astropy.table import Table

    from xbkg.cli import main
    from xbkg.simulate import simulate_store

    store = simulate_store(tmp_path / "s", n_runs=6, events_per_run=300, seed=3,
                           zenith_range=(10, 50),
                           sources=[{"ra": 150.0, "dec": -25.0, "counts": 50, "name": "Src"}])
    reg = tmp_path / "src.reg"
    reg.write_text("# Region file format: DS9\nfk5\ncircle(150.0,-25.0,0.3) # text={Src}\n")
    common = [str(store), "--selection", "all", "--kind", "2d", "--no-progress"]
    out = tmp_path / "regions"
    assert main(["make-models", common[0], str(out), *common[1:], "--exclusion", str(reg),
                 "--zenith-range", "0:40", "--where", "N_TELS >= 4"]) == 0
    model = xbkg.open_model(out / "model.nc")
    used = Table.read(out / "bg_observation_table.fits.gz")["OBS_ID"].tolist()
    assert sorted(used) == sorted(model.obs_id.values.tolist())
    rejected = Table.read(out / "bg_rejected_runs.ecsv")
    assert set(rejected["REASON"]) == {"zenith outside [0, 40] deg"}
    assert len(used) + len(rejected) == 6
    assert '"n_runs_with_regions": ' in model.attrs["provenance"]

    out = tmp_path / "runs"
    assert main(["make-models", common[0], str(out), *common[1:], "--exclusion", str(reg),
                 "--exclusion-mode", "runs", "--exclusion-distance", "1.5"]) == 0
    reasons = Table.read(out / "bg_rejected_runs.ecsv")["REASON"].tolist()
    assert len(reasons) == 3 and all("excluded region 'Src'" in r for r in reasons)

    capsys.readouterr()
    assert main(["make-models", common[0], str(tmp_path / "bad"), *common[1:],
                 "--where", "__import__('os')"]) == 2
    assert "expected a comparison operator" in capsys.readouterr().err
    assert main(["make-models", common[0], str(tmp_path / "bad"), *common[1:],
                 "--zenith-range", "10"]) == 2
