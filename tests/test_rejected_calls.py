"""Rejected calls: bad arguments raise a clear TypeError/ValueError naming the
argument, before any kernel runs, and leave the model exactly as it was.

Shared by both front ends (``test_rejected_call_shared``, over ``frontends.FRONT_ENDS``);
then Network's named cases (constructor, X, Y, fit's arguments, replaced weights), then
the estimators' named cases, checked against scikit-learn's own estimators on the same
calls (scikit-learn's exact error, or one naming the argument). Generated calls of
both front ends are in test_generated_calls.py."""

from __future__ import annotations

import pickle
import re

import frontends as fe
import numpy as np
import pytest
from frontends import (
    ESTIMATORS,
    SOLVERS,
    all_finite,
    assert_unchanged,
    check_rejection,
    fitted_pair,
    run_ours,
    run_theirs,
    state_of,
    train_data,
)
from sklearn import neural_network as skl

from fastbp import Network, _loop
from fastbp import sklearn as fb

SIZES = [3, 5, 2]
N = 6


def names(arg: str) -> str:
    """A regex finding ``arg`` as a whole word in an error message."""
    return rf"(^|\W){re.escape(arg)}(?!\w)"


@pytest.fixture
def no_kernels(monkeypatch):
    """Make every compiled entry point the network calls fail loudly if reached."""

    def kernel_ran(*args, **kwargs):
        raise AssertionError("a compiled kernel ran before the arguments were checked")

    for name in ("train_chunk", "forward", "loss_grad", "gather_rows"):
        monkeypatch.setattr(_loop, name, kernel_ran)


@pytest.fixture
def net():
    return Network(SIZES, seed=3)


@pytest.fixture
def data(rng):
    x = rng.normal(size=(N, SIZES[0]))
    y = rng.uniform(size=(N, SIZES[-1]))
    return x, y


def net_state_of(net):
    """Everything a rejected call must leave alone: parameters, bit for bit, and
    the generator that shuffles."""
    params = [w.copy() for w in net._weight_views] + [b.copy() for b in net._bias_views]
    return params, net._rng.bit_generator.state


def assert_net_unchanged(net, before):
    params, rng_state = net_state_of(net)
    for got, want in zip(params, before[0], strict=True):
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()
    assert rng_state == before[1]


# -- both front ends ---------------------------------------------------------------------------


def _with_value(a, row, col, value):
    a = a.copy()
    a[row, col] = value
    return a


# name: (method, bad X and y from good ones, the argument named). Each is rejected by
# both front ends with an error naming the argument (the target is "Y" in Network,
# "y" in the estimators).
SHARED_BAD = {
    "fit-X-nan": ("fit", lambda x, y: (_with_value(x, 1, 1, np.nan), y), "X"),
    "fit-X-inf": ("fit", lambda x, y: (_with_value(x, 0, 2, np.inf), y), "X"),
    "fit-y-nan": ("fit", lambda x, y: (x, _with_value(y, 2, 0, np.nan)), "y"),
    "fit-y-inf": ("fit", lambda x, y: (x, _with_value(y, 0, 1, -np.inf)), "y"),
    "predict-X-nan": ("predict", lambda x, y: (_with_value(x, 1, 1, np.nan), y), "X"),
    "predict-X-too-few-features": ("predict", lambda x, y: (x[:, :2], y), "X"),
    "predict-X-too-many-features": ("predict", lambda x, y: (np.hstack([x, x]), y), "X"),
}


