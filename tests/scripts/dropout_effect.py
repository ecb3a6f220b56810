"""Dropout's effect on a wide network: digits, train and test accuracy with and without.

Run from the repository (under the benchmark lock, it takes a few minutes):

    flock /tmp/fastbp-bench.lock python tests/scripts/dropout_effect.py

Prints a Markdown table: for each hidden layout and dropout rate, the mean (and
min-max) over the seeds of the train and test accuracy and of the fit time. Each
seed draws its own split (30 % of the 1797 digits to train on, so that a wide
network can overfit) and its own initial weights, masks and shuffles; the same
seed gives every rate the same split and initial weights.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

import fastbp


def run(hidden: tuple[int, ...], rate: float, seed: int, max_iter: int) -> tuple:
    """(train accuracy, test accuracy, seconds, epochs) of one fit."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=0.3, stratify=y, random_state=seed
    )
    est = fastbp.MLPClassifier(
        hidden_layer_sizes=hidden,
        solver="adam",
        max_iter=max_iter,
        random_state=seed,
        dropout=rate,
        n_threads=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        est.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return est.score(X_train, y_train), est.score(X_test, y_test), seconds, est.n_iter_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.2, 0.5])
    args = parser.parse_args()
    layouts = [(512,), (256, 256)]
    run((8,), 0.2, 0, 2)  # compile both variants before timing
    run((8,), 0.0, 0, 2)
    print(
        f"digits, 30 % train ({round(0.3 * 1797)} rows) / 70 % test, adam, "
        f"max_iter={args.max_iter}, {args.seeds} seeds (mean, [min, max])\n"
    )
    print("| hidden | dropout | train accuracy | test accuracy | epochs | fit seconds |")
    print("|---|---|---|---|---|---|")
    for hidden in layouts:
        for rate in args.rates:
            rows = np.array([run(hidden, rate, seed, args.max_iter) for seed in range(args.seeds)])
            cells = [
                f"{rows[:, i].mean():.4f} [{rows[:, i].min():.4f}, {rows[:, i].max():.4f}]"
                for i in (0, 1)
            ]
            epochs = f"{rows[:, 3].mean():.0f}"
            seconds = f"{rows[:, 2].mean():.2f}"
            print(f"| {hidden} | {rate} | {cells[0]} | {cells[1]} | {epochs} | {seconds} |")


if __name__ == "__main__":
    main()
