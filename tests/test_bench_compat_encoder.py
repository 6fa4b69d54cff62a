"""bench_compat_encoder: its sample sizes, and its side-by-side calls beyond the study."""

import sys

import numpy as np
from fastdis.bench._table import load_reference
from fastdis.bench.bench_compat_encoder import (
    bench_arguments,
    cheap_representation,
    describe_sizes,
)
from fastdis.bench.bench_metrics import gin_call, max_abs_delta, reference_module


def test_floors_raise_only_the_scaled_sizes_that_cannot_score():
    # 5-fold cross-validation needs 5 training points: the scaled 2 becomes the study's 10
    downstream = bench_arguments("downstream_task_logistic_regression", 0.01)
    assert downstream["num_train"] == [10, 100] and downstream["num_test"] == 50
    assert bench_arguments("downstream_task_logistic_regression", 1.0)["num_train"] == [
        10, 100, 1_000, 10_000]
    explicitness = bench_arguments("modularity_explicitness", 0.01)
    assert (explicitness["num_train"], explicitness["num_test"]) == (1_000, 500)
    assert bench_arguments("modularity_explicitness", 0.5)["num_train"] == 5_000
    assert bench_arguments("mig", 0.01) == {"num_train": 100}
    strong = bench_arguments("strong_downstream_task", 0.01)
    assert describe_sizes(strong) == "num_train=[60] num_test=40"
    assert strong["n_experiment"] == 2  # not a sample size: never scaled
    assert bench_arguments("reduced_downstream_task", 0.01)["num_factors_to_remove"] == 1


def test_unified_scores_run_alike_on_both_sides_without_the_plotting_stack():
    assert load_reference() is not None, (
        "the oracle disentanglement-lib==1.5 is not installed (the README's test command "
        "installs it)")
    before = set(sys.modules)
    unified = reference_module("unified_scores")
    # the stand-ins for TensorFlow, seaborn and simplejson do not outlive the import
    assert not {"seaborn", "simplejson", "tensorflow"} & (set(sys.modules) - before)
    data, rep = cheap_representation()
    kwargs = {"num_train": 200, "num_test": 100,
              "matrix_fns": [unified.mutual_information_matrix]}
    reference, _ = gin_call("unified_scores", data, rep, kwargs)
    fast, _ = gin_call("unified_scores", data, rep, kwargs, side="fastdis")
    assert sorted(fast) == sorted(reference)
    assert max_abs_delta(reference, fast) < 1e-12
    assert np.isfinite(max_abs_delta(reference, fast))
