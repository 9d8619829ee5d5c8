"""Lazy per-run event reads (xbkg.store.events): one chunk per run, canonical units, run records."""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits

import xbkg
from xbkg.store.events import (
    CANONICAL_UNITS,
    RunDataError,
    describe_run,
    open_events,
    read_run,
    read_run_events,
    run_infos,
)
from xbkg.testing import count_calls, raise_if_dask_computes, small_store

N_RUNS = 3


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return xbkg.open_datastore(small_store(tmp_path_factory.mktemp("events"), n_runs=N_RUNS,
                                           events_per_run=300, seed=8))


def test_run_infos_are_plain_values_of_every_run(store):
    infos = run_infos(store)
    assert [i.obs_id for i in infos] == store.obs_id.values.tolist()
    for info, count in zip(infos, store["event_count"].values):
        assert info.event_count == count > 0
        assert isinstance(info.ra_pnt, float) and info.events_file.endswith(".fits")
        assert all(isinstance(getattr(info, f.name), (int, float, str, type(None)))
                   for f in dataclasses.fields(info))


def test_read_run_gives_the_events_of_the_file_in_canonical_units(store):
    info = run_infos(store)[0]
    columns, header = read_run_events(info.events_file, obs_id=info.obs_id)
    with fits.open(info.events_file) as hdul:
        table = hdul["EVENTS"].data
        np.testing.assert_array_equal(columns["ENERGY"], table["ENERGY"])  # stored in TeV
        assert len(table) == info.event_count == header["NAXIS2"]
    assert set(columns) == set(CANONICAL_UNITS) and columns["RA"].dtype == np.float64
    again = read_run(info)[0]
    for name in CANONICAL_UNITS:
        np.testing.assert_array_equal(again[name], columns[name])


def test_open_events_is_lazy_with_one_chunk_per_run_and_reads_each_run_once(store):
    with raise_if_dask_computes():
        events = open_events(store)
    assert events["ENERGY"].data.numblocks == (N_RUNS,)
    assert events["ENERGY"].data.chunks[0] == tuple(store["event_count"].values)
    with count_calls(xbkg.store.events, "read_columns") as reads:
        energy, obs = events["ENERGY"].values, events["obs_id"].values
    assert reads["read_columns"] == N_RUNS
    for info in run_infos(store):
        own = read_run_events(info.events_file)[0]["ENERGY"]
        np.testing.assert_array_equal(energy[obs == info.obs_id], own)


def test_a_missing_file_is_an_error_naming_the_run(store, tmp_path):
    info = run_infos(store)[1].with_(events_file=str(tmp_path / "gone.fits"))
    where = describe_run(info.obs_id, info.events_file, "EVENTS")
    assert where == f"run {info.obs_id} ({tmp_path / 'gone.fits'}, HDU EVENTS)"
    with pytest.raises(RunDataError, match=r"run 2 \(.*gone\.fits, HDU EVENTS\)"):
        read_run_events(info.events_file, obs_id=info.obs_id)
