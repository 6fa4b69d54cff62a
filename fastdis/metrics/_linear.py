"""Linear models behind SAP, explicitness, BetaVAE and the downstream task, compiled.

disentanglement_lib fits its linear classifiers with scikit-learn. This module reproduces those
fits, not just their optimum, so that accuracies and ROC-AUCs agree with the reference:

* **SAP's LinearSVC** (``LinearSVC(C=0.01, class_weight="balanced")`` on a single code).
  scikit-learn >= 1.5 solves the primal L2-regularised squared-hinge problem with liblinear's
  trust-region Newton method (TRON, ``dual="auto"`` is primal when n_samples > n_features), one
  problem per class (one-vs-rest), the intercept an extra feature of value 1 that *is* penalised:

  .. math::

      \\min_{w, b}\\; \\tfrac12 (w^2 + b^2) + \\sum_i C_i \\max(0, 1 - y_i (w x_i + b))^2

  With class weights ``n / (n_classes * count)`` liblinear gives the positive class
  ``C * weight[c]`` but the negatives (all other classes) the *unweighted* ``C``; in the binary
  case the first (sorted) class is the negative one with its own weight. With one feature the
  active set of the hinge is a prefix/suffix of each class's sorted values, so every function,
  gradient and Hessian evaluation of TRON costs two binary searches over prefix sums instead of a
  pass over the data. The iterates follow liblinear's (same start, same trust-region rules, same
  stopping test), so the fitted lines agree with scikit-learn's to rounding, far below its
  ``tol=1e-4`` stopping tolerance.

* **LogisticRegression / LogisticRegressionCV** at scikit-learn 1.9's defaults (lbfgs,
  multinomial, ``C=1``, ``max_iter=100``, ``tol=1e-4``). scikit-learn minimises

  .. math::

      \\frac{1}{n}\\sum_i \\Big(\\log \\sum_k e^{W_k x_i + b_k} - W_{y_i} x_i - b_{y_i}\\Big)
      + \\frac{1}{2 C n} \\lVert W \\rVert^2

  with scipy's L-BFGS-B from zero and stops at ``max_iter`` long before convergence on typical
  codes, so the result depends on the path -- and on the last bit of every evaluation: on weakly
  regularised fits (large C in LogisticRegressionCV's path) L-BFGS-B amplifies rounding until two
  runs that differ by one ulp end at 100-iteration iterates O(1) apart in the coefficients and
  1e-2 apart in accuracy. fastdis therefore reproduces the evaluation *bit for bit*: the same
  GEMMs (numpy, as scikit-learn calls them), the per-sample softmax loss and gradient compiled
  with scikit-learn's operations in its order (libm's ``exp``, computed by a vectorised copy of
  glibc's algorithm that returns the same doubles, see :mod:`._libm_exp`; float32 rounded where
  scikit-learn rounds), the same mean and L2 penalty arithmetic; and it drives scipy's own
  L-BFGS-B routine with scikit-learn's options, minus ``optimize.minimize``'s ~70 us of Python per
  iteration. Fitted coefficients equal scikit-learn's exactly when both use the same BLAS thread
  count (a threaded GEMM may round differently, which moves the reference itself). The gain over
  the reference is the per-call overhead, one pass per row instead of three, the vectorised
  ``exp``, and LogisticRegressionCV's folds fitted in a thread pool (each fold's warm-started path
  sequential, so results do not depend on the thread count).

* **ROC-AUC** of one score column against binary labels, sort-based with tied scores averaged as
  ``sklearn.metrics.roc_auc_score`` does; the trapezoid area is accumulated in exact integers.
"""

from __future__ import annotations

import numbers
import warnings

import numba
import numpy as np
from scipy import optimize

from .._parallel import default_workers, single_threaded_blas, thread_map
from ._libm_exp import exp_into, reproduces_libm

__all__ = [
    "linear_svc_accuracy_matrix",
    "LogisticRegression",
    "LogisticRegressionCV",
    "roc_auc_columns",
    "roc_auc_macro",
]

# =============================================================================================
# 1. LinearSVC on one feature: liblinear's primal TRON on prefix sums
# =============================================================================================

_SEARCH_GE, _SEARCH_GT, _SEARCH_LT, _SEARCH_LE = 0, 1, 2, 3


@numba.njit(cache=True)
def _first_index(xs, lo, hi, w, b, threshold, op):
    """First i in [lo, hi) with ``cmp(w * xs[i] + b, threshold)`` true, else hi.

    ``w * x + b`` is evaluated exactly as liblinear does (product, then the bias feature), and the
    predicate must be monotone (false ... true) along the sorted ``xs``.
    """
    while lo < hi:
        mid = (lo + hi) >> 1
        v = w * xs[mid] + b
        if op == 0:
            ok = v >= threshold
        elif op == 1:
            ok = v > threshold
        elif op == 2:
            ok = v < threshold
        else:
            ok = v <= threshold
        if ok:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True)
