"""Exclusion regions: sky circles whose events are dropped and whose solid angle is not exposed.

A run near excluded regions (known gamma-ray sources) still contributes to a background model:

1. events inside any region are dropped (:func:`inside_circles`, :func:`drop_excluded_events`);
2. each FoV bin's exposure is multiplied by the fraction of its solid angle outside the regions,
   averaged over the run's time in the model's FoV frame (:func:`run_exclusion_fraction`).

Fractions are computed on a sub-grid of each bin (``oversample`` x ``oversample`` cells of exact
solid angle for FoV boxes, rings of equal width cut into azimuth sectors of about the same
size for offset annuli) that is the same for every run and built once per binning. Cells count
as inside the offset cut, or inside a region, by their centre. A region is tested in the FoV
frame, where distances are those on the sky: its centre is taken to FoV coordinates and a cell
is inside when its angular distance to that centre is below the radius.

In a RADEC frame (and for offset annuli, which do not depend on the frame) the regions are
fixed in the FoV. In an ALTAZ frame they turn about the FoV centre as the sky rotates, at
``omega = Omega_earth cos(lat) cos(az) / cos(alt)``; the run is cut into time intervals over
which the farthest point of any region moves by at most ``max_step`` (default: one sub-grid
cell, 1/oversample of a bin), with more intervals where the field turns faster, and the
fractions of the interval mid-times are averaged with the intervals' durations as weights. Time
runs over the run's good time intervals (GTI) when given, else from TSTART to TSTOP.

Regions travel to the per-run tasks as plain dicts (:meth:`SkyCircles.to_dict`), attached to
the run parameters at graph-build time by :func:`attach_exclusions` for the runs they can reach;
nothing is computed before the model is. Closure on simulated stores with bright sources in
overlapping and FoV-edge circles is in ``tests/test_exclusion_closure.py``; the cost in
``benchmarks/bench_exclusion.py`` (a few ms per run with regions in reach).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import fov

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "EXCLUSION_MODES",
    "OMEGA_EARTH",
    "SkyCircles",
    "as_circles",
    "plan_exclusion",
    "exclusion_provenance",
    "attach_plan",
    "edge_distance",
    "inside_circles",
    "drop_excluded_events",
    "attach_exclusions",
    "box_subgrid",
    "ring_subgrid",
    "outside_fraction",
    "rotation_rate",
    "time_samples",
    "run_exclusion_fraction",
    "apply_exclusion",
]

log = logging.getLogger(__name__)

#: Sub-grid cells per bin along each axis (boxes) or rings per annulus (2D).
DEFAULT_OVERSAMPLE = 8
#: ``regions``: drop events in the regions and correct the exposure; ``runs``: drop whole runs.
EXCLUSION_MODES = ("regions", "runs")
#: Earth's sidereal rotation rate, rad/s.
OMEGA_EARTH = 7.292115e-5
_MAX_TIME_SAMPLES = 4096
_TIME_CHUNK = 16  # time samples handled together (a short stretch of each region's path)


@dataclass(frozen=True, eq=False)
class SkyCircles:
    """Circles on the sky (ICRS, deg): centres ``ra, dec`` and ``radius``, with ``names``.

    Parameters
    ----------
    ra, dec : array_like
        Centres, deg (ra wrapped into [0, 360)).
    radius : array_like
        Radii, deg, in (0, 90).
    names : sequence of str, optional
        One per circle (default: ``"region 0"``, ``"region 1"``...).

    Examples
    --------
    >>> c = SkyCircles([83.63, 228.5], [22.01, -59.2], [0.3, 0.4], ["Crab", "MSH 15-52"])
    >>> len(c), c.names[1], float(c.radius[0])
    (2, 'MSH 15-52', 0.3)
    """

    ra: np.ndarray
    dec: np.ndarray
    radius: np.ndarray
    names: tuple = ()

    def __post_init__(self):
        values = {}
        for name in ("ra", "dec", "radius"):
            arr = np.atleast_1d(np.asarray(getattr(self, name), dtype=float)).ravel()
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"exclusion regions: {name} must be finite, got {arr.tolist()}")
            values[name] = arr
        if not values["ra"].size == values["dec"].size == values["radius"].size:
            raise ValueError("exclusion regions: ra, dec and radius must have the same length, got "
                             f"{values['ra'].size}, {values['dec'].size}, {values['radius'].size}")
        if np.any(np.abs(values["dec"]) > 90):
            raise ValueError(f"exclusion regions: dec must be within [-90, 90] deg, got "
                             f"{values['dec'].tolist()}")
        if np.any(~(values["radius"] > 0)) or np.any(values["radius"] >= 90):
            raise ValueError(f"exclusion regions: radius must be in (0, 90) deg, got "
                             f"{values['radius'].tolist()}")
        names = tuple(str(n) for n in self.names) if len(self.names) else tuple(
            f"region {i}" for i in range(values["ra"].size))
        if len(names) != values["ra"].size:
            raise ValueError(f"exclusion regions: {len(names)} names for {values['ra'].size} regions")
        values["ra"] = np.mod(values["ra"], 360.0)
        for name, arr in values.items():
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return int(self.ra.size)

    def subset(self, index) -> "SkyCircles":
        """The circles selected by an index array or boolean mask."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, int)
        return SkyCircles(self.ra[index], self.dec[index], self.radius[index],
                          tuple(self.names[i] for i in index))

    def to_dict(self) -> dict:
        """Plain lists ``{"ra", "dec", "radius", "names"}`` (picklable, JSON-serialisable)."""
        return {"ra": self.ra.tolist(), "dec": self.dec.tolist(), "radius": self.radius.tolist(),
                "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict) -> "SkyCircles":
        """Inverse of :meth:`to_dict` (``names`` optional)."""
        try:
            return cls(data["ra"], data["dec"], data["radius"], tuple(data.get("names", ())))
        except KeyError as exc:
            raise ValueError(f"exclusion region dict needs ra, dec and radius: {data!r}") from exc

    @classmethod
    def concatenate(cls, parts) -> "SkyCircles":
        """One :class:`SkyCircles` holding the circles of all ``parts``."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0))
        return cls(np.concatenate([p.ra for p in parts]), np.concatenate([p.dec for p in parts]),
                   np.concatenate([p.radius for p in parts]),
                   tuple(n for p in parts for n in p.names))


def as_circles(regions) -> SkyCircles:
    """Exclusion regions from a :class:`SkyCircles`, a file, a dict or a sequence of those.

    Files are region tables (FITS, ECSV, CSV with RA, DEC, Radius) or DS9 region files, read by
    :func:`xbkg.io.regions.read_exclusion_regions`; dicts have ``ra, dec, radius`` (deg) and
    optionally ``name``/``names``.
    """
    if isinstance(regions, SkyCircles):
        return regions
    if isinstance(regions, (str, Path)):
        from .io.regions import read_exclusion_regions

        return read_exclusion_regions(regions)
    if isinstance(regions, dict):
        data = dict(regions)
        if "name" in data and "names" not in data:
            data["names"] = np.atleast_1d(data.pop("name")).tolist()
        return SkyCircles.from_dict(data)
    try:
        parts = list(regions)
    except TypeError:
        raise ValueError(f"exclusion regions must be SkyCircles, a file, a dict or a list of "
                         f"those, got {type(regions).__name__}") from None
    return SkyCircles.concatenate(as_circles(p) for p in parts)


def plan_exclusion(regions, mode: str = "regions", distance=None, *, reach: float,
                   oversample: int = DEFAULT_OVERSAMPLE) -> dict:
    """Checked exclusion options of a model build.

    Parameters
    ----------
    regions : SkyCircles, file, dict, sequence of those, or None
        See :func:`as_circles`; None or an empty list: no exclusion.
    mode : {"regions", "runs"}
        ``regions``: drop events in the regions and correct each run's exposure; ``runs``: drop
        whole runs pointed within ``distance`` of a region's edge (the seed's behaviour).
    distance : float, optional
        For ``runs``: deg from a region's edge (default: ``reach``, i.e. any region that
        overlaps the FoV within the offset cut drops the run).
    reach : float
        The model's offset cut (deg).
    oversample : int
        Sub-grid cells per bin and axis for the exposure fractions.

    Returns
    -------
    dict
        ``circles`` (SkyCircles or None), ``mode``, ``distance``, ``oversample``, and
        ``select``: keyword arguments for :func:`xbkg.selection.select_runs`.
    """
    if mode not in EXCLUSION_MODES:
        raise ValueError(f"exclusion_mode must be one of {EXCLUSION_MODES}, got {mode!r}")
    oversample = int(oversample)
    if oversample < 1:
        raise ValueError(f"exclusion oversample must be >= 1, got {oversample}")
    distance = float(reach if distance is None else distance)
    if not distance >= 0:
        raise ValueError(f"exclusion distance must be >= 0 deg, got {distance}")
    circles = None if regions is None else as_circles(regions)
    if circles is not None and not len(circles):
        circles = None
    select = {"exclude_near": circles, "exclusion_distance": distance} if (
        circles is not None and mode == "runs") else {}
    return {"circles": circles, "mode": mode, "distance": distance, "oversample": oversample,
            "select": select}


def exclusion_provenance(plan: dict, n_runs: int = 0) -> dict:
    """JSON-serialisable record of :func:`plan_exclusion` options and of the runs they touched."""
    if plan["circles"] is None:
        return {"mode": "none"}
    out = {"mode": plan["mode"], "regions": plan["circles"].to_dict()}
    if plan["mode"] == "runs":
        out["distance_deg"] = plan["distance"]
    else:
        out.update(oversample=plan["oversample"], n_runs_with_regions=int(n_runs))
    return out


def attach_plan(runs: list[dict], plan: dict, reach: float) -> int:
    """:func:`attach_exclusions` for a :func:`plan_exclusion` in ``regions`` mode (else 0)."""
    if plan["circles"] is None or plan["mode"] != "regions":
        return 0
    return attach_exclusions(runs, plan["circles"], reach, oversample=plan["oversample"])


# --------------------------------------------------------------------------------------------
# events and runs on the sky


def edge_distance(ra, dec, circles: SkyCircles) -> np.ndarray:
    """Angular distance (deg) from points to each circle's edge, negative inside: ``(n, m)``."""
    ra = np.atleast_1d(np.asarray(ra, dtype=float))
    dec = np.atleast_1d(np.asarray(dec, dtype=float))
    if not len(circles):
        return np.zeros((ra.size, 0))
    sep = fov.offset_deg(ra[:, None], dec[:, None], circles.ra[None, :], circles.dec[None, :])
    return sep - circles.radius[None, :]


