"""Exclusion kernels against brute force: event masks, exposure fractions, ALTAZ time averaging,
region files."""

import dask
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import xbkg
from xbkg.building.make import make_binning
from xbkg.core.circles import SkyCircles
from xbkg.core.runs import RunInfo
from xbkg.io.regions import read_exclusion_regions
from xbkg.simulate import SITES
from xbkg.sky import fov
from xbkg.sky.exclusion import (
    apply_exclusion,
    as_circles,
    attach_exclusions,
    drop_excluded_events,
    edge_distance,
    inside_circles,
    plan_exclusion,
    rotation_rate,
    run_exclusion_fraction,
    time_samples,
)
from xbkg.sky.exposure import annulus_solid_angle, box_solid_angle
from xbkg.testing import raise_if_dask_computes

RA0, DEC0 = 150.0, -25.0
F_EDGES = np.linspace(-2, 2, 9)


def _mc_box(n, rng, edges=F_EDGES):
    """Points uniform in solid angle over the FoV box; their (ny, nx) bin; solid angle per point."""
    lon = rng.uniform(edges[0], edges[-1], n)
    s0, s1 = np.sin(np.radians(edges[[0, -1]]))
    lat = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
    nb = edges.size - 1
    idx = (np.digitize(lat, edges) - 1) * nb + np.digitize(lon, edges) - 1
    area = np.radians(edges[-1] - edges[0]) * (s1 - s0)
    return lon, lat, idx, area / n


def _astropy_inside(ra, dec, circles):
    """Brute force with astropy separations."""
    points = SkyCoord(ra, dec, unit="deg")
    inside = np.zeros(points.shape, bool)
    for r, d, rad in zip(circles["ra"], circles["dec"], circles["radius"]):
        inside |= points.separation(SkyCoord(r, d, unit="deg")).deg < rad
    return inside


def _mc_fraction(inside, idx, n_bins):
    return 1 - np.bincount(idx, inside, minlength=n_bins) / np.bincount(idx, minlength=n_bins)


def _circles(ra, dec, radius):
    return SkyCircles(ra, dec, radius).to_dict()


# ---------------------------------------------------------------------------------------------
# regions and events


def test_sky_circles_validation_and_conversions():
    c = SkyCircles([370.0, 10.0], [0.0, -89.0], [0.5, 1.0], ["a", "b"])
    assert c.ra.tolist() == [10.0, 10.0] and len(c) == 2
    assert SkyCircles.from_dict(c.to_dict()).names == ("a", "b")
    assert as_circles([c, {"ra": 1.0, "dec": 2.0, "radius": 0.1, "name": "x"}]).names == (
        "a", "b", "x")
    assert len(c.subset([False, True])) == 1
    for bad, match in [(dict(radius=[0.0]), "radius"), (dict(dec=[91.0]), "dec"),
                       (dict(ra=[np.nan]), "finite"), (dict(ra=[1.0, 2.0]), "same length")]:
        with pytest.raises(ValueError, match=match):
            SkyCircles(**{"ra": [1.0], "dec": [2.0], "radius": [0.5], **bad})
    with pytest.raises(ValueError, match="exclusion regions must be"):
        as_circles(3.5)
    with pytest.raises(ValueError, match="exclusion_mode"):
        plan_exclusion(c, "pie", reach=2.0)


def test_inside_circles_matches_astropy():
    rng = np.random.default_rng(1)
    # around RA0 and around RA 0 / 360 (a circle across the wrap), and near the pole
    ra = np.mod(np.concatenate([rng.uniform(RA0 - 3, RA0 + 3, 20000),
                                rng.uniform(-2, 2, 10000), rng.uniform(0, 360, 5000)]), 360)
    dec = np.concatenate([rng.uniform(DEC0 - 3, DEC0 + 3, 20000), rng.uniform(-2, 2, 10000),
                          rng.uniform(88.5, 90, 5000)])
    circles = _circles([RA0, RA0 + 0.6, 359.9, 40.0], [DEC0, DEC0, 0.5, 89.5], [0.4, 0.4, 0.3, 0.7])
    ours = inside_circles(ra, dec, circles["ra"], circles["dec"], circles["radius"])
    np.testing.assert_array_equal(ours, _astropy_inside(ra, dec, circles))
    assert 0 < ours.sum() < ra.size
    columns = {"RA": ra, "DEC": dec, "ENERGY": np.arange(ra.size, dtype=float)}
    kept = drop_excluded_events(columns, circles)
    assert kept["ENERGY"].size == ra.size - ours.sum()
    np.testing.assert_array_equal(kept["ENERGY"], columns["ENERGY"][~ours])


