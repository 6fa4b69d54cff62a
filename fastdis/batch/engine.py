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

A task is one metric on one representation of one checkpoint (:class:`ScoreTask`), except for
metrics that compare checkpoints (UDR): their task (:class:`ModelSetTask`) takes every
checkpoint of one *setting* (:func:`setting_of`: the same config apart from the seed and the
run's identity) and writes one row per checkpoint per key, all in one journal part, so a kill
never leaves half a setting written. A setting counts as scored when each of its checkpoints
has rows for its current encoding from a task over the setting's current size; a new or
re-encoded checkpoint therefore rescores its whole setting, and the new rows replace the old.
A setting of one checkpoint gets an error row saying so.

The results go to a Parquet dataset directory ``out``, journaled as tasks finish, so a crash
or ``kill -9`` loses at most the last half second and a rerun computes only what is missing
(:mod:`fastdis.batch.results` describes the table and the journal). A run holds ``out/.lock``
(POSIX ``flock``, released by the OS even on kill -9), so a second run on the same ``out`` is
refused instead of merging and deleting journal parts under the first one's feet.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._parallel import exclusive, single_threaded_blas
from .._progress import stderr_progress
from .._validation import check_positive_int
from ..metrics import METRICS, get_metric, study_metrics
from .executors import run_dask, run_local
from .plan import FIT_SHARING_METRICS, MODEL_SET_INPUTS, MODEL_SET_SIZE_KEY, POSTERIOR_INPUTS
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
from .store import POSTERIOR_MEANS, RepresentationStore, StoreError, open_store

__all__ = ["score_store", "score_task", "score_bundle", "bundle_tasks", "read_scores",
           "to_wide", "resolve_metrics", "ScoreTask", "ModelSetTask", "ScoreBundle", "setting_of",
           "RESULT_COLUMNS"]

_LOCK = ".lock"
#: The representation recorded for a checkpoint whose metadata cannot be read.
ANY_REPRESENTATION = "*"


#: Config keys that tell runs of one setting apart without changing what is trained: the
#: seed, where the run and its data lie, and fastdis.train's system fields (device, logging
#: and checkpoint cadence, compilation) and version.
RUN_IDENTITY_KEYS = ("seed", "random_seed", "path", "data_dir", "fastdis_version", "compile",
                     "compile_mode", "device", "log_every", "checkpoint_every")


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

    @property
    def members(self) -> tuple[tuple[str, str], ...]:
        """``((checkpoint, encoding_id),)``: the checkpoints whose rows the task writes."""
        return ((self.checkpoint, self.encoding_id),)


@dataclass(frozen=True)
class ModelSetTask:
    """One unit of work comparing checkpoints: a metric on one representation of every
    checkpoint of one setting (``members``: (checkpoint, encoding_id), sorted by name)."""

    members: tuple[tuple[str, str], ...]
    representation: str
    metric: str

    @property
    def token(self) -> str:
        """Deterministic name (Dask key): changes with any member or its encoding."""
        digest = hashlib.sha256(json.dumps(self.members).encode()).hexdigest()[:24]
        return f"fastdis-score-set-{digest}-{self.representation}-{self.metric}"


def setting_of(config: Mapping) -> str:
    """A checkpoint's setting (data set, method, hyperparameters, training length...): its
    config without :data:`RUN_IDENTITY_KEYS`, as canonical JSON. Checkpoints of one setting
    differ only in their seed, the models UDR compares."""
    return json.dumps({key: value for key, value in config.items()
                       if key not in RUN_IDENTITY_KEYS}, sort_keys=True)


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
    """Metric names for ``metrics``: "plan", "all", "study", or names / comma-separated names.

    "plan" (or ``None``) is every metric the store's plan serves (every registered metric for a
    plan made with the defaults); "all" is every registered metric and "study" the registry's
    study suite, both refused by name when the plan does not serve some of them.
    """
    if metrics is None:
        metrics = "plan"
    if isinstance(metrics, str):
        metrics = [metrics]
    expansions = {"plan": list(plan.metrics), "all": list(METRICS),
                  "study": [spec.name for spec in study_metrics()]}
    names = []
    for item in metrics:
        for name in str(item).split(","):
            name = name.strip()
            names.extend(expansions.get(name, [name] if name else []))
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError(f"metrics is empty: name at least one of {list(plan.metrics)}, or "
                         "'plan', 'all' or 'study'.")
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; this store's plan serves "
                             f"{list(plan.metrics)}.")
    unplanned = [name for name in names if name not in plan.metrics]
    if unplanned:
        raise ValueError(f"the store's evaluation plan does not serve {unplanned} (it was built "
                         f"for {list(plan.metrics)}): encode into a new store whose plan "
                         "includes them (a plan made with the defaults serves every metric), "
                         "or score --metrics plan.")
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


