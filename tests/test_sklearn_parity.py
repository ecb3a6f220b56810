"""fastbp.MLPRegressor / MLPClassifier against scikit-learn's, fit for fit.

Given the same data, hyper-parameters and integer ``random_state``, the fitted
weights, loss curves, iteration counts, validation scores and warnings must equal
scikit-learn's up to floating-point rounding: relative 1e-13 in float64.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn import neural_network as skl
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning

from fastbp import sklearn as fb

RTOL = 1e-13


def _data(kind: str):
    """Small slices of scikit-learn's bundled datasets, scaled."""
    if kind in ("multiclass", "multilabel"):
        x, y = load_digits(return_X_y=True)
        x, y = x[:240] / 16.0, y[:240]
        if kind == "multilabel":
            y = np.column_stack([y > 4, y % 2 == 1, y % 3 == 0]).astype(int)
        return x, y
    if kind == "binary":
        x, y = load_breast_cancer(return_X_y=True)
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        return x[:200], y[:200]
    x, y = load_diabetes(return_X_y=True)
    x = x[:200] / x.std(axis=0)
    y = y[:200]
    if kind == "regression":
        return x, (y - y.mean()) / y.std()
    if kind == "multioutput":
        return x, np.column_stack([(y - y.mean()) / y.std(), x[:, 2] * 0.5])
    if kind == "poisson":
        return x, np.round(y / 50.0)
    raise ValueError(kind)


def _pair(kind: str, **params):
    if kind in ("multiclass", "multilabel", "binary"):
        return fb.MLPClassifier(**params), skl.MLPClassifier(**params)
    return fb.MLPRegressor(**params), skl.MLPRegressor(**params)


def _rel_err(got, want) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def _fit_both(ours, theirs, calls):
    """Run ``calls`` (method name, args, kwargs) on both; return each side's warnings."""
    seen = []
    for est in (ours, theirs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for method, args, kwargs in calls:
                getattr(est, method)(*args, **kwargs)
        seen.append([(w.category, str(w.message)) for w in caught])
    return seen


def assert_same_fit(ours, theirs, rtol: float = RTOL) -> None:
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert a.dtype == b.dtype
        assert _rel_err(a, b) <= rtol
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert _rel_err(ours.loss_, theirs.loss_) <= rtol
    if hasattr(theirs, "loss_curve_"):
        assert len(ours.loss_curve_) == len(theirs.loss_curve_)
        assert _rel_err(ours.loss_curve_, theirs.loss_curve_) <= rtol
        if theirs.best_loss_ is None:
            assert ours.best_loss_ is None
        else:
            assert _rel_err(ours.best_loss_, theirs.best_loss_) <= rtol
        if theirs.validation_scores_ is None:
            assert ours.validation_scores_ is None
        else:
            assert _rel_err(ours.validation_scores_, theirs.validation_scores_) <= rtol
            assert _rel_err(ours.best_validation_score_, theirs.best_validation_score_) <= rtol
    else:
        assert not hasattr(ours, "loss_curve_")


BASE = {"hidden_layer_sizes": (12, 7), "random_state": 3, "max_iter": 8}

CASES = [
    ("multiclass", {"solver": "adam"}),
    ("multiclass", {"solver": "sgd", "activation": "logistic", "learning_rate_init": 0.1}),
    ("multiclass", {"solver": "sgd", "activation": "tanh", "nesterovs_momentum": False}),
    ("multiclass", {"solver": "adam", "activation": "identity", "alpha": 0.5, "shuffle": False}),
    ("binary", {"solver": "adam", "activation": "tanh", "batch_size": 64}),
    ("binary", {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.5}),
    ("multilabel", {"solver": "sgd", "activation": "relu", "momentum": 0.0}),
    ("regression", {"solver": "adam", "activation": "logistic"}),
    ("regression", {"solver": "sgd", "activation": "relu", "learning_rate_init": 0.01}),
    ("multioutput", {"solver": "adam", "activation": "tanh", "alpha": 0.01}),
    ("poisson", {"solver": "adam", "loss": "poisson", "learning_rate_init": 0.01}),
    # stopping rules: tol reached after n_iter_no_change epochs, adaptive rate
    ("regression", {"solver": "sgd", "tol": 0.05, "n_iter_no_change": 2, "max_iter": 30}),
    (
        "multiclass",
        {
            "solver": "sgd",
            "learning_rate": "adaptive",
            "tol": 0.2,
            "n_iter_no_change": 1,
            "max_iter": 12,
        },
    ),
    # early stopping: stratified split (binary), plain split (regression, multiclass)
    ("binary", {"solver": "adam", "early_stopping": True, "max_iter": 12}),
    ("regression", {"solver": "sgd", "early_stopping": True, "validation_fraction": 0.2}),
    ("multiclass", {"solver": "adam", "early_stopping": True, "n_iter_no_change": 2}),
    # lbfgs
    ("multiclass", {"solver": "lbfgs", "max_iter": 15}),
    ("binary", {"solver": "lbfgs", "activation": "tanh", "max_iter": 15}),
    ("multilabel", {"solver": "lbfgs", "activation": "logistic", "max_iter": 10}),
    ("regression", {"solver": "lbfgs", "activation": "relu", "max_iter": 20}),
    ("poisson", {"solver": "lbfgs", "loss": "poisson", "max_fun": 12}),
]


def _ident(case) -> str:
    kind, params = case
    return kind + "-" + "-".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize(("kind", "params"), CASES, ids=[_ident(c) for c in CASES])
def test_fit_matches_sklearn(kind, params):
    x, y = _data(kind)
    ours, theirs = _pair(kind, **{**BASE, **params})
    seen = _fit_both(ours, theirs, [("fit", (x, y), {})])
    assert seen[0] == seen[1]
    assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(x[:20]), theirs.predict(x[:20]), rtol=1e-6)
    if hasattr(theirs, "predict_proba"):
        np.testing.assert_allclose(
            ours.predict_proba(x[:20]), theirs.predict_proba(x[:20]), rtol=1e-6, atol=1e-12
        )


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_sample_weight_matches_sklearn(kind):
    x, y = _data(kind)
    sw = np.random.default_rng(0).uniform(0.2, 2.0, x.shape[0])
    ours, theirs = _pair(kind, **BASE, solver="sgd", alpha=0.01, early_stopping=True)
    seen = _fit_both(ours, theirs, [("fit", (x, y), {"sample_weight": sw})])
    assert seen[0] == seen[1]
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize(("kind", "solver"), [("multiclass", "adam"), ("regression", "sgd")])
def test_warm_start_matches_sklearn(kind, solver):
    x, y = _data(kind)
    ours, theirs = _pair(kind, **{**BASE, "max_iter": 4}, solver=solver, warm_start=True)
    calls = [("fit", (x, y), {}), ("fit", (x[::-1], y[::-1]), {})]
    seen = _fit_both(ours, theirs, calls)
    assert seen[0] == seen[1]
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize(("kind", "solver"), [("multiclass", "sgd"), ("regression", "adam")])
def test_partial_fit_matches_sklearn(kind, solver):
    x, y = _data(kind)
    ours, theirs = _pair(kind, **BASE, solver=solver)
    first = {"classes": np.unique(y)} if kind == "multiclass" else {}
    calls = [("partial_fit", (x[:100], y[:100]), first)]
    calls += [("partial_fit", (x[k : k + 70], y[k : k + 70]), {}) for k in (100, 170, 0)]
    seen = _fit_both(ours, theirs, calls)
    assert seen[0] == seen[1]
    assert_same_fit(ours, theirs)


