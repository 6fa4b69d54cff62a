"""Training throughput: model-steps/s and memory per model of packs, per method; then a sweep.

    python bench/bench_training.py --quick                 # CPU: packs of 1, 2 and 8
    python bench/bench_training.py --device cuda --json out.json
    fastdis bench training --device cuda --json out.json    # the same, installed

For every method, in one process, side by side on the study's settings (batch 64, 10 latents,
64x64x1 images):

1. today's single model: a pack of one, eager and torch.compile'd (the compile timed apart);
2. packs of ``--pack-sizes`` (1, 8, 32, 64, 128, 256 by default; ``--quick``: 1, 2, 8) with the
   device's default strategy (``loop`` on CPU, ``vmap`` elsewhere; ``--strategies`` adds
   others). A timed step is what the training loop does per update: the counter sampler's
   draw (images gathered from uint8 on the device, noise, shuffle keys) and
   :meth:`fastdis.train.pack.Pack.step` (forward, backward, fused Adam), synchronised on CUDA.
   Memory per model is the CUDA peak over the pack's steps divided by its size.

Then ``fastdis sweep``'s end-to-end rate (:func:`fastdis.train.sweep.run_sweep`: data, logs
and checkpoints included) on the small dSprites look-alike, counter sampling, in packs of
``--sweep-pack``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fastdis.bench._table import Recorder, add_json_argument

from fastdis.data._base import GridDataset
from fastdis.train import METHODS, TrainConfig
from fastdis.train.pack import Pack, default_strategy
from fastdis.train.sampling import CounterSampler


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_grid(num_images=4096):
    """A grid data set of random binary uint8 images (the sampler's cost does not depend on
    what the pixels show)."""
    rng = np.random.default_rng(0)
    images = (rng.random((num_images, 64, 64)) > 0.8).astype(np.uint8)
    return GridDataset("random", images, [num_images], [0], ["index"], [64, 64, 1], binary=True)


def time_pack(method, size, strategy, compiled, args, device, dataset):
    """Seconds per pack step (after warm-up), the first call's seconds, peak bytes per model."""
    configs = [TrainConfig(method=method, seed=seed, batch_size=args.batch_size,
                           data_sampling="counter", compile=compiled,
                           compile_mode=args.compile_mode).resolved() for seed in range(size)]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    pack = Pack(configs, (64, 64, 1), device, strategy)
    sampler = CounterSampler(dataset, configs, pack.generators, device)

    def run(first, count):
        synchronise(device)
        start = time.perf_counter()
        for step in range(first, first + count):
            terms = pack.step(*sampler.draw(step), pack.capacity(step))
        terms["loss"].sum().item()
        synchronise(device)
        return time.perf_counter() - start

    first_call = run(0, 1)
    run(1, args.warmup)
    seconds = run(1 + args.warmup, args.steps) / args.steps
    memory = torch.cuda.max_memory_allocated(device) / size if device.type == "cuda" else None
    return seconds, first_call, memory


def bench_method(method, args, device, dataset):
    eager, _, _ = time_pack(method, 1, "loop", False, args, device, dataset)
    compiled, compile_seconds, _ = time_pack(method, 1, "loop", True, args, device, dataset)
    result = {"single_eager_steps_per_second": 1 / eager,
              "single_compiled_steps_per_second": 1 / compiled,
              "compile_seconds": compile_seconds, "packs": []}
    print(f"{method:13s} single model: eager {1 / eager:8.2f} steps/s, compiled "
          f"{1 / compiled:8.2f} steps/s (compile {compile_seconds:.0f} s)", flush=True)
    for strategy in args.strategies:
        for size in args.pack_sizes:
            try:
                seconds, _, memory = time_pack(method, size, strategy, False, args, device,
                                               dataset)
            except torch.cuda.OutOfMemoryError:
                print(f"{method:13s} {strategy:5s} pack {size:4d}: out of memory", flush=True)
                break
            row = {"strategy": strategy, "size": size,
                   "model_steps_per_second": size / seconds, "bytes_per_model": memory}
            result["packs"].append(row)
            memory_text = "" if memory is None else f", {memory / 2**20:8.1f} MiB per model"
            print(f"{method:13s} {strategy:5s} pack {size:4d}: {size / seconds:9.2f} "
                  f"model-steps/s{memory_text}", flush=True)
    return result


