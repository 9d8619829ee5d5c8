"""xbkg: background models for imaging atmospheric Cherenkov telescopes, with xarray and dask."""

from ._version import __version__
from .binning import parse_edges
from .model import assemble_model, validate_model

__all__ = ["__version__", "parse_edges", "assemble_model", "validate_model"]
