"""The boosted-tree engine against scikit-learn's GradientBoostingClassifier (the oracle)."""

# The oracle draws from numpy's global RNG (random_state=None); the tests seed it on purpose.
# ruff: noqa: NPY002

import numba
import numpy as np
import pytest
from exp_helpers import EXP_ROUTES
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import GradientBoostingClassifier as SklearnGBC

from fastdis.metrics import _gbt
from fastdis.metrics._gbt import GradientBoostingClassifier, fit_gbt

# ---------------------------------------------------------------------------------------------
# Plain-numpy twins of the kernels
# ---------------------------------------------------------------------------------------------


def best_split_twin(values, gradient_sorted):
    """sklearn's best split of one sorted feature, by brute force over candidate positions."""
    n = values.size
    threshold32 = np.float32(1e-7)
    prefix = np.cumsum(gradient_sorted)
    total = prefix[-1]
    best = (-np.inf, n, 0.0)
    for p in range(1, n):
        if values[p] <= values[p - 1] + threshold32:
            continue
        sl = prefix[p - 1]
        sr = total - sl
        proxy = sl * sl / p + sr * sr / (n - p)
        if proxy > best[0] * (1 + 1e-12) or best[1] == n:
            best = (proxy, p, values[p - 1] / 2.0 + values[p] / 2.0)
    return best


def scan_twin(values, samples, gradient, start, end, sum_total, inverse):
    """The candidate scan in plain Python: sklearn's running left sum (forward, or the total
    minus the tail when that is shorter), scored with reciprocal counts at every split position;
    positions within 1e-12 of the running maximum are candidates. Returns (n_cand, top,
    positions, left sums)."""
    threshold32 = np.float32(1e-7)
    sum_left, pos, top, cut = 0.0, start, -np.inf, -np.inf
    positions, sums = [], []
    for q in range(start, end - 1):
        sum_left += gradient[samples[q]]
        p = q + 1
        if values[p] <= values[q] + threshold32:
            continue
        if p - pos > end - p:
            sum_left = sum_total
            for r in range(end - 1, p - 1, -1):
                sum_left -= gradient[samples[r]]
        pos = p
        sum_right = sum_total - sum_left
        approx = sum_left * sum_left * inverse[p - start] + sum_right * sum_right * inverse[end - p]
        if approx >= cut:
            if approx > top:
                top, cut = approx, approx - approx * 1e-12
            positions.append(p)
            sums.append(sum_left)
    return len(positions), top, positions, sums


def pairwise_sum_twin(a):
    return np.add.reduce(np.ascontiguousarray(a, dtype=np.float64))


def inverse_counts(n):
    """1 / k for k = 0..n (inf at 0), the engine's table of reciprocal sample counts."""
    inverse = np.empty(n + 1)
    inverse[0] = np.inf
    inverse[1:] = 1.0 / np.arange(1, n + 1)
    return inverse


def rand_int_twin(low, high, state):
    s = state or 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    return low + (s % 2**31) % (high - low), s


def _feature_segment(rs, n, n_distinct):
    """A feature sorted on a random node [start, end) of n samples, with its gradient."""
    values = np.sort(rs.randint(n_distinct, size=n).astype(np.float32) / 7)
    start = rs.randint(0, n - 1)
    end = rs.randint(start + 2, n + 1)
    return values, rs.permutation(n).astype(np.int32), rs.normal(size=n), start, end


# a feature of n samples with n_distinct values at most, and the seed of its draw
SORTED_FEATURES = given(
    n=st.integers(2, 300), n_distinct=st.integers(1, 400), seed=st.integers(0, 2**31 - 1)
)


