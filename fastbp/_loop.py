"""The compiled training loop: whole networks stored in flat buffers.

A network's parameters live in one flat array ``params``: for each layer l, W_l
(row-major, n_in x n_out) followed by b_l. ``grads`` has the same layout.
Per-layer activations and deltas live in flat arrays too, with room for
``capacity`` rows per layer; a batch of m <= capacity rows uses the first
m * n_out elements of each slot, which is again a C-contiguous (m, n_out) block.
So a partial last batch needs no other buffers, and nothing here allocates.

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
def forward_pass(x, sizes, w_off, b_off, a_off, params, acts):
    """Fill each layer's slot in ``acts`` for input x (m, n_0), m <= capacity."""
    m = x.shape[0]
    w, b = layer_params(params, sizes, w_off, b_off, 0)
    kernels.dense_forward(x, w, b, rows(acts, a_off[0], m, sizes[1]))
    for layer in range(1, sizes.size - 1):
        w, b = layer_params(params, sizes, w_off, b_off, layer)
        a_prev = rows(acts, a_off[layer - 1], m, sizes[layer])
        kernels.dense_forward(a_prev, w, b, rows(acts, a_off[layer], m, sizes[layer + 1]))


@jit
def backward_pass(x, y, sizes, w_off, b_off, a_off, params, acts, grads, deltas):
    """After :func:`forward_pass` on x: write dJ/dparams into ``grads``; return J."""
    m = x.shape[0]
    top = sizes.size - 2
    out = rows(acts, a_off[top], m, sizes[top + 1])
    loss = kernels.mse_loss_grad(out, y, rows(deltas, a_off[top], m, sizes[top + 1]))
    # Layers above the first pass their delta down; the first one has nowhere to.
    for layer in range(top, 0, -1):
        w, _ = layer_params(params, sizes, w_off, b_off, layer)
        dw, db = layer_params(grads, sizes, w_off, b_off, layer)
        kernels.dense_backward(
            rows(deltas, a_off[layer], m, sizes[layer + 1]),
            rows(acts, a_off[layer], m, sizes[layer + 1]),
            rows(acts, a_off[layer - 1], m, sizes[layer]),
            w,
            dw,
            db,
            rows(deltas, a_off[layer - 1], m, sizes[layer]),
        )
    w, _ = layer_params(params, sizes, w_off, b_off, 0)
    dw, db = layer_params(grads, sizes, w_off, b_off, 0)
    kernels.dense_backward(
        rows(deltas, a_off[0], m, sizes[1]), rows(acts, a_off[0], m, sizes[1]), x, w, dw, db, None
    )
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
def _sgd_step(x, y, sizes, w_off, b_off, a_off, params, grads, acts, deltas, lr):
    """One batch: forward, backward, and the update unless the loss is not finite."""
    forward_pass(x, sizes, w_off, b_off, a_off, params, acts)
    loss = backward_pass(x, y, sizes, w_off, b_off, a_off, params, acts, grads, deltas)
    if math.isfinite(loss):
        kernels.sgd_update(params, grads, lr)
    return loss


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
            loss = _sgd_step(
                xb[:m], yb[:m], sizes, w_off, b_off, a_off, params, grads, acts, deltas, lr
            )
        else:
            loss = _sgd_step(
                x[start : start + m],
                y[start : start + m],
                sizes,
                w_off,
                b_off,
                a_off,
                params,
                grads,
                acts,
                deltas,
                lr,
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