def _range_sums(xs, lo, hi, fwd1, fwd2, bwd1, bwd2, base, w, b, positive):
    """(count, sum x, sum x^2) over the margin-violating points of the sorted segment xs[lo:hi].

    Positives (y = +1) violate when ``w x + b < 1``, negatives when ``w x + b > -1``. The set is a
    prefix or a suffix of the segment; ``fwd*[base + k]`` hold sums of the first k values and
    ``bwd*[base + k]`` sums from value k to the end.
    """
    if w == 0.0:
        v = b  # w * x is +-0 for every x
        active = v < 1.0 if positive else v > -1.0
        if active:
            return float(hi - lo), fwd1[base + hi - lo], fwd2[base + hi - lo]
        return 0.0, 0.0, 0.0
    prefix = (w > 0.0) == positive
    if positive:
        if w > 0.0:
            k = _first_index(xs, lo, hi, w, b, 1.0, 0)  # first with v >= 1
        else:
            k = _first_index(xs, lo, hi, w, b, 1.0, 2)  # first with v < 1
    else:
        if w > 0.0:
            k = _first_index(xs, lo, hi, w, b, -1.0, 1)  # first with v > -1
        else:
            k = _first_index(xs, lo, hi, w, b, -1.0, 3)  # first with v <= -1
    if prefix:
        return float(k - lo), fwd1[base + k - lo], fwd2[base + k - lo]
    return float(hi - k), bwd1[base + k - lo], bwd2[base + k - lo]


@numba.njit(cache=True)
def _svc_sums(w, b, gx, gf1, gf2, gb1, gb2, cx, cf1, cf2, cb1, cb2, c_lo, c_hi, c_base, binary):
    """Active-set sums for the positive class segment and for everything else (the negatives)."""
    n_pos, s1_pos, s2_pos = _range_sums(cx, c_lo, c_hi, cf1, cf2, cb1, cb2, c_base, w, b, True)
    n_all, s1_all, s2_all = _range_sums(gx, 0, gx.shape[0], gf1, gf2, gb1, gb2, 0, w, b, False)
    n_own, s1_own, s2_own = _range_sums(cx, c_lo, c_hi, cf1, cf2, cb1, cb2, c_base, w, b, False)
    return n_pos, s1_pos, s2_pos, n_all - n_own, s1_all - s1_own, s2_all - s2_own


@numba.njit(cache=True)
def _svc_fun(w, b, cp, cn, sums):
    n_p, s1_p, s2_p, n_n, s1_n, s2_n = sums
    f = (w * w + b * b) / 2.0
    f += cp * (n_p * (1.0 - b) ** 2 - 2.0 * (1.0 - b) * w * s1_p + w * w * s2_p)
    f += cn * (n_n * (1.0 + b) ** 2 + 2.0 * (1.0 + b) * w * s1_n + w * w * s2_n)
    return f


@numba.njit(cache=True)
def _svc_grad(w, b, cp, cn, sums):
    n_p, s1_p, s2_p, n_n, s1_n, s2_n = sums
    g0 = cp * (w * s2_p + (b - 1.0) * s1_p) + cn * (w * s2_n + (b + 1.0) * s1_n)
    g1 = cp * (w * s1_p + (b - 1.0) * n_p) + cn * (w * s1_n + (b + 1.0) * n_n)
    return w + 2.0 * g0, b + 2.0 * g1


@numba.njit(cache=True)
def _svc_hess(cp, cn, sums):
    n_p, s1_p, s2_p, n_n, s1_n, s2_n = sums
    h00 = 1.0 + 2.0 * (cp * s2_p + cn * s2_n)
    h01 = 2.0 * (cp * s1_p + cn * s1_n)
    h11 = 1.0 + 2.0 * (cp * n_p + cn * n_n)
    return h00, h01, h11


