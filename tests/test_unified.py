"""Unified scores vs disentanglement_lib (its module loaded with TensorFlow & co. stubbed out)."""

import importlib
import json
import sys
import types

import gin
import numpy as np
import pytest
from conftest import make_codes, make_factors
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_downstream import SIZES, ToyData, identity

from fastdis.compat.disentanglement_lib import unified_scores as compat_unified
from fastdis.compat.disentanglement_lib import utils as compat_utils
from fastdis.metrics import _unified as unified


@pytest.fixture(scope="module")
def ref():
    """dlib's unified_scores and visualize_scores, importable without TF/seaborn/simplejson."""
    stub_names = ["tensorflow", "tensorflow.compat", "tensorflow.compat.v1", "seaborn"]
    added = []
    if "simplejson" not in sys.modules:
        sys.modules["simplejson"] = json
        added.append("simplejson")
    for name in stub_names:
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.gfile = types.SimpleNamespace()
            sys.modules[name] = module
            added.append(name)
    sys.modules["tensorflow"].compat = sys.modules["tensorflow.compat"]
    sys.modules["tensorflow.compat"].v1 = sys.modules["tensorflow.compat.v1"]
    try:
        unified_ref = importlib.import_module(
            "disentanglement_lib.evaluation.metrics.unified_scores"
        )
        visualize_ref = importlib.import_module("disentanglement_lib.visualize.visualize_scores")
    finally:
        for name in added:
            del sys.modules[name]
    return types.SimpleNamespace(unified=unified_ref, visualize=visualize_ref)


def _identity_discretizer(target, num_bins):
    del num_bins
    return target


@pytest.fixture
def identity_discretizer():
    importlib.import_module("disentanglement_lib.evaluation.metrics.utils")  # gin names
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn", _identity_discretizer)
    gin.bind_parameter("discretizer.num_bins", 10)
    compat_utils.configure(discretizer_fn=_identity_discretizer, num_bins=10)
    yield
    gin.clear_config()
    compat_utils._config.update(num_bins=20, discretizer_fn=None)


def _random_matrix(seed, shape=(6, 4), zeros=0.3):
    rs = np.random.RandomState(seed)
    matrix = rs.random_sample(shape)
    matrix[rs.random_sample(shape) < zeros] = 0.0
    return matrix


# ---------------------------------------------------------------------------------------------
# precision curve: union-find kernel vs the reference's recursive search
# ---------------------------------------------------------------------------------------------


def _plain_precision(matrix, threshold):
    """Numpy twin: components with > 1 node via dense reachability (no union-find)."""
    adj = (matrix >= threshold) & (matrix != 0)
    n_rows, n_cols = adj.shape
    full = np.zeros((n_rows + n_cols,) * 2, dtype=bool)
    full[:n_rows, n_rows:] = adj
    full |= full.T
    reach = full | np.eye(n_rows + n_cols, dtype=bool)
    for _ in range(n_rows + n_cols):
        reach = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
    labels = {tuple(row) for row, size in zip(reach, reach.sum(1), strict=True) if size > 1}
    return len(labels)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
              elements=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0])))
def test_precision_matches_reference_and_twin(ref, matrix):
    for threshold in np.unique(matrix):
        expected = ref.visualize.precision(matrix, threshold)
        assert unified.precision(matrix, threshold) == expected
        assert _plain_precision(matrix, threshold) == expected


@pytest.mark.parametrize("seed", range(6))
def test_pr_curves_values_exact(ref, seed):
    matrix = _random_matrix(seed, shape=(3 + seed, 2 + seed % 3))
    if seed == 5:
        matrix[:] = np.round(matrix, 1)  # ties
    assert unified.pr_curves_values(matrix) == pytest.approx(
        ref.unified.pr_curves_values(matrix), abs=0.0
    )


@pytest.mark.parametrize("seed", range(4))
def test_aggregations_match_reference(ref, seed):
    matrix = _random_matrix(seed, shape=(7, 4))
    factors = make_factors(200, sizes=(3, 6, 4, 5), seed=seed)
    ys = factors.T
    for ours, theirs in [
        (unified.aggregation_dci(matrix), ref.unified.aggregation_dci(matrix, ys)),
        (unified.aggregation_mig(matrix, factors), ref.unified.aggregation_mig(matrix, ys)),
        (unified.aggregation_sap(matrix), ref.unified.aggregation_sap(matrix, ys)),
        (unified.aggregation_modularity(matrix), ref.unified.aggregation_modularity(matrix, ys)),
    ]:
        assert list(ours) == list(theirs)
        for key in theirs:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-15), key


