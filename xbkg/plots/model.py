"""Plots of background models (matplotlib, imported inside the functions that draw).

Every function takes an optional ``ax`` or ``fig``, draws into a new figure when none is given,
and returns what it drew into; none calls ``plt.show()``. Bins without data are drawn as a grey
hatched "no data" background, never as a rate. Conventions of the figures: docs/plots.rst.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.core.schema import validate_model
from xbkg.model.profiles import (
    _exposed,
    _exposed_slices,
    _fov_sum,
    check_group,
    counts_peak_energy,
    energy_distribution,
    energy_threshold,  # noqa: F401  (deprecated name of counts_peak_energy, still importable here)
    fov_mean_rate,
    group_index,
    group_zenith,
    rate_at_offsets,
    solid_angle,
)
from xbkg.sky.exposure import energy_widths_mev
from xbkg.store.datastore import takes_store

__all__ = [
    "peek",
    "plot_rate_energy_offset",
    "plot_fov_maps",
    "plot_rate_vs_energy",
    "plot_zenith_dependence",
    "plot_counts",
]

RATE_LABEL = "background rate (s⁻¹ MeV⁻¹ sr⁻¹)"
ENERGY_LABEL = "energy (TeV)"
OFFSET_LABEL = "offset (deg)"
_TOWARD = {"RADEC": ("lower RA", "higher Dec"), "ALTAZ": ("lower azimuth", "higher altitude")}


# ---------------------------------------------------------------------------------------------
# numpy helpers (no matplotlib)


def _group_label(model: xr.Dataset, group: int) -> str:
    lo, hi = model["zenith_bounds"].sel(zenith_group=group).values
    return f"group {group}: zenith {lo:g}-{hi:g} deg"


def _masked_positive(values):
    values = np.asarray(values, dtype=float)
    return np.ma.masked_where(~(np.isfinite(values) & (values > 0)), values)


def _log_norm(values):
    """LogNorm over the positive finite values, or None when there are none."""
    from matplotlib.colors import LogNorm

    good = np.asarray(values, dtype=float)
    good = good[np.isfinite(good) & (good > 0)]
    if good.size == 0:
        return None
    return LogNorm(vmin=good.min(), vmax=max(good.max(), good.min() * 1.0001))


def _hatch_no_data(ax, x_edges, y_edges):
    """A grey hatched rectangle behind the whole mesh: bins left blank (NaN) show it."""
    from matplotlib.patches import Rectangle

    x0, x1 = float(x_edges[0]), float(x_edges[-1])
    y0, y1 = float(y_edges[0]), float(y_edges[-1])
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="0.92", edgecolor="0.65",
                           hatch="///", lw=0.0, zorder=0, label="no data"))


def _new_axes(ax, figsize=(5.5, 4.0)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained").add_subplot()


def _new_figure(fig, figsize):
    """A new figure (constrained layout), or ``fig`` cleared."""
    if fig is None:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    fig.clear()
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    return fig


def _fov_labels(model: xr.Dataset) -> tuple[str, str]:
    lon_dir, lat_dir = _TOWARD[model.attrs["fov_alignment"]]
    align = model.attrs["fov_alignment"]
    return (f"DETX = fov_lon (deg, {align}; + toward {lon_dir})",
            f"DETY = fov_lat (deg; + toward {lat_dir})")


# ---------------------------------------------------------------------------------------------
# single panels


def plot_rate_energy_offset(model: xr.Dataset, group=0, ax=None, *, n_offset: int | None = None):
    """Rate over energy x offset (log colour scale, log energy axis), the seed notebook's view.

    A 2D model is drawn bin by bin (bins without exposure hatched). A 3D model is shown by its
    azimuth-averaged rate on
    ``n_offset`` offset rings from 0 to ``offset_max`` (default: half the number of DETX bins),
    each ring evaluated at its centre (see the module docstring).

    Parameters
    ----------
    model : xarray.Dataset
        A model in the :mod:`xbkg.core.schema` layout.
    group : int
        Zenith group ID.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure when None.
    n_offset : int, optional
        Offset rings for 3D models.

    Returns
    -------
    matplotlib.axes.Axes
    """
    gid = check_group(model, group)
    ax = _new_axes(ax)
    e_edges = edges_of(model, "energy")
    if model.attrs["kind"] == "2d":
        o_edges = edges_of(model, "offset")
        rate = model["rate"].sel(zenith_group=gid).transpose("energy", "offset").values
        keep = (solid_angle(model)[None, :] > 0) & _exposed(model, gid)
        rate = np.where(keep, rate, np.nan)
    else:
        n = int(n_offset or max(model.sizes["detx"] // 2, 1))
        o_edges = np.linspace(0.0, float(model.attrs["offset_max"]), n + 1)
        rate = rate_at_offsets(model, gid, model["energy"].values,
                                0.5 * (o_edges[1:] + o_edges[:-1]))
        rate[~_exposed_slices(model)[group_index(model, gid)]] = np.nan
    norm = _log_norm(rate)
    if not np.isfinite(rate).all():
        _hatch_no_data(ax, e_edges, o_edges)
    mesh = ax.pcolormesh(e_edges, o_edges, _masked_positive(rate).T, norm=norm, shading="flat")
    ax.set_xscale("log")
    ax.set_xlabel(ENERGY_LABEL)
    ax.set_ylabel(OFFSET_LABEL)
    ax.set_title(_group_label(model, gid), fontsize="medium")
    if norm is not None:
        ax.figure.colorbar(mesh, ax=ax, label=RATE_LABEL)
    return ax


def plot_rate_vs_energy(model: xr.Dataset, offset: float = 0.5, ax=None, *, groups=None):
    """Rate at one offset versus energy, one line per zenith group (log-log).

    Energy bins without exposure (below every run's threshold) are not drawn.

    Parameters
    ----------
    model : xarray.Dataset
    offset : float
        FoV offset (deg). 3D models are averaged over the circle of this offset.
    ax : matplotlib.axes.Axes, optional
    groups : sequence of int, optional
        Zenith group IDs to draw (default: all).

    Returns
    -------
    matplotlib.axes.Axes
    """
    validate_model(model)
    ids = model["zenith_group"].values if groups is None else \
        [check_group(model, g) for g in groups]
    offset = float(offset)
    if not 0 <= offset <= float(model.attrs["offset_max"]):
        raise ValueError(f"offset must be within 0..offset_max = {model.attrs['offset_max']} deg, "
                         f"got {offset}")
    ax = _new_axes(ax)
    energy = np.asarray(model["energy"].values, dtype=float)
    exposed = _exposed_slices(model)
    for gid in ids:
        rate = rate_at_offsets(model, int(gid), energy, [offset])[:, 0]
        rate[~exposed[group_index(model, int(gid))]] = np.nan
        ax.plot(energy, _masked_positive(rate), marker=".", label=_group_label(model, int(gid)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(ENERGY_LABEL)
    ax.set_ylabel(RATE_LABEL)
    ax.set_title(f"offset {offset:g} deg", fontsize="medium")
    ax.legend(fontsize="small")
    return ax


def plot_counts(model: xr.Dataset, group=None, ax=None, *, threshold: bool = True):
    """Counts per energy bin summed over the FoV, one step line per zenith group (log-log).

    Parameters
    ----------
    model : xarray.Dataset
        Must hold ``counts`` (models read from plain GADF files do not).
    group : int, optional
        One zenith group; default all.
    ax : matplotlib.axes.Axes, optional
    threshold : bool
        Mark each group's :func:`counts_peak_energy` with a dashed line.

    Returns
    -------
    matplotlib.axes.Axes
    """
    validate_model(model)
    if "counts" not in model:
        raise KeyError("model has no 'counts' variable (a rate-only model, e.g. read from a "
                       "GADF file without COUNTS HDU); nothing to plot")
    ids = model["zenith_group"].values if group is None else [check_group(model, group)]
    ax = _new_axes(ax)
    e_edges = edges_of(model, "energy")
    dist = energy_distribution(model)
    thr = counts_peak_energy(model)
    for gid in ids:
        row = dist[group_index(model, int(gid))]
        step = ax.stairs(_masked_positive(row), e_edges, label=_group_label(model, int(gid)))
        if threshold and np.isfinite(thr.sel(zenith_group=gid)):
            ax.axvline(float(thr.sel(zenith_group=gid)), ls="--", lw=0.8,
                       color=step.get_edgecolor())
    ax.set_xscale("log")
    if np.any(dist > 0):
        ax.set_yscale("log")
    ax.set_xlabel(ENERGY_LABEL)
    ax.set_ylabel("counts per energy bin")
    ax.legend(fontsize="small")
    return ax


def _fov_map(model: xr.Dataset, gid: int, ebin: int, ax, log: bool = False):
    """Draw the FoV rate map of energy bin ``ebin`` into ``ax``; returns the mesh (or None
    when there is nothing to show: no exposure, or no positive value on a log scale)."""
    keep = (solid_angle(model) > 0) & _exposed(model, gid)[ebin]
    rate = model["rate"].sel(zenith_group=gid).isel(energy=ebin).transpose("dety", "detx").values
    rate = np.where(keep, rate, np.nan)
    norm = _log_norm(rate) if log else None
    mesh = None
    if not keep.all():
        _hatch_no_data(ax, edges_of(model, "detx"), edges_of(model, "dety"))
    if not keep.any() or (log and norm is None):
        ax.text(0.5, 0.5, "no exposure" if not keep.any() else "no data", ha="center",
                va="center", transform=ax.transAxes)
    else:
        shown = _masked_positive(rate) if log else np.ma.masked_invalid(rate)
        mesh = ax.pcolormesh(edges_of(model, "detx"), edges_of(model, "dety"), shown, norm=norm,
                             shading="flat")
    lo, hi = edges_of(model, "energy")[ebin: ebin + 2]
    ax.set_title(f"{lo:.3g}-{hi:.3g} TeV", fontsize="small")
    ax.set_aspect("equal")
    return mesh


def _energy_bins(model: xr.Dataset, energies) -> list[int]:
    edges = edges_of(model, "energy")
    if energies is None:
        return list(range(edges.size - 1))
    out = []
    for e in np.atleast_1d(np.asarray(energies, dtype=float)):
        if not edges[0] <= e <= edges[-1]:
            raise ValueError(f"energy {e} TeV is outside the model's range "
                             f"{edges[0]:g}-{edges[-1]:g} TeV")
        out.append(int(min(np.searchsorted(edges, e, side="right") - 1, edges.size - 2)))
    return out


def plot_fov_maps(model: xr.Dataset, group=0, energies=None, *, fig=None, ncols: int = 4,
                  log: bool = False):
    """Grid of FoV rate maps of a 3D model, one panel per energy bin.

    Each panel has its own colour scale and colour bar (rates fall by orders of magnitude
    over the energy range); linear by default, which shows the shape, or logarithmic. ``detx``
    = ``fov_lon`` on x (gammapy sign), ``dety`` = ``fov_lat`` on y; see the module docstring.
    Bins without exposure (outside ``offset_max``, below every run's threshold) are hatched.

    Parameters
    ----------
    model : xarray.Dataset
        A 3D model.
    group : int
        Zenith group ID.
    energies : sequence of float, optional
        Energies (TeV): one panel for the bin containing each. Default: every energy bin.
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (cleared first).
    ncols : int
        Panels per row.
    log : bool
        Logarithmic colour scales.

    Returns
    -------
    matplotlib.figure.Figure
        One map axes per energy bin, each followed by its colour-bar axes.
    """
    gid = check_group(model, group)
    if model.attrs["kind"] != "3d":
        raise ValueError("plot_fov_maps needs a 3D model (kind '3d'); for 2D use "
                         "plot_rate_energy_offset")
    bins = _energy_bins(model, energies)
    ncols = max(1, min(int(ncols), len(bins)))
    nrows = -(-len(bins) // ncols)
    fig = _new_figure(fig, (2.9 * ncols + 0.6, 2.4 * nrows + 0.7))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    for k, ax in enumerate(axes.flat):
        if k >= len(bins):
            ax.remove()
            continue
        mesh = _fov_map(model, gid, bins[k], ax, log=log)
        if mesh is not None:
            fig.colorbar(mesh, ax=ax, shrink=0.9)
    xlabel, ylabel = _fov_labels(model)
    fig.supxlabel(xlabel, fontsize="medium")
    fig.supylabel(ylabel, fontsize="medium")
    fig.suptitle(f"{RATE_LABEL}, {_group_label(model, gid)}", fontsize="medium")
    return fig


@takes_store("obs")
def plot_zenith_dependence(model: xr.Dataset, *, energy: float = 1.0, obs=None, fig=None):
    """How the model changes with zenith: threshold, total rate and rate at one energy.

    Three panels against each group's centre zenith (arccos of its ONTIME-weighted mean
    cos(zenith), else the middle of its bounds; horizontal bars span the group's bounds):
    the :func:`counts_peak_energy`; the predicted event rate in the FoV within ``offset_max``
    (s-1, the rate integrated over solid angle and the exposed energy bins); the FoV-mean rate
    in the energy bin containing ``energy`` (TeV). For H.E.S.S. the threshold rises with zenith
    while the rate at a fixed energy above the threshold rises too.

    Parameters
    ----------
    model : xarray.Dataset
    energy : float
        Reference energy (TeV) of the third panel.
    obs : xarray.Dataset, optional
        Observation Dataset (:func:`xbkg.open_datastore`): when given, each run is added as a
        grey point, ``SAFE_ENERGY_LO`` in the first panel and ``EVENT_COUNT / ONTIME`` (all
        events of the run, whatever their offset) in the second, where the obs index has them.
    fig : matplotlib.figure.Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Three axes.
    """
    validate_model(model)
    (ebin,) = _energy_bins(model, [energy])
    zen = group_zenith(model)
    bounds = np.asarray(model["zenith_bounds"].transpose("zenith_group", ...).values, dtype=float)
    xerr = np.abs(np.stack([zen - bounds[:, 0], bounds[:, 1] - zen]))
    mean = np.where(_exposed_slices(model), fov_mean_rate(model).values, np.nan)
    widths = energy_widths_mev(edges_of(model, "energy"))
    event_rate = np.nansum(mean * widths, axis=1) * solid_angle(model).sum()
    e_lo, e_hi = edges_of(model, "energy")[ebin: ebin + 2]
    panels = [
        (counts_peak_energy(model).values, "energy threshold (TeV)", "SAFE_ENERGY_LO", True),
        (event_rate, f"event rate, offset < {model.attrs['offset_max']:g} deg (s⁻¹)",
         "EVENT_RATE", False),
        (mean[:, ebin], f"FoV-mean rate, {e_lo:.3g}-{e_hi:.3g} TeV\n(s⁻¹ MeV⁻¹ sr⁻¹)", None,
         True),
    ]
    fig = _new_figure(fig, (12.0, 3.6))
    for ax, (y, label, column, logy) in zip(fig.subplots(1, 3), panels):
        good = np.isfinite(y) & (y > 0)
        ax.errorbar(zen[good], y[good], xerr=xerr[:, good], fmt="o", capsize=2,
                    label="zenith groups")
        runs = _run_points(obs, column) if obs is not None and column else None
        if runs is not None:
            ax.plot(*runs, ".", color="0.6", ms=4, zorder=0,
                    label="runs, all offsets" if column == "EVENT_RATE" else "runs")
        if logy and good.any():
            ax.set_yscale("log")
        ax.set_xlabel("zenith (deg)")
        ax.set_ylabel(label)
        ax.legend(fontsize="small")
    return fig


def _run_points(obs: xr.Dataset, column: str):
    """Per-run (zenith, value) points from an observation Dataset, or None if not available.
    ``column`` is an obs-index column or ``"EVENT_RATE"`` (EVENT_COUNT / ONTIME)."""
    zen_name = "ZEN_PNT" if "ZEN_PNT" in obs else "zenith" if "zenith" in obs else None
    if zen_name is None:
        return None
    zen = np.asarray(obs[zen_name].values, dtype=float)
    if column == "EVENT_RATE":
        if "EVENT_COUNT" not in obs or "ONTIME" not in obs:
            return None
        value = (np.asarray(obs["EVENT_COUNT"].values, dtype=float)
                 / np.asarray(obs["ONTIME"].values, dtype=float))
    elif column in obs:
        value = np.asarray(obs[column].values, dtype=float)
    else:
        return None
    good = np.isfinite(zen) & np.isfinite(value) & (value > 0)
    return zen[good], value[good]


# ---------------------------------------------------------------------------------------------
# overview


def _peek_energy_panel(model: xr.Dataset, gid: int, ax) -> None:
    """FoV-mean rate versus energy, with Poisson error bars when the model has counts."""
    centres = np.asarray(model["energy"].values, dtype=float)
    mean = fov_mean_rate(model).sel(zenith_group=gid).values
    mean = np.where(_exposed_slices(model)[group_index(model, gid)], mean, np.nan)
    yerr = None
    if "counts" in model:
        n = np.asarray(model["counts"].sel(zenith_group=gid).transpose("energy", ...).values)
        n = _fov_sum(n.astype(float), n.ndim - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            yerr = np.where(n > 0, mean / np.sqrt(n), 0.0)
        yerr = np.minimum(yerr, 0.999 * mean)  # keep the lower bar on the log axis
    good = np.isfinite(mean) & (mean > 0)
    ax.errorbar(centres[good], mean[good], yerr=None if yerr is None else yerr[good],
                fmt=".-", capsize=2)
    ax.set(xscale="log", xlabel=ENERGY_LABEL, ylabel=RATE_LABEL, title="FoV-mean rate")
    if good.any():
        ax.set_yscale("log")
    ax.title.set_fontsize("small")


def _peek_3d(model: xr.Dataset, gid: int, energy, fig):
    ax_e, ax_o, ax_m, ax_c = fig.subplots(2, 2).flat
    _peek_energy_panel(model, gid, ax_e)
    centres = np.asarray(model["energy"].values, dtype=float)
    if energy is None:
        energy = float(counts_peak_energy(model).sel(zenith_group=gid))
        if not np.isfinite(energy):
            energy = float(centres[centres.size // 2])
    (ebin,) = _energy_bins(model, [energy])
    e_edges = edges_of(model, "energy")
    offsets = np.linspace(0.0, float(model.attrs["offset_max"]), 26)
    profile = rate_at_offsets(model, gid, centres[ebin: ebin + 1], offsets)[0]
    ax_o.plot(offsets, _masked_positive(profile), marker=".")
    ax_o.set(xlabel=OFFSET_LABEL, ylabel=RATE_LABEL,
             title=f"offset profile, {e_edges[ebin]:.3g}-{e_edges[ebin + 1]:.3g} TeV")
    ax_o.title.set_fontsize("small")

    mesh = _fov_map(model, gid, ebin, ax_m)
    if mesh is not None:
        fig.colorbar(mesh, ax=ax_m, label=RATE_LABEL)
    xlabel, ylabel = _fov_labels(model)
    ax_m.set_xlabel(xlabel, fontsize="small")
    ax_m.set_ylabel(ylabel, fontsize="small")

    if "counts" in model:
        plot_counts(model, group=gid, ax=ax_c)
    else:
        ax_c.text(0.5, 0.5, "no counts in this model", ha="center", va="center",
                  transform=ax_c.transAxes)
        ax_c.set_axis_off()
    fig.suptitle(f"{model.attrs['kind'].upper()} {model.attrs['fov_alignment']} model, "
                 f"{_group_label(model, gid)}", fontsize="medium")
    return fig


def peek(model: xr.Dataset, group=None, *, energy: float | None = None, fig=None):
    """Quick look at a model, in one figure.

    * 2D models: rate over energy x offset (:func:`plot_rate_energy_offset`), one panel per
      zenith group (``group=None``) or for the given group.
    * 3D models: four panels for one group: the FoV-mean rate versus energy, the offset profile
      and the FoV map at ``energy`` (TeV; default the group's :func:`counts_peak_energy`), and
      the counts per energy bin. ``group=None`` picks the group with the most counts.

    Parameters
    ----------
    model : xarray.Dataset
    group : int, optional
    energy : float, optional
        3D models: energy (TeV) of the offset profile and FoV map.
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (cleared first).

    Returns
    -------
    matplotlib.figure.Figure
    """
    validate_model(model)
    ids = np.asarray(model["zenith_group"].values)
    if group is not None:
        ids = np.array([check_group(model, group)])
    if model.attrs["kind"] == "2d":
        fig = _new_figure(fig, (4.6 * len(ids) + 0.6, 3.6))
        for ax, gid in zip(fig.subplots(1, len(ids), squeeze=False)[0], ids):
            plot_rate_energy_offset(model, int(gid), ax=ax)
        return fig
    if ids.size > 1:
        ids = ids[[int(np.argmax(energy_distribution(model).sum(axis=1)))]]
    fig = _new_figure(fig, (10.0, 7.5))
    return _peek_3d(model, int(ids[0]), energy, fig)
