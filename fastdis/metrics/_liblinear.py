"""SAP's ``LinearSVC`` on one code: liblinear's primal trust-region Newton solver, compiled.

disentanglement_lib's SAP score (discrete factors) fits ``LinearSVC(C=0.01,
class_weight="balanced")`` on every single code. scikit-learn >= 1.5 solves the primal
L2-regularised squared-hinge problem with liblinear's trust-region Newton method (TRON,
``dual="auto"`` is primal when n_samples > n_features), one problem per class (one-vs-rest), the
intercept an extra feature of value 1 that *is* penalised:

.. math::

    \\min_{w, b}\\; \\tfrac12 (w^2 + b^2) + \\sum_i C_i \\max(0, 1 - y_i (w x_i + b))^2

With class weights ``n / (n_classes * count)`` liblinear gives the positive class
``C * weight[c]`` but the negatives (all other classes) the *unweighted* ``C``; in the binary
case the first (sorted) class is the negative one with its own weight. With one feature the
active set of the hinge is a prefix/suffix of each class's sorted values, so every function,
gradient and Hessian evaluation of TRON (liblinear's callbacks ``fun``, ``grad``, ``Hv``:
:func:`_svc_fun`, :func:`_svc_grad`, :func:`_svc_hess`) costs two binary searches over prefix
sums instead of a pass over the data. The iterates follow liblinear's (same start, same
trust-region rules, same stopping test), so the fitted lines agree with scikit-learn's to
rounding, far below its ``tol=1e-4`` stopping tolerance.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["linear_svc_accuracy_matrix"]

# the comparisons _first_index can search for (numba branches on an int)
_SEARCH_GE, _SEARCH_GT, _SEARCH_LT, _SEARCH_LE = 0, 1, 2, 3


@numba.njit(cache=True)
def _first_index(xs, lo, hi, w, b, threshold, op):
    """First i in [lo, hi) with ``cmp(w * xs[i] + b, threshold)`` true, else hi; ``op`` is
    one of ``_SEARCH_GE`` (>=), ``_SEARCH_GT`` (>), ``_SEARCH_LT`` (<), ``_SEARCH_LE`` (<=).

    ``w * x + b`` is evaluated exactly as liblinear does (product, then the bias feature), and the
    predicate must be monotone (false ... true) along the sorted ``xs``.
    """
    while lo < hi:
        mid = (lo + hi) >> 1
        v = w * xs[mid] + b
        if op == _SEARCH_GE:
            ok = v >= threshold
        elif op == _SEARCH_GT:
            ok = v > threshold
        elif op == _SEARCH_LT:
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
            k = _first_index(xs, lo, hi, w, b, 1.0, _SEARCH_GE)
        else:
            k = _first_index(xs, lo, hi, w, b, 1.0, _SEARCH_LT)
    else:
        if w > 0.0:
            k = _first_index(xs, lo, hi, w, b, -1.0, _SEARCH_GT)
        else:
            k = _first_index(xs, lo, hi, w, b, -1.0, _SEARCH_LE)
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
    """liblinear's ``l2r_l2_svc_fun::fun``, the objective at (w, b).

    ``(w^2 + b^2) / 2 + cp * sum_pos (1 - (w x + b))^2 + cn * sum_neg (1 + (w x + b))^2`` over
    the margin violators, expanded in the active-set sums ``sums`` = (count, sum x, sum x^2)
    of the positives, then of the negatives (:func:`_svc_sums`); cp, cn: the classes' C.
    """
    n_p, s1_p, s2_p, n_n, s1_n, s2_n = sums
    f = (w * w + b * b) / 2.0
    f += cp * (n_p * (1.0 - b) ** 2 - 2.0 * (1.0 - b) * w * s1_p + w * w * s2_p)
    f += cn * (n_n * (1.0 + b) ** 2 + 2.0 * (1.0 + b) * w * s1_n + w * w * s2_n)
    return f


@numba.njit(cache=True)
def _svc_grad(w, b, cp, cn, sums):
    """liblinear's ``grad``: the objective's gradient (d/dw, d/db) at (w, b), from the same
    active-set ``sums`` as :func:`_svc_fun`."""
    n_p, s1_p, s2_p, n_n, s1_n, s2_n = sums
    g0 = cp * (w * s2_p + (b - 1.0) * s1_p) + cn * (w * s2_n + (b + 1.0) * s1_n)
    g1 = cp * (w * s1_p + (b - 1.0) * n_p) + cn * (w * s1_n + (b + 1.0) * n_n)
    return w + 2.0 * g0, b + 2.0 * g1


@numba.njit(cache=True)
def _svc_hess(cp, cn, sums):
    """liblinear's generalised Hessian behind ``Hv``: (h_ww, h_wb, h_bb) of the active set in
    ``sums``. TRON multiplies it with its search directions; it changes only when a step is
    accepted (liblinear recomputes the active set in ``grad``)."""
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