def test_partial_fit_after_fit_continues_the_optimizer():
    x, y = _data("regression")
    ours, theirs = _pair("regression", **BASE, solver="sgd", learning_rate="invscaling")
    calls = [("fit", (x, y), {}), ("partial_fit", (x, y), {}), ("partial_fit", (x, y), {})]
    seen = _fit_both(ours, theirs, calls)
    assert seen[0] == seen[1]
    assert_same_fit(ours, theirs)


def test_float32_stays_float32_and_tracks_sklearn():
    x, y = _data("multiclass")
    x = x.astype(np.float32)
    ours, theirs = _pair("multiclass", **{**BASE, "max_iter": 3}, solver="adam")
    _fit_both(ours, theirs, [("fit", (x, y), {})])
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert a.dtype == np.float32
        assert _rel_err(a, b) <= 1e-3
    assert ours.predict_proba(x).dtype == np.float32
    lbfgs = fb.MLPClassifier(**{**BASE, "max_iter": 3}, solver="lbfgs")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        lbfgs.fit(x, y)
    assert all(c.dtype == np.float32 for c in lbfgs.coefs_ + lbfgs.intercepts_)


def test_pickle_and_clone_round_trip():
    from sklearn.base import clone

    x, y = _data("binary")
    est = fb.MLPClassifier(hidden_layer_sizes=(5,), random_state=0, max_iter=30, solver="lbfgs")
    est.fit(x, y)  # converges: no warning
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(x), est.predict_proba(x))
    fresh = clone(est)
    assert fresh.get_params() == est.get_params()
    assert not hasattr(fresh, "coefs_")


def test_partial_fit_availability_matches_sklearn():
    for solver in ("lbfgs", "sgd"):
        assert hasattr(fb.MLPClassifier(solver=solver), "partial_fit") == hasattr(
            skl.MLPClassifier(solver=solver), "partial_fit"
        )
        assert hasattr(fb.MLPRegressor(solver=solver), "partial_fit") == hasattr(
            skl.MLPRegressor(solver=solver), "partial_fit"
        )


# fastbp's own parameters, beyond scikit-learn's, with their defaults.
EXTRA_PARAMS = {"n_threads": None, "progress": False, "dropout": 0.0}
EXTRA_CLASSIFIER_PARAMS = {"class_weight": None}


