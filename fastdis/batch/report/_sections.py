"""One function per section of the report: ``section(data) -> Section``.

Each reads :class:`~._table.ReportData`, computes its numbers (:mod:`._analysis`), draws its
figure (:mod:`._draw`) and returns the blocks of the page. A section whose data is missing
(one data set, one seed, a metric not scored, only non-finite values) returns a sentence
saying why instead of a figure; none of them raises on a valid scores table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._analysis import rank_correlations, selection_transfer, variance_explained
from ._draw import heatmap, new_figure, png, seeds_as_points, stacked_axes, strength_grid
from ._page import Heading, Picture, Section, Table
from ._table import disentanglement_key, per_size_keys

#: Most scores drawn per metric figure; the rest are in the tables.
_MAX_PANELS = 8
#: Panels per row of a metric figure (more wrap), so a figure stays page-wide.
_PANELS_PER_ROW = 4
#: The score of the total-correlation figure: the ``unsupervised`` metric's Gaussian estimate.
TOTAL_CORRELATION = ("unsupervised", "gaussian_total_correlation")
_MODEL_COLUMNS = ["dataset", "method", "strength", "seed", "checkpoint"]


def _row_labels(rows, what):
    """``what`` per row, prefixed by the data set when the rows span several."""
    if rows["dataset"].nunique() > 1:
        return rows["dataset"] + ": " + what
    return what


def _disentanglement_scores(rows):
    """The rows of each metric's disentanglement score (see :func:`disentanglement_key`)."""
    return rows[rows["key"] == rows["metric"].map(disentanglement_key)]


def rank_correlation_section(data) -> Section:
    """Spearman correlation of the headline scores across models (the paper's figure 2)."""
    section = Section("Rank correlation of the metrics' headline scores across models")
    wide = data.headline().pivot_table(index=["checkpoint", "representation"],
                                       columns="score", values="value", aggfunc="first")
    wide = wide.loc[:, wide.nunique() > 1]  # a constant score has no ranking
    if len(wide) < 3 or wide.shape[1] < 2:
        section.blocks.append(
            f"Not drawn: {len(wide)} model(s) and {wide.shape[1]} varying score(s); a rank "
            "correlation needs at least 3 models and 2 scores.")
        return section
    correlation = wide.corr(method="spearman")
    # At most 18 inches (~2000 px) square; labels shrink when there are many scores.
    size = min(18.0, max(7.0, 0.4 * len(correlation) + 3))
    figure = new_figure(size, size * 0.85)
    axis = figure.subplots()
    image = heatmap(axis, correlation, vmin=-1, vmax=1, cmap="RdBu_r",
                    fontsize=max(4.0, min(7.0, 7.0 * 70 / len(correlation))))
    figure.colorbar(image, ax=axis, label="Spearman rank correlation")
    axis.set_title(f"Rank correlation across {len(wide)} models (every representation)")
    section.blocks.append(Picture("rank_correlation", "rank correlation",
                                  png(figure, dpi=110), correlation.reset_index(names="score")))
    return section


def total_correlation_section(data) -> Section:
    """Total correlation of the sampled and the mean codes against strength (figure 1)."""
    metric, key = TOTAL_CORRELATION
    section = Section("Total correlation of the sampled and the mean representation", [
        f"The Gaussian total correlation ({metric} metric, {key}) of each model's sampled and "
        "mean codes against the regularisation strength, per method; points are models "
        "(seeds), the line joins the medians. Locatello et al. (2019, figure 1) find that "
        "regularising the total correlation lowers it for the sampled representation while "
        "that of the mean representation rises."])
    rows = data.ok[(data.ok["metric"] == metric) & (data.ok["key"] == key)]
    if rows.empty:
        section.blocks.append(f"Not drawn: the table has no {metric}:{key} score (score the "
                              f"{metric} metric).")
        return section
    present = set(rows["representation"])
    order = [r for r in ("sampled", "mean") if r in present] + sorted(
        present - {"sampled", "mean"})
    section.blocks += [f"No {name} representation was scored, so its row is absent."
                       for name in ("sampled", "mean") if name not in present]
    frame = rows.assign(row=_row_labels(rows, rows["representation"]))
    frame["order"] = frame["representation"].map(order.index)
    labels = list(dict.fromkeys(frame.sort_values(["dataset", "order"])["row"]))
    figure = strength_grid(frame, labels, title=f"Gaussian total correlation ({key})")
    section.blocks.append(Picture(
        "total_correlation", "total correlation", png(figure, dpi=90),
        frame[[*_MODEL_COLUMNS, "representation", "value"]]))
    return section