def sweep_rate(args, device):
    """run_sweep over beta-VAE models 0..n-1 (one pack of --sweep-pack), logs and
    checkpoints included."""
    from fastdis.data import make_dsprites
    from fastdis.train.sweep import plan_packs, run_sweep, study_models

    with tempfile.TemporaryDirectory() as tmp:
        make_dsprites(Path(tmp) / "data", small=True)
        overrides = {"data_dir": str(Path(tmp) / "data"), "steps": args.sweep_steps,
                     "batch_size": args.batch_size, "data_sampling": "counter",
                     "device": str(device), "checkpoint_every": args.sweep_steps}
        models = study_models(model_nums=range(args.sweep_pack))
        start = time.perf_counter()
        run_sweep(plan_packs(models, args.sweep_pack), Path(tmp) / "runs", overrides,
                  progress=False)
        seconds = time.perf_counter() - start
    rate = args.sweep_pack * args.sweep_steps / seconds
    print(f"fastdis sweep: {args.sweep_pack} beta_vae models x {args.sweep_steps} steps in "
          f"{seconds:.1f} s: {rate:.2f} model-steps/s end to end", flush=True)
    return {"models": args.sweep_pack, "steps": args.sweep_steps, "seconds": seconds,
            "model_steps_per_second": rate}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pack-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--strategies", nargs="*", default=None,
                        help="pack strategies (default: the device's)")
    parser.add_argument("--quick", action="store_true", help="packs of 1, 2, 8 only")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per row (default: 5 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile-mode", default=None)
    parser.add_argument("--sweep-pack", type=int, default=8)
    parser.add_argument("--sweep-steps", type=int, default=20, help="0 skips the sweep")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = 50 if device.type == "cuda" else 5
    if args.pack_sizes is None:
        args.pack_sizes = [1, 2, 8] if args.quick else [1, 8, 32, 64, 128, 256]
    args.strategies = args.strategies or [default_strategy(device)]
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "timed_steps": args.steps, "warmup": args.warmup,
              "compile_mode": args.compile_mode or "default"}
    print(json.dumps(header), file=sys.stderr)
    dataset = random_grid()
    with contextlib.redirect_stdout(sys.stderr):  # progress; the tables follow on stdout
        results = {method: bench_method(method, args, device, dataset) for method in args.methods}
        sweep = sweep_rate(args, device) if args.sweep_steps > 0 else None
    record_tables(Recorder("training", **header), results, sweep).write_json(args.json)


def record_tables(recorder, results, sweep):
    """The single-model, pack and sweep tables of a run."""
    single = recorder.table("single model", {
        "method": "{}", "single_eager_steps_per_second": "{:.2f}",
        "single_compiled_steps_per_second": "{:.2f}", "compile_seconds": "{:.0f}"}, ["method"])
    for method, result in results.items():
        single.add({key: value for key, value in result.items() if key != "packs"},
                   method=method)
    packs = recorder.table("packs", {
        "method": "{}", "strategy": "{}", "size": "{}", "model_steps_per_second": "{:.2f}",
        "mib_per_model": "{:.1f}"}, ["method", "strategy", "size"])
    for method, result in results.items():
        for row in result["packs"]:
            memory = row["bytes_per_model"]
            packs.add(row, method=method, mib_per_model=None if memory is None else memory / 2**20)
    if sweep is not None:
        recorder.table("sweep", {"models": "{}", "steps": "{}", "seconds": "{:.1f}",
                                 "model_steps_per_second": "{:.2f}"},
                       ["models", "steps"]).add(sweep)
    return recorder


if __name__ == "__main__":
    main()
