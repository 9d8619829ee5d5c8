"""Per-run energy thresholds: a run adds counts and exposure only in energy bins above its own.

Stacking runs whose energy thresholds differ biases a model near the thresholds: a run at high
zenith adds observation time to low-energy bins where it records (almost) nothing, so the
stacked rate there is too low for the runs that do see those energies. With thresholds each
run contributes counts *and* exposure only to the energy bins whose lower edge is at or above
its threshold (:func:`xbkg.core.binning.run_energy_mask`), so every bin's rate is the average over
the runs that really cover it.

Policies (``make_model(energy_threshold=...)``, ``xbkg make-models --energy-threshold``):

``"none"``
    No threshold: every run contributes to every energy bin.
``"safe"``
    The obs table's ``SAFE_ENERGY_LO`` (converted to TeV) for every run that has a finite,
    positive value; runs without one get the zenith rule below.
``"zenith"``
    The zenith rule for every run.
float
    One threshold (TeV) for every run.

Zenith rule: ``E_thr(z) = e0 / cos(z)**power``, always fitted to the store's own runs (least
squares in ``log E`` against ``log cos z``; only ``e0`` when their zenith angles span less than
0.05 in cos z, with ``power`` held at :data:`DEFAULT_POWER`):

1. to their ``SAFE_ENERGY_LO`` when at least three runs (or every run) have one;
2. otherwise to the **counts peak** of each run's events: the energy at which the counts per
   log-energy interval within the offset cut peak (gammapy's ``SafeMaskMaker`` "bkg-peak"
   method, measured on the events by :mod:`xbkg.building.survey`; runs with fewer than 200 events are
   left out). Measuring needs the events, so it happens only in a computed build
   (``make_model(compute_now=True)``); a lazy build raises instead.

No other instrument's rule is ever applied: :data:`DEFAULT_E0` = 0.22 TeV and
:data:`DEFAULT_POWER` = 3.2 are the first method's fit on the 105 runs of H.E.S.S. DL3 DR1
(0.222 TeV, 3.23), kept as reference values. On the same runs the second method gives
0.215 TeV / cos(z)^2.90: the counts peaks lie at 0.92 x SAFE_ENERGY_LO (median, 10 % rms).
The rule and what it was fitted to are recorded in the model's provenance
(``energy_threshold``, ``zenith_rule``, ``zenith_rule_basis``) and printed by
``xbkg make-models`` and ``xbkg info``.

Energy slices left without exposure by thresholds follow the model's documented policy
(:mod:`xbkg.core.schema`): they copy the nearest exposed slice, so no step reaches gammapy.
"""

from __future__ import annotations

import numpy as np

from xbkg.store.datastore import takes_store

__all__ = ["THRESHOLD_POLICIES", "DEFAULT_E0", "DEFAULT_POWER", "zenith_threshold",
           "fit_zenith_rule", "store_zenith_rule", "zenith_rule_basis", "needs_counts_peak",
           "run_energy_thresholds", "threshold_provenance"]

THRESHOLD_POLICIES = ("none", "safe", "zenith")

#: Zenith-rule threshold at zenith 0 (TeV) and its power of 1/cos(z) on H.E.S.S. DR1: reference
#: values only (the power is also the one held fixed when a store's zenith spread is too small).
DEFAULT_E0 = 0.22
DEFAULT_POWER = 3.2


