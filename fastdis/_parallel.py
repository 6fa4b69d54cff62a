"""Parallelism: threads over independent fits (factors, folds), and process pools that die
with their parent.

numba kernels and BLAS release the GIL, so independent fits run concurrently on threads.
Only single-threaded work is mapped here: nesting a parallel numba kernel inside these threads
would oversubscribe the cores.

Worker processes must not outlive the process that started them: a parent killed with
SIGKILL runs no cleanup, and its pool's workers would stay, idle and holding memory, adopted
by init. :func:`process_pool` gives a ``ProcessPoolExecutor`` whose workers exit when their
parent dies (:func:`exit_with_parent`); any other process pool can pass ``exit_with_parent``
as its initializer.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numba


def default_workers() -> int:
    """numba's thread count (``NUMBA_NUM_THREADS``, default: the number of cores)."""
    return max(1, numba.get_num_threads())


def thread_map(function, items, n_jobs: int) -> list:
    """``[function(item) for item in items]``, on ``n_jobs`` threads when that is > 1.

    The threads run with single-threaded BLAS (:func:`single_threaded_blas`), held until the
    last one is done: BLAS' thread count is process-wide, and changing it while another thread
    is inside a BLAS call leaves OpenBLAS at the wrong count (seen: explicitness' workers left
    the process on one BLAS thread about half the time).
    """
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        return list(pool.map(function, items))


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limits = None


@contextmanager
def single_threaded_blas():
    """Run the block with BLAS (OpenBLAS / MKL) on one thread, for every thread inside it.

    scipy's L-BFGS-B makes thousands of tiny BLAS calls per fit. When the cores are busy (fits
    on threads of their own, one scoring process per core) BLAS' spinning threads take most of
    the time: measured on 2 busy cores, a 40-class LogisticRegressionCV spent 23 of its 36 s in
    L-BFGS-B's step with BLAS' threads and 0.1 s without; on an idle machine the difference is
    small. BLAS' thread count is process-wide, so overlapping users share one limit,
    reference-counted, and the last one out restores the original setting.
    """
    global _blas_users, _blas_limits
    with _blas_lock:
        if _blas_users == 0:
            from threadpoolctl import threadpool_limits

            _blas_limits = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limits.restore_original_limits()
                _blas_limits = None


#: Seconds between two looks at the parent process, where the kernel cannot signal its death.
PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent(parent_pid: int, initializer=None, initargs=()) -> None:
    """Make this process exit as soon as process ``parent_pid`` (its parent) dies, then run
    ``initializer(*initargs)``: an initializer for ``ProcessPoolExecutor`` or
    ``multiprocessing.Pool`` workers, with ``initargs=(os.getpid(), ...)`` from the parent.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``): that stops
    a worker even inside a long numba kernel that holds the GIL. Elsewhere a daemon thread
    polls ``os.getppid()`` every :data:`PARENT_POLL_SECONDS`. A parent that died before this
    ran (the worker was re-parented already) ends the worker at once. The multiprocessing
    resource tracker needs nothing: it exits when the last process holding its pipe is gone.
    """
    import signal

    if not (sys.platform.startswith("linux") and _kernel_signals_parent_death(signal.SIGKILL)):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                         name="fastdis-parent-watch").start()
    if os.getppid() != parent_pid:
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


def _kernel_signals_parent_death(signal_number: int) -> bool:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    import time

    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def process_pool(workers: int, *, initializer=None, initargs=()):
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes that exit with this one.

    spawn, not fork: zarr runs an asyncio loop thread and numba an OpenMP pool, neither of
    which survives a fork. ``initializer(*initargs)`` runs in each worker after
    :func:`exit_with_parent` is armed. Create and use the pool in one thread (``with
    process_pool(n) as pool:``): on Linux a worker is tied to the thread that started it.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent,
                               initargs=(os.getpid(), initializer, initargs))


@contextmanager
def exclusive(lock_file: Path, busy_message: str):
    """Hold an exclusive lock on ``lock_file`` (created if absent) for the block, or raise
    RuntimeError(``busy_message``) at once if another process holds it.

    A POSIX ``flock``: the OS drops it when the holder dies, kill -9 included, so a crashed
    run never blocks the next. Without fcntl (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(busy_message) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
