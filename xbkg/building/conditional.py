"""A conditional background model: the rate as a smooth function of each run's conditions.

``rate_r(e, p) = template_g(e, p) * exp(f_e(x_r))`` with ``f_e(x) = sum_k beta[e, k] * x_k`` of
the run's standardised condition terms (:mod:`xbkg.store.conditions`), fitted by a profiled,
penalised Poisson likelihood on per-run statistics gathered in the build's pass over the events.
The model, its fit and its uncertainties are described in docs/conditional.rst.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import xarray as xr

from xbkg.building.grouping import assign_groups
from xbkg.core.binning import BOUNDS_DIM
from xbkg.core.groups import assign_folds
from xbkg.core.schema import fov_dims
from xbkg.store.conditions import condition_matrix
from xbkg.store.datastore import takes_store

__all__ = ["RING_WIDTH", "SMOOTHNESS_GRID", "RANGE_MARGIN", "ConditionRangeWarning",
           "ring_edges", "fit_bin_labels", "standardise", "profile_objective", "fit_coefficients",
           "predict_counts", "norm_scatter", "cross_validate", "fit_conditional",
           "attach_conditional", "is_conditional", "strip_conditional", "merge_conditional",
           "run_terms", "model_for_run", "models_for_runs"]

log = logging.getLogger(__name__)

#: Width (deg) of the offset rings used as coarse FoV fit bins.
RING_WIDTH = 0.5
#: Candidate roughness penalties (standardised units), chosen by cross-validation.
SMOOTHNESS_GRID = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
#: Fraction of the fitted span of a term by which a run may lie outside it before it is flagged.
RANGE_MARGIN = 0.1
_RIDGE = 1e-6
_CV_FOLDS = 5


class ConditionRangeWarning(UserWarning):
    """A run's conditions lie outside the range the conditional model was fitted on."""


# ---------------------------------------------------------------------------------------------
# fit bins


def ring_edges(offset_max: float, width: float = RING_WIDTH) -> np.ndarray:
    """Offset ring edges (deg) from 0 to ``offset_max`` (last ring at most ``width`` wide).

    >>> ring_edges(2.5).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    >>> ring_edges(1.2).tolist()
    [0.0, 0.5, 1.0, 1.2]
    """
    n = int(np.ceil(offset_max / width - 1e-9))
    return np.append(np.arange(n) * width, offset_max).astype(float)


