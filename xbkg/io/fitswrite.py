"""Fast, deterministic FITS writing: binary-table bytes without astropy's HDU machinery.

astropy's ``BinTableHDU`` costs Python bookkeeping and byte-swaps array columns with a Python
loop (docs/performance.rst); these helpers write the same bytes directly. Headers contain no
timestamps and gzip streams carry neither mtime nor file name, so the same content always gives
the same file.
"""

from __future__ import annotations

import gzip
import re

import numpy as np

__all__ = ["FITS_BLOCK", "card", "bintable_bytes", "hdu_bytes", "primary_bytes", "file_bytes",
           "gzip_bytes", "utf8_strings", "write_fits", "fast_card", "header_block",
           "primary_block", "table_hdu_bytes", "image_hdu_bytes", "table_form"]

FITS_BLOCK = 2880
_DTYPES = {"K": ">i8", "J": ">i4", "I": ">i2", "D": ">f8", "E": ">f4"}


def card(key, value, comment=None) -> str:
    """One 80-character header card, formatted by astropy."""
    from astropy.io.fits import Card

    return Card(key, value, comment).image


def _padded(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % FITS_BLOCK)


def bintable_bytes(columns, cards) -> bytes:
    """A binary-table HDU (header + big-endian data) from ``[(name, format, unit, array)]``.

    Formats: ``K, J, I, D, E`` scalars or ``nA`` strings; ``cards`` are ``(key, value, comment)``
    tuples added after the structural keywords.
    """
    dtype = [(name, _DTYPES.get(fmt, f"S{fmt[:-1]}")) for name, fmt, _, _ in columns]
    n_rows = len(columns[0][3])
    table = np.empty(n_rows, dtype=dtype)
    for name, fmt, _, values in columns:
        table[name] = np.char.encode(np.asarray(values, dtype=str), "ascii") if fmt.endswith("A") \
            else values
    head = [card("XTENSION", "BINTABLE", "binary table extension"), card("BITPIX", 8),
            card("NAXIS", 2), card("NAXIS1", table.dtype.itemsize), card("NAXIS2", n_rows),
            card("PCOUNT", 0), card("GCOUNT", 1), card("TFIELDS", len(columns))]
    for i, (name, fmt, unit, _) in enumerate(columns, start=1):
        head += [card(f"TTYPE{i}", name), card(f"TFORM{i}", fmt)]
        if unit:
            head.append(card(f"TUNIT{i}", unit))
    head += [card(*c) for c in cards] + ["END".ljust(80)]
    return _padded("".join(head).encode("ascii"), b" ") + _padded(table.tobytes(), b"\0")


def hdu_bytes(hdu) -> bytes:
    """FITS bytes of one astropy HDU (header block, big-endian data, zero padding).

    For headers and plain data only (no heap, no scaling).
    """
    data = b"" if hdu.data is None else np.asarray(hdu.data)
    if len(data):
        data = data.astype(data.dtype.newbyteorder(">")).tobytes()
    return hdu.header.tostring().encode("ascii") + data + b"\0" * (-len(data) % FITS_BLOCK)


def primary_bytes(cards=()) -> bytes:
    """An empty primary HDU with optional extra ``(key, value, comment)`` cards."""
    head = [card("SIMPLE", True), card("BITPIX", 8), card("NAXIS", 0), card("EXTEND", True)]
    head += [card(*c) for c in cards] + ["END".ljust(80)]
    return _padded("".join(head).encode("ascii"), b" ")


def gzip_bytes(content: bytes, level: int = 6) -> bytes:
    """Deterministic gzip: no mtime, no file name."""
    return gzip.compress(content, compresslevel=level, mtime=0)


def file_bytes(tables, compress, level: int = 1) -> bytes:
    """A FITS file: empty primary HDU + HDU bytes; gzipped deterministically when asked.

    ``compress``: False, True (gzip at ``level``) or a gzip level 1-9 (which wins).
    """
    data = primary_bytes() + b"".join(tables)
    if compress is not True and compress is not False:
        if compress not in range(1, 10):
            raise ValueError(f"compress must be True, False or a gzip level 1-9, got {compress!r}")
        level = int(compress)
    return gzip_bytes(data, level) if compress else data


