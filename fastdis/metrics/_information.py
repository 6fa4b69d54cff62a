"""Histogram discretisation, discrete mutual information and entropy, compiled.

These are the quantities behind MIG, modularity, the unsupervised mutual-information score and
IRS. They reproduce disentanglement_lib's ``utils._histogram_discretize``,
``utils.discrete_mutual_info`` and ``utils.discrete_entropy`` (which call
``sklearn.metrics.mutual_info_score`` once per pair in a Python double loop) in one pass.

Mutual information of two label vectors :math:`U` (a factor) and :math:`V` (a binned code), with
contingency counts :math:`n_{uv}`, marginals :math:`a_u, b_v` and :math:`N` samples, in nats:

.. math::

    I(U; V) = \\sum_{u,v:\\,n_{uv}>0} \\frac{n_{uv}}{N}
              \\left(\\log n_{uv} - \\log N - \\log (a_u b_v) + \\log N + \\log N\\right)

written term by term exactly as scikit-learn does (terms with magnitude below machine epsilon
are zeroed, the sum is clipped at 0, a labelling with a single class gives 0), so values agree
with the reference to ~1e-15. The entropy is :math:`H(U) = I(U; U)`.
"""

from __future__ import annotations

import numba
import numpy as np

from .._validation import check_codes, check_labels, check_num_bins, check_same_rows
from ._shared import memoized

_EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------------------------
# Kernels (policy-free: arrays and sizes in, arrays out)
# ---------------------------------------------------------------------------------------------


@numba.njit(parallel=True, cache=True)
def _digitize_columns(values, edges, out):
    """out[n, d] = number of edges[d, :] <= values[n, d]  (np.digitize with right-open bins).

    values: (N, D); edges: (D, E) increasing and equally spaced up to rounding; out: (N, D)
    int64, written in place. The bin is first guessed arithmetically from the spacing, then
    corrected by comparing against the actual edges, so the result is exactly np.digitize's.
    """
    n_samples, n_columns = values.shape
    n_edges = edges.shape[1]
    for d in numba.prange(n_columns):
        first = edges[d, 0]
        spacing = (edges[d, n_edges - 1] - first) / max(n_edges - 1, 1)
        inverse = 1.0 / spacing if spacing > 0 else 0.0
        for n in range(n_samples):
            x = values[n, d]
            guess = (x - first) * inverse + 1.0
            count = min(max(int(guess), 0), n_edges) if guess == guess else 0
            while count > 0 and edges[d, count - 1] > x:
                count -= 1
            while count < n_edges and edges[d, count] <= x:
                count += 1
            out[n, d] = count


@numba.njit(cache=True)
def _mutual_info_from_labels(u, n_u, v, n_v):
    """Mutual information (nats) of two label vectors with values in [0, n_u) and [0, n_v).

    Term-by-term the formula of sklearn.metrics.mutual_info_score (see module docstring).
    """
    n_samples = u.shape[0]
    counts = np.zeros((n_u, n_v), dtype=np.int64)
    for n in range(n_samples):
        counts[u[n], v[n]] += 1
    row_sums = np.zeros(n_u, dtype=np.int64)
    col_sums = np.zeros(n_v, dtype=np.int64)
    for i in range(n_u):
        for j in range(n_v):
            row_sums[i] += counts[i, j]
            col_sums[j] += counts[i, j]
    rows_present = 0
    for i in range(n_u):
        if row_sums[i] > 0:
            rows_present += 1
    cols_present = 0
    for j in range(n_v):
        if col_sums[j] > 0:
            cols_present += 1
    if rows_present <= 1 or cols_present <= 1:
        return 0.0  # MI <= min(H(U), H(V)) = 0 for a single class
    log_total = np.log(float(n_samples))
    total = 0.0
    for i in range(n_u):  # row-major over non-zero cells, as scipy.sparse.find on CSR
        for j in range(n_v):
            c = counts[i, j]
            if c == 0:
                continue
            p = c / n_samples
            log_outer = -np.log(float(row_sums[i] * col_sums[j])) + log_total + log_total
            term = p * (np.log(float(c)) - log_total) + p * log_outer
            if abs(term) >= 2.220446049250313e-16:
                total += term
    return max(total, 0.0)


@numba.njit(parallel=True, cache=True)
def _mutual_info_pairs(left, n_left, right, n_right, out):
    """out[a, b] = I(left[:, a]; right[:, b]) for all column pairs, in parallel over pairs.

    left: (N, A) int64 labels, column a in [0, n_left[a]); right: (N, B) likewise;
    out: (A, B) float64, written in place. The reference's argument order is
    mutual_info_score(labels_true=right column, labels_pred=left column).
    """
    n_a = left.shape[1]
    n_b = right.shape[1]
    for pair in numba.prange(n_a * n_b):
        a = pair // n_b
        b = pair % n_b
        out[a, b] = _mutual_info_from_labels(right[:, b], n_right[b], left[:, a], n_left[a])


# ---------------------------------------------------------------------------------------------
# Wrappers (validation and policy live here)
# ---------------------------------------------------------------------------------------------


def histogram_edges(values: np.ndarray, num_bins: int) -> np.ndarray:
    """Per-column bin edges exactly as ``np.histogram(column, num_bins)`` computes them.

    Returns an array of shape (n_columns, num_bins + 1) whose dtype follows numpy's rule
    (float32 stays float32, integers give float64). A constant column gets the edges of
    ``[v - 0.5, v + 0.5]``, as numpy does.
    """
    return np.stack(
        [np.histogram_bin_edges(values[:, d], num_bins) for d in range(values.shape[1])]
    )


