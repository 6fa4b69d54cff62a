"""The linear models (fastdis.metrics._linear and the modules it draws on: the liblinear solver,
the softmax loss, L-BFGS-B driving, ROC-AUC) against plain numpy twins and scikit-learn."""

import warnings

import numpy as np
import pytest
from exp_helpers import EXP_ROUTES, needs_vectorised_exp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.linear_model import LogisticRegressionCV as SkLogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from fastdis.metrics import _lbfgsb, _liblinear, _linear, _softmax_loss


def _sklearn_svc_matrix(codes, factors, test_codes, test_factors):
    out = np.zeros((codes.shape[1], factors.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in range(codes.shape[1]):
            for k in range(factors.shape[1]):
                clf = LinearSVC(C=0.01, class_weight="balanced").fit(codes[:, d:d + 1],
                                                                     factors[:, k])
                out[d, k] = np.mean(clf.predict(test_codes[:, d:d + 1]) == test_factors[:, k])
    return out


# --- LinearSVC on one feature ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svc_matches_sklearn_binary_multiclass_imbalanced(seed):
    rs = np.random.RandomState(seed)
    n = 600
    factors = np.stack([
        rs.randint(2, size=n),                                   # binary, balanced
        (rs.uniform(size=n) < 0.1).astype(int),                  # binary, imbalanced
        rs.randint(5, size=n),                                   # multiclass
        rs.choice([0, 3, 7, 40], size=n, p=[0.7, 0.2, 0.05, 0.05]),  # sparse labels, imbalanced
    ], axis=1)
    codes = np.stack([
        factors[:, 0] + rs.normal(scale=0.5, size=n),
        factors[:, 2] * 0.3 + rs.normal(scale=0.2, size=n),
        rs.normal(size=n) * 5.0,
        -factors[:, 3] / 40 + rs.normal(scale=0.1, size=n),
        np.zeros(n),
    ], axis=1)
    tr, te = slice(0, 400), slice(400, None)
    got = _linear.linear_svc_accuracy_matrix(codes[tr], factors[tr], codes[te], factors[te])
    want = _sklearn_svc_matrix(codes[tr], factors[tr], codes[te], factors[te])
    np.testing.assert_allclose(got, want, atol=0, rtol=0)


def test_svc_unseen_test_label_counts_as_error():
    rs = np.random.RandomState(3)
    codes = rs.normal(size=(200, 2))
    factors = rs.randint(3, size=(200, 1))
    test_factors = np.full((50, 1), 9)
    got = _linear.linear_svc_accuracy_matrix(codes, factors, codes[:50], test_factors)
    assert np.all(got == 0.0)


def _tron_reference_objective(x, y_pm, cost, w, b):
    """Plain numpy squared-hinge primal objective and gradient (the twin of _svc_fun/_svc_grad)."""
    z = y_pm * (w * x + b)
    d = np.maximum(0.0, 1.0 - z)
    f = 0.5 * (w * w + b * b) + np.sum(cost * d * d)
    active = z < 1
    coef = cost[active] * y_pm[active] * (z[active] - 1)
    return f, (w + 2 * np.sum(coef * x[active]), b + 2 * np.sum(coef))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-3, 3), st.floats(-3, 3))
