"""The binary cache of astropy's IERS table (xbkg.sky.iers_cache): same table, same coordinates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xbkg.sky import iers_cache

SCRIPT = """
import json
from xbkg.sky import fov
import sys
import numpy as np
out = []
for ra, dec, ts, t in [(83.6, 22.0, "TT", 1.0e8), (266.4, -29.0, "UTC", 5.0e8),
                       (10.0, -60.0, "TAI", 7.9e8)]:
    params = fov.altaz_run_params(ra, dec, geolon=16.50, geolat=-23.27, altitude=1835.0,
                                  mjdrefi=51910, mjdreff=7.4287e-4, timesys=ts, tstart=t,
                                  tstop=t + 1680.0)
    out.append(np.ravel(fov.pointing_altaz(t + np.linspace(0, 1680, 5), params)).tolist())
astropy = "astropy.coordinates" in sys.modules
from astropy.utils import iers
print(json.dumps({"altaz": out, "parsed": iers.IERS_B.iers_table is not None,
                  "astropy": astropy}))
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


def test_cache_written_like_every_output(tmp_path):
    """The cache goes through xbkg.io.atomic (umask permissions, no temporary file left, an
    existing cache replaced), not a private temporary-file writer of its own."""
    from astropy.table import Table

    table = Table({"a": [1.0, 2.0]})
    path = tmp_path / "sub" / "t.npz"
    iers_cache._save(table, path)
    iers_cache._save(table, path)  # replaces
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.npz"]
    assert iers_cache._load(path)["a"].tolist() == [1.0, 2.0]


@pytest.mark.subprocess
@pytest.mark.slow
def test_same_params_with_and_without_cache_in_fresh_processes(tmp_path):
    without = _run("off")  # astropy parses its text tables and computes the contexts
    assert without["parsed"] and without["astropy"] and not list(tmp_path.iterdir())
    first = _run(tmp_path)  # the same, and the cache is written
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    _assert_same_altaz(first["altaz"], without["altaz"])  # ERFA once the cache is there
    second = _run(tmp_path)  # ERFA with the cached table: astropy.coordinates not imported
    assert not second["parsed"] and not second["astropy"]
    _assert_same_altaz(second["altaz"], without["altaz"])
    files[0].write_bytes(b"not a cache")  # damaged: astropy again, and the cache rebuilt
    _assert_same_altaz(_run(tmp_path)["altaz"], without["altaz"])
    assert np.load(files[0])["header"].ndim == 0


def _assert_same_altaz(a, b):
    """Pointing alt/az of the runs (deg) within 1e-5 arcsec."""
    for x, y in zip(a, b):
        alt1, az1 = np.reshape(x, (2, -1))
        alt2, az2 = np.reshape(y, (2, -1))
        sep = np.hypot((az1 - az2 + 180.0) % 360.0 - 180.0, alt1 - alt2) * 3600.0
        assert sep.max() < 1e-5, sep


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XBKG_CACHE_DIR", str(tmp_path))
    assert iers_cache.cache_dir() == tmp_path
    for off in ("off", "0", "none", ""):
        monkeypatch.setenv("XBKG_CACHE_DIR", off)
        assert iers_cache.cache_dir() is None
    monkeypatch.delenv("XBKG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert iers_cache.cache_dir() == tmp_path / "xbkg"
