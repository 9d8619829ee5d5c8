"""The options of a model build, grouped in small frozen objects.

:func:`xbkg.make_model`, :func:`xbkg.update_model`, :func:`xbkg.checks.crossval.validate` and
``xbkg make-models`` build and pass the same objects: :class:`BinningOptions`,
:class:`SelectionOptions`, :class:`GroupingOptions`, :class:`ThresholdOptions`,
:class:`ExclusionOptions`, :class:`SmoothingOptions` and :class:`ConditionalOptions`. Each takes
its defaults from :data:`xbkg.core.defaults.DEFAULTS` and checks its own values (a ValueError
naming the option). :func:`build_options` routes ``make_model``'s keyword shortcuts
(``kind="2d"``, ``energy_threshold="safe"``, ...) into them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from xbkg.building.grouping import GroupingError
from xbkg.building.thresholds import threshold_policy
from xbkg.core.binning import Binning, parse_edges
from xbkg.core.defaults import DEFAULTS as D
from xbkg.core.numbers import is_number
from xbkg.model.smoothing import SMOOTH_METHODS
from xbkg.sky.exclusion import EXCLUSION_MODES
from xbkg.store.conditions import parse_conditions
from xbkg.store.selection import (
    SELECTIONS,
    SelectionError,
    WhereError,
    event_filter_columns,
)

__all__ = ["BinningOptions", "SelectionOptions", "GroupingOptions", "ThresholdOptions",
           "ExclusionOptions", "SmoothingOptions", "ConditionalOptions", "BuildOptions",
           "SHORTCUTS", "build_options", "record_keywords", "check_site", "make_binning", "parse_fov_extent", "MAX_CUBE_BINS"]

#: Most bins of one model cube (energy x FoV): 2e7 float64 cells are 160 MB per array and group.
MAX_CUBE_BINS = 20_000_000


def make_binning(kind: str = D.kind, fov_alignment: str = D.fov_alignment, *,
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
    energy = parse_edges(D.energy_edges if energy_edges is None else energy_edges,
                         log=True, name="energy edges", limits=(1e-6, 1e6))
    if kind == "2d":
        offset = parse_edges(D.offset_edges if offset_edges is None else offset_edges,
                             name="offset edges", limits=(0, 180))
        if offset[0] < 0:
            raise ValueError(f"offset edges must be >= 0, got {offset}")
        fov = {"offset": offset}
        default_max = offset[-1]
    else:
        spec = D.fov_edges if fov_edges is None else fov_edges
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


def _check_cube_size(energy, fov) -> None:
    """Refuse a binning whose cube would not fit in memory, before anything is allocated."""
    shape = [energy.size - 1] + [e.size - 1 for e in fov.values()]
    cells = math.prod(shape)
    if cells > MAX_CUBE_BINS:
        raise ValueError(
            f"binning of {' x '.join(map(str, shape))} = {cells:.3g} bins would need "
            f"{cells * 8 / 2**30:.3g} GiB per array and zenith group; at most {MAX_CUBE_BINS:.3g} "
            "bins: use fewer --energy-edges/--fov-edges bins")


def parse_fov_extent(fov_extent):
    """``"auto"``, ``"none"`` or a positive float (deg), else ValueError naming fov_extent."""
    if isinstance(fov_extent, str) and fov_extent.strip().lower() in ("auto", "none"):
        return fov_extent.strip().lower()
    try:
        value = float(fov_extent)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"fov_extent must be 'auto', 'none' or an offset > 0 deg, got {fov_extent!r}")
    return value


def check_site(site) -> tuple[float, float, float]:
    """``site`` as (lon deg, lat deg, height m) floats, else ValueError naming ``site``."""
    try:
        lon, lat, height = (float(v) for v in site)
    except (TypeError, ValueError):
        raise ValueError(f"site must be (lon deg, lat deg, height m), got {site!r}") from None
    if not (abs(lat) <= 90 and abs(lon) <= 360 and abs(height) <= 1e5):  # NaN fails too
        raise ValueError(f"site must be (lon deg, lat deg, height m), got {site!r}")
    return lon, lat, height


def _check(ok: bool, name: str, wanted: str, value, error=ValueError) -> None:
    if not ok:
        raise error(f"{name} must be {wanted}, got {value!r}")


@dataclass(frozen=True)
class BinningOptions:
    """Model kind, FoV alignment, bin edges (specs as arrays or ``"lo:hi:n"``), offset cut (deg,
    None: edge of the binning) and where the runs' FoV stops (``fov_extent``).

    >>> BinningOptions(kind="2d", offset_edges="0:2:8").binning().offset_max
    2.0
    """

    kind: str = D.kind
    fov_alignment: str = D.fov_alignment
    energy_edges: object = D.energy_edges
    offset_edges: object = D.offset_edges
    fov_edges: object = D.fov_edges
    offset_max: float | None = D.offset_max
    fov_extent: object = D.fov_extent

    def __post_init__(self):
        self.binning()
        parse_fov_extent(self.fov_extent)

    def binning(self) -> Binning:
        """The checked :class:`~xbkg.building.histogram.Binning` (:func:`make_binning`)."""
        return make_binning(self.kind, self.fov_alignment, energy_edges=self.energy_edges,
                            offset_edges=self.offset_edges, fov_edges=self.fov_edges,
                            offset_max=self.offset_max)


@dataclass(frozen=True)
class SelectionOptions:
    """Which runs and events: the run ``rule`` ("off", "offplane", "all"), ``n_obs_max``, run cuts
    (:func:`xbkg.store.selection.select_runs`), an ``event_filter`` on EVENTS columns, the
    ``site`` of every run (lon deg, lat deg, height m) and the Alt/Az ``altitude_tolerance``."""

    rule: str = D.selection
    n_obs_max: int | None = None
    zenith_range: tuple | None = None
    where: str | None = None
    min_n_tels: float | None = None
    min_muoneff: float | None = None
    max_quality: float | None = None
    event_filter: str | None = None
    site: tuple | None = None
    altitude_tolerance: float = D.altitude_tolerance

    def __post_init__(self):
        if self.rule not in SELECTIONS:
            raise SelectionError(f"selection must be one of {SELECTIONS}, got {self.rule!r}")
        if self.n_obs_max is not None and not is_number(self.n_obs_max, 1, inclusive=True):
            raise SelectionError(f"n_obs_max must be >= 1, got {self.n_obs_max}")
        if self.zenith_range is not None:
            try:
                lo, hi = (float(z) for z in self.zenith_range)
            except (TypeError, ValueError):
                raise SelectionError(f"zenith_range must be (lo, hi) in deg, got "
                                     f"{self.zenith_range!r}") from None
            if not lo <= hi:
                raise SelectionError(f"zenith_range must have lo <= hi, got {self.zenith_range!r}")
        if self.event_filter is not None:  # refuse a bad expression before reading any run
            try:
                event_filter_columns(self.event_filter)
            except WhereError as exc:
                raise WhereError(f"event filter (--event-filter, event_filter=): {exc}") from None
        if self.site is not None:
            check_site(self.site)
        _check(is_number(self.altitude_tolerance, 0, inclusive=True), "altitude_tolerance", "a number >= 0 deg",
               self.altitude_tolerance)

    def cuts(self) -> dict:
        """The run-cut keyword arguments of :func:`xbkg.store.selection.select_runs`."""
        return {"n_obs_max": self.n_obs_max, "zenith_range": self.zenith_range,
                "where": self.where, "min_n_tels": self.min_n_tels,
                "min_muoneff": self.min_muoneff, "max_quality": self.max_quality}


@dataclass(frozen=True)
class GroupingOptions:
    """Run groups: fixed ``zenith_edges`` (deg, None: one group 0-90), or adaptive zenith groups
    (``min_ontime`` s, ``min_runs``, ``cos_zenith_step``, ``zenith_range``), optionally per
    cell of ``by`` (obs-table column -> edges); or ``reuse`` a grouping (a grouping Dataset, a
    model, or a ``bg_observation_groups.ecsv`` file). See :mod:`xbkg.building.grouping`."""

    zenith_edges: object = D.zenith_edges
    adaptive: bool = False
    min_ontime: float = D.min_ontime
    min_runs: int = D.min_runs
    cos_zenith_step: float = D.cos_zenith_step
    zenith_range: tuple = (0.0, 90.0)
    by: dict | None = None
    reuse: object = None

    def __post_init__(self):
        if self.zenith_edges is not None:
            parse_edges(self.zenith_edges, name="zenith edges")
        if self.adaptive and self.zenith_edges is not None:
            raise GroupingError("give either fixed zenith_edges or adaptive=True, not both")
        if self.reuse is not None and (self.adaptive or self.by):
            raise GroupingError("a reused grouping (grouping=...) takes no adaptive or by options")
        _check(is_number(self.min_ontime, 0, inclusive=True), "min_ontime", "a time >= 0 s", self.min_ontime,
               GroupingError)
        _check(is_number(self.min_runs, 0, inclusive=True), "min_runs", "an integer >= 0", self.min_runs,
               GroupingError)
        _check(is_number(self.cos_zenith_step, 0) and float(self.cos_zenith_step) <= 1,
               "cos_zenith_step", "in (0, 1]", self.cos_zenith_step, GroupingError)

    def arguments(self) -> tuple:
        """``(zenith_edges, grouping)`` of :func:`xbkg.building.grouping.resolve_grouping`."""
        if self.reuse is not None:
            return self.zenith_edges, self.reuse
        return self.zenith_edges, {
            "adaptive": bool(self.adaptive), "min_ontime": self.min_ontime,
            "min_runs": self.min_runs, "cos_zenith_step": self.cos_zenith_step,
            "zenith_range": self.zenith_range, "by": self.by}


@dataclass(frozen=True)
class ThresholdOptions:
    """Per-run energy thresholds (:mod:`xbkg.building.thresholds`): ``policy`` "none", "safe",
    "zenith", an energy in TeV, or a model's recorded policy (a dict, for updates)."""

    policy: object = D.energy_threshold

    def __post_init__(self):
        if isinstance(self.policy, dict):
            if "energy_threshold_policy" not in self.policy:
                raise ValueError("energy_threshold record needs 'energy_threshold_policy', got "
                                 f"{self.policy!r}")
            threshold_policy(self.policy["energy_threshold_policy"])
        else:
            threshold_policy(self.policy)


