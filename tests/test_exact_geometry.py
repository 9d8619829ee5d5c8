"""Exact geometry: solid angle of FoV boxes within the offset cut, against an independent
adaptive quadrature (scipy) of the cap's latitude limits over longitude; exclusion fractions
against dense grids taken to the sky with astropy."""

import numpy as np
import pytest
from scipy.integrate import quad

from xbkg.core.runs import RunInfo
from xbkg.sky.exposure import annulus_solid_angle, box_cap_solid_angle, box_solid_angle


def _quad_box_cap(x1, x2, y1, y2, r):
    """Box ∩ cap (sr) by 1D adaptive quadrature, breaking at the cap's longitude limits and at
    the longitudes where the cap's edge crosses the box's latitude edges."""
    cos_r = np.cos(np.radians(r))
    y1r, y2r = np.radians(y1), np.radians(y2)

    def height(lon):
        c = np.cos(lon)
        if c * 1.0 <= 0.0 and cos_r > 0:
            return 0.0
        if c > 0:
            b = np.arccos(np.clip(cos_r / c, -1.0, 1.0))
            lo, hi = max(y1r, -b), min(y2r, b)
            return max(np.sin(hi) - np.sin(lo), 0.0)
        # |lon| > 90 deg and the cap beyond 90 deg: latitudes with cos(lat) <= cos_r / c
        b = np.arccos(np.clip(cos_r / c, -1.0, 1.0))
        inside = [(y1r, min(y2r, -b)), (max(y1r, b), y2r)]
        return sum(max(np.sin(h) - np.sin(l), 0.0) for l, h in inside)

    points = [np.radians(r), -np.radians(r), np.pi / 2, -np.pi / 2]
    for y in (y1, y2):
        c = cos_r / np.cos(np.radians(y))
        if abs(c) <= 1:
            points += [np.arccos(c), -np.arccos(c)]
    a, b = np.radians(x1), np.radians(x2)
    points = [p for p in points if a < p < b]
    return quad(height, a, b, points=points or None, epsabs=0.0, epsrel=1e-12, limit=500)[0]


@pytest.mark.parametrize("offset_max", [0.3, 2.5, 3.0, 12.0, 60.0, 100.0, 170.0])
def test_box_cap_solid_angle_matches_quadrature(offset_max):
    rng = np.random.default_rng(int(offset_max * 10))
    span = min(1.4 * offset_max, 179.0)
    for _ in range(40):
        x = np.sort(rng.uniform(-span, span, 2))
        y = np.sort(rng.uniform(-min(span, 90.0), min(span, 90.0), 2))
        exact = _quad_box_cap(*x, *y, offset_max)
        got = float(box_cap_solid_angle(*x, *y, offset_max))
        assert got == pytest.approx(exact, rel=1e-6, abs=1e-15)


def test_box_solid_angle_grid_sums_to_the_cap_and_is_fast():
    import time

    edges = np.linspace(-2.5, 2.5, 51)
    t0 = time.perf_counter()
    om = box_solid_angle(edges, edges, 2.5)
    assert time.perf_counter() - t0 < 0.05
    cap = annulus_solid_angle([0.0, 2.5])[0]
    assert om.sum() == pytest.approx(cap, rel=1e-12)
    # the bins crossing the cut, each against the quadrature
    e10 = np.linspace(-2.5, 2.5, 11)
    om10 = box_solid_angle(e10, e10, 2.5)
    full = box_solid_angle(e10, e10)
    crossing = np.argwhere((om10 > 1e-6 * full) & (om10 < full * (1 - 1e-9)))
    assert len(crossing) == 28
    for j, i in crossing:
        ref = _quad_box_cap(e10[i], e10[i + 1], e10[j], e10[j + 1], 2.5)
        assert om10[j, i] == pytest.approx(ref, rel=1e-6)


def test_box_solid_angle_without_cut_and_a_fine_grid():
    """A dense midpoint grid of the cut agrees to its own accuracy (independent of quad)."""
    om = box_solid_angle([-1.0, 0.2], [0.5, 1.5], 1.2)[0, 0]
    n = 4000
    lon = np.radians(np.linspace(-1.0, 0.2, n + 1))
    lat = np.radians(np.linspace(0.5, 1.5, n + 1))
    lc, tc = 0.5 * (lon[1:] + lon[:-1]), 0.5 * (lat[1:] + lat[:-1])
    cell = np.diff(lon)[None, :] * np.diff(np.sin(lat))[:, None]
    inside = np.cos(tc)[:, None] * np.cos(lc)[None, :] >= np.cos(np.radians(1.2))
    assert om == pytest.approx(cell[inside].sum(), rel=1e-4)
    assert box_solid_angle([0.0, 1.0], [0.0, 1.0])[0, 0] == pytest.approx(
        np.radians(1.0) * np.sin(np.radians(1.0)), rel=1e-14)


