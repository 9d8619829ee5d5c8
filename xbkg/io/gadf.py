"""GADF background FITS: model <-> BKG_2D / BKG_3D HDUs, table files and image files.

Everything known about the layouts is in the tables at the top (:data:`TABLE_AXES`,
:data:`AXIS_COLUMNS`, :data:`HDU_SPECS`, :data:`GROUP_CARDS`); one writer (strict, deterministic
bytes) and one reader (:func:`read_bkg_hdu`, tolerant of axis order, ``BGD``, OGIP, units).
What is written and what is accepted: docs/formats.rst.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from xbkg._version import __version__
from xbkg.core.binning import edges_of
from xbkg.core.schema import (
    FOV_ALIGNMENTS,
    RATE_UNIT,
    assemble_model,
    check_model_values,
    fov_dims,
    validate_model,
)
from xbkg.io.atomic import atomic_path
from xbkg.io.fitstable import check_sizes
from xbkg.io.fitswrite import (
    gzip_bytes,
    hdu_bytes,
    image_hdu_bytes,
    primary_block,
    table_form,
    table_hdu_bytes,
)

__all__ = [
    "HDUDOC",
    "gadf_cards",
    "RATE_UNIT",
    "DEFAULT_FOV_ALIGNMENT",
    "TABLE_AXES",
    "AXIS_COLUMNS",
    "HDU_SPECS",
    "GROUP_CARDS",
    "OFFSET_CARD",
    "GadfReadWarning",
    "AxisOrderWarning",
    "FovAlignmentWarning",
    "bkg_hdu",
    "counts_hdu",
    "exposure_hdu",
    "image_hdu",
    "write_table_file",
    "write_image_file",
    "read_bkg_hdu",
    "open_bkg_fits",
]

HDUDOC = "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
#: FoV alignment of a 3D HDU without FOVALIGN (GADF spec; gammapy assumes RADEC instead).
DEFAULT_FOV_ALIGNMENT = "ALTAZ"

#: Axes of the table columns, in column order. The data column's numpy axes are the reverse
#: (gammapy 2.0 order), so its FITS ``TDIM`` lists them in this order.
TABLE_AXES = {"2d": ("energy", "offset"), "3d": ("energy", "detx", "dety")}

#: Column prefix (``<prefix>_LO``, ``<prefix>_HI``) and unit of each model axis.
AXIS_COLUMNS = {
    "energy": ("ENERG", "TeV"),
    "offset": ("THETA", "deg"),
    "detx": ("DETX", "deg"),
    "dety": ("DETY", "deg"),
}



def gadf_cards(*classes: str) -> dict:
    """Header cards that declare a GADF HDU: HDUCLASS, HDUDOC, HDUVERS and ``HDUCLAS1``,
    ``HDUCLAS2``, ... for ``classes`` (every HDU xbkg writes, models, indexes and simulated
    event lists alike).

    >>> cards = gadf_cards("INDEX", "HDU")
    >>> cards["HDUCLASS"], cards["HDUVERS"], cards["HDUCLAS1"], cards["HDUCLAS2"]
    ('GADF', '0.2', 'INDEX', 'HDU')
    """
    return {"HDUCLASS": "GADF", "HDUDOC": HDUDOC, "HDUVERS": "0.2",
            **{f"HDUCLAS{i}": c for i, c in enumerate(classes, 1)}}


_GADF_BKG_CARDS = gadf_cards("RESPONSE", "BKG", "FULL-ENCLOSURE", "BKG_{KIND}")

#: What each table HDU holds: model variable, data column, unit, default EXTNAME, fixed cards
#: (``{KIND}`` is replaced by ``2D``/``3D``). 3D HDUs also get ``FOVALIGN``.
HDU_SPECS = {
    "bkg": {"var": "rate", "column": "BKG", "unit": RATE_UNIT, "extname": "BACKGROUND",
            "cards": _GADF_BKG_CARDS},
    "counts": {"var": "counts", "column": "COUNTS", "unit": "", "extname": "COUNTS",
               "cards": {}},
    "exposure": {"var": "exposure", "column": "EXPOSURE", "unit": "s MeV sr",
                 "extname": "EXPOSURE", "cards": {}},
}

#: Extra header cards describing the zenith group, written when the model has the value and
#: read back into the same variables: keyword -> (model variable, comment).
GROUP_CARDS = {
    "ZEN_LO": ("zenith_bounds", "[deg] zenith range of the group, low edge"),
    "ZEN_HI": ("zenith_bounds", "[deg] zenith range of the group, high edge"),
    "ZEN_MEAN": ("group_mean_cos_zenith", "[deg] arccos(ONTIME-weighted mean cos z)"),
    "N_OBS": ("group_n_obs", "number of runs in the group"),
    "ONTIME": ("group_ontime", "[s] total observation time of the runs"),
}

#: Header card with the model's offset cut (deg), read back as ``offset_max``.
OFFSET_CARD = "OFFMAX"

_DATA_COLUMNS = ("BKG", "BGD")
_BKG_CLASSES = ("BKG", "BGD")


class GadfReadWarning(UserWarning):
    """A background HDU was read under a documented assumption."""


class AxisOrderWarning(GadfReadWarning):
    """The data axis order of a background HDU is ambiguous; gammapy's order was assumed."""


