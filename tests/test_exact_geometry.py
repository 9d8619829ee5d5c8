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