def test_edge_distance_and_attach():
    circles = SkyCircles([RA0, RA0 + 5], [DEC0, DEC0], [0.5, 1.0])
    d = edge_distance([RA0, RA0 + 3], [DEC0 + 1, DEC0], circles)
    assert d.shape == (2, 2)
    np.testing.assert_allclose(d[0, 0], 0.5, atol=1e-9)
    given = [RunInfo(ra_pnt=RA0, dec_pnt=DEC0 + 1), RunInfo(ra_pnt=RA0 + 20, dec_pnt=DEC0),
             RunInfo(ra_pnt=RA0 + 2.5, dec_pnt=DEC0)]
    runs, n = attach_exclusions(given, circles, 2.0, oversample=4)
    assert n == 2
    assert runs[0].exclusion["ra"] == [RA0] and runs[0].exclusion["oversample"] == 4
    assert runs[1].exclusion is None and runs[1] is given[1]
    assert len(runs[2].exclusion["ra"]) == 2  # both edges within 2 deg
    assert all(r.exclusion is None for r in given)  # new records; the given ones unchanged
    columns = {"RA": np.array([1.0]), "DEC": np.array([2.0])}
    assert apply_exclusion(columns, runs[1], make_binning("2d")) == (columns, 1.0)


# ---------------------------------------------------------------------------------------------
# exposure fractions, fixed frames


def _radec_fraction(circles, kind="3d", oversample=8, offset_max=3.0):
    binning = make_binning(kind, "radec", fov_edges=F_EDGES, offset_edges=np.linspace(0, 2.5, 6),
                           offset_max=offset_max)
    info = RunInfo(ra_pnt=RA0, dec_pnt=DEC0)
    return run_exclusion_fraction(info, binning, circles, oversample=oversample), binning


def test_box_fraction_of_a_circle_inside_the_fov():
    """Excluded solid angle adds up to the cap's: exact, whatever the oversampling (which
    only sets the ALTAZ time sampling)."""
    circles = _circles([RA0 + 0.3], [DEC0 + 0.2], [0.45])
    cap = 2 * np.pi * (1 - np.cos(np.radians(0.45)))
    for oversample in (1, 8):
        frac, binning = _radec_fraction(circles, oversample=oversample)
        sa = box_solid_angle(F_EDGES, F_EDGES, binning.offset_max)
        assert abs(((1 - frac) * sa).sum() / cap - 1) < 1e-5
    assert frac.min() < 0.5 and np.sum(frac < 1) <= 9


def test_box_fractions_overlapping_and_edge_regions_vs_brute_force():
    rng = np.random.default_rng(2)
    # two overlapping circles and one half outside the FoV box (box edge at 2 deg)
    circles = _circles([RA0 - 0.5, RA0 - 1.0, RA0 + 2.2], [DEC0 + 0.5, DEC0 + 0.8, DEC0 - 1.0],
                       [0.5, 0.45, 0.6])
    frac, _ = _radec_fraction(circles, oversample=16)
    lon, lat, idx, _ = _mc_box(400_000, rng)
    ra, dec = fov.fov_to_radec(lon, lat, RA0, DEC0)
    brute = _mc_fraction(_astropy_inside(ra, dec, circles), idx, 64).reshape(8, 8)
    assert np.abs(frac - brute).max() < 0.02
    assert (brute < 0.9).sum() >= 6  # the test covers several partly excluded bins
    # union area of the overlapping pair: the flat-sky lens formula is enough at this size
    pair = _circles(circles["ra"][:2], circles["dec"][:2], circles["radius"][:2])
    frac, binning = _radec_fraction(pair, oversample=32)
    sa = box_solid_angle(F_EDGES, F_EDGES, binning.offset_max)
    d = np.radians(fov.offset_deg(pair["ra"][0], pair["dec"][0], pair["ra"][1], pair["dec"][1]))
    r1, r2 = np.radians(pair["radius"])
    lens = (r1**2 * np.arccos((d**2 + r1**2 - r2**2) / (2 * d * r1))
            + r2**2 * np.arccos((d**2 + r2**2 - r1**2) / (2 * d * r2))
            - 0.5 * np.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)))
    union = np.pi * (r1**2 + r2**2) - lens
    assert lens > 0.2 * np.pi * r2**2  # really overlapping
    np.testing.assert_allclose(((1 - frac) * sa).sum(), union, rtol=1e-4)