def zenith_threshold(zenith, e0: float = DEFAULT_E0, power: float = DEFAULT_POWER) -> np.ndarray:
    """Threshold energy (TeV) ``e0 / cos(zenith)**power`` for zenith angles in deg.

    >>> zenith_threshold([0.0, 60.0], e0=0.3, power=2.0)
    array([0.3, 1.2])
    """
    cos_z = np.cos(np.radians(np.asarray(zenith, dtype=float)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cos_z > 0, e0 / np.abs(cos_z) ** power, np.inf)


def fit_zenith_rule(zenith, threshold, *, min_runs: int = 3) -> tuple[float, float]:
    """``(e0, power)`` of the zenith rule fitted to runs with a known threshold (TeV).

    Runs with a non-finite or non-positive threshold are ignored. Fewer than ``min_runs`` runs
    raise ValueError; a zenith spread below 0.05 in cos z fits ``e0`` only.

    >>> z = np.array([10.0, 30.0, 50.0])
    >>> e0, p = fit_zenith_rule(z, zenith_threshold(z, 0.3, 2.5))
    >>> round(e0, 6), round(p, 6)
    (0.3, 2.5)
    """
    zenith = np.asarray(zenith, dtype=float)
    threshold = np.asarray(threshold, dtype=float)
    ok = np.isfinite(zenith) & np.isfinite(threshold) & (threshold > 0) & (np.abs(zenith) < 90)
    if ok.sum() < max(int(min_runs), 1):
        raise ValueError(f"the zenith rule needs {min_runs} runs with a threshold, got "
                         f"{int(ok.sum())}")
    x = -np.log(np.cos(np.radians(zenith[ok])))
    y = np.log(threshold[ok])
    if np.ptp(np.cos(np.radians(zenith[ok]))) < 0.05:
        return float(np.exp(np.mean(y - DEFAULT_POWER * x))), DEFAULT_POWER
    power, log_e0 = np.polyfit(x, y, 1)
    return float(np.exp(log_e0)), float(power)


def _safe_energy_lo(store) -> np.ndarray:
    """SAFE_ENERGY_LO of each run in TeV (NaN when the column or the value is missing)."""
    n = store.sizes["obs_id"]
    if "SAFE_ENERGY_LO" not in store:
        return np.full(n, np.nan)
    values = np.asarray(store["SAFE_ENERGY_LO"].values, dtype=float)
    unit = str(store["SAFE_ENERGY_LO"].attrs.get("units", "") or "TeV")
    if unit != "TeV":
        import astropy.units as u

        try:
            values = (values * u.Unit(unit)).to_value("TeV")
        except (ValueError, u.UnitConversionError):
            raise ValueError(f"obs table column SAFE_ENERGY_LO has unit {unit!r}, "
                             "not an energy") from None
    return np.where(values > 0, values, np.nan)


def _has_enough_safe(safe: np.ndarray) -> bool:
    n_safe = int(np.isfinite(safe).sum())
    return n_safe >= 3 or (n_safe >= 1 and n_safe == safe.size)


@takes_store("store")
def needs_counts_peak(store, policy) -> bool:
    """Whether ``policy`` on ``store`` needs the runs' counts peaks (:mod:`xbkg.building.survey`): the
    zenith rule is needed and fewer than three runs (and not every run) have SAFE_ENERGY_LO."""
    if not isinstance(policy, str) or policy.strip().lower() not in ("safe", "zenith"):
        return False
    return not _has_enough_safe(_safe_energy_lo(store))


@takes_store("store")
def zenith_rule_basis(store, peaks=None) -> tuple[float, float, str]:
    """``(e0, power, basis)`` of the zenith rule for the runs of an observation Dataset:
    fitted to their SAFE_ENERGY_LO, else to their counts ``peaks`` (TeV, one per run); the
    ``basis`` says which. Raises ValueError when neither is available."""
    zenith = np.asarray(store["zenith"].values, dtype=float)
    safe = _safe_energy_lo(store)
    if _has_enough_safe(safe):
        e0, power = fit_zenith_rule(zenith, safe, min_runs=1)
        return e0, power, f"SAFE_ENERGY_LO of {int(np.isfinite(safe).sum())} runs"
    if peaks is not None:
        peaks = np.asarray(peaks, dtype=float)
        n_ok = int((np.isfinite(peaks) & (peaks > 0)).sum())
        if n_ok:
            e0, power = fit_zenith_rule(zenith, peaks, min_runs=1)
            return e0, power, f"counts peak of {n_ok} runs' events"
    raise ValueError("the zenith rule needs SAFE_ENERGY_LO in the obs index (3 runs or every "
                     "run) or the counts peak of the runs' events, and neither is available; "
                     "give a threshold in TeV")


@takes_store("store")
def store_zenith_rule(store, peaks=None) -> tuple[float, float]:
    """``(e0, power)`` of :func:`zenith_rule_basis`."""
    return zenith_rule_basis(store, peaks)[:2]


@takes_store("store")
def threshold_provenance(store, policy="none", peaks=None) -> dict:
    """What a model records so that its thresholds can be applied to more runs later
    (:mod:`xbkg.building.update`): ``energy_threshold_policy`` and, for the "safe" and "zenith"
    policies, the ``zenith_rule`` ``[e0, power]`` fitted to the runs of ``store`` (see
    :func:`zenith_rule_basis`; or the one of ``policy`` when it is such a record already) and
    its ``zenith_rule_basis``."""
    rule, basis = None, None
    if isinstance(policy, dict):
        policy, rule, basis = (policy["energy_threshold_policy"], policy.get("zenith_rule"),
                               policy.get("zenith_rule_basis"))
    out = {"energy_threshold_policy": policy if isinstance(policy, str) else float(policy)}
    if str(policy).strip().lower() in ("safe", "zenith"):
        if rule is None:
            *rule, basis = zenith_rule_basis(store, peaks)
        out["zenith_rule"] = [float(v) for v in rule]
        if basis:
            out["zenith_rule_basis"] = basis
    return out


@takes_store("store")
def run_energy_thresholds(store, policy="none", *, rule=None, peaks=None) -> tuple[np.ndarray, str]:
    """Energy threshold (TeV, NaN for none) of every run of an observation Dataset.

    Parameters
    ----------
    store : xarray.Dataset
        Observation Dataset with ``zenith`` (deg) and, for ``"safe"``, ``SAFE_ENERGY_LO``.
    policy : {"none", "safe", "zenith"}, float or dict
        See the module docstring; or a record of :func:`threshold_provenance` (from a model's
        provenance), whose ``zenith_rule`` is applied as it is.
    rule : (float, float), optional
        ``(e0, power)`` of the zenith rule to apply instead of fitting it to ``store``
        (an incremental update keeps the rule of the model it extends).
    peaks : array, optional
        Counts-peak energy (TeV) of each run (:func:`xbkg.building.survey.survey_runs`), to fit the
        zenith rule to when the store has too few SAFE_ENERGY_LO values.

    Returns
    -------
    thresholds : numpy.ndarray
        One value per run (TeV).
    description : str
        The rule applied, for the model's provenance.

    Examples
    --------
    >>> import xarray as xr
    >>> store = xr.Dataset({"zenith": ("obs_id", [0.0, 60.0]),
    ...                     "SAFE_ENERGY_LO": ("obs_id", [0.5, np.nan], {"units": "TeV"})})
    >>> thr, text = run_energy_thresholds(store, "safe", peaks=[0.3, 1.2])
    >>> thr.round(3).tolist()
    [0.5, 1.2]
    >>> text
    "SAFE_ENERGY_LO (1 runs); zenith rule 0.3 TeV / cos(z)**2 fitted to counts peak of 2 runs' events (1 runs)"
    """
    n = store.sizes["obs_id"]
    zenith = np.asarray(store["zenith"].values, dtype=float)
    if isinstance(policy, dict):
        policy, rule = policy["energy_threshold_policy"], policy.get("zenith_rule", rule)
    if isinstance(policy, str):
        policy = policy.strip().lower()
        if policy not in THRESHOLD_POLICIES:
            try:
                policy = float(policy)
            except ValueError:
                raise ValueError(f"energy_threshold must be one of {THRESHOLD_POLICIES} or a "
                                 f"number (TeV), got {policy!r}") from None
    if not isinstance(policy, str):
        value = float(policy)
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"energy_threshold must be a finite energy >= 0 TeV, got {policy!r}")
        return np.full(n, value), f"fixed {value:g} TeV"
    if policy == "none":
        return np.full(n, np.nan), "none"
    safe = _safe_energy_lo(store) if policy == "safe" else np.full(n, np.nan)
    has = np.isfinite(safe)
    parts = [f"SAFE_ENERGY_LO ({int(has.sum())} runs)"] if has.any() else []
    if has.all():
        return safe, "; ".join(parts)
    if rule is None:
        e0, power, basis = zenith_rule_basis(store, peaks)
        basis = f" fitted to {basis}"
    else:
        (e0, power), basis = (float(v) for v in rule), " (the model's)"
    out = np.where(has, safe, zenith_threshold(zenith, e0, power))
    parts.append(f"zenith rule {e0:.3g} TeV / cos(z)**{power:.3g}{basis} ({int((~has).sum())} runs)")
    return out, "; ".join(parts)
