"""Fast, strict reader of FITS headers and scalar binary-table columns.

Parses just the FITS structure needed to pull a few scalar columns out of one binary-table HDU,
inflating gzip streams only as far as the wanted bytes; unusual but valid files go to
:mod:`astropy.io.fits`. Anything wrong raises :class:`FitsReadError` naming the file, the HDU
and the problem; arrays are never returned short (docs/architecture.rst).
"""

from __future__ import annotations

import math
import os
import re
import threading
import zlib

import numpy as np

from xbkg.io.safety import require_regular_file

try:  # ISA-L inflates gzip streams faster than zlib; used when the optional "isal" is installed
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - depends on the environment
    _inflate_lib = zlib
#: Exceptions of every inflater that may be in use.
_INFLATE_ERRORS = tuple({zlib.error, _inflate_lib.error})

__all__ = ["FitsReadError", "read_header", "read_columns", "read_tables", "check_sizes",
           "read_whole_table"]

BLOCK = 2880
CARD = 80

_GZIP_MAGIC = b"\x1f\x8b"
_ASTROPY_MAGICS = {b"BZh": "bzip2-compressed", b"PK\x03\x04": "zip-compressed"}
_COMMENTARY = ("COMMENT", "HISTORY")
_PRINTABLE = bytes(range(0x20, 0x7F))
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
#: One header card with a newline appended: keyword, "= ", quoted string or other value, rest.
_CARD = re.compile(r"(.{8})(?:(= ) *('[^'\n]*(?:''[^'\n]*)*'|[^'/\n]*))?([^\n]*)\n")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?")
_TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])(.*)")

#: Bytes per element of each binary-table type code (P/Q are heap descriptors).
_WIDTH = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16,
          "P": 8, "Q": 16}
