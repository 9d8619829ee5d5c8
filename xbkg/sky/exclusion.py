"""Exclusion regions: sky circles whose events are dropped and whose solid angle is not exposed.

Events inside any region are dropped (:func:`inside_circles`, :func:`drop_excluded_events`);
each FoV bin's exposure is multiplied by the fraction of its solid angle outside the regions,
averaged over the run's time in the model's FoV frame (:func:`run_exclusion_fraction`).
Regions are attached to runs at graph-build time (:func:`attach_exclusions`); nothing is
computed before the model is (docs/architecture.rst).
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import numpy as np

from xbkg.core.circles import SkyCircles
from xbkg.core.defaults import DEFAULTS
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.io.regions import read_exclusion_regions
from xbkg.sky import fov
from xbkg.sky.earth import (
    OMEGA_EARTH,
    rotation_rate,
    run_altaz_params,
    run_time_samples,
    time_samples,
)
from xbkg.sky.excluded_area import (
    angle_table,
    excluded_annulus_area,
    excluded_box_area,
    monotone_angle_table,
    turning_box_area,
)
from xbkg.sky.exposure import fov_solid_angle

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
    "outside_fraction",
    "rotation_rate",
    "time_samples",
    "ROTATION_KNOTS",
    "rotation_knots",
    "rotation_table",
    "run_exclusion_fraction",
    "apply_exclusion",
]

log = logging.getLogger(__name__)

#: ALTAZ time sampling: regions move by at most 1/DEFAULT_OVERSAMPLE of a bin between samples.
DEFAULT_OVERSAMPLE = DEFAULTS.exclusion_oversample
#: ``regions``: drop events in the regions and correct the exposure; ``runs``: drop whole runs.
EXCLUSION_MODES = ("regions", "runs")
#: ALTAZ fractions: times per run at which the FoV rotation angle is computed (linear between;
#: more, up to 4096, where the FoV turns too fast for :data:`_ROTATION_TOLERANCE`).
ROTATION_KNOTS = 256
_MAX_ROTATION_KNOTS = 4096
_ROTATION_TOLERANCE = 1e-7  # rad: linear interpolation of the rotation angle between knots
_MAX_KINK_INTERVALS = 16
_MAX_STRIDE = 64
_KINK_RESOLUTION = 1e-6  # rad: kinks of the angle's distribution closer than this are merged


def as_circles(regions) -> SkyCircles:
    """Exclusion regions from a :class:`SkyCircles`, a file, a dict or a sequence of those.

    Files are region tables (FITS, ECSV, CSV with RA, DEC, Radius) or DS9 region files, read by
    :func:`xbkg.io.regions.read_exclusion_regions`; dicts have ``ra, dec, radius`` (deg) and
    optionally ``name``/``names``.
    """
    if isinstance(regions, SkyCircles):
        return regions
    if isinstance(regions, (str, Path)):
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
        ALTAZ time sampling of the exposure fractions for regions reaching beyond 80 deg from
        the pointing (others are averaged exactly over the FoV rotation): regions move by at
        most 1/oversample of a bin between samples.

    Returns
    -------
    dict
        ``circles`` (SkyCircles or None), ``mode``, ``distance``, ``oversample``, and
        ``select``: keyword arguments for :func:`xbkg.store.selection.select_runs`.
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


def attach_plan(runs: list[RunInfo], plan: dict, reach: float) -> tuple[list[RunInfo], int]:
    """:func:`attach_exclusions` for a :func:`plan_exclusion` in ``regions`` mode (else
    ``(runs, 0)``)."""
    if plan["circles"] is None or plan["mode"] != "regions":
        return list(runs), 0
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


def attach_exclusions(runs: list[RunInfo], circles: SkyCircles, reach: float, *,
                      oversample: int = DEFAULT_OVERSAMPLE, max_step=None
                      ) -> tuple[list[RunInfo], int]:
    """The runs, each with the regions it can see (``exclusion``), as new records.

    A region is relevant to a run when its edge is closer than ``reach`` (deg, the model's
    offset cut) to the pointing (``ra_pnt, dec_pnt``). Runs without relevant regions are
    returned as they are. ``oversample`` and ``max_step`` (deg, None: the narrowest bin /
    oversample) travel with the regions to :func:`run_exclusion_fraction`. The given records
    are not changed.

    Returns
    -------
    runs : list of xbkg.core.runs.RunInfo
    n : int
        Number of runs that got regions.
    """
    oversample = int(oversample)
    if oversample < 1:
        raise ValueError(f"exclusion oversample must be >= 1, got {oversample}")
    if max_step is not None and not float(max_step) > 0:
        raise ValueError(f"exclusion max_step must be > 0 deg, got {max_step}")
    runs = [as_run_info(r) for r in runs]
    if not runs or not len(circles):
        return runs, 0
    near = edge_distance([r.ra_pnt for r in runs], [r.dec_pnt for r in runs], circles) < reach
    out = [info.with_(exclusion=dict(circles.subset(row).to_dict(), oversample=oversample,
                                     max_step=None if max_step is None else float(max_step)))
           if row.any() else info for info, row in zip(runs, near)]
    return out, int(near.any(axis=1).sum())


# --------------------------------------------------------------------------------------------
# exposure fractions (FoV frame)


def _unit_vectors(lon, lat) -> np.ndarray:
    """Unit vectors ``(n, 3)`` of FoV coordinates: x toward the FoV centre, z toward +lat."""
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _fov_edges_rad(binning) -> tuple:
    """The binning's FoV edges in rad: ``(offset,)`` or ``(detx, dety)``."""
    dims = binning.fov_dims[::-1] if binning.kind == "3d" else binning.fov_dims  # detx, dety
    return tuple(np.radians(np.asarray(binning.fov_edges[d], dtype=float)) for d in dims)


