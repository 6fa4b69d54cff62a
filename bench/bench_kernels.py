"""The training regularizers side by side: Triton kernels, eager torch, torch.compile'd torch.

For β-TCVAE's total correlation and DIP-VAE-II's covariance penalty, at B = 64, 256, 1,024 and
4,096 with d = 10 (float32), one forward + backward (gradients w.r.t. every input) is timed and
its peak extra memory measured for:

- ``triton``: ``fastdis.kernels`` with ``backend="triton"`` (CUDA only: on CPU the Triton
  interpreter is for correctness, so it is checked at B = 64 but not timed);
- ``fastdis torch``: ``fastdis.kernels`` with ``backend="torch"`` (what ``"auto"`` runs on CPU:
  the same streamed math in row chunks, explicit backward);
- ``eager torch``: dlib's formula written plainly in torch (``*_reference``; TC materialises
  the B×B×d tensor), autograd for the backward;
- ``compiled torch``: the same function through ``torch.compile(dynamic=True)`` (one compile
  for all batch sizes, so the CUDA run stays short), forward and backward compiled.

Times: CUDA events around ``n`` steps after warm-up (CUDA), or the median of repeated
``time.perf_counter`` steps with ``torch.set_num_threads(--threads)`` (CPU, default 1).
Peak memory: ``torch.cuda.max_memory_allocated`` minus what was allocated before the step
(CUDA), or the growth of the process's peak resident set over one step (CPU: Linux
``/proc/self/clear_refs`` resets the peak; glibc is told to return freed blocks of ≥ 64 KiB).
``rel err`` is the largest error of the value and gradients against the float64 eager formula,
relative to the largest magnitude of each.

Usage::

    python bench/bench_kernels.py                                 # CPU, 1 thread
    python bench/bench_kernels.py --device cuda --json out.json   # GPU, ~1 minute
    fastdis bench kernels --device cuda --json out.json           # the same, installed
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
import time
from functools import partial

import torch
from fastdis.bench._table import Recorder, add_json_argument, note

from fastdis import kernels

LAMBDA_OD = 10.0  # DIP-VAE-II in the study: lambda_od in {1, 2, 5, 10, 20, 50}, lambda_d_factor 1
LAMBDA_D = 10.0


# -- the functions compared ----------------------------------------------------------------------


def tc_inputs(batch_size, num_latents, device, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z_mean = torch.randn(batch_size, num_latents, generator=generator, dtype=torch.float64)
    z_logvar = -1.0 + 0.5 * torch.randn(
        batch_size, num_latents, generator=generator, dtype=torch.float64
    )
    noise = torch.randn(batch_size, num_latents, generator=generator, dtype=torch.float64)
    z = z_mean + torch.exp(0.5 * z_logvar) * noise
    return [x.to(device, dtype) for x in (z, z_mean, z_logvar)]


def dip_inputs(batch_size, num_latents, device, dtype, seed=0):
    return tc_inputs(batch_size, num_latents, device, dtype, seed)[1:]


def dip_reference(z_mean, z_logvar):
    return kernels.dip_regularizer_reference(
        z_mean, z_logvar, lambda_od=LAMBDA_OD, lambda_d=LAMBDA_D, dip_type="ii"
    )


def dip_fastdis(z_mean, z_logvar, backend):
    return kernels.dip_regularizer(
        z_mean, z_logvar, lambda_od=LAMBDA_OD, lambda_d=LAMBDA_D, dip_type="ii", backend=backend
    )


REGULARIZERS = {
    "total_correlation": {
        "inputs": tc_inputs,
        "reference": kernels.total_correlation_reference,
        "fastdis": lambda backend: partial(kernels.total_correlation, backend=backend),
    },
    "dip_regularizer (DIP-II)": {
        "inputs": dip_inputs,
        "reference": dip_reference,
        "fastdis": lambda backend: partial(dip_fastdis, backend=backend),
    },
}


def forward_backward(function, inputs):
    value = function(*inputs)
    grads = torch.autograd.grad(value, inputs)
    return value, grads


# -- measuring -----------------------------------------------------------------------------------


class CpuPeakMemory:
    """Peak resident-set growth over one call, from Linux's VmHWM (None where unavailable)."""

    def __init__(self):
        try:
            libc = ctypes.CDLL("libc.so.6")
            # M_MMAP_THRESHOLD = -3: a fixed threshold, so freed tensors go back to the OS and
            # the next measurement starts from the true resident set.
            libc.mallopt(-3, 64 * 1024)
            self._libc = libc
            self._reset()
            self.available = True
        except OSError:
            self.available = False

    @staticmethod
    def _read_kib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
        raise OSError(field)

    def _reset(self):
        # Hand free heap pages back first, so reusing them counts as growth again.
        self._libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current resident set

    def measure(self, call):
        if not self.available:
            call()
            return None
        self._reset()
        before = self._read_kib("VmRSS:")
        call()
        return max(0, self._read_kib("VmHWM:") - before) * 1024


