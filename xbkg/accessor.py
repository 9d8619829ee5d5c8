"""``ds.bkg``: conveniences on a model Dataset that hand off to the module functions.

Importing this module registers the accessor. Each method is a one-line call of a function in
the module that does the work, so everything here is also available without the accessor.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from xbkg.building.conditional import models_for_runs
from xbkg.model.evaluate import evaluate_rate, integrate_counts
from xbkg.model.group_interpolation import model_for_observation
from xbkg.model.predict import predict_counts
from xbkg.plots.model import peek
from xbkg.report.html import model_report
from xbkg.report.summary import summary_html, summary_text

__all__ = ["BkgAccessor"]


@xr.register_dataset_accessor("bkg")
class BkgAccessor:
    """Background-model methods on an xbkg model Dataset (:mod:`xbkg.core.schema` layout).

    Examples
    --------
    >>> import numpy as np
    >>> import xbkg.accessor
    >>> from xbkg.core.schema import assemble_model
    >>> model = assemble_model(np.full((1, 2, 2), 50), np.full((1, 2, 2), 1e6), kind="2d",
    ...     energy_edges=[1.0, 2.0, 4.0], fov_edges={"offset": [0.0, 1.0, 2.0]},
    ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
    >>> model.bkg.evaluate(1.5, [0.5, 3.0])
    array([5.e-05, 0.e+00])
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def evaluate(self, energy, offset=None, *, detx=None, dety=None, group=None, zenith=None,
                 var: str = "rate", extrapolate: bool = True):
        """Rate at arbitrary points; see :func:`xbkg.model.evaluate.evaluate_rate`.

        Examples
        --------
        >>> import numpy as np
        >>> import xbkg.accessor
        >>> from xbkg.core.schema import assemble_model
        >>> counts = np.arange(1, 13).reshape(1, 2, 2, 3)  # (group, energy, dety, detx)
        >>> model = assemble_model(counts, np.full(counts.shape, 1e6), kind="3d",
        ...     energy_edges=[1.0, 2.0, 4.0],
        ...     fov_edges={"detx": [-1.5, -0.5, 0.5, 1.5], "dety": [-1.0, 0.0, 1.0]},
        ...     zenith_edges=[0, 60], fov_alignment="RADEC", offset_max=1.0)
        >>> model.bkg.evaluate(np.sqrt(2.0), detx=[-1.0, 0.0, 1.0], dety=-0.5, zenith=20.0)
        array([1.e-06, 2.e-06, 3.e-06])
        """

        return evaluate_rate(self._ds, energy, offset, detx=detx, dety=dety, group=group,
                             zenith=zenith, var=var, extrapolate=extrapolate)

    def integrate(self, energy_edges, *, offset_edges=None, detx_edges=None, dety_edges=None,
                  ontime, group=None, zenith=None, oversample: int = 4,
                  extrapolate: bool = True):
        """Expected counts in analysis bins; see :func:`xbkg.model.evaluate.integrate_counts`.

        Examples
        --------
        >>> import numpy as np
        >>> import xbkg.accessor
        >>> from xbkg.sky.exposure import annulus_solid_angle
        >>> from xbkg.core.schema import assemble_model
        >>> model = assemble_model(np.full((1, 1, 1), 7), np.full((1, 1, 1), 1.0), kind="2d",
        ...     energy_edges=[1.0, 2.0], fov_edges={"offset": [0.0, 2.0]},
        ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
        >>> counts = model.bkg.integrate([1.0, 2.0], offset_edges=[0.0, 1.0], ontime=10.0)
        >>> expected = 7.0 * 1e6 * annulus_solid_angle([0.0, 1.0]) * 10.0  # rate x MeV x sr x s
        >>> bool(np.allclose(counts, expected, rtol=1e-12))
        True
        """

        return integrate_counts(self._ds, energy_edges, offset_edges=offset_edges,
                                detx_edges=detx_edges, dety_edges=dety_edges, ontime=ontime,
                                group=group, zenith=zenith, oversample=oversample,
                                extrapolate=extrapolate)

    def predict(self, store, obs_id, *, energy_edges=None, width: float = 5.0,
                binsz: float = 0.05, group=None, zenith=None, energy_integration: str = "edges",
                max_rotation: float = 0.25):
        """Expected counts of a run on a FoV grid; see :func:`xbkg.model.predict.predict_counts`.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import xbkg
        >>> from xbkg.simulate import simulate_store
        >>> store_dir = simulate_store(pathlib.Path(tempfile.mkdtemp()) / "s", n_runs=3,
        ...                            events_per_run=2000, seed=2)
        >>> store = xbkg.open_datastore(store_dir)
        >>> model = xbkg.make_model(store, kind="3d", fov_alignment="altaz")
        >>> npred = model.bkg.predict(store, 1, width=2.0, binsz=0.5)
        >>> npred["npred"].shape
        (20, 4, 4)
        >>> bool(npred["npred"].sum() > 0)
        True
        """

        return predict_counts(self._ds, store, obs_id, energy_edges=energy_edges, width=width,
                              binsz=binsz, group=group, zenith=zenith,
                              energy_integration=energy_integration, max_rotation=max_rotation)

    def for_observation(self, zenith, *, method: str = "log", extra=None, obs_id=None,
                        extrapolate: bool = True):
        """The model of one run, interpolated between the groups in cos(zenith); see
        :func:`xbkg.model.group_interpolation.model_for_observation`.

        Examples
        --------
        >>> import numpy as np
        >>> import xbkg.accessor
        >>> from xbkg.core.schema import assemble_model
        >>> model = assemble_model(np.array([[[400]], [[100]]]), np.ones((2, 1, 1)), kind="2d",
        ...     energy_edges=[1, 2], fov_edges={"offset": [0, 1]}, zenith_edges=[0, 40, 60],
        ...     fov_alignment="ALTAZ", offset_max=1.0)
        >>> model = model.assign(group_mean_cos_zenith=("zenith_group", [0.9, 0.6]))
        >>> run = model.bkg.for_observation(np.degrees(np.arccos(0.75)))
        >>> run.sizes["zenith_group"], round(float(run["rate"].squeeze()), 6)
        (1, 200.0)
        """

        return model_for_observation(self._ds, zenith, method=method, extra=extra, obs_id=obs_id,
                                     extrapolate=extrapolate)

    def for_run(self, store, obs_id, *, warn: bool = True):
        """The model of run ``obs_id`` of an observation Dataset ``store`` (any run, also one
        not used in the build) from a conditional model; see
        :func:`xbkg.building.conditional.model_for_run`."""

        return next(models_for_runs(self._ds, store.sel(obs_id=[int(obs_id)]), warn=warn))[1]

    def peek(self, group=None, **kwargs):
        """Quick-look figure of the model; see :func:`xbkg.plots.model.peek` (matplotlib).

        Examples
        --------
        >>> import numpy as np
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import xbkg.accessor
        >>> from xbkg.core.schema import assemble_model
        >>> model = assemble_model(np.full((1, 3, 2), 50), np.full((1, 3, 2), 1e6), kind="2d",
        ...     energy_edges=[1.0, 2.0, 4.0, 8.0], fov_edges={"offset": [0.0, 1.0, 2.0]},
        ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
        >>> fig = model.bkg.peek()
        >>> len(fig.axes) >= 1
        True
        """

        return peek(self._ds, group=group, **kwargs)

    def __repr__(self) -> str:
        """Short text summary: what the model is, its binning and groups."""

        return summary_text(self._ds)

    def report(self, path="report.html", *, store=None) -> Path:
        """Write a self-contained HTML report of the model; see :func:`xbkg.report.html.write_report`.

        Returns the path of the report (open it in a browser or JupyterLab).
        """

        return model_report(self._ds, path, store=store)

    def _repr_html_(self) -> str:
        """Rich display in JupyterLab: ``model.bkg`` shows groups, binning and statistics."""

        return summary_html(self._ds)

    def summary(self) -> str:
        """Text summary (kind, binning, groups, counts); see :func:`xbkg.report.summary.summary_text`."""

        return summary_text(self._ds)
