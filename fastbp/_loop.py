"""The compiled training loop: whole networks stored in flat buffers.

A network's parameters live in one flat array ``params``: for each layer l, W_l
(row-major, n_in x n_out) and b_l, at the offsets of a :class:`Net`. ``grads``
has the same layout. Per-layer activations and deltas live in flat arrays too,
with room for ``capacity`` rows per layer; a batch of m <= capacity rows uses the
first m * n_out elements of each slot, which is again a C-contiguous (m, n_out)
block. So a partial last batch needs no other buffers, and nothing here allocates.

Arguments travel in named bundles (``typing.NamedTuple``, which Numba compiles as
structs):

:class:`Net`        the layout: widths, offsets, activation codes.
:class:`Buffers`    params, grads, acts, deltas (flat, one float dtype), and
                    None or a :class:`Dropout` (masks drawn in the loop, for the
                    hidden layers: training only).
:class:`Data`       the rows (x, y, sample weights), the epochs' row orders, the
                    batch size, and gather buffers for shuffled or strided rows;
                    or :class:`SparseData`, the same for the rows of a CSR matrix,
                    never copied: each batch is a :class:`SparseRows` (the matrix,
                    the order, where the batch starts in it), which selects the
                    sparse first-layer kernels (``kernels.sparse_*``).
``objective``       None for fastbp.Network's mean squared error (output delta
                    ``2 (a - y) / m``, the output layer's derivative taken from its
                    activation), or an :class:`Objective` (a scikit-learn loss with
                    its canonical output and an L2 penalty ``alpha``; made by
                    :func:`objective`, one subclass per loss: the loss is the
                    type); for part of
                    a batch (a step split over threads by rows, :mod:`fastbp._rows`),
                    a :class:`HalfMSE` or :class:`HalfLoss`.
``opt``             None (gradient only), :class:`FusedSGD`, :class:`Momentum` or
                    :class:`Adam`.

**The mode is chosen one way: by the types of ``opt`` and ``objective``** (and of
the data: :class:`SparseData` for CSR input). The
switches below (``_output_delta``, ``_layer_backward``, ``_update``...) are
:func:`fastbp._jit.mode_switch` functions: Numba picks their body from those types
while typing, so a compiled variant contains only its own mode's kernels
(``tests/test_compiled_modes.py`` checks that fastbp.Network's loop holds no
Adam or momentum update and no scikit-learn loss, and that a scikit-learn loss's
loop holds that loss's loops only). Dropout is chosen the same
way, by the type of ``bufs.dropout``: the loop without it holds no dropout code.

FusedSGD (fastbp.Network) applies plain SGD inside the backward pass
(``kernels.dense_backward_sgd``: BLAS gemm with alpha = -lr, beta = 1), and stops a
chunk at a non-finite loss before that batch's update. Momentum and Adam compute
the whole gradient first (with the L2 term ``alpha * W / sum w``, and
``0.5 * alpha * sum ||W||^2 / sum w`` added to J, when alpha > 0), then update
``params`` in one pass, and never stop on a non-finite loss (as scikit-learn).

Compiled code here makes its per-layer views with :mod:`fastbp._views` (no call,
no bounds check) and never returns one. :func:`forward_pass`,
:func:`backward_pass` and :func:`_step` are inlined into their callers
(``jit_inline``): each level of compiled calls costs compile time.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from numba import types

from fastbp import _views, kernels
from fastbp._jit import jit, jit_inline, mode_switch
from fastbp._math import as_dtype_of


class Net(NamedTuple):
    """A network's layout (all int64 arrays).

    sizes (L + 1,) layer widths; w_off / b_off (L,) where W_l and b_l start in
    ``params``; a_off (L,) where layer l's slot starts in ``acts``/``deltas`` at
    the buffers' capacity; activations (L,) each layer's activation code (the
    output layer's too: with an :class:`Objective`, its canonical output).
    """

    sizes: np.ndarray
    w_off: np.ndarray
    b_off: np.ndarray
    a_off: np.ndarray
    activations: np.ndarray


class Buffers(NamedTuple):
    """params, grads (n_params,); acts, deltas (capacity * n_units,). One float dtype.

    ``dropout``: None, or a :class:`Dropout` applied to the hidden layers whenever
    the loop trains (and by :func:`loss_grad`).
    """

    params: np.ndarray
    grads: np.ndarray
    acts: np.ndarray
    deltas: np.ndarray
    dropout: Dropout | None = None


class Dropout(NamedTuple):
    """Inverted dropout on the hidden layers (``kernels.dropout_forward``).

    threshold (L - 1,) uint64: hidden layer l's ``kernels.dropout_threshold`` (0:
    not dropped); scale (L - 1,) float64: ``1 / (1 - rate_l)``; state (2,) uint64:
    the generator's key and step counter (advanced by every forward pass); rows
    (capacity,) uint64: the batch's row keys (``kernels.dropout_rows``); mask,
    before (capacity * n_units,) in the params' dtype, laid out as ``acts``: each hidden
    layer's last mask, and its activations before dropout. Between the forward
    pass and the backward pass, a hidden layer's slot of ``acts`` holds its dropped
    activations (what the layer above reads); the backward pass puts back the
    activations before dropout as it reaches the layer (its derivative needs them).
    """

    threshold: np.ndarray
    scale: np.ndarray
    state: np.ndarray
    rows: np.ndarray
    mask: np.ndarray
    before: np.ndarray


class Data(NamedTuple):
    """The rows a chunk trains on, and how it walks them.

    x (n, n_0), y (n, n_L): any layout; sw (n,) sample weights or empty.
    orders (E, n) int64: the row order of each epoch, or (0, n) for data order.
    gather: copy each batch into xb/yb/swb (capacity rows) first; required when x
    or y is not C-contiguous or the rows are shuffled.
    """

    x: np.ndarray
    y: np.ndarray
    sw: np.ndarray
    orders: np.ndarray
    batch_size: int
    gather: bool
    xb: np.ndarray
    yb: np.ndarray
    swb: np.ndarray


class SparseRows(NamedTuple):
    """Rows of a CSR matrix, as the first layer's input x: batch row i is row
    ``order[start + i]`` (``start + i`` when order is empty) of (data, indices,
    indptr). ``shape`` (m, n_cols), so that x.shape[0] is the batch's row count
    for either kind of x. Selects the sparse first-layer kernels."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    order: np.ndarray
    start: int
    shape: tuple


