"""Gamma-ray source catalogs (gamma-cat, HGPS and similar tables): names, positions, extensions.

:func:`read_source_catalog` reads a FITS or ECSV/CSV table (columns matched case-insensitively,
docs/architecture.rst) into a :class:`SourceCatalog`; :mod:`xbkg.building.sources` turns it
into exclusion circles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xbkg.io.regions import angle_deg

__all__ = ["SourceCatalog", "read_source_catalog", "normalise_name"]

_POSITIONS = (("ra", "dec"), ("raj2000", "dej2000"), ("ra_j2000", "dec_j2000"))
_EXTENSIONS = ("morph_sigma", "morph_sigma2", "size", "extension", "r_ext")
_NAMES = ("common_name", "source_name", "name", "identified_object", "other_names", "gamma_names",
          "tevcat_name")


@dataclass(frozen=True)
class SourceCatalog:
    """Sources of a catalog: ``ra, dec`` (deg), ``extension`` (deg, 0 = point-like) and, per
    source, a tuple of ``names`` (first = display name)."""

    ra: np.ndarray
    dec: np.ndarray
    extension: np.ndarray
    names: tuple
    path: str = ""

    def __len__(self) -> int:
        return int(self.ra.size)

    def find(self, name: str) -> int | None:
        """Index of the source called ``name`` (any alias; case, spaces, ``_`` and ``-``
        ignored), None when there is none.

        >>> cat = SourceCatalog(np.r_[83.6], np.r_[22.0], np.r_[0.0], (("Crab nebula", "3C 144"),))
        >>> cat.find("CrabNebula"), cat.find("crab_nebula"), cat.find("Vela")
        (0, 0, None)
        """
        key = normalise_name(name)
        if not key:
            return None
        for i, aliases in enumerate(self.names):
            if any(normalise_name(a) == key for a in aliases):
                return i
        return None


def normalise_name(name) -> str:
    """A source name for matching: lower case without spaces, ``_``, ``-`` and ``.``.

    >>> normalise_name(" Crab_Nebula ")
    'crabnebula'
    """
    return "".join(ch for ch in str(name).lower() if ch not in " _-.\t")


def _column(table, name: str):
    matches = [c for c in table.colnames if c.lower() == name]
    return table[matches[0]] if matches else None


def _deg(col, where: str) -> np.ndarray:
    values = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
    values = angle_deg(values, getattr(col, "unit", None), f"{where}: column {col.name}")
    return np.asarray(values, dtype=float)


def _names(table, n: int) -> tuple:
    out = [[] for _ in range(n)]
    for key in _NAMES:
        col = _column(table, key)
        if col is None:
            continue
        for i, value in enumerate(np.ma.filled(np.ma.asarray(col).astype(str), "")):
            out[i].extend(a.strip() for a in str(value).split(",") if a.strip() not in ("", "--"))
    return tuple(tuple(names) if names else (f"source {i}",) for i, names in enumerate(out))


def read_source_catalog(path) -> SourceCatalog:
    """Read a source catalog (see the module docstring); ValueError naming the file if unusable."""
    from astropy.table import Table

    path = Path(path).expanduser()
    where = f"exclusion catalog {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file")
    try:
        if path.name.lower().endswith((".ecsv", ".csv")):
            table = Table.read(path, format="ascii.ecsv" if path.name.lower().endswith(".ecsv")
                               else "ascii.csv")
        else:
            table = Table.read(path, hdu=1, format="fits")
    except Exception as exc:  # untrusted bytes: astropy raises many kinds of errors
        raise ValueError(f"{where}: cannot read a table: {type(exc).__name__}: {exc}") from None
    for ra_name, dec_name in _POSITIONS:
        ra, dec = _column(table, ra_name), _column(table, dec_name)
        if ra is not None and dec is not None:
            break
    else:
        raise ValueError(f"{where}: no position columns (ra/dec, RAJ2000/DEJ2000 or RA/DEC); "
                         f"columns: {', '.join(table.colnames)}")
    ra, dec = _deg(ra, where), _deg(dec, where)
    extension = np.zeros(ra.size)
    for key in _EXTENSIONS:
        col = _column(table, key)
        if col is not None:
            extension = np.fmax(extension, _deg(col, where))  # fmax: NaN (masked) -> the other
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    names = _names(table, ra.size)
    return SourceCatalog(ra[ok], dec[ok], np.where(np.isfinite(extension), extension, 0.0)[ok],
                         tuple(n for n, k in zip(names, ok) if k), str(path))
