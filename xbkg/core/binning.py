"""Bin edges as xarray coordinates (centres as the index, edges as CF bounds variables), and
the declared :class:`Binning` of a model.

Axes are not a class: an axis is a dimension coordinate holding bin centres plus a
``<name>_bounds`` coordinate of shape ``(n, 2)`` on dimension ``bnds`` (CF convention), so
selections keep the edges with their bins and netCDF files round-trip them exactly.
:class:`Binning` only declares a model's edges before it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from xbkg.core.runs import RunInfo, as_run_info

__all__ = [
    "BOUNDS_DIM",
    "Binning",
    "parse_edges",
    "log_edges",
    "lin_edges",
    "axis_coords",
    "edges_of",
    "bounds_name",
    "energy_mask",
    "run_energy_mask",
]

#: Name of the two-element dimension of every bounds variable.
BOUNDS_DIM = "bnds"

_UNITS = {"energy": "TeV", "offset": "deg", "detx": "deg", "dety": "deg"}
_LONG_NAMES = {
    "energy": "reconstructed energy",
    "offset": "field-of-view offset from the pointing",
    "detx": "field-of-view longitude (GADF DETX, fov_lon)",
    "dety": "field-of-view latitude (GADF DETY, fov_lat)",
}


@dataclass(frozen=True)
class Binning:
    """Declared binning of a model: kind, FoV alignment, edges and the offset cut."""

    kind: str
    fov_alignment: str
    energy_edges: np.ndarray
    fov_edges: dict = field(default_factory=dict)
    offset_max: float = 2.5

    @property
    def fov_dims(self) -> tuple[str, ...]:
        return ("offset",) if self.kind == "2d" else ("dety", "detx")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.energy_edges.size - 1,) + tuple(self.fov_edges[d].size - 1 for d in self.fov_dims)


def bounds_name(dim: str) -> str:
    """Name of the bounds coordinate of axis ``dim``."""
    return f"{dim}_bounds"


def log_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` logarithmic bins from ``lo`` to ``hi`` (``n + 1`` edges)."""
    return np.geomspace(lo, hi, int(n) + 1)


