"""Gap scores on the histogram mutual-information matrix: MIG-sup, JEMMIG and DCIMIG.

Three later answers to the Mutual Information Gap (Chen et al. 2018), all computed from the same
quantities as disentanglement_lib's MIG: codes discretized into 20 equal-width histogram bins
(the study's discretizer, :func:`fastdis.metrics.histogram_discretize`), the discrete mutual
information :math:`I_{jk} = I(z_j; v_k)` between binned code :math:`j` and factor :math:`k`, and
the factor entropies :math:`H_k = H(v_k)`, all in nats.

* **MIG-sup** (Li et al. 2020) asks MIG's question the other way round: is each *code* informative
  about a single factor? Per code, the gap between its two largest normalised informations.
* **JEMMIG** (Do & Tran 2020) adds to MIG's gap the joint entropy of a factor and its best code,
  which penalises a code that carries more than the factor (e.g. two factors).
* **DCIMIG** (Sepliarskaia et al. 2019) credits each code's top-two gap to its best factor and
  keeps, per factor, the largest credited gap, so that a factor is rewarded by its best
  exclusive code.

The published implementations (Ubisoft La Forge's disentanglement-metrics collection) quantise
min-max-scaled codes into 10 bins and measure in bits; fastdis uses the study's 20-bin histograms
in nats, so the scores line up with the study's MIG and share its mutual-information matrix
(``mutual_info=``). Every score is invariant to a permutation of the codes and of the factors.
"""

from __future__ import annotations

import numpy as np

from .._validation import (
    check_codes_factors,
    check_fraction,
    check_informative_factors,
    check_matrix,
    check_min_columns,
    check_num_bins,
)
from ._information import discrete_entropy, histogram_discretize, mutual_info_matrix

__all__ = ["mig_sup", "jemmig", "dcimig", "binned_information"]


def binned_information(codes, factors, *, num_bins: int = 20, mutual_info=None,
                       min_codes: int = 1, min_factors: int = 1, why: str = ""):
    """Validated inputs of a histogram information score.

    Returns ``(codes, factors, binned_codes, mutual_info, factor_entropy)``: the clean arrays,
    the codes' bin labels (n_samples, n_codes) in ``[1, num_bins]``, the mutual-information
    matrix (n_codes, n_factors) in nats (``mutual_info`` checked, or computed) and each factor's
    entropy (n_factors,) in nats. ``min_codes`` / ``min_factors``: the columns the score needs,
    and ``why`` (for the error message).

    Raises
    ------
    ValueError
        On malformed codes or factors, fewer samples than bins, too few columns, a factor that
        takes a single value (its entropy is 0, and every score here divides by it), or a
        ``mutual_info`` that is not a finite non-negative (n_codes, n_factors) matrix.
    """
    codes, factors = check_codes_factors(codes, factors)
    num_bins = check_num_bins(num_bins, codes.shape[0])
    check_min_columns(codes, min_codes, name="codes", why=why)
    check_min_columns(factors, min_factors, name="factors", why=why)
    check_informative_factors(factors)
    binned = histogram_discretize(codes, num_bins)
    if mutual_info is None:
        mutual_info = mutual_info_matrix(binned, factors)
    else:
        mutual_info = check_matrix(mutual_info, name="mutual_info", nonnegative=True,
                                   shape=(codes.shape[1], factors.shape[1]))
    return codes, factors, binned, mutual_info, discrete_entropy(factors)