#: Big-endian on-disk dtype of the scalar types this reader returns.
_DTYPE = {"L": "u1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
#: TZEROn that astropy turns into unsigned integers (with TSCALn 1), and the resulting dtype.
_UINT = {"I": (2**15, np.uint16), "J": (2**31, np.uint32), "K": (2**63, np.uint64)}


class FitsReadError(ValueError):
    """A FITS file could not be read as asked: corrupt, truncated, or lacking an HDU/column."""


# --------------------------------------------------------------------------------------------
# byte sources: a plain file (seekable) and a gzip stream (decompressed on demand)


def _gather(pull, n: int, keep: bool = True) -> bytes | int:
    """Call ``pull(k)`` until ``n`` bytes came or it returns nothing: the bytes, or their count."""
    parts, got = [], 0
    while got < n:
        part = pull(min(n - got, 1 << 22))
        if not part:
            break
        got += len(part)
        if keep:
            parts.append(part)
    if not keep:
        return got
    return parts[0] if len(parts) == 1 else b"".join(parts)


_SCRATCH = threading.local()
#: Largest table read into the reused per-thread buffer (larger ones get their own bytes).
_SCRATCH_MAX = 1 << 28


def _scratch(n: int) -> memoryview:
    """A writable buffer of ``n`` bytes, reused by this thread's next call."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or len(buf) < n:
        buf = _SCRATCH.buf = bytearray(max(n, 1 << 20))
    return memoryview(buf)[:n]


class _PlainSource:
    """Unbuffered reads and seeks on a regular file of known size."""

    truncated = False  # a short plain file is seen from its size, not from a stream's state

    def __init__(self, f):
        self._f = f
        self.size = os.fstat(f.fileno()).st_size
        self.pos = f.tell()

    def read(self, n: int) -> bytes:
        # a corrupt size must not allocate beyond the file
        data = _gather(self._f.read, min(n, self.size - self.pos))
        self.pos += len(data)
        return data

    def read_scratch(self, n: int):
        """Like :meth:`read`, into this thread's reused buffer (valid until its next call):
        reading a table into a fresh bytes object page-faults it in, which is slower."""
        n = min(n, self.size - self.pos)
        if n > _SCRATCH_MAX:
            return self.read(n)
        view, got = _scratch(n), 0
        while got < n:
            k = self._f.readinto(view[got:])
            if not k:
                break
            got += k
        self.pos += got
        return view[:got]

    def skip(self, n: int) -> int:
        k = max(0, min(n, self.size - self.pos))
        self._f.seek(k, os.SEEK_CUR)
        self.pos += k
        return k


class _GzipSource:
    """Gzip members inflated only as far as they are read (zlib or isal, bounded memory)."""

    CHUNK = 1 << 16

    def __init__(self, f):
        self._f = f
        self._lib = _inflate_lib
        self._d = self._lib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""
        self._member_done = False
        self._input_done = False
        self.pos = 0
        self.packed = os.fstat(f.fileno()).st_size  # compressed bytes, for :func:`_check_inflation`

    @property
    def truncated(self) -> bool:
        """True once the compressed input ended inside a gzip member."""
        return self._input_done and not self._member_done

    def _inflate(self, n: int) -> bytes:
        """At most ``n`` (> 0) decompressed bytes; ``b""`` only at the end of the data."""
        while True:
            if not self._tail and not self._input_done:
                self._tail = self._f.read(self.CHUNK)
                self._input_done = not self._tail
            if self._member_done:
                if len(self._tail) < 2 and not self._input_done:
                    self._tail += self._f.read(self.CHUNK)
                    self._input_done = len(self._tail) < 2
                    continue
                if not self._tail.startswith(_GZIP_MAGIC):
                    return b""  # end of the last member (zero padding or junk may follow)
                self._d = self._lib.decompressobj(16 + zlib.MAX_WBITS)
                self._member_done = False
            # called even without new input: an inflater may hold output it has not returned
            out = self._d.decompress(self._tail, n)
            self._tail = self._d.unconsumed_tail
            if self._d.eof:
                self._tail = self._d.unused_data
                self._member_done = True
            if out:
                self.pos += len(out)
                return out
            if self._input_done and not self._tail and not self._member_done:
                return b""  # input ends inside a member: truncated

    def read(self, n: int) -> bytes:
        return _gather(self._inflate, n)

    read_scratch = read

    def skip(self, n: int) -> int:
        return _gather(self._inflate, n, keep=False)


#: A gzip file's table larger than this must not inflate more than :data:`MAX_INFLATION` times:
#: DL3 data compress about 1.6:1, a file of zeros 1000:1 (a small file declaring GBs of rows).
INFLATE_FLOOR = 1 << 26
MAX_INFLATION = 100


def _check_inflation(src, nbytes: int, nrows: int, where: str) -> None:
    """Refuse, before allocating it, a table of a gzip file far larger than the file could hold
    as real data (an all-zero table inflates ~1000:1: memory bounded whatever the file says)."""
    packed = getattr(src, "packed", None)
    if packed is not None and nbytes > max(INFLATE_FLOOR, MAX_INFLATION * packed):
        raise FitsReadError(
            f"{where}: truncated, corrupt or hostile: the table declares {nrows} rows "
            f"({nbytes} bytes), more than {MAX_INFLATION} times the {packed} bytes of the "
            "compressed file; refused")


# --------------------------------------------------------------------------------------------
# header cards


def _parse_string(text: str, where: str) -> str:
    """Value of the quoted FITS string at the start of ``text`` (``''`` is a quote)."""
    i = 1
    while True:
        j = text.find("'", i)
        if j < 0:
            raise FitsReadError(f"{where}: unterminated string value")
        if not text.startswith("'", j + 1):
            return text[1:j].replace("''", "'")
        i = j + 2


def _parse_scalar(value: str, where: str, key: str):
    """A non-string value (stripped): bool, int, float, complex, or None when empty."""
    if value.isdigit():
        return int(value)
    try:
        number = float(value)
    except ValueError:
        pass
    else:  # float() also takes "nan", "inf" and "1_0", which FITS does not
        if "_" not in value and value[-1] in "0123456789.":
            return number if ("." in value or "e" in value or "E" in value) else int(value)
    if value in ("T", "F"):
        return value == "T"
    if not value:
        return None
    if _FLOAT.fullmatch(value):  # exponent written with D
        return float(value.replace("D", "E").replace("d", "e"))
    parts = value[1:-1].split(",") if value[:1] + value[-1:] == "()" else []
    if len(parts) == 2 and all(_FLOAT.fullmatch(p.strip()) for p in parts):
        re_, im = (float(p.strip().replace("D", "E").replace("d", "e")) for p in parts)
        return complex(re_, im)
    raise FitsReadError(f"{where}, keyword {key}: cannot parse value {value!r}")


def _card_value(value: str, rest: str, where: str, key: str):
    """Value of a value card from its ``_CARD`` groups (quoted string or other text, rest)."""
    if value[:1] == "'":
        value = value[1:-1]
        return (value.replace("''", "'") if "''" in value else value).rstrip()
    if not value.strip() and rest.lstrip()[:1] == "'":
        raise FitsReadError(f"{where}, keyword {key}: unterminated string value")
    return _parse_scalar(value.strip(), where, key)


class _Keywords:
    """Single keywords of raw header cards, parsed when asked for (for HDUs walked past).

    Looks up the first card that starts with the keyword, like the full parse; supports the
    ``get`` and ``in`` of a dict.
    """

    _MISSING = object()

    def __init__(self, raw: bytes, where: str):
        self._raw = raw
        self._where = where
        self._found: dict = {}

    def get(self, key: str, default=None):
        if key not in self._found:
            self._found[key] = self._lookup(key)
        value = self._found[key]
        return default if value is self._MISSING else value

    def __contains__(self, key: str) -> bool:
        return self.get(key, self._MISSING) is not self._MISSING

    def _lookup(self, key: str):
        pattern = f"{key:<8}= ".encode()
        pos = self._raw.find(pattern)
        while pos >= 0 and pos % CARD:
            pos = self._raw.find(pattern, pos + 1)
        if pos < 0:
            return self._MISSING
        _, _, value, rest = _CARD.match(self._raw[pos : pos + CARD].decode("ascii") + "\n").groups()
        return _card_value(value, rest, self._where, key)


def _parse_header(raw: bytes, where: str) -> dict:
    """Header cards (before END) -> dict of keyword values.

    Keywords are upper case, in card order; the first of repeated keywords wins (as astropy's
    ``header[key]``); ``COMMENT`` and ``HISTORY`` are lists of strings; long strings continued
    with ``&`` and ``CONTINUE`` cards are joined; ``HIERARCH`` keywords lose that prefix.
    """
    cards = np.frombuffer(raw, np.uint8).reshape(-1, CARD)
    lines = np.empty((cards.shape[0], CARD + 1), np.uint8)
    lines[:, :CARD] = cards
    lines[:, CARD] = ord("\n")
    header: dict = {}
    last_string = None  # keyword of the previous card if its string value ends with "&"
    for key, eq, value, rest in _CARD.findall(lines.tobytes().decode("ascii")):
        key = key.rstrip().upper()
        quoted = value[:1] == "'"
        if eq:
            value = _card_value(value, rest, where, key)
        elif key in _COMMENTARY:
            header.setdefault(key, []).append(rest.rstrip())
            continue
        elif key == "CONTINUE" and last_string and rest.lstrip()[:1] == "'":
            more = _parse_string(rest.lstrip(), f"{where}, keyword {last_string}")
            header[last_string] = (header[last_string][:-1] + more).rstrip()
            last_string = last_string if header[last_string].endswith("&") else None
            continue
        elif key == "HIERARCH" and "=" in rest:
            key, _, field = rest.partition("=")
            key, field = key.strip().upper(), field.lstrip()
            quoted = field[:1] == "'"
            value = (_parse_string(field, f"{where}, keyword {key}").rstrip() if quoted
                     else _parse_scalar(field.split("/", 1)[0].strip(), where, key))
        else:
            continue  # blank keyword or other commentary card
        if key not in header:
            header[key] = value
            last_string = key if quoted and value.endswith("&") else None
        else:
            last_string = None
    return header


# --------------------------------------------------------------------------------------------
# walking the HDUs


def _hdu_label(index: int, header) -> str:
    name = header.get("EXTNAME") or ("PRIMARY" if index == 0 else "")
    return f"HDU {index} ({name})" if name else f"HDU {index}"


def _end_card(block: bytes) -> int:
    """Byte offset of the END card in a header block, or -1."""
    pos = block.find(b"END     ")
    while pos >= 0 and pos % CARD:
        pos = block.find(b"END     ", pos + 1)
    return pos


def _read_raw_header(src, where: str, index: int) -> bytes | None:
    """Cards (before END) of the next HDU's header, or None at a clean end of the file."""
    blocks = []
    start = src.pos
    while True:
        block = src.read(BLOCK)
        if not block and not blocks:
            if index == 0:
                raise FitsReadError(f"{where}: not a FITS file (empty)")
            if src.truncated:
                raise FitsReadError(f"{where}: truncated: the gzip stream ends early, at byte "
                                    f"{start} of the uncompressed data, after HDU {index - 1}")
            return None
        if not blocks and index == 0 and block[:9] != b"SIMPLE  =":
            raise FitsReadError(f"{where}: not a FITS file (no SIMPLE card at the start)")
        if len(block) < BLOCK:
            raise FitsReadError(
                f"{where}: truncated: the header of HDU {index} (at byte {start}) ends after "
                f"{src.pos - start} bytes without an END card")
        if block.translate(None, _PRINTABLE):
            if not blocks and index > 0 and not block.strip(b"\x00"):
                return None  # zero padding after the last HDU
            bad = _NOT_PRINTABLE.search(block).start()
            raise FitsReadError(f"{where}: corrupt header of HDU {index}: byte "
                                f"{src.pos - BLOCK + bad} is not printable ASCII")
        if not blocks:
            first = block[:9]
            if index > 0 and first != b"XTENSION=":
                raise FitsReadError(f"{where}: corrupt file: the bytes at {start} after HDU "
                                    f"{index - 1} are not an HDU header")
        end = _end_card(block)
        if end >= 0:
            blocks.append(block[:end])
            return b"".join(blocks)
        blocks.append(block)


def _int_key(header, key: str, where: str, default=None, minimum=0) -> int:
    value = header.get(key, default)
    if value is None:
        raise FitsReadError(f"{where}: missing mandatory keyword {key}")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FitsReadError(f"{where}: invalid {key} = {value!r}")
    return value


def _data_size(header, index: int, where: str) -> int:
    """Bytes of the data unit of an HDU (without the padding to whole blocks)."""
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise FitsReadError(f"{where}: invalid or missing BITPIX = {bitpix!r}")
    naxis = _int_key(header, "NAXIS", where)
    if naxis > 999:
        raise FitsReadError(f"{where}: invalid NAXIS = {naxis}")
    if naxis == 0:
        return 0
    dims = [_int_key(header, f"NAXIS{i}", where) for i in range(1, naxis + 1)]
    groups = index == 0 and header.get("GROUPS") is True and dims[0] == 0
    extension = index > 0 or groups
    pcount = _int_key(header, "PCOUNT", where, default=None if extension else 0)
    gcount = _int_key(header, "GCOUNT", where, default=None if extension else 1)
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(dims[1:] if groups else dims))


