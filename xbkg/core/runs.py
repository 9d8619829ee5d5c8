"""The run record: what every per-run stage knows about one run, as an immutable value.

:class:`RunInfo` is built from the observation table (:func:`xbkg.store.events.run_infos`) and
travels with each per-run task (sent to worker processes: plain numbers and strings). The
build stages never change a record: they return new ones with :meth:`RunInfo.with_`
(:func:`dataclasses.replace`), e.g. ``info.with_(e_threshold=0.5)``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["RunInfo", "as_run_info"]

_NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One run's parameters, from its obs-index row and, later, the stages of a build.

    Angles in deg, times in s since MJDREFI + MJDREFF (time scale ``timesys``), ``altitude`` in
    m; NaN (or an empty string) for a value the store does not have. Every field has a default,
    so tests and callers may give only what a kernel reads (``RunInfo(ra_pnt=83.6,
    dec_pnt=22.0)``).

    >>> info = RunInfo(obs_id=7, ontime=1500.0)
    >>> later = info.with_(e_threshold=0.5)
    >>> info.e_threshold, later.e_threshold, later.ontime
    (nan, 0.5, 1500.0)
    """

    # -- from the obs index and HDU index (xbkg.store.events.run_infos)
    obs_id: int | None = None
    events_file: str = ""
    events_hdu: str = ""
    #: File and HDU of the GTI table; empty when the store has no GTI row for the run.
    gti_file: str = ""
    gti_hdu: str = ""
    ra_pnt: float = _NAN
    dec_pnt: float = _NAN
    zenith: float = _NAN
    ontime: float = _NAN
    tstart: float = _NAN
    tstop: float = _NAN
    geolon: float = _NAN
    geolat: float = _NAN
    altitude: float = _NAN
    mjdrefi: float = _NAN
    mjdreff: float = _NAN
    timesys: str = ""
    #: EVENT_COUNT of the obs index (None: unknown); only sizes the tasks.
    event_count: int | None = None
    # -- completed from the EVENTS header (xbkg.store.events.complete_run_info)
    #: Where the pointing came from, one of xbkg.store.events.POINTING_SOURCES (None: not yet).
    pointing_source: str | None = None
    # -- options and per-run results of the build stages (xbkg.building.make)
    #: Expression selecting events (xbkg.store.selection); None or "": every event.
    event_filter: str | None = None
    #: ALTAZ geometry check tolerance (deg); None: DEFAULT_ALTITUDE_TOLERANCE.
    altitude_tolerance: float | None = None
    #: Energy threshold (TeV, xbkg.building.thresholds); NaN: none.
    e_threshold: float = _NAN
    #: Exclusion regions the run can see: SkyCircles.to_dict() plus ``oversample`` and
    #: ``max_step`` (xbkg.sky.exclusion.attach_exclusions); None: no region.
    exclusion: dict | None = None
    #: Count the events beyond this offset (deg) for the ``outer_rate`` condition; None: not.
    outer_offset: float | None = None
    #: Measure the run's FoV extent in its task (xbkg.building.reduce.group_cubes).
    measure_extent: bool = False
    #: ALTAZ constants (xbkg.sky.fov.altaz_run_params) when already computed, and the pointing
    #: (ra, dec) they were computed for.
    altaz_params: Any = dataclasses.field(default=None, compare=False, repr=False)
    altaz_pointing: tuple | None = dataclasses.field(default=None, compare=False, repr=False)

    def __eq__(self, other) -> bool:
        """Field by field (not ``altaz_params``, ``altaz_pointing``), NaN equal to NaN: a record
        equals its copy sent to another process."""
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(_same(getattr(self, name), getattr(other, name)) for name in _COMPARED)

    def __hash__(self) -> int:
        return hash((self.obs_id, self.events_file))

    def with_(self, **changes) -> RunInfo:
        """A copy with these fields changed, as :func:`dataclasses.replace` without its
        per-field ``__init__`` (a build makes a few per run); ``self`` is unchanged."""
        unknown = changes.keys() - _FIELD_NAMES
        if unknown:
            raise TypeError(f"unknown run parameter(s) {sorted(unknown)}; RunInfo fields are "
                            f"{sorted(_FIELD_NAMES)}")
        new = object.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @classmethod
    def from_mapping(cls, values: Mapping) -> RunInfo:
        """A record from a mapping of field names (unknown keys are an error, naming them)."""
        return _BLANK.with_(**values)

    def __getitem__(self, name: str):
        """Deprecated: ``info["ra_pnt"]`` of the former dict records; use ``info.ra_pnt``."""
        warnings.warn(f"run records are RunInfo objects: use info.{name} instead of "
                      f"info[{name!r}]", DeprecationWarning, stacklevel=2)
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(RunInfo))
_COMPARED = tuple(f.name for f in dataclasses.fields(RunInfo) if f.compare)
_BLANK = RunInfo()


def _same(a, b) -> bool:
    return a == b or (a != a and b != b)  # noqa: PLR0124 - NaN test


def as_run_info(info) -> RunInfo:
    """``info`` itself when a :class:`RunInfo`; a mapping (the former dict records) is converted
    with a :class:`DeprecationWarning`."""
    if isinstance(info, RunInfo):
        return info
    if isinstance(info, Mapping):
        warnings.warn("run parameters as a dict are deprecated: pass an xbkg.core.runs.RunInfo",
                      DeprecationWarning, stacklevel=3)
        return RunInfo.from_mapping(info)
    raise TypeError(f"run parameters must be a RunInfo, got {type(info).__name__}")
