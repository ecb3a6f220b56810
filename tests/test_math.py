"""The vectorisable ``exp_neg`` and ``sigmoid`` of :mod:`fastbp._math`.

Compiled: called element by element from a small ``numba.njit`` loop, as the
kernels call them. Accuracy is measured in units in the last place (ulp) of the
result's dtype, against ``np.exp`` evaluated in extended precision (long double
where the platform has one, else float64).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastbp._math import EXP_MIN, exp_neg, sigmoid

# Smallest argument of the documented accurate range: exp of it is still normal.
LOWEST = {dt: EXP_MIN[np.dtype(dt)] for dt in (np.float32, np.float64)}
EXACT = np.longdouble if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps else np.float64

EXP_MAX_ULP = 2.0  # exp_neg is about 1 ulp
# sigmoid(z) for z < 0 is e * (1 / (1 + e)): exp_neg's own ~1 ulp plus the roundings
# of 1 + e, of the division and of the product; measured up to 2.6 ulp.
SIGMOID_MAX_ULP = 3.0
# The Python fallbacks use NumPy's np.exp, whose float32 SIMD version is itself
# accurate to about 2.4 ulp (float64: 0.5), which sigmoid's roundings add to.
FALLBACK_MAX_ULP = {np.float32: 4.0, np.float64: 3.0}


@numba.njit
def compiled_exp_neg(x, out):
    for i in range(x.size):
        out[i] = exp_neg(x[i])


@numba.njit
def compiled_sigmoid(z, out):
    for i in range(z.size):
        out[i] = sigmoid(z[i])


@numba.njit
def scalar_exp_neg(x):
    return exp_neg(x)


@numba.njit
def scalar_sigmoid(z):
    return sigmoid(z)


def run(kernel, x):
    out = np.full_like(x, -1.0)
    kernel(x, out)
    return out


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the spacing of ``dtype`` at the exact value."""
    exact = np.asarray(exact, dtype=EXACT)
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(EXACT)
    return np.abs(np.asarray(got, dtype=EXACT) - exact) / spacing


def exact_exp(x):
    return np.exp(np.asarray(x, dtype=EXACT))


def exact_sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=EXACT)))


