"""Unfairness of downstream classifiers trained on a representation.

Locatello et al., "On the Fairness of Disentangled Representations", NeurIPS 2019, section 4
(https://arxiv.org/abs/1905.13662). A classifier predicts a target factor :math:`i` from the
codes; a sensitive factor :math:`j \\ne i` is then *intervened on*: a fixed set of test factor
vectors is rendered once for every value :math:`c` of factor :math:`j` (column :math:`j` set to
:math:`c`), encoded, and classified. With :math:`P_c` the distribution of predictions in group
:math:`c` (:math:`n_c` points) and :math:`P` the distribution over all groups, the unfairness is
the total-variation distance of each group to the whole,

.. math::

    \\mathrm{TV}_c = \\tfrac{1}{2} \\sum_y |P_c(y) - P(y)|,\\qquad
    \\mathrm{mean} = \\sum_c \\frac{n_c}{\\sum_{c'} n_{c'}} \\mathrm{TV}_c,\\qquad
    \\mathrm{max} = \\max_c \\mathrm{TV}_c,

giving two (n_factors, n_factors) matrices that :func:`compute_scores_dict` aggregates over
targets and sensitive factors. The paper's score is ``mean_fairness:mean_pred:mean_sens``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._parallel import thread_map
from .._validation import check_codes, check_codes_factors, check_informative_factors
from ._downstream import check_n_jobs
from ._predictors import resolve_predictor

__all__ = ["compute_scores_dict", "fairness", "fairness_counts", "inter_group_fairness"]


def inter_group_fairness(counts) -> tuple[float, float]:
    """Mean and maximum total-variation distance of each sensitive group to the overall one.

    Parameters
    ----------
    counts : int array of shape (n_target_classes, n_sensitive_classes)
        ``counts[y, c]`` = how many points of sensitive group ``c`` were predicted as class ``y``.

    Returns
    -------
    (mean, max) : tuple of float
        Group-size-weighted mean and maximum TV distance, in [0, 1] (formula in the module
        docstring).

    Notes
    -----
    Computed in float64. disentanglement_lib computes this in float32 (differences up to ~1e-7);
    ``fastdis.compat.disentanglement_lib.fairness.inter_group_fairness`` keeps the float32 version.

    Raises
    ------
    ValueError
        If ``counts`` is not a 2-D array of non-negative counts with a positive total in every
        column (an empty sensitive group has no prediction distribution).
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.size == 0:
        raise ValueError(
            f"counts must be a non-empty 2-D array (n_target_classes, n_sensitive_classes); got "
            f"shape {counts.shape}."
        )
    if (counts < 0).any():
        raise ValueError("counts must be non-negative.")
    counts = counts.astype(np.float64)
    per_group = counts.sum(axis=0)  # (n_sensitive,)
    if (per_group <= 0).any():
        raise ValueError(
            f"counts has an empty sensitive group (column {int(np.argmin(per_group))} sums to 0); "
            "every group needs predictions."
        )
    overall = counts.sum(axis=1) / per_group.sum()  # (n_target,)
    tv = np.abs(counts / per_group[np.newaxis, :] - overall[:, np.newaxis]).sum(axis=0) / 2.0
    mean = float(np.sum(tv * per_group / per_group.sum()))
    return mean, float(np.max(tv))


