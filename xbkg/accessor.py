"""``ds.bkg``: conveniences on a model Dataset that hand off to the module functions.

Importing this module registers the accessor. Each method is a one-line call of a function in
the module that does the work, so everything here is also available without the accessor.
"""

from __future__ import annotations

import xarray as xr

__all__ = ["BkgAccessor"]


@xr.register_dataset_accessor("bkg")
class BkgAccessor:
    """Background-model methods on an xbkg model Dataset (:mod:`xbkg.model` layout).

    Examples
    --------
    >>> import numpy as np
    >>> import xbkg.accessor
    >>> from xbkg.model import assemble_model
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
        """Rate at arbitrary points; see :func:`xbkg.evaluate.evaluate_rate`.

        Examples
        --------
        >>> import numpy as np
        >>> import xbkg.accessor
        >>> from xbkg.model import assemble_model
        >>> counts = np.arange(1, 13).reshape(1, 2, 2, 3)  # (group, energy, dety, detx)
        >>> model = assemble_model(counts, np.full(counts.shape, 1e6), kind="3d",
        ...     energy_edges=[1.0, 2.0, 4.0],
        ...     fov_edges={"detx": [-1.5, -0.5, 0.5, 1.5], "dety": [-1.0, 0.0, 1.0]},
        ...     zenith_edges=[0, 60], fov_alignment="RADEC", offset_max=1.0)
        >>> model.bkg.evaluate(np.sqrt(2.0), detx=[-1.0, 0.0, 1.0], dety=-0.5, zenith=20.0)
        array([1.e-06, 2.e-06, 3.e-06])
        """
        from .evaluate import evaluate_rate

        return evaluate_rate(self._ds, energy, offset, detx=detx, dety=dety, group=group,
                             zenith=zenith, var=var, extrapolate=extrapolate)

    def integrate(self, energy_edges, *, offset_edges=None, detx_edges=None, dety_edges=None,
                  ontime, group=None, zenith=None, oversample: int = 4,
                  extrapolate: bool = True):
        """Expected counts in analysis bins; see :func:`xbkg.evaluate.integrate_counts`.

        Examples
        --------
        >>> import numpy as np
        >>> import xbkg.accessor
        >>> from xbkg.exposure import annulus_solid_angle
        >>> from xbkg.model import assemble_model
        >>> model = assemble_model(np.full((1, 1, 1), 7), np.full((1, 1, 1), 1.0), kind="2d",
        ...     energy_edges=[1.0, 2.0], fov_edges={"offset": [0.0, 2.0]},
        ...     zenith_edges=[0, 60], fov_alignment="ALTAZ", offset_max=2.0)
        >>> counts = model.bkg.integrate([1.0, 2.0], offset_edges=[0.0, 1.0], ontime=10.0)
        >>> expected = 7.0 * 1e6 * annulus_solid_angle([0.0, 1.0]) * 10.0  # rate x MeV x sr x s
        >>> bool(np.allclose(counts, expected, rtol=1e-12))
        True
        """
        from .evaluate import integrate_counts

        return integrate_counts(self._ds, energy_edges, offset_edges=offset_edges,
                                detx_edges=detx_edges, dety_edges=dety_edges, ontime=ontime,
                                group=group, zenith=zenith, oversample=oversample,
                                extrapolate=extrapolate)

    def predict(self, store, obs_id, *, energy_edges=None, width: float = 5.0,
                binsz: float = 0.05, group=None, zenith=None, energy_integration: str = "edges",
                max_rotation: float = 0.25):
        """Expected counts of a run on a FoV grid; see :func:`xbkg.predict.predict_counts`.

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
        from .predict import predict_counts

        return predict_counts(self._ds, store, obs_id, energy_edges=energy_edges, width=width,
                              binsz=binsz, group=group, zenith=zenith,
                              energy_integration=energy_integration, max_rotation=max_rotation)
