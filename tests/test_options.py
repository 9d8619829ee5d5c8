"""The option objects of a build (xbkg.building.options): defaults, checks, shortcuts."""

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.building import options as o
from xbkg.building.grouping import DEFAULT_MIN_ONTIME, make_grouping
from xbkg.building.sources import DEFAULT_EXTENSION_FACTOR, DEFAULT_MIN_RADIUS
from xbkg.building.update import UpdateError
from xbkg.checks.crossval import validate
from xbkg.cli import build_parser, main, options_from_args
from xbkg.core.circles import SkyCircles
from xbkg.core.defaults import DEFAULTS
from xbkg.model.smoothing import DEFAULT_PENALTIES, DEFAULT_SIGMA_MAX, smooth_model
from xbkg.simulate import simulate_store
from xbkg.sky.exclusion import DEFAULT_OVERSAMPLE
from xbkg.store.altaz_checks import DEFAULT_ALTITUDE_TOLERANCE

GROUPS = (o.BinningOptions, o.SelectionOptions, o.GroupingOptions, o.ThresholdOptions,
          o.ExclusionOptions, o.SmoothingOptions, o.ConditionalOptions)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return simulate_store(tmp_path_factory.mktemp("options") / "store", n_runs=8,
                          events_per_run=1500, seed=5, zenith_range=(5, 45))


def test_the_cli_builds_the_default_options_from_its_default_arguments():
    args = build_parser().parse_args(["make-models", "IN", "OUT"])
    assert options_from_args(args) == o.BuildOptions()
    args = build_parser().parse_args(["validate", "IN", "OUT"])
    assert options_from_args(args, selection="all") == \
        o.BuildOptions(selection=o.SelectionOptions(rule="all"))


def test_option_defaults_are_the_shared_defaults_and_the_stage_functions_defaults():
    assert o.BuildOptions().keywords()["kind"] == DEFAULTS.kind
    for group in GROUPS:  # every field whose name is a DEFAULTS entry has that default
        for f in dataclasses.fields(group):
            if hasattr(DEFAULTS, f.name):
                assert f.default == getattr(DEFAULTS, f.name), (group.__name__, f.name)
    assert (DEFAULTS.exclusion_oversample, DEFAULTS.catalog_min_radius,
            DEFAULTS.catalog_extension_factor, DEFAULTS.altitude_tolerance,
            DEFAULTS.min_ontime, DEFAULTS.sigma_max) == (
        DEFAULT_OVERSAMPLE, DEFAULT_MIN_RADIUS, DEFAULT_EXTENSION_FACTOR,
        DEFAULT_ALTITUDE_TOLERANCE, DEFAULT_MIN_ONTIME, DEFAULT_SIGMA_MAX)
    assert DEFAULTS.penalties == tuple(DEFAULT_PENALTIES)
    smooth = inspect.signature(smooth_model).parameters
    group = inspect.signature(make_grouping).parameters
    assert (DEFAULTS.n_energy_basis, DEFAULTS.n_fov_basis) == (
        smooth["n_energy_basis"].default, smooth["n_fov_basis"].default)
    assert (DEFAULTS.min_runs, DEFAULTS.cos_zenith_step) == (
        group["min_runs"].default, group["cos_zenith_step"].default)


