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

__all__ = ["NODES", "excluded_box_area", "excluded_annulus_area", "angle_table", "angle_table_g",
           "monotone_angle_table", "turning_box_area"]

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


# --------------------------------------------------------------------------------------------
# circles turning about the FoV centre: the exact average over the turning angle


def angle_table(first, second, weights):
    """Distribution of an angle that moves linearly from ``first[i]`` to ``second[i]`` during
    a time ``weights[i]`` (rad; weights normalised to sum 1): its cumulative distribution F,
    piecewise linear, and ``G(x) = int_-inf^x F``, piecewise quadratic (exact for that motion).

    Returns
    -------
    tuple
        ``(knots, cdf, slope, g)``: sorted knots, F and G at the knots, and F' after each knot
        (for :func:`angle_table_g`).

    Examples
    --------
    >>> knots, cdf, slope, g = angle_table([0.0], [2.0], [1.0])  # uniform on [0, 2]
    >>> g_at = angle_table_g([-1.0, 1.0, 3.0], (knots, cdf, slope, g))
    >>> knots.tolist(), cdf.tolist(), g_at.tolist()
    ([0.0, 2.0], [0.0, 1.0], [0.0, 0.25, 2.0])
    """
    first = np.atleast_1d(np.asarray(first, dtype=float))
    second = np.atleast_1d(np.asarray(second, dtype=float))
    w = np.atleast_1d(np.asarray(weights, dtype=float))
    w = w / w.sum()
    lo = np.minimum(first, second)
    width = np.maximum(np.maximum(first, second) - lo, 1e-12)  # still: a steep ramp
    density = w / width
    pos = np.concatenate([lo, lo + width])
    order = np.argsort(pos, kind="stable")
    knots = pos[order]
    slope = np.maximum(np.cumsum(np.concatenate([density, -density])[order]), 0.0)
    last = np.append(knots[1:] != knots[:-1], True)  # of equal knots, the slope after all
    knots, slope = knots[last], slope[last]
    slope[-1] = 0.0
    cdf = np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(knots))])
    return _with_g(knots, cdf, slope)


def monotone_angle_table(angles, times):
    """:func:`angle_table` of an angle moving monotonically (strictly) and linearly between
    knots ``angles`` at ``times`` (one time interval).

    >>> knots, cdf, slope, g = monotone_angle_table([0.3, 0.2, 0.0], [0.0, 1.0, 2.0])
    >>> knots.tolist(), cdf.tolist()
    ([0.0, 0.2, 0.3], [0.0, 0.5, 1.0])
    """
    angles, times = np.asarray(angles, dtype=float), np.asarray(times, dtype=float)
    if angles[-1] < angles[0]:
        angles, times = angles[::-1], times[::-1]
    cdf = np.abs(times - times[0]) / abs(times[-1] - times[0])
    slope = np.append(np.diff(cdf) / np.diff(angles), 0.0)
    return _with_g(angles, cdf, slope)


def _with_g(knots, cdf, slope):
    dk = np.diff(knots)
    g = np.concatenate([[0.0], np.cumsum((cdf[:-1] + 0.5 * slope[:-1] * dk) * dk)])
    return knots, cdf, slope, g


def angle_table_g(x, table) -> np.ndarray:
    """``G(x) = int_-inf^x F`` of an :func:`angle_table` (``x - mean`` far above the knots)."""
    knots, cdf, slope, g = table
    x = np.asarray(x, dtype=float)
    shape, x = x.shape, x.ravel()
    j = np.where(x < knots[-1], 0, knots.size - 1)  # the last knot: G linear beyond
    inside = np.flatnonzero((x > knots[0]) & (x < knots[-1]))
    j[inside] = np.searchsorted(knots, x[inside], side="right") - 1
    dx = x - knots[j]
    out = np.where(x <= knots[0], 0.0, g[j] + dx * (cdf[j] + 0.5 * slope[j] * dx))
    return out.reshape(shape)


