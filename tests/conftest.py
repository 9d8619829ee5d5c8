"""Shared fixtures (the real data stores, skipped when absent) and the markers of the test tiers.

Markers (pyproject.toml) let a developer run the fast tier alone (README, "Tests"); the
default ``python -m pytest`` runs everything. Tests using a real-data fixture are marked
``data``, tests of a whole module listed in :data:`MODULE_MARKERS` get its marker here; other
markers are set on the tests themselves.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

#: Property tests draw the same examples on every run (CI included); ``HYPOTHESIS_PROFILE=explore``
#: draws new ones (README, "Tests"), which is how new counterexamples are looked for.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

HESS_DR1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hess-dl3-dr1"


@pytest.fixture(scope="session")
def hess_dr1() -> Path:
    """Path of ../shared/data/hess-dl3-dr1; skips the test when the folder is absent."""
    if not (HESS_DR1 / "obs-index.fits.gz").exists():
        pytest.skip(f"real H.E.S.S. DR1 data not found at {HESS_DR1}")
    return HESS_DR1


SHARED_DATA = HESS_DR1.parent


@pytest.fixture(scope="session")
def magic_rad_max() -> Path:
    """../shared/data/magic-rad-max/data (two MAGIC Crab runs); skips when absent."""
    path = SHARED_DATA / "magic-rad-max" / "data"
    if not (path / "obs-index.fits.gz").exists():
        pytest.skip(f"MAGIC data not found at {path}")
    return path


@pytest.fixture(scope="session")
def cta_1dc() -> Path:
    """../shared/data/cta-1dc (four CTA 1DC runs, index in index/gps); skips when absent."""
    path = SHARED_DATA / "cta-1dc"
    if not (path / "index" / "gps" / "obs-index.fits.gz").exists():
        pytest.skip(f"CTA 1DC data not found at {path}")
    return path


@pytest.fixture(scope="session")
def catalogs() -> Path:
    """../shared/data/catalogs (gamma-cat, HGPS); skips when absent."""
    path = SHARED_DATA / "catalogs"
    if not (path / "gammacat" / "gammacat.fits.gz").exists():
        pytest.skip(f"source catalogs not found at {path}")
    return path
@pytest.fixture(scope="session")
def big_closure_store(tmp_path_factory):
    """``big_closure_store(frame)``: a simulated store (24 runs, ~5.1 M events: 10x the closure
    tests') whose truth has an FoV gradient fixed in ``frame`` ("altaz" or "radec"); half the
    runs are pointed 0.5-1.5 deg from three sky positions (no source events there), for
    exclusion circles inside, overlapping and across the FoV edge. Built once per session."""
    from dataclasses import replace

    from xbkg.simulate import TruthModel, simulate_store

    places = [dict(ra=150.0, dec=-25.0, counts=0, sigma=0.08, name="A"),
              dict(ra=150.66, dec=-25.0, counts=0, sigma=0.08, name="B"),
              dict(ra=150.3, dec=-27.2, counts=0, sigma=0.08, name="C")]
    stores = {}

    def make(frame):
        if frame not in stores:
            truth = replace(TruthModel(), gradient=0.3, frame=frame, norm=6e-3)
            stores[frame] = simulate_store(tmp_path_factory.mktemp("big") / frame, n_runs=24,
                                           truth=truth, seed={"altaz": 3, "radec": 4}[frame],
                                           zenith_range=(5, 55), sources=places)
        return stores[frame]

    return make


#: Marker of every test that uses one of these fixtures.
FIXTURE_MARKERS = {"hess_dr1": "data", "magic_rad_max": "data", "cta_1dc": "data",
                   "catalogs": "data", "cluster": "cluster"}
#: Marker of every test of one of these modules.
MODULE_MARKERS = {"test_docs.py": "docs", "test_notebooks.py": "notebooks",
                  "test_dask_cluster_cli.py": "cluster"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in set(item.fixturenames) & set(FIXTURE_MARKERS):
            item.add_marker(FIXTURE_MARKERS[fixture])
        if item.path.name in MODULE_MARKERS:
            item.add_marker(MODULE_MARKERS[item.path.name])
