"""Summaries of a model that plots and comparisons share: FoV-mean rate, the energy at which the
counts peak, rate on rings of offset."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.core.schema import fov_dims, select_group, validate_model
from xbkg.model.evaluate import evaluate_rate
from xbkg.sky.exposure import energy_widths_mev, fov_solid_angle

__all__ = ["fov_mean_rate", "counts_peak_energy", "energy_threshold", "group_zenith", "rate_at_offsets", "solid_angle", "check_group", "group_index",
           "energy_distribution"]


_N_AZIMUTH = 72  # points on a circle when averaging a 3D model at one offset



def solid_angle(model: xr.Dataset) -> np.ndarray:
    """Solid angle (sr) of each FoV bin inside ``offset_max``: shape ``(O,)`` or ``(Y, X)``."""
    kind = model.attrs["kind"]
    return fov_solid_angle(kind, {d: edges_of(model, d) for d in fov_dims(kind)},
                           float(model.attrs.get("offset_max", np.inf)))



def _fov_sum(values: np.ndarray, ndim_fov: int) -> np.ndarray:
    return values.sum(axis=tuple(range(values.ndim - ndim_fov, values.ndim)))



def _exposed(model: xr.Dataset, group: int) -> np.ndarray:
    """Bins of one group with exposure, shape ``(E, ...)`` (all True for models without an
    ``exposure`` variable, e.g. read from plain GADF files)."""
    rate = model["rate"].sel(zenith_group=group).transpose("energy", ...)
    if "exposure" not in model:
        return np.ones(rate.shape, dtype=bool)
    return model["exposure"].sel(zenith_group=group).transpose("energy", ...).values > 0



def _exposed_slices(model: xr.Dataset) -> np.ndarray:
    """Energy slices with exposure, shape ``(G, E)``."""
    return np.array([_exposed(model, int(g)).reshape(model.sizes["energy"], -1).any(axis=1)
                     for g in model["zenith_group"].values])



def fov_mean_rate(model: xr.Dataset) -> xr.DataArray:
    """Rate averaged over the field of view within ``offset_max``, per zenith group and energy.

    The average is weighted by the solid angle of each FoV bin, so it is the rate an instrument
    with a flat acceptance inside ``offset_max`` would see (s-1 MeV-1 sr-1).

    Returns
    -------
    xarray.DataArray
        Dims ``(zenith_group, energy)``.

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> model = assemble_model(np.array([[[1, 3]]]), np.ones((1, 1, 2)), kind="2d",
    ...     energy_edges=[1.0, 2.0], fov_edges={"offset": [0.0, 1.0, 2.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
    >>> round(float(fov_mean_rate(model)[0, 0]), 3)  # the outer ring has 3x the solid angle
    2.5
    """
    validate_model(model)
    omega = solid_angle(model)
    rate = np.asarray(model["rate"].transpose("zenith_group", "energy", ...).values, dtype=float)
    mean = _fov_sum(np.nan_to_num(rate) * omega, omega.ndim) / omega.sum()
    return xr.DataArray(mean, dims=("zenith_group", "energy"),
                        coords={"zenith_group": model["zenith_group"].values,
                                "energy": model["energy"].values},
                        attrs={"units": "s-1 MeV-1 sr-1", "long_name": "FoV-mean background rate"})



def energy_distribution(model: xr.Dataset) -> np.ndarray:
    """Counts per group and energy bin, shape ``(G, E)``: the model's ``counts`` summed over
    the FoV, or, for models without counts, the predicted count rate (s-1) from ``rate``."""
    if "counts" in model:
        counts = np.asarray(model["counts"].transpose("zenith_group", "energy", ...).values)
        return _fov_sum(counts.astype(float), counts.ndim - 2)
    mean = fov_mean_rate(model).values
    return mean * energy_widths_mev(edges_of(model, "energy")) * solid_angle(model).sum()



def _peak_log_energy(dist: np.ndarray, log_centres: np.ndarray) -> float:
    """Log-energy of the maximum of ``dist``, refined by a parabola through the top 3 bins."""
    if not np.any(dist > 0):
        return float("nan")
    i = int(np.argmax(dist))
    if 0 < i < dist.size - 1:
        y0, y1, y2 = dist[i - 1: i + 2]
        x0, x1, x2 = log_centres[i - 1: i + 2]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2 ** 2 * (y0 - y1) + x1 ** 2 * (y2 - y0) + x0 ** 2 * (y1 - y2)) / denom
        if a < 0:
            return float(np.clip(-b / (2 * a), x0, x2))
    return float(log_centres[i])



def counts_peak_energy(model: xr.Dataset) -> xr.DataArray:
    """The counts-peak energy of each zenith group: the peak of its counts distribution in energy.

    Definition: the energy (TeV) at which the group's counts per energy bin, summed over the
    field of view, peak. With log-spaced energy bins that is the peak of ``dN/dlog E``, the
    usual "peak of the background rate" threshold. The peak bin is refined by a parabola
    through it and its two neighbours in ``log E`` (clipped to their centres), so the value
    moves smoothly within a bin. Models without ``counts`` (read from plain GADF files) use the
    counts the rate predicts per second instead. Groups without counts give NaN.

    Returns
    -------
    xarray.DataArray
        Dim ``zenith_group``, TeV.

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> counts = np.array([[[10], [40], [40], [5]]])  # peak between the 2nd and 3rd bin
    >>> model = assemble_model(counts, np.ones((1, 4, 1)), kind="2d",
    ...     energy_edges=[0.1, 1.0, 10.0, 100.0, 1000.0], fov_edges={"offset": [0.0, 1.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=1.0)
    >>> round(float(counts_peak_energy(model)[0]), 3)
    10.0
    """
    validate_model(model)
    dist = energy_distribution(model)
    log_centres = np.log10(np.asarray(model["energy"].values, dtype=float))
    values = [10 ** _peak_log_energy(row, log_centres) for row in dist]
    return xr.DataArray(np.asarray(values, dtype=float), dims="zenith_group",
                        coords={"zenith_group": model["zenith_group"].values},
                        attrs={"units": "TeV", "long_name": "energy threshold (peak of counts)"})


def energy_threshold(model: xr.Dataset) -> xr.DataArray:
    """Deprecated name of :func:`counts_peak_energy` (it is no per-run energy threshold)."""
    warnings.warn("energy_threshold(model) is now counts_peak_energy(model); the old name will "
                  "be removed in a later release", DeprecationWarning, stacklevel=2)
    return counts_peak_energy(model)



def group_zenith(model: xr.Dataset) -> np.ndarray:
    """Centre zenith (deg) of each group: arccos of its ONTIME-weighted mean cos(zenith) when
    known, else the middle of its bounds."""
    bounds = np.asarray(model["zenith_bounds"].transpose("zenith_group", ...).values, dtype=float)
    mid = bounds.mean(axis=1)
    if "group_mean_cos_zenith" not in model:
        return mid
    cos_z = np.asarray(model["group_mean_cos_zenith"].values, dtype=float)
    with np.errstate(invalid="ignore"):
        zen = np.degrees(np.arccos(np.clip(cos_z, -1.0, 1.0)))
    return np.where(np.isfinite(zen), zen, mid)



def check_group(model: xr.Dataset, group) -> int:
    validate_model(model)
    if group is None:
        return select_group(model)
    return select_group(model, group=group)



def group_index(model: xr.Dataset, group: int) -> int:
    """Position of group ID ``group`` along ``zenith_group``."""
    return int(np.flatnonzero(model["zenith_group"].values == group)[0])



def rate_at_offsets(model: xr.Dataset, group: int, energy, offsets) -> np.ndarray:
    """Rate at ``energy`` (E,) and ``offsets`` (O,), shape ``(E, O)``: gammapy's interpolation,
    averaged over the circle of each offset for 3D models."""
    energy = np.asarray(energy, dtype=float)[:, None]
    offsets = np.asarray(offsets, dtype=float)
    if model.attrs["kind"] == "2d":
        return np.asarray(evaluate_rate(model, energy, offsets[None, :], group=group))
    phi = (np.arange(_N_AZIMUTH) + 0.5) * (2 * np.pi / _N_AZIMUTH)
    detx = offsets[None, :, None] * np.cos(phi)
    dety = offsets[None, :, None] * np.sin(phi)
    values = evaluate_rate(model, energy[..., None], detx=detx, dety=dety, group=group)
    return np.asarray(values).mean(axis=-1)
