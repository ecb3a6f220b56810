"""Prediction latency and throughput: groups ``predict|<case>|<method>``.

The serving case is one row at a time: ``predict`` and ``predict_proba`` of
``MLPClassifier(hidden_layer_sizes=(64,))`` fitted on the digits (float64, pixels
scaled to [0, 1]), fastbp's against scikit-learn's (the same weights: both fitted
with the same ``random_state``), and ``fastbp.Network.predict`` on one row of the
same shape ([64, 64, 10]). The batch case is ``predict_proba`` on 90,000 rows
(the digits repeated 50 times). Targets (issue #9): one-row estimator calls at
most half of scikit-learn's time, ``Network.predict`` on one row <= 15 us.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from bench.conftest import Measure

IMPLS = ("fastbp", "sklearn")
CASES = {"one-row": 1, "90000-rows": 90_000}


@pytest.fixture(scope="module")
def fitted() -> dict:
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastbp import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        models = {
            impl: cls(hidden_layer_sizes=(64,), max_iter=20, random_state=0).fit(x, y)
            for impl, cls in (("fastbp", MLPClassifier), ("sklearn", SkMLP))
        }
    return {"x": x, **models}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("case", list(CASES))
def test_estimator_predict(
    case: str, method: str, impl: str, fitted: dict, measure: Measure, benchmark: object
) -> None:
    rows = CASES[case]
    x = np.ascontiguousarray(np.resize(fitted["x"], (rows, fitted["x"].shape[1])))
    call = getattr(fitted[impl], method)
    benchmark.group = f"predict|{case}|{method}"  # type: ignore[attr-defined]
    info = {"impl": impl, "kind": "predict", "rows": rows, "sizes": [64, 64, 10]}
    measure(lambda: call(x), info)


def test_network_predict_one_row(fitted: dict, measure: Measure, benchmark: object) -> None:
    import fastbp

    net = fastbp.Network([64, 64, 10], seed=0)
    row = np.ascontiguousarray(fitted["x"][:1])
    benchmark.group = "predict|one-row|Network.predict"  # type: ignore[attr-defined]
    info = {"impl": "fastbp", "kind": "predict", "rows": 1, "sizes": [64, 64, 10]}
    measure(lambda: net.predict(row), info)
