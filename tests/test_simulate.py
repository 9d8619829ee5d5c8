"""Simulated GADF stores: format (gammapy opens them), agreement with the truth, determinism."""

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from astropy.io import fits
from scipy import stats

from xbkg import simulate
from xbkg.simulate import ObservingPlan, TruthModel, simulate_store
from xbkg.sky import fov

OFFSET_MAX = 3.0


def _chi2_p(observed, expected):
    """Upper-tail probability of Pearson's chi2 of Poisson counts (no fitted parameters)."""
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    chi2 = np.sum((observed - expected) ** 2 / expected)
    return stats.chi2.sf(chi2, observed.size)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """6 runs, 'altaz' truth with a strong gradient, ~2,500 events at zenith 0."""
    truth = TruthModel(norm=1.0, gradient=0.25, radial_sigma=1.5, frame="altaz")
    mu0 = truth.total_counts(zenith=0.0, ontime=simulate.NOMINAL_ONTIME, offset_max=OFFSET_MAX)
    truth = TruthModel.from_dict({**truth.to_dict(), "norm": 2500.0 / mu0})
    path = simulate_store(tmp_path_factory.mktemp("sim") / "store", n_runs=6, truth=truth, seed=7,
                          offset_max=OFFSET_MAX, zenith_range=(5, 55))
    return path, truth, json.loads((path / "truth.json").read_text())


def _read_run(path, obs_id):
    with fits.open(path / "data" / f"obs_{obs_id:06d}.fits") as hdul:
        ev = hdul["EVENTS"]
        return {k: np.asarray(ev.data[k], float) for k in ("TIME", "RA", "DEC", "ENERGY")}, \
            dict(ev.header), dict(hdul["GTI"].header), np.asarray(hdul["GTI"].data["START"])


def _run_params(header):
    return fov.altaz_run_params(
        header["RA_PNT"], header["DEC_PNT"], geolon=header["GEOLON"], geolat=header["GEOLAT"],
        altitude=header["ALTITUDE"], mjdrefi=header["MJDREFI"], mjdreff=header["MJDREFF"],
        timesys=header["TIMESYS"], tstart=header["TSTART"], tstop=header["TSTOP"])


# ------------------------------------------------------------------------------- the truth


def test_truth_dict_roundtrip_and_validation():
    truth = TruthModel(gradient=0.1, frame="RADEC")
    assert truth.frame == "radec"
    text = json.dumps(truth.to_dict())
    assert TruthModel.from_dict(json.loads(text)) == truth
    with pytest.raises(KeyError, match="bogus"):
        TruthModel.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="frame"):
        TruthModel(frame="galactic")
    with pytest.raises(ValueError, match="radial_sigma"):
        TruthModel(radial_sigma=0.0)


def test_rate_factors():
    truth = TruthModel(norm=2.0, index=2.5, e_threshold=0.2, zenith_norm_slope=0.5)
    # threshold and zenith factor at 60 deg: cos = 0.5
    assert truth.threshold(60.0) == pytest.approx(0.2 / 0.5**2)
    assert truth.zenith_factor(60.0) == pytest.approx(1.5)
    # far above threshold the turn-on is ~1: power law with the norm at 1 TeV
    assert truth.rate(10.0, 0.0, 0.0, 0.0) == pytest.approx(2.0 * 10.0**-2.5, rel=1e-6)
    # half at threshold; zero outside the energy range
    assert truth.rate(0.2, 0.0, 0.0, 0.0) == pytest.approx(0.5 * 2.0 * 0.2**-2.5)
    assert truth.rate(truth.e_max * 1.01, 0, 0, 0) == 0 and truth.rate(truth.e_min * 0.99, 0, 0, 0) == 0
    # radial shape at one sigma; gradient clipped at zero
    assert TruthModel(radial_sigma=1.0).spatial(1.0, 0.0) == pytest.approx(math.exp(-0.5), rel=1e-9)
    assert TruthModel(gradient=1.0).spatial(0.0, -2.0) == 0.0


def _brute_force_spectral(truth, edges, zenith, n=20001):
    total = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        e = np.geomspace(lo, hi, n)
        total.append(np.trapezoid(truth.spectrum(e, zenith) * e, np.log(e)) * 1e6)
    return np.array(total)


