"""Smoke run of ``bench/concurrency.py --quick``: every part runs and prints its table.
Not timed (the figures of a smoke run on a shared machine mean nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("concurrency.py")


@pytest.mark.slow
def test_concurrency_quick_runs():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SCRIPT.parent.parent), env.get("PYTHONPATH")])
    )
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=True,
    ).stdout
    assert "| small [64, 32, 10], b32 | 2 |" in out
    assert "| joblib.Parallel(n_jobs=2) |" in out
    assert "dispatch alone" in out
    assert "right after a 300" in out
    assert "one thread, right after a 300" in out
