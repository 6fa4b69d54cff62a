"""fastdis/_parallel.py: the shared BLAS limit."""

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from fastdis._parallel import single_threaded_blas


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_single_threaded_blas_is_shared_and_restored_by_the_last_user():
    np.dot(np.ones(3), np.ones(3))  # BLAS loaded
    with threadpool_limits(limits=2, user_api="blas"):  # whatever the machine's default
        before = _blas_threads()
        assert before and all(threads == 2 for threads in before)
        first, second = single_threaded_blas(), single_threaded_blas()
        first.__enter__()
        second.__enter__()  # overlapping users (fold threads, explicitness' factor threads)
        assert all(threads == 1 for threads in _blas_threads())
        first.__exit__(None, None, None)
        assert all(threads == 1 for threads in _blas_threads())  # the other still runs
        second.__exit__(None, None, None)
        assert _blas_threads() == before
