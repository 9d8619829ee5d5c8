"""Exact solid angle of FoV bins ∩ offset cut ∩ union of sky circles (numpy kernels).

Used for the exposure fractions of exclusion regions (:mod:`xbkg.sky.exclusion`). Angles in
radians; circles are given in the FoV frame as unit vectors (x toward the FoV centre, y toward
+lon, z toward +lat) and the cosines of their radii, at sample times with weights. The method
and its accuracy: docs/architecture.rst.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["NODES", "excluded_box_area", "excluded_annulus_area"]

#: Gauss-Legendre nodes per piece between breakpoints.
NODES = 5
_TINY = 1e-13  # rad: pieces shorter than this are dropped
#: Pieces shorter than this (rad, 0.01 deg) get :data:`SHORT_NODES` nodes.
SHORT = 1.75e-4
SHORT_NODES = 4


@functools.lru_cache(maxsize=4)
def _legendre(n: int):
    s, w = np.polynomial.legendre.leggauss(n)
    s, w = 0.5 * (s + 1.0), 0.5 * w
    return 0.5 * (1.0 - np.cos(np.pi * s)), 0.5 * np.pi * np.sin(np.pi * s) * w


def _nodes(a: np.ndarray, b: np.ndarray, n: int | None = None):
    """Nodes and weights (flat) of pieces ``[a, b]`` and the piece of each node
    (Gauss-Legendre in s, with ``t = a + (b - a)(1 - cos(pi s)) / 2``); pieces shorter than
    :data:`SHORT` rad get :data:`SHORT_NODES` (their error falls like length**(2 n))."""
    out_t, out_w, out_p = [], [], []
    n = NODES if n is None else n
    short = (b - a) < SHORT
    for mask, k in ((~short, n), (short, SHORT_NODES)):
        idx = np.flatnonzero(mask)
        u, du = _legendre(k)
        d = (b[idx] - a[idx])[:, None]
        out_t.append((a[idx, None] + d * u).ravel())
        out_w.append((d * du).ravel())
        out_p.append(np.repeat(idx, k))
    return np.concatenate(out_t), np.concatenate(out_w), np.concatenate(out_p)


def _pieces(points: np.ndarray, inside):
    """Pieces between consecutive sorted ``points (T, K)`` (NaN: none) whose middle satisfies
    ``inside(mid (T, K - 1)) -> bool``: their ends and sample index, flat."""
    pts = np.sort(np.where(np.isfinite(points), points, np.inf), axis=1)
    a, b = pts[:, :-1], pts[:, 1:]
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(b) & (b - a > _TINY)
        mid = np.where(keep, 0.5 * (a + b), 0.0)
    keep &= inside(mid)
    t = np.nonzero(keep)[0]
    return a[keep], b[keep], t


def _union_measure(starts, ends, lo, hi, measure) -> np.ndarray:
    """Measure of the union of intervals ``[starts, ends]`` (last axis) within ``[lo, hi]``."""
    s = np.clip(starts, lo[..., None], hi[..., None])
    e = np.clip(ends, s, hi[..., None])
    order = np.argsort(s, axis=-1)
    s = np.take_along_axis(s, order, axis=-1)
    e = np.take_along_axis(e, order, axis=-1)
    reach = lo.copy()
    total = np.zeros(lo.shape)
    for k in range(s.shape[-1]):
        a = np.maximum(s[..., k], reach)
        b = np.maximum(e[..., k], reach)
        total += measure(b) - measure(a)
        reach = b
    return total


def _dot(u, v):
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1] + u[..., 2] * v[..., 2]


def _cross(u, v):
    return np.stack([u[..., 1] * v[..., 2] - u[..., 2] * v[..., 1],
                     u[..., 2] * v[..., 0] - u[..., 0] * v[..., 2],
                     u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]], axis=-1)


def _circle_pairs(c: np.ndarray, cos_a: np.ndarray) -> np.ndarray:
    """Intersection points ``(T, 2m, 3)`` (NaN where none) of every pair of circles ``c (T, R,
    3)`` with radii cosines ``cos_a (R,)``."""
    i, j = np.triu_indices(c.shape[1], 1)
    c1, c2, k1, k2 = c[:, i], c[:, j], cos_a[i], cos_a[j]
    d = _dot(c1, c2)
    n = _cross(c1, c2)
    nn = _dot(n, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (k1 - d * k2) / nn
        beta = (k2 - d * k1) / nn
        g2 = (1.0 - alpha * k1 - beta * k2) / nn
        ok = (nn > 1e-24) & (g2 >= 0)
    g = np.where(ok, np.sqrt(np.where(ok, g2, 0.0)), np.nan)[..., None]
    base = alpha[..., None] * c1 + beta[..., None] * c2
    return np.concatenate([base + g * n, base - g * n], axis=1)


def _lonlat(c: np.ndarray):
    return np.arctan2(c[..., 1], c[..., 0]), np.arcsin(np.clip(c[..., 2], -1.0, 1.0))


def _box_breakpoints(x, y, r, c, cos_a):
    """Longitudes ``(T, K)`` where the covered measure is not smooth (NaN: none), and each
    circle's centre longitude and half-extent in longitude ``(T, R)``."""
    n_t = c.shape[0]
    lon, lat = _lonlat(c)
    sin_a = np.sqrt(1.0 - cos_a**2)
    cl = np.cos(lat)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(cl > sin_a, np.arcsin(np.clip(sin_a / cl, 0.0, 1.0)), np.pi)
        # circle x latitude edges
        cd = (cos_a[None, :, None] - np.sin(y) * np.sin(lat)[..., None]) / (
            np.cos(y) * cl[..., None])
        dl = np.arccos(np.where(np.abs(cd) <= 1, cd, np.nan)).reshape(n_t, -1)
    lon_y = np.repeat(lon, y.size, axis=1)
    pts = [np.broadcast_to(x, (n_t, x.size)), lon - half, lon + half, lon_y - dl, lon_y + dl]
    circles, cosines = c, cos_a
    if r < np.pi / 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = math.cos(r) / np.cos(y)
            ly = np.arccos(np.where(np.abs(cy) <= 1, cy, np.nan))
        pts.append(np.broadcast_to(np.concatenate([[-r, r], ly, -ly]), (n_t, 2 + 2 * y.size)))
        circles = np.concatenate([c, np.broadcast_to([1.0, 0.0, 0.0], (n_t, 1, 3))], axis=1)
        cosines = np.concatenate([cos_a, [math.cos(r)]])
    p = _circle_pairs(circles, cosines)
    pts.append(np.arctan2(p[..., 1], p[..., 0]))
    return np.concatenate(pts, axis=1), lon, half