def _brute_force_spatial(truth, x_edges, y_edges, n=1200, offset_max=None):
    """Fine lon/lat grid, solid angle cos(lat) dlon dlat, optional offset cut."""
    x = np.linspace(x_edges[0], x_edges[-1], n + 1)
    y = np.linspace(y_edges[0], y_edges[-1], n + 1)
    xc, yc = 0.5 * (x[1:] + x[:-1]), 0.5 * (y[1:] + y[:-1])
    lon, lat = np.meshgrid(xc, yc)
    w = truth.spatial(lon, lat) * np.cos(np.radians(lat)) * np.radians(x[1] - x[0]) * np.radians(y[1] - y[0])
    if offset_max is not None:
        w = np.where(fov.offset_deg(lon, lat, 0.0, 0.0) <= offset_max, w, 0.0)
    return w, lon, lat


def test_expected_counts_matches_brute_force_integration():
    truth = TruthModel(norm=1e-4, gradient=0.2, radial_sigma=1.2)
    e_edges = np.geomspace(0.1, 100.0, 7)
    zenith, ontime = 35.0, 1500.0
    spectral = _brute_force_spectral(truth, e_edges, zenith)
    # 3D boxes
    x_edges, y_edges = np.linspace(-3, 3, 7), np.linspace(-2, 4, 4)
    counts3 = truth.expected_counts(e_edges, detx_edges=x_edges, dety_edges=y_edges,
                                    zenith=zenith, ontime=ontime)
    assert counts3.shape == (6, 3, 6)
    w, lon, lat = _brute_force_spatial(truth, x_edges, y_edges)
    ix, iy = np.digitize(lon, x_edges) - 1, np.digitize(lat, y_edges) - 1
    boxes = np.zeros((3, 6))
    np.add.at(boxes, (iy, ix), w)
    np.testing.assert_allclose(counts3, ontime * spectral[:, None, None] * boxes, rtol=2e-4)
    # 2D offset rings: the total within 3 deg
    counts2 = truth.expected_counts(e_edges, offset_edges=[0.0, 1.0, 2.0, 3.0], zenith=zenith,
                                    ontime=ontime)
    assert counts2.shape == (6, 3)
    w, _, _ = _brute_force_spatial(truth, [-3.0, 3.0], [-3.0, 3.0], n=2400, offset_max=3.0)
    assert counts2.sum() == pytest.approx(ontime * spectral.sum() * w.sum(), rel=1e-3)
    # a gradient below clipping averages out over azimuth
    flat = TruthModel(norm=1e-4, radial_sigma=1.2).expected_counts(
        e_edges, offset_edges=[0.0, 1.0, 2.0, 3.0], zenith=zenith, ontime=ontime)
    np.testing.assert_allclose(counts2, flat, rtol=1e-9)


def test_expected_counts_bad_input():
    truth = TruthModel()
    with pytest.raises(ValueError, match="not both"):
        truth.expected_counts([1, 2], offset_edges=[0, 1], detx_edges=[0, 1], dety_edges=[0, 1],
                              zenith=0, ontime=1)
    with pytest.raises(ValueError, match="offset_edges"):
        truth.expected_counts([1, 2], zenith=0, ontime=1)


def test_samplers_follow_the_truth():
    rng = np.random.default_rng(1)
    truth = TruthModel(gradient=0.3, radial_sigma=1.0)
    n = 200_000
    e_edges = np.geomspace(truth.e_min, truth.e_max, 25)
    spectral = truth.energy_integral(e_edges, 30.0)
    observed, _ = np.histogram(simulate.sample_energy(rng, n, truth, 30.0), e_edges)
    keep = spectral / spectral.sum() * n > 10
    assert _chi2_p(observed[keep], (spectral / spectral.sum() * n)[keep]) > 1e-3
    lon, lat = simulate.sample_fov(rng, n, sigma=1.0, gradient=0.3, offset_max=2.5)
    x_edges = np.linspace(-2.5, 2.5, 11)
    boxes = truth.fov_integral(detx_edges=x_edges, dety_edges=x_edges)
    # boxes cut by the offset limit: compare only the fully contained ones
    inside = (np.maximum(np.abs(x_edges[:-1]), np.abs(x_edges[1:]))[:, None] ** 2
              + np.maximum(np.abs(x_edges[:-1]), np.abs(x_edges[1:]))[None, :] ** 2) < 2.4**2
    total = truth.fov_integral(offset_edges=[0, 2.5])[0]
    observed, _, _ = np.histogram2d(lat, lon, [x_edges, x_edges])
    expected = boxes / total * n
    assert _chi2_p(observed[inside], expected[inside]) > 1e-3
    assert fov.offset_deg(lon, lat, 0, 0).max() <= 2.5