@memoized(seeded=False)  # shared within fastdis.metrics.shared_fits()
def histogram_discretize(values, num_bins: int = 20) -> np.ndarray:
    """Discretize each column of ``values`` into ``num_bins`` equal-width bins.

    The reference discretizer of disentanglement_lib (``histogram_discretizer``): per column,
    edges = ``linspace(min, max, num_bins + 1)`` and bin index = ``np.digitize(x, edges[:-1])``,
    so labels run from 1 to ``num_bins`` and the maximum lands in the last bin.

    Parameters
    ----------
    values : array of shape (n_samples, n_columns)
        Codes (or factors) to discretize, one variable per column.
    num_bins : int, default=20
        Number of bins (20 in every study config).

    Returns
    -------
    labels : int64 array of shape (n_samples, n_columns), values in ``[1, num_bins]``.

    Raises
    ------
    ValueError
        If values is not a non-empty 2-D array of finite real numbers.
    """
    num_bins = check_num_bins(num_bins)
    values = np.asarray(values)
    if values.dtype == np.bool_:
        values = values.astype(np.int64)
    # float32 stays float32 (its edges are float32, as numpy's); integers become float64, which
    # gives numpy's edges for them exactly and is what numpy compares them against
    values = check_codes(values, name="values")
    edges = np.ascontiguousarray(histogram_edges(values, num_bins)[:, :-1])
    out = np.empty(values.shape, dtype=np.int64)
    _digitize_columns(values, edges.astype(values.dtype, copy=False), out)
    return out


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels usable as table indices: each column mapped to 0..n_values-1 in value order.

    Returns (int64 labels (N, C), table size per column (C,)). Dense non-negative integer
    labels come back unchanged with table size max + 1; anything else is compacted.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu" and labels.size and labels.min() >= 0:
        high = int(labels.max())
        if high <= 4 * labels.shape[0] + 1024:
            # Dense non-negative labels are used as they are: empty values add nothing to the
            # contingency table, and the order of the values is already the sorted order.
            return np.ascontiguousarray(labels, dtype=np.int64), np.full(
                labels.shape[1], high + 1, dtype=np.int64)
    if labels.dtype.kind == "f":
        labels_int = labels.astype(np.int64)
        if not np.array_equal(labels_int, labels):  # arbitrary float labels: unique them
            out = np.empty(labels.shape, dtype=np.int64)
            sizes = np.empty(labels.shape[1], dtype=np.int64)
            for c in range(labels.shape[1]):
                uniques, out[:, c] = np.unique(labels[:, c], return_inverse=True)
                sizes[c] = uniques.size
            return out, sizes
        labels = labels_int
    out = np.empty(labels.shape, dtype=np.int64)
    sizes = np.empty(labels.shape[1], dtype=np.int64)
    for c in range(labels.shape[1]):
        column = labels[:, c]
        low, high = column.min(), column.max()
        if high - low <= 4 * column.size + 1024:  # dense value range: a bincount remap is O(N)
            present = np.bincount(column - low) > 0
            remap = np.cumsum(present) - 1
            out[:, c] = remap[column - low]
            sizes[c] = int(present.sum())
        else:
            uniques, out[:, c] = np.unique(column, return_inverse=True)
            sizes[c] = uniques.size
    return out, sizes


@memoized(seeded=False)  # shared within fastdis.metrics.shared_fits()
def mutual_info_matrix(left_labels, right_labels) -> np.ndarray:
    """Discrete mutual information (nats) between every column of two label arrays.

    ``out[a, b] = sklearn.metrics.mutual_info_score(right_labels[:, b], left_labels[:, a])``,
    i.e. disentanglement_lib's ``discrete_mutual_info(left.T, right.T)``.

    Parameters
    ----------
    left_labels : integer array of shape (n_samples, A)   (e.g. binned codes)
    right_labels : integer array of shape (n_samples, B)  (e.g. factors)

    Labels may be any finite real numbers (as scikit-learn's); each column's distinct values are
    its classes.

    Returns
    -------
    mi : float64 array of shape (A, B), >= 0.

    Raises
    ------
    ValueError
        If either array is not 2-D, is empty, holds non-finite or non-real values, or the two
        have different numbers of rows.
    """
    left_labels = check_labels(left_labels, name="left_labels")
    right_labels = check_labels(right_labels, name="right_labels")
    check_same_rows(left_labels, right_labels, "left_labels", "right_labels")
    left, n_left = compact_labels(left_labels)
    right, n_right = compact_labels(right_labels)
    out = np.empty((left.shape[1], right.shape[1]), dtype=np.float64)
    _mutual_info_pairs(left, n_left, right, n_right, out)
    return out


def discrete_entropy(labels) -> np.ndarray:
    """Entropy (nats) of each column of an integer label array, as ``mutual_info_score(y, y)``."""
    labels, sizes = compact_labels(labels)
    out = np.empty(labels.shape[1], dtype=np.float64)
    for c in range(labels.shape[1]):
        out[c] = _mutual_info_from_labels(labels[:, c], sizes[c], labels[:, c], sizes[c])
    return out
