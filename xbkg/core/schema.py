"""The background model: one xarray Dataset with a checked schema.

``counts``, ``exposure``, ``rate``, ``rate_error`` and ``has_data`` on ``(zenith_group, energy,
offset | dety, detx)``, run variables on ``obs_id``, bin edges as CF bounds. Bins without data
get a documented placeholder rate (a floor, and the continuation of the nearest exposed energy
slice), never a 0 next to populated bins. Layout and policy: docs/architecture.rst.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from xbkg._version import __version__
from xbkg.core.binning import BOUNDS_DIM, axis_coords, edges_of
from xbkg.core.groups import group_summary

__all__ = [
    "MODEL_VERSION",
    "RATE_UNIT",
    "KINDS",
    "FOV_ALIGNMENTS",
    "fov_dims",
    "rate_from_counts",
    "rate_floor",
    "fill_unexposed",
    "assemble_model",
    "validate_model",
    "check_model_values",
    "ModelSchemaError",
    "zenith_edges",
    "select_group",
]

MODEL_VERSION = 1
#: Unit of ``rate`` and ``rate_error`` (the GADF background unit).
RATE_UNIT = "s-1 MeV-1 sr-1"
KINDS = ("2d", "3d")
FOV_ALIGNMENTS = ("ALTAZ", "RADEC")
DEFAULT_RATE_FLOOR = 1e-3
EMPTY_BINS_POLICY = (
    "rate=max(counts/exposure, rate_floor * FoV-mean rate of the energy bin); "
    "energy slices without exposure continue the nearest exposed slice (power law, then flat); "
    "rate_error=sqrt(counts)/exposure, 1/exposure where counts=0, nan where exposure=0"
)


class ModelSchemaError(ValueError):
    """A Dataset does not follow the xbkg model layout."""


def fov_dims(kind: str) -> tuple[str, ...]:
    """Field-of-view dimensions of a model kind: ``("offset",)`` or ``("dety", "detx")``."""
    if kind == "2d":
        return ("offset",)
    if kind == "3d":
        return ("dety", "detx")
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def rate_from_counts(counts, exposure):
    """Rate and its Poisson error from counts and exposure (numpy or dask, same shape).

    Follows the documented empty-bin policy of this module.
    """
    counts = counts.astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        has_exposure = exposure > 0
        safe = xr.where(has_exposure, exposure, 1.0) if isinstance(exposure, xr.DataArray) else \
            np.where(has_exposure, exposure, 1.0)
        rate = counts / safe
        err = np.sqrt(np.maximum(counts, 1.0)) / safe
    where = xr.where if isinstance(counts, xr.DataArray) else np.where
    rate = where(has_exposure, rate, 0.0)
    err = where(has_exposure, err, np.nan)
    return rate, err


def _fill_nearest_along_last(mean: np.ndarray) -> np.ndarray:
    """Replace zeros of each row by the nearest non-zero value of that row (rows of zeros stay)."""
    out = np.array(mean, dtype=float, copy=True)
    for row in out.reshape(-1, out.shape[-1]):
        good = np.flatnonzero(row > 0)
        if good.size and good.size < row.size:
            idx = np.arange(row.size)
            nearest = good[np.abs(idx[:, None] - good[None, :]).argmin(axis=1)]
            row[:] = row[nearest]
    return out


def rate_floor(counts, exposure, relative: float = DEFAULT_RATE_FLOOR):
    """Floor of each bin's rate: ``relative`` x the FoV-averaged rate of its group and energy bin.

    ``counts`` and ``exposure`` have shape ``(G, E, ...)``; the result broadcasts against them.
    Energy slices without counts take the nearest populated slice's mean. Works lazily on dask.
    """
    fov_axes = tuple(range(2, counts.ndim))
    c = counts.astype("float64").sum(axis=fov_axes)
    x = exposure.sum(axis=fov_axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(x > 0, c / np.where(x > 0, x, 1.0), 0.0)
    if hasattr(mean, "map_blocks"):
        mean = mean.rechunk(-1).map_blocks(_fill_nearest_along_last, dtype=float)
    else:
        mean = _fill_nearest_along_last(mean)
    return relative * mean.reshape(mean.shape + (1,) * len(fov_axes))


#: Largest factor between a filled slice and the exposed slice it continues.
MAX_CONTINUATION_FACTOR = 10.0


def _fill_unexposed_kernel(rate, exposure, counts=None, *, log_centres=None):
    out = np.array(rate, dtype=float, copy=True)
    fov_axes = tuple(range(2, exposure.ndim))
    x = exposure.sum(axis=fov_axes)  # (G, E)
    has = x > 0
    if counts is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(has, counts.sum(axis=fov_axes) / np.where(has, x, 1.0), 0.0)
    for g in range(out.shape[0]):
        good = np.flatnonzero(has[g])
        for e in np.flatnonzero(~has[g]):
            if not good.size:
                break
            k = good[np.argmin(np.abs(good - e))]
            step = 1 if e > k else -1
            factor = 1.0
            if counts is not None and 0 <= k - step < has.shape[1] and has[g, k - step] \
                    and mean[g, k] > 0 and mean[g, k - step] > 0:
                slope = np.log(mean[g, k] / mean[g, k - step]) / \
                    (log_centres[k] - log_centres[k - step])
                factor = float(np.clip(np.exp(slope * (log_centres[k + step] - log_centres[k])),
                                       1 / MAX_CONTINUATION_FACTOR, MAX_CONTINUATION_FACTOR))
            out[g, e] = out[g, k] * factor
    return out


def fill_unexposed(rate, exposure, counts=None, energy_edges=None):
    """Fill the energy slices without exposure of each group (module docstring).

    Arrays ``(G, E, ...)``, numpy or dask (stays lazy). Without ``counts`` and
    ``energy_edges`` every such slice copies the nearest exposed slice; with them, the slices
    beyond the exposed range continue it as a power law with the index of the group's FoV-mean
    rate between its two outermost exposed slices, evaluated at the first slice outside (the
    factor limited to 1/10..10) and held constant farther out.

    >>> fill_unexposed(np.array([[[0.0], [2.0], [3.0]]]), np.array([[[0.0], [1.0], [1.0]]]))[0, :, 0]
    array([2., 2., 3.])
    >>> counts = np.array([[[0], [0], [4], [2]]])
    >>> fill_unexposed(counts / 1.0, np.array([[[0.0], [0.0], [1.0], [1.0]]]), counts,
    ...                [1.0, 2.0, 4.0, 8.0, 16.0])[0, :, 0]
    array([8., 8., 4., 2.])
    """
    extra = {}
    arrays = [rate, exposure]
    if counts is not None and energy_edges is not None:
        edges = np.asarray(energy_edges, dtype=float)
        extra["log_centres"] = 0.5 * np.log(edges[:-1] * edges[1:])
        arrays.append(counts)
    if any(hasattr(a, "map_blocks") for a in arrays):
        import dask.array as da

        first = da.asarray(arrays[0])
        first = first.rechunk({i: -1 for i in range(1, first.ndim)})
        arrays = [first] + [da.asarray(a).rechunk(first.chunks) for a in arrays[1:]]
        return da.map_blocks(_fill_unexposed_kernel, *arrays, dtype=float, **extra)
    return _fill_unexposed_kernel(*[np.asarray(a) for a in arrays], **extra)


def assemble_model(
    counts: np.ndarray,
    exposure: np.ndarray,
    *,
    kind: str,
    energy_edges,
    fov_edges: dict[str, np.ndarray],
    zenith_edges,
    fov_alignment: str,
    offset_max: float,
    runs: xr.Dataset | None = None,
    provenance: dict | None = None,
    relative_floor: float = DEFAULT_RATE_FLOOR,
) -> xr.Dataset:
    """Build the model Dataset from counts and exposure arrays (numpy or dask).

    Parameters
    ----------
    counts, exposure : array, shape ``(G, E, O)`` or ``(G, E, Y, X)``
    kind : ``"2d"`` or ``"3d"``
    energy_edges : array of ``E + 1`` edges in TeV
    fov_edges : ``{"offset": edges}`` or ``{"detx": edges, "dety": edges}`` in deg
    zenith_edges : array of ``G + 1`` edges in deg, or ``(G, 2)`` bounds of each group
        (groups that need not be contiguous, e.g. from :func:`xbkg.building.grouping.make_grouping`)
    fov_alignment : ``"ALTAZ"`` or ``"RADEC"``
    offset_max : float, deg
    runs : Dataset on dim ``obs_id`` with ``obs_group``, ``obs_ontime``, ``obs_zenith``
        (every ``obs_*`` variable is kept)
    provenance : JSON-serialisable dict
    relative_floor : float
        The empty-bin floor relative to the FoV-mean rate (module docstring); 0 disables it.
    """

    fdims = fov_dims(kind)
    dims = ("zenith_group", "energy") + fdims
    coords: dict = {}
    coords.update(axis_coords("energy", energy_edges))
    for d in fdims:
        coords.update(axis_coords(d, fov_edges[d]))
    zen = np.asarray(zenith_edges, dtype=float)
    zen_bounds = zen.reshape(-1, 2) if zen.ndim == 2 else np.stack([zen[:-1], zen[1:]], axis=1)
    ngroups = zen_bounds.shape[0]
    coords["zenith_group"] = xr.Variable("zenith_group", np.arange(ngroups, dtype="int64"))
    coords["zenith_bounds"] = xr.Variable(
        ("zenith_group", BOUNDS_DIM), zen_bounds,
        {"units": "deg", "long_name": "zenith-angle range of the group"},
    )
    ds = xr.Dataset(coords=coords)
    ds["counts"] = xr.Variable(dims, counts, {"units": "", "long_name": "event counts"})
    ds["exposure"] = xr.Variable(
        dims, exposure, {"units": "s MeV sr", "long_name": "observation time x bin size"}
    )
    rate, err = rate_from_counts(ds["counts"].data, ds["exposure"].data)
    if relative_floor > 0:
        rate = np.maximum(rate, rate_floor(ds["counts"].data, ds["exposure"].data, relative_floor))
    rate = fill_unexposed(rate, ds["exposure"].data, ds["counts"].data, energy_edges)
    ds["rate"] = xr.Variable(dims, rate, {"units": RATE_UNIT, "long_name": "background rate"})
    ds["rate_error"] = xr.Variable(
        dims, err, {"units": RATE_UNIT, "long_name": "Poisson error of the rate"}
    )
    ds["has_data"] = xr.Variable(
        dims, ds["exposure"].data > 0,
        {"long_name": "bin has exposure (False: placeholder rate, no measurement)"},
    )
    if runs is not None:
        ds = ds.merge(runs[[v for v in runs.data_vars if str(v).startswith("obs_")]])
        summary = group_summary(ds["obs_group"].values, ds["obs_ontime"].values,
                                ds["obs_zenith"].values, ngroups)
        ds["group_ontime"] = xr.Variable("zenith_group", summary["group_ontime"], {"units": "s"})
        ds["group_n_obs"] = xr.Variable("zenith_group", summary["group_n_obs"])
        ds["group_mean_cos_zenith"] = xr.Variable("zenith_group", summary["group_mean_cos_zenith"])
    ds.attrs.update(
        xbkg_model_version=MODEL_VERSION,
        kind=kind,
        fov_alignment=fov_alignment.upper(),
        offset_max=float(offset_max),
        xbkg_version=__version__,
        provenance=json.dumps(provenance or {}, sort_keys=True),
        empty_bins=EMPTY_BINS_POLICY,
        rate_floor=float(relative_floor),
    )
    return ds


def zenith_edges(model: xr.Dataset) -> np.ndarray:
    """The ``G + 1`` zenith-angle edges (deg) of the model's groups.

    Raises ValueError when the groups are not contiguous in zenith (e.g. groups split by
    azimuth, :mod:`xbkg.building.grouping`): use their ``zenith_bounds`` instead.
    """
    b = np.asarray(model["zenith_bounds"].transpose("zenith_group", BOUNDS_DIM).values, dtype=float)
    if b.shape[0] > 1 and not np.array_equal(b[1:, 0], b[:-1, 1]):
        raise ValueError("the model's zenith groups are not contiguous (grouped by "
                         f"{model.attrs.get('group_by') or 'bounds'}); no single edge array")
    return np.concatenate([b[:, 0], b[-1:, 1]])


def validate_model(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` follows the model layout; return it unchanged or raise ModelSchemaError."""
    kind = ds.attrs.get("kind")
    if kind not in KINDS:
        raise ModelSchemaError(f"model attr 'kind' must be one of {KINDS}, got {kind!r}")
    align = ds.attrs.get("fov_alignment")
    if align not in FOV_ALIGNMENTS:
        raise ModelSchemaError(
            f"model attr 'fov_alignment' must be one of {FOV_ALIGNMENTS}, got {align!r}"
        )
    dims = ("zenith_group", "energy") + fov_dims(kind)
    for name in ("rate",):
        if name not in ds:
            raise ModelSchemaError(f"model has no {name!r} variable")
    for name in ("counts", "exposure", "rate", "rate_error", "has_data"):
        if name in ds and tuple(ds[name].dims) != dims:
            raise ModelSchemaError(f"model variable {name!r} has dims {ds[name].dims}, expected {dims}")
    for d in dims[1:]:
        try:
            edges = edges_of(ds, d)
        except (KeyError, ValueError) as exc:
            raise ModelSchemaError(str(exc)) from None
        if edges.size != ds.sizes[d] + 1:
            raise ModelSchemaError(f"axis {d!r}: {edges.size} edges for {ds.sizes[d]} bins")
        if not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)):
            raise ModelSchemaError(f"axis {d!r}: edges must be finite and increasing, got "
                                   f"{edges[0]:g} ... {edges[-1]:g}")
    return ds