def _matches(hdu, index: int, header) -> bool:
    if isinstance(hdu, int):
        return index == hdu
    name, ver = hdu
    names = {str(header.get(k, "")).strip().upper() for k in ("EXTNAME", "HDUNAME")}
    if index == 0 and "EXTNAME" not in header:
        names.add("PRIMARY")
    return name in names and (ver is None or header.get("EXTVER", 1) == ver)


def _normalise_hdu(hdu, path):
    """``hdu`` argument -> int index or (upper-case name, extver or None)."""
    if isinstance(hdu, (int, np.integer)) and not isinstance(hdu, bool):
        if hdu < 0:
            raise FitsReadError(f"{path}: HDU index must be >= 0, got {hdu}")
        return int(hdu)
    if isinstance(hdu, str):
        return (hdu.strip().upper(), None)
    if isinstance(hdu, tuple) and len(hdu) == 2 and isinstance(hdu[0], str):
        return (hdu[0].strip().upper(), int(hdu[1]))
    raise TypeError(f"{path}: hdu must be an index, a name or (name, extver), not {hdu!r}")


def _locate(src, path, hdu, key) -> tuple[int, dict]:
    """Walk the HDUs until ``key`` matches; return (index, header); ``src`` is at its data."""
    seen, note = [], ""
    index = 0
    while True:
        where = f"{path}, HDU {index}"
        raw = _read_raw_header(src, str(path), index)
        if raw is None:
            break
        header = _Keywords(raw, where)
        if _matches(key, index, header):
            return index, _parse_header(raw, where)
        seen.append(_hdu_label(index, header))
        if not _skip_data(src, path, index, header):
            note = f"; the file ends inside the padding of HDU {index}: truncated?"
            break
        index += 1
    found = ", ".join(seen) if seen else "none"
    raise FitsReadError(f"{path}: no HDU {hdu!r} (the file has: {found}){note}")