def arguments(rng, dtype, n=400_000):
    """Non-positive arguments covering [LOWEST, 0]: a grid, random points, both ends."""
    lo = LOWEST[dtype]
    x = np.concatenate(
        [
            np.linspace(lo, 0.0, n),
            rng.uniform(lo, 0.0, n),
            rng.uniform(-1.0, 0.0, n // 4),  # dense where r = x - n ln 2 changes sign often
            -np.log(2.0) * (np.arange(0.0, -lo / np.log(2.0)) + 0.5),  # rounding boundaries of n
            [0.0, -0.0, -np.finfo(dtype).tiny, -np.finfo(dtype).eps, lo],
        ]
    ).astype(dtype)
    return x[x >= lo]


def test_exp_neg_compiled_within_2_ulp(dtype, rng):
    x = arguments(rng, dtype)
    got = run(compiled_exp_neg, x)
    assert got.dtype == dtype
    err = ulp_error(got, exact_exp(x), dtype)
    assert err.max() <= EXP_MAX_ULP, f"{err.max():.2f} ulp at x = {x[np.argmax(err)]!r}"


def test_exp_neg_compiled_exact_at_zero(dtype):
    got = run(compiled_exp_neg, np.array([0.0, -0.0], dtype=dtype))
    np.testing.assert_array_equal(got, [1.0, 1.0])


def test_sigmoid_compiled_accuracy(dtype, rng):
    x = arguments(rng, dtype)
    z = np.concatenate([x, -x, [np.float32(1e-30)]]).astype(dtype)
    got = run(compiled_sigmoid, z)
    assert got.dtype == dtype
    err = ulp_error(got, exact_sigmoid(z), dtype)
    assert err.max() <= SIGMOID_MAX_ULP, f"{err.max():.2f} ulp at z = {z[np.argmax(err)]!r}"
    np.testing.assert_array_equal(run(compiled_sigmoid, np.zeros(1, dtype)), [0.5])


@pytest.mark.parametrize("sign", [-1.0, 1.0], ids=["negative", "positive"])
def test_sigmoid_compiled_saturates(dtype, sign):
    big = np.array([50.0, 100.0, 700.0, 1e4, 1e30, np.finfo(dtype).max, np.inf], dtype=dtype)
    z = (sign * big).astype(dtype)
    got = run(compiled_sigmoid, z)
    assert not np.isnan(got).any()
    assert ((got >= 0) & (got <= 1)).all()
    if sign > 0:
        np.testing.assert_array_equal(got[2:], 1.0)
    else:
        # from z = 1e4 on, beyond every clamp: the smallest value exp_neg gives
        assert (got[3:] <= np.exp(LOWEST[dtype]) * (1 + 4 * np.finfo(dtype).eps)).all()
        assert (np.diff(got) <= 0).all()  # monotone: more negative z, smaller value


def test_compiled_nan_propagates(dtype):
    nan = np.array([np.nan, -np.nan], dtype=dtype)
    assert np.isnan(run(compiled_exp_neg, nan)).all()
    assert np.isnan(run(compiled_sigmoid, nan)).all()


def test_compiled_scalar_keeps_dtype(dtype):
    """float32 in, float32 arithmetic and result (Numba picks the float32 version)."""
    value = dtype(-0.75)
    assert scalar_exp_neg(value) == pytest.approx(np.exp(-0.75), rel=1e-6)
    assert scalar_sigmoid(value) == pytest.approx(1 / (1 + np.exp(0.75)), rel=1e-6)
    expected = numba.from_dtype(np.dtype(dtype))
    for fn in (scalar_exp_neg, scalar_sigmoid):
        signatures = [s for s in fn.nopython_signatures if s.args == (expected,)]
        assert len(signatures) == 1
        assert signatures[0].return_type == expected


def test_compiled_rejects_other_types():
    with pytest.raises(numba.TypingError):
        scalar_sigmoid(3)


def test_exp_neg_compiled_below_range_matches_documentation(dtype):
    """Below EXP_MIN: exp(EXP_MIN), a normal number within 0.005 % of the smallest."""
    lowest = LOWEST[dtype]
    x = np.array([lowest - 0.2, lowest - 0.5, lowest - 100.0, -np.inf], dtype=dtype)
    tiny = np.finfo(dtype).tiny
    expected = exact_exp(np.full_like(x, lowest))
    assert ulp_error(run(compiled_exp_neg, x), expected, dtype).max() <= EXP_MAX_ULP
    assert (expected >= tiny).all()
    assert (expected <= tiny * 1.00005).all()


def test_compiled_below_range_stays_normal_and_positive(dtype):
    x = np.array([LOWEST[dtype] - 0.5, -1e4, -np.finfo(dtype).max, -np.inf], dtype=dtype)
    for kernel in (compiled_exp_neg, compiled_sigmoid):
        got = run(kernel, x)
        assert (got >= np.finfo(dtype).tiny).all()
        assert (got <= np.exp(LOWEST[dtype]) * (1 + 4 * np.finfo(dtype).eps)).all()


# -- Python fallbacks ---------------------------------------------------------------


def test_fallbacks_accuracy_and_agreement(dtype, rng):
    x = arguments(rng, dtype, n=100_000)
    fallback_exp = exp_neg(x)
    assert fallback_exp.dtype == dtype
    assert ulp_error(fallback_exp, exact_exp(x), dtype).max() <= FALLBACK_MAX_ULP[dtype]
    z = np.concatenate([x, -x]).astype(dtype)
    fallback_sigmoid = sigmoid(z)
    assert fallback_sigmoid.dtype == dtype
    assert ulp_error(fallback_sigmoid, exact_sigmoid(z), dtype).max() <= FALLBACK_MAX_ULP[dtype]
    # compiled and fallback agree within the sum of their tolerances
    both = FALLBACK_MAX_ULP[dtype] + SIGMOID_MAX_ULP
    assert ulp_error(run(compiled_sigmoid, z), fallback_sigmoid, dtype).max() <= both


def test_fallbacks_scalars_and_dtype(dtype):
    e = exp_neg(dtype(-1.5))
    s = sigmoid(dtype(-1.5))
    for value in (e, s):
        assert isinstance(value, np.generic)
        assert value.dtype == dtype
    assert e == pytest.approx(np.exp(-1.5), rel=1e-6)
    assert s == pytest.approx(1 / (1 + np.exp(1.5)), rel=1e-6)
    assert sigmoid(dtype(0.0)) == 0.5
    assert exp_neg(dtype(0.0)) == 1.0


def test_fallbacks_saturation_and_nan(dtype):
    big = np.array([1e4, np.finfo(dtype).max, np.inf], dtype=dtype)
    for z in (big, -big):
        got = sigmoid(z)
        assert not np.isnan(got).any()
        assert ((got >= 0) & (got <= 1)).all()
    np.testing.assert_array_equal(sigmoid(big), 1.0)
    np.testing.assert_array_equal(exp_neg(-big), np.exp(dtype(LOWEST[dtype])))
    assert np.isnan(exp_neg(np.array([np.nan], dtype=dtype))).all()
    assert np.isnan(sigmoid(np.array([np.nan], dtype=dtype))).all()