@numba.njit(cache=True)
def _tron_l2svc(gx, gf1, gf2, gb1, gb2, cx, cf1, cf2, cb1, cb2, c_lo, c_hi, c_base,
                cp, cn, eps, max_iter):
    """liblinear's TRON (sklearn's copy of tron.cpp) for the 2-variable squared-hinge primal.

    Returns (w, b). The Hessian-vector products use the active set of the current iterate, as
    liblinear's ``Hv`` does (it is refreshed by ``grad`` only when a step is accepted).
    """
    eta0, eta1, eta2 = 1e-4, 0.25, 0.75
    sigma1, sigma2, sigma3 = 0.25, 0.5, 4.0
    w = 0.0
    b = 0.0
    sums = _svc_sums(w, b, gx, gf1, gf2, gb1, gb2, cx, cf1, cf2, cb1, cb2, c_lo, c_hi, c_base,
                     False)
    f = _svc_fun(w, b, cp, cn, sums)
    g0, g1 = _svc_grad(w, b, cp, cn, sums)
    h00, h01, h11 = _svc_hess(cp, cn, sums)
    delta = np.sqrt(g0 * g0 + g1 * g1)
    gnorm1 = delta
    gnorm = gnorm1
    search = gnorm > eps * gnorm1
    it = 1
    while it <= max_iter and search:
        # --- trcg: conjugate gradient on the trust region -----------------------------------
        s0, s1 = 0.0, 0.0
        r0, r1 = -g0, -g1
        d0, d1 = r0, r1
        cgtol = 0.1 * np.sqrt(g0 * g0 + g1 * g1)
        rtr = r0 * r0 + r1 * r1
        while True:
            if np.sqrt(r0 * r0 + r1 * r1) <= cgtol:
                break
            hd0 = h00 * d0 + h01 * d1
            hd1 = h01 * d0 + h11 * d1
            alpha = rtr / (d0 * hd0 + d1 * hd1)
            s0 += alpha * d0
            s1 += alpha * d1
            if np.sqrt(s0 * s0 + s1 * s1) > delta:
                alpha = -alpha
                s0 += alpha * d0
                s1 += alpha * d1
                std = s0 * d0 + s1 * d1
                sts = s0 * s0 + s1 * s1
                dtd = d0 * d0 + d1 * d1
                dsq = delta * delta
                rad = np.sqrt(std * std + dtd * (dsq - sts))
                if std >= 0:
                    alpha = (dsq - sts) / (std + rad)
                else:
                    alpha = (rad - std) / dtd
                s0 += alpha * d0
                s1 += alpha * d1
                alpha = -alpha
                r0 += alpha * hd0
                r1 += alpha * hd1
                break
            alpha = -alpha
            r0 += alpha * hd0
            r1 += alpha * hd1
            rnew = r0 * r0 + r1 * r1
            beta = rnew / rtr
            d0 = beta * d0 + r0
            d1 = beta * d1 + r1
            rtr = rnew
        # --- trust-region step ----------------------------------------------------------------
        w_new = w + s0
        b_new = b + s1
        gs = g0 * s0 + g1 * s1
        prered = -0.5 * (gs - (s0 * r0 + s1 * r1))
        sums_new = _svc_sums(w_new, b_new, gx, gf1, gf2, gb1, gb2, cx, cf1, cf2, cb1, cb2,
                             c_lo, c_hi, c_base, False)
        fnew = _svc_fun(w_new, b_new, cp, cn, sums_new)
        actred = f - fnew
        snorm = np.sqrt(s0 * s0 + s1 * s1)
        if it == 1:
            delta = min(delta, snorm)
        if fnew - f - gs <= 0:
            alpha = sigma3
        else:
            alpha = max(sigma1, -0.5 * (gs / (fnew - f - gs)))
        if actred < eta0 * prered:
            delta = min(max(alpha, sigma1) * snorm, sigma2 * delta)
        elif actred < eta1 * prered:
            delta = max(sigma1 * delta, min(alpha * snorm, sigma2 * delta))
        elif actred < eta2 * prered:
            delta = max(sigma1 * delta, min(alpha * snorm, sigma3 * delta))
        else:
            delta = max(delta, min(alpha * snorm, sigma3 * delta))
        if actred > eta0 * prered:
            it += 1
            w = w_new
            b = b_new
            f = fnew
            g0, g1 = _svc_grad(w, b, cp, cn, sums_new)
            h00, h01, h11 = _svc_hess(cp, cn, sums_new)
            gnorm = np.sqrt(g0 * g0 + g1 * g1)
            if gnorm <= eps * gnorm1:
                break
        if f < -1.0e32:
            break
        if abs(actred) <= 0 and prered <= 0:
            break
        if abs(actred) <= 1.0e-12 * abs(f) and abs(prered) <= 1.0e-12 * abs(f):
            break
    return w, b


@numba.njit(cache=True)
def _prefix_sums(xs, lo, hi, fwd1, fwd2, bwd1, bwd2, base):
    """fwd*[base + k]: sums of xs[lo:lo+k] and of its squares; bwd*[base + k]: of xs[lo+k:hi]."""
    n = hi - lo
    fwd1[base] = 0.0
    fwd2[base] = 0.0
    for k in range(n):
        x = xs[lo + k]
        fwd1[base + k + 1] = fwd1[base + k] + x
        fwd2[base + k + 1] = fwd2[base + k] + x * x
    bwd1[base + n] = 0.0
    bwd2[base + n] = 0.0
    for k in range(n - 1, -1, -1):
        x = xs[lo + k]
        bwd1[base + k] = bwd1[base + k + 1] + x
        bwd2[base + k] = bwd2[base + k + 1] + x * x


