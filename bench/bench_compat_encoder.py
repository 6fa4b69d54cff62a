"""The compat metrics with a trained encoder, beside the cheap representation, both sides.

What a disentanglement_lib user with a trained model runs: the data are fastdis' dSprites
look-alike (the CI-sized grid, rendered into a temporary folder) and the representation is the
``mean`` of a fastdis checkpoint (the study's conv encoder, trained for a few steps;
``--checkpoint RUN_DIR`` scores a run of yours), where encoding dominates. Each row shows
bench_metrics' cheap representation (synthetic factors) beside the encoder, the reference and
fastdis timed in one run with the protocol of :mod:`bench_metrics`.

Usage::

    python bench/bench_compat_encoder.py --scale 0.01
    python bench/bench_compat_encoder.py --scale 0.1 -m modularity_explicitness
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from fastdis.bench._table import load_reference
from fastdis.bench.bench_metrics import BENCH_METRICS, _fastdis_call, _reference_call, max_abs_delta
from threadpoolctl import threadpool_limits

from fastdis.demo import SyntheticFactors, representation


def _time_both_sides(name, data, rep, args):
    """(reference seconds, fastdis warm seconds (medians), max |delta|, fastdis first call s)."""
    cold_start = time.perf_counter()
    _fastdis_call(name, data, rep, args.scale)  # JIT / cache load / chunk-size search
    first = time.perf_counter() - cold_start
    warm = []
    for _ in range(max(1, args.repeat)):
        result, seconds = _fastdis_call(name, data, rep, args.scale)
        warm.append(seconds)
    ref_runs = []
    for _ in range(max(1, args.reference_repeat)):
        with threadpool_limits(args.reference_blas_threads, user_api="blas"):
            reference, ref_seconds = _reference_call(name, data, rep, args.scale)
        ref_runs.append(ref_seconds)
    return (float(np.median(ref_runs)), float(np.median(warm)),
            max_abs_delta(reference, result), first)


def trained_encoder(checkpoint_dir=None):
    """(dSprites look-alike data, a checkpoint's mean representation)."""
    import torch

    from fastdis.data import load_dataset, make_dsprites
    from fastdis.train import TrainConfig, load_checkpoint, train

    folder = Path(tempfile.mkdtemp(prefix="fastdis-bench-"))
    make_dsprites(folder, small=True)
    data = load_dataset("dsprites_full", data_dir=folder)
    if checkpoint_dir is None:
        threads = torch.get_num_threads()
        config = TrainConfig(batch_size=16, steps=8, log_every=8, checkpoint_every=8,
                             data_dir=str(folder))
        checkpoint_dir = train(config, folder / "run", progress=False)
        torch.set_num_threads(threads)
    return data, load_checkpoint(checkpoint_dir).representation_function("mean")


def _cells(name, run_data, run_rep, args, decimals):
    try:
        ref_seconds, fast, delta, first = _time_both_sides(name, run_data, run_rep, args)
    except ValueError as exc:  # e.g. too few points at a small --scale
        return ["-"] * 4 + [f"cannot score: {str(exc).split(':')[0]}"], (0.0, 0.0)
    return ([f"{ref_seconds:.3f}", f"{fast:.3f}", f"{ref_seconds / fast:.{decimals}f}x",
             f"{delta:.2e}", f"{first:.2f}"], (ref_seconds, fast))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--metric", action="append", choices=BENCH_METRICS)
    parser.add_argument("--scale", type=float, default=0.01,
                        help="scale the study's sample sizes (default 0.01)")
    parser.add_argument("--repeat", type=int, default=1, help="warm fastdis runs (median)")
    parser.add_argument("--reference-repeat", type=int, default=1,
                        help="reference runs (median)")
    parser.add_argument("--reference-blas-threads", type=int, default=None)
    parser.add_argument("--checkpoint", default=None,
                        help="the run directory whose mean representation to score "
                             "(default: train one for a few steps)")
    args = parser.parse_args(argv)
    if load_reference() is None:
        raise SystemExit("this bench compares with disentanglement_lib: install it")
    runs = [(SyntheticFactors(), representation("entangled")), trained_encoder(args.checkpoint)]
    print(f"# {platform.processor() or platform.machine()}, scale {args.scale}", flush=True)
    header = ["metric", "dlib s", "fastdis s", "ratio", "max |delta|", "first call s",
              "encoder: dlib s", "fastdis s", "ratio", "max |delta|", "first call s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    totals = np.zeros(4)  # reference, fastdis; then the same with the encoder
    for name in args.metric or BENCH_METRICS:
        cells = []
        for k, (run_data, run_rep) in enumerate(runs):
            row, seconds = _cells(name, run_data, run_rep, args, 2 if k else 1)
            cells += row
            totals[2 * k : 2 * k + 2] += seconds
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print(f"| **total** | {totals[0]:.1f} | {totals[1]:.1f} | {totals[0] / totals[1]:.1f}x | | "
          f"| {totals[2]:.1f} | {totals[3]:.1f} | {totals[2] / totals[3]:.2f}x | | |")


if __name__ == "__main__":
    main()
