"""The vectorised exp against the C library's own (numba's ``math.exp`` calls libm's ``exp``)."""

import numpy as np
import pytest
from exp_helpers import EXP_ROUTES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastdis.metrics import _libm_exp as _libm_exp_module
from fastdis.metrics._libm_exp import exp_into, reproduces_libm


def _libm_bits(x):
    bits = np.empty(x.shape[0], dtype=np.uint64)
    _libm_exp_module._libm_exp_bits(x, bits)
    return bits


def _exp_bits(x, vectorised):
    out = np.empty_like(x)
    exp_into(x, out, vectorised)
    return out.view(np.uint64)


def _arguments(seed, n):
    rng = np.random.default_rng(seed)
    return np.concatenate([
        -rng.exponential(6.0, n),  # softmax: exp(raw - max)
        rng.uniform(-750.0, 712.0, n),  # the whole range, over- and underflow included
        rng.uniform(-0.01, 0.01, n),  # the smallest table index and r
        rng.normal(0.0, 1e-17, n // 10),  # tiny: libm returns 1 + x
        [0.0, -0.0, 2.0**-54, -(2.0**-54), 511.99, -511.99, 512.0, -512.0, -708.39, -745.13,
         -746.0, 709.78, 710.0, 5e-324, np.inf, -np.inf, np.nan],
    ])


@pytest.mark.parametrize("vectorised", EXP_ROUTES)
def test_exp_into_is_libm_bit_for_bit(vectorised):
    """Three million arguments other than the probe's: every bit as libm computes it."""
    x = _arguments(seed=7, n=1_000_000)
    np.testing.assert_array_equal(_exp_bits(x, vectorised), _libm_bits(x))


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(0, 300), elements=st.floats(allow_nan=True, width=64)))
def test_exp_into_any_double(x):
    """Arbitrary doubles (any exponent, inf, NaN, empty input) take libm's value."""
    np.testing.assert_array_equal(_exp_bits(x, reproduces_libm()), _libm_bits(x))


def _unfused_twin(x):
    """The same algorithm in numpy, every multiply and add rounded on its own: glibc's exp as
    compiled for CPUs without FMA. Only for 2**-54 <= |x| < 512."""
    e = _libm_exp_module
    kd = x * e._INV_LN2_N + e._ROUNDING_SHIFT
    k_bits = kd.view(np.uint64)
    kd = kd - e._ROUNDING_SHIFT
    r = x + kd * e._NEG_LN2_HI_N + kd * e._NEG_LN2_LO_N
    j = (k_bits & np.uint64(127)) << np.uint64(1)
    tail = e._TABLE[j].view(np.float64)
    scale = (e._TABLE[j + np.uint64(1)] + (k_bits << np.uint64(45))).view(np.float64)
    r2 = r * r
    tmp = tail + r + r2 * (e._C2 + r * e._C3) + r2 * r2 * (e._C4 + r * e._C5)
    return scale + scale * tmp


def test_probe_tells_fused_from_unfused():
    """On the probe's arguments the algorithm without FMA differs from the fused one in the last
    bit (and never by more), so the probe rejects a libm built that way -- and accepts this
    process's libm exactly when the fused algorithm reproduces it."""
    x = _libm_exp_module._probe_arguments()
    x = x[(np.abs(x) >= 2.0**-54) & (np.abs(x) < 512.0)]
    fused = _exp_bits(x, True).astype(np.int64)
    unfused = _unfused_twin(x).view(np.uint64).astype(np.int64)
    n_differ = np.count_nonzero(fused != unfused)
    assert 10 <= n_differ <= x.size // 100
    assert np.max(np.abs(fused - unfused)) == 1
    assert reproduces_libm() == np.array_equal(fused, _libm_bits(x).astype(np.int64))
