"""`fastdis quickstart` end to end at toy size: data -> six trained methods -> store -> scores ->
report, and a second run that resumes instead of redoing anything."""

import pandas as pd
import pytest

from fastdis.metrics import METRICS
from fastdis.quickstart import run_quickstart
from fastdis.train import METHODS


def test_quickstart_runs_the_whole_pipeline_and_resumes(tmp_path):
    lines = []
    result = run_quickstart(tmp_path, steps=2, seeds=1, scale=0.01, workers=1, log=lines.append)

    assert len(result.runs) == len(METHODS)
    scores = pd.read_parquet(result.scores)
    assert set(scores["train_config.method"]) == set(METHODS)
    assert set(scores["representation"]) == {"mean", "sampled"}
    assert scores["error"].isna().all(), scores.loc[scores["error"].notna(), "error"].unique()
    assert {"mig", "dci", "factor_vae_metric"} <= set(scores["metric"])
    # Every registered metric but UDR, which needs two seeds of a method to compare.
    assert set(scores["metric"]) == set(METRICS) - {"udr"}
    assert any("but UDR" in line for line in lines)
    # Each method trains at a real regularisation strength (the study's third value), so no two
    # methods are the same model.
    methods = scores.drop_duplicates("checkpoint").set_index("train_config.method")
    assert methods.loc["beta_vae", "train_config.beta"] == 4.0
    assert methods.loc["beta_tc_vae", "train_config.beta"] == 4.0
    assert methods.loc["annealed_vae", "train_config.c_max"] == 25.0
    mean_mig = scores[(scores["key"] == "discrete_mig") & (scores["representation"] == "mean")]
    mig = mean_mig.set_index("train_config.method")["value"]
    assert mig["beta_vae"] != mig["beta_tc_vae"]
    assert (result.report / "index.md").exists()
    assert list(result.report.glob("*.png"))

    # Everything is in place: a rerun trains, encodes and scores nothing again.
    checkpoints = {run: (run / "checkpoint.pt").stat().st_mtime_ns for run in result.runs}
    lines.clear()
    run_quickstart(tmp_path, steps=2, seeds=1, scale=0.01, workers=1, log=lines.append)
    assert {run: (run / "checkpoint.pt").stat().st_mtime_ns for run in result.runs} == checkpoints
    assert pd.read_parquet(result.scores)["elapsed_time"].equals(scores["elapsed_time"])
    assert any("found the dSprites look-alike" in line for line in lines)


@pytest.mark.parametrize("option", [{"steps": 0}, {"seeds": 0},
                                    # not integers: used to escape as a bare TypeError
                                    {"steps": None}, {"seeds": "2"}])
def test_quickstart_refuses_non_positive_sizes(tmp_path, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        run_quickstart(tmp_path, log=lambda line: None, **option)


@pytest.mark.slow
def test_quickstart_with_two_seeds_scores_every_registered_metric_udr_across_seeds(tmp_path):
    result = run_quickstart(tmp_path, steps=2, seeds=2, scale=0.01, workers=2,
                            log=lambda line: None)
    scores = pd.read_parquet(result.scores)
    assert scores["error"].isna().all(), scores.loc[scores["error"].notna(), "error"].unique()
    assert set(scores["metric"]) == set(METRICS)
    udr = scores[scores["metric"] == "udr"]
    assert set(udr["checkpoint"]) == set(scores["checkpoint"])  # all 12, in 6 settings of 2
    assert (udr.loc[udr["key"] == "num_models", "value"] == 2).all()
    scores_of = udr[udr["key"] == "model_score"].groupby("train_config.method")["value"]
    assert scores_of.count().to_dict() == {method: 4 for method in METHODS}  # 2 seeds x 2 reps