class SparseData(NamedTuple):
    """:class:`Data` for CSR rows: x is (data, indices, indptr) with n_cols columns,
    never copied (batches are :class:`SparseRows`); only y and sw are gathered
    (into yb, swb) when ``gather``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    n_cols: int
    y: np.ndarray
    sw: np.ndarray
    orders: np.ndarray
    batch_size: int
    gather: bool
    yb: np.ndarray
    swb: np.ndarray


class Objective(NamedTuple):
    """A scikit-learn loss's L2 penalty ``alpha``; the loss is the class. Made by
    :func:`objective` as the subclass of that loss (its ``CODE``, a
    ``kernels.LOSS_*`` code): compiled code reads the loss from the type."""

    alpha: float


class HalfMSE(NamedTuple):
    """fastbp.Network's objective for part of a batch of ``rows`` rows (a step split
    over threads by rows, :mod:`fastbp._rows`): J and delta divided by ``rows``."""

    rows: int


class HalfLoss(NamedTuple):
    """An :class:`Objective` for part of a batch whose sample weights add up to
    ``sw_sum``, without the L2 term (added once, to the whole gradient); one
    subclass per loss, as :class:`Objective`'s (``HALF_LOSSES``)."""

    sw_sum: float


def _per_loss(bundle: type) -> MappingProxyType[int, type]:
    """``{code: subclass}``: one subclass of ``bundle`` per loss of ``kernels.LOSSES``,
    its code in the class attribute ``CODE``.

    The loss is then part of the bundle's Numba type, so a compiled variant types
    and compiles its own loss's loops only (``kernels.LOSS_KERNELS``) instead of a
    branch on the code over every loss. Measured on the first digits
    ``MLPClassifier(hidden_layer_sizes=(64,))`` fit, cold cache (Numba's compile
    events, one run each): compiling the output function and the loss took 2.2 s
    with every loss's branch, 1.0 s with log-loss's alone.
    """
    classes = {}
    for entry in kernels.LOSSES.values():
        if entry.term is None:
            continue
        name = bundle.__name__ + "_" + entry.name
        cls = type(name, (bundle,), {"__slots__": (), "CODE": entry.code})
        cls.__module__ = __name__
        globals()[name] = cls  # found by name, so instances pickle
        classes[entry.code] = cls
    return MappingProxyType(classes)


