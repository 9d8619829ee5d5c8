"""Every instrument's store: simulator styles, FoV extent, thresholds from the store's own data,
LST-1 pointing, and one set of defaults for the CLI and the API."""

import inspect
import json
import logging
import warnings

import numpy as np
import pytest

import xbkg
from xbkg.building.make import make_binning
from xbkg.building.options import BuildOptions
from xbkg.cli import build_parser, main
from xbkg.core.binning import edges_of
from xbkg.core.defaults import DEFAULTS
from xbkg.report.summary import summary_text
from xbkg.simulate import STYLES, load_truth, model_truth_counts, plan_runs, simulate_store
from xbkg.sky.fov import offset_deg
from xbkg.testing import raise_if_dask_computes

E_EDGES = "0.1:100:12"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One small store per style (4 runs, about 4,000 events each)."""
    base = tmp_path_factory.mktemp("styles")
    return {style: simulate_store(base / style, n_runs=4, events_per_run=4000, seed=3,
                                  zenith_range=(10, 40), style=style) for style in STYLES}


# ---------------------------------------------------------------------------------------------
# the styles' quirks


def test_styles_reproduce_their_quirks(stores):
    from astropy.io import fits
    from astropy.table import Table

    cols = {s: Table.read(next(stores[s].rglob("obs-index.fits.gz"))).colnames for s in STYLES}
    assert cols["magic"] == ["OBS_ID", "RA_PNT", "DEC_PNT", "DEADC", "TSTART", "TSTOP"]
    assert "NSBLEVEL" in cols["veritas"] and "SAFE_ENERGY_LO" not in cols["veritas"]
    assert "RA_PNT" not in cols["lst"] and "ALT_PNT" in cols["lst"]
    assert "SAFE_ENERGY_LO" in cols["hess"]
    assert (stores["cta"] / "index" / "all" / "hdu-index.fits.gz").exists()
    assert not (stores["cta"] / "obs-index.fits.gz").exists()
    with fits.open(stores["cta"] / "data" / "obs_000001.fits") as f:
        assert f["EVENTS"].header["GEOLON"] == 79.4041 and f["EVENTS"].header["ALT_PNT"] == 90
        assert set(f["EVENTS"].data["MC_ID"]) == {1}
    with fits.open(stores["lst"] / "data" / "obs_000001.fits") as f:
        assert "RA_PNT" not in f["EVENTS"].header and "ALT_PNT" in f["EVENTS"].header
        assert f["POINTING"].columns.names == ["TIME", "RA_PNT", "DEC_PNT", "ALT_PNT", "AZ_PNT"]
    # VERITAS: the events stop at 2.0 deg
    store = xbkg.open_datastore(stores["veritas"])
    ev = xbkg.open_events(store).compute()
    ra = store["ra_pnt"].sel(obs_id=ev.obs_id).values
    dec = store["dec_pnt"].sel(obs_id=ev.obs_id).values
    offset = offset_deg(ev["RA"].values, ev["DEC"].values, ra, dec)
    assert 1.99 < offset.max() <= 2.0


def test_simulate_cli_style(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "v"), "--style", "veritas", "--runs", "2",
                 "--events", "300"]) == 0
    assert "veritas-style store of 2 runs" in capsys.readouterr().out
    assert json.loads((tmp_path / "v" / "truth.json").read_text())["offset_max"] == 2.0
    with pytest.raises(ValueError, match="unknown style"):
        simulate_store(tmp_path / "x", n_runs=1, events_per_run=10, style="fermi")


def test_lst_pointing_from_altaz_or_pointing_hdu(stores):
    """Runs whose RA/Dec is in neither the obs index nor the EVENTS header get it from the
    POINTING HDU, or from the header's Alt/Az at mid time, site and time reference."""
    from xbkg.io.fitstable import read_header
    from xbkg.sky.pointing import run_pointing_radec
    from xbkg.store.events import fill_from_headers

    store = xbkg.open_datastore(stores["lst"])
    assert np.isnan(store["ra_pnt"].values).all()
    filled = fill_from_headers(store)
    plan = plan_runs(4, seed=3, zenith_range=(10, 40), site="lst")
    sep = offset_deg(filled["ra_pnt"].values, filled["dec_pnt"].values,
                              plan["RA_PNT"], plan["DEC_PNT"])
    assert sep.max() < 1e-9
    # without the POINTING HDU: the header's Alt/Az (mid time) through astropy
    header = read_header(stores["lst"] / "data" / "obs_000002.fits", "EVENTS")
    ra, dec, source = run_pointing_radec(header)
    assert source == "EVENTS header Alt/Az at mid time"
    assert offset_deg(ra, dec, plan["RA_PNT"][1], plan["DEC_PNT"][1]) < 1e-5


# ---------------------------------------------------------------------------------------------
# round trip through make-models and gammapy, per style



