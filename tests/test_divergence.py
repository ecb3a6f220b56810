"""Divergence: fit never leaves a non-finite weight.

Network: a huge learning rate or extreme data make fit raise DivergenceError, leaving
finite weights from a completed step and the completed epochs' history. The
scikit-learn estimators: fit raises scikit-learn's error with the estimator as it was
after its last epoch with finite weights (partial_fit and warm starts: as before the
call); L-BFGS keeps its last finite iterate. Both front ends:
``test_divergence_keeps_finite_weights``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from frontends import (
    DIVERGED,
    ESTIMATORS,
    FRONT_ENDS,
    all_finite,
    fitted_pair,
    is_divergence,
    outcome,
    run_theirs,
    sk_child,
    state_of,
    train_data,
    twin,
)
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp import sklearn as fb

SIZES = [6, 16, 3]


def _data(n=40, scale=1.0, y_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SIZES[0])) * scale
    y = rng.random((n, SIZES[-1])) * y_scale
    return x, y


def _trained(dtype, epochs, x, y, lr):
    net = fastbp.Network(SIZES, dtype=dtype, seed=7)
    if epochs:
        net.fit(x, y, epochs=epochs, lr=lr)
    return net


def _params(net):
    return [p.copy() for p in net.weights + net.biases]


# name: (input scale, target scale, lr). Note that a huge lr alone on unit-scale
# data does not diverge: the first steps saturate every sigmoid, the gradients
# vanish and training stalls with huge but finite weights.
CASES = {
    "max-lr": (1.0, 1.0, float(np.finfo(np.float64).max)),
    "huge-lr-and-inputs": (1e10, 1.0, 1e300),
    "huge-targets": (1.0, 1e200, 0.5),
}
CASES32 = {
    "max-lr": (1.0, 1.0, 3e38),
    "huge-lr-and-inputs": (1e3, 1.0, 1e37),
    "huge-targets": (1.0, 1e30, 0.5),
}


@pytest.mark.parametrize(
    ("dtype", "case"),
    [(np.float64, c) for c in CASES] + [(np.float32, c) for c in CASES32],
)
def test_full_batch_divergence(dtype, case):
    scale, y_scale, lr = (CASES if dtype is np.float64 else CASES32)[case]
    x, y = _data(scale=scale, y_scale=y_scale)
    net = fastbp.Network(SIZES, dtype=dtype, seed=7)
    with pytest.raises(fastbp.DivergenceError) as info:
        net.fit(x, y, epochs=50, lr=lr)
    err = info.value
    assert isinstance(err, FloatingPointError)
    history = err.history.loss
    assert len(history) < 50
    assert np.isfinite(history).all()
    # Every weight finite: exactly the weights after the completed epochs (a full
    # batch epoch is one step), as a fresh network trained that long has them.
    params = _params(net)
    assert all(np.isfinite(p).all() for p in params)
    replay = _params(_trained(dtype, len(history), x, y, lr))
    for a, b in zip(params, replay, strict=True):
        assert a.tobytes() == b.tobytes()
    if len(history):
        replay_history = fastbp.Network(SIZES, dtype=dtype, seed=7).fit(
            x, y, epochs=len(history), lr=lr
        )
        assert replay_history.loss.tobytes() == history.tobytes()
    # The network still works.
    assert np.isfinite(net.predict(np.ones((2, SIZES[0])))).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffle", [False, True])
def test_minibatch_divergence(dtype, shuffle):
    """Mini-batches: one extreme row makes its batch overflow mid-epoch."""
    x, y = _data(n=64)
    x[37] *= 1e3 if dtype is np.float32 else 1e10
    lr = 1e37 if dtype is np.float32 else 1e300
    net = fastbp.Network(SIZES, dtype=dtype, seed=3)
    with pytest.raises(fastbp.DivergenceError) as info:
        net.fit(x, y, epochs=20, lr=lr, batch_size=8, shuffle=shuffle)
    assert len(info.value.history.loss) < 20
    assert np.isfinite(info.value.history.loss).all()
    assert all(np.isfinite(p).all() for p in net.weights + net.biases)
    # Training can go on from there with a sane learning rate.
    x[37] = 0
    net.fit(x, y, epochs=2, lr=0.1, batch_size=8, shuffle=shuffle)
    assert all(np.isfinite(p).all() for p in net.weights + net.biases)


def test_divergence_after_some_epochs_keeps_their_history():
    """Settings found to diverge only after at least one completed epoch: that
    epoch's loss is in err.history and the weights are the ones it left."""
    candidates = [(1e33, 1e3, 1e3), (1e35, 1e3, 1e3), (1e29, 1e3, 1e8)]
    later = 0
    for lr, scale, y_scale in candidates:
        x, y = _data(scale=scale, y_scale=y_scale)
        net = fastbp.Network(SIZES, dtype=np.float32, seed=7)
        try:
            net.fit(x, y, epochs=60, lr=lr)
        except fastbp.DivergenceError as err:
            history = err.history.loss
        else:
            continue
        later += len(history) > 0
        assert np.isfinite(history).all()
        replay = fastbp.Network(SIZES, dtype=np.float32, seed=7)
        if len(history):
            assert replay.fit(x, y, epochs=len(history), lr=lr).loss.tobytes() == history.tobytes()
        for a, b in zip(_params(net), _params(replay), strict=True):
            assert a.tobytes() == b.tobytes()
    assert later > 0, "no candidate diverged after a completed epoch"


