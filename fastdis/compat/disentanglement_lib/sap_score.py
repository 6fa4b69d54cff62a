"""Drop-in for ``disentanglement_lib.evaluation.metrics.sap_score`` (gin names ``sap_score``,
``sap_score_validation``).

Codes ``mus`` are (n_codes, n_points) and factors ``ys`` (n_factors, n_points), as in the
reference. Values are those of the reference: the squared correlations match to ~1e-15 and the
LinearSVC fits follow liblinear's iterates (see :mod:`fastdis.metrics._linear`).

Like the reference, each discrete-factor fit draws one number from numpy's *global* random state
(scikit-learn's ``_fit_liblinear`` seeds liblinear with ``np.random.randint``; the primal solver
never uses it), so code that samples from ``np.random`` afterwards sees the same stream.
"""

from __future__ import annotations

import numpy as np

from ...metrics import _linear
from ...metrics._sap import _squared_correlation_matrix, avg_diff_top_two
from . import utils

DLIB_NAMES = (
    "compute_sap",
    "_compute_sap",
    "compute_sap_on_fixed_data",
    "compute_score_matrix",
    "compute_avg_diff_top_two",
)


@utils.gin_configurable("sap_score")
def compute_sap(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    num_test=None,
    batch_size=16,
    continuous_factors=None,
):
    """SAP score on ``num_train`` training and ``num_test`` test points sampled as the reference.

    Study settings (``sap_score.gin``): ``num_train=10000, num_test=5000,
    continuous_factors=False``. Returns ``{"SAP_score"}``.
    """
    del artifact_dir
    if num_train is None or num_test is None:
        raise ValueError(
            "compute_sap needs num_train and num_test (the study uses 10000 and 5000)."
        )
    if continuous_factors is None:
        raise ValueError("compute_sap needs continuous_factors (the study uses False).")
    mus, ys, mus_test, ys_test = utils.generate_train_test(
        ground_truth_data, representation_function, num_train, num_test, random_state, batch_size
    )
    return _compute_sap(mus, ys, mus_test, ys_test, continuous_factors)


def _compute_sap(mus, ys, mus_test, ys_test, continuous_factors):
    """SAP from train/test codes (n_codes, n_points) and factors (n_factors, n_points)."""
    score_matrix = compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors)
    return {"SAP_score": compute_avg_diff_top_two(score_matrix)}


@utils.gin_configurable("sap_score_validation")
def compute_sap_on_fixed_data(
    observations,
    labels,
    representation_function,
    train_percentage=None,
    continuous_factors=None,
    batch_size=100,
):
    """SAP on fixed observations with labels (n_factors, n_observations), split in order."""
    if train_percentage is None or continuous_factors is None:
        raise ValueError(
            "compute_sap_on_fixed_data needs train_percentage and continuous_factors "
            "(the validation configs use 0.9 and False)."
        )
    mus = utils.obtain_representation(observations, representation_function, batch_size)
    if labels.shape[1] != observations.shape[0]:
        raise ValueError("Wrong labels shape: labels must be (n_factors, n_observations).")
    mus_train, mus_test = utils.split_train_test(mus, train_percentage)
    ys_train, ys_test = utils.split_train_test(labels, train_percentage)
    return _compute_sap(mus_train, ys_train, mus_test, ys_test, continuous_factors)


def compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors):
    """(n_codes, n_factors) matrix: squared correlation, or test accuracy of a 1-code LinearSVC.

    As the reference, a constant factor gives nan in the continuous case and an error (no
    second class to separate) in the discrete one.
    """
    mus = np.asarray(mus)
    ys = np.asarray(ys)
    if continuous_factors:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _squared_correlation_matrix(mus.T, ys.T)
    mus_test = np.asarray(mus_test)
    ys_test = np.asarray(ys_test)
    for j in range(ys.shape[0]):
        if np.unique(ys[j]).size < 2:
            raise ValueError(
                f"factor {j} takes a single value ({ys[j, 0]!r}) in the training set: "
                "LinearSVC needs samples of at least 2 classes (the reference fails here too)."
            )
    codes = np.ascontiguousarray(mus.T, dtype=np.float64)
    test_codes = np.ascontiguousarray(mus_test.T, dtype=np.float64)
    factors = ys.T
    test_factors = ys_test.T
    for _ in range(mus.shape[0] * ys.shape[0]):  # liblinear's seed, one per LinearSVC fit
        np.random.randint(np.iinfo("i").max)  # noqa: NPY002 (the reference's global draw)
    return _linear.linear_svc_accuracy_matrix(codes, factors, test_codes, test_factors)


def compute_avg_diff_top_two(matrix):
    """Mean over factors (columns) of the gap between the two highest scores."""
    return avg_diff_top_two(matrix)