def compute_scores_dict(metric, prefix: str) -> dict:
    """Aggregate an (n_factors, n_factors) unfairness matrix into disentanglement_lib's keys.

    ``metric[i, j]`` is the unfairness of predicting target ``i`` with sensitive factor ``j``;
    the diagonal is ignored. Keys, in this order (``p`` = prefix):

    * ``p:pred{i}:sens{j}`` for every ``i != j``;
    * ``p:pred{i}:mean_sens``, ``p:pred{i}:max_sens`` (over ``j != i``) for every target ``i``;
    * ``p:sens{j}:mean_pred``, ``p:sens{j}:max_pred`` (over ``i != j``) for every sensitive ``j``;
    * ``p:{mean,max}_sens:{mean,max}_pred`` (mean or max over the per-sensitive values) and
      ``p:{mean,max}_pred:{mean,max}_sens`` (over the per-target values): 8 keys.

    That is ``n(n-1) + 4n + 8`` keys (26 for 3 factors), values as plain floats.

    Raises
    ------
    ValueError
        If ``metric`` is not a square 2-D array with at least 2 rows.
    """
    metric = np.asarray(metric, dtype=np.float64)
    if metric.ndim != 2 or metric.shape[0] != metric.shape[1] or metric.shape[0] < 2:
        raise ValueError(
            f"metric must be a square (n_factors, n_factors) array with n_factors >= 2; got "
            f"shape {metric.shape}."
        )
    n = metric.shape[0]
    result = {}
    for i in range(n):
        for j in range(n):
            if i != j:
                result[f"{prefix}:pred{i}:sens{j}"] = float(metric[i, j])
    # Per target (rows of metric) over the other, sensitive factors, then per sensitive factor
    # (rows of metric.T) over the targets; the diagonal is never part of it.
    summaries = []
    for matrix, own, other in ((metric, "pred", "sens"), (metric.T, "sens", "pred")):
        means, maxs = [], []
        for k in range(n):
            relevant = np.delete(matrix[k], k)
            means.append(np.mean(relevant))
            maxs.append(np.amax(relevant))
            result[f"{prefix}:{own}{k}:mean_{other}"] = float(means[-1])
            result[f"{prefix}:{own}{k}:max_{other}"] = float(maxs[-1])
        summaries.append((means, maxs))
    (row_means, row_maxs), (column_means, column_maxs) = summaries
    result[f"{prefix}:mean_sens:mean_pred"] = float(np.mean(column_means))
    result[f"{prefix}:mean_sens:max_pred"] = float(np.mean(column_maxs))
    result[f"{prefix}:max_sens:mean_pred"] = float(np.amax(column_means))
    result[f"{prefix}:max_sens:max_pred"] = float(np.amax(column_maxs))
    result[f"{prefix}:mean_pred:mean_sens"] = float(np.mean(row_means))
    result[f"{prefix}:mean_pred:max_sens"] = float(np.mean(row_maxs))
    result[f"{prefix}:max_pred:mean_sens"] = float(np.amax(row_means))
    result[f"{prefix}:max_pred:max_sens"] = float(np.amax(row_maxs))
    return result


def _intervention_sets(intervention_codes, n_factors, n_codes) -> dict:
    """Normalise ``intervention_codes`` to {(i, j): float array (C_j, n_points, n_codes)}."""
    pairs = [(i, j) for i in range(n_factors) for j in range(n_factors) if i != j]
    if isinstance(intervention_codes, Mapping):
        missing = [p for p in pairs if p not in intervention_codes]
        if missing:
            raise ValueError(
                f"intervention_codes has no entry for the (target, sensitive) pair(s) "
                f"{missing[:3]}{'...' if len(missing) > 3 else ''}; a mapping needs every pair "
                "i != j."
            )
        raw = {p: intervention_codes[p] for p in pairs}
        where = {p: f"intervention_codes[{p}]" for p in pairs}
    else:
        try:
            n_given = len(intervention_codes)
        except TypeError:
            n_given = -1
        if n_given != n_factors:
            raise ValueError(
                "intervention_codes must be a mapping {(target, sensitive): array} or a sequence "
                f"with one array per sensitive factor ({n_factors}); got {n_given} entries."
            )
        raw = {(i, j): intervention_codes[j] for i, j in pairs}
        where = {(i, j): f"intervention_codes[{j}]" for i, j in pairs}
    sets = {}
    checked_by_id = {}
    for (i, j), array in raw.items():
        key = id(array)
        if key not in checked_by_id:
            array = np.asarray(array)
            if array.ndim != 3:
                raise ValueError(
                    f"{where[(i, j)]} must have shape (n_values_of_factor_{j}, n_points, n_codes); "
                    f"got shape {array.shape}."
                )
            flat = check_codes(array.reshape(-1, array.shape[-1]), name=where[(i, j)])
            if flat.shape[1] != n_codes:
                raise ValueError(
                    f"{where[(i, j)]} must have {n_codes} codes (last axis) like codes; got "
                    f"{flat.shape[1]}."
                )
            checked_by_id[key] = flat.reshape(array.shape)
        sets[(i, j)] = checked_by_id[key]
    return sets


