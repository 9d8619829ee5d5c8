"""What a store's own events say before a build: each run's field-of-view extent and counts peak.

No GADF keyword gives them, yet they decide how a model is binned (:func:`cut_binning` at the
extent) and thresholded (:mod:`xbkg.building.thresholds`). :func:`survey_runs` is an explicit,
eager step: a lazy build never computes it behind the user's back (docs/architecture.rst).
"""

from __future__ import annotations

import dataclasses
import logging

import dask
import numpy as np

from xbkg.building.parallel import compute
from xbkg.core.binning import Binning
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.sky.extent import STRAY_GAP, robust_max_offset, run_max_offset
from xbkg.sky.fov import offset_deg
from xbkg.store.datastore import takes_store
from xbkg.store.events import RunDataError, complete_run_info, describe_run, read_run_events

__all__ = ["EXTENT_COLUMN", "EXTENT_TOLERANCE", "PEAK_EDGES", "MIN_PEAK_EVENTS", "STRAY_GAP",
           "robust_max_offset", "run_max_offset", "run_survey", "survey_runs",
           "obs_index_extents", "counts_peak",
           "cut_binning"]

log = logging.getLogger(__name__)

#: Obs-index column (deg) that declares each run's FoV extent.
EXTENT_COLUMN = "OFFSET_MAX"
#: A binning whose offset cut is within this (deg) of the extent is not cut: the largest event
#: offset of a store cut at r lies below r by far less (1e-3 deg for 1,000 events).
EXTENT_TOLERANCE = 0.01
#: Log-energy grid (TeV) of the counts-peak histograms: 0.01-1000 TeV, 20 bins per decade.
PEAK_EDGES = np.logspace(-2, 3, 101)
#: Runs with fewer events within the offset cut give no counts peak (NaN).
MIN_PEAK_EVENTS = 200


def counts_peak(hist, edges=PEAK_EDGES, min_events: int = MIN_PEAK_EVENTS) -> float:
    """Energy (TeV) of the peak of counts per log-energy bin, or NaN with too few counts.

    The histogram is smoothed by a 3-bin running mean, its largest bin found, and the peak
    placed by a parabola through that bin and its neighbours (in log energy).

    >>> e = np.logspace(-2, 3, 101)
    >>> c = np.sqrt(e[1:] * e[:-1])
    >>> hist = np.round(1e4 * np.exp(-0.5 * (np.log10(c) - np.log10(0.3)) ** 2 / 0.1 ** 2))
    >>> round(counts_peak(hist, e), 2)
    0.3
    """
    hist = np.asarray(hist, dtype=float)
    if hist.sum() < min_events:
        return float("nan")
    smooth = np.convolve(hist, np.ones(3) / 3.0, mode="same")
    k = int(np.argmax(smooth))
    log_c = 0.5 * (np.log10(edges[1:]) + np.log10(edges[:-1]))
    shift = 0.0
    if 0 < k < smooth.size - 1:
        left, mid, right = smooth[k - 1: k + 2]
        denom = left - 2 * mid + right
        if denom < 0:
            shift = float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))
    return float(10 ** (log_c[k] + shift * (log_c[1] - log_c[0])))


def run_survey(info: RunInfo, offset_max: float, edges=PEAK_EDGES) -> dict:
    """One run's ``max_offset`` (deg, :func:`robust_max_offset`; NaN without events) and
    ``energy_hist`` (counts within ``offset_max`` on the log-energy ``edges``).

    An unreadable run gives NaN and an empty histogram plus its ``error`` (the build reports it).
    """

    info = as_run_info(info)
    try:
        cols, header = read_run_events(info.events_file, info.events_hdu,
                                       ("RA", "DEC", "ENERGY"), obs_id=info.obs_id)
        full = complete_run_info(info, header)
        if not (np.isfinite(full.ra_pnt) and np.isfinite(full.dec_pnt)):
            raise RunDataError("no pointing RA/Dec")
        offset = offset_deg(cols["RA"].astype(float), cols["DEC"].astype(float),
                            full.ra_pnt, full.dec_pnt)
    except (OSError, ValueError) as exc:
        where = describe_run(info.obs_id, info.events_file, info.events_hdu)
        message = str(exc) if isinstance(exc, RunDataError) else f"{where}: {exc}"
        return {"max_offset": float("nan"), "energy_hist": np.zeros(len(edges) - 1),
                "error": message}
    energy = np.asarray(cols["ENERGY"], dtype=float)
    hist = np.histogram(energy[offset <= offset_max], bins=edges)[0].astype(float)
    return {"max_offset": robust_max_offset(offset),
            "energy_hist": hist, "error": None}


