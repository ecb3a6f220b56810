"""Shared benchmark machinery: options, thread pinning, the timing helper, machine info.

Run for real with ``python bench/report.py`` (or ``pytest bench --benchmark-enable``).
Under the default ``--benchmark-disable`` (CI's smoke run) every benchmark still
builds its inputs and runs its function, but big cases are cut to one batch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np
import pytest
import threadpoolctl

import fastbp
from bench import machine
from bench.cases import Case

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MACHINE_KEY = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastbp-bench")
    group.addoption(
        "--bench-budget",
        type=float,
        default=1.0,
        help="seconds of timed rounds to aim at per benchmark (default 1.0)",
    )
    group.addoption(
        "--bench-min-rounds",
        type=int,
        default=5,
        help="fewest timed rounds per benchmark (default 5)",
    )
    group.addoption(
        "--bench-threads",
        type=int,
        default=None,
        help="threads for fastbp, BLAS and PyTorch (default: fastbp.get_num_threads())",
    )
    group.addoption(
        "--bench-wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each benchmark, wait up to this long for other processes to go idle",
    )
    group.addoption(
        "--bench-full",
        action="store_true",
        help="run big cases at full size even with --benchmark-disable",
    )


def benchmarks_enabled(config: pytest.Config) -> bool:
    """Whether this run times anything (pytest-benchmark's --benchmark-enable/disable)."""
    return bool(config.getoption("benchmark_enable")) or not config.getoption("benchmark_disable")


def effective_case(case: Case, config: pytest.Config) -> Case:
    """The case to run. In the smoke run (benchmarks disabled) big cases shrink to one
    batch, and every case runs at most 2 epochs per call: it checks code paths, not speed.
    """
    if benchmarks_enabled(config) or config.getoption("bench_full"):
        return case
    smoke = case.reduced() if case.big else case
    return dataclasses.replace(smoke, fastbp_epochs=min(smoke.fastbp_epochs, 2), peer_epochs=1)


@pytest.fixture(scope="session", autouse=True)
def pinned_threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run Numba, every BLAS and (when imported) PyTorch on fastbp's thread count."""
    chosen = request.config.getoption("bench_threads")
    if chosen is not None:
        fastbp.set_num_threads(chosen)
    n = fastbp.get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    import scipy.linalg.cython_blas  # noqa: F401  (load Numba's BLAS so threadpoolctl limits it)

    with threadpoolctl.threadpool_limits(limits=n, user_api="blas"):
        yield n
        # As the run leaves it: libraries loaded, pools pinned, Numba's pool started.
        request.config.stash[MACHINE_KEY] = machine_info()
    numba.set_num_threads(previous)
    if chosen is not None:
        fastbp.set_num_threads(None)


Measure = Callable[[Callable[[], None], dict[str, Any]], None]


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), or NaNs."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    times = os.times()
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), times.user + times.system


def other_load(seconds: float) -> float:
    """Fraction of the machine's cores that other processes kept busy over ``seconds``."""
    busy0, own0 = _cpu_seconds()
    time.sleep(seconds)
    busy1, own1 = _cpu_seconds()
    return max(0.0, (busy1 - busy0 - (own1 - own0)) / (seconds * (os.cpu_count() or 1)))


def wait_for_quiet(max_wait: float, limit: float = 0.1) -> float:
    """Sleep until other processes use under ``limit`` of the CPU (at most ``max_wait`` s)."""
    deadline = time.monotonic() + max_wait
    load = other_load(0.3)
    while load > limit and time.monotonic() < deadline:
        load = other_load(1.0)
    return load


@pytest.fixture
def measure(benchmark: Any, request: pytest.FixtureRequest) -> Measure:
    """``measure(fn, info)``: warm ``fn`` up untimed, then time it with pytest-benchmark.

    In the smoke run ``fn`` is just called once. Otherwise two untimed calls (the
    first compiles; the second estimates the duration), then timed rounds aiming at
    ``--bench-budget`` seconds in total (at least ``--bench-min-rounds``); calls
    shorter than a millisecond are repeated within a round. ``info`` goes into
    ``benchmark.extra_info`` together with the warm-up times.
    """
    config = request.config

    def run(fn: Callable[[], None], info: dict[str, Any]) -> None:
        benchmark.extra_info.update(info)
        if not benchmarks_enabled(config):
            benchmark(fn)  # the smoke run: one untimed call
            return
        t0 = time.perf_counter()
        fn()  # compile, allocate, initialise: never timed
        first = time.perf_counter() - t0
        benchmark.extra_info["first_call_s"] = first
        t0 = time.perf_counter()
        fn()  # the first call may be mostly compilation: time a second one
        estimate = time.perf_counter() - t0
        benchmark.extra_info["second_call_s"] = estimate
        iterations = max(1, math.ceil(1e-3 / max(estimate, 1e-9)))
        per_round = estimate * iterations
        rounds = math.ceil(config.getoption("bench_budget") / per_round)
        rounds = min(max(rounds, config.getoption("bench_min_rounds")), 1000)
        if config.getoption("bench_wait_quiet") > 0:
            wait_for_quiet(config.getoption("bench_wait_quiet"))
        busy0, own0 = _cpu_seconds()
        t0 = time.perf_counter()
        benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=0)
        wall = time.perf_counter() - t0
        busy1, own1 = _cpu_seconds()
        # Other processes' share of the cores while this benchmark ran (0 on a quiet machine).
        other = (busy1 - busy0 - (own1 - own0)) / (wall * (os.cpu_count() or 1))
        benchmark.extra_info["other_cpu"] = max(0.0, other) if math.isfinite(other) else None

    return run


def machine_info() -> dict[str, Any]:
    """The CPU, core count, library versions and BLAS builds of this process."""
    cpu, flags = machine.cpu()
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions["numba"] = numba.__version__
    versions["fastbp"] = fastbp.__version__
    for name in ("scipy", "sklearn", "torch", "threadpoolctl"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    import scipy.linalg.cython_blas  # noqa: F401

    keys = ("internal_api", "version", "architecture", "num_threads", "prefix")
    blas = [{k: lib.get(k) for k in keys} for lib in threadpoolctl.threadpool_info()]
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = None
    return {
        "cpu_model": cpu,
        "cpu_flags": flags,
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        "fastbp_threads": fastbp.get_num_threads(),
        "numba_threading_layer": layer,
        "versions": versions,
        "threadpools": blas,
        "env": {var: os.environ.get(var) for var in (*OPENBLAS_VARS, "NUMBA_CACHE_DIR")},
    }


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Record the machine in the JSON, as the timed run saw it."""
    output_json["fastbp_machine"] = config.stash.get(MACHINE_KEY, None) or machine_info()
