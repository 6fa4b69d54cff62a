"""Drop-in for ``disentanglement_lib.evaluation.metrics.fairness``.

Same names, positional signatures, keys and draws from ``random_state``: the training set (in
batches of ``batch_size``), then for every target factor ``i`` and sensitive factor ``j != i``
one set of ``num_test_points_per_class`` test factors and, for each value ``c`` of ``j``, the
observations with factor ``j`` set to ``c``. Everything is sampled first (the draws do not depend
on the fits) and encoded in large chunks; the predictions run through
:func:`fastdis.metrics._fairness.fairness_counts`. :func:`inter_group_fairness` keeps the
reference's float32 arithmetic (the array-level API uses float64).
"""

from __future__ import annotations

import numpy as np

from ...metrics import _fairness as _fairness
from . import utils

#: Functions patch() routes from the reference module to this one.
DLIB_NAMES = (
    "compute_fairness",
    "compute_scores_dict",
    "inter_group_fairness",
)


#: ``fairness_study_v1/metric_configs/fairness.gin``.
STUDY_NUM_TRAIN = 10000
STUDY_NUM_TEST_POINTS_PER_CLASS = 100


@utils.gin_configurable("fairness")
def compute_fairness(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=STUDY_NUM_TRAIN,
    num_test_points_per_class=STUDY_NUM_TEST_POINTS_PER_CLASS,
    batch_size=16,
):
    """Unfairness scores (``mean_fairness:*`` and ``max_fairness:*`` keys) of the predictor."""
    del artifact_dir
    factor_counts = ground_truth_data.factors_num_values
    num_factors = len(factor_counts)
    mus_train, ys_train = utils.generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size
    )
    predictor_model_fn = utils.make_predictor_fn()

    encoder = utils._ChunkedEncoder(representation_function)
    offsets = {}
    for i in range(num_factors):
        for j in range(num_factors):
            if i == j:
                continue
            original_factors = ground_truth_data.sample_factors(
                num_test_points_per_class, random_state
            )
            offsets[(i, j)] = []
            for c in range(factor_counts[j]):
                intervened_factors = np.copy(original_factors)
                intervened_factors[:, j] = c
                observations = ground_truth_data.sample_observations_from_factors(
                    intervened_factors, random_state
                )
                offsets[(i, j)].append(encoder.add(observations))
    codes = encoder.codes()
    intervention_codes = {
        pair: np.stack([codes[o : o + num_test_points_per_class] for o in starts])
        for pair, starts in offsets.items()
    }
    counts = _fairness.fairness_counts(
        mus_train.T,
        ys_train.T,
        intervention_codes,
        predictor=predictor_model_fn,
        factor_sizes=factor_counts,
    )
    return _fairness.scores_from_counts(counts, num_factors, group_fairness=inter_group_fairness)


def compute_scores_dict(metric, prefix):
    """Mean/max aggregates of an unfairness matrix over targets and sensitive factors."""
    return _fairness.compute_scores_dict(metric, prefix)


def inter_group_fairness(counts):
    """Mean and max TV distance of each sensitive group to the overall prediction distribution.

    float32 arithmetic, as the reference (see ``fastdis.metrics._fairness.inter_group_fairness``
    for the float64 version).
    """
    overall_distribution = np.sum(counts, axis=1, dtype=np.float32)
    overall_distribution /= overall_distribution.sum()
    normalized_counts = np.array(counts, dtype=np.float32)
    counts_per_class = np.sum(counts, axis=0)
    normalized_counts /= np.expand_dims(counts_per_class, 0)
    differences = normalized_counts - np.expand_dims(overall_distribution, 1)
    total_variation_distances = np.sum(np.abs(differences), 0) / 2.0
    mean = total_variation_distances * counts_per_class
    mean /= counts_per_class.sum()
    return np.sum(mean), np.amax(total_variation_distances)