# ------------------------------------------------------------------------------- the store


def test_plan_runs_nights_zeniths_azimuths():
    runs = simulate.plan_runs(13, seed=3, zenith_range=(10, 40), start="2022-06-01")
    night = np.floor((runs["TSTART"] - runs["TSTART"][0]) / 86400 + 0.5)
    assert list(np.bincount(night.astype(int))) == [6, 6, 1]
    assert np.all((runs["ZEN_PNT"] > 8) & (runs["ZEN_PNT"] < 42))
    # stratified: each third of the range holds about a third of the runs
    assert np.all(np.histogram(runs["ZEN_PNT"], [0, 20, 30, 90])[0] >= 3)
    assert np.ptp(runs["AZ_PNT"]) > 90
    # the pointing really is at the planned alt/az at the run's mid time
    mid = 0.5 * (runs["TSTART"] + runs["TSTOP"])
    for i in range(3):
        params = fov.altaz_run_params(
            runs["RA_PNT"][i], runs["DEC_PNT"][i], geolon=16.5002222222222,
            geolat=-23.2717777777778, altitude=1835.0, mjdrefi=51910,
            mjdreff=0.000742870370370241, timesys="TT", tstart=runs["TSTART"][i],
            tstop=runs["TSTOP"][i])
        alt, _ = fov.pointing_altaz(np.array([mid[i]]), params)
        assert 90 - alt[0] == pytest.approx(runs["ZEN_PNT"][i], abs=0.3)


def test_store_layout_and_headers(store):
    path, truth, record = store
    with fits.open(path / "obs-index.fits.gz") as hdul:
        hdr, obs = hdul[1].header, hdul[1].data
        assert (hdr["EXTNAME"], hdr["HDUCLAS1"], hdr["HDUCLAS2"]) == ("OBS_INDEX", "INDEX", "OBS")
        for key in ("MJDREFI", "MJDREFF", "TIMESYS", "TIMEUNIT", "GEOLON", "GEOLAT", "ALTITUDE"):
            assert key in hdr
        assert hdul[1].columns["RA_PNT"].unit == "deg" and hdul[1].columns["ONTIME"].unit == "s"
        assert list(obs["OBS_ID"]) == [1, 2, 3, 4, 5, 6]
        np.testing.assert_allclose(obs["ZEN_PNT"] + obs["ALT_PNT"], 90.0)
        assert np.all((obs["ZEN_PNT"] > 3) & (obs["ZEN_PNT"] < 57))
        assert np.all(np.abs(obs["ONTIME"] - 1680) <= 60)
        np.testing.assert_allclose(obs["TSTOP"] - obs["TSTART"], obs["ONTIME"])
        assert np.all(obs["TSTART"][1:] > obs["TSTOP"][:-1])  # one after another, no overlap
        assert set(obs["TARGET_NAME"]) == {"Off data"}
        event_count = np.asarray(obs["EVENT_COUNT"])
    with fits.open(path / "hdu-index.fits.gz") as hdul:
        hdu = hdul[1].data
        assert hdul[1].header["HDUCLAS2"] == "HDU"
        assert sorted(set(hdu["HDU_TYPE"])) == ["events", "gti"] and len(hdu) == 12
    for i, run in enumerate(record["runs"]):
        events, header, gti_header, gti_start = _read_run(path, run["obs_id"])
        assert events["TIME"].size == event_count[i] == run["n_events"]
        assert header["CREATOR"] == "xbkg.simulate" and header["TIMESYS"] == "TT"
        assert header["HDUCLAS1"] == "EVENTS" and header["HDUVERS"] == "0.2"
        assert "DATE" not in header
        assert np.all(np.diff(events["TIME"]) >= 0)
        assert events["TIME"].min() >= header["TSTART"] and events["TIME"].max() <= header["TSTOP"]
        assert gti_start[0] == header["TSTART"] and gti_header["HDUCLAS1"] == "GTI"
        offset = fov.offset_deg(events["RA"], events["DEC"], header["RA_PNT"], header["DEC_PNT"])
        assert offset.max() <= OFFSET_MAX + 1e-3
    assert record["truth"] == truth.to_dict() and record["offset_max"] == OFFSET_MAX


