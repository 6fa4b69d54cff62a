"""Modularity and explicitness (Ridgeway & Mozer), compiled.

**Modularity** asks whether each code carries information about at most one factor. With
:math:`m_{ik}` the mutual information between binned code :math:`i` and factor :math:`k`:

.. math::

    \\delta_i = \\frac{\\sum_k m_{ik}^2 - \\max_k m_{ik}^2}{\\max_k m_{ik}^2 \\,(K - 1)},
    \\qquad \\mathrm{modularity} = \\frac{1}{D} \\sum_i (1 - \\delta_i)

with :math:`1 - \\delta_i := 0` for a code that carries no information (:math:`\\max_k m_{ik} = 0`).

**Explicitness** asks whether each factor is linearly decodable from the whole code: codes are
z-scored with the training mean and standard deviation, a multinomial logistic regression
(scikit-learn's ``LogisticRegression()`` defaults, reproduced by
:class:`fastdis.metrics._linear.LogisticRegression`) is fit per factor, and the score is the
macro ROC-AUC of its one-vs-rest class probabilities, averaged over factors, on the training and
on the test set.

Deliberate fixes of disentanglement_lib bugs (the compat layer keeps dlib's behaviour):

* dlib one-hot encodes train and test labels with separately fitted ``MultiLabelBinarizer``\\ s
  and crashes when the test set lacks a class seen in training. Here test labels are encoded
  with the *training* classes; a class without positive (or negative) test samples has no
  defined AUC and is left out of the macro average, and a test label never seen in training is
  a negative for every class.
* dlib divides by the standard deviation of a constant code (NaN, then scikit-learn rejects the
  input). Here a constant code standardises to 0 (it carries no information).

Reference: Ridgeway & Mozer, "Learning Deep Disentangled Embeddings With the F-Statistic Loss",
NeurIPS 2018 (https://arxiv.org/abs/1802.05312); disentanglement_lib
``modularity_explicitness.py``.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._parallel import default_workers, thread_map
from .._validation import (
    check_informative_factors,
    check_min_columns,
    check_num_bins,
    check_train_test,
)
from ._information import histogram_discretize, mutual_info_matrix
from ._linear import LogisticRegression, roc_auc_columns

__all__ = [
    "modularity_explicitness",
    "modularity",
    "explicitness_per_factor",
    "standardize_codes",
]


def modularity(mutual_information) -> float:
    """Modularity score from a (n_codes, n_factors) mutual-information matrix.

    dlib's ``modularity``: see the module docstring for the formula. Codes whose largest
    squared MI is 0 score 0. With a single factor, ``K - 1 = 0`` and every informative code
    scores ``1 - 0/0`` = nan, as in dlib.

    Returns
    -------
    float in [0, 1] (mean over codes).
    """
    mi = np.asarray(mutual_information, dtype=np.float64)
    if mi.ndim != 2 or mi.size == 0:
        raise ValueError(
            f"mutual_information must be a non-empty 2-D (n_codes, n_factors) array; got "
            f"shape {mi.shape}."
        )
    squared = np.square(mi)
    max_squared = np.max(squared, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (np.sum(squared, axis=1) - max_squared) / (max_squared * (squared.shape[1] - 1.0))
    score = 1.0 - delta
    score[max_squared == 0.0] = 0.0
    return float(np.mean(score))


def standardize_codes(codes, test_codes):
    """z-score both sets with the training mean and (ddof=0) std, as dlib's ``normalize_data``.

    dlib reduces its ``(n_codes, n_points)`` codes, a transposed view of the ``(n_points,
    n_codes)`` C-ordered array its sampler stacks, so numpy accumulates point after point; the
    same reduction here (axis 0 of the C-ordered codes, in the codes' dtype) makes float32 results
    bit-identical. A constant code (std 0) maps to 0 instead of NaN (fastdis fix).
    """
    train = np.ascontiguousarray(codes)
    mean = np.mean(train, axis=0)
    std = np.std(train, axis=0)
    safe = np.where(std == 0, np.ones_like(std), std)
    return (train - mean) / safe, (np.ascontiguousarray(test_codes) - mean) / safe


def _onehot(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return labels[:, np.newaxis] == classes[np.newaxis, :]


def explicitness_per_factor(
    codes, factor, test_codes, test_factor, *, name: str = "test_factor"
) -> tuple[float, float]:
    """Train and test macro ROC-AUC of a logistic regression predicting one factor.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        Standardised training codes (see :func:`standardize_codes`).
    factor : int array of shape (n_samples,)
        Training labels of the factor (at least two classes).
    test_codes : array of shape (n_test, n_codes)
    test_factor : int array of shape (n_test,)

    Returns
    -------
    (auc_train, auc_test) : floats in [0, 1]. Test labels are one-hot encoded with the training
    classes; classes without both positives and negatives in a set are left out of its average.
    """
    model = LogisticRegression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs stops at max_iter=100, as in the reference
        # In the codes' own dtype, as scikit-learn fits them: bit for bit its coefficients.
        model.fit(codes, factor)
    aucs = []
    for x, y in ((codes, factor), (test_codes, test_factor)):
        per_class = roc_auc_columns(_onehot(np.asarray(y), model.classes_), model.predict_proba(x))
        defined = per_class[~np.isnan(per_class)]
        if not defined.size:  # only reachable for the test set (training has >= 2 classes)
            raise ValueError(
                f"{name}: no training class has both positive and negative test samples (the "
                "test set holds one training class, or only values unseen in training), so the "
                "test ROC-AUC is undefined. Sample a larger or more varied test set."
            )
        aucs.append(float(np.mean(defined)))
    return aucs[0], aucs[1]


def modularity_explicitness(codes, factors, test_codes, test_factors, *,
                            num_bins: int = 20) -> dict:
    """Modularity (on the training set) and explicitness (train and test ROC-AUC).

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        Training representation.
    factors : int array of shape (n_samples, n_factors)
        Training factors.
    test_codes : array of shape (n_test, n_codes)
    test_factors : int array of shape (n_test, n_factors)
    num_bins : int, default=20
        Histogram bins per code for the mutual information (the study's discretizer).

    Returns
    -------
    dict with keys ``"modularity_score"``, ``"explicitness_score_train"``,
    ``"explicitness_score_test"`` (floats in [0, 1]).

    Raises
    ------
    ValueError
        On malformed input, mismatched code counts, or a factor that takes a single value in
        training (no classifier can be fit).
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    num_bins = check_num_bins(num_bins, codes.shape[0])
    check_informative_factors(factors)
    check_min_columns(factors, 2, name="factors",
                      why="modularity divides by n_factors - 1 (the reference returns nan)")
    mi = mutual_info_matrix(histogram_discretize(codes, num_bins), factors)
    train_std, test_std = standardize_codes(codes, test_codes)
    n_factors = factors.shape[1]
    aucs = thread_map(  # one independent, single-threaded fit per factor
        lambda k: explicitness_per_factor(
            train_std, factors[:, k], test_std, test_factors[:, k], name=f"test_factors[:, {k}]"
        ),
        range(n_factors),
        default_workers(),
    )
    train_auc, test_auc = np.array(aucs).T
    return {
        "modularity_score": modularity(mi),
        "explicitness_score_train": float(np.mean(train_auc)),
        "explicitness_score_test": float(np.mean(test_auc)),
    }
