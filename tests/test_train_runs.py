"""Training runs: data stream, determinism, checkpoints, resume after a kill, the Checkpoint API.

Runs use a tiny in-test dataset with dlib's ground-truth protocol (192 binary 64x64 squares),
batches of 8 and a handful of steps.
"""

import json

import numpy as np
import pytest
import torch

from fastdis.train import TrainConfig, load_checkpoint, train
from fastdis.train.checkpoint import CHECKPOINT_FILE, atomic_write
from fastdis.train.training import data_random_state, sample_batch

torch.set_num_threads(1)


class TinySquares:
    """dlib's GroundTruthData protocol: white squares, factors (size 3, x 8, y 8)."""

    factors_num_values = [3, 8, 8]
    num_factors = 3
    observation_shape = [64, 64, 1]

    def __init__(self):
        sizes, xs, ys = np.meshgrid(*(np.arange(n) for n in self.factors_num_values),
                                    indexing="ij")
        self.images = np.zeros((sizes.size, 64, 64, 1), np.float32)
        for index, (s, x, y) in enumerate(zip(sizes.ravel(), xs.ravel(), ys.ravel(),
                                              strict=True)):
            half = 3 + 3 * s
            cx, cy = 12 + 6 * x, 12 + 6 * y
            self.images[index, cy - half:cy + half, cx - half:cx + half] = 1.0

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(n, size=num) for n in self.factors_num_values],
                        axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        index = np.ravel_multi_index(factors.T, self.factors_num_values)
        return self.images[index]


class KilledAt:
    """TinySquares that dies (as a killed process would) when drawing batch ``kill_batch``."""

    def __init__(self, kill_batch, batch_size=8):
        self.data = TinySquares()
        self.observation_shape = self.data.observation_shape
        self.calls, self.limit = 0, kill_batch * batch_size

    def sample_factors(self, num, random_state):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt("killed")
        return self.data.sample_factors(num, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        return self.data.sample_observations_from_factors(factors, random_state)


def tiny_config(method="beta_vae", **overrides):
    values = {"method": method, "batch_size": 8, "steps": 6, "log_every": 1,
              "checkpoint_every": 3, "dataset": "tiny_squares"}
    values.update(overrides)
    return TrainConfig(**values)


def run(config, out_dir, dataset=None):
    return train(config, out_dir, progress=False, dataset=dataset or TinySquares())


def state_of(run_dir):
    return torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)


def log_lines(run_dir):
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    for line in lines:  # wall-clock fields differ between runs
        del line["time"], line["steps_per_second"]
    return lines


def assert_same_state(a, b):
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for opt_a, opt_b in zip(a["optimizers"], b["optimizers"], strict=True):
        for key, state in opt_a["state"].items():
            for field, value in state.items():
                assert torch.equal(torch.as_tensor(value),
                                   torch.as_tensor(opt_b["state"][key][field])), (key, field)
    assert torch.equal(a["torch_generator"], b["torch_generator"])
    assert torch.equal(a["data_random_state"]["keys"], b["data_random_state"]["keys"])
    assert a["data_random_state"]["position"] == b["data_random_state"]["position"]


# -- data stream ---------------------------------------------------------------------------

def test_dlib_sampling_draws_the_reference_stream():
    from disentanglement_lib.data.ground_truth.dummy_data import DummyData

    data = DummyData()
    batch = sample_batch(data, 5, np.random.RandomState(3), "dlib")
    reference_state = np.random.RandomState(3)
    # dlib's tf.data generator: one sample_observations(1, random_state) per element.
    expected = np.stack([data.sample_observations(1, reference_state)[0] for _ in range(5)])
    assert batch.dtype == np.float32 and batch.shape == (5, 64, 64, 1)
    np.testing.assert_array_equal(batch, expected.astype(np.float32))


def test_batched_sampling_is_one_call():
    data = TinySquares()
    batch = sample_batch(data, 5, np.random.RandomState(3), "batched")
    rs = np.random.RandomState(3)
    np.testing.assert_array_equal(
        batch, data.sample_observations_from_factors(data.sample_factors(5, rs), rs))


