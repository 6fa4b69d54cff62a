"""fastdis/_parallel.py: the shared BLAS limit."""

import json
import subprocess
import sys

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


_WORKERS_THAT_PREDICT_AFTER_FITTING = """
import json
import numpy as np
from threadpoolctl import threadpool_info
from fastdis._parallel import single_threaded_blas, thread_map

def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

x, w = np.random.rand(5000, 10), np.random.rand(10, 40)

def fit_then_predict(i):
    with single_threaded_blas():
        for _ in range(50 + 37 * i):
            x @ w
    for _ in range(200):
        x @ w

before = blas_threads()
for _ in range(3):
    thread_map(fit_then_predict, range(5), 2)
print(json.dumps([before, blas_threads()]))
"""


def test_thread_map_leaves_blas_threads_as_it_found_them():
    """Workers leave their single-threaded fits while others still multiply; thread_map holds
    the limit until all are done. (Releasing it while another thread was in a BLAS call left
    OpenBLAS on one thread: explicitness did that to the whole process.) In a fresh process:
    the failure needs BLAS' initial state."""
    out = subprocess.run([sys.executable, "-c", _WORKERS_THAT_PREDICT_AFTER_FITTING],
                         capture_output=True, text=True, check=True).stdout
    before, after = json.loads(out)
    assert before and after == before
