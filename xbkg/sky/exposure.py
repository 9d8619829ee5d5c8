"""Exposure: observation time x energy bin width x solid angle, summed over a group's runs.

The GADF rate is per observation time (ONTIME, no dead-time correction). Solid angles are exact
on the sphere: an offset annulus is ``2 pi (cos t1 - cos t2)``; a FoV box is
``dlon (sin lat2 - sin lat1)`` (radians). Parts of bins beyond the offset cut hold no events, so
their solid angle is removed too, exactly (closed forms for annuli and for box ∩ cap).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "energy_widths_mev",
    "annulus_solid_angle",
    "box_cap_solid_angle",
    "box_solid_angle",
    "fov_solid_angle",
    "exposure_cube",
]


def energy_widths_mev(energy_edges_tev) -> np.ndarray:
    """Energy bin widths in MeV from edges in TeV."""
    return np.diff(np.asarray(energy_edges_tev, dtype=float)) * 1e6


def annulus_solid_angle(offset_edges_deg, offset_max=np.inf) -> np.ndarray:
    """Solid angle (sr) of each offset annulus, clipped at ``offset_max`` (deg).

    >>> float(annulus_solid_angle([0.0, 180.0])[0] / np.pi)
    4.0
    """
    edges = np.radians(np.minimum(np.asarray(offset_edges_deg, dtype=float), offset_max))
    return 2 * np.pi * (np.cos(edges[:-1]) - np.cos(edges[1:]))


def _cap_lon_integral(lon, cos_r, sin_r):
    """``G(lon) = integral_0^lon sin(b(t)) dt`` (rad), ``b(t) = arccos(cos_r / cos t)`` the
    half-height in latitude of the cap ``cos(lat) cos(lon) >= cos_r`` at longitude t (|lon| <= r).

    ``G = arcsin(sin lon / sin r) - cos r * arctan(cos r sin lon / sqrt(sin^2 r - sin^2 lon))``.
    """
    s = np.sin(lon)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(np.clip((sin_r - s) * (sin_r + s), 0.0, None))
        return (np.arcsin(np.clip(s / sin_r, -1.0, 1.0))
                - cos_r * np.arctan2(cos_r * s, root))


def _cap_lat_integral(y, a, b, r):
    """``integral_a^b clip(sin y, -sin b(t), sin b(t)) dt``: the cap's part below latitude y
    (from the equator, signed) over longitudes [a, b] within [-r, r] (rad, r < pi / 2)."""
    cos_r, sin_r = np.cos(r), np.sin(r)
    yy = np.abs(y)
    # the cap is taller than |y| for |t| < L
    with np.errstate(invalid="ignore", divide="ignore"):
        lim = np.where(yy < r, np.arccos(np.clip(cos_r / np.cos(yy), -1.0, 1.0)), 0.0)
    lo = np.clip(np.maximum(a, -lim), a, b)
    hi = np.clip(np.minimum(b, lim), lo, b)
    g = _cap_lon_integral
    m = (np.sin(yy) * (hi - lo) + g(b, cos_r, sin_r) - g(a, cos_r, sin_r)
         - (g(hi, cos_r, sin_r) - g(lo, cos_r, sin_r)))
    return np.sign(y) * m


def _box_cap_small(x1, x2, y1, y2, r):
    """Solid angle (sr) of boxes ``[x1, x2] x [y1, y2]`` (rad) in the cap of radius r < pi / 2."""
    a = np.clip(x1, -r, r)
    b = np.clip(x2, -r, r)
    return np.maximum(_cap_lat_integral(y2, a, b, r) - _cap_lat_integral(y1, a, b, r), 0.0)


def box_cap_solid_angle(x1, x2, y1, y2, offset_max) -> np.ndarray:
    """Exact solid angle (sr) of FoV boxes ``lon in [x1, x2], lat in [y1, y2]`` (deg, broadcast)
    within ``offset_max`` (deg) of the FoV centre (lon = lat = 0).

    The box's measure is ``cos(lat) dlat dlon``; at longitude t the cap spans latitudes
    ``|lat| <= arccos(cos r / cos t)``, and the integral over t of the sine of that limit has a
    closed form (see ``_cap_lon_integral``), so the result is analytic (float64 rounding only).
    Caps beyond 90 deg are the sphere minus the cap around the antipode. Longitudes within
    [-180, 180], latitudes within [-90, 90].

    >>> cap = box_cap_solid_angle(-180.0, 180.0, -90.0, 90.0, 30.0)
    >>> bool(np.isclose(cap, 2 * np.pi * (1 - np.cos(np.radians(30.0))), rtol=1e-14))
    True
    """
    x1, x2, y1, y2 = (np.radians(np.asarray(v, dtype=float)) for v in (x1, x2, y1, y2))
    y1, y2 = np.clip(y1, -np.pi / 2, np.pi / 2), np.clip(y2, -np.pi / 2, np.pi / 2)
    full = np.maximum(x2 - x1, 0.0) * np.maximum(np.sin(y2) - np.sin(y1), 0.0)
    r = np.radians(float(offset_max))
    if r >= np.pi:
        return full
    if r < np.pi / 2:
        return _box_cap_small(x1, x2, y1, y2, r)
    # the cap around the antipode (lon 180) in longitudes shifted by 180 deg
    q = np.pi - r
    west = _box_cap_small(x1 + np.pi, np.minimum(x2, 0.0) + np.pi, y1, y2, q)
    east = _box_cap_small(np.maximum(x1, 0.0) - np.pi, x2 - np.pi, y1, y2, q)
    west = np.where(x1 < 0.0, west, 0.0)
    east = np.where(x2 > 0.0, east, 0.0)
    return np.maximum(full - west - east, 0.0)


def box_solid_angle(detx_edges_deg, dety_edges_deg, offset_max=np.inf) -> np.ndarray:
    """Solid angle (sr), shape ``(ny, nx)``, of FoV boxes inside the offset cut (exact: see
    :func:`box_cap_solid_angle`).

    >>> om = box_solid_angle([-1.0, 0.0, 1.0], [-1.0, 1.0], 1.0)
    >>> bool(np.isclose(om.sum(), 2 * np.pi * (1 - np.cos(np.radians(1.0))), rtol=1e-12))
    True
    """
    x = np.asarray(detx_edges_deg, dtype=float)
    y = np.asarray(dety_edges_deg, dtype=float)
    return box_cap_solid_angle(x[None, :-1], x[None, 1:], y[:-1, None], y[1:, None], offset_max)


def fov_solid_angle(kind: str, fov_edges: dict, offset_max=np.inf) -> np.ndarray:
    """Solid angle (sr) of each FoV bin of a binning inside the offset cut (deg).

    ``kind`` "2d": ``fov_edges["offset"]``, shape ``(O,)``; "3d": ``fov_edges["detx"]`` and
    ``fov_edges["dety"]``, shape ``(Y, X)`` (:func:`annulus_solid_angle`, :func:`box_solid_angle`).

    >>> float(fov_solid_angle("2d", {"offset": [0.0, 180.0]})[0] / np.pi)
    4.0
    """
    if kind == "2d":
        return annulus_solid_angle(fov_edges["offset"], offset_max)
    return box_solid_angle(fov_edges["detx"], fov_edges["dety"], offset_max)


def exposure_cube(ontime_per_energy: np.ndarray, energy_edges_tev, solid_angle: np.ndarray) -> np.ndarray:
    """Exposure (s MeV sr), shape ``(G, E) + solid_angle.shape``.

    Parameters
    ----------
    ontime_per_energy : array (G, E)
        Summed observation time (s) of each group's runs that contribute to each energy bin.
    energy_edges_tev : array (E + 1)
    solid_angle : array, sr, shape of the FoV axes
    """
    t_de = np.asarray(ontime_per_energy, dtype=float) * energy_widths_mev(energy_edges_tev)[None, :]
    return t_de.reshape(t_de.shape + (1,) * solid_angle.ndim) * solid_angle[None, None]