@numba.njit(cache=True)
def _svc_fit_predict(x_sorted, y_sorted, n_classes, x_test, y_test, c_reg, tol, max_iter):
    """Fit sklearn's ``LinearSVC(C=c_reg, class_weight="balanced")`` on one feature; test accuracy.

    x_sorted: (N,) float64 training values in increasing order; y_sorted: (N,) class index in
    [0, n_classes) of each (classes numbered in sorted label order, all present, n_classes >= 2);
    x_test: (M,) float64; y_test: (M,) class index, -1 for labels unseen in training.
    """
    n = x_sorted.shape[0]
    counts = np.zeros(n_classes, dtype=np.int64)
    for i in range(n):
        counts[y_sorted[i]] += 1
    starts = np.zeros(n_classes + 1, dtype=np.int64)
    for c in range(n_classes):
        starts[c + 1] = starts[c] + counts[c]
    # class segments of the sorted values (stable partition keeps each segment sorted)
    cx = np.empty(n, dtype=np.float64)
    fill = starts[:n_classes].copy()
    for i in range(n):
        c = y_sorted[i]
        cx[fill[c]] = x_sorted[i]
        fill[c] += 1
    gf1 = np.empty(n + 1)
    gf2 = np.empty(n + 1)
    gb1 = np.empty(n + 1)
    gb2 = np.empty(n + 1)
    _prefix_sums(x_sorted, 0, n, gf1, gf2, gb1, gb2, 0)
    cf1 = np.empty(n + n_classes)
    cf2 = np.empty(n + n_classes)
    cb1 = np.empty(n + n_classes)
    cb2 = np.empty(n + n_classes)
    for c in range(n_classes):
        _prefix_sums(cx, starts[c], starts[c + 1], cf1, cf2, cb1, cb2, starts[c] + c)
    # class_weight="balanced": n / (n_classes * count), liblinear's weighted C = C * weight
    weighted_c = np.empty(n_classes)
    for c in range(n_classes):
        weighted_c[c] = c_reg * (n / (n_classes * float(counts[c])))
    n_problems = 1 if n_classes == 2 else n_classes
    coef = np.empty(n_problems)
    intercept = np.empty(n_problems)
    for p in range(n_problems):
        c = 1 if n_classes == 2 else p  # binary: the second class is liblinear's +1
        cp = weighted_c[c]
        cn = weighted_c[0] if n_classes == 2 else c_reg
        pos = counts[c]
        eps = tol * max(min(pos, n - pos), 1) / n
        coef[p], intercept[p] = _tron_l2svc(
            x_sorted, gf1, gf2, gb1, gb2, cx, cf1, cf2, cb1, cb2,
            starts[c], starts[c + 1], starts[c] + c, cp, cn, eps, max_iter,
        )
    correct = 0
    for i in range(x_test.shape[0]):
        x = x_test[i]
        if n_classes == 2:
            pred = 1 if x * coef[0] + intercept[0] > 0 else 0
        else:
            pred = 0
            best = x * coef[0] + intercept[0]
            for p in range(1, n_problems):
                v = x * coef[p] + intercept[p]
                if v > best:
                    best = v
                    pred = p
        if pred == y_test[i]:
            correct += 1
    return correct / x_test.shape[0]


@numba.njit(parallel=True, cache=True)
def _svc_accuracy_pairs(x_sorted, y_sorted, n_classes, x_test, y_test, c_reg, tol, max_iter, out):
    """out[d, k] = test accuracy of the one-feature LinearSVC of code d for factor k.

    x_sorted: (D, N) each code's sorted training values; y_sorted: (D, K, N) class indices in that
    order; n_classes: (K,); x_test: (D, M); y_test: (K, M); out: (D, K), written in place.
    """
    n_codes = x_sorted.shape[0]
    n_factors = y_sorted.shape[1]
    for pair in numba.prange(n_codes * n_factors):
        d = pair // n_factors
        k = pair % n_factors
        out[d, k] = _svc_fit_predict(x_sorted[d], y_sorted[d, k], n_classes[k], x_test[d],
                                     y_test[k], c_reg, tol, max_iter)


def _encode_labels(train_labels: np.ndarray, test_labels: np.ndarray):
    """Class indices in sorted-label order for train; test labels unseen in train become -1."""
    classes, train_idx = np.unique(train_labels, return_inverse=True)
    pos = np.clip(np.searchsorted(classes, test_labels), 0, classes.size - 1)
    test_idx = np.where(classes[pos] == test_labels, pos, -1)
    return classes, train_idx.astype(np.int64), test_idx.astype(np.int64)


