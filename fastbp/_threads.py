"""Thread control: Numba's pool and the BLAS pools kept to one count.

Numba's default ``workqueue`` threading layer aborts the process when two Python
threads run parallel regions at once, so unless the user chose a layer
(``NUMBA_THREADING_LAYER``), fastbp asks for a thread-safe one (TBB or OpenMP).
If neither is installed, fastbp's parallel calls take a process-wide lock instead.

Numba's ``np.dot`` calls SciPy's OpenBLAS, NumPy calls its own: during a fit both
are limited (threadpoolctl) to fastbp's thread count, and no BLAS call is made
from inside a parallel loop, so the two pools never oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator

import numba


def _threadsafe_layer_available() -> bool:
    for name in ("tbbpool", "omppool"):
        try:  # the module exists in every wheel; loading it needs libtbb / libgomp
            importlib.import_module(f"numba.np.ufunc.{name}")
        except (ImportError, OSError):
            continue
        return True
    return False


if "NUMBA_THREADING_LAYER" not in os.environ and _threadsafe_layer_available():
    numba.config.THREADING_LAYER = "threadsafe"

_NEEDS_LOCK = numba.config.THREADING_LAYER in ("default", "workqueue")
_LOCK = threading.Lock()
_num_threads: int | None = None
_controller = None


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in fastbp's kernels and in BLAS during fit and predict.

    ``None`` restores the default: ``NUMBA_NUM_THREADS`` (the number of cores
    unless set in the environment). ``n`` may not exceed that number.
    """
    from fastbp._validation import check_int

    global _num_threads
    if n is not None:
        n = check_int("n", n, minimum=1)
        if n > numba.config.NUMBA_NUM_THREADS:
            raise ValueError(
                f"n must be <= NUMBA_NUM_THREADS ({numba.config.NUMBA_NUM_THREADS}), got {n}"
            )
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads fastbp uses (see :func:`set_num_threads`)."""
    return numba.config.NUMBA_NUM_THREADS if _num_threads is None else _num_threads


@contextlib.contextmanager
def compute_threads() -> Iterator[None]:
    """Run the body with Numba and every BLAS library on :func:`get_num_threads` threads."""
    global _controller
    n = get_num_threads()
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load Numba's BLAS so threadpoolctl sees it)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    lock = _LOCK if _NEEDS_LOCK else contextlib.nullcontext()
    try:
        with lock, _controller.limit(limits=n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)
