"""Unsupervised Disentanglement Ranking (UDR).

Duan et al., "Unsupervised Model Selection for Variational Disentangled Representation
Learning", ICLR 2020 (https://arxiv.org/abs/1905.12614). UDR needs no ground truth: models that
disentangle should agree with each other up to permutation and sign of their latents. For every
ordered pair of models (i, j) on the same inputs, a similarity matrix :math:`R` (n_latents_i,
n_latents_j) between their standardised latents is computed -- absolute Lasso coefficients
regressing model j's latents on model i's, or absolute Spearman rank correlations -- and scored by
relative strength

.. math::

    S(R) = \\tfrac12 \\Big( \\operatorname{mean}_b \\frac{\\max_a R_{ab}^2}{\\sum_a R_{ab}}
                 + \\operatorname{mean}_a \\frac{\\max_b R_{ab}^2}{\\sum_b R_{ab}} \\Big)

(a 0/0 column or row counts as 0). Latents whose average KL divergence to the prior is at most
``kl_filter_threshold`` are inactive: they are zeroed and, with ``filter_low_kl``, dropped from
:math:`R`. A model's score is the median of :math:`S` over its pairs with the other models,
``model_scores[i] = median_{j != i} S(R^{(j, i)})``.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from .._validation import check_codes, check_fraction

__all__ = [
    "lasso_correlation_matrix",
    "relative_strength_disentanglement",
    "spearman_correlation_conv",
    "standardize_and_mask",
    "udr",
    "udr_from_representations",
]

_CORRELATIONS = ("lasso", "spearman")


def relative_strength_disentanglement(corr_matrix) -> float:
    """Relative-strength score :math:`S(R)` of a non-negative similarity matrix (in [0, 1]).

    An empty matrix (every latent filtered out) scores 0.0; disentanglement_lib raises a numpy
    reduction error there.
    """
    corr_matrix = np.asarray(corr_matrix, dtype=np.float64)
    if corr_matrix.ndim != 2:
        raise ValueError(f"corr_matrix must be 2-D; got shape {corr_matrix.shape}.")
    if corr_matrix.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        score_x = np.nanmean(
            np.nan_to_num(np.max(corr_matrix, axis=0) ** 2 / np.sum(corr_matrix, axis=0))
        )
        score_y = np.nanmean(
            np.nan_to_num(np.max(corr_matrix, axis=1) ** 2 / np.sum(corr_matrix, axis=1))
        )
    return float((score_x + score_y) / 2)


def _check_pair(vec1, vec2):
    vec1 = np.asarray(vec1, dtype=np.float64)
    vec2 = np.asarray(vec2, dtype=np.float64)
    if vec1.ndim != 2 or vec1.shape != vec2.shape:
        raise ValueError(
            f"vec1 and vec2 must be 2-D arrays (n_samples, n_latents) of the same shape; got "
            f"{vec1.shape} and {vec2.shape}."
        )
    return vec1, vec2


def spearman_correlation_conv(vec1, vec2) -> np.ndarray:
    """Absolute Spearman correlation of every latent of ``vec1`` with every latent of ``vec2``.

    ``out[a, b] = |rho(vec1[:, a], vec2[:, b])|``: ranks (ties averaged) are computed once per
    column and correlated with one matrix product, instead of the reference's
    ``n_latents**2`` calls of ``scipy.stats.spearmanr``. A constant column gives NaN, as there.

    Parameters
    ----------
    vec1, vec2 : arrays of shape (n_samples, n_latents)

    Returns
    -------
    float64 array of shape (n_latents, n_latents), values in [0, 1] or NaN.
    """
    vec1, vec2 = _check_pair(vec1, vec2)
    ranks1 = scipy.stats.rankdata(vec1, axis=0)
    ranks2 = scipy.stats.rankdata(vec2, axis=0)
    ranks1 -= ranks1.mean(axis=0)
    ranks2 -= ranks2.mean(axis=0)
    norm1 = np.sqrt(np.einsum("na,na->a", ranks1, ranks1))
    norm2 = np.sqrt(np.einsum("na,na->a", ranks2, ranks2))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (ranks1.T @ ranks2) / np.outer(norm1, norm2)
    corr = np.clip(corr, -1.0, 1.0)  # NaN stays NaN
    return np.abs(corr)


def lasso_correlation_matrix(vec1, vec2, random_state=None) -> np.ndarray:
    """Absolute Lasso coefficients (alpha 0.1) regressing ``vec2`` on ``vec1``, transposed.

    ``out[a, b] = |coef of vec1[:, a] in the regression of vec2[:, b]|``, fitted with
    scikit-learn's ``Lasso(alpha=0.1)`` (cyclic coordinate descent, so ``random_state`` does not
    change the result; it is accepted for the reference's signature).
    """
    from sklearn.linear_model import Lasso

    vec1, vec2 = _check_pair(vec1, vec2)
    model = Lasso(random_state=random_state, alpha=0.1)
    model.fit(vec1, vec2)
    coef = np.atleast_2d(model.coef_)
    return np.transpose(np.absolute(coef))


def standardize_and_mask(codes, kl, zero_threshold) -> np.ndarray:
    """StandardScaler-transform ``codes`` and zero the latents with ``kl <= zero_threshold``."""
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(codes)
    return scaled * np.greater(kl, zero_threshold)


def udr_from_representations(
    representations,
    kl_masks,
    *,
    correlation_matrix="lasso",
    filter_low_kl=True,
    include_raw_correlations=True,
    random_state=None,
) -> dict:
    """UDR scores from already standardised representations and boolean KL masks.

    The shared second half of :func:`udr` and the compat ``compute_udr_sklearn``.
    """
    num_models = len(representations)
    latent_dim = representations[0].shape[1]
    corr_all = np.zeros((num_models, num_models, latent_dim, latent_dim))
    disentanglement = np.zeros((num_models, num_models, 1))
    for i in range(num_models):
        for j in range(num_models):
            if i == j:
                continue
            if correlation_matrix == "lasso":
                corr = lasso_correlation_matrix(representations[i], representations[j],
                                                random_state)
            else:
                corr = spearman_correlation_conv(representations[i], representations[j])
            corr_all[i, j, :, :] = corr
            if filter_low_kl:
                corr = corr[kl_masks[i], ...][..., kl_masks[j]]
            disentanglement[i, j] = relative_strength_disentanglement(corr)
    scores = {}
    if include_raw_correlations:
        scores["raw_correlations"] = corr_all.tolist()
    scores["pairwise_disentanglement_scores"] = disentanglement.tolist()
    scores["model_scores"] = [
        float(np.median(np.delete(disentanglement[:, i], i))) for i in range(num_models)
    ]
    return scores


def udr(
    codes_per_model,
    kl_per_model,
    *,
    correlation_matrix="lasso",
    filter_low_kl=True,
    include_raw_correlations=True,
    kl_filter_threshold=0.01,
    random_state=None,
) -> dict:
    """UDR model scores of several models evaluated on the same inputs.

    Parameters
    ----------
    codes_per_model : sequence of arrays of shape (n_samples, n_latents)
        The mean representation of each of the ``n_models >= 2`` models, rows aligned (the same
        observations in the same order); all models must have the same ``n_latents``.
    kl_per_model : array of shape (n_models, n_latents)
        Average KL divergence of each latent to the prior.
    correlation_matrix : {"lasso", "spearman"}, default="lasso"
    filter_low_kl : bool, default=True
        Drop inactive latents (``kl <= kl_filter_threshold``) from the similarity matrices.
    include_raw_correlations : bool, default=True
        Also return the unfiltered similarity matrices.
    kl_filter_threshold : float, default=0.01
        KL threshold of inactive latents, used both for zeroing and for filtering.
    random_state : numpy.random.RandomState, int or None
        Passed to the Lasso (which does not draw from it with cyclic updates).

    Returns
    -------
    dict
        ``"raw_correlations"`` (optional; nested lists (n_models, n_models, n_latents,
        n_latents)), ``"pairwise_disentanglement_scores"`` (nested lists (n_models, n_models,
        1); entry [i][j] scores the pair (i, j), diagonal 0), ``"model_scores"`` (list of
        n_models floats in [0, 1]).

    Raises
    ------
    ValueError
        On fewer than 2 models, mismatched shapes, a bad ``kl_per_model`` or an unknown
        ``correlation_matrix``.

    Notes
    -----
    disentanglement_lib zeroes latents with ``kl <= 0.01`` whatever ``kl_filter_threshold`` is
    (the constant is hard-coded); here the threshold applies to both steps. The two agree at
    the default threshold; ``fastdis.compat.disentanglement_lib.udr`` keeps the reference's
    behaviour.
    """
    kl_filter_threshold = check_fraction(
        kl_filter_threshold, name="kl_filter_threshold", low=-np.inf, high=np.inf
    )
    return udr_with_thresholds(
        codes_per_model,
        kl_per_model,
        zero_threshold=kl_filter_threshold,
        filter_threshold=kl_filter_threshold,
        correlation_matrix=correlation_matrix,
        filter_low_kl=filter_low_kl,
        include_raw_correlations=include_raw_correlations,
        random_state=random_state,
    )


def udr_with_thresholds(
    codes_per_model,
    kl_per_model,
    *,
    zero_threshold,
    filter_threshold,
    correlation_matrix="lasso",
    filter_low_kl=True,
    include_raw_correlations=True,
    random_state=None,
) -> dict:
    """:func:`udr` with separate KL thresholds for zeroing latents and for filtering them.

    The reference zeroes at a hard-coded 0.01 and filters at ``kl_filter_threshold``; the
    compat module calls this with those two values, :func:`udr` with one threshold for both.
    """
    reps, kl, correlation_matrix = _check_udr_inputs(
        codes_per_model, kl_per_model, correlation_matrix
    )
    reps = [standardize_and_mask(r, kl[m], zero_threshold) for m, r in enumerate(reps)]
    masks = [kl[m] > filter_threshold for m in range(len(reps))]
    return udr_from_representations(
        reps,
        masks,
        correlation_matrix=correlation_matrix,
        filter_low_kl=filter_low_kl,
        include_raw_correlations=include_raw_correlations,
        random_state=random_state,
    )


def _check_udr_inputs(codes_per_model, kl_per_model, correlation_matrix):
    if correlation_matrix not in _CORRELATIONS:
        raise ValueError(
            f"correlation_matrix must be one of {list(_CORRELATIONS)}; got {correlation_matrix!r}."
        )
    if isinstance(codes_per_model, np.ndarray) and codes_per_model.ndim == 3:
        codes_per_model = list(codes_per_model)
    try:
        n_models = len(codes_per_model)
    except TypeError:
        raise ValueError(
            "codes_per_model must be a sequence of (n_samples, n_latents) arrays."
        ) from None
    if n_models < 2:
        raise ValueError(f"codes_per_model must hold at least 2 models; got {n_models}.")
    reps = [
        check_codes(c, name=f"codes_per_model[{m}]", min_samples=2).astype(np.float64)
        for m, c in enumerate(codes_per_model)
    ]
    if any(r.shape != reps[0].shape for r in reps):
        raise ValueError(
            "every model in codes_per_model must have the same shape (n_samples, n_latents); got "
            f"{[r.shape for r in reps]}."
        )
    kl = np.asarray(kl_per_model, dtype=np.float64)
    if kl.shape != (n_models, reps[0].shape[1]):
        raise ValueError(
            f"kl_per_model must have shape (n_models, n_latents) = {(n_models, reps[0].shape[1])}; "
            f"got {kl.shape}."
        )
    if np.isnan(kl).any():
        raise ValueError("kl_per_model contains NaN.")
    return reps, kl, correlation_matrix