@pytest.mark.gammapy
def test_gammapy_opens_store(store):
    pytest.importorskip("gammapy")
    with warnings.catch_warnings():  # matplotlib (imported by gammapy) vs pyparsing >= 3.3
        warnings.filterwarnings("ignore", message=".*deprecated - use", category=UserWarning)
        from gammapy.data import DataStore

    path, _, record = store
    ds = DataStore.from_dir(path)
    assert len(ds.obs_table) == 6
    run = record["runs"][2]
    obs = ds.obs(run["obs_id"], required_irf=[])
    assert len(obs.events.table) == run["n_events"]
    assert obs.gti.time_sum.to_value("s") == pytest.approx(run["ontime"])
    alt = obs.get_pointing_altaz(obs.tmid).alt.deg
    assert 90 - alt == pytest.approx(run["zenith"], abs=0.5)


def test_event_counts_follow_truth(tmp_path):
    path = simulate_store(tmp_path / "many", n_runs=40, events_per_run=300, seed=5,
                          truth=None, zenith_range=(0, 60))
    record = json.loads((path / "truth.json").read_text())
    n = np.array([r["n_events"] for r in record["runs"]])
    mu = np.array([r["expected_counts"] for r in record["runs"]])
    zen = np.array([r["zenith"] for r in record["runs"]])
    truth = TruthModel.from_dict(record["truth"])
    # events_per_run sets the norm: a 1680 s run at zenith 0 expects 300 events within 4 deg
    assert truth.total_counts(zenith=0, ontime=1680, offset_max=4.0) == pytest.approx(300)
    np.testing.assert_allclose(mu, [truth.total_counts(zenith=z, ontime=r["ontime"], offset_max=4.0)
                                    for z, r in zip(zen, record["runs"])])
    assert _chi2_p(n, mu) > 1e-3 and _chi2_p(n, mu) < 1 - 1e-3  # neither too far nor too close
    assert abs(n.sum() - mu.sum()) < 4 * math.sqrt(mu.sum())
    # the zenith dependence shows: higher zenith, fewer events (threshold rises)
    assert stats.spearmanr(zen, n).statistic < -0.8


def test_energy_distribution_follows_truth(store):
    path, truth, record = store
    edges = np.geomspace(0.1, 100.0, 16)
    observed, expected = np.zeros(15), np.zeros(15)
    for run in record["runs"]:
        events, _, _, _ = _read_run(path, run["obs_id"])
        observed += np.histogram(events["ENERGY"], edges)[0]
        expected += truth.expected_counts(edges, offset_edges=[0, OFFSET_MAX], zenith=run["zenith"],
                                          ontime=run["ontime"])[:, 0]
    keep = expected > 5
    assert keep.sum() >= 8
    assert _chi2_p(observed[keep], expected[keep]) > 1e-3


def test_altaz_gradient_shows_in_altaz_frame_only(store):
    path, truth, record = store
    w, _, lat = _brute_force_spatial(truth, [-3, 3], [-3, 3], n=600, offset_max=OFFSET_MAX)
    expected_mean = np.sum(w * lat) / np.sum(w)
    lat_altaz, lat_radec = [], []
    for run in record["runs"]:
        events, header, _, _ = _read_run(path, run["obs_id"])
        params = _run_params(header)
        lat_altaz.append(fov.radec_to_altaz_fov(events["RA"], events["DEC"], events["TIME"], params)[1])
        lat_radec.append(fov.radec_to_fov(events["RA"], events["DEC"], header["RA_PNT"],
                                          header["DEC_PNT"])[1])
    lat_altaz, lat_radec = np.concatenate(lat_altaz), np.concatenate(lat_radec)
    err = lat_altaz.std() / math.sqrt(lat_altaz.size)
    assert expected_mean > 10 * err
    assert lat_altaz.mean() == pytest.approx(expected_mean, abs=4 * err)
    assert abs(lat_radec.mean() - expected_mean) > 5 * err


