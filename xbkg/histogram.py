"""Counts cubes of one run (numpy kernels).

:func:`bin_index` and :func:`histogram` turn values into bin indices and counts exactly as
:func:`numpy.histogramdd` does (bins ``[lo, hi)``, the last one closed); :func:`run_counts`
computes one run's cube from its event columns (offset cut, FoV coordinates in the requested
alignment). The reduction over runs is in :mod:`xbkg.reduce`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from . import fov

__all__ = ["Binning", "bin_index", "histogram", "fov_coordinates", "run_counts"]


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


def _regular_scale(edges: np.ndarray):
    """``"lin"`` or ``"log"`` when the edges are (numerically) evenly spaced that way, else None."""
    edges = np.asarray(edges, dtype=float)
    return _regular_scale_of(edges.tobytes())


@functools.lru_cache(maxsize=64)
def _regular_scale_of(data: bytes):
    edges = np.frombuffer(data, dtype=float)  # cached: every run asks for the same few edges
    if edges.size < 3:
        return "lin"
    if np.allclose(np.diff(edges), edges[1] - edges[0], rtol=1e-9, atol=0):
        return "lin"
    if edges[0] > 0:
        logs = np.log(edges)
        if np.allclose(np.diff(logs), logs[1] - logs[0], rtol=1e-9, atol=0):
            return "log"
    return None


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value (``-1`` outside the edges or NaN), numpy-histogram convention.

    Evenly spaced (linear or logarithmic) edges take an arithmetic fast path whose result is
    corrected against the edges themselves, so it equals the ``searchsorted`` result exactly.

    >>> bin_index(np.array([0.0, 0.5, 1.0, 2.0, 2.5, np.nan]), np.array([0.0, 1.0, 2.0]))
    array([ 0,  0,  1,  1, -1, -1])
    """
    values = np.asarray(values, dtype=float)
    last = edges.size - 2
    scale = _regular_scale(edges)
    if scale is None:
        idx = np.searchsorted(edges, values, side="right") - 1
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.log(values) if scale == "log" else values - 0.0
            lo = np.log(edges[0]) if scale == "log" else edges[0]
            hi = np.log(edges[-1]) if scale == "log" else edges[-1]
            x -= lo
            x *= (last + 1) / (hi - lo)
        np.fmax(x, 0, out=x)  # NaN -> 0 (marked below)
        np.fmin(x, last, out=x)
        idx = x.astype(np.int64)
        # exact correction, on every element (no gathers): the guess can be one bin off at an edge
        idx -= values < edges[idx]
        idx += values >= edges[idx + 1]
    np.minimum(idx, last, out=idx)  # the last bin includes its upper edge
    np.putmask(idx, ~(values >= edges[0]) | (values > edges[-1]), -1)  # outside, or NaN
    return idx


def histogram(indices: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Counts (int64, ``shape``) of events with the given per-axis bin indices (``-1`` dropped)."""
    size = int(np.prod(shape))
    flat = np.array(indices[0], dtype=np.int64)  # row-major flat index; dropped -> bin ``size``
    valid = flat >= 0
    for idx, n in zip(indices[1:], shape[1:]):
        flat *= n
        flat += idx
        valid &= idx >= 0
    np.putmask(flat, ~valid, size)
    return np.bincount(flat, minlength=size + 1)[:size].reshape(shape).astype(np.int64, copy=False)


def fov_coordinates(columns: dict, info: dict, binning: Binning) -> dict[str, np.ndarray]:
    """FoV coordinates of a run's events for ``binning``: ``offset`` and, for 3D, ``detx``/``dety``."""
    ra, dec = columns["RA"], columns["DEC"]
    out = {"offset": fov.offset_deg(ra, dec, info["ra_pnt"], info["dec_pnt"])}
    if binning.kind == "3d":
        out["detx"], out["dety"] = _fov_lonlat(columns, info, binning)
    return out


def _fov_lonlat(columns: dict, info: dict, binning: Binning):
    ra, dec = columns["RA"], columns["DEC"]
    if binning.fov_alignment == "RADEC":
        return fov.radec_to_fov(ra, dec, info["ra_pnt"], info["dec_pnt"])
    params = info.get("altaz_params")  # already computed for this run, or None
    if params is None:
        params = fov.altaz_run_params(
            info["ra_pnt"], info["dec_pnt"], geolon=info["geolon"], geolat=info["geolat"],
            altitude=info["altitude"], mjdrefi=info["mjdrefi"], mjdreff=info["mjdreff"],
            timesys=info["timesys"], tstart=info["tstart"], tstop=info["tstop"],
        )
    return fov.radec_to_altaz_fov(ra, dec, columns["TIME"], params)


def run_counts(columns: dict, info: dict, binning: Binning) -> np.ndarray:
    """One run's counts cube, shape ``binning.shape``, from its event columns.

    Events beyond ``binning.offset_max`` from the pointing, or outside the edges, are dropped;
    in 3D only the events within the offset cut get FoV coordinates.
    """
    offset = fov.offset_deg(columns["RA"], columns["DEC"], info["ra_pnt"], info["dec_pnt"])
    keep = offset <= binning.offset_max
    if binning.kind == "2d":
        indices = [bin_index(columns["ENERGY"], binning.energy_edges),
                   bin_index(offset, binning.fov_edges["offset"])]
        np.putmask(indices[1], ~keep, -1)
        return histogram(indices, binning.shape)
    if not keep.all():
        needed = ("ENERGY", "RA", "DEC") + (("TIME",) if binning.fov_alignment == "ALTAZ" else ())
        columns = {name: columns[name][keep] for name in needed}
    coords = dict(zip(("detx", "dety"), _fov_lonlat(columns, info, binning)))
    indices = [bin_index(columns["ENERGY"], binning.energy_edges)]
    indices += [bin_index(coords[d], binning.fov_edges[d]) for d in binning.fov_dims]
    return histogram(indices, binning.shape)
