"""Plots render with the Agg backend, have the panels and labels they promise, reject bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from xbkg.core.schema import assemble_model  # noqa: E402
from xbkg.plots import model as plotting  # noqa: E402
from xbkg.sky.exposure import annulus_solid_angle, box_solid_angle, exposure_cube  # noqa: E402

# matplotlib's mathtext (log-axis tick labels) trips pyparsing 3.3 deprecations on first use
pytestmark = pytest.mark.filterwarnings("ignore::pyparsing.warnings.PyparsingDeprecationWarning")

ENERGY = np.geomspace(0.1, 100.0, 13)
ZENITH = [0.0, 30.0, 45.0, 60.0]
THRESHOLDS = [0.3, 0.6, 1.2]  # TeV, one per zenith group: rising with zenith


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _expected(fov_factor, omega, thresholds=THRESHOLDS, ontime=3600.0):
    """Counts and exposure (G, E, ...) of a power law with a sharp turn-on at each threshold."""
    centres = np.sqrt(ENERGY[1:] * ENERGY[:-1])
    ontime_ge = np.full((len(thresholds), centres.size), ontime)
    exposure = exposure_cube(ontime_ge, ENERGY, omega)
    spec = np.array([centres ** -2.7 / (1 + (t / centres) ** 8) for t in thresholds]) * 3e-3
    mu = spec.reshape(spec.shape + (1,) * omega.ndim) * fov_factor * exposure
    return np.random.default_rng(1).poisson(mu), exposure


@pytest.fixture(scope="module")
def model2d():
    offset = np.linspace(0.0, 2.5, 6)
    omega = annulus_solid_angle(offset, 2.5)
    centres = 0.5 * (offset[1:] + offset[:-1])
    counts, exposure = _expected(np.exp(-centres ** 2 / 8), omega)
    return assemble_model(counts, exposure, kind="2d", energy_edges=ENERGY,
                          fov_edges={"offset": offset}, zenith_edges=ZENITH,
                          fov_alignment="ALTAZ", offset_max=2.5)


def _model3d(align="ALTAZ", gradient=0.0, counts_too=True):
    det = np.linspace(-2.0, 2.0, 9)
    omega = box_solid_angle(det, det, 2.0)
    c = 0.5 * (det[1:] + det[:-1])
    fov = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 8) * (1 + gradient * c[None, :])
    counts, exposure = _expected(fov, omega)
    model = assemble_model(counts, exposure, kind="3d", energy_edges=ENERGY,
                           fov_edges={"detx": det, "dety": det}, zenith_edges=ZENITH,
                           fov_alignment=align, offset_max=2.0)
    return model if counts_too else model.drop_vars(["counts", "exposure", "rate_error"])


@pytest.fixture(scope="module")
def model3d():
    return _model3d()


def _png(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def _labels(fig):
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    return " | ".join(texts)


def test_all_names_exist():
    for name in plotting.__all__:
        assert callable(getattr(plotting, name)), name


def test_no_show(monkeypatch, model2d, model3d):
    def forbidden(*args, **kwargs):
        raise AssertionError("plt.show() must not be called")

    monkeypatch.setattr(plt, "show", forbidden)
    plotting.peek(model2d)
    plotting.peek(model3d)
    plotting.plot_zenith_dependence(model3d)


def test_peek_2d_one_panel_per_group(model2d, tmp_path):
    fig = plotting.peek(model2d)
    _png(fig, tmp_path, "peek2d")
    images = [ax for ax in fig.axes if ax.get_xlabel() == "energy (TeV)"]
    assert len(images) == model2d.sizes["zenith_group"]
    assert len(fig.axes) == 2 * len(images)  # each with a colour bar
    for ax in images:
        assert ax.get_xscale() == "log"
        assert ax.get_ylabel() == "offset (deg)"
        (mesh,) = ax.collections
        assert mesh.norm.__class__.__name__ == "LogNorm"
    one = plotting.peek(model2d, group=2)
    assert len([ax for ax in one.axes if ax.get_xlabel() == "energy (TeV)"]) == 1
    assert "zenith 45-60 deg" in _labels(one)


def test_peek_3d_four_panels(model3d, tmp_path):
    fig = plotting.peek(model3d, energy=2.0)
    _png(fig, tmp_path, "peek3d")
    assert len(fig.axes) == 5  # 4 panels + the FoV map's colour bar
    text = _labels(fig)
    assert "fov_lon" in text and "fov_lat" in text
    assert "1.78-3.16 TeV" in text  # the bin holding 2 TeV
    assert "counts per energy bin" in text


def test_peek_3d_without_counts(tmp_path):
    model = _model3d(counts_too=False)
    fig = plotting.peek(model, group=1)
    _png(fig, tmp_path, "peek3d_rate_only")
    assert "no counts in this model" in _labels(fig)


def test_plot_rate_energy_offset_2d_and_3d(model2d, model3d, tmp_path):
    ax = plotting.plot_rate_energy_offset(model2d, group=1)
    _png(ax.figure, tmp_path, "reo2d")
    (mesh,) = ax.collections
    assert mesh.get_array().shape == (5, 12)  # offset x energy
    ax3 = plotting.plot_rate_energy_offset(model3d, group=0, n_offset=3)
    _png(ax3.figure, tmp_path, "reo3d")
    assert ax3.collections[0].get_array().shape == (3, 12)
    assert ax3.get_ylabel() == "offset (deg)"


def test_given_axes_and_figures_are_used(model2d, model3d):
    fig, ax = plt.subplots()
    assert plotting.plot_rate_vs_energy(model2d, ax=ax) is ax
    assert plotting.plot_counts(model2d, ax=ax) is ax
    fig2 = plt.figure()
    assert plotting.plot_fov_maps(model3d, energies=[1.0], fig=fig2) is fig2
    assert plotting.peek(model3d, fig=fig2) is fig2
    assert plotting.plot_zenith_dependence(model3d, fig=fig2) is fig2


@pytest.mark.parametrize("align, lon_text", [("ALTAZ", "lower azimuth"), ("RADEC", "lower RA")])
def test_fov_maps_grid_labels_and_orientation(align, lon_text, tmp_path):
    model = _model3d(align=align, gradient=0.4)
    fig = plotting.plot_fov_maps(model, group=0, energies=[0.5, 1.0, 3.0], ncols=2)
    _png(fig, tmp_path, f"fov_{align}")
    maps = [ax for ax in fig.axes if ax.get_title().endswith("TeV")]
    assert len(maps) == 3
    assert len(fig.axes) == 6  # each map has its colour bar
    text = _labels(fig)
    assert f"DETX = fov_lon (deg, {align}; + toward {lon_text})" in text
    assert "DETY = fov_lat" in text
    # detx runs along x: with a rate rising with detx the right half outweighs the left half
    values = maps[0].collections[0].get_array().reshape(8, 8)
    assert values[:, 4:].sum() > values[:, :4].sum()
    # bins outside offset_max (the box corners) are blank
    assert np.ma.is_masked(values[0, 0])


def test_fov_maps_default_all_bins_and_log(model3d):
    fig = plotting.plot_fov_maps(model3d, group=2, log=True)
    maps = [ax for ax in fig.axes if ax.get_title().endswith("TeV")]
    assert len(maps) == model3d.sizes["energy"]


def test_rate_vs_energy_one_line_per_group(model2d, model3d, tmp_path):
    ax = plotting.plot_rate_vs_energy(model2d, offset=0.5)
    _png(ax.figure, tmp_path, "rve")
    assert len(ax.get_lines()) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()][1] == "group 1: zenith 30-45 deg"
    assert ax.get_xscale() == ax.get_yscale() == "log"
    ax3 = plotting.plot_rate_vs_energy(model3d, offset=1.0, groups=[0, 2])
    assert len(ax3.get_lines()) == 2


def test_rate_at_offset_matches_model_2d(model2d):
    # energy centres and an offset bin centre are interpolation nodes: values are the bins
    rate = plotting.rate_at_offsets(model2d, 1, model2d["energy"].values, [0.75])[:, 0]
    np.testing.assert_allclose(rate, model2d["rate"].sel(zenith_group=1).isel(offset=1).values,
                               rtol=1e-12)


def test_zenith_dependence_panels(model3d, tmp_path):
    import xarray as xr

    obs = xr.Dataset({"ZEN_PNT": ("obs_id", [10.0, 50.0]),
                      "SAFE_ENERGY_LO": ("obs_id", [0.3, 1.0]),
                      "EVENT_COUNT": ("obs_id", [9000, 7000]),
                      "ONTIME": ("obs_id", [1600.0, 1600.0])})
    fig = plotting.plot_zenith_dependence(model3d, obs=obs)
    _png(fig, tmp_path, "zenith")
    assert len(fig.axes) == 3
    assert all(ax.get_xlabel() == "zenith (deg)" for ax in fig.axes)
    assert "energy threshold (TeV)" in fig.axes[0].get_ylabel()
    # group points (first line of the errorbar container) rise with zenith in the threshold panel
    y = fig.axes[0].containers[0].lines[0].get_ydata()
    assert np.all(np.diff(y) > 0)
    legends = [sorted(t.get_text() for t in ax.get_legend().get_texts())[::-1] for ax in fig.axes]
    assert legends == [["zenith groups", "runs"], ["zenith groups", "runs, all offsets"],
                       ["zenith groups"]]


def test_counts_plot(model2d, tmp_path):
    ax = plotting.plot_counts(model2d)
    _png(ax.figure, tmp_path, "counts")
    assert len(ax.patches) == 3  # one step per group
    assert len(ax.get_lines()) == 3  # one threshold marker per group
    one = plotting.plot_counts(model2d, group=1, threshold=False)
    assert len(one.patches) == 1 and not one.get_lines()


def test_energy_threshold_rises_and_is_near_truth(model2d, model3d):
    for model in (model2d, model3d):
        thr = plotting.counts_peak_energy(model).values
        assert np.all(np.diff(thr) > 0)
        # the counts peak sits near the turn-on of the simulated spectrum (within a factor 2)
        assert np.all(np.abs(np.log(thr / THRESHOLDS)) < np.log(2.0))


def test_energy_threshold_empty_group_is_nan(model2d):
    model = model2d.copy(deep=True)
    model["counts"][dict(zenith_group=1)] = 0
    thr = plotting.counts_peak_energy(model).values
    assert np.isnan(thr[1]) and np.isfinite(thr[[0, 2]]).all()


def test_energy_threshold_without_counts_uses_rate():
    with_counts = _model3d()
    rate_only = _model3d(counts_too=False)
    np.testing.assert_allclose(plotting.counts_peak_energy(rate_only),
                               plotting.counts_peak_energy(with_counts), rtol=0.3)


def test_the_old_name_energy_threshold_warns_and_gives_the_counts_peak_energy(model2d):
    with pytest.warns(DeprecationWarning, match="counts_peak_energy"):
        old = plotting.energy_threshold(model2d)
    xr.testing.assert_identical(old, plotting.counts_peak_energy(model2d))


def test_fov_mean_rate_of_flat_model():
    det = np.linspace(-1.0, 1.0, 5)
    omega = box_solid_angle(det, det, 1.0)
    exposure = exposure_cube(np.full((1, 2), 100.0), [1.0, 2.0, 4.0], omega)
    counts = np.round(exposure * 1e-5 * 1e3).astype(int)
    model = assemble_model(counts, exposure, kind="3d", energy_edges=[1.0, 2.0, 4.0],
                           fov_edges={"detx": det, "dety": det}, zenith_edges=[0, 90],
                           fov_alignment="RADEC", offset_max=1.0, relative_floor=0)
    mean = plotting.fov_mean_rate(model)
    assert mean.dims == ("zenith_group", "energy")
    np.testing.assert_allclose(mean.values, 1e-2, rtol=2e-2)


@pytest.mark.parametrize("func", [
    lambda m: plotting.peek(m, group=7),
    lambda m: plotting.plot_rate_energy_offset(m, group=7),
    lambda m: plotting.plot_fov_maps(m, group=-1),
    lambda m: plotting.plot_counts(m, group=3),
    lambda m: plotting.plot_rate_vs_energy(m, groups=[0, 9]),
])
def test_bad_group_raises(model3d, func):
    with pytest.raises(KeyError, match="zenith group"):
        func(model3d)


def test_bad_input_raises(model2d, model3d):
    with pytest.raises(ValueError, match="3D model"):
        plotting.plot_fov_maps(model2d)
    with pytest.raises(ValueError, match="outside the model's range"):
        plotting.plot_fov_maps(model3d, energies=[500.0])
    with pytest.raises(ValueError, match="offset must be within"):
        plotting.plot_rate_vs_energy(model2d, offset=3.0)
    with pytest.raises(KeyError, match="no 'counts'"):
        plotting.plot_counts(_model3d(counts_too=False))
    with pytest.raises(ValueError, match="kind"):
        plotting.peek(model2d.assign_attrs(kind="4d"))


def test_unexposed_energy_slices_are_blank(tmp_path):
    # group 0 has no exposure in its two lowest energy bins (below every run's threshold)
    model = _model3d()
    exposure = model["exposure"].values.copy()
    counts = model["counts"].values.copy()
    exposure[0, :2] = 0.0
    counts[0, :2] = 0
    model = model.copy()
    model["exposure"].values[:] = exposure
    model["counts"].values[:] = counts
    ax = plotting.plot_rate_energy_offset(model, group=0, n_offset=3)
    values = ax.collections[0].get_array()  # (offset, energy)
    assert np.ma.getmaskarray(values)[:, :2].all()
    assert not np.ma.getmaskarray(values)[:, 4:].any()
    fig = plotting.plot_fov_maps(model, group=0, energies=[0.12, 1.0])
    _png(fig, tmp_path, "unexposed")
    assert "no exposure" in _labels(fig)
    line = plotting.plot_rate_vs_energy(model, offset=0.5, groups=[0]).get_lines()[0]
    assert np.ma.getmaskarray(line.get_ydata())[:2].all()
