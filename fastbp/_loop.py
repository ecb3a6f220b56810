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
The offsets may put the layers in any order: :class:`fastbp.network.Layout`
interleaves W_l, b_l; the scikit-learn estimators put all W first, then all b
(scikit-learn's packed order, which L-BFGS sees).

The network is described by ``activations`` (L,) int64, the activation code of
each layer (``kernels.IDENTITY`` ...; the output layer's code is applied by
:func:`kernels.dense_forward`), and ``loss``: None for fastbp.Network's mean
squared error (``kernels.LOSS_MSE``: output delta ``2 (a - y) / m``, the output
layer's derivative taken from its activation), or a ``kernels.LOSS_*`` code of
the scikit-learn estimators, each with its canonical output (identity, exp,
logistic, softmax: :func:`kernels.output_activation`) and output delta
``dJ/dz = w_i (a - y) / sum w``, where w are the sample weights ``sw`` (an empty
array for none).

Optimizers, with hyper-parameters ``hyper`` float64
``[lr, alpha, momentum, beta_1, beta_2, epsilon]``:

``OPT_FUSED``      (fastbp.Network: ``state`` None, the rate in ``fused_lr``)
                   plain SGD fused into the backward pass
                   (``kernels.dense_backward_sgd``), no L2; a chunk stops at a
                   non-finite loss.
``OPT_MOMENTUM`` / ``OPT_NESTEROV`` (``opt``): scikit-learn's SGD; ``state``
                   (1, n_params) holds the velocities.
``OPT_ADAM``       scikit-learn's Adam; ``state`` (2, n_params) holds m and v;
                   the step count t is ``position[2]``.

These three compute the whole gradient first (with the L2 term
``alpha * W / sum w``, and ``0.5 * alpha * sum ||W||^2 / sum w`` added to J,
when ``alpha > 0``), then update ``params`` in one pass, and never stop on a
non-finite loss (as scikit-learn).

Network's ``None`` arguments are tested with ``is None`` on their own, which
Numba resolves at compile time (it prunes the branches a None argument rules
out): its compiled loop contains none of the scikit-learn losses and optimizers.

Compiled code here makes its per-layer views with :mod:`fastbp._views` (no call,
no bounds check) and never returns one; :func:`layer_params` and :func:`rows`
are the NumPy equivalents for Python callers. :func:`forward_pass`,
:func:`backward_pass` and :func:`_step` are inlined into :func:`train_chunk`
(``jit_inline``): measured on the first fit of the ``[2, 4, 1]`` network, the
compile took 10.6 s with them as separate functions and 8.6 s inlined, and a
step 0.58 against 0.47 us.
"""

from __future__ import annotations

import math

import numpy as np

from fastbp import _views, kernels
from fastbp._jit import jit, jit_inline

OPT_FUSED = 0
OPT_MOMENTUM = 1
OPT_NESTEROV = 2
OPT_ADAM = 3

# Slots of ``hyper``.
H_LR = 0
H_ALPHA = 1
H_MOMENTUM = 2
H_BETA_1 = 3
H_BETA_2 = 4
H_EPSILON = 5


def layer_params(
    params: np.ndarray, sizes: np.ndarray, w_off: np.ndarray, b_off: np.ndarray, layer: int
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy views ``(W, b)`` of one layer inside the flat ``params`` (or ``grads``).

    For Python callers; compiled code makes its views with :mod:`fastbp._views`.
    """
    n_in, n_out = int(sizes[layer]), int(sizes[layer + 1])
    w = params[w_off[layer] : w_off[layer] + n_in * n_out].reshape(n_in, n_out)
    return w, params[b_off[layer] : b_off[layer] + n_out]


def rows(buf: np.ndarray, offset: int, m: int, n: int) -> np.ndarray:
    """NumPy view of ``buf[offset:]`` as a C-contiguous (m, n) block, for Python callers."""
    return buf[offset : offset + m * n].reshape(m, n)


@jit_inline
def forward_pass(x, sizes, w_off, b_off, a_off, params, acts, activations, loss, threads):
    """Fill each layer's slot in ``acts`` for input x (m, n_0), m <= capacity."""
    m = x.shape[0]
    w = _views.block(params, w_off[0], sizes[0], sizes[1])
    b = _views.vector(params, b_off[0], sizes[1])
    kernels.dense_forward(
        x, w, b, _views.block(acts, a_off[0], m, sizes[1]), activations[0], threads
    )
    for layer in range(1, sizes.size - 1):
        w = _views.block(params, w_off[layer], sizes[layer], sizes[layer + 1])
        b = _views.vector(params, b_off[layer], sizes[layer + 1])
        a_prev = _views.block(acts, a_off[layer - 1], m, sizes[layer])
        out = _views.block(acts, a_off[layer], m, sizes[layer + 1])
        kernels.dense_forward(a_prev, w, b, out, activations[layer], threads)
    # `is None` tests stand alone so that Numba prunes them at compile time.
    if loss is not None:  # noqa: SIM102
        if loss == kernels.LOSS_POISSON or loss == kernels.LOSS_SOFTMAX:
            top = sizes.size - 2
            kernels.output_activation(_views.block(acts, a_off[top], m, sizes[top + 1]), loss)


@jit
def l2_term(params, sizes, w_off, b_off):
    """``sum ||W_l||^2`` over the layers (float64)."""
    total = 0.0
    for layer in range(sizes.size - 1):
        total += kernels.sum_squares(
            _views.block(params, w_off[layer], sizes[layer], sizes[layer + 1])
        )
    return total


@jit_inline
def backward_pass(
    x,
    y,
    sw,
    sizes,
    w_off,
    b_off,
    a_off,
    params,
    acts,
    grads,
    deltas,
    activations,
    loss,
    alpha,
    lr,
    threads,
):
    """After :func:`forward_pass` on x: back-propagate and return J.

    y (m, n_L) the targets; sw (m,) sample weights or an empty array. One of
    ``alpha`` and ``lr`` is None, which selects the mode at compile time. With
    ``lr`` None, write dJ/dparams into ``grads`` (with the L2 term when alpha > 0).
    With ``alpha`` None (``loss is None`` only), apply the SGD update at rate lr to
    ``params`` as each layer's gradient is formed (``grads`` is then scratch
    space); no update at all if J is not finite.
    """
    m = x.shape[0]
    top = sizes.size - 2
    out = _views.block(acts, a_off[top], m, sizes[top + 1])
    delta_top = _views.block(deltas, a_off[top], m, sizes[top + 1])
    decay = 0.0
    if loss is None:
        J = kernels.mse_loss_grad(out, y, delta_top)
        top_activation = activations[top]
    else:
        if sw.size > 0:
            sw_sum = 0.0
            for i in range(m):
                sw_sum += sw[i]
        else:
            sw_sum = float(m)
        J = kernels.output_loss_grad(out, y, sw, sw_sum, loss, delta_top)
        top_activation = kernels.IDENTITY
        # `is None` tests stand alone: Numba prunes them at compile time (the
        # scikit-learn loop also types the fused call below, with alpha None).
        if alpha is not None:  # noqa: SIM102
            if alpha > 0:
                J += 0.5 * alpha * l2_term(params, sizes, w_off, b_off) / sw_sum
                decay = alpha / sw_sum
    if lr is not None:  # noqa: SIM102
        if not math.isfinite(J):
            return J
    for layer in range(top, -1, -1):
        w = _views.block(params, w_off[layer], sizes[layer], sizes[layer + 1])
        b = _views.vector(params, b_off[layer], sizes[layer + 1])
        dw = _views.block(grads, w_off[layer], sizes[layer], sizes[layer + 1])
        db = _views.vector(grads, b_off[layer], sizes[layer + 1])
        delta = _views.block(deltas, a_off[layer], m, sizes[layer + 1])
        a = _views.block(acts, a_off[layer], m, sizes[layer + 1])
        activation = top_activation if layer == top else activations[layer]
        # The first layer's input is x, and it has no layer below to pass a delta to.
        if alpha is not None:  # gradient mode
            if layer > 0:
                a_prev = _views.block(acts, a_off[layer - 1], m, sizes[layer])
                delta_prev = _views.block(deltas, a_off[layer - 1], m, sizes[layer])
                kernels.dense_backward(delta, a, a_prev, w, dw, db, delta_prev, activation, threads)
            else:
                kernels.dense_backward(delta, a, x, w, dw, db, None, activation, threads)
            if decay > 0:
                kernels.l2_add(dw, w, decay)
        elif lr is not None:  # fused SGD
            if layer > 0:
                a_prev = _views.block(acts, a_off[layer - 1], m, sizes[layer])
                delta_prev = _views.block(deltas, a_off[layer - 1], m, sizes[layer])
                kernels.dense_backward_sgd(
                    delta, a, a_prev, w, b, db, delta_prev, lr, activation, threads
                )
            else:
                kernels.dense_backward_sgd(delta, a, x, w, b, db, None, lr, activation, threads)
    return J


@jit
def loss_grad(
    x,
    y,
    sw,
    sizes,
    w_off,
    b_off,
    a_off,
    params,
    acts,
    grads,
    deltas,
    activations,
    loss,
    alpha,
    threads,
):
    """J and dJ/dparams (into ``grads``) on one batch: forward then backward."""
    forward_pass(x, sizes, w_off, b_off, a_off, params, acts, activations, loss, threads)
    return backward_pass(
        x,
        y,
        sw,
        sizes,
        w_off,
        b_off,
        a_off,
        params,
        acts,
        grads,
        deltas,
        activations,
        loss,
        alpha,
        None,
        threads,
    )


@jit
def gather_rows(src, order, start, m, dst):
    """``dst[:m] = src[order[start:start + m]]`` (or ``src[start:start + m]`` if order is empty)."""
    n = src.shape[1]
    for i in range(m):
        r = order[start + i] if order.size > 0 else start + i
        for j in range(n):
            dst[i, j] = src[r, j]


@jit
def gather_weights(sw, order, start, m, dst):
    """:func:`gather_rows` for a 1-D array; nothing when sw is empty."""
    if sw.size == 0:
        return
    for i in range(m):
        dst[i] = sw[order[start + i] if order.size > 0 else start + i]


@jit_inline
def _step(
    x,
    y,
    sw,
    sizes,
    w_off,
    b_off,
    a_off,
    activations,
    loss,
    params,
    grads,
    acts,
    deltas,
    opt,
    hyper,
    state,
    position,
    threads,
    fused_lr,
):
    """One batch: forward, backward, update. Returns the batch's J."""
    forward_pass(x, sizes, w_off, b_off, a_off, params, acts, activations, loss, threads)
    # Each mode is selected by an argument that is None in the other, so that
    # Numba compiles only the selected one (it prunes branches on None only).
    if fused_lr is not None:  # noqa: SIM102  (fastbp.Network: SGD fused into backward)
        if state is None:
            return backward_pass(
                x,
                y,
                sw,
                sizes,
                w_off,
                b_off,
                a_off,
                params,
                acts,
                grads,
                deltas,
                activations,
                loss,
                None,
                fused_lr,
                threads,
            )
    J = 0.0
    if state is not None:  # scikit-learn: the whole gradient, then the optimizer
        J = backward_pass(
            x,
            y,
            sw,
            sizes,
            w_off,
            b_off,
            a_off,
            params,
            acts,
            grads,
            deltas,
            activations,
            loss,
            hyper[H_ALPHA],
            None,
            threads,
        )
        if opt == OPT_ADAM:
            position[2] += 1
            t = float(position[2])
            b1 = hyper[H_BETA_1]
            b2 = hyper[H_BETA_2]
            lr = hyper[H_LR] * math.sqrt(1.0 - math.pow(b2, t)) / (1.0 - math.pow(b1, t))
            kernels.adam_update(
                params, grads, state[0], state[1], lr, b1, b2, hyper[H_EPSILON], threads
            )
        else:
            kernels.momentum_update(
                params,
                grads,
                state[0],
                hyper[H_LR],
                hyper[H_MOMENTUM],
                opt == OPT_NESTEROV,
                threads,
            )
    return J


@jit
def train_chunk(
    x,
    y,
    sw,
    orders,
    gather,
    sizes,
    w_off,
    b_off,
    a_off,
    activations,
    loss,
    params,
    grads,
    acts,
    deltas,
    xb,
    yb,
    swb,
    opt,
    hyper,
    state,
    batch_size,
    position,
    max_steps,
    stop,
    loss_sums,
    threads,
    fused_lr=None,
):
    """Run at most ``max_steps`` mini-batch steps, then return to the caller.

    x (n, n_0), y (n, n_L): the data, any layout; sw (n,) sample weights or an
    empty array. ``orders`` (E, n) int64: the row order of each epoch of this
    block, or (0, n) for data order. ``gather``: copy each batch into xb/yb/swb
    (capacity, n_0)/(capacity, n_L)/(capacity,) first; required when x or y is
    not C-contiguous or the rows are shuffled. ``position`` int64 (3,): (epoch
    within the block, first row of the next batch, optimizer step count),
    updated in place. ``loss_sums`` (E,) float64 accumulates each epoch's sum of
    batch J times batch size. ``fused_lr``: the learning rate of fastbp.Network's
    fused SGD (with ``state`` None); None (the default) for the scikit-learn
    optimizers. Fused SGD stops early at a non-finite loss, before that batch's
    update. ``stop`` (1,) uint8: checked before every step; another thread sets
    it to end the chunk early (Ctrl-C).

    Returns 1 if it stopped on a non-finite loss, else 0.
    """
    n = x.shape[0]
    epoch = position[0]
    start = position[1]
    steps = 0
    status = 0
    while epoch < loss_sums.size and steps < max_steps and stop[0] == 0:
        m = min(batch_size, n - start)
        if gather:
            # An empty order means data order.
            order = orders[epoch] if orders.shape[0] > 0 else orders.reshape(-1)[:0]
            gather_rows(x, order, start, m, xb)
            gather_rows(y, order, start, m, yb)
            gather_weights(sw, order, start, m, swb)
            xin = _views.row_range(xb, 0, m)
            yin = _views.row_range(yb, 0, m)
            swin = swb[:m] if sw.size > 0 else swb[:0]
        else:
            xin = _views.row_range(x, start, m)
            yin = _views.row_range(y, start, m)
            swin = sw[start : start + m] if sw.size > 0 else sw[:0]
        loss_value = _step(
            xin,
            yin,
            swin,
            sizes,
            w_off,
            b_off,
            a_off,
            activations,
            loss,
            params,
            grads,
            acts,
            deltas,
            opt,
            hyper,
            state,
            position,
            threads,
            fused_lr,
        )
        if state is None:  # noqa: SIM102  (OPT_FUSED; pruned at compile time)
            if not math.isfinite(loss_value):
                status = 1
                break
        loss_sums[epoch] += loss_value * m
        steps += 1
        start += m
        if start >= n:
            start = 0
            epoch += 1
    position[0] = epoch
    position[1] = start
    return status
