"""Per-run interpolation between zenith groups: no log interpolation through sparse bins, and
per-run models closer to the truth than nearest-group models on a simulated store."""

import json

import numpy as np
import pytest

import xbkg
from xbkg.core.schema import assemble_model
from xbkg.model.group_interpolation import MIN_LOG_COUNTS, model_for_observation
from xbkg.model.smoothing import smooth_model
from xbkg.simulate import TruthModel, simulate_store
from xbkg.sky.exposure import annulus_solid_angle


def _two_groups(counts_b):
    counts = np.array([[[400, 400]], [[100, counts_b]]])  # 2 groups, 1 energy, 2 offsets
    model = assemble_model(counts, np.ones((2, 1, 2)), kind="2d", energy_edges=[1, 2],
                           fov_edges={"offset": [0, 1, 2]}, zenith_edges=[0, 40, 60],
                           fov_alignment="ALTAZ", offset_max=2.0)
    return model.assign(group_mean_cos_zenith=("zenith_group", [0.9, 0.6]))


def test_sparse_bins_are_interpolated_linearly():
    half_way = np.degrees(np.arccos(0.75))
    model = _two_groups(0)  # the second group's second bin is empty (floored rate)
    rate = model_for_observation(model, half_way)["rate"].values[0, 0]
    assert rate[0] == pytest.approx(200.0)  # populated: log interpolation (geometric mean)
    assert rate[1] == pytest.approx(0.5 * (400 + float(model["rate"].values[1, 0, 1])))
    # beyond the outermost node: no extrapolation through the sparse bin
    far = model_for_observation(model, np.degrees(np.arccos(0.5)))["rate"].values[0, 0]
    assert far[1] == pytest.approx(float(model["rate"].values[1, 0, 1]))
    assert far[0] < 100.0  # the populated bin still extrapolates
    # enough counts: log again
    full = model_for_observation(_two_groups(MIN_LOG_COUNTS), half_way)["rate"].values[0, 0]
    assert full[1] == pytest.approx(np.sqrt(400 * MIN_LOG_COUNTS))
    assert json.loads(model_for_observation(model, 30.0).attrs["per_run"])["min_log_counts"] == (
        MIN_LOG_COUNTS)


def _rms_ln(model, truth, e_edges, o_edges, method, min_expected):
    num = den = 0.0
    solid = annulus_solid_angle(o_edges)
    for zenith, ontime in zip(model["obs_zenith"].values, model["obs_ontime"].values):
        rate = model_for_observation(model, zenith, method=method)["rate"].values[0]
        mu = truth.expected_counts(e_edges, offset_edges=o_edges, zenith=zenith, ontime=ontime)
        true_rate = mu / (ontime * np.diff(e_edges)[:, None] * 1e6 * solid[None, :])
        sel = mu >= min_expected
        num += np.sum(mu[sel] * np.log(np.clip(rate[sel], 1e-300, None) / true_rate[sel]) ** 2)
        den += np.sum(mu[sel])
    return float(np.sqrt(num / den))


@pytest.mark.slow
def test_per_run_models_beat_nearest_groups(tmp_path):
    store = simulate_store(tmp_path / "store", n_runs=200, events_per_run=5000, seed=11,
                           zenith_range=(0, 60))
    truth = TruthModel.from_dict(json.loads((store / "truth.json").read_text())["truth"])
    e_edges, o_edges = np.geomspace(0.1, 100, 16), np.linspace(0, 2.5, 6)
    model = xbkg.make_model(store, kind="2d", selection="all", energy_edges=e_edges,
                            offset_edges=o_edges, zenith_edges=[0, 20, 30, 40, 50, 60],
                            scheduler="synchronous")
    for name, m in (("raw", model), ("smoothed", smooth_model(model, "gauss"))):
        for min_expected in (50, 5):
            per_run = _rms_ln(m, truth, e_edges, o_edges, "log", min_expected)
            nearest = _rms_ln(m, truth, e_edges, o_edges, "nearest", min_expected)
            print(f"{name}, bins >= {min_expected}: per-run {per_run:.4f}, nearest {nearest:.4f}")
            assert per_run < nearest
