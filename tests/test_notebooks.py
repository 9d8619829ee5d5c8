"""The notebooks in notebooks/ are stored without outputs and run without errors (nbclient).

Each notebook prints one ``RESULT {json}`` line that the tests check. The tutorial runs on a
simulated store (always) and on the real H.E.S.S. DR1 data (when present).
"""

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["background_model_tutorial.ipynb", "distributed_simulated.ipynb"]
CELL_TIMEOUT = 600  # s


@pytest.fixture(autouse=True)
def _quiet_jupyter(monkeypatch):
    # jupyter_core warns (DeprecationWarning) about its old config paths unless this is set
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")


def execute(name: str) -> tuple[nbformat.NotebookNode, dict]:
    """Run a notebook in a python3 kernel from the notebooks folder; return it and its RESULT."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    lines = [line for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "stream" for line in o.text.splitlines()
             if line.startswith("RESULT ")]
    assert len(lines) == 1, f"{name}: expected one RESULT line, got {lines}"
    return nb, json.loads(lines[0][len("RESULT "):])


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
def test_tutorial_on_simulated_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # CI sets Agg; the kernel draws inline
    monkeypatch.setenv("XBKG_TUTORIAL_DATA", str(tmp_path / "no-such-store"))
    monkeypatch.setenv("XBKG_TUTORIAL_WORK", str(tmp_path / "work"))
    nb, result = execute("background_model_tutorial.ipynb")
    assert result["real_data"] is False
    assert result["n_off_runs"] == 40  # the notebook simulates 40 off runs
    assert sum(result["group_n_obs"]) == 40 and len(result["group_n_obs"]) == 3
    assert result["total_counts"] > 40 * 1000
    assert result["max_rel_diff_fits"] < 1e-12
    out = tmp_path / "work"
    assert (out / "bkg_2d_zenith.nc").exists()
    assert (out / "models" / "hdu-index.fits.gz").exists()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data"]
    assert len(images) >= 4  # the peek and zenith plots were drawn


@pytest.mark.slow
def test_tutorial_on_hess_dr1(hess_dr1, tmp_path, monkeypatch):
    from astropy.table import Table

    monkeypatch.setenv("XBKG_TUTORIAL_DATA", str(hess_dr1))
    monkeypatch.setenv("XBKG_TUTORIAL_WORK", str(tmp_path / "work"))
    _, result = execute("background_model_tutorial.ipynb")
    obs = Table.read(hess_dr1 / "obs-index.fits.gz")
    off = np.char.strip(np.asarray(obs["TARGET_NAME"]).astype(str)) == "Off data"
    zen = np.asarray(obs["ZEN_PNT"])[off]
    expected_groups = np.histogram(zen, bins=[0, 20, 40, 90])[0].tolist()
    assert result["real_data"] is True
    assert result["n_off_runs"] == int(off.sum()) == 45
    assert result["group_n_obs"] == expected_groups
    assert result["max_rel_diff_fits"] < 1e-12


@pytest.mark.slow
def test_distributed_notebook_recovers_truth(tmp_path, monkeypatch):
    monkeypatch.setenv("XBKG_NOTEBOOK_WORK", str(tmp_path / "work"))
    _, result = execute("distributed_simulated.ipynb")
    assert result["n_runs"] == 200
    assert len(result["closure"]) == 3
    for group, closure in result["closure"].items():
        assert closure["bins"] > 50, group
        assert 0.97 < closure["counts_over_truth"] < 1.03, (group, closure)
        assert 0.7 < closure["chi2_ndf"] < 1.4, (group, closure)
