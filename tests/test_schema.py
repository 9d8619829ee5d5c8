"""The model Dataset (xbkg.core.schema): rates and their policy, assembly, checks, lazy or not."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, strategies as st
from strategies import FAST, seeds

from xbkg.core.schema import (
    ModelSchemaError,
    assemble_model,
    check_model_values,
    fill_unexposed,
    fov_dims,
    rate_floor,
    rate_from_counts,
    select_group,
    validate_model,
    zenith_edges,
)
from xbkg.testing import assert_models_equal, raise_if_dask_computes

E_EDGES = np.geomspace(0.1, 100.0, 7)
OFFSET = np.linspace(0.0, 2.5, 6)


def _arrays(seed, groups=2):
    rng = np.random.default_rng(seed)
    exposure = rng.uniform(1e6, 1e8, (groups, 6, 5))
    exposure[:, 0] = 0.0  # below every run's threshold
    counts = rng.poisson(exposure * 1e-6).astype(np.int64)
    counts[:, 0] = 0
    return counts, exposure


def _model(counts, exposure, **kw):
    zenith = [0, 30, 60][:counts.shape[0] + 1]
    return assemble_model(counts, exposure, kind="2d", energy_edges=E_EDGES,
                          fov_edges={"offset": OFFSET}, zenith_edges=zenith,
                          fov_alignment="altaz", offset_max=2.5, **kw)


def test_fov_dims_of_each_kind():
    assert fov_dims("2d") == ("offset",) and fov_dims("3d") == ("dety", "detx")
    with pytest.raises(ValueError, match="kind"):
        fov_dims("4d")


@FAST
@given(seed=seeds)
def test_rate_is_counts_over_exposure_with_the_documented_errors(seed):
    counts, exposure = _arrays(seed)
    rate, err = rate_from_counts(counts, exposure)
    has = exposure > 0
    np.testing.assert_allclose(rate[has], counts[has] / exposure[has], rtol=1e-15)
    np.testing.assert_allclose(err[has], np.sqrt(np.maximum(counts[has], 1)) / exposure[has],
                               rtol=1e-15)
    assert np.all(rate[~has] == 0) and np.all(np.isnan(err[~has]))


@FAST
@given(seed=seeds, relative=st.sampled_from([1e-3, 0.1]))
def test_rate_floor_is_a_fraction_of_the_fov_mean(seed, relative):
    counts, exposure = _arrays(seed)
    floor = rate_floor(counts, exposure, relative)
    mean = counts[:, 1:].sum(axis=2) / exposure[:, 1:].sum(axis=2)
    np.testing.assert_allclose(floor[:, 1:, 0], relative * mean, rtol=1e-12)
    np.testing.assert_allclose(floor[:, 0, 0], floor[:, 1, 0])  # empty slice: nearest one


@FAST
@given(seed=seeds, chunk=st.integers(1, 6))
def test_assembly_is_the_same_lazy_in_any_chunks_and_eager(seed, chunk):
    counts, exposure = _arrays(seed)
    eager = _model(counts, exposure)
    with raise_if_dask_computes():
        lazy = _model(da.from_array(counts, chunks=(1, chunk, 2)),
                      da.from_array(exposure, chunks=(2, 3, chunk)))
    assert isinstance(lazy["rate"].data, da.Array)
    assert_models_equal(lazy.compute(scheduler="synchronous"), eager, rtol=1e-14)


def test_assembled_model_follows_the_policy():
    counts, exposure = _arrays(5)
    model = validate_model(_model(counts, exposure))
    assert not model["has_data"].values[:, 0].any() and model["has_data"].values[:, 1:].all()
    assert np.all(model["rate"].values > 0)  # no zero next to populated bins
    np.testing.assert_allclose(model["rate"].values[:, 0], fill_unexposed(
        model["rate"].values, exposure, counts, E_EDGES)[:, 0])
    np.testing.assert_array_equal(zenith_edges(model), [0, 30, 60])
    assert check_model_values(model) is model
    assert select_group(model, zenith=40.0) == 1 and select_group(model, group=0) == 0


def test_checks_name_what_is_wrong():
    model = _model(*_arrays(1))
    with pytest.raises(ModelSchemaError, match="kind"):
        validate_model(model.assign_attrs(kind="4d"))
    with pytest.raises(ModelSchemaError, match="'counts' has dims"):
        validate_model(model.assign(counts=model["counts"].transpose("energy", ...)))
    with pytest.raises(ModelSchemaError, match="'rate' has 1 NaN"):
        check_model_values(model.assign(rate=model["rate"].where(model["rate"] < model["rate"]
                                                                 .max())))
