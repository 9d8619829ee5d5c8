"""GADF background FITS adapter: schema validity, gammapy agreement, round trips, variants."""

import gzip
import re
import warnings

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.units import UnitsWarning

from xbkg.core.binning import edges_of, lin_edges, log_edges
from xbkg.core.schema import assemble_model, validate_model
from xbkg.io import gadf
from xbkg.io.atomic import atomic_path
from xbkg.io.gadf import (
    GROUP_CARDS,
    OFFSET_CARD,
    RATE_UNIT,
    AxisOrderWarning,
    FovAlignmentWarning,
    GadfReadWarning,
    bkg_hdu,
    counts_hdu,
    exposure_hdu,
    image_hdu,
    open_bkg_fits,
    read_bkg_hdu,
    write_image_file,
    write_table_file,
)


def make_model(kind="3d", align="ALTAZ", *, n_energy=7, nx=8, ny=5, n_offset=6, seed=0,
               energy_edges=None):
    """Two zenith groups, random Poisson counts on an asymmetric mean (every bin >= 1 count)."""
    rng = np.random.default_rng(seed)
    e_edges = log_edges(0.1, 100.0, n_energy) if energy_edges is None else energy_edges
    e = np.sqrt(e_edges[1:] * e_edges[:-1])
    spectrum = 300.0 * e ** -1.5
    if kind == "3d":
        fov = {"detx": lin_edges(-2.0, 2.0, nx), "dety": lin_edges(-1.5, 2.5, ny)}
        x = 0.5 * (fov["detx"][1:] + fov["detx"][:-1])
        y = 0.5 * (fov["dety"][1:] + fov["dety"][:-1])
        # rate falls with detx around +0.4 deg and grows linearly with dety: not symmetric
        fov_shape = np.exp(-0.5 * ((x - 0.4) / 1.2) ** 2)[None, :] * (1.5 + 0.4 * y)[:, None]
    else:
        fov = {"offset": lin_edges(0.0, 2.5, n_offset)}
        o = 0.5 * (fov["offset"][1:] + fov["offset"][:-1])
        fov_shape = np.exp(-0.5 * (o / 1.3) ** 2)
    mean = np.array([1.0, 0.6])[:, None] * spectrum[None, :]
    mean = mean.reshape((2, -1) + (1,) * fov_shape.ndim) * fov_shape
    counts = rng.poisson(mean) + 1
    exposure = rng.uniform(0.5, 2.0, counts.shape) * 1e4
    runs = xr.Dataset(
        {"obs_group": ("obs_id", [0, 0, 1]), "obs_ontime": ("obs_id", [1500.0, 1600.0, 1700.0]),
         "obs_zenith": ("obs_id", [10.0, 25.0, 40.0])},
        coords={"obs_id": [11, 12, 13]},
    )
    return assemble_model(counts, exposure, kind=kind, energy_edges=e_edges, fov_edges=fov,
                          zenith_edges=[0.0, 30.0, 60.0], fov_alignment=align, offset_max=2.5,
                          runs=runs)


def model_cube(model, group):
    """Rate of one group as numpy (energy, <fov dims>)."""
    dims = ("energy", "offset") if model.attrs["kind"] == "2d" else ("energy", "dety", "detx")
    return model["rate"].sel(zenith_group=group).transpose(*dims).values


def gammapy_irf():
    """``gammapy.irf``, skipping without gammapy. Its import pulls in matplotlib, which with
    pyparsing >= 3.3 emits pyparsing deprecation warnings (UserWarning subclasses): silenced."""
    pytest.importorskip("gammapy")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated - use", category=UserWarning)
        import gammapy.irf
    return gammapy.irf


KINDS_ALIGNS = [("2d", "ALTAZ"), ("3d", "ALTAZ"), ("3d", "RADEC")]



# ---------------------------------------------------------------------------- writing


