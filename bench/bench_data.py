"""Data sampling: disentanglement_lib's data classes against fastdis.data on the same files.

Renders the dSprites look-alike (full grid) and the Shapes3D look-alike (small grid by default)
into ``--data-dir`` if they are not there, then times, side by side in one process and on one
thread, a batch of ``--batch`` observations drawn the way metrics and training draw them
(``sample(batch, random_state)``), plus loading and rendering. dlib's classes read the same
files through a stand-in for ``tensorflow.compat.v1.gfile``; where dlib's loader cannot read
the file at all (Shapes3D: it expects an unpublished 9-D npz; Scream: Pillow >= 10 rejects its
thumbnail call), its sampling code runs on fastdis' arrays. Scream-dSprites uses a random
synthetic painting (the timing does not depend on the picture).

Usage::

    python bench/bench_data.py [--data-dir DIR] [--batch 64] [--repeat 200] [--full-shapes3d]
    fastdis bench data --json run.json -- --data-dir DIR --repeat 100
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded: the machine is shared

import argparse  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from fastdis.bench._table import Recorder, add_json_argument, load_reference  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastdis.data import load_dataset, make_dsprites, make_shapes3d  # noqa: E402


class _ReadFile(io.BytesIO):
    def __init__(self, path, mode="rb"):
        with open(path, mode) as handle:
            super().__init__(handle.read())

    def close(self):
        pass


def _dlib_data_modules(data_dir: Path):
    """dlib's data modules, with gfile served by Python and paths pointing at ``data_dir``."""
    gfile = types.SimpleNamespace(Open=_ReadFile, GFile=_ReadFile, ListDirectory=os.listdir,
                                  exists=os.path.exists)
    v1 = types.ModuleType("tensorflow.compat.v1")
    v1.gfile, v1.io = gfile, types.SimpleNamespace(gfile=gfile)
    compat = types.ModuleType("tensorflow.compat")
    compat.v1 = v1
    tensorflow = types.ModuleType("tensorflow")
    tensorflow.compat = compat
    sys.modules.update({"tensorflow": tensorflow, "tensorflow.compat": compat,
                        "tensorflow.compat.v1": v1})
    os.environ["DISENTANGLEMENT_LIB_DATA"] = str(data_dir)
    return types.SimpleNamespace(**{
        name: importlib.import_module(f"disentanglement_lib.data.ground_truth.{name}")
        for name in ("dsprites", "shapes3d", "util")
    })


