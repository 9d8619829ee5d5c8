"""Comparing two background model sets (``xbkg compare A B``), as the seeds' comparison script did.

Model B is put on model A's grid and compared bin by bin, per zenith group of A (ratios
``B / A``, energy and offset profiles, :func:`comparison_summary`). How groups are matched and
what is compared: docs/architecture.rst.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from xbkg.core.binning import edges_of
from xbkg.core.groups import group_bounds
from xbkg.core.schema import fov_dims, select_group, validate_model
from xbkg.io import open_model
from xbkg.model.evaluate import evaluate_rate
from xbkg.model.profiles import group_zenith, rate_at_offsets, solid_angle
from xbkg.sky.exposure import energy_widths_mev

__all__ = ["load_model_set", "same_binning", "rate_on_grid", "compare_models",
           "comparison_summary", "rate_consistency", "group_zenith", "rate_at_offsets",
           "solid_angle"]


def load_model_set(path) -> xr.Dataset:
    """A model set: a ``model.nc``/GADF file, or a ``make-models`` OUTDIR (its ``model.nc``)."""

    path = Path(path)
    if path.is_dir():
        if not (path / "model.nc").exists():
            raise FileNotFoundError(f"{path}: folder without model.nc (not a make-models OUTDIR)")
        path = path / "model.nc"
    return open_model(path)


def same_binning(a: xr.Dataset, b: xr.Dataset) -> bool:
    """True when both models have the same kind and identical energy and FoV edges."""
    if a.attrs.get("kind") != b.attrs.get("kind"):
        return False
    return all(np.array_equal(edges_of(a, d), edges_of(b, d))
               for d in ("energy",) + fov_dims(a.attrs["kind"]))


def rate_on_grid(b: xr.Dataset, a: xr.Dataset, group_b: int) -> np.ndarray:
    """Rate of group ``group_b`` of ``b`` on ``a``'s bins: ``(E, O)`` or ``(E, Y, X)``."""
    kind_a = a.attrs["kind"]
    if same_binning(a, b):
        return np.asarray(b["rate"].sel(zenith_group=group_b)
                          .transpose("energy", *fov_dims(kind_a)).values, dtype=float)
    energy = np.asarray(a["energy"].values, dtype=float)
    if kind_a == "2d":
        return rate_at_offsets(b, group_b, energy, a["offset"].values)
    x = np.asarray(a["detx"].values, dtype=float)[None, None, :]
    y = np.asarray(a["dety"].values, dtype=float)[None, :, None]
    e = energy[:, None, None]
    if b.attrs["kind"] == "2d":
        offset = np.broadcast_to(np.hypot(x, y), (1, y.size, x.size))
        return np.asarray(evaluate_rate(b, e, offset, group=group_b), dtype=float)
    return np.asarray(evaluate_rate(b, e, detx=x, dety=y, group=group_b), dtype=float)


def _compared_bins(a: xr.Dataset) -> np.ndarray:
    """``(G, E, ...)`` bins of A inside its offset cut and with exposure (when it has one)."""
    dims = ("zenith_group", "energy") + fov_dims(a.attrs["kind"])
    inside = solid_angle(a) > 0
    shape = tuple(a.sizes[d] for d in dims)
    if "exposure" in a:
        return np.asarray(a["exposure"].transpose(*dims).values > 0) & inside
    return np.broadcast_to(inside, shape).copy()


