"""Cost of a conditional model: the same 3D ALTAZ build with and without ``conditions=``.

On one simulated store, each build in its own process on one core (dask synchronous
scheduler, single-threaded BLAS), whose peak resident memory is sampled (``run_all.measure``):

* the plain build;
* the build with ``conditions`` (default ``zenith,MUONEFF,azimuth``): per-run statistics in
  the coarse fit bins gathered in the same pass, then the conditional fit (cross-validated
  penalty, covariances, scatter) of every run;
* the fit alone, timed again on the statistics the conditional build stored (best of two).

The two builds are measured ``--repeat`` times in turn; the fastest of each is kept.

Targets (issue 19): the build with the statistics within 1.2x of the plain build, the fit of
2,000 runs in seconds, memory as the plain build. ``run_all.py`` runs the same measurements
(``--only conditional``) and adds this section to its report.

Usage: python benchmarks/bench_conditional.py [--store DIR] [--runs 100] [--events 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from _common import build, ensure_store, measure  # noqa: E402  (benchmarks/ is on sys.path)

#: Conditions of the benchmark: columns every simulated store has (MUONEFF) or computed ones.
CONDITIONS = "zenith,MUONEFF,azimuth"
#: The issue's limit on (build with per-run statistics) / (plain build).
RATIO_TARGET = 1.2


def refit_seconds(model, repeat: int = 2) -> tuple[float, float]:
    """Best wall and CPU time of :func:`xbkg.building.conditional.fit_conditional` on a conditional
    model's stored per-run statistics (the whole fit: penalty by cross-validation,
    covariances, scatter)."""
    import numpy as np

    from xbkg.building.conditional import fit_conditional

    args = (model["obs_fit_counts"].values, model["obs_fit_exposure"].values,
            model["obs_group"].values, model.sizes["zenith_group"],
            model["obs_cond_terms"].values, model["obs_ontime"].values)
    best, cpu = np.inf, np.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fit_conditional(*args)
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return float(best), float(cpu)


def task_conditional(store_dir, args) -> dict:
    """One 3D ALTAZ build on one core, with ``args.conditions`` (empty: plain), after the
    once-per-process warm-up, its wall and CPU time (this process); with conditions also the
    times of the fit alone."""
    from xbkg.building.parallel import warm_up

    warm_up()
    conditions = args.conditions or None
    c0 = time.process_time()
    model, out = build(store_dir, "3d", "altaz", "synchronous", conditions=conditions)
    out["build_cpu_seconds"] = time.process_time() - c0
    if conditions:
        out["fit_seconds"], out["fit_cpu_seconds"] = refit_seconds(model)
        out["fit_runs"] = int(model.sizes["obs_id"])
        out["terms"] = [str(t) for t in model["cond_term"].values]
        out["conditions"] = conditions
    return out


def report_conditional(plain: dict, cond: dict) -> str:
    """Markdown section: times, ratio and peak memory of the two builds, the fit alone."""
    ratio = cond["seconds"] / plain["seconds"]
    cpu_ratio = cond["build_cpu_seconds"] / plain["build_cpu_seconds"]
    pass_ratio = (cond["build_cpu_seconds"] - cond["fit_cpu_seconds"]) / plain["build_cpu_seconds"]
    mem_ratio = cond["peak_rss_mb"] / plain["peak_rss_mb"]
    lines = [
        "", f"Conditional model (`conditions=\"{cond.get('conditions', CONDITIONS)}\"`, terms "
        f"{', '.join(cond.get('terms', []))}), 3D ALTAZ, one core, {cond['runs']:,} runs, "
        f"{cond['events']:,} events:", "",
        "| build | time (s) | CPU of the build (s) | peak RSS (MB) | other jobs (cores) |",
        "|---|---|---|---|---|",
        f"| plain | {plain['seconds']:.1f} | {plain['build_cpu_seconds']:.1f} | "
        f"{plain['peak_rss_mb']:.0f} | {plain['other_jobs_cores']:.1f} |",
        f"| with per-run statistics and the fit | {cond['seconds']:.1f} | "
        f"{cond['build_cpu_seconds']:.1f} | {cond['peak_rss_mb']:.0f} | "
        f"{cond['other_jobs_cores']:.1f} |",
        "",
        f"* {'met' if ratio <= RATIO_TARGET else 'NOT met'}: the build with the per-run "
        f"statistics (fit included) within {RATIO_TARGET}x of the plain build: {ratio:.2f}x "
        f"(CPU time of the build {cpu_ratio:.2f}x; without the fit, the pass with the "
        f"statistics: {pass_ratio:.2f}x)",
        f"* the fit of {cond['fit_runs']:,} runs alone (penalty chosen by 5-fold "
        f"cross-validation, covariances, scatter): {cond['fit_seconds']:.1f} s "
        f"(CPU {cond['fit_cpu_seconds']:.1f} s) "
        f"({'met' if cond['fit_seconds'] < 60 else 'NOT met'}: seconds, not minutes)",
        f"* peak resident memory {mem_ratio:.2f}x the plain build's "
        f"({cond['peak_rss_mb']:.0f} MB against {plain['peak_rss_mb']:.0f} MB; the difference "
        "includes the import of scipy.optimize, a constant)",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="reuse / write the store here")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--events", type=int, default=20000, help="mean events per run")
    parser.add_argument("--conditions", default=CONDITIONS)
    parser.add_argument("--repeat", type=int, default=2,
                        help="measure the two builds this many times each, in turn (fastest kept)")
    args = parser.parse_args(argv)

    args.store = args.store or tempfile.mkdtemp(prefix="xbkg-bench-cond-")
    store = ensure_store(args)
    best = {}
    for _ in range(args.repeat):
        for label, conditions in (("plain", ""), ("conditional", args.conditions)):
            r = measure("conditional", ["--store", str(store), "--conditions", conditions])
            if label not in best or r["seconds"] < best[label]["seconds"]:
                best[label] = r
    plain, cond = best["plain"], best["conditional"]
    print(report_conditional(plain, cond))
    return 0


if __name__ == "__main__":
    sys.exit(main())
