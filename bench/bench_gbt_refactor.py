"""The boosted-tree engine against an earlier version of itself, side by side in one process.

The engine of another git revision (``--before``, default ``main``) is read with ``git show``,
imported from a temporary file next to this checkout's, and both fit the same problems in turn
(interleaved, ``--repeat`` times, the minimum kept): ``fit_gbt`` on all factors at once, as DCI
calls it, at the study's size (10,000 training points, 10 entangled codes, dSprites-sized
factors [3, 6, 40, 32, 32]: 113 trees per stage, 100 stages) and at the downstream task's
smaller training sizes. Every row also checks that both versions grow the same trees (features,
thresholds, leaf values, importances, training scores). The first-call rows time a fresh process
that imports the engine and fits a tiny problem with an empty numba cache (the JIT compile).

Usage::

    python bench/bench_gbt_refactor.py [--before main] [--repeat 3] [--compile-repeat 2]
        [--no-compile | --no-fits]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fastdis.demo import SyntheticFactors, representation
from fastdis.metrics import _gbt

ROOT = Path(__file__).resolve().parent.parent
ENGINE = "fastdis/metrics/_gbt.py"
COMPARED = ("feature", "threshold", "left", "right", "value", "node_count", "tree_importances",
            "train_raw")

_COMPILE_SCRIPT = """
import importlib.util, sys, time
import numpy as np
import fastdis.metrics
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("fastdis.metrics." + sys.argv[2], sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
rs = np.random.RandomState(0)
module.fit_gbt(rs.normal(size=(50, 3)), rs.randint(3, size=(50, 2)), n_estimators=2)
print(time.perf_counter() - start)
"""


def load_revision(revision: str, directory: Path):
    """The engine as of git ``revision``, imported as ``fastdis.metrics._gbt_before``."""
    source = subprocess.run(["git", "show", f"{revision}:{ENGINE}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = directory / "_gbt_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fastdis.metrics._gbt_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the dataclass and the relative imports need it
    spec.loader.exec_module(module)
    return module, path


def problems():
    """(name, codes, factors) at the sizes the study fits boosted trees on."""
    factors = SyntheticFactors().sample_factors(10_000, np.random.RandomState(0))
    codes = representation("entangled")(factors)
    for n in (10_000, 1_000, 100):
        yield f"DCI / downstream, N = {n:,}, 5 factors", codes[:n], factors[:n]


def time_fit(module, codes, factors):
    start = time.perf_counter()
    models = module.fit_gbt(codes, factors, random_state=0)
    return time.perf_counter() - start, models


def first_call_seconds(path: Path, name: str) -> tuple[float, float]:
    """A fresh process: import the engine at ``path`` and fit a tiny problem, empty cache.

    Returns (wall seconds of import + fit, CPU seconds of the whole process): the JIT compile
    is single-threaded, so its CPU time is the measure that a loaded machine does not inflate.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, str(path), name], env=env,
                             check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(out.split()[-1]), cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="git revision to compare against")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compile-repeat", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the first-call rows")
    parser.add_argument("--no-fits", action="store_true", help="only the first-call rows")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        before, before_path = load_revision(args.before, Path(tmp))
        print(f"| problem | {args.before} s | this checkout s | ratio | same trees |")
        print("|---|---|---|---|---|")
        for name, codes, factors in [] if args.no_fits else problems():
            time_fit(before, codes[:50], factors[:50])  # compile (or load) both first
            time_fit(_gbt, codes[:50], factors[:50])
            old_times, new_times = [], []
            for _ in range(args.repeat):
                seconds, old = time_fit(before, codes, factors)
                old_times.append(seconds)
                seconds, new = time_fit(_gbt, codes, factors)
                new_times.append(seconds)
            same = all(np.array_equal(getattr(old, f), getattr(new, f)) for f in COMPARED)
            print(f"| {name} | {min(old_times):.3f} | {min(new_times):.3f} | "
                  f"{min(old_times) / min(new_times):.3f} | {'yes' if same else 'NO'} |",
                  flush=True)
        if not args.no_compile:
            old = new = (np.inf, np.inf)
            for _ in range(args.compile_repeat):  # interleaved, the minimum kept
                old = np.minimum(old, first_call_seconds(before_path, "_gbt_before"))
                new = np.minimum(new, first_call_seconds(ROOT / ENGINE, "_gbt_cold"))
            for i, what in enumerate(("wall", "CPU")):
                print(f"| first call, import + JIT with an empty cache ({what} s) | {old[i]:.1f} | "
                      f"{new[i]:.1f} | {old[i] / new[i]:.3f} | |")


if __name__ == "__main__":
    main()
