"""Drop-in for ``disentanglement_lib.evaluation.metrics.mig`` (gin name ``mig``)."""

from __future__ import annotations

import numpy as np

from ...metrics._mig import mig_from_mutual_info
from . import utils

DLIB_NAMES = ("compute_mig", "_compute_mig", "compute_mig_on_fixed_data")


@utils.gin_configurable("mig")
def compute_mig(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    batch_size=16,
):
    """MIG on ``num_train`` points sampled as the reference does (study: 10,000).

    Returns ``{"discrete_mig"}``; like the reference, nan when a factor takes a single value.
    """
    del artifact_dir
    if num_train is None:
        raise ValueError("compute_mig needs num_train (the study uses 10000).")
    mus_train, ys_train = utils.generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size
    )
    return _compute_mig(mus_train, ys_train)


def _compute_mig(mus_train, ys_train):
    """MIG of codes (n_codes, n_points) and factors (n_factors, n_points)."""
    discretized_mus = utils.make_discretizer(mus_train)
    m = utils.discrete_mutual_info(discretized_mus, ys_train)
    entropy = utils.discrete_entropy(ys_train)
    with np.errstate(divide="ignore", invalid="ignore"):  # the reference: nan for H = 0
        return {"discrete_mig": mig_from_mutual_info(m, entropy)}


@utils.gin_configurable("mig_validation")
def compute_mig_on_fixed_data(observations, labels, representation_function, batch_size=100):
    """MIG of fixed observations with labels (n_factors, n_points)."""
    mus = utils.obtain_representation(observations, representation_function, batch_size)
    if labels.shape[1] != observations.shape[0]:
        raise ValueError("Wrong labels shape: labels must be (n_factors, n_observations).")
    return _compute_mig(mus, labels)
