"""Smoothing: Gaussian kernel and Poisson spline fit, on simulated stores with a known truth."""

import json
from dataclasses import replace

import numpy as np
import pytest

import xbkg
from xbkg.model.smoothing import (
    bspline_design,
    choose_sigma,
    difference_penalty,
    gaussian_matrix,
    smooth_model,
)
from xbkg.simulate import NOMINAL_ONTIME, TruthModel, simulate_store

E_EDGES = np.geomspace(0.1, 100, 19)
O_EDGES = np.linspace(0, 2.5, 11)
F_EDGES = np.linspace(-2, 2, 17)
GRADIENT = 0.15


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    base = replace(TruthModel(), gradient=GRADIENT, frame="radec", norm=1.0)
    mu0 = base.total_counts(zenith=0.0, ontime=NOMINAL_ONTIME, offset_max=4.0)
    return simulate_store(tmp_path_factory.mktemp("smooth") / "store", n_runs=20, seed=11,
                          truth=replace(base, norm=8000 / mu0), zenith_range=(0, 40))


def _truth_counts(store_dir, model):
    info = json.loads((store_dir / "truth.json").read_text())
    truth = TruthModel.from_dict(info["truth"])
    bins = ({"offset_edges": O_EDGES} if model.attrs["kind"] == "2d"
            else {"detx_edges": F_EDGES, "dety_edges": F_EDGES})
    thr = dict(zip(model.obs_id.values.tolist(), model["obs_energy_threshold"].values))
    out = np.zeros(model["counts"].shape[1:])
    for run in info["runs"]:
        mask = (E_EDGES[:-1] >= thr[run["obs_id"]] * (1 - 1e-6)).reshape((-1,) + (1,) * (out.ndim - 1))
        out += truth.expected_counts(E_EDGES, zenith=run["zenith"], ontime=run["ontime"], **bins) * mask
    return out


@pytest.fixture(scope="module", params=["2d", "3d"])
def case(request, store_dir):
    model = xbkg.make_model(store_dir, kind=request.param, fov_alignment="radec",
                            energy_edges=E_EDGES, offset_edges=O_EDGES, fov_edges=F_EDGES,
                            offset_max=2.5 if request.param == "2d" else 3.0,
                            energy_threshold="safe", zenith_edges=[0, 40])
    return model, _truth_counts(store_dir, model)


def _scores(model, truth):
    x = model["exposure"].values[0]
    mu = model["rate"].values[0] * x
    sel = x > 0
    return float(np.mean((mu[sel] - truth[sel]) ** 2)), float(mu[sel].sum() / truth[sel].sum())


@pytest.mark.parametrize("method", ["gauss", "fit"])
def test_smoothing_beats_raw_without_bias(case, method):
    model, truth = case
    smooth = smooth_model(model, method)
    mse_raw, total_raw = _scores(model, truth)
    mse, total = _scores(smooth, truth)
    print(f"{model.attrs['kind']} {method}: MSE {mse:.3g} vs raw {mse_raw:.3g}; "
          f"total/truth {total:.4f} (raw {total_raw:.4f})")
    assert mse < 0.9 * mse_raw
    assert abs(total - 1) < 0.01
    # the raw counts and exposure stay in the model, and the total of the counts is kept
    np.testing.assert_array_equal(smooth["counts"].values, model["counts"].values)
    np.testing.assert_array_equal(smooth["exposure"].values, model["exposure"].values)
    counts = model["counts"].values.sum()
    predicted = (smooth["rate"] * smooth["exposure"]).sum().item()
    assert predicted == pytest.approx(counts, rel=1e-6 if method == "gauss" else 1e-4)
    info = json.loads(smooth.attrs["smoothing"])
    assert info["method"] == method
    xbkg.validate_model(smooth)


def test_gauss_keeps_every_slice_total_and_adapts(case):
    model, _ = case
    smooth = smooth_model(model, "gauss")
    fov = [d for d in model["rate"].dims if d not in ("zenith_group", "energy")]
    np.testing.assert_allclose((smooth["rate"] * smooth["exposure"]).sum(fov).values,
                               model["counts"].sum(fov).values, rtol=1e-9)
    sigma = np.array(json.loads(smooth.attrs["smoothing"])["sigma_deg"][0], dtype=float)
    counts = model["counts"].values[0].sum(axis=tuple(range(1, model["counts"].ndim - 1)))
    used = np.isfinite(sigma)
    assert np.array_equal(used, counts > 0)
    # the chosen width grows as the statistics fall: sparse slices get wider kernels
    rich, sparse = counts[used] > np.median(counts[used]), counts[used] < 1000
    assert sigma[used][sparse].mean() > sigma[used][rich].mean()
    assert np.nanmax(sigma) <= 1.0


