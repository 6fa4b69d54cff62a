"""The numbers behind the paper's analyses, as plain functions of tidy tables (no drawing).

* :func:`variance_explained`: how much of a score's variance across models the setting
  (method, then strength within the method) explains and how much is left to the seeds;
* :func:`selection_transfer`: how often a setting chosen on one seed matches or beats a random
  model on another seed, on the same or another metric and data set;
* :func:`rank_correlations`: Spearman correlations between two groups of columns.
"""

from __future__ import annotations

import numpy as np

#: The four comparisons of the transfer table: (same metric?, same data set?).
TRANSFER_CELLS = ((True, True), (False, True), (True, False), (False, False))


def variance_explained(values, methods, settings) -> dict:
    """Shares of the variance of ``values`` explained by method, strength and seed.

    A nested one-way analysis of variance (sums of squares, no model fit): with :math:`y_i`
    the score of model :math:`i`, :math:`\\bar y` the mean over models, :math:`\\bar y_{m(i)}`
    the mean over its method's models and :math:`\\bar y_{g(i)}` over its setting's (method
    and strength; the models of a setting differ only in their seed),

    .. math::

        \\sum_i (y_i - \\bar y)^2 = \\underbrace{\\sum_i (\\bar y_{m(i)} - \\bar y)^2}_{method}
        + \\underbrace{\\sum_i (\\bar y_{g(i)} - \\bar y_{m(i)})^2}_{strength}
        + \\underbrace{\\sum_i (y_i - \\bar y_{g(i)})^2}_{seed}

    and each share is its term over the total (they sum to 1). The setting's share
    (method + strength) is the classical :math:`\\eta^2`; it is biased upwards with few seeds:
    scores that do not depend on the setting at all give it
    :math:`(G - 1) / (N - 1)` in expectation (G settings, N models).

    Parameters
    ----------
    values : array-like of float, shape (n_models,)
        One score per model, finite.
    methods, settings : array-like of str, shape (n_models,)
        Each model's method and setting (settings nested in methods).

    Returns
    -------
    dict
        ``n_models``, ``n_settings``, ``variance`` (population variance of ``values``),
        ``method``, ``strength``, ``seed`` (shares in [0, 1], NaN when undefined) and
        ``setting`` (method + strength), and ``note``: why the shares are undefined, or "".
    """
    import pandas as pd

    frame = pd.DataFrame({"y": np.asarray(values, dtype=np.float64),
                          "method": np.asarray(methods), "setting": np.asarray(settings)})
    n_settings = frame["setting"].nunique()
    result = {"n_models": len(frame), "n_settings": n_settings,
              "variance": float(frame["y"].var(ddof=0)) if len(frame) else np.nan,
              "method": np.nan, "strength": np.nan, "seed": np.nan, "setting": np.nan,
              "note": ""}
    if n_settings < 2:
        result["note"] = "one setting: no setting to tell the seeds from"
    elif frame["setting"].value_counts().max() < 2:
        result["note"] = "one model per setting: the seeds' share cannot be separated"
    elif np.ptp(frame["y"].to_numpy()) == 0:
        result["note"] = "the same value for every model"
    if result["note"]:
        return result
    setting_mean = frame.groupby("setting")["y"].transform("mean")
    method_mean = frame.groupby("method")["y"].transform("mean")
    squares = {"method": ((method_mean - frame["y"].mean()) ** 2).sum(),
               "strength": ((setting_mean - method_mean) ** 2).sum(),
               "seed": ((frame["y"] - setting_mean) ** 2).sum()}
    total = sum(squares.values())
    result.update({part: float(value / total) for part, value in squares.items()})
    result["setting"] = result["method"] + result["strength"]
    return result


