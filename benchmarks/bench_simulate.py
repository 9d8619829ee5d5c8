"""Runs/s and events/s of :func:`xbkg.simulate.simulate_store`.

Times one store written from scratch (planning, event drawing, FITS writing, indexes), split
into the planning part (pointings, astropy, per-run Alt/Az constants) and the rest.

Usage: python benchmarks/bench_simulate.py [--runs 100] [--events 50000] [--jobs 2] [--gzip]
       [--frame altaz|radec]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv=None) -> int:
    from xbkg.simulate import TruthModel, plan_runs, simulate_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--events", type=float, default=50000, help="events of a zenith-0 run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gzip", action="store_true", help="write .fits.gz event files")
    parser.add_argument("--frame", default="altaz", choices=["altaz", "radec"])
    parser.add_argument("--zenith-max", type=float, default=60.0)
    args = parser.parse_args(argv)

    plan_runs(1)  # warm up: astropy loads its IERS tables once per process (a few seconds)
    t0 = time.perf_counter()
    plan_runs(args.runs, zenith_range=(0, args.zenith_max))
    t_plan = time.perf_counter() - t0

    truth = None
    if args.frame != "altaz":
        base = TruthModel(norm=1.0, frame=args.frame)
        mu0 = base.total_counts(zenith=0.0, ontime=1680.0, offset_max=4.0)
        truth = TruthModel.from_dict({**base.to_dict(), "norm": args.events / mu0})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = simulate_store(Path(tmp) / "store", n_runs=args.runs, events_per_run=args.events,
                             truth=truth, compress=args.gzip, n_jobs=args.jobs,
                             zenith_range=(0, args.zenith_max))
        elapsed = time.perf_counter() - t0
        record = json.loads((out / "truth.json").read_text())
        n_events = sum(r["n_events"] for r in record["runs"])
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"simulate_store: {args.runs} runs, {n_events} events (events_per_run={args.events:g} "
          f"at zenith 0, zenith 0-{args.zenith_max:g}), frame={args.frame}, gzip={args.gzip}, "
          f"n_jobs={args.jobs}")
    print(f"  total {elapsed:.2f} s (planning {t_plan:.2f} s of it), {size / 1e6:.1f} MB")
    print(f"  {args.runs / elapsed:.1f} runs/s, {n_events / elapsed / 1e6:.2f} M events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