def test_data_seed_is_the_first_draw_of_the_run_seed():
    # dlib's train.py: RandomState(random_seed).randint(2**32) seeds the input function.
    seed = np.random.RandomState(7).randint(2**32)
    assert data_random_state(7).randint(1000) == np.random.RandomState(seed).randint(1000)


# -- runs, determinism, resume -------------------------------------------------------------

@pytest.mark.parametrize("method", ["annealed_vae", "factor_vae"])
def test_resume_after_a_kill_loses_and_repeats_no_step(tmp_path, method):
    # AnnealedVAE's capacity depends on the step; FactorVAE has two optimisers, shuffle keys
    # and dlib's step counting (steps=12 -> 6 updates).
    steps = 12 if method == "factor_vae" else 6
    straight = run(tiny_config(method, steps=steps), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):  # killed while drawing the 5th batch
        run(tiny_config(method, steps=steps), tmp_path / "killed", KilledAt(kill_batch=4))
    killed = tmp_path / "killed"
    assert json.loads((killed / "config.json").read_text())["step"] == 3
    assert [line["step"] for line in log_lines(killed)] == [1, 2, 3, 4]
    with open(killed / "log.jsonl", "a") as log:  # a line the kill cut short
        log.write('{"step": 5, "lo')
    run(tiny_config(method, steps=steps), killed)  # resume
    assert_same_state(state_of(straight), state_of(killed))
    assert log_lines(killed) == log_lines(straight)


def test_a_finished_run_extends_to_more_steps_as_if_trained_straight(tmp_path):
    straight = run(tiny_config(steps=6), tmp_path / "straight")
    extended = run(tiny_config(steps=4, checkpoint_every=100), tmp_path / "extended")
    run(tiny_config(steps=6), extended)
    assert_same_state(state_of(straight), state_of(extended))


def test_resuming_with_fewer_steps_than_done_is_refused(tmp_path):
    # Asking for fewer steps than a run has done used to return the longer run silently
    # (and the CLI then claimed "trained to step 3").
    run_dir = run(tiny_config(steps=6), tmp_path / "run")
    before = (run_dir / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(ValueError, match=r"already at update 6.*steps=3.*at least steps=6"):
        run(tiny_config(steps=3), run_dir)
    assert (run_dir / CHECKPOINT_FILE).read_bytes() == before


def test_rerunning_a_finished_run_changes_nothing(tmp_path):
    run_dir = run(tiny_config(steps=3), tmp_path / "run")
    before = (run_dir / CHECKPOINT_FILE).read_bytes(), (run_dir / "log.jsonl").read_text()
    run(tiny_config(steps=3), run_dir)
    assert ((run_dir / CHECKPOINT_FILE).read_bytes(), (run_dir / "log.jsonl").read_text()) \
        == before


def test_other_seed_other_run(tmp_path):
    a = run(tiny_config(steps=2, seed=0), tmp_path / "a")
    b = run(tiny_config(steps=2, seed=1), tmp_path / "b")
    assert not torch.equal(state_of(a)["model"]["encoder.e1.weight"],
                           state_of(b)["model"]["encoder.e1.weight"])


def test_resuming_with_another_config_is_refused(tmp_path):
    run_dir = run(tiny_config(steps=2), tmp_path / "run")
    with pytest.raises(ValueError, match=r"beta: saved 1\.0, asked 4\.0"):
        run(tiny_config(steps=4, beta=4.0), run_dir)


def test_factor_vae_step_counting(tmp_path):
    dlib_run = run(tiny_config("factor_vae", steps=4, checkpoint_every=100), tmp_path / "dlib")
    config = json.loads((dlib_run / "config.json").read_text())
    assert (config["step"], config["global_step"]) == (2, 4)  # two updates per global step
    updates = run(tiny_config("factor_vae", steps=4, factor_vae_step_counting="updates"),
                  tmp_path / "updates")
    config = json.loads((updates / "config.json").read_text())
    assert (config["step"], config["global_step"]) == (4, 4)


def test_beta_vae_loss_falls(tmp_path):
    run_dir = run(tiny_config(steps=60, batch_size=16, log_every=10, checkpoint_every=100),
                  tmp_path / "run")
    losses = [line["loss"] for line in log_lines(run_dir)]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses  # from 4096 ln 2 = 2839 nats per image


def test_log_lines_hold_the_loss_terms(tmp_path):
    run_dir = run(tiny_config("beta_tc_vae", steps=2, beta=6.0), tmp_path / "run")
    line = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    assert {"step", "global_step", "loss", "reconstruction_loss", "kl_loss", "regularizer",
            "elbo", "total_correlation", "steps_per_second", "time"} <= set(line)
    assert line["loss"] == pytest.approx(line["reconstruction_loss"] + line["regularizer"],
                                         rel=1e-5)


# -- checkpoints ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return run(tiny_config("dip_vae_i", steps=3, lambda_od=5.0),
               tmp_path_factory.mktemp("trained") / "run")