# ---------------------------------------------------------------------------------------------
# exclusion fractions: exact, against a dense grid taken to the sky with astropy

RA0, DEC0 = 150.0, -25.0


def _astropy_sky(lon, lat):
    """FoV (gammapy sign: lon = minus the SkyOffsetFrame longitude) -> ICRS, with astropy."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord, SkyOffsetFrame

    frame = SkyOffsetFrame(origin=SkyCoord(RA0, DEC0, unit="deg"))
    return SkyCoord(-lon * u.deg, lat * u.deg, frame=frame).icrs


def _grid_fractions_box(x_edges, y_edges, offset_max, circles, n=160):
    """Fraction outside the circles of each box ∩ cut: n x n midpoint cells per bin."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    k = (np.arange(n) + 0.5) / n
    lon = (x_edges[:-1, None] + np.diff(x_edges)[:, None] * k).ravel()
    s = np.sin(np.radians(y_edges))
    lat = np.degrees(np.arcsin((s[:-1, None] + np.diff(s)[:, None] * k).ravel()))  # equal area
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    sky = _astropy_sky(lon2.ravel(), lat2.ravel())
    centre = SkyCoord(RA0, DEC0, unit="deg")
    keep = sky.separation(centre).deg <= offset_max
    inside = np.zeros(keep.shape, bool)
    for ra, dec, rad in zip(circles["ra"], circles["dec"], circles["radius"]):
        inside |= sky.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg < rad
    ny, nx = y_edges.size - 1, x_edges.size - 1
    idx = (np.repeat(np.arange(ny), n)[:, None] * nx + np.repeat(np.arange(nx), n)[None, :]).ravel()
    total = np.bincount(idx, keep, minlength=ny * nx)
    out = np.bincount(idx, keep & ~inside, minlength=ny * nx)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, out / total, 1.0).reshape(ny, nx), total.reshape(ny, nx)


def _sky_circles(fov_lon, fov_lat, radius):
    sky = _astropy_sky(np.asarray(fov_lon, float), np.asarray(fov_lat, float))
    return {"ra": sky.ra.deg.tolist(), "dec": sky.dec.deg.tolist(), "radius": list(radius)}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["overlap_edge_cut", "sliver", "bigger_than_bins"])
def test_box_exclusion_fractions_vs_dense_grid(case):
    from xbkg.building.make import make_binning
    from xbkg.sky.exclusion import run_exclusion_fraction

    edges = np.linspace(-2.0, 2.0, 9)
    circles = {
        # two overlapping, one across the FoV box edge and the offset cut (2.2 deg)
        "overlap_edge_cut": _sky_circles([-0.5, -1.0, 1.9], [0.5, 0.8, -1.0], [0.5, 0.45, 0.6]),
        # a circle whose edge enters bin [0, 0.5] x [0, 0.5] by 0.01 deg
        "sliver": _sky_circles([-0.3], [0.25], [0.31]),
        # a circle covering several bins fully, centred off the bin grid
        "bigger_than_bins": _sky_circles([0.13], [-0.21], [1.1]),
    }[case]
    binning = make_binning("3d", "radec", fov_edges=edges, offset_max=2.2)
    frac = run_exclusion_fraction(RunInfo(ra_pnt=RA0, dec_pnt=DEC0), binning, circles)
    brute, total = _grid_fractions_box(edges, edges, 2.2, circles)
    ok = total > 0.1 * 160**2  # bins mostly beyond the cut: too few grid cells to compare
    assert np.abs(frac - brute)[ok].max() < 1e-3
    assert (brute[ok] < 0.999).sum() >= 1
    if case == "sliver":
        assert 0.98 < frac[4, 4] < 0.999  # the sliver is seen (the old sub-grid said 1.000)


