"""Compile cache: Numba's on-disk cache of parallel code survives a change of
thread count and concurrent cold compiles, makes a warm start several times
faster, and FASTBP_CACHE=0 turns it off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "child.py"

pytestmark = pytest.mark.slow


def _start(cache_dir: Path, threads: int = 2, **env: str) -> subprocess.Popen:
    """The cold-start child; in reproducible mode, where its results must not depend
    on the thread count (in the default mode, its network's steps are split by rows
    over two threads when there are two, and are not on one)."""
    full_env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache_dir),
        "NUMBA_NUM_THREADS": str(threads),
        "FASTBP_REPRODUCIBLE": "1",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "coldstart"],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (proc.returncode, err[-3000:])
    return json.loads(out.strip().splitlines()[-1])


def _run(cache_dir: Path, threads: int = 2, **env: str) -> dict:
    return _result(_start(cache_dir, threads, **env))


def _index_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.nbi"))


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A cold start (compiling, 2 threads) into a fresh cache: (cache dir, result)."""
    cache = tmp_path_factory.mktemp("numba-cache")
    result = _run(cache, threads=2)
    assert result["threads"] == 2
    assert _index_files(cache), "nothing was cached"
    return cache, result


def test_warm_cache_with_another_thread_count(cold):
    cache, cold_result = cold
    warm1 = _run(cache, threads=1)
    warm2 = _run(cache, threads=2)
    assert warm1["threads"] == 1
    assert warm1["digest"] == warm2["digest"] == cold_result["digest"]
    cold_s = cold_result["t_import"] + cold_result["t_fit"]
    warm_s = min(w["t_import"] + w["t_fit"] for w in (warm1, warm2))
    print(f"\nimport + first fit: cold {cold_s:.2f} s, warm {warm_s:.2f} s")
    assert warm_s * 4 < cold_s


def test_concurrent_cold_compiles_share_a_cache(tmp_path, cold):
    procs = [_start(tmp_path, threads=2), _start(tmp_path, threads=1)]
    results = [_result(p) for p in procs]
    assert results[0]["digest"] == results[1]["digest"] == cold[1]["digest"]
    warm = _run(tmp_path, threads=2)
    assert warm["digest"] == results[0]["digest"]
    assert (warm["t_import"] + warm["t_fit"]) * 4 < min(r["t_import"] + r["t_fit"] for r in results)


def test_cache_off(tmp_path, cold):
    result = _run(tmp_path, threads=2, FASTBP_CACHE="0")
    assert _index_files(tmp_path) == []
    assert result["digest"] == cold[1]["digest"]


def _hits_after_fit(package_parent: Path, cache_dir: Path) -> int:
    """Cache hits of the training loop in a fresh process importing fastbp from
    ``package_parent``, after one tiny fit."""
    code = (
        "import numpy as np, fastbp\n"
        "from fastbp import _loop\n"
        f"assert fastbp.__file__.startswith({str(package_parent)!r})\n"
        "fastbp.Network([2, 3, 1], seed=0).fit(np.zeros((4, 2)), np.zeros(4), epochs=1)\n"
        "print(sum(_loop.train_chunk.stats.cache_hits.values()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(package_parent), "NUMBA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=package_parent,  # not the checkout: python -c puts the working directory first
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_a_change_in_another_module_recompiles(tmp_path):
    """The training loop links in the kernels' machine code: editing kernels.py
    alone must not let the loop load its stale cached code (Numba's own stamp
    covers the cached function's file only)."""
    import shutil

    import fastbp

    copy = tmp_path / "src"
    shutil.copytree(
        Path(fastbp.__file__).parent, copy / "fastbp", ignore=shutil.ignore_patterns("__pycache__")
    )
    cache = tmp_path / "cache"
    assert _hits_after_fit(copy, cache) == 0  # cold
    assert _hits_after_fit(copy, cache) > 0  # warm
    kernels = copy / "fastbp" / "kernels.py"
    kernels.write_text(kernels.read_text() + "\n# edited\n")
    assert _hits_after_fit(copy, cache) == 0  # the edit recompiled the loop


def test_fastbp_compile_fills_the_cache(tmp_path):
    """After ``fastbp compile``, a fresh process's first fits and predictions, of
    Network and of the estimators, compile nothing. (float32 only, to halve the time
    of the test: float64's variants are the same tasks in the other dtype.)"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "fastbp", "compile", "--dtype", "float32", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("compiled ")
    code = (
        "import warnings, numpy as np, fastbp\n"
        "from fastbp import _loop\n"
        "warnings.simplefilter('ignore')\n"
        "rng = np.random.default_rng(1)\n"
        "for dt in (np.float32,):\n"
        "    x = rng.random((30, 5)).astype(dt)\n"
        "    net = fastbp.Network([5, 7, 3], dtype=dt, seed=1)\n"
        "    net.fit(x, rng.random((30, 3)), epochs=2, batch_size=8, shuffle=True)\n"
        "    net.predict(x)\n"
        "    for solver in ('adam', 'sgd', 'lbfgs'):\n"
        "        clf = fastbp.MLPClassifier((6,), solver=solver, max_iter=3, random_state=0)\n"
        "        clf.fit(x, np.arange(30) % 3).predict_proba(x)\n"
        "        reg = fastbp.MLPRegressor(hidden_layer_sizes=(6,), solver=solver, max_iter=3)\n"
        "        reg.fit(x, x[:, 0]).predict(x)\n"
        "        if solver != 'lbfgs':\n"
        "            fastbp.MLPClassifier((6,), solver=solver, max_iter=3, dropout=0.3).fit(\n"
        "                x, np.arange(30) % 3)\n"
        "fns = (_loop.train_chunk, _loop.loss_grad, _loop.forward)\n"
        "print(sum(sum(f.stats.cache_misses.values()) for f in fns))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "0", "a variant was compiled, not loaded"


NOTICE_SCRIPT = """
import sys
import numpy as np
import fastbp
from fastbp import _jit
with _jit.notices_to(sys.stderr):
    net = fastbp.Network([2, 3, 1], seed=0)
    net.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1)
    net.predict(np.zeros((4, 2)))
"""


def test_a_compiling_fit_says_so_once_and_a_cached_one_does_not(tmp_path):
    """The first-compile notice: one line per outermost compile (the fit's loop,
    then prediction's), none when everything loads from the cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-c", NOTICE_SCRIPT]
    runs = [
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
        for _ in range(2)
    ]
    from fastbp._jit import MESSAGE

    cold, warm = (run.stderr.splitlines().count(MESSAGE) for run in runs)
    assert 1 <= cold <= 3
    assert warm == 0
