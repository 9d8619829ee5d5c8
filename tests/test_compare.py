"""Comparing two model sets (xbkg.checks.compare, ``xbkg compare``)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import xbkg  # noqa: E402
from xbkg.checks.compare import (
    compare_models,
    comparison_summary,
    load_model_set,
    rate_consistency,
    rate_on_grid,
    same_binning,
)
from xbkg.cli import main  # noqa: E402
from xbkg.plots import validation as vp  # noqa: E402
from xbkg.report.checks import comparison_table, write_comparison  # noqa: E402
from xbkg.simulate import simulate_store  # noqa: E402

# matplotlib's mathtext (log-axis tick labels) trips pyparsing 3.3 deprecations on first use
pytestmark = pytest.mark.filterwarnings("ignore::pyparsing.warnings.PyparsingDeprecationWarning")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return simulate_store(tmp_path_factory.mktemp("cmpsim") / "store", n_runs=12,
                          events_per_run=20000, seed=7, zenith_range=(0, 50))


@pytest.fixture(scope="module")
def models(store):
    common = {"selection": "all", "zenith_edges": [0, 25, 50], "energy_threshold": "safe",
              "energy_edges": "0.1:100:10"}
    m3 = xbkg.make_model(store, kind="3d", fov_alignment="radec", fov_edges="-2.5:2.5:10",
                         **common)
    m2 = xbkg.make_model(store, kind="2d", offset_edges="0:2.5:5", **common)
    return m3, m2


def test_model_against_itself_gives_ratio_one(models):
    for model in models:
        comparison = compare_models(model, model)
        ratio = comparison["ratio"].values
        assert np.isfinite(ratio).sum() > 0.5 * ratio.size
        np.testing.assert_array_equal(ratio[np.isfinite(ratio)], 1.0)
        summary = comparison_summary(comparison)
        np.testing.assert_allclose(summary["ratio_integral"], 1.0, rtol=1e-12)
        np.testing.assert_array_equal(summary["log_ratio_rms"], 0.0)
        assert summary["group_b"].values.tolist() == [0, 1]
        np.testing.assert_allclose(comparison["energy_profile_a"], comparison["energy_profile_b"])
        np.testing.assert_allclose(comparison["offset_profile_a"], comparison["offset_profile_b"])


def test_scaled_model_and_bins_outside_the_offset_cut(models):
    m3, _ = models
    comparison = compare_models(m3, m3.assign(rate=1.5 * m3["rate"]), labels=("one", "x1.5"))
    np.testing.assert_allclose(comparison_summary(comparison)["ratio_median"], 1.5)
    corner = comparison["ratio"].isel(detx=0, dety=0)  # beyond offset_max = 2.5 deg
    assert corner.isnull().all()
    lowest = comparison["ratio"].isel(zenith_group=1, energy=0)  # below every run's threshold
    assert lowest.isnull().all()
    assert comparison.attrs["label_b"] == "x1.5"


def test_different_binnings_are_evaluated_on_a_grid(models):
    m3, m2 = models
    assert not same_binning(m3, m2) and same_binning(m3, m3)
    for a, b in ((m3, m2), (m2, m3)):
        summary = comparison_summary(compare_models(a, b))
        # the same events binned two ways: equal where statistics are good
        assert np.all(np.abs(summary["ratio_integral"] - 1) < 0.1)
        assert np.all(np.abs(summary["ratio_median"] - 1) < 0.1)
    on_grid = rate_on_grid(m2, m3, 0)
    assert on_grid.shape == (10, 10, 10)
    # a 2D model on a 3D grid is radially symmetric: equal at (x, y) and (y, x)
    np.testing.assert_allclose(on_grid, on_grid.transpose(0, 2, 1))


def test_groups_matched_by_zenith(store, models):
    m3, _ = models
    one_group = xbkg.make_model(store, kind="3d", fov_alignment="radec", fov_edges="-2.5:2.5:10",
                                energy_edges="0.1:100:10", selection="all",
                                energy_threshold="safe")
    comparison = compare_models(m3, one_group)
    assert comparison["group_b"].values.tolist() == [0, 0]
    back = compare_models(one_group, m3)
    assert back.sizes["zenith_group"] == 1
    # the single group's centre zenith (ONTIME-weighted) lies in the first or second group
    assert back["group_b"].values.tolist() == [int(float(one_group["group_mean_cos_zenith"][0])
                                                   < np.cos(np.radians(25)))]


def test_load_model_set(models, tmp_path):
    m3, _ = models
    (tmp_path / "set").mkdir()
    xbkg.save_model(m3, tmp_path / "set" / "model.nc")
    assert load_model_set(tmp_path / "set")["rate"].shape == m3["rate"].shape
    assert load_model_set(tmp_path / "set" / "model.nc").attrs["kind"] == "3d"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.nc"):
        load_model_set(tmp_path / "empty")


def test_plots_render(models):
    m3, m2 = models
    comparison = compare_models(m3, m2, labels=("3D", "2D"))
    fig = vp.plot_ratio_maps(comparison, 0)
    maps = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(maps) == 8 and maps[0].get_title() == "0.398-0.794 TeV"  # exposed bins
    assert len(vp.plot_ratio_maps(comparison, 0, max_panels=3).axes) == 3 + 1
    fig = vp.plot_ratio_maps(comparison, 1, energies=[1.0, 10.0])
    fig.canvas.draw()
    assert len([a for a in fig.axes if a.get_label() != "<colorbar>"]) == 2
    fig = vp.plot_ratio_maps(compare_models(m2, m3), 0)
    assert fig.axes[0].get_xscale() == "log"
    for draw in (vp.plot_energy_profiles, vp.plot_offset_profiles):
        fig = draw(comparison)
        fig.canvas.draw()
        assert len(fig.axes) == 4  # (profiles, ratio) x 2 groups
        assert fig.axes[0].get_legend() is not None


def test_write_comparison_and_cli(store, models, tmp_path, capsys):
    m3, m2 = models
    small = xbkg.make_model(store, kind="3d", fov_alignment="radec", fov_edges="-2.5:2.5:10",
                            energy_edges="0.5:50:4", selection="all")  # few panels: fast
    out = write_comparison(compare_models(small, small.assign(rate=2 * small["rate"])),
                           tmp_path / "cmp")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["compare.nc", "compare_energy_profiles.png", "compare_offset_profiles.png",
                     "compare_ratio_maps_group0.png", "compare_summary.ecsv"]
    assert all((out / n).read_bytes()[:4] == b"\x89PNG" for n in names if n.endswith(".png"))
    from astropy.table import Table

    table = Table.read(out / "compare_summary.ecsv")
    assert table["RATIO_INTEGRAL"].tolist() == pytest.approx([2.0])
    assert table.meta["label_b"] == "B"
    two = comparison_table(comparison_summary(compare_models(m3, m2)))
    assert two["GROUP_ID"].tolist() == [0, 1] and two["ZEN_MAX"].tolist() == [25.0, 50.0]
    xbkg.save_model(m3, tmp_path / "a.nc")
    xbkg.save_model(m2, tmp_path / "b.nc")
    code = main(["compare", str(tmp_path / "a.nc"), str(tmp_path / "b.nc"), str(tmp_path / "c"),
                 "--labels", "three", "two", "--no-plots"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "two / three per zenith group" in printed and "RATIO_INTEGRAL" in printed
    assert "no Poisson consistency test: rate_consistency needs models of the same" in printed
    assert (tmp_path / "c" / "compare_summary.ecsv").exists()
    assert not list((tmp_path / "c").glob("*.png"))
    assert main(["compare", str(tmp_path / "a.nc"), str(tmp_path / "nope"),
                 str(tmp_path / "d")]) == 2
    assert "no such model file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def twin_models(tmp_path_factory):
    """2D models of the two halves of a store whose runs share one rate (zenith 20-21 deg), and
    of all its runs."""
    store = simulate_store(tmp_path_factory.mktemp("twins") / "store", n_runs=16,
                           events_per_run=20000, seed=3, zenith_range=(20, 21))
    kw = dict(kind="2d", selection="all", zenith_edges=[0, 60], energy_edges="0.3:30:8",
              offset_edges="0:2.5:5", offset_max=2.5)
    ids = xbkg.open_datastore(store).obs_id.values
    return (xbkg.make_model(store, obs_ids=ids[0::2], **kw),
            xbkg.make_model(store, obs_ids=ids[1::2], **kw), xbkg.make_model(store, **kw))


def test_rate_consistency_of_runs_with_the_same_rate(twin_models, tmp_path, capsys):
    a, b, both = twin_models
    c = rate_consistency(a, b)
    assert c.attrs["ndf"] >= 30 and c.attrs["shape_ndf"] >= 20
    assert 0.5 < c.attrs["chi2_ndf"] < 1.6 and 0.5 < c.attrs["shape_chi2_ndf"] < 1.6
    assert np.nanmax(np.abs(c["z"].values)) < 4.5
    assert np.nanmedian(c["norm"].values) == pytest.approx(1.0, abs=0.05)
    # nested: all runs against the first half is the second half against the first
    nested = rate_consistency(a, both, nested=True)
    np.testing.assert_allclose(nested["z"].values, c["z"].values, rtol=1e-9, equal_nan=True)
    assert nested.attrs["shape_chi2_ndf"] == pytest.approx(c.attrs["shape_chi2_ndf"], rel=1e-9)
    xbkg.save_model(a, tmp_path / "a.nc")
    xbkg.save_model(both, tmp_path / "all.nc")
    assert main(["compare", str(tmp_path / "a.nc"), str(tmp_path / "all.nc"), str(tmp_path / "c"),
                 "--nested", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert (f"Poisson consistency (nested: B minus A vs A): chi2/ndf {c.attrs['chi2_ndf']:.3f} "
            f"(ndf {c.attrs['ndf']})") in printed


def test_rate_consistency_tells_a_different_rate_from_a_different_shape(twin_models):
    a, b, _ = twin_models
    brighter = b.assign(exposure=b["exposure"] / 1.3)  # the same counts in less time: rate x1.3
    c = rate_consistency(a, brighter)
    assert c.attrs["chi2_ndf"] > 3
    assert np.nanmedian(c["norm"].values) == pytest.approx(1.3, abs=0.07)
    assert c.attrs["shape_chi2_ndf"] == pytest.approx(rate_consistency(a, b).attrs["shape_chi2_ndf"],
                                                      rel=0.1)
    # a shape change: the outer half of the offsets 1.5x brighter
    tilt = b["exposure"].copy()
    tilt[..., 3:] = tilt[..., 3:] / 1.5
    assert rate_consistency(a, b.assign(exposure=tilt)).attrs["shape_chi2_ndf"] > 3


def test_rate_consistency_refuses_what_it_cannot_compare(twin_models, models):
    a, b, both = twin_models
    with pytest.raises(ValueError, match="same kind and energy and FoV edges"):
        rate_consistency(a, models[0])
    with pytest.raises(ValueError, match="no counts and no exposure"):
        rate_consistency(a, b.drop_vars(["counts", "exposure"]))
    with pytest.raises(ValueError, match=r"lacks 8 of model a's runs \(obs_id .*, ...\): b's"):
        rate_consistency(both, a, nested=True)
    with pytest.raises(ValueError, match="share 8 runs, so they are not independent; if b's"):
        rate_consistency(a, both)
    with pytest.raises(ValueError, match="min_expected must be > 0"):
        rate_consistency(a, b, min_expected=0)
    # without run lists, nesting is checked on the counts and exposure
    anonymous = [m.drop_dims("obs_id") for m in (a, both)]
    with pytest.raises(ValueError, match="fewer counts or less exposure than model a"):
        rate_consistency(anonymous[1], anonymous[0], nested=True)


def test_rate_consistency_without_enough_counts_says_so(twin_models):
    a, b, _ = twin_models
    c = rate_consistency(a, b, min_expected=1e9)
    assert c.attrs["ndf"] == 0 and c.attrs["shape_ndf"] == 0
    assert np.isnan(c.attrs["chi2_ndf"]) and np.isnan(c.attrs["shape_chi2_ndf"])
    assert np.isnan(c["z"].values).all() and np.isnan(c["norm"].values).all()
    # a slice where one model has no counts at all: no normalisation, no warning
    empty = b.assign(counts=b["counts"].where(b["energy"] != b["energy"][2], 0))
    e = rate_consistency(a, empty, min_expected=1e-3)
    assert np.isnan(e["norm"].values[0, 2]) and np.isfinite(e["norm"].values[0, 0])


def test_rate_consistency_needs_the_same_groups(twin_models, store):
    a, b, _ = twin_models
    kw = dict(kind="2d", selection="all", energy_edges="0.3:30:8", offset_edges="0:2.5:5",
              offset_max=2.5)
    by_az = xbkg.make_model(store, grouping={"by": {"AZ_PNT": [0, 180, 360]}}, **kw)
    # the same zenith bounds and bounds values, grouped by another column
    by_other = by_az.rename({"AZ_PNT_bounds": "MUONEFF_bounds"}).assign_attrs(group_by="MUONEFF")
    with pytest.raises(ValueError, match="same groups"):
        rate_consistency(by_az, by_other, nested=True)
    plain = xbkg.make_model(store, zenith_edges=[0, 60], **kw)
    with pytest.raises(ValueError, match="same groups"):
        rate_consistency(plain, by_az)
    assert rate_consistency(by_az, by_az, nested=True).attrs["ndf"] == 0  # nothing left in b
