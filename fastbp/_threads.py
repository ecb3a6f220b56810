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

How many threads (:func:`thread_info` says which limit decided), in order:

1. explicit: ``n_threads`` of a call (the estimators' ``n_threads``, ``fastbp
   train --threads``), else :func:`set_num_threads`. Wins over everything below,
   may exceed the CPUs; fastbp's own parallel code is capped at
   ``NUMBA_NUM_THREADS`` (Numba's pool is sized at start-up), BLAS takes it all.
2. otherwise the smallest of: the affinity mask (``os.sched_getaffinity``); a
   cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``,
   floored, at least 1); ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
   ``MKL_NUM_THREADS`` (joblib's loky workers get them set to cores // n_jobs);
   the BLAS / OpenMP pools' thread counts as the host left them (threadpoolctl
   limits in force); a Dask worker's ``nthreads``; ``NUMBA_NUM_THREADS``.
   So BLAS never gets more threads than the environment gave it.
3. then, unless ``FASTBP_LOAD_AWARE=0``, the CPUs that other processes' runnable
   threads leave free (``/proc/loadavg``), at least 1, checked at the start of
   each fit and predict. Two processes each running two-thread products on the
   same two cores measured 30x slower per epoch than each on one thread: every
   product waits for both its threads to be on a core at once. In reproducible
   mode this changes only how many threads share the work, never the results;
   in the default mode a product with a long inner dimension may round
   differently on a loaded machine (as with any other thread count).

