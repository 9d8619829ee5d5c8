"""Lazy event lists: one dask chunk per run, read only when computed.

:func:`read_run_events` is the per-run kernel (a plain function returning numpy columns in
canonical units: ENERGY TeV, RA/DEC deg, TIME s since MJDREF). :func:`open_events` wraps it into
an xarray Dataset on dimension ``event`` whose variables are dask arrays with one chunk per run;
building it opens no event file when the obs index gives EVENT_COUNT (header-only reads
otherwise).
"""

from __future__ import annotations

import logging
import warnings

import dask
import numpy as np
import xarray as xr

from xbkg.core.runs import RunInfo, as_run_info
from xbkg.io.fitstable import read_columns, read_header, read_tables
from xbkg.sky.pointing import run_pointing_radec
from xbkg.store.datastore import takes_store

__all__ = ["DEFAULT_COLUMNS", "CANONICAL_UNITS", "read_run_events", "read_run", "describe_run",
           "open_events", "run_info", "run_infos", "POINTING_SOURCES", "complete_run_info",
           "fill_from_headers", "RunDataError", "UnitAssumedWarning"]

log = logging.getLogger(__name__)

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


def describe_run(obs_id, path, hdu) -> str:
    """How error messages name a run: ``"run 23523 (path/to/file.fits.gz, HDU EVENTS)"``."""
    return f"run {obs_id} ({path}, HDU {hdu})" if obs_id is not None else f"{path} (HDU {hdu})"


def _convert(values: np.ndarray, unit: str, name: str, where: str, target=None,
             keep_float32: bool = False) -> np.ndarray:
    """Values in the canonical unit: float64, or float32 as stored with ``keep_float32``."""
    target = CANONICAL_UNITS.get(name) if target is None else target
    if not (keep_float32 and values.dtype == np.float32):
        values = values.astype("float64", copy=False)
    if target is None:
        return values
    if not unit:
        warnings.warn(f"{where}: column {name} has no unit, assuming {target} (GADF)",
                      UnitAssumedWarning, stacklevel=3)
        return values
    if unit == target:
        return values
    values = values.astype("float64", copy=False)
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
    where = describe_run(obs_id, path, hdu)
    try:
        cols, header, units = read_columns(path, hdu, list(columns), header=True)
    except (OSError, ValueError) as exc:
        raise RunDataError(f"{where}: {exc}") from exc
    return _checked_events(cols, header, units, columns, obs_id, where), header


def _checked_events(cols, header, units, columns, obs_id, where, keep_float32=False) -> dict:
    """Event columns in canonical units, after checking the header OBS_ID against ``obs_id``."""
    if obs_id is not None and "OBS_ID" in header:
        try:
            header_id = int(header["OBS_ID"])
        except (TypeError, ValueError):
            raise RunDataError(f"{where}: header OBS_ID {header['OBS_ID']!r} is not an integer") from None
        if header_id != int(obs_id):
            raise RunDataError(f"{where}: header OBS_ID {header_id} differs from the index ({obs_id})")
    return {name: _convert(np.asarray(cols[name]), units.get(name, ""), name, where,
                           keep_float32=keep_float32) for name in columns}


def _gti_intervals(cols, header, units, events_header, where) -> tuple[np.ndarray, np.ndarray]:
    """GTI START/STOP in s on the time reference (MJDREFI/F) of the EVENTS header."""
    start, stop = (_convert(np.asarray(cols[c]), units.get(c, ""), c, where, "s")
                   for c in ("START", "STOP"))
    refs = [h.get(k) for h in (header, events_header) for k in ("MJDREFI", "MJDREFF")]
    if all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in refs):
        shift = ((refs[0] - refs[2]) + (refs[1] - refs[3])) * 86400.0
        start, stop = start + shift, stop + shift
    return start, stop


