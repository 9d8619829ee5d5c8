"""Reading GADF DL3 index tables (OBS_INDEX, HDU_INDEX) into plain numpy columns.

Only format knowledge lives here; :mod:`xbkg.store.datastore` turns the columns into a labelled
observation table and resolves files.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.io.fitstable import check_sizes, read_whole_table
from xbkg.io.safety import require_regular_file

__all__ = ["IndexTable", "find_index_dir", "find_index_file", "read_index_table",
           "store_directory", "converts_store_argument", "takes_store_directory"]

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


def _has_index(folder: Path) -> bool:
    return any((folder / name).exists() for name in INDEX_NAMES["obs"])


def find_index_dir(base: Path, index_dir=None) -> Path:
    """Folder holding a store's index files (HDU-index FILE_DIR values are relative to it).

    ``index_dir`` (relative to ``base``, or absolute) when given; else ``base`` when
    it holds an obs index; else the single ``base/index/*`` subfolder that holds one (as
    CTA 1DC's ``index/gps``). FileNotFoundError names the candidates to pass otherwise.
    """
    base = Path(base)
    if index_dir is not None:
        folder = base / index_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"{base}: index folder {index_dir} not found")
        return folder
    if _has_index(base):
        return base
    candidates = [sub for parent in (base / "index", base) if parent.is_dir()
                  for sub in sorted(parent.iterdir()) if sub.is_dir() and _has_index(sub)]
    if len(candidates) == 1:
        return candidates[0]
    tried = ", ".join(INDEX_NAMES["obs"])
    if candidates:
        names = ", ".join(str(c.relative_to(base)) for c in candidates)
        raise FileNotFoundError(f"{base}: several index folders ({names}); choose one with "
                                "--index-dir (index_dir=)")
    raise FileNotFoundError(f"{base}: no obs index file (looked for {tried} here and in "
                            "index/*); give its folder with --index-dir (index_dir=)")


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Most bytes of data an index file may declare (a million rows of a wide HDU index).
MAX_INDEX_BYTES = 1 << 28


def read_index_table(path: Path, hdu: str | int = 1) -> IndexTable:
    """Read an index table: scalar columns as native-endian arrays (strings stripped).

    Columns that are not scalar per row are skipped. Raises ValueError naming the file on
    unreadable input. Read with :func:`xbkg.io.fitstable.read_whole_table` (the same arrays as
    astropy.io.fits gives, without its per-file cost).
    """

    path = Path(path)
    require_regular_file(path)
    try:
        check_sizes(path, MAX_INDEX_BYTES)  # before anything allocates what the header declares
        data, header, units = read_whole_table(path, hdu)
    except Exception as exc:  # untrusted bytes: the reader, astropy and zlib raise many kinds
        raise ValueError(f"{path}: cannot read index table HDU {hdu!r}: "
                         f"{type(exc).__name__}: {exc}") from exc
    columns = {name.upper(): arr for name, arr in data.items()}
    units = {name.upper(): unit for name, unit in units.items()}
    meta = {k: _plain(v) for k, v in header.items() if k not in ("COMMENT", "HISTORY", "")}
    return IndexTable(columns, units, meta, path)


def store_directory(store) -> Path:
    """The directory of ``store``: a path as it is, or an opened store's ``base_dir``."""
    if isinstance(store, xr.Dataset):
        if "base_dir" not in store.attrs:
            raise ValueError("store: this observation Dataset has no 'base_dir' attribute; pass "
                             "the store directory instead")
        return Path(store.attrs["base_dir"])
    return Path(store)


def converts_store_argument(name: str, convert):
    """Decorator factory: argument ``name`` of the function reaches it as ``convert(value)``
    (None is passed on); the wrapper's ``store_argument`` attribute names the argument. The one
    mechanism behind :func:`takes_store_directory` and :func:`xbkg.store.datastore.takes_store`."""

    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            if bound.arguments.get(name) is not None:
                bound.arguments[name] = convert(bound.arguments[name])
            return func(*bound.args, **bound.kwargs)

        wrapper.store_argument = name
        return wrapper

    return decorate


def takes_store_directory(name: str = "store_dir"):
    """Decorator: argument ``name`` may be a store directory or an opened store, and reaches the
    function as the directory (:func:`store_directory`)."""
    return converts_store_argument(name, store_directory)