@pytest.mark.parametrize("group,values,name", [
    (o.BinningOptions, {"kind": "4d"}, "kind"),
    (o.BinningOptions, {"fov_alignment": "galactic"}, "fov_alignment"),
    (o.BinningOptions, {"energy_edges": "1:0.1:5"}, "energy edges"),
    (o.BinningOptions, {"offset_max": -1.0}, "offset_max"),
    (o.BinningOptions, {"fov_extent": "far"}, "fov_extent"),
    (o.SelectionOptions, {"rule": "on"}, "selection"),
    (o.SelectionOptions, {"n_obs_max": 0}, "n_obs_max"),
    (o.SelectionOptions, {"zenith_range": (50, 10)}, "zenith_range"),
    (o.SelectionOptions, {"event_filter": "MC_ID =="}, "event filter"),
    (o.SelectionOptions, {"site": (16.5, -123.0, 1800.0)}, "site"),
    (o.SelectionOptions, {"altitude_tolerance": -1}, "altitude_tolerance"),
    (o.GroupingOptions, {"zenith_edges": "60,30"}, "zenith edges"),
    (o.GroupingOptions, {"zenith_edges": "0,30,60", "adaptive": True}, "zenith_edges"),
    (o.GroupingOptions, {"min_ontime": -5.0}, "min_ontime"),
    (o.GroupingOptions, {"cos_zenith_step": 0.0}, "cos_zenith_step"),
    (o.ThresholdOptions, {"policy": "high"}, "energy_threshold"),
    (o.ThresholdOptions, {"policy": -0.1}, "energy_threshold"),
    (o.ExclusionOptions, {"mode": "everything"}, "exclusion_mode"),
    (o.ExclusionOptions, {"oversample": 0}, "exclusion_oversample"),
    (o.ExclusionOptions, {"exclude_targets": 0.0}, "exclude_targets"),
    (o.ExclusionOptions, {"exclude_targets": 0.3, "mode": "runs"}, "exclusion_mode"),
    (o.SmoothingOptions, {"method": "spline"}, "smoothing method"),
    (o.SmoothingOptions, {"sigma_max": 0.0}, "sigma_max"),
    (o.SmoothingOptions, {"n_fov_basis": 2}, "n_fov_basis"),
    (o.ConditionalOptions, {"smoothness": -1.0}, "smoothness"),
    (o.ConditionalOptions, {"smoothness": "auto"}, "smoothness"),
])
def test_invalid_values_raise_naming_the_option(group, values, name):
    with pytest.raises(ValueError, match=name):
        group(**values)
    with pytest.raises(ValueError, match=name):  # also through make_model's keywords
        o.build_options(**_as_keywords(group, values))


def _as_keywords(group, values: dict) -> dict:
    """``values`` of option group ``group`` as make_model keywords: their shortcuts, else a
    dict given to the group's own keyword (grouping, smoothing)."""
    name = {"BinningOptions": "binning", "SelectionOptions": "selection",
            "GroupingOptions": "grouping", "ThresholdOptions": "thresholds",
            "ExclusionOptions": "exclusion", "SmoothingOptions": "smoothing",
            "ConditionalOptions": "conditional"}[group.__name__]
    short = {attr: key for key, (g, attr) in o.SHORTCUTS.items() if g == name}
    if all(attr in short for attr in values):
        return {short[attr]: v for attr, v in values.items()}
    return {name: dict(values)}


def test_routing_of_keywords(store):
    opts = o.build_options(kind="2d", selection="all", grouping={"adaptive": True},
                           thresholds="safe", exclusion=[{"ra": 83.6, "dec": 22.0, "radius": 0.3}],
                           smoothing="gauss", conditional="zenith")
    assert (opts.binning.kind, opts.selection.rule, opts.grouping.adaptive,
            opts.thresholds.policy, opts.smoothing.method, opts.conditional.conditions) == (
        "2d", "all", True, "safe", "gauss", "zenith")
    assert opts.exclusion.regions == [{"ra": 83.6, "dec": 22.0, "radius": 0.3}]
    # a shortcut overrides the field of a given object, the other fields stay
    given = o.BinningOptions(kind="2d", offset_edges="0:2:4")
    both = o.build_options(binning=given, offset_max=1.5).binning
    assert (both.kind, both.offset_edges, both.offset_max) == ("2d", "0:2:4", 1.5)
    assert o.build_options(**opts.keywords()) == opts  # keywords() is the inverse
    with pytest.raises(TypeError, match="energy_edge"):
        xbkg.make_model(store, energy_edge="1:10:3")
    with pytest.raises(TypeError, match="BinningOptions"):
        o.build_options(binning={"kind": "2d"})