@pytest.mark.parametrize("front_end", list(fe.FRONT_ENDS))
@pytest.mark.parametrize("case", list(SHARED_BAD))
def test_rejected_call_shared(front_end, case):
    """A rejected call raises ValueError/TypeError naming the argument, runs no kernel,
    and leaves the model's complete state as it was (Network: parameters and
    generator; the estimators: every attribute)."""
    spec = fe.FRONT_ENDS[front_end]
    method, bad, arg = SHARED_BAD[case]
    model = spec.make(seed=3)
    x, y = bad(*spec.data())
    if arg == "y" and front_end == "Network":
        arg = "Y"
    before = spec.state(model)
    with fe.kernel_calls() as calls, pytest.raises((ValueError, TypeError)) as info:
        if method == "fit":
            spec.fit(model, x, y)
        else:
            spec.predict(model, x)
    assert not calls, f"a kernel ran before {info.value!r}"
    assert fe.names_argument(str(info.value), (arg,)), str(info.value)
    assert spec.state(model) == before
    # and the model still works as it did
    good_x, _ = spec.data()
    assert np.isfinite(np.asarray(spec.predict(model, good_x), dtype=float)).all()


# -- the constructor ---------------------------------------------------------------------------

BAD_SIZES = {
    "empty": ([], ValueError),
    "one-layer": ([3], ValueError),
    "zero-width": ([3, 0], ValueError),
    "negative-width": ([3, -2], ValueError),
    "float-width": ([3, 2.5], TypeError),
    "float-integral-width": ([3, 2.0], TypeError),
    "bool-width": ([3, True], TypeError),
    "string-width": ([3, "2"], TypeError),
    "none-width": ([3, None], TypeError),
    "string": ("32", TypeError),
    "int": (32, TypeError),
    "none": (None, TypeError),
}


@pytest.mark.parametrize("case", list(BAD_SIZES))
def test_bad_sizes(case):
    sizes, error = BAD_SIZES[case]
    with pytest.raises(error, match=names("sizes")):
        Network(sizes)


@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.int32, np.int64, bool, complex, np.complex64, object, "nonsense", "U3", 3],
    ids=str,
)
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match=names("dtype")):
        Network(SIZES, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, "float32", "f4", np.dtype("float64"), float])
def test_dtype_spellings(dtype):
    assert Network(SIZES, dtype=dtype).dtype in (np.float32, np.float64)


@pytest.mark.parametrize(
    ("seed", "error"),
    [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError), ([1], TypeError)],
)
def test_bad_seed(seed, error):
    with pytest.raises(error, match=names("seed")):
        Network(SIZES, seed=seed)


def test_sizes_accepts_numpy_integers():
    net = Network(np.array([3, 5, 2], dtype=np.int32), seed=np.int64(1))
    assert net.sizes == [3, 5, 2]
    assert all(type(s) is int for s in net.sizes)


# -- data: X and Y -----------------------------------------------------------------------------


def _x_cases(rng):
    x = rng.normal(size=(N, SIZES[0]))
    with_nan, with_inf, with_ninf = x.copy(), x.copy(), x.copy()
    with_nan[2, 1] = np.nan
    with_inf[0, 0] = np.inf
    with_ninf[-1, -1] = -np.inf
    ragged = [[1.0, 2.0, 3.0], [1.0, 2.0]]
    return {
        "1-D": (x[0], ValueError),
        "3-D": (x[None], ValueError),
        "scalar": (1.0, ValueError),
        "too-few-features": (x[:, :2], ValueError),
        "too-many-features": (np.hstack([x, x]), ValueError),
        "no-samples": (x[:0], ValueError),
        "empty-list": ([], ValueError),
        "empty-rows": ([[]], ValueError),
        "nan": (with_nan, ValueError),
        "inf": (with_inf, ValueError),
        "-inf": (with_ninf, ValueError),
        "strings": (x.astype(str), TypeError),
        "string-list": ([["a", "b", "c"]] * N, TypeError),
        "string": ("abc", TypeError),
        "objects": (x.astype(object), TypeError),
        "none": (None, TypeError),
        "ragged": (ragged, TypeError),
        "complex": (x.astype(complex), TypeError),
        "complex-list": ([[1j, 2.0, 3.0]] * N, TypeError),
        "datetime": (np.zeros((N, 3), dtype="datetime64[s]"), TypeError),
    }


