"""xbkg.io.fitstable: the fast FITS column reader agrees with astropy.io.fits to the bit, and fails
loudly (FitsReadError naming file, HDU and problem) on anything corrupt, truncated or missing."""

import bz2
import gzip
import io
import zlib

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings, strategies as st

from xbkg.io import fitstable
from xbkg.io.fitstable import FitsReadError, read_columns, read_header

DR1_RUNS = (20136, 23523, 33787)
EVENT_COLUMNS = ["TIME", "RA", "DEC", "ENERGY", "EVENT_ID"]
NROWS = 257


# ------------------------------------------------------------------------------------------
# helpers


def astropy_header(hdr) -> dict:
    """astropy Header -> the dict read_header promises (values, COMMENT/HISTORY lists)."""
    out: dict = {}
    for card in hdr.cards:
        key = card.keyword
        if key in ("COMMENT", "HISTORY"):
            out.setdefault(key, []).append(str(card.value))
        elif key and key not in out:
            value = card.value
            out[key] = None if isinstance(value, fits.card.Undefined) else value
    return out


def assert_same_header(mine: dict, hdr):
    ref = astropy_header(hdr)
    assert list(mine) == list(ref)
    for key, value in ref.items():
        assert mine[key] == value, key
        assert type(mine[key]) is type(value), key


def assert_bitwise(mine: np.ndarray, ref) -> None:
    ref = np.asarray(ref)
    assert mine.dtype == ref.dtype.newbyteorder("=")
    assert mine.dtype.isnative and mine.ndim == 1 and mine.flags.c_contiguous
    assert mine.flags.writeable
    assert mine.tobytes() == ref.astype(mine.dtype).tobytes()


def typed_table(nrows: int = NROWS, name: str = "EVENTS", seed: int = 0) -> fits.BinTableHDU:
    """A table with every supported scalar type, scaled columns and columns the reader skips."""
    rng = np.random.default_rng(seed)
    cols = [
        fits.Column("TIME", "D", unit="s", array=rng.uniform(1e8, 2e8, nrows)),
        fits.Column("VEC", "3E", array=rng.normal(size=(nrows, 3)).astype("f4")),
        fits.Column("RA", "E", unit="deg", array=rng.uniform(0, 360, nrows).astype("f4")),
        fits.Column("FLAG", "L", array=rng.uniform(size=nrows) < 0.5),
        fits.Column("LABEL", "5A", array=np.resize(["ab", "cde", "", "x'y", "zzzzz"], nrows)),
        fits.Column("BYTE", "B", array=rng.integers(0, 256, nrows).astype("u1")),
        fits.Column("SHORT", "I", array=rng.integers(-(2**15), 2**15, nrows).astype("i2")),
        fits.Column("INT", "J", array=rng.integers(-(2**31), 2**31, nrows).astype("i4")),
        fits.Column("LONG", "K", array=rng.integers(-(2**62), 2**62, nrows).astype("i8")),
        fits.Column("BITS", "4X", array=rng.uniform(size=(nrows, 4)) < 0.5),
        fits.Column("U16", "I", bzero=2**15, array=rng.integers(0, 2**16, nrows).astype("u2")),
        fits.Column("U32", "J", bzero=2**31, array=rng.integers(0, 2**32, nrows).astype("u4")),
        fits.Column("U64", "K", bzero=2**63,
                    array=rng.integers(0, 2**64, nrows, dtype="u8", endpoint=False)),
        fits.Column("SCALED", "J", array=rng.integers(-1000, 1000, nrows).astype("i4")),
        fits.Column("FSCALED", "E", array=rng.normal(size=nrows).astype("f4")),
        fits.Column("DOUBLE", "1D", unit="TeV", array=rng.lognormal(size=nrows)),
    ]
    table = fits.BinTableHDU.from_columns(cols, name=name)
    # scale factors set on the header keep the raw values as written (astropy then scales them)
    table.header["TSCAL14"], table.header["TZERO14"] = 0.25, -10.0
    table.header["TSCAL15"] = 2.0
    table.header["OBS_ID"] = 42
    table.header["ONTIME"] = (1682.0, "seconds")
    return table


SCALAR_COLUMNS = ["TIME", "RA", "FLAG", "BYTE", "SHORT", "INT", "LONG", "U16", "U32", "U64",
                  "SCALED", "FSCALED", "DOUBLE"]