def test_unified_compat_mi_matches_reference(ref):
    data = ToyData()
    rs = np.random.RandomState(0)
    mus_train, ys_train = compat_utils.generate_batch_factor_code(data, identity, 300, rs, 16)
    mus_test, ys_test = compat_utils.generate_batch_factor_code(data, identity, 100, rs, 16)
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn",
                       dlib_utils()._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    try:
        theirs = ref.unified.unified_scores(mus_train, ys_train, mus_test, ys_test,
                                            [ref.unified.mutual_information_matrix])
    finally:
        gin.clear_config()
    ours = compat_unified.unified_scores(mus_train, ys_train, mus_test, ys_test,
                                         [ref.unified.mutual_information_matrix])
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-14), key
    array_level = unified.unified_scores(mus_train.T, ys_train.T, mus_test.T, ys_test.T,
                                         matrix_fns=["mutual_information_matrix"])
    assert array_level == ours


def dlib_utils():
    return importlib.import_module("disentanglement_lib.evaluation.metrics.utils")


# ---------------------------------------------------------------------------------------------
# dlib's unified_scores_test assertions, run on the compat layer
# ---------------------------------------------------------------------------------------------


class _IdentityObservations:
    """dummy_data.IdentityObservationsData without its deprecated random_integers."""

    factors_num_values = [10] * 10
    num_factors = 10
    factor_names = None

    def sample(self, num, random_state):
        factors = random_state.randint(1, 11, size=(num, 10))
        return factors, factors


def test_reference_assertions_mig(identity_discretizer):
    data = _IdentityObservations()
    scores = compat_unified.compute_unified_scores(
        data, identity, np.random.RandomState(0), None, 10000, 100,
        matrix_fns=[compat_unified.mutual_information_matrix])
    assert 0.9 <= scores["mutual_information_matrix.mig"] <= 1.0
    assert 0.9 <= scores["mutual_information_matrix.modularity"] <= 1.0

    def duplicated(x):
        x = identity(x)
        return np.hstack([x, x])

    scores = compat_unified.compute_unified_scores(
        data, duplicated, np.random.RandomState(0), None, 1000, 1000,
        matrix_fns=[compat_unified.mutual_information_matrix])
    assert 0.0 <= scores["mutual_information_matrix.mig"] <= 0.2
    assert 0.9 <= scores["mutual_information_matrix.modularity"] <= 1.0


def _duplicated(x):
    x = identity(x)
    return np.hstack([x, x])


def test_reference_assertion_sap(identity_discretizer):
    scores = compat_unified.compute_unified_scores(
        _IdentityObservations(), _duplicated, np.random.RandomState(0), None, 1000, 1000,
        matrix_fns=[compat_unified.accuracy_svm_matrix])
    assert 0.0 <= scores["accuracy_svm_matrix.sap"] <= 0.2


def test_reference_assertion_dci(identity_discretizer):
    pytest.importorskip("fastdis.metrics._dci")
    scores = compat_unified.compute_unified_scores(
        _IdentityObservations(), _duplicated, np.random.RandomState(0), None, 1000, 1000,
        matrix_fns=[compat_unified.importance_gbt_matrix])
    assert 0.9 <= scores["importance_gbt_matrix.dci_disentanglement"] <= 1.0


@pytest.mark.slow
def test_reference_assertion_dci_study_size(identity_discretizer):
    pytest.importorskip("fastdis.metrics._dci")
    scores = compat_unified.compute_unified_scores(
        _IdentityObservations(), identity, np.random.RandomState(0), None, 10000, 100,
        matrix_fns=[compat_unified.importance_gbt_matrix])
    assert 0.9 <= scores["importance_gbt_matrix.dci_disentanglement"] <= 1.0


def test_unified_bad_inputs():
    factors = make_factors(80, sizes=SIZES)
    codes = make_codes(factors, "noise", n_codes=4)
    with pytest.raises(ValueError, match="matrix_fns entries must be one of"):
        unified.unified_scores(codes, factors, codes, factors, matrix_fns=["svd"])
    with pytest.raises(ValueError, match="at least 2 columns"):
        unified.unified_scores(codes[:, :1], factors, codes[:, :1], factors,
                               matrix_fns=["mutual_information_matrix"])
    with pytest.raises(ValueError, match="returned shape"):
        unified.unified_scores(codes, factors, codes, factors,
                               matrix_fns=[lambda c, f, tc, tf: np.zeros((2, 2))])
    with pytest.raises(ValueError, match="NaN"):
        unified.pr_curves_values(np.array([[np.nan, 1.0]]))