def _y_cases(rng):
    y = rng.uniform(size=(N, SIZES[-1]))
    with_nan = y.copy()
    with_nan[1, 1] = np.nan
    with_inf = y.copy()
    with_inf[0, 1] = -np.inf
    return {
        "1-D-for-2-outputs": (y[:, 0], ValueError),
        "3-D": (y[None], ValueError),
        "too-few-outputs": (y[:, :1], ValueError),
        "too-many-outputs": (np.hstack([y, y]), ValueError),
        "too-few-samples": (y[:-1], ValueError),
        "too-many-samples": (np.vstack([y, y]), ValueError),
        "empty": (y[:0], ValueError),
        "nan": (with_nan, ValueError),
        "inf": (with_inf, ValueError),
        "strings": (y.astype(str), TypeError),
        "objects": (y.astype(object), TypeError),
        "none": (None, TypeError),
        "complex": (y.astype(np.complex64), TypeError),
    }


X_CASES = list(_x_cases(np.random.default_rng(0)))
Y_CASES = list(_y_cases(np.random.default_rng(0)))

CALLS = {
    "fit": lambda net, x, y: net.fit(x, y, epochs=2),
    "fit-shuffled": lambda net, x, y: net.fit(x, y, epochs=2, batch_size=2, shuffle=True),
    "loss": lambda net, x, y: net.loss(x, y),
    "gradients": lambda net, x, y: net.gradients(x, y),
}


@pytest.mark.parametrize("call", [*CALLS, "predict"])
@pytest.mark.parametrize("case", X_CASES)
def test_bad_x(case, call, net, data, rng, no_kernels):
    bad, error = _x_cases(rng)[case]
    before = net_state_of(net)
    with pytest.raises(error, match=names("X")):
        if call == "predict":
            net.predict(bad)
        else:
            CALLS[call](net, bad, data[1])
    assert_net_unchanged(net, before)


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("case", Y_CASES)
def test_bad_y(case, call, net, data, rng, no_kernels):
    bad, error = _y_cases(rng)[case]
    before = net_state_of(net)
    with pytest.raises(error, match=names("Y")):
        CALLS[call](net, data[0], bad)
    assert_net_unchanged(net, before)


def test_float64_data_too_large_for_a_float32_network(data, no_kernels):
    """1e300 becomes inf in float32: rejected like an inf, with no RuntimeWarning."""
    net = Network(SIZES, dtype=np.float32, seed=3)
    x, y = data
    x = x.copy()
    x[0, 0] = 1e300
    before = net_state_of(net)
    with pytest.raises(ValueError, match=names("X")):
        net.predict(x)
    with pytest.raises(ValueError, match=names("X")):
        net.fit(x, y.astype(np.float32))
    y = y.copy()
    y[0, 0] = -1e300
    with pytest.raises(ValueError, match=names("Y")):
        net.loss(data[0], y)
    assert_net_unchanged(net, before)


# -- fit's other arguments ----------------------------------------------------------------------

