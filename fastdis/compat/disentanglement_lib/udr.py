"""Drop-in for ``disentanglement_lib.evaluation.udr.metrics.udr`` (not shipped in dlib 1.5's wheel).

Same names, positional signatures, keys and draws: ``num_data_points / batch_size`` batches of
``ground_truth_data.sample_observations(batch_size, random_state)``, each passed to every
model's representation function, which returns ``(means (batch_size, n_latents), kl
(n_latents,))``. The representation functions are called once per batch, as in the reference
(its tests rely on the batch size). Bug kept for compatibility: latents are zeroed where
``kl <= 0.01`` whatever ``kl_filter_threshold`` is (``fastdis.metrics._udr.udr`` uses the
threshold for both).
"""

from __future__ import annotations

import numpy as np

from ...metrics import _udr as _udr
from ...metrics._udr import (  # noqa: F401  (the reference's helpers, re-exported)
    lasso_correlation_matrix,
    relative_strength_disentanglement,
    spearman_correlation_conv,
)

#: Functions patch() routes from the reference module to this one.
DLIB_NAMES = (
    "compute_udr_sklearn",
    "relative_strength_disentanglement",
    "spearman_correlation_conv",
    "lasso_correlation_matrix",
    "_generate_representation_batch",
    "_generate_representation_dataset",
)

#: The reference zeroes latents below this KL, independently of ``kl_filter_threshold``.
_HARD_CODED_KL_ZERO_THRESHOLD = 0.01


def _generate_representation_batch(ground_truth_data, representation_functions, batch_size,
                                   random_state):
    observations = ground_truth_data.sample_observations(batch_size, random_state)
    return [fn(observations) for fn in representation_functions]


def _generate_representation_dataset(ground_truth_data, representation_functions, batch_size,
                                     num_data_points, random_state):
    """Per model: means (num_data_points, n_latents) and the batch-averaged KL (n_latents,)."""
    if num_data_points % batch_size != 0:
        raise ValueError("num_data_points must be a multiple of batch_size")
    num_batches = int(num_data_points / batch_size)
    representation_points = []
    kl_divergence = []
    for i in range(num_batches):
        batch = _generate_representation_batch(
            ground_truth_data, representation_functions, batch_size, random_state
        )
        for j in range(len(representation_functions)):
            if len(representation_points) <= j:
                kl_divergence.append(np.zeros((num_batches, batch[j][1].shape[0])))
                representation_points.append(np.zeros((num_data_points, batch[j][0].shape[1])))
            kl_divergence[j][i, :] = batch[j][1]
            representation_points[j][i * batch_size : (i + 1) * batch_size, :] = batch[j][0]
    return representation_points, [np.mean(kl, axis=0) for kl in kl_divergence]


def compute_udr_sklearn(
    ground_truth_data,
    representation_functions,
    random_state,
    batch_size,
    num_data_points,
    correlation_matrix="lasso",
    filter_low_kl=True,
    include_raw_correlations=True,
    kl_filter_threshold=0.01,
):
    """UDR scores: ``raw_correlations`` (optional), ``pairwise_disentanglement_scores``,
    ``model_scores``."""
    reps, kl = _generate_representation_dataset(
        ground_truth_data, representation_functions, batch_size, num_data_points, random_state
    )
    return _udr.udr_with_thresholds(
        reps,
        np.stack(kl),
        zero_threshold=_HARD_CODED_KL_ZERO_THRESHOLD,
        filter_threshold=kl_filter_threshold,
        correlation_matrix=correlation_matrix,
        filter_low_kl=filter_low_kl,
        include_raw_correlations=include_raw_correlations,
        random_state=random_state,
    )
