"""PlainTable writes the bytes astropy.table writes (FITS HDUs and ECSV), or declines."""

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits import connect
from astropy.table import Table
from hypothesis import example, given, settings, strategies as st

from xbkg.io import plaintable
from xbkg.io.fitswrite import card, fast_card as _card, utf8_strings
from xbkg.io.hduindex import make_bkg_index_table, make_total_index_plain, make_total_index_table
from xbkg.io.plaintable import (
    REMOVE_KEYWORDS,
    NotPlainError,
    PlainTable,
    _table_bytes,
    read_fits_table,
)


def _file_bytes(hdu) -> bytes:
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out.getvalue()


def _astropy_bytes(table) -> bytes:
    return _file_bytes(fits.table_to_hdu(utf8_strings(table)))


def _ecsv(table) -> str:
    out = io.StringIO()
    table.write(out, format="ascii.ecsv")
    return out.getvalue()


def test_remove_keywords_are_astropys():
    from astropy.io.fits.column import KEYWORD_NAMES

    assert list(REMOVE_KEYWORDS) == list(connect.REMOVE_KEYWORDS)
    assert plaintable.KEYWORD_NAMES == KEYWORD_NAMES


def test_simple_units_are_written_as_read():
    import astropy.units as u

    for unit in plaintable.SIMPLE_UNITS:
        assert u.Unit(unit, format="fits").to_string(format="fits") == unit
        assert str(u.Unit(unit)) == unit


def _write(tmp_path, columns, header=(), name="t.fits.gz"):
    hdu = fits.BinTableHDU.from_columns(columns)
    for key, value in header:
        hdu.header.append((key, value))
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def test_copy_of_an_index_table_is_astropys_byte_for_byte(tmp_path):
    nan_payload = np.array([0x7FF00000DEADBEEF], dtype=">u8").view(">f8")[0]  # a NaN != np.nan
    path = _write(tmp_path, [
        fits.Column("OBS_ID", "K", array=[3, 1, 2]),
        fits.Column("RA_PNT", "E", unit="deg", array=[1.5, np.nan, 3.0]),
        fits.Column("TSTART", "D", unit="s", array=[nan_payload, 2.0, 1e300]),
        fits.Column("OBJECT", "12A", array=["Crab  ", "", "off data"]),
        fits.Column("N_TELS", "J", array=[4, 3, 2]),
        fits.Column("FLAG", "L", array=[True, False, True]),
        fits.Column("RATE", "E", unit="s-1", array=[1.0, 2.0, 3.0]),
    ], header=[("EXTNAME", "OBS_INDEX"), ("GEOLON", "16.5"), ("MJDREFF", 7.428703703703703e-4),
               ("COMMENT", "a comment " * 12), ("HISTORY", "made by hand"),
               ("LONGSTR", "x" * 100), ("DUP", 1), ("DUP", 2), ("TRUTH", True)])
    plain = read_fits_table(path)
    assert plain is not None
    table = Table.read(path, hdu=1)
    expected = _astropy_bytes(table)
    assert _file_bytes(plain.to_hdu()) == expected
    assert _table_bytes(plain) is None  # the 100-character string needs CONTINUE cards
    del plain.meta["LONGSTR"], table.meta["LONGSTR"]
    assert _table_bytes(plain) is not None  # written directly, without astropy
    assert plain.fits_bytes() == _astropy_bytes(table)
    # the operations the product writers use, on both
    for t in (plain, table):
        t["OBS_ID_COPY"] = np.asarray(t["OBS_ID"], dtype="int64") * 2
        t["NAME"] = np.array(["a", "bb", "ccc"])
    keep = np.array([True, False, True])
    assert plain[keep].fits_bytes() == _astropy_bytes(table[keep])
    assert _file_bytes(plain[keep].to_hdu()) == _astropy_bytes(table[keep])


@pytest.mark.parametrize("column", [
    fits.Column("N", "J", null=-1, array=[1, -1]),          # TNULL: masked integers
    fits.Column("X", "E", disp="F8.3", array=[1.0, 2.0]),   # display format
    fits.Column("V", "2E", array=np.zeros((2, 2))),         # vector column
    fits.Column("U", "J", bzero=2**31, array=[1, 2]),      # unsigned (scaled)
    fits.Column("B", "E", unit="not_a_unit", array=[1.0, 2.0]),
])
def test_tables_it_cannot_copy_exactly_are_declined(tmp_path, column):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about the unknown unit
        path = _write(tmp_path, [fits.Column("OBS_ID", "K", array=[1, 2]), column])
    assert read_fits_table(path) is None


def test_serialized_astropy_columns_are_declined(tmp_path):
    from astropy.time import Time

    path = tmp_path / "t.fits"
    Table({"OBS_ID": [1], "T": Time([59000.0], format="mjd")}).write(path)
    assert read_fits_table(path) is None


def test_real_index_tables(hess_dr1, tmp_path):
    for name in ("obs-index.fits.gz", "hdu-index.fits.gz"):
        plain = read_fits_table(hess_dr1 / name)
        assert plaintable._read_direct(hess_dr1 / name, 1) is not None  # read without astropy
        assert _table_bytes(plain) is not None  # and written without it
        assert plain.fits_bytes() == _astropy_bytes(Table.read(hess_dr1 / name, hdu=1))
    ids = np.array([23523, 23526])
    args = dict(store_dir=hess_dr1, out_dir=tmp_path)
    plain = make_total_index_plain(hess_dr1 / "hdu-index.fits.gz", make_bkg_index_table(
        ids, ["a.fits", "b.fits"], kind="3d", plain=True), **args)
    table = make_total_index_table(hess_dr1 / "hdu-index.fits.gz", make_bkg_index_table(
        ids, ["a.fits", "b.fits"], kind="3d"), **args)
    assert len(plain) == len(table) == 630 - 105 + 2  # store bkg rows replaced
    assert plain.fits_bytes() == _astropy_bytes(table)