@pytest.mark.slow
def test_annulus_exclusion_fractions_vs_dense_grid():
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from xbkg.building.make import make_binning
    from xbkg.sky.exclusion import run_exclusion_fraction

    edges = np.linspace(0.0, 2.5, 6)
    # one containing the FoV centre, an overlapping pair, one across the cut (2.2 deg)
    circles = _sky_circles([0.1, 1.0, 1.3, -1.5], [0.05, 0.0, 0.3, 1.4], [0.3, 0.5, 0.4, 0.6])
    binning = make_binning("2d", offset_edges=edges, offset_max=2.2)
    frac = run_exclusion_fraction(RunInfo(ra_pnt=RA0, dec_pnt=DEC0), binning, circles)
    n = 1500
    cut = np.minimum(edges, 2.2)
    k = (np.arange(n) + 0.5) / n
    cos_e = np.cos(np.radians(cut))
    rho = np.degrees(np.arccos((cos_e[:-1, None] + np.diff(cos_e)[:, None] * k).ravel()))
    phi = (np.arange(n) + 0.5) * 2 * np.pi / n
    rr, pp = np.meshgrid(rho, phi, indexing="ij")
    r, p = np.radians(rr.ravel()), pp.ravel()
    lon = np.degrees(np.arctan2(np.sin(r) * np.sin(p), np.cos(r)))
    lat = np.degrees(np.arcsin(np.sin(r) * np.cos(p)))
    sky = _astropy_sky(lon, lat)
    inside = np.zeros(lon.shape, bool)
    for ra, dec, rad in zip(circles["ra"], circles["dec"], circles["radius"]):
        inside |= sky.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg < rad
    brute = 1 - inside.reshape(edges.size - 1, -1).mean(axis=1)
    assert np.abs(frac - brute).max() < 1e-3
    assert frac[0] < 0.9 and frac[-1] < 1



def test_meridian_arcs_without_trigonometry_match_the_angles():
    """The arcs' sines from the trig-free path equal those of the clipped angles, and an arc
    over the pole (end beyond 90 deg) takes the angle path, clipped to the semicircle."""
    from xbkg.sky.excluded_area import _meridian_arcs

    rng = np.random.default_rng(5)
    aa = rng.uniform(0.998, 1.0, (200, 3))
    bb = rng.uniform(-0.05, 0.05, (200, 3))
    cos_a = np.cos(np.radians([0.3, 1.0, 2.5]))
    hit, s, e = _meridian_arcs(aa, bb, cos_a)
    rr = np.hypot(aa, bb)
    psi, half = np.arctan2(bb, aa), np.arccos(np.clip(cos_a / rr, -1, 1))
    want = cos_a < rr
    assert np.array_equal(hit, want) and 0 < want.sum() < want.size
    np.testing.assert_allclose(s[want], np.sin(psi - half)[want], rtol=0, atol=1e-12)  # arccos near 1: ~1e-14
    np.testing.assert_allclose(e[want], np.sin(psi + half)[want], rtol=0, atol=1e-12)  # arccos near 1: ~1e-14
    assert np.all(s[~want] == 0) and np.all(e[~want] == 0)
    # a circle of 10 deg centred 85 deg up the meridian reaches over the pole: clipped at 1
    c = np.radians(85.0)
    hit, s, e = _meridian_arcs(np.array([[np.cos(c)]]), np.array([[np.sin(c)]]),
                               np.cos(np.radians([10.0])))
    assert hit[0, 0] and e[0, 0] == 1.0 and s[0, 0] == pytest.approx(np.sin(np.radians(75.0)))


# ---------------------------------------------------------------------------------------------
# ALTAZ fractions, averaged over the FoV rotation: against dense time x dense space sampling

ALTAZ_EDGES = np.linspace(-2.0, 2.0, 9)  # 0.5 deg bins
ALTAZ_CUT = 2.2  # deg: crosses the corner bins


def _transit_run(zenith, hour_angle=0.0, duration=1680.0):
    """A run centred on its transit (hour angle 0, h) at ``zenith`` (deg) north of the zenith,
    and its ALTAZ constants: at 2.5 deg from the zenith the FoV turns by ~1.9 rad."""
    import astropy.units as u
    from astropy.time import Time

    from xbkg.simulate import SITES
    from xbkg.sky import fov

    site = SITES["hess"]
    mjdrefi, mjdreff, mid = 51910, 0.000742870370370241, 6.3e8
    when = Time(mjdrefi, mjdreff, format="mjd", scale="tt") + mid * u.s
    lst = when.sidereal_time("apparent", longitude=site["geolon"] * u.deg).deg
    info = RunInfo(ra_pnt=float(lst - 15 * hour_angle) % 360, dec_pnt=site["geolat"] + zenith,
                   tstart=mid - duration / 2, tstop=mid + duration / 2, mjdrefi=float(mjdrefi),
                   mjdreff=mjdreff, timesys="TT", **site)
    params = fov.altaz_run_params(
        info.ra_pnt, info.dec_pnt, geolon=info.geolon, geolat=info.geolat,
        altitude=info.altitude, mjdrefi=info.mjdrefi, mjdreff=info.mjdreff,
        timesys=info.timesys, tstart=info.tstart, tstop=info.tstop)
    return info.with_(altaz_params=params)