def write_bytes(path, data: bytes, compress: bool = False):
    """Write ``data`` to ``path``, gzip-compressed when ``compress`` (whatever the name)."""
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def write(hdul: fits.HDUList, path, *, compress: bool = False):
    """Write ``hdul`` to ``path``: gzip-compressed when ``compress``, plain otherwise (any name)."""
    buf = io.BytesIO()
    hdul.writeto(buf)
    return write_bytes(path, buf.getvalue(), compress)


def multi_hdu_file() -> fits.HDUList:
    """PRIMARY with data, an IMAGE, a table with a heap, then the target, then a trailer."""
    image = fits.ImageHDU(np.arange(3000, dtype=">i4").reshape(30, 100), name="IMG")
    vla = fits.BinTableHDU.from_columns(
        [fits.Column("V", "PJ()", array=np.array([[1, 2], [3], [4, 5, 6]], dtype=object))],
        name="HEAPY")
    trailer = fits.BinTableHDU.from_columns([fits.Column("X", "D", array=np.ones(1000))],
                                            name="AFTER")
    return fits.HDUList([fits.PrimaryHDU(np.zeros((7, 13), ">f8")), image, vla, typed_table(),
                         trailer])


def _inflaters():
    libs = [pytest.param(zlib, id="zlib")]
    try:
        from isal import isal_zlib
    except ImportError:
        return libs
    return [*libs, pytest.param(isal_zlib, id="isal")]


@pytest.fixture(params=_inflaters())
def inflater(request, monkeypatch):
    """Run the test with each gzip inflater the reader may use (zlib; isal when installed)."""
    monkeypatch.setattr(fitstable, "_inflate_lib", request.param)
    return request.param


@pytest.fixture(scope="module", params=["fits", "gz"])
def multi_file(request, tmp_path_factory):
    """The multi-HDU file, plain and gzip (shared: tests must not modify it)."""
    compress = request.param == "gz"
    path = tmp_path_factory.mktemp("multi") / ("multi.fits.gz" if compress else "multi.fits")
    return write(multi_hdu_file(), path, compress=compress)


# ------------------------------------------------------------------------------------------
# real DR1 files


@pytest.mark.parametrize("obs_id", DR1_RUNS)
def test_dr1_events_and_gti_match_astropy(hess_dr1, obs_id, inflater):
    path = hess_dr1 / "data" / f"hess_dl3_dr1_obs_id_{obs_id:06d}.fits.gz"
    cols, header, units = read_columns(path, "EVENTS", EVENT_COLUMNS, header=True)
    gti = read_columns(path, "gti", ["START", "STOP"])
    with fits.open(path) as hdul:
        events = hdul["EVENTS"]
        assert len(cols["TIME"]) == events.header["NAXIS2"] > 1000
        for name in EVENT_COLUMNS:
            assert_bitwise(cols[name], events.data[name])
            assert units[name] == (events.columns[name].unit or "")
        assert_same_header(header, events.header)
        assert_same_header(read_header(path, "EVENTS"), events.header)
        for name in ("START", "STOP"):
            assert_bitwise(gti[name], hdul["GTI"].data[name])


def test_dr1_all_headers_match_astropy(hess_dr1):
    path = hess_dr1 / "data" / f"hess_dl3_dr1_obs_id_{DR1_RUNS[0]:06d}.fits.gz"
    with fits.open(path) as hdul:
        for index, hdu in enumerate(hdul):
            assert_same_header(read_header(path, index), hdu.header)
            assert_same_header(read_header(path, hdu.name.lower()), hdu.header)


def test_dr1_events_read_without_decompressing_the_irfs(hess_dr1, tmp_path, inflater):
    """Stream decompression stops after EVENTS: a file cut inside the IRF HDUs still reads."""
    src = hess_dr1 / "data" / f"hess_dl3_dr1_obs_id_{DR1_RUNS[0]:06d}.fits.gz"
    data = src.read_bytes()
    cut = tmp_path / "cut.fits.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    cols = read_columns(cut, "EVENTS", ["ENERGY"])
    with fits.open(src) as hdul:
        assert_bitwise(cols["ENERGY"], hdul["EVENTS"].data["ENERGY"])
    with pytest.raises(FitsReadError, match=r"cut\.fits\.gz.*truncated"):
        read_columns(cut, "BKG", ["ENERG_LO"])