@dataclass(frozen=True)
class ExclusionOptions:
    """Excluded sky circles (:mod:`xbkg.sky.exclusion`): ``regions`` (files, SkyCircles, dicts),
    ``mode`` ("regions" or "runs"), ``distance`` (deg, for "runs"), ``oversample``; circles
    around the runs' targets (``exclude_targets``, a radius in deg) and the sources of a
    ``catalog`` (:mod:`xbkg.building.sources`)."""

    regions: object = None
    mode: str = D.exclusion_mode
    distance: float | None = None
    oversample: int = D.exclusion_oversample
    exclude_targets: float | None = None
    catalog: object = None
    catalog_min_radius: float = D.catalog_min_radius
    catalog_extension_factor: float = D.catalog_extension_factor

    def __post_init__(self):
        _check(self.mode in EXCLUSION_MODES, "exclusion_mode", f"one of {EXCLUSION_MODES}",
               self.mode)
        _check(self.distance is None or is_number(self.distance, 0, inclusive=True), "exclusion_distance",
               "a distance >= 0 deg", self.distance)
        _check(is_number(self.oversample, 1, inclusive=True) and float(self.oversample) == int(self.oversample),
               "exclusion_oversample", "an integer >= 1", self.oversample)
        _check(self.exclude_targets is None or is_number(self.exclude_targets, 0),
               "exclude_targets", "a radius > 0 deg", self.exclude_targets)
        _check(is_number(self.catalog_min_radius, 0, inclusive=True), "catalog_min_radius", "a radius >= 0 deg",
               self.catalog_min_radius)
        _check(is_number(self.catalog_extension_factor, 0, inclusive=True), "catalog_extension_factor",
               "a number >= 0", self.catalog_extension_factor)
        if (self.exclude_targets is not None or self.catalog is not None) and \
                self.mode != "regions":
            raise ValueError("exclude_targets and exclusion_catalog need exclusion_mode 'regions'")


