"""Plots and text of a conditional model (:mod:`xbkg.building.conditional`): the runs' partial
residuals against each condition term, their figure and a summary of the coefficients."""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.building.conditional import _info

__all__ = ["partial_residuals", "plot_conditions", "describe"]


def partial_residuals(model: xr.Dataset) -> dict:
    """Per term: the runs' raw values, their partial residuals and the fitted effect.

    The effect of term ``k`` on a run is its counts-weighted mean over energies of
    ``beta[e, k] * x_k`` (standardised); the partial residual is that effect plus the run's
    in-sample ``ln(counts / fitted)``. Returns ``{term: (values, residuals, effect)}``.
    """
    w = model["obs_fit_counts"].sum(("obs_id", "fit_bin")).values.astype(float)
    w = w / w.sum()
    slope = w @ model["cond_coef"].values  # (K,) per standardised unit
    raw = model["obs_cond_terms"].values
    x = (raw - model["cond_center"].values) / model["cond_scale"].values
    resid = np.log(model["obs_cond_norm"].values)
    return {str(t): (raw[:, k], resid + slope[k] * x[:, k], slope[k] * x[:, k])
            for k, t in enumerate(model["cond_term"].values)}


def plot_conditions(model: xr.Dataset, *, figsize=None):
    """Figure: for each term, the runs' partial residuals (points) and the fitted effect (line)
    against the term's value (matplotlib, imported here). Returns the figure."""
    import matplotlib.pyplot as plt

    parts = partial_residuals(model)
    n = len(parts)
    fig, axes = plt.subplots(1, n, figsize=figsize or (3.2 * n, 3.0), squeeze=False)
    for ax, (term, (value, resid, effect)) in zip(axes[0], parts.items()):
        order = np.argsort(value)
        ax.plot(value, resid, "o", ms=3, alpha=0.7, label="runs")
        ax.plot(value[order], effect[order], "-", color="C3", label="fit")
        ax.set_xlabel(term)
        ax.set_ylabel("ln rate effect")
    axes[0][0].legend(fontsize="small")
    fig.suptitle(f"conditional terms (per-run level scatter "
                 f"{_info(model)['sys_scatter']:.3f}, cross-validated)", fontsize="medium")
    fig.tight_layout()
    return fig


def describe(model: xr.Dataset) -> str:
    """Text summary of the conditional terms: coefficients (per decade of energy), scatter."""
    info = _info(model)
    energy = model["energy"].values
    lines = [f"conditional model: conditions {', '.join(info['conditions'])}; "
             f"smoothness {info['smoothness']:g} (cross-validated); "
             f"per-run level scatter {info['sys_scatter']:.3f} (cross-validated), "
             f"{info['sys_scatter_insample']:.3f} (in-sample)"]
    exposed = model["obs_fit_counts"].sum(("obs_id", "fit_bin")).values > 0
    for k, term in enumerate(model["cond_term"].values):
        coef = model["cond_coef"].values[:, k] / model["cond_scale"].values[k]
        err = model["cond_coef_error"].values[:, k] / model["cond_scale"].values[k]
        shown = [f"{e:.2g} TeV: {c:+.3f}+-{s:.3f}" for e, c, s, x in
                 zip(energy, coef, err, exposed) if x][::max(1, int(exposed.sum()) // 4)]
        lines.append(f"  d ln rate / d {term} (range {float(model['cond_min'][k]):.4g}.."
                     f"{float(model['cond_max'][k]):.4g}): " + "; ".join(shown))
    return "\n".join(lines)