def strength_section(data) -> Section:
    """Each headline score against regularisation strength per method, seeds as points."""
    section = Section(f"Scores against regularisation strength ({data.shown} representation)")
    headline = data.headline(data.one)
    if headline.empty:
        section.blocks.append("Not drawn: no headline score of a registered metric.")
        return section
    section.blocks.append("One panel per method and score: points are models (seeds) at "
                          "their strength, the line joins the medians over seeds.")
    if (headline.groupby("method")["strength_rank"].nunique() < 2).all():
        section.blocks.append("Every method has a single strength here, so each panel is "
                              "one column of points.")
    for metric, rows in headline.groupby("metric", sort=False):
        frame = rows.assign(row=_row_labels(rows, rows["key"]))
        labels = list(dict.fromkeys(frame.sort_values("dataset", kind="stable")["row"]))
        figure = strength_grid(frame, labels, title=metric)
        section.blocks += [Heading(metric), Picture(
            f"strength_{metric}", metric, png(figure, dpi=90),
            frame[[*_MODEL_COLUMNS, "key", "value"]])]
    return section


def violins_section(data) -> Section:
    """Each summary score's distribution per setting: one violin per setting."""
    section = Section(f"Scores per method and regularisation strength ({data.shown} "
                      "representation)")
    one = data.one
    for metric in dict.fromkeys(one["metric"]):
        rows = one[one["metric"] == metric]
        keys = list(dict.fromkeys(rows["key"]))[:_MAX_PANELS]
        figure = _violins(rows, keys, metric)
        section.blocks += [Heading(metric), Picture(
            f"violins_{metric}", metric, png(figure, dpi=100, tight=False),
            rows[rows["key"].isin(keys)][["checkpoint", "setting", "key", "value"]])]
    return section


