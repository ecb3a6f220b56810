"""Dropout on the hidden layers: the masks, the gradient through them, the loop, and
the estimators' ``dropout`` parameter.

The oracles: the NumPy twins in :mod:`fastbp.reference` (the same draws, the same
masked forward and backward pass), central finite differences of the compiled loss
with the mask held fixed (the generator is counter-based: resetting the counter
draws the same masks again), and the fit without dropout (``dropout=0`` must be it,
bit for bit).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from frontends import assert_unchanged, run_ours, state_of
from sklearn.exceptions import ConvergenceWarning

from fastbp import _loop, engine, kernels, reference
from fastbp import sklearn as fb

# -- the masks ---------------------------------------------------------------------------


def _dropout_bundle(layout, capacity, dtype, rates, key=12345):
    return engine.Dropout(np.asarray(rates, dtype=np.float64), key).bundle(layout, capacity, dtype)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 64)])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
def test_mask_equals_the_reference_draws(shape, rate, dtype, rng):
    x = rng.standard_normal((shape[0], 4)).astype(dtype)
    x[0, :2] = -0.0, 0.0  # zeros count for nothing
    a = rng.standard_normal(shape).astype(dtype)
    threshold = kernels.dropout_threshold(rate)
    scale = 1.0 / (1.0 - rate)
    state = np.array([2**63 + 12345, 2**64 - 1], dtype=np.uint64)  # the step wraps
    outcomes = []
    for module in (kernels, reference):
        rows, st = np.empty(shape[0] + 2, dtype=np.uint64), state.copy()
        module.dropout_rows(x, rows, st)
        out = [a.copy(), np.empty_like(a), np.empty_like(a)]
        module.dropout_forward(*out, rows, 3, np.uint64(threshold), scale)
        outcomes.append([rows[: shape[0]], st, *out])
    for got, want in zip(*outcomes, strict=True):
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()
    _, after, dropped_a, before, mask = outcomes[0]
    assert int(after[1]) == 0  # one step counted (modulo 2**64)
    assert before.tobytes() == a.tobytes()
    assert set(np.unique(mask)) <= {dtype(0), dtype(scale)}
    assert dropped_a.tobytes() == np.where(mask > 0, a * dtype(scale), dtype(0)).tobytes()
    if rate == 0:
        assert (mask == dtype(scale)).all()


def _draw(x, a, rate, state, layer=0):
    """The mask of one hidden layer for rows x (a kernels call on a copy of a)."""
    rows = np.empty(x.shape[0], dtype=np.uint64)
    kernels.dropout_rows(x, rows, state)
    mask = np.empty_like(a)
    threshold = np.uint64(kernels.dropout_threshold(rate))
    kernels.dropout_forward(a.copy(), np.empty_like(a), mask, rows, layer, threshold, 2.0)
    return mask == 0


def test_mask_statistics(rng):
    """Each unit is dropped with probability p, independently of its row, its column,
    its layer and of the previous step."""
    x = rng.standard_normal((400, 3))
    a = np.ones((400, 500))
    state = np.array([7, 0], dtype=np.uint64)
    for p in (0.1, 0.5, 0.8):
        dropped = _draw(x, a, p, state)
        n = dropped.size
        assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
        # Per row and per column: within 6 standard deviations everywhere.
        for axis in (0, 1):
            k = dropped.shape[axis]
            assert np.abs(dropped.mean(axis=axis) - p).max() < 6 * np.sqrt(p * (1 - p) / k)
        # Neighbours (k, k + 1) are independent: both dropped with probability p^2.
        flat = dropped.ravel()
        both = (flat[:-1] & flat[1:]).mean()
        assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / n)
    # Another step, another layer: new masks (agreeing as independent ones would).
    p = 0.5
    first = _draw(x, a, p, np.array([7, 0], dtype=np.uint64))
    for other in (
        _draw(x, a, p, np.array([7, 1], dtype=np.uint64)),
        _draw(x, a, p, np.array([7, 0], dtype=np.uint64), layer=1),
        _draw(x, a, p, np.array([8, 0], dtype=np.uint64)),
    ):
        assert abs((first == other).mean() - 0.5) < 0.01


def test_identical_rows_draw_identical_masks(rng):
    """A row's masks depend on its values, not its position: repeating a row is giving
    it a sample weight (scikit-learn's check_sample_weight_equivalence)."""
    x = rng.standard_normal((5, 4))
    x[3] = x[1]
    a = np.ones((5, 50))
    state = np.array([1, 0], dtype=np.uint64)
    dropped = _draw(x, a, 0.5, state.copy())
    assert (dropped[3] == dropped[1]).all()
    assert (dropped[2] != dropped[1]).any()
    reordered = _draw(x[::-1], a, 0.5, state.copy())
    assert (reordered[::-1] == dropped).all()
    # Zeros count for nothing (a sparse row's stored values give the same keys):
    # a row with other zeros is another row.
    x[4] = x[1]
    x[4, 0] = 0.0
    assert (_draw(x, a, 0.5, state.copy())[4] != dropped[1]).any()


# -- the gradient through a fixed mask ------------------------------------------------------


def _masks_of(bundle, layout, m):
    """Each hidden layer's last mask, (m, n_l) copies."""
    offsets = layout.act_offsets(m)
    out = []
    for layer in range(layout.n_layers - 1):
        n = int(layout.sizes[layer + 1])
        block = bundle.mask[offsets[layer] : offsets[layer] + m * n].reshape(m, n).copy()
        out.append(block if bundle.threshold[layer] else None)
    return out


# Odd shapes: one row, a one-unit hidden layer, a layer left undropped.
GRADIENT_CASES = {
    "one-row": ([3, 5, 2], 1, [0.5]),
    "one-unit-layer": ([4, 1, 6, 2], 5, [0.3, 0.5]),
    "undropped-layer": ([3, 6, 5, 2], 7, [0.0, 0.4]),
    "wide": ([5, 40, 30, 3], 9, [0.25, 0.6]),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient_with_fixed_mask_equals_reference(case, dtype, rng, assert_close):
    """fastbp.Network's mode (mean squared error, logistic units): the compiled
    loss and gradient with dropout equal the NumPy reference's with the same masks."""
    sizes, m, rates = GRADIENT_CASES[case]
    layout = engine.Layout(sizes, [kernels.LOGISTIC] * (len(sizes) - 1), None)
    x = rng.standard_normal((m, sizes[0])).astype(dtype)
    y = rng.uniform(size=(m, sizes[-1])).astype(dtype)
    params = rng.standard_normal(layout.n_params).astype(dtype)
    bundle = _dropout_bundle(layout, m, dtype, rates)
    acts = np.empty(m * layout.n_units, dtype=dtype)
    bufs = _loop.Buffers(params, np.zeros_like(params), acts, np.empty_like(acts), bundle)
    value = _loop.loss_grad(x, y, np.empty(0, dtype), layout.net(m), bufs, None, None)
    masks = _masks_of(bundle, layout, m)
    assert int(bundle.state[1]) == 1  # one step
    weights, biases = layout.views(params)
    dws, dbs = reference.gradients(x, y, weights, biases, masks)
    got_w, got_b = layout.views(bufs.grads)
    for got, want in zip(got_w + got_b, dws + dbs, strict=True):
        assert got.dtype == dtype
        assert_close(got, want, dtype, "network", scale=np.full(want.shape, np.abs(want).max()))
    want_value = reference.loss(x, y, weights, biases, masks)
    assert_close(value, want_value, dtype, "network")
    # After the backward pass, acts hold the activations before dropout again.
    fresh = reference.forward(x, weights, biases, masks=masks)
    offsets = layout.act_offsets(m)
    for layer, a in enumerate(fresh[:-1]):
        slot = acts[offsets[layer] : offsets[layer] + a.size].reshape(a.shape)
        assert_close(slot, a, dtype, "network", scale=np.full(a.shape, np.abs(a).max()))


def _compiled_loss(layout, x, y, sw, objective, bundle, dtype):
    """J(params) and dJ/dparams of the compiled loss, the masks held fixed."""
    m = x.shape[0]
    acts = np.empty(m * layout.n_units, dtype=dtype)
    start = int(bundle.state[1])

    def loss_grad(params):
        bundle.state[1] = start  # the same counter: the same masks
        bufs = _loop.Buffers(
            params.astype(dtype),
            np.zeros(layout.n_params, dtype),
            acts,
            np.empty_like(acts),
            bundle,
        )
        value = _loop.loss_grad(x, y, sw, layout.net(m), bufs, objective, None)
        return value, bufs.grads.copy()

    return loss_grad


FD_CASES = {
    # (sizes, rows, rates, hidden activation, loss, sample weights)
    "mse-logistic": ([3, 4, 2], 5, [0.5], "logistic", None, False),
    "log-loss-tanh": ([4, 1, 5, 3], 6, [0.3, 0.5], "tanh", "log_loss", True),
    "squared-tanh-one-row": ([2, 6, 1], 1, [0.4], "tanh", "squared_error", False),
}


@pytest.mark.parametrize("case", FD_CASES)
def test_gradient_with_fixed_mask_equals_finite_differences(case, dtype, rng):
    """Central differences of the compiled float64 loss (same masks) against the
    compiled gradient in ``dtype`` at the same (``dtype``-representable) point."""
    sizes, m, rates, hidden, loss, weighted = FD_CASES[case]
    activations = [kernels.ACTIVATIONS[hidden].code] * (len(sizes) - 1)
    if loss is None:
        activations[-1] = kernels.LOGISTIC
        code = None
    else:
        entry = kernels.LOSSES[loss]
        activations[-1] = kernels.ACTIVATIONS[entry.layer_activation].code
        code = entry.code
    layout = engine.Layout(sizes, activations, code)
    x = rng.standard_normal((m, sizes[0]))
    if loss == "log_loss":
        y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], m)]
    else:
        y = rng.uniform(size=(m, sizes[-1]))
    sw = rng.uniform(0.5, 2.0, m) if weighted else np.empty(0)
    # Inputs and point representable in dtype: the float64 loss is at the same point,
    # with the same masks (a row's masks depend on its values as float64).
    x, y, sw = (a.astype(dtype).astype(np.float64) for a in (x, y, sw))
    params = (rng.standard_normal(layout.n_params) * 0.7).astype(dtype).astype(np.float64)
    objective = None if code is None else _loop.objective(code, 0.01)

    def cast(a):
        return a.astype(dtype)

    fixed = _compiled_loss(
        layout,
        cast(x),
        cast(y),
        cast(sw),
        objective,
        _dropout_bundle(layout, m, dtype, rates),
        dtype,
    )
    exact = _compiled_loss(
        layout, x, y, sw, objective, _dropout_bundle(layout, m, np.float64, rates), np.float64
    )
    _, grad = fixed(params)
    h = 1e-6
    numeric = np.empty(layout.n_params)
    for i in range(layout.n_params):
        step = np.zeros(layout.n_params)
        step[i] = h
        numeric[i] = (exact(params + step)[0] - exact(params - step)[0]) / (2 * h)
    # float64: FD's own error (~1e-8); float32: the gradient's rounding (~1e-6 of the
    # largest entry) and the mask's scale rounded to float32.
    tol = 1e-7 if dtype == np.float64 else 1e-4
    scale = np.abs(numeric).max()
    assert np.abs(grad - numeric).max() <= tol * scale, (grad, numeric)
    assert (grad != 0).any()


