"""Thread control: Numba's pool and the BLAS pools kept to one count.

Numba's default ``workqueue`` threading layer aborts the process when two Python
threads run parallel regions at once, so unless the user chose a layer
(``NUMBA_THREADING_LAYER``), fastbp asks for a thread-safe one (TBB or OpenMP).
If neither is installed, fastbp's parallel calls take a process-wide lock instead.

fastbp's kernels call SciPy's OpenBLAS (NumPy has its own). They do their own
threading, splitting big products over Numba's threads with one single-threaded
BLAS call each: so while fastbp computes, every BLAS library is limited to one
thread (threadpoolctl). Two busy pools on the same cores, each spinning while
the other works, measured 20x slower than one.
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
    """Run the body with Numba on :func:`get_num_threads` threads and BLAS on one."""
    n = get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    lock = _LOCK if _NEEDS_LOCK else contextlib.nullcontext()
    try:
        with lock, _blas_limited():
            yield
    finally:
        numba.set_num_threads(previous)


# BLAS limits are process-wide, so they are set when the first thread starts
# computing and restored when the last one stops: with a limit per thread, the
# first to finish would restore the BLAS pool under the others, whose products
# would then change (OpenBLAS's threaded gemm splits some inner dimensions
# differently) and compete with Numba's threads.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextlib.contextmanager
def _blas_limited() -> Iterator[None]:
    global _controller, _blas_users, _blas_limiter
    with _blas_lock:
        if _controller is None:
            import scipy.linalg.cython_blas  # noqa: F401  (load Numba's BLAS for threadpoolctl)
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        if _blas_users == 0:
            _release_openblas()
            _blas_limiter = _controller.limit(limits=1, user_api="blas")
            _release_openblas()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _release_openblas()
                _blas_limiter.restore_original_limits()
                _release_openblas()
                _blas_limiter = None


def _release_openblas() -> None:
    """Let this thread set OpenBLAS's (process-wide) thread count.

    threadpoolctl >= 3.6 lets only one thread, the first to set it, change an
    OpenBLAS pool that is not OpenMP-based, and silently ignores the others; here
    the thread that sets the limit and the one that restores it may differ, and
    both hold ``_blas_lock``.
    """
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
