"""A task function for tests/test_batch_engine.py that kills its worker process on one
checkpoint, as an out-of-memory kill or a segfault would (spawned workers import it by name)."""

import os

from fastdis.batch.engine import score_task

CRASHING_CHECKPOINT = "crashes-its-worker"


def score_task_or_die(store_path, task):
    if task.checkpoint == CRASHING_CHECKPOINT:
        os._exit(9)
    return score_task(store_path, task)


def kill_at_first_journal_part(script: str, out, timeout: float = 300) -> list:
    """Run the Python ``script`` (a scoring run writing to ``out``) and SIGKILL it as soon as
    its first journal part appears; return the journal parts then on disk, as DataFrames."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import pandas as pd

    process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", script],
                               stderr=subprocess.DEVNULL)
    journal = Path(out) / ".journal"
    deadline = time.monotonic() + timeout
    while not (journal.is_dir() and any(journal.glob("*.parquet"))):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.kill()  # SIGKILL: no cleanup runs
    assert process.wait() == -9
    return [pd.read_parquet(part) for part in journal.glob("*.parquet")]
