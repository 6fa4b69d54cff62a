"""Where scoring tasks run: a pool of local processes, or an existing Dask cluster.

What to compute is the engine's business (:mod:`fastdis.batch.engine` lists the tasks); this
module only runs ``task_function(store_path, task)`` for each task and hands each task's result
rows to ``on_result`` as they arrive:

* :func:`run_local`: a pool of spawned processes. Most numba kernels here hold the GIL (only the
  linear-model losses are ``nogil``) and scikit-learn / scipy's L-BFGS loop is Python, so
  threads would serialise; one single-threaded process per core runs the tasks truly in
  parallel and is the fastest local choice. A worker that dies costs only its own task; the
  workers exit when the process that started them dies (kill -9 included).
* :func:`run_dask`: the same task function on an existing Dask cluster (the workers must see
  the store's path). No cluster is ever started here.
"""

from __future__ import annotations

from .results import failed_rows

__all__ = ["run_local", "run_dask", "WORKER_DIED", "WORKERS_CANNOT_START"]


#: Recorded for a task whose worker process died while running it alone.
WORKER_DIED = ("the worker process died while scoring this (killed by the operating system, "
               "e.g. out of memory, or crashed in native code)")


#: Raised when no worker process can start at all (then no task is to blame).
WORKERS_CANNOT_START = (
    "scoring worker processes cannot start. The local scheduler scores in spawned processes, "
    "which re-import the main script: call score_store from a script file under "
    "`if __name__ == \"__main__\":` (not from standard input), or pass "
    "scheduler=\"synchronous\" to score in this process.")


def run_local(store_path, tasks, workers, on_result, task_function):
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
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    from .._parallel import process_pool

    done = set()
    try:
        # score_task sets numba and BLAS to one thread itself, so each process fills one core.
        # The workers exit when this process dies, even by SIGKILL.
        with process_pool(workers) as pool:
            futures = {pool.submit(task_function, store_path, task): i
                       for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                rows = future.result()
                done.add(futures[future])
                on_result(rows)
    except BrokenProcessPool:
        tasks[:] = [task for i, task in enumerate(tasks) if i not in done]
        raise


def run_dask(store_path, tasks, scheduler, on_result, task_function):
    from distributed import Client, KilledWorker, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(task_function, store_path, task,
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