_OBJECTIVES = _per_loss(Objective)
HALF_LOSSES = _per_loss(HalfLoss)


def objective(loss: int, alpha: float) -> Objective:
    """The :class:`Objective` of ``kernels.LOSSES`` code ``loss`` with L2 penalty ``alpha``."""
    return _OBJECTIVES[loss](alpha)


class FusedSGD(NamedTuple):
    """fastbp.Network's plain SGD at rate ``lr``, fused into the backward pass."""

    lr: float


class Momentum(NamedTuple):
    """scikit-learn's SGD: ``velocity`` (n_params,) in the params' dtype."""

    lr: float
    momentum: float
    nesterov: bool
    velocity: np.ndarray


class Adam(NamedTuple):
    """scikit-learn's Adam: moments ``m``, ``v`` (n_params,); ``t`` int64 (1,) the
    step count, incremented by every step."""

    lr: float
    beta_1: float
    beta_2: float
    epsilon: float
    m: np.ndarray
    v: np.ndarray
    t: np.ndarray


def _is(ty, cls) -> bool:
    """Whether Numba type ``ty`` is the bundle class ``cls`` (or one of its per-loss
    subclasses)."""
    return isinstance(ty, types.BaseNamedTuple) and issubclass(ty.instance_class, cls)


@jit
def adam_rate(lr, beta_1, beta_2, t):
    """Adam's bias-corrected rate at step t >= 1 (scikit-learn's ``learning_rate``)."""
    return lr * math.sqrt(1.0 - math.pow(beta_2, t)) / (1.0 - math.pow(beta_1, t))


# -- mode switches (see the module docstring) -------------------------------------


def _output_transform(objective, out):
    """Apply the objective's output function to the output layer (m, k) in place."""


@mode_switch(_output_transform)
def _output_transform_impl(objective, out):
    if objective is types.none or _is(objective, HalfMSE):
        return lambda objective, out: None  # Network: every layer's own activation

    code = objective.instance_class.CODE
    output, _ = kernels.LOSS_KERNELS[code]

    def impl(objective, out):
        output(out, code)  # the registry's output function

    return impl


def _output_delta(objective, out, y, sw, delta, net, params):
    """Write dJ/d(output) into ``delta``; return (J, the activation code whose
    derivative turns it into dJ/dz, the L2 decay to add to each dW)."""


@mode_switch(_output_delta)
def _output_delta_impl(objective, out, y, sw, delta, net, params):
    if objective is types.none:

        def mse(objective, out, y, sw, delta, net, params):
            J = kernels.mse_loss_grad(out, y, delta)
            return J, net.activations[net.sizes.size - 2], 0.0

        return mse
    if _is(objective, HalfMSE):

        def half_mse(objective, out, y, sw, delta, net, params):
            J = kernels.mse_loss_grad(out, y, delta, objective.rows)
            return J, net.activations[net.sizes.size - 2], 0.0

        return half_mse
    code = objective.instance_class.CODE
    _, loss_terms = kernels.LOSS_KERNELS[code]  # as kernels.output_loss_grad
    if _is(objective, HalfLoss):

        def half_loss(objective, out, y, sw, delta, net, params):
            J = loss_terms(out, y, sw, objective.sw_sum, delta, code)
            return J, kernels.IDENTITY, 0.0

        return half_loss

    def canonical(objective, out, y, sw, delta, net, params):
        m = out.shape[0]
        if sw.size > 0:
            sw_sum = 0.0
            for i in range(m):
                sw_sum += sw[i]
        else:
            sw_sum = float(m)
        J = loss_terms(out, y, sw, sw_sum, delta, code)
        decay = 0.0
        if objective.alpha > 0:
            J += 0.5 * objective.alpha * l2_term(params, net.sizes, net.w_off) / sw_sum
            decay = objective.alpha / sw_sum
        # The canonical link makes delta dJ/dz already: no output derivative.
        return J, kernels.IDENTITY, decay

    return canonical


