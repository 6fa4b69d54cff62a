"""Cost of the metrics beyond the reference, beside the study's MIG on the same arrays.

The histogram scores (MIG-sup, JEMMIG, DCIMIG, InfoMEC) get dSprites-sized factors
[3, 6, 40, 32, 32] with 10 entangled float32 codes at the study's sizes (10,000 train / 5,000
test points); ``mig`` on the same codes is the yardstick. Chen et al.'s MIG gets Gaussian
posteriors over complete sub-grids of that factor grid of growing size, and the cost per
mixture-density evaluation (sample x component x code) is reported, from which the full grid's
cost follows.

Usage::

    python bench/bench_beyond_reference.py [--repeat 3] [--grid-points 2880 11520]
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from fastdis import metrics
from fastdis.demo import SyntheticFactors, representation

GRID = (3, 6, 40, 32, 32)


def _best_time(function, repeat):
    function()  # compile / warm the caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def histogram_rows(repeat):
    data = SyntheticFactors(GRID)
    factors = data.sample_factors(15_000, np.random.RandomState(0))
    codes = representation("entangled", GRID, n_codes=10)(factors.astype(np.float64))
    codes = codes.astype(np.float32)
    train, test = slice(0, 10_000), slice(10_000, 15_000)
    calls = {
        "mig": lambda: metrics.mig(codes[train], factors[train]),
        "mig_sup": lambda: metrics.get_metric("mig_sup")(codes[train], factors[train]),
        "jemmig": lambda: metrics.get_metric("jemmig")(codes[train], factors[train]),
        "dcimig": lambda: metrics.get_metric("dcimig")(codes[train], factors[train]),
        "infomec": lambda: metrics.get_metric("infomec")(codes[train], factors[train],
                                                        codes[test], factors[test]),
    }
    base = _best_time(calls["mig"], repeat)
    print("| metric | s | x mig |\n|---|---|---|")
    for name, call in calls.items():
        seconds = base if name == "mig" else _best_time(call, repeat)
        print(f"| {name} | {seconds:.3f} | {seconds / base:.1f} |")


def _sub_grid(points):
    """The first values of the last factors, shrunk until the grid has ``points`` points."""
    sizes = list(GRID)
    for k in range(len(sizes) - 1, -1, -1):
        while np.prod(sizes) > points and sizes[k] > 2:
            sizes[k] -= 1
    return tuple(sizes)


def chen_rows(grid_points, repeat):
    print("\n| grid | points | s | ns per density evaluation | full grid (737,280 points), "
          "extrapolated s |\n|---|---|---|---|---|")
    full = np.prod(GRID)
    for points in grid_points:
        sizes = _sub_grid(points)
        factors = np.indices(sizes).reshape(len(sizes), -1).T
        rs = np.random.RandomState(0)
        means = factors @ rs.normal(size=(len(sizes), 10)) * 0.1 + rs.normal(size=(len(factors),
                                                                                  10))
        logvars = rs.uniform(-3.0, 0.0, size=means.shape)
        seconds = _best_time(functools.partial(metrics.chen_mig, means, logvars, factors),
                             repeat)
        n = len(factors)
        # marginal + one conditional per factor: sum over values of min(S, n/C) * (n/C)
        evaluations = 10 * (min(10_000, n) * n + sum(
            size * min(10_000, n // size) * (n // size) for size in sizes))
        full_evaluations = 10 * (10_000 * full + sum(
            size * min(10_000, full // size) * (full // size) for size in GRID))
        per_evaluation = seconds / evaluations
        print(f"| {sizes} | {n} | {seconds:.2f} | {per_evaluation * 1e9:.1f} | "
              f"{per_evaluation * full_evaluations:.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grid-points", type=int, nargs="+", default=[2_880, 11_520])
    args = parser.parse_args()
    histogram_rows(args.repeat)
    chen_rows(args.grid_points, args.repeat)


if __name__ == "__main__":
    main()