def _circles_at(info, t, lon, lat, radius):
    """Sky circles whose centres sit at ALTAZ FoV ``lon, lat`` (deg) at time ``t``."""
    from xbkg.sky import fov

    ra, dec = fov.altaz_fov_to_radec(np.asarray(lon, float), np.asarray(lat, float), t,
                                     info.altaz_params)
    return {"ra": ra.tolist(), "dec": dec.tolist(), "radius": list(radius)}


def _unit(lon, lat):
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def _altaz_brute_force(info, circles, gti, n_times=512, n_cell=32, seed=0):
    """Fraction of each ALTAZ bin ∩ cut outside the circles, averaged over the GTIs: at
    ``n_times`` stratified random times, each circle's centre and a point of its edge are
    taken to the ALTAZ FoV (the FoV radius is their distance), and ``n_cell`` x ``n_cell``
    equal-area cells per bin are tested at a point jittered anew each time (unbiased)."""
    from xbkg.sky import fov

    rng = np.random.default_rng(seed)
    params = info.altaz_params
    ra, dec, rad = (np.asarray(circles[k], float) for k in ("ra", "dec", "radius"))
    edge_ra, edge_dec = fov.fov_to_radec(np.zeros_like(rad), rad, ra, dec)
    e, nb = ALTAZ_EDGES, ALTAZ_EDGES.size - 1
    sy = np.sin(np.radians(e))
    k = np.arange(n_cell) / n_cell
    lon0 = (e[:-1, None] + np.diff(e)[:, None] * k).ravel()
    s0 = (sy[:-1, None] + np.diff(sy)[:, None] * k).ravel()
    dl, ds = np.repeat(np.diff(e) / n_cell, n_cell), np.repeat(np.diff(sy) / n_cell, n_cell)
    s0, lon0 = (a.ravel() for a in np.meshgrid(s0, lon0, indexing="ij"))
    ds, dl = (a.ravel() for a in np.meshgrid(ds, dl, indexing="ij"))
    row = np.repeat(np.arange(nb), n_cell)
    cell_bin = (row[:, None] * nb + row[None, :]).ravel()
    area = np.radians(dl) * ds
    # cells no circle can reach at any time (outside the circles' offset annuli) add nothing
    centre = _unit(lon0 + dl / 2, np.degrees(np.arcsin(s0 + ds / 2)))
    offset = np.degrees(np.arccos(np.clip(centre[:, 0], -1, 1)))
    d = fov.offset_deg(ra, dec, info.ra_pnt, info.dec_pnt)
    near = (np.abs(offset[:, None] - d) < rad + 0.1).any(axis=1)
    s0, lon0, ds, dl, area, cell_bin = (a[near] for a in (s0, lon0, ds, dl, area, cell_bin))
    starts, stops = (np.atleast_1d(np.asarray(v, float)) for v in gti)
    cum = np.concatenate([[0.0], np.cumsum(stops - starts)])
    at = (np.arange(n_times) + rng.random(n_times)) / n_times * cum[-1]
    g = np.clip(np.searchsorted(cum, at, "right") - 1, 0, starts.size - 1)
    times = starts[g] + at - cum[g]
    shift = [(rng.permutation(n_times) + rng.random(n_times)) / n_times for _ in range(2)]
    c = _unit(*fov.radec_to_altaz_fov(ra[None, :], dec[None, :], times[:, None], params))
    p = _unit(*fov.radec_to_altaz_fov(edge_ra[None, :], edge_dec[None, :], times[:, None], params))
    cos_r = np.einsum("tri,tri->tr", c, p)
    cos_cut = np.cos(np.radians(ALTAZ_CUT))
    excluded = np.zeros(nb * nb)
    for t in range(n_times):
        q = _unit(lon0 + shift[0][t] * dl, np.degrees(np.arcsin(s0 + shift[1][t] * ds)))
        inside = (q @ c[t].T >= cos_r[t]).any(axis=1) & (q[:, 0] >= cos_cut)
        excluded += np.bincount(cell_bin[inside], area[inside], minlength=nb * nb)
    total = box_solid_angle(ALTAZ_EDGES, ALTAZ_EDGES, ALTAZ_CUT)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1 - excluded.reshape(nb, nb) / n_times / total, 1.0), total


