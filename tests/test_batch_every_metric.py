"""fastdis.batch serves every registered metric: fairness and strong-downstream intervention
sets, the posterior grid, and UDR across the checkpoints of a setting (resumable, rescored
when a setting grows)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from batch_crash_helpers import kill_at_first_journal_part
from test_batch_plan_store import SMALL_FACTORS, codes_of, small_data

import fastdis.batch.engine as engine_module
import fastdis.batch.plan as plan_module
import fastdis.metrics._registry as registry
from fastdis.batch import make_plan, open_store, plannable_metrics, score_store, write_codes
from fastdis.batch.engine import ModelSetTask, resolve_metrics, setting_of
from fastdis.batch.plan import factor_grid
from fastdis.batch.results import failed_rows
from fastdis.batch.store import StoreError
from fastdis.demo import SyntheticFactors
from fastdis.metrics import METRICS, get_metric, intervene
from fastdis.metrics._downstream import Intervention

#: UDR compares models on this many points in these tests (the study's 1,000 at scale 0.1).
UDR_POINTS = {"udr": {"num_data_points": 100}}


def udr_store(path, settings=2, seeds=3, metrics=("udr", "unsupervised"), kl=True,
              representations=("mean",)):
    """``settings`` x ``seeds`` checkpoints "s<setting>-seed<seed>" with per-code KL."""
    plan = make_plan(small_data(), list(metrics), scale=0.05, sizes=UDR_POINTS)
    for setting in range(settings):
        for seed in range(seeds):
            write_seed(path, plan, setting, seed, kl=kl, representations=representations)
    return plan


def write_seed(path, plan, setting, seed, *, kl=True, representations=("mean",), **options):
    codes = codes_of(plan, "entangled", seed=100 * setting + seed)
    config = {"method": "beta_vae", "beta": float(setting + 1), "seed": seed,
              "path": f"/runs/s{setting}-seed{seed}"}
    kl_values = np.linspace(0.0, 2.0, codes.shape[1]) if kl else None
    write_codes(path, f"s{setting}-seed{seed}", {r: codes + i for i, r in
                                                  enumerate(representations)},
                config, plan=plan, kl=kl_values, **options)


def udr_rows(table):
    rows = table[table["metric"] == "udr"]
    return rows.set_index(["checkpoint", "representation", "key"])["value"].sort_index()


# -- the plan ---------------------------------------------------------------------------------


def test_a_default_plan_serves_every_registered_metric():
    assert plannable_metrics() == list(METRICS)
    plan = make_plan(small_data(), scale=0.02)
    assert plan.metrics == tuple(METRICS)
    again = plan_module.EvaluationPlan.from_metadata(*plan.to_metadata())
    assert again.same_as(plan) and again.groups.keys() == plan.groups.keys()
    # The pool and the BetaVAE/FactorVAE groups do not move when the new metrics join.
    before = ("codes", "codes_factors", "train_test", "downstream", "beta_vae_pairs",
              "factor_vae_groups")
    old = make_plan(small_data(), [m for m, spec in METRICS.items() if spec.inputs in before],
                    scale=0.02)
    assert np.array_equal(plan.factors[:old.n_points], old.factors)
    for name in ("beta_vae_sklearn", "factor_vae_metric"):
        for key, indices in old.groups[name].items():
            assert np.array_equal(plan.groups[name][key], indices)


def test_an_input_kind_no_plan_serves_is_refused_by_name(monkeypatch):
    spec = registry.MetricSpec("needs_video", "_mig:mig", "video_frames", "")
    specs = {**METRICS, "needs_video": spec}
    for module in (registry, plan_module):
        monkeypatch.setattr(module, "METRICS", specs)
    assert "needs_video" not in plan_module.plannable_metrics()
    with pytest.raises(ValueError, match="'video_frames' inputs"):
        make_plan(small_data(), ["needs_video"])


def test_fairness_sets_are_the_references_draws_as_indices_and_score_as_the_function():
    data = small_data()
    plan = make_plan(data, ["fairness"], scale=0.05)
    n_points = plan.sizes["fairness"]["num_test_points_per_class"]
    rs = plan_module._stream(plan.seed, "fairness")
    sets = plan.groups["fairness"]
    assert len(sets) == len(SMALL_FACTORS) * (len(SMALL_FACTORS) - 1)
    for i in range(len(SMALL_FACTORS)):
        for j in range(len(SMALL_FACTORS)):
            if i == j:
                continue
            # The reference samples n points once per (target, sensitive) pair, in this order,
            # and sets the sensitive factor to each of its values in turn.
            original = data.sample_factors(n_points, rs)
            indices = sets[f"pair_{i}_{j}"]
            assert indices.shape == (SMALL_FACTORS[j], n_points)
            for value in range(SMALL_FACTORS[j]):
                expected = original.copy()
                expected[:, j] = value
                assert np.array_equal(plan.factors[indices[value]], expected)

    codes = codes_of(plan, "disentangled")
    train = slice(0, plan.sizes["fairness"]["num_train"])
    intervention_codes = {tuple(map(int, key.split("_")[1:])): codes[indices]
                          for key, indices in sets.items()}
    expected = get_metric("fairness")(codes[train], plan.factors[train], intervention_codes)
    assert plan.score("fairness", codes) == expected


def test_strong_downstream_sets_are_interventions_on_the_plans_rows():
    data = small_data()
    plan = make_plan(data, ["strong_downstream_task"], scale=0.05)
    sizes = plan.sizes["strong_downstream_task"]
    (n_train,) = sizes["num_train"]
    sets = plan.groups["strong_downstream_task"]
    train_rows, test_rows = np.arange(n_train), plan.num_train + np.arange(sizes["num_test"])
    pool = plan.factors
    rs = plan_module._stream(plan.seed, "strong_downstream_task")
    assert list(sets[f"{n_train}_target"]) == [t for t in range(len(SMALL_FACTORS))
                                               for _ in range(sizes["n_experiment"])]
    for e, target in enumerate(sets[f"{n_train}_target"]):
        new_train, new_test, _, _ = intervene(pool[train_rows], pool[test_rows], target,
                                              SMALL_FACTORS, rs)
        train, test = sets[f"{n_train}_train"][e], sets[f"{n_train}_test"][e]
        assert np.array_equal(plan.factors[train], new_train)
        assert np.array_equal(plan.factors[test], new_test)
        # Rows the intervention left as they were are the pool's own points.
        unchanged = (new_train == pool[train_rows]).all(axis=1)
        assert np.array_equal(train[unchanged], train_rows[unchanged])
        assert (train[~unchanged] >= plan.num_train + plan.num_test).all()

    codes = codes_of(plan, "entangled")
    f = plan.factors
    interventions = [Intervention(int(t), codes[tr], f[tr], codes[te], f[te]) for t, tr, te in
                     zip(sets[f"{n_train}_target"], sets[f"{n_train}_train"],
                         sets[f"{n_train}_test"], strict=True)]
    expected = get_metric("strong_downstream_task")(
        codes[train_rows], f[train_rows], codes[test_rows], f[test_rows], interventions)
    assert plan.score("strong_downstream_task", codes) == expected


def test_a_data_set_with_a_one_valued_factor_cannot_plan_strong_downstream():
    with pytest.raises(ValueError, match="strong_downstream_task: factor .* Leave"):
        make_plan(SyntheticFactors((1, 4, 5)), ["strong_downstream_task"], scale=0.05)


@pytest.mark.parametrize("sizes, budget, kept", [
    ((3, 6, 8, 5), 10_000, (3, 6, 8, 5)),  # fits: the full grid, as Chen et al.
    ((3, 6, 40, 32, 32), 10_000, (3, 6, 8, 8, 8)),  # dSprites: a complete sub-grid
    ((1, 3, 4), 2, (1, 2, 2)),  # never below 2 values, even over the budget
])
def test_factor_grid_is_complete_and_evenly_spaced(sizes, budget, kept):
    grid = factor_grid(sizes, budget)
    values = [np.unique(grid[:, k]) for k in range(len(sizes))]
    assert tuple(len(v) for v in values) == kept
    assert len(grid) == np.prod(kept) == len(np.unique(grid, axis=0))  # each combination once
    for v, size in zip(values, sizes, strict=True):
        assert v[0] == 0 and v[-1] == size - 1  # the whole range, evenly spaced
        assert np.ptp(np.diff(v)) <= 1 if len(v) > 2 else True


def grid_probe(means, logvars, factors):
    """A posterior-grid metric for the tests: what it was given."""
    return {"rows": float(len(means)), "means": float(means.sum()),
            "logvars": float(logvars.sum()), "factors": float(factors.sum())}


class ProbeSpec(registry.MetricSpec):
    @property
    def function(self):
        return grid_probe


@pytest.fixture
def posterior_metric(monkeypatch):
    """A registered posterior-grid metric: the registry's own when it has one, else a probe."""
    existing = [name for name, spec in METRICS.items() if spec.inputs == "posterior_grid"]
    if existing:
        return existing[0]
    specs = {**METRICS, "grid_probe": ProbeSpec("grid_probe", "", "posterior_grid", "")}
    for module in (registry, plan_module, engine_module):
        monkeypatch.setattr(module, "METRICS", specs)
    return "grid_probe"


