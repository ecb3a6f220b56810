"""Data larger than memory: a read-only ~2 GB float32 numpy.memmap trains,
shuffled and not, without a hidden copy: anonymous memory grows by a small fixed
amount, not by the data size (page cache, RssFile, may grow: that is the file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "child.py"
ROWS, COLS = 1 << 21, 256  # 2**29 float32 = 2 GiB
LIMIT = 100 * 2**20  # anonymous memory growth allowed during the fit


@pytest.fixture(scope="module")
def big_memmap(tmp_path_factory):
    directory = tmp_path_factory.mktemp("memmap")
    size = ROWS * COLS * 4
    if shutil.disk_usage(directory).free < size + (2 << 30):
        pytest.skip(f"needs {size / 2**30:.1f} GiB free in {directory}")
    path = directory / "x.f32"
    try:
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(ROWS, COLS))
        rng = np.random.default_rng(0)
        chunk = 1 << 16
        for start in range(0, ROWS, chunk):
            mm[start : start + chunk] = rng.standard_normal((chunk, COLS), dtype=np.float32)
        mm.flush()
        del mm
        yield path
    finally:
        path.unlink(missing_ok=True)


def _run(path: Path, shuffle: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "memmap", str(path), str(ROWS), str(COLS), str(int(shuffle))],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [False, True])
def test_memmap_trains_without_a_copy(big_memmap, shuffle):
    result = _run(big_memmap, shuffle)
    growth = result["peak"]["RssAnon"] - result["before"]["RssAnon"]
    print(
        f"\nshuffle={shuffle}: RssAnon +{growth / 2**20:.1f} MiB at peak, "
        f"RssFile {result['peak']['RssFile'] / 2**20:.0f} MiB, fit {result['seconds']:.1f} s"
    )
    assert result["finite"]
    assert np.isfinite(result["loss"])
    assert growth < LIMIT, f"anonymous memory grew by {growth / 2**20:.0f} MiB"
