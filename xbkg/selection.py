"""Run selection from the observation table (no event is read)."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

__all__ = ["SELECTIONS", "select_runs", "SelectionError"]

log = logging.getLogger(__name__)

SELECTIONS = ("all", "off", "offplane")


class SelectionError(ValueError):
    """No run survives the selection, or the selection options are invalid."""


def _text(store: xr.Dataset, name: str) -> np.ndarray:
    if name not in store:
        return np.full(store.sizes["obs_id"], "", dtype=str)
    return np.char.lower(store[name].values.astype(str))


def select_runs(store: xr.Dataset, selection: str = "all", *, obs_ids=None, n_obs_max=None,
                glat_min: float = 5.0) -> tuple[np.ndarray, dict[int, str]]:
    """OBS_IDs to use and, for every other run of the store, why it was rejected.

    Parameters
    ----------
    selection : {"all", "off", "offplane"}
        ``off``: TARGET_NAME or OBJECT says "off" data; ``offplane``: ``|GLAT_PNT| > glat_min``.
    obs_ids : list of int, optional
        Restrict to these runs (a run list); unknown ids raise.
    n_obs_max : int, optional
        Keep at most this many runs (the first ones in OBS_ID order).
    """
    if selection not in SELECTIONS:
        raise SelectionError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    all_ids = store.obs_id.values.astype("int64")
    keep = np.ones(all_ids.size, dtype=bool)
    rejected: dict[int, str] = {}

    def reject(mask, reason):
        for obs_id in all_ids[keep & mask]:
            rejected[int(obs_id)] = reason
        keep[mask] = False

    if obs_ids is not None:
        wanted = np.atleast_1d(np.asarray(obs_ids, dtype="int64"))
        unknown = np.setdiff1d(wanted, all_ids)
        if unknown.size:
            raise SelectionError(f"run list has OBS_IDs not in the store: {unknown[:10].tolist()}")
        reject(~np.isin(all_ids, wanted), "not in the run list")
    reject(store["events_file"].values.astype(str) == "", "no events file in the HDU index")
    if selection == "off":
        is_off = np.char.find(_text(store, "TARGET_NAME"), "off") >= 0
        is_off |= np.char.find(_text(store, "OBJECT"), "off") >= 0
        reject(~is_off, "not an off run (TARGET_NAME/OBJECT)")
    elif selection == "offplane":
        if "GLAT_PNT" not in store:
            raise SelectionError("selection 'offplane' needs a GLAT_PNT column in the obs index")
        glat = store["GLAT_PNT"].values.astype(float)
        reject(~(np.abs(glat) > glat_min), f"|GLAT_PNT| <= {glat_min} deg")
    if n_obs_max is not None:
        if int(n_obs_max) < 1:
            raise SelectionError(f"n_obs_max must be >= 1, got {n_obs_max}")
        over = np.cumsum(keep) > int(n_obs_max)
        reject(over, f"beyond n_obs_max={int(n_obs_max)}")
    if not keep.any():
        raise SelectionError(f"no run selected (selection={selection!r}, {all_ids.size} runs in store)")
    log.info("selected %d of %d runs", int(keep.sum()), all_ids.size)
    return all_ids[keep], rejected