# -- the whole loop ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [3, 7])
def test_loop_equals_reference_training(batch, dtype, rng, assert_close):
    """Plain SGD steps with dropout (partial last batch: 7 rows in batches of 3) equal
    the reference's, drawing each batch's masks in the loop's order."""
    sizes, n, rates, lr = [3, 5, 4, 2], 7, [0.5, 0.25], 0.3
    layout = engine.Layout(sizes, [kernels.LOGISTIC] * 3, None)
    x = rng.standard_normal((n, 3)).astype(dtype)
    y = rng.uniform(size=(n, 2)).astype(dtype)
    params = rng.standard_normal(layout.n_params).astype(dtype)
    weights, biases = (
        [w.copy() for w in layout.views(params)[0]],
        [b.copy() for b in layout.views(params)[1]],
    )
    dropout = engine.Dropout(np.array(rates), 99)
    opt = engine.FusedSGD(layout.n_params, dtype, lr)
    trainer = engine.Trainer(layout, params, x, y, np.empty(0, dtype), batch, opt, dropout=dropout)
    losses = [loss for _, epoch in trainer.run(2) for loss in epoch]
    state = np.array([99, 0], dtype=np.uint64)
    rows = np.empty(batch, dtype=np.uint64)
    want_losses = []
    for _ in range(2):
        total = 0.0
        for start in range(0, n, batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            reference.dropout_rows(xb, rows, state)
            masks, inputs = [], xb
            for layer in range(len(sizes) - 2):
                w, b = weights[layer : layer + 1], biases[layer : layer + 1]
                a = reference.forward(inputs, w, b)[0]
                mask = np.empty_like(a)
                threshold = kernels.dropout_threshold(rates[layer])
                scale = 1 / (1 - rates[layer])
                reference.dropout_forward(a, np.empty_like(a), mask, rows, layer, threshold, scale)
                masks.append(mask)
                inputs = a
            dws, dbs = reference.gradients(xb, yb, weights, biases, masks)
            total += reference.loss(xb, yb, weights, biases, masks) * xb.shape[0]
            for p, g in zip(weights + biases, dws + dbs, strict=True):
                reference.sgd_update(p, g, lr)
        want_losses.append(total / n)
    assert np.array_equal(dropout.state, state)
    got_w, got_b = layout.views(params)
    for got, want in zip(got_w + got_b, weights + biases, strict=True):
        assert_close(got, want, dtype, "network", scale=np.full(want.shape, np.abs(want).max()))
    assert_close(losses, want_losses, dtype, "network")


def test_zero_rates_are_the_loop_without_dropout(rng):
    """The dropout variant with every rate 0 (thresholds 0: every layer skipped) trains
    bit for bit as the variant without dropout; an all-zero engine.Dropout gives that
    variant itself."""
    sizes, n = [4, 6, 5, 3], 11
    # The estimators' MLPRegressor mode (a variant the estimator tests compile too).
    squared = kernels.LOSSES["squared_error"].code
    layout = engine.Layout(sizes, [kernels.RELU, kernels.TANH, kernels.IDENTITY], squared)
    x = rng.standard_normal((n, 4))
    y = rng.standard_normal((n, 3))
    start = rng.standard_normal(layout.n_params) * 0.3
    results = []
    for variant in ("none", "zero-bundle"):
        params = start.copy()
        opt = engine.Adam(layout.n_params, np.float64, 0.01)
        trainer = engine.Trainer(layout, params, x, y, np.empty(0), 4, opt, 1e-4)
        if variant == "zero-bundle":
            bundle = _dropout_bundle(layout, 4, np.float64, [0.5, 0.5])
            bundle = bundle._replace(threshold=np.zeros(2, dtype=np.uint64))
            trainer.bufs = trainer.bufs._replace(dropout=bundle)
        list(trainer.run(3))
        results.append(params)
    assert results[0].tobytes() == results[1].tobytes()
    assert engine.Dropout(np.zeros(2), 5).bundle(layout, 4, np.float64) is None


# -- the estimators --------------------------------------------------------------------------


def _fit(est, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(x, y)


def _data(kind, n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0) if kind == "MLPClassifier" else x[:, 0] ** 2
    return x, y


def _weights(est):
    return b"".join(a.tobytes() for a in est.coefs_ + est.intercepts_)


ESTIMATORS = ("MLPClassifier", "MLPRegressor")


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_dropout_zero_is_the_fit_without_dropout(kind, solver):
    """dropout=0 in any spelling: the same fit, and the same draws from a RandomState."""
    x, y = _data(kind)
    outcomes = set()
    for dropout in (None, 0, 0.0, [0.0, 0.0], np.zeros(2)):
        params = {} if dropout is None else {"dropout": dropout}
        rs = np.random.RandomState(3)
        est = getattr(fb, kind)(
            hidden_layer_sizes=(6, 4), solver=solver, max_iter=5, random_state=rs, **params
        )
        _fit(est, x, y)
        outcomes.add((_weights(est), tuple(est.loss_curve_), pickle.dumps(rs.get_state())))
    assert len(outcomes) == 1


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_fits_repeat_bit_for_bit(kind, dtype):
    x, y = _data(kind)
    x = x.astype(dtype)

    def fit(seed, dropout=0.3):
        return _fit(
            getattr(fb, kind)(
                hidden_layer_sizes=(8, 8), max_iter=5, random_state=seed, dropout=dropout
            ),
            x,
            y,
        )

    first, again, other, without = fit(0), fit(0), fit(1), fit(0, 0.0)
    assert first.coefs_[0].dtype == dtype
    assert _weights(first) == _weights(again)
    assert first.loss_curve_ == again.loss_curve_
    assert _weights(first) != _weights(other)
    assert _weights(first) != _weights(without)


def test_partial_fit_draws_new_masks():
    """Each partial_fit call goes on with the generator (new masks), and a fit starts
    over from random_state."""
    x, y = _data("MLPRegressor")
    est = fb.MLPRegressor(hidden_layer_sizes=(8,), random_state=0, dropout=0.5, batch_size=10)
    est.partial_fit(x, y)
    generator = est._dropout
    after_one = int(generator.state[1])
    assert after_one == 4  # one step per batch
    est.partial_fit(x, y)
    assert est._dropout is generator
    assert int(generator.state[1]) == 2 * after_one
    _fit(est.set_params(max_iter=1), x, y)
    assert est._dropout is not generator
    assert int(est._dropout.state[1]) == after_one


@pytest.mark.parametrize("kind", ESTIMATORS)
def test_predict_drops_nothing(kind):
    """Prediction is the plain forward pass of the fitted weights."""
    x, y = _data(kind)
    est = _fit(
        getattr(fb, kind)(hidden_layer_sizes=(7,), max_iter=3, random_state=0, dropout=0.5), x, y
    )
    hidden = np.maximum(x @ est.coefs_[0] + est.intercepts_[0], 0)
    out = hidden @ est.coefs_[1] + est.intercepts_[1]
    if kind == "MLPClassifier":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        np.testing.assert_allclose(est.predict_proba(x), e / e.sum(axis=1, keepdims=True))
    else:
        np.testing.assert_allclose(est.predict(x), out.ravel())
    assert np.array_equal(est.predict(x), est.predict(x))


# -- bad input -------------------------------------------------------------------------------

BAD_DROPOUT = {
    "one": (1, ""),
    "one-float": (1.0, ""),
    "negative": (-0.1, ""),
    "nan": (np.nan, ""),
    "inf": (np.inf, ""),
    "string": ("0.5", ""),
    "bool": (True, ""),
    "none": (None, ""),
    "short-list": ([0.1], ""),
    "long-list": ([0.1, 0.2, 0.3], ""),
    "one-in-list": ([0.1, 1.0], ""),
    "nan-in-list": ([0.1, np.nan], ""),
    "nested": ([[0.1, 0.2]], ""),
    "with-lbfgs": (0.2, "lbfgs"),
}


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("case", BAD_DROPOUT)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_dropout_is_rejected_and_changes_nothing(kind, case, method):
    """A clear error naming ``dropout``, before any kernel runs, on a fitted estimator
    (and a RandomState random_state left undrawn)."""
    value, solver = BAD_DROPOUT[case]
    solver = "lbfgs" if solver == "lbfgs" else "adam"
    if method == "partial_fit" and solver == "lbfgs" and kind == "MLPClassifier":
        method = "fit"  # the classifier has no partial_fit with lbfgs
    x, y = _data(kind, 12)
    est = getattr(fb, kind)(
        hidden_layer_sizes=(4, 3), solver=solver, max_iter=2, random_state=np.random.RandomState(0)
    )
    _fit(est, x, y)
    est.set_params(dropout=value)
    before = state_of(est)
    rng_before = pickle.dumps(est.random_state)
    extra = {"classes": [0, 1, 2]} if method == "partial_fit" and kind == "MLPClassifier" else {}
    _, exc, calls = run_ours(lambda: getattr(est, method)(x, y, **extra))
    assert isinstance(exc, ValueError | TypeError), exc
    assert "dropout" in str(exc), exc
    assert not calls
    assert_unchanged(est, before)
    assert pickle.dumps(est.random_state) == rng_before


# -- no allocation in the loop ---------------------------------------------------------------

ALLOC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from numba.core.runtime import rtsys
    from fastbp._threads import compute_threads
    from fastbp import _loop, engine, kernels

    sizes, n, batch, dtype = json.loads(sys.argv[1])
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    layout = engine.Layout(sizes, [kernels.RELU] * (len(sizes) - 2) + [kernels.IDENTITY],
                           kernels.LOSSES["squared_error"].code)
    x = rng.random((n, sizes[0])).astype(dtype)
    y = rng.random((n, sizes[-1])).astype(dtype)
    params = (rng.standard_normal(layout.n_params) * 0.1).astype(dtype)
    opt = engine.Adam(layout.n_params, dtype, 1e-3)
    dropout = engine.Dropout(np.full(len(sizes) - 2, 0.3), 1)
    no_weights = np.empty(0, dtype=dtype)
    trainer = engine.Trainer(layout, params, x, y, no_weights, batch, opt, 1e-4, dropout=dropout)
    epochs = 400
    data = _loop.Data(x, y, no_weights, trainer.no_order, batch, trainer.gather,
                      trainer.xb, trainer.yb, trainer.swb)
    out = {}
    with compute_threads():
        trainer._chunk(data, 0, 0, 1, np.zeros(epochs))  # compiles
    for steps in (1, 500):
        with compute_threads():
            before = rtsys.get_allocation_stats().alloc
            trainer._chunk(data, 0, 0, steps, np.zeros(epochs))
            out[f"nrt_{steps}"] = rtsys.get_allocation_stats().alloc - before
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_dropout_step_allocates_nothing():
    """A chunk of 500 dropout steps (partial last batch included) allocates exactly
    as much as a chunk of 1 (the boxing of its arguments)."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    args = json.dumps([[6, 9, 5, 2], 23, 5, "float32"])
    proc = subprocess.run(
        [sys.executable, "-c", ALLOC_SCRIPT, args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["nrt_500"] == out["nrt_1"]


# -- fastbp.Network ------------------------------------------------------------------------------


def _network_fit(dropout, seed=0, dtype=np.float64):
    from fastbp import Network

    rng = np.random.default_rng(1)
    x = rng.standard_normal((13, 3)).astype(dtype)
    y = rng.uniform(size=(13, 2)).astype(dtype)
    net = Network([3, 6, 5, 2], dtype=dtype, seed=seed)
    params = {} if dropout is None else {"dropout": dropout}
    history = net.fit(x, y, epochs=4, lr=0.5, batch_size=5, shuffle=True, **params)
    return net, history


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_network_fit_with_dropout(dtype):
    """Network.fit(dropout=...): 0 is the fit without it (the same generator draws
    too); a rate repeats bit for bit with the same seed and changes the fit. (Bad
    rates: tests/test_rejected_calls.py's BAD_FIT_ARGS.)"""

    def outcome(net, history):
        return net._params.tobytes(), history.loss.tobytes(), net._rng.bit_generator.state

    without = outcome(*_network_fit(None, dtype=dtype))
    assert outcome(*_network_fit(0.0, dtype=dtype)) == without
    assert outcome(*_network_fit([0, 0], dtype=dtype)) == without
    dropped = outcome(*_network_fit(0.3, dtype=dtype))
    assert outcome(*_network_fit(0.3, dtype=dtype)) == dropped
    assert dropped[0] != without[0]
    assert outcome(*_network_fit(0.3, seed=1, dtype=dtype))[0] != dropped[0]


def test_sparse_rows_draw_the_masks_of_their_dense_form(rng):
    """CSR input (its stored entries, in any batch order) gives each row the key of the
    same row given dense; a fit on CSR input with dropout trains as on the dense array
    (up to the sparse kernels' rounding)."""
    import scipy.sparse

    x = scipy.sparse.random(9, 6, density=0.4, format="csr", random_state=1)
    order = rng.permutation(9).astype(np.int64)
    want = np.empty(5, dtype=np.uint64)
    kernels.dropout_rows(x.toarray()[order[2:7]], want, np.array([3, 4], dtype=np.uint64))
    got = np.empty(5, dtype=np.uint64)
    state = np.array([3, 4], dtype=np.uint64)
    kernels._dropout_rows_sparse(x.data, x.indices, x.indptr, order, 2, 5, got, state)
    assert got.tobytes() == want.tobytes()
    assert int(state[1]) == 5
    X, y = _data("MLPClassifier")
    X[np.abs(X) < 0.7] = 0
    fits = [
        _fit(
            fb.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dropout=0.4), a, y
        )
        for a in (X, scipy.sparse.csr_matrix(X))
    ]
    for dense, sparse in zip(fits[0].coefs_, fits[1].coefs_, strict=True):
        np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-12)
