"""UDR: dlib's udr_test cases (metrics.md section 2) and a plain twin of the reference loop.

dlib 1.5's wheel does not ship ``evaluation/udr``; the twin below restates its algorithm
(google-research/disentanglement_lib, ``evaluation/udr/metrics/udr.py``) with the reference's
per-pair ``scipy.stats.spearmanr`` loop.
"""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import linear_model, preprocessing

from fastdis.compat.disentanglement_lib import udr as compat_udr
from fastdis.metrics import _udr as udr


def _reference_spearman(vec1, vec2):
    out = np.zeros((vec1.shape[1], vec2.shape[1]))
    for i in range(vec1.shape[1]):
        for j in range(vec2.shape[1]):
            out[i, j] = scipy.stats.spearmanr(vec1[:, i], vec2[:, j], nan_policy="omit")[0]
    return np.abs(out)


def _reference_udr(reps, kl, correlation_matrix, filter_low_kl, kl_filter_threshold):
    """The reference's compute_udr_sklearn after sampling (hard-coded 0.01 zeroing kept)."""
    reps = [r.copy() for r in reps]
    masks = []
    for i in range(len(reps)):
        reps[i] = preprocessing.StandardScaler().fit(reps[i]).transform(reps[i])
        reps[i] = reps[i] * np.greater(kl[i], 0.01)
        masks.append(kl[i] > kl_filter_threshold)
    m = len(reps)
    dis = np.zeros((m, m, 1))
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            if correlation_matrix == "lasso":
                model = linear_model.Lasso(alpha=0.1).fit(reps[i], reps[j])
                corr = np.abs(model.coef_).T
            else:
                with np.errstate(all="ignore"):
                    corr = _reference_spearman(reps[i], reps[j])
            if filter_low_kl:
                corr = corr[masks[i], ...][..., masks[j]]
            with np.errstate(all="ignore"):
                sx = np.nanmean(np.nan_to_num(corr.max(0) ** 2 / corr.sum(0), 0))
                sy = np.nanmean(np.nan_to_num(corr.max(1) ** 2 / corr.sum(1), 0))
            dis[i, j] = (sx + sy) / 2
    return [np.median(np.delete(dis[:, i], i)) for i in range(m)], dis


def test_relative_strength_reference_cases():
    f = udr.relative_strength_disentanglement
    assert f(np.eye(3)) == 1.0
    assert 0.6 <= f(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])) <= 0.7
    assert 0.3 <= f(np.ones((3, 3))) <= 0.4
    assert f(np.zeros((3, 3))) == 0.0
    assert f(np.zeros((0, 3))) == 0.0  # everything filtered: 0 (the reference raises)


def test_spearman_reference_cases():
    rs = np.random.RandomState(0)
    vec1 = rs.random_sample((1000, 3))
    assert np.allclose(udr.spearman_correlation_conv(vec1, vec1.copy()), np.eye(3), atol=0.1)
    vec1 = rs.random_sample((1000, 3))
    vec2 = vec1.copy()
    vec2[:, 1] = vec2[:, 0]
    expected = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.allclose(udr.spearman_correlation_conv(vec1, vec2), expected, atol=0.1)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 60), st.integers(1, 5), st.booleans())
def test_spearman_matches_scipy_loop(seed, n, d, ties):
    rs = np.random.RandomState(seed)
    vec1 = rs.normal(size=(n, d))
    vec2 = rs.normal(size=(n, d))
    if ties:
        vec1 = np.round(vec1)
        vec2[:, 0] = 0.0  # constant column: NaN as scipy
    with np.errstate(all="ignore"):
        expected = _reference_spearman(vec1, vec2)
    np.testing.assert_allclose(udr.spearman_correlation_conv(vec1, vec2), expected,
                               atol=1e-12, equal_nan=True)


def test_lasso_reference_cases():
    rs = np.random.RandomState(0)
    vec1 = rs.random_sample((1000, 3)) * 10.0
    assert np.allclose(udr.lasso_correlation_matrix(vec1, vec1.copy(), random_state=rs),
                       np.eye(3), atol=0.2)
    vec1 = rs.random_sample((1000, 3)) * 10.0
    vec2 = vec1.copy()
    vec2[:, 1] = vec2[:, 0]
    expected = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.allclose(udr.lasso_correlation_matrix(vec1, vec2, random_state=rs), expected,
                       atol=0.2)


class _Pixels:
    """dummy_data.DummyData's observation sampling: uniform (n, 64, 64, 1) noise."""

    num_factors = 10

    def sample_observations(self, num, random_state):
        return random_state.random_sample((num, 64, 64, 1))


