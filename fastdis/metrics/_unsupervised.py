"""Unsupervised scores of a representation: Gaussian total correlation, Wasserstein dependency,
and mean pairwise mutual information between codes (disentanglement_lib
``evaluation/metrics/unsupervised_metrics.py``; Locatello et al., ICML 2019, section 4).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_codes, check_num_bins
from ._information import histogram_discretize, mutual_info_matrix


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation of a Gaussian with covariance ``cov``, in nats.

    The KL divergence between N(0, cov) and the product of its marginals N(0, diag(cov)):
    :math:`\\tfrac12 (\\sum_j \\log \\Sigma_{jj} - \\log\\det\\Sigma)`.
    """
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(0, cov) and N(0, diag(cov)).

    :math:`2\\,\\mathrm{tr}\\,\\Sigma - 2\\,\\mathrm{tr}\\sqrt{D\\Sigma}` with :math:`D =
    \\mathrm{diag}(\\Sigma)`. The reference takes ``scipy.linalg.sqrtm`` of the non-symmetric
    :math:`D\\Sigma`; its eigenvalues are those of the symmetric :math:`D^{1/2}\\Sigma D^{1/2}`,
    so the trace is computed from ``eigvalsh`` of that (real, and clipped at 0 where rounding
    makes a singular covariance's eigenvalue slightly negative; the reference can return a
    complex number there).
    """
    scale = np.sqrt(np.diag(cov))
    eigenvalues = np.linalg.eigvalsh(cov * scale[:, None] * scale[None, :])
    return float(2 * np.trace(cov) - 2 * np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def mean_pairwise_mutual_info(binned_codes: np.ndarray) -> float:
    """Mean of the mutual information (nats) over all ordered pairs of distinct codes."""
    n_codes = binned_codes.shape[1]
    matrix = mutual_info_matrix(binned_codes, binned_codes)
    np.fill_diagonal(matrix, 0)
    return float(np.sum(matrix) / (n_codes**2 - n_codes))


def unsupervised_metrics(codes, factors=None, *, num_bins: int = 20) -> dict:
    """Gaussian total correlation, Wasserstein dependency and mean mutual information of codes.

    With :math:`\\Sigma` the sample covariance of the codes (ddof=1):

    * ``gaussian_total_correlation``: :func:`gaussian_total_correlation` of :math:`\\Sigma`;
    * ``gaussian_wasserstein_correlation``: :func:`gaussian_wasserstein_correlation`;
    * ``gaussian_wasserstein_correlation_norm``: the same divided by :math:`\\mathrm{tr}\\Sigma`;
    * ``mutual_info_score``: mean discrete mutual information between pairs of distinct codes
      after ``num_bins``-bin histogram discretisation.

    Exactly constant codes are independent of everything, so they are left out of the
    covariance scores (they contribute 0). The reference keeps them and returns nan (log 0),
    a spurious large number, or a complex number; its compat module reproduces that.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        At least two codes and two samples.
    factors : ignored
        Accepted so that every metric has the ``(codes, factors)`` signature.
    num_bins : int, default=20

    Returns
    -------
    dict with the four keys above (floats; nats for the information quantities).

    Raises
    ------
    ValueError
        On invalid codes, fewer than 2 codes, fewer samples than ``num_bins``, or codes so
        large or small that their covariance is not representable in float64.
    """
    codes = check_codes(codes, min_samples=2)
    num_bins = check_num_bins(num_bins, codes.shape[0])
    if codes.shape[1] < 2:
        raise ValueError(
            f"codes has {codes.shape[1]} column; dependence between codes needs at least 2."
        )
    active = np.ptp(codes, axis=0) > 0
    scores = {}
    if active.any():
        with np.errstate(over="ignore", under="ignore"):  # refused just below
            cov = np.atleast_2d(np.cov(codes[:, active], rowvar=False))
        if not np.isfinite(cov).all() or (np.diag(cov) <= 0).any():
            raise ValueError(
                "the covariance of codes over- or underflows float64 (codes span "
                f"{codes.min():.3g} to {codes.max():.3g}): rescale the codes."
            )
        scores["gaussian_total_correlation"] = gaussian_total_correlation(cov)
        scores["gaussian_wasserstein_correlation"] = gaussian_wasserstein_correlation(cov)
        scores["gaussian_wasserstein_correlation_norm"] = scores[
            "gaussian_wasserstein_correlation"
        ] / float(np.sum(np.diag(cov)))
    else:  # every code constant: no dependence at all
        scores["gaussian_total_correlation"] = 0.0
        scores["gaussian_wasserstein_correlation"] = 0.0
        scores["gaussian_wasserstein_correlation_norm"] = 0.0
    scores["mutual_info_score"] = mean_pairwise_mutual_info(histogram_discretize(codes, num_bins))
    return scores
