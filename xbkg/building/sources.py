"""Known gamma-ray sources to exclude from a model: each run's target and catalog sources.

Stores without off runs (MAGIC, VERITAS, CTA, LST) need their sources excluded before
``selection="all"`` gives a background model: :func:`target_circles` (each run's target),
:func:`catalog_circles` (catalog sources reaching a run's FoV) and :func:`on_source_runs`.
Where targets are looked up and the radii used: docs/architecture.rst.
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from xbkg.core.circles import SkyCircles
from xbkg.core.defaults import DEFAULTS
from xbkg.io.catalogs import SourceCatalog, read_source_catalog
from xbkg.io.fitstable import read_header
from xbkg.sky import fov
from xbkg.store.datastore import takes_store

__all__ = ["DEFAULT_MIN_RADIUS", "DEFAULT_EXTENSION_FACTOR", "run_targets", "target_circles",
           "catalog_circles", "on_source_runs", "source_exclusions"]

log = logging.getLogger(__name__)

#: deg: smallest exclusion radius of a catalog source (point-like sources).
DEFAULT_MIN_RADIUS = DEFAULTS.catalog_min_radius
#: Exclusion radius of an extended catalog source, in units of its extension.
DEFAULT_EXTENSION_FACTOR = DEFAULTS.catalog_extension_factor

_RA_COLUMNS = ("RA_OBJ", "TARGET_RA")
_DEC_COLUMNS = ("DEC_OBJ", "TARGET_DEC")
_NAME_COLUMNS = ("OBJECT", "TARGET_NAME", "TARGET")
_OFF_WORDS = ("off", "empty", "dark")


def _store_column(store: xr.Dataset, names) -> np.ndarray | None:
    for name in names:
        for var in store.data_vars:
            if str(var).upper() == name and store[var].dims == ("obs_id",):
                return store[var].values
    return None


def _header_targets(store: xr.Dataset, rows, *, quiet: bool = False) -> dict:
    """OBJECT, RA_OBJ, DEC_OBJ of the EVENTS headers of the given runs (unreadable: skipped,
    with a warning unless ``quiet``)."""

    out = {}
    files, hdus = store["events_file"].values.astype(str), store["events_hdu"].values.astype(str)
    for i in rows:
        if not files[i]:
            continue
        try:
            out[i] = read_header(files[i], hdus[i])
        except (OSError, ValueError) as exc:
            (log.debug if quiet else log.warning)(
                "run %s: cannot read the target from the EVENTS header: %s",
                int(store.obs_id[i]), exc)
    return out


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return np.nan
    return float(value)


@takes_store("store")
def run_targets(store: xr.Dataset, *, max_header_reads: int | None = None,
                quiet: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target name, RA and Dec (deg; NaN when unknown) of each run of ``store``.

    Obs-index columns first; the EVENTS headers of runs still missing a name or a position
    are read (header only; at most ``max_header_reads`` of them when given).
    """
    n = store.sizes["obs_id"]
    names = _store_column(store, _NAME_COLUMNS)
    names = np.full(n, "", dtype=object) if names is None else names.astype(str).astype(object)
    ra, dec = (_store_column(store, c) for c in (_RA_COLUMNS, _DEC_COLUMNS))
    ra = np.full(n, np.nan) if ra is None else np.asarray(ra, dtype=float).copy()
    dec = np.full(n, np.nan) if dec is None else np.asarray(dec, dtype=float).copy()
    need = np.flatnonzero((names == "") | ~np.isfinite(ra) | ~np.isfinite(dec))
    for i, header in _header_targets(store, need[:max_header_reads], quiet=quiet).items():
        if not names[i]:
            names[i] = str(header.get("OBJECT", "") or "").strip()
        if not (np.isfinite(ra[i]) and np.isfinite(dec[i])):
            ra[i], dec[i] = _number(header.get("RA_OBJ")), _number(header.get("DEC_OBJ"))
    return names.astype(str), ra, dec


