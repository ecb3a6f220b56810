"""The chunked driver: every front end's training runs through :class:`Trainer`.

Compiled code cannot be interrupted, report progress or call back into Python,
so training runs in compiled chunks of about :data:`CHUNK_SECONDS`, and between
chunks the driver handles Ctrl-C, divergence, progress bars and callbacks. It
also owns the fit's buffers (made once, reused by every chunk), the thread
limits (:func:`fastbp._threads.compute_threads` around the whole run) and the
one snapshot/rollback mechanism (:class:`Snapshot`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fastbp import _loop
from fastbp._interrupt import watch as watch_sigint
from fastbp._jit import PARALLEL_GEMM
from fastbp._threads import Threads, compute_threads, kernel_threads
from fastbp._validation import all_finite
from fastbp.engine.dropout import Dropout
from fastbp.engine.layout import Layout
from fastbp.engine.optimizers import Optimizer
from fastbp.engine.rows import RowSplit, splits
from fastbp.engine.sparse import is_sparse

# A compiled chunk of training runs about this long before returning to Python.
CHUNK_SECONDS = 0.1
# How much longer than the previous one a chunk may be (its target comes from the
# previous chunk's speed, which a burst of load elsewhere can distort).
CHUNK_GROWTH = 1000
# Most shuffled row orders generated at once (int64 entries).
ORDER_BUDGET = 1 << 20


def threads_for(layout: Layout, rows: int, n_threads: int | None = None) -> int | None:
    """The kernels' ``threads`` argument for batches of ``rows`` (one picker for all);
    ``n_threads``: a per-call thread count, None for the budget."""
    return kernel_threads(layout.sizes, rows, PARALLEL_GEMM, n_threads)


class Diverged(Exception):
    """A chunk hit a non-finite loss or weights; its starting state is restored."""


class Snapshot:
    """A copy of the parameters and optimizer state, and a way back to it.

    One copy (a model with a wide first layer, sparse input's, is mostly its
    parameters and optimizer state: a second copy would cost as much again). It is
    unpublished while it is written, so a KeyboardInterrupt landing in the middle of
    a save leaves no snapshot rather than a torn one; the state being saved is
    then the current one, which a fit interrupted there keeps anyway. ``extra``
    carries whatever else a front end wants restored with it (its bookkeeping).
    """

    def __init__(self, params: np.ndarray, opt: Optimizer) -> None:
        self.params, self.opt = params, opt
        self.buffers = (np.empty_like(params), np.empty_like(opt.state))
        self.saved: tuple | None = None

    def save(self, extra: Any = None) -> None:
        params, state = self.buffers
        self.saved = None
        np.copyto(params, self.params)
        np.copyto(state, self.opt.state)
        self.saved = (params, state, self.opt.t, self.opt.learning_rate, extra)

    def save_if_finite(self, extra: Any = None) -> None:
        if all_finite(self.params):
            self.save(extra)

    def restore(self) -> Any:
        """Put parameters and optimizer back; return the saved ``extra`` (None if
        nothing was ever saved, and then nothing changes)."""
        if self.saved is None:
            return None
        params, state, t, lr, extra = self.saved
        np.copyto(self.params, params)
        np.copyto(self.opt.state, state)
        self.opt.t, self.opt.learning_rate = t, lr
        return extra


class Trainer:
    """One fit's buffers, and the loop that feeds the compiled chunks.

    Parameters
    ----------
    layout : Layout
    params : ndarray (n_params,)
        Trained in place.
    x, y : ndarray (n, n_0), (n, n_L)
        In params' dtype, any layout (gathered batch by batch when not C-contiguous);
        x may also be a CSR matrix from :func:`fastbp.engine.sparse.check_csr` (its
        rows are read in place, never copied).
    sw : ndarray (n,) or empty
        Sample weights.
    batch : int
        Rows per step (a partial last batch is its own size).
    opt : Optimizer
    alpha : float
        L2 penalty (with an objective, ``layout.loss`` not None).
    shuffle : callable(orders) or None
        Fills each row of the int64 array ``orders`` (count, n) with an epoch's row
        order; None for data order.
    stop_on_divergence : bool
        After a chunk with a non-finite loss (fused SGD stops there) or weights,
        restore the chunk's starting state and raise :class:`Diverged`.
    epochs_ahead : callable() -> int, or None
        For a caller that acts (and may stop) between epochs: called before each run
        of epochs, it says how many may run before the caller must act (at least
        1); no row order is drawn beyond them. A run of several epochs is one
        compiled chunk, and is yielded only if it ends with finite weights; else it
        runs again from its start, one epoch per chunk, so that the caller still
        sees each epoch's weights up to the first non-finite ones. None: any number
        of epochs per chunk, each yielded when it ends.
    n_threads : int or None
        Threads for this fit; None for the budget (:func:`fastbp.thread_info`).
    dropout : Dropout or None
        Dropout on the hidden layers while training (its masks' buffers are made
        here, once; its generator's counter advances with every step).
    """

    def __init__(
        self,
        layout: Layout,
        params: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        batch: int,
        opt: Optimizer,
        alpha: float = 0.0,
        shuffle: Callable[[np.ndarray], None] | None = None,
        stop_on_divergence: bool = False,
        epochs_ahead: Callable[[], int] | None = None,
        n_threads: int | None = None,
        dropout: Dropout | None = None,
    ) -> None:
        dtype = params.dtype
        n = x.shape[0]
        self.layout, self.params, self.opt, self.batch = layout, params, opt, batch
        self.n = n
        self.shuffle = shuffle
        self.epochs_ahead = epochs_ahead
        self.objective = None if layout.loss is None else _loop.objective(layout.loss, alpha)
        # CSR x (checked by the front end: fastbp.engine.sparse.check_csr) is never
        # copied: batches read its rows where they are; only y and sw are gathered.
        self.sparse = is_sparse(x)
        x_contiguous = self.sparse or x.flags.c_contiguous
        gather = shuffle is not None or not (x_contiguous and y.flags.c_contiguous)
        rows = batch if gather else 0
        acts = np.empty(batch * layout.n_units, dtype=dtype)
        masks = None if dropout is None else dropout.bundle(layout, batch, dtype)
        self.bufs = _loop.Buffers(params, np.zeros_like(params), acts, np.empty_like(acts), masks)
        self.net = layout.net(batch)
        self.x, self.y, self.sw, self.gather = x, y, sw, gather
        self.xb = np.empty((0 if self.sparse else rows, x.shape[1]), dtype=dtype)
        self.yb = np.empty((rows, y.shape[1]), dtype=dtype)
        self.swb = np.empty(rows if sw.size else 0, dtype=dtype)
        self.n_threads = n_threads
        self.dropout = dropout
        self.threads = threads_for(layout, batch, n_threads)
        # Small networks: each step split by rows over two threads (the same
        # results on one thread; see fastbp.engine.rows).
        self.rows: RowSplit | None = None
        if splits(layout, batch, self.sparse, dropout is not None, n_threads):
            self.rows = RowSplit(layout, self.bufs, batch, rows, x.shape[1], y.shape[1], sw.size)
        self.two_threads = False
        self.stop = np.zeros(1, dtype=np.uint8)
        self.snapshot = Snapshot(params, opt) if stop_on_divergence else None
        self.replay: Snapshot | None = None  # the start of a run of epochs (epochs_ahead)
        # Row orders are drawn ahead for several epochs at once.
        self.block = 0 if shuffle is None else max(1, ORDER_BUDGET // n)
        self.orders = np.empty((self.block, n), dtype=np.int64)
        self.no_order = np.empty((0, n), dtype=np.int64)
        self.max_steps = 1  # the first chunk measures the speed of a step

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // self.batch)

    def run(self, epochs: int) -> Iterator[tuple[int, np.ndarray]]:
        """Train ``epochs`` epochs; yield (count, mean loss of each) for each run of
        completed epochs, in order, with the thread limits in force (also while
        the caller handles a yield)."""
        with (
            self._compute_threads() as threads,
            contextlib.ExitStack() as stack,
        ):
            try:
                yield from self._run(epochs, stack, threads)
            finally:
                if self.rows is not None:
                    self.rows.close()

    def _compute_threads(self) -> contextlib.AbstractContextManager[Threads]:
        split = self.rows is not None
        return compute_threads(self.layout.sizes, self.batch, self.n_threads, rows_split=split)

    def _run(
        self, epochs: int, stack: contextlib.ExitStack, threads: Threads
    ) -> Iterator[tuple[int, np.ndarray]]:
        done = 0
        self.watching = False
        while done < epochs:
            count = epochs - done
            if self.epochs_ahead is not None:
                # Several epochs only if they fit in one chunk (below).
                per_chunk = max(1, self.max_steps // self.steps_per_epoch)
                count = min(count, max(1, int(self.epochs_ahead())), per_chunk)
            if self.shuffle is not None:
                count = min(count, self.block)
                orders = self.orders[:count]
                self.shuffle(orders)
            else:
                orders = self.no_order
            if self.epochs_ahead is None or count == 1:
                yield from self._epochs(orders, count, epochs - done, stack, threads)
            else:
                yield from self._run_checked(orders, count, epochs - done, stack, threads)
            done += count

    def _run_checked(
        self, orders: np.ndarray, count: int, left: int, stack: contextlib.ExitStack,
        threads: Threads,
    ) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
        """``count`` epochs in one chunk, yielded if the weights end finite; else
        run again from their start one epoch per chunk (the same orders, optimizer
        state and dropout draws: the same steps)."""
        if self.replay is None:
            self.replay = Snapshot(self.params, self.opt)
        dropout = None if self.dropout is None else self.dropout.state
        self.replay.save(None if dropout is None else dropout.copy())
        held = list(self._epochs(orders, count, left, stack, threads))
        if all_finite(self.params):
            yield from held
            return
        saved_dropout = self.replay.restore()
        if dropout is not None:
            np.copyto(dropout, saved_dropout)
        for e in range(count):
            one = orders[e : e + 1] if self.shuffle is not None else orders
            yield from self._epochs(one, 1, left - e, stack, threads)

    def _epochs(
        self, orders: np.ndarray, count: int, left: int, stack: contextlib.ExitStack,
        threads: Threads,
    ) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
        """Run ``count`` epochs in ``orders`` (``left`` epochs left in the fit) in
        chunks of about CHUNK_SECONDS; yield (count, mean losses) as epochs end."""
        n, batch = self.n, self.batch
        data = self._data(orders)
        loss_sums = np.zeros(count)
        epoch = row = reported = 0
        while epoch < count:
            # (no more steps than these epochs have left: elapsed / steps is a step's time)
            steps = min(self.max_steps, (count - epoch) * self.steps_per_epoch - -(-row // batch))
            self.two_threads = threads.n >= 2
            epoch, row, elapsed = self._chunk(data, epoch, row, steps, loss_sums)
            threads.recheck()  # follow the machine's load (every 0.5 s at most)
            if epoch > reported:
                yield epoch - reported, loss_sums[reported:epoch] / n
                reported = epoch
            # Aim each chunk at CHUNK_SECONDS. The first chunk is one step; its
            # time includes the call's fixed cost, so it overestimates a step and
            # the next chunk comes out shorter than aimed, never longer.
            seconds_per_step = max(elapsed, 1e-9) / steps
            target = int(CHUNK_SECONDS / seconds_per_step)
            self.max_steps = max(1, min(self.max_steps * CHUNK_GROWTH, target))
            # Steps still to run: if they take longer than one chunk, let Ctrl-C
            # cut chunks short (a watcher thread costs 0.14 ms to start and stop).
            steps_left = (left - epoch) * self.steps_per_epoch - -(-row // batch)
            if not self.watching and steps_left * seconds_per_step > CHUNK_SECONDS:
                stack.enter_context(watch_sigint(self.stop))
                self.watching = True

    def _data(self, orders: np.ndarray) -> _loop.Data | _loop.SparseData:
        """The compiled loop's data bundle, walking the rows in ``orders``."""
        x, batch = self.x, self.batch
        if self.sparse:
            return _loop.SparseData(
                x.data, x.indices, x.indptr, x.shape[1], self.y, self.sw, orders, batch,
                self.gather, self.yb, self.swb,
            )  # fmt: skip
        return _loop.Data(
            x, self.y, self.sw, orders, batch, self.gather, self.xb, self.yb, self.swb
        )

    def steps(self, count: int, row: int = 0) -> tuple[int, float]:
        """Run exactly ``count`` steps from ``row`` of the first pass over the rows,
        wrapping around (a new order for each pass when shuffling), in one
        compiled call. Returns (the next step's row, the mean loss of the steps)."""
        passes = -(-(row + count * self.batch) // self.n) + 1
        orders = self.no_order
        if self.shuffle is not None:
            orders = np.empty((passes, self.n), dtype=np.int64)
            self.shuffle(orders)
        data = self._data(orders)
        loss_sums = np.zeros(passes)
        with self._compute_threads() as threads:
            self.two_threads = threads.n >= 2
            try:
                epoch, end, _ = self._chunk(data, 0, row, count, loss_sums)
            finally:
                if self.rows is not None:
                    self.rows.close()
        rows = epoch * self.n + end - row
        return end, float(loss_sums.sum()) / max(rows, 1)

    def _chunk(
        self, data: _loop.Data, epoch: int, row: int, steps: int, loss_sums: np.ndarray
    ) -> tuple[int, int, float]:
        """One compiled chunk; returns (epoch, row, seconds)."""
        snapshot = self.snapshot
        if snapshot is not None:
            snapshot.save()
        bundle = self.opt.bundle()
        args = (
            data,
            self.net,
            self.bufs,
            self.objective,
            bundle,
            epoch,
            row,
            steps,
            self.stop,
            loss_sums,
            self.threads,
        )
        t = time.perf_counter()
        try:
            if self.rows is not None:
                epoch, row, status = self.rows.chunk(
                    data, self.objective, bundle, epoch, row, steps, self.stop, loss_sums,
                    self.two_threads,
                )  # fmt: skip
            else:
                epoch, row, status = _loop.train_chunk(*args)
            elapsed = time.perf_counter() - t
            self.opt.after_steps(bundle)
            diverged = snapshot is not None and (status or not all_finite(self.params))
        except BaseException:  # Ctrl-C landing between a chunk and its check
            self.opt.after_steps(bundle)
            if snapshot is not None and not all_finite(self.params):
                snapshot.restore()
            raise
        if diverged:
            snapshot.restore()
            raise Diverged
        return epoch, row, elapsed
