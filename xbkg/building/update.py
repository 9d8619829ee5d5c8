"""Incremental updates: add runs to a model without re-reading the runs it already holds.

:func:`update_model` builds a partial model of the new runs with the model's recorded options
(:func:`model_options`) and :func:`merge_models` adds counts and exposure, so the result equals a
full rebuild (counts bitwise, rates to about 1e-16). What an update does not redo, and what it
refuses (:class:`UpdateError`): docs/architecture.rst.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import xarray as xr

from xbkg.building.conditional import is_conditional, merge_conditional, strip_conditional
from xbkg.building.make import make_binning, make_model
from xbkg.building.options import (
    BinningOptions,
    GroupingOptions,
    SmoothingOptions,
    build_options,
)
from xbkg.core.binning import edges_of, parse_edges
from xbkg.core.circles import SkyCircles
from xbkg.core.schema import assemble_model, fov_dims
from xbkg.model.smoothing import smooth_model
from xbkg.store.conditions import parse_conditions
from xbkg.store.datastore import open_datastore, takes_store
from xbkg.store.selection import SelectionError

__all__ = ["UpdateError", "model_options", "check_compatible", "merge_models", "update_model"]

log = logging.getLogger(__name__)

#: Provenance entries that must be equal in two models to be merged.
MERGE_KEYS = ("selection", "run_cuts", "energy_threshold_policy", "zenith_rule", "event_filter")


class UpdateError(ValueError):
    """A model cannot be updated with these runs or merged with that model."""


#: Run-cut keywords of make_model a model's provenance may record (nothing else is passed on).
RUN_CUT_KEYS = ("where", "min_n_tels", "min_muoneff", "max_quality", "zenith_range")
#: Type of each provenance entry this module reads.
_PROVENANCE_TYPES = {"selection": str, "run_cuts": dict, "exclusion": dict,
                     "energy_threshold_policy": (str, dict, int, float), "skipped_runs": dict}


def _provenance(model: xr.Dataset) -> dict:
    try:
        prov = json.loads(model.attrs.get("provenance", "{}") or "{}")
    except (json.JSONDecodeError, TypeError) as exc:
        raise UpdateError(f"the model's provenance is not JSON: {exc}") from None
    return _check_provenance(prov)


def _check_provenance(prov) -> dict:
    """The provenance record if it has the expected shape, else UpdateError saying what is off."""
    if not isinstance(prov, dict):
        raise UpdateError(f"the model's provenance is a JSON {type(prov).__name__}, not an object")
    for key, kind in _PROVENANCE_TYPES.items():
        if prov.get(key) is not None and not isinstance(prov[key], kind):
            raise UpdateError(f"the model's provenance entry {key!r} has the wrong type "
                              f"({type(prov[key]).__name__})")
    unknown = sorted(set(prov.get("run_cuts") or {}) - set(RUN_CUT_KEYS))
    if unknown:
        raise UpdateError(f"the model's provenance run_cuts has unknown keys {unknown} (known: "
                          f"{list(RUN_CUT_KEYS)})")
    return prov


def _threshold_option(prov: dict):
    """The ``energy_threshold`` argument that reproduces the model's thresholds."""
    if "energy_threshold_policy" in prov:
        return {k: prov[k] for k in ("energy_threshold_policy", "zenith_rule") if k in prov}
    described = str(prov.get("energy_threshold", "none"))  # models built before the record
    if described == "none":
        return "none"
    if described.startswith("fixed ") and described.endswith(" TeV"):
        return float(described[6:-4])
    raise UpdateError(f"the model does not record its energy-threshold policy ({described!r}); "
                      "rebuild it with this version of xbkg to update it")


