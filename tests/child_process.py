"""Running the scripts of ``tests/scripts`` in a fresh Python process.

Each script prints one JSON object on its last line of output: what the tests
check. Used by the tests of threads, determinism and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run_script(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``script args`` with ``env`` added to the environment; its last JSON line.

    An abort (Numba's workqueue layer: "Terminating: ... concurrent access") shows
    up as a negative return code: any nonzero code fails the test.
    """
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def interrupt_script(script: Path, *args: str) -> tuple[float, dict]:
    """Send SIGINT to ``script args`` 1.5 s after it prints ``fitting``.

    Returns the ``time.time()`` at which the signal was sent and the script's last
    JSON line. The script must exit 0 and report ``fit_seconds`` > 1 (it really
    was fitting when the signal came).
    """
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("fitting"), line + proc.stderr.read()[-3000:]
        time.sleep(1.5)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["fit_seconds"] > 1.0
    return sent, result


def modules_after(imports: str, names: set[str]) -> list[str]:
    """Which top-level packages of ``names`` a fresh interpreter has loaded after
    ``import <imports>`` (for the tests that optional dependencies stay unloaded)."""
    code = (
        f"import json, sys, {imports}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(names)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
