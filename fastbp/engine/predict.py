"""Chunked prediction: the network's outputs for any number of rows, any input form."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from fastbp import _loop
from fastbp._threads import compute_threads
from fastbp.engine.driver import threads_for
from fastbp.engine.layout import Layout
from fastbp.engine.sparse import check_csr, is_sparse, rows

# Rows per forward pass: bounds the scratch memory of predict and loss.
EVAL_ROWS = 4096


def kernel_ready(x: Any, dtype: np.dtype) -> bool:
    """Whether the kernels take x as it is: a writeable C-contiguous ndarray of dtype.

    Other inputs are copied a chunk of rows at a time, so that each kernel is
    compiled for one array type per dtype.
    """
    return (
        isinstance(x, np.ndarray)
        and x.dtype == dtype
        and x.flags.c_contiguous
        and x.flags.writeable
    )


def objective_of(layout: Layout) -> _loop.Objective | None:
    """The compiled loop's objective argument for predicting (no penalty)."""
    return layout.predict_objective


def iter_forward(
    layout: Layout,
    params: np.ndarray,
    x: Any,
    threads_set: bool = False,
    n_threads: int | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, outputs of rows start:stop) over consecutive chunks of x.

    x (n, n_0): an ndarray of any dtype and layout, or a SciPy sparse matrix;
    whatever is not :func:`kernel_ready` is converted one chunk at a time, never as
    a whole, so predicting on data larger than memory (a memmap) needs no copy of
    it. The yielded view is overwritten by the next chunk. ``threads_set``: the
    caller is inside :func:`fastbp._threads.compute_threads` already;
    ``n_threads``: a thread count for this call, None for the budget.
    """
    dtype = params.dtype
    n = x.shape[0]
    if n == 0:
        return
    capacity = min(n, EVAL_ROWS)
    acts = np.empty(capacity * layout.n_units, dtype=dtype)
    net = layout.net(capacity)
    top = int(net.a_off[-1])
    k = int(layout.sizes[-1])
    objective = objective_of(layout)
    sparse = is_sparse(x)
    if sparse:  # rows read in place (CSR in dtype: no copy; see fastbp.engine.sparse)
        x = check_csr("X", x, dtype)
    direct = sparse or kernel_ready(x, dtype)
    xbuf = None if direct else np.empty((capacity, x.shape[1]), dtype=dtype)
    threads = threads_for(layout, capacity, n_threads)
    limits = (
        contextlib.nullcontext()
        if threads_set
        else compute_threads(layout.sizes, capacity, n_threads)
    )
    with limits:
        for start in range(0, n, capacity):
            m = min(capacity, n - start)
            if sparse:
                xin = rows(x, start, m)
            elif direct:
                xin = x[start : start + m]
            else:
                chunk = x[start : start + m]
                xin = xbuf[:m]
                np.copyto(xin, chunk, casting="unsafe")
            _loop.forward(xin, net, params, acts, objective, threads)
            yield start, start + m, acts[top : top + m * k].reshape(m, k)


def forward(
    layout: Layout,
    params: np.ndarray,
    x: Any,
    threads_set: bool = False,
    n_threads: int | None = None,
) -> np.ndarray:
    """The output layer for x: ndarray (n, n_L) in params' dtype (see :func:`iter_forward`)."""
    n = x.shape[0]
    if 0 < n <= EVAL_ROWS and kernel_ready(x, params.dtype) and layout.serial(n):
        # The serving path (a few rows): one compiled call. No thread limits to set
        # and no threaded kernel to pick: every product runs on one thread anyway.
        acts = np.empty(n * layout.n_units, dtype=params.dtype)
        net = layout.net(n)
        _loop.forward(x, net, params, acts, layout.predict_objective, None)
        top = int(net.a_off[-1])
        return acts[top : top + n * int(layout.sizes[-1])].reshape(n, -1)
    out = np.empty((n, int(layout.sizes[-1])), dtype=params.dtype)
    for start, stop, a in iter_forward(layout, params, x, threads_set, n_threads):
        out[start:stop] = a
    return out
