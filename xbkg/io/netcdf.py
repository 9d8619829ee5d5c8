"""Model <-> netCDF4 (HDF5) files through h5netcdf.

Attributes are plain JSON-compatible values (no serialised Python objects). Writes are atomic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.core.schedulers import no_client_lookup
from xbkg.core.schema import check_model_values, validate_model
from xbkg.io.atomic import atomic_path
from xbkg.io.safety import require_regular_file

__all__ = ["write_netcdf", "read_netcdf", "is_netcdf"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_netcdf(path) -> bool:
    """True when ``path`` starts with the HDF5 signature (netCDF4 files do)."""
    require_regular_file(path)
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
    # HDF5 writing to a full disk floods stderr and can crash the process when the file is
    # closed: the file is made in memory (a model is small) and written with plain Python I/O
    with no_client_lookup():
        data = ds.to_netcdf(engine="h5netcdf", encoding=encoding, invalid_netcdf=False)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return path


#: Most bytes the arrays of a model file may declare, whatever the file's size.
MAX_MODEL_BYTES = 1 << 30
#: Largest ratio of declared array bytes to file bytes (above it: unwritten or bomb chunks).
MAX_EXPANSION = 1000


def _check_declared_size(ds: xr.Dataset, path: Path) -> None:
    """Refuse, before reading any array, a file declaring more than it can plausibly hold."""
    declared = sum(int(v.size) * v.dtype.itemsize for v in ds.variables.values())
    limit = min(MAX_MODEL_BYTES, (1 << 24) + MAX_EXPANSION * path.stat().st_size)
    if declared > limit:
        raise ValueError(f"its arrays declare {declared} bytes, more than the {limit} allowed "
                         f"for a {path.stat().st_size}-byte file: corrupt or hostile")


def read_netcdf(path) -> xr.Dataset:
    """Read a model written by :func:`write_netcdf` into memory (the file is closed after)."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="h5netcdf", phony_dims="sort") as ds:
            _check_declared_size(ds, path)
            validate_model(ds)  # the structure, from metadata and coordinates only
            model = ds.load()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read as an xbkg netCDF model: {exc}") from exc
    for var in model.variables.values():
        for key in ("zlib", "complevel", "shuffle", "chunksizes", "fletcher32", "compression",
                    "compression_opts", "source", "original_shape", "preferred_chunks"):
            var.encoding.pop(key, None)
    model.encoding = {}
    try:
        return check_model_values(validate_model(model))
    except ValueError as exc:
        raise ValueError(f"{path}: not an xbkg model: {exc}") from exc


