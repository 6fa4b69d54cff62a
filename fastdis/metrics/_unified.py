"""Unified disentanglement scores: every matrix with every aggregation.

DCI, MIG, SAP and Modularity each (1) relate codes and factors through an (n_codes, n_factors)
matrix and (2) aggregate it into a score. disentanglement_lib's ``unified_scores`` crosses the
three matrices with all four aggregations, and adds a precision curve of the bipartite
code-factor graph (Locatello et al., "A Sober Look at the Unsupervised Learning of Disentangled
Representations and their Evaluation", JMLR 2020).

Matrices :math:`M` (n_codes :math:`D`, n_factors :math:`K`):

* ``importance_gbt_matrix``: DCI's gradient-boosting feature importances.
* ``mutual_information_matrix``: discrete MI (nats) of 20-bin histogram codes and factors.
* ``accuracy_svm_matrix``: SAP's test accuracy of a linear SVM predicting a factor from one code.

Aggregations (keys in parentheses):

* DCI (``dci_disentanglement``, ``dci_completeness``, ``dci`` = disentanglement again, per code
  ``dci_disentanglement.code_d``, per factor ``dci_completeness.code_k`` -- the reference's
  key names, the per-factor values are mislabelled ``code``):
  :math:`D_d = 1 - H_K(\\tilde M_{d\\cdot})` weighted by row mass, :math:`C_k = 1 - H_D(\\tilde
  M_{\\cdot k})` weighted by column mass (entropies of the normalised rows/columns of
  :math:`M + 10^{-11}`, in base :math:`K` resp. :math:`D`).
* MIG (``mig``, ``mig.factor_k``): gap between the two largest entries of each column divided by
  the factor's entropy :math:`H(y_k)` (nats, on the training factors).
* SAP (``sap``, ``sap.factor_k``): gap between the two largest entries of each column.
* Modularity (``modularity``, ``modularity.code_d``): per code
  :math:`1 - \\frac{\\sum_k M_{dk}^2 - \\max_k M_{dk}^2}{(K-1)\\max_k M_{dk}^2}` (0 if the row
  is zero), averaged.
* Precision curve (``area_precision``, ``max_precision``): for every matrix entry :math:`t` used
  as a threshold, the number of connected components with more than one node of the bipartite
  graph with an edge :math:`(d, k)` where :math:`M_{dk} \\ge t` and :math:`M_{dk} \\ne 0`;
  trapezoid area under that count over the thresholds, and its maximum.

Every key is namespaced ``"{matrix name}.{key}"``.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import scipy.stats

from .._validation import (
    check_informative_factors,
    check_matrix,
    check_min_columns,
    check_num_bins,
    check_train_test,
)
from . import _information

__all__ = [
    "AGGREGATIONS",
    "MATRIX_FNS",
    "accuracy_svm_matrix",
    "aggregation_dci",
    "aggregation_mig",
    "aggregation_modularity",
    "aggregation_sap",
    "compute_modularity_per_code",
    "importance_gbt_matrix",
    "mutual_information_matrix",
    "pr_curves_values",
    "precision",
    "unified_scores",
]


# ---------------------------------------------------------------------------------------------
# Kernel: precision curve by incremental union-find
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _find(parent, node):
    root = node
    while parent[root] != root:
        root = parent[root]
    while parent[node] != root:  # path compression
        nxt = parent[node]
        parent[node] = root
        node = nxt
    return root


@numba.njit(cache=True)
def _precision_curve(values, rows, cols, n_rows, n_cols, out):
    """Non-trivial connected components for each threshold ``values[t]``, in place in ``out``.

    values: (E,) matrix entries sorted in decreasing order; rows/cols: (E,) their positions.
    The graph at threshold t has the edges ``(rows[e], n_rows + cols[e])`` for every entry with
    ``values[e] >= values[t]`` and ``values[e] != 0``; entries are added as the threshold falls,
    so one pass of union-find answers every threshold. out: (E,) int64.
    """
    n_nodes = n_rows + n_cols
    parent = np.arange(n_nodes)
    size = np.ones(n_nodes, dtype=np.int64)
    components = 0  # components with more than one node
    added = 0
    n_entries = values.shape[0]
    for t in range(n_entries):
        threshold = values[t]
        while added < n_entries and values[added] >= threshold:
            if values[added] != 0:
                a = _find(parent, rows[added])
                b = _find(parent, n_rows + cols[added])
                if a != b:
                    if size[a] > 1 and size[b] > 1:
                        components -= 1
                    elif size[a] == 1 and size[b] == 1:
                        components += 1
                    if size[a] < size[b]:
                        a, b = b, a
                    parent[b] = a
                    size[a] += size[b]
            added += 1
        out[t] = components


@numba.njit(cache=True)
def _trapezoid_area(precisions, thresholds):
    """sum_t (p_t + p_{t+1}) (th_t - th_{t+1}) / 2, accumulated left to right as the reference."""
    area = 0.0
    for t in range(precisions.shape[0] - 1):
        area += (precisions[t] + precisions[t + 1]) * (thresholds[t] - thresholds[t + 1]) * 0.5
    return area


def _check_matrix(matrix) -> np.ndarray:
    # The aggregations compute in the matrix's own dtype, as the reference's numpy code does.
    return check_matrix(matrix, name="matrix", dtype=None)


def _precision_values(matrix):
    flat = matrix.ravel()
    order = np.argsort(flat, kind="stable")[::-1]
    values = np.ascontiguousarray(flat[order])
    rows, cols = np.divmod(order, matrix.shape[1])
    out = np.empty(values.shape[0], dtype=np.int64)
    _precision_curve(values, rows.astype(np.int64), cols.astype(np.int64),
                     matrix.shape[0], matrix.shape[1], out)
    return values, out


def precision(matrix, threshold) -> int:
    """Number of connected components with more than one node after dropping weak edges.

    The bipartite graph has a node per row and per column of ``matrix`` and an edge (d, k)
    where ``matrix[d, k] >= threshold`` and ``matrix[d, k] != 0`` (disentanglement_lib's
    ``visualize_scores.precision``, computed with union-find instead of recursion).
    """
    matrix = _check_matrix(matrix).astype(np.float64)
    matrix[matrix < threshold] = 0.0
    # With every remaining entry added (the last threshold), edges are exactly the non-zeros.
    __, counts = _precision_values(matrix)
    return int(counts[-1])


def pr_curves_values(matrix) -> dict:
    """Area under the precision curve and its maximum (see the module docstring).

    Thresholds are all entries of ``matrix`` in decreasing order; ``area_precision`` is the
    trapezoid area accumulated in that order, ``max_precision`` the largest component count.

    Raises
    ------
    ValueError
        If ``matrix`` is not a non-empty 2-D array of finite numbers.
    """
    matrix = _check_matrix(matrix)
    thresholds, counts = _precision_values(matrix.astype(np.float64, copy=False))
    area = _trapezoid_area(counts.astype(np.float64), thresholds)
    return {"area_precision": float(area), "max_precision": float(counts.max())}


# ---------------------------------------------------------------------------------------------
# Matrices (array layout: codes (N, D), factors (N, K); result (D, K))
# ---------------------------------------------------------------------------------------------


def importance_gbt_matrix(
    codes, factors, test_codes, test_factors, *, backend=None, random_state=0
):
    """DCI's gradient-boosting importance matrix (n_codes, n_factors), rows summing per factor.

    ``random_state`` seeds the trees' tie-breaking (None: numpy's global RNG, as the reference).
    """
    from ._dci import gbt_importance_matrix

    kwargs = {} if backend is None else {"backend": backend}
    return np.asarray(
        gbt_importance_matrix(
            codes, factors, test_codes, test_factors, random_state=random_state, **kwargs
        )[0]
    )


def mutual_information_matrix(codes, factors, test_codes=None, test_factors=None, *,
                              num_bins=20):
    """Discrete MI (nats) between 20-bin histogram codes and factors; the test set is unused."""
    del test_codes, test_factors
    num_bins = check_num_bins(num_bins, np.shape(codes)[0])  # as MIG: more samples than bins
    binned = _information.histogram_discretize(codes, num_bins)
    return _information.mutual_info_matrix(binned, factors)


def accuracy_svm_matrix(codes, factors, test_codes, test_factors):
    """SAP's matrix: test accuracy of a linear SVM predicting each factor from each single code."""
    from ._sap import sap_score_matrix

    return np.asarray(
        sap_score_matrix(codes, factors, test_codes, test_factors, continuous_factors=False)
    )


