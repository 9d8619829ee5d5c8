"""Building a model: store -> selection -> groups -> counts and exposure -> rate Dataset.

:func:`make_model` is the convenience that strings the stages together; each stage is a
module of its own (:mod:`~xbkg.store.datastore`, :mod:`~xbkg.store.selection`, :mod:`~xbkg.building.grouping`,
:mod:`~xbkg.building.histogram`, :mod:`~xbkg.sky.exposure`, :mod:`~xbkg.core.schema`).
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from xbkg.building.conditional import attach_conditional, fit_bin_labels
from xbkg.building.grouping import attach_grouping, resolve_grouping
from xbkg.building.options import (
    BuildOptions,
    build_options,
    check_site,
    make_binning,
    parse_fov_extent,
)
from xbkg.building.parallel import compute
from xbkg.building.reduce import group_cubes
from xbkg.building.sources import on_source_runs, source_exclusions
from xbkg.building.survey import cut_binning, obs_index_extents, survey_runs
from xbkg.building.thresholds import (
    needs_counts_peak,
    run_energy_thresholds,
    threshold_provenance,
)
from xbkg.core.binning import Binning
from xbkg.core.circles import SkyCircles
from xbkg.core.defaults import DEFAULTS
from xbkg.core.schema import assemble_model
from xbkg.model.smoothing import smooth_model
from xbkg.sky.exclusion import attach_plan, exclusion_provenance, plan_exclusion
from xbkg.sky.exposure import fov_solid_angle
from xbkg.store.altaz_checks import geometry_advice
from xbkg.store.conditions import condition_matrix, parse_conditions
from xbkg.store.datastore import open_datastore, takes_store
from xbkg.store.events import POINTING_SOURCES, RunDataError, fill_from_headers, run_infos
from xbkg.store.runchecks import ontime_problems
from xbkg.store.selection import SelectionError, select_runs

__all__ = ["DEFAULT_ENERGY_EDGES", "DEFAULT_OFFSET_EDGES", "DEFAULT_FOV_EDGES", "make_binning",
           "make_model"]

log = logging.getLogger(__name__)

DEFAULT_ENERGY_EDGES = DEFAULTS.energy_edges
DEFAULT_OFFSET_EDGES = DEFAULTS.offset_edges
DEFAULT_FOV_EDGES = DEFAULTS.fov_edges




def _with_site(store: xr.Dataset, site) -> xr.Dataset:
    """``store`` with one site (lon deg, lat deg, height m) for every run."""
    lon, lat, height = check_site(site)
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


#: ``fov_extent`` provenance of an extent measured in the build's own pass over the events.
MEASURED = "largest event offset of each run"


def _survey_step(store, runs, binning, fov_extent, energy_threshold, *, compute_now, scheduler,
                 progress):
    """The FoV extent (and counts peaks, when the threshold rule needs them) of the runs, and
    the binning cut at the extent: ``(binning, extents or None, provenance record, peaks)``.

    An extent that only the events give, when no counts peak is needed, is left to the build's
    own pass (record ``{"source": MEASURED}``, extents None; see :func:`_cut_at_extent`): the
    events are read once."""
    mode = parse_fov_extent(fov_extent)
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
                        runs[int(short[0])].obs_id)
    return binning, record


def _measured_extents(max_offsets) -> np.ndarray:
    """Per-run extents (deg) measured in the build's pass, rounded up as
    :func:`xbkg.building.survey.survey_runs` does (NaN for failed runs)."""
    values = np.array([np.nan if v is None else v for v in max_offsets], dtype=float)
    return np.ceil(np.round(values * 1e3, 6)) / 1e3


def _run_cubes_graph(runs, groups, n_groups, binning, cond, on_error, compute_now, extent=False):
    """The lazy cubes of a build (:func:`xbkg.building.reduce.group_cubes`): dask arrays for a lazy
    model, Delayed numpy cubes for one computed at once (no :mod:`dask.array` import)."""
    if cond is not None and "outer_rate" in cond["conditions"]:
        # counted in the same pass (xbkg.building.reduce.run_cubes)
        runs = [info.with_(outer_offset=binning.offset_max) for info in runs]
    omega = fov_solid_angle(binning.kind, binning.fov_edges, binning.offset_max)
    return group_cubes(runs, groups, n_groups, binning, omega,
                       on_error=on_error if compute_now else "raise", pointing=True,
                       fit_bins=None if cond is None else cond["labels"], extent=extent,
                       arrays=not compute_now)


@takes_store("data")
def make_model(data, *, binning=None, selection=None, grouping=None, thresholds=None,
               exclusion=None, smoothing=None, conditional=None, obs_ids=None,
               compute_now: bool = True, scheduler=None, progress: bool = False,
               on_error: str = DEFAULTS.on_error, **shortcuts) -> xr.Dataset:
    """Build a background model from a GADF DL3 store.

    Defaults are those of :mod:`xbkg.core.defaults`, shared with ``xbkg make-models``.

    Parameters
    ----------
    data : str, Path or xarray.Dataset
        Store directory, or an observation Dataset from :func:`xbkg.open_datastore`.
    binning, selection, grouping, thresholds, exclusion, smoothing, conditional : optional
        The options of each stage, as the objects of :mod:`xbkg.building.options`
        (:class:`~xbkg.building.options.BinningOptions`, ...; None: the defaults). Any other
        value of one of these keywords is the shortcut of its main field, as before:
        ``selection="all"``, ``grouping`` a dict, grouping Dataset or file (below),
        ``thresholds="safe"``, ``exclusion`` the regions (below), ``smoothing="gauss"`` (or a
        dict of :func:`xbkg.model.smoothing.smooth_model` options: the rate is smoothed after
        the build, which needs ``compute_now``), ``conditional="zenith,MUONEFF"``.
    obs_ids : list of int, optional
        Restrict the build to these runs (a run list).
    compute_now : bool
        True (default): compute and return an in-memory model. False: return the lazy model
        (dask arrays; nothing is read until computed).
    scheduler, progress
        See :func:`xbkg.building.parallel.compute`.
    on_error : {"skip", "raise"}
        A run that cannot be read or is invalid: "skip" (default) leaves it out of the model
        (neither counts nor exposure), logs a warning and records it in the provenance
        (``skipped_runs``); "raise" stops with :class:`xbkg.store.events.RunDataError`. A lazy build
        (``compute_now=False``) always raises, since it cannot report.
    **shortcuts
        Keyword shortcuts, each setting one field of an option object
        (:data:`xbkg.building.options.SHORTCUTS`; they override the fields of an object given
        too), described below. ``make_model(store, kind="2d", energy_threshold="safe")`` is
        ``make_model(store, binning=BinningOptions(kind="2d"),
        thresholds=ThresholdOptions("safe"))``.
    kind : {"2d", "3d"}
        Energy x offset, or energy x FoV (dety, detx).
    fov_alignment : {"altaz", "radec"}
        Frame of the 3D FoV axes (ignored in the 2D binning, recorded in the model).
    energy_edges, offset_edges, fov_edges, zenith_edges : array or "lo:hi:n" / "a,b,c" strings
        Declared bins (energy log-spaced in TeV; angles in deg). Defaults: 0.1-100 TeV in 20
        bins, offset 0-2.5 deg in 10, FoV -2.5..2.5 deg in 25x25, one zenith group 0-90 deg.
    selection, n_obs_max
        Run selection, see :func:`xbkg.store.selection.select_runs` (default selection: "off").
    offset_max : float, deg
        Events farther from the pointing are dropped (exposure too).
    grouping : dict, xarray.Dataset or path, optional
        Groups other than fixed ``zenith_edges``: a dict of :func:`xbkg.building.grouping.make_grouping`
        options decided on the selected runs (``{"adaptive": True, "min_ontime": 3600}``,
        ``{"by": xbkg.building.grouping.NORTH_SOUTH}``), or a grouping to reuse (a grouping Dataset, a
        model, or a ``bg_observation_groups.ecsv`` file), whose bounds assign the runs.
    energy_threshold : {"none", "safe", "zenith"} or float
        Per-run energy thresholds (:mod:`xbkg.building.thresholds`): a run adds counts and exposure only
        to energy bins whose lower edge is at or above its threshold. "none" (default, as
        ``xbkg make-models``): no threshold; "safe": SAFE_ENERGY_LO of the obs table, else the
        zenith rule; "zenith": the zenith rule. The zenith rule is fitted to the store's own
        runs: to their SAFE_ENERGY_LO, or, when fewer than three have one, to the counts peak
        of their events (:mod:`xbkg.building.survey`; needs ``compute_now=True``). A number: one
        threshold in TeV. Energy slices left without exposure follow the policy of
        :mod:`xbkg.core.schema`.
    zenith_range, where, min_n_tels, min_muoneff, max_quality
        More run selection (zenith range in deg, a safe ``where`` expression on obs-table
        columns such as ``"MUONEFF > 0.7"``, quality cuts), see
        :func:`xbkg.store.selection.select_runs`.
    exclusion : file, list of files, SkyCircles or dicts, optional
        Excluded sky circles (region tables with RA, DEC, Radius in deg, or DS9 files), see
        :mod:`xbkg.sky.exclusion`.
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
        :mod:`xbkg.building.sources`; the EVENTS headers of runs whose obs index lacks the target are
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
        :mod:`xbkg.store.selection` on EVENTS columns, e.g. ``"MC_ID == 1"`` (CTA simulated
        background). Applied in each run's task when it is read; recorded in the provenance.
    site : (lon, lat, height), optional
        Site of every run (deg east, deg, m above the WGS84 ellipsoid), replacing GEOLON,
        GEOLAT and ALTITUDE of the store (used by ALTAZ models).
    altitude_tolerance : float, deg
        ALTAZ models: a run whose pointing, computed at mid-run from time, site and RA/Dec, is
        below the horizon or differs in altitude from the store's (90 - zenith) by more is
        rejected (:mod:`xbkg.store.altaz_checks`). RADEC and 2D models are not checked.
    fov_extent : "auto", "none" or float (deg)
        Where the runs' events stop (:mod:`xbkg.building.survey`). "auto" (default): the obs-index
        column OFFSET_MAX, else, when ``compute_now``, the largest event offset of the runs
        (strays ignored), measured in the build's own pass over the events (a second pass
        only when the extent cuts the binning; a separate first pass when the counts peaks
        are needed too); a lazy build without OFFSET_MAX keeps the declared binning. A number declares it. When the extent is inside the binning's offset
        cut, FoV bins wholly beyond it are dropped, ``offset_max`` is lowered to it and a
        warning says so; "none" keeps the declared binning. Each run's extent is kept as
        ``obs_fov_extent``.
    conditions : str or list of str, optional
        Fit a conditional model (:mod:`xbkg.building.conditional`) on these run conditions
        (:mod:`xbkg.store.conditions`, e.g. ``"zenith,MUONEFF"``): per-run statistics are gathered
        in the same pass over the events. Needs ``compute_now``.
    smoothness : float or "cv"
        Roughness penalty of the conditional terms over energy ("cv": cross-validated).

    Returns
    -------
    xarray.Dataset
        The model, laid out as documented in :mod:`xbkg.core.schema`.
    """
    opts = build_options(binning=binning, selection=selection, grouping=grouping,
                         thresholds=thresholds, exclusion=exclusion, smoothing=smoothing,
                         conditional=conditional, **shortcuts)
    if opts.smoothing.method != "none" and not compute_now:
        raise ValueError("smoothing needs compute_now=True (it smooths the computed counts)")
    store = data if isinstance(data, xr.Dataset) else open_datastore(data)
    store, binning, excl, rejected, skipped = _select_stage(store, opts, obs_ids, on_error,
                                                            compute_now)
    store, grouping, groups, rejected = _group_stage(store, opts.grouping, rejected)
    runs, binning, survey, excl_runs, thresholds_of, rule, cond = _prepare_runs(
        store, opts, binning, excl, compute_now=compute_now, scheduler=scheduler,
        progress=progress)
    extents, extent_record, peaks = survey
    measure = extent_record["source"] == MEASURED and extents is None
    n_groups = grouping.sizes["zenith_group"]
    cubes = _run_cubes_graph(runs, groups, n_groups, binning, cond, on_error, compute_now, measure)
    provenance = _provenance(store, opts, rejected, on_error, rule, peaks, extent_record,
                             exclusion_provenance(excl, excl_runs))
    all_ids = store.obs_id.values.tolist()
    run_stats, sources = None, None
    if compute_now:
        results, binning, cond, measured, updates = _compute_cubes(
            cubes, runs, groups, n_groups, binning, cond, excl, store, measure,
            opts.conditional.conditions, on_error, scheduler, progress)
        extents = measured if measure else extents
        provenance.update(updates)
        store, groups, skipped, (counts, exposure, sources, *run_stats) = _drop_failed(
            store, groups, skipped, results, cond)
        provenance["skipped_runs"] = {str(k): v for k, v in skipped.items()}
    else:
        counts, exposure = cubes[:2]
    provenance["n_runs"] = int(store.sizes["obs_id"])
    runs_ds = _runs_dataset(store, groups, thresholds_of, sources, extents, all_ids)
    provenance["pointing"] = "RA_PNT/DEC_PNT of the EVENTS header when present, else the obs index"
    model = assemble_model(counts, exposure, kind=binning.kind, energy_edges=binning.energy_edges,
                           fov_edges=binning.fov_edges, zenith_edges=grouping["zenith_bounds"].values,
                           fov_alignment=binning.fov_alignment, offset_max=binning.offset_max,
                           runs=runs_ds, provenance=provenance)
    model = attach_grouping(model, grouping)
    if cond is not None:
        x, _ = condition_matrix(store, cond["conditions"], outer_counts=run_stats[0][2])
        model = attach_conditional(model, run_stats[0][:2], x, cond["terms"],
                                   cond["conditions"], cond["labels"], cond["rings"],
                                   smoothness=opts.conditional.smoothness)
    if opts.smoothing.method != "none":
        model = smooth_model(model, **opts.smoothing.arguments())
    return model


def _select_stage(store, opts: BuildOptions, obs_ids, on_error, compute_now):
    """Selected runs with header values filled: ``(store, binning, exclusion plan, rejected,
    skipped)``; runs without exposure are skipped (or raise) before they weigh on the grouping."""
    sel, ex = opts.selection, opts.exclusion
    binning = opts.binning.binning()
    excl = plan_exclusion(ex.regions, ex.mode, ex.distance, reach=binning.offset_max,
                          oversample=ex.oversample)
    selected, rejected = select_runs(store, sel.rule, obs_ids=obs_ids, **sel.cuts(),
                                     **excl["select"])
    store = fill_from_headers(store.sel(obs_id=selected), on_error=on_error)
    if sel.site is not None:
        store = _with_site(store, sel.site)
    excl = _with_sources(excl, store, binning, ex.exclude_targets, ex.catalog,
                         ex.catalog_min_radius, ex.catalog_extension_factor, sel.rule,
                         5 if compute_now else 0)
    skipped = ontime_problems(store)
    if skipped:
        if on_error == "raise" or not compute_now:
            raise RunDataError(next(iter(skipped.values())))
        store = store.isel(obs_id=~np.isin(store.obs_id.values, list(skipped)))
        if store.sizes["obs_id"] == 0:
            raise SelectionError("every selected run failed; first error: "
                                 + next(iter(skipped.values())))
    return store, binning, excl, rejected, skipped


def _group_stage(store, options, rejected: dict):
    """``(store, grouping, groups, rejected)``: runs outside every group are rejected."""
    grouping = resolve_grouping(store, *options.arguments())
    groups = grouping["obs_group"].values
    outside = groups < 0
    rejected = dict(rejected)
    if outside.any():
        for obs_id in store.obs_id.values[outside]:
            rejected[int(obs_id)] = "zenith outside the zenith edges"
        store = store.isel(obs_id=~outside)
        groups = groups[~outside]
    if store.sizes["obs_id"] == 0:
        raise SelectionError("no run left after zenith grouping")
    return store, grouping, groups, rejected


def _prepare_runs(store, opts: BuildOptions, binning, excl, *, compute_now, scheduler, progress):
    """The run records of the build and what they need: ``(runs, binning, (extents, extent
    record, peaks), runs with regions, threshold of each OBS_ID, threshold rule, conditional
    setup)``; the binning is cut at the runs' FoV extent when known."""
    runs = [info.with_(event_filter=opts.selection.event_filter,
                       altitude_tolerance=float(opts.selection.altitude_tolerance))
            for info in run_infos(store)]
    policy = opts.thresholds.policy
    binning, extents, extent_record, peaks = _survey_step(
        store, runs, binning, opts.binning.fov_extent, policy, compute_now=compute_now,
        scheduler=scheduler, progress=progress)
    runs, n_runs_excluded = attach_plan(runs, excl, binning.offset_max)  # regions travel along
    thresholds, threshold_rule = run_energy_thresholds(store, policy, peaks=peaks)
    runs = [info.with_(e_threshold=float(thr)) for info, thr in zip(runs, thresholds)]
    threshold_of = dict(zip(store.obs_id.values.tolist(), thresholds.tolist()))
    cond = _conditional_setup(store, opts.conditional.conditions, binning, compute_now)
    return (runs, binning, (extents, extent_record, peaks), n_runs_excluded, threshold_of,
            threshold_rule, cond)


