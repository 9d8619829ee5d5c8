"""Hostile inputs and scenarios (issue 17): the user's data is never destroyed, no command
hangs or crashes, memory stays bounded whatever a file declares.

Every refusal is checked the same way (:func:`expect_refused`): exit status 2, one line on
stderr naming the file or option, no traceback, and nothing changed or left behind in the
test's folder (checksums of every file and the list of every entry, hidden ones included,
before and after). Cases that could hang, crash or allocate run the CLI in a subprocess with a
time limit, an address-space limit (so a regression cannot take the machine down) and a peak
RSS measured with ``os.wait4``.
"""

import contextlib
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.table import Table

import xbkg
from xbkg.cli import main
from xbkg.simulate import simulate_store

REPO = Path(xbkg.__file__).resolve().parents[1]
BIN = ["--energy-edges", "0.1:100:6", "--fov-edges=-2:2:8", "--scheduler", "synchronous",
       "--no-progress"]
#: Peak RSS allowed to a subprocess fed a small hostile file (the CLI alone takes ~200 MB).
RSS_MB = 600
#: Address space of a subprocess: a regression that allocates what a file declares fails
#: with MemoryError instead of swapping the machine.
AS_BYTES = 6 << 30


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 4-run store and the make-models OUTDIR of runs 1-3 (built once, copied for each
    test; ``update-model`` can add run 4)."""
    root = tmp_path_factory.mktemp("hostile")
    store = simulate_store(root / "store", n_runs=4, events_per_run=800, seed=3, compress=True,
                           zenith_range=(10, 40))
    (root / "runs123.txt").write_text("1 2 3\n")
    assert cli(["make-models", store, root / "models", "--selection", "all", "--no-image",
                "--run-list", root / "runs123.txt", *BIN]) == 0
    return root


@pytest.fixture
def work(base, tmp_path):
    """A fresh copy of the store (``store``) and of its models (``models``)."""
    shutil.copytree(base / "store", tmp_path / "store")
    shutil.copytree(base / "models", tmp_path / "models")
    shutil.copy(base / "runs123.txt", tmp_path / "runs123.txt")
    return tmp_path


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (hidden ones too): sha256 of files, "dir" for folders."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            out[str(path.relative_to(root))] = "special"
        elif path.is_dir():
            out[str(path.relative_to(root))] = "dir"
        else:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_line(err: str, match: str, command: str | None = None) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    if command:
        assert lines[0].startswith(f"xbkg {command}: error: "), lines[0]
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def expect_refused(argv, capsys, root: Path, match: str) -> str:
    """Run the CLI in-process: exit 2, one line matching ``match``, ``root`` untouched."""
    before = snapshot(root)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    line = assert_one_line(err, match, argv[0])
    assert snapshot(root) == before
    return line


def cli(argv) -> int:
    """The CLI in-process (arguments may be paths)."""
    return main([str(a) for a in argv])


Run = namedtuple("Run", "code out err rss_mb seconds")


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (AS_BYTES, AS_BYTES))


def _limits_signals_blocked():  # as a CI runner may start its jobs: the mask survives exec
    _limits()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _signal_when(proc, ready, stop: threading.Event, signum) -> None:
    while not stop.wait(0.05):
        if ready():  # the caller waits with os.wait4, which Popen.send_signal does not know
            os.kill(proc.pid, signum)
            return


def run_cli(args, *, timeout=120.0, signal_when=None, code=None, signum=signal.SIGTERM,
            blocked=False) -> Run:
    """``python -m xbkg ARGS`` in a subprocess: exit code, stdout, stderr, peak RSS (MB) and
    wall time; killed after ``timeout`` s (code -9). ``signum`` is sent as soon as
    ``signal_when()`` is true; with ``blocked`` the child starts with SIGINT and SIGTERM
    blocked."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "xbkg"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd + [str(a) for a in args], stdout=out, stderr=err, env=env,
                                preexec_fn=_limits_signals_blocked if blocked else _limits)
        killer, stop = threading.Timer(timeout, proc.kill), threading.Event()
        killer.start()
        if signal_when is not None:
            threading.Thread(target=_signal_when, args=(proc, signal_when, stop, signum)).start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            stop.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"), usage.ru_maxrss / 1024, seconds)


def expect_refused_subprocess(args, root: Path, match: str, *, rss=RSS_MB, timeout=120.0):
    before = snapshot(root)
    run = run_cli(args, timeout=timeout)
    assert run.code == 2, (run.code, run.err[-2000:])
    assert_one_line(run.err, match, str(args[0]))
    assert run.rss_mb < rss, f"peak RSS {run.rss_mb:.0f} MB"
    assert snapshot(root) == before
    return run


# ------------------------------------------------------------------------------------------
# 1. an output that is, is inside or contains an input: refused by every command


def _mm(w, out, *extra):
    return ["make-models", w / "store", out, "--selection", "all", *BIN, *extra]


