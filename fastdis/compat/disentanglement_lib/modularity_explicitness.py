"""Drop-in for ``disentanglement_lib.evaluation.metrics.modularity_explicitness`` (gin name
``modularity_explicitness``).

Codes ``mus`` are (n_codes, n_points) and factors ``ys`` (n_factors, n_points), as in the
reference. Modularity matches to ~1e-15; explicitness fits the reference's
``LogisticRegression()`` along scikit-learn's own lbfgs path (see :mod:`fastdis.metrics._linear`).

The reference's failure modes are kept but raise a clear ``ValueError``:

* train and test labels are one-hot encoded by separately fitted binarizers, so a test set
  that lacks a class seen in training (or has one not seen) cannot be scored;
* a constant code is standardised by dividing by a zero standard deviation.

:func:`fastdis.metrics._modularity_explicitness` fixes both.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..._parallel import default_workers, thread_map
from ...metrics import _linear
from ...metrics import _modularity_explicitness as _array_api
from . import utils

DLIB_NAMES = ("compute_modularity_explicitness", "explicitness_per_factor", "modularity")


@utils.gin_configurable("modularity_explicitness")
def compute_modularity_explicitness(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    num_test=None,
    batch_size=16,
):
    """Modularity and explicitness on points sampled as the reference (study: 10000 / 5000).

    Returns ``{"modularity_score", "explicitness_score_train", "explicitness_score_test"}``.
    """
    del artifact_dir
    if num_train is None or num_test is None:
        raise ValueError(
            "compute_modularity_explicitness needs num_train and num_test "
            "(the study uses 10000 and 5000)."
        )
    scores = {}
    mus_train, ys_train, mus_test, ys_test = utils.generate_train_test(
        ground_truth_data, representation_function, num_train, num_test, random_state,
        batch_size,
    )
    discretized_mus = utils.make_discretizer(mus_train)
    mutual_information = utils.discrete_mutual_info(discretized_mus, ys_train)
    scores["modularity_score"] = modularity(mutual_information)
    explicitness_score_train = np.zeros([ys_train.shape[0], 1])
    explicitness_score_test = np.zeros([ys_test.shape[0], 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        mus_train_norm, mean_mus, stddev_mus = utils.normalize_data(mus_train)
        mus_test_norm, _, _ = utils.normalize_data(mus_test, mean_mus, stddev_mus)
    if not (np.isfinite(mus_train_norm).all() and np.isfinite(mus_test_norm).all()):
        constant = np.flatnonzero(stddev_mus == 0)
        raise ValueError(
            f"code {constant[0] if constant.size else '?'} is constant on the training set: "
            "disentanglement_lib's standardisation divides by its zero standard deviation "
            "(the reference then fails inside scikit-learn). "
            "fastdis.metrics._modularity_explicitness maps constant codes to 0 instead."
        )
    aucs = thread_map(  # one independent, single-threaded fit per factor
        lambda i: explicitness_per_factor(mus_train_norm, ys_train[i, :], mus_test_norm,
                                          ys_test[i, :]),
        range(ys_train.shape[0]),
        default_workers(),
    )
    for i, (train_auc, test_auc) in enumerate(aucs):
        explicitness_score_train[i], explicitness_score_test[i] = train_auc, test_auc
    scores["explicitness_score_train"] = float(np.mean(explicitness_score_train))
    scores["explicitness_score_test"] = float(np.mean(explicitness_score_test))
    return scores


def explicitness_per_factor(mus_train, y_train, mus_test, y_test):
    """(train, test) macro ROC-AUC of ``LogisticRegression()`` predicting one factor.

    mus_*: standardised codes (n_codes, n_points); y_*: labels (n_points,).
    """
    x_train = np.transpose(mus_train)
    x_test = np.transpose(mus_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs stops at max_iter=100, as in the reference
        # In the codes' own dtype (float32 from a TF encoder), as scikit-learn fits them.
        clf = _linear.LogisticRegression().fit(x_train, y_train)
    y_pred_train = clf.predict_proba(x_train)
    y_pred_test = clf.predict_proba(x_test)
    roc_train = _roc_auc_own_classes(y_train, y_pred_train, "training")
    roc_test = _roc_auc_own_classes(y_test, y_pred_test, "test")
    return roc_train, roc_test


def _roc_auc_own_classes(labels, proba, which):
    """roc_auc_score(MultiLabelBinarizer().fit_transform(labels[:, None]), proba), as dlib.

    The indicator columns are the classes present in ``labels`` (not the model's classes).
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if classes.size != proba.shape[1]:
        raise ValueError(
            f"the {which} labels take {classes.size} distinct values but the classifier was "
            f"trained on {proba.shape[1]} classes: disentanglement_lib one-hot encodes train "
            "and test labels separately and cannot score this (a class is missing from one "
            "set). Sample more test points, or use fastdis.metrics._modularity_explicitness, "
            "which encodes test labels with the training classes."
        )
    return float(np.mean(_linear.roc_auc_columns(labels[:, None] == classes[None, :], proba)))


def modularity(mutual_information):
    """Modularity from a (n_codes, n_factors) mutual-information matrix."""
    return _array_api.modularity(mutual_information)