def test_offset_cut_and_ring_fractions_vs_brute_force():
    rng = np.random.default_rng(3)
    circles = _circles([RA0 + 1.0, RA0 - 1.5], [DEC0, DEC0 + 1.6], [0.5, 0.6])  # 2nd crosses 2.2
    frac, binning = _radec_fraction(circles, kind="2d", offset_max=2.2)
    edges = np.minimum(binning.fov_edges["offset"], 2.2)
    n = 400_000
    cos_max = np.cos(np.radians(2.2))
    rho = np.degrees(np.arccos(1 - rng.random(n) * (1 - cos_max)))
    phi = rng.uniform(0, 2 * np.pi, n)
    lon = np.degrees(np.arctan2(np.sin(np.radians(rho)) * np.sin(phi), np.cos(np.radians(rho))))
    lat = np.degrees(np.arcsin(np.sin(np.radians(rho)) * np.cos(phi)))
    ra, dec = fov.fov_to_radec(lon, lat, RA0, DEC0)
    idx = np.clip(np.digitize(rho, edges) - 1, 0, frac.size - 1)
    brute = _mc_fraction(_astropy_inside(ra, dec, circles), idx, frac.size)
    np.testing.assert_allclose(frac, brute, atol=0.01)
    assert frac.min() < 0.9
    # the last annulus is clipped at the cut: its fraction is of the part inside
    sa = annulus_solid_angle(binning.fov_edges["offset"], 2.2)
    assert 0 < sa[-1] < annulus_solid_angle(binning.fov_edges["offset"])[-1] and frac[-1] < 1


# ---------------------------------------------------------------------------------------------
# ALTAZ: regions turn through the FoV


@pytest.fixture(scope="module")
def near_zenith_run():
    """A run transiting 4 deg north of the zenith: the Alt/Az FoV turns by ~1.5 rad."""
    import astropy.units as u
    from astropy.time import Time

    site = SITES["hess"]
    mjdrefi, mjdreff = 51910, 0.000742870370370241
    mid = 6.3e8
    when = Time(mjdrefi, mjdreff, format="mjd", scale="tt") + mid * u.s
    lst = when.sidereal_time("apparent", longitude=site["geolon"] * u.deg).deg
    return RunInfo(ra_pnt=float(lst), dec_pnt=site["geolat"] + 4.0, tstart=mid - 840.0,
                   tstop=mid + 840.0, mjdrefi=float(mjdrefi), mjdreff=mjdreff, timesys="TT",
                   **site)


def _params(info):
    return fov.altaz_run_params(info.ra_pnt, info.dec_pnt, geolon=info.geolon,
                                geolat=info.geolat, altitude=info.altitude,
                                mjdrefi=info.mjdrefi, mjdreff=info.mjdreff,
                                timesys=info.timesys, tstart=info.tstart, tstop=info.tstop)


def test_rotation_rate_matches_the_transform(near_zenith_run):
    info = near_zenith_run
    params = _params(info)
    t = np.linspace(info.tstart, info.tstop, 7)
    ra, dec = fov.fov_to_radec(0.0, 1.5, info.ra_pnt, info.dec_pnt)  # a sky point
    dt = 1.0
    lon0, lat0 = fov.radec_to_altaz_fov(ra, dec, t - dt, params)
    lon1, lat1 = fov.radec_to_altaz_fov(ra, dec, t + dt, params)
    turn = np.unwrap(np.arctan2(lon1, lat1) - np.arctan2(lon0, lat0)) / (2 * dt)
    alt, az = fov.pointing_altaz(t, params)
    np.testing.assert_allclose(np.abs(turn), np.abs(rotation_rate(alt, az, info.geolat)),
                               rtol=0.01)
    assert np.abs(turn).mean() * (info.tstop - info.tstart) > 1.0


