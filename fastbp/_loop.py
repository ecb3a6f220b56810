"""The compiled training loop: whole networks stored in flat buffers.

A network's parameters live in one flat array ``params``: for each layer l, W_l
(row-major, n_in x n_out) followed by b_l. ``grads`` has the same layout.
Per-layer activations and deltas live in flat arrays too, with room for
``capacity`` rows per layer; a batch of m <= capacity rows uses the first
m * n_out elements of each slot, which is again a C-contiguous (m, n_out) block.
So a partial last batch needs no other buffers, and nothing here allocates.

``threads`` is passed down to every kernel: the thread count, or None to run
(and compile) serial code only.

Offsets (int64 arrays, built by :class:`fastbp.network.Layout`):
``sizes`` (L + 1,) layer widths; ``w_off``/``b_off`` (L,) where W_l and b_l start
in ``params``; ``a_off`` (L,) where layer l's slot starts in ``acts``/``deltas``.
"""

from __future__ import annotations

import math

from fastbp import kernels
from fastbp._jit import jit


@jit
def layer_params(params, sizes, w_off, b_off, layer):
    """Views ``(W, b)`` of one layer inside the flat ``params`` (or ``grads``)."""
    n_in = sizes[layer]
    n_out = sizes[layer + 1]
    w = params[w_off[layer] : w_off[layer] + n_in * n_out].reshape((n_in, n_out))
    b = params[b_off[layer] : b_off[layer] + n_out]
    return w, b


@jit
def rows(buf, offset, m, n):
    """View of ``buf[offset:]`` as a C-contiguous (m, n) block."""
    return buf[offset : offset + m * n].reshape((m, n))


@jit
def forward_pass(x, sizes, w_off, b_off, a_off, params, acts, threads):
    """Fill each layer's slot in ``acts`` for input x (m, n_0), m <= capacity."""
    m = x.shape[0]
    w, b = layer_params(params, sizes, w_off, b_off, 0)
    kernels.dense_forward(x, w, b, rows(acts, a_off[0], m, sizes[1]), kernels.LOGISTIC, threads)
    for layer in range(1, sizes.size - 1):
        w, b = layer_params(params, sizes, w_off, b_off, layer)
        a_prev = rows(acts, a_off[layer - 1], m, sizes[layer])
        out = rows(acts, a_off[layer], m, sizes[layer + 1])
        kernels.dense_forward(a_prev, w, b, out, kernels.LOGISTIC, threads)


@jit
def backward_pass(x, y, sizes, w_off, b_off, a_off, params, acts, grads, deltas, lr, threads):
    """After :func:`forward_pass` on x: back-propagate and return J.

    With ``lr == 0``, write dJ/dparams into ``grads``. With ``lr > 0``, apply the
    SGD update to ``params`` as each layer's gradient is formed (``grads`` is
    then scratch space); no update at all if J is not finite.
    """
    m = x.shape[0]
    top = sizes.size - 2
    out = rows(acts, a_off[top], m, sizes[top + 1])
    loss = kernels.mse_loss_grad(out, y, rows(deltas, a_off[top], m, sizes[top + 1]))
    if lr > 0 and not math.isfinite(loss):
        return loss
    for layer in range(top, -1, -1):
        w, b = layer_params(params, sizes, w_off, b_off, layer)
        dw, db = layer_params(grads, sizes, w_off, b_off, layer)
        delta = rows(deltas, a_off[layer], m, sizes[layer + 1])
        a = rows(acts, a_off[layer], m, sizes[layer + 1])
        # The first layer's input is x, and it has no layer below to pass a delta to.
        if layer > 0:
            a_prev = rows(acts, a_off[layer - 1], m, sizes[layer])
            delta_prev = rows(deltas, a_off[layer - 1], m, sizes[layer])
            if lr > 0:
                kernels.dense_backward_sgd(
                    delta, a, a_prev, w, b, db, delta_prev, lr, kernels.LOGISTIC, threads
                )
            else:
                kernels.dense_backward(
                    delta, a, a_prev, w, dw, db, delta_prev, kernels.LOGISTIC, threads
                )
        elif lr > 0:
            kernels.dense_backward_sgd(delta, a, x, w, b, db, None, lr, kernels.LOGISTIC, threads)
        else:
            kernels.dense_backward(delta, a, x, w, dw, db, None, kernels.LOGISTIC, threads)
    return loss


@jit
def gather_rows(src, order, start, m, dst):
    """``dst[:m] = src[order[start:start + m]]`` (or ``src[start:start + m]`` if order is empty)."""
    n = src.shape[1]
    for i in range(m):
        r = order[start + i] if order.size > 0 else start + i
        for j in range(n):
            dst[i, j] = src[r, j]


@jit
def _sgd_step(x, y, sizes, w_off, b_off, a_off, params, grads, acts, deltas, lr, threads):
    """One batch: forward, then backward with the update unless the loss is not finite."""
    forward_pass(x, sizes, w_off, b_off, a_off, params, acts, threads)
    return backward_pass(x, y, sizes, w_off, b_off, a_off, params, acts, grads, deltas, lr, threads)


@jit
def train_chunk(
    x,
    y,
    orders,
    gather,
    sizes,
    w_off,
    b_off,
    a_off,
    params,
    grads,
    acts,
    deltas,
    xb,
    yb,
    lr,
    batch_size,
    position,
    max_steps,
    loss_sums,
    threads,
):
    """Run at most ``max_steps`` mini-batch SGD steps, then return to the caller.

    x (n, n_0), y (n, n_L): the data, any layout. ``orders`` (E, n) int64: the row
    order of each epoch of this block, or (0, n) for data order. ``gather``: copy
    each batch into xb/yb (capacity, n_0)/(capacity, n_L) first; required when
    x or y is not C-contiguous or the rows are shuffled. ``position`` int64 (2,):
    (epoch within the block, first row of the next batch), updated in place.
    ``loss_sums`` (E,) float64 accumulates each epoch's sum of batch J times batch
    size. Stops early at a non-finite loss, before that batch's update.

    Returns 1 if it stopped on a non-finite loss, else 0.
    """
    n = x.shape[0]
    epoch = position[0]
    start = position[1]
    steps = 0
    status = 0
    while epoch < loss_sums.size and steps < max_steps:
        m = min(batch_size, n - start)
        if gather:
            # An empty order means data order.
            order = orders[epoch] if orders.shape[0] > 0 else orders.reshape(-1)[:0]
            gather_rows(x, order, start, m, xb)
            gather_rows(y, order, start, m, yb)
            xin = xb[:m]
            yin = yb[:m]
        else:
            xin = x[start : start + m]
            yin = y[start : start + m]
        loss = _sgd_step(
            xin, yin, sizes, w_off, b_off, a_off, params, grads, acts, deltas, lr, threads
        )
        if not math.isfinite(loss):
            status = 1
            break
        loss_sums[epoch] += loss * m
        steps += 1
        start += m
        if start >= n:
            start = 0
            epoch += 1
    position[0] = epoch
    position[1] = start
    return status
