"""Zenith grouping (fixed, adaptive, extra columns, groups table) and per-run interpolated models."""

import json
from dataclasses import replace

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st

import xbkg
import xbkg.accessor  # noqa: F401  (registers model.bkg)
from xbkg.building.grouping import (
    NORTH_SOUTH,
    GroupingError,
    adaptive_zenith_edges,
    assign_groups,
    column_groups,
    make_grouping,
    zenith_groups,
)
from xbkg.core.groups import bounds_groups
from xbkg.core.schema import assemble_model, select_group, zenith_edges
from xbkg.io.groups import read_groups_table, write_groups_table
from xbkg.model.group_interpolation import (
    interpolation_weights,
    model_for_observation,
    slice_cos_zenith,
)
from xbkg.simulate import NOMINAL_ONTIME, TruthModel, simulate_store

E_EDGES = np.geomspace(0.1, 100, 19)
O_EDGES = np.linspace(0, 2.5, 6)


# ---------------------------------------------------------------------------------------------
# adaptive binning (kernel)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 70), st.floats(600, 3000)), min_size=1, max_size=60),
       st.floats(1000, 20000), st.integers(0, 4))
def test_adaptive_groups_meet_the_minimum(runs, min_ontime, min_runs):
    zenith = np.array([r[0] for r in runs])
    ontime = np.array([r[1] for r in runs])
    edges = adaptive_zenith_edges(zenith, ontime, min_ontime=min_ontime, min_runs=min_runs,
                                  zenith_range=(0, 70))
    assert edges[0] == 0 and edges[-1] == 70 and np.all(np.diff(edges) > 0)
    groups = zenith_groups(zenith, edges)
    assert np.all(groups >= 0)
    time = np.bincount(groups, weights=ontime, minlength=edges.size - 1)
    n = np.bincount(groups, minlength=edges.size - 1)
    if ontime.sum() >= min_ontime and zenith.size >= min_runs:
        assert np.all(time >= min_ontime) and np.all(n >= max(1, min_runs))
    else:
        assert edges.size == 2  # one group when the runs cannot fill two
    # edges fall on the fine cos(zenith) grid (step 0.01 from cos 70 deg)
    fine = np.cos(np.radians(edges[1:-1]))
    steps = (fine - np.cos(np.radians(70))) / ((1 - np.cos(np.radians(70))) / 66)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)


def test_adaptive_merges_leftover_and_validates():
    # 5 runs of 1800 s: groups of 2 runs, the fifth (lowest zenith) joins the last group
    edges = adaptive_zenith_edges([5, 20, 30, 40, 50], 1800, min_ontime=3600, zenith_range=(0, 60))
    assert np.bincount(zenith_groups([5, 20, 30, 40, 50], edges)).tolist() == [3, 2]
    assert adaptive_zenith_edges([], [], min_ontime=3600).tolist() == [0.0, 90.0]
    with pytest.raises(GroupingError, match="zenith_range"):
        adaptive_zenith_edges([10], [1], zenith_range=(50, 20))
    with pytest.raises(GroupingError, match="cos_zenith_step"):
        adaptive_zenith_edges([10], [1], cos_zenith_step=0)


def test_periodic_columns_and_bounds():
    assert column_groups([-80.0, 280.0, 90.0, 269.9], NORTH_SOUTH["AZ_PNT"], period=360).tolist() \
        == [0, 0, 1, 1]
    with pytest.raises(GroupingError, match="period"):
        column_groups([0.0], [0, 200, 400], period=360)
    b = {"z": np.array([[0.0, 30.0], [30.0, 60.0]])}
    assert bounds_groups({"z": np.array([0.0, 30.0, 60.0, 61.0, np.nan])}, b).tolist() \
        == [0, 1, 1, -1, -1]


# ---------------------------------------------------------------------------------------------
# grouping Datasets, tables, reuse


def _obs_table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return xr.Dataset({"zenith": ("obs_id", rng.uniform(0, 60, n)),
                       "ontime": ("obs_id", rng.uniform(1500, 1700, n)),
                       "AZ_PNT": ("obs_id", rng.uniform(0, 360, n)),
                       "MUONEFF": ("obs_id", rng.uniform(0.7, 1.1, n))},
                      coords={"obs_id": np.arange(100, 100 + n)})


