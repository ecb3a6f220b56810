"""The block-level API: what any process can compute on any block of rows.

A block is (x, y, sample weights) in the parameters' dtype; the parameters and the
optimizer state come in and go out as plain arrays. These are the pieces a
distributed or out-of-core front end composes: each worker evaluates or trains
on the rows it holds, and only parameters, optimizer state and scalars travel.
"""

from __future__ import annotations

import copy

import numpy as np

from fastbp import _loop
from fastbp._threads import compute_threads
from fastbp.engine import sparse
from fastbp.engine.driver import Trainer, threads_for
from fastbp.engine.layout import Layout
from fastbp.engine.optimizers import Optimizer


class Gradient:
    """Loss and gradient of one block at any parameter vector, buffers made once.

    Parameters
    ----------
    layout : Layout
    x, y : ndarray (n, n_0), (n, n_L), C-contiguous, one float dtype (x may be a
        CSR matrix from :func:`fastbp.engine.sparse.check_csr`)
    sw : ndarray (n,) or empty
        Sample weights.
    alpha : float
        L2 penalty (objectives only; ``layout.loss`` None has none).
    n_threads : int or None
        Threads; None for the budget.
    """

    def __init__(
        self,
        layout: Layout,
        x: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        alpha: float = 0.0,
        n_threads: int | None = None,
    ) -> None:
        dtype = x.dtype
        n = x.shape[0]
        # CSR x (fastbp.engine.sparse.check_csr): all its rows, read in place.
        xin = sparse.rows(x, 0, n) if sparse.is_sparse(x) else x
        self.layout, self.x, self.y, self.sw = layout, xin, y, sw
        self.params = np.empty(layout.n_params, dtype=dtype)
        acts = np.empty(n * layout.n_units, dtype=dtype)
        self.bufs = _loop.Buffers(
            self.params, np.zeros(layout.n_params, dtype=dtype), acts, np.empty_like(acts)
        )
        self.net = layout.net(n)
        self.objective = None if layout.loss is None else _loop.objective(layout.loss, alpha)
        self.threads = threads_for(layout, n, n_threads)

    def __call__(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """(J, dJ/dparams) at ``params``; the gradient is a view, overwritten by the
        next call. Call inside :func:`fastbp._threads.compute_threads`."""
        with np.errstate(over="ignore"):  # float32 from float64: beyond range is inf
            self.params[:] = params
        value = _loop.loss_grad(
            self.x, self.y, self.sw, self.net, self.bufs, self.objective, self.threads
        )
        return value, self.bufs.grads


def loss_and_gradient(
    layout: Layout,
    params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray | None = None,
    alpha: float = 0.0,
) -> tuple[float, np.ndarray]:
    """J and a new array dJ/dparams of the block (x, y) at ``params``.

    J is the block's mean loss (weighted by ``sw`` when given) plus the L2 term;
    to combine blocks, weight each by its row count (or weight sum).
    """
    sw = np.empty(0, dtype=x.dtype) if sw is None else sw
    gradient = Gradient(layout, x, y, sw, alpha)
    with compute_threads(layout.sizes, x.shape[0]):
        value, grads = gradient(params)
    return value, grads.copy()


def run_steps(
    layout: Layout,
    params: np.ndarray,
    opt: Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray | None = None,
    *,
    steps: int,
    batch_size: int,
    alpha: float = 0.0,
    row: int = 0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, Optimizer, float, int]:
    """Run ``steps`` optimizer steps on the block from ``params`` and ``opt``'s state.

    Neither argument is modified: returns (new params, new optimizer, mean loss of
    the steps' batches, the row where the next step would start). Batches walk
    the block from ``row``, wrapping around at its end: in data order, or with
    ``rng`` in a new random order for each pass (``rng.permutation``'s draws).
    """
    params = params.copy()
    opt = copy.deepcopy(opt)
    sw = np.empty(0, dtype=x.dtype) if sw is None else sw
    batch = min(batch_size, x.shape[0])
    shuffle = None if rng is None else _shuffler(rng)
    trainer = Trainer(layout, params, x, y, sw, batch, opt, alpha, shuffle=shuffle)
    row, loss = trainer.steps(steps, row)
    return params, opt, loss, row


def _shuffler(rng: np.random.Generator):
    def shuffle(orders: np.ndarray) -> None:
        for order in orders:
            order[:] = np.arange(order.size)
            rng.shuffle(order)

    return shuffle