# ------------------------------------------------------------------------------------------
# synthetic files: values


def test_all_types_match_astropy_bitwise(multi_file, inflater):
    cols, header, units = read_columns(multi_file, "EVENTS", SCALAR_COLUMNS, header=True)
    with fits.open(multi_file) as hdul:
        ref = hdul["EVENTS"]
        for name in SCALAR_COLUMNS:
            assert_bitwise(cols[name], ref.data[name])
            assert units[name] == (ref.columns[name].unit or "")
        assert_same_header(header, ref.header)
    assert cols["U16"].dtype == np.uint16 and cols["U64"].dtype == np.uint64
    assert cols["SCALED"].dtype == np.float64 and cols["FSCALED"].dtype == np.float64
    assert cols["FLAG"].dtype == bool and cols["BYTE"].dtype == np.uint8
    assert cols["TIME"].dtype == np.float64 and cols["RA"].dtype == np.float32
    assert units == {**dict.fromkeys(SCALAR_COLUMNS, ""), "TIME": "s", "RA": "deg", "DOUBLE": "TeV"}


def test_scaled_values_are_physical(tmp_path):
    u16 = np.array([0, 1, 32767, 32768, 65535], dtype="u2")
    table = fits.BinTableHDU.from_columns(
        [fits.Column("U", "I", bzero=2**15, array=u16),
         fits.Column("S", "J", array=np.array([0, 1, 40, 1000, 4040], dtype="i4"))], name="T")
    table.header["TSCAL2"], table.header["TZERO2"] = 0.25, -10.0
    scaled = np.array([-10.0, -9.75, 0.0, 240.0, 1e3])
    path = write(fits.HDUList([fits.PrimaryHDU(), table]), tmp_path / "s.fits")
    cols = read_columns(path, "T", ["U", "S"])
    np.testing.assert_array_equal(cols["U"], u16)
    np.testing.assert_array_equal(cols["S"], scaled)


def test_other_hdus_are_read_by_index_name_and_version(multi_file):
    with fits.open(multi_file) as hdul:
        for index, hdu in enumerate(hdul):
            assert_same_header(read_header(multi_file, index), hdu.header)
        assert_same_header(read_header(multi_file, "primary"), hdul[0].header)
        assert_same_header(read_header(multi_file, ("img", 1)), hdul["IMG"].header)
        after = read_columns(multi_file, 4, ["x"])
        assert_bitwise(after["x"], hdul["AFTER"].data["X"])


def test_names_case_insensitive_and_keyed_as_requested(multi_file):
    cols = read_columns(multi_file, "eVeNtS", ["time", "Ra", "time"])
    assert list(cols) == ["time", "Ra"]
    assert cols["time"].shape == (NROWS,)
    single = read_columns(multi_file, "events", "double")
    assert list(single) == ["double"]


def test_lowercase_extname_in_file_and_hduname(tmp_path):
    table = typed_table(10)
    table.header["EXTNAME"] = "events"
    table.header["HDUNAME"] = "my_events"
    path = write(fits.HDUList([fits.PrimaryHDU(), table]), tmp_path / "lower.fits")
    assert read_header(path, "EVENTS")["EXTNAME"] == "events"
    assert read_header(path, "My_Events")["HDUNAME"] == "my_events"
    assert len(read_columns(path, "Events", ["TIME"])["TIME"]) == 10


def test_first_match_by_name_and_extver(tmp_path):
    a, b = typed_table(3, seed=1), typed_table(5, seed=2)
    b.header["EXTVER"] = 2
    path = write(fits.HDUList([fits.PrimaryHDU(), a, b]), tmp_path / "ver.fits")
    assert read_header(path, "EVENTS")["NAXIS2"] == 3
    assert read_header(path, ("EVENTS", 1))["NAXIS2"] == 3
    assert read_header(path, ("EVENTS", 2))["NAXIS2"] == 5
    with pytest.raises(FitsReadError, match=r"no HDU \('EVENTS', 3\)"):
        read_header(path, ("EVENTS", 3))


