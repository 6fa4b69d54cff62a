"""Regularizers of the study's VAE objectives, with Triton kernels, imported as ``fastdis.kernels``.

- :func:`total_correlation`: β-TCVAE's minibatch-weighted-sampling TC estimate (dlib's value),
  O(B·d) memory instead of the B×B×d tensor.
- :func:`dip_regularizer`: DIP-VAE-I/II's covariance penalty.
- :func:`gaussian_kl`: per-example KL to the standard normal (plain torch).

Each differentiable function is a ``torch.library.custom_op`` (one opaque node under
``torch.compile(fullgraph=True)``, gradients through ``register_autograd``) with two backends:
Triton kernels on CUDA tensors and a torch implementation elsewhere (``backend="auto"``); pass
``backend="triton"`` or ``"torch"`` to force one (Triton on CPU needs ``TRITON_INTERPRET=1``).
The ``*_reference`` functions are dlib's formulas written plainly in torch (the bench baseline).
"""

from ._common import HAS_TRITON
from .dip import (
    covariance_penalty,
    dip_covariance,
    dip_regularizer,
    dip_regularizer_reference,
)
from .kl import gaussian_kl
from .tc import tc_log_densities, total_correlation, total_correlation_reference

__all__ = [
    "HAS_TRITON",
    "covariance_penalty",
    "dip_covariance",
    "dip_regularizer",
    "dip_regularizer_reference",
    "gaussian_kl",
    "tc_log_densities",
    "total_correlation",
    "total_correlation_reference",
]
