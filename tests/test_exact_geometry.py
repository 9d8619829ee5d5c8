"""Exact geometry: solid angle of FoV boxes within the offset cut, against an independent
adaptive quadrature (scipy) of the cap's latitude limits over longitude."""

import numpy as np
import pytest
from scipy.integrate import quad

from xbkg.exposure import annulus_solid_angle, box_cap_solid_angle, box_solid_angle


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
