"""Logistic regression as scikit-learn fits it, behind explicitness, BetaVAE and the downstream
task; the linear models' public home.

``LogisticRegression`` / ``LogisticRegressionCV`` at scikit-learn 1.9's defaults (lbfgs,
multinomial, ``C=1``, ``max_iter=100``, ``tol=1e-4``) reproduce scikit-learn's fits, not just
their optimum, so that accuracies and ROC-AUCs agree with the reference: the objective is
evaluated bit for bit (:mod:`._softmax_loss`) and minimised by scipy's own L-BFGS-B routine with
scikit-learn's options (:mod:`._lbfgsb`), from scikit-learn's start. Fitted coefficients equal
scikit-learn's exactly when both use the same BLAS thread count (a threaded GEMM may round
differently, which moves the reference itself). The gain over the reference is the per-call
overhead, one pass per row instead of three, the vectorised ``exp``, and LogisticRegressionCV's
folds fitted in a thread pool (each fold's warm-started path sequential, so results do not
depend on the thread count).

SAP's LinearSVC (:func:`linear_svc_accuracy_matrix`, :mod:`._liblinear`) and the ROC-AUC
(:func:`roc_auc_columns`, :func:`roc_auc_macro`, :mod:`._roc_auc`) are re-exported here.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .._parallel import default_workers, single_threaded_blas, thread_map
from ._lbfgsb import _minimize_lbfgsb
from ._liblinear import linear_svc_accuracy_matrix
from ._roc_auc import roc_auc_columns, roc_auc_macro
from ._softmax_loss import _binomial_loss_grad, _multinomial_loss_grad

__all__ = [
    "linear_svc_accuracy_matrix",
    "LogisticRegression",
    "LogisticRegressionCV",
    "roc_auc_columns",
    "roc_auc_macro",
]


def _lbfgs_fit(x, y_idx, n_classes, C, coef0, max_iter, tol):
    """scikit-learn's lbfgs call (``_logistic_regression_path``) with the compiled losses.

    x: (N, F) C-contiguous float64, or float32 (then computed in scikit-learn's float32
    precision); y_idx: (N,) int64 class index (binary: 0/1); coef0: (K, F + 1) (binary:
    (F + 1,)) start. Returns (coef of the same shape, number of iterations). Thread-safe: the
    kernels hold no shared state and release the GIL.
    """
    n = x.shape[0]
    l2 = 1.0 / (C * n)
    binary = n_classes == 2
    if binary:
        def func(w):
            """L-BFGS-B's callback: (objective, gradient) at the flat coefficients w."""
            return _binomial_loss_grad(w, x, y_idx, l2)

        w0 = np.asarray(coef0).copy()
    else:
        shape = (n_classes, x.shape[1] + 1)
        # One raw-score buffer per fit: a fresh (N, K) array per evaluation costs page faults
        # where malloc hands large blocks back to the system at once (Dask's workers set
        # MALLOC_TRIM_THRESHOLD_, which made these fits 2.3x slower there).
        raw = np.empty((n, n_classes), dtype=x.dtype)

        def func(w):
            """L-BFGS-B's callback: (objective, flat gradient) at w, the F-order ravel of the
            (K, F + 1) coefficients (scikit-learn's layout of scipy's vector)."""
            value, grad_t = _multinomial_loss_grad(
                np.reshape(w, shape, order="F"), x, y_idx, l2, raw
            )
            return value, grad_t.ravel()

        w0 = np.asarray(coef0).ravel(order="F")
    x, n_iter, converged = _minimize_lbfgsb(
        func, w0, max_iter=max_iter, max_line_search=50, gtol=tol, ftol=64 * np.finfo(float).eps
    )
    n_iter = min(n_iter, max_iter)
    if not converged and n_iter >= max_iter:
        warnings.warn(
            "lbfgs failed to converge after max_iter iterations (scikit-learn's default "
            "max_iter=100 is kept for parity with disentanglement_lib).",
            _convergence_warning(), stacklevel=3,
        )
    w = x
    if not binary:
        w = np.reshape(w, (n_classes, -1), order="F")
    return np.array(w), n_iter


def _convergence_warning():
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning


