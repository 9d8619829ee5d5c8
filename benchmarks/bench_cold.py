"""What a user feels: cold command-line runs, the first build of a process, gzipped stores.

Measurements for ``benchmarks/run_all.py`` (each a function returning a dict of figures):

* :func:`cold_cli`: fresh processes, in turn, ``--cold-repeat`` times each, medians: the seed
  notebook's gammapy loop as a script (2D, the store's off runs, imports and the written
  BKG_2D file included) against ``python -m xbkg make-models --no-report`` 2D on the same
  runs and 3D ALTAZ on all runs (the models and their FITS products, as the script writes;
  the default HTML report of figures is timed apart, on the 3D command);
* :func:`first_call`: in one process, a 3D ALTAZ build three times (the first pays the
  once-per-process costs), warm 2D builds of the off runs against the gammapy loop, and warm
  3D ALTAZ builds measuring the FoV extent (the default) against builds told it;
* :func:`gzip_store`: a 2D build of a store of gzipped runs (simulated like the DR1 files:
  same columns, gzip level 9) on one core, next to the raw inflate speed of the same event
  bytes with the same inflater (the limit).

Run alone: ``python benchmarks/bench_cold.py DR1_DIR`` prints the cold-CLI figures.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The seed notebook's loop as a script: gammapy DataStore, the off runs, np.histogram2d of
#: energy x offset, counts / exposure written as a BKG_2D file (argv: store, output file).
GAMMAPY_SCRIPT = """
import sys
import numpy as np
import astropy.units as u
from gammapy.data import DataStore
from gammapy.irf import Background2D
from gammapy.maps import MapAxis

store, out = sys.argv[1], sys.argv[2]
e_edges, o_edges = np.geomspace(0.1, 100, 21), np.linspace(0, 2.5, 11)
ds = DataStore.from_dir(store)
table = ds.obs_table
off = [int(o) for o, t in zip(table["OBS_ID"], table["TARGET_NAME"]) if "off" in str(t).lower()]
counts = np.zeros((e_edges.size - 1, o_edges.size - 1))
exposure = np.zeros_like(counts)
de = np.diff(e_edges) * 1e6
sa = 2 * np.pi * (np.cos(np.radians(o_edges[:-1])) - np.cos(np.radians(o_edges[1:])))
for obs in ds.get_observations(off, required_irf=[]):
    events = obs.events
    offset = events.radec.separation(obs.pointing.fixed_icrs).to_value("deg")
    counts += np.histogram2d(events.energy.to_value("TeV"), offset, bins=(e_edges, o_edges))[0]
    exposure += obs.observation_time_duration.to_value("s") * de[:, None] * sa[None, :]
rate = np.divide(counts, exposure, out=np.zeros_like(counts), where=exposure > 0)
bkg = Background2D(axes=[MapAxis.from_energy_edges(e_edges * u.TeV),
                         MapAxis.from_edges(o_edges * u.deg, name="offset")],
                   data=rate * u.Unit("s-1 MeV-1 sr-1"))