def _provenance(store, opts: BuildOptions, rejected, on_error, threshold_rule, peaks,
                extent_record, exclusion_record) -> dict:
    """The model's provenance record (before the build is computed)."""
    sel, ex = opts.selection, opts.exclusion
    return {
        "store": str(store.attrs.get("base_dir", "")),
        "selection": sel.rule,
        "n_obs_max": sel.n_obs_max,
        "n_rejected": len(rejected),
        "on_error": on_error,
        "energy_threshold": threshold_rule,
        # for xbkg.building.update
        **threshold_provenance(store, opts.thresholds.policy, peaks=peaks),
        "fov_extent": extent_record,
        "exclusion": exclusion_record,
        "event_filter": sel.event_filter,
        **({"site": [float(v) for v in sel.site]} if sel.site is not None else {}),
        **({"exclude_targets": float(ex.exclude_targets)}
           if ex.exclude_targets is not None else {}),
        "run_cuts": {k: v for k, v in sel.cuts().items() if k != "n_obs_max" and v is not None},
    }


def _compute_cubes(cubes, runs, groups, n_groups, binning, cond, excl, store, measure,
                   conditions, on_error, scheduler, progress):
    """The computed cubes ``(counts, exposure, errors, sources, *run_stats)``, the binning and
    conditional setup they were made with, the runs' FoV extents measured in this pass (None
    unless ``measure``) and provenance updates: a measured extent that cuts the binning takes
    a second pass."""
    results = compute(*cubes, scheduler=scheduler, progress=progress)
    if not measure:
        return results, binning, cond, None, {}
    *results, max_offsets = results
    extents = _measured_extents(max_offsets)
    cut, record = _cut_at_extent(binning, extents, MEASURED, runs)
    updates = {"fov_extent": record}
    if cut is not binning:
        binning, runs = cut, [r.with_(exclusion=None) for r in runs]
        runs, n_runs_excluded = attach_plan(runs, excl, binning.offset_max)
        updates["exclusion"] = exclusion_provenance(excl, n_runs_excluded)
        cond = _conditional_setup(store, conditions, binning, True)
        results = compute(*_run_cubes_graph(runs, groups, n_groups, binning, cond, on_error,
                                            True), scheduler=scheduler, progress=progress)
    return results, binning, cond, extents, updates