def _diverged(opt, J):
    """True when the chunk must stop before this batch's update (fused SGD only)."""


@mode_switch(_diverged)
def _diverged_impl(opt, J):
    if _is(opt, FusedSGD):
        return lambda opt, J: not math.isfinite(J)
    return lambda opt, J: False


def _layer_backward(opt, delta, a, a_prev, w, b, dw, db, delta_prev, activation, decay, threads):
    """One layer's backward pass: fused SGD update, or its gradient into dw, db."""


@mode_switch(_layer_backward)
def _layer_backward_impl(
    opt, delta, a, a_prev, w, b, dw, db, delta_prev, activation, decay, threads
):
    if _is(opt, FusedSGD):

        def fused(opt, delta, a, a_prev, w, b, dw, db, delta_prev, activation, decay, threads):
            kernels.dense_backward_sgd(
                delta, a, a_prev, w, b, db, delta_prev, opt.lr, activation, threads
            )

        return fused

    def gradient(opt, delta, a, a_prev, w, b, dw, db, delta_prev, activation, decay, threads):
        kernels.dense_backward(delta, a, a_prev, w, dw, db, delta_prev, activation, threads)
        if decay > 0:
            kernels.l2_add(dw, w, decay)

    return gradient


def _update(opt, params, grads, threads):
    """Apply the optimizer to ``params`` from the whole gradient ``grads`` (FusedSGD:
    nothing, the backward pass updated them); Adam counts the step."""


@mode_switch(_update)
def _update_impl(opt, params, grads, threads):
    if _is(opt, FusedSGD) or opt is types.none:
        return lambda opt, params, grads, threads: None

    def update(opt, params, grads, threads):
        apply_update(opt, params, grads, 0, params.size, _count_step(opt), threads)

    return update


def step_count(opt):
    """The optimizer's step count (Adam's ``t``; 0 for the others)."""


@mode_switch(step_count)
def _step_count_impl(opt):
    if _is(opt, Adam):
        return lambda opt: opt.t[0]
    return lambda opt: 0


def _count_step(opt):
    """Adam: count this step (``opt.t``) and return the count; others: 0."""


@mode_switch(_count_step)
def _count_step_impl(opt):
    if _is(opt, Adam):

        def adam(opt):
            opt.t[0] += 1
            return opt.t[0]

        return adam
    return lambda opt: 0


def apply_update(opt, params, grads, lo, hi, step, threads):
    """The optimizer's update of ``params[lo:hi]`` from ``grads[lo:hi]`` (and its state's
    ``[lo:hi]``), in place: the one place an optimizer's update is chosen, for the
    whole vector (:func:`_update`) or a part (``fastbp._rows``). ``step``: Adam's
    step count t >= 1. FusedSGD: plain SGD, ``params -= lr * grads`` (the unsplit
    loop fuses it into the backward pass instead)."""


@mode_switch(apply_update)
def _apply_update_impl(opt, params, grads, lo, hi, step, threads):
    if _is(opt, Adam):

        def adam(opt, params, grads, lo, hi, step, threads):
            lr = adam_rate(opt.lr, opt.beta_1, opt.beta_2, float(step))
            kernels.adam_update(
                params[lo:hi], grads[lo:hi], opt.m[lo:hi], opt.v[lo:hi], lr, opt.beta_1,
                opt.beta_2, opt.epsilon, threads,
            )  # fmt: skip

        return adam
    if _is(opt, Momentum):

        def momentum(opt, params, grads, lo, hi, step, threads):
            kernels.momentum_update(
                params[lo:hi], grads[lo:hi], opt.velocity[lo:hi], opt.lr, opt.momentum,
                opt.nesterov, threads,
            )  # fmt: skip

        return momentum

    def sgd(opt, params, grads, lo, hi, step, threads):  # FusedSGD's plain form
        rate = as_dtype_of(opt.lr, params)
        for i in range(lo, hi):
            params[i] -= rate * grads[i]

    return sgd


