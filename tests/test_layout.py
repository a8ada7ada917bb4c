"""The two data layouts (gpunn.nn.layout): what each builds, and the finite check they share."""

import warnings

import numpy as np
import pytest

import gpunn
from gpunn.nn.layout import ColumnLayout, RowLayout, all_finite


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("source", [np.float32, np.float64, np.uint8])
def test_row_layout_builds_x_one_t_rows(dtype, source):
    rng = np.random.default_rng(0)
    X = (rng.random((37, 5)) * 200).astype(source)
    y = rng.integers(0, 3, 37)
    net = gpunn.Network([5, 4, 3], backend="numpy", dtype=dtype, classes=[0, 1, 2])
    assert isinstance(net.sample_layout, RowLayout)
    samples, labels = net.device_samples(X, y)
    expected = np.zeros((37, 5 + 1 + 3), dtype=dtype)  # the plain construction, step by step
    expected[:, :5] = X
    expected[:, 5] = 1
    expected[np.arange(37), 6 + y] = 1
    assert samples.dtype == np.dtype(dtype) and samples.flags.c_contiguous
    np.testing.assert_array_equal(samples, expected)
    np.testing.assert_array_equal(labels, y)
    unlabelled, none = net.device_samples(X)
    assert none is None
    np.testing.assert_array_equal(unlabelled[:, 6:], 0)
    np.testing.assert_array_equal(unlabelled[:, :6], expected[:, :6])


def test_column_layout_builds_sample_columns():
    X = np.random.default_rng(1).random((11, 4))
    net = gpunn.Network([4, 3, 2], backend="emulated")
    assert isinstance(net.sample_layout, ColumnLayout)
    samples, _ = net.device_samples(X)
    assert samples.shape == (4, 11) and samples.flags.c_contiguous
    np.testing.assert_array_equal(samples, X.T.astype(np.float32))
    assert net.sample_count(samples) == 11


def test_the_layouts_refuse_non_finite_data_in_one_line():
    X = np.ones((6, 3))
    X[4, 1] = np.nan
    for backend in ("numpy", "emulated"):
        with pytest.raises(gpunn.DataError, match="NaN or infinite"):
            gpunn.Network([3, 2], backend=backend).device_samples(X)


def test_all_finite_is_exact_when_the_sum_overflows():
    big = np.full((4, 4), 3e38, dtype=np.float32)  # finite values whose float32 sum is inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all_finite(np, big)
        big[2, 3] = np.inf
        assert not all_finite(np, big)
        big[2, 3] = np.nan
        assert not all_finite(np, big)
        assert all_finite(np, np.zeros((0, 3), dtype=np.float32))


def test_only_the_kernel_layout_has_dense_paths():
    with pytest.raises(ValueError, match="folds the bias"):
        gpunn.Network([3, 2], backend="numpy").dense = "fused"
    net = gpunn.Network([3, 2], backend="emulated")
    net.dense = "cublas"
    assert net.dense == "cublas" and net.sample_layout.dense == "cublas"
