"""The options of a cross-validation, grouped in small frozen objects.

:func:`xbkg.checks.crossval.validate` and ``xbkg validate`` build and pass the same objects:
:class:`FoldOptions` (the k-fold split) and :class:`EvaluationOptions` (the grid and energy
range on which runs are predicted). Each checks its own values (a ValueError naming the
option); :func:`validate_options` routes ``validate``'s keyword shortcuts into them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from xbkg.building.options import SHORTCUTS as BUILD_SHORTCUTS
from xbkg.core.binning import parse_edges
from xbkg.core.numbers import is_number
from xbkg.model.predict import ENERGY_INTEGRATION

__all__ = ["DEFAULT_ENERGY_EDGES", "DEFAULT_WIDTH", "DEFAULT_BINSZ", "DEFAULT_OFFSET_MAX",
           "FoldOptions", "EvaluationOptions", "validate_options"]

#: Evaluation energy edges (TeV): 0.3-50 TeV in 12 log bins.
DEFAULT_ENERGY_EDGES = "0.3:50:12"
#: Side of the square evaluation grid around each pointing (deg).
DEFAULT_WIDTH = 4.0
#: Pixel size of the evaluation grid (deg).
DEFAULT_BINSZ = 0.4
#: Pixels whose centre is farther from the pointing are not evaluated (deg).
DEFAULT_OFFSET_MAX = 2.0


def _is_int(value) -> bool:
    return not isinstance(value, bool) and is_number(value) and float(value) == int(value)


@dataclass(frozen=True)
class FoldOptions:
    """The k-fold split of the runs (:func:`xbkg.core.groups.assign_folds`): ``n_folds`` (2 up
    to the number of runs) and the ``seed`` of the assignment.

    >>> FoldOptions(n_folds=3).seed
    0
    """

    n_folds: int = 5
    seed: int = 0

    def __post_init__(self):
        if not (_is_int(self.n_folds) and int(self.n_folds) >= 2):
            raise ValueError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")
        if not (_is_int(self.seed) and int(self.seed) >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class EvaluationOptions:
    """Where and how each run is predicted: energy bins (``energy_edges``, TeV, an array or a
    ``"lo:hi:n"`` log spec), a ``width`` x ``width`` deg grid of ``binsz`` deg pixels around the
    pointing, pixels within ``offset_max`` deg; the per-run energy range ``safe_threshold``
    ("safe", "none" or an energy in TeV); the ``energy_integration`` of the predictions
    ("edges" or "exact", :mod:`xbkg.model.predict`); ``reverse_lon``: mirror DETX of 3D RADEC
    per-run models read from the store (``reference="store"``, gammapy's DR1 quirk).

    >>> EvaluationOptions(energy_edges="1:100:2").edges().tolist()
    [1.0, 10.0, 100.0]
    >>> EvaluationOptions(binsz=0.5, width=0.2)
    Traceback (most recent call last):
    ...
    ValueError: binsz (0.5 deg) must not exceed width (0.2 deg)
    """

    energy_edges: object = DEFAULT_ENERGY_EDGES
    width: float = DEFAULT_WIDTH
    binsz: float = DEFAULT_BINSZ
    offset_max: float = DEFAULT_OFFSET_MAX
    safe_threshold: object = "safe"
    energy_integration: str = "edges"
    reverse_lon: bool = True

    def __post_init__(self):
        self.edges()
        for name in ("width", "binsz", "offset_max"):
            value = getattr(self, name)
            if not is_number(value, 0):
                raise ValueError(f"{name} must be > 0 deg, got {value!r}")
        if float(self.binsz) > float(self.width):
            raise ValueError(f"binsz ({self.binsz} deg) must not exceed width ({self.width} deg)")
        if self.safe_threshold not in ("safe", "none") and not is_number(self.safe_threshold, 0,
                                                                          inclusive=True):
            raise ValueError(f"safe_threshold must be 'safe', 'none' or an energy >= 0 TeV, "
                             f"got {self.safe_threshold!r}")
        if self.energy_integration not in ENERGY_INTEGRATION:
            raise ValueError(f"energy_integration must be one of {ENERGY_INTEGRATION}, "
                             f"got {self.energy_integration!r}")
        if not isinstance(self.reverse_lon, (bool, np.bool_)):
            raise ValueError(f"reverse_lon must be True or False, got {self.reverse_lon!r}")

    def edges(self):
        """The checked energy edges (TeV, :func:`xbkg.core.binning.parse_edges`)."""
        return parse_edges(self.energy_edges, log=True, name="energy edges")


_GROUPS = {"folds": FoldOptions, "evaluation": EvaluationOptions}


def validate_options(folds: FoldOptions | None = None,
                     evaluation: EvaluationOptions | None = None, /,
                     **shortcuts) -> tuple[FoldOptions, EvaluationOptions]:
    """``(folds, evaluation)`` of :func:`xbkg.checks.crossval.validate` from its keywords: the
    option objects (None: the defaults), or shortcuts named as their fields (``n_folds=3``,
    ``width=2.0``), which replace those fields of the given object (as :func:`xbkg.make_model`'s
    shortcuts do) or of the defaults.

    Raises
    ------
    TypeError
        An object of the wrong type, or an unknown keyword.

    >>> folds, evaluation = validate_options(n_folds=3, width=2.0)
    >>> folds.n_folds, evaluation.width, evaluation.binsz
    (3, 2.0, 0.4)
    >>> validate_options(None, EvaluationOptions(binsz=0.2), width=2.0)[1].binsz
    0.2
    """
    out = []
    for (name, cls), given in zip(_GROUPS.items(), (folds, evaluation)):
        fields = [f.name for f in dataclasses.fields(cls)]
        mine = {k: shortcuts.pop(k) for k in fields if k in shortcuts}
        if given is None:
            out.append(cls(**mine))
            continue
        if not isinstance(given, cls):
            raise TypeError(f"{name} must be None or {cls.__name__}(...), got "
                            f"{type(given).__name__}")
        out.append(dataclasses.replace(given, **mine) if mine else given)
    if shortcuts:
        name = next(iter(shortcuts))
        hint = " (a model option: pass it in model_options=)" if name in BUILD_SHORTCUTS else ""
        raise TypeError(f"validate() got an unexpected keyword argument {name!r}{hint}")
    return out[0], out[1]
