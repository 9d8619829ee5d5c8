"""Run conditions: the per-run values a conditional background model depends on.

A condition name is either a computed one or an obs-table column (case as in the table):

``zenith``
    ``ln cos z`` of the run's zenith (the ``zenith`` of :func:`xbkg.open_datastore`, deg):
    the background rate of IACTs falls roughly as a power of ``cos z``.
``azimuth``
    Two terms, ``cos az`` and ``sin az`` of AZ_PNT (a periodic quantity has no linear term).
``time``
    Years since MJD 51544 (2000-01-01) at the run's start: ageing of mirrors and cameras.
``event_rate``
    ``ln(EVENT_COUNT / ONTIME)``: the run's whole recorded event rate (all energies and
    offsets, from the obs index). It carries trigger-rate information (weather, NSB,
    hardware), but it is counted from the same events a model predicts: read results that
    use it as a model fed with part of the answer (see the docs).
``MUONEFF``, ``N_TELS``, ``NSBLEVEL``, ... (any numeric obs-table column)
    ``ln`` of the value for the strictly positive efficiency and multiplicity columns
    (:data:`LOG_COLUMNS`: the rate scales as a power of them), the value itself otherwise.

:func:`condition_matrix` gives the raw term values ``(runs, terms)`` and their names;
standardising them is the fit's business (:mod:`xbkg.conditional`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["COMPUTED", "LOG_COLUMNS", "parse_conditions", "term_names", "condition_matrix"]

#: Conditions computed from several obs-table columns.
COMPUTED = ("zenith", "azimuth", "time", "event_rate")
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


def _values(store: xr.Dataset, name: str) -> list[np.ndarray]:
    if name == "zenith":
        return [np.log(np.cos(np.radians(_column(store, "zenith"))))]
    if name == "azimuth":
        az = np.radians(_column(store, "AZ_PNT"))
        return [np.cos(az), np.sin(az)]
    if name == "time":
        return [(_start_mjd(store) - _MJD_2000) / _DAYS_PER_YEAR]
    if name == "event_rate":
        return [np.log(_column(store, "EVENT_COUNT") / _column(store, "ONTIME"))]
    values = _column(store, name)
    if name.upper() in LOG_COLUMNS:
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.where(values > 0, np.log(values), np.nan)]
    return [values]


def condition_matrix(store: xr.Dataset, conditions) -> tuple[np.ndarray, list[str]]:
    """Term values of every run of ``store``: array ``(runs, terms)`` and the term names.

    Raises ValueError naming the condition for an unknown name, and naming the runs whose
    value is missing or not finite.
    """
    conditions = parse_conditions(conditions)
    columns = []
    for name in conditions:
        columns += _values(store, name)
    x = np.stack(columns, axis=1) if columns else np.zeros((store.sizes["obs_id"], 0))
    bad = ~np.isfinite(x)
    if bad.any():
        names = term_names(conditions)
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        runs = store.obs_id.values[bad[:, j]][:5].tolist()
        raise ValueError(f"condition {names[j]!r}: no finite value for run(s) {runs}")
    return x, term_names(conditions)
