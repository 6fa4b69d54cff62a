"""BetaVAE score.

Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017; as in disentanglement_lib (``evaluation/metrics/beta_vae.py``).

The score needs *pairs of batches* that share the value of one factor: the sampling is a
separate step (:mod:`fastdis.compat.disentanglement_lib` draws them as the reference does); this
module scores the encoded pairs.
"""

from __future__ import annotations

import numba
import numpy as np

from ._factor_vae import check_groups


@numba.njit(parallel=True, cache=True)
def _mean_abs_difference(codes_a, codes_b, out):
    """out[g, j] = mean over the batch b of |codes_a[g, b, j] - codes_b[g, b, j]|.

    codes_a, codes_b: (G, B, D); out: (G, D) float64, written in place.
    """
    n_groups, batch, n_codes = codes_a.shape
    for g in numba.prange(n_groups):
        for j in range(n_codes):
            total = 0.0
            for b in range(batch):
                total += abs(codes_a[g, b, j] - codes_b[g, b, j])
            out[g, j] = total / batch


def beta_vae_features(codes_a, codes_b) -> np.ndarray:
    """The BetaVAE feature of each pair of batches: mean absolute code difference, (G, D)."""
    out = np.empty((codes_a.shape[0], codes_a.shape[2]), dtype=np.float64)
    _mean_abs_difference(codes_a, codes_b, out)
    return out


def _check_pairs(codes_a, codes_b, fixed_factor, name):
    codes_a, fixed_factor = check_groups(
        codes_a, fixed_factor, codes_name=f"{name}_codes_a", factor_name=f"{name}_factor"
    )
    codes_b, _ = check_groups(
        codes_b, fixed_factor, codes_name=f"{name}_codes_b", factor_name=f"{name}_factor"
    )
    if codes_a.shape != codes_b.shape:
        raise ValueError(
            f"{name}_codes_a and {name}_codes_b must have the same shape; got {codes_a.shape} "
            f"and {codes_b.shape}."
        )
    return codes_a, codes_b, fixed_factor


def beta_vae_score(
    train_codes_a, train_codes_b, train_factor, eval_codes_a, eval_codes_b, eval_factor
) -> dict:
    """BetaVAE score: accuracy of a linear classifier predicting which factor was held fixed.

    For each pair of batches (the same factor :math:`k` fixed to the same values in both,
    everything else drawn independently), the feature is
    :math:`\\frac{1}{B}\\sum_b |z^{(a)}_b - z^{(b)}_b|` and the label is :math:`k`. A
    multinomial logistic regression (scikit-learn's ``LogisticRegression()`` defaults:
    lbfgs, C=1, 100 iterations) is fit on the training pairs.

    Parameters
    ----------
    train_codes_a, train_codes_b : arrays of shape (n_train, batch_size, n_codes)
        Codes of the two batches of each training pair (study: 10,000 pairs of 64).
    train_factor : int array of shape (n_train,)
        Index of the factor held fixed in each pair.
    eval_codes_a, eval_codes_b, eval_factor : the same for evaluation (study: 5,000 pairs).

    Returns
    -------
    dict
        ``{"train_accuracy", "eval_accuracy"}`` in [0, 1].
    """
    train_a, train_b, train_factor = _check_pairs(
        train_codes_a, train_codes_b, train_factor, "train"
    )
    eval_a, eval_b, eval_factor = _check_pairs(eval_codes_a, eval_codes_b, eval_factor, "eval")
    if train_a.shape[2] != eval_a.shape[2]:
        raise ValueError(
            f"train codes have {train_a.shape[2]} codes but eval codes have {eval_a.shape[2]}."
        )
    return beta_vae_score_from_features(
        beta_vae_features(train_a, train_b), train_factor,
        beta_vae_features(eval_a, eval_b), eval_factor,
    )


def beta_vae_score_from_features(train_features, train_labels, eval_features, eval_labels):
    """Fit the logistic regression on precomputed features and score train and eval accuracy."""
    from ._linear import LogisticRegression

    if np.unique(train_labels).size < 2:
        raise ValueError(
            "train_factor holds a single factor index: the classifier needs pairs with at "
            "least two different fixed factors."
        )
    model = LogisticRegression()
    model.fit(train_features, train_labels)
    return {
        "train_accuracy": float(np.mean(model.predict(train_features) == train_labels)),
        "eval_accuracy": float(model.score(eval_features, eval_labels)),
    }
