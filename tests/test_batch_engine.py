"""fastdis.batch: scoring a store (local processes, Dask, resume after kill -9), the report."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from batch_crash_helpers import kill_at_first_journal_part
from test_batch_plan_store import codes_of, small_plan
from typer.testing import CliRunner

from fastdis.batch import open_store, read_scores, score_store, to_wide, write_codes
from fastdis.batch.store import checkpoint_key, seal_checkpoint
from fastdis.cli import app

SCORED = ["factor_vae_metric", "mig", "sap_score", "unsupervised"]


def make_store(path, metrics=SCORED, kinds=("disentangled", "entangled", "noise"), seeds=(0,),
               broken=True):
    """Checkpoints named "<kind>-<seed>" with mean and sampled codes, plus broken ones."""
    plan = small_plan(metrics)
    for index, kind in enumerate(kinds):
        for seed in seeds:
            mean = codes_of(plan, kind, seed=seed)
            write_codes(path, f"{kind}-{seed}", {"mean": mean, "sampled": mean + 0.1},
                        {"method": kind, "hyper": {"beta": float(index)}, "seed": seed},
                        plan=plan)
    if broken:
        nan_codes = codes_of(plan, "noise")
        nan_codes[7, 1] = np.nan
        write_codes(path, "diverged", {"mean": nan_codes}, {"method": "noise", "seed": 9})
        write_codes(path, "truncated", {"mean": codes_of(plan, "noise")}, {"method": "noise"})
        import zarr

        # Codes of the wrong shape, as a store written by another tool could hold them (with
        # checksums of what it wrote).
        group = zarr.open_group(path / "checkpoints" / checkpoint_key("truncated"), mode="a")
        group.create_array(name="mean", data=codes_of(plan, "noise")[:-5], overwrite=True)
        seal_checkpoint(group)
    return plan


def test_local_processes_score_every_task_as_the_plan_does_and_record_failures(tmp_path):
    plan = make_store(tmp_path / "reps.zarr")
    out = tmp_path / "scores.parquet"
    table = score_store(tmp_path / "reps.zarr", out, workers=2)

    ok = table[table["error"].isna()]
    store = open_store(tmp_path / "reps.zarr")
    for (name, representation, metric), rows in ok.groupby(["checkpoint", "representation",
                                                            "metric"]):
        expected = plan.score(metric, store.codes(name, representation))
        assert dict(zip(rows["key"], rows["value"], strict=True)) == expected
    assert len(ok.groupby(["checkpoint", "representation", "metric"])) == 3 * 2 * len(SCORED)

    failed = table[table["error"].notna()].set_index(["checkpoint", "metric"])["error"]
    assert len(failed) == 2 * len(SCORED) and failed.index.is_unique
    assert "non-finite value(s) (NaN first at row 7, column 1)" in failed["diverged", "mig"]
    assert "have 745 rows but the evaluation plan has 750 points" in failed["truncated", "mig"]

    # The configs became columns; the table on disk is the returned one.
    assert set(table.loc[table["checkpoint"] == "entangled-0", "train_config.hyper.beta"]) == {1}
    on_disk = pd.read_parquet(out)
    pd.testing.assert_frame_equal(on_disk.reset_index(drop=True), table.reset_index(drop=True),
                                  check_dtype=False)
    wide = to_wide(table)
    row = wide[(wide["checkpoint"] == "disentangled-0")
               & (wide["evaluation_config.evaluation.name"] == "mig")
               & (wide["postprocess_config.postprocess.name"] == "mean")]
    assert row["evaluation_results.discrete_mig"].item() == plan.score(
        "mig", store.codes("disentangled-0"))["discrete_mig"]

    # Nothing left to do: a rerun recomputes nothing (task timings would change otherwise).
    again = score_store(tmp_path / "reps.zarr", out, workers=2)
    pd.testing.assert_frame_equal(again, table, check_dtype=False)

    # A re-encoded checkpoint is scored again; its old scores are dropped as stale.
    write_codes(tmp_path / "reps.zarr", "noise-0", {"mean": codes_of(plan, "disentangled")},
                {"method": "noise"}, replace=True)
    table = score_store(tmp_path / "reps.zarr", out, metrics="mig", scheduler="synchronous")
    rows = table[(table["checkpoint"] == "noise-0")]
    assert set(rows["metric"]) == {"mig"} and set(rows["representation"]) == {"mean"}
    assert rows["value"].item() == plan.score("mig", codes_of(plan, "disentangled"))[
        "discrete_mig"]


def test_a_killed_run_resumes_computing_only_what_is_missing(tmp_path):
    metric = "modularity_explicitness"  # ~30 ms a task: 60 tasks leave time to interrupt
    n_checkpoints = 60
    plan = make_store(tmp_path / "reps.zarr", [metric], kinds=("entangled",),
                      seeds=range(n_checkpoints), broken=False)
    out = tmp_path / "scores.parquet"
    script = ("from fastdis.batch import score_store\n"
              f"score_store({str(tmp_path / 'reps.zarr')!r}, {str(out)!r}, "
              "representations=['mean'], scheduler='synchronous')\n")
    written = pd.concat(kill_at_first_journal_part(script, out, timeout=120))
    journal = out / ".journal"
    done_before = set(written["checkpoint"])
    assert 0 < len(done_before) < n_checkpoints and not (out / "scores.parquet").exists()

    table = score_store(tmp_path / "reps.zarr", out, representations=["mean"],
                        scheduler="synchronous")
    assert sorted(table["checkpoint"].unique()) == sorted(f"entangled-{s}"
                                                          for s in range(n_checkpoints))
    assert not table.duplicated(["checkpoint", "representation", "metric", "key"]).any()
    # What was journaled before the kill was kept, not recomputed (same task timings).
    kept = table[table["checkpoint"].isin(done_before)]
    assert sorted(kept["elapsed_time"].unique()) == sorted(written["elapsed_time"].unique())
    store = open_store(tmp_path / "reps.zarr")
    for name, rows in table.groupby("checkpoint"):
        expected = plan.score(metric, store.codes(name))
        assert dict(zip(rows["key"], rows["value"], strict=True)) == expected
    assert not list(journal.glob("*.parquet"))  # merged, then removed


def test_dask_cluster_gives_the_local_numbers_bit_for_bit(tmp_path):
    distributed = pytest.importorskip("distributed")
    make_store(tmp_path / "reps.zarr", broken=False, kinds=("disentangled", "entangled"))
    local = score_store(tmp_path / "reps.zarr", tmp_path / "local", scheduler="synchronous")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = score_store(tmp_path / "reps.zarr", tmp_path / "dask",
                             scheduler=cluster.scheduler_address)
    columns = ["checkpoint", "representation", "metric", "key"]
    local = local.sort_values(columns).reset_index(drop=True)
    remote = remote.sort_values(columns).reset_index(drop=True)
    assert len(local) == len(remote) > 0
    assert np.array_equal(local["value"].to_numpy(), remote["value"].to_numpy())
    assert (local[columns] == remote[columns]).all().all()


def test_cli_scores_with_boosted_trees_and_writes_a_report(tmp_path):
    store = tmp_path / "reps.zarr"
    make_store(store, ["mig", "dci"], seeds=(0, 1))
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(store), "--out", str(tmp_path / "scores"),
                                 "--metrics", "study", "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "not serve ['beta_vae_sklearn'" in result.output
    # "all" is every registered metric, more than this plan serves; "plan" what it serves.
    result = runner.invoke(app, ["score", str(store), "--out", str(tmp_path / "scores"),
                                 "--metrics", "all", "--scheduler", "synchronous"])
    assert result.exit_code == 1 and "--metrics plan" in " ".join(result.output.split())
    assert not (tmp_path / "scores" / "scores.parquet").exists()  # refused before scoring
    result = runner.invoke(app, ["score", str(store), "--out", str(tmp_path / "scores"),
                                 "--metrics", "plan", "--scheduler", "synchronous"])
    assert result.exit_code == 1, result.output  # evaluations failed: scripts can tell
    assert "4 failed evaluations" in result.output
    scores = read_scores(tmp_path / "scores")
    dci = scores[(scores["metric"] == "dci") & scores["error"].isna()]
    assert set(dci["key"]) >= {"disentanglement", "completeness", "informativeness_test"}
    assert (dci.groupby("checkpoint").size() > 0).sum() == 6

    result = runner.invoke(app, ["report", str(tmp_path / "scores"), "--out",
                                 str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.md").read_text()
    assert "![rank correlation](rank_correlation.png)" in page
    for name in ("rank_correlation.png", "violins_mig.png", "violins_dci.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
    assert "| mig | discrete_mig | entangled (beta=1) |" not in page  # beta is constant per
    assert "| mig | discrete_mig | entangled |" in page  # method here, so not part of a setting
    assert "non-finite value(s)" in page

    result = runner.invoke(app, ["score", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 1 and "not a representation store" in " ".join(
        result.output.split())


def test_report_of_a_single_model_explains_what_it_cannot_draw(tmp_path):
    make_store(tmp_path / "reps.zarr", ["mig"], kinds=("entangled",), broken=False)
    scores = score_store(tmp_path / "reps.zarr", tmp_path / "scores", scheduler="synchronous",
                         representations=["mean"])
    from fastdis.batch import write_report

    page = write_report(scores, tmp_path / "report").read_text()
    assert "Not drawn: 1 model(s)" in page
    assert "| mig | discrete_mig | entangled |" in page and "None." in page
    assert (tmp_path / "report" / "violins_mig.png").is_file()


# -- review fixes ----------------------------------------------------------------------------


def test_a_table_written_before_the_warnings_column_still_resumes(tmp_path):
    make_store(tmp_path / "reps.zarr", ["mig"], kinds=("entangled",), broken=False)
    out = tmp_path / "scores"
    table = score_store(tmp_path / "reps.zarr", out, scheduler="synchronous")
    table.drop(columns="warnings").to_parquet(out / "scores.parquet", index=False)
    assert "warnings" in read_scores(out).columns
    again = score_store(tmp_path / "reps.zarr", out, scheduler="synchronous")  # nothing to do
    assert again["warnings"].isna().all() and len(again) == len(table)
    assert again["elapsed_time"].equals(table["elapsed_time"])


def test_bad_workers_metrics_and_representations_are_refused_by_name(tmp_path):
    make_store(tmp_path / "reps.zarr", ["mig"], kinds=("entangled",), broken=False)
    out = tmp_path / "scores"
    for workers in (0, -1, 2.5):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            score_store(tmp_path / "reps.zarr", out, workers=workers)
    with pytest.raises(ValueError, match="metrics is empty"):
        score_store(tmp_path / "reps.zarr", out, metrics=" , ")
    # An unknown name lists what this store's plan can score, not the whole registry.
    with pytest.raises(ValueError, match=r"unknown metric 'nope'.*\['mig'\]") as error:
        score_store(tmp_path / "reps.zarr", out, metrics="mig,nope")
    assert "fairness" not in str(error.value)
    with pytest.raises(ValueError, match=r"no representation 'logvar'.*\['mean', 'sampled'\]"):
        score_store(tmp_path / "reps.zarr", out, representations=["mean", "logvar"])
    assert not (out / "scores.parquet").exists()

    runner = CliRunner()
    result = runner.invoke(app, ["score", str(tmp_path / "reps.zarr"), "--out", str(out),
                                 "--workers", "0"])
    assert result.exit_code == 1 and "workers must be an integer >= 1" in result.output
    result = runner.invoke(app, ["score", str(tmp_path / "reps.zarr"), "--out", str(out),
                                 "--metrics", "mig,nope"])
    assert result.exit_code == 1 and "unknown metric 'nope'" in result.output


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    make_store(tmp_path / "reps.zarr", ["mig"], kinds=("entangled",), broken=False)
    out = tmp_path / "scores"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # what a running `fastdis score` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="another fastdis score is writing"):
            score_store(tmp_path / "reps.zarr", out, scheduler="synchronous")
        result = CliRunner().invoke(app, ["score", str(tmp_path / "reps.zarr"), "--out",
                                          str(out), "--scheduler", "synchronous"])
        assert result.exit_code == 1 and "another fastdis score" in result.output
    assert not (out / "scores.parquet").exists()
    table = score_store(tmp_path / "reps.zarr", out, scheduler="synchronous")  # released
    assert table["error"].isna().all() and len(table) == 2


def test_a_task_whose_checkpoint_was_re_encoded_meanwhile_is_not_mislabelled(tmp_path):
    from fastdis.batch.engine import ScoreTask, score_task

    plan = make_store(tmp_path / "reps.zarr", ["mig"], kinds=("entangled",), broken=False)
    old_id = open_store(tmp_path / "reps.zarr").checkpoints()["entangled-0"]["encoding_id"]
    write_codes(tmp_path / "reps.zarr", "entangled-0", {"mean": codes_of(plan, "disentangled")},
                {}, replace=True)
    rows = score_task(str(tmp_path / "reps.zarr"), ScoreTask("entangled-0", "mean", "mig", old_id))
    assert len(rows) == 1 and rows[0]["encoding_id"] == old_id
    assert "re-encoded" in rows[0]["error"]


def test_scores_of_checkpoints_no_longer_in_the_store_keep_their_config(tmp_path):
    make_store(tmp_path / "a.zarr", ["mig"], kinds=("entangled",), broken=False)
    make_store(tmp_path / "b.zarr", ["mig"], kinds=("noise",), broken=False)
    out = tmp_path / "scores"
    score_store(tmp_path / "a.zarr", out, scheduler="synchronous")
    table = score_store(tmp_path / "b.zarr", out, scheduler="synchronous")
    assert set(table["train_config.method"]) == {"entangled", "noise"}
    assert table["train_config.seed"].notna().all()


def test_help_imports_none_of_the_heavy_dependencies():
    code = ("import sys; from typer.testing import CliRunner; from fastdis.cli import app\n"
            "for argv in (['--help'], ['encode', '--help'], ['score', '--help'], "
            "['report', '--help']):\n"
            "    assert CliRunner().invoke(app, argv).exit_code == 0, argv\n"
            "print(sorted(m for m in ('torch', 'zarr', 'dask', 'distributed', 'pandas', "
            "'pyarrow', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_figures_stay_readable_with_many_result_keys(tmp_path):
    import matplotlib.image

    from fastdis.batch import write_report
    from fastdis.batch.engine import RESULT_COLUMNS
    from fastdis.batch.report import summary_keys

    # unified_scores-like keys: per-code details are not summary scores.
    keys = [f"matrix_{m}.{s}" for m in range(3) for s in ("dci", "mig", "sap", "modularity")]
    keys += [f"matrix_0.dci_disentanglement.code_{c}" for c in range(10)]
    assert summary_keys(keys) == keys[:12]
    rng = np.random.default_rng(0)
    rows = [[f"m{i}", "mean", "unified_scores", key, rng.uniform(), None, None, 1.0, "id"]
            for i in range(6) for key in keys]
    # Metrics with headline scores, which the rank correlation is drawn on.
    rows += [[f"m{i}", "mean", metric, key, rng.uniform(), None, None, 1.0, "id"]
             for i in range(6) for metric, key in (("mig", "discrete_mig"),
                                                   ("sap_score", "SAP_score"),
                                                   ("dci", "disentanglement"))]
    rows.append(["m9", "mean", "unified_scores", None, np.nan, "ValueError: diverged", None, 1.0,
                 "id"])
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table["train_config.method"] = ["a", "b", "c"] * (len(table) // 3) + ["a"] * (len(table) % 3)
    write_report(table, tmp_path / "report")
    height, width = matplotlib.image.imread(tmp_path / "report" / "violins_unified_scores.png"
                                            ).shape[:2]
    assert width <= 2000 and height <= 1500, (width, height)  # panels wrap into rows
    height, width = matplotlib.image.imread(tmp_path / "report" / "rank_correlation.png"
                                            ).shape[:2]
    assert width <= 2000, width
    page = (tmp_path / "report" / "index.md").read_text()
    assert "code_3" not in page
    assert "![rank correlation](rank_correlation.png)" in page

    with pytest.raises(ValueError, match="1 failed.*ValueError: diverged"):
        write_report(table[table["error"].notna()], tmp_path / "failed")


def test_a_task_that_kills_its_worker_is_recorded_and_the_batch_goes_on(tmp_path):
    # An out-of-memory kill or a segfault breaks the whole process pool; the engine reruns the
    # suspects alone, records the one that dies again, and scores everything else once.
    from batch_crash_helpers import CRASHING_CHECKPOINT, score_task_or_die

    from fastdis.batch.engine import ScoreTask, score_task
    from fastdis.batch.executors import WORKER_DIED, run_local

    plan = make_store(tmp_path / "reps.zarr", metrics=["mig", "sap_score"], broken=False)
    write_codes(tmp_path / "reps.zarr", CRASHING_CHECKPOINT,
                {"mean": codes_of(plan, "noise")}, {"method": "noise"})
    store = open_store(tmp_path / "reps.zarr")
    tasks = [ScoreTask(name, representation, metric, entry["encoding_id"])
             for name, entry in store.checkpoints().items()
             for representation in entry["representations"] for metric in ("mig", "sap_score")]
    recorded = []
    run_local(str(tmp_path / "reps.zarr"), tasks, 2, recorded.append,
              task_function=score_task_or_die)

    by_task = {}
    for rows in recorded:
        row = rows[0]
        by_task.setdefault((row["checkpoint"], row["representation"], row["metric"]), []).append(
            rows)
    assert len(by_task) == len(tasks)
    for (name, representation, metric), results in by_task.items():
        if name == CRASHING_CHECKPOINT:
            assert [rows[0]["error"] for rows in results] == [WORKER_DIED]
            continue
        task = next(t for t in tasks if (t.checkpoint, t.representation, t.metric)
                    == (name, representation, metric))
        expected = {row["key"]: row["value"] for row in score_task(str(tmp_path / "reps.zarr"),
                                                                    task)}
        for rows in results:  # a task rerun after the break gives the same numbers
            assert {row["key"]: row["value"] for row in rows} == expected


def test_importing_the_batch_commands_does_not_import_the_metrics():
    # fastdis --help imports fastdis.batch.cli; numba, scipy and the metrics load on first use.
    code = "import sys, fastdis.batch.cli; print('fastdis.metrics' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_workers_that_cannot_start_raise_instead_of_blaming_every_task(tmp_path):
    # A script without a __main__ guard re-runs itself in every spawned worker, which dies:
    # no checkpoint is at fault, so scoring stops with the fix instead of recording failures.
    make_store(tmp_path / "reps.zarr", metrics=["mig"], broken=False)
    script = tmp_path / "unguarded.py"
    script.write_text("from fastdis.batch import score_store\n"
                      f"score_store({str(tmp_path / 'reps.zarr')!r}, "
                      f"{str(tmp_path / 'scores.parquet')!r}, workers=1)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0
    assert "RuntimeError: scoring worker processes cannot start" in run.stderr
    assert 'if __name__ == "__main__":' in run.stderr
    assert not (tmp_path / "scores.parquet" / "scores.parquet").exists() or read_scores(
        tmp_path / "scores.parquet")["error"].isna().all()


def test_on_dask_a_task_that_kills_its_workers_is_recorded_and_the_batch_goes_on(tmp_path):
    import dask
    from batch_crash_helpers import CRASHING_CHECKPOINT, score_task_or_die
    from distributed import Client, LocalCluster

    from fastdis.batch.engine import ScoreTask
    from fastdis.batch.executors import WORKER_DIED, run_dask

    plan = make_store(tmp_path / "reps.zarr", metrics=["mig"], kinds=("noise",), broken=False)
    write_codes(tmp_path / "reps.zarr", CRASHING_CHECKPOINT,
                {"mean": codes_of(plan, "noise")}, {"method": "noise"})
    store = open_store(tmp_path / "reps.zarr")
    tasks = [ScoreTask(name, "mean", "mig", entry["encoding_id"])
             for name, entry in store.checkpoints().items()]
    recorded = []
    # The scheduler gives up on a task after it killed `allowed-failures` + 1 workers; one task
    # in flight per worker thread on two workers, so the innocent task is not on the dying one.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            run_dask(str(tmp_path / "reps.zarr"), tasks, client, recorded.append,
                     task_function=score_task_or_die)
    errors = {rows[0]["checkpoint"]: rows[0]["error"] for rows in recorded}
    assert errors == {CRASHING_CHECKPOINT: WORKER_DIED, "noise-0": None}