@settings(max_examples=60, deadline=None)
@SORTED_FEATURES
def test_best_split_matches_twin(n, n_distinct, seed):
    values, samples, gradient, _, _ = _feature_segment(np.random.RandomState(seed), n, n_distinct)
    inverse = inverse_counts(n)
    proxy, pos, threshold = _gbt._best_split_of_feature(
        values, samples, gradient, 0, n, float(np.sum(gradient[samples])), float(n), inverse,
        np.empty(n), np.empty(n, dtype=np.int64),
    )
    twin = best_split_twin(values, gradient[samples])
    assert pos == twin[1]
    if pos < n:
        np.testing.assert_allclose(proxy, twin[0], rtol=1e-9)
        assert threshold == twin[2]
    else:
        assert proxy == -np.inf


@settings(max_examples=60, deadline=None)
@SORTED_FEATURES
def test_candidate_scans_match_twin(n, n_distinct, seed):
    """Every compiled scan (one feature, two features in one loop, K trees at the root) keeps
    exactly the twin's candidates: the one scan rule, wherever it is inlined."""
    rs = np.random.RandomState(seed)
    values, samples, gradient, start, end = _feature_segment(rs, n, n_distinct)
    values_b, samples_b, _, _, _ = _feature_segment(rs, n, n_distinct)
    inverse = inverse_counts(n)
    total = float(np.sum(gradient[samples[start:end]]))
    pos, sums = np.empty((2, n), dtype=np.int64), np.empty((2, n))

    def compiled(k, n_cand, top):
        return n_cand, top, list(pos[k, :n_cand]), list(sums[k, :n_cand])

    want = scan_twin(values, samples, gradient, start, end, total, inverse)
    want_b = scan_twin(values_b, samples_b, gradient, start, end, total, inverse)
    got = _gbt._scan_feature(values, samples, gradient, start, end, total, inverse, pos[0],
                             sums[0])
    assert compiled(0, *got) == want
    n_a, top_a, n_b, top_b = _gbt._scan_two_features(
        values, samples, values_b, samples_b, gradient, start, end, total, inverse, pos[0],
        sums[0], pos[1], sums[1],
    )
    assert compiled(0, n_a, top_a) == want
    assert compiled(1, n_b, top_b) == want_b

    grad_t = np.ascontiguousarray(np.stack([gradient, -2 * gradient, gradient**2], axis=1))
    totals = grad_t.sum(axis=0)
    top, n_cand = np.empty(3), np.empty(3, dtype=np.int64)
    root_pos, root_sums = np.empty((3, n), dtype=np.int64), np.empty((3, n))
    _gbt._root_scan(values, samples, grad_t, 0, totals, inverse, np.empty(3), np.empty(3), top,
                    np.empty(3), n_cand, root_pos, root_sums)
    for k in range(3):
        want_k = scan_twin(values, samples, grad_t[:, k], 0, n, totals[k], inverse)
        got_k = (n_cand[k], top[k], list(root_pos[k, : n_cand[k]]),
                 list(root_sums[k, : n_cand[k]]))
        assert got_k == want_k


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 400),
    n_distinct=st.integers(1, 500),
    seed=st.integers(0, 2**31 - 1),
)
def test_root_splits_match_single_tree_scans(n, n_distinct, seed):
    """The stage-wide root scan (all trees of all models at once) is the per-tree scan."""
    rs = np.random.RandomState(seed)
    codes_t = (rs.randint(n_distinct, size=(4, n)).astype(np.float32) / 7)
    codes_t[2] = 1.5  # a constant feature
    src_idx = np.argsort(codes_t, axis=1, kind="stable").astype(np.int32)
    src_val = np.ascontiguousarray(np.take_along_axis(codes_t, src_idx, axis=1))
    n_cols = np.array([1, 5, 3])  # a binary model and two multiclass ones
    first_col = np.array([0, 1, 6])
    grad_t = rs.normal(size=(n, 9))
    inverse = inverse_counts(n)
    proxy = np.empty((9, 4))
    pos = np.empty((9, 4), dtype=np.int64)
    threshold = np.empty((9, 4))
    n_threads = numba.config.NUMBA_NUM_THREADS  # scratch rows are indexed by thread id
    _gbt._root_splits(
        # no feature marked tied for a model: every one gets the stage-wide scan tested here
        _gbt._Presorted(codes_t, src_idx, src_val, inverse, np.zeros((3, 4), np.uint8), None),
        grad_t, first_col, n_cols,
        np.empty((n_threads, 5, n), dtype=np.int64), np.empty((n_threads, 5, n)),
        _gbt._RootSplits(proxy, pos, threshold),
    )
    for c in range(9):
        gradient = np.ascontiguousarray(grad_t[:, c])
        total = 0.0
        for g in gradient:  # sklearn's init(): the samples in index order
            total += g
        for f in range(4):
            want = _gbt._best_split_of_feature(
                src_val[f], src_idx[f], gradient, 0, n, total, float(n), inverse, np.empty(n),
                np.empty(n, dtype=np.int64),
            )
            assert (proxy[c, f], pos[c, f], threshold[c, f]) == want


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**31 - 1))
def test_pairwise_sum_is_numpys(n, seed):
    a = np.random.RandomState(seed).standard_cauchy(n)
    assert _gbt._pairwise_sum(a, 0, n) == pairwise_sum_twin(a)


