"""The thread budget: how many threads fastbp uses by default and why.

The limits are faked (affinity reader, cgroup files, /proc/loadavg, a Dask worker),
except threadpoolctl limits and environment variables, which are real. Nothing is
timed. The nested fits (joblib, GridSearchCV) must match the same fits run one after
another bit for bit.
"""

from __future__ import annotations

import os
import sys
import types
import warnings

import numba
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp
from fastbp import _threads

NUMBA_MAX = numba.config.NUMBA_NUM_THREADS


@pytest.fixture
def budget(monkeypatch, tmp_path):
    """A clean slate: 8 CPUs in the mask, no cgroup quota, no environment limits, no
    pools, no load check, no explicit count. Tests change one limit at a time."""
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/\n")
    monkeypatch.setattr(_threads, "CGROUP_ROOT", str(root))
    monkeypatch.setattr(_threads, "PROC_CGROUP", str(proc))
    monkeypatch.setattr(_threads, "_quota_cache", {})
    monkeypatch.setattr(_threads, "_affinity", lambda: 8)
    monkeypatch.setattr(_threads, "_pool_limits", dict)
    monkeypatch.setattr(_threads, "LOAD_AWARE", False)
    monkeypatch.setattr(_threads, "_num_threads", None)
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 64)
    for name in _threads.ENV_LIMITS:
        monkeypatch.delenv(name, raising=False)
    return types.SimpleNamespace(root=root, proc=proc)


def test_clean_slate_uses_the_affinity_mask(budget):
    info = fastbp.thread_info()
    assert (info.threads, info.reason, info.detail) == (8, "affinity", "affinity=8")
    assert fastbp.get_num_threads() == 8


def test_an_affinity_mask_of_one_cpu_gives_one_thread(budget, monkeypatch):
    monkeypatch.setattr(_threads, "_affinity", lambda: 1)
    assert fastbp.get_num_threads() == 1
    assert fastbp.thread_info().reason == "affinity"


def test_real_affinity_reader_counts_the_mask():
    assert _threads._affinity() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("150000 100000\n", 1), ("250000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 8)],
)
def test_cgroup_v2_quota_is_floored_to_at_least_one(budget, cpu_max, expected):
    (budget.root / "cpu.max").write_text(cpu_max)
    info = fastbp.thread_info()
    assert info.threads == expected
    assert info.reason == ("quota" if expected < 8 else "affinity")


def test_cgroup_v2_quota_of_a_parent_cgroup_counts(budget):
    """A limit set on a parent cgroup binds its children; the smallest wins."""
    leaf = budget.root / "system.slice" / "job.scope"
    leaf.mkdir(parents=True)
    (leaf / "cpu.max").write_text("max 100000\n")
    (budget.root / "system.slice" / "cpu.max").write_text("300000 100000\n")
    budget.proc.write_text("0::/system.slice/job.scope\n")
    assert fastbp.thread_info().limits["cgroup cpu quota"] == 3