BAD_FIT_ARGS = {
    "epochs": [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (3.0, TypeError),
        (True, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (np.float64(3), TypeError),
    ],
    "lr": [
        (0, ValueError),
        (0.0, ValueError),
        (-1, ValueError),
        (-0.5, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        (-np.inf, ValueError),
        (True, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (1j, TypeError),
        (np.array([0.1]), TypeError),
    ],
    "batch_size": [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (True, TypeError),
        ("3", TypeError),
        (np.float32(2), TypeError),
    ],
    "shuffle": [(None, TypeError), (1, TypeError), ("yes", TypeError)],
    "callback": [(3, TypeError), ("print", TypeError)],
    "dropout": [  # one hidden layer here
        (1, ValueError),
        (1.0, ValueError),
        (-0.1, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        ([0.1, 0.2], ValueError),
        ([np.nan], ValueError),
        (True, TypeError),
        ("0.5", TypeError),
        (None, TypeError),
        ([[0.1]], TypeError),
    ],
}


@pytest.mark.parametrize(
    ("arg", "value", "error"),
    [
        pytest.param(arg, value, error, id=f"{arg}={value!r}")
        for arg, cases in BAD_FIT_ARGS.items()
        for value, error in cases
    ],
)
def test_bad_fit_arguments(arg, value, error, net, data, no_kernels):
    before = net_state_of(net)
    with pytest.raises(error, match=names(arg)):
        net.fit(*data, **{arg: value})
    assert_net_unchanged(net, before)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": np.int64(2), "lr": np.float32(0.1)},
        {"epochs": 1, "lr": 1, "batch_size": np.int8(2)},
        {"epochs": 1, "batch_size": None, "shuffle": np.True_},
    ],
    ids=["numpy-scalars", "int-lr", "numpy-bool"],
)
def test_good_fit_argument_types(kwargs, net, data):
    history = net.fit(*data, **kwargs)
    assert history.loss.shape == (int(kwargs["epochs"]),)


# -- replaced weights and biases -----------------------------------------------------------------


def _bad_entries():
    w0 = np.zeros((SIZES[0], SIZES[1]))
    nan, inf = w0.copy(), w0.copy()
    nan[1, 1] = np.nan
    inf[0, 2] = np.inf
    return {
        "wrong-shape": (np.zeros((SIZES[1], SIZES[0])), ValueError),
        "1-D": (np.zeros(SIZES[0] * SIZES[1]), ValueError),
        "scalar": (0.5, ValueError),
        "nan": (nan, ValueError),
        "inf": (inf, ValueError),
        "too-large-for-float32": (np.full_like(w0, 1e300), ValueError),
        "strings": (w0.astype(str), TypeError),
        "objects": (w0.astype(object), TypeError),
        "none": (None, TypeError),
        "complex": (w0.astype(complex), TypeError),
        "ragged": ([[0.0] * SIZES[1]] * (SIZES[0] - 1) + [[0.0]], (TypeError, ValueError)),
    }


BAD_ENTRIES = list(_bad_entries())
ENTRY_CALLS = {
    "fit": lambda net, x, y: net.fit(x, y, epochs=1),
    "predict": lambda net, x, y: net.predict(x),
    "loss": lambda net, x, y: net.loss(x, y),
    "gradients": lambda net, x, y: net.gradients(x, y),
}


@pytest.mark.parametrize("call", list(ENTRY_CALLS))
@pytest.mark.parametrize(
    ("dtype", "case"),
    [
        pytest.param(dtype, case, id=f"{np.dtype(dtype).name}-{case}")
        for dtype in (np.float32, np.float64)
        for case in BAD_ENTRIES
        if not (case == "too-large-for-float32" and dtype == np.float64)
    ],
)
def test_bad_replaced_weight(dtype, case, call, data, no_kernels):
    net = Network(SIZES, dtype=dtype, seed=3)
    bad, error = _bad_entries()[case]
    before = net_state_of(net)
    net.weights[0] = bad
    with pytest.raises(error, match=names("weights[0]")):
        ENTRY_CALLS[call](net, *data)
    assert_net_unchanged(net, before)
    assert net.weights[0] is bad  # still the user's entry, until replaced again


def test_float64_network_takes_the_largest_float64_weights(data):
    net = Network(SIZES, seed=3)
    big = np.full((SIZES[0], SIZES[1]), np.finfo(np.float64).max)
    net.weights[0] = big
    net.predict(data[0])
    np.testing.assert_array_equal(net.weights[0], big)
    assert net.weights[0] is not big


@pytest.mark.parametrize("case", ["wrong-shape", "nan", "strings"])
def test_bad_replaced_bias(case, net, data, no_kernels):
    bad = {"wrong-shape": np.zeros(SIZES[1] + 1), "nan": np.full(SIZES[2], np.nan)}.get(
        case, np.array(["a", "b"])
    )
    before = net_state_of(net)
    net.biases[1] = bad
    with pytest.raises((TypeError, ValueError), match=names("biases[1]")):
        net.predict(data[0])
    assert_net_unchanged(net, before)


def test_one_bad_entry_blocks_all_replacements(net, data, no_kernels):
    """Entries are checked together: a good replacement is not applied either."""
    before = net_state_of(net)
    net.weights[0] = np.ones((SIZES[0], SIZES[1]))
    net.weights[1] = np.full((SIZES[1], SIZES[2]), np.nan)
    with pytest.raises(ValueError, match=names("weights[1]")):
        net.predict(data[0])
    assert_net_unchanged(net, before)


def test_fixing_a_bad_entry_recovers(net, data):
    good = np.full((SIZES[0], SIZES[1]), 0.125)
    net.weights[0] = np.full((SIZES[0], SIZES[1]), np.nan)
    with pytest.raises(ValueError, match=names("weights[0]")):
        net.predict(data[0])
    net.weights[0] = good
    assert np.isfinite(net.predict(data[0])).all()
    np.testing.assert_array_equal(net.weights[0], good)


@pytest.mark.parametrize(
    "value",
    [None, "abc", [np.zeros((3, 5))], np.zeros((3, 5))],
    ids=["None", "string", "too-short-list", "an-array"],
)
def test_bad_weights_list(value, net, no_kernels):
    before = net_state_of(net)
    with pytest.raises((TypeError, ValueError), match=names("weights")):
        net.weights = value
    assert_net_unchanged(net, before)


# -- bad input: named cases ------------------------------------------------------------------


def _y2(kind, y):
    return np.c_[y, y] if kind == "MLPRegressor" else y


# name: (set_params, call(est, x, y), solvers it applies to). Each is rejected after
# some attribute was already set on the way (n_features_in_, classes_, fresh weights,
# an optimizer, draws from the RandomState): all of it must be undone.
REJECTED = {
    "new-features-and-nan-y": (
        {},
        lambda est, x, y: est.fit(np.ones((12, 4)), np.where(np.arange(12) == 0, np.nan, y)),
        SOLVERS,
    ),
    "new-features-bad-sample-weight": (
        {},
        lambda est, x, y: est.fit(x[:, :2], y, sample_weight=np.ones(5)),
        SOLVERS,
    ),
    "validation-set-too-small": (
        {"early_stopping": True, "validation_fraction": 0.01},
        lambda est, x, y: est.fit(x[:10], y[:10]),
        ("sgd", "adam"),
    ),
    "warm-start-other-targets": (
        {"warm_start": True},
        lambda est, x, y: est.fit(x, _y2(type(est).__name__, y + 7)),
        SOLVERS,
    ),
    "warm-start-other-hidden-layers": (
        {"warm_start": True, "hidden_layer_sizes": (5,)},
        lambda est, x, y: est.fit(x, y),
        SOLVERS,
    ),
    "partial-fit-other-targets": (
        {},
        lambda est, x, y: (
            est.partial_fit(x, _y2(type(est).__name__, y + 7), classes=[0, 1, 2])
            if isinstance(est, fb.MLPClassifier | skl.MLPClassifier)
            else est.partial_fit(x, _y2("MLPRegressor", y))
        ),
        ("sgd", "adam"),
    ),
    "partial-fit-other-classes": (
        {},
        lambda est, x, y: (
            est.partial_fit(x, y, classes=[0, 1, 5])
            if isinstance(est, fb.MLPClassifier | skl.MLPClassifier)
            else est.partial_fit(x, y.astype(str))
        ),
        ("sgd", "adam"),
    ),
    "partial-fit-early-stopping": (
        {"early_stopping": True},
        lambda est, x, y: (
            est.partial_fit(x, y, classes=[0, 1, 2])
            if isinstance(est, fb.MLPClassifier | skl.MLPClassifier)
            else est.partial_fit(x, y)
        ),
        ("sgd", "adam"),
    ),
    "hidden-layer-not-an-integer": ({"hidden_layer_sizes": (4, 2.5)}, None, SOLVERS),
    "hidden-layer-a-bool": ({"hidden_layer_sizes": (True,)}, None, SOLVERS),
    "hidden-layer-nan": ({"hidden_layer_sizes": (np.nan,)}, None, SOLVERS),
    "too-many-parameters": ({"hidden_layer_sizes": (2**40, 2**40)}, None, SOLVERS),
    "string-targets": ({}, lambda est, x, y: est.fit(x, y.astype(str)), SOLVERS),
}
REJECTED_CASES = [
    (kind, solver, name)
    for name, (_, _, solvers) in REJECTED.items()
    for kind in ESTIMATORS
    for solver in solvers
    if not (name == "string-targets" and kind == "MLPClassifier")  # labels may be strings
]
ALL_NAMES = ("X", "y", "sample_weight", "classes", "hidden_layer_sizes", "early_stopping")


@pytest.mark.parametrize(("kind", "solver", "name"), REJECTED_CASES)
def test_rejected_call_changes_nothing(kind, solver, name):
    """Rejected after attributes were set on the way: all of it is undone, down to the
    draws from a RandomState passed as random_state; no kernel ran."""
    params, call, _ = REJECTED[name]
    ours, theirs = fitted_pair(kind, solver, random_state=np.random.RandomState(5))
    if call is None:
        call = lambda est, x, y: est.fit(x, y)  # noqa: E731
    ours.set_params(**params)
    theirs.set_params(**params)
    x, y = train_data(kind)
    before = state_of(ours)
    rng_before = pickle.dumps(ours.random_state)
    _, exc, calls = run_ours(lambda: call(ours, x, y))
    _, their_exc = run_theirs(lambda: call(theirs, x, y))
    assert exc is not None, "accepted"
    assert not calls
    assert_unchanged(ours, before)
    assert pickle.dumps(ours.random_state) == rng_before
    check_rejection(exc, ALL_NAMES, their_exc)
    # And the estimator still works as it did.
    ours.set_params(warm_start=False, hidden_layer_sizes=(4,), early_stopping=False)
    assert np.isfinite(np.asarray(ours.predict(x), dtype=float)).all()


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize(
    "change",
    [
        {"solver": "adam"},  # from lbfgs: no loss curve to continue (sklearn: AttributeError)
        {"solver": "sgd", "early_stopping": True},  # no validation scores (sklearn: idem)
    ],
    ids=["lbfgs-then-adam", "then-early-stopping"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_with_other_settings_trains(kind, change):
    """Settings changed between warm-started fits (where scikit-learn fails mid-fit
    with an AttributeError) train on from the fitted weights."""
    ours, _ = fitted_pair(kind, "lbfgs" if "early_stopping" not in change else "adam")
    start = [c.copy() for c in ours.coefs_]
    x, y = train_data(kind, 40)
    ours.set_params(warm_start=True, **change).fit(x, y)
    assert all_finite(ours)
    assert len(ours.loss_curve_) >= ours.n_iter_ > 0  # a warm start extends the curve
    assert any(a.tobytes() != b.tobytes() for a, b in zip(ours.coefs_, start, strict=True))


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_in_another_dtype_keeps_the_weights_dtype(kind):
    """As scikit-learn: float32 data on float64 weights trains the float64 weights."""
    ours, theirs = fitted_pair(kind, "adam")
    x, y = train_data(kind)
    extra = {"classes": [0, 1, 2]} if kind == "MLPClassifier" else {}
    for est in (ours, theirs):
        est.partial_fit(x.astype(np.float32), y, **extra)
    assert [c.dtype for c in ours.coefs_] == [c.dtype for c in theirs.coefs_]
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
