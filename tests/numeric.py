"""Central finite differences: the independent oracle of the gradient tests."""

from __future__ import annotations

import numpy as np


def numeric_gradients(net, x, y, h: float = 1e-6) -> list[np.ndarray]:
    """Central finite differences of ``net.loss(x, y)`` for every weight and bias,
    in the order ``net.weights + net.biases`` (the parameters are restored).

    Truncation is O(h^2) (~1e-12 at h = 1e-6) and the rounding of J (~1e-16) over h
    ~1e-10: agreement to ~1e-8 is all a float64 comparison can ask.
    """
    out = []
    for param in net.weights + net.biases:
        numeric = np.empty_like(param)
        for idx in np.ndindex(param.shape):
            saved = param[idx]
            param[idx] = saved + h
            up = net.loss(x, y)
            param[idx] = saved - h
            down = net.loss(x, y)
            param[idx] = saved
            numeric[idx] = (up - down) / (2 * h)
        out.append(numeric)
    return out