def test_cgroup_v1_quota(budget):
    cpu = budget.root / "cpu,cpuacct"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("150000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    budget.proc.write_text("4:memory:/x\n2:cpu,cpuacct:/\n0::/\n")
    info = fastbp.thread_info()
    assert (info.threads, info.reason) == (1, "quota")
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    _threads._quota_cache.clear()
    assert fastbp.get_num_threads() == 8


def test_unreadable_cgroup_files_mean_no_quota(budget):
    (budget.root / "cpu.max").write_text("garbage\n")
    budget.proc.write_text("not a cgroup line\n")
    assert fastbp.get_num_threads() == 8


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"])
def test_environment_limits_are_never_exceeded(budget, monkeypatch, name):
    monkeypatch.setenv(name, "1")
    info = fastbp.thread_info()
    assert (info.threads, info.reason, info.detail) == (1, "environment", f"{name}=1")


def test_environment_limits_parse_like_openmp(budget, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")  # nested levels: the outer one counts
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "")  # empty, ignored
    monkeypatch.setenv("MKL_NUM_THREADS", "lots")  # not a number, ignored
    assert fastbp.get_num_threads() == 3


def test_blas_is_not_raised_above_the_environment_in_a_fit(monkeypatch):
    """Real pools: with OPENBLAS_NUM_THREADS=1 set (as loky sets it in joblib's
    workers), fastbp's products run with BLAS on one thread."""
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    with _threads.compute_threads([784, 256, 10], 128):
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and max(blas) == 1
        assert numba.get_num_threads() == 1


def test_threadpoolctl_limits_in_force_are_respected():
    fastbp.thread_info()  # load the BLAS fastbp calls
    with threadpool_limits(limits=1, user_api="blas"):
        info = fastbp.thread_info()
        assert (info.threads, info.reason) == (1, "host")
        with _threads.compute_threads([784, 256, 10], 128):
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            assert max(blas) == 1
            # A second user inside fastbp's own limit still sees the host's limit.
            assert fastbp.get_num_threads() == 1
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert max(blas) == 1  # restored to the host's limit, not to the default


def test_a_dask_worker_nthreads_is_a_limit(budget, monkeypatch):
    worker = types.SimpleNamespace(state=types.SimpleNamespace(nthreads=2))
    fake = types.ModuleType("distributed")
    fake.get_worker = lambda: worker
    monkeypatch.setitem(sys.modules, "distributed", fake)
    info = fastbp.thread_info()
    assert (info.threads, info.reason, info.detail) == (2, "host", "dask worker nthreads=2")

    def not_in_a_worker():
        raise ValueError("No worker found")

    fake.get_worker = not_in_a_worker
    assert fastbp.get_num_threads() == 8


def test_other_running_processes_take_cpus(budget, monkeypatch, tmp_path):
    """/proc/loadavg's runnable count, minus this process's own running threads."""
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("3.10 2.00 1.00 5/321 4242\n")
    tasks = tmp_path / "task"
    for tid, state in [(1, "R"), (2, "S"), (3, "R")]:
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (py (thread) x) {state} 1 1 1 0\n")
    monkeypatch.setattr(_threads, "PROC_LOADAVG", str(loadavg))
    monkeypatch.setattr(_threads, "PROC_TASKS", str(tasks))
    assert _threads._others_running() == 3
    monkeypatch.setattr(_threads, "LOAD_AWARE", True)
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 4)
    info = fastbp.thread_info()
    assert (info.threads, info.reason) == (1, "load")
    loadavg.write_text("0.10 0.10 0.10 2/321 4242\n")  # only this process runs
    assert fastbp.get_num_threads() == 4
    loadavg.write_text("")  # unreadable: no load limit
    assert fastbp.get_num_threads() == 8


def test_explicit_counts_win_over_every_limit(budget, monkeypatch):
    monkeypatch.setattr(_threads, "_affinity", lambda: 1)
    (budget.root / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(_threads, "_pool_limits", lambda: {"blas pool x": 1})
    monkeypatch.setattr(_threads, "LOAD_AWARE", True)
    monkeypatch.setattr(_threads, "_others_running", lambda: 99)
    assert fastbp.get_num_threads() == 1
    fastbp.set_num_threads(3)
    info = fastbp.thread_info()
    assert (info.threads, info.reason, info.detail) == (3, "explicit", "set_num_threads(3)")
    # A per-call count (an estimator's n_threads, --threads) wins over set_num_threads.
    info = fastbp.thread_info(n_threads=2)
    assert (info.threads, info.reason, info.detail) == (2, "explicit", "n_threads=2")
    assert fastbp.get_num_threads(n_threads=2) == 2
    fastbp.set_num_threads(None)
    assert fastbp.get_num_threads() == 1


def test_more_threads_than_cpus_is_allowed_and_numba_is_capped():
    """An explicit count above NUMBA_NUM_THREADS: BLAS gets it, Numba's fixed pool
    gives what it has."""
    n = NUMBA_MAX + 1
    info = fastbp.thread_info(n_threads=n)
    assert (info.threads, info.numba_threads) == (n, NUMBA_MAX)
    before = numba.get_num_threads()
    with _threads.compute_threads([784, 256, 10], 128, n_threads=n):
        assert numba.get_num_threads() == NUMBA_MAX
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert min(blas) == n
    assert numba.get_num_threads() == before


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-2, ValueError), (1.5, TypeError), (2.0, TypeError), (True, TypeError)],
)
def test_bad_thread_counts_are_clear_errors(value, error):
    with pytest.raises(error, match="n must be"):
        fastbp.set_num_threads(value)
    for call in (
        lambda: fastbp.thread_info(n_threads=value),
        lambda: fastbp.get_num_threads(n_threads=value),
        lambda: _threads.compute_threads([2, 3], 1, n_threads=value).__enter__(),
    ):
        with pytest.raises(error, match="n_threads must be"):
            call()
    assert _threads._num_threads is None