@dataclass(frozen=True)
class SmoothingOptions:
    """Smoothing of the rate after the build (:func:`xbkg.model.smoothing.smooth_model`):
    ``method`` "none", "gauss" (kernel up to ``sigma_max`` deg) or "fit" (splines with
    ``n_energy_basis`` x ``n_fov_basis`` functions, a penalty among ``penalties``)."""

    method: str = D.smooth
    sigma_max: float = D.sigma_max
    n_energy_basis: int = D.n_energy_basis
    n_fov_basis: int = D.n_fov_basis
    penalties: tuple = D.penalties

    def __post_init__(self):
        _check(self.method in SMOOTH_METHODS, "smoothing method", f"one of {SMOOTH_METHODS}",
               self.method)
        _check(is_number(self.sigma_max, 0), "sigma_max", "a width > 0 deg",
               self.sigma_max)
        for name in ("n_energy_basis", "n_fov_basis"):
            value = getattr(self, name)
            _check(is_number(value, 4, inclusive=True) and float(value) == int(value), name, "an integer >= 4",
                   value)
        _check(len(self.penalties) > 0 and all(is_number(v, 0) for v in self.penalties),
               "penalties", "positive numbers", self.penalties)

    def arguments(self) -> dict:
        """Keyword arguments of :func:`xbkg.model.smoothing.smooth_model`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_record(cls, info: dict) -> SmoothingOptions:
        """The options recorded in a model's ``smoothing`` attribute (its parsed JSON)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in info.items() if k in names})


