"""`fastdis train` / `fastdis sweep`, the config's validation, and the study grid against dlib's."""

import json
import sys

import pytest
from test_train_runs import TinySquares
from typer.testing import CliRunner

from fastdis.cli import app
from fastdis.train import TrainConfig, canonical_method
from fastdis.train.sweep import NUM_MODELS, parse_model_nums, study_model, study_models

runner = CliRunner()


@pytest.fixture
def tiny_data(monkeypatch):
    """`fastdis train` loads datasets by name; here every name gives the tiny squares."""
    from fastdis.train import training

    monkeypatch.setattr(training, "load_named_dataset", lambda name, data_dir: TinySquares())


# -- config --------------------------------------------------------------------------------

def test_defaults_are_the_studys():
    config = TrainConfig().resolved()
    assert (config.method, config.beta, config.batch_size, config.num_latent, config.steps) == \
        ("beta_vae", 1.0, 64, 10, 300_000)
    assert (config.learning_rate, config.adam_betas, config.adam_epsilon) == \
        (1e-4, (0.9, 0.999), 1e-8)
    assert (config.discriminator_learning_rate, config.discriminator_adam_betas) == \
        (1e-4, (0.5, 0.9))
    assert TrainConfig(method="dip_vae_i").resolved().lambda_d_factor == 10.0
    assert TrainConfig(method="dip_vae_ii").resolved().lambda_d_factor == 1.0
    annealed = TrainConfig(method="annealed_vae").resolved()
    assert (annealed.gamma, annealed.iteration_threshold) == (1000.0, 100_000)


def test_method_spellings():
    assert canonical_method("beta_tcvae") == "beta_tc_vae"
    assert canonical_method("Beta-TC-VAE") == "beta_tc_vae"
    assert canonical_method("dip_vae_ii") == "dip_vae_ii"
    with pytest.raises(ValueError, match="unknown method 'vqvae'; choose one of beta_vae"):
        canonical_method("vqvae")


@pytest.mark.parametrize("overrides, message", [
    ({"method": "beta_vae", "gamma": 3.0},
     "gamma is not a hyperparameter of beta_vae; it takes beta"),
    ({"method": "beta_vae", "beta": -1.0}, "beta must be a finite non-negative number"),
    ({"method": "annealed_vae", "iteration_threshold": 0},
     "iteration_threshold must be a positive"),
    ({"steps": 0}, "steps must be a positive integer; got 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive finite number"),
    ({"adam_betas": (0.9, 1.0)}, r"adam_betas must be two numbers in \[0, 1\)"),
    ({"factor_vae_step_counting": "tf"}, "factor_vae_step_counting must be one of"),
    ({"data_sampling": "shuffled"}, "data_sampling must be one of"),
    ({"method": "factor_vae", "batch_size": 1}, "factor_vae needs batch_size >= 2"),
])
def test_bad_configs_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).resolved()


def test_config_round_trips_through_json():
    config = TrainConfig(method="factor_vae", gamma=30.0, data_dir="/data").resolved()
    again = TrainConfig.from_dict(json.loads(json.dumps({**config.to_dict(), "step": 5})))
    assert again == config


# -- the study grid ------------------------------------------------------------------------

def test_study_grid_is_dlibs_entry_by_entry():
    # The oracle's own sweep (disentanglement_lib 1.5); conftest stands gin in for gin.tf.
    from disentanglement_lib.config.unsupervised_study_v1 import sweep as dlib_sweep

    reference = dlib_sweep.get_config()
    ours = study_models()
    assert len(reference) == len(ours) == NUM_MODELS == 12_600
    for model, bindings in zip(ours, reference, strict=True):
        assert model.bindings == bindings, model.model_num


def test_model_num_formula_and_train_configs():
    model = study_model(1800 * 2 + 50 * (6 * 4 + 3) + 17)
    assert (model.dataset, model.method, model.seed) == ("noisy_dsprites", "beta_tc_vae", 17)
    config = model.train_config(steps=10)
    assert (config.method, config.beta, config.seed, config.dataset, config.steps) == \
        ("beta_tc_vae", 6.0, 17, "noisy_dsprites", 10)
    dip = study_model(600).train_config()
    assert (dip.method, dip.lambda_od, dip.lambda_d_factor) == ("dip_vae_i", 1.0, 10.0)
    annealed = study_model(1799).train_config()
    assert (annealed.c_max, annealed.gamma, annealed.iteration_threshold) == \
        (100.0, 1000, 100_000)


def test_parse_model_nums():
    assert parse_model_nums("0-5,17, 3") == [0, 1, 2, 3, 4, 5, 17]
    with pytest.raises(ValueError, match="write them like '0-5,17'"):
        parse_model_nums("5-2")
    with pytest.raises(ValueError, match="model_num must be an integer in \\[0, 12600\\)"):
        study_models(model_nums=[12_600])
    with pytest.raises(ValueError, match="model_num 1800 is not a dsprites_full model"):
        study_models(dataset="dsprites_full", model_nums=[1800])


