"""The C library's ``exp``, bit for bit, in a form numba vectorises.

scikit-learn's logistic loss and its boosted trees' softmax call libm's ``exp`` once per sample
and class, and fastdis reproduces those models exactly (:mod:`._linear`, :mod:`._gbt`), so every
``exp`` must return libm's double to the last bit: numpy's SIMD ``exp`` differs in ~5 % of the
last bits and moves unconverged fits. A call to libm costs 4-6 ns; this module computes the same
function at ~1.5 ns per argument.

glibc (>= 2.28; the algorithm of ARM's optimized-routines) evaluates, for ``N = 128``,

.. math::

    x = \\frac{k \\ln 2}{N} + r,\\quad |r| \\le \\frac{\\ln 2}{2N},\\qquad
    e^x = 2^{k/N} e^r \\approx s + s\\,\\big(t + r + r^2 (c_2 + r c_3) + r^4 (c_4 + r c_5)\\big)

where ``k = round(x N / ln 2)`` is found by adding ``1.5 * 2**52`` (the rounding shift), ``r``
uses ``ln 2 / N`` split into a high part with trailing zero bits and a low part, and
``2^(j/N) = H_j (1 + T_j)`` for ``j = k mod N`` comes from a table whose ``H_j`` carries
``2^(k div N)`` in its exponent bits. On x86-64 CPUs with FMA, glibc's ifunc picks a build in
which the compiler fused every multiply-add; the result is ``fma(s, tmp, s)`` and the polynomial
nested fmas. :func:`exp_into` performs exactly those operations, so for ``2**-54 <= |x| < 512``
it returns libm's double; below that range libm returns ``1 + x`` (done here too) and above it,
and for inf and NaN, libm itself is called.

The table is computed here from its definition (``H_j = round(2^(j/N))``, ``T_j =
round((2^(j/N) - H_j) / H_j)`` to 60 digits); the constants are glibc's (``e_exp_data.c``).
Other C libraries (older glibc, non-FMA builds, musl, macOS, Windows) compute ``exp``
differently, so :func:`reproduces_libm` compares this function with the process's libm on a
million fixed arguments once per process, and callers use libm's ``exp`` when it does not match.

Why three loops: LLVM does not vectorise a loop with table gathers on x86 (it rates gathers too
slow), so the table is read in a scalar loop between two vector loops.

Reference: P. T. P. Tang, "Table-driven implementation of the exponential function in IEEE
floating-point arithmetic", ACM TOMS 15(2), 1989.
"""

from __future__ import annotations

import functools
import math
from decimal import Context, Decimal

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["exp_into", "reproduces_libm"]

_TABLE_BITS = 7
_N = 1 << _TABLE_BITS
_INV_LN2_N = float.fromhex("0x1.71547652b82fep0") * _N
_ROUNDING_SHIFT = float.fromhex("0x1.8p52")
_NEG_LN2_HI_N = -float.fromhex("0x1.62e42fefa0000p-8")
_NEG_LN2_LO_N = -float.fromhex("0x1.cf79abc9e3b3ap-47")
_C2 = float.fromhex("0x1.ffffffffffdbdp-2")
_C3 = float.fromhex("0x1.555555555543cp-3")
_C4 = float.fromhex("0x1.55555cf172b91p-5")
_C5 = float.fromhex("0x1.1111167a4d017p-7")
# top 12 bits (sign and exponent) of 2**-54 and of 512.0: libm's fast range is between them
_TOP12_TINY = np.uint64(0x3C9)
_TOP12_LARGE = np.uint64(0x408)


