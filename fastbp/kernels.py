"""Compiled kernels of one dense layer, the losses and the updates, and the registries
of the activations, output losses and optimizers they implement.

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
name and signature; it takes its element-wise math from the registries here.

Registries
----------
:data:`ACTIVATIONS` and :data:`LOSSES` map a name to an entry
that holds everything about it: its integer code (its position in the registry),
its compiled math and the NumPy twin of that math. Kernels take the code; the
branch on it is generated from the registry (:func:`_per_code`), one copy of the
loops per entry, so adding an activation is its math plus one registry line.
The registries live in this file on purpose: Numba's on-disk cache checks a
cached function against its own source file only, so a registry in another file
could change without the kernels compiled from it being recompiled. (The
optimizers' registry is :data:`fastbp.engine.optimizers.OPTIMIZERS`: an
optimizer is its update kernel here, a bundle type in :mod:`fastbp._loop` that
selects it, and a small class.)
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import NamedTuple, TypeVar

import numba
import numpy as np
from numba import prange
from numba.cpython.unsafe.numbers import viewer
from numba.extending import overload

from fastbp import _views
from fastbp._blas import gemm
from fastbp._jit import (
    JIT_OPTIONS,
    PARALLEL_GEMM,
    PARALLEL_MIN,
    SMALL_GEMM,
    jit,
    jit_inline,
    pjit,
    serial_and_parallel,
)
from fastbp._math import as_dtype_of, exp_neg, sigmoid

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


# -- registry machinery ------------------------------------------------------------

_Entry = TypeVar("_Entry", bound=NamedTuple)


def _registry(*entries: _Entry) -> MappingProxyType[str, _Entry]:
    """A read-only ``{name: entry}``, each entry given its position as its ``code``."""
    return MappingProxyType({e.name: e._replace(code=i) for i, e in enumerate(entries)})


def _per_code(
    name: str,
    params: str,
    entries: Iterable[NamedTuple],
    field: str,
    case: str,
    body: str = "{cases}",
    otherwise: str = "return",
    doc: str = "",
    inline: bool = True,
) -> Callable:
    """Compile ``name(params..., code)``, branching on ``code`` over registry entries.

    ``body`` is the function's Python source; its line ``{cases}`` is replaced by
    one copy of ``case`` per entry, each behind its own ``if code == ...:``, in
    which ``{fn}`` names the entry's compiled function ``field`` and ``{field}``
    stands for the text of any other field (entries whose ``field`` is None are
    left out); ``otherwise`` runs for any other code. The branch is taken outside
    the loops of ``case`` and each copy calls its function directly, so every loop
    vectorises as if written by hand. Measured on the bias-and-activation loop
    (both dtypes, cold compile, median of 3): this 1.2 s, the hand-written chain
    1.2 s; a loop taking the function as an argument 1.6 s; inlined closures
    chained per entry 1.8 s; ``numba.literal_unroll`` over the entries 1.5 s (and
    an experimental-feature warning). The function has no source file, so it is
    compiled without the on-disk cache; it is only ever inlined into (or, with
    ``inline=False``, linked into) cached compiled functions.
    """
    namespace = dict(globals())
    cases = []
    for entry in entries:
        fn = getattr(entry, field)
        if fn is None:
            continue
        alias = f"_{field}_{entry.code}"
        namespace[alias] = fn
        fields = {k: v for k, v in entry._asdict().items() if k != field}
        cases.append(f"if code == {entry.code}:")
        code = textwrap.dedent(case).strip().format(fn=alias, **fields)
        cases += ["    " + line for line in code.splitlines()]
    cases += textwrap.dedent(otherwise).strip().splitlines()
    lines = [f"def {name}({params}, code):", f'    """{doc}"""']
    for line in textwrap.dedent(body).strip().splitlines():
        if line.strip() == "{cases}":
            indent = line[: len(line) - len(line.lstrip())]
            lines += ["    " + indent + c for c in cases]
        else:
            lines.append("    " + line)
    exec("\n".join(lines), namespace)
    options = {**JIT_OPTIONS, "cache": False, "inline": "always" if inline else "never"}
    return numba.njit(**options)(namespace[name])


# -- activations -------------------------------------------------------------------
#
# Each activation: a compiled scalar ``f(z)``, a compiled ``delta_from_output(delta,
# a)`` that turns dJ/da into dJ/dz using the layer's output ``a = f(z)`` (never
# recomputing f, as scikit-learn's ``inplace_*_derivative``), and their NumPy twins,
# which work in place on arrays.


class Activation(NamedTuple):
    """One element-wise activation and everything the package needs about it."""

    name: str  # scikit-learn's name
    forward: Callable | None  # compiled scalar a = f(z); None: the identity, nothing to do
    delta: Callable | None  # compiled scalar: dJ/dz from dJ/da and the output a; None: 1
    forward_numpy: Callable  # twin of forward: z[:] = f(z), in place
    delta_numpy: Callable  # twin of delta: delta[:] = dJ/dz, in place, from a
    init_factor: float  # scikit-learn's Glorot bound sqrt(factor / (fan_in + fan_out))
    code: int = -1


def _identity_numpy(z):
    pass


def _identity_delta_numpy(delta, a):
    pass


@jit_inline
def _logistic(z):
    return sigmoid(z)


@jit_inline
def _logistic_delta(delta, a):
    return delta * a * (as_dtype_of(1.0, a) - a)


def _logistic_numpy(z):
    np.negative(z, out=z)
    with np.errstate(over="ignore"):  # exp(-z) = inf gives the right limit, 0
        np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)


def _logistic_delta_numpy(delta, a):
    delta *= a
    delta *= 1 - a


@jit_inline
def _tanh(z):
    return math.tanh(z)


@jit_inline
def _tanh_delta(delta, a):
    return delta * (as_dtype_of(1.0, a) - a * a)


def _tanh_numpy(z):
    np.tanh(z, out=z)


def _tanh_delta_numpy(delta, a):
    delta *= 1 - a * a


@jit_inline
def _relu(z):
    return max(z, as_dtype_of(0.0, z))


@jit_inline
def _relu_delta(delta, a):
    return as_dtype_of(0.0, delta) if a <= 0 else delta


def _relu_numpy(z):
    np.maximum(z, 0, out=z)


def _relu_delta_numpy(delta, a):
    delta[a <= 0] = 0


#: Activations by scikit-learn's name; codes are positions (append new ones).
ACTIVATIONS = _registry(
    Activation("identity", None, None, _identity_numpy, _identity_delta_numpy, 6.0),
    Activation("logistic", _logistic, _logistic_delta, _logistic_numpy, _logistic_delta_numpy, 2.0),
    Activation("tanh", _tanh, _tanh_delta, _tanh_numpy, _tanh_delta_numpy, 6.0),
    Activation("relu", _relu, _relu_delta, _relu_numpy, _relu_delta_numpy, 6.0),
)
# The codes under their former names (for callers written before the registry).
IDENTITY = ACTIVATIONS["identity"].code
LOGISTIC = ACTIVATIONS["logistic"].code
TANH = ACTIVATIONS["tanh"].code
RELU = ACTIVATIONS["relu"].code

_bias_activation = _per_code(
    "_bias_activation",
    "z, b",
    ACTIVATIONS.values(),
    "forward",
    case="""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] = {fn}(z[i, j] + b[j])
    return
    """,
    otherwise="""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += b[j]
    """,
    doc="``z[:] = f(z + b)`` for z (m, n), b (n,). Mutates z.",
)
_bias_activation_flat = _per_code(
    "_bias_activation_flat",
    "z, b",
    ACTIVATIONS.values(),
    "forward",
    case="""
    for i in range(flat.size):
        flat[i] = {fn}(flat[i])
    """,
    body="""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += b[j]
    flat = _views.flat(z)
    {cases}
    """,
    doc="``_bias_activation`` for a C-contiguous z: f runs over z as one flat vector, so "
    "it vectorises even when rows are shorter than a SIMD vector. Mutates z.",
)
_derivative_colsum = _per_code(
    "_derivative_colsum",
    "delta, a, db",
    ACTIVATIONS.values(),
    "delta",
    case="""
    for j in range(n):
        delta[i, j] = {fn}(delta[i, j], a[i, j])
    """,
    body="""
    m, n = delta.shape
    for j in range(n):
        db[j] = 0
    for i in range(m):
        {cases}
        for j in range(n):
            db[j] += delta[i, j]
    """,
    otherwise="pass",
    doc="``delta = dJ/dz`` from dJ/da and the output a (m, n); ``db[:] =`` its column "
    "sums, rows added in order (so db does not depend on how columns are split). "
    "Mutates delta and db.",
)


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


# -- forward -------------------------------------------------------------------


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
    _bias_activation_any(out, b, activation)


def _bias_activation_any(z, b, activation):
    """``z[:] = f(z + b)`` by the fastest loops z's layout allows (compiled code only)."""
    raise NotImplementedError


