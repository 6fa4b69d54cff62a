"""The scoring engine: every (checkpoint, representation, metric) of a store, in parallel.

What to compute is separate from where it runs (dask's rule): :func:`score_store` lists the
tasks, skips the ones already in the output, and hands the rest to one of

* ``scheduler=None`` (or ``"processes"``): a local pool of ``workers`` spawned processes. Most
  numba kernels here hold the GIL (only the linear-model losses are ``nogil``) and scikit-learn
  / scipy's L-BFGS loop is Python, so threads would serialise; one single-threaded process per
  core runs the tasks truly in parallel and is the fastest local choice;
* ``"synchronous"``: in this process, one task after the other (debugging, profiling);
* a ``distributed.Client`` or a scheduler address (``"tcp://host:8786"``): the same task
  function on an existing Dask cluster; the workers must see the store's path.

Every task runs numba single-threaded, so the numbers do not depend on where it ran: local
and Dask results are identical, bit for bit.

Output: ``out`` is a directory, a Parquet dataset that ``pandas.read_parquet(out)`` reads as one
table. Finished tasks are journaled as they arrive (small Parquet files written to a temporary
name and ``os.replace``d into ``out/.journal/``, which Parquet readers skip); at the end of a
run the journal is merged with the previous results into ``out/scores.parquet`` (again tmp +
replace) and only then deleted. A crash or ``kill -9`` therefore loses at most the results of
the last half second, and a rerun computes only what is missing. A run holds ``out/.lock``
(POSIX ``flock``, released by the OS even on kill -9), so a second run on the same ``out`` is
refused instead of merging and deleting journal parts under the first one's feet.

The table is **long**: one row per checkpoint x representation x metric x result key,

==================  ===========================================================================
column              meaning
==================  ===========================================================================
checkpoint          the checkpoint's name in the store
representation      ``mean``, ``sampled``, ... (the reference's ``postprocess.name``)
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

import contextlib
import functools
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._parallel import single_threaded_blas
from .._progress import stderr_progress
from .._validation import check_positive_int
from ..metrics import METRICS, study_metrics
from .store import RepresentationStore, StoreError, open_store

__all__ = ["score_store", "score_task", "read_scores", "to_wide", "resolve_metrics",
           "ScoreTask", "RESULT_COLUMNS"]

RESULT_COLUMNS = ["checkpoint", "representation", "metric", "key", "value", "error",
                  "warnings", "elapsed_time", "encoding_id"]
_TASK_COLUMNS = ["checkpoint", "representation", "metric", "encoding_id"]
_JOURNAL = ".journal"
_TABLE = "scores.parquet"
_LOCK = ".lock"
#: Journal flushes at most this often (seconds), so thousands of fast tasks do not become
#: thousands of files; it is all that a kill -9 can lose.
_FLUSH_SECONDS = 0.5


@dataclass(frozen=True)
class ScoreTask:
    """One unit of work: a metric on one representation of one checkpoint."""

    checkpoint: str
    representation: str
    metric: str
    encoding_id: str

    @property
    def token(self) -> str:
        """Deterministic name (Dask key), the same in every run."""
        return f"fastdis-score-{self.encoding_id}-{self.representation}-{self.metric}"


def resolve_metrics(metrics, plan) -> list[str]:
    """Metric names for ``metrics``: "all", "study", or names / comma-separated names.

    "all" is every metric the store's plan was built for (which includes the study suite
    when the plan was made with the defaults); "study" is the registry's study suite.
    """
    if metrics is None or metrics == "all" or metrics == ["all"]:
        return list(plan.metrics)
    if isinstance(metrics, str):
        metrics = [metrics]
    names = []
    for item in metrics:
        for name in str(item).split(","):
            name = name.strip()
            if name == "study":
                names.extend(spec.name for spec in study_metrics())
            elif name == "all":
                names.extend(plan.metrics)
            elif name:
                names.append(name)
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError(f"metrics is empty: name at least one of {list(plan.metrics)}, or "
                         "'all'.")
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; this store's plan serves "
                             f"{list(plan.metrics)}.")
        plan.check_metric(name)  # metrics the plan was not built for
    return [name for name in METRICS if name in names]


# ---------------------------------------------------------------------------------------------
# The task function (runs in a worker process, a Dask worker, or here)
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _cached_store(path: str, identity: tuple) -> RepresentationStore:
    del identity  # part of the cache key only: a store re-created at the same path is new
    return open_store(path)


def _store_for(path) -> RepresentationStore:
    path = os.path.realpath(path)
    try:
        stat = os.stat(os.path.join(path, "zarr.json"))
    except FileNotFoundError:
        raise StoreError(f"{path}: not a representation store (no zarr.json).") from None
    return _cached_store(path, (stat.st_ino, stat.st_mtime_ns))


def score_task(store_path: str, task: ScoreTask) -> list[dict]:
    """Run one task; return its result rows (one failed row carrying the reason on error).

    Any exception of the metric is caught: a broken checkpoint must not stop a batch.
    ``ValueError`` (the metrics' input checks) is recorded as its message, anything else
    with its type name. Warnings are recorded in the rows, not printed: thousands of tasks
    would otherwise bury the progress bar under the same ConvergenceWarning.
    """
    import warnings

    import numba

    base = {"checkpoint": task.checkpoint, "representation": task.representation,
            "metric": task.metric, "encoding_id": task.encoding_id}
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(1)  # thread-count-free numbers; parallelism is across tasks
    start = time.perf_counter()
    # BLAS on one thread too: the same summation order (bit-identical numbers) on a laptop,
    # a local pool or any Dask worker, and no oversubscription of the cores.
    with single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            store = _store_for(store_path)
            _check_encoding(store, task)
            codes = store.codes(task.checkpoint, task.representation)
            _check_encoding(store, task)  # not replaced while reading either
            result = store.plan.score(task.metric, codes)
            rows = [{**base, "key": str(key), "value": float(value), "error": None}
                    for key, value in result.items()]
        except ValueError as exc:
            rows = failed_rows(task, str(exc))
        except Exception as exc:  # noqa: BLE001 - recorded, the batch goes on
            rows = failed_rows(task, f"{type(exc).__name__}: {exc}")
        finally:
            numba.set_num_threads(previous_threads)
    elapsed = time.perf_counter() - start
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    for row in rows:
        row["elapsed_time"] = elapsed
        row["warnings"] = "; ".join(messages) or None
    return rows


def _check_encoding(store, task):
    current = store.encoding_id(task.checkpoint)
    if current != task.encoding_id:
        raise ValueError(f"checkpoint {task.checkpoint!r} was re-encoded after the task was "
                         "listed; rerun fastdis score to score its new codes.")


# ---------------------------------------------------------------------------------------------
# Journal and table
# ---------------------------------------------------------------------------------------------


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


class _Journal:
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


def _journal_parts(out: Path) -> list[Path]:
    """Journal parts, oldest first."""
    directory = out / _JOURNAL
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.parquet"), key=lambda part: part.stat().st_mtime_ns)


def _read_raw(out: Path):
    """(every recorded row, the journal parts read): the merged table plus the journal.

    A task can be recorded twice (a run killed between writing the merged table and deleting
    the journal, or a failed task retried); the newest source wins.
    """
    import pandas as pd

    parts = _journal_parts(out)
    sources = ([out / _TABLE] if (out / _TABLE).is_file() else []) + parts
    if not sources:
        return _frame([]), parts
    frames = [pd.read_parquet(source).assign(_source=number)
              for number, source in enumerate(sources)]
    table = pd.concat(frames, ignore_index=True)
    for column in RESULT_COLUMNS:  # a table written before the column existed
        if column not in table:
            table[column] = None
    newest = table.groupby(_TASK_COLUMNS, dropna=False)["_source"].transform("max")
    table = table[table["_source"] == newest].drop(columns="_source")
    # Within one source a task appears twice only when it was rerun after its worker pool
    # broke (its result had not been collected yet): the same numbers, kept once.
    table = table.drop_duplicates([*_TASK_COLUMNS, "key"], keep="last")
    return table.reset_index(drop=True), parts


def read_scores(out):
    """The scores table at ``out`` (a ``fastdis score`` output), including an unmerged journal.

    Raises
    ------
    FileNotFoundError
        If ``out`` holds no scores.
    """
    out = Path(out)
    if not (out / _TABLE).is_file() and not _journal_parts(out):
        raise FileNotFoundError(f"{out}: no scores here (run fastdis score ... --out {out}).")
    return _read_raw(out)[0]


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


def _consolidate(out: Path, store: RepresentationStore):
    """Merge the journal into ``scores.parquet`` with config columns; then drop the journal."""
    import pandas as pd

    table, parts = _read_raw(out)
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


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


def failed_rows(task: ScoreTask, reason: str) -> list[dict]:
    """The one row that records ``task`` as failed, with ``reason``."""
    return [{"checkpoint": task.checkpoint, "representation": task.representation,
             "metric": task.metric, "encoding_id": task.encoding_id, "key": None,
             "value": np.nan, "error": reason, "warnings": None, "elapsed_time": 0.0}]


#: Recorded for a task whose worker process died while running it alone.
WORKER_DIED = ("the worker process died while scoring this (killed by the operating system, "
               "e.g. out of memory, or crashed in native code)")


#: Raised when no worker process can start at all (then no task is to blame).
WORKERS_CANNOT_START = (
    "scoring worker processes cannot start. The local scheduler scores in spawned processes, "
    "which re-import the main script: call score_store from a script file under "
    "`if __name__ == \"__main__\":` (not from standard input), or pass "
    "scheduler=\"synchronous\" to score in this process.")


def _run_local(store_path, tasks, workers, on_result, task_function=None):
    """Run ``tasks`` on a pool of ``workers`` spawned processes, surviving dead workers.

    A process that dies (out-of-memory kill, segfault in native code) breaks the whole pool.
    The tasks that may have been running then are suspects: each is rerun alone in a
    one-process pool, so the one that kills its worker again is recorded as failed
    (:data:`WORKER_DIED`) and the innocent ones are scored; the tasks never started go to a
    fresh pool. A batch of thousands therefore finishes whatever one checkpoint does to its
    worker. If a worker cannot even start (a script spawned workers cannot re-import), no
    task is blamed: RuntimeError(:data:`WORKERS_CANNOT_START`).
    """
    from concurrent.futures.process import BrokenProcessPool

    task_function = task_function or score_task
    pending = list(tasks)
    while pending:
        try:
            _run_pool(store_path, pending, workers, on_result, task_function)
            return
        except BrokenProcessPool:
            pass  # _run_pool left the unfinished tasks in `pending`, in submission order
        # The pool hands tasks to its processes in submission order through a queue of
        # workers + 1 calls, so the ones in flight are the first unfinished ones.
        suspects, pending = pending[:workers + 1], pending[workers + 1:]
        for task in suspects:
            try:
                _run_pool(store_path, [task], 1, on_result, task_function)
            except BrokenProcessPool:
                if not _workers_can_start():
                    raise RuntimeError(WORKERS_CANNOT_START) from None
                on_result(failed_rows(task, WORKER_DIED))


def _ready_task(store_path, task) -> bool:
    """A task that does nothing: what a worker that started can always run."""
    return True


def _workers_can_start() -> bool:
    """Whether a spawned process can run a task that does nothing."""
    from concurrent.futures.process import BrokenProcessPool

    ready = []
    try:
        _run_pool(None, [None], 1, ready.append, _ready_task)
    except BrokenProcessPool:
        return False
    return ready == [True]


def _run_pool(store_path, tasks, workers, on_result, task_function):
    """One pool over the list ``tasks``; if the pool breaks, ``tasks`` is left holding the
    unfinished ones (in order) and BrokenProcessPool propagates."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: zarr runs an asyncio loop thread and numba an OpenMP pool, neither of
    # which survives a fork.
    context = multiprocessing.get_context("spawn")
    done = set()
    try:
        # score_task sets numba and BLAS to one thread itself, so each process fills one core.
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(task_function, store_path, task): i
                       for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                rows = future.result()
                done.add(futures[future])
                on_result(rows)
    except BrokenProcessPool:
        tasks[:] = [task for i, task in enumerate(tasks) if i not in done]
        raise


def _run_dask(store_path, tasks, scheduler, on_result, task_function=None):
    from distributed import Client, KilledWorker, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(task_function or score_task, store_path, task,
                                 key=task.token, pure=False): task
                   for task in tasks}
        for future in as_completed(futures):
            try:
                rows = future.result()
            except KilledWorker:  # the task took down every worker the scheduler tried
                rows = failed_rows(futures[future], WORKER_DIED)
            on_result(rows)
            future.release()
    finally:
        if client is not scheduler:
            client.close()


