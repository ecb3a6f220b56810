"""Thread control: Numba's pool and the BLAS pools kept to one count.

Numba's default ``workqueue`` threading layer aborts the process when two Python
threads run parallel regions at once, so unless the user chose a layer
(``NUMBA_THREADING_LAYER``), fastbp asks for a thread-safe one (TBB or OpenMP).
If neither is installed, fastbp's parallel calls take a process-wide lock instead.

fastbp's kernels call SciPy's OpenBLAS (NumPy has its own). Only one thread pool
works at a time, never both: two busy pools on the same cores, each spinning
while the other waits, measured 20x slower than one. Two modes
(:func:`set_reproducible`):

- default: big products use BLAS's own threads (the fastest gemm there is) and
  fastbp's compiled code stays serial. Results are bit-identical run after run
  for a given thread count; across thread counts OpenBLAS rounds products with a
  long inner dimension (above ~400) differently.
- reproducible: every BLAS library is limited to one thread, and fastbp splits
  big products over Numba's threads by blocks of output columns, one
  single-threaded BLAS call each. Results are bit-identical for any thread count.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import threading
from collections.abc import Iterator, Sequence

import numba

from fastbp._jit import SMALL_GEMM


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
_reproducible = os.environ.get("FASTBP_REPRODUCIBLE", "0") == "1"
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


def set_reproducible(flag: bool) -> None:
    """Make results independent of the thread count (True), or take the fastest path.

    False (the default): big matrix products run on BLAS's own threads, which is
    fastest; results repeat bit for bit for a given thread count, but OpenBLAS
    rounds products with more than about 400 inputs differently on 1 and on 2
    threads. True: fastbp splits those products over its own threads by blocks
    of output columns, each a single-threaded BLAS call, so every result is
    bit-identical whatever :func:`set_num_threads` says; big layers train
    10-20 % slower.
    """
    from fastbp._validation import check_bool

    global _reproducible
    _reproducible = check_bool("flag", flag)


def get_reproducible() -> bool:
    """Whether results are independent of the thread count (:func:`set_reproducible`)."""
    return _reproducible


def kernel_threads(sizes: Sequence[int], rows: int, min_work: int) -> int | None:
    """The ``threads`` argument of fastbp's kernels for batches of ``rows``.

    None (serial code, never even compiled in parallel) unless in reproducible
    mode with a product of at least ``min_work`` multiply-adds, where splitting
    over threads pays.
    """
    if not _reproducible:
        return None
    # Also on one thread: big products are then cut into the same column blocks
    # as on several, which is what makes their results independent of the count.
    return get_num_threads() if _largest_product(sizes, rows) >= min_work else None


def _largest_product(sizes: Sequence[int], rows: int) -> int:
    """Multiply-adds of the biggest layer product for a batch of ``rows``."""
    widths = [int(s) for s in sizes]
    return max(rows * a * b for a, b in itertools.pairwise(widths))


@contextlib.contextmanager
def compute_threads(sizes: Sequence[int] | None = None, rows: int = 0) -> Iterator[None]:
    """Run the body with Numba on :func:`get_num_threads` threads, BLAS on as many
    (or, in reproducible mode, on one).

    Given the layer widths ``sizes`` and the largest batch ``rows``, it sets
    nothing when every product is small enough to run as plain loops on one
    thread (no BLAS call, no thread pool): setting the BLAS limits costs about
    30 us, more than a whole fit of a tiny network.
    """
    if sizes is not None and _largest_product(sizes, rows) < SMALL_GEMM:
        yield
        return
    n = get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    lock = _LOCK if _NEEDS_LOCK else contextlib.nullcontext()
    try:
        with lock, _blas_limited(1 if _reproducible else n):
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
def _blas_limited(limit: int) -> Iterator[None]:
    global _controller, _blas_users, _blas_limiter
    with _blas_lock:
        if _controller is None:
            import scipy.linalg.cython_blas  # noqa: F401  (load Numba's BLAS for threadpoolctl)
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        if _blas_users == 0:
            _release_openblas()
            _blas_limiter = _controller.limit(limits=limit, user_api="blas")
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