def _exclusion_options(prov: dict) -> dict:
    record = prov.get("exclusion") or {"mode": "none"}
    if record.get("mode", "none") == "none":
        return {}

    out = {"exclusion": SkyCircles.from_dict(record["regions"]), "exclusion_mode": record["mode"]}
    if "distance_deg" in record:
        out["exclusion_distance"] = float(record["distance_deg"])
    if "oversample" in record:
        out["exclusion_oversample"] = int(record["oversample"])
    return out


def model_options(model: xr.Dataset) -> dict:
    """:func:`xbkg.make_model` keyword arguments that reproduce the model's binning, groups,
    run selection and cuts, energy thresholds and exclusion regions.

    ``grouping`` is the model's own groups (a coordinates-only copy of the model), so runs
    are assigned by its group bounds.
    """
    kind = model.attrs.get("kind")
    if kind not in ("2d", "3d"):
        raise UpdateError(f"not an xbkg model (attr kind={kind!r})")
    prov = _provenance(model)
    opts = {"kind": kind, "fov_alignment": str(model.attrs["fov_alignment"]).lower(),
            "energy_edges": edges_of(model, "energy"),
            "offset_max": float(model.attrs["offset_max"])}
    if kind == "2d":
        opts["offset_edges"] = edges_of(model, "offset")
    else:
        opts["fov_edges"] = {d: edges_of(model, d) for d in ("detx", "dety")}
    opts["grouping"] = model.drop_vars(list(model.data_vars))
    opts["selection"] = prov.get("selection", "all")
    cuts = dict(prov.get("run_cuts") or {})
    if "zenith_range" in cuts:
        cuts["zenith_range"] = tuple(cuts["zenith_range"])
    opts.update(cuts)
    opts["energy_threshold"] = _threshold_option(prov)
    opts.update(_exclusion_options(prov))
    if prov.get("event_filter"):
        opts["event_filter"] = prov["event_filter"]
    if prov.get("site"):
        opts["site"] = tuple(prov["site"])
    return opts


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.all((a == b) | ((a != a) & (b != b))))
    return a == b


def _differences(old: xr.Dataset, new: xr.Dataset) -> list[str]:
    """What differs between two models' binning, groups and options (empty: mergeable)."""
    out = []
    for key in ("kind", "fov_alignment", "offset_max", "rate_floor", "group_by"):
        a, b = old.attrs.get(key), new.attrs.get(key)
        if not _same(a, b):
            out.append(f"{key}: {a!r} != {b!r}")
    if out[:1] and out[0].startswith("kind"):
        return out
    for d in ("energy",) + fov_dims(old.attrs["kind"]):
        if not _same(edges_of(old, d), edges_of(new, d)):
            out.append(f"{d} edges differ")
    bounds = sorted({str(c) for m in (old, new) for c in m.coords if str(c).endswith("_bounds")
                     and "zenith_group" in m[c].dims})
    for name in bounds:
        if name not in old.coords or name not in new.coords or \
                not _same(old[name].values, new[name].values):
            out.append(f"group bounds {name} differ")
    pa, pb = _provenance(old), _provenance(new)
    for key in MERGE_KEYS:
        if not _same(pa.get(key), pb.get(key)):
            out.append(f"{key}: {pa.get(key)!r} != {pb.get(key)!r}")
    ea, eb = (dict(p.get("exclusion") or {"mode": "none"}) for p in (pa, pb))
    ea.pop("n_runs_with_regions", None)
    eb.pop("n_runs_with_regions", None)
    if not _same(ea, eb):
        out.append("exclusion regions or options differ")
    return out


def _require_raw(model: xr.Dataset, name: str = "model") -> None:
    missing = [v for v in ("counts", "exposure", "obs_group") if v not in model]
    if missing:
        raise UpdateError(f"the {name} has no {', '.join(missing)}: only models built by xbkg "
                          "(netCDF, with raw counts and exposure) can be updated")


