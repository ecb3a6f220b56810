"""Time and peak memory of reading a 500,000 x 21 CSV: fastbp's reader against numpy.loadtxt.

Usage: ``python tests/scripts/csv_speed.py [rows]``. Writes the file (a header row,
then random numbers printed with 8 significant digits) to a temporary directory,
then reads it in fresh processes, 3 times each, reporting the best time and the
peak memory: NumPy's allocations as traced by tracemalloc (its own run) and the
growth of the process's peak resident set (ru_maxrss) over the imports.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from fastbp import datasets
path, how, trace = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
read = {
    "numpy.loadtxt": lambda: np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2),
    "fastbp read_csv": lambda: datasets.read_csv(path).data,
}[how]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
data = read()
seconds = time.perf_counter() - t0
traced = tracemalloc.get_traced_memory()[1] if trace else None
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "traced": traced, "rss": after - before,
                  "nbytes": data.nbytes, "shape": data.shape}))
"""


def child(path: Path, how: str, trace: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), how, "1" if trace else "0"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    ).stdout
    return json.loads(out)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        rng = np.random.default_rng(0)
        with open(path, "w") as f:
            f.write(",".join(f"x{j}" for j in range(20)) + ",y\n")
            for start in range(0, rows, 50_000):
                block = rng.standard_normal((min(50_000, rows - start), 21))
                np.savetxt(f, block, delimiter=",", fmt="%.8g")
        size = path.stat().st_size
        print(f"{path.name}: {rows} rows x 21 columns, {size / 1e6:.1f} MB")
        for how in ("numpy.loadtxt", "fastbp read_csv"):
            runs = [child(path, how, trace=False) for _ in range(3)]
            traced = child(path, how, trace=True)
            best = min(r["seconds"] for r in runs)
            rss = max(r["rss"] for r in runs)
            nbytes = runs[0]["nbytes"]
            print(
                f"{how:16s} best of 3: {best:.2f} s; peak traced {traced['traced'] / 1e6:.0f} MB "
                f"({traced['traced'] / nbytes:.2f}x the {nbytes / 1e6:.0f} MB array), "
                f"max RSS growth {rss / 1e6:.0f} MB ({rss / nbytes:.2f}x)"
            )


if __name__ == "__main__":
    main()
