"""Smoke runs of the benchmark scripts that are not pytest-benchmark suites
(``sparse_fit.py``, ``dask_scaling.py``, ``threads.py``): each runs its ``--quick``
case and prints its table; and ``compile_floor.py`` (``startup.py``'s bare trainer)
trains. Not timed (the figures of a smoke run on a shared
machine mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _quick(script: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(HERE / script), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    ).stdout


@pytest.mark.slow
def test_sparse_fit_quick_runs():
    out = _quick("sparse_fit.py")
    assert "| 1,000 | scikit-learn |" in out
    assert "| 1,000 | fastbp |" in out


@pytest.mark.slow
def test_dask_scaling_quick_runs():
    pytest.importorskip("distributed")
    out = _quick("dask_scaling.py")
    assert "1 worker(s): " in out
    assert "2 worker(s): " in out
    assert "exact_round_s" in out


@pytest.mark.slow
def test_threads_quick_runs():
    out = _quick("threads.py")
    assert "| digits MLPClassifier (64,), adam |" in out
    assert "| small [64, 32, 10] b32, float64 |" in out


def test_compile_floor_trains():
    """The bare trainer that startup.py compiles cold is a working trainer: its
    second epoch's loss is below its first."""
    out = subprocess.run(
        [sys.executable, str(HERE / "compile_floor.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    result = json.loads(out)
    first, second = result["J"]
    assert 0 < second < first
    assert result["fit_s"] > 0
