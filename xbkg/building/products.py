"""The output folder of ``xbkg make-models``, named as gammapy's old make-bg-cube-models named it.

The files are listed in docs/formats.rst. Everything is written to a temporary sibling folder
and moved into place at the end, so an interrupted run leaves no partial output and an earlier
OUTDIR untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.building.grouping import assign_groups
from xbkg.building.perrun import RUN_MODEL_DIR, write_run_models
from xbkg.io.atomic import atomic_dir
from xbkg.io.fitswrite import utf8_strings, write_fits
from xbkg.io.gadf import bkg_hdu, write_image_file, write_table_file
from xbkg.io.groups import groups_table
from xbkg.io.hduindex import make_bkg_index_table, make_total_index_plain, make_total_index_table
from xbkg.io.netcdf import write_netcdf
from xbkg.io.plaintable import NotPlainError, PlainTable, read_fits_table
from xbkg.store.datastore import takes_store
from xbkg.store.events import fill_from_headers

__all__ = ["BUNDLE_NAME", "write_bundle", "model_file_name", "atomic_dir", "write_products",
           "groups_table"]


def model_file_name(kind: str, group: int, fmt: str = "table") -> str:
    """Seed file name of a group's model file."""
    if kind == "2d":
        return f"bg_offset_model_group{int(group)}_{fmt}.fits.gz"
    return f"bg_cube_model_group{int(group)}_{fmt}.fits.gz"


#: Obs-index columns written to the copied obs index from the store's derived values when
#: the store's own obs index lacks them (MAGIC-style indexes): column -> (variable, unit).
COMPUTED_COLUMNS = {"ZEN_PNT": ("zenith", "deg"), "ONTIME": ("ontime", "s")}


def _obs_index_table(store: xr.Dataset, plain: bool = False):
    """The store's obs index plus :data:`COMPUTED_COLUMNS` it lacks (NaN where unknown); a
    :class:`~xbkg.io.plaintable.PlainTable` with ``plain`` when it can be (else a Table)."""
    table = read_fits_table(store.attrs["obs_index"], hdu=1) if plain else None
    if table is None:
        from astropy.table import Table

        table = Table.read(store.attrs["obs_index"], hdu=1)
    position = {int(o): i for i, o in enumerate(store.obs_id.values.tolist())}
    rows = np.array([position.get(int(o), -1) for o in table["OBS_ID"]], dtype=int)
    for column, (variable, unit) in COMPUTED_COLUMNS.items():
        if column in table.colnames or variable not in store:
            continue
        values = np.asarray(store[variable].values, dtype=float)
        table[column] = np.where(rows >= 0, values[rows], np.nan)
        if isinstance(table, PlainTable):
            table.units[column] = unit
        else:
            table[column].unit = unit
    return table


def _obs_rows(table, obs_ids):
    mask = np.isin(np.asarray(table["OBS_ID"], dtype="int64"), np.asarray(obs_ids, dtype="int64"))
    return table[mask]


@takes_store("store")
def write_products(model: xr.Dataset, store: xr.Dataset, outdir, *, rejected=None,
                   overwrite: bool = False, image: bool = True, per_run: bool = False,
                   per_run_method: str = "log", bundle: bool = False) -> Path:
    """Write every output file of ``make-models`` into ``outdir`` atomically; returns ``outdir``.

    ``store`` is the observation Dataset the model was built from (its obs and HDU index are
    copied and extended with bkg rows for every store run that falls in a zenith group). Zenith
    angles and ONTIME missing from the obs index are taken from the EVENTS headers (runs of
    the model keep the model's zenith) and written to the copied obs index
    (:data:`COMPUTED_COLUMNS`). With
    ``per_run`` each of those runs gets its own model (:mod:`xbkg.building.perrun`, interpolated with
    ``per_run_method``) and its bkg row points at it. With ``bundle``, also
    :data:`BUNDLE_NAME`: the group models (HDUs ``BKG<ID>``), HDU_INDEX and OBS_INDEX in one FITS
    file, as the seed notebook builds it (``gammapy.data.DataStore.from_file(path)``).
    """
    kind = model.attrs["kind"]
    store = _complete_store(store, model)
    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        used = model["obs_id"].values
        obs_index = _obs_index_table(store, plain=True)
        obs_table = _obs_rows(obs_index, used)
        write_fits(obs_table, tmp / "bg_observation_table.fits.gz")
        group_of = dict(zip(used.tolist(), model["obs_group"].values.tolist()))
        obs_table["GROUP_ID"] = np.array([group_of[int(o)] for o in obs_table["OBS_ID"]], dtype="int64")
        write_fits(obs_table, tmp / "bg_observation_table_grouped.fits.gz")
        _write_ecsv(groups_table(model, plain=True), tmp / "bg_observation_groups.ecsv")
        rej = PlainTable({"OBS_ID": np.array(sorted(rejected or {}), dtype="int64"),
                          "REASON": np.array([(rejected or {})[k] for k in sorted(rejected or {})],
                                             dtype=str)})
        _write_ecsv(rej, tmp / "bg_rejected_runs.ecsv")
        for group in model["zenith_group"].values:
            write_table_file(model, int(group), tmp / model_file_name(kind, group, "table"))
            if image and kind == "3d":
                write_image_file(model, int(group), tmp / model_file_name(kind, group, "image"))
        write_netcdf(model, tmp / "model.nc")
        # every store run in a zenith group gets the model of its group
        groups = assign_groups(store, model)
        has_group = groups >= 0
        if per_run:
            names = write_run_models(model, store.isel(obs_id=has_group), tmp / RUN_MODEL_DIR,
                                     method=per_run_method)
            file_dir = RUN_MODEL_DIR
        else:
            names = [model_file_name(kind, g, "table") for g in groups[has_group]]
            file_dir = "."
        write_fits(_total_index(store, store.obs_id.values[has_group], names, kind, file_dir,
                                Path(outdir)), tmp / "hdu-index.fits.gz")
        write_fits(obs_index, tmp / "obs-index.fits.gz")
        if bundle:
            write_bundle(model, store, tmp / BUNDLE_NAME, groups, out_dir=Path(outdir))
    return Path(outdir)


