"""The ``xbkg`` command: a thin layer over the Python API.

Subcommands: ``make-models`` (the seeds' gammapy-make-bg-cube-models), ``update-model`` (add
runs to a model without re-reading its runs), ``info``, ``report`` (one HTML page of figures),
``simulate`` and ``demo`` (simulate a small store and build models from it, no data needed),
``validate`` (k-fold cross-validation over runs) and ``compare`` (two model sets side by side).
Errors in the input exit with status 2 and one line on stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path

from xbkg._version import __version__
from xbkg.building.apply import apply_model
from xbkg.building.make import make_binning, make_model
from xbkg.building.options import BuildOptions, build_options
from xbkg.building.parallel import LOCAL_SCHEDULERS, local_cluster
from xbkg.building.products import write_products
from xbkg.building.update import update_model
from xbkg.checks.closure import truth_closure
from xbkg.checks.compare import (
    compare_models,
    comparison_summary,
    load_model_set,
    rate_consistency,
)
from xbkg.checks.crossval import summarise, validate
from xbkg.checks.options import EvaluationOptions, FoldOptions
from xbkg.core.binning import parse_edges
from xbkg.core.defaults import DEFAULTS, DEFAULTS as D
from xbkg.io import open_model
from xbkg.io.atomic import discard_pending, recover
from xbkg.io.netcdf import read_netcdf, write_netcdf
from xbkg.io.safety import check_writable, guard_output, require_regular_file
from xbkg.report.checks import comparison_table, write_comparison, write_validation
from xbkg.report.html import write_report
from xbkg.report.summary import (
    model_label,
    outdir_summary,
    provenance_lines,
    rejected_runs,
    summary_text,
)
from xbkg.simulate import ObservingPlan, simulate_store
from xbkg.sky.exclusion import plan_exclusion
from xbkg.store.datastore import open_datastore, store_inputs
from xbkg.store.selection import select_runs

__all__ = ["main", "build_parser", "Parser", "cli_message", "join_negative_values",
           "options_from_args"]

log = logging.getLogger("xbkg")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


DESCRIPTION = ("Background models for imaging atmospheric Cherenkov telescopes, from GADF DL3 "
               "stores. Run 'xbkg COMMAND --help' for the options of a command; -v and --debug "
               "may be given anywhere on the line.")

#: Python argument names that start API error messages, and the options that set them.
API_TO_FLAG = {"energy edges": "--energy-edges", "offset edges": "--offset-edges",
               "fov edges": "--fov-edges", "zenith edges": "--zenith-edges",
               "offset_max": "--offset-max", "n_obs_max": "--n-obs-max",
               "energy_threshold": "--energy-threshold", "n_runs": "--runs",
               "events_per_run": "--events", "n_folds": "--folds", "where": "--where",
               "exclusion regions": "--exclusion", "altitude_tolerance": "--altitude-tolerance",
               "exclusion_distance": "--exclusion-distance",
               "catalog_min_radius": "--catalog-min-radius", "min_ontime": "--zenith-min-time",
               "catalog_extension_factor": "--catalog-extension-factor",
               "cos_zenith_step": "--cos-zenith-step"}


#: validate's evaluation grid: its API names -> the ``--eval-*`` options.
EVAL_TO_FLAG = {"energy edges": "--eval-energy-edges", "width": "--eval-width",
                "binsz": "--eval-binsz", "offset_max": "--eval-offset-max",
                "safe_threshold": "--eval-threshold"}


def cli_message(message: str, flags: dict = API_TO_FLAG) -> str:
    """An API error message with its leading argument name replaced by the command-line option.

    >>> cli_message("offset_max must be > 0 deg, got -1.0")
    '--offset-max must be > 0 deg, got -1.0'
    >>> cli_message("offset_max must be > 0 deg, got -1.0", EVAL_TO_FLAG)
    '--eval-offset-max must be > 0 deg, got -1.0'
    >>> cli_message("run 3: no events")
    'run 3: no events'
    """
    for name, flag in flags.items():
        if re.match(rf"{re.escape(name)}\b", message):
            return flag + message[len(name):]
    return message


def _at_least(minimum: int, maximum: int | None = None):
    """argparse type: an integer >= ``minimum`` (and <= ``maximum`` when given)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text!r}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


#: simulate --runs / --events bounds: a run of at most ~1 GB of events in memory, not a MemoryError.
_MAX_SIM_RUNS, _MAX_SIM_EVENTS = 100_000, 10_000_000


def _scheduler(text: str) -> str:
    """argparse type of --scheduler: a local dask scheduler name or an address (host:port)."""

    if text in LOCAL_SCHEDULERS or ":" in text:
        return text
    raise argparse.ArgumentTypeError(f"must be threads, processes, synchronous or a scheduler "
                                     f"address such as tcp://host:8786, got {text!r}")


_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def join_negative_values(argv: list[str]) -> list[str]:
    """``['--fov-edges', '-2.5:2.5:25']`` -> ``['--fov-edges=-2.5:2.5:25']``: argparse reads a
    value starting with '-' as an option unless it is a plain number; no option starts with a
    digit, so a long option followed by '-<digit>' takes it as its value.

    >>> join_negative_values(["--fov-edges", "-2.5:2.5:25", "--kind", "3d", "-v"])
    ['--fov-edges=-2.5:2.5:25', '--kind', '3d', '-v']
    """
    out: list[str] = []
    for token in argv:
        previous = out[-1] if out else ""
        if (_NEGATIVE_VALUE.match(token) and previous.startswith("--") and "=" not in previous
                and previous != "--"):
            out[-1] = f"{previous}={token}"
        else:
            out.append(token)
    return out