def _dropout_rows(dropout, x):
    """Start a forward pass on input rows x: this step's row keys (with dropout)."""


@mode_switch(_dropout_rows)
def _dropout_rows_impl(dropout, x):
    if dropout is types.none:
        return lambda dropout, x: None
    if _is(x, SparseRows):

        def sparse(dropout, x):
            kernels._dropout_rows_sparse(
                x.data, x.indices, x.indptr, x.order, x.start, x.shape[0], dropout.rows,
                dropout.state,
            )  # fmt: skip

        return sparse
    return lambda dropout, x: kernels.dropout_rows(x, dropout.rows, dropout.state)


def _dropout_forward(dropout, a, offset, layer):
    """Apply a fresh mask to hidden layer ``layer``'s activations ``a`` (m, n), in
    place (at ``offset`` in ``acts``), keeping them as they were in ``dropout.before``;
    nothing without dropout."""


@mode_switch(_dropout_forward)
def _dropout_forward_impl(dropout, a, offset, layer):
    if dropout is types.none:
        return lambda dropout, a, offset, layer: None

    def impl(dropout, a, offset, layer):
        if dropout.threshold[layer] != 0:
            m, n = a.shape
            kernels.dropout_forward(
                a,
                _views.block(dropout.before, offset, m, n),
                _views.block(dropout.mask, offset, m, n),
                dropout.rows,
                layer,
                dropout.threshold[layer],
                dropout.scale[layer],
            )

    return impl


def _dropout_backward(dropout, delta, a, offset, layer):
    """After the layer above hidden layer ``layer`` has read its dropped activations
    ``a`` and written ``delta`` (m, n), dJ/d(what it read): make delta dJ/da and put
    back a as before dropout; nothing without dropout."""


@mode_switch(_dropout_backward)
def _dropout_backward_impl(dropout, delta, a, offset, layer):
    if dropout is types.none:
        return lambda dropout, delta, a, offset, layer: None

    def impl(dropout, delta, a, offset, layer):
        if dropout.threshold[layer] != 0:
            m, n = a.shape
            kernels.dropout_backward(
                delta,
                _views.block(dropout.mask, offset, m, n),
                a,
                _views.block(dropout.before, offset, m, n),
            )

    return impl


def _first_forward(x, w, b, out, activation, threads):
    """The first layer's forward pass: dense x, or :class:`SparseRows`."""


@mode_switch(_first_forward)
def _first_forward_impl(x, w, b, out, activation, threads):
    if _is(x, SparseRows):

        def sparse(x, w, b, out, activation, threads):
            kernels.sparse_forward(
                x.data, x.indices, x.indptr, x.order, x.start, w, b, out, activation, threads
            )

        return sparse
    return lambda x, w, b, out, activation, threads: kernels.dense_forward(
        x, w, b, out, activation, threads
    )


def _first_backward(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads):
    """The first layer's backward pass (:func:`_layer_backward` for dense x)."""


@mode_switch(_first_backward)
def _first_backward_impl(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads):
    if not _is(x, SparseRows):

        def dense(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads):
            _layer_backward(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads)

        return dense
    if _is(opt, FusedSGD):

        def fused(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads):
            kernels.sparse_backward_sgd(
                delta, a, x.data, x.indices, x.indptr, x.order, x.start, w, b, db, opt.lr,
                activation, threads,
            )  # fmt: skip

        return fused

    def gradient(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads):
        # The L2 term is part of the kernel: every row of dw gets decay * w.
        kernels.sparse_backward(
            delta, a, x.data, x.indices, x.indptr, x.order, x.start, w, dw, db, decay,
            activation, threads,
        )  # fmt: skip

    return gradient