@pytest.mark.gammapy
@pytest.mark.parametrize("style", STYLES)
def test_style_round_trips_through_make_models_and_gammapy(style, stores, tmp_path):
    out = tmp_path / "models"
    args = ["make-models", str(stores[style]), str(out), "--selection", "all", "--no-progress",
            "--energy-edges", E_EDGES, "--fov-edges=-2:2:10"]
    if style == "cta":
        args += ["--fov-alignment", "radec"]
    assert main(args) == 0
    model = xbkg.open_model(out / "model.nc")
    assert model.sizes["obs_id"] == 4
    # the model recovers the simulated truth (bins inside the offset cut, above thresholds)
    expected = model_truth_counts(stores[style], model)
    x, y = (np.abs(edges_of(model, d)) for d in ("detx", "dety"))
    far = np.hypot(np.maximum(y[:-1], y[1:])[:, None], np.maximum(x[:-1], x[1:])[None, :])
    inside = (far <= model.attrs["offset_max"])[None, None] & (expected >= 20)
    assert model["has_data"].values[inside].all()
    ratio = model["counts"].values[inside].sum() / expected[inside].sum()
    assert abs(ratio - 1) < 0.05, ratio
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gammapy.data import DataStore

        store = DataStore.from_dir(out)
        for obs_id in model.obs_id.values:
            bkg = store.obs(int(obs_id), required_irf=["bkg"]).bkg
            assert bkg is not None and bkg.data.shape == (12, 10, 10)
            np.testing.assert_allclose(bkg.data, model["rate"].values[0].transpose(0, 2, 1),
                                       rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# FoV extent


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_veritas_store_gets_no_bin_beyond_its_events(stores, kind, caplog):
    """Events stop at 2.0 deg: by default no bin beyond 2.0 deg is reported as data, with a
    warning; fov_extent='none' keeps the declared 2.5 deg binning, whose outer bins have
    exposure and no counts (the old behaviour)."""
    kw = dict(kind=kind, selection="all", energy_edges=E_EDGES)
    with caplog.at_level(logging.WARNING, logger="xbkg"):
        model = xbkg.make_model(stores["veritas"], **kw)
    assert "binning stops there" in caplog.text and "fov_extent='none'" in caplog.text
    assert 1.99 < model.attrs["offset_max"] <= 2.0
    assert (model["obs_fov_extent"].values <= 2.0).all()
    prov = json.loads(model.attrs["provenance"])["fov_extent"]
    assert prov["source"] == "largest event offset of each run" and "cut" in prov
    has = model["has_data"].values
    if kind == "2d":
        assert edges_of(model, "offset")[-1] == 2.0
        nearest = edges_of(model, "offset")[:-1][None, None, :]
    else:
        x, y = (np.abs(edges_of(model, d)) for d in ("detx", "dety"))
        near_x = np.where(np.sign(x[:-1]) != np.sign(x[1:]), 0, np.minimum(x[:-1], x[1:]))
        near_y = np.where(np.sign(y[:-1]) != np.sign(y[1:]), 0, np.minimum(y[:-1], y[1:]))
        nearest = np.hypot(near_y[:, None], near_x[None, :])[None, None]
    # every bin reported as data has some solid angle inside 2.0 deg, and has counts
    assert not (has & (np.broadcast_to(nearest, has.shape) >= 2.0)).any()
    assert (model["counts"].values[has & (model["exposure"].values > 0)].sum() > 0)
    old = xbkg.make_model(stores["veritas"], fov_extent="none", **kw)
    assert old.attrs["offset_max"] == 2.5
    if kind == "2d":
        outer = old.sel(offset=slice(2.0, 2.5))
        assert outer["has_data"].values[:, 3:].all() and outer["counts"].values.sum() == 0


def test_extent_from_the_obs_index_or_given_and_lazy_builds(stores, tmp_path):
    """A lazy build computes nothing: without OFFSET_MAX it keeps the declared binning and says
    so; a given extent cuts it; a threshold rule that needs the counts peak raises."""
    store = xbkg.open_datastore(stores["veritas"])
    with raise_if_dask_computes():
        lazy = xbkg.make_model(store, kind="2d", selection="all", compute_now=False)
        assert lazy.attrs["offset_max"] == 2.5
        assert "lazy build" in json.loads(lazy.attrs["provenance"])["fov_extent"]["source"]
        given = xbkg.make_model(store, kind="2d", selection="all", compute_now=False,
                                fov_extent=2.0)
        assert given.attrs["offset_max"] == 2.0 and given.sizes["offset"] == 8
        declared = store.assign(OFFSET_MAX=("obs_id", np.full(4, 1.5), {"units": "deg"}))
        col = xbkg.make_model(declared, kind="2d", selection="all", compute_now=False)
        assert col.attrs["offset_max"] == 1.5
        assert json.loads(col.attrs["provenance"])["fov_extent"]["source"] == \
            "obs index OFFSET_MAX"
        with pytest.raises(ValueError, match="counts peak"):
            xbkg.make_model(store, kind="2d", selection="all", compute_now=False,
                            energy_threshold="safe")
    with pytest.raises(ValueError, match="fov_extent"):
        xbkg.make_model(store, kind="2d", selection="all", fov_extent="sometimes")


def test_bins_without_data_are_hatched_in_plots(stores):
    """FoV maps and energy-offset views draw bins without exposure as a hatched 'no data'
    background, never as a rate."""
    import matplotlib

    matplotlib.use("Agg")
    from xbkg.plots import model as plotting

    model = xbkg.make_model(stores["veritas"], kind="3d", selection="all", energy_edges=E_EDGES,
                            energy_threshold="safe")
    assert not model["has_data"].values.all()
    fig = plotting.plot_fov_maps(model, energies=[0.15, 1.0])
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2
    ax = plotting.plot_rate_energy_offset(model)
    assert any(p.get_hatch() for p in ax.patches)


# ---------------------------------------------------------------------------------------------
# thresholds from the store's own data


def test_safe_threshold_from_the_stores_counts_peak(stores, capsys):
    """Without SAFE_ENERGY_LO, 'safe' fits E0/cos(z)^a to the runs' counts peaks: for the
    simulated turn-on (0.3 TeV / cos(z)^2, sharpness 6, index 2.7) the counts per log E peak at
    1.167 x the threshold; the H.E.S.S. rule (0.22 TeV / cos(z)^3.2) is never used. The CLI and
    xbkg info say which rule was applied."""
    truth, record = load_truth(stores["veritas"])
    model = xbkg.make_model(stores["veritas"], kind="2d", selection="all", energy_edges=E_EDGES,
                            energy_threshold="safe")
    prov = json.loads(model.attrs["provenance"])
    assert "counts peak of 4 runs" in prov["zenith_rule_basis"]
    zenith = np.array([r["zenith"] for r in record["runs"]])
    peak = 1.167 * truth.threshold(zenith)
    np.testing.assert_allclose(model["obs_energy_threshold"].values, peak, rtol=0.12)
    text = summary_text(model)
    assert "energy thresholds: zenith rule" in text and "counts peak" in text
    capsys.readouterr()
    # H.E.S.S. style: SAFE_ENERGY_LO, as before
    model = xbkg.make_model(stores["hess"], kind="2d", selection="all", energy_edges=E_EDGES,
                            energy_threshold="safe")
    assert json.loads(model.attrs["provenance"])["energy_threshold"] == "SAFE_ENERGY_LO (4 runs)"


@pytest.mark.slow
def test_cli_prints_the_threshold_rule_and_extent(stores, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["make-models", str(stores["veritas"]), str(out), "--selection", "all",
                 "--kind", "2d", "--energy-threshold", "safe", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "energy thresholds: zenith rule" in text and "fitted to counts peak" in text
    assert "FoV extent: 2 deg (largest event offset of each run); binning cut there" in text
    assert main(["info", str(out / "model.nc")]) == 0
    assert "fitted to counts peak" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# one set of defaults



def test_cli_and_api_defaults_are_the_same():
    args = vars(build_parser().parse_args(["make-models", "IN", "OUT"]))
    api = BuildOptions().keywords()  # the defaults of make_model's keyword shortcuts
    # execution, not the model: the CLI picks threads and a progress bar on a terminal
    shared = [name for name in api if name in args and name not in ("scheduler", "progress")]
    assert {"kind", "fov_alignment", "selection", "energy_threshold", "fov_extent",
            "energy_edges", "offset_edges", "fov_edges", "zenith_edges", "offset_max",
            "exclusion_mode"} <= set(shared)
    for name in shared:  # None: the option is not given, make_model takes its default
        assert args[name] is None or args[name] == api[name], name
        if hasattr(DEFAULTS, name) and args[name] is not None:
            assert args[name] == getattr(DEFAULTS, name), name
    assert inspect.signature(xbkg.make_model).parameters["on_error"].default == \
        DEFAULTS.on_error  # CLI: --strict flips it
    binning = make_binning()
    assert binning.kind == DEFAULTS.kind and binning.fov_edges["detx"].size == 26


def test_counts_peak_rule_on_dr1_is_close_to_safe_energy_lo(hess_dr1):
    """On H.E.S.S. DR1 the rule fitted to the counts peaks (0.215 TeV / cos(z)^2.90) is 0.95,
    0.91 and 0.84 times the one fitted to SAFE_ENERGY_LO (0.222 TeV / cos(z)^3.23) at 20, 35
    and 50 deg: within 20 %."""
    from xbkg.building.survey import survey_runs
    from xbkg.building.thresholds import fit_zenith_rule, zenith_rule_basis, zenith_threshold
    from xbkg.store.events import fill_from_headers, run_infos

    store = fill_from_headers(xbkg.open_datastore(hess_dr1))
    survey = survey_runs(run_infos(store), 2.5, scheduler="threads")
    assert np.nanmin(survey["max_offset"]) > 5  # no FoV cut: the events reach far out
    peak_rule = fit_zenith_rule(store["zenith"].values, survey["peak_energy"])
    safe_rule = zenith_rule_basis(store)[:2]
    z = np.array([20.0, 35.0, 50.0])
    ratio = zenith_threshold(z, *peak_rule) / zenith_threshold(z, *safe_rule)
    assert np.all(np.abs(ratio - 1) < 0.2), ratio