def linear_svc_accuracy_matrix(codes, factors, test_codes, test_factors, *, C=0.01, tol=1e-4,
                               max_iter=1000) -> np.ndarray:
    """Test accuracy of ``LinearSVC(C, class_weight="balanced")`` fit on each single code.

    ``out[d, k]`` is the accuracy on ``(test_codes[:, d], test_factors[:, k])`` of the classifier
    trained on ``(codes[:, d], factors[:, k])``: the SAP score matrix for discrete factors.
    Inputs are validated arrays (codes (N, D) float, factors (N, K) int; every factor must take
    at least two values in the training set).
    """
    n_codes = codes.shape[1]
    n_factors = factors.shape[1]
    order = np.argsort(codes, axis=0, kind="stable")  # (N, D)
    x_sorted = np.ascontiguousarray(np.take_along_axis(codes, order, axis=0).T, dtype=np.float64)
    y_train = np.empty((factors.shape[0], n_factors), dtype=np.int64)
    y_test = np.empty((test_factors.shape[0], n_factors), dtype=np.int64)
    n_classes = np.empty(n_factors, dtype=np.int64)
    for k in range(n_factors):
        classes, y_train[:, k], y_test[:, k] = _encode_labels(factors[:, k], test_factors[:, k])
        n_classes[k] = classes.size
    y_sorted = np.ascontiguousarray(
        np.stack([y_train[order[:, d]].T for d in range(n_codes)])
    )  # (D, K, N)
    out = np.empty((n_codes, n_factors), dtype=np.float64)
    _svc_accuracy_pairs(
        x_sorted, y_sorted, n_classes, np.ascontiguousarray(test_codes.T, dtype=np.float64),
        np.ascontiguousarray(y_test.T), float(C), float(tol), int(max_iter), out,
    )
    return out


# =============================================================================================
# 2. Logistic regression: scikit-learn's lbfgs path with compiled losses
# =============================================================================================

# The loss kernels are single-threaded and release the GIL: a fit is a sequence of small
# evaluations driven by scipy, so threads inside one evaluation (``parallel=True`` or a threaded
# BLAS) cost more in start-up and contention than they save; LogisticRegressionCV runs its folds
# in threads instead. No ``fastmath``: every operation must round as scikit-learn's does.


@numba.njit(nogil=True, cache=True)
def _round_to(scratch, value):
    """``value`` rounded to ``scratch``'s dtype (a no-op for float64), as a float64."""
    scratch[0] = value
    return np.float64(scratch[0])


_SOFTMAX_BLOCK_ROWS = 64  # rows whose exponentials are computed in one vectorised call


@numba.njit(nogil=True, cache=True)
def _softmax_workspace(n_cls, data):
    """Buffers of :func:`_block_exponentials` for one block: row maxima, row sums, shifted
    scores, exponentials, and the exponentials in ``data``'s dtype."""
    rows = _SOFTMAX_BLOCK_ROWS
    return (np.empty(rows), np.empty(rows), np.empty(rows * n_cls), np.empty(rows * n_cls),
            np.empty(rows * n_cls, dtype=data.dtype))


@numba.njit(nogil=True, cache=True)
def _block_exponentials(raw, start, stop, row_max, shifted, exps, rounded, totals, libm_equal):
    """The softmax' exponentials of the rows ``start:stop`` of ``raw`` and their sums.

    For every row (``r = i - start``): ``row_max[r] = max_k raw[i, k]``; ``exps[r * K + k] =
    exp(raw[i, k] - row_max[r])`` with libm's rounding (:func:`._libm_exp.exp_into`), then
    rounded to the data's dtype through ``rounded`` (scikit-learn computes them in double and
    stores them in its dtype); ``totals[r]`` their sum in double, in class order. ``shifted`` is
    scratch of ``exps``' size. Within a row the order of operations is scikit-learn's.
    """
    n_cls = raw.shape[1]
    n_rows = stop - start
    for r in range(n_rows):
        row = raw[start + r]
        top = np.float64(row[0])
        for k in range(1, n_cls):
            value = np.float64(row[k])
            top = value if top < value else top
        row_max[r] = top
        for k in range(n_cls):
            shifted[r * n_cls + k] = np.float64(row[k]) - top
    m = n_rows * n_cls
    exp_into(shifted[:m], exps[:m], libm_equal)
    for q in range(m):  # to the data's dtype and back: a copy for float64
        rounded[q] = exps[q]
        exps[q] = rounded[q]
    for r in range(n_rows):
        total = 0.0
        for k in range(r * n_cls, (r + 1) * n_cls):
            total += exps[k]
        totals[r] = total