def utf8_strings(table):
    """``table``, with its text columns that are not pure ASCII as UTF-8 bytes (FITS holds
    bytes; astropy refuses to encode non-ASCII text, and reads UTF-8 back as text)."""
    out = table
    for name in table.colnames:
        column = np.asarray(table[name])
        if column.dtype.kind == "U" and not all(str(v).isascii() for v in column.ravel()):
            if out is table:
                out = table.copy(copy_data=False)
            out[name] = np.char.encode(column, "utf-8")
    return out


def write_fits(content, path) -> None:
    """Write an astropy ``Table`` or a :class:`~xbkg.io.plaintable.PlainTable` (after an
    empty primary HDU) or an ``HDUList`` to ``path``, gzipped deterministically when the name
    ends in ``.gz`` (astropy stamps the time)."""
    import io

    if hasattr(content, "fits_bytes"):
        data = content.fits_bytes()
    else:
        from astropy.io import fits

        if not isinstance(content, fits.HDUList):
            content = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(utf8_strings(content))])
        buffer = io.BytesIO()
        content.writeto(buffer)
        data = buffer.getvalue()
    with open(path, "wb") as fh:
        fh.write(gzip_bytes(data) if str(path).endswith(".gz") else data)


# --------------------------------------------------------------------------------------------
# HDUs as astropy writes them, without astropy (its HDU classes cost milliseconds per HDU and
# constructing a BinTableHDU with data imports astropy.table): used where the cards are simple


_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")


def fast_card(key: str, value, comment: str = "") -> str | None:
    """The 80-character card astropy writes for ``header[key] = (value, comment)`` (or a
    commentary card), for short keywords and values; None for anything else (long or
    non-ASCII text, HIERARCH keywords, other value types): format those with :func:`card`.

    >>> fast_card("EXTNAME", "COUNTS", "extension name") == card("EXTNAME", "COUNTS", "extension name")
    True
    """
    if not _KEYWORD.fullmatch(key) or key == "END":  # END ends a header: astropy refuses it
        return None
    if key in ("COMMENT", "HISTORY"):
        text = str(value)
        return f"{key:8}{text}".ljust(80) if len(text) <= 72 and _printable(text) else None
    if isinstance(value, str):
        if not _printable(value):
            return None
        quoted = "'" + f"{value.replace(chr(39), chr(39) * 2):8}" + "'"  # chr(39): '
        value = "''" if value == "" else f"{quoted:20}"
    elif isinstance(value, (bool, np.bool_)):
        value = f"{repr(bool(value))[0]:>20}"
    elif isinstance(value, (int, np.integer)):
        value = f"{int(value):>20d}"
    elif isinstance(value, float) and np.isfinite(value):  # float or np.float64
        text = str(float(value)).replace("e", "E")
        if len(text) > 20:
            return None
        value = f"{text:>20}"
    else:
        return None
    image = f"{key:8}= {value}" + (f" / {comment}" if comment else "")
    return image.ljust(80) if len(image) <= 80 else None


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def header_block(cards: list) -> bytes:
    """Header bytes: the card images, ``END``, blank-padded to a FITS block."""
    return _padded(("".join(cards) + "END".ljust(80)).encode("ascii"), b" ")


_PRIMARY_CARDS = [fast_card("SIMPLE", True, "conforms to FITS standard"),
                  fast_card("BITPIX", 8, "array data type"),
                  fast_card("NAXIS", 0, "number of array dimensions"), fast_card("EXTEND", True)]


def primary_block(cards=()) -> bytes | None:
    """The empty primary HDU ``fits.PrimaryHDU(header=fits.Header(cards))`` writes, cards
    ``(key, value[, comment])``; None when a card is not a :func:`fast_card` one."""
    extra = [fast_card(*c) for c in cards]
    return None if None in extra else header_block(_PRIMARY_CARDS + extra)


