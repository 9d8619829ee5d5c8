"""Running dask graphs: scheduler choice and progress display."""

from __future__ import annotations

import contextlib

import dask

__all__ = ["LOCAL_SCHEDULERS", "compute"]

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")


@contextlib.contextmanager
def _client(scheduler):
    """Yield (dask scheduler argument, distributed client or None)."""
    if scheduler is None or scheduler in LOCAL_SCHEDULERS:
        yield scheduler, None
        return
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler, scheduler
        return
    if not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be one of {LOCAL_SCHEDULERS}, an address or a Client, "
                         f"got {scheduler!r}")
    client = Client(scheduler, set_as_default=False)
    try:
        yield client, client
    finally:
        client.close()


def compute(*objs, scheduler=None, progress: bool = False):
    """Compute dask collections together on ``scheduler`` with an optional progress bar.

    ``scheduler``: None (dask's default), "threads", "processes", "synchronous", a
    ``distributed.Client`` or a scheduler address such as ``"tcp://host:8786"``.
    """
    with _client(scheduler) as (sched, client):
        if client is None:
            bar = contextlib.nullcontext()
            if progress:
                from dask.diagnostics import ProgressBar

                bar = ProgressBar(dt=0.5)
            with bar:
                return dask.compute(*objs, scheduler=sched)
        futures = client.compute(list(objs))
        if progress:
            from distributed import progress as dist_progress

            dist_progress(futures)
        return tuple(client.gather(futures))