def inside_circles(ra, dec, c_ra, c_dec, c_radius) -> np.ndarray:
    """True for points (deg) within ``c_radius`` of any circle centre ``c_ra, c_dec`` (deg).

    >>> inside_circles([0.0, 0.0, 10.0], [0.0, 0.45, 0.0], [0.0], [0.0], [0.5]).tolist()
    [True, True, False]
    """
    ra, dec = np.broadcast_arrays(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
    shape = ra.shape
    ra, dec = ra.ravel(), dec.ravel()
    inside = np.zeros(ra.size, dtype=bool)
    for r, d, rad in zip(np.atleast_1d(c_ra), np.atleast_1d(c_dec), np.atleast_1d(c_radius)):
        r, d, rad = float(r), float(d), float(rad)
        # only points in the circle's bounding box need the exact separation
        near = np.flatnonzero(np.abs(dec - d) < rad)
        if near.size and abs(d) + rad < 89.0:
            half_width = math.degrees(math.asin(math.sin(math.radians(rad))
                                                / math.cos(math.radians(d))))
            dra = np.abs(np.mod(ra[near] - r + 180.0, 360.0) - 180.0)
            near = near[dra < half_width * (1 + 1e-9)]
        if near.size:
            inside[near] |= fov.offset_deg(ra[near], dec[near], r, d) < rad
    return inside.reshape(shape)


def drop_excluded_events(columns: dict, regions: dict) -> dict:
    """Event columns without the events inside ``regions`` (a :meth:`SkyCircles.to_dict`)."""
    inside = inside_circles(columns["RA"], columns["DEC"], regions["ra"], regions["dec"],
                            regions["radius"])
    if not inside.any():
        return columns
    keep = ~inside
    return {name: values[keep] for name, values in columns.items()}


def attach_exclusions(runs: list[dict], circles: SkyCircles, reach: float, *,
                      oversample: int = DEFAULT_OVERSAMPLE, max_step=None) -> int:
    """Give every run the regions it can see: ``run["exclusion"]``, in place.

    A region is relevant to a run when its edge is closer than ``reach`` (deg, the model's
    offset cut) to the pointing (``run["ra_pnt"], run["dec_pnt"]``). Runs without relevant
    regions are left unchanged. ``oversample`` and ``max_step`` (deg, None: one sub-grid
    cell) travel with the regions to :func:`run_exclusion_fraction`.

    Returns
    -------
    int
        Number of runs that got regions.
    """
    oversample = int(oversample)
    if oversample < 1:
        raise ValueError(f"exclusion oversample must be >= 1, got {oversample}")
    if max_step is not None and not float(max_step) > 0:
        raise ValueError(f"exclusion max_step must be > 0 deg, got {max_step}")
    if not runs or not len(circles):
        return 0
    near = edge_distance([r["ra_pnt"] for r in runs], [r["dec_pnt"] for r in runs], circles) < reach
    n = 0
    for info, row in zip(runs, near):
        if row.any():
            info["exclusion"] = dict(circles.subset(row).to_dict(), oversample=oversample,
                                     max_step=None if max_step is None else float(max_step))
            n += 1
    return n


# --------------------------------------------------------------------------------------------
# sub-grids (FoV frame, deg): points, unit vectors, weights (sr) and bin of each cell


def _unit_vectors(lon, lat) -> np.ndarray:
    """Unit vectors ``(n, 3)`` of FoV coordinates: x toward the FoV centre, z toward +lat."""
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _polar(xyz: np.ndarray):
    """Offset (rad) and bearing (rad, from +lat toward +lon) of unit vectors ``(..., 3)``."""
    rho = np.arctan2(np.hypot(xyz[..., 1], xyz[..., 2]), xyz[..., 0])
    return rho, np.arctan2(xyz[..., 1], xyz[..., 2])


def box_subgrid(detx_edges, dety_edges, offset_max: float, oversample: int) -> dict:
    """Sub-grid of FoV boxes: ``oversample`` x ``oversample`` cells of exact solid angle per bin.

    Returns
    -------
    dict
        ``xyz`` (n, 3) unit vectors of the cell centres, ``weight`` (n,) solid angles (sr; cells
        whose centre is beyond ``offset_max`` are left out), ``bin`` (n,) flat index into the
        ``(ny, nx)`` bins, ``shape`` ``(ny, nx)`` and ``cell`` (deg, the smallest cell side).
    """
    x = np.asarray(detx_edges, dtype=float)
    y = np.asarray(dety_edges, dtype=float)
    frac = np.arange(oversample + 1) / oversample
    xs = (x[:-1, None] + np.diff(x)[:, None] * frac).reshape(-1, oversample + 1)
    ys = (y[:-1, None] + np.diff(y)[:, None] * frac).reshape(-1, oversample + 1)
    xc = 0.5 * (xs[:, 1:] + xs[:, :-1])  # (nx, k)
    yc = 0.5 * (ys[:, 1:] + ys[:, :-1])  # (ny, k)
    wx = np.radians(np.diff(xs, axis=1))
    wy = np.diff(np.sin(np.radians(ys)), axis=1)
    ny, nx = yc.shape[0], xc.shape[0]
    # (ny, k, nx, k) cells
    lon = np.broadcast_to(xc[None, None, :, :], (ny, oversample, nx, oversample)).ravel()
    lat = np.broadcast_to(yc[:, :, None, None], (ny, oversample, nx, oversample)).ravel()
    weight = (wy[:, :, None, None] * wx[None, None, :, :]).ravel()
    bins = (np.arange(ny)[:, None, None, None] * nx
            + np.arange(nx)[None, None, :, None]) + np.zeros((1, oversample, 1, oversample), int)
    xyz = _unit_vectors(lon, lat)
    keep = xyz[:, 0] >= math.cos(math.radians(offset_max)) if np.isfinite(offset_max) else \
        np.ones(lon.size, bool)
    cell = float(min(np.diff(x).min(), np.diff(y).min()) / oversample)
    return {"xyz": xyz[keep], "weight": weight[keep], "bin": bins.ravel()[keep],
            "shape": (ny, nx), "cell": cell}


def ring_subgrid(offset_edges, offset_max: float, oversample: int) -> dict:
    """Sub-grid of offset annuli: ``oversample`` rings of equal width per annulus (clipped at
    ``offset_max``), each cut into equal azimuth sectors about as long as the rings are wide.

    Returns the same dict as :func:`box_subgrid`, with ``shape`` ``(n_offset,)``; the weights of
    an annulus add up to its exact solid angle ``2 pi (cos t1 - cos t2)``.
    """
    edges = np.minimum(np.asarray(offset_edges, dtype=float), offset_max)
    frac = np.arange(oversample + 1) / oversample
    sub = edges[:-1, None] + np.diff(edges)[:, None] * frac  # (n, k + 1)
    widths = np.diff(sub, axis=1)
    step = float(np.diff(np.asarray(offset_edges, dtype=float)).min() / oversample)
    xyz, weight, bins = [], [], []
    for i in range(sub.shape[0]):
        for j in range(oversample):
            lo, hi = sub[i, j], sub[i, j + 1]
            if not widths[i, j] > 0:
                continue
            n_phi = max(8, int(math.ceil(2 * math.pi * math.sin(math.radians(hi))
                                         / math.radians(step))))
            rho = math.radians(0.5 * (lo + hi))
            phi = (np.arange(n_phi) + 0.5) * (2 * math.pi / n_phi)
            xyz.append(np.stack([np.full(n_phi, math.cos(rho)), math.sin(rho) * np.sin(phi),
                                 math.sin(rho) * np.cos(phi)], axis=-1))
            area = 2 * math.pi * (math.cos(math.radians(lo)) - math.cos(math.radians(hi)))
            weight.append(np.full(n_phi, area / n_phi))
            bins.append(np.full(n_phi, i))
    return {"xyz": np.concatenate(xyz), "weight": np.concatenate(weight),
            "bin": np.concatenate(bins), "shape": (edges.size - 1,), "cell": step}


@functools.lru_cache(maxsize=16)
def _cached_subgrid(kind: str, edges: tuple, offset_max: float, oversample: int) -> dict:
    if kind == "2d":
        grid = ring_subgrid(np.array(edges[0]), offset_max, oversample)
    else:
        grid = box_subgrid(np.array(edges[0]), np.array(edges[1]), offset_max, oversample)
    grid["rho"], grid["phi"] = _polar(grid["xyz"])
    grid["total"] = np.bincount(grid["bin"], grid["weight"], minlength=math.prod(grid["shape"]))
    for value in grid.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return grid


def _subgrid(binning, oversample: int) -> dict:
    dims = binning.fov_dims[::-1] if binning.kind == "3d" else binning.fov_dims  # detx, dety
    edges = tuple(tuple(np.asarray(binning.fov_edges[d], dtype=float).tolist()) for d in dims)
    return _cached_subgrid(binning.kind, edges, float(binning.offset_max), int(oversample))


# --------------------------------------------------------------------------------------------
# fractions


def _candidates(grid: dict, centres: np.ndarray, radius: np.ndarray) -> list[np.ndarray]:
    """For each region, the indices of sub-grid points it may cover at some sample time.

    A point is a candidate for a region when its offset is within the radius of the region
    centre's offset (the region turns about the FoV centre, at a fixed offset) and its bearing
    within the range of bearings the region's disc sweeps over the samples.
    """
    rho_p, phi_p = grid["rho"], grid["phi"]
    rho_c, phi_c = _polar(centres)  # (T, R)
    rad = np.radians(radius)
    out = []
    for j in range(centres.shape[1]):
        d = float(np.mean(rho_c[:, j]))
        ring = np.flatnonzero(np.abs(rho_p - d) <= rad[j] + 1e-9 + float(np.ptp(rho_c[:, j])))
        if d <= rad[j] or math.sin(d) <= math.sin(rad[j]):
            out.append(ring)
            continue
        half = math.asin(min(1.0, math.sin(rad[j]) / math.sin(d))) + 1e-9
        path = np.unwrap(phi_c[:, j])
        lo, hi = float(path.min() - path[0]) - half, float(path.max() - path[0]) + half
        if hi - lo >= 2 * math.pi:
            out.append(ring)
            continue
        rel = np.mod(phi_p[ring] - path[0] + math.pi, 2 * math.pi) - math.pi
        within = np.zeros(ring.size, dtype=bool)
        for shift in (-2 * math.pi, 0.0, 2 * math.pi):
            within |= (rel + shift >= lo) & (rel + shift <= hi)
        out.append(ring[within])
    return out


def outside_fraction(xyz, weight, bins, n_bins: int, centres, cos_radius, time_weight=None,
                     points=None) -> np.ndarray:
    """Fraction of each bin's weight outside all regions, averaged over time samples.

    Parameters
    ----------
    xyz : array (n, 3)
        Unit vectors of the sub-grid points in the FoV frame.
    weight : array (n,)
        Solid angle of each point's cell.
    bins : int array (n,)
        Bin of each point, in ``[0, n_bins)``.
    n_bins : int
    centres : array (T, R, 3)
        Unit vectors of the region centres at ``T`` sample times, same frame.
    cos_radius : array (R,)
        Cosine of each region's radius.
    time_weight : array (T,), optional
        Weights of the samples (default: equal); normalised to sum 1.
    points : list of R int arrays, optional
        For each region, the only points it can reach (default: all points).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bins,)``; 1 for bins without weight.

    Examples
    --------
    >>> xyz = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> centres = np.array([[[1.0, 0.0, 0.0]]])
    >>> outside_fraction(xyz, np.ones(2), np.array([0, 0]), 1, centres, np.cos([0.1])).tolist()
    [0.5]
    """
    xyz = np.asarray(xyz, dtype=float)
    weight = np.asarray(weight, dtype=float)
    centres = np.asarray(centres, dtype=float)
    n_t, n_r = centres.shape[:2]
    tw = np.full(n_t, 1.0 / n_t) if time_weight is None else np.asarray(time_weight, float)
    tw = tw / tw.sum()
    total = np.bincount(bins, weight, minlength=n_bins)
    cos_r = np.asarray(cos_radius, dtype=float)
    radius = np.arccos(np.clip(cos_r, -1.0, 1.0))
    if points is None:
        points = [np.arange(xyz.shape[0])] * n_r
    mark = np.zeros(xyz.shape[0], dtype=bool)
    for p in points:
        mark[p] = True
    union = np.flatnonzero(mark)
    if union.size == 0:
        return np.ones(n_bins)
    position = np.cumsum(mark) - 1  # index in `union` of each marked point
    local = [position[p] for p in points]
    inside_time = np.zeros(union.size)  # time-weighted fraction of the run each point is inside
    for start in range(0, n_t, _TIME_CHUNK):
        c = centres[start:start + _TIME_CHUNK]  # (t, R, 3)
        inside = np.zeros((union.size, c.shape[0]), dtype=bool)
        for j in range(n_r):
            if not local[j].size:
                continue
            # the points near this chunk's stretch of the region's path: one dot product each
            mean = c[:, j].sum(axis=0)
            mean /= np.linalg.norm(mean)
            spread = float(np.arccos(np.clip((c[:, j] @ mean).min(), -1.0, 1.0)))
            near = xyz[union[local[j]]] @ mean >= np.cos(min(radius[j] + spread, np.pi))
            rows = local[j][near]
            if not rows.size:
                continue
            p = xyz[union[rows]]
            dots = np.multiply.outer(p[:, 0], c[:, j, 0])
            for k in (1, 2):
                dots += np.multiply.outer(p[:, k], c[:, j, k])
            inside[rows] |= dots >= cos_r[j]
        inside_time += inside.astype(float) @ tw[start:start + _TIME_CHUNK]
    excluded = np.bincount(bins[union], weight[union] * inside_time, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, 1.0 - excluded / total, 1.0)
    return np.clip(frac, 0.0, 1.0)


def rotation_rate(alt, az, geolat) -> np.ndarray:
    """FoV rotation speed (rad/s) of an Alt/Az-aligned FoV tracking a sky position.

    ``omega = Omega_earth cos(lat) cos(az) / cos(alt)``; alt, az, lat in deg.

    >>> round(float(rotation_rate(45.0, 0.0, 0.0) / OMEGA_EARTH), 6)
    1.414214
    """
    alt, az = np.radians(alt), np.radians(az)
    with np.errstate(divide="ignore"):
        return OMEGA_EARTH * math.cos(math.radians(geolat)) * np.cos(az) / np.cos(alt)


def time_samples(starts, stops, rate_of_time, max_angle: float, *, n_grid: int = 257,
                 max_samples: int = _MAX_TIME_SAMPLES):
    """Sample times and weights so that the FoV turns by at most ``max_angle`` (rad) per sample.

    Each time interval ``[starts[i], stops[i]]`` (the run, or its GTIs) is cut into parts of
    equal rotation (``|rate_of_time(t)|`` in rad/s, integrated on an ``n_grid`` grid); samples
    are the parts' mid-times, weights their durations over the total. At most ``max_samples``
    samples in all (then the rotation per sample is larger than asked).

    >>> t, w = time_samples(0.0, 100.0, lambda t: np.full_like(t, 0.01), 0.25)
    >>> t.tolist(), w.tolist()
    ([12.5, 37.5, 62.5, 87.5], [0.25, 0.25, 0.25, 0.25])
    """
    starts = np.atleast_1d(np.asarray(starts, dtype=float))
    stops = np.atleast_1d(np.asarray(stops, dtype=float))
    if starts.shape != stops.shape or not np.all(stops >= starts):
        raise ValueError(f"time intervals must have stops >= starts, got {starts} and {stops}")
    if not np.sum(stops - starts) > 0:
        return np.array([0.5 * (starts[0] + stops[0])]), np.ones(1)
    grids, turned = [], []
    for lo, hi in zip(starts, stops):
        grid = np.linspace(lo, hi, n_grid)
        rate = np.abs(np.asarray(rate_of_time(grid), dtype=float))
        finite = np.isfinite(rate)
        rate = np.where(finite, rate, rate[finite].max() if finite.any() else 0.0)
        grids.append(grid)
        turned.append(np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1])
                                                       * np.diff(grid))]))
    total = sum(float(t[-1]) for t in turned)
    wanted = [max(1, math.ceil(t[-1] / max_angle)) if max_angle > 0 else max_samples
              for t in turned]
    if sum(wanted) > max_samples:
        log.info("FoV rotation of %.3g rad needs %d time samples; using %d", total, sum(wanted),
                 max_samples)
        wanted = [max(1, int(w * max_samples / sum(wanted))) for w in wanted]
    times, widths = [], []
    for grid, turn, n in zip(grids, turned, wanted):
        if turn[-1] > 0:
            bounds = np.interp(np.linspace(0.0, turn[-1], n + 1), turn, grid)
        else:
            bounds = np.linspace(grid[0], grid[-1], n + 1)
        bounds[0], bounds[-1] = grid[0], grid[-1]
        times.append(0.5 * (bounds[1:] + bounds[:-1]))
        widths.append(np.diff(bounds))
    times, widths = np.concatenate(times), np.concatenate(widths)
    keep = widths > 0
    return times[keep], widths[keep] / widths[keep].sum()