def _half_width(rho, d, cos_a):
    """Half-width in bearing of the arc of circles (centre offset ``d``, ``cos_a``) on the ring
    of offset ``rho``: 0 where the ring misses the circle, pi where the circle holds it."""
    num = cos_a - np.cos(rho) * np.cos(d)
    den = np.sin(rho) * np.sin(d)
    q = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num < 0, -2.0, 2.0))
    return np.arccos(np.clip(q, -1.0, 1.0))


def _ranges(lo, hi):
    """Owner and value of every integer in ``[lo[i], hi[i])``, flat."""
    count = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(lo.size), count)
    return owner, lo[owner] + np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)


def _circular_union(start, length):
    """Union of arcs ``[start, start + length]`` on the circle of bearings, one row per ring
    (``start`` NaN: no arc): merged arcs as ``(row, s, e, first, last)`` with ``s <= e <= s +
    2 pi`` and the arcs whose start and end they are; a ring covered all round gets one arc
    ``[0, 2 pi]`` with ``first = last = -1``.

    A start that no other arc covers begins a merged arc; from there the arcs are merged along
    the line (no arc crosses that point).
    """
    two_pi = 2.0 * np.pi
    n_rows, n_arcs = start.shape
    valid = np.isfinite(start)
    s = np.where(valid, np.mod(np.where(valid, start, 0.0), two_pi), 0.0)
    ln = np.where(valid, length, 0.0)
    rel = np.mod(s[:, :, None] - s[:, None, :], two_pi)  # start i seen from start j
    covered = (valid[:, None, :] & (rel < ln[:, None, :]) & ~np.eye(n_arcs, dtype=bool)).any(2)
    free = valid & ~covered
    full = (valid & (ln >= two_pi * (1 - 1e-12))).any(1) | (valid.any(1) & ~free.any(1))
    ref = s[np.arange(n_rows), free.argmax(axis=1)][:, None]
    r = np.where(valid & ~full[:, None], np.mod(s - ref, two_pi), np.inf)
    order = np.argsort(r, axis=1, kind="stable")
    r = np.take_along_axis(r, order, axis=1)
    end = r + np.take_along_axis(ln, order, axis=1)
    ids = order
    reach = np.maximum.accumulate(np.where(np.isfinite(r), end, -np.inf), axis=1)
    new = np.isfinite(r) & (r > np.concatenate([np.full((n_rows, 1), -np.inf), reach[:, :-1]],
                                                 axis=1))
    col = np.arange(n_arcs)
    # the arc holding the reach so far: the last one that raised it
    holder = np.maximum.accumulate(np.where(np.isfinite(r) & (end >= reach), col, 0), axis=1)
    last_of_group = np.isfinite(r) & np.concatenate(
        [new[:, 1:] | ~np.isfinite(r[:, 1:]), np.ones((n_rows, 1), bool)], axis=1)
    row_s, k_s = np.nonzero(new)
    row_e, k_e = np.nonzero(last_of_group)  # same rows, same order as the starts
    base = ref[row_s, 0]
    fr = np.flatnonzero(full)
    cat = np.concatenate
    return (cat([row_s, fr]), cat([base + r[row_s, k_s], np.zeros(fr.size)]),
            cat([base + reach[row_e, k_e], np.full(fr.size, two_pi)]),
            cat([ids[row_s, k_s], np.full(fr.size, -1)]),
            cat([ids[row_e, holder[row_e, k_e]], np.full(fr.size, -1)]))


_FULL_START = 1.0  # rad: bearing where the window of a ring covered all round starts


@functools.lru_cache(maxsize=8)
def _grid_points(x: tuple, y: tuple):
    """Offsets and bearings of the grid's corners and of the tangent points of its lines, and
    the offsets where its lines cross the bearing :data:`_FULL_START` (read-only)."""
    x, y = np.array(x), np.array(y)
    gx, gy = np.meshgrid(x, y)
    rho = np.concatenate([np.arccos(np.clip(np.cos(gy) * np.cos(gx), -1, 1)).ravel(),
                          np.abs(x), np.abs(y)])
    phi = np.concatenate([np.arctan2(np.cos(gy) * np.sin(gx), np.sin(gy)).ravel(),
                          np.where(x >= 0, 0.5 * np.pi, -0.5 * np.pi),
                          np.where(y >= 0, 0.0, np.pi)])
    with np.errstate(invalid="ignore", divide="ignore"):
        ray = np.concatenate([np.arcsin(np.sin(y) / math.cos(_FULL_START)),
                              np.arctan(np.tan(x) / math.sin(_FULL_START))])
    out = rho, phi, ray[np.isfinite(ray) & (ray >= 0)]
    for v in out:
        v.flags.writeable = False
    return out


