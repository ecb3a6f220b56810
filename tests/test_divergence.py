"""Divergence: a huge learning rate or extreme data make fit raise DivergenceError,
leaving finite weights from a completed step and the completed epochs' history."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp

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
