"""Shared Hypothesis strategies: bin edges, events, and ways to cut work into pieces.

The property tests check that every stage that sums (histograms, the tree over runs, exposure,
updates and merges of models) gives the same result however its input is chunked; these
strategies draw the chunkings. Settings for all of them: :data:`FAST` (few examples, no
deadline: the machine may be busy).
"""

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st

#: Settings of the property tests of the fast tier: a few examples each, no deadline.
FAST = settings(max_examples=10, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

seeds = st.integers(0, 2**32 - 1)


@st.composite
def edges(draw, min_bins: int = 1, max_bins: int = 12, lo: float = -5.0, hi: float = 5.0):
    """Strictly increasing bin edges within ``[lo, hi]`` (uneven widths)."""
    n = draw(st.integers(min_bins, max_bins))
    values = draw(st.lists(st.floats(lo, hi, allow_nan=False, width=64), min_size=n + 1,
                           max_size=n + 1, unique=True))
    out = np.sort(np.asarray(values))
    if np.any(np.diff(out) < 1e-9 * (hi - lo)):
        out = np.linspace(out[0], out[0] + (hi - lo) / 2, n + 1)  # too close: evenly spaced
    return out


@st.composite
def log_edges(draw, min_bins: int = 1, max_bins: int = 20):
    """Increasing energy edges (TeV) spanning up to four decades, log-spaced or uneven."""
    n = draw(st.integers(min_bins, max_bins))
    lo = draw(st.floats(0.01, 1.0))
    decades = draw(st.floats(0.5, 4.0))
    if draw(st.booleans()):
        return np.geomspace(lo, lo * 10**decades, n + 1)
    cuts = np.sort(draw(st.lists(st.floats(0.0, 1.0), min_size=n - 1, max_size=n - 1)))
    out = lo * 10 ** (decades * np.concatenate([[0.0], cuts, [1.0]]))
    return np.unique(out) if np.unique(out).size >= 2 else np.geomspace(lo, lo * 10, 2)


@st.composite
def partitions(draw, n: int, max_parts: int | None = None):
    """Sizes (>= 1) of consecutive pieces covering ``n`` items."""
    if n <= 1:
        return [n] if n else []
    cuts = draw(st.sets(st.integers(1, n - 1), max_size=(max_parts or n) - 1))
    bounds = [0, *sorted(cuts), n]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def split(values, sizes):
    """``values`` cut into consecutive pieces of ``sizes``."""
    return np.split(np.asarray(values), np.cumsum(sizes)[:-1])


@st.composite
def groupings_of(draw, items, max_groups: int = 4):
    """``items`` shuffled and dealt into 1..``max_groups`` non-empty lists."""
    items = list(draw(st.permutations(list(items))))
    sizes = draw(partitions(len(items), max_parts=min(max_groups, len(items))))
    return [list(piece) for piece in split(items, sizes)]
