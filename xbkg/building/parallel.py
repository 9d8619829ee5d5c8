"""Running dask graphs: scheduler choice, local clusters, progress display, graph size."""

from __future__ import annotations

import contextlib

import dask

from xbkg.building import reduce  # noqa: F401  (warm_up: workers import it before the first task)
from xbkg.building.malloc import _MMAP_THRESHOLD, _TRIM_THRESHOLD, MALLOC_SETTINGS, tune_malloc
from xbkg.core.schedulers import local_get, no_client_lookup
from xbkg.sky import fov

__all__ = ["LOCAL_SCHEDULERS", "WORKER_CONFIG", "MALLOC_SETTINGS", "tune_malloc", "warm_up",
           "compute", "no_client_lookup", "local_cluster", "graph_size"]

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")


#: dask settings of the clusters xbkg starts. distributed's defaults cost per-run tasks CPU
#: time: its statistical profiler samples every thread each 10 ms, and its
#: ``MALLOC_TRIM_THRESHOLD_=65536`` turns off glibc's adaptive mmap threshold, so every array
#: above 128 kB (a column of 16k events) is a fresh mmap and page faults on first use. Its
#: monitors (memory every 100 ms, event-loop ticks every 20 ms, system every 500 ms, in every
#: nanny, worker and the scheduler) take CPU from the cores the workers run on, so they wake
#: up less often here (figures in docs/performance.rst). Memory limits are then enforced
#: within 1 s instead of 0.1 s.

WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": _TRIM_THRESHOLD,
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": _MMAP_THRESHOLD,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}

def warm_up() -> None:
    """Do the one-time work of a process's first build: imports (dask imports distributed at
    its first compute), astropy's Earth orientation table (from :mod:`xbkg.sky.iers_cache` after
    the first process) and
    :func:`tune_malloc`. :func:`local_cluster` runs it on its workers as they start, so that
    the first tasks do not stall."""
    with contextlib.suppress(ImportError):  # dask imports it at the first compute
        import distributed  # noqa: F401

    fov.altaz_run_params(83.6, 22.0, geolon=16.5, geolat=-23.27, altitude=1835.0,
                         mjdrefi=51910, mjdreff=7.4287e-4, timesys="TT", tstart=1e8,
                         tstop=1e8 + 1.0)
    tune_malloc()


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
                return dask.compute(*objs, scheduler=local_get(sched))
        # xbkg's graphs are written task by task, already minimal: dask's optimisation (cull,
        # fuse) would only delay the start on the client
        futures = client.compute(list(objs), optimize_graph=False)
        if progress:
            from distributed import progress as dist_progress

            dist_progress(futures)
        return tuple(client.gather(futures))


@contextlib.contextmanager
def local_cluster(n_workers: int, *, threads_per_worker: int = 1, processes: bool = True,
                  memory_limit="auto", warm_up: bool = True, **kwargs):
    """A ``distributed.LocalCluster`` of ``n_workers`` worker processes and its Client.

    Yields the Client, to pass as ``scheduler``; the cluster is closed on exit. Worker
    processes are spawned: a script that uses this must run it under
    ``if __name__ == "__main__":``. Extra keyword arguments go to ``LocalCluster``.

    The workers run with :data:`WORKER_CONFIG`, which makes per-run tasks use less CPU time
    than with distributed's defaults (docs/performance.rst); pass the same settings to
    clusters started otherwise (``dask worker``, dask-jobqueue), e.g. in a dask config file.
    With ``warm_up`` (default), every worker runs :func:`warm_up` before the Client is
    yielded; on other clusters, ``client.run(xbkg.building.parallel.warm_up)`` does the same.
    """
    n_workers = int(n_workers)
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    from distributed import Client, LocalCluster

    with dask.config.set(WORKER_CONFIG):  # read by the scheduler and nannies as they start
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=int(threads_per_worker),
                               processes=processes, memory_limit=memory_limit, **kwargs)
    with cluster, Client(cluster, set_as_default=False) as client:
        if warm_up:
            client.run(_warm_up)
        yield client


_warm_up = warm_up  # the name the ``warm_up`` argument of local_cluster hides


def graph_size(*objs) -> int:
    """Number of tasks in the merged graph of dask collections (keys, once each).

    >>> import dask.array as da
    >>> graph_size(da.ones(10, chunks=5).sum())
    5
    """
    keys = set()
    for obj in objs:
        keys.update(obj.__dask_graph__().keys())
    return len(keys)
