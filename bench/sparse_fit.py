"""Sparse input (issue #14): fastbp against scikit-learn on TF-IDF-shaped CSR data.

    flock /tmp/fastbp-bench.lock python bench/sparse_fit.py            # 10,000 and 100,000 rows
    flock /tmp/fastbp-bench.lock python bench/sparse_fit.py --rows 10000 --repeats 3
    python bench/sparse_fit.py --quick                                   # smoke run, ~20 s

The data: n rows x 50,000 columns, float64 CSR, 100 stored entries per row (one in
each band of 500 columns, so sorted and without duplicates), each row scaled to unit
length as TF-IDF's are; a binary target from a random linear rule. The model:
``MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=0)`` (Adam,
batches of 200, shuffled), the same for both.

Every fit runs in a fresh process that first builds the data and (fastbp) compiles
on a tiny sparse fit, so neither the data nor the compile is counted. *Fit time*:
the median of ``--repeats`` fits, each timed alone. *Memory added by the fit*: the
peak of Python's ``tracemalloc`` (which sees NumPy's and SciPy's arrays) during one
more fit, above what was allocated before it. Targets: fit time <= 0.5x
scikit-learn's; memory within 1.5x of scikit-learn's, not growing with rows x
columns. Writes a markdown table to stdout and, with ``--out``, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COLUMNS = 50_000
NNZ_PER_ROW = 100
MIB = 1 << 20


def make_data(rows: int, columns: int = COLUMNS, nnz: int = NNZ_PER_ROW, seed: int = 0):
    """(X CSR float64 (rows, columns), y int (rows,)), deterministic."""
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    band = columns // nnz
    indices = (rng.integers(0, band, (rows, nnz)) + band * np.arange(nnz)).astype(np.int32)
    data = rng.random((rows, nnz))
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    indptr = np.arange(0, rows * nnz + 1, nnz, dtype=np.int32)
    X = sp.csr_matrix((data.ravel(), indices.ravel(), indptr), shape=(rows, columns))
    score = X @ rng.standard_normal(columns)
    return X, (score > np.median(score)).astype(int)


def _estimator(impl: str):
    if impl == "fastbp":
        from fastbp.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    return MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=0)


def child(impl: str, rows: int, repeats: int) -> dict:
    """One process's measurements: fit times, then the memory of one more fit."""
    warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter=5 on purpose
    X, y = make_data(rows)
    if impl == "fastbp":  # compile first (a tiny fit of the same kinds of arrays)
        _estimator(impl).fit(X[:300], y[:300])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        _estimator(impl).fit(X, y)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _estimator(impl).fit(X, y)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"impl": impl, "rows": rows, "times": times, "peak_bytes": peak}


def run_child(impl: str, rows: int, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--child", impl, str(rows), str(repeats)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(results: list[dict], load: str) -> str:
    lines = [
        "| rows | | fit time (median) | peak memory added by the fit |",
        "|---|---|---|---|",
    ]
    by = {(r["impl"], r["rows"]): r for r in results}
    for rows in sorted({r["rows"] for r in results}):
        sk, fb = by[("sklearn", rows)], by[("fastbp", rows)]
        t_sk, t_fb = statistics.median(sk["times"]), statistics.median(fb["times"])
        m_sk, m_fb = sk["peak_bytes"] / MIB, fb["peak_bytes"] / MIB
        lines.append(f"| {rows:,} | scikit-learn | {t_sk:.2f} s | +{m_sk:.0f} MiB |")
        lines.append(
            f"| {rows:,} | fastbp | {t_fb:.2f} s ({t_fb / t_sk:.2f}x) "
            f"| +{m_fb:.0f} MiB ({m_fb / m_sk:.2f}x) |"
        )
    repeats = ", ".join(f"{r['impl']} {r['rows']:,}: {len(r['times'])}" for r in results)
    lines += ["", f"Fits timed per process: {repeats}. Load before the run: {load}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 1])
    parser.add_argument("--quick", action="store_true", help="1,000 rows, one fit each")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, rows, repeats = args.child
        print(json.dumps(child(impl, int(rows), int(repeats))))
        return
    if args.quick:
        args.rows, args.repeats = [1000], [1]
    repeats = args.repeats + [args.repeats[-1]] * (len(args.rows) - len(args.repeats))
    load = os.popen("uptime").read().strip()
    results = []
    for rows, count in zip(args.rows, repeats, strict=False):
        for impl in ("sklearn", "fastbp"):
            results.append(run_child(impl, rows, count))
            print(f"{impl} {rows}: {results[-1]['times']}", file=sys.stderr, flush=True)
    text = table(results, load)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