# -- command line --------------------------------------------------------------------------

def test_sweep_only_print_lists_a_datasets_models():
    result = runner.invoke(app, ["sweep", "--study", "unsupervised_study_v1", "--dataset",
                                 "cars3d", "--only-print"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1800
    assert lines[0].startswith("9000\tdataset.name = 'cars3d', ")
    assert "factor_vae.gamma = 10.0" in lines[300] and lines[300].startswith("9300\t")


def test_sweep_trains_a_slice_into_model_num_folders(tiny_data, tmp_path):
    result = runner.invoke(app, ["sweep", "--dataset", "dsprites_full", "--models", "0,301",
                                 "--steps", "2", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "301"]
    config = json.loads((tmp_path / "301" / "config.json").read_text())
    assert (config["method"], config["gamma"], config["seed"], config["steps"]) == \
        ("factor_vae", 10.0, 1, 2)


def test_sweep_errors(tmp_path):
    result = runner.invoke(app, ["sweep", "--study", "study_v2", "--only-print"])
    assert result.exit_code == 2 and "unknown study 'study_v2'" in result.output
    result = runner.invoke(app, ["sweep", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--models" in result.output


def test_train_command_writes_a_run_and_log(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--method", "beta_tcvae", "--beta", "6", "--dataset", "dsprites_full",
        "--seed", "0", "--steps", "3", "--batch-size", "8", "--log-every", "1",
        "--out", str(out), "--no-compile", "--checkpoint-every", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["method"], config["beta"], config["step"]) == ("beta_tc_vae", 6.0, 3)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [1, 2, 3]
    assert "total_correlation" in log[0]


@pytest.mark.parametrize("arguments, message", [
    (["--method", "vqvae"], "unknown method 'vqvae'"),
    (["--method", "beta_vae", "--gamma", "3"], "gamma is not a hyperparameter of beta_vae"),
    (["--steps", "0"], "steps must be a positive integer"),
])
def test_train_command_rejects_bad_settings(tmp_path, arguments, message):
    result = runner.invoke(app, ["train", "--out", str(tmp_path), *arguments])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_train_command_reports_a_missing_dataset(tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--data-dir",
                                 str(tmp_path), "--steps", "1", "--no-progress"])
    assert result.exit_code == 1
    assert "dsprites" in result.output


def test_train_command_reports_a_diverged_run_without_a_traceback(tmp_path, monkeypatch):
    # A non-finite loss (FloatingPointError) used to escape as a Python traceback.
    from fastdis.train import training

    def diverge(config, out, progress=True, dataset=None):
        raise FloatingPointError("step 7: a loss term is not finite {'loss': nan}; lower ...")

    monkeypatch.setattr(training, "train", diverge)
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1
    assert "step 7: a loss term is not finite" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_train_on_the_small_dsprites_look_alike(tmp_path):
    from fastdis.data import make_dsprites

    make_dsprites(tmp_path / "data", small=True)
    result = runner.invoke(app, [
        "train", "--method", "factor_vae", "--dataset", "dsprites_full", "--data-dir",
        str(tmp_path / "data"), "--steps", "4", "--batch-size", "8", "--out",
        str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["dataset"], config["step"], config["global_step"]) == ("dsprites_full", 2, 4)


def test_help_does_not_import_torch():
    # `fastdis --help` must stay fast: the train commands import torch only when they run.
    import subprocess

    code = ("import sys; from typer.testing import CliRunner; from fastdis.cli import app; "
            "CliRunner().invoke(app, ['train', '--help']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"



def test_train_command_trains_one_setting_over_seeds_in_packs(tiny_data, tmp_path):
    result = runner.invoke(app, [
        "train", "--method", "dip_vae_i", "--lambda-od", "5", "--seeds", "0-2", "--pack", "2",
        "--steps", "2", "--batch-size", "8", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0", "seed_1", "seed_2"]
    for seed in range(3):
        config = json.loads((tmp_path / f"seed_{seed}" / "config.json").read_text())
        assert (config["seed"], config["lambda_od"], config["step"]) == (seed, 5.0, 2)
    result = runner.invoke(app, ["train", "--seeds", "3-1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read seeds '3-1'" in result.output


def test_sweep_packs_models_of_one_method(tiny_data, tmp_path):
    result = runner.invoke(app, ["sweep", "--models", "0-2,300", "--pack", "2", "--steps", "2",
                                 "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "pack of 2: model 0: " in result.output and "pack of 1: model 2: " in result.output
    assert "in 3 pack(s)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2", "300"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_train_command_refuses_a_device_it_cannot_use(tiny_data, tmp_path):
    result = runner.invoke(app, ["train", "--device", "cuda", "--steps", "1", "--out",
                                 str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and "no cuda device is available" in result.output
    result = runner.invoke(app, ["train", "--device", "tpu9", "--steps", "1", "--out",
                                 str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and "'tpu9' is not a torch device" in result.output
