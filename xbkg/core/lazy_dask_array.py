"""Keep xarray from importing :mod:`dask.array` before anything uses a dask array.

:func:`install` hands xarray :class:`LazyDaskArray` for its ``isinstance`` checks: it answers as
``dask.array.Array`` does once ``dask.array`` is imported, and False before (docs/architecture.rst).

>>> import dask.array as da, numpy as np
>>> isinstance(da.ones(3), LazyDaskArray), isinstance(np.ones(3), LazyDaskArray)
(True, False)
"""

from __future__ import annotations

import sys

__all__ = ["LazyDaskArray", "install"]


def _dask_array_class():
    """``dask.array.Array`` when ``dask.array`` is imported, else None."""
    module = sys.modules.get("dask.array")
    return getattr(module, "Array", None)


class _LazyDaskArrayMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        real = _dask_array_class()
        return real is not None and isinstance(obj, real)

    def __subclasscheck__(cls, sub) -> bool:
        real = _dask_array_class()
        return real is not None and issubclass(sub, real)


class LazyDaskArray(metaclass=_LazyDaskArrayMeta):
    """Stands for ``dask.array.Array`` in ``isinstance`` checks without importing it."""


def install() -> bool:
    """Hand xarray :class:`LazyDaskArray` as the dask array type; True when installed.

    A no-op (False) when ``dask.array`` is already imported (nothing to save), when xarray
    already cached the type, or when dask or the xarray internals are missing.
    """
    if "dask.array" in sys.modules:
        return False
    try:
        import dask
        from packaging.version import Version
        from xarray.namedarray import pycompat
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    duck = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(cache, dict) or duck is None or "dask" in cache:
        return False
    entry = duck.__new__(duck)
    entry.module, entry.version = dask, Version(dask.__version__)
    entry.type, entry.available = (LazyDaskArray,), True
    cache["dask"] = entry
    return True
