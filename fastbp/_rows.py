"""Training steps split by rows over two threads: the compiled side.

A step of a small network is a few microseconds of small products: too small for
BLAS or a ``prange`` loop to use a second core (waking a thread pool costs about
as much as the step). Here each step's batch is cut into two halves of rows,
and its work is four tasks in two phases:

phase 0, one task per half of the rows
    the forward and backward pass of those rows: their activations and deltas
    in the half's own buffers, the half's gradient ``a_prev.T @ delta`` in its
    own gradient vector, its share of J;
phase 1, one task per half of the parameters
    the two halves' gradients added (half 0 + half 1, always in that order),
    plus the L2 term, then the optimizer's update of those parameters.

The tasks are tickets taken in order from one atomic counter: ticket g is step
g // 4, phase (g // 2) % 2, half g % 2. A thread runs a ticket once every ticket
of the earlier phases is done. Tickets are taken in order, and a taken ticket is
being run by a thread that is running, so a wait always ends: any number of
threads runs a chunk (one included: it takes every ticket in turn), and there is
no barrier that a missing thread could block. A thread that arrives late finds
the tickets taken and leaves. What a ticket computes does not depend on which
thread runs it, so a fit gives the same bits on one thread as on two.

A waiting thread reads the counter for a while (a task takes microseconds), then
calls ``sched_yield`` between reads: when its partner has lost its core to
another process, it hands its own core over instead of spinning against it. After
longer still, it sleeps between reads (``NAP_MICROSECONDS``), leaving its core idle,
which a yielding thread never does. That measurably helps when the partner waits
behind another thread on its own core (NumPy's OpenBLAS spins its idle threads for
a while after each product); the likely reason is that Linux moves a runnable
thread to another core mostly when that core goes idle.

Stopping: ``stop[0]`` (Ctrl-C) is read by each phase-0 task, and a non-finite J
(fused SGD, as in ``_loop.train_chunk``) is found by the phase-1 tasks; either
lowers ``sync[CUTOFF]`` to that step, and no task of it or a later step changes
anything. Every array is the caller's; nothing is allocated.
"""

from __future__ import annotations

from typing import NamedTuple

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from fastbp import _loop
from fastbp._jit import jit, jit_inline, mode_switch
from fastbp._math import as_dtype_of

# Slots of the int64 ``sync`` array, a cache line (8 int64) apart so that the two
# threads' counters do not share one. SIZE: its length.
CLAIMED, DONE, CUTOFF, STATUS = 0, 8, 16, 24
SIZE = 32
# Slots of the float64 ``shared`` array: each half's J, and sum ||W||^2.
J0, J1, L2 = 0, 1, 2
SHARED = 3
TICKETS = 4  # per step: 2 phases x 2 halves
# Reads of the counter before a waiting thread starts yielding its core. One read
# costs a few nanoseconds (tens when the other core writes the line), so this is
# a few microseconds: about the length of a task of the smallest split networks.
SPINS = 2000
# Reads before a waiting thread sleeps NAP_MICROSECONDS between reads. Measured:
# of 240 digits fits each right after a 300 x 300 NumPy matmul, 14 took over 100 ms
# (up to 145, against medians of 27-34 ms) with yields alone, 2 with naps; the
# ratios of bench/threads.py (fits alone) did not change beyond the noise.
NAP_SPINS = 4 * SPINS
NAP_MICROSECONDS = 50
NO_CUTOFF = (1 << 63) - 1


class Part(NamedTuple):
    """One half's view of the fit: ``data`` (a :class:`fastbp._loop.Data` with its
    own gather buffers) and ``bufs`` (the shared params, its own grads, acts and
    deltas for ``(batch + 1) // 2`` rows, no dropout)."""

    data: _loop.Data
    bufs: _loop.Buffers


# -- atomics ------------------------------------------------------------------------


def _slot_pointer(context, builder, signature, args):
    ary = make_array(signature.args[0])(context, builder, args[0])
    index = context.cast(builder, args[1], signature.args[1], types.intp)
    return builder.gep(ary.data, [index])


