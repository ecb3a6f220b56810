"""Fit time without dropout (against another checkout) and dropout's overhead.

Side by side, interleaved (in the order A B C, then C B A...), one process per
(checkout, round), each timing every case several times after an untimed fit
that loads or compiles its variant:

    flock /tmp/fastbp-bench.lock python tests/scripts/dropout_speed.py \\
        --baseline /work/main --rounds 3

prints, per case, the median fit time of the baseline checkout without dropout,
of this checkout without dropout, and of this checkout with dropout 0.2, and the
ratios. (``--child`` is the timing process itself.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]

# name: (hidden, solver, rows, features, classes, epochs)
CASES = {
    "tiny (16,) adam": ((16,), "adam", 300, 10, 3, 1000),
    "small (64,) sgd": ((64,), "sgd", 1000, 20, 5, 200),
    "wide (256, 256) adam": ((256, 256), "adam", 1000, 64, 10, 10),
}


LOOP_CASE = "loop only: Adam steps, [20, 64, 64, 5], batch 50"


def child(dropout: float, repeats: int) -> None:
    import fastbp

    out = {}
    for name, (hidden, solver, n, d, k, epochs) in CASES.items():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, d))
        y = (x[:, :k] @ rng.standard_normal(k)).round().astype(int) % k
        params = {"dropout": dropout} if dropout else {}

        def fit(x=x, y=y, hidden=hidden, solver=solver, epochs=epochs, params=params):
            est = fastbp.MLPClassifier(
                hidden,
                solver=solver,
                max_iter=epochs,
                tol=0.0,
                n_iter_no_change=10**6,
                random_state=0,
                n_threads=1,
                **params,
            )
            start = time.perf_counter()
            est.fit(x, y)
            return time.perf_counter() - start

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit()  # load or compile
            out[name] = [fit() for _ in range(repeats)]
    out[LOOP_CASE] = loop_only(dropout, repeats)
    print(json.dumps(out))


def loop_only(dropout: float, repeats: int) -> list[float]:
    """The compiled loop alone (no per-epoch Python): engine.Trainer.steps, Adam."""
    from fastbp import engine, kernels

    rng = np.random.default_rng(0)
    sizes, n, batch, steps = [20, 64, 64, 5], 1000, 50, 4000
    loss = kernels.LOSSES["squared_error"]
    layout = engine.Layout(sizes, [kernels.RELU] * 2 + [kernels.IDENTITY], loss.code)
    x = rng.standard_normal((n, sizes[0]))
    y = rng.standard_normal((n, sizes[-1]))
    params = rng.standard_normal(layout.n_params) * 0.1
    extra = {"dropout": engine.Dropout(np.full(2, dropout), 1)} if dropout else {}
    opt = engine.Adam(layout.n_params, np.float64, 1e-4)
    trainer = engine.Trainer(layout, params, x, y, np.empty(0), batch, opt, 1e-4, **extra)
    trainer.steps(1)  # load or compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.steps(steps)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="/work/main")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", type=float, default=None)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.repeats)
        return
    runs = {"baseline": (args.baseline, 0.0), "this": (str(REPO), 0.0), "dropout": (str(REPO), 0.2)}
    times: dict[str, dict[str, list[float]]] = {key: {} for key in runs}
    for round_ in range(args.rounds):
        order = list(runs.items())
        for key, (path, rate) in order if round_ % 2 == 0 else order[::-1]:  # ABC CBA ...
            env = {**os.environ, "PYTHONPATH": path}
            cmd = [sys.executable, str(HERE), "--child", str(rate), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            for name, values in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                times[key].setdefault(name, []).extend(values)
    print(
        "| case | baseline, no dropout (s) | this, no dropout (s) | ratio | "
        "this, dropout 0.2 (s) | overhead |"
    )
    print("|---|---|---|---|---|---|")
    for name in [*CASES, LOOP_CASE]:
        base, this, drop = (float(np.median(times[key][name])) for key in runs)
        print(
            f"| {name} | {base:.4f} | {this:.4f} | {this / base:.3f} | {drop:.4f} | "
            f"{drop / this:.3f} |"
        )


if __name__ == "__main__":
    main()