OUTPUT_CASES = [
    pytest.param(lambda w: _mm(w, w / "store", "--overwrite"), r"OUTDIR .* is the input",
                 id="make-models-into-store-overwrite"),
    pytest.param(lambda w: _mm(w, w / "store"), r"OUTDIR .* is the input",
                 id="make-models-into-store"),
    pytest.param(lambda w: _mm(w, w / "store" / "data", "--overwrite"), r"OUTDIR .* inside",
                 id="make-models-into-data-overwrite"),
    pytest.param(lambda w: _mm(w, w / "store" / "models"), r"OUTDIR .* inside",
                 id="make-models-inside-store"),
    pytest.param(lambda w: _mm(w, w, "--overwrite"), r"OUTDIR .* contains the input",
                 id="make-models-parent-of-store-overwrite"),
    pytest.param(lambda w: ["update-model", w / "models", w / "store", "--output", w / "store",
                            "--overwrite"], r"--output .* is the input", id="update-into-store"),
    pytest.param(lambda w: ["update-model", w / "models" / "model.nc", w / "store", "--output",
                            w / "store" / "data" / "m.nc"], r"--output .* inside",
                 id="update-file-into-data"),
    pytest.param(lambda w: ["update-model", w / "models", w / "store", "--output", w,
                            "--overwrite"], r"--output .* contains the input",
                 id="update-into-parent"),
    pytest.param(lambda w: ["apply-model", w / "models", w / "store", w / "store", "--overwrite"],
                 r"OUTDIR .* is the input", id="apply-into-store"),
    pytest.param(lambda w: ["apply-model", w / "models", w / "store", w / "store" / "data" / "a"],
                 r"OUTDIR .* inside", id="apply-into-data"),
    pytest.param(lambda w: ["validate", w / "store", w / "store", "--overwrite", *BIN],
                 r"OUTDIR .* is the input", id="validate-into-store"),
    pytest.param(lambda w: ["validate", w / "store", w / "store" / "data" / "v", *BIN],
                 r"OUTDIR .* inside", id="validate-into-data"),
    pytest.param(lambda w: ["compare", w / "models", w / "models", w / "models", "--overwrite",
                            "--no-plots"], r"OUTDIR .* is the input", id="compare-into-model"),
    pytest.param(lambda w: ["compare", w / "models", w / "models", w, "--overwrite",
                            "--no-plots"], r"OUTDIR .* contains", id="compare-into-parent"),
]


@pytest.mark.parametrize(("argv", "match"), OUTPUT_CASES)
def test_output_overlapping_an_input_is_refused(work, capsys, argv, match):
    line = expect_refused(argv(work), capsys, work, match)
    assert "refusing" in line


@pytest.mark.parametrize("command", [
    pytest.param(lambda w, d: _mm(w, d, "--overwrite"), id="make-models"),
    pytest.param(lambda w, d: ["simulate", d, "--runs", "2", "--events", "100", "--overwrite"],
                 id="simulate"),
    pytest.param(lambda w, d: ["compare", w / "models", w / "models", d, "--overwrite",
                               "--no-plots"], id="compare"),
    pytest.param(lambda w, d: ["validate", w / "store", d, "--overwrite", *BIN], id="validate"),
])
def test_overwrite_replaces_only_an_earlier_output(work, capsys, command):
    """``--overwrite`` on a folder that is not the command's own output (a home folder, a
    store...) would delete it: refused."""
    precious = work / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    expect_refused(command(work, precious), capsys, work, r"not an earlier output")


@pytest.mark.slow
def test_overwrite_of_an_earlier_output_still_works(work, capsys):
    assert cli(_mm(work, work / "models", "--overwrite", "--no-image")) == 0
    assert (work / "models" / "model.nc").exists()
    assert sorted(p.name for p in work.iterdir()) == ["models", "runs123.txt", "store"]


# ------------------------------------------------------------------------------------------
# 2. FIFOs and other special files are refused before they are opened; SIGTERM ends a command


def _fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


