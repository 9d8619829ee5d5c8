"""Closure of a model built from a simulated store: its counts against the simulated truth."""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.simulate import model_truth_counts
from xbkg.store.datastore import takes_store

__all__ = ["bins_inside_offset_cut", "truth_closure"]


def bins_inside_offset_cut(model: xr.Dataset) -> np.ndarray:
    """FoV bins lying wholly inside the model's ``offset_max``: ``(1, O)`` or ``(1, Y, X)``
    (broadcasts over energy). A 3D box is inside when its corner farthest from the centre is.

    >>> from xbkg.core.schema import assemble_model
    >>> m = assemble_model(np.ones((1, 1, 3)), np.ones((1, 1, 3)), kind="2d",
    ...                    energy_edges=[1.0, 10.0], fov_edges={"offset": [0.0, 1.0, 2.0, 3.0]},
    ...                    zenith_edges=[0.0, 60.0], fov_alignment="RADEC", offset_max=2.0)
    >>> bins_inside_offset_cut(m).tolist()
    [[True, True, False]]
    """
    omax = float(model.attrs["offset_max"])
    if model.attrs["kind"] == "2d":
        return (edges_of(model, "offset")[1:] <= omax)[None, :]
    x, y = edges_of(model, "detx"), edges_of(model, "dety")
    far_x = np.maximum(np.abs(x[:-1]), np.abs(x[1:]))
    far_y = np.maximum(np.abs(y[:-1]), np.abs(y[1:]))
    return (np.hypot(far_y[:, None], far_x[None, :]) <= omax)[None]


@takes_store("store_dir", directory=True)
def truth_closure(store_dir, model: xr.Dataset, min_expected: float = 25.0) -> list[dict]:
    """How well ``model`` recovers the truth of the simulated store (a directory or an opened
    store) it was built from.

    Per zenith group, over the bins inside the offset cut expecting at least ``min_expected``
    counts (:func:`xbkg.simulate.model_truth_counts`): ``n_bins``, ``chi2_ndf`` (mean squared
    Poisson pull of the counts) and ``ratio`` (counts / truth); ``n_bins`` 0 and NaN
    statistics for a group without such bins.
    """
    expected = model_truth_counts(store_dir, model)
    counts = model["counts"].values
    inner = bins_inside_offset_cut(model)
    out = []
    for g in range(counts.shape[0]):
        sel = (expected[g] >= min_expected) & inner
        row = {"group": g, "n_bins": int(sel.sum()), "chi2_ndf": np.nan, "ratio": np.nan}
        if sel.any():
            pulls = (counts[g][sel] - expected[g][sel]) / np.sqrt(expected[g][sel])
            row.update(chi2_ndf=float(np.mean(pulls**2)),
                       ratio=float(counts[g][sel].sum() / expected[g][sel].sum()))
        out.append(row)
    return out
