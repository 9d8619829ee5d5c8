"""A binary cache of astropy's default Earth orientation (IERS) table.

:func:`prefill` keeps astropy's parsed table as one ``.npz`` file and hands the same table back to
astropy in later processes (bit for bit the same transformations); :func:`cached_table` gives
its columns to :mod:`xbkg.sky.erfa_context`. Folder: ``$XBKG_CACHE_DIR``, else
``$XDG_CACHE_HOME/xbkg``, else ``~/.cache/xbkg``; ``XBKG_CACHE_DIR=off`` turns it off (when it
is used: docs/architecture.rst).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from xbkg.io.atomic import atomic_path

__all__ = ["cache_dir", "cached_table", "prefill"]

_FORMAT = 1
_lock = threading.Lock()
_done = False


def cache_dir() -> Path | None:
    """The cache folder (see the module docstring), or None when turned off."""
    env = os.environ.get("XBKG_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xbkg"


def _astropy_version() -> str:
    """astropy's version, without importing astropy when its metadata has it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("astropy")
    except PackageNotFoundError:  # pragma: no cover - astropy without distribution metadata
        import astropy

        return astropy.__version__


def _key() -> str:
    import astropy_iers_data as data

    parts = [str(_FORMAT), _astropy_version()]
    for name in ("IERS_A_FILE", "IERS_A_README", "IERS_B_FILE", "IERS_B_README"):
        path = getattr(data, name)
        st = os.stat(path)
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _astropy_would_read_default() -> bool:
    from astropy.utils import iers

    return (iers.earth_orientation_table._value is None and iers.IERS_Auto.iers_table is None
            and not os.path.exists("finals2000A.all"))


def _save(table, path: Path) -> None:
    arrays, columns = {}, []
    for i, name in enumerate(table.colnames):
        col = table[name]
        unit = getattr(col, "unit", None)
        mask = getattr(col, "mask", None)
        kind = "masked" if mask is not None and not hasattr(col, "to_value") else (
            "quantity" if unit is not None else "column")
        arrays[f"c{i}"] = np.asarray(col.value if kind == "quantity" else col)
        if kind == "masked":
            arrays[f"m{i}"] = np.asarray(mask)
        columns.append([name, kind, None if unit is None else unit.to_string()])
    meta = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in table.meta.items()}
    header = {"columns": columns, "meta": meta,
              "meta_types": {k: type(v).__name__ for k, v in table.meta.items()}}
    arrays["header"] = np.array(json.dumps(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load(path: Path):
    import astropy.units as u
    from astropy.table import Column, MaskedColumn
    from astropy.utils import iers

    with np.load(path) as z:  # numpy refuses object arrays by default: plain data only
        header = json.loads(str(z["header"]))
        cols = []
        for i, (name, kind, unit) in enumerate(header["columns"]):
            data = z[f"c{i}"]
            if kind == "quantity":
                cols.append(u.Quantity(data, unit, copy=False))
            elif kind == "masked":
                cols.append(MaskedColumn(data, mask=z[f"m{i}"], name=name, unit=unit))
            else:
                cols.append(Column(data, name=name, unit=unit))
    types = {"int64": np.int64, "float64": np.float64}
    meta = {k: types.get(header["meta_types"][k], lambda v: v)(v)
            for k, v in header["meta"].items()}
    names = [c[0] for c in header["columns"]]
    return iers.IERS_Auto(cols, names=names, meta=meta, copy=False)


_UNITS = {"MJD": "d", "UT1_UTC": "s", "PM_x": "arcsec", "PM_y": "arcsec"}
_arrays = None


def cached_table() -> dict | None:
    """The columns of the cached table that Alt/Az transforms use, without astropy.

    Returns
    -------
    dict or None
        ``MJD`` (d), ``UT1_UTC`` (s), ``PM_x``, ``PM_y`` (arcsec) as float64 arrays and
        ``predictive_mjd`` (the first predicted date), or None when there is no valid cache
        (turned off, not written yet, another astropy or IERS data version).
    """
    global _arrays
    if _arrays is not None:
        return _arrays
    folder = cache_dir()
    if folder is None or os.path.exists("finals2000A.all"):
        return None
    try:
        with np.load(folder / f"iers-auto-{_key()}.npz") as z:
            header = json.loads(str(z["header"]))
            columns = {name: (i, unit) for i, (name, _, unit) in enumerate(header["columns"])}
            arrays = {}
            for name, unit in _UNITS.items():
                i, got = columns[name]
                if got != unit:
                    return None
                arrays[name] = np.asarray(z[f"c{i}"], dtype=np.float64)
        arrays["predictive_mjd"] = float(header["meta"]["predictive_mjd"])
    except Exception:  # no cache, or a damaged or foreign one
        return None
    _arrays = arrays
    return arrays


def prefill() -> bool:
    """Give astropy its default IERS table from the cache, building the cache if needed.

    Returns True if astropy's table is the cached one (loaded or just written), False if the
    cache was not used (turned off, astropy not on its default table, or an I/O error).
    Called before the first Alt/Az computation of a process; later calls return at once.
    """
    global _done
    if _done:
        return True
    with _lock:
        if _done:
            return True
        folder = cache_dir()
        if folder is None or not _astropy_would_read_default():
            return False
        from astropy.utils import iers

        try:
            path = folder / f"iers-auto-{_key()}.npz"
        except (OSError, ImportError, AttributeError):
            return False
        if path.exists():
            try:
                table = _load(path)
                table._xbkg_cached = True  # the same table as astropy's (xbkg.sky.erfa_context)
                iers.IERS_Auto.iers_table = table
                _done = True
                return True
            except Exception:  # a damaged or foreign file: rebuild it below
                pass
        table = iers.IERS_Auto.open()  # astropy parses its text tables once
        table._xbkg_cached = True
        try:
            _save(table, path)
        except OSError:
            return False
        _done = True
        return True
