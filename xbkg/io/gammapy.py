"""Bridge between xbkg models and gammapy background IRFs (optional; gammapy imported lazily).

gammapy keeps its own axis order: ``Background2D`` data are ``(energy, offset)`` and
``Background3D`` data ``(energy, fov_lon, fov_lat)``, while an xbkg 3D model is
``(energy, dety, detx)`` with ``detx = fov_lon`` and ``dety = fov_lat``. Both functions transpose.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.core.schema import RATE_UNIT, assemble_model, select_group, validate_model

__all__ = ["to_gammapy", "from_gammapy", "respect_fov_alignment", "SASH_CREATOR"]



def to_gammapy(model: xr.Dataset, group=0, *, zenith=None):
    """One zenith group of a model as a gammapy ``Background2D`` or ``Background3D``.

    Parameters
    ----------
    model : Dataset
        A model in the :mod:`xbkg.core.schema` layout.
    group : int
        Zenith group ID (ignored when ``zenith`` is given).
    zenith : float, optional
        Zenith angle (deg) selecting the group, as in :func:`xbkg.model.evaluate.select_group`.

    Returns
    -------
    gammapy.irf.Background2D or gammapy.irf.Background3D
        Energy axis from the model's energy edges (TeV, log interpolation), offset or
        ``fov_lon, fov_lat`` axes from its FoV edges (deg), data in s-1 MeV-1 sr-1 (float64),
        ``fov_alignment`` from the model's ``fov_alignment`` attribute.

    Examples
    --------
    >>> import numpy as np
    >>> from xbkg.core.schema import assemble_model
    >>> model = assemble_model(np.ones((1, 2, 3), int), np.ones((1, 2, 3)), kind="2d",
    ...     energy_edges=[1.0, 2.0, 4.0], fov_edges={"offset": [0.0, 1.0, 2.0, 3.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=3.0)
    >>> to_gammapy(model).data.shape
    (2, 3)
    """
    import astropy.units as u
    from gammapy.irf import Background2D, Background3D
    from gammapy.maps import MapAxis

    validate_model(model)
    gid = select_group(model, group=None if zenith is not None else group, zenith=zenith)
    kind = model.attrs.get("kind")
    energy = MapAxis.from_energy_edges(edges_of(model, "energy") * u.TeV, name="energy")
    if kind == "2d":
        names, order, cls = ("offset",), ("energy", "offset"), Background2D
    else:
        names, order, cls = ("fov_lon", "fov_lat"), ("energy", "detx", "dety"), Background3D
    dims = [d for d in order if d != "energy"]
    axes = [energy] + [
        MapAxis.from_edges(edges_of(model, d) * u.deg, name=n, interp="lin")
        for d, n in zip(dims, names)
    ]
    data = np.asarray(model["rate"].sel(zenith_group=gid).transpose(*order).values, "float64")
    return cls(axes=axes, data=data, unit=u.Unit(RATE_UNIT),
               fov_alignment=model.attrs.get("fov_alignment", "RADEC"))


def from_gammapy(bkg, *, zenith_bounds=(0.0, 90.0)) -> xr.Dataset:
    """A one-group model Dataset (variable ``rate`` only) from a gammapy background IRF.

    Parameters
    ----------
    bkg : gammapy.irf.Background2D or gammapy.irf.Background3D
    zenith_bounds : (float, float)
        Zenith range (deg) of the single group.

    Returns
    -------
    Dataset in the :mod:`xbkg.core.schema` layout with ``rate`` (s-1 MeV-1 sr-1) and no counts,
    exposure or rate_error. ``offset_max`` is the last offset edge (2D) or the largest offset
    fully covered by the FoV box (3D). A ``REVERSE_LON_RADEC`` IRF (gammapy's legacy H.E.S.S.
    frame) becomes a ``RADEC`` model with the longitude axis mirrored (edges negated and
    reversed, data flipped), so it evaluates to the same rate at the same sky position.

    Examples
    --------
    >>> import numpy as np
    >>> from xbkg.core.schema import assemble_model
    >>> counts = np.arange(1, 13).reshape(1, 2, 2, 3)  # (group, energy, dety, detx)
    >>> model = assemble_model(counts, np.ones(counts.shape), kind="3d",
    ...     energy_edges=[1.0, 2.0, 4.0],
    ...     fov_edges={"detx": [-1.5, -0.5, 0.5, 1.5], "dety": [-1.0, 0.0, 1.0]},
    ...     zenith_edges=[20, 40], fov_alignment="RADEC", offset_max=1.0)
    >>> bkg = to_gammapy(model)  # data (energy, fov_lon, fov_lat)
    >>> bkg.data.shape, from_gammapy(bkg)["rate"].dims
    ((2, 3, 2), ('zenith_group', 'energy', 'dety', 'detx'))
    >>> back = from_gammapy(bkg, zenith_bounds=(20, 40))
    >>> bool((back["rate"] == model["rate"]).all())
    True
    """
    tag = getattr(bkg, "tag", None)
    if tag not in ("bkg_2d", "bkg_3d"):
        raise TypeError(f"from_gammapy needs a gammapy Background2D/3D, got {type(bkg).__name__}")
    data = np.asarray(bkg.quantity.to_value(RATE_UNIT), dtype="float64")
    energy = bkg.axes["energy"].edges.to_value("TeV")
    align = str(getattr(bkg.fov_alignment, "value", bkg.fov_alignment)).upper()
    if tag == "bkg_2d":
        kind = "2d"
        offset = bkg.axes["offset"].edges.to_value("deg")
        fov_edges = {"offset": offset}
        rate = data  # (energy, offset)
        offset_max = float(offset[-1])
    else:
        kind = "3d"
        lon = bkg.axes["fov_lon"].edges.to_value("deg")
        lat = bkg.axes["fov_lat"].edges.to_value("deg")
        rate = np.swapaxes(data, 1, 2)  # (energy, lon, lat) -> (energy, dety, detx)
        if align == "REVERSE_LON_RADEC":
            lon, rate, align = -lon[::-1], rate[:, :, ::-1], "RADEC"
        fov_edges = {"detx": lon, "dety": lat}
        offset_max = float(min(np.abs(lon[[0, -1]]).min(), np.abs(lat[[0, -1]]).min()))
    if align not in ("ALTAZ", "RADEC"):
        raise ValueError(f"from_gammapy: unsupported fov_alignment {align!r}")
    if not np.all(np.isfinite(rate)):
        raise ValueError(f"from_gammapy: {tag} data have non-finite values")
    shape = (1,) + rate.shape
    ds = assemble_model(
        np.zeros(shape, dtype="int64"), np.ones(shape), kind=kind, energy_edges=energy,
        fov_edges=fov_edges, zenith_edges=list(zenith_bounds), fov_alignment=align,
        offset_max=offset_max, relative_floor=0.0,
        provenance={"source": "gammapy", "class": type(bkg).__name__,
                    "fov_alignment": str(getattr(bkg.fov_alignment, "value", align))},
    )
    rate_attrs = dict(ds["rate"].attrs)
    ds = ds.drop_vars(["counts", "exposure", "rate_error", "has_data"])
    ds["rate"] = xr.Variable(ds["rate"].dims, rate[None], rate_attrs)
    ds.attrs["empty_bins"] = "rate imported from gammapy; no counts or exposure"
    return ds


#: CREATOR of H.E.S.S. DR1 event files, for which gammapy overrides the background alignment.
SASH_CREATOR = "SASH FITS::EventListWriter"


def respect_fov_alignment(observation):
    """Make gammapy use the FOVALIGN of the background file for a H.E.S.S. DR1 observation.

    gammapy 2.x forces ``obs.bkg.fov_alignment = REVERSE_LON_RADEC`` on every access for runs
    whose EVENTS header says ``CREATOR = 'SASH FITS::EventListWriter'`` and ``HDUVERS = '0.2'``
    (all DR1 runs), whatever the background file says: right for the DR1 per-run models, wrong
    for any model xbkg writes (ALTAZ or RADEC, with the GADF sign). This marks the observation's
    metadata so that gammapy keeps the alignment it read from the file. Returns the observation.

    Use it on every DR1 observation before a maker reads ``obs.bkg``::

        from gammapy.data import DataStore
        from xbkg.io.gammapy import respect_fov_alignment

        store = DataStore.from_dir("OUTDIR")            # written by xbkg make-models
        observations = [respect_fov_alignment(obs) for obs in store.get_observations(ids)]

    Observations from other writers are returned unchanged.
    """
    optional = getattr(observation.meta, "optional", None)
    if optional and optional.get("CREATOR") == SASH_CREATOR:
        optional["CREATOR"] = f"{SASH_CREATOR} (xbkg: FOVALIGN respected)"
    return observation
