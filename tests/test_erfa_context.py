"""ERFA contexts of ICRS -> Alt/Az without astropy (xbkg.sky.erfa_context) against astropy's."""

import numpy as np
import pytest

from xbkg.sky import erfa_context, fov, iers_cache

HESS = (16.5002222222222, -23.2717777777778, 1835.0)
LA_PALMA = (-17.89, 28.76, 2200.0)
#: the fields xbkg.sky.fov uses, and how close they must be (radians, AU, c, ...)
FIELDS = {"bpn": 1e-15, "v": 1e-16, "bm1": 1e-15, "eh": 1e-12, "em": 1e-12, "xpl": 1e-19,
          "ypl": 1e-19, "sphi": 1e-16, "cphi": 1e-16, "eral": 5e-11, "along": 1e-14}


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A cache of astropy's table in tmp_path, and astropy's table marked as that one."""
    from astropy.utils import iers

    table = iers.IERS_Auto.open()
    monkeypatch.setenv("XBKG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(iers_cache, "_arrays", None)
    monkeypatch.setattr(table, "_xbkg_cached", True, raising=False)
    iers_cache._save(table, tmp_path / f"iers-auto-{iers_cache._key()}.npz")
    return table


@pytest.mark.parametrize("scale", ["tt", "utc", "tai"])
@pytest.mark.parametrize("site", [HESS, LA_PALMA])
def test_contexts_match_astropy(cached, scale, site):
    rng = np.random.default_rng(len(scale))
    mjdref = (np.full(6, 51910.0), np.array([7.4287e-4, 0.0, 0.5, 0.25, 0.0, 1e-3]))
    t0 = rng.uniform(1e7, 7.8e8, 6)  # 2001-2025
    seconds = t0[:, None] + np.array([0.0, -600.0, 600.0])
    got = erfa_context.altaz_contexts(mjdref, seconds, scale, site)
    assert got is not None
    want = fov._astropy_contexts(mjdref, seconds, scale, site)
    for mine, ref in zip(got, want[:1]):  # apco: every field fov uses
        for name, tol in FIELDS.items():
            np.testing.assert_allclose(mine[name], ref[name], rtol=0, atol=tol, err_msg=name)
    for name in ("v", "bm1", "eh", "em", "bpn"):  # apcs: the fields it sets
        np.testing.assert_allclose(got[1][name], want[1][name], rtol=0, atol=FIELDS[name],
                                   err_msg=name)


def test_falls_back_to_astropy_when_it_might_differ(cached, monkeypatch):
    from astropy.utils import iers

    mjdref = (np.array([51910.0]), np.array([0.0]))
    inside = np.array([[5e8, 5e8 - 600, 5e8 + 600]])
    assert erfa_context.altaz_contexts(mjdref, inside, "tt", HESS) is not None
    late = (cached.meta["predictive_mjd"] + 2 - 51910.0) * 86400.0
    assert erfa_context.altaz_contexts(mjdref, inside * 0 + late, "tt", HESS) is None
    early = (cached["MJD"][0].value - 10 - 51910.0) * 86400.0
    assert erfa_context.altaz_contexts(mjdref, inside * 0 + early, "tt", HESS) is None
    with iers.earth_orientation_table.set(iers.IERS_B.open()):  # a table of the user's
        assert erfa_context.altaz_contexts(mjdref, inside, "tt", HESS) is None
    monkeypatch.setenv("XBKG_CACHE_DIR", "off")
    monkeypatch.setattr(iers_cache, "_arrays", None)
    assert erfa_context.altaz_contexts(mjdref, inside, "tt", HESS) is None


def test_all_names_exist():
    assert erfa_context.__all__ == ["altaz_contexts"]
    assert all(hasattr(erfa_context, name) for name in erfa_context.__all__)