def test_grouping_by_azimuth_and_column():
    store = _obs_table()
    g = make_grouping(store, adaptive=True, min_ontime=5000, by=NORTH_SOUTH)
    assert g.attrs["group_by"] == "AZ_PNT"
    az = g["AZ_PNT_bounds"].values
    north = (store["AZ_PNT"].values < 90) | (store["AZ_PNT"].values >= 270)
    labels = g["obs_group"].values
    assert np.all(labels >= 0)
    assert np.all((az[labels, 0] == -90) == north)  # every run in a group of its half
    # each half has its own adaptive zenith groups, each with enough time
    assert np.all(g["group_ontime"].values >= 5000)
    assert sorted(set(az[:, 0])) == [-90.0, 90.0]
    # group summary: ONTIME-weighted mean cos(zenith)
    for k in range(g.sizes["zenith_group"]):
        sel = labels == k
        expected = np.average(np.cos(np.radians(store["zenith"].values[sel])),
                              weights=store["ontime"].values[sel])
        assert g["group_mean_cos_zenith"].values[k] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(assign_groups(store, g), labels)
    # any obs-table column, with fixed zenith edges
    g2 = make_grouping(store, [0, 30, 60], by={"MUONEFF": "0.7,0.9,1.1"})
    assert g2.sizes["zenith_group"] == 4 and g2.attrs["group_by"] == "MUONEFF"
    with pytest.raises(GroupingError, match="not in the observation table"):
        make_grouping(store, by={"NOPE": [0, 1]})
    with pytest.raises(GroupingError, match="not both"):
        make_grouping(store, [0, 30], adaptive=True)


def test_groups_table_round_trip(tmp_path):
    store = _obs_table()
    g = make_grouping(store, adaptive=True, min_ontime=5000, by=NORTH_SOUTH)
    back = read_groups_table(write_groups_table(g, tmp_path / "bg_observation_groups.ecsv"))
    for name in ("zenith_bounds", "AZ_PNT_bounds", "group_ontime", "group_n_obs",
                 "group_mean_cos_zenith"):
        np.testing.assert_allclose(back[name].values, g[name].values, rtol=1e-12)
    assert json.loads(back.attrs["grouping"]) == json.loads(g.attrs["grouping"])
    # the table assigns the runs exactly as the grouping did
    np.testing.assert_array_equal(assign_groups(store, back), g["obs_group"].values)
    with pytest.raises(KeyError, match="ZEN_MIN"):
        (tmp_path / "bad.ecsv").write_text("# %ECSV 1.0\n# ---\n# datatype:\n"
                                           "# - {name: GROUP_ID, datatype: int64}\nGROUP_ID\n0\n")
        read_groups_table(tmp_path / "bad.ecsv")


def test_model_edges_refuse_non_contiguous_groups():
    model = assemble_model(np.ones((2, 1, 1), "int64"), np.ones((2, 1, 1)), kind="2d",
                           energy_edges=[1, 2], fov_edges={"offset": [0, 1]},
                           zenith_edges=np.array([[0.0, 30.0], [0.0, 30.0]]),
                           fov_alignment="ALTAZ", offset_max=1.0)
    assert model["zenith_bounds"].values.tolist() == [[0, 30], [0, 30]]
    with pytest.raises(ValueError, match="not contiguous"):
        zenith_edges(model)


# ---------------------------------------------------------------------------------------------
# simulated store with a zenith-dependent truth


@pytest.fixture(scope="module")
def zenith_store(tmp_path_factory):
    """40 runs, 0-60 deg, ~10k events at zenith 0; the rate doubles from 0 to 60 deg and the
    threshold rises as 1/cos(z)**2."""
    base = replace(TruthModel(), zenith_norm_slope=1.0, norm=1.0)
    mu0 = base.total_counts(zenith=0.0, ontime=NOMINAL_ONTIME, offset_max=4.0)
    truth = replace(base, norm=10000 / mu0)
    return simulate_store(tmp_path_factory.mktemp("zen") / "store", n_runs=40, truth=truth,
                          seed=1, zenith_range=(0, 60))


