"""Discretisation and mutual-information kernels against numpy twins and the reference."""

import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import mutual_info_score

from fastdis.metrics._information import (
    compact_labels,
    discrete_entropy,
    histogram_discretize,
    mutual_info_matrix,
)


def histogram_discretize_twin(values, num_bins):
    """Plain numpy: the reference's per-row np.histogram + np.digitize."""
    out = np.zeros(values.shape, dtype=np.int64)
    for d in range(values.shape[1]):
        out[:, d] = np.digitize(values[:, d], np.histogram(values[:, d], num_bins)[1][:-1])
    return out


def mutual_info_twin(left, right):
    return np.array(
        [[mutual_info_score(right[:, b], left[:, a]) for b in range(right.shape[1])]
         for a in range(left.shape[1])]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_bins", [1, 3, 20])
def test_histogram_discretize_matches_reference(kind, dtype, num_bins):
    factors = make_factors(2000)
    codes = make_codes(factors, kind, dtype=dtype)
    utils = dlib_module("utils")
    expected = utils._histogram_discretize(codes.T, num_bins).T
    np.testing.assert_array_equal(histogram_discretize(codes, num_bins), expected)


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    ),
    num_bins=st.integers(1, 25),
)
def test_histogram_discretize_matches_twin(values, num_bins):
    try:
        expected = histogram_discretize_twin(values, num_bins)
    except ValueError:  # numpy cannot make finite-sized float32 bins: neither can we
        with pytest.raises(ValueError):
            histogram_discretize(values, num_bins)
        return
    np.testing.assert_array_equal(histogram_discretize(values, num_bins), expected)


def test_histogram_discretize_integer_input_and_constant_column():
    factors = np.array([[0, 5], [1, 5], [2, 5], [39, 5]])
    np.testing.assert_array_equal(
        histogram_discretize(factors, 20), histogram_discretize_twin(factors, 20)
    )
    assert (histogram_discretize(factors, 20)[:, 1] == 11).all()  # middle bin, as numpy


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 60),
    a=st.integers(1, 4),
    b=st.integers(1, 4),
)
def test_mutual_info_matrix_matches_sklearn(data, n, a, b):
    labels = st.integers(0, 6)
    left = data.draw(hnp.arrays(np.int64, (n, a), elements=labels))
    right = data.draw(hnp.arrays(np.int64, (n, b), elements=st.integers(0, 1000)))
    np.testing.assert_allclose(mutual_info_matrix(left, right), mutual_info_twin(left, right),
                               rtol=0, atol=1e-14)
    np.testing.assert_allclose(discrete_entropy(right),
                               [mutual_info_score(c, c) for c in right.T], rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mutual_info_matches_reference_at_study_size(kind, dtype):
    utils = dlib_module("utils")
    factors = make_factors(10_000)
    codes = make_codes(factors, kind, dtype=dtype)
    binned = utils._histogram_discretize(codes.T, 20)
    expected = utils.discrete_mutual_info(binned, factors.T)
    got = mutual_info_matrix(histogram_discretize(codes, 20), factors)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(discrete_entropy(factors), utils.discrete_entropy(factors.T),
                               rtol=0, atol=1e-13)


def test_compact_labels_keeps_order_and_handles_sparse_values():
    labels = np.array([[7, 10**12], [3, -(10**12)], [7, 5]])
    compacted, sizes = compact_labels(labels)
    np.testing.assert_array_equal(compacted, [[1, 2], [0, 0], [1, 1]])  # sparse: compacted
    np.testing.assert_array_equal(sizes, [2, 3])


def test_histogram_discretize_rejects_bad_input():
    with pytest.raises(ValueError, match="num_bins"):
        histogram_discretize(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="2-D"):
        histogram_discretize(np.zeros(3), 5)