def test_radec_frame_and_sources(tmp_path):
    truth = TruthModel(norm=1e-3, gradient=0.3, radial_sigma=1.5, frame="radec")
    mu0 = truth.total_counts(zenith=0.0, ontime=simulate.NOMINAL_ONTIME, offset_max=2.5)
    truth = TruthModel.from_dict({**truth.to_dict(), "norm": truth.norm * 1500 / mu0})
    src = {"ra": 83.63, "dec": 22.01, "counts": 300, "sigma": 0.05, "name": "Crab"}
    path = simulate_store(tmp_path / "s", n_runs=4, truth=truth, seed=2, offset_max=2.5,
                          sources=[src], zenith_range=(0, 50))
    record = json.loads((path / "truth.json").read_text())
    lat, near = [], 0
    for run in record["runs"]:
        events, header, _, _ = _read_run(path, run["obs_id"])
        sep_src = fov.offset_deg(events["RA"], events["DEC"], src["ra"], src["dec"])
        background = sep_src > 0.3
        lat.append(fov.radec_to_fov(events["RA"][background], events["DEC"][background],
                                    header["RA_PNT"], header["DEC_PNT"])[1])
        if run["pointed_near_source"]:
            near += 1
            assert header["OBJECT"] == "Crab"
            assert 0.5 <= fov.offset_deg(src["ra"], src["dec"], header["RA_PNT"], header["DEC_PNT"]) <= 1.5
            assert run["n_source_events"] > 200 and np.sum(sep_src < 0.2) >= run["n_source_events"] * 0.9
    assert near == 2
    lat = np.concatenate(lat)
    assert lat.mean() > 8 * lat.std() / math.sqrt(lat.size)


@pytest.mark.slow
def test_deterministic_bytes_and_parallel(tmp_path):
    kwargs = dict(n_runs=3, events_per_run=400, seed=11, compress=True)
    a = simulate_store(tmp_path / "a", **kwargs)
    b = simulate_store(tmp_path / "b", n_jobs=2, **kwargs)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 6 and any(str(f).endswith(".fits.gz") for f in files)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = simulate_store(tmp_path / "c", **{**kwargs, "seed": 12})
    assert (c / "data" / "obs_000001.fits.gz").read_bytes() != (a / "data" / "obs_000001.fits.gz").read_bytes()


def test_gzip_level_as_dr1(tmp_path):
    """compress=9 writes the maximum-compression gzip of the DR1 files, with the same events."""
    import gzip

    kwargs = dict(n_runs=2, events_per_run=500, seed=5)
    fast = simulate_store(tmp_path / "fast", compress=True, **kwargs)
    best = simulate_store(tmp_path / "best", compress=9, **kwargs)
    for name in ("obs_000001.fits.gz", "obs_000002.fits.gz"):
        a, b = (fast / "data" / name).read_bytes(), (best / "data" / name).read_bytes()
        assert gzip.decompress(a) == gzip.decompress(b)
        assert b[8] == 2 and a[8] == 4  # gzip XFL: maximum / fastest compression
        assert len(b) < len(a)
    with pytest.raises(ValueError, match="compress"):
        simulate_store(tmp_path / "bad", compress=10, **kwargs)