@overload(_bias_activation_any, jit_options=JIT_OPTIONS)
def _bias_activation_any_overload(z, b, activation):
    # Picked when typing: for a C-contiguous type (the training loop's blocks) the
    # per-row loops are never compiled (measured: 0.1 s less of a first compile).
    if z.layout == "C":
        return lambda z, b, activation: _bias_activation_flat(z, b, activation)

    def impl(z, b, activation):
        if z.strides[1] == z.itemsize and z.strides[0] == z.shape[1] * z.itemsize:
            _bias_activation_flat(z, b, activation)
        else:
            _bias_activation(z, b, activation)

    return impl


# -- backward ------------------------------------------------------------------


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
    db (n_out,) = its column sums, and, unless ``delta_prev`` is None or has no
    rows (the first layer: no layer below), delta_prev (m, n_in) = dJ/dz @ w.T, the
    dJ/da of the layer below. (An empty block rather than None gives the first
    layer's call the argument types of the others: one compiled variant for all.)
    a_prev (m, n_in) is the layer's input, w (n_in, n_out) its weights.
    Mutates delta, dw, db and delta_prev.
    """
    _derivative(delta, a, db, activation, threads)
    if delta_prev is not None:  # noqa: SIM102  (None is pruned while typing)
        if delta_prev.shape[0] > 0:
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
    if delta_prev is not None:  # noqa: SIM102  (None is pruned while typing)
        if delta_prev.shape[0] > 0:
            _product_split(1.0, delta, _PLAIN, w, _TRANSPOSED, 0.0, delta_prev, threads)
    _product_split(-lr, a_prev, _TRANSPOSED, delta, _PLAIN, 1.0, w, threads)
    step = as_dtype_of(lr, b)
    for j in range(b.size):
        b[j] -= step * db[j]


# -- Network's loss -------------------------------------------------------------


@jit
def mse_loss_grad(a, y, grad, rows=0):
    """Mean squared error and its gradient in one pass.

    a, y, grad (m, n_out). Returns ``J = sum((a - y)**2) / M`` as a float
    (accumulated in float64) and writes ``grad = 2 (a - y) / M``, where M is m, or
    ``rows`` when given: the row count of the batch that a is part of (a step split
    over threads by rows, :mod:`fastbp._rows`). Mutates ``grad``.
    """
    m, n = a.shape
    whole = rows if rows > 0 else m
    scale = as_dtype_of(2.0 / whole, grad)
    total = 0.0
    for i in range(m):
        for j in range(n):
            d = a[i, j] - y[i, j]
            total += d * d
            grad[i, j] = d * scale
    return total / whole


# -- output layers and losses of the scikit-learn estimators -------------------------
#
# Each loss: the output function applied to the output layer, the per-element term
# of its J, and their NumPy twins. J of a batch (before the L2 term) is
#
#     J = sum_i w_i sum_j term(a_ij, y_ij) / sum w      (times 0.5 / k if ``half_mean``)
#
# with w_i = 1 when there are no sample weights, k outputs, p = a clipped to
# [eps, 1 - eps]. Every loss but "mse" is paired with its canonical link, so its
# output delta dJ/dz is ``w_i (a - y) / sum w``, as scikit-learn computes it: for
# "squared_error" with k > 1 outputs that is k times the gradient of the J it
# reports (scikit-learn issue #8349), matched here on purpose. "mse" is
# fastbp.Network's ``sum((a - y)**2) / m`` on the output layer's own activation
# (:func:`mse_loss_grad`).


class Loss(NamedTuple):
    """One output loss with its canonical output activation."""

    name: str  # scikit-learn's loss name ("mse": fastbp.Network's)
    out_activation: str | None  # scikit-learn's out_activation_ (None: the layer's own)
    layer_activation: str | None  # the ACTIVATIONS entry dense_forward applies on top
    term: Callable | None  # compiled per-element term of J: term(a, y, lo, hi)
    term_numpy: Callable | None  # its twin, on float64 arrays: term(a, y, eps)
    output: Callable | None = None  # compiled, in place on the output block after dense_forward
    output_numpy: Callable | None = None  # its twin
    half_mean: bool = False  # J is multiplied by 0.5 / k
    code: int = -1


@jit
def _eps_of(a):
    """Machine epsilon of a's dtype (float32 or float64)."""
    if as_dtype_of(1.0 + 2.0**-30, a) == 1.0:
        return 1.1920928955078125e-07
    return 2.220446049250313e-16


@jit
def _xlogy(x, y):
    """``x * log(y)``, and 0 when x == 0 (as scipy.special.xlogy)."""
    if x == 0:
        return 0.0 * y
    return x * math.log(y)


def _xlogy_numpy(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(y))


@jit_inline
def _exp_rows(a):
    m, k = a.shape
    for i in range(m):
        for j in range(k):
            a[i, j] = math.exp(a[i, j])


def _exp_numpy(a):
    np.exp(a, out=a)


@jit_inline
def _softmax(a):
    m, k = a.shape
    # Three passes, so that the exponentials (of arguments <= 0: exp_neg, which
    # vectorises) run over the block as one flat vector.
    for i in range(m):
        top = a[i, 0]
        for j in range(1, k):
            top = max(top, a[i, j])
        for j in range(k):
            a[i, j] -= top
    if a.strides[1] == a.itemsize and a.strides[0] == k * a.itemsize:
        flat = _views.flat(a)
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


def _softmax_numpy(a):
    a -= a.max(axis=1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=1, keepdims=True)


@jit_inline
def _squared_term(a, y, lo, hi):
    d = y - a
    return d * d


def _squared_term_numpy(a, y, eps):
    return (a - y) ** 2


@jit_inline
def _poisson_term(a, y, lo, hi):
    return _xlogy(y, y / a) - y + a


def _poisson_term_numpy(a, y, eps):
    with np.errstate(divide="ignore", invalid="ignore"):
        return _xlogy_numpy(y, y / a) - y + a


@jit_inline
def _binary_log_term(a, y, lo, hi):
    p = min(max(a, lo), hi)
    one = as_dtype_of(1.0, a)
    return -(_xlogy(y, p) + _xlogy(one - y, one - p))


def _binary_log_term_numpy(a, y, eps):
    p = np.clip(a, eps, 1 - eps)
    return -(_xlogy_numpy(y, p) + _xlogy_numpy(1 - y, 1 - p))


@jit_inline
def _log_term(a, y, lo, hi):
    return -_xlogy(y, min(max(a, lo), hi))


def _log_term_numpy(a, y, eps):
    return -_xlogy_numpy(y, np.clip(a, eps, 1 - eps))


#: Output losses by scikit-learn's name; codes are positions (append new ones).
LOSSES = _registry(
    Loss("mse", None, None, None, None),
    Loss(
        "squared_error", "identity", "identity", _squared_term, _squared_term_numpy, half_mean=True
    ),
    Loss("poisson", "exp", "identity", _poisson_term, _poisson_term_numpy, _exp_rows, _exp_numpy),
    Loss("binary_log_loss", "logistic", "logistic", _binary_log_term, _binary_log_term_numpy),
    Loss("log_loss", "softmax", "identity", _log_term, _log_term_numpy, _softmax, _softmax_numpy),
)
# The codes under their former names (for callers written before the registry).
LOSS_MSE = LOSSES["mse"].code
LOSS_SQUARED = LOSSES["squared_error"].code
LOSS_POISSON = LOSSES["poisson"].code
LOSS_BINARY = LOSSES["binary_log_loss"].code
LOSS_SOFTMAX = LOSSES["log_loss"].code

_OUTPUT_FUNCTION = dict(
    name="_output_function",
    params="a",
    field="output",
    case="{fn}(a)",
    doc="The output function of the loss, in place on a (m, k).",
)
_OUTPUT_LOSS_TERMS = dict(
    name="_output_loss_terms",
    params="a, y, sw, sw_sum, grad",
    field="term",
    case="""
    for i in range(m):
        wi = sw[i] if weighted else one
        scale = as_dtype_of(wi * inv, grad)
        row = 0.0
        for j in range(k):
            ai = a[i, j]
            yi = y[i, j]
            row += {fn}(ai, yi, lo, hi)
            grad[i, j] = (ai - yi) * scale
        total += row * wi
    total *= inv
    if {half_mean}:
        total *= 0.5 / k
    return total
    """,
    body="""
    m, k = a.shape
    eps = _eps_of(a)
    lo = as_dtype_of(eps, a)
    hi = as_dtype_of(1.0 - eps, a)
    one = as_dtype_of(1.0, a)
    inv = 1.0 / sw_sum
    weighted = sw.size > 0
    total = 0.0
    {cases}
    """,
    otherwise="return math.nan",
    doc="J of the loss and ``grad = w_i (a - y) / sw_sum``: see :func:`output_loss_grad`.",
)


def _one_loss(entry: Loss, spec: dict) -> Callable:
    """``spec``'s function for ``entry`` alone, named after it (compiled on its own,
    not inlined, so its name shows in its callers' code: tests/test_compiled_modes.py)."""
    return _per_code(
        entries=[entry], **{**spec, "name": f"{spec['name']}_{entry.name}"}, inline=False
    )


#: The two functions of each scikit-learn loss (``{code: (output function, loss
#: terms)}``), each holding that loss's loops only, called with their own code as
#: the last argument. Compiled callers that know their loss while typing
#: (``fastbp._loop``'s objectives carry it in their type) call them directly, and
#: compile one loss instead of all (measured in ``_loop._per_loss``); the kernels
#: below branch on a run-time code over them.
LOSS_KERNELS = MappingProxyType(
    {
        e.code: (_one_loss(e, _OUTPUT_FUNCTION), _one_loss(e, _OUTPUT_LOSS_TERMS))
        for e in LOSSES.values()
        if e.term is not None
    }
)


def _over_losses(spec: dict, index: int, call: str, otherwise: str) -> Callable:
    """``spec``'s function for every loss, calling each loss's ``LOSS_KERNELS`` one."""
    field = spec["field"]
    entries = [
        e._replace(**{field: LOSS_KERNELS[e.code][index]})
        for e in LOSSES.values()
        if e.term is not None
    ]
    return _per_code(
        spec["name"], spec["params"], entries, field, call, otherwise=otherwise, doc=spec["doc"]
    )


_output_function = _over_losses(_OUTPUT_FUNCTION, 0, "{fn}(a, code)", "return")
_output_loss_terms = _over_losses(
    _OUTPUT_LOSS_TERMS, 1, "return {fn}(a, y, sw, sw_sum, grad, code)", "return math.nan"
)


@jit
def output_activation(a, loss):
    """Apply the output function of ``LOSSES`` entry ``loss`` in place to a (m, k).

    "poisson": ``a = exp(a)``; "log_loss": each row becomes
    ``exp(a - max(a)) / sum(exp(a - max(a)))`` (the exponentials by
    :func:`fastbp._math.exp_neg`, within about an ulp of ``exp``); others:
    nothing (their output activation is applied by :func:`dense_forward`).
    Mutates ``a``. Calls the loss's function in :data:`LOSS_KERNELS`, which the
    training loop calls directly.
    """
    _output_function(a, loss)


@jit
def output_loss_grad(a, y, sw, sw_sum, loss, grad):
    """Loss of one batch and its gradient with respect to the output pre-activations.

    a (m, k): the output layer (after :func:`output_activation`); y (m, k): targets
    in a's dtype; sw (m,): sample weights, or an empty array for none; sw_sum: their
    sum (m without weights); ``loss``: the code of a ``LOSSES`` entry other than
    "mse". Returns J (float, accumulated in float64; see the loss section above) and
    writes ``grad = w_i (a - y) / sw_sum`` (m, k). Mutates ``grad``. Calls the
    loss's function in :data:`LOSS_KERNELS`, which the training loop calls directly.
    """
    total = _output_loss_terms(a, y, sw, sw_sum, grad, loss)
    return total


@jit
def sum_squares(w):
    """``sum(w**2)`` of a 2-D array, accumulated in float64.

    Eight partial sums (element i goes to sum i % 8, for a C-contiguous w), so the
    additions do not wait on each other; the order differs from a plain loop's
    only by rounding.
    """
    if w.strides[1] == w.itemsize and w.strides[0] == w.shape[1] * w.itemsize:
        flat = _views.flat(w)
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


# -- dropout ---------------------------------------------------------------------
# Inverted dropout draws its masks from a counter-based generator (splitmix64's
# output function ``mix64``, as Java's SplittableRandom): a unit's draw is a hash
# of the generator's key, the step, the row's input values and the unit, so a mask
# costs no allocation and no state but a step counter, the loops vectorise, and the
# same key and step give the same masks. Keyed by the row's values rather than its
# position, identical rows in a batch get the same masks, so a fit with integer
# sample weights is the fit on rows repeated as often, with dropout too (as
# scikit-learn's estimator checks require), whatever the order of the rows.

DROPOUT_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
DROPOUT_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
DROPOUT_MIX_2 = np.uint64(0x94D049BB133111EB)
#: A draw keeps its unit when its top 53 bits are >= the layer's threshold
#: ``round(rate * 2**53)`` (:func:`dropout_threshold`).
DROPOUT_BITS = 53


def dropout_threshold(rate: float) -> int:
    """The integer threshold of :func:`dropout_forward` for a dropout ``rate`` in [0, 1)."""
    return round(rate * 2.0**DROPOUT_BITS)


@jit_inline
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * DROPOUT_MIX_1
    z = (z ^ (z >> np.uint64(27))) * DROPOUT_MIX_2
    return z ^ (z >> np.uint64(31))


@jit_inline
def _float_bits(v):
    """The bits of v as a float64 (float32 values too: the same keys in either dtype)."""
    return viewer(np.float64(v), numba.types.uint64)


@jit_inline
def _dropout_term(v, k):
    """Entry (k, v) of a row's key: 0 for a zero (see :func:`dropout_rows`)."""
    term = _mix64(_float_bits(v) + np.uint64(k + 1) * DROPOUT_GOLDEN)
    return term if v != 0 else np.uint64(0)


@jit
def dropout_rows(x, rows, state):
    """Each row's key for this step's masks, and the step counted.

    x (m, n_0) the batch's input rows (C-contiguous); rows (>= m,) uint64; state
    (2,) uint64 (key, step). ``rows[i] = mix64(sum_k mix64(bits(x[i, k]) + (k + 1)
    * GOLDEN) ^ mix64(key + step * GOLDEN))``, the sum modulo 2**64 and over the
    nonzero entries only (a sparse row's stored values give the same key), bits
    those of the value as a float64 (float32 and float64 rows of equal values get
    equal keys); then step += 1. Mutates rows[:m] and state[1].
    """
    m, n = x.shape
    step = _mix64(state[0] + state[1] * DROPOUT_GOLDEN)
    for i in range(m):
        h = np.uint64(0)
        for k in range(n):
            h += _dropout_term(x[i, k], k)
        rows[i] = _mix64(h ^ step)
    state[1] = state[1] + np.uint64(1)


@jit
def dropout_forward(a, before, mask, rows, layer, threshold, scale):
    """Inverted dropout of hidden layer ``layer``'s activations a (m, n), in place.

    a, before, mask (m, n) C-contiguous, one float dtype; rows (>= m,) uint64 the
    rows' keys (:func:`dropout_rows`); threshold uint64 (see
    :func:`dropout_threshold`); scale ``1 / (1 - rate)`` (rounded to a's dtype).
    Unit j of row i is kept when ``mix64(rows[i] + (layer * 2**32 + j + 1) *
    GOLDEN) >> 11 >= threshold``: then ``mask = scale`` and ``a *= scale``, else
    both become 0. ``before`` gets a as it was. Mutates a, before and mask.
    """
    m, n = a.shape
    s = as_dtype_of(scale, a)
    zero = as_dtype_of(0.0, a)
    shift = np.uint64(64 - DROPOUT_BITS)
    salt = np.uint64(layer) << np.uint64(32)
    for i in range(m):
        base = rows[i] + salt * DROPOUT_GOLDEN
        for j in range(n):
            u = _mix64(base + np.uint64(j + 1) * DROPOUT_GOLDEN)
            v = a[i, j]
            before[i, j] = v
            if (u >> shift) >= threshold:
                mask[i, j] = s
                a[i, j] = v * s
            else:
                mask[i, j] = zero
                a[i, j] = zero


@jit
def dropout_backward(delta, mask, a, before):
    """Undo :func:`dropout_forward` for the backward pass: ``delta *= mask`` (dJ/da
    from dJ/d(dropped a)) and ``a[:] = before``. All (m, n) C-contiguous. Mutates
    delta and a."""
    d = _views.flat(delta)
    keep = _views.flat(mask)
    dst = _views.flat(a)
    src = _views.flat(before)
    for k in range(d.size):
        d[k] *= keep[k]
        dst[k] = src[k]


# -- sparse first layer ------------------------------------------------------------
#
# The first layer of a network trained on a SciPy CSR matrix (data, indices, indptr),
# read where it is: row i of a batch is row ``order[start + i]`` of the matrix, or
# ``start + i`` when ``order`` is empty, so shuffled batches need no copy. Stored
# entries are used as they are: in any order within a row, and duplicates of one
# (row, column) add up, as in SciPy's products. Each output element sums its terms
# in one fixed order (batch rows ascending, a row's stored entries in order), so
# results do not depend on the number of threads.

# Sparse products with fewer multiply-adds than this run on one thread.
SPARSE_PARALLEL: int = 1 << 18


@jit_inline
def _csr_row(order, start, i):
    """The matrix row of batch row i."""
    return order[start + i] if order.size > 0 else start + i


@jit_inline
def _sparse_work(indptr, m, h):
    """Multiply-adds of a batch of m rows times h units (at the matrix's mean row length)."""
    n = indptr.size - 1
    return m * h * max(1, (indptr[n] - indptr[0]) // max(n, 1))


@jit_inline
def _sparse_threaded(threads, parts, indptr, m, h):
    """Whether a sparse kernel splits its ``parts`` (rows or columns) over threads:
    more than one of them, and enough work (``SPARSE_PARALLEL``)."""
    return (
        threads is not None
        and threads > 1
        and parts > 1
        and _sparse_work(indptr, m, h) >= SPARSE_PARALLEL
    )


@jit_inline
def _sparse_rows(data, indices, indptr, order, start, w, out, i0, i1):
    h = out.shape[1]
    for i in range(i0, i1):
        r = _csr_row(order, start, i)
        for j in range(h):
            out[i, j] = 0
        for p in range(indptr[r], indptr[r + 1]):
            v = data[p]
            c = indices[p]
            for j in range(h):
                out[i, j] += v * w[c, j]


def _sparse_forward_body(data, indices, indptr, order, start, w, out, n_blocks):
    m = out.shape[0]
    for index in prange(n_blocks):
        _sparse_rows(
            data, indices, indptr, order, start, w, out, index * m // n_blocks,
            (index + 1) * m // n_blocks,
        )  # fmt: skip


_sparse_forward_parallel = pjit(_sparse_forward_body)


@jit
def sparse_forward(
    data, indices, indptr, order, start, w, b, out, activation=LOGISTIC, threads=None
):
    """``out[:] = f(X_batch @ w + b)`` for a batch of CSR rows (see the section above).

    data (nnz,) float, indices (nnz,) int, indptr (n + 1,) int: the matrix; order
    (n,) int64 or empty; start: the batch's first position in the order; w (n_cols,
    h), b (h,), out (m, h) C-contiguous. Rows run on threads when big. Mutates ``out``.
    """
    m, h = out.shape
    if _sparse_threaded(threads, m, indptr, m, h):
        _sparse_forward_parallel(data, indices, indptr, order, start, w, out, min(threads, m))
    else:
        _sparse_rows(data, indices, indptr, order, start, w, out, 0, m)
    _bias_activation_any(out, b, activation)


@jit_inline
def _sparse_scatter(data, indices, indptr, order, start, delta, scale, dw, j0, j1):
    """``dw[:, j0:j1] += scale * X_batch.T @ delta[:, j0:j1]``, only rows X touches."""
    s = as_dtype_of(scale, dw)
    for i in range(delta.shape[0]):
        r = _csr_row(order, start, i)
        for p in range(indptr[r], indptr[r + 1]):
            v = s * data[p]
            c = indices[p]
            for j in range(j0, j1):
                dw[c, j] += v * delta[i, j]


def _sparse_scatter_body(data, indices, indptr, order, start, delta, scale, dw, n_blocks):
    h = dw.shape[1]
    for index in prange(n_blocks):
        _sparse_scatter(
            data, indices, indptr, order, start, delta, scale, dw, index * h // n_blocks,
            (index + 1) * h // n_blocks,
        )  # fmt: skip


_sparse_scatter_parallel = pjit(_sparse_scatter_body)


@jit_inline
def _sparse_scatter_split(data, indices, indptr, order, start, delta, scale, dw, threads):
    """:func:`_sparse_scatter` over all columns; each thread owns a block of columns."""
    m, h = delta.shape
    if _sparse_threaded(threads, h, indptr, m, h):
        n_blocks = min(threads, h)
        _sparse_scatter_parallel(data, indices, indptr, order, start, delta, scale, dw, n_blocks)
    else:
        _sparse_scatter(data, indices, indptr, order, start, delta, scale, dw, 0, h)


def _scaled_copy_body(dst, src, scale, n_blocks):
    a = _views.flat(dst)
    b = _views.flat(src)
    s = as_dtype_of(scale, dst)
    n = a.size
    for index in prange(n_blocks):
        for k in range(index * n // n_blocks, (index + 1) * n // n_blocks):
            a[k] = s * b[k]


_scaled_copy_serial, _scaled_copy_parallel = serial_and_parallel(_scaled_copy_body)


@jit
def sparse_backward(
    delta,
    a,
    data,
    indices,
    indptr,
    order,
    start,
    w,
    dw,
    db,
    decay,
    activation=LOGISTIC,
    threads=None,
):
    """The first layer's backward pass on a batch of CSR rows (no input gradient).

    delta (m, h): on entry dJ/da, on exit dJ/dz (see :func:`dense_backward`); db (h,)
    its column sums; dw (n_cols, h) = ``decay * w + X_batch.T @ dJ/dz``: every row of
    dw is written, the product only into the rows the batch touches. w, dw
    C-contiguous. Mutates delta, dw and db.
    """
    _derivative(delta, a, db, activation, threads)
    if threads is not None and threads > 1 and dw.size >= PARALLEL_MIN:
        _scaled_copy_parallel(dw, w, decay, threads)
    else:
        _scaled_copy_serial(dw, w, decay, 1)
    _sparse_scatter_split(data, indices, indptr, order, start, delta, 1.0, dw, threads)


@jit
def sparse_backward_sgd(
    delta, a, data, indices, indptr, order, start, w, b, db, lr, activation=LOGISTIC, threads=None
):
    """:func:`sparse_backward` (no decay) fused with the SGD update of the layer:
    ``w -= lr * X_batch.T @ dJ/dz`` touches only the rows of w the batch uses;
    ``b -= lr * db``. Mutates delta, w, b and db."""
    _derivative(delta, a, db, activation, threads)
    _sparse_scatter_split(data, indices, indptr, order, start, delta, -lr, w, threads)
    step = as_dtype_of(lr, b)
    for j in range(b.size):
        b[j] -= step * db[j]


@jit
def _dropout_rows_sparse(data, indices, indptr, order, start, m, rows, state):
    """:func:`dropout_rows` for a batch of m CSR rows (the :func:`sparse_forward`
    arguments): the keys of the same rows given dense, from their stored entries."""
    step = _mix64(state[0] + state[1] * DROPOUT_GOLDEN)
    for i in range(m):
        r = _csr_row(order, start, i)
        h = np.uint64(0)
        for p in range(indptr[r], indptr[r + 1]):
            h += _dropout_term(data[p], indices[p])
        rows[i] = _mix64(h ^ step)
    state[1] = state[1] + np.uint64(1)