@settings(max_examples=40, deadline=None)
@given(state=st.integers(0, 2**32 - 1), low=st.integers(0, 5), width=st.integers(1, 20))
def test_rand_int_is_sklearns_xorshift(state, low, width):
    buf = np.array([state], dtype=np.int64)
    got = _gbt._rand_int(low, low + width, buf)
    want, new_state = rand_int_twin(low, low + width, state)
    assert got == want and buf[0] == new_state


# ---------------------------------------------------------------------------------------------
# sklearn's sort of tied values
# ---------------------------------------------------------------------------------------------


def _sklearn_sort(values, ids):
    from sklearn.utils._sorting import _py_simultaneous_sort

    values, ids = values.copy(), ids.astype(np.intp)
    _py_simultaneous_sort(values, ids, values.size, use_three_way_partition=True)
    return values, ids


def _sklearn_sort_depth(values):
    """How many partition levels sklearn's 3-way introsort runs on ``values`` before a
    segment's depth limit (2 floor(log2 n)) or its insertion sort: a plain transcription of its
    median-of-three pivot and its partition pass."""
    deepest, stack = 0, [(values.copy(), 0)]
    while stack:
        segment, depth = stack.pop()
        if segment.size <= 15:
            continue
        deepest = max(deepest, depth + 1)
        pivot = np.median([segment[0], segment[segment.size // 2], segment[-1]])
        i = less = 0
        greater = segment.size
        while i < greater:
            if segment[i] < pivot:
                segment[[i, less]] = segment[[less, i]]
                i += 1
                less += 1
            elif segment[i] > pivot:
                greater -= 1
                segment[[i, greater]] = segment[[greater, i]]
            else:
                i += 1
        stack += [(segment[:less], depth + 1), (segment[greater:], depth + 1)]
    return deepest


#: Tied values on which sklearn's introsort reaches its depth limit (10 levels for 48 values)
#: and heapsorts a segment, found by a hill climb on :func:`_sklearn_sort_depth` (swapping
#: values of a random draw, keeping swaps that do not lower the depth).
PAST_THE_DEPTH_LIMIT = [1, 0, 15, 9, 7, 6, 4, 15, 11, 8, 7, 2, 3, 0, 8, 3, 0, 4, 5, 3, 3, 1, 3,
                        8, 1, 12, 13, 14, 3, 8, 6, 5, 3, 7, 9, 3, 8, 5, 5, 3, 2, 7, 9, 10, 12, 13,
                        14, 15]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 700), n_distinct=st.integers(1, 60), seed=st.integers(0, 2**31 - 1))
def test_introsort_is_sklearns_sort(n, n_distinct, seed):
    """Sorting every position is sklearn's sort bit for bit, equal values' order included;
    restricted to the runs of equal values, the runs come out in the same order."""
    rs = np.random.RandomState(seed)
    values = rs.randint(n_distinct, size=n).astype(np.float32)
    ids = rs.permutation(n).astype(np.int32)
    want_values, want_ids = _sklearn_sort(values, ids)
    got_values, got_ids = values.copy(), ids.copy()
    every = np.arange(n + 1, dtype=np.int64)
    _gbt._introsort(got_values, got_ids, 0, n, every[:-1], every[1:], n)
    np.testing.assert_array_equal(got_values, want_values)
    np.testing.assert_array_equal(got_ids, want_ids)
    starts = np.flatnonzero(np.r_[True, want_values[1:] != want_values[:-1]])
    stops = np.r_[starts[1:], n]
    runs = stops - starts > 1
    run_lo, run_hi = starts[runs].astype(np.int64), stops[runs].astype(np.int64)
    got_values, got_ids = values.copy(), ids.copy()
    _gbt._introsort(got_values, got_ids, 0, n, run_lo, run_hi, run_lo.size)
    for lo, hi in zip(run_lo, run_hi, strict=True):
        np.testing.assert_array_equal(got_ids[lo:hi], want_ids[lo:hi])


def test_introsort_is_sklearns_sort_past_its_depth_limit():
    values = np.array(PAST_THE_DEPTH_LIMIT, dtype=np.float32)
    assert _sklearn_sort_depth(values) > 2 * int(np.log2(48))  # the heapsort fallback runs
    ids = np.arange(48, dtype=np.int32)[::-1].copy()
    want_values, want_ids = _sklearn_sort(values, ids)
    every = np.arange(49, dtype=np.int64)
    _gbt._introsort(values, ids, 0, 48, every[:-1], every[1:], 48)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(ids, want_ids)


def test_tied_features_flag_ties_between_samples_that_are_not_twins():
    codes = np.array([[0.0, 1.0, 5.0], [0.0, 1.0, 5.0], [0.0, 2.0, -0.0], [3.0, 2.0, 0.0]],
                     dtype=np.float32)
    same_labels = np.zeros((1, 4))
    # rows 0 and 1 are twins (same codes and label); row 2 ties row 0 on feature 0, row 3 ties
    # row 2 on features 1 and 2 (-0.0 == 0.0)
    data = _gbt._presort(codes, same_labels)
    np.testing.assert_array_equal(data.tied, [[1, 1, 1]])
    assert data.twin[0, 0] == data.twin[0, 1] != data.twin[0, 2]
    twins_only = _gbt._presort(codes[:2], same_labels[:, :2])
    np.testing.assert_array_equal(twins_only.tied, [[0, 0, 0]])
    other_labels = _gbt._presort(codes[:2], np.array([[0.0, 1.0]]))  # same codes, other labels
    np.testing.assert_array_equal(other_labels.tied, [[1, 1, 1]])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 120), n_distinct=st.integers(1, 5), n_classes=st.integers(2, 4),
       seed=st.integers(0, 2**31 - 1))
