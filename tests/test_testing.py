"""The helpers of xbkg.testing catch what they are for (their doctests show the plain uses)."""

import math

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from xbkg.testing import (
    assert_models_equal,
    assert_models_identical,
    count_calls,
    raise_if_dask_computes,
)


def _model():
    return xr.Dataset({"counts": (("energy",), np.array([3, 4], np.int64)),
                       "rate": (("energy",), np.array([1.0, np.nan]))},
                      attrs={"kind": "2d", "fov_alignment": "ALTAZ", "provenance": "{}"})


def test_raise_if_dask_computes_allows_exactly_max_computes():
    x = da.arange(6, chunks=2).sum()
    with raise_if_dask_computes(max_computes=2):
        assert int(x.compute()) == 15 and int(x.compute()) == 15
        with pytest.raises(RuntimeError, match="3 computations, at most 2 allowed"):
            x.compute()


def test_model_equality_sees_values_dtypes_and_meaning():
    model = _model()
    assert_models_equal(model, model.copy(deep=True))  # NaN equals NaN
    with pytest.raises(AssertionError, match="dtype"):
        assert_models_equal(model, model.assign(counts=model["counts"].astype(np.int32)))
    with pytest.raises(AssertionError, match="fov_alignment"):
        assert_models_equal(model, model.assign_attrs(fov_alignment="RADEC"))
    with pytest.raises(AssertionError, match="variables differ"):
        assert_models_equal(model, model.drop_vars("rate"))
    with pytest.raises(AssertionError):
        assert_models_equal(model, model.assign(rate=model["rate"] * (1 + 1e-9)), rtol=1e-12)
    assert_models_equal(model, model.assign_attrs(provenance='{"x": 1}'))  # not compared
    with pytest.raises(AssertionError):
        assert_models_identical(model, model.assign_attrs(provenance='{"x": 1}'))
    with pytest.raises(AssertionError):
        assert_models_identical(model, model.assign(rate=model["rate"].assign_attrs(units="s")))


def test_count_calls_restores_the_function_even_after_an_error():
    real = math.hypot
    with pytest.raises(ZeroDivisionError), count_calls(math, "hypot") as calls:
        math.hypot(3.0, 4.0)
        1 / 0  # noqa: B018
    assert math.hypot is real and calls == {"hypot": 1}
