"""xbkg: background models for imaging atmospheric Cherenkov telescopes, with xarray and dask.

The pipeline, one module per stage::

    datastore -> events -> fov -> selection -> grouping -> histogram / exposure -> model
              -> io (netCDF, GADF FITS, HDU index) -> cli

Typical use::

    import xbkg
    model = xbkg.make_model("path/to/dl3-store", kind="3d", fov_alignment="altaz",
                            selection="off", zenith_edges=[0, 30, 45, 60])
    xbkg.save_model(model, "model.nc")
    model = xbkg.open_model("model.nc")
    model = xbkg.update_model(model, "path/to/dl3-store", obs_ids=new_runs)  # adds runs
"""

from . import accessor  # noqa: F401  (registers the ``ds.bkg`` accessor)
from ._version import __version__
from .binning import parse_edges
from .datastore import open_datastore
from .evaluate import evaluate_rate, integrate_counts
from .events import open_events
from .io import open_model, save_model
from .io.gammapy import from_gammapy, to_gammapy
from .make import make_binning, make_model
from .model import assemble_model, validate_model
from .predict import predict_counts
from .selection import select_runs
from .update import merge_models, update_model
from .lazy_dask_array import install as _install_lazy_dask_array

_install_lazy_dask_array()  # xarray would import dask.array for isinstance checks (0.4 s)

__all__ = [
    "__version__",
    "assemble_model",
    "evaluate_rate",
    "from_gammapy",
    "integrate_counts",
    "make_binning",
    "make_model",
    "merge_models",
    "open_datastore",
    "open_events",
    "open_model",
    "parse_edges",
    "predict_counts",
    "save_model",
    "select_runs",
    "to_gammapy",
    "update_model",
    "validate_model",
]