def _skip_data(src, path, index: int, header, consumed: int = 0) -> bool:
    """Skip the rest (after ``consumed`` bytes) of an HDU's data and padding.

    Returns False when the file ends inside the padding (nothing can follow); raises when it
    ends inside the data.
    """
    size = _data_size(header, index, f"{path}, HDU {index}")
    padded = -(-size // BLOCK) * BLOCK
    skipped = consumed + src.skip(padded - consumed)
    if skipped < size:
        raise FitsReadError(
            f"{path}: truncated: data of {_hdu_label(index, header)} needs {size} bytes, "
            f"the file has {skipped}")
    return skipped == padded


class _Open:
    """Context manager: the source of a FITS file (plain or gzip), or None for astropy's."""

    def __init__(self, path):
        self.path = path
        self.reason = ""

    def __enter__(self):
        require_regular_file(self.path)  # a FIFO would block open() for ever
        self._f = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed in __exit__)
        magic = self._f.read(4)
        self._f.seek(0)
        if magic.startswith(_GZIP_MAGIC):
            return _GzipSource(self._f)
        for m, what in _ASTROPY_MAGICS.items():
            if magic.startswith(m):
                self.reason = f"the file is {what}"
                return None
        return _PlainSource(self._f)

    def __exit__(self, *exc):
        self._f.close()


def _guarded(path, hdu, func):
    """Run ``func()``, turning low-level failures into FitsReadError naming file and HDU."""
    try:
        return func()
    except (FitsReadError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, EOFError, UnicodeDecodeError, ValueError, *_INFLATE_ERRORS) as exc:
        raise FitsReadError(f"{path}: HDU {hdu!r}: cannot read: {exc}") from exc


# --------------------------------------------------------------------------------------------
# binary table columns


def _columns(header: dict, where: str) -> dict:
    """Column layout of a BINTABLE header: {TTYPE: (index, code, repeat, byte offset)}."""
    nfields = _int_key(header, "TFIELDS", where)
    naxis1 = _int_key(header, "NAXIS1", where)
    layout, offset = {}, 0
    for i in range(1, nfields + 1):
        tform = header.get(f"TFORM{i}")
        match = _TFORM.fullmatch(tform) if isinstance(tform, str) else None
        if match is None:
            raise FitsReadError(f"{where}: invalid or missing TFORM{i} = {tform!r}")
        repeat = int(match.group(1)) if match.group(1) else 1
        code = match.group(2)
        width = (repeat + 7) // 8 if code == "X" else repeat * _WIDTH[code]
        name = str(header.get(f"TTYPE{i}", "")).strip()
        layout.setdefault(name, (i, code, repeat, offset))
        offset += width
    if offset != naxis1:
        raise FitsReadError(
            f"{where}: corrupt header: columns take {offset} bytes, NAXIS1 = {naxis1}")
    return layout


def _find_column(layout: dict, name: str, where: str):
    if name in layout:
        return layout[name]
    hits = [k for k in layout if k.upper() == name.upper()]
    if len(hits) == 1:
        return layout[hits[0]]
    names = ", ".join(k for k in layout if k)
    problem = "is ambiguous" if hits else "not found"
    raise FitsReadError(f"{where}: column {name!r} {problem} (columns: {names})")