#: Matrix functions by name (the reference's gin names).
MATRIX_FNS = {
    "importance_gbt_matrix": importance_gbt_matrix,
    "mutual_information_matrix": mutual_information_matrix,
    "accuracy_svm_matrix": accuracy_svm_matrix,
}


# ---------------------------------------------------------------------------------------------
# Aggregations: (matrix (D, K), training factors (N, K)) -> dict
# ---------------------------------------------------------------------------------------------


def _dci_disentanglement_per_code(matrix):
    return 1.0 - scipy.stats.entropy(matrix.T + 1e-11, base=matrix.shape[1])


def _dci_completeness_per_factor(matrix):
    return 1.0 - scipy.stats.entropy(matrix + 1e-11, base=matrix.shape[0])


def _weighted(per_item, matrix, axis):
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    weights = matrix.sum(axis=axis) / matrix.sum()
    return float(np.sum(per_item * weights))


def aggregation_dci(matrix, factors=None) -> dict:
    """DCI disentanglement and completeness of ``matrix`` (keys in the module docstring)."""
    del factors
    matrix = np.asarray(matrix, dtype=np.float64)
    per_code = _dci_disentanglement_per_code(matrix)
    per_factor = _dci_completeness_per_factor(matrix)
    disentanglement = _weighted(per_code, matrix, axis=1)
    score = {
        "dci_disentanglement": disentanglement,
        "dci_completeness": _weighted(per_factor, matrix, axis=0),
        "dci": disentanglement,
    }
    for d in range(per_code.shape[0]):
        score[f"dci_disentanglement.code_{d}"] = float(per_code[d])
    for k in range(per_factor.shape[0]):  # the reference's key name (values are per factor)
        score[f"dci_completeness.code_{k}"] = float(per_factor[k])
    return score


