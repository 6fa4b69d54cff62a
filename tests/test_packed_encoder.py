"""fastdis.batch.packed_encoder: many checkpoints encoded in one pass, codes as one at a time."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastdis.batch import make_plan, open_store, packed_encoder
from fastdis.batch.encode import encode_checkpoints
from fastdis.batch.packed_encoder import PackedEncoder
from fastdis.demo import SyntheticFactors
from fastdis.train.checkpoint import Checkpoint

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from bench_encode import OBSERVATION_SHAPE, random_study_model  # noqa: E402

FACTOR_SIZES = (3, 4, 5)


class NoiseImages(SyntheticFactors):
    """Synthetic factors whose observations are uniform noise images drawn from the caller's
    RandomState: the encoders see varied images, and rendering costs nothing."""

    def __init__(self):
        super().__init__(FACTOR_SIZES)

    @property
    def observation_shape(self):
        return list(OBSERVATION_SHAPE)

    def sample_observations_from_factors(self, factors, random_state):
        return random_state.random_sample((len(factors), *OBSERVATION_SHAPE)).astype(np.float32)


def random_checkpoint(path: Path, num_latent: int = 10) -> Checkpoint:
    """A checkpoint of the study's model seeded by the run's number."""
    seed = int(path.name.removeprefix("run"))
    config = {"method": "beta_vae", "beta": 1.0, "seed": seed, "num_latent": num_latent,
              "observation_shape": list(OBSERVATION_SHAPE), "step": 1}
    return Checkpoint(path=path, config=config, model=random_study_model(seed, num_latent))


def small_plan():
    return make_plan(NoiseImages(), ["mig"], seed=3, scale=0.02)


#: Packed codes equal one-at-a-time codes to float32 rounding: grouped convolutions and batched
#: matrix products accumulate in another order (measured on CPU: at most 2.4e-7 apart on codes
#: of size ~0.5); sampled codes differ only through their mean and log-variance.
PACKED_RTOL, PACKED_ATOL = 1e-5, 1e-6


def test_packed_codes_equal_one_at_a_time_to_float32_rounding_and_a_bad_checkpoint_fails_alone(
        tmp_path):
    torch.set_num_threads(1)
    latents = {"run0": 10, "run1": 10, "run2": 6, "run3": 10, "run4": 10, "run5": 10}
    paths = [tmp_path / name for name in latents]

    def load(path):
        if path.name == "run3":
            raise ValueError("checkpoint is corrupt")
        return random_checkpoint(path, latents[path.name])

    plan = small_plan()
    one = encode_checkpoints(tmp_path / "one.zarr", paths, NoiseImages(), plan=plan, load=load)
    # Packs [run0..run3] (run2 has another num_latent: its own pass) and [run4, run5].
    packed = encode_checkpoints(tmp_path / "packed.zarr", paths, NoiseImages(), plan=plan,
                                load=load, pack=4)
    assert packed.written == one.written and len(packed.written) == 5
    assert packed.failed == one.failed == [(str(paths[3]), "ValueError: checkpoint is corrupt")]
    one_store = open_store(tmp_path / "one.zarr")
    packed_store = open_store(tmp_path / "packed.zarr")
    for name in one.written:
        for kind in ("mean", "sampled"):
            np.testing.assert_allclose(packed_store.codes(name, kind),
                                       one_store.codes(name, kind),
                                       rtol=PACKED_RTOL, atol=PACKED_ATOL)
        np.testing.assert_allclose(packed_store.logvar(name), one_store.logvar(name),
                                   rtol=PACKED_RTOL, atol=PACKED_ATOL)
        np.testing.assert_allclose(packed_store.checkpoints()[name]["kl"],
                                   one_store.checkpoints()[name]["kl"], rtol=PACKED_RTOL)
    assert packed_store.codes(str(paths[2])).shape == (plan.n_points, 6)

    # A checkpoint's packed codes do not depend on its pack-mates (so an encode resumed after a
    # kill, with other packs, writes the same codes): bit for bit on a CPU.
    encode_checkpoints(tmp_path / "pairs.zarr", paths, NoiseImages(), plan=plan, load=load,
                       pack=2)
    pairs_store = open_store(tmp_path / "pairs.zarr")
    for name in one.written:
        for kind in ("mean", "sampled"):
            assert np.array_equal(pairs_store.codes(name, kind), packed_store.codes(name, kind))


def test_a_pack_bounds_its_images_per_pass_without_changing_the_codes(monkeypatch):
    checkpoints = [random_checkpoint(Path(f"run{k}")) for k in range(3)]
    images = np.random.default_rng(0).random((40, *OBSERVATION_SHAPE), dtype=np.float32)
    encoder = PackedEncoder([c.model.encoder for c in checkpoints])
    assert encoder.images_per_pass(256) == 256
    monkeypatch.setattr(packed_encoder, "ACTIVATION_BYTES",
                        3 * 16 * packed_encoder.ACTIVATION_BYTES_PER_IMAGE)
    assert encoder.images_per_pass(256) == 16
    mean, logvar = encoder(images, batch_size=256)
    assert mean.shape == logvar.shape == (3, 40, 10)
    for k, checkpoint in enumerate(checkpoints):
        one_mean, one_logvar = checkpoint.encode(images, batch_size=16)
        np.testing.assert_allclose(mean[k], one_mean, rtol=PACKED_RTOL, atol=PACKED_ATOL)
        np.testing.assert_allclose(logvar[k], one_logvar, rtol=PACKED_RTOL, atol=PACKED_ATOL)


def test_pack_must_be_positive_and_needs_torch_encoders(tmp_path):
    with pytest.raises(ValueError, match="pack must be an integer >= 1; got 0"):
        encode_checkpoints(tmp_path / "reps.zarr", [], NoiseImages(), plan=small_plan(), pack=0)

    class NumpyCheckpoint:
        config = {"observation_shape": list(OBSERVATION_SHAPE), "num_latent": 2}

        def encode(self, observations):
            return observations[:, 0, 0, :].repeat(2, 1), observations[:, 0, 0, :].repeat(2, 1)

    summary = encode_checkpoints(tmp_path / "reps.zarr", [tmp_path / "run0"], NoiseImages(),
                                 plan=small_plan(), load=lambda path: NumpyCheckpoint(), pack=2)
    assert not summary.written
    assert "has no torch model.encoder to pack; encode it with pack=1" in summary.failed[0][1]
    summary = encode_checkpoints(tmp_path / "reps.zarr", [tmp_path / "run0"], NoiseImages(),
                                 load=lambda path: NumpyCheckpoint(), pack=1)
    assert len(summary.written) == 1
