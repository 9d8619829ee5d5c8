"""k-fold cross-validation of background models over runs (``xbkg validate``).

For each fold a model is built on the other runs and predicts the held-out runs' counts per bin;
the result tells how well a model predicts runs it has not seen (per-run normalisation and
spectral tilt, per-bin significances, residual maps). :func:`validate` also scores fixed models
or the store's own per-run models. Region, binning and statistics: docs/architecture.rst.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import xarray as xr

from xbkg.building.conditional import models_for_runs
from xbkg.building.histogram import run_counts
from xbkg.building.make import make_model
from xbkg.building.options import BuildOptions, SmoothingOptions, record_keywords
from xbkg.building.parallel import compute
from xbkg.building.thresholds import run_energy_thresholds
from xbkg.checks.options import (
    DEFAULT_BINSZ,
    DEFAULT_ENERGY_EDGES,
    DEFAULT_OFFSET_MAX,
    DEFAULT_WIDTH,
    EvaluationOptions,
    FoldOptions,
    validate_options,
)
from xbkg.core.binning import Binning, axis_coords, edges_of, energy_mask
from xbkg.core.groups import assign_folds
from xbkg.core.runs import RunInfo
from xbkg.io import open_model
from xbkg.io.index_tables import read_index_table
from xbkg.model.group_interpolation import models_for_observations
from xbkg.model.predict import predict_counts
from xbkg.sky import fov
from xbkg.store.datastore import open_datastore, resolve_path, takes_store
from xbkg.store.events import RunDataError, fill_from_headers, read_run_events, run_infos
from xbkg.store.selection import select_runs

__all__ = ["DEFAULT_ENERGY_EDGES", "DEFAULT_WIDTH", "DEFAULT_BINSZ", "DEFAULT_OFFSET_MAX",
           "assign_folds", "energy_mask", "poisson_significance", "significance_moments",
           "fit_norm_tilt", "run_counts_cube", "mirror_lon", "store_run_models", "run_statistics",
           "validate", "residual_maps", "summarise"]

log = logging.getLogger(__name__)

_TILT_BOUND = 10.0


# ---------------------------------------------------------------------------------------------
# kernels (numpy)


def poisson_significance(n, mu) -> np.ndarray:
    """Signed square root of the Poisson likelihood-ratio statistic of counts ``n`` given ``mu``.

    ``sign(n - mu) * sqrt(2 * (n * log(n / mu) - (n - mu)))``; NaN where ``mu <= 0``.

    >>> poisson_significance([0, 4, 100], [2.0, 4.0, 81.0]).round(3).tolist()
    [-2.0, 0.0, 2.036]
    """
    n = np.asarray(n, dtype=float)
    mu = np.asarray(mu, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / mu), 0.0) - (n - mu)
        out = np.sign(n - mu) * np.sqrt(2.0 * np.maximum(term, 0.0))
    return np.where(mu > 0, out, np.nan)


def significance_moments(mu, *, n_sigma: float = 12.0, max_cells: int = 4_000_000):
    """Mean and mean square of :func:`poisson_significance` per bin if counts were Poisson(mu).

    Exact sums over the Poisson distribution (``n`` within ``n_sigma`` standard deviations of
    ``mu``, renormalised). Bins with ``mu <= 0`` give NaN.

    Returns
    -------
    mean, mean_square : ndarray, shaped like ``mu``

    >>> m1, m2 = significance_moments([0.1, 1000.0])
    >>> m1.round(2).tolist(), np.sqrt(m2 - m1 ** 2).round(2).tolist()
    ([-0.24, -0.01], [0.65, 1.0])
    """
    mu = np.asarray(mu, dtype=float)
    flat = mu.ravel()
    m1 = np.full(flat.shape, np.nan)
    m2 = np.full(flat.shape, np.nan)
    good = np.flatnonzero(flat > 0)
    good = good[np.argsort(flat[good], kind="stable")]
    start = 0
    while start < good.size:  # chunks of bins sorted by mu, each summed over a common n range
        top = flat[good[min(start + 4096, good.size) - 1]]  # largest mu a chunk can hold
        span = int(np.ceil(2 * n_sigma * np.sqrt(top) + 30))
        stop = min(good.size, start + 4096, start + max(1, max_cells // span))
        idx = good[start:stop]
        m = flat[idx][:, None]
        n0 = np.floor(np.maximum(m - n_sigma * np.sqrt(m) - 5, 0.0))
        n = n0 + np.arange(span)[None, :]
        log_p0 = n0[:, 0] * np.log(m[:, 0]) - m[:, 0] - np.array([math.lgamma(k + 1)
                                                                  for k in n0[:, 0]])
        steps = np.log(m) - np.log(np.maximum(n, 1.0))
        steps[:, 0] = 0.0
        p = np.exp(log_p0[:, None] + np.cumsum(steps, axis=1))
        p /= p.sum(axis=1, keepdims=True)
        s = poisson_significance(n, m)
        m1[idx] = (p * s).sum(axis=1)
        m2[idx] = (p * s * s).sum(axis=1)
        start = stop
    return m1.reshape(mu.shape), m2.reshape(mu.shape)


def fit_norm_tilt(counts, predicted, energy, *, e_ref: float = 1.0) -> dict:
    """Normalisation and spectral tilt of counts against a prediction, per energy bin.

    Parameters
    ----------
    counts, predicted : array (E,)
        Counts and predicted counts per energy bin (summed over pixels).
    energy : array (E,)
        Bin energies (TeV), e.g. geometric centres.
    e_ref : float
        Reference energy of the tilt (TeV).

    Returns
    -------
    dict with ``norm`` (counts / predicted), ``norm_error`` (``sqrt(counts) / predicted``),
    ``tilt``, ``tilt_error`` and ``amplitude`` (the scale at ``e_ref``) of the Poisson fit of
    ``counts ~ amplitude * (E / e_ref)**tilt * predicted`` (see the module docstring).

    >>> e = np.array([0.5, 1.0, 2.0, 4.0])
    >>> pred = np.array([4000.0, 2000.0, 1000.0, 500.0])
    >>> fit = fit_norm_tilt(1.2 * pred * e ** 0.3, pred, e)
    >>> round(fit["tilt"], 6), round(fit["amplitude"], 6)
    (0.3, 1.2)
    """
    n = np.asarray(counts, dtype=float)
    mu = np.asarray(predicted, dtype=float)
    use = mu > 0
    n_tot, mu_tot = n[use].sum(), mu[use].sum()
    out = {"norm": np.nan, "norm_error": np.nan, "tilt": np.nan, "tilt_error": np.nan,
           "amplitude": np.nan}
    if mu_tot <= 0:
        return out
    out["norm"] = float(n_tot / mu_tot)
    out["norm_error"] = float(np.sqrt(max(n_tot, 1.0)) / mu_tot)
    if use.sum() < 2 or n_tot <= 0:
        return out
    n, mu = n[use], mu[use]
    lx = np.log(np.asarray(energy, dtype=float)[use] / e_ref)
    mean_obs = (n * lx).sum() / n_tot
    tilt, var = 0.0, np.nan
    for _ in range(100):
        w = np.exp(tilt * lx - (tilt * lx).max()) * mu
        w /= w.sum()
        mean_w = (w * lx).sum()
        var = (w * (lx - mean_w) ** 2).sum()
        if not var > 0:
            return out
        step = float(np.clip((mean_obs - mean_w) / var, -1.0, 1.0))
        tilt = float(np.clip(tilt + step, -_TILT_BOUND, _TILT_BOUND))
        if abs(step) < 1e-12 or abs(tilt) == _TILT_BOUND:
            break
    out["tilt"] = tilt
    out["tilt_error"] = float(1.0 / np.sqrt(n_tot * var))
    out["amplitude"] = float(n_tot / (np.exp(tilt * lx) * mu).sum())
    return out


def run_counts_cube(columns: dict, info: RunInfo, energy_edges, detx_edges, dety_edges) -> np.ndarray:
    """Counts ``(energy, dety, detx)`` of one run's events on a RADEC-aligned FoV grid.

    ``columns`` has ENERGY (TeV), RA and DEC (deg); ``info`` the pointing ``ra_pnt, dec_pnt``.
    DETX is fov_lon and DETY fov_lat (gammapy sign), the grid of
    :func:`xbkg.model.predict.predict_counts`: the build's counts cube
    (:func:`xbkg.building.histogram.run_counts`) of a RADEC binning without offset cut.
    """
    energy_edges, detx_edges, dety_edges = (np.asarray(e, dtype=float) for e in
                                            (energy_edges, detx_edges, dety_edges))
    grid = Binning("3d", "RADEC", energy_edges, {"detx": detx_edges, "dety": dety_edges},
                   offset_max=180.0)
    return run_counts(columns, info, grid)


# ---------------------------------------------------------------------------------------------
# models to validate


def mirror_lon(model: xr.Dataset) -> xr.Dataset:
    """A 3D model with its DETX axis mirrored (edges negated and reversed, values flipped).

    Turns a model whose DETX is really minus fov_lon (gammapy's ``REVERSE_LON_RADEC``, the
    frame of the H.E.S.S. DR1 per-run models) into one with the GADF sign, which evaluates to
    the same rate at the same sky position.
    """
    if model.attrs.get("kind") != "3d":
        raise ValueError("mirror_lon needs a 3D model (2D models have no longitude axis)")
    edges = -edges_of(model, "detx")[::-1]
    out = model.isel(detx=slice(None, None, -1))
    return out.assign_coords(axis_coords("detx", edges))


@takes_store("store")
def store_run_models(store: xr.Dataset, obs_ids=None, *, reverse_lon: bool = True) -> dict:
    """The per-run background models listed in a store's HDU index (bkg rows), by OBS_ID.

    Parameters
    ----------
    store : Dataset
        Observation Dataset (:func:`xbkg.open_datastore`); its ``hdu_index`` attribute is read.
    obs_ids : list of int, optional
        Runs wanted (default: every run of ``store``).
    reverse_lon : bool
        Mirror the DETX axis of 3D RADEC models (:func:`mirror_lon`), as gammapy does for
        H.E.S.S. DR1 runs.

    Raises
    ------
    KeyError
        A wanted run has no bkg row in the HDU index.
    """

    hdu = read_index_table(store.attrs["hdu_index"])
    rows = {int(o): r for r, (o, t) in enumerate(zip(hdu["OBS_ID"], hdu["HDU_TYPE"]))
            if str(t).strip().lower() == "bkg"}
    wanted = store.obs_id.values if obs_ids is None else np.atleast_1d(obs_ids)
    models = {}
    for obs_id in (int(o) for o in wanted):
        if obs_id not in rows:
            raise KeyError(f"run {obs_id}: no bkg row in the HDU index {store.attrs['hdu_index']}")
        r = rows[obs_id]
        path = resolve_path(store.attrs["base_dir"], str(hdu["FILE_DIR"][r]),
                            str(hdu["FILE_NAME"][r]))
        model = open_model(path, hdu=str(hdu["HDU_NAME"][r]))
        if reverse_lon and model.attrs["kind"] == "3d" and model.attrs["fov_alignment"] == "RADEC":
            model = mirror_lon(model)
            model.attrs["provenance_reverse_lon"] = "DETX mirrored (gammapy REVERSE_LON_RADEC)"
        models[obs_id] = model
    return models


# ---------------------------------------------------------------------------------------------
# labelled layer


def run_statistics(counts, npred, mask, energy) -> dict:
    """Per-run statistics of counts and predictions ``(E, Y, X)`` over the ``mask``-ed bins.

    Returns a dict with ``counts``, ``predicted``, ``n_bins``, ``n_bins_unpredicted`` (selected
    bins predicted 0), the :func:`fit_norm_tilt` results, ``sig_mean`` and ``sig_std`` (per-bin
    significances) and ``deviance`` (sum of squared significances, the Poisson deviance).
    """
    counts = np.asarray(counts, dtype=float)
    npred = np.asarray(npred, dtype=float)
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), counts.shape)
    n_e = np.where(mask, counts, 0.0).sum(axis=(1, 2))
    mu_e = np.where(mask, npred, 0.0).sum(axis=(1, 2))
    sel = mask & (npred > 0)
    sig = poisson_significance(counts[sel], npred[sel])
    out = {"counts": float(n_e.sum()), "predicted": float(mu_e.sum()), "n_bins": int(sel.sum()),
           "n_bins_unpredicted": int((mask & ~(npred > 0)).sum())}
    out.update(fit_norm_tilt(n_e, mu_e, energy))
    out.update(sig_mean=float(sig.mean()) if sig.size else np.nan,
               sig_std=float(sig.std()) if sig.size else np.nan,
               deviance=float((sig ** 2).sum()))
    return out


def _evaluate_run(model, store, info, energy_edges, width, binsz, offset_max, integration,
                  e_lo, e_hi):
    """Counts, prediction and selection mask ``(E, Y, X)`` of one run (a per-run task)."""

    npred = predict_counts(model, store, info.obs_id, energy_edges=energy_edges, width=width,
                           binsz=binsz, energy_integration=integration)
    detx, dety = edges_of(npred, "detx"), edges_of(npred, "dety")
    columns, _ = read_run_events(info.events_file, info.events_hdu, ("ENERGY", "RA", "DEC"),
                                 obs_id=info.obs_id)
    counts = run_counts_cube(columns, info, energy_edges, detx, dety)
    pix_offset = fov.offset_deg(npred["ra"].values, npred["dec"].values, info.ra_pnt,
                                info.dec_pnt)
    mask = energy_mask(energy_edges, e_lo, e_hi)[:, None, None] & (pix_offset < offset_max)[None]
    return counts, npred["npred"].values, mask, detx, dety


def _run_task(model, store, info, grid, thresholds):
    try:
        return _evaluate_run(model, store, info, *grid, *thresholds), None
    except RunDataError as exc:
        return None, str(exc)


def _smoothing(smooth) -> dict | None:
    """``smooth`` (None, a method name, a dict with ``method`` and options, or
    :class:`~xbkg.building.options.SmoothingOptions`) as a dict."""
    if isinstance(smooth, SmoothingOptions):
        smooth = record_keywords({"smoothing": smooth})["smoothing"]
    if smooth is None or smooth == "none":
        return None
    options = {"method": smooth} if isinstance(smooth, str) else dict(smooth)
    if "method" not in options:
        raise ValueError(f"smooth needs a 'method', got {smooth!r}")
    return options


def _models_per_fold(store, folds, model_options, smooth, scheduler, progress):
    options = dict(model_options or {})
    options.setdefault("selection", "all")
    if smooth is not None:
        options["smoothing"] = smooth
    models = []
    for k in range(int(folds.max()) + 1):
        train = store.obs_id.values[folds != k]
        log.info("fold %d: building a model on %d runs", k, train.size)
        models.append(make_model(store, obs_ids=train, scheduler=scheduler, progress=progress,
                                 **options))
    return models


def _thresholds(store, safe_threshold):
    n = store.sizes["obs_id"]
    if safe_threshold == "none":
        return np.full(n, np.nan), np.full(n, np.nan), "none"
    if safe_threshold != "safe":  # a number >= 0, checked by EvaluationOptions
        value = float(safe_threshold)
        return np.full(n, value), np.full(n, np.nan), f"fixed {value:g} TeV"

    lo, rule = run_energy_thresholds(store, "safe")
    hi = np.full(n, np.nan)
    if "SAFE_ENERGY_HI" in store:
        unit = str(store["SAFE_ENERGY_HI"].attrs.get("units", "") or "TeV")
        import astropy.units as u

        hi = (np.asarray(store["SAFE_ENERGY_HI"].values, float) * u.Unit(unit)).to_value("TeV")
        hi = np.where(hi > 0, hi, np.nan)
    return lo, hi, f"{rule}; upper: SAFE_ENERGY_HI"


@takes_store("data")
def validate(data, *, obs_ids=None, selection: str = "off", folds: FoldOptions | None = None,
             model_options: dict | None = None, smooth=None, per_run: str | None = None,
             reference=None, evaluation: EvaluationOptions | None = None, scheduler=None,
             progress: bool = False, on_error: str = "skip", **shortcuts) -> xr.Dataset:
    """Cross-validate background models on runs: predicted against observed counts per bin.

    Parameters
    ----------
    data : str, Path or Dataset
        Store directory or observation Dataset (:func:`xbkg.open_datastore`).
    obs_ids, selection
        The runs (see :func:`xbkg.store.selection.select_runs`; default: the off runs).
    folds : xbkg.checks.options.FoldOptions, optional
        The k-fold split (``n_folds``, ``seed``; :func:`assign_folds`; default 5 folds, seed 0);
        each fold's runs are predicted by a model built on the other folds' runs.
    model_options : dict or xbkg.building.options.BuildOptions, optional
        Options of the fold models: keyword arguments of :func:`xbkg.make_model` (option
        objects such as ``binning=BinningOptions(kind="2d")``, or shortcuts such as
        ``kind``, ``zenith_edges``, ``energy_threshold``; ``selection`` defaults to ``"all"``
        since the runs are already selected), or all of them as one ``BuildOptions``.
    smooth : str, dict or SmoothingOptions, optional
        Smooth each fold model (:func:`xbkg.model.smoothing.smooth_model`): a method name
        (``"gauss"``, ``"fit"``), a dict of its arguments with ``method``, or the options
        object; it replaces the smoothing of ``model_options``.
    per_run : {"log", "linear", "nearest"}, optional
        Predict each held-out run with its own model interpolated between the fold model's
        groups in cos(zenith) (:func:`xbkg.model.group_interpolation.models_for_observations`);
        default: the group containing the run's zenith. Ignored for conditional models
        (``model_options`` with ``conditions``): each held-out run gets
        :func:`xbkg.building.conditional.model_for_run`, and the result has ``level_error`` and
        ``pull`` per run.
    reference : None, "store", Dataset or path, optional
        Instead of k-fold builds, score fixed models: ``"store"`` (alias ``"dr1"``) the per-run
        models of the store's HDU index (:func:`store_run_models`), a model Dataset or file one
        model for every run. Folds are still assigned (for the table) but nothing is built.
    evaluation : xbkg.checks.options.EvaluationOptions, optional
        Where and how runs are predicted (defaults as the DR1 reference figures), with fields:

        ``energy_edges``, ``width``, ``binsz``, ``offset_max``
            Evaluation binning (TeV; deg; default ``"0.3:50:12"``, 4, 0.4, 2); see the module
            docstring.
        ``safe_threshold`` : {"safe", "none"} or float
            Per-run energy range: ``"safe"`` (default) SAFE_ENERGY_LO/HI of the obs table (the
            zenith rule of :mod:`xbkg.building.thresholds` for runs without one), ``"none"``,
            or one threshold (TeV).
        ``energy_integration`` : {"edges", "exact"}
            How predictions integrate the rate over energy bins (:mod:`xbkg.model.predict`):
            "edges" (gammapy's method, default) or "exact". They differ where the spectrum
            bends within an evaluation bin; on simulated stores, 6 bins over 0.3-50 TeV give a
            tilt of +0.08 with "edges" against +0.05 with "exact", the default 12 bins +0.01
            with both.
        ``reverse_lon`` : bool
            For ``reference="store"``: mirror DETX of 3D RADEC per-run models (gammapy's DR1
            quirk; default True).
    scheduler, progress
        For the model builds and the per-run evaluation (:func:`xbkg.building.parallel.compute`).
    on_error : {"skip", "raise"}
        A run whose events cannot be read: left out (listed in ``attrs["skipped_runs"]``) or
        raise :class:`xbkg.store.events.RunDataError`.
    **shortcuts
        The fields of ``folds`` and ``evaluation`` as keywords (``n_folds=3``, ``seed=1``,
        ``width=2.0``, ``safe_threshold="none"``, ...), each building the object it belongs to
        (:func:`xbkg.checks.options.validate_options`): ``validate(store, n_folds=3, width=2.0)``
        is ``validate(store, folds=FoldOptions(n_folds=3),
        evaluation=EvaluationOptions(width=2.0))``; given with its object, a shortcut replaces
        that field (as :func:`xbkg.make_model`'s do). An unknown keyword raises TypeError.

    Returns
    -------
    Dataset
        ``counts``, ``npred`` (float) and ``mask`` on ``(obs_id, energy, dety, detx)`` (the
        evaluation grid of every run: DETX/DETY in its RADEC-aligned FoV frame), per-run
        variables from :func:`run_statistics` plus ``fold``, ``zenith``, ``ontime``,
        ``e_threshold``; attrs describe the models and the evaluation. See :func:`summarise`
        and :func:`residual_maps`.
    """
    import dask

    split, ev = validate_options(folds, evaluation, **shortcuts)
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    store = data if isinstance(data, xr.Dataset) else open_datastore(data)
    selected, _ = select_runs(store, selection, obs_ids=obs_ids)
    store = fill_from_headers(store.sel(obs_id=selected), on_error="raise")
    energy_edges = ev.edges()
    folds = assign_folds(store.obs_id.values, split.n_folds, split.seed)
    e_lo, e_hi, threshold_rule = _thresholds(store, ev.safe_threshold)
    infos = run_infos(store)
    model_options = dict(model_options.arguments() if isinstance(model_options, BuildOptions)
                         else model_options or {})
    smoothing = model_options.pop("smoothing", None)
    smooth = _smoothing(smoothing if smooth is None else smooth)
    description = _describe_models(reference, model_options, smooth, split.n_folds,
                                   ev.reverse_lon)
    if reference is None:
        description["per_run"] = per_run
    if reference is None:
        fold_models = _models_per_fold(store, folds, model_options, smooth, scheduler, progress)
        models = [fold_models[k] for k in folds]
        if "cond_coef" in fold_models[0]:  # conditional models: every run gets its own

            models = _held_out_run_models(store, folds, fold_models, models, functools.partial(
                models_for_runs, warn=False))
        elif per_run is not None:
            models = _held_out_run_models(store, folds, fold_models, models, functools.partial(
                models_for_observations, method=per_run))
    elif isinstance(reference, str) and reference.lower() in ("store", "dr1"):
        per_run = store_run_models(store, reverse_lon=ev.reverse_lon)
        models = [per_run[int(o)] for o in store.obs_id.values]
    else:
        fixed = reference if isinstance(reference, xr.Dataset) else open_model(reference)
        models = [fixed] * len(infos)
    grid = (energy_edges, float(ev.width), float(ev.binsz), float(ev.offset_max),
            ev.energy_integration)
    tasks = [dask.delayed(_run_task, pure=False)(m, store, info, grid, (lo, hi))
             for m, info, lo, hi in zip(models, infos, e_lo, e_hi)]
    results = compute(*tasks, scheduler=scheduler, progress=progress)
    skipped = {i.obs_id: err for i, (_, err) in zip(infos, results) if err is not None}
    if skipped and on_error == "raise":
        raise RunDataError(next(iter(skipped.values())))
    if skipped:
        log.warning("skipped %d run(s) that could not be read:\n  %s", len(skipped),
                    "\n  ".join(skipped.values()))
    keep = np.array([r is not None for r, _ in results])
    if not keep.any():
        raise RunDataError("no run could be evaluated; first error: "
                           + next(iter(skipped.values())))
    attrs = {"models": description, "n_folds": int(split.n_folds), "seed": int(split.seed),
             "width": float(ev.width), "binsz": float(ev.binsz),
             "offset_max": float(ev.offset_max), "safe_threshold": threshold_rule,
             "energy_integration": ev.energy_integration,
             "skipped_runs": {str(k): v for k, v in skipped.items()}}
    out = _result_dataset(store.isel(obs_id=keep), [r for r, _ in results if r is not None],
                          folds[keep], e_lo[keep], energy_edges, attrs)
    level_error = np.array([_predicted_level_error(m) for m in models])[keep]
    if np.isfinite(level_error).any():
        out["level_error"] = ("obs_id", level_error,
                              {"long_name": "relative uncertainty of the level the model states"})
        out["pull"] = ("obs_id", (out["norm"].values - 1) / np.hypot(
            level_error, out["norm_error"].values), {"long_name": "(norm - 1) / uncertainty"})
    return out


def _held_out_run_models(store, folds, fold_models, models, run_models) -> list:
    """``models`` with each run's entry replaced by its own model, made by
    ``run_models(fold_model, held_out_runs)`` (an iterable of ``(obs_id, model)``) from the model
    of the fold that held the run out."""
    models = list(models)
    for k, model in enumerate(fold_models):
        held_out = np.flatnonzero(folds == k)
        for i, (_, run_model) in zip(held_out, run_models(model, store.isel(obs_id=held_out))):
            models[i] = run_model
    return models


def _predicted_level_error(model) -> float:
    """Relative uncertainty a per-run model states for its level (NaN when it states none):
    its systematic scatter and the statistical error of its level, in quadrature."""
    import json

    info = json.loads(model.attrs.get("per_run", "{}") or "{}")
    if "sys_scatter" not in info:
        return float("nan")
    return float(np.hypot(info["sys_scatter"], info.get("stat_error", 0.0)))


def _describe_models(reference, model_options, smooth, n_folds, reverse_lon) -> dict:
    if reference is None:
        opts = record_keywords(model_options or {})
        return {"kind": "k-fold", "n_folds": int(n_folds), "model_options": opts,
                "smooth": smooth}
    if isinstance(reference, str) and reference.lower() in ("store", "dr1"):
        return {"kind": "store per-run models", "reverse_lon": bool(reverse_lon)}
    if isinstance(reference, xr.Dataset):
        return {"kind": "fixed model", "model": reference.attrs.get("provenance", "")}
    return {"kind": "fixed model", "model": str(reference)}


#: Names in the result Dataset of run_statistics keys that would clash with the cubes.
_RUN_VARIABLES = {"counts": "run_counts", "predicted": "run_predicted"}


def _result_dataset(store, results, folds, e_lo, energy_edges, attrs) -> xr.Dataset:
    import json

    counts = np.stack([r[0] for r in results])
    npred = np.stack([r[1] for r in results])
    mask = np.stack([r[2] for r in results])
    detx, dety = results[0][3], results[0][4]
    energy = np.sqrt(energy_edges[1:] * energy_edges[:-1])
    stats = [run_statistics(c, p, m, energy) for c, p, m in zip(counts, npred, mask)]
    dims = ("obs_id", "energy", "dety", "detx")
    ds = xr.Dataset(
        {"counts": (dims, counts, {"long_name": "observed counts"}),
         "npred": (dims, npred, {"long_name": "predicted background counts"}),
         "mask": (dims, mask, {"long_name": "bin evaluated (safe energy range, offset cut)"}),
         "fold": ("obs_id", folds),
         "zenith": ("obs_id", store["zenith"].values.astype(float), {"units": "deg"}),
         "ontime": ("obs_id", store["ontime"].values.astype(float), {"units": "s"}),
         "e_threshold": ("obs_id", np.asarray(e_lo, float), {"units": "TeV"})},
        coords={"obs_id": store.obs_id.values.astype("int64"),
                **axis_coords("energy", energy_edges), **axis_coords("detx", detx),
                **axis_coords("dety", dety)},
    )
    for key in stats[0]:
        name = _RUN_VARIABLES.get(key, key)
        ds[name] = ("obs_id", np.array([s[key] for s in stats]))
    ds["counts"].attrs["units"] = ds["npred"].attrs["units"] = ""
    ds.attrs.update({k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict) else v
                     for k, v in attrs.items()})
    return ds


def residual_maps(result: xr.Dataset) -> xr.Dataset:
    """Selected counts and predictions summed over runs, and their residuals.

    Returns
    -------
    Dataset with ``counts``, ``npred``, ``residual`` (``counts / npred - 1``),
    ``shape_residual`` (the same after scaling the prediction to the total counts: the error
    of the FoV shape alone) and ``significance`` on ``(dety, detx)`` (summed over energy too)
    and, per energy bin, ``counts_energy``, ``npred_energy``, ``residual_energy`` (dim
    ``energy``).
    """
    m = result["mask"]
    counts = result["counts"].where(m, 0).sum("obs_id")
    npred = result["npred"].where(m, 0).sum("obs_id")
    cmap, pmap = counts.sum("energy"), npred.sum("energy")
    ce, pe = counts.sum(("dety", "detx")), npred.sum(("dety", "detx"))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = xr.Dataset({
            "counts": cmap, "npred": pmap,
            "residual": (cmap / pmap - 1).where(pmap > 0),
            "shape_residual": (cmap / (pmap * float(cmap.sum() / pmap.sum())) - 1).where(pmap > 0),
            "significance": (("dety", "detx"), poisson_significance(cmap.values, pmap.values)),
            "counts_energy": ce, "npred_energy": pe,
            "residual_energy": (ce / pe - 1).where(pe > 0),
        })
    return out.assign_coords({k: v for k, v in result.coords.items() if k != "obs_id"})


def summarise(result: xr.Dataset) -> dict:
    """Summary of a :func:`validate` result (plain numbers, for JSON).

    ``norm_mean``/``norm_std``: mean and standard deviation (ddof=1) of the per-run
    normalisations; ``norm_total``: all counts over all predictions; ``tilt_mean/std`` likewise;
    ``sig_mean``/``sig_width``: mean and standard deviation of the per-bin significances of all
    runs, ``null_mean``/``null_width`` what they would be for an exact model (module docstring);
    ``residual_map_rms``: rms of the stacked residual map's significances; ``pull_mean``/
    ``pull_width``: of ``(norm - 1) / sqrt(level_error**2 + norm_error**2)`` over runs, for
    models that state the uncertainty of a run's level (conditional models), else NaN.
    """
    import json

    norm = result["norm"].values
    tilt = result["tilt"].values
    sel = result["mask"].values & (result["npred"].values > 0)
    n, mu = result["counts"].values[sel], result["npred"].values[sel]
    sig = poisson_significance(n, mu)
    m1, m2 = significance_moments(mu)
    null_mean = float(m1.mean()) if m1.size else np.nan
    null_width = float(np.sqrt(max(m2.mean() - null_mean ** 2, 0.0))) if m1.size else np.nan
    maps = residual_maps(result)
    map_sig = maps["significance"].values
    map_sig = map_sig[np.isfinite(map_sig)]

    def stat(func, x):
        x = x[np.isfinite(x)]
        return float(func(x)) if x.size > (1 if func is _std else 0) else float("nan")

    out = {
        "n_runs": int(result.sizes["obs_id"]),
        "n_bins": int(sel.sum()),
        "n_bins_unpredicted": int(result["n_bins_unpredicted"].sum()),
        "counts": float(n.sum()),
        "predicted": float(mu.sum()),
        "norm_total": float(n.sum() / mu.sum()) if mu.sum() > 0 else float("nan"),
        "norm_mean": stat(np.mean, norm),
        "norm_std": stat(_std, norm),
        "norm_median": stat(np.median, norm),
        "tilt_mean": stat(np.mean, tilt),
        "tilt_std": stat(_std, tilt),
        "sig_mean": float(sig.mean()) if sig.size else float("nan"),
        "sig_width": float(sig.std()) if sig.size else float("nan"),
        "null_mean": null_mean,
        "null_width": null_width,
        "deviance_per_bin": float((sig ** 2).mean()) if sig.size else float("nan"),
        "residual_map_rms": float(np.sqrt(np.mean(map_sig ** 2))) if map_sig.size else float("nan"),
        "pull_mean": stat(np.mean, result["pull"].values) if "pull" in result else float("nan"),
        "pull_width": stat(_std, result["pull"].values) if "pull" in result else float("nan"),
        "evaluation": {"energy_edges_tev": edges_of(result, "energy").tolist(),
                       "width_deg": float(result.attrs["width"]),
                       "binsz_deg": float(result.attrs["binsz"]),
                       "offset_max_deg": float(result.attrs["offset_max"]),
                       "safe_threshold": result.attrs["safe_threshold"],
                       "energy_integration": result.attrs["energy_integration"]},
        "models": json.loads(result.attrs["models"]),
        "n_folds": int(result.attrs["n_folds"]),
        "seed": int(result.attrs["seed"]),
        "skipped_runs": json.loads(result.attrs.get("skipped_runs", "{}")),
    }
    return out


def _std(x):
    return np.std(x, ddof=1)
