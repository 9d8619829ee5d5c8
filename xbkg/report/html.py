"""One self-contained HTML page of a model or a make-models OUTDIR (``xbkg report``).

What a person checks first, drawn with :mod:`xbkg.plots.model` and embedded as base64 PNG (no
network, no other file): the rate over energy x offset per group, FoV maps per energy band (3D),
the zenith and condition dependence (groups by other obs-table columns), counts and exposure statistics, the runs used and rejected, closure
against the truth of a simulated store and any PNG figure of the folder, and the command and
versions that made the model. In every map, grey bins have no exposure and crossed bins have
exposure but no counts: their rate is the model's placeholder, not a measurement.
"""

from __future__ import annotations

import base64
import html
import platform
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.io import open_model
from xbkg.io.atomic import atomic_path
from xbkg.model.profiles import counts_peak_energy
from xbkg.plots.model import (
    plot_counts,
    plot_fov_maps,
    plot_rate_energy_offset,
    plot_rate_vs_energy,
    plot_zenith_dependence,
)
from xbkg.report.figures import figure_context, new_figure as _figure, place as _place, png_tag
from xbkg.report.summary import (
    build_options,
    model_label,
    output_files,
    rejected_runs,
    summary_html,
)
from xbkg.simulate import model_truth_counts
from xbkg.store.datastore import open_datastore, store_directory, takes_store

__all__ = ["write_report", "model_report", "report_html", "STYLE"]

#: CSS of the page (inline: the page loads nothing).
STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:1em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:2px 6px;text-align:left;font-size:90%}img{max-width:100%;display:block;"
         "margin:.5em 0}h2{border-bottom:1px solid #ccc;margin-top:1.5em}.note{color:#555}"
         "code{background:#f4f4f4;padding:1px 3px;word-break:break-all}")
NO_DATA_NOTE = ("Grey bins have no exposure (outside the offset cut, or below the energy threshold "
                "of every run); crossed bins (x) have exposure but no counts, so their rate is the "
                "model's placeholder floor, not a measurement.")
_MAX_FOV_PANELS = 8  # energy bands per group in the FoV maps
_DPI = 72


def _png(fig, fit_layout: bool = True) -> str:
    """``<img>`` tag of a report figure as an embedded PNG at :data:`_DPI` (margins fitted to
    its labels unless ``fit_layout`` is False: see :func:`xbkg.report.figures.png_tag`)."""
    return png_tag(fig, _DPI, fit_layout=fit_layout)


def _table(header, rows) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _mark_bins(ax, x_edges, y_edges, empty, *, log_x: bool = False) -> None:
    """Grey axes background (shows through bins left blank) and a cross on each ``empty`` bin,
    shape ``(len(y_edges) - 1, len(x_edges) - 1)``."""
    ax.set_facecolor("0.85")
    x_edges, y_edges = np.asarray(x_edges), np.asarray(y_edges)
    xc = np.sqrt(x_edges[1:] * x_edges[:-1]) if log_x else 0.5 * (x_edges[1:] + x_edges[:-1])
    yc = 0.5 * (y_edges[1:] + y_edges[:-1])
    j, i = np.nonzero(empty)
    if j.size:
        ax.scatter(xc[i], yc[j], marker="x", s=9, c="0.25", linewidths=0.6)


def _group_values(model: xr.Dataset, var: str, gid: int) -> np.ndarray:
    return np.asarray(model[var].sel(zenith_group=gid).transpose("energy", ...).values)


def _empty(model: xr.Dataset, gid: int) -> np.ndarray:
    """Bins with exposure and no counts, shape ``(E, ...)`` (none without counts/exposure)."""
    if "counts" not in model or "exposure" not in model:
        return np.zeros(model["rate"].sel(zenith_group=gid).shape, dtype=bool)
    return (_group_values(model, "exposure", gid) > 0) & (_group_values(model, "counts", gid) == 0)


def _rate_figure(model: xr.Dataset) -> str:
    return _png(_rate_fig(model))


