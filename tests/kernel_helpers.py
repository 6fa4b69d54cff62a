"""What the fastdis.kernels tests share: backends, tolerances, devices, the twin comparison.

Imported as ``from kernel_helpers import ...``: pytest puts tests/ on sys.path (tests/ has no
``__init__.py``, so the default "prepend" import mode inserts it), as it does for conftest.
"""

import torch
from fastdis.kernels._common import interpreter_enabled

BACKENDS = ["torch", "triton"]
# Float32 runs must agree with the float64 twins to 1e-5 relative, float64 runs to ~1e-12.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-11}


def device_for(backend):
    """Where a backend's inputs live: Triton on CUDA when there is a GPU, else on CPU under
    the interpreter (tests/conftest.py sets TRITON_INTERPRET=1 wherever torch sees no GPU)."""
    if backend == "torch" or interpreter_enabled():
        return "cpu"
    assert torch.cuda.is_available(), "TRITON_INTERPRET=0 on a machine without a CUDA device"
    return "cuda"


def assert_close_scaled(actual, expected, tolerance, what):
    """|actual - expected| ≤ tolerance · max(1, max|expected|), elementwise, in float64."""
    actual, expected = actual.double(), expected.double()
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= tolerance * scale, f"{what}: max error {error:.3g} vs scale {scale:.3g}"


def check_against_twin(function, twin, inputs64, names, dtype, backend):
    """``function(*inputs)`` and its gradients, with the float64 ``inputs64`` cast to ``dtype``
    on the backend's device, against ``twin(*inputs64)`` in float64, to ``TOLERANCE[dtype]``.

    ``names`` name the inputs in failure messages. An input the twin does not use (DIP-I's
    ``z_logvar``) must get a zero gradient.
    """
    device = device_for(backend)
    inputs = [x.to(device, dtype).requires_grad_() for x in inputs64]
    value = function(*inputs)
    grads = [grad.cpu() for grad in torch.autograd.grad(value, inputs)]
    value = value.cpu()
    reference_inputs = [x.clone().requires_grad_() for x in inputs64]
    reference = twin(*reference_inputs)
    reference_grads = torch.autograd.grad(reference, reference_inputs, materialize_grads=True)
    assert value.dtype == dtype and value.shape == ()
    tolerance = TOLERANCE[dtype]
    assert_close_scaled(value, reference, tolerance, "value")
    for name, grad, reference_grad in zip(names, grads, reference_grads, strict=True):
        assert grad.dtype == dtype
        assert_close_scaled(grad, reference_grad, tolerance, f"grad {name}")
