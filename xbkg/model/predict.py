"""Expected background counts of a run: the model integrated over its energy and sky bins.

Kernels :func:`time_samples` and :func:`predict_at`; :func:`predict_counts` reads a run from a
store and predicts on a grid of FoV boxes around its pointing. Conventions follow gammapy's
``MapDatasetMaker.make_background`` (docs/architecture.rst).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.core.binning import axis_coords, edges_of
from xbkg.core.runs import RunInfo, as_run_info
from xbkg.model.evaluate import _fine_nodes, interpolate_grid, loglog_segment_integrals, model_grid
from xbkg.sky import fov
from xbkg.sky.earth import run_altaz_params, run_time_samples
from xbkg.sky.exposure import box_solid_angle
from xbkg.store.datastore import takes_store
from xbkg.store.events import complete_run_info, read_run, run_infos

__all__ = ["ENERGY_INTEGRATION", "time_samples", "predict_at", "predict_counts"]

ENERGY_INTEGRATION = ("exact", "edges")

def time_samples(info: RunInfo, *, max_rotation: float = 0.25, params=None, gti=None):
    """Sample times (s since MJDREF) over the run's good time intervals and their weights.

    :func:`xbkg.sky.earth.run_time_samples` with ``max_rotation`` in deg: the field of view of
    an Alt/Az-aligned model turns by at most ``max_rotation`` between two samples. ``gti``:
    START and STOP of the run's good time intervals (default: ``tstart`` to ``tstop``).
    Weights sum to 1.
    """
    return run_time_samples(info, np.radians(max_rotation), params=params, gti=gti)


def _energy_integrals(values, centres, edges, log_axes, energy_edges, fov_points, method):
    """Integral of the rate over each analysis energy bin at FoV points: shape (E, *points)."""
    if method == "exact":
        nodes = _fine_nodes(energy_edges, centres[0], edges[0])
    elif method == "edges":
        nodes = np.asarray(energy_edges, dtype=float)
    else:
        raise ValueError(f"energy_integration must be one of {ENERGY_INTEGRATION}, got {method!r}")
    shape = np.broadcast_shapes(*[np.shape(p) for p in fov_points])
    e = nodes.reshape((-1,) + (1,) * len(shape))
    rate = interpolate_grid(values, centres, edges, [e, *fov_points], log_axes)
    segments = loglog_segment_integrals(rate, nodes * 1e6, axis=0)  # TeV -> MeV: rate is per MeV
    starts = np.searchsorted(nodes, energy_edges[:-1])
    return np.add.reduceat(segments, starts, axis=0)


def predict_at(model: xr.Dataset, info: dict, ra, dec, solid_angle, energy_edges, *, group=None,
               zenith=None, energy_integration: str = "edges", max_rotation: float = 0.25,
               gti=None):
    """Expected background counts of one run at sky positions.

    Parameters
    ----------
    model : Dataset (xbkg model layout)
    info : xbkg.core.runs.RunInfo
        Run parameters as from :func:`xbkg.store.events.run_infos` (pointing, ONTIME, times, site).
    ra, dec : array (deg)
        Pixel centres; ``solid_angle`` (sr) broadcasts against them.
    energy_edges : array (TeV)
    group, zenith
        Zenith group of the model to use; default: the group containing the run's zenith.
    energy_integration : {"edges", "exact"}
    max_rotation : float
        Alt/Az-aligned models: largest FoV rotation (deg) between two time samples.
    gti : (array, array), optional
        START and STOP of the run's good time intervals (s): an Alt/Az-aligned model is
        averaged over them (default: the run from ``tstart`` to ``tstop``).

    Returns
    -------
    ndarray, shape ``(E,) + broadcast(ra, dec).shape``: expected counts.
    """
    info = as_run_info(info)
    energy_edges = np.asarray(energy_edges, dtype=float)
    if group is None and zenith is None:
        zenith = info.zenith
    values, centres, edges, log_axes = model_grid(model, group=group, zenith=zenith)
    values = np.asarray(values)
    ra, dec = np.broadcast_arrays(np.asarray(ra, float), np.asarray(dec, float))
    kind, align = model.attrs["kind"], model.attrs["fov_alignment"]
    if kind == "2d":
        points = [fov.offset_deg(ra, dec, info.ra_pnt, info.dec_pnt)]
        integral = _energy_integrals(values, centres, edges, log_axes, energy_edges, points,
                                     energy_integration)
    elif align == "RADEC":
        lon, lat = fov.radec_to_fov(ra, dec, info.ra_pnt, info.dec_pnt)
        # model value order is (energy, dety, detx): points are (lat, lon)
        integral = _energy_integrals(values, centres, edges, log_axes, energy_edges, [lat, lon],
                                     energy_integration)
    else:
        params = run_altaz_params(info)
        times, weights = time_samples(info, max_rotation=max_rotation, params=params, gti=gti)
        integral = 0.0
        for t, w in zip(times, weights):
            lon, lat = fov.radec_to_altaz_fov(ra, dec, np.full(ra.shape, t), params)
            integral = integral + w * _energy_integrals(values, centres, edges, log_axes,
                                                        energy_edges, [lat, lon],
                                                        energy_integration)
    return integral * np.asarray(solid_angle) * float(info.ontime)


@takes_store("store")
def predict_counts(model: xr.Dataset, store: xr.Dataset, obs_id: int, *, energy_edges=None,
                   width: float = 5.0, binsz: float = 0.05, group=None, zenith=None,
                   energy_integration: str = "edges", max_rotation: float = 0.25) -> xr.Dataset:
    """Expected background counts of run ``obs_id`` on a FoV grid around its pointing.

    The grid is ``width x width`` deg of ``binsz`` boxes in the RADEC-aligned FoV frame
    (``detx`` = fov_lon, ``dety`` = fov_lat, gammapy sign), i.e. fixed on the sky; each box's
    centre has ``ra``/``dec`` coordinates. Energy bins default to the model's.

    Returns
    -------
    Dataset with ``npred`` ``(energy, dety, detx)``: expected counts, with ``ra``, ``dec`` and
    the ``*_bounds`` coordinates; attrs ``obs_id``, ``ontime``, ``energy_integration``.
    """

    row = store.sel(obs_id=[int(obs_id)])
    info = run_infos(row)[0]
    _, header, gti = read_run(info, ("TIME",))  # the header and the good time intervals
    if not all(np.isfinite(getattr(info, k)) for k in ("geolon", "geolat", "mjdrefi", "tstart")):
        info = complete_run_info(info, header)
    energy_edges = edges_of(model, "energy") if energy_edges is None else np.asarray(energy_edges)
    n = int(round(width / binsz))
    fov_edges = np.linspace(-width / 2, width / 2, n + 1)
    centres = 0.5 * (fov_edges[1:] + fov_edges[:-1])
    lon, lat = np.meshgrid(centres, centres)  # (dety, detx)
    ra, dec = fov.fov_to_radec(lon, lat, info.ra_pnt, info.dec_pnt)
    omega = box_solid_angle(fov_edges, fov_edges)
    counts = predict_at(model, info, ra, dec, omega, energy_edges, group=group, zenith=zenith,
                        energy_integration=energy_integration, max_rotation=max_rotation, gti=gti)
    coords = {}
    coords.update(axis_coords("energy", energy_edges))
    coords.update(axis_coords("detx", fov_edges))
    coords.update(axis_coords("dety", fov_edges))
    coords["ra"] = (("dety", "detx"), ra, {"units": "deg"})
    coords["dec"] = (("dety", "detx"), dec, {"units": "deg"})
    npred = xr.Variable(("energy", "dety", "detx"), counts,
                        {"units": "", "long_name": "expected background counts"})
    return xr.Dataset({"npred": npred}, coords=coords,
                      attrs={"obs_id": int(obs_id), "ontime": float(info.ontime),
                             "energy_integration": energy_integration})
