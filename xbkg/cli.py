"""The ``xbkg`` command: a thin layer over the Python API.

Subcommands: ``make-models`` (the seeds' gammapy-make-bg-cube-models), ``info``, ``simulate``
and ``demo`` (simulate a small store and build models from it, no data needed).
Errors in the input exit with status 2 and one line on stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

log = logging.getLogger("xbkg")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _read_run_list(path) -> list[int]:
    ids = []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CLIError(f"--run-list {path}: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            ids.extend(int(tok) for tok in line.replace(",", " ").split())
        except ValueError:
            raise CLIError(f"--run-list {path}: line {n} is not a list of OBS_IDs: {line!r}") from None
    if not ids:
        raise CLIError(f"--run-list {path}: no OBS_ID in the file")
    return ids


def _add_binning(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("binning (edge specs: 'lo:hi:n' for n bins, or 'e0,e1,...')")
    g.add_argument("--kind", choices=("2d", "3d"), default="3d", help="model kind (default: 3d)")
    g.add_argument("--fov-alignment", choices=("altaz", "radec"), default="altaz",
                   help="frame of the 3D FoV axes (default: altaz)")
    g.add_argument("--energy-edges", default=None, help="energy edges in TeV, log-spaced for "
                   "'lo:hi:n' (default: 0.1:100:20)")
    g.add_argument("--offset-edges", default=None, help="2D offset edges in deg (default: 0:2.5:10)")
    g.add_argument("--fov-edges", default=None, help="3D DETX and DETY edges in deg "
                   "(default: -2.5:2.5:25)")
    g.add_argument("--offset-max", type=float, default=None,
                   help="drop events farther from the pointing (deg; default: edge of the binning)")
    g.add_argument("--zenith-edges", default=None, help="zenith-angle group edges in deg "
                   "(default: 0,90: one group)")


def _add_run(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--scheduler", default="threads",
                   help="dask scheduler: threads, processes, synchronous, or a scheduler address "
                   "(default: threads)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xbkg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress information")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mm = sub.add_parser("make-models", help="build background models from a DL3 store",
                        description="Build background models from a GADF DL3 store and write them "
                        "to OUTDIR (FITS per group, model.nc, HDU index for gammapy).")
    mm.add_argument("data_dir", metavar="DATA_DIR", help="GADF DL3 store (obs-index, hdu-index)")
    mm.add_argument("outdir", metavar="OUTDIR", help="output folder")
    sel = mm.add_argument_group("run selection")
    sel.add_argument("--selection", choices=("off", "offplane", "all"), default="off",
                     help="which runs to use (default: off)")
    sel.add_argument("--run-list", metavar="FILE", help="text file of OBS_IDs to use")
    sel.add_argument("--n-obs-max", type=int, default=None, help="use at most N runs")
    sel.add_argument("--test", action="store_true", help="quick run on a few (5) runs")
    _add_binning(mm)
    _add_run(mm)
    mm.add_argument("--no-image", action="store_true", help="do not write the 3D image files")

    info = sub.add_parser("info", help="summarise a model file (netCDF or GADF FITS)")
    info.add_argument("path", metavar="PATH")
    info.add_argument("--hdu", default=None, help="FITS HDU to read")

    sim = sub.add_parser("simulate", help="write a simulated GADF store with a known background")
    sim.add_argument("outdir", metavar="OUTDIR")
    sim.add_argument("--runs", type=int, default=20, help="number of runs (default: 20)")
    sim.add_argument("--events", type=int, default=20000,
                     help="events of a zenith-0 run; sets the truth normalisation (default: 20000)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--zenith-range", default="0:60", help="run zenith range in deg (default 0:60)")
    sim.add_argument("--gzip", action="store_true", help="write .fits.gz event files")
    sim.add_argument("--jobs", type=int, default=1, help="processes (default: 1)")
    sim.add_argument("--overwrite", action="store_true")

    demo = sub.add_parser("demo", help="simulate a small store and build models from it")
    demo.add_argument("outdir", metavar="OUTDIR", nargs="?", default="xbkg-demo",
                      help="folder for the store and the models (default: ./xbkg-demo)")
    demo.add_argument("--runs", type=int, default=30)
    demo.add_argument("--overwrite", action="store_true")
    return parser


def _version() -> str:
    from . import __version__

    return f"xbkg {__version__}"


def _progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def cmd_make_models(args) -> int:
    from .datastore import open_datastore
    from .io.products import write_products
    from .make import make_model
    from .selection import select_runs

    store = open_datastore(args.data_dir)
    obs_ids = _read_run_list(args.run_list) if args.run_list else None
    n_obs_max = 5 if args.test and args.n_obs_max is None else args.n_obs_max
    _, rejected = select_runs(store, args.selection, obs_ids=obs_ids, n_obs_max=n_obs_max)
    model = make_model(
        store, kind=args.kind, fov_alignment=args.fov_alignment, energy_edges=args.energy_edges,
        offset_edges=args.offset_edges, fov_edges=args.fov_edges, zenith_edges=args.zenith_edges,
        obs_ids=obs_ids, selection=args.selection, n_obs_max=n_obs_max,
        offset_max=args.offset_max, scheduler=args.scheduler, progress=_progress(args),
    )
    for obs_id in set(store.obs_id.values.tolist()) - set(model.obs_id.values.tolist()):
        rejected.setdefault(int(obs_id), "zenith outside the zenith edges")
    out = write_products(model, store, args.outdir, rejected=rejected, overwrite=args.overwrite,
                         image=not args.no_image)
    print(f"wrote {model.attrs['kind'].upper()} {model.attrs['fov_alignment']} model from "
          f"{model.sizes['obs_id']} runs in {model.sizes['zenith_group']} group(s) to {out}")
    return 0


def cmd_info(args) -> int:
    from .io import open_model
    from .summary import summary_text

    print(summary_text(open_model(args.path, hdu=args.hdu)))
    return 0


def cmd_simulate(args) -> int:
    from .binning import parse_edges
    from .simulate import simulate_store

    zr = parse_edges(args.zenith_range.replace(":", ","), name="--zenith-range")
    path = simulate_store(args.outdir, n_runs=args.runs, events_per_run=args.events, seed=args.seed,
                          zenith_range=(zr[0], zr[-1]), compress=args.gzip, n_jobs=args.jobs,
                          overwrite=args.overwrite)
    print(f"wrote a simulated store of {args.runs} runs to {path}")
    return 0


def cmd_demo(args) -> int:
    from .simulate import simulate_store

    out = Path(args.outdir)
    store = simulate_store(out / "store", n_runs=args.runs, events_per_run=20000,
                           zenith_range=(0, 60), overwrite=args.overwrite)
    print(f"simulated {args.runs} runs in {store}")
    ns = build_parser().parse_args(["make-models", str(store), str(out / "models"), "--selection",
                                    "all", "--zenith-edges", "0,30,45,60", "--no-progress"]
                                   + (["--overwrite"] if args.overwrite else []))
    cmd_make_models(ns)
    print(f"summary of {out / 'models' / 'model.nc'}:")
    info = build_parser().parse_args(["info", str(out / "models" / "model.nc")])
    cmd_info(info)
    _print_closure(store, out / "models" / "model.nc")
    return 0


def _print_closure(store, model_path) -> None:
    """How well the demo model recovers the simulated truth, per group."""
    import numpy as np

    from .io import open_model
    from .simulate import model_truth_counts

    model = open_model(model_path)
    expected = model_truth_counts(store, model)
    counts = model["counts"].values
    print("closure against the simulated truth (bins with >= 25 expected counts, "
          "inside the offset cut):")
    inner = _inside_offset_cut(model)
    for g in range(counts.shape[0]):
        sel = (expected[g] >= 25) & inner
        pulls = (counts[g][sel] - expected[g][sel]) / np.sqrt(expected[g][sel])
        print(f"  group {g}: {int(sel.sum())} bins, chi2/ndf = {np.mean(pulls ** 2):.3f}, "
              f"counts/truth = {counts[g][sel].sum() / expected[g][sel].sum():.4f}")


def _inside_offset_cut(model):
    """Mask over the FoV bins (broadcast over energy) that lie wholly inside ``offset_max``."""
    import numpy as np

    from .binning import edges_of

    omax = float(model.attrs["offset_max"])
    if model.attrs["kind"] == "2d":
        return (edges_of(model, "offset")[1:] <= omax)[None, :]
    x, y = edges_of(model, "detx"), edges_of(model, "dety")
    far_x = np.maximum(np.abs(x[:-1]), np.abs(x[1:]))
    far_y = np.maximum(np.abs(y[:-1]), np.abs(y[1:]))
    return (np.hypot(far_y[:, None], far_x[None, :]) <= omax)[None]


COMMANDS = {"make-models": cmd_make_models, "info": cmd_info, "simulate": cmd_simulate,
            "demo": cmd_demo}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else
                        logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("xbkg: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as exc:
        if args.debug:
            raise
        print(f"xbkg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