FIFO_CASES = [
    pytest.param(lambda w: (_fifo(w / "store" / "data" / "obs_000004.fits.gz"),
                            _mm(w, w / "out", "--strict"))[1],
                 r"obs_000004\.fits\.gz.*FIFO", id="events-file"),
    pytest.param(lambda w: (_fifo(w / "store" / "hdu-index.fits.gz"), _mm(w, w / "out"))[1],
                 r"hdu-index\.fits\.gz.*FIFO", id="hdu-index"),
    pytest.param(lambda w: ["info", _fifo(w / "pipe.nc")], r"pipe\.nc.*FIFO", id="info-model"),
    pytest.param(lambda w: _mm(w, w / "out", "--run-list", _fifo(w / "runs.txt")),
                 r"--run-list .*runs\.txt.*FIFO", id="run-list"),
    pytest.param(lambda w: _mm(w, w / "out", "--exclusion", _fifo(w / "ex.reg")),
                 r"--exclusion .*ex\.reg.*FIFO", id="exclusion"),
    pytest.param(lambda w: _mm(w, w / "out", "--exclusion-catalog", _fifo(w / "cat.fits")),
                 r"--exclusion-catalog .*cat\.fits.*FIFO", id="exclusion-catalog"),
    pytest.param(lambda w: _mm(w, w / "out", "--groups", _fifo(w / "groups.ecsv")),
                 r"--groups .*groups\.ecsv.*FIFO", id="groups"),
    pytest.param(lambda w: ["validate", w / "store", w / "v", "--reference", _fifo(w / "m.nc"),
                            *BIN], r"--reference .*m\.nc.*FIFO", id="reference"),
    pytest.param(lambda w: ["apply-model", _fifo(w / "m.nc"), w / "store", w / "a"],
                 r"MODEL .*m\.nc.*FIFO", id="apply-model"),
    pytest.param(lambda w: ["compare", w / "models", _fifo(w / "b.nc"), w / "c"],
                 r"B .*b\.nc.*FIFO", id="compare"),
    pytest.param(lambda w: ["info", "/dev/zero"], r"/dev/zero.*not a regular", id="device"),
]


@pytest.mark.subprocess
@pytest.mark.parametrize(("argv", "match"), FIFO_CASES)
def test_fifo_is_refused_without_blocking(work, argv, match):
    args = argv(work)
    run = expect_refused_subprocess(args, work, match, timeout=60)
    assert run.seconds < 50


@pytest.mark.subprocess
def test_fifo_events_file_is_skipped_and_listed(work):
    _fifo(work / "store" / "data" / "obs_000004.fits.gz")
    run = run_cli(_mm(work, work / "out"), timeout=60)
    assert run.code == 0, run.err
    rejected = Table.read(work / "out" / "bg_rejected_runs.ecsv")
    assert rejected["OBS_ID"].tolist() == [4]
    assert "FIFO" in rejected["REASON"][0]


#: A stuck worker thread (blocked opening a FIFO nobody writes) while the main thread runs a
#: command: SIGTERM must end the process, not leave it waiting for the thread at exit.
STUCK = """
import faulthandler, os, sys, threading
faulthandler.dump_traceback_later(75)  # should it hang: every thread's stack before the kill
from xbkg.cli import main
fifo = sys.argv.pop(1)
threading.Thread(target=lambda: open(fifo, "rb")).start()
sys.argv[0] = "xbkg"
sys.exit(main())
"""


def _writing(folder: Path, started: list):
    def writing():  # the command is under way: its temporary output folder exists
        if any(p.name.startswith(".big.tmp-") for p in folder.iterdir()):
            started.append(time.monotonic())
        return bool(started)
    return writing


#: Prepended to a child's code: no new thread can be started (as when the address space or
#: the thread limit is exhausted), so the interrupt handler cannot start its watchdog thread.
NO_THREADS = """
import threading
def _no_thread(self):
    raise RuntimeError("can't start new thread")
threading.Timer.start = _no_thread
"""


