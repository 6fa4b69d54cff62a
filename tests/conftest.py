"""Shared test fixtures.

disentanglement_lib 1.5 (the oracle) imports ``gin.tf``, which would pull in TensorFlow; its
metric modules only use gin's configurable machinery, so ``gin`` itself stands in for it.
"""

import os
import sys

import torch

# The Triton kernels run on CPU through Triton's interpreter. Triton reads TRITON_INTERPRET when a
# kernel is decorated, so it is set here, before any test imports fastdis.kernels; a machine where
# torch sees a CUDA device runs the compiled kernels instead.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import gin

    sys.modules.setdefault("gin.tf", gin)
    gin.tf = gin
except ImportError:  # pragma: no cover - the test extra installs gin-config
    gin = None


def dlib_module(name: str):
    """Import ``disentanglement_lib.evaluation.metrics.<name>`` (the oracle) or fail clearly."""
    import importlib

    try:
        return importlib.import_module(f"disentanglement_lib.evaluation.metrics.{name}")
    except ImportError as exc:  # the README's test command installs it
        raise RuntimeError(
            "the oracle disentanglement-lib==1.5 is not installed: "
            "pip install --no-deps disentanglement-lib==1.5 gin-config==0.4.0"
        ) from exc


DSPRITES_SIZES = (3, 6, 40, 32, 32)


def make_factors(n, sizes=DSPRITES_SIZES, seed=0):
    rs = np.random.RandomState(seed)
    return np.stack([rs.randint(c, size=n) for c in sizes], axis=1)


def make_codes(factors, kind, n_codes=10, dtype=np.float64, seed=1):
    """Synthetic representations: 'disentangled', 'entangled', 'noise', 'collapsed'."""
    rs = np.random.RandomState(seed)
    n, k = factors.shape
    scaled = factors / np.maximum(factors.max(axis=0), 1)
    if kind == "disentangled":
        codes = rs.normal(scale=0.05, size=(n, n_codes))
        codes[:, :k] += scaled
    elif kind == "entangled":
        mix = rs.normal(size=(k, n_codes))
        codes = scaled @ mix + rs.normal(scale=0.1, size=(n, n_codes))
    elif kind == "noise":
        codes = rs.normal(size=(n, n_codes))
    elif kind == "collapsed":
        codes = rs.normal(scale=0.05, size=(n, n_codes))
        codes[:, :k] += scaled
        codes[:, k:] = 0.0
        codes[:, -1] = 0.37  # a non-zero constant: variance is rounding noise
    else:
        raise ValueError(kind)
    return codes.astype(dtype)


@pytest.fixture(params=["disentangled", "entangled", "noise", "collapsed"])
def kind(request):
    return request.param
