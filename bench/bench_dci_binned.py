"""How far do approximate boosted trees move DCI? Binned thresholds and LightGBM against exact.

A histogram engine (LightGBM, scikit-learn's ``HistGradientBoosting*``, XGBoost's ``hist``)
is fast because it only considers thresholds between ``B`` quantile bins of each code. This
script measures what that restriction alone does to DCI at the study sizes, with everything else
kept exact: the codes are replaced by their bin index (``B`` quantile bins of the training
codes) and fitted by fastdis' exact engine, whose trees then split only at bin edges, as a
histogram engine's would (up to the rounding of its histogram sums). LightGBM
(``backend="lightgbm"``), which also scores splits with hessians, is measured alongside.

The yardstick rows: the same exact DCI on another draw of training and test points from the same
distribution (the metric's own sampling spread), and the issue's tolerance (disentanglement and
completeness within 0.02, informativeness within 0.01 of the reference).

Every difference is against fastdis' exact engine (``backend="numba"``), which reproduces
scikit-learn's trees (tested bit for bit; ``--exact-backend sklearn`` runs scikit-learn itself,
~6 minutes per fit). Data: dSprites-sized factors [3, 6, 40, 32, 32] and three 10-code
representations from :mod:`fastdis.demo`.

Usage::

    python bench/bench_dci_binned.py [--bins 256 1024 4096] [--exact-backend numba]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastdis.demo import SyntheticFactors, representation
from fastdis.metrics import dci

KEYS = ("disentanglement", "completeness", "informativeness_train", "informativeness_test")
TOLERANCE = {"disentanglement": 0.02, "completeness": 0.02, "informativeness_train": 0.01,
             "informativeness_test": 0.01}


def quantile_bins(train_codes, test_codes, n_bins):
    """Each code replaced by its bin among ``n_bins`` quantile bins of the training codes."""
    train = np.empty(train_codes.shape, dtype=np.float32)
    test = np.empty(test_codes.shape, dtype=np.float32)
    levels = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    for j in range(train_codes.shape[1]):
        edges = np.unique(np.quantile(train_codes[:, j], levels))
        train[:, j] = np.searchsorted(edges, train_codes[:, j], side="right")
        test[:, j] = np.searchsorted(edges, test_codes[:, j], side="right")
    return train, test


def draw(kind, n_train, n_test, seed):
    factors, observations = SyntheticFactors().sample(n_train + n_test, np.random.RandomState(seed))
    codes = representation(kind)(observations)
    return codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]


def variants(kind, data, args):
    """(name, (codes, factors, test_codes, test_factors), backend) of every compared row."""
    yield "exact, another draw of the points", draw(kind, args.n_train, args.n_test, seed=1), \
        args.exact_backend
    x, y, x_test, y_test = data
    for n_bins in args.bins:
        binned, binned_test = quantile_bins(x, x_test, n_bins)
        yield f"exact on {n_bins} quantile bins", (binned, y, binned_test, y_test), "numba"
    yield "LightGBM", data, "lightgbm"


def timed_dci(data, backend):
    start = time.perf_counter()
    scores = dci(*data, backend=backend)
    return scores, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bins", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--exact-backend", choices=("numba", "sklearn"), default="numba")
    parser.add_argument("--representations", nargs="+",
                        default=["entangled", "disentangled", "noise"])
    args = parser.parse_args(argv)

    header = "| representation | variant | seconds | " + " | ".join(
        f"delta {key}" for key in KEYS) + " | within tolerance |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind in args.representations:
        data = draw(kind, args.n_train, args.n_test, seed=0)
        exact, seconds = timed_dci(data, args.exact_backend)
        print(f"| {kind} | exact ({args.exact_backend}) | {seconds:.1f} | "
              + " | ".join(f"{exact[key]:.4f}" for key in KEYS) + " | (values) |")
        for name, variant_data, backend in variants(kind, data, args):
            scores, seconds = timed_dci(variant_data, backend)
            deltas = {key: scores[key] - exact[key] for key in KEYS}
            within = all(abs(deltas[key]) <= TOLERANCE[key] for key in KEYS)
            print(f"| {kind} | {name} | {seconds:.1f} | "
                  + " | ".join(f"{deltas[key]:+.4f}" for key in KEYS)
                  + f" | {'yes' if within else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
