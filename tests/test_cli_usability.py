"""The command line explains itself: help for every option, flags anywhere, errors that say
what would work, ``xbkg info OUTDIR``, and one way to pass a store in the Python API."""

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xbkg
from xbkg.cli import build_parser, join_negative_values, main
from xbkg.simulate import simulate_store

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser):
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def _documented_actions(parser):
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return simulate_store(tmp_path_factory.mktemp("s") / "store", n_runs=4, events_per_run=1500,
                          seed=3)


@pytest.fixture(scope="module")
def outdir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("o") / "out"
    assert main(["make-models", str(store), str(out), "--selection", "all", "--kind", "2d",
                 "--zenith-edges", "0,30,90", "--no-progress", "--no-report"]) == 0
    return out


# --- 1. help and parsing ---------------------------------------------------------------------


def test_every_option_of_every_command_has_help_with_its_default():
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"make-models", "info", "report", "simulate", "demo", "update-model", "validate",
            "compare"} <= set(commands)
    missing, no_default = [], []
    for name, sub in [("xbkg", parser)] + list(commands.items()):
        assert sub.description, f"{name} has no description"
        for action in _documented_actions(sub):
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(label)
            elif (action.default not in (None, False, argparse.SUPPRESS)
                  and not isinstance(action, argparse._VersionAction)
                  and "default" not in action.help):
                no_default.append(label)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help does not give their default: {no_default}"
    (sub_action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert all(choice.help for choice in sub_action._choices_actions)


def test_help_is_plain_text():
    parser = build_parser()
    for sub in [parser] + list(_subparsers(parser).values()):
        text = sub.format_help()
        for markup in ("``", ":func:", ":mod:", ".. "):
            assert markup not in text, (sub.prog, markup)


def test_overwrite_help_fits_the_command():
    commands = _subparsers(build_parser())
    assert "OUTDIR" not in commands["update-model"]._option_string_actions["--overwrite"].help
    selection = commands["make-models"]._option_string_actions["--selection"].help
    assert "TARGET_NAME" in selection and "GLAT_PNT" in selection


@pytest.mark.parametrize("position", ["before", "after"])
def test_global_flags_anywhere(position):
    parser = build_parser()
    flags = ["-v", "--debug"]
    line = ["make-models", "STORE", "OUT"]
    args = parser.parse_args(flags + line if position == "before" else line + flags)
    assert args.verbose is True and args.debug is True
    args = parser.parse_args(line)
    assert args.verbose is False and args.debug is False


def test_negative_edges_with_or_without_equals():
    parser = build_parser()
    base = ["make-models", "S", "O"]
    joined = parser.parse_args(base + ["--fov-edges=-2.5:2.5:25", "--zenith-edges=-1,60"])
    spaced = parser.parse_args(base + ["--fov-edges", "-2.5:2.5:25", "--zenith-edges", "-1,60"])
    assert spaced.fov_edges == joined.fov_edges == "-2.5:2.5:25"
    assert spaced.zenith_edges == joined.zenith_edges == "-1,60"
    # only a value that starts with '-<digit>' is joined; a following option stays an option
    assert join_negative_values(["--kind", "-v"]) == ["--kind", "-v"]
    assert join_negative_values(["--", "-1"]) == ["--", "-1"]


@pytest.mark.subprocess
def test_verbose_after_the_command_logs_selection_once(store, tmp_path):
    """``-v`` at the end of the line works and the selection INFO line is printed once; the
    spaced negative edge spec reaches the model."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "xbkg", "make-models", str(store), str(out), "--selection", "all",
         "--fov-edges", "-2:2:8", "--energy-edges", "0.3:30:5", "--no-progress", "--no-report",
         "-v"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("INFO xbkg.store.selection: selected") == 1, proc.stderr
    model = xbkg.open_model(out / "model.nc")
    assert model.sizes["detx"] == 8 and float(model["detx_bounds"].min()) == -2.0


# --- 2. messages -------------------------------------------------------------------------------

# (arguments after `xbkg`, what the one-line message must say); {store}, {out}, {full}, {tmp}
# are filled in by the test. Each names the option or file and what would work instead.
WRONG = [
    (["make-models", "{store}", "{full}"], ["{full}", "not empty", "--overwrite"]),
    (["make-models", "{store}", "{out}", "--energy-edges", "0:100:10"],
     ["--energy-edges", "log spacing needs lo > 0", "0.1:100:10"]),
    (["make-models", "{store}", "{out}", "--energy-edges", "1:100"],
     ["--energy-edges", "'lo:hi:n' has three parts"]),
    (["make-models", "{store}", "{out}", "--fov-edges", "-2:2:0"],
     ["--fov-edges", "integer >= 1"]),
    (["make-models", "{store}", "{out}", "--zenith-edges", "50,10"],
     ["--zenith-edges", "strictly increasing"]),
    (["make-models", "{store}", "{out}", "--offset-max", "-1"], ["--offset-max", "> 0"]),
    (["make-models", "{store}", "{out}", "--n-obs-max", "0"], ["--n-obs-max", ">= 1"]),
    (["make-models", "{store}", "{out}", "--workers", "0"], ["--workers", ">= 1"]),
    (["make-models", "{store}", "{out}", "--kind", "4d"], ["--kind", "choose from", "'2d'"]),
    (["make-models", "{store}", "{out}", "--scheduler", "nosuch"],
     ["--scheduler", "threads, processes, synchronous", "tcp://host:8786"]),
    (["make-models", "{store}", "{out}", "--energy-threshold", "abc"],
     ["--energy-threshold", "'safe'", "a number (TeV)"]),
    (["make-models", "{store}", "{out}", "--run-list", "{tmp}/nope.txt"],
     ["--run-list", "nope.txt"]),
    (["make-models", "{tmp}/nostore", "{out}"], ["nostore", "not a directory", "GADF"]),
    (["info", "{tmp}"], ["no model.nc", "make-models output folder"]),
    (["report", "{tmp}"], ["no model.nc", "make-models output folder"]),
    (["simulate", "{out}", "--runs", "0"], ["--runs", ">= 1"]),
    (["simulate", "{store}"], ["not empty", "--overwrite"]),
]


def _run(argv):
    return subprocess.run([sys.executable, "-m", "xbkg", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.subprocess
@pytest.mark.slow  # 17 subprocesses, 4 at a time: about 20 s on one idle core
def test_wrong_invocations_exit_2_with_a_message_that_says_what_works(store, outdir, tmp_path):
    values = {"store": str(store), "full": str(outdir), "out": str(tmp_path / "new"),
              "tmp": str(tmp_path)}
    cases = [([a.format(**values) for a in argv], [m.format(**values) for m in must])
             for argv, must in WRONG]
    with ThreadPoolExecutor(4) as pool:
        procs = list(pool.map(_run, [argv for argv, _ in cases]))
    for (argv, must), proc in zip(cases, procs):
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (argv, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (argv, proc.stderr[-2000:])
        for text in must:
            assert text in err[-1], (argv, text, err[-1])
    assert not (tmp_path / "new").exists()  # nothing was written by a refused command


# --- 3. one way to pass a store ---------------------------------------------------------------

STORE_PARAMETERS = ("store", "data", "obs", "store_dir")


def _public_functions_taking_a_store():
    found = []
    for info in pkgutil.walk_packages(xbkg.__path__, "xbkg."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            func = getattr(module, name)
            if not inspect.isfunction(func) or func.__module__ != info.name:
                continue
            params = set(inspect.signature(func).parameters) & set(STORE_PARAMETERS)
            if params:
                found.append((f"{info.name}.{name}", func, params))
    return found


def test_every_public_function_taking_a_store_takes_a_path_or_an_opened_store():
    found = _public_functions_taking_a_store()
    assert len(found) >= 20  # the walk finds them (predict_counts, select_runs, ...)
    assert "xbkg.model.predict.predict_counts" in {name for name, _, _ in found}
    converters = {"xbkg.store.datastore.as_datastore", "xbkg.store.datastore.store_directory",
                  "xbkg.io.index_tables.store_directory"}
    wrong = [name for name, func, params in found
             if getattr(func, "store_argument", None) not in params and name not in converters]
    assert not wrong, f"take only an opened store (decorate with takes_store): {wrong}"


def test_a_path_and_an_opened_store_give_the_same_results(store):
    opened = xbkg.open_datastore(store)
    model = xbkg.make_model(store, kind="3d", fov_edges="-2:2:4", energy_edges="0.3:30:4",
                            scheduler="synchronous")
    a = xbkg.predict_counts(model, str(store), obs_id=1, width=2.0, binsz=0.5)
    b = xbkg.predict_counts(model, opened, obs_id=1, width=2.0, binsz=0.5)
    np.testing.assert_array_equal(a["npred"].values, b["npred"].values)
    (sel_path, rej_path), (sel_open, rej_open) = (xbkg.select_runs(store, "all", n_obs_max=2),
                                                  xbkg.select_runs(opened, "all", n_obs_max=2))
    assert sel_path.tolist() == sel_open.tolist() and len(sel_path) == 2 and \
        rej_path == rej_open and len(rej_path) == 2
    ev_path, ev_open = xbkg.open_events(store), xbkg.open_events(opened)
    np.testing.assert_array_equal(ev_path["ENERGY"].values, ev_open["ENERGY"].values)
    from xbkg.simulate import model_truth_counts

    np.testing.assert_array_equal(model_truth_counts(store, model),
                                  model_truth_counts(opened, model))
    with pytest.raises(TypeError, match="store directory"):
        xbkg.select_runs(42, "all")


# --- 4. info ------------------------------------------------------------------------------------


def test_info_of_an_outdir_summarises_the_build(outdir, capsys):
    assert main(["info", str(outdir)]) == 0
    text = capsys.readouterr().out
    model = xbkg.open_model(outdir / "model.nc")
    assert "2D (energy x offset)" in text and "ALTAZ" not in text
    assert f"runs used ({model.sizes['obs_id']})" in text
    assert "runs rejected" in text and "command: xbkg make-models" in text
    assert "--zenith-edges 0,30,90" in text and "selection: all" in text
    for name in ("model.nc", "bg_rejected_runs.ecsv", "bg_offset_model_group0_table.fits.gz"):
        assert name in text
    assert "group 1: zenith 30-90 deg" in text


def test_info_lists_rejected_runs_with_reasons(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["make-models", str(store), str(out), "--selection", "all", "--kind", "2d",
                 "--zenith-range", "0:40", "--no-progress", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    rejected = xbkg.report.summary.rejected_runs(out)
    assert rejected and f"runs rejected ({len(rejected)})" in text
    for reason in set(rejected.values()):
        assert reason in text


def test_repr_of_the_accessor_is_the_text_summary(outdir):
    model = xbkg.open_model(outdir / "model.nc")
    text = repr(model.bkg)
    assert text.startswith("xbkg background model: 2D (energy x offset)")
    assert "group 0" in text and len(text.splitlines()) < 20


@pytest.mark.slow  # simulates a 200-run store, builds, reports and compares
def test_readme_use_commands_run(store, tmp_path):
    """The command-line block of the README, run as written with its placeholders filled in."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()
                if line.startswith("xbkg ")]
    assert len(commands) >= 4
    names = {"DATA_DIR": str(store), "OUTDIR": str(tmp_path / "OUTDIR"),
             "STORE": str(tmp_path / "STORE"), "OFF_OUTDIR": str(tmp_path / "OUTDIR"),
             "ALL_OUTDIR": str(tmp_path / "OUTDIR"), "CMP": str(tmp_path / "CMP"),
             "COND_OUTDIR": str(tmp_path / "COND"), "RUNS_OUTDIR": str(tmp_path / "RUNS")}
    for command in commands:
        argv = [names.get(word.split("/")[0], word.split("/")[0]) + word[len(word.split("/")[0]):]
                for word in command.split()[1:]]
        if argv == ["--help"]:
            with pytest.raises(SystemExit) as exc:
                main(argv)
            assert exc.value.code == 0
            continue
        if argv[0] == "simulate":
            argv += ["--events", "500"]  # a smaller store than the README's, same command
        assert main(argv + ["--no-progress"] * (argv[0] == "make-models")) == 0, command
    assert (tmp_path / "OUTDIR" / "report.html").exists()
    assert json.loads(xbkg.open_model(tmp_path / "OUTDIR" / "model.nc").attrs["provenance"])
    assert (tmp_path / "RUNS" / "hdu-index.fits.gz").exists()  # apply-model of the conditional