def check_compatible(old: xr.Dataset, new: xr.Dataset) -> None:
    """Raise :class:`UpdateError` unless ``new`` can be added to ``old``: same binning,
    alignment, groups and options, raw counts and exposure in both, no run in both."""
    _require_raw(old)
    _require_raw(new, "new model")
    problems = _differences(old, new)
    if problems:
        raise UpdateError("the models differ: " + "; ".join(problems))
    both = np.intersect1d(old["obs_id"].values, new["obs_id"].values)
    if both.size:
        raise UpdateError(f"{both.size} run(s) already in the model: {both[:20].tolist()}")


def _merged_runs(old: xr.Dataset, new: xr.Dataset) -> xr.Dataset:
    """The ``obs_*`` variables of both models on one ``obs_id`` axis, sorted by OBS_ID."""
    names = [str(v) for v in old.data_vars if str(v).startswith("obs_")]
    names += [str(v) for v in new.data_vars if str(v).startswith("obs_") and v not in old]
    obs_id = np.concatenate([old["obs_id"].values, new["obs_id"].values]).astype("int64")
    order = np.argsort(obs_id, kind="stable")
    data = {}
    for name in names:
        parts = []
        for m in (old, new):
            if name in m:
                parts.append(np.asarray(m[name].values))
            else:  # a variable only one model has (older models): missing for the other's runs
                parts.append(np.full(m.sizes["obs_id"], np.nan))
        template = (old if name in old else new)[name]
        data[name] = ("obs_id", np.concatenate(parts)[order], dict(template.attrs))
    return xr.Dataset(data, coords={"obs_id": obs_id[order]})


def _merged_provenance(old: xr.Dataset, new: xr.Dataset, n_runs: int) -> dict:
    pa, pb = _provenance(old), _provenance(new)
    out = dict(pa)
    out["n_runs"] = int(n_runs)
    skipped = {**pa.get("skipped_runs", {}), **pb.get("skipped_runs", {})}
    if skipped or "skipped_runs" in pa:
        out["skipped_runs"] = skipped
    if isinstance(out.get("exclusion"), dict) and "n_runs_with_regions" in out["exclusion"]:
        out["exclusion"] = dict(out["exclusion"], n_runs_with_regions=int(
            pa["exclusion"]["n_runs_with_regions"]) + int(
            (pb.get("exclusion") or {}).get("n_runs_with_regions", 0)))
    out["updates"] = list(pa.get("updates", [])) + [
        {"store": pb.get("store", ""), "n_runs_added": int(new.sizes["obs_id"]),
         "n_rejected": int(pb.get("n_rejected", 0)),
         "energy_threshold": pb.get("energy_threshold", "")}]
    return out


def _smooth_again(model: xr.Dataset, record: str) -> xr.Dataset:
    return smooth_model(model, **SmoothingOptions.from_record(json.loads(record)).arguments())


def merge_models(old: xr.Dataset, new: xr.Dataset) -> xr.Dataset:
    """The model of the runs of both models: counts and exposure added, rate recomputed.

    Both must have the same binning, alignment, groups and options
    (:func:`check_compatible`) and no run in common; smoothing does not matter (it leaves the
    raw counts and exposure alone): the result is smoothed as ``old`` was, with the same
    method and options. The result keeps ``old``'s attributes and provenance, updated:
    ``n_runs``, ``skipped_runs`` and an ``updates`` list recording each merge (store, runs
    added, runs rejected). Conditional models (:mod:`xbkg.building.conditional`) are refitted on the
    per-run statistics both carry.
    """

    if is_conditional(old) or is_conditional(new):
        if not (is_conditional(old) and is_conditional(new)):
            raise UpdateError("a conditional model merges only with a conditional model")
        merged = merge_models(strip_conditional(old), strip_conditional(new))
        return merge_conditional(old, new, merged)
    check_compatible(old, new)
    kind = old.attrs["kind"]
    dims = ("zenith_group", "energy") + fov_dims(kind)
    counts = old["counts"].transpose(*dims).values + new["counts"].transpose(*dims).values
    exposure = old["exposure"].transpose(*dims).values + new["exposure"].transpose(*dims).values
    runs = _merged_runs(old, new)
    fov_edges = {d: edges_of(old, d) for d in fov_dims(kind)}
    merged = assemble_model(
        counts, exposure, kind=kind, energy_edges=edges_of(old, "energy"), fov_edges=fov_edges,
        zenith_edges=old["zenith_bounds"].transpose("zenith_group", ...).values,
        fov_alignment=old.attrs["fov_alignment"], offset_max=float(old.attrs["offset_max"]),
        runs=runs, provenance=_merged_provenance(old, new, runs.sizes["obs_id"]),
        relative_floor=float(old.attrs.get("rate_floor", 0.0)))
    extra = {str(c): old[c].variable for c in old.coords if str(c).endswith("_bounds")
             and "zenith_group" in old[c].dims and c not in merged.coords}
    merged = merged.assign_coords(extra)
    for key, value in old.attrs.items():  # grouping, group_by and attrs of other stages
        merged.attrs.setdefault(key, value)
    if old.attrs.get("smoothing"):
        merged = _smooth_again(merged, old.attrs["smoothing"])
    return merged


