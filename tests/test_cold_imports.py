"""What a fresh process imports: ``import xbkg`` and a build computed at once stay light.

A cold ``xbkg make-models`` pays for every module it imports; dask.array (with the scipy
modules it pulls in), matplotlib and astropy (io.fits, units, table, coordinates) are not
needed to build and write a model, so they must not be imported on that path.
"""

import json
import subprocess
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.core.lazy_dask_array import LazyDaskArray
from xbkg.simulate import simulate_store

HEAVY = ("dask.array", "scipy", "matplotlib", "astropy.coordinates", "astropy.table",
         "astropy.io.fits", "astropy.units")


def _modules_after(code: str) -> dict:
    """Which of :data:`HEAVY` a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_xbkg_imports_no_heavy_module():
    assert _modules_after("import xbkg") == dict.fromkeys(HEAVY, False)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    return simulate_store(tmp_path_factory.mktemp("cold") / "store", n_runs=3,
                          events_per_run=2000, seed=3)


@pytest.mark.parametrize("kind,align", [("2d", "radec"), ("3d", "altaz")])
def test_build_computed_at_once_does_not_import_dask_array(small_store, kind, align):
    code = (f"import xbkg\nm = xbkg.make_model({str(small_store)!r}, kind={kind!r}, "
            f"fov_alignment={align!r}, selection='all')\nassert int(m['counts'].sum()) > 0")
    seen = _modules_after(code)
    assert not seen["dask.array"] and not seen["scipy"] and not seen["matplotlib"]


@pytest.mark.parametrize("kind,align", [("2d", "radec"), ("3d", "altaz")])
def test_eager_and_lazy_builds_are_identical(small_store, kind, align):
    eager = xbkg.make_model(small_store, kind=kind, fov_alignment=align, selection="all",
                            scheduler="synchronous")
    lazy = xbkg.make_model(small_store, kind=kind, fov_alignment=align, selection="all",
                           compute_now=False)
    assert isinstance(lazy["counts"].data, da.Array)
    assert isinstance(eager["counts"].data, np.ndarray)
    with dask.config.set(scheduler="synchronous"):
        lazy = lazy.compute()
    for name in ("counts", "exposure", "rate"):
        np.testing.assert_array_equal(eager[name].values, lazy[name].values)  # bitwise
        assert eager[name].dtype == lazy[name].dtype


def test_lazy_dask_array_type_answers_as_the_real_class():
    assert isinstance(da.zeros(2), LazyDaskArray)
    assert not isinstance(np.zeros(2), LazyDaskArray)
    assert issubclass(da.Array, LazyDaskArray) and not issubclass(np.ndarray, LazyDaskArray)
    # xarray still recognises dask arrays once they exist
    var = xr.Variable("x", da.zeros(4, chunks=2))
    assert var.chunks == ((2, 2),)


@pytest.mark.parametrize("kind,align", [("2d", "radec"), ("3d", "altaz")])
def test_make_models_command_imports_no_heavy_module(small_store, tmp_path, kind, align):
    """The whole command, products included (FITS tables, ECSV, netCDF, image), imports none
    of :data:`HEAVY` (after a first ALTAZ run has cached the Earth orientation table)."""
    import os

    env = dict(os.environ, XBKG_CACHE_DIR=str(tmp_path / "cache"))
    args = ["make-models", str(small_store), str(tmp_path / "out"), "--kind", kind,
            "--fov-alignment", align, "--selection", "all", "--no-report", "--overwrite"]
    probe = ("import json, runpy, sys\nsys.argv = ['xbkg'] + json.loads(sys.argv[1])\n"
             "try:\n    runpy.run_module('xbkg', run_name='__main__')\nexcept SystemExit:\n"
             "    pass\nprint(json.dumps({m: m in sys.modules for m in "
             f"{HEAVY!r}}}), file=sys.stderr)")
    for _ in range(2 if align == "altaz" else 1):  # the first builds the IERS cache (astropy)
        run = subprocess.run([sys.executable, "-c", probe, json.dumps(args)], env=env,
                             capture_output=True, text=True, check=True)
    assert (tmp_path / "out" / "model.nc").exists()
    assert json.loads(run.stderr.strip().splitlines()[-1]) == dict.fromkeys(HEAVY, False)
