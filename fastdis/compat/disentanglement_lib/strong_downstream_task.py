"""Drop-in for ``disentanglement_lib.evaluation.metrics.strong_downstream_task``.

Same names, positional signatures, keys and draws. From ``random_state`` (per training size):
train factors, test factors, train observations, test observations, then for every target factor
and experiment the intervened train and test observations. From numpy's *global* random state,
as in the reference: the interventions (:func:`intervene`), one per (target, experiment) in the
same order. Seed ``np.random`` before the call to make it reproducible.

All sets are sampled first and encoded in large chunks; the fits then run through
:func:`fastdis.metrics._downstream.strong_downstream_task`.
"""

from __future__ import annotations

import numpy as np

from ...metrics import _downstream as _downstream
from . import utils
from .downstream_task import _compute_loss  # noqa: F401  (same helper in the reference)

#: Functions patch() routes from the reference module to this one.
DLIB_NAMES = (
    "compute_strong_downstream_task",
    "_compute_loss",
    "intervene",
)


@utils.gin_configurable("strong_downstream_task")
def compute_strong_downstream_task(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    num_test=None,
    n_experiment=None,
):
    """Strong (out-of-distribution) generalisation of downstream predictors."""
    del artifact_dir
    num_train = utils.require(
        num_train, "num_train", function="compute_strong_downstream_task", usual="[1000]"
    )
    num_test = utils.require(
        num_test, "num_test", function="compute_strong_downstream_task", usual="1000"
    )
    n_experiment = utils.require(
        n_experiment, "n_experiment", function="compute_strong_downstream_task", usual="2"
    )
    scores = {}
    for train_size in num_train:
        factors_train = ground_truth_data.sample_factors(train_size, random_state)
        factors_test = ground_truth_data.sample_factors(num_test, random_state)
        x_train = ground_truth_data.sample_observations_from_factors(factors_train, random_state)
        x_test = ground_truth_data.sample_observations_from_factors(factors_test, random_state)
        mus_train = _encode(x_train, representation_function)
        mus_test = _encode(x_test, representation_function)

        def interventions(factors_train=factors_train, factors_test=factors_test):
            # Generated lazily: the reference draws each intervention from numpy's global
            # random state right before fitting on it, and its predictors (gradient boosting
            # with random_state=None) draw from the same global state.
            num_factors = factors_train.shape[1]
            for i in range(num_factors):
                for _ in range(n_experiment):
                    f_train, f_test, _, _ = intervene(
                        factors_train.copy(), factors_test.copy(), i, num_factors,
                        ground_truth_data,
                    )
                    x_train_int = ground_truth_data.sample_observations_from_factors(
                        f_train, random_state
                    )
                    x_test_int = ground_truth_data.sample_observations_from_factors(
                        f_test, random_state
                    )
                    yield _downstream.Intervention(
                        i,
                        _encode(x_train_int, representation_function),
                        f_train,
                        _encode(x_test_int, representation_function),
                        f_test,
                    )

        scores.update(
            _downstream.strong_downstream_task(
                mus_train,
                factors_train,
                mus_test,
                factors_test,
                interventions(),
                predictor=utils.make_predictor_fn(),
            )
        )
    return scores


def _encode(observations, representation_function):
    """Codes (n_points, n_codes) of a whole set (the reference encodes each set in one call)."""
    return utils.obtain_representation(
        observations, representation_function, len(observations)
    ).T


def intervene(y_train, y_test, target_y, num_factors, ground_truth_data):
    """Random intervention drawn from numpy's global random state, as the reference.

    Fixes a random factor other than ``target_y`` to one value in ``y_train`` and to the other
    values in ``y_test`` (both (n_points, n_factors), modified in place and returned).
    Returns ``(y_train, y_test, intervened_factor, train_value)``.
    """
    del num_factors  # the reference uses it for the candidate list: y_train.shape[1]
    new_train, new_test, factor, value = _downstream.intervene(
        y_train,
        y_test,
        target_y,
        ground_truth_data.factors_num_values,
        np.random.mtrand._rand,
    )
    y_train[...] = new_train
    y_test[...] = new_test
    return y_train, y_test, factor, value