def _bin_solid_angle(binning) -> np.ndarray:
    """Exact solid angle (sr) of each FoV bin inside the offset cut (cached: read-only)."""
    edges = tuple((d, tuple(np.asarray(e, dtype=float).tolist()))
                  for d, e in binning.fov_edges.items())
    return _cached_solid_angle(binning.kind, edges, float(binning.offset_max))


@functools.lru_cache(maxsize=8)
def _cached_solid_angle(kind: str, edges: tuple, offset_max: float) -> np.ndarray:
    out = fov_solid_angle(kind, dict(edges), offset_max)
    out.flags.writeable = False
    return out


def outside_fraction(binning, centres, cos_radius, time_weight=None) -> np.ndarray:
    """Fraction of each FoV bin's solid angle (inside the offset cut) outside all circles,
    averaged over time samples; exact (:mod:`xbkg.sky.excluded_area`).

    Parameters
    ----------
    binning : xbkg.core.binning.Binning
    centres : array (T, R, 3)
        Unit vectors of the circle centres in the FoV frame at ``T`` sample times.
    cos_radius : array (R,)
        Cosine of each circle's radius.
    time_weight : array (T,), optional
        Weights of the samples (default: equal); normalised to sum 1.

    Returns
    -------
    numpy.ndarray
        Shape of the binning's FoV axes; 1 for bins without solid angle.

    Examples
    --------
    >>> from xbkg.building.make import make_binning
    >>> binning = make_binning("2d", offset_edges=[0.0, 1.0, 2.0])
    >>> centre = np.array([[[1.0, 0.0, 0.0]]])  # a circle of 1 deg on the FoV centre
    >>> outside_fraction(binning, centre, np.cos(np.radians([1.0]))).round(6).tolist()
    [0.0, 1.0]
    """
    edges = _fov_edges_rad(binning)
    omax = math.radians(binning.offset_max)
    if binning.kind == "2d":
        excluded = excluded_annulus_area(edges[0], omax, centres, cos_radius, time_weight)
    else:
        excluded = excluded_box_area(edges[0], edges[1], omax, centres, cos_radius, time_weight)
    total = _bin_solid_angle(binning)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, 1.0 - excluded / total, 1.0)
    return np.clip(frac, 0.0, 1.0)