def _check_xy(X, y, *, keep_float32):
    """Validated (X, classes, y as int64 class indices); at least two classes required."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features); got shape {X.shape}.")
    if not (keep_float32 and X.dtype == np.float32):
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity; logistic regression needs finite inputs.")
    y = np.asarray(y).ravel()
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and y must have the same number of samples; got {X.shape[0]} and {y.shape[0]}."
        )
    classes, y_idx = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(
            "This solver needs samples of at least 2 classes in the data, but the data "
            f"contains only one class: {classes[0]!r}"
        )
    return X, classes, y_idx.astype(np.int64)


class _LinearClassifier:
    """predict / predict_proba / score shared by the two estimators (scikit-learn semantics)."""

    def decision_function(self, X):
        X = np.asarray(X)
        if X.dtype != np.float32:
            X = X.astype(np.float64)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.intp)]
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:  # binary: expit of the decision, as sklearn's _predict_proba_lr
            from scipy.special import expit

            prob = expit(scores)
            return np.vstack([1 - prob, prob]).T
        scores = scores - np.max(scores, axis=1).reshape((-1, 1))
        scores = np.exp(scores)
        scores /= np.sum(scores, axis=1).reshape((-1, 1))
        return scores

    def score(self, X, y):
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))


def _initial_coef(n_classes, n_features, dtype=np.float64):
    """scikit-learn's start: zeros in the data's dtype (scipy then iterates in that dtype)."""
    if n_classes == 2:
        return np.zeros(n_features + 1, dtype=dtype)
    return np.zeros((n_classes, n_features + 1), dtype=dtype, order="F")


def _split_coef(w, n_classes, dtype):
    w = np.asarray(w, dtype=dtype)
    if n_classes == 2:
        return w[:-1][None, :], w[-1:]
    return np.ascontiguousarray(w[:, :-1]), w[:, -1].copy()


def _accuracy(w, n_classes, X, y_idx):
    """Accuracy of the fitted ``w`` on (X, y_idx), predicted as ``_LinearClassifier.predict``."""
    coef, intercept = _split_coef(w, n_classes, np.float64)
    scores = X @ coef.T + intercept
    if n_classes == 2:
        pred = (scores[:, 0] > 0).astype(np.intp)
    else:
        pred = np.argmax(scores, axis=1)
    return float(np.mean(pred == y_idx))


class LogisticRegression(_LinearClassifier):
    """Drop-in for ``sklearn.linear_model.LogisticRegression()`` at its defaults (lbfgs, L2).

    Multinomial for three or more classes, binary logistic for two. The optimisation is
    scikit-learn's own (same objective, start, scipy L-BFGS-B options and stopping rules) with a
    compiled loss, so unconverged fits (``max_iter=100`` is often reached) end at the same place.
    float32 inputs keep float32 coefficients and probabilities, as scikit-learn does.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 regularisation strength.
    max_iter : int, default=100
    tol : float, default=1e-4
    random_state : ignored (lbfgs draws no random numbers); accepted for signature parity.
    """

    def __init__(self, C=1.0, *, max_iter=100, tol=1e-4, random_state=None):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y):
        X, self.classes_, y_idx = _check_xy(X, y, keep_float32=True)
        n_classes = self.classes_.size
        with single_threaded_blas():  # L-BFGS-B's tiny BLAS calls: BLAS threads only cost
            w, n_iter = _lbfgs_fit(
                X, y_idx, n_classes, float(self.C),
                _initial_coef(n_classes, X.shape[1], X.dtype), int(self.max_iter),
                float(self.tol),
            )
        self.coef_, self.intercept_ = _split_coef(w, n_classes, X.dtype)
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        return self


class LogisticRegressionCV(_LinearClassifier):
    """Drop-in for ``LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))`` (dlib's predictor).

    For each unshuffled fold, fits the path ``Cs = logspace(-4, 4, Cs)`` with warm starts
    (each C starts from the previous solution), scores test-fold accuracy, picks the C with the
    best summed accuracy over folds (first on ties), and refits on all data starting from the
    mean of the folds' coefficients at that C -- all as scikit-learn 1.9 does. Every fold fits all
    classes of the full data; a class absent from a fold's training part still gets coefficients.

    Parameters
    ----------
    Cs : int or sequence of float, default=10
    n_splits : int, default=5
        Folds of an unshuffled ``KFold``.
    max_iter : int, default=100
    tol : float, default=1e-4
    """

    def __init__(self, Cs=10, *, n_splits=5, max_iter=100, tol=1e-4):
        self.Cs = Cs
        self.n_splits = n_splits
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):
        _fit_plans([self._plan(X, y)])
        return self

    def _plan(self, X, y):
        """Validate and split: the fold paths to fit, and how to finish from their results."""
        return _CrossValidationPlan(self, X, y)


class _CrossValidationPlan:
    """One LogisticRegressionCV fit, cut into independent fold paths and a final refit."""

    def __init__(self, model, X, y):
        self.model = model
        self.X, model.classes_, self.y_idx = _check_xy(X, y, keep_float32=False)
        self.n_classes = model.classes_.size
        n = self.X.shape[0]
        if isinstance(model.Cs, numbers.Integral):
            self.Cs = np.logspace(-4, 4, model.Cs)
        else:
            self.Cs = np.asarray(model.Cs, dtype=np.float64)
        if model.n_splits < 2:
            raise ValueError(f"n_splits must be >= 2; got {model.n_splits}.")
        if model.n_splits > n:
            raise ValueError(
                f"{model.n_splits}-fold cross-validation needs at least {model.n_splits} "
                f"training samples; got {n}."
            )
        fold_sizes = np.full(model.n_splits, n // model.n_splits, dtype=np.int64)
        fold_sizes[: n % model.n_splits] += 1
        self.bounds = np.concatenate([[0], np.cumsum(fold_sizes)])
        self.max_iter, self.tol = int(model.max_iter), float(model.tol)

    def fold_path(self, fold):
        """The fold's warm-started path over Cs and its test accuracies (sequential)."""
        X, y_idx, bounds, n_classes = self.X, self.y_idx, self.bounds, self.n_classes
        test = slice(bounds[fold], bounds[fold + 1])
        train = np.r_[0:bounds[fold], bounds[fold + 1]:X.shape[0]]
        x_train = np.ascontiguousarray(X[train])
        w = _initial_coef(n_classes, X.shape[1])
        path, accuracy = [], np.empty(self.Cs.size)
        for j, C in enumerate(self.Cs):
            w, _ = _lbfgs_fit(x_train, y_idx[train], n_classes, float(C), w, self.max_iter,
                              self.tol)
            path.append(w)
            accuracy[j] = _accuracy(w, n_classes, X[test], y_idx[test])
        return path, accuracy

    def refit(self, fold_results):
        """Best C by summed fold accuracy (first on ties), refit from the folds' mean there."""
        scores = np.stack([accuracy for _, accuracy in fold_results])
        best = int(np.argmax(scores.sum(axis=0)))
        coef_init = np.mean([path[best] for path, _ in fold_results], axis=0)
        w, n_iter = _lbfgs_fit(self.X, self.y_idx, self.n_classes, float(self.Cs[best]),
                               coef_init, self.max_iter, self.tol)
        model = self.model
        model.coef_, model.intercept_ = _split_coef(w, self.n_classes, np.float64)
        model.Cs_ = self.Cs
        model.C_ = np.full(1 if self.n_classes == 2 else self.n_classes, self.Cs[best])
        model.scores_ = scores
        model.n_iter_ = n_iter


def fit_cv_together(models, X, Y) -> bool:
    """Fit ``models[m]`` to ``(X, Y[:, m])`` if all are LogisticRegressionCV; else False.

    Every fold path of every model is an independent job in one thread pool (most classes
    first), so both cores stay busy where one model's five folds on two threads leave one idle;
    the refits follow. Results equal fitting the models one at a time.
    """
    if not models or any(type(model) is not LogisticRegressionCV for model in models):
        return False
    _fit_plans([model._plan(X, Y[:, m]) for m, model in enumerate(models)])
    return True


def _fit_plans(plans):
    """Run the fold paths of all plans on a shared thread pool, then their refits.

    Each path stays sequential (warm starts), so results do not depend on the thread count.
    """
    jobs = sorted(((plan, fold) for plan in plans for fold in range(plan.model.n_splits)),
                  key=lambda job: -job[0].n_classes)  # stable: a plan's folds keep their order
    # L-BFGS-B's tiny BLAS calls: BLAS threads only cost (set once, not per C).
    with single_threaded_blas():
        paths = thread_map(lambda job: job[0].fold_path(job[1]), jobs, default_workers())
        by_plan = {id(plan): [None] * plan.model.n_splits for plan in plans}
        for (plan, fold), result in zip(jobs, paths, strict=True):
            by_plan[id(plan)][fold] = result
        thread_map(lambda plan: plan.refit(by_plan[id(plan)]), plans, default_workers())