def lin_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` linear bins from ``lo`` to ``hi`` (``n + 1`` edges)."""
    return np.linspace(lo, hi, int(n) + 1)


#: Most bins one axis may have (a typo such as ``0.1:100:1000000`` must not allocate gigabytes).
MAX_BINS = 10_000

_SPEC_HELP = "use 'lo:hi:n' (n bins) or a comma list 'e0,e1,...'"


def _range_edges(text: str, log: bool, name: str) -> np.ndarray:
    """Edges of a ``'lo:hi:n'`` spec; the ValueError says which part is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"'lo:hi:n' has three parts, got {len(parts)}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"lo and hi must be numbers; {_SPEC_HELP}") from None
    n = parts[2].strip()
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"the number of bins n must be an integer >= 1, got {n!r}")
    if int(n) > MAX_BINS:
        raise ValueError(f"{n} bins; at most {MAX_BINS} per axis")
    if log and lo <= 0:
        raise ValueError(f"log spacing needs lo > 0 (e.g. '0.1:{parts[1]}:{n}')")
    if not hi > lo:
        raise ValueError(f"hi must be larger than lo, got lo {lo:g}, hi {hi:g}")
    return log_edges(lo, hi, int(n)) if log else lin_edges(lo, hi, int(n))


def parse_edges(spec, *, log: bool = False, name: str = "edges", limits=None) -> np.ndarray:
    """Bin edges from an array-like or a string spec.

    Strings are ``"lo:hi:n"`` (``n`` bins, logarithmic when ``log`` is true, else linear) or a
    comma-separated list of edges. Edges must be finite, strictly increasing and at least two,
    at most :data:`MAX_BINS` bins, and within ``limits`` (``(lo, hi)``) when given.

    >>> parse_edges("0:2:4")
    array([0. , 0.5, 1. , 1.5, 2. ])
    >>> parse_edges("0.1:100:3", log=True)
    array([  0.1,   1. ,  10. , 100. ])
    >>> parse_edges("0, 20, 90")
    array([ 0., 20., 90.])
    """
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                edges = _range_edges(text, log, name)
            else:
                edges = np.array([float(p) for p in text.split(",") if p.strip()])
        except ValueError as exc:
            reason = str(exc) if ":" in text else _SPEC_HELP
            raise ValueError(f"{name}: cannot parse {spec!r}; {reason}") from None
    else:
        edges = np.asarray(spec, dtype=float).ravel()
    if edges.size < 2:
        raise ValueError(f"{name}: need at least two edges, got {edges.size}")
    if edges.size > MAX_BINS + 1:
        raise ValueError(f"{name}: {edges.size - 1} bins; at most {MAX_BINS} per axis")
    if not np.all(np.isfinite(edges)):
        raise ValueError(f"{name}: edges must be finite, got {edges}")
    if not np.all(np.diff(edges) > 0):
        raise ValueError(f"{name}: edges must be strictly increasing, got {edges}")
    if log and edges[0] <= 0:
        raise ValueError(f"{name}: logarithmic edges must be positive, got {edges}")
    if limits is not None and (edges[0] < limits[0] or edges[-1] > limits[1]):
        raise ValueError(f"{name}: edges must lie within [{limits[0]:g}, {limits[1]:g}], got "
                         f"{edges[0]:g} to {edges[-1]:g}")
    return edges.astype(float)


def axis_coords(dim: str, edges, *, log: bool | None = None) -> dict[str, xr.Variable]:
    """Coordinates for an axis: ``{dim: centres, dim_bounds: (n, 2) edges}``.

    Energy centres are geometric means, other axes arithmetic means.
    """
    edges = np.asarray(edges, dtype=float)
    if log is None:
        log = dim == "energy"
    lo, hi = edges[:-1], edges[1:]
    centres = np.sqrt(lo * hi) if log else 0.5 * (lo + hi)
    attrs = {"units": _UNITS.get(dim, ""), "long_name": _LONG_NAMES.get(dim, dim),
             "bounds": bounds_name(dim)}
    return {
        dim: xr.Variable(dim, centres, attrs),
        # CF: a bounds variable carries no units of its own, it shares its axis' units
        bounds_name(dim): xr.Variable((dim, BOUNDS_DIM), np.stack([lo, hi], axis=1)),
    }


def edges_of(obj: xr.Dataset | xr.DataArray, dim: str) -> np.ndarray:
    """The ``n + 1`` bin edges of axis ``dim`` from its bounds coordinate.

    Raises if the bins are not contiguous (a selection with gaps has no edge array).
    """
    name = bounds_name(dim)
    if name not in obj.coords:
        raise KeyError(f"axis {dim!r} has no bounds coordinate {name!r}")
    b = np.asarray(obj.coords[name].transpose(dim, BOUNDS_DIM).values, dtype=float)
    if b.shape[0] > 1 and not np.array_equal(b[1:, 0], b[:-1, 1]):
        raise ValueError(f"axis {dim!r}: bins are not contiguous, no single edge array")
    return np.concatenate([b[:, 0], b[-1:, 1]])


#: An energy edge this close (relative) to a bound counts as on it: thresholds stored as float32
#: should not lose the bin that starts at them.
_EDGE_RTOL = 1e-6


def energy_mask(energy_edges, e_min, e_max=np.inf) -> np.ndarray:
    """Energy bins lying wholly inside ``[e_min, e_max]`` (TeV), as gammapy's ``energy_mask``.

    ``e_min``/``e_max`` may be arrays (one per run): the result is then ``(runs, E)``. A NaN
    bound means no bound. Edges within a relative 1e-6 of a bound count as on it.

    >>> energy_mask([0.3, 1.0, 3.0, 10.0], 0.99999999, 10.0).tolist()
    [False, True, True]
    """
    edges = np.asarray(energy_edges, dtype=float)
    lo = np.asarray(e_min, dtype=float)[..., None]
    hi = np.asarray(e_max, dtype=float)[..., None]
    above = np.isnan(lo) | (edges[:-1] >= lo * (1 - _EDGE_RTOL))
    below = np.isnan(hi) | (edges[1:] <= hi * (1 + _EDGE_RTOL))
    return above & below


def run_energy_mask(info: RunInfo, energy_edges: np.ndarray) -> np.ndarray:
    """1 for energy bins the run contributes to, 0 below its threshold ``info.e_threshold``.

    A bin contributes when its lower edge is at or above the threshold (TeV; :func:`energy_mask`);
    a run without a finite threshold (missing or NaN) contributes everywhere.

    >>> run_energy_mask(RunInfo(e_threshold=1.0), np.array([0.3, 1.0, 3.0])).tolist()
    [0.0, 1.0]
    """
    thr = float(as_run_info(info).e_threshold)
    return energy_mask(energy_edges, thr if np.isfinite(thr) else np.nan).astype(float)