def _is_int64_array(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


def _read_modify_write(op: str, doc: str):
    """An intrinsic ``(arr, index, value) -> old arr[index]`` that applies LLVM's
    ``atomicrmw op`` (sequentially consistent) to ``arr[index]``; arr 1-D int64,
    C-contiguous (not checked)."""

    def typer(typingctx, arr, index, value):
        if not _is_int64_array(arr):
            return None

        def codegen(context, builder, signature, args):
            ptr = _slot_pointer(context, builder, signature, args)
            v = context.cast(builder, args[2], signature.args[2], types.int64)
            return builder.atomic_rmw(op, ptr, v, "seq_cst")

        return types.int64(arr, index, value), codegen

    typer.__doc__ = doc
    typer.__name__ = typer.__qualname__ = f"atomic_{op}"
    return intrinsic(typer)


atomic_add = _read_modify_write("add", "``arr[index] += value`` atomically; returns the old value.")
atomic_min = _read_modify_write(
    "min", "``arr[index] = min(arr[index], value)`` atomically; returns the old value."
)


@intrinsic
def atomic_load(typingctx, arr, index):
    """``arr[index]``, read atomically (acquire: later reads see what was written
    before the atomic update that stored this value)."""
    if not _is_int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        ptr = _slot_pointer(context, builder, signature, args)
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, index), codegen


@intrinsic
def yield_cpu(typingctx):
    """``sched_yield()``: let another runnable thread have this core (POSIX)."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def nap(typingctx):
    """``usleep(NAP_MICROSECONDS)``: leave this core idle for a moment (POSIX)."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "usleep")
        builder.call(fn, [ir.Constant(ir.IntType(32), NAP_MICROSECONDS)])
        return context.get_dummy_value()

    return types.none(), codegen


@jit_inline
def _wait_done(sync, target):
    """Return once ``sync[DONE] >= target``: spin, then yield, then sleep between
    reads."""
    spins = 0
    while atomic_load(sync, DONE) < target:
        spins += 1
        if spins > NAP_SPINS:
            nap()
        elif spins > SPINS:
            yield_cpu()


# -- the steps --------------------------------------------------------------------------


@jit_inline
def _position(epoch, row, s, first, per_epoch, batch):
    """(epoch, first row) of step s of a chunk that starts at (epoch, row); ``first``
    steps are left in that epoch, ``per_epoch`` in each later one."""
    if s < first:
        return epoch, row + s * batch
    s -= first
    return epoch + 1 + s // per_epoch, (s % per_epoch) * batch


@jit_inline
def _batch_weight(data, epoch, row, m):
    """Sum of the sample weights of the m rows from ``row`` of the epoch's order (m
    without weights), added in the order of ``_loop``'s output delta."""
    sw = data.sw
    if sw.size == 0:
        return float(m)
    order = _loop._epoch_order(data.orders, epoch)
    total = 0.0
    for i in range(m):
        total += sw[order[row + i] if order.size > 0 else row + i]
    return total


def _half_objective(objective, rows, sw_sum):
    """The objective of a half of a batch of ``rows`` rows (see ``_loop.HalfMSE``)."""


@mode_switch(_half_objective)
def _half_objective_impl(objective, rows, sw_sum):
    if objective is types.none:
        return lambda objective, rows, sw_sum: _loop.HalfMSE(rows)
    half = _loop.HALF_LOSSES[objective.instance_class.CODE]
    return lambda objective, rows, sw_sum: half(sw_sum)


def _alpha(objective):
    """The L2 penalty alpha (0 for fastbp.Network)."""


@mode_switch(_alpha)
def _alpha_impl(objective):
    if objective is types.none:
        return lambda objective: 0.0
    return lambda objective: objective.alpha


@jit_inline
def _rows_pass(part, net, objective, epoch, row, m, half, shared):
    """Phase 0: forward and backward pass of this half's rows of the batch of m rows
    from ``row`` of ``epoch``: its gradient into ``part.bufs.grads``, its J into
    ``shared[half]`` (and half 0: sum ||W||^2 into ``shared[L2]``)."""
    split = (m + 1) // 2
    lo = 0 if half == 0 else split
    k = split - lo if half == 0 else m - split
    bufs = part.bufs
    if half == 0 and _alpha(objective) > 0:
        shared[L2] = _loop.l2_term(bufs.params, net.sizes, net.w_off)
    if k == 0:  # a batch of one row: nothing in the second half
        bufs.grads[:] = 0
        shared[half] = 0.0
        return
    whole = _half_objective(objective, m, _batch_weight(part.data, epoch, row, m))
    xin, yin, swin = _loop._batch(part.data, epoch, row + lo, k)
    _loop.forward_pass(xin, net, bufs.params, bufs.acts, whole, None, None)
    shared[half] = _loop.backward_pass(xin, yin, swin, net, bufs, whole, None, None)


