"""ONNX export (the extra ``fastbp[onnx]``): fastbp's estimators through skl2onnx's
own MLP converters, and :meth:`fastbp.Network.to_onnx`. onnxruntime's predictions
equal fastbp's: float32 within 1e-5 relative, float64 within 1e-12."""

from __future__ import annotations

import numpy as np
import pytest
from child_process import modules_after
from sklearn.exceptions import NotFittedError

from fastbp import Network, kernels
from fastbp.sklearn import MLPClassifier, MLPRegressor

pytest.importorskip("onnxruntime")  # CI installs the extra: these tests run there
skl2onnx = pytest.importorskip("skl2onnx")
fastbp_onnx = pytest.importorskip("fastbp.onnx")
import onnxruntime as ort  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# The bounds on |onnxruntime - fastbp| / |fastbp|.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def run(model, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def assert_close(got, want, dtype) -> None:
    """Relative to the largest output (probabilities near 0 carry absolute error)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype == dtype
    assert got.shape == want.shape
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def data(kind: str, dtype, n: int = 40):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(dtype)
    y = {
        "multiclass": np.array(["a", "b", "c"])[np.arange(n) % 3],
        "binary": np.arange(n) % 2,
        "regression": x[:, 0] - x[:, 1],
    }[kind]
    return x, y


@pytest.mark.parametrize("activation", sorted(kernels.ACTIVATIONS))
@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_classifier_through_skl2onnx(kind, activation, dtype):
    x, y = data(kind, dtype)
    est = MLPClassifier((5, 3), activation=activation, max_iter=30, random_state=0).fit(x, y)
    model = skl2onnx.to_onnx(est, x[:1], options={"zipmap": False})
    labels, proba = run(model, x)
    np.testing.assert_array_equal(labels, est.predict(x))
    assert_close(proba, est.predict_proba(x), dtype)


@pytest.mark.parametrize("activation", sorted(kernels.ACTIVATIONS))
def test_regressor_through_skl2onnx(activation, dtype):
    x, y = data("regression", dtype)
    est = MLPRegressor(
        hidden_layer_sizes=(5,), activation=activation, max_iter=30, random_state=0
    ).fit(x, y)
    (out,) = run(skl2onnx.to_onnx(est, x[:1]), x)
    assert_close(out.ravel(), est.predict(x), dtype)


def test_classifier_with_zipmap():
    """skl2onnx's default options (a ZipMap of the probabilities) work as for
    scikit-learn's MLPClassifier."""
    x, y = data("multiclass", np.float32)
    est = MLPClassifier((4,), max_iter=5, random_state=0).fit(x, y)
    labels, proba = run(skl2onnx.to_onnx(est, x[:1]), x)
    np.testing.assert_array_equal(labels, est.predict(x))
    assert proba[0].keys() == set(est.classes_)


def test_classifier_in_a_pipeline():
    """skl2onnx's pipeline parser finds the registered estimator."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data("multiclass", np.float32)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((4,), max_iter=5, random_state=0))
    pipe.fit(x, y)
    labels, proba = run(skl2onnx.to_onnx(pipe, x[:1], options={"zipmap": False}), x)
    np.testing.assert_array_equal(labels, pipe.predict(x))
    assert_close(proba, pipe.predict_proba(x), np.float32)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_unfitted_estimator(cls):
    x, _ = data("regression", np.float64)
    est = cls()
    with pytest.raises(NotFittedError):
        skl2onnx.to_onnx(est, x[:1])
    assert not hasattr(est, "coefs_")


def test_poisson_regressor_refused():
    """skl2onnx's converter has no exp output: a clear error, not a KeyError."""
    x, y = data("regression", np.float64)
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(3,), max_iter=3).fit(x, np.exp(y))
    with pytest.raises(ValueError, match="'exp'"):
        skl2onnx.to_onnx(est, x[:1])


@pytest.mark.parametrize("activation", sorted(kernels.ACTIVATIONS))
def test_network_to_onnx(activation, dtype, tmp_path):
    """Every registered activation, in hidden and output layers: MatMul, Add and the
    activation's operator per layer."""
    net = Network([4, 6, 5, 3], dtype=dtype, seed=1, activation=[activation] * 3)
    x = np.random.default_rng(2).standard_normal((17, 4)).astype(dtype)
    path = tmp_path / "net.onnx"
    net.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"X": x})
    assert_close(out, net.predict(x), dtype)


def test_network_to_onnx_default_and_replaced_weights(tmp_path):
    """The default network (logistic layers), after a weight was replaced by the user."""
    net = Network([3, 4, 2], seed=0)
    net.weights[0] = np.full((3, 4), 0.25)
    x = np.random.default_rng(0).standard_normal((5, 3))
    net.to_onnx(tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    assert_close(session.run(None, {"X": x})[0], net.predict(x), np.float64)


def test_every_activation_has_an_operator():
    assert set(fastbp_onnx.ONNX_OPERATORS) == set(kernels.ACTIVATIONS)


@pytest.mark.slow  # a fresh interpreter imports fastbp (and Numba)
def test_import_fastbp_does_not_import_onnx():
    assert modules_after("fastbp, fastbp.sklearn", {"onnx", "skl2onnx", "onnxruntime"}) == []