def test_time_samples_equal_rotation_and_gtis():
    t, w = time_samples(0.0, 100.0, lambda t: 0.001 + 0.01 * (t > 50), 0.06)
    assert np.isclose(w.sum(), 1) and t.size == 10  # 0.55 rad in all
    assert np.sum(t > 50) == 9 and np.all(np.diff(t) > 0)  # 0.5 rad after t = 50
    np.testing.assert_allclose(w[t > 50], w[-1])
    assert np.all(w[t < 50] > 5 * w[-1])
    t, w = time_samples([0.0, 60.0], [20.0, 100.0], lambda t: np.full_like(t, 0.01), 0.1)
    assert not np.any((t > 20) & (t < 60)) and np.isclose(w[t < 20].sum(), 1 / 3)
    t, w = time_samples(0.0, 100.0, lambda t: np.full_like(t, 1.0), 1e-6, max_samples=50)
    assert t.size == 50
    with pytest.raises(ValueError, match="stops >= starts"):
        time_samples(10.0, 0.0, lambda t: t, 0.1)


def test_time_samples_average_the_angle_exactly_when_the_rate_changes():
    """A FoV speeding up (rate linear in time, angle 5e-6 t^2 rad): the weighted samples give
    the angle's time-mean over the GTIs (to 1e-5), so fractions linear in the angle are
    averaged exactly. Mid-times of the parts of equal rotation gave 0.01578 for 0.01667 over
    one interval (5 % of the mean angle, with parts of 0.02 rad)."""
    def angle(t):
        return 5e-6 * t**2

    for starts, stops in (([0.0], [100.0]), ([0.0, 150.0], [100.0, 200.0])):
        t, w = time_samples(starts, stops, lambda t: 1e-5 * t, 0.02)
        mean = sum((5e-6 / 3) * (b**3 - a**3) for a, b in zip(starts, stops)) / sum(
            b - a for a, b in zip(starts, stops))
        assert np.sum(w * angle(t)) == pytest.approx(mean, rel=1e-5)
        assert t.size >= 3 and np.all(np.diff(t) > 0)


def test_altaz_fraction_is_time_averaged(near_zenith_run):
    """Against Monte Carlo in the Alt/Az FoV at random times, taken back to the sky."""
    info = near_zenith_run
    params = _params(info)
    ra_c, dec_c = fov.fov_to_radec([1.2, -0.9], [0.4, -1.0], info.ra_pnt, info.dec_pnt)
    circles = _circles(ra_c, dec_c, [0.4, 0.5])
    binning = make_binning("3d", "altaz", fov_edges=F_EDGES, offset_max=3.0)
    frac = run_exclusion_fraction(info.with_(altaz_params=params), binning, circles)
    rng = np.random.default_rng(6)
    lon, lat, idx, _ = _mc_box(400_000, rng)
    time = rng.uniform(info.tstart, info.tstop, lon.size)
    ra, dec = fov.altaz_fov_to_radec(lon, lat, time, params)
    brute = _mc_fraction(_astropy_inside(ra, dec, circles), idx, 64).reshape(8, 8)
    assert np.abs(frac - brute).max() < 0.025  # Monte Carlo: 0.007 rms per bin
    # the regions really sweep: many bins are touched, none lose more than ~half their time
    assert np.sum(brute < 0.99) >= 15
    # frozen at the mid time (no averaging) the same comparison fails
    mid = 0.5 * (info.tstart + info.tstop)
    frozen = run_exclusion_fraction(info.with_(altaz_params=params, tstart=mid, tstop=mid),
                                    binning, circles)
    assert np.abs(frozen - brute).max() > 0.2
    # with GTIs covering only the first half, the result follows the first half
    first = run_exclusion_fraction(info.with_(altaz_params=params), binning, circles,
                                   gti=(np.array([info.tstart]), np.array([mid])))
    early = time < mid
    brute_first = _mc_fraction(_astropy_inside(ra[early], dec[early], circles), idx[early],
                               64).reshape(8, 8)
    assert np.abs(first - brute_first).max() < 0.03
    assert np.abs(first - frac).max() > 0.1


# ---------------------------------------------------------------------------------------------
# files