def test_checkpoint_config_is_the_json_config(trained):
    checkpoint = load_checkpoint(trained)
    assert checkpoint.config == json.loads((trained / "config.json").read_text())
    config = checkpoint.config
    assert (config["method"], config["lambda_od"], config["lambda_d_factor"]) == \
        ("dip_vae_i", 5.0, 10.0)
    assert (config["dataset"], config["data_dir"], config["seed"], config["step"]) == \
        ("tiny_squares", None, 0, 3)
    assert config["fastdis_version"]
    assert load_checkpoint(trained / CHECKPOINT_FILE).config == config


def test_encode_returns_float32_mean_and_logvar_batched_internally(trained):
    checkpoint = load_checkpoint(trained)
    observations = TinySquares().images[:20].astype(np.float64)
    mean, logvar = checkpoint.encode(observations)
    assert mean.dtype == logvar.dtype == np.float32
    assert mean.shape == logvar.shape == (20, 10)
    small_mean, small_logvar = checkpoint.encode(observations, batch_size=3)
    np.testing.assert_allclose(small_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small_logvar, logvar, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the same as the model's encoder on NCHW tensors
        expected = checkpoint.model.encoder(torch.from_numpy(
            observations[:4].astype(np.float32)).permute(0, 3, 1, 2))[0].numpy()
    np.testing.assert_allclose(mean[:4], expected, rtol=1e-5, atol=1e-6)
    empty_mean, _ = checkpoint.encode(np.zeros((0, 64, 64, 1), np.float32))
    assert empty_mean.shape == (0, 10)


def test_representation_functions(trained):
    checkpoint = load_checkpoint(trained)
    observations = TinySquares().images[::5]
    mean, logvar = checkpoint.encode(observations)
    np.testing.assert_array_equal(checkpoint.representation_function("mean")(observations), mean)
    sampled = checkpoint.representation_function("sampled", seed=3)
    first, second = sampled(observations), sampled(observations)
    assert first.dtype == np.float32 and first.shape == mean.shape
    assert not np.array_equal(first, second)  # fresh noise on every call, as dlib's
    again = checkpoint.representation_function("sampled", seed=3)
    np.testing.assert_array_equal(again(observations), first)  # but reproducible
    other = checkpoint.representation_function("sampled", seed=4)(observations)
    assert not np.array_equal(other, first)
    standardised = (first - mean) / np.exp(logvar / 2)
    assert abs(standardised.mean()) < 0.2 and 0.8 < standardised.std() < 1.2
    with pytest.raises(ValueError, match="kind must be 'mean' or 'sampled'"):
        checkpoint.representation_function("median")


def test_encode_rejects_the_wrong_shape(trained):
    checkpoint = load_checkpoint(trained)
    with pytest.raises(ValueError, match=r"\(n_samples, 64, 64, 1\).*got \(2, 1, 64, 64\)"):
        checkpoint.encode(np.zeros((2, 1, 64, 64), np.float32))


@pytest.mark.parametrize("batch_size", [0, 2.5, "8"])
def test_encode_rejects_a_batch_size_that_is_not_a_positive_integer(trained, batch_size):
    # A float or string used to escape as a bare TypeError from range() or the comparison.
    checkpoint = load_checkpoint(trained)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        checkpoint.encode(TinySquares().images[:3], batch_size=batch_size)


def test_resuming_on_observations_of_another_shape_is_refused(tmp_path):
    class ThreeChannels(TinySquares):
        observation_shape = [64, 64, 3]

        def sample_observations_from_factors(self, factors, random_state):
            return np.repeat(super().sample_observations_from_factors(factors, random_state),
                             3, axis=3)

    run_dir = run(tiny_config(steps=2), tmp_path / "run")
    with pytest.raises(ValueError, match=r"observations of shape \[64, 64, 1\]; this "
                                         r"dataset's are \[64, 64, 3\]"):
        run(tiny_config(steps=4), run_dir, dataset=ThreeChannels())


def test_encode_refuses_0_to_255_pixels_but_takes_binary_uint8(trained):
    # A dataset's stored uint8 images (0..255) used to encode to garbage without a word.
    checkpoint = load_checkpoint(trained)
    binary = TinySquares().images[:3]
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]; got uint8 values up to 255"):
        checkpoint.encode((binary * 255).astype(np.uint8))
    np.testing.assert_array_equal(checkpoint.encode(binary.astype(np.uint8))[0],
                                  checkpoint.encode(binary)[0])  # {0, 1} uint8: dSprites'


