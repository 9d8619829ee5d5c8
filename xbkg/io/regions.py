"""Exclusion regions from files: region tables (FITS, ECSV, CSV) and DS9 region files.

Tables have columns ``RA``, ``DEC`` and ``Radius`` (deg unless a unit says otherwise); DS9 files
may hold sky circles only. The format is chosen by the file name (docs/architecture.rst).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xbkg.core.circles import SkyCircles

__all__ = ["read_exclusion_regions", "read_region_table", "read_ds9_circles", "circles_from_table",
           "angle_deg"]

_NAME_COLUMNS = ("name", "source_name", "source", "target_name")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".fits.gz", ".fit.gz", ".fits", ".fit", ".fts", ".ecsv", ".csv", ".reg"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _looks_like_ds9(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:4096].lower()
    except OSError:
        return False
    return "region file format" in head or "circle(" in head.replace(" ", "")


def read_exclusion_regions(paths) -> SkyCircles:
    """Exclusion circles from one file or a list of files (concatenated, in order).

    Parameters
    ----------
    paths : str, Path or sequence of those
        Region tables (FITS, ECSV, CSV) or DS9 region files.

    Returns
    -------
    xbkg.sky.exclusion.SkyCircles
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    parts = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"exclusion regions: {path}: no such file")
        suffix = _suffix(path)
        if suffix == ".reg" or (suffix not in (".fits.gz", ".fit.gz", ".fits", ".fit", ".fts",
                                               ".ecsv", ".csv") and _looks_like_ds9(path)):
            parts.append(read_ds9_circles(path))
        else:
            parts.append(read_region_table(path))
    return SkyCircles.concatenate(parts)


def read_region_table(path) -> SkyCircles:
    """Exclusion circles from a FITS, ECSV or CSV table with RA, DEC and Radius columns."""
    from astropy.table import Table

    path = Path(path)
    fmt = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}.get(_suffix(path))
    try:
        if fmt is None and _suffix(path) in (".fits.gz", ".fit.gz", ".fits", ".fit", ".fts"):
            table = Table.read(path, format="fits")
        elif fmt is None:
            table = Table.read(path, format="ascii")
        else:
            table = Table.read(path, format=fmt)
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise ValueError(f"exclusion regions: {path}: cannot read as a table ({exc})") from exc
    return circles_from_table(table, where=str(path))


def _column_deg(table, name: str, where: str) -> np.ndarray:
    matches = [c for c in table.colnames if c.lower() == name.lower()]
    if not matches:
        raise ValueError(f"exclusion regions: {where}: no {name} column (columns: "
                         f"{', '.join(table.colnames)}); a region table needs RA, DEC, Radius in deg")
    col = table[matches[0]]
    try:
        values = np.asarray(col, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"exclusion regions: {where}: column {matches[0]} is not numeric") from None
    return angle_deg(values, getattr(col, "unit", None),
                     f"exclusion regions: {where}: column {matches[0]}")


def angle_deg(values: np.ndarray, unit, where: str) -> np.ndarray:
    """Angle column ``values`` in ``unit`` (None, '' or 'deg': as is) converted to deg.

    ValueError naming ``where`` (the file and column) if the unit is not an angle.

    >>> import numpy as np
    >>> angle_deg(np.array([60.0]), "arcmin", "t.ecsv: column Radius")
    array([1.])
    >>> angle_deg(np.array([1.0]), "m", "t.ecsv: column Radius")
    Traceback (most recent call last):
    ...
    ValueError: t.ecsv: column Radius has unit m, not an angle
    """
    import astropy.units as u

    if unit is None or str(unit) in ("", "deg"):
        return values
    try:
        return (values * u.Unit(unit)).to_value(u.deg)
    except (ValueError, u.UnitConversionError):
        raise ValueError(f"{where} has unit {unit!s}, not an angle") from None


def circles_from_table(table, *, where: str = "table") -> SkyCircles:
    """Exclusion circles from an astropy Table with RA, DEC and Radius columns (any case)."""
    ra, dec, radius = (_column_deg(table, n, where) for n in ("RA", "DEC", "Radius"))
    names = ()
    for col in table.colnames:
        if col.lower() in _NAME_COLUMNS:
            names = tuple(str(v).strip() for v in table[col])
            break
    try:
        return SkyCircles(ra, dec, radius, names)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_ds9_circles(path) -> SkyCircles:
    """Exclusion circles from a DS9 region file of sky circles (via the ``regions`` package)."""
    try:
        from regions import CircleSkyRegion, Regions
    except ImportError:
        raise ImportError(f"exclusion regions: {path}: reading DS9 files needs the 'regions' "
                          "package (pip install regions); a region table (FITS, ECSV or CSV "
                          "with RA, DEC, Radius) needs nothing more") from None

    path = Path(path)
    try:
        regions = Regions.read(str(path), format="ds9")
    except Exception as exc:  # the regions parser raises its own error types
        raise ValueError(f"exclusion regions: {path}: cannot read as a DS9 region file ({exc})") from exc
    ra, dec, radius, names = [], [], [], []
    for i, region in enumerate(regions):
        if not isinstance(region, CircleSkyRegion):
            kind = type(region).__name__
            hint = (" (image coordinates: give sky coordinates, e.g. fk5 or icrs)"
                    if "Pixel" in kind else "")
            raise ValueError(f"exclusion regions: {path}: region {i + 1} is a {kind}; only sky "
                             f"circles are supported{hint}")
        centre = region.center.icrs
        ra.append(float(centre.ra.deg))
        dec.append(float(centre.dec.deg))
        radius.append(float(region.radius.to_value("deg")))
        names.append(str(region.meta.get("text", f"{path.name}:{i + 1}")))
    if not ra:
        raise ValueError(f"exclusion regions: {path}: no region in the file")
    try:
        return SkyCircles(ra, dec, radius, tuple(names))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
