"""Kernels: binning, histogram, exposure, grouping, model assembly and netCDF round trip."""

import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.building.grouping import zenith_groups
from xbkg.building.histogram import bin_index, histogram
from xbkg.core.binning import axis_coords, edges_of, energy_mask, parse_edges, run_energy_mask
from xbkg.core.runs import RunInfo
from xbkg.core.schema import ModelSchemaError, assemble_model, rate_from_counts, validate_model
from xbkg.sky.exposure import annulus_solid_angle, box_solid_angle, exposure_cube


@pytest.mark.parametrize("spec,log,expected", [
    ("0:1:2", False, [0, 0.5, 1]),
    ("1:100:2", True, [1, 10, 100]),
    ("0,1, 3", False, [0, 1, 3]),
    ([0, 2], False, [0, 2]),
])
def test_parse_edges(spec, log, expected):
    np.testing.assert_allclose(parse_edges(spec, log=log), expected)


@pytest.mark.parametrize("spec,match", [
    ("1:2", "cannot parse"), ("a,b", "cannot parse"), ([1], "at least two"),
    ([2, 1], "strictly increasing"), ("0:1:0", "cannot parse"), ([0, 1], "positive"),
    ([0, np.inf], "finite"),
])
def test_parse_edges_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_edges(spec, log=match == "positive")


def test_axis_coords_round_trip():
    edges = np.geomspace(0.1, 100, 7)
    ds = xr.Dataset(coords=axis_coords("energy", edges))
    np.testing.assert_array_equal(edges_of(ds, "energy"), edges)
    np.testing.assert_allclose(ds.energy.values, np.sqrt(edges[1:] * edges[:-1]))
    sub = ds.isel(energy=slice(2, 4))
    np.testing.assert_array_equal(edges_of(sub, "energy"), edges[2:5])
    with pytest.raises(ValueError, match="contiguous"):
        edges_of(ds.isel(energy=[0, 2]), "energy")


@pytest.mark.parametrize("seed", range(3))
def test_histogram_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 3.5, 10000)
    y = rng.uniform(-1, 5, 10000)
    x[:10] = [0, 1, 2, 3, np.nan, 3.0, 0.0, -0.0, 2.5, 3.0000001]
    ex = np.array([0.0, 0.7, 1.5, 3.0])
    ey = np.linspace(0, 4, 9)
    ours = histogram([bin_index(x, ex), bin_index(y, ey)], (3, 8))
    ref, _, _ = np.histogram2d(x[np.isfinite(x)], y[np.isfinite(x)], bins=(ex, ey))
    np.testing.assert_array_equal(ours, ref.astype(int))


def test_solid_angles():
    full = annulus_solid_angle(np.linspace(0, 180, 7)).sum()
    assert full == pytest.approx(4 * np.pi, rel=1e-12)
    np.testing.assert_allclose(annulus_solid_angle([0, 1, 2], offset_max=1.5)[1],
                               2 * np.pi * (np.cos(np.radians(1)) - np.cos(np.radians(1.5))))
    # hemisphere as a box in lon/lat: 2 pi
    box = box_solid_angle(np.linspace(-90, 90, 5), np.linspace(-90, 90, 3))
    assert box.sum() == pytest.approx(2 * np.pi, rel=1e-12)
    # a box cut by a circle it contains: exactly the disc's solid angle
    e = np.linspace(-2, 2, 9)
    cut = box_solid_angle(e, e, offset_max=2.0)
    disc = 2 * np.pi * (1 - np.cos(np.radians(2.0)))
    assert cut.sum() == pytest.approx(disc, rel=1e-9)
    assert box_solid_angle(e, e).sum() > cut.sum()


def test_exposure_cube_shape_and_value():
    energy = np.array([1.0, 2.0, 4.0])
    sa = annulus_solid_angle([0, 1, 2])
    exp = exposure_cube(np.array([[10.0, 10.0], [5.0, 0.0]]), energy, sa)
    assert exp.shape == (2, 2, 2)
    assert exp[0, 1, 1] == pytest.approx(10 * 2e6 * sa[1])
    assert exp[1, 1, 0] == 0


def test_zenith_groups():
    np.testing.assert_array_equal(zenith_groups([0, 20, 90, 91, np.nan], [0, 20, 90]),
                                  [0, 1, 1, -1, -1])


def _model(kind="3d", ngroups=2, seed=0):
    rng = np.random.default_rng(seed)
    e = np.geomspace(0.1, 100, 6)
    if kind == "2d":
        fov = {"offset": np.linspace(0, 2.5, 5)}
        shape = (ngroups, 5, 4)
    else:
        fov = {"detx": np.linspace(-2, 2, 5), "dety": np.linspace(-1.5, 1.5, 4)}
        shape = (ngroups, 5, 3, 4)
    counts = rng.poisson(5, shape).astype("int64")
    exposure = rng.uniform(1e6, 2e6, shape)
    return assemble_model(counts, exposure, kind=kind, energy_edges=e, fov_edges=fov,
                          zenith_edges=np.linspace(0, 60, ngroups + 1), fov_alignment="ALTAZ",
                          offset_max=2.0, provenance={"test": True})


def test_rate_policy():
    rate, err = rate_from_counts(np.array([0, 4, 3]), np.array([2.0, 2.0, 0.0]))
    np.testing.assert_array_equal(rate, [0, 2, 0])
    np.testing.assert_allclose(err[:2], [0.5, 1.0])
    assert np.isnan(err[2])


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_netcdf_round_trip(tmp_path, kind):
    model = _model(kind)
    path = xbkg.save_model(model, tmp_path / "m.nc")
    again = xbkg.open_model(path)
    xr.testing.assert_identical(again, model)
    with pytest.raises(FileExistsError):
        xbkg.save_model(model, path)
    xbkg.save_model(model, path, overwrite=True)