def score_task(store_path: str, task) -> list[dict]:
    """Run one task (:class:`ScoreTask` or :class:`ModelSetTask`); return its result rows
    (one failed row per checkpoint, carrying the reason, on error).

    Any exception of the metric is caught: a broken checkpoint must not stop a batch.
    ``ValueError`` (the metrics' input checks) is recorded as its message, anything else
    with its type name. Warnings are recorded in the rows, not printed: thousands of tasks
    would otherwise bury the progress bar under the same ConvergenceWarning.
    """
    import warnings

    import numba

    previous_threads = numba.get_num_threads()
    numba.set_num_threads(1)  # thread-count-free numbers; parallelism is across tasks
    start = time.perf_counter()
    compute = _score_model_set if isinstance(task, ModelSetTask) else _score_checkpoint
    # BLAS on one thread too: the same summation order (bit-identical numbers) on a laptop,
    # a local pool or any Dask worker, and no oversubscription of the cores.
    with single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rows = compute(_store_for(store_path), task)
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


def _result_rows(task, checkpoint: str, encoding_id: str, result: Mapping) -> list[dict]:
    return [{"checkpoint": checkpoint, "representation": task.representation,
             "metric": task.metric, "encoding_id": encoding_id, "key": str(key),
             "value": float(value), "error": None} for key, value in result.items()]


def _score_checkpoint(store, task: ScoreTask) -> list[dict]:
    _check_encoding(store, task.checkpoint, task.encoding_id)
    codes = store.codes(task.checkpoint, task.representation)
    logvars = (store.logvar(task.checkpoint)
               if get_metric(task.metric).inputs in POSTERIOR_INPUTS else None)
    _check_encoding(store, task.checkpoint, task.encoding_id)  # not replaced while reading
    result = store.plan.score(task.metric, codes, logvars)
    return _result_rows(task, task.checkpoint, task.encoding_id, result)


def _score_model_set(store, task: ModelSetTask) -> list[dict]:
    if len(task.members) < 2:
        raise ValueError(f"{task.metric} compares the checkpoints of one setting (the same "
                         "config apart from the seed), and this checkpoint is the only one of "
                         "its setting in the store: encode other seeds of it.")
    codes, kl = [], []
    for checkpoint, encoding_id in task.members:
        _check_encoding(store, checkpoint, encoding_id)
        codes.append(store.codes(checkpoint, task.representation))
        kl.append(store.kl(checkpoint))
        _check_encoding(store, checkpoint, encoding_id)
    missing = [checkpoint for (checkpoint, _), value in zip(task.members, kl, strict=True)
               if value is None]
    if missing:
        raise ValueError(f"{task.metric} needs the per-code KL divergence of every checkpoint "
                         f"of the setting; {missing} were written without it (fastdis encode "
                         "stores it; write_codes(..., kl=...) for codes from another "
                         "framework).")
    results = store.plan.score_models(task.metric, codes, kl)
    return [row for (checkpoint, encoding_id), result in zip(task.members, results, strict=True)
            for row in _result_rows(task, checkpoint, encoding_id, result)]


def _check_encoding(store, checkpoint: str, encoding_id: str):
    current = store.encoding_id(checkpoint)
    if current != encoding_id:
        raise ValueError(f"checkpoint {checkpoint!r} was re-encoded after the task was "
                         "listed; rerun fastdis score to score its new codes.")