def _drop_failed(store, groups, skipped: dict, results, cond):
    """Runs that failed in the computed build left out (SelectionError when none is left):
    ``(store, groups, skipped runs, (counts, exposure, sources, *run_stats))``."""
    counts, exposure, errors, sources, *run_stats = results
    errors, sources = list(errors), np.array(sources, dtype=object)
    failed = np.array([e is not None for e in errors])
    skipped = {**skipped, **{int(o): e for o, e, f in zip(store.obs_id.values, errors, failed)
                             if f}}
    advice = geometry_advice(errors, len(errors))
    if advice:  # one message for a store whose site keywords are all wrong
        raise SelectionError(advice)
    if skipped:
        log.warning("skipped %d run(s) that could not be used:\n  %s", len(skipped),
                    "\n  ".join(skipped.values()))
        store, groups, sources = store.isel(obs_id=~failed), groups[~failed], sources[~failed]
        if cond is not None:
            run_stats = [tuple(a[~failed] for a in run_stats[0])]
        if store.sizes["obs_id"] == 0:
            raise SelectionError("every selected run failed; first error: "
                                 + next(iter(skipped.values())))
    return store, groups, skipped, (counts, exposure, sources, *run_stats)


def _runs_dataset(store, groups, threshold_of: dict, sources, extents, all_ids) -> xr.Dataset:
    """The model's per-run variables (``obs_*``) of the runs in ``store``."""
    ids = store.obs_id.values.tolist()
    runs_ds = xr.Dataset(
        {"obs_group": ("obs_id", groups),
         "obs_ontime": ("obs_id", store["ontime"].values.astype(float), {"units": "s"}),
         "obs_zenith": ("obs_id", store["zenith"].values.astype(float), {"units": "deg"}),
         "obs_energy_threshold": ("obs_id", [threshold_of[o] for o in ids], {"units": "TeV"})},
        coords={"obs_id": store.obs_id.values},
    )
    if sources is not None:
        runs_ds["obs_pointing_source"] = ("obs_id", sources.astype(str), {
            "description": "where the run's pointing came from: " + " or ".join(POINTING_SOURCES)})
    if extents is not None:
        extent_of = dict(zip(all_ids, extents.tolist()))
        runs_ds["obs_fov_extent"] = ("obs_id", [extent_of[o] for o in ids],
                                     {"units": "deg", "long_name": "FoV extent of the run "
                                      "(largest event offset, or obs-index OFFSET_MAX)"})
    return runs_ds


def _conditional_setup(store, conditions, binning: Binning, compute_now: bool):
    """Terms and fit bins of a conditional fit (None without ``conditions``)."""
    if conditions is None:
        return None

    if not compute_now:
        raise ValueError("a conditional model (conditions=...) needs compute_now=True")
    names = parse_conditions(conditions)
    # checks names and values up front (outer_rate: counted in the pass, a placeholder here)
    _, terms = condition_matrix(store, names, outer_counts=np.ones(store.sizes["obs_id"]))
    labels, rings = fit_bin_labels(binning.kind, binning.fov_edges, binning.offset_max)
    return {"conditions": names, "terms": terms, "labels": labels, "rings": rings}
