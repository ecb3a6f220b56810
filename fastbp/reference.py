"""Plain-NumPy backpropagation: the oracle for tests and the baseline for benchmarks.

No compiled code runs here. Each layer kernel has the same name and signature as
its compiled twin in :mod:`fastbp.kernels` and writes into the same caller-supplied
outputs, so tests and benchmarks can run either on the same arguments
(``threads`` is accepted and ignored: NumPy's BLAS picks its own thread count).
Activations and losses are picked by the same codes, taken from the same
registries (:data:`fastbp.kernels.ACTIVATIONS`, :data:`fastbp.kernels.LOSSES`),
whose entries carry the NumPy twin of each compiled element-wise function.
It is a fair vectorised implementation (BLAS products into preallocated buffers,
no per-sample Python loops), readable line by line against the equations:

    forward     A_l  = sigmoid(A_{l-1} @ W_l + b_l)            (samples as rows)
    loss        J    = (1/M) * sum_i ||a_i - y_i||^2
    output      dA_L = 2 (A_L - Y) / M
    backward    dZ_l = dA_l * A_l * (1 - A_l)
                dW_l = A_{l-1}^T dZ_l,  db_l = sum over rows of dZ_l
                dA_{l-1} = dZ_l W_l^T
    update      W_l -= lr * dW_l,  b_l -= lr * db_l
    dropout     layer l + 1 reads M_l * A_l (M_l: 0 or 1 / (1 - p) per element),
                and then dA_l = M_l * (dZ_{l+1} W_{l+1}^T)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from fastbp.kernels import (
    ACTIVATIONS,
    DROPOUT_BITS,
    DROPOUT_GOLDEN,
    DROPOUT_MIX_1,
    DROPOUT_MIX_2,
    LOGISTIC,
    LOSSES,
)

# Entries by code (codes are positions in the registries).
_ACTIVATION_OF = tuple(ACTIVATIONS.values())
_LOSS_OF = tuple(LOSSES.values())


def dense_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    activation: int = LOGISTIC,
    threads: int | None = None,
) -> None:
    """``out[:] = f(x @ w + b)``. x (m, n_in), w (n_in, n_out), b (n_out,), out (m, n_out)."""
    np.matmul(x, w, out=out)
    out += b
    _ACTIVATION_OF[activation].forward_numpy(out)


def dense_backward(
    delta: np.ndarray,
    a: np.ndarray,
    a_prev: np.ndarray,
    w: np.ndarray,
    dw: np.ndarray,
    db: np.ndarray,
    delta_prev: np.ndarray | None,
    activation: int = LOGISTIC,
    threads: int | None = None,
) -> None:
    """One layer's backward pass; the same contract as :func:`fastbp.kernels.dense_backward`."""
    _ACTIVATION_OF[activation].delta_numpy(delta, a)
    np.sum(delta, axis=0, out=db)
    np.matmul(a_prev.T, delta, out=dw)
    if delta_prev is not None and delta_prev.shape[0] > 0:
        np.matmul(delta, w.T, out=delta_prev)


def mse_loss_grad(a: np.ndarray, y: np.ndarray, grad: np.ndarray, rows: int = 0) -> float:
    """Return ``J = sum((a - y)**2) / M`` and write ``grad = 2 (a - y) / M``: M is m,
    or ``rows`` (the batch a is part of) when given."""
    m = rows if rows > 0 else a.shape[0]
    np.subtract(a, y, out=grad)
    loss = float(np.vdot(grad, grad)) / m
    grad *= 2 / m
    return loss


def dense_backward_sgd(
    delta: np.ndarray,
    a: np.ndarray,
    a_prev: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    db: np.ndarray,
    delta_prev: np.ndarray | None,
    lr: float,
    activation: int = LOGISTIC,
    threads: int | None = None,
) -> None:
    """:func:`dense_backward`, then ``w -= lr * dw; b -= lr * db``."""
    dw = np.empty_like(w)
    dense_backward(delta, a, a_prev, w, dw, db, delta_prev, activation)
    sgd_update(w, dw, lr)
    sgd_update(b, db, lr)


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float, threads: int | None = None) -> None:
    """``param -= lr * grad`` in place."""
    param -= param.dtype.type(lr) * grad


