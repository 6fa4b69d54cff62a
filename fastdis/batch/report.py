"""A report of a scores table (``fastdis report``): PNG figures and one markdown page.

* ``rank_correlation.png``: Spearman rank correlation between the summary scores across
  models (checkpoint x representation), the comparison of Locatello et al. (2019), figure 2;
* ``violins_<metric>.png``: each summary score's distribution per method and regularisation
  strength (one violin per setting; points are models, so a violin's width is the spread over
  seeds; settings with a single model show just the point);
* ``index.md``: the spread over seeds (mean, std, min, max, number of models per setting and
  score), failed evaluations with their reasons, and links to the figures.

A *summary score* is a result key that is not a per-factor or per-code detail, a training-set
score, a minimum or a count (:func:`summary_keys`). A *setting* is the method
(``train_config.method``) plus every numeric config value that varies within that method
and is not a seed, step or path: the regularisation strength (beta, gamma, lambda, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..metrics import METRICS

__all__ = ["write_report", "summary_keys", "settings"]

#: Config entries that identify a run rather than a setting (never grouped on).
_RUN_IDENTITY = ("seed", "step", "path", "model_num", "version", "uuid", "time")
#: Most scores drawn per metric figure; the rest are in the tables.
_MAX_PANELS = 8
#: Panels per row of a metric figure (more wrap), so a figure stays page-wide.
_PANELS_PER_ROW = 4


def summary_keys(keys) -> list[str]:
    """Result keys worth comparing across models, in their order of first appearance."""
    chosen = []
    for key in dict.fromkeys(keys):
        leaf = key.split(":")[-1].split(".")[-1]
        if ("factor_" in key or "num_active_dims" in key or leaf.startswith(("min_", "code_"))
                or "train" in leaf or key == "elapsed_time"):
            continue
        chosen.append(key)
    return chosen


def settings(table):
    """A setting label per row: method plus the varying numeric hyperparameters."""
    import pandas as pd

    config = [c for c in table.columns if c.startswith("train_config.")
              and not any(word in c.rsplit(".", 1)[-1] for word in _RUN_IDENTITY)]
    method_column = "train_config.method" if "train_config.method" in table else None
    methods = table[method_column].astype(str) if method_column else pd.Series(
        "all", index=table.index)
    labels = pd.Series("", index=table.index, dtype=object)
    for method, rows in table.groupby(methods, sort=True).groups.items():
        part = table.loc[rows]
        varying = [c for c in config if c != method_column
                   and pd.api.types.is_numeric_dtype(part[c]) and part[c].nunique() > 1]
        text = part[varying].apply(
            lambda row, cols=varying: ", ".join(
                f"{c.removeprefix('train_config.').split('.')[-1]}={row[c]:g}" for c in cols),
            axis=1) if varying else pd.Series("", index=part.index)
        labels.loc[rows] = [f"{method} ({t})" if t else str(method) for t in text]
    return labels


def _markdown_table(frame, float_format="{:.4g}") -> str:
    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else float_format.format(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows])


def write_report(scores, out, *, representation: str | None = None) -> Path:
    """Write the figures and ``index.md`` for ``scores`` into the folder ``out``.

    Parameters
    ----------
    scores : pandas.DataFrame, str or PathLike
        A scores table (``fastdis score`` output or :func:`fastdis.batch.read_scores`).
    out : str or PathLike
        Folder for the report (created).
    representation : str, default=None
        Representation shown in the violins and seed tables (``None``: "mean" if present,
        else the first one). The rank correlation uses every representation.

    Returns
    -------
    Path
        The markdown page.

    Raises
    ------
    ValueError
        If the table has no successful score at all.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .engine import read_scores

    table = scores if isinstance(scores, pd.DataFrame) else read_scores(scores)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failed = table[table["error"].notna()]
    ok = table[table["error"].isna() & table["key"].notna()].copy()
    if ok.empty:
        example = "" if failed.empty else (
            f", e.g. {failed['metric'].iloc[0]} on {failed['checkpoint'].iloc[0]}: "
            f"{failed['error'].iloc[0]}")
        raise ValueError("the scores table has no successful evaluation to report on "
                         f"({len(failed)} failed{example}).")
    ok["score"] = ok["metric"] + ":" + ok["key"]
    keep = {metric: summary_keys(group["key"]) for metric, group in ok.groupby("metric")}
    ok = ok[[key in keep[metric] for metric, key in zip(ok["metric"], ok["key"], strict=True)]]
    metrics = list(dict.fromkeys(ok["metric"]))
    lines = ["# fastdis score report", "",
             f"{ok['checkpoint'].nunique()} checkpoints, representations "
             f"{', '.join(sorted(ok['representation'].unique()))}, {len(metrics)} metrics, "
             f"{len(failed)} failed evaluations.", ""]

    # Rank correlation across models, every representation: the paper's figure, on each
    # metric's headline scores (the registry's), not on every per-factor detail.
    headline = {metric: METRICS[metric].headline_keys(group["key"].unique())
                if metric in METRICS else [] for metric, group in ok.groupby("metric")}
    ranked = ok[[key in headline[metric]
                 for metric, key in zip(ok["metric"], ok["key"], strict=True)]]
    wide = ranked.pivot_table(index=["checkpoint", "representation"], columns="score",
                              values="value", aggfunc="first")
    wide = wide.loc[:, wide.nunique() > 1]  # a constant score has no ranking
    lines += ["## Rank correlation of the metrics' headline scores across models", ""]
    if len(wide) >= 3 and wide.shape[1] >= 2:
        correlation = wide.corr(method="spearman")
        # At most 18 inches (~2000 px) square; labels shrink when there are many scores.
        size = min(18.0, max(7.0, 0.4 * len(correlation) + 3))
        fontsize = max(4.0, min(7.0, 7.0 * 70 / len(correlation)))
        figure, axis = plt.subplots(figsize=(size, size * 0.85))
        image = axis.imshow(correlation.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        axis.set_xticks(range(len(correlation)), correlation.columns, rotation=90,
                        fontsize=fontsize)
        axis.set_yticks(range(len(correlation)), correlation.index, fontsize=fontsize)
        figure.colorbar(image, ax=axis, label="Spearman rank correlation")
        axis.set_title(f"Rank correlation across {len(wide)} models")
        figure.tight_layout()
        figure.savefig(out / "rank_correlation.png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        lines += ["![rank correlation](rank_correlation.png)", ""]
    else:
        lines += [f"Not drawn: {len(wide)} model(s) and {wide.shape[1]} varying score(s); a "
                  "rank correlation needs at least 3 models and 2 scores.", ""]

    # Distributions per setting, one representation.
    representations = list(dict.fromkeys(ok["representation"]))
    shown = representation or ("mean" if "mean" in representations else representations[0])
    if shown not in representations:
        raise ValueError(f"representation {shown!r} is not in the scores; it has "
                         f"{representations}.")
    one = ok[ok["representation"] == shown].copy()
    one["setting"] = settings(one)
    lines += [f"## Scores per method and regularisation strength ({shown} representation)", ""]
    for metric in metrics:
        rows = one[one["metric"] == metric]
        keys = list(dict.fromkeys(rows["key"]))[:_MAX_PANELS]
        if not keys:
            continue
        labels = sorted(rows["setting"].unique())
        columns = min(len(keys), _PANELS_PER_ROW)
        lines_of_panels = -(-len(keys) // columns)
        panel_width = min(6.0, max(3.0, 0.45 * len(labels) + 1.5))
        figure, axes = plt.subplots(lines_of_panels, columns, squeeze=False,
                                    figsize=(panel_width * columns, 3.6 * lines_of_panels))
        for axis in axes.flat[len(keys):]:
            axis.set_visible(False)
        for axis, key in zip(axes.flat, keys, strict=False):
            values = [rows.loc[(rows["key"] == key) & (rows["setting"] == label), "value"]
                      .to_numpy() for label in labels]
            spread = [i for i, v in enumerate(values) if len(v) > 1 and np.ptp(v) > 0]
            if spread:  # a violin needs at least two distinct values
                axis.violinplot([values[i] for i in spread], positions=spread, showmedians=True)
            jitter = np.random.default_rng(0)
            for i, v in enumerate(values):
                axis.scatter(i + jitter.uniform(-0.08, 0.08, len(v)), v, s=8, color="k")
            axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
            axis.set_title(key, fontsize=9)
        figure.suptitle(metric)
        figure.tight_layout()
        filename = f"violins_{metric}.png"
        figure.savefig(out / filename, dpi=100)
        plt.close(figure)
        lines += [f"### {metric}", "", f"![{metric}]({filename})", ""]

    lines += ["## Spread over seeds", "",
              "Mean, standard deviation (ddof=1; empty with one model), range and number of "
              f"models of each setting ({shown} representation).", ""]
    spread = (one.groupby(["metric", "key", "setting"], sort=False)["value"]
              .agg(["mean", "std", "min", "max", "count"]).reset_index())
    lines += [_markdown_table(spread), ""]

    lines += ["## Failed evaluations", ""]
    if failed.empty:
        lines += ["None.", ""]
    else:
        reasons = (failed.groupby(["metric", "error"], sort=False)["checkpoint"]
                   .agg(["count", "first"]).reset_index()
                   .rename(columns={"first": "e.g. checkpoint"}))
        lines += [_markdown_table(reasons), ""]
    page = out / "index.md"
    page.write_text("\n".join(lines))
    return page