def rotation_knots(starts, stops, n_knots: int = ROTATION_KNOTS):
    """Times at which the FoV rotation angle is tabulated over time intervals (the GTIs).

    ``n_knots`` steps are shared among the intervals by duration (at least 4 each); each
    interval gets its two ends and equal steps between. Returns the times and the index of
    each time's interval (intervals of zero duration are left out, unless all are).

    >>> t, k = rotation_knots([0.0, 30.0], [10.0, 50.0], 6)
    >>> t.tolist(), k.tolist()
    ([0.0, 2.5, 5.0, 7.5, 10.0, 30.0, 35.0, 40.0, 45.0, 50.0], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    """
    starts = np.atleast_1d(np.asarray(starts, dtype=float))
    stops = np.atleast_1d(np.asarray(stops, dtype=float))
    if starts.shape != stops.shape or not np.all(stops >= starts):
        raise ValueError(f"time intervals must have stops >= starts, got {starts} and {stops}")
    width = stops - starts
    if width.size == 1:
        return np.linspace(starts[0], stops[0], max(4, int(n_knots)) + 1), np.zeros(
            max(4, int(n_knots)) + 1, int)
    keep = np.flatnonzero(width > 0) if np.any(width > 0) else np.arange(1)
    steps = np.maximum(4, np.round(n_knots * width[keep] / max(width[keep].sum(), 1e-300)))
    times = [np.linspace(starts[k], stops[k], int(n) + 1) for k, n in zip(keep, steps)]
    return np.concatenate(times), np.repeat(np.arange(keep.size), [t.size for t in times])


def rotation_table(angles, times, interval, *, tolerance: float = _ROTATION_TOLERANCE,
                   max_kink_intervals: int = _MAX_KINK_INTERVALS):
    """Distribution over time of an angle tabulated at knots (linear between them).

    Parameters
    ----------
    angles : array
        The angle (rad, unwrapped) at ``times``.
    times, interval : array
        :func:`rotation_knots`: knot times and the index of each knot's interval.
    tolerance : float
        Knots are thinned to every n-th where linear interpolation between them stays within
        this (rad, from the largest second difference of the angles).
    max_kink_intervals : int
        With at most this many intervals, the angles at their ends are returned as kinks
        (else only the extremes and the turning points).

    Returns
    -------
    table, kinks
        :func:`xbkg.sky.excluded_area.angle_table` of the angle over the intervals' time, and the
        angles where its density jumps (extremes, turning points, intervals' ends).

    >>> table, kinks = rotation_table(np.array([0.0, 0.1, 0.2]), np.array([0.0, 5.0, 10.0]),
    ...                               np.zeros(3, int))
    >>> table[0].tolist(), table[1].tolist(), kinks.tolist()  # uniform on [0, 0.2]
    ([0.0, 0.2], [0.0, 1.0], [0.0, 0.2])
    """
    angles, times = np.asarray(angles, dtype=float), np.asarray(times, dtype=float)
    interval = np.asarray(interval)
    if not times[-1] > times[0]:  # one instant
        return angle_table(angles[:1], angles[:1], [1.0]), angles[:1]
    same = interval[2:] == interval[:-2]
    move = np.diff(angles)
    # knots kept: every stride-th, with the stride at which linear interpolation between them
    # is still within ``tolerance`` (from the largest second difference), ends, turning points
    curve = np.abs(np.diff(move))[same]
    stride = int(np.clip(np.sqrt(8 * tolerance / curve.max()) if curve.size and curve.max() > 0
                         else _MAX_STRIDE, 1, _MAX_STRIDE))
    if interval[0] == interval[-1] and (np.all(move > 0) or np.all(move < 0)):  # most runs
        keep = np.unique(np.append(np.arange(0, angles.size, stride), angles.size - 1))
        ends = angles[[0, -1]]
        return monotone_angle_table(angles[keep], times[keep]), np.unique(ends)
    move = np.sign(move)
    turning = np.flatnonzero((move[1:] * move[:-1] < 0) & same) + 1
    first = np.flatnonzero(np.diff(interval, prepend=interval[0] - 1))
    last = np.append(first[1:] - 1, angles.size - 1)
    keep = (np.arange(angles.size) - first[interval]) % stride == 0
    keep[last] = keep[turning] = True
    angles, times, interval = angles[keep], times[keep], interval[keep]
    step = np.flatnonzero(interval[1:] == interval[:-1])  # knot steps within an interval
    table = angle_table(angles[step], angles[step + 1], times[step + 1] - times[step])
    change = np.flatnonzero(interval[1:] != interval[:-1])
    ends = (np.concatenate([[0], change, change + 1, [angles.size - 1]])
            if first.size <= max_kink_intervals else np.zeros(0, int))
    move = np.sign(np.diff(angles))
    turning = np.flatnonzero((move[1:] * move[:-1] < 0) & (interval[2:] == interval[:-2])) + 1
    kinks = np.unique(np.concatenate([angles[turning], angles[ends],
                                      [angles.min(), angles.max()]]))
    return table, kinks[np.concatenate([[True], np.diff(kinks) > _KINK_RESOLUTION])]


