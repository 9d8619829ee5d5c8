"""Bin edges as coordinates (xbkg.core.binning): specs, CF bounds, energy masks of runs."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, strategies as st
from strategies import FAST, edges, log_edges

from xbkg.core.binning import (
    BOUNDS_DIM,
    MAX_BINS,
    axis_coords,
    bounds_name,
    edges_of,
    lin_edges,
    log_edges as make_log_edges,
    parse_edges,
    run_energy_mask,
)
from xbkg.core.runs import RunInfo


@FAST
@given(lo=st.floats(0.001, 10.0), decades=st.floats(0.1, 5.0), n=st.integers(1, 200))
def test_spec_strings_give_the_edges_of_their_numbers(lo, decades, n):
    hi = lo * 10**decades
    got = parse_edges(f"{lo!r}:{hi!r}:{n}", log=True)
    np.testing.assert_array_equal(got, make_log_edges(lo, hi, n))
    assert got.size == n + 1 and got[0] == lo and np.all(np.diff(np.log(got)) > 0)
    np.testing.assert_allclose(np.diff(np.log(got)), np.log(hi / lo) / n, rtol=1e-9)
    np.testing.assert_array_equal(parse_edges(f"{lo!r}:{hi!r}:{n}"), lin_edges(lo, hi, n))
    listed = ", ".join(repr(float(v)) for v in got)
    np.testing.assert_array_equal(parse_edges(listed), got)


@pytest.mark.parametrize("spec, match", [
    ("1:0:3", "hi must be larger"), ("0:1:0", "integer >= 1"), (f"0:1:{MAX_BINS + 1}", "at most"),
    ("0:1", "three parts"), ("a:1:2", "numbers"), ([1.0], "two edges"), ([0, 2, 1], "increasing"),
    ([0, np.inf], "finite"),
])
def test_bad_specs_say_what_is_wrong(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_edges(spec, name="energy edges")


def test_limits_and_log_positivity():
    with pytest.raises(ValueError, match=r"within \[0, 90\]"):
        parse_edges([0, 95], limits=(0, 90))
    with pytest.raises(ValueError, match="lo > 0"):
        parse_edges("0:10:3", log=True)


@FAST
@given(axis=st.sampled_from(["energy", "offset", "detx"]).flatmap(
    lambda dim: st.tuples(st.just(dim), log_edges() if dim == "energy" else edges())))
def test_axis_coordinates_round_trip_to_the_same_edges(axis):
    dim, edges = axis
    coords = axis_coords(dim, edges)
    assert set(coords) == {dim, bounds_name(dim)}
    assert coords[bounds_name(dim)].dims == (dim, BOUNDS_DIM)
    centres = coords[dim].values
    assert np.all((edges[:-1] <= centres) & (centres <= edges[1:]))
    if dim == "energy":
        np.testing.assert_allclose(centres, np.sqrt(edges[:-1] * edges[1:]), rtol=1e-14)
    ds = xr.Dataset(coords=coords)
    np.testing.assert_array_equal(edges_of(ds, dim), edges)
    if edges.size > 3:  # a selection with a gap has no single edge array
        with pytest.raises(ValueError, match="not contiguous"):
            edges_of(ds.isel({dim: [0, 2]}), dim)


def test_run_energy_mask_drops_bins_below_the_threshold():
    e = np.array([0.1, 0.3, 1.0, 3.0])
    np.testing.assert_array_equal(run_energy_mask(RunInfo(), e), [1, 1, 1])
    np.testing.assert_array_equal(run_energy_mask(RunInfo(e_threshold=np.nan), e), [1, 1, 1])
    np.testing.assert_array_equal(run_energy_mask(RunInfo(e_threshold=0.3), e), [0, 1, 1])
    np.testing.assert_array_equal(run_energy_mask(RunInfo(e_threshold=float(np.float32(0.3))), e),
                                  [0, 1, 1])  # float32 threshold keeps the bin starting at it
    np.testing.assert_array_equal(run_energy_mask(RunInfo(e_threshold=0.31), e), [0, 0, 1])