def _meridian_arcs(aa: np.ndarray, bb: np.ndarray, cos_a: np.ndarray):
    """Arcs of latitude that circles cover on the meridians of the nodes: whether each circle
    meets the meridian, and the sines of the arc's ends (0 where not), ``(N, R)`` each.

    ``aa, bb``: the circle centres' components along the meridian's equator point and the pole.
    The arc is ``psi -+ half`` (``psi = atan2(bb, aa)``, ``cos(half) = cos_a / |(aa, bb)|``);
    its sines follow without trigonometry when both ends lie within +-90 deg of latitude and
    the radii are below 90 deg (all circles of a FoV), otherwise from the angles, clipped to
    the semicircle.
    """
    rr2 = aa * aa + bb * bb
    rr = np.sqrt(rr2)
    hit = cos_a[None, :] < rr
    g = np.sqrt(np.where(hit, rr2 - cos_a[None, :] ** 2, 0.0))  # |(aa, bb)| sin(half)
    cos_s, cos_e = aa * cos_a + bb * g, aa * cos_a - bb * g  # |(aa, bb)|**2 cos(ends)
    if np.all(cos_a > 0) and not np.any(hit & ((cos_s <= 0) | (cos_e <= 0))):
        inv = 1.0 / np.where(hit, rr2, 1.0)
        return hit, np.where(hit, (bb * cos_a - aa * g) * inv, 0.0), \
            np.where(hit, (bb * cos_a + aa * g) * inv, 0.0)
    psi = np.arctan2(bb, aa)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.arccos(np.clip(cos_a[None, :] / rr, -1.0, 1.0))
    half_pi = 0.5 * np.pi
    starts = np.minimum(np.maximum(np.where(hit, psi - half, 0.0), -half_pi), half_pi)
    ends = np.minimum(np.maximum(np.where(hit, psi + half, 0.0), -half_pi), half_pi)
    return hit, np.sin(starts), np.sin(ends)


