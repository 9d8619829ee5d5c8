"""All build benchmarks in one run, on one simulated store; writes docs/benchmarks.md.

    python benchmarks/run_all.py [--store DIR] [--runs 2000] [--events 50000]
                                 [--out docs/benchmarks.md] [--json results.json]

On the same store (simulated first when DIR has no obs index; ``--events`` is the mean number
of events per run, the store's zenith range 0-60 deg lowers high-zenith runs), each in its
own process, whose whole process tree (cluster workers included) is sampled for resident
memory every 50 ms:

* reference: the seed notebook's estimator on gammapy 2.x (DataStore, loop over runs,
  ``np.histogram2d`` of energy x offset), 2D, one core;
* per-event astropy Alt/Az FoV coordinates (``SkyCoord.transform_to(AltAz)`` of events and
  pointing with per-event times, then gammapy ``sky_to_fov``) on ``--astropy-events`` events
  of the first run, one core, compared with :func:`xbkg.sky.fov.radec_to_altaz_fov`;
* xbkg 2D, 3D RADEC and 3D ALTAZ on one core (dask synchronous scheduler);
* xbkg 3D ALTAZ on a ``distributed.LocalCluster`` of 1 and of 2 worker processes (one thread
  each; cluster start-up and worker warm-up are not timed);
* one-core builds run :func:`xbkg.building.parallel.warm_up` (imports, astropy's Earth orientation
  table: a once-per-process cost, reported beside the table) before the clock starts, as the
  cluster's workers do;
* the 3D ALTAZ build on one core without and with ``--conditions`` (per-run statistics in
  the fit bins and the conditional fit; ``benchmarks/bench_conditional.py``), and the fit alone;
* graph size (tasks) of the lazy 3D ALTAZ model for 100, 500, ... runs of the store;
* what a user feels (``benchmarks/bench_cold.py``), on the real store ``--dr1`` (H.E.S.S.
  DR1, gzipped; skipped when absent): cold ``xbkg make-models`` against the seed notebook's
  gammapy loop as a script (fresh processes, ``--cold-repeat`` each in turn, medians), the
  first 3D ALTAZ build of a process over a warm one and warm 2D against the gammapy loop;
  and a store of ``--gz-runs`` gzipped runs simulated like the DR1 files, built on one core
  next to the raw inflate speed of its bytes.

Times are wall clock; CPU is the user + system time of the process tree. The machine may be
shared: CPU time and the events/s per CPU second are the figures that do not depend on load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from _common import ZENITH0_PER_MEAN, build, edges, ensure_store, measure  # noqa: E402

# --------------------------------------------------------------------------------------------
# measurements, each run in a child process: ``run_all.py --task NAME --store DIR``


def task_gammapy(store_dir, args) -> dict:
    """The seed notebook's estimator on gammapy 2.x (one core)."""
    import numpy as np
    from bench_build import gammapy_loop  # benchmarks/ is on sys.path as a script
    from gammapy.data import DataStore

    e_edges, o_edges = edges()
    obs_ids = None  # every run
    if args.reference_runs:
        obs_ids = DataStore.from_dir(store_dir).obs_table["OBS_ID"].tolist()[:args.reference_runs]
    t0 = time.perf_counter()
    counts, _, n_events, n_runs = gammapy_loop(store_dir, e_edges, o_edges, obs_ids)
    seconds = time.perf_counter() - t0
    np.save(Path(args.scratch) / "gammapy_counts.npy", counts)
    return {"seconds": seconds, "events": n_events, "runs": n_runs}


