"""SAP (array API and compat layer) against disentanglement_lib."""
# ruff: noqa: NPY002  (the reference draws from numpy's global RandomState; tested here)

import warnings

import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors

from fastdis.compat.disentanglement_lib import sap_score as compat_sap
from fastdis.metrics._sap import avg_diff_top_two, sap_score, sap_score_matrix

N_TRAIN, N_TEST = 1500, 700


def _data(kind, dtype):
    factors = make_factors(N_TRAIN + N_TEST)
    codes = make_codes(factors, kind, dtype=dtype)
    return codes[:N_TRAIN], factors[:N_TRAIN], codes[N_TRAIN:], factors[N_TRAIN:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_continuous_matches_dlib(kind, dtype):
    ref_module = dlib_module("sap_score")
    codes, factors, test_codes, test_factors = _data(kind, dtype)
    ref = ref_module.compute_score_matrix(codes.T, factors.T, test_codes.T, test_factors.T, True)
    got = sap_score_matrix(codes, factors, test_codes, test_factors, continuous_factors=True)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    want = ref_module._compute_sap(codes.T, factors.T, test_codes.T, test_factors.T, True)
    assert sap_score(codes, factors, test_codes, test_factors, continuous_factors=True)[
        "SAP_score"] == pytest.approx(want["SAP_score"], abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_discrete_matches_dlib(kind, dtype):
    ref_module = dlib_module("sap_score")
    codes, factors, test_codes, test_factors = _data(kind, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ref_module.compute_score_matrix(codes.T, factors.T, test_codes.T, test_factors.T,
                                              False)
    got = sap_score_matrix(codes, factors, test_codes, test_factors)
    # liblinear's iterates are followed, so accuracies agree exactly on these data
    np.testing.assert_array_equal(got, ref)
    result = sap_score(codes, factors, test_codes, test_factors)
    assert set(result) == {"SAP_score"} and isinstance(result["SAP_score"], float)
    assert result["SAP_score"] == pytest.approx(ref_module.compute_avg_diff_top_two(ref),
                                                abs=1e-15)


def test_compat_matches_dlib_and_global_rng():
    ref_module = dlib_module("sap_score")
    codes, factors, test_codes, test_factors = _data("entangled", np.float32)
    args = (codes.T, factors.T, test_codes.T, test_factors.T)
    np.random.seed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref_module._compute_sap(*args, False)
    after_ref = np.random.randint(1 << 30)
    np.random.seed(5)
    got = compat_sap._compute_sap(*args, False)
    assert np.random.randint(1 << 30) == after_ref  # one global draw per LinearSVC, as sklearn
    assert got == pytest.approx(want, abs=1e-15)
    for cont in (True, False):
        assert compat_sap.compute_avg_diff_top_two(
            compat_sap.compute_score_matrix(*args, cont)) == pytest.approx(
            compat_sap._compute_sap(*args, cont)["SAP_score"])


def test_compat_compute_sap_dlib_unit_test():
    from disentanglement_lib.data.ground_truth import dummy_data

    ground_truth_data = dummy_data.IdentityObservationsData()
    rep = lambda x: np.array(x, dtype=np.float64)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compat_sap.compute_sap(ground_truth_data, rep, np.random.RandomState(0), None,
                                     3000, 3000, continuous_factors=True)
        ref = dlib_module("sap_score").compute_sap(ground_truth_data, rep,
                                                   np.random.RandomState(0), None, 3000, 3000,
                                                   continuous_factors=True)
    assert 0.9 <= got["SAP_score"] <= 1.0
    assert got["SAP_score"] == pytest.approx(ref["SAP_score"], abs=1e-12)


def test_compat_requires_study_arguments():
    with pytest.raises(ValueError, match="num_train"):
        compat_sap.compute_sap(None, None, None)


def test_constant_factor():
    codes, factors, test_codes, test_factors = _data("noise", np.float64)
    factors = factors.copy()
    factors[:, 1] = 2
    with pytest.raises(ValueError, match=r"factors\[:, 1\]"):
        sap_score(codes, factors, test_codes, test_factors)
    with pytest.raises(ValueError, match="constant"):
        sap_score(codes, factors, test_codes, test_factors, continuous_factors=True)
    with pytest.raises(ValueError, match="single value"):
        compat_sap.compute_score_matrix(codes.T, factors.T, test_codes.T, test_factors.T, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = compat_sap.compute_score_matrix(codes.T, factors.T, None, None, True)
    assert np.isnan(matrix[:, 1]).all()  # the reference's nan


def test_avg_diff_top_two_twin():
    rs = np.random.RandomState(0)
    m = rs.uniform(size=(7, 4))
    s = np.sort(m, axis=0)
    assert avg_diff_top_two(m) == pytest.approx(np.mean(s[-1] - s[-2]))
    with pytest.raises(ValueError, match="two rows"):
        avg_diff_top_two(m[:1])


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda a: (a[0][:, 0], a[1], a[2], a[3]), "2-D"),
        (lambda a: (a[0][:-1], a[1], a[2], a[3]), "same number of samples"),
        (lambda a: (a[0], a[1], a[2][:, :-1], a[3]), "test_codes must have"),
        (lambda a: (a[0], -a[1], a[2], a[3]), ">= 0"),
        (lambda a: (np.where(a[0] > 1, np.nan, a[0]), a[1], a[2], a[3]), "non-finite"),
    ],
)
def test_bad_input(bad, match):
    args = bad(_data("noise", np.float64))
    with pytest.raises(ValueError, match=match):
        sap_score(*args)
