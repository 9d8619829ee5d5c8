"""Fuzzing: corrupted headers, columns and bytes of valid files give a correct result or our
own clear exception, never another exception type (issue 8).

The per-run task (:func:`xbkg.building.reduce.run_cubes`) is fed corrupted copies of one simulated
event file. It must either raise :class:`~xbkg.store.events.RunDataError` naming the run and the
file, or return cubes that are right: the exposure of the clean run (it depends only on the
run's index values) and counts that are non-negative, no more than the events in the file, and,
when only event rows were changed, within one event per changed row of the clean counts (each
event's bin depends on its own values only). Example counts are bounded and derandomized so
the tests run the same in CI (about 15 s in all).
"""

import gzip
import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, event, given, settings, strategies as st

from xbkg import make_model
from xbkg.building.make import make_binning
from xbkg.building.reduce import run_cubes
from xbkg.simulate import simulate_store
from xbkg.sky.exposure import fov_solid_angle
from xbkg.store.datastore import DataStoreError, open_datastore
from xbkg.store.events import RunDataError, UnitAssumedWarning, run_infos

FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
EVENT_COLUMNS = ("TIME", "RA", "DEC", "ENERGY")
BINNING = make_binning("3d", "altaz", energy_edges="0.1:100:6", fov_edges="-2:2:8")
SOLID = fov_solid_angle(BINNING.kind, BINNING.fov_edges, BINNING.offset_max)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The clean run: its file bytes, layout (offsets of the EVENTS data), info and cubes."""
    root = tmp_path_factory.mktemp("fuzz")
    store = simulate_store(root / "store", n_runs=3, events_per_run=400, seed=11)
    info = run_infos(open_datastore(store))[0]
    path = root / "work.fits"
    shutil.copy(info.events_file, path)
    info = info.with_(events_file=str(path), gti_file=str(path))
    data = path.read_bytes()
    with fits.open(path) as hdul:
        ev = hdul[1]
        layout = {"data": hdul.fileinfo(1)["datLoc"], "rows": ev.header["NAXIS2"],
                  "row_size": ev.header["NAXIS1"],
                  "formats": {c.name: c.format for c in ev.columns},
                  "offsets": {n: ev.data.dtype.fields[n][1] for n in ev.columns.names},
                  "cards": [(pos, data[pos : pos + 8].decode().strip())
                            for i in (1, 2)
                            for pos in range(hdul.fileinfo(i)["hdrLoc"], hdul.fileinfo(i)["datLoc"], 80)
                            if data[pos : pos + 8].strip() not in (b"END", b"")]}
    return Clean(store=store, root=root, path=path, bytes=data, info=info, layout=layout,
                 cubes=run_cubes(info, BINNING, SOLID, on_error="raise"))


class Clean(dict):
    """The fixture's values, with a short repr (Hypothesis prints the arguments of failures)."""

    def __repr__(self):
        return f"<clean run {self['info'].obs_id} of {self['store']}>"


def check(clean, data: bytes, changed_rows=None):
    """Run the task on ``data``: our exception naming run and file, or correct cubes."""
    clean["path"].write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitAssumedWarning)  # a deleted TUNIT is fine
            got = run_cubes(clean["info"], BINNING, SOLID, on_error="raise")
    except RunDataError as exc:
        message = str(exc)
        assert message.startswith(f"run {clean['info'].obs_id} (") and str(clean["path"]) in message
        event("rejected")
        return None
    event("used")
    ref = clean["cubes"]
    assert got["error"] is None
    assert got["counts"].dtype == np.int64 and got["counts"].shape == ref["counts"].shape
    np.testing.assert_array_equal(got["exposure"], ref["exposure"])
    assert got["counts"].min() >= 0 and got["counts"].sum() <= clean["layout"]["rows"]
    if changed_rows is not None:
        assert np.abs(got["counts"] - ref["counts"]).sum() <= 2 * changed_rows
    return got


def test_clean_file_gives_the_clean_cubes(clean):
    clean["path"].write_bytes(clean["bytes"])
    got = run_cubes(clean["info"], BINNING, SOLID, on_error="raise")
    np.testing.assert_array_equal(got["counts"], clean["cubes"]["counts"])
    assert got["error"] is None and got["counts"].sum() > 100 and got["exposure"].max() > 0


@settings(FUZZ, max_examples=150)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=6),
       compress=st.booleans())
def test_flipped_bytes_anywhere(clean, flips, compress):
    data = bytearray(clean["bytes"])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    data = bytes(data)
    check(clean, gzip.compress(data, compresslevel=1, mtime=0) if compress else data)


@settings(FUZZ, max_examples=100)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_corrupt_or_truncated_gzip_stream(clean, flips, cut):
    data = bytearray(gzip.compress(clean["bytes"], compresslevel=6, mtime=0))
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    check(clean, bytes(data[: int(cut * len(data))] if cut is not None else data))


