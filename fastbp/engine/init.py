"""Initial weights, drawn as scikit-learn draws them (Glorot uniform)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np


def glorot_uniform(
    sizes: Sequence[int], dtype: Any, rng: Any, factor: float = 2.0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights and biases uniform in ``±sqrt(factor / (fan_in + fan_out))``.

    Layer by layer from ``rng`` (a ``numpy.random.Generator`` or ``RandomState``):
    first W_l (n_in, n_out), then b_l (n_out,), drawn in float64 and then cast to
    ``dtype``. scikit-learn's factor is 2 for logistic hidden layers, else 6.
    """
    weights, biases = [], []
    for fan_in, fan_out in itertools.pairwise(int(s) for s in sizes):
        bound = np.sqrt(factor / (fan_in + fan_out))
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
        biases.append(rng.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
    return weights, biases