def run_exclusion_fraction(info: RunInfo, binning, regions: dict | None = None, *, gti=None,
                           oversample: int | None = None, max_step: float | None = None) -> np.ndarray:
    """Fraction of each FoV bin's solid angle outside the regions for one run, time-averaged.

    Parameters
    ----------
    info : xbkg.core.runs.RunInfo
        Run parameters (``ra_pnt, dec_pnt``; for a 3D ALTAZ binning also the site, time
        reference, ``tstart`` and ``tstop``, and ``altaz_params`` when already computed), as
        given to the per-run tasks.
    binning : xbkg.core.binning.Binning
    regions : dict, optional
        :meth:`SkyCircles.to_dict` of the regions (default: ``info.exclusion``).
    gti : (array, array), optional
        START and STOP of the run's good time intervals (s, as TSTART); default: the run
        from ``info.tstart`` to ``info.tstop``. Only used for an ALTAZ binning.
    oversample : int, optional
        ALTAZ fractions are averaged exactly over the FoV rotation; only regions reaching
        beyond 80 deg from the pointing take time samples, over which any region point moves
        by at most 1/oversample of the narrowest bin (default: the regions' ``oversample``,
        else 8). The fractions at each sample time are exact.
    max_step : float, optional
        Largest move (deg) of any region point between those ALTAZ time samples (default: the
        regions' ``max_step``, else the narrowest bin's width on the sky / ``oversample``:
        :func:`_sky_bin_width`).

    Returns
    -------
    numpy.ndarray
        Shape of the FoV axes of ``binning``: ``(n_offset,)`` or ``(ny, nx)``, in [0, 1].
    """
    info = as_run_info(info)
    regions = info.exclusion if regions is None else regions
    oversample = int(oversample or regions.get("oversample") or DEFAULT_OVERSAMPLE)
    max_step = max_step or regions.get("max_step")
    c_ra = np.asarray(regions["ra"], dtype=float)
    c_dec = np.asarray(regions["dec"], dtype=float)
    radius = np.asarray(regions["radius"], dtype=float)
    if binning.kind == "3d" and binning.fov_alignment == "ALTAZ":
        params = run_altaz_params(info)
        starts, stops = (info.tstart, info.tstop) if gti is None else gti
        frac = _turning_fraction(info, binning, params, starts, stops, c_ra, c_dec, radius)
        if frac is not None:
            return frac
        offset = fov.offset_deg(c_ra, c_dec, info.ra_pnt, info.dec_pnt)
        reach = min(float(np.max(offset + radius)), binning.offset_max)
        max_step = float(max_step or _sky_bin_width(binning, reach) / oversample)
        times, weights = run_time_samples(info, max_step / max(reach, 1e-3), params=params,
                                          gti=gti)
        lon, lat = fov.radec_to_altaz_fov(c_ra[None, :], c_dec[None, :], times[:, None], params)
    else:
        lon, lat = fov.radec_to_fov(c_ra[None, :], c_dec[None, :], info.ra_pnt, info.dec_pnt)
        weights = np.ones(1)
    centres = _unit_vectors(lon, lat)  # (T, R, 3)
    return outside_fraction(binning, centres, np.cos(np.radians(radius)), weights)


_TURNING_REACH = 80.0  # deg: regions reaching farther from the pointing take the time samples


def _sky_bin_width(binning, reach: float) -> float:
    """Narrowest width (deg, on the sky) of a 3D binning's FoV bins within ``reach`` deg of the
    FoV centre: a DETX bin spans its width x cos(DETY), least at the largest |DETY| reached.

    >>> from xbkg.building.make import make_binning
    >>> round(_sky_bin_width(make_binning("3d", fov_edges="-84:84:6", offset_max=85), 80.0), 4)
    4.8621
    """
    x, y = (np.asarray(binning.fov_edges[d], dtype=float) for d in ("detx", "dety"))
    lat = min(float(np.abs(y).max()), reach, 90.0)
    return float(min(np.diff(y).min(), np.diff(x).min() * math.cos(math.radians(lat))))