@pytest.mark.parametrize("kind, align", KINDS_ALIGNS)
def test_bkg_hdu_validates_with_ogadf_schema(kind, align):
    from fits_schema.exceptions import AdditionalHeaderCard
    from ogadf_schema.irfs import BKG_2D, BKG_3D

    model = make_model(kind, align)
    hdu = bkg_hdu(model, 1)
    schema = BKG_3D if kind == "3d" else BKG_2D
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema.validate_hdu(hdu)  # raises on a violation
    # the only remarks: our documented extra cards, which are outside the schema
    for w in caught:
        assert issubclass(w.category, AdditionalHeaderCard), str(w.message)
        key = re.match(r'Unexpected header card "([A-Z0-9_-]+)', str(w.message)).group(1)
        assert key in GROUP_CARDS or key == OFFSET_CARD, key
    assert hdu.header["HDUCLAS4"] == f"BKG_{kind.upper()}"
    assert hdu.name == "BACKGROUND"
    if kind == "3d":
        assert hdu.header["FOVALIGN"] == align
        assert hdu.header["TDIM7"] == "(7,8,5)"  # (nE, nx, ny): numpy (dety, detx, energy)
    else:
        assert "FOVALIGN" not in hdu.header
        assert hdu.header["TDIM5"] == "(7,6)"  # (nE, ntheta): numpy (offset, energy)
    assert (hdu.header["ZEN_LO"], hdu.header["ZEN_HI"]) == (30.0, 60.0)
    assert hdu.header["N_OBS"] == 1 and hdu.header["ONTIME"] == 1700.0
    assert hdu.header["ZEN_MEAN"] == pytest.approx(40.0)
    assert hdu.header["CREATOR"].startswith("xbkg ")
    # the schema does catch a broken header
    del hdu.header["HDUCLAS4"]
    with pytest.raises(ValueError):
        schema.validate_hdu(hdu)


def test_counts_and_exposure_hdus_same_layout():
    model = make_model("3d", n_energy=4, nx=3, ny=2)
    c, e = counts_hdu(model, 0), exposure_hdu(model, 0)
    assert (c.name, e.name) == ("COUNTS", "EXPOSURE")
    assert c.columns.names[:6] == bkg_hdu(model).columns.names[:6]
    assert c.header["TDIM7"] == e.header["TDIM7"] == "(4,3,2)"
    assert c.data["COUNTS"].dtype.kind == "i"
    expected = model["counts"].isel(zenith_group=0).transpose("dety", "detx", "energy").values
    np.testing.assert_array_equal(c.data["COUNTS"][0], expected)
    assert e.columns["EXPOSURE"].unit == "s MeV sr"