def _batch(data, epoch, row, m):
    """The batch of m rows from ``row`` of epoch ``epoch``'s order: (x, y, sw)."""


@mode_switch(_batch)
def _batch_impl(data, epoch, row, m):
    if _is(data, SparseData):

        def sparse(data, epoch, row, m):
            order = _epoch_order(data.orders, epoch)
            xin = SparseRows(data.data, data.indices, data.indptr, order, row, (m, data.n_cols))
            yin, swin = _targets(data, order, row, m)
            return xin, yin, swin

        return sparse

    def dense(data, epoch, row, m):
        order = _epoch_order(data.orders, epoch)
        if data.gather:
            gather_rows(data.x, order, row, m, data.xb)
            xin = _views.row_range(data.xb, 0, m)
        else:
            xin = _views.row_range(data.x, row, m)
        yin, swin = _targets(data, order, row, m)
        return xin, yin, swin

    return dense


@jit_inline
def _epoch_order(orders, epoch):
    """Epoch ``epoch``'s row order; an empty order (data order) when there are none."""
    return orders[epoch] if orders.shape[0] > 0 else orders.reshape(-1)[:0]


@jit_inline
def _targets(data, order, row, m):
    """The batch's y and sw: gathered into data.yb, data.swb if data.gather, else slices."""
    y, sw = data.y, data.sw
    if data.gather:
        gather_rows(y, order, row, m, data.yb)
        gather_weights(sw, order, row, m, data.swb)
        yin = _views.row_range(data.yb, 0, m)
        swin = data.swb[:m] if sw.size > 0 else data.swb[:0]
    else:
        yin = _views.row_range(y, row, m)
        swin = sw[row : row + m] if sw.size > 0 else sw[:0]
    return yin, swin


# -- passes --------------------------------------------------------------------------


@jit
def l2_term(params, sizes, w_off):
    """``sum ||W_l||^2`` over the layers (float64)."""
    total = 0.0
    for layer in range(sizes.size - 1):
        total += kernels.sum_squares(
            _views.block(params, w_off[layer], sizes[layer], sizes[layer + 1])
        )
    return total


@jit_inline
def forward_pass(x, net, params, acts, objective, threads, dropout):
    """Fill each layer's slot in ``acts`` for input x (m, n_0), m <= capacity; with
    ``dropout`` (a :class:`Dropout`, else None), the hidden layers' slots end up
    dropped (see :class:`Dropout`)."""
    m = x.shape[0]
    sizes, w_off, b_off, a_off = net.sizes, net.w_off, net.b_off, net.a_off
    w = _views.block(params, w_off[0], sizes[0], sizes[1])
    b = _views.vector(params, b_off[0], sizes[1])
    out = _views.block(acts, a_off[0], m, sizes[1])
    _first_forward(x, w, b, out, net.activations[0], threads)
    _dropout_rows(dropout, x)
    for layer in range(1, sizes.size - 1):
        w = _views.block(params, w_off[layer], sizes[layer], sizes[layer + 1])
        b = _views.vector(params, b_off[layer], sizes[layer + 1])
        a_prev = _views.block(acts, a_off[layer - 1], m, sizes[layer])
        _dropout_forward(dropout, a_prev, a_off[layer - 1], layer - 1)
        out = _views.block(acts, a_off[layer], m, sizes[layer + 1])
        kernels.dense_forward(a_prev, w, b, out, net.activations[layer], threads)
    _output_transform(objective, out)


