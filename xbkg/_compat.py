"""The module names of xbkg 0.x before the layered layout keep working, with a DeprecationWarning.

``import xbkg.make`` gives the module :mod:`xbkg.building.make` itself (the same object), so code
written against the old names keeps its behaviour; ``xbkg.model`` and ``xbkg.report`` are
packages now and forward the old names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "install"]

#: old module name -> its name in the layered layout
MOVED = {
    "xbkg.binning": "xbkg.core.binning",
    "xbkg.compare": "xbkg.checks.compare",
    "xbkg.conditional": "xbkg.building.conditional",
    "xbkg.conditional_plots": "xbkg.plots.conditional",
    "xbkg.conditions": "xbkg.store.conditions",
    "xbkg.datastore": "xbkg.store.datastore",
    "xbkg.defaults": "xbkg.core.defaults",
    "xbkg.erfa_context": "xbkg.sky.erfa_context",
    "xbkg.evaluate": "xbkg.model.evaluate",
    "xbkg.events": "xbkg.store.events",
    "xbkg.excluded_area": "xbkg.sky.excluded_area",
    "xbkg.exclusion": "xbkg.sky.exclusion",
    "xbkg.exposure": "xbkg.sky.exposure",
    "xbkg.fov": "xbkg.sky.fov",
    "xbkg.geometry": "xbkg.store.altaz_checks",
    "xbkg.grouping": "xbkg.building.grouping",
    "xbkg.histogram": "xbkg.building.histogram",
    "xbkg.iers_cache": "xbkg.sky.iers_cache",
    "xbkg.interpolate": "xbkg.model.group_interpolation",
    "xbkg.io.dl3": "xbkg.io.index_tables",
    "xbkg.io.apply": "xbkg.building.apply",
    "xbkg.io.perrun": "xbkg.building.perrun",
    "xbkg.io.products": "xbkg.building.products",
    "xbkg.io.reports": "xbkg.report.checks",
    "xbkg.make": "xbkg.building.make",
    "xbkg.parallel": "xbkg.building.parallel",
    "xbkg.plotting": "xbkg.plots.model",
    "xbkg.pointing": "xbkg.sky.pointing",
    "xbkg.predict": "xbkg.model.predict",
    "xbkg.reduce": "xbkg.building.reduce",
    "xbkg.selection": "xbkg.store.selection",
    "xbkg.smoothing": "xbkg.model.smoothing",
    "xbkg.sources": "xbkg.building.sources",
    "xbkg.summary": "xbkg.report.summary",
    "xbkg.survey": "xbkg.building.survey",
    "xbkg.thresholds": "xbkg.building.thresholds",
    "xbkg.update": "xbkg.building.update",
    "xbkg.validate": "xbkg.store.runchecks",
    "xbkg.validation": "xbkg.checks.crossval",
    "xbkg.validation_plots": "xbkg.plots.validation",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old module name to the module under its new name."""

    def find_spec(self, name, path=None, target=None):
        if name in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} is now {new}; the old name will be removed in a "
                      "later release", DeprecationWarning, stacklevel=2)
        real = importlib.import_module(new)
        module.__dict__.update({k: v for k, v in vars(real).items()
                                if not k.startswith("__")})
        sys.modules[module.__name__] = real


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