class FovAlignmentWarning(GadfReadWarning):
    """A 3D background HDU has no FOVALIGN keyword; the GADF default ALTAZ was assumed."""


# --------------------------------------------------------------------------------------
# writing


def _group(model: xr.Dataset, group) -> xr.Dataset:
    """The model restricted to one zenith group (label), after checking the schema."""
    validate_model(model)
    labels = model["zenith_group"].values.tolist()
    if group not in labels:
        raise KeyError(f"zenith group {group!r} not in the model (groups: {labels})")
    return model.sel(zenith_group=group)


def _creator() -> str:
    return f"xbkg {__version__}"


def _group_cards(one: xr.Dataset) -> list[tuple]:
    """``(key, value, comment)`` cards of :data:`GROUP_CARDS` available in the group ``one``."""
    values = {
        "ZEN_LO": float(one["zenith_bounds"].values[0]),
        "ZEN_HI": float(one["zenith_bounds"].values[1]),
    }
    if "group_mean_cos_zenith" in one:
        cos_z = float(one["group_mean_cos_zenith"].values)
        if np.isfinite(cos_z):
            values["ZEN_MEAN"] = float(np.degrees(np.arccos(np.clip(cos_z, -1.0, 1.0))))
    if "group_n_obs" in one:
        values["N_OBS"] = int(one["group_n_obs"].values)
    if "group_ontime" in one:
        values["ONTIME"] = float(one["group_ontime"].values)
    cards = [("CREATOR", _creator(), "program that wrote this HDU")]
    cards += [(key, values[key], GROUP_CARDS[key][1]) for key in GROUP_CARDS if key in values]
    offset_max = float(one.attrs.get("offset_max", np.nan))
    if np.isfinite(offset_max):
        cards.append((OFFSET_CARD, offset_max, "[deg] offset cut applied to the events"))
    return cards


def _fixed_cards(cards: dict, kind: str, fov_alignment: str) -> list[tuple]:
    out = [(key, value.replace("{KIND}", kind.upper())) for key, value in cards.items()]
    if kind == "3d":
        out.append(("FOVALIGN", fov_alignment, "field-of-view coordinate alignment"))
    return out


def _edge_columns(one: xr.Dataset, kind: str) -> list:
    """``(name, values, unit, tdim)`` of the axis-edge columns (one row each)."""
    cols = []
    for dim in TABLE_AXES[kind]:
        prefix, unit = AXIS_COLUMNS[dim]
        edges = edges_of(one, dim)
        for suffix, values in (("LO", edges[:-1]), ("HI", edges[1:])):
            cols.append((f"{prefix}_{suffix}", values[np.newaxis].astype(">f8"), unit, None))
    return cols


def _cube_column(name: str, data: np.ndarray, unit) -> tuple:
    """``(name, values, unit, tdim)`` of a one-row column holding the cube ``data`` (numpy
    axes in gammapy's order, so TDIM lists them reversed)."""
    return (name, data.reshape(1, -1), unit,
            "(" + ",".join(str(n) for n in data.shape[::-1]) + ")")


def _fits_columns(columns: list) -> list:
    """astropy ``fits.Column`` objects of ``(name, values, unit, tdim)`` columns."""
    from astropy.io import fits

    out = []
    for name, values, unit, tdim in columns:
        array = values if tdim is None else values.reshape((1,) + tuple(
            int(n) for n in tdim.strip("()").split(",")[::-1]))
        out.append(fits.Column(name=name, format=table_form(values)[0], unit=unit, dim=tdim,
                               array=array))
    return out


