"""Output folders of ``xbkg validate`` and ``xbkg compare`` (ECSV, JSON, netCDF, PNG).

Folders are written atomically (:func:`xbkg.io.atomic.atomic_dir`); each figure is closed
once saved. The files are listed in docs/formats.rst.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.checks.compare import comparison_summary
from xbkg.checks.crossval import summarise
from xbkg.io.atomic import atomic_dir
from xbkg.plots import validation as vp

__all__ = ["validation_table", "write_validation", "comparison_table", "write_comparison"]

_RUN_COLUMNS = [  # (result variable, column, unit)
    ("obs_id", "OBS_ID", None), ("fold", "FOLD", None), ("zenith", "ZENITH", "deg"),
    ("ontime", "ONTIME", "s"), ("e_threshold", "E_THRESHOLD", "TeV"),
    ("run_counts", "COUNTS", None), ("run_predicted", "PREDICTED", None), ("norm", "NORM", None),
    ("norm_error", "NORM_ERROR", None), ("tilt", "TILT", None), ("tilt_error", "TILT_ERROR", None),
    ("amplitude", "AMPLITUDE", None), ("n_bins", "N_BINS", None),
    ("n_bins_unpredicted", "N_BINS_UNPREDICTED", None), ("sig_mean", "SIG_MEAN", None),
    ("sig_std", "SIG_STD", None), ("deviance", "DEVIANCE", None),
]


def validation_table(result: xr.Dataset):
    """The per-run table of a :func:`xbkg.checks.crossval.validate` result (astropy Table)."""
    from astropy.table import Table

    table = Table()
    optional = [("level_error", "LEVEL_ERROR", None), ("pull", "PULL", None)]  # conditional
    for var, col, unit in _RUN_COLUMNS + [c for c in optional if c[0] in result]:
        table[col] = np.asarray(result[var].values)
        if unit:
            table[col].unit = unit
    table.meta["models"] = result.attrs["models"]
    return table


def _save(drawn, path: Path) -> None:
    """Save the figure of ``drawn`` (a Figure or an Axes) and close it."""
    import matplotlib.pyplot as plt

    fig = getattr(drawn, "figure", None) or drawn
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def write_validation(result: xr.Dataset, outdir, *, overwrite: bool = False,
                     plots: bool = True) -> Path:
    """Write the ``xbkg validate`` outputs (module docstring) into ``outdir``; returns it."""

    summary = summarise(result)
    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        validation_table(result).write(tmp / "validation_runs.ecsv")
        (tmp / "validation_summary.json").write_text(
            json.dumps(summary, indent=1, sort_keys=True, allow_nan=True) + "\n")
        result.to_netcdf(tmp / "validation_cubes.nc", engine="h5netcdf")
        if plots:
            for name, draw in (("norm", vp.plot_norm), ("tilt", vp.plot_tilt),
                               ("significance", vp.plot_significance),
                               ("energy_residuals", vp.plot_energy_residuals)):
                _save(draw(result), tmp / f"validation_{name}.png")
            _save(vp.plot_residual_map(result), tmp / "validation_residual_map.png")
    return Path(outdir)


def comparison_table(summary: xr.Dataset):
    """The per-group table of :func:`xbkg.checks.compare.comparison_summary` (astropy Table)."""
    from astropy.table import Table

    bounds = summary["zenith_bounds"].transpose("zenith_group", ...).values
    table = Table({"GROUP_ID": summary["zenith_group"].values.astype("int64"),
                   "ZEN_MIN": bounds[:, 0], "ZEN_MAX": bounds[:, 1],
                   "GROUP_B": summary["group_b"].values.astype("int64")})
    table["ZEN_MIN"].unit = table["ZEN_MAX"].unit = "deg"
    for name in ("n_bins", "ratio_integral", "ratio_median", "ratio_p16", "ratio_p84",
                 "log_ratio_rms", "ratio_min", "ratio_max"):
        table[name.upper()] = summary[name].values
    table.meta.update(label_a=summary.attrs["label_a"], label_b=summary.attrs["label_b"])
    return table


def write_comparison(comparison: xr.Dataset, outdir, *, overwrite: bool = False,
                     plots: bool = True) -> Path:
    """Write the ``xbkg compare`` outputs (module docstring) into ``outdir``; returns it."""

    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        comparison_table(comparison_summary(comparison)).write(tmp / "compare_summary.ecsv")
        comparison.to_netcdf(tmp / "compare.nc", engine="h5netcdf")
        if plots:
            for g, gid in enumerate(comparison["zenith_group"].values):
                _save(vp.plot_ratio_maps(comparison, g),
                      tmp / f"compare_ratio_maps_group{int(gid)}.png")
            _save(vp.plot_energy_profiles(comparison), tmp / "compare_energy_profiles.png")
            _save(vp.plot_offset_profiles(comparison), tmp / "compare_offset_profiles.png")
    return Path(outdir)
