"""``xbkg apply-model``: a conditional model's background for every run of a store.

Writes one BKG file per run plus an HDU index and obs index, so that
``gammapy.data.DataStore.from_dir(OUTDIR).obs(ID).bkg`` is the run's model while its events, GTI
and IRFs are read from the store. The folder's contents are listed in docs/formats.rst.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.building.conditional import ConditionRangeWarning, is_conditional, models_for_runs
from xbkg.building.perrun import RUN_MODEL_DIR, run_model_file_name
from xbkg.io.atomic import atomic_dir
from xbkg.io.gadf import write_table_file
from xbkg.io.hduindex import make_bkg_index_table, make_total_index_table
from xbkg.store.datastore import takes_store
from xbkg.store.events import fill_from_headers

__all__ = ["apply_model"]

log = logging.getLogger(__name__)


@takes_store("store")
def apply_model(model: xr.Dataset, store: xr.Dataset, outdir, *, obs_ids=None,
                overwrite: bool = False) -> dict:
    """Write every run's model of a conditional ``model`` for the runs of ``store``.

    Parameters
    ----------
    model : Dataset
        A model with a conditional fit (:func:`xbkg.make_model` with ``conditions``).
    store : Dataset
        Observation Dataset (:func:`xbkg.open_datastore`) of the runs (e.g. ON runs).
    outdir : path
        Output folder, written atomically.
    obs_ids : list of int, optional
        Runs to write (default: every run of the store).
    overwrite : bool
        Replace a non-empty ``outdir``.

    Returns
    -------
    dict
        ``{"outdir": Path, "n_runs": int, "outside": {obs_id: [terms]}}``.
    """
    from astropy.table import Table


    if not is_conditional(model):
        raise ValueError("apply-model needs a conditional model (make-models --conditions)")
    if obs_ids is not None:
        missing = sorted(set(int(o) for o in obs_ids) - set(store.obs_id.values.tolist()))
        if missing:
            raise ValueError(f"run(s) {missing[:5]} not in the store's obs index")
        store = store.sel(obs_id=np.asarray(obs_ids, dtype="int64"))
    store = fill_from_headers(store, on_error="raise")
    kind = model.attrs["kind"]
    outside, sys_err, stat_err, names = {}, [], [], []
    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        folder = tmp / RUN_MODEL_DIR
        folder.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConditionRangeWarning)  # reported once, below
            for obs_id, one in models_for_runs(model, store, warn=False):
                info = json.loads(one.attrs["per_run"])
                if info["outside_range"]:
                    outside[obs_id] = info["outside_range"]
                sys_err.append(info["sys_scatter"])
                stat_err.append(info["stat_error"])
                name = run_model_file_name(obs_id)
                write_table_file(one, 0, folder / name)
                names.append(name)
        bkg = make_bkg_index_table(store.obs_id.values, names, kind=kind, file_dir=RUN_MODEL_DIR)
        total = make_total_index_table(store.attrs["hdu_index"], bkg,
                                       store_dir=store.attrs["base_dir"], out_dir=Path(outdir))
        total = total[np.isin(np.asarray(total["OBS_ID"]), store.obs_id.values)]
        total.write(tmp / "hdu-index.fits.gz")
        obs = Table.read(store.attrs["obs_index"], hdu=1)
        obs = obs[np.isin(np.asarray(obs["OBS_ID"], dtype="int64"), store.obs_id.values)]
        order = {int(o): i for i, o in enumerate(store.obs_id.values)}
        idx = np.array([order[int(o)] for o in obs["OBS_ID"]], dtype=int)
        ids = store.obs_id.values[idx]
        obs["BKG_OUTSIDE"] = np.array([int(o) in outside for o in ids])
        obs["BKG_OUTSIDE_TERMS"] = np.array([",".join(outside.get(int(o), [])) or "-"
                                             for o in ids])
        obs["BKG_SYS"] = np.asarray(sys_err, float)[idx]
        obs["BKG_STAT"] = np.asarray(stat_err, float)[idx]
        obs.write(tmp / "obs-index.fits.gz")
    if outside:
        log.warning("%d run(s) outside the conditions the model was fitted on (extrapolated; "
                    "column BKG_OUTSIDE): %s", len(outside),
                    "; ".join(f"{o}: {', '.join(t)}" for o, t in list(outside.items())[:10]))
    return {"outdir": Path(outdir), "n_runs": len(names), "outside": outside}