# -- Network: small networks (moved from test_network.py) ------------------------------------

NET_SEED = 12345


def _make_data(rng, n, sizes, dtype=np.float64):
    x = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.uniform(size=(n, sizes[-1])).astype(dtype)
    return x, y


# lr that make the weights overflow: in float32, any lr beyond float32's range;
# in float64, large targets give gradients ~1e5, and lr * 1e5 overflows.
DIVERGENT = {np.float32: (3e38, 1e6), np.float64: (1e307, 1e6)}


def test_huge_lr_raises_divergence_error(dtype, rng):
    lr, y_scale = DIVERGENT[dtype]
    sizes = [3, 5, 1]
    x, y = _make_data(rng, 20, sizes, dtype)
    y = (y * y_scale).astype(dtype)
    net = fastbp.Network(sizes, dtype=dtype, seed=NET_SEED)
    before = _params(net)
    with pytest.raises(fastbp.DivergenceError, match="lr") as info:
        net.fit(x, y, epochs=20, lr=lr)
    assert isinstance(info.value, FloatingPointError)
    done = info.value.history.loss
    assert done.shape[0] < 20
    assert np.isfinite(done).all()
    after = _params(net)
    for arr in after:
        assert np.isfinite(arr).all()
    # the network keeps the weights of the last completed epoch
    if done.shape[0] == 0:
        expected = before
    else:
        fresh = fastbp.Network(sizes, dtype=dtype, seed=NET_SEED)
        fresh.fit(x, y, epochs=done.shape[0], lr=lr)
        expected = _params(fresh)
    for got, want in zip(after, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.isfinite(net.predict(x)).all()


def test_divergence_after_some_epochs_keeps_their_history_small_network(rng):
    """From test_network.py: a 3-5-1 network on 1e3-scaled data and targets, lr 1e308."""
    sizes = [3, 5, 1]
    x, y = _make_data(rng, 20, sizes)
    net = fastbp.Network(sizes, seed=NET_SEED)
    with pytest.raises(fastbp.DivergenceError) as info:
        net.fit(x * 1e3, y * 1e3, epochs=50, lr=1e308)
    done = info.value.history.loss
    fresh = fastbp.Network(sizes, seed=NET_SEED)
    if done.shape[0]:
        np.testing.assert_array_equal(
            fresh.fit(x * 1e3, y * 1e3, epochs=done.shape[0], lr=1e308).loss, done
        )
    for got, want in zip(_params(net), _params(fresh), strict=True):
        np.testing.assert_array_equal(got, want)


# -- both front ends ---------------------------------------------------------------------------


def _diverging_model(front_end, dtype):
    """(model, fit): a model and a fit that goes non-finite (after a finite start)."""
    if front_end == "Network":
        scale, y_scale, lr = (CASES if dtype is np.float64 else CASES32)["huge-targets"]
        x, y = _data(scale=scale, y_scale=y_scale)
        net = fastbp.Network(SIZES, dtype=dtype, seed=7)
        return net, lambda: net.fit(x, y, epochs=50, lr=lr), x
    case = next(c for c in DIVERGING if c[:3] == ("MLPRegressor", "sgd", dtype))
    est, x, y = diverging(*case)
    return est, lambda: est.fit(x, y), x


@pytest.mark.parametrize("front_end", ["Network", "sklearn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_divergence_keeps_finite_weights(front_end, dtype):
    """A fit that goes non-finite raises (Network: DivergenceError; the estimators:
    scikit-learn's ValueError), and leaves every weight finite, in the model's
    dtype, and a model that still predicts (an identity output layer may overflow on
    huge finite weights)."""
    model, fit, x = _diverging_model(front_end, dtype)
    with pytest.raises((fastbp.DivergenceError, ValueError)) as info:
        fit()
    if front_end == "Network":
        assert isinstance(info.value, fastbp.DivergenceError)
    else:
        assert is_divergence(info.value)
    spec = FRONT_ENDS[front_end]
    assert all(p.dtype == dtype for p in spec.params(model))
    assert all(np.isfinite(p).all() for p in spec.params(model))
    out = spec.predict(model, x)
    assert len(out) == len(x)  # still predicts
    if front_end == "Network":  # sigmoid outputs: finite weights give finite outputs
        assert np.isfinite(out).all()


# -- the scikit-learn estimators ------------------------------------------------------------


MAX_ITER = 30
# (estimator, solver, dtype, learning_rate_init, X scale, y scale, batch_size): fits
# that go non-finite after at least one epoch with finite weights.
DIVERGING = [
    ("MLPRegressor", "sgd", np.float64, 0.01, 1, 1e3, 10),
    ("MLPRegressor", "sgd", np.float32, 0.001, 1, 1e3, 10),
    ("MLPRegressor", "adam", np.float64, 1.7e308, 1, 1, 40),
    ("MLPRegressor", "adam", np.float32, 1e6, 1e8, 1, 40),
    ("MLPClassifier", "sgd", np.float64, 0.1, 1e8, 1, 10),
    ("MLPClassifier", "sgd", np.float32, 0.01, 1e4, 1, 10),
    ("MLPClassifier", "adam", np.float64, 1.7e308, 1, 1, 40),
    ("MLPClassifier", "adam", np.float32, 3e38, 1, 1, 40),
]


def diverging(kind, solver, dtype, lr, x_scale, y_scale, batch, max_iter=MAX_ITER):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 6)) * x_scale).astype(dtype)
    y = rng.standard_normal(40) * y_scale if kind == "MLPRegressor" else rng.integers(0, 3, 40)
    est = getattr(fb, kind)(
        hidden_layer_sizes=(8,),
        solver=solver,
        learning_rate_init=lr,
        batch_size=batch,
        shuffle=False,
        max_iter=max_iter,
        random_state=0,
    )
    return est, x, y