def aggregation_mig(matrix, factors) -> dict:
    """Gap of the two largest entries per factor over the factor entropy of ``factors`` (N, K)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    entropy = _information.discrete_entropy(factors)
    top = np.sort(matrix, axis=0)[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_factor = np.divide(top[0, :] - top[1, :], entropy)
    score = {"mig": float(np.mean(per_factor))}
    for k in range(per_factor.shape[0]):
        score[f"mig.factor_{k}"] = float(per_factor[k])
    return score


def aggregation_sap(matrix, factors=None) -> dict:
    """Gap of the two largest entries per factor (SAP)."""
    del factors
    top = np.sort(np.asarray(matrix, dtype=np.float64), axis=0)
    per_factor = top[-1, :] - top[-2, :]
    score = {"sap": float(np.mean(per_factor))}
    for k in range(per_factor.shape[0]):
        score[f"sap.factor_{k}"] = float(per_factor[k])
    return score


def compute_modularity_per_code(matrix) -> np.ndarray:
    """Modularity of each code (row) of ``matrix``; 0 for an all-zero row."""
    squared = np.square(np.asarray(matrix, dtype=np.float64))
    max_squared = np.max(squared, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (np.sum(squared, axis=1) - max_squared) / (max_squared * (squared.shape[1] - 1.0))
    per_code = 1.0 - delta
    per_code[max_squared == 0.0] = 0.0
    return per_code


def aggregation_modularity(matrix, factors=None) -> dict:
    """Modularity (mean over codes) and its per-code values."""
    del factors
    per_code = compute_modularity_per_code(matrix)
    score = {"modularity": float(np.mean(per_code))}
    for d in range(per_code.shape[0]):
        score[f"modularity.code_{d}"] = float(per_code[d])
    return score


#: The four aggregations, in the reference's order.
AGGREGATIONS = (aggregation_dci, aggregation_mig, aggregation_sap, aggregation_modularity)


def aggregate_matrix(matrix, factors) -> dict:
    """``pr_curves_values`` then the four aggregations of one (D, K) matrix (un-namespaced)."""
    matrix = _check_matrix(matrix)
    scores = pr_curves_values(matrix)
    for aggregation in AGGREGATIONS:
        scores.update(aggregation(matrix, factors))
    return scores


def unified_scores(
    codes,
    factors,
    test_codes,
    test_factors,
    *,
    matrix_fns=("importance_gbt_matrix", "mutual_information_matrix", "accuracy_svm_matrix"),
    random_state=0,
) -> dict:
    """All four aggregations and the precision curve of each code-factor matrix.

    Parameters
    ----------
    codes : array of shape (n_train, n_codes), n_codes >= 2
    factors : int array of shape (n_train, n_factors)
    test_codes : array of shape (n_test, n_codes)
    test_factors : int array of shape (n_test, n_factors)
    matrix_fns : sequence of str or callable
        Names in :data:`MATRIX_FNS` or callables
        ``f(codes, factors, test_codes, test_factors) -> (n_codes, n_factors)`` named by their
        ``__name__``. Default: all three of the reference (it has no study default).
    random_state : None, int, RandomState or list of int, default=0
        Seeds the boosted trees of ``"importance_gbt_matrix"`` (see :func:`fastdis.metrics.dci`:
        with the same seed both fit the same classifiers, which
        :func:`fastdis.metrics.shared_fits` then fits once).

    Returns
    -------
    dict
        For each matrix ``m``: ``"m.area_precision"``, ``"m.max_precision"``, then the DCI,
        MIG, SAP and modularity keys listed in the module docstring, as ``"m.{key}"``.

    Raises
    ------
    ValueError
        On malformed arrays, fewer than 2 codes (top-two gaps need two), a constant train
        factor (zero entropy), or an unknown matrix name.

    References
    ----------
    Locatello et al., "A Sober Look at the Unsupervised Learning of Disentangled Representations
    and their Evaluation", JMLR 2020.
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    check_informative_factors(factors)
    check_min_columns(factors, 2, name="factors",
                      why="DCI and modularity normalise by n_factors - 1 or log(n_factors)")
    if codes.shape[1] < 2:
        raise ValueError(
            f"codes must have at least 2 columns: MIG and SAP take the gap between the two best "
            f"codes; got {codes.shape[1]}."
        )
    if isinstance(matrix_fns, str) or callable(matrix_fns):
        matrix_fns = (matrix_fns,)
    resolved = []
    for fn in matrix_fns:
        if isinstance(fn, str):
            if fn not in MATRIX_FNS:
                raise ValueError(
                    f"matrix_fns entries must be one of {list(MATRIX_FNS)} or callables; got "
                    f"{fn!r}."
                )
            matrix_fn = MATRIX_FNS[fn]
            if fn == "importance_gbt_matrix":
                matrix_fn = functools.partial(matrix_fn, random_state=random_state)
            resolved.append((fn, matrix_fn))
        elif callable(fn):
            resolved.append((fn.__name__, fn))
        else:
            raise ValueError(f"matrix_fns entries must be names or callables; got {fn!r}.")
    per_matrix: dict[str, dict] = {}
    for name, fn in resolved:
        matrix = np.asarray(fn(codes, factors, test_codes, test_factors))
        if matrix.shape != (codes.shape[1], factors.shape[1]):
            raise ValueError(
                f"matrix function {name} returned shape {matrix.shape}; expected (n_codes, "
                f"n_factors) = {(codes.shape[1], factors.shape[1])}."
            )
        per_matrix.setdefault(name, {}).update(aggregate_matrix(matrix, factors))
    return {f"{name}.{key}": value for name, inner in per_matrix.items()
            for key, value in inner.items()}
