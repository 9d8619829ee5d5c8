"""Evaluate a background model at arbitrary points and integrate it into expected counts.

Numpy kernels (:func:`interpolate_grid`, :func:`loglog_segment_integrals`,
:func:`integrate_grid`) under labelled functions on a model Dataset (:func:`evaluate_rate`,
:func:`integrate_counts`, :func:`select_group`). The interpolation is gammapy 2.0.1's
(``Background2D/3D.evaluate``: log value, log energy, linear FoV, 0 outside); its convention,
zero bins and the accuracy of the integration: docs/architecture.rst.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of, parse_edges
from xbkg.core.schema import fov_dims, select_group
from xbkg.sky.exposure import annulus_solid_angle, box_solid_angle

__all__ = [
    "TINY",
    "interpolate_grid",
    "loglog_segment_integrals",
    "integrate_grid",
    "select_group",
    "model_grid",
    "evaluate_rate",
    "integrate_counts",
]

#: Smallest value of the log scale (gammapy's ``LogScale.tiny``): float32 tiny.
TINY = float(np.finfo(np.float32).tiny)

#: MeV per TeV: rates are per MeV, energies in TeV.
MEV_PER_TEV = 1.0e6

_GRID_CHUNK = 500_000  # max elements of one energy-node x FoV-sample block in integrate_grid


# ---------------------------------------------------------------------------------------------
# numpy kernels
# ---------------------------------------------------------------------------------------------


def _to_log(values):
    """gammapy ``LogScale``: ``log(clip(values, TINY, inf))`` (NaN stays NaN)."""
    return np.log(np.clip(np.asarray(values, dtype="float64"), TINY, np.inf))


def _from_log(logv):
    """gammapy ``LogScale.inverse`` then clip at 0: ``exp``, values ``<= 2 TINY`` -> 0."""
    with np.errstate(over="ignore"):
        out = np.exp(logv)
    return np.where(np.abs(out) - TINY <= TINY, 0.0, out)


def _scaled(x, log: bool):
    """Coordinate in interpolation scale (``log`` for energy), warnings for x <= 0 silenced."""
    x = np.asarray(x, dtype="float64")
    if not log:
        return x
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _axis_weights(nodes, x, extrapolate: bool = True):
    """Bracketing node indices and linear weights on one axis (scipy RegularGridInterpolator).

    Outside the nodes the first/last interval is extrapolated, or with ``extrapolate=False``
    the outermost node's value is held; a single node gives weight 1.
    Returns ``(i0, i1, w0, w1)`` with the shape of ``x``.
    """
    n = nodes.size
    if not extrapolate:
        x = np.clip(x, nodes[0], nodes[-1])
    if n == 1:
        i0 = np.zeros(np.shape(x), dtype=np.intp)
        return i0, i0, np.ones(np.shape(x)), np.zeros(np.shape(x))
    i0 = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, n - 2)
    with np.errstate(invalid="ignore"):
        t = (x - nodes[i0]) / (nodes[i0 + 1] - nodes[i0])
        return i0, i0 + 1, 1.0 - t, t


#: Relative tolerance at the outer edges: axes rebuilt from other edges (gammapy's MapAxis
#: gives 100.00000000000004 TeV for 100 TeV) must not fall outside by a rounding error.
EDGE_RTOL = 1e-13


def _inside(edges, x):
    """True where ``edges[0] <= x <= edges[-1]`` within :data:`EDGE_RTOL` (NaN outside)."""
    x = np.asarray(x, dtype="float64")
    scale = max(abs(edges[0]), abs(edges[-1]))
    lo = EDGE_RTOL * (abs(edges[0]) or scale)
    hi = EDGE_RTOL * (abs(edges[-1]) or scale)
    return (x >= edges[0] - lo) & (x <= edges[-1] + hi)


def interpolate_grid(values, centres, edges, points, log_axes, extrapolate: bool = True):
    """Values of a binned array at arbitrary points, gammapy's background convention.

    Parameters
    ----------
    values : ndarray, shape ``(n_0, ..., n_{d-1})``
        Bin values (e.g. a rate); interpolated in log scale, see the module docstring.
    centres : sequence of d 1-D arrays
        Bin centres of each axis (the interpolation nodes).
    edges : sequence of d 1-D arrays
        Bin edges of each axis; points outside them get 0.
    points : sequence of d arrays
        Coordinates of the points, broadcast together.
    log_axes : sequence of d bools
        Axes interpolated in ``log`` of the coordinate (energy).
    extrapolate : bool
        True (gammapy): between the outermost centre and the edge, extrapolate from the last
        two centres. False: hold the outermost centre's value there (no overshoot).

    Returns
    -------
    ndarray of float64 with the broadcast shape of ``points``; finite and ``>= 0``.

    Examples
    --------
    >>> rate = np.array([[1.0, 2.0], [4.0, 8.0]])
    >>> interpolate_grid(rate, [np.array([1.0, 10.0]), np.array([0.5, 1.5])],
    ...                  [np.array([0.3, 3.0, 30.0]), np.array([0.0, 1.0, 2.0])],
    ...                  [np.sqrt(10.0), np.array([0.5, 1.0, 2.0, 2.5])], [True, False])
    array([2.        , 2.82842712, 5.65685425, 0.        ])
    """
    values = np.asarray(values)
    d = values.ndim
    if not (len(centres) == len(edges) == len(points) == len(log_axes) == d):
        raise ValueError(
            f"interpolate_grid: values have {d} axes but got {len(centres)} centre arrays, "
            f"{len(edges)} edge arrays, {len(points)} point arrays, {len(log_axes)} log flags"
        )
    points = np.broadcast_arrays(*[np.asarray(p, dtype="float64") for p in points])
    logv = _to_log(values)
    bracket = [
        _axis_weights(_scaled(c, lg), _scaled(p, lg), extrapolate)
        for c, p, lg in zip(centres, points, log_axes)
    ]
    acc = np.zeros(points[0].shape if d else ())
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN points, masked below
        for corner in itertools.product((0, 1), repeat=d):
            idx = tuple(b[c] for b, c in zip(bracket, corner))
            weight = np.prod([b[2 + c] for b, c in zip(bracket, corner)], axis=0)
            acc = acc + weight * logv[idx]
    out = _from_log(acc)
    valid = np.logical_and.reduce([_inside(e, p) for e, p in zip(edges, points)])
    return np.where(valid & np.isfinite(out), out, 0.0)


def _interp_matrix(centres, edges, x, log: bool, extrapolate: bool):
    """Dense ``(len(x), n)`` matrix of linear interpolation weights, plus the inside mask."""
    i0, i1, w0, w1 = _axis_weights(_scaled(centres, log), _scaled(x, log), extrapolate)
    mat = np.zeros((x.size, centres.size))
    rows = np.arange(x.size)
    np.add.at(mat, (rows, i0), w0)
    np.add.at(mat, (rows, i1), w1)
    return mat, _inside(edges, x)


#: log of the largest value gammapy's LogScale turns into 0 (``2 * TINY``).
_LOG_ZERO = float(np.log(2.0 * TINY))


def _loglog_from_logs(log_y, log_x):
    """Segment integrals of the power laws through consecutive nodes, from ``log y`` (axis 0)
    and ``log x``: ``log(x2/x1) * logmean(x1 y1, x2 y2)``, 0 where either ``y <= 2 TINY``.

    Written as ``exp(max) * (1 - exp(-d)) / d`` with ``d = |log(x2 y2) - log(x1 y1)|``
    (``d >= 1e-12``, the trapezoid's limit to 5e-13): no overflow however steep the segment.
    """
    shape = (-1,) + (1,) * (log_y.ndim - 1)
    ok = log_y > _LOG_ZERO
    ok = ok[:-1] & ok[1:]
    log_xy = log_y + np.asarray(log_x).reshape(shape)
    la, lb = log_xy[:-1], log_xy[1:]
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.subtract(lb, la)
        np.abs(d, out=d)
        np.maximum(d, 1e-12, out=d)
        out = np.maximum(la, lb)
        np.exp(out, out=out)
        out *= np.diff(log_x).reshape(shape)
        ratio = np.negative(d)
        np.expm1(ratio, out=ratio)
        ratio /= d
        out *= ratio
    out *= -1.0
    out[~ok] = 0.0
    return out


def loglog_segment_integrals(y, x, axis=0):
    """Integral of each segment between consecutive nodes, power law through the end points.

    Same result as gammapy's ``trapz_loglog`` (with ``y`` positive): between ``(x1, y1)`` and
    ``(x2, y2)`` the integrand is the power law through both points, whose integral is
    ``log(x2 / x1) * logmean(x1 y1, x2 y2)``. A segment with an end ``<= 2 TINY`` gets 0
    (gammapy's log scale turns such values into 0).

    Parameters
    ----------
    y : ndarray
        Values at the nodes (``>= 0``).
    x : 1-D array
        Strictly increasing positive nodes, ``len(x) == y.shape[axis]``.
    axis : int
        Axis of ``y`` along the nodes.

    Returns
    -------
    ndarray, like ``y`` with ``len(x) - 1`` along ``axis``.

    Examples
    --------
    >>> e = np.array([1.0, 2.0, 4.0])
    >>> loglog_segment_integrals(e ** -2.0, e)  # exact: 1/1 - 1/2, 1/2 - 1/4
    array([0.5 , 0.25])
    """
    y = np.moveaxis(np.asarray(y, dtype="float64"), axis, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.log(y)  # 0 -> -inf: the segment gets 0
    out = _loglog_from_logs(log_y, np.log(np.asarray(x, dtype="float64")))
    return np.moveaxis(out, 0, axis)


def _fine_nodes(analysis_edges, model_centres, model_edges):
    """Analysis edges plus the model centres and edges strictly inside the analysis range."""
    extra = np.concatenate([model_centres, model_edges])
    extra = extra[(extra > analysis_edges[0]) & (extra < analysis_edges[-1])]
    return np.unique(np.concatenate([analysis_edges, extra]))


#: Two-point Gauss-Legendre nodes on [-1, 1]; every FoV sub-piece is sampled at these.
_GL2 = np.array([-1.0, 1.0]) / np.sqrt(3.0)


def _fov_samples(analysis_edges, model_centres, model_edges, oversample: int, density):
    """Quadrature points of one FoV axis and their share of their sub-piece's solid angle.

    The analysis range is cut at the model's centres and edges into pieces; a piece of width
    ``h`` inside a model half-bin (centre to edge) of width ``w`` is split into
    ``ceil(oversample * h / w)`` sub-pieces (one outside the model), each sampled at its two
    Gauss-Legendre points. ``density`` (of the angle in radians: 1, sin or cos) splits a
    sub-piece's exact measure between its points, so a constant is integrated exactly.
    Returns ``(points, sub_edges, shares, starts)``, ``starts`` the first point of each
    analysis bin.
    """
    nodes = _fine_nodes(analysis_edges, model_centres, model_edges)
    width = np.diff(nodes)
    half_bins = np.unique(np.concatenate([model_centres, model_edges]))
    mid = 0.5 * (nodes[:-1] + nodes[1:])
    k = np.clip(np.searchsorted(half_bins, mid) - 1, 0, half_bins.size - 2)
    inside = (mid > half_bins[0]) & (mid < half_bins[-1])
    n_sub = np.where(inside, np.ceil(oversample * width / np.diff(half_bins)[k] - 1e-9), 1)
    n_sub = np.maximum(n_sub, 1).astype(np.intp)
    first = np.concatenate([[0], np.cumsum(n_sub)])
    piece = np.repeat(np.arange(width.size), n_sub)
    j = np.arange(piece.size) - first[piece]
    sub_edges = np.append(nodes[piece] + width[piece] * j / n_sub[piece], nodes[-1])
    centre = 0.5 * (sub_edges[:-1] + sub_edges[1:])
    half = 0.5 * np.diff(sub_edges)
    points = centre[:, None] + half[:, None] * _GL2[None, :]
    g = density(np.radians(points))
    shares = (g / g.sum(axis=1, keepdims=True)).ravel()
    starts = first[np.searchsorted(nodes, analysis_edges[:-1])] * _GL2.size
    return points.ravel(), sub_edges, shares, starts


def integrate_grid(
    values,
    centres,
    edges,
    energy_edges,
    fov_edges,
    *,
    oversample: int = 4,
    extrapolate: bool = True,
):
    """Integral of the interpolated ``values`` over energy x FoV analysis bins (numpy kernel).

    ``values`` has axes ``(energy, offset)`` or ``(energy, lat, lon)`` (xbkg's
    ``energy, dety, detx``); its interpolant (see :func:`interpolate_grid`) is integrated over
    ``dE`` in MeV (energies in TeV) and solid angle in sr, as described in the module docstring.

    Parameters
    ----------
    values : ndarray, shape ``(E, O)`` or ``(E, Y, X)``
        Finite bin values in ``... MeV-1 sr-1``.
    centres, edges : sequence of 1-D arrays
        Bin centres and edges of the model axes (energy in TeV, angles in deg).
    energy_edges : 1-D array
        Analysis energy edges (TeV, positive, increasing).
    fov_edges : sequence of 1-D arrays
        ``(offset_edges,)`` (deg, >= 0) or ``(lat_edges, lon_edges)`` (deg).
    oversample : int
        Minimum number of sub-pieces per model half-bin along each FoV axis; each sub-piece is
        sampled at two Gauss-Legendre points (see the module docstring).
    extrapolate : bool
        Outer half-bins as in :func:`interpolate_grid`.

    Returns
    -------
    ndarray, shape ``(len(energy_edges) - 1, ...)`` (one axis per FoV edge array).

    Examples
    --------
    A rate of ``E**-2`` s-1 MeV-1 sr-1 (E in TeV) constant over 0-1 deg:

    >>> e = np.geomspace(0.1, 100.0, 7)
    >>> centres = [np.sqrt(e[1:] * e[:-1]), np.array([0.5])]
    >>> values = (centres[0] ** -2.0)[:, None] * np.ones((1, 1))
    >>> out = integrate_grid(values, centres, [e, np.array([0.0, 1.0])], [1.0, 2.0],
    ...                      [np.array([0.0, 1.0])])
    >>> from xbkg.sky.exposure import annulus_solid_angle
    >>> exact = 1e6 * 0.5 * annulus_solid_angle([0.0, 1.0])
    >>> bool(np.isclose(out[0, 0], exact[0], rtol=1e-12))
    True
    """
    values = np.asarray(values, dtype="float64")
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"integrate_grid: values have {np.count_nonzero(~np.isfinite(values))} non-finite "
            "entries; integration needs finite values"
        )
    if int(oversample) < 1:
        raise ValueError(f"integrate_grid: oversample must be a positive int, got {oversample}")
    oversample = int(oversample)
    centres = [np.asarray(c, dtype="float64") for c in centres]
    edges = [np.asarray(e, dtype="float64") for e in edges]
    energy_edges = np.asarray(energy_edges, dtype="float64")
    nfov = len(fov_edges)
    if values.ndim != 1 + nfov or len(centres) != values.ndim or len(edges) != values.ndim:
        raise ValueError(
            f"integrate_grid: values have {values.ndim} axes; need 1 + {nfov} centre/edge arrays"
        )

    # energy: nodes where the log-log trapezoid is exact, one row of weights per node
    e_nodes = _fine_nodes(energy_edges, centres[0], edges[0])
    we, e_ok = _interp_matrix(centres[0], edges[0], e_nodes, True, extrapolate)
    seg_bin = np.searchsorted(energy_edges, e_nodes[:-1], side="right") - 1
    agg_e = np.zeros((energy_edges.size - 1, e_nodes.size - 1))
    agg_e[seg_bin, np.arange(e_nodes.size - 1)] = 1.0

    # FoV: sample mid-points, their exact solid angles, first sample of each analysis bin
    densities = [np.sin] if nfov == 1 else [np.cos, np.ones_like]  # offset | lat, lon
    fov = [
        _fov_samples(np.asarray(fe, dtype="float64"), c, e, oversample, g)
        for fe, c, e, g in zip(fov_edges, centres[1:], edges[1:], densities)
    ]
    mats, masks = zip(*[_interp_matrix(c, e, s[0], False, extrapolate)
                        for c, e, s in zip(centres[1:], edges[1:], fov)])
    npts = _GL2.size
    if nfov == 1:
        omega = np.repeat(annulus_solid_angle(fov[0][1]), npts) * fov[0][2]
    else:
        pieces = box_solid_angle(fov[1][1], fov[0][1])
        omega = np.repeat(np.repeat(pieces, npts, axis=0), npts, axis=1)
        omega *= np.outer(fov[0][2], fov[1][2])

    # Layout: the first FoV axis (offset or lat) is moved last and processed in chunks of
    # whole analysis bins (bounded memory); arrays are (energy, [lon,] axis0) inside the loop.
    logv = np.moveaxis(_to_log(values), 1, -1)  # (E, [X,] Y)
    if nfov == 2:
        logv = np.moveaxis(np.tensordot(logv, mats[1], axes=(1, 1)), -1, 1)  # (E, Xs, Y)
    logv = np.ascontiguousarray(logv)
    omega = np.ascontiguousarray(omega.T)  # ([Xs,] Ys)
    keep_rest = e_ok.reshape((-1,) + (1,) * nfov)
    if nfov == 2:
        keep_rest = keep_rest & masks[1][None, :, None]
    log_e = np.log(e_nodes)
    first = fov[0]
    bounds0 = np.append(first[3], first[0].size)
    row_size = e_nodes.size * (fov[1][0].size if nfov == 2 else 1)
    widest = int(np.diff(bounds0).max())
    bins_per_chunk = max(1, _GRID_CHUNK // max(1, row_size * widest))
    out = np.zeros((energy_edges.size - 1,) + tuple(s[3].size for s in fov[::-1]))
    for b0 in range(0, first[3].size, bins_per_chunk):
        b1 = min(b0 + bins_per_chunk, first[3].size)
        rows = slice(bounds0[b0], bounds0[b1])
        part = logv @ mats[0][rows].T  # (E_model, [Xs,] rows)
        log_rate = np.tensordot(we, part, axes=(1, 0))  # (E_nodes, [Xs,] rows)
        log_rate[~(keep_rest & masks[0][rows])] = -np.inf
        seg = _loglog_from_logs(log_rate, log_e)
        seg *= omega[..., rows]
        seg = np.add.reduceat(seg, first[3][b0:b1] - bounds0[b0], axis=-1)
        if nfov == 2:
            seg = np.add.reduceat(seg, fov[1][3], axis=1)
        out[..., b0:b1] = np.tensordot(agg_e, seg, axes=(1, 0))
    return np.moveaxis(out, -1, 1) * MEV_PER_TEV


# ---------------------------------------------------------------------------------------------
# labelled layer
# ---------------------------------------------------------------------------------------------


def _centres(edges, log: bool):
    """gammapy MapAxis centres: geometric mean for log axes, arithmetic mean otherwise."""
    return np.sqrt(edges[:-1] * edges[1:]) if log else 0.5 * (edges[:-1] + edges[1:])


def model_grid(model: xr.Dataset, group=None, zenith=None, var: str = "rate"):
    """The kernel inputs of one zenith group of a model.

    Returns
    -------
    values : DataArray, dims ``(energy, offset)`` or ``(energy, dety, detx)`` (maybe dask)
    centres, edges : lists of 1-D arrays in that axis order (TeV, deg)
    log_axes : list of bools (energy only)
    """
    kind = model.attrs.get("kind")
    dims = ("energy",) + fov_dims(kind)
    if var not in model:
        raise KeyError(f"model has no variable {var!r} (variables: {sorted(model.data_vars)})")
    gid = select_group(model, group=group, zenith=zenith)
    values = model[var].sel(zenith_group=gid).transpose(*dims)
    edges = [edges_of(model, d) for d in dims]
    log_axes = [d == "energy" for d in dims]
    centres = [_centres(e, lg) for e, lg in zip(edges, log_axes)]
    return values, centres, edges, log_axes


def _fov_arguments(model: xr.Dataset, what: str, **given):
    """The model's FoV dims and the matching arguments (kernel order); raise on a mismatch."""
    kind = model.attrs.get("kind")
    fdims = fov_dims(kind)
    missing = [d for d in fdims if given[d] is None]
    extra = [d for d in given if d not in fdims and given[d] is not None]
    if missing or extra:
        raise ValueError(
            f"a {kind} model needs {what} {fdims}; missing {missing}, unexpected {extra}"
        )
    return fdims, [given[d] for d in fdims]


def _is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


def _plain(x, unit: str):
    """Strip an astropy Quantity to ``unit``; leave arrays (numpy, dask, xarray) alone."""
    if hasattr(x, "unit") and hasattr(x, "to_value"):
        return x.to_value(unit)
    return x


def _blockwise_kernel(*arrays, **grid):
    return interpolate_grid(arrays[-1], points=arrays[:-1], **grid)


def _evaluate_arrays(*points, values, **grid):
    """numpy in -> numpy out; any dask input (points or values) -> lazy dask out.

    ``grid`` holds the other arguments of :func:`interpolate_grid` (centres, edges, ...).
    """
    if not (_is_dask(values) or any(_is_dask(p) for p in points)):
        return interpolate_grid(np.asarray(values), points=points, **grid)
    import dask.array as da

    pts = da.broadcast_arrays(*[da.asarray(np.asarray(p) if not _is_dask(p) else p)
                                for p in points])
    ndim = pts[0].ndim
    out_ind = tuple(range(ndim))
    vals = values if _is_dask(values) else da.from_array(np.asarray(values), chunks=-1)
    args = []
    for p in pts:
        args += [p, out_ind]
    args += [vals, tuple(range(ndim, ndim + vals.ndim))]
    return da.blockwise(
        _blockwise_kernel, out_ind, *args, concatenate=True, dtype="float64",
        meta=np.empty((0,) * ndim, dtype="float64"), **grid,
    )


def evaluate_rate(
    model: xr.Dataset,
    energy,
    offset=None,
    *,
    detx=None,
    dety=None,
    group=None,
    zenith=None,
    var: str = "rate",
    extrapolate: bool = True,
):
    """Background rate of a model at arbitrary points, as gammapy's ``Background*D.evaluate``.

    Parameters
    ----------
    model : Dataset
        A model in the :mod:`xbkg.core.schema` layout.
    energy : array-like
        Reconstructed energy in TeV (or an astropy Quantity).
    offset : array-like, optional
        FoV offset in deg, for 2D models.
    detx, dety : array-like, optional
        FoV longitude and latitude in deg (gammapy ``fov_lon, fov_lat``), for 3D models.
    group : int, optional
        Zenith group ID.
    zenith : float, optional
        Zenith angle in deg; selects the group containing it, or the nearest group when outside
        all of them (see :func:`select_group`). Give ``group`` or ``zenith``, not both.
    var : str
        Model variable to evaluate (``"rate"``; ``"rate_error"`` works the same way).
    extrapolate : bool
        True (gammapy's convention): between the outermost bin centre and the edge, extrapolate
        from the last two centres. This can overshoot wildly when the second-to-last bin is
        empty or tiny (log-linear growth, e.g. 1e9 times the populated value half a bin beyond
        a centre next to an empty bin). False holds the outermost centre's value instead.

    Returns
    -------
    Values in s-1 MeV-1 sr-1 at the points broadcast together: a numpy array for numpy
    inputs, a lazy dask array when any input or the model variable is dask-backed (nothing is
    computed), a DataArray (dims broadcast by name) when any input is a DataArray.
    Interpolation and out-of-range conventions: see the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from xbkg.core.schema import assemble_model
    >>> counts = np.array([[[10, 20], [40, 80]]])
    >>> model = assemble_model(counts, np.full((1, 2, 2), 10.0), kind="2d",
    ...     energy_edges=[0.3, 3.0, 30.0], fov_edges={"offset": [0.0, 1.0, 2.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
    >>> evaluate_rate(model, 3.0, [0.5, 1.0, 2.0, 2.5])  # 3 TeV: half-way between centres
    array([2.        , 2.82842712, 5.65685425, 0.        ])
    """
    fdims, fov = _fov_arguments(model, "coordinates", offset=offset, detx=detx, dety=dety)
    values, centres, edges, log_axes = model_grid(model, group=group, zenith=zenith, var=var)
    points = [_plain(energy, "TeV")] + [_plain(p, "deg") for p in fov]
    func = partial(_evaluate_arrays, values=values.data, centres=centres, edges=edges,
                   log_axes=log_axes, extrapolate=extrapolate)
    if any(isinstance(p, xr.DataArray) for p in points):
        # arguments in signature order (energy, offset | detx, dety) so that the result's
        # dims follow the order of the caller's arguments; the kernel wants (energy, dety, detx)
        out = xr.apply_ufunc(lambda *a: func(*a[:1], *a[1:][::-1]), *points[:1],
                             *points[1:][::-1], dask="allowed")
        out.attrs.update(units=model[var].attrs.get("units", ""),
                         long_name=model[var].attrs.get("long_name", var))
        return out.rename(var)
    return func(*points)


def integrate_counts(
    model: xr.Dataset,
    energy_edges,
    *,
    offset_edges=None,
    detx_edges=None,
    dety_edges=None,
    ontime,
    group=None,
    zenith=None,
    oversample: int = 4,
    extrapolate: bool = True,
) -> np.ndarray:
    """Expected background counts of one observation in energy x FoV analysis bins.

    ``ontime`` (s) times the integral of the interpolated rate over each bin (energy in MeV,
    exact solid angle in sr); see the module docstring for the method. The model values of the
    group are read into memory (the result is a numpy array).

    Parameters
    ----------
    model : Dataset
        A model in the :mod:`xbkg.core.schema` layout (rate in s-1 MeV-1 sr-1).
    energy_edges : array-like
        Analysis energy edges in TeV.
    offset_edges : array-like, optional
        Offset edges in deg (2D models).
    detx_edges, dety_edges : array-like, optional
        FoV longitude and latitude edges in deg (3D models).
    ontime : float
        Observation time in seconds (GTI sum, not livetime).
    group, zenith : optional
        Zenith group, as in :func:`evaluate_rate`.
    oversample : int
        FoV sampling: at least ``oversample`` sub-pieces (two samples each) per model half-bin
        and axis; energy needs none (it is integrated exactly). Cost grows as
        ``oversample**2`` for 3D models (see the module docstring for the accuracy).
    extrapolate : bool
        Outer half-bins as in :func:`evaluate_rate` (True: gammapy's extrapolation).

    Returns
    -------
    ndarray, shape ``(E, O)`` for 2D or ``(E, Y, X)`` (energy, dety, detx) for 3D.

    Examples
    --------
    >>> import numpy as np
    >>> from xbkg.core.schema import assemble_model
    >>> model = assemble_model(np.full((1, 2, 1), 100), np.full((1, 2, 1), 1e9), kind="2d",
    ...     energy_edges=[1.0, 2.0, 4.0], fov_edges={"offset": [0.0, 2.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
    >>> integrate_counts(model, [1.0, 4.0], offset_edges=[0.0, 2.0], ontime=1800.0).shape
    (1, 1)
    """

    fdims, fov = _fov_arguments(model, "edges for", offset=offset_edges, detx=detx_edges,
                                dety=dety_edges)
    ontime = float(ontime)
    if not (math.isfinite(ontime) and ontime >= 0):
        raise ValueError(f"ontime must be a finite number of seconds >= 0, got {ontime!r}")
    e_edges = parse_edges(_plain(energy_edges, "TeV"), log=True, name="energy_edges")
    fov_edges = [parse_edges(_plain(e, "deg"), name=f"{d}_edges") for d, e in zip(fdims, fov)]
    if fdims == ("offset",) and fov_edges[0][0] < 0:
        raise ValueError(f"offset_edges must be >= 0 deg, got {fov_edges[0]}")
    for d, fe in zip(fdims, fov_edges):
        if d == "dety" and np.any(np.abs(fe) > 90):
            raise ValueError(f"dety_edges must lie within [-90, 90] deg, got {fe}")
    values, centres, edges, _ = model_grid(model, group=group, zenith=zenith)
    return ontime * integrate_grid(np.asarray(values.values), centres, edges, e_edges,
                                   fov_edges, oversample=oversample, extrapolate=extrapolate)
