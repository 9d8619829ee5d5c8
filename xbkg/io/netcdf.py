"""Model <-> netCDF4 (HDF5) files through h5netcdf.

Attributes are plain JSON-compatible values (no serialised Python objects). Writes are atomic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..model import validate_model
from ..parallel import no_client_lookup
from .atomic import atomic_path

__all__ = ["write_netcdf", "read_netcdf", "is_netcdf"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_netcdf(path) -> bool:
    """True when ``path`` starts with the HDF5 signature (netCDF4 files do)."""
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_MAGIC


def _plain_attrs(attrs: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (str, int, float, bool, list, tuple, np.ndarray)):
            raise TypeError(f"attribute {key!r} of type {type(value).__name__} cannot be stored")
        out[key] = value
    return out


def write_netcdf(model: xr.Dataset, path, *, overwrite: bool = False) -> Path:
    """Write a model to ``path`` (netCDF4 via h5netcdf), atomically; returns the path."""
    validate_model(model)
    ds = model.copy()
    ds.attrs = _plain_attrs(ds.attrs)
    encoding = {name: {"zlib": True, "complevel": 4} for name in ds.data_vars
                if ds[name].ndim >= 2}
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, no_client_lookup():
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding, invalid_netcdf=False)
    return path


def read_netcdf(path) -> xr.Dataset:
    """Read a model written by :func:`write_netcdf` into memory (the file is closed after)."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            model = ds.load()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read as an xbkg netCDF model: {exc}") from exc
    for var in model.variables.values():
        for key in ("zlib", "complevel", "shuffle", "chunksizes", "fletcher32", "compression",
                    "compression_opts", "source", "original_shape", "preferred_chunks"):
            var.encoding.pop(key, None)
    model.encoding = {}
    try:
        return validate_model(model)
    except ValueError as exc:
        raise ValueError(f"{path}: not an xbkg model: {exc}") from exc
