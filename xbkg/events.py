"""Lazy event lists: one dask chunk per run, read only when computed.

:func:`read_run_events` is the per-run kernel (a plain function returning numpy columns in
canonical units: ENERGY TeV, RA/DEC deg, TIME s since MJDREF). :func:`open_events` wraps it into
an xarray Dataset on dimension ``event`` whose variables are dask arrays with one chunk per run;
building it opens no event file when the obs index gives EVENT_COUNT (header-only reads
otherwise).
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .io.fitstable import read_columns, read_header

__all__ = ["DEFAULT_COLUMNS", "CANONICAL_UNITS", "read_run_events", "open_events", "run_info",
           "run_infos", "complete_run_info", "fill_from_headers", "RunDataError", "UnitAssumedWarning"]

DEFAULT_COLUMNS = ("ENERGY", "RA", "DEC", "TIME")

#: Canonical unit of each known event column, also the GADF default when TUNIT is missing.
CANONICAL_UNITS = {"ENERGY": "TeV", "RA": "deg", "DEC": "deg", "TIME": "s"}

#: Run-level values taken from the EVENTS header when the store does not have them.
_HEADER_FALLBACK = {"geolon": "GEOLON", "geolat": "GEOLAT", "altitude": "ALTITUDE",
                    "mjdrefi": "MJDREFI", "mjdreff": "MJDREFF", "ra_pnt": "RA_PNT",
                    "dec_pnt": "DEC_PNT", "tstart": "TSTART", "tstop": "TSTOP",
                    "ontime": "ONTIME"}


class RunDataError(ValueError):
    """A problem with one run's data; the message names the run, the file and the problem."""


class UnitAssumedWarning(UserWarning):
    """A column had no unit and the GADF default was assumed."""


def _convert(values: np.ndarray, unit: str, name: str, where: str) -> np.ndarray:
    target = CANONICAL_UNITS.get(name)
    values = values.astype("float64", copy=False)
    if target is None:
        return values
    if not unit:
        warnings.warn(f"{where}: column {name} has no unit, assuming {target} (GADF)",
                      UnitAssumedWarning, stacklevel=3)
        return values
    if unit == target:
        return values
    import astropy.units as u

    try:
        return (values * u.Unit(unit)).to_value(target)
    except (ValueError, u.UnitConversionError):
        raise RunDataError(f"{where}: column {name} has unit {unit!r}, not convertible to {target}") from None


def read_run_events(path, hdu="EVENTS", columns=DEFAULT_COLUMNS, *, obs_id=None):
    """Read one run's event columns in canonical units.

    Returns
    -------
    columns : dict[str, numpy.ndarray]
        float64 arrays (ENERGY in TeV, RA/DEC in deg, TIME in s).
    header : dict
        The EVENTS header keywords.
    """
    where = f"run {obs_id} ({path}, HDU {hdu})" if obs_id is not None else f"{path} (HDU {hdu})"
    try:
        cols, header, units = read_columns(path, hdu, list(columns), header=True)
    except (OSError, ValueError) as exc:
        raise RunDataError(f"{where}: {exc}") from exc
    out = {name: _convert(np.asarray(cols[name]), units.get(name, ""), name, where)
           for name in columns}
    if obs_id is not None and "OBS_ID" in header:
        try:
            header_id = int(header["OBS_ID"])
        except (TypeError, ValueError):
            header_id = None
        if header_id is not None and header_id != int(obs_id):
            raise RunDataError(f"{where}: header OBS_ID {header_id} differs from the index ({obs_id})")
    return out, header


_INFO_FLOATS = ("ra_pnt", "dec_pnt", "zenith", "ontime", "tstart", "tstop", "geolon", "geolat",
                "altitude", "mjdrefi", "mjdreff")
_INFO_TEXT = ("timesys", "events_file", "events_hdu")


def run_infos(store: xr.Dataset) -> list[dict]:
    """Plain-Python run parameters (picklable dicts) of every run of ``store``, for per-run tasks.

    Columns are converted once for all runs (no per-run xarray indexing).
    """
    floats = {k: store[k].values.astype(float).tolist() for k in _INFO_FLOATS}
    texts = {k: store[k].values.astype(str).tolist() for k in _INFO_TEXT}
    out = []
    for i, obs_id in enumerate(store.obs_id.values.tolist()):
        info = {k: v[i] for k, v in floats.items()}
        info.update({k: v[i] for k, v in texts.items()})
        info["obs_id"] = int(obs_id)
        if not info["events_file"]:
            raise RunDataError(f"run {obs_id}: no events file in the HDU index")
        out.append(info)
    return out


