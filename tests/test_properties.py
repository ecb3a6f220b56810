"""Bad input: generated arguments never crash fastbp.Network with a surprise.

Every call either succeeds (output of the right shape and dtype, finite) or
raises ValueError/TypeError naming the argument, and a rejected call leaves the
network bit-identical (parameters and random generator). fit may also raise
DivergenceError, after which every weight is finite.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastbp

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


@pytest.mark.parametrize("net_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("order", ["C", "F"])
def test_read_only_memmap(tmp_path, net_dtype, data_dtype, order):
    """A small read-only memmap (any dtype, C or F order) works everywhere."""
    rng = np.random.default_rng(0)
    path = tmp_path / "x.bin"
    x = np.memmap(path, dtype=data_dtype, mode="w+", shape=(20, N_IN), order=order)
    x[:] = rng.standard_normal((20, N_IN)) * 3
    x.flush()
    del x
    x = np.memmap(path, dtype=data_dtype, mode="r", shape=(20, N_IN), order=order)
    y = rng.random((20, N_OUT))
    net = fastbp.Network([N_IN, 4, N_OUT], dtype=net_dtype, seed=0)
    net.fit(x, y, epochs=2, batch_size=7, shuffle=True)
    net.fit(x, y, epochs=2)
    assert np.isfinite(net.predict(x)).all()
    assert np.isfinite(net.loss(x, y))
    assert all(np.isfinite(g).all() for g in net.gradients(x, y)[0])
    assert not x.flags.writeable
