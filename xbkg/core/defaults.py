"""The defaults of a model build, in one place: :func:`xbkg.make_model` and ``xbkg make-models``
both read them from :data:`DEFAULTS` (a test compares the two).

=====================  ============================================================================
option                 default
=====================  ============================================================================
``kind``               ``"3d"``: energy x FoV (dety, detx)
``fov_alignment``      ``"altaz"``
``energy_edges``       ``"0.1:100:20"``: 0.1-100 TeV in 20 log bins
``offset_edges``       ``"0:2.5:10"`` (2D)
``fov_edges``          ``"-2.5:2.5:25"`` (3D, DETX and DETY)
``offset_max``         None: the edge of the binning (2D) or the largest circle in the FoV box (3D)
``zenith_edges``       None: one group, 0-90 deg
``selection``          ``"off"``: runs whose TARGET_NAME or OBJECT says "off"; stores without off
                       runs (MAGIC, VERITAS, CTAO, LST) need ``"all"`` and excluded sources
``energy_threshold``   ``"none"``: every run contributes to every energy bin
``fov_extent``         ``"auto"``: cut the binning where the runs' events stop (:mod:`xbkg.extent`)
``on_error``           ``"skip"``: a run that cannot be used is left out and reported
``exclusion_mode``     ``"regions"``
=====================  ============================================================================
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


#: The one set of defaults shared by the API and the CLI.
DEFAULTS = Defaults()
