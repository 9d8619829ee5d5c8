"""Shared fixtures: the real H.E.S.S. DR1 store (skipped when absent)."""

from pathlib import Path

import pytest

HESS_DR1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hess-dl3-dr1"


@pytest.fixture(scope="session")
def hess_dr1() -> Path:
    """Path of ../shared/data/hess-dl3-dr1; skips the test when the folder is absent."""
    if not (HESS_DR1 / "obs-index.fits.gz").exists():
        pytest.skip(f"real H.E.S.S. DR1 data not found at {HESS_DR1}")
    return HESS_DR1
