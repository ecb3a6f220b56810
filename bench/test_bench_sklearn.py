"""fastbp's scikit-learn estimators against scikit-learn's: groups ``sklearn|digits|<solver>``.

One ``fit`` of ``MLPClassifier(hidden_layer_sizes=(64,))`` on the 1797 digits
(float64, pixels scaled to [0, 1]) per call, with a fixed number of epochs
(``tol=0``, ``n_iter_no_change=max_iter``: both libraries run every epoch and
then warn that they did not converge, which is silenced here). Solvers: 'adam'
(relu) and 'sgd' (logistic, Nesterov momentum). Both sides get the same
``random_state``, so they do the same arithmetic (fastbp's parity tests check
that they reach the same weights).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from bench.conftest import Measure, benchmarks_enabled

EPOCHS = 50
SOLVERS = {
    "adam": {"solver": "adam", "activation": "relu"},
    "sgd": {"solver": "sgd", "activation": "logistic", "learning_rate_init": 0.1},
}
IMPLS = ("fastbp", "sklearn")


def _estimator_class(impl: str) -> type:
    if impl == "fastbp":
        from fastbp.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    return MLPClassifier


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_sklearn_fit(
    solver: str, impl: str, measure: Measure, benchmark: object, request: pytest.FixtureRequest
) -> None:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    epochs = EPOCHS if benchmarks_enabled(request.config) else 2
    params = dict(
        SOLVERS[solver],
        hidden_layer_sizes=(64,),
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs,
        random_state=0,
    )
    cls = _estimator_class(impl)

    def fit() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cls(**params).fit(x, y)

    benchmark.group = f"sklearn|digits|{solver}"  # type: ignore[attr-defined]
    info = {
        "impl": impl,
        "kind": "sklearn",
        "solver": solver,
        "n_samples": int(x.shape[0]),
        "sizes": [int(x.shape[1]), 64, 10],
        "epochs_per_call": epochs,
        "dtype": np.dtype(x.dtype).name,
    }
    measure(fit, info)