def test_writer_is_strict():
    model = make_model("3d")
    with pytest.raises(KeyError, match="zenith group 5"):
        bkg_hdu(model, 5)
    bad = model.copy(deep=True)
    bad["rate"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        bkg_hdu(bad, 0)
    assert bkg_hdu(bad, 1).data is not None  # other group is fine
    with pytest.raises(KeyError, match="counts"):
        counts_hdu(model.drop_vars("counts"), 0)


# --------------------------------------------------------------------- gammapy agreement


@pytest.mark.gammapy
@pytest.mark.parametrize("kind, align", KINDS_ALIGNS)
def test_gammapy_reads_written_file(tmp_path, kind, align):
    import astropy.units as u

    Background2D, Background3D = gammapy_irf().Background2D, gammapy_irf().Background3D

    model = make_model(kind, align)
    path = write_table_file(model, 1, tmp_path / "bkg.fits.gz")
    one = model.sel(zenith_group=1)
    energy = one["energy"].values[:, None, None] * u.TeV
    if kind == "3d":
        bkg = Background3D.read(path, hdu="BACKGROUND")
        assert bkg.fov_alignment.value == align
        got = bkg.evaluate(energy=energy, fov_lon=one["detx"].values[None, None, :] * u.deg,
                           fov_lat=one["dety"].values[None, :, None] * u.deg)
        np.testing.assert_allclose(bkg.axes["fov_lon"].edges.to_value("deg"),
                                   edges_of(model, "detx"))
        np.testing.assert_allclose(bkg.axes["fov_lat"].edges.to_value("deg"),
                                   edges_of(model, "dety"))
    else:
        bkg = Background2D.read(path, hdu="BACKGROUND")
        got = bkg.evaluate(energy=energy[:, :, 0],
                           offset=one["offset"].values[None, :] * u.deg)
    np.testing.assert_allclose(bkg.axes["energy"].edges.to_value("TeV"),
                               edges_of(model, "energy"))
    # at every bin centre gammapy's interpolation returns the bin value
    np.testing.assert_allclose(got.to_value(RATE_UNIT), model_cube(model, 1), rtol=1e-6)


@pytest.mark.gammapy
def test_gammapy_random_bin_centres_detect_axis_swap(tmp_path):
    """Random bins of an asymmetric model: a detx/dety or sign mix-up would not match."""
    import astropy.units as u

    Background3D = gammapy_irf().Background3D

    model = make_model("3d", "RADEC", seed=3)
    path = write_table_file(model, 0, tmp_path / "bkg.fits")
    bkg = Background3D.read(path, hdu="BACKGROUND")
    rng = np.random.default_rng(7)
    one = model.isel(zenith_group=0)
    ie, iy, ix = (rng.integers(0, one.sizes[d], 40) for d in ("energy", "dety", "detx"))
    got = bkg.evaluate(energy=one["energy"].values[ie] * u.TeV,
                       fov_lon=one["detx"].values[ix] * u.deg,
                       fov_lat=one["dety"].values[iy] * u.deg)
    np.testing.assert_allclose(got.to_value(RATE_UNIT), model_cube(model, 0)[ie, iy, ix],
                               rtol=1e-6)
    swapped = model_cube(model, 0)[ie, np.minimum(ix, one.sizes["dety"] - 1), iy]
    assert not np.allclose(got.to_value(RATE_UNIT), swapped, rtol=1e-3)
    assert str(bkg.fov_alignment.value) == "RADEC"


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind, align", KINDS_ALIGNS)
def test_table_file_round_trip(tmp_path, kind, align):
    model = make_model(kind, align)
    path = write_table_file(model, 1, tmp_path / "m.fits.gz")
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "BACKGROUND", "COUNTS", "EXPOSURE"]
    back = validate_model(open_bkg_fits(path))
    one = model.sel(zenith_group=[1])
    for name in ("rate", "counts", "exposure", "rate_error"):
        np.testing.assert_array_equal(back[name].values, one[name].values, err_msg=name)
    for dim in ("energy",) + (("offset",) if kind == "2d" else ("detx", "dety")):
        np.testing.assert_array_equal(edges_of(back, dim), edges_of(model, dim))
        np.testing.assert_array_equal(back[dim].values, model[dim].values)
    np.testing.assert_array_equal(back["zenith_bounds"].values, [[30.0, 60.0]])
    assert back.attrs["kind"] == kind and back.attrs["fov_alignment"] == align
    assert back["group_ontime"].values.tolist() == [1700.0]
    assert back["group_n_obs"].values.tolist() == [1]
    np.testing.assert_allclose(back["group_mean_cos_zenith"], one["group_mean_cos_zenith"])
    # the cut the model was built with (not the last edge or box corner)
    assert back.attrs["offset_max"] == model.attrs["offset_max"]


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_read_bkg_hdu_in_memory_rate_only(kind):
    model = make_model(kind)
    back = read_bkg_hdu(bkg_hdu(model, 0))
    assert set(back.data_vars) == {"rate", "group_ontime", "group_n_obs",
                                   "group_mean_cos_zenith"}
    assert back["rate"].dims == model["rate"].dims
    np.testing.assert_array_equal(back["rate"].values[0], model_cube(model, 0)
                                  if kind == "2d" else model["rate"].values[0])
    np.testing.assert_array_equal(back["zenith_bounds"].values, [[0.0, 30.0]])


