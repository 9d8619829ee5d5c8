"""Cost of exclusion regions: a 3D ALTAZ build with and without regions on the same store.

Writes a simulated store (uncompressed FITS) with three bright sources, every second run
pointed 0.5-1.5 deg from one of them, and times ``xbkg.make_model`` (3D, ALTAZ, default
binning: 20 energy x 25 x 25 FoV bins) on one core (dask synchronous scheduler) and on all
cores (threads), wall clock and CPU time of the process:

* without regions;
* with three circles (two overlapping, one at the FoV edge of many runs), default sub-grid
  (8 x 8 cells per bin) and ALTAZ time sampling;

and, on their own, the two extra per-run steps (exposure fractions, event mask). Prints a
Markdown table with both build times and their ratio.

Usage: python benchmarks/bench_exclusion.py [--runs 60] [--events 30000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_build import simulated_store, timed  # benchmarks/ is on sys.path as a script

SOURCES = [dict(ra=150.0, dec=-25.0, counts=3000, sigma=0.08, name="A"),
           dict(ra=150.66, dec=-25.0, counts=3000, sigma=0.08, name="B"),
           dict(ra=150.3, dec=-27.2, counts=3000, sigma=0.08, name="C")]
CIRCLES = {"ra": [150.0, 150.66, 150.3], "dec": [-25.0, -25.0, -27.2], "radius": [0.4, 0.4, 0.5],
           "names": ["A", "B", "C"]}


def exclusion_parts(store, binning, oversample):
    """Time of the two per-run exclusion steps alone, over the runs that have regions: the
    exposure fractions (ALTAZ constants computed beforehand, as a build does) and the event
    mask (on the run's events); CPU seconds."""
    from xbkg.core.circles import SkyCircles
    from xbkg.sky.earth import run_altaz_params
    from xbkg.sky.exclusion import attach_exclusions, drop_excluded_events, run_exclusion_fraction
    from xbkg.store.events import read_run, run_infos

    runs, _ = attach_exclusions(run_infos(store), SkyCircles.from_dict(CIRCLES),
                                binning.offset_max, oversample=oversample)
    runs = [info.with_(altaz_params=run_altaz_params(info))
            for info in runs if info.exclusion is not None]
    events = [read_run(info)[0] for info in runs]
    t0 = time.process_time()  # CPU time: one thread, less sensitive to a shared machine
    for info in runs:
        run_exclusion_fraction(info, binning)
    t1 = time.process_time()
    for info, columns in zip(runs, events):
        drop_excluded_events(columns, info.exclusion)
    return t1 - t0, time.process_time() - t1, len(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--oversample", type=int, default=8)
    parser.add_argument("--store", default=None, help="reuse / write the store here")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()

    import xbkg
    from xbkg.building.make import make_binning

    workdir = simulated_store(args.store, "xbkg-bench-excl-", args.runs, args.events,
                              sources=SOURCES)
    store = xbkg.open_datastore(workdir)
    n_events = int(store["EVENT_COUNT"].sum())
    binning = make_binning("3d", "altaz")
    # selection "all": the default ("off") would drop the runs pointed at the sources, which are
    # the runs the regions reach
    xbkg.make_model(store, kind="3d", fov_alignment="altaz", n_obs_max=2, selection="all",
                    exclusion=CIRCLES, scheduler="synchronous")  # warm-up: imports, IERS tables

    rows = []
    for scheduler, cores in (("synchronous", "1 core"), ("threads", f"{os.cpu_count()} cores")):
        cpu0 = time.process_time()
        t_plain, plain = timed(xbkg.make_model, store, kind="3d", fov_alignment="altaz",
                               selection="all", scheduler=scheduler, repeat=2)
        cpu1 = time.process_time()
        t_excl, model = timed(xbkg.make_model, store, kind="3d", fov_alignment="altaz",
                              selection="all", exclusion=CIRCLES, exclusion_oversample=args.oversample,
                              scheduler=scheduler, repeat=2)
        cpu2 = time.process_time()
        rows.append((cores, t_plain, t_excl, (cpu1 - cpu0) / 2, (cpu2 - cpu1) / 2))
    t_frac, t_mask, n_frac = exclusion_parts(store, binning, args.oversample)
    lost = 1 - float(model["exposure"].sum() / plain["exposure"].sum())

    lines = [f"Store: {args.runs} runs ({n_frac} with regions in reach), {n_events:,} events, "
             f"3D ALTAZ 20 x 25 x 25 bins, sub-grid {args.oversample} x {args.oversample}; "
             f"machine: {os.cpu_count()} cores", "",
             "| cores | without regions (s) | with 3 regions (s) | ratio | CPU s without / with "
             "| CPU ratio |", "|---|---|---|---|---|---|"]
    for cores, t_plain, t_excl, c_plain, c_excl in rows:
        lines.append(f"| {cores} | {t_plain:.2f} | {t_excl:.2f} | {t_excl / t_plain:.2f} | "
                     f"{c_plain:.2f} / {c_excl:.2f} | {c_excl / c_plain:.2f} |")
    per_run = 1e3 / max(n_frac, 1)
    lines += ["", f"Per run with regions (CPU time): exposure fractions {t_frac * per_run:.1f} ms, "
              f"event mask {t_mask * per_run:.1f} ms; a whole run without regions "
              f"{rows[0][3] * 1e3 / args.runs:.1f} ms. Exposure removed by the regions: "
              f"{100 * lost:.1f} %."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
