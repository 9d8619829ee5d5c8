"""Counts cubes of one run (xbkg.building.histogram): bin indices, histograms, run cubes.

The sums must not depend on how a run's events are chunked: histograms of the pieces add up
to the histogram of the whole, bit for bit.
"""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from strategies import FAST, edges, log_edges, partitions, seeds, split

from xbkg.building.histogram import (
    Binning,
    bin_index,
    fov_coordinates,
    histogram,
    run_counts,
)
from xbkg.core.runs import RunInfo
from xbkg.sky.fov import offset_deg

RA0, DEC0 = 83.6, 22.0


def _events(seed: int, n: int, spread: float = 3.0) -> dict:
    """Event columns around the pointing (RA0, DEC0): energies 0.01-300 TeV, some NaN."""
    rng = np.random.default_rng(seed)
    columns = {
        "ENERGY": np.exp(rng.uniform(np.log(0.01), np.log(300.0), n)),
        "RA": RA0 + rng.uniform(-spread, spread, n) / np.cos(np.radians(DEC0)),
        "DEC": DEC0 + rng.uniform(-spread, spread, n),
        "TIME": rng.uniform(0.0, 1680.0, n),
    }
    if n:
        columns["ENERGY"][rng.integers(0, n, max(1, n // 50))] = np.nan
    return columns


def _binning(kind: str, offset_max: float = 2.5) -> Binning:
    energy = np.geomspace(0.1, 100.0, 13)
    if kind == "2d":
        return Binning("2d", "ALTAZ", energy, {"offset": np.linspace(0, 2.5, 11)}, offset_max)
    fov = np.linspace(-2.0, 2.0, 17)
    return Binning("3d", "RADEC", energy, {"detx": fov, "dety": fov}, offset_max)


INFO = RunInfo(ra_pnt=RA0, dec_pnt=DEC0)


def test_binning_shape_and_dims():
    assert _binning("2d").fov_dims == ("offset",) and _binning("2d").shape == (12, 10)
    assert _binning("3d").fov_dims == ("dety", "detx") and _binning("3d").shape == (12, 16, 16)


@FAST
@given(edges=st.one_of(edges(), log_edges()), seed=seeds, dtype=st.sampled_from([np.float32,
                                                                                 np.float64]))
def test_bin_index_is_numpys_convention_for_any_edges(edges, seed, dtype):
    rng = np.random.default_rng(seed)
    span = edges[-1] - edges[0]
    values = np.concatenate([rng.uniform(edges[0] - span, edges[-1] + span, 500), edges,
                             [np.nan]]).astype(dtype)
    got = bin_index(values, edges)
    x = values.astype(np.float64)
    want = np.searchsorted(edges, x, side="right") - 1
    want[x == edges[-1]] = edges.size - 2
    want[~((x >= edges[0]) & (x <= edges[-1]))] = -1
    np.testing.assert_array_equal(got, want)


@FAST
@given(seed=seeds, n=st.integers(0, 3000), data=st.data())
def test_histogram_of_chunks_adds_up_to_the_whole(seed, n, data):
    rng = np.random.default_rng(seed)
    shape = (5, 7)
    idx = [rng.integers(-1, s, n) for s in shape]  # -1: dropped
    whole = histogram(idx, shape)
    sizes = data.draw(partitions(n, max_parts=8)) if n else []
    parts = [histogram(list(piece), shape)
             for piece in zip(*(split(i, sizes) for i in idx))] if n else []
    total = sum(parts, np.zeros(shape, np.int64))
    np.testing.assert_array_equal(total, whole)
    assert whole.dtype == np.int64 and whole.sum() == np.sum((idx[0] >= 0) & (idx[1] >= 0))
    ref, _ = np.histogramdd(np.stack(idx, 1)[(idx[0] >= 0) & (idx[1] >= 0)],
                            bins=[np.arange(s + 1) for s in shape])
    np.testing.assert_array_equal(whole, ref)


@FAST
@given(kind=st.sampled_from(["2d", "3d"]), seed=seeds, n=st.integers(1, 4000),
       offset_max=st.sampled_from([1.0, 2.0, 2.5]), data=st.data())
def test_run_counts_of_chunks_add_up_to_the_whole_run(kind, seed, n, offset_max, data):
    """A run's cube from its events in pieces, summed, is the cube of the whole run."""
    binning = _binning(kind, offset_max)
    columns = _events(seed, n)
    whole = run_counts(columns, INFO, binning)
    sizes = data.draw(partitions(n, max_parts=6))
    pieces = [dict(zip(columns, values))
              for values in zip(*(split(v, sizes) for v in columns.values()))]
    total = sum(run_counts(piece, INFO, binning) for piece in pieces)
    np.testing.assert_array_equal(total, whole)
    # and every event inside the offset cut and the edges is counted once
    off = offset_deg(columns["RA"], columns["DEC"], RA0, DEC0)
    e = columns["ENERGY"]
    inside = (off <= offset_max) & (e >= 0.1) & (e <= 100.0)
    if kind == "2d":
        assert whole.sum() == np.sum(inside & (off <= 2.5))
    else:
        c = fov_coordinates(columns, INFO, binning)
        inside &= (np.abs(c["detx"]) <= 2.0) & (np.abs(c["dety"]) <= 2.0)
        assert abs(int(whole.sum()) - int(np.sum(inside))) <= 2  # edge rounding of haversines


def test_run_counts_2d_equals_numpy_histogram():
    columns = _events(3, 5000)
    binning = _binning("2d")
    off = offset_deg(columns["RA"], columns["DEC"], RA0, DEC0)
    ok = np.isfinite(columns["ENERGY"])
    ref, _, _ = np.histogram2d(columns["ENERGY"][ok], off[ok],
                               bins=[binning.energy_edges, binning.fov_edges["offset"]])
    got = run_counts(columns, INFO, binning)
    assert got.shape == binning.shape
    assert np.abs(got - ref).sum() <= 2  # haversine comparison at bin edges may differ by ulps


def test_bin_index_refuses_an_outside_label_that_is_a_bin():
    with pytest.raises(ValueError, match="outside"):
        bin_index(np.array([0.5]), np.array([0.0, 1.0, 2.0]), outside=1)