@takes_store("store")
def target_circles(store: xr.Dataset, radius: float, catalog=None) -> SkyCircles:
    """A circle of ``radius`` deg around the target of each run (duplicates merged).

    A run without a target position whose target name is in ``catalog`` (a
    :class:`xbkg.io.catalogs.SourceCatalog`) gets the catalog position; runs left without one
    are listed in a warning.
    """
    radius = float(radius)
    if not 0 < radius < 90:
        raise ValueError(f"exclude_targets radius must be in (0, 90) deg, got {radius}")
    names, ra, dec = run_targets(store)
    known = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    if catalog is not None:
        for i in np.flatnonzero(~known):
            j = catalog.find(names[i])
            if j is not None:
                ra[i], dec[i], known[i] = catalog.ra[j], catalog.dec[j], True
    if not known.all():
        log.warning("exclude_targets: no target position for %d run(s) (no RA_OBJ/DEC_OBJ, and "
                    "the OBJECT name %s): %s", int((~known).sum()),
                    "is not in the catalog" if catalog is not None else
                    "cannot be resolved without --exclusion-catalog",
                    store.obs_id.values[~known][:10].tolist())
    keys = {}
    for i in np.flatnonzero(known):
        keys.setdefault((round(float(ra[i]), 6), round(float(dec[i]), 6)), names[i] or "target")
    if not keys:
        return SkyCircles(np.zeros(0), np.zeros(0), np.zeros(0))
    pos = np.array(list(keys), dtype=float)
    return SkyCircles(pos[:, 0], pos[:, 1], np.full(len(keys), radius),
                      tuple(f"target {n}" for n in keys.values()))


@takes_store("store")
def catalog_circles(catalog, store: xr.Dataset, reach: float, *,
                    min_radius: float = DEFAULT_MIN_RADIUS,
                    factor: float = DEFAULT_EXTENSION_FACTOR) -> SkyCircles:
    """Circles of the ``catalog`` sources that reach a run of ``store``.

    Radius ``max(min_radius, factor x extension)`` (deg); a source is kept when its circle's
    edge is closer than ``reach`` (deg, the model's offset cut) to a run's pointing.
    """
    if not float(min_radius) > 0 or not float(factor) >= 0:
        raise ValueError(f"catalog exclusion: min_radius must be > 0 and factor >= 0, got "
                         f"{min_radius}, {factor}")
    radius = np.minimum(np.maximum(float(min_radius), float(factor) * catalog.extension), 89.0)
    ra_p, dec_p = (np.asarray(store[k].values, dtype=float) for k in ("ra_pnt", "dec_pnt"))
    ok = np.isfinite(ra_p) & np.isfinite(dec_p)
    if not len(catalog) or not ok.any():
        return SkyCircles(np.zeros(0), np.zeros(0), np.zeros(0))
    sep = fov.offset_deg(ra_p[ok][:, None], dec_p[ok][:, None], catalog.ra[None, :],
                         catalog.dec[None, :])
    near = np.flatnonzero(((sep - radius[None, :]) < float(reach)).any(axis=0))
    return SkyCircles(catalog.ra[near], catalog.dec[near], radius[near],
                      tuple(catalog.names[i][0] for i in near))


@takes_store("store")
def on_source_runs(store: xr.Dataset, *, max_header_reads: int | None = 5) -> dict:
    """Runs whose target name says they are on a source (not empty and not an off, empty or
    dark field): ``{obs_id: name}``.

    Names come from the obs index (OBJECT, TARGET_NAME, TARGET); when it has none, from the
    EVENTS headers of at most ``max_header_reads`` runs (a sample: the check must not read
    every header of a large store before its build).
    """
    names = run_targets(store, max_header_reads=max_header_reads, quiet=True)[0]
    lower = np.char.lower(names.astype(str))
    on = [bool(n.strip()) and not any(w in n for w in _OFF_WORDS) for n in lower]
    return {int(o): str(names[i]) for i, o in enumerate(store.obs_id.values.tolist()) if on[i]}


@takes_store("store")
def source_exclusions(store: xr.Dataset, *, reach: float, exclude_targets=None,
                      exclusion_catalog=None, min_radius: float = DEFAULT_MIN_RADIUS,
                      factor: float = DEFAULT_EXTENSION_FACTOR) -> SkyCircles | None:
    """Target and catalog circles for the runs of ``store`` (None when neither is asked).

    ``exclusion_catalog`` is a catalog file or a :class:`xbkg.io.catalogs.SourceCatalog`.
    """
    if exclude_targets is None and exclusion_catalog is None:
        return None

    catalog = exclusion_catalog
    if catalog is not None and not isinstance(catalog, SourceCatalog):
        catalog = read_source_catalog(catalog)
    parts = []
    if exclude_targets is not None:
        parts.append(target_circles(store, exclude_targets, catalog))
    if catalog is not None:
        parts.append(catalog_circles(catalog, store, reach, min_radius=min_radius, factor=factor))
    return SkyCircles.concatenate(parts)