bkg.to_table_hdu().writeto(out, overwrite=True)
print(len(off), int(counts.sum()))
"""


def _timed_process(cmd, env=None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of a fresh process, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_cli(store, repeat: int = 5) -> dict:
    """Medians of fresh-process wall and CPU times (commands run in turn, ``repeat`` times)."""
    store = str(store)
    work = Path(tempfile.mkdtemp(prefix="xbkg-cold-"))
    script = work / "gammapy_loop.py"
    script.write_text(GAMMAPY_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
    # as installed packages run (pip writes bytecode at install, as gammapy's and astropy's
    # is): with PYTHONDONTWRITEBYTECODE set, a source checkout of xbkg would be compiled
    # anew by every process (about 0.15 s); the warm-up run below writes its bytecode
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    commands = {
        "gammapy script 2D off": [sys.executable, str(script), store, str(work / "bkg.fits")],
        "xbkg 2D off": [sys.executable, "-m", "xbkg", "make-models", store, str(work / "o2"),
                        "--kind", "2d", "--selection", "off", "--no-image", "--overwrite",
                        "--no-progress", "--no-report"],
        "xbkg 3D ALTAZ all": [sys.executable, "-m", "xbkg", "make-models", store,
                              str(work / "o3"), "--kind", "3d", "--selection", "all",
                              "--overwrite", "--no-progress", "--no-report"],
    }
    # the default command also draws the HTML report (matplotlib): timed apart
    commands["xbkg 3D ALTAZ all, with report"] = commands["xbkg 3D ALTAZ all"][:-1]
    try:
        # fills caches (IERS table, bytecode, files)
        _timed_process(commands["xbkg 3D ALTAZ all"], env)
        times = {k: [] for k in commands}
        for _ in range(repeat):
            for name, cmd in commands.items():
                times[name].append(_timed_process(cmd, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {name: {"wall": statistics.median(w for w, _ in t),
                   "cpu": statistics.median(c for _, c in t), "repeat": repeat}
            for name, t in times.items()}


def first_call(store) -> dict:
    """First and warm 3D ALTAZ builds in one process; warm 2D of the off runs vs gammapy."""
    sys.path.insert(0, str(HERE))
    from _common import edges
    from bench_build import gammapy_loop

    import xbkg

    ds = xbkg.open_datastore(store)
    e_edges, o_edges = edges()

    def build(**kw):
        t0 = time.perf_counter()
        xbkg.make_model(ds, scheduler="synchronous", energy_edges=e_edges, **kw)
        return time.perf_counter() - t0

    altaz = [build(kind="3d", fov_alignment="altaz", selection="all") for _ in range(3)]
    two_d = min(build(kind="2d", offset_edges=o_edges, selection="off") for _ in range(3))
    # the FoV extent (no OFFSET_MAX in DR1) is measured in the build's pass: its cost, against
    # builds given the extent (fov_extent="none"), in turn
    extent = {"auto": [], "none": []}
    for _ in range(3):
        for mode in extent:
            extent[mode].append(build(kind="3d", fov_alignment="altaz", selection="all",
                                      fov_extent=mode))
    off = xbkg.select_runs(ds, "off")[0].tolist()
    gammapy_loop(store, e_edges, o_edges, off)  # warm-up: imports, tables
    ref = []
    for _ in range(2):
        t0 = time.perf_counter()
        gammapy_loop(store, e_edges, o_edges, off)
        ref.append(time.perf_counter() - t0)
    return {"altaz_first": altaz[0], "altaz_warm": min(altaz[1:]), "warm_2d": two_d,
            "gammapy_2d": min(ref), "off_runs": len(off),
            "altaz_extent_auto": min(extent["auto"]), "altaz_extent_none": min(extent["none"])}


def gzip_store(store) -> dict:
    """One-core 2D build of a gzipped store and the raw inflate speed of its event files."""
    import numpy as np

    import xbkg
    from xbkg.io import fitstable

    ds = xbkg.open_datastore(store)
    files = sorted(Path(store, "data").glob("*.fits.gz"))
    blobs = [f.read_bytes() for f in files]
    lib = fitstable._inflate_lib
    t0 = time.perf_counter()
    raw = 0
    for blob in blobs:  # the whole files, as the build inflates at most that
        raw += len(lib.decompress(blob, 16 + 15))
    inflate = time.perf_counter() - t0
    xbkg.make_model(ds, kind="2d", scheduler="synchronous", selection="all")  # warm-up
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        xbkg.make_model(ds, kind="2d", scheduler="synchronous", selection="all")
        best = min(best, time.perf_counter() - t0)
    events = int(ds["EVENT_COUNT"].sum())
    return {"events": events, "runs": len(files), "build_seconds": best,
            "inflate_seconds": inflate, "compressed_mb": sum(map(len, blobs)) / 2**20,
            "raw_mb": raw / 2**20, "inflater": lib.__name__}


if __name__ == "__main__":
    print(json.dumps(cold_cli(sys.argv[1], repeat=int(sys.argv[2]) if len(sys.argv) > 2 else 3),
                     indent=1))
