"""fastdis/_parallel.py: the shared BLAS limit under concurrent users."""

import threading

from threadpoolctl import threadpool_info, threadpool_limits

from fastdis._parallel import single_threaded_blas, thread_map


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_single_threaded_blas_is_shared_and_restored_by_the_last_user():
    with threadpool_limits(limits=2, user_api="blas"):  # whatever the machine's default
        _check_shared_limit()


def _check_shared_limit():
    before = _blas_threads()
    assert before and all(threads == 2 for threads in before)
    inside = threading.Barrier(3)
    leave = threading.Event()
    seen = []

    def user(_):
        with single_threaded_blas():
            inside.wait()  # all three hold the limit at once
            seen.append(_blas_threads())
            leave.wait(timeout=10)
        return _blas_threads()

    def release():
        inside.wait()
        leave.set()

    releaser = threading.Thread(target=release)
    releaser.start()
    thread_map(user, range(2), 2)
    releaser.join()
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert _blas_threads() == before
