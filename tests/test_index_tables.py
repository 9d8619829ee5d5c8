"""Index tables read without astropy.io.fits give what astropy gives (xbkg.io.index_tables)."""

import gzip

import numpy as np
import pytest
from astropy.io import fits

from xbkg.io.index_tables import read_index_table


def _reference(path, hdu=1):
    """The columns, units and header astropy.io.fits gives, as read_index_table keeps them."""
    with fits.open(path) as hdul:
        h = hdul[hdu]
        scalar = [c for c in h.columns if np.ndim(h.data[c.name]) == 1]
        cols = {c.name.upper(): np.array([str(v).strip() for v in h.data[c.name]], dtype=str)
                if h.data[c.name].dtype.kind in "SU" else np.array(h.data[c.name], copy=True)
                for c in scalar}
        cols = {k: v.astype(v.dtype.newbyteorder("=")) for k, v in cols.items()}
        units = {c.name.upper(): (c.unit or "").strip() for c in scalar}
        meta = {k: (v.strip() if isinstance(v, str) else v) for k, v in h.header.items()
                if k not in ("COMMENT", "HISTORY", "")}
    return cols, units, meta


def _assert_as_astropy(path, hdu=1):
    got = read_index_table(path, hdu)
    cols, units, meta = _reference(path, hdu)
    assert list(got) == list(cols)
    for name, want in cols.items():
        assert got[name].dtype == want.dtype, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert got.units == units
    assert got.meta == meta


def _table(n, extra=()):
    columns = [
        fits.Column("OBS_ID", "K", array=np.arange(n) + 20136),
        fits.Column("HDU_TYPE", "8A", array=[" aeff", "events  ", "", "gti"][:n] + ["x"] * (n - 4)),
        fits.Column("RA_PNT", "E", unit="deg", array=np.linspace(0, 360, n)),
        fits.Column("LIVETIME", "D", unit=" s ", array=np.linspace(1, 2, n)),
        fits.Column("N_TELS", "I", array=np.arange(n) % 5),
        fits.Column("UID", "J", bzero=2**31, array=np.arange(n, dtype=np.uint32)),
        fits.Column("OK", "L", array=np.arange(n) % 2 == 0),
        fits.Column("VEC", "3E", array=np.zeros((n, 3))),
        *extra,
    ]
    hdu = fits.BinTableHDU.from_columns(columns, name="OBS_INDEX")
    hdu.header["HDUCLAS1"] = ("INDEX ", "a comment")
    hdu.header["TELESCOP"] = " HESS"
    return hdu


@pytest.mark.parametrize("n", [0, 1, 7])
@pytest.mark.parametrize("compress", [False, True])
def test_columns_units_and_header_as_astropy(tmp_path, n, compress):
    path = tmp_path / "obs-index.fits"
    fits.HDUList([fits.PrimaryHDU(), _table(n)]).writeto(path)
    if compress:
        gz = path.with_suffix(".fits.gz")
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    _assert_as_astropy(path)
    if n:
        got = read_index_table(path)
        assert "VEC" not in got and got["HDU_TYPE"][0] == "aeff" and got["UID"].dtype == np.uint32


@pytest.mark.parametrize("extra", [
    fits.Column("IMG", "4A", dim="(2,2)", array=np.array([["ab", "cd"]] * 3)),  # 2-D strings
    fits.Column("Z", "C", array=np.ones(3, complex)),  # complex
    fits.Column("BITS", "X", array=np.zeros((3, 1), bool)),  # bits
])
def test_unusual_columns_go_through_astropy(tmp_path, extra):
    path = tmp_path / "hdu-index.fits"
    fits.HDUList([fits.PrimaryHDU(), _table(3, [extra])]).writeto(path)
    _assert_as_astropy(path)


def test_real_index_tables(hess_dr1):
    for name in ("obs-index.fits.gz", "hdu-index.fits.gz"):
        _assert_as_astropy(hess_dr1 / name)


def test_bad_index_table_names_the_file(tmp_path):
    path = tmp_path / "obs-index.fits.gz"
    path.write_bytes(gzip.compress(b"SIMPLE  =                    T" + b" " * 50)[:40])
    with pytest.raises(ValueError, match=r"obs-index.fits.gz: cannot read index table HDU 1"):
        read_index_table(path)
