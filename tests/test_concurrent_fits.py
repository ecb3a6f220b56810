"""Concurrent fits: estimators fitted from several Python threads at once give the
bits of fitting them one after another, predicting while others fit gives the same
numbers, and a fit in another thread matches the main thread's.

The scikit-learn estimators here; Network's tests of the same guarantee are in
test_threads.py (one file, both front ends, once its owner moves them here)."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from child_process import run_script
from frontends import SCRIPTS, sk_child
from sklearn.exceptions import ConvergenceWarning

import fastbp

SCRIPT = SCRIPTS / "sklearn_child.py"


N_THREADS = 4


@pytest.fixture(scope="module")
def compiled():
    """Every thread workload run once: compiled outside the races."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name in sk_child.THREAD_NAMES:
            sk_child.fit_digest(name)


@pytest.mark.parametrize("name", sk_child.THREAD_NAMES)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_in_another_thread_matches_main_thread(compiled, name):
    here = sk_child.fit_digest(name, seed=5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        there = pool.submit(sk_child.fit_digest, name, 5).result()
    assert there == here


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_concurrent_fits_match_sequential(compiled):
    """Four threads fitting separate estimators at once (every solver, both dtypes and
    estimators) give the bits of fitting them one after another."""
    jobs = sk_child.thread_jobs(N_THREADS)
    sequential = [sk_child.fit_digest(name, seed) for name, seed in jobs]
    for _ in range(2):  # the threads finish in a different order each time
        assert sk_child.concurrently(jobs) == sequential


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_concurrent_predict_while_fitting(compiled):
    """predict_proba and score in some threads while others fit: the same numbers."""
    name = "clf-adam-float64-shuffle"
    x, y = sk_child.data(name)
    est = sk_child.make(name, seed=3).fit(x, y)
    expected = (est.predict_proba(x), est.score(x, y))

    def evaluate(_):
        return est.predict_proba(x), est.score(x, y)

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        evals = [pool.submit(evaluate, i) for i in range(N_THREADS)]
        fits = [pool.submit(sk_child.fit_digest, name, i) for i in range(2)]
        for fut in evals:
            proba, score = fut.result()
            assert proba.tobytes() == expected[0].tobytes()
            assert score == expected[1]
        assert [f.result() for f in fits] == [sk_child.fit_digest(name, i) for i in range(2)]


def run_child(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    return run_script(SCRIPT, *args, env=env, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("layer", [None, "workqueue"])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_threads_in_subprocess(layer):
    """Reproducible mode, where fastbp's own threaded kernels run: concurrent fits from
    four Python threads, with the default layer and with workqueue forced (not
    thread-safe: fastbp serialises its parallel calls), match the sequential ones and
    this process's."""
    env = {"NUMBA_NUM_THREADS": "2", "FASTBP_REPRODUCIBLE": "1"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    result = run_child("threads", str(N_THREADS), env=env)
    assert result["concurrent"] == result["sequential"]
    if layer:
        assert result["layer"] == layer
    fastbp.set_reproducible(True)
    try:
        here = [sk_child.fit_digest(name, seed) for name, seed in sk_child.thread_jobs(N_THREADS)]
    finally:
        fastbp.set_reproducible(False)
    assert result["sequential"] == here