def _table_parts(model: xr.Dataset, group, which: str, hdu_name: str | None = None):
    """Columns ``(name, values, unit, tdim)``, header cards and EXTNAME of the table HDU
    ``which`` (a key of :data:`HDU_SPECS`) of one zenith group."""
    spec = HDU_SPECS[which]
    one = _group(model, group)
    kind = model.attrs["kind"]
    if spec["var"] not in one:
        raise KeyError(f"model has no {spec['var']!r} variable to write as {which} HDU")
    axes = TABLE_AXES[kind]
    data = one[spec["var"]].transpose(*axes[::-1]).values
    if which == "bkg":
        _check_rate(data, group)
    # big-endian up front: astropy's byte swapping of wide array columns is slow
    data = data.astype(">i8" if which == "counts" else ">f8")
    cards = (_fixed_cards(spec["cards"], kind, model.attrs["fov_alignment"])
             + _group_cards(one))
    extra, more = _uncertainty_parts(model, one, axes) if which == "bkg" else ([], [])
    columns = _edge_columns(one, kind) + [_cube_column(spec["column"], data, spec["unit"] or None)]
    return columns + extra, cards + more, hdu_name or spec["extname"]


def _table_hdu(model: xr.Dataset, group, which: str, hdu_name: str | None = None):
    """The binary-table HDU ``which`` (a key of :data:`HDU_SPECS`) of one zenith group."""
    from astropy.io import fits

    columns, cards, extname = _table_parts(model, group, which, hdu_name)
    return fits.BinTableHDU.from_columns(_fits_columns(columns), header=fits.Header(cards),
                                         name=extname)


def _hdu_block(columns, cards, extname: str, make_hdu) -> bytes:
    """FITS bytes of a table HDU, written directly (:func:`~xbkg.io.fitswrite.table_hdu_bytes`)
    or, for cards that need it, by astropy from ``make_hdu()`` (checked first)."""
    direct = table_hdu_bytes(columns, cards + [("EXTNAME", extname, "extension name")])
    if direct is not None:
        return direct
    hdu = make_hdu()
    hdu.verify("exception")
    return hdu_bytes(hdu)


#: Header keywords of a conditional model's uncertainties (gammapy ignores them).
UNCERTAINTY_CARDS = {
    "BKG_SYS": "rel. per-run level scatter (cross-validated)",
    "BKG_STAT": "rel. statistical error of the run level",
    "BKG_OUTR": "run conditions outside the fitted range",
    "BKG_COND": "model conditions",
}


def _uncertainty_parts(model: xr.Dataset, one: xr.Dataset, axes) -> tuple[list, list]:
    """Extra ``BKG_ERR`` column and :data:`UNCERTAINTY_CARDS` of a conditional model (a
    per-run model of :func:`xbkg.building.conditional.model_for_run`, or the fitted model); none
    otherwise."""
    import json

    info = json.loads(model.attrs.get("per_run", "{}") or "{}")
    if "sys_scatter" not in info and "conditional" in model.attrs:
        whole = json.loads(model.attrs["conditional"])
        info = {"sys_scatter": whole["sys_scatter"], "terms": whole["conditions"]}
    if "sys_scatter" not in info:
        return [], []
    values = {"BKG_SYS": round(float(np.nan_to_num(info["sys_scatter"], nan=-1.0)), 6),
              "BKG_COND": ",".join(info.get("terms", []))[:48]}
    if "stat_error" in info:
        values["BKG_STAT"] = round(float(info["stat_error"]), 6)
        values["BKG_OUTR"] = bool(info.get("outside_range"))
    cards = [(k, values[k], UNCERTAINTY_CARDS[k]) for k in UNCERTAINTY_CARDS if k in values]
    columns = []
    if "rate_error" in one:
        err = np.nan_to_num(one["rate_error"].transpose(*axes[::-1]).values, nan=0.0)
        columns.append(_cube_column("BKG_ERR", err.astype(">f8"),
                                    HDU_SPECS["bkg"]["unit"] or None))
    return columns, cards


def _check_rate(rate: np.ndarray, group) -> None:
    bad = ~np.isfinite(rate) | (rate < 0)
    if bad.any():
        raise ValueError(f"zenith group {group}: {int(bad.sum())} rate bins are negative or not "
                         "finite; a GADF background must be finite and >= 0")