def _altaz_case(case):
    """Run, circles (ALTAZ FoV at mid-run) and GTIs of each case."""
    zenith, hour_angle = {"transit": (1.5, 0.0), "gtis": (5.0, 0.05), "sliver": (35.0, -1.5)}[case]
    info = _transit_run(zenith, hour_angle)
    mid = 0.5 * (info.tstart + info.tstop)
    if case == "sliver":  # little rotation: a circle's edge enters bin [0, 0.5] x [0, 0.5] by
        # 0.01 deg, one larger than a bin, one across the cut
        circles = _circles_at(info, mid, [-0.3, -1.2, 1.9], [0.25, -1.0, -0.9], [0.31, 0.8, 0.5])
    else:  # an overlapping pair, one across the FoV box and the cut, one holding the FoV
        # centre, one larger than a bin
        circles = _circles_at(info, mid, [1.2, 0.9, 1.9, 0.1, -1.0], [0.4, 0.8, -0.9, 0.05, -1.0],
                              [0.4, 0.35, 0.5, 0.3, 0.7])
    gti = ([info.tstart], [info.tstop])
    if case == "gtis":  # two GTIs with a gap of a third of the run
        gti = ([info.tstart, mid + 280.0], [mid - 280.0, info.tstop])
    return info, circles, gti


@pytest.mark.slow
@pytest.mark.parametrize("case", ["transit", "gtis", "sliver"])
def test_altaz_fractions_vs_dense_time_and_space(case):
    """Exact time-averaged ALTAZ fractions agree with brute force to 1e-3 absolute: a transit
    2.5 deg from the zenith (the FoV turns by ~1.9 rad), the same with two GTIs, and a run
    at 35 deg zenith (little rotation) with a sliver; circles across the FoV edge and the
    cut, overlapping, holding the FoV centre, larger than a bin."""
    from xbkg.building.make import make_binning
    from xbkg.sky import fov
    from xbkg.sky.exclusion import run_exclusion_fraction

    info, circles, gti = _altaz_case(case)
    binning = make_binning("3d", "altaz", fov_edges=ALTAZ_EDGES, offset_max=ALTAZ_CUT)
    frac = run_exclusion_fraction(info, binning, circles, gti=gti)
    brute, total = _altaz_brute_force(info, circles, gti)
    ok = total > 0.1 * total.max()  # bins almost all beyond the cut: too few cells
    assert np.abs(frac - brute)[ok].max() < 1e-3
    assert np.sum(brute[ok] < 0.99) >= 10
    if case == "sliver":
        assert 0.98 < frac[4, 4] < 0.999 and 0.98 < brute[4, 4] < 0.999
        return
    az = fov.pointing_altaz(np.linspace(gti[0][0], gti[1][-1], 9), info.altaz_params)[1]
    assert np.ptp(np.unwrap(np.radians(az))) > 1.0  # the FoV turns fast
    # the same comparison fails when the time average is wrong: frozen at mid-run, or over
    # the whole run instead of the GTIs
    mid = 0.5 * (info.tstart + info.tstop)
    frozen = run_exclusion_fraction(info, binning, circles, gti=([mid], [mid]))
    assert np.abs(frozen - brute)[ok].max() > 0.05
    if case == "gtis":
        whole = run_exclusion_fraction(info, binning, circles)
        assert np.abs(whole - brute)[ok].max() > 3e-3


def _rotated_box_reference(edges, d, psi, a, angles, offset_max):
    """Mean over ``angles`` of the exact static areas (excluded_box_area) of the circles at
    offsets ``d`` and bearings ``psi + angle``: the time average by brute force in angle."""
    from xbkg.sky.excluded_area import excluded_box_area

    bearing = np.asarray(psi)[None, :] + np.asarray(angles)[:, None]
    d = np.broadcast_to(d, bearing.shape)
    c = np.stack([np.cos(d), np.sin(d) * np.sin(bearing), np.sin(d) * np.cos(bearing)], -1)
    return excluded_box_area(edges, edges, offset_max, c, np.cos(a))


@pytest.mark.parametrize("case", ["three", "centre", "big_turn", "full_turn", "still",
                                  "edge_cut", "sliver", "two_intervals"])
