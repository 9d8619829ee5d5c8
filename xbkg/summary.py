"""Text summaries of a model (``xbkg info``, the accessor's ``summary``)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .binning import edges_of
from .model import fov_dims

__all__ = ["summary_text", "summary_html"]


def _axis_line(model: xr.Dataset, dim: str, unit: str) -> str:
    e = edges_of(model, dim)
    return f"  {dim:<7s} {e.size - 1:4d} bins  {e[0]:.4g} .. {e[-1]:.4g} {unit}"


def summary_text(model: xr.Dataset) -> str:
    """Kind, alignment, binning, groups (runs, observation time, counts) of a model."""
    kind = model.attrs.get("kind", "?")
    lines = [f"xbkg background model: {kind.upper()}, FoV alignment {model.attrs.get('fov_alignment')}, "
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
    if "cond_coef" in model:
        from .conditional import describe

        lines.append(describe(model))
    return "\n".join(lines)


def summary_html(model: xr.Dataset) -> str:
    """HTML table of the summary, for JupyterLab (``model.bkg`` displays it)."""
    from html import escape

    kind = model.attrs.get("kind", "?")
    rows = [("kind", kind.upper()), ("FoV alignment", model.attrs.get("fov_alignment", "?")),
            ("offset_max", f"{model.attrs.get('offset_max', float('nan')):.3g} deg")]
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
        from .conditional import describe

        cond = f"<pre>{escape(describe(model))}</pre>"
    return (f"<div><b>xbkg background model</b><table>{head}</table>"
            f"<table>{groups}</table>{cond}</div>")