@pytest.mark.slow
def test_spawned_workers_give_the_same_bytes(tmp_path, monkeypatch):
    """The pool spawns (instead of forking) when the parent runs other threads."""
    import threading

    kwargs = dict(n_runs=2, events_per_run=300, seed=4)
    a = simulate_store(tmp_path / "a", **kwargs)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    b = simulate_store(tmp_path / "b", n_jobs=2, **kwargs)
    for name in ("data/obs_000001.fits", "data/obs_000002.fits", "obs-index.fits.gz"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_refuses_non_empty_outdir(tmp_path):
    out = tmp_path / "store"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="store"):
        simulate_store(out, n_runs=1, events_per_run=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary left behind
    simulate_store(out, n_runs=1, events_per_run=50, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "obs-index.fits.gz").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (simulate_store(empty, n_runs=1, events_per_run=50) / "truth.json").exists()
    with pytest.raises(ValueError, match="zenith_range"):
        simulate_store(tmp_path / "z", n_runs=1, zenith_range=(10, 89))


def _store_files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_plan_and_its_keyword_shortcuts_write_the_same_bytes(tmp_path):
    """simulate_store(out, ObservingPlan(...)) and the keywords of before give the same files."""
    fields = {"n_runs": 3, "events_per_run": 150, "zenith_range": (10, 50),
              "start": "2022-03-01", "style": "lst", "site": "cta-north", "offset_max": 2.5,
              "target_name": "Off X", "compress": True}
    a = simulate_store(tmp_path / "plan", ObservingPlan(**fields), seed=3)
    b = simulate_store(tmp_path / "keywords", seed=3, **fields)
    files_a, files_b = _store_files(a), _store_files(b)
    assert sorted(files_a) == sorted(files_b) and len(files_a) == 6
    assert any(name.endswith(".fits.gz") for name in files_a if name.startswith("data"))
    assert files_a == files_b
    header = fits.getheader(a / "data" / "obs_000001.fits.gz", "EVENTS")
    assert header["OBJECT"] == "Off X" and header["GEOLAT"] == simulate.SITES["cta-north"]["geolat"]
    # the defaults: no plan and an empty plan are the same store
    c = simulate_store(tmp_path / "default", ObservingPlan(n_runs=1, events_per_run=50))
    d = simulate_store(tmp_path / "default-keywords", n_runs=1, events_per_run=50)
    assert _store_files(c) == _store_files(d)


@pytest.mark.parametrize("field, value", [
    ("n_runs", 0), ("n_runs", 2.5), ("n_runs", "many"), ("events_per_run", 0),
    ("events_per_run", float("nan")), ("zenith_range", (50, 10)), ("zenith_range", (0, 85)),
    ("zenith_range", "0:60"), ("start", "not a date"), ("style", "fermi"), ("site", "moon"),
    ("site", {"geolon": 1.0}), ("offset_max", 0), ("offset_max", 95.0), ("compress", 10),
    ("compress", "yes"),
])
def test_plan_values_are_checked_naming_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        ObservingPlan(**{field: value})
    with pytest.raises(ValueError, match=field):
        simulate_store(tmp_path / "s", **{field: value})
    assert not (tmp_path / "s").exists()


def test_unknown_keywords_and_wrong_plans_are_refused(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_run'"):
        simulate_store(tmp_path / "s", n_run=2)
    plan = ObservingPlan(n_runs=2)
    with pytest.raises(ValueError, match="n_runs"):  # a shortcut replaces the plan's field
        simulate_store(tmp_path / "s", plan, n_runs=0)
    with pytest.raises(TypeError, match="plan must be an ObservingPlan, got dict"):
        simulate_store(tmp_path / "s", {"n_runs": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.n_runs = 3
    assert not (tmp_path / "s").exists()


def test_simulated_hdus_carry_the_gadf_cards_of_the_writers(tmp_path):
    """Simulated stores declare their HDUs with the cards of xbkg.io.gadf (one spec for every
    HDU xbkg writes), not a copy of their own."""
    from xbkg.io.gadf import HDU_SPECS, gadf_cards

    out = simulate_store(tmp_path / "s", n_runs=1, events_per_run=50, seed=2)
    expected = {"EVENTS": ("EVENTS",), "GTI": ("GTI",), "OBS_INDEX": ("INDEX", "OBS"),
                "HDU_INDEX": ("INDEX", "HDU")}
    files = sorted((out / "data").iterdir()) + [out / "obs-index.fits.gz", out / "hdu-index.fits.gz"]
    seen = set()
    for path in files:
        with fits.open(path) as hdus:
            for hdu in hdus[1:]:
                cards = gadf_cards(*expected[hdu.name])
                assert {k: hdu.header[k] for k in cards} == cards
                assert "HDUCLAS3" not in hdu.header
                seen.add(hdu.name)
    assert seen == set(expected)
    bkg = HDU_SPECS["bkg"]["cards"]
    assert {k: bkg[k] for k in ("HDUCLASS", "HDUDOC", "HDUVERS")} == {
        k: cards[k] for k in ("HDUCLASS", "HDUDOC", "HDUVERS")}
