"""Faults: files damaged on disk, kill -9 at any moment, concurrent runs, paths spelled
differently, untrusted data files, unavailable devices. Each test asserts that nothing finished
is lost, no wrong value is recorded, no process is left behind and the message names the file.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbled", "metadata garbled"])
def test_a_damaged_code_chunk_fails_its_checkpoint_only_and_names_the_file(tmp_path, how):
    path = tmp_path / "reps.zarr"
    plan = store_of(path)
    array = path / "checkpoints" / checkpoint_key("b") / "mean"
    if how == "metadata garbled":
        (array / "zarr.json").write_text("{not json")
    else:
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
    assert result.exit_code == 1
    assert_message_not_traceback(result)
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
    assert store.unverified() == ["the evaluation plan", "a", "b", "c"]
    assert plan.score("mig", store.codes("a")) == plan.score(
        "mig", codes_of(plan, "entangled", seed=0))
    result = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out"),
                                      "--scheduler", "synchronous"])
    assert result.exit_code == 0 and "written without checksums" in result.output
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
    assert result.exit_code == 1
    assert_message_not_traceback(result)
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


def test_a_checkpoint_re_encoded_during_a_run_is_not_taken_for_lost_results(
        tmp_path, monkeypatch):
    import fastdis.batch.engine as engine

    path = tmp_path / "reps.zarr"
    plan = store_of(path, names=["a", "b"])
    score = engine.score_task

    def re_encoding_first(store_path, task):
        if task.checkpoint == "a" and open_store(path).encoding_id("a") == task.encoding_id:
            write_codes(path, "a", {"mean": codes_of(plan, "noise")}, {}, replace=True)
        return score(store_path, task)

    monkeypatch.setattr(engine, "score_task", re_encoding_first)
    table = score_store(path, tmp_path / "out", scheduler="synchronous")
    assert list(table["checkpoint"].unique()) == ["b"]  # a's old codes' rows are stale
    monkeypatch.undo()
    table = score_store(path, tmp_path / "out", scheduler="synchronous")
    rows = table[table["checkpoint"] == "a"]
    assert dict(zip(rows["key"], rows["value"], strict=True)) == plan.score(
        "mig", codes_of(plan, "noise"))


def test_a_damaged_journal_part_is_named_and_nothing_else_is_lost(tmp_path):
    path = tmp_path / "reps.zarr"
    store_of(path, names=["a"])
    out = tmp_path / "out"
    score_store(path, out, scheduler="synchronous")
    part = out / ".journal" / "0123.parquet"
    part.write_bytes(b"PAR1 not really")
    result = CliRunner().invoke(app, ["score", str(path), "--out", str(out)])
    assert_message_not_traceback(result)
    assert str(part) in "".join(result.output.split())  # rich wraps long paths
    assert (out / "scores.parquet").is_file() and part.exists()


def test_score_exits_non_zero_when_evaluations_failed(tmp_path):
    path = tmp_path / "reps.zarr"
    plan = store_of(path, names=["a"])
    nan_codes = codes_of(plan, "noise")
    nan_codes[0, 0] = np.nan
    write_codes(path, "diverged", {"mean": nan_codes}, {})
    result = CliRunner().invoke(app, ["score", str(path), "--out", str(tmp_path / "out"),
                                      "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "1 failed evaluations" in result.output
    assert_message_not_traceback(result)
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
        # A rerun completes the table: nothing lost, nothing twice, every value valid.
        table = score_store(path, tmp_path / "out", scheduler="synchronous")
        assert set(table["checkpoint"]) == {f"m{i}" for i in range(40)}
        assert table["error"].isna().all()
        assert not table.duplicated(["checkpoint", "representation", "metric", "key"]).any()
    finally:
        for child in alive(descendants(process.pid)):
            child.kill()
        process.kill()


# -- encoding ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """The small dSprites look-alike and three briefly trained runs on it."""
    import torch

    from fastdis.data import make_dsprites
    from fastdis.train import TrainConfig, train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    make_dsprites(root / "data", small=True)
    for seed in range(3):
        train(TrainConfig(steps=2, batch_size=8, checkpoint_every=2, seed=seed,
                          data_dir=str(root / "data")), root / "runs" / f"seed{seed}",
              progress=False)
    return root


def kill_at_random(command, started: Path, longest: float) -> float:
    """Run ``command``, SIGKILL it a random 0 to ``longest`` seconds after the file ``started``
    appears (or when it ends by itself first); return the delay, for failure messages."""
    delay = random.Random().uniform(0.0, longest)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not started.is_file() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(delay)
    process.kill()
    process.wait()
    return delay


def encode_command(root, store):
    return ["encode", str(root / "runs"), "--dataset", "dsprites_full", "--data-dir",
            str(root / "data"), "--store", str(store), "--scale", "0.02", "--metrics", "mig"]


def encoded_codes(store_path):
    store = open_store(store_path)
    return {name: store.codes(name) for name in store.names()}


def test_encode_killed_at_a_random_moment_resumes_to_the_same_codes(trained_runs, tmp_path):
    reference = tmp_path / "reference.zarr"
    assert CliRunner().invoke(app, encode_command(trained_runs, reference)).exit_code == 0
    store = tmp_path / "reps.zarr"
    delay = kill_at_random([*CLI, *encode_command(trained_runs, store)], store / "zarr.json",
                           1.5)
    if (store / "zarr.json").is_file():  # what a killed encode left is never a wrong code
        for name, codes in encoded_codes(store).items():
            assert np.array_equal(codes, encoded_codes(reference)[name]), delay
    result = CliRunner().invoke(app, encode_command(trained_runs, store))
    assert result.exit_code == 0, (delay, result.output)
    again, expected = encoded_codes(store), encoded_codes(reference)
    assert sorted(again) == sorted(expected) and len(expected) == 3
    for name in expected:
        assert np.array_equal(again[name], expected[name]), (delay, name)


def test_damaged_metadata_of_one_checkpoint_does_not_stop_encode(trained_runs, tmp_path):
    store = tmp_path / "reps.zarr"
    first = [*encode_command(trained_runs, store)]
    first[1] = str(trained_runs / "runs" / "seed0")
    assert CliRunner().invoke(app, first).exit_code == 0
    (name,) = open_store(store).names()
    metadata = store / "checkpoints" / checkpoint_key(name) / "zarr.json"
    metadata.write_text("{not json")
    result = CliRunner().invoke(app, encode_command(trained_runs, store))
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert len(open_store(store).names()) == 3 and not open_store(store).damaged()


def test_a_second_writer_of_a_store_is_refused(trained_runs, tmp_path):
    from fastdis._parallel import exclusive
    from fastdis.batch.store import WRITE_LOCK

    store = tmp_path / "reps.zarr"
    first = [*encode_command(trained_runs, store)]
    first[1] = str(trained_runs / "runs" / "seed0")
    assert CliRunner().invoke(app, first).exit_code == 0
    with exclusive(store / WRITE_LOCK, "held by this test"):
        result = CliRunner().invoke(app, encode_command(trained_runs, store))
    assert result.exit_code == 1 and "another fastdis encode is writing to" in result.output
    assert len(open_store(store).names()) == 1


# -- training ---------------------------------------------------------------------------------


def test_train_killed_at_a_random_moment_resumes_bit_identical(trained_runs, tmp_path):
    import torch

    from fastdis.train import TrainConfig, train

    data = str(trained_runs / "data")
    config = TrainConfig(steps=30, batch_size=8, checkpoint_every=3, log_every=3, seed=5,
                         data_dir=data)
    straight = train(config, tmp_path / "straight", progress=False)
    run = tmp_path / "killed"
    delay = kill_at_random(
        [*CLI, "train", "--out", str(run), "--data-dir", data, "--steps", "30",
         "--batch-size", "8", "--checkpoint-every", "3", "--log-every", "3", "--seed", "5",
         "--threads", "1", "--no-progress"], run / "checkpoint.pt", 2.0)
    train(config, run, progress=False)  # resumes from the last checkpoint
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(run / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), (delay, key)
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(3, 31, 3)), delay
    assert not list(run.glob(".*.tmp-*")), delay


def test_a_stale_temporary_of_a_killed_checkpoint_write_is_removed(trained_runs, tmp_path):
    from fastdis.train import TrainConfig, train

    config = TrainConfig(steps=2, batch_size=8, checkpoint_every=1,
                         data_dir=str(trained_runs / "data"))
    train(config, tmp_path / "run", progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "run" / f".checkpoint.pt.tmp-{dead.pid}"
    stale.write_bytes(b"half a checkpoint")
    train(TrainConfig(**{**config.to_dict(), "steps": 3, "adam_betas": (0.9, 0.999),
                         "discriminator_adam_betas": (0.5, 0.9)}), tmp_path / "run",
          progress=False)
    assert not stale.exists()


def test_a_checkpoint_that_would_run_code_is_refused_without_advice_to_allow_it(tmp_path):
    import torch

    from fastdis.train import load_checkpoint

    marker = tmp_path / "ran"
    torch.save({"format": "x", "payload": RunsCode(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint.pt is corrupt") as error:
        load_checkpoint(tmp_path)
    assert "weights_only" not in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


class RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_resumed_run_accepts_its_data_folder_however_spelled(trained_runs, tmp_path,
                                                               monkeypatch):
    from fastdis.train import TrainConfig, train

    data = trained_runs / "data"
    run = tmp_path / "run"

    def resume(steps, data_dir):
        train(TrainConfig(steps=steps, batch_size=8, checkpoint_every=1, data_dir=data_dir),
              run, progress=False)

    resume(1, str(data))
    monkeypatch.chdir(trained_runs / "runs")
    resume(2, "../data")  # relative, from another working directory
    monkeypatch.setenv("FASTDIS_DATA", str(data))
    resume(3, None)  # through $FASTDIS_DATA
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    resume(4, str(copy))  # the same files elsewhere
    other = tmp_path / "other"
    shutil.copytree(data, other)
    npz = next(other.rglob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:-1] + bytes([npz.read_bytes()[-1] ^ 1]))
    with pytest.raises(ValueError, match="data_dir"):
        resume(5, str(other))  # other data under the same file name


# -- data files -------------------------------------------------------------------------------


def write_dsprites(folder, metadata):
    from fastdis.data._files import write_npz_stored
    from fastdis.data.dsprites import DSPRITES_FILE

    sizes = [1, 3, 2, 2, 2, 2]
    path = folder / DSPRITES_FILE
    write_npz_stored(path, {"imgs": np.zeros((int(np.prod(sizes)), 64, 64), np.uint8),
                            "metadata": np.array(metadata, dtype=object)})
    return path


def test_a_data_file_whose_pickle_would_run_code_is_refused(tmp_path):
    from fastdis.data import load_dataset

    marker = tmp_path / "ran"
    path = write_dsprites(tmp_path, {"latents_sizes": RunsCode(marker)})
    with pytest.raises(ValueError, match=f"{path}: .*refused: a data file must not run code"):
        load_dataset("dsprites_full", data_dir=tmp_path)
    listed = CliRunner().invoke(app, ["data", "list", "--data-dir", str(tmp_path)],
                                env={"COLUMNS": "400"})
    assert listed.exit_code == 0 and "refused" in listed.stdout
    assert not marker.exists()
    write_dsprites(tmp_path, {"latents_sizes": np.array([1, 3, 2, 2, 2, 2]), "title": "ok"})
    assert load_dataset("dsprites_full", data_dir=tmp_path).factors_num_values == [3, 2, 2, 2, 2]


def test_data_list_checks_the_files_it_lists(tmp_path):
    from fastdis.data import make_dsprites

    path = make_dsprites(tmp_path, small=True)
    Path(path).write_bytes(Path(path).read_bytes()[:-1000])
    listed = CliRunner().invoke(app, ["data", "list", "--data-dir", str(tmp_path)],
                                env={"COLUMNS": "400"})
    row = next(line for line in listed.stdout.splitlines() if "dsprites_full" in line)
    assert "unusable" in row and "yes" not in row
    unchecked = CliRunner().invoke(app, ["data", "list", "--data-dir", str(tmp_path),
                                         "--no-check"], env={"COLUMNS": "400"})
    assert "present (not checked)" in unchecked.stdout


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused_before_anything_is_created(trained_runs, tmp_path):
    runner = CliRunner()
    train = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--device", "cuda",
                                "--data-dir", str(trained_runs / "data"), "--steps", "1"])
    sweep = runner.invoke(app, ["sweep", "--models", "0", "--out", str(tmp_path / "sweep"),
                                "--device", "cuda:1"])
    encode = runner.invoke(app, [*encode_command(trained_runs, tmp_path / "reps.zarr"),
                                 "--device", "cuda"])
    for result in (train, sweep, encode):
        assert_message_not_traceback(result)
        assert "no cuda device is available" in result.output, result.output
    assert not any(tmp_path.iterdir())


def assert_message_not_traceback(result):
    """A command that failed on a user error: a message and a non-zero exit, no exception."""
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exception


def test_train_into_a_file_is_a_message_not_a_traceback(trained_runs, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "a-file"), "--data-dir",
                                      str(trained_runs / "data"), "--steps", "1",
                                      "--no-progress"])
    assert_message_not_traceback(result)
    assert "a-file" in result.output


def test_train_help_reads_well_at_80_columns():
    import inspect

    from fastdis.train.cli import train

    for width in (80, 200):
        result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": str(width)},
                                    terminal_width=width)
        assert result.exit_code == 0 and "…" not in result.output
        assert max(map(len, result.output.splitlines())) <= width
        for name in inspect.signature(train).parameters:
            assert f"--{name.replace('_', '-')}" in result.output, (width, name)
        text = " ".join(result.output.split())
        assert "config.json and log.jsonl (one line per logging step)." in text
        assert "log.jsonl (one\n" not in result.output
