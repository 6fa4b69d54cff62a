"""fastdis.batch: the evaluation plan, the Zarr representation store, encoding checkpoints."""

import json
from pathlib import Path

import numpy as np
import pytest

from fastdis.batch import make_plan, open_store, write_codes
from fastdis.batch.encode import encode_checkpoints, expand_checkpoint_paths
from fastdis.batch.plan import EvaluationPlan
from fastdis.batch.store import StoreError, checkpoint_key
from fastdis.demo import SyntheticFactors, representation
from fastdis.metrics import get_metric

#: Cheap metrics covering every input kind a plan serves except boosted trees.
CHEAP_METRICS = ["beta_vae_sklearn", "factor_vae_metric", "mig", "sap_score", "unsupervised",
                 "downstream_task_logistic_regression"]
SMALL_GROUPS = {"beta_vae_sklearn": {"num_train": 150, "num_eval": 60, "batch_size": 8},
                "factor_vae_metric": {"num_train": 150, "num_eval": 60, "batch_size": 8,
                                      "num_variance_estimate": 400},
                "downstream_task_logistic_regression": {"num_train": (20, 200)}}


#: Few classes per factor, so that the classifiers of the tests fit in well under a second.
SMALL_FACTORS = (3, 6, 8, 5)


def small_data():
    return SyntheticFactors(SMALL_FACTORS)


def small_plan(metrics=CHEAP_METRICS, seed=0, data=None):
    """A 500 + 250 point pool (scale 0.05) and small groups."""
    sizes = {name: value for name, value in SMALL_GROUPS.items() if name in metrics}
    return make_plan(data or small_data(), metrics, seed=seed, scale=0.05, sizes=sizes)


def codes_of(plan, kind, dtype=np.float32, seed=0):
    return representation(kind, plan.factor_sizes, seed=seed)(plan.factors).astype(dtype)


# -- plan ------------------------------------------------------------------------------------


def test_plan_is_deterministic_and_its_groups_fix_one_factor():
    plan = small_plan()
    again = small_plan()
    assert plan.same_as(again)
    assert not plan.same_as(small_plan(seed=1))
    factors = plan.factors
    assert plan.num_train == 500 and plan.num_test == 250
    assert (factors < np.array(plan.factor_sizes)).all()

    groups = plan.groups["factor_vae_metric"]
    assert groups["train"].shape == (150, 8) and groups["eval"].shape == (60, 8)
    for members, k in zip(groups["train"], groups["train_factor"], strict=True):
        assert len(set(members)) == 8  # distinct points
        assert (factors[members, k] == factors[members[0], k]).all()

    pairs = plan.groups["beta_vae_sklearn"]
    rows = np.arange(len(pairs["train_factor"]))[:, None]
    k = pairs["train_factor"][:, None]
    assert (factors[pairs["train_a"], :][rows, np.arange(8), k]
            == factors[pairs["train_b"], :][rows, np.arange(8), k]).all()
    assert (pairs["train_a"] != pairs["train_b"]).all()
    assert (pairs["train_a"] < plan.num_train + plan.num_test).all()  # batch a is i.i.d.
    # Every fixed factor is drawn (uniformly) for some group.
    assert set(groups["train_factor"]) == set(range(len(SMALL_FACTORS)))


def test_plan_tops_up_values_the_pool_lacks_for_groups_of_that_factor_only():
    # 750 pool points over 40 orientations: ~19 per value, fewer than a group of 32 needs.
    plan = make_plan(SyntheticFactors(), ["factor_vae_metric"], scale=0.05,
                     sizes={"factor_vae_metric": {"batch_size": 32, "num_train": 50,
                                                  "num_eval": 20}})
    pool = plan.num_train + plan.num_test
    assert plan.n_points > pool
    groups = plan.groups["factor_vae_metric"]
    for members, k in zip(groups["train"], groups["train_factor"], strict=True):
        assert (plan.factors[members, k] == plan.factors[members[0], k]).all()
    # A top-up point only serves groups that fix the factor it was made for.
    top_up = np.arange(pool, plan.n_points)
    counts = np.array([[np.sum(plan.factors[:pool, k] == v) for v in range(size)]
                       for k, size in enumerate([40])])
    assert counts.min() < 32
    used = np.isin(groups["train"], top_up)
    for members, k, is_top_up in zip(groups["train"], groups["train_factor"], used, strict=True):
        if is_top_up.any():
            assert (np.bincount(plan.factors[members[is_top_up], k]).max() == is_top_up.sum())