@jit_inline
def backward_pass(x, y, sw, net, bufs, objective, opt, threads):
    """After :func:`forward_pass` on x: back-propagate and return J.

    y (m, n_L) the targets; sw (m,) sample weights or an empty array. With ``opt``
    None, Momentum or Adam: write dJ/dparams into ``bufs.grads`` (with the L2
    term). With FusedSGD: update ``bufs.params`` as each layer's gradient is
    formed (``grads`` is then scratch space), or nothing at all if J is not finite.
    """
    m = x.shape[0]
    sizes, w_off, b_off, a_off = net.sizes, net.w_off, net.b_off, net.a_off
    params, grads, acts, deltas = bufs.params, bufs.grads, bufs.acts, bufs.deltas
    top = sizes.size - 2
    out = _views.block(acts, a_off[top], m, sizes[top + 1])
    delta_top = _views.block(deltas, a_off[top], m, sizes[top + 1])
    J, top_activation, decay = _output_delta(objective, out, y, sw, delta_top, net, params)
    if _diverged(opt, J):
        return J
    for layer in range(top, -1, -1):
        w = _views.block(params, w_off[layer], sizes[layer], sizes[layer + 1])
        b = _views.vector(params, b_off[layer], sizes[layer + 1])
        dw = _views.block(grads, w_off[layer], sizes[layer], sizes[layer + 1])
        db = _views.vector(grads, b_off[layer], sizes[layer + 1])
        delta = _views.block(deltas, a_off[layer], m, sizes[layer + 1])
        a = _views.block(acts, a_off[layer], m, sizes[layer + 1])
        activation = top_activation if layer == top else net.activations[layer]
        # The first layer's input is x, and it has no layer below to pass a delta to:
        # an empty block (not None, so that every layer's call has the same types
        # and the backward kernel is compiled once).
        if layer > 0:
            a_prev = _views.block(acts, a_off[layer - 1], m, sizes[layer])
            delta_prev = _views.block(deltas, a_off[layer - 1], m, sizes[layer])
            _layer_backward(
                opt, delta, a, a_prev, w, b, dw, db, delta_prev, activation, decay, threads
            )
            _dropout_backward(bufs.dropout, delta_prev, a_prev, a_off[layer - 1], layer - 1)
        else:
            none_below = _views.block(deltas, 0, 0, sizes[0])
            _first_backward(opt, delta, a, x, w, b, dw, db, none_below, activation, decay, threads)
    return J


@jit
def forward(x, net, params, acts, objective, threads):
    """:func:`forward_pass` for Python callers (prediction: no dropout)."""
    forward_pass(x, net, params, acts, objective, threads, None)


@jit
def loss_grad(x, y, sw, net, bufs, objective, threads):
    """J and dJ/dparams (into ``bufs.grads``) on one batch of C-contiguous rows."""
    forward_pass(x, net, bufs.params, bufs.acts, objective, threads, bufs.dropout)
    return backward_pass(x, y, sw, net, bufs, objective, None, threads)


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
def _step(x, y, sw, net, bufs, objective, opt, threads):
    """One batch: forward, backward, update. Returns the batch's J."""
    forward_pass(x, net, bufs.params, bufs.acts, objective, threads, bufs.dropout)
    J = backward_pass(x, y, sw, net, bufs, objective, opt, threads)
    _update(opt, bufs.params, bufs.grads, threads)
    return J


@jit
def train_chunk(data, net, bufs, objective, opt, epoch, row, max_steps, stop, loss_sums, threads):
    """Run at most ``max_steps`` mini-batch steps from (``epoch``, ``row``), then return.

    ``epoch`` indexes ``loss_sums`` (E,) float64, which accumulates each epoch's
    sum of batch J times batch size; ``row`` is the first row of the next batch
    in that epoch's order. ``stop`` (1,) uint8: checked before every step; another
    thread sets it to end the chunk early (Ctrl-C).

    Returns (epoch, row, status): where the next step would start, and status 1
    if it stopped on a non-finite loss (fused SGD only), else 0.
    """
    n = data.y.shape[0]
    steps = 0
    status = 0
    while epoch < loss_sums.size and steps < max_steps and stop[0] == 0:
        m = min(data.batch_size, n - row)
        xin, yin, swin = _batch(data, epoch, row, m)
        loss_value = _step(xin, yin, swin, net, bufs, objective, opt, threads)
        if _diverged(opt, loss_value):
            status = 1
            break
        loss_sums[epoch] += loss_value * m
        steps += 1
        row += m
        if row >= n:
            row = 0
            epoch += 1
    return epoch, row, status
