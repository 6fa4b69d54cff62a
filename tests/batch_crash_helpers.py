"""A task function for tests/test_batch_engine.py that kills its worker process on one
checkpoint, as an out-of-memory kill or a segfault would (spawned workers import it by name)."""

import os

from fastdis.batch.engine import score_task

CRASHING_CHECKPOINT = "crashes-its-worker"


def score_task_or_die(store_path, task):
    if task.checkpoint == CRASHING_CHECKPOINT:
        os._exit(9)
    return score_task(store_path, task)