def test_validate_model_errors():
    model = _model("3d")
    validate_model(model)
    bad = model.copy()
    bad.attrs["kind"] = "4d"
    with pytest.raises(ModelSchemaError, match="kind"):
        validate_model(bad)
    with pytest.raises(ModelSchemaError, match="dims"):
        validate_model(model.assign(counts=model.counts.transpose("energy", ...)))


def test_rate_floor_policy():
    counts = np.zeros((1, 3, 2), dtype="int64")
    counts[0, 1] = [10, 0]
    counts[0, 2] = [0, 0]
    exposure = np.ones((1, 3, 2))
    model = assemble_model(counts, exposure, kind="2d", energy_edges=[1, 2, 4, 8],
                           fov_edges={"offset": [0, 1, 2]}, zenith_edges=[0, 90],
                           fov_alignment="RADEC", offset_max=2, relative_floor=1e-3)
    rate = model["rate"].values[0]
    assert rate[1, 0] == 10
    # empty bins: 1e-3 x the FoV-mean rate of the energy bin, or of the nearest populated one
    np.testing.assert_allclose(rate[1, 1], 1e-3 * 5)
    np.testing.assert_allclose(rate[0], 1e-3 * 5)
    np.testing.assert_allclose(rate[2], 1e-3 * 5)
    off = assemble_model(counts, exposure, kind="2d", energy_edges=[1, 2, 4, 8],
                         fov_edges={"offset": [0, 1, 2]}, zenith_edges=[0, 90],
                         fov_alignment="RADEC", offset_max=2, relative_floor=0)
    assert off["rate"].values[0, 1, 1] == 0


@pytest.mark.parametrize("edges", [
    np.geomspace(0.1, 100, 21), np.linspace(-2.5, 2.5, 26), np.linspace(0, 2.5, 11),
    np.array([0.0, 0.1, 1.0, 3.0]),
    np.geomspace(1e-3, 1e3, 61),  # too many decades for a linear table: the log table
    np.array([0.0, 1e-9, 1.0]),  # no table fits: binary search
    np.sin(np.radians(np.linspace(0, 2.5, 11)) / 2) ** 2,  # offsets as haversines
    np.linspace(1e6, 1e6 + 1, 11),  # far from zero: rounding would exceed the table's margin
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bin_index_equals_searchsorted(edges, dtype):
    rng = np.random.default_rng(1)
    lo, hi = edges[0], edges[-1]
    values = np.concatenate([
        rng.uniform(lo - 1, hi + 1, 20000), edges, np.nextafter(edges, -np.inf),
        np.nextafter(edges, np.inf), [np.nan, -np.inf, np.inf, 0.0, -0.0, -1.0],
        np.exp(rng.uniform(np.log(0.05), np.log(200), 20000)),
        rng.uniform(lo, hi, 20000) * (1 + 1e-15 * rng.standard_normal(20000)),
    ]).astype(dtype)
    before = values.copy()
    ref = np.searchsorted(edges, values.astype(float), side="right") - 1
    ref[values == edges[-1]] = edges.size - 2
    ref[(ref < 0) | (ref > edges.size - 2) | np.isnan(values)] = -1
    np.testing.assert_array_equal(bin_index(values, edges), ref)
    np.testing.assert_array_equal(values, before)  # the input is left alone


def test_summary_text_and_html():
    import xbkg.accessor  # noqa: F401

    model = _model("3d")
    text = model.bkg.summary()
    assert "3D, FoV alignment ALTAZ" in text and "group 1: zenith 30-60 deg" in text
    html = model.bkg._repr_html_()
    assert html.startswith("<div>") and "<td>30-60</td>" in html
    assert str(int(model["counts"].isel(zenith_group=1).sum())) in html


def test_bin_index_table_kinds():
    """The lookup table is linear, logarithmic or absent (binary search) as the edges need."""
    from xbkg.building.histogram import _lookup_table

    def kind(edges):
        table = _lookup_table(np.asarray(edges, dtype=float).tobytes())
        return None if table is None else table[0]

    assert kind(np.linspace(-2.5, 2.5, 26)) == "lin"
    assert kind(np.geomspace(1e-3, 1e3, 61)) == "log"
    assert kind([0.0, 1e-9, 1.0]) is None
    assert kind([0.0, 2.0, 1.0]) is None  # not increasing


def test_run_threshold_mask_is_the_validation_energy_mask():
    """One rule for which energy bins a bound keeps, in the build (a run's threshold) and in
    the validation (its safe range): the same bins, float32-rounded edges included."""
    edges = np.geomspace(0.1, 100.0, 21)
    thresholds = [0.05, 0.1, float(np.float32(edges[3])), edges[3] * (1 + 2e-6), 0.77, 100.0,
                  500.0]
    for thr in thresholds:
        build = run_energy_mask(RunInfo(e_threshold=thr), edges)
        np.testing.assert_array_equal(build, energy_mask(edges, thr).astype(float))
        assert build.dtype == float and build.shape == (20,)
    assert build.sum() == 0  # above the last edge: no bin
    assert run_energy_mask(RunInfo(e_threshold=float(np.float32(edges[3]))), edges)[3] == 1.0
    for missing in (RunInfo(), RunInfo(e_threshold=np.nan), RunInfo(e_threshold=np.inf)):
        np.testing.assert_array_equal(run_energy_mask(missing, edges), np.ones(20))
    per_run = energy_mask(edges, [0.2, np.nan], [10.0, 10.0])
    assert per_run.shape == (2, 20) and per_run[1, 0] and not per_run[0, 0]