def survey_runs(runs: list[RunInfo], offset_max: float, *, scheduler=None,
                progress: bool = False) -> dict:
    """:func:`run_survey` of every run, computed now (one task per run on ``scheduler``).

    Returns ``{"max_offset": (R,) deg, "peak_energy": (R,) TeV, "errors": [str | None]}``;
    offsets are rounded up to 0.001 deg (the largest event lies just inside a hard cut; a
    store written in other units gives the same value).
    """

    runs = [as_run_info(r) for r in runs]
    tasks = [dask.delayed(run_survey, pure=True)(info, float(offset_max),
                                                 dask_key_name=f"survey-{info.obs_id}")
             for info in runs]
    results = compute(*tasks, scheduler=scheduler, progress=progress) if tasks else ()
    max_offset = np.array([r["max_offset"] for r in results], dtype=float)
    return {"max_offset": np.ceil(np.round(max_offset * 1e3, 6)) / 1e3,
            "peak_energy": np.array([counts_peak(r["energy_hist"]) for r in results], dtype=float),
            "errors": [r["error"] for r in results]}


@takes_store("store")
def obs_index_extents(store) -> np.ndarray | None:
    """Each run's declared FoV extent (deg) from the obs-index column :data:`EXTENT_COLUMN`,
    or None when the column is absent or any value is missing."""
    if EXTENT_COLUMN not in store:
        return None
    values = np.asarray(store[EXTENT_COLUMN].values, dtype=float)
    unit = str(store[EXTENT_COLUMN].attrs.get("units", "") or "deg")
    if unit != "deg":
        import astropy.units as u

        values = (values * u.Unit(unit)).to_value("deg")
    return values if np.all(np.isfinite(values) & (values > 0)) else None


def _kept_range(edges: np.ndarray, extent: float, centred: bool) -> tuple[int, int]:
    """First and last+1 bin of ``edges`` not wholly beyond ``extent`` (offset, or |DETX|)."""
    lo, hi = edges[:-1], edges[1:]
    if centred:
        nearest = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    else:
        nearest = lo
    keep = np.flatnonzero(nearest < extent)
    return (int(keep[0]), int(keep[-1]) + 1) if keep.size else (0, 0)


def cut_binning(binning: Binning, extent: float) -> tuple[Binning, str | None]:
    """``binning`` cut at the FoV ``extent`` (deg), and a sentence saying what was cut (None
    when nothing was: the extent reaches the offset cut, within :data:`EXTENT_TOLERANCE`).

    FoV bins wholly beyond the extent are dropped and ``offset_max`` becomes the extent.

    >>> b = Binning("2d", "ALTAZ", np.array([1.0, 10.0]), {"offset": np.linspace(0, 2.5, 11)}, 2.5)
    >>> new, text = cut_binning(b, 1.9996)
    >>> float(new.fov_edges["offset"][-1]), round(new.offset_max, 4)
    (2.0, 1.9996)
    >>> text
    'offset_max 2.5 -> 2 deg; offset bins 2-2.5 deg dropped (2 bins)'
    """
    extent = float(extent)
    if not np.isfinite(extent) or extent >= binning.offset_max - EXTENT_TOLERANCE:
        return binning, None
    new_edges, dropped = {}, []
    for dim, edges in binning.fov_edges.items():
        start, stop = _kept_range(edges, extent, centred=dim != "offset")
        if stop - start < 1:
            raise ValueError(f"the events reach only {extent:.3g} deg from the pointing: no "
                             f"{dim} bin of the binning lies inside")
        new_edges[dim] = edges[start: stop + 1]
        n_drop = edges.size - 1 - (stop - start)
        if n_drop:
            outside = f"{edges[stop]:g}-{edges[-1]:g}" if dim == "offset" else \
                f"beyond |{dim}| {max(abs(new_edges[dim][0]), abs(new_edges[dim][-1])):g}"
            dropped.append(f"{dim} bins {outside} deg dropped ({n_drop} bins)")
    text = f"offset_max {binning.offset_max:g} -> {extent:.4g} deg"
    if dropped:
        text += "; " + ", ".join(dropped)
    return dataclasses.replace(binning, fov_edges=new_edges, offset_max=extent), text