def _pair_offsets(c, cos_a):
    """Offsets (rad) of the points where two circles cross (NaN where they do not)."""
    if c.shape[0] < 2:
        return np.zeros(0)
    i, j = _pairs(c.shape[0])
    (x1, y1, z1), (x2, y2, z2), k1, k2 = c[i].T, c[j].T, cos_a[i], cos_a[j]
    d = x1 * x2 + y1 * y2 + z1 * z2
    nx, ny, nz = y1 * z2 - z1 * y2, z1 * x2 - x1 * z2, x1 * y2 - y1 * x2
    nn = nx * nx + ny * ny + nz * nz
    alpha, beta = (k1 - d * k2) / nn, (k2 - d * k1) / nn
    g = np.sqrt((1.0 - alpha * k1 - beta * k2) / nn) * nx
    x = alpha * x1 + beta * x2
    return np.arccos(np.clip(np.concatenate([x + g, x - g]), -1.0, 1.0))


@functools.lru_cache(maxsize=16)
def _pairs(n: int):
    return np.triu_indices(n, 1)


def _turning_breakpoints(x, y, d, psi, a, cos_a, centres, kinks, span):
    """Offsets where the time-averaged covered measure of a ring is not smooth: the circles'
    extents and mutual crossings, grid corners and tangent points of grid lines inside the
    swept sectors, and the crossings of grid lines by the circles turned to each ``kink``."""
    t_lo, t_hi = span
    rho, phi, ray = _grid_points(tuple(x.tolist()), tuple(y.tolist()))
    pts = [d - a, d + a, a - d, _pair_offsets(centres, cos_a)]
    half = np.where(d > a, np.arcsin(np.clip(np.sin(a) / np.sin(d), 0, 1)), np.pi)
    half = half + 0.5 * (t_hi - t_lo) + 1e-9
    rel = np.abs(np.mod(phi[:, None] - psi - 0.5 * (t_lo + t_hi) + np.pi, 2 * np.pi) - np.pi)
    near = ((np.abs(rho[:, None] - d) <= a) & (rel <= half)).any(axis=1)
    pts.append(rho[near])
    if np.any(a > d):  # rings covered all round: their windows start at _FULL_START
        pts.append(ray)
    # circles turned to the kinks: crossings of latitude lines, then of longitude lines
    bearing = psi[None, :] + np.asarray(kinks, dtype=float)[:, None]  # (K, R)
    cx = np.broadcast_to(np.cos(d), bearing.shape)
    cy, cz = np.sin(d) * np.sin(bearing), np.sin(d) * np.cos(bearing)
    lon_c, lat_c = np.arctan2(cy, cx), np.arcsin(np.clip(cz, -1, 1))
    cos_y = np.cos(y)
    cd = (cos_a[:, None] - np.sin(y) * np.sin(lat_c)[..., None]) / (
        cos_y * np.cos(lat_c)[..., None])
    dl = np.arccos(np.where(np.abs(cd) <= 1, cd, np.nan))
    lon = lon_c[..., None] + np.stack([-dl, dl])
    pts.append(np.arccos(np.clip(cos_y * np.cos(lon), -1, 1)))
    cos_x = np.cos(x)
    aa = cx[..., None] * cos_x + cy[..., None] * np.sin(x)
    bb = cz[..., None]
    rr = np.hypot(aa, bb)
    dt = np.arccos(np.where(cos_a[:, None] <= rr, cos_a[:, None] / rr, np.nan))
    t = np.arctan2(bb, aa) + np.stack([-dt, dt])
    pts.append(np.arccos(np.clip(np.cos(t) * cos_x, -1, 1)))
    return np.concatenate([np.ravel(p) for p in pts])