def test_smoothing_record_round_trips():
    opts = o.SmoothingOptions(method="fit", n_energy_basis=6, n_fov_basis=5)
    assert o.SmoothingOptions.from_record({"method": "fit", "n_energy_basis": 6,
                                           "n_fov_basis": 5, "fits": []}) == opts


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_keyword_shortcuts_and_option_objects_give_identical_models(store, kind):
    circle = SkyCircles.from_dict({"ra": [84.0], "dec": [22.5], "radius": [0.3]}) \
        if kind == "3d" else None
    keywords = dict(kind=kind, fov_alignment="altaz", energy_edges="0.3:30:6",
                    offset_edges="0:2:8", fov_edges="-2:2:8", zenith_edges="0,25,50",
                    selection="all", n_obs_max=7, energy_threshold="zenith", exclusion=circle,
                    smoothing="gauss")
    by_keywords = xbkg.make_model(store, scheduler="synchronous", **keywords)
    by_objects = xbkg.make_model(
        store, scheduler="synchronous",
        binning=o.BinningOptions(kind=kind, fov_alignment="altaz", energy_edges="0.3:30:6",
                                 offset_edges="0:2:8", fov_edges="-2:2:8"),
        selection=o.SelectionOptions(rule="all", n_obs_max=7),
        grouping=o.GroupingOptions(zenith_edges="0,25,50"),
        thresholds=o.ThresholdOptions("zenith"), exclusion=o.ExclusionOptions(regions=circle),
        smoothing=o.SmoothingOptions(method="gauss"))
    xr.testing.assert_identical(by_keywords, by_objects)
    assert by_keywords.sizes["obs_id"] == 7 and by_keywords.sizes["zenith_group"] == 2
    assert "gauss" in by_keywords.attrs["smoothing"]  # the options were applied
    assert np.isfinite(by_keywords["obs_energy_threshold"].values).all()


def test_a_lazy_build_refuses_smoothing(store):
    with pytest.raises(ValueError, match="smoothing needs compute_now"):
        xbkg.make_model(store, compute_now=False, smoothing="gauss", selection="all")


def test_validate_takes_the_options_objects_as_the_cli_builds_them(store):
    opts = o.build_options(kind="2d", energy_edges="0.3:30:6", offset_edges="0:2:8",
                           selection="all", smoothing="gauss")
    common = dict(selection="all", n_folds=2, energy_edges="0.5:20:4", width=2.0, binsz=0.5,
                  offset_max=1.0, scheduler="synchronous")
    by_objects = validate(store, model_options=opts, **common)
    by_keywords = validate(store, model_options={"kind": "2d", "energy_edges": "0.3:30:6",
                                                 "offset_edges": "0:2:8"}, smooth="gauss",
                           **common)
    np.testing.assert_array_equal(by_objects["npred"].values, by_keywords["npred"].values)
    record = json.loads(by_objects.attrs["models"])
    assert record["model_options"]["kind"] == "2d" and record["smooth"] == {"method": "gauss"}
    assert record == json.loads(by_keywords.attrs["models"]) | {
        "model_options": record["model_options"]}  # the same record, more complete options


def test_cli_refuses_a_bad_option_value_in_one_line(store, tmp_path, capsys):
    status = main(["make-models", str(store), str(tmp_path / "out"),
                   "--altitude-tolerance", "-2"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--altitude-tolerance" in err


def test_the_user_guide_example_runs(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).resolve().parents[1] / "docs" / "user_guide.rst").read_text()
    section = text[text.index("Build options\n-------------"):]
    start = ".. code-block:: python\n\n"
    block = section[section.index(start) + len(start):]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    monkeypatch.chdir(tmp_path)
    exec(compile("\n".join(lines), "user_guide.rst", "exec"), {})
    assert capsys.readouterr().out.strip() == "kind must be '2d' or '3d', got '4d'"


def test_update_model_checks_binning_given_as_an_option_object(store):
    model = xbkg.make_model(store, kind="2d", energy_edges="0.3:30:6", offset_edges="0:2:8",
                            selection="all", obs_ids=[1, 2, 3, 4], scheduler="synchronous")
    same = o.BinningOptions(kind="2d", energy_edges="0.3:30:6", offset_edges="0:2:8")
    updated = xbkg.update_model(model, store, obs_ids=[5, 6], binning=same,
                                grouping=o.GroupingOptions(zenith_edges="0,90"),
                                scheduler="synchronous")
    full = xbkg.make_model(store, binning=same, selection="all", obs_ids=[1, 2, 3, 4, 5, 6],
                           scheduler="synchronous")
    np.testing.assert_array_equal(updated["counts"].values, full["counts"].values)
    with pytest.raises(UpdateError, match="energy edges differ"):
        xbkg.update_model(model, store, obs_ids=[5, 6], binning=dataclasses.replace(
            same, energy_edges="0.3:30:5"))
