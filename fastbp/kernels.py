"""Compiled kernels of one dense layer, the loss and the update.

Each kernel writes into arrays the caller supplies and allocates nothing, so a
training loop can call them on buffers made once per fit. They validate nothing:
the Python layer (:mod:`fastbp.network`) has checked shapes and dtypes already.
All arrays are float32 or float64, every array of a call the same dtype, of any
layout (C, Fortran, strided views); products reach BLAS without a copy whenever
BLAS can read the operands (rows or columns with unit stride; a transposed view
becomes a transpose flag) and run as plain loops otherwise. float32 in means
float32 arithmetic and float32 out.

Threads: every kernel takes ``threads``, the number of threads to use, or None
for one. With None, the parallel code is never even compiled, so small networks
start fast. Products big enough to pay for threads are split over blocks of
output columns, one block per thread, each block a BLAS call (single-threaded:
fastbp limits BLAS to one thread during its calls, so the two pools never
compete) followed by that block's epilogue while it is still in cache. Every
output element is computed by the same sequence of operations whatever the
number of blocks, so results do not depend on the thread count.

:mod:`fastbp.reference` has a plain-NumPy twin of every kernel, with the same
name and signature.

Activations are picked by an integer code (:data:`IDENTITY`, :data:`LOGISTIC`,
:data:`TANH`, :data:`RELU`); their derivatives are taken from the layer's output
``a``, never by recomputing the activation:

=========  ===================  ==========================
code       ``a = f(z)``         ``f'(z)`` in terms of ``a``
=========  ===================  ==========================
IDENTITY   ``z``                ``1``
LOGISTIC   ``1 / (1 + e^-z)``   ``a (1 - a)``
TANH       ``tanh z``           ``1 - a^2``
RELU       ``max(z, 0)``        ``1 if a > 0 else 0``
=========  ===================  ==========================
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastbp import _views
from fastbp._blas import gemm
from fastbp._jit import (
    PARALLEL_GEMM,
    PARALLEL_MIN,
    SMALL_GEMM,
    jit,
    jit_inline,
    pjit,
    serial_and_parallel,
)
from fastbp._math import as_dtype_of, exp_neg, sigmoid

IDENTITY = 0
LOGISTIC = 1
TANH = 2
RELU = 3

# Transpose flags of the products. NumPy booleans, not Python ones: Numba would
# compile a product (and its BLAS call) once per combination of literal True /
# False arguments; these are plain run-time booleans, so one version serves all.
_PLAIN = np.bool_(False)
_TRANSPOSED = np.bool_(True)

# Column blocks start at multiples of this (the widest SIMD vector, in floats).
_ALIGN = 16
# Big products are cut into at most _MAX_BLOCKS blocks of at least _BLOCK_COLUMNS
# output columns (enough blocks to keep 16 threads busy, each a full BLAS call).
_BLOCK_COLUMNS = 64
_MAX_BLOCKS = 16


# -- products ------------------------------------------------------------------


@jit
def _product(alpha, a, trans_a, b, trans_b, beta, c):
    """``c = alpha * op(a) @ op(b) + beta * c``: plain loops when tiny, else BLAS."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m * n * k >= SMALL_GEMM and gemm(alpha, a, trans_a, b, trans_b, beta, c):
        return
    scale = as_dtype_of(alpha, c)
    keep = as_dtype_of(beta, c)
    # Both loop orders add the same terms in the same order (bit-identical results).
    # Narrow outputs: one dot product per element, kept in a register; a row too
    # short for a SIMD vector gains nothing from the row-update form below, which
    # pays for its vector set-up on every row (measured 2-5x slower at 4x4x1).
    if n < _ALIGN:
        for i in range(m):
            for j in range(n):
                acc = as_dtype_of(0.0, c) if beta == 0 else keep * c[i, j]
                for p in range(k):
                    aip = scale * (a[p, i] if trans_a else a[i, p])
                    acc += aip * (b[j, p] if trans_b else b[p, j])
                c[i, j] = acc
        return
    for i in range(m):
        for j in range(n):
            c[i, j] = 0 if beta == 0 else keep * c[i, j]
        for p in range(k):
            aip = scale * (a[p, i] if trans_a else a[i, p])
            if trans_b:
                for j in range(n):
                    c[i, j] += aip * b[j, p]
            else:
                for j in range(n):
                    c[i, j] += aip * b[p, j]


