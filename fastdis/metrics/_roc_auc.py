"""ROC-AUC of score columns against binary labels, compiled (explicitness' score).

Sort-based, with tied scores averaged as ``sklearn.metrics.roc_auc_score`` does; the trapezoid
area is accumulated in exact integers.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["roc_auc_columns", "roc_auc_macro"]


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
    """out[c] = :func:`_roc_auc_sorted` of column c, the columns in parallel."""
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