def fairness_counts(
    codes,
    factors,
    intervention_codes,
    *,
    predictor="gradient_boosting",
    factor_sizes=None,
    n_jobs=None,
) -> dict:
    """Prediction counts per (target, sensitive) pair: the raw material of the fairness scores.

    One predictor per target factor ``i`` is fitted on ``(codes, factors[:, i])``; it classifies
    every intervention group of every sensitive factor ``j != i``.

    Parameters
    ----------
    codes : array of shape (n_train, n_codes)
    factors : int array of shape (n_train, n_factors)
    intervention_codes : mapping or sequence
        Encoded intervention sets. Either a mapping ``{(i, j): array of shape (C_j, n_points,
        n_codes)}`` for every ordered pair ``i != j`` (the reference draws a fresh set of test
        factors for each pair), where ``array[c]`` are the codes of the ``n_points`` test points
        with factor ``j`` set to ``c``; or a sequence of ``n_factors`` such arrays indexed by the
        sensitive factor ``j``, shared by all targets (entry ``i = j`` is ignored).
    predictor : str or callable, default="gradient_boosting"
        Name or factory (see ``fastdis.metrics._predictors``); the study uses gradient boosting.
    factor_sizes : sequence of int, default=None
        Number of values of each factor, the number of rows of each count table; ``None`` means
        ``max(factors[:, i]) + 1``. Rows of classes never predicted are zero and do not change
        the fairness values.
    n_jobs : int, default=None
        Threads over target factors; ``None`` means 1.

    Returns
    -------
    dict
        ``{(i, j): int64 array (n_classes_i, C_j)}`` with ``counts[y, c]`` = number of points of
        group ``c`` predicted as class ``y``.
    """
    codes, factors = check_codes_factors(codes, factors)
    check_informative_factors(factors)
    n_factors = factors.shape[1]
    if n_factors < 2:
        raise ValueError(
            f"factors must have at least 2 columns (a target and a sensitive factor); got "
            f"{n_factors}."
        )
    table_rows = factors.max(axis=0) + 1
    sparse = table_rows > max(1024, 4 * factors.shape[0])  # a table row per label value
    if sparse.any():
        k = int(np.argmax(sparse))
        raise ValueError(
            f"factors[:, {k}] has labels up to {table_rows[k] - 1} for {factors.shape[0]} "
            "samples; the count tables have a row per label value, so relabel the factor to "
            "0, 1, ... (e.g. np.unique(column, return_inverse=True)[1])."
        )
    sets = _intervention_sets(intervention_codes, n_factors, codes.shape[1])
    factory = resolve_predictor(predictor)

    def counts_for_target(i):
        model = factory()
        model.fit(codes, factors[:, i])
        n_classes = int(factors[:, i].max()) + 1
        if factor_sizes is not None:
            n_classes = max(n_classes, int(factor_sizes[i]))
        out = {}
        for j in range(n_factors):
            if j == i:
                continue
            groups = sets[(i, j)]  # (C_j, n_points, n_codes)
            predictions = np.asarray(
                model.predict(groups.reshape(-1, groups.shape[-1]))
            ).reshape(groups.shape[0], groups.shape[1])
            predictions = predictions.astype(np.int64)
            length = max(n_classes, int(predictions.max()) + 1)
            counts = np.zeros((length, groups.shape[0]), dtype=np.int64)
            for c in range(groups.shape[0]):
                counts[:, c] = np.bincount(predictions[c], minlength=length)
            out[(i, j)] = counts
        return out

    result = {}
    for part in thread_map(counts_for_target, range(n_factors), check_n_jobs(n_jobs)):
        result.update(part)
    return result


def fairness(
    codes, factors, intervention_codes, *, predictor="gradient_boosting", n_jobs=None
) -> dict:
    """Unfairness scores of classifiers trained on the codes (Locatello et al., 2019).

    Counts predictions with :func:`fairness_counts`, turns each (target, sensitive) pair into
    mean and max total-variation unfairness with :func:`inter_group_fairness` (float64), and
    aggregates both matrices with :func:`compute_scores_dict`.

    Parameters
    ----------
    codes, factors, intervention_codes, predictor, n_jobs
        As in :func:`fairness_counts`.

    Returns
    -------
    dict
        ``compute_scores_dict(mean_matrix, "mean_fairness")`` followed by
        ``compute_scores_dict(max_matrix, "max_fairness")``: ``2 (n(n-1) + 4n + 8)`` keys; the
        paper's score is ``"mean_fairness:mean_pred:mean_sens"``. Values in [0, 1].

    Raises
    ------
    ValueError
        On malformed arrays, a constant train factor, fewer than 2 factors, or missing or
        mis-shaped intervention sets.

    Notes
    -----
    disentanglement_lib computes the TV distances in float32; fastdis uses float64 here (the
    compat module keeps float32).
    """
    counts = fairness_counts(
        codes, factors, intervention_codes, predictor=predictor, n_jobs=n_jobs
    )
    return scores_from_counts(counts, np.asarray(factors).shape[1])


def scores_from_counts(counts, n_factors, *, group_fairness=inter_group_fairness) -> dict:
    """The 52 fairness keys from the prediction-count tables of every (target, sensitive) pair.

    ``group_fairness`` maps one count table to its (mean, max) unfairness; the compat module
    passes the reference's float32 version.
    """
    mean_matrix = np.zeros((n_factors, n_factors), dtype=np.float64)
    max_matrix = np.zeros((n_factors, n_factors), dtype=np.float64)
    for (i, j), table in counts.items():
        mean_matrix[i, j], max_matrix[i, j] = group_fairness(table)
    scores = compute_scores_dict(mean_matrix, "mean_fairness")
    scores.update(compute_scores_dict(max_matrix, "max_fairness"))
    return scores
