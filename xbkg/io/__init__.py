"""File formats: netCDF models, GADF FITS background HDUs, DL3 index tables.

Format knowledge lives only in this package.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from xbkg.io.gadf import open_bkg_fits
from xbkg.io.netcdf import is_netcdf, read_netcdf, write_netcdf

__all__ = ["save_model", "open_model"]


def save_model(model: xr.Dataset, path, *, overwrite: bool = False) -> Path:
    """Save a model as netCDF4 (h5netcdf), atomically. Returns the path.

    Lazy (dask-backed) models are computed while writing.
    """

    return write_netcdf(model, path, overwrite=overwrite)


def open_model(path, *, hdu=None, fov_alignment=None) -> xr.Dataset:
    """Open a background model: an xbkg netCDF file, or any GADF BKG_2D/BKG_3D FITS file.

    Parameters
    ----------
    path : str or Path
    hdu : str or int, optional
        FITS only: the HDU to read (default: the first background HDU).
    fov_alignment : {"ALTAZ", "RADEC"}, optional
        FITS only: override a missing or wrong FOVALIGN keyword.
    """

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if is_netcdf(path):
        if hdu is not None or fov_alignment is not None:
            raise ValueError(f"{path}: hdu/fov_alignment apply to FITS files only")
        return read_netcdf(path)

    return open_bkg_fits(path, hdu=hdu, fov_alignment=fov_alignment)
