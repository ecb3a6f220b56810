"""Compiled kernels of one dense layer, the loss and the update.

Each kernel writes into arrays the caller supplies and allocates nothing, so a
training loop can call them on buffers made once per fit. They validate nothing:
the Python layer (:mod:`fastbp.network`) has checked shapes and dtypes already.
All arrays are float32 or float64, every array of a call the same dtype, and
outputs C-contiguous; inputs may be C- or F-contiguous (a transposed view is
fine: it reaches BLAS as a transpose flag, not a copy). float32 in means float32
arithmetic and float32 out.

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

import numpy as np
from numba import prange

from fastbp._jit import PARALLEL_MIN, SMALL_GEMM, jit, serial_and_parallel
from fastbp._math import as_dtype_of, sigmoid

IDENTITY = 0
LOGISTIC = 1
TANH = 2
RELU = 3

# Columns a thread owns in the fused derivative + column sum: a multiple of the
# widest SIMD vector, narrow enough to give both cores work on 1024-wide layers.
_COLUMN_BLOCK = 64


@jit
def matmul(a, b, out):
    """``out[:] = a @ b``. a (m, k), b (k, n), out (m, n) C-contiguous. Mutates ``out``."""
    m, k = a.shape
    n = b.shape[1]
    if m * k * n >= SMALL_GEMM:
        np.dot(a, b, out)
        return
    for i in range(m):
        for j in range(n):
            out[i, j] = 0
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                out[i, j] += aip * b[p, j]


def _bias_activation_body(z, b, activation):
    m, n = z.shape
    zero = as_dtype_of(0.0, z)
    for i in prange(m):
        if activation == LOGISTIC:
            for j in range(n):
                z[i, j] = sigmoid(z[i, j] + b[j])
        elif activation == TANH:
            for j in range(n):
                z[i, j] = np.tanh(z[i, j] + b[j])
        elif activation == RELU:
            for j in range(n):
                z[i, j] = max(z[i, j] + b[j], zero)
        else:
            for j in range(n):
                z[i, j] += b[j]


_bias_activation_serial, _bias_activation_parallel = serial_and_parallel(_bias_activation_body)


@jit
def dense_forward(x, w, b, out, activation=LOGISTIC):
    """``out[:] = f(x @ w + b)``. x (m, n_in), w (n_in, n_out), b (n_out,), out (m, n_out).

    The product goes through BLAS (or a plain loop when tiny); bias and activation
    are then applied in one pass over ``out``. Mutates ``out``.
    """
    matmul(x, w, out)
    if out.size >= PARALLEL_MIN:
        _bias_activation_parallel(out, b, activation)
    else:
        _bias_activation_serial(out, b, activation)


def _derivative_colsum_body(delta, a, db, activation):
    # Each thread owns a block of columns and sums them over the rows in order, so
    # db does not depend on the thread count.
    m, n = delta.shape
    one = as_dtype_of(1.0, a)
    for block in prange((n + _COLUMN_BLOCK - 1) // _COLUMN_BLOCK):
        j0 = block * _COLUMN_BLOCK
        j1 = min(j0 + _COLUMN_BLOCK, n)
        for j in range(j0, j1):
            db[j] = 0
        for i in range(m):
            if activation == LOGISTIC:
                for j in range(j0, j1):
                    delta[i, j] = delta[i, j] * a[i, j] * (one - a[i, j])
            elif activation == TANH:
                for j in range(j0, j1):
                    delta[i, j] = delta[i, j] * (one - a[i, j] * a[i, j])
            elif activation == RELU:
                for j in range(j0, j1):
                    if a[i, j] <= 0:
                        delta[i, j] = 0
            for j in range(j0, j1):
                db[j] += delta[i, j]


_derivative_colsum_serial, _derivative_colsum_parallel = serial_and_parallel(
    _derivative_colsum_body
)


@jit
def dense_backward(delta, a, a_prev, w, dw, db, delta_prev, activation=LOGISTIC):
    """Back-propagate through one dense layer.

    delta (m, n_out): on entry dJ/da, on exit dJ/dz = dJ/da * f'(a), computed from
    the stored output ``a`` (m, n_out). Writes dw (n_in, n_out) = a_prev.T @ dJ/dz,
    db (n_out,) = its column sums, and, unless ``delta_prev`` is None,
    delta_prev (m, n_in) = dJ/dz @ w.T, the dJ/da of the layer below.
    a_prev (m, n_in) is the layer's input, w (n_in, n_out) its weights.
    Mutates delta, dw, db and delta_prev.
    """
    if delta.size >= PARALLEL_MIN:
        _derivative_colsum_parallel(delta, a, db, activation)
    else:
        _derivative_colsum_serial(delta, a, db, activation)
    matmul(a_prev.T, delta, dw)
    if delta_prev is not None:
        matmul(delta, w.T, delta_prev)


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
def sgd_update(param, grad, lr):
    """``param -= lr * grad`` in place. param, grad (n,) contiguous; lr a float."""
    if param.size >= PARALLEL_MIN:
        _sgd_parallel(param, grad, lr)
    else:
        _sgd_serial(param, grad, lr)
