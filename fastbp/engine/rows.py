"""Training steps split by rows over two threads: when, and the second thread.

Which fits split (:func:`splits`) depends on the network and the batch only,
never on the thread count: a split fit gives the same bits on one thread as on
two, so whether the second thread helps (:class:`RowSplit`, chunk by chunk, from
the thread budget) never changes a result. The compiled side, and how the two
threads share a step without a barrier, is :mod:`fastbp._rows`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from fastbp import _loop, _rows
from fastbp._jit import PARALLEL_GEMM
from fastbp._threads import get_num_threads, get_reproducible
from fastbp.engine.layout import Layout

# Multiply-adds of a step's forward pass (rows x sum of n_in x n_out) from which a
# split pays. Measured here (2 threads against the unsplit loop on 1, the
# estimators' adam): 0.84x at 470 K ((32,) hidden units on digits, batch 200),
# 0.6-0.75x at 950 K ((64,)); but a [64, 32, 10] Network at batch 96 (230 K)
# gains little (0.76x) and its split steps cost 1.22x on one thread, and at batch
# 32 (76 K) nothing: its halves' products are too small for BLAS to run them well.
MIN_WORK = 400_000
# Fewest rows in a half-batch.
MIN_ROWS = 4


def splits(
    layout: Layout, batch: int, sparse: bool, dropout: bool, n_threads: int | None = None
) -> bool:
    """Whether a fit's steps are split by rows: dense input without dropout, enough
    work per step, and no product big enough to be split by columns instead
    (``fastbp._jit.PARALLEL_GEMM``: there BLAS's or fastbp's column blocks use
    the threads); and two threads at the start of the fit (``n_threads``, else the
    budget), or reproducible mode, where the split is made whatever the thread
    count (the results are then the same on one thread as on two)."""
    if sparse or dropout or batch < 2 * MIN_ROWS:
        return False
    if _forced:
        return True
    if batch * layout.row_work < MIN_WORK or layout.largest_product(batch) >= PARALLEL_GEMM:
        return False
    return get_reproducible() or get_num_threads(n_threads) >= 2


_forced = False


@contextlib.contextmanager
def forced() -> Iterator[None]:
    """Split every fit that can be split (dense, no dropout, batch >= 8), whatever its
    size or the thread count, during the body: what ``fastbp compile`` uses to
    reach the split variants with tiny fits. Not thread-safe."""
    global _forced
    previous, _forced = _forced, True
    try:
        yield
    finally:
        _forced = previous


class _Helper:
    """A thread that runs the second half of split chunks: it sleeps on its queue
    between chunks, and says when it is done with one (:meth:`wait`)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="fastbp-rows", daemon=True)
        self.thread.start()

    def submit(self, args: tuple) -> None:
        self.jobs.put(args)

    def _serve(self) -> None:
        while True:
            args = self.jobs.get()
            try:
                _rows.train_part(*args)
            finally:
                self.done.put(None)

    def wait(self) -> None:
        """Until the submitted chunk is done (at once if the calling thread already
        did every ticket: the helper then finds them taken). Not cut short by
        Ctrl-C: the helper must be out of the chunk's buffers before they are
        reused; the interrupt is raised after."""
        interrupted: BaseException | None = None
        while True:
            try:
                self.done.get()
                break
            except BaseException as exc:  # KeyboardInterrupt: wait, then re-raise
                interrupted = exc
        if interrupted is not None:
            raise interrupted


# Idle helper threads, shared by the fits of the process (one per fit running).
_idle: list[_Helper] = []
_idle_lock = threading.Lock()


def _take_helper() -> _Helper:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return _Helper()


def _give_back(helper: _Helper) -> None:
    with _idle_lock:
        _idle.append(helper)


def _forget_helpers() -> None:
    """In a forked child: the helpers' threads did not survive the fork."""
    global _idle_lock
    _idle.clear()
    _idle_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


class RowSplit:
    """A fit's buffers for split steps, and :meth:`chunk` to run one chunk.

    Each half of the rows gets its own gradient vector (half 0's is the fit's
    ``bufs.grads``, which ends up holding the whole gradient), activations and
    deltas for ``(batch + 1) // 2`` rows, and gather buffers; made once per fit.
    """

    def __init__(
        self, layout: Layout, bufs: _loop.Buffers, batch: int, gather_rows: int, x_cols: int,
        y_cols: int, sw_size: int,
    ) -> None:  # fmt: skip
        dtype = bufs.params.dtype
        half = (batch + 1) // 2
        self.net = layout.net(half)
        rows = half if gather_rows else 0
        self.parts_bufs = []
        self.gather = []
        for index in range(2):
            grads = bufs.grads if index == 0 else np.zeros_like(bufs.grads)
            acts = np.empty(half * layout.n_units, dtype=dtype)
            self.parts_bufs.append(_loop.Buffers(bufs.params, grads, acts, np.empty_like(acts)))
            self.gather.append(
                {
                    "xb": np.empty((rows, x_cols), dtype=dtype),
                    "yb": np.empty((rows, y_cols), dtype=dtype),
                    "swb": np.empty(rows if sw_size else 0, dtype=dtype),
                }
            )
        self.shared = np.zeros(_rows.SHARED)
        self.sync = np.zeros(_rows.SIZE, dtype=np.int64)
        self.helper: _Helper | None = None
        self.compiled = False  # whether a chunk ran: train_part is compiled for this fit

    def close(self) -> None:
        """Give the helper thread back to the process's idle ones (end of the fit)."""
        if self.helper is not None:
            _give_back(self.helper)
            self.helper = None

    def chunk(
        self, data: _loop.Data, objective: Any, bundle: Any, epoch: int, row: int, steps: int,
        stop: np.ndarray, loss_sums: np.ndarray, two_threads: bool,
    ) -> tuple[int, int, int]:  # fmt: skip
        """Run at most ``steps`` split steps from (epoch, row), on two threads if
        ``two_threads``; returns (epoch, row, status) as ``_loop.train_chunk``."""
        parts = tuple(
            _rows.Part(data._replace(**gather), bufs)
            for gather, bufs in zip(self.gather, self.parts_bufs, strict=True)
        )
        sync = self.sync  # free: the helper of the last chunk was waited for
        sync[:] = 0
        sync[_rows.CUTOFF] = _rows.NO_CUTOFF
        args = (parts, self.net, objective, bundle, epoch, row, steps, stop, loss_sums, sync,
                self.shared)  # fmt: skip
        # The first chunk runs on this thread alone, so that a variant not yet
        # compiled (or loaded from the cache) is compiled here, never on the helper.
        if two_threads and self.compiled and self.helper is None:
            self.helper = _take_helper()
        helper = self.helper if two_threads and self.compiled else None
        if helper is not None:
            helper.submit(args)
        try:
            done, epoch, row, status = _rows.train_part(*args)
        finally:
            if helper is not None:
                helper.wait()
        self.compiled = True
        if isinstance(bundle, _loop.Adam):  # the step count of _loop.step_count
            bundle.t[0] += done
        return epoch, row, int(status)
