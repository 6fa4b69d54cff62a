"""Drop-in for ``disentanglement_lib.evaluation.metrics.unsupervised_metrics``."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ...metrics._unsupervised import mean_pairwise_mutual_info
from . import utils

DLIB_NAMES = (
    "unsupervised_metrics",
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
    "kl_gaussians_numerically_unstable",
)


@utils.gin_configurable("unsupervised_metrics")
def unsupervised_metrics(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    batch_size=16,
):
    """Gaussian total correlation, Wasserstein dependency and mean MI of sampled codes.

    As the reference: constant codes give nan (total correlation) or a complex Wasserstein
    value; the array-level :func:`fastdis.metrics.unsupervised_metrics` leaves them out.
    """
    del artifact_dir
    if num_train is None:
        raise ValueError("unsupervised_metrics needs num_train (the study uses 10000).")
    mus_train, _ = utils.generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size
    )
    num_codes = mus_train.shape[0]
    cov_mus = np.cov(mus_train)
    scores = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        scores["gaussian_total_correlation"] = gaussian_total_correlation(cov_mus)
        scores["gaussian_wasserstein_correlation"] = gaussian_wasserstein_correlation(cov_mus)
        scores["gaussian_wasserstein_correlation_norm"] = scores[
            "gaussian_wasserstein_correlation"
        ] / np.sum(np.diag(cov_mus))
    mus_discrete = utils.make_discretizer(mus_train)
    if num_codes < 2:
        raise ValueError("unsupervised_metrics needs at least 2 codes.")
    scores["mutual_info_score"] = mean_pairwise_mutual_info(np.asarray(mus_discrete).T)
    return scores


def kl_gaussians_numerically_unstable(mean_0, cov_0, mean_1, cov_1, k):
    """KL(N(mean_0, cov_0) || N(mean_1, cov_1)) by the textbook formula (used in tests)."""
    det_0 = np.linalg.det(cov_0)
    det_1 = np.linalg.det(cov_1)
    inv_1 = np.linalg.inv(cov_1)
    diff = mean_1 - mean_0
    return 0.5 * (
        np.trace(np.matmul(inv_1, cov_0)) + np.dot(diff, np.dot(inv_1, diff)) - k
        + np.log(det_1 / det_0)
    )


def gaussian_total_correlation(cov):
    """Total correlation of N(0, cov), exactly the reference's expression."""
    return 0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1])


def gaussian_wasserstein_correlation(cov):
    """Wasserstein dependency of N(0, cov), exactly the reference's expression (scipy sqrtm)."""
    sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return 2 * np.trace(cov) - 2 * np.trace(sqrtm)