def test_missing_zenith_keys_default_bounds():
    hdu = bkg_hdu(make_model("2d"), 0)
    for key in GROUP_CARDS:
        del hdu.header[key]
    back = read_bkg_hdu(hdu)
    np.testing.assert_array_equal(back["zenith_bounds"].values, [[0.0, 90.0]])
    assert "group_ontime" not in back


# -------------------------------------------------------------------------- real data


@pytest.mark.gammapy
def test_hess_dr1_bkg_matches_gammapy(hess_dr1):
    import astropy.units as u

    Background3D = gammapy_irf().Background3D

    path = sorted((hess_dr1 / "data").glob("*.fits.gz"))[0]
    ds = open_bkg_fits(path)  # finds the BKG HDU (the 7th) by itself
    assert ds.sizes["energy"] == 20 and ds.sizes["detx"] == ds.sizes["dety"] == 50
    assert ds.attrs["fov_alignment"] == "RADEC" and ds.attrs["kind"] == "3d"
    assert "counts" not in ds
    np.testing.assert_array_equal(ds["zenith_bounds"].values, [[0.0, 90.0]])
    bkg = Background3D.read(path, hdu="BKG")  # numpy (energy, fov_lon, fov_lat)
    ours = ds["rate"].isel(zenith_group=0)
    np.testing.assert_allclose(ours.transpose("energy", "detx", "dety").values,
                               bkg.quantity.to_value(RATE_UNIT), rtol=1e-6)
    # gammapy's bin centres come from the float32 edges: evaluate there, after checking them
    centres = {name: bkg.axes[name].center for name in ("energy", "fov_lon", "fov_lat")}
    for name, dim in (("energy", "energy"), ("fov_lon", "detx"), ("fov_lat", "dety")):
        np.testing.assert_allclose(centres[name].value, ours[dim].values, rtol=1e-6, atol=1e-7)
    got = bkg.evaluate(energy=centres["energy"][:, None, None],
                       fov_lon=centres["fov_lon"][None, None, :],
                       fov_lat=centres["fov_lat"][None, :, None]).to_value(RATE_UNIT)
    positive = ours.values > 0
    assert positive.mean() > 0.5
    # 1e-5: gammapy interpolates the float32 data in float32 (log scale); direct check above
    np.testing.assert_allclose(got[positive], ours.values[positive], rtol=1e-5)


def test_hess_dr1_other_hdus_are_refused(hess_dr1):
    path = sorted((hess_dr1 / "data").glob("*.fits.gz"))[0]
    for name in ("EVENTS", "AEFF", "PRIMARY"):
        with pytest.raises(ValueError, match=re.escape(f"{path}[{name}]")):
            open_bkg_fits(path, hdu=name)
    with pytest.raises(KeyError, match="NOPE"):
        open_bkg_fits(path, hdu="NOPE")


# ------------------------------------------------------------------- tolerant reading


