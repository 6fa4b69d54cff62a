"""The results of a scoring run: the journal of finished tasks and the merged table.

Output: ``out`` is a directory, a Parquet dataset that ``pandas.read_parquet(out)`` reads as one
table. Finished tasks are journaled as they arrive (small Parquet files written to a temporary
name and ``os.replace``d into ``out/.journal/``, which Parquet readers skip); at the end of a
run the journal is merged with the previous results into ``out/scores.parquet`` (again tmp +
replace) and only then deleted. A crash or ``kill -9`` therefore loses at most the results of
the last half second, and a rerun computes only what is missing.

The table is **long**: one row per checkpoint x representation x metric x result key,

==================  ===========================================================================
column              meaning
==================  ===========================================================================
checkpoint          the checkpoint's name in the store
representation      ``mean``, ``sampled``, ... (the reference's ``postprocess.name``); ``*`` on
                    the failed rows of a checkpoint whose metadata cannot be read
metric              registry name (the reference's ``evaluation.name``)
key                 result key (the reference's ``evaluation_results.<key>``)
value               float64
error               null, or why the task failed (then one row with null key and value)
warnings            null, or the distinct warnings the metric raised (e.g. scikit-learn's
                    ConvergenceWarning, which the reference's settings produce by design)
elapsed_time        seconds the task took (all keys of a task share it)
encoding_id         which encoding of the checkpoint was scored (changes on re-encoding)
train_config.*      the checkpoint's config, nested keys joined with dots
==================  ===========================================================================

so ``df.groupby(["train_config.method", "metric", "key"])["value"].mean()`` works directly;
:func:`to_wide` gives the reference's namespaced one-row-per-evaluation layout.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np

from .store import RepresentationStore

__all__ = ["RESULT_COLUMNS", "TASK_COLUMNS", "Journal", "failed_rows", "read_raw",
           "read_scores", "consolidate", "to_wide"]

RESULT_COLUMNS = ["checkpoint", "representation", "metric", "key", "value", "error",
                  "warnings", "elapsed_time", "encoding_id"]
#: The columns that identify one task (one evaluation) in the table.
TASK_COLUMNS = ["checkpoint", "representation", "metric", "encoding_id"]
_JOURNAL = ".journal"
_TABLE = "scores.parquet"
#: Journal flushes at most this often (seconds), so thousands of fast tasks do not become
#: thousands of files; it is all that a kill -9 can lose.
_FLUSH_SECONDS = 0.5


def failed_rows(task, reason: str) -> list[dict]:
    """The rows that record ``task`` as failed, with ``reason``: one per checkpoint the task
    writes rows for (``task.members``, (checkpoint, encoding_id) pairs), for each task of a
    bundle (``task.tasks``)."""
    if hasattr(task, "tasks"):
        return [row for member in task.tasks for row in failed_rows(member, reason)]
    return [{"checkpoint": checkpoint, "representation": task.representation,
             "metric": task.metric, "encoding_id": encoding_id, "key": None,
             "value": np.nan, "error": reason, "warnings": None, "elapsed_time": 0.0}
            for checkpoint, encoding_id in task.members]


def _frame(rows):
    import pandas as pd

    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    frame["value"] = frame["value"].astype("float64")
    frame["elapsed_time"] = frame["elapsed_time"].astype("float64")
    for column in ("checkpoint", "representation", "metric", "key", "error", "warnings",
                   "encoding_id"):
        frame[column] = frame[column].astype("object")
    return frame


def _write_atomic(frame, path: Path):
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


class Journal:
    """Finished rows, buffered briefly and flushed as small Parquet parts."""

    def __init__(self, out: Path):
        self.directory = out / _JOURNAL
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pending = []
        self.last_flush = time.monotonic()

    def add(self, rows):
        self.pending.extend(rows)
        if time.monotonic() - self.last_flush >= _FLUSH_SECONDS:
            self.flush()

    def flush(self):
        if self.pending:
            _write_atomic(_frame(self.pending), self.directory / f"{uuid.uuid4().hex}.parquet")
            self.pending = []
        self.last_flush = time.monotonic()


def journal_parts(out: Path) -> list[Path]:
    """Journal parts, oldest first."""
    directory = out / _JOURNAL
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.parquet"), key=lambda part: part.stat().st_mtime_ns)


def read_raw(out: Path):
    """(every recorded row, the journal parts read): the merged table plus the journal.

    A task can be recorded twice (a run killed between writing the merged table and deleting
    the journal, or a failed task retried); the newest source wins.
    """
    import pandas as pd

    parts = journal_parts(out)
    sources = ([out / _TABLE] if (out / _TABLE).is_file() else []) + parts
    if not sources:
        return _frame([]), parts
    frames = [_read_part(source).assign(_source=number) for number, source in enumerate(sources)]
    table = pd.concat(frames, ignore_index=True)
    for column in RESULT_COLUMNS:  # a table written before the column existed
        if column not in table:
            table[column] = None
    newest = table.groupby(TASK_COLUMNS, dropna=False)["_source"].transform("max")
    table = table[table["_source"] == newest].drop(columns="_source")
    # Within one source a task appears twice only when it was rerun after its worker pool
    # broke (its result had not been collected yet): the same numbers, kept once.
    table = table.drop_duplicates([*TASK_COLUMNS, "key"], keep="last")
    return table.reset_index(drop=True), parts


def _read_part(path: Path):
    """One Parquet file of ``out``, or ValueError naming it and what deleting it costs."""
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a damaged file vary
        cost = ("every evaluation is then computed again" if path.name == _TABLE else
                "its evaluations are then computed again")
        raise ValueError(f"{path} cannot be read ({type(exc).__name__}: {exc}); restore it "
                         f"from a copy, or delete it and rerun ({cost}).") from exc


def read_scores(out):
    """The scores table at ``out`` (a ``fastdis score`` output), including an unmerged journal.

    Raises
    ------
    FileNotFoundError
        If ``out`` holds no scores.
    """
    out = Path(out)
    if not (out / _TABLE).is_file() and not journal_parts(out):
        raise FileNotFoundError(f"{out}: no scores here (run fastdis score ... --out {out}).")
    return read_raw(out)[0]


def _flatten(config, prefix="train_config."):
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _config_columns(store: RepresentationStore, names):
    """One row per checkpoint: its flattened config, typed so Parquet accepts each column."""
    import json

    import pandas as pd

    entries = store.checkpoints()
    rows = [{"checkpoint": name, **_flatten(entries[name]["config"])} for name in names
            if name in entries]
    frame = pd.DataFrame(rows, columns=None if rows else ["checkpoint"])
    for column in frame.columns[1:]:
        values = frame[column]
        if values.map(lambda v: isinstance(v, (list, tuple))).any():
            values = values.map(lambda v: json.dumps(v) if isinstance(v, (list, tuple)) else v)
        numeric = values.map(lambda v: v is None or (isinstance(v, (int, float, np.number))
                                                    and not isinstance(v, bool)))
        if numeric.all():
            frame[column] = pd.to_numeric(values)
        elif values.map(lambda v: v is None or isinstance(v, bool)).all():
            frame[column] = values.astype("boolean")
        else:
            frame[column] = values.map(lambda v: None if v is None else str(v)).astype(object)
    return frame


def consolidate(out: Path, store: RepresentationStore):
    """Merge the journal into ``scores.parquet`` with config columns; then drop the journal."""
    import pandas as pd

    table, parts = read_raw(out)
    current = {name: entry["encoding_id"] for name, entry in store.checkpoints().items()}
    encoding = table["checkpoint"].map(current)
    stale = encoding.notna() & (encoding != table["encoding_id"])
    kept = table.loc[~stale]
    table = kept[RESULT_COLUMNS]
    configs = _config_columns(store, table["checkpoint"].unique())
    # Checkpoints not in this store (another store scored into the same out, or removed)
    # keep the config columns they were merged with before.
    gone = kept[~kept["checkpoint"].isin(current)]
    old = [c for c in gone.columns if c.startswith("train_config.")]
    if len(gone) and old:
        previous = gone[["checkpoint", *old]].drop_duplicates("checkpoint")
        configs = pd.concat([configs, previous], ignore_index=True)
    table = table.merge(configs, on="checkpoint", how="left")
    _write_atomic(table, out / _TABLE)
    for part in parts:  # only after the merged table is safely in place
        part.unlink(missing_ok=True)
    return pd.read_parquet(out / _TABLE)  # exactly what readers of the file see


def to_wide(table):
    """The reference's layout: one row per (checkpoint, representation, metric).

    Columns ``train_config.*``, ``postprocess_config.postprocess.name`` (the representation),
    ``evaluation_config.evaluation.name`` (the metric), ``evaluation_results.<key>`` for every
    result key (NaN where another metric's keys), ``evaluation_results.elapsed_time``, and
    ``error``. Failed evaluations keep their row with every result NaN.
    """
    import pandas as pd

    index = ["checkpoint", "representation", "metric"]
    ok = table[table["key"].notna()]
    results = ok.pivot_table(index=index, columns="key", values="value", aggfunc="first")
    results.columns = [f"evaluation_results.{key}" for key in results.columns]
    config_columns = [c for c in table.columns if c.startswith("train_config.")]
    first = table.groupby(index, sort=False).first()
    frame = first[config_columns + ["elapsed_time", "error"]].join(results)
    frame = frame.rename(columns={"elapsed_time": "evaluation_results.elapsed_time"})
    frame = frame.reset_index().rename(columns={
        "representation": "postprocess_config.postprocess.name",
        "metric": "evaluation_config.evaluation.name"})
    return pd.DataFrame(frame)

