"""Using a model: evaluation, interpolation between groups, smoothing, prediction.

Until the layered layout, ``xbkg.model`` was the module of the model schema, now
:mod:`xbkg.core.schema`; its names still resolve here, with a DeprecationWarning.
"""

import warnings

from xbkg.core import schema as _schema


def __getattr__(name):
    if name in _schema.__all__:
        warnings.warn(f"xbkg.model.{name} is now xbkg.core.schema.{name}; the old name will be "
                      "removed in a later release", DeprecationWarning, stacklevel=2)
        return getattr(_schema, name)
    raise AttributeError(f"module 'xbkg.model' has no attribute {name!r}")
