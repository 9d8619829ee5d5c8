"""The FoV extent of a run: the largest event offset, robust against a few stray events."""

from __future__ import annotations

import numpy as np

from xbkg.sky.fov import haversine

__all__ = ["STRAY_GAP", "robust_max_offset", "run_max_offset"]


#: Events separated from all others by more than this (deg) at the outer edge are strays.
STRAY_GAP = 0.5



def robust_max_offset(offset, gap: float = STRAY_GAP, max_fraction: float = 1e-3) -> float:
    """Largest offset (deg), ignoring up to ``k = max(3, max_fraction x n)`` stray events that
    lie more than ``gap`` beyond the rest (NaN without events). Runs of fewer than ``10 (k + 1)``
    events are too small to call any event a stray: their largest offset is returned.

    >>> robust_max_offset(np.r_[np.linspace(0.0, 2.0, 100), 25.0, 30.0])
    2.0
    >>> robust_max_offset([0.1, 1.5, 1.99, 30.0])
    30.0
    """
    off = np.asarray(offset, dtype=float)
    off = off[np.isfinite(off)]
    if not off.size:
        return float("nan")
    k = max(3, int(max_fraction * off.size)) + 1
    if off.size < 10 * k:
        return float(off.max())
    return _below_strays(np.partition(off, off.size - k)[off.size - k:], gap)



def _below_strays(top, gap: float) -> float:
    """The largest of the farthest offsets ``top`` below the first jump of more than ``gap``."""
    top = np.sort(top)
    jumps = np.flatnonzero(np.diff(top) > gap)
    return float(top[jumps[0]] if jumps.size else top[-1])



def run_max_offset(ra, dec, ra_pnt, dec_pnt, gap: float = STRAY_GAP,
                   max_fraction: float = 1e-3, hav=None) -> float:
    """:func:`robust_max_offset` of events at ``ra``, ``dec`` (deg) from the pointing, with
    offsets computed for the farthest few events only (the build's single pass measures the
    extent this way, :func:`xbkg.make_model`): the others are ordered by their haversine
    (``hav``, :func:`xbkg.sky.fov.haversine`, computed unless given).

    >>> ra = np.r_[np.linspace(0.0, 2.0, 100), 25.0, 30.0]
    >>> run_max_offset(ra, np.zeros_like(ra), 0.0, 0.0) == robust_max_offset(ra)
    True
    """
    if hav is None:
        hav = haversine(ra, dec, ra_pnt, dec_pnt)
    n = hav.size - int(np.count_nonzero(np.isnan(hav)))
    if not n:
        return float("nan")
    k = max(3, int(max_fraction * n)) + 1
    far = [int(np.nanargmax(hav))] if n < 10 * k else _farthest(hav, n, k)
    h = hav[far]
    off = np.degrees(2.0 * np.arctan(np.sqrt(h / (1.0 - h))))  # as offset_deg, within 1e-15
    if n < 10 * k:  # too few events for strays: the largest offset
        return float(off[0])
    return _below_strays(off[np.isfinite(off)], gap)



def _farthest(hav: np.ndarray, n: int, k: int) -> np.ndarray:
    """Indices of the ``k`` largest of the ``n`` finite haversines ``hav`` (plus any NaN).

    A threshold from every 64th value usually leaves a few times ``k`` candidates, so only
    they are partitioned; otherwise all values are (NaN sorts last).
    """
    sub = hav[::64]
    j = min(sub.size - 1, 2 * (k // 64) + 8)
    with np.errstate(invalid="ignore"):
        candidates = np.flatnonzero(hav > np.partition(sub, sub.size - 1 - j)[sub.size - 1 - j])
    if k <= candidates.size <= 64 * k:
        return candidates[np.argpartition(hav[candidates], candidates.size - k)[-k:]]
    return np.argpartition(hav, n - k)[n - k:]