@dataclass(frozen=True)
class ConditionalOptions:
    """A conditional model (:mod:`xbkg.building.conditional`): the run ``conditions`` (None: a
    plain model) and the ``smoothness`` penalty ("cv" or a number >= 0)."""

    conditions: object = None
    smoothness: object = D.smoothness

    def __post_init__(self):
        if self.conditions is not None:
            parse_conditions(self.conditions)
        _check(self.smoothness == "cv" or (not isinstance(self.smoothness, str)
                                           and is_number(self.smoothness, 0, inclusive=True)),
               "smoothness", "'cv' or a number >= 0", self.smoothness)


@dataclass(frozen=True)
class BuildOptions:
    """All the options of one build (each group with its defaults)."""

    binning: BinningOptions = field(default_factory=BinningOptions)
    selection: SelectionOptions = field(default_factory=SelectionOptions)
    grouping: GroupingOptions = field(default_factory=GroupingOptions)
    thresholds: ThresholdOptions = field(default_factory=ThresholdOptions)
    exclusion: ExclusionOptions = field(default_factory=ExclusionOptions)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    conditional: ConditionalOptions = field(default_factory=ConditionalOptions)

    def arguments(self) -> dict:
        """The groups as keyword arguments of :func:`xbkg.make_model`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def keywords(self) -> dict:
        """Every option as ``make_model`` keywords (the inverse of :func:`build_options`):
        the shortcuts of :data:`SHORTCUTS`, plus a dict under the group's name for fields
        without a shortcut that differ from their defaults (e.g. ``grouping``)."""
        out = {}
        for f in dataclasses.fields(self):
            out.update(_keywords_of(f.name, getattr(self, f.name), lambda v: v))
        return out


#: make_model keyword shortcut -> (option group, field).
SHORTCUTS = {
    **{k: ("binning", k) for k in ("kind", "fov_alignment", "energy_edges", "offset_edges",
                                   "fov_edges", "offset_max", "fov_extent")},
    "selection": ("selection", "rule"),
    **{k: ("selection", k) for k in ("n_obs_max", "zenith_range", "where", "min_n_tels",
                                     "min_muoneff", "max_quality", "event_filter", "site",
                                     "altitude_tolerance")},
    "zenith_edges": ("grouping", "zenith_edges"),
    "energy_threshold": ("thresholds", "policy"),
    "exclusion": ("exclusion", "regions"),
    **{f"exclusion_{k}": ("exclusion", k) for k in ("mode", "distance", "oversample", "catalog")},
    **{k: ("exclusion", k) for k in ("exclude_targets", "catalog_min_radius",
                                     "catalog_extension_factor")},
    "smoothing": ("smoothing", "method"),
    "conditions": ("conditional", "conditions"),
    "smoothness": ("conditional", "smoothness"),
}

_CLASSES = {f.name: f.default_factory for f in dataclasses.fields(BuildOptions)}


def _group_value(group: str, value) -> dict:
    """Field values of option group ``group`` given as the value of its own keyword that is not
    an option object: a ``grouping`` dict of make_grouping options, a Dataset or path to reuse;
    a ``smoothing`` dict of smooth_model options; else the shortcut of the group's main field."""
    if group == "grouping":
        if isinstance(value, dict):
            return dict(value)
        return {"reuse": value}
    if group == "smoothing" and isinstance(value, dict):
        return dict(value)
    main = {"selection": "rule", "thresholds": "policy", "exclusion": "regions",
            "smoothing": "method", "conditional": "conditions"}
    if group not in main:
        raise TypeError(f"{group} must be a {_CLASSES[group].__name__}, got "
                        f"{type(value).__name__}")
    return {main[group]: value}


