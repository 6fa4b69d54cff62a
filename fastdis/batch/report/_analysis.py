"""The numbers behind the paper's analyses, as plain functions of tidy tables (no drawing).

* :func:`variance_explained`: how much of a score's variance across models the setting
  (method, then strength within the method) explains and how much is left to the seeds;
* :func:`selection_transfer`: how often a setting chosen on one seed matches or beats a random
  model on another seed, on the same or another metric and data set;
* :func:`rank_correlations`: Spearman correlations between two groups of columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    models = _ranked_models(scores)
    sources = _sources(models)
    # Each source against every target pool that holds its chosen setting: that setting's
    # totals there, minus its model at the source's own seed (not a different seed).
    totals = models.groupby(["dataset", "score", "setting"], as_index=False).agg(
        sum_at_most=("at_most", "sum"), sum_below=("below", "sum"), n=("at_most", "size"))
    pairs = sources.merge(totals, left_on="chosen", right_on="setting")
    own_seed = models.rename(columns={"seed": "source_seed", "at_most": "own_at_most",
                                      "below": "own_below"})
    pairs = pairs.merge(own_seed[["dataset", "score", "setting", "source_seed", "own_at_most",
                                  "own_below"]],
                        on=["dataset", "score", "setting", "source_seed"], how="left")
    has_own = pairs["own_at_most"].notna()
    pairs["n"] -= has_own
    pairs = pairs[pairs["n"] > 0]
    pairs["at_most"] = (pairs["sum_at_most"] - pairs["own_at_most"].fillna(0)) / pairs["n"]
    pairs["below"] = (pairs["sum_below"] - pairs["own_below"].fillna(0)) / pairs["n"]
    pairs["metric"] = np.where(pairs["score"] == pairs["source_score"], "same", "different")
    pairs["data_set"] = np.where(pairs["dataset"] == pairs["source_dataset"], "same",
                                 "different")
    per_source = pairs.groupby(["metric", "data_set", "source_dataset", "source_score",
                                "source_seed"]).agg(at_most=("at_most", "mean"),
                                                    below=("below", "mean"), n=("n", "sum"))
    cells = per_source.groupby(["metric", "data_set"]).agg(
        p_beats_or_matches=("at_most", "mean"), p_beats=("below", "mean"),
        n_sources=("n", "size"), n_comparisons=("n", "sum"))
    order = [("same" if m else "different", "same" if d else "different")
             for m, d in TRANSFER_CELLS]
    return cells.reindex([cell for cell in order if cell in cells.index]).reset_index()


def _ranked_models(scores):
    """One row per model (data set, score, setting, seed; duplicates averaged) with the
    fraction of its pool (data set and score) it ties or exceeds, ``at_most``, and exceeds,
    ``below``: the empirical CDF at its value, inclusive and exclusive."""
    models = scores.groupby(["dataset", "score", "setting", "seed"], as_index=False)[
        "value"].mean()
    pool = models.groupby(["dataset", "score"])["value"]
    size = pool.transform("size")
    models["at_most"] = pool.rank(method="max") / size
    models["below"] = (pool.rank(method="min") - 1) / size
    return models


def _sources(models):
    """Each (data set, score, seed) with at least two settings and its best setting
    (``chosen``; ties: the first setting by label)."""
    keys = ["dataset", "score", "seed"]
    ordered = models.sort_values([*keys, "setting"], kind="stable")
    counts = ordered.groupby(keys)["setting"].transform("size")
    ordered = ordered[counts >= 2]
    best = ordered.loc[ordered.groupby(keys)["value"].idxmax()]
    return best.rename(columns={"dataset": "source_dataset", "score": "source_score",
                                "seed": "source_seed", "setting": "chosen"})[
        ["source_dataset", "source_score", "source_seed", "chosen"]]


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
