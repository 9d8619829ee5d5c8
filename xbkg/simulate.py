"""Simulated GADF DL3 stores whose background follows a known model.

The truth (:class:`TruthModel`) is a factorised rate ``norm * Z(z) * (E / 1 TeV)**-index *
T(E, z) * R(lon, lat)`` in s-1 MeV-1 sr-1; :func:`simulate_store` writes a store of off runs
drawn from it (the terms and frames: docs/architecture.rst).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xbkg.core.binning import edges_of, parse_edges
from xbkg.core.numbers import is_number
from xbkg.io.atomic import atomic_dir
from xbkg.io.fitswrite import bintable_bytes, file_bytes
from xbkg.io.gadf import gadf_cards
from xbkg.sky import fov
from xbkg.store.datastore import takes_store

__all__ = [
    "SITES",
    "STYLES",
    "StoreStyle",
    "NOMINAL_ONTIME",
    "TruthModel",
    "turn_on",
    "spectral_shape",
    "spatial_shape",
    "polar_to_fov",
    "subdivide",
    "gauss_legendre",
    "sample_energy",
    "sorted_uniform",
    "sample_fov",
    "plan_runs",
    "ObservingPlan",
    "simulate_store",
    "condition_factors",
    "load_truth",
    "model_truth_counts",
]

#: Observatory sites by name: longitude and latitude (deg), altitude (m).
SITES = {
    "hess": {"geolon": 16.5002222222222, "geolat": -23.2717777777778, "altitude": 1835.0},
    "cta-south": {"geolon": -70.3166666666667, "geolat": -24.6833333333333, "altitude": 2150.0},
    "cta-north": {"geolon": -17.8920302, "geolat": 28.7615653, "altitude": 2200.0},
    "veritas": {"geolon": -110.952, "geolat": 31.675, "altitude": 1268.0},
    "magic": {"geolon": -17.89, "geolat": 28.761944, "altitude": 2231.28},
    "lst": {"geolon": -17.89149701, "geolat": 28.76152611, "altitude": 2200.0},
}


@dataclass(frozen=True)
class StoreStyle:
    """How a simulated store imitates one instrument's DL3 stores (``simulate_store(style=)``).

    Attributes
    ----------
    name : str
    site : str
        Key of :data:`SITES` where the runs are simulated.
    offset_max : float
        Offset (deg) at which the event lists stop.
    obs_columns : tuple of str or None
        Obs-index columns written (None: all of the H.E.S.S. set).
    extra_obs : tuple of str
        Columns added to the obs index (``NSBLEVEL``).
    header_drop : tuple of str
        EVENTS header keywords left out.
    pointing_hdu : bool
        A ``POINTING`` HDU (TIME, RA_PNT, DEC_PNT, ALT_PNT, AZ_PNT) in each event file, with its
        row in the HDU index; ALT_PNT/AZ_PNT are then the run's mid-time pointing.
    fake_site : dict or None
        Site keywords written instead of the real ones (non-physical, as CTA 1DC's).
    mc_id : bool
        An ``MC_ID`` column per event (1: background, 2 + k: source k).
    index_dir : str
        Subfolder of the index files ("" : the store's top folder).
    target_name : str
        TARGET_NAME / OBJECT of the runs.
    """

    name: str
    site: str
    offset_max: float = 4.0
    obs_columns: tuple | None = None
    extra_obs: tuple = ()
    header_drop: tuple = ()
    pointing_hdu: bool = False
    fake_site: dict | None = None
    mc_id: bool = False
    index_dir: str = ""
    target_name: str = "Off data"


#: Store styles by instrument: each reproduces quirks of that instrument's public DL3 stores.
#: ``hess``: H.E.S.S. DR1-like (every column, SAFE_ENERGY_LO). ``magic``: obs index of OBS_ID,
#: RA_PNT, DEC_PNT, TSTART, TSTOP, DEADC only (zenith, ONTIME and target in the EVENTS header).
#: ``veritas``: events stop at 2.0 deg, NSBLEVEL in the obs index, no SAFE_ENERGY_LO.
#: ``lst``: lstchain-like: pointing RA/Dec in neither the obs index nor the EVENTS header, which
#: has ALT_PNT/AZ_PNT (mid-time), and a POINTING HDU. ``cta``: CTA 1DC-like: non-physical site
#: keywords (GEOLON 79.4041, ALTITUDE 2.15, ALT_PNT 90, ZEN_PNT 0), MC_ID per event, index files in
#: ``index/all``.
STYLES = {
    "hess": StoreStyle("hess", "hess"),
    "magic": StoreStyle("magic", "magic", obs_columns=("OBS_ID", "RA_PNT", "DEC_PNT", "TSTART",
                                                       "TSTOP", "DEADC"),
                        target_name="Crab"),
    "veritas": StoreStyle("veritas", "veritas", offset_max=2.0, extra_obs=("NSBLEVEL",),
                          obs_columns=("OBS_ID", "RA_PNT", "DEC_PNT", "ZEN_PNT", "ALT_PNT",
                                       "AZ_PNT", "ONTIME", "LIVETIME", "DEADC", "TSTART",
                                       "TSTOP", "N_TELS", "QUALITY", "EVENT_COUNT", "OBJECT")),
    "lst": StoreStyle("lst", "lst", header_drop=("RA_PNT", "DEC_PNT"), pointing_hdu=True,
                      obs_columns=("OBS_ID", "ZEN_PNT", "ALT_PNT", "AZ_PNT", "ONTIME",
                                   "LIVETIME", "DEADC", "TSTART", "TSTOP", "N_TELS",
                                   "EVENT_COUNT", "OBJECT")),
    "cta": StoreStyle("cta", "cta-south", mc_id=True, index_dir="index/all",
                      fake_site={"geolon": 79.4041, "geolat": -24.6272, "altitude": 2.15},
                      obs_columns=tuple(c for c in ("OBS_ID", "RA_PNT", "DEC_PNT", "GLON_PNT",
                                                    "GLAT_PNT", "ZEN_PNT", "ALT_PNT", "AZ_PNT",
                                                    "ONTIME", "LIVETIME", "DEADC", "TSTART",
                                                    "TSTOP", "N_TELS", "OBJECT",
                                                    "EVENT_COUNT")),
                      target_name="Galactic Plane Survey"),
}

#: Nominal run duration (s); each run's ONTIME is drawn within +-60 s of it.
NOMINAL_ONTIME = 1680.0
_ONTIME_JITTER = 60.0
_RUNS_PER_NIGHT = 6
# MJD reference of the times (2001-01-01 00:00 UTC in TT, as in H.E.S.S. data).
_MJDREFI, _MJDREFF, _TIMESYS = 51910, 0.000742870370370241, "TT"
_CREATOR = "xbkg.simulate"
# energy integration: Gauss-Legendre nodes on log-energy sub-intervals of at most this width
_GL_NODES = 4
_MAX_DLNE = math.log(10.0) / 50.0
# inverse-CDF grid of the energy sampler (points over [e_min, e_max] in log E)
_CDF_POINTS = 4097


# ---------------------------------------------------------------------------------------------
# kernels


def turn_on(energy, threshold, sharpness):
    """Smooth threshold factor ``1 / (1 + (threshold / energy)**sharpness)`` (0.5 at threshold).

    >>> float(turn_on(1.0, 1.0, 6.0))
    0.5
    """
    x = sharpness * (np.log(threshold) - np.log(energy))
    return 1.0 / (1.0 + np.exp(np.minimum(x, 700.0)))


def spectral_shape(energy, *, index, threshold, sharpness, e_min, e_max):
    """``energy**-index * turn_on(energy, threshold, sharpness)``, zero outside ``[e_min, e_max]``.

    ``energy`` in TeV; the value is 1 at 1 TeV without the turn-on.
    """
    energy = np.asarray(energy, dtype=float)
    inside = (energy >= e_min) & (energy <= e_max)
    safe = np.where(inside, energy, 1.0)
    return np.where(inside, safe ** (-index) * turn_on(safe, threshold, sharpness), 0.0)


def spatial_shape(lon, lat, *, sigma, gradient):
    """``exp(-offset**2 / (2 sigma**2)) * max(0, 1 + gradient * lat)``; lon, lat, sigma in deg."""
    offset = fov.offset_deg(lon, lat, 0.0, 0.0)
    linear = np.maximum(1.0 + gradient * np.asarray(lat, dtype=float), 0.0)
    return np.exp(-0.5 * (offset / sigma) ** 2) * linear


def polar_to_fov(offset, bearing):
    """FoV ``(lon, lat)`` (deg) of the point at angular distance ``offset`` (deg) from the centre.

    ``bearing`` (rad) is measured from +lat toward +lon.
    """
    r = np.radians(offset)
    sin_r = np.sin(r)
    lat = np.degrees(np.arcsin(np.clip(sin_r * np.cos(bearing), -1.0, 1.0)))
    lon = np.degrees(np.arctan2(sin_r * np.sin(bearing), np.cos(r)))
    return lon, lat


def subdivide(edges, step: float) -> np.ndarray:
    """Cut each bin into equal parts no wider than ``step``: shape ``(n, m + 1)``.

    ``m`` is the largest number of parts; bins with fewer parts repeat their upper edge
    (zero-width parts, which get zero weight in :func:`gauss_legendre`).

    >>> subdivide([0.0, 1.0, 1.5], 0.5)
    array([[0. , 0.5, 1. ],
           [1. , 1.5, 1.5]])
    """
    edges = np.asarray(edges, dtype=float)
    width = np.diff(edges)
    n_sub = np.maximum(1, np.ceil(width / step - 1e-9)).astype(int)
    frac = np.minimum(np.arange(n_sub.max() + 1)[None, :] / n_sub[:, None], 1.0)
    return edges[:-1, None] + width[:, None] * frac


def gauss_legendre(sub_edges, order: int):
    """Nodes and weights of ``order``-point Gauss-Legendre rules on every part of each bin.

    ``sub_edges`` has shape ``(n, m + 1)`` (see :func:`subdivide`); returns two arrays of shape
    ``(n, m * order)`` whose weights sum to each bin's width.
    """
    x, w = np.polynomial.legendre.leggauss(int(order))
    lo, hi = sub_edges[:, :-1, None], sub_edges[:, 1:, None]
    half = 0.5 * (hi - lo)
    nodes = lo + half * (1.0 + x)
    n = sub_edges.shape[0]
    return nodes.reshape(n, -1), (half * w).reshape(n, -1)


# ---------------------------------------------------------------------------------------------
# the truth


@dataclass(frozen=True)
class TruthModel:
    """A known background rate (s-1 MeV-1 sr-1); see the module docstring for the formula.

    Parameters
    ----------
    norm : float
        Power-law rate at 1 TeV, zenith 0 and the FoV centre, before the threshold turn-on
        (s-1 MeV-1 sr-1). The default gives about 20,000 events in a 28-min run at zenith 0
        within 4 deg.
    index : float
        Spectral index.
    e_threshold : float
        Threshold energy at zenith 0 (TeV), where the turn-on is 0.5; rises with zenith as
        ``e_threshold / cos(z)**threshold_power``.
    threshold_power, threshold_sharpness : float
        Zenith scaling and steepness of the turn-on.
    zenith_norm_slope : float
        Rate factor ``1 + zenith_norm_slope * (1 / cos z - 1)``.
    radial_sigma : float
        Width (deg) of the Gaussian-like radial shape.
    gradient : float
        Linear factor ``1 + gradient * fov_lat`` per deg (clipped at 0): along altitude for
        ``frame="altaz"``, along Dec for ``frame="radec"``.
    frame : {"altaz", "radec"}
        FoV frame of the spatial shape.
    e_min, e_max : float
        Energy range (TeV) outside which the rate is 0 (events are drawn within it).
    """

    # spectrum and its threshold
    norm: float = 3.43e-4
    index: float = 2.7
    e_threshold: float = 0.3
    threshold_power: float = 2.0
    threshold_sharpness: float = 6.0
    # zenith dependence and spatial shape
    zenith_norm_slope: float = 0.2
    radial_sigma: float = 2.0
    gradient: float = 0.0
    frame: str = "altaz"
    # energy range of the events
    e_min: float = 0.05
    e_max: float = 200.0

    def __post_init__(self):
        object.__setattr__(self, "frame", str(self.frame).lower())
        for f in dataclasses.fields(self):
            if f.name != "frame":  # plain floats: hashable, comparable, JSON-serialisable
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        if self.frame not in ("altaz", "radec"):
            raise ValueError(f"TruthModel.frame must be 'altaz' or 'radec', got {self.frame!r}")
        for name in ("norm", "e_threshold", "threshold_sharpness", "radial_sigma", "e_min"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"TruthModel.{name} must be finite and > 0, got {value!r}")
        for name in ("index", "threshold_power", "zenith_norm_slope", "gradient"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"TruthModel.{name} must be finite, got {getattr(self, name)!r}")
        if not self.e_max > self.e_min:
            raise ValueError(f"TruthModel: e_max ({self.e_max}) must exceed e_min ({self.e_min})")

    # -- serialisation
    def to_dict(self) -> dict:
        """Plain dict of the parameters (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TruthModel":
        """Inverse of :meth:`to_dict`; unknown keys raise KeyError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise KeyError(f"TruthModel.from_dict: unknown parameters {unknown}")
        return cls(**data)

    # -- factors
    def threshold(self, zenith):
        """Threshold energy (TeV) at ``zenith`` (deg)."""
        return self.e_threshold / np.cos(np.radians(zenith)) ** self.threshold_power

    def zenith_factor(self, zenith):
        """Rate factor ``1 + zenith_norm_slope * (1 / cos z - 1)``."""
        return 1.0 + self.zenith_norm_slope * (1.0 / np.cos(np.radians(zenith)) - 1.0)

    def spectrum(self, energy, zenith, *, index=None):
        """Rate at the FoV centre (s-1 MeV-1 sr-1) for ``energy`` (TeV) at ``zenith`` (deg)."""
        shape = spectral_shape(
            energy, index=self.index if index is None else index, threshold=self.threshold(zenith),
            sharpness=self.threshold_sharpness, e_min=self.e_min, e_max=self.e_max,
        )
        return self.norm * self.zenith_factor(zenith) * shape

    def spatial(self, lon, lat):
        """Spatial factor (1 at the FoV centre) at FoV ``lon, lat`` (deg) in ``frame``."""
        return spatial_shape(lon, lat, sigma=self.radial_sigma, gradient=self.gradient)

    def rate(self, energy, lon, lat, zenith) -> np.ndarray:
        """Rate (s-1 MeV-1 sr-1) at ``energy`` (TeV), FoV ``lon, lat`` (deg), ``zenith`` (deg).

        Arguments broadcast against each other.

        >>> truth = TruthModel(norm=1e-4, e_threshold=0.01, gradient=0.1)
        >>> round(float(truth.rate(1.0, 0.0, 1.0, 0.0) / truth.rate(1.0, 0.0, -1.0, 0.0)), 4)
        1.2222
        """
        return self.spectrum(energy, zenith) * self.spatial(lon, lat)

    # -- integration
    def energy_integral(self, energy_edges, zenith, *, index=None) -> np.ndarray:
        """``integral spectrum(E) dE`` over each energy bin (s-1 sr-1), numerically in log E."""
        edges = parse_edges(energy_edges, log=True, name="energy_edges")
        ln_edges = np.log(np.clip(edges, self.e_min, self.e_max))
        ln_e, weight = gauss_legendre(subdivide(ln_edges, _MAX_DLNE), _GL_NODES)
        energy = np.exp(ln_e)
        # dE = E dlnE; TeV -> MeV
        return np.sum(self.spectrum(energy, zenith, index=index) * energy * weight, axis=1) * 1e6

    def fov_integral(self, *, offset_edges=None, detx_edges=None, dety_edges=None,
                     oversample: int = 4) -> np.ndarray:
        """``integral spatial dOmega`` (sr) over offset rings ``(O,)`` or FoV boxes ``(Y, X)``.

        Bins are cut into parts no wider than ``min(0.5, radial_sigma / 2)`` deg, each
        integrated with ``oversample`` Gauss-Legendre nodes per axis in variables whose measure
        is exactly the solid angle: ``(lon, sin lat)`` for boxes, ``(1 - cos offset)`` times
        ``max(32, 8 * oversample)`` azimuth sectors (midpoint rule, spectral for periodic
        functions) for rings. The weights add up to each bin's exact solid angle.
        """
        oversample = int(oversample)
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        step = min(0.5, self.radial_sigma / 2.0)
        if offset_edges is not None:
            if detx_edges is not None or dety_edges is not None:
                raise ValueError("give either offset_edges or detx_edges and dety_edges, not both")
            edges = parse_edges(offset_edges, name="offset_edges")
            if edges[0] < 0 or edges[-1] > 180:
                raise ValueError(f"offset_edges must lie within [0, 180] deg, got {edges}")
            one_minus_cos = 1.0 - np.cos(np.radians(subdivide(edges, step)))
            t, w_t = gauss_legendre(one_minus_cos, oversample)  # (O, k)
            n_phi = max(32, 8 * oversample)
            bearing = (np.arange(n_phi) + 0.5) * (2 * np.pi / n_phi)
            lon, lat = polar_to_fov(np.degrees(np.arccos(1.0 - t))[..., None], bearing)
            azimuth_mean = np.mean(self.spatial(lon, lat), axis=2)  # (O, k)
            return 2 * np.pi * np.sum(azimuth_mean * w_t, axis=1)
        if detx_edges is None or dety_edges is None:
            raise ValueError("give offset_edges, or both detx_edges and dety_edges")
        x_edges = parse_edges(detx_edges, name="detx_edges")
        y_edges = parse_edges(dety_edges, name="dety_edges")
        if np.any(np.abs(y_edges) > 90):
            raise ValueError(f"dety_edges must lie within [-90, 90] deg, got {y_edges}")
        lon, w_lon = gauss_legendre(subdivide(x_edges, step), oversample)  # (X, k)
        u, w_u = gauss_legendre(np.sin(np.radians(subdivide(y_edges, step))), oversample)  # (Y, k)
        lat = np.degrees(np.arcsin(u))
        shape = self.spatial(lon[None, None, :, :], lat[:, :, None, None])  # (Y, k, X, k)
        return np.einsum("akbl,ak,bl->ab", shape, w_u, np.radians(w_lon))

    def expected_counts(self, energy_edges, *, offset_edges=None, detx_edges=None,
                        dety_edges=None, zenith, ontime, oversample: int = 4) -> np.ndarray:
        """Expected counts per bin for a run of ``ontime`` (s) at ``zenith`` (deg).

        Energy (TeV) is integrated numerically in log E (4-point Gauss-Legendre on parts of at
        most 0.02 decade), solid angle on a sub-grid whose weights are exact solid angles
        (see :meth:`fov_integral`; ``oversample`` is its order).

        Returns
        -------
        numpy.ndarray
            Shape ``(E, O)`` with ``offset_edges``, ``(E, Y, X)`` with ``detx_edges, dety_edges``.
        """
        spectral = self.energy_integral(energy_edges, zenith)
        spatial = self.fov_integral(offset_edges=offset_edges, detx_edges=detx_edges,
                                    dety_edges=dety_edges, oversample=oversample)
        return float(ontime) * spectral.reshape((-1,) + (1,) * spatial.ndim) * spatial

    def total_counts(self, *, zenith, ontime, offset_max: float) -> float:
        """Expected number of events of a run within ``offset_max`` (deg) over ``[e_min, e_max]``."""
        counts = self.expected_counts([self.e_min, self.e_max], offset_edges=[0.0, offset_max],
                                      zenith=zenith, ontime=ontime)
        return float(counts.sum())


# ---------------------------------------------------------------------------------------------
# sampling


def sample_energy(rng, n: int, truth: TruthModel, zenith: float, *, index=None) -> np.ndarray:
    """``n`` energies (TeV) drawn from ``truth.spectrum(E, zenith)`` by inverse CDF in log E."""
    ln_e = np.linspace(math.log(truth.e_min), math.log(truth.e_max), _CDF_POINTS)
    density = truth.spectrum(np.exp(ln_e), zenith, index=index) * np.exp(ln_e)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
    if not cdf[-1] > 0:
        raise ValueError(f"truth spectrum is zero over [{truth.e_min}, {truth.e_max}] TeV")
    return np.exp(np.interp(rng.random(n) * cdf[-1], cdf, ln_e))


def sorted_uniform(rng, n: int) -> np.ndarray:
    """``n`` sorted uniform draws on [0, 1) in O(n): normalised cumulative sums of exponentials."""
    gaps = np.cumsum(rng.standard_exponential(n + 1))
    return gaps[:-1] / gaps[-1]


def sample_fov(rng, n: int, *, sigma: float, gradient: float, offset_max: float):
    """``n`` FoV positions ``(lon, lat)`` (deg) from :func:`spatial_shape` within ``offset_max``.

    Rejection sampling: a truncated Rayleigh offset and uniform bearing, accepted with
    probability ``sin(r)/r * max(0, 1 + gradient * lat) / (1 + |gradient| * offset_max)``.
    """
    lon, lat = np.empty(n), np.empty(n)
    trunc = -math.expm1(-0.5 * (offset_max / sigma) ** 2)
    bound = 1.0 + abs(gradient) * offset_max
    filled = 0
    while filled < n:
        m = int(1.2 * bound * (n - filled)) + 64
        r = sigma * np.sqrt(-2.0 * np.log1p(-rng.random(m) * trunc))
        lo, la = polar_to_fov(r, rng.uniform(0.0, 2 * np.pi, m))
        accept = np.sinc(np.radians(r) / np.pi) * np.maximum(1.0 + gradient * la, 0.0) / bound
        keep = np.flatnonzero(rng.random(m) < accept)[: n - filled]
        lon[filled:filled + keep.size] = lo[keep]
        lat[filled:filled + keep.size] = la[keep]
        filled += keep.size
    return lon, lat


# ---------------------------------------------------------------------------------------------
# run planning (main process, vectorised)


def _site(site) -> dict:
    if isinstance(site, str):
        try:
            return dict(SITES[site.lower()])
        except KeyError:
            raise ValueError(f"unknown site {site!r}; use one of {sorted(SITES)} or a dict "
                             "with geolon, geolat, altitude") from None
    try:
        return {k: float(site[k]) for k in ("geolon", "geolat", "altitude")}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"site must be a name or a dict with geolon, geolat, altitude: {site!r}") from exc


def _zenith_bounds(zenith_range) -> tuple[float, float]:
    """``zenith_range`` as (lo, hi) floats with 0 <= lo < hi <= 80 deg, else ValueError."""
    try:
        lo, hi = (float(z) for z in zenith_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not 0.0 <= lo < hi <= 80.0:
        raise ValueError(f"zenith_range must satisfy 0 <= lo < hi <= 80 deg, got {zenith_range}")
    return lo, hi


def _time_reference():
    from astropy.time import Time

    return Time(_MJDREFI, _MJDREFF, format="mjd", scale="tt")


def _met_to_time(met):
    from astropy.time import TimeDelta

    return _time_reference() + TimeDelta(np.asarray(met, dtype=float), format="sec")


@contextlib.contextmanager
def _iers_offline():
    """Astropy IERS settings for offline use: bundled tables, warn instead of fail."""
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), \
            iers.conf.set_temp("iers_degraded_accuracy", "warn"):
        yield


def _gmst_deg(met):
    """Greenwich mean sidereal time (deg) at ``met`` (TT s since MJDREF; UT1 ~ TT - 69 s)."""
    jd_ut = 2400000.5 + _MJDREFI + _MJDREFF + (np.asarray(met) - 69.184) / 86400.0
    return np.mod(280.46061837 + 360.98564736629 * (jd_ut - 2451545.0), 360.0)


def _source_pointings(rng, src_ids, sources, zen_target, met_nominal, site):
    """RA/Dec and mid times of runs pointed 0.5-1.5 deg from a source at about ``zen_target``."""
    ra_src = np.array([float(sources[k]["ra"]) for k in src_ids])
    dec_src = np.array([float(sources[k]["dec"]) for k in src_ids])
    dist = rng.uniform(0.5, 1.5, src_ids.size)
    pa = rng.uniform(0.0, 2 * np.pi, src_ids.size)
    ra, dec = fov.fov_to_radec(dist * np.sin(pa), dist * np.cos(pa), ra_src, dec_src)
    phi, d = np.radians(site["geolat"]), np.radians(dec)
    cos_h = (np.cos(np.radians(zen_target)) - np.sin(phi) * np.sin(d)) / (np.cos(phi) * np.cos(d))
    min_zen = np.abs(site["geolat"] - dec)
    if np.any(min_zen > 80):
        bad = sorted({int(k) for k in src_ids[min_zen > 80]})
        raise ValueError(f"sources {bad} never rise above 10 deg altitude at this site")
    hour_angle = np.degrees(np.arccos(np.clip(cos_h, -1.0, 1.0))) * rng.choice([-1.0, 1.0], src_ids.size)
    lst_needed = ra + hour_angle
    lst_now = _gmst_deg(met_nominal) + site["geolon"]
    dlst = np.mod(lst_needed - lst_now + 180.0, 360.0) - 180.0
    return ra, dec, met_nominal + dlst / 360.0 * 86164.0905


def plan_runs(n_runs: int, *, seed=0, zenith_range=(0.0, 60.0), site="hess", sources=(),
              start="2021-01-01", target_name="Off data") -> dict:
    """Pointings and times of ``n_runs`` runs.

    Mean zeniths are stratified over ``zenith_range``, azimuths uniform; runs are placed six a
    night around local midnight, one night after another from ``start``. Alt/Az at each run's
    mid time becomes RA/Dec with astropy (one vectorised call). With ``sources``, every second
    run is pointed 0.5-1.5 deg from a source (cycling through them) and timed by the source's
    hour angle (about the drawn zenith; such runs may fall outside the night).

    Parameters
    ----------
    n_runs, seed, zenith_range, site, sources, start, target_name
        As in :func:`simulate_store`.

    Returns
    -------
    dict
        Obs-index columns as numpy arrays (``OBS_ID`` ... ``OBJECT``, without ``EVENT_COUNT``
        and the safe energies; ``ZEN_PNT, ALT_PNT, AZ_PNT`` are means over the run), plus
        ``source_index`` (source a run is pointed near, or -1), ``site`` (dict) and
        ``altaz_params`` (``(n_runs, fov.ALTAZ_PARAMS_SIZE)``, from :func:`fov.altaz_run_params`)
        and ``alt_mid, az_mid`` (the pointing at each run's mid time, deg).
    """
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    site = _site(site)
    lo, hi = _zenith_bounds(zenith_range)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    n = int(n_runs)
    zen_target = lo + (hi - lo) * (rng.permutation(n) + rng.random(n)) / n
    az = rng.uniform(0.0, 360.0, n)
    ontime = np.round(NOMINAL_ONTIME + rng.uniform(-_ONTIME_JITTER, _ONTIME_JITTER, n))
    night, slot = np.divmod(np.arange(n), _RUNS_PER_NIGHT)
    local_midnight_h = np.mod(24.0 - site["geolon"] / 15.0, 24.0)
    offset_h = local_midnight_h + (slot - (_RUNS_PER_NIGHT - 1) / 2) + rng.uniform(-0.1, 0.1, n)
    with _iers_offline():
        t0 = Time(start, scale="utc")
        met0 = (t0.tt - _time_reference()).to_value(u.s)
        met_mid = met0 + night * 86400.0 + offset_h * 3600.0
        location = EarthLocation.from_geodetic(site["geolon"] * u.deg, site["geolat"] * u.deg,
                                               site["altitude"] * u.m)
        frame = AltAz(obstime=_met_to_time(met_mid), location=location)
        icrs = SkyCoord(az=az * u.deg, alt=(90.0 - zen_target) * u.deg, frame=frame).icrs
        ra, dec = icrs.ra.deg, icrs.dec.deg
    target = np.array([str(target_name)] * n, dtype=object)
    source_index = np.full(n, -1)
    if len(sources):
        pick = np.arange(1, n, 2)
        src_ids = np.arange(pick.size) % len(sources)
        ra[pick], dec[pick], met_mid[pick] = _source_pointings(
            rng, src_ids, sources, zen_target[pick], met_mid[pick], site)
        source_index[pick] = src_ids
        for i, k in zip(pick, src_ids):
            target[i] = str(sources[k].get("name", f"Source {k}"))
    tstart = np.round(met_mid - ontime / 2.0, 3)
    tstop = tstart + ontime
    with _iers_offline():
        gal = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    alt_pnt, az_pnt = np.empty(n), np.empty(n)
    alt_mid, az_mid = np.empty(n), np.empty(n)
    params = np.empty((n, fov.ALTAZ_PARAMS_SIZE))
    for i in range(n):
        with _iers_offline():  # astropy/erfa once per run, inside fov.altaz_run_params
            params[i] = _run_params(ra[i], dec[i], site, tstart[i], tstop[i])
        alt, azi = fov.pointing_altaz(np.linspace(tstart[i], tstop[i], 21), params[i])
        alt_mid[i], az_mid[i] = alt[10], np.mod(azi[10], 360.0)
        alt_pnt[i] = np.mean(alt)
        az_pnt[i] = np.mod(np.degrees(np.arctan2(np.mean(np.sin(np.radians(azi))),
                                                  np.mean(np.cos(np.radians(azi))))), 360.0)
    deadc = np.round(rng.uniform(0.88, 0.94, n), 5)
    return {
        "OBS_ID": np.arange(1, n + 1, dtype=np.int64),
        "RA_PNT": np.mod(ra, 360.0), "DEC_PNT": dec,
        "GLON_PNT": gal.l.deg, "GLAT_PNT": gal.b.deg,
        "ZEN_PNT": 90.0 - alt_pnt, "ALT_PNT": alt_pnt, "AZ_PNT": az_pnt,
        "ONTIME": ontime, "LIVETIME": ontime * deadc, "DEADC": deadc,
        "TSTART": tstart, "TSTOP": tstop,
        "N_TELS": np.full(n, 4, dtype=np.int64), "QUALITY": np.zeros(n, dtype=np.int64),
        "MUONEFF": np.round(rng.uniform(0.75, 0.85, n), 4),
        "TARGET_NAME": target.astype(str), "OBJECT": target.astype(str),
        "alt_mid": alt_mid, "az_mid": az_mid,
        "source_index": source_index, "site": site, "altaz_params": params,
    }


def _run_params(ra, dec, site, tstart, tstop):
    return fov.altaz_run_params(ra, dec, geolon=site["geolon"], geolat=site["geolat"],
                                altitude=site["altitude"], mjdrefi=_MJDREFI, mjdreff=_MJDREFF,
                                timesys=_TIMESYS, tstart=tstart, tstop=tstop)


# ---------------------------------------------------------------------------------------------
# one run: events and its FITS file


def _source_events(rng, task):
    """Extra events of the bright point sources near the run's pointing."""
    truth, run, offset_max = task["truth"], task["run"], task["offset_max"]
    parts, n_expected = [], 0.0
    for k, src in enumerate(task["sources"]):
        sigma = float(src.get("sigma", 0.1))
        sep = fov.offset_deg(src["ra"], src["dec"], run["RA_PNT"], run["DEC_PNT"])
        if sep > offset_max + 5 * sigma:
            continue
        mu = float(src["counts"]) if "counts" in src else float(src["rate_fraction"]) * task["mu"]
        n_expected += mu
        n = rng.poisson(mu)
        energy = sample_energy(rng, n, truth, run["ZEN_PNT"], index=src.get("index", 2.5))
        radius = sigma * np.sqrt(-2.0 * np.log1p(-rng.random(n)))
        ra, dec = fov.fov_to_radec(*polar_to_fov(radius, rng.uniform(0, 2 * np.pi, n)),
                                   src["ra"], src["dec"])
        time = run["TSTART"] + rng.random(n) * run["ONTIME"]
        keep = fov.offset_deg(ra, dec, run["RA_PNT"], run["DEC_PNT"]) <= offset_max
        parts.append((time[keep], ra[keep], dec[keep], energy[keep],
                      np.full(int(keep.sum()), 2 + k, dtype=np.int32)))
    return parts, n_expected


def _simulate_run(task: dict) -> dict:
    """Draw the events of one run and write its file; returns counts for the indexes."""
    truth, run = task["truth"], task["run"]
    rng = np.random.default_rng(task["seed"])
    n = int(rng.poisson(task["mu"]))
    energy = sample_energy(rng, n, truth, run["ZEN_PNT"])
    time = run["TSTART"] + sorted_uniform(rng, n) * run["ONTIME"]
    lon, lat = sample_fov(rng, n, sigma=truth.radial_sigma, gradient=truth.gradient,
                          offset_max=task["offset_max"])
    if truth.frame == "altaz":
        ra, dec = fov.altaz_fov_to_radec(lon, lat, time, task["altaz_params"])
    else:
        ra, dec = fov.fov_to_radec(lon, lat, run["RA_PNT"], run["DEC_PNT"])
    parts = [(time, ra, dec, energy, np.ones(n, dtype=np.int32))]
    n_source_expected = 0.0
    if task["sources"]:
        extra, n_source_expected = _source_events(rng, task)
        parts += extra
    mc_id = parts[0][4]
    if len(parts) > 1:
        time, ra, dec, energy, mc_id = (np.concatenate(c) for c in zip(*parts))
        order = np.argsort(time, kind="stable")
        time, ra, dec, energy, mc_id = (time[order], ra[order], dec[order], energy[order],
                                        mc_id[order])
    columns = {"TIME": time, "RA": ra, "DEC": dec, "ENERGY": energy, "MC_ID": mc_id}
    data = _events_file_bytes(columns, run, task["site"], task["compress"], task["style"])
    path = Path(task["dir"]) / task["file_name"]
    path.write_bytes(data)
    return {"obs_id": int(run["OBS_ID"]), "n_events": int(time.size),
            "n_source_events": int(time.size - n), "expected_source_counts": n_source_expected}


def _time_cards(run=None):
    cards = [("MJDREFI", _MJDREFI, "int part of reference MJD"),
             ("MJDREFF", _MJDREFF, "fractional part of reference MJD"),
             ("TIMESYS", _TIMESYS, "time system"), ("TIMEUNIT", "s", "time unit"),
             ("TIMEREF", "LOCAL", "time reference")]
    if run is not None:
        cards = [("TSTART", float(run["TSTART"]), "start (s since MJDREF)"),
                 ("TSTOP", float(run["TSTOP"]), "stop (s since MJDREF)")] + cards
    return cards


def _site_cards(site):
    return [("GEOLON", site["geolon"], "observatory longitude (deg)"),
            ("GEOLAT", site["geolat"], "observatory latitude (deg)"),
            ("ALTITUDE", site["altitude"], "observatory altitude (m)")]


def _gadf_cards(extname, *classes):
    """EXTNAME, the GADF cards of :func:`xbkg.io.gadf.gadf_cards` and CREATOR."""
    cards = [("EXTNAME", extname, None)]
    cards += [(key, value, None) for key, value in gadf_cards(*classes).items()]
    return cards + [("CREATOR", _CREATOR, "program that wrote this HDU")]


def _events_file_bytes(columns, run, site, compress, style=None):
    style = STYLES["hess"] if style is None else style
    n = columns["TIME"].size
    ev_cols = [("EVENT_ID", "K", "", np.arange(1, n + 1, dtype=np.int64)),
               ("TIME", "D", "s", columns["TIME"]),
               ("RA", "E", "deg", np.mod(columns["RA"], 360.0).astype(np.float32) % np.float32(360)),
               ("DEC", "E", "deg", columns["DEC"].astype(np.float32)),
               ("ENERGY", "E", "TeV", columns["ENERGY"].astype(np.float32))]
    if style.mc_id:
        ev_cols.append(("MC_ID", "J", "", columns["MC_ID"].astype(np.int32)))
    pointing = {k: float(run[k]) for k in ("RA_PNT", "DEC_PNT", "ALT_PNT", "AZ_PNT")}
    if style.pointing_hdu:  # lstchain: the header's Alt/Az is the pointing at the run's middle
        pointing.update(ALT_PNT=float(run["alt_mid"]), AZ_PNT=float(run["az_mid"]))
    if style.fake_site is not None:
        pointing.update(ALT_PNT=90.0, AZ_PNT=0.0)
    run_cards = [("OBS_ID", int(run["OBS_ID"]), "observation number")]
    run_cards += [(k, float(run[k]), None) for k in ("ONTIME", "LIVETIME", "DEADC")]
    run_cards += [(k, v, None) for k, v in pointing.items() if k not in style.header_drop]
    run_cards += [("RADESYS", "ICRS", None), ("EQUINOX", 2000.0, None),
                  ("OBJECT", str(run["OBJECT"]), None), ("N_TELS", int(run["N_TELS"]), None),
                  ("OBS_MODE", "POINTING", None)]
    header_site = site if style.fake_site is None else style.fake_site
    events = bintable_bytes(ev_cols, _gadf_cards("EVENTS", "EVENTS") + run_cards + _time_cards(run)
                            + _site_cards(header_site))
    gti = bintable_bytes([("START", "D", "s", np.array([run["TSTART"]], dtype=float)),
                          ("STOP", "D", "s", np.array([run["TSTOP"]], dtype=float))],
                         _gadf_cards("GTI", "GTI") + _time_cards(run))
    hdus = [events, gti]
    if style.pointing_hdu:
        mid = 0.5 * (float(run["TSTART"]) + float(run["TSTOP"]))
        hdus.append(bintable_bytes(
            [("TIME", "D", "s", np.array([mid]))]
            + [(k, "D", "deg", np.array([run[k] if k in ("RA_PNT", "DEC_PNT") else v]))
               for k, v in pointing.items()],
            _gadf_cards("POINTING", "POINTING") + _time_cards(run) + _site_cards(site)))
    return file_bytes(hdus, compress)


# ---------------------------------------------------------------------------------------------
# the store

_OBS_COLUMNS = [  # name, FITS format, unit
    ("OBS_ID", "K", ""), ("RA_PNT", "D", "deg"), ("DEC_PNT", "D", "deg"),
    ("GLON_PNT", "D", "deg"), ("GLAT_PNT", "D", "deg"), ("ZEN_PNT", "D", "deg"),
    ("ALT_PNT", "D", "deg"), ("AZ_PNT", "D", "deg"), ("ONTIME", "D", "s"),
    ("LIVETIME", "D", "s"), ("DEADC", "D", ""), ("TSTART", "D", "s"), ("TSTOP", "D", "s"),
    ("N_TELS", "K", ""), ("QUALITY", "K", ""), ("MUONEFF", "D", ""), ("EVENT_COUNT", "K", ""),
    ("TARGET_NAME", "A", ""), ("OBJECT", "A", ""), ("SAFE_ENERGY_LO", "D", "TeV"),
    ("SAFE_ENERGY_HI", "D", "TeV"),
]


def _string_format(values) -> str:
    return f"{max([1] + [len(str(v)) for v in values])}A"


def _index_files(runs, file_names, site, style=None):
    style = STYLES["hess"] if style is None else style
    columns = [c for c in _OBS_COLUMNS if style.obs_columns is None or c[0] in style.obs_columns]
    columns += [(name, "D", "") for name in style.extra_obs]
    values = dict(runs)
    if style.fake_site is not None:  # CTA 1DC: every run "at zenith"
        values.update(ZEN_PNT=np.zeros(runs["OBS_ID"].size), ALT_PNT=np.full(runs["OBS_ID"].size, 90.0))
    if style.pointing_hdu:
        values.update(ALT_PNT=runs["alt_mid"], AZ_PNT=runs["az_mid"], ZEN_PNT=90.0 - runs["alt_mid"])
    obs_cols = [(name, _string_format(values[name]) if fmt == "A" else fmt, unit, values[name])
                for name, fmt, unit in columns]
    header_site = site if style.fake_site is None else style.fake_site
    obs = bintable_bytes(obs_cols, _gadf_cards("OBS_INDEX", "INDEX", "OBS") + _time_cards()
                         + _site_cards(header_site))
    n = runs["OBS_ID"].size
    kinds = ["events", "gti"] + (["pointing"] if style.pointing_hdu else [])
    k = len(kinds)
    file_dir = "/".join([".."] * len(Path(style.index_dir).parts) + ["data"])
    hdu_cols = {
        "OBS_ID": np.repeat(runs["OBS_ID"], k),
        "HDU_TYPE": np.tile(kinds, n), "HDU_CLASS": np.tile(kinds, n),
        "FILE_DIR": np.array([file_dir] * (k * n)), "FILE_NAME": np.repeat(file_names, k),
        "HDU_NAME": np.tile([x.upper() for x in kinds], n),
    }
    hdu = bintable_bytes([(key, "K" if key == "OBS_ID" else _string_format(v), "", v)
                          for key, v in hdu_cols.items()], _gadf_cards("HDU_INDEX", "INDEX", "HDU"))
    return file_bytes([obs], True), file_bytes([hdu], True)


def _process_pool(n_jobs: int):
    """A process pool: forked workers (instant start) when the parent runs no other Python
    thread and fork is available, else spawned ones (each imports xbkg, a few seconds)."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    method = "spawn"
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        method = "fork"
    return ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context(method))


def _run_tasks(tasks, n_jobs: int, progress: bool):
    def report(i):
        if progress and (i + 1 == len(tasks) or (i + 1) % max(1, len(tasks) // 20) == 0):
            print(f"xbkg.simulate: {i + 1}/{len(tasks)} runs", file=sys.stderr, flush=True)

    if n_jobs <= 1 or len(tasks) <= 1:
        results = []
        for i, task in enumerate(tasks):
            results.append(_simulate_run(task))
            report(i)
        return results
    chunksize = max(1, len(tasks) // (10 * n_jobs))
    with _process_pool(n_jobs) as pool:
        results = []
        for i, res in enumerate(pool.map(_simulate_run, tasks, chunksize=chunksize)):
            results.append(res)
            report(i)
    return results


def _check_source(k: int, src) -> dict:
    """A source dict with plain (JSON-serialisable) values; ValueError naming what is wrong."""
    src = {key: value.item() if isinstance(value, np.generic) else value
           for key, value in dict(src).items()}
    if "ra" not in src or "dec" not in src or not ("counts" in src or "rate_fraction" in src):
        raise ValueError(f"source {k} needs ra, dec and counts or rate_fraction: {src!r}")
    if not float(src.get("sigma", 0.1)) > 0:
        raise ValueError(f"source {k}: sigma must be > 0, got {src['sigma']!r}")
    if not float(src.get("counts", src.get("rate_fraction"))) >= 0:
        raise ValueError(f"source {k}: counts / rate_fraction must be >= 0: {src!r}")
    return src


@dataclass(frozen=True)
class ObservingPlan:
    """What a simulated store observes and how it is written (:func:`simulate_store`'s ``plan``).

    Each value is checked when the plan is made (a ValueError naming the field).

    Attributes
    ----------
    n_runs : int
        Number of runs (OBS_ID 1..n_runs).
    events_per_run : float
        Used only when :func:`simulate_store` gets no ``truth``: the default :class:`TruthModel`
        gets the ``norm`` for which a run of 1680 s at zenith 0 expects this many events within
        ``offset_max`` (runs at higher zenith expect fewer, as the threshold rises).
    zenith_range : (float, float)
        Range (deg) over which mean run zeniths are spread (stratified), within [0, 80].
    start : str or astropy.time.Time
        UTC date of the first night.
    style : {"hess", "magic", "veritas", "lst", "cta"}
        Which instrument's store quirks to reproduce (:data:`STYLES`); the events are drawn the
        same way whatever the style.
    site : str or dict, optional
        A name from :data:`SITES` or a dict with ``geolon, geolat`` (deg) and ``altitude`` (m);
        default: the style's site.
    offset_max : float, optional
        Events are drawn within this offset (deg) of the pointing (default: the style's, 4.0
        deg, 2.0 for ``veritas``).
    target_name : str, optional
        TARGET_NAME and OBJECT of the off runs (default: the style's, "Off data" for ``hess``).
    compress : bool or int
        Write ``data/obs_NNNNNN.fits.gz`` (deterministic gzip, fastest level; or a gzip level
        1-9) instead of ``.fits``.

    Examples
    --------
    >>> plan = ObservingPlan(n_runs=4, zenith_range=(10, 50), style="veritas")
    >>> plan.resolved().offset_max, plan.resolved().site
    (2.0, 'veritas')
    >>> ObservingPlan(n_runs=0)
    Traceback (most recent call last):
    ...
    ValueError: n_runs must be an integer >= 1, got 0
    """

    n_runs: int = 20
    events_per_run: float = 20000
    zenith_range: tuple = (0.0, 60.0)
    start: object = "2021-01-01"
    style: str = "hess"
    site: object = None
    offset_max: float | None = None
    target_name: str | None = None
    compress: bool | int = False

    def __post_init__(self):
        if not (is_number(self.n_runs, 0) and float(self.n_runs) == int(self.n_runs)):
            raise ValueError(f"n_runs must be an integer >= 1, got {self.n_runs!r}")
        if not is_number(self.events_per_run, 0):
            raise ValueError(f"events_per_run must be > 0, got {self.events_per_run!r}")
        _zenith_bounds(self.zenith_range)
        self._start_time()
        self.store_style()
        if self.site is not None:
            _site(self.site)
        if self.offset_max is not None and not is_number(self.offset_max, 0, 90):
            raise ValueError(f"offset_max must be in (0, 90) deg, got {self.offset_max!r}")
        if not (self.compress is True or self.compress is False or self.compress in range(1, 10)):
            raise ValueError(f"compress must be True, False or a gzip level 1-9, got "
                             f"{self.compress!r}")

    def _start_time(self):
        from astropy.time import Time

        try:
            return Time(self.start, scale="utc")
        except (TypeError, ValueError):
            raise ValueError(f"start must be a UTC date (e.g. '2021-01-01' or an astropy Time), "
                             f"got {self.start!r}") from None

    def store_style(self) -> StoreStyle:
        """The :class:`StoreStyle` of ``style``."""
        try:
            return STYLES[str(self.style).lower()]
        except KeyError:
            raise ValueError(f"unknown style {self.style!r}; use one of {sorted(STYLES)}") from None

    def resolved(self) -> ObservingPlan:
        """This plan with ``site``, ``offset_max`` and ``target_name`` from the style where None."""
        style = self.store_style()
        return dataclasses.replace(
            self, site=style.site if self.site is None else self.site,
            offset_max=style.offset_max if self.offset_max is None else self.offset_max,
            target_name=style.target_name if self.target_name is None else self.target_name)


_PLAN_FIELDS = tuple(f.name for f in dataclasses.fields(ObservingPlan))


def _plan_of(plan, shortcuts: dict) -> ObservingPlan:
    """The plan of a :func:`simulate_store` call: ``plan`` (default: the default plan) with
    the fields given as keywords replaced, as :func:`xbkg.make_model`'s shortcuts do."""
    unknown = [name for name in shortcuts if name not in _PLAN_FIELDS]
    if unknown:
        raise TypeError(f"simulate_store() got an unexpected keyword argument {unknown[0]!r}")
    if plan is None:
        return ObservingPlan(**shortcuts)
    if not isinstance(plan, ObservingPlan):
        raise TypeError(f"plan must be an ObservingPlan, got {type(plan).__name__}")
    return dataclasses.replace(plan, **shortcuts) if shortcuts else plan


def simulate_store(outdir, plan: ObservingPlan | None = None, *,
                   truth: TruthModel | None = None, sources=(),
                   condition_truth: dict | None = None, seed: int = 0, n_jobs: int = 1,
                   overwrite: bool = False, progress: bool = False, **shortcuts) -> Path:
    """Write a GADF DL3 store of off runs whose background follows ``truth``.

    Parameters
    ----------
    outdir : str or Path
        Store directory; written in a temporary sibling directory, then renamed.
    plan : ObservingPlan, optional
        The runs (number, zeniths, dates, site), the instrument style and the file format;
        default: ``ObservingPlan()`` (20 runs of about 20,000 events, zeniths 0-60 deg, in the
        ``hess`` style).
    truth : TruthModel, optional
        The background model; its ``norm`` is used as given (default: :class:`TruthModel`
        normalised by the plan's ``events_per_run``).
    sources : sequence of dict
        Bright point sources added as extra events: keys ``ra, dec`` (deg), ``counts``
        (expected events per run) or ``rate_fraction`` (of the run's expected background),
        optional ``sigma`` (deg, default 0.1), ``index`` (default 2.5), ``name``. Every second
        run is then pointed 0.5-1.5 deg from a source. Source events are not part of the truth.
    condition_truth : dict, optional
        Make each run's level depend on its conditions (:func:`condition_factors`): keys
        ``MUONEFF``, ``N_TELS``, ``zenith``, ``azimuth_cos``, ``azimuth_sin`` (coefficients of
        the terms of :mod:`xbkg.store.conditions`) and ``scatter`` (standard deviation of a per-run
        random ``ln`` level). MUONEFF is then drawn in 0.6-1.0 and N_TELS in {3, 4}. The factor
        of every run is in ``truth.json`` (``condition_factor``, its random part
        ``condition_scatter``) and in its ``expected_counts``.
    seed : int
        Random seed; the same seed gives byte-identical files (whatever ``n_jobs``).
    n_jobs : int
        Processes simulating runs in parallel (spawned pool) when > 1.
    overwrite : bool
        Replace an existing non-empty ``outdir``; otherwise FileExistsError.
    progress : bool
        Print progress to stderr.
    **shortcuts
        The fields of :class:`ObservingPlan` as keywords (with ``plan``: they replace its fields):
        ``n_runs``, ``events_per_run``, ``zenith_range``, ``start``, ``style``, ``site``,
        ``offset_max``, ``target_name``, ``compress``. ``simulate_store(out, n_runs=6,
        style="lst")`` is ``simulate_store(out, ObservingPlan(n_runs=6, style="lst"))``. Any
        other keyword is a TypeError naming it.

    Returns
    -------
    pathlib.Path
        ``outdir``, holding ``obs-index.fits.gz``, ``hdu-index.fits.gz``, ``data/`` and
        ``truth.json``: ``truth`` (:meth:`TruthModel.to_dict`), ``offset_max``, ``seed``,
        ``site``, ``sources`` and ``runs``, one entry per run with ``obs_id``, ``zenith``
        (ZEN_PNT, where the truth is evaluated), ``ontime``, ``expected_counts`` (background
        within ``offset_max``), ``n_events`` (all events written), ``n_source_events``,
        ``expected_source_counts`` (before the ``offset_max`` cut) and ``pointed_near_source``.

    Examples
    --------
    >>> import tempfile, json, pathlib
    >>> out = simulate_store(pathlib.Path(tempfile.mkdtemp()) / "store", n_runs=2,
    ...                      events_per_run=100, seed=1)
    >>> sorted(p.name for p in out.iterdir())
    ['data', 'hdu-index.fits.gz', 'obs-index.fits.gz', 'truth.json']
    >>> runs = json.loads((out / "truth.json").read_text())["runs"]
    >>> [r["obs_id"] for r in runs], all(r["n_events"] > 0 for r in runs)
    ([1, 2], True)
    """
    outdir = Path(outdir).expanduser().absolute()
    plan = _plan_of(plan, shortcuts).resolved()
    style_d = plan.store_style()
    n_runs, offset_max, compress = int(plan.n_runs), float(plan.offset_max), plan.compress
    sources = [_check_source(k, src) for k, src in enumerate(sources)]
    if truth is None:
        base = TruthModel(norm=1.0)
        mu0 = base.total_counts(zenith=0.0, ontime=NOMINAL_ONTIME, offset_max=offset_max)
        truth = dataclasses.replace(base, norm=float(plan.events_per_run) / mu0)
    runs = plan_runs(n_runs, seed=seed, zenith_range=plan.zenith_range, site=plan.site,
                     sources=sources, start=plan.start, target_name=plan.target_name)
    site_d = runs.pop("site")
    near_source = runs.pop("source_index") >= 0
    altaz_params = runs.pop("altaz_params")
    factors, draws = np.ones(n_runs), np.zeros(n_runs)
    if condition_truth is not None:
        factors, draws = condition_factors(runs, condition_truth, seed)
    mu = np.array([truth.total_counts(zenith=z, ontime=t, offset_max=offset_max)
                   for z, t in zip(runs["ZEN_PNT"], runs["ONTIME"])]) * factors
    suffix = ".fits.gz" if compress else ".fits"
    file_names = np.array([f"obs_{i:06d}{suffix}" for i in runs["OBS_ID"]])
    seeds = np.random.SeedSequence(seed).spawn(n_runs + 1)[1:]

    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir()
        tasks = [{"truth": truth, "run": {k: v[i] for k, v in runs.items()}, "seed": seeds[i],
                  "mu": mu[i], "site": site_d, "altaz_params": altaz_params[i], "offset_max": offset_max,
                  "sources": sources, "style": style_d,
                  "compress": compress, "dir": str(tmp / "data"), "file_name": file_names[i]}
                 for i in range(n_runs)]
        results = _run_tasks(tasks, int(n_jobs), progress)
        runs["EVENT_COUNT"] = np.array([r["n_events"] for r in results], dtype=np.int64)
        runs["SAFE_ENERGY_LO"] = np.round(truth.threshold(runs["ZEN_PNT"]), 4)
        runs["SAFE_ENERGY_HI"] = np.full(n_runs, min(100.0, truth.e_max))
        if "NSBLEVEL" in style_d.extra_obs:
            runs["NSBLEVEL"] = np.round(np.random.default_rng([int(seed), 1])
                                        .uniform(3.0, 8.0, n_runs), 3)
        obs_bytes, hdu_bytes = _index_files(runs, file_names, site_d, style_d)
        index_dir = tmp / style_d.index_dir
        index_dir.mkdir(parents=True, exist_ok=True)
        (index_dir / "obs-index.fits.gz").write_bytes(obs_bytes)
        (index_dir / "hdu-index.fits.gz").write_bytes(hdu_bytes)
        record = {"style": style_d.name,
            "truth": truth.to_dict(), "offset_max": offset_max, "seed": int(seed),
            "site": site_d, "sources": sources, "creator": _CREATOR,
            "runs": [{"obs_id": int(r["obs_id"]), "zenith": float(z), "ontime": float(t),
                      "expected_counts": float(m), "n_events": int(r["n_events"]),
                      "pointed_near_source": bool(s),
                      **({} if condition_truth is None else
                         {"condition_factor": float(f), "condition_scatter": float(d)}),
                      "n_source_events": int(r["n_source_events"]),
                      "expected_source_counts": float(r["expected_source_counts"])}
                     for r, z, t, m, s, f, d in zip(results, runs["ZEN_PNT"], runs["ONTIME"],
                                                      mu, near_source, factors, draws)],
        }
        if condition_truth is not None:
            record["condition_truth"] = dict(condition_truth)
        (tmp / "truth.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return outdir


#: Reference values of the simulated conditions: a run there has factor 1 (before scatter).
CONDITION_REFERENCE = {"MUONEFF": 0.8, "N_TELS": 4.0}


def condition_factors(runs: dict, condition_truth: dict, seed) -> np.ndarray:
    """Draw MUONEFF and N_TELS into ``runs`` (obs-index columns); return each run's factor and
    its random part (``scatter * N(0, 1)``, the ``ln`` level no condition explains).

    ``factor = exp(a ln(MUONEFF / 0.8) + b ln(N_TELS / 4) + c ln cos z + d cos az + e sin az
    + scatter * N(0, 1))`` with the coefficients of ``condition_truth`` (missing: 0). Its own
    random stream (from ``seed``), so stores without conditions are unchanged.
    """
    known = {"MUONEFF", "N_TELS", "zenith", "azimuth_cos", "azimuth_sin", "scatter"}
    unknown = sorted(set(condition_truth) - known)
    if unknown:
        raise ValueError(f"condition_truth: unknown keys {unknown}; known: {sorted(known)}")
    c = {k: float(condition_truth.get(k, 0.0)) for k in known}
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 19]))
    n = runs["OBS_ID"].size
    runs["MUONEFF"] = np.round(rng.uniform(0.6, 1.0, n), 4)
    runs["N_TELS"] = rng.choice(np.array([3, 4], dtype=np.int64), n, p=[0.3, 0.7])
    az = np.radians(runs["AZ_PNT"])
    ln_factor = (c["MUONEFF"] * np.log(runs["MUONEFF"] / CONDITION_REFERENCE["MUONEFF"])
                 + c["N_TELS"] * np.log(runs["N_TELS"] / CONDITION_REFERENCE["N_TELS"])
                 + c["zenith"] * np.log(np.cos(np.radians(runs["ZEN_PNT"])))
                 + c["azimuth_cos"] * np.cos(az) + c["azimuth_sin"] * np.sin(az))
    draws = c["scatter"] * rng.standard_normal(n)
    return np.exp(ln_factor + draws), draws


@takes_store("store_dir", directory=True)
def load_truth(store_dir) -> tuple[TruthModel, dict]:
    """The :class:`TruthModel` of a simulated store and its ``truth.json`` record."""
    record = json.loads((Path(store_dir) / "truth.json").read_text())
    return TruthModel.from_dict(record["truth"]), record


@takes_store("store_dir", directory=True)
def model_truth_counts(store_dir, model) -> np.ndarray:
    """Expected counts in every bin of ``model`` from the truth of the simulated store.

    Sums :meth:`TruthModel.expected_counts` over the model's runs (``obs_id``, ``obs_group``),
    in the model's binning. Exact for bins inside the model's offset cut and without energy
    thresholds; bins crossing the cut hold fewer counts than this.
    """

    truth, record = load_truth(store_dir)
    runs = {int(r["obs_id"]): r for r in record["runs"]}
    energy = edges_of(model, "energy")
    if model.attrs["kind"] == "2d":
        bins = {"offset_edges": edges_of(model, "offset")}
    else:
        bins = {"detx_edges": edges_of(model, "detx"), "dety_edges": edges_of(model, "dety")}
    expected = np.zeros(model["counts"].shape)
    for obs_id, group in zip(model["obs_id"].values, model["obs_group"].values):
        run = runs[int(obs_id)]
        expected[int(group)] += truth.expected_counts(energy, zenith=run["zenith"],
                                                      ontime=run["ontime"], **bins) \
            * run.get("condition_factor", 1.0)
    return expected