def read_run(info: RunInfo, columns=DEFAULT_COLUMNS):
    """Events, EVENTS header and good time intervals of one run, reading each file once.

    Parameters
    ----------
    info : xbkg.core.runs.RunInfo
        Run parameters (:func:`run_infos`): ``obs_id``, ``events_file``, ``events_hdu`` and
        ``gti_file``, ``gti_hdu`` (empty: the run has no GTI row).
    columns : sequence of str
        Event columns to read.

    Returns
    -------
    columns : dict[str, numpy.ndarray]
        As :func:`read_run_events`, except that columns stored as float32 in canonical units
        stay float32 (exact; the kernels compute in float64 block by block).
    header : dict
        The EVENTS header.
    gti : (numpy.ndarray, numpy.ndarray) or None
        START and STOP (s, on the EVENTS time reference), None when the run has no GTI row.

    Raises
    ------
    RunDataError
        Unreadable file, missing HDU or column, unit not convertible, header OBS_ID differing
        from ``info.obs_id``; the message names the run, the file and the problem.
    """
    info = as_run_info(info)
    obs_id, path, hdu = info.obs_id, info.events_file, info.events_hdu
    gti_path, gti_hdu = info.gti_file, info.gti_hdu
    where, gti_where = describe_run(obs_id, path, hdu), describe_run(obs_id, gti_path, gti_hdu)
    same_file = bool(gti_path) and str(gti_path) == str(path) and str(gti_hdu) != str(hdu)
    wanted = {hdu: list(columns), **({gti_hdu: ["START", "STOP"]} if same_file else {})}
    try:
        tables = read_tables(path, wanted)
    except (OSError, ValueError) as exc:
        raise RunDataError(f"{where}: {exc}") from exc
    ev_cols, header, units = tables[hdu]
    events = _checked_events(ev_cols, header, units, columns, obs_id, where, keep_float32=True)
    if not gti_path:
        return events, header, None
    if same_file:
        gti_table = tables[gti_hdu]
    else:
        try:
            gti_table = read_columns(gti_path, gti_hdu, ["START", "STOP"], header=True)
        except (OSError, ValueError) as exc:
            raise RunDataError(f"{gti_where}: {exc}") from exc
    return events, header, _gti_intervals(*gti_table, header, gti_where)


_INFO_FLOATS = ("ra_pnt", "dec_pnt", "zenith", "ontime", "tstart", "tstop", "geolon", "geolat",
                "altitude", "mjdrefi", "mjdreff")
_INFO_TEXT = ("timesys", "events_file", "events_hdu")
_INFO_OPTIONAL_TEXT = ("gti_file", "gti_hdu")


@takes_store("store")
def run_infos(store: xr.Dataset) -> list[RunInfo]:
    """Run records (:class:`xbkg.core.runs.RunInfo`: numbers and strings) of every run of ``store``.

    They are what per-run tasks get, cheap to send to worker processes. Columns are converted
    once for all runs (no per-run xarray indexing); ``gti_file`` and ``gti_hdu`` are empty
    when the store has no GTI rows; ``event_count`` is the obs index's EVENT_COUNT (None when
    unknown), used only to size tasks.
    """
    floats = {k: store[k].values.astype(float).tolist() for k in _INFO_FLOATS}
    texts = {k: store[k].values.astype(str).tolist() for k in _INFO_TEXT}
    texts.update({k: store[k].values.astype(str).tolist() if k in store else
                  [""] * store.sizes["obs_id"] for k in _INFO_OPTIONAL_TEXT})
    counts = [None] * store.sizes["obs_id"]
    if "event_count" in store:  # open_datastore's, -1 when the obs index has no EVENT_COUNT
        counts = [int(v) if v >= 0 else None for v in store["event_count"].values.tolist()]
    out = []
    for i, obs_id in enumerate(store.obs_id.values.tolist()):
        if not texts["events_file"][i]:
            raise RunDataError(f"run {obs_id}: no events file in the HDU index")
        out.append(RunInfo(obs_id=int(obs_id), event_count=counts[i],
                           **{k: v[i] for k, v in floats.items()},
                           **{k: v[i] for k, v in texts.items()}))
    return out