def test_the_posterior_grid_is_served_with_the_stored_log_variances(tmp_path, posterior_metric):
    plan = make_plan(small_data(), [posterior_metric, "mig"], scale=0.05,
                     sizes={posterior_metric: {"num_grid_points": 300}})
    grid = plan.groups[posterior_metric]["grid"]
    assert np.array_equal(plan.factors[grid], factor_grid(SMALL_FACTORS, 300))
    assert len(grid) <= 300 and (grid >= plan.num_train + plan.num_test).all()
    path = tmp_path / "reps.zarr"
    mean = codes_of(plan, "disentangled")
    logvar = -1.0 - np.abs(mean)
    write_codes(path, "with", {"mean": mean, "sampled": mean + 1}, {}, plan=plan, logvar=logvar)
    write_codes(path, "without", {"mean": mean}, {})
    table = score_store(path, tmp_path / "scores", scheduler="synchronous")

    rows = table[table["metric"] == posterior_metric]
    assert set(rows["representation"]) == {"mean"}  # posterior means only, never samples
    scored = rows[rows["checkpoint"] == "with"].set_index("key")["value"].to_dict()
    assert scored == plan.score(posterior_metric, mean, open_store(path).logvar("with"))
    if posterior_metric == "grid_probe":
        assert scored == grid_probe(mean[grid], logvar[grid].astype(np.float32),
                                    plan.factors[grid])
    (error,) = rows.loc[rows["checkpoint"] == "without", "error"]
    assert "needs the posterior log-variances" in error and "logvar=" in error