def test_matches_sklearn_on_heavily_tied_codes(n, n_distinct, n_classes, seed):
    """Codes with few values (every split has ties), a constant code and repeated rows: the
    trees, importances and raw predictions are sklearn's bit for bit."""
    rs = np.random.RandomState(seed)
    X = rs.randint(n_distinct, size=(n, 4)).astype(np.float64) / 3
    X[:, 3] = 0.5
    y = rs.randint(n_classes, size=n)
    if np.unique(y).size < 2:
        y[0] = 1 - y[1]
    ref, ours, same_rng = _fit_both(X, y, n_estimators=8, seed=seed % 1000)
    assert same_rng
    _assert_same_model(ref, ours, X)


# ---------------------------------------------------------------------------------------------
# Whole model against scikit-learn
# ---------------------------------------------------------------------------------------------


def _problem(n, n_classes, kind, seed=0):
    rs = np.random.RandomState(seed)
    if kind == "continuous":
        X = rs.normal(size=(n, 5))
        score = X[:, 0] + 0.5 * X[:, 1] + rs.normal(scale=0.5, size=n)
        y = np.floor((score + 3) * n_classes / 6).clip(0, n_classes - 1).astype(int)
    else:
        X = rs.randint(0, 6, size=(n, 5)).astype(float)
        y = (X[:, 0] + X[:, 1] + rs.randint(0, 2, size=n)).astype(int) % n_classes
    return X, y


