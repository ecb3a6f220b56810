"""Determinism: the same seed gives a bit-identical model, run after run and in
another process, for both front ends (``frontends.FRONT_ENDS``): Network's weights
and generator, the estimators' weights, optimizer state, loss curve, validation
scores and counts. In reproducible mode also with 1 or 2 threads, in-process
(fastbp.set_num_threads) and across processes (NUMBA_NUM_THREADS,
OPENBLAS_NUM_THREADS)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from child_process import run_script
from frontends import FRONT_ENDS, SCRIPTS, net_child, sk_child, train_data

import fastbp
from fastbp import sklearn as fb

SCRIPT = SCRIPTS / "child.py"
SK_SCRIPT = SCRIPTS / "sklearn_child.py"
child = net_child
WORKLOADS = [
    pytest.param(front_end, name, id=f"{front_end}-{name}")
    for front_end, spec in FRONT_ENDS.items()
    for name in spec.workloads
]

TWO_THREADS = numba.config.NUMBA_NUM_THREADS >= 2


@pytest.fixture
def threads():
    yield fastbp.set_num_threads
    fastbp.set_num_threads(None)
    fastbp.set_reproducible(False)


@pytest.mark.parametrize(("front_end", "name"), WORKLOADS)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_same_seed_same_model(front_end, name, threads):
    """Default mode: bit-identical run after run, another seed another model; Network
    also on one thread."""
    digest = FRONT_ENDS[front_end].digest
    first = digest(name)
    assert digest(name) == first
    assert digest(name, seed=12) != first
    if TWO_THREADS and front_end == "Network":
        threads(1)
        assert digest(name) == digest(name)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_same_random_state_instance_same_model():
    """The estimators: a RandomState passed as random_state: equal seeds give equal models."""
    x, y = train_data("MLPClassifier", 60)
    digests = []
    for _ in range(2):
        est = fb.MLPClassifier(
            hidden_layer_sizes=(6,), solver="sgd", max_iter=3, batch_size=8, early_stopping=True
        )
        est.set_params(random_state=np.random.RandomState(7), validation_fraction=0.2)
        digests.append(sk_child.digest(est.fit(x, y)))
    assert digests[0] == digests[1]


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


# front end: (script, its arguments, {run: (environment, thread count)}, reproducible)
PROCESSES = {
    "Network": (
        SCRIPT,
        (),
        {
            "numba1": ({"FASTBP_REPRODUCIBLE": "1", "NUMBA_NUM_THREADS": "1"}, 1),
            "numba2": ({"FASTBP_REPRODUCIBLE": "1", "NUMBA_NUM_THREADS": "2"}, 2),
            "blas1-numba2": (
                {"FASTBP_REPRODUCIBLE": "1", "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"},
                None,
            ),
        },
        True,
    ),
    # every solver, dtype and estimator, in the default mode and thread count
    "sklearn": (SK_SCRIPT, tuple(sk_child.THREAD_NAMES), {"default": ({}, "same")}, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("front_end", list(PROCESSES))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_same_model_in_another_process(front_end, threads):
    """A fresh process (its own BLAS and Numba state) fits the same bits as this one.
    Network: in reproducible mode (FASTBP_REPRODUCIBLE=1), with NUMBA_NUM_THREADS=1 and
    =2, and OpenBLAS's own pool at 1 or 2 threads (needs 2 cores). The estimators: in
    the default mode, on this process's thread count."""
    script, args, runs, reproducible = PROCESSES[front_end]
    if reproducible and not TWO_THREADS:
        pytest.skip("needs 2 cores")
    fastbp.set_reproducible(reproducible)
    names = args or FRONT_ENDS[front_end].workloads
    here = {name: FRONT_ENDS[front_end].digest(name) for name in names}
    for label, (env, n_threads) in runs.items():
        run = run_script(script, "digest", *args, env=env, timeout=300)
        if n_threads == "same":
            assert run["threads"] == fastbp.get_num_threads()
        elif n_threads is not None:
            assert run["threads"] == n_threads
        assert run["digests"] == here, label
