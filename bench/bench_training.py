"""Training steps/s, eager against torch.compile, for the six methods; then a 1,000-step run.

    python bench/bench_training.py                       # CPU, 1 thread, every method
    python bench/bench_training.py --device cuda --json out.json

Each method is timed side by side in one process on the study's settings (batch 64, 10
latents, conv encoder / deconv decoder, 64x64x1 images): a fresh model and optimisers per
mode, the same pre-drawn batches (data sampling is excluded from the timing; it is the same
Python loop in both modes), ``warmup`` untimed steps, then ``steps`` timed steps of
``fastdis.train.training.train_step`` (forward, backward, Adam), synchronised on CUDA. The
compiled mode's first call (the compile) is timed on its own.

Then ``fastdis.train.train`` runs ``--run-steps`` beta-VAE steps on the small dSprites
look-alike (``fastdis.data.make_dsprites(small=True)``, data sampling included, eager) and
reports the loss at the first and last logging steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fastdis.train import METHODS, TrainConfig, train
from fastdis.train.models import GaussianVAE
from fastdis.train.objectives import Objective, compile_objective
from fastdis.train.training import draw_step_noise, make_optimizers, train_step


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(config, device, compiled, compile_mode):
    """A fresh model, its optimisers and a callable running one training step on batch i."""
    generator = torch.Generator().manual_seed(config.seed)
    model = GaussianVAE((64, 64, 1), config.num_latent,
                        discriminator=config.method == "factor_vae")
    model.reset_parameters(generator)
    model.to(device)
    optimizers = make_optimizers(config, model)
    objective = Objective(config, model)
    if compiled:
        objective = compile_objective(objective, compile_mode)
    capacity = torch.tensor(2.5, device=device) if config.method == "annealed_vae" else None

    def step(images):
        noise, shuffle_keys = draw_step_noise(config, generator, device)
        return train_step(objective, optimizers, images, noise, shuffle_keys, capacity)

    return step


def time_steps(step, batches, count, device):
    synchronise(device)
    start = time.perf_counter()
    for i in range(count):
        terms = step(batches[i % len(batches)])
    terms["loss"].item()  # the last step's result: forces the work to finish
    synchronise(device)
    return (time.perf_counter() - start) / count


def bench_method(method, batches, args, device):
    config = TrainConfig(method=method, batch_size=args.batch_size,
                         factor_vae_step_counting="updates").resolved()
    result = {}
    for mode in ("eager", "compiled"):
        step = make_step(config, device, mode == "compiled", args.compile_mode)
        start = time.perf_counter()
        step(batches[0])  # eager: allocator warm-up; compiled: the compile itself
        synchronise(device)
        first_call = time.perf_counter() - start
        time_steps(step, batches, args.warmup, device)
        seconds = time_steps(step, batches, args.steps, device)
        result[f"{mode}_ms_per_step"] = 1000 * seconds
        result[f"{mode}_steps_per_second"] = 1 / seconds
        if mode == "compiled":
            result["compile_seconds"] = first_call
    result["speedup"] = result["eager_ms_per_step"] / result["compiled_ms_per_step"]
    return result


def loss_run(args, device):
    """train() for --run-steps beta-VAE steps on the small dSprites look-alike."""
    from fastdis.data import make_dsprites

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        if args.data_dir is None:
            make_dsprites(data_dir, small=True)
        config = TrainConfig(method="beta_vae", dataset="dsprites_full", data_dir=str(data_dir),
                             steps=args.run_steps, log_every=max(args.run_steps // 10, 1),
                             checkpoint_every=args.run_steps, device=str(device))
        start = time.perf_counter()
        run_dir = train(config, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - start
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {"method": "beta_vae", "dataset": "dsprites_full (make_dsprites small look-alike)",
            "steps": args.run_steps, "seconds": seconds, "steps_per_second":
            args.run_steps / seconds, "losses": [(line["step"], line["loss"]) for line in log]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per mode (default: 20 on CPU, 200 on CUDA)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode (default: torch's default)")
    parser.add_argument("--run-steps", type=int, default=1000,
                        help="steps of the beta-VAE loss run; 0 skips it")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the dSprites file (default: render the look-alike)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = 200 if device.type == "cuda" else 20

    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(args.batch_size, 1, 64, 64, generator=generator) > 0.8).float()
               .to(device) for _ in range(4)]
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "timed_steps": args.steps, "warmup": args.warmup,
              "compile_mode": args.compile_mode or "default"}
    print(json.dumps(header), file=sys.stderr)
    results = {}
    print(f"{'method':14s} {'eager ms':>9s} {'compiled ms':>11s} {'speed-up':>8s} "
          f"{'compile s':>9s}")
    for method in args.methods:
        results[method] = bench_method(method, batches, args, device)
        r = results[method]
        print(f"{method:14s} {r['eager_ms_per_step']:9.2f} {r['compiled_ms_per_step']:11.2f} "
              f"{r['speedup']:7.2f}x {r['compile_seconds']:9.1f}", flush=True)
    run = loss_run(args, device) if args.run_steps > 0 else None
    if run is not None:
        first, last = run["losses"][0], run["losses"][-1]
        print(f"beta_vae {run['steps']} steps on the small dSprites look-alike: "
              f"{run['seconds']:.1f} s ({run['steps_per_second']:.1f} steps/s, data sampling "
              f"included); loss {first[1]:.1f} at step {first[0]} -> {last[1]:.1f} at step "
              f"{last[0]}")
    if args.json is not None:
        args.json.write_text(json.dumps({**header, "methods": results, "run": run}, indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
