"""The report's input: argument checks, the scores table, and the columns every section reads.

Everything here runs before the report writes a byte: :func:`check_report_folder` and
:func:`load_scores` refuse a bad ``out`` or scores argument with a message naming it, and
:func:`prepare` refuses a table with nothing to report on or an unknown representation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...metrics import METRICS
from ...train.sweep import regularization_strengths

#: Columns of a scores table that the report reads (``fastdis score`` writes more).
REQUIRED_COLUMNS = ("checkpoint", "representation", "metric", "key", "value", "error")
#: Config entries that identify a run rather than a setting (never grouped on).
_RUN_IDENTITY = ("seed", "step", "path", "model_num", "version", "uuid", "time")
#: Metrics whose headline scores describe the codes' statistics rather than how disentangled
#: they are: the paper keeps them out of its disentanglement comparisons.
_CODE_STATISTICS = ("unsupervised",)


def check_report_folder(out) -> Path:
    """``out`` as a Path, after checking that a report folder can be created or reused there.

    Raises
    ------
    ValueError
        If ``out`` (or a parent of it) is an existing file, or its nearest existing parent
        folder is not writable.
    """
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"lies under the file {existing}"
        raise ValueError(f"report folder {out} {where}; give a folder (new or a previous "
                         "report's).")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"report folder {out}: cannot write into {existing} (permission "
                         "denied).")
    return out


def load_scores(scores):
    """The scores table behind ``scores`` (a DataFrame, a ``fastdis score`` folder or a Parquet
    file), checked to have the columns the report reads.

    Raises
    ------
    FileNotFoundError
        If the path does not exist or the folder holds no scores.
    ValueError
        If the file cannot be read as a Parquet table or lacks a required column.
    """
    from .. import read_scores  # the scoring engine's modules load only for a path

    if isinstance(scores, pd.DataFrame):
        table, source = scores, "the scores table"
    else:
        path = Path(scores)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such scores file or folder (fastdis score "
                                    "--out writes one).")
        try:
            table = read_scores(path) if path.is_dir() else pd.read_parquet(path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # pyarrow, permissions and damage raise many kinds
            raise ValueError(f"{path}: cannot read the scores table "
                             f"({type(exc).__name__}: {exc}).") from None
        source = str(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{source} lacks the column(s) {missing}; a scores table (fastdis "
                         f"score) has {list(REQUIRED_COLUMNS)} and train_config.*.")
    return table


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


def _strength_columns(part, config):
    """Numeric config columns that vary within one method's rows: its regularisation
    strength(s). Switches (bool columns such as ``compile``) are not strengths."""
    return [c for c in config if pd.api.types.is_numeric_dtype(part[c])
            and not pd.api.types.is_bool_dtype(part[c]) and part[c].nunique() > 1]


def _swept_column(method: str, part) -> list[str]:
    """The column of the strength the study sweeps for ``method`` (beta for beta_vae, ...),
    when every row has it: named even when constant, so one setting per method still says
    its strength."""
    try:
        field, _ = regularization_strengths(method)
    except ValueError:  # not one of the study's methods
        return []
    column = f"train_config.{field}"
    usable = (column in part and pd.api.types.is_numeric_dtype(part[column])
              and part[column].notna().all())
    return [column] if usable else []


def setting_columns(table):
    """``method``, ``strength`` (label) and ``strength_rank`` (its order) per row.

    The strength is every numeric config value that varies within the row's method and is
    not a seed, step or path (beta, gamma, lambda, ...), or, where none varies, the value the
    study sweeps for that method; ranks sort it numerically.
    """
    config = [c for c in table.columns if c.startswith("train_config.")
              and c != "train_config.method"
              and not any(word in c.rsplit(".", 1)[-1] for word in _RUN_IDENTITY)]
    methods = (table["train_config.method"].astype(str) if "train_config.method" in table
               else pd.Series("all", index=table.index))
    frame = pd.DataFrame({"method": methods, "strength": "", "strength_rank": 0},
                         index=table.index)
    for method, rows in table.groupby(methods, sort=True).groups.items():
        part = table.loc[rows]
        varying = _strength_columns(part, config) or _swept_column(method, part)
        if not varying:
            continue
        # A value missing in some runs sorts last (inf) and reads "?".
        values = [tuple(np.inf if pd.isna(x) else float(x) for x in v)
                  for v in part[varying].itertuples(index=False, name=None)]
        order = sorted(set(values))
        frame.loc[rows, "strength_rank"] = [order.index(v) for v in values]
        frame.loc[rows, "strength"] = [
            ", ".join(f"{c.removeprefix('train_config.').split('.')[-1]}="
                      f"{'?' if np.isinf(x) else format(x, 'g')}"
                      for c, x in zip(varying, v, strict=True)) for v in values]
    return frame


def _setting_label(frame):
    return frame["method"].where(frame["strength"] == "",
                                 frame["method"] + " (" + frame["strength"] + ")")


def settings(table):
    """A setting label per row: method plus the varying numeric hyperparameters."""
    return _setting_label(setting_columns(table))


def headline_keys(metric: str, keys) -> list[str]:
    """The registry's headline keys of ``metric`` among ``keys`` (none for an unknown metric)."""
    return METRICS[metric].headline_keys(keys) if metric in METRICS else []