@pytest.mark.parametrize("compress", [False, True])
def test_zero_rows(tmp_path, compress, inflater):
    path = write(fits.HDUList([fits.PrimaryHDU(), typed_table(0)]), tmp_path / "empty.fits",
                 compress=compress)
    cols = read_columns(path, "EVENTS", SCALAR_COLUMNS)
    with fits.open(path) as hdul:
        for name in SCALAR_COLUMNS:
            assert cols[name].shape == (0,)
            assert cols[name].dtype == hdul["EVENTS"].data[name].dtype.newbyteorder("=")


def test_gzip_detected_by_magic_not_by_name(tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU(), typed_table(20)])
    zipped = write(hdul, tmp_path / "really_gzip.fits", compress=True)
    plain = write(hdul, tmp_path / "really_plain.fits.gz")
    assert zipped.read_bytes()[:2] == b"\x1f\x8b" and plain.read_bytes()[:6] == b"SIMPLE"
    a, b = read_columns(zipped, "EVENTS", ["TIME"]), read_columns(plain, "EVENTS", ["TIME"])
    assert a["TIME"].tobytes() == b["TIME"].tobytes() and len(a["TIME"]) == 20


def test_multi_member_gzip(tmp_path, inflater):
    path = write(fits.HDUList([fits.PrimaryHDU(), typed_table(500)]), tmp_path / "m.fits")
    raw = path.read_bytes()
    members = tmp_path / "m2.fits.gz"
    members.write_bytes(gzip.compress(raw[:4000], mtime=0) + gzip.compress(raw[4000:], mtime=0))
    assert read_columns(members, "EVENTS", ["LONG"])["LONG"].tobytes() == \
        read_columns(path, "EVENTS", ["LONG"])["LONG"].tobytes()


def test_result_does_not_alias_other_reads(multi_file):
    a = read_columns(multi_file, "EVENTS", ["TIME"])["TIME"]
    a[:] = 0
    assert read_columns(multi_file, "EVENTS", ["TIME"])["TIME"].any()


# ------------------------------------------------------------------------------------------
# headers


def test_header_value_kinds_match_astropy(tmp_path):
    hdr = fits.Header()
    hdr["INTVAL"] = -12
    hdr["BIGINT"] = 2**64
    hdr["FLT"] = 1.5e-300
    hdr["NEGZERO"] = -0.0
    hdr["BOOLT"] = True
    hdr["BOOLF"] = False
    hdr["EMPTY"] = ""
    hdr["QUOTE"] = "it's  "
    hdr["LEAD"] = "  lead"
    hdr["CPLX"] = complex(1.5, -2)
    hdr["UNDEF"] = None
    hdr["LONGSTR"] = "a long string value " * 8
    hdr["HIERARCH ESO DET CHIP"] = 7
    hdr["DUP"] = 1
    hdr.append(("DUP", 2))
    hdr["COMMENT"] = "first comment"
    hdr["COMMENT"] = "second 'comment'"
    hdr["HISTORY"] = "history"
    hdr.append(fits.Card.fromstring("DEXP    =            1.25D+02 / exponent written with D"))
    path = write(fits.HDUList([fits.PrimaryHDU(header=hdr)]), tmp_path / "h.fits")
    mine = read_header(path, 0)
    with fits.open(path) as hdul:
        assert_same_header(mine, hdul[0].header)
    assert mine["DUP"] == 1 and mine["DEXP"] == 125.0 and mine["UNDEF"] is None
    assert mine["LONGSTR"] == "a long string value " * 7 + "a long string value"
    assert mine["ESO DET CHIP"] == 7 and mine["COMMENT"][1] == "second 'comment'"


_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=150)
_value = st.one_of(st.integers(-(10**18), 10**18), st.booleans(), _text,
                   st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=40, deadline=None)
@given(st.lists(_value, min_size=1, max_size=8))
def test_header_values_roundtrip_like_astropy(tmp_path_factory, values):
    hdr = fits.Header([(f"KEY{i}", v) for i, v in enumerate(values)])
    path = tmp_path_factory.mktemp("hyp") / "h.fits"
    write(fits.HDUList([fits.PrimaryHDU(header=hdr)]), path)
    mine = read_header(path, 0)
    with fits.open(path) as hdul:
        # astropy misreads a string value with a quote before a "/" (it writes "'/" as
        # '''/' and reads back "'"): strings are checked against what was written (FITS
        # drops trailing blanks), everything else against astropy
        ref = astropy_header(hdul[0].header)
    assert list(mine) == list(ref)
    for i, value in enumerate(values):
        key = f"KEY{i}"
        expected = value.rstrip(" ") if isinstance(value, str) else ref[key]
        assert mine[key] == expected and type(mine[key]) is type(expected), key


