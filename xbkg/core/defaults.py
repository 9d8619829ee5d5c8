"""The defaults of a model build, in one place: :func:`xbkg.make_model` and ``xbkg make-models``
both read them from :data:`DEFAULTS` (a test compares the two; the table is in
docs/user_guide.rst).
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
