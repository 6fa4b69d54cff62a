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

The metrics of one checkpoint's representation that fit the same boosted trees or histograms
run in one worker call (:class:`ScoreBundle`), which fits each of those once; their rows are
journaled per metric as before.

Every task runs numba single-threaded, so the numbers do not depend on where it ran: local
and Dask results are identical, bit for bit.

The results go to a Parquet dataset directory ``out``, journaled as tasks finish, so a crash
or ``kill -9`` loses at most the last half second and a rerun computes only what is missing
(:mod:`fastdis.batch.results` describes the table and the journal). A run holds ``out/.lock``
(POSIX ``flock``, released by the OS even on kill -9), so a second run on the same ``out`` is
refused instead of merging and deleting journal parts under the first one's feet.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .._parallel import exclusive, single_threaded_blas
from .._progress import stderr_progress
from .._validation import check_positive_int
from ..metrics import METRICS, study_metrics
from .executors import run_dask, run_local
from .plan import FIT_SHARING_METRICS
from .results import (
    RESULT_COLUMNS,
    TASK_COLUMNS,
    Journal,
    consolidate,
    failed_rows,
    read_raw,
    read_scores,
    to_wide,
)
from .store import RepresentationStore, StoreError, open_store

__all__ = ["score_store", "score_task", "score_bundle", "bundle_tasks", "read_scores",
           "to_wide", "resolve_metrics", "ScoreTask", "ScoreBundle", "RESULT_COLUMNS"]

_LOCK = ".lock"
#: The representation recorded for a checkpoint whose metadata cannot be read.
ANY_REPRESENTATION = "*"


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


@dataclass(frozen=True)
class ScoreBundle:
    """Tasks one worker call runs together: the metrics of one checkpoint's representation
    that fit the same classifiers or histograms (:data:`fastdis.batch.plan.FIT_SHARING_METRICS`),
    scored inside :func:`fastdis.metrics.shared_fits` so the shared fits run once. Each task
    still gets its own rows (journal, resume and table are per task); a lone task is a bundle
    of one. A worker that dies fails every task of its bundle.
    """

    tasks: tuple[ScoreTask, ...]

    @property
    def token(self) -> str:
        """Deterministic name (Dask key), the same in every run."""
        first = self.tasks[0]
        return "+".join([first.token] + [task.metric for task in self.tasks[1:]])


def bundle_tasks(tasks) -> list[ScoreBundle]:
    """``tasks`` as bundles: the fit-sharing metrics of one (checkpoint, representation,
    encoding) together (at the first one's place), every other task alone, order kept."""
    bundles, sharing = [], {}
    for task in tasks:
        if task.metric not in FIT_SHARING_METRICS:
            bundles.append([task])
            continue
        key = (task.checkpoint, task.representation, task.encoding_id)
        if key not in sharing:
            sharing[key] = []
            bundles.append(sharing[key])
        sharing[key].append(task)
    return [ScoreBundle(tuple(members)) for members in bundles]


def score_bundle(store_path: str, bundle: ScoreBundle) -> list[dict]:
    """:func:`score_task` for each task of ``bundle``, sharing fits; their rows, in order."""
    from ..metrics import shared_fits

    with shared_fits():
        return [row for task in bundle.tasks for row in score_task(store_path, task)]


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
        The whole table at ``out`` after the run (:func:`read_scores`). A checkpoint whose
        codes are damaged (a missing, truncated or garbled chunk file) gets failed rows naming
        the file, as does one whose metadata cannot be read (representation ``*``, one row
        per metric); the others are scored.

    Raises
    ------
    StoreError
        If the store cannot be opened or its evaluation plan is damaged; ValueError on
        unknown or unplanned metrics, unknown representations or a bad ``workers``.
    RuntimeError
        If another ``score_store`` is writing to ``out`` (POSIX systems), or results of
        finished tasks vanished from ``out`` during the run twice in a row.
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
    # A second run on out would merge and delete journal parts under the first one's feet.
    with exclusive(out / _LOCK, f"another fastdis score is writing to {out}; wait for it to "
                   "finish (or stop it), then rerun to resume."):
        return _score_tasks(store, store_path, entries, names, representations, out, scheduler,
                            workers, retry_failed, progress)


