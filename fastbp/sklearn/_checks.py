"""Argument checks of the estimators, stricter than scikit-learn's where it fails late."""

# Messages are kept byte for byte as scikit-learn formats them (%-formatting).
# ruff: noqa: UP031

from __future__ import annotations

import itertools
import numbers
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.utils.validation import validate_data

from fastbp._validation import all_finite
from fastbp.engine.dropout import check_rates
from fastbp.engine.sparse import check_csr


def train_x(x: Any, dtype: np.dtype) -> Any:
    """Training samples for the kernels: C-contiguous in ``dtype``, not copied when
    they already are (a read-only ``numpy.memmap`` included); a sparse matrix as a
    checked CSR matrix in ``dtype``, never densified (:mod:`fastbp.engine.sparse`)."""
    if scipy.sparse.issparse(x):
        return check_csr("X", x, dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def private(a: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """A fresh writeable C-contiguous copy of targets or sample weights (small), which
    must fit in ``dtype`` (float32 when X is: the network trains in X's dtype)."""
    if scipy.sparse.issparse(a):
        a = a.toarray()
    with np.errstate(over="ignore"):
        out = np.array(a, dtype=dtype, order="C", copy=True)
    if not all_finite(out):  # they were checked finite: beyond float32's range
        raise ValueError(
            "%s has values beyond the range of %s, the dtype of X the network trains "
            "in: scale %s, or pass X as float64." % (name, np.dtype(dtype).name, name)
        )
    return out


def validate(est: Any, *args: Any, **kwargs: Any) -> Any:
    """scikit-learn's ``validate_data``, without its RuntimeWarning when the data hold
    both +inf and -inf (its finiteness test sums them): its ValueError comes alone."""
    with np.errstate(invalid="ignore", over="ignore"):
        return validate_data(est, *args, **kwargs)


def check_hidden_layer_sizes(value: Any) -> list:
    """``hidden_layer_sizes`` as a list of ints >= 1, else a TypeError or ValueError
    naming it (scikit-learn's own message for sizes <= 0)."""
    sizes = list(value) if hasattr(value, "__iter__") else [value]
    for size in sizes:
        if isinstance(size, bool | np.bool_) or not isinstance(size, numbers.Integral):
            raise TypeError(
                "hidden_layer_sizes must hold integers (the width of each hidden "
                "layer), got %r of type %s in %r." % (size, type(size).__name__, value)
            )
    if any(size <= 0 for size in sizes):
        raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
    return [int(size) for size in sizes]


def check_parameter_count(layer_units: list[int], hidden_layer_sizes: Any) -> None:
    """The parameter count must fit the kernels' int64 offsets."""
    n_params = sum(a * b + b for a, b in itertools.pairwise(layer_units))
    if n_params >= 2**62:
        raise ValueError(
            "hidden_layer_sizes=%r gives %d parameters with %d features and %d outputs, "
            "too many to store." % (hidden_layer_sizes, n_params, layer_units[0], layer_units[-1])
        )


def check_architecture(est: Any, layer_units: list[int]) -> None:
    """On a warm start or partial_fit, the data and hidden_layer_sizes must match the
    fitted weights (scikit-learn fails later, in a matrix product)."""
    fitted = [est.coefs_[0].shape[0]] + [c.shape[1] for c in est.coefs_]
    if fitted[-1] != layer_units[-1]:
        raise ValueError(
            "y has %d output(s) but the fitted network has %d: fit from scratch "
            "(warm_start=False) to change them." % (layer_units[-1], fitted[-1])
        )
    if fitted[1:-1] != layer_units[1:-1]:
        raise ValueError(
            "hidden_layer_sizes=%r does not match the fitted network's hidden layers %r: "
            "fit from scratch (warm_start=False) to change them."
            % (est.hidden_layer_sizes, tuple(fitted[1:-1]))
        )


def check_dropout(est: Any, n_hidden: int) -> np.ndarray:
    """``dropout`` as one rate per hidden layer (a TypeError or ValueError naming it);
    refused with 'lbfgs' unless all rates are 0."""
    rates = check_rates(est.dropout, n_hidden, "dropout")
    if est.solver == "lbfgs" and rates.any():
        # A new mask at every function evaluation would make the objective noisy,
        # which breaks L-BFGS's line search and curvature pairs; one mask for the
        # whole run would train a thinned network, not dropout.
        raise ValueError(
            "dropout=%r needs a stochastic solver ('sgd' or 'adam'): 'lbfgs' minimises "
            "a fixed objective, and dropout makes it random. Set dropout=0 with "
            "solver='lbfgs'." % (est.dropout,)
        )
    return rates


def check_validation_request(est: Any, validation_data: Any) -> None:
    """``validation_data`` is None, or a tuple of 2 or 3 for early stopping with a
    stochastic solver (its arrays are checked once X is)."""
    if validation_data is None:
        return
    if est.solver not in ("sgd", "adam"):
        raise ValueError(
            "validation_data is the validation set of early stopping, which solver=%r "
            "does not do: use solver='sgd' or 'adam'." % est.solver
        )
    if not est.early_stopping:
        raise ValueError(
            "validation_data is the validation set of early stopping: set "
            "early_stopping=True to use it."
        )
    is_sequence = isinstance(validation_data, tuple | list)
    if not is_sequence or len(validation_data) not in (2, 3):
        what = type(validation_data).__name__
        if is_sequence:
            what += " of length %d" % len(validation_data)
        raise TypeError(
            "validation_data must be a tuple (X_val, y_val) or (X_val, y_val, "
            "sample_weight_val), got a %s." % what
        )