def test_empty_and_low_statistics_bins(case):
    model, _ = case
    # make the last energy slice empty: no counts, but exposure
    raw = model["counts"].values.copy()
    raw[:, -1] = 0
    fov = {d: xbkg.core.binning.edges_of(model, d) for d in model["rate"].dims[2:]}
    model = xbkg.assemble_model(raw, model["exposure"].values, kind=model.attrs["kind"],
                                energy_edges=E_EDGES, fov_edges=fov, zenith_edges=[0, 40],
                                fov_alignment="RADEC", offset_max=model.attrs["offset_max"])
    counts = model["counts"].values[0]
    exposure = model["exposure"].values[0]
    fov_axes = tuple(range(1, counts.ndim))
    slice_counts = counts.sum(axis=fov_axes)
    exposed = exposure.sum(axis=fov_axes) > 0
    for method in ("gauss", "fit"):
        smooth = smooth_model(model, method)
        rate = smooth["rate"].values[0]
        assert np.all(np.isfinite(rate)) and np.all(rate > 0)
        # empty bins of populated slices get a smoothed value, well above the floor
        populated = exposed & (slice_counts >= 100)
        holes = (counts == 0) & (exposure > 0) & populated.reshape((-1,) + (1,) * (counts.ndim - 1))
        if holes.any():
            floor = model["rate"].values[0][holes]
            assert np.all(rate[holes] > 10 * floor)
        # errors: finite where there is exposure, NaN in slices without exposure
        err = smooth["rate_error"].values[0]
        assert np.all(np.isfinite(err[exposed & (slice_counts > 0)]))
        assert np.all(np.isnan(err[~exposed]))
    # slices without any count: gauss leaves the model's floor there
    empty = exposed & (slice_counts == 0)
    assert empty.any()
    np.testing.assert_array_equal(smooth_model(model, "gauss")["rate"].values[0][empty],
                                  model["rate"].values[0][empty])


def test_fit_recovers_the_fov_gradient(store_dir):
    model = xbkg.make_model(store_dir, kind="3d", fov_alignment="radec", energy_edges=E_EDGES,
                            fov_edges=F_EDGES, offset_max=3.0, energy_threshold="safe",
                            zenith_edges=[0, 40])
    rate = smooth_model(model, "fit")["rate"].values[0]
    y = model["dety"].values
    top, bottom = np.argmin(np.abs(y - 1.125)), np.argmin(np.abs(y + 1.125))
    x0 = np.argmin(np.abs(model["detx"].values - 0.125))
    ratio = rate[6:12, top, x0] / rate[6:12, bottom, x0]  # 0.5-10 TeV
    truth = (1 + GRADIENT * 1.125) / (1 - GRADIENT * 1.125)
    np.testing.assert_allclose(ratio, truth, rtol=0.05)


def test_kernels():
    k = gaussian_matrix(np.arange(5.0), 1.0)
    assert np.allclose(k, k.T) and np.allclose(np.diag(k), 1.0)
    assert np.array_equal(gaussian_matrix(np.arange(3.0), 0.0), np.eye(3))
    # the risk estimate: a smooth profile is smoothed more when its counts are fewer, a
    # structured well-measured one not at all
    x = np.arange(30.0)
    shape = np.exp(-0.5 * ((x - 15) / 6) ** 2)
    rng = np.random.default_rng(0)
    candidates = [0.0, 0.5, 1, 2, 4, 8]
    widths = [np.mean([choose_sigma(rng.poisson(n * shape), np.ones(30), [x], candidates)
                       for _ in range(8)]) for n in (10, 1000, 100000)]
    assert widths[0] > widths[1] > widths[2] == 0.0
    steps = np.where(x % 6 < 3, 1000, 10)
    assert choose_sigma(rng.poisson(steps), np.ones(30), [x], candidates) == 0.0
    b = bspline_design(np.linspace(-1, 3, 50), -1.0, 3.0, 8)
    np.testing.assert_allclose(b.sum(axis=1), 1.0)
    p = difference_penalty(6)
    assert np.allclose(p @ np.ones(6), 0) and np.allclose(p @ np.arange(6.0), 0)
    with pytest.raises(ValueError, match="n_basis"):
        bspline_design([0.0], 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="smoothing method"):
        smooth_model(None, "median")


@pytest.mark.slow
def test_cli_smooth(store_dir, tmp_path):
    from xbkg.cli import main

    out = tmp_path / "out"
    assert main(["make-models", str(store_dir), str(out), "--kind", "2d", "--selection", "all",
                 "--smooth", "fit", "--energy-edges", "0.1:100:18", "--energy-threshold", "safe",
                 "--no-progress"]) == 0
    model = xbkg.open_model(out / "model.nc")
    assert json.loads(model.attrs["smoothing"])["method"] == "fit"
    assert json.loads(model.attrs["provenance"])["energy_threshold"].startswith("SAFE_ENERGY_LO")
    raw = model["counts"] / model["exposure"]
    assert not np.allclose(model["rate"].where(model["counts"] > 0), raw.where(model["counts"] > 0))