def task_astropy(store_dir, args) -> dict:
    """Per-event astropy Alt/Az FoV coordinates of the first run's first events (one core)."""
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time, TimeDelta
    from astropy.utils import iers
    from gammapy.utils.coordinates import sky_to_fov

    import xbkg
    from xbkg.sky import fov
    from xbkg.sky.earth import run_altaz_params
    from xbkg.store.events import read_run_events, run_infos

    iers.conf.auto_download = False  # bundled IERS tables, no network
    store = xbkg.open_datastore(store_dir)
    info = run_infos(store.isel(obs_id=[0]))[0]
    cols, _ = read_run_events(info.events_file, info.events_hdu)
    n = min(int(args.astropy_events), cols["RA"].size)
    ra, dec, t = cols["RA"][:n], cols["DEC"][:n], cols["TIME"][:n]

    def route(sl):
        loc = EarthLocation.from_geodetic(info.geolon * u.deg, info.geolat * u.deg,
                                          info.altitude * u.m)
        obstime = (Time(info.mjdrefi, info.mjdreff, format="mjd",
                        scale=info.timesys.lower()) + TimeDelta(t[sl], format="sec"))
        frame = AltAz(obstime=obstime, location=loc, pressure=0 * u.hPa)
        ev = SkyCoord(ra[sl], dec[sl], unit="deg").transform_to(frame)
        m = ev.shape[0]
        pnt = SkyCoord(np.full(m, info.ra_pnt), np.full(m, info.dec_pnt),
                       unit="deg").transform_to(frame)
        return sky_to_fov(ev.az, ev.alt, pnt.az, pnt.alt)

    route(slice(0, 10))  # warm-up: astropy loads its Earth-orientation tables once
    t0 = time.perf_counter()
    lon, lat = route(slice(None))
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = run_altaz_params(info)
    t_params = time.perf_counter() - t0
    ra_all, dec_all, t_all = cols["RA"], cols["DEC"], cols["TIME"]
    best = np.inf
    for _ in range(5):  # xbkg's ALTAZ coordinate kernel alone, on the whole run
        t0 = time.perf_counter()
        mine_all = fov.radec_to_altaz_fov(ra_all, dec_all, t_all, params)
        best = min(best, time.perf_counter() - t0)
    mine = [c[:n] for c in mine_all]
    diff = 3600 * np.hypot((mine[0] - lon.deg) * np.cos(np.radians(lat.deg)), mine[1] - lat.deg)
    return {"seconds": seconds, "events": n, "max_diff_arcsec": float(diff.max()),
            "kernel_seconds": best, "kernel_events": int(ra_all.size),
            "run_params_seconds": t_params}


def task_xbkg(store_dir, args) -> dict:
    """One xbkg build on one core (synchronous scheduler) or on a LocalCluster."""
    import numpy as np

    kind, align = args.kind, args.align
    if not args.workers:
        from xbkg.building.parallel import warm_up

        t0 = time.perf_counter()
        warm_up()  # once per process: imports, astropy's Earth orientation table
        warm = time.perf_counter() - t0
        model, out = build(store_dir, kind, align, "synchronous")
        out["warm_up_seconds"] = warm
        if kind == "2d" and (Path(args.scratch) / "gammapy_counts.npy").exists():
            ref = np.load(Path(args.scratch) / "gammapy_counts.npy")
            ours = model["counts"].sum("zenith_group").values
            out["differs_from_gammapy"] = float(np.abs(ours - ref).sum() / ref.sum())
        return out
    from xbkg.building.parallel import local_cluster

    t0 = time.perf_counter()
    with local_cluster(args.workers) as client:
        startup = time.perf_counter() - t0  # local_cluster warms its workers up
        model, out = build(store_dir, kind, align, client)
    out["cluster_startup_seconds"] = startup
    return out


def task_graph(store_dir, args) -> dict:
    """Tasks in the lazy 3D ALTAZ graph for growing numbers of runs (nothing is read)."""
    import xbkg
    from xbkg.building.parallel import graph_size

    store = xbkg.open_datastore(store_dir)
    out = {}
    for n in args.graph_runs:
        n = min(n, store.sizes["obs_id"])
        t0 = time.perf_counter()
        model = xbkg.make_model(store.isel(obs_id=slice(0, n)), kind="3d", fov_alignment="altaz",
                                compute_now=False)
        seconds = time.perf_counter() - t0
        out[str(n)] = {"tasks": graph_size(model["counts"].data, model["exposure"].data),
                       "build_seconds": seconds}
    return {"graph": out}


def _numpy_loop(n_loops: int) -> float:
    """Seconds of a streaming numpy loop (sin, cos, sqrt of 50,000 values, as in a kernel)."""
    import numpy as np

    x = np.random.default_rng(0).random(50_000)
    t0 = time.perf_counter()
    for _ in range(n_loops):
        np.sqrt(np.sin(x) * np.cos(x) + x)
    return time.perf_counter() - t0