def bkg_hdu(model: xr.Dataset, group=0, *, hdu_name: str = "BACKGROUND"):
    """GADF BKG_2D or BKG_3D binary-table HDU of one zenith group of a model.

    Parameters
    ----------
    model : Dataset
        xbkg model (see :mod:`xbkg.core.schema`); lazy models are computed.
    group : int
        ``zenith_group`` label.
    hdu_name : str
        EXTNAME of the HDU.

    Returns
    -------
    astropy.io.fits.BinTableHDU
        One row: ``ENERG_LO/HI`` (TeV), ``THETA_LO/HI`` or ``DETX_LO/HI, DETY_LO/HI`` (deg),
        ``BKG`` (s-1 MeV-1 sr-1) with ``TDIM = (nE, ntheta)`` or ``(nE, nx, ny)``.

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> model = assemble_model(np.ones((1, 2, 3), "int64"), np.ones((1, 2, 3)), kind="2d",
    ...                        energy_edges=[0.1, 1, 10], fov_edges={"offset": [0, 1, 2, 3]},
    ...                        zenith_edges=[0, 90], fov_alignment="ALTAZ", offset_max=3)
    >>> hdu = bkg_hdu(model)
    >>> hdu.header["HDUCLAS4"], hdu.header["TDIM5"]
    ('BKG_2D', '(2,3)')
    >>> read_bkg_hdu(hdu)["rate"].dims
    ('zenith_group', 'energy', 'offset')
    """
    return _table_hdu(model, group, "bkg", hdu_name)


def counts_hdu(model: xr.Dataset, group=0):
    """Counts cube of one zenith group as a binary table (EXTNAME ``COUNTS``, int64 column
    ``COUNTS``), same column layout as :func:`bkg_hdu`."""
    return _table_hdu(model, group, "counts")


def exposure_hdu(model: xr.Dataset, group=0):
    """Exposure cube (s MeV sr) of one zenith group as a binary table (EXTNAME ``EXPOSURE``,
    column ``EXPOSURE``), same column layout as :func:`bkg_hdu`."""
    return _table_hdu(model, group, "exposure")


def _linear_axis_cards(i: int, ctype: str, edges: np.ndarray) -> list[tuple]:
    widths = np.diff(edges)
    if not np.allclose(widths, widths[0], rtol=1e-9, atol=0):
        raise ValueError(f"image export needs uniform {ctype} bins, got edges {edges}")
    return [(f"CTYPE{i}", ctype), (f"CUNIT{i}", "deg"), (f"CRPIX{i}", 1.0),
            (f"CRVAL{i}", 0.5 * (edges[0] + edges[1])), (f"CDELT{i}", float(widths[0]))]


def _energy_axis_cards(i: int, edges: np.ndarray) -> list[tuple]:
    """``ENER-LOG`` WCS axis on the geometric bin centres if the bins are log-uniform, else
    a bin-number axis ``EBIN`` (the ENERGIES HDU gives the edges either way)."""
    ratios = edges[1:] / edges[:-1]
    if np.allclose(ratios, ratios[0], rtol=1e-9, atol=0):
        centre = float(np.sqrt(edges[0] * edges[1]))
        return [(f"CTYPE{i}", "ENER-LOG"), (f"CUNIT{i}", "TeV"), (f"CRPIX{i}", 1.0),
                (f"CRVAL{i}", centre), (f"CDELT{i}", centre * float(np.log(ratios[0])))]
    return [(f"CTYPE{i}", "EBIN", "energy bin number, edges in HDU ENERGIES"),
            (f"CRPIX{i}", 1.0), (f"CRVAL{i}", 1.0), (f"CDELT{i}", 1.0)]


def image_hdu(model: xr.Dataset, group=0):
    """Rate cube of one zenith group as an image HDU (EXTNAME ``RATE``) with WCS keywords.

    Image axes (FITS order): ``DETX, DETY, energy`` for 3D, ``THETA, energy`` for 2D. FoV
    axes are linear in deg (uniform bins required); the energy axis is ``ENER-LOG`` on the
    geometric bin centres (in TeV) when the bins are log-uniform, else a bin-number axis
    ``EBIN``. The energy edges go in a separate HDU, see :func:`write_image_file`.
    """
    from astropy.io import fits

    data, cards = _image_parts(model, group)
    return fits.ImageHDU(data=data, header=fits.Header(cards), name="RATE")


def _image_parts(model: xr.Dataset, group):
    """Data and header cards of :func:`image_hdu`."""
    one = _group(model, group)
    kind = model.attrs["kind"]
    dims = ("energy",) + fov_dims(kind)  # numpy order == reversed FITS order
    data = one["rate"].transpose(*dims).values.astype("float64")
    _check_rate(data, group)
    ctypes = {"detx": "DETX", "dety": "DETY", "offset": "THETA"}
    cards = [("BUNIT", RATE_UNIT)]
    for i, dim in enumerate(dims[::-1], start=1):
        edges = edges_of(one, dim)
        cards += (_energy_axis_cards(i, edges) if dim == "energy"
                  else _linear_axis_cards(i, ctypes[dim], edges))
    cards += _fixed_cards({}, kind, model.attrs["fov_alignment"]) + _group_cards(one)
    return data, cards


