"""xbkg: background models for imaging atmospheric Cherenkov telescopes, with xarray and dask.

The public API: ``make_model``, ``save_model``, ``open_model``, ``update_model``, ... (typical use
in docs/getting_started.rst). The package is layered, each folder using only those below it
(docs/architecture.rst).
"""

from xbkg import _compat, accessor  # noqa: F401  (accessor registers ``ds.bkg``)
from xbkg._version import __version__
from xbkg.building.make import make_binning, make_model
from xbkg.building.update import merge_models, update_model
from xbkg.core.binning import parse_edges
from xbkg.core.lazy_dask_array import install as _install_lazy_dask_array
from xbkg.core.schema import assemble_model, validate_model
from xbkg.io import open_model, save_model
from xbkg.io.gammapy import from_gammapy, to_gammapy
from xbkg.model.evaluate import evaluate_rate, integrate_counts
from xbkg.model.predict import predict_counts
from xbkg.store.datastore import open_datastore
from xbkg.store.events import open_events
from xbkg.store.selection import select_runs

_compat.install()
_install_lazy_dask_array()  # xarray would import dask.array only for isinstance checks

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
