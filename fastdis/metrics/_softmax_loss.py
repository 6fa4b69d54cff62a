"""The logistic regression losses of scikit-learn, compiled and bit for bit.

scikit-learn's ``LogisticRegression`` (lbfgs) minimises

.. math::

    \\frac{1}{n}\\sum_i \\Big(\\log \\sum_k e^{W_k x_i + b_k} - W_{y_i} x_i - b_{y_i}\\Big)
    + \\frac{1}{2 C n} \\lVert W \\rVert^2

(the binary loss for two classes) and stops at ``max_iter=100`` long before convergence on
typical codes, so the result depends on the path -- and on the last bit of every evaluation: on
weakly regularised fits (large C in LogisticRegressionCV's path) L-BFGS-B amplifies rounding
until two runs that differ by one ulp end at 100-iteration iterates O(1) apart in the
coefficients and 1e-2 apart in accuracy. This module therefore reproduces the evaluation *bit
for bit*: the same GEMMs (numpy, as scikit-learn calls them), the per-sample softmax loss and
gradient compiled with scikit-learn's operations in its order (libm's ``exp``, computed by a
vectorised copy of glibc's algorithm that returns the same doubles, see :mod:`._libm_exp`;
float32 rounded where scikit-learn rounds), the same mean and L2 penalty arithmetic.
"""

from __future__ import annotations

import numba
import numpy as np

from ._libm_exp import exp_into, reproduces_libm

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