def task_ceiling(store_dir, args) -> dict:
    """What the machine gives two processes: the same numpy loop in 1 and in 2 processes."""
    from concurrent.futures import ProcessPoolExecutor

    n = 4000
    one = min(_numpy_loop(n) for _ in range(2))
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_numpy_loop, [10, 10]))  # start both processes first
        t0 = time.perf_counter()
        list(pool.map(_numpy_loop, [n, n]))
        two = time.perf_counter() - t0
    return {"one_process_seconds": one, "two_processes_seconds": two,
            "speedup": 2 * one / two}


def task_cold(store_dir, args) -> dict:
    """Cold command-line runs on the real store (fresh processes)."""
    from bench_cold import cold_cli

    return cold_cli(args.dr1, repeat=args.cold_repeat)


def task_first_call(store_dir, args) -> dict:
    """The first 3D ALTAZ build of a process and warm 2D builds, on the real store."""
    from bench_cold import first_call

    return first_call(args.dr1)


def task_gzip(store_dir, args) -> dict:
    """One-core 2D build of the gzipped store and the inflate speed of its bytes."""
    from bench_cold import gzip_store

    return gzip_store(args.gz_store)


def task_conditional(store_dir, args) -> dict:
    """One-core 3D ALTAZ build with ``--conditions`` (empty: plain) and the fit alone."""
    from bench_conditional import task_conditional as task

    return task(store_dir, args)


TASKS = {"gammapy": task_gammapy, "astropy": task_astropy, "xbkg": task_xbkg, "graph": task_graph,
         "ceiling": task_ceiling, "cold": task_cold, "first call": task_first_call,
         "gzip": task_gzip, "conditional": task_conditional}
USER_LABELS = ("cold", "first call", "gzip")

# --------------------------------------------------------------------------------------------
# the driver: one child process per measurement, process-tree memory sampled from here


def _ensure_gz_store(args) -> Path:
    store = Path(args.gz_store)
    if not (store / "obs-index.fits.gz").exists():
        from xbkg.simulate import simulate_store

        simulate_store(store, n_runs=args.gz_runs, events_per_run=args.events * ZENITH0_PER_MEAN,
                       seed=2, n_jobs=os.cpu_count() or 1, compress=9)  # gzip -9 as DR1
    return store