def test_string_value_with_a_quote_before_a_slash(tmp_path):
    """FITS writes a quote in a string as two: '''/' is the string "'/" (astropy reads "'")."""
    hdr = fits.Header([("KEY0", "'/"), ("KEY1", "a'/b"), ("KEY2", "x'' / y")])
    path = write(fits.HDUList([fits.PrimaryHDU(header=hdr)]), tmp_path / "q.fits")
    mine = read_header(path, 0)
    assert (mine["KEY0"], mine["KEY1"], mine["KEY2"]) == ("'/", "a'/b", "x'' / y")
    with fits.open(path) as hdul:
        assert hdul[0].header["KEY0"] == "'"  # astropy's reading, which xbkg does not follow


# ------------------------------------------------------------------------------------------
# errors: missing things


def test_missing_column_names_file_hdu_and_column(multi_file):
    with pytest.raises(FitsReadError) as err:
        read_columns(multi_file, "EVENTS", ["TIME", "NOPE"])
    msg = str(err.value)
    assert multi_file.name in msg and "EVENTS" in msg and "'NOPE'" in msg and "not found" in msg
    assert "TIME" in msg  # lists the columns that exist


def test_missing_hdu_lists_what_exists(multi_file):
    with pytest.raises(FitsReadError) as err:
        read_columns(multi_file, "GTI", ["START"])
    msg = str(err.value)
    assert multi_file.name in msg and "'GTI'" in msg and "IMG" in msg and "AFTER" in msg
    with pytest.raises(FitsReadError, match="no HDU 9"):
        read_header(multi_file, 9)


@pytest.mark.parametrize("column, problem", [("VEC", "3E"), ("LABEL", "5A"), ("BITS", "4X")])
def test_non_scalar_columns_refused(multi_file, column, problem):
    with pytest.raises(FitsReadError, match=rf"column '{column}' has TFORM\d+ = '{problem}'"):
        read_columns(multi_file, "EVENTS", [column])


def test_variable_length_column_refused_and_image_is_not_a_table(multi_file):
    with pytest.raises(FitsReadError, match=r"HEAPY.*PJ"):
        read_columns(multi_file, "HEAPY", ["V"])
    with pytest.raises(FitsReadError, match=r"IMG.*not a binary table"):
        read_columns(multi_file, "IMG", ["X"])


def test_bad_arguments(multi_file):
    with pytest.raises(FitsReadError, match="must be >= 0"):
        read_header(multi_file, -1)
    with pytest.raises(TypeError):
        read_header(multi_file, 1.5)
    with pytest.raises(TypeError):
        read_columns(multi_file, "EVENTS", [1])
    with pytest.raises(FileNotFoundError):
        read_header(multi_file.with_name("absent.fits"), 0)


def test_public_names():
    assert sorted(fitstable.__all__) == ["FitsReadError", "check_sizes", "read_columns",
                                        "read_header", "read_tables", "read_whole_table"]
    assert issubclass(FitsReadError, ValueError)


# ------------------------------------------------------------------------------------------
# errors: corrupt and truncated files


def _table_offsets(path):
    """(header start, data start, data length) of the EVENTS HDU of a plain file."""
    with fits.open(path) as hdul:
        info = hdul.fileinfo(hdul.index_of("EVENTS"))
        return info["hdrLoc"], info["datLoc"], info["datSpan"]


@pytest.fixture(scope="module")
def plain_file(tmp_path_factory):
    """The multi-HDU file, plain (shared: tests write modified copies elsewhere)."""
    return write(multi_hdu_file(), tmp_path_factory.mktemp("plain") / "plain.fits")


