"""Drop-in for ``disentanglement_lib.evaluation.metrics.factor_vae`` (``factor_vae_score``)."""

from __future__ import annotations

import numpy as np

from ...metrics._factor_vae import majority_vote_accuracy, vote_table
from . import _bulk_sampling, utils

DLIB_NAMES = (
    "compute_factor_vae",
    "_compute_variances",
    "_generate_training_batch",
    "_generate_training_sample",
)


@utils.gin_configurable("factor_vae_score")
def compute_factor_vae(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    batch_size=None,
    num_train=None,
    num_eval=None,
    num_variance_estimate=None,
):
    """FactorVAE score with the reference's sampling (study: 64, 10000, 5000, 10000).

    Reference behaviour kept for parity: ``num_active_dims`` is the total number of codes, the
    pruning threshold comes from the ``prune_dims.threshold`` binding (code default 0.0, study
    0.05), and a code with zero variance yields a 0/0 ratio that wins the argmin.
    """
    del artifact_dir
    if None in (batch_size, num_train, num_eval, num_variance_estimate):
        raise ValueError(
            "compute_factor_vae needs batch_size, num_train, num_eval and "
            "num_variance_estimate (the study uses 64, 10000, 5000, 10000)."
        )
    global_variances = _compute_variances(
        ground_truth_data, representation_function, num_variance_estimate, random_state
    )
    active_dims = _prune_dims(global_variances)
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    training_votes = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, num_train, random_state,
        global_variances, active_dims,
    )
    classifier = np.argmax(training_votes, axis=0)
    train_accuracy = majority_vote_accuracy(training_votes, classifier)
    eval_votes = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, num_eval, random_state,
        global_variances, active_dims,
    )
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": majority_vote_accuracy(eval_votes, classifier),
        "num_active_dims": len(active_dims),
    }


@utils.gin_configurable("prune_dims")
def _prune_dims(variances, threshold=None):
    """Mask of codes whose standard deviation is >= threshold (gin ``prune_dims.threshold``)."""
    if threshold is None:
        threshold = utils._config["prune_threshold"]
    return np.sqrt(variances) >= threshold


def _compute_variances(
    ground_truth_data, representation_function, batch_size, random_state, eval_batch_size=64
):
    """Variance (ddof=1) of each code over ``batch_size`` sampled observations."""
    if _bulk_sampling.plain_factor_sizes(ground_truth_data, random_state, batch_size) is not None:
        # One sample_factors call, as sample_observations makes; the observations draw
        # nothing, so they are made (and encoded) chunk by chunk instead of all at once.
        factors = ground_truth_data.sample_factors(batch_size, random_state)
        representations = utils._encode_factors(
            ground_truth_data, representation_function, factors, random_state)
    else:
        observations = ground_truth_data.sample_observations(batch_size, random_state)
        representations = np.transpose(utils.obtain_representation(
            observations, representation_function, eval_batch_size
        ))
    if representations.shape[0] != batch_size:
        raise ValueError("representation_function returned the wrong number of codes.")
    return np.var(representations, axis=0, ddof=1)


def _sample_groups(ground_truth_data, batch_size, num_points, random_state, encoder):
    """Draw num_points groups in the reference's order: randint, factors, observations."""
    fixed = np.empty(num_points, dtype=np.int64)
    for i in range(num_points):
        factor_index = random_state.randint(ground_truth_data.num_factors)
        factors = ground_truth_data.sample_factors(batch_size, random_state)
        factors[:, factor_index] = factors[0, factor_index]
        encoder.add(ground_truth_data.sample_observations_from_factors(factors, random_state))
        fixed[i] = factor_index
    return fixed


def _bulk_sample_groups(ground_truth_data, sizes, batch_size, num_points, random_state,
                        encoder):
    """:func:`_sample_groups` for a data set whose observations draw nothing: same draws, in
    bulk (observations made and queued on ``encoder`` a chunk of groups at a time)."""
    fixed = []
    for factor_index, factors in _bulk_sampling.iter_factor_groups(
        random_state, sizes, num_points, batch_size, lead_bound=len(sizes)
    ):
        groups = np.arange(factor_index.size)
        factors[groups, 0, :, factor_index] = factors[groups, 0, 0, factor_index][:, None]
        utils._add_observations(ground_truth_data, factors.reshape(-1, len(sizes)),
                                random_state, encoder)
        fixed.append(factor_index)
    return np.concatenate(fixed)


def _generate_training_batch(
    ground_truth_data, representation_function, batch_size, num_points, random_state,
    global_variances, active_dims,
):
    """Votes (n_factors, n_codes); columns are indices among the active codes (reference)."""
    sizes = _bulk_sampling.plain_factor_sizes(ground_truth_data, random_state, batch_size,
                                              num_points)
    encoder = utils._ChunkedEncoder(
        representation_function, total_rows=batch_size * num_points if sizes else None)
    if sizes is not None:
        fixed = _bulk_sample_groups(ground_truth_data, sizes, batch_size, num_points,
                                    random_state, encoder)
    else:
        fixed = _sample_groups(ground_truth_data, batch_size, num_points, random_state, encoder)
    codes = encoder.codes().reshape(num_points, batch_size, -1)
    active_dims = np.asarray(active_dims, dtype=np.bool_)
    with np.errstate(divide="ignore", invalid="ignore"):
        votes = vote_table(codes, fixed, global_variances, active_dims,
                           ground_truth_data.num_factors)
    # The reference indexes votes by the argmin *among active codes*, shifting columns left.
    shifted = np.zeros((ground_truth_data.num_factors, global_variances.shape[0]), np.int64)
    shifted[:, : int(active_dims.sum())] = votes[:, active_dims]
    return shifted


def _generate_training_sample(
    ground_truth_data, representation_function, batch_size, random_state, global_variances,
    active_dims,
):
    """One group: (fixed factor index, argmin among the active codes)."""
    encoder = utils._ChunkedEncoder(representation_function)
    fixed = _sample_groups(ground_truth_data, batch_size, 1, random_state, encoder)
    local_variances = np.var(encoder.codes(), axis=0, ddof=1)
    argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
    return int(fixed[0]), argmin