@pytest.mark.parametrize(
    "case", DIVERGING, ids=[f"{c[0][3:6]}-{c[1]}-{np.dtype(c[2]).name}" for c in DIVERGING]
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_divergence_keeps_the_last_finite_epoch(case):
    """fit raises scikit-learn's error (scikit-learn raises it on the same fit, leaving
    non-finite weights), and the estimator is exactly as a fit stopped after the last
    epoch with finite weights leaves it: weights, optimizer state and step count,
    n_iter_, t_, loss_ and loss_curve_, bit for bit."""
    est, x, y = diverging(*case)
    with pytest.raises(ValueError, match=DIVERGED):
        est.fit(x, y)
    assert all_finite(est)
    done = est.n_iter_
    assert 1 <= done < MAX_ITER
    assert len(est.loss_curve_) == done
    assert np.isfinite(est.loss_curve_).all()
    replay, _, _ = diverging(*case, max_iter=done)
    replay.fit(x, y)
    assert sk_child.digest(est) == sk_child.digest(replay)
    if case[2] is np.float64:  # float32 rounds differently: it may not diverge there
        theirs = twin(diverging(*case)[0])
        _, their_exc = run_theirs(lambda: theirs.fit(x, y))
        assert is_divergence(their_exc)
        assert not all_finite(theirs)
    # The estimator still predicts.
    assert len(est.predict(x)) == len(x)


@pytest.mark.parametrize(
    "case", DIVERGING, ids=[f"{c[0][3:6]}-{c[1]}-{np.dtype(c[2]).name}" for c in DIVERGING]
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_diverging_partial_fit_leaves_the_estimator_as_before(case):
    """partial_fit whose epoch goes non-finite: the error, and the estimator exactly as
    before the call (but for the generator every call seeds afresh from random_state,
    as scikit-learn's does)."""
    est, x, y = diverging(*case)
    with pytest.raises(ValueError, match=DIVERGED):
        est.fit(x, y)
    est, _, _ = diverging(*case, max_iter=est.n_iter_)
    est.fit(x, y)  # up to the last finite epoch
    before = state_of(est)
    with pytest.raises(ValueError, match=DIVERGED):
        est.partial_fit(x, y, **({"classes": [0, 1, 2]} if case[0] == "MLPClassifier" else {}))
    after = state_of(est)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {"_random_state"}, changed


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_diverging_warm_start_keeps_the_weights_before_the_call(kind, solver):
    """A warm-started fit that goes non-finite in its first epoch: the error, and the
    fitted weights, n_iter_, t_ and loss curve as they were (the optimizer is the
    warm start's fresh one)."""
    est, _ = fitted_pair(kind, solver, batch_size=2)
    x, y = train_data(kind)
    est.set_params(learning_rate_init=1.7e308, warm_start=True)
    before = state_of(est)
    with pytest.raises(ValueError, match=DIVERGED):
        est.fit(x, y)
    after = state_of(est)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {"_random_state", "_optimizer"}, changed
    assert all_finite(est)


@pytest.mark.parametrize(
    ("kind", "lr", "x_scale", "raises"),
    [("MLPRegressor", 1e300, 1, False), ("MLPClassifier", 10, 1e8, True)],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_divergence_ends_as_scikit_learn(kind, lr, x_scale, raises):
    """With early_stopping, fit ends with the best validation weights, as scikit-learn's,
    and raises exactly when scikit-learn does: when the best weights are non-finite (a
    classifier's accuracy can improve on NaN weights). Then fastbp keeps the state of
    its last epoch with finite weights, the best weights as of then included."""
    est, x, y = diverging(kind, "sgd", np.float64, lr, x_scale, 1, 10)
    est.set_params(early_stopping=True, validation_fraction=0.2)
    theirs = twin(est)
    _, exc = outcome(lambda: est.fit(x, y))
    _, their_exc = run_theirs(lambda: theirs.fit(x, y))
    assert (exc is not None) == raises == (their_exc is not None), (exc, their_exc)
    assert exc is None or is_divergence(exc)
    assert all_finite(est)
    assert [c.tobytes() for c in est.coefs_] == [c.tobytes() for c in est._best_coefs]
    if raises:
        assert 1 <= est.n_iter_ < MAX_ITER
        replay, _, _ = diverging(kind, "sgd", np.float64, lr, x_scale, 1, 10, est.n_iter_)
        replay.set_params(early_stopping=True, validation_fraction=0.2).fit(x, y)
        assert sk_child.digest(est) == sk_child.digest(replay)
    else:
        assert est.n_iter_ == theirs.n_iter_ == MAX_ITER  # as scikit-learn, to the end


LBFGS_EXTREMES = {
    "huge-X": (1e300, 1.0, 1e-4, np.float64),
    "huge-y": (1.0, 1e300, 1e-4, np.float64),
    "huge-alpha": (1.0, 1.0, 1e300, np.float64),
    "float32-huge-X": (1e30, 1.0, 1e-4, np.float32),
}


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("case", list(LBFGS_EXTREMES))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_extreme_inputs_keep_finite_weights(kind, case):
    """L-BFGS on extreme data or penalty: finite weights, whether it returns or raises."""
    x_scale, y_scale, alpha = LBFGS_EXTREMES[case][:3]
    dtype = LBFGS_EXTREMES[case][3]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 6)) * x_scale).astype(dtype)
    y = rng.integers(0, 3, 40) if kind == "MLPClassifier" else rng.standard_normal(40) * y_scale
    est = getattr(fb, kind)(hidden_layer_sizes=(8,), solver="lbfgs", alpha=alpha, max_iter=20)
    _, exc = outcome(lambda: est.fit(x, y))
    assert exc is None or is_divergence(exc), exc
    assert all_finite(est)


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_non_finite_result_keeps_the_last_finite_iterate(monkeypatch, kind, dtype):
    """Should L-BFGS-B ever return non-finite weights, fit raises scikit-learn's error
    and keeps its last iterate with finite weights, with that iterate's n_iter_ and
    loss_ (SciPy's result is corrupted here to prove it)."""
    real = scipy.optimize.minimize
    seen = {}

    def corrupted(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.update(x=result.x.copy(), nit=result.nit, fun=result.fun)
        result.x = np.full_like(result.x, np.nan)
        return result

    monkeypatch.setattr(scipy.optimize, "minimize", corrupted)
    x, y = train_data(kind, 40)
    est = getattr(fb, kind)(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=4, random_state=0)
    with pytest.warns(ConvergenceWarning), pytest.raises(ValueError, match=DIVERGED):
        est.fit(x.astype(dtype), y)
    assert all_finite(est)
    flat = np.concatenate([c.ravel() for c in est.coefs_] + list(est.intercepts_))
    assert flat.dtype == dtype
    assert flat.tobytes() == seen["x"].astype(dtype).tobytes()
    assert est.n_iter_ == seen["nit"] == 4
    assert est.loss_ == seen["fun"]
