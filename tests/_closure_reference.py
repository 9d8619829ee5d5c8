"""Expected counts of simulated stores computed without xbkg's exposure or FoV code.

The truth (the simulator's ``truth.json``) is integrated over each model bin ∩ offset cut ∩
outside the exclusion circles on a dense FoV grid (cells of exact solid angle, uniform in
longitude and in sin(latitude) within each bin), time-averaged over each run for an ALTAZ
frame (uniform time samples); the circles are taken to the FoV frame with astropy
(``SkyOffsetFrame`` around the EVENTS header pointing, in ICRS or in ``AltAz`` without
refraction), with the gammapy sign convention (FoV lon = minus the offset frame's lon).
"""

import json
from pathlib import Path

import numpy as np
from astropy.io import fits

from xbkg.simulate import TruthModel


def _grid(edges, n):
    """Cell centres (lon, lat in deg, 1D each) and areas (sr, 2D) of an n x n grid per bin."""
    k = (np.arange(n) + 0.5) / n
    lon = (edges[:-1, None] + np.diff(edges)[:, None] * k).ravel()
    s = np.sin(np.radians(edges))
    s_lo = (s[:-1, None] + np.diff(s)[:, None] * np.arange(n) / n).ravel()
    s_hi = (s[:-1, None] + np.diff(s)[:, None] * np.arange(1, n + 1) / n).ravel()
    lat = np.degrees(np.arcsin(0.5 * (s_lo + s_hi)))
    dlon = np.radians(np.repeat(np.diff(edges) / n, n))
    return lon, lat, (s_hi - s_lo)[:, None] * dlon[None, :]


def _unit(lon, lat):
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack(np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                                        np.sin(lat)), axis=-1)


