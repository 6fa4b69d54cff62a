"""DCI against disentanglement_lib's dci module (the oracle)."""

# The oracle draws from numpy's global RNG (random_state=None); the tests seed it on purpose.
# ruff: noqa: NPY002

import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors

from fastdis.compat.disentanglement_lib import dci as compat_dci
from fastdis.metrics._dci import completeness, dci, disentanglement

SIZES = (3, 5, 8)
N_TRAIN, N_TEST = 400, 200

# ---------------------------------------------------------------------------------------------
# The aggregation: dlib's own hand-built importance matrices
# ---------------------------------------------------------------------------------------------

_DIAG = np.diag(5.0 * np.ones(5))
_MATRICES = {
    "diagonal": (_DIAG, 1.0, 1.0),
    "empty_codes": (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
    "zero": (np.zeros((10, 10)), 0.0, 0.0),
    "redundant_codes": (np.vstack([_DIAG, _DIAG]), 1.0, 1.0 - np.log(2) / np.log(10)),
    "missed_factors": (_DIAG[:2, :], 1.0, 1.0),
    "one_code_two_factors": (np.hstack([_DIAG, _DIAG]), 1.0 - np.log(2) / np.log(10), 1.0),
}


@pytest.mark.parametrize("name", list(_MATRICES))
def test_hand_built_matrices(name):
    matrix, want_d, want_c = _MATRICES[name]
    ref = dlib_module("dci")
    np.testing.assert_allclose(disentanglement(matrix), want_d, atol=1e-7)
    np.testing.assert_allclose(completeness(matrix), want_c, atol=1e-7)
    assert disentanglement(matrix) == pytest.approx(ref.disentanglement(matrix), abs=1e-15)
    assert completeness(matrix) == pytest.approx(ref.completeness(matrix), abs=1e-15)
    np.testing.assert_allclose(
        compat_dci.disentanglement_per_code(matrix), ref.disentanglement_per_code(matrix)
    )
    np.testing.assert_allclose(
        compat_dci.completeness_per_factor(matrix), ref.completeness_per_factor(matrix)
    )


def test_random_matrices_match_dlib():
    ref = dlib_module("dci")
    rs = np.random.RandomState(0)
    for shape in [(10, 5), (3, 7), (2, 4)]:
        matrix = rs.exponential(size=shape) * (rs.uniform(size=shape) > 0.3)
        assert disentanglement(matrix) == pytest.approx(ref.disentanglement(matrix), abs=1e-14)
        assert completeness(matrix) == pytest.approx(ref.completeness(matrix), abs=1e-14)


# ---------------------------------------------------------------------------------------------
# The whole metric on synthetic representations
# ---------------------------------------------------------------------------------------------


def _data(kind, dtype):
    factors = make_factors(N_TRAIN + N_TEST, sizes=SIZES)
    codes = make_codes(factors, kind, n_codes=6, dtype=dtype)
    return codes[:N_TRAIN], factors[:N_TRAIN], codes[N_TRAIN:], factors[N_TRAIN:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dci_matches_dlib(kind, dtype):
    codes, factors, test_codes, test_factors = _data(kind, dtype)
    ref = dlib_module("dci")
    np.random.seed(0)
    want = ref._compute_dci(codes.T, factors.T, test_codes.T, test_factors.T)
    np.random.seed(0)
    got = dci(codes, factors, test_codes, test_factors)
    assert set(got) == set(want)
    assert all(type(value) is float for value in got.values())
    # measured: identical (|delta| <= 3e-15) for all kinds; the bounds are the contract
    for key in ("disentanglement", "completeness"):
        assert got[key] == pytest.approx(want[key], abs=0.02), key
    for key in ("informativeness_train", "informativeness_test"):
        assert got[key] == pytest.approx(want[key], abs=0.01), key


def test_compat_sklearn_backend_is_exactly_dlib(monkeypatch):
    codes, factors, test_codes, test_factors = _data("entangled", np.float32)
    ref = dlib_module("dci")
    args = (codes.T, factors.T, test_codes.T, test_factors.T)
    np.random.seed(1)
    want = ref._compute_dci(*args)
    monkeypatch.setattr(compat_dci, "BACKEND", "sklearn")
    np.random.seed(1)
    got = compat_dci._compute_dci(*args)
    assert got == want


def test_compat_entangled_codes_bit_identical_and_same_rng_state():
    codes, factors, test_codes, test_factors = _data("entangled", np.float64)
    ref = dlib_module("dci")
    args = (codes.T, factors.T, test_codes.T, test_factors.T)
    np.random.seed(2)
    want = ref.compute_importance_gbt(*args)
    state_ref = np.random.get_state()[1].copy()
    np.random.seed(2)
    got = compat_dci.compute_importance_gbt(*args)
    np.testing.assert_allclose(got[0], want[0], atol=1e-12)
    assert got[1:] == want[1:]
    np.testing.assert_array_equal(np.random.get_state()[1], state_ref)


def test_compute_dci_dlib_unit_tests():
    dummy_data = pytest.importorskip("disentanglement_lib.data.ground_truth.dummy_data")
    gt = dummy_data.IdentityObservationsData()
    with pytest.warns(DeprecationWarning):  # the dataset samples with random_integers
        scores = compat_dci.compute_dci(
            gt, lambda x: np.array(x, dtype=np.float64), np.random.RandomState(0), None, 1000,
            1000,
        )
    assert 0.9 <= scores["disentanglement"] <= 1.0
    assert 0.9 <= scores["completeness"] <= 1.0
    with pytest.warns(DeprecationWarning):
        scores = compat_dci.compute_dci(
            gt, lambda x: np.hstack([x, x]).astype(np.float64), np.random.RandomState(0), None,
            1000, 1000,
        )
    assert 0.9 <= scores["disentanglement"] <= 1.0
    assert scores["completeness"] == pytest.approx(1 - np.log(2) / np.log(10), abs=0.1)


def test_random_state_reproducible():
    codes, factors, test_codes, test_factors = _data("noise", np.float64)
    first = dci(codes, factors, test_codes, test_factors, random_state=5)
    second = dci(codes, factors, test_codes, test_factors, random_state=5)
    assert first == second


def test_bad_input():
    codes, factors, test_codes, test_factors = _data("entangled", np.float64)
    with pytest.raises(ValueError, match="same number of samples"):
        dci(codes[:-1], factors, test_codes, test_factors)
    bad = codes.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="codes contains"):
        dci(bad, factors, test_codes, test_factors)
    constant = factors.copy()
    constant[:, 1] = 2
    with pytest.raises(ValueError, match=r"factors\[:, 1\]"):
        dci(codes, constant, test_codes, test_factors)
    with pytest.raises(ValueError, match="test_codes"):
        dci(codes, factors, test_codes[:, :3], test_factors)
    with pytest.raises(ValueError, match="backend"):
        dci(codes, factors, test_codes, test_factors, backend="xgboost")
    with pytest.raises(ValueError, match="num_train"):
        compat_dci.compute_dci(None, None, np.random.RandomState(0))
