"""Text summaries of a model (``xbkg info``, the accessor's ``summary``)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .binning import edges_of
from .model import fov_dims

__all__ = ["summary_text"]


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
    return "\n".join(lines)
