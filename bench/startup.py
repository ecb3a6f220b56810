"""Startup cost of fastbp, each figure from fresh Python processes; prints JSON.

(a) cold: ``import fastbp`` and the first ``fit`` of the tiny case with an empty
    ``NUMBA_CACHE_DIR`` (a new temp dir): everything compiles.
(b) warm: the same in new processes sharing that now-filled cache (target <= 1 s).
(c) import: ``import fastbp`` alone (warm cache).
(d) estimator cold: the first ``MLPClassifier(hidden_layer_sizes=(64,)).fit`` on
    digits (max_iter=5) with an empty cache, and (e) the same warm.
(f) floor: ``bench/compile_floor.py``, a bare three-function Numba trainer, with
    an empty cache: what Numba's JIT costs at the least for a trainer.

The cold figures (a, d, f) alternate, ``--cold-repeat`` times each, every run in a
new empty cache, so that they are compared side by side. Each figure is the wall
time of the whole process (interpreter start included) and, inside it, the time
of the import and of the first fit. Run:
``python bench/startup.py [--repeat 5] [--cold-repeat 3] [--dtype float64]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WARM_TARGET_S = 1.0
FLOOR = Path(__file__).resolve().parent / "compile_floor.py"

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import fastbp
t1 = time.perf_counter()
out = {"import_s": t1 - t0}
if sys.argv[1] == "fit":
    import numpy as np
    dtype = np.dtype(sys.argv[2])
    rng = np.random.default_rng(0)
    x = rng.random((4, 2)).astype(dtype)
    y = rng.random((4, 1)).astype(dtype)
    fastbp.Network([2, 4, 1], dtype=dtype, seed=0).fit(x, y, epochs=1, lr=0.5)
    out["fit_s"] = time.perf_counter() - t1
elif sys.argv[1] == "estimator":
    import warnings
    import numpy as np
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(sys.argv[2])
    t2 = time.perf_counter()
    out["data_s"] = t2 - t1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 5 iterations
        fastbp.MLPClassifier(hidden_layer_sizes=(64,), max_iter=5, random_state=0).fit(x, y)
    out["fit_s"] = time.perf_counter() - t2
print(json.dumps(out))
"""

# Switches that would change what is measured (see fastbp/_jit.py).
_DROP = ("FASTBP_CACHE", "FASTBP_FASTMATH", "NUMBA_DISABLE_JIT")


def _run_child(mode: str, dtype: str, cache_dir: str) -> dict[str, float]:
    """One fresh process: ``mode`` is "fit", "estimator" or "import" (``_CHILD``),
    or "floor" (``compile_floor.py``)."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env["NUMBA_CACHE_DIR"] = cache_dir
    args = [str(FLOOR)] if mode == "floor" else ["-c", _CHILD, mode, dtype]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"startup child failed ({proc.returncode}):\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    keys = runs[0].keys()
    return {
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in keys},
    }


def measure(repeat: int = 5, dtype: str = "float64", cold_repeat: int = 3) -> dict[str, Any]:
    """Run the measurements; all times in seconds."""
    cold: dict[str, list[dict[str, float]]] = {"fit": [], "estimator": [], "floor": []}
    caches: dict[str, str] = {}
    try:
        for _ in range(cold_repeat):
            for mode, runs in cold.items():
                if mode in caches:  # the previous cold run's, filled
                    shutil.rmtree(caches[mode], ignore_errors=True)
                caches[mode] = tempfile.mkdtemp(prefix="fastbp-startup-")
                runs.append(_run_child(mode, dtype, caches[mode]))
        # The warm runs use the caches that the last cold runs filled.
        warm = [_run_child("fit", dtype, caches["fit"]) for _ in range(repeat)]
        imports = [_run_child("import", dtype, caches["fit"]) for _ in range(repeat)]
        est_warm = [_run_child("estimator", dtype, caches["estimator"]) for _ in range(repeat)]
    finally:
        for cache in caches.values():
            shutil.rmtree(cache, ignore_errors=True)
    warm_summary = _summary(warm)
    return {
        "dtype": dtype,
        "repeat": repeat,
        "cold_repeat": cold_repeat,
        "cold": _summary(cold["fit"]),
        "warm": warm_summary,
        "import": _summary(imports),
        "estimator_cold": _summary(cold["estimator"]),
        "estimator_warm": _summary(est_warm),
        "floor_cold": _summary(cold["floor"]),
        "warm_target_s": WARM_TARGET_S,
        "warm_met": warm_summary["median"]["process_s"] <= WARM_TARGET_S,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm and import runs (median)")
    parser.add_argument(
        "--cold-repeat", type=int, default=3, help="cold runs of each kind, alternating (median)"
    )
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.repeat, args.dtype, args.cold_repeat), indent=2))


if __name__ == "__main__":
    main()