def _convert(raw: np.ndarray, code: str, header: dict, i: int, where: str) -> np.ndarray:
    """Big-endian column view -> native array, scaled the way astropy scales it."""
    if code == "L":
        return raw == ord("T")
    scale = header.get(f"TSCAL{i}", 1)
    zero = header.get(f"TZERO{i}", 0)
    for key, value in ((f"TSCAL{i}", scale), (f"TZERO{i}", zero)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FitsReadError(f"{where}: invalid {key} = {value!r}")
    scaled, shifted = scale != 1, zero != 0
    if not (scaled or shifted):
        return raw.astype(raw.dtype.newbyteorder("="))
    if not scaled and code in _UINT and zero == _UINT[code][0]:
        unsigned = _UINT[code][1]
        out = raw.view(np.dtype(unsigned).newbyteorder(">")).astype(unsigned)
        out ^= unsigned(zero)
        return out
    out = raw.astype(np.float64)
    if scaled:
        out *= scale
    if shifted:
        out += zero
    return out


def _table_columns(src, path, index, header, columns):
    where = f"{path}, {_hdu_label(index, header)}"
    if str(header.get("XTENSION", "")).strip() != "BINTABLE":
        kind = header.get("XTENSION", "primary array") if index else "the primary array"
        raise FitsReadError(f"{where}: not a binary table ({kind})")
    if header.get("BITPIX") != 8 or header.get("NAXIS") != 2 or header.get("GCOUNT", 1) != 1:
        raise FitsReadError(f"{where}: corrupt BINTABLE header (BITPIX, NAXIS or GCOUNT)")
    layout = _columns(header, where)
    naxis1 = header["NAXIS1"]
    nrows = _int_key(header, "NAXIS2", where)
    picked = {}
    for name in columns:
        i, code, repeat, offset = _find_column(layout, name, where)
        if repeat != 1 or code not in _DTYPE:
            raise FitsReadError(
                f"{where}: column {name!r} has TFORM{i} = {header[f'TFORM{i}']!r}; only scalar "
                "columns of types L, B, I, J, K, E, D can be read")
        picked[name] = (i, code, offset)
    nbytes = naxis1 * nrows
    if picked:
        _check_inflation(src, nbytes, nrows, where)
    buf = src.read_scratch(nbytes) if picked else b""  # columns are copied out of it below
    if picked and len(buf) < nbytes:
        raise FitsReadError(
            f"{where}: truncated: the table needs {nbytes} bytes ({nrows} rows of {naxis1}), "
            f"the file has {len(buf)}")
    cols, units = {}, {}
    for name, (i, code, offset) in picked.items():
        dtype = np.dtype(_DTYPE[code])
        if nrows:
            raw = np.ndarray((nrows,), dtype, buffer=buf, offset=offset, strides=(naxis1,))
        else:
            raw = np.empty(0, dtype)
        cols[name] = _convert(raw, code, header, i, where)
        units[name] = str(header.get(f"TUNIT{i}") or "").strip()
    return cols, units


# --------------------------------------------------------------------------------------------
# astropy fallback


def _astropy_header(hdr) -> dict:
    out: dict = {}
    for card in hdr.cards:
        key = card.keyword.upper()
        if key in _COMMENTARY:
            out.setdefault(key, []).append(str(card.value))
        elif key and key not in out and key != "CONTINUE":
            value = card.value
            out[key] = value if isinstance(value, (bool, int, float, complex, str)) else None
    return out


def _with_astropy(path, hdu, key, columns, reason, index=None):
    """Header (and columns, units) of one HDU read by astropy.io.fits."""
    from astropy.io import fits

    where = f"{path}, HDU {hdu!r} (read with astropy because {reason})"
    try:
        with fits.open(path, memmap=False) as hdul:
            if index is None:
                index = next((i for i, h in enumerate(hdul)
                              if _matches(key, i, _astropy_header(h.header))), None)
                if index is None:
                    raise FitsReadError(f"{where}: no such HDU (the file has {len(hdul)} HDUs)")
            h = hdul[index]
            header = _astropy_header(h.header)
            if columns is None:
                return header, None, None
            names = h.columns.names if hasattr(h, "columns") else []
            layout = {n: n for n in names}
            cols, units = {}, {}
            for name in columns:
                actual = _find_column(layout, name, where)
                values = np.asarray(h.data[actual])
                if values.ndim != 1 or values.dtype.kind not in "biuf":
                    raise FitsReadError(f"{where}: column {name!r} is not a scalar number column")
                cols[name] = values.astype(values.dtype.newbyteorder("="), copy=True)
                units[name] = str(h.columns[actual].unit or "")
            return header, cols, units
    except FitsReadError:
        raise
    except Exception as exc:
        raise FitsReadError(f"{where}: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# public API


def read_header(path, hdu) -> dict:
    """Header keywords of one HDU as a plain dict.

    Only the headers (and the skipped data) of the HDUs up to the wanted one are read; a gzip
    file is decompressed until that header ends.

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file, plain or gzip-compressed (detected from its first bytes).
    hdu : int, str or (str, int)
        HDU index (0 is the primary HDU), or name matched case-insensitively against EXTNAME
        and HDUNAME (``"PRIMARY"`` names HDU 0), or (name, EXTVER); a name alone takes the
        first match, whatever its EXTVER.

    Returns
    -------
    dict
        Upper-case keyword -> value (bool, int, float, complex, str without trailing blanks, or
        None for an undefined value), in card order. ``COMMENT`` and ``HISTORY`` are lists of
        strings. The first of repeated keywords wins.

    Raises
    ------
    FitsReadError
        The file is not FITS, is corrupt or truncated, or has no such HDU.
    OSError
        The file does not exist or cannot be opened (FileNotFoundError, PermissionError, ...).
    """
    key = _normalise_hdu(hdu, path)

    def run():
        with (opened := _Open(path)) as src:
            if src is None:
                return _with_astropy(path, hdu, key, None, opened.reason)[0]
            index, header = _locate(src, path, hdu, key)
        if header.get("ZIMAGE") is True:
            reason = "it is a tile-compressed image"
            return _with_astropy(path, hdu, key, None, reason, index)[0]
        return header

    return _guarded(path, hdu, run)


def check_sizes(path, max_bytes: int | None = None) -> int | None:
    """Check that every HDU's declared data is in the file; return the total data bytes.

    The file is streamed once (a gzip file inflated in bounded memory, nothing kept), so a
    header declaring more rows than the file holds, or more than ``max_bytes`` of data in all,
    is refused before a reader such as astropy allocates what it declares. Files only astropy
    reads (bzip2, ...) are not checked: None.

    Raises
    ------
    FitsReadError
        Not FITS, corrupt, truncated (data declared but absent), or over ``max_bytes``.
    """
    def run():
        total = 0
        with (opened := _Open(path)) as src:
            if src is None:  # bzip2 and the like: astropy reads those, unchecked
                return None
            index = 0
            while (raw := _read_raw_header(src, str(path), index)) is not None:
                header = _Keywords(raw, f"{path}, HDU {index}")
                total += _data_size(header, index, f"{path}, HDU {index}")
                if max_bytes is not None and total > max_bytes:
                    raise FitsReadError(
                        f"{path}: {_hdu_label(index, header)} declares {total} bytes of data, "
                        f"more than the {max_bytes} allowed for this file: corrupt or hostile")
                if not _skip_data(src, path, index, header):
                    break
                index += 1
        return total

    return _guarded(path, None, run)


def read_columns(path, hdu, columns, *, header: bool = False):
    """Scalar columns of one binary-table HDU as native-endian numpy arrays.

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file, plain or gzip-compressed (detected from its first bytes).
    hdu : int, str or (str, int)
        The table HDU, as for :func:`read_header`.
    columns : str or sequence of str
        Column names (TTYPEn), matched case-insensitively when no column has the exact name.
        Columns must be scalar (repeat count 1) of type L (bool), B (uint8), I, J, K (int16,
        int32, int64), E or D (float32, float64).
    header : bool, optional
        Also return the HDU's header and the columns' units.

    Returns
    -------
    cols : dict[str, numpy.ndarray]
        1-D arrays keyed by the names as requested. A column with TSCALn/TZEROn is float64
        (raw * TSCALn + TZEROn), except TZEROn = 2**15, 2**31, 2**63 on I/J/K columns with no
        TSCALn, which give uint16/uint32/uint64, as astropy.io.fits does.
    header : dict
        Only when ``header`` is true: the HDU's header, as :func:`read_header` returns it.
    units : dict[str, str]
        Only when ``header`` is true: TUNITn of each requested column ("" when absent).

    Raises
    ------
    FitsReadError
        The file is corrupt or truncated, the HDU or a column is missing, a column is not
        scalar or not numeric, or the HDU is not a binary table.
    OSError
        The file does not exist or cannot be opened (FileNotFoundError, PermissionError, ...).

    Notes
    -----
    As with astropy.io.fits, TNULLn is not applied and a logical column's undefined bytes
    (0x00) read as False. Only the table's rows are read (no heap, no padding), in one read.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from astropy.io import fits
    >>> path = os.path.join(tempfile.mkdtemp(), "ev.fits.gz")
    >>> table = fits.BinTableHDU.from_columns(
    ...     [fits.Column("TIME", "D", unit="s", array=np.array([1.0, 2.5]))], name="EVENTS")
    >>> fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    >>> cols, header, units = read_columns(path, "events", ["time"], header=True)
    >>> cols["time"], header["NAXIS2"], units["time"]
    (array([1. , 2.5]), 2, 's')
    >>> read_header(path, 1)["EXTNAME"]
    'EVENTS'
    >>> import shutil; shutil.rmtree(os.path.dirname(path))
    """
    key = _normalise_hdu(hdu, path)
    names = [columns] if isinstance(columns, str) else list(columns)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{path}: column names must be strings, got {columns!r}")
    names = list(dict.fromkeys(names))

    def run():
        with (opened := _Open(path)) as src:
            if src is None:
                return _with_astropy(path, hdu, key, names, opened.reason)
            index, hdr = _locate(src, path, hdu, key)
            if str(hdr.get("XTENSION", "")).strip() == "TABLE":
                return _with_astropy(path, hdu, key, names, "it is an ASCII table", index)
            cols, units = _table_columns(src, path, index, hdr, names)
        return hdr, cols, units

    hdr, cols, units = _guarded(path, hdu, run)
    return (cols, hdr, units) if header else cols


def read_tables(path, tables: dict) -> dict:
    """Scalar columns of several binary-table HDUs of one file, read in one pass.

    A gzip file is inflated once, up to the end of the last wanted HDU (reading the EVENTS and
    the GTI of a DL3 file costs one decompression, not two).

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file, plain or gzip-compressed (detected from its first bytes).
    tables : dict
        HDU (as for :func:`read_header`) -> sequence of column names (as for
        :func:`read_columns`; may be empty to get the header only).

    Returns
    -------
    dict
        The keys of ``tables`` -> ``(cols, header, units)``, as :func:`read_columns` returns
        them with ``header=True``.

    Raises
    ------
    FitsReadError, OSError
        As :func:`read_columns`; a missing HDU is reported with the HDUs the file has.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from astropy.io import fits
    >>> path = os.path.join(tempfile.mkdtemp(), "two.fits")
    >>> ev = fits.BinTableHDU.from_columns([fits.Column("TIME", "D", array=[1.0, 2.0])], name="EVENTS")
    >>> gti = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=[0.0])], name="GTI")
    >>> fits.HDUList([fits.PrimaryHDU(), ev, gti]).writeto(path)
    >>> out = read_tables(path, {"EVENTS": ["TIME"], "GTI": ["START"]})
    >>> out["EVENTS"][0]["TIME"], out["GTI"][0]["START"], out["GTI"][1]["EXTNAME"]
    (array([1., 2.]), array([0.]), 'GTI')
    >>> import shutil; shutil.rmtree(os.path.dirname(path))
    """
    pending = {}
    for hdu, columns in tables.items():
        names = [columns] if isinstance(columns, str) else list(columns)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"{path}: column names must be strings, got {columns!r}")
        pending[hdu] = (_normalise_hdu(hdu, path), list(dict.fromkeys(names)))

    def run():
        out = {}
        with (opened := _Open(path)) as src:
            if src is None:
                return {h: _with_astropy(path, h, key, names, opened.reason)
                        for h, (key, names) in pending.items()}
            index, seen, note = 0, [], ""
            while len(out) < len(pending):
                where = f"{path}, HDU {index}"
                raw = _read_raw_header(src, str(path), index)
                if raw is None:
                    break
                header = _Keywords(raw, where)
                hits = [h for h, (key, _) in pending.items()
                        if h not in out and _matches(key, index, header)]
                seen.append(_hdu_label(index, header))
                start = src.pos
                if hits:
                    hdr = _parse_header(raw, where)
                    names = list(dict.fromkeys(n for h in hits for n in pending[h][1]))
                    if str(hdr.get("XTENSION", "")).strip() == "TABLE":
                        got = _with_astropy(path, hits[0], pending[hits[0]][0], names,
                                            "it is an ASCII table", index)
                    else:
                        cols, units = _table_columns(src, path, index, hdr, names)
                        got = (hdr, cols, units)
                    for h in hits:
                        wanted = pending[h][1]
                        out[h] = (got[0], {n: got[1][n] for n in wanted},
                                  {n: got[2][n] for n in wanted})
                if len(out) == len(pending):
                    break
                if not _skip_data(src, path, index, header, src.pos - start):
                    note = f"; the file ends inside the padding of HDU {index}: truncated?"
                    break
                index += 1
        missing = [repr(h) for h in pending if h not in out]
        if missing:
            found = ", ".join(seen) if seen else "none"
            raise FitsReadError(f"{path}: no HDU {', '.join(missing)} (the file has: {found}){note}")
        return {h: (out[h][1], out[h][0], out[h][2]) for h in pending}

    return _guarded(path, list(tables), run)


# --------------------------------------------------------------------------------------------
# whole tables of scalar columns (index tables)


def _scalar_layout(header: dict, where: str):
    """{name: (index, code, repeat, offset)} of the columns :func:`read_whole_table` returns, or
    None when the table needs astropy (TDIMn, types X C M P Q, zero-width or scaled strings,
    names that differ only in case)."""
    layout = _columns(header, where)
    if len({name.upper() for name in layout}) != len(layout) or len(layout) != _int_key(
            header, "TFIELDS", where):
        return None
    keep = {}
    for name, (i, code, repeat, offset) in layout.items():
        if f"TDIM{i}" in header:
            return None
        if code == "A":
            if repeat == 0 or f"TSCAL{i}" in header or f"TZERO{i}" in header:
                return None
            keep[name] = (i, code, repeat, offset)
        elif code in _DTYPE and repeat >= 1:
            if repeat == 1:
                keep[name] = (i, code, repeat, offset)
        else:
            return None
    return keep


def _strings(raw: np.ndarray, name: str = "") -> np.ndarray:
    """Fixed-width byte strings (ASCII or UTF-8) of column ``name`` -> str array without
    leading or trailing blanks; ValueError naming the column and first row that is not text."""
    if raw.dtype.kind == "U":
        return np.char.strip(raw).astype(object).astype(str)
    try:
        text = np.char.decode(raw, "utf-8")
    except UnicodeDecodeError:
        for row, value in enumerate(raw):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"column {name} row {row}: {value!r} is not text (ASCII or "
                                 "UTF-8)") from None
        raise
    return np.char.strip(text).astype(object).astype(str)


