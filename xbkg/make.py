"""Building a model: store -> selection -> groups -> counts and exposure -> rate Dataset.

:func:`make_model` is the convenience that strings the stages together; each stage is a
module of its own (:mod:`~xbkg.datastore`, :mod:`~xbkg.selection`, :mod:`~xbkg.grouping`,
:mod:`~xbkg.histogram`, :mod:`~xbkg.exposure`, :mod:`~xbkg.model`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import xarray as xr

from .binning import parse_edges
from .datastore import open_datastore, takes_store
from .defaults import DEFAULTS
from .events import POINTING_SOURCES, RunDataError, fill_from_headers, run_infos
from .exclusion import (DEFAULT_OVERSAMPLE, SkyCircles, attach_plan, exclusion_provenance,
                        plan_exclusion)
from .exposure import annulus_solid_angle, box_solid_angle
from .geometry import DEFAULT_ALTITUDE_TOLERANCE, geometry_advice
from .grouping import attach_grouping, resolve_grouping
from .histogram import Binning
from .model import assemble_model
from .parallel import compute
from .reduce import group_cubes
from .selection import SelectionError, WhereError, event_filter_columns, select_runs
from .sources import (DEFAULT_EXTENSION_FACTOR, DEFAULT_MIN_RADIUS, on_source_runs,
                      source_exclusions)
from .survey import cut_binning, obs_index_extents, survey_runs
from .thresholds import needs_counts_peak, run_energy_thresholds, threshold_provenance
from .validate import ontime_problems

__all__ = ["DEFAULT_ENERGY_EDGES", "DEFAULT_OFFSET_EDGES", "DEFAULT_FOV_EDGES", "make_binning",
           "make_model"]

log = logging.getLogger(__name__)

DEFAULT_ENERGY_EDGES = DEFAULTS.energy_edges
DEFAULT_OFFSET_EDGES = DEFAULTS.offset_edges
DEFAULT_FOV_EDGES = DEFAULTS.fov_edges


def make_binning(kind: str = DEFAULTS.kind, fov_alignment: str = DEFAULTS.fov_alignment, *,
                 energy_edges=None, offset_edges=None, fov_edges=None,
                 offset_max=None) -> Binning:
    """Check and complete binning options (edge specs as arrays or ``"lo:hi:n"`` strings).

    ``fov_edges`` is one spec for both DETX and DETY or a ``{"detx": ..., "dety": ...}`` dict.
    ``offset_max`` defaults to the last offset edge (2D) or the largest circle inside the FoV
    box (3D).
    """
    kind = str(kind).lower()
    if kind not in ("2d", "3d"):
        raise ValueError(f"kind must be '2d' or '3d', got {kind!r}")
    align = str(fov_alignment).upper()
    if align not in ("ALTAZ", "RADEC"):
        raise ValueError(f"fov_alignment must be 'altaz' or 'radec', got {fov_alignment!r}")
    energy = parse_edges(DEFAULT_ENERGY_EDGES if energy_edges is None else energy_edges,
                         log=True, name="energy edges", limits=(1e-6, 1e6))
    if kind == "2d":
        offset = parse_edges(DEFAULT_OFFSET_EDGES if offset_edges is None else offset_edges,
                             name="offset edges", limits=(0, 180))
        if offset[0] < 0:
            raise ValueError(f"offset edges must be >= 0, got {offset}")
        fov = {"offset": offset}
        default_max = offset[-1]
    else:
        spec = DEFAULT_FOV_EDGES if fov_edges is None else fov_edges
        if isinstance(spec, dict):
            fov = {d: parse_edges(spec[d], name=f"{d} edges", limits=(-90, 90))
                   for d in ("detx", "dety")}
        else:
            edges = parse_edges(spec, name="fov edges", limits=(-90, 90))
            fov = {"detx": edges, "dety": edges}
        default_max = min(min(abs(e[0]), abs(e[-1])) for e in fov.values())
    _check_cube_size(energy, fov)
    omax = float(default_max if offset_max is None else offset_max)
    if not omax > 0:
        raise ValueError(f"offset_max must be > 0 deg, got {omax}")
    return Binning(kind=kind, fov_alignment=align, energy_edges=energy, fov_edges=fov,
                   offset_max=omax)


#: Most bins of one model cube (energy x FoV): 2e7 float64 cells are 160 MB per array and group.
MAX_CUBE_BINS = 20_000_000


def _check_cube_size(energy, fov) -> None:
    """Refuse a binning whose cube would not fit in memory, before anything is allocated."""
    shape = [energy.size - 1] + [e.size - 1 for e in fov.values()]
    cells = math.prod(shape)
    if cells > MAX_CUBE_BINS:
        raise ValueError(
            f"binning of {' x '.join(map(str, shape))} = {cells:.3g} bins would need "
            f"{cells * 8 / 2**30:.3g} GiB per array and zenith group; at most {MAX_CUBE_BINS:.3g} "
            "bins: use fewer --energy-edges/--fov-edges bins")


def _solid_angle(binning: Binning) -> np.ndarray:
    if binning.kind == "2d":
        return annulus_solid_angle(binning.fov_edges["offset"], binning.offset_max)
    return box_solid_angle(binning.fov_edges["detx"], binning.fov_edges["dety"], binning.offset_max)


def _with_site(store: xr.Dataset, site) -> xr.Dataset:
    """``store`` with one site (lon deg, lat deg, height m) for every run."""
    try:
        lon, lat, height = (float(v) for v in site)
    except (TypeError, ValueError):
        raise ValueError(f"site must be (lon deg, lat deg, height m), got {site!r}") from None
    if not (abs(lat) <= 90 and abs(lon) <= 360 and abs(height) <= 1e5):  # NaN fails too
        raise ValueError(f"site must be (lon deg, lat deg, height m), got {site!r}")
    n = store.sizes["obs_id"]
    return store.assign(geolon=("obs_id", np.full(n, lon), {"units": "deg"}),
                        geolat=("obs_id", np.full(n, lat), {"units": "deg"}),
                        altitude=("obs_id", np.full(n, height), {"units": "m"}))


def _with_sources(excl: dict, store: xr.Dataset, binning: Binning, exclude_targets, catalog,
                  min_radius, factor, selection, max_header_reads) -> dict:
    """The exclusion plan plus target and catalog circles for the selected runs (or a warning
    when ``selection`` is "all", no region is excluded and runs point at sources)."""
    auto = source_exclusions(store, reach=binning.offset_max, exclude_targets=exclude_targets,
                             exclusion_catalog=catalog, min_radius=min_radius, factor=factor)
    if auto is None:
        on_source = on_source_runs(store, max_header_reads=max_header_reads) \
            if selection == "all" and excl["circles"] is None else {}
        if on_source:
            log.warning("runs point at sources (targets %s, runs %s) and selection 'all' keeps "
                        "their gamma rays in the background model: exclude them with "
                        "--exclude-targets RADIUS and/or --exclusion-catalog FILE "
                        "(exclude_targets=, exclusion_catalog=)",
                        sorted(set(on_source.values()))[:5], list(on_source)[:10])
        return excl
    if excl["mode"] != "regions":
        raise ValueError("exclude_targets and exclusion_catalog need exclusion_mode 'regions'")
    if not len(auto):
        return excl
    circles = auto if excl["circles"] is None else SkyCircles.concatenate([excl["circles"], auto])
    return plan_exclusion(circles, "regions", excl["distance"], reach=binning.offset_max,
                          oversample=excl["oversample"])


def _parse_fov_extent(fov_extent):
    """"auto", "none" or a positive float (deg)."""
    if isinstance(fov_extent, str) and fov_extent.strip().lower() in ("auto", "none"):
        return fov_extent.strip().lower()
    try:
        value = float(fov_extent)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"fov_extent must be 'auto', 'none' or an offset > 0 deg, got {fov_extent!r}")
    return value


#: ``fov_extent`` provenance of an extent measured in the build's own pass over the events.
MEASURED = "largest event offset of each run"


def _survey_step(store, runs, binning, fov_extent, energy_threshold, *, compute_now, scheduler,
                 progress):
    """The FoV extent (and counts peaks, when the threshold rule needs them) of the runs, and
    the binning cut at the extent: ``(binning, extents or None, provenance record, peaks)``.

    An extent that only the events give, when no counts peak is needed, is left to the build's
    own pass (record ``{"source": MEASURED}``, extents None; see :func:`_cut_at_extent`): the
    events are read once."""
    mode = _parse_fov_extent(fov_extent)
    n = len(runs)
    extents, source = None, "not determined"
    if mode == "none":
        source = "not used (fov_extent='none')"
    elif mode != "auto":
        extents, source = np.full(n, mode), "given"
    else:
        extents = obs_index_extents(store)
        source = "obs index OFFSET_MAX" if extents is not None else source
    want_peaks = needs_counts_peak(store, energy_threshold)
    peaks = None
    if mode == "auto" and extents is None and compute_now and not want_peaks:
        return binning, None, {"source": MEASURED}, None
    if (mode == "auto" and extents is None) or want_peaks:
        if not compute_now:
            if want_peaks:
                raise ValueError(
                    f"energy_threshold {energy_threshold!r}: fewer than 3 runs have "
                    "SAFE_ENERGY_LO, so the zenith rule is fitted to the counts peak of the "
                    "events, which a lazy build (compute_now=False) does not compute; build "
                    "with compute_now=True, or give a threshold in TeV")
            source = "not measured (lazy build: give fov_extent to cut the binning)"
            log.info("FoV extent not measured in a lazy build; the declared binning is kept")
        else:
            survey = survey_runs(runs, binning.offset_max, scheduler=scheduler, progress=progress)
            peaks = survey["peak_energy"]
            if mode == "auto" and extents is None:
                extents, source = survey["max_offset"], MEASURED
    binning, record = _cut_at_extent(binning, extents, source, runs)
    return binning, extents, record, peaks


def _cut_at_extent(binning, extents, source: str, runs):
    """``binning`` cut at the largest of the runs' FoV ``extents`` (deg, or None) and the
    provenance record, with a warning when it cuts or when some runs' extent is short."""
    record = {"source": source}
    if extents is not None and np.isfinite(extents).any():
        extent = float(np.nanmax(extents))
        record["extent_deg"] = extent
        binning, cut = cut_binning(binning, extent)
        if cut:
            record["cut"] = cut
            log.warning("the runs' events reach at most %.4g deg from the pointing (%s): the "
                        "binning stops there: %s. Bins beyond would hold no data. Pass "
                        "fov_extent='none' (--fov-extent none) to keep the declared binning, or "
                        "an offset in deg", extent, source, cut)
        short = np.flatnonzero(extents < binning.offset_max - 0.05)
        if short.size:
            log.warning("%d run(s) have a smaller FoV extent than the model's offset cut %.3g "
                        "deg (%.3g deg and up; e.g. run %d): their exposure is counted to the "
                        "cut", short.size, binning.offset_max, float(np.nanmin(extents)),
                        runs[int(short[0])]["obs_id"])
    return binning, record