def _timed(function, repeat):
    """Median seconds of ``repeat`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _sampling_row(table, label, dlib_s, fast_s):
    table.add(data_set=label, dlib_us=dlib_s and dlib_s * 1e6, fastdis_us=fast_s * 1e6,
              speed_up=dlib_s / fast_s if dlib_s and fast_s else None)


def _render(recorder, data_dir, small_dir, full_shapes3d):
    table = recorder.table("rendering", {"look_alike": "{}", "seconds": "{:.2f}",
                                         "images": "{:,}", "note": "{}"}, ["look_alike"],
                           heading="## rendering (seconds)")
    renders = [("dsprites full", make_dsprites, data_dir, False),
               ("dsprites --small", make_dsprites, small_dir, True),
               ("shapes3d --small", make_shapes3d, small_dir, True)]
    if full_shapes3d:
        renders.append(("shapes3d full", make_shapes3d, data_dir, False))
    for label, render, folder, small in renders:
        path = (folder / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
                if render is make_dsprites else folder / "3dshapes" / "3dshapes.h5")
        if path.exists() and not small:
            table.add(look_alike=label, note="exists, not re-rendered")
            continue
        start = time.perf_counter()
        render(folder, small=small)
        name = "dsprites_full" if render is make_dsprites else "shapes3d"
        table.add(look_alike=label, seconds=time.perf_counter() - start,
                  images=load_dataset(name, data_dir=folder).num_points)


def _dlib_stand_ins(dlib, reference, ours):
    """dlib's dSprites variants and Shapes3D sampling code over the already loaded arrays.

    The variants share the loaded images; dlib's ScreamDSprites constructor fails on
    Pillow >= 10 (thumbnail with a 3-tuple), so its sampling code gets fastdis' painting.
    """
    for name, cls in (("color_dsprites", "ColorDSprites"), ("noisy_dsprites", "NoisyDSprites"),
                      ("scream_dsprites", "ScreamDSprites")):
        variant = object.__new__(getattr(dlib.dsprites, cls))
        variant.__dict__.update(reference["dsprites_full"].__dict__)
        variant.data_shape = [64, 64, 3]
        if name == "scream_dsprites":
            variant.scream = ours[name].scream
        reference[name] = variant
    shapes = object.__new__(dlib.shapes3d.Shapes3D)
    shapes.images = np.asarray(ours["shapes3d"].images).astype(np.float32) / 255.0
    shapes.factor_sizes = list(ours["shapes3d"].factor_sizes)
    shapes.state_space = dlib.util.SplitDiscreteStateSpace(shapes.factor_sizes, list(range(6)))
    shapes.factor_bases = np.prod(shapes.factor_sizes) / np.cumprod(shapes.factor_sizes)
    reference["shapes3d"] = shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--full-shapes3d", action="store_true",
                        help="also render the full Shapes3D grid (5.9 GB) and time that")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    # The environment set above only takes where numba and BLAS load after it, not under
    # `fastdis bench data`, whose command line has loaded them already.
    numba.set_num_threads(1)
    threadpool_limits(1)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="fastdis-bench-data-"))
    small_dir = data_dir / "small"
    recorder = Recorder("data", batch=args.batch, repeat=args.repeat)
    _render(recorder, data_dir, small_dir, args.full_shapes3d)

    from PIL import Image

    (data_dir / "scream").mkdir(exist_ok=True)
    painting = np.random.RandomState(0).randint(0, 256, (600, 480, 3)).astype(np.uint8)
    Image.fromarray(painting).save(data_dir / "scream" / "scream.jpg")

    dlib = _dlib_data_modules(data_dir) if load_reference() is not None else None
    loading = recorder.table("loading", {"dataset": "{}", "dlib_s": "{:.2f}",
                                         "fastdis_s": "{:.4f}", "note": "{}"}, ["dataset"],
                             heading="## loading the full dSprites file (seconds)")
    reference = {}
    if dlib is not None:
        start = time.perf_counter()
        reference["dsprites_full"] = dlib.dsprites.DSprites([1, 2, 3, 4, 5])
        dlib_load = time.perf_counter() - start
    start = time.perf_counter()
    ours = {"dsprites_full": load_dataset("dsprites_full", data_dir=data_dir)}
    loading.add(dataset="dsprites_full", dlib_s=dlib_load if dlib else None,
                fastdis_s=time.perf_counter() - start, note="memory-mapped")
    start = time.perf_counter()
    ours["dsprites_full (in_memory=True)"] = load_dataset("dsprites_full", data_dir=data_dir,
                                                          in_memory=True)
    loading.add(dataset="dsprites_full, in_memory=True", fastdis_s=time.perf_counter() - start)
    for name in ("color_dsprites", "noisy_dsprites", "scream_dsprites"):
        ours[name] = load_dataset(name, data_dir=data_dir)
    ours["shapes3d"] = load_dataset("shapes3d", data_dir=small_dir)
    if dlib is not None:
        reference["dsprites_full (in_memory=True)"] = reference["dsprites_full"]
        _dlib_stand_ins(dlib, reference, ours)

    sampling = recorder.table(
        "sampling", {"data_set": "{}", "dlib_us": "{:,.0f}", "fastdis_us": "{:,.0f}",
                     "speed_up": "{:.1f}x"}, ["data_set"],
        heading=f"## sample({args.batch}, random_state): median microseconds per batch, "
        f"1 thread, {args.repeat} repeats")
    for name in ours:
        dlib_s, same = None, True
        if name in reference:
            same = np.array_equal(ours[name].sample(args.batch, np.random.RandomState(1))[1],
                                  np.asarray(reference[name].sample(
                                      args.batch, np.random.RandomState(1))[1],
                                      dtype=np.float32))
            rs_dlib = np.random.RandomState(0)
            dlib_s = _timed(lambda n=name, r=rs_dlib: reference[n].sample(args.batch, r),
                            args.repeat)
        rs_fast = np.random.RandomState(0)
        fast_s = _timed(lambda n=name, r=rs_fast: ours[n].sample(args.batch, r), args.repeat)
        _sampling_row(sampling, f"{name}{'' if same else ' (OUTPUTS DIFFER)'}", dlib_s, fast_s)
    factors = ours["dsprites_full"].sample_factors(args.batch, np.random.RandomState(0))
    dlib_s = dlib and _timed(lambda: reference["dsprites_full"].sample_observations_from_factors(
        factors, np.random.RandomState(0)), args.repeat)
    _sampling_row(sampling, "dsprites_full, factors given (sample_observations_from_factors)",
                  dlib_s, _timed(lambda: ours["dsprites_full"].sample_observations_from_factors(
                      factors, np.random.RandomState(0)), args.repeat))
    recorder.write_json(args.json)

if __name__ == "__main__":
    main()