def test_checkpoint_without_observation_shape_gets_a_clear_error(tmp_path, trained):
    state = state_of(trained)
    config = json.loads(state["config_json"])
    del config["observation_shape"]
    state["config_json"] = json.dumps(config)
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="unusable config: it lacks observation_shape"):
        load_checkpoint(tmp_path / "old.pt")


def test_missing_corrupt_and_foreign_checkpoints_get_clear_errors(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="no fastdis checkpoint"):
        load_checkpoint(tmp_path)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    data = (trained / CHECKPOINT_FILE).read_bytes()
    (corrupt / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or not a fastdis checkpoint"):
        load_checkpoint(corrupt)
    with pytest.raises(ValueError, match="corrupt"):  # train() refuses to resume it too
        run(tiny_config(), corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a fastdis training checkpoint"):
        load_checkpoint(foreign)
    state = state_of(trained)
    state["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(state, newer)
    with pytest.raises(ValueError, match="format version 99"):
        load_checkpoint(newer)
    state["format_version"] = 1
    state["model"].pop("encoder.e1.weight")
    torch.save(state, newer)
    with pytest.raises(ValueError, match="weights do not fit"):
        load_checkpoint(newer)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda file: file.write(b"old"))

    def fail_halfway(file):
        file.write(b"new but incomp")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail_halfway)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temporary left behind


# -- datasets ------------------------------------------------------------------------------

def test_a_dataset_without_the_protocol_is_refused(tmp_path):
    with pytest.raises(TypeError, match="lacks sample_factors, sample_observations_from_factors"):
        train(tiny_config(), tmp_path, progress=False, dataset=object())


def test_named_datasets_come_from_fastdis_data(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'tiny_squares'"):
        train(tiny_config(), tmp_path / "a", progress=False)
    with pytest.raises(FileNotFoundError, match="dsprites"):
        train(tiny_config(dataset="dsprites_full", data_dir=str(tmp_path)), tmp_path / "b",
              progress=False)


@pytest.mark.slow
def test_compiled_training_follows_the_eager_run(tmp_path):
    # A cold torch.compile of the FactorVAE step (both networks); eager and compiled runs
    # draw the same noise and data, so the weights agree up to float32 reassociation.
    eager = run(tiny_config("factor_vae", steps=8), tmp_path / "eager")
    compiled = run(tiny_config("factor_vae", steps=8, compile=True), tmp_path / "compiled")
    a, b = state_of(eager), state_of(compiled)
    for name in a["model"]:
        torch.testing.assert_close(b["model"][name], a["model"][name], rtol=1e-4, atol=1e-5)
    assert torch.equal(a["torch_generator"], b["torch_generator"])
