"""The defaults of a model build, in one place: :func:`xbkg.make_model` and ``xbkg make-models``
both read them from :data:`DEFAULTS` (a test compares the two; the table is in
docs/user_guide.rst). They are grouped by stage in the option objects of
:mod:`xbkg.building.options`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Defaults", "DEFAULTS"]


@dataclass(frozen=True)
class Defaults:
    """Default options of a model build (see the module docstring for their meaning)."""

    # binning (BinningOptions)
    kind: str = "3d"
    fov_alignment: str = "altaz"
    energy_edges: str = "0.1:100:20"
    offset_edges: str = "0:2.5:10"
    fov_edges: str = "-2.5:2.5:25"
    offset_max: float | None = None
    zenith_edges: str | None = None
    # selection and thresholds (SelectionOptions, ThresholdOptions)
    selection: str = "off"
    energy_threshold: str = "none"
    fov_extent: str = "auto"
    on_error: str = "skip"
    # exclusion (ExclusionOptions)
    exclusion_mode: str = "regions"
    exclusion_oversample: int = 8
    catalog_min_radius: float = 0.35
    catalog_extension_factor: float = 3.0
    altitude_tolerance: float = 10.0
    # adaptive grouping (GroupingOptions)
    min_ontime: float = 3600.0
    min_runs: int = 0
    cos_zenith_step: float = 0.01
    # smoothing and the conditional model (SmoothingOptions, ConditionalOptions)
    smooth: str = "none"
    sigma_max: float = 1.0
    n_energy_basis: int = 16
    n_fov_basis: int = 8
    penalties: tuple = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    smoothness: str = "cv"


#: The one set of defaults shared by the API and the CLI.
DEFAULTS = Defaults()