# -- whole network -----------------------------------------------------------------


def init_params(
    sizes: Sequence[int], dtype: type = np.float64, seed: int | None = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights and biases drawn uniform in ``±sqrt(2 / (fan_in + fan_out))``.

    Layer by layer from ``numpy.random.default_rng(seed)``: first W_l (n_in, n_out),
    then b_l (n_out,), drawn in float64 and then cast to ``dtype``.
    """
    return init_params_from(sizes, dtype, np.random.default_rng(seed))


def init_params_from(
    sizes: Sequence[int], dtype: type, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`init_params` drawing from an existing generator."""
    weights, biases = [], []
    for n_in, n_out in itertools.pairwise(sizes):
        bound = np.sqrt(2.0 / (n_in + n_out))
        weights.append(rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype))
        biases.append(rng.uniform(-bound, bound, n_out).astype(dtype))
    return weights, biases


def forward(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    acts: Sequence[np.ndarray] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
) -> list[np.ndarray]:
    """Activations ``[A_1, ..., A_L]`` of every layer for input x (m, n_0).

    With ``acts`` (buffers of at least m rows each), writes into their first m rows.
    ``masks``: dropout, one multiplier array (m, n_l) or None per hidden layer
    (:func:`dropout_forward`'s ``mask``): layer l + 1 then reads ``A_l * masks[l]``
    (the returned A_l are before dropout).
    """
    m = x.shape[0]
    if acts is None:
        acts = [np.empty((m, w.shape[1]), dtype=w.dtype) for w in weights]
    out = []
    for layer, (w, b, buf) in enumerate(zip(weights, biases, acts, strict=True)):
        dense_forward(x, w, b, buf[:m])
        x = buf[:m]
        out.append(x)
        x = _dropped(x, masks, layer)
    return out


def _mask(masks: Sequence[np.ndarray | None] | None, layer: int) -> np.ndarray | None:
    """Hidden layer ``layer``'s dropout mask, or None."""
    return None if masks is None or layer >= len(masks) else masks[layer]


def _dropped(a: np.ndarray, masks: Sequence[np.ndarray | None] | None, layer: int) -> np.ndarray:
    """What the layer above hidden layer ``layer`` reads: a, or a times its mask."""
    mask = _mask(masks, layer)
    return a if mask is None else a * mask


def loss(
    x: np.ndarray,
    y: np.ndarray,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
) -> float:
    """``J`` of the network on (x, y) (with dropout ``masks``, see :func:`forward`)."""
    a = forward(x, weights, biases, masks=masks)[-1]
    return float(np.sum((a - y) ** 2)) / x.shape[0]


def backward(
    x: np.ndarray,
    y: np.ndarray,
    weights: Sequence[np.ndarray],
    acts: Sequence[np.ndarray],
    dws: Sequence[np.ndarray],
    dbs: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
) -> float:
    """Fill ``dws``/``dbs`` with dJ/dW, dJ/db given the forward ``acts``; return J.

    ``deltas`` are scratch buffers shaped like ``acts`` (at least m rows each);
    ``masks`` the dropout masks the forward pass used (see :func:`forward`).
    """
    m = x.shape[0]
    if deltas is None:
        deltas = [np.empty_like(a) for a in acts]
    delta = deltas[-1][:m]
    j = mse_loss_grad(acts[-1], y, delta)
    for layer in range(len(weights) - 1, -1, -1):
        a_prev = _dropped(acts[layer - 1], masks, layer - 1) if layer > 0 else x
        delta_prev = deltas[layer - 1][:m] if layer > 0 else None
        dense_backward(
            delta, acts[layer], a_prev, weights[layer], dws[layer], dbs[layer], delta_prev
        )
        mask = _mask(masks, layer - 1)
        if delta_prev is not None and mask is not None:
            delta_prev *= mask
        delta = delta_prev
    return j


