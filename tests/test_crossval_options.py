"""The option objects of a cross-validation (xbkg.checks.options): checks, keyword shortcuts, and
the same objects built by ``xbkg validate``."""

import inspect
import json
import re

import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.checks.crossval import validate
from xbkg.checks.options import EvaluationOptions, FoldOptions, validate_options
from xbkg.cli import main
from xbkg.testing import small_store

#: Every field of both objects away from its default (reverse_lon only acts on store models).
FOLDS = {"n_folds": 3, "seed": 2}
EVALUATION = {"energy_edges": "0.5:20:4", "width": 2.0, "binsz": 0.5, "offset_max": 1.0,
              "safe_threshold": 0.6, "energy_integration": "exact", "reverse_lon": False}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return small_store(tmp_path_factory.mktemp("valopts"), n_runs=6, events_per_run=800, seed=4,
                       zenith_range=(10, 40))


@pytest.fixture(scope="module")
def by_objects(store):
    return validate(store, selection="all", folds=FoldOptions(**FOLDS),
                    evaluation=EvaluationOptions(**EVALUATION), model_options={"kind": "2d"},
                    scheduler="synchronous")


def test_the_signature_is_narrow():
    assert len(inspect.signature(validate).parameters) <= 13  # was 19


def test_objects_and_keyword_shortcuts_give_identical_results(store, by_objects):
    by_shortcuts = validate(store, selection="all", model_options={"kind": "2d"},
                            scheduler="synchronous", **FOLDS, **EVALUATION)
    xr.testing.assert_identical(by_objects, by_shortcuts)
    # the options were applied, not ignored
    assert by_objects.sizes == {"obs_id": 6, "energy": 4, "dety": 4, "detx": 4, "bnds": 2}
    assert sorted(np.bincount(by_objects["fold"].values)) == [2, 2, 2]
    assert (by_objects.attrs["n_folds"], by_objects.attrs["seed"]) == (3, 2)
    assert by_objects.attrs["safe_threshold"] == "fixed 0.6 TeV"
    assert by_objects.attrs["energy_integration"] == "exact"
    assert np.isfinite(by_objects["norm"].values).all()


def test_the_defaults_are_the_objects_defaults(store):
    model = xbkg.make_model(store, kind="2d", selection="all")
    plain = validate(store, selection="all", reference=model, scheduler="synchronous")
    explicit = validate(store, selection="all", reference=model, folds=FoldOptions(),
                        evaluation=EvaluationOptions(), scheduler="synchronous")
    xr.testing.assert_identical(plain, explicit)
    assert plain.sizes["energy"] == 12 and plain.attrs["width"] == 4.0


@pytest.mark.parametrize(("cls", "field", "value"), [
    (FoldOptions, "n_folds", 1), (FoldOptions, "n_folds", 2.5), (FoldOptions, "seed", -1),
    (FoldOptions, "seed", "x"),
    (EvaluationOptions, "energy edges", "0.3:50"), (EvaluationOptions, "width", 0.0),
    (EvaluationOptions, "width", float("nan")), (EvaluationOptions, "binsz", "wide"),
    (EvaluationOptions, "offset_max", -2.0), (EvaluationOptions, "safe_threshold", "sometimes"),
    (EvaluationOptions, "safe_threshold", -0.5),
    (EvaluationOptions, "energy_integration", "mid"),
    (EvaluationOptions, "reverse_lon", "yes"),
])
def test_a_bad_value_is_refused_naming_the_field(cls, field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        cls(**{field.replace(" ", "_"): value})


def test_binsz_may_not_exceed_width():
    with pytest.raises(ValueError, match=r"binsz \(5.0 deg\) must not exceed width \(4.0 deg\)"):
        EvaluationOptions(binsz=5.0)


def test_a_bad_shortcut_is_refused_naming_it(store):
    with pytest.raises(ValueError, match="^width must be > 0 deg"):
        validate(store, width=-1.0)
    with pytest.raises(ValueError, match="^n_folds"):
        validate(store, n_folds=1)


def test_unknown_keywords_and_wrong_objects_raise_type_errors(store):
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_fold'$"):
        validate(store, n_fold=3)
    with pytest.raises(TypeError, match="'kind' .*model_options="):  # a build option
        validate(store, kind="2d")
    with pytest.raises(TypeError, match=r"evaluation must be None or EvaluationOptions\(...\), "
                       "got dict"):
        validate(store, evaluation={"width": 2.0})


def test_shortcuts_replace_the_fields_of_a_given_object():  # as make_model's shortcuts do
    folds, evaluation = validate_options(FoldOptions(n_folds=3), EvaluationOptions(width=3.0),
                                         seed=1, binsz=0.5)
    assert folds == FoldOptions(n_folds=3, seed=1)
    assert evaluation == EvaluationOptions(width=3.0, binsz=0.5)
    with pytest.raises(ValueError, match="binsz"):
        validate_options(None, EvaluationOptions(width=1.0), binsz=2.0)


def test_the_cli_builds_the_same_objects(store, by_objects, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["validate", str(store), str(out), "--selection", "all", "--kind", "2d",
                 "--folds", "3", "--seed", "2", "--eval-energy-edges", "0.5:20:4",
                 "--eval-width", "2", "--eval-binsz", "0.5", "--eval-offset-max", "1",
                 "--eval-threshold", "0.6", "--no-reverse-lon", "--no-plots", "--no-progress",
                 "--scheduler", "synchronous"])
    assert code == 0 and "6 runs: counts/predicted" in capsys.readouterr().out
    with xr.open_dataset(out / "validation_cubes.nc", engine="h5netcdf") as back:
        # the CLI has no --energy-integration: its predictions integrate over "edges"
        assert back.attrs["energy_integration"] == "edges"
        assert back.attrs["safe_threshold"] == by_objects.attrs["safe_threshold"]
        np.testing.assert_array_equal(back["counts"].values, by_objects["counts"].values)
        np.testing.assert_array_equal(back["fold"].values, by_objects["fold"].values)
    summary = json.loads((out / "validation_summary.json").read_text())
    assert summary["evaluation"]["width_deg"] == 2.0 and summary["n_folds"] == 3


@pytest.mark.parametrize(("option", "value", "match"), [
    ("--eval-width", "-1", r"--eval-width must be > 0 deg"),
    ("--eval-offset-max", "-1", r"--eval-offset-max must be > 0 deg"),  # not the model's
    ("--eval-binsz", "9", r"--eval-binsz \(9.0 deg\) must not exceed width"),
    ("--eval-energy-edges", "a", r"--eval-energy-edges: cannot parse 'a'"),
    ("--eval-threshold", "x", r"--eval-threshold must be 'safe', 'none'"),
])
def test_the_cli_refuses_a_bad_evaluation_option_in_one_line(store, tmp_path, capsys, option,
                                                              value, match):
    code = main(["validate", str(store), str(tmp_path / "out"), option, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(r"^xbkg validate: error: " + match, err), err
    assert not (tmp_path / "out").exists()
