"""Separated Attribute Predictability (SAP), compiled.

For every pair (code :math:`i`, factor :math:`k`) SAP scores how well the single code predicts
the factor, then averages over factors the gap between the two most predictive codes:

.. math::

    \\mathrm{SAP} = \\frac{1}{K} \\sum_k \\left( S_{(1)k} - S_{(2)k} \\right)

where :math:`S_{(1)k} \\ge S_{(2)k}` are the two largest entries of column :math:`k` of the
(n_codes, n_factors) score matrix :math:`S`. For discrete factors :math:`S_{ik}` is the test
accuracy of ``LinearSVC(C=0.01, class_weight="balanced")`` trained on code :math:`i` alone; for
continuous factors it is the squared Pearson correlation on the training set (the test set is
unused), 0 where the code's variance is at most 1e-12.

Reference: Kumar, Sattigeri, Balakrishnan, "Variational Inference of Disentangled Latent Concepts
from Unlabeled Observations", ICLR 2018, Section 3; disentanglement_lib ``sap_score.py``.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_informative_factors, check_train_test
from ._linear import linear_svc_accuracy_matrix

__all__ = ["sap_score", "sap_score_matrix", "avg_diff_top_two"]


def _check_inputs(codes, factors, test_codes, test_factors, continuous_factors):
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors, continuous_factors=continuous_factors
    )
    if continuous_factors:
        if codes.shape[0] < 2:
            raise ValueError(f"codes has {codes.shape[0]} sample; correlations need at least 2.")
        constant = np.flatnonzero(np.ptp(factors, axis=0) == 0)
        if constant.size:
            raise ValueError(
                f"factors[:, {constant[0]}] is constant: its correlation with any code is "
                "undefined (the reference returns nan). Drop that column."
            )
    else:
        check_informative_factors(factors)
    return codes, factors, test_codes, test_factors


def _squared_correlation_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(n_codes, n_factors) squared Pearson r, as dlib's ``np.cov(mu_i, y_j, ddof=1)`` loop.

    All covariances come from one product of the centred float64 matrices. A code with sample
    variance <= 1e-12 scores 0 (dlib's guard); the factor variance is not guarded (the wrapper
    rejects constant factors).
    """
    mus = codes.astype(np.float64)
    ys = factors.astype(np.float64)
    mus = mus - mus.mean(axis=0)
    ys = ys - ys.mean(axis=0)
    ddof = mus.shape[0] - 1
    cov = (mus.T @ ys) / ddof  # (D, K)
    var_mu = np.einsum("nd,nd->d", mus, mus) / ddof
    var_y = np.einsum("nk,nk->k", ys, ys) / ddof
    with np.errstate(divide="ignore", invalid="ignore"):
        score = cov**2 * 1.0 / (var_mu[:, None] * var_y[None, :])
    return np.where(var_mu[:, None] > 1e-12, score, 0.0)


def sap_score_matrix(codes, factors, test_codes, test_factors, *,
                     continuous_factors: bool = False) -> np.ndarray:
    """Score matrix of SAP: how well each single code predicts each factor.

    disentanglement_lib's ``compute_score_matrix`` in the (n_samples, n_columns) layout.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        Training representation.
    factors : array of shape (n_samples, n_factors)
        Training factors; integers >= 0, or real values if ``continuous_factors``.
    test_codes, test_factors : arrays of shape (n_test, n_codes), (n_test, n_factors)
        Held-out set; used only for discrete factors.
    continuous_factors : bool, default=False
        False (the study setting): test accuracy of ``LinearSVC(C=0.01,
        class_weight="balanced")`` fit on one code. True: squared Pearson correlation.

    Returns
    -------
    matrix : float64 array of shape (n_codes, n_factors), values in [0, 1].

    Raises
    ------
    ValueError
        On malformed input, or when a training factor takes a single value (no classifier can
        be trained; the reference fails inside scikit-learn or returns nan).
    """
    codes, factors, test_codes, test_factors = _check_inputs(
        codes, factors, test_codes, test_factors, continuous_factors
    )
    if continuous_factors:
        return _squared_correlation_matrix(codes, factors)
    return linear_svc_accuracy_matrix(codes, factors, test_codes, test_factors)


def avg_diff_top_two(matrix) -> float:
    """Mean over columns of (largest - second largest) entry: dlib's ``compute_avg_diff_top_two``.

    Parameters
    ----------
    matrix : array of shape (n_codes, n_factors), n_codes >= 2.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(
            "matrix must be 2-D with at least two rows (codes) to compare the top two; got "
            f"shape {matrix.shape}."
        )
    top_two = np.sort(matrix, axis=0)[-2:]
    return float(np.mean(top_two[1] - top_two[0]))


def sap_score(codes, factors, test_codes, test_factors, *,
              continuous_factors: bool = False) -> dict:
    """SAP score: mean gap between the two codes that best predict each factor.

    Parameters
    ----------
    codes, factors, test_codes, test_factors, continuous_factors
        As in :func:`sap_score_matrix` (study default ``continuous_factors=False``).

    Returns
    -------
    dict with key ``"SAP_score"`` (float in [0, 1]; higher means each factor is captured by a
    single code).

    Raises
    ------
    ValueError
        On malformed input, fewer than two codes, or a constant training factor.
    """
    matrix = sap_score_matrix(codes, factors, test_codes, test_factors,
                              continuous_factors=continuous_factors)
    return {"SAP_score": avg_diff_top_two(matrix)}