def test_plan_sizes_scale_and_override_and_errors_name_the_problem():
    plan = make_plan(SyntheticFactors(), ["dci", "downstream_task_boosted_trees"], scale=0.1)
    assert plan.sizes["dci"] == {"num_train": 1000, "num_test": 500}
    assert plan.sizes["downstream_task_boosted_trees"]["num_train"] == (10, 100, 1000)
    assert plan.num_train == 1000 and plan.num_test == 500 and not plan.groups
    with pytest.raises(ValueError, match="unknown metric"):
        make_plan(SyntheticFactors(), ["nope"])
    with pytest.raises(ValueError, match="unknown key 'num_points'"):
        make_plan(SyntheticFactors(), ["mig"], sizes={"mig": {"num_points": 3}})
    with pytest.raises(ValueError, match="not 'dci'"):
        make_plan(SyntheticFactors(), ["mig"], scale=0.01).score("dci", np.zeros((3, 2)))


def test_plan_size_overrides_are_checked_and_take_the_study_sizes_form():
    # A single training size for downstream (study: a tuple of sizes) is one size, not a
    # TypeError when scoring; a bad count is refused at make_plan, naming the entry.
    data = small_data()
    name = "downstream_task_logistic_regression"
    plan = make_plan(data, [name], scale=0.05, sizes={name: {"num_train": 200}})
    assert plan.sizes[name]["num_train"] == (200,)
    assert "200:mean_test_accuracy" in plan.score(name, codes_of(plan, "disentangled"))
    with pytest.raises(ValueError, match=r"sizes\['mig'\]\['num_train'\] must be an integer"):
        make_plan(data, ["mig"], sizes={"mig": {"num_train": 0}})
    with pytest.raises(ValueError, match=r"sizes\['mig'\]\['num_train'\] must be an integer"):
        make_plan(data, ["mig"], sizes={"mig": {"num_train": (100, 200)}})


def test_plan_records_flat_indices_when_the_data_set_has_them():
    class Indexed(SyntheticFactors):
        def flat_index(self, factors):
            return np.ravel_multi_index(factors.T, self.factor_sizes)

    plan = make_plan(Indexed(), ["mig"], scale=0.05)
    assert np.array_equal(plan.indices, np.ravel_multi_index(plan.factors.T, (3, 6, 40, 32, 32)))
    metadata, arrays = plan.to_metadata()
    rebuilt = EvaluationPlan.from_metadata(json.loads(json.dumps(metadata)), arrays)
    assert rebuilt.same_as(plan) and np.array_equal(rebuilt.indices, plan.indices)


