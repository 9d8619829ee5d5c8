"""A cluster started from the command line (``dask scheduler``, ``dask worker``), as on a
site without LocalCluster: ``xbkg make-models --scheduler tcp://...`` builds on it."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xbkg
from xbkg.cli import main
from xbkg.simulate import simulate_store

pytestmark = pytest.mark.skipif(shutil.which("dask") is None, reason="no dask command")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs):
    """Terminate the started processes and their children (each is a process group)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path):
    """Address of a scheduler with two single-threaded workers, all on 127.0.0.1."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    root = str(Path(xbkg.__file__).resolve().parent.parent)  # workers import this xbkg
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get(
        "PYTHONPATH")])))
    common = dict(env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **common)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(
                ["dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(tmp_path)], **common))
        deadline = time.monotonic() + 120
        while True:  # the scheduler may not listen yet
            try:
                with Client(address, timeout=5, set_as_default=False) as client:
                    client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise
                time.sleep(0.5)
        yield address
    finally:
        _stop(procs)


@pytest.mark.slow
def test_make_models_on_a_command_line_cluster(cluster, tmp_path):
    store = simulate_store(tmp_path / "store", n_runs=6, events_per_run=3000, seed=3)
    args = ["--selection", "all", "--zenith-edges", "0,30,60", "--no-progress"]
    assert main(["make-models", str(store), str(tmp_path / "dist"), *args,
                 "--scheduler", cluster]) == 0
    assert main(["make-models", str(store), str(tmp_path / "sync"), *args,
                 "--scheduler", "synchronous"]) == 0
    dist = xbkg.open_model(tmp_path / "dist" / "model.nc")
    sync = xbkg.open_model(tmp_path / "sync" / "model.nc")
    assert int(dist["counts"].sum()) > 0
    for name in ("counts", "exposure", "rate"):
        np.testing.assert_array_equal(dist[name].values, sync[name].values)