@settings(FUZZ, max_examples=150)
@given(rows=st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
       column=st.sampled_from(EVENT_COLUMNS), data=st.data())
def test_changed_event_values(clean, rows, column, data):
    """Arbitrary values (NaN, inf, huge, negative) written into event rows."""
    layout = clean["layout"]
    fmt = layout["formats"][column]
    dtype, width = (">f4", 32) if fmt == "E" else (">f8", 64)
    raw = bytearray(clean["bytes"])
    rows = sorted({r % layout["rows"] for r in rows})
    values = []
    for r in rows:
        values.append(data.draw(st.floats(width=width, allow_nan=True, allow_infinity=True)))
        start = layout["data"] + r * layout["row_size"] + layout["offsets"][column]
        raw[start : start + np.dtype(dtype).itemsize] = np.array(values[-1:], dtype).tobytes()
    got = check(clean, bytes(raw), changed_rows=len(rows))
    values = np.array(values)
    invalid = ~np.isfinite(values)
    if column == "ENERGY":
        invalid |= values <= 0
    elif column == "DEC":
        invalid |= np.abs(values) > 90
    if invalid.any():  # NaN, inf, ENERGY <= 0 and |DEC| > 90 reject the run
        assert got is None


_CARD_VALUES = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: repr(float(v)).upper()),
    st.sampled_from(["T", "F", "", "'TeV'", "'deg'", "'GeV'", "'rad'", "'s'", "'d'", "'EVENTS'",
                     "'GTI'", "'E'", "'D'", "'2E'", "'PA()'", "'ENERGY'", "'RA'", "NAN", "'"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)


@settings(FUZZ, max_examples=200)
@given(picks=st.lists(st.tuples(st.integers(0, 10**6), _CARD_VALUES,
                                st.sampled_from(["value", "keyword", "blank"])),
                      min_size=1, max_size=3))
def test_changed_header_cards(clean, picks):
    """Header cards of the EVENTS and GTI HDUs given other values, renamed or blanked."""
    cards = clean["layout"]["cards"]
    raw = bytearray(clean["bytes"])
    for index, value, how in picks:
        pos, key = cards[index % len(cards)]
        if how == "value":
            card = f"{key:<8}= {value:>20}"
        elif how == "keyword":
            card = f"{(value.strip(chr(39)) or 'X')[:8]:<8}" + raw[pos + 8 : pos + 80].decode()
        else:
            card = ""
        raw[pos : pos + 80] = card[:80].ljust(80).encode("ascii")
    check(clean, bytes(raw))


MODEL_OPTS = {"kind": "3d", "energy_edges": "0.1:100:6", "fov_edges": "-2:2:8",
              "scheduler": "synchronous"}


@pytest.fixture(scope="module")
def models(clean):
    """Models of the store without run 2 and with every run."""
    return (make_model(clean["store"], obs_ids=[1, 3], **MODEL_OPTS),
            make_model(clean["store"], **MODEL_OPTS))


@settings(FUZZ, max_examples=8)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4))
def test_make_model_with_one_corrupt_file(clean, models, flips):
    """End to end: the corrupt run is skipped (the model is that of the other runs) or used
    (same exposure as with the clean run, counts within what the file holds)."""
    store = clean["root"] / "store-copy"
    if not store.exists():
        shutil.copytree(clean["store"], store)
    data = bytearray(clean["store"].joinpath("data", "obs_000002.fits").read_bytes())
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    (store / "data" / "obs_000002.fits").write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitAssumedWarning)
        model = make_model(store, **MODEL_OPTS)
    others, full = models
    if 2 in model.obs_id.values:
        np.testing.assert_array_equal(model["exposure"], full["exposure"])
        extra = model["counts"].values - others["counts"].values
        assert extra.min() >= 0 and extra.sum() <= len(data) // clean["layout"]["row_size"]
    else:
        np.testing.assert_array_equal(model["counts"], others["counts"])
        np.testing.assert_array_equal(model["exposure"], others["exposure"])


@settings(FUZZ, max_examples=60)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4),
       which=st.sampled_from(["obs-index.fits.gz", "hdu-index.fits.gz"]),
       raw=st.booleans())
def test_corrupt_index_files(clean, flips, which, raw):
    """A corrupt index opens fine (bytes that do not matter) or raises a message naming it."""
    store = clean["root"] / "store-index"
    if not store.exists():
        shutil.copytree(clean["store"], store)
    for name in ("obs-index.fits.gz", "hdu-index.fits.gz"):
        shutil.copy(clean["store"] / name, store / name)
    source = clean["store"] / which
    data = bytearray(gzip.decompress(source.read_bytes()) if raw else source.read_bytes())
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    (store / which).write_bytes(gzip.compress(bytes(data), mtime=0) if raw else bytes(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy reads the index and may warn on bad cards
            ds = open_datastore(store)
    except (DataStoreError, ValueError) as exc:
        assert which in str(exc), str(exc)
        return
    assert ds.sizes["obs_id"] >= 0
