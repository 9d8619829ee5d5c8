"""Helpers for testing code that uses xbkg: laziness, model equality, run reads, small stores.

Usable in any test suite (none needs pytest): :func:`raise_if_dask_computes` checks that
building a graph computes nothing, :func:`assert_models_equal` and
:func:`assert_models_identical` compare two models, :func:`count_run_reads` and
:func:`count_calls` count how often runs are read, :func:`small_store` writes a small
simulated GADF store.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from xbkg.building import reduce
from xbkg.simulate import simulate_store

__all__ = [
    "MEANING_ATTRS",
    "ComputeCounter",
    "raise_if_dask_computes",
    "assert_models_equal",
    "assert_models_identical",
    "count_calls",
    "count_run_reads",
    "small_store",
]

#: Model attributes that define what the numbers mean (compared by :func:`assert_models_equal`).
MEANING_ATTRS = ("xbkg_model_version", "kind", "fov_alignment", "offset_max")


class ComputeCounter:
    """A dask scheduler that counts computations and raises past ``max_computes``.

    Runs the graph with the synchronous scheduler while allowed; the error message says
    "a dask computation was triggered".
    """

    def __init__(self, max_computes: int = 0):
        self.max_computes = int(max_computes)
        self.total_computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"a dask computation was triggered ({self.total_computes} "
                               f"computations, at most {self.max_computes} allowed)")
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0):
    """Context manager making any dask computation beyond ``max_computes`` raise RuntimeError.

    Sets a counting scheduler (:class:`ComputeCounter`) as dask's default, so building a
    graph stays allowed and computing it is an error (an explicit ``scheduler=`` given to
    ``compute`` still wins).

    >>> import dask.array as da
    >>> x = da.ones(10, chunks=5)
    >>> with raise_if_dask_computes():
    ...     y = (x + 1).sum()  # building a graph computes nothing
    >>> with raise_if_dask_computes():
    ...     y.compute()
    Traceback (most recent call last):
    ...
    RuntimeError: a dask computation was triggered (1 computations, at most 0 allowed)
    >>> with raise_if_dask_computes(max_computes=1):
    ...     int(y.compute())
    20
    """
    return dask.config.set(scheduler=ComputeCounter(max_computes))


def _data_names(ds: xr.Dataset) -> list[str]:
    return sorted(str(n) for n in ds.variables)


def _compare_values(name: str, a: xr.Variable, b: xr.Variable, rtol: float) -> None:
    if a.dims != b.dims or a.shape != b.shape:
        raise AssertionError(f"{name}: dims {a.dims} {a.shape} differ from {b.dims} {b.shape}")
    x, y = np.asarray(a.values), np.asarray(b.values)
    if x.dtype.kind in "fc" and y.dtype.kind in "fc" and rtol:
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True, err_msg=name)
        return
    if x.dtype.kind in "biufc" and x.dtype != y.dtype:
        raise AssertionError(f"{name}: dtype {x.dtype} differs from {y.dtype}")
    np.testing.assert_array_equal(x, y, err_msg=name)


def assert_models_equal(a: xr.Dataset, b: xr.Dataset, *, rtol: float = 0.0) -> None:
    """Assert two models hold the same numbers: same variables and coordinates (names, dims,
    values; floats within ``rtol``, numbers exactly and of the same dtype otherwise) and the
    same :data:`MEANING_ATTRS`. Other attributes (provenance, version) are not compared.

    Lazy (dask-backed) models are computed.

    >>> import numpy as np, xarray as xr
    >>> m = xr.Dataset({"rate": ("energy", np.array([1.0, 2.0]))}, attrs={"kind": "2d"})
    >>> assert_models_equal(m, m.copy(deep=True))
    >>> assert_models_equal(m, m * (1 + 1e-12), rtol=1e-9)
    >>> assert_models_equal(m, m.assign(rate=m.rate * 2))
    Traceback (most recent call last):
    ...
    AssertionError: ...
    """
    if _data_names(a) != _data_names(b):
        raise AssertionError(f"variables differ: {_data_names(a)} vs {_data_names(b)}")
    for key in MEANING_ATTRS:
        if a.attrs.get(key) != b.attrs.get(key):
            raise AssertionError(f"attribute {key}: {a.attrs.get(key)!r} vs {b.attrs.get(key)!r}")
    for name in _data_names(a):
        _compare_values(name, a.variables[name], b.variables[name], rtol)


def assert_models_identical(a: xr.Dataset, b: xr.Dataset, *, ignore_attrs=()) -> None:
    """Assert two models are the same bit for bit: every variable (values and dtype) and every
    attribute of the model and of its variables, except the model attributes ``ignore_attrs``
    (for example ``("provenance",)``).

    >>> import numpy as np, xarray as xr
    >>> m = xr.Dataset({"counts": ("energy", np.array([1, 2]))}, attrs={"provenance": "{}"})
    >>> assert_models_identical(m, m.copy(deep=True))
    >>> other = m.assign_attrs(provenance='{"runs": 2}')
    >>> assert_models_identical(m, other, ignore_attrs=("provenance",))
    >>> assert_models_identical(m, other)
    Traceback (most recent call last):
    ...
    AssertionError: ...
    """
    assert_models_equal(a, b)
    a, b = a.copy(), b.copy()
    for key in ignore_attrs:
        a.attrs.pop(key, None)
        b.attrs.pop(key, None)
    xr.testing.assert_identical(a, b)


@contextlib.contextmanager
def count_calls(module, name: str, key: Callable | None = None,
                counter: Counter | None = None) -> Iterator[Counter]:
    """Count the calls of ``module.name`` inside the ``with`` block (the real function runs).

    ``key(*args, **kwargs)`` labels each call (default: ``name``); the yielded
    :class:`~collections.Counter` (``counter`` when given, to share one between several
    functions) holds the number of calls per label. The attribute is restored on exit. Only
    calls made in this process are seen (threads and synchronous schedulers, not worker
    processes).

    >>> import math
    >>> with count_calls(math, "sqrt") as calls:
    ...     _ = math.sqrt(4.0) + math.sqrt(9.0)
    >>> calls
    Counter({'sqrt': 2})
    """
    real = getattr(module, name)
    counter = Counter() if counter is None else counter
    lock = threading.Lock()

    def counted(*args, **kwargs):
        label = name if key is None else key(*args, **kwargs)
        with lock:
            counter[label] += 1
        return real(*args, **kwargs)

    setattr(module, name, counted)
    try:
        yield counter
    finally:
        setattr(module, name, real)


def count_run_reads() -> contextlib.AbstractContextManager[Counter]:
    """Count, per OBS_ID, the runs a model build reads inside the ``with`` block.

    Every run a build reads goes through :func:`xbkg.building.reduce.run_cubes`: the yielded
    Counter maps each obs_id to its number of reads (local schedulers only, see
    :func:`count_calls`).

    >>> import tempfile, xbkg
    >>> store = small_store(tempfile.mkdtemp(), n_runs=2)
    >>> with count_run_reads() as reads:
    ...     model = xbkg.make_model(store, kind="2d", selection="all", scheduler="threads")
    >>> dict(reads)
    {1: 1, 2: 1}
    """
    return count_calls(reduce, "run_cubes", key=lambda info, *args, **kwargs: info.obs_id)


def small_store(path, *, n_runs: int = 4, events_per_run: float = 300, seed: int = 0,
                **options) -> Path:
    """A small simulated GADF store in ``path/store`` (:func:`xbkg.simulate.simulate_store`
    with a few runs of a few hundred events: seconds to write, milliseconds to build).

    ``options`` go to :func:`~xbkg.simulate.simulate_store` (``zenith_range``, ``style``,
    ``sources``, ``truth``, ...). Returns the store directory.

    >>> import tempfile, xbkg
    >>> store = small_store(tempfile.mkdtemp(), n_runs=2, events_per_run=100)
    >>> int(xbkg.open_datastore(store).sizes["obs_id"])
    2
    """
    return simulate_store(Path(path) / "store", n_runs=n_runs, events_per_run=events_per_run,
                          seed=seed, **options)
