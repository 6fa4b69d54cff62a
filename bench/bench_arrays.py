"""Metric computation alone: disentanglement_lib's array-level internals against fastdis' API.

Both sides get the same arrays (dSprites-sized factors [3, 6, 40, 32, 32], 10 entangled float32
codes, 10,000 train / 5,000 test points), so no sampling or encoding is timed. The reference
side calls the functions its ``compute_*`` call after sampling (``mig._compute_mig``,
``sap_score._compute_sap``, ...), with the study's gin bindings.

Usage::

    python bench/bench_arrays.py [--repeat 5] [--json out.json]
    fastdis bench arrays -- --repeat 5
"""

from __future__ import annotations

import argparse
import importlib
import time
from types import SimpleNamespace

import numpy as np
from fastdis.bench._table import Recorder, add_json_argument, load_reference, note

from fastdis import metrics
from fastdis.demo import SyntheticFactors, representation


def _load_reference():
    """gin and the reference's metric modules; None where disentanglement_lib is absent."""
    if load_reference() is None:
        return None, None
    import gin

    names = ("irs", "mig", "modularity_explicitness", "sap_score", "unsupervised_metrics", "utils")
    return gin, SimpleNamespace(
        **{
            name: importlib.import_module(f"disentanglement_lib.evaluation.metrics.{name}")
            for name in names
        }
    )


REF = None  # the reference's modules, loaded by main()


def _reference_unsupervised(mus):
    """The body of the reference's unsupervised_metrics after sampling."""
    cov = np.cov(mus)
    unsupervised = REF.unsupervised_metrics
    scores = {
        "gaussian_total_correlation": unsupervised.gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": unsupervised.gaussian_wasserstein_correlation(cov),
    }
    binned = REF.utils.make_discretizer(mus)
    mi = REF.utils.discrete_mutual_info(binned, binned)
    np.fill_diagonal(mi, 0)
    scores["mutual_info_score"] = np.sum(mi) / (mi.shape[0] ** 2 - mi.shape[0])
    return scores


def _reference_irs(mus, ys):
    ys_discrete = REF.utils.make_discretizer(ys)
    active = REF.irs._drop_constant_dims(mus)
    return {"IRS": REF.irs.scalable_disentanglement_score(ys_discrete.T, active.T)["avg_score"]}


def _reference_modularity_explicitness(mus, ys, mus_test, ys_test):
    """The body of the reference's compute_modularity_explicitness after sampling."""
    binned = REF.utils.make_discretizer(mus)
    mi = REF.utils.discrete_mutual_info(binned, ys)
    scores = {"modularity_score": REF.modularity_explicitness.modularity(mi)}
    mus_norm, mean, std = REF.utils.normalize_data(mus)
    mus_test_norm, _, _ = REF.utils.normalize_data(mus_test, mean, std)
    train, test = [], []
    for k in range(ys.shape[0]):
        a, b = REF.modularity_explicitness.explicitness_per_factor(
            mus_norm, ys[k, :], mus_test_norm, ys_test[k, :]
        )
        train.append(a)
        test.append(b)
    scores["explicitness_score_train"] = np.mean(train)
    scores["explicitness_score_test"] = np.mean(test)
    return scores


def cases(codes, factors, test_codes, test_factors):
    """(name, reference thunk, fastdis thunk) on identical arrays."""
    mus, ys, mus_test, ys_test = codes.T, factors.T, test_codes.T, test_factors.T
    return [
        ("mig", lambda: REF.mig._compute_mig(mus, ys), lambda: metrics.mig(codes, factors)),
        (
            "unsupervised",
            lambda: _reference_unsupervised(mus),
            lambda: metrics.unsupervised_metrics(codes),
        ),
        ("irs", lambda: _reference_irs(mus, ys), lambda: metrics.irs(codes, factors)),
        (
            "sap_score (continuous)",
            lambda: REF.sap_score._compute_sap(mus, ys, mus_test, ys_test, True),
            lambda: metrics.sap_score(
                codes, factors, test_codes, test_factors, continuous_factors=True
            ),
        ),
        (
            "sap_score (discrete)",
            lambda: REF.sap_score._compute_sap(mus, ys, mus_test, ys_test, False),
            lambda: metrics.sap_score(codes, factors, test_codes, test_factors),
        ),
        (
            "modularity_explicitness",
            lambda: _reference_modularity_explicitness(mus, ys, mus_test, ys_test),
            lambda: metrics.modularity_explicitness(codes, factors, test_codes, test_factors),
        ),
    ]


def _timed(thunk, repeat):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = thunk()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    global REF
    gin, REF = _load_reference()
    if REF is not None:
        gin.bind_parameter("discretizer.discretizer_fn", REF.utils._histogram_discretize)
        gin.bind_parameter("discretizer.num_bins", 20)
    data, rs = SyntheticFactors(), np.random.RandomState(0)
    factors = data.sample_factors(15_000, rs)
    codes = representation("entangled")(factors)
    arrays = codes[:10_000], factors[:10_000], codes[10_000:], factors[10_000:]
    import numba

    recorder = Recorder("arrays", numba_threads=numba.get_num_threads(), repeat=args.repeat)
    table = recorder.table(
        "metrics on identical arrays",
        {"metric": "{}", "dlib_s": "{:.4f}", "fastdis_s": "{:.4f}", "ratio": "{:.1f}x",
         "max_abs_delta": "{:.1e}", "first_call_s": "{:.2f}"},
        key=["metric"],
        heading=f"numba threads {numba.get_num_threads()}, numpy {np.__version__}, "
        f"median of {args.repeat}",
    )
    for name, reference, fast in cases(*arrays):
        note(f"  {name}")
        start = time.perf_counter()
        fast()
        first = time.perf_counter() - start
        got, fast_seconds = _timed(fast, args.repeat)
        row = {"metric": name, "fastdis_s": fast_seconds, "first_call_s": first}
        if REF is not None:
            np.random.seed(0)
            expected, ref_seconds = _timed(reference, max(1, min(args.repeat, 3)))
            delta = max(abs(float(expected[k]) - float(got[k])) for k in expected)
            row.update(dlib_s=ref_seconds, ratio=ref_seconds / fast_seconds, max_abs_delta=delta)
        table.add(row)
    recorder.write_json(args.json)


if __name__ == "__main__":
    main()