def test_thread_info_lists_the_pools():
    info = fastbp.thread_info()
    assert isinstance(info, fastbp.ThreadInfo)
    assert any(p["user_api"] == "blas" for p in info.pools)
    assert info.threading_layer
    assert 1 <= info.numba_threads <= NUMBA_MAX


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.skipif(NUMBA_MAX < 2 or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_recheck_follows_the_load_during_a_fit(monkeypatch):
    """A long fit that started alone drops to the free CPUs when another process
    starts, and takes them back when it ends; the host's limits come back after."""
    for name in _threads.ENV_LIMITS:
        monkeypatch.delenv(name, raising=False)
    others = [0]
    monkeypatch.setattr(_threads, "LOAD_AWARE", True)
    monkeypatch.setattr(_threads, "_others_running", lambda: others[0])
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_threads.Threads, "RECHECK_SECONDS", 0.0)
    fastbp.thread_info()  # load the BLAS fastbp calls
    before = _blas_threads()
    with _threads.compute_threads([784, 256, 10], 128) as threads:
        assert threads.n == 2 and min(_blas_threads()) == 2
        others[0] = 1
        assert threads.recheck() == 1
        assert max(_blas_threads()) == 1 and numba.get_num_threads() == 1
        others[0] = 0
        assert threads.recheck() == 2
        assert min(_blas_threads()) == 2 and numba.get_num_threads() == 2
    assert _blas_threads() == before
    # An explicit count is left alone.
    with _threads.compute_threads([784, 256, 10], 128, n_threads=2) as threads:
        others[0] = 1
        assert threads.recheck() == 2 and min(_blas_threads()) == 2


@pytest.mark.skipif(numba.config.THREADING_LAYER == "workqueue", reason="no OpenMP layer")
@pytest.mark.parametrize(("policy", "spincount"), [(None, "0"), ("active", "30000000000")])
def test_numba_openmp_waits_passively_unless_the_user_chose(policy, spincount):
    """libgomp as Numba loads it through fastbp: spin count 0 (sleep at once) by
    default, the user's OMP_WAIT_POLICY otherwise; the variable is not left set."""
    import subprocess

    code = (
        "import ctypes, os, fastbp\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
        "ctypes.CDLL('libgomp.so.1').omp_display_env(1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    try:
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    except OSError as exc:  # pragma: no cover
        pytest.skip(str(exc))
    if run.returncode or "GOMP_SPINCOUNT" not in run.stderr:
        pytest.skip("Numba's OpenMP runtime is not GNU libgomp here")
    assert run.stdout.split()[0] == str(policy)
    assert f"GOMP_SPINCOUNT = '{spincount}'" in run.stderr


def test_small_networks_set_no_limits(monkeypatch):
    """Products OpenBLAS keeps on one thread anyway: no budget, no BLAS limit call."""

    def fail(*_args, **_kwargs):
        raise AssertionError("budget computed")

    monkeypatch.setattr(_threads, "get_num_threads", fail)
    with _threads.compute_threads([64, 32, 10], 32):
        pass


# -- nested fits: bit-identical to the same fits one after another ----------------------


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x[:600] / 16.0).astype(np.float32), y[:600]


