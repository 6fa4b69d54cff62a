"""Throughput of ``fastdis encode`` (checkpoints/s) for several pack sizes, side by side.

``--checkpoints`` run directories of the study's model (``conv_encoder`` on 64x64x1 images,
10 latents, Glorot weights, biases drawn; written with ``fastdis.train``'s checkpoint format) are
encoded into a fresh store on a plan of about ``--points`` points, once per pack size, through
:func:`fastdis.batch.encode_checkpoints` as the CLI calls it: loading each checkpoint file,
rendering the plan's observations once, encoding and writing mean and sampled codes. The
observations are uniform noise images (rendering is not what is measured; the encoder does
not care what the pixels show). Every pack's codes are checked against pack 1's (float32
rounding: ``|a - b| <= 1e-6 + 1e-5 |b|``).

Usage::

    python bench/bench_encode.py --checkpoints 32 --points 2000 --packs 1,8,32
    python bench/bench_encode.py --device cuda --checkpoints 256 --points 15000 --packs 1,64,256
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

#: dSprites' factor sizes: the plan is drawn as for the study's first data set.
FACTOR_SIZES = (3, 6, 40, 32, 32)
OBSERVATION_SHAPE = (64, 64, 1)
#: Points of a plan for MIG alone at scale 1.
STUDY_POOL = 10_000
#: Multiply-adds of one image through conv_encoder (e1..e4, e5, means and log_var).
ENCODER_MACS = (32 * 32 * 32 * 16 + 16 * 16 * 32 * 512 + 8 * 8 * 64 * 128 + 4 * 4 * 64 * 256
                + 1024 * 256 + 2 * 256 * 10)


def noise_images():
    from fastdis.demo import SyntheticFactors

    class NoiseImages(SyntheticFactors):
        @property
        def observation_shape(self):
            return list(OBSERVATION_SHAPE)

        def sample_observations_from_factors(self, factors, random_state):
            return random_state.random_sample((len(factors), *OBSERVATION_SHAPE)).astype(
                np.float32)

    return NoiseImages(FACTOR_SIZES)


def random_study_model(seed: int, num_latent: int = 10):
    """The study's model with Glorot weights and, unlike a fresh one, non-zero encoder biases
    (trained biases are not zero, and zero biases hide rounding differences)."""
    import torch

    from fastdis.train.models import GaussianVAE

    model = GaussianVAE(OBSERVATION_SHAPE, num_latent)
    generator = torch.Generator().manual_seed(seed)
    model.reset_parameters(generator)
    with torch.no_grad():
        for name, parameter in model.encoder.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1, generator=generator)
    return model.eval()


def write_checkpoints(root: Path, count: int) -> list[Path]:
    import torch

    from fastdis.train import TrainConfig
    from fastdis.train.checkpoint import random_state_to_tensors, save_checkpoint

    runs = []
    for seed in range(count):
        model = random_study_model(seed)
        streams = {"torch_generator": torch.Generator().manual_seed(seed).get_state(),
                   "data_random_state": random_state_to_tensors(np.random.RandomState(seed))}
        run = root / f"run{seed:04d}"
        run.mkdir(parents=True)
        save_checkpoint(run, config=TrainConfig(method="beta_vae", seed=seed), step=1,
                        observation_shape=OBSERVATION_SHAPE, model_state=model.state_dict(),
                        optimizer_states=[], streams=streams)
        runs.append(run)
    return runs


def warm_up(runs, data, plan, packs, args):
    """One untimed encode per pack size on a few points, so that no row pays for the first
    calls' allocations and convolution set-up."""
    from fastdis.batch import make_plan
    from fastdis.batch.encode import encode_checkpoints

    small = make_plan(data, ["mig"], seed=1, scale=0.005)
    with tempfile.TemporaryDirectory() as tmp:
        for pack in packs:
            encode_checkpoints(Path(tmp) / f"warm{pack}.zarr", runs[:pack], data, plan=small,
                               pack=pack, encode_options={"device": args.device,
                                                          "batch_size": args.batch_size})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=32)
    parser.add_argument("--points", type=int, default=2000, help="plan points (about)")
    parser.add_argument("--packs", default="1,8,32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from fastdis.batch import make_plan, open_store
    from fastdis.batch.encode import encode_checkpoints

    if args.threads:
        torch.set_num_threads(args.threads)
    packs = [int(p) for p in args.packs.split(",")]
    data = noise_images()
    plan = make_plan(data, ["mig"], seed=0, scale=args.points / STUDY_POOL)
    tmp = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        runs = write_checkpoints(tmp / "runs", args.checkpoints)
        print(f"# {args.checkpoints} checkpoints, plan of {plan.n_points} points, device "
              f"{args.device}, torch threads {torch.get_num_threads()}")
        print("| pack | seconds | checkpoints/s | image-models/s | GFLOP/s | max diff vs pack 1 |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        warm_up(runs, data, plan, packs, args)
        reference = None
        for pack in packs:
            store = tmp / f"pack{pack}.zarr"
            start = time.perf_counter()
            summary = encode_checkpoints(
                store, runs, data, plan=plan, pack=pack,
                encode_options={"device": args.device, "batch_size": args.batch_size})
            seconds = time.perf_counter() - start
            if summary.failed:
                raise RuntimeError(f"pack {pack}: {summary.failed[0]}")
            means = np.stack([open_store(store).codes(name) for name in summary.written])
            reference = means if reference is None else reference
            diff = float(np.max(np.abs(means - reference)))
            if not np.allclose(means, reference, rtol=1e-5, atol=1e-6):
                raise RuntimeError(f"pack {pack}: codes differ from pack {packs[0]}'s by {diff}")
            rate = args.checkpoints / seconds
            image_models = rate * plan.n_points
            print(f"| {pack} | {seconds:.2f} | {rate:.2f} | {image_models:,.0f} | "
                  f"{2 * ENCODER_MACS * image_models / 1e9:.1f} | {diff:.1e} |", flush=True)
            shutil.rmtree(store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
