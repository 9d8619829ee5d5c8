"""Per-run model files: one GADF background file per run, interpolated between the groups.

``bg_run_models/bg_run_model_obs<OBS_ID>.fits.gz`` holds the run's BACKGROUND HDU (BKG_2D or
BKG_3D, header ``ZEN_LO = ZEN_HI =`` the run's zenith), made by
:func:`xbkg.model.group_interpolation.model_for_observation`; the HDU index written by
:func:`xbkg.building.products.write_products` (``per_run=True``) points each run at its own file.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from xbkg.building.conditional import is_conditional, models_for_runs
from xbkg.io.gadf import write_table_file
from xbkg.model.group_interpolation import models_for_observations
from xbkg.store.datastore import takes_store

__all__ = ["RUN_MODEL_DIR", "run_model_file_name", "write_run_models"]

#: Folder of the per-run files inside the output folder.
RUN_MODEL_DIR = "bg_run_models"


def run_model_file_name(obs_id) -> str:
    """File name of a run's model: ``bg_run_model_obs<OBS_ID>.fits.gz`` (six digits at least).

    >>> run_model_file_name(20136)
    'bg_run_model_obs020136.fits.gz'
    """
    return f"bg_run_model_obs{int(obs_id):06d}.fits.gz"


@takes_store("store")
def write_run_models(model: xr.Dataset, store: xr.Dataset, folder, *, method: str = "log",
                     extrapolate: bool = True) -> list[str]:
    """Write the model of every run of ``store`` into ``folder``; returns the file names.

    Parameters
    ----------
    model : xarray.Dataset
        The grouped model.
    store : xarray.Dataset
        Observation Dataset of the runs (``zenith`` and the model's extra grouping columns).
    folder : path
        Created if missing.
    method, extrapolate
        See :func:`xbkg.model.group_interpolation.model_for_observation`. A conditional model
        (:mod:`xbkg.building.conditional`) gives each run its conditional model instead.
    """

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    runs = (models_for_runs(model, store) if is_conditional(model) else
            models_for_observations(model, store, method=method, extrapolate=extrapolate))
    for obs_id, one in runs:
        name = run_model_file_name(obs_id)
        write_table_file(one, 0, folder / name)
        names.append(name)
    return names
