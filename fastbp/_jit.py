"""Every Numba option fastbp uses, set in one place.

Environment switches (read once, at import):

``FASTBP_CACHE=0``
    Do not write or read Numba's on-disk compile cache.
``FASTBP_FASTMATH=1``
    Compile with ``fastmath=True``. Off by default: it reorders floating-point
    arithmetic, so results stop matching the NumPy reference bit for bit.

Numba's cache does not record compile options, so fastmath code and cached code
never mix: ``FASTBP_FASTMATH=1`` also turns the cache off.
"""

from __future__ import annotations

import os
import types

import numba

FASTMATH: bool = os.environ.get("FASTBP_FASTMATH", "0") == "1"
CACHE: bool = os.environ.get("FASTBP_CACHE", "1") != "0" and not FASTMATH

# Element-wise passes over fewer elements than this run on one thread: below it,
# waking the thread pool costs more than it saves.
PARALLEL_MIN: int = 16384
# Matrix products with m * k * n below this run as plain loops: a BLAS call has a
# fixed cost of a few hundred nanoseconds, more than a tiny product takes.
SMALL_GEMM: int = 4096
# OpenBLAS runs products with m * k * n up to this on one thread whatever its
# thread count (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD in its
# interface/gemm.c): a fit whose products are all this small needs no thread limit.
BLAS_SERIAL_GEMM: int = 65536 * 4
# Matrix products with m * k * n from this size up are split over threads (in
# reproducible mode): measured slower below about 3e6, faster from about 6e6.
PARALLEL_GEMM: int = 1 << 22

# error_model="numpy": division by zero gives inf instead of a Python exception
# check, which would block LLVM's loop vectorizer. nogil lets several Python
# threads train separate models at once.
# _nrt=False: no reference counting. With it, Numba wraps every array passed to
# or made in a compiled function in calls to NRT_incref/NRT_decref (atomic
# updates): profiled at 15-20 % of a training step of a tiny network. fastbp's
# compiled code never allocates an array or returns one it was not given, and
# every array it touches belongs to the Python caller for the whole call, so
# nothing needs counting. (Numba rejects, at compile time, a function that
# would allocate or return a new array under this flag.)
JIT_OPTIONS = {
    "cache": CACHE,
    "nogil": True,
    "error_model": "numpy",
    "fastmath": FASTMATH,
    "_nrt": False,
}


def jit(fn):
    """Compile ``fn`` as a serial nopython function."""
    return numba.njit(**JIT_OPTIONS)(fn)


def jit_inline(fn):
    """:func:`jit`, and inlined (at Numba's IR level) into every compiled caller.

    For helpers with one or two call sites. Numba finalises every compiled
    function by linking in the machine code of all its callees and optimising
    the result again, so each level of calls costs compile time; an inlined
    helper is no level of its own. Also no call at run time. Called from
    Python, it is compiled on its own as usual.
    """
    return numba.njit(inline="always", **JIT_OPTIONS)(fn)


def pjit(fn):
    """Compile ``fn`` with ``parallel=True`` (its ``prange`` loops use threads)."""
    return numba.njit(parallel=True, **JIT_OPTIONS)(fn)


def serial_and_parallel(body):
    """Compile ``body`` twice: serially and with ``parallel=True``.

    Numba's cache files are named after the Python function and do not record
    compile options, so the parallel twin gets a function of its own name; with
    one shared function, each would load the other's cached machine code.
    """
    twin = types.FunctionType(
        body.__code__, body.__globals__, body.__name__, body.__defaults__, body.__closure__
    )
    twin.__qualname__ = body.__qualname__ + "_parallel"
    return jit(body), pjit(twin)
