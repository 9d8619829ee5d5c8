"""The output folder of ``xbkg make-models``, named as gammapy's old make-bg-cube-models named it.

==================================================  ===============================================
``bg_observation_table.fits.gz``                    the runs used (obs-index rows)
``bg_observation_table_grouped.fits.gz``            the same with GROUP_ID
``bg_observation_groups.ecsv``                      one row per group: bounds, runs, time
``bg_rejected_runs.ecsv``                           runs not used and why
``bg_cube_model_group<ID>_table.fits.gz``           3D: BACKGROUND + COUNTS + EXPOSURE HDUs
``bg_cube_model_group<ID>_image.fits.gz``           3D: the rate cube as an image (DS9)
``bg_offset_model_group<ID>_table.fits.gz``         2D: BACKGROUND + COUNTS + EXPOSURE HDUs
``model.nc``                                        all groups, for ``xbkg.open_model``
``bg_run_models/bg_run_model_obs<ID>.fits.gz``      with ``per_run``: one interpolated model per run
``bg_models_bundle.fits.gz``                        with ``bundle``: models, HDU_INDEX, OBS_INDEX
``hdu-index.fits.gz``, ``obs-index.fits.gz``        so ``gammapy.data.DataStore.from_dir(OUTDIR)``
                                                    loads ``obs.bkg`` for every run in a group
                                                    (its group's file, or its own with ``per_run``)
==================================================  ===============================================

Everything is written to a temporary sibling folder and moved into place at the end, so an
interrupted run leaves no partial output and an earlier OUTDIR untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from ..grouping import assign_groups
from .gadf import write_image_file, write_table_file
from .groups import groups_table
from .hduindex import make_bkg_index_table, make_total_index_table
from .netcdf import write_netcdf

__all__ = ["BUNDLE_NAME", "write_bundle", "model_file_name", "atomic_dir", "write_products",
           "groups_table"]


def model_file_name(kind: str, group: int, fmt: str = "table") -> str:
    """Seed file name of a group's model file."""
    if kind == "2d":
        return f"bg_offset_model_group{int(group)}_{fmt}.fits.gz"
    return f"bg_cube_model_group{int(group)}_{fmt}.fits.gz"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _clean_stale(outdir: Path) -> None:
    """Remove the ``.OUTDIR.tmp-PID-*`` and ``.OUTDIR.old-PID`` siblings of processes that are
    gone (killed); an ``.old`` folder is moved back to ``outdir`` if that is missing."""
    if not outdir.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(outdir.name)}\.(tmp|old)-(\d+)(-.*)?")
    for path in sorted(outdir.parent.iterdir(), key=lambda p: p.name):
        match = pattern.fullmatch(path.name)
        if not match or not path.is_dir() or _pid_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not outdir.exists():
            os.replace(path, outdir)  # killed between the two renames: restore the old OUTDIR
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(outdir, *, overwrite: bool = False):
    """Yield a fresh temporary folder that replaces ``outdir`` when the block succeeds.

    Refuses (FileExistsError) a non-empty ``outdir`` unless ``overwrite``. On error or
    KeyboardInterrupt the temporary folder is removed and ``outdir`` is left as it was. A
    process killed outright (SIGKILL) can leave a hidden ``.OUTDIR.tmp-PID-*`` sibling, never
    a partial ``outdir``; such leftovers of dead processes are removed by the next call.
    """
    outdir = Path(outdir).resolve()
    _clean_stale(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise FileExistsError(f"{outdir}: exists and is not a directory")
    if outdir.exists() and any(outdir.iterdir()) and not overwrite:
        raise FileExistsError(f"{outdir}: output folder is not empty (use overwrite)")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-{os.getpid()}-", dir=outdir.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if outdir.exists():
        old = outdir.parent / f".{outdir.name}.old-{os.getpid()}"
        os.replace(outdir, old)
    os.replace(tmp, outdir)
    os.chmod(outdir, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _obs_rows(store: xr.Dataset, obs_ids):
    from astropy.table import Table

    table = Table.read(store.attrs["obs_index"], hdu=1)
    mask = np.isin(np.asarray(table["OBS_ID"], dtype="int64"), np.asarray(obs_ids, dtype="int64"))
    return table[mask]


def write_products(model: xr.Dataset, store: xr.Dataset, outdir, *, rejected=None,
                   overwrite: bool = False, image: bool = True, per_run: bool = False,
                   per_run_method: str = "log", bundle: bool = False) -> Path:
    """Write every output file of ``make-models`` into ``outdir`` atomically; returns ``outdir``.

    ``store`` is the observation Dataset the model was built from (its obs and HDU index are
    copied and extended with bkg rows for every store run that falls in a zenith group). With
    ``per_run`` each of those runs gets its own model (:mod:`xbkg.io.perrun`, interpolated with
    ``per_run_method``) and its bkg row points at it. With ``bundle``, also
    :data:`BUNDLE_NAME`: the group models (HDUs ``BKG<ID>``), HDU_INDEX and OBS_INDEX in one FITS
    file, as the seed notebook builds it (``gammapy.data.DataStore.from_file(path)``).
    """
    from astropy.table import Table

    kind = model.attrs["kind"]
    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        used = model["obs_id"].values
        obs_table = _obs_rows(store, used)
        obs_table.write(tmp / "bg_observation_table.fits.gz")
        group_of = dict(zip(used.tolist(), model["obs_group"].values.tolist()))
        obs_table["GROUP_ID"] = np.array([group_of[int(o)] for o in obs_table["OBS_ID"]], dtype="int64")
        obs_table.write(tmp / "bg_observation_table_grouped.fits.gz")
        groups_table(model).write(tmp / "bg_observation_groups.ecsv")
        rej = Table({"OBS_ID": np.array(sorted(rejected or {}), dtype="int64"),
                     "REASON": np.array([(rejected or {})[k] for k in sorted(rejected or {})], dtype=str)})
        rej.write(tmp / "bg_rejected_runs.ecsv")
        for group in model["zenith_group"].values:
            write_table_file(model, int(group), tmp / model_file_name(kind, group, "table"))
            if image and kind == "3d":
                write_image_file(model, int(group), tmp / model_file_name(kind, group, "image"))
        write_netcdf(model, tmp / "model.nc")
        # every store run in a zenith group gets the model of its group
        groups = assign_groups(store, model)
        has_group = groups >= 0
        if per_run:
            from .perrun import RUN_MODEL_DIR, write_run_models

            names = write_run_models(model, store.isel(obs_id=has_group), tmp / RUN_MODEL_DIR,
                                     method=per_run_method)
            bkg = make_bkg_index_table(store.obs_id.values[has_group], names, kind=kind,
                                       file_dir=RUN_MODEL_DIR)
        else:
            names = [model_file_name(kind, g, "table") for g in groups[has_group]]
            bkg = make_bkg_index_table(store.obs_id.values[has_group], names, kind=kind)
        total = make_total_index_table(store.attrs["hdu_index"], bkg,
                                       store_dir=store.attrs["base_dir"], out_dir=Path(outdir))
        total.write(tmp / "hdu-index.fits.gz")
        Table.read(store.attrs["obs_index"], hdu=1).write(tmp / "obs-index.fits.gz")
        if bundle:
            write_bundle(model, store, tmp / BUNDLE_NAME, groups, out_dir=Path(outdir))
    return Path(outdir)


#: File name of the single-file bundle (models + HDU_INDEX + OBS_INDEX).
BUNDLE_NAME = "bg_models_bundle.fits.gz"


def write_bundle(model: xr.Dataset, store: xr.Dataset, path, groups, *, out_dir) -> Path:
    """One FITS file with HDU_INDEX, OBS_INDEX and one ``BKG<ID>`` HDU per zenith group.

    ``groups`` is the group of every store run (-1: none); the bkg rows of the index point into
    the file itself, the store's rows work from ``out_dir`` (the folder the file will be in).
    """
    from astropy.io import fits
    from astropy.table import Table

    from .gadf import bkg_hdu

    has_group = groups >= 0
    bkg = make_bkg_index_table(store.obs_id.values[has_group],
                               np.full(int(has_group.sum()), BUNDLE_NAME), kind=model.attrs["kind"],
                               hdu_name=np.array([f"BKG{g}" for g in groups[has_group]]))
    total = make_total_index_table(store.attrs["hdu_index"], bkg,
                                   store_dir=store.attrs["base_dir"], out_dir=out_dir)
    index = fits.table_to_hdu(total)
    index.name = "HDU_INDEX"
    obs = fits.table_to_hdu(Table.read(store.attrs["obs_index"], hdu=1))
    obs.name = "OBS_INDEX"
    hdus = [fits.PrimaryHDU(), index, obs]
    hdus += [bkg_hdu(model, int(g), hdu_name=f"BKG{int(g)}") for g in model["zenith_group"].values]
    fits.HDUList(hdus).writeto(path)
    return Path(path)