def _measured_extents(max_offsets) -> np.ndarray:
    """Per-run extents (deg) measured in the build's pass, rounded up as
    :func:`xbkg.survey.survey_runs` does (NaN for failed runs)."""
    values = np.array([np.nan if v is None else v for v in max_offsets], dtype=float)
    return np.ceil(np.round(values * 1e3, 6)) / 1e3


def _run_cubes_graph(runs, groups, n_groups, binning, cond, on_error, compute_now, extent=False):
    """The lazy cubes of a build (:func:`xbkg.reduce.group_cubes`): dask arrays for a lazy
    model, Delayed numpy cubes for one computed at once (no :mod:`dask.array` import)."""
    if cond is not None and "outer_rate" in cond["conditions"]:
        for info in runs:  # counted in the same pass (xbkg.reduce.run_cubes)
            info["outer_offset"] = binning.offset_max
    return group_cubes(runs, groups, n_groups, binning, _solid_angle(binning),
                       on_error=on_error if compute_now else "raise", pointing=True,
                       fit_bins=None if cond is None else cond["labels"], extent=extent,
                       arrays=not compute_now)


@takes_store("data")
def make_model(data, *, kind: str = DEFAULTS.kind, fov_alignment: str = DEFAULTS.fov_alignment,
               energy_edges=None, offset_edges=None, fov_edges=None,
               zenith_edges=DEFAULTS.zenith_edges, obs_ids=None,
               selection: str = DEFAULTS.selection, n_obs_max: int | None = None,
               offset_max: float | None = DEFAULTS.offset_max, compute_now: bool = True,
               scheduler=None, progress: bool = False, on_error: str = DEFAULTS.on_error,
               grouping=None, energy_threshold=DEFAULTS.energy_threshold,
               zenith_range=None, where: str | None = None, min_n_tels=None, min_muoneff=None,
               max_quality=None, exclusion=None, exclusion_mode: str = DEFAULTS.exclusion_mode,
               exclusion_distance: float | None = None,
               exclusion_oversample: int = DEFAULT_OVERSAMPLE, event_filter: str | None = None,
               site=None, altitude_tolerance: float = DEFAULT_ALTITUDE_TOLERANCE,
               exclude_targets: float | None = None, exclusion_catalog=None,
               catalog_min_radius: float = DEFAULT_MIN_RADIUS,
               catalog_extension_factor: float = DEFAULT_EXTENSION_FACTOR,
               fov_extent=DEFAULTS.fov_extent, conditions=None, smoothness="cv") -> xr.Dataset:
    """Build a background model from a GADF DL3 store.

    Defaults are those of :mod:`xbkg.defaults`, shared with ``xbkg make-models``.

    Parameters
    ----------
    data : str, Path or xarray.Dataset
        Store directory, or an observation Dataset from :func:`xbkg.open_datastore`.
    kind : {"2d", "3d"}
        Energy x offset, or energy x FoV (dety, detx).
    fov_alignment : {"altaz", "radec"}
        Frame of the 3D FoV axes (ignored in the 2D binning, recorded in the model).
    energy_edges, offset_edges, fov_edges, zenith_edges : array or "lo:hi:n" / "a,b,c" strings
        Declared bins (energy log-spaced in TeV; angles in deg). Defaults: 0.1-100 TeV in 20
        bins, offset 0-2.5 deg in 10, FoV -2.5..2.5 deg in 25x25, one zenith group 0-90 deg.
    obs_ids, selection, n_obs_max
        Run selection, see :func:`xbkg.selection.select_runs` (default selection: "off").
    offset_max : float, deg
        Events farther from the pointing are dropped (exposure too).
    compute_now : bool
        True (default): compute and return an in-memory model. False: return the lazy model
        (dask arrays; nothing is read until computed).
    scheduler, progress
        See :func:`xbkg.parallel.compute`.
    on_error : {"skip", "raise"}
        A run that cannot be read or is invalid: "skip" (default) leaves it out of the model
        (neither counts nor exposure), logs a warning and records it in the provenance
        (``skipped_runs``); "raise" stops with :class:`xbkg.events.RunDataError`. A lazy build
        (``compute_now=False``) always raises, since it cannot report.
    grouping : dict, xarray.Dataset or path, optional
        Groups other than fixed ``zenith_edges``: a dict of :func:`xbkg.grouping.make_grouping`
        options decided on the selected runs (``{"adaptive": True, "min_ontime": 3600}``,
        ``{"by": xbkg.grouping.NORTH_SOUTH}``), or a grouping to reuse (a grouping Dataset, a
        model, or a ``bg_observation_groups.ecsv`` file), whose bounds assign the runs.
    energy_threshold : {"none", "safe", "zenith"} or float
        Per-run energy thresholds (:mod:`xbkg.thresholds`): a run adds counts and exposure only
        to energy bins whose lower edge is at or above its threshold. "none" (default, as
        ``xbkg make-models``): no threshold; "safe": SAFE_ENERGY_LO of the obs table, else the
        zenith rule; "zenith": the zenith rule. The zenith rule is fitted to the store's own
        runs: to their SAFE_ENERGY_LO, or, when fewer than three have one, to the counts peak
        of their events (:mod:`xbkg.survey`; needs ``compute_now=True``). A number: one
        threshold in TeV. Energy slices left without exposure follow the policy of
        :mod:`xbkg.model`.
    zenith_range, where, min_n_tels, min_muoneff, max_quality
        More run selection (zenith range in deg, a safe ``where`` expression on obs-table
        columns such as ``"MUONEFF > 0.7"``, quality cuts), see
        :func:`xbkg.selection.select_runs`.
    exclusion : file, list of files, SkyCircles or dicts, optional
        Excluded sky circles (region tables with RA, DEC, Radius in deg, or DS9 files), see
        :mod:`xbkg.exclusion`.
    exclusion_mode : {"regions", "runs"}
        "regions" (default): runs near a region drop its events and their exposure is
        multiplied, bin by bin, by the time-averaged fraction of solid angle outside the
        regions; "runs": runs pointed within ``exclusion_distance`` of a region's edge are
        rejected.
    exclusion_distance : float, deg
        For "runs" (default: ``offset_max``).
    exclusion_oversample : int
        ALTAZ time sampling of the exact exposure fractions: regions move by at most
        1/exclusion_oversample of a bin between samples (default 8).
    exclude_targets : float, deg, optional
        Exclude a circle of this radius around each run's target (RA_OBJ/DEC_OBJ of the obs
        index or EVENTS header, or its OBJECT name found in ``exclusion_catalog``), see
        :mod:`xbkg.sources`; the EVENTS headers of runs whose obs index lacks the target are
        read (header only) when the model is built.
    exclusion_catalog : file or xbkg.io.catalogs.SourceCatalog, optional
        Exclude the sources of a gamma-cat / HGPS-style catalog that reach the runs, each with
        radius ``max(catalog_min_radius, catalog_extension_factor x extension)`` (defaults 0.35
        deg and 3). Both options need ``exclusion_mode="regions"``. With ``selection="all"``,
        no exclusion and runs whose target is a source (obs index, else the EVENTS headers of
        up to 5 runs in an eager build), a warning names them.
    catalog_min_radius, catalog_extension_factor : float
        See ``exclusion_catalog``.
    event_filter : str, optional
        Keep only the events for which this expression holds: the ``where`` language of
        :mod:`xbkg.selection` on EVENTS columns, e.g. ``"MC_ID == 1"`` (CTA simulated
        background). Applied in each run's task when it is read; recorded in the provenance.
    site : (lon, lat, height), optional
        Site of every run (deg east, deg, m above the WGS84 ellipsoid), replacing GEOLON,
        GEOLAT and ALTITUDE of the store (used by ALTAZ models).
    altitude_tolerance : float, deg
        ALTAZ models: a run whose pointing, computed at mid-run from time, site and RA/Dec, is
        below the horizon or differs in altitude from the store's (90 - zenith) by more is
        rejected (:mod:`xbkg.geometry`). RADEC and 2D models are not checked.
    fov_extent : "auto", "none" or float (deg)
        Where the runs' events stop (:mod:`xbkg.survey`). "auto" (default): the obs-index
        column OFFSET_MAX, else, when ``compute_now``, the largest event offset of the runs
        (strays ignored), measured in the build's own pass over the events (a second pass
        only when the extent cuts the binning; a separate first pass when the counts peaks
        are needed too); a lazy build without OFFSET_MAX keeps the declared binning. A number declares it. When the extent is inside the binning's offset
        cut, FoV bins wholly beyond it are dropped, ``offset_max`` is lowered to it and a
        warning says so; "none" keeps the declared binning. Each run's extent is kept as
        ``obs_fov_extent``.
    conditions : str or list of str, optional
        Fit a conditional model (:mod:`xbkg.conditional`) on these run conditions
        (:mod:`xbkg.conditions`, e.g. ``"zenith,MUONEFF"``): per-run statistics are gathered
        in the same pass over the events. Needs ``compute_now``.
    smoothness : float or "cv"
        Roughness penalty of the conditional terms over energy ("cv": cross-validated).

    Returns
    -------
    xarray.Dataset
        The model, laid out as documented in :mod:`xbkg.model`.
    """
    store = data if isinstance(data, xr.Dataset) else open_datastore(data)
    if event_filter is not None:  # refuse a bad expression before reading any run
        try:
            event_filter_columns(event_filter)
        except WhereError as exc:
            raise WhereError(f"event filter (--event-filter, event_filter=): {exc}") from None
    binning = make_binning(kind, fov_alignment, energy_edges=energy_edges,
                           offset_edges=offset_edges, fov_edges=fov_edges, offset_max=offset_max)
    excl = plan_exclusion(exclusion, exclusion_mode, exclusion_distance, reach=binning.offset_max,
                          oversample=exclusion_oversample)
    selected, rejected = select_runs(store, selection, obs_ids=obs_ids, n_obs_max=n_obs_max,
                                     zenith_range=zenith_range, where=where,
                                     min_n_tels=min_n_tels, min_muoneff=min_muoneff,
                                     max_quality=max_quality, **excl["select"])
    store = fill_from_headers(store.sel(obs_id=selected), on_error=on_error)
    if site is not None:
        store = _with_site(store, site)
    excl = _with_sources(excl, store, binning, exclude_targets, exclusion_catalog,
                         catalog_min_radius, catalog_extension_factor, selection,
                         5 if compute_now else 0)
    # runs without exposure are skipped (or raise) before they can weigh on the grouping
    skipped = ontime_problems(store)
    if skipped:
        if on_error == "raise" or not compute_now:
            raise RunDataError(next(iter(skipped.values())))
        store = store.isel(obs_id=~np.isin(store.obs_id.values, list(skipped)))
        if store.sizes["obs_id"] == 0:
            raise SelectionError("every selected run failed; first error: "
                                 + next(iter(skipped.values())))
    grouping = resolve_grouping(store, zenith_edges, grouping)
    groups = grouping["obs_group"].values
    outside = groups < 0
    if outside.any():
        for obs_id in store.obs_id.values[outside]:
            rejected[int(obs_id)] = "zenith outside the zenith edges"
        store = store.isel(obs_id=~outside)
        groups = groups[~outside]
    if store.sizes["obs_id"] == 0:
        raise SelectionError("no run left after zenith grouping")
    ontime = store["ontime"].values.astype(float)
    all_ids = store.obs_id.values.tolist()
    n_groups = grouping.sizes["zenith_group"]
    runs = run_infos(store)
    for info in runs:
        info["event_filter"] = event_filter
        info["altitude_tolerance"] = float(altitude_tolerance)
    binning, extents, extent_record, peaks = _survey_step(
        store, runs, binning, fov_extent, energy_threshold, compute_now=compute_now,
        scheduler=scheduler, progress=progress)
    n_runs_excluded = attach_plan(runs, excl, binning.offset_max)  # regions travel with each run
    thresholds, threshold_rule = run_energy_thresholds(store, energy_threshold, peaks=peaks)
    for info, thr in zip(runs, thresholds):
        info["e_threshold"] = float(thr)
    threshold_of = dict(zip(store.obs_id.values.tolist(), thresholds.tolist()))
    cond = _conditional_setup(store, conditions, binning, compute_now)
    measure = extent_record["source"] == MEASURED and extents is None
    cubes = _run_cubes_graph(runs, groups, n_groups, binning, cond, on_error, compute_now, measure)
    counts, exposure, errors, sources = cubes[:4]
    provenance = {
        "store": str(store.attrs.get("base_dir", "")),
        "selection": selection,
        "n_obs_max": n_obs_max,
        "n_rejected": len(rejected),
        "on_error": on_error,
        "energy_threshold": threshold_rule,
        **threshold_provenance(store, energy_threshold, peaks=peaks),  # for xbkg.update
        "fov_extent": extent_record,
        "exclusion": exclusion_provenance(excl, n_runs_excluded),
        "event_filter": event_filter,
        **({"site": [float(v) for v in site]} if site is not None else {}),
        **({"exclude_targets": float(exclude_targets)} if exclude_targets is not None else {}),
        "run_cuts": {k: v for k, v in (("zenith_range", zenith_range), ("where", where),
                                       ("min_n_tels", min_n_tels), ("min_muoneff", min_muoneff),
                                       ("max_quality", max_quality)) if v is not None},
    }
    if compute_now:
        counts, exposure, errors, sources, *run_stats = compute(*cubes, scheduler=scheduler,
                                                                progress=progress)
        if measure:  # the FoV extent, measured in this pass: a second one only to cut the binning
            *run_stats, max_offsets = run_stats
            extents = _measured_extents(max_offsets)
            cut, provenance["fov_extent"] = _cut_at_extent(binning, extents, MEASURED, runs)
            if cut is not binning:
                binning, runs = cut, [{k: v for k, v in r.items() if k != "exclusion"} for r in runs]
                provenance["exclusion"] = exclusion_provenance(
                    excl, attach_plan(runs, excl, binning.offset_max))
                cond = _conditional_setup(store, conditions, binning, compute_now)
                counts, exposure, errors, sources, *run_stats = compute(
                    *_run_cubes_graph(runs, groups, n_groups, binning, cond, on_error, True),
                    scheduler=scheduler, progress=progress)
        errors, sources = list(errors), np.array(sources, dtype=object)
        failed = np.array([e is not None for e in errors])
        skipped.update({int(o): e for o, e, f in zip(store.obs_id.values, errors, failed) if f})
        advice = geometry_advice(errors, len(errors))
        if advice:  # one message for a store whose site keywords are all wrong
            raise SelectionError(advice)
        if skipped:
            log.warning("skipped %d run(s) that could not be used:\n  %s", len(skipped),
                        "\n  ".join(skipped.values()))
            store, groups, ontime = store.isel(obs_id=~failed), groups[~failed], ontime[~failed]
            sources = sources[~failed]
            if cond is not None:
                run_stats = [tuple(a[~failed] for a in run_stats[0])]
            if store.sizes["obs_id"] == 0:
                raise SelectionError("every selected run failed; first error: "
                                     + next(iter(skipped.values())))
        provenance["skipped_runs"] = {str(k): v for k, v in skipped.items()}
    provenance["n_runs"] = int(store.sizes["obs_id"])
    runs_ds = xr.Dataset(
        {"obs_group": ("obs_id", groups), "obs_ontime": ("obs_id", ontime, {"units": "s"}),
         "obs_zenith": ("obs_id", store["zenith"].values.astype(float), {"units": "deg"}),
         "obs_energy_threshold": ("obs_id", [threshold_of[o] for o in store.obs_id.values.tolist()],
                                  {"units": "TeV"})},
        coords={"obs_id": store.obs_id.values},
    )
    provenance["pointing"] = "RA_PNT/DEC_PNT of the EVENTS header when present, else the obs index"
    if compute_now:
        runs_ds["obs_pointing_source"] = ("obs_id", sources.astype(str), {
            "description": "where the run's pointing came from: " + " or ".join(POINTING_SOURCES)})
    if extents is not None:
        extent_of = dict(zip(all_ids, extents.tolist()))
        runs_ds["obs_fov_extent"] = ("obs_id", [extent_of[o] for o in store.obs_id.values.tolist()],
                                     {"units": "deg", "long_name": "FoV extent of the run "
                                      "(largest event offset, or obs-index OFFSET_MAX)"})
    model = assemble_model(counts, exposure, kind=binning.kind, energy_edges=binning.energy_edges,
                           fov_edges=binning.fov_edges, zenith_edges=grouping["zenith_bounds"].values,
                           fov_alignment=binning.fov_alignment, offset_max=binning.offset_max,
                           runs=runs_ds, provenance=provenance)
    model = attach_grouping(model, grouping)
    if cond is not None:
        from .conditional import attach_conditional

        from .conditions import condition_matrix

        x, _ = condition_matrix(store, cond["conditions"], outer_counts=run_stats[0][2])
        model = attach_conditional(model, run_stats[0][:2], x, cond["terms"],
                                   cond["conditions"], cond["labels"], cond["rings"],
                                   smoothness=smoothness)
    return model


def _conditional_setup(store, conditions, binning: Binning, compute_now: bool):
    """Terms and fit bins of a conditional fit (None without ``conditions``)."""
    if conditions is None:
        return None
    from .conditional import fit_bin_labels
    from .conditions import condition_matrix, parse_conditions

    if not compute_now:
        raise ValueError("a conditional model (conditions=...) needs compute_now=True")
    names = parse_conditions(conditions)
    # checks names and values up front (outer_rate: counted in the pass, a placeholder here)
    _, terms = condition_matrix(store, names, outer_counts=np.ones(store.sizes["obs_id"]))
    labels, rings = fit_bin_labels(binning.kind, binning.fov_edges, binning.offset_max)
    return {"conditions": names, "terms": terms, "labels": labels, "rings": rings}
