"""fastdis against disentanglement_lib, side by side, on the same inputs in one process.

Every registered study metric runs twice with the reference's protocol on the same data: once
with disentanglement_lib 1.5 (the reference, gin-configured as in
``unsupervised_study_v1/metric_configs``) and once with fastdis' compat module. Both draw the
same points from ``RandomState(0)``; the data are dSprites-sized synthetic factors
([3, 6, 40, 32, 32]) and a cheap entangled representation with 10 codes, so the encoder costs
next to nothing and the table measures the metrics.

fastdis is timed warm (after one call that pays numba's JIT or cache load, reported separately
as "first call"). The boosted-tree reference fits draw from numpy's global RNG, which is seeded
before each reference call.

With ``--same-arrays`` the i.i.d. metrics instead read one fixed array of codes and factors
(``ReplayData``: each ``sample`` call returns the next rows, the representation is the
identity), so both sides score identical inputs and sampling costs next to nothing: the table
then measures the metric computation alone.

With ``--trivial-representation`` the representation is the identity on the synthetic
observations (the codes are the 5 factor values): encoding costs nothing, so the table measures
the sampling protocol itself (BetaVAE and FactorVAE: 15,000 groups of 64 points).

Usage::

    python bench/bench_metrics.py                 # study sizes (the reference takes ~30 min)
    python bench/bench_metrics.py --scale 0.2     # smaller samples
    python bench/bench_metrics.py -m mig -m dci   # some metrics only
    python bench/bench_metrics.py -m factor_vae_metric -m beta_vae_sklearn --trivial-representation
    python bench/bench_metrics.py --reference-blas-threads 1   # the reference on one BLAS thread
    fastdis bench metrics --json run.json -- -m mig --scale 0.1  # installed; tables saved
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from fastdis.bench._table import Recorder, add_json_argument, load_reference, note
from threadpoolctl import threadpool_info, threadpool_limits

from fastdis.compat.disentanglement_lib.study import _scaled_sizes, evaluate_metric
from fastdis.demo import SyntheticFactors, representation
from fastdis.metrics import get_metric

BENCH_METRICS = [
    "mig",
    "modularity_explicitness",
    "sap_score",
    "sap_score_continuous",
    "unsupervised",
    "irs",
    "factor_vae_metric",
    "beta_vae_sklearn",
    "downstream_task_logistic_regression",
    "dci",
    "downstream_task_boosted_trees",
]


class ReplayData:
    """Ground-truth data that replays fixed (factors, codes) rows in order; rep = identity.

    Every call of ``sample`` returns the next rows (wrapping around), so the reference and
    fastdis, which make the same calls, see the same points.
    """

    def __init__(self, factors, codes, factor_sizes):
        self.factors, self.codes, self.sizes = factors, codes, list(factor_sizes)
        self.position = 0

    num_factors = property(lambda self: len(self.sizes))
    factors_num_values = property(lambda self: self.sizes)
    observation_shape = property(lambda self: [self.codes.shape[1]])

    def sample(self, num, random_state):
        rows = (self.position + np.arange(num)) % len(self.codes)
        self.position += num
        return self.factors[rows], self.codes[rows]

    def reset(self):
        self.position = 0
        return self


def _identity(observations):
    return observations


def _reference_call(name, data, rep, scale):
    """Run the reference with the study's gin bindings; returns (result, seconds).

    Needs :func:`fastdis.bench._table.load_reference` first (gin standing in for ``gin.tf``).
    """
    import importlib

    import gin
    from disentanglement_lib.evaluation.metrics import utils

    registry_name = "sap_score" if name == "sap_score_continuous" else name
    spec = get_metric(registry_name)
    module_name, function_name = spec.reference.split(".")
    module = importlib.import_module(f"disentanglement_lib.evaluation.metrics.{module_name}")
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    if "prune_threshold" in spec.defaults:
        gin.bind_parameter("prune_dims.threshold", spec.defaults["prune_threshold"])
    if "predictor" in spec.defaults:
        factory = {"gradient_boosting": utils.gradient_boosting_classifier,
                   "logistic_regression_cv": utils.logistic_regression_cv}
        gin.bind_parameter("predictor.predictor_fn", factory[spec.defaults["predictor"]])
    kwargs = _scaled_sizes(spec.sizes, scale)
    if registry_name == "sap_score":
        kwargs["continuous_factors"] = name == "sap_score_continuous"
    if "diff_quantile" in spec.defaults:
        kwargs["diff_quantile"] = spec.defaults["diff_quantile"]
    np.random.seed(0)
    start = time.perf_counter()
    result = getattr(module, function_name)(data, rep, np.random.RandomState(0), None, **kwargs)
    seconds = time.perf_counter() - start
    gin.clear_config()
    return result, seconds


def _fastdis_call(name, data, rep, scale):
    if name == "sap_score_continuous":
        from fastdis.compat.disentanglement_lib import sap_score

        kwargs = _scaled_sizes(get_metric("sap_score").sizes, scale)
        start = time.perf_counter()
        result = sap_score.compute_sap(data, rep, np.random.RandomState(0), None,
                                       continuous_factors=True, **kwargs)
        return result, time.perf_counter() - start
    result = evaluate_metric(name, data, rep, scale=scale)
    return result, result.pop("elapsed_time")


def max_abs_delta(reference, result):
    deltas = [abs(float(reference[k]) - float(result[k])) for k in reference
              if k in result and np.isscalar(reference[k]) and k != "elapsed_time"]
    return max(deltas) if deltas else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--metric", action="append", choices=BENCH_METRICS)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="scale the study's sample sizes (default 1: study sizes)")
    parser.add_argument("--repeat", type=int, default=1, help="warm fastdis runs (median)")
    parser.add_argument("--same-arrays", action="store_true",
                        help="i.i.d. metrics replay one fixed array (measures the metric alone)")
    parser.add_argument("--reference-blas-threads", type=int, default=None,
                        help="run the reference with this many BLAS threads (default: numpy's; "
                             "its logistic regressions take ~2.7x longer with 2 than with 1 here)")
    parser.add_argument("--trivial-representation", action="store_true",
                        help="identity representation: codes are the factor values (measures "
                             "sampling and scoring, no encoder)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.same_arrays and args.trivial_representation:
        parser.error("--same-arrays already replays fixed codes; pass one of the two")
    names = args.metric or BENCH_METRICS
    data = SyntheticFactors()
    rep = _identity if args.trivial_representation else representation("entangled")
    if args.same_arrays:
        names = [n for n in names if n not in ("factor_vae_metric", "beta_vae_sklearn")]
        rs = np.random.RandomState(0)
        factors = data.sample_factors(40_000, rs)
        data, rep = ReplayData(factors, rep(factors), data.factor_sizes), _identity

    import numba

    with threadpool_limits(args.reference_blas_threads, user_api="blas"):
        blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    heading = (f"# {platform.processor() or platform.machine()}, numba threads "
               f"{numba.get_num_threads()}, reference BLAS threads {blas}, numpy "
               f"{np.__version__}, scale {args.scale}"
               f"{', identity representation' if args.trivial_representation else ''}")
    recorder = Recorder("metrics", numba_threads=numba.get_num_threads(), reference_blas=blas,
                        scale=args.scale, same_arrays=args.same_arrays,
                        trivial_representation=args.trivial_representation)
    table = recorder.table("metrics", {
        "metric": "{}", "dlib_s": "{:.3f}", "fastdis_s": "{:.3f}", "ratio": "{:.1f}x",
        "max_abs_delta": "{:.2e}", "first_call_s": "{:.2f}"}, ["metric"], heading)
    with_reference = load_reference() is not None
    replay = getattr(data, "reset", lambda: data)
    for name in names:
        note(f"  {name}")
        cold_start = time.perf_counter()
        _fastdis_call(name, replay(), rep, args.scale)  # JIT / cache load
        first = time.perf_counter() - cold_start
        warm = []
        for _ in range(max(1, args.repeat)):
            result, seconds = _fastdis_call(name, replay(), rep, args.scale)
            warm.append(seconds)
        fast = float(np.median(warm))
        row = {"metric": name, "fastdis_s": fast, "first_call_s": first}
        if with_reference:
            with threadpool_limits(args.reference_blas_threads, user_api="blas"):
                reference, ref_seconds = _reference_call(name, replay(), rep, args.scale)
            row.update(dlib_s=ref_seconds, ratio=ref_seconds / fast,
                       max_abs_delta=max_abs_delta(reference, result))
        table.add(row)
    total_fast = sum(row["fastdis_s"] for row in table.rows)
    total_ref = sum(row["dlib_s"] for row in table.rows) if with_reference else None
    table.add(metric="**total**", fastdis_s=total_fast, dlib_s=total_ref,
              ratio=total_ref / total_fast if with_reference else None)
    recorder.write_json(args.json)

if __name__ == "__main__":
    main()
