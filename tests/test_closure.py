"""Closure: models built from simulated stores recover the known background within statistics."""

from dataclasses import replace

import numpy as np
import pytest

import xbkg
from xbkg.simulate import TruthModel, model_truth_counts, simulate_store

E_EDGES = np.geomspace(0.1, 100, 19)
O_EDGES = np.linspace(0, 2.5, 11)
F_EDGES = np.linspace(-2, 2, 9)
ZEN_EDGES = [0, 30, 60]


def _truth_counts(store_dir, model, kind):
    expected = model_truth_counts(store_dir, model)
    assert expected.shape == model["counts"].shape
    return expected


def _chi2_ndf(counts, expected, min_expected=25):
    sel = expected >= min_expected
    pulls = (counts[sel] - expected[sel]) / np.sqrt(expected[sel])
    return float(np.mean(pulls**2)), int(sel.sum())


@pytest.fixture(scope="module")
def altaz_store(tmp_path_factory):
    """A truth with a strong gradient along altitude (which a RADEC model smears out)."""
    truth = replace(TruthModel(), gradient=0.3, frame="altaz", norm=6e-4)
    return simulate_store(tmp_path_factory.mktemp("sim") / "altaz", n_runs=24, truth=truth,
                          seed=3, zenith_range=(5, 55))


@pytest.fixture(scope="module")
def radec_store(tmp_path_factory):
    truth = replace(TruthModel(), gradient=0.3, frame="radec", norm=6e-4)
    return simulate_store(tmp_path_factory.mktemp("sim") / "radec", n_runs=24, truth=truth,
                          seed=4, zenith_range=(5, 55))


@pytest.mark.parametrize("kind,align,store", [("2d", "altaz", "altaz_store"),
                                              ("3d", "radec", "radec_store"),
                                              ("3d", "altaz", "altaz_store")])
def test_closure(kind, align, store, request):
    store_dir = request.getfixturevalue(store)
    model = xbkg.make_model(store_dir, kind=kind, fov_alignment=align, energy_edges=E_EDGES,
                            offset_edges=O_EDGES, fov_edges=F_EDGES, zenith_edges=ZEN_EDGES,
                            offset_max=3.0, energy_threshold="none", scheduler="threads")
    assert model.sizes["obs_id"] == 24
    expected = _truth_counts(store_dir, model, kind)
    chi2, n = _chi2_ndf(model["counts"].values, expected)
    assert n >= 200
    assert 0.85 <= chi2 <= 1.15, f"chi2/ndf={chi2:.3f} over {n} bins"
    # rate = counts / exposure: the expected rate is the truth's bin average
    with np.errstate(invalid="ignore", divide="ignore"):
        true_rate = expected / model["exposure"].values
    sel = expected >= 25
    ratio = model["rate"].values[sel].sum() / true_rate[sel].sum()
    assert abs(ratio - 1) < 0.02


def test_radec_model_smears_an_altaz_gradient(altaz_store):
    """The same test fails for a RADEC model of an Alt/Az-fixed background: the check has teeth."""
    model = xbkg.make_model(altaz_store, kind="3d", fov_alignment="radec", energy_edges=E_EDGES,
                            fov_edges=F_EDGES, zenith_edges=ZEN_EDGES, offset_max=3.0,
                            energy_threshold="none")
    chi2, _ = _chi2_ndf(model["counts"].values, _truth_counts(altaz_store, model, "3d"))
    assert chi2 > 1.5


BIG_E_EDGES = [0.3, 1.0, 100.0]
BIG_F_EDGES = np.linspace(-2.5, 2.5, 11)  # 28 bins cross the offset cut
BIG_O_EDGES = np.linspace(0, 2.5, 11)


@pytest.mark.slow
@pytest.mark.parametrize("kind,align", [("2d", "altaz"), ("3d", "radec"), ("3d", "altaz")])
def test_closure_exact_exposure(kind, align, big_closure_store):
    """10x the events, expected counts from the truth integrated independently of xbkg's
    exposure code (tests/_closure_reference.py): the cut bins' exposure is exact."""
    from _closure_reference import chi2_ndf, expected_counts, exposure_error

    store_dir = big_closure_store("altaz" if align == "altaz" else "radec")
    model = xbkg.make_model(store_dir, kind=kind, fov_alignment=align, selection="all",
                            energy_edges=BIG_E_EDGES, offset_edges=BIG_O_EDGES,
                            fov_edges=BIG_F_EDGES, zenith_edges=[0, 60], offset_max=2.5,
                            energy_threshold="none", scheduler="threads")
    assert int(model["counts"].sum()) > 2_500_000
    reference = expected_counts(store_dir, model, f_edges=BIG_F_EDGES,
                                offset_edges=BIG_O_EDGES, offset_max=2.5)[kind]
    chi2, n = chi2_ndf(model, reference)
    error = exposure_error(model, reference)
    print(f"{kind} {align}: chi2/ndf {chi2:.3f} over {n} bins, exposure error {error:.2e}")
    assert 0.85 <= chi2 <= 1.15, f"chi2/ndf={chi2:.3f} over {n} bins"
    assert error < 1e-3  # the reference grid's own precision


def test_truth_closure_of_the_demo_statistics(tmp_path):
    """The demo's closure figures (xbkg.checks.closure): Poisson pulls of the counts against
    the truth over the bins inside the offset cut, chi2/ndf near 1 and counts/truth near 1."""
    from xbkg.checks.closure import bins_inside_offset_cut, truth_closure

    store_dir = simulate_store(tmp_path / "s", n_runs=6, events_per_run=20000, seed=11,
                               zenith_range=(0, 40))
    model = xbkg.make_model(xbkg.open_datastore(store_dir), kind="3d", selection="all",
                            zenith_edges=[0, 45, 60], fov_edges="-2.5:2.5:20")
    inner = bins_inside_offset_cut(model)
    x = model["detx_bounds"].values
    corner = np.hypot(np.abs(x).max(axis=1)[:, None], np.abs(x).max(axis=1)[None, :])
    np.testing.assert_array_equal(inner[0], corner <= model.attrs["offset_max"])
    rows = truth_closure(store_dir, model)
    assert [r["group"] for r in rows] == [0, 1]
    assert rows[0]["n_bins"] > 100 and 0.8 < rows[0]["chi2_ndf"] < 1.25
    assert abs(rows[0]["ratio"] - 1) < 0.02
    assert rows[1]["n_bins"] == 0 and np.isnan(rows[1]["chi2_ndf"])  # no run above 45 deg