@pytest.mark.subprocess
@pytest.mark.parametrize(("blocked", "code"), [(False, STUCK), (True, STUCK),
                                               (False, NO_THREADS + STUCK)],
                         ids=["", "inherited-mask-blocks-it", "no-thread-for-the-watchdog"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_the_process_whatever_a_thread_is_blocked_on(tmp_path, signum, blocked,
                                                                  code):
    # ``blocked``: a parent that blocked the signal would leave it pending until the command
    # ended, then the exit would wait for the stuck thread for ever
    fifo = _fifo(tmp_path / "stuck")
    args = [fifo, "simulate", tmp_path / "big", "--runs", "400", "--events", "20000"]
    started = []
    run = run_cli(args, code=code, timeout=90, signal_when=_writing(tmp_path, started),
                  signum=signum, blocked=blocked)
    assert started, "the command never started writing"
    assert run.code == 130, (run.code, run.err[-2000:])
    assert time.monotonic() - started[0] < 20  # signal to exit, with the clean-up
    assert "interrupted" in run.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stuck"]


#: The clean-up itself hangs (removing the temporary output blocks on a FIFO nobody writes),
#: the watchdog started by the signal still ends the process.
HUNG_CLEANUP = """
import shutil, sys
from xbkg.cli import main
fifo = sys.argv.pop(1)
rmtree = shutil.rmtree
def hanging_rmtree(*args, **kwargs):
    open(fifo, "rb")
    return rmtree(*args, **kwargs)
shutil.rmtree = hanging_rmtree
sys.argv[0] = "xbkg"
sys.exit(main())
"""


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [
    (signal.SIGTERM, HUNG_CLEANUP), (signal.SIGINT, HUNG_CLEANUP),
    (signal.SIGTERM, NO_THREADS + HUNG_CLEANUP)],  # the timer-signal watchdog
    ids=["SIGTERM", "SIGINT", "SIGTERM-no-thread-for-the-watchdog"])
def test_signal_ends_a_hung_clean_up(tmp_path, signum, code):
    fifo = _fifo(tmp_path / "stuck")
    args = [fifo, "simulate", tmp_path / "big", "--runs", "400", "--events", "20000"]
    started, seconds = [], xbkg.cli._WATCHDOG_SECONDS

    run = run_cli(args, code=code, timeout=seconds + 60, signal_when=_writing(
        tmp_path, started), signum=signum)
    assert started, "the command never started writing"
    assert run.code == 128 + signum, (run.code, run.err[-2000:])
    assert time.monotonic() - started[0] < seconds + 15


# ------------------------------------------------------------------------------------------
# 3. a full disk: exit 2, one line, the previous output intact, nothing left behind


@contextlib.contextmanager
def tmpfs(mnt: Path, options: str = "size=5m"):
    """A tmpfs mounted on ``mnt`` (created) for the block; skips the test where mounting is
    not allowed (not root, a container without the capability)."""
    mnt.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB tmpfs."""
    with tmpfs(tmp_path / "disk") as mnt:
        yield mnt


def _fill(disk: Path, free_kb: int) -> None:
    """Leave about ``free_kb`` kB free on ``disk``."""
    (disk / "fill").unlink(missing_ok=True)
    st = os.statvfs(disk)
    avail = st.f_bavail * st.f_frsize
    with open(disk / "fill", "wb") as fh:
        fh.write(b"\0" * max(0, avail - free_kb * 1024))


FULL_CASES = [  # free kB chosen to fail in the FITS files, in model.nc, and early
    pytest.param("fresh", 100, id="make-models-fresh-100k"),
    pytest.param("overwrite", 100, id="make-models-overwrite-100k"),
    pytest.param("overwrite", 180, id="make-models-overwrite-180k"),
    pytest.param("update-folder", 100, id="update-model-folder-100k"),
    pytest.param("update-file", 20, id="update-model-file-20k"),
]


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize(("how", "free_kb"), FULL_CASES)
def test_full_disk(work, small_disk, how, free_kb):
    out = small_disk / "out"
    mm = ["make-models", work / "store", out, "--selection", "all", "--no-progress",
          "--scheduler", "synchronous"]
    if how != "fresh":
        assert run_cli(mm + ["--run-list", work / "runs123.txt"]).code == 0
    _fill(small_disk, free_kb)
    before = snapshot(small_disk)
    args = {"fresh": mm, "overwrite": mm + ["--overwrite"],
            "update-folder": ["update-model", out, work / "store", "--no-progress"],
            "update-file": ["update-model", out / "model.nc", work / "store", "--output",
                            out / "model.nc", "--no-progress"]}[how]
    run = run_cli(args)
    assert run.code == 2, (run.code, run.err[-3000:])
    assert_one_line(run.err, r"no space left.*out|out.*[Nn]o space left")
    assert snapshot(small_disk) == before


@pytest.mark.subprocess
def test_read_only_output_folder_is_refused_before_the_build(work, capsys):
    with tmpfs(work / "ro", "size=1m,ro") as disk:
        expect_refused(_mm(work, disk / "out"), capsys, work, r"ro/out: the folder .* not writable")


# ------------------------------------------------------------------------------------------
# 4. declared sizes: checked against the file and sane limits before allocating


def _header_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _set_card(data: bytes, key: str, value: int, occurrence: int = 0) -> bytes:
    """Replace the value of the ``occurrence``-th card ``key`` (an integer) in raw FITS bytes."""
    starts = [m.start() for m in re.finditer(re.escape(f"{key:<8}= ".encode()), data)
              if m.start() % 80 == 0]
    pos = starts[occurrence]
    card = f"{key:<8}= {value:>20}".ljust(80).encode()
    return data[:pos] + card + data[pos + 80:]


def _through_header_1(data: bytes) -> bytes:
    """The primary HDU and the header of HDU 1 (its data left out)."""
    start = data.index(b"XTENSION=")
    end = next(i for i in range(start, len(data), 80) if data[i:i + 8] == b"END     ")
    return data[:-(-(end + 80) // 2880) * 2880]


def _hdu_index_declaring(work: Path, rows: int, keep_data: bool) -> Path:
    """The hdu-index with NAXIS2 = rows: no data at all, or zero rows up to that size (zeros
    compress ~1000:1: a small file, a big table)."""
    path = work / "store" / "hdu-index.fits.gz"
    data = _header_bytes(path)
    naxis1 = int(re.search(rb"NAXIS1  = +(\d+)", data).group(1))
    head = _set_card(_through_header_1(data), "NAXIS2", rows, 0)
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [z.compress(head)]
    if keep_data:
        chunk = bytes(1 << 20)
        for _ in range(rows * naxis1 >> 20):
            parts.append(z.compress(chunk))
    parts.append(z.flush())
    path.write_bytes(b"".join(parts))
    return path


@pytest.mark.subprocess
def test_index_declaring_gigabytes_it_lacks(work):
    _hdu_index_declaring(work, 4_000_000, keep_data=False)  # 192 MB: under the limit
    expect_refused_subprocess(_mm(work, work / "out"), work, r"hdu-index\.fits\.gz.*truncated")


@pytest.mark.subprocess
def test_index_with_half_a_gigabyte_of_zero_rows(work):
    path = _hdu_index_declaring(work, 8_000_000, keep_data=True)
    assert path.stat().st_size < 2_000_000
    expect_refused_subprocess(_mm(work, work / "out"), work,
                              r"hdu-index\.fits\.gz.*more than the \d+ allowed")


@pytest.mark.subprocess
def test_events_declaring_gigabytes_with_no_rows(work):
    path = work / "store" / "data" / "obs_000004.fits.gz"
    # ~1.8 GB declared, no data
    data = _set_card(_through_header_1(_header_bytes(path)), "NAXIS2", 40_000_000, 0)
    path.write_bytes(gzip.compress(data, mtime=0))
    expect_refused_subprocess(_mm(work, work / "out", "--strict"), work,
                              r"obs_000004\.fits\.gz.*(truncated|times the \d+ bytes)")


@pytest.mark.subprocess
def test_events_holding_a_gigabyte_of_zero_rows(work):
    """A 1 GB all-zero EVENTS table in a ~1 MB .fits.gz (gzip members of zeros): refused
    before it is inflated, naming the run's file, peak RSS bounded."""
    path = work / "store" / "data" / "obs_000004.fits.gz"
    data = _through_header_1(_header_bytes(path))
    naxis1 = int(re.search(rb"NAXIS1  = +(\d+)", data).group(1))
    rows = ((1 << 30) // naxis1) >> 20 << 20  # whole members
    zeros = gzip.compress(bytes(naxis1 << 20), mtime=0)  # 2**20 rows per member
    path.write_bytes(gzip.compress(_set_card(data, "NAXIS2", rows, 0), mtime=0)
                     + zeros * (rows >> 20))
    assert path.stat().st_size < 2_000_000
    run = expect_refused_subprocess(_mm(work, work / "out", "--strict"), work,
                                    r"obs_000004\.fits\.gz.*times the \d+ bytes of the compressed")
    assert run.rss_mb < 600, f"peak RSS {run.rss_mb:.0f} MB"  # inflating it would take > 1 GB


@pytest.mark.subprocess
def test_netcdf_declaring_gigabytes_of_unwritten_chunks(work):
    import h5py

    path = work / "huge.nc"
    with h5py.File(path, "w") as f:
        f.create_dataset("rate", shape=(10, 1000, 1000, 120), dtype="f8", chunks=(1, 10, 100, 120),
                         compression="gzip")
    assert path.stat().st_size < 100_000
    expect_refused_subprocess(["info", path], work, r"huge\.nc.*declare")


@pytest.mark.subprocess
def test_model_fits_declaring_a_huge_table(work):
    path = work / "models" / "bg_cube_model_group0_table.fits.gz"
    data = _set_card(_header_bytes(path), "NAXIS2", 10**9, 0)
    path.write_bytes(gzip.compress(data, mtime=0))
    expect_refused_subprocess(["info", path], work, r"bg_cube_model_group0_table")


# ------------------------------------------------------------------------------------------
# 5. non-ASCII paths and FILE_NAMEs


@pytest.mark.slow
def test_non_ascii_store_and_output_paths(work, capsys):
    store = work / "störe_日本"
    (work / "store").rename(store)
    out = work / "modèles_日本"
    assert cli(["make-models", store, out, "--selection", "all", "--bundle", *BIN]) == 0
    assert capsys.readouterr().err == ""
    index = Table.read(out / "hdu-index.fits.gz")
    dirs = {str(d) for d in index["FILE_DIR"]}
    assert any("störe_日本" in d for d in dirs), dirs
    assert xbkg.open_datastore(out).sizes["obs_id"] == 4


def _rewrite_file_name(work: Path, new: bytes) -> None:
    path = work / "store" / "hdu-index.fits.gz"
    table = Table.read(path)
    names = np.char.encode(np.asarray(table["FILE_NAME"]).astype(str), "utf-8").astype(object)
    names[np.asarray(table["OBS_ID"]) == 4] = new
    table["FILE_NAME"] = np.array(names.tolist(), dtype=f"S{max(len(n) for n in names)}")
    hdu = fits.table_to_hdu(table)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


@pytest.mark.slow
def test_non_ascii_file_name(work, capsys):
    new = "obs_ö日本.fits.gz"
    (work / "store" / "data" / "obs_000004.fits.gz").rename(work / "store" / "data" / new)
    _rewrite_file_name(work, new.encode())
    assert cli(_mm(work, work / "out")) == 0, capsys.readouterr().err
    assert xr.open_dataset(work / "out" / "model.nc").sizes["obs_id"] == 4


def test_file_name_that_is_not_text(work, capsys):
    _rewrite_file_name(work, b"obs_\xff\xfe.fits.gz")
    expect_refused(_mm(work, work / "out"), capsys, work,
                   r"hdu-index\.fits\.gz.*FILE_NAME\b.*row \d+.*not text")


# ------------------------------------------------------------------------------------------
# 6. one-line errors instead of tracebacks; bin counts bounded


def test_where_with_400_chained_comparisons(work, capsys):
    expect_refused(_mm(work, work / "out", "--where", "ZEN_PNT" + " < 8" * 398), capsys, work,
                   r"where")


@pytest.mark.parametrize(("option", "match"), [
    pytest.param("--where=" + " and ".join(["ZEN_PNT < 80"] * 200), r"where", id="where-long"),
    pytest.param("--where=" + "(" * 300 + "ZEN_PNT < 80" + ")" * 300, r"where.*nesting",
                 id="where-deep"),
    pytest.param("--where=__import__('os').system('true')", r"where", id="where-injection"),
    pytest.param("--fov-edges=__import__('os').system('true')", r"fov.edges", id="edges-code"),
    pytest.param("--energy-edges=0.1:100:1000000", r"energy.edges.*at most", id="energy-1e6"),
    pytest.param("--fov-edges=-2.5:2.5:5000", r"bins would need", id="fov-cube-too-big"),
    pytest.param("--fov-edges=-1e300:1e300:4", r"fov.edges.*within", id="fov-absurd"),
    pytest.param("--zenith-edges=0,500,1000", r"zenith.edges.*within", id="zenith-500"),
    pytest.param("--zenith-edges=-90,0,90", r"zenith.edges.*within", id="zenith-negative"),
    pytest.param("--energy-edges=1:0.1:5", r"energy.edges", id="energy-descending"),
    pytest.param("--zenith-range=a:b", r"--zenith-range", id="zenith-range-text"),
    pytest.param("--run-list=/nonexistent/runs.txt", r"--run-list", id="run-list-missing"),
    pytest.param("--site=1e300,0,1e300", r"site must be", id="site-absurd"),
    pytest.param("--site=nan,0,0", r"site must be", id="site-nan"),
    pytest.param("--conditions=", r"no condition named", id="conditions-empty"),
    pytest.param("--conditions=nosuch", r"condition 'nosuch'", id="conditions-unknown"),
    pytest.param("--conditions=zenith,azimuth,time,event_rate", r"conditions: .*more runs than",
                 id="conditions-more-terms-than-runs"),
    pytest.param("--event-filter=__import__('os').system('true')", r"event filter",
                 id="event-filter-injection"),
    pytest.param("--exclude-targets=1e300", r"exclude_targets", id="exclude-targets-huge"),
    pytest.param("--exclude-targets=nan", r"exclude_targets", id="exclude-targets-nan"),
    pytest.param("--fov-extent=-1", r"fov_extent", id="fov-extent-negative"),
    pytest.param("--fov-extent=inf", r"fov_extent", id="fov-extent-inf"),
    pytest.param("--fov-extent=1e-9", r"no event of the \d+ runs falls in the model's bins",
                 id="fov-extent-tiny"),
    pytest.param("--event-filter=ENERGY < 0", r"no event .*--event-filter.*nothing written",
                 id="event-filter-keeps-nothing"),
    pytest.param("--index-dir=nope", r"index folder nope", id="index-dir-missing"),
    pytest.param("--exclusion-catalog=/nonexistent/cat.fits", r"exclusion catalog",
                 id="exclusion-catalog-missing"),
])
def test_bad_option_is_one_line(work, capsys, option, match):
    # "fov.edges": the message may name the option (--fov-edges) or the edges (fov edges)
    expect_refused(_mm(work, work / "out", option), capsys, work, match)


@pytest.mark.subprocess
@pytest.mark.parametrize("option", [
    pytest.param("--energy-edges=0.1:100:1000000000", id="energy-1e9"),
    pytest.param("--fov-edges=-2.5:2.5:10000", id="fov-1e4"),
])
def test_huge_bin_counts_cost_no_memory(work, option):
    run = expect_refused_subprocess(_mm(work, work / "out", option), work, r"edges|bins",
                                    timeout=60)
    assert run.seconds < 50


def _edit_model(work: Path, edit) -> Path:
    """models/model.nc rewritten (with xarray, not xbkg's checked writer) after ``edit``."""
    path = work / "models" / "model.nc"
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        model = ds.load()
    edit(model)
    path.unlink()
    model.to_netcdf(path, engine="h5netcdf")
    return path


def _set_provenance(value):
    def edit(model):
        model.attrs["provenance"] = json.dumps(value)
    return edit


@pytest.mark.parametrize(("edit", "match"), [
    pytest.param(_set_provenance([1, 2]), r"provenance is a JSON list", id="list"),
    pytest.param(_set_provenance({"run_cuts": {"bogus_kwarg": 1}}), r"run_cuts.*bogus_kwarg",
                 id="bogus-cut"),
    pytest.param(_set_provenance({"run_cuts": {"scheduler": "processes"}}), r"scheduler",
                 id="scheduler-cut"),
    pytest.param(_set_provenance({"run_cuts": [1]}), r"run_cuts", id="cuts-list"),
])
def test_bad_provenance_in_update_model(work, capsys, edit, match):
    _edit_model(work, edit)
    expect_refused(["update-model", work / "models", work / "store", "--no-progress"], capsys,
                   work, match)


# ------------------------------------------------------------------------------------------
# 7. atomicity windows: leftovers of killed writers are recovered or cleaned, and said so


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.subprocess
def test_update_model_restores_an_outdir_killed_between_renames(work, caplog):
    pid = _dead_pid()
    models = work / "models"
    before = snapshot(models)
    os.replace(models, work / f".models.old-{pid}")
    (work / f".models.tmp-{pid}-abc").mkdir()
    (work / f".models.tmp-{pid}-abc" / "model.nc").write_bytes(b"half")
    assert cli(["update-model", models, work / "store", "--no-progress", "--no-image"]) == 0
    assert f"restored {models}" in caplog.text and "removed" in caplog.text, caplog.text
    assert sorted(p.name for p in work.iterdir()) == ["models", "runs123.txt", "store"]
    assert set(snapshot(models)) == set(before)


@pytest.mark.subprocess
def test_update_model_file_cleans_its_temporary_folder(work, caplog):
    pid = _dead_pid()
    left = work / "models" / f".model.nc.{pid}-x1y2.tmp"
    left.mkdir()
    (left / "model.nc").write_bytes(b"half")
    assert cli(["update-model", work / "models" / "model.nc", work / "store",
                "--no-progress"]) == 0
    assert f"removed {left}" in caplog.text
    assert not left.exists()


@pytest.mark.subprocess
def test_final_rename_failing_keeps_the_old_outdir(work, capsys):
    """OUTDIR is a mount point: it cannot be renamed away; nothing is left behind."""
    with tmpfs(work / "out") as out:
        expect_refused(_mm(work, out, "--overwrite", "--no-image"), capsys, work,
                       r"out: cannot move the new output into place")


def test_another_writer_between_the_two_renames(tmp_path, monkeypatch):
    """A concurrent writer's OUTDIR appears after ours was moved aside: ours gives way with a
    clear error, its output is kept and no .old/.tmp folder is left ("Directory not empty")."""
    from xbkg.io.atomic import atomic_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.nc").write_text("old")
    rename = os.replace
    calls = []

    def racing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # between moving OUTDIR aside and moving ours in
            os.mkdir(out)
            (out / "model.nc").write_text("theirs")
        return rename(src, dst)

    with pytest.raises(OSError, match="cannot move the new output into place"):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "model.nc").write_text("ours")
            monkeypatch.setattr(os, "replace", racing_replace)
    monkeypatch.undo()
    assert (out / "model.nc").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------------------------------
# 8. garbage models and stores are refused


def _scale(name, factor=None, value=None):
    def edit(model):
        data = model[name].values
        if value is not None:
            data.flat[3] = value
        else:
            data *= factor
    return edit


def _reverse_energy(model):
    bounds = model["energy_bounds"].values
    model["energy_bounds"].values[:] = bounds[::-1, ::-1]


def _string_offset_max(model):
    model.attrs["offset_max"] = "wide"


@pytest.mark.parametrize(("edit", "match"), [
    pytest.param(_scale("rate", value=np.nan), r"'rate'.*NaN", id="nan-rate"),
    pytest.param(_scale("rate", value=np.inf), r"'rate'.*infinite", id="inf-rate"),
    pytest.param(_scale("rate", factor=-1.0), r"'rate'.*negative", id="negative-rate"),
    pytest.param(_scale("exposure", factor=-1.0), r"'exposure'.*negative", id="negative-exposure"),
    pytest.param(_reverse_energy, r"energy.*increasing", id="descending-energy"),
    pytest.param(_string_offset_max, r"offset_max", id="string-offset-max"),
])
@pytest.mark.parametrize("command", ["info", "update-model"])
def test_garbage_model_is_refused(work, capsys, edit, match, command):
    path = _edit_model(work, edit)
    argv = ["info", path] if command == "info" else ["update-model", path, work / "store"]
    line = expect_refused(argv, capsys, work, match)
    assert "model.nc" in line


def test_one_events_file_under_two_obs_ids(work, capsys):
    path = work / "store" / "hdu-index.fits.gz"
    table = Table.read(path)
    rows = (np.asarray(table["OBS_ID"]) == 4)
    table["FILE_NAME"][rows] = "obs_000003.fits.gz"
    table.write(path, overwrite=True)
    expect_refused(_mm(work, work / "out"), capsys, work,
                   r"hdu-index\.fits\.gz: runs 3 and 4 .*obs_000003.*counted twice")


# ------------------------------------------------------------------------------------------
# 9. messages name the file; pipes; no warnings on clean runs


@pytest.mark.parametrize(("name", "content", "match"), [
    pytest.param("empty.fits", b"", r"empty\.fits", id="empty-fits"),
    pytest.param("empty.nc", b"", r"empty\.nc", id="empty-nc"),
    pytest.param("text.fits", b"hello, not FITS\n" * 10, r"text\.fits.*not a FITS file",
                 id="text"),
    pytest.param("trunc.nc", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, r"trunc\.nc", id="truncated-nc"),
])
def test_info_on_bad_file_names_it(work, capsys, name, content, match):
    path = work / name
    path.write_bytes(content)
    expect_refused(["info", path], capsys, work, match)


def test_text_file_as_events(work, capsys):
    (work / "store" / "data" / "obs_000004.fits.gz").write_text("SIMPLE? no, a text file\n" * 3)
    expect_refused(_mm(work, work / "out", "--strict"), capsys, work,
                   r"run 4 .*obs_000004\.fits\.gz.*not a FITS file")


@pytest.mark.subprocess
def test_info_into_a_closed_pipe(work):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "xbkg", "info", work / "models" / "model.nc"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # as `| head` does once it has its lines
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


@pytest.mark.subprocess
def test_clean_run_prints_nothing_on_stderr(work):
    run = run_cli(_mm(work, work / "out"))
    assert run.code == 0, run.err
    assert run.err == ""
    assert run.out.startswith("wrote 3D")


# ------------------------------------------------------------------------------------------
# 10. deterministic files: two identical builds are byte-identical


@pytest.mark.slow
def test_two_builds_are_byte_identical(work, capsys):
    # the same command line twice (the model records it, OUTDIR included)
    assert cli(_mm(work, work / "out", "--bundle")) == 0
    (work / "out").rename(work / "a")
    time.sleep(1.1)  # gzip headers store seconds
    assert cli(_mm(work, work / "out", "--bundle")) == 0
    a, b = snapshot(work / "a"), snapshot(work / "out")
    assert "hdu-index.fits.gz" in a and "bg_observation_table.fits.gz" in a
    assert a == b


# ------------------------------------------------------------------------------------------
# commands and options added later: report, apply-model, simulate


@pytest.mark.parametrize(("target", "match"), [
    pytest.param(lambda w: w / "models" / "model.nc", r"--output .*model\.nc.*not an HTML",
                 id="onto-the-model"),
    pytest.param(lambda w: w / "store" / "hdu-index.fits.gz", r"--output .*not an HTML",
                 id="onto-a-store-file"),
    pytest.param(lambda w: w / "store", r"--output .*is a folder", id="a-folder"),
    pytest.param(lambda w: _fifo(w / "r.html"), r"--output .*r\.html.*not a regular",
                 id="a-fifo"),
])
def test_report_output_never_replaces_an_input(work, capsys, target, match):
    expect_refused(["report", work / "models", "--output", target(work)], capsys, work, match)


@pytest.mark.subprocess
@pytest.mark.parametrize(("option", "match"), [
    pytest.param("--events=1000000000000", r"--events.*at most", id="events-1e12"),
    pytest.param("--runs=1000000000", r"--runs.*at most", id="runs-1e9"),
])
def test_simulate_huge_counts_are_refused(work, option, match):
    run = run_cli(["simulate", work / "sim", option], timeout=60)
    assert run.code == 2 and "Traceback" not in run.err, run.err[-2000:]
    assert re.search(match, run.err.strip().splitlines()[-1])
    assert run.rss_mb < RSS_MB and not (work / "sim").exists()


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "apply-model"])
def test_full_disk_report_and_apply_model(work, small_disk, command):
    if command == "report":
        args = ["report", work / "models", "--output", small_disk / "r.html"]
    else:
        assert cli(["make-models", work / "store", work / "cond", "--selection", "all",
                    "--conditions", "zenith", "--no-report", *BIN]) == 0
        args = ["apply-model", work / "cond", work / "store", small_disk / "am"]
    _fill(small_disk, 8)
    before = snapshot(small_disk)
    run = run_cli(args)
    assert run.code == 2, (run.code, run.err[-3000:])
    assert_one_line(run.err, r"(r\.html|am).*no space left")
    assert snapshot(small_disk) == before