def score_store(
    store,
    out,
    *,
    metrics="all",
    representations=None,
    scheduler=None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = False,
):
    """Score every checkpoint x representation x metric of a store into ``out``.

    Parameters
    ----------
    store : str, PathLike or RepresentationStore
        The representation store (its path is what workers open).
    out : str or PathLike
        Output directory, a Parquet dataset (see the module docstring for the columns).
        Tasks already recorded there for the same encoding are skipped.
    metrics : "all", "study", or sequence of str, default="all"
        "all": every metric of the store's plan; "study": the registry's study suite.
    representations : sequence of str, default=None
        Only these representations (``None``: all of each checkpoint).
    scheduler : None, "processes", "synchronous", distributed.Client or str, default=None
        Where tasks run (module docstring). A string other than the first two is a Dask
        scheduler address. No cluster is ever started here.
    workers : int, default=None
        Local processes (``None``: the number of cores numba sees). Ignored with Dask.
    retry_failed : bool, default=False
        Also rerun tasks recorded as failed.
    progress : bool, default=False
        Show a Rich progress bar on stderr.

    Returns
    -------
    pandas.DataFrame
        The whole table at ``out`` after the run (:func:`read_scores`).

    Raises
    ------
    StoreError
        If the store cannot be opened; ValueError on unknown or unplanned metrics, unknown
        representations or a bad ``workers``.
    RuntimeError
        If another ``score_store`` is writing to ``out`` (POSIX systems).
    """
    store = store if isinstance(store, RepresentationStore) else open_store(store)
    store_path = str(store.path.resolve())
    names = resolve_metrics(metrics, store.plan)
    if workers is not None:
        workers = check_positive_int(workers, name="workers")
    entries = store.checkpoints()
    if representations is not None:
        if isinstance(representations, str):
            representations = [representations]
        available = list(dict.fromkeys(r for e in entries.values()
                                       for r in e["representations"]))
        missing = [r for r in representations if r not in available]
        if entries and missing:
            raise ValueError(f"the store has no representation {missing[0]!r}; its "
                             f"checkpoints have {available}.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory (scores are a Parquet "
                         "dataset directory).")
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        return _score_tasks(store, store_path, entries, names, representations, out, scheduler,
                            workers, retry_failed, progress)


