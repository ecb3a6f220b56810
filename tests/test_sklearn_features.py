"""fastbp's own estimator features, beyond scikit-learn's MLP: ``class_weight``,
``validation_data`` (early stopping across partial_fit calls), ``to_sklearn()`` and
``progress``. Each is checked for its exact meaning (bit for bit against an
equivalent call where there is one) and for bad input: a clear error naming the
argument, no kernel run, the estimator unchanged. ONNX export: test_onnx.py."""

from __future__ import annotations

import io
import sys
import warnings

import frontends as fe
import numpy as np
import pytest
from frontends import assert_unchanged, state_of
from sklearn import neural_network as skl
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import SGDClassifier
from sklearn.utils.class_weight import compute_sample_weight

from fastbp.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_IN = 3


def data(n: int = 24, seed: int = 0, kind: str = "multiclass", dtype=np.float64):
    """Tiny imbalanced data: X (n, 3) and targets of ``kind``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN)).astype(dtype)
    if kind == "multiclass":
        y = np.where(x[:, 0] > 0.6, 2, np.where(x[:, 1] > 0.3, 1, 0))
    elif kind == "binary":
        y = np.where(x[:, 0] > 0.5, "yes", "no")
    elif kind == "multilabel":
        y = np.c_[x[:, 0] > 0, x[:, 1] > 0.5, x[:, 2] > -0.5].astype(int)
    elif kind == "regression":
        y = x[:, 0] - 0.5 * x[:, 1]
    elif kind == "regression-2":
        y = np.c_[x[:, 0] - 0.5 * x[:, 1], x[:, 2]]
    else:  # poisson
        y = np.exp(0.3 * x[:, 0])
    return x, y


def small(cls=MLPClassifier, **params):
    params = {"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0, **params}
    return cls(**params)


def same_model(a, b) -> None:
    """Bit for bit the same weights, loss curve and validation scores."""
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert p.dtype == q.dtype
        assert p.tobytes() == q.tobytes()
    assert getattr(a, "loss_curve_", None) == getattr(b, "loss_curve_", None)
    assert getattr(a, "validation_scores_", None) == getattr(b, "validation_scores_", None)


def rejected(est, call, names, error=(TypeError, ValueError)) -> Exception:
    """``call(est)`` raises ``error`` naming one of ``names``, runs no kernel and
    leaves ``est`` as it was, attribute for attribute."""
    before = state_of(est)
    with fe.kernel_calls() as calls, pytest.raises(error) as info:
        call(est)
    assert not calls, f"a kernel ran before {info.value!r}"
    assert fe.names_argument(str(info.value), names), str(info.value)
    assert_unchanged(est, before)
    return info.value


# -- class_weight -------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 2.5, 2: 4.0}], ids=str)
def test_class_weight_is_sample_weight(solver, class_weight, dtype):
    """A fit with class_weight is, bit for bit, the fit with sample_weight
    compute_sample_weight(class_weight, y)."""
    x, y = data(dtype=dtype)
    ours = small(solver=solver, class_weight=class_weight).fit(x, y)
    want = small(solver=solver).fit(x, y, sample_weight=compute_sample_weight(class_weight, y))
    same_model(ours, want)
    assert ours.coefs_[0].dtype == dtype


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_class_weight_dict_times_sample_weight(solver, dtype):
    """With sample weights, a dict multiplies them: sample_weight times
    compute_sample_weight(class_weight, y), in float64 (as a user would), bit for bit."""
    x, y = data(dtype=dtype)
    class_weight = {0: 1.0, 1: 2.5, 2: 4.0}
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(y)).astype(np.float32)
    ours = small(solver=solver, class_weight=class_weight).fit(x, y, sample_weight=sw)
    product = sw * compute_sample_weight(class_weight, y)
    same_model(ours, small(solver=solver).fit(x, y, sample_weight=product))


def test_class_weight_balanced_counts_weighted_samples():
    """With sample weights, 'balanced' counts each class by weight, as scikit-learn's
    LogisticRegression does: an integer weight is that many repeats of the sample,
    so the class weights are compute_sample_weight('balanced', ...) of the repeated
    targets (what scikit-learn's sample-weight equivalence check asks)."""
    x, y = data()
    sw = np.random.default_rng(2).integers(1, 4, len(y))
    repeats = np.repeat(np.arange(len(y)), sw)
    per_repeat = compute_sample_weight("balanced", y[repeats])
    factor = per_repeat[np.searchsorted(repeats, np.arange(len(y)))]
    ours = small(class_weight="balanced").fit(x, y, sample_weight=sw)
    same_model(ours, small().fit(x, y, sample_weight=sw * factor))


@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_class_weight_balanced_other_targets(kind):
    """Binary string labels and multilabel targets (one weight per output, multiplied,
    as compute_sample_weight does) too."""
    x, y = data(kind=kind)
    ours = small(class_weight="balanced").fit(x, y)
    want = small().fit(x, y, sample_weight=compute_sample_weight("balanced", y))
    same_model(ours, want)


def test_class_weight_with_early_stopping_weighs_the_split():
    """With the validation_fraction split, the class weights go with the samples, as
    sample weights do: again the same fit."""
    x, y = data(n=40)
    params = {"early_stopping": True, "validation_fraction": 0.25, "max_iter": 4}
    ours = small(class_weight="balanced", **params).fit(x, y)
    want = small(**params).fit(x, y, sample_weight=compute_sample_weight("balanced", y))
    same_model(ours, want)


def test_class_weight_partial_fit_dict():
    """partial_fit takes a dict (as SGDClassifier): each sample gets its class's weight,
    a batch need not hold every class of ``classes``."""
    x, y = data()
    weights = {0: 0.5, 1: 2.0, 2: 3.0}
    batch = y != 2
    ours = small(class_weight=weights).partial_fit(x[batch], y[batch], classes=[0, 1, 2])
    sw = np.array([weights[c] for c in y[batch]])
    want = small().partial_fit(x[batch], y[batch], classes=[0, 1, 2], sample_weight=sw)
    same_model(ours, want)
    ours.partial_fit(x, y)
    want.partial_fit(x, y, sample_weight=np.array([weights[c] for c in y]))
    same_model(ours, want)


def test_class_weight_partial_fit_balanced_refused_as_sgdclassifier():
    """SGDClassifier's message, as the cause of an AttributeError: partial_fit is
    unavailable, as with solver='lbfgs', so that hasattr and scikit-learn's checks
    see it."""
    x, y = data()
    with pytest.raises(ValueError) as theirs:
        SGDClassifier(class_weight="balanced").partial_fit(x, y, classes=[0, 1, 2])
    for est in (small(class_weight="balanced"), small().fit(x, y)):
        est.set_params(class_weight="balanced")
        assert not hasattr(est, "partial_fit")
        error = rejected(
            est, lambda e: e.partial_fit(x, y, classes=[0, 1, 2]), ["partial_fit"], AttributeError
        )
        # available_if's message, from SGDClassifier's
        assert str(error.__cause__) == str(theirs.value)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_class_weight_with_an_unknown_class(method):
    """A class in the dict that y (fit) or ``classes`` (partial_fit) does not have is
    an error (scikit-learn's compute_sample_weight ignores it when every class of y
    has a weight)."""
    x, y = data()
    for est in (small(), small().fit(x, y)):
        est.set_params(class_weight={0: 1.0, 1: 2.0, 2: 1.0, 7: 5.0})
        if method == "fit":
            error = rejected(est, lambda e: e.fit(x, y), ["class_weight"], ValueError)
        else:
            error = rejected(
                est, lambda e: e.partial_fit(x, y, classes=[0, 1, 2]), ["class_weight"], ValueError
            )
        assert "[7]" in str(error)


@pytest.mark.parametrize("value", ["auto", 3, [{0: 1.0}], "balanced "], ids=repr)
def test_class_weight_bad_value(value):
    x, y = data()
    est = small().fit(x, y)
    est.set_params(class_weight=value)
    rejected(est, lambda e: e.fit(x, y), ["class_weight"])


def test_regressor_has_no_class_weight():
    assert "class_weight" not in MLPRegressor().get_params()
    assert MLPClassifier().get_params()["class_weight"] is None


# -- validation_data ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_validation_data_replaces_the_split(kind):
    """fit with validation_data trains on all of X, exactly as without early stopping
    (the same draws, no split), and scores each epoch on the given set: the score of
    epoch k is that of a plain fit of k epochs; the weights end as the best epoch's."""
    cls = MLPClassifier if kind == "multiclass" else MLPRegressor
    x, y = data(n=30, kind=kind)
    xv, yv = data(n=10, seed=5, kind=kind)
    epochs = 4
    params = {"learning_rate_init": 0.05, "n_iter_no_change": 99}
    ours = small(cls, max_iter=epochs, early_stopping=True, **params)
    ours.fit(x, y, validation_data=(xv, yv))
    plain = [small(cls, max_iter=k, **params).fit(x, y) for k in range(1, epochs + 1)]
    assert ours.loss_curve_ == plain[-1].loss_curve_
    assert ours.validation_scores_ == [p.score(xv, yv) for p in plain]
    best = int(np.argmax(ours.validation_scores_))
    assert ours.best_validation_score_ == ours.validation_scores_[best]
    same_model(
        type("W", (), {"coefs_": ours.coefs_, "intercepts_": ours.intercepts_})(),
        type("W", (), {"coefs_": plain[best].coefs_, "intercepts_": plain[best].intercepts_})(),
    )
    assert ours.stopped_ is False  # ran its max_iter epochs


def test_validation_data_sample_weight():
    """A third element weighs the validation samples in the score."""
    x, y = data(n=30)
    xv, yv = data(n=10, seed=5)
    swv = np.linspace(0.1, 2.0, 10)
    est = small(early_stopping=True, max_iter=1).fit(x, y, validation_data=(xv, yv, swv))
    plain = small(max_iter=1).fit(x, y)
    assert est.validation_scores_ == [plain.score(xv, yv, sample_weight=swv)]


def test_partial_fit_early_stopping_across_calls():
    """Each partial_fit call is one epoch scored on validation_data; the training is
    that of partial_fit without early stopping until the stopping rule fires: then
    ``stopped_`` is True and the weights are the best epoch's; a further call trains
    on from them with fresh patience."""
    x, y = data(n=30)
    xv, yv = data(n=10, seed=5)
    # tol=1: no epoch improves enough, so the rule fires on the 3rd call.
    ours = small(early_stopping=True, n_iter_no_change=1, tol=1.0, learning_rate_init=0.05)
    plain = small(n_iter_no_change=1, tol=1.0, learning_rate_init=0.05)
    weights, scores = [], []
    for call in range(3):
        ours.partial_fit(x, y, classes=[0, 1, 2], validation_data=(xv, yv))
        plain.partial_fit(x, y, classes=[0, 1, 2])
        scores.append(plain.score(xv, yv))
        weights.append([w.copy() for w in plain.coefs_ + plain.intercepts_])
        assert ours.validation_scores_ == scores
        assert ours.best_validation_score_ == max(scores)
        assert ours.stopped_ is (call == 2)
        if call < 2:
            same_model(ours, type("W", (), {**vars(plain), "validation_scores_": scores})())
    best = int(np.argmax(scores))
    for got, want in zip(ours.coefs_ + ours.intercepts_, weights[best], strict=True):
        assert got.tobytes() == want.tobytes()
    ours.partial_fit(x, y, validation_data=(xv, yv))
    assert ours.stopped_ is False
    assert len(ours.validation_scores_) == 4


def test_fit_then_partial_fit_goes_on_scoring():
    x, y = data(n=30, kind="regression")
    xv, yv = data(n=10, seed=5, kind="regression")
    est = small(MLPRegressor, early_stopping=True).fit(x, y, validation_data=(xv, yv))
    n = len(est.validation_scores_)
    est.partial_fit(x, y, validation_data=(xv, yv))
    assert len(est.validation_scores_) == n + 1
    assert est.best_validation_score_ == max(est.validation_scores_)


def test_fit_stops_on_the_rule_and_says_so():
    x, y = data(n=30)
    xv, yv = data(n=10, seed=5)
    est = small(early_stopping=True, n_iter_no_change=1, tol=1.0, max_iter=50)
    est.fit(x, y, validation_data=(xv, yv))
    assert est.stopped_ is True
    assert est.n_iter_ == 3
    assert small(max_iter=2).fit(x, y).stopped_ is False


def _classifier_cases():
    xv, yv = data(n=10, seed=5)
    return {
        "other-columns": ((xv[:, :2], yv), ValueError),
        "unknown-class": ((xv, yv + 5), ValueError),
        "string-labels": ((xv, yv.astype(str)), ValueError),
        "nan-X": ((np.where(xv > 1, np.nan, xv), yv), ValueError),
        "other-length": ((xv, yv[:4]), ValueError),
        "bad-sample-weight": ((xv, yv, np.ones(3)), ValueError),
        "one-element": ((xv,), TypeError),
        "four-elements": ((xv, yv, None, None), TypeError),
        "an-array": (xv, TypeError),
        "a-dict": ({"X": xv, "y": yv}, TypeError),
    }


@pytest.mark.parametrize("case", list(_classifier_cases()))
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_validation_data_classifier(case, method):
    x, y = data(n=30)
    bad, error = _classifier_cases()[case]
    fresh = small(early_stopping=True)
    fitted = small(early_stopping=True).fit(x, y, validation_data=data(n=10, seed=5))
    for est in (fresh, fitted):
        if method == "fit":
            rejected(est, lambda e: e.fit(x, y, validation_data=bad), ["validation_data"], error)
        else:
            rejected(
                est,
                lambda e: e.partial_fit(x, y, classes=[0, 1, 2], validation_data=bad),
                ["validation_data"],
                error,
            )


@pytest.mark.parametrize(
    "case",
    ["two-outputs", "strings", "inf"],
)
def test_bad_validation_data_regressor(case):
    x, y = data(n=30, kind="regression")
    xv, yv = data(n=10, seed=5, kind="regression")
    bad = {
        "two-outputs": np.c_[yv, yv],
        "strings": yv.astype(str),
        "inf": np.where(yv > 0.5, np.inf, yv),
    }[case]
    est = small(MLPRegressor, early_stopping=True).fit(x, y, validation_data=(xv, yv))
    rejected(est, lambda e: e.partial_fit(x, y, validation_data=(xv, bad)), ["validation_data"])


@pytest.mark.parametrize(
    "params",
    [{"early_stopping": False}, {"early_stopping": True, "solver": "lbfgs"}],
    ids=["no-early-stopping", "lbfgs"],
)
def test_validation_data_needs_early_stopping_with_sgd_or_adam(params):
    x, y = data(n=30)
    est = small().fit(x, y)
    est.set_params(**params)
    rejected(est, lambda e: e.fit(x, y, validation_data=data(10, 5)), ["validation_data"])


def test_partial_fit_early_stopping_without_validation_data():
    """scikit-learn's refusal, word for word."""
    x, y = data(n=30)
    est = small(early_stopping=True)
    error = rejected(
        est, lambda e: e.partial_fit(x, y, classes=[0, 1, 2]), ["early_stopping"], ValueError
    )
    assert str(error) == "partial_fit does not support early_stopping=True"


# -- to_sklearn ---------------------------------------------------------------------------------

TO_SKLEARN = {
    "multiclass": (MLPClassifier, {}),
    "binary": (MLPClassifier, {}),
    "multilabel": (MLPClassifier, {}),
    "regression": (MLPRegressor, {}),
    "regression-2": (MLPRegressor, {}),
    "poisson": (MLPRegressor, {"loss": "poisson"}),
}


@pytest.mark.parametrize("kind", list(TO_SKLEARN))
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_to_sklearn_predicts_as_fastbp(kind, activation, dtype, assert_close):
    """scikit-learn's estimator with the same weights, classes and output activation.
    Its class predictions are identical; its outputs (probabilities, regression
    values) agree to rounding, not bit for bit: fastbp's compiled forward pass adds
    the products of a layer in another order than the BLAS product scikit-learn
    calls (a difference of an ulp or so)."""
    cls, params = TO_SKLEARN[kind]
    x, y = data(kind=kind, dtype=dtype)
    ours = small(cls, activation=activation, max_iter=20, **params).fit(x, y)
    before = state_of(ours)
    theirs = ours.to_sklearn()
    assert_unchanged(ours, before)
    assert type(theirs) is getattr(skl, cls.__name__)
    for name in ("out_activation_", "n_layers_", "n_outputs_", "n_iter_", "loss_curve_", "t_"):
        assert getattr(theirs, name) == getattr(ours, name)
    for got, want in zip(
        theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_, strict=True
    ):
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()
        assert got.base is None  # its own arrays
    expected = {k: v for k, v in ours.get_params().items() if k in theirs.get_params()}
    assert theirs.get_params() == expected
    for xp in (x, x.astype(np.float64)):
        if cls is MLPClassifier:
            np.testing.assert_array_equal(theirs.classes_, ours.classes_)
            np.testing.assert_array_equal(theirs.predict(xp), ours.predict(xp))
            assert_close(theirs.predict_proba(xp), ours.predict_proba(xp), dtype, "sum")
        else:
            got, want = theirs.predict(xp), ours.predict(xp)
            assert got.dtype == want.dtype
            assert_close(got, want, dtype, "sum")


def test_to_sklearn_trains_on():
    """The result is an ordinary fitted scikit-learn estimator (partial_fit starts
    a fresh optimizer on its weights)."""
    x, y = data()
    theirs = small(class_weight={0: 1.0, 1: 2.0, 2: 3.0}, n_threads=1).fit(x, y).to_sklearn()
    assert "class_weight" not in theirs.get_params()
    theirs.partial_fit(x, y)
    assert theirs.n_iter_ == 1


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_to_sklearn_unfitted(cls):
    with pytest.raises(NotFittedError):
        cls().to_sklearn()


# -- progress ------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar(solver, terminal, monkeypatch, capsys):
    """A bar on stderr when it is a terminal, with the loss (and the validation
    score); the fit and verbose's printed lines are those without it."""
    x, y = data(n=30)
    xv, yv = data(n=10, seed=5)
    early = {"early_stopping": True} if solver == "adam" else {}
    fit_args = {"validation_data": (xv, yv)} if early else {}
    plain = small(solver=solver, verbose=True, **early).fit(x, y, **fit_args)
    printed = capsys.readouterr().out
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = small(solver=solver, verbose=True, progress=True, **early).fit(x, y, **fit_args)
    assert capsys.readouterr().out == printed
    same_model(ours, plain)
    bar = stderr.getvalue()
    if not terminal:
        assert bar == ""
    else:
        assert f"{ours.n_iter_}/3" in bar
        assert f"loss={ours.loss_:.6g}" in bar
        assert ("val=" in bar) == bool(early)


def test_no_progress_bar_in_partial_fit(monkeypatch):
    x, y = data()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    small(progress=True).partial_fit(x, y, classes=[0, 1, 2])
    assert sys.stderr.getvalue() == ""


def test_progress_bad_value():
    x, y = data()
    est = small(MLPRegressor, progress="yes")
    rejected(est, lambda e: e.fit(x, y.astype(float)), ["progress"])
