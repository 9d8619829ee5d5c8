"""Grouping runs: zenith-angle groups from declared edges.

Groups are decided from the observation table alone (no event is read), before any model is
built, so they can be inspected and reused.
"""

from __future__ import annotations

import numpy as np

from .binning import parse_edges

__all__ = ["DEFAULT_ZENITH_EDGES", "zenith_groups"]

#: One group covering all zenith angles.
DEFAULT_ZENITH_EDGES = np.array([0.0, 90.0])


def zenith_groups(zenith, edges=DEFAULT_ZENITH_EDGES) -> np.ndarray:
    """Group index of each run from its zenith angle (deg); -1 outside the edges.

    Bins are ``[lo, hi)`` except the last, which includes its upper edge.

    >>> zenith_groups([10.0, 25.0, 40.0, 95.0], [0, 20, 40])
    array([ 0,  1,  1, -1])
    """
    edges = parse_edges(edges, name="zenith edges")
    zenith = np.asarray(zenith, dtype=float)
    idx = np.searchsorted(edges, zenith, side="right") - 1
    idx[zenith == edges[-1]] = edges.size - 2
    idx[(idx < 0) | (idx >= edges.size - 1) | ~np.isfinite(zenith)] = -1
    return idx.astype("int64")
