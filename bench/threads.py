"""Free cores: small networks on one thread against two (issue #10, section 2).

    python bench/threads.py              # every case, 15 rounds (~50 s)
    python bench/threads.py --quick      # smoke run: 1 round, few epochs (~5 s)

Each round times every case on 1 and on 2 threads (``fastbp.set_num_threads``),
in alternating order, in this one process, then scikit-learn's fits; a figure is
the median over rounds. On two threads these fits split each step's rows over the
two (``fastbp.engine.rows``); on one they run as before. The digits fits are also
timed with scikit-learn's own ``MLPClassifier``, in the same rounds.

Two figures per thread count: a fit of E epochs divided by E (what a user's fit
costs per epoch, its fixed costs included: the estimators' input checks, the same
as scikit-learn's, take about 1 ms of a 60-epoch digits fit of 20-40 ms), and the
time an epoch adds (a fit of 2E epochs minus the fit of E, divided by E: the
training alone, the two fits back to back).

Target: an added epoch on two threads takes at most 0.6x of its one-thread time,
and the digits fits reach at least 4x scikit-learn (whole fits). The ratios are
taken within each round (the figures a few seconds apart), then their median over
the rounds: on a shared machine a round's figures move together.

A second table gives the floor of any split: each thread's share of a step, timed
alone on one thread with no synchronisation: a step of half the batch (a split by
rows) and the network with half the hidden units, its output layer whole (a split
by hidden units). A split over two threads takes at least its larger share, plus
its synchronisation and whatever both threads must repeat.

Prints markdown tables; ``--json FILE`` saves the raw figures.
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
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fastbp  # noqa: E402
from bench import machine  # noqa: E402

X = "\u00d7"  # multiplication sign
TARGET = 0.6


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def network_case(dtype: type, sizes: tuple[int, ...], batch: int) -> Callable[[int], float]:
    """A ``fastbp.Network`` fit on digits (one-hot targets); returns its ms."""
    x, labels = _digits()
    x = x.astype(dtype)
    y = np.eye(10, dtype=dtype)[labels]

    def run(epochs: int) -> float:
        net = fastbp.Network(list(sizes), dtype=dtype, seed=0)
        t = time.perf_counter()
        net.fit(x, y, epochs=epochs, lr=0.1, batch_size=batch)
        return (time.perf_counter() - t) * 1e3

    return run


def estimator_case(
    module: str, solver: str, hidden: int = 64, batch: int = 200
) -> Callable[[int], float]:
    """``MLPClassifier(hidden_layer_sizes=(hidden,), batch_size=batch)`` on digits;
    returns the fit's ms."""
    x, y = _digits()
    if module == "fastbp":
        cls = fastbp.MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier as cls

    def run(epochs: int) -> float:
        model = cls(
            hidden_layer_sizes=(hidden,), solver=solver, max_iter=epochs, tol=0.0,
            n_iter_no_change=epochs + 1, random_state=0, batch_size=batch,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning
            t = time.perf_counter()
            model.fit(x, y)
        return (time.perf_counter() - t) * 1e3

    return run


def _steps(batch: int) -> int:
    """Steps per epoch on the digits rows."""
    return -(-len(_digits()[1]) // batch)


def cases() -> dict[str, dict[str, Any]]:
    """label -> {"fastbp": run, ["sklearn": run], "rows": run, "units": run, "rows_steps":
    (steps per epoch of the case, of "rows")}. "rows": the same fit with half the batch;
    "units": with half the hidden units (each thread's share of a step split by rows,
    or by hidden units)."""
    out: dict[str, dict[str, Any]] = {}
    for dtype in (np.float32, np.float64):
        out[f"small [64, 32, 10] b32, {dtype.__name__}"] = {
            "fastbp": network_case(dtype, (64, 32, 10), 32),
            "rows": network_case(dtype, (64, 32, 10), 16),
            "units": network_case(dtype, (64, 16, 10), 32),
            "rows_steps": (_steps(32), _steps(16)),
        }
    for solver in ("adam", "sgd"):
        out[f"digits MLPClassifier (64,), {solver}"] = {
            "fastbp": estimator_case("fastbp", solver),
            "sklearn": estimator_case("sklearn", solver),
            "rows": estimator_case("fastbp", solver, batch=100),
            "units": estimator_case("fastbp", solver, hidden=32),
            "rows_steps": (_steps(200), _steps(100)),
        }
    return out


def measure(
    table: dict[str, dict[str, Any]], rounds: int, quick: bool
) -> dict[str, dict[str, list[float]]]:
    """ms per epoch of each round: "1", "2" (fits of E epochs on 1 and 2 threads),
    "1+", "2+" (an added epoch: fits of 2E minus fits of E), "sklearn" (E epochs),
    "rows+", "units+" (an added epoch of the half-size fits, on 1 thread)."""
    epochs = 5 if quick else 60
    keys = ("1", "2", "1+", "2+", "sklearn", "rows+", "units+")
    times: dict[str, dict[str, list[float]]] = {label: {key: [] for key in keys} for label in table}
    previous = fastbp.get_num_threads()
    try:
        for runs in table.values():  # warm up: compile, fill the caches
            for n in (1, 2):
                fastbp.set_num_threads(n)
                runs["fastbp"](epochs)
            runs["rows"](epochs)
            runs["units"](epochs)
        for r in range(rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for label, runs in table.items():
                for n in order:
                    fastbp.set_num_threads(n)
                    whole = runs["fastbp"](epochs)
                    twice = runs["fastbp"](2 * epochs)
                    times[label][str(n)].append(whole / epochs)
                    times[label][f"{n}+"].append((twice - whole) / epochs)
                fastbp.set_num_threads(1)
                for share in ("rows", "units"):
                    whole = runs[share](epochs)
                    times[label][f"{share}+"].append((runs[share](2 * epochs) - whole) / epochs)
            # scikit-learn's fits last: right after them NumPy's OpenBLAS threads
            # keep spinning for a while and hold the second core (measured: the
            # sgd fit then gained nothing from two threads).
            for label, runs in table.items():
                if "sklearn" in runs:
                    times[label]["sklearn"].append(runs["sklearn"](epochs) / epochs)
    finally:
        fastbp.set_num_threads(previous)
    return times


def _spread(ratios: list[float]) -> str:
    """Median of per-round ratios, and their range."""
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _ratio(num: list[float], den: list[float]) -> str:
    """Median over rounds of the ratio within each round, and its range."""
    return _spread([a / b for a, b in zip(num, den, strict=True)])


def render(times: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| case | whole fit: 1 thread | 2 threads | 2 ÷ 1 | added epoch: 1 thread | 2 threads "
        f"| 2 ÷ 1 (target ≤ {TARGET}) | scikit-learn (whole fit) "
        "| scikit-learn ÷ fastbp (whole fits, 2 threads) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3g}"

    for label, t in times.items():
        sk = med(t["sklearn"]) if t["sklearn"] else "—"
        vs = _ratio(t["sklearn"], t["2"]) if t["sklearn"] else "—"
        lines.append(
            f"| {label} | {med(t['1'])} | {med(t['2'])} | {_ratio(t['2'], t['1'])} "
            f"| {med(t['1+'])} | {med(t['2+'])} | {_ratio(t['2+'], t['1+'])} | {sk} | {vs} |"
        )
    return "\n".join(lines)


def render_shares(times: dict[str, dict[str, list[float]]], table: dict) -> str:
    """The floor of a split: each thread's share of a step, timed on one thread."""
    lines = [
        "| case | added epoch, 1 thread (ms) | a step of half the batch ÷ a step "
        "| half the hidden units ÷ the whole network | measured: 2 threads ÷ 1 |",
        "|---|---|---|---|---|",
    ]
    for label, t in times.items():
        full, half = table[label]["rows_steps"]
        # per step: an epoch of half the batch has about twice the steps
        rows = [h / half / (w / full) for h, w in zip(t["rows+"], t["1+"], strict=True)]
        lines.append(
            f"| {label} | {statistics.median(t['1+']):.3g} "
            f"| {_spread(rows)} "
            f"| {_ratio(t['units+'], t['1+'])} | {_ratio(t['2+'], t['1+'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, few epochs")
    parser.add_argument("--json", type=Path, help="also save the raw figures here")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    table = cases()
    times = measure(table, rounds, args.quick)
    print(
        f"Median ms per epoch over {rounds} rounds (whole fit: a fit of E epochs ÷ E; added "
        "epoch: a fit of 2E epochs minus the fit of E, ÷ E; E = "
        f"{5 if args.quick else 60}); ratios: median of each round's ratio (range). "
        f"(bench/threads.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{machine.describe()})\n"
    )
    print(render(times))
    print(
        "\nEach thread's share of a step, timed alone on one thread (added epochs, ratios "
        "within each round): a step of half the batch (a split by rows) and the network "
        "with half the hidden units (a split by hidden units; the output layer whole). "
        "A split over two threads adds its synchronisation and whatever it repeats on "
        "both to the larger share: no split of a step takes less than its share.\n"
    )
    print(render_shares(times, table))
    if args.json is not None:
        args.json.write_text(json.dumps(times, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
