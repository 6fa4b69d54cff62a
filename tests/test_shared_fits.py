"""Fits shared between metrics (fastdis.metrics.shared_fits): alone == shared, bit for bit."""

import contextlib

import numpy as np
import pytest

import fastdis.metrics as metrics_module
from fastdis.metrics import fit_seeds, get_metric, shared_fits

FACTOR_SIZES = (3, 4, 5)
#: The metrics that fit DCI's boosted trees (same rows, same seeds: the same classifiers).
BOOSTED = ("dci", "downstream_task_boosted_trees", "unified_scores")


def _data(seed=0, n_train=120, n_test=60):
    rs = np.random.RandomState(seed)
    factors = np.stack([rs.randint(s, size=n_train + n_test) for s in FACTOR_SIZES], axis=1)
    codes = factors + 0.3 * rs.randn(*factors.shape)
    codes = np.concatenate([codes, rs.randn(len(codes), 1)], axis=1)
    # A duplicated, rounded code: tied splits, so the seeds matter.
    codes = np.concatenate([codes, codes[:, :1]], axis=1).round(1)
    return codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]


def _boosted_fits(memo):
    return [key for key in memo if key[1] == "fit_gbt"]


def _score(name, arguments, seeds):
    return get_metric(name)(*arguments, random_state=seeds)


@pytest.mark.parametrize("first", BOOSTED)
@pytest.mark.parametrize("second", BOOSTED)
def test_metric_scored_with_shared_fits_equals_it_scored_alone(first, second):
    arguments = _data()
    seeds = fit_seeds(0, len(arguments[0]), len(FACTOR_SIZES), "gradient_boosting")
    alone = _score(second, arguments, seeds)
    with shared_fits() as memo:
        _score(first, arguments, seeds)
        shared = _score(second, arguments, seeds)
    assert shared == alone
    assert len(_boosted_fits(memo)) == 1  # the second metric reused the first one's trees


def test_shared_fits_keys_on_content_and_seed():
    arguments = _data()
    seeds = fit_seeds(0, len(arguments[0]), len(FACTOR_SIZES), "gradient_boosting")
    other_codes = (arguments[0] + 1.0,) + arguments[1:]
    with shared_fits() as memo:
        _score("dci", arguments, seeds)
        _score("dci", other_codes, seeds)
        _score("dci", arguments, seeds[::-1])
        _score("dci", arguments, 0)
    assert len(_boosted_fits(memo)) == 4


def test_stateful_rngs_are_not_shared():
    arguments = _data()
    with shared_fits() as memo:
        _score("dci", arguments, np.random.RandomState(0))
        _score("downstream_task_boosted_trees", arguments, [np.random.RandomState(0)] * 3)
        _score("unified_scores", arguments, None)
    assert _boosted_fits(memo) == []


def test_nothing_is_kept_outside_shared_fits():
    arguments = _data()
    with shared_fits() as memo:
        with shared_fits() as inner:  # re-entrant: the outer memo
            _score("dci", arguments, 0)
        assert inner is memo and len(memo) == 1
    assert len(memo) == 1
    _score("dci", arguments, 0)
    with shared_fits() as fresh:
        pass
    assert fresh == {}


def test_fit_seeds_depend_on_rows_factor_and_estimator():
    seeds = fit_seeds(0, 120, 3, "gradient_boosting")
    assert len(set(seeds)) == 3
    assert seeds == fit_seeds(0, 120, 3, "gradient_boosting")
    assert seeds[:2] == fit_seeds(0, 120, 2, "gradient_boosting")
    assert seeds != fit_seeds(0, 121, 3, "gradient_boosting")
    assert seeds != fit_seeds(1, 120, 3, "gradient_boosting")
    assert seeds != fit_seeds(0, 120, 3, "logistic_regression_cv")


