"""Drop-in for ``disentanglement_lib.evaluation.metrics.dci`` (gin ``dci``, ``dci_validation``).

Layouts follow the reference: codes ``(n_codes, n_points)``, factors ``(n_factors, n_points)``.
The boosted trees come from :mod:`fastdis.metrics._gbt`; set :data:`BACKEND` to ``"sklearn"`` to
run scikit-learn itself. Either way the per-tree seeds are drawn from numpy's *global* RNG, as
the reference's ``GradientBoostingClassifier()`` (``random_state=None``) does, so seeding
``np.random`` makes runs reproducible and leaves the global RNG where the reference leaves it.
"""

from __future__ import annotations

import numpy as np

from ...metrics import _dci as _dci
from . import utils

DLIB_NAMES = (
    "compute_dci",
    "_compute_dci",
    "compute_dci_on_fixed_data",
    "compute_importance_gbt",
    "disentanglement_per_code",
    "disentanglement",
    "completeness_per_factor",
    "completeness",
)

#: Boosted-tree engine: "numba" (fast, scikit-learn bit for bit), "sklearn", "lightgbm".
BACKEND = "numba"


@utils.gin_configurable("dci")
def compute_dci(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    num_test=None,
    batch_size=16,
):
    """DCI on ``num_train`` training and ``num_test`` test points (study: 10000 and 5000).

    Samples the training set, then the test set, from ``random_state`` as the reference does.
    Returns ``{"informativeness_train", "informativeness_test", "disentanglement",
    "completeness"}``.
    """
    del artifact_dir
    if num_train is None or num_test is None:
        raise ValueError("compute_dci needs num_train and num_test (the study uses 10000, 5000).")
    mus_train, ys_train, mus_test, ys_test = utils.generate_train_test(
        ground_truth_data, representation_function, num_train, num_test, random_state,
        batch_size,
    )
    return _compute_dci(mus_train, ys_train, mus_test, ys_test)


def _compute_dci(mus_train, ys_train, mus_test, ys_test):
    """DCI scores from codes (n_codes, n_points) and factors (n_factors, n_points)."""
    importance_matrix, train_err, test_err = compute_importance_gbt(
        mus_train, ys_train, mus_test, ys_test
    )
    return {
        "informativeness_train": train_err,
        "informativeness_test": test_err,
        "disentanglement": disentanglement(importance_matrix),
        "completeness": completeness(importance_matrix),
    }


@utils.gin_configurable("dci_validation")
def compute_dci_on_fixed_data(
    observations, labels, representation_function, train_percentage=None, batch_size=100
):
    """DCI on fixed observations with labels (n_factors, n_points), split without shuffling."""
    if train_percentage is None:
        raise ValueError("compute_dci_on_fixed_data needs train_percentage (a fraction in (0, 1)).")
    mus = utils.obtain_representation(observations, representation_function, batch_size)
    if labels.shape[1] != observations.shape[0]:
        raise ValueError("Wrong labels shape: labels must be (n_factors, n_observations).")
    if mus.shape[1] != observations.shape[0]:
        raise ValueError("Wrong representation shape.")
    mus_train, mus_test = utils.split_train_test(mus, train_percentage)
    ys_train, ys_test = utils.split_train_test(labels, train_percentage)
    return _compute_dci(mus_train, ys_train, mus_test, ys_test)


def compute_importance_gbt(x_train, y_train, x_test, y_test):
    """Importance matrix (n_codes, n_factors), mean train accuracy, mean test accuracy.

    x: (n_codes, n_points), y: (n_factors, n_points). One boosted-tree classifier per factor,
    seeds from numpy's global RNG (as the reference's ``random_state=None``).
    """
    importance_matrix, train_acc, test_acc = _dci.gbt_importance_matrix(
        np.asarray(x_train).T,
        np.asarray(y_train).T,
        np.asarray(x_test).T,
        np.asarray(y_test).T,
        backend=BACKEND,
        random_state=None,
    )
    return importance_matrix, train_acc, test_acc


def disentanglement_per_code(importance_matrix):
    """Disentanglement of each code, shape (n_codes,)."""
    return _dci.disentanglement_per_code(importance_matrix)


def disentanglement(importance_matrix):
    """Importance-weighted disentanglement of the representation."""
    return _dci.disentanglement(importance_matrix)


def completeness_per_factor(importance_matrix):
    """Completeness of each factor, shape (n_factors,)."""
    return _dci.completeness_per_factor(importance_matrix)


def completeness(importance_matrix):
    """Importance-weighted completeness of the representation."""
    return _dci.completeness(importance_matrix)
