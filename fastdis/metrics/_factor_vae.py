"""FactorVAE score.

Kim & Mnih, "Disentangling by Factorising", ICML 2018; as in disentanglement_lib
(``evaluation/metrics/factor_vae.py``).

The score needs *groups* of points that share the value of one factor: the sampling (which
factor is fixed, at which value) is a separate step — :mod:`fastdis.compat.disentanglement_lib`
draws them as the reference does — and this module scores the encoded groups.
"""

from __future__ import annotations

import numba
import numpy as np

from .._validation import check_codes, check_factors, check_fraction


@numba.njit(parallel=True, cache=True)
def _lowest_relative_variance(group_codes, global_variances, active, out):
    """out[g] = argmin over active codes j of var(group_codes[g, :, j], ddof=1) / global_var[j].

    group_codes: (G, B, D); global_variances: (D,); active: (D,) bool; out: (G,) int64 with the
    index of the code (in 0..D-1), written in place. The first minimum wins and a NaN ratio
    beats everything, as in np.argmin.
    """
    n_groups, batch, n_codes = group_codes.shape
    for g in numba.prange(n_groups):
        best = -1
        best_ratio = np.inf
        for j in range(n_codes):
            if not active[j]:
                continue
            mean = 0.0
            for b in range(batch):
                mean += group_codes[g, b, j]
            mean /= batch
            squares = 0.0
            for b in range(batch):
                deviation = group_codes[g, b, j] - mean
                squares += deviation * deviation
            ratio = squares / (batch - 1) / global_variances[j]
            if np.isnan(ratio):  # np.argmin returns the first NaN (reference, 0/0 codes)
                best = j
                break
            if best < 0 or ratio < best_ratio:
                best = j
                best_ratio = ratio
        out[g] = best


def check_groups(group_codes, fixed_factor, *, codes_name: str, factor_name: str):
    """Validate (n_groups, group_size, n_codes) codes and the (n_groups,) fixed-factor index."""
    group_codes = np.asarray(group_codes)
    if group_codes.ndim != 3:
        raise ValueError(
            f"{codes_name} must have shape (n_groups, group_size, n_codes); got shape "
            f"{group_codes.shape}."
        )
    flat = check_codes(group_codes.reshape(-1, group_codes.shape[-1]), name=codes_name)
    group_codes = flat.reshape(group_codes.shape)
    fixed_factor = np.asarray(fixed_factor)
    if fixed_factor.shape != (group_codes.shape[0],):
        raise ValueError(
            f"{factor_name} must have shape (n_groups,) = ({group_codes.shape[0]},), one fixed "
            f"factor index per group; got shape {fixed_factor.shape}."
        )
    fixed_factor = check_factors(fixed_factor[:, None], name=factor_name)[:, 0]
    return group_codes, fixed_factor


def majority_vote_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    """Fraction of votes that agree with the per-code majority class ``classifier``."""
    return float(np.sum(votes[classifier, np.arange(votes.shape[1])]) / np.sum(votes))


def factor_vae_score(
    variance_codes,
    train_codes,
    train_factor,
    eval_codes,
    eval_factor,
    *,
    num_factors: int | None = None,
    prune_threshold: float = 0.05,
) -> dict:
    """FactorVAE score: accuracy of a majority-vote classifier of the fixed factor.

    Codes are scaled by their global standard deviation (estimated on ``variance_codes``); codes
    whose standard deviation is below ``prune_threshold`` are ignored. For each group of points
    sharing the value of factor :math:`k`, the code with the smallest scaled variance votes for
    :math:`k`. Each code predicts the factor it voted for most often (on the training groups);
    the score is the fraction of votes that agree, on the training and on the evaluation groups.

    Parameters
    ----------
    variance_codes : array of shape (n_variance_estimate, n_codes)
        Codes of i.i.d. points, used for the global variances (study: 10,000 points).
    train_codes : array of shape (n_train, group_size, n_codes)
        Codes of the training groups (study: 10,000 groups of 64).
    train_factor : int array of shape (n_train,)
        Index of the factor held fixed in each training group.
    eval_codes, eval_factor : the same for the evaluation groups (study: 5,000).
    num_factors : int, optional
        Number of factors; if given, every fixed index must be below it (only checked: the
        scores do not depend on it).
    prune_threshold : float, default=0.05
        Codes with global standard deviation below this are pruned (study: 0.05).

    Returns
    -------
    dict
        ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``. ``num_active_dims`` is the
        number of codes kept; the reference returns the total number of codes there (kept in
        the compat module). Codes with zero variance are always pruned (the reference keeps
        them when the threshold is 0 and divides 0 by 0). If no code is active, both accuracies
        are 0.

    Raises
    ------
    ValueError
        On bad shapes, non-finite codes, or groups smaller than 2 (no variance).
    """
    variance_codes = check_codes(variance_codes, name="variance_codes", min_samples=2)
    train_codes, train_factor = check_groups(
        train_codes, train_factor, codes_name="train_codes", factor_name="train_factor"
    )
    eval_codes, eval_factor = check_groups(
        eval_codes, eval_factor, codes_name="eval_codes", factor_name="eval_factor"
    )
    prune_threshold = check_fraction(prune_threshold, name="prune_threshold", high=np.inf)
    n_codes = variance_codes.shape[1]
    for name, groups in (("train_codes", train_codes), ("eval_codes", eval_codes)):
        if groups.shape[2] != n_codes:
            raise ValueError(
                f"{name} has {groups.shape[2]} codes but variance_codes has {n_codes}."
            )
        if groups.shape[1] < 2:
            raise ValueError(f"{name} groups have {groups.shape[1]} point; at least 2 needed.")
        if groups.shape[0] < 1:
            raise ValueError(f"{name} has no groups.")
    largest_index = int(max(train_factor.max(), eval_factor.max()))
    if num_factors is not None and num_factors <= largest_index:
        raise ValueError(
            f"num_factors={num_factors} but the fixed-factor indices go up to {largest_index}; "
            "indices must be < num_factors."
        )
    global_variances = np.var(variance_codes, axis=0, ddof=1)
    active = (np.sqrt(global_variances) >= prune_threshold) & (global_variances > 0)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    # One vote-table row per fixed index that occurs, plus index 0, which argmax gives a code
    # that never wins: the same accuracies as a row for every index below num_factors, without
    # a row per unused index (indices up to 1e9 would otherwise allocate gigabytes).
    rows = np.union1d([0], np.concatenate([train_factor, eval_factor]))
    train_votes = vote_table(train_codes, np.searchsorted(rows, train_factor), global_variances,
                             active, rows.size)
    eval_votes = vote_table(eval_codes, np.searchsorted(rows, eval_factor), global_variances,
                            active, rows.size)
    classifier = np.argmax(train_votes, axis=0)
    return {
        "train_accuracy": majority_vote_accuracy(train_votes, classifier),
        "eval_accuracy": majority_vote_accuracy(eval_votes, classifier),
        "num_active_dims": int(active.sum()),
    }


def vote_table(group_codes, fixed_factor, global_variances, active, num_factors):
    """Votes (num_factors, n_codes): how often each code had the lowest scaled variance."""
    winners = np.empty(group_codes.shape[0], dtype=np.int64)
    _lowest_relative_variance(
        np.ascontiguousarray(group_codes, dtype=np.float64),
        np.asarray(global_variances, dtype=np.float64),
        np.asarray(active, dtype=np.bool_),
        winners,
    )
    votes = np.zeros((num_factors, group_codes.shape[2]), dtype=np.int64)
    np.add.at(votes, (fixed_factor, winners), 1)
    return votes
