"""SciPy sparse input: checked once, trained and predicted on without a dense copy.

The compiled first layer reads a CSR matrix's three arrays (``data``, ``indices``,
``indptr``) where they are (:class:`fastbp._loop.SparseRows`); the layers above are
dense as always. What each input costs:

- CSR in the network's dtype: nothing, the matrix itself is used.
- CSR in another dtype: a copy of ``data`` only (the stored values).
- CSC (and any other format: COO, LIL, DOK, BSR): converted to CSR once, a copy of
  the stored entries (never a dense array).
- Unsorted column indices and duplicate entries are used as they are, not sorted or
  summed: every stored entry adds its term, so duplicates count as their sum, as in
  SciPy's own products (``X @ W``); only the rounding order can differ from the
  canonical form's.

Bad matrices are refused by :func:`check_csr` before any kernel runs: index arrays
that do not fit the shape (the kernels read them without bounds checks), NaN or
infinity among the stored values, another width than the network's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastbp import _loop
from fastbp._validation import all_finite

_NO_ORDER = np.empty(0, dtype=np.int64)


def is_sparse(x: Any) -> bool:
    """Whether x is a SciPy sparse matrix or array (SciPy imported only for one: its
    import takes a tenth of a second, a third of fastbp's own)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "tocsr"):
        return False
    import scipy.sparse

    return scipy.sparse.issparse(x)


def _check_compressed(name: str, x: Any) -> None:
    """ValueError unless the CSR/CSC arrays of x fit its shape."""
    major, minor = x.shape if x.format == "csr" else x.shape[::-1]
    indptr, indices, data = x.indptr, x.indices, x.data
    if indptr.ndim != 1 or indptr.size != major + 1:
        raise ValueError(
            f"{name} is a malformed {x.format.upper()} matrix: indptr has {indptr.size} "
            f"entries, its shape {x.shape} needs {major + 1}"
        )
    if indptr[0] != 0 or (major > 0 and np.diff(indptr).min() < 0):
        raise ValueError(
            f"{name} is a malformed {x.format.upper()} matrix: indptr must start at 0 and "
            "never decrease"
        )
    nnz = int(indptr[-1])
    if indices.size < nnz or data.size < nnz:
        raise ValueError(
            f"{name} is a malformed {x.format.upper()} matrix: indptr ends at {nnz} but "
            f"indices has {indices.size} entries and data {data.size}"
        )
    if nnz > 0:
        lo, hi = int(indices[:nnz].min()), int(indices[:nnz].max())
        if lo < 0 or hi >= minor:
            raise ValueError(
                f"{name} is a malformed {x.format.upper()} matrix: its indices run from "
                f"{lo} to {hi}, outside [0, {minor}) for shape {x.shape}"
            )


def check_csr(name: str, x: Any, dtype: np.dtype, n_features: int | None = None) -> Any:
    """x (a SciPy sparse matrix) as a checked CSR matrix in ``dtype`` (see the module
    docstring for what is copied); ValueError or TypeError naming ``name`` if it
    cannot be trained or predicted on as it is."""
    import scipy.sparse

    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real and numeric, got dtype {x.dtype}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(
            f"{name} has {x.shape[1]} features per sample, but the network takes {n_features}"
        )
    if x.format in ("csr", "csc"):
        _check_compressed(name, x)
    elif x.format == "coo" and x.nnz > 0:  # converted by SciPy without bounds checks
        for axis, idx in enumerate(x.coords):
            if int(idx.min()) < 0 or int(idx.max()) >= x.shape[axis]:
                raise ValueError(
                    f"{name} is a malformed COO matrix: its indices along axis {axis} do "
                    f"not fit its shape {x.shape}"
                )
    x = x.tocsr()  # CSR: itself; other formats: converted once (SciPy checks those)
    if x.indices.dtype != x.indptr.dtype:  # one integer type per compiled variant
        x = scipy.sparse.csr_matrix(
            (x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)), shape=x.shape
        )
    nnz = int(x.indptr[-1])
    if x.data.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            data = x.data[:nnz].astype(dtype)
        x = scipy.sparse.csr_matrix((data, x.indices[:nnz], x.indptr), shape=x.shape, copy=False)
    if not all_finite(x.data[:nnz]):
        raise ValueError(f"{name} contains NaN or infinity (in {np.dtype(dtype).name})")
    return x


def rows(x: Any, start: int, m: int, order: np.ndarray = _NO_ORDER) -> _loop.SparseRows:
    """Rows ``start:start + m`` of CSR x (of ``order`` when given) as the compiled
    first layer's input: no copy."""
    return _loop.SparseRows(
        x.data, x.indices, x.indptr, order, int(start), (int(m), int(x.shape[1]))
    )