def compare_models(a: xr.Dataset, b: xr.Dataset, *, labels=("A", "B"),
                   n_rings: int | None = None) -> xr.Dataset:
    """Bin ratios and profiles of model ``b`` against model ``a`` on ``a``'s grid.

    Parameters
    ----------
    a, b : Dataset
        Models in the :mod:`xbkg.core.schema` layout.
    labels : (str, str)
        Names of the two models (plots, table).
    n_rings : int, optional
        Offset rings of the profiles for a 3D ``a`` (default: half its DETX bins); a 2D ``a``
        uses its offset bins.

    Returns
    -------
    Dataset
        ``rate_a``, ``rate_b``, ``ratio`` (B / A, NaN outside the compared bins) on A's dims;
        ``energy_profile_a/b`` (``zenith_group, energy``); ``offset_profile_a/b``
        (``zenith_group, ring``, with ``ring`` centres in deg and ``ring_bounds``);
        ``group_b`` (matched group of B per group of A); attrs ``label_a``, ``label_b``,
        ``same_binning``, ``fov_alignment_a/b``.

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> m = assemble_model(np.full((1, 2, 3), 10), np.ones((1, 2, 3)), kind="2d",
    ...     energy_edges=[1.0, 2.0, 4.0], fov_edges={"offset": [0.0, 1.0, 2.0, 3.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=3.0)
    >>> double = m.assign(rate=2 * m["rate"])
    >>> compare_models(m, double)["ratio"].values.ravel().tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    """
    validate_model(a)
    validate_model(b)
    kind = a.attrs["kind"]
    dims = ("zenith_group", "energy") + fov_dims(kind)
    groups_a = a["zenith_group"].values
    zenith = group_zenith(a)
    groups_b = np.array([select_group(b, zenith=z) for z in zenith], dtype="int64")
    rate_a = np.asarray(a["rate"].transpose(*dims).values, dtype=float)
    rate_b = np.stack([rate_on_grid(b, a, int(g)) for g in groups_b])
    compared = _compared_bins(a) & (rate_a > 0) & (rate_b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(compared, rate_b / rate_a, np.nan)
    omega = solid_angle(a)
    fov_axes = tuple(range(2, 2 + omega.ndim))
    exposed_e = _compared_bins(a).any(axis=fov_axes)  # (G, E)
    profiles = {}
    for name, rate in (("a", rate_a), ("b", rate_b)):
        mean = (np.nan_to_num(rate) * omega).sum(axis=fov_axes) / omega.sum()
        profiles[f"energy_profile_{name}"] = (("zenith_group", "energy"),
                                              np.where(exposed_e, mean, np.nan),
                                              {"units": "s-1 MeV-1 sr-1"})
    rings = _ring_edges(a, n_rings)
    centres = 0.5 * (rings[1:] + rings[:-1])
    energy = np.asarray(a["energy"].values, dtype=float)
    de = energy_widths_mev(edges_of(a, "energy"))
    for name, model, ids in (("a", a, groups_a), ("b", b, groups_b)):
        prof = np.array([(rate_at_offsets(model, int(g), energy, centres)
                          * (de * exposed_e[i])[:, None]).sum(axis=0)
                         for i, g in enumerate(ids)])
        profiles[f"offset_profile_{name}"] = (("zenith_group", "ring"), prof, {"units": "s-1 sr-1"})
    coords = {k: v for k, v in a.coords.items() if set(v.dims) <= set(dims) | {"bnds"}}
    coords.update(ring=("ring", centres, {"units": "deg", "long_name": "offset ring centre"}),
                  ring_bounds=(("ring", "bnds"), np.stack([rings[:-1], rings[1:]], axis=1)))
    labels = tuple(str(x) for x in labels)
    return xr.Dataset(
        {"rate_a": (dims, rate_a, {"units": "s-1 MeV-1 sr-1"}),
         "rate_b": (dims, rate_b, {"units": "s-1 MeV-1 sr-1"}),
         "ratio": (dims, ratio, {"long_name": f"{labels[1]} / {labels[0]}"}),
         "group_b": ("zenith_group", groups_b), **profiles},
        coords=coords,
        attrs={"label_a": labels[0], "label_b": labels[1], "kind": kind,
               "same_binning": int(same_binning(a, b)), "offset_max": a.attrs["offset_max"],
               "fov_alignment": a.attrs["fov_alignment"],
               "fov_alignment_a": a.attrs["fov_alignment"],
               "fov_alignment_b": b.attrs["fov_alignment"]},
    )


def _ring_edges(a: xr.Dataset, n_rings) -> np.ndarray:
    omax = float(a.attrs["offset_max"])
    if a.attrs["kind"] == "2d":
        edges = edges_of(a, "offset")
        return edges[: np.searchsorted(edges, omax, side="left") + 1]
    n = int(n_rings or max(a.sizes["detx"] // 2, 1))
    return np.linspace(0.0, omax, n + 1)


def comparison_summary(comparison: xr.Dataset) -> xr.Dataset:
    """One row per zenith group of A (see the module docstring), dim ``zenith_group``."""
    kind = comparison.attrs["kind"]
    fdims = fov_dims(kind)
    ratio = comparison["ratio"].transpose("zenith_group", "energy", *fdims).values
    ok = np.isfinite(ratio)
    omega = solid_angle(comparison.assign_attrs(kind=kind))
    de = energy_widths_mev(edges_of(comparison, "energy"))
    weight = de.reshape((-1,) + (1,) * omega.ndim) * omega
    rows = {k: [] for k in ("n_bins", "ratio_integral", "ratio_median", "ratio_p16", "ratio_p84",
                            "log_ratio_rms", "ratio_min", "ratio_max")}
    for g in range(ratio.shape[0]):
        r, sel = ratio[g], ok[g]
        a = comparison["rate_a"].isel(zenith_group=g).transpose("energy", *fdims).values
        b = comparison["rate_b"].isel(zenith_group=g).transpose("energy", *fdims).values
        vals = r[sel]
        rows["n_bins"].append(int(sel.sum()))
        if not vals.size:
            for k in list(rows)[1:]:
                rows[k].append(np.nan)
            continue
        w = np.where(sel, weight, 0.0)
        rows["ratio_integral"].append(float((b * w).sum() / (a * w).sum()))
        p16, p50, p84 = np.percentile(vals, [16, 50, 84])
        rows["ratio_median"].append(float(p50))
        rows["ratio_p16"].append(float(p16))
        rows["ratio_p84"].append(float(p84))
        rows["log_ratio_rms"].append(float(np.sqrt(np.mean(np.log(vals) ** 2))))
        rows["ratio_min"].append(float(vals.min()))
        rows["ratio_max"].append(float(vals.max()))
    out = xr.Dataset({k: ("zenith_group", np.asarray(v)) for k, v in rows.items()},
                     coords={"zenith_group": comparison["zenith_group"].values,
                             "zenith_bounds": comparison["zenith_bounds"]})
    out["group_b"] = comparison["group_b"]
    out.attrs.update(label_a=comparison.attrs["label_a"], label_b=comparison.attrs["label_b"])
    return out


def _counts_exposure(model: xr.Dataset, dims) -> tuple[np.ndarray, np.ndarray]:
    missing = [v for v in ("counts", "exposure") if v not in model]
    if missing:
        raise ValueError(f"model has no {' and no '.join(missing)}: statistical comparisons need "
                         "the counts and exposure of a built model (netCDF), not a GADF file")
    return (np.asarray(model["counts"].transpose(*dims).values, dtype=float),
            np.asarray(model["exposure"].transpose(*dims).values, dtype=float))


def _same_groups(a: xr.Dataset, b: xr.Dataset) -> bool:
    """Same grouping columns (``group_by``) and the same bounds of every group."""
    ga, gb = group_bounds(a), group_bounds(b)
    return ga.keys() == gb.keys() and all(np.array_equal(ga[k], gb[k]) for k in ga)


def _check_runs(a: xr.Dataset, b: xr.Dataset, nested: bool) -> None:
    """The runs of the two models (``obs_id``, when both record them) suit the comparison."""
    if "obs_id" not in a.dims or "obs_id" not in b.dims:
        return
    runs_a, runs_b = set(a["obs_id"].values.tolist()), set(b["obs_id"].values.tolist())
    if nested and not runs_a <= runs_b:
        missing = sorted(runs_a - runs_b)
        raise ValueError(f"nested=True but model b lacks {len(missing)} of model a's runs "
                         f"(obs_id {', '.join(map(str, missing[:5]))}"
                         f"{', ...' if len(missing) > 5 else ''}): b's runs must include a's")
    shared = runs_a & runs_b
    if not nested and shared:
        raise ValueError(f"the models share {len(shared)} runs, so they are not independent; "
                         "if b's runs include all of a's, use nested=True (--nested)")


def rate_consistency(a: xr.Dataset, b: xr.Dataset, *, nested: bool = False,
                     min_expected: float = 10.0) -> xr.Dataset:
    """Do two models agree within Poisson statistics? Bin by bin, from counts and exposure.

    The models must have the same binning and groups (as built with the same options from
    different runs) and, when both record their runs (``obs_id``), no run in common. For
    bins where both are expected to hold at least ``min_expected`` counts (at the pooled
    rate ``r = (n_a + n_b) / (x_a + x_b)``), the significance of the rate difference is
    ``z = (n_b / x_b - n_a / x_a) / sqrt(r / x_a + r / x_b)``, standard normal when both
    models estimate the same rate.

    ``nested=True``: ``b``'s runs include all of ``a``'s (a model of all runs against one of
    the off runs): ``b``'s counts and exposure minus ``a``'s, i.e. the other runs alone, are
    compared with ``a``; the two models differ significantly exactly when those runs differ
    from ``a``'s. ``z`` and ``norm`` then describe those other runs against ``a``.

    "Shape": in every (zenith group, energy) slice with at least 2 compared bins, ``b`` may
    differ from ``a`` by a factor ``norm = sum(n_b) / sum(n_a / x_a * x_b)``; the residuals
    ``n_b / x_b - norm * n_a / x_a`` over their variance at the pooled rate under that
    hypothesis give ``shape_chi2`` with one degree of freedom less per slice. It tests the FoV
    shape of the rate in each energy bin: differences in the overall rate and in the energy
    spectrum go undetected. A per-run normalisation in the analysis absorbs the former, not
    the latter; look at ``norm`` across energies for the spectrum.

    Returns
    -------
    Dataset
        ``z`` (A's dims, NaN outside the compared bins), ``norm`` (``zenith_group, energy``,
        NaN where not fitted), per group ``chi2``, ``ndf``, ``shape_chi2``, ``shape_ndf``, and
        attrs with the totals ``chi2_ndf``, ``ndf``, ``shape_chi2_ndf``, ``shape_ndf`` (NaN
        when no bin qualifies).

    Examples
    --------
    >>> from xbkg.core.schema import assemble_model
    >>> def model(counts):
    ...     return assemble_model(np.asarray(counts).reshape(1, 1, 3), np.ones((1, 1, 3)),
    ...         kind="2d", energy_edges=[1.0, 2.0], fov_edges={"offset": [0.0, 1.0, 2.0, 3.0]},
    ...         zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=3.0)
    >>> c = rate_consistency(model([100, 100, 100]), model([150, 150, 150]))
    >>> round(c.attrs["chi2_ndf"], 2), round(c.attrs["shape_chi2_ndf"], 2), float(c["norm"][0, 0])
    (10.0, 0.0, 1.5)
    """
    validate_model(a)
    validate_model(b)
    if not same_binning(a, b):
        raise ValueError("rate_consistency needs models of the same kind and energy and FoV "
                         "edges; use compare_models to compare other binnings")
    if not _same_groups(a, b):
        raise ValueError("rate_consistency needs models with the same groups (zenith bounds and "
                         "any other grouping columns)")
    if not min_expected > 0:
        raise ValueError(f"min_expected must be > 0, got {min_expected!r}")
    _check_runs(a, b, nested)
    dims = ("zenith_group", "energy") + fov_dims(a.attrs["kind"])
    n_a, x_a = _counts_exposure(a, dims)
    n_b, x_b = _counts_exposure(b, dims)
    if nested:
        n_b, x_b = n_b - n_a, x_b - x_a
        tol = 1e-9 * max(float(np.abs(x_b).max(initial=0.0)), 1.0)
        if n_b.min(initial=0.0) < 0 or x_b.min(initial=0.0) < -tol:
            raise ValueError("nested=True but model b has fewer counts or less exposure than "
                             "model a in some bins: b's runs do not include a's")
        x_b = np.maximum(x_b, 0.0)
    n_groups, n_energy = n_a.shape[:2]
    norm = np.full((n_groups, n_energy), np.nan)
    shape_chi2 = np.zeros(n_groups)
    shape_ndf = np.zeros(n_groups, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (n_a + n_b) / (x_a + x_b)
        sel = (x_a > 0) & (x_b > 0) & (pooled * x_a >= min_expected) \
            & (pooled * x_b >= min_expected)
        z = np.where(sel, (n_b / x_b - n_a / x_a) / np.sqrt(pooled / x_a + pooled / x_b), np.nan)
        for g in range(n_groups):
            for e in range(n_energy):
                m = sel[g, e]
                if m.sum() < 2:
                    continue
                na, xa, nb, xb = n_a[g, e][m], x_a[g, e][m], n_b[g, e][m], x_b[g, e][m]
                k = nb.sum() / (na / xa * xb).sum()
                if not (np.isfinite(k) and k > 0):  # one side has no counts at all here
                    continue
                rate = (na + nb / k) / (xa + xb)  # pooled rate of a if b = k * a
                resid = nb / xb - k * na / xa
                shape_chi2[g] += float(np.sum(resid ** 2 / (k * rate / xb + k ** 2 * rate / xa)))
                shape_ndf[g] += int(m.sum()) - 1
                norm[g, e] = k
    fov_axes = tuple(range(1, z.ndim))
    chi2 = np.nansum(z ** 2, axis=fov_axes)
    ndf = sel.sum(axis=fov_axes)
    total = {"chi2_ndf": float(chi2.sum() / ndf.sum()) if ndf.sum() else np.nan,
             "ndf": int(ndf.sum()),
             "shape_chi2_ndf": float(shape_chi2.sum() / shape_ndf.sum()) if shape_ndf.sum()
             else np.nan,
             "shape_ndf": int(shape_ndf.sum())}
    what = "b without a's runs" if nested else "b"
    coords = {k: v for k, v in a.coords.items() if set(v.dims) <= set(dims) | {"bnds"}}
    return xr.Dataset(
        {"z": (dims, z, {"long_name": f"significance of the rate difference ({what}) - a"}),
         "norm": (("zenith_group", "energy"), norm,
                  {"long_name": f"normalisation ({what}) / a"}),
         "chi2": ("zenith_group", chi2), "ndf": ("zenith_group", ndf.astype(np.int64)),
         "shape_chi2": ("zenith_group", shape_chi2), "shape_ndf": ("zenith_group", shape_ndf)},
        coords=coords, attrs={**total, "nested": int(nested), "min_expected": float(min_expected)})
