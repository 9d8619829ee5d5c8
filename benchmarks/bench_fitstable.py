"""Per-file read time of event columns: astropy.io.fits versus xbkg.io.fitstable.read_columns.

Writes N synthetic event files (PRIMARY, EVENTS with TIME/RA/DEC/ENERGY and a DL3-like header,
GTI, then an IRF-sized trailing HDU as in DL3 files), as .fits and .fits.gz, and times reading
the four EVENTS columns from every file, best of ``--repeat`` passes (files in the page cache).
astropy: ``fits.open`` + copies of the ``.data`` columns; xbkg: ``read_columns`` (native-endian
copies). Also times the real H.E.S.S. DR1 files when ../shared/data/hess-dl3-dr1 exists.

Gzip files are inflated with isal when it is installed, else with zlib (``--zlib`` forces it).

Usage: python benchmarks/bench_fitstable.py [--files 200] [--rows 50000] [--repeat 3] [--dir D]
       [--zlib]
"""

from __future__ import annotations

import argparse
import gzip
import io
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from xbkg.io import fitstable
from xbkg.io.fitstable import read_columns

COLUMNS = ["TIME", "RA", "DEC", "ENERGY"]
DR1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "hess-dl3-dr1" / "data"


def event_file(rows: int, seed: int) -> bytes:
    """Bytes of one synthetic DL3-like event file."""
    rng = np.random.default_rng(seed)
    events = fits.BinTableHDU.from_columns([
        fits.Column("EVENT_ID", "K", array=np.arange(rows)),
        fits.Column("TIME", "D", unit="s", array=np.sort(rng.uniform(1e8, 1e8 + 1700, rows))),
        fits.Column("RA", "E", unit="deg", array=rng.normal(83.6, 2, rows).astype("f4")),
        fits.Column("DEC", "E", unit="deg", array=rng.normal(22.0, 2, rows).astype("f4")),
        fits.Column("ENERGY", "E", unit="TeV", array=rng.pareto(1.7, rows).astype("f4") + 0.1),
    ], name="EVENTS")
    for i, key in enumerate(["OBS_ID", "TSTART", "TSTOP", "ONTIME", "LIVETIME", "DEADC", "RA_PNT",
                             "DEC_PNT", "ALT_PNT", "AZ_PNT", "MJDREFI", "MJDREFF", "GEOLON",
                             "GEOLAT", "ALTITUDE", "N_TELS", "MUONEFF", "EQUINOX"]):
        events.header[key] = float(i) * 1.234567891234 if i % 2 else i
    for key in ["TIMESYS", "TIMEREF", "OBJECT", "OBS_MODE", "TELLIST", "HDUCLASS", "HDUCLAS1",
                "TELESCOP", "INSTRUME", "CREATOR", "RADECSYS", "EUNIT"]:
        events.header[key] = f"value of {key.lower()}"
    gti = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=[1e8]),
                                         fits.Column("STOP", "D", array=[1e8 + 1700])],
                                        name="GTI")
    irf = fits.ImageHDU(rng.normal(size=(20, 100, 100)).astype("f4"), name="BKG")
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), events, gti, irf]).writeto(buf)
    return buf.getvalue()


def make_files(folder: Path, n: int, rows: int) -> dict[str, list[Path]]:
    out = {"fits": [], "fits.gz": []}
    for i in range(n):
        data = event_file(rows, i)
        for ext, payload in (("fits", data), ("fits.gz", gzip.compress(data, 6, mtime=0))):
            path = folder / f"run_{i:05d}.{ext}"
            path.write_bytes(payload)
            out[ext].append(path)
    return out


def with_astropy(path) -> dict:
    with fits.open(path) as hdul:
        data = hdul["EVENTS"].data
        return {name: np.array(data[name]) for name in COLUMNS}


def with_xbkg(path) -> dict:
    return read_columns(path, "EVENTS", COLUMNS)


def best_time(reader, paths, repeat: int) -> tuple[float, int]:
    """Best total seconds over ``repeat`` passes, and the number of rows read per pass."""
    best, rows = np.inf, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = sum(len(reader(p)["TIME"]) for p in paths)
        best = min(best, time.perf_counter() - t0)
    return best, rows


def report(label: str, paths, repeat: int) -> None:
    a, rows = best_time(with_astropy, paths, repeat)
    x, rows_x = best_time(with_xbkg, paths, repeat)
    assert rows == rows_x
    n = len(paths)
    print(f"{label:<26} astropy {a / n * 1e3:7.3f} ms/file {rows / a / 1e6:6.1f} M rows/s | "
          f"read_columns {x / n * 1e3:7.3f} ms/file {rows / x / 1e6:6.1f} M rows/s | "
          f"x{a / x:5.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--zlib", action="store_true", help="inflate with zlib, not isal")
    args = parser.parse_args(argv)
    if args.zlib:
        fitstable._inflate_lib = zlib
    print(f"gzip inflater: {fitstable._inflate_lib.__name__}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t0 = time.perf_counter()
        files = make_files(Path(tmp), args.files, args.rows)
        took = time.perf_counter() - t0
        print(f"wrote {args.files} x 2 files of {args.rows} rows in {took:.1f} s")
        for path_a, path_b in zip(files["fits"][:3], files["fits.gz"][:3]):  # same values
            a, b, c = with_astropy(path_a), with_xbkg(path_a), with_xbkg(path_b)
            assert all(np.array_equal(a[k], b[k]) and np.array_equal(b[k], c[k]) for k in COLUMNS)
        for ext, paths in files.items():
            report(f".{ext} ({args.rows} rows)", paths, args.repeat)
    if DR1.is_dir():
        report("DR1 .fits.gz (~11k rows)", sorted(DR1.glob("*.fits.gz")), args.repeat)


if __name__ == "__main__":
    main()
