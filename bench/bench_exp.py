"""libm's ``exp`` against its vectorised copy, alone and inside the kernels that call it.

Each row runs the same kernel twice on the same inputs, once with the vectorised copy of glibc's
``exp`` (``fastdis/metrics/_libm_exp.py``) and once calling libm for every element (what the
kernels do where the copy does not reproduce libm), checks that the outputs are bit for bit
equal, and prints the best of ``--repeat`` timings of each (numba and BLAS on one thread):

* ``exp`` of 320,000 softmax-like arguments;
* the logistic regression's softmax loss kernel, 8,000 samples x 40 classes, float64 and float32;
* one multinomial loss + gradient evaluation (the kernel and numpy's two GEMMs);
* the boosted trees' stage gradient for dSprites-like factors (113 classes) x 10,000 samples.

Usage::

    python bench/bench_exp.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from fastdis.metrics import _gbt, _softmax_loss
from fastdis.metrics._libm_exp import exp_into, reproduces_libm


def _best_of(function, repeat):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _exp_case(rng):
    x = -rng.exponential(3.0, 320_000)
    out = np.empty_like(x)

    def run(vectorised):
        exp_into(x, out, vectorised)
        return out

    return run


def _softmax_case(rng, dtype):
    raw = rng.normal(size=(8_000, 40)).astype(dtype)
    y = rng.integers(0, 40, 8_000)

    def run(vectorised):
        gradient, loss, intercept = raw.copy(), np.empty(8_000, dtype), np.empty(40, dtype)
        _softmax_loss._multinomial_pointwise(gradient, y, loss, intercept, vectorised)
        return gradient, loss, intercept

    return run


def _loss_gradient_case(rng, dtype):
    x = rng.normal(size=(8_000, 10)).astype(dtype)
    y = rng.integers(0, 40, 8_000)
    coef = (rng.normal(size=(40, 11)) * 0.5).astype(dtype)
    raw = np.empty((8_000, 40), dtype=dtype)

    def run(vectorised):
        original = _softmax_loss.reproduces_libm
        _softmax_loss.reproduces_libm = lambda: vectorised
        try:
            return _softmax_loss._multinomial_loss_grad(coef, x, y, 0.01, raw)
        finally:
            _softmax_loss.reproduces_libm = original

    return run


def _gbt_gradient_case(rng):
    sizes = np.array([3, 6, 40, 32, 32], dtype=np.int64)
    first_col = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    labels = np.stack([rng.integers(0, k, 10_000) for k in sizes]).astype(np.float64)
    raw = rng.normal(size=(int(sizes.sum()), 10_000))

    def run(vectorised):
        out, out_t = np.empty_like(raw), np.empty(raw.T.shape)
        _gbt._negative_gradient(labels, raw, first_col, sizes, out, out_t, vectorised)
        return out, out_t

    return run


def _flat(result):
    if isinstance(result, tuple):
        return [np.asarray(part) for part in result]
    return [np.asarray(result)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="timings per side (best is kept)")
    args = parser.parse_args(argv)
    if not reproduces_libm():
        raise SystemExit("this libm's exp is not glibc's FMA build: fastdis calls libm itself")
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    cases = [
        ("exp, 320,000 arguments", _exp_case(rng)),
        ("softmax loss kernel, 8,000 x 40, float64", _softmax_case(rng, np.float64)),
        ("softmax loss kernel, 8,000 x 40, float32", _softmax_case(rng, np.float32)),
        ("loss + gradient with GEMMs, 8,000 x 10 -> 40, float64",
         _loss_gradient_case(rng, np.float64)),
        ("loss + gradient with GEMMs, 8,000 x 10 -> 40, float32",
         _loss_gradient_case(rng, np.float32)),
        ("boosted trees' stage gradient, 113 classes x 10,000", _gbt_gradient_case(rng)),
    ]
    print("# numba threads 1, BLAS threads 1, best of", args.repeat)
    print("| kernel | libm exp ms | vectorised exp ms | ratio | same bits |")
    print("|---|---|---|---|---|")
    with threadpool_limits(1, user_api="blas"):
        for name, run in cases:
            same = all(np.array_equal(a, b) for a, b in zip(_flat(run(False)), _flat(run(True)),
                                                              strict=True))
            libm = _best_of(lambda run=run: run(False), args.repeat)
            vectorised = _best_of(lambda run=run: run(True), args.repeat)
            print(f"| {name} | {libm * 1e3:.3f} | {vectorised * 1e3:.3f} | "
                  f"{libm / vectorised:.2f}x | {same} |", flush=True)


if __name__ == "__main__":
    main()