def _listed_tasks(entries, names, representations) -> list[ScoreTask]:
    """Every task of the store's complete checkpoints, in store order."""
    return [ScoreTask(name, representation, metric, entry["encoding_id"])
            for name, entry in entries.items()
            for representation in entry["representations"]
            if representations is None or representation in representations
            for metric in names]


def _damaged_rows(damaged: dict, names) -> list[dict]:
    """Failed rows, one per metric, of each ``{checkpoint: problem}`` whose metadata cannot be
    read. Their ``encoding_id`` is empty, so once the checkpoint is written again they are
    stale and dropped at consolidation."""
    return [row for name, problem in damaged.items() for metric in names
            for row in failed_rows(ScoreTask(name, ANY_REPRESENTATION, metric, ""), problem)]


def _task_keys(table) -> set[tuple]:
    return set(map(tuple, table[TASK_COLUMNS].drop_duplicates().to_numpy().tolist()))


def _key(task: ScoreTask) -> tuple:
    return (task.checkpoint, task.representation, task.metric, task.encoding_id)


def _score_tasks(store, store_path, entries, names, representations, out, scheduler, workers,
                 retry_failed, progress):
    """Run the tasks not yet recorded, consolidate, and check that the table holds every
    listed task: journal parts deleted under a run (by hand, or a sync tool) are scored
    again once, and if rows are still missing the run fails instead of reporting success."""
    listed = _listed_tasks(entries, names, representations)
    for attempt in range(2):
        recorded, _ = read_raw(out)
        if retry_failed and attempt == 0:
            recorded = recorded[recorded["error"].isna()]
        done = _task_keys(recorded)
        tasks = [task for task in listed if _key(task) not in done]
        _run_tasks(store_path, tasks, scheduler, workers, progress, Journal(out),
                   _damaged_rows(store.damaged(), names))
        table = consolidate(out, store)
        missing = _missing_tasks(listed, table, store)
        if not missing:
            return table
    raise RuntimeError(
        f"{out}: {len(missing)} evaluation(s) finished but their results are missing from "
        f"the table (e.g. {missing[0].checkpoint} / {missing[0].representation} / "
        f"{missing[0].metric}): something deletes files under {out / '.journal'} during the "
        "run. Stop it, then rerun to complete the table.")


def _missing_tasks(listed, table, store) -> list[ScoreTask]:
    """The listed tasks without rows in ``table``, except those of checkpoints re-encoded
    since they were listed (consolidation drops their rows as stale; a rerun scores them)."""
    current = {name: entry["encoding_id"] for name, entry in store.checkpoints().items()}
    recorded = _task_keys(table)
    return [task for task in listed
            if current.get(task.checkpoint) == task.encoding_id and _key(task) not in recorded]


def _run_tasks(store_path, tasks, scheduler, workers, progress, journal, extra_rows):
    """Run ``tasks`` where ``scheduler`` says, journaling each result (and ``extra_rows``)."""
    from .._parallel import default_workers

    failures = 0
    bar = stderr_progress() if progress else None

    def on_result(rows):
        nonlocal failures
        journal.add(rows)
        finished = {row["metric"]: row["error"] is not None for row in rows}  # a bundle's tasks
        failures += sum(finished.values())
        if bar is not None:
            bar.update(bar_task, advance=len(finished),
                       description=f"scoring ({failures} failed)" if failures else "scoring")

    journal.add(extra_rows)
    try:
        if bar is not None:
            bar.start()
            bar_task = bar.add_task("scoring", total=len(tasks))
        if not tasks:
            pass
        elif scheduler == "synchronous":
            for bundle in bundle_tasks(tasks):
                on_result(score_bundle(store_path, bundle))
        elif scheduler is None or scheduler == "processes":
            run_local(store_path, bundle_tasks(tasks), workers or default_workers(), on_result,
                      score_bundle)
        else:
            run_dask(store_path, bundle_tasks(tasks), scheduler, on_result, score_bundle)
    finally:
        journal.flush()
        if bar is not None:
            bar.stop()