class Parser(argparse.ArgumentParser):
    """ArgumentParser that reads option values starting with '-<digit>' (edge specs such as
    ``--fov-edges -2.5:2.5:25``) with or without '='."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(join_negative_values(args), namespace)


def _add_global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v/--verbose and --debug, on the top-level parser and on each subcommand (so they work
    anywhere on the line; a subcommand's copy leaves the top-level value alone unless given)."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log progress information (INFO)")


def _read_run_list(path) -> list[int]:
    ids = []
    try:
        require_regular_file(path)
        text = Path(path).read_text()
    except OSError as exc:
        raise CLIError(f"--run-list {path}: {exc.strerror}") from None
    except ValueError as exc:  # a FIFO or device
        raise CLIError(f"--run-list {exc}") from None
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


#: Path arguments (dest -> how the command line names it) checked by
#: :func:`_refuse_special_files` before a command opens anything.
_PATH_ARGS = {"data_dir": "DATA_DIR", "model": "MODEL", "model_a": "A", "model_b": "B",
              "path": "PATH", "run_list": "--run-list", "exclusion": "--exclusion",
              "exclusion_catalog": "--exclusion-catalog", "groups": "--groups",
              "reference": "--reference", "index_dir": "--index-dir"}


def _refuse_special_files(args) -> None:
    """A FIFO, device or socket given as an input is refused before it is opened (opening a
    FIFO blocks until a writer appears; a device can be endless). Missing paths and folders
    are left to the command, which says what it expected."""
    import stat

    for dest, name in _PATH_ARGS.items():
        values = getattr(args, dest, None)
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str) or not value:
                continue
            try:
                mode = os.stat(value).st_mode
            except OSError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
                raise CLIError(f"{name} {value}: is {kind}: refused")


def _add_binning(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("binning (edge specs: 'lo:hi:n' for n bins, or 'e0,e1,...')")
    g.add_argument("--kind", choices=("2d", "3d"), default=D.kind,
                   help=f"model kind: 2d (energy x offset) or 3d (energy x DETY x DETX) "
                   f"(default: {D.kind})")
    g.add_argument("--fov-alignment", choices=("altaz", "radec"), default=D.fov_alignment,
                   help=f"frame of the 3D FoV axes; 2D models have none (default: {D.fov_alignment})")
    g.add_argument("--energy-edges", default=None, help="energy edges in TeV, log-spaced for "
                   f"'lo:hi:n' (default: {D.energy_edges})")
    g.add_argument("--offset-edges", default=None,
                   help=f"2D offset edges in deg (default: {D.offset_edges})")
    g.add_argument("--fov-edges", default=None, help="3D DETX and DETY edges in deg "
                   f"(default: {D.fov_edges})")
    g.add_argument("--offset-max", type=float, default=None,
                   help="drop events farther from the pointing (deg; default: edge of the binning)")
    g.add_argument("--zenith-edges", default=None, help="zenith-angle group edges in deg "
                   "(default: 0,90: one group)")


def _add_run(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--scheduler", type=_scheduler, default="threads",
                   help="dask scheduler: threads, processes, synchronous, or a scheduler address "
                   "(default: threads)")
    g.add_argument("--workers", metavar="N", type=_at_least(1), default=None,
                   help="start a local dask cluster of N worker processes and run on it "
                   "(instead of --scheduler; the way to use several cores)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


SELECTION_HELP = ("which runs to use: 'off' the runs whose TARGET_NAME or OBJECT contains 'off' "
                  "(any case), 'offplane' the runs pointed at |GLAT_PNT| > 5 deg, 'all' every "
                  "run (default: off)")


def _command(sub, name: str, run) -> argparse.ArgumentParser:
    """The subparser of command ``name``, run by ``run``: its help is the first line of
    ``run``'s docstring, its description the rest (argparse re-wraps both)."""
    summary, _, description = inspect.cleandoc(run.__doc__).partition("\n")
    return sub.add_parser(name, help=summary, description=description.strip())