def report_user(res: dict, args) -> str:
    """The section on cold runs, first calls, gzipped stores and workers, with targets."""
    lines, targets = ["", "What a user feels (fresh processes and first calls; the machine "
                      "may be shared: figures are noisy):", ""], []
    if "cold" in res:
        c = res["cold"]
        g, x2, x3 = c["gammapy script 2D off"], c["xbkg 2D off"], c["xbkg 3D ALTAZ all"]
        lines += [f"Cold command-line runs on H.E.S.S. DR1 (gzipped), medians of "
                  f"{g['repeat']} fresh processes each, in turn:", "",
                  "| command | wall (s) | CPU (s) | vs gammapy script |", "|---|---|---|---|"]
        for name, r in (("gammapy script 2D off", g), ("xbkg 2D off", x2),
                        ("xbkg 3D ALTAZ all", x3)):
            vs = f"{g['wall'] / r['wall']:.1f}x" if "2D" in name else ""
            lines.append(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {vs} |")
        if "xbkg 3D ALTAZ all, with report" in c:  # the default: the HTML report too
            r = c["xbkg 3D ALTAZ all, with report"]
            lines.append(f"| xbkg 3D ALTAZ all, with the default HTML report | {r['wall']:.2f} | "
                         f"{r['cpu']:.2f} |  |")
            lines += ["", "(the timed xbkg commands run with --no-report: the gammapy script "
                      "writes no report either; the last row is the default command; every "
                      "process may read and write bytecode, as installed packages do, even "
                      "with PYTHONDONTWRITEBYTECODE set)"]
        targets += [(f"cold make-models DR1 3D ALTAZ, 105 runs, at most 1.5 s wall: "
                     f"{x3['wall']:.2f} s (CPU {x3['cpu']:.2f} s)", x3["wall"] <= 1.5),
                    (f"cold 2D on the off runs at least 3x the cold gammapy script: "
                     f"{g['wall'] / x2['wall']:.1f}x (CPU {g['cpu'] / x2['cpu']:.1f}x)",
                     g["wall"] / x2["wall"] >= 3)]
    if "first call" in res:
        f = res["first call"]
        over = f["altaz_first"] - f["altaz_warm"]
        warm_x = f["gammapy_2d"] / f["warm_2d"]
        lines += ["", f"* In one process on DR1: first 3D ALTAZ build {f['altaz_first']:.2f} s, "
                  f"then {f['altaz_warm']:.2f} s (overhead {over:.2f} s); warm 2D of the "
                  f"{f['off_runs']} off runs {f['warm_2d']:.3f} s against the gammapy loop's "
                  f"{f['gammapy_2d']:.2f} s ({warm_x:.1f}x)."]
        if "altaz_extent_auto" in f:
            lines.append(f"* Measuring the FoV extent in the build's pass (DR1 has no OFFSET_MAX): "
                         f"warm 3D ALTAZ {f['altaz_extent_auto']:.2f} s, against "
                         f"{f['altaz_extent_none']:.2f} s with --fov-extent none "
                         f"({f['altaz_extent_auto'] / f['altaz_extent_none'] - 1:+.0%}).")
        targets += [(f"first ALTAZ build at most 0.2 s over a warm one: {over:.2f} s", over <= 0.2),
                    (f"warm in-process 2D on DR1 at least 10x the gammapy loop: {warm_x:.1f}x",
                     warm_x >= 10)]
    if "gzip" in res:
        z = res["gzip"]
        rate, limit = z["events"] / z["build_seconds"], z["events"] / z["inflate_seconds"]
        lines += [f"* Gzipped store ({z['runs']:,} runs simulated like the DR1 files, gzip -9, "
                  f"{z['compressed_mb']:.0f} MB -> {z['raw_mb']:.0f} MB): 2D on one core "
                  f"{rate / 1e6:.2f} M events/s; inflating the same bytes alone "
                  f"({z['inflater']}) {limit / 1e6:.2f} M events/s "
                  f"({z['raw_mb'] / z['inflate_seconds']:.0f} MB/s): the build runs at "
                  f"{rate / limit:.0%} of the inflate limit."]
    if "xbkg 2D" in res and "xbkg 3D ALTAZ" in res:
        r2, r3 = (res[k]["events"] / res[k]["seconds"] / 1e6 for k in ("xbkg 2D", "xbkg 3D ALTAZ"))
        targets += [(f"uncompressed 2D at least 20 M events/s on one core: {r2:.2f}", r2 >= 20),
                    (f"uncompressed 3D ALTAZ at least 10 M events/s on one core: {r3:.2f}",
                     r3 >= 10)]
    if "xbkg 3D ALTAZ 2 workers" in res and "xbkg 3D ALTAZ 1 worker" in res:
        one, two = res["xbkg 3D ALTAZ 1 worker"], res["xbkg 3D ALTAZ 2 workers"]
        targets += [(f"2 workers peak RSS of the process tree at most 500 MB: "
                     f"{two['peak_rss_mb']:.0f} MB", two["peak_rss_mb"] <= 500),
                    (f"2 workers at least 1.8x one worker: {one['seconds'] / two['seconds']:.2f}x"
                     + _load_note(one, two), one["seconds"] / two["seconds"] >= 1.8)]
    lines += ["", "Against the targets of the user-facing speed issue:", ""]
    lines += [f"* {'met' if ok else 'NOT met'}: {text}" for text, ok in targets]
    return "\n".join(lines) + "\n"


def _row(label, cores, r, ref=None):
    rate = r["events"] / r["seconds"]
    cpu_rate = r["events"] / r["cpu_seconds"]
    vs = f"{ref / r['seconds']:.1f}x" if ref else ""
    return (f"| {label} | {cores} | {r['seconds']:.1f} | {rate / 1e6:.2f} | {cpu_rate / 1e6:.2f} | "
            f"{vs} | {r['peak_rss_mb']:.0f} | {r['other_jobs_cores']:.1f} |")


def report(res: dict, args) -> str:
    g, a = res["gammapy"], res["astropy"]
    n_events, n_runs = res["xbkg 2D"]["events"], res["xbkg 2D"]["runs"]
    ref_time = g["seconds"] * n_events / g["events"]  # gammapy time scaled to the whole store
    lines = [
        "<!-- written by benchmarks/run_all.py; do not edit by hand -->",
        f"Store: {n_runs:,} simulated runs, {n_events:,} events (uncompressed FITS). "
        f"Machine: {os.cpu_count()} cores, shared with other jobs while measuring: wall "
        "times vary with their load (last column: cores they used on average during each "
        "measurement); CPU figures vary less. Times exclude Python start-up and imports; "
        "CPU time is that of the whole process tree, start-up included.",
        "",
        "| build | cores | time (s) | M events/s | M events per CPU s | speed vs gammapy loop | "
        "peak RSS (MB) | other jobs (cores) |",
        "|---|---|---|---|---|---|---|---|",
        _row("gammapy loop (seed notebook), 2D" + ("" if g["events"] == n_events else
             f" ({g['runs']} runs)"), "1", g),
    ]
    for label in ("xbkg 2D", "xbkg 3D RADEC", "xbkg 3D ALTAZ"):
        lines.append(_row(label, "1", res[label], ref_time))
    for w in (1, 2):
        lines.append(_row("xbkg 3D ALTAZ, LocalCluster", f"{w} worker{'s' * (w > 1)}",
                          res[f"xbkg 3D ALTAZ {w} worker{'s' * (w > 1)}"], ref_time))
    one, two = res["xbkg 3D ALTAZ 1 worker"], res["xbkg 3D ALTAZ 2 workers"]
    alt = res["xbkg 3D ALTAZ"]
    astro_rate = a["events"] / a["seconds"]
    ceiling = ""
    if "ceiling" in res:  # what this machine gives a second process
        ceiling = (" For scale: the same numpy loop (sin, cos, sqrt of 50,000 values) run by 2 "
                   f"processes at once is {res['ceiling']['speedup']:.2f}x one process here.")
    lines += [
        "",
        f"* Per-event astropy Alt/Az FoV coordinates: {astro_rate:,.0f} events/s "
        f"({a['events']:,} events, one core); the whole xbkg 3D ALTAZ build (reading, "
        f"coordinates, histograms, exposure) runs at {alt['events'] / alt['seconds']:,.0f} "
        f"events/s on one core: **{alt['events'] / alt['seconds'] / astro_rate:,.0f}x**. "
        f"xbkg and astropy coordinates differ by at most {a['max_diff_arcsec']:.1e} arcsec.",
        f"* 2D: xbkg on one core is **{ref_time / res['xbkg 2D']['seconds']:.1f}x** the gammapy "
        "loop; both count the same events in the same bins (relative difference "
        f"{res['xbkg 2D'].get('differs_from_gammapy', float('nan')):.1e}, float32 offsets in "
        "gammapy at bin edges).",
        f"* xbkg's ALTAZ coordinate kernel alone (`xbkg.sky.fov.radec_to_altaz_fov`, a whole "
        f"run of {a['kernel_events']:,} events, constants computed once per run in "
        f"{1e3 * a['run_params_seconds']:.0f} ms): "
        f"{a['kernel_events'] / a['kernel_seconds'] / 1e6:.1f} M events/s, "
        f"**{a['kernel_events'] / a['kernel_seconds'] / astro_rate:,.0f}x** astropy.",
        f"* Scaling: 2 workers are **{one['seconds'] / two['seconds']:.2f}x** one worker in wall "
        f"time (fastest of {res.get('_meta', {}).get('repeat', args.repeat)} runs each, in "
        f"turn; CPU time {one['cpu_seconds']:.0f} s "
        f"and {two['cpu_seconds']:.0f} s; other jobs used {one['other_jobs_cores']:.1f} and "
        f"{two['other_jobs_cores']:.1f} cores meanwhile; cluster start-up, not timed: "
        f"{two['cluster_startup_seconds']:.1f} s).{ceiling}",
        f"* Not timed above: the once-per-process warm-up of the one-core builds (imports, "
        f"astropy's Earth orientation table; `xbkg.building.parallel.warm_up`): "
        f"{alt.get('warm_up_seconds', float('nan')):.1f} s before the 3D ALTAZ build; with "
        f"it, that build runs at {alt['events'] / (alt['seconds'] + alt.get('warm_up_seconds', 0)) / 1e6:.2f}"
        " M events/s.",
        f"* Peak resident memory of the whole process tree while building the 3D ALTAZ model "
        f"from {n_events:,} events: {alt['peak_rss_mb']:.0f} MB on one core, "
        f"{two['peak_rss_mb']:.0f} MB with a 2-worker cluster (scheduler, workers and client).",
        "",
        "Graph size of the lazy 3D ALTAZ model (tasks, nothing read):",
        "",
        "| runs | tasks | tasks per run | graph build (s) |",
        "|---|---|---|---|",
    ]
    for n, v in res["graph"]["graph"].items():
        lines.append(f"| {int(n):,} | {v['tasks']:,} | {v['tasks'] / int(n):.2f} | "
                     f"{v['build_seconds']:.2f} |")
    two_d = ref_time / res["xbkg 2D"]["seconds"]
    alt_x = alt["events"] / alt["seconds"] / astro_rate
    scale = one["seconds"] / two["seconds"]
    peak = max(alt["peak_rss_mb"], two["peak_rss_mb"])
    rate_2d = res["xbkg 2D"]["events"] / res["xbkg 2D"]["seconds"] / 1e6
    rate_alt = alt["events"] / alt["seconds"] / 1e6
    lines += ["", "Against the targets of the core-pipeline and scale issues:", ""]
    for text, ok in ((f"2D at least 10 M events/s on one core: {rate_2d:.2f}", rate_2d >= 10),
                     (f"3D ALTAZ at least 5 M events/s on one core: {rate_alt:.2f}",
                      rate_alt >= 5),
                     (f"2D at least 10x the gammapy loop on one core: {two_d:.1f}x", two_d >= 10),
                     (f"3D ALTAZ at least 1000x per-event astropy: {alt_x:,.0f}x", alt_x >= 1000),
                     (f"2 workers at least 1.7x one worker: {scale:.2f}x", scale >= 1.7),
                     (f"3D ALTAZ from {n_events:,} events under 1.5 GB peak resident memory: "
                      f"{peak:.0f} MB", peak < 1536)):
        lines.append(f"* {'met' if ok else 'NOT met'}: {text}")
    lines += ["", f"Reproduce: `python benchmarks/run_all.py --runs {n_runs} --events "
              f"{args.events} --out docs/benchmarks.md`"]
    return "\n".join(lines) + "\n"


def _load_note(*results) -> str:
    """A warning for a scaling figure measured while other jobs used the cores ('' if not)."""
    busy = max(r.get("other_jobs_cores", 0.0) for r in results)
    return (f" (other jobs used up to {busy:.1f} cores meanwhile: on 2 shared cores this "
            f"figure measures the load, not the scaling)" if busy > 0.2 else "")


def _repeated(label: str) -> bool:
    """Measured ``--repeat`` times in turn, the fastest kept: compared pairs of builds."""
    return " worker" in label or label.startswith("conditional")


def _report_all(results: dict, args) -> str:
    """The main table when all its figures are there, then the user-facing section."""
    core = ("gammapy", "astropy", "xbkg 2D", "xbkg 3D RADEC", "xbkg 3D ALTAZ",
            "xbkg 3D ALTAZ 1 worker", "xbkg 3D ALTAZ 2 workers", "graph")
    text = report(results, args) if set(core) <= set(results) else ""
    if set(USER_LABELS) & set(results):
        text += report_user(results, args)
    if {"conditional plain", "conditional"} <= set(results):
        from bench_conditional import report_conditional

        text += report_conditional(results["conditional plain"], results["conditional"])
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="xbkg-bench-store")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50000, help="mean events per run")
    parser.add_argument("--out", default=None, help="Markdown file for the table")
    parser.add_argument("--json", default=None, help="also write every figure here")
    parser.add_argument("--reference-runs", type=int, default=0,
                        help="gammapy loop on the first N runs only (0: all), scaled to the store")
    parser.add_argument("--astropy-events", type=float, default=20000)
    parser.add_argument("--graph-runs", default="100,500,2000")
    parser.add_argument("--only", default=None, help="comma-separated subset of measurements")
    parser.add_argument("--repeat", type=int, default=2,
                        help="measure 1 and 2 workers (and the builds without and with conditions) "
                             "this many times each, in turn (fastest kept)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the table from the figures of --json, measuring nothing")
    parser.add_argument("--dr1", default=None,
                        help="H.E.S.S. DR1 store for the cold-CLI and first-call figures")
    parser.add_argument("--cold-repeat", type=int, default=5,
                        help="fresh processes per command in the cold-CLI figures (medians)")
    parser.add_argument("--gz-store", default="xbkg-bench-store-gz",
                        help="store of gzipped runs (simulated like DR1 when absent)")
    parser.add_argument("--gz-runs", type=int, default=None,
                        help="runs of the gzipped store (default: --runs)")
    parser.add_argument("--conditions", default="zenith,MUONEFF,azimuth",
                        help="conditions of the conditional build (benchmarks/bench_conditional.py)")
    parser.add_argument("--task", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="3d", help=argparse.SUPPRESS)
    parser.add_argument("--align", default="altaz", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.graph_runs = [int(v) for v in str(args.graph_runs).split(",")]
    if args.task:
        print(json.dumps(TASKS[args.task](args.store, args)))
        return 0

    if args.report_only:
        text = _report_all(json.loads(Path(args.json).read_text()), args)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0
    store = ensure_store(args)
    scratch = store.parent / f".{store.name}-bench"
    scratch.mkdir(exist_ok=True)
    common = ["--store", str(store), "--scratch", str(scratch),
              "--reference-runs", str(args.reference_runs), "--astropy-events",
              str(args.astropy_events), "--graph-runs", ",".join(map(str, args.graph_runs))]
    plan = {
        "gammapy": ("gammapy", []),
        "astropy": ("astropy", []),
        "xbkg 2D": ("xbkg", ["--kind", "2d", "--align", "radec"]),
        "xbkg 3D RADEC": ("xbkg", ["--kind", "3d", "--align", "radec"]),
        "xbkg 3D ALTAZ": ("xbkg", ["--kind", "3d", "--align", "altaz"]),
        "xbkg 3D ALTAZ 1 worker": ("xbkg", ["--kind", "3d", "--align", "altaz", "--workers", "1"]),
        "xbkg 3D ALTAZ 2 workers": ("xbkg", ["--kind", "3d", "--align", "altaz", "--workers", "2"]),
        "graph": ("graph", []),
        "ceiling": ("ceiling", []),
        "cold": ("cold", []),
        "first call": ("first call", []),
        "gzip": ("gzip", []),
        "conditional plain": ("conditional", ["--conditions", ""]),
        "conditional": ("conditional", ["--conditions", args.conditions]),
    }
    if args.gz_runs is None:
        args.gz_runs = args.runs
    if not args.dr1 or not (Path(args.dr1) / "obs-index.fits.gz").exists():
        plan.pop("cold"), plan.pop("first call")
    common += ["--gz-store", str(args.gz_store), "--cold-repeat", str(args.cold_repeat)]
    if args.dr1:
        common += ["--dr1", str(args.dr1)]
    only = set(args.only.split(",")) if args.only else set(plan)
    results = {}
    if args.json and Path(args.json).exists():
        results = json.loads(Path(args.json).read_text())  # keep earlier figures of a subset run
    for label, (task, extra) in plan.items():
        if label not in only or _repeated(label):
            continue
        if label == "gzip":
            _ensure_gz_store(args)
        results[label] = measure(task, common + extra)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    results["_meta"] = {"repeat": args.repeat}
    for _ in range(args.repeat):  # 1 and 2 workers (and the two conditional builds) in turn
        for label in [k for k in plan if _repeated(k) and k in only]:
            task, extra = plan[label]
            r = measure(task, common + extra)
            if label not in results or r["seconds"] < results[label]["seconds"]:
                results[label] = r
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    text = _report_all(results, args)
    if text:
        print(text)
        if args.out:
            Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
