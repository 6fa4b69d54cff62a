"""Thread-level parallelism over independent fits (factors, folds).

numba kernels and BLAS release the GIL, so independent fits run concurrently on threads.
Only single-threaded work is mapped here: nesting a parallel numba kernel inside these threads
would oversubscribe the cores.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba


def default_workers() -> int:
    """numba's thread count (``NUMBA_NUM_THREADS``, default: the number of cores)."""
    return max(1, numba.get_num_threads())


def thread_map(function, items, n_jobs: int) -> list:
    """``[function(item) for item in items]``, on ``n_jobs`` threads when that is > 1."""
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        return list(pool.map(function, items))
