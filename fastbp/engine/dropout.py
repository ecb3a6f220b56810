"""Dropout on the hidden layers: the rates, their check, and the generator's state.

Inverted dropout: while training, each hidden unit of each row of a batch is
dropped (set to 0) with its layer's probability p, and the kept units are scaled
by ``1 / (1 - p)``, so that prediction (which drops nothing) needs no rescaling.
The masks are drawn inside the compiled loop (:func:`fastbp.kernels.dropout_forward`)
from a counter-based generator: a hash of a 64-bit key (drawn once from the front
end's seeded generator), the step (a counter that every step advances), the row's
input values and the unit. So a fit repeats bit for bit given the same key, no
mask costs an allocation, and a row of sample weight k draws the masks of k
copies of that row.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastbp import _loop, kernels
from fastbp.engine.layout import Layout


def check_rates(value: Any, n_hidden: int, name: str = "dropout") -> np.ndarray:
    """``value`` as one dropout rate per hidden layer (float64, shape (n_hidden,)).

    ``value``: one rate for every hidden layer, or a sequence of ``n_hidden``
    rates, each a real number in [0, 1). Else a TypeError or ValueError naming
    ``name``.
    """
    if type(value) in (float, int) and value == 0:  # the default, checked on every fit
        return np.zeros(n_hidden)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, numbers.Real):
        given = [value]
    elif isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes):
        given = list(value)
        if (isinstance(value, np.ndarray) and value.ndim != 1) or len(given) != n_hidden:
            raise ValueError(
                f"{name} must hold one rate per hidden layer: {n_hidden} for this network, "
                f"got {value!r}."
            )
    else:
        raise TypeError(
            f"{name} must be a rate in [0, 1) or a sequence of one rate per hidden layer, "
            f"got {value!r} of type {type(value).__name__}."
        )
    for rate in given:
        if isinstance(rate, bool | np.bool_) or not isinstance(rate, numbers.Real):
            raise TypeError(
                f"{name} rates must be real numbers in [0, 1), got {rate!r} of type "
                f"{type(rate).__name__} in {value!r}."
            )
        if not (math.isfinite(rate) and 0 <= rate < 1):
            raise ValueError(
                f"{name} rates must be in [0, 1) (the probability of dropping a unit), "
                f"got {rate!r} in {value!r}."
            )
    rates = given * n_hidden if isinstance(value, numbers.Real) else given
    return np.array(rates, dtype=np.float64).reshape(n_hidden)


class Dropout:
    """One fit's dropout: the rates of the hidden layers and the masks' generator.

    Parameters
    ----------
    rates : ndarray (n_hidden,) float64
        Each hidden layer's rate, in [0, 1) (see :func:`check_rates`).
    key : int
        The generator's key, in [0, 2**64). The step counter starts at 0 and keeps
        counting across every :class:`~fastbp.engine.Trainer` given this object,
        so a fit continued in several calls (``partial_fit``) draws new masks.
    """

    def __init__(self, rates: np.ndarray, key: int) -> None:
        self.rates = np.asarray(rates, dtype=np.float64)
        self.state = np.array([key, 0], dtype=np.uint64)

    @property
    def active(self) -> bool:
        """Whether any layer drops anything (else the loop runs without dropout code)."""
        return bool(np.any(self.rates > 0))

    def bundle(self, layout: Layout, capacity: int, dtype: Any) -> _loop.Dropout | None:
        """The compiled loop's :class:`~fastbp._loop.Dropout` for buffers of ``capacity``
        rows (its mask buffers made here, once per fit), or None if no rate is > 0."""
        if not self.active:
            return None
        if self.rates.size != layout.n_layers - 1:
            raise ValueError(
                f"dropout has {self.rates.size} rate(s) for {layout.n_layers - 1} hidden layer(s)."
            )
        threshold = np.array([kernels.dropout_threshold(r) for r in self.rates], dtype=np.uint64)
        scale = 1.0 / (1.0 - self.rates)
        mask = np.empty(capacity * layout.n_units, dtype=dtype)
        rows = np.empty(capacity, dtype=np.uint64)
        return _loop.Dropout(threshold, scale, self.state, rows, mask, np.empty_like(mask))
