"""Helpers the benchmark scripts share: the benchmark binning, the build, the simulated store
and the measurement of one task in a child process of ``run_all.py``."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

#: The driver whose ``--task NAME`` runs one measurement in a child process.
RUN_ALL = Path(__file__).with_name("run_all.py")

E_EDGES = (0.1, 100.0, 20)  # log bins, TeV
O_EDGES = (0.0, 2.5, 10)    # deg
FOV_EDGES = "-2.5:2.5:25"
#: Events of a zenith-0 run per mean events of a run, for runs spread over zenith 0-60 deg
#: (measured on 2,000 simulated runs: 6.07e7 events for 50,000 at zenith 0).
ZENITH0_PER_MEAN = 1.6486


def edges():
    import numpy as np

    return (np.geomspace(E_EDGES[0], E_EDGES[1], E_EDGES[2] + 1),
            np.linspace(O_EDGES[0], O_EDGES[1], O_EDGES[2] + 1))


def build(store_dir, kind, align, scheduler, conditions=None):
    import numpy as np

    import xbkg

    e_edges, o_edges = edges()
    store = xbkg.open_datastore(store_dir)
    t0 = time.perf_counter()
    model = xbkg.make_model(store, kind=kind, fov_alignment=align, energy_edges=e_edges,
                            offset_edges=o_edges, fov_edges=FOV_EDGES, offset_max=2.5,
                            scheduler=scheduler, conditions=conditions)
    seconds = time.perf_counter() - t0
    counts = model["counts"].sum("zenith_group").values
    return model, {"seconds": seconds, "events": int(store["EVENT_COUNT"].sum()),
                   "runs": int(store.sizes["obs_id"]), "counted": int(np.sum(counts))}


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all processes) since boot."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + \
        getattr(t, "softirq", 0.0)


def measure(name: str, argv: list[str]) -> dict:
    """Run ``run_all.py --task`` in a child; its result plus peak tree RSS and CPU time."""
    import psutil

    cmd = [sys.executable, str(RUN_ALL), "--task", name] + argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = _busy_seconds()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc))
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    out, _ = child.communicate()
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = _busy_seconds() - busy0
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {child.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.update(peak_rss_mb=peak[0] / 2**20, process_wall_seconds=wall, cpu_seconds=cpu,
                  other_jobs_cores=max(0.0, busy - cpu) / wall)
    print(f"{name} {' '.join(argv[2:])}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def ensure_store(args) -> Path:
    store = Path(args.store)
    if (store / "obs-index.fits.gz").exists():
        return store
    from xbkg.simulate import simulate_store

    # --events is the mean per run: zenith-0 runs get more (higher thresholds at high zenith)
    t0 = time.perf_counter()
    simulate_store(store, n_runs=args.runs, events_per_run=args.events * ZENITH0_PER_MEAN,
                   seed=1, n_jobs=os.cpu_count() or 1)
    print(f"simulated {args.runs} runs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return store
