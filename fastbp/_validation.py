"""Argument checks for the public API: clear errors, raised before any kernel runs."""

from __future__ import annotations

import itertools
import numbers
import operator
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Finiteness is checked this many elements at a time, so a memory-mapped data set
# never needs a temporary as large as itself.
_FINITE_CHUNK = 1 << 22


def check_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 or float64."""
    if dtype is None:  # np.dtype(None) would quietly mean float64
        raise TypeError("dtype must be float32 or float64, got None")
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """An integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """A real number, finite and > 0."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_sizes(sizes: Any) -> np.ndarray:
    """Layer widths: a sequence of at least two integers >= 1, as int64."""
    if isinstance(sizes, str | bytes) or not hasattr(sizes, "__len__"):
        raise TypeError(f"sizes must be a sequence of layer widths, got {type(sizes).__name__}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 entries (inputs and outputs), got {len(sizes)}")
    out = [check_int(f"sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)]
    # Python ints: the parameter count must fit the int64 offsets of the flat buffers.
    n_params = sum(a * b + b for a, b in itertools.pairwise(out))
    if n_params >= 2**62:
        raise ValueError(f"sizes {out} give {n_params} parameters, too many to store")
    return np.array(out, dtype=np.int64)


def all_finite(a: np.ndarray) -> bool:
    """Whether every element of the float array ``a`` is finite, in bounded memory.

    Small arrays: one element-wise check. Large ones: a sum first (one pass, no
    temporary array), which is finite unless an element is not or the sum
    overflows; only then an element-wise check, a chunk of rows at a time.
    """
    if a.size <= _FINITE_CHUNK:
        return bool(np.isfinite(a).all())
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return True
    if a.ndim < 2:
        return all(
            bool(np.isfinite(a[i : i + _FINITE_CHUNK]).all())
            for i in range(0, a.size, _FINITE_CHUNK)
        )
    step = max(1, _FINITE_CHUNK // (a.size // a.shape[0]))
    return all(bool(np.isfinite(a[i : i + step]).all()) for i in range(0, a.shape[0], step))


def as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` as an array of ``dtype``, without a copy when it already is one.

    Accepts any layout (strided, Fortran-ordered, read-only, memory-mapped): those
    are used as they are. Other real dtypes (integers, bools, other floats) and
    sequences are converted, which copies.
    """
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a numeric array: {exc}") from exc
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype != dtype:
        # Values outside float32's range become inf here (and are then rejected as
        # such), not a RuntimeWarning from the cast.
        with np.errstate(over="ignore", invalid="ignore"):
            arr = arr.astype(dtype)
    return arr


def check_data(name: str, value: Any, dtype: np.dtype, n_features: int) -> np.ndarray:
    """Input samples: 2-D (n_samples >= 1, n_features), finite, of ``dtype``."""
    arr = as_float_array(name, value, dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per sample, but the network takes {n_features}"
        )
    if not all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_targets(name: str, value: Any, dtype: np.dtype, n_out: int, n_samples: int) -> np.ndarray:
    """Targets: (n_samples, n_out), or 1-D when n_out == 1 (returned as a (n, 1) view)."""
    arr = as_float_array(name, value, dtype)
    if arr.ndim == 1 and n_out == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_out:
        expected = f"(n_samples, {n_out})" + (" or (n_samples,)" if n_out == 1 else "")
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples but X has {n_samples}")
    if not all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr
