"""The data store: GADF obs index + HDU index -> an observation table on dimension ``obs_id``.

Every obs-index column is kept (units in attrs), and derived per-run variables in canonical
units are added with lower-case names (``ra_pnt``, ``zenith``, ``ontime``, ``events_file``, ...)
so downstream stages never parse the index again (the list: docs/architecture.rst).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.io.index_tables import (
    converts_store_argument,
    find_index_dir,
    find_index_file,
    read_index_table,
    store_directory,
    takes_store_directory,
)

__all__ = ["open_datastore", "as_datastore", "store_directory", "takes_store", "resolve_path",
           "DataStoreError", "store_inputs"]

log = logging.getLogger(__name__)


class DataStoreError(ValueError):
    """A store-level problem: missing or inconsistent index tables."""


def resolve_path(base_dir: Path, file_dir: str, file_name: str) -> Path:
    """File of an HDU-index row: ``base_dir/FILE_DIR/FILE_NAME`` if it exists, else ``FILE_DIR/FILE_NAME``.

    This is gammapy's rule, so absolute FILE_DIR values work too.
    """
    candidate = Path(base_dir) / file_dir / file_name
    if candidate.exists():
        return candidate
    other = Path(file_dir) / file_name
    return other if other.exists() else candidate


def _to_unit(values, unit: str, target: str, *, name: str, default: str):
    """Convert ``values`` from ``unit`` (default ``default`` when empty) to ``target``."""
    if (unit or default).strip() == target:  # the usual case, without importing astropy.units
        return np.asarray(values, dtype=float)
    import astropy.units as u

    try:
        src = u.Unit(unit or default)
        return (np.asarray(values, dtype=float) * src).to_value(target)
    except (ValueError, u.UnitConversionError) as exc:
        raise DataStoreError(f"obs index column {name}: unit {unit!r} is not convertible to {target}") from exc


def _header_float(meta: dict, key: str) -> float:
    try:
        return float(meta[key])
    except (KeyError, TypeError, ValueError):
        return np.nan


def open_datastore(path, *, obs_index: str | Path | None = None,
                   hdu_index: str | Path | None = None, index_dir: str | Path | None = None
                   ) -> xr.Dataset:
    """Open a GADF DL3 store directory as an observation Dataset indexed by ``obs_id``.

    Parameters
    ----------
    path : str or Path
        Store directory holding ``obs-index.fits[.gz]`` and ``hdu-index.fits[.gz]``, or whose
        single ``index/*`` subfolder holds them (found automatically, as CTA 1DC's
        ``index/gps``).
    obs_index, hdu_index : str or Path, optional
        Index files to use instead of the default names.
    index_dir : str or Path, optional
        Folder of the index files, relative to ``path`` (or absolute); HDU-index FILE_DIR
        values are resolved from it. Needed when ``path/index`` holds several.

    Returns
    -------
    xarray.Dataset
        One row per run; see the module docstring for the derived variables.
    """
    base = Path(path).expanduser()
    if not base.is_dir():
        raise DataStoreError(f"{base}: not a directory (expected a GADF DL3 store folder with "
                             "obs-index and hdu-index files)")
    if obs_index is None or hdu_index is None:
        base = find_index_dir(base, index_dir)
    obs = read_index_table(obs_index or find_index_file(base, "obs"))
    hdu = read_index_table(hdu_index or find_index_file(base, "hdu"))
    if "OBS_ID" not in obs:
        raise DataStoreError(f"{obs.path}: obs index has no OBS_ID column")
    obs_ids = obs["OBS_ID"].astype("int64")
    uniq, counts = np.unique(obs_ids, return_counts=True)
    if np.any(counts > 1):
        raise DataStoreError(f"{obs.path}: duplicate OBS_ID values {uniq[counts > 1].tolist()}")

    ds = xr.Dataset(coords={"obs_id": ("obs_id", obs_ids)})
    for name, arr in obs.items():
        if name == "OBS_ID":
            continue
        attrs = {"units": obs.units[name]} if obs.units.get(name) else {}
        ds[name] = ("obs_id", arr, attrs)

    n = obs_ids.size
    nan = np.full(n, np.nan)

    def column(name, target, default, fallback=None):
        if name in obs and obs[name].dtype.kind in "fiu":
            return _to_unit(obs[name], obs.units.get(name, ""), target, name=name, default=default)
        return nan.copy() if fallback is None else fallback

    ds["ra_pnt"] = ("obs_id", column("RA_PNT", "deg", "deg"), {"units": "deg"})
    ds["dec_pnt"] = ("obs_id", column("DEC_PNT", "deg", "deg"), {"units": "deg"})
    zen = column("ZEN_PNT", "deg", "deg")
    alt = column("ALT_PNT", "deg", "deg")
    ds["zenith"] = ("obs_id", np.where(np.isfinite(zen), zen, 90.0 - alt), {"units": "deg"})
    ds["ontime"] = ("obs_id", column("ONTIME", "s", "s"), {"units": "s"})
    ds["tstart"] = ("obs_id", column("TSTART", "s", "s"), {"units": "s"})
    ds["tstop"] = ("obs_id", column("TSTOP", "s", "s"), {"units": "s"})
    count = obs.get("EVENT_COUNT")
    ds["event_count"] = ("obs_id", np.asarray(count, dtype="int64") if count is not None
                         else np.full(n, -1, dtype="int64"))
    for var, key, unit in (("geolon", "GEOLON", "deg"), ("geolat", "GEOLAT", "deg"),
                           ("altitude", "ALTITUDE", "m")):
        values = column(key, unit, unit, fallback=np.full(n, _header_float(obs.meta, key)))
        ds[var] = ("obs_id", values, {"units": unit})
    ds["mjdrefi"] = ("obs_id", column("MJDREFI", "", "", np.full(n, _header_float(obs.meta, "MJDREFI"))))
    ds["mjdreff"] = ("obs_id", column("MJDREFF", "", "", np.full(n, _header_float(obs.meta, "MJDREFF"))))
    ds["timesys"] = ("obs_id", np.full(n, str(obs.meta.get("TIMESYS", "")).strip()))

    files = _resolve_hdus(base, hdu, obs_ids)
    for key, values in files.items():
        ds[key] = ("obs_id", values)
    ds.attrs.update(base_dir=str(base), obs_index=str(obs.path), hdu_index=str(hdu.path))
    return ds


def as_datastore(store) -> xr.Dataset:
    """The observation Dataset of ``store``: a store directory is opened, a Dataset from
    :func:`open_datastore` is returned as it is."""
    if isinstance(store, xr.Dataset):
        return store
    if isinstance(store, (str, os.PathLike)):
        return open_datastore(store)
    raise TypeError(f"store: expected a store directory (str or Path) or the Dataset of "
                    f"xbkg.open_datastore, got {type(store).__name__}")


def takes_store(name: str = "store", *, directory: bool = False):
    """Decorator: argument ``name`` of the function may be a store directory or an opened store.

    The argument reaches the function as an observation Dataset (:func:`as_datastore`), or as
    the store's directory with ``directory=True`` (:func:`store_directory`); None is passed on.
    The wrapper's ``store_argument`` attribute names the argument.
    """
    if directory:
        return takes_store_directory(name)
    return converts_store_argument(name, as_datastore)


def _refuse_shared_events(index_path, obs_ids, files, hdus) -> None:
    """One events HDU listed for two runs would be counted twice: DataStoreError naming both."""
    seen = {}
    for obs_id, file, name in zip(obs_ids.tolist(), files.tolist(), hdus.tolist()):
        if not file:
            continue
        key = (os.path.realpath(file), name.strip().upper())
        if key in seen:
            raise DataStoreError(f"{index_path}: runs {seen[key]} and {obs_id} list the same "
                                 f"events HDU ({file}, {name}): it would be counted twice")
        seen[key] = obs_id


def _resolve_hdus(base: Path, hdu, obs_ids: np.ndarray) -> dict[str, np.ndarray]:
    """EVENTS and GTI files and HDU names per run from the HDU index ('' when absent)."""
    for col in ("OBS_ID", "HDU_TYPE", "FILE_DIR", "FILE_NAME", "HDU_NAME"):
        if col not in hdu:
            raise DataStoreError(f"{hdu.path}: HDU index has no {col} column")
    out = {}
    position = {int(o): i for i, o in enumerate(obs_ids)}
    hdu_type = np.char.lower(hdu["HDU_TYPE"].astype(str))
    for kind in ("events", "gti"):
        paths = np.full(obs_ids.size, "", dtype=object)
        names = np.full(obs_ids.size, "", dtype=object)
        rows = np.flatnonzero(hdu_type == kind)
        for r in rows:
            i = position.get(int(hdu["OBS_ID"][r]))
            if i is None:
                continue
            if paths[i]:
                raise DataStoreError(
                    f"{hdu.path}: run {int(hdu['OBS_ID'][r])} has more than one {kind} row"
                )
            paths[i] = str(resolve_path(base, str(hdu["FILE_DIR"][r]), str(hdu["FILE_NAME"][r])))
            names[i] = str(hdu["HDU_NAME"][r])
        out[f"{kind}_file"] = paths.astype(str)
        out[f"{kind}_hdu"] = names.astype(str)
    if np.any(hdu_type == "pointing"):  # lstchain stores: POINTING HDUs (xbkg.sky.pointing)
        paths = np.full(obs_ids.size, "", dtype=object)
        names = np.full(obs_ids.size, "", dtype=object)
        for r in np.flatnonzero(hdu_type == "pointing"):
            i = position.get(int(hdu["OBS_ID"][r]))
            if i is not None and not paths[i]:
                paths[i] = str(resolve_path(base, str(hdu["FILE_DIR"][r]), str(hdu["FILE_NAME"][r])))
                names[i] = str(hdu["HDU_NAME"][r])
        out["pointing_file"], out["pointing_hdu"] = paths.astype(str), names.astype(str)
    _refuse_shared_events(hdu.path, obs_ids, out["events_file"], out["events_hdu"])
    missing = obs_ids[out["events_file"] == ""]
    if missing.size:
        log.warning("%d runs in the obs index have no events row in %s: %s",
                    missing.size, hdu.path, missing[:10].tolist())
    return out


@takes_store("store")
def store_inputs(store) -> list[str]:
    """The folders and index files of a store (directory or ``xbkg.open_datastore`` Dataset):
    what no command may write into or replace."""
    paths = {store.attrs.get("base_dir"), store.attrs.get("obs_index"), store.attrs.get("hdu_index")}
    for key in ("events_file", "gti_file"):
        if key in store:
            paths.update(os.path.dirname(p) for p in store[key].values.tolist() if p)
    return sorted(p for p in paths if p)