def _circle_fov(header, circles, frame, times):
    """FoV (lon, lat) deg of the circle centres ``(T, R)`` at ``times`` (s, as TSTART)."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, SkyOffsetFrame
    from astropy.time import Time

    pnt = SkyCoord(header["RA_PNT"] * u.deg, header["DEC_PNT"] * u.deg)
    src = SkyCoord(np.asarray(circles["ra"]) * u.deg, np.asarray(circles["dec"]) * u.deg)
    if frame == "radec":
        off = src.transform_to(SkyOffsetFrame(origin=pnt))
        return -off.lon.wrap_at(180 * u.deg).deg[None, :], off.lat.deg[None, :]
    site = EarthLocation.from_geodetic(header["GEOLON"] * u.deg, header["GEOLAT"] * u.deg,
                                       header["ALTITUDE"] * u.m)
    t = Time(header["MJDREFI"] + header["MJDREFF"], format="mjd",
             scale=header.get("TIMESYS", "TT").lower()) + np.asarray(times) * u.s
    altaz = AltAz(obstime=t[:, None], location=site, pressure=0 * u.hPa)
    p = pnt.transform_to(AltAz(obstime=t, location=site, pressure=0 * u.hPa))
    s = src[None, :].transform_to(altaz)
    off = s.transform_to(SkyOffsetFrame(origin=p[:, None]))
    return -off.lon.wrap_at(180 * u.deg).deg, off.lat.deg


def expected_counts(store_dir, model, *, f_edges, offset_edges, offset_max, circles=None,
                    n_cells=100, n_times=48):
    """Expected counts and exposure (s MeV sr) of ``model``'s runs (one zenith group), 3D on
    ``f_edges`` ((E, ny, nx)) and 2D on ``offset_edges`` ((E, n_offset)), from the truth."""
    store_dir = Path(store_dir)
    data = json.loads((store_dir / "truth.json").read_text())
    truth = TruthModel.from_dict(data["truth"])
    lon, lat, area = _grid(np.asarray(f_edges, float), n_cells)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    xyz = _unit(lon2, lat2)
    offset = np.degrees(np.arccos(np.clip(xyz[..., 0], -1, 1)))
    weight = np.where(offset <= offset_max, area, 0.0)
    spatial = truth.spatial(lon2, lat2)
    nb = len(f_edges) - 1
    row = np.repeat(np.arange(nb), n_cells)
    box = (row[:, None] * nb + row[None, :]).ravel()
    ring = np.digitize(offset, offset_edges).ravel() - 1
    ring_ok = (ring >= 0) & (ring < len(offset_edges) - 1)
    index = fits.getdata(next(store_dir.glob("obs-index.fits*")), 1)
    zenith = dict(zip(index["OBS_ID"].tolist(), index["ZEN_PNT"].tolist()))
    energy_edges = np.asarray(model["energy_bounds"].values[:, 0].tolist()
                              + [model["energy_bounds"].values[-1, 1]])
    de = np.diff(energy_edges) * 1e6
    out = {k: np.zeros((2, energy_edges.size - 1, n)) for k, n in
           (("3d", nb * nb), ("2d", len(offset_edges) - 1))}
    hdu_index = fits.getdata(next(store_dir.glob("hdu-index.fits*")), 1)
    files = {(int(o), t.strip()): Path(d.strip()) / f.strip() for o, t, d, f in zip(
        hdu_index["OBS_ID"], hdu_index["HDU_TYPE"], hdu_index["FILE_DIR"], hdu_index["FILE_NAME"])}
    for obs_id in model.obs_id.values.tolist():
        header = fits.getheader(store_dir / files[(obs_id, "events")], "EVENTS")
        ontime = float(header["ONTIME"])
        outside = np.ones(weight.shape)
        if circles is not None:
            times = header["TSTART"] + (np.arange(n_times) + 0.5) / n_times * (
                header["TSTOP"] - header["TSTART"])
            c_lon, c_lat = _circle_fov(header, circles, truth.frame, times)
            inside_time = np.zeros(weight.shape)
            for t in range(c_lon.shape[0]):
                inside = np.zeros(weight.shape, bool)
                for k, radius in enumerate(circles["radius"]):
                    # only the grid rows and columns the circle can reach
                    i0, i1 = np.searchsorted(lat, [c_lat[t, k] - radius, c_lat[t, k] + radius])
                    half = radius / max(np.cos(np.radians(abs(c_lat[t, k]) + radius)), 1e-3)
                    j0, j1 = np.searchsorted(lon, [c_lon[t, k] - half, c_lon[t, k] + half])
                    c = _unit(c_lon[t, k], c_lat[t, k])
                    sub = xyz[i0:i1, j0:j1] @ c
                    inside[i0:i1, j0:j1] |= sub >= np.cos(np.radians(radius))
                inside_time += inside
            outside = 1.0 - inside_time / c_lon.shape[0]
        w = (weight * outside).ravel()
        spectral = truth.energy_integral(energy_edges, zenith[obs_id])
        for key, idx, ok in (("3d", box, np.ones(box.size, bool)), ("2d", ring, ring_ok)):
            n = out[key].shape[2]
            sp = np.bincount(idx[ok], (w * spatial.ravel())[ok], minlength=n)
            sa = np.bincount(idx[ok], w[ok], minlength=n)
            out[key][0] += ontime * spectral[:, None] * sp[None, :]
            out[key][1] += ontime * de[:, None] * sa[None, :]
    out["3d"] = out["3d"].reshape(2, energy_edges.size - 1, nb, nb)
    return out


def chi2_ndf(model, reference, min_expected=25):
    """chi2/ndf of the model's counts against (truth rate over the exposed part) x the
    model's exposure: tests counts and exposure together."""
    counts, exposure = model["counts"].values[0], model["exposure"].values[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = reference[0] / reference[1] * exposure
    sel = np.isfinite(expected) & (expected >= min_expected)
    pulls = (counts[sel] - expected[sel]) / np.sqrt(expected[sel])
    return float(np.mean(pulls**2)), int(sel.sum())


def chi2_ndf_partial(model, reference, full_exposure, min_expected=25):
    """:func:`chi2_ndf` over the FoV bins only partly exposed (crossing the offset cut or
    touched by a circle: reference exposure below ``full_exposure``), energies summed: the
    bins where the exposure is not a plain product, with the most counts each."""
    counts, exposure = model["counts"].values[0], model["exposure"].values[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = reference[0] / reference[1] * exposure
    partial = (reference[1] < full_exposure * (1 - 1e-3)) & (reference[1] > 0)
    partial = partial.all(axis=0)
    c, e = counts.sum(axis=0)[partial], np.nansum(expected, axis=0)[partial]
    sel = e >= min_expected
    pulls = (c[sel] - e[sel]) / np.sqrt(e[sel])
    return float(np.mean(pulls**2)), int(sel.sum())


def exposure_error(model, reference, min_expected=25):
    """Largest ``|model exposure / reference exposure - 1|`` over the bins with at least
    ``min_expected`` expected counts (no Poisson noise: the exposure itself)."""
    exposure = model["exposure"].values[0]
    sel = reference[0] >= min_expected
    return float(np.max(np.abs(exposure[sel] / reference[1][sel] - 1)))
