"""Bad input gets a clear answer and one broken run never corrupts a model (issue 8).

Each case of the matrix breaks one run (OBS_ID 4) of a copy of a small simulated store and
checks that: the run is skipped with a message naming the run, its file and the problem; the
model equals the model built from the good runs alone; ``on_error="raise"`` raises that message;
the CLI lists the run in ``bg_rejected_runs.ecsv`` and ``--strict`` exits 2 with one line.
"""

import gzip
import json
import re
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from xbkg import make_model
from xbkg.cli import main
from xbkg.core.runs import RunInfo
from xbkg.io.fitstable import FitsReadError, read_columns, read_tables
from xbkg.simulate import simulate_store
from xbkg.store.events import RunDataError, UnitAssumedWarning
from xbkg.store.runchecks import outside_gti, validate_run_events
from xbkg.testing import assert_models_identical

BAD = 4
FILE = f"obs_{BAD:06d}.fits.gz"
OPTS = {"kind": "3d", "fov_alignment": "altaz", "energy_edges": "0.1:100:6",
        "fov_edges": "-2:2:8", "scheduler": "synchronous"}
CLI_OPTS = ["--selection", "all", "--kind", "3d", "--energy-edges", "0.1:100:6",
            "--fov-edges=-2:2:8", "--scheduler", "synchronous", "--no-progress", "--no-image"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 4-run store, the model of runs 1-3 and the model of all runs."""
    store = simulate_store(tmp_path_factory.mktemp("robust") / "store", n_runs=4,
                           events_per_run=1500, seed=5, compress=True, zenith_range=(10, 40))
    return store, make_model(store, obs_ids=[1, 2, 3], **OPTS), make_model(store, **OPTS)


def _copy(base, tmp_path, breaker=None):
    copy = tmp_path / "store"
    shutil.copytree(base[0], copy)
    if breaker is not None:
        breaker(copy)
    return copy


def _provenance(model):
    return json.loads(model.attrs["provenance"])


def assert_same_model(model, reference):
    """Identical data, coordinates and attributes, except the provenance (which lists skips)."""
    assert "provenance" in model.attrs and "provenance" in reference.attrs
    assert_models_identical(model, reference, ignore_attrs=("provenance",))


def assert_message(message, problem):
    assert f"run {BAD} " in message and FILE in message, message
    assert re.search(problem, message), message
    assert "\n" not in message


# ------------------------------------------------------------------------------------------
# ways to break run 4


def _events_path(store):
    return store / "data" / FILE


def _edit_hdus(edit, store):
    path = _events_path(store)
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus = edit(hdus) or hdus
    fits.HDUList(hdus).writeto(path, overwrite=True)


def _table_hdu(old, columns):
    """A BinTableHDU with ``columns`` and the non-structural header cards of ``old``."""
    new = fits.BinTableHDU.from_columns(columns)
    structural = re.compile(r"(TTYPE|TFORM|TUNIT|TDIM|TNULL|TSCAL|TZERO|TDISP)\d+|NAXIS\d?|"
                            r"XTENSION|BITPIX|PCOUNT|GCOUNT|TFIELDS")
    for card in old.header.cards:
        if card.keyword and not structural.fullmatch(card.keyword) and card.keyword not in new.header:
            new.header.append(card)
    return new


def _columns(edits=None, drop=()):
    """Breaker rebuilding the EVENTS columns: ``edits`` maps a name to Column keyword changes."""
    edits = edits or {}

    def edit(hdus):
        ev = hdus[1]
        cols = []
        for c in ev.columns:
            if c.name in drop:
                continue
            spec = {"name": c.name, "format": c.format, "unit": c.unit, "array": ev.data[c.name]}
            change = edits.get(c.name, {})
            spec.update({k: (v(spec["array"]) if callable(v) else v) for k, v in change.items()})
            cols.append(fits.Column(**spec))
        hdus[1] = _table_hdu(ev, cols)
    return lambda store: _edit_hdus(edit, store)


def _values(name, index, value):
    def edit(hdus):
        hdus[1].data[name][index] = value
    return lambda store: _edit_hdus(edit, store)


def _header(hdu, key, value):
    def edit(hdus):
        if value is None:
            del hdus[hdu].header[key]
        else:
            hdus[hdu].header[key] = value
    return lambda store: _edit_hdus(edit, store)


def _obs_index(**values):
    def breaker(store):
        path = store / "obs-index.fits.gz"
        table = Table.read(path)
        row = np.flatnonzero(table["OBS_ID"] == BAD)[0]
        for key, value in values.items():
            table[key][row] = value
        table.write(path, overwrite=True)
    return breaker


def _both(*breakers):
    def breaker(store):
        for b in breakers:
            b(store)
    return breaker


def _delete(store):
    _events_path(store).unlink()


def _directory(store):
    _events_path(store).unlink()
    _events_path(store).mkdir()


def _truncate(store):
    path = _events_path(store)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_gzip(store):
    path = _events_path(store)
    data = bytearray(path.read_bytes())
    for i in range(40, len(data) - 40, 97):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _not_fits(store):
    _events_path(store).write_bytes(gzip.compress(b"this is not a FITS file\n" * 200))


def _drop_gti(hdus):
    return hdus[:2]


def _empty(hdus):
    hdus[1] = fits.BinTableHDU(data=hdus[1].data[:0], header=hdus[1].header)


def _gti(start, stop):
    def edit(hdus):
        cols = [fits.Column(name=n, format="D", unit="s", array=np.asarray(v, dtype=float))
                for n, v in (("START", start(hdus)), ("STOP", stop(hdus)))]
        hdus[2] = _table_hdu(hdus[2], cols)
    return lambda store: _edit_hdus(edit, store)


def _gti_gap(hdus):
    """Two intervals with a gap of 200 s in the middle of the run (events remain in the gap)."""
    t0, t1 = float(hdus[2].data["START"][0]), float(hdus[2].data["STOP"][0])
    mid = 0.5 * (t0 + t1)
    return [t0, mid + 100], [mid - 100, t1]


CASES = [
    pytest.param(_delete, r"No such file", id="missing-file"),
    pytest.param(_directory, r"Is a directory", id="unreadable-file"),
    pytest.param(_not_fits, r"not a FITS file", id="not-fits"),
    pytest.param(_truncate, r"truncated", id="truncated-gzip"),
    pytest.param(_corrupt_gzip, r"corrupt|invalid|cannot read|truncated|not a FITS", id="corrupt-gzip"),
    pytest.param(_header(1, "EXTNAME", "SPECTRUM"), r"no HDU 'EVENTS' \(the file has: .*SPECTRUM",
                 id="missing-events-hdu"),
    pytest.param(lambda s: _edit_hdus(_drop_gti, s), r"no HDU 'GTI'", id="missing-gti-hdu"),
    pytest.param(_columns(drop=("ENERGY",)), r"column 'ENERGY' .*\(columns: ", id="missing-column"),
    pytest.param(_columns({"RA": {"name": "RA_OBJ"}}), r"column 'RA' ", id="renamed-column"),
    pytest.param(_columns({"ENERGY": {"unit": "deg"}}), r"column ENERGY has unit 'deg', not "
                 r"convertible to TeV", id="wrong-unit"),
    pytest.param(_columns({"TIME": {"unit": "blah"}}), r"column TIME has unit 'blah'",
                 id="unknown-unit"),
    pytest.param(_values("ENERGY", slice(3, 6), np.nan), r"column ENERGY has 3 NaN or infinite",
                 id="nan-values"),
    pytest.param(_values("RA", 7, np.inf), r"column RA has 1 NaN or infinite", id="inf-values"),
    pytest.param(_values("ENERGY", 0, -1.0), r"1 of \d+ events .* have ENERGY <= 0",
                 id="negative-energy"),
    pytest.param(_columns({"ENERGY": {"array": lambda a: a * 1e6}}),
                 r"median ENERGY is .* TeV, outside .*wrong energy unit", id="mev-labelled-tev"),
    pytest.param(_values("DEC", 2, 95.0), r"\|DEC\| > 90", id="dec-beyond-pole"),
    pytest.param(_obs_index(ONTIME=0.0), r"ONTIME is 0.0 s", id="zero-ontime"),
    pytest.param(_obs_index(ONTIME=-10.0), r"ONTIME is -10.0 s", id="negative-ontime"),
    pytest.param(_both(_obs_index(ONTIME=np.nan), _header(1, "ONTIME", None)), r"ONTIME is nan s",
                 id="missing-ontime"),
    pytest.param(lambda s: _edit_hdus(_empty, s), r"empty event list", id="empty-event-list"),
    pytest.param(_header(1, "OBS_ID", 99), r"header OBS_ID 99 differs from the index \(4\)",
                 id="obs-id-mismatch"),
    pytest.param(_header(1, "OBS_ID", "four"), r"header OBS_ID 'four' is not an integer",
                 id="obs-id-not-integer"),
    pytest.param(_columns({"RA": {"array": np.deg2rad}, "DEC": {"array": np.deg2rad}}),
                 r"events are not around the pointing .* median offset", id="radians-labelled-deg"),
    # the EVENTS header's pointing is used when present (as gammapy): wrong in both places
    pytest.param(_both(_obs_index(DEC_PNT=-60.0), _header(1, "DEC_PNT", -60.0)),
                 r"events are not around the pointing", id="wrong-pointing"),
    pytest.param(_both(_obs_index(RA_PNT=np.nan), _header(1, "RA_PNT", None)),
                 r"pointing RA_PNT, DEC_PNT = nan", id="missing-pointing"),
    pytest.param(_columns({"TIME": {"array": lambda t: t + 3600.0}}),
                 r"\d+ of \d+ events .* have TIME outside the GTI", id="times-outside-gti"),
    pytest.param(lambda s: _gti(lambda h: _gti_gap(h)[0], lambda h: _gti_gap(h)[1])(s),
                 r"have TIME outside the GTI", id="events-in-gti-gap"),
    pytest.param(_gti(lambda h: h[2].data["STOP"], lambda h: h[2].data["START"]),
                 r"STOP < START", id="gti-stop-before-start"),
]


@pytest.mark.parametrize(("breaker", "problem"), CASES)
def test_bad_run_is_skipped_reported_or_raised(base, tmp_path, caplog, breaker, problem):
    _, good, _ = base
    store = _copy(base, tmp_path, breaker)
    model = make_model(store, **OPTS)
    skipped = _provenance(model)["skipped_runs"]
    assert list(skipped) == [str(BAD)]
    assert_message(skipped[str(BAD)], problem)
    assert "skipped 1 run(s)" in caplog.text and skipped[str(BAD)] in caplog.text
    assert_same_model(model, good)

    with pytest.raises(RunDataError) as exc:
        make_model(store, on_error="raise", **OPTS)
    assert_message(str(exc.value), problem)


@pytest.mark.slow
@pytest.mark.parametrize(("breaker", "problem"), CASES[::3])
def test_cli_lists_rejected_runs_and_strict_exits_2(base, tmp_path, capsys, breaker, problem):
    store = _copy(base, tmp_path, breaker)
    out = tmp_path / "out"
    assert main(["make-models", str(store), str(out), *CLI_OPTS]) == 0
    rejected = Table.read(out / "bg_rejected_runs.ecsv")
    assert list(rejected["OBS_ID"]) == [BAD]
    assert_message(str(rejected["REASON"][0]), problem)
    assert sorted(Table.read(out / "bg_observation_table.fits.gz")["OBS_ID"]) == [1, 2, 3]
    capsys.readouterr()

    strict = tmp_path / "strict"
    assert main(["make-models", str(store), str(strict), *CLI_OPTS, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xbkg make-models: error: run 4 "), err
    assert_message(err[0], problem)
    assert not strict.exists()
    assert not list(tmp_path.glob(".strict*"))


@pytest.mark.slow
def test_cli_rejected_table_lists_every_reason(base, tmp_path):
    """Runs left out for selection and for bad data are listed together, each with its reason."""
    store = _copy(base, tmp_path, _delete)
    out = tmp_path / "out"
    assert main(["make-models", str(store), str(out), *CLI_OPTS, "--n-obs-max", "3",
                 "--zenith-edges", "0,90"]) == 0
    rejected = Table.read(out / "bg_rejected_runs.ecsv")
    assert list(rejected["OBS_ID"]) == [4]
    assert "n_obs_max" in rejected["REASON"][0]  # not selected: its file is never opened
    assert main(["make-models", str(store), str(tmp_path / "all"), *CLI_OPTS]) == 0
    rejected = Table.read(tmp_path / "all" / "bg_rejected_runs.ecsv")
    assert list(rejected["OBS_ID"]) == [4] and "No such file" in rejected["REASON"][0]


# ------------------------------------------------------------------------------------------
# store-level problems: exit 2 with one line


def _duplicate_obs_id(store):
    path = store / "obs-index.fits.gz"
    table = Table.read(path)
    table["OBS_ID"][1] = table["OBS_ID"][0]
    table.write(path, overwrite=True)


STORE_CASES = [
    pytest.param(lambda s: (s / "obs-index.fits.gz").unlink(), [], r"no obs index file",
                 id="no-obs-index"),
    pytest.param(lambda s: (s / "hdu-index.fits.gz").unlink(), [], r"no hdu index file",
                 id="no-hdu-index"),
    pytest.param(lambda s: (s / "obs-index.fits.gz").write_bytes(b"garbage"), [],
                 r"obs-index.fits.gz: cannot read index table", id="corrupt-obs-index"),
    pytest.param(_duplicate_obs_id, [], r"obs-index.fits.gz: duplicate OBS_ID values \[1\]",
                 id="duplicate-obs-ids"),
    pytest.param(None, ["--selection", "offplane", "--zenith-edges", "80,90"],
                 r"no run", id="no-run-selected"),
    pytest.param(None, ["--energy-edges", "1:0.1:5"], r"--energy-edges", id="bad-energy-edges"),
    pytest.param(None, ["--fov-edges", "__import__('os').system('true')"], r"--fov-edges: cannot parse",
                 id="expression-is-not-evaluated"),
    pytest.param(None, ["--zenith-edges", "90,0"], r"zenith", id="bad-zenith-edges"),
    pytest.param(None, ["--run-list", "/nonexistent/runs.txt"], r"--run-list", id="no-run-list"),
]


@pytest.mark.parametrize(("breaker", "extra", "problem"), STORE_CASES)
def test_store_level_problems_exit_2_with_one_line(base, tmp_path, capsys, breaker, extra, problem):
    store = _copy(base, tmp_path, breaker)
    out = tmp_path / "out"
    code = main(["make-models", str(store), str(out), *CLI_OPTS, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("xbkg make-models: error: "), err
    assert re.search(problem, err[0]), err[0]
    assert not out.exists()


def test_every_run_broken_exits_2(base, tmp_path, capsys):
    store = _copy(base, tmp_path)
    for path in (store / "data").iterdir():
        path.write_bytes(b"")
    assert main(["make-models", str(store), str(tmp_path / "out"), *CLI_OPTS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "every selected run failed; first error: run " in err[0]


# ------------------------------------------------------------------------------------------
# units are honoured


UNIT_CASES = [
    pytest.param({"ENERGY": {"unit": "GeV", "format": "D", "array": lambda a: a * 1e3}}, id="GeV"),
    pytest.param({"ENERGY": {"unit": "MeV", "format": "D", "array": lambda a: a * 1e6}}, id="MeV"),
    pytest.param({"RA": {"unit": "rad", "format": "D", "array": np.deg2rad},
                  "DEC": {"unit": "rad", "format": "D", "array": np.deg2rad}}, id="radians"),
    pytest.param({"TIME": {"unit": "ms", "array": lambda t: t * 1e3}}, id="milliseconds"),
]


@pytest.mark.parametrize("edits", UNIT_CASES)
def test_units_are_converted(base, tmp_path, edits):
    _, _, full = base
    store = _copy(base, tmp_path, _columns(edits))
    model = make_model(store, on_error="raise", **OPTS)
    assert_same_model(model, full)


def test_missing_unit_assumed_with_a_warning(base, tmp_path):
    _, _, full = base
    store = _copy(base, tmp_path, _columns({"ENERGY": {"unit": None}}))
    with pytest.warns(UnitAssumedWarning, match=rf"run 4 .*{FILE}.*ENERGY has no unit, assuming TeV"):
        model = make_model(store, on_error="raise", **OPTS)
    assert_same_model(model, full)


def test_gti_in_days_on_another_time_reference(base, tmp_path):
    """GTI START/STOP are converted with their unit and shifted to the EVENTS MJDREF."""
    _, _, full = base

    def edit(hdus):
        gti = hdus[2]
        cols = [fits.Column(name=n, format="D", unit="d", array=gti.data[n] / 86400.0 - 1.0)
                for n in ("START", "STOP")]
        hdus[2] = _table_hdu(gti, cols)
        hdus[2].header["MJDREFI"] = gti.header["MJDREFI"] + 1

    store = _copy(base, tmp_path, lambda s: _edit_hdus(edit, s))
    assert_same_model(make_model(store, on_error="raise", **OPTS), full)


def test_run_without_gti_row_is_used(base, tmp_path):
    _, _, full = base

    def breaker(store):
        path = store / "hdu-index.fits.gz"
        table = Table.read(path)
        table[table["HDU_TYPE"] != "gti"].write(path, overwrite=True)

    store = _copy(base, tmp_path, breaker)
    assert_same_model(make_model(store, on_error="raise", **OPTS), full)


def test_events_beyond_offset_max_are_dropped_not_rejected(base, tmp_path):
    """A few stray events 30 deg out are not a reason to reject a run: the offset cut drops
    them, so the model is the one without them."""
    def remove(hdus):
        hdus[1] = fits.BinTableHDU(data=hdus[1].data[3:], header=hdus[1].header)

    stray = make_model(_copy(base, tmp_path / "a", _values("DEC", slice(0, 3), -30.0)),
                       on_error="raise", **OPTS)
    removed = make_model(_copy(base, tmp_path / "b", lambda s: _edit_hdus(remove, s)),
                         on_error="raise", **OPTS)
    assert _provenance(stray)["skipped_runs"] == {}
    assert_same_model(stray, removed)


# ------------------------------------------------------------------------------------------
# the kernels


def test_outside_gti_tolerance_and_overlaps():
    start, stop = np.array([0.0, 50.0, 40.0]), np.array([10.0, 60.0, 55.0])
    t = np.array([-2.5, -1.5, 11.9, 12.1, 30.0, 38.5, 45.0, 61.9, 62.1])
    assert outside_gti(t, start, stop, tolerance=2.0).tolist() == [
        True, False, False, True, True, False, False, False, True]


def _info(**kw):
    return RunInfo(obs_id=9, events_file="f.fits", events_hdu="EVENTS", ontime=100.0,
                   ra_pnt=10.0, dec_pnt=-20.0).with_(**kw)


def _events(n=100, **kw):
    rng = np.random.default_rng(1)
    cols = {"ENERGY": rng.uniform(0.2, 2.0, n), "RA": 10 + rng.normal(0, 1, n),
            "DEC": -20 + rng.normal(0, 1, n), "TIME": np.linspace(5.0, 95.0, n)}
    cols.update(kw)
    return cols


def test_validate_accepts_good_and_names_run_on_bad():
    validate_run_events(_events(), {}, _info(), gti=(np.array([0.0]), np.array([100.0])))
    validate_run_events(_events(), {}, _info(), gti=None)
    with pytest.raises(RunDataError, match=r"^run 9 \(f.fits, HDU EVENTS\): the GTI table is empty"):
        validate_run_events(_events(), {}, _info(), gti=(np.array([]), np.array([])))
    with pytest.raises(RunDataError, match=r"GTI has START or STOP values that are NaN"):
        validate_run_events(_events(), {}, _info(), gti=(np.array([np.nan]), np.array([1.0])))
    with pytest.raises(RunDataError, match=r"ONTIME is inf"):
        validate_run_events(_events(), {}, _info(ontime=np.inf))
    with pytest.raises(RunDataError, match=r"median ENERGY is 0.0005 TeV"):
        validate_run_events(_events(ENERGY=np.full(100, 5e-4)), {}, _info())


def test_read_tables_one_pass_equals_separate_reads(base):
    path = _events_path(base[0])
    both = read_tables(path, {"EVENTS": ["ENERGY", "TIME"], "gti": ["START", "STOP"], 1: []})
    ev = read_columns(path, "EVENTS", ["ENERGY", "TIME"], header=True)
    gti = read_columns(path, "GTI", ["START", "STOP"], header=True)
    for got, want in ((both["EVENTS"], ev), (both["gti"], gti)):
        assert got[1] == want[1] and got[2] == want[2]
        for name in want[0]:
            np.testing.assert_array_equal(got[0][name], want[0][name])
    assert both[1][0] == {} and both[1][1] == ev[1]
    with pytest.raises(FitsReadError, match=r"no HDU 'BKG' \(the file has: HDU 0 \(PRIMARY\), "
                       r"HDU 1 \(EVENTS\), HDU 2 \(GTI\)\)"):
        read_tables(path, {"EVENTS": ["TIME"], "BKG": ["BKG"]})


# ------------------------------------------------------------------------------------------
# files we read are untrusted


def test_no_pickle_eval_or_exec_in_the_package():
    import pathlib

    import xbkg

    banned = re.compile(r"pickle|\beval\(|\bexec\(|yaml\.load\(|\bmarshal\b|\bshelve\b|\bdill\b")
    hits = [f"{path.name}:{n}: {line.strip()}"
            for path in pathlib.Path(xbkg.__file__).parent.rglob("*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1) if banned.search(line)]
    assert hits == []


def test_netcdf_attributes_are_plain_values(base, tmp_path):
    """Every attribute in model.nc is a string or numbers; the provenance is JSON."""
    import h5py

    from xbkg.io.netcdf import write_netcdf

    path = write_netcdf(base[1], tmp_path / "model.nc")
    found = []

    def visit(name, obj):
        for key, value in obj.attrs.items():
            found.append((name, key, value))

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    assert len(found) > 20
    for name, key, value in found:
        if isinstance(value, (str, bytes)):
            continue
        array = np.asarray(value)
        if key in ("DIMENSION_LIST", "REFERENCE_LIST"):  # netCDF4 dimension bookkeeping
            continue
        assert array.dtype.kind in "biuf" or (array.dtype.kind == "O" and all(
            isinstance(v, (str, bytes)) for v in array.ravel())), (name, key, array.dtype)
    assert json.loads(base[1].attrs["provenance"])["n_runs"] == 3
