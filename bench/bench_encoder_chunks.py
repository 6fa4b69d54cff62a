"""Per-image cost of the study's conv encoder against the number of images per call.

The compat layer hands ``representation_function`` chunks of observations; with a real encoder
the chunk size decides the metrics' speed. This measures a fastdis checkpoint's ``mean``
representation (dlib's ``conv_encoder``, 10 latents, 64x64x1 inputs, CPU, eval mode) on
dSprites-like binary images: for each chunk size, the images are encoded call after call, and
the rounds over sizes are interleaved so that a busy machine slows every size alike. Reported:
the median over rounds of microseconds per image, and its ratio to the reference's batch of 64.

Usage::

    python bench/bench_encoder_chunks.py                  # torch's default threads
    python bench/bench_encoder_chunks.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from fastdis.train.checkpoint import Checkpoint
from fastdis.train.models import GaussianVAE

SIZES = (1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def study_encoder_representation():
    """The ``mean`` representation of a freshly initialised study model (speed only)."""
    model = GaussianVAE([64, 64, 1], 10)
    model.reset_parameters(torch.Generator().manual_seed(0))
    checkpoint = Checkpoint(path=None, config={"observation_shape": [64, 64, 1], "step": 0},
                            model=model.eval())
    return checkpoint.representation_function("mean")


def seconds_per_image(representation, images, chunk):
    start = time.perf_counter()
    for first in range(0, len(images) - chunk + 1, chunk):
        representation(images[first:first + chunk])
    return (time.perf_counter() - start) / (len(images) // chunk * chunk)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4096, help="images per size and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    images = (np.random.RandomState(0).rand(args.images, 64, 64, 1) > 0.85).astype(np.float32)
    representation = study_encoder_representation()
    sizes = [chunk for chunk in SIZES if chunk <= args.images]
    for chunk in sizes:  # warm-up: each input shape's first call sets up its kernels
        representation(images[:chunk])
    timings = {chunk: [] for chunk in sizes}
    for round_number in range(args.rounds):
        for chunk in sizes:
            timings[chunk].append(seconds_per_image(representation, images, chunk))
        print(f"# round {round_number + 1} done", file=sys.stderr, flush=True)
    medians = {chunk: float(np.median(times)) for chunk, times in timings.items()}
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.images} images x {args.rounds} rounds")
    print("| images per call | us per image (median) | vs 64 | rounds (us) |")
    print("|---|---|---|---|")
    for chunk, median in medians.items():
        rounds = ", ".join(f"{t * 1e6:.0f}" for t in timings[chunk])
        print(f"| {chunk} | {median * 1e6:.0f} | {median / medians[64]:.2f} | {rounds} |")


if __name__ == "__main__":
    main()
