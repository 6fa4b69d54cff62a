"""Shared input checks and backend choice for the regularizer kernels.

Every public function in ``fastdis.kernels`` calls :func:`check_latents` on its first line, so the
bodies only ever see 2-D floating tensors of one shape, dtype and device, and
:func:`resolve_backend` decides once, outside the custom ops, whether Triton or torch runs.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os

import torch

try:  # triton is optional: CPU installs without the test extra run the torch path only
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:  # pragma: no cover - the test extra installs triton
    HAS_TRITON = False

BACKENDS = ("auto", "triton", "torch")
SUPPORTED_DTYPES = (torch.float32, torch.float64)

# Widest latent size the Triton kernels take: a tile holds every latent dimension at once (the joint
# density sums over all of them before the log-sum-exp), so d is padded to a power of two in
# registers. The study uses d = 10; wider codes go to the torch path under backend="auto".
TRITON_MAX_LATENTS = 128


def check_latents(**tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Check that every keyword is a (batch, latents) float tensor like the first one.

    Returns the tensors made contiguous, in the order given. Raises ``ValueError`` naming the
    argument, what was expected and what arrived.
    """
    first_name, first = None, None
    checked = []
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor of shape (batch_size, num_latents); "
                f"got {type(tensor).__name__}. Convert it with torch.as_tensor."
            )
        if tensor.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D with shape (batch_size, num_latents); got shape "
                f"{tuple(tensor.shape)}. Reshape it to (batch_size, num_latents)."
            )
        if tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(
                f"{name} must be float32 or float64; got {tensor.dtype}. Cast it with "
                f".float() or .double()."
            )
        if tensor.shape[0] < 1 or tensor.shape[1] < 1:
            raise ValueError(
                f"{name} must hold at least one sample and one latent; got shape "
                f"{tuple(tensor.shape)}."
            )
        if first is None:
            first_name, first = name, tensor
        else:
            if tensor.shape != first.shape:
                raise ValueError(
                    f"{name} must have the shape of {first_name}, {tuple(first.shape)}; got "
                    f"{tuple(tensor.shape)}."
                )
            if tensor.dtype != first.dtype:
                raise ValueError(
                    f"{name} must have the dtype of {first_name}, {first.dtype}; got "
                    f"{tensor.dtype}."
                )
            if tensor.device != first.device:
                raise ValueError(
                    f"{name} must be on the device of {first_name}, {first.device}; got "
                    f"{tensor.device}."
                )
        checked.append(tensor.contiguous())
    return tuple(checked)


def check_weight(name: str, value: float) -> float:
    """Check that a penalty weight is a finite real number and return it as a Python float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number; got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}.")
    return value


def interpreter_enabled() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def resolve_backend(backend: str, reference: torch.Tensor) -> str:
    """Turn ``"auto" | "triton" | "torch"`` into the backend that runs: ``"triton"`` or ``"torch"``.

    ``"auto"`` picks Triton for CUDA tensors when triton imports and the latent size fits in a
    tile, torch otherwise. ``"triton"`` is forced: it runs on CUDA, or on CPU tensors under
    ``TRITON_INTERPRET=1`` (correctness checks only: the interpreter is ~1,500x slower).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    if backend == "torch":
        return "torch"
    num_latents = reference.shape[1]
    if backend == "auto":
        usable = HAS_TRITON and reference.is_cuda and num_latents <= TRITON_MAX_LATENTS
        return "triton" if usable else "torch"
    if not HAS_TRITON:
        raise ValueError("backend='triton' needs the triton package: pip install triton.")
    if num_latents > TRITON_MAX_LATENTS:
        raise ValueError(
            f"backend='triton' handles at most {TRITON_MAX_LATENTS} latents; got "
            f"{num_latents}. Use backend='torch' (or 'auto')."
        )
    if not reference.is_cuda and not interpreter_enabled():
        raise ValueError(
            f"backend='triton' needs CUDA tensors (got device {reference.device}); on CPU set "
            "TRITON_INTERPRET=1 before importing fastdis.kernels, or use backend='torch'."
        )
    return "triton"


def run_backend(backend: str, torch_impl, triton_impl: str, *args):
    """The body of every custom op: ``torch_impl(*args)``, or on ``backend="triton"`` the function
    ``triton_impl`` (``"module.function"`` in this package) with the same arguments.

    The Triton module is imported only when it runs, so torch-only installs never import triton.
    """
    if backend == "triton":
        module_name, function_name = triton_impl.split(".")
        module = importlib.import_module(f".{module_name}", __package__)
        return getattr(module, function_name)(*args)
    return torch_impl(*args)


def on_device(tensor: torch.Tensor):
    """Context that makes ``tensor``'s GPU the current one, so Triton launches there."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def check_contiguous(**tensors: torch.Tensor) -> None:
    """The Triton kernels index rows as ``row * num_latents``: refuse strided tensors."""
    for name, tensor in tensors.items():
        if not tensor.is_contiguous():
            raise ValueError(
                f"{name} must be contiguous for the Triton kernels; call .contiguous() first."
            )


def register_slicewise_vmap(op) -> None:
    """Let ``torch.vmap`` (a pack of models) map ``op`` by calling it once per slice.

    Each slice is one model's (batch, latents) problem, so the op's checks, its Triton launch
    and its autograd formula (recorded per slice) are those of a single model: on the same
    inputs, each model gets bit for bit what it gets alone. The price is one launch per model
    and per op, small beside the convolutions: in a ``torch.vmap`` pack of 8 at batch 64 on one
    CPU thread, the TC ops took 65 ms of a 6.5 s β-TCVAE step and the DIP ops 7 ms of a 6.7 s
    DIP-VAE-II step. On GPUs a pack axis in the Triton grid would save 2·P launches per step.
    Non-tensor arguments and unbatched tensors are passed to every slice unchanged.
    """

    def slicewise(info, in_dims, *args):
        def sliced(index):
            return [arg.movedim(dim, 0)[index] if dim is not None else arg
                    for arg, dim in zip(args, in_dims, strict=True)]

        outputs = [op(*sliced(index)) for index in range(info.batch_size)]
        if isinstance(outputs[0], torch.Tensor):
            return torch.stack(outputs), 0
        stacked = tuple(torch.stack(parts) for parts in zip(*outputs, strict=True))
        return stacked, (0,) * len(stacked)

    torch.library.register_vmap(op, slicewise)