#: Binary-table formats of the column types written directly.
_TFORMS = {"i8": "K", "i4": "J", "i2": "I", "f8": "D", "f4": "E"}


def table_form(values: np.ndarray):
    """``(TFORM, big-endian values)`` of a column as astropy writes it (``values`` of shape
    ``(rows,)`` or ``(rows, n)``), or None for other types. Text must be ASCII."""
    kind, size = values.dtype.kind, values.dtype.itemsize
    repeat = "" if values.ndim == 1 else str(int(np.prod(values.shape[1:])))
    if kind == "U" and size and values.ndim == 1:
        if not all(str(v).isascii() for v in values):
            return None
        return f"{size // 4}A", np.char.encode(values, "ascii").astype(f"S{size // 4}")
    if kind == "S" and size and values.ndim == 1:
        return f"{size}A", values
    if kind == "b" and values.ndim == 1:
        return "L", np.where(values, b"T", b"F").astype("S1")
    if f"{kind}{size}" in _TFORMS:
        return repeat + _TFORMS[f"{kind}{size}"], values.astype(values.dtype.newbyteorder(">"))
    return None


def table_hdu_bytes(columns, cards=()) -> bytes | None:
    """A BINTABLE HDU as ``fits.BinTableHDU.from_columns`` and astropy's writer make it.

    ``columns``: ``(name, values, unit, tdim)`` (``values`` of shape ``(rows,)`` or
    ``(rows, n)``, see :func:`table_form`; unit and tdim strings or None), whose keywords come
    as astropy orders them (TTYPE, TFORM, TUNIT, TDIM); then ``cards`` ``(key, value[,
    comment])``. None when a column or card is not one this writes (then use astropy).
    """
    forms, head = [], []
    for i, (name, values, unit, tdim) in enumerate(columns, start=1):
        form = table_form(np.asarray(values)) if _printable(str(name)) else None
        if form is None:
            return None
        forms.append((name, form[1]))
        head += [fast_card(f"TTYPE{i}", name), fast_card(f"TFORM{i}", form[0])]
        head += [fast_card(f"TUNIT{i}", unit)] if unit is not None else []
        head += [fast_card(f"TDIM{i}", tdim)] if tdim is not None else []
    head += [fast_card(*c) for c in cards]
    if None in head or not forms:
        return None
    rows = len(forms[0][1])
    data = np.empty(rows, dtype=[(name, v.dtype, v.shape[1:]) for name, v in forms])
    for name, values in forms:
        data[name] = values
    start = [fast_card("XTENSION", "BINTABLE", "binary table extension"),
             fast_card("BITPIX", 8, "array data type"),
             fast_card("NAXIS", 2, "number of array dimensions"),
             fast_card("NAXIS1", data.dtype.itemsize, "length of dimension 1"),
             fast_card("NAXIS2", rows, "length of dimension 2"),
             fast_card("PCOUNT", 0, "number of group parameters"),
             fast_card("GCOUNT", 1, "number of groups"),
             fast_card("TFIELDS", len(forms), "number of table fields")]
    return header_block(start + head) + _padded(data.tobytes(), b"\0")


def image_hdu_bytes(values: np.ndarray, cards=()) -> bytes | None:
    """An IMAGE extension of float64 ``values`` as ``fits.ImageHDU(values, header=fits.Header(
    cards))`` and astropy's writer make it; None when a card is not a :func:`fast_card` one."""
    if values.dtype.kind != "f" or values.dtype.itemsize != 8 or not values.ndim:
        return None
    head = [fast_card("XTENSION", "IMAGE", "Image extension"),
            fast_card("BITPIX", -64, "array data type"),
            fast_card("NAXIS", values.ndim, "number of array dimensions")]
    head += [fast_card(f"NAXIS{i}", n) for i, n in enumerate(values.shape[::-1], start=1)]
    head += [fast_card("PCOUNT", 0, "number of parameters"),
             fast_card("GCOUNT", 1, "number of groups")]
    head += [fast_card(*c) for c in cards]
    if None in head:
        return None
    return header_block(head) + _padded(values.astype(">f8").tobytes(), b"\0")