def _energies_parts(model: xr.Dataset):
    """Columns, cards and EXTNAME of the image's energy bins: CHANNEL (image pixel number,
    1-based), ENERG_LO/HI (TeV)."""
    edges = edges_of(model, "energy")
    cols = [("CHANNEL", np.arange(1, edges.size, dtype=">i4"), None, None),
            ("ENERG_LO", edges[:-1].astype(">f8"), "TeV", None),
            ("ENERG_HI", edges[1:].astype(">f8"), "TeV", None)]
    return cols, [("CREATOR", _creator())], "ENERGIES"


def _energies_hdu(model: xr.Dataset):
    """Energy bins of the image (:func:`_energies_parts`) as an astropy HDU."""
    from astropy.io import fits

    cols, cards, extname = _energies_parts(model)
    return fits.BinTableHDU.from_columns(_fits_columns(cols), header=fits.Header(cards),
                                         name=extname)


def _primary_hdu():
    from astropy.io import fits

    return fits.PrimaryHDU(header=fits.Header([("CREATOR", _creator())]))


def _primary_block() -> bytes:
    """The primary HDU of :func:`_primary_hdu`, as bytes."""
    return primary_block([("CREATOR", _creator())]) or hdu_bytes(_primary_hdu())


def _write_content(content: bytes, path, overwrite: bool) -> Path:
    """Write FITS bytes atomically; ``.gz`` paths are gzipped deterministically (mtime 0, no
    name)."""
    path = Path(path)
    if path.suffix == ".gz":  # astropy would store the time and file name
        content = gzip_bytes(content, level=6)  # 9 is far slower for barely smaller files
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(content)
    return path


def write_table_file(model: xr.Dataset, group, path, *, overwrite: bool = False) -> Path:
    """Write one zenith group as a GADF table file: PrimaryHDU, BACKGROUND, COUNTS, EXPOSURE.

    COUNTS and EXPOSURE are written when the model has them. ``.fits.gz`` paths are gzipped.
    Atomic; an existing ``path`` raises FileExistsError unless ``overwrite``. Returns the path.
    The bytes are those astropy writes for :func:`bkg_hdu`, :func:`counts_hdu` and
    :func:`exposure_hdu` (written directly when their cards allow, tested).
    """
    blocks = [_primary_block()]
    for which in ("bkg", "counts", "exposure"):
        if which == "bkg" or HDU_SPECS[which]["var"] in model:
            blocks.append(_hdu_block(*_table_parts(model, group, which),
                                     lambda w=which: _table_hdu(model, group, w)))
    return _write_content(b"".join(blocks), path, overwrite)


def write_image_file(model: xr.Dataset, group, path, *, overwrite: bool = False) -> Path:
    """Write one zenith group's rate as an image file (PrimaryHDU, RATE image, ENERGIES).

    For viewers such as DS9; see :func:`image_hdu`. Atomic, like :func:`write_table_file`.
    """
    data, cards = _image_parts(model, group)
    image = image_hdu_bytes(data, cards + [("EXTNAME", "RATE", "extension name")])
    if image is None:  # cards only astropy formats
        hdu = image_hdu(model, group)
        hdu.verify("exception")
        image = hdu_bytes(hdu)
    blocks = [_primary_block(), image,
              _hdu_block(*_energies_parts(model), lambda: _energies_hdu(model))]
    return _write_content(b"".join(blocks), path, overwrite)


# --------------------------------------------------------------------------------------
# reading


def _where(hdu, path=None) -> str:
    """``file[HDU]`` for messages."""
    if path is None:
        info = hdu.fileinfo() if hasattr(hdu, "fileinfo") else None
        path = getattr(info.get("file"), "name", None) if info else None
    return f"{path or '<memory>'}[{hdu.name or 'PRIMARY'}]"


