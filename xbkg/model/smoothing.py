"""Smoothing a model's rate; the raw ``counts`` and ``exposure`` stay in the model.

Two methods (``smooth_model(model, method)``, ``xbkg make-models --smooth``): ``"gauss"``, an
adaptive Gaussian kernel in the FoV, and ``"fit"``, a P-spline surface in log rate fitted with a
Poisson likelihood. The smoothed model records ``smoothing`` in its attributes. The methods and
what happens to empty bins: docs/architecture.rst.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.core.defaults import DEFAULTS
from xbkg.core.schema import fill_unexposed, fov_dims, rate_floor

__all__ = [
    "SMOOTH_METHODS",
    "gaussian_matrix",
    "SIGMA_STEPS",
    "choose_sigma",
    "gauss_smooth_slice",
    "bspline_design",
    "difference_penalty",
    "poisson_spline_fit",
    "smooth_model",
]

SMOOTH_METHODS = ("none", "gauss", "fit")

#: Gaussian widths tried by :func:`choose_sigma`, in units of the mean bin size.
SIGMA_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: Largest Gaussian width (deg).
DEFAULT_SIGMA_MAX = DEFAULTS.sigma_max
#: Penalty strengths tried by the spline fit.
DEFAULT_PENALTIES = DEFAULTS.penalties


# ---------------------------------------------------------------------------------------------
# Gaussian kernel (numpy)


def gaussian_matrix(centres, sigma: float) -> np.ndarray:
    """``K[i, j] = exp(-(c_i - c_j)**2 / (2 sigma**2))`` (peak 1); identity for ``sigma = 0``.

    >>> gaussian_matrix([0.0, 1.0], 1.0).round(3)
    array([[1.   , 0.607],
           [0.607, 1.   ]])
    """
    c = np.asarray(centres, dtype=float)
    if sigma <= 0:
        return np.eye(c.size)
    return np.exp(-0.5 * ((c[:, None] - c[None, :]) / sigma) ** 2)


def _apply(kernels, cube):
    """Apply one kernel matrix per trailing axis of ``cube`` (``(Y, X)`` or ``(O,)``)."""
    if len(kernels) == 1:
        return kernels[0] @ cube
    return kernels[0] @ cube @ kernels[1].T


def gauss_smooth_slice(counts, exposure, centres, sigma: float):
    """Smoothed rate and its error for one energy slice (module docstring).

    Parameters
    ----------
    counts, exposure : array ``(O,)`` or ``(Y, X)``
    centres : list of 1-D arrays, the bin centres (deg) of each axis, in that order
    sigma : float, deg

    Returns
    -------
    rate, error : arrays of the slice's shape; the rate is scaled so that
        ``sum(rate * exposure) == sum(counts)``. A slice without counts is returned as zeros.

    Examples
    --------
    >>> rate, err = gauss_smooth_slice(np.array([0, 10, 0]), np.ones(3), [np.arange(3.0)], 0.8)
    >>> rate.round(2), float(rate.sum())
    (array([2.69, 4.61, 2.69]), 10.0)
    """
    counts = np.asarray(counts, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    total = counts.sum()
    if not total > 0:
        return np.zeros(counts.shape), np.zeros(counts.shape)
    kernels = [gaussian_matrix(c, sigma) for c in centres]
    num = _apply(kernels, counts)
    den = _apply(kernels, exposure)
    var = _apply([k**2 for k in kernels], counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(den > 0, num / den, 0.0)
        err = np.where(den > 0, np.sqrt(np.maximum(var, 1.0)) / den, 0.0)
    predicted = (rate * exposure).sum()
    scale = total / predicted if predicted > 0 else 1.0
    return rate * scale, err * scale


def choose_sigma(counts, exposure, centres, candidates) -> float:
    """The Gaussian width (deg) among ``candidates`` with the smallest estimated squared error.

    The smoothed prediction ``m = x * (K n) / (K x)`` is linear in the counts, ``m = H n``
    with ``H_ii = x_i / (K x)_i``; for Poisson counts its expected squared error
    ``sum (m_i - mu_i)**2`` is estimated without bias by Mallows' Cp / Stein's risk,
    ``sum (m_i - n_i)**2 - sum n_i + 2 sum H_ii n_i``. Width 0 (no smoothing) scores
    ``sum n_i``, the Poisson variance of the raw counts.

    >>> flat = np.random.default_rng(1).poisson(50, 20)
    >>> choose_sigma(flat, np.ones(20), [np.arange(20.0)], [0.0, 1.0, 4.0])
    4.0
    >>> spiky = np.array([0, 0, 0, 500, 0, 0, 0, 0, 500, 0] * 2)
    >>> choose_sigma(spiky, np.ones(20), [np.arange(20.0)], [0.0, 1.0, 4.0])
    0.0
    """
    counts = np.asarray(counts, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    exposed = exposure > 0
    best, best_risk = 0.0, float(counts.sum())
    for sigma in candidates:
        if sigma <= 0:
            continue
        kernels = [gaussian_matrix(c, sigma) for c in centres]  # peak 1: K_ii = 1
        den = _apply(kernels, exposure)
        with np.errstate(invalid="ignore", divide="ignore"):
            smoothed = np.where(exposed, exposure * _apply(kernels, counts) / den, 0.0)
            h_ii = np.where(exposed, exposure / den, 0.0)
        risk = float(np.sum((smoothed - counts) ** 2) - counts.sum() + 2 * np.sum(h_ii * counts))
        if risk < best_risk:
            best, best_risk = float(sigma), risk
    return best


def _gauss_group(counts, exposure, centres, pixel, *, sigma_max):
    """Smooth every energy slice of one group; returns rate, error, sigmas (deg)."""
    rate = np.zeros(counts.shape)
    err = np.zeros(counts.shape)
    sigmas = np.full(counts.shape[0], np.nan)
    candidates = [f * pixel for f in SIGMA_STEPS if f * pixel <= sigma_max]
    for e in range(counts.shape[0]):
        if not (exposure[e] > 0).any() or counts[e].sum() == 0:
            continue
        sigmas[e] = choose_sigma(counts[e], exposure[e], centres, candidates)
        rate[e], err[e] = gauss_smooth_slice(counts[e], exposure[e], centres, sigmas[e])
    return rate, err, sigmas


# ---------------------------------------------------------------------------------------------
# Poisson spline fit (numpy)


def bspline_design(x, lo: float, hi: float, n_basis: int, degree: int = 3) -> np.ndarray:
    """Cubic (``degree``) B-spline basis with ``n_basis`` functions and equally spaced knots
    covering ``[lo, hi]``, evaluated at ``x``: shape ``(len(x), n_basis)``. Rows sum to 1.

    >>> bspline_design(np.linspace(0, 1, 5), 0.0, 1.0, 6).sum(axis=1)
    array([1., 1., 1., 1., 1.])
    """
    from scipy.interpolate import BSpline

    n_inner = n_basis - degree  # intervals between knots inside [lo, hi]
    if n_inner < 1:
        raise ValueError(f"n_basis must exceed the degree ({degree}), got {n_basis}")
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    step = (hi - lo) / n_inner
    pad = step * np.arange(1, degree + 1)
    knots = np.concatenate([lo - pad[::-1], np.linspace(lo, hi, n_inner + 1), hi + pad])
    x = np.clip(np.asarray(x, dtype=float), lo, hi)
    return BSpline.design_matrix(x, knots, degree).toarray()


def difference_penalty(n: int, order: int = 2) -> np.ndarray:
    """``D^T D`` for the ``order``-th difference matrix ``D`` of ``n`` coefficients.

    >>> difference_penalty(3)
    array([[ 1., -2.,  1.],
           [-2.,  4., -2.],
           [ 1., -2.,  1.]])
    """
    d = np.diff(np.eye(n), n=order, axis=0)
    return d.T @ d


class _Surface:
    """``log rate[e, p] = sum_ij basis_e[e, i] beta[i, j] basis_f[p, j]``: the fit's design is
    the Kronecker product ``basis_e x basis_f``, handled in array form (GLAM, Currie et al.
    2006), so the Hessian costs ``E P q**2`` instead of ``E P (a q)**2`` operations."""

    def __init__(self, basis_e, basis_f):
        self.be, self.bf = basis_e, basis_f
        self.shape = a, q = (basis_e.shape[1], basis_f.shape[1])
        self._be2 = (basis_e[:, :, None] * basis_e[:, None, :]).reshape(-1, a * a)
        self._bf2 = (basis_f[:, :, None] * basis_f[:, None, :]).reshape(-1, q * q)

    def log_rate(self, beta):
        return self.be @ beta.reshape(self.shape) @ self.bf.T

    def gradient(self, resid):  # X^T r for r of shape (E, P)
        return (self.be.T @ resid @ self.bf).ravel()

    def hessian(self, mu):  # X^T diag(mu) X
        a, q = self.shape
        h = (self._be2.T @ (mu @ self._bf2)).reshape(a, a, q, q)
        return h.transpose(0, 2, 1, 3).reshape(a * q, a * q)

    def variance(self, cov):  # diag(X cov X^T), shape (E, P)
        c4 = cov.reshape(self.shape + self.shape)
        t = np.einsum("ei,ijkl,ek->ejl", self.be, c4, self.be)
        return np.einsum("pj,ejl,pl->ep", self.bf, t, self.bf)


def _newton(surface, counts, exposure, penalty, beta, *, max_iter=100, tol=1e-9):
    """Penalised Poisson maximum likelihood, log link, ``mu = exposure exp(log_rate)``."""
    used = exposure > 0

    def objective(b):
        eta = np.minimum(surface.log_rate(b), 700.0)
        mu = exposure * np.exp(eta)
        return float(np.sum(mu) - np.sum(counts[used] * eta[used]) + 0.5 * b @ penalty @ b), mu

    value, mu = objective(beta)
    for _ in range(max_iter):
        grad = surface.gradient(mu - counts) + penalty @ beta
        hess = surface.hessian(mu) + penalty
        step = np.linalg.solve(hess + 1e-9 * np.eye(hess.shape[0]), grad)
        t = 1.0
        while True:
            new_value, new_mu = objective(beta - t * step)
            if new_value <= value or t < 1e-6:
                break
            t *= 0.5
        beta, gain = beta - t * step, value - new_value
        value, mu = new_value, new_mu
        if gain < tol * (1.0 + abs(value)):
            break
    return beta, mu


def _n_partition(basis_f) -> int:
    """Number of leading columns of ``basis_f`` that add up to 1 on every row."""
    total = np.cumsum(basis_f, axis=1)
    ones = np.flatnonzero(np.all(np.abs(total - 1.0) < 1e-9, axis=0))
    return int(ones[0]) + 1 if ones.size else basis_f.shape[1]


def poisson_spline_fit(counts, exposure, basis_e, basis_f, penalty,
                       lambdas=DEFAULT_PENALTIES):
    """Fit ``counts ~ Poisson(exposure exp(basis_e @ B @ basis_f.T))`` with penalty ``lam P``.

    Parameters
    ----------
    counts, exposure : arrays ``(E, P)`` (energy x flattened FoV bins; bins without exposure
        do not enter the likelihood)
    basis_e : array ``(E, a)``, functions of energy;  basis_f : array ``(P, q)``, of the FoV
    penalty : array ``(a q, a q)``, the penalty matrix for ``lam = 1`` (on ``B.ravel()``)
    lambdas : penalty strengths to try; the fit with the smallest AIC is kept

    Returns
    -------
    log_rate : array ``(E, P)``
    variance : array ``(E, P)``, of the log rate (from the inverse penalised Hessian)
    info : dict with ``lam``, ``edf`` (effective degrees of freedom) and ``aic``
    """
    counts = np.asarray(counts, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    surface = _Surface(np.asarray(basis_e, float), np.asarray(basis_f, float))
    # start: the mean rate (B-spline bases are partitions of unity: constant coefficients on
    # the columns whose FoV function sums to 1 give a constant log rate)
    mean = math.log(max(counts.sum(), 0.5) / exposure.sum())
    start = np.zeros(surface.shape)
    start[:, : _n_partition(surface.bf)] = mean
    beta = start.ravel()
    best = None
    for lam in sorted(lambdas, reverse=True):  # smooth to flexible, warm starts
        beta, mu = _newton(surface, counts, exposure, lam * penalty, beta)
        fisher = surface.hessian(mu)
        cov = np.linalg.inv(fisher + lam * penalty + 1e-9 * np.eye(beta.size))
        edf = float(np.sum(cov * fisher.T))
        used = exposure > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            nll = float(np.sum(mu) - np.sum(counts[used] * np.log(mu[used])))
        aic = 2 * nll + 2 * edf
        if best is None or aic < best[2]["aic"]:
            best = (surface.log_rate(beta), surface.variance(cov),
                    {"lam": float(lam), "edf": edf, "aic": aic})
    return best


def _fit_group(counts, exposure, energy_centres, fov_coords, *, n_energy_basis, n_fov_basis,
               lambdas):
    """Spline fit of one group: returns rate, error and the fit info."""
    shape = counts.shape
    log_e = np.log(np.asarray(energy_centres, dtype=float))
    offset = np.asarray(fov_coords["offset"], dtype=float).ravel()
    nb_e = int(min(n_energy_basis, max(4, log_e.size)))
    nb_o = int(min(n_fov_basis, max(4, offset.size)))
    basis_e = bspline_design(log_e, log_e.min(), log_e.max(), nb_e)
    columns = [bspline_design(offset, 0.0, offset.max(), nb_o)]
    columns += [np.asarray(fov_coords[n], dtype=float).ravel()[:, None] for n in ("detx", "dety")
                if n in fov_coords]
    basis_f = np.concatenate(columns, axis=1)
    q = basis_f.shape[1]
    pen_f = np.zeros((q, q))
    pen_f[:nb_o, :nb_o] = difference_penalty(nb_o)  # gradient terms: smooth in energy only
    penalty = np.kron(difference_penalty(nb_e), np.eye(q)) + np.kron(np.eye(nb_e), pen_f)
    log_rate, var, info = poisson_spline_fit(counts.reshape(shape[0], -1),
                                             exposure.reshape(shape[0], -1), basis_e, basis_f,
                                             penalty, lambdas)
    rate = np.exp(np.minimum(log_rate, 700.0))
    return rate.reshape(shape), (rate * np.sqrt(var)).reshape(shape), info


def _fov_coords(model: xr.Dataset) -> dict:
    """Bin-centre FoV coordinates of the model: ``offset`` (and ``detx, dety`` in 3D), deg."""
    if model.attrs["kind"] == "2d":
        return {"offset": np.asarray(model["offset"].values, dtype=float)}
    x = np.asarray(model["detx"].values, dtype=float)[None, :]
    y = np.asarray(model["dety"].values, dtype=float)[:, None]
    cos_off = np.cos(np.radians(x)) * np.cos(np.radians(y))
    offset = np.degrees(np.arccos(np.clip(cos_off, -1.0, 1.0)))
    return {"offset": offset, "detx": np.broadcast_to(x, offset.shape),
            "dety": np.broadcast_to(y, offset.shape)}


# ---------------------------------------------------------------------------------------------
# labelled layer


def smooth_model(model: xr.Dataset, method: str = "gauss", *,
                 sigma_max: float = DEFAULT_SIGMA_MAX,
                 n_energy_basis: int = DEFAULTS.n_energy_basis,
                 n_fov_basis: int = DEFAULTS.n_fov_basis,
                 penalties=DEFAULT_PENALTIES) -> xr.Dataset:
    """A copy of ``model`` with a smoothed ``rate`` and ``rate_error`` (module docstring).

    Parameters
    ----------
    model : xarray.Dataset
        A model with ``counts`` and ``exposure`` (computed; a lazy model is computed here).
    method : {"gauss", "fit", "none"}
    sigma_max : float
        Gaussian kernel: largest width (deg) tried (:func:`choose_sigma`).
    n_energy_basis, n_fov_basis, penalties
        Spline fit: basis functions in log E and in offset (at most the number of bins, at
        least 4), and the penalty strengths tried (AIC picks one per group).

    Returns
    -------
    xarray.Dataset
        Same layout; ``counts`` and ``exposure`` unchanged; attribute ``smoothing`` (JSON).

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> rng = np.random.default_rng(1)
    >>> counts = rng.poisson(20.0, size=(1, 3, 8))
    >>> model = assemble_model(counts, np.ones(counts.shape), kind="2d", energy_edges=[1, 2, 4, 8],
    ...     fov_edges={"offset": np.linspace(0, 2, 9)}, zenith_edges=[0, 60],
    ...     fov_alignment="ALTAZ", offset_max=2.0)
    >>> smooth = smooth_model(model, "gauss")
    >>> bool(np.allclose(smooth["rate"].sum("offset"), counts.sum(axis=2)))  # slice totals kept
    True
    >>> float(smooth["rate"].std()) < float(model["rate"].std())
    True
    """
    if method not in SMOOTH_METHODS:
        raise ValueError(f"smoothing method must be one of {SMOOTH_METHODS}, got {method!r}")
    if method == "none":
        return model
    for name in ("counts", "exposure"):
        if name not in model:
            raise KeyError(f"smoothing needs the model's {name!r} (raw counts and exposure)")
    kind = model.attrs["kind"]
    dims = ("zenith_group", "energy") + fov_dims(kind)
    counts = np.asarray(model["counts"].transpose(*dims).values, dtype=float)
    exposure = np.asarray(model["exposure"].transpose(*dims).values, dtype=float)
    rate = np.zeros(counts.shape)
    err = np.zeros(counts.shape)
    info: dict = {"method": method}
    if method == "gauss":
        fdims = fov_dims(kind)
        centres = [np.asarray(model[d].values, dtype=float) for d in fdims]
        pixel = float(np.mean([np.diff(edges_of(model, d)).mean() for d in fdims]))
        sigmas = []
        for g in range(counts.shape[0]):
            rate[g], err[g], s = _gauss_group(counts[g], exposure[g], centres, pixel,
                                              sigma_max=sigma_max)
            sigmas.append([None if not np.isfinite(v) else round(float(v), 5) for v in s])
        info.update(sigma_max=float(sigma_max),
                    sigma_deg=sigmas)
    else:
        energy = np.asarray(model["energy"].values, dtype=float)
        coords = _fov_coords(model)
        fits = []
        for g in range(counts.shape[0]):
            if not (exposure[g] > 0).any():
                fits.append(None)
                continue
            rate[g], err[g], fit = _fit_group(counts[g], exposure[g], energy, coords,
                                              n_energy_basis=n_energy_basis,
                                              n_fov_basis=n_fov_basis, lambdas=penalties)
            fits.append({k: round(v, 6) for k, v in fit.items()})
        info.update(n_energy_basis=int(n_energy_basis), n_fov_basis=int(n_fov_basis), fits=fits)
    raw = model["rate"].transpose(*dims).values
    empty = counts.sum(axis=tuple(range(2, counts.ndim))) == 0  # (G, E) slices without counts
    if method == "gauss":  # nothing to spread: keep the model's floor there
        rate[empty] = raw[empty]
        err[empty] = model["rate_error"].transpose(*dims).values[empty] \
            if "rate_error" in model else np.nan
    relative = float(model.attrs.get("rate_floor", 0.0))
    if relative > 0:
        rate = np.maximum(rate, rate_floor(counts, exposure, relative))
    rate = fill_unexposed(rate, exposure, counts, edges_of(model, "energy"))
    exposed = exposure.sum(axis=tuple(range(2, counts.ndim))) > 0
    err[~exposed] = np.nan
    out = model.copy()
    out["rate"] = xr.Variable(dims, rate, model["rate"].attrs).transpose(*model["rate"].dims)
    err_attrs = dict(model["rate_error"].attrs) if "rate_error" in model else {}
    err_attrs["long_name"] = f"statistical error of the {method}-smoothed rate"
    out["rate_error"] = xr.Variable(dims, err, err_attrs).transpose(*model["rate"].dims)
    out.attrs["smoothing"] = json.dumps(info, sort_keys=True)
    return out