@numba.njit(nogil=True, cache=True)
def _softmax_loss_row(raw, yi, exps, row_max, row_total, scratch):
    """Multinomial log-loss of one sample; ``raw`` (K,) becomes the gradient ``softmax - onehot``.

    scikit-learn's ``CyHalfMultinomialLoss.loss_gradient`` for one row, in its precision, given
    the row's ``exps = exp(raw_k - max)`` in the data's dtype and their double sum
    (:func:`_block_exponentials`): the sum is rounded to the data's dtype before ``loss =
    log(sum) + max - raw_y`` and before the division ``p_k = e_k / sum``. ``scratch`` (1,) has
    the data's dtype; for float64 every rounding is exact. Returns the loss (rounded to the
    data's dtype); ``raw`` is written in place with rounded values.
    """
    n_cls = raw.shape[0]
    raw_y = np.float64(raw[yi])
    total = _round_to(scratch, row_total)
    loss = _round_to(scratch, np.log(total) + row_max)
    for k in range(n_cls):
        raw[k] = exps[k] / total
    raw[yi] = raw[yi] - 1.0
    return _round_to(scratch, loss - raw_y)


@numba.njit(nogil=True, cache=True)
def _binomial_loss_row(r, yt):
    """(loss, gradient) of the binary log-loss at raw score ``r`` for ``yt`` in {0, 1}.

    The branches of scikit-learn's ``closs_grad_half_binomial`` (stable log1p(exp)).
    """
    if r <= -37.0:
        e = np.exp(r)
        return e - yt * r, e - yt
    if r <= -2.0:
        e = np.exp(r)
        return np.log1p(e) - yt * r, ((1.0 - yt) * e - yt) / (1.0 + e)
    e = np.exp(-r)
    if r <= 18.0:
        return np.log1p(e) + (1.0 - yt) * r, ((1.0 - yt) - yt * e) / (1.0 + e)
    return e + (1.0 - yt) * r, ((1.0 - yt) - yt * e) / (1.0 + e)


@numba.njit(nogil=True, cache=True)
def _multinomial_pointwise(raw, y, loss_out, intercept_grad, libm_equal):
    """Per-sample multinomial log-loss into ``loss_out`` (N,); ``raw`` (N, K) becomes the mean
    gradient and ``intercept_grad`` (K,) the intercept's gradient, all in raw's dtype.

    :func:`_softmax_loss_row` on every row, in place, then ``LinearModelLoss``' division by N and
    the column sums of the result accumulated row after row, as numpy sums axis 0 of a C-ordered
    array: one pass over the rows instead of three, every operation and its order scikit-learn's.
    For float32 data each float32 division and addition is computed in double and rounded once,
    which gives the float32 result exactly (double has more than twice float32's precision).
    """
    n, n_cls = raw.shape
    scratch = np.empty(1, dtype=raw.dtype)
    row_max, totals, shifted, exps, rounded = _softmax_workspace(n_cls, raw)
    n_float = np.float64(n)
    intercept_grad[:] = 0.0
    for start in range(0, n, _SOFTMAX_BLOCK_ROWS):
        stop = min(start + _SOFTMAX_BLOCK_ROWS, n)
        _block_exponentials(
            raw, start, stop, row_max, shifted, exps, rounded, totals, libm_equal
        )
        for i in range(start, stop):
            r = i - start
            loss_out[i] = _softmax_loss_row(
                raw[i], y[i], exps[r * n_cls:], row_max[r], totals[r], scratch
            )
            for k in range(n_cls):
                raw[i, k] = raw[i, k] / n_float
                intercept_grad[k] += raw[i, k]


@numba.njit(nogil=True, cache=True)
def _binomial_pointwise(raw, y, loss_out):
    """Per-sample binary log-loss into ``loss_out`` (N,); ``raw`` (N,) becomes the gradient.

    Computed in double from raw's values and stored in raw's dtype, as scikit-learn does.
    """
    for i in range(raw.shape[0]):
        loss_out[i], raw[i] = _binomial_loss_row(np.float64(raw[i]), np.float64(y[i]))


def _l2_penalty(weights, l2):
    """scikit-learn's ``LinearModelLoss.l2_penalty``: formed in the weights' dtype, then a float."""
    if weights.ndim == 1:
        norm2 = weights @ weights
    else:
        flat = np.ravel(weights, order="K")
        norm2 = np.dot(flat, flat)
    return float(0.5 * l2 * norm2)