_EXPECTED = ("kind", "fov_alignment", "energy_edges", "offset_edges", "fov_edges", "offset_max",
             "zenith_edges")


def _check_expected(model: xr.Dataset, expected: dict) -> None:
    """Refuse binning options that differ from the model's (each given one is compared; a
    ``binning`` or ``grouping`` option object stands for all its fields)."""

    expected = dict(expected)
    for name, kind in (("binning", BinningOptions), ("grouping", GroupingOptions)):
        given = expected.pop(name, None)
        if given is not None:
            if not isinstance(given, kind):
                raise TypeError(f"update_model: {name} must be a {kind.__name__}")
            expected = {**{k: getattr(given, k) for k in _EXPECTED if hasattr(given, k)},
                        **expected}
    unknown = set(expected) - set(_EXPECTED)
    if unknown:
        raise TypeError(f"update_model got unexpected options {sorted(unknown)}; "
                        f"binning options to check are {_EXPECTED}")
    given = {k: v for k, v in expected.items() if v is not None}
    if not given:
        return
    opts = model_options(model)
    problems = []
    for key in ("kind", "fov_alignment"):
        if key in given and str(given[key]).lower() != opts[key]:
            problems.append(f"{key} {given[key]!r} (model: {opts[key]!r})")
    if "zenith_edges" in given:
        edges = parse_edges(given["zenith_edges"], name="zenith edges")
        bounds = np.stack([edges[:-1], edges[1:]], axis=1)
        if not _same(bounds, model["zenith_bounds"].transpose("zenith_group", ...).values):
            problems.append("zenith edges (groups) differ from the model's")
    binning_keys = ("energy_edges", "offset_edges", "fov_edges", "offset_max")
    if not problems and any(k in given for k in binning_keys):
        kind = str(given.get("kind", opts["kind"])).lower()
        wanted = make_binning(kind, str(given.get("fov_alignment", opts["fov_alignment"])),
                              **{k: given.get(k, opts.get(k)) for k in binning_keys})
        ours = make_binning(opts["kind"], opts["fov_alignment"],
                            **{k: opts.get(k) for k in binning_keys})
        if not _same(wanted.energy_edges, ours.energy_edges):
            problems.append("energy edges differ from the model's")
        if wanted.kind == ours.kind and not _same(wanted.fov_edges, ours.fov_edges):
            problems.append("FoV edges differ from the model's")
        if wanted.offset_max != ours.offset_max:
            problems.append(f"offset_max {wanted.offset_max} (model: {ours.offset_max})")
    if problems:
        raise UpdateError("the update's options differ from the model's: " + "; ".join(problems))


