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

Usage::

    python bench/bench_gbt_ties.py [--scale 1.0] [-r entangled -r collapsed -r rounded]
"""

from __future__ import annotations

import argparse
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="scale the study's 10,000 training and 5,000 test points")
    parser.add_argument("-r", "--representation", action="append", choices=REPRESENTATIONS)
    add_json_argument(parser)
    args = parser.parse_args(argv)
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
