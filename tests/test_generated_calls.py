"""Rejected calls, generated: arguments drawn by Hypothesis never crash a front end
with a surprise (named cases are in test_rejected_calls.py).

fastbp.Network:

Every call either succeeds (output of the right shape and dtype, finite) or
raises ValueError/TypeError naming the argument, and a rejected call leaves the
network bit-identical (parameters and random generator). fit may also raise
DivergenceError, after which every weight is finite.

The scikit-learn estimators: bad input (data, targets, sample weights,
hyper-parameters) to fit, partial_fit, predict, predict_proba, predict_log_proba and
score raises ValueError/TypeError before any kernel runs, with scikit-learn's own error
for the same call or one naming the argument; a rejected call leaves the estimator
exactly as it was, attribute for attribute. Checked against scikit-learn's MLP on the
same calls: fastbp rejects what scikit-learn rejects, and accepts what it accepts.
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from frontends import (
    ESTIMATORS,
    SOLVERS,
    accepted_by_sklearn,
    all_finite,
    assert_unchanged,
    check_rejection,
    fitted_pair,
    is_divergence,
    run_ours,
    run_theirs,
    state_of,
    train_data,
    twin,
)
from frontends import MODERATE as SK_MODERATE
from frontends import (
    N_IN as SK_N_IN,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import sklearn as fb

SK_PROPERTY = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

N_IN, N_OUT = 3, 2
# Data within this magnitude must give finite losses and gradients; beyond it the
# true value may exceed the float range, and overflowing to inf is then correct.
MODERATE = 1e15

SPECIAL = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    np.nan,
    np.inf,
    -np.inf,
    1e300,
    -1e300,
    np.finfo(np.float64).max,
    3.4e38,
    1e39,
    5e-324,
    1e-310,
    1e-40,
    1e15,
]
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(-10, 10, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True),
)
DTYPES = [
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.dtype(">f8"),
    np.dtype(">f4"),
    np.bool_,
    np.complex64,
    np.complex128,
    object,
    str,
]
LAYOUTS = ["C", "F", "strided", "reversed", "readonly", "broadcast", "list"]


def _cast(base: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(all="ignore"):
        if dtype is np.bool_:
            return base > 0
        if dtype in (np.complex64, np.complex128):
            return (base + 1j * base).astype(dtype)
        if np.dtype(dtype).kind in "iu":
            return np.nan_to_num(base, posinf=1e6, neginf=-1e6).clip(-100, 100).astype(dtype)
        return base.astype(dtype)


def _layout(arr: np.ndarray, layout: str):
    if arr.ndim != 2:
        return arr.tolist() if layout == "list" else arr
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "strided":
        big = np.zeros((2 * arr.shape[0], 2 * arr.shape[1]), dtype=arr.dtype)
        big[::2, ::2] = arr
        return big[::2, ::2]
    if layout == "reversed":
        return arr[::-1, ::-1].copy()[::-1, ::-1]
    if layout == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr
    if layout == "broadcast":
        return np.broadcast_to(arr[:1], arr.shape)
    if layout == "list":
        return arr.tolist()
    return np.ascontiguousarray(arr)


FINITE = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([v for v in SPECIAL if np.isfinite(v) and abs(v) < 1e38]),
)
REAL_DTYPES = [d for d in DTYPES if d not in (np.complex64, np.complex128, object, str)]


@st.composite
def data_arrays(draw, n_cols: int, n_rows: int | None = None):
    """An array-like meant as X (or Y), any layout; mostly valid (right shape,
    real dtype, finite values), else any shape, dtype and values."""
    rows = n_rows if n_rows is not None else draw(st.integers(1, 5))
    valid = draw(st.sampled_from([True, True, True, False]))
    if valid:
        shape = (rows, n_cols)
        elements = FINITE
        dtype = draw(st.sampled_from([np.float64, np.float32] * 3 + REAL_DTYPES))
    else:
        shape = draw(
            st.sampled_from(
                [(rows, n_cols)] * 4
                + [(rows,), (rows, n_cols + 1), (0, n_cols), (rows, n_cols, 1), ()]
                + [(rows + 1, n_cols)]
            )
        )
        elements = VALUES
        dtype = draw(st.sampled_from([np.float64, np.float32] * 3 + DTYPES))
    size = int(np.prod(shape))
    base = np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype=np.float64)
    arr = _cast(base.reshape(shape), dtype)
    return _layout(arr, draw(st.sampled_from(LAYOUTS)))


def _state(net: fastbp.Network):
    return net._params.tobytes(), repr(net._rng.bit_generator.state)


def _magnitude(*values) -> float:
    """Largest |value| of the data as the network sees it (inf if not convertible)."""
    out = 0.0
    for v in values:
        try:
            a = np.asarray(v)
            if a.dtype.kind not in "biuf":
                return np.inf
            with np.errstate(all="ignore"):
                m = np.abs(a.astype(np.float64)).max(initial=0.0)
        except (TypeError, ValueError):
            return np.inf
        out = max(out, float(m))
    return out


def _check_rejection(exc: BaseException, names: tuple[str, ...]) -> None:
    event(f"rejected: {type(exc).__name__}")
    assert type(exc) in (ValueError, TypeError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert any(re.search(rf"\b{re.escape(n)}\b", message) for n in names), message


NET_DTYPES = st.sampled_from([np.float64, np.float32])
CONSTRUCTOR_DTYPES = [np.float32, np.float64, "float32", "f8", float, np.float16, int, "complex"]
CONSTRUCTOR_DTYPES += [object, None, "nonsense", 3, np.dtype("int8"), np.dtype(">f8")]


@PROPERTY
@given(
    sizes=st.one_of(
        st.lists(st.integers(1, 6), min_size=2, max_size=4),
        st.lists(st.integers(-3, 6), min_size=0, max_size=4),
        st.lists(st.sampled_from([2, 2.0, 2.5, True, np.int64(3), "3", None, 2**70]), max_size=3),
        st.sampled_from([3, "34", None, (3, 2), np.array([3, 2]), [[3, 2]], {3: 1, 2: 1}]),
    ),
    dtype=st.sampled_from(CONSTRUCTOR_DTYPES),
    seed=st.one_of(
        st.none(),
        st.integers(-5, 2**70),
        st.sampled_from([1.0, True, "1", np.int32(4), np.uint64(7)]),
    ),
)
def test_constructor(sizes, dtype, seed):
    try:
        net = fastbp.Network(sizes, dtype=dtype, seed=seed)
    except BaseException as exc:
        _check_rejection(exc, ("sizes", "dtype", "seed", *(f"sizes[{i}]" for i in range(5))))
        return
    assert net.dtype in (np.float32, np.float64)
    assert len(net.weights) == len(net.sizes) - 1
    assert all(np.isfinite(w).all() for w in net.weights + net.biases)


@PROPERTY
@given(net_dtype=NET_DTYPES, x=data_arrays(N_IN))
def test_predict(net_dtype, x):
    net = fastbp.Network([N_IN, 4, N_OUT], dtype=net_dtype, seed=1)
    before = _state(net)
    try:
        out = net.predict(x)
    except BaseException as exc:
        _check_rejection(exc, ("X",))
        assert _state(net) == before
        return
    assert _state(net) == before
    assert out.dtype == net_dtype
    assert out.shape == (np.shape(x)[0], N_OUT)
    assert np.isfinite(out).all()
    assert ((out >= 0) & (out <= 1)).all()


@PROPERTY
@given(
    net_dtype=NET_DTYPES,
    n=st.integers(1, 5),
    data=st.data(),
)
def test_loss_and_gradients(net_dtype, n, data):
    x = data.draw(data_arrays(N_IN, n), label="X")
    y = data.draw(data_arrays(N_OUT, n), label="Y")
    net = fastbp.Network([N_IN, 4, N_OUT], dtype=net_dtype, seed=2)
    before = _state(net)
    moderate = _magnitude(x, y) <= MODERATE
    try:
        loss = net.loss(x, y)
    except BaseException as exc:
        _check_rejection(exc, ("X", "Y"))
        loss = None
    assert _state(net) == before
    if loss is not None:
        assert isinstance(loss, float)
        assert loss >= 0
        assert np.isfinite(loss) or not moderate
    try:
        dws, dbs = net.gradients(x, y)
    except BaseException as exc:
        _check_rejection(exc, ("X", "Y"))
        assert loss is None, "loss accepted what gradients rejected"
        assert _state(net) == before
        return
    assert loss is not None, "gradients accepted what loss rejected"
    assert _state(net) == before
    for g, w in zip(dws + dbs, net.weights + net.biases, strict=True):
        assert g.shape == w.shape
        assert g.dtype == net_dtype
        assert np.isfinite(g).all() or not moderate


VALID_FIT_ARGS = {
    "epochs": st.integers(1, 3),
    "lr": st.one_of(st.floats(1e-3, 10), st.sampled_from([1e300, 1e30, 5e-324, 1, np.float32(2)])),
    "batch_size": st.one_of(st.none(), st.integers(1, 7)),
    "shuffle": st.sampled_from([False, True, np.bool_(True)]),
    "callback": st.sampled_from([None, "stop"]),
}
BAD_FIT_ARGS = {
    "epochs": st.sampled_from([0, -1, 2.0, True, None, "2", np.float64(1)]),
    "lr": st.sampled_from([0.0, -0.5, np.nan, np.inf, -np.inf, True, "0.1", 1j, None]),
    "batch_size": st.sampled_from([0, -2, 1.5, False, "4"]),
    "shuffle": st.sampled_from([0, 1, None, "yes"]),
    "callback": st.sampled_from([3, "print"]),
}


@settings(PROPERTY, max_examples=150)
@given(net_dtype=NET_DTYPES, n=st.integers(1, 5), data=st.data())
def test_fit(net_dtype, n, data):
    x = data.draw(data_arrays(N_IN, n), label="X")
    y = data.draw(data_arrays(N_OUT, n), label="Y")
    # Half the time every other argument is valid, else each one is bad with
    # probability 1/3, so that both accepted and rejected calls are common.
    args = {}
    for name, good in VALID_FIT_ARGS.items():
        bad = data.draw(st.sampled_from([False, False, True])) and data.draw(st.booleans())
        args[name] = data.draw(BAD_FIT_ARGS[name] if bad else good, label=name)
    if args["callback"] == "stop":
        args["callback"] = lambda epoch, loss: epoch == 0
    epochs = args["epochs"]
    net = fastbp.Network([N_IN, 4, N_OUT], dtype=net_dtype, seed=3)
    before = _state(net)
    names = ("X", "Y", "epochs", "lr", "batch_size", "shuffle", "callback")
    try:
        history = net.fit(x, y, **args)
    except fastbp.DivergenceError as err:
        assert all(np.isfinite(p).all() for p in net.weights + net.biases)
        assert len(err.history.loss) < epochs
        assert np.isfinite(err.history.loss).all()
        event("diverged")
        return
    except BaseException as exc:
        _check_rejection(exc, names)
        assert _state(net) == before
        return
    event("trained")
    assert 1 <= len(history.loss) <= epochs
    assert history.loss.dtype == np.float64
    assert np.isfinite(history.loss).all()
    for p in net.weights + net.biases:
        assert p.dtype == net_dtype
        assert np.isfinite(p).all()


# -- the scikit-learn estimators ------------------------------------------------------------

# -- generated data --------------------------------------------------------------------------

SK_SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, np.nan, np.inf, -np.inf, 1e300, -1e300, 3.4e38, 1e39]
SK_SPECIAL += [5e-324, 1e-310, 1e-40, 1e15, float(np.finfo(np.float64).max)]
SK_VALUES = st.one_of(
    st.sampled_from(SK_SPECIAL),
    st.floats(-10, 10, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True),
)
SK_FINITE = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([v for v in SK_SPECIAL if np.isfinite(v) and abs(v) <= SK_MODERATE]),
)
SK_REAL_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.float32]
SK_REAL_DTYPES += [np.float64, np.dtype(">f8"), np.dtype(">f4"), np.bool_]
SK_DTYPES = [*SK_REAL_DTYPES, np.complex64, np.complex128, object, str]
SK_LAYOUTS = ["C", "F", "transposed", "strided", "reversed", "readonly", "broadcast", "list"]
SK_LAYOUTS += ["memmap", "memmap-F", "csr", "csc"]


def _sk_cast(base: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(all="ignore"):
        if dtype is np.bool_:
            return base > 0
        if dtype in (np.complex64, np.complex128):
            return (base + 1j * base).astype(dtype)
        if np.dtype(dtype).kind in "iu":
            return np.nan_to_num(base, posinf=1e6, neginf=-1e6).clip(-100, 100).astype(dtype)
        return base.astype(dtype)


_MEMMAPS = itertools.count()


def apply_layout(arr: np.ndarray, layout: str, directory: Path):
    """``arr`` as the drawn layout: the same values, another memory layout or type."""
    if layout == "list":
        return arr.tolist()
    if arr.ndim != 2 or arr.size == 0:
        return arr
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "transposed":
        return np.ascontiguousarray(arr.T).T
    if layout == "strided":
        big = np.zeros((2 * arr.shape[0], 2 * arr.shape[1]), dtype=arr.dtype)
        big[::2, ::2] = arr
        return big[::2, ::2]
    if layout == "reversed":
        return arr[::-1, ::-1].copy()[::-1, ::-1]
    if layout == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr
    if layout == "broadcast":
        return np.broadcast_to(arr[:1], arr.shape)
    if layout.startswith("memmap") and arr.dtype.kind in "biuf":
        order = "F" if layout == "memmap-F" else "C"
        path = directory / f"x{next(_MEMMAPS)}.bin"
        mm = np.memmap(path, dtype=arr.dtype, mode="w+", shape=arr.shape, order=order)
        mm[:] = arr
        mm.flush()
        del mm
        return np.memmap(path, dtype=arr.dtype, mode="r", shape=arr.shape, order=order)
    if layout in ("csr", "csc") and arr.dtype.kind in "biuf" and arr.dtype.isnative:
        if arr.dtype == np.float16:  # not a scipy.sparse dtype
            return arr
        return (scipy.sparse.csr_matrix if layout == "csr" else scipy.sparse.csc_matrix)(arr)
    return np.ascontiguousarray(arr)


@st.composite
def arrays(draw, n_cols: int, n_rows: int, one_d: bool = False):
    """(array, layout, magnitude): mostly the right shape, a real dtype and finite
    values; else any shape, dtype and values. ``magnitude``: the largest |value|
    (inf when not finite or not a real dtype)."""
    valid = draw(st.sampled_from([True, True, True, False]))
    shape = (n_rows,) if one_d else (n_rows, n_cols)
    if valid:
        elements = SK_FINITE
        dtype = draw(st.sampled_from([np.float64, np.float32] * 3 + SK_REAL_DTYPES))
    else:
        wrong = [(n_rows + 1, n_cols), (n_rows, n_cols + 1), (0, n_cols), (n_rows, n_cols, 1), ()]
        shape = draw(st.sampled_from([shape] * 4 + wrong + [(n_rows,), (n_rows, 0)]))
        elements = SK_VALUES
        dtype = draw(st.sampled_from([np.float64, np.float32] * 3 + SK_DTYPES))
    size = int(np.prod(shape))
    base = np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype=np.float64)
    arr = _sk_cast(base.reshape(shape), dtype)
    magnitude = np.inf
    if arr.dtype.kind in "biuf":
        with np.errstate(all="ignore"):
            magnitude = float(np.abs(arr.astype(np.float64)).max(initial=0.0))
    return arr, draw(st.sampled_from(SK_LAYOUTS)), magnitude


LABEL_SETS = [[0, 1, 2], [0, 1], ["a", "b", "c"], [True, False], [0.0, 1.0, 2.0], [5, 7]]


@st.composite
def labels(draw, n_rows: int):
    """Classifier targets: labels of a set, 2-D indicator rows, or garbage."""
    kind = draw(st.sampled_from(["labels"] * 4 + ["indicator", "continuous", "nan", "other"]))
    if kind == "labels":
        choice = draw(st.sampled_from(LABEL_SETS))
        y = np.array(draw(st.lists(st.sampled_from(choice), min_size=n_rows, max_size=n_rows)))
    elif kind == "indicator":
        y = np.array(draw(st.lists(st.sampled_from([[0, 1], [1, 0], [1, 1]]), min_size=n_rows)))
        y = y[:n_rows] if len(y) >= n_rows else y
    elif kind == "continuous":
        y = np.linspace(0.1, 0.9, n_rows)
    elif kind == "nan":
        y = np.where(np.arange(n_rows) == 0, np.nan, 1.0)
    else:
        y = draw(
            st.sampled_from(
                [None, np.zeros((n_rows, 1, 1)), np.ones(n_rows + 1), np.ones(n_rows) + 1j]
            )
        )
    if isinstance(y, np.ndarray) and draw(st.booleans()):
        return y.tolist(), 0.0
    return y, 0.0


def targets(kind: str, n_rows: int):
    if kind == "MLPClassifier":
        return labels(n_rows)
    return st.one_of(
        arrays(1, n_rows, one_d=True).map(lambda t: (t[0], t[2])),
        arrays(2, n_rows).map(lambda t: (t[0], t[2])),
    )


SAMPLE_WEIGHTS = [None, None, None, "ones", "positive", "scalar", "short", "nan", "2-D"]
SAMPLE_WEIGHTS += ["zeros", "strings", "complex", "negative"]


def sample_weight(name, n_rows: int):
    rng = np.random.default_rng(1)
    return {
        None: None,
        "ones": np.ones(n_rows),
        "positive": rng.uniform(0.1, 10, n_rows),
        "scalar": 2.0,
        "short": np.ones(n_rows + 1),
        "nan": np.full(n_rows, np.nan),
        "2-D": np.ones((n_rows, 1)),
        "zeros": np.zeros(n_rows),
        "strings": np.array(["a"] * n_rows),
        "complex": np.ones(n_rows) + 1j,
        "negative": -np.ones(n_rows),
    }[name]


@pytest.fixture(scope="module")
def memmap_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("memmaps")


# -- bad input: data and targets, generated ------------------------------------------------


@settings(SK_PROPERTY, max_examples=150)
@given(
    kind=st.sampled_from(ESTIMATORS),
    solver=st.sampled_from(SOLVERS),
    method=st.sampled_from(["fit", "fit", "warm_start", "partial_fit"]),
    n=st.integers(1, 6),
    data=st.data(),
)
def test_fit_property(memmap_dir, kind, solver, method, n, data):
    """fit / warm-start fit / partial_fit on generated data, on a fitted estimator:
    a rejection changes nothing and runs no kernel; an accepted call leaves finite
    weights; fastbp and scikit-learn reject the same calls."""
    if kind == "MLPClassifier" and solver == "lbfgs" and method == "partial_fit":
        method = "fit"  # partial_fit is not available there (an AttributeError, as sklearn)
    x, x_layout, x_mag = data.draw(arrays(SK_N_IN, n), label="X")
    y, y_mag = data.draw(targets(kind, n), label="y")
    sw = sample_weight(data.draw(st.sampled_from(SAMPLE_WEIGHTS), label="sample_weight"), n)
    x = apply_layout(x, x_layout, memmap_dir)
    ours, theirs = fitted_pair(kind, solver)
    if method == "warm_start":
        ours.set_params(warm_start=True)
        theirs.set_params(warm_start=True)

    def call(est):
        if method == "partial_fit":
            extra = {"classes": [0, 1, 2]} if kind == "MLPClassifier" else {}
            return lambda: est.partial_fit(x, y, sample_weight=sw, **extra)
        return lambda: est.fit(x, y, sample_weight=sw)

    before = state_of(ours)
    _, exc, calls = run_ours(call(ours))
    _, their_exc = run_theirs(call(theirs))
    if exc is None:
        event("trained")
        assert all_finite(ours)
        assert ours.coefs_[0].dtype in (np.float32, np.float64)
        assert accepted_by_sklearn(their_exc), their_exc
        x_clean = np.random.default_rng(0).standard_normal((4, ours.n_features_in_))
        pred = ours.predict(x_clean)
        assert len(pred) == len(x_clean)
        if max(x_mag, y_mag) <= SK_MODERATE:
            values = ours.predict_proba(x_clean) if kind == "MLPClassifier" else pred
            assert np.isfinite(values).all()
    elif is_divergence(exc):
        event("diverged")
        assert max(x_mag, y_mag) > SK_MODERATE or sw is not None
        assert all_finite(ours)
    else:
        event(f"rejected: {type(exc).__name__}")
        assert not calls, f"a kernel ran before {exc!r}"
        assert_unchanged(ours, before)
        check_rejection(exc, ("X", "y", "sample_weight", "classes"), their_exc)


@settings(SK_PROPERTY, max_examples=120)
@given(
    kind=st.sampled_from(ESTIMATORS),
    solver=st.sampled_from(SOLVERS),
    dtype=st.sampled_from([np.float64, np.float32]),
    method=st.sampled_from(["predict", "predict_proba", "predict_log_proba", "score"]),
    n=st.integers(1, 6),
    data=st.data(),
)
def test_predict_property(memmap_dir, kind, solver, dtype, method, n, data):
    """predict, predict_proba, predict_log_proba and score on generated data: never a
    change to the estimator; a rejection runs no kernel and is scikit-learn's; an
    accepted call gives one finite row per sample (for moderate data)."""
    if kind == "MLPRegressor" and method.startswith("predict_"):
        method = "predict"
    x, x_layout, magnitude = data.draw(arrays(SK_N_IN, n), label="X")
    x = apply_layout(x, x_layout, memmap_dir)
    ours, theirs = fitted_pair(kind, solver, dtype)
    y = train_data(kind, n)[1]

    def call(est):
        if method == "score":
            return lambda: est.score(x, y)
        return lambda: getattr(est, method)(x)

    before = state_of(ours)
    with np.errstate(divide="ignore"):  # log of a probability that rounds to 0 is -inf
        out, exc, calls = run_ours(call(ours), huge=magnitude > SK_MODERATE)
        _, their_exc = run_theirs(call(theirs))
    assert_unchanged(ours, before)
    if exc is not None:
        event(f"rejected: {type(exc).__name__}")
        assert not calls, f"a kernel ran before {exc!r}"
        check_rejection(exc, ("X", "y"), their_exc)
        return
    event(f"{method} accepted")
    assert their_exc is None, f"fastbp accepts what scikit-learn rejects: {their_exc!r}"
    if method == "score":
        assert isinstance(out, float)
        return
    rows = len(x) if isinstance(x, list) else x.shape[0]
    assert len(out) == rows
    if method != "predict":
        assert out.shape == (rows, len(ours.classes_))
    if magnitude > SK_MODERATE or out.dtype.kind != "f":
        return  # huge inputs may overflow (to NaN probabilities, as scikit-learn's)
    if method == "predict_log_proba":
        assert not np.isnan(out).any()
        assert (out <= 0).all()
    else:
        assert np.isfinite(out).all()
        if method == "predict_proba":
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


# -- bad input: hyper-parameters, generated --------------------------------------------------

# Per parameter: values scikit-learn accepts (some odd), then values it rejects.
HYPER = {
    "hidden_layer_sizes": [
        *((3,), [2, 2], np.array([3]), 3, (np.int64(2),), []),
        *((0,), (-1,), (2.5,), (True,), ("a",), (np.nan,), ((3, 2),), "3", None, 3.0),
        *((2**70,), (2**40, 2**40)),
    ],
    "activation": ["identity", "logistic", "tanh", "relu", "softmax", None, 3],
    "alpha": [0.0, 1e-4, 1e300, -1.0, np.nan, np.inf, "0.1", None],
    "batch_size": ["auto", 1, 5, 10**20, True, np.int64(4), 0, -1, 2.5, "x", None],
    "learning_rate": ["constant", "invscaling", "adaptive", "optimal", None],
    "learning_rate_init": [1e-3, 1.0, 1e300, True, 0.0, -1.0, np.nan, np.inf, "0.1"],
    "power_t": [0.5, 0.0, 1e300, -1.0, np.nan],
    "max_iter": [1, 3, True, 0, -1, 2.5, np.inf, "3"],
    "tol": [0.0, 1e-4, 1e300, -1.0, np.nan],
    "momentum": [0.0, 0.9, 1.0, -0.1, 1.5, np.nan],
    "nesterovs_momentum": [True, False, 1, "yes"],
    "early_stopping": [True, False, 0, "no"],
    "validation_fraction": [0.1, 0.5, 0.0, 1.0, -0.1, np.nan],
    "beta_1": [0.0, 0.9, 1.0, -0.1, np.nan],
    "beta_2": [0.0, 0.999, 1.0],
    "epsilon": [1e-8, 1e300, 0.0, -1.0],
    "n_iter_no_change": [1, 10, np.inf, 0, 2.5],
    "max_fun": [1, 15000, 0, 2.5],
    "shuffle": [True, False, 1, None],
    "random_state": [0, 2**32 - 1, None, -1, 2**32, 1.5, "x"],
    "warm_start": [True, False, 1],
    "verbose": [False, 0, -1, "x"],
    "solver": ["sgd", "adam", "lbfgs", "newton", None],
}
REGRESSOR_HYPER = {**HYPER, "loss": ["squared_error", "poisson", "log_loss", None]}


@settings(SK_PROPERTY, max_examples=150)
@given(
    kind=st.sampled_from(ESTIMATORS),
    solver=st.sampled_from(SOLVERS),
    fresh=st.booleans(),
    data=st.data(),
)
def test_hyperparameter_property(kind, solver, fresh, data):
    """One or two hyper-parameters of any type or value, checked at fit: the
    constructor takes anything (scikit-learn's rule); fit or partial_fit rejects
    exactly what scikit-learn rejects, naming the parameter, and changes nothing;
    an accepted value trains to finite weights (or raises scikit-learn's divergence
    error, keeping finite weights)."""
    table = REGRESSOR_HYPER if kind == "MLPRegressor" else HYPER
    chosen = data.draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=2))
    params = {name: data.draw(st.sampled_from(table[name]), label=name) for name in chosen}
    if fresh:  # constructed with them: nothing is checked before fit
        ours = getattr(fb, kind)(**{"solver": solver, "max_iter": 2, **params})
        theirs = twin(ours)
    else:  # set on a fitted estimator
        ours, theirs = fitted_pair(kind, solver)
        ours.set_params(**params)
        theirs.set_params(**copy.deepcopy(params))
    x, y = train_data(kind)
    method = data.draw(st.sampled_from(["fit", "partial_fit"]), label="method")
    available = hasattr(ours, "partial_fit") and (fresh or hasattr(theirs, "partial_fit"))
    if method == "partial_fit" and not available:
        method = "fit"
    extra = {"classes": [0, 1, 2]} if method == "partial_fit" and kind == "MLPClassifier" else {}
    before = state_of(ours)
    _, exc, calls = run_ours(lambda: getattr(ours, method)(x, y, **extra))
    _, their_exc = run_theirs(lambda: getattr(theirs, method)(x, y, **extra))
    if exc is None:
        event("accepted")
        assert all_finite(ours)
        assert accepted_by_sklearn(their_exc), their_exc
    elif is_divergence(exc):
        event("diverged")
        assert all_finite(ours)
    else:
        event(f"rejected: {type(exc).__name__}")
        assert not calls, f"a kernel ran before {exc!r}"
        assert_unchanged(ours, before)
        anyway = method == "partial_fit" and not fresh
        check_rejection(exc, tuple(params), their_exc, checks_params_anyway=anyway)
