"""Drop-in for ``disentanglement_lib.evaluation.metrics.reduced_downstream_task``.

Same names, positional signatures, keys and ``random_state`` draws (per training size: train
set, then test set). The computation runs through
:func:`fastdis.metrics._downstream.reduced_downstream_task`, which computes each distinct DCI
importance matrix once (the reference refits the identical first-step matrix for every factor).
"""

from __future__ import annotations

import numpy as np

from ...metrics import _downstream as _downstream
from . import utils
from .downstream_task import (  # noqa: F401  (same helper in the reference)
    _compute_loss as compute_predictive_accuracy,
)

#: Functions patch() routes from the reference module to this one.
DLIB_NAMES = (
    "compute_reduced_downstream_task",
    "compute_reduced_representation",
    "compute_factorwise_dci",
    "compute_predictive_accuracy",
)


@utils.gin_configurable("reduced_downstream_task")
def compute_reduced_downstream_task(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_factors_to_remove=None,
    num_train=None,
    num_test=None,
    batch_size=16,
):
    """Downstream accuracies after removing the most informative codes of each factor."""
    del artifact_dir
    num_factors_to_remove = utils.require(
        num_factors_to_remove,
        "num_factors_to_remove",
        function="compute_reduced_downstream_task",
        usual="1",
    )
    num_train = utils.require(
        num_train, "num_train", function="compute_reduced_downstream_task", usual="[100]"
    )
    num_test = utils.require(
        num_test, "num_test", function="compute_reduced_downstream_task", usual="100"
    )
    measure = _correlation_measure()
    scores = {}
    for train_size in num_train:
        mus_train, ys_train, mus_test, ys_test = utils.generate_train_test(
            ground_truth_data, representation_function, train_size, num_test, random_state,
            batch_size,
        )
        def importance(codes, factors, test_codes, test_factors, _m=measure):
            # the reference's layout; factorwise DCI draws from numpy's global RNG as there
            return _m(codes.T, factors.T, test_codes.T, test_factors.T)

        scores.update(
            _downstream.reduced_downstream_task(
                mus_train.T,
                ys_train.T,
                mus_test.T,
                ys_test.T,
                num_factors_to_remove=num_factors_to_remove,
                predictor=utils.make_predictor_fn(),
                importance=importance,
                share_fits=False,  # refit per factor, drawing from np.random as the reference
            )
        )
    return scores


def _correlation_measure():
    """The gin binding ``reduced_representation.correlation_measure`` (the reference's
    ``factorwise_dci`` runs :func:`compute_factorwise_dci`), else factorwise DCI."""
    bound, measure = utils.gin_binding("reduced_representation", "correlation_measure")
    return measure if bound else compute_factorwise_dci


@utils.gin_configurable("reduced_representation")
def compute_reduced_representation(
    mus_train, ys_train, mus_test, ys_test, factor_of_interest, correlation_measure=None
):
    """Delete the code most important for ``factor_of_interest`` from (n_codes, n_points) sets."""
    if correlation_measure is None:  # not bound with gin (the decorator looked)
        correlation_measure = compute_factorwise_dci
    importance_matrix = correlation_measure(mus_train, ys_train, mus_test, ys_test)
    factor_to_remove_index = np.argmax(importance_matrix[:, factor_of_interest])
    return (
        np.delete(mus_train.copy(), factor_to_remove_index, axis=0),
        np.delete(mus_test.copy(), factor_to_remove_index, axis=0),
    )


@utils.gin_configurable("factorwise_dci")
def compute_factorwise_dci(mus_train, ys_train, mus_test, ys_test):
    """DCI gradient-boosting importance matrix (n_codes, n_factors) of (n_dims, n_points) sets."""
    from ...metrics._dci import gbt_importance_matrix

    importance_matrix = gbt_importance_matrix(
        np.asarray(mus_train).T,
        np.asarray(ys_train).T,
        np.asarray(mus_test).T,
        np.asarray(ys_test).T,
    )[0]
    return np.asarray(importance_matrix)