@settings(max_examples=300, deadline=None)
@example(key="END", value=False, comment="")  # found by Hypothesis: astropy refuses END
@given(key=st.from_regex(r"[A-Z][A-Z0-9_-]{0,7}", fullmatch=True), value=st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="ascii"), max_size=80)), comment=st.sampled_from(
    ["", "a comment", "number of table fields"]))
def test_cards_are_astropys(key, value, comment):
    image = _card(key, value, comment)
    if image is not None:  # else astropy formats it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns about what it must change
            assert image == fits.Card(key, value, comment).image
        assert len(image) == 80


def test_an_end_card_is_refused_as_astropy_refuses_it():  # it would end the header early
    assert _card("END", 1) is None
    with pytest.raises(ValueError, match="END"):
        card("END", 1)


def test_commentary_cards_are_astropys():
    for key in ("COMMENT", "HISTORY"):
        assert _card(key, "made by hand") == fits.Card(key, "made by hand").image
        assert _card(key, "x" * 73) is None


_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x85\u2028\u2029"),
                max_size=40)


@settings(max_examples=60, deadline=None)
@given(reasons=st.lists(_text, max_size=6), values=st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=4),
    meta=st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                         st.one_of(_text, st.text(min_size=100, max_size=300)), max_size=3))
def test_ecsv_is_astropys(reasons, values, meta):
    rejected = PlainTable({"OBS_ID": np.arange(len(reasons), dtype="int64"),
                           "REASON": np.array(reasons, dtype=str)}, meta=meta)
    assert rejected.to_ecsv() == _ecsv(rejected.to_astropy())
    groups = PlainTable({"GROUP_ID": np.arange(len(values), dtype="int64"),
                         "ONTIME": np.array(values, dtype=float)}, units={"ONTIME": "s"},
                        meta={"grouping": '{"by": {}, "method": "fixed"}', **meta})
    assert groups.to_ecsv() == _ecsv(groups.to_astropy())


def test_ecsv_refuses_what_it_cannot_write():
    with pytest.raises(NotPlainError):
        PlainTable({"X": np.zeros(2, dtype="float32")}).to_ecsv()
    with pytest.raises(NotPlainError):
        PlainTable({"# X": np.zeros(2)}).to_ecsv()
    with pytest.raises(NotPlainError):
        PlainTable({"X": np.zeros(2)}, meta={"n": 3}).to_ecsv()


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_gadf_files_with_uncertainty_columns_are_astropys(tmp_path, kind):
    """write_table_file writes its HDUs directly: with a conditional model's BKG_ERR column
    and uncertainty cards too, the bytes are astropy's."""
    import json

    from test_io_gadf import make_model

    from xbkg.io import gadf

    model = make_model(kind)
    model["rate_error"] = 0.1 * model["rate"]
    model.attrs["per_run"] = json.dumps({"sys_scatter": 0.12345678, "terms": ["zenith"],
                                         "stat_error": 0.01, "outside_range": []})
    got = gadf.write_table_file(model, 1, tmp_path / "t.fits").read_bytes()
    buf = io.BytesIO()
    fits.HDUList([gadf._primary_hdu(), gadf.bkg_hdu(model, 1), gadf.counts_hdu(model, 1),
                  gadf.exposure_hdu(model, 1)]).writeto(buf)
    assert got == buf.getvalue()
    assert b"BKG_ERR" in got and b"BKG_SYS" in got


def test_cards_only_astropy_formats_go_through_astropy():
    from xbkg.io import gadf
    from xbkg.io.fitswrite import hdu_bytes

    columns = [("X", np.array([1.0, 2.0]), "deg", None)]
    cards = [("TINY", 1.2345678901234567e-100, "a float astropy shortens"),
             ("NOTE", "a comment far too long " * 4)]
    assert _card(*cards[0]) is None and _card(*cards[1]) is None

    def make_hdu():
        hdu = fits.BinTableHDU.from_columns(gadf._fits_columns(columns), name="T")
        for key, value, *comment in cards:
            hdu.header.insert("EXTNAME", (key, value, *comment))
        return hdu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns that it truncates
        assert gadf._hdu_block(columns, cards, "T", make_hdu) == hdu_bytes(make_hdu())


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(
    st.booleans(), st.integers(-2**62, 2**62), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]), max_size=30)),
    min_size=1, max_size=6))
def test_direct_read_is_astropys(tmp_path_factory, values):
    """Index tables read without astropy give the bytes astropy.table gives."""
    from xbkg.io.plaintable import _read_direct

    header = [(f"KEY{i}", v) for i, v in enumerate(values)] + [("COMMENT", "hello"),
                                                               ("EXTNAME", "OBS_INDEX")]
    path = _write(tmp_path_factory.mktemp("d"), [
        fits.Column("OBS_ID", "K", array=[3, 1]),
        fits.Column("RA_PNT", "E", unit="deg", array=[np.nan, 2.5]),
        fits.Column("NAME", "8A", array=["Crab ", ""]),
        fits.Column("OK", "L", array=[True, False])], header=header, name="t.fits.gz")
    direct = _read_direct(path, 1)
    expected = _astropy_bytes(Table.read(path, hdu=1))
    if direct is None:  # long values: astropy reads it
        assert read_fits_table(path).fits_bytes() == expected
    else:
        assert direct.fits_bytes() == expected
