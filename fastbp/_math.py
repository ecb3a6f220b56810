"""Scalar math that LLVM can vectorise: ``exp`` of a non-positive argument and the
logistic sigmoid, each in a float32 and a float64 version.

Numba's ``np.exp`` calls libm one element at a time (pip's llvmlite has no SVML),
which made a fused ``sigmoid(x + b)`` loop about 2x slower than NumPy. These
versions use only arithmetic, ``floor`` and a bit cast, so a loop over them
compiles to SIMD code:

    exp(x) = 2**n * exp(r),  n = round(x / ln 2),  r = x - n ln 2,  |r| <= ln(2)/2

with ``ln 2`` split in two (Cody-Waite) so that ``r`` is exact, ``exp(r)`` from
its Taylor polynomial (truncation below half an ulp on that interval) and ``2**n``
built from its exponent bits. Arguments are clamped at :data:`EXP_MIN`, just
above the log of the smallest normal number, so results never become subnormal
(slow on most CPUs, and beyond the exponent-bits trick): below it, ``exp(x)``
returns ``exp(EXP_MIN)``, within 0.005 % of the smallest normal, not a
subnormal or 0.

Inside compiled code call :func:`exp_neg` and :func:`sigmoid`; Numba picks the
version matching the argument's type, so float32 stays float32. Called from
Python (or with ``NUMBA_DISABLE_JIT=1``) they run the same arithmetic with NumPy.
"""

from __future__ import annotations

import math

import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

from fastbp._jit import JIT_OPTIONS, jit


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret an int64 (int32) as the float64 (float32) with the same bits."""
    if bits == types.int64:
        ret = types.float64
    elif bits == types.int32:
        ret = types.float32
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(ret))

    return ret(bits), codegen


# float64: ln 2 split so that n * _LN2_HI64 is exact for |n| <= 1024.
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_MIN_ARG64 = -708.3964  # log(2.2250738585072014e-308) = -708.39641853...


@jit
def _exp_neg64(x):
    x = max(x, _MIN_ARG64)
    n = np.floor(x * 1.4426950408889634 + 0.5)
    r = (x - n * _LN2_HI64) - n * _LN2_LO64
    # Taylor polynomial of degree 13: the remainder |r|**14 / 14! < 1e-18.
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _float_from_bits((np.int64(n) + 1023) << 52)


_LN2_HI32 = np.float32(0.693145751953125)  # 12 significant bits: n * hi is exact
_LN2_LO32 = np.float32(1.428606765330187045e-06)
_LOG2E32 = np.float32(1.4426950408889634)
_MIN_ARG32 = np.float32(-87.3365)  # log(1.1754944e-38) = -87.33654475...
_C32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))
_HALF32 = np.float32(0.5)


@jit
def _exp_neg32(x):
    x = max(x, _MIN_ARG32)
    n = np.floor(x * _LOG2E32 + _HALF32)
    r = (x - n * _LN2_HI32) - n * _LN2_LO32
    # Taylor polynomial of degree 7: the remainder |r|**8 / 8! < 6e-9.
    p = _C32[7]
    p = p * r + _C32[6]
    p = p * r + _C32[5]
    p = p * r + _C32[4]
    p = p * r + _C32[3]
    p = p * r + _C32[2]
    p = p * r + _C32[1]
    p = p * r + _C32[0]
    # Numba widens int32 arithmetic to int64: narrow again before the bit cast.
    return p * _float_from_bits(np.int32((np.int64(n) + 127) << 23))


#: Where :func:`exp_neg` clamps its argument, by dtype.
EXP_MIN = {np.dtype(np.float32): float(_MIN_ARG32), np.dtype(np.float64): _MIN_ARG64}


def exp_neg(x):
    """``exp(max(x, EXP_MIN))`` for ``x <= 0``, within about 1 ulp.

    Parameters
    ----------
    x : float32 or float64 scalar or array, ``<= 0``

    Returns
    -------
    Same type and dtype as ``x``.
    """
    x = np.asarray(x)
    return np.exp(np.maximum(x, x.dtype.type(EXP_MIN[x.dtype])))[()]


@overload(exp_neg, jit_options=JIT_OPTIONS)
def _exp_neg_overload(x):
    if x == types.float64:
        return lambda x: _exp_neg64(x)
    if x == types.float32:
        return lambda x: _exp_neg32(x)
    return None


def sigmoid(z):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, stable for every finite ``z``.

    Only ``exp`` of ``-|z|`` is taken, so nothing overflows; for ``z < 0`` the
    result is ``e / (1 + e)`` with ``e = exp(z)``.

    Parameters
    ----------
    z : float32 or float64 scalar or array

    Returns
    -------
    Same type and dtype as ``z``, in ``(0, 1]``.
    """
    z = np.asarray(z)
    e = exp_neg(-np.abs(z))
    s = 1 / (1 + e)
    return np.where(z >= 0, s, e * s).astype(z.dtype)[()]


@overload(sigmoid, jit_options=JIT_OPTIONS)
def _sigmoid_overload(z):
    if z == types.float64:

        def impl64(z):
            e = _exp_neg64(-abs(z))
            s = 1.0 / (1.0 + e)
            return s if z >= 0.0 else e * s

        return impl64
    if z == types.float32:
        one = np.float32(1.0)
        zero = np.float32(0.0)

        def impl32(z):
            e = _exp_neg32(-abs(z))
            s = one / (one + e)
            return s if z >= zero else e * s

        return impl32
    return None


def as_dtype_of(value, like):
    """``value`` converted to the dtype of ``like``, an array or a float32/float64
    scalar (so float32 math stays float32)."""
    return like.dtype.type(value)


@overload(as_dtype_of, jit_options=JIT_OPTIONS)
def _as_dtype_of_overload(value, like):
    dtype = like.dtype if isinstance(like, types.Array) else like
    if dtype == types.float32:
        return lambda value, like: np.float32(value)
    if dtype == types.float64:
        return lambda value, like: np.float64(value)
    return None