def per_size_keys(metric: str, keys) -> list[tuple[int, str]]:
    """``(training size, key)`` of every size of ``metric``'s per-size headline scores
    (registry headline ``"*:name"``, result keys ``"N:name"``), by size."""
    if metric not in METRICS:
        return []
    sized = []
    for wanted in METRICS[metric].headline:
        if wanted.startswith("*:"):
            suffix = wanted[1:]
            sized += [(int(k[:-len(suffix)]), k) for k in keys
                      if k.endswith(suffix) and k[:-len(suffix)].isdigit()]
    return sorted(set(sized))


def disentanglement_key(metric: str) -> str | None:
    """The result key that rates ``metric``'s disentanglement, or None if it rates none.

    That is the first headline key of a registered metric whose headline scores are neither
    per training size (downstream accuracies) nor statistics of the codes: for the study's
    suite the paper's six scores (BetaVAE and FactorVAE accuracy, MIG, DCI disentanglement,
    modularity, SAP), not completeness, informativeness or explicitness.
    """
    spec = METRICS.get(metric)
    if (spec is None or not spec.headline or metric in _CODE_STATISTICS
            or any(wanted.startswith("*:") for wanted in spec.headline)):
        return None
    return spec.headline[0]


def select_keys(rows, choose):
    """The rows whose key is among ``choose(metric, that metric's keys)``."""
    keep = {metric: set(choose(metric, group["key"].unique()))
            for metric, group in rows.groupby("metric")}
    return rows[[key in keep[metric]
                 for metric, key in zip(rows["metric"], rows["key"], strict=True)]]


@dataclass
class ReportData:
    """What every section reads: the successful summary scores and the failures.

    ``ok`` has one row per checkpoint x representation x metric x summary or headline key with
    a finite value, plus ``score`` (``metric:key``), ``method``, ``strength``,
    ``strength_rank``, ``setting``, ``dataset`` and ``seed`` (NaN where the table has no
    ``train_config.seed``). ``shown`` is the representation of the per-setting sections.
    """

    ok: object
    failed: object
    shown: str
    non_finite: int

    @property
    def one(self):
        """The rows of the shown representation."""
        return self.ok[self.ok["representation"] == self.shown]

    def headline(self, rows=None):
        """``rows`` (default: :attr:`ok`) restricted to the registry's headline scores."""
        return select_keys(self.ok if rows is None else rows, headline_keys)


def prepare(table, representation: str | None) -> ReportData:
    """The table's successful summary scores with the setting columns, checked for content.

    Raises
    ------
    ValueError
        If no evaluation succeeded, ``representation`` is not among the scores, or none of
        its scores is finite.
    """
    failed = table[table["error"].notna()]
    ok = table[table["error"].isna() & table["key"].notna()].copy()
    if ok.empty:
        example = "" if failed.empty else (
            f", e.g. {failed['metric'].iloc[0]} on {failed['checkpoint'].iloc[0]}: "
            f"{failed['error'].iloc[0]}")
        raise ValueError("the scores table has no successful evaluation to report on "
                         f"({len(failed)} failed{example}).")
    representations = list(dict.fromkeys(ok["representation"]))
    shown = representation or ("mean" if "mean" in representations else representations[0])
    if shown not in representations:
        raise ValueError(f"representation {shown!r} is not in the scores; it has "
                         f"{representations}.")
    ok["value"] = pd.to_numeric(ok["value"], errors="coerce").astype("float64")
    finite = np.isfinite(ok["value"].to_numpy())
    ok = ok[finite]
    if not (ok["representation"] == shown).any():
        raise ValueError(f"the {shown} representation has no finite score to report on "
                         f"({int((~finite).sum())} non-finite value(s)).")
    # A key the registry names as headline stays even where the summary rule drops it.
    ok = select_keys(ok, lambda metric, keys: summary_keys(keys) + headline_keys(metric, keys))
    ok = ok.assign(score=ok["metric"] + ":" + ok["key"], **setting_columns(ok))
    ok["setting"] = _setting_label(ok)
    ok["dataset"] = (ok["train_config.dataset"].astype(str) if "train_config.dataset" in ok
                     else "all")
    ok["seed"] = (pd.to_numeric(ok["train_config.seed"], errors="coerce")
                  if "train_config.seed" in ok else np.nan)
    return ReportData(ok, failed, shown, int((~finite).sum()))