def _reference_rep_fns(batch_size=10, num_factors=10, seed=0):
    rs = np.random.RandomState(seed)
    permutation = rs.permutation(num_factors)
    sign_inverse = rs.choice(num_factors, num_factors // 2)

    def rep_fn1(data):
        return np.reshape(data, (batch_size, -1))[:, :num_factors], np.ones(num_factors)

    def rep_fn2(data):
        rep = np.reshape(data, (batch_size, -1))[:, :num_factors][:, permutation]
        rep[:, sign_inverse] = -1.0 * rep[:, sign_inverse]
        return rep, np.ones(num_factors)

    return rep_fn1, rep_fn2


@pytest.mark.parametrize("correlation", ["spearman", "lasso"])
def test_reference_metric_cases(correlation):
    scores = compat_udr.compute_udr_sklearn(
        _Pixels(), list(_reference_rep_fns()), np.random.RandomState(0), 10, 1000,
        correlation_matrix=correlation)
    assert all(0.8 <= s <= 1.0 for s in scores["model_scores"])
    assert set(scores) == {"raw_correlations", "pairwise_disentanglement_scores", "model_scores"}
    assert np.shape(scores["raw_correlations"]) == (2, 2, 10, 10)
    assert np.shape(scores["pairwise_disentanglement_scores"]) == (2, 2, 1)


def test_reference_kl_case():
    noise = np.random.RandomState(5)

    def rep_fn(data):
        rep = np.concatenate([np.reshape(data, (10, -1))[:, :1],
                              noise.random_sample((10, 9))], axis=1)
        kl = np.zeros(10)
        kl[0] = 1.0
        return rep, kl

    scores = compat_udr.compute_udr_sklearn(
        _Pixels(), [rep_fn, rep_fn], np.random.RandomState(0), 10, 1000, filter_low_kl=False)
    assert all(0.0 <= s <= 0.2 for s in scores["model_scores"])
    scores = compat_udr.compute_udr_sklearn(
        _Pixels(), [rep_fn, rep_fn], np.random.RandomState(0), 10, 1000, filter_low_kl=True)
    assert all(0.8 <= s <= 1.0 for s in scores["model_scores"])
    with pytest.raises(ValueError, match="multiple of batch_size"):
        compat_udr.compute_udr_sklearn(_Pixels(), [rep_fn], np.random.RandomState(0), 10, 995)


@pytest.mark.parametrize("correlation", ["spearman", "lasso"])
@pytest.mark.parametrize("threshold", [0.01, 0.3])
def test_udr_matches_reference_twin(correlation, threshold):
    rs = np.random.RandomState(1)
    base = rs.normal(size=(300, 5))
    reps = [base @ rs.normal(size=(5, 5)) + 0.3 * rs.normal(size=(300, 5)) for _ in range(3)]
    kl = np.abs(rs.normal(size=(3, 5)))
    kl[0, 1] = 0.005  # zeroed by both
    kl[1, 2] = 0.2  # below 0.3: filtered; zeroed only by fastdis' array-level API
    expected, pairwise = _reference_udr(reps, kl, correlation, True, threshold)
    out = compat_udr._udr.udr_from_representations(
        [compat_udr._udr.standardize_and_mask(r, kl[m], 0.01) for m, r in enumerate(reps)],
        [kl[m] > threshold for m in range(3)], correlation_matrix=correlation)
    np.testing.assert_allclose(out["model_scores"], expected, rtol=1e-10)
    np.testing.assert_allclose(out["pairwise_disentanglement_scores"], pairwise, rtol=1e-10)
    fixed = udr.udr(reps, kl, correlation_matrix=correlation, kl_filter_threshold=threshold)
    if threshold == 0.01:  # the hard-coded 0.01 and the threshold agree
        np.testing.assert_allclose(fixed["model_scores"], expected, rtol=1e-10)
    assert all(type(s) is float for s in fixed["model_scores"])


def test_udr_bad_inputs():
    reps = [np.zeros((10, 3)), np.zeros((10, 3))]
    with pytest.raises(ValueError, match="correlation_matrix"):
        udr.udr(reps, np.ones((2, 3)), correlation_matrix="pearson")
    with pytest.raises(ValueError, match="at least 2 models"):
        udr.udr(reps[:1], np.ones((1, 3)))
    with pytest.raises(ValueError, match="same shape"):
        udr.udr([np.zeros((10, 3)), np.zeros((10, 4))], np.ones((2, 3)))
    with pytest.raises(ValueError, match="kl_per_model must have shape"):
        udr.udr(reps, np.ones((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        udr.udr([np.full((10, 3), np.nan), np.zeros((10, 3))], np.ones((2, 3)))