@pytest.fixture(scope="module")
def zenith_model(zenith_store):
    return xbkg.make_model(zenith_store, kind="2d", energy_edges=E_EDGES, offset_edges=O_EDGES,
                           offset_max=2.5, energy_threshold="safe",
                           grouping={"adaptive": True, "min_ontime": 7200.0})


def test_adaptive_model_layout(zenith_store, zenith_model):
    model = zenith_model
    assert model.sizes["zenith_group"] >= 5
    assert np.all(model["group_ontime"].values >= 7200)
    assert json.loads(model.attrs["grouping"])["method"] == "adaptive"
    cos = np.cos(np.radians(model["obs_zenith"].values))
    for g in range(model.sizes["zenith_group"]):
        sel = model["obs_group"].values == g
        assert model["group_mean_cos_zenith"].values[g] == pytest.approx(
            np.average(cos[sel], weights=model["obs_ontime"].values[sel]))
    # reuse: the same groups from the model (or its table) for another build
    again = xbkg.make_model(zenith_store, kind="2d", energy_edges=E_EDGES, offset_edges=O_EDGES,
                            offset_max=2.5, grouping=model, obs_ids=model.obs_id.values[:20])
    np.testing.assert_array_equal(again["zenith_bounds"].values, model["zenith_bounds"].values)
    np.testing.assert_array_equal(again["obs_group"].values, model["obs_group"].values[:20])


def _run_chi2(store_dir, model, predict):
    """Pooled chi2/ndf of per-run predicted counts against each run's truth, with the model's
    statistical errors, over bins above the run's threshold with >= 25 expected events."""
    info = json.loads((store_dir / "truth.json").read_text())
    truth = TruthModel.from_dict(info["truth"])
    thr = dict(zip(model.obs_id.values.tolist(), model["obs_energy_threshold"].values))
    sa = 2 * np.pi * (np.cos(np.radians(O_EDGES[:-1])) - np.cos(np.radians(O_EDGES[1:])))
    pulls = []
    for run in info["runs"]:
        mu_t = truth.expected_counts(E_EDGES, offset_edges=O_EDGES, zenith=run["zenith"],
                                     ontime=run["ontime"])
        x = run["ontime"] * np.diff(E_EDGES)[:, None] * 1e6 * sa[None, :]
        rate, err = predict(run["zenith"])
        above = E_EDGES[:-1, None] >= thr[run["obs_id"]] * (1 - 1e-6)
        sel = above & (mu_t >= 25)
        pulls.append(((rate * x - mu_t) / (err * x))[sel])
    pulls = np.concatenate(pulls)
    return float(np.mean(pulls**2)), pulls.size


def test_per_run_models_reproduce_each_run(zenith_store, zenith_model):
    model = zenith_model

    def interpolated(z):
        one = model_for_observation(model, z)
        return one["rate"].values[0], one["rate_error"].values[0]

    def own_group(z):
        one = model.sel(zenith_group=select_group(model, zenith=z))
        return one["rate"].values, one["rate_error"].values

    chi2, ndf = _run_chi2(zenith_store, model, interpolated)
    chi2_group, _ = _run_chi2(zenith_store, model, own_group)
    print(f"per-run chi2/ndf: interpolated {chi2:.3f}, own group {chi2_group:.3f} ({ndf} bins)")
    assert ndf > 600
    assert chi2 <= 1.2
    assert chi2 < chi2_group - 0.05