def _table_with_astropy(path, hdu, where):
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        h = hdul[hdu]
        if h.data is None:
            raise FitsReadError(f"{where}: no table data")
        cols, units = {}, {}
        for col in h.columns:
            arr = np.asarray(h.data[col.name])
            if arr.ndim != 1:
                continue
            if arr.dtype.kind in "SU":
                arr = _strings(arr, col.name)
            else:
                arr = arr.astype(arr.dtype.newbyteorder("="))
            cols[col.name] = arr
            units[col.name] = (col.unit or "").strip()
        return _astropy_header(h.header), cols, units


def read_whole_table(path, hdu):
    """Every scalar column of one binary-table HDU: numbers and strings (small tables).

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file, plain or gzip-compressed.
    hdu : int, str or (str, int)
        The table HDU, as for :func:`read_header`.

    Returns
    -------
    cols : dict[str, numpy.ndarray]
        Column name (TTYPEn) -> 1-D array: numbers as :func:`read_columns` returns them,
        character columns as ``str`` arrays with leading and trailing blanks removed. Columns
        with more than one value per row are left out.
    header : dict
        The HDU's header, as :func:`read_header` returns it.
    units : dict[str, str]
        TUNITn of each returned column ("" when absent).

    Raises
    ------
    FitsReadError, OSError
        As :func:`read_columns`.

    Tables with multi-dimensional (TDIMn), complex, bit, variable-length or scaled character
    columns, and ASCII tables, are read with astropy.io.fits, with the same result types.

    >>> import numpy as np, tempfile, os
    >>> from astropy.io import fits
    >>> path = os.path.join(tempfile.mkdtemp(), "index.fits")
    >>> t = fits.BinTableHDU.from_columns([fits.Column("OBS_ID", "K", array=[7, 8]),
    ...     fits.Column("HDU_TYPE", "6A", array=["events", "gti"]),
    ...     fits.Column("V", "2E", array=np.zeros((2, 2)))], name="HDU_INDEX")
    >>> fits.HDUList([fits.PrimaryHDU(), t]).writeto(path)
    >>> cols, header, units = read_whole_table(path, "HDU_INDEX")
    >>> cols["OBS_ID"], cols["HDU_TYPE"], sorted(cols), header["EXTNAME"]
    (array([7, 8]), array(['events', 'gti'], dtype='<U6'), ['HDU_TYPE', 'OBS_ID'], 'HDU_INDEX')
    >>> import shutil; shutil.rmtree(os.path.dirname(path))
    """
    key = _normalise_hdu(hdu, path)

    def run():
        with (opened := _Open(path)) as src:
            if src is None:
                return _table_with_astropy(path, hdu, f"{path}, HDU {hdu!r}")
            index, header = _locate(src, path, hdu, key)
            where = f"{path}, {_hdu_label(index, header)}"
            if str(header.get("XTENSION", "")).strip() != "BINTABLE":
                return _table_with_astropy(path, index, where)
            if header.get("BITPIX") != 8 or header.get("NAXIS") != 2 or header.get(
                    "GCOUNT", 1) != 1:
                raise FitsReadError(f"{where}: corrupt BINTABLE header (BITPIX, NAXIS or GCOUNT)")
            layout = _scalar_layout(header, where)
            if layout is None:
                return _table_with_astropy(path, index, where)
            naxis1 = header["NAXIS1"]
            nrows = _int_key(header, "NAXIS2", where)
            nbytes = naxis1 * nrows
            _check_inflation(src, nbytes, nrows, where)
            buf = bytes(src.read_scratch(nbytes)) if nbytes else b""
            if len(buf) < nbytes:
                raise FitsReadError(
                    f"{where}: truncated: the table needs {nbytes} bytes ({nrows} rows of "
                    f"{naxis1}), the file has {len(buf)}")
            cols, units = {}, {}
            for name, (i, code, repeat, offset) in layout.items():
                dtype = np.dtype(f"S{repeat}" if code == "A" else _DTYPE[code])
                raw = (np.ndarray((nrows,), dtype, buffer=buf, offset=offset, strides=(naxis1,))
                       if nrows else np.empty(0, dtype))
                cols[name] = (_strings(raw, name) if code == "A" else
                              _convert(raw, code, header, i, where))
                units[name] = str(header.get(f"TUNIT{i}") or "").strip()
        return header, cols, units

    header, cols, units = _guarded(path, hdu, run)
    return cols, header, units
