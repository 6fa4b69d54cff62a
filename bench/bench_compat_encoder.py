"""The compat metrics with a trained encoder, beside the cheap representation, both sides.

What a disentanglement_lib user with a trained model runs: the data are fastdis' dSprites
look-alike (the CI-sized grid, rendered into a temporary folder) and the representation is the
``mean`` of a fastdis checkpoint (the study's conv encoder, trained for 64 steps;
``--checkpoint RUN_DIR`` scores a run of yours), where encoding dominates. Each row shows
bench_metrics' cheap representation (synthetic factors) beside the encoder, the reference and
fastdis' drop-in called alike (the study's gin bindings, the same keyword arguments,
``RandomState(0)``, numpy's global RNG seeded), fastdis timed warm after one first call.

Every compat metric runs: the study's (bench_metrics' list), then fairness (boosted trees, as
the reference's fairness study), the reduced and strong downstream tasks (boosted trees; the
reduced one removes the code DCI finds most important) and the unified scores of the
reference's three matrices (boosted-tree importance, mutual information, SVM accuracy), which
have no study configuration.

Sample sizes are the registry's study sizes times ``--scale``, each raised to the metric's
floor in :data:`MINIMUM_SIZES` where the scaled one cannot score: the sizes column gives what
ran. The floors keep a small-scale run to minutes: the downstream logistic regression's
5-fold cross-validation needs at least 5 training points (the floor is the study's smallest
set, 10); explicitness needs every class of each factor in its test set (40 orientations on
the cheap side); the reduced and strong downstream tasks run with the trained-checkpoint
parity test's 60 training and 40 test points (scaled, their boosted trees would fit 2 and 10
points: a measure of per-call overhead, not of the tasks).

fastdis' warm runs alternate with the reference's (``--repeat N --reference-repeat N``:
medians of N each), so a change of the machine's load weighs on both sides; on a shared
machine take N = 3 (on the loaded 2-core VM a full run then took 23 minutes, with N = 2 13).
After the table the encoder's call size chosen by the compat layer is
printed with what it measured.

Usage::

    python bench/bench_compat_encoder.py --repeat 3 --reference-repeat 3   # the recorded table
    python bench/bench_compat_encoder.py                   # every row once, scale 0.01
    python bench/bench_compat_encoder.py --scale 0.1 -m modularity_explicitness
    python bench/bench_compat_encoder.py --json run.json   # also save the tables
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from fastdis.bench._table import Recorder, add_json_argument, load_reference, note
from fastdis.bench.bench_metrics import (
    BENCH_METRICS,
    add_side_by_side_arguments,
    gin_call,
    max_abs_delta,
    reference_module,
    study_arguments,
)
from threadpoolctl import threadpool_limits

from fastdis.demo import SyntheticFactors, representation

#: The study's metrics, then the drop-in's others.
COMPAT_METRICS = [*BENCH_METRICS, "fairness", "reduced_downstream_task",
                  "strong_downstream_task", "unified_scores"]

#: Per metric, the smallest size of each argument that scores on both data sets (a list of
#: training sizes is floored element by element, duplicates merged).
MINIMUM_SIZES = {
    "modularity_explicitness": {"num_train": 1_000, "num_test": 500},
    "downstream_task_logistic_regression": {"num_train": 10},
    "reduced_downstream_task": {"num_train": 60, "num_test": 40},
    "strong_downstream_task": {"num_train": 60, "num_test": 40},
}

#: unified_scores has no study configuration: the bench scores all three reference matrices.
UNIFIED_MATRIX_FNS = ("importance_gbt_matrix", "mutual_information_matrix",
                      "accuracy_svm_matrix")


def bench_arguments(name, scale):
    """The keyword arguments ``name`` runs with: study sizes × ``scale``, raised to floors."""
    kwargs = study_arguments(name, scale)
    for key, floor in MINIMUM_SIZES.get(name, {}).items():
        value = kwargs[key]
        kwargs[key] = (sorted({max(floor, v) for v in value}) if isinstance(value, list)
                       else max(floor, value))
    if name == "unified_scores":
        unified = reference_module("unified_scores")
        kwargs["matrix_fns"] = [getattr(unified, fn) for fn in UNIFIED_MATRIX_FNS]
    return kwargs


def describe_sizes(kwargs):
    """``num_train=[10, 100] num_test=50``: the sample sizes among ``kwargs``."""
    return " ".join(f"{key}={value}" for key, value in kwargs.items()
                    if key.startswith("num_") and key != "num_factors_to_remove")


def _time_both_sides(name, data, rep, kwargs, args):
    """(reference s, fastdis warm s (medians), max |delta|, fastdis first call s).

    After fastdis' first call the warm fastdis runs and the reference runs alternate, so a
    change in the machine's load during the row weighs on both sides alike.
    """
    cold_start = time.perf_counter()
    gin_call(name, data, rep, kwargs, side="fastdis")  # JIT / cache load / chunk-size search
    first = time.perf_counter() - cold_start
    warm, ref_runs = [], []
    for round_index in range(max(1, args.repeat, args.reference_repeat)):
        if round_index < max(1, args.repeat):
            result, seconds = gin_call(name, data, rep, kwargs, side="fastdis")
            warm.append(seconds)
        if round_index < max(1, args.reference_repeat):
            with threadpool_limits(args.reference_blas_threads, user_api="blas"):
                reference, ref_seconds = gin_call(name, data, rep, kwargs)
            ref_runs.append(ref_seconds)
    return (float(np.median(ref_runs)), float(np.median(warm)),
            max_abs_delta(reference, result), first)


#: Steps of the bench's own checkpoint. After 8 steps every mean code still varies with a
#: standard deviation under the study's FactorVAE pruning threshold (0.05), so FactorVAE
#: returned before drawing a group; after 64 (about a second) most codes pass it.
TRAINING_STEPS = 64


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
        config = TrainConfig(batch_size=16, steps=TRAINING_STEPS, log_every=TRAINING_STEPS,
                             checkpoint_every=TRAINING_STEPS, data_dir=str(folder))
        checkpoint_dir = train(config, folder / "run", progress=False)
        torch.set_num_threads(threads)
    return data, load_checkpoint(checkpoint_dir).representation_function("mean")


def cheap_representation():
    """(synthetic dSprites-sized factors, bench_metrics' entangled representation)."""
    data = SyntheticFactors()
    # the reference's unified scores read factor names (for its plots)
    data.factor_names = [f"factor_{i}" for i in range(data.num_factors)]
    return data, representation("entangled")


def _chosen_call_size(rep):
    """What the compat layer's chunk-size search chose for ``rep`` (and what it measured)."""
    from fastdis.compat.disentanglement_lib import utils

    tuner = utils._tuner_for(rep)
    measured = ", ".join(f"{size}: {min(times) * 1e6:.0f}"
                         for size, times in getattr(tuner, "_seconds_per_row", {}).items())
    state = "still searching, next" if getattr(tuner, "chosen", 0) is None else "chosen"
    return (f"{tuner.size} observations each ({state}; fastest µs per observation by size: "
            f"{measured or 'none, set by hand'})")


def _side_cells(name, data, rep, kwargs, args, prefix):
    try:
        ref_seconds, fast, delta, first = _time_both_sides(name, data, rep, kwargs, args)
    except ValueError as exc:  # a sample too small for the metric: the reference fails alike
        return {f"{prefix}first_call_s": f"cannot score: {str(exc).split(':')[0]}"}
    return {f"{prefix}dlib_s": ref_seconds, f"{prefix}fastdis_s": fast,
            f"{prefix}ratio": ref_seconds / fast, f"{prefix}max_abs_delta": delta,
            f"{prefix}first_call_s": first}


def _add_total(table, prefixes):
    total = {"metric": "**total**"}
    for prefix in prefixes:
        for side in ("dlib_s", "fastdis_s"):
            total[prefix + side] = sum(row.get(prefix + side) or 0.0 for row in table.rows)
        total[prefix + "ratio"] = total[prefix + "dlib_s"] / max(total[prefix + "fastdis_s"],
                                                                1e-12)
    table.add(total)


def _columns(prefixes):
    columns = {"metric": "{}", "sizes": "{}"}
    for prefix in prefixes:
        columns.update({prefix + "dlib_s": "{:.3f}", prefix + "fastdis_s": "{:.3f}",
                        prefix + "ratio": "{:.2f}x", prefix + "max_abs_delta": "{:.2e}",
                        prefix + "first_call_s": "{:.2f}"})
    return columns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_side_by_side_arguments(parser, COMPAT_METRICS, default_scale=0.01)
    parser.add_argument("--reference-repeat", type=int, default=1,
                        help="reference runs (median)")
    parser.add_argument("--checkpoint", default=None,
                        help="the run directory whose mean representation to score "
                             "(default: train one for a few steps)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="skip the cheap representation's columns")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if load_reference() is None:
        raise SystemExit("this bench compares with disentanglement_lib: install it")
    runs = {"encoder_": trained_encoder(args.checkpoint)}
    if not args.encoder_only:
        runs = {"": cheap_representation(), **runs}
    floors = "; ".join(f"{name} {describe_sizes(sizes)}" for name, sizes in MINIMUM_SIZES.items())
    recorder = Recorder("compat_encoder", scale=args.scale, load_average=os.getloadavg())
    table = recorder.table("compat_encoder", _columns(runs), ["metric"], heading=(
        f"# {recorder.setup['date']}, {recorder.setup['machine']}, load average "
        f"{os.getloadavg()[0]:.1f} at the start; scale {args.scale}, floors: {floors}"))
    for name in args.metric or COMPAT_METRICS:
        note(f"  {name}")
        kwargs = bench_arguments(name, args.scale)
        row = {"metric": name, "sizes": describe_sizes(kwargs)}
        for prefix, (data, rep) in runs.items():
            row.update(_side_cells(name, data, rep, kwargs, args, prefix))
        table.add(row)
    _add_total(table, runs)
    print(f"\nLoad average at the end {os.getloadavg()[0]:.1f}; the encoder's calls: "
          f"{_chosen_call_size(runs['encoder_'][1])}")
    recorder.write_json(args.json)


if __name__ == "__main__":
    main()
