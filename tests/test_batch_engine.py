"""fastdis.batch: scoring a store (local processes, Dask, resume after kill -9), the report."""

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from test_batch_plan_store import codes_of, small_plan
from typer.testing import CliRunner

from fastdis.batch import open_store, read_scores, score_store, to_wide, write_codes
from fastdis.batch.store import checkpoint_key
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

        # Codes of the wrong shape, as a store written by another tool could hold them.
        group = zarr.open_group(path / "checkpoints" / checkpoint_key("truncated"), mode="a")
        group.create_array(name="mean", data=codes_of(plan, "noise")[:-5], overwrite=True)
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
    process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", script])
    journal = out / ".journal"
    deadline = time.monotonic() + 120
    while not (journal.is_dir() and any(journal.glob("*.parquet"))):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()  # SIGKILL: no cleanup runs
    assert process.wait() == -9
    written = pd.concat([pd.read_parquet(p) for p in journal.glob("*.parquet")])
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
    assert result.exit_code == 1 and "not 'beta_vae_sklearn'" in result.output
    result = runner.invoke(app, ["score", str(store), "--out", str(tmp_path / "scores"),
                                 "--metrics", "all", "--scheduler", "synchronous"])
    assert result.exit_code == 0, result.output
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
