"""The least that Numba's JIT costs for a trainer: a bare MLP trainer, compiled cold.

Three ``@njit`` functions, nothing of fastbp: a sigmoid layer's forward pass, its
backward pass with the SGD update, and an epoch loop over mini-batches of a
``[2, 4, 1]`` network with squared error, each compiled as fastbp compiles its
kernels (``parallel=True`` row loops; products as plain loops, so no BLAS binding
is compiled). No validation, no other activation, loss or optimizer, no float32,
no shuffling, no interrupt or thread control. ``bench/startup.py`` runs it in a
fresh process with an empty ``NUMBA_CACHE_DIR``, beside fastbp's own cold start,
to show how much of that is Numba's fixed cost per compiled function. Prints JSON:
``import_s`` (NumPy and Numba), ``fit_s`` (compiling and running one epoch) and
``J`` (the summed loss of that epoch and of a second one).
"""

from __future__ import annotations

import json
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

t1 = time.perf_counter()


@njit(parallel=True)
def forward(a_prev, w, b, out):
    """out (m, n_out) = sigmoid(a_prev (m, n_in) @ w (n_in, n_out) + b (n_out,))."""
    for i in prange(out.shape[0]):
        for j in range(out.shape[1]):
            z = b[j]
            for k in range(w.shape[0]):
                z += a_prev[i, k] * w[k, j]
            out[i, j] = 1.0 / (1.0 + np.exp(-z))


@njit(parallel=True)
def backward(a_prev, a, delta, w, b, lr, delta_prev):
    """delta (m, n_out): dJ/dA in, dJ/dZ out; delta_prev (m, n_in) = dJ/dA_prev;
    then w -= lr * a_prev.T @ delta, b -= lr * sum(delta)."""
    for i in prange(a.shape[0]):
        for j in range(a.shape[1]):
            delta[i, j] *= a[i, j] * (1.0 - a[i, j])
    for i in prange(a.shape[0]):
        for k in range(w.shape[0]):
            s = 0.0
            for j in range(w.shape[1]):
                s += delta[i, j] * w[k, j]
            delta_prev[i, k] = s
    for k in prange(w.shape[0]):
        for j in range(w.shape[1]):
            g = 0.0
            for i in range(a.shape[0]):
                g += a_prev[i, k] * delta[i, j]
            w[k, j] -= lr * g
    for j in range(b.shape[0]):
        g = 0.0
        for i in range(a.shape[0]):
            g += delta[i, j]
        b[j] -= lr * g


@njit
def epoch(x, y, w1, b1, w2, b2, a1, a2, d2, d1, dx, lr, batch):
    """One epoch of mini-batch SGD on J = (1/m) sum ||a2 - y||^2; returns the sum of J."""
    n = x.shape[0]
    total = 0.0
    for s in range(0, n, batch):
        m = min(batch, n - s)
        forward(x[s : s + m], w1, b1, a1[:m])
        forward(a1[:m], w2, b2, a2[:m])
        for i in range(m):
            for j in range(a2.shape[1]):
                r = a2[i, j] - y[s + i, j]
                total += r * r / m
                d2[i, j] = 2.0 * r / m
        backward(a1[:m], a2[:m], d2[:m], w2, b2, lr, d1[:m])
        backward(x[s : s + m], a1[:m], d1[:m], w1, b1, lr, dx[:m])
    return total


def main() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 2)), rng.random((4, 1))
    w1, b1 = rng.standard_normal((2, 4)), np.zeros(4)
    w2, b2 = rng.standard_normal((4, 1)), np.zeros(1)
    buffers = [np.empty((4, k)) for k in (4, 1, 1, 4, 2)]  # a1, a2, d2, d1, dx
    first = epoch(x, y, w1, b1, w2, b2, *buffers, 0.5, 2)
    t2 = time.perf_counter()
    second = epoch(x, y, w1, b1, w2, b2, *buffers, 0.5, 2)
    print(json.dumps({"import_s": t1 - t0, "fit_s": t2 - t1, "J": [first, second]}))


if __name__ == "__main__":
    main()
