"""Plots of cross-validation results (:mod:`xbkg.checks.crossval`) and model comparisons
(:mod:`xbkg.checks.compare`); matplotlib is imported inside the functions that draw.

As in :mod:`xbkg.plots.model`, every function takes an optional ``ax`` (one panel) or ``fig``
(several panels), draws into a new figure when none is given and returns what it drew into.
FoV maps put DETX (fov_lon, gammapy sign) on x and DETY (fov_lat) on y.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.checks.crossval import poisson_significance, residual_maps, summarise
from xbkg.core.binning import edges_of
from xbkg.plots.model import ENERGY_LABEL, OFFSET_LABEL, RATE_LABEL, _new_axes, _new_figure

__all__ = ["plot_norm", "plot_tilt", "plot_significance", "plot_residual_map",
           "plot_energy_residuals", "plot_ratio_maps", "plot_energy_profiles",
           "plot_offset_profiles"]

_RADEC_LABELS = ("DETX = fov_lon (deg, RADEC; + toward lower RA)",
                 "DETY = fov_lat (deg; + toward higher Dec)")


# ---------------------------------------------------------------------------------------------
# validation


def _per_fold(result: xr.Dataset, ax, y: str, err: str):
    folds = result["fold"].values
    for k in np.unique(folds):
        sel = folds == k
        ax.errorbar(result["zenith"].values[sel], result[y].values[sel],
                    yerr=result[err].values[sel], fmt="o", ms=4, capsize=2, label=f"fold {k}")
    ax.set_xlabel("zenith (deg)")
    if np.unique(folds).size <= 10:
        ax.legend(fontsize="small", ncols=2)


def plot_norm(result: xr.Dataset, ax=None):
    """Per-run normalisation (counts / predicted, Poisson errors) against zenith, by fold."""

    ax = _new_axes(ax)
    _per_fold(result, ax, "norm", "norm_error")
    s = summarise(result)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(s["norm_mean"], color="C3", ls="--", lw=0.8)
    ax.set_ylabel("counts / predicted")
    ax.set_title(f"normalisation {s['norm_mean']:.3f} ± {s['norm_std']:.3f} (std over "
                 f"{s['n_runs']} runs)", fontsize="medium")
    return ax


def plot_tilt(result: xr.Dataset, ax=None):
    """Per-run spectral tilt (counts / predicted ~ (E / 1 TeV)**tilt) against zenith, by fold."""

    ax = _new_axes(ax)
    _per_fold(result, ax, "tilt", "tilt_error")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_ylabel("spectral tilt")
    s = summarise(result)
    ax.set_title(f"tilt {s['tilt_mean']:+.3f} ± {s['tilt_std']:.3f} (std over runs)",
                 fontsize="medium")
    return ax


def plot_significance(result: xr.Dataset, ax=None, *, bins=None):
    """Histogram of the per-bin significances with N(0, 1) and a Gaussian of their mean and
    width; the text gives the mean and width expected for an exact model (``null``)."""

    ax = _new_axes(ax)
    sel = result["mask"].values & (result["npred"].values > 0)
    sig = poisson_significance(result["counts"].values[sel], result["npred"].values[sel])
    s = summarise(result)
    bins = np.linspace(-6, 6, 49) if bins is None else bins
    ax.hist(np.clip(sig, bins[0], bins[-1]), bins=bins, density=True, histtype="stepfilled",
            alpha=0.5, label=f"{sig.size} bins")
    x = np.linspace(bins[0], bins[-1], 400)
    ax.plot(x, np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi), "k-", lw=1, label="N(0, 1)")
    mean, width = s["sig_mean"], s["sig_width"]
    if np.isfinite(width) and width > 0:
        ax.plot(x, np.exp(-0.5 * ((x - mean) / width) ** 2) / (width * np.sqrt(2 * np.pi)),
                "C3--", lw=1, label=f"mean {mean:+.2f}, width {width:.2f}")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel("per-bin significance")
    ax.set_ylabel("density")
    ax.set_title(f"exact model would give {s['null_mean']:+.2f} / {s['null_width']:.2f}",
                 fontsize="medium")
    ax.legend(fontsize="small")
    return ax


def _circle(ax, radius: float):
    phi = np.linspace(0, 2 * np.pi, 200)
    ax.plot(radius * np.cos(phi), radius * np.sin(phi), "k:", lw=0.8)


def plot_residual_map(result: xr.Dataset, fig=None):
    """Residual maps stacked over runs: ``counts / predicted - 1``, the same after scaling the
    prediction to the total counts (shape only), and the significance."""
    from matplotlib.colors import TwoSlopeNorm


    maps = residual_maps(result)
    fig = _new_figure(fig, (15.0, 4.2))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    x, y = edges_of(result, "detx"), edges_of(result, "dety")
    for ax, name, label in ((axes[0], "residual", "counts / predicted - 1"),
                            (axes[1], "shape_residual", "after normalisation"),
                            (axes[2], "significance", "significance")):
        values = np.ma.masked_invalid(maps[name].transpose("dety", "detx").values)
        limit = float(np.abs(values).max()) if values.count() else 1.0
        limit = limit if limit > 0 else 1.0
        mesh = ax.pcolormesh(x, y, values, cmap="RdBu_r", shading="flat",
                             norm=TwoSlopeNorm(0.0, -limit, limit))
        fig.colorbar(mesh, ax=ax, label=label)
        _circle(ax, float(result.attrs.get("offset_max", np.nan)))
        ax.set_aspect("equal")
        ax.set_xlabel(_RADEC_LABELS[0], fontsize="small")
    axes[0].set_ylabel(_RADEC_LABELS[1], fontsize="small")
    fig.suptitle(f"residuals stacked over {result.sizes['obs_id']} runs", fontsize="medium")
    return fig


def plot_energy_residuals(result: xr.Dataset, ax=None):
    """Counts / predicted per energy bin, stacked over runs and pixels (Poisson errors)."""

    maps = residual_maps(result)
    ax = _new_axes(ax)
    n, mu = maps["counts_energy"].values, maps["npred_energy"].values
    ok = mu > 0
    energy = result["energy"].values
    edges = edges_of(result, "energy")
    xerr = np.array([energy - edges[:-1], edges[1:] - energy])
    ax.errorbar(energy[ok], n[ok] / mu[ok], yerr=np.sqrt(np.maximum(n[ok], 1)) / mu[ok],
                xerr=xerr[:, ok], fmt="o", ms=4)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(ENERGY_LABEL)
    ax.set_ylabel("counts / predicted (stacked)")
    return ax


# ---------------------------------------------------------------------------------------------
# comparison


def _labels(comparison):
    return comparison.attrs.get("label_a", "A"), comparison.attrs.get("label_b", "B")


def _group_title(comparison, g: int) -> str:
    lo, hi = comparison["zenith_bounds"].isel(zenith_group=g).values
    return f"group {int(comparison['zenith_group'][g])}: zenith {lo:g}-{hi:g} deg"


def _ratio_norm(values, floor: float = 1.1):
    from matplotlib.colors import LogNorm

    good = np.asarray(values)[np.isfinite(values) & (np.asarray(values) > 0)]
    spread = float(np.exp(np.abs(np.log(good)).max())) if good.size else floor
    spread = min(max(spread, floor), 100.0)
    return LogNorm(1 / spread, spread)


def plot_ratio_maps(comparison: xr.Dataset, group: int = 0, *, fig=None, energies=None,
                    ncols: int = 4, max_panels: int = 12):
    """Ratio B / A of one group of A (index ``group`` along ``zenith_group``).

    3D: one FoV map per energy bin (or per bin containing each of ``energies``, TeV; default:
    the bins with compared values, at most ``max_panels`` of them evenly spread); 2D: one
    energy x offset image. Log colour scale centred on 1, shared by the panels.
    """
    a_label, b_label = _labels(comparison)
    ratio = comparison["ratio"].isel(zenith_group=int(group))
    norm = _ratio_norm(ratio.values)
    title = f"{b_label} / {a_label}, {_group_title(comparison, int(group))}"
    if comparison.attrs["kind"] == "2d":
        fig = _new_figure(fig, (6.0, 4.2))
        ax = fig.subplots()
        mesh = ax.pcolormesh(edges_of(comparison, "energy"), edges_of(comparison, "offset"),
                             np.ma.masked_invalid(ratio.transpose("offset", "energy").values),
                             cmap="RdBu_r", norm=norm, shading="flat")
        ax.set_xscale("log")
        ax.set_xlabel(ENERGY_LABEL)
        ax.set_ylabel(OFFSET_LABEL)
        fig.colorbar(mesh, ax=ax, label="ratio")
        fig.suptitle(title, fontsize="medium")
        return fig
    e_edges = edges_of(comparison, "energy")
    if energies is None:
        bins = np.flatnonzero(np.isfinite(ratio.values).any(axis=(1, 2)))
        if bins.size > max_panels:
            bins = bins[np.round(np.linspace(0, bins.size - 1, max_panels)).astype(int)]
        bins = bins.tolist() or [0]
    else:
        bins = [int(np.clip(np.searchsorted(e_edges, e, side="right") - 1, 0, e_edges.size - 2))
                for e in np.atleast_1d(energies)]
    ncols = max(1, min(int(ncols), len(bins)))
    nrows = -(-len(bins) // ncols)
    fig = _new_figure(fig, (2.6 * ncols + 1.2, 2.4 * nrows + 0.7))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    x, y = edges_of(comparison, "detx"), edges_of(comparison, "dety")
    mesh = None
    for k, ax in enumerate(axes.flat):
        if k >= len(bins):
            ax.remove()
            continue
        values = ratio.isel(energy=bins[k]).transpose("dety", "detx").values
        mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(values), cmap="RdBu_r", norm=norm,
                             shading="flat")
        ax.set_title(f"{e_edges[bins[k]]:.3g}-{e_edges[bins[k] + 1]:.3g} TeV", fontsize="small")
        ax.set_aspect("equal")
    fig.colorbar(mesh, ax=axes, label="ratio", shrink=0.8)
    fig.supxlabel(f"DETX = fov_lon (deg, {comparison.attrs['fov_alignment']})", fontsize="medium")
    fig.supylabel("DETY = fov_lat (deg)", fontsize="medium")
    fig.suptitle(title, fontsize="medium")
    return fig


def _profiles(comparison, fig, var: str, x, xlabel: str, ylabel: str, xlog: bool):
    a_label, b_label = _labels(comparison)
    n = comparison.sizes["zenith_group"]
    fig = _new_figure(fig, (3.6 * n + 0.6, 5.2))
    axes = fig.subplots(2, n, squeeze=False, sharex=True, height_ratios=[2, 1])
    for g in range(n):
        top, bottom = axes[0, g], axes[1, g]
        a = comparison[f"{var}_a"].isel(zenith_group=g).values
        b = comparison[f"{var}_b"].isel(zenith_group=g).values
        top.plot(x, np.ma.masked_where(~(a > 0), a), "o-", ms=3, label=a_label)
        top.plot(x, np.ma.masked_where(~(b > 0), b), "s--", ms=3, label=b_label)
        top.set_yscale("log")
        top.set_title(_group_title(comparison, g), fontsize="small")
        with np.errstate(divide="ignore", invalid="ignore"):
            bottom.plot(x, np.where((a > 0) & (b > 0), b / a, np.nan), "k.-")
        bottom.axhline(1.0, color="k", lw=0.6)
        bottom.set_xlabel(xlabel)
        if xlog:
            bottom.set_xscale("log")
    axes[0, 0].set_ylabel(ylabel)
    axes[1, 0].set_ylabel(f"{b_label} / {a_label}")
    axes[0, 0].legend(fontsize="small")
    return fig


def plot_energy_profiles(comparison: xr.Dataset, *, fig=None):
    """FoV-mean rate against energy of both models (top) and their ratio (bottom), per group."""
    return _profiles(comparison, fig, "energy_profile", comparison["energy"].values, ENERGY_LABEL,
                     "FoV-mean " + RATE_LABEL, xlog=True)


def plot_offset_profiles(comparison: xr.Dataset, *, fig=None):
    """Energy-integrated rate against offset of both models and their ratio, per group."""
    return _profiles(comparison, fig, "offset_profile", comparison["ring"].values, OFFSET_LABEL,
                     "rate (s⁻¹ sr⁻¹)", xlog=False)