def excluded_box_area(x_edges, y_edges, offset_max, centres, cos_radius, weights=None):
    """Solid angle (sr) of each FoV box within ``offset_max`` and inside any circle.

    Parameters
    ----------
    x_edges, y_edges : array
        Box edges in FoV longitude and latitude, rad (latitudes within [-pi/2, pi/2]).
    offset_max : float
        Offset cut, rad (below pi/2), or inf.
    centres : array (T, R, 3)
        Unit vectors of the circle centres in the FoV frame at T sample times.
    cos_radius : array (R,)
        Cosines of the circle radii.
    weights : array (T,), optional
        Weights of the samples (default: equal), normalised to sum 1.

    Returns
    -------
    numpy.ndarray
        Shape ``(ny, nx)``: the weighted mean over samples of the covered solid angle.
    """
    x = np.asarray(x_edges, dtype=float)
    y = np.asarray(y_edges, dtype=float)
    centres = np.asarray(centres, dtype=float).reshape(-1, np.shape(cos_radius)[0], 3)
    cos_a = np.asarray(cos_radius, dtype=float)
    n_t = centres.shape[0]
    tw = np.full(n_t, 1.0 / n_t) if weights is None else np.asarray(weights, float) / np.sum(weights)
    r = float(offset_max)
    lim = min(r, np.pi / 2)
    nx, ny = x.size - 1, y.size - 1
    pts, lon, half = _box_breakpoints(x, y, r, centres, cos_a)

    def inside(m):
        rel = np.abs(np.mod(m[..., None] - lon[:, None, :] + np.pi, 2 * np.pi) - np.pi)
        return ((rel <= half[:, None, :]).any(axis=-1) & (m > x[0]) & (m < x[-1])
                & (np.abs(m) < lim))

    a, b, owner = _pieces(pts, inside)
    out = np.zeros(ny * nx)
    if not a.size:
        return out.reshape(ny, nx)
    lam, w, piece = _nodes(a, b)
    owner = owner[piece]
    w = w * tw[owner]
    col = np.clip(np.searchsorted(x, lam) - 1, 0, nx - 1)
    c = centres[owner]  # (N, R, 3)
    cl, sl = np.cos(lam), np.sin(lam)
    hit, s_sin, e_sin = _meridian_arcs(c[..., 0] * cl[:, None] + c[..., 1] * sl[:, None],
                                       c[..., 2], cos_a)
    if np.isfinite(r) and r < np.pi / 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            cap = np.arccos(np.clip(math.cos(r) / np.maximum(cl, 1e-300), -1.0, 1.0))
    else:
        cap = np.full(lam.shape, np.pi / 2)
    # only the (node, row) pairs between the lowest and highest circle at that node; rows are
    # worked in sin(lat) (monotone on the semicircle lon = const): no trigonometry per row
    sin_y = np.sin(y)
    lo_node = np.where(hit, s_sin, np.inf).min(axis=1)
    hi_node = np.where(hit, e_sin, -np.inf).max(axis=1)
    first = np.clip(np.searchsorted(sin_y, lo_node, side="right") - 1, 0, ny - 1)
    last = np.clip(np.searchsorted(sin_y, hi_node, side="left") - 1, 0, ny - 1)
    count = np.where(hit.any(axis=1), np.maximum(last - first + 1, 0), 0)
    node = np.repeat(np.arange(lam.size), count)
    row = first[node] + (np.arange(node.size) - np.repeat(np.cumsum(count) - count, count))
    sin_cap = np.sin(cap)
    lo = np.maximum(sin_y[row], -sin_cap[node])
    hi = np.maximum(np.minimum(sin_y[row + 1], sin_cap[node]), lo)
    n_hit = hit.sum(axis=1)
    # one or two circles at this longitude (most nodes): the union directly, from the first
    # two circles hit (a single one stands in for the second, adding nothing)
    idx = np.arange(lam.size)
    k1 = hit.argmax(axis=1)
    second = hit.copy()
    second[idx, k1] = False
    k2 = np.where(n_hit > 1, second.argmax(axis=1), k1)
    s1 = np.minimum(np.maximum(s_sin[idx, k1][node], lo), hi)
    e1 = np.minimum(np.maximum(e_sin[idx, k1][node], s1), hi)
    s2 = np.minimum(np.maximum(s_sin[idx, k2][node], lo), hi)
    e2 = np.minimum(np.maximum(e_sin[idx, k2][node], s2), hi)
    covered = (e1 - s1) + (e2 - s2) - np.maximum(np.minimum(e1, e2) - np.maximum(s1, s2), 0.0)
    n_hit = n_hit[node]
    many = n_hit > 2
    if many.any():
        covered[many] = _union_measure(s_sin[node[many]], e_sin[node[many]], lo[many],
                                       hi[many], lambda v: v)
    out += np.bincount(row * nx + col[node], covered * w[node], minlength=ny * nx)
    return out.reshape(ny, nx)


