"""The pointing of each run: the EVENTS header's RA_PNT/DEC_PNT when present (as gammapy),
else the obs index; checked on every H.E.S.S. DR1 run against an independent astropy recount."""

import json

import numpy as np
import pytest
from astropy.io import fits

import xbkg
from xbkg.building.make import make_binning
from xbkg.building.reduce import run_cubes
from xbkg.core.runs import RunInfo
from xbkg.sky.exposure import fov_solid_angle
from xbkg.store.events import POINTING_SOURCES, complete_run_info, run_infos

E_EDGES = np.geomspace(0.1, 100.0, 21)
O_EDGES = np.linspace(0.0, 2.5, 11)


def _astropy_counts(path):
    """Counts per (energy, offset) bin: astropy.io.fits + SkyCoord.separation + histogram2d."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    with fits.open(path) as hdul:
        header, ev = hdul["EVENTS"].header, hdul["EVENTS"].data
        events = SkyCoord(ev["RA"].astype(float) * u.deg, ev["DEC"].astype(float) * u.deg)
        energy = ev["ENERGY"].astype(float)
    pointing = SkyCoord(float(header["RA_PNT"]) * u.deg, float(header["DEC_PNT"]) * u.deg)
    offset = events.separation(pointing).deg
    return np.histogram2d(energy, offset, bins=(E_EDGES, O_EDGES))[0]


@pytest.mark.slow
def test_dr1_counts_equal_an_astropy_recount_for_every_run(hess_dr1):
    store = xbkg.open_datastore(hess_dr1)
    binning = make_binning("2d", energy_edges=E_EDGES, offset_edges=O_EDGES)
    solid = fov_solid_angle(binning.kind, binning.fov_edges, binning.offset_max)
    runs = run_infos(store)
    assert len(runs) == 105
    for info in runs:
        got = run_cubes(info, binning, solid)
        assert got["pointing"] == "EVENTS header", info.obs_id
        np.testing.assert_array_equal(got["counts"], _astropy_counts(info.events_file),
                                      err_msg=f"run {info.obs_id}")


def test_pointing_source_recorded_in_the_model(hess_dr1):
    store = xbkg.open_datastore(hess_dr1)
    model = xbkg.make_model(store, kind="2d", obs_ids=store.obs_id.values[:3].tolist(),
                            selection="all", energy_edges=E_EDGES, offset_edges=O_EDGES,
                            scheduler="synchronous")
    assert model["obs_pointing_source"].values.tolist() == ["EVENTS header"] * 3
    assert "EVENTS header" in json.loads(model.attrs["provenance"])["pointing"]


def test_header_pointing_preferred_and_index_fallback():
    info = RunInfo(ra_pnt=187.7782, dec_pnt=12.5)
    out = complete_run_info(info, {"RA_PNT": 187.778191656847, "DEC_PNT": 12.4999})
    assert (out.ra_pnt, out.dec_pnt) == (187.778191656847, 12.4999)
    assert out.pointing_source == POINTING_SOURCES[0]
    for header in ({}, {"RA_PNT": 1.0}, {"RA_PNT": "x", "DEC_PNT": 2.0}, {"RA_PNT": 1.0,
                                                                         "DEC_PNT": 95.0}):
        out = complete_run_info(info, header)
        assert (out.ra_pnt, out.dec_pnt) == (187.7782, 12.5)
        assert out.pointing_source == POINTING_SOURCES[1]
