"""Reading GADF DL3 index tables (OBS_INDEX, HDU_INDEX) into plain numpy columns.

Only format knowledge lives here; :mod:`xbkg.datastore` turns the columns into a labelled
observation table and resolves files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["IndexTable", "find_index_file", "read_index_table"]

INDEX_NAMES = {"obs": ("obs-index.fits.gz", "obs-index.fits"),
               "hdu": ("hdu-index.fits.gz", "hdu-index.fits")}


class IndexTable(dict):
    """Columns of an index table (name -> 1-D numpy array) with ``units`` and ``meta`` dicts."""

    def __init__(self, columns, units, meta, path):
        super().__init__(columns)
        self.units = units
        self.meta = meta
        self.path = Path(path)


def find_index_file(base_dir: Path, which: str) -> Path:
    """Path of the obs or HDU index file of a store; FileNotFoundError naming what was tried."""
    base_dir = Path(base_dir)
    for name in INDEX_NAMES[which]:
        path = base_dir / name
        if path.exists():
            return path
    tried = ", ".join(INDEX_NAMES[which])
    raise FileNotFoundError(f"{base_dir}: no {which} index file (looked for {tried})")


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _utf8(arr: np.ndarray, where: str) -> np.ndarray:
    """Decode a bytes column as UTF-8, naming the first undecodable row."""
    try:
        return np.char.decode(arr, "utf-8")
    except UnicodeDecodeError:
        for row, value in enumerate(arr):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{where} row {row}: {value!r} is not text (ASCII or "
                                 "UTF-8)") from None
        raise


#: Most bytes of data an index file may declare (a million rows of a wide HDU index).
MAX_INDEX_BYTES = 1 << 28


def read_index_table(path: Path, hdu: str | int = 1) -> IndexTable:
    """Read an index table: scalar columns as native-endian arrays (strings stripped).

    Columns that are not scalar per row are skipped. Raises ValueError naming the file on
    unreadable input.
    """
    from astropy.io import fits

    from .fitstable import check_sizes
    from .safety import require_regular_file

    path = Path(path)
    require_regular_file(path)
    try:
        check_sizes(path, MAX_INDEX_BYTES)  # before astropy allocates what the header declares
        with fits.open(path, memmap=False) as hdul:
            table = hdul[hdu]
            data = table.data
            header = table.header
            columns, units = {}, {}
            if data is None:
                raise ValueError("no table data")
            for col in table.columns:
                arr = np.asarray(data[col.name])
                if arr.ndim != 1:
                    continue
                if arr.dtype.kind == "S":  # UTF-8 (ASCII is a subset): non-ASCII paths work
                    arr = _utf8(arr, f"column {col.name}")
                if arr.dtype.kind in "SU":
                    arr = np.char.strip(arr.astype(str)).astype(object).astype(str)
                else:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
                columns[col.name.upper()] = arr
                units[col.name.upper()] = (col.unit or "").strip()
            meta = {k: _plain(v) for k, v in header.items() if k not in ("COMMENT", "HISTORY", "")}
    except Exception as exc:  # untrusted bytes: astropy and zlib raise many kinds of errors
        raise ValueError(f"{path}: cannot read index table HDU {hdu!r}: "
                         f"{type(exc).__name__}: {exc}") from exc
    return IndexTable(columns, units, meta, path)