def test_write_codes_checks_kl_and_logvar_against_the_codes(tmp_path):
    plan = make_plan(small_data(), ["mig"], scale=0.05)
    mean = codes_of(plan, "noise")
    path = tmp_path / "reps.zarr"
    with pytest.raises(ValueError, match=r"kl must have shape \(n_codes,\).*\(2,\)"):
        write_codes(path, "a", {"mean": mean}, {}, plan=plan, kl=[1.0, 2.0])
    with pytest.raises(ValueError, match="logvar must have shape"):
        write_codes(path, "a", {"mean": mean}, {}, plan=plan, logvar=mean[:5])
    with pytest.raises(ValueError, match="logvar must have the shape of the 'mean' codes"):
        write_codes(path, "a", {"mean": mean}, {}, plan=plan, logvar=mean[:, :3])
    with pytest.raises(ValueError, match="log-variance of the 'mean' codes"):
        write_codes(path, "a", {"sampled": mean}, {}, plan=plan, logvar=mean)
    with pytest.raises(ValueError, match="'logvar' is reserved"):
        write_codes(path, "a", {"mean": mean, "logvar": mean}, {}, plan=plan)
    write_codes(path, "a", {"mean": mean}, {}, plan=plan)
    store = open_store(path)
    assert store.kl("a") is None and store.logvar("a") is None
    with pytest.raises(StoreError, match="no 'logvar' codes"):
        store.codes("a", "logvar")


# -- metric names -----------------------------------------------------------------------------


def test_all_means_every_registered_metric_and_plan_what_the_store_serves():
    full = make_plan(small_data(), scale=0.02)
    assert resolve_metrics("all", full) == list(METRICS) == resolve_metrics(None, full)
    restricted = make_plan(small_data(), ["mig", "udr"], scale=0.02)
    assert resolve_metrics("plan", restricted) == ["mig", "udr"]
    assert resolve_metrics("study,udr", full) == [
        *(spec.name for spec in registry.study_metrics()), "udr"]
    with pytest.raises(ValueError, match=r"does not serve \['beta_vae_sklearn', .*'fairness'"):
        resolve_metrics("all", restricted)