def check_model_values(ds: xr.Dataset) -> xr.Dataset:
    """Check a loaded model's numbers (reading a file, not building: this computes): ``rate``,
    ``counts`` and ``exposure`` finite and >= 0, ``offset_max`` a positive number. Returns
    ``ds`` or raises ModelSchemaError naming the variable."""
    omax = ds.attrs.get("offset_max")
    if omax is not None and (isinstance(omax, (str, bytes, bool))
                             or not np.ndim(omax) == 0 or not float(omax) > 0):
        raise ModelSchemaError(f"model attr 'offset_max' must be a positive number, got {omax!r}")
    for name in ("rate", "counts", "exposure"):
        if name not in ds:
            continue
        values = np.asarray(ds[name].values, dtype=float)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            raise ModelSchemaError(f"model variable {name!r} has {int(bad.sum())} NaN, infinite "
                                   f"or negative value(s), e.g. {values[bad][0]!r}")
    return ds


def select_group(model: xr.Dataset, group=None, zenith=None) -> int:
    """The zenith group ID to use: ``group`` itself, or the group whose bounds contain ``zenith``.

    Groups are ``[lo, hi)`` in zenith (the last one includes its upper bound). A ``zenith``
    outside every group selects the nearest group (smallest angular distance to its bounds):
    the model has no data there, so this is a nearest-group extrapolation. With neither
    argument, a one-group model uses its group; several groups raise ``ValueError``.

    Examples
    --------
    >>> import xarray as xr
    >>> m = xr.Dataset(coords={"zenith_group": [0, 1],
    ...     "zenith_bounds": (("zenith_group", "bnds"), [[0.0, 30.0], [30.0, 50.0]])})
    >>> select_group(m, zenith=35.0), select_group(m, zenith=70.0), select_group(m, group=0)
    (1, 1, 0)
    """
    ids = np.asarray(model["zenith_group"].values)
    if group is not None and zenith is not None:
        raise ValueError("pass either group= or zenith=, not both")
    if group is not None:
        if int(group) not in ids:
            raise KeyError(f"zenith group {group!r} not in the model (groups: {ids.tolist()})")
        return int(group)
    if zenith is None:
        if ids.size == 1:
            return int(ids[0])
        raise ValueError(
            f"the model has {ids.size} zenith groups {ids.tolist()}; pass group= or zenith="
        )
    z = float(zenith)
    if not math.isfinite(z):
        raise ValueError(f"zenith must be finite, got {zenith!r}")
    bounds = np.asarray(model["zenith_bounds"].transpose("zenith_group", ...).values, "float64")
    lo, hi = bounds[:, 0], bounds[:, 1]
    inside = (lo <= z) & ((z < hi) | ((z == hi) & (hi == hi.max())))
    if inside.any():
        return int(ids[np.argmax(inside)])
    distance = np.maximum(lo - z, z - hi)
    return int(ids[np.argmin(distance)])