def _conditional_options(model: xr.Dataset, conditions) -> dict:
    """``make_model`` options for the new runs of a conditional model (checks ``conditions``)."""

    if not is_conditional(model):
        if conditions is not None:
            raise UpdateError("the model has no conditional fit (no per-run statistics of its "
                              "runs): rebuild it with make-models --conditions")
        return {}
    info = json.loads(model.attrs["conditional"])
    if conditions is not None and parse_conditions(conditions) != info["conditions"]:
        raise UpdateError(f"conditions {parse_conditions(conditions)} differ from the model's "
                          f"{info['conditions']}: rebuild it to change them")
    # the new runs' own fit is discarded (refitted with all runs): a fixed penalty suffices
    return {"conditions": info["conditions"], "smoothness": info["smoothness"]}


@takes_store("data")
def update_model(model: xr.Dataset, data, obs_ids=None, *, scheduler=None,
                 progress: bool = False, on_error: str = "skip", conditions=None,
                 **expected) -> xr.Dataset:
    """Add runs of a store to a model, reading only the new runs.

    Parameters
    ----------
    model : xarray.Dataset
        A model built by :func:`xbkg.make_model` (or an earlier update), with its raw
        ``counts`` and ``exposure``, e.g. from :func:`xbkg.open_model` on its netCDF file.
    data : str, Path or xarray.Dataset
        The store holding the new runs (directory or :func:`xbkg.open_datastore` Dataset).
    obs_ids : list of int, optional
        The runs to add; default: every run of the store that is not in the model. The
        model's selection, cuts, groups and thresholds apply to them as in a full build, so
        some may be rejected.
    scheduler, progress, on_error
        As for :func:`xbkg.make_model`.
    conditions : str or list, optional
        The conditions of a conditional model (:mod:`xbkg.building.conditional`), to check: they must
        be the model's (a plain model cannot become conditional without reading its runs
        again: rebuild it). A conditional model is refitted on old and new runs either way.
    **expected
        Binning options to check (``kind``, ``fov_alignment``, ``energy_edges``,
        ``offset_edges``, ``fov_edges``, ``offset_max``, ``zenith_edges``, or ``binning`` and
        ``grouping`` option objects of :mod:`xbkg.building.options`, which stand for all their
        fields): each one given must describe the model's own binning, otherwise
        :class:`UpdateError`. The new runs are built with the options the model records
        (:func:`model_options`), as the same option objects :func:`xbkg.make_model` takes.

    Returns
    -------
    xarray.Dataset
        The updated model (module docstring).

    Raises
    ------
    UpdateError
        A requested run is already in the model, or the options or the model do not allow an
        update (module docstring).
    xbkg.store.selection.SelectionError
        No requested run passes the model's selection.
    """

    _require_raw(model)
    _check_expected(model, expected)
    opts = build_options(**model_options(model), **_conditional_options(model, conditions))
    store = data if isinstance(data, xr.Dataset) else open_datastore(data)
    have = model["obs_id"].values
    if obs_ids is None:
        obs_ids = store.obs_id.values[~np.isin(store.obs_id.values, have)]
        if not obs_ids.size:
            raise SelectionError("every run of the store is in the model already; nothing to add")
    obs_ids = np.unique(np.asarray(obs_ids, dtype="int64"))
    already = obs_ids[np.isin(obs_ids, have)]
    if already.size:
        raise UpdateError(f"{already.size} run(s) already in the model: {already[:20].tolist()} "
                          "(an update adds new runs only)")
    new = make_model(store, obs_ids=obs_ids, scheduler=scheduler, progress=progress,
                     on_error=on_error, **opts.arguments())
    prov = _provenance(new)  # rejected among the requested runs, not among the whole store
    prov["n_rejected"] = int(obs_ids.size - new.sizes["obs_id"])
    new.attrs["provenance"] = json.dumps(prov, sort_keys=True)
    log.info("adding %d run(s) to a model of %d", new.sizes["obs_id"], model.sizes["obs_id"])
    return merge_models(model, new)