@pytest.mark.parametrize("where", ["in_table", "in_header", "in_skipped_data"])
@pytest.mark.parametrize("compress", [False, True])
def test_truncated_files_raise(plain_file, tmp_path, where, compress, inflater):
    hdr_loc, dat_loc, _ = _table_offsets(plain_file)
    cut_at = {"in_table": dat_loc + 1000, "in_header": hdr_loc + 200, "in_skipped_data": 3000}
    data = plain_file.read_bytes()[: cut_at[where]]
    path = tmp_path / "cut.fits"
    path.write_bytes(gzip.compress(data, mtime=0)[:-8] if compress else data)
    with pytest.raises(FitsReadError, match=r"cut\.fits.*truncated"):
        read_columns(path, "EVENTS", ["TIME"])


def test_truncated_gzip_stream_even_at_a_block_boundary(plain_file, tmp_path, inflater):
    hdr_loc, _, _ = _table_offsets(plain_file)
    zipped = gzip.compress(plain_file.read_bytes(), mtime=0)
    d = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = d.compress(plain_file.read_bytes()[:hdr_loc]) + d.flush(zlib.Z_SYNC_FLUSH)
    path = tmp_path / "boundary.fits.gz"
    path.write_bytes(head)  # a valid deflate prefix that ends exactly before the EVENTS header
    assert len(head) < len(zipped)
    with pytest.raises(FitsReadError, match="truncated: the gzip stream ends early"):
        read_header(path, "EVENTS")


@pytest.mark.parametrize("rows", [10**6, 10**15])
@pytest.mark.parametrize("compress", [False, True])
def test_data_shorter_than_naxis_products(plain_file, tmp_path, rows, compress):
    """A table whose NAXIS2 promises more rows than the file holds (never allocated)."""
    raw = bytearray(plain_file.read_bytes())
    hdr_loc, dat_loc, span = _table_offsets(plain_file)
    i = raw.index(b"NAXIS2  =", hdr_loc)
    raw[i : i + 30] = f"NAXIS2  = {rows:>20}".encode()
    path = write_bytes(tmp_path / "short.fits", bytes(raw[: dat_loc + span]), compress)
    with pytest.raises(FitsReadError, match=rf"short\.fits.*EVENTS.*truncated.*{rows} rows"):
        read_columns(path, "EVENTS", ["TIME"])


@pytest.mark.parametrize("flavour", ["garbage_deflate", "wrong_magic", "crc"])
def test_corrupt_gzip_raises(plain_file, tmp_path, flavour, inflater):
    raw = plain_file.read_bytes()
    zipped = bytearray(gzip.compress(raw, mtime=0))
    if flavour == "garbage_deflate":
        zipped[10:40] = b"\xff" * 30  # the first deflate block gets a reserved block type
    elif flavour == "wrong_magic":
        zipped[2] = 99  # gzip magic with an unknown compression method
    else:
        small = write(fits.HDUList([fits.PrimaryHDU(), typed_table(5)]), tmp_path / "small.fits",
                      compress=True)
        zipped = bytearray(small.read_bytes())
        zipped[-8] ^= 0xFF  # CRC of the only member, checked once the stream is read to its end
    path = tmp_path / "bad.fits.gz"
    path.write_bytes(bytes(zipped))
    with pytest.raises(FitsReadError, match=r"bad\.fits\.gz") as err:
        if flavour == "crc":
            read_header(path, 2)  # walks to the end of the stream
        else:
            read_columns(path, "EVENTS", ["TIME"])
    assert err.value.__cause__ is not None


def test_header_without_end(tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU()])
    path = write(hdul, tmp_path / "noend.fits")
    raw = path.read_bytes().replace(b"END" + b" " * 77, b" " * 80)
    path.write_bytes(raw)
    with pytest.raises(FitsReadError, match=r"noend\.fits.*HDU 0.*without an END card"):
        read_header(path, 0)
    # END missing before binary data: the header runs into non-ASCII bytes
    path2 = write(fits.HDUList([fits.PrimaryHDU(), typed_table(50)]), tmp_path / "noend2.fits")
    hdr_loc, _, _ = _table_offsets(path2)
    raw = bytearray(path2.read_bytes())
    i = raw.index(b"END" + b" " * 77, hdr_loc)
    raw[i : i + 80] = b" " * 80
    path2.write_bytes(bytes(raw))
    with pytest.raises(FitsReadError, match=r"noend2\.fits.*corrupt header of HDU 1"):
        read_columns(path2, "EVENTS", ["TIME"])


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"hello world" * 300, "not a FITS file"),
    (b"\x1f\x8b" + b"\x00" * 100, "cannot read"),
])
def test_not_fits(tmp_path, content, message, inflater):
    path = tmp_path / "junk.fits"
    path.write_bytes(content)
    with pytest.raises(FitsReadError, match=rf"junk\.fits.*{message}"):
        read_header(path, 0)