def selection_transfer(scores):
    """How often a setting chosen on one seed matches or beats a random model elsewhere.

    The protocol of Locatello et al. (2019), section 5.4 ("Are there reliable recipes for model
    selection?"), computed exactly instead of from 10,000 random draws:

    1. a *source*: a data set d, a metric m and a seed s. The chosen setting is the one with
       the best score m on d among the models of seed s (ties: the first setting by label);
       a source needs at least two settings at that seed;
    2. a *target*: a data set d' and a metric m', in one of four relations to the source
       (same or another metric, same or another data set). The chosen setting's models on d'
       at every *other* seed s' != s are each compared with a random model of d' (uniform
       over all its models, every setting and seed), by m': the probability that the chosen
       model's score is >= (matches or beats) and > (beats) the random one's is the fraction
       of d''s models it ties or exceeds (the empirical CDF, exact);
    3. the probability of a cell is the mean over sources of the mean over the source's
       targets in that relation of the mean over seeds s', i.e. the expectation of the
       paper's draw: a random source, then a random target in the relation, then a random
       other seed.

    Higher is better for every score. A random choice would give about 0.5 (plus half the
    ties) for "beats or matches".

    Parameters
    ----------
    scores : pandas.DataFrame
        Columns ``dataset``, ``score`` (the metric), ``setting``, ``seed``, ``value``; models
        sharing data set, setting and seed are averaged.

    Returns
    -------
    pandas.DataFrame
        One row per cell that has comparisons, in :data:`TRANSFER_CELLS` order: ``metric``
        ("same"/"different"), ``data_set`` ("same"/"different"), ``p_beats_or_matches``,
        ``p_beats``, ``n_sources``, ``n_comparisons``.
    """
    import pandas as pd

    means = scores.groupby(["dataset", "score", "setting", "seed"])["value"].mean()
    pools = {key: group.droplevel(["dataset", "score"])
             for key, group in means.groupby(level=["dataset", "score"])}
    per_source = {cell: [] for cell in TRANSFER_CELLS}
    for (dataset, metric), source in pools.items():
        for seed, at_seed in source.groupby(level="seed"):
            if len(at_seed) < 2:
                continue
            chosen = at_seed.droplevel("seed").idxmax()
            for cell, outcome in _targets_of(chosen, seed, dataset, metric, pools).items():
                per_source[cell].append(outcome)
    rows = []
    for cell in TRANSFER_CELLS:
        outcomes = np.array(per_source[cell]).reshape(-1, 3)
        if len(outcomes):
            rows.append({"metric": "same" if cell[0] else "different",
                         "data_set": "same" if cell[1] else "different",
                         "p_beats_or_matches": outcomes[:, 0].mean(),
                         "p_beats": outcomes[:, 1].mean(), "n_sources": len(outcomes),
                         "n_comparisons": int(outcomes[:, 2].sum())})
    return pd.DataFrame(rows, columns=["metric", "data_set", "p_beats_or_matches", "p_beats",
                                       "n_sources", "n_comparisons"])


def _targets_of(chosen, seed, dataset, metric, pools) -> dict:
    """For one source, per cell: (P(>=), P(>), comparisons), averaged over its targets."""
    found = {}
    for (target_dataset, target_metric), pool in pools.items():
        if chosen not in pool.index.get_level_values("setting"):
            continue
        picked = pool.xs(chosen, level="setting")
        picked = picked[picked.index != seed].to_numpy()
        if not len(picked):
            continue
        ranked = np.sort(pool.to_numpy())
        at_most = np.searchsorted(ranked, picked, side="right") / len(ranked)
        below = np.searchsorted(ranked, picked, side="left") / len(ranked)
        cell = (target_metric == metric, target_dataset == dataset)
        found.setdefault(cell, []).append((at_most.mean(), below.mean(), len(picked)))
    return {cell: (np.mean([t[0] for t in targets]), np.mean([t[1] for t in targets]),
                   sum(t[2] for t in targets)) for cell, targets in found.items()}


def rank_correlations(wide, rows, columns, *, min_models: int = 3):
    """Spearman correlation of each ``rows`` column of ``wide`` with each ``columns`` column.

    Over the models (``wide``'s rows) where both are finite; NaN below ``min_models`` models
    or where one is constant. Returns the (rows x columns) correlations and model counts.
    """
    correlation = wide[list(dict.fromkeys([*rows, *columns]))].corr(
        method="spearman", min_periods=min_models).loc[rows, columns]
    present = wide.notna().astype(np.int64)
    counts = present[rows].T.dot(present[columns]).loc[rows, columns]
    return correlation, counts
