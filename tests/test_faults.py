"""Faults: files damaged on disk, kill -9 at any moment, concurrent runs, paths spelled
differently, untrusted data files, unavailable devices. Each test asserts that nothing finished
is lost, no wrong value is recorded, no process is left behind and the message names the file.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from test_batch_plan_store import codes_of, small_plan
from typer.testing import CliRunner

from fastdis.batch import open_store, score_store, write_codes
from fastdis.batch.store import StoreError, checkpoint_key
from fastdis.cli import app

CLI = [sys.executable, "-W", "ignore", "-c", "from fastdis.cli import main; main()"]


def store_of(path, names=("a", "b", "c"), metrics=("mig",)):
    """A store of checkpoints with distinct codes, and its plan."""
    plan = small_plan(list(metrics))
    for seed, name in enumerate(names):
        write_codes(path, name, {"mean": codes_of(plan, "entangled", seed=seed)},
                    {"seed": seed}, plan=plan)
    return plan


def chunk_files(array_folder):
    return [p for p in (array_folder / "c").rglob("*") if p.is_file()]


def damage(path, how):
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:  # garbled: same size, a few bytes changed where zstd keeps literal data
        data = bytearray(path.read_bytes())
        for offset in range(len(data) // 2, len(data) // 2 + 8):
            data[offset] ^= 0x5A
        path.write_bytes(bytes(data))


# -- the store --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbled"])
def test_a_damaged_code_chunk_fails_its_checkpoint_only_and_names_the_file(tmp_path, how):
    path = tmp_path / "reps.zarr"
    plan = store_of(path)
    array = path / "checkpoints" / checkpoint_key("b") / "mean"
    (chunk,) = chunk_files(array)
    damage(chunk, how)

    with pytest.raises(StoreError, match=str(array)):
        open_store(path).codes("b")
    table = score_store(path, tmp_path / "out", scheduler="synchronous")
    failed = table[table["error"].notna()]
    assert list(failed["checkpoint"]) == ["b"]  # no MIG of zeros recorded as a result
    assert str(array) in failed["error"].item()
    store = open_store(path)
    for name in ("a", "c"):
        rows = table[table["checkpoint"] == name]
        assert dict(zip(rows["key"], rows["value"], strict=True)) == plan.score(
            "mig", store.codes(name))


@pytest.mark.parametrize("how", ["deleted", "garbled"])
def test_a_damaged_plan_chunk_stops_the_run_naming_the_file(tmp_path, how):
    path = tmp_path / "reps.zarr"
    store_of(path)
    (chunk,) = chunk_files(path / "plan" / "factors")[:1]
    damage(chunk, how)
    result = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out"),
                                      "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path}/plan/factors" in result.output.replace("\n", "")
    assert not (tmp_path / "out" / "scores.parquet").exists()


def test_a_store_without_checksums_is_still_read_and_missing_chunks_are_caught(tmp_path):
    """Stores written before checksums existed: read with the chunk check only."""
    import zarr

    path = tmp_path / "reps.zarr"
    plan = store_of(path)
    root = zarr.open_group(path, mode="a")
    root.attrs["fastdis"] = {k: v for k, v in root.attrs["fastdis"].items() if k != "checksums"}
    for name in ("a", "b", "c"):
        group = root["checkpoints"][checkpoint_key(name)]
        group.attrs.put({k: v for k, v in group.attrs.asdict().items() if k != "checksums"})
    store = open_store(path)
    assert plan.score("mig", store.codes("a")) == plan.score(
        "mig", codes_of(plan, "entangled", seed=0))
    array = path / "checkpoints" / checkpoint_key("b") / "mean"
    chunk_files(array)[0].unlink()
    with pytest.raises(StoreError, match=f"{array}: 1 of its 1 chunk file"):
        store.codes("b")


def test_checksums_cover_every_array_a_checkpoint_group_holds(tmp_path):
    """Arrays added to a group beside the codes are verified too, not only today's list."""
    path = tmp_path / "reps.zarr"
    plan = store_of(path, names=("a",))
    codes = codes_of(plan, "entangled")
    write_codes(path, "two", {"mean": codes, "extra": codes[:, :2] * 3}, {}, plan=plan)
    checksums = open_store(path)._group("two").attrs["checksums"]
    assert sorted(checksums) == ["extra", "mean"]
    damage(chunk_files(path / "checkpoints" / checkpoint_key("two") / "extra")[0], "garbled")
    assert np.array_equal(open_store(path).array("two", "mean"), codes)
    with pytest.raises(StoreError, match="extra"):
        open_store(path).array("two", "extra")