def build_options(base: BuildOptions | None = None, /, **given) -> BuildOptions:
    """The option objects of a build from ``make_model``'s keyword arguments: option objects
    (``binning=BinningOptions(...)``), the shortcuts of :data:`SHORTCUTS` (``kind="2d"``), and
    for a group keyword anything else as the shortcut of its main field (``selection="all"``,
    ``thresholds="safe"``; ``grouping`` and ``smoothing`` also take a dict of their fields).
    Shortcuts override the fields of a given object; ``base`` supplies the groups not given.

    >>> opts = build_options(kind="2d", selection="all", energy_threshold="safe")
    >>> opts.binning.kind, opts.selection.rule, opts.thresholds.policy
    ('2d', 'all', 'safe')
    >>> build_options(binning=BinningOptions(kind="2d"), kind="3d").binning.kind
    '3d'
    """
    base = base or BuildOptions()
    objects, changes = {}, {}
    for name, value in given.items():
        if name in _CLASSES and isinstance(value, _CLASSES[name]):
            objects[name] = value
        elif name in _CLASSES:
            if value is not None:
                changes.setdefault(name, {}).update(_group_value(name, value))
        elif name in SHORTCUTS:
            group, attr = SHORTCUTS[name]
            changes.setdefault(group, {})[attr] = value
        else:
            raise TypeError(f"make_model() got an unexpected keyword argument {name!r}")
    groups = {}
    for name in _CLASSES:
        obj = objects.get(name, getattr(base, name))
        groups[name] = dataclasses.replace(obj, **changes[name]) if name in changes else obj
    return BuildOptions(**groups)


def _plain(value):
    """``value`` as JSON/YAML-friendly data (lists for arrays and tuples, text for objects)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    text = str(value)  # a path, or a short description of an object
    return text if len(text) <= 200 and "\n" not in text else f"<{type(value).__name__}>"


def record_keywords(given: dict) -> dict:
    """``make_model`` keyword arguments as plain data for a record: option objects become the
    shortcuts of their fields, plus a dict under the group's name of the fields that have no
    shortcut and differ from their defaults (e.g. ``grouping={"adaptive": True}``).

    >>> record_keywords({"binning": BinningOptions(kind="2d"), "selection": "all"})["kind"]
    '2d'
    >>> record_keywords({"grouping": GroupingOptions(adaptive=True)})["grouping"]
    {'adaptive': True}
    """
    out = {}
    for name, value in given.items():
        if name in _CLASSES and isinstance(value, _CLASSES[name]):
            out.update(_keywords_of(name, value, _plain))
        else:
            out[name] = _plain(value)
    return out


def _keywords_of(name: str, value, convert) -> dict:
    """Option object ``value`` of group ``name`` as make_model keywords (values ``convert``-ed)."""
    short = {attr: key for key, (group, attr) in SHORTCUTS.items() if group == name}
    default = _CLASSES[name]()
    out, rest = {}, {}
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if f.name in short:
            out[short[f.name]] = convert(v)
        elif v is not getattr(default, f.name) and _plain(v) != _plain(getattr(default, f.name)):
            rest[f.name] = convert(v)
    if rest and name in SHORTCUTS:  # e.g. smoothing={"method": "fit", "n_fov_basis": 6}
        rest = {SHORTCUTS[name][1]: out[name], **rest}
    if rest:
        out[name] = rest
    return out