def excluded_annulus_area(edges, offset_max, centres, cos_radius, weights=None):
    """Solid angle (sr) of each offset annulus within ``offset_max`` and inside any circle.

    Parameters as :func:`excluded_box_area`, with ``edges`` the offset edges (rad). Returns
    shape ``(n,)``.
    """
    e = np.minimum(np.asarray(edges, dtype=float), float(offset_max))
    centres = np.asarray(centres, dtype=float).reshape(-1, np.shape(cos_radius)[0], 3)
    cos_a = np.asarray(cos_radius, dtype=float)
    a_rad = np.arccos(np.clip(cos_a, -1.0, 1.0))
    n_t = centres.shape[0]
    tw = np.full(n_t, 1.0 / n_t) if weights is None else np.asarray(weights, float) / np.sum(weights)
    d = np.arccos(np.clip(centres[..., 0], -1.0, 1.0))  # (T, R)
    p = _circle_pairs(centres, cos_a)
    pts = np.concatenate([np.broadcast_to(e, (n_t, e.size)), d - a_rad, d + a_rad, a_rad - d,
                          np.arccos(np.clip(p[..., 0], -1.0, 1.0))], axis=1)

    def inside(m):
        mm = m[..., None]
        return (((mm >= (d - a_rad)[:, None, :]) & (mm <= (d + a_rad)[:, None, :])).any(axis=-1)
                & (m > e[0]) & (m < e[-1]))

    a, b, owner = _pieces(pts, inside)
    n = e.size - 1
    if not a.size:
        return np.zeros(n)
    rho, w, piece = _nodes(a, b)
    owner = owner[piece]
    w = w * tw[owner]
    c = centres[owner]  # (N, R, 3)
    sd = np.hypot(c[..., 1], c[..., 2])
    psi = np.arctan2(c[..., 1], c[..., 2])
    num = cos_a[None, :] - np.cos(rho)[:, None] * c[..., 0]
    den = np.sin(rho)[:, None] * sd
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(den > 0, num / den, np.where(num < 0, -np.inf, np.inf))
    half = np.arccos(np.clip(q, -1.0, 1.0))
    start = np.mod(psi - half, 2 * np.pi)
    stop = start + 2 * half
    two_pi = 2 * np.pi
    starts = np.concatenate([start, np.zeros_like(start)], axis=-1)
    ends = np.concatenate([np.minimum(stop, two_pi), np.maximum(stop - two_pi, 0.0)], axis=-1)
    covered = _union_measure(starts, ends, np.zeros(rho.shape), np.full(rho.shape, two_pi),
                             lambda v: v)
    ring = np.clip(np.searchsorted(e, rho) - 1, 0, n - 1)
    return np.bincount(ring, covered * np.sin(rho) * w, minlength=n)
