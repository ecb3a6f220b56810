"""Measure `fastbp train --data <table>.csv` (defaults only) against scikit-learn's MLP.

For each of scikit-learn's iris, wine, breast-cancer, digits (accuracy) and diabetes
(R²) tables, exported as CSV with a header, and each seed: fastbp's test score and
``make_pipeline(StandardScaler(), MLPClassifier/MLPRegressor(random_state=0))``'s on
the same split. Usage: ``python tests/scripts/cli_defaults.py [n_seeds]``.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli_helpers import TABLES, export_csv, fastbp, reported, sklearn_score, split_like_cli

n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
with tempfile.TemporaryDirectory() as tmp:
    for name, kind in TABLES.items():
        path = export_csv(name, Path(tmp) / f"{name}.csv")
        metric = "accuracy" if kind == "classify" else "R²"
        for seed in range(n_seeds):
            run = fastbp("train", "--data", str(path), "--seed", str(seed), "--no-progress")
            ours = reported(run.stdout, "test", metric)
            theirs = sklearn_score(name, *split_like_cli(path, seed))
            print(
                f"{name:14s} seed {seed}  test {metric}: fastbp {ours:.4f}  "
                f"scikit-learn {theirs:.4f}  diff {ours - theirs:+.4f}  exit {run.returncode}",
                flush=True,
            )