@takes_store("store")
def run_info(store: xr.Dataset, obs_id) -> RunInfo:
    """The run record of one run, for per-run tasks (see :func:`run_infos`)."""
    return run_infos(store.sel(obs_id=[obs_id]))[0]


def _header_number(header: dict, card: str) -> float:
    """A header value as a float; NaN when absent or not a number."""
    value = header.get(card)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return np.nan
    return float(value)


#: Where a run's pointing came from (``pointing_source`` of :func:`complete_run_info`).
POINTING_SOURCES = ("EVENTS header", "obs index")


def complete_run_info(info: RunInfo, header: dict) -> RunInfo:
    """A copy of ``info`` with the values it misses (NaN, empty) taken from the EVENTS header.

    The pointing is taken from the header's RA_PNT/DEC_PNT whenever both are there and valid,
    as gammapy does (obs indexes may store it in float32, 1e-5 deg off); otherwise from
    ``info``. ``pointing_source`` says which (one of :data:`POINTING_SOURCES`). ``info``
    itself is unchanged.

    >>> out = complete_run_info(RunInfo(ra_pnt=187.7782, dec_pnt=2.0),
    ...                         {"RA_PNT": 187.77819166, "DEC_PNT": 2.0})
    >>> out.ra_pnt, out.pointing_source
    (187.77819166, 'EVENTS header')
    """
    info = as_run_info(info)
    ra, dec = _header_number(header, "RA_PNT"), _header_number(header, "DEC_PNT")
    if np.isfinite(ra) and np.isfinite(dec) and abs(dec) <= 90.0:
        changes = {"ra_pnt": ra, "dec_pnt": dec, "pointing_source": POINTING_SOURCES[0]}
    else:
        changes = {"pointing_source": POINTING_SOURCES[1]}
    for key, card in _HEADER_FALLBACK.items():
        if not np.isfinite(changes.get(key, getattr(info, key))):
            changes[key] = _header_number(header, card)
    if not info.timesys:
        changes["timesys"] = str(header.get("TIMESYS", "TT")).strip() or "TT"
    return info.with_(**changes)


@takes_store("store")
def fill_from_headers(store: xr.Dataset, keys=("ontime", "zenith", "ra_pnt", "dec_pnt"), *,
                      on_error: str = "raise") -> xr.Dataset:
    """Fill NaN values of run-level variables from the EVENTS headers (header-only reads).

    Only runs with a missing value and an events file are read. ``zenith`` comes from ZEN_PNT or
    90 - ALT_PNT; a pointing with neither RA nor Dec in the header either comes from the run's
    POINTING HDU or its Alt/Az (:mod:`xbkg.sky.pointing`, LST-1 stores; only one of them missing is
    a broken run).
    A header that cannot be read raises :class:`RunDataError` (``on_error="raise"``) or is
    logged and leaves the run's values missing (``on_error="skip"``: the run's own task then
    fails and reports the problem).
    """
    store = store.copy()
    missing = np.zeros(store.sizes["obs_id"], dtype=bool)
    for key in keys:
        missing |= ~np.isfinite(store[key].values.astype(float))
    missing &= store["events_file"].values.astype(str) != ""
    for i in np.flatnonzero(missing):
        obs_id = int(store.obs_id[i])
        info = run_info(store, obs_id)
        try:
            header = read_header(info.events_file, info.events_hdu)
        except (OSError, ValueError) as exc:
            message = f"{describe_run(obs_id, info.events_file, info.events_hdu)}: {exc}"
            if on_error == "raise":
                raise RunDataError(message) from exc
            log.warning("cannot fill missing values from the EVENTS header: %s", message)
            continue
        full = complete_run_info(info, header)
        if not (np.isfinite(full.ra_pnt) or np.isfinite(full.dec_pnt)):  # neither: LST-1
            ra, dec = _pointing_radec(store, i, info, header)
            full = full.with_(ra_pnt=ra, dec_pnt=dec)
        if not np.isfinite(full.zenith):
            full = full.with_(zenith=_header_number(header, "ZEN_PNT"))
        if not np.isfinite(full.zenith):
            full = full.with_(zenith=90.0 - _header_number(header, "ALT_PNT"))
        for key in keys:
            if not np.isfinite(store[key].values[i]):
                store[key].values[i] = getattr(full, key)
    return store