def _exp_table() -> np.ndarray:
    """``tab[2j] = bits(T_j)``, ``tab[2j + 1] = bits(H_j) - j * 2**52 / N`` (mod 2**64)."""
    context = Context(prec=60)
    table = np.empty(2 * _N, dtype=np.uint64)
    for j in range(_N):
        exact = context.power(Decimal(2), context.divide(Decimal(j), Decimal(_N)))
        high = float(exact)
        tail = float(context.divide(exact - Decimal(high), Decimal(high)))
        table[2 * j] = np.float64(tail).view(np.uint64)
        high_bits = int(np.float64(high).view(np.uint64))
        table[2 * j + 1] = (high_bits - (j << 52) // _N) % (1 << 64)
    return table


_TABLE = _exp_table()


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma.f64``)."""
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return signature, codegen


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as uint64."""
    signature = types.uint64(types.float64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return signature, codegen


@intrinsic
def _from_bits(typingctx, bits):
    """The float64 with these IEEE bits."""
    signature = types.float64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return signature, codegen


@numba.njit(inline="always")
def _rounded_k(x):
    """``k + 1.5 * 2**52`` as a double: its low bits are the integer ``k``."""
    return _fma(_INV_LN2_N, x, _ROUNDING_SHIFT)


@numba.njit(nogil=True, cache=True)
def exp_into(x, out, libm_equal):
    """``out[i] = exp(x[i])`` with libm's rounding, for 1-D float64 arrays that do not overlap
    (``out`` holds table values while ``x`` is still read).

    ``libm_equal`` is :func:`reproduces_libm`'s answer; when False every element calls libm.
    """
    n = x.shape[0]
    if not libm_equal:
        for i in range(n):
            out[i] = math.exp(x[i])
        return
    table = _TABLE
    scale_bits = np.empty(n, dtype=np.uint64)
    for i in range(n):  # vectorised: k
        scale_bits[i] = _bits(_rounded_k(x[i]))
    mask = np.uint64(_N - 1)
    for i in range(n):  # scalar: the table (out holds T_j until the last loop)
        k_bits = scale_bits[i]
        j = (k_bits & mask) << np.uint64(1)
        out[i] = _from_bits(table[j])
        scale_bits[i] = table[j + np.uint64(1)] + (k_bits << np.uint64(52 - _TABLE_BITS))
    n_outside = 0
    for i in range(n):  # vectorised: reduction, polynomial, scaling
        xi = x[i]
        kd = _rounded_k(xi) - _ROUNDING_SHIFT
        r = _fma(kd, _NEG_LN2_LO_N, _fma(kd, _NEG_LN2_HI_N, xi))
        r2 = r * r
        tmp = _fma(r2 * r2, _fma(r, _C5, _C4), _fma(r2, _fma(r, _C3, _C2), out[i] + r))
        scale = _from_bits(scale_bits[i])
        top12 = (_bits(xi) >> np.uint64(52)) & np.uint64(0x7FF)
        out[i] = 1.0 + xi if top12 < _TOP12_TINY else _fma(scale, tmp, scale)
        n_outside += np.int64(top12 >= _TOP12_LARGE)
    if n_outside:  # |x| >= 512, inf, NaN: over/underflow handling is libm's
        for i in range(n):
            if (_bits(x[i]) >> np.uint64(52)) & np.uint64(0x7FF) >= _TOP12_LARGE:
                out[i] = math.exp(x[i])


def _probe_arguments() -> np.ndarray:
    """A million fixed arguments: softmax-like (mostly small negative), the whole range, special
    values."""
    rng = np.random.default_rng(20181128)
    specials = [0.0, -0.0, 1e-300, -1e-20, 2.0**-54, 511.9, 512.0, -708.4, -745.2, 709.8,
                np.inf, -np.inf, np.nan]
    return np.concatenate([
        -rng.exponential(4.0, 600_000),
        rng.uniform(-745.0, 710.0, 200_000),
        rng.uniform(-1.0, 1.0, 150_000),
        rng.normal(0.0, 1e-6, 50_000),
        np.array(specials),
    ])


@numba.njit(nogil=True, cache=True)
def _libm_exp_bits(x, out_bits):
    for i in range(x.shape[0]):
        out_bits[i] = _bits(math.exp(x[i]))


@functools.cache
def reproduces_libm() -> bool:
    """Whether :func:`exp_into` returns this process's libm ``exp`` bit for bit (checked once on
    a million fixed arguments)."""
    x = _probe_arguments()
    ours = np.empty_like(x)
    exp_into(x, ours, True)
    theirs = np.empty(x.shape[0], dtype=np.uint64)
    _libm_exp_bits(x, theirs)
    return bool(np.array_equal(ours.view(np.uint64), theirs))