def _write_ecsv(table: PlainTable, path) -> None:
    """Write ``table`` as ECSV, through astropy.table when it is not a plain one."""
    try:
        table.write_ecsv(path)
    except NotPlainError:
        table.to_astropy().write(path, format="ascii.ecsv")


def _total_index(store: xr.Dataset, obs_ids, names, kind: str, file_dir: str, out_dir: Path):
    """The output HDU index (:func:`make_total_index_table`), plain when it can be."""
    args = dict(store_dir=store.attrs["base_dir"], out_dir=out_dir)
    total = make_total_index_plain(store.attrs["hdu_index"], make_bkg_index_table(
        obs_ids, names, kind=kind, file_dir=file_dir, plain=True), **args)
    if total is None:
        total = make_total_index_table(store.attrs["hdu_index"], make_bkg_index_table(
            obs_ids, names, kind=kind, file_dir=file_dir), **args)
    return total


def _complete_store(store: xr.Dataset, model: xr.Dataset) -> xr.Dataset:
    """``store`` with the model's zenith for its runs and header values for the others' gaps."""

    store = store.copy()
    zenith = np.asarray(store["zenith"].values, dtype=float).copy()
    position = {int(o): i for i, o in enumerate(store.obs_id.values.tolist())}
    for obs_id, z in zip(model.obs_id.values.tolist(), model["obs_zenith"].values.tolist()):
        if int(obs_id) in position:
            zenith[position[int(obs_id)]] = z
    store["zenith"] = ("obs_id", zenith, store["zenith"].attrs)
    return fill_from_headers(store, keys=("zenith", "ontime"), on_error="skip")


#: File name of the single-file bundle (models + HDU_INDEX + OBS_INDEX).
BUNDLE_NAME = "bg_models_bundle.fits.gz"


@takes_store("store")
def write_bundle(model: xr.Dataset, store: xr.Dataset, path, groups, *, out_dir) -> Path:
    """One FITS file with HDU_INDEX, OBS_INDEX and one ``BKG<ID>`` HDU per zenith group.

    ``groups`` is the group of every store run (-1: none); the bkg rows of the index point into
    the file itself, the store's rows work from ``out_dir`` (the folder the file will be in).
    """
    from astropy.io import fits


    has_group = groups >= 0
    bkg = make_bkg_index_table(store.obs_id.values[has_group],
                               np.full(int(has_group.sum()), BUNDLE_NAME), kind=model.attrs["kind"],
                               hdu_name=np.array([f"BKG{g}" for g in groups[has_group]]))
    total = make_total_index_table(store.attrs["hdu_index"], bkg,
                                   store_dir=store.attrs["base_dir"], out_dir=out_dir)
    index = fits.table_to_hdu(utf8_strings(total))
    index.name = "HDU_INDEX"
    obs = fits.table_to_hdu(_obs_index_table(store))
    obs.name = "OBS_INDEX"
    hdus = [fits.PrimaryHDU(), index, obs]
    hdus += [bkg_hdu(model, int(g), hdu_name=f"BKG{int(g)}") for g in model["zenith_group"].values]
    write_fits(fits.HDUList(hdus), path)
    return Path(path)