@pytest.mark.subprocess
@pytest.mark.slow
def test_readme_quickstart_demo_ends_with_the_report(tmp_path):
    """The README's quickstart command (after the install), in an empty folder."""
    readme = (ROOT / "README.md").read_text()
    command = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    demo = command.split("&&", 1)[1].split()
    assert demo[:3] == ["python", "-m", "xbkg"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, *demo[1:]], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    report = tmp_path / "xbkg-demo" / "models" / "report.html"
    assert last.endswith(str(Path("xbkg-demo") / "models" / "report.html")), last
    assert report.stat().st_size > 50_000


def test_demo_writes_what_make_models_writes_from_its_store(tmp_path, capsys):
    """The demo's models are make-models' with the demo's options (every file the same bytes,
    model.nc the same data and provenance) and it prints what make-models prints, but the
    command recorded in the provenance is the demo's own."""
    demo = tmp_path / "demo"
    mm = demo / "mm"  # next to the demo's models: the same relative paths to the store
    assert main(["demo", str(demo), "--runs", "4", "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert main(["make-models", str(demo / "store"), str(mm), "--selection", "all",
                 "--zenith-edges", "0,30,45,60", "--no-progress", "--no-report"]) == 0
    made = capsys.readouterr().out.splitlines()
    files = sorted(p.name for p in (demo / "models").iterdir())
    assert files == sorted(p.name for p in mm.iterdir())
    assert "bg_rejected_runs.ecsv" in files and "report.html" not in files
    for name in files:
        if name != "model.nc":
            assert (demo / "models" / name).read_bytes() == (mm / name).read_bytes(), name
    a = xbkg.open_model(demo / "models" / "model.nc")
    b = xbkg.open_model(mm / "model.nc")
    provenance = [json.loads(m.attrs.pop("provenance")) for m in (a, b)]
    command = [p.pop("command") for p in provenance]
    assert command == [f"xbkg demo {demo} --runs 4 --no-report",
                       f"xbkg make-models {demo / 'store'} {mm} --selection all "
                       "--zenith-edges 0,30,45,60 --no-progress --no-report"]
    assert provenance[0] == provenance[1]
    xr.testing.assert_identical(a, b)
    lines = printed.splitlines()
    assert lines[0] == f"simulated 4 runs in {demo / 'store'}"
    assert lines[1:1 + len(made)] == [m.replace(str(mm), str(demo / "models")) for m in made]
    assert f"summary of {demo / 'models' / 'model.nc'}:" in lines
    assert any(line.startswith("closure against the simulated truth") for line in lines)
    assert not any(line.startswith("report") for line in lines)


@pytest.mark.slow
def test_readme_python_block_runs(hess_dr1, tmp_path, monkeypatch):
    """The README's Python block, on the DR1 store (a 3D model of the off runs)."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python", 1)[1].split("```", 1)[0]
    assert code.count('"path/to/store"') == 1
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code.replace('"path/to/store"', repr(str(hess_dr1))), "README.md", "exec"),
         namespace)
    assert float(namespace["npred"]["npred"].sum()) > 0
    assert (tmp_path / "report.html").stat().st_size > 50_000
    assert type(namespace["bkg3d"]).__name__ == "Background3D"
