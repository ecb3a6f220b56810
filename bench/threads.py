"""Free cores: small networks on one thread against two (issue #10, section 2).

    python bench/threads.py              # every case, 7 rounds (~2 min)
    python bench/threads.py --quick      # smoke run: 1 round, few epochs (~15 s)

Each round times every case on 1 and on 2 threads (``fastbp.set_num_threads``),
in alternating order, in this one process, then scikit-learn's fits; a figure is
the median over rounds of ms per epoch. On two threads these fits split each
step's rows over the two (``fastbp.engine.rows``); on one they run as before. The
digits fits are also timed with scikit-learn's own ``MLPClassifier``, in the same
rounds.

Target: two threads take at most 0.6x of the one-thread time, and the digits fits
reach at least 4x scikit-learn. The ratios are taken within each round (the two
figures a few seconds apart), then their median over the rounds: on a shared
machine a round's figures move together. Prints a markdown table; ``--json
FILE`` saves the raw figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fastbp  # noqa: E402

X = "\u00d7"  # multiplication sign
TARGET = 0.6


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def network_case(dtype: type, sizes: tuple[int, ...], batch: int, epochs: int) -> Callable:
    """A ``fastbp.Network`` fit on digits (one-hot targets); returns ms per epoch."""
    x, labels = _digits()
    x = x.astype(dtype)
    y = np.eye(10, dtype=dtype)[labels]

    def run() -> float:
        net = fastbp.Network(list(sizes), dtype=dtype, seed=0)
        t = time.perf_counter()
        net.fit(x, y, epochs=epochs, lr=0.1, batch_size=batch)
        return (time.perf_counter() - t) / epochs * 1e3

    return run


def estimator_case(module: str, solver: str, epochs: int) -> Callable:
    """``MLPClassifier(hidden_layer_sizes=(64,))`` on digits for ``epochs`` epochs."""
    x, y = _digits()
    if module == "fastbp":
        cls = fastbp.MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier as cls

    def run() -> float:
        model = cls(
            hidden_layer_sizes=(64,), solver=solver, max_iter=epochs, tol=0.0,
            n_iter_no_change=epochs + 1, random_state=0,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning
            t = time.perf_counter()
            model.fit(x, y)
        return (time.perf_counter() - t) / epochs * 1e3

    return run


def cases(quick: bool) -> dict[str, dict[str, Callable]]:
    """label -> {"fastbp": run, ["sklearn": run]}."""
    e_net, e_est = (5, 5) if quick else (60, 60)
    out: dict[str, dict[str, Callable]] = {
        "small [64, 32, 10] b32, float32": {
            "fastbp": network_case(np.float32, (64, 32, 10), 32, e_net)
        },
        "small [64, 32, 10] b32, float64": {
            "fastbp": network_case(np.float64, (64, 32, 10), 32, e_net)
        },
    }
    for solver in ("adam", "sgd"):
        out[f"digits MLPClassifier (64,), {solver}"] = {
            "fastbp": estimator_case("fastbp", solver, e_est),
            "sklearn": estimator_case("sklearn", solver, e_est),
        }
    return out


def measure(rounds: int, quick: bool) -> dict[str, dict[str, list[float]]]:
    table = cases(quick)
    times: dict[str, dict[str, list[float]]] = {
        label: {"1": [], "2": [], "sklearn": []} for label in table
    }
    previous = fastbp.get_num_threads()
    try:
        for runs in table.values():  # warm up: compile, fill the caches
            for n in (1, 2):
                fastbp.set_num_threads(n)
                runs["fastbp"]()
        for r in range(rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for label, runs in table.items():
                for n in order:
                    fastbp.set_num_threads(n)
                    times[label][str(n)].append(runs["fastbp"]())
            # scikit-learn's fits last: right after them NumPy's OpenBLAS threads
            # keep spinning for a while and hold the second core (measured: the
            # sgd fit then gained nothing from two threads).
            for label, runs in table.items():
                if "sklearn" in runs:
                    times[label]["sklearn"].append(runs["sklearn"]())
    finally:
        fastbp.set_num_threads(previous)
    return times


def _ratio(num: list[float], den: list[float]) -> str:
    """Median over rounds of the ratio within each round, and its range."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def render(times: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        f"| case | 1 thread | 2 threads | 2 ÷ 1 (target ≤ {TARGET}) | scikit-learn "
        f"| scikit-learn ÷ fastbp (2 threads) |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in times.items():
        one, two = statistics.median(t["1"]), statistics.median(t["2"])
        sk = f"{statistics.median(t['sklearn']):.3g}" if t["sklearn"] else "—"
        vs = _ratio(t["sklearn"], t["2"]) if t["sklearn"] else "—"
        split = _ratio(t["2"], t["1"])
        lines.append(f"| {label} | {one:.3g} | {two:.3g} | {split} | {sk} | {vs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, few epochs")
    parser.add_argument("--json", type=Path, help="also save the raw figures here")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    times = measure(rounds, args.quick)
    print(
        f"Median ms per epoch over {rounds} rounds; ratios: median of each round's ratio "
        "(range). (bench/threads.py)\n"
    )
    print(render(times))
    if args.json is not None:
        args.json.write_text(json.dumps(times, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