def fit_bin_labels(kind: str, fov_edges: dict, offset_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The fit bin (offset ring) of every FoV bin of a binning, by its centre; -1 beyond
    ``offset_max``. Returns ``(labels, ring_edges)``; labels have the FoV shape."""
    edges = ring_edges(offset_max)
    if kind == "2d":
        o = np.asarray(fov_edges["offset"], float)
        offset = 0.5 * (o[1:] + o[:-1])
    else:
        x = np.asarray(fov_edges["detx"], float)
        y = np.asarray(fov_edges["dety"], float)
        xc, yc = 0.5 * (x[1:] + x[:-1]), 0.5 * (y[1:] + y[:-1])
        offset = np.hypot(xc[None, :], yc[:, None])
    labels = np.searchsorted(edges, offset, side="right") - 1
    labels = np.where(offset < offset_max, np.minimum(labels, edges.size - 2), -1)
    return labels.astype(np.int64), edges


# ---------------------------------------------------------------------------------------------
# kernels (numpy)


def standardise(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and standard deviation of each column (1 where a column is constant).

    >>> c, s = standardise(np.array([[1.0], [3.0]]), np.array([1.0, 1.0]))
    >>> c.tolist(), s.tolist()
    ([2.0], [1.0])
    """
    w = np.asarray(weights, float) / np.sum(weights)
    center = w @ x
    scale = np.sqrt(w @ (x - center) ** 2)
    return center, np.where(scale > 1e-12 * np.maximum(np.abs(center), 1.0), scale, 1.0)


def _penalty_matrix(n_energy: int, n_terms: int, smoothness: float) -> np.ndarray:
    d2 = np.diff(np.eye(n_energy), n=2, axis=0) if n_energy > 2 else np.zeros((0, n_energy))
    return np.kron(smoothness * d2.T @ d2 + _RIDGE * np.eye(n_energy), np.eye(n_terms))


def _group_sum(onehot, values):
    """Sums over the runs of each group: ``(G, ...)`` from ``(R, ...)`` (one matrix product)."""
    return (onehot @ values.reshape(values.shape[0], -1)).reshape((-1,) + values.shape[1:])


def _moments(onehot, mu, x):
    """``s_geb k = sum_{r in g} mu_reb x_rk`` ``(G, E, B, K)``: one matrix product over runs,
    no ``(R, E, B, K)`` temporary."""
    n_groups, (n_runs, n_energy, n_bins), n_terms = onehot.shape[0], mu.shape, x.shape[1]
    xg = (onehot.T[:, :, None] * x[:, None, :]).reshape(n_runs, n_groups * n_terms)
    s = mu.reshape(n_runs, -1).T @ xg  # (E B, G K)
    return s.reshape(n_energy, n_bins, n_groups, n_terms).transpose(2, 0, 1, 3)


def _cells(counts, exposure, groups, n_groups, eta):
    """``N_geb``, ``D_geb`` and the fitted ``mu_reb`` for linear predictors ``eta (R, E)``."""
    onehot = (np.asarray(groups)[None, :] == np.arange(n_groups)[:, None]).astype(float)
    w = exposure * np.exp(eta)[:, :, None]
    n_cell = _group_sum(onehot, counts)
    d_cell = _group_sum(onehot, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(d_cell > 0, n_cell / d_cell, 0.0)
    mu = w * level[groups]
    return onehot, n_cell, d_cell, mu


def profile_objective(beta_flat, counts, exposure, groups, n_groups, x, penalty):
    """Penalised profile negative log-likelihood, its gradient and Hessian (module docstring).

    ``counts, exposure`` ``(R, E, B)``, ``groups (R,)``, ``x (R, K)`` standardised terms,
    ``penalty`` the ``(E K, E K)`` penalty matrix; ``beta_flat`` is ``beta (E, K)`` flattened.
    """
    n_energy, n_terms = counts.shape[1], x.shape[1]
    beta = beta_flat.reshape(n_energy, n_terms)
    eta = x @ beta.T
    onehot, n_cell, d_cell, mu = _cells(counts, exposure, groups, n_groups, eta)
    used = n_cell > 0
    value = np.sum(n_cell[used] * np.log(d_cell[used])) - np.sum(counts.sum(axis=2) * eta)
    mu_re = mu.sum(axis=2)
    grad = ((mu_re - counts.sum(axis=2)).T @ x).ravel()
    s_cell = _moments(onehot, mu, x)  # (G, E, B, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_n = np.where(used, 1.0 / n_cell, 0.0)
    outer = (x[:, :, None] * x[:, None, :]).reshape(len(x), -1)  # (R, K K)
    blocks = ((mu_re.T @ outer).reshape(n_energy, n_terms, n_terms)
              - np.einsum("gebk,gebl->ekl", s_cell * inv_n[..., None], s_cell))
    hess = np.zeros((n_energy * n_terms,) * 2)
    for e in range(n_energy):
        sl = slice(e * n_terms, (e + 1) * n_terms)
        hess[sl, sl] = blocks[e]
    value += 0.5 * beta_flat @ penalty @ beta_flat
    return value, grad + penalty @ beta_flat, hess + penalty


def fit_coefficients(counts, exposure, groups, n_groups, x, smoothness) -> dict:
    """Minimise :func:`profile_objective`; returns ``beta (E, K)``, ``hessian``, ``converged``.

    Raises RuntimeError when the minimiser does not converge.
    """
    from scipy.optimize import minimize

    counts = np.asarray(counts, float)
    n_energy, n_terms = counts.shape[1], x.shape[1]
    penalty = _penalty_matrix(n_energy, n_terms, float(smoothness))
    args = (counts, exposure, np.asarray(groups), int(n_groups), x, penalty)
    cache = {}

    def evaluate(b):  # scipy asks for the value, gradient and Hessian at the same points
        key = b.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = profile_objective(b, *args)
        return cache[key]

    res = minimize(lambda b: evaluate(b)[:2], np.zeros(n_energy * n_terms), jac=True,
                   hess=lambda b: evaluate(b)[2], method="trust-exact",
                   options={"gtol": 1e-6 * max(1.0, counts.sum() ** 0.5), "maxiter": 200})
    if not res.success and np.max(np.abs(res.jac)) > 1e-3 * max(1.0, counts.sum() ** 0.5):
        raise RuntimeError(f"conditional fit did not converge: {res.message}")
    hess = evaluate(res.x)[2]  # usually the last point scipy evaluated
    return {"beta": res.x.reshape(n_energy, n_terms), "hessian": hess,
            "n_iterations": int(res.nit)}


def _levels(counts, exposure, groups, n_groups, x, beta):
    """``exp(alpha_geb)``: the profiled levels ``N / D`` of a fit (NaN where no exposure)."""
    _, n_cell, d_cell, _ = _cells(counts, exposure, groups, n_groups, x @ beta.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d_cell > 0, n_cell / d_cell, np.nan)


def predict_counts(levels, exposure, groups, x, beta) -> np.ndarray:
    """Predicted ``(R, E, B)`` counts of runs from fitted ``levels (G, E, B)`` and ``beta``;
    NaN in cells the fit had no data for."""
    return exposure * np.exp(x @ beta.T)[:, :, None] * levels[np.asarray(groups)]


def _sandwich(counts, exposure, groups, n_groups, x, beta, hess_inv) -> np.ndarray:
    """Cluster-robust covariance (runs as clusters) of ``beta``: ``H^-1 M H^-1``."""
    eta = x @ beta.T
    onehot, n_cell, _, mu = _cells(counts, exposure, groups, n_groups, eta)
    s_cell = _moments(onehot, mu, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        xbar = np.where(n_cell[..., None] > 0, s_cell / n_cell[..., None], 0.0)
    # efficient score of each run: sum_b (mu - n) (x_r - mean x of the cell)
    centred = x[:, None, None, :] - xbar[groups]
    score = np.einsum("reb,rebk->rek", mu - counts, centred).reshape(len(x), -1)
    n_runs = len(x)
    meat = score.T @ score * n_runs / max(n_runs - 1, 1)
    return hess_inv @ meat @ hess_inv


def _run_residuals(counts, predicted):
    """Per-run ``counts / predicted`` over the cells predicted (finite), and the counts."""
    ok = np.isfinite(predicted) & (predicted > 0)
    n = np.where(ok, counts, 0.0).sum(axis=(1, 2))
    mu = np.where(ok, predicted, 0.0).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mu > 0, n / mu, np.nan), n, mu


def norm_scatter(norm, counts, predicted) -> float:
    """Systematic scatter of per-run norms: ``sqrt(mean((norm - 1)**2) - mean(n / mu**2))``.

    >>> round(norm_scatter(np.array([1.1, 0.9]), np.array([1e12, 1e12]), np.array([1e12] * 2)), 6)
    0.1
    """
    ok = np.isfinite(norm) & (predicted > 0)
    if not ok.any():
        return float("nan")
    excess = np.mean((norm[ok] - 1) ** 2) - np.mean(counts[ok] / predicted[ok] ** 2)
    return float(np.sqrt(max(excess, 0.0)))


def cross_validate(counts, exposure, groups, n_groups, x, smoothness, folds) -> dict:
    """Held-out predictions of every run: refit without its fold, predict its cells.

    Returns ``predicted (R, E, B)`` (NaN where the training had no data), ``norm`` (R,) and
    ``deviance``: the Poisson deviance of the held-out runs' energy spectra.
    """
    predicted = np.full(counts.shape, np.nan)
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        fit = fit_coefficients(counts[train], exposure[train], groups[train], n_groups, x[train],
                               smoothness)
        levels = _levels(counts[train], exposure[train], groups[train], n_groups, x[train],
                         fit["beta"])
        predicted[test] = predict_counts(levels, exposure[test], groups[test], x[test],
                                         fit["beta"])
    ok = np.isfinite(predicted) & (predicted > 0)
    n_re = np.where(ok, counts, 0).sum(axis=2)
    mu_re = np.where(ok, predicted, 0).sum(axis=2)
    sel = mu_re > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n_re > 0, n_re * np.log(n_re / mu_re), 0.0) - (n_re - mu_re)
    norm, _, _ = _run_residuals(counts, predicted)
    return {"predicted": predicted, "norm": norm, "deviance": float(2 * term[sel].sum())}


def fit_conditional(counts, exposure, groups, n_groups, x_raw, ontime, *, smoothness="cv",
                    n_folds: int = _CV_FOLDS, seed: int = 0) -> dict:
    """The whole fit: standardisation, penalty choice, coefficients, covariances, scatter.

    Parameters
    ----------
    counts, exposure : arrays ``(R, E, B)``
        Per-run counts and exposure in the fit bins.
    groups : int array (R,), n_groups
        The runs' template groups.
    x_raw : array (R, K)
        Raw condition terms (:func:`xbkg.store.conditions.condition_matrix`).
    ontime : array (R,)
        Observation times: the weights of the standardisation.
    smoothness : float or "cv"
        Roughness penalty, or "cv" (default): the value of :data:`SMOOTHNESS_GRID` with the
        smallest cross-validated deviance.
    n_folds, seed
        The cross-validation over runs (:func:`xbkg.checks.crossval.assign_folds` of run indices).
    """

    counts = np.asarray(counts, float)
    exposure = np.asarray(exposure, float)
    groups = np.asarray(groups, dtype=np.int64)
    center, scale = standardise(x_raw, ontime)
    x = (x_raw - center) / scale
    n_runs = len(x)
    folds = assign_folds(np.arange(n_runs), min(n_folds, n_runs), seed) if n_runs >= 2 else None
    scores = {}
    if smoothness == "cv":
        if folds is None:
            raise ValueError("smoothness='cv' needs at least 2 runs")
        for lam in SMOOTHNESS_GRID:
            scores[lam] = cross_validate(counts, exposure, groups, n_groups, x, lam, folds)
        smoothness = min(scores, key=lambda lam: scores[lam]["deviance"])
        cv = scores[smoothness]
    else:
        smoothness = float(smoothness)
        cv = (cross_validate(counts, exposure, groups, n_groups, x, smoothness, folds)
              if folds is not None else None)
    fit = fit_coefficients(counts, exposure, groups, n_groups, x, smoothness)
    beta = fit["beta"]
    hess_inv = np.linalg.inv(fit["hessian"])
    cov = _sandwich(counts, exposure, groups, n_groups, x, beta, hess_inv)
    levels = _levels(counts, exposure, groups, n_groups, x, beta)
    insample = predict_counts(levels, exposure, groups, x, beta)
    norm_in, n_run, mu_in = _run_residuals(counts, insample)
    out = {"beta": beta, "cov": cov, "cov_poisson": hess_inv, "center": center, "scale": scale,
           "smoothness": float(smoothness), "levels": levels, "x": x,
           "norm_insample": norm_in, "sys_scatter_insample": norm_scatter(norm_in, n_run, mu_in),
           "n_iterations": fit["n_iterations"],
           "cv_deviance": {str(k): v["deviance"] for k, v in scores.items()}}
    if cv is not None:
        norm_cv, n_cv, mu_cv = _run_residuals(counts, cv["predicted"])
        out.update(norm_cv=norm_cv, sys_scatter=norm_scatter(norm_cv, n_cv, mu_cv),
                   cv_folds=folds)
    else:
        out.update(norm_cv=np.full(n_runs, np.nan), sys_scatter=float("nan"))
    return out


# ---------------------------------------------------------------------------------------------
# labelled layer


def is_conditional(model: xr.Dataset) -> bool:
    """True when ``model`` carries a conditional fit (:func:`attach_conditional`)."""
    return "cond_coef" in model


def _reference_factor(model, fit, counts, exposure, groups, labels):
    """``cond_reference_factor (G, E, B)``: exposure-weighted mean of ``exp(f)`` per cell."""
    n_groups = model.sizes["zenith_group"]
    onehot = (groups[None, :] == np.arange(n_groups)[:, None]).astype(float)
    w = exposure * np.exp(fit["x"] @ fit["beta"].T)[:, :, None]
    plain = _group_sum(onehot, exposure)
    weighted = _group_sum(onehot, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(plain > 0, weighted / plain, np.nan)
        whole = np.where(plain.sum(2) > 0, weighted.sum(2) / plain.sum(2), np.nan)
    # bins beyond the rings: the whole FoV's factor; unexposed slices: 1 (placeholders)
    factor = np.concatenate([factor, whole[:, :, None]], axis=2)
    return np.where(np.isfinite(factor), factor, 1.0)


def attach_conditional(model: xr.Dataset, run_stats, x_raw: np.ndarray, terms: list,
                       conditions: list, labels: np.ndarray, rings: np.ndarray, *,
                       smoothness="cv", seed: int = 0) -> xr.Dataset:
    """``model`` (computed, with its runs) plus the conditional fit of its runs.

    ``run_stats`` is ``(counts, exposure)`` ``(R, E, B)`` in the order of ``model.obs_id``
    (:func:`xbkg.building.reduce.group_cubes` with ``fit_bins=labels``), ``x_raw (R, K)`` the raw terms
    named ``terms`` of ``conditions``, ``rings`` the ring edges of the fit bins.
    """
    counts, exposure = (np.asarray(a) for a in run_stats)
    if len(counts) <= np.shape(x_raw)[1]:  # the fit's covariance would be meaningless (NaN)
        raise ValueError(f"conditions: {np.shape(x_raw)[1]} terms ({', '.join(terms)}) need "
                         f"more runs than terms; the model has {len(counts)} runs")
    groups = np.asarray(model["obs_group"].values, dtype=np.int64)
    ontime = np.asarray(model["obs_ontime"].values, float)
    fit = fit_conditional(counts, exposure, groups, model.sizes["zenith_group"], x_raw, ontime,
                          smoothness=smoothness, seed=seed)
    factor = _reference_factor(model, fit, counts, exposure, groups, labels)
    n_e, n_k = fit["beta"].shape
    err = np.sqrt(np.diag(fit["cov"])).reshape(n_e, n_k)
    out = model.copy()
    out = out.assign_coords(cond_term=("cond_term", list(terms)),
                            fit_bin_bounds=(("fit_bin", BOUNDS_DIM),
                                            np.stack([rings[:-1], rings[1:]], axis=1),
                                            {"units": "deg", "long_name": "offset ring"}))
    out["cond_coef"] = (("energy", "cond_term"), fit["beta"],
                        {"long_name": "coefficient of the standardised term in ln rate"})
    out["cond_coef_error"] = (("energy", "cond_term"), err,
                              {"long_name": "cluster-robust standard error of cond_coef"})
    out["cond_cov"] = (("cond_param", "cond_param2"), fit["cov"],
                       {"long_name": "cluster-robust covariance of cond_coef (energy-major)"})
    out["cond_cov_poisson"] = (("cond_param", "cond_param2"), fit["cov_poisson"],
                               {"long_name": "Poisson covariance (inverse penalised Hessian)"})
    out["cond_center"] = ("cond_term", fit["center"])
    out["cond_scale"] = ("cond_term", fit["scale"])
    out["cond_min"] = ("cond_term", x_raw.min(axis=0))
    out["cond_max"] = ("cond_term", x_raw.max(axis=0))
    out["cond_reference_factor"] = (("zenith_group", "energy", "fit_bin_ext"), factor,
                                    {"long_name": "mean exp(f) of the group's runs per ring "
                                                  "(last: the whole FoV)"})
    out["cond_fit_bin"] = (fov_dims(model.attrs["kind"]), labels)
    out["obs_cond_terms"] = (("obs_id", "cond_term"), x_raw)
    out["obs_fit_counts"] = (("obs_id", "energy", "fit_bin"), counts.astype(np.int64))
    out["obs_fit_exposure"] = (("obs_id", "energy", "fit_bin"), exposure, {"units": "s MeV sr"})
    out["obs_cond_norm"] = ("obs_id", fit["norm_insample"],
                            {"long_name": "counts / fitted prediction (in-sample)"})
    out["obs_cond_norm_cv"] = ("obs_id", fit["norm_cv"],
                               {"long_name": "counts / prediction of a fit without the run"})
    out.attrs["conditional"] = json.dumps({
        "conditions": list(conditions), "terms": list(terms), "smoothness": fit["smoothness"],
        "sys_scatter": fit["sys_scatter"], "sys_scatter_insample": fit["sys_scatter_insample"],
        "cv_deviance": fit["cv_deviance"], "n_iterations": fit["n_iterations"],
        "range_margin": RANGE_MARGIN, "ring_width": RING_WIDTH,
        "solver": "scipy.optimize.minimize(method='trust-exact')"}, sort_keys=True)
    return out


#: Variables and coordinates a conditional fit adds to a model (:func:`attach_conditional`).
_COND_VARS = ("cond_coef", "cond_coef_error", "cond_cov", "cond_cov_poisson", "cond_center",
              "cond_scale", "cond_min", "cond_max", "cond_reference_factor", "cond_fit_bin",
              "obs_cond_terms", "obs_fit_counts", "obs_fit_exposure", "obs_cond_norm",
              "obs_cond_norm_cv")


def strip_conditional(model: xr.Dataset) -> xr.Dataset:
    """``model`` without its conditional fit (variables, coordinates and attribute)."""
    out = model.drop_vars([v for v in _COND_VARS if v in model])
    out = out.drop_vars([c for c in ("cond_term", "fit_bin_bounds") if c in out.coords])
    out.attrs = {k: v for k, v in model.attrs.items() if k != "conditional"}
    return out


def merge_conditional(old: xr.Dataset, new: xr.Dataset, merged: xr.Dataset) -> xr.Dataset:
    """Refit the conditional terms of ``merged`` (the plain merge of ``old`` and ``new``, runs
    sorted by OBS_ID) on the per-run statistics both models carry: no event is read again."""
    info = _info(old)
    if _info(new)["terms"] != info["terms"]:
        raise ValueError(f"the new runs' conditional terms {_info(new)['terms']} differ from "
                         f"the model's {info['terms']}")
    order = np.argsort(np.concatenate([old.obs_id.values, new.obs_id.values]), kind="stable")

    def cat(name):
        return np.concatenate([old[name].values, new[name].values])[order]

    rings = old["fit_bin_bounds"].values
    return attach_conditional(merged, (cat("obs_fit_counts"), cat("obs_fit_exposure")),
                              cat("obs_cond_terms"), info["terms"], info["conditions"],
                              old["cond_fit_bin"].values,
                              np.append(rings[:, 0], rings[-1, 1]), smoothness="cv")


def _info(model) -> dict:
    return json.loads(model.attrs["conditional"])


@takes_store("store")
def run_terms(model: xr.Dataset, store: xr.Dataset) -> np.ndarray:
    """Raw condition terms ``(runs, K)`` of the runs of an observation Dataset."""

    x, names = condition_matrix(store, _info(model)["conditions"],
                                outer_offset=float(model.attrs["offset_max"]))
    if names != list(model["cond_term"].values):
        raise ValueError(f"terms {names} differ from the model's {list(model['cond_term'].values)}")
    return x


def _outside(model, x_raw) -> list[str]:
    lo, hi = model["cond_min"].values, model["cond_max"].values
    margin = RANGE_MARGIN * (hi - lo)
    bad = (x_raw < lo - margin) | (x_raw > hi + margin)
    return [str(t) for t, b in zip(model["cond_term"].values, bad) if b]


def _run_group(model, zenith: float, group=None) -> int:
    if group is not None and group >= 0:
        return int(group)
    nodes = model["group_mean_cos_zenith"].values if "group_mean_cos_zenith" in model else \
        np.cos(np.radians(model["zenith_bounds"].values.mean(axis=1)))
    return int(np.nanargmin(np.abs(nodes - np.cos(np.radians(zenith)))))


def model_for_run(model: xr.Dataset, x_raw, *, zenith: float, group=None, obs_id=None,
                  warn: bool = True) -> xr.Dataset:
    """One run's model: its group's template x ``exp(f(E, x))``, with uncertainties.

    Parameters
    ----------
    model : Dataset
        A model with a conditional fit.
    x_raw : array (K,)
        The run's raw condition terms (:func:`run_terms`).
    zenith : float
        The run's zenith (deg): recorded, and picks the nearest group when ``group`` is None
        or -1 (a run outside every group).
    group : int, optional
        The run's group.
    obs_id : int, optional
        Recorded in the ``per_run`` attribute.
    warn : bool
        Warn (:class:`ConditionRangeWarning`) when the run is outside the fitted range.

    Returns
    -------
    Dataset
        One-group model (:mod:`xbkg.core.schema` layout): ``rate``, ``rate_error`` (template Poisson
        error and the statistical error of ``f`` combined), ``cond_stat_error (energy)`` (the
        relative error of ``f``) and attribute ``per_run`` (JSON: ``obs_id``, ``zenith``,
        ``outside_range`` term names, ``sys_scatter``, ``stat_error`` of the run's level).
    """
    x_raw = np.asarray(x_raw, float)
    g = _run_group(model, zenith, group)
    x = (x_raw - model["cond_center"].values) / model["cond_scale"].values
    beta = model["cond_coef"].values
    cov = model["cond_cov"].values
    n_e, n_k = beta.shape
    eta = beta @ x
    blocks = cov.reshape(n_e, n_k, n_e, n_k)
    var_eta = np.einsum("k,ekel,l->e", x, blocks, x) if n_k else np.zeros(n_e)
    fdims = fov_dims(model.attrs["kind"])
    labels = model["cond_fit_bin"].values
    factor = model["cond_reference_factor"].values[g]  # (E, B + 1)
    per_bin = factor[:, np.where(labels >= 0, labels, factor.shape[1] - 1)]  # (E, *fov)
    scale = np.exp(eta).reshape((n_e,) + (1,) * len(fdims)) / per_bin
    dims = ("zenith_group", "energy") + fdims
    rate = model["rate"].isel(zenith_group=g).transpose(*dims[1:]).values * scale
    rel_t = np.zeros_like(rate)
    if "rate_error" in model:
        base = model["rate"].isel(zenith_group=g).transpose(*dims[1:]).values
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_t = np.where(base > 0, model["rate_error"].isel(zenith_group=g)
                             .transpose(*dims[1:]).values / base, np.nan)
    rel = np.sqrt(rel_t ** 2 + var_eta.reshape((n_e,) + (1,) * len(fdims)))
    info = _info(model)
    outside = _outside(model, x_raw)
    if outside and warn:
        warnings.warn(f"run {obs_id}: conditions {outside} outside the range the conditional "
                      f"model was fitted on (extrapolated)", ConditionRangeWarning, stacklevel=2)
    one = xr.Dataset(coords={k: v for k, v in model.coords.items()
                             if not {"zenith_group", "obs_id", "cond_term", "fit_bin"}
                             & set(v.dims)})
    one = one.assign_coords(zenith_group=("zenith_group", [0]),
                            zenith_bounds=(("zenith_group", BOUNDS_DIM), [[zenith, zenith]],
                                           {"units": "deg"}))
    one["rate"] = xr.Variable(dims, rate[None], model["rate"].attrs)
    one["rate_error"] = xr.Variable(dims, (rate * rel)[None], model["rate"].attrs)
    one["cond_stat_error"] = ("energy", np.sqrt(var_eta),
                              {"long_name": "relative statistical error of exp(f)"})
    one["group_mean_cos_zenith"] = ("zenith_group", [float(np.cos(np.radians(zenith)))])
    weights = model["obs_fit_counts"].sum(("obs_id", "fit_bin")).values.astype(float)
    weights = weights / weights.sum() if weights.sum() > 0 else weights
    grad = np.outer(weights, x).ravel()
    level_error = float(np.sqrt(max(grad @ cov @ grad, 0.0)))
    one.attrs = {k: v for k, v in model.attrs.items()
                 if k not in ("group_by", "grouping", "conditional")}
    one.attrs["per_run"] = json.dumps({
        "obs_id": None if obs_id is None else int(obs_id), "zenith": float(zenith),
        "method": "conditional", "source_group": g, "terms": info["terms"],
        "term_values": x_raw.tolist(), "outside_range": outside,
        "sys_scatter": info["sys_scatter"], "stat_error": level_error}, sort_keys=True)
    return one


@takes_store("store")
def models_for_runs(model: xr.Dataset, store: xr.Dataset, *, warn: bool = True):
    """Yield ``(obs_id, model_for_run(...))`` for every run of an observation Dataset."""

    x = run_terms(model, store)
    try:
        groups = assign_groups(store, model)
    except (KeyError, ValueError):
        groups = np.full(store.sizes["obs_id"], -1)
    zenith = np.asarray(store["zenith"].values, float)
    for i, obs_id in enumerate(store.obs_id.values):
        yield int(obs_id), model_for_run(model, x[i], zenith=zenith[i], group=int(groups[i]),
                                         obs_id=int(obs_id), warn=warn)