@pytest.mark.parametrize("how", ["garbled", "deleted"])
def test_damaged_metadata_of_one_checkpoint_is_confined_to_it(tmp_path, how):
    path = tmp_path / "reps.zarr"
    plan = store_of(path)
    metadata = path / "checkpoints" / checkpoint_key("b") / "zarr.json"
    if how == "deleted":
        metadata.unlink()
    else:
        metadata.write_text('{"attributes": {"name": "b", "complet')
    store = open_store(path)
    assert store.names() == ["a", "c"] and str(metadata) in store.damaged()["b"]

    result = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out"),
                                      "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    table = pd.read_parquet(tmp_path / "out")
    failed = table[table["error"].notna()]
    assert list(failed["checkpoint"]) == ["b"] and str(metadata) in failed["error"].item()
    assert set(table.loc[table["error"].isna(), "checkpoint"]) == {"a", "c"}

    # Writing the checkpoint again repairs it, and its failed rows go as stale.
    write_codes(path, "b", {"mean": codes_of(plan, "entangled", seed=1)}, {}, replace=True)
    table = score_store(path, tmp_path / "out", scheduler="synchronous")
    assert table["error"].isna().all() and set(table["checkpoint"]) == {"a", "b", "c"}


# -- scoring runs -----------------------------------------------------------------------------


def test_journal_parts_deleted_during_a_run_are_scored_again_not_reported_done(
        tmp_path, monkeypatch):
    import fastdis.batch.engine as engine

    path = tmp_path / "reps.zarr"
    store_of(path, names=[f"m{i}" for i in range(4)])

    class LosingJournal(engine.Journal):
        """The first run's parts vanish as soon as they are written (a sync tool, a user)."""

        lost = 0

        def flush(self):
            super().flush()
            if LosingJournal.lost < 1:
                for part in self.directory.glob("*.parquet"):
                    part.unlink()
                LosingJournal.lost += 1

    monkeypatch.setattr(engine, "Journal", LosingJournal)
    monkeypatch.setattr(engine, "consolidate", engine.consolidate)
    table = score_store(path, tmp_path / "out", scheduler="synchronous")
    assert sorted(table["checkpoint"].unique()) == [f"m{i}" for i in range(4)]
    assert table["error"].isna().all()


def test_journal_parts_that_keep_vanishing_fail_the_run_clearly(tmp_path, monkeypatch):
    import fastdis.batch.engine as engine

    path = tmp_path / "reps.zarr"
    store_of(path, names=["a"])

    class VoidJournal(engine.Journal):
        def flush(self):
            super().flush()
            for part in self.directory.glob("*.parquet"):
                part.unlink()

    monkeypatch.setattr(engine, "Journal", VoidJournal)
    with pytest.raises(RuntimeError, match="results are missing from the table"):
        score_store(path, tmp_path / "out", scheduler="synchronous")


def test_score_exits_non_zero_when_evaluations_failed(tmp_path):
    path = tmp_path / "reps.zarr"
    plan = store_of(path, names=["a"])
    nan_codes = codes_of(plan, "noise")
    nan_codes[0, 0] = np.nan
    write_codes(path, "diverged", {"mean": nan_codes}, {})
    result = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out"),
                                      "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "1 failed evaluations" in result.output
    assert "Traceback" not in result.output
    ok = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out2"),
                                  "--scheduler", "synchronous", "--metrics", "mig",
                                  "--representations", "mean"])
    assert ok.exit_code == 1  # the store still holds the failing checkpoint
    write_codes(path, "diverged", {"mean": codes_of(plan, "noise")}, {}, replace=True)
    fixed = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out"),
                                     "--scheduler", "synchronous"])
    assert fixed.exit_code == 0, fixed.output


def descendants(pid):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(processes):
    import psutil

    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_killing_score_leaves_no_worker_behind(tmp_path):
    pytest.importorskip("psutil")
    path = tmp_path / "reps.zarr"
    store_of(path, names=[f"m{i}" for i in range(40)], metrics=("modularity_explicitness",))
    process = subprocess.Popen([*CLI, "score", str(path), "--out", str(tmp_path / "out"),
                                "--workers", "2"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(descendants(process.pid)) < 3:  # two workers and the resource tracker
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        children = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(children), [p.cmdline()[-3:] for p in alive(children)]
    finally:
        for child in alive(descendants(process.pid)):
            child.kill()
        process.kill()
