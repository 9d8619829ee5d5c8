"""Per-run predictions (xbkg.model.predict) against gammapy's MapDatasetMaker on the DR1 runs."""

import warnings

import numpy as np
import pytest

import xbkg
from xbkg.io.fitstable import read_header
from xbkg.io.gammapy import respect_fov_alignment, to_gammapy
from xbkg.model.predict import predict_at, predict_counts, time_samples
from xbkg.store.events import complete_run_info, run_infos


@pytest.fixture(scope="module")
def dr1(hess_dr1):
    return xbkg.open_datastore(hess_dr1)


@pytest.fixture(scope="module", params=["radec", "altaz"])
def model(request, dr1):
    return xbkg.make_model(dr1, kind="3d", fov_alignment=request.param, selection="off",
                           zenith_edges=[0, 30, 50, 70])


def _info(store, obs_id):
    info = run_infos(store.sel(obs_id=[obs_id]))[0]
    return complete_run_info(info, read_header(info.events_file, info.events_hdu))


@pytest.mark.gammapy
@pytest.mark.parametrize("obs_id", [20275, 20301])
def test_predict_agrees_with_gammapy(dr1, model, hess_dr1, obs_id):
    import astropy.units as u

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gammapy.data import DataStore
        from gammapy.datasets import MapDataset
        from gammapy.makers import MapDatasetMaker
        from gammapy.maps import MapAxis, WcsGeom

        obs = DataStore.from_dir(hess_dr1).obs(obs_id)
        zenith = float(dr1["zenith"].sel(obs_id=obs_id))
        obs.bkg = to_gammapy(model, zenith=zenith)
        respect_fov_alignment(obs)
        assert obs.bkg.fov_alignment.value == model.attrs["fov_alignment"]
        energy = MapAxis.from_energy_bounds(0.1, 100, 20, unit="TeV")
        geom = WcsGeom.create(skydir=obs.get_pointing_icrs(obs.tmid), width=5, binsz=0.05,
                              frame="icrs", axes=[energy])
        # a fine rotation step, so that gammapy's own time sampling error stays < 0.1 %
        maker = MapDatasetMaker(selection=["background"], fov_rotation_step=0.1 * u.deg)
        reference = maker.run(MapDataset.create(geom), obs).background.data
        image = geom.to_image()
        sky = image.get_coord().skycoord
        offset = sky.separation(obs.get_pointing_icrs(obs.tmid)).deg
    ours = predict_at(model, _info(dr1, obs_id), sky.ra.deg, sky.dec.deg,
                      image.solid_angle().to_value("sr"), energy.edges.to_value("TeV"))
    inner = offset < 2.0
    ratio = ours[:, inner].sum(axis=1) / reference[:, inner].sum(axis=1)
    np.testing.assert_allclose(ratio, 1.0, atol=0.01)
    # the same run with the default (coarser) gammapy sampling differs by more than our
    # agreement only where the model is sparse; nothing ever explodes
    assert np.all(np.isfinite(ours)) and ours.sum() < 1e5


def test_predict_counts_grid(dr1, model):
    npred = predict_counts(model, dr1, 20275, width=4.0, binsz=0.1)
    assert npred["npred"].dims == ("energy", "dety", "detx") and npred["npred"].shape == (20, 40, 40)
    assert npred.attrs["ontime"] == pytest.approx(1683.0)
    # the grid is RADEC-aligned: pixel (dety=+, detx=0) is north of the pointing
    centre = npred.isel(detx=20, dety=39)
    assert float(centre["dec"]) > float(dr1["DEC_PNT"].sel(obs_id=20275))
    # counts inside 2 deg: of the order of the run's events there (off run, within 25 %)
    from xbkg.sky import fov

    info = _info(dr1, 20275)
    ev = xbkg.open_events(dr1, [20275]).compute()
    off = fov.offset_deg(ev["RA"].values, ev["DEC"].values, info.ra_pnt, info.dec_pnt)
    safe = (ev["ENERGY"].values >= 0.5) & (off < 2.0)
    pix_off = fov.offset_deg(npred["ra"].values, npred["dec"].values, info.ra_pnt,
                             info.dec_pnt)
    e_sel = npred["energy_bounds"].values[:, 0] >= 0.5
    predicted = npred["npred"].values[e_sel][:, pix_off < 2.0].sum()
    assert 0.75 < safe.sum() / predicted < 1.25


def test_time_samples_follow_field_rotation(dr1):
    info = _info(dr1, 20275)
    times, weights = time_samples(info, max_rotation=0.25)
    coarse, _ = time_samples(info, max_rotation=2.0)
    # mid-times of parts of equal rotation: inside the run, weights its time shares
    assert info.tstart < times[0] and times[-1] < info.tstop
    assert weights.sum() == pytest.approx(1.0)
    assert len(times) > len(coarse) >= 1


def test_prediction_averages_over_the_good_time_intervals(dr1, model):
    """An Alt/Az-aligned model turns on the sky during a run: the prediction is its average
    over the good time intervals only (time sampling of xbkg.sky.earth, as for the exclusion
    fractions). With two GTIs, the first and last quarters of the run, it is the mean of the
    two one-GTI predictions, and not the prediction over the whole run."""
    info = _info(dr1, 20275)
    t0, t1 = info.tstart, info.tstop
    q = (t1 - t0) / 4
    first, last = ([t0], [t0 + q]), ([t1 - q], [t1])
    both = ([t0, t1 - q], [t0 + q, t1])
    times, _ = time_samples(info, max_rotation=0.05, gti=both)
    assert not np.any((times > t0 + q) & (times < t1 - q))
    lon, lat = np.meshgrid(np.linspace(-1.8, 1.8, 7), np.linspace(-1.8, 1.8, 7))
    from xbkg.sky import fov

    ra, dec = fov.fov_to_radec(lon, lat, info.ra_pnt, info.dec_pnt)
    energy = [0.5, 1.0, 3.0, 10.0]

    def predict(gti):
        return predict_at(model, info, ra, dec, 1e-4, energy, gti=gti, max_rotation=0.05)

    mean = 0.5 * (predict(first) + predict(last))
    np.testing.assert_allclose(predict(both), mean, rtol=2e-3)
    whole = predict(None)
    assert np.count_nonzero(whole) > whole.size // 2
    change = np.abs(predict(both) - whole)[whole > 0].max() / whole.max()
    if model.attrs["fov_alignment"] == "ALTAZ":
        assert change > 0.01
    else:
        assert change == 0.0


def test_energy_integration_choice(dr1, model):
    with pytest.raises(ValueError, match="energy_integration"):
        predict_counts(model, dr1, 20275, width=1.0, binsz=0.5, energy_integration="bins")
