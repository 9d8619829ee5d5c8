"""Small tables as numpy columns, written byte for byte as astropy.table writes them.

:class:`PlainTable` holds columns, units and metadata; :meth:`PlainTable.to_hdu` and
:meth:`PlainTable.to_ecsv` give what astropy.table would write. :func:`read_fits_table` returns
None (and :meth:`PlainTable.to_ecsv` raises :class:`NotPlainError`) for tables it could not copy
exactly: callers then use astropy.table (docs/architecture.rst).
"""

from __future__ import annotations

import csv
import functools
import io
import re
import warnings

import numpy as np

from xbkg.io import fitstable as ft
from xbkg.io.fitstable import _CARD, _COMMENTARY, _DTYPE, _card_value
from xbkg.io.fitswrite import primary_block, table_hdu_bytes, utf8_strings

__all__ = ["PlainTable", "NotPlainError", "REMOVE_KEYWORDS", "KEYWORD_NAMES", "SIMPLE_UNITS",
           "read_fits_table", "vstack"]

#: Header keywords ``Table.read`` drops (astropy.io.fits.connect.REMOVE_KEYWORDS).
REMOVE_KEYWORDS = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT",
                   "TFIELDS", "THEAP")
#: astropy's marker of columns serialised into comments (mixin columns).
_SERIALIZED = "--BEGIN-ASTROPY-SERIALIZED-COLUMNS--"


class NotPlainError(ValueError):
    """The table needs astropy.table to be written exactly as before."""


#: Column keyword prefixes (astropy.io.fits.column.KEYWORD_NAMES).
KEYWORD_NAMES = ("TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO", "TDISP", "TBCOL", "TDIM",
                 "TCTYP", "TCUNI", "TCRPX", "TCRVL", "TCDLT", "TRPOS")
_COLUMN_KEYWORD = re.compile("(" + "|".join(KEYWORD_NAMES) + ")[0-9]+")


def _column_keyword(key: str) -> bool:
    """A column keyword (TTYPEn, TFORMn, ...: astropy.io.fits.connect.is_column_keyword)."""
    return _COLUMN_KEYWORD.match(key) is not None