def test_turning_box_area_vs_dense_angles(case):
    """The exact average over the turning angle equals the mean of exact static areas at 1000
    angles (midpoint rule) to 1e-4 of a bin, whatever the angle's distribution."""
    from xbkg.sky import excluded_area
    from xbkg.sky.excluded_area import angle_table, turning_box_area

    rad = np.radians
    edges = rad(np.linspace(-2.5, 2.5, 26))
    d, psi, a, spans = {
        "three": ([1.0, 1.3, 2.2], [0.3, 0.9, 2.0], [0.4, 0.4, 0.5], [(0.0, 0.3)]),
        "centre": ([0.2], [1.0], [0.6], [(-0.1, 0.2)]),  # holds the FoV centre
        "big_turn": ([1.5, 0.5], [0.3, 2.5], [0.4, 0.3], [(-0.9, 0.9)]),
        "full_turn": ([1.0], [0.7], [0.3], [(-3.5, 3.5)]),  # more than a full turn
        "still": ([1.5], [0.3], [0.4], [(0.0, 0.0)]),
        "edge_cut": ([2.4], [0.7], [0.5], [(0.0, 0.4)]),
        "sliver": ([float(np.hypot(0.25, 0.3))], [float(np.arctan2(-0.3, 0.25))], [0.6],
                   [(0.0, 0.02)]),
        "two_intervals": ([1.2, 1.5], [0.0, 0.4], [0.3, 0.5], [(0.0, 0.2), (0.5, 0.6)]),
    }[case]
    d, a = rad(d), rad(a)
    n = 1000 if spans[0][1] > spans[0][0] else 1
    angles = np.concatenate([lo + (hi - lo) * (np.arange(n) + 0.5) / n for lo, hi in spans])
    first = np.concatenate([np.linspace(lo, hi, 9)[:-1] for lo, hi in spans])
    second = np.concatenate([np.linspace(lo, hi, 9)[1:] for lo, hi in spans])
    table = angle_table(first, second, np.ones(first.size))  # equal times per span
    kinks = np.ravel(spans)
    got = turning_box_area(edges, edges, rad(2.5), np.stack(
        [np.cos(d), np.sin(d) * np.sin(psi), np.sin(d) * np.cos(psi)], -1), np.cos(a), table,
        kinks)
    old = excluded_area.NODES, excluded_area.SHORT_NODES
    try:  # a reference at its most precise
        excluded_area.NODES = excluded_area.SHORT_NODES = 8
        ref = _rotated_box_reference(edges, d, psi, a, angles, rad(2.5))
    finally:
        excluded_area.NODES, excluded_area.SHORT_NODES = old
    bin_area = np.diff(edges)[None, :] * np.diff(np.sin(edges))[:, None]
    assert np.abs(got - ref).max() < 1e-4 * bin_area.min()
    assert np.sum(ref > 0.01 * bin_area) >= 3


def test_altaz_circles_stay_circles_magnified_by_aberration():
    """In the ALTAZ FoV a sky circle is a circle of its radius times the magnification of a
    point 1 deg from the pointing (annual aberration, ~1e-4), to 2e-6 of the radius: what
    :func:`xbkg.sky.exclusion.run_exclusion_fraction` assumes (2e-6: the magnification varies
    that little across the FoV)."""
    from xbkg.sky import fov

    info = _transit_run(2.5)
    params = info.altaz_params
    ref_lon, ref_lat = fov.radec_to_altaz_fov(info.ra_pnt, info.dec_pnt + 1.0,
                                              info.tstart, params)
    scale = np.degrees(np.arccos(_unit(ref_lon, ref_lat)[0]))
    assert 1e-5 < abs(scale - 1) < 3e-4
    phi = np.linspace(0, 2 * np.pi, 73)
    for lon, lat, r in ((1.2, 0.4, 0.4), (1.9, -0.8, 0.5), (0.1, 0.05, 0.3)):
        ra, dec = fov.fov_to_radec(lon, lat, info.ra_pnt, info.dec_pnt)
        e_ra, e_dec = fov.fov_to_radec(np.degrees(np.arctan2(np.sin(np.radians(r)) * np.sin(phi),
                                                             np.cos(np.radians(r)))),
                                       np.degrees(np.arcsin(np.sin(np.radians(r)) * np.cos(phi))),
                                       ra, dec)
        for t in (info.tstart, info.tstop):
            c = _unit(*fov.radec_to_altaz_fov(ra, dec, t, params))
            e = _unit(*fov.radec_to_altaz_fov(e_ra, e_dec, t, params))
            radius = np.degrees(np.arccos(np.clip(e @ c, -1, 1)))
            np.testing.assert_allclose(radius, r * scale, rtol=2e-6)


