"""Counts cubes of one run (numpy kernels).

:func:`bin_index` and :func:`histogram` turn values into bin indices and counts exactly as
:func:`numpy.histogramdd` does (bins ``[lo, hi)``, the last one closed); :func:`run_counts`
computes one run's cube from its event columns (offset cut, FoV coordinates in the requested
alignment). The reduction over runs is in :mod:`xbkg.building.reduce`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from xbkg.core.binning import Binning
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.sky import fov
from xbkg.sky.earth import run_altaz_params

__all__ = ["bin_index", "histogram", "fov_coordinates", "run_counts"]


#: Most cells of a bin-index lookup table (intp entries: at most 512 kB, in the L2 cache).
_CELLS_MAX = 1 << 16
#: Fewest cells the narrowest bin must span for the table to be used.
_CELLS_PER_BIN_MIN = 8
_AMBIGUOUS = -2


def _exact_index(values: np.ndarray, edges: np.ndarray, outside: int = -1) -> np.ndarray:
    """Bin of each value by binary search (``outside`` outside or NaN), numpy-histogram
    convention."""
    idx = np.searchsorted(edges, values, side="right") - 1
    np.putmask(idx, values == edges[-1], edges.size - 2)  # the last bin includes its upper edge
    np.putmask(idx, ~((values >= edges[0]) & (values <= edges[-1])), outside)
    return idx


def _transform(values, scale: str, k: float = 1.0) -> np.ndarray:
    """``k`` x the coordinate the table is uniform in (a new float64 array): values or log."""
    if scale == "log":
        out = np.log(values, dtype=np.float64)
        out *= k
        return out
    return np.multiply(values, k, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _lookup_table(data: bytes, outside: int = -1):
    """``(scale, origin, cells per unit, table)`` for these edges, or None (binary search).

    Cell ``c`` covers ``[origin + c / k, origin + (c + 1) / k)`` of the transformed values; its
    entry is the bin of every value in it (the cell widened by 1e-6 of itself, far more than
    the rounding of ``(t - origin) * k``), ``outside`` beyond the edges, or ``_AMBIGUOUS`` when
    an edge lies in it. A sentinel entry ``outside`` at each end takes the values further
    below and above the edges.
    """
    edges = np.frombuffer(data, dtype=float)
    if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        return None
    scales = ["lin", "log"] if edges[0] > 0 else ["lin"]
    for scale in scales:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = _transform(edges, scale)
        span = t[-1] - t[0]
        narrowest = float(np.diff(t).min()) / span
        # enough cells for the narrowest bin, and few enough edge cells (about 1/256 of each
        # bin's values need the binary search)
        wanted = max(_CELLS_PER_BIN_MIN / narrowest, 256 * (edges.size - 1))
        cells = int(min(_CELLS_MAX, 2 ** math.ceil(math.log2(wanted))))
        if narrowest * cells < _CELLS_PER_BIN_MIN or not np.isfinite(span) or span <= 0:
            continue
        k = cells / span
        if max(abs(t[0]), abs(t[-1])) * k * 1e-15 > 1e-7:  # rounding of u beyond the margin
            continue
        c = np.arange(cells + 1, dtype=float)
        lo, hi = t[0] + (c - 1e-6) / k, t[0] + (c + 1 + 1e-6) / k
        if scale == "log":
            lo, hi = np.exp(lo), np.exp(hi)
        a, b = _exact_index(lo, edges, outside), _exact_index(hi, edges, outside)
        table = np.concatenate([[outside], np.where(a == b, a, _AMBIGUOUS), [outside]])
        return scale, float(t[0]), float(k), table.astype(np.intp)
    return None


def bin_index(values: np.ndarray, edges: np.ndarray, outside: int = -1) -> np.ndarray:
    """Bin index of each value (``outside`` outside the edges or NaN), numpy-histogram
    convention.

    Bins are ``[lo, hi)``, the last one closed. A lookup table on a fine grid uniform in the
    values (or in their logarithm for edges spanning decades) gives most values their bin in
    a few passes; the few values in a grid cell holding an edge are placed by binary search,
    so the result equals ``searchsorted`` exactly for any sorted edges.

    >>> bin_index(np.array([0.0, 0.5, 1.0, 2.0, 2.5, np.nan]), np.array([0.0, 1.0, 2.0]))
    array([ 0,  0,  1,  1, -1, -1])
    """
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    outside = int(outside)
    if 0 <= outside < edges.size - 1 or outside == _AMBIGUOUS:
        raise ValueError(f"outside must not be a bin index or {_AMBIGUOUS}, got {outside}")
    lookup = _lookup_table(edges.tobytes(), outside)
    if lookup is None:
        return _exact_index(values, edges, outside)
    scale, origin, k, table = lookup
    with np.errstate(invalid="ignore", divide="ignore"):
        u = _transform(values, scale, k)
        u -= origin * k
    np.fmax(u, -1.0, out=u)  # NaN -> -1 (fmax ignores NaN)
    np.fmin(u, table.size - 2, out=u)
    cell = u.astype(np.intp)  # truncation: (-1, 0) -> cell 0, which holds the lower edge
    cell += 1
    idx = table.take(cell)
    ambiguous = np.flatnonzero(idx == _AMBIGUOUS)
    if ambiguous.size:
        idx[ambiguous] = _exact_index(values[ambiguous], edges, outside)
    return idx


#: Index marking a value outside the edges in :func:`_flat_counts` (above any cube size).
_OUTSIDE = 2**31


def histogram(indices: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Counts (int64, ``shape``) of events with the given per-axis bin indices (``-1`` dropped)."""
    indices = [np.where(np.asarray(i) < 0, _OUTSIDE, i) for i in indices]
    return _flat_counts(indices, shape)