def turning_box_area(x_edges, y_edges, offset_max, centres, cos_radius, table, kinks,
                     n_nodes: int = NODES) -> np.ndarray:
    """Solid angle (sr) of each FoV box within ``offset_max`` inside any circle, averaged over
    the turning of the circles about the FoV centre.

    The circles turn rigidly about the FoV centre (the x axis): at angle ``theta`` a point at
    offset ``rho`` and bearing ``phi`` (``atan2(y, z)``, from +lat toward +lon) moves to
    bearing ``phi + theta``. With ``U(rho)`` the bearings the circles cover at angle 0, a
    point is covered for the fraction ``int_U f(phi - u) du`` of the time (``f`` the density
    of ``theta``); over a bearing arc ``[p, q]`` of a box on the ring this integrates to
    ``G(q - u1) - G(p - u1) - G(q - u2) + G(p - u2)`` per arc ``[u1, u2]`` of ``U``, exactly
    (:func:`angle_table`). The offset is integrated by Gauss-Legendre between breakpoints
    (:func:`_turning_breakpoints`) with ``n_nodes`` nodes per piece; the arcs' ends (grid
    line crossings, circle edges) are closed-form functions of the offset.

    Parameters
    ----------
    x_edges, y_edges : array
        Box edges in FoV longitude and latitude, rad.
    offset_max : float
        Offset cut, rad, or inf; the area is integrated to ``min(offset_max, farthest circle
        point)``, which must be below pi/2.
    centres : array (R, 3)
        Unit vectors of the circle centres in the FoV frame at angle 0.
    cos_radius : array (R,)
        Cosines of the circle radii.
    table : tuple
        :func:`angle_table` of the turning angle (rad).
    kinks : array
        Angles where the density of the turning angle jumps (its extremes, the ends of time
        intervals): breakpoints of the offset integral.
    n_nodes : int
        Gauss-Legendre nodes per piece.

    Returns
    -------
    numpy.ndarray
        Shape ``(ny, nx)``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):  # for the helpers too
        return _turning_box_area(np.asarray(x_edges, dtype=float),
                                 np.asarray(y_edges, dtype=float), float(offset_max), centres,
                                 cos_radius, table, kinks, int(n_nodes))


def _turning_box_area(x, y, offset_max, centres, cos_radius, table, kinks, n_nodes):
    """:func:`turning_box_area` on arrays; invalid operations (NaN where a circle misses a
    line) are silenced by the caller's ``np.errstate``, here and in the helpers it calls."""
    cos_a = np.atleast_1d(np.asarray(cos_radius, dtype=float))
    c = np.asarray(centres, dtype=float).reshape(cos_a.size, 3)
    nx, ny = x.size - 1, y.size - 1
    out = np.zeros(ny * nx)
    t_lo, t_hi = float(table[0][0]), float(table[0][-1])
    d = np.arccos(np.clip(c[:, 0], -1.0, 1.0))
    psi = np.arctan2(c[:, 1], c[:, 2])
    a = np.arccos(np.clip(cos_a, -1.0, 1.0))
    lo, hi = max(0.0, float(np.min(d - a))), min(float(offset_max), float(np.max(d + a)))
    if not hi < 0.5 * np.pi:
        raise ValueError(f"turning_box_area: offsets up to {hi} rad (at most pi/2)")
    if not hi > lo:
        return out.reshape(ny, nx)
    b = _turning_breakpoints(x, y, d, psi, a, cos_a, c, kinks, (t_lo, t_hi))
    b = np.unique(np.concatenate([b[np.isfinite(b) & (b > lo) & (b < hi)], [lo, hi]]))
    b = b[np.concatenate([[True], np.diff(b) > _TINY])]
    mid = 0.5 * (b[1:] + b[:-1])
    keep = (np.abs(mid[:, None] - d) < a).any(axis=1)
    p_a, p_b, mid = b[:-1][keep], b[1:][keep], mid[keep]
    if not mid.size:
        return out.reshape(ny, nx)
    # 1. at each piece's middle: the arcs of U (union of the circles' arcs) and their windows
    #    (the bearings they sweep), the grid lines crossing each window, sorted
    h_mid = _half_width(mid[:, None], d, cos_a)  # (P, R)
    cover = np.abs(mid[:, None] - d) < a
    start = np.where(cover, psi - h_mid, np.nan)
    piece, s_mid, e_mid, first, last = _circular_union(start, 2.0 * h_mid)
    two_pi = 2.0 * np.pi
    has_f, has_l = first >= 0, last >= 0
    off_s = np.where(has_f, two_pi * np.round((s_mid - (psi[first] - h_mid[piece, first]))
                                              / two_pi), s_mid)
    off_e = np.where(has_l, two_pi * np.round((e_mid - (psi[last] + h_mid[piece, last]))
                                              / two_pi), e_mid)
    full = ~has_f  # a ring covered all round: covered at every angle, a window [s, s + 2 pi]
    s_mid, e_mid = np.where(full, _FULL_START, s_mid), np.where(full, _FULL_START + two_pi, e_mid)
    off_s, off_e = np.where(full, s_mid, off_s), np.where(full, e_mid, off_e)
    w_s, w_e = s_mid + np.where(full, 0.0, t_lo), e_mid + np.where(full, 0.0, t_hi)
    span = w_e - w_s
    rm = mid[piece]
    sin_r, tan_r = np.sin(rm), np.tan(rm)

    def contains(angle):
        return (np.mod(angle - w_s, two_pi) <= span) | (span >= two_pi)

    cos_s, cos_e, sin_s, sin_e = np.cos(w_s), np.cos(w_e), np.sin(w_s), np.sin(w_e)
    c_hi = np.where(contains(0.0), 1.0, np.maximum(cos_s, cos_e))
    c_lo = np.where(contains(np.pi), -1.0, np.minimum(cos_s, cos_e))
    s_hi = np.where(contains(0.5 * np.pi), 1.0, np.maximum(sin_s, sin_e))
    s_lo = np.where(contains(-0.5 * np.pi), -1.0, np.minimum(sin_s, sin_e))
    sy = np.sin(y)
    tx = np.tan(np.clip(x, -0.5 * np.pi + 1e-9, 0.5 * np.pi - 1e-9))
    lat_w, lat_k = _ranges(np.searchsorted(sy, sin_r * c_lo, "left"),
                           np.searchsorted(sy, sin_r * c_hi, "right"))
    lon_w, lon_k = _ranges(np.searchsorted(tx, tan_r * s_lo, "left"),
                           np.searchsorted(tx, tan_r * s_hi, "right"))
    # crossings: kind 2 (latitude line, branch +-1), kind 3 (longitude line, branch 1 / -1 for
    # arcsin / pi - arcsin); each shifted by whole turns into its window
    win = np.concatenate([lat_w, lat_w, lon_w, lon_w])
    kind = np.repeat([2, 2, 3, 3], [lat_w.size, lat_w.size, lon_w.size, lon_w.size])
    value = np.concatenate([sy[lat_k], sy[lat_k], tx[lon_k], tx[lon_k]])
    branch = np.repeat([1.0, -1.0, 1.0, -1.0], [lat_w.size, lat_w.size, lon_w.size, lon_w.size])
    base = _crossing_bearing(kind, value, branch, sin_r[win], tan_r[win])
    m0 = np.ceil((w_s[win] - base) / two_pi)
    phi0 = base + two_pi * m0
    n_occ = np.where(phi0 <= w_e[win], np.floor((w_e[win] - phi0) / two_pi) + 1, 0).astype(int)
    rep = np.repeat(np.arange(win.size), n_occ)
    turn = two_pi * (m0[rep] + np.arange(rep.size) - np.repeat(np.cumsum(n_occ) - n_occ, n_occ))
    n_win = piece.size
    win = np.concatenate([np.arange(n_win), np.arange(n_win), win[rep]])
    kind = np.concatenate([np.zeros(n_win, int), np.ones(n_win, int), kind[rep]])
    value = np.concatenate([np.zeros(2 * n_win), value[rep]])
    branch = np.concatenate([np.zeros(2 * n_win), branch[rep]])
    phi = np.concatenate([w_s, w_e, base[rep] + turn])
    turn = np.concatenate([np.zeros(2 * n_win), turn])
    # by window, then bearing from the window's start (within 4 pi + 1 of it: one sort key)
    order = np.argsort(win * 16.0 + (phi - w_s[win]), kind="stable")
    win, kind, value, branch, turn, phi = (v[order] for v in (win, kind, value, branch, turn, phi))
    # sub-arcs between consecutive entries of a window, and their bins
    arc = np.flatnonzero(win[1:] == win[:-1])
    pm = 0.5 * (phi[arc] + phi[arc + 1])
    r_arc = mid[piece[win[arc]]]
    lon = np.arctan2(np.sin(r_arc) * np.sin(pm), np.cos(r_arc))
    lat = np.arcsin(np.clip(np.sin(r_arc) * np.cos(pm), -1.0, 1.0))
    ix = np.searchsorted(x, lon, "right") - 1
    iy = np.searchsorted(y, lat, "right") - 1
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    arc, ix, iy = arc[ok], ix[ok], iy[ok]
    if not arc.size:
        return out.reshape(ny, nx)
    # 2. at the nodes: H = G(phi - u1) - G(phi - u2) at the ends of the sub-arcs (0 at a
    #    window's start, u2 - u1 at its end), and per sub-arc its weighted difference
    u, du = _legendre(int(n_nodes))
    length = (p_b - p_a)[:, None]
    rho = p_a[:, None] + length * u  # (P, n)
    sin_rho, tan_rho = np.sin(rho), np.tan(rho)
    weight = length * du * sin_rho
    r_w = rho[piece]  # (J, n)
    sigma = np.where(has_f[:, None], psi[first][:, None]
                     - _half_width(r_w, d[first][:, None], cos_a[first][:, None]), 0.0)
    sigma += off_s[:, None]
    eps = np.where(has_l[:, None], psi[last][:, None]
                   + _half_width(r_w, d[last][:, None], cos_a[last][:, None]), 0.0)
    eps += off_e[:, None]
    used = np.zeros(win.size, bool)
    used[arc] = used[arc + 1] = True
    entry = np.flatnonzero(used)
    pos = np.cumsum(used) - 1  # row of each used entry
    we, ke = win[entry], kind[entry]
    h_val = np.zeros((entry.size, rho.shape[1]))
    sel = ke == 1
    h_val[sel] = (eps - sigma)[we[sel]]
    sel = np.flatnonzero(ke >= 2)
    ce, cw = entry[sel], we[sel]
    pc = piece[cw]
    phi_c = _crossing_bearing(ke[sel, None], value[ce, None], branch[ce, None], sin_rho[pc],
                              tan_rho[pc]) + turn[ce, None]
    g_both = angle_table_g(np.stack([phi_c - sigma[cw], phi_c - eps[cw]]), table)
    h_val[sel] = np.where(full[cw, None], phi_c - sigma[cw], g_both[0] - g_both[1])
    value_arc = ((h_val[pos[arc + 1]] - h_val[pos[arc]]) * weight[piece[win[arc]]]).sum(axis=1)
    out += np.bincount(iy * nx + ix, value_arc, minlength=ny * nx)
    return out.reshape(ny, nx)


def _crossing_bearing(kind, value, branch, sin_rho, tan_rho):
    """Bearing (rad) where a grid line crosses the ring of offset ``rho`` (arrays of one value
    per crossing, with ``sin(rho)``, ``tan(rho)``): latitude line (kind 2, ``value =
    sin(lat)``): ``branch * arccos(value / sin(rho))``; longitude line (kind 3, ``value =
    tan(lon)``): ``arcsin(value / tan(rho))`` (branch 1) or ``pi -`` that (branch -1); clipped
    at the tangent point."""
    lat = kind == 2
    q = np.clip(value / np.where(lat, sin_rho, tan_rho), -1.0, 1.0)
    arcsin = np.arcsin(q)
    return np.where(lat, branch * (0.5 * np.pi - arcsin),
                    np.where(branch > 0, arcsin, np.pi - arcsin))
