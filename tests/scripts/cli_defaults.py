"""Measure `fastbp train --data <table>.csv` (defaults only) against scikit-learn's MLP.

For each of scikit-learn's iris, wine, breast-cancer, digits (accuracy) and diabetes
(R²) tables, exported as CSV with a header, and each seed: fastbp's test score and
``make_pipeline(StandardScaler(), MLPClassifier/MLPRegressor(random_state=0))``'s on
the same split; for diabetes also two fairer references on the same rows,
``LinearRegression`` and the MLP pipeline with standardised targets
(``TransformedTargetRegressor``): scikit-learn's MLPRegressor does not converge on
its unscaled targets. Usage: ``python tests/scripts/cli_defaults.py [n_seeds [tables]]``,
tables comma-separated (default: all).
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli_helpers import TABLES, export_csv, fastbp, reported, sklearn_score, split_like_cli

n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(TABLES)


def regression_references(X_train, X_test, y_train, y_test) -> str:
    import warnings

    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    linear = LinearRegression().fit(X_train, y_train).score(X_test, y_test)
    mlp = make_pipeline(StandardScaler(), MLPRegressor(random_state=0))
    scaled = TransformedTargetRegressor(mlp, transformer=StandardScaler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scaled_r2 = scaled.fit(X_train, y_train).score(X_test, y_test)
    return f"  LinearRegression {linear:.4f}  MLP, scaled targets {scaled_r2:.4f}"


with tempfile.TemporaryDirectory() as tmp:
    for name in names:
        kind = TABLES[name]
        path = export_csv(name, Path(tmp) / f"{name}.csv")
        metric = "accuracy" if kind == "classify" else "R²"
        for seed in range(n_seeds):
            run = fastbp("train", "--data", str(path), "--seed", str(seed), "--no-progress")
            ours = reported(run.stdout, "test", metric)
            split = split_like_cli(path, seed)
            theirs = sklearn_score(name, *split)
            extra = regression_references(*split) if kind == "regress" else ""
            print(
                f"{name:14s} seed {seed}  test {metric}: fastbp {ours:.4f}  "
                f"scikit-learn {theirs:.4f}  diff {ours - theirs:+.4f}  exit {run.returncode}"
                + extra,
                flush=True,
            )