@jit_inline
def _params_pass(parts, net, objective, opt, epoch, row, m, half, step, shared, sync, loss_sums):
    """Phase 1: add the halves' gradients and update this half of the parameters.
    Half 0 adds the step's J times m to ``loss_sums[epoch]``. Returns False when J is
    not finite and the optimizer stops there (fused SGD): nothing is updated."""
    first = parts[0]
    params, grads, other = first.bufs.params, first.bufs.grads, parts[1].bufs.grads
    J = shared[J0] + shared[J1]
    alpha = _alpha(objective)
    decay = 0.0
    if alpha > 0:
        sw_sum = _batch_weight(first.data, epoch, row, m)
        J += 0.5 * alpha * shared[L2] / sw_sum
        decay = alpha / sw_sum
    if _loop._diverged(opt, J):
        return False
    n = params.size
    middle = n // 2 // 8 * 8  # a multiple of 8 elements: the halves share no cache line
    lo = 0 if half == 0 else middle
    hi = middle if half == 0 else n
    for i in range(lo, hi):
        grads[i] += other[i]
    if decay > 0:
        scale = as_dtype_of(decay, grads)
        sizes, w_off = net.sizes, net.w_off
        for layer in range(sizes.size - 1):
            w0 = max(lo, w_off[layer])
            w1 = min(hi, w_off[layer] + sizes[layer] * sizes[layer + 1])
            for i in range(w0, w1):
                grads[i] += scale * params[i]
    _loop.apply_update(opt, params, grads, lo, hi, step, None)
    if half == 0:
        loss_sums[epoch] += J * m
    return True


@jit
def train_part(parts, net, objective, opt, epoch, row, max_steps, stop, loss_sums, sync, shared):
    """Run tickets of a chunk of at most ``max_steps`` split steps from (epoch, row)
    until none is left (see the module docstring); every thread of the chunk calls
    it with the same arguments, ``sync`` (SIZE,) int64 zeroed with
    ``sync[CUTOFF] = NO_CUTOFF``, ``shared`` (SHARED,) float64.

    parts: a pair of :class:`Part`; net: the layout for ``(batch + 1) // 2`` rows;
    objective, opt, loss_sums, stop: as ``_loop.train_chunk``. The optimizer's step
    count (``_loop.step_count``: Adam's ``opt.t``) is read, never written: the
    caller adds the steps done.

    Returns (steps, epoch, row, status) once every ticket is done: the steps done,
    where the next would start, and status 1 if J was not finite (fused SGD).
    """
    data = parts[0].data
    n = data.y.shape[0]
    batch = data.batch_size
    per_epoch = (n + batch - 1) // batch
    first = (n - row + batch - 1) // batch
    left = first + (loss_sums.size - epoch - 1) * per_epoch if epoch < loss_sums.size else 0
    n_steps = min(max_steps, left)
    t0 = _loop.step_count(opt)
    total = n_steps * TICKETS
    while True:
        ticket = atomic_add(sync, CLAIMED, 1)
        if ticket >= total:
            break
        s = ticket // TICKETS
        phase = ticket // 2 % 2
        half = ticket % 2
        _wait_done(sync, ticket - half)
        if s < atomic_load(sync, CUTOFF):
            ep, r = _position(epoch, row, s, first, per_epoch, batch)
            m = min(batch, n - r)
            if phase == 0:
                if stop[0] != 0:
                    atomic_min(sync, CUTOFF, s)
                else:
                    _rows_pass(parts[half], net, objective, ep, r, m, half, shared)
            elif not _params_pass(
                parts, net, objective, opt, ep, r, m, half, t0 + s + 1, shared, sync, loss_sums
            ):
                sync[STATUS] = 1
                atomic_min(sync, CUTOFF, s)
        atomic_add(sync, DONE, 1)
    _wait_done(sync, total)
    steps = min(n_steps, atomic_load(sync, CUTOFF))
    epoch, row = _position(epoch, row, steps, first, per_epoch, batch)
    return steps, epoch, row, sync[STATUS]
