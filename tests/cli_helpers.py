"""Helpers of the command-line tests: running ``fastbp`` as a user does, and CSV exports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from fastbp import cli, datasets

ROOT = Path(__file__).resolve().parents[1]

#: scikit-learn's bundled tables the defaults are checked on, and their kind.
TABLES = {
    "iris": "classify",
    "wine": "classify",
    "breast_cancer": "classify",
    "digits": "classify",
    "diabetes": "regress",
}


def fastbp(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m fastbp args`` in a fresh process, with this checkout first on the path."""
    return subprocess.run(
        [sys.executable, "-m", "fastbp", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


# The first fit that compiles says so on stderr (fastbp._jit._CompileNotice):
# whether it does depends on what earlier tests left in the compile cache.
COMPILE_NOTICE = "fastbp: compiling kernels, first run only"


def without_compile_notice(err: str) -> str:
    """stderr without the first-compile notice line."""
    return "".join(
        line for line in err.splitlines(keepends=True) if not line.startswith(COMPILE_NOTICE)
    )


def child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def export_csv(name: str, path: Path, delimiter: str = ",") -> Path:
    """Write scikit-learn's bundled table ``name`` as a CSV file with a header row."""
    from sklearn import datasets as sk

    data = getattr(sk, f"load_{name}")()
    names = [str(n) for n in data.feature_names] + ["target"]
    table = np.column_stack([data.data, data.target])
    with open(path, "w", encoding="utf-8") as f:
        f.write(delimiter.join(names) + "\n")
        np.savetxt(f, table, delimiter=delimiter, fmt="%.10g")
    return path


def split_like_cli(path: Path, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The rows `fastbp train --data path --seed seed` trains on (train + val) and tests on."""
    table = datasets.load_table(path)
    task, _ = cli.infer_task(table.y, "auto")
    i_train, i_val, i_test = cli._split(
        seed, table, task, cli.DEFAULTS["test_fraction"], cli.DEFAULTS["val_fraction"]
    )
    fit_rows = np.concatenate([i_train, i_val])
    return table.X[fit_rows], table.X[i_test], table.y[fit_rows], table.y[i_test]


def sklearn_score(name: str, X_train, X_test, y_train, y_test) -> float:
    """``make_pipeline(StandardScaler(), MLPClassifier/MLPRegressor(random_state=0))``'s score."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = MLPRegressor if TABLES[name] == "regress" else MLPClassifier
    pipe = make_pipeline(StandardScaler(), estimator(random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(pipe.fit(X_train, y_train).score(X_test, y_test))


def reported(out: str, part: str, name: str) -> float:
    """The figure of a ``"<part> <name>: <value>"`` line of ``fastbp train``'s output."""
    found = re.search(rf"^{part} {re.escape(name)}: ([0-9.eE+-]+)", out, re.MULTILINE)
    assert found, f"no '{part} {name}' line in:\n{out}"
    return float(found.group(1))