def test_defaults_match_sklearn():
    for ours, theirs, extra in (
        (fb.MLPClassifier(), skl.MLPClassifier(), EXTRA_CLASSIFIER_PARAMS),
        (fb.MLPRegressor(), skl.MLPRegressor(), {}),
    ):
        assert ours.get_params() == {**theirs.get_params(), **EXTRA_PARAMS, **extra}


# -- the same outcome on edge cases: result, warnings, printed output, errors ---------

_SMALL = {"hidden_layer_sizes": (5,), "random_state": 0, "max_iter": 5}


def _iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def _outcome(module, action):
    """What ``action(module)`` returns or raises, warns and prints."""
    import contextlib
    import io

    printed = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
        warnings.simplefilter("always")
        try:
            result = action(module)
        except (ValueError, TypeError, AttributeError) as exc:
            result = f"{type(exc).__name__}: {exc}"
    return repr(result), [(w.category, str(w.message)) for w in caught], printed.getvalue()


EDGE_CASES = {
    "string-labels": lambda m: (
        m.MLPClassifier(**_SMALL)
        .fit(_iris()[0], np.array(["a", "b", "c"])[_iris()[1]])
        .predict(_iris()[0][:5])
        .tolist()
    ),
    "sparse-input": lambda m: np.round(
        m.MLPClassifier(**_SMALL)
        .fit(__import__("scipy.sparse").sparse.csr_matrix(_iris()[0]), _iris()[1])
        .predict_proba(_iris()[0][:3]),
        12,
    ).tolist(),
    "batch-size-clipped": lambda m: (
        m.MLPClassifier(**_SMALL, batch_size=1000).fit(*_iris()).n_iter_
    ),
    "validation-set-too-small": lambda m: m.MLPClassifier(
        **_SMALL, early_stopping=True, validation_fraction=0.01
    ).fit(_iris()[0][:20], _iris()[1][:20]),
    "verbose-early-stopping": lambda m: (
        m.MLPRegressor(**_SMALL, verbose=True, early_stopping=True)
        .fit(_iris()[0], _iris()[1].astype(float))
        .n_iter_
    ),
    "verbose-adaptive": lambda m: (
        m.MLPClassifier(
            **{**_SMALL, "max_iter": 30},
            solver="sgd",
            learning_rate="adaptive",
            tol=0.5,
            n_iter_no_change=1,
            verbose=True,
        )
        .fit(*_iris())
        .n_iter_
    ),
    "column-y": lambda m: (
        m.MLPRegressor(**_SMALL).fit(_iris()[0], _iris()[1].reshape(-1, 1).astype(float)).n_iter_
    ),
    "partial-fit-needs-classes": lambda m: m.MLPClassifier(**_SMALL).partial_fit(*_iris()),
    "partial-fit-no-early-stopping": lambda m: m.MLPClassifier(
        **_SMALL, early_stopping=True
    ).partial_fit(*_iris(), classes=[0, 1, 2]),
    "invalid-parameter": lambda m: m.MLPClassifier(alpha=-1).fit(*_iris()),
    "invalid-hidden-layer": lambda m: m.MLPClassifier(hidden_layer_sizes=(0,)).fit(*_iris()),
    "diverges": lambda m: m.MLPRegressor(**_SMALL, solver="sgd", learning_rate_init=1e6).fit(
        _iris()[0], _iris()[1] * 1e10
    ),
    "warm-start-new-classes": lambda m: (
        m.MLPClassifier(**_SMALL, warm_start=True)
        .fit(_iris()[0][:100], _iris()[1][:100])
        .fit(*_iris())
    ),
    "lbfgs-max-fun": lambda m: (
        m.MLPClassifier(**_SMALL, solver="lbfgs", max_fun=3).fit(*_iris()).n_iter_
    ),
    "regressor-lbfgs-partial-fit": lambda m: (
        m.MLPRegressor(**_SMALL, solver="lbfgs")
        .partial_fit(_iris()[0], _iris()[1].astype(float))
        .predict(_iris()[0][:3])
        .round(10)
        .tolist()
    ),
    "warm-start-early-stopping": lambda m: (
        m.MLPClassifier(**_SMALL, warm_start=True, early_stopping=True)
        .fit(*_iris())
        .fit(*_iris())
        .validation_scores_
    ),
    "score": lambda m: round(m.MLPClassifier(**_SMALL).fit(*_iris()).score(*_iris()), 12),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_case_outcome_matches_sklearn(name):
    action = EDGE_CASES[name]
    assert _outcome(fb, action) == _outcome(skl, action)


def test_predict_in_chunks_matches_sklearn():
    """More rows than one forward pass takes (4096): predicted in chunks."""
    x, y = _data("multiclass")
    ours, theirs = _pair("multiclass", **BASE, solver="adam")
    _fit_both(ours, theirs, [("fit", (x, y), {})])
    big = np.tile(x, (20, 1))  # 4800 rows
    np.testing.assert_allclose(ours.predict_proba(big), theirs.predict_proba(big), rtol=1e-7)
    np.testing.assert_array_equal(ours.predict(big), theirs.predict(big))