def test_seeds_change_tied_trees():
    # Guards the sharing tests: with these codes the seeds do decide something.
    arguments = _data()
    scores = [_score("dci", arguments, fit_seeds(s, 120, 3, "gradient_boosting"))
              for s in range(4)]
    assert any(s != scores[0] for s in scores[1:])


def test_downstream_random_state_errors():
    arguments = _data()
    with pytest.raises(ValueError, match="one per factor"):
        _score("downstream_task_boosted_trees", arguments, [1, 2])


def test_engine_scores_fit_sharing_metrics_in_one_bundle_as_each_alone(tmp_path, monkeypatch):
    from test_batch_plan_store import codes_of, small_plan

    from fastdis.batch import engine, open_store, score_store, write_codes

    metrics = ["mig", "dci", "downstream_task_boosted_trees", "sap_score", "unified_scores"]
    plan = small_plan(metrics)
    for kind in ("disentangled", "entangled"):
        write_codes(tmp_path / "reps.zarr", kind, {"mean": codes_of(plan, kind)}, {}, plan=plan)
    listed = engine._listed_tasks(open_store(tmp_path / "reps.zarr").checkpoints(), metrics,
                                  None)
    bundles = [[task.metric for task in b.tasks] for b in engine.bundle_tasks(listed)]
    sharing = ["mig", "dci", "downstream_task_boosted_trees", "unified_scores"]
    assert bundles == [sharing, ["sap_score"]] * 2
    memos = []
    original = metrics_module.shared_fits

    @contextlib.contextmanager
    def recorded():
        with original() as memo:
            yield memo
        memos.append(len(memo))

    monkeypatch.setattr(metrics_module, "shared_fits", recorded)
    table = score_store(tmp_path / "reps.zarr", tmp_path / "scores", scheduler="synchronous")
    store = open_store(tmp_path / "reps.zarr")
    assert table["error"].isna().all()
    # Per bundle: the downstream sizes' fits, one of them (DCI's size) shared by all three, and
    # one histogram and MI matrix (MIG's and unified scores').
    n_sizes = len(plan.sizes["downstream_task_boosted_trees"]["num_train"])
    assert memos == [n_sizes + 2, 0] * 2
    for (name, metric), rows in table.groupby(["checkpoint", "metric"]):
        alone = plan.score(metric, store.codes(name))
        assert dict(zip(rows["key"], rows["value"], strict=True)) == alone, metric


#: Metrics that discretise the same codes and take their MI with the same factors (and the
#: boosted-tree ones, which share with unified scores).
HISTOGRAM = ("mig", "modularity_explicitness", "unified_scores", "mig_sup", "jemmig", "dcimig",
             "infomec", "irs", "unsupervised", "dci")


def test_every_metric_scored_after_the_others_with_shared_fits_equals_it_alone():
    from test_batch_plan_store import codes_of, small_plan

    plan = small_plan(HISTOGRAM)
    codes = codes_of(plan, "entangled")
    alone = {name: plan.score(name, codes) for name in HISTOGRAM}
    # Forward then backward: each metric reads the shared results the others computed first.
    for order in (HISTOGRAM, HISTOGRAM[::-1]):
        with shared_fits():
            shared = {name: plan.score(name, codes) for name in order}
        assert shared == alone


def test_mig_and_modularity_discretise_once():
    from test_batch_plan_store import codes_of, small_plan

    plan = small_plan(["mig", "modularity_explicitness"])
    codes = codes_of(plan, "entangled")
    with shared_fits() as memo:
        plan.score("mig", codes)
        plan.score("modularity_explicitness", codes)
    computed = sorted(key[1] for key in memo)
    assert computed == ["histogram_discretize", "mutual_info_matrix"]


def test_shared_arrays_come_back_as_copies():
    codes = _data()[0]
    with shared_fits():
        binned = metrics_module.histogram_discretize(codes)
        expected = binned.copy()
        binned[:] = 0  # a caller modifying its array in place
        assert np.array_equal(metrics_module.histogram_discretize(codes), expected)