# -- UDR across checkpoints -------------------------------------------------------------------


def test_a_setting_is_the_config_without_the_seed_and_the_runs_identity():
    run = {"method": "beta_vae", "beta": 4.0, "seed": 0, "path": "/runs/a", "device": "cuda",
           "step": 300_000, "data_dir": "/data"}
    other_seed = {**run, "seed": 1, "path": "/runs/b", "device": "cpu", "data_dir": "/d2"}
    assert setting_of(run) == setting_of(other_seed)
    assert setting_of(run) != setting_of({**run, "beta": 8.0})
    assert setting_of(run) != setting_of({**run, "step": 1_000})  # another checkpoint


def test_udr_scores_each_setting_on_the_same_points_one_row_per_checkpoint(tmp_path):
    path = tmp_path / "reps.zarr"
    plan = udr_store(path, settings=2, seeds=3, metrics=("udr",),
                     representations=("mean", "sampled"))
    write_seed(path, plan, setting=7, seed=0)  # alone in its setting
    table = score_store(path, tmp_path / "scores", scheduler="synchronous")
    store = open_store(path)
    for setting in range(2):
        names = [f"s{setting}-seed{seed}" for seed in range(3)]
        for representation in ("mean", "sampled"):
            expected = plan.score_models("udr", [store.codes(n, representation) for n in names],
                                         [store.kl(n) for n in names])
            for name, result in zip(names, expected, strict=True):
                rows = table[(table["checkpoint"] == name)
                             & (table["representation"] == representation)]
                assert dict(zip(rows["key"], rows["value"], strict=True)) == result
                assert result["num_models"] == 3.0 and 0 <= result["model_score"] <= 1
    # The scores are the registry's UDR on the plan's first num_data_points points.
    names = [f"s0-seed{seed}" for seed in range(3)]
    direct = get_metric("udr")([store.codes(n)[:100] for n in names],
                               [store.kl(n) for n in names])
    assert [r["model_score"] for r in plan.score_models("udr", [store.codes(n) for n in names],
                                                        [store.kl(n) for n in names])] == \
        direct["model_scores"]
    (alone,) = table.loc[table["checkpoint"] == "s7-seed0", "error"].unique()
    assert "the only one of its setting" in alone


def test_a_new_seed_rescores_its_setting_and_leaves_the_others(tmp_path):
    path, out = tmp_path / "reps.zarr", tmp_path / "scores"
    plan = udr_store(path, settings=2, seeds=2, metrics=("udr",))
    first = score_store(path, out, scheduler="synchronous")
    assert (udr_rows(first).xs("num_models", level="key") == 2).all()

    write_seed(path, plan, setting=0, seed=2)
    second = score_store(path, out, scheduler="synchronous")
    sizes = udr_rows(second).xs("num_models", level="key")
    assert sizes.to_dict() == {("s0-seed0", "mean"): 3, ("s0-seed1", "mean"): 3,
                               ("s0-seed2", "mean"): 3, ("s1-seed0", "mean"): 2,
                               ("s1-seed1", "mean"): 2}
    assert not second.duplicated(["checkpoint", "representation", "metric", "key"]).any()
    timing = second.set_index("checkpoint")["elapsed_time"].groupby(level=0).first()
    before = first.set_index("checkpoint")["elapsed_time"].groupby(level=0).first()
    assert timing["s1-seed0"] == before["s1-seed0"]  # setting 1 was not rescored
    assert timing["s0-seed0"] != before["s0-seed0"]

    # Re-encoding a member rescores its setting with the new codes.
    write_seed(path, plan, setting=1, seed=1, replace=True, representations=("mean",))
    store = open_store(path)
    third = score_store(path, out, scheduler="synchronous")
    names = ["s1-seed0", "s1-seed1"]
    expected = plan.score_models("udr", [store.codes(n) for n in names],
                                 [store.kl(n) for n in names])
    for name, result in zip(names, expected, strict=True):
        rows = third[third["checkpoint"] == name]
        assert dict(zip(rows["key"], rows["value"], strict=True)) == result
        assert rows["encoding_id"].unique().tolist() == [store.encoding_id(name)]


