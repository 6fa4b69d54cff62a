"""Thread-level parallelism over independent fits (factors, folds).

numba kernels and BLAS release the GIL, so independent fits run concurrently on threads.
Only single-threaded work is mapped here: nesting a parallel numba kernel inside these threads
would oversubscribe the cores.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

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
