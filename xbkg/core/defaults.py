"""The defaults of a model build, in one place: :func:`xbkg.make_model` and ``xbkg make-models``
both read them from :data:`DEFAULTS` (a test compares the two).

============================  ====================================================================
option                        default
============================  ====================================================================
``kind``                      ``"3d"``: energy x FoV (dety, detx)
``fov_alignment``             ``"altaz"``
``energy_edges``              ``"0.1:100:20"``: 0.1-100 TeV in 20 log bins
``offset_edges``              ``"0:2.5:10"`` (2D)
``fov_edges``                 ``"-2.5:2.5:25"`` (3D, DETX and DETY)
``offset_max``                None: the edge of the binning (2D) or the largest circle in the FoV box (3D)
``zenith_edges``              None: one group, 0-90 deg
``selection``                 ``"off"``: runs whose TARGET_NAME or OBJECT says "off"; stores without off
                              runs (MAGIC, VERITAS, CTAO, LST) need ``"all"`` and excluded sources
``energy_threshold``          ``"none"``: every run contributes to every energy bin
``fov_extent``                ``"auto"``: cut the binning where the runs' events stop (:mod:`xbkg.extent`)
``on_error``                  ``"skip"``: a run that cannot be used is left out and reported
``exclusion_mode``            ``"regions"``
``exclusion_oversample``      8: ALTAZ exposure fractions sampled so regions move 1/8 of a bin at most
``catalog_min_radius``        0.35 deg: exclusion radius of point-like catalog sources
``catalog_extension_factor``  3: exclusion radius of extended sources, times their extension
``altitude_tolerance``        10 deg: ALTAZ models reject runs whose computed altitude differs more
``min_ontime``                3600 s: least observation time of an adaptive zenith group
``min_runs``                  0: least number of runs of an adaptive zenith group
``cos_zenith_step``           0.01: fine cos(zenith) bins of adaptive groups
``smooth``                    ``"none"``: the rate is not smoothed
``sigma_max``                 1 deg: widest Gaussian kernel tried (``smooth="gauss"``)
``n_energy_basis``            16, ``n_fov_basis`` 8: spline functions of ``smooth="fit"``
``penalties``                 1e-2 ... 1e4: spline penalties tried (``smooth="fit"``)
``smoothness``                ``"cv"``: conditional-model penalty chosen by cross-validation
============================  ====================================================================

They are grouped by stage in the option objects of :mod:`xbkg.building.options`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Defaults", "DEFAULTS"]


@dataclass(frozen=True)
class Defaults:
    """Default options of a model build (see the module docstring for their meaning)."""

    kind: str = "3d"
    fov_alignment: str = "altaz"
    energy_edges: str = "0.1:100:20"
    offset_edges: str = "0:2.5:10"
    fov_edges: str = "-2.5:2.5:25"
    offset_max: float | None = None
    zenith_edges: str | None = None
    selection: str = "off"
    energy_threshold: str = "none"
    fov_extent: str = "auto"
    on_error: str = "skip"
    exclusion_mode: str = "regions"
    exclusion_oversample: int = 8
    catalog_min_radius: float = 0.35
    catalog_extension_factor: float = 3.0
    altitude_tolerance: float = 10.0
    min_ontime: float = 3600.0
    min_runs: int = 0
    cos_zenith_step: float = 0.01
    smooth: str = "none"
    sigma_max: float = 1.0
    n_energy_basis: int = 16
    n_fov_basis: int = 8
    penalties: tuple = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    smoothness: str = "cv"


#: The one set of defaults shared by the API and the CLI.
DEFAULTS = Defaults()
