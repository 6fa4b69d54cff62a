"""The boosted trees on tied codes: disentanglement_lib's DCI against the compat DCI, one run.

Float32 codes repeat values: a few equal pairs per code at the study's 10,000 points by
coincidence, every point on a collapsed latent, many on a coarse one. scikit-learn sums the
gradients of a node in the order its (unstable) introsort leaves equal values in, and fastdis'
tree engine replays that order wherever equal values sit on samples with different codes or
labels. This bench runs the reference's ``compute_dci`` and fastdis' compat ``compute_dci`` on the
same data with numpy's global RNG seeded alike (so the trees' tie-breaking feature draws are the
same), and reports whether every returned number and the final global random state are identical,
beside both times and the equal pairs in a draw of as many codes.

Representations (from :mod:`fastdis.demo`, dSprites-sized synthetic factors): ``entangled`` (the
bench suite's), ``collapsed`` (the same with its last three codes constant) and ``rounded`` (the
same rounded to 0.01).

``--threads`` instead times one ``fit_gbt`` (10 random codes, 5 factors of 3-10 values) on one
and on two threads, on a quiet CPU and beside a process that keeps a core busy: what sets
``PARALLEL_MIN_CELLS``, below which a fit runs on one thread by default.

Usage::

    python bench/bench_gbt_ties.py [--scale 1.0] [-r entangled -r collapsed -r rounded]
    python bench/bench_gbt_ties.py --threads [--points 100 300 1000 3000 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
from fastdis.bench._table import Recorder, add_json_argument, load_reference, note

from fastdis.demo import SyntheticFactors, representation

REPRESENTATIONS = ("entangled", "collapsed", "rounded")


def tied_representation(kind):
    """The bench suite's entangled representation, made to tie as ``kind`` says."""
    entangled = representation("entangled")
    if kind == "entangled":
        return entangled

    def tied(observations):
        codes = np.array(entangled(observations), dtype=np.float32)
        if kind == "collapsed":
            codes[:, -3:] = 0.0
        else:
            codes = np.round(codes, 2)
        return codes

    return tied


def equal_pairs(codes):
    """Adjacent equal values after sorting, summed over the codes (the ties sklearn orders)."""
    values = np.sort(np.asarray(codes, dtype=np.float32), axis=0)
    return int(np.sum(values[1:] == values[:-1]))


def run_both(data, rep, num_train, num_test):
    """[(result, seconds, next global draw)] for the reference, then the compat layer."""
    from disentanglement_lib.evaluation.metrics import dci as reference

    from fastdis.compat.disentanglement_lib import dci as compat

    runs = []
    for function in (reference.compute_dci, compat.compute_dci):
        np.random.seed(0)  # the trees draw their tie-breaking seeds from the global RNG
        start = time.perf_counter()
        result = function(data, rep, np.random.RandomState(0), None, num_train=num_train,
                          num_test=num_test, batch_size=16)
        runs.append((result, time.perf_counter() - start, np.random.randint(1 << 30)))
    return runs


def _keep_a_core_busy(stop):
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _best_fit_seconds(codes, labels, n_threads, repeat=3):
    from fastdis.metrics._gbt import fit_gbt

    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fit_gbt(codes, labels, n_threads=n_threads, random_state=0)
        best = min(best, time.perf_counter() - start)
    return best


def thread_table(recorder, points):
    """Seconds of one fit on 1 and 2 threads, quiet and beside a busy process."""
    from fastdis.metrics._gbt import fit_gbt

    rs = np.random.RandomState(0)
    codes = rs.normal(size=(max(points), 10)).astype(np.float32)
    labels = np.stack([rs.randint(0, k, max(points)) for k in (3, 6, 10, 8, 8)], axis=1)
    for n_threads in (1, 2):  # compile and load outside the timings
        fit_gbt(codes[:50], labels[:50], n_estimators=2, n_threads=n_threads)
    table = recorder.table(
        "fit_gbt_threads", {"points": "{:,}", "neighbour": "{}", "one_thread_s": "{:.3f}",
                            "two_threads_s": "{:.3f}"},
        key=("points", "neighbour"), heading="fit_gbt, 10 codes, 5 factors, best of 3")
    for busy in (False, True):
        stop = multiprocessing.Event()
        neighbour = multiprocessing.Process(target=_keep_a_core_busy, args=(stop,))
        if busy:
            neighbour.start()
            time.sleep(0.5)
        try:
            for n in points:
                table.add(points=n, neighbour="busy" if busy else "none",
                          one_thread_s=_best_fit_seconds(codes[:n], labels[:n], 1),
                          two_threads_s=_best_fit_seconds(codes[:n], labels[:n], 2))
        finally:
            stop.set()
            if busy:
                neighbour.join()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="scale the study's 10,000 training and 5,000 test points")
    parser.add_argument("-r", "--representation", action="append", choices=REPRESENTATIONS)
    parser.add_argument("--threads", action="store_true",
                        help="time one fit on 1 and 2 threads instead (quiet, then loaded)")
    parser.add_argument("--points", type=int, nargs="+", default=[100, 300, 1000, 3000, 10000])
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        recorder = Recorder("gbt_ties", threads=True)
        thread_table(recorder, args.points)
        recorder.write_json(args.json)
        return
    if load_reference() is None:
        raise SystemExit("this bench compares with disentanglement_lib: install it")
    num_train, num_test = int(10_000 * args.scale), int(5_000 * args.scale)
    recorder = Recorder("gbt_ties", scale=args.scale)
    table = recorder.table(
        "dci_on_tied_codes",
        {"representation": "{}", "equal_pairs": "{:d}", "dlib_s": "{:.1f}", "fastdis_s": "{:.1f}",
         "ratio": "{:.1f}x", "max_abs_delta": "{:.1e}", "same_random_state": "{}"},
        key=("representation",),
        heading=f"DCI, {num_train:,} / {num_test:,} points",
    )
    data = SyntheticFactors()
    for kind in args.representation or REPRESENTATIONS:
        rep = tied_representation(kind)
        observations = data.sample_observations_from_factors(
            data.sample_factors(num_train, np.random.RandomState(0)), np.random.RandomState(0))
        note(f"{kind}: reference, then fastdis")
        (want, want_s, want_draw), (got, got_s, got_draw) = run_both(data, rep, num_train,
                                                                     num_test)
        table.add(representation=kind, equal_pairs=equal_pairs(rep(observations)),
                  dlib_s=want_s, fastdis_s=got_s, ratio=want_s / got_s,
                  max_abs_delta=max(abs(float(got[k]) - float(want[k])) for k in want),
                  same_random_state=got_draw == want_draw)
    recorder.write_json(args.json)


if __name__ == "__main__":
    main()