def test_udr_without_kl_records_why_for_every_checkpoint_of_the_setting(tmp_path):
    path = tmp_path / "reps.zarr"
    plan = udr_store(path, settings=1, seeds=2, metrics=("udr",))
    write_seed(path, plan, setting=1, seed=0, kl=False)
    write_seed(path, plan, setting=1, seed=1, kl=False)
    table = score_store(path, tmp_path / "scores", scheduler="synchronous")
    errors = table.set_index("checkpoint")["error"]
    assert errors[["s0-seed0", "s0-seed1"]].isna().all()
    for name in ("s1-seed0", "s1-seed1"):
        assert "needs the per-code KL" in errors[name] and "kl=" in errors[name]


def test_a_model_set_task_that_kills_its_worker_fails_every_member():
    task = ModelSetTask((("a", "1"), ("b", "2")), "mean", "udr")
    rows = failed_rows(task, "died")
    assert [(r["checkpoint"], r["encoding_id"], r["error"]) for r in rows] == [
        ("a", "1", "died"), ("b", "2", "died")]
    assert task.token != ModelSetTask((("a", "1"), ("b", "3")), "mean", "udr").token


# -- the done-when: kill -9 and resume ----------------------------------------------------------


def killed_and_resumed(tmp_path, settings, seeds):
    """A store of settings x seeds checkpoints; `fastdis score` killed with SIGKILL once the
    first results are journaled, then rerun. Returns (resumed table, journal parts at the
    kill)."""
    path = tmp_path / "reps.zarr"
    udr_store(path, settings=settings, seeds=seeds)
    out = tmp_path / "scores"
    argv = ["score", str(path), "--out", str(out), "--metrics", "udr,unsupervised",
            "--scheduler", "synchronous"]
    script = f"from fastdis.cli import app; app({argv!r})"
    parts = kill_at_first_journal_part(script, out)
    resumed = subprocess.run([sys.executable, "-W", "ignore", "-c", script],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    return pd.read_parquet(out), parts


def check_resume_equals_an_unbroken_run(tmp_path, settings, seeds):
    resumed, parts = killed_and_resumed(tmp_path, settings, seeds)
    written = pd.concat(parts)
    udr_before = written[written["metric"] == "udr"]
    # A kill never leaves half a setting: every journal part holds whole settings.
    for part in parts:
        udr = part[part["metric"] == "udr"]
        counts = udr.groupby(udr["checkpoint"].str.split("-").str[0])["checkpoint"].nunique()
        assert (counts == seeds).all()
    unbroken = score_store(tmp_path / "reps.zarr", tmp_path / "unbroken",
                           metrics=["udr", "unsupervised"], scheduler="synchronous")
    assert 0 < len(written) < len(unbroken)  # killed mid-run
    pd.testing.assert_series_equal(udr_rows(resumed), udr_rows(unbroken))
    assert len(resumed) == len(unbroken) and resumed["error"].isna().all()
    assert udr_rows(resumed).xs("num_models", level="key").eq(seeds).all()
    # What was journaled before the kill was kept, not recomputed.
    kept = resumed[resumed["checkpoint"].isin(udr_before["checkpoint"])
                   & (resumed["metric"] == "udr")]
    assert set(kept["elapsed_time"]) <= set(udr_before["elapsed_time"])


def test_a_killed_udr_run_resumes_with_the_rows_of_an_unbroken_run(tmp_path):
    check_resume_equals_an_unbroken_run(tmp_path, settings=6, seeds=5)


@pytest.mark.slow
def test_a_killed_run_over_1000_checkpoints_in_100_settings_resumes_exactly(tmp_path):
    check_resume_equals_an_unbroken_run(tmp_path, settings=100, seeds=10)


def test_two_seeds_of_a_fastdis_training_config_form_one_setting():
    from fastdis.train import TrainConfig

    def checkpoint_config(seed, **system):
        # What fastdis encode stores: the run's config, where it stands, and its path.
        return {**TrainConfig(method="beta_vae", beta=4.0, seed=seed, **system).to_dict(),
                "step": 150, "fastdis_version": "0", "path": f"/runs/beta_vae-seed{seed}"}

    assert setting_of(checkpoint_config(0)) == setting_of(
        checkpoint_config(1, device="cuda", data_dir="/elsewhere", log_every=7))
    assert setting_of(checkpoint_config(0)) != setting_of(
        {**checkpoint_config(1), "beta": 8.0})
