"""Modularity & explicitness (array API and compat layer) against disentanglement_lib."""

import warnings

import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors

from fastdis._parallel import single_threaded_blas
from fastdis.compat.disentanglement_lib import modularity_explicitness as compat_me
from fastdis.metrics._modularity_explicitness import modularity, modularity_explicitness

N_TRAIN, N_TEST = 1500, 1000


def _data(kind, dtype, seed=1):
    factors = make_factors(N_TRAIN + N_TEST)
    factors[:, 2] %= 8  # keep every class in the small test set
    codes = make_codes(factors, kind, dtype=dtype, seed=seed)
    return codes[:N_TRAIN], factors[:N_TRAIN], codes[N_TRAIN:], factors[N_TRAIN:]


def _dlib_reference(codes, factors, test_codes, test_factors):
    me = dlib_module("modularity_explicitness")
    from disentanglement_lib.evaluation.metrics import utils

    mus, ys, mus_test, ys_test = codes.T, factors.T, test_codes.T, test_factors.T
    mi = utils.discrete_mutual_info(utils._histogram_discretize(mus, 20), ys)
    norm, mean, std = utils.normalize_data(mus)
    norm_test, _, _ = utils.normalize_data(mus_test, mean, std)
    # One BLAS thread: a threaded GEMM may round differently, and the unconverged lbfgs fits
    # (max_iter=100) would then end elsewhere: the reference is only exact for a fixed BLAS setup.
    with warnings.catch_warnings(), single_threaded_blas():
        warnings.simplefilter("ignore")
        aucs = np.array([me.explicitness_per_factor(norm, ys[i], norm_test, ys_test[i])
                         for i in range(ys.shape[0])])
    return {
        "modularity_score": me.modularity(mi),
        "explicitness_score_train": aucs[:, 0].mean(),
        "explicitness_score_test": aucs[:, 1].mean(),
    }


@pytest.mark.parametrize("kind", ["disentangled", "entangled", "noise"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_dlib(kind, dtype):
    args = _data(kind, dtype)
    want = _dlib_reference(*args)
    got = modularity_explicitness(*args)
    assert set(got) == set(want)
    assert all(isinstance(v, float) for v in got.values())
    assert got["modularity_score"] == pytest.approx(want["modularity_score"], abs=1e-12)
    # Bit for bit: scikit-learn's lbfgs path in the codes' dtype.
    for key in ("explicitness_score_train", "explicitness_score_test"):
        assert got[key] == want[key]


def test_compat_explicitness_per_factor_matches_dlib():
    me = dlib_module("modularity_explicitness")
    codes, factors, test_codes, test_factors = _data("entangled", np.float32)
    mean, std = codes.mean(0), codes.std(0)  # standardised, as the metric feeds it
    codes, test_codes = (codes - mean) / std, (test_codes - mean) / std
    with warnings.catch_warnings(), single_threaded_blas():
        warnings.simplefilter("ignore")
        want = me.explicitness_per_factor(codes.T, factors[:, 3], test_codes.T,
                                          test_factors[:, 3])
    got = compat_me.explicitness_per_factor(codes.T, factors[:, 3], test_codes.T,
                                            test_factors[:, 3])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "matrix, expected",
    [
        (np.diag(np.ones(5)), 1.0),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2.0 / 3.0),
        (np.zeros([10, 10]), 0.0),
        (np.vstack([np.diag(np.ones(5))] * 2), 1.0),
        (np.diag(np.ones(5))[:2], 1.0),
        (np.hstack([np.diag(np.ones(5))] * 2), 1.0 - 1.0 / 9.0),
    ],
)
def test_modularity_dlib_hand_built(matrix, expected):
    assert modularity(matrix) == pytest.approx(expected)
    assert compat_me.modularity(matrix) == pytest.approx(dlib_module(
        "modularity_explicitness").modularity(matrix), abs=1e-15)


def test_compat_dlib_unit_test_metric():
    from disentanglement_lib.data.ground_truth import dummy_data

    from fastdis.compat.disentanglement_lib import utils

    utils.configure(discretizer_fn=lambda target, num_bins: target, num_bins=10)
    try:
        got = compat_me.compute_modularity_explicitness(
            dummy_data.IdentityObservationsData(), lambda x: np.array(x, dtype=np.float64),
            np.random.RandomState(0), None, 3000, 3000)
    finally:
        utils.configure(discretizer_fn=utils._histogram_discretize, num_bins=20)
    assert 0.9 <= got["modularity_score"] <= 1.0


def test_missing_test_class_fixed_here_raises_in_compat():
    codes, factors, test_codes, test_factors = _data("disentangled", np.float64)
    keep = test_factors[:, 0] != 2
    test_codes, test_factors = test_codes[keep], test_factors[keep]
    got = modularity_explicitness(codes, factors, test_codes, test_factors)
    assert 0.5 < got["explicitness_score_test"] <= 1.0
    with pytest.raises(ValueError, match="one-hot encodes train and test labels separately"):
        compat_me.explicitness_per_factor(codes.T, factors[:, 0], test_codes.T,
                                          test_factors[:, 0])


def test_constant_code_fixed_here_raises_in_compat():
    codes, factors, test_codes, test_factors = _data("disentangled", np.float64)
    codes = codes.copy()
    codes[:, -1] = 0.0
    got = modularity_explicitness(codes, factors, test_codes, test_factors)
    assert np.isfinite(list(got.values())).all()
    from fastdis.compat.disentanglement_lib import utils

    class _Data:
        def sample(self, num, random_state):
            idx = random_state.randint(N_TRAIN, size=num)
            return factors[idx], codes[idx]

    with pytest.raises(ValueError, match="constant"):
        compat_me.compute_modularity_explicitness(_Data(), lambda x: x,
                                                  np.random.RandomState(0), None, 500, 500)
    assert utils is not None


def test_bad_input():
    codes, factors, test_codes, test_factors = _data("noise", np.float64)
    with pytest.raises(ValueError, match="num_bins"):
        modularity_explicitness(codes, factors, test_codes, test_factors, num_bins=0)
    with pytest.raises(ValueError, match="test_codes must have"):
        modularity_explicitness(codes, factors, test_codes[:, :3], test_factors)
    const = factors.copy()
    const[:, 0] = 1
    with pytest.raises(ValueError, match=r"factors\[:, 0\]"):
        modularity_explicitness(codes, const, test_codes, test_factors)
    with pytest.raises(ValueError, match="num_train"):
        compat_me.compute_modularity_explicitness(None, None, None)