def test_region_tables(tmp_path):
    from astropy.table import Table

    t = Table({"RA": [83.633, 228.6], "DEC": [22.01, -59.2], "Radius": [0.3, 0.4],
               "Source_Name": ["Crab", "MSH 15-52"]})
    t.write(tmp_path / "r.fits.gz")
    t.write(tmp_path / "r.ecsv")
    t.write(tmp_path / "r.csv")
    for name in ("r.fits.gz", "r.ecsv", "r.csv"):
        c = read_exclusion_regions(tmp_path / name)
        assert c.names == ("Crab", "MSH 15-52") and c.radius.tolist() == [0.3, 0.4]
    both = read_exclusion_regions([tmp_path / "r.csv", tmp_path / "r.ecsv"])
    assert len(both) == 4
    t["Radius"].unit = "arcmin"
    t.write(tmp_path / "arcmin.ecsv")
    np.testing.assert_allclose(read_exclusion_regions(tmp_path / "arcmin.ecsv").radius,
                               [0.005, 0.4 / 60])
    t["Radius"].unit = "s"
    t.write(tmp_path / "seconds.ecsv")
    with pytest.raises(ValueError, match="seconds.ecsv: column Radius has unit s, not an angle"):
        read_exclusion_regions(tmp_path / "seconds.ecsv")
    Table({"RA": [1.0], "DEC": [2.0]}).write(tmp_path / "noradius.csv")
    with pytest.raises(ValueError, match="noradius.csv: no Radius column"):
        read_exclusion_regions(tmp_path / "noradius.csv")
    Table({"RA": [1.0], "DEC": [2.0], "RADIUS": [-1.0]}).write(tmp_path / "neg.csv")
    with pytest.raises(ValueError, match="neg.csv.*radius must be in"):
        read_exclusion_regions(tmp_path / "neg.csv")
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        read_exclusion_regions(tmp_path / "missing.fits")


def test_ds9_files(tmp_path):
    good = tmp_path / "sources.reg"
    good.write_text('# Region file format: DS9 version 4.1\nfk5\ncircle(83.633,22.0145,0.3) '
                    '# text={Crab}\ngalactic\ncircle(184.557,-5.784,1080")\nicrs\n'
                    'circle(5:34:32,+22:00:52,18\')\n')
    c = read_exclusion_regions(good)
    assert len(c) == 3 and c.names[0] == "Crab"
    np.testing.assert_allclose(c.radius, [0.3, 0.3, 0.3])
    np.testing.assert_allclose(c.ra, [83.633, 83.63, 83.633], atol=0.01)  # all near the Crab
    np.testing.assert_allclose(c.dec, [22.0145, 22.01, 22.0144], atol=0.01)
    text = tmp_path / "regions.txt"  # DS9 content under another name
    text.write_text(good.read_text())
    assert len(read_exclusion_regions(text)) == 3
    for body, match in [("image\ncircle(10,10,3)\n", "CirclePixelRegion.*sky coordinates"),
                        ("fk5\nbox(1,2,3,4,0)\n", "region 1 is a RectangleSkyRegion"),
                        ("# Region file format: DS9\n", "no region")]:
        bad = tmp_path / "bad.reg"
        bad.write_text(body)
        with pytest.raises(ValueError, match=match):
            read_exclusion_regions(bad)


# ---------------------------------------------------------------------------------------------
# in the pipeline


def test_exclusion_keeps_the_build_lazy(tmp_path):
    from xbkg.simulate import simulate_store

    path = simulate_store(tmp_path / "s", n_runs=4, events_per_run=500, seed=1,
                          sources=[{"ra": 150.0, "dec": -25.0, "counts": 100}])
    reg = tmp_path / "src.reg"
    reg.write_text("fk5\ncircle(150.0,-25.0,0.4)\n")
    with raise_if_dask_computes():
        model = xbkg.make_model(path, kind="3d", fov_alignment="altaz", exclusion=reg,
                                selection="all", compute_now=False)
    assert isinstance(model["exposure"].data, dask.array.Array)
    assert '"n_runs_with_regions": 2' in model.attrs["provenance"]
    # computed together with the same build without regions (distinct graph keys): exposure
    # lost in the runs near the source, no source event kept
    plain = xbkg.make_model(path, kind="3d", fov_alignment="altaz", selection="all",
                            compute_now=False)
    model, plain = dask.compute(model, plain, scheduler="synchronous")
    assert 0.9 < float(model["exposure"].sum() / plain["exposure"].sum()) < 0.999
    assert int(plain["counts"].sum() - model["counts"].sum()) >= 150
