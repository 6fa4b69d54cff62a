"""DCI: disentanglement, completeness and informativeness from boosted-tree importances.

Eastwood & Williams' framework as implemented in disentanglement_lib (``evaluation/metrics/
dci.py``): a gradient-boosted classifier predicts each factor from all codes; its impurity
importances form the matrix :math:`R` of shape (n_codes, n_factors), and

.. math::

    D = \\sum_i \\rho_i \\left(1 - H_K(P_{i\\cdot})\\right), \\qquad
    C = \\sum_k \\rho_k \\left(1 - H_D(P_{\\cdot k})\\right),

where :math:`P_{i\\cdot}` is row i of :math:`R + 10^{-11}` normalised to sum 1 (scipy's
``entropy`` normalises), :math:`H_K` is the entropy in base K = n_factors (base D = n_codes for
the columns), and the weights :math:`\\rho_i = \\sum_k R_{ik} / \\sum R` (:math:`\\rho_k` likewise
for columns; all ones when :math:`R = 0`). Informativeness is the mean accuracy of the
classifiers on the training and test codes (dlib names these ``*_err``; they are accuracies).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_matrix, check_min_columns, check_train_test
from ._gbt import gbt_importance_matrix

__all__ = [
    "dci",
    "gbt_importance_matrix",
    "disentanglement",
    "completeness",
    "disentanglement_per_code",
    "completeness_per_factor",
]


def _entropy_columns(p: np.ndarray, base: float) -> np.ndarray:
    """scipy.stats.entropy(p, base=base) of each column of a positive matrix p."""
    from scipy.stats import entropy

    return entropy(p, base=base, axis=0)


def _check_importance(importance_matrix) -> np.ndarray:
    return check_matrix(importance_matrix, name="importance_matrix", nonnegative=True)


def disentanglement_per_code(importance_matrix) -> np.ndarray:
    """``1 - H_K(R[i, :] + 1e-11)`` for every code i (K = n_factors), shape (n_codes,)."""
    matrix = _check_importance(importance_matrix)
    return 1.0 - _entropy_columns(matrix.T + 1e-11, base=matrix.shape[1])


def completeness_per_factor(importance_matrix) -> np.ndarray:
    """``1 - H_D(R[:, k] + 1e-11)`` for every factor k (D = n_codes), shape (n_factors,)."""
    matrix = _check_importance(importance_matrix)
    return 1.0 - _entropy_columns(matrix + 1e-11, base=matrix.shape[0])


def disentanglement(importance_matrix) -> float:
    """Importance-weighted mean of :func:`disentanglement_per_code` (dlib's formula).

    An all-zero matrix weights codes equally (dlib: ``np.ones_like``). With a single factor the
    entropy base is 1 and, exactly as in dlib, the result is not finite.
    """
    matrix = _check_importance(importance_matrix)
    per_code = disentanglement_per_code(matrix)
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    code_importance = matrix.sum(axis=1) / matrix.sum()
    return float(np.sum(per_code * code_importance))


def completeness(importance_matrix) -> float:
    """Importance-weighted mean of :func:`completeness_per_factor` (dlib's formula)."""
    matrix = _check_importance(importance_matrix)
    per_factor = completeness_per_factor(matrix)
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    factor_importance = matrix.sum(axis=0) / matrix.sum()
    return float(np.sum(per_factor * factor_importance))


def dci(codes, factors, test_codes, test_factors, *, backend: str = "numba", random_state=0):
    """DCI scores of a representation (disentanglement_lib's ``_compute_dci``).

    For each factor a boosted-tree classifier (scikit-learn's ``GradientBoostingClassifier()``
    defaults: 100 stages, depth 3, learning rate 0.1) is fitted on ``codes``; its feature
    importances form the importance matrix R (n_codes, n_factors) scored by
    :func:`disentanglement` and :func:`completeness`; informativeness is the classifiers' mean
    accuracy.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        Training representations.
    factors : integer array of shape (n_samples, n_factors)
        Training factors; every factor needs at least two values.
    test_codes : array of shape (n_test, n_codes)
    test_factors : integer array of shape (n_test, n_factors)
    backend : {"numba", "lightgbm", "sklearn"}, default="numba"
        Boosted-tree engine (see ``fastdis.metrics._gbt``). ``"numba"`` reproduces scikit-learn
        bit for bit (several times faster than the reference: ``bench/RESULTS.md``); ``"sklearn"``
        runs scikit-learn itself; ``"lightgbm"`` is an approximation and no faster here (at the
        study sizes 0.04-0.07 off in disentanglement and completeness on structured codes:
        ``bench/bench_dci_binned.py``).
    random_state : None, int, RandomState or list of int, default=0
        Seeds the trees' tie-breaking feature order (as scikit-learn's ``random_state``), so a
        call gives the same numbers wherever it runs. ``None`` draws from numpy's global RNG, as
        the reference's unseeded ``GradientBoostingClassifier()`` does (the compat module). A
        list (numba backend) seeds factor k's classifier with ``random_state[k]``, as the
        batch does (:func:`fastdis.metrics.fit_seeds`). Integer seeds let
        :func:`fastdis.metrics.shared_fits` share the fit with other metrics.

    Returns
    -------
    dict with float values
        ``"informativeness_train"``, ``"informativeness_test"`` (accuracies in [0, 1]),
        ``"disentanglement"``, ``"completeness"`` (in [0, 1] up to rounding).

    Raises
    ------
    ValueError
        If shapes disagree, values are NaN/infinite or negative factors, or a training factor
        takes a single value (scikit-learn would fail inside the classifier).

    References
    ----------
    C. Eastwood and C. K. I. Williams, "A Framework for the Quantitative Evaluation of
    Disentangled Representations", ICLR 2018.
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    for name, array in (("factors", factors), ("codes", codes)):
        check_min_columns(array, 2, name=name, why=f"DCI takes entropies in base n_{name} "
                          "(the reference returns nan)")
    importance, train_acc, test_acc = gbt_importance_matrix(
        codes, factors, test_codes, test_factors, backend=backend, random_state=random_state
    )
    return {
        "informativeness_train": train_acc,
        "informativeness_test": test_acc,
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
    }