@jit
def _n_blocks(n, work, threads, threshold):
    """How many blocks to split n columns into, if ``work`` pays for it.

    The count depends on n only, never on ``threads``: OpenBLAS may round a product
    and the same product cut into column blocks differently (its kernels depend on
    the operands' shapes; seen with OpenBLAS 0.3.30 in float32), so the cut must be
    the same on 1 thread as on 2 for results not to depend on the thread count.
    """
    if work < threshold:
        return 1
    return max(1, min(_MAX_BLOCKS, n // _BLOCK_COLUMNS))


@jit
def _block(n, n_blocks, index):
    """Columns ``[j0, j1)`` of block ``index`` (may be empty)."""
    width = ((n + n_blocks - 1) // n_blocks + _ALIGN - 1) // _ALIGN * _ALIGN
    j0 = min(n, index * width)
    return j0, min(n, j0 + width)


def _product_columns_body(alpha, a, trans_a, b, trans_b, beta, c, n_blocks):
    n = c.shape[1]
    for index in prange(n_blocks):
        j0, j1 = _block(n, n_blocks, index)
        if j0 < j1:
            if trans_b:
                _product(alpha, a, trans_a, b[j0:j1, :], _TRANSPOSED, beta, c[:, j0:j1])
            else:
                _product(alpha, a, trans_a, b[:, j0:j1], _PLAIN, beta, c[:, j0:j1])


_product_columns_parallel = pjit(_product_columns_body)


@jit_inline
def _product_split(alpha, a, trans_a, b, trans_b, beta, c, threads):
    """:func:`_product` split over column blocks of ``c``, on threads when big."""
    if threads is not None:
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        n_blocks = _n_blocks(n, m * k * n, threads, PARALLEL_GEMM)
        if n_blocks > 1:
            _product_columns_parallel(alpha, a, trans_a, b, trans_b, beta, c, n_blocks)
            return
    _product(alpha, a, trans_a, b, trans_b, beta, c)


@jit
def matmul(a, b, out, threads=None):
    """``out[:] = a @ b``. a (m, k), b (k, n), out (m, n). Mutates ``out``."""
    _product_split(1.0, a, _PLAIN, b, _PLAIN, 0.0, out, threads)


# -- forward -------------------------------------------------------------------


@jit_inline
def _bias_activation(z, b, activation):
    """``z[:] = f(z + b)`` for z (m, n) with unit-stride rows, b (n,)."""
    m, n = z.shape
    zero = as_dtype_of(0.0, z)
    # One branch per activation outside the loops, so each inner loop vectorises.
    if activation == LOGISTIC:
        for i in range(m):
            for j in range(n):
                z[i, j] = sigmoid(z[i, j] + b[j])
    elif activation == TANH:
        for i in range(m):
            for j in range(n):
                z[i, j] = math.tanh(z[i, j] + b[j])
    elif activation == RELU:
        for i in range(m):
            for j in range(n):
                z[i, j] = max(z[i, j] + b[j], zero)
    else:
        for i in range(m):
            for j in range(n):
                z[i, j] += b[j]


@jit_inline
def _bias_activation_flat(z, b, activation):
    """:func:`_bias_activation` for a C-contiguous z: the activation runs over z as
    one flat vector, so it vectorises even when rows are shorter than a SIMD vector."""
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] += b[j]
    if activation == IDENTITY:
        return
    flat = _views.flat(z)
    zero = as_dtype_of(0.0, z)
    if activation == LOGISTIC:
        for i in range(flat.size):
            flat[i] = sigmoid(flat[i])
    elif activation == TANH:
        for i in range(flat.size):
            flat[i] = math.tanh(flat[i])
    elif activation == RELU:
        for i in range(flat.size):
            flat[i] = max(flat[i], zero)


def _forward_body(x, w, b, out, activation, n_blocks):
    n = out.shape[1]
    for index in prange(n_blocks):
        j0, j1 = _block(n, n_blocks, index)
        if j0 < j1:
            _product(1.0, x, _PLAIN, w[:, j0:j1], _PLAIN, 0.0, out[:, j0:j1])
            _bias_activation(out[:, j0:j1], b[j0:j1], activation)


_forward_parallel = pjit(_forward_body)


@jit
def dense_forward(x, w, b, out, activation=LOGISTIC, threads=None):
    """``out[:] = f(x @ w + b)``. x (m, n_in), w (n_in, n_out), b (n_out,), out (m, n_out).

    Each block of output columns gets its product (BLAS, or loops when tiny) and
    then bias and activation in one pass while it is in cache. Mutates ``out``.
    """
    if threads is not None:
        m, k = x.shape
        n = out.shape[1]
        n_blocks = _n_blocks(n, m * k * n, threads, PARALLEL_GEMM)
        if n_blocks > 1:
            _forward_parallel(x, w, b, out, activation, n_blocks)
            return
    # One block: the whole arrays, keeping their layout (column slices would not).
    _product(1.0, x, _PLAIN, w, _PLAIN, 0.0, out)
    if out.strides[1] == out.itemsize and out.strides[0] == out.shape[1] * out.itemsize:
        _bias_activation_flat(out, b, activation)
    else:
        _bias_activation(out, b, activation)


# -- backward ------------------------------------------------------------------


@jit_inline
def _derivative_colsum(delta, a, db, activation):
    """``delta *= f'(a)`` from the output ``a``; ``db[:] = column sums of delta``.

    Rows are summed in order, so db does not depend on how columns are split.
    """
    m, n = delta.shape
    one = as_dtype_of(1.0, a)
    for j in range(n):
        db[j] = 0
    for i in range(m):
        if activation == LOGISTIC:
            for j in range(n):
                delta[i, j] = delta[i, j] * a[i, j] * (one - a[i, j])
        elif activation == TANH:
            for j in range(n):
                delta[i, j] = delta[i, j] * (one - a[i, j] * a[i, j])
        elif activation == RELU:
            for j in range(n):
                if a[i, j] <= 0:
                    delta[i, j] = 0
        for j in range(n):
            db[j] += delta[i, j]


def _derivative_body(delta, a, db, activation, n_blocks):
    n = delta.shape[1]
    for index in prange(n_blocks):
        j0, j1 = _block(n, n_blocks, index)
        if j0 < j1:
            _derivative_colsum(delta[:, j0:j1], a[:, j0:j1], db[j0:j1], activation)


_derivative_parallel = pjit(_derivative_body)


@jit_inline
def _derivative(delta, a, db, activation, threads):
    if threads is not None:
        n_blocks = _n_blocks(delta.shape[1], delta.size, threads, PARALLEL_MIN)
        if n_blocks > 1:
            _derivative_parallel(delta, a, db, activation, n_blocks)
            return
    _derivative_colsum(delta, a, db, activation)


@jit
def dense_backward(delta, a, a_prev, w, dw, db, delta_prev, activation=LOGISTIC, threads=None):
    """Back-propagate through one dense layer.

    delta (m, n_out): on entry dJ/da, on exit dJ/dz = dJ/da * f'(a), computed from
    the stored output ``a`` (m, n_out). Writes dw (n_in, n_out) = a_prev.T @ dJ/dz,
    db (n_out,) = its column sums, and, unless ``delta_prev`` is None,
    delta_prev (m, n_in) = dJ/dz @ w.T, the dJ/da of the layer below.
    a_prev (m, n_in) is the layer's input, w (n_in, n_out) its weights.
    Mutates delta, dw, db and delta_prev.
    """
    _derivative(delta, a, db, activation, threads)
    if delta_prev is not None:
        _product_split(1.0, delta, _PLAIN, w, _TRANSPOSED, 0.0, delta_prev, threads)
    _product_split(1.0, a_prev, _TRANSPOSED, delta, _PLAIN, 0.0, dw, threads)


@jit
def dense_backward_sgd(
    delta, a, a_prev, w, b, db, delta_prev, lr, activation=LOGISTIC, threads=None
):
    """:func:`dense_backward` fused with the SGD update of the layer.

    The same as ``dense_backward(delta, a, a_prev, w, dw, db, delta_prev)`` then
    ``w -= lr * dw; b -= lr * db``, but the weight update is the product itself
    (``w = -lr * a_prev.T @ dJ/dz + w``, one BLAS call), so no dw is stored and w
    is not read twice. delta_prev is computed first, from the old w. db (n_out,)
    is scratch space that ends up holding dJ/db. Mutates delta, w, b, db and
    delta_prev.
    """
    _derivative(delta, a, db, activation, threads)
    if delta_prev is not None:
        _product_split(1.0, delta, _PLAIN, w, _TRANSPOSED, 0.0, delta_prev, threads)
    _product_split(-lr, a_prev, _TRANSPOSED, delta, _PLAIN, 1.0, w, threads)
    step = as_dtype_of(lr, b)
    for j in range(b.size):
        b[j] -= step * db[j]


# -- loss and update -------------------------------------------------------------


@jit
def mse_loss_grad(a, y, grad):
    """Mean squared error and its gradient in one pass.

    a, y, grad (m, n_out). Returns ``J = sum((a - y)**2) / m`` as a float
    (accumulated in float64) and writes ``grad = 2 (a - y) / m``. Mutates ``grad``.
    """
    m, n = a.shape
    scale = as_dtype_of(2.0 / m, grad)
    total = 0.0
    for i in range(m):
        for j in range(n):
            d = a[i, j] - y[i, j]
            total += d * d
            grad[i, j] = d * scale
    return total / m


def _sgd_body(param, grad, lr):
    step = as_dtype_of(lr, param)
    for i in prange(param.size):
        param[i] -= step * grad[i]


_sgd_serial, _sgd_parallel = serial_and_parallel(_sgd_body)


@jit
def sgd_update(param, grad, lr, threads=None):
    """``param -= lr * grad`` in place. param, grad (n,) contiguous; lr a float."""
    if threads is not None and threads > 1 and param.size >= PARALLEL_MIN:
        _sgd_parallel(param, grad, lr)
    else:
        _sgd_serial(param, grad, lr)


# -- output layers, losses and optimizers of the scikit-learn estimators ----------
#
# Loss codes pick an output layer and its loss (see :mod:`fastbp._loop`):
#
# ============  ================  =====================================================
# code          output            loss J of a batch (before the L2 term)
# ============  ================  =====================================================
# LOSS_MSE      any activation    ``sum((a - y)**2) / m`` (fastbp.Network)
# LOSS_SQUARED  identity          ``0.5 * mean_j (sum_i w_i (a - y)**2 / sum w)``
# LOSS_POISSON  exp               ``sum_j sum_i w_i (xlogy(y, y / a) - y + a) / sum w``
# LOSS_BINARY   logistic          ``-sum_j sum_i w_i (xlogy(y, p) + xlogy(1 - y, 1 - p)) / sum w``
# LOSS_SOFTMAX  softmax           ``-sum_j sum_i w_i xlogy(y, p) / sum w``
# ============  ================  =====================================================
#
# with w_i = 1 when there are no sample weights and p = a clipped to [eps, 1 - eps].
# Every loss but LOSS_MSE is paired with its canonical link, so its output delta
# dJ/dz is ``w_i (a - y) / sum w``, as scikit-learn computes it: for LOSS_SQUARED
# with k > 1 outputs that is k times the gradient of the J it reports
# (scikit-learn issue #8349), matched here on purpose.


LOSS_MSE = 0
LOSS_SQUARED = 1
LOSS_POISSON = 2
LOSS_BINARY = 3
LOSS_SOFTMAX = 4


@jit
def _eps_of(a):
    """Machine epsilon of a's dtype (float32 or float64)."""
    if as_dtype_of(1.0 + 2.0**-30, a) == 1.0:
        return 1.1920928955078125e-07
    return 2.220446049250313e-16


@jit
def output_activation(a, loss):
    """Apply the output function of ``loss`` in place to a (m, k) with unit-stride rows.

    LOSS_POISSON: ``a = exp(a)``; LOSS_SOFTMAX: each row becomes
    ``exp(a - max(a)) / sum(exp(a - max(a)))`` (the exponentials by
    :func:`fastbp._math.exp_neg`, within about an ulp of ``exp``); other codes:
    nothing (their output activation is applied by :func:`dense_forward`).
    Mutates ``a``.
    """
    m, k = a.shape
    if loss == LOSS_POISSON:
        for i in range(m):
            for j in range(k):
                a[i, j] = math.exp(a[i, j])
    elif loss == LOSS_SOFTMAX:
        # Three passes, so that the exponentials (of arguments <= 0: exp_neg, which
        # vectorises) run over the block as one flat vector.
        for i in range(m):
            top = a[i, 0]
            for j in range(1, k):
                top = max(top, a[i, j])
            for j in range(k):
                a[i, j] -= top
        if a.strides[1] == a.itemsize and a.strides[0] == k * a.itemsize:
            flat = a.reshape(a.size)
            for i in range(flat.size):
                flat[i] = exp_neg(flat[i])
        else:
            for i in range(m):
                for j in range(k):
                    a[i, j] = exp_neg(a[i, j])
        for i in range(m):
            total = as_dtype_of(0.0, a)
            for j in range(k):
                total += a[i, j]
            for j in range(k):
                a[i, j] /= total


@jit
def _xlogy(x, y):
    """``x * log(y)``, and 0 when x == 0 (as scipy.special.xlogy)."""
    if x == 0:
        return 0.0 * y
    return x * math.log(y)


@jit
def output_loss_grad(a, y, sw, sw_sum, loss, grad):
    """Loss of one batch and its gradient with respect to the output pre-activations.

    a (m, k): the output layer (after :func:`output_activation`); y (m, k): targets
    in a's dtype; sw (m,): sample weights, or an empty array for none; sw_sum: their
    sum (m without weights); ``loss``: one of LOSS_SQUARED, LOSS_POISSON,
    LOSS_BINARY, LOSS_SOFTMAX. Returns J (float, accumulated in float64; see the
    table above) and writes ``grad = w_i (a - y) / sw_sum`` (m, k). Mutates ``grad``.
    """
    m, k = a.shape
    eps = _eps_of(a)
    lo = as_dtype_of(eps, a)
    hi = as_dtype_of(1.0 - eps, a)
    one = as_dtype_of(1.0, a)
    inv = 1.0 / sw_sum
    weighted = sw.size > 0
    total = 0.0
    for i in range(m):
        wi = sw[i] if weighted else one
        scale = as_dtype_of(wi * inv, grad)
        row = 0.0
        for j in range(k):
            ai = a[i, j]
            yi = y[i, j]
            if loss == LOSS_SQUARED:
                d = yi - ai
                row += d * d
            elif loss == LOSS_POISSON:
                row += _xlogy(yi, yi / ai) - yi + ai
            elif loss == LOSS_BINARY:
                p = min(max(ai, lo), hi)
                row -= _xlogy(yi, p) + _xlogy(one - yi, one - p)
            else:
                p = min(max(ai, lo), hi)
                row -= _xlogy(yi, p)
            grad[i, j] = (ai - yi) * scale
        total += row * wi
    total *= inv
    if loss == LOSS_SQUARED:
        total *= 0.5 / k
    return total


@jit
def sum_squares(w):
    """``sum(w**2)`` of a 2-D array, accumulated in float64.

    Eight partial sums (element i goes to sum i % 8, for a C-contiguous w), so the
    additions do not wait on each other; the order differs from a plain loop's
    only by rounding.
    """
    if w.strides[1] == w.itemsize and w.strides[0] == w.shape[1] * w.itemsize:
        flat = w.reshape(w.size)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        n8 = flat.size - flat.size % 8
        for i in range(0, n8, 8):
            s0 += float(flat[i]) * float(flat[i])
            s1 += float(flat[i + 1]) * float(flat[i + 1])
            s2 += float(flat[i + 2]) * float(flat[i + 2])
            s3 += float(flat[i + 3]) * float(flat[i + 3])
            s4 += float(flat[i + 4]) * float(flat[i + 4])
            s5 += float(flat[i + 5]) * float(flat[i + 5])
            s6 += float(flat[i + 6]) * float(flat[i + 6])
            s7 += float(flat[i + 7]) * float(flat[i + 7])
        total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        for i in range(n8, flat.size):
            total += float(flat[i]) * float(flat[i])
        return total
    total = 0.0
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            total += float(w[i, j]) * float(w[i, j])
    return total


@jit
def l2_add(dw, w, scale):
    """``dw += scale * w`` (the L2 penalty's gradient) for 2-D dw, w. Mutates ``dw``."""
    s = as_dtype_of(scale, dw)
    for i in range(dw.shape[0]):
        for j in range(dw.shape[1]):
            dw[i, j] += s * w[i, j]


def _momentum_body(param, grad, velocity, lr, momentum, nesterov):
    rate = as_dtype_of(lr, param)
    mu = as_dtype_of(momentum, param)
    for i in prange(param.size):
        v = mu * velocity[i] - rate * grad[i]
        velocity[i] = v
        if nesterov:
            param[i] += mu * v - rate * grad[i]
        else:
            param[i] += v


_momentum_serial, _momentum_parallel = serial_and_parallel(_momentum_body)


@jit
def momentum_update(param, grad, velocity, lr, momentum, nesterov, threads=None):
    """SGD with (Nesterov) momentum, in place, as scikit-learn's SGDOptimizer.

    ``velocity = momentum * velocity - lr * grad``, then ``param += velocity``, or
    with ``nesterov`` ``param += momentum * velocity - lr * grad``. param, grad,
    velocity (n,) contiguous, one dtype. Mutates param and velocity.
    """
    if threads is not None and threads > 1 and param.size >= PARALLEL_MIN:
        _momentum_parallel(param, grad, velocity, lr, momentum, nesterov)
    else:
        _momentum_serial(param, grad, velocity, lr, momentum, nesterov)


def _adam_body(param, grad, m, v, lr, beta_1, beta_2, epsilon):
    rate = as_dtype_of(-lr, param)
    b1 = as_dtype_of(beta_1, param)
    b2 = as_dtype_of(beta_2, param)
    c1 = as_dtype_of(1.0 - beta_1, param)
    c2 = as_dtype_of(1.0 - beta_2, param)
    e = as_dtype_of(epsilon, param)
    for i in prange(param.size):
        g = grad[i]
        mi = b1 * m[i] + c1 * g
        vi = b2 * v[i] + c2 * (g * g)
        m[i] = mi
        v[i] = vi
        param[i] += rate * mi / (math.sqrt(vi) + e)


_adam_serial, _adam_parallel = serial_and_parallel(_adam_body)


@jit
def adam_update(param, grad, m, v, lr, beta_1, beta_2, epsilon, threads=None):
    """One Adam step in place, as scikit-learn's AdamOptimizer.

    ``m = beta_1 m + (1 - beta_1) grad``, ``v = beta_2 v + (1 - beta_2) grad**2``,
    ``param += -lr * m / (sqrt(v) + epsilon)``, where ``lr`` is the step's
    bias-corrected rate ``lr_init * sqrt(1 - beta_2**t) / (1 - beta_1**t)``.
    param, grad, m, v (n,) contiguous, one dtype. Mutates param, m and v.
    """
    if threads is not None and threads > 1 and param.size >= PARALLEL_MIN:
        _adam_parallel(param, grad, m, v, lr, beta_1, beta_2, epsilon)
    else:
        _adam_serial(param, grad, m, v, lr, beta_1, beta_2, epsilon)
