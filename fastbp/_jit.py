"""Every Numba option fastbp uses, set in one place.

Environment switches (read once, at import):

``FASTBP_CACHE=0``
    Do not write or read Numba's on-disk compile cache.
``FASTBP_FASTMATH=1``
    Compile with ``fastmath=True``. Off by default: it reorders floating-point
    arithmetic, so results stop matching the NumPy reference bit for bit.

Numba's cache does not record compile options, so fastmath code and cached code
never mix: ``FASTBP_FASTMATH=1`` also turns the cache off.

Numba's cache checks only the cached function's own source file, but compiled
code links in the machine code of the compiled functions it calls from other
modules: after a change to ``kernels.py`` alone, the training loop of
``_loop.py`` would load its stale cached code (seen here). So the cache stamp of
fastbp's functions also covers every module of the package
(:func:`_package_stamp`): any change to one of them recompiles them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

import numba
import numba.core.event
import numba.extending
from numba.core import caching

FASTMATH: bool = os.environ.get("FASTBP_FASTMATH", "0") == "1"
CACHE: bool = os.environ.get("FASTBP_CACHE", "1") != "0" and not FASTMATH

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_stamp() -> tuple:
    """(name, mtime, size) of every module of the package (see the module docstring)."""
    entries = []
    for name in sorted(os.listdir(_PACKAGE_DIR)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(_PACKAGE_DIR, name))
            entries.append((name, st.st_mtime_ns, st.st_size))
    return tuple(entries)


class _PackageLocator:
    """Mixin for Numba's cache locators: for functions defined in this package, the
    source stamp also covers the package's other modules."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != _PACKAGE_DIR:
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return (super().get_source_stamp(), _PACKAGE_STAMP)


def _register_locators() -> None:
    """Put a package-stamped twin before each of Numba's file-backed locators."""
    classes = caching.CacheImpl._locator_classes
    for base in (
        caching.UserProvidedCacheLocator,
        caching.InTreeCacheLocator,
        caching.UserWideCacheLocator,
    ):
        if base in classes and not any(
            issubclass(c, _PackageLocator) and issubclass(c, base) for c in classes
        ):
            twin = type(f"Fastbp{base.__name__}", (_PackageLocator, base), {})
            classes.insert(classes.index(base), twin)


_PACKAGE_STAMP = _package_stamp()
if CACHE:
    _register_locators()

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


def mode_switch(stub):
    """Declare ``stub`` a compile-time switch: its body is chosen by the types of its
    arguments (``@mode_switch(stub)`` on a function that, given Numba types, returns
    the implementation to compile), compiled on its own for those types and called.

    Not inlined at Numba's IR level (``inline="always"``): an inlined switch is
    typed twice, alone and again inside its caller. Measured side by side, cold
    cache, alternating, three runs each: the first digits
    ``MLPClassifier(hidden_layer_sizes=(64,))`` fit took 13.7-14.3 s with the
    switches inlined, 11.0-13.7 s without; the first ``fastbp.Network([2, 4,
    1]).fit`` 7.7-8.2 s (one run 11.1) against 7.9-8.9 s, no difference beyond
    the noise.

    How the training loop picks its mode: the type of the optimizer bundle (and
    of the objective, None for fastbp.Network's mean squared error) selects which
    kernels are typed and compiled at all, so a variant's machine code holds no
    other mode's kernels (tested in ``tests/test_compiled_modes.py``).
    """
    return numba.extending.overload(stub, jit_options=JIT_OPTIONS)


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


# -- first-run notice ----------------------------------------------------------------
#
# Numba signals every real compile (not a load from its cache) with a
# "numba:compile" event; fastbp listens for the outermost compile of one of its
# functions and says so in one line. Nothing is checked per call: a fit that
# compiles nothing pays nothing (an earlier per-call check cost microseconds of
# every fit of a tiny network).

_log = logging.getLogger("fastbp")
MESSAGE = "fastbp: compiling kernels, first run only (`fastbp compile` does it ahead)..."
# Where the one-line notice goes: None means stderr when it is a terminal (an
# interactive session), else only the "fastbp" logger (see notices_to).
_notice_stream: Any = None


@contextlib.contextmanager
def notices_to(stream: Any) -> Iterator[None]:
    """Send the first-compile notice to ``stream`` during the body (the command line
    sends it to stderr even when stderr is not a terminal)."""
    global _notice_stream
    previous, _notice_stream = _notice_stream, stream
    try:
        yield
    finally:
        _notice_stream = previous


def _announce() -> None:
    _log.info(MESSAGE)
    stream = _notice_stream
    with contextlib.suppress(AttributeError, ValueError, OSError):  # no usable stderr
        if stream is None and sys.stderr.isatty():
            stream = sys.stderr
        if stream is not None:
            print(MESSAGE, file=stream, flush=True)


class _CompileNotice(numba.core.event.Listener):
    """Announce each outermost compile of a fastbp function (compiles nest: a
    function's callees compile inside it; Numba compiles under one global lock)."""

    def __init__(self) -> None:
        self.depth = 0

    def on_start(self, event: Any) -> None:
        self.depth += 1
        if self.depth == 1:
            dispatcher = event.data.get("dispatcher") if isinstance(event.data, dict) else None
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
            if module.split(".")[0] == "fastbp":
                _announce()

    def on_end(self, event: Any) -> None:
        self.depth -= 1


numba.core.event.register("numba:compile", _CompileNotice())