def build_parser() -> argparse.ArgumentParser:
    """The ``xbkg`` argument parser: every subcommand, option and its help text."""
    parser = Parser(prog="xbkg", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the xbkg version and exit")
    _add_global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")

    mm = sub.add_parser("make-models", help="build background models from a DL3 store",
                        description="Build background models from a GADF DL3 store and write them "
                        "to OUTDIR (FITS per group, model.nc, HDU index for gammapy).")
    mm.add_argument("data_dir", metavar="DATA_DIR", help="GADF DL3 store (obs-index, hdu-index)")
    mm.add_argument("outdir", metavar="OUTDIR", help="output folder")

    sel = mm.add_argument_group("run selection")
    sel.add_argument("--selection", choices=("off", "offplane", "all"), default=DEFAULTS.selection,
                     help=SELECTION_HELP)
    sel.add_argument("--run-list", metavar="FILE",
                     help="text file of OBS_IDs to use, separated by spaces, commas or lines; "
                     "'#' starts a comment (default: every run of DATA_DIR)")
    sel.add_argument("--n-obs-max", metavar="N", type=_at_least(1), default=None,
                     help="use at most N runs (default: no limit)")
    sel.add_argument("--test", action="store_true", help="quick run on a few (5) runs")
    _add_cuts_and_exclusion(mm, sel)
    _add_instrument_options(mm)
    _add_binning(mm)
    mm.add_argument("--fov-extent", metavar="auto|none|DEG", default=DEFAULTS.fov_extent,
                    help="where the runs' events stop: 'auto' measures it (obs-index OFFSET_MAX, "
                    "else the largest event offset) and cuts the binning there with a warning; "
                    "'none' keeps the declared binning; a number declares it in deg "
                    f"(default: {DEFAULTS.fov_extent})")
    _add_modelling(mm)
    _add_run(mm)
    mm.add_argument("--no-image", action="store_true", help="do not write the 3D image files")
    mm.add_argument("--bundle", action="store_true",
                    help="also write bg_models_bundle.fits.gz: the group models (BKG<ID>), "
                    "HDU_INDEX and OBS_INDEX in one file, for gammapy's DataStore.from_file")
    mm.add_argument("--strict", action="store_true",
                    help="stop at the first run that cannot be used (default: skip it and list it "
                    "in bg_rejected_runs.ecsv)")
    _add_no_report(mm)

    info = _command(sub, "info", cmd_info)
    info.add_argument("path", metavar="PATH",
                      help="model.nc, a GADF BKG_2D/BKG_3D FITS file, or a make-models OUTDIR")
    info.add_argument("--hdu", default=None,
                      help="FITS only: the HDU to read, by name or number (default: the first "
                      "background HDU)")

    rep_ = _command(sub, "report", cmd_report)
    rep_.add_argument("outdir", metavar="OUTDIR", help="a make-models output folder")
    rep_.add_argument("--output", metavar="FILE", default=None,
                      help="where to write the report (default: OUTDIR/report.html)")

    sim = sub.add_parser(
        "simulate", help="write a simulated GADF store with a known background",
        description="Write a GADF DL3 store (obs-index, hdu-index, one EVENTS+GTI file per run) "
        "whose background is known exactly (truth.json), for tests and closure checks.")
    sim.add_argument("outdir", metavar="OUTDIR", help="folder for the store (created)")
    sim.add_argument("--runs", metavar="N", type=_at_least(1, _MAX_SIM_RUNS), default=20,
                     help="number of runs (default: 20)")
    sim.add_argument("--events", metavar="N", type=_at_least(1, _MAX_SIM_EVENTS), default=20000,
                     help="events of a zenith-0 run; sets the truth normalisation (default: 20000)")
    sim.add_argument("--seed", type=int, default=0,
                     help="random seed: the same seed writes the same store (default: 0)")
    sim.add_argument("--zenith-range", metavar="LO:HI", default="0:60",
                     help="zenith range of the runs in deg (default: 0:60)")
    sim.add_argument("--style", choices=("hess", "magic", "veritas", "lst", "cta"), default="hess",
                     help="reproduce an instrument's store quirks: hess (every obs-index column), "
                     "magic (obs index without ZEN_PNT/ONTIME/target), veritas (events stop at "
                     "2.0 deg, NSBLEVEL), lst (pointing as ALT/AZ and a POINTING HDU), cta (1DC: "
                     "non-physical site keywords, MC_ID, index files in index/all) (default: hess)")
    sim.add_argument("--gzip", action="store_true", help="write .fits.gz event files")
    sim.add_argument("--jobs", metavar="N", type=_at_least(1), default=1,
                     help="processes writing runs in parallel (default: 1)")
    sim.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")

    demo = _command(sub, "demo", cmd_demo)
    demo.add_argument("outdir", metavar="OUTDIR", nargs="?", default="xbkg-demo",
                      help="folder for the store and the models (default: ./xbkg-demo)")
    demo.add_argument("--runs", metavar="N", type=_at_least(1), default=30,
                      help="number of simulated runs of 20,000 events (default: 30)")
    demo.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")
    _add_no_report(demo)
    _add_update_parser(sub)
    _add_validate_parsers(sub)
    _add_apply_parser(sub)
    for subparser in sub.choices.values():
        _add_global_flags(subparser, top=False)
    return parser


def _add_no_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html (the HTML report of the models; written only "
                   "into a make-models OUTDIR)")


def _version() -> str:
    return f"xbkg {__version__}"


def _progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def cmd_make_models(args) -> int:
    store = open_datastore(args.data_dir, index_dir=args.index_dir)
    _guard(args.outdir, store, args, ("model.nc",), [args.run_list, args.groups, *(args.exclusion or [])])
    obs_ids = _read_run_list(args.run_list) if args.run_list else None
    n_obs_max = 5 if args.test and args.n_obs_max is None else args.n_obs_max
    cuts, exclusion, select_near = _cuts_and_exclusion(args)
    options = options_from_args(args, n_obs_max=n_obs_max, **cuts, **exclusion)
    _build_and_write(store, args.outdir, options, obs_ids=obs_ids, select_near=select_near,
                     scheduler=args.scheduler, progress=_progress(args), strict=args.strict,
                     command_line=getattr(args, "command_line", None), report=not args.no_report,
                     overwrite=args.overwrite, image=not args.no_image, per_run=args.per_run,
                     per_run_method=args.per_run_method, bundle=args.bundle)
    return 0


def _build_and_write(store, outdir, options: BuildOptions, *, obs_ids=None, select_near=None,
                     scheduler="threads", progress=False, strict=False, command_line=None,
                     report=True, **products) -> Path:
    """Build the models of ``options`` from ``store`` (an observation Dataset; the runs
    ``obs_ids``, default all), write the ``make-models`` products into ``outdir`` (``products``:
    :func:`write_products` keywords) and print their summary, and with ``report`` the report's
    path; returns ``outdir``. ``select_near``: the select_runs options for runs near excluded
    circles (so bg_rejected_runs.ecsv gives their reason); ``command_line`` goes in the
    provenance; ``strict`` stops at the first unusable run."""
    with _quiet("xbkg.store.selection"):  # make_model selects again and logs the result once
        _, rejected = select_runs(store, options.selection.rule, obs_ids=obs_ids,
                                  **options.selection.cuts(), **(select_near or {}))
    model = make_model(store, obs_ids=obs_ids, scheduler=scheduler, progress=progress,
                       on_error="raise" if strict else "skip", **options.arguments())
    skipped = json.loads(model.attrs.get("provenance", "{}")).get("skipped_runs", {})
    rejected.update({int(obs_id): message for obs_id, message in skipped.items()})
    for obs_id in set(store.obs_id.values.tolist()) - set(model.obs_id.values.tolist()):
        rejected.setdefault(int(obs_id), "zenith outside the zenith edges")
    if not float(model["counts"].sum()) > 0:  # a filter or cut that kept nothing: no model
        raise CLIError(f"no event of the {model.sizes['obs_id']} runs falls in the model's bins "
                       "(check --event-filter, --energy-edges, --fov-edges/--offset-edges and "
                       f"--fov-extent): nothing written to {outdir}")
    model = _with_command(model, command_line)
    out = write_products(model, store, outdir, rejected=rejected, **products)

    print(f"wrote {model_label(model)} from {model.sizes['obs_id']} runs in "
          f"{model.sizes['zenith_group']} group(s) to {out}")
    print("\n".join(provenance_lines(model)))
    if report:
        print(f"report: {write_report(out, store=store, model=model)}")
    return out


def _guard(output, store, args, markers, inputs=(), option="OUTDIR") -> None:
    """Refuse an output that is or holds an input, or (--overwrite) a folder not ours."""

    found = store_inputs(store) if store is not None else []
    guard_output(output, [*found, *inputs], overwrite=getattr(args, "overwrite", False),
                 markers=markers, option=option)


@contextlib.contextmanager
def _quiet(name: str):
    """Logger ``name`` logs warnings only within the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


def _with_command(model, command_line):
    """The model with the command that made it in its provenance (shown by info and report)."""
    if not command_line:
        return model
    provenance = json.loads(model.attrs.get("provenance", "{}"))
    provenance["command"] = command_line
    return model.assign_attrs(provenance=json.dumps(provenance, sort_keys=True))


def _add_cuts_and_exclusion(mm: argparse.ArgumentParser, sel) -> None:
    sel.add_argument("--zenith-range", metavar="LO:HI", default=None,
                     help="keep runs with LO <= zenith <= HI (deg; default: no cut)")
    sel.add_argument("--where", metavar="EXPR", default=None,
                     help="keep runs for which EXPR holds: comparisons of obs-table columns "
                     "with and/or/not, e.g. \"MUONEFF > 0.7 and N_TELS >= 3\" (default: no cut)")
    sel.add_argument("--min-n-tels", metavar="N", type=int, default=None,
                     help="keep runs with N_TELS >= N (default: no cut)")
    sel.add_argument("--min-muoneff", metavar="X", type=float, default=None,
                     help="keep runs with MUONEFF >= X (default: no cut)")
    sel.add_argument("--max-quality", metavar="Q", type=int, default=None,
                     help="keep runs with QUALITY <= Q (default: no cut)")
    g = mm.add_argument_group("excluded sources")
    g.add_argument("--exclusion", metavar="FILE", action="append", default=None,
                   help="excluded sky circles: a table (FITS/ECSV/CSV with RA, DEC, Radius in deg) "
                   "or a DS9 region file; may repeat")

    g.add_argument("--exclusion-mode", choices=("regions", "runs"), default=DEFAULTS.exclusion_mode,
                   help="regions: drop events in the circles and correct the exposure (default); "
                   "runs: drop runs pointed near a circle")
    g.add_argument("--exclusion-distance", metavar="DEG", type=float, default=None,
                   help="runs mode: drop runs pointed within this distance (deg) of a circle's "
                   "edge (default: the offset cut)")
    g.add_argument("--exclusion-oversample", metavar="N", type=_at_least(1),
                   default=D.exclusion_oversample,
                   help="ALTAZ exposure fractions: time samples close enough that regions move "
                   "at most 1/N of a bin between them (fractions are exact; default: 8)")


#: The options for other instruments' stores and for sources: (flag, metavar, type, default,
#: help), added in this order.
_INSTRUMENT_OPTIONS = (
    ("--index-dir", "DIR", str, None,
     "folder of the index files, relative to DATA_DIR (default: DATA_DIR, else its single "
     "index/* subfolder, as CTA 1DC's index/gps)"),
    ("--event-filter", "EXPR", str, None,
     "keep only events for which EXPR holds, in the --where language on EVENTS columns, e.g. "
     "\"MC_ID == 1\" (CTA simulated background only)"),
    ("--exclude-targets", "RADIUS", float, None,
     "exclude a circle of RADIUS deg around each run's target (RA_OBJ/DEC_OBJ of the obs index "
     "or EVENTS header, or OBJECT found in --exclusion-catalog)"),
    ("--exclusion-catalog", "FILE", str, None,
     "exclude the sources of a gamma-cat/HGPS-style catalog (FITS or ECSV: position, "
     "extension) that reach the runs"),
    ("--catalog-min-radius", "DEG", float, D.catalog_min_radius,
     "exclusion radius of point-like catalog sources (default: 0.35)"),
    ("--catalog-extension-factor", "K", float, D.catalog_extension_factor,
     "exclusion radius of extended catalog sources: K x their extension, at least "
     "--catalog-min-radius (default: 3)"),
    ("--site", "LON,LAT,HEIGHT", str, None,
     "site of every run (deg east, deg, m), replacing the store's GEOLON, GEOLAT, ALTITUDE "
     "(for ALTAZ models)"),
    ("--altitude-tolerance", "DEG", float, D.altitude_tolerance,
     "ALTAZ models reject runs whose pointing altitude computed from time, site and RA/Dec is "
     "below the horizon or differs from the store's by more (default: 10)"),
)


def _add_instrument_options(mm: argparse.ArgumentParser) -> None:
    g = mm.add_argument_group("stores of other instruments (MAGIC, VERITAS, CTA, LST), sources")
    for flag, metavar, kind, default, text in _INSTRUMENT_OPTIONS:
        g.add_argument(flag, metavar=metavar, type=kind, default=default, help=text)


def _instrument_options(args) -> dict:
    """make_model keyword arguments of :func:`_add_instrument_options`."""
    site = None
    if args.site is not None:
        try:
            site = tuple(float(v) for v in args.site.split(","))
        except ValueError:
            site = ()
        if len(site) != 3:
            raise CLIError(f"--site must be LON,LAT,HEIGHT (deg, deg, m), got {args.site!r}")
    return {"event_filter": args.event_filter, "exclude_targets": args.exclude_targets,
            "exclusion_catalog": args.exclusion_catalog, "site": site,
            "catalog_min_radius": args.catalog_min_radius,
            "catalog_extension_factor": args.catalog_extension_factor,
            "altitude_tolerance": args.altitude_tolerance}


def _cuts_and_exclusion(args):
    """Run-cut and exclusion keyword arguments of make_model, and the select_runs ones for runs
    near excluded circles (so bg_rejected_runs.ecsv gives their reason)."""

    cuts = {"where": args.where, "min_n_tels": args.min_n_tels, "min_muoneff": args.min_muoneff,
            "max_quality": args.max_quality}
    if args.zenith_range is not None:
        try:
            lo, hi = (float(v) for v in args.zenith_range.split(":"))
        except ValueError:
            raise CLIError(f"--zenith-range must be LO:HI in deg, got {args.zenith_range!r}") from None
        cuts["zenith_range"] = (lo, hi)
    if not args.exclusion:
        return cuts, {}, {}
    reach = make_binning(args.kind, args.fov_alignment, energy_edges=args.energy_edges,
                         offset_edges=args.offset_edges, fov_edges=args.fov_edges,
                         offset_max=args.offset_max).offset_max
    plan = plan_exclusion(args.exclusion, args.exclusion_mode, args.exclusion_distance,
                          reach=reach, oversample=args.exclusion_oversample)
    exclusion = {"exclusion": plan["circles"], "exclusion_mode": args.exclusion_mode,
                 "exclusion_distance": args.exclusion_distance,
                 "exclusion_oversample": args.exclusion_oversample}
    return cuts, exclusion, plan["select"]


def _add_modelling(mm: argparse.ArgumentParser) -> None:
    g = mm.add_argument_group("zenith groups, energy thresholds, smoothing, per-run models")
    g.add_argument("--adaptive", action="store_true",
                   help="adaptive zenith groups instead of --zenith-edges: fine bins in "
                   "cos(zenith) merged until each group has --zenith-min-time seconds and "
                   "--zenith-min-runs runs (BAccMod's method)")
    g.add_argument("--zenith-min-time", metavar="SECONDS", type=float, default=None,
                   help="minimum observation time of an adaptive group in s (default: 3600; "
                   "implies --adaptive)")
    g.add_argument("--zenith-min-runs", metavar="N", type=_at_least(0), default=None,
                   help="minimum number of runs of an adaptive group (default: 0; implies "
                   "--adaptive)")
    g.add_argument("--cos-zenith-step", metavar="D", type=float, default=D.cos_zenith_step,
                   help="width of the fine cos(zenith) bins of adaptive groups (no unit; "
                   "default: 0.01)")
    g.add_argument("--group-by", metavar="COLUMN=EDGES", action="append", default=None,
                   help="also group by an obs-table column, e.g. AZ_PNT=-90,90,270 (north/south; "
                   "azimuth is periodic) or MUONEFF=0.6,0.85,1.2; may repeat. 'north-south' is "
                   "short for AZ_PNT=-90,90,270")
    g.add_argument("--groups", metavar="FILE", default=None,
                   help="reuse the groups of a bg_observation_groups.ecsv (runs are assigned by "
                   "its bounds) instead of deciding new ones (default: decide new groups)")

    g.add_argument("--energy-threshold", metavar="POLICY", default=DEFAULTS.energy_threshold,
                   help="per-run energy thresholds: a run adds counts and exposure only to "
                   "energy bins above its threshold. 'safe': SAFE_ENERGY_LO of the obs index, "
                   "else a zenith rule E0/cos(z)^a fitted to the store's own runs (to their "
                   "SAFE_ENERGY_LO, or, when fewer than 3 have it, to the counts peak of their "
                   "events); 'zenith': the zenith rule for all runs; 'none': no threshold; a "
                   "number: one threshold in TeV (default: "
                   f"{DEFAULTS.energy_threshold}). The rule used is printed. With thresholds, "
                   "analyse each run above its own threshold: below it the model holds "
                   "placeholders only")
    g.add_argument("--smooth", choices=("none", "gauss", "fit"), default=D.smooth,
                   help="smooth the rate (counts and exposure are kept raw): 'gauss' a Gaussian "
                   "kernel in the FoV per energy bin, width adapted to the statistics, each "
                   "slice's total kept; 'fit' a spline surface in log rate (energy x offset, "
                   "plus a FoV gradient in 3D) fitted with a Poisson likelihood (default: none)")
    g.add_argument("--per-run", action="store_true",
                   help="write one model per run (bg_run_models/), interpolated between the "
                   "groups in cos(zenith), and point each run's bkg row of the HDU index at it "
                   "(add --smooth when groups have many bins with few counts)")
    g.add_argument("--per-run-method", choices=("log", "linear", "nearest"), default="log",
                   help="per-run interpolation: in log rate, in rate, or the nearest group "
                   "(default: log)")
    g.add_argument("--conditions", metavar="NAMES", default=None,
                   help="fit a conditional model: ln rate as smooth functions of these run "
                   "conditions, per energy bin (e.g. zenith,MUONEFF,N_TELS,azimuth,time; "
                   "computed: zenith, azimuth, time, event_rate; else obs-table columns); "
                   "per-run models then follow each run's conditions")
    g.add_argument("--smoothness", metavar="LAMBDA", default=D.smoothness,
                   help="roughness penalty of the conditional terms over energy (default: cv, "
                   "chosen by cross-validation over runs)")


def options_from_args(args, **given) -> BuildOptions:
    """The option objects of :func:`xbkg.make_model` from ``make-models`` or ``validate``
    arguments (binning, selection, groups, thresholds, smoothing, conditional fit, and the
    options of other instruments' stores) and ``given`` keyword shortcuts, which take
    precedence; an option argparse leaves at None takes its default."""
    flat = {"kind": args.kind, "fov_alignment": args.fov_alignment,
            "energy_edges": args.energy_edges, "offset_edges": args.offset_edges,
            "fov_edges": args.fov_edges, "offset_max": args.offset_max,
            "fov_extent": getattr(args, "fov_extent", None), "selection": args.selection,
            "zenith_edges": args.zenith_edges, "smoothing": args.smooth, **_modelling(args),
            **(_instrument_options(args) if hasattr(args, "site") else {}), **given}
    return build_options(**{k: v for k, v in flat.items() if v is not None})


def _modelling(args) -> dict:
    """The grouping and energy_threshold keyword arguments of make_model."""
    adaptive = args.adaptive or args.zenith_min_time is not None or args.zenith_min_runs is not None
    by = {}
    for spec in args.group_by or []:
        if spec.strip().lower() in ("north-south", "northsouth"):
            by["AZ_PNT"] = "-90,90,270"
            continue
        column, sep, edges = spec.partition("=")
        if not sep or not column.strip() or not edges.strip():
            raise CLIError(f"--group-by must be COLUMN=EDGES (e.g. AZ_PNT=-90,90,270), got {spec!r}")
        by[column.strip()] = edges
    if args.groups is not None:
        if adaptive or by or args.zenith_edges is not None:
            raise CLIError("--groups reuses a grouping: do not combine it with --zenith-edges, "
                           "--adaptive or --group-by")
        grouping = args.groups
    elif adaptive:
        if args.zenith_edges is not None:
            raise CLIError("--adaptive (or --zenith-min-time/--zenith-min-runs) replaces "
                           "--zenith-edges; give one of them")
        grouping = {"adaptive": True, "by": by, "cos_zenith_step": args.cos_zenith_step,
                    "min_ontime": D.min_ontime if args.zenith_min_time is None
                    else args.zenith_min_time,
                    "min_runs": args.zenith_min_runs or D.min_runs}
    else:
        grouping = {"by": by} if by else None
    out = {"grouping": grouping, "energy_threshold": args.energy_threshold}
    if getattr(args, "conditions", None) is not None:  # "" too: refused as naming none
        out["conditions"] = args.conditions
        out["smoothness"] = _smoothness(args.smoothness)
    return out


def _smoothness(text):
    if str(text).lower() == "cv":
        return "cv"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise CLIError(f"--smoothness must be 'cv' or a number >= 0, got {text!r}")
    return value


def cmd_info(args) -> int:
    """summarise a model file or a make-models OUTDIR

    Print what a model is: kind, FoV alignment (3D), binning, zenith groups with runs,
    observation time and counts. Given a make-models OUTDIR, also the runs used and rejected
    (with reasons), the options and provenance of the build and where each file is.
    """
    path = Path(args.path)
    if path.is_dir():
        print(outdir_summary(path))
    else:
        print(summary_text(open_model(path, hdu=args.hdu)))
    return 0


def _check_report_output(output) -> None:
    """``report --output`` may replace an earlier HTML report, never another file (a model,
    a FITS file), a folder or a FIFO."""

    path = Path(output)
    if path.is_dir():
        raise CLIError(f"--output {output}: is a folder; give a file name")
    if os.path.lexists(path):
        if not path.is_file():
            raise CLIError(f"--output {output}: not a regular file: refused")
        if path.suffix.lower() not in (".html", ".htm"):
            raise CLIError(f"--output {output}: exists and is not an HTML report: refusing "
                           "to replace it")
    check_writable(path, option="--output")


def cmd_report(args) -> int:
    """write one HTML page of figures and tables of a make-models OUTDIR

    Write a self-contained HTML report (figures embedded, no network needed) of a make-models
    OUTDIR: rate over energy x offset per group, FoV maps, zenith dependence, counts and
    exposure statistics, runs used and rejected, the command and versions that made it.
    """
    if args.output is not None:
        _check_report_output(args.output)
    print(f"wrote {write_report(args.outdir, output=args.output)}")
    return 0


def cmd_simulate(args) -> int:
    zr = parse_edges(args.zenith_range.replace(":", ","), name="--zenith-range")
    _guard(args.outdir, None, args, ("truth.json", "hdu-index.fits.gz"))
    plan = ObservingPlan(n_runs=args.runs, events_per_run=args.events,
                         zenith_range=(zr[0], zr[-1]), style=args.style, compress=args.gzip)
    path = simulate_store(args.outdir, plan, seed=args.seed, n_jobs=args.jobs,
                          overwrite=args.overwrite)
    print(f"wrote a simulated {args.style}-style store of {args.runs} runs to {path}")
    return 0


def cmd_demo(args) -> int:
    """simulate a small store, build models from it and write the report

    Simulate a small store (OUTDIR/store), build 3D models in three zenith groups
    (OUTDIR/models), print their summary and how well they recover the simulated truth, and
    write the HTML report (OUTDIR/models/report.html). No data needed.
    """
    out = Path(args.outdir)
    _guard(out / "store", None, args, ("truth.json",))
    store = simulate_store(out / "store", n_runs=args.runs, events_per_run=20000,
                           zenith_range=(0, 60), overwrite=args.overwrite)
    print(f"simulated {args.runs} runs in {store}")
    data = open_datastore(store)
    _guard(out / "models", data, args, ("model.nc",))
    options = build_options(selection="all", zenith_edges="0,30,45,60")
    _build_and_write(data, out / "models", options, report=False, overwrite=args.overwrite,
                     command_line=getattr(args, "command_line", None))
    print(f"summary of {out / 'models' / 'model.nc'}:")
    print(summary_text(open_model(out / "models" / "model.nc")))
    _print_closure(store, out / "models" / "model.nc")
    if not args.no_report:
        print(f"report (open it in a browser): {write_report(out / 'models', store=store)}")
    return 0


def _print_closure(store, model_path) -> None:
    """How well the demo model recovers the simulated truth, per group."""
    print("closure against the simulated truth (bins with >= 25 expected counts, "
          "inside the offset cut):")
    for row in truth_closure(store, open_model(model_path), min_expected=25):
        if not row["n_bins"]:
            print(f"  group {row['group']}: no bin expects 25 counts (too few events for this "
                  "binning)")
            continue
        print(f"  group {row['group']}: {row['n_bins']} bins, chi2/ndf = {row['chi2_ndf']:.3f}, "
              f"counts/truth = {row['ratio']:.4f}")


_UPDATE_CHECKS = ("kind", "fov_alignment", "energy_edges", "offset_edges", "fov_edges",
                  "offset_max", "zenith_edges")


def _add_update_parser(sub) -> None:
    up = sub.add_parser(
        "update-model", help="add runs to a model without re-reading its runs",
        description="Add runs of DATA_DIR to a model (model.nc, or a make-models OUTDIR whose "
        "products are then rewritten from DATA_DIR, the grown store the model came from), "
        "with the model's own binning, groups, selection and thresholds (xbkg.building.update).")
    up.add_argument("model", metavar="MODEL", help="model.nc, or a make-models OUTDIR")
    up.add_argument("data_dir", metavar="DATA_DIR", help="GADF DL3 store with the new runs")
    up.add_argument("--run-list", metavar="FILE",
                    help="OBS_IDs to add (default: every run of DATA_DIR not in the model)")
    up.add_argument("--output", metavar="PATH", help="write here (default: replace MODEL)")
    g = up.add_argument_group("checks: refuse the update unless these describe the model "
                              "(default: no check)")
    g.add_argument("--kind", choices=("2d", "3d"), default=None, help="the model's kind")
    g.add_argument("--fov-alignment", choices=("altaz", "radec"), default=None,
                   help="the 3D model's FoV alignment")
    for flag, what in (("--energy-edges", "energy edges in TeV"),
                       ("--offset-edges", "2D offset edges in deg"),
                       ("--fov-edges", "3D DETX and DETY edges in deg"),
                       ("--zenith-edges", "zenith group edges in deg")):
        g.add_argument(flag, default=None, help=f"the model's {what} (edge spec)")
    g.add_argument("--offset-max", type=float, default=None, help="the model's offset cut in deg")
    _add_run(up)
    up._option_string_actions["--overwrite"].help = (
        "replace an existing --output (writing over MODEL itself needs no flag)")
    up.add_argument("--no-image", action="store_true", help="do not write the 3D image files")
    up.add_argument("--conditions", metavar="NAMES", default=None,
                    help="check that a conditional model has these conditions (it is refitted "
                    "on the old runs' stored statistics and the new runs' either way)")
    up.add_argument("--strict", action="store_true", help="stop at the first unusable run")
    _add_no_report(up)


def cmd_update_model(args) -> int:
    path = Path(args.model)
    recover(path)  # a make-models or update-model killed while it replaced MODEL
    folder = path.is_dir()
    model = read_netcdf(path / "model.nc" if folder else path)
    store = open_datastore(args.data_dir)
    out = Path(args.output) if args.output else path
    _guard(out, store, args, ("model.nc",) if folder else (), [args.run_list],
           option="--output" if args.output else "MODEL")
    obs_ids = _read_run_list(args.run_list) if args.run_list else None
    updated = update_model(model, store, obs_ids, scheduler=args.scheduler,
                           progress=_progress(args), on_error="raise" if args.strict else "skip",
                           conditions=args.conditions,
                           **{k: getattr(args, k) for k in _UPDATE_CHECKS})
    overwrite = args.overwrite or out.resolve() == path.resolve()
    if folder:
        requested = store.obs_id.values.tolist() if obs_ids is None else obs_ids
        rejected = _rejected_after_update(path, updated, requested)
        write_products(updated, store, out, rejected=rejected, overwrite=overwrite,
                       image=not args.no_image)
    else:
        write_netcdf(updated, out, overwrite=overwrite)
    print(f"added {updated.sizes['obs_id'] - model.sizes['obs_id']} run(s): the model now has "
          f"{updated.sizes['obs_id']} runs, written to {out}")
    if folder and not args.no_report:
        print(f"report: {write_report(out, store=store)}")
    return 0


def _rejected_after_update(folder: Path, model, requested) -> dict:
    """bg_rejected_runs of a make-models OUTDIR, less the runs now used, plus the requested runs
    the update rejected."""
    rejected = rejected_runs(folder)
    used = set(model["obs_id"].values.tolist())
    skipped = json.loads(model.attrs.get("provenance", "{}")).get("skipped_runs", {})
    for obs_id in requested:
        if int(obs_id) not in used:
            rejected[int(obs_id)] = skipped.get(str(obs_id), "not selected by the model's "
                                                "selection, cuts or groups")
    return {k: v for k, v in rejected.items() if k not in used}


def _add_apply_parser(sub) -> None:
    ap = sub.add_parser(
        "apply-model", help="write a conditional model's background for every run of a store",
        description="One BKG file per run of DATA_DIR (ON runs too), following each run's "
        "conditions, plus hdu-index.fits.gz and obs-index.fits.gz so that gammapy's "
        "DataStore.from_dir(OUTDIR).obs(ID).bkg is the run's model and its events, GTI and IRFs "
        "come from DATA_DIR. Runs outside the fitted conditions are flagged (warning, column "
        "BKG_OUTSIDE of obs-index).")
    ap.add_argument("model", metavar="MODEL", help="model.nc of make-models --conditions")
    ap.add_argument("data_dir", metavar="DATA_DIR", help="GADF DL3 store of the runs")
    ap.add_argument("outdir", metavar="OUTDIR", help="output folder")
    ap.add_argument("--run-list", metavar="FILE", help="text file of OBS_IDs (default: all runs)")
    ap.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")


def cmd_apply_model(args) -> int:
    model_path = Path(args.model)
    if model_path.is_dir():
        model_path = model_path / "model.nc"
    store = open_datastore(args.data_dir)
    _guard(args.outdir, store, args, ("hdu-index.fits.gz",), [model_path, args.run_list])
    model = open_model(model_path)
    if "cond_coef" not in model:
        raise CLIError(f"{model_path}: not a conditional model (build it with make-models "
                       "--conditions)")
    out = apply_model(model, store, args.outdir,
                      obs_ids=_read_run_list(args.run_list) if args.run_list else None,
                      overwrite=args.overwrite)
    print(f"wrote {out['n_runs']} per-run models to {out['outdir']}"
          + (f" ({len(out['outside'])} outside the fitted conditions: BKG_OUTSIDE)"
             if out["outside"] else ""))
    return 0


def _add_validate_parsers(sub) -> None:
    va = _command(sub, "validate", cmd_validate)
    va.add_argument("data_dir", metavar="DATA_DIR", help="GADF DL3 store (obs-index, hdu-index)")
    va.add_argument("outdir", metavar="OUTDIR", help="output folder")
    sel = va.add_argument_group("runs and folds")
    sel.add_argument("--selection", choices=("off", "offplane", "all"), default="off",
                     help=SELECTION_HELP)
    sel.add_argument("--run-list", metavar="FILE",
                     help="text file of OBS_IDs to use (default: every run of DATA_DIR)")
    sel.add_argument("--folds", metavar="K", type=_at_least(2), default=5,
                     help="number of folds (default: 5)")
    sel.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default: 0)")
    sel.add_argument("--reference", metavar="MODEL", default=None,
                     help="score fixed models instead of k-fold builds: 'dr1' (or 'store') the "
                     "per-run bkg HDUs of DATA_DIR's HDU index, or a model file / make-models "
                     "OUTDIR used for every run (default: k-fold builds)")
    sel.add_argument("--no-reverse-lon", action="store_true",
                     help="with --reference dr1: do not mirror DETX of the per-run RADEC models "
                     "(gammapy reads H.E.S.S. DR1 models in a reversed-longitude frame)")
    ev = va.add_argument_group("evaluation region (defaults as the DR1 reference figures)")
    ev.add_argument("--eval-energy-edges", default="0.3:50:12",
                    help="energy bins in TeV (default: 0.3:50:12)")
    ev.add_argument("--eval-width", type=float, default=4.0,
                    help="side of the square grid around each pointing, deg (default: 4)")
    ev.add_argument("--eval-binsz", type=float, default=0.4, help="pixel size, deg (default: 0.4)")
    ev.add_argument("--eval-offset-max", type=float, default=2.0,
                    help="pixels with centres farther from the pointing are ignored (default: 2)")
    ev.add_argument("--eval-threshold", default="safe",
                    help="per-run energy range: 'safe' (SAFE_ENERGY_LO/HI of the obs index), "
                    "'none', or a threshold in TeV (default: safe)")
    _add_binning(va)
    _add_modelling(va)
    _add_run(va)
    va.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")

    co = _command(sub, "compare", cmd_compare)
    co.add_argument("model_a", metavar="A",
                    help="reference model set: model.nc, a GADF file or a make-models OUTDIR")
    co.add_argument("model_b", metavar="B", help="model set compared with A (same forms as A)")
    co.add_argument("outdir", metavar="OUTDIR", help="output folder")
    co.add_argument("--labels", nargs=2, metavar=("LABEL_A", "LABEL_B"), default=("A", "B"),
                    help="names of A and B in tables and plots (default: A B)")
    co.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")
    co.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    co.add_argument("--nested", action="store_true",
                    help="B's runs include all of A's (e.g. all runs vs the off runs): the Poisson "
                    "consistency test compares B minus A with A")


def cmd_validate(args) -> int:
    """k-fold cross-validation of background models over runs

    Split the runs into folds; for each fold build a model on the other runs and predict the
    held-out runs' counts per bin (or score fixed models with --reference). Writes
    validation_runs.ecsv, validation_summary.json, validation_cubes.nc and PNG plots to OUTDIR
    (xbkg.checks.crossval).
    """
    if args.per_run:
        per_run = args.per_run_method
    else:
        per_run = None
    reference = args.reference
    fixed = reference is not None and reference.lower() not in ("dr1", "store")
    _guard(args.outdir, None, args, ("validation_summary.json",),
           [args.data_dir, args.run_list, args.groups, reference if fixed else None])
    if fixed:
        reference = load_model_set(reference)
    options = options_from_args(args, selection="all")  # the runs are selected by validate
    try:
        evaluation = EvaluationOptions(
            energy_edges=args.eval_energy_edges, width=args.eval_width, binsz=args.eval_binsz,
            offset_max=args.eval_offset_max, safe_threshold=args.eval_threshold,
            reverse_lon=not args.no_reverse_lon)
    except ValueError as exc:  # named by its --eval-* option, not the model's --offset-max
        raise CLIError(cli_message(str(exc), EVAL_TO_FLAG)) from None
    result = validate(
        args.data_dir, obs_ids=_read_run_list(args.run_list) if args.run_list else None,
        selection=args.selection, folds=FoldOptions(n_folds=args.folds, seed=args.seed),
        model_options=options, per_run=per_run, reference=reference, evaluation=evaluation,
        scheduler=args.scheduler, progress=_progress(args))
    out = write_validation(result, args.outdir, overwrite=args.overwrite, plots=not args.no_plots)
    s = summarise(result)
    print(f"{s['n_runs']} runs: counts/predicted {s['norm_mean']:.3f} +- {s['norm_std']:.3f} "
          f"(std over runs), tilt {s['tilt_mean']:+.3f} +- {s['tilt_std']:.3f}, per-bin "
          f"significance mean {s['sig_mean']:+.3f} width {s['sig_width']:.3f} (exact model: "
          f"{s['null_mean']:+.3f} / {s['null_width']:.3f})"
          + (f", pulls {s['pull_mean']:+.3f} width {s['pull_width']:.3f}"
             if math.isfinite(s["pull_width"]) else "") + f"; wrote {out}")
    return 0


def cmd_compare(args) -> int:
    """compare two model sets: ratio maps, profiles, summary table

    Compare model set B with model set A (each a model.nc / GADF file or a make-models OUTDIR)
    on A's grid, per zenith group of A (xbkg.checks.compare). Writes compare_summary.ecsv,
    compare.nc and PNG plots to OUTDIR and prints the summary.
    """
    _guard(args.outdir, None, args, ("compare_summary.ecsv",), [args.model_a, args.model_b])
    model_a, model_b = load_model_set(args.model_a), load_model_set(args.model_b)
    comparison = compare_models(model_a, model_b, labels=args.labels)
    out = write_comparison(comparison, args.outdir, overwrite=args.overwrite,
                           plots=not args.no_plots)
    table = comparison_table(comparison_summary(comparison))
    for name in table.colnames[4:]:
        if table[name].dtype.kind == "f":
            table[name].info.format = ".4g"
    print(f"{args.labels[1]} / {args.labels[0]} per zenith group of {args.labels[0]}:")
    print("\n".join(table.pformat(max_lines=-1, max_width=-1)))
    try:
        c = rate_consistency(model_a, model_b, nested=args.nested)
        if not c.attrs["ndf"]:
            raise ValueError(f"no bin expects >= {c.attrs['min_expected']:g} counts in both "
                             "models")
    except ValueError as exc:
        print(f"no Poisson consistency test: {exc}")
    else:
        print(f"Poisson consistency{' (nested: B minus A vs A)' if args.nested else ''}: "
              f"chi2/ndf {c.attrs['chi2_ndf']:.3f} (ndf {c.attrs['ndf']}); with a free "
              f"normalisation per zenith group and energy {c.attrs['shape_chi2_ndf']:.3f} "
              f"(ndf {c.attrs['shape_ndf']})")
    print(f"wrote {out}")
    return 0


COMMANDS = {"make-models": cmd_make_models, "info": cmd_info, "simulate": cmd_simulate,
            "demo": cmd_demo, "update-model": cmd_update_model, "report": cmd_report}
COMMANDS.update({"validate": cmd_validate, "compare": cmd_compare,
                 "apply-model": cmd_apply_model})


@contextlib.contextmanager
def _workers(args):
    """With ``--workers N``: a local cluster of N worker processes becomes the scheduler."""
    if not getattr(args, "workers", None):
        yield
        return
    import distributed  # noqa: F401  (configures its loggers on import)


    if not (args.verbose or args.debug):  # distributed logs its start and stop at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    with local_cluster(args.workers) as client:
        args.scheduler = client
        yield


def main(argv=None) -> int:
    parser = build_parser()
    the_command = argv is None  # not an in-process call: may end the process outright
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "xbkg " + shlex.join(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else
                        logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        _refuse_special_files(args)
        with _sigterm_interrupts(), _workers(args):
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe (``| head``) shows here, not at exit
            return code
    except BrokenPipeError:  # the reader went away (``xbkg info ... | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        discard_pending()
        print("xbkg: interrupted; no partial output was left", file=sys.stderr)
        if the_command:  # the command itself: end now, even if a thread is stuck in a read
            _exit_now(130)
        return 130
    except (CLIError, ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as exc:
        if args.debug:
            raise
        message = cli_message(" ".join(str(exc).split()))  # one line, whatever the exception says
        print(f"xbkg {args.command}: error: {message}", file=sys.stderr)
        return 2


def _interrupt(signum, frame):
    # should the clean-up itself hang (a stuck file system), end the process in any case
    if _WATCHDOGS:  # a second Ctrl-C or kill during the clean-up: let the clean-up finish
        return
    watchdog = threading.Timer(_WATCHDOG_SECONDS, _exit_now, (128 + signum,))
    watchdog.daemon = True
    try:
        watchdog.start()
    except RuntimeError:  # no thread to be had (address space or thread limit): a timer signal
        signal.signal(signal.SIGALRM, lambda *_: _exit_now(128 + signum))
        signal.setitimer(signal.ITIMER_REAL, _WATCHDOG_SECONDS)
        watchdog = _AlarmWatchdog()
    _WATCHDOGS.append(watchdog)
    raise KeyboardInterrupt(f"signal {signum}")  # nothing else: no caller may swallow it


class _AlarmWatchdog:
    """The SIGALRM stand-in for the watchdog thread; ``cancel`` disarms it."""

    def cancel(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


#: Seconds the clean-up after SIGTERM/SIGINT may take before the process ends regardless.
_WATCHDOG_SECONDS = 20.0
_WATCHDOGS: list = []


def _exit_now(status: int) -> None:
    """Flush and end the process without waiting for worker threads (one may be blocked)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block SIGTERM (a plain ``kill``) and SIGINT (Ctrl-C) raise KeyboardInterrupt,
    so temporary outputs are removed on the way out, and start a watchdog that ends the process
    should that clean-up hang; further signals meanwhile do not interrupt the clean-up (main
    thread only; elsewhere a no-op). Both signals are unblocked for the block: a parent that
    blocked them (a mask is inherited across exec) would otherwise leave them pending, unseen."""
    old = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            old[signum] = signal.signal(signum, _interrupt)
        except ValueError:  # not the main thread
            break
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, old) if old else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in old.items():
            signal.signal(signum, handler)
        while _WATCHDOGS:  # the clean-up is done (an in-process caller carries on)
            _WATCHDOGS.pop().cancel()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