def run_info(store: xr.Dataset, obs_id) -> dict:
    """Plain-Python run parameters (picklable) of one run, for per-run tasks."""
    return run_infos(store.sel(obs_id=[obs_id]))[0]


def complete_run_info(info: dict, header: dict) -> dict:
    """Fill values missing (NaN, empty) in ``info`` from the run's EVENTS header."""
    out = dict(info)
    for key, card in _HEADER_FALLBACK.items():
        if not np.isfinite(out.get(key, np.nan)) and card in header:
            try:
                out[key] = float(header[card])
            except (TypeError, ValueError):
                pass
    if not out.get("timesys"):
        out["timesys"] = str(header.get("TIMESYS", "TT")).strip() or "TT"
    return out


def fill_from_headers(store: xr.Dataset, keys=("ontime", "zenith", "ra_pnt", "dec_pnt")) -> xr.Dataset:
    """Fill NaN values of run-level variables from the EVENTS headers (header-only reads).

    Only runs with a missing value are read. ``zenith`` comes from ZEN_PNT or 90 - ALT_PNT.
    """
    store = store.copy()
    missing = np.zeros(store.sizes["obs_id"], dtype=bool)
    for key in keys:
        missing |= ~np.isfinite(store[key].values.astype(float))
    for i in np.flatnonzero(missing):
        obs_id = int(store.obs_id[i])
        info = run_info(store, obs_id)
        try:
            header = read_header(info["events_file"], info["events_hdu"])
        except (OSError, ValueError) as exc:
            raise RunDataError(f"run {obs_id} ({info['events_file']}): {exc}") from exc
        full = complete_run_info(info, header)
        if not np.isfinite(full["zenith"]):
            if "ZEN_PNT" in header:
                full["zenith"] = float(header["ZEN_PNT"])
            elif "ALT_PNT" in header:
                full["zenith"] = 90.0 - float(header["ALT_PNT"])
        for key in keys:
            if not np.isfinite(store[key].values[i]):
                store[key].values[i] = full[key]
    return store


def _event_count(info: dict, count: int) -> int:
    if count >= 0:
        return int(count)
    header = read_header(info["events_file"], info["events_hdu"])
    return int(header["NAXIS2"])


def _read_column_block(path, hdu, columns, obs_id, expected):
    cols = read_run_events(path, hdu, columns, obs_id=obs_id)[0]
    n = len(next(iter(cols.values()))) if cols else 0
    if n != expected:
        raise RunDataError(f"run {obs_id} ({path}, HDU {hdu}): {n} events in the file but "
                           f"{expected} expected from the obs index EVENT_COUNT")
    return cols


def open_events(store: xr.Dataset, obs_ids=None, columns=DEFAULT_COLUMNS) -> xr.Dataset:
    """Lazy event Dataset of the given runs (default: all runs of the store).

    Variables are float64 dask arrays on dimension ``event`` with one chunk per run; the
    ``obs_id`` coordinate gives each event's run. Nothing is read until computed.
    """
    obs_ids = store.obs_id.values if obs_ids is None else np.atleast_1d(obs_ids)
    per_column = {c: [] for c in columns}
    obs_blocks, sizes = [], []
    for obs_id in obs_ids:
        info = run_info(store, obs_id)
        n = _event_count(info, int(store["event_count"].sel(obs_id=obs_id)))
        task = dask.delayed(_read_column_block, pure=True)(
            info["events_file"], info["events_hdu"], tuple(columns), int(obs_id), n,
            dask_key_name=f"read-events-{int(obs_id)}",
        )
        for c in columns:
            per_column[c].append(da.from_delayed(task[c], shape=(n,), dtype="float64"))
        obs_blocks.append(da.full((n,), int(obs_id), dtype="int64", chunks=n))
        sizes.append(n)
    data = {c: ("event", da.concatenate(per_column[c]) if per_column[c] else da.zeros(0),
                {"units": CANONICAL_UNITS.get(c, "")}) for c in columns}
    coords = {"obs_id": ("event", da.concatenate(obs_blocks) if obs_blocks else da.zeros(0, "int64"))}
    return xr.Dataset(data, coords=coords, attrs={"run_sizes": np.asarray(sizes, dtype="int64")})