def gpu_seconds(run, steps=5):
    """GPU time of one step: the summed durations of the CUDA kernels it launched.

    At small and medium B a step's wall time is set by the CPU launching kernels (Python,
    autograd, dispatch), not by the GPU; in a training step those launches overlap the network's
    GPU work, so kernel time is the number that adds up.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(steps):
            run()
        torch.cuda.synchronize()
    total_us = sum(event.self_device_time_total for event in profiler.key_averages())
    return total_us / 1e6 / steps


def measure(function, inputs, device, budget_s):
    """(seconds per forward+backward, peak extra bytes or None) after a warm-up call.

    On CPU the peak is measured later, by :func:`measure_cpu_memory`, once every time is taken:
    the allocator setting it needs (see :class:`CpuPeakMemory`) would slow the timed steps.
    """
    run = partial(forward_backward, function, inputs)
    run()  # warm-up: compiles (Triton JIT, inductor) and allocator caches
    if device == "cuda":
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        stop.record()
        torch.cuda.synchronize()
        single = start.elapsed_time(stop) / 1e3
        steps = int(min(100, max(3, budget_s / max(single, 1e-6))))
        start.record()
        for _ in range(steps):
            run()
        stop.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(stop) / 1e3 / steps
        torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
        return seconds, peak
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 50):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
        if times[-1] > budget_s and len(times) >= 2:  # slow steps: two are enough
            break
    return statistics.median(times), None


def measure_cpu_memory(pending):
    """Fill ``peak_extra_mb`` of CPU rows: one more step each, under CpuPeakMemory."""
    peak_memory = CpuPeakMemory()
    for row, function, inputs in pending:
        peak = peak_memory.measure(partial(forward_backward, function, inputs))
        row["peak_extra_mb"] = None if peak is None else peak / 2**20


def relative_error(function, inputs, reference_value, reference_grads):
    """Largest error of value and each gradient vs the float64 formula, relative to its scale."""
    value, grads = forward_backward(function, inputs)
    worst = 0.0
    for got, want in [(value, reference_value), *zip(grads, reference_grads, strict=True)]:
        scale = want.abs().max().item() or 1.0
        worst = max(worst, (got.double().cpu() - want).abs().max().item() / scale)
    return worst


# -- the run -------------------------------------------------------------------------------------


def run(args):
    device = args.device
    dtype = torch.float32
    if device == "cpu":
        torch.set_num_threads(args.threads)
    rows, pending_memory = [], []
    for name, spec in REGULARIZERS.items():
        compiled_reference = torch.compile(spec["reference"], dynamic=True)
        methods = {
            "triton": spec["fastdis"]("triton"),
            "fastdis torch": spec["fastdis"]("torch"),
            "eager torch": spec["reference"],
            "compiled torch": compiled_reference,
        }
        for batch_size in args.sizes:
            # The float64 eager formula is the accuracy yardstick (skipped on CPU at B = 4,096,
            # where its B×B×d float64 tensors alone would take several GB).
            check = device == "cuda" or batch_size <= 1024
            if check:
                inputs64 = [
                    x.cpu().requires_grad_()
                    for x in spec["inputs"](batch_size, args.latents, "cpu", torch.float64)
                ]
                if device == "cuda":
                    inputs64 = [x.detach().cuda().requires_grad_() for x in inputs64]
                reference_value, reference_grads = forward_backward(spec["reference"], inputs64)
                reference_value = reference_value.detach().cpu()
                reference_grads = [g.cpu() for g in reference_grads]
                del inputs64
            eager_seconds = eager_gpu_ms = None
            for method, function in methods.items():
                row = {"regularizer": name, "batch_size": batch_size, "method": method}
                inputs = [
                    x.requires_grad_()
                    for x in spec["inputs"](batch_size, args.latents, device, dtype)
                ]
                if method == "triton" and device != "cuda":
                    # The interpreter checks correctness only (B <= 64): ~1,500x slower than torch.
                    if batch_size <= 64 and kernels._common.interpreter_enabled():
                        row["rel_err"] = relative_error(
                            function, inputs, reference_value, reference_grads
                        )
                    row["note"] = "interpreter: correctness only"
                    rows.append(row)
                    continue
                seconds, peak = measure(function, inputs, device, args.budget)
                row["ms"] = seconds * 1e3
                if device == "cuda":
                    row["gpu_ms"] = gpu_seconds(partial(forward_backward, function, inputs)) * 1e3
                row["peak_extra_mb"] = None if peak is None else peak / 2**20
                if device == "cpu":
                    pending_memory.append((row, function, inputs))
                if method == "eager torch":
                    eager_seconds, eager_gpu_ms = seconds, row.get("gpu_ms")
                if check:
                    row["rel_err"] = relative_error(
                        function, inputs, reference_value, reference_grads
                    )
                rows.append(row)
                note(_progress(row))
            for row in rows:
                if row["batch_size"] == batch_size and row["regularizer"] == name and "ms" in row:
                    row["speedup_vs_eager"] = eager_seconds / (row["ms"] / 1e3)
                    if eager_gpu_ms is not None and row.get("gpu_ms"):
                        row["gpu_speedup_vs_eager"] = eager_gpu_ms / row["gpu_ms"]
    if pending_memory:
        measure_cpu_memory(pending_memory)
    return rows


def _progress(row):
    return (
        f"  {row['regularizer']:<26} B={row['batch_size']:<5} {row['method']:<15} "
        f"{row['ms']:9.3f} ms"
    )


def float64_triton_check(args):
    """On CUDA: the Triton kernels in float64 against the float64 formula (B = 256)."""
    results = {}
    for name, spec in REGULARIZERS.items():
        inputs = [
            x.requires_grad_() for x in spec["inputs"](256, args.latents, "cuda", torch.float64)
        ]
        reference_value, reference_grads = forward_backward(spec["reference"], inputs)
        results[name] = relative_error(
            spec["fastdis"]("triton"),
            inputs,
            reference_value.detach().cpu(),
            [g.cpu() for g in reference_grads],
        )
    return results


KERNEL_COLUMNS = {
    "regularizer": "{}", "batch_size": "{}", "method": "{}", "ms": "{:.3f}",
    "speedup_vs_eager": "{:.2f}x", "gpu_ms": "{:.3f}", "gpu_speedup_vs_eager": "{:.2f}x",
    "peak_extra_mb": "{:.2f}", "rel_err": "{:.1e}", "note": "{}",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sizes", default="64,256,1024,4096", help="batch sizes, comma-separated")
    parser.add_argument("--latents", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timing per cell")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    if args.budget is None:
        args.budget = 0.2 if args.device == "cuda" else 1.0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")

    setup = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": platform.python_version(),
        "threads": torch.get_num_threads() if args.device == "cpu" else None,
        "num_latents": args.latents,
        "dtype": "float32",
    }
    if args.device == "cpu":
        setup["threads"] = args.threads
    started = time.perf_counter()
    rows = run(args)
    setup["float64_triton_rel_err"] = float64_triton_check(args) if args.device == "cuda" else None
    setup["wall_s"] = time.perf_counter() - started

    threads = f", {args.threads} thread(s)" if args.device == "cpu" else ""
    heading = (
        f"Device: {setup['device'] or args.device}{threads}; torch {setup['torch']}, triton "
        f"{setup['triton']}, d = {args.latents}, float32, forward + backward; wall "
        f"{setup['wall_s']:.0f} s."
    )
    recorder = Recorder("kernels", **setup)
    columns = {name: fmt for name, fmt in KERNEL_COLUMNS.items()
               if args.device == "cuda" or not name.startswith("gpu")}
    table = recorder.table("regularizers", columns, ["regularizer", "batch_size", "method"],
                           heading)
    for row in rows:
        table.add(row)
    if setup["float64_triton_rel_err"]:
        print()
        print(
            "Triton in float64 vs the float64 formula at B = 256 (max rel err): "
            + ", ".join(
                f"{name} {err:.1e}" for name, err in setup["float64_triton_rel_err"].items()
            )
        )
    recorder.write_json(args.json)


def _triton_version():
    try:
        import triton

        return triton.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