def test_rotation_knots_and_table_follow_the_gtis():
    from xbkg.sky.exclusion import rotation_knots, rotation_table

    t, k = rotation_knots([0.0, 100.0, 300.0], [50.0, 100.0, 400.0], 30)
    assert t.min() == 0 and t.max() == 400 and not np.any((t > 50) & (t < 300))
    assert np.sum(k == 0) < np.sum(k == 1)  # by duration; the empty GTI left out
    # an angle turning at a constant rate: uniform over the angles of the GTIs only
    table, kinks = rotation_table(1e-3 * t, t, k)
    knots, cdf = table[0], table[1]
    assert np.interp(0.05, knots, cdf) == pytest.approx(1 / 3)
    assert np.interp(0.2, knots, cdf) == pytest.approx(1 / 3)  # nothing in the gap
    assert np.interp(0.35, knots, cdf) == pytest.approx(2 / 3)
    np.testing.assert_allclose(kinks, [0.0, 0.05, 0.3, 0.4])
    # turning back: the turning point is a kink and the table is exact
    tt = np.linspace(0.0, 10.0, 101)
    table, kinks = rotation_table(1.0 - (tt - 5.0) ** 2 / 25.0, tt, np.zeros(tt.size, int))
    assert kinks.max() == pytest.approx(1.0) and kinks.min() == pytest.approx(0.0)
    assert table[1][-1] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# ALTAZ fractions of regions reaching beyond 80 deg from the pointing: time samples

WIDE_EDGES = np.linspace(-84.0, 84.0, 7)  # 28 deg bins: a binning make_binning accepts
WIDE_CUT = 85.0