def _rate_fig(model: xr.Dataset):
    """Rate over energy x offset, one panel per group, empty bins crossed."""

    ids = [int(g) for g in model["zenith_group"].values]
    ncols = min(3, len(ids))
    nrows = -(-len(ids) // ncols)
    fig = _figure(4.6 * ncols, 3.5 * nrows)
    _place(fig, (nrows, ncols), left=0.75, right=0.75, bottom=0.55, top=0.3, wspace=1.4,
           hspace=0.8)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[len(ids):]:
        ax.remove()
    for ax, gid in zip(axes, ids):
        plot_rate_energy_offset(model, gid, ax=ax)
        _mark_bins(ax, edges_of(model, "energy"), *_empty_rings(model, gid), log_x=True)
    return fig


def _empty_rings(model: xr.Dataset, gid: int):
    """Offset edges of :func:`xbkg.plots.model.plot_rate_energy_offset` and its empty bins, shape
    ``(offset, energy)``: exposure and no counts (3D: summed over the FoV bins whose centres
    fall in each ring)."""
    empty = _empty(model, gid)
    if model.attrs["kind"] == "2d":
        return edges_of(model, "offset"), empty.T
    n = max(model.sizes["detx"] // 2, 1)
    rings = np.linspace(0.0, float(model.attrs["offset_max"]), n + 1)
    if "counts" not in model or "exposure" not in model:
        return rings, np.zeros((n, model.sizes["energy"]), dtype=bool)
    offset = np.hypot(*np.meshgrid(model["detx"].values, model["dety"].values))  # (Y, X)
    ring = np.digitize(offset, rings) - 1
    counts, exposure = (_group_values(model, v, gid) for v in ("counts", "exposure"))
    out = np.zeros((n, model.sizes["energy"]), dtype=bool)
    for k in range(n):
        inside = ring == k
        out[k] = (exposure[:, inside].sum(axis=1) > 0) & (counts[:, inside].sum(axis=1) == 0)
    return rings, out


def _fov_bands(model: xr.Dataset, gid: int) -> list[int]:
    """Up to ``_MAX_FOV_PANELS`` energy bins with counts, evenly spread."""
    if "counts" in model:
        counts = _group_values(model, "counts", gid).reshape(model.sizes["energy"], -1).sum(axis=1)
        bins = np.flatnonzero(counts > 0)
    else:
        bins = np.arange(model.sizes["energy"])
    if bins.size > _MAX_FOV_PANELS:
        bins = bins[np.round(np.linspace(0, bins.size - 1, _MAX_FOV_PANELS)).astype(int)]
    return bins.tolist()


def _fov_figure(model: xr.Dataset, gid: int) -> str:
    fig = _fov_fig(model, gid)
    if fig is None:
        return "<p>no counts in this group: no FoV map.</p>"
    return _png(fig, fit_layout=False)  # placed for its labels, which do not depend on the data


def _fov_fig(model: xr.Dataset, gid: int):
    """FoV maps of one group in up to ``_MAX_FOV_PANELS`` energy bands (None: no counts)."""

    bins = _fov_bands(model, gid)
    if not bins:
        return None
    ncols = min(4, len(bins))
    nrows = -(-len(bins) // ncols)
    fig = _figure(2.9 * ncols + 0.6, 2.4 * nrows + 0.7)
    _place(fig, (nrows, ncols), left=0.8, right=0.1, bottom=0.6, top=0.5, wspace=0.3,
           hspace=0.35)
    fig = plot_fov_maps(model, gid, energies=model["energy"].values[bins], fig=fig, ncols=ncols)
    maps = [ax for ax in fig.axes if ax.get_title().endswith("TeV")]
    x, y = edges_of(model, "detx"), edges_of(model, "dety")
    empty = _empty(model, gid)
    for ax, ebin in zip(maps, bins):
        _mark_bins(ax, x, y, empty[ebin])
    return fig


def _zenith_figure(model: xr.Dataset, obs) -> str:
    return _png(_zenith_fig(model, obs))


def _zenith_fig(model: xr.Dataset, obs):
    """Threshold, event rate and rate at one energy against zenith (runs of ``obs`` too)."""

    thr = counts_peak_energy(model).values
    centres = model["energy"].values
    energy = float(np.nanmax(thr)) * 2 if np.isfinite(thr).any() else float(np.median(centres))
    energy = float(np.clip(energy, edges_of(model, "energy")[0], edges_of(model, "energy")[-1]))
    fig = _figure(12.0, 3.6)
    _place(fig, (1, 3), left=1.0, right=0.1, bottom=0.5, top=0.15, wspace=1.15)
    return plot_zenith_dependence(model, energy=energy, obs=obs, fig=fig)


def _conditions(model: xr.Dataset) -> str:
    """Rate versus energy per group and, for groups by other obs-table columns (``group_by``),
    their bounds with each group's counts per hour."""
    out = _png(_rate_energy_fig(model))
    columns = [c for c in str(model.attrs.get("group_by", "")).split(",") if c]
    if not columns or "counts" not in model or "group_ontime" not in model:
        return out
    rows = []
    for gid in model["zenith_group"].values:
        row = [int(gid)] + [" - ".join(f"{v:g}" for v in model[f"{c}_bounds"].sel(
            zenith_group=gid).values) for c in ["zenith"] + columns]
        hours = float(model["group_ontime"].sel(zenith_group=gid)) / 3600
        counts = int(model["counts"].sel(zenith_group=gid).sum())
        rows.append(row + [f"{counts / hours:.4g}" if hours > 0 else "-"])
    return out + _table(["group", "zenith (deg)"] + columns + ["counts per hour"], rows)


def _rate_energy_fig(model: xr.Dataset):
    """Rate at offset 0.5 deg (or ``offset_max``) against energy, one line per group."""

    fig = _figure(6.0, 3.8)
    _place(fig, left=0.95, bottom=0.5, top=0.3)
    plot_rate_vs_energy(model, offset=min(0.5, float(model.attrs["offset_max"])),
                        ax=fig.subplots())
    return fig


def _statistics(model: xr.Dataset) -> str:
    """Counts and exposure per group: bins with exposure, without counts, with few counts."""
    if "counts" not in model or "exposure" not in model:
        return "<p>This model holds rates only (no counts or exposure).</p>"
    rows = []
    for gid in model["zenith_group"].values:
        n = _group_values(model, "counts", int(gid))
        exposed = _group_values(model, "exposure", int(gid)) > 0
        rows.append([int(gid), int(model["group_n_obs"].sel(zenith_group=gid))
                     if "group_n_obs" in model else "",
                     f"{float(model['group_ontime'].sel(zenith_group=gid)) / 3600:.3g}"
                     if "group_ontime" in model else "",
                     int(n.sum()), n.size, int(exposed.sum()), int((exposed & (n == 0)).sum()),
                     int((exposed & (n > 0) & (n < 10)).sum()),
                     f"{np.median(n[exposed]):.3g}" if exposed.any() else "-"])
    header = ["group", "runs", "time (h)", "counts", "bins", "bins with exposure",
              "... without counts (x)", "... with 1-9 counts", "median counts per bin"]
    return _table(header, rows)


def _counts_figure(model: xr.Dataset) -> str:
    return "" if "counts" not in model else _png(_counts_fig(model))


def _counts_fig(model: xr.Dataset):
    """Counts per energy bin and group, with the energy thresholds."""

    fig = _figure(6.0, 3.6)
    _place(fig, left=0.8, bottom=0.5, top=0.15)
    plot_counts(model, ax=fig.subplots())
    return fig


def _runs_tables(model: xr.Dataset, rejected: dict | None) -> str:
    parts = []
    if "obs_id" in model.dims:
        rows = [[int(o), int(g), f"{z:.1f}", f"{t:.0f}"] for o, g, z, t in zip(
            model["obs_id"].values, model["obs_group"].values, model["obs_zenith"].values,
            model["obs_ontime"].values)]
        parts.append(f"<p>{len(rows)} runs used.</p>"
                     + _table(["OBS_ID", "group", "zenith (deg)", "ONTIME (s)"], rows))
    if rejected is not None:
        by: dict[str, list[int]] = {}
        for obs_id, reason in sorted(rejected.items()):
            by.setdefault(reason, []).append(obs_id)
        rows = [[reason, len(ids), " ".join(str(i) for i in ids)] for reason, ids in
                sorted(by.items(), key=lambda kv: -len(kv[1]))]
        parts.append(f"<p>{len(rejected)} runs rejected (bg_rejected_runs.ecsv).</p>"
                     + (_table(["reason", "runs", "OBS_IDs"], rows) if rows else ""))
    return "".join(parts)


def _closure(model: xr.Dataset, store) -> str:
    """Counts against the simulated truth summed over the FoV, per group (simulated stores)."""
    fig = _closure_fig(model, store)
    return "" if fig is None else "<h2>Closure against the simulated truth</h2>" + _png(fig)


def _closure_fig(model: xr.Dataset, store):
    """The closure figure, or None for a model without counts or a store without truth."""

    if store is None or "counts" not in model or \
            not (store_directory(store) / "truth.json").exists():
        return None
    expected = model_truth_counts(store, model)
    counts = np.asarray(model["counts"].values, dtype=float)  # the truth's layout
    fov_axes = tuple(range(1, counts.ndim - 1))
    e = model["energy"].values
    fig = _figure(6.0, 3.6)
    _place(fig, left=0.7, bottom=0.5, top=0.3)
    ax = fig.subplots()
    for k, gid in enumerate(model["zenith_group"].values):
        n, mu = counts[k].sum(axis=fov_axes), expected[k].sum(axis=fov_axes)
        good = mu > 0
        ax.errorbar(e[good], n[good] / mu[good], yerr=np.sqrt(np.maximum(mu[good], 1)) / mu[good],
                    fmt=".", label=f"group {int(gid)}")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set(xscale="log", xlabel="energy (TeV)", ylabel="counts / simulated truth",
           title="closure (bins crossing the offset cut hold less than the truth)")
    ax.title.set_fontsize("small")
    ax.legend(fontsize="small")
    return fig


def _pngs_of(folder: Path | None) -> str:
    """The PNG figures of a folder (validation or comparison plots), embedded."""
    if folder is None:
        return ""
    out = []
    for path in sorted(folder.glob("*.png")):
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(f"<h3>{html.escape(path.name)}</h3>"
                   f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">')
    return ("<h2>Validation figures of this folder</h2>" + "".join(out)) if out else ""


def _versions() -> list[list[str]]:
    import importlib.metadata as md

    rows = [["python", platform.python_version()]]
    for name in ("xbkg", "numpy", "xarray", "dask", "astropy", "matplotlib"):
        try:
            rows.append([name, md.version(name)])
        except md.PackageNotFoundError:
            rows.append([name, "not installed"])
    return rows


@takes_store("store")
def report_html(model: xr.Dataset, *, store=None, rejected: dict | None = None,
                files=None, folder: Path | None = None, title: str | None = None) -> str:
    """The HTML page of a model (a string; see the module docstring for its sections).

    Parameters
    ----------
    model : xarray.Dataset
        A model in the :mod:`xbkg.core.schema` layout.
    store : str, Path or xarray.Dataset, optional
        The store the model was built from: adds each run to the zenith figure and, for a
        simulated store, the closure against its truth.
    rejected : dict, optional
        ``{OBS_ID: reason}`` of the runs not used.
    files : list of (str, str), optional
        ``(file, what it holds)`` rows of the folder's files.
    folder : Path, optional
        Folder whose PNG figures are added.
    title : str, optional
    """
    obs = store
    options = build_options(model)
    command = options.pop("command", None)
    sections = [f"<h1>{html.escape(title or 'xbkg background model')}</h1>",
                f"<p>{html.escape(model_label(model))}. {html.escape(NO_DATA_NOTE)}</p>",
                summary_html(model)]
    with figure_context():
        sections += ["<h2>Rate over energy x offset, per group</h2>",
                     '<p class="note">3D models: the rate averaged over rings of offset '
                     '(gammapy\'s interpolation); a ring is crossed when its FoV bins hold no '
                     'counts.</p>', _rate_figure(model)]
        if model.attrs["kind"] == "3d":
            sections.append("<h2>FoV maps per energy band</h2>")
            for gid in model["zenith_group"].values:
                sections.append(_fov_figure(model, int(gid)))
        sections += ["<h2>Zenith and condition dependence</h2>", _zenith_figure(model, obs),
                     _conditions(model),
                     "<h2>Counts and exposure</h2>", _statistics(model), _counts_figure(model),
                     "<h2>Runs</h2>", _runs_tables(model, rejected), _closure(model, obs),
                     _pngs_of(folder)]
    sections.append("<h2>Command, options and versions</h2>")
    if command:
        sections.append(f"<p>Made by <code>{html.escape(command)}</code></p>")
    sections.append(_table(["option", "value"], options.items()))
    sections.append("<p>Versions of this report:</p>" + _table(["package", "version"], _versions()))
    if files:
        sections.append("<h2>Files</h2>" + _table(["file", "what it holds"], files))
    body = "\n".join(s for s in sections if s)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title or 'xbkg report')}</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder (atomic; a full
    disk is reported naming ``path``, and leaves nothing)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@takes_store("store")
def model_report(model: xr.Dataset, path="report.html", *, store=None) -> Path:
    """Write the HTML report of a model (``model.bkg.report(path)``); returns its path."""
    return _write_text(Path(path), report_html(model, store=store))


def _store_of(model: xr.Dataset):
    """The store recorded in the model's provenance, opened, or None if it cannot be."""
    import json


    path = json.loads(model.attrs.get("provenance", "{}") or "{}").get("store")
    try:
        return open_datastore(path) if path else None
    except (OSError, ValueError):
        return None


@takes_store("store")
def write_report(outdir, *, output=None, store=None, model: xr.Dataset | None = None) -> Path:
    """Write ``report.html`` (or ``output``) for a make-models OUTDIR; returns its path.

    ``store`` defaults to the store recorded in the model's provenance, when it still opens.
    ``model`` is the folder's ``model.nc`` when the caller holds it already (``make-models``
    passes the model it has just written); by default it is read from the folder.
    """

    outdir = Path(outdir)
    if not (outdir / "model.nc").exists():
        raise FileNotFoundError(f"{outdir}: no model.nc; expected a make-models output folder")
    if model is None:
        model = open_model(outdir / "model.nc")
    path = outdir / "report.html" if output is None else Path(output)
    files = output_files(outdir)
    if path.parent.resolve() == outdir.resolve() and path.name not in dict(files):
        files = sorted(files + [(path.name, "this report")])
    text = report_html(model, store=_store_of(model) if store is None else store,
                       rejected=rejected_runs(outdir), files=files, folder=outdir,
                       title=f"xbkg report: {outdir.resolve().name}")
    return _write_text(path, text)