def test_scoring_from_the_plan_equals_the_registry_functions_on_the_same_points():
    plan = small_plan()
    codes = codes_of(plan, "entangled")
    f = plan.factors
    train, test = slice(0, plan.num_train), slice(plan.num_train, plan.num_train + 250)
    expected = {
        "mig": get_metric("mig")(codes[:500], f[:500]),
        "sap_score": get_metric("sap_score")(codes[train], f[train], codes[test], f[test]),
        "unsupervised": get_metric("unsupervised")(codes[:500]),
        "downstream_task_logistic_regression": {
            **get_metric("downstream_task_logistic_regression")(codes[:20], f[:20],
                                                                codes[test], f[test]),
            **get_metric("downstream_task_logistic_regression")(codes[:200], f[:200],
                                                                codes[test], f[test])},
    }
    pairs = plan.groups["beta_vae_sklearn"]
    expected["beta_vae_sklearn"] = get_metric("beta_vae_sklearn")(
        codes[pairs["train_a"]], codes[pairs["train_b"]], pairs["train_factor"],
        codes[pairs["eval_a"]], codes[pairs["eval_b"]], pairs["eval_factor"])
    groups = plan.groups["factor_vae_metric"]
    expected["factor_vae_metric"] = get_metric("factor_vae_metric")(
        codes[:400], codes[groups["train"]], groups["train_factor"], codes[groups["eval"]],
        groups["eval_factor"], num_factors=len(SMALL_FACTORS))
    for name, result in expected.items():
        assert plan.score(name, codes) == result, name
    assert "20:mean_test_accuracy" in expected["downstream_task_logistic_regression"]
    with pytest.raises(ValueError, match="rows but the evaluation plan has"):
        plan.score("mig", codes[:-1])


# -- store -----------------------------------------------------------------------------------


def test_write_codes_creates_appends_skips_and_replaces(tmp_path):
    plan = small_plan(["mig"])
    path = tmp_path / "reps.zarr"
    mean = codes_of(plan, "disentangled")
    assert write_codes(path, "runs/beta=4 seed/0", {"mean": mean, "sampled": mean + 1.0},
                       {"method": "beta_vae", "hyper": {"beta": 4.0}}, plan=plan,
                       kl=np.arange(mean.shape[1]))
    store = open_store(path)
    assert store.names() == ["runs/beta=4 seed/0"]
    assert store.plan.same_as(plan)
    assert np.array_equal(store.codes("runs/beta=4 seed/0", "sampled"), mean + 1.0)
    assert store.codes("runs/beta=4 seed/0").dtype == np.float32
    first_id = store.checkpoints()["runs/beta=4 seed/0"]["encoding_id"]

    assert not write_codes(path, "runs/beta=4 seed/0", {"mean": mean * 0}, {})  # kept
    assert np.array_equal(open_store(path).codes("runs/beta=4 seed/0"), mean)
    assert write_codes(path, "runs/beta=4 seed/0", {"mean": mean * 2}, {"beta": 1}, replace=True)
    assert write_codes(path, "other", {"mean": mean.astype(np.float64)}, {"beta": 2})  # append
    store = open_store(path)
    assert store.names() == ["other", "runs/beta=4 seed/0"]
    assert store.config("runs/beta=4 seed/0") == {"beta": 1}
    assert store.checkpoints()["runs/beta=4 seed/0"]["encoding_id"] != first_id
    assert store.codes("other").dtype == np.float64

    with pytest.raises(ValueError, match=r"must have shape \(n_points, n_codes\) = \(500"):
        write_codes(path, "bad", {"mean": mean[:10]}, {})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_codes(path, "bad", {"mean": mean}, {"fn": print})
    with pytest.raises(StoreError, match="plan differs"):
        write_codes(path, "bad", {"mean": mean}, {}, plan=small_plan(["mig"], seed=3))
    with pytest.raises(StoreError, match="pass plan="):
        write_codes(tmp_path / "new.zarr", "x", {"mean": mean}, {})
    with pytest.raises(StoreError, match="no 'logvar' codes"):
        store.codes("other", "logvar")


def test_corrupted_or_missing_stores_raise_errors_naming_the_path(tmp_path):
    with pytest.raises(StoreError, match="nowhere.zarr: not a representation store"):
        open_store(tmp_path / "nowhere.zarr")
    plan = small_plan(["mig"])
    path = tmp_path / "reps.zarr"
    write_codes(path, "a", {"mean": codes_of(plan, "noise")}, {}, plan=plan)
    (path / "plan" / "factors" / "zarr.json").unlink()
    with pytest.raises(StoreError, match=f"{path}: the evaluation plan .* missing or corrupted"):
        open_store(path)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match=f"{path}: the store's metadata cannot be read"):
        open_store(path)

    other = tmp_path / "other.zarr"
    write_codes(other, "a", {"mean": codes_of(plan, "noise")}, {}, plan=plan)
    for chunk in (other / "checkpoints" / checkpoint_key("a") / "mean" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"garbage")
    with pytest.raises(StoreError, match="mean cannot be read"):
        open_store(other).codes("a")


