"""xbkg: background models for imaging atmospheric Cherenkov telescopes, with xarray and dask.

The package is layered, each folder using only those below it (docs/architecture.rst)::

    cli, accessor -> report -> plots -> checks -> building, simulate -> model -> store -> sky
                  -> io -> core

Typical use::

    import xbkg
    model = xbkg.make_model("path/to/dl3-store", kind="3d", fov_alignment="altaz",
                            selection="off", zenith_edges=[0, 30, 45, 60])
    xbkg.save_model(model, "model.nc")
    model = xbkg.open_model("model.nc")
    model = xbkg.update_model(model, "path/to/dl3-store", obs_ids=new_runs)  # adds runs
"""

from xbkg import _compat, accessor  # noqa: F401  (accessor registers ``ds.bkg``)
from xbkg._version import __version__
from xbkg.building.make import make_binning, make_model
from xbkg.building.update import merge_models, update_model
from xbkg.core.binning import parse_edges
from xbkg.core.schema import assemble_model, validate_model
from xbkg.io import open_model, save_model
from xbkg.io.gammapy import from_gammapy, to_gammapy
from xbkg.model.evaluate import evaluate_rate, integrate_counts
from xbkg.model.predict import predict_counts
from xbkg.store.datastore import open_datastore
from xbkg.store.events import open_events
from xbkg.store.selection import select_runs

_compat.install()

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
