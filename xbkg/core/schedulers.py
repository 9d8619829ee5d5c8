"""dask's scheduler, chosen without importing distributed when no Client can exist."""

from __future__ import annotations

import contextlib
import sys

import dask

__all__ = ["local_get", "no_client_lookup"]


def local_get(scheduler):
    """A local scheduler as dask's get function, when no distributed Client can exist.

    dask looks for a default distributed Client at each compute, importing distributed
    (docs/performance.rst) even for ``scheduler="synchronous"``; a callable skips that. While
    distributed is not imported no Client exists, so the callable is the scheduler dask
    would pick: the named one, or dask's configured or default (threaded) one for None.
    """
    if "distributed" in sys.modules:
        return scheduler
    import dask.base
    import dask.threaded

    if scheduler is None:
        scheduler = dask.config.get("scheduler", None)
        if scheduler is None:
            return dask.threaded.get
    if isinstance(scheduler, str):
        return dask.base.named_schedulers.get(scheduler.lower(), scheduler)
    return scheduler


@contextlib.contextmanager
def no_client_lookup():
    """Within the block, code that asks dask for its scheduler does not import distributed to
    look for a Client that cannot exist.

    xarray's ``to_netcdf`` asks dask for the scheduler and then imports
    ``dask.distributed`` to compare it with a Client, even for in-memory data. While
    distributed is not imported, the block sets dask's default scheduler to
    :func:`local_get`'s and makes ``import dask.distributed`` fail (xarray then takes the
    threaded scheduler, which is what it would find). A no-op once distributed is imported
    or a scheduler is configured. For short, single-threaded blocks (file writes).
    """
    if "distributed" in sys.modules or dask.config.get("scheduler", None) is not None:
        yield
        return
    blocked = "dask.distributed" not in sys.modules
    if blocked:
        sys.modules["dask.distributed"] = None  # import raises ImportError
    try:
        with dask.config.set(scheduler=local_get(None)):
            yield
    finally:
        if blocked and sys.modules.get("dask.distributed", 0) is None:
            del sys.modules["dask.distributed"]