def _altaz_params(info: dict):
    return fov.altaz_run_params(
        info["ra_pnt"], info["dec_pnt"], geolon=info["geolon"], geolat=info["geolat"],
        altitude=info["altitude"], mjdrefi=info["mjdrefi"], mjdreff=info["mjdreff"],
        timesys=info["timesys"], tstart=info["tstart"], tstop=info["tstop"])


def run_exclusion_fraction(info: dict, binning, regions: dict | None = None, *, gti=None,
                           oversample: int | None = None, max_step: float | None = None) -> np.ndarray:
    """Fraction of each FoV bin's solid angle outside the regions for one run, time-averaged.

    Parameters
    ----------
    info : dict
        Run parameters (``ra_pnt, dec_pnt``; for a 3D ALTAZ binning also the site, time
        reference, ``tstart`` and ``tstop``), as given to the per-run tasks.
    binning : xbkg.histogram.Binning
    regions : dict, optional
        :meth:`SkyCircles.to_dict` of the regions (default: ``info["exclusion"]``).
    gti : (array, array), optional
        START and STOP of the run's good time intervals (s, as TSTART); default: the run
        from ``info["tstart"]`` to ``info["tstop"]``. Only used for an ALTAZ binning.
    oversample : int, optional
        Sub-grid cells per bin and axis (default: the regions' ``oversample``, else 8).
    max_step : float, optional
        Largest move (deg) of any region point between ALTAZ time samples (default: the
        regions' ``max_step``, else one sub-grid cell: the time-sampling error is then well
        below the sub-grid's own, e.g. < 0.2 % of a bin for a run 4 deg from the zenith).

    Returns
    -------
    numpy.ndarray
        Shape of the FoV axes of ``binning``: ``(n_offset,)`` or ``(ny, nx)``, in [0, 1].
    """
    regions = info["exclusion"] if regions is None else regions
    oversample = int(oversample or regions.get("oversample") or DEFAULT_OVERSAMPLE)
    max_step = max_step or regions.get("max_step")
    grid = _subgrid(binning, oversample)
    max_step = float(max_step or grid["cell"])
    c_ra = np.asarray(regions["ra"], dtype=float)
    c_dec = np.asarray(regions["dec"], dtype=float)
    radius = np.asarray(regions["radius"], dtype=float)
    if binning.kind == "3d" and binning.fov_alignment == "ALTAZ":
        params = info.get("altaz_params")
        params = _altaz_params(info) if params is None else params
        offset = fov.offset_deg(c_ra, c_dec, info["ra_pnt"], info["dec_pnt"])
        reach = min(float(np.max(offset + radius)), binning.offset_max)
        lat_site = float(info["geolat"])

        def rate(t):
            alt, az = fov.pointing_altaz(t, params)
            return rotation_rate(alt, az, lat_site)

        starts, stops = (info["tstart"], info["tstop"]) if gti is None else gti
        times, weights = time_samples(starts, stops, rate, max_step / max(reach, 1e-3))
        lon, lat = fov.radec_to_altaz_fov(c_ra[None, :], c_dec[None, :], times[:, None], params)
    else:
        lon, lat = fov.radec_to_fov(c_ra[None, :], c_dec[None, :], info["ra_pnt"], info["dec_pnt"])
        weights = np.ones(1)
    centres = _unit_vectors(lon, lat)  # (T, R, 3)
    frac = outside_fraction(grid["xyz"], grid["weight"], grid["bin"], math.prod(grid["shape"]),
                            centres, np.cos(np.radians(radius)), weights,
                            points=_candidates(grid, centres, radius))
    return frac.reshape(grid["shape"])


def apply_exclusion(columns: dict, info: dict, binning, gti=None):
    """Events outside the run's regions and the FoV exposure fraction (1.0 without regions).

    The per-run hook of :func:`xbkg.reduce.run_cubes`: ``info["exclusion"]`` (set by
    :func:`attach_exclusions`) holds the regions; runs without it are returned unchanged. For
    an ALTAZ binning the run's ALTAZ constants are stored in ``info["altaz_params"]``, where
    :func:`xbkg.histogram.run_counts` finds them (computed once per run).
    """
    regions = info.get("exclusion")
    if not regions:
        return columns, 1.0
    if binning.kind == "3d" and binning.fov_alignment == "ALTAZ" and "altaz_params" not in info:
        info["altaz_params"] = _altaz_params(info)
    return (drop_excluded_events(columns, regions),
            run_exclusion_fraction(info, binning, regions, gti=gti))
