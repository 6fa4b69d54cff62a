"""Fairness vs disentanglement_lib: helpers (exact), the full metric (same draws, exact)."""

import gin
import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_downstream import SIZES, ToyData, deterministic_predictor, identity

from fastdis.compat.disentanglement_lib import fairness as compat_fairness
from fastdis.compat.disentanglement_lib import utils as compat_utils
from fastdis.metrics import _fairness as fairness


@pytest.fixture
def configured():
    dlib_module("utils")  # registers the gin configurables
    gin.clear_config()
    gin.bind_parameter("predictor.predictor_fn", deterministic_predictor)
    compat_utils.configure(predictor_fn=deterministic_predictor)
    yield
    gin.clear_config()
    compat_utils._config["predictor_fn"] = None


def test_inter_group_fairness_reference_case():
    counts = np.array([[0, 100], [100, 100]])
    for fn in (fairness.inter_group_fairness, compat_fairness.inter_group_fairness):
        mean, maximum = fn(counts)
        assert mean == pytest.approx(2.0 / 9.0, abs=1e-7)
        assert maximum == pytest.approx(1.0 / 3.0, abs=1e-7)
    # float64 in the array-level API
    assert fairness.inter_group_fairness(counts)[0] == pytest.approx(2.0 / 9.0, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
              elements=st.integers(0, 50)))
def test_inter_group_fairness_matches_reference(counts):
    counts[0, :] += 1  # every sensitive group non-empty
    ref = dlib_module("fairness").inter_group_fairness(counts)
    compat = compat_fairness.inter_group_fairness(counts)
    assert compat == ref  # float32 kept bit for bit
    mean, maximum = fairness.inter_group_fairness(counts)
    np.testing.assert_allclose([mean, maximum], np.array(ref, dtype=np.float64), atol=1e-6)


def test_compute_scores_dict_reference_case():
    scores = np.array([[0.0, 2.0, 4.0], [4.0, 0.0, 8.0], [2.0, 10.0, 0.0]])
    expected = {
        "test:pred0:sens1": 2.0, "test:pred0:sens2": 4.0, "test:pred1:sens0": 4.0,
        "test:pred1:sens2": 8.0, "test:pred2:sens0": 2.0, "test:pred2:sens1": 10.0,
        "test:pred0:mean_sens": 3.0, "test:pred0:max_sens": 4.0,
        "test:pred1:mean_sens": 6.0, "test:pred1:max_sens": 8.0,
        "test:pred2:mean_sens": 6.0, "test:pred2:max_sens": 10.0,
        "test:sens0:mean_pred": 3.0, "test:sens0:max_pred": 4.0,
        "test:sens1:mean_pred": 6.0, "test:sens1:max_pred": 10.0,
        "test:sens2:mean_pred": 6.0, "test:sens2:max_pred": 8.0,
        "test:mean_sens:mean_pred": 5.0, "test:mean_sens:max_pred": 22.0 / 3.0,
        "test:max_sens:mean_pred": 6.0, "test:max_sens:max_pred": 10.0,
        "test:mean_pred:mean_sens": 5.0, "test:mean_pred:max_sens": 22.0 / 3.0,
        "test:max_pred:mean_sens": 6.0, "test:max_pred:max_sens": 10.0,
    }
    for fn in (fairness.compute_scores_dict, compat_fairness.compute_scores_dict):
        result = fn(scores, "test")
        assert result == expected
        assert list(result) == list(dlib_module("fairness").compute_scores_dict(scores, "test"))


def test_compute_scores_dict_random_matches_reference():
    metric = np.random.RandomState(0).random_sample((5, 5))
    ref = dlib_module("fairness").compute_scores_dict(metric, "p")
    out = fairness.compute_scores_dict(metric, "p")
    assert list(out) == list(ref) and len(out) == 5 * 4 + 4 * 5 + 8
    assert out == {k: float(v) for k, v in ref.items()}


def test_compat_fairness_matches_dlib(configured):
    data = ToyData()
    ref = dlib_module("fairness").compute_fairness(
        data, identity, np.random.RandomState(0), None, 150, 30, 16
    )
    out = compat_fairness.compute_fairness(
        data, identity, np.random.RandomState(0), None, 150, 30, 16
    )
    assert list(out) == list(ref)
    for key in ref:
        assert out[key] == float(ref[key]), key


def test_array_level_fairness_layouts_agree():
    factors = make_factors(200, sizes=SIZES)
    codes = make_codes(factors, "entangled", n_codes=5)
    rs = np.random.RandomState(3)
    shared = [rs.normal(size=(c, 25, 5)) for c in SIZES]
    per_pair = {(i, j): shared[j] for i in range(3) for j in range(3) if i != j}
    a = fairness.fairness(codes, factors, shared, predictor=deterministic_predictor)
    b = fairness.fairness(codes, factors, per_pair, predictor=deterministic_predictor)
    assert a == b
    assert len(a) == 2 * (3 * 2 + 4 * 3 + 8)
    assert all(0.0 <= v <= 1.0 for v in a.values())
    counts = fairness.fairness_counts(codes, factors, shared, predictor=deterministic_predictor)
    assert counts[(0, 1)].shape == (3, 6) and counts[(0, 1)].sum() == 6 * 25


def test_fairness_bad_inputs():
    factors = make_factors(60, sizes=SIZES)
    codes = make_codes(factors, "noise", n_codes=4)
    good = [np.zeros((c, 5, 4)) for c in SIZES]
    with pytest.raises(ValueError, match="no entry for the"):
        fairness.fairness(codes, factors, {(0, 1): good[1]})
    with pytest.raises(ValueError, match="one array per sensitive factor"):
        fairness.fairness(codes, factors, good[:2])
    with pytest.raises(ValueError, match=r"must have 4 codes"):
        fairness.fairness(codes, factors, [np.zeros((c, 5, 3)) for c in SIZES])
    with pytest.raises(ValueError, match="shape"):
        fairness.fairness(codes, factors, [np.zeros((5, 4)) for _ in SIZES])
    with pytest.raises(ValueError, match="empty sensitive group"):
        fairness.inter_group_fairness(np.array([[1, 0], [2, 0]]))
    with pytest.raises(ValueError, match="square"):
        fairness.compute_scores_dict(np.zeros((2, 3)), "x")