@pytest.mark.parametrize("card, message", [
    ("NAXIS2  = 'many'", "invalid NAXIS2"),
    ("NAXIS2  =                 12.5", "invalid NAXIS2"),
    ("NAXIS1  =                    3", "NAXIS1 = 3"),
    ("TFORM2  = '3Z      '", "invalid or missing TFORM2"),
    ("TTYPE1  = 'unterminated", "unterminated string"),
    ("TSCAL3  =                  1:2", "cannot parse value"),
])
def test_corrupt_header_values(plain_file, tmp_path, card, message):
    raw = bytearray(plain_file.read_bytes())
    hdr_loc, dat_loc, _ = _table_offsets(plain_file)
    key = card[:8].encode()
    i = raw.find(key, hdr_loc, dat_loc)
    if i < 0:  # keyword not present: overwrite the OBS_ID card
        i = raw.index(b"OBS_ID  =", hdr_loc)
    raw[i : i + 80] = card.ljust(80).encode()
    path = tmp_path / "badcard.fits"
    path.write_bytes(bytes(raw))
    with pytest.raises(FitsReadError, match=rf"badcard\.fits.*HDU 3.*{message}"):
        read_columns(path, "EVENTS", ["TIME"])


def test_zero_padding_after_last_hdu_is_not_corruption(tmp_path):
    path = write(fits.HDUList([fits.PrimaryHDU(), typed_table(5)]), tmp_path / "pad.fits")
    path.write_bytes(path.read_bytes() + b"\x00" * 2880)
    assert len(read_columns(path, 1, ["TIME"])["TIME"]) == 5
    with pytest.raises(FitsReadError, match="no HDU 'GTI'"):
        read_header(path, "GTI")


def test_junk_after_last_hdu_is_corruption(tmp_path):
    path = write(fits.HDUList([fits.PrimaryHDU(), typed_table(5)]), tmp_path / "junk.fits")
    path.write_bytes(path.read_bytes() + b"JUNK" * 720)
    with pytest.raises(FitsReadError, match="not an HDU header"):
        read_header(path, "GTI")


# ------------------------------------------------------------------------------------------
# astropy fallbacks


def test_ascii_table_and_bzip2_fall_back_to_astropy(tmp_path):
    ascii_table = fits.TableHDU.from_columns(
        [fits.Column("A", "E15.7", unit="m", array=np.array([1.5, -2.25])),
         fits.Column("B", "I10", array=np.array([3, 4]))], name="ASC")
    hdul = fits.HDUList([fits.PrimaryHDU(), ascii_table, typed_table(30)])
    path = write(hdul, tmp_path / "ascii.fits")
    cols, header, units = read_columns(path, "asc", ["a", "B"], header=True)
    np.testing.assert_array_equal(cols["a"], [1.5, -2.25])
    np.testing.assert_array_equal(cols["B"], [3, 4])
    assert units == {"a": "m", "B": ""} and header["EXTNAME"] == "ASC"
    bz = tmp_path / "table.fits.bz2"
    bz.write_bytes(bz2.compress(path.read_bytes()))
    mine = read_columns(bz, "EVENTS", ["TIME", "U64"])
    ref = read_columns(path, "EVENTS", ["TIME", "U64"])
    assert all(mine[k].tobytes() == ref[k].tobytes() for k in ref)
    with pytest.raises(FitsReadError, match=r"table\.fits\.bz2.*astropy.*no such HDU"):
        read_header(bz, "NOPE")
    with pytest.raises(FitsReadError, match=r"'ZZ' not found"):
        read_columns(bz, "EVENTS", ["ZZ"])


def test_tile_compressed_image_header_via_astropy(tmp_path):
    comp = fits.CompImageHDU(np.arange(400, dtype="f4").reshape(20, 20), name="SKY")
    path = write(fits.HDUList([fits.PrimaryHDU(), comp]), tmp_path / "comp.fits")
    header = read_header(path, "SKY")
    assert header["NAXIS1"] == 20 and header["BITPIX"] == -32 and "ZIMAGE" not in header