def cta_style_hdu(rate_exy, e_edges_gev, x_edges_deg, y_edges_rad, *, unit="1/(MeV s sr)",
                  fovalign=None):
    """CTA-1DC-like BGD table: OGIP class, numpy (energy, detx, dety), non-default units."""
    def col(name, values, u, dim=None):
        values = np.asarray(values, dtype="float32")
        return fits.Column(name=name, format=f"{values.size}E", unit=u, dim=dim,
                           array=values[np.newaxis])

    cols = [col("DETX_LO", x_edges_deg[:-1], "deg"), col("DETX_HI", x_edges_deg[1:], "deg"),
            col("DETY_LO", y_edges_rad[:-1], "rad"), col("DETY_HI", y_edges_rad[1:], "rad"),
            col("ENERG_LO", e_edges_gev[:-1], "GeV"), col("ENERG_HI", e_edges_gev[1:], "GeV"),
            col("BGD", rate_exy, unit, "(" + ",".join(map(str, rate_exy.shape[::-1])) + ")")]
    header = fits.Header([("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "BGD"),
                          ("HDUCLAS3", "FULL-ENCLOSURE"), ("HDUCLAS4", "3D")])
    if fovalign:
        header["FOVALIGN"] = fovalign
    return fits.BinTableHDU.from_columns(cols, header=header, name="BACKGROUND")


@pytest.mark.gammapy
def test_cta_style_file_reads(tmp_path):
    rng = np.random.default_rng(2)
    e_edges = log_edges(50.0, 5e4, 6)  # GeV
    x_edges = lin_edges(-3.0, 3.0, 5)
    y_edges = np.radians(lin_edges(-2.0, 2.0, 4))
    rate_exy = rng.uniform(1e-6, 1e-3, (6, 5, 4)).astype("float32")
    path = tmp_path / "irf_file.fits"
    fits.HDUList([fits.PrimaryHDU(), cta_style_hdu(rate_exy, e_edges, x_edges, y_edges)]
                 ).writeto(path)
    ds = open_bkg_fits(path, fov_alignment="ALTAZ")
    np.testing.assert_allclose(edges_of(ds, "energy"), e_edges / 1e3, rtol=1e-6)
    np.testing.assert_allclose(edges_of(ds, "dety"), lin_edges(-2.0, 2.0, 4), rtol=1e-6)
    np.testing.assert_allclose(edges_of(ds, "detx"), x_edges, rtol=1e-6)
    ours = ds["rate"].isel(zenith_group=0).transpose("energy", "detx", "dety").values
    np.testing.assert_allclose(ours, rate_exy, rtol=1e-6)  # 1/(MeV s sr) is our unit
    assert ds.attrs["fov_alignment"] == "ALTAZ"
    # gammapy cross-check of the axis order; gammapy needs HDUCLAS2 BKG (as in CTA 1DC files)
    with fits.open(path) as hdul:
        hdul["BACKGROUND"].header["HDUCLAS2"] = "BKG"
        hdul.writeto(tmp_path / "irf_bkg.fits")
    Background3D = gammapy_irf().Background3D
    with warnings.catch_warnings():  # astropy's Table reader does not parse '1/(MeV s sr)'
        warnings.simplefilter("ignore", UnitsWarning)
        bkg = Background3D.read(tmp_path / "irf_bkg.fits", hdu="BACKGROUND")
    np.testing.assert_allclose(ours, bkg.quantity.to_value(RATE_UNIT), rtol=1e-6)


def test_units_are_converted():
    rate = np.full((3, 2, 2), 5e-6)
    hdu = cta_style_hdu(rate, log_edges(100.0, 1e4, 3), lin_edges(-1, 1, 2),
                        np.radians(lin_edges(-1, 1, 2)), unit="s-1 TeV-1 sr-1",
                        fovalign="RADEC")
    ds = read_bkg_hdu(hdu)
    np.testing.assert_allclose(ds["rate"].values, 5e-12, rtol=1e-6)  # per TeV -> per MeV
    assert ds.attrs["fov_alignment"] == "RADEC"
    hdu.columns["BGD"].unit = "m"
    with pytest.raises(ValueError, match="not convertible"):
        read_bkg_hdu(hdu)


def test_missing_unit_warns():
    hdu = bkg_hdu(make_model("2d"), 0)
    hdu.columns["BKG"].unit = None
    assert "TUNIT5" not in hdu.header
    with pytest.warns(GadfReadWarning, match="no unit"):
        read_bkg_hdu(hdu)


def test_missing_fovalign_default_and_override():
    model = make_model("3d", "RADEC")
    hdu = bkg_hdu(model, 0)
    del hdu.header["FOVALIGN"]
    with pytest.warns(FovAlignmentWarning, match="ALTAZ"):
        ds = read_bkg_hdu(hdu)
    assert ds.attrs["fov_alignment"] == "ALTAZ"
    assert read_bkg_hdu(hdu, fov_alignment="radec").attrs["fov_alignment"] == "RADEC"  # silent
    # the override also wins over a keyword that is present
    assert read_bkg_hdu(bkg_hdu(model, 0), fov_alignment="ALTAZ").attrs["fov_alignment"] == \
        "ALTAZ"
    with pytest.raises(ValueError, match="fov_alignment"):
        read_bkg_hdu(hdu, fov_alignment="GALACTIC")
    hdu.header["FOVALIGN"] = "REVERSE_LON_RADEC"
    with pytest.raises(ValueError, match="REVERSE_LON_RADEC"):
        read_bkg_hdu(hdu)


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_ambiguous_axis_order_warns(kind):
    # nE == ny (3D) or nE == ntheta (2D): the data fits both axis orders
    model = make_model(kind, n_energy=5, nx=8, ny=5, n_offset=5)
    hdu = bkg_hdu(model, 0)
    read_bkg_hdu(hdu)  # written by xbkg: known order, no warning (warnings are errors)
    hdu.header["CREATOR"] = "someone else"
    with pytest.warns(AxisOrderWarning, match="ambiguous"):
        ds = read_bkg_hdu(hdu)
    np.testing.assert_array_equal(ds["rate"].values[0], model["rate"].values[0])


def test_transposed_order_detected_by_shape():
    model = make_model("3d")
    hdu = bkg_hdu(model, 0)
    data = hdu.data["BKG"][0]  # numpy (dety, detx, energy)
    cols = [c for c in hdu.columns if c.name != "BKG"]
    cols.append(fits.Column(name="BKG", format=f"{data.size}D", unit=RATE_UNIT,
                            dim="(5,8,7)", array=data.T[np.newaxis]))  # numpy (E, detx, dety)
    other = fits.BinTableHDU.from_columns(cols, header=hdu.header)
    other.header["CREATOR"] = "H.E.S.S."
    np.testing.assert_array_equal(read_bkg_hdu(other)["rate"].values, model["rate"].values[:1])


def test_not_background_hdus_are_refused(tmp_path):
    events = fits.BinTableHDU.from_columns(
        [fits.Column(name="ENERGY", format="D", array=[1.0])], name="EVENTS")
    aeff = bkg_hdu(make_model("2d"), 0)
    aeff.header["HDUCLAS2"] = "EFF_AREA"
    path = tmp_path / "events.fits"
    fits.HDUList([fits.PrimaryHDU(), events, aeff]).writeto(path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*no background HDU"):
        open_bkg_fits(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}[EVENTS]") + ".*no column BKG"):
        open_bkg_fits(path, hdu="EVENTS")
    with pytest.raises(ValueError, match="HDUCLAS2='EFF_AREA'"):
        open_bkg_fits(path, hdu=2)
    with pytest.raises(ValueError, match="binary table"):
        read_bkg_hdu(fits.ImageHDU(np.zeros((2, 2)), name="IMG"))
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        open_bkg_fits(tmp_path / "nope.fits")


# ------------------------------------------------------------------------------ images


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_image_file_wcs_and_energies(tmp_path, kind):
    from astropy.wcs import WCS

    model = make_model(kind)
    path = write_image_file(model, 1, tmp_path / "img.fits")
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "RATE", "ENERGIES"]
        header, data = hdul["RATE"].header, hdul["RATE"].data.copy()
        energies = hdul["ENERGIES"].data.copy()
    np.testing.assert_array_equal(data, model_cube(model, 1))
    assert header["BUNIT"] == RATE_UNIT and header["ZEN_LO"] == 30.0
    np.testing.assert_array_equal(energies["ENERG_LO"], edges_of(model, "energy")[:-1])
    np.testing.assert_array_equal(energies["ENERG_HI"], edges_of(model, "energy")[1:])
    np.testing.assert_array_equal(energies["CHANNEL"], np.arange(1, 8))
    world = WCS(header).pixel_to_world_values(*np.indices(data.shape)[::-1])  # FITS order
    one = model.sel(zenith_group=1)
    energy_tev = world[-1] / 1.602176634e-7  # WCS gives the ENER-LOG axis in J
    expected = one["energy"].values.reshape((-1,) + (1,) * (data.ndim - 1))
    # 1e-6: wcslib converts TeV to J with an older electronvolt value than astropy's
    np.testing.assert_allclose(energy_tev, np.broadcast_to(expected, data.shape), rtol=1e-6)
    if kind == "3d":
        np.testing.assert_allclose(world[0][0, 0], one["detx"].values)
        np.testing.assert_allclose(world[1][0, :, 0], one["dety"].values)
        assert (header["CTYPE1"], header["CTYPE2"]) == ("DETX", "DETY")
    else:
        np.testing.assert_allclose(world[0][0], one["offset"].values)


def test_image_irregular_axes():
    model = make_model("3d", energy_edges=np.array([0.1, 0.3, 1.0, 10.0, 100.0]))
    hdu = image_hdu(model, 0)
    assert hdu.header["CTYPE3"] == "EBIN" and hdu.header["CRVAL3"] == 1.0
    irregular = make_model("2d")
    bounds = irregular["offset_bounds"].values.copy()
    bounds[0, 1] = bounds[1, 0] = 0.1
    irregular = irregular.assign_coords(offset_bounds=(("offset", "bnds"), bounds))
    with pytest.raises(ValueError, match="uniform THETA bins"):
        image_hdu(irregular, 0)


# --------------------------------------------------------------- bytes and atomicity


def test_deterministic_bytes(tmp_path, monkeypatch):
    import time

    model = make_model("3d")
    for suffix in (".fits", ".fits.gz"):
        a = write_table_file(model, 0, tmp_path / f"a{suffix}")
        monkeypatch.setattr(time, "time", lambda: 2e9)  # a gzip timestamp would now differ
        b = write_table_file(model, 0, tmp_path / f"b{suffix}")
        monkeypatch.undo()
        assert a.read_bytes() == b.read_bytes()
        c = write_image_file(model, 0, tmp_path / f"c{suffix}")
        d = write_image_file(model, 0, tmp_path / f"d{suffix}")
        assert c.read_bytes() == d.read_bytes()
    raw = (tmp_path / "a.fits.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    assert not raw[3] & 0x08  # no file name stored
    assert gzip.decompress(raw) == (tmp_path / "a.fits").read_bytes()


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_file_bytes_equal_astropy_writeto(tmp_path, kind):
    """The module serialises HDUs itself (speed); the bytes must be astropy's."""
    import io

    model = make_model(kind)
    table = write_table_file(model, 1, tmp_path / "t.fits").read_bytes()
    image = write_image_file(model, 1, tmp_path / "i.fits").read_bytes()
    for got, hdus in (
        (table, [bkg_hdu(model, 1), counts_hdu(model, 1), exposure_hdu(model, 1)]),
        (image, [image_hdu(model, 1), gadf._energies_hdu(model)]),
    ):
        buf = io.BytesIO()
        fits.HDUList([gadf._primary_hdu()] + hdus).writeto(buf)
        assert got == buf.getvalue()


def test_atomic_path_cleans_up_on_error(tmp_path):
    target = tmp_path / "out.fits"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            assert tmp.parent != tmp_path and tmp.name == target.name
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(target):
            pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_existing(tmp_path):
    target = tmp_path / "out.fits"
    target.write_text("old")
    with pytest.raises(FileExistsError, match=re.escape(str(target))):
        with atomic_path(target):
            pass
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    # a file appearing while writing is not clobbered either
    other = tmp_path / "race.fits"
    with pytest.raises(FileExistsError, match=re.escape(str(other))):
        with atomic_path(other) as tmp:
            tmp.write_text("mine")
            other.write_text("theirs")
    assert other.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits", "race.fits"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "missing" / "x.fits"):
            pass


def test_writers_refuse_existing(tmp_path):
    model = make_model("2d")
    path = write_table_file(model, 0, tmp_path / "m.fits")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="m.fits"):
        write_table_file(model, 1, path)
    assert path.read_bytes() == before
    write_table_file(model, 1, path, overwrite=True)
    assert open_bkg_fits(path)["zenith_bounds"].values.tolist() == [[30.0, 60.0]]
    with pytest.raises(FileExistsError):
        write_image_file(model, 0, path)
