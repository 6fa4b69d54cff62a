"""Drop-in for ``disentanglement_lib.evaluation.metrics.beta_vae`` (``beta_vae_sklearn``)."""

from __future__ import annotations

import numpy as np

from ...metrics._beta_vae import beta_vae_features, beta_vae_score_from_features
from . import _bulk_sampling, utils

DLIB_NAMES = ("compute_beta_vae_sklearn", "_generate_training_batch", "_generate_training_sample")


@utils.gin_configurable("beta_vae_sklearn")
def compute_beta_vae_sklearn(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    batch_size=None,
    num_train=None,
    num_eval=None,
):
    """BetaVAE score with the reference's sampling (study: batch 64, 10000 train, 5000 eval).

    The reference passes ``random_state`` to ``LogisticRegression``; its lbfgs solver does not
    draw from it, so no draw is skipped here.
    """
    del artifact_dir
    if None in (batch_size, num_train, num_eval):
        raise ValueError(
            "compute_beta_vae_sklearn needs batch_size, num_train and num_eval "
            "(the study uses 64, 10000, 5000)."
        )
    train_points, train_labels = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, num_train, random_state
    )
    eval_points, eval_labels = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, num_eval, random_state
    )
    return beta_vae_score_from_features(train_points, train_labels, eval_points, eval_labels)


def _sample_pairs(ground_truth_data, batch_size, num_points, random_state, encoder):
    """Draw pairs in the reference's order: randint, factors 1, factors 2, observations 1, 2."""
    labels = np.zeros(num_points, dtype=np.int64)
    for i in range(num_points):
        index = random_state.randint(ground_truth_data.num_factors)
        factors1 = ground_truth_data.sample_factors(batch_size, random_state)
        factors2 = ground_truth_data.sample_factors(batch_size, random_state)
        factors2[:, index] = factors1[:, index]
        encoder.add(ground_truth_data.sample_observations_from_factors(factors1, random_state))
        encoder.add(ground_truth_data.sample_observations_from_factors(factors2, random_state))
        labels[i] = index
    return labels


def _bulk_sample_pairs(ground_truth_data, sizes, batch_size, num_points, random_state, encoder):
    """:func:`_sample_pairs` for a data set whose observations draw nothing: same draws, in
    bulk (observations made and queued on ``encoder`` a chunk of pairs at a time)."""
    labels = []
    for index, factors in _bulk_sampling.iter_factor_groups(
        random_state, sizes, num_points, batch_size, batches_per_group=2, lead_bound=len(sizes)
    ):
        pairs = np.arange(index.size)
        factors[pairs, 1, :, index] = factors[pairs, 0, :, index]
        utils._add_observations(ground_truth_data, factors.reshape(-1, len(sizes)),
                                random_state, encoder)
        labels.append(index)
    return np.concatenate(labels)


def _generate_training_batch(
    ground_truth_data, representation_function, batch_size, num_points, random_state
):
    """(features (num_points, n_codes), labels (num_points,)) of sampled pairs."""
    sizes = _bulk_sampling.plain_factor_sizes(ground_truth_data, random_state, batch_size,
                                              num_points)
    encoder = utils._ChunkedEncoder(
        representation_function, total_rows=2 * batch_size * num_points if sizes else None)
    if sizes is not None:
        labels = _bulk_sample_pairs(ground_truth_data, sizes, batch_size, num_points,
                                    random_state, encoder)
    else:
        labels = _sample_pairs(ground_truth_data, batch_size, num_points, random_state, encoder)
    codes = encoder.codes().reshape(num_points, 2, batch_size, -1)
    return beta_vae_features(codes[:, 0], codes[:, 1]), labels


def _generate_training_sample(
    ground_truth_data, representation_function, batch_size, random_state
):
    """One pair: (fixed factor index, feature vector)."""
    points, labels = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, 1, random_state
    )
    return int(labels[0]), points[0]
