"""Evaluation and integration of models (xbkg.model.evaluate), checked against gammapy 2.0.1."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st

import xbkg.accessor  # noqa: F401  (registers ds.bkg)
from xbkg.core.binning import edges_of
from xbkg.core.schema import assemble_model, select_group, validate_model
from xbkg.model.evaluate import TINY, evaluate_rate, integrate_counts
from xbkg.sky.exposure import annulus_solid_angle, box_solid_angle
from xbkg.testing import raise_if_dask_computes

# asymmetric 3D binning: nx != ny, ranges not centred, rate depends on detx and dety differently
E_EDGES = np.geomspace(0.1, 100.0, 9)
X_EDGES = np.linspace(-2.5, 2.0, 6)
Y_EDGES = np.linspace(-2.0, 2.4, 5)
O_EDGES = np.linspace(0.0, 2.5, 6)
ZEN_EDGES = [0.0, 30.0, 50.0]
GROUP_NORM = np.array([1.0, 1.7])


def _centres(edges, log=False):
    return np.sqrt(edges[1:] * edges[:-1]) if log else 0.5 * (edges[1:] + edges[:-1])


def _model(rate, kind, fov_edges, align="RADEC"):
    """Model whose rate is exactly ``rate`` (G, E, ...): counts 1000, exposure 1000 / rate; no
    empty-bin floor, so zero bins stay 0."""
    rate = np.asarray(rate, dtype="float64")
    counts = np.where(rate > 0, 1000, 0)
    exposure = np.where(rate > 0, 1000.0 / np.where(rate > 0, rate, 1.0), 1e9)
    return assemble_model(counts, exposure, kind=kind, energy_edges=E_EDGES,
                          fov_edges=fov_edges, zenith_edges=ZEN_EDGES, fov_alignment=align,
                          offset_max=2.0, relative_floor=0.0)


def _rate_3d(zero_bins=True):
    e, x, y = _centres(E_EDGES, True), _centres(X_EDGES), _centres(Y_EDGES)
    shape = np.exp(0.35 * x[None, None, :] - 0.6 * (y[None, :, None] - 0.3) ** 2)
    rate = 1e-6 * e[:, None, None] ** -2.7 * shape
    if zero_bins:
        rate[0, :, :2] = 0.0  # threshold-like empty bins at low energy, one side of the FoV
        rate[3, 2, 3] = 0.0  # an isolated hole
    return GROUP_NORM[:, None, None, None] * rate[None]


def _rate_2d(zero_bins=True):
    e, o = _centres(E_EDGES, True), _centres(O_EDGES)
    rate = 1e-6 * e[:, None] ** -2.5 * np.exp(-0.5 * o[None, :] ** 2)
    if zero_bins:
        rate[0, 3:] = 0.0
    return GROUP_NORM[:, None, None] * rate[None]


def model_3d(align="RADEC", zero_bins=True):
    return _model(_rate_3d(zero_bins), "3d", {"detx": X_EDGES, "dety": Y_EDGES}, align)


def model_2d(zero_bins=True):
    return _model(_rate_2d(zero_bins), "2d", {"offset": O_EDGES}, "ALTAZ")


def _points(rng, n, lo, hi, edges, centres):
    """Random points in [lo, hi] plus inner edges, centres, points between the outer centres
    and edges, and points just inside and just outside the outer edges.

    gammapy recomputes its axis edges from the nodes (``pix_to_coord``), which can move an
    outer edge by an ulp (0.1 TeV becomes 0.10000000000000002), so points are kept 1e-9 away
    from the outer edges; :func:`test_outer_edges_are_inside` covers the edges themselves.
    """
    eps = 1e-9 * (edges[-1] - edges[0])
    special = np.concatenate([
        edges[1:-1], centres,
        0.5 * (edges[:1] + centres[:1]), 0.5 * (edges[-1:] + centres[-1:]),
        [edges[0] + eps, edges[-1] - eps, edges[0] - eps, edges[-1] + eps],
    ])
    return np.concatenate([rng.uniform(lo, hi, n), special])


def _energy_points(rng, n):
    log_e = _points(rng, n, np.log(0.03), np.log(300.0), np.log(E_EDGES),
                    np.log(_centres(E_EDGES, True)))
    return np.exp(log_e)


def _gammapy_eval(bkg, **coords):
    import astropy.units as u

    units = {"energy": u.TeV}
    with np.errstate(invalid="ignore", divide="ignore"):
        q = bkg.evaluate(**{k: np.asarray(v) * units.get(k, u.deg) for k, v in coords.items()})
    return q.to_value("s-1 MeV-1 sr-1")


# ---------------------------------------------------------------------------------------------
# evaluation against gammapy


@pytest.mark.gammapy
@pytest.mark.parametrize("align", ["ALTAZ", "RADEC"])
def test_evaluate_3d_matches_gammapy(align):
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import to_gammapy

    model = model_3d(align)
    bkg = to_gammapy(model, group=1)
    assert bkg.fov_alignment.value == align
    rng = np.random.default_rng(3)
    n = 3000
    energy = rng.permutation(_energy_points(rng, n))
    detx = rng.permutation(_points(rng, n, -3.0, 2.5, X_EDGES, _centres(X_EDGES)))
    dety = rng.permutation(_points(rng, n, -2.5, 3.0, Y_EDGES, _centres(Y_EDGES)))
    m = min(energy.size, detx.size, dety.size)
    energy, detx, dety = energy[:m], detx[:m], dety[:m]
    ours = evaluate_rate(model, energy, detx=detx, dety=dety, group=1)
    ref = _gammapy_eval(bkg, energy=energy, fov_lon=detx, fov_lat=dety)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
    assert np.all(np.isfinite(ours)) and np.all(ours >= 0)
    # the sample really covers outside, inside and the half-bins beyond the outer centres
    inside = ((energy >= E_EDGES[0]) & (energy <= E_EDGES[-1]) & (detx >= X_EDGES[0])
              & (detx <= X_EDGES[-1]) & (dety >= Y_EDGES[0]) & (dety <= Y_EDGES[-1]))
    assert np.all(ours[~inside] == 0) and (~inside).sum() > 500
    xc = _centres(X_EDGES)
    beyond = inside & (detx > xc[-1]) & (ours > 0)
    assert beyond.sum() > 20
    # an axis swap or sign flip would not pass: the model is not symmetric
    swapped = evaluate_rate(model, energy, detx=-detx, dety=dety, group=1)
    assert not np.allclose(swapped, ref, rtol=1e-3)


@pytest.mark.gammapy
def test_evaluate_3d_grid_broadcast_matches_gammapy():
    """Broadcast grids (energy x lat x lon), points exactly on edges and centres."""
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import to_gammapy

    model = model_3d("ALTAZ")
    bkg = to_gammapy(model, group=0)
    energy = np.concatenate([E_EDGES[1:-1], _centres(E_EDGES, True), [0.05, 0.1001, 99.9,
                                                                       150.0]])[:, None, None]
    dety = np.concatenate([Y_EDGES[1:-1], _centres(Y_EDGES), [-2.2, -1.999, 2.399, 2.6]])
    detx = np.concatenate([X_EDGES[1:-1], _centres(X_EDGES), [-2.7, -2.499, 1.999, 2.3]])
    dety, detx = dety[None, :, None], detx[None, None, :]
    ours = evaluate_rate(model, energy, detx=detx, dety=dety, group=0)
    ref = _gammapy_eval(bkg, energy=energy, fov_lon=detx, fov_lat=dety)
    assert ours.shape == (energy.size, dety.size, detx.size)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
    # at the bin centres the interpolant is the bin value itself
    at_centres = evaluate_rate(model, _centres(E_EDGES, True)[:, None, None],
                               detx=_centres(X_EDGES)[None, None, :],
                               dety=_centres(Y_EDGES)[None, :, None], group=0)
    np.testing.assert_allclose(at_centres, model["rate"].sel(zenith_group=0).values, rtol=1e-12)


@pytest.mark.gammapy
def test_evaluate_2d_matches_gammapy():
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import to_gammapy

    model = model_2d()
    bkg = to_gammapy(model, group=0)
    rng = np.random.default_rng(5)
    energy = rng.permutation(_energy_points(rng, 2000))
    offset = rng.permutation(_points(rng, 2000, -0.3, 3.0, O_EDGES, _centres(O_EDGES)))
    m = min(energy.size, offset.size)
    energy, offset = energy[:m], offset[:m]
    ours = evaluate_rate(model, energy, offset, group=0)
    ref = _gammapy_eval(bkg, energy=energy, offset=offset)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
    assert (ours == 0).sum() > 100 and (ours > 0).sum() > 1000


def test_outer_edges_are_inside():
    """A point exactly on an outer edge is inside (gammapy: ``coord_to_idx`` closed at the top
    edge), with the value extrapolated from the last two centres; just beyond it is 0."""
    model = model_3d(zero_bins=False)
    e = np.array([E_EDGES[0], E_EDGES[-1], E_EDGES[0] * (1 - 1e-12), E_EDGES[-1] * (1 + 1e-12)])
    on = evaluate_rate(model, e[:, None], detx=X_EDGES[[0, -1]][None, :], dety=Y_EDGES[-1],
                       group=0)
    assert np.all(on[:2] > 0) and np.all(on[2:] == 0)
    near = evaluate_rate(model, e[:2, None] * np.array([[1 + 1e-9], [1 - 1e-9]]),
                         detx=X_EDGES[[0, -1]][None, :] * (1 - 1e-9), dety=Y_EDGES[-1] - 1e-9,
                         group=0)
    np.testing.assert_allclose(on[:2], near, rtol=1e-6)


@pytest.mark.gammapy
def test_zero_bins_follow_gammapy_log_scale():
    """Empty bins enter the log interpolation as TINY: the value falls geometrically."""
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import to_gammapy

    model = model_2d()
    bkg = to_gammapy(model, group=0)
    oc = _centres(O_EDGES)
    e0 = _centres(E_EDGES, True)[0]
    populated = model["rate"].sel(zenith_group=0).values[0, 2]
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    offset = oc[2] + t * (oc[3] - oc[2])  # from the last populated centre to an empty one
    ours = evaluate_rate(model, e0, offset, group=0)
    expected = populated ** (1 - t) * TINY ** t
    expected[expected <= 2 * TINY] = 0.0
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=0)
    np.testing.assert_allclose(ours, _gammapy_eval(bkg, energy=e0, offset=offset), rtol=1e-6,
                               atol=0)
    assert ours[-1] == 0.0 and 0 < ours[2] < 1e-20  # half-way: sqrt(r * TINY)


@pytest.mark.gammapy
def test_nan_and_nonpositive_coordinates_give_zero():
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import to_gammapy

    model = model_3d()
    energy = np.array([np.nan, 1.0, 1.0, 0.0, -1.0, 1.0])
    detx = np.array([0.0, np.nan, 0.0, 0.0, 0.0, np.inf])
    dety = np.array([0.0, 0.0, np.nan, 0.0, 0.0, 0.0])
    ours = evaluate_rate(model, energy, detx=detx, dety=dety, group=0)
    assert np.array_equal(ours, np.zeros(6))
    ref = _gammapy_eval(to_gammapy(model, 0), energy=energy, fov_lon=detx, fov_lat=dety)
    assert np.array_equal(ref, np.zeros(6))


# ---------------------------------------------------------------------------------------------
# labelled inputs, laziness, groups, errors


def test_dataarray_inputs_broadcast_by_dims():
    model = model_3d()
    energy = xr.DataArray([0.5, 2.0, 20.0], dims="e", coords={"e": [0.5, 2.0, 20.0]})
    detx = xr.DataArray(np.linspace(-2, 1.5, 4), dims="x")
    dety = xr.DataArray(np.linspace(-1, 2, 5), dims="y")
    out = evaluate_rate(model, energy, detx=detx, dety=dety, group=1)
    assert isinstance(out, xr.DataArray)
    assert out.dims == ("e", "x", "y") and out.shape == (3, 4, 5)
    assert out.attrs["units"] == "s-1 MeV-1 sr-1" and out.name == "rate"
    assert np.array_equal(out["e"].values, energy["e"].values)
    ref = evaluate_rate(model, energy.values[:, None, None], detx=detx.values[None, :, None],
                        dety=dety.values[None, None, :], group=1)
    np.testing.assert_array_equal(out.values, ref)
    # a plain scalar mixes in
    one = evaluate_rate(model, energy, detx=0.1, dety=dety, group=1)
    assert one.dims == ("e", "y")


def test_dask_inputs_stay_lazy():
    import dask
    import dask.array as da

    model = model_3d()
    rng = np.random.default_rng(7)
    energy = np.exp(rng.uniform(np.log(0.05), np.log(200.0), 1000))
    detx = rng.uniform(-3, 2.5, 1000)
    dety = rng.uniform(-2.5, 3, 1000)
    expected = evaluate_rate(model, energy, detx=detx, dety=dety, group=1)
    lazy_model = model.assign(rate=model["rate"].chunk({"energy": 3, "detx": 2}))
    with raise_if_dask_computes():
        out = evaluate_rate(model, da.from_array(energy, chunks=300),
                            detx=da.from_array(detx, chunks=250), dety=dety, group=1)
        out_model = evaluate_rate(lazy_model, energy, detx=detx, dety=dety, group=1)
        labelled = evaluate_rate(
            model, xr.DataArray(da.from_array(energy, chunks=400), dims="pt"),
            detx=xr.DataArray(detx, dims="pt"), dety=xr.DataArray(dety, dims="pt"), group=1)
        grid = evaluate_rate(model, da.from_array(energy[:40], chunks=10)[:, None],
                             detx=detx[None, :30], dety=0.2, group=1)
        with pytest.raises(RuntimeError, match="computation was triggered"):
            out.compute()  # the guard works
    assert isinstance(out, da.Array) and isinstance(out_model, da.Array)
    assert isinstance(labelled.data, da.Array) and grid.shape == (40, 30)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(out.compute(), expected)
        np.testing.assert_array_equal(out_model.compute(), expected)
        np.testing.assert_array_equal(labelled.values, expected)
        np.testing.assert_array_equal(
            grid.compute(),
            evaluate_rate(model, energy[:40, None], detx=detx[None, :30], dety=0.2, group=1))


@settings(max_examples=10, deadline=None)
@given(chunks=st.tuples(st.integers(7, 60), st.integers(7, 60)),
       model_chunk=st.integers(1, 8))
def test_dask_result_does_not_depend_on_chunks(chunks, model_chunk):
    import dask
    import dask.array as da

    model = model_3d()
    rng = np.random.default_rng(19)
    energy = np.exp(rng.uniform(np.log(0.05), np.log(200.0), (60, 1)))
    detx = rng.uniform(-3, 2.5, (1, 60))
    expected = evaluate_rate(model, energy, detx=detx, dety=0.4, group=0)
    lazy = model.assign(rate=model["rate"].chunk({"energy": model_chunk}))
    out = evaluate_rate(lazy, da.from_array(energy, chunks=(chunks[0], 1)),
                        detx=da.from_array(detx, chunks=(1, chunks[1])), dety=0.4, group=0)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(out.compute(), expected)


def test_zenith_selects_group():
    model = model_3d()
    assert select_group(model, zenith=10.0) == 0
    assert select_group(model, zenith=30.0) == 1  # groups are [lo, hi)
    assert select_group(model, zenith=50.0) == 1  # the last one includes its upper bound
    assert select_group(model, zenith=75.0) == 1  # outside: nearest group
    assert select_group(model, zenith=-5.0) == 0
    args = (model, 5.0)  # away from the model's empty bins (TINY does not scale with the group)
    kw = {"detx": -1.0, "dety": -0.5}
    r0 = evaluate_rate(*args, **kw, zenith=20.0)
    r1 = evaluate_rate(*args, **kw, zenith=40.0)
    np.testing.assert_allclose(r1 / r0, GROUP_NORM[1] / GROUP_NORM[0], rtol=1e-12)
    assert evaluate_rate(*args, **kw, group=1) == r1
    with pytest.raises(ValueError, match="2 zenith groups"):
        evaluate_rate(*args, **kw)
    with pytest.raises(ValueError, match="not both"):
        evaluate_rate(*args, **kw, group=0, zenith=10.0)
    with pytest.raises(KeyError, match="zenith group 5"):
        evaluate_rate(*args, **kw, group=5)
    with pytest.raises(ValueError, match="finite"):
        select_group(model, zenith=np.nan)
    one = model.isel(zenith_group=[0])
    assert evaluate_rate(one, *args[1:], **kw) == r0


def test_wrong_coordinates_raise():
    with pytest.raises(ValueError, match=r"missing \['detx'\].*unexpected \['offset'\]"):
        evaluate_rate(model_3d(), 1.0, 0.5, dety=0.1, group=0)
    with pytest.raises(ValueError, match="missing"):
        evaluate_rate(model_2d(), 1.0, group=0)
    with pytest.raises(KeyError, match="no variable 'nope'"):
        evaluate_rate(model_2d(), 1.0, 0.5, group=0, var="nope")
    with pytest.raises(ValueError, match="offset_edges must be >= 0"):
        integrate_counts(model_2d(), [1, 2], offset_edges=[-1, 1], ontime=1.0, group=0)
    with pytest.raises(ValueError, match="ontime"):
        integrate_counts(model_2d(), [1, 2], offset_edges=[0, 1], ontime=-1.0, group=0)
    with pytest.raises(ValueError, match="edges for"):
        integrate_counts(model_3d(), [1, 2], offset_edges=[0, 1], ontime=1.0, group=0)


def test_quantity_inputs_and_rate_error():
    import astropy.units as u

    model = model_2d()
    a = evaluate_rate(model, [0.7, 3.0], [0.2, 1.1], group=0)
    b = evaluate_rate(model, [700.0, 3000.0] * u.GeV, [12.0, 66.0] * u.arcmin, group=0)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    err = evaluate_rate(model, 3.0, 1.0, group=0, var="rate_error")
    assert err > 0 and err != evaluate_rate(model, 3.0, 1.0, group=0)


def test_accessor_calls_module_functions():
    model = model_3d()
    np.testing.assert_array_equal(
        model.bkg.evaluate([1.0, 2.0], detx=0.3, dety=[0.1, -1.0], zenith=35.0),
        evaluate_rate(model, [1.0, 2.0], detx=0.3, dety=[0.1, -1.0], group=1))
    kw = dict(detx_edges=[-1, 0, 1], dety_edges=[-0.5, 0.5], ontime=100.0, group=0)
    np.testing.assert_array_equal(model.bkg.integrate([1, 3, 10], **kw),
                                  integrate_counts(model, [1, 3, 10], **kw))



# ---------------------------------------------------------------------------------------------
# integration


def _power_law_integral(amplitude, index, e1, e2):
    """Integral of amplitude * E**-index over [e1, e2] TeV, per MeV."""
    g = 1.0 - index
    return 1e6 * amplitude * (e2 ** g - e1 ** g) / g


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_integrate_power_law_constant_fov_is_exact(kind):
    """rate = A E^-g flat in the FoV: log-log interpolation is exact; solid angles too."""
    amp, index, ontime = 3e-7, 2.4, 1687.0
    e = _centres(E_EDGES, True)
    if kind == "2d":
        rate = amp * e[:, None] ** -index * np.ones(O_EDGES.size - 1)
        model = _model(np.stack([rate, 2 * rate]), "2d", {"offset": O_EDGES})
        fov = {"offset_edges": [0.0, 0.3, 1.1, 2.5, 3.0]}  # last bin is half outside
        omega = annulus_solid_angle([0.0, 0.3, 1.1, 2.5, 2.5])
    else:
        rate = amp * e[:, None, None] ** -index * np.ones((Y_EDGES.size - 1, X_EDGES.size - 1))
        model = _model(np.stack([rate, 2 * rate]), "3d", {"detx": X_EDGES, "dety": Y_EDGES})
        fov = {"detx_edges": [-3.0, -1.0, 0.2, 1.7], "dety_edges": [-1.1, 0.0, 2.9]}
        omega = box_solid_angle([-2.5, -1.0, 0.2, 1.7], [-1.1, 0.0, 2.4])
    # energy bins inside the model range, across a model edge, and outside it
    e_edges = np.array([0.07, 0.1, 0.31, 1.0, 2.2, 50.0, 100.0, 140.0])
    counts = integrate_counts(model, e_edges, **fov, ontime=ontime, group=0)
    lo, hi = np.clip(e_edges[:-1], 0.1, 100.0), np.clip(e_edges[1:], 0.1, 100.0)
    spectrum = np.where(hi > lo, _power_law_integral(amp, index, lo, hi), 0.0)
    expected = ontime * spectrum.reshape((-1,) + (1,) * omega.ndim) * omega
    assert counts.shape == expected.shape
    np.testing.assert_allclose(counts, expected, rtol=1e-10, atol=0)
    assert counts[0].sum() == 0 and counts[-1].sum() == 0


def _brute_counts(bkg, kind, e_edges, fov_edges, ontime, n_e=48, n_fov=16):
    """Reference: gammapy integrate_log_log on fine energy nodes (plus the model's energy
    centres, where the interpolant has kinks) at fine FoV mid-points x their solid angle."""
    import astropy.units as u

    model_nodes = bkg.axes["energy"].center.to_value("TeV")
    lo, hi = bkg.axes["energy"].edges.to_value("TeV")[[0, -1]]  # may be an ulp off the model's
    fine_e = [np.clip(np.unique(np.concatenate([
        np.geomspace(a, b, n_e + 1), model_nodes[(model_nodes > a) & (model_nodes < b)]])), lo, hi)
        for a, b in zip(e_edges[:-1], e_edges[1:])]

    def fine(edges):
        return [np.linspace(a, b, n_fov + 1) for a, b in zip(edges[:-1], edges[1:])]

    if kind == "2d":
        sub = fine(fov_edges[0])
        mids = np.concatenate([0.5 * (s[1:] + s[:-1]) for s in sub])
        omega = np.concatenate([annulus_solid_angle(s) for s in sub])
        coords = {"offset": mids[None, :] * u.deg}
    else:
        sub_y, sub_x = fine(fov_edges[0]), fine(fov_edges[1])
        my = np.concatenate([0.5 * (s[1:] + s[:-1]) for s in sub_y])
        mx = np.concatenate([0.5 * (s[1:] + s[:-1]) for s in sub_x])
        omega = box_solid_angle(np.concatenate([s[:-1] for s in sub_x] + [sub_x[-1][-1:]]),
                                np.concatenate([s[:-1] for s in sub_y] + [sub_y[-1][-1:]])).T
        coords = {"fov_lon": mx[None, :, None] * u.deg, "fov_lat": my[None, None, :] * u.deg}
    rows = []
    for nodes in fine_e:
        shape = (-1,) + (1,) * (len(coords) if kind == "3d" else 1)
        integral = bkg.integrate_log_log(axis_name="energy", energy=nodes.reshape(shape) * u.TeV,
                                         **coords).to_value("s-1 sr-1")
        rows.append(integral.sum(axis=0) * omega * ontime)
    out = np.stack(rows)
    starts = np.arange(0, out.shape[1], n_fov)
    out = np.add.reduceat(out, starts, axis=1)
    if kind == "3d":
        out = np.add.reduceat(out, np.arange(0, out.shape[2], n_fov), axis=2)
        out = np.swapaxes(out, 1, 2)  # (E, lon, lat) -> (E, dety, detx)
    return out


@pytest.mark.gammapy
def test_integrate_3d_matches_gammapy_brute_force():
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import to_gammapy

    model = model_3d(zero_bins=False)
    e_edges = np.array([0.12, 0.3, 1.0, 4.0, 30.0])
    x_edges = np.array([-2.5, -1.6, -0.3, 0.4, 2.0])  # model FoV edges are bin edges here, so
    y_edges = np.array([-2.0, -0.9, 0.6, 2.4])  # the mid-point reference has no edge error
    ontime = 1500.0
    counts = integrate_counts(model, e_edges, detx_edges=x_edges, dety_edges=y_edges,
                              ontime=ontime, group=1)
    ref = _brute_counts(to_gammapy(model, group=1), "3d", e_edges, [y_edges, x_edges], ontime)
    assert counts.shape == ref.shape == (4, 3, 4)
    np.testing.assert_allclose(counts, ref, rtol=1e-3, atol=0)
    # energy is integrated exactly, so oversampling only refines the FoV sum, and converges
    fine = integrate_counts(model, e_edges, detx_edges=x_edges, dety_edges=y_edges,
                            ontime=ontime, group=1, oversample=8)
    np.testing.assert_allclose(counts, fine, rtol=1e-5, atol=0)
    assert np.abs(counts / fine - 1).max() > 1e-9  # (the test can tell them apart)


def test_integrate_3d_with_empty_bins():
    """Exact zeros (no floor): gammapy's extrapolation overshoots next to an empty bin, and the
    steep fall-off to TINY beside empty bins needs more FoV sampling."""
    model = model_3d(zero_bins=True)
    smooth = model_3d(zero_bins=False)
    kw = dict(detx_edges=[-2.5, -1.6, -0.3, 0.4, 2.0], dety_edges=[-2.0, -0.9, 0.6, 2.4],
              ontime=1500.0, group=1)
    e_edges = [0.12, 0.3, 1.0, 4.0, 30.0]
    # the hole at rate[3, 2, 3] is the second-to-last detx bin: beyond the last centre the
    # log-linear extrapolation grows by ~e^36 (gammapy does the same, see the evaluate tests)
    wild = integrate_counts(model, e_edges, **kw)
    reference = integrate_counts(smooth, e_edges, **kw)
    assert wild[2, 2, 3] > 1e6 * reference[2, 2, 3]
    x_beyond = 0.5 * (_centres(X_EDGES)[-1] + X_EDGES[-1])
    y_hole, e_hole = _centres(Y_EDGES)[2], _centres(E_EDGES, True)[3]
    point = dict(detx=x_beyond, dety=y_hole, group=1)
    assert evaluate_rate(model, e_hole, **point) > 1e6 * evaluate_rate(smooth, e_hole, **point)
    # extrapolate=False holds the outer centres' values: bounded, converging with oversample
    held = integrate_counts(model, e_edges, **kw, extrapolate=False)
    assert np.all(held <= integrate_counts(smooth, e_edges, **kw, extrapolate=False) * 1.0001)
    converged = integrate_counts(model, e_edges, **kw, oversample=32, extrapolate=False)
    fine = integrate_counts(model, e_edges, **kw, oversample=16, extrapolate=False)
    np.testing.assert_allclose(fine, converged, rtol=1e-3, atol=0)
    # at the default oversample the tail-dominated bins are off, but not the slice totals
    slice_max = converged.max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(held - converged) < 0.01 * slice_max)
    assert np.abs(held.sum() / converged.sum() - 1) < 1e-3
    # the empty low-energy bins at detx < -0.7 remove most of the first energy bin there
    assert held[0, :, 0].sum() < 0.05 * reference[0, :, 0].sum()


def test_integrate_with_rate_floor_converges_at_default_oversample():
    """Models from assemble_model have a relative floor (1e-3): bounded slopes, so the default
    oversample is within 1e-3 of the converged integral even next to (floored) empty bins."""
    rate = _rate_3d(zero_bins=True)
    counts = np.where(rate > 0, 1000, 0)
    exposure = np.where(rate > 0, 1000.0 / np.where(rate > 0, rate, 1.0), 1e9)
    model = assemble_model(counts, exposure, kind="3d", energy_edges=E_EDGES,
                           fov_edges={"detx": X_EDGES, "dety": Y_EDGES},
                           zenith_edges=ZEN_EDGES, fov_alignment="ALTAZ", offset_max=2.0)
    assert float(model["rate"].min()) > 0
    kw = dict(detx_edges=[-2.5, -1.6, -0.3, 0.4, 2.0], dety_edges=[-2.0, -0.9, 0.6, 2.4],
              ontime=1500.0, group=1)
    e_edges = [0.12, 0.3, 1.0, 4.0, 30.0]
    np.testing.assert_allclose(integrate_counts(model, e_edges, **kw),
                               integrate_counts(model, e_edges, **kw, oversample=32),
                               rtol=1e-3, atol=0)


def test_extrapolate_false_holds_outer_centres():
    model = model_3d(zero_bins=True)
    rate = model["rate"].sel(zenith_group=0).values
    xc, yc, ec = _centres(X_EDGES), _centres(Y_EDGES), _centres(E_EDGES, True)
    rng = np.random.default_rng(17)
    e = np.exp(rng.uniform(np.log(0.1), np.log(100.0), 4000))
    x, y = rng.uniform(-2.5, 2.0, 4000), rng.uniform(-2.0, 2.4, 4000)
    held = evaluate_rate(model, e, detx=x, dety=y, group=0, extrapolate=False)
    free = evaluate_rate(model, e, detx=x, dety=y, group=0)
    assert held.max() <= rate.max() * (1 + 1e-12) < free.max()
    hull = (e >= ec[0]) & (e <= ec[-1]) & (x >= xc[0]) & (x <= xc[-1]) & (y >= yc[0]) & (
        y <= yc[-1])
    np.testing.assert_array_equal(held[hull], free[hull])
    # beyond the last centre the value is the clipped point's value
    clipped = evaluate_rate(model, np.clip(e, ec[0], ec[-1]), detx=np.clip(x, xc[0], xc[-1]),
                            dety=np.clip(y, yc[0], yc[-1]), group=0)
    np.testing.assert_allclose(held, clipped, rtol=1e-12, atol=0)
    assert np.any(held[~hull] != free[~hull])


def test_integrate_counts_is_additive_over_bins():
    """Splitting analysis bins changes nothing: a fine grid sums to the coarse one."""
    model = model_3d(zero_bins=False)
    kw = dict(ontime=1000.0, group=0, oversample=4)
    coarse = integrate_counts(model, [0.2, 2.0, 20.0], detx_edges=[-2.0, 0.0, 1.5],
                              dety_edges=[-1.5, 1.5], **kw)
    fine = integrate_counts(model, [0.2, 0.7, 2.0, 6.0, 20.0],
                            detx_edges=[-2.0, -1.0, 0.0, 0.5, 1.5],
                            dety_edges=[-1.5, 0.0, 1.5], **kw)
    summed = fine.reshape(2, 2, 1, 2, 2, 2).sum(axis=(1, 3, 5))
    assert coarse.shape == summed.shape == (2, 1, 2)
    np.testing.assert_allclose(summed, coarse, rtol=2e-6)


# ---------------------------------------------------------------------------------------------
# gammapy bridge


@pytest.mark.gammapy
@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_to_from_gammapy_round_trip(kind):
    pytest.importorskip("gammapy")
    from xbkg.io.gammapy import from_gammapy, to_gammapy

    model = model_2d() if kind == "2d" else model_3d("ALTAZ")
    bkg = to_gammapy(model, group=1)
    if kind == "3d":
        assert type(bkg).__name__ == "Background3D"
        assert bkg.axes.names == ["energy", "fov_lon", "fov_lat"]
        assert bkg.data.shape == (8, X_EDGES.size - 1, Y_EDGES.size - 1)
        rate = model["rate"].sel(zenith_group=1).values
        assert bkg.data[2, 4, 1] == rate[2, 1, 4]  # (energy, lon, lat) vs (energy, dety, detx)
        np.testing.assert_allclose(bkg.axes["fov_lon"].edges.to_value("deg"), X_EDGES)
    else:
        assert type(bkg).__name__ == "Background2D" and bkg.axes.names == ["energy", "offset"]
    assert bkg.unit.is_equivalent("s-1 MeV-1 sr-1") and str(bkg.unit) == "1 / (MeV s sr)"
    np.testing.assert_allclose(bkg.axes["energy"].edges.to_value("TeV"), E_EDGES)
    back = validate_model(from_gammapy(bkg, zenith_bounds=(30.0, 50.0)))
    assert list(back.data_vars) == ["rate"]
    assert back.attrs["kind"] == kind and back.attrs["fov_alignment"] == model.attrs[
        "fov_alignment"]
    np.testing.assert_array_equal(back["zenith_bounds"].values, [[30.0, 50.0]])
    orig = model["rate"].sel(zenith_group=[1])
    assert back["rate"].dims == orig.dims
    np.testing.assert_array_equal(back["rate"].values, orig.values)
    for dim in orig.dims[1:]:
        np.testing.assert_allclose(edges_of(back, dim), edges_of(model, dim), rtol=1e-12)
    again = to_gammapy(back, group=0)
    np.testing.assert_array_equal(again.data, bkg.data)


@pytest.mark.gammapy
def test_from_gammapy_reverse_lon_radec_flips_longitude():
    pytest.importorskip("gammapy")
    from gammapy.irf import Background3D

    from xbkg.io.gammapy import from_gammapy, to_gammapy

    src = to_gammapy(model_3d("RADEC"), group=0)
    legacy = Background3D(axes=src.axes, data=src.data, unit=src.unit,
                          fov_alignment="REVERSE_LON_RADEC")
    model = from_gammapy(legacy)
    assert model.attrs["fov_alignment"] == "RADEC"
    np.testing.assert_allclose(edges_of(model, "detx"), -X_EDGES[::-1])
    rng = np.random.default_rng(11)
    e, x, y = np.exp(rng.uniform(-2, 4, 500)), rng.uniform(-2, 2, 500), rng.uniform(-2, 2, 500)
    # gammapy evaluates a REVERSE_LON_RADEC IRF at -fov_lon
    np.testing.assert_allclose(evaluate_rate(model, e, detx=x, dety=y),
                               _gammapy_eval(legacy, energy=e, fov_lon=-x, fov_lat=y),
                               rtol=1e-6, atol=0)
    with pytest.raises(TypeError, match="Background2D/3D"):
        from_gammapy(model)


@pytest.mark.gammapy
def test_gadf_file_evaluates_like_gammapy(tmp_path):
    """Through a GADF file written by xbkg.io.gadf and read by gammapy (when available)."""
    pytest.importorskip("gammapy")
    gadf = pytest.importorskip("xbkg.io.gadf")
    from gammapy.irf import Background2D, Background3D

    rng = np.random.default_rng(13)
    for model, cls, fov in [
        (model_3d("ALTAZ"), Background3D, ("fov_lon", "fov_lat")),
        (model_2d(), Background2D, ("offset",)),
    ]:
        path = gadf.write_table_file(model, 1, tmp_path / f"bkg_{cls.__name__}.fits")
        bkg = cls.read(path, hdu="BACKGROUND")
        e = np.exp(rng.uniform(np.log(0.05), np.log(200), 1000))
        pts = {name: rng.uniform(-3, 3, 1000) for name in fov}
        ref = _gammapy_eval(bkg, energy=e, **pts)
        if cls is Background3D:
            assert bkg.fov_alignment.value == "ALTAZ"
            ours = evaluate_rate(model, e, detx=pts["fov_lon"], dety=pts["fov_lat"], group=1)
        else:
            ours = evaluate_rate(model, e, pts["offset"], group=1)
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
        assert (ours > 0).sum() > 200