def _fit_both(X, y, n_estimators=30, seed=0, **kwargs):
    np.random.seed(seed)
    ref = SklearnGBC(n_estimators=n_estimators, **kwargs).fit(X, y)
    state_ref = np.random.get_state()[1].copy()
    np.random.seed(seed)
    ours = GradientBoostingClassifier(n_estimators=n_estimators, **kwargs).fit(X, y)
    state_ours = np.random.get_state()[1].copy()
    return ref, ours, np.array_equal(state_ref, state_ours)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_matches_sklearn_on_continuous_codes(n_classes):
    X, y = _problem(400, n_classes, "continuous")
    X_test, _ = _problem(200, n_classes, "continuous", seed=1)
    ref, ours, same_rng = _fit_both(X, y)
    assert same_rng  # one seed drawn per tree, as sklearn does
    np.testing.assert_allclose(ours.feature_importances_, ref.feature_importances_, atol=1e-12)
    np.testing.assert_allclose(
        ours.decision_function(X_test), ref.decision_function(X_test), rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(ours.predict(X_test), ref.predict(X_test))
    np.testing.assert_allclose(ours.predict_proba(X_test), ref.predict_proba(X_test), atol=1e-12)


def _assert_same_trees(ref, ours):
    """Every tree of ``ours`` is sklearn's ``ref`` tree: nodes, thresholds, leaf values."""
    models = ours._models
    stages, n_cols = ref.estimators_.shape
    assert models.node_count.size == stages * n_cols
    for t in range(stages * n_cols):
        tree = ref.estimators_[t // n_cols, t % n_cols].tree_
        n = tree.node_count
        assert models.node_count[t] == n, t
        leaf = tree.children_left[:n] == -1
        np.testing.assert_array_equal(np.where(leaf, -2, models.feature[t, :n]), tree.feature[:n])
        np.testing.assert_array_equal(models.threshold[t, :n][~leaf], tree.threshold[:n][~leaf])
        np.testing.assert_array_equal(models.value[t, :n][leaf], tree.value[:n, 0, 0][leaf])


def _assert_same_model(ref, ours, X_test):
    _assert_same_trees(ref, ours)
    np.testing.assert_array_equal(ours.feature_importances_, ref.feature_importances_)
    np.testing.assert_array_equal(ours.decision_function(X_test), ref.decision_function(X_test))


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_matches_sklearn_on_repeated_values(n_classes):
    # equal values on samples that are not twins: sklearn sums them in its introsort's order
    X, y = _problem(400, n_classes, "discrete")
    ref, ours, same_rng = _fit_both(X, y)
    assert same_rng
    _assert_same_model(ref, ours, _problem(100, n_classes, "discrete", seed=1)[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_with_constant_codes_and_duplicated_rows(seed):
    """A trained encoder's codes: collapsed (constant) latents, repeated images (twins: the same
    row and label) and the same row under other labels, at the sizes where sklearn's sort
    switches from insertion sort to introsort (15) and deeper."""
    rs = np.random.RandomState(seed)
    n = 300
    X = rs.normal(size=(n, 6)).astype(np.float32)
    X[:, 4] = 0.0  # collapsed latents
    X[:, 5] = 0.37
    X[:, 2] = np.round(X[:, 2], 1)  # a coarse code: many ties
    X[150:200] = X[rs.randint(0, 150, size=50)]  # repeated observations
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5) + rs.randint(0, 2, size=n)
    ref, ours, same_rng = _fit_both(X, y, n_estimators=40, seed=seed)
    assert same_rng
    _assert_same_model(ref, ours, rs.normal(size=(50, 6)))


def test_depth_and_learning_rate_options():
    X, y = _problem(300, 3, "continuous")
    ref, ours, _ = _fit_both(X, y, n_estimators=10, max_depth=2, learning_rate=0.3)
    np.testing.assert_allclose(ours.feature_importances_, ref.feature_importances_, atol=1e-12)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-12)


def test_constant_feature_and_pure_classes():
    X, y = _problem(200, 3, "continuous")
    X[:, 2] = 0.25  # constant: never split on, importance 0
    ref, ours, _ = _fit_both(X, y)
    assert ours.feature_importances_[2] == 0.0
    np.testing.assert_allclose(ours.feature_importances_, ref.feature_importances_, atol=1e-12)


def test_arbitrary_labels_and_estimator_api():
    X, y = _problem(300, 3, "continuous")
    labels = np.array([-5, 7, 100])[y]
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, [-5, 7, 100])
    assert set(np.unique(model.predict(X))) <= {-5, 7, 100}
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    assert model.score(X, labels) > 0.5
    assert model.feature_importances_.sum() == pytest.approx(1.0)


def test_fit_gbt_many_models_equals_separate_fits():
    X, y = _problem(300, 3, "continuous")
    Y = np.stack([y, (y + (X[:, 3] > 0)) % 2, np.minimum(y * 2, 4)], axis=1)
    rs = np.random.RandomState(3)
    together = fit_gbt(X, Y, n_estimators=15, random_state=rs)
    rs = np.random.RandomState(3)
    for m in range(Y.shape[1]):
        alone = fit_gbt(X, Y[:, m], n_estimators=15, random_state=rs)
        np.testing.assert_array_equal(together.feature_importances(m), alone.feature_importances(0))


def test_sklearn_backend_is_sklearn():
    X, y = _problem(200, 3, "continuous")
    np.random.seed(0)
    ref = SklearnGBC(n_estimators=10).fit(X, y)
    np.random.seed(0)
    ours = GradientBoostingClassifier(backend="sklearn", n_estimators=10).fit(X, y)
    np.testing.assert_array_equal(ours.feature_importances_, ref.feature_importances_)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_lightgbm_backend_approximates():
    pytest.importorskip("lightgbm")
    X, y = _problem(400, 3, "continuous")
    ref = SklearnGBC(n_estimators=30, random_state=0).fit(X, y)
    ours = GradientBoostingClassifier(backend="lightgbm", n_estimators=30).fit(X, y)
    assert ours.feature_importances_.sum() == pytest.approx(1.0)
    assert np.argmax(ours.feature_importances_) == np.argmax(ref.feature_importances_)
    assert np.mean(ours.predict(X) == ref.predict(X)) > 0.8
    np.testing.assert_allclose(ours.predict_proba(X).sum(axis=1), 1.0)


def test_lightgbm_backend_fits_saturated_leaves():
    """LightGBM with min_sum_hessian_in_leaf=0 failed its "left_count > 0" check here."""
    pytest.importorskip("lightgbm")
    from fastdis.demo import SyntheticFactors, representation

    factors, observations = SyntheticFactors().sample(2000, np.random.RandomState(0))
    codes = representation("disentangled")(observations)
    model = GradientBoostingClassifier(backend="lightgbm").fit(codes, factors[:, 1])
    assert model.score(codes, factors[:, 1]) > 0.9
    assert np.argmax(model.feature_importances_) == 1


def test_bad_input():
    X, y = _problem(50, 2, "continuous")
    with pytest.raises(ValueError, match="single class"):
        GradientBoostingClassifier().fit(X, np.zeros(50))
    with pytest.raises(ValueError, match="backend"):
        GradientBoostingClassifier(backend="xgboost")
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GradientBoostingClassifier().fit(X, y)


def test_importance_matrix_checks_test_columns():
    """The shared train/test validator names the argument that lacks columns."""
    X, y = _problem(60, 3, "continuous")
    factors = np.stack([y, y % 2], axis=1)
    with pytest.raises(ValueError, match="test_codes must have as many columns as codes"):
        _gbt.gbt_importance_matrix(X, factors, X[:, :4], factors)
    with pytest.raises(ValueError, match="test_factors must have as many columns as factors"):
        _gbt.gbt_importance_matrix(X, factors, X, factors[:, :1])


def test_fit_gbt_list_of_random_states_equals_separate_estimators():
    rs = np.random.RandomState(3)
    codes = np.round(rs.normal(size=(300, 4)), 1).astype(np.float32)  # ties: seeds matter
    labels = np.stack([rs.randint(3, size=300), rs.randint(2, size=300)], axis=1)
    together = fit_gbt(codes, labels, n_estimators=15, random_state=[4, 4])
    for m in range(2):
        alone = fit_gbt(codes, labels[:, m], n_estimators=15, random_state=4)
        np.testing.assert_array_equal(together.feature_importances(m),
                                      alone.feature_importances(0))
        np.testing.assert_array_equal(together.predict_from_raw(together.train_raw, m),
                                      alone.predict_from_raw(alone.train_raw, 0))
    with pytest.raises(ValueError, match="one per model"):
        fit_gbt(codes, labels, n_estimators=2, random_state=[1])


@pytest.mark.parametrize("libm_equal", EXP_ROUTES)
def test_negative_gradient_is_sklearns_loss_gradient(libm_equal):
    """The stage gradient of several models at once (binary and multiclass, a partial chunk,
    a score far enough out to underflow exp) equals scikit-learn's own loss gradient."""
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    rng = np.random.default_rng(3)
    n = 700  # chunks of 256: the last one partial
    classes = [2, 5, 40]
    n_cols = np.array([1 if k == 2 else k for k in classes], dtype=np.int64)
    first_col = np.concatenate([[0], np.cumsum(n_cols)[:-1]]).astype(np.int64)
    labels = np.stack([rng.integers(0, k, n) for k in classes]).astype(np.float64)
    raw = rng.standard_cauchy(size=(int(n_cols.sum()), n)) * 5
    raw[2, 0] = 900.0  # the other classes of that sample: |x| >= 512, libm's own branch
    out, out_t = np.empty_like(raw), np.empty(raw.T.shape)
    _gbt._negative_gradient(labels, raw, first_col, n_cols, out, out_t, libm_equal)
    np.testing.assert_array_equal(out_t, out.T)
    for m, k in enumerate(classes):
        rows = slice(first_col[m], first_col[m] + n_cols[m])
        if k == 2:
            want = HalfBinomialLoss().gradient(labels[m], raw[rows][0])[np.newaxis]
        else:
            want = HalfMultinomialLoss(n_classes=k).gradient(
                labels[m], np.ascontiguousarray(raw[rows].T)
            ).T
        np.testing.assert_array_equal(out[rows], -want)


def test_small_fits_run_on_one_thread(monkeypatch):
    """Below PARALLEL_MIN_CELLS a default fit uses one worker (threads spinning at the stages'
    barriers cost more than they bring on a busy CPU); larger fits and explicit counts do not."""
    workers = []
    new_scratch = _gbt._new_scratch
    monkeypatch.setattr(_gbt, "_new_scratch",
                        lambda n, *rest: workers.append(n) or new_scratch(n, *rest))
    X, y = _problem(100, 3, "continuous")
    fit_gbt(X, y, n_estimators=2)
    fit_gbt(X, y, n_estimators=2, n_threads=2)
    big = np.tile(X, (_gbt.PARALLEL_MIN_CELLS // (100 * 5 * 3) + 1, 1))
    fit_gbt(big, np.tile(y, big.shape[0] // 100), n_estimators=1)
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    assert workers == [1, threads, min(numba.get_num_threads(), 3)]