def _unit_factor(unit_text, target: str, what: str, where: str) -> float:
    """Factor converting values in ``unit_text`` to ``target``; missing unit -> target, warned."""
    import astropy.units as u

    text = (unit_text or "").strip()
    if not text:
        warnings.warn(f"{where}: {what} has no unit, assuming {target}", GadfReadWarning,
                      stacklevel=5)
        return 1.0
    unit = u.Unit(text, format="fits", parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        unit = u.Unit(text, parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        unit = _tolerant_unit(text)
        if not isinstance(unit, u.UnrecognizedUnit):
            warnings.warn(f"{where}: {what} unit {text!r} is not a FITS unit string; read as "
                          f"{unit.to_string('fits')}", GadfReadWarning, stacklevel=5)
    try:
        return float(unit.to(target))
    except (u.UnitConversionError, ValueError, TypeError):
        raise ValueError(f"{where}: {what} unit {text!r} is not convertible to {target}") from None


def _tolerant_unit(text: str):
    """Unit strings that astropy's FITS and generic parsers refuse but that have one meaning:
    chained divisions as CTA prod3/prod5 IRFs write them (``'1/s/MeV/sr'``), read with the OGIP
    parser or as ``1 / (s MeV sr)``; an UnrecognizedUnit otherwise.

    >>> _tolerant_unit("1/s/MeV/sr").to_string("fits")
    'MeV-1 s-1 sr-1'
    """
    import astropy.units as u

    unit = u.Unit(text, format="ogip", parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit) and text.count("/") > 1 and "(" not in text:
        head, *tail = text.split("/")
        unit = u.Unit(f"{head} / ({' '.join(tail)})", parse_strict="silent")
    return unit


def _bkg_layout(hdu, where: str) -> tuple[str, str]:
    """``(kind, data column)`` of a background HDU, or a ValueError saying why it is not one."""
    from astropy.io import fits

    if not isinstance(hdu, fits.BinTableHDU):
        raise ValueError(f"{where}: not a background HDU ({type(hdu).__name__}, "
                         "expected a binary table)")
    names = [n.upper() for n in hdu.columns.names]
    clas2 = str(hdu.header.get("HDUCLAS2", "")).strip().upper()
    if clas2 and clas2 not in _BKG_CLASSES:
        raise ValueError(f"{where}: not a background HDU (HDUCLAS2={clas2!r}, expected one of "
                         f"{_BKG_CLASSES})")
    data_cols = [c for c in _DATA_COLUMNS if c in names]
    if not data_cols:
        raise ValueError(f"{where}: not a background HDU (no column {' or '.join(_DATA_COLUMNS)}"
                         f"; columns {names})")
    for kind, axes in TABLE_AXES.items():
        needed = [f"{AXIS_COLUMNS[d][0]}_{s}" for d in axes for s in ("LO", "HI")]
        if all(n in names for n in needed):
            break
    else:
        raise ValueError(f"{where}: background HDU without ENERG_LO/HI plus THETA_LO/HI or "
                         f"DETX_LO/HI and DETY_LO/HI columns (columns {names})")
    if hdu.data is None or len(hdu.data) != 1:
        nrows = 0 if hdu.data is None else len(hdu.data)
        raise ValueError(f"{where}: background table must have exactly one row, has {nrows}")
    return kind, data_cols[0]


def _read_edges(hdu, dim: str, where: str) -> np.ndarray:
    """Edges of axis ``dim`` from its ``_LO``/``_HI`` columns, in TeV or deg."""
    prefix, unit = AXIS_COLUMNS[dim]
    cols = {s: f"{prefix}_{s}" for s in ("LO", "HI")}
    lo, hi = (np.atleast_1d(np.asarray(hdu.data[cols[s]][0], dtype="float64"))
              for s in ("LO", "HI"))
    factor = _unit_factor(hdu.columns[cols["LO"]].unit, unit, f"column {cols['LO']}", where)
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ValueError(f"{where}: {cols['LO']} and {cols['HI']} shapes differ or are not 1-D")
    if not np.allclose(lo[1:], hi[:-1], rtol=1e-6, atol=1e-12):
        raise ValueError(f"{where}: {prefix} bins are not contiguous (LO[1:] != HI[:-1])")
    return np.concatenate([lo, hi[-1:]]) * factor


def _orient(data: np.ndarray, kind: str, sizes: dict, trusted: bool, where: str):
    """Data column -> DataArray with named dims, from gammapy's order or its transpose.

    ``trusted`` (file written by xbkg) skips the ambiguity warning: xbkg writes gammapy's order.
    """
    ours = TABLE_AXES[kind][::-1]  # gammapy / xbkg numpy order
    other = TABLE_AXES[kind]  # H.E.S.S. DR1, CTA
    shape = tuple(sizes[d] for d in ours)
    if data.ndim == 1 and data.size == int(np.prod(shape)):
        if not trusted:
            warnings.warn(f"{where}: data column has no TDIM; assuming gammapy's axis order "
                          f"{ours}", AxisOrderWarning, stacklevel=5)
        return xr.DataArray(data.reshape(shape), dims=ours)
    fits_ours = data.shape == shape
    fits_other = data.shape == tuple(sizes[d] for d in other)
    if fits_ours and fits_other and not trusted:
        warnings.warn(f"{where}: ambiguous data axis order (shape {data.shape}); assuming "
                      f"gammapy's order {ours} (TDIM {ours[::-1]})", AxisOrderWarning,
                      stacklevel=5)
    if fits_ours:
        return xr.DataArray(data, dims=ours)
    if fits_other:
        return xr.DataArray(data, dims=other)
    raise ValueError(f"{where}: data shape {data.shape} matches neither axis order {ours} "
                     f"{shape} nor {other} (sizes {sizes})")


def _fov_alignment(header, kind: str, override, where: str) -> str:
    if override is not None:
        value = str(override).upper()
        if value not in FOV_ALIGNMENTS:
            raise ValueError(f"fov_alignment must be one of {FOV_ALIGNMENTS}, got {override!r}")
        return value
    value = str(header.get("FOVALIGN", "")).strip().upper()
    if not value:
        if kind == "3d":
            warnings.warn(f"{where}: no FOVALIGN keyword, assuming {DEFAULT_FOV_ALIGNMENT} (GADF "
                          "default; gammapy would assume RADEC); pass fov_alignment= to choose",
                          FovAlignmentWarning, stacklevel=4)
        return DEFAULT_FOV_ALIGNMENT
    if value not in FOV_ALIGNMENTS:
        raise ValueError(f"{where}: FOVALIGN={value!r} not supported (one of {FOV_ALIGNMENTS}); "
                         "pass fov_alignment= to override")
    return value


def _offset_max(kind: str, edges: dict, header=None) -> float:
    """The header's :data:`OFFSET_CARD`, else the largest offset edge (2D) or corner (3D)."""
    if header is not None and OFFSET_CARD in header:
        return float(header[OFFSET_CARD])
    if kind == "2d":
        return float(edges["offset"][-1])
    return float(np.hypot(np.abs(edges["detx"]).max(), np.abs(edges["dety"]).max()))


def _decode_cube(hdu, column: str, kind: str, edges: dict, where: str) -> xr.DataArray:
    """A data column as a DataArray in model dim order ``(energy, <fov dims>)``."""
    sizes = {d: e.size - 1 for d, e in edges.items()}
    trusted = str(hdu.header.get("CREATOR", "")).startswith("xbkg")
    data = np.asarray(hdu.data[column][0])
    cube = _orient(data, kind, sizes, trusted, where)
    return cube.transpose("energy", *fov_dims(kind))


def _model_from_cubes(rate, kind, edges, header, fov_alignment, provenance, counts=None,
                      exposure=None) -> xr.Dataset:
    """One-group model Dataset (layout of :func:`xbkg.core.schema.assemble_model`)."""
    has_cubes = counts is not None and exposure is not None
    shape = (1,) + rate.shape
    has_zen = "ZEN_LO" in header and "ZEN_HI" in header
    zen = [float(header["ZEN_LO"]), float(header["ZEN_HI"])] if has_zen else [0.0, 90.0]
    ds = assemble_model(
        counts.reshape(shape) if has_cubes else np.zeros(shape, dtype="int64"),
        exposure.reshape(shape) if has_cubes else np.zeros(shape),
        kind=kind, energy_edges=edges["energy"],
        fov_edges={d: edges[d] for d in fov_dims(kind)}, zenith_edges=zen,
        fov_alignment=fov_alignment, offset_max=_offset_max(kind, edges, header), provenance=provenance,
    )
    if not has_cubes:
        ds = ds.drop_vars(["counts", "exposure", "rate_error", "has_data"])
    ds["rate"] = ds["rate"].copy(data=rate.reshape(shape))
    for key, cast in (("ONTIME", float), ("N_OBS", int), ("ZEN_MEAN", float)):
        if key in header:
            value = cast(header[key])
            if key == "ZEN_MEAN":
                value = float(np.cos(np.radians(value)))
            name = GROUP_CARDS[key][0]
            ds[name] = xr.Variable("zenith_group", np.array([value]),
                                   {"units": "s"} if key == "ONTIME" else {})
    return ds


def _read_bkg(hdu, fov_alignment, where: str, extra: dict | None = None) -> xr.Dataset:
    kind, column = _bkg_layout(hdu, where)
    edges = {d: _read_edges(hdu, d, where) for d in TABLE_AXES[kind]}
    factor = _unit_factor(hdu.columns[column].unit, RATE_UNIT, f"column {column}", where)
    rate = _decode_cube(hdu, column, kind, edges, where).values.astype("float64") * factor
    align = _fov_alignment(hdu.header, kind, fov_alignment, where)
    provenance = {"source": "gadf", "hdu": where}
    cubes = {}
    for which, other in (extra or {}).items():
        spec = HDU_SPECS[which]
        other_where = where.rsplit("[", 1)[0] + f"[{other.name}]"
        other_edges = {d: _read_edges(other, d, other_where) for d in TABLE_AXES[kind]}
        if any(not np.allclose(other_edges[d], edges[d]) for d in edges):
            raise ValueError(f"{other_where}: axes differ from those of {where}")
        cube = _decode_cube(other, spec["column"], kind, edges, other_where).values
        cubes[which] = cube.astype("int64" if which == "counts" else "float64")
    return _model_from_cubes(rate, kind, edges, hdu.header, align, provenance,
                             counts=cubes.get("counts"), exposure=cubes.get("exposure"))


def read_bkg_hdu(hdu, *, fov_alignment: str | None = None) -> xr.Dataset:
    """Read any GADF background HDU (BKG_2D/BKG_3D, GADF or OGIP/CTA variants) as a model.

    Parameters
    ----------
    hdu : astropy.io.fits.BinTableHDU
    fov_alignment : {"ALTAZ", "RADEC"}, optional
        Use this alignment whatever the FOVALIGN keyword says. Without it, a 3D HDU lacking
        FOVALIGN is read as ALTAZ with a :class:`FovAlignmentWarning`.

    Returns
    -------
    Dataset
        One-group model in the layout of :func:`xbkg.core.schema.assemble_model` holding ``rate``
        only; ``zenith_bounds`` from ``ZEN_LO``/``ZEN_HI`` if present, else ``[0, 90]``;
        attrs ``kind``, ``fov_alignment``, ``offset_max`` (the ``OFFMAX`` card that xbkg
        writes; without it the largest offset edge, or largest ``|det|`` corner distance in 3D).

    Raises
    ------
    ValueError
        Naming the file and HDU, when ``hdu`` is not a background HDU or is malformed.
    """
    return _read_bkg(hdu, fov_alignment, _where(hdu))


def _is_bkg(hdu) -> bool:
    try:
        _bkg_layout(hdu, "")
    except ValueError:
        return False
    return True


#: Most bytes of data a model FITS file may declare in all its HDUs.
MAX_MODEL_BYTES = 1 << 30


def open_bkg_fits(path, hdu=None, *, fov_alignment: str | None = None) -> xr.Dataset:
    """Read a background model from a FITS file (see :func:`read_bkg_hdu`).

    Parameters
    ----------
    path : str or Path
    hdu : str or int, optional
        HDU name or index; default the first background HDU of the file.
    fov_alignment : {"ALTAZ", "RADEC"}, optional
        Override of the FOVALIGN keyword.

    Returns
    -------
    Dataset
        As :func:`read_bkg_hdu`, plus ``counts``, ``exposure`` and ``rate_error`` when the file
        also holds xbkg's COUNTS and EXPOSURE HDUs on the same axes.
    """
    from astropy.io import fits


    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    check_sizes(path, MAX_MODEL_BYTES)  # before astropy allocates what the headers declare
    with fits.open(path, memmap=False) as hdul:
        if hdu is None:
            found = [h for h in hdul if _is_bkg(h)]
            if not found:
                names = [h.name for h in hdul]
                raise ValueError(f"{path}: no background HDU (HDUs {names})")
            chosen = found[0]
        else:
            try:
                chosen = hdul[hdu]
            except (KeyError, IndexError):
                names = [h.name for h in hdul]
                raise KeyError(f"{path}: no HDU {hdu!r} (HDUs {names})") from None
        names = [h.name for h in hdul]
        extra = {which: hdul[HDU_SPECS[which]["extname"]] for which in ("counts", "exposure")
                 if HDU_SPECS[which]["extname"] in names}
        if len(extra) != 2 or chosen.name != HDU_SPECS["bkg"]["extname"]:
            extra = {}
        model = _read_bkg(chosen, fov_alignment, _where(chosen, path), extra)
    try:
        return check_model_values(model)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None