def _fit(seed: int, reproducible: bool = False) -> list[bytes]:
    """A fit's weights; ``reproducible``: in reproducible mode (set in the process
    that fits: a joblib worker does not inherit the parent's mode)."""
    x, y = _digits()
    model = fastbp.MLPClassifier(
        hidden_layer_sizes=(64,), max_iter=5, random_state=seed, n_iter_no_change=10
    )
    before = fastbp.get_reproducible()
    fastbp.set_reproducible(reproducible)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter reached
            model.fit(x, y)
    finally:
        fastbp.set_reproducible(before)
    return [w.tobytes() for w in model.coefs_ + model.intercepts_]


@pytest.mark.slow
def test_joblib_parallel_fits_match_sequential():
    """joblib's workers run one thread each (loky sets OMP_NUM_THREADS=1) where this
    process runs two: in reproducible mode the results do not depend on that. (In the
    default mode, OpenBLAS's two-thread products round some shapes differently from
    its one-thread ones, this digits fit among them.)"""
    from joblib import Parallel, delayed

    seeds = [0, 1, 2]
    nested = Parallel(n_jobs=2)(delayed(_fit)(s, True) for s in seeds)
    assert nested == [_fit(s, True) for s in seeds]


@pytest.mark.slow
def test_grid_search_n_jobs_matches_sequential():
    from sklearn.model_selection import GridSearchCV

    x, y = _digits()
    base = fastbp.MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, n_iter_no_change=10)
    grid = {"random_state": [0, 1], "learning_rate_init": [1e-3, 1e-2]}
    results = []
    for n_jobs in (2, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = GridSearchCV(base, grid, cv=2, n_jobs=n_jobs).fit(x, y)
        results.append(
            (
                search.cv_results_["mean_test_score"].tobytes(),
                [w.tobytes() for w in search.best_estimator_.coefs_],
            )
        )
    assert results[0] == results[1]


@pytest.mark.slow
def test_dask_local_cluster_fits_match_sequential(dask_client):
    """Fits on a Dask LocalCluster (two worker processes, one thread each) equal the
    same fits run here one after another (in reproducible mode, as for joblib)."""
    import cloudpickle

    # The workers cannot import this test module: send _fit by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        seeds = [0, 1, 2]
        futures = dask_client.map(_fit, seeds, reproducible=True, pure=False)
        nested = dask_client.gather(futures)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert nested == [_fit(s, True) for s in seeds]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_estimator_n_threads_is_checked_before_anything(bad):
    """A bad ``n_threads`` is scikit-learn's parameter error, and the estimator is
    left unfitted."""
    x = np.random.default_rng(0).random((20, 3))
    est = fastbp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, n_threads=bad)
    with pytest.raises((ValueError, TypeError), match="n_threads"):
        est.fit(x, np.arange(20) % 2)
    assert not hasattr(est, "coefs_")


def test_estimator_n_threads_reaches_the_engine(monkeypatch):
    """``n_threads`` is the count the fit and the prediction ask for."""
    from fastbp.engine import driver, predict

    asked = []
    real = driver.compute_threads

    def spy(sizes=None, rows=0, n_threads=None, **kwargs):
        asked.append(n_threads)
        return real(sizes, rows, n_threads, **kwargs)

    monkeypatch.setattr(driver, "compute_threads", spy)
    monkeypatch.setattr(predict, "compute_threads", spy)
    x = np.random.default_rng(0).random((50, 300))
    est = fastbp.MLPClassifier(hidden_layer_sizes=(64,), max_iter=2, n_threads=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x, np.arange(50) % 2)
    est.predict(x)
    assert asked and set(asked) == {1}
