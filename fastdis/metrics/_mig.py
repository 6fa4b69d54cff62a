"""Mutual Information Gap (MIG).

Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in Variational Autoencoders",
NeurIPS 2018, in the discrete form of disentanglement_lib (``evaluation/metrics/mig.py``).
"""

from __future__ import annotations

import numpy as np

from .._validation import (
    check_codes_factors,
    check_informative_factors,
    check_matrix,
    check_num_bins,
)
from ._information import discrete_entropy, histogram_discretize, mutual_info_matrix


def mig(codes, factors, *, num_bins: int = 20, mutual_info=None) -> dict:
    """Mutual Information Gap of a representation.

    Codes are discretized into ``num_bins`` equal-width histogram bins; with
    :math:`I_{jk}` the mutual information between code :math:`j` and factor :math:`k` and
    :math:`H_k` the entropy of factor :math:`k` (both in nats),

    .. math::

        \\mathrm{MIG} = \\frac{1}{K} \\sum_k \\frac{I_{(1),k} - I_{(2),k}}{H_k}

    where :math:`I_{(1),k} \\ge I_{(2),k}` are the two largest values of column :math:`k`.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        The representation (e.g. posterior means). At least two codes.
    factors : int array of shape (n_samples, n_factors)
        Ground-truth factors; each must take at least two values.
    num_bins : int, default=20
        Histogram bins per code (study default 20).
    mutual_info : array of shape (n_codes, n_factors), optional
        A precomputed mutual-information matrix (nats) of the discretized codes, to share work
        with other metrics (see :func:`fastdis.metrics.mutual_info_matrix`).

    Returns
    -------
    dict
        ``{"discrete_mig": float}`` in [0, 1]; 1 means each factor is captured by one code alone.

    Raises
    ------
    ValueError
        Bad shapes or values, fewer than two codes, or a factor with a single value (its entropy
        is 0; the reference returns nan there).
    """
    codes, factors = check_codes_factors(codes, factors)
    num_bins = check_num_bins(num_bins, codes.shape[0])
    if codes.shape[1] < 2:
        raise ValueError(
            f"codes has {codes.shape[1]} column; MIG is the gap between the two most "
            "informative codes, so at least 2 are needed."
        )
    check_informative_factors(factors)
    if mutual_info is None:
        mutual_info = mutual_info_matrix(histogram_discretize(codes, num_bins), factors)
    else:
        mutual_info = check_matrix(mutual_info, name="mutual_info", nonnegative=True,
                                   shape=(codes.shape[1], factors.shape[1]))
    return {"discrete_mig": mig_from_mutual_info(mutual_info, discrete_entropy(factors))}


def mig_from_mutual_info(mutual_info: np.ndarray, factor_entropy: np.ndarray) -> float:
    """Mean over factors of (largest - second largest MI) / entropy (the reference's formula)."""
    sorted_mi = np.sort(mutual_info, axis=0)[::-1]
    return float(np.mean(np.divide(sorted_mi[0, :] - sorted_mi[1, :], factor_entropy[:])))
