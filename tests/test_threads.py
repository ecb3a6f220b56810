"""Threads: Python threads training separate models at once give bit-identical
results to training them one after another, and never abort the process, with
the default (thread-safe) threading layer and with Numba's workqueue forced."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pytest
from child_process import run_script

import fastbp

SCRIPT = Path(__file__).parent / "scripts" / "child.py"
_spec = importlib.util.spec_from_file_location("fastbp_test_child_threads", SCRIPT)
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)

N_THREADS = 4


def run_child(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    return run_script(SCRIPT, *args, env=env, timeout=timeout)


@pytest.mark.parametrize("name", child.THREAD_NAMES)
def test_fit_in_another_thread_matches_main_thread(name):
    """Deterministic regression test: BLAS limits set from a non-main thread used
    to be ignored (threadpoolctl lets only one thread control OpenBLAS), so the
    784-input products ran multi-threaded there and rounded differently."""
    here = child.train_digest(name, seed=5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        there = pool.submit(child.train_digest, name, seed=5).result()
    assert there == here


def _concurrently(jobs):
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: child.train_digest(job[0], seed=job[1]), jobs))


def test_concurrent_fits_match_sequential():
    jobs = child.thread_jobs(N_THREADS)
    for name in child.THREAD_NAMES:  # compile outside the race
        child.train_digest(name, epochs=1)
    sequential = [child.train_digest(name, seed=seed) for name, seed in jobs]
    for _ in range(3):  # the threads finish in a different order each time
        assert _concurrently(jobs) == sequential


def test_concurrent_predict_and_fit_on_one_thread_count():
    """predict/loss/gradients in some threads while others fit: same numbers."""
    net = fastbp.Network([100, 256, 128, 10], seed=0)
    x, y = child.data(100, 10)
    expected = (net.predict(x), net.loss(x, y), net.gradients(x, y)[0][0])

    def evaluate(_):
        return net.predict(x), net.loss(x, y), net.gradients(x, y)[0][0]

    def fit(seed):
        return child.train_digest("mlp-float64-ordered", seed=seed)

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        evals = [pool.submit(evaluate, i) for i in range(N_THREADS)]
        fits = [pool.submit(fit, i) for i in range(2)]
        for fut in evals:
            p, loss, g = fut.result()
            assert p.tobytes() == expected[0].tobytes()
            assert loss == expected[1]
            assert g.tobytes() == expected[2].tobytes()
        assert [f.result() for f in fits] == [fit(0), fit(1)]


@pytest.mark.slow
@pytest.mark.parametrize("layer", [None, "workqueue"])
def test_threads_in_subprocess(layer, tmp_path):
    """Reproducible mode, where fastbp's own parallel kernels run: concurrent fits
    from several Python threads, with the default layer and with workqueue forced."""
    env = {"NUMBA_NUM_THREADS": "2", "FASTBP_REPRODUCIBLE": "1"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    result = run_child("threads", str(N_THREADS), env=env)
    assert result["concurrent"] == result["sequential"]
    if layer:
        assert result["layer"] == layer
    else:
        assert result["layer"] in ("tbb", "omp")
    # And the same numbers as this process, whatever its layer.
    fastbp.set_reproducible(True)
    try:
        jobs = child.thread_jobs(N_THREADS)
        here = [child.train_digest(name, seed=seed) for name, seed in jobs]
    finally:
        fastbp.set_reproducible(False)
    assert result["sequential"] == here


def test_set_num_threads_is_checked():
    with pytest.raises(ValueError, match="n must be"):
        fastbp.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be"):
        fastbp.set_num_threads(1.0)
    before = fastbp.get_num_threads()
    try:
        fastbp.set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)  # allowed: more than cores
        assert fastbp.get_num_threads() == numba.config.NUMBA_NUM_THREADS + 1
        fastbp.set_num_threads(1)
        assert fastbp.get_num_threads() == 1
        net = fastbp.Network([4, 3], seed=0)
        net.fit(np.ones((2, 4)), np.ones((2, 3)), epochs=1)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # restored
    finally:
        fastbp.set_num_threads(None)
    assert fastbp.get_num_threads() == before or fastbp.thread_info().reason == "load"