def test_interpolation_rules(zenith_model):
    model = zenith_model
    nodes = slice_cos_zenith(model)
    # at high energy every run contributes: the node is the group's mean cos(zenith)
    np.testing.assert_allclose(nodes[:, -1], model["group_mean_cos_zenith"].values, rtol=1e-12)
    # at low energy only low-zenith runs have exposure: nodes move up in cos z or vanish
    assert np.all((nodes[:, 4] >= nodes[:, -1] - 1e-12) | np.isnan(nodes[:, 4]))
    # a run exactly at a group's node gets that group's rate in the slices where it is used
    g = 2
    z = float(np.degrees(np.arccos(model["group_mean_cos_zenith"].values[g])))
    one = model_for_observation(model, z)
    w = one["interpolation_weight"].values
    full = w[g] == 1.0
    assert full[-3:].all()
    np.testing.assert_allclose(one["rate"].values[0][full], model["rate"].values[g][full],
                               rtol=1e-12)
    assert one.sizes["zenith_group"] == 1 and one["zenith_bounds"].values.tolist() == [[z, z]]
    xbkg.validate_model(one)
    # weights add up to one, nearest puts everything on one group, linear differs from log
    np.testing.assert_allclose(w.sum(axis=0)[np.isfinite(nodes).any(axis=0)], 1.0)
    near = model_for_observation(model, z + 3.0, method="nearest")
    assert set(np.unique(near["interpolation_weight"].values)) <= {0.0, 1.0}
    lin = model.bkg.for_observation(z + 3.0, method="linear")
    log = model.bkg.for_observation(z + 3.0)
    assert np.all(lin["rate"].values >= log["rate"].values * (1 - 1e-12))  # AM >= GM
    far = model_for_observation(model, 75.0, method="linear")  # extrapolated beyond the groups
    assert np.all(far["rate"].values > 0)
    with pytest.raises(ValueError, match="method"):
        model_for_observation(model, 10.0, method="cubic")
    # extrapolation beyond the last node is bounded by one node spacing
    w = interpolation_weights(np.array([[0.9], [0.8]]), 0.3, extrapolate=True)
    assert w[:, 0].tolist() == pytest.approx([-1.0, 2.0])


def test_per_run_model_stays_lazy_and_extra_columns(zenith_store):
    store = xbkg.open_datastore(zenith_store)
    lazy = xbkg.make_model(store, kind="2d", energy_edges=E_EDGES, offset_edges=O_EDGES,
                           offset_max=2.5, energy_threshold="safe", compute_now=False,
                           grouping={"adaptive": True, "min_ontime": 7200.0, "by": NORTH_SOUTH})
    with dask.config.set(scheduler="sync"):
        with pytest.raises(KeyError, match="AZ_PNT"):
            model_for_observation(lazy, 20.0)
        one = model_for_observation(lazy, 20.0, extra={"AZ_PNT": 10.0})
        assert isinstance(one["rate"].data, dask.array.Array)
        used = one["interpolation_weight"].values.any(axis=1)
        # only northern groups are used for a northern run
        assert np.all(lazy["AZ_PNT_bounds"].values[used, 0] == -90.0)
        assert float(one["rate"].sum()) > 0


@pytest.fixture(scope="module")
def per_run_out(zenith_store, tmp_path_factory):
    from xbkg.cli import main

    out = tmp_path_factory.mktemp("cli") / "out"
    code = main(["make-models", str(zenith_store), str(out), "--kind", "2d", "--selection", "all",
                 "--adaptive", "--zenith-min-time", "7200", "--group-by", "north-south",
                 "--per-run", "--energy-edges", "0.1:100:18", "--no-progress"])
    assert code == 0
    return out


@pytest.mark.slow
def test_cli_per_run_and_adaptive(zenith_store, per_run_out, tmp_path):
    from astropy.io import fits
    from astropy.table import Table

    from xbkg.cli import main

    out = per_run_out
    groups = Table.read(out / "bg_observation_groups.ecsv")
    assert {"AZ_PNT_MIN", "AZ_PNT_MAX"} <= set(groups.colnames)
    assert np.all(groups["ONTIME"] >= 7200)
    index = Table.read(out / "hdu-index.fits.gz")
    bkg = index[index["HDU_TYPE"] == "bkg"]
    assert len(bkg) == 40
    assert set(np.char.strip(bkg["FILE_DIR"].astype(str))) == {"bg_run_models"}
    obs = Table.read(out / "obs-index.fits.gz")
    for row in bkg[:5]:
        path = out / "bg_run_models" / row["FILE_NAME"].strip()
        with fits.open(path) as hdul:
            zen = float(obs["ZEN_PNT"][obs["OBS_ID"] == row["OBS_ID"]][0])
            assert hdul["BACKGROUND"].header["ZEN_LO"] == pytest.approx(zen)
    # reuse the groups of this output for another build
    out2 = tmp_path / "out2"
    assert main(["make-models", str(zenith_store), str(out2), "--kind", "2d", "--selection", "all",
                 "--groups", str(out / "bg_observation_groups.ecsv"), "--no-progress"]) == 0
    np.testing.assert_allclose(Table.read(out2 / "bg_observation_groups.ecsv")["ZEN_MAX"],
                               groups["ZEN_MAX"])
    assert main(["make-models", str(zenith_store), str(tmp_path / "o3"), "--groups", "x.ecsv",
                 "--adaptive"]) == 2