@contextlib.contextmanager
def _exclusive(out: Path):
    """Hold ``out/.lock`` for the run: a second run on ``out`` would merge and delete journal
    parts under the first one's feet. The OS drops the lock when the process dies (kill -9
    included). Without fcntl (Windows) runs are not guarded."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(out / _LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another fastdis score is writing to {out}; wait for it to "
                               "finish (or stop it), then rerun to resume.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _score_tasks(store, store_path, entries, names, representations, out, scheduler, workers,
                 retry_failed, progress):
    from .._parallel import default_workers

    recorded, _ = _read_raw(out)
    if retry_failed:
        recorded = recorded[recorded["error"].isna()]
    done = set(map(tuple, recorded[_TASK_COLUMNS].drop_duplicates().to_numpy().tolist()))
    tasks = []
    for name, entry in entries.items():
        for representation in entry["representations"]:
            if representations is not None and representation not in representations:
                continue
            for metric in names:
                task = ScoreTask(name, representation, metric, entry["encoding_id"])
                if (name, representation, metric, entry["encoding_id"]) not in done:
                    tasks.append(task)

    journal = _Journal(out)
    failures = 0
    bar = stderr_progress() if progress else None

    def on_result(rows):
        nonlocal failures
        journal.add(rows)
        failures += rows[0]["error"] is not None
        if bar is not None:
            bar.update(bar_task, advance=1,
                       description=f"scoring ({failures} failed)" if failures else "scoring")

    try:
        if bar is not None:
            bar.start()
            bar_task = bar.add_task("scoring", total=len(tasks))
        if not tasks:
            pass
        elif scheduler == "synchronous":
            for task in tasks:
                on_result(score_task(store_path, task))
        elif scheduler is None or scheduler == "processes":
            _run_local(store_path, tasks, workers or default_workers(), on_result)
        else:
            _run_dask(store_path, tasks, scheduler, on_result)
    finally:
        journal.flush()
        if bar is not None:
            bar.stop()
    return _consolidate(out, store)


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