def _multinomial_loss_grad(coef, x, y, l2, raw=None):
    """Objective and gradient of scikit-learn's ``LinearModelLoss.loss_gradient`` (multinomial).

    coef: (K, F + 1) with the intercept last, in the dtype scipy hands over (float32 when the
    data is float32: scikit-learn starts from zeros of the data's dtype). Returns (value, grad_t)
    with grad_t the (F + 1, K) C-contiguous transpose of the gradient in coef's dtype, whose flat
    view is scipy's F-order vector. ``raw``: an optional (N, K) C-contiguous buffer of x's dtype
    for the raw scores, reused by a fit's evaluations (see :func:`_lbfgs_fit`).

    scikit-learn's own sequence -- raw scores by one GEMM in the data's dtype, the per-sample loss
    and gradient (compiled, with libm's ``exp`` values and the same rounding), their mean, the
    gradient's GEMM -- so the result is bit for bit scikit-learn's and an lbfgs fit takes the same
    path even where ``max_iter=100`` stops it far from the optimum. (numpy's vectorised ``exp``
    differs from libm's in the last bit for ~5 % of arguments, which sends such unconverged fits
    elsewhere; :mod:`._libm_exp` vectorises libm's own algorithm instead.) The speed comes from
    one pass per row, that ``exp``, and skipping scikit-learn's and scipy's per-call overhead,
    not from other arithmetic.
    """
    n = x.shape[0]
    weights = coef[:, :-1]
    if raw is None:
        raw = np.empty((n, coef.shape[0]), dtype=x.dtype)
    np.matmul(x, weights.astype(x.dtype).T, out=raw)  # (N, K): scikit-learn's x @ W.T + b
    raw += coef[:, -1].astype(x.dtype)
    loss = np.empty(n, dtype=x.dtype)
    intercept_grad = np.empty(coef.shape[0], dtype=x.dtype)
    _multinomial_pointwise(raw, y, loss, intercept_grad, reproduces_libm())
    value = float(np.sum(loss) / n) + _l2_penalty(weights, l2)
    grad_t = np.empty((x.shape[1] + 1, coef.shape[0]), dtype=weights.dtype)
    grad_t[:-1] = (raw.T @ x + l2 * weights).T
    grad_t[-1] = intercept_grad
    return value, grad_t


def _binomial_loss_grad(coef, x, y, l2):
    """Objective and gradient of scikit-learn's ``LinearModelLoss.loss_gradient`` (binary).

    scikit-learn's sequence, bit for bit, as :func:`_multinomial_loss_grad`: raw scores by one
    matrix-vector product, the per-sample loss and gradient compiled, then numpy.
    """
    n = x.shape[0]
    weights = coef[:-1]
    raw = x @ weights.astype(x.dtype) + coef[-1:].astype(x.dtype)
    loss = np.empty(n, dtype=x.dtype)
    _binomial_pointwise(raw, y, loss)
    value = float(np.sum(loss) / n) + _l2_penalty(weights, l2)
    raw /= n
    grad = np.empty_like(coef, dtype=weights.dtype)
    grad[:-1] = x.T @ raw + l2 * weights
    grad[-1] = np.sum(raw)
    return value, grad


# scipy's L-BFGS-B routine, called the way ``optimize.minimize(method="L-BFGS-B")`` calls it.
# minimize() spends ~70 us per iteration in Python wrappers (ScalarFunction, bounds handling,
# result objects) around a ~15 us routine: most of the time of the many small fits of a
# LogisticRegressionCV path. ``_direct_lbfgsb`` is scipy 1.17's ``_minimize_lbfgsb`` loop without
# the wrappers (same routine, arguments and stopping rules, so the same iterates). The routine is
# private, so it is used only after a probe fit has reproduced minimize() exactly.
_LBFGSB_MEMORY = 10  # scipy's default maxcor, as scikit-learn leaves it
_TASK_FG, _TASK_NEW_X, _TASK_CONVERGED, _TASK_STOP = 3, 1, 4, 5
_TASK_ITERATION_LIMIT = 504  # the message code minimize() sets when maxiter is reached


def _scipy_lbfgsb(func, x0, *, max_iter, max_line_search, gtol, ftol):
    opt = optimize.minimize(
        func, x0, method="L-BFGS-B", jac=True,
        options={"maxiter": max_iter, "maxls": max_line_search, "gtol": gtol, "ftol": ftol},
    )
    return opt.x, int(opt.nit), opt.status == 0


def _direct_lbfgsb(func, x0, *, max_iter, max_line_search, gtol, ftol):
    from scipy.optimize import _lbfgsb

    n, m = x0.size, _LBFGSB_MEMORY
    # minimize() evaluates func at the iterate cast to x0's floating dtype (float32 fits see
    # float32 coefficients, as in scikit-learn), while L-BFGS-B itself iterates in float64.
    x_dtype = x0.dtype if np.issubdtype(x0.dtype, np.floating) else np.float64
    x = np.array(x0, dtype=np.float64)
    f, g = np.array(0.0), np.zeros(n)
    no_bounds = np.zeros(n)
    bound_kinds = np.zeros(n, np.int32)
    work = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwork = np.zeros(3 * n, np.int32)
    task, line_task = np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    factr = ftol / np.finfo(float).eps
    n_iter = 0
    while True:
        _lbfgsb.setulb(m, x, no_bounds, no_bounds, bound_kinds, f, g, factr, gtol, work,
                       iwork, task, lsave, isave, dsave, max_line_search, line_task)
        if task[0] == _TASK_FG:
            value, grad = func(x.astype(x_dtype))
            f, g = float(value), np.asarray(grad, dtype=np.float64)
        elif task[0] == _TASK_NEW_X:
            n_iter += 1
            if n_iter >= max_iter:
                task[0], task[1] = _TASK_STOP, _TASK_ITERATION_LIMIT
        else:
            break
    return x, n_iter, task[0] == _TASK_CONVERGED


