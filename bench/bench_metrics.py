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


#: The reference's modules that import TensorFlow, seaborn and simplejson at the top for their
#: plots; the bench only scores, so these imports get empty stand-ins while the module loads.
_PLOTTING_MODULES = {"unified_scores"}
_PLOTTING_IMPORTS = ("tensorflow", "tensorflow.compat", "tensorflow.compat.v1", "seaborn",
                     "simplejson")


def reference_module(module_name):
    """``disentanglement_lib.evaluation.metrics.<module_name>``, importable without plotting.

    Needs :func:`fastdis.bench._table.load_reference` first (gin standing in for ``gin.tf``).
    """
    import importlib
    import json
    import sys
    import types

    full_name = f"disentanglement_lib.evaluation.metrics.{module_name}"
    if module_name not in _PLOTTING_MODULES or full_name in sys.modules:
        return importlib.import_module(full_name)
    stand_ins = [name for name in _PLOTTING_IMPORTS if name not in sys.modules]
    for name in stand_ins:
        sys.modules[name] = json if name == "simplejson" else types.ModuleType(name)
    sys.modules["tensorflow"].compat = sys.modules["tensorflow.compat"]
    sys.modules["tensorflow.compat"].v1 = sys.modules["tensorflow.compat.v1"]
    sys.modules["tensorflow.compat.v1"].gfile = types.SimpleNamespace()
    try:
        return importlib.import_module(full_name)
    finally:
        for name in stand_ins:
            del sys.modules[name]


def study_arguments(name, scale):
    """Keyword arguments of metric ``name``'s study call, sizes scaled by ``scale``."""
    spec = get_metric(_registry_name(name))
    kwargs = _scaled_sizes(spec.sizes, scale)
    if spec.name == "sap_score":
        kwargs["continuous_factors"] = name == "sap_score_continuous"
    for option in ("diff_quantile", "num_factors_to_remove"):
        if option in spec.defaults:
            kwargs[option] = spec.defaults[option]
    return kwargs


def _registry_name(name):
    return "sap_score" if name == "sap_score_continuous" else name


#: gin bindings beyond the study's (the discretizer, the pruning threshold, the predictor) that
#: a metric needs: the reference's reduced downstream task has no default correlation measure.
EXTRA_BINDINGS = {
    "reduced_downstream_task": {
        "reduced_representation.correlation_measure":
            ("reduced_downstream_task", "compute_factorwise_dci")},
}


def _bind_study_settings(name):
    """Bind gin as the study's config for ``name`` does, to the reference's own functions.

    fastdis' drop-in reads the same bindings. The reference's module is imported first: it
    registers the configurables bound here (``prune_dims``, ``reduced_representation``).
    """
    import gin

    utils = reference_module("utils")
    spec = get_metric(_registry_name(name))
    reference_module(spec.reference.split(".")[0])
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    if "prune_threshold" in spec.defaults:
        gin.bind_parameter("prune_dims.threshold", spec.defaults["prune_threshold"])
    if "predictor" in spec.defaults:
        factory = {"gradient_boosting": utils.gradient_boosting_classifier,
                   "logistic_regression_cv": utils.logistic_regression_cv}
        gin.bind_parameter("predictor.predictor_fn", factory[spec.defaults["predictor"]])
    for binding, (module_name, function_name) in EXTRA_BINDINGS.get(name, {}).items():
        gin.bind_parameter(binding, getattr(reference_module(module_name), function_name))


def gin_call(name, data, rep, kwargs, *, side="reference"):
    """Run ``name``'s compute function under the study's gin bindings; (result, seconds).

    ``side`` is "reference" (disentanglement_lib) or "fastdis" (its drop-in,
    ``fastdis.compat.disentanglement_lib``, as a reference user calls it). numpy's global RNG
    (the boosted trees' and the interventions' draws) is seeded first on either side.
    """
    import importlib

    import gin

    module_name, function_name = get_metric(_registry_name(name)).reference.split(".")
    module = (reference_module(module_name) if side == "reference" else importlib.import_module(
        f"fastdis.compat.disentanglement_lib.{module_name}"))
    _bind_study_settings(name)
    try:
        np.random.seed(0)
        start = time.perf_counter()
        result = getattr(module, function_name)(data, rep, np.random.RandomState(0), None,
                                                **kwargs)
        return result, time.perf_counter() - start
    finally:
        gin.clear_config()


def _reference_call(name, data, rep, scale):
    """Run the reference with the study's gin bindings and sizes; returns (result, seconds).

    Needs :func:`fastdis.bench._table.load_reference` first (gin standing in for ``gin.tf``).
    """
    return gin_call(name, data, rep, study_arguments(name, scale))


def _fastdis_call(name, data, rep, scale):
    if name == "sap_score_continuous":
        return gin_call(name, data, rep, study_arguments(name, scale), side="fastdis")
    result = evaluate_metric(name, data, rep, scale=scale)
    return result, result.pop("elapsed_time")


def add_side_by_side_arguments(parser, metrics, *, default_scale):
    """The options of every reference-beside-fastdis bench: which metrics, the sample scale,
    the warm fastdis runs and the reference's BLAS threads."""
    parser.add_argument("-m", "--metric", action="append", choices=metrics,
                        help="a metric to run (repeat the option; default: every one)")
    parser.add_argument("--scale", type=float, default=default_scale,
                        help=f"scale the study's sample sizes (default {default_scale:g}; "
                             "1 is the study's)")
    parser.add_argument("--repeat", type=int, default=1, help="warm fastdis runs (median)")
    parser.add_argument("--reference-blas-threads", type=int, default=None,
                        help="run the reference with this many BLAS threads (default: numpy's; "
                             "its logistic regressions take ~2.7x longer with 2 than with 1 here)")


def max_abs_delta(reference, result):
    deltas = [abs(float(reference[k]) - float(result[k])) for k in reference
              if k in result and np.isscalar(reference[k]) and k != "elapsed_time"]
    return max(deltas) if deltas else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_side_by_side_arguments(parser, BENCH_METRICS, default_scale=1.0)
    parser.add_argument("--same-arrays", action="store_true",
                        help="i.i.d. metrics replay one fixed array (measures the metric alone)")
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
