"""Determinism: the same seed gives bit-identical weights, run after run; in
reproducible mode also with 1 or 2 threads, in-process (fastbp.set_num_threads) and
across processes (NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numba
import pytest
from child_process import run_script

import fastbp

SCRIPT = Path(__file__).parent / "scripts" / "child.py"
_spec = importlib.util.spec_from_file_location("fastbp_test_child", SCRIPT)
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)

TWO_THREADS = numba.config.NUMBA_NUM_THREADS >= 2


def run_child(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    return run_script(SCRIPT, *args, env=env, timeout=timeout)


@pytest.fixture
def threads():
    yield fastbp.set_num_threads
    fastbp.set_num_threads(None)
    fastbp.set_reproducible(False)


@pytest.mark.parametrize("name", list(child.WORKLOADS))
def test_same_seed_same_weights(name, threads):
    """Default mode: bit-identical run after run, for each thread count."""
    first = child.train_digest(name)
    assert child.train_digest(name) == first
    assert child.train_digest(name, seed=12) != first
    if TWO_THREADS:
        threads(1)
        assert child.train_digest(name) == child.train_digest(name)


@pytest.mark.skipif(not TWO_THREADS, reason="needs 2 cores")
@pytest.mark.parametrize("name", list(child.WORKLOADS))
def test_reproducible_mode_ignores_thread_count(name, threads):
    """set_reproducible(True): the same bits with 1 and 2 threads."""
    fastbp.set_reproducible(True)
    first = child.train_digest(name)
    threads(1)
    one = child.train_digest(name)
    threads(2)
    two = child.train_digest(name)
    assert one == two == first


def test_workloads_take_the_parallel_paths():
    """The shapes above really reach the threaded kernels."""
    from fastbp import _jit

    for sizes, _dtype, batch, _shuffle in child.WORKLOADS.values():
        rows = batch or child.N_ROWS
        assert all(rows * width >= _jit.PARALLEL_MIN for width in sizes[1:-1])
        if hasattr(_jit, "PARALLEL_GEMM"):
            assert rows * sizes[0] * sizes[1] >= _jit.PARALLEL_GEMM


@pytest.mark.slow
@pytest.mark.skipif(not TWO_THREADS, reason="needs 2 cores")
def test_thread_count_across_processes(threads):
    """In reproducible mode (FASTBP_REPRODUCIBLE=1), NUMBA_NUM_THREADS=1 and =2, and
    OpenBLAS's own pool at 1 or 2 threads, give the same bits as this process."""
    fastbp.set_reproducible(True)
    here = {name: child.train_digest(name) for name in child.WORKLOADS}
    repro = {"FASTBP_REPRODUCIBLE": "1"}
    runs = {
        "numba1": run_child("digest", env={**repro, "NUMBA_NUM_THREADS": "1"}),
        "numba2": run_child("digest", env={**repro, "NUMBA_NUM_THREADS": "2"}),
        "blas1-numba2": run_child(
            "digest", env={**repro, "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}
        ),
    }
    assert runs["numba1"]["threads"] == 1
    assert runs["numba2"]["threads"] == 2
    for label, run in runs.items():
        assert run["digests"] == here, label