# -- encoding checkpoints --------------------------------------------------------------------


class FakeCheckpoint:
    """fastdis.train's Checkpoint contract: .config and .encode(obs) -> (mean, logvar)."""

    def __init__(self, path):
        self.config = {"method": "beta_vae", "beta": float(path.name[-1]), "seed": 0}
        self.encoder = representation("entangled", SMALL_FACTORS, seed=int(path.name[-1]))
        self.calls = 0

    def encode(self, observations):
        self.calls += 1
        mean = self.encoder(observations).astype(np.float32)
        return mean, np.full_like(mean, -2.0)


def test_encode_checkpoints_encodes_each_once_and_skips_stored_ones(tmp_path):
    for i in range(3):
        (tmp_path / "runs" / f"run{i}").mkdir(parents=True)
        (tmp_path / "runs" / f"run{i}" / "checkpoint.pt").write_bytes(b"")
    paths = expand_checkpoint_paths([str(tmp_path / "runs")])
    assert [p.name for p in paths] == ["run0", "run1", "run2"]
    assert expand_checkpoint_paths([str(tmp_path / "runs" / "run*")]) == paths
    with pytest.raises(FileNotFoundError, match="no checkpoint matches"):
        expand_checkpoint_paths([str(tmp_path / "missing")])

    plan = small_plan(["mig"])
    data = small_data()
    loaded = []

    def load(path):
        if path.name == "run2":
            raise ValueError("checkpoint is corrupt")
        loaded.append(FakeCheckpoint(path))
        return loaded[-1]

    store = tmp_path / "reps.zarr"
    summary = encode_checkpoints(store, paths, data, plan=plan, load=load)
    assert len(summary.written) == 2 and summary.failed[0][1] == "ValueError: checkpoint is corrupt"
    reps = open_store(store)
    name = str(paths[1])
    expected = codes_of(plan, "entangled", seed=1)
    assert np.array_equal(reps.codes(name, "mean"), expected)
    noise = np.random.default_rng(plan.seed).standard_normal(expected.shape, dtype=np.float32)
    assert np.array_equal(reps.codes(name, "sampled"),
                          expected + np.exp(np.full_like(expected, -2.0) / 2) * noise)
    assert reps.config(name)["beta"] == 1.0
    kl = reps.checkpoints()[name]["kl"]
    assert np.allclose(kl, np.mean(0.5 * (expected.astype(float) ** 2 + np.exp(-2) + 2 - 1), 0))
    assert np.array_equal(reps.kl(name), kl)
    assert np.array_equal(reps.logvar(name), np.full_like(expected, -2.0))  # for Chen's MIG

    again = encode_checkpoints(store, paths[:2], data, load=load)
    assert again.skipped == [str(p) for p in paths[:2]] and len(loaded) == 2


