"""Building a model: store -> selection -> groups -> counts and exposure -> rate Dataset.

:func:`make_model` is the convenience that strings the stages together; each stage is a
module of its own (:mod:`~xbkg.datastore`, :mod:`~xbkg.selection`, :mod:`~xbkg.grouping`,
:mod:`~xbkg.histogram`, :mod:`~xbkg.exposure`, :mod:`~xbkg.model`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from .binning import parse_edges
from .datastore import open_datastore
from .events import POINTING_SOURCES, RunDataError, fill_from_headers, run_infos
from .exclusion import DEFAULT_OVERSAMPLE, attach_plan, exclusion_provenance, plan_exclusion
from .exposure import annulus_solid_angle, box_solid_angle
from .grouping import attach_grouping, resolve_grouping
from .histogram import Binning
from .model import assemble_model
from .parallel import compute
from .reduce import group_cubes
from .selection import SelectionError, select_runs
from .thresholds import run_energy_thresholds, threshold_provenance
from .validate import ontime_problems

__all__ = ["DEFAULT_ENERGY_EDGES", "DEFAULT_OFFSET_EDGES", "DEFAULT_FOV_EDGES", "make_binning",
           "make_model"]

log = logging.getLogger(__name__)

DEFAULT_ENERGY_EDGES = "0.1:100:20"
DEFAULT_OFFSET_EDGES = "0:2.5:10"
DEFAULT_FOV_EDGES = "-2.5:2.5:25"


def make_binning(kind: str = "3d", fov_alignment: str = "altaz", *, energy_edges=None,
                 offset_edges=None, fov_edges=None, offset_max=None) -> Binning:
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
                         log=True, name="energy edges")
    if kind == "2d":
        offset = parse_edges(DEFAULT_OFFSET_EDGES if offset_edges is None else offset_edges,
                             name="offset edges")
        if offset[0] < 0:
            raise ValueError(f"offset edges must be >= 0, got {offset}")
        fov = {"offset": offset}
        default_max = offset[-1]
    else:
        spec = DEFAULT_FOV_EDGES if fov_edges is None else fov_edges
        if isinstance(spec, dict):
            fov = {d: parse_edges(spec[d], name=f"{d} edges") for d in ("detx", "dety")}
        else:
            edges = parse_edges(spec, name="fov edges")
            fov = {"detx": edges, "dety": edges}
        default_max = min(min(abs(e[0]), abs(e[-1])) for e in fov.values())
    omax = float(default_max if offset_max is None else offset_max)
    if not omax > 0:
        raise ValueError(f"offset_max must be > 0 deg, got {omax}")
    return Binning(kind=kind, fov_alignment=align, energy_edges=energy, fov_edges=fov,
                   offset_max=omax)


def _solid_angle(binning: Binning) -> np.ndarray:
    if binning.kind == "2d":
        return annulus_solid_angle(binning.fov_edges["offset"], binning.offset_max)
    return box_solid_angle(binning.fov_edges["detx"], binning.fov_edges["dety"], binning.offset_max)


def make_model(data, *, kind: str = "3d", fov_alignment: str = "altaz", energy_edges=None,
               offset_edges=None, fov_edges=None, zenith_edges=None, obs_ids=None,
               selection: str = "all", n_obs_max: int | None = None, offset_max: float | None = None,
               compute_now: bool = True, scheduler=None, progress: bool = False,
               on_error: str = "skip", grouping=None, energy_threshold="none",
               zenith_range=None, where: str | None = None, min_n_tels=None, min_muoneff=None,
               max_quality=None, exclusion=None, exclusion_mode: str = "regions",
               exclusion_distance: float | None = None,
               exclusion_oversample: int = DEFAULT_OVERSAMPLE) -> xr.Dataset:
    """Build a background model from a GADF DL3 store.

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
        Run selection, see :func:`xbkg.selection.select_runs`.
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
        to energy bins whose lower edge is at or above its threshold. "none" (default): no
        threshold (this function's default; ``xbkg make-models`` defaults to "safe");
        "safe": SAFE_ENERGY_LO of the obs table, else the zenith rule; "zenith": the zenith
        rule; a number: one threshold in TeV. Energy slices left without exposure follow the
        policy of :mod:`xbkg.model`.
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

    Returns
    -------
    xarray.Dataset
        The model, laid out as documented in :mod:`xbkg.model`.
    """
    store = data if isinstance(data, xr.Dataset) else open_datastore(data)
    binning = make_binning(kind, fov_alignment, energy_edges=energy_edges,
                           offset_edges=offset_edges, fov_edges=fov_edges, offset_max=offset_max)
    excl = plan_exclusion(exclusion, exclusion_mode, exclusion_distance, reach=binning.offset_max,
                          oversample=exclusion_oversample)
    selected, rejected = select_runs(store, selection, obs_ids=obs_ids, n_obs_max=n_obs_max,
                                     zenith_range=zenith_range, where=where,
                                     min_n_tels=min_n_tels, min_muoneff=min_muoneff,
                                     max_quality=max_quality, **excl["select"])
    store = fill_from_headers(store.sel(obs_id=selected), on_error=on_error)
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
    n_groups = grouping.sizes["zenith_group"]
    runs = run_infos(store)
    n_runs_excluded = attach_plan(runs, excl, binning.offset_max)  # regions travel with each run
    thresholds, threshold_rule = run_energy_thresholds(store, energy_threshold)
    for info, thr in zip(runs, thresholds):
        info["e_threshold"] = float(thr)
    threshold_of = dict(zip(store.obs_id.values.tolist(), thresholds.tolist()))
    counts, exposure, errors, sources = group_cubes(
        runs, groups, n_groups, binning, _solid_angle(binning),
        on_error=on_error if compute_now else "raise", pointing=True)
    provenance = {
        "store": str(store.attrs.get("base_dir", "")),
        "selection": selection,
        "n_obs_max": n_obs_max,
        "n_rejected": len(rejected),
        "on_error": on_error,
        "energy_threshold": threshold_rule,
        **threshold_provenance(store, energy_threshold),  # lets xbkg.update extend the model
        "exclusion": exclusion_provenance(excl, n_runs_excluded),
        "run_cuts": {k: v for k, v in (("zenith_range", zenith_range), ("where", where),
                                       ("min_n_tels", min_n_tels), ("min_muoneff", min_muoneff),
                                       ("max_quality", max_quality)) if v is not None},
    }
    if compute_now:
        counts, exposure, errors, sources = compute(counts, exposure, errors, sources,
                                                    scheduler=scheduler, progress=progress)
        errors, sources = list(errors), np.array(sources, dtype=object)
        failed = np.array([e is not None for e in errors])
        skipped.update({int(o): e for o, e, f in zip(store.obs_id.values, errors, failed) if f})
        if skipped:
            log.warning("skipped %d run(s) that could not be used:\n  %s", len(skipped),
                        "\n  ".join(skipped.values()))
            store, groups, ontime = store.isel(obs_id=~failed), groups[~failed], ontime[~failed]
            sources = sources[~failed]
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
    model = assemble_model(counts, exposure, kind=binning.kind, energy_edges=binning.energy_edges,
                           fov_edges=binning.fov_edges, zenith_edges=grouping["zenith_bounds"].values,
                           fov_alignment=binning.fov_alignment, offset_max=binning.offset_max,
                           runs=runs_ds, provenance=provenance)
    return attach_grouping(model, grouping)