@pytest.mark.gammapy
def test_gammapy_loads_the_per_run_models(zenith_store, per_run_out):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gammapy.data import DataStore

    model = xbkg.open_model(per_run_out / "model.nc")
    store = xbkg.open_datastore(zenith_store)
    store_gp = DataStore.from_dir(per_run_out)
    for obs_id in (1, 17, 33):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bkg = store_gp.obs(obs_id, required_irf=["bkg"]).bkg
        row = store.sel(obs_id=obs_id)
        expected = model.bkg.for_observation(float(row["zenith"]),
                                             extra={"AZ_PNT": float(row["AZ_PNT"])})
        assert bkg.axes.names == ["energy", "offset"]
        np.testing.assert_allclose(bkg.data, expected["rate"].values[0], rtol=1e-12)


@pytest.mark.slow
@pytest.mark.gammapy
def test_dr1_per_run_models_in_gammapy(hess_dr1, tmp_path):
    """Per-run models for the 45 DR1 off runs (3D Alt/Az, adaptive zenith groups of >= 4 h,
    thresholds from SAFE_ENERGY_LO, Gaussian smoothing) through gammapy's
    DataStore, MapDatasetMaker and SafeMaskMaker: no exploding bin, counts/predicted per run
    near 1 (in-sample: the models are built from the same runs)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import astropy.units as u
        from gammapy.data import DataStore
        from gammapy.datasets import MapDataset
        from gammapy.makers import MapDatasetMaker, SafeMaskMaker
        from gammapy.maps import MapAxis, WcsGeom

    from xbkg.cli import main
    from xbkg.io.gammapy import respect_fov_alignment

    out = tmp_path / "out"
    assert main(["make-models", str(hess_dr1), str(out), "--selection", "off", "--kind", "3d",
                 "--adaptive", "--zenith-min-time", "14400", "--smooth", "gauss", "--per-run",
                 "--no-image", "--no-progress"]) == 0
    store = DataStore.from_dir(out)
    off = [int(i) for i in store.obs_table["OBS_ID"][store.obs_table["TARGET_NAME"] == "Off data"]]
    assert len(off) == 45
    energy = MapAxis.from_energy_bounds(0.3, 50, 12, unit="TeV")
    maker = MapDatasetMaker(selection=["counts", "background", "exposure"])
    safe = SafeMaskMaker(methods=["offset-max", "aeff-default"], offset_max=2.0 * u.deg)
    ratios = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for obs_id in off:
            obs = respect_fov_alignment(store.obs(obs_id))
            assert obs.bkg.fov_alignment.value == "ALTAZ"
            geom = WcsGeom.create(skydir=obs.get_pointing_icrs(obs.tmid), width=(4, 4),
                                  binsz=0.1, frame="icrs", axes=[energy])
            data = safe.run(maker.run(MapDataset.create(geom), obs), obs)
            mask = data.mask_safe.data
            bkg = data.background.data
            assert np.all(np.isfinite(bkg)) and bkg.min() >= 0
            # no exploding bin: every bin within 20x the mean of its energy slice
            per_slice = bkg.mean(axis=(1, 2), keepdims=True)
            assert np.all(bkg[mask] <= 20 * np.broadcast_to(per_slice, bkg.shape)[mask])
            ratios.append(data.counts.data[mask].sum() / bkg[mask].sum())
    ratios = np.array(ratios)
    print(f"DR1 per-run counts/predicted over 45 off runs: mean {ratios.mean():.3f}, "
          f"std {ratios.std():.3f}, range {ratios.min():.2f}-{ratios.max():.2f}")
    assert np.all((ratios > 0.5) & (ratios < 2.0))
    assert abs(ratios.mean() - 1) < 0.1 and ratios.std() < 0.2