class PlainTable:
    """Named 1-D numpy columns (in order), their units (strings) and ordered metadata.

    Supports what the index and product writers do with an astropy Table: ``t[name]``,
    ``t[name] = values`` (a replaced column loses its unit, as in a Table), ``t[mask]``,
    ``t[[names]]``, :meth:`sort`, :meth:`copy`, ``meta``, ``colnames`` and ``len``.

    >>> import numpy as np
    >>> t = PlainTable({"OBS_ID": np.array([2, 1]), "ZEN": np.array([10.5, 20.0])},
    ...                units={"ZEN": "deg"}, meta={"note": "x"})
    >>> t.sort(["OBS_ID"])
    >>> t["OBS_ID"].tolist(), len(t), t.colnames
    ([1, 2], 2, ['OBS_ID', 'ZEN'])
    >>> print(t.to_ecsv(), end="")
    # %ECSV 1.0
    # ---
    # datatype:
    # - {name: OBS_ID, datatype: int64}
    # - {name: ZEN, unit: deg, datatype: float64}
    # meta: !!omap
    # - {note: x}
    # schema: astropy-2.0
    OBS_ID ZEN
    1 20.0
    2 10.5
    """

    def __init__(self, columns=None, *, units=None, meta=None):
        self.columns = {str(name): np.asarray(values) for name, values in (columns or {}).items()}
        self.units = {k: v for k, v in (units or {}).items() if v is not None}
        self.meta = dict(meta or {})

    @property
    def colnames(self) -> list:
        return list(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.columns[key]
        if isinstance(key, (list, tuple)) and all(isinstance(k, str) for k in key):
            return PlainTable({k: self.columns[k] for k in key},
                              units={k: self.units.get(k) for k in key}, meta=self.meta)
        return PlainTable({k: v[key] for k, v in self.columns.items()}, units=self.units,
                          meta=self.meta)

    def __setitem__(self, name: str, values) -> None:
        self.columns[name] = np.asarray(values)
        self.units.pop(name, None)

    def copy(self, copy_data: bool = True) -> PlainTable:
        cols = {k: (v.copy() if copy_data else v) for k, v in self.columns.items()}
        return PlainTable(cols, units=self.units, meta=self.meta)

    def sort(self, keys) -> None:
        """Sort the rows in place by ``keys`` (a list of names), as ``Table.sort`` does."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        if len(keys) > 1:
            data = np.empty(len(self), dtype=[(k, self.columns[k].dtype) for k in keys])
            for k in keys:
                data[k] = self.columns[k]
            order = np.argsort(data, order=keys)
        else:
            order = np.argsort(self.columns[keys[0]])
        self.columns = {k: v[order] for k, v in self.columns.items()}

    def to_hdu(self):
        """The ``BinTableHDU`` ``fits.table_to_hdu(utf8_strings(table))`` makes of the
        equivalent astropy Table."""
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyUserWarning

        table = utf8_strings(self)
        array = np.empty(len(table), dtype=[(k, v.dtype) for k, v in table.columns.items()])
        for name, values in table.columns.items():
            array[name] = values
        hdu = fits.BinTableHDU.from_columns(array, character_as_bytes=False)
        for col in hdu.columns:
            if col.name in self.units:
                col.unit = _unit_string(self.units[col.name], "fits")
        for key, value in self.meta.items():
            if _column_keyword(key.upper()) or key.upper() in REMOVE_KEYWORDS:
                warnings.warn(f"Meta-data keyword {key} will be ignored since it conflicts "
                              "with a FITS reserved keyword", AstropyUserWarning)
                continue
            key = "comment" if key == "comments" else key
            try:
                if isinstance(value, list):
                    for item in value:
                        hdu.header.append((key, item))
                else:
                    hdu.header[key] = value
            except ValueError:
                warnings.warn(f"Attribute `{key}` of type {type(value)} cannot be added to "
                              "FITS Header - skipping", AstropyUserWarning)
        return hdu

    def fits_bytes(self) -> bytes:
        """The FITS file (empty primary HDU, then this table) that
        :func:`xbkg.io.fitswrite.write_fits` writes for the equivalent astropy Table, before
        compression. Written directly when every card and column is a simple one (the usual
        case: far cheaper than through astropy's HDU classes), else through
        :meth:`to_hdu`."""
        direct = _table_bytes(utf8_strings(self))
        if direct is not None:
            return primary_block() + direct
        from astropy.io import fits

        out = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), self.to_hdu()]).writeto(out)
        return out.getvalue()

    def to_ecsv(self) -> str:
        """The text ``Table.write(path, format="ascii.ecsv")`` writes for this table.

        For int64, float64 and text columns with simple names, and string metadata; else
        :class:`NotPlainError`.
        """
        names = self.colnames
        datatypes = [_ecsv_datatype(self.columns[n]) for n in names]
        if not names or any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names):
            raise NotPlainError("ECSV: column names need quoting")
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in self.meta.items()):
            raise NotPlainError("ECSV: metadata other than text")
        units = {n: _unit_string(self.units[n], "generic") for n in names if n in self.units}
        lines = ["%ECSV 1.0", "---"] + _ecsv_yaml(names, datatypes, units, self.meta)
        lines = ["# " + line for line in lines]
        lines.append(_csv_row(names))
        columns = [_ecsv_values(self.columns[n]) for n in names]
        lines += [_csv_row(list(row)) for row in zip(*columns)]
        return "\n".join(lines) + "\n"

    def to_astropy(self):
        """The equivalent :class:`astropy.table.Table`."""
        from astropy.table import Table

        table = Table(self.columns, meta=self.meta)
        for name, unit in self.units.items():
            table[name].unit = unit
        return table

    def write_ecsv(self, path) -> None:
        """Write :meth:`to_ecsv` to ``path`` (as astropy opens it: text mode, no newline
        translation)."""
        text = self.to_ecsv()
        with open(path, "w", newline="") as fh:
            fh.write(text)


def vstack(tables: list, metadata_conflicts: str = "silent") -> PlainTable:
    """Rows of ``tables`` (same columns) one after the other; units and metadata of the
    first table (callers replace the metadata; ``metadata_conflicts`` as astropy's is
    accepted and ignored)."""
    first = tables[0]
    cols = {k: np.concatenate([t.columns[k] for t in tables]) for k in first.colnames}
    return PlainTable(cols, units=first.units, meta=first.meta)


def _table_bytes(table: PlainTable) -> bytes | None:
    """The BINTABLE HDU ``fits.table_to_hdu`` makes of the equivalent Table, written
    directly (:func:`~xbkg.io.fitswrite.table_hdu_bytes`); None when a column or card is not
    one that writes."""
    columns = [(name, values, _unit_string(table.units[name], "fits") if name in table.units else None,
                None) for name, values in table.columns.items()]
    if any(v.ndim != 1 for _, v, _, _ in columns) or len(set(table.meta)) != len(table.meta):
        return None
    cards = []
    for key, value in table.meta.items():
        if _column_keyword(key.upper()) or key.upper() in REMOVE_KEYWORDS:
            return None
        key = "COMMENT" if key == "comments" else key
        cards += [(key, item) for item in (value if isinstance(value, list) else [value])]
    return table_hdu_bytes(columns, cards)


#: Units whose FITS and generic strings astropy writes as they are read (a test checks it):
#: handled without importing astropy.units.
SIMPLE_UNITS = frozenset(("", "deg", "rad", "arcmin", "arcsec", "sr", "s", "min", "h", "d",
                          "Hz", "eV", "keV", "MeV", "GeV", "TeV", "m", "cm", "km", "m2", "K"))


@functools.lru_cache(maxsize=128)
def _unit_string(unit: str, fmt: str) -> str:
    """The string astropy writes for a unit read as ``unit``: TUNIT (``fmt="fits"``) or the
    generic form (``fmt="generic"``); raises on a unit it cannot parse."""
    if unit in SIMPLE_UNITS:
        return unit
    import astropy.units as u

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if fmt == "fits":
            return u.Unit(unit, format="fits").to_string(format="fits")
        return str(u.Unit(unit))


def _ecsv_datatype(values: np.ndarray) -> str:
    if values.ndim != 1:
        raise NotPlainError("ECSV: multi-dimensional column")
    if values.dtype.kind == "U":
        return "string"
    if values.dtype in (np.dtype("int64"), np.dtype("float64")):
        return values.dtype.name
    raise NotPlainError(f"ECSV: column type {values.dtype}")


def _ecsv_values(values: np.ndarray) -> list:
    out = [str(v).strip(" \t") for v in values]
    if any("\n" in v or "\r" in v for v in out):
        raise NotPlainError("ECSV: line break in a value")
    return out


def _csv_row(values: list) -> str:
    """One row as astropy's ECSV writer joins it (space-delimited, minimal quoting, empty
    values as ``""``)."""
    sentinel = "\0empty\0"
    values = [sentinel if v == "" else v for v in values]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=" ", quotechar='"', quoting=csv.QUOTE_MINIMAL,
               doublequote=True, escapechar=None).writerow(values)
    return buffer.getvalue().replace(sentinel, '""').rstrip("\r\n")


def _ecsv_yaml(names: list, datatypes: list, units: dict, meta: dict) -> list:
    """The YAML header lines astropy writes (its dumper's node layout, emitted by PyYAML)."""
    import yaml

    def text(value):
        return yaml.ScalarNode("tag:yaml.org,2002:str", value)

    def flow(pairs):
        return yaml.MappingNode("tag:yaml.org,2002:map", [(text(k), text(v)) for k, v in pairs],
                                flow_style=True)

    cols = [flow([("name", n)] + ([("unit", units[n])] if n in units else [])
                 + [("datatype", d)]) for n, d in zip(names, datatypes)]
    items = [(text("datatype"), yaml.SequenceNode("tag:yaml.org,2002:seq", cols,
                                                  flow_style=False))]
    if meta:
        pairs = [flow([(k, v)]) for k, v in meta.items()]
        items.append((text("meta"), yaml.SequenceNode("tag:yaml.org,2002:omap", pairs,
                                                      flow_style=False)))
    items.append((text("schema"), text("astropy-2.0")))
    root = yaml.MappingNode("tag:yaml.org,2002:map", items, flow_style=False)
    return yaml.serialize(root, Dumper=yaml.SafeDumper, width=130).splitlines()


def _plain_column(col, values):
    """A column as ``Table.read`` holds it (numpy), or None when it must stay with astropy."""
    if (col.null is not None or col.disp is not None or col.dim is not None
            or col.bscale is not None or col.bzero is not None or values.ndim != 1
            or values.dtype.kind not in "iufSb" or values.dtype.itemsize == 0):
        return None
    if values.dtype.kind == "S":
        return np.strings.rstrip(values)
    if values.dtype.kind == "f":  # NaN is masked on reading and written back as NaN
        values = np.array(values)
        values[np.isnan(values)] = np.nan
    return np.array(values)


def read_fits_table(path, hdu: int = 1) -> PlainTable | None:
    """HDU ``hdu`` of a FITS file as ``Table.read(path, hdu=hdu)`` reads it, or None when the
    table could not be written back byte for byte as astropy.table would (module docstring).

    Plain binary tables of scalar columns with simple header cards are read by xbkg's own
    FITS reader (:mod:`xbkg.io.fitstable`, no astropy import); others with astropy.io.fits.
    """
    direct = _read_direct(path, hdu)
    if direct is not None:
        return direct
    from astropy.io import fits

    with fits.open(path, memmap=False, character_as_bytes=True) as hdul:
        if hdu >= len(hdul) or not isinstance(hdul[hdu], fits.BinTableHDU):
            return None
        table = hdul[hdu]
        if table.data is None:
            return None
        cols, units = {}, {}
        for col in table.columns:
            values = _plain_column(col, table.data[col.name])
            if values is None:
                return None
            cols[col.name] = values
            if col.unit is not None:
                try:
                    units[col.name] = _unit_string(col.unit, "fits")
                except (ValueError, Warning):
                    return None
        meta = _header_meta((key, value) for key, value, _ in table.header.cards)
    if meta is None:
        return None
    return PlainTable(cols, units=units, meta=meta)


def _header_meta(cards) -> dict | None:
    """Table metadata from ``(keyword, value)`` header cards, as ``Table.read`` makes it
    (None for serialised astropy columns)."""
    meta = {}
    for key, value in cards:
        if key in ("COMMENT", "HISTORY"):
            key = "comments" if key == "COMMENT" else key
            if key == "comments" and _SERIALIZED in str(value):
                return None
            meta.setdefault(key, []).append(value)
        elif key in meta:
            if isinstance(meta[key], list):
                meta[key].append(value)
            else:
                meta[key] = [meta[key], value]
        elif _column_keyword(key) or key in REMOVE_KEYWORDS:
            pass
        else:
            meta[key] = value
    return meta


#: Header keywords that make :func:`_read_direct` leave a table to astropy.
_DECLINED = re.compile(r"(TNULL|TSCAL|TZERO|TDISP|TDIM|THEAP|TBCOL)[0-9]*|CONTINUE|HIERARCH|")


def _header_cards(raw: bytes, where: str) -> list | None:
    """``(keyword, value)`` of every card before END, values as astropy parses them; None for
    cards astropy would treat specially (long strings, HIERARCH, blank or odd keywords,
    undefined values)."""
    text = raw.decode("ascii")
    cards = []
    for start in range(0, len(text), 80):
        key, eq, value, rest = _CARD.match(text[start:start + 80] + "\n").groups()
        key = key.rstrip()
        if _DECLINED.fullmatch(key) or not re.fullmatch(r"[A-Z0-9_-]{1,8}", key):
            return None
        if key in _COMMENTARY:
            if eq is not None:
                return None
            cards.append((key, rest.rstrip()))
            continue
        if not eq:
            return None
        value = _card_value(value, rest, where, key)
        if value is None or isinstance(value, complex) or (
                isinstance(value, str) and value.endswith("&")):
            return None
        cards.append((key, value))
    return cards


def _direct_column(raw: bytes, rows: int, width: int, code: str, repeat: int, offset: int):
    """A scalar or text column as ``Table.read`` gives it, from the table's bytes."""
    dtype = np.dtype(f"S{repeat}" if code == "A" else _DTYPE[code])
    values = np.ndarray((rows,), dtype, buffer=raw, offset=offset, strides=(width,)) \
        if rows else np.empty(0, dtype)
    if code == "A":
        return np.strings.rstrip(values)
    if code == "L":
        return values == ord("T")
    values = np.array(values)
    if code in "ED":
        values[np.isnan(values)] = np.nan
    return values


def _read_direct(path, hdu: int) -> PlainTable | None:
    """:func:`read_fits_table` without astropy, or None (then astropy reads it)."""
    def run():
        with ft._Open(path) as src:
            if src is None or not isinstance(hdu, int):
                return None
            for index in range(hdu + 1):
                where = f"{path}, HDU {index}"
                raw = ft._read_raw_header(src, str(path), index)
                if raw is None:
                    return None
                if index < hdu and not ft._skip_data(src, path, index, ft._Keywords(raw, where)):
                    return None
            header = ft._parse_header(raw, where)
            if (str(header.get("XTENSION", "")).rstrip() != "BINTABLE" or header.get("BITPIX") != 8
                    or header.get("NAXIS") != 2 or header.get("PCOUNT", 0) != 0
                    or header.get("GCOUNT", 1) != 1):
                return None
            cards = _header_cards(raw, where)
            layout = ft._columns(header, where)
            if cards is None or len(layout) != header["TFIELDS"]:
                return None
            width, rows = header["NAXIS1"], header["NAXIS2"]
            ft._check_inflation(src, width * rows, rows, where)
            raw = bytes(src.read_scratch(width * rows)) if width * rows else b""
            if len(raw) < width * rows:
                return None  # truncated: astropy's reader says so
            columns, units = {}, {}
            for name, (i, code, repeat, offset) in sorted(layout.items(), key=lambda c: c[1][0]):
                if code not in "AKJIEDL" or (repeat != 1 and code != "A") or not repeat:
                    return None
                columns[name] = _direct_column(raw, rows, width, code, repeat, offset)
                unit = header.get(f"TUNIT{i}")
                if unit is not None:
                    if unit not in SIMPLE_UNITS:
                        return None
                    units[name] = unit
        meta = _header_meta(cards)
        return None if meta is None else PlainTable(columns, units=units, meta=meta)

    try:
        return run()
    except Exception:  # noqa: BLE001 - any surprise: astropy reads it as before, or says why
        return None
