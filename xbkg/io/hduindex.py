"""HDU index tables that point gammapy at background models.

``make_bkg_index_table`` gives one ``bkg`` row per observation, pointing at the model file of
its zenith group; ``make_total_index_table`` adds those rows to the store's own HDU index (minus
any bkg rows it had), with FILE_DIR values that work from the output folder. gammapy resolves
``base_dir/FILE_DIR/FILE_NAME`` and falls back to ``FILE_DIR/FILE_NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xbkg.io.gadf import gadf_cards
from xbkg.io.index_tables import takes_store_directory
from xbkg.io.plaintable import PlainTable, read_fits_table, vstack as plain_vstack

__all__ = ["make_bkg_index_table", "make_total_index_table", "make_total_index_plain",
           "HDU_INDEX_META"]

HDU_INDEX_META = {"EXTNAME": "HDU_INDEX", **gadf_cards("INDEX", "HDU")}


def make_bkg_index_table(obs_ids, file_names, *, kind: str, file_dir: str = ".",
                         hdu_name: str = "BACKGROUND", plain: bool = False):
    """One ``bkg`` row per observation.

    Parameters
    ----------
    obs_ids : array of int
    file_names : array of str, same length: the model file of each observation
    kind : "2d" or "3d" (HDU_CLASS bkg_2d / bkg_3d)
    file_dir : FILE_DIR value, relative to the folder the index will be in
    hdu_name : HDU name of the model, one for all rows or one per row
    plain : return a :class:`~xbkg.io.plaintable.PlainTable` instead of an astropy Table
    """
    if plain:
        Table = PlainTable
    else:
        from astropy.table import Table

    obs_ids = np.asarray(obs_ids, dtype="int64")
    n = obs_ids.size
    table = Table({
        "OBS_ID": obs_ids,
        "HDU_TYPE": np.full(n, "bkg"),
        "HDU_CLASS": np.full(n, f"bkg_{kind.lower()}"),
        "FILE_DIR": np.full(n, str(file_dir)),
        "FILE_NAME": np.asarray(file_names, dtype=str),
        "HDU_NAME": np.broadcast_to(np.asarray(hdu_name, dtype=str), (n,)).copy(),
    })
    table.meta.update(HDU_INDEX_META)
    return table


@takes_store_directory("store_dir")
def make_total_index_table(store_hdu_index, bkg_table, *, store_dir, out_dir):
    """The store's HDU index without its bkg rows, plus ``bkg_table``, usable from ``out_dir``.

    FILE_DIR of the store's rows is rewritten relative to ``out_dir`` (absolute when the two
    folders share no root), so ``DataStore.from_dir(out_dir)`` finds events and IRFs.
    """
    from astropy.table import Table, vstack

    # the first table HDU, as gammapy and xbkg.open_datastore read it (some stores misname it)
    table = Table.read(store_hdu_index, hdu=1) if not isinstance(store_hdu_index, Table) \
        else store_hdu_index.copy()
    return _total_index(table, bkg_table, vstack, store_dir, out_dir)


@takes_store_directory("store_dir")
def make_total_index_plain(store_hdu_index, bkg_table, *, store_dir, out_dir):
    """:func:`make_total_index_table` as a :class:`~xbkg.io.plaintable.PlainTable`, from a
    ``bkg_table`` made with ``plain=True``; None when the store's HDU index needs astropy.table
    (:func:`~xbkg.io.plaintable.read_fits_table`)."""
    table = read_fits_table(store_hdu_index, hdu=1)
    if table is None:
        return None
    return _total_index(table, bkg_table, plain_vstack, store_dir, out_dir)


def _total_index(table, bkg_table, vstack, store_dir, out_dir):
    """The body of :func:`make_total_index_table` for astropy and plain tables."""
    for name in ("HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME"):
        column = np.asarray(table[name])
        if column.dtype.kind == "S":  # UTF-8 (ASCII is a subset): non-ASCII file names work
            column = np.char.decode(column, "utf-8")
        table[name] = np.char.strip(column.astype(str))
    table = table[np.char.lower(np.asarray(table["HDU_TYPE"])) != "bkg"]
    store_dir = Path(store_dir).resolve()
    out_dir = Path(out_dir).resolve()
    new_dirs = []
    for file_dir in table["FILE_DIR"]:
        target = (store_dir / file_dir).resolve()
        try:
            new_dirs.append(os.path.relpath(target, out_dir))
        except ValueError:
            new_dirs.append(str(target))
    table["FILE_DIR"] = np.asarray(new_dirs, dtype=str)
    keep = [c for c in bkg_table.colnames if c in table.colnames]
    total = vstack([table[keep], bkg_table[keep]], metadata_conflicts="silent")
    total.sort(["OBS_ID", "HDU_TYPE"])
    total.meta.clear()
    total.meta.update(HDU_INDEX_META)
    return total