def test_encode_a_real_training_checkpoint_through_the_cli(tmp_path):
    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from fastdis.cli import app
    from fastdis.data import make_dsprites
    from fastdis.train import TrainConfig, train

    torch.set_num_threads(1)
    make_dsprites(tmp_path / "data", small=True)
    from fastdis.data import load_dataset

    data = load_dataset("dsprites_full", data_dir=tmp_path / "data")
    run_dir = tmp_path / "runs" / "beta"
    train(TrainConfig(method="beta_vae", steps=2, batch_size=8, log_every=1, checkpoint_every=2,
                      dataset="dsprites_full", data_dir=str(tmp_path / "data")), run_dir,
          progress=False, dataset=data)
    store = tmp_path / "reps.zarr"
    result = CliRunner().invoke(app, [
        "encode", str(tmp_path / "runs"), "--dataset", "dsprites_full", "--data-dir",
        str(tmp_path / "data"), "--store", str(store), "--scale", "0.02", "--metrics", "mig"])
    assert result.exit_code == 0, result.output
    reps = open_store(store)
    assert reps.dataset == "dsprites_full" and reps.names() == [str(run_dir.resolve())]
    from fastdis.train import load_checkpoint

    observations = data.sample_observations_from_factors(reps.plan.factors,
                                                         np.random.RandomState(0))
    mean, _ = load_checkpoint(run_dir).encode(observations)
    assert np.allclose(reps.codes(reps.names()[0]), mean, atol=1e-6)
    assert np.array_equal(reps.plan.indices, data.flat_index(reps.plan.factors))
    assert reps.config(reps.names()[0])["method"] == "beta_vae"

    # Encoding again skips the run, until it has trained further: then its codes are stale.
    encode_args = ["encode", str(tmp_path / "runs"), "--dataset", "dsprites_full", "--data-dir",
                   str(tmp_path / "data"), "--store", str(store)]
    assert "0 encoded, 1 already stored" in CliRunner().invoke(app, encode_args).output
    train(TrainConfig(method="beta_vae", steps=4, batch_size=8, log_every=1, checkpoint_every=2,
                      dataset="dsprites_full", data_dir=str(tmp_path / "data")), run_dir,
          progress=False, dataset=data)
    result = CliRunner().invoke(app, encode_args)
    assert "1 encoded, 0 already stored" in result.output, result.output
    reps = open_store(store)
    assert reps.config(reps.names()[0])["step"] == 4
    mean, _ = load_checkpoint(run_dir).encode(observations)
    assert np.allclose(reps.codes(reps.names()[0]), mean, atol=1e-6)


# -- review fixes ----------------------------------------------------------------------------


def test_a_replace_killed_while_deleting_never_leaves_a_complete_looking_checkpoint(
        tmp_path, monkeypatch):
    import shutil

    plan = small_plan(["mig"])
    path = tmp_path / "reps.zarr"
    write_codes(path, "a", {"mean": codes_of(plan, "noise")}, {}, plan=plan)

    def rmtree_killed_halfway(directory, *args, **kwargs):
        for chunk in Path(directory).rglob("c/*"):  # the chunks go, the group's zarr.json stays
            if chunk.is_file():
                chunk.unlink()
        raise OSError("killed")  # the process dies here

    monkeypatch.setattr(shutil, "rmtree", rmtree_killed_halfway)
    with pytest.raises(OSError, match="killed"):
        write_codes(path, "a", {"mean": codes_of(plan, "entangled")}, {}, replace=True)
    monkeypatch.undo()
    assert "a" not in open_store(path)  # incomplete: skipped by readers, rewritten by encode
    assert write_codes(path, "a", {"mean": codes_of(plan, "entangled")}, {})
    assert np.array_equal(open_store(path).codes("a"), codes_of(plan, "entangled"))


def test_a_glob_matching_no_checkpoint_is_an_error(tmp_path):
    (tmp_path / "runs" / "run0").mkdir(parents=True)  # a run directory without checkpoint.pt
    with pytest.raises(FileNotFoundError, match=r"no checkpoint matches '.*runs/\*'"):
        expand_checkpoint_paths([str(tmp_path / "runs" / "*")])
    from typer.testing import CliRunner

    from fastdis.cli import app

    result = CliRunner().invoke(app, ["encode", str(tmp_path / "runs" / "*"), "--dataset",
                                      "dsprites_full", "--store", str(tmp_path / "reps.zarr")])
    assert result.exit_code == 1 and "no checkpoint matches" in result.output
    assert not (tmp_path / "reps.zarr").exists()


def test_make_plan_takes_one_metric_name_as_a_string():
    assert make_plan(small_data(), "mig", scale=0.05).metrics == ("mig",)
