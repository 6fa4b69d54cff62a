"""Drop-in for ``disentanglement_lib.evaluation.metrics.downstream_task``.

Same function names, positional signatures, result keys and draws from ``random_state`` (per
training size: the training set, then the test set, in batches of ``batch_size``); encoder
calls are batched in large chunks. The fits run through
:func:`fastdis.metrics._downstream.downstream_task`, with the reference's predictor factories
swapped for fastdis' fast estimators.
"""

from __future__ import annotations

import numpy as np

from ...metrics import _downstream as _downstream
from ...metrics._predictors import resolve_predictor
from . import utils

#: Functions patch() routes from the reference module to this one.
DLIB_NAMES = (
    "compute_downstream_task",
    "_compute_loss",
)


#: The study's values (``downstream_task_{boosted_trees,logistic_regression}.gin``).
STUDY_NUM_TRAIN = (10, 100, 1000, 10000)
STUDY_NUM_TEST = 5000


@utils.gin_configurable("downstream_task")
def compute_downstream_task(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=STUDY_NUM_TRAIN,
    num_test=STUDY_NUM_TEST,
    batch_size=16,
):
    """Accuracy of the configured predictor on each factor, for each training size.

    Returns the keys of :func:`fastdis.metrics._downstream.downstream_task` for every size in
    ``num_train`` (the predictor is ``utils.make_predictor_fn()``).
    """
    del artifact_dir
    scores = {}
    for train_size in num_train:
        mus_train, ys_train, mus_test, ys_test = utils.generate_train_test(
            ground_truth_data, representation_function, train_size, num_test, random_state,
            batch_size,
        )
        predictor_model = utils.make_predictor_fn()
        scores.update(
            _downstream.downstream_task(
                mus_train.T, ys_train.T, mus_test.T, ys_test.T, predictor=predictor_model
            )
        )
    return scores


def _compute_loss(x_train, y_train, x_test, y_test, predictor_fn):
    """Train and test accuracy per factor; x: (n_points, n_codes), y: (n_factors, n_points)."""
    return _downstream.predictive_accuracies(
        np.asarray(x_train),
        np.asarray(y_train).T,
        np.asarray(x_test),
        np.asarray(y_test).T,
        resolve_predictor(predictor_fn),
    )
