"""Network(activation=...): every registered activation, one for the hidden layers or
one per layer, against central finite differences and the NumPy reference, kept
in the model file (format 2; format-1 files still load as all-logistic)."""

from __future__ import annotations

import numpy as np
import pytest
from numeric import numeric_gradients

from fastbp import Network, kernels, reference

NAMES = sorted(kernels.ACTIVATIONS)
SIZES = [3, 5, 4, 2]


def reference_fit_step(net: Network, x, y, lr: float) -> list[np.ndarray]:
    """One full-batch gradient step of ``net``'s math, by the reference's layer twins."""
    codes = [kernels.ACTIVATIONS[name].code for name in net.activations]
    ws = [w.astype(np.float64) for w in net.weights]
    bs = [b.astype(np.float64) for b in net.biases]
    acts = []
    a = x.astype(np.float64)
    for w, b, code in zip(ws, bs, codes, strict=True):
        out = np.empty((a.shape[0], w.shape[1]))
        reference.dense_forward(a, w, b, out, code)
        acts.append(out)
        a = out
    delta = np.empty_like(acts[-1])
    reference.mse_loss_grad(acts[-1], y.astype(np.float64), delta)
    for layer in range(len(ws) - 1, -1, -1):
        a_prev = acts[layer - 1] if layer > 0 else x.astype(np.float64)
        dw, db = np.empty_like(ws[layer]), np.empty_like(bs[layer])
        below = np.empty_like(a_prev) if layer > 0 else None
        reference.dense_backward(delta, acts[layer], a_prev, ws[layer], dw, db, below, codes[layer])
        ws[layer] -= lr * dw
        bs[layer] -= lr * db
        delta = below
    return ws + bs


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name, rng):
    net = Network(SIZES, seed=1, activation=name)
    assert net.activations == [name, name, "logistic"]
    x = rng.normal(size=(7, SIZES[0]))
    y = rng.uniform(size=(7, SIZES[-1]))
    dws, dbs = net.gradients(x, y)
    # relu's kink: a pre-activation within h of 0 would spoil the difference; this
    # seed's data has none (the comparison would fail otherwise).
    for grad, numeric in zip(dws + dbs, numeric_gradients(net, x, y), strict=True):
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("per_layer", [["relu", "tanh", "identity"], ["tanh", "logistic", "relu"]])
def test_fit_matches_the_reference_per_layer(per_layer, dtype, rng, assert_close):
    """One activation per layer, the output layer's included: a full-batch step of the
    compiled fused SGD equals the reference's layer twins."""
    net = Network(SIZES, dtype=dtype, seed=2, activation=per_layer)
    x = rng.normal(size=(9, SIZES[0])).astype(dtype)
    y = rng.uniform(size=(9, SIZES[-1])).astype(dtype)
    want = reference_fit_step(net, x, y, lr=0.1)
    net.fit(x, y, epochs=1, lr=0.1)
    for got, expected in zip(net.weights + net.biases, want, strict=True):
        assert got.dtype == dtype
        assert_close(got, expected, dtype, "network", scale=np.abs(expected) + 1)


def test_default_is_the_logistic_network(rng):
    """The default is today's network: the same initial weights and training."""
    plain = Network(SIZES, seed=3)
    named = Network(SIZES, seed=3, activation="logistic")
    listed = Network(SIZES, seed=3, activation=["logistic"] * 3)
    x, y = rng.normal(size=(8, 3)), rng.uniform(size=(8, 2))
    for net in (plain, named, listed):
        net.fit(x, y, epochs=3, lr=0.5)
    for a, b, c in zip(plain.weights, named.weights, listed.weights, strict=True):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    assert repr(plain) == "Network([3, 5, 4, 2], dtype=float64)"


def test_model_file_keeps_the_activations(tmp_path, rng):
    net = Network(SIZES, dtype=np.float32, seed=4, activation=["relu", "tanh", "identity"])
    net.save(tmp_path / "m.npz")
    back = Network.load(tmp_path / "m.npz")
    assert back.activations == ["relu", "tanh", "identity"]
    x = rng.normal(size=(5, 3)).astype(np.float32)
    assert back.predict(x).tobytes() == net.predict(x).tobytes()


def test_format_1_files_load_as_logistic(tmp_path, rng):
    """A model file written before activations were recorded (format 1)."""
    net = Network(SIZES, seed=5)
    arrays = {k: v for k, v in net._to_arrays().items() if k != "activations"}
    arrays["fastbp_format"] = np.array(1)
    np.savez(tmp_path / "v1.npz", **arrays)
    back = Network.load(tmp_path / "v1.npz")
    assert back.activations == ["logistic"] * 3
    x = rng.normal(size=(4, 3))
    assert back.predict(x).tobytes() == net.predict(x).tobytes()


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("softplus", ValueError),
        (["relu", "relu"], ValueError),  # 2 names for 3 layers
        (["relu", 3, "logistic"], TypeError),
        (3, TypeError),
        (None, TypeError),
    ],
)
def test_bad_activation_is_refused_naming_it(bad, error):
    with pytest.raises(error, match="activation"):
        Network(SIZES, activation=bad)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ({"activations": np.array(["relu", "softplus", "logistic"])}, "unknown activation"),
        ({"activations": np.array(["relu", "relu"])}, "activations must be 3 names"),
        ({"activations": np.array([1, 2, 3])}, "activations must be 3 names"),
        ({"activations": None}, "entries"),
    ],
)
def test_load_refuses_bad_activation_entries(edit, why, tmp_path):
    arrays = Network(SIZES, seed=6)._to_arrays()
    for key, value in edit.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=why):
        Network.load(tmp_path / "bad.npz")