def test_svc_prefix_sum_objective_matches_numpy(seed, w, b):
    rs = np.random.RandomState(seed)
    n = 50
    x = np.sort(rs.normal(size=n))
    y = rs.randint(3, size=n)
    c = 1
    counts = np.bincount(y, minlength=3)
    starts = np.concatenate([[0], np.cumsum(counts)])
    cx = np.concatenate([x[y == k] for k in range(3)])
    gf1, gf2, gb1, gb2 = (np.empty(n + 1) for _ in range(4))
    _liblinear._prefix_sums(x, 0, n, gf1, gf2, gb1, gb2, 0)
    cf1, cf2, cb1, cb2 = (np.empty(n + 3) for _ in range(4))
    for k in range(3):
        _liblinear._prefix_sums(cx, starts[k], starts[k + 1], cf1, cf2, cb1, cb2, starts[k] + k)
    sums = _liblinear._svc_sums(w, b, x, gf1, gf2, gb1, gb2, cx, cf1, cf2, cb1, cb2,
                             starts[c], starts[c + 1], starts[c] + c, False)
    cp, cn = 0.05, 0.01
    y_pm = np.where(y == c, 1.0, -1.0)
    cost = np.where(y == c, cp, cn)
    f_ref, g_ref = _tron_reference_objective(x, y_pm, cost, w, b)
    assert _liblinear._svc_fun(w, b, cp, cn, sums) == pytest.approx(f_ref, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(_liblinear._svc_grad(w, b, cp, cn, sums), g_ref, rtol=1e-9,
                               atol=1e-9)


# --- logistic regression ------------------------------------------------------------------------


def _lr_data(n, n_classes, dtype, seed=0):
    rs = np.random.RandomState(seed)
    y = rs.randint(n_classes, size=n)
    x = rs.normal(size=(n, 6)) + 0.4 * y[:, None] * rs.normal(size=(1, 6))
    return ((x - x.mean(0)) / x.std(0)).astype(dtype), y * 3 + 1  # arbitrary integer labels


@pytest.mark.parametrize("n_classes", [2, 3, 12])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_regression_matches_sklearn(n_classes, dtype):
    x, y = _lr_data(1500, n_classes, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkLogisticRegression().fit(x, y)
        got = _linear.LogisticRegression().fit(x, y)
    np.testing.assert_array_equal(got.classes_, ref.classes_)
    assert got.coef_.dtype == ref.coef_.dtype
    # Bit for bit: same objective arithmetic and the same L-BFGS-B routine.
    np.testing.assert_array_equal(got.coef_, ref.coef_)
    np.testing.assert_array_equal(got.intercept_, ref.intercept_)
    np.testing.assert_array_equal(got.predict_proba(x), ref.predict_proba(x))


def test_logistic_regression_cv_matches_sklearn():
    x, y = _lr_data(1000, 5, np.float64, seed=1)
    y[:180] = 0  # the first fold's training part lacks nothing, but fold 1's test part is one class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkLogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)).fit(x, y)
        got = _linear.LogisticRegressionCV().fit(x, y)
    assert got.C_[0] == ref.C_[0]
    np.testing.assert_array_equal(got.scores_, ref.scores_[ref.classes_[0]])
    np.testing.assert_array_equal(got.coef_, ref.coef_)
    np.testing.assert_array_equal(got.predict_proba(x), ref.predict_proba(x))


@pytest.mark.parametrize("n", [10, 100, 2_000])
def test_logistic_regression_cv_bit_identical_on_unconverged_paths(n):
    """40 classes, large C, ``max_iter=100`` stops far from the optimum: still sklearn's path."""
    rs = np.random.RandomState(n)
    y = np.arange(n) % 40 if n < 40 else rs.randint(40, size=n)
    x = (np.outer(y, rs.normal(size=6)) / 40 + 0.2 * rs.normal(size=(n, 6))).astype(np.float32)
    x = x.astype(np.float64)  # dlib hands float32 codes; LogisticRegressionCV casts to float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkLogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)).fit(x, y)
        got = _linear.LogisticRegressionCV().fit(x, y)
    np.testing.assert_array_equal(got.scores_, ref.scores_[ref.classes_[0]])
    np.testing.assert_array_equal(got.coef_, ref.coef_)
    np.testing.assert_array_equal(got.intercept_, ref.intercept_)


def test_logistic_regression_cv_class_absent_from_a_fold():
    x, y = _lr_data(500, 3, np.float64, seed=2)
    y = np.where(np.arange(500) < 100, 7, y)  # class 7 only in the first fold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkLogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)).fit(x, y)
        got = _linear.LogisticRegressionCV().fit(x, y)
    np.testing.assert_allclose(got.scores_, ref.scores_[ref.classes_[0]], atol=1e-12)
    np.testing.assert_array_equal(got.predict(x), ref.predict(x))


def _multinomial_twin(coef, x, y):
    """Plain numpy loss sum and (K, F + 1) gradient sum of the multinomial log-loss."""
    raw = x @ coef[:, :-1].T + coef[:, -1]
    raw = raw - raw.max(axis=1, keepdims=True)
    logp = raw - np.log(np.exp(raw).sum(axis=1, keepdims=True))
    g = np.exp(logp)
    g[np.arange(len(y)), y] -= 1.0
    return -logp[np.arange(len(y)), y].sum(), np.hstack([g.T @ x, g.sum(0)[:, None]])


def _binomial_twin(coef, x, y):
    raw = x @ coef[:-1] + coef[-1]
    p = 1.0 / (1.0 + np.exp(-raw))
    return np.sum(np.logaddexp(0.0, raw) - y * raw), np.append(x.T @ (p - y), np.sum(p - y))


@pytest.mark.parametrize("n_classes", [2, 3, 12])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_grad_matches_numpy_twin(n_classes, dtype):
    x, y = _lr_data(700, n_classes, dtype, seed=4)
    _, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.astype(np.int64)
    rs = np.random.RandomState(5)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    l2 = 0.01
    if n_classes == 2:
        coef = rs.normal(scale=3.0, size=7).astype(dtype)
        value, grad = _softmax_loss._binomial_loss_grad(coef, x, y_idx, l2)
        want_loss, want_grad = _binomial_twin(coef.astype(float), x.astype(float), y_idx)
        penalty, penalty_grad = coef[:-1].astype(float), np.append(coef[:-1], 0.0)
    else:
        coef = rs.normal(scale=3.0, size=(n_classes, 7)).astype(dtype)
        value, grad_t = _softmax_loss._multinomial_loss_grad(coef, x, y_idx, l2)
        grad = grad_t.T
        want_loss, want_grad = _multinomial_twin(coef.astype(float), x.astype(float), y_idx)
        penalty = coef[:, :-1].astype(float)
        penalty_grad = np.hstack([coef[:, :-1], np.zeros((n_classes, 1))])
    want_value = want_loss / len(y) + 0.5 * l2 * np.sum(penalty**2)
    assert value == pytest.approx(want_value, rel=tol)
    np.testing.assert_allclose(grad, want_grad / len(y) + l2 * penalty_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("n_classes", [2, 5, 40])
def test_loss_grad_matches_sklearn_linear_model_loss(n_classes):
    """float64: scikit-learn's own objective to rounding (numpy's exp is within 1 ulp)."""
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss

    x, y = _lr_data(2_000, n_classes, np.float64, seed=8)
    _, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.astype(np.int64)
    rs = np.random.RandomState(9)
    if n_classes == 2:
        base, coef = HalfBinomialLoss(), rs.normal(size=7)
        value, grad = _softmax_loss._binomial_loss_grad(coef, x, y_idx, 1e-3)
    else:
        base = HalfMultinomialLoss(n_classes=n_classes)
        coef = np.asfortranarray(rs.normal(size=(n_classes, 7)))
        value, grad_t = _softmax_loss._multinomial_loss_grad(coef, x, y_idx, 1e-3)
        grad = grad_t.T
    want_value, want_grad = LinearModelLoss(base_loss=base, fit_intercept=True).loss_gradient(
        coef, x, y_idx.astype(np.float64), l2_reg_strength=1e-3)
    assert value == pytest.approx(want_value, rel=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("vectorised_exp", EXP_ROUTES)
def test_softmax_kernel_is_sklearns_loss_gradient(dtype, vectorised_exp):
    """Per-sample losses, mean gradient and intercept gradient equal scikit-learn's
    ``HalfMultinomialLoss.loss_gradient`` followed by ``LinearModelLoss``' numpy steps."""
    from sklearn._loss.loss import HalfMultinomialLoss

    x, y = _lr_data(300, 5, dtype, seed=6)
    _, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.astype(np.int64)
    coef = np.random.RandomState(7).normal(size=(5, 7)).astype(dtype)
    raw = x @ coef[:, :-1].T + coef[:, -1]
    want_loss, want_gradient = HalfMultinomialLoss(n_classes=5).loss_gradient(
        y_true=y_idx.astype(dtype), raw_prediction=raw
    )
    want_gradient /= 300
    loss, gradient, intercept_grad = np.empty(300, dtype=dtype), raw.copy(), np.empty(5, dtype)
    _softmax_loss._multinomial_pointwise(gradient, y_idx, loss, intercept_grad, vectorised_exp)
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(gradient, want_gradient)
    np.testing.assert_array_equal(intercept_grad, np.sum(want_gradient, axis=0))


@needs_vectorised_exp
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_softmax_kernels_same_bits_with_vectorised_exp(dtype, n):
    """The vectorised exp changes no bit of the softmax kernels, over-/underflowing rows and
    partial blocks included."""
    rs = np.random.RandomState(n)
    raw = (rs.standard_cauchy(size=(n, 9)) * 50).astype(dtype)
    raw[0, 1] = 900.0  # the others of that row underflow (|x| >= 512: libm's branch)
    y = rs.randint(0, 9, size=n)
    results = []
    for vectorised_exp in (False, True):
        gradient, loss, intercept_grad = raw.copy(), np.empty(n, dtype), np.empty(9, dtype)
        _softmax_loss._multinomial_pointwise(gradient, y, loss, intercept_grad, vectorised_exp)
        results.append((gradient, loss, intercept_grad))
    for before, after in zip(*results, strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("n", [10, 60, 300, 1000])
def test_lbfgsb_driver_reproduces_scipy_minimize(dtype, n_classes, n):
    """Same iterates, iteration counts and status as ``optimize.minimize("L-BFGS-B")``."""
    from scipy import optimize

    rs = np.random.RandomState(n_classes * n)
    options = {"maxiter": 100, "maxls": 50, "gtol": 1e-4, "ftol": 64 * np.finfo(float).eps}
    x = rs.normal(size=(n, 5)).astype(dtype)
    y = rs.randint(n_classes, size=n)
    y[:n_classes] = np.arange(n_classes)
    l2 = 1.0 / (10 ** rs.uniform(-4, 4) * n)
    if n_classes == 2:
        def func(w):
            return _softmax_loss._binomial_loss_grad(w, x, y, l2)

        w0 = np.zeros(6, dtype=dtype)
    else:
        def func(w):
            value, grad_t = _softmax_loss._multinomial_loss_grad(
                np.reshape(w, (n_classes, 6), order="F"), x, y, l2)
            return value, grad_t.ravel()

        w0 = np.zeros(6 * n_classes, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = optimize.minimize(func, w0, method="L-BFGS-B", jac=True, options=options)
    got, n_iter, converged = _lbfgsb._minimize_lbfgsb(
        func, w0, max_iter=100, max_line_search=50, gtol=1e-4, ftol=options["ftol"])
    np.testing.assert_array_equal(got, want.x)
    assert n_iter == want.nit
    assert converged == (want.status == 0)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_regression_cv_threaded_folds_equal_sequential(n_classes, monkeypatch):
    x, y = _lr_data(600, n_classes, np.float64, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(_linear, "default_workers", lambda: 1)
        seq = _linear.LogisticRegressionCV().fit(x, y)
        monkeypatch.setattr(_linear, "default_workers", lambda: 3)
        par = _linear.LogisticRegressionCV().fit(x, y)
    np.testing.assert_array_equal(par.scores_, seq.scores_)
    np.testing.assert_array_equal(par.coef_, seq.coef_)
    np.testing.assert_array_equal(par.intercept_, seq.intercept_)


def test_logistic_regression_single_class_raises():
    with pytest.raises(ValueError, match="at least 2 classes"):
        _linear.LogisticRegression().fit(np.zeros((5, 2)), np.ones(5))


# --- ROC-AUC -----------------------------------------------------------------------------------


def _auc_twin(labels, scores):
    """Mann-Whitney form with average ranks (plain numpy twin of _roc_auc_sorted)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    return (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 60), st.integers(1, 5))
def test_roc_auc_matches_sklearn_with_ties(seed, n, levels):
    rs = np.random.RandomState(seed)
    labels = rs.randint(2, size=(n, 3)).astype(bool)
    labels[0], labels[1] = True, False
    scores = rs.randint(levels, size=(n, 3)).astype(np.float32) / levels  # many ties
    got = _linear.roc_auc_columns(labels, scores)
    for c in range(3):
        want = roc_auc_score(labels[:, c], scores[:, c])
        assert got[c] == pytest.approx(want, abs=1e-12)
        assert got[c] == pytest.approx(_auc_twin(labels[:, c], scores[:, c]), abs=1e-12)
    assert _linear.roc_auc_macro(labels, scores) == pytest.approx(
        roc_auc_score(labels.astype(int), scores), abs=1e-12
    )


def test_roc_auc_one_class_column_is_nan():
    got = _linear.roc_auc_columns(np.ones((4, 1), bool), np.arange(4.0)[:, None])
    assert np.isnan(got[0])


def test_lbfgsb_falls_back_to_minimize_when_private_routine_differs(monkeypatch):
    assert _lbfgsb._direct_lbfgsb_reproduces_scipy()  # this scipy: the direct loop is used
    x, y = _lr_data(200, 3, np.float64, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = _linear.LogisticRegressionCV().fit(x, y)
        monkeypatch.setattr(_lbfgsb, "_use_direct_lbfgsb", False)
        fallback = _linear.LogisticRegressionCV().fit(x, y)
    np.testing.assert_array_equal(fallback.coef_, direct.coef_)
    np.testing.assert_array_equal(fallback.scores_, direct.scores_)


def test_cv_models_fitted_together_equal_one_by_one():
    """fit_cv_together (all folds of all models in one pool) changes nothing in the results."""
    x, y = _lr_data(400, 4, np.float64, seed=12)
    labels = np.stack([y, (y + np.arange(400) % 3) % 5, y % 2], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = [_linear.LogisticRegressionCV(), _linear.LogisticRegressionCV(Cs=4),
                    _linear.LogisticRegressionCV(n_splits=3)]
        assert _linear.fit_cv_together(together, x, labels)
        for m, model in enumerate(together):
            alone = type(model)(Cs=model.Cs, n_splits=model.n_splits).fit(x, labels[:, m])
            np.testing.assert_array_equal(model.coef_, alone.coef_)
            np.testing.assert_array_equal(model.intercept_, alone.intercept_)
            np.testing.assert_array_equal(model.scores_, alone.scores_)
    assert not _linear.fit_cv_together([_linear.LogisticRegression()], x, labels[:, :1])