Products small enough that OpenBLAS keeps them on one thread anyway set no limit
at all (:func:`compute_threads`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numba

from fastbp._jit import BLAS_SERIAL_GEMM


def _threadsafe_layer_available() -> bool:
    for name in ("tbbpool", "omppool"):
        try:  # the module exists in every wheel; loading it needs libtbb / libgomp
            importlib.import_module(f"numba.np.ufunc.{name}")
        except (ImportError, OSError):
            continue
        return True
    return False


@contextlib.contextmanager
def _passive_openmp() -> Iterator[None]:
    """Load Numba's OpenMP runtime with ``OMP_WAIT_POLICY=passive``, unless the user
    chose a wait policy: its idle threads then sleep at once instead of spinning.

    With the default (spin for a while), two processes each running parallel
    regions on the same cores spend their time slices spinning against each
    other: measured 1882 ms per epoch against 80 ms passive (reproducible mode,
    ``[64, 512, 256, 10]``, two processes on 2 shared cores). libgomp reads the
    variable once, when it loads, so it is set only around that load and does not
    reach other OpenMP runtimes or child processes. No effect if libgomp was
    loaded already.
    """
    chosen = any(v in os.environ for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"))
    if chosen:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


with _passive_openmp():
    if "NUMBA_THREADING_LAYER" not in os.environ and _threadsafe_layer_available():
        numba.config.THREADING_LAYER = "threadsafe"

_NEEDS_LOCK = numba.config.THREADING_LAYER in ("default", "workqueue")
_LOCK = threading.Lock()
_num_threads: int | None = None
_reproducible = os.environ.get("FASTBP_REPRODUCIBLE", "0") == "1"
# FASTBP_LOAD_AWARE=0: the default thread count ignores other running processes.
LOAD_AWARE = os.environ.get("FASTBP_LOAD_AWARE", "1") != "0"
_controller = None

# -- the thread budget ------------------------------------------------------------------
#
# Where the limits are read from; tests point these at fake files and functions.
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
PROC_LOADAVG = "/proc/loadavg"
PROC_TASKS = "/proc/self/task"
# Environment variables a host sets to limit threads (joblib/loky sets all of them
# in its worker processes, to cores // n_jobs).
ENV_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _affinity() -> int | None:
    """CPUs in this process's affinity mask (None where the OS cannot say)."""
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_dirs(controller: str | None) -> list[str]:
    """This process's cgroup directory for ``controller`` (None: cgroup v2) and
    every parent up to the root, innermost first; the root alone if unknown."""
    rel = None
    for line in (_read(PROC_CGROUP) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if (controller is None and parts[0] == "0" and parts[1] == "") or (
            controller is not None and controller in parts[1].split(",")
        ):
            rel = parts[2].strip()
            break
    if controller is None:
        base = CGROUP_ROOT
    else:
        mounts = [f"{CGROUP_ROOT}/{controller}", f"{CGROUP_ROOT}/cpu,cpuacct"]
        base = next((m for m in mounts if os.path.isdir(m)), mounts[0])
    dirs = []
    parts = [p for p in (rel or "").split("/") if p]
    while True:
        # In a container the process's path may not exist under the mount
        # (the container sees its own cgroup as the root): skip it.
        path = "/".join([base, *parts])
        if os.path.isdir(path):
            dirs.append(path)
        if not parts:
            return dirs
        parts.pop()


_quota_cache: dict[tuple[str, str], int | None] = {}


def _cgroup_quota() -> int | None:
    """CPUs the cgroup CPU quota allows: floor(quota / period), at least 1; None if
    no quota. Reads cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` in this process's cgroup and its parents (the smallest
    wins), once per process (per ``CGROUP_ROOT``, ``PROC_CGROUP``).
    """
    key = (CGROUP_ROOT, PROC_CGROUP)
    if key not in _quota_cache:
        _quota_cache[key] = _read_cgroup_quota()
    return _quota_cache[key]


def _read_cgroup_quota() -> int | None:
    quotas = []
    for d in _cgroup_dirs(None):
        fields = (_read(f"{d}/cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            quotas.append((fields[0], fields[1]))
    for d in _cgroup_dirs("cpu"):
        quota, period = _read(f"{d}/cpu.cfs_quota_us"), _read(f"{d}/cpu.cfs_period_us")
        if quota is not None and period is not None:
            quotas.append((quota.strip(), period.strip()))
    cpus = []
    for quota, period in quotas:
        try:
            q, p = int(quota), int(period)
        except ValueError:
            continue
        if q > 0 and p > 0:
            cpus.append(max(1, q // p))
    return min(cpus, default=None)


def _env_limits() -> dict[str, int]:
    """Thread counts set in the environment (``OMP_NUM_THREADS=4,2`` counts as 4)."""
    found = {}
    for name in ENV_LIMITS:
        value = os.environ.get(name)
        if not value:
            continue
        value = value.split(",")[0].strip()
        try:
            n = int(value)
        except ValueError:
            continue
        if n > 0:
            found[name] = n
    return found


def _others_running() -> int | None:
    """Threads of other processes running or ready to run right now, machine-wide
    (``/proc/loadavg``'s count of runnable threads minus this process's own);
    None where unknown."""
    text = _read(PROC_LOADAVG)
    try:
        runnable = int(text.split()[3].split("/")[0])
        tasks = os.listdir(PROC_TASKS)
    except (AttributeError, IndexError, ValueError, OSError):
        return None
    ours = 0
    for tid in tasks:
        stat = _read(f"{PROC_TASKS}/{tid}/stat") or ""
        ours += stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R"
    return max(0, runnable - max(ours, 1))


def _free_cpus() -> int | None:
    """CPUs of the machine not taken by other processes' runnable threads, at least 1
    (see :func:`_others_running`); None where unknown."""
    others = _others_running()
    if others is None:
        return None
    return max(1, (os.cpu_count() or 1) - others)


def _dask_worker_threads() -> int | None:
    """``nthreads`` of the Dask worker running this code (None outside one)."""
    distributed = sys.modules.get("distributed")  # a Dask worker imported it already
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except (ValueError, AttributeError):
        return None
    state = getattr(worker, "state", worker)
    n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    return n if isinstance(n, int) and n > 0 else None


def _pool_limits() -> dict[str, int]:
    """Threads of each BLAS / OpenMP pool loaded, as the host left them (threadpoolctl
    limits in force, or the library's default). Empty before fastbp's first BLAS use."""
    if _controller is None:
        return {}
    with _blas_lock:
        if _blas_users and _original_limits is not None:
            return dict(_original_limits)  # fastbp's own limit is in force: the host's
        return _current_pool_limits()


def _current_pool_limits() -> dict[str, int]:
    found: dict[str, int] = {}
    for lib in _controller.lib_controllers:
        n = lib.num_threads
        if isinstance(n, int) and n > 0:
            key = f"{lib.user_api} pool {os.path.basename(lib.filepath)}"
            found[key] = min(n, found.get(key, n))
    return found


@dataclasses.dataclass(frozen=True)
class ThreadInfo:
    """How many threads fastbp uses, and why (:func:`thread_info`).

    threads: fastbp's thread count (its BLAS calls and its own parallel code).
    reason: which limit decided it: ``"explicit"`` (``n_threads``,
        :func:`set_num_threads`, ``--threads``), ``"affinity"`` (the CPUs the
        process may run on), ``"quota"`` (a cgroup CPU quota), ``"environment"``
        (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``; joblib
        sets them in its workers), ``"host"`` (a threadpoolctl limit in force, a BLAS
        pool started smaller, a Dask worker's ``nthreads``), ``"numba"``
        (``NUMBA_NUM_THREADS``, the size of Numba's pool) or ``"load"`` (other
        processes are running: the CPUs they leave free, at least 1; checked at
        the start of every fit and predict).
    detail: the setting behind ``reason``, e.g. ``"OMP_NUM_THREADS=1"``.
    numba_threads: threads of fastbp's own parallel code, ``min(threads,
        NUMBA_NUM_THREADS)``: Numba cannot grow its pool after start-up.
    limits: every limit found, by name (the smallest decides unless explicit).
    threading_layer: Numba's threading layer.
    pools: threadpoolctl's description of every BLAS and OpenMP pool loaded.
    """

    threads: int
    reason: str
    detail: str
    numba_threads: int
    limits: dict[str, int]
    threading_layer: str
    pools: list[dict[str, Any]]


def _budget(
    n_threads: int | None = None, load: bool = True
) -> tuple[int, str, str, dict[str, int]]:
    """(threads, reason, detail, every limit found); ``load``: count other running
    processes (:data:`LOAD_AWARE`)."""
    limits: dict[str, int] = {}
    reasons: dict[str, str] = {}

    def add(name: str, reason: str, value: int | None) -> None:
        if value is not None:
            limits[name] = value
            reasons[name] = reason

    add("affinity", "affinity", _affinity())
    add("cgroup cpu quota", "quota", _cgroup_quota())
    for name, value in _env_limits().items():
        add(name, "environment", value)
    for name, value in _pool_limits().items():
        add(name, "host", value)
    add("dask worker nthreads", "host", _dask_worker_threads())
    add("NUMBA_NUM_THREADS", "numba", numba.config.NUMBA_NUM_THREADS)
    explicit = n_threads is not None or _num_threads is not None
    if load and LOAD_AWARE and not explicit and min(limits.values()) > 1:
        add("free cpus", "load", _free_cpus())
    if n_threads is not None:
        return n_threads, "explicit", f"n_threads={n_threads}", limits
    if _num_threads is not None:
        return _num_threads, "explicit", f"set_num_threads({_num_threads})", limits
    name = min(limits, key=lambda k: limits[k])  # the first of the smallest
    return limits[name], reasons[name], f"{name}={limits[name]}", limits


def thread_info(n_threads: int | None = None) -> ThreadInfo:
    """How many threads fastbp will use (for ``n_threads``, as a call would pass it),
    and why, with the BLAS and OpenMP pools loaded in the process."""
    from threadpoolctl import threadpool_info

    n_threads = check_threads("n_threads", n_threads)
    _ensure_controller()
    threads, reason, detail, limits = _budget(n_threads)
    return ThreadInfo(
        threads=threads,
        reason=reason,
        detail=detail,
        numba_threads=min(threads, numba.config.NUMBA_NUM_THREADS),
        limits=limits,
        threading_layer=_layer_name(),
        pools=threadpool_info(),
    )


def _layer_name() -> str:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel code has run yet: the layer asked for
        return str(numba.config.THREADING_LAYER)


def check_threads(name: str, n: int | None) -> int | None:
    from fastbp._validation import check_int

    return None if n is None else check_int(name, n, minimum=1)


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in fastbp's kernels and in BLAS during fit and predict.

    An explicit count wins over every limit of the default (see
    :func:`thread_info`), even above the CPUs the process may use (that
    oversubscribes the cores, which is slower unless other work leaves them
    idle). fastbp's own parallel code is capped at ``NUMBA_NUM_THREADS``, the
    size of Numba's pool, fixed at start-up; BLAS takes ``n``. ``None`` restores
    the default: the CPUs the process may use (affinity, cgroup quota) and the
    limits its host set (``OMP_NUM_THREADS`` and the like, threadpoolctl, joblib,
    Dask), whichever is smallest.
    """
    global _num_threads
    _num_threads = check_threads("n", n)


def get_num_threads(n_threads: int | None = None) -> int:
    """The number of threads fastbp uses (see :func:`set_num_threads`).

    ``n_threads``: a per-call count (an estimator's ``n_threads``), which wins.
    """
    n_threads = check_threads("n_threads", n_threads)
    if n_threads is not None:
        return n_threads
    if _num_threads is not None:
        return _num_threads
    return _budget()[0]


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


def kernel_threads(
    sizes: Sequence[int], rows: int, min_work: int, n_threads: int | None = None
) -> int | None:
    """The ``threads`` argument of fastbp's kernels for batches of ``rows``.

    None (serial code, never even compiled in parallel) unless in reproducible
    mode with a product of at least ``min_work`` multiply-adds, where splitting
    over threads pays. ``n_threads``: a per-call count (an estimator's
    ``n_threads``); None: :func:`get_num_threads` without the load check.
    """
    if not _reproducible:
        return None
    n_threads = check_threads("n_threads", n_threads)
    if _largest_product(sizes, rows) < min_work:
        return None
    # Also on one thread: big products are then cut into the same column blocks
    # as on several (kernels._n_blocks depends on the widths only), which is what
    # makes their results independent of the thread count, and so of the load;
    # compute_threads gives Numba as many threads as the load leaves.
    n = n_threads or _num_threads or _budget(load=False)[0]
    return min(n, numba.config.NUMBA_NUM_THREADS)


def _largest_product(sizes: Sequence[int], rows: int) -> int:
    """Multiply-adds of the biggest layer product for a batch of ``rows``."""
    widths = [int(s) for s in sizes]
    return max(rows * a * b for a, b in itertools.pairwise(widths))


class Threads:
    """What :func:`compute_threads` gives its body: the thread count in force, and
    :meth:`recheck` to follow the load during a long computation."""

    # Between two load checks of recheck (each reads /proc: about 0.1 ms).
    RECHECK_SECONDS = 0.5

    def __init__(self, n: int, adaptive: bool, rows_split: bool = False) -> None:
        self.n = n
        self._adaptive = adaptive
        self._rows_split = rows_split
        self._checked = time.monotonic()

    def recheck(self) -> int:
        """Call between chunks of work (the training loop: between its chunks of
        ~0.1 s). At most every ``RECHECK_SECONDS``, when the count is the default
        budget (not explicit), count the free CPUs again and move Numba's and (in
        the default mode, if no other Python thread is computing) BLAS's thread
        count to the new budget: a fit that started alone stops competing for a
        core when another process starts, and takes it back when that one ends.
        In reproducible mode the results do not change; in the default mode a
        product with a long inner dimension may round differently (like any
        change of thread count). Returns the count in force."""
        now = time.monotonic()
        if not self._adaptive or now - self._checked < self.RECHECK_SECONDS:
            return self.n
        self._checked = now
        n = _budget()[0]
        if n == self.n or self._rows_split:  # split steps: BLAS stays on one thread
            self.n = n
            return n
        if not _reproducible:
            with _blas_lock:
                if _blas_users != 1:  # another thread relies on the current limit
                    return self.n
                _release_openblas()
                for lib in _controller.select(user_api="blas").lib_controllers:
                    lib.set_num_threads(n)
                _release_openblas()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        self.n = n
        return n


@contextlib.contextmanager
def compute_threads(
    sizes: Sequence[int] | None = None,
    rows: int = 0,
    n_threads: int | None = None,
    rows_split: bool = False,
) -> Iterator[Threads]:
    """Run the body with Numba on :func:`get_num_threads` threads (at most
    ``NUMBA_NUM_THREADS``), BLAS on as many (or, in reproducible mode, on one).

    Given the layer widths ``sizes`` and the largest batch ``rows``, it sets
    nothing when every product is small enough to run on one thread anyway (as
    plain loops, or in a BLAS call that OpenBLAS keeps on one thread): setting
    the BLAS limits costs about 30 us, more than a whole fit of a tiny network.
    ``n_threads``: a per-call count (an estimator's ``n_threads``, ``--threads``)
    that wins over :func:`set_num_threads` and the default budget. Yields a
    :class:`Threads`; a long computation calls its ``recheck()`` between chunks.

    ``rows_split``: the steps are split by rows over fastbp's own two threads
    (:mod:`fastbp.engine.rows`), each calling BLAS: BLAS is kept on one thread,
    Numba's pool is left alone, and the count yielded (and rechecked) says
    whether a second thread may help.
    """
    n_threads = check_threads("n_threads", n_threads)
    if rows_split:
        n = get_num_threads(n_threads)
        adaptive = LOAD_AWARE and n_threads is None and _num_threads is None
        if sizes is not None and _largest_product(sizes, rows) <= BLAS_SERIAL_GEMM:
            yield Threads(n, adaptive, rows_split=True)
            return
        _ensure_controller()
        with _blas_limited(1):
            yield Threads(n, adaptive, rows_split=True)
        return
    if sizes is not None and _largest_product(sizes, rows) <= BLAS_SERIAL_GEMM:
        yield Threads(1, adaptive=False)
        return
    _ensure_controller()
    n = get_num_threads(n_threads)
    adaptive = LOAD_AWARE and n_threads is None and _num_threads is None
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    lock = _LOCK if _NEEDS_LOCK else contextlib.nullcontext()
    try:
        with lock, _blas_limited(1 if _reproducible else n):
            yield Threads(n, adaptive)
    finally:
        numba.set_num_threads(previous)


def _ensure_controller() -> None:
    global _controller
    with _blas_lock:
        if _controller is None:
            import scipy.linalg.cython_blas  # noqa: F401  (load Numba's BLAS for threadpoolctl)
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()


# BLAS limits are process-wide, so they are set when the first thread starts
# computing and restored when the last one stops: with a limit per thread, the
# first to finish would restore the BLAS pool under the others, whose products
# would then change (OpenBLAS's threaded gemm splits some inner dimensions
# differently) and compete with Numba's threads.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_original_limits: dict[str, int] | None = None  # the pools' limits before fastbp's


@contextlib.contextmanager
def _blas_limited(limit: int) -> Iterator[None]:
    global _blas_users, _blas_limiter, _original_limits
    with _blas_lock:
        if _blas_users == 0:
            _original_limits = _current_pool_limits()
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
                _original_limits = None


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