def _two_largest(matrix: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The largest and second-largest values of ``matrix`` along ``axis``."""
    ordered = -np.sort(-matrix, axis=axis)
    return np.take(ordered, 0, axis=axis), np.take(ordered, 1, axis=axis)


def mig_sup(codes, factors, *, num_bins: int = 20, active_variance: float = 0.01,
            mutual_info=None) -> dict:
    """MIG-sup: per active code, the gap between its two most informative factors.

    With :math:`\\tilde I_{jk} = I(z_j; v_k) / H(v_k)` the normalised mutual information (clipped
    at 0) and :math:`\\mathcal{A}` the active codes (sample variance above ``active_variance``),

    .. math::

        \\text{MIG-sup} = \\frac{1}{|\\mathcal{A}|} \\sum_{j \\in \\mathcal{A}}
            \\left(\\tilde I_{j(1)} - \\tilde I_{j(2)}\\right)

    where :math:`\\tilde I_{j(1)} \\ge \\tilde I_{j(2)}` are the two largest values of row
    :math:`j`. 1 means every active code informs about one factor only (a code duplicated does
    not lower it; MIG catches that), 0 that each active code informs equally about two factors.
    A representation without active codes scores 0.

    The paper writes the mean over all latent dimensions; its authors' code (proVLAE,
    ``metric_MIG.py``) normalises by the factor's entropy, as here, and averages over the active
    units (variance of the means above 0.01), which fastdis follows: a collapsed code carries no
    information to be disentangled and would otherwise score as an entangled one. Ubisoft's
    collection normalises by the code's entropy instead and averages over every code.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        The representation (e.g. posterior means).
    factors : int array of shape (n_samples, n_factors)
        Ground-truth factors; at least two, each taking at least two values.
    num_bins : int, default=20
        Histogram bins per code (the study's MIG discretisation).
    active_variance : float, default=0.01
        A code is active when its sample variance (ddof=1) exceeds this.
    mutual_info : array of shape (n_codes, n_factors), optional
        A precomputed mutual-information matrix (nats) of the binned codes, shared with MIG.

    Returns
    -------
    dict
        ``"mig_sup"`` in [0, 1] (higher is better) and ``"num_active_codes"``.

    Raises
    ------
    ValueError
        Bad shapes or values, fewer than two factors, or a factor with a single value.

    References
    ----------
    Z. Li, J. V. Murkute, P. K. Gyawali and L. Wang, "Progressive Learning and Disentanglement
    of Hierarchical Representations", ICLR 2020.
    """
    codes, factors, _, mutual_info, factor_entropy = binned_information(
        codes, factors, num_bins=num_bins, mutual_info=mutual_info, min_factors=2,
        why="MIG-sup is the gap between the two factors a code informs most about")
    active_variance = check_fraction(active_variance, name="active_variance", high=np.inf)
    active = np.var(codes, axis=0, ddof=1) > active_variance
    if not active.any():
        # The authors' mean over no code is nan. A fully collapsed representation has no code
        # that singles out a factor, so it scores 0 and ranks last instead of failing.
        return {"mig_sup": 0.0, "num_active_codes": 0}
    normalised = np.clip(mutual_info / factor_entropy[np.newaxis, :], 0.0, None)
    first, second = _two_largest(normalised[active], axis=1)
    return {"mig_sup": float(np.mean(first - second)), "num_active_codes": int(active.sum())}


def jemmig(codes, factors, *, num_bins: int = 20, mutual_info=None) -> dict:
    """JEMMIG: joint entropy minus mutual information gap, normalised per factor.

    With :math:`z_{*}` the code most informative about factor :math:`v_k` and :math:`z_{\\circ}`
    the second most informative,

    .. math::

        \\mathrm{JEMMIG}(v_k) = H(z_{*}, v_k) - I(z_{*}; v_k) + I(z_{\\circ}; v_k),
        \\qquad 0 \\le \\mathrm{JEMMIG}(v_k) \\le H(v_k) + \\log B

    (B = ``num_bins``; :math:`H(z_*, v_k) = H(z_*) + H(v_k) - I(z_*; v_k)` on the binned codes).
    The score is one minus its normalised value, averaged over factors:

    .. math::

        \\text{JEMMIG score} = \\frac{1}{K} \\sum_k \\left(1 -
            \\frac{\\mathrm{JEMMIG}(v_k)}{H(v_k) + \\log B}\\right)

    1 when each factor is binned exactly by one code and by no other; a code duplicated costs
    :math:`H(v_k)` in the numerator; codes independent of the factors score
    :math:`(\\log B - H(z_*)) / (H(v_k) + \\log B)`, about 0 for noise spread evenly over the
    bins (about 0.12 for Gaussian noise, whose tails leave bins nearly empty). The paper reports
    the normalised JEMMIG (lower is better); the collection of Ubisoft La Forge reports one minus
    it (higher is better), as here, so that it reads like the other scores; both are returned.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        The representation; at least two codes.
    factors : int array of shape (n_samples, n_factors)
        Ground-truth factors, each taking at least two values (one factor is enough).
    num_bins, mutual_info
        As for :func:`mig_sup`; ``num_bins`` is also B in the bound.

    Returns
    -------
    dict
        ``"jemmig_score"`` in [0, 1] (higher is better) and ``"normalized_jemmig"`` = 1 minus it
        (the paper's form, lower is better).

    Raises
    ------
    ValueError
        Bad shapes or values, fewer than two codes (no second-best code), or a factor with a
        single value (nothing to disentangle; refused as by MIG).

    References
    ----------
    K. Do and T. Tran, "Theory and Evaluation Metrics for Learning Disentangled
    Representations", ICLR 2020.
    """
    _, _, binned, mutual_info, factor_entropy = binned_information(
        codes, factors, num_bins=num_bins, mutual_info=mutual_info, min_codes=2,
        why="JEMMIG subtracts the information of a factor's second-best code")
    best_code = np.argmax(mutual_info, axis=0)
    first, second = _two_largest(mutual_info, axis=0)
    joint_entropy = discrete_entropy(binned)[best_code] + factor_entropy - first
    per_factor = (joint_entropy - first + second) / (factor_entropy + np.log(num_bins))
    normalized = float(np.mean(per_factor))
    return {"jemmig_score": 1.0 - normalized, "normalized_jemmig": normalized}


def dcimig(codes, factors, *, num_bins: int = 20, mutual_info=None) -> dict:
    """DCIMIG: each factor's best exclusive gap, credited from the codes.

    Each code :math:`z_j` credits the gap between its two most informative factors,
    :math:`R_j = I(z_j; v_{(1)}) - I(z_j; v_{(2)})`, to its most informative factor
    :math:`k_j`; each factor keeps its largest credit (0 if none), and

    .. math::

        \\mathrm{DCIMIG} = \\frac{\\sum_k \\max_{j:\\,k_j = k} R_j}{\\sum_k H(v_k)}

    1 when each factor is binned exactly by a code that informs about no other factor (a
    duplicated code keeps 1: the metric rewards the best code per factor), 0 when no code singles
    out a factor. Ties for a code's best factor go to the first, as ``np.argmax``.

    Parameters
    ----------
    codes, factors, num_bins, mutual_info
        As for :func:`mig_sup`.

    Returns
    -------
    dict
        ``{"dcimig": float}`` in [0, 1], higher is better.

    Raises
    ------
    ValueError
        As :func:`mig_sup`: a code's gap needs two factors, and the denominator sums their
        entropies.

    References
    ----------
    A. Sepliarskaia, J. Kiseleva and M. de Rijke, "Evaluating Disentangled Representations",
    arXiv:1910.05587, 2019.
    """
    _, _, _, mutual_info, factor_entropy = binned_information(
        codes, factors, num_bins=num_bins, mutual_info=mutual_info, min_factors=2,
        why="DCIMIG credits the gap between the two factors a code informs most about")
    first, second = _two_largest(mutual_info, axis=1)
    credit = np.zeros(mutual_info.shape[1])
    np.maximum.at(credit, np.argmax(mutual_info, axis=1), first - second)
    return {"dcimig": float(credit.sum() / factor_entropy.sum())}
