"""Render the figures of the documentation into docs/_static/ from a simulated store.

Usage::

    python docs/make_figures.py [--workdir DIR] [--runs N] [--report-of OUTDIR]

Simulates a small store (fixed seed, a FoV gradient along altitude so the 3D maps show
something), builds a 2D and a 3D ALTAZ model in three zenith groups and writes PNGs with
:mod:`xbkg.plots.model`. Takes about half a minute; the PNGs are committed (each < 200 kB).
``--report-of OUTDIR`` only takes a screenshot of the top of ``OUTDIR/report.html`` with headless
Chromium (the docs show one of a H.E.S.S. DR1 build: ``xbkg make-models
../shared/data/hess-dl3-dr1 OUTDIR --zenith-edges 0,30,45,60``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import xbkg  # noqa: E402
from xbkg.plots import model as plotting  # noqa: E402
from xbkg.simulate import NOMINAL_ONTIME, TruthModel, simulate_store  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"
ZENITH_EDGES = [0, 30, 45, 60]
DPI = 72
MAX_BYTES = 200_000


def simulated_store(workdir: Path, n_runs: int, events_per_run: float = 8000.0) -> Path:
    """A store whose truth has a 15 %/deg gradient toward higher altitude."""
    base = TruthModel(norm=1.0, gradient=0.15, frame="altaz")
    mu0 = base.total_counts(zenith=0.0, ontime=NOMINAL_ONTIME, offset_max=4.0)
    truth = dataclasses.replace(base, norm=events_per_run / mu0)
    return simulate_store(workdir / "store", n_runs=n_runs, truth=truth, seed=2,
                          zenith_range=(0, 60), overwrite=True)


def report_screenshot(outdir: Path, png: Path = STATIC / "report_screenshot.png") -> Path:
    """Screenshot of the top of ``outdir/report.html`` (headless Chromium, 256 colours)."""
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("no chromium binary found (apt-get install chromium)")
    subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                    "--window-size=1000,1250", f"--screenshot={png}",
                    (Path(outdir) / "report.html").resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)
    if png.stat().st_size > MAX_BYTES:
        raise RuntimeError(f"{png}: more than {MAX_BYTES} bytes")
    return png


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None,
                        help="folder for the store (default: a temporary folder)")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--report-of", metavar="OUTDIR", default=None,
                        help="only screenshot OUTDIR/report.html into report_screenshot.png")
    args = parser.parse_args(argv)
    if args.report_of:
        return [report_screenshot(Path(args.report_of))]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        store = simulated_store(workdir, args.runs)
        model2d = xbkg.make_model(store, kind="2d", zenith_edges=ZENITH_EDGES)
        model3d = xbkg.make_model(store, kind="3d", fov_alignment="altaz",
                                  zenith_edges=ZENITH_EDGES, fov_edges="-2.5:2.5:20",
                                  energy_edges="0.1:100:12")
        obs = xbkg.open_datastore(store)
        figures = {
            "peek_2d.png": plotting.peek(model2d),
            "peek_3d.png": plotting.peek(model3d, group=0),
            "fov_maps.png": plotting.plot_fov_maps(model3d, group=0,
                                                   energies=[0.3, 0.6, 1.0, 2.0, 4.0, 8.0]),
            "rate_vs_energy.png": plotting.plot_rate_vs_energy(model2d, offset=0.5).figure,
            "zenith_dependence.png": plotting.plot_zenith_dependence(model2d, obs=obs),
        }
        STATIC.mkdir(exist_ok=True)
        written = []
        for name, fig in figures.items():
            path = STATIC / name
            fig.savefig(path, dpi=DPI)
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise RuntimeError(f"{path}: {size} bytes, more than {MAX_BYTES}; lower DPI")
            print(f"wrote {path} ({size // 1000} kB)")
            written.append(path)
    return written


if __name__ == "__main__":
    main()