def _violins(rows, keys, metric):
    labels = sorted(rows["setting"].unique())
    columns = min(len(keys), _PANELS_PER_ROW)
    lines_of_panels = -(-len(keys) // columns)
    panel_width = min(6.0, max(3.0, 0.45 * len(labels) + 1.5))
    figure = new_figure(panel_width * columns, 3.6 * lines_of_panels)
    axes = figure.subplots(lines_of_panels, columns, squeeze=False)
    for axis in axes.flat[len(keys):]:
        axis.set_visible(False)
    rng = np.random.default_rng(0)
    for axis, key in zip(axes.flat, keys, strict=False):
        values = [rows.loc[(rows["key"] == key) & (rows["setting"] == label), "value"]
                  .to_numpy() for label in labels]
        spread = [i for i, v in enumerate(values) if len(v) > 1 and np.ptp(v) > 0]
        if spread:  # a violin needs at least two distinct values
            axis.violinplot([values[i] for i in spread], positions=spread, showmedians=True)
        for i, v in enumerate(values):
            seeds_as_points(axis, np.full(len(v), i), v, rng)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_title(key, fontsize=9)
    figure.suptitle(metric)
    figure.tight_layout()
    return figure


def seed_spread_section(data) -> Section:
    """Mean, spread and count over seeds per setting and score."""
    section = Section("Spread over seeds", [
        "Mean, standard deviation (ddof=1; empty with one model), range and number of models "
        f"of each setting and data set ({data.shown} representation)."])
    spread = (data.one.groupby(["metric", "key", "setting", "dataset"], sort=False)["value"]
              .agg(["mean", "std", "min", "max", "count"]).reset_index())
    section.blocks.append(Table(spread, csv="seed_spread"))
    return section


def variance_section(data) -> Section:
    """The share of each headline score's variance explained by method, strength and seed."""
    section = Section(f"Variance explained by the setting and by the seed ({data.shown} "
                      "representation)", [
        "Per data set and headline score, a nested analysis of variance over the models: the "
        "sum of squared deviations from the mean splits exactly into the method's part (method "
        "means around the grand mean), the strength's part (setting means around their "
        "method's mean) and the seed's part (models around their setting's mean); each share "
        "is its part over the total. The setting's share (method + strength) is biased upwards "
        "with few seeds: a score that ignores the setting gets (settings - 1) / (models - 1) "
        "on average."])
    rows = [{"dataset": dataset, "score": score,
             **variance_explained(group["value"], group["method"], group["setting"])}
            for (dataset, score), group in data.headline(data.one).groupby(
                ["dataset", "score"], sort=False)]
    if not rows:
        section.blocks.append("Not drawn: no headline score of a registered metric.")
        return section
    table = pd.DataFrame(rows)
    drawn = table[table["note"] == ""]
    left_out = table[table["note"] != ""]
    if drawn.empty:
        reasons = "; ".join(dict.fromkeys(left_out["note"]))
        section.blocks += [f"Not drawn: {reasons}.", Table(table, csv="variance_explained")]
        return section
    section.blocks.append(Picture("variance_explained", "variance explained",
                                  png(_variance_bars(drawn), dpi=90), table))
    if not left_out.empty:
        section.blocks.append("Left out: " + "; ".join(
            f"{r.dataset} {r.score} ({r.note})" for r in left_out.itertuples()) + ".")
    return section


def _variance_bars(table):
    datasets = list(dict.fromkeys(table["dataset"]))
    figure, axes = stacked_axes(9.0, [0.28 * (table["dataset"] == d).sum() + 1.0
                                      for d in datasets])
    colors = {"method": "tab:blue", "strength": "tab:cyan", "seed": "tab:gray"}
    for axis, dataset in zip(axes, datasets, strict=True):
        part = table[table["dataset"] == dataset]
        left = np.zeros(len(part))
        for share, color in colors.items():
            axis.barh(range(len(part)), part[share], left=left, color=color, label=share)
            left += part[share].to_numpy()
        axis.set_yticks(range(len(part)), part["score"], fontsize=7)
        axis.invert_yaxis()
        axis.set_xlim(0, 1)
        axis.set_title(dataset if len(datasets) > 1 else "", fontsize=9)
    axes[0].legend(ncols=3, fontsize=7, loc="lower right", bbox_to_anchor=(1, 1))
    axes[-1].set_xlabel("share of the variance across models")
    figure.tight_layout()
    return figure


def downstream_section(data) -> Section:
    """Rank correlation of the downstream accuracies with each disentanglement score."""
    section = Section(f"Downstream accuracy against disentanglement ({data.shown} "
                      "representation)", [
        "Spearman rank correlation across models, per data set, between each downstream "
        "accuracy (predictor, training size) and each disentanglement score (Locatello et al. "
        "2019, section 6). Efficiency is the accuracy at the second-smallest training size over "
        "that at the largest: with the study's sizes 10, 100, 1000 and 10000, the paper's "
        "100 / 10000. Cells with fewer than 3 models or a constant score are empty."])
    matrices, notes = {}, []
    for dataset, rows in data.one.groupby("dataset", sort=True):
        scores = _disentanglement_scores(rows)["score"].unique()
        found = _downstream_matrix(rows, list(scores))
        if isinstance(found, str):
            notes.append(f"{dataset}: {found}" if data.one["dataset"].nunique() > 1 else found)
        else:
            matrices[dataset] = found
    section.blocks += [f"Not drawn: {note}." for note in notes]
    if not matrices:
        return section
    long = pd.concat([correlation.stack(future_stack=True).rename("spearman").to_frame()
                      .join(counts.stack().rename("n_models")).reset_index(
                          names=["downstream", "score"]).assign(dataset=dataset)
                      for dataset, (correlation, counts) in matrices.items()])
    figure, axes = stacked_axes(4.5 + 0.6 * max(c.shape[1] for c, _ in matrices.values()),
                                [1.6 + 0.35 * c.shape[0] for c, _ in matrices.values()])
    for axis, (dataset, (correlation, _)) in zip(axes, matrices.items(), strict=True):
        image = heatmap(axis, correlation, vmin=-1, vmax=1, cmap="RdBu_r", annotate=True)
        axis.set_title(dataset, fontsize=9)
    figure.colorbar(image, ax=list(axes), label="Spearman rank correlation")
    section.blocks.append(Picture("downstream", "downstream accuracy against disentanglement",
                                  png(figure, dpi=90),
                                  long[["dataset", "downstream", "score", "spearman",
                                        "n_models"]]))
    return section


def _downstream_matrix(rows, scores):
    """(correlations, model counts) of one data set, or why there are none."""
    wide = rows.pivot_table(index="checkpoint", columns="score", values="value",
                            aggfunc="first")
    accuracies = []
    for metric, group in rows.groupby("metric", sort=True):
        sizes = per_size_keys(metric, group["key"].unique())
        short = metric.removeprefix("downstream_task_")
        for size, key in sizes:
            wide[f"{short} {size}"] = wide[f"{metric}:{key}"]
            accuracies.append(f"{short} {size}")
        if len(sizes) >= 3:
            wide[f"{short} efficiency"] = (wide[f"{metric}:{sizes[1][1]}"]
                                           / wide[f"{metric}:{sizes[-1][1]}"])
            accuracies.append(f"{short} efficiency")
    if not accuracies:
        return "no downstream accuracy per training size in the table"
    if not scores:
        return "no disentanglement score in the table"
    if len(wide) < 3:
        return f"{len(wide)} model(s); a rank correlation needs at least 3"
    return rank_correlations(wide, accuracies, scores)


def selection_section(data) -> Section:
    """How often a setting chosen on one seed matches or beats a random model elsewhere."""
    section = Section(f"Model selection across seeds, metrics and data sets ({data.shown} "
                      "representation)", [
        "The transfer table of Locatello et al. (2019, section 5.4): a setting (method and "
        "strength) is chosen as the best by one disentanglement score on one seed of one data "
        "set; its models on the other seeds are compared with a random model (any setting and "
        "seed) by the same or another score, on the same or another data set. Shown: the "
        "probability that the chosen setting's model matches or beats the random one (beats "
        "alone in brackets), averaged exactly over every choice (source) and comparison "
        "instead of over random draws; about 50 % means the choice carries no information. "
        "The scores are each metric's disentanglement score (BetaVAE and FactorVAE accuracy, "
        "MIG, DCI disentanglement, modularity, SAP, ...)."])
    scores = _disentanglement_scores(data.one)
    reason = _selection_missing(scores)
    if reason:
        section.blocks.append(f"Not drawn: {reason}.")
        return section
    table = selection_transfer(scores)
    if table.empty:
        section.blocks.append("Not drawn: no seed has two settings whose choice another seed "
                              "can test.")
        return section
    if scores["score"].nunique() < 2:
        section.blocks.append("The different-metric row is absent: one disentanglement score.")
    if scores["dataset"].nunique() < 2:
        section.blocks.append("The different-data-set column is absent: one data set.")
    section.blocks += [Picture("model_selection", "model selection transfer",
                               png(_selection_grid(table), dpi=100), table), Table(table)]
    return section


def _selection_missing(scores) -> str:
    """Why the transfer table cannot be computed, or ""."""
    if scores.empty:
        return "no disentanglement score (BetaVAE, FactorVAE, MIG, DCI, modularity, SAP, ...)"
    if scores["seed"].isna().all():
        return "the table has no train_config.seed column to tell the seeds apart"
    seeds = scores.groupby(["dataset", "setting"])["seed"].nunique()
    if seeds.max() < 2:
        return "one seed per setting; choosing on one seed and testing on another needs two"
    if scores.groupby("dataset")["setting"].nunique().max() < 2:
        return "one setting; there is nothing to choose between"
    return ""


def _selection_grid(table):
    grid = pd.DataFrame(np.nan, index=["same metric", "different metric"],
                        columns=["same data set", "different data set"])
    text = {}
    for row in table.itertuples():
        cell = (f"{row.metric} metric", f"{row.data_set} data set")
        grid.loc[cell] = row.p_beats_or_matches
        text[cell] = f"{row.p_beats_or_matches:.0%}\n(beats {row.p_beats:.0%})"
    figure = new_figure(5.5, 3.6)
    axis = figure.subplots()
    image = heatmap(axis, grid, vmin=0, vmax=1, cmap="viridis", fontsize=8)
    axis.tick_params(axis="x", labelrotation=0)
    for (r, c), value in np.ndenumerate(grid.to_numpy()):
        label = text.get((grid.index[r], grid.columns[c]), "no comparison")
        axis.text(c, r, label, ha="center", va="center", fontsize=9,
                  color="w" if np.isfinite(value) and value < 0.6 else "k")
    figure.colorbar(image, ax=axis, label="P(chosen >= random)")
    return figure


def failed_section(data) -> Section:
    """Failed evaluations with their reasons."""
    section = Section("Failed evaluations")
    failed = data.failed
    if failed.empty:
        section.blocks.append("None.")
        return section
    reasons = (failed.groupby(["metric", "error"], sort=False)["checkpoint"]
               .agg(["count", "first"]).reset_index()
               .rename(columns={"first": "e.g. checkpoint"}))
    section.blocks.append(Table(reasons, csv="failed"))
    return section


#: The page, in order.
SECTIONS = (rank_correlation_section, total_correlation_section, strength_section,
            violins_section, seed_spread_section, variance_section, downstream_section,
            selection_section, failed_section)