def _flat_counts(indices: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Counts of events with per-axis bin indices, :data:`_OUTSIDE` marking dropped events.

    The row-major flat index of an event with any index :data:`_OUTSIDE` is at least the
    cube size (no int64 overflow for cubes below 2**31 bins), so one ``minimum`` sends every
    dropped event to the extra bin that is cut off.
    """
    size = math.prod(shape)
    if size >= _OUTSIDE:
        raise ValueError(f"cube of {size} bins is too large (at most {_OUTSIDE - 1})")
    flat = np.multiply(indices[0], np.int64(shape[1]) if len(shape) > 1 else 1, dtype=np.int64)
    for k in range(1, len(shape)):
        flat += indices[k]
        if k + 1 < len(shape):
            flat *= shape[k + 1]
    np.minimum(flat, size, out=flat)
    return np.bincount(flat, minlength=size + 1)[:size].reshape(shape).astype(np.int64, copy=False)


def fov_coordinates(columns: dict, info: RunInfo, binning: Binning) -> dict[str, np.ndarray]:
    """FoV coordinates of a run's events for ``binning``: ``offset`` and, for 3D, ``detx``/``dety``."""
    info = as_run_info(info)
    ra, dec = columns["RA"], columns["DEC"]
    out = {"offset": fov.offset_deg(ra, dec, info.ra_pnt, info.dec_pnt)}
    if binning.kind == "3d":
        out["detx"], out["dety"] = _fov_lonlat(columns, info, binning)
    return out


def _fov_lonlat(columns: dict, info: RunInfo, binning: Binning):
    ra, dec = columns["RA"], columns["DEC"]
    if binning.fov_alignment == "RADEC":
        return fov.radec_to_fov(ra, dec, info.ra_pnt, info.dec_pnt)
    return fov.radec_to_altaz_fov(ra, dec, columns["TIME"], run_altaz_params(info))


def run_counts(columns: dict, info: RunInfo, binning: Binning, hav=None) -> np.ndarray:
    """One run's counts cube, shape ``binning.shape``, from its event columns.

    Events beyond ``binning.offset_max`` from the pointing, or outside the edges, are dropped;
    in 3D only the events within the offset cut get FoV coordinates. Offsets are compared as
    haversines (:func:`xbkg.sky.fov.haversine`), which order events like their offsets without
    the inverse tangent; ``hav``: these haversines, when the caller has them already.
    """
    info = as_run_info(info)
    if hav is None:
        hav = fov.haversine(columns["RA"], columns["DEC"], info.ra_pnt, info.dec_pnt)
    hav_max = fov.offset_to_haversine(binning.offset_max)
    if binning.kind == "2d":
        indices = [bin_index(columns["ENERGY"], binning.energy_edges, _OUTSIDE),
                   bin_index(hav, fov.offset_to_haversine(binning.fov_edges["offset"]), _OUTSIDE)]
        if binning.offset_max < binning.fov_edges["offset"][-1]:
            np.putmask(indices[1], hav > hav_max, _OUTSIDE)
        return _flat_counts(indices, binning.shape)
    keep = np.flatnonzero(hav <= hav_max)
    if keep.size < hav.size:
        needed = ("ENERGY", "RA", "DEC") + (("TIME",) if binning.fov_alignment == "ALTAZ" else ())
        columns = {name: columns[name].take(keep) for name in needed}
    coords = dict(zip(("detx", "dety"), _fov_lonlat(columns, info, binning)))
    indices = [bin_index(columns["ENERGY"], binning.energy_edges, _OUTSIDE)]
    indices += [bin_index(coords[d], binning.fov_edges[d], _OUTSIDE) for d in binning.fov_dims]
    return _flat_counts(indices, binning.shape)
