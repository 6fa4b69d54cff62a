"""End-to-end throughput of batch scoring (``fastdis score``) against the reference.

A synthetic representation store: dSprites-like factors [3, 6, 40, 32, 32], an evaluation plan
of N = 10,000 points (the study sizes times 2/3: 6,667 train + 3,333 test points; BetaVAE and
FactorVAE groups of 64 indexed into them), ``--checkpoints`` checkpoints of D = 10 codes (mean
and sampled), each a different mix of disentangled / entangled / noise codes
(``fastdis.demo.representation``).

Measured:

* store: write time (``write_codes``), size on disk, time to read every code array back;
* ``score_store`` on the study suite without the boosted-tree metrics, on local processes
  (``--workers``) and on a Dask ``LocalCluster`` of two single-threaded worker processes on
  loopback (same numbers required, checked bit for bit);
* the boosted-tree metrics (DCI and boosted-tree downstream) on ``--gbt-checkpoints`` of them,
  scaled to the whole store;
* with ``--sharing-representations N``, instead: the study suite and every plannable metric
  scored per representation with and without :func:`fastdis.metrics.shared_fits` (the fits
  several metrics share made once), interleaved in one process on one thread;
* the reference, disentanglement_lib 1.5, scoring the same representations checkpoint by
  checkpoint with its own protocol at the same sizes, on ``--reference-checkpoints`` of them
  (it samples and fits from scratch per metric), scaled to the store.

Usage::

    python bench/bench_batch.py --checkpoints 50
    python bench/bench_batch.py --checkpoints 1000 --gbt-checkpoints 20 --reference-checkpoints 2
    fastdis bench batch --json run.json -- --checkpoints 50
    python bench/bench_batch.py --sharing-representations 2 --sharing-scale 0.1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from fastdis.bench._table import Recorder, add_json_argument, load_reference, note

SCALE = 2 / 3  # 10,000 + 5,000 study points -> a 10,000-point plan


def build_store(path, n_checkpoints):
    from fastdis.batch import make_plan, write_codes
    from fastdis.demo import SyntheticFactors, representation
    from fastdis.metrics import study_metrics

    data = SyntheticFactors()
    plan = make_plan(data, [spec.name for spec in study_metrics()], seed=0, scale=SCALE)
    kinds = ("disentangled", "entangled", "noise")
    start = time.perf_counter()
    for i in range(n_checkpoints):
        rs = np.random.RandomState(i)
        weights = rs.dirichlet(np.ones(3))
        mean = sum(w * representation(kind, seed=i)(plan.factors)
                   for w, kind in zip(weights, kinds, strict=True)).astype(np.float32)
        sampled = mean + 0.1 * rs.standard_normal(mean.shape).astype(np.float32)
        write_codes(path, f"model-{i:04d}", {"mean": mean, "sampled": sampled},
                    {"method": kinds[i % 3], "beta": float(1 + i % 4), "seed": i // 12},
                    plan=plan)
    return plan, time.perf_counter() - start


def run(args):
    import numba

    from fastdis.batch import open_store, score_store
    from fastdis.batch.store import store_size_bytes
    from fastdis.metrics import study_metrics

    recorder = Recorder("batch", workers=args.workers, checkpoints=args.checkpoints,
                        numba_threads=numba.get_num_threads(), score_task_numba_threads=1)
    table = recorder.table("batch scoring", {
        "stage": "{}", "seconds": "{:.2f}", "per_representation_s": "{:.3f}",
        "detail": "{}"}, ["stage"])
    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    store_path = work / "reps.zarr"
    plan, write_s = build_store(store_path, args.checkpoints)
    store = open_store(store_path)
    start = time.perf_counter()
    total = sum(store.codes(name, r).nbytes for name in store.names() for r in ("mean",
                                                                                "sampled"))
    read_s = time.perf_counter() - start
    size = store_size_bytes(store_path)
    n_rep = 2 * args.checkpoints
    table.add(stage="store write", seconds=write_s,
              detail=f"plan of {plan.n_points} points; {args.checkpoints} checkpoints x 2 "
              f"representations, {size / 1e6:.1f} MB on disk ({total / 1e6:.1f} MB raw), "
              f"{total / 1e6 / write_s:.0f} MB/s")
    table.add(stage="store read", seconds=read_s, detail=f"{total / 1e6 / read_s:.0f} MB/s")

    fast = [spec.name for spec in study_metrics() if not spec.boosted_trees]
    boosted = [spec.name for spec in study_metrics() if spec.boosted_trees]
    results = {}
    start = time.perf_counter()
    local = score_store(store_path, work / "local", metrics=fast, workers=args.workers)
    results["local"] = time.perf_counter() - start
    table.add(stage="local processes", seconds=results["local"],
              per_representation_s=results["local"] / n_rep,
              detail=f"{args.workers} processes, {len(fast)} metrics")

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        start = time.perf_counter()
        remote = score_store(store_path, work / "dask", metrics=fast,
                             scheduler=cluster.scheduler_address)
        results["dask"] = time.perf_counter() - start
    columns = ["checkpoint", "representation", "metric", "key"]
    same = np.array_equal(local.sort_values(columns)["value"].to_numpy(),
                          remote.sort_values(columns)["value"].to_numpy(), equal_nan=True)
    table.add(stage="dask LocalCluster 2x1", seconds=results["dask"],
              per_representation_s=results["dask"] / n_rep, detail=f"identical to local: {same}")

    gbt_store = work / "gbt.zarr"
    build_store(gbt_store, args.gbt_checkpoints)
    start = time.perf_counter()
    score_store(gbt_store, work / "gbt", metrics=boosted, workers=args.workers,
                representations=["mean"])
    gbt_s = (time.perf_counter() - start) / args.gbt_checkpoints
    table.add(stage="boosted trees", per_representation_s=gbt_s,
              detail=f"{', '.join(boosted)}; {args.workers} processes")

    per_rep_fast = results["local"] / n_rep
    full_1000 = 1000 * 2 * (per_rep_fast + gbt_s)
    fast_1000 = 1000 * 2 * per_rep_fast
    table.add(stage="projected 1,000 checkpoints x 2, study suite", seconds=full_1000,
              detail=f"{full_1000 / 60:.0f} min")
    table.add(stage="projected 1,000 checkpoints x 2, without boosted trees", seconds=fast_1000,
              detail=f"{fast_1000 / 60:.1f} min")

    if args.reference_checkpoints and load_reference() is not None:
        from fastdis.bench.bench_metrics import _reference_call

        from fastdis.demo import SyntheticFactors, representation

        reference = {True: 0.0, False: 0.0}
        for i in range(args.reference_checkpoints):
            rep = representation("entangled", seed=i)
            for name in [spec.name for spec in study_metrics()]:
                if name in boosted and not args.reference_gbt:
                    continue
                _, seconds = _reference_call(name, SyntheticFactors(), rep, SCALE)
                reference[name in boosted] += seconds
                note(f"  reference {name}: {seconds:.1f} s")
        ref_fast = reference[False] / args.reference_checkpoints
        table.add(stage="reference without boosted trees", per_representation_s=ref_fast,
                  detail=f"1 process: {ref_fast / per_rep_fast:.0f}x slower than fastdis local "
                  f"({args.workers} processes)")
        if args.reference_gbt:
            ref_gbt = reference[True] / args.reference_checkpoints
            table.add(stage="reference boosted trees", per_representation_s=ref_gbt,
                      detail=f"{ref_gbt / gbt_s:.0f}x slower than fastdis")
    shutil.rmtree(work, ignore_errors=True)
    recorder.write_json(args.json)


def sharing_cost(args):
    """Seconds per representation of the study suite and of every plannable metric, scored
    with and without :func:`fastdis.metrics.shared_fits`, interleaved (one process, numba and
    BLAS on one thread, as the engine's workers), on ``--sharing-representations`` mixes."""
    import contextlib

    import numba

    from fastdis._parallel import single_threaded_blas
    from fastdis.batch import make_plan
    from fastdis.demo import SyntheticFactors, representation
    from fastdis.metrics import shared_fits, study_metrics

    suites = {"study": [spec.name for spec in study_metrics()]}
    plan = make_plan(SyntheticFactors(), seed=0, scale=args.sharing_scale)
    suites["all"] = list(plan.metrics)
    numba.set_num_threads(1)
    seconds = {(suite, mode): [] for suite in suites for mode in ("separate", "shared")}
    results = {}
    with single_threaded_blas():
        for name in suites["all"]:  # compile every kernel before timing
            plan.score(name, representation("entangled", seed=99)(plan.factors))
        for i in range(args.sharing_representations):
            codes = representation("entangled", seed=i)(plan.factors).astype(np.float32)
            for suite, names in suites.items():
                # Interleaved, alternating which mode goes first (the machine is shared).
                for mode in ("separate", "shared")[:: 1 if i % 2 == 0 else -1]:
                    scope = shared_fits() if mode == "shared" else contextlib.nullcontext()
                    start = time.perf_counter()
                    with scope:
                        scores = [plan.score(name, codes) for name in names]
                    seconds[suite, mode].append(time.perf_counter() - start)
                    results[mode] = scores
                if results["separate"] != results["shared"]:
                    raise AssertionError(f"{suite}: shared fits changed a score")
    recorder = Recorder("batch-sharing", scale=args.sharing_scale, num_train=plan.num_train,
                        representations=args.sharing_representations, numba_threads=1)
    table = recorder.table("fit sharing", {
        "suite": "{}", "metrics": "{}", "separate_fits_s": "{:.2f}", "shared_fits_s": "{:.2f}",
        "saved": "{:.0%}"}, ["suite"], heading="seconds per representation (one process)")
    for suite, names in suites.items():
        separate = float(np.mean(seconds[suite, "separate"]))
        shared = float(np.mean(seconds[suite, "shared"]))
        table.add(suite=suite, metrics=len(names), separate_fits_s=separate,
                  shared_fits_s=shared, saved=1 - shared / separate)
    recorder.write_json(args.json)

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--gbt-checkpoints", type=int, default=2)
    parser.add_argument("--reference-checkpoints", type=int, default=1)
    parser.add_argument("--reference-gbt", action="store_true",
                        help="also time the reference's boosted trees (~10 min each)")
    parser.add_argument("--workers", type=int, default=2)
    add_json_argument(parser)
    parser.add_argument("--sharing-representations", type=int, default=0,
                        help="only measure fit sharing (shared_fits) on this many "
                             "representations")
    parser.add_argument("--sharing-scale", type=float, default=0.1,
                        help="plan scale of the fit-sharing measurement")
    args = parser.parse_args(argv)
    if args.sharing_representations:
        sharing_cost(args)
    else:
        run(args)


if __name__ == "__main__":  # spawned workers re-import this file
    main()