def gradients(
    x: np.ndarray,
    y: np.ndarray,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """dJ/dW_l and dJ/db_l for every layer at the given parameters (and dropout
    ``masks``, see :func:`forward`)."""
    dws = [np.empty_like(w) for w in weights]
    dbs = [np.empty_like(b) for b in biases]
    acts = forward(x, weights, biases, masks=masks)
    backward(x, y, weights, acts, dws, dbs, masks=masks)
    return dws, dbs


def train(
    x: np.ndarray,
    y: np.ndarray,
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    epochs: int,
    lr: float,
    batch_size: int | None = None,
    shuffle: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Mini-batch gradient descent, updating ``weights`` and ``biases`` in place.

    Batches are consecutive slices of the rows (of ``x[rng.permutation(n)]`` when
    ``shuffle``, one permutation per epoch); a partial last batch is averaged over
    its own size. Returns the loss of each epoch: the mean over its batches of the
    batch's J before its update, weighted by batch size.
    """
    n = x.shape[0]
    batch = n if batch_size is None else min(batch_size, n)
    dws = [np.empty_like(w) for w in weights]
    dbs = [np.empty_like(b) for b in biases]
    acts = [np.empty((batch, w.shape[1]), dtype=w.dtype) for w in weights]
    deltas = [np.empty_like(a) for a in acts]
    losses = np.empty(epochs)
    for epoch in range(epochs):
        order = rng.permutation(n) if shuffle else None
        total = 0.0
        for start in range(0, n, batch):
            rows = slice(start, start + batch) if order is None else order[start : start + batch]
            xb, yb = x[rows], y[rows]
            layer_out = forward(xb, weights, biases, acts)
            total += backward(xb, yb, weights, layer_out, dws, dbs, deltas) * xb.shape[0]
            for param, grad in zip(weights + biases, dws + dbs, strict=True):
                sgd_update(param, grad, lr)
        losses[epoch] = total / n
    return losses


# -- output layers, losses and optimizers of the scikit-learn estimators ------------


def output_activation(a: np.ndarray, loss: int) -> None:
    """Apply the output function of loss ``loss`` in place (exp for Poisson, row softmax)."""
    output = _LOSS_OF[loss].output_numpy
    if output is not None:
        output(a)


def output_loss_grad(
    a: np.ndarray, y: np.ndarray, sw: np.ndarray, sw_sum: float, loss: int, grad: np.ndarray
) -> float:
    """Return the batch loss J and write ``grad = w_i (a - y) / sw_sum``."""
    entry = _LOSS_OF[loss]
    m, k = a.shape
    w = np.ones(m) if sw.size == 0 else sw.astype(np.float64)
    eps = float(np.finfo(a.dtype).eps)
    per = entry.term_numpy(a.astype(np.float64), y.astype(np.float64), eps)
    np.subtract(a, y, out=grad)
    grad *= (w / sw_sum).astype(grad.dtype)[:, None]
    total = float(per.sum(axis=1) @ w) / sw_sum
    return total * 0.5 / k if entry.half_mean else total


def sum_squares(w: np.ndarray) -> float:
    """``sum(w**2)`` in float64."""
    w = w.astype(np.float64).ravel()
    return float(w @ w)


def l2_add(dw: np.ndarray, w: np.ndarray, scale: float) -> None:
    """``dw += scale * w``."""
    dw += dw.dtype.type(scale) * w


def momentum_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    threads: int | None = None,
) -> None:
    """SGD with (Nesterov) momentum, in place."""
    t = param.dtype.type
    velocity *= t(momentum)
    velocity -= t(lr) * grad
    if nesterov:
        param += t(momentum) * velocity - t(lr) * grad
    else:
        param += velocity


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    threads: int | None = None,
) -> None:
    """One Adam step in place with the bias-corrected rate ``lr``."""
    t = param.dtype.type
    m *= t(beta_1)
    m += t(1 - beta_1) * grad
    v *= t(beta_2)
    v += t(1 - beta_2) * (grad * grad)
    param += t(-lr) * m / (np.sqrt(v) + t(epsilon))


# -- dropout -------------------------------------------------------------------------


def _mix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * DROPOUT_MIX_1
        z = (z ^ (z >> np.uint64(27))) * DROPOUT_MIX_2
    return z ^ (z >> np.uint64(31))


def dropout_rows(x: np.ndarray, rows: np.ndarray, state: np.ndarray) -> None:
    """:func:`fastbp.kernels.dropout_rows` in NumPy's uint64 arithmetic (which wraps as
    the compiled code's does): the same row keys, the step counted."""
    m, n = x.shape
    bits = x.astype(np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        k = np.arange(1, n + 1, dtype=np.uint64) * DROPOUT_GOLDEN
        h = np.where(x != 0, _mix64(bits + k), np.uint64(0)).sum(axis=1, dtype=np.uint64)
        step = _mix64(np.uint64(state[0]) + np.uint64(state[1]) * DROPOUT_GOLDEN)
        rows[:m] = _mix64(h ^ step)
        state[1:] += np.uint64(1)


def dropout_forward(
    a: np.ndarray,
    before: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray,
    layer: int,
    threshold: int,
    scale: float,
) -> None:
    """:func:`fastbp.kernels.dropout_forward`'s draws in NumPy: the same a, before, mask."""
    m, n = a.shape
    with np.errstate(over="ignore"):
        base = rows[:m, None] + (np.uint64(layer) << np.uint64(32)) * DROPOUT_GOLDEN
        z = _mix64(base + np.arange(1, n + 1, dtype=np.uint64) * DROPOUT_GOLDEN)
    keep = (z >> np.uint64(64 - DROPOUT_BITS)) >= np.uint64(threshold)
    s = a.dtype.type(scale)
    before[...] = a
    mask[...] = np.where(keep, s, a.dtype.type(0))
    a[...] = np.where(keep, a * s, a.dtype.type(0))


def dropout_backward(
    delta: np.ndarray, mask: np.ndarray, a: np.ndarray, before: np.ndarray
) -> None:
    """``delta *= mask; a[:] = before`` in place."""
    delta *= mask
    a[...] = before


# -- sparse first layer (twins of fastbp.kernels.sparse_*) -----------------------------


def _csr_batch(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, order: np.ndarray, start: int, m: int
) -> np.ndarray:
    """The batch's rows of the CSR matrix as a dense (m, n_cols) array, n_cols the
    largest column index + 1 (the oracle may densify: its batches are small)."""
    rows = order[start : start + m] if order.size > 0 else np.arange(start, start + m)
    n_cols = int(indices[: indptr[-1]].max()) + 1 if indptr[-1] > 0 else 0
    dense = np.zeros((m, n_cols), dtype=data.dtype)
    for i, r in enumerate(rows):
        for p in range(indptr[r], indptr[r + 1]):
            dense[i, indices[p]] += data[p]  # duplicates add up
    return dense


def sparse_forward(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    order: np.ndarray,
    start: int,
    w: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    activation: int = LOGISTIC,
    threads: int | None = None,
) -> None:
    """``out[:] = f(X_batch @ w + b)``; the contract of :func:`fastbp.kernels.sparse_forward`."""
    x = _csr_batch(data, indices, indptr, order, start, out.shape[0])
    dense_forward(x, w[: x.shape[1]], b, out, activation)


def sparse_backward(
    delta: np.ndarray,
    a: np.ndarray,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    order: np.ndarray,
    start: int,
    w: np.ndarray,
    dw: np.ndarray,
    db: np.ndarray,
    decay: float,
    activation: int = LOGISTIC,
    threads: int | None = None,
) -> None:
    """dJ/dz into delta, db its column sums, ``dw = X_batch.T @ delta + decay * w``."""
    x = _csr_batch(data, indices, indptr, order, start, delta.shape[0])
    dense_backward(delta, a, x, w[: x.shape[1]], dw[: x.shape[1]], db, None, activation)
    dw[x.shape[1] :] = 0
    l2_add(dw, w, decay)


def sparse_backward_sgd(
    delta: np.ndarray,
    a: np.ndarray,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    order: np.ndarray,
    start: int,
    w: np.ndarray,
    b: np.ndarray,
    db: np.ndarray,
    lr: float,
    activation: int = LOGISTIC,
    threads: int | None = None,
) -> None:
    """:func:`sparse_backward` (no decay), then ``w -= lr * dw; b -= lr * db``."""
    dw = np.empty_like(w)
    sparse_backward(delta, a, data, indices, indptr, order, start, w, dw, db, 0.0, activation)
    sgd_update(w, dw, lr)
    sgd_update(b, db, lr)