def _turning_fraction(info, binning, params, starts, stops, c_ra, c_dec, radius):
    """ALTAZ fractions averaged exactly over the FoV rotation of the good time (None when a
    region reaches farther than :data:`_TURNING_REACH` from the pointing within the cut).

    The FoV turns rigidly about its centre (to ~1e-8 rad within 2.5 deg over a run, measured):
    the rotation angle is tabulated at :func:`rotation_knots` (the bearing of a sky point 1 deg
    from the pointing, through the ALTAZ transform), the circles are taken to the FoV at the
    first knot with their radii magnified as the distance of that point (annual aberration:
    ~1e-4, the same in all directions to 2e-6 of the radius), and
    :func:`xbkg.sky.excluded_area.turning_box_area` averages over the angle's distribution
    (:func:`rotation_table`; knots added where the FoV turns fast).
    """
    times, interval = rotation_knots(starts, stops)
    n = times.size
    dec_ref = float(info.dec_pnt) + 1.0  # 1 deg along the meridian (over the pole beyond 90)
    ra_ref = float(info.ra_pnt) + (180.0 if dec_ref > 90.0 else 0.0)
    dec_ref = min(dec_ref, 180.0 - dec_ref)
    lon, lat = fov.radec_to_altaz_fov(np.concatenate([np.full(n, ra_ref), c_ra]),
                                      np.concatenate([np.full(n, dec_ref), c_dec]),
                                      np.concatenate([times, np.full(c_ra.size, times[0])]),
                                      params)
    centres = _unit_vectors(lon[n:], lat[n:])
    offset = np.degrees(np.arccos(np.clip(centres[:, 0], -1.0, 1.0)))
    if min(float(np.max(offset + radius)), binning.offset_max) >= _TURNING_REACH:
        return None
    ref = _unit_vectors(lon[:n], lat[:n])
    # aberration magnifies the FoV uniformly by ~1e-4: radii as the sky point 1 deg away
    scale = math.degrees(math.acos(min(1.0, float(ref[0, 0]))))
    angle = _unwrapped_bearing(ref)
    curve = np.abs(np.diff(angle, 2))[interval[2:] == interval[:-2]]
    finer = math.sqrt(curve.max() / (8 * _ROTATION_TOLERANCE)) if curve.size else 0.0
    if finer > 1:  # the FoV turns fast: tabulate finer (linear between knots within tolerance)
        times, interval = rotation_knots(starts, stops, min(int(ROTATION_KNOTS * math.ceil(finer)),
                                                            _MAX_ROTATION_KNOTS))
        lon, lat = fov.radec_to_altaz_fov(ra_ref, dec_ref, times, params)
        angle = _unwrapped_bearing(_unit_vectors(lon, lat))
    table, kinks = rotation_table(angle - angle[0], times, interval)
    x_edges, y_edges = _fov_edges_rad(binning)
    excluded = turning_box_area(x_edges, y_edges, math.radians(binning.offset_max), centres,
                                np.cos(np.radians(radius * scale)), table, kinks)
    total = _bin_solid_angle(binning)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, 1.0 - excluded / total, 1.0)
    return np.clip(frac, 0.0, 1.0)


def _unwrapped_bearing(vectors):
    """Bearing (rad, ``atan2(y, z)``) of successive FoV unit vectors, without 2 pi jumps."""
    angle = np.arctan2(vectors[:, 1], vectors[:, 2])
    step = np.diff(angle)
    step -= 2 * np.pi * np.round(step / (2 * np.pi))
    return angle[0] + np.concatenate([[0.0], np.cumsum(step)])


def apply_exclusion(columns: dict, info: RunInfo, binning, gti=None):
    """Events outside the run's regions and the FoV exposure fraction (1.0 without regions).

    The per-run hook of :func:`xbkg.building.reduce.run_cubes`: ``info.exclusion`` (set by
    :func:`attach_exclusions`) holds the regions; runs without it are returned unchanged. For
    an ALTAZ binning the run's ALTAZ constants are ``info.altaz_params`` when given
    (:func:`xbkg.building.reduce.run_cubes` computes them once per run), else computed here.
    """
    info = as_run_info(info)
    regions = info.exclusion
    if not regions:
        return columns, 1.0
    if (binning.kind == "3d" and binning.fov_alignment == "ALTAZ"
            and info.altaz_params is None):
        info = info.with_(altaz_params=run_altaz_params(info))
    return (drop_excluded_events(columns, regions),
            run_exclusion_fraction(info, binning, regions, gti=gti))