def _direct_lbfgsb_reproduces_scipy() -> bool:
    """Probe: a small least-squares fit, direct loop against minimize(), must agree exactly."""
    matrix = np.vander(np.linspace(-1.0, 1.0, 7), 4)
    target = np.cos(np.arange(7.0))

    def func(w):
        residual = matrix @ w - target
        return 0.5 * residual @ residual, matrix.T @ residual

    options = {"max_iter": 3, "max_line_search": 20, "gtol": 1e-12, "ftol": 1e-15}
    try:
        got = _direct_lbfgsb(func, np.zeros(4), **options)
    except Exception:  # another scipy's private routine: a different signature
        return False
    want = _scipy_lbfgsb(func, np.zeros(4), **options)
    return bool(np.array_equal(got[0], want[0]) and got[1:] == want[1:])


_use_direct_lbfgsb = None  # decided by the probe on first use


def _minimize_lbfgsb(func, x0, *, max_iter, max_line_search, gtol, ftol):
    """Minimise ``func(x) -> (value, gradient)`` from ``x0`` without bounds, as scipy does.

    Returns (x, number of iterations, converged). ``converged`` is scipy's status 0 (projected
    gradient <= gtol or relative reduction <= ftol).
    """
    global _use_direct_lbfgsb
    if _use_direct_lbfgsb is None:
        _use_direct_lbfgsb = _direct_lbfgsb_reproduces_scipy()
    minimize = _direct_lbfgsb if _use_direct_lbfgsb else _scipy_lbfgsb
    return minimize(func, x0, max_iter=max_iter, max_line_search=max_line_search, gtol=gtol,
                    ftol=ftol)


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
            return _binomial_loss_grad(w, x, y_idx, l2)

        w0 = np.asarray(coef0).copy()
    else:
        shape = (n_classes, x.shape[1] + 1)
        # One raw-score buffer per fit: a fresh (N, K) array per evaluation costs page faults
        # where malloc hands large blocks back to the system at once (Dask's workers set
        # MALLOC_TRIM_THRESHOLD_, which made these fits 2.3x slower there).
        raw = np.empty((n, n_classes), dtype=x.dtype)

        def func(w):  # scipy's flat vector is the F-order ravel of (K, F + 1), as in sklearn
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


# =============================================================================================
# 3. ROC-AUC
# =============================================================================================


@numba.njit(cache=True)
def _roc_auc_sorted(scores, positive, order):
    """ROC-AUC of ``scores`` for binary labels ``positive`` given ``order`` = argsort(-scores).

    Walks thresholds from the highest score; tied scores form one step of the ROC curve (the
    trapezoid gives them half credit, as sklearn's roc_curve + auc). Twice the area is an
    integer, accumulated exactly. Returns nan when one class is absent.
    """
    n = scores.shape[0]
    n_pos = 0
    for i in range(n):
        if positive[i]:
            n_pos += 1
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan
    area2 = 0  # sum of (fp_new - fp_old) * (tp_old + tp_new)
    tp = 0
    fp = 0
    i = 0
    while i < n:
        tp_old = tp
        fp_old = fp
        value = scores[order[i]]
        while i < n and scores[order[i]] == value:
            if positive[order[i]]:
                tp += 1
            else:
                fp += 1
            i += 1
        area2 += (fp - fp_old) * (tp_old + tp)
    return area2 / (2.0 * n_pos * n_neg)


@numba.njit(parallel=True, cache=True)
def _roc_auc_columns(scores, onehot, orders, out):
    for c in numba.prange(scores.shape[1]):
        out[c] = _roc_auc_sorted(scores[:, c], onehot[:, c], orders[:, c])


def roc_auc_columns(onehot, scores) -> np.ndarray:
    """Per-column ROC-AUC of ``scores`` (N, C) for binary indicators ``onehot`` (N, C).

    ``sklearn.metrics.roc_auc_score(onehot[:, c], scores[:, c])`` for every column; a column with
    only positives or only negatives gives nan (sklearn warns and returns nan).
    """
    scores = np.asarray(scores)
    onehot = np.ascontiguousarray(np.asarray(onehot) != 0)
    orders = np.ascontiguousarray(np.argsort(-scores, axis=0, kind="stable"))
    out = np.empty(scores.shape[1], dtype=np.float64)
    _roc_auc_columns(np.asarray(scores, order="F"), np.asfortranarray(onehot),
                     np.asfortranarray(orders), out)
    return out


def roc_auc_macro(onehot, scores) -> float:
    """Macro-averaged ROC-AUC, ``roc_auc_score(onehot, scores)`` for a multilabel indicator."""
    return float(np.mean(roc_auc_columns(onehot, scores)))
