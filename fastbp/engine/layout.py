"""Where a network's weights, biases and activations sit in the flat buffers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastbp import _loop
from fastbp._jit import BLAS_SERIAL_GEMM

# The two packings in use. "interleaved": W_0, b_0, W_1, b_1... (fastbp.Network's
# model files). "packed": every W_l first, then every b_l: the order in which
# scikit-learn packs its parameters for L-BFGS, which the estimators keep so that
# SciPy sees the same vector.
PACKINGS = ("interleaved", "packed")


class Layout:
    """A network's shape and where each of its parts lives in the flat buffers.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, inputs first (L + 1 entries for L layers).
    activations : sequence of int
        Activation code of each of the L layers (``kernels.LOGISTIC``...); with a
        ``loss``, the last is its canonical output's code.
    loss : int or None
        None for fastbp.Network's mean squared error, else a ``kernels.LOSS_*`` code.
    packing : {"interleaved", "packed"}
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[int],
        loss: int | None = None,
        packing: str = "interleaved",
    ) -> None:
        if packing not in PACKINGS:
            raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.activations = np.asarray(activations, dtype=np.int64)
        if self.activations.shape != (self.sizes.size - 1,):
            raise ValueError(
                f"{self.sizes.size - 1} layers need as many activations, "
                f"got {self.activations.tolist()}"
            )
        self.loss = loss
        self.packing = packing
        n_in, n_out = self.sizes[:-1], self.sizes[1:]
        if packing == "interleaved":
            per_layer = n_in * n_out + n_out
            self.w_off = np.concatenate(([0], np.cumsum(per_layer)[:-1])).astype(np.int64)
            self.b_off = (self.w_off + n_in * n_out).astype(np.int64)
        else:
            w_sizes = n_in * n_out
            self.w_off = np.concatenate(([0], np.cumsum(w_sizes)[:-1])).astype(np.int64)
            total_w = int(w_sizes.sum())
            self.b_off = (total_w + np.concatenate(([0], np.cumsum(n_out)[:-1]))).astype(np.int64)
        self.n_params = int((n_in * n_out + n_out).sum())
        # Multiply-adds of one row's forward pass (sum of n_in x n_out).
        self.row_work = int((n_in * n_out).sum())
        self.n_units = int(n_out.sum())
        self._nets: dict[int, _loop.Net] = {}
        # What prediction passes as the objective (no penalty), made once.
        self.predict_objective = None if loss is None else _loop.objective(loss, 0.0)

    @property
    def n_layers(self) -> int:
        return self.sizes.size - 1

    def act_offsets(self, capacity: int) -> np.ndarray:
        """Start of each layer's slot in an activation buffer of ``capacity`` rows."""
        widths = self.sizes[1:]
        return (capacity * np.concatenate(([0], np.cumsum(widths)[:-1]))).astype(np.int64)

    def net(self, capacity: int) -> _loop.Net:
        """The compiled loop's :class:`~fastbp._loop.Net` for buffers of ``capacity`` rows."""
        net = self._nets.get(capacity)
        if net is None:
            net = _loop.Net(
                self.sizes, self.w_off, self.b_off, self.act_offsets(capacity), self.activations
            )
            if len(self._nets) < 8:  # a few capacities per layout: fit, predict chunks
                self._nets[capacity] = net
        return net

    def views(self, params: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Writable views ``(weights, biases)`` of every layer inside ``params``."""
        weights, biases = [], []
        for layer in range(self.n_layers):
            n_in, n_out = int(self.sizes[layer]), int(self.sizes[layer + 1])
            w0, b0 = int(self.w_off[layer]), int(self.b_off[layer])
            weights.append(params[w0 : w0 + n_in * n_out].reshape(n_in, n_out))
            biases.append(params[b0 : b0 + n_out])
        return weights, biases

    def pack(
        self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], dtype: np.dtype
    ) -> np.ndarray:
        """A new flat parameter vector in ``dtype`` holding ``weights`` and ``biases``."""
        params = np.empty(self.n_params, dtype=dtype)
        w_views, b_views = self.views(params)
        for view, value in zip([*w_views, *b_views], [*weights, *biases], strict=True):
            view[...] = value
        return params

    def serial(self, rows: int) -> bool:
        """Whether every product for ``rows`` rows runs on one thread in any mode:
        no thread limit to set, no threaded kernel (see fastbp._threads)."""
        return self.largest_product(rows) <= BLAS_SERIAL_GEMM

    def largest_product(self, rows: int) -> int:
        """Multiply-adds of the biggest layer product for a batch of ``rows``."""
        return int(max(rows * self.sizes[:-1] * self.sizes[1:]))
