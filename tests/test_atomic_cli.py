"""An interrupted ``xbkg make-models`` leaves no partial output and earlier outputs untouched.

``python -m xbkg make-models`` runs as a subprocess over an OUTDIR holding the output of an
earlier run (with other options, so a completed run would change it) and is stopped while it
computes or while it writes: Ctrl-C (SIGINT) and ``kill`` (SIGTERM) exit with status 130 and
remove the temporary folder; SIGKILL cannot be caught and may leave a hidden
``.OUTDIR.tmp-PID-*`` sibling (removed by the next run), never a partial OUTDIR.
"""

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from xbkg.building.products import atomic_dir
from xbkg.cli import main
from xbkg.simulate import simulate_store

ARGS = ["--selection", "all", "--zenith-edges", "0,20,40,60", "--scheduler", "synchronous",
        "--no-progress"]
OTHER = ["--energy-edges", "0.2:50:8", "--overwrite"]  # a completed run would change OUTDIR


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """A store and the OUTDIR of a successful earlier run on it."""
    root = tmp_path_factory.mktemp("atomic")
    store = simulate_store(root / "store", n_runs=8, events_per_run=10000, seed=2)
    out = root / "out"
    assert main(["make-models", str(store), str(out), *ARGS]) == 0
    return store, out


def snapshot(folder):
    """Every file under ``folder``: relative path -> (size, mtime_ns, sha256)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _wait_for(proc, phase, out):
    """Block until ``proc`` is computing (it logged its run selection) or writing (its
    temporary output folder exists); fail if it ends first."""
    while True:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "make-models ended before it selected runs"
        if "selected" in line:
            break
    if phase == "write":
        deadline = time.monotonic() + 120
        while not any(n.startswith(f".{out.name}.tmp-") for n in hidden_siblings(out)):
            assert proc.poll() is None, "make-models ended before it started writing"
            assert time.monotonic() < deadline
            time.sleep(0.001)


@pytest.mark.subprocess
@pytest.mark.parametrize(("sig", "phase"), [
    pytest.param(signal.SIGINT, "compute", id="SIGINT-compute"),
    pytest.param(signal.SIGTERM, "compute", id="SIGTERM-compute"),
    pytest.param(signal.SIGKILL, "compute", id="SIGKILL-compute"),
    pytest.param(signal.SIGINT, "write", id="SIGINT-write"),
    pytest.param(signal.SIGKILL, "write", id="SIGKILL-write"),
])
def test_killed_make_models_leaves_outdir_untouched(previous, tmp_path, sig, phase):
    store, earlier = previous
    out = tmp_path / "out"
    shutil.copytree(earlier, out)  # copy2: sizes, bytes and mtimes are kept
    before = snapshot(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xbkg", "-v", "make-models", str(store), str(out), *ARGS, *OTHER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(proc, phase, out)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert snapshot(out) == before
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        left = hidden_siblings(out)
        assert all(n.startswith(f".out.tmp-{proc.pid}-") for n in left), left
        assert phase == "write" or not left
        # the next run removes what the killed one left and replaces OUTDIR
        assert main(["make-models", str(store), str(out), *ARGS, *OTHER]) == 0
        assert hidden_siblings(out) == [] and snapshot(out) != before
    else:
        assert proc.returncode == 130, err
        assert "interrupted; no partial output was left" in err
        assert hidden_siblings(out) == []


@pytest.mark.subprocess
def test_killed_first_run_leaves_no_outdir(previous, tmp_path):
    store, _ = previous
    out = tmp_path / "new"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xbkg", "-v", "make-models", str(store), str(out), *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(proc, "write", out)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert not out.exists() and hidden_siblings(out) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.subprocess
def test_atomic_dir_error_and_stale_leftovers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("earlier")
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("partial")
        raise RuntimeError("failure while writing")
    assert [p.name for p in out.iterdir()] == ["old.txt"] and hidden_siblings(out) == []

    stale = tmp_path / f".out.tmp-{_dead_pid()}-abc"
    stale.mkdir()
    alive = tmp_path / f".out.tmp-{os.getpid()}-xyz"
    alive.mkdir()
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("complete")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert not stale.exists() and alive.exists()  # a live process' folder is left alone


@pytest.mark.subprocess
def test_killed_between_renames_restores_earlier_outdir(tmp_path):
    """If a kill lands between moving OUTDIR aside and moving the new one in, the next run
    puts the earlier OUTDIR back before doing anything else."""
    out = tmp_path / "out"
    old = tmp_path / f".out.old-{_dead_pid()}"
    old.mkdir()
    (old / "model.nc").write_text("earlier")
    with pytest.raises(FileExistsError, match="not empty"), atomic_dir(out):
        pass
    assert (out / "model.nc").read_text() == "earlier" and not old.exists()


# an interrupt inside open() or os.scandir() leaves the object to the garbage collector
@pytest.mark.filterwarnings("ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_interrupt_at_any_moment_of_atomic_dir_leaves_nothing(tmp_path):
    """KeyboardInterrupt (a timer's signal) at a random moment of 1000 replacements, as Ctrl-C
    would land; after each, what the CLI runs on an interrupt (``discard_pending``): OUTDIR
    always holds one complete output and no temporary or aside folder is ever left (the
    temporary folder used to be created before the clean-up block was entered)."""
    from xbkg.io.atomic import discard_pending

    armed = [False]

    def interrupt(signum, frame):  # once per replacement, as the CLI's handler does
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt

    out, rng, interrupted = tmp_path / "out", random.Random(1), 0
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        for i in range(1000):
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 1e-3))
                with atomic_dir(out, overwrite=True) as tmp:
                    (tmp / "a").write_text(str(i))
                    (tmp / "b").write_text(str(i))
            except (KeyboardInterrupt, OSError):  # rmtree may turn it into EBADF
                interrupted += 1
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            discard_pending()
            assert hidden_siblings(out) == [], i
            if out.exists():
                files = sorted(p.name for p in out.iterdir())
                assert files == ["a", "b"], (i, files)
                assert (out / "a").read_text() == (out / "b").read_text(), i
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 100  # the timer did land inside the block (noisy machine)