def _astropy_altaz_circles(info, circles, times):
    """Circle centres ``(T, R, 3)`` (unit vectors) and cos radii ``(T, R)`` in the ALTAZ FoV at
    ``times``, with astropy only: AltAz (pressure 0) of the centres, of a point on each edge
    and of the pointing, then the offset frame of the pointing (gammapy sign)."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, SkyOffsetFrame
    from astropy.time import Time, TimeDelta

    site = EarthLocation.from_geodetic(info.geolon * u.deg, info.geolat * u.deg,
                                       info.altitude * u.m)
    ref = Time(info.mjdrefi, info.mjdreff, format="mjd", scale=info.timesys.lower())
    frame = AltAz(obstime=ref + TimeDelta(times, format="sec"), location=site,
                  pressure=0 * u.hPa)
    centre = SkyCoord(circles["ra"], circles["dec"], unit="deg")
    edge = centre.directional_offset_by(0.0 * u.deg, np.asarray(circles["radius"]) * u.deg)
    pointing = SkyCoord(info.ra_pnt, info.dec_pnt, unit="deg").transform_to(frame)
    out = []
    for sky in (centre, edge):
        off = sky[:, None].transform_to(frame).transform_to(SkyOffsetFrame(origin=pointing))
        out.append(_unit(-off.lon.deg, off.lat.deg).transpose(1, 0, 2))
    return out[0], np.einsum("tri,tri->tr", *out)


def _wide_brute_force(info, circles, gti, n_times=512, n_cell=32, seed=0):
    """Fraction of each bin of :data:`WIDE_EDGES` ∩ cut outside the circles, averaged over the
    GTIs: circles from :func:`_astropy_altaz_circles` at stratified random times, and
    ``n_cell`` x ``n_cell`` equal-area cells per bin, each tested at a point jittered anew each
    time; the fraction is that of the cells' area inside the cut (no xbkg code). Returns the
    fractions and each bin's solid angle inside the cut (sr)."""
    rng = np.random.default_rng(seed)
    starts, stops = (np.atleast_1d(np.asarray(v, float)) for v in gti)
    cum = np.concatenate([[0.0], np.cumsum(stops - starts)])
    at = (np.arange(n_times) + rng.random(n_times)) / n_times * cum[-1]
    g = np.clip(np.searchsorted(cum, at, "right") - 1, 0, starts.size - 1)
    centres, cos_r = _astropy_altaz_circles(info, circles, starts[g] + at - cum[g])
    e, nb = WIDE_EDGES, WIDE_EDGES.size - 1
    sy = np.sin(np.radians(e))
    k = np.arange(n_cell) / n_cell
    s0, lon0 = np.meshgrid((sy[:-1, None] + np.diff(sy)[:, None] * k).ravel(),
                           (e[:-1, None] + np.diff(e)[:, None] * k).ravel(), indexing="ij")
    ds, dl = np.meshgrid(np.repeat(np.diff(sy) / n_cell, n_cell),
                         np.repeat(np.diff(e) / n_cell, n_cell), indexing="ij")
    s0, lon0, ds, dl = (a.ravel() for a in (s0, lon0, ds, dl))
    row = np.repeat(np.arange(nb), n_cell)
    cell_bin = (row[:, None] * nb + row[None, :]).ravel()
    area = np.radians(dl) * ds
    cos_cut = np.cos(np.radians(WIDE_CUT))
    kept, outside = np.zeros(nb * nb), np.zeros(nb * nb)
    for t in range(n_times):
        q = _unit(lon0 + rng.random(lon0.size) * dl,
                  np.degrees(np.arcsin(s0 + rng.random(s0.size) * ds)))
        keep = q[:, 0] >= cos_cut
        out = keep & ~(q @ centres[t].T >= cos_r[t]).any(axis=1)
        kept += np.bincount(cell_bin, area * keep, minlength=nb * nb)
        outside += np.bincount(cell_bin, area * out, minlength=nb * nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(kept > 0, outside / kept, 1.0)
    return frac.reshape(nb, nb), kept.reshape(nb, nb) / n_times


@pytest.mark.parametrize("case", ["one_gti", "two_gtis"])
def test_altaz_fractions_of_regions_beyond_80_deg_vs_astropy(case):
    """A binning of +-84 deg with an 85 deg cut (make_binning accepts it) and a region
    reaching beyond 80 deg from the pointing: the fractions come from time samples, not the
    turning average. Against astropy AltAz at 512 times x a jittered equal-area grid, to 1e-3
    absolute per bin: a circle inside a bin, one across a bin edge, one across the cut.
    Before the fix, up to 3e-3 off: the step between samples was a 28 deg DETX bin / 8,
    although such a bin is 2.4 deg wide on the sky at DETY 85 deg, and each sample was the
    mid-time of its part of equal rotation, wrong to first order where the rate changes."""
    from xbkg.building.make import make_binning
    from xbkg.sky import exclusion, fov

    info = _transit_run(*{"one_gti": (4.0, -1.15), "two_gtis": (55.0, -1.4)}[case])
    mid = 0.5 * (info.tstart + info.tstop)
    # inside bin [3, 1]; across DETX edges at DETY -70 deg (bins 10 deg wide on the sky);
    # across the cut, reaching 86 deg
    circles = _circles_at(info, mid, [-42.0, -19.4, 60.0], [14.0, -69.7, 50.0], [5.0, 7.1, 15.0])
    gti = ([info.tstart], [info.tstop])
    if case == "two_gtis":
        gti = ([info.tstart, mid + 280.0], [mid - 280.0, info.tstop])
    binning = make_binning("3d", "altaz", fov_edges=WIDE_EDGES, offset_max=WIDE_CUT)
    # the path under test is taken: a region reaches beyond 80 deg within the cut
    ra, dec, rad = (np.asarray(circles[k], float) for k in ("ra", "dec", "radius"))
    reach = fov.offset_deg(ra, dec, info.ra_pnt, info.dec_pnt) + rad
    assert reach.max() > WIDE_CUT > exclusion._TURNING_REACH
    assert exclusion._turning_fraction(info, binning, info.altaz_params, *gti, ra, dec,
                                       rad) is None
    frac = exclusion.run_exclusion_fraction(info, binning, circles, gti=gti)
    brute, total = _wide_brute_force(info, circles, gti)
    ok = total > 0.1 * total.max()  # bins almost all beyond the cut: too few cells
    assert np.abs(frac - brute)[ok].max() < 1e-3
    touched = brute < 0.999
    assert touched[3, 1] and touched[2:5, 0:3].sum() == 1  # inside one bin
    assert touched[0, 1:4].all()  # across the DETX = -28 and 0 deg edges
    assert touched[4:, 4:].all() and touched.sum() == 8  # across the cut
    # the time average matters here: the fractions frozen at mid-run are far off
    frozen = exclusion.run_exclusion_fraction(info, binning, circles, gti=([mid], [mid]))
    assert np.abs(frozen - brute)[ok].max() > 0.01


@pytest.mark.parametrize("case", ["transit", "gtis", "sliver"])
def test_altaz_time_samples_agree_with_the_turning_average(case, monkeypatch):
    """The time-sample path forced on ordinary binnings (every region 'beyond' 0 deg) agrees
    to 1e-3 per bin with the turning average, itself checked against a dense time x space
    brute force in :func:`test_altaz_fractions_vs_dense_time_and_space` (same cases)."""
    from xbkg.building.make import make_binning
    from xbkg.sky import exclusion

    info, circles, gti = _altaz_case(case)
    binning = make_binning("3d", "altaz", fov_edges=ALTAZ_EDGES, offset_max=ALTAZ_CUT)
    turning = exclusion.run_exclusion_fraction(info, binning, circles, gti=gti)
    monkeypatch.setattr(exclusion, "_TURNING_REACH", 0.0)
    ra, dec, rad = (np.asarray(circles[k], float) for k in ("ra", "dec", "radius"))
    assert exclusion._turning_fraction(info, binning, info.altaz_params, *gti, ra, dec,
                                       rad) is None
    sampled = exclusion.run_exclusion_fraction(info, binning, circles, gti=gti)
    assert np.abs(sampled - turning).max() < 1e-3
    assert np.sum(turning < 0.99) >= 10
