"""Text summaries of a model (``xbkg info``, the accessor's ``summary`` and ``repr``) and of a
make-models output folder (``xbkg info OUTDIR``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.core.schema import fov_dims
from xbkg.io import open_model
from xbkg.io.ecsv import read_ecsv_columns
from xbkg.plots.conditional import describe

__all__ = ["model_label", "summary_text", "summary_html", "rejected_runs", "output_files",
           "build_options", "outdir_summary", "provenance_lines"]

#: What each file of a make-models OUTDIR holds ('*' stands for a group ID).
OUTPUT_FILES = {
    "model.nc": "the whole model (all groups, counts, exposure, per-run tables), netCDF",
    "report.html": "HTML report: figures and tables of the model (open in a browser)",
    "bg_cube_model_group*_table.fits.gz": "3D model of one group, GADF BKG_3D table",
    "bg_cube_model_group*_image.fits.gz": "3D model of one group, FITS image cube",
    "bg_offset_model_group*_table.fits.gz": "2D model of one group, GADF BKG_2D table",
    "bg_observation_table.fits.gz": "obs-index rows of the runs used",
    "bg_observation_table_grouped.fits.gz": "the same, with each run's GROUP_ID",
    "bg_observation_groups.ecsv": "the groups: zenith (and other) bounds, runs, time",
    "bg_rejected_runs.ecsv": "every run of the store not used, with the reason",
    "hdu-index.fits.gz": "HDU index: gammapy.data.DataStore.from_dir(OUTDIR) finds obs.bkg",
    "obs-index.fits.gz": "obs index of the runs the HDU index covers",
    "bg_models_bundle.fits.gz": "models, HDU_INDEX and OBS_INDEX in one file (--bundle)",
    "bg_run_models": "one model per run (--per-run)",
}


def model_label(model: xr.Dataset) -> str:
    """What the model is, in a few words: ``"3D model (FoV alignment ALTAZ)"`` or
    ``"2D model (energy x offset)"`` (2D models have no FoV alignment)."""
    kind = str(model.attrs.get("kind", "?")).lower()
    if kind == "2d":
        return "2D model (energy x offset)"
    return f"{kind.upper()} model (FoV alignment {model.attrs.get('fov_alignment', '?')})"


def _axis_line(model: xr.Dataset, dim: str, unit: str) -> str:
    e = edges_of(model, dim)
    return f"  {dim:<7s} {e.size - 1:4d} bins  {e[0]:.4g} .. {e[-1]:.4g} {unit}"


def provenance_lines(model: xr.Dataset) -> list[str]:
    """How the energy thresholds and the FoV extent of a model were decided (from its
    provenance; empty for models without one, e.g. read from plain GADF files).

    >>> m = xr.Dataset(attrs={"provenance": json.dumps({"energy_threshold": "none",
    ...     "fov_extent": {"source": "given", "extent_deg": 2.0}})})
    >>> print("\\n".join(provenance_lines(m)))
    energy thresholds: none
    FoV extent: 2 deg (given)
    """
    try:
        prov = json.loads(model.attrs.get("provenance", "{}"))
    except ValueError:
        return []
    lines = []
    if "energy_threshold" in prov:
        lines.append(f"energy thresholds: {prov['energy_threshold']}")
    extent = prov.get("fov_extent")
    if isinstance(extent, dict):
        text = (f"{extent['extent_deg']:.4g} deg ({extent['source']})" if "extent_deg" in extent
                else str(extent.get("source", "?")))
        if extent.get("cut"):
            text += f"; binning cut there: {extent['cut']}"
        lines.append(f"FoV extent: {text}")
    if "has_data" in model and model["has_data"].size:
        empty = int((~np.asarray(model["has_data"].values, dtype=bool)).sum())
        if empty:
            lines.append(f"bins without data (has_data False, placeholder rate): {empty} of "
                         f"{model['has_data'].size}")
    return lines


def summary_text(model: xr.Dataset) -> str:
    """Kind, alignment, binning, groups (runs, observation time, counts) of a model."""
    kind = model.attrs.get("kind", "?")
    what = ("2D (energy x offset)" if kind == "2d"
            else f"{kind.upper()}, FoV alignment {model.attrs.get('fov_alignment')}")
    lines = [f"xbkg background model: {what}, "
             f"offset_max {model.attrs.get('offset_max', float('nan')):.3g} deg"]
    lines.append("binning:")
    lines.append(_axis_line(model, "energy", "TeV"))
    for d in fov_dims(kind):
        lines.append(_axis_line(model, d, "deg"))
    lines.append("groups:")
    bounds = model["zenith_bounds"].values
    for i, g in enumerate(model["zenith_group"].values):
        text = f"  group {int(g)}: zenith {bounds[i, 0]:.4g}-{bounds[i, 1]:.4g} deg"
        if "group_n_obs" in model:
            text += (f", {int(model['group_n_obs'].values[i])} runs, "
                     f"{float(model['group_ontime'].values[i]) / 3600:.3g} h")
        if "counts" in model:
            text += f", {int(np.asarray(model['counts'].isel(zenith_group=i)).sum())} counts"
        lines.append(text)
    if "counts" in model:
        lines.append(f"total counts: {int(np.asarray(model['counts']).sum())}")
    lines += provenance_lines(model)
    if "cond_coef" in model:
        lines.append(describe(model))
    return "\n".join(lines)


def summary_html(model: xr.Dataset) -> str:
    """HTML table of the summary, for JupyterLab (``model.bkg`` displays it)."""
    from html import escape

    kind = model.attrs.get("kind", "?")
    rows = [("kind", model_label(model))]
    rows.append(("offset_max", f"{model.attrs.get('offset_max', float('nan')):.3g} deg"))
    for d, unit in (("energy", "TeV"),) + tuple((d, "deg") for d in fov_dims(kind)):
        e = edges_of(model, d)
        rows.append((d, f"{e.size - 1} bins, {e[0]:.4g} .. {e[-1]:.4g} {unit}"))
    head = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                   for k, v in rows)
    cols = ["group", "zenith (deg)", "runs", "time (h)", "counts"]
    body = []
    bounds = model["zenith_bounds"].values
    for i, g in enumerate(model["zenith_group"].values):
        cells = [str(int(g)), f"{bounds[i, 0]:.4g}-{bounds[i, 1]:.4g}"]
        cells.append(str(int(model["group_n_obs"].values[i])) if "group_n_obs" in model else "")
        cells.append(f"{float(model['group_ontime'].values[i]) / 3600:.3g}"
                     if "group_ontime" in model else "")
        cells.append(str(int(np.asarray(model["counts"].isel(zenith_group=i)).sum()))
                     if "counts" in model else "")
        body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    groups = ("<tr>" + "".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>" + "".join(body))
    cond = ""
    if "cond_coef" in model:
        cond = f"<pre>{escape(describe(model))}</pre>"
    return (f"<div><b>xbkg background model</b><table>{head}</table>"
            f"<table>{groups}</table>{cond}</div>")


def rejected_runs(outdir) -> dict[int, str]:
    """``{OBS_ID: reason}`` of ``bg_rejected_runs.ecsv`` in a make-models OUTDIR ({} if absent)."""
    path = Path(outdir) / "bg_rejected_runs.ecsv"
    if not path.exists():
        return {}
    try:  # without astropy.table, whose import is most of a report's reading time
        table = read_ecsv_columns(path)
    except ValueError:
        from astropy.table import Table

        table = Table.read(path)
    return {int(o): str(r) for o, r in zip(table["OBS_ID"], table["REASON"])}


def output_files(outdir) -> list[tuple[str, str]]:
    """``(file name, what it holds)`` of the files in a make-models OUTDIR, sorted by name."""
    from fnmatch import fnmatch

    out = []
    for path in sorted(Path(outdir).iterdir()):
        what = next((text for pattern, text in OUTPUT_FILES.items() if fnmatch(path.name, pattern)),
                    "")
        if not path.name.startswith("."):
            out.append((path.name + ("/" if path.is_dir() else ""), what))
    return out


def _runs_text(ids, limit: int = 12) -> str:
    ids = sorted(int(i) for i in ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _reasons(rejected: dict[int, str]) -> dict[str, list[int]]:
    """Rejected runs grouped by reason, the most common reason first."""
    by: dict[str, list[int]] = {}
    for obs_id, reason in rejected.items():
        by.setdefault(reason, []).append(obs_id)
    return dict(sorted(by.items(), key=lambda kv: -len(kv[1])))


def outdir_summary(outdir) -> str:
    """Summary of a whole make-models OUTDIR: the model, the runs used and rejected (with
    reasons), options and provenance of the build, and where each file is."""

    outdir = Path(outdir)
    if not (outdir / "model.nc").exists():
        raise FileNotFoundError(f"{outdir}: no model.nc; expected a make-models output folder "
                                "(or give a model file)")
    model = open_model(outdir / "model.nc")
    lines = [f"make-models output folder {outdir.resolve()}", summary_text(model)]
    used = model["obs_id"].values.tolist() if "obs_id" in model.dims else []
    lines.append(f"runs used ({len(used)}): {_runs_text(used)}")
    rejected = rejected_runs(outdir)
    lines.append(f"runs rejected ({len(rejected)}):" if rejected else "runs rejected: none")
    for reason, ids in _reasons(rejected).items():
        lines.append(f"  {len(ids):4d} {reason}: {_runs_text(ids, 6)}")
    lines.append("options and provenance:")
    for key, value in build_options(model).items():
        lines.append(f"  {key}: {value}")
    lines.append("files:")
    for name, what in output_files(outdir):
        lines.append(f"  {name:<40s} {what}")
    return "\n".join(lines)


def build_options(model: xr.Dataset) -> dict[str, str]:
    """The options and provenance recorded in a model's attributes, as text."""
    provenance = json.loads(model.attrs.get("provenance", "{}") or "{}")
    out = {"xbkg version": str(model.attrs.get("xbkg_version", "?"))}
    if "command" in provenance:
        out["command"] = provenance.pop("command")
    for key in ("grouping", "smoothing", "empty_bins"):
        if model.attrs.get(key):
            out[key] = str(model.attrs[key])
    provenance.pop("skipped_runs", None)  # listed with the rejected runs
    for key, value in sorted(provenance.items()):
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out
