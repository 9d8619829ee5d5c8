"""The binary cache of astropy's IERS table (xbkg.iers_cache): same table, same coordinates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xbkg import iers_cache

SCRIPT = """
import json
from xbkg import fov
out = [fov.altaz_run_params(ra, dec, geolon=16.50, geolat=-23.27, altitude=1835.0,
                            mjdrefi=51910, mjdreff=7.4287e-4, timesys=ts, tstart=t,
                            tstop=t + 1680.0).tolist()
       for ra, dec, ts, t in [(83.6, 22.0, "TT", 1.0e8), (266.4, -29.0, "UTC", 5.0e8),
                              (10.0, -60.0, "TAI", 7.9e8)]]
from astropy.utils import iers
print(json.dumps({"params": out, "parsed": iers.IERS_B.iers_table is not None}))
"""


def _run(cache):
    env = dict(os.environ, XBKG_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def _assert_same_table(a, b):
    assert type(a) is type(b) and a.colnames == b.colnames and a.meta == b.meta
    for name in a.colnames:
        x, y = a[name], b[name]
        assert type(x) is type(y), name
        assert x.dtype == y.dtype and getattr(x, "unit", None) == getattr(y, "unit", None), name
        xv, yv = np.asarray(getattr(x, "value", x)), np.asarray(getattr(y, "value", y))
        assert np.array_equal(xv, yv, equal_nan=xv.dtype.kind == "f"), name
        if hasattr(x, "mask"):
            assert np.array_equal(np.asarray(x.mask), np.asarray(y.mask)), name


def test_saved_table_loads_as_astropys(tmp_path):
    from astropy.utils import iers

    table = iers.IERS_Auto.open()
    path = tmp_path / "t.npz"
    iers_cache._save(table, path)
    _assert_same_table(table, iers_cache._load(path))


@pytest.mark.slow
def test_same_params_with_and_without_cache_in_fresh_processes(tmp_path):
    without = _run("off")
    assert without["parsed"] and not list(tmp_path.iterdir())
    first = _run(tmp_path)  # parses astropy's text tables, writes the cache
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    second = _run(tmp_path)  # loads the cache: astropy's text tables are not parsed
    assert first["parsed"] and not second["parsed"]
    assert first["params"] == without["params"] == second["params"]  # bit for bit
    files[0].write_bytes(b"not a cache")  # damaged: rebuilt, same numbers
    assert _run(tmp_path)["params"] == without["params"]
    assert np.load(files[0])["header"].ndim == 0


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XBKG_CACHE_DIR", str(tmp_path))
    assert iers_cache.cache_dir() == tmp_path
    for off in ("off", "0", "none", ""):
        monkeypatch.setenv("XBKG_CACHE_DIR", off)
        assert iers_cache.cache_dir() is None
    monkeypatch.delenv("XBKG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert iers_cache.cache_dir() == tmp_path / "xbkg"


def test_all_names_exist():
    for name in iers_cache.__all__:
        assert hasattr(iers_cache, name)
