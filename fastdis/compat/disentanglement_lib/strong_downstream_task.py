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
        encoder = utils._ChunkedEncoder(representation_function)  # encodes as it fills up
        offsets = [encoder.add(x_train), encoder.add(x_test)]
        intervened = []
        num_factors = factors_train.shape[1]
        for i in range(num_factors):
            for _ in range(n_experiment):
                factors_train_int, factors_test_int, _, _ = intervene(
                    factors_train.copy(), factors_test.copy(), i, num_factors, ground_truth_data
                )
                for factors_int in (factors_train_int, factors_test_int):
                    offsets.append(
                        encoder.add(
                            ground_truth_data.sample_observations_from_factors(
                                factors_int, random_state
                            )
                        )
                    )
                intervened.append((i, factors_train_int, factors_test_int))
        all_codes = encoder.codes()
        bounds = offsets + [all_codes.shape[0]]
        codes = [all_codes[bounds[k] : bounds[k + 1]] for k in range(len(offsets))]
        interventions = [
            _downstream.Intervention(i, codes[2 + 2 * e], f_train, codes[3 + 2 * e], f_test)
            for e, (i, f_train, f_test) in enumerate(intervened)
        ]
        scores.update(
            _downstream.strong_downstream_task(
                codes[0],
                factors_train,
                codes[1],
                factors_test,
                interventions,
                predictor=utils.make_predictor_fn(),
            )
        )
    return scores


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
