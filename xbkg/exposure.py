"""Exposure: observation time x energy bin width x solid angle, summed over a group's runs.

The GADF rate is per observation time (ONTIME, no dead-time correction). Solid angles are exact
on the sphere: an offset annulus is ``2 pi (cos t1 - cos t2)``; a FoV box is
``dlon (sin lat2 - sin lat1)`` (radians). Parts of bins beyond the offset cut hold no events, so
their solid angle is removed too (exactly for annuli, on a sub-grid for boxes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["energy_widths_mev", "annulus_solid_angle", "box_solid_angle", "exposure_cube"]


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


def box_solid_angle(detx_edges_deg, dety_edges_deg, offset_max=np.inf, *, oversample=16) -> np.ndarray:
    """Solid angle (sr), shape ``(ny, nx)``, of FoV boxes inside the offset cut.

    Boxes fully inside ``offset_max`` get the exact value; boxes crossing the cut are summed over
    an ``oversample x oversample`` sub-grid of exact sub-boxes whose centres pass the cut.
    """
    x = np.radians(np.asarray(detx_edges_deg, dtype=float))
    y = np.radians(np.asarray(dety_edges_deg, dtype=float))
    exact = np.diff(x)[None, :] * np.diff(np.sin(y))[:, None]
    if not np.isfinite(offset_max):
        return exact
    cos_max = np.cos(np.radians(offset_max))
    # farthest / nearest corner offsets decide which boxes need the sub-grid
    cx = np.cos(x)
    cy = np.cos(y)
    min_cos = np.minimum.reduce([cy[:-1, None] * cx[None, :-1], cy[:-1, None] * cx[None, 1:],
                                 cy[1:, None] * cx[None, :-1], cy[1:, None] * cx[None, 1:]])
    out = exact.copy()
    for j, i in zip(*np.nonzero(min_cos < cos_max)):
        xs = np.linspace(x[i], x[i + 1], oversample + 1)
        ys = np.linspace(y[j], y[j + 1], oversample + 1)
        sub = np.diff(xs)[None, :] * np.diff(np.sin(ys))[:, None]
        xc = 0.5 * (xs[1:] + xs[:-1])
        yc = 0.5 * (ys[1:] + ys[:-1])
        inside = np.cos(yc)[:, None] * np.cos(xc)[None, :] >= cos_max
        out[j, i] = sub[inside].sum()
    return out


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