def _pointing_radec(store: xr.Dataset, i: int, info: RunInfo, header: dict) -> tuple[float, float]:
    """RA/Dec of run ``i`` from its POINTING HDU or Alt/Az (:mod:`xbkg.sky.pointing`)."""

    site = {k: getattr(info, k) for k in ("geolon", "geolat", "altitude", "mjdrefi", "mjdreff",
                                          "timesys")}
    where = describe_run(info.obs_id, info.events_file, info.events_hdu)
    try:
        ra, dec, source = run_pointing_radec(
            {**header, **({} if "TSTART" in header else {"TSTART": info.tstart,
                                                          "TSTOP": info.tstop})},
            pointing_file=str(store["pointing_file"].values[i]) if "pointing_file" in store else "",
            pointing_hdu=str(store["pointing_hdu"].values[i]) if "pointing_hdu" in store else "",
            site=site)
    except (OSError, ValueError) as exc:
        log.warning("%s: no pointing RA/Dec: %s", where, exc)
        return np.nan, np.nan
    if source:
        log.info("%s: pointing RA/Dec from the %s", where, source)
    return ra, dec


def _event_count(info: RunInfo, count: int) -> int:
    """Events of a run: EVENT_COUNT of the obs index, else NAXIS2 of its EVENTS header."""
    if count >= 0:
        return int(count)
    where = describe_run(info.obs_id, info.events_file, info.events_hdu)
    try:
        header = read_header(info.events_file, info.events_hdu)
        return int(header["NAXIS2"])
    except (OSError, ValueError, KeyError) as exc:
        raise RunDataError(f"{where}: cannot read the EVENTS header: {exc}") from exc


def _read_column_block(path, hdu, columns, obs_id, expected):
    cols = read_run_events(path, hdu, columns, obs_id=obs_id)[0]
    n = len(next(iter(cols.values()))) if cols else 0
    if n != expected:
        raise RunDataError(f"run {obs_id} ({path}, HDU {hdu}): {n} events in the file but "
                           f"{expected} expected from the obs index EVENT_COUNT")
    return cols


@takes_store("store")
def open_events(store: xr.Dataset, obs_ids=None, columns=DEFAULT_COLUMNS) -> xr.Dataset:
    """Lazy event Dataset of the given runs (default: all runs of the store).

    Variables are float64 dask arrays on dimension ``event`` with one chunk per run; the
    ``obs_id`` coordinate gives each event's run. No event data is read until computed; the
    chunk sizes come from the obs index's EVENT_COUNT, or, for runs without it, from their
    EVENTS headers (read here, header only: a missing file or unreadable header then raises
    :class:`RunDataError` naming the run and the file; otherwise the error comes when the
    run is computed).
    """
    import dask.array as da  # here: a build computed at once never needs it

    obs_ids = store.obs_id.values if obs_ids is None else np.atleast_1d(obs_ids)
    per_column = {c: [] for c in columns}
    obs_blocks, sizes = [], []
    for obs_id in obs_ids:
        info = run_info(store, obs_id)
        n = _event_count(info, int(store["event_count"].sel(obs_id=obs_id)))
        task = dask.delayed(_read_column_block, pure=True)(
            info.events_file, info.events_hdu, tuple(columns), int(obs_id), n,
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
