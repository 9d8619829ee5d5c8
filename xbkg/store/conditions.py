"""Run conditions: the per-run values a conditional background model depends on.

A condition is a computed one (``zenith``, ``azimuth``, ``time``, ``event_rate``,
``outer_rate``) or a numeric obs-table column (``MUONEFF``, ``N_TELS``, ...; logarithms for
:data:`LOG_COLUMNS`). :func:`condition_matrix` gives the raw term values ``(runs, terms)``;
standardising them is the fit's business (:mod:`xbkg.building.conditional`). The terms:
docs/conditional.rst.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.sky.fov import offset_deg
from xbkg.store.datastore import takes_store
from xbkg.store.events import fill_from_headers, read_run_events, run_infos

__all__ = ["COMPUTED", "LOG_COLUMNS", "parse_conditions", "term_names", "outer_event_counts",
           "condition_matrix"]

#: Conditions computed from several obs-table columns.
COMPUTED = ("zenith", "azimuth", "time", "event_rate", "outer_rate")
#: Obs-table columns entered as ``ln(value)``.
LOG_COLUMNS = ("MUONEFF", "N_TELS")

_MJD_2000 = 51544.0
_DAYS_PER_YEAR = 365.25


def parse_conditions(spec) -> list[str]:
    """Condition names from ``"zenith,MUONEFF"`` or a list; duplicates and blanks dropped.

    >>> parse_conditions("zenith, MUONEFF,,zenith")
    ['zenith', 'MUONEFF']
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise ValueError(f"no condition named in {spec!r}")
    return out


def term_names(conditions) -> list[str]:
    """The model terms of these conditions (``azimuth`` gives two).

    >>> term_names(["zenith", "azimuth", "MUONEFF"])
    ['zenith', 'azimuth_cos', 'azimuth_sin', 'MUONEFF']
    """
    out = []
    for name in conditions:
        out += ["azimuth_cos", "azimuth_sin"] if name == "azimuth" else [name]
    return out


def _column(store: xr.Dataset, name: str) -> np.ndarray:
    if name not in store:
        numeric = sorted(str(v) for v in store.data_vars
                         if store[v].ndim == 1 and np.issubdtype(store[v].dtype, np.number))
        raise ValueError(f"condition {name!r}: not a computed condition {COMPUTED} nor an "
                         f"obs-table column; numeric columns: {', '.join(numeric)}")
    values = store[name].values
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"condition {name!r}: obs-table column is not numeric")
    return values.astype(float)


def _start_mjd(store: xr.Dataset) -> np.ndarray:
    ref = _column(store, "mjdrefi") + _column(store, "mjdreff")
    return ref + _column(store, "tstart") / 86400.0


@takes_store("store")
def outer_event_counts(store: xr.Dataset, outer_offset: float) -> np.ndarray:
    """Events of each run farther than ``outer_offset`` (deg) from its pointing (reads RA, DEC
    of every run; the pointing as :func:`xbkg.store.events.fill_from_headers` completes it)."""

    store = fill_from_headers(store, on_error="raise")
    out = []
    for info in run_infos(store):
        columns, _ = read_run_events(info.events_file, info.events_hdu, ("RA", "DEC"),
                                     obs_id=info.obs_id)
        offset = offset_deg(columns["RA"], columns["DEC"], info.ra_pnt, info.dec_pnt)
        out.append(int(np.count_nonzero(offset > outer_offset)))
    return np.asarray(out, dtype=np.int64)


def _values(store: xr.Dataset, name: str, outer=None) -> list[np.ndarray]:
    if name == "zenith":
        return [np.log(np.cos(np.radians(_column(store, "zenith"))))]
    if name == "azimuth":
        az = np.radians(_column(store, "AZ_PNT"))
        return [np.cos(az), np.sin(az)]
    if name == "time":
        return [(_start_mjd(store) - _MJD_2000) / _DAYS_PER_YEAR]
    if name == "event_rate":
        return [np.log(_column(store, "EVENT_COUNT") / _column(store, "ONTIME"))]
    if name == "outer_rate":
        if outer is None:
            raise ValueError("condition 'outer_rate' needs the runs' outer event counts")
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.log(np.asarray(outer, float) / _column(store, "ontime"))]
    values = _column(store, name)
    if name.upper() in LOG_COLUMNS:
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.where(values > 0, np.log(values), np.nan)]
    return [values]


@takes_store("store")
def condition_matrix(store: xr.Dataset, conditions, *, outer_counts=None,
                     outer_offset=None) -> tuple[np.ndarray, list[str]]:
    """Term values of every run of ``store``: array ``(runs, terms)`` and the term names.

    ``outer_rate`` uses ``outer_counts`` (events per run beyond ``outer_offset``) when given,
    else counts them from the event lists (:func:`outer_event_counts`, needs ``outer_offset``).

    Raises ValueError naming the condition for an unknown name, and naming the runs whose
    value is missing or not finite.
    """
    conditions = parse_conditions(conditions)
    if "outer_rate" in conditions and outer_counts is None:
        if outer_offset is None:
            raise ValueError("condition 'outer_rate' needs outer_offset (deg)")
        outer_counts = outer_event_counts(store, outer_offset)
    columns = []
    for name in conditions:
        columns += _values(store, name, outer_counts)
    x = np.stack(columns, axis=1) if columns else np.zeros((store.sizes["obs_id"], 0))
    bad = ~np.isfinite(x)
    if bad.any():
        names = term_names(conditions)
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        runs = store.obs_id.values[bad[:, j]][:5].tolist()
        raise ValueError(f"condition {names[j]!r}: no finite value for run(s) {runs}")
    return x, term_names(conditions)