def score_store(
    store,
    out,
    *,
    metrics="plan",
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
        Tasks already recorded there for the same encoding are skipped (UDR: settings
        whose checkpoints all are, from a comparison of the setting's current checkpoints).
    metrics : "plan", "all", "study", or sequence of str, default="plan"
        "plan": every metric the store's plan serves (all of them for a plan made with the
        defaults); "all": every registered metric; "study": the registry's study suite
        (:func:`resolve_metrics`).
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


def _listed_tasks(entries, names, representations) -> list:
    """Every task of the store's complete checkpoints: the model-set tasks (UDR) first, then
    each checkpoint's, in store order."""
    def chosen(representation):
        return representations is None or representation in representations

    model_set = [m for m in names if get_metric(m).inputs in MODEL_SET_INPUTS]
    tasks = [task for metric in model_set
             for representation in dict.fromkeys(r for e in entries.values()
                                                 for r in e["representations"])
             if chosen(representation)
             for task in _model_set_tasks(entries, representation, metric)]
    for name, entry in entries.items():
        for representation in filter(chosen, entry["representations"]):
            for metric in names:
                if metric in model_set or (get_metric(metric).inputs in POSTERIOR_INPUTS
                                           and representation != POSTERIOR_MEANS):
                    continue  # posterior metrics read the posterior means, not samples
                tasks.append(ScoreTask(name, representation, metric, entry["encoding_id"]))
    return tasks


def _model_set_tasks(entries, representation: str, metric: str) -> list[ModelSetTask]:
    """One task per setting among the checkpoints that have ``representation``."""
    settings: dict[str, list] = {}
    for name, entry in entries.items():
        if representation in entry["representations"]:
            settings.setdefault(setting_of(entry["config"]), []).append(
                (name, entry["encoding_id"]))
    return [ModelSetTask(tuple(sorted(members)), representation, metric)
            for members in settings.values()]


class _Recorded:
    """Which tasks a table of rows holds: a model-set task counts when every member has rows
    for its encoding from a task over a set of the same size (a failed task records none)."""

    def __init__(self, table):
        self.keys = _task_keys(table)
        sized = table[table["key"] == MODEL_SET_SIZE_KEY]
        self.set_sizes = dict(zip(map(tuple, sized[TASK_COLUMNS].to_numpy().tolist()),
                                  sized["value"], strict=True))

    def holds(self, task) -> bool:
        size = len(task.members)
        for checkpoint, encoding_id in task.members:
            key = (checkpoint, task.representation, task.metric, encoding_id)
            if key not in self.keys or self.set_sizes.get(key, size) != size:
                return False
        return True


def _damaged_rows(damaged: dict, names) -> list[dict]:
    """Failed rows, one per metric, of each ``{checkpoint: problem}`` whose metadata cannot be
    read. Their ``encoding_id`` is empty, so once the checkpoint is written again they are
    stale and dropped at consolidation."""
    return [row for name, problem in damaged.items() for metric in names
            for row in failed_rows(ScoreTask(name, ANY_REPRESENTATION, metric, ""), problem)]


def _task_keys(table) -> set[tuple]:
    return set(map(tuple, table[TASK_COLUMNS].drop_duplicates().to_numpy().tolist()))


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
        done = _Recorded(recorded)
        tasks = [task for task in listed if not done.holds(task)]
        _run_tasks(store_path, tasks, scheduler, workers, progress, Journal(out),
                   _damaged_rows(store.damaged(), names))
        table = consolidate(out, store)
        missing = _missing_tasks(listed, table, store)
        if not missing:
            return table
    raise RuntimeError(
        f"{out}: {len(missing)} evaluation(s) finished but their results are missing from "
        f"the table (e.g. {missing[0].members[0][0]} / {missing[0].representation} / "
        f"{missing[0].metric}): something deletes files under {out / '.journal'} during the "
        "run. Stop it, then rerun to complete the table.")


def _missing_tasks(listed, table, store) -> list:
    """The listed tasks without rows in ``table``, except those of checkpoints re-encoded
    since they were listed (consolidation drops their rows as stale; a rerun scores them)."""
    current = {name: entry["encoding_id"] for name, entry in store.checkpoints().items()}
    recorded = _Recorded(table)
    return [task for task in listed
            if all(current.get(name) == encoding_id for name, encoding_id in task.members)
            and not recorded.holds(task)]


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
