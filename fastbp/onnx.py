"""ONNX export (the optional extra ``fastbp[onnx]``: onnx, skl2onnx, onnxruntime).

Importing this module registers fastbp's estimators with skl2onnx, whose own
MLP converters, shape calculators and parsers then convert them as they convert
scikit-learn's::

    import fastbp.onnx  # registers fastbp.MLPClassifier and MLPRegressor
    import skl2onnx

    model = skl2onnx.to_onnx(estimator, X[:1])  # float32 X: a float32 graph

:meth:`fastbp.Network.to_onnx` writes a :class:`~fastbp.Network` as an ONNX
graph (one MatMul, Add and activation per layer, :data:`ONNX_OPERATORS`). Both
give onnxruntime the predictions fastbp gives, up to float rounding.

``import fastbp`` never imports onnx or skl2onnx; this module does.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.utils.validation import check_is_fitted

from fastbp import _files

__all__ = ["ONNX_OPERATORS", "OPSET", "network_model", "register", "save_network"]

# Each registered activation (fastbp.kernels.ACTIVATIONS) as an ONNX operator of
# the default domain: a new activation needs its line here (test_onnx checks).
ONNX_OPERATORS = {
    "identity": "Identity",
    "logistic": "Sigmoid",
    "tanh": "Tanh",
    "relu": "Relu",
}
# The activations skl2onnx's MLP converter knows (its _forward_pass).
_SKL2ONNX_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "softmax")
# The graphs' opset: old enough for any onnxruntime of the last years.
OPSET = 17
_IR_VERSION = 8  # the IR of opset 17 (onnx 1.12)
_TENSOR_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


def register() -> None:
    """Register fastbp's MLPClassifier and MLPRegressor with skl2onnx.

    They use skl2onnx's parsers, shape calculators and converters of
    scikit-learn's MLPs, under the same aliases; only a check comes first, so
    that an unfitted estimator, or an output skl2onnx's converter does not
    handle (MLPRegressor's ``loss='poisson'``), raises a clear error.
    Idempotent; importing :mod:`fastbp.onnx` calls it.
    """
    from skl2onnx import update_registered_converter
    from skl2onnx._parse import _parse_sklearn_classifier, _parse_sklearn_simple_model
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from skl2onnx.operator_converters.multilayer_perceptron import (
        convert_sklearn_mlp_classifier,
        convert_sklearn_mlp_regressor,
    )

    from fastbp.sklearn import MLPClassifier, MLPRegressor

    update_registered_converter(
        MLPClassifier,
        "SklearnMLPClassifier",
        calculate_linear_classifier_output_shapes,
        convert_sklearn_mlp_classifier,
        parser=_checked(_parse_sklearn_classifier),
        # skl2onnx's options of scikit-learn's MLPClassifier
        options={
            "zipmap": [True, False, "columns"],
            "output_class_labels": [False, True],
            "nocl": [True, False],
        },
    )
    update_registered_converter(
        MLPRegressor,
        "SklearnMLPRegressor",
        calculate_linear_regressor_output_shapes,
        convert_sklearn_mlp_regressor,
        parser=_checked(_parse_sklearn_simple_model),
    )


def _checked(parse: Any) -> Any:
    """skl2onnx's parser ``parse``, after checking the estimator can be converted
    (the parser is the first to look at it)."""

    def parser(scope: Any, model: Any, inputs: Any, custom_parsers: Any = None) -> Any:
        _check_convertible(model)
        return parse(scope, model, inputs, custom_parsers=custom_parsers)

    return parser


def _check_convertible(est: Any) -> None:
    """A NotFittedError or ValueError unless skl2onnx's MLP converter can convert ``est``."""
    check_is_fitted(est)
    for name in (est.activation, est.out_activation_):
        if name not in _SKL2ONNX_ACTIVATIONS:
            raise ValueError(
                f"skl2onnx's MLP converter has no {name!r} activation "
                f"({type(est).__name__} with activation={est.activation!r}, "
                f"out_activation_={est.out_activation_!r})."
            )


def network_model(net: Any) -> onnx.ModelProto:
    """The ONNX model of a :class:`fastbp.Network`.

    Input ``X`` of shape (n_samples, sizes[0]) and output ``Y`` of shape
    (n_samples, sizes[-1]), both in the network's dtype (float32 or float64);
    each layer is ``MatMul``, ``Add`` (its biases) and its activation's operator
    (:data:`ONNX_OPERATORS`). The weights are copies: the model does not change
    with the network.
    """
    names = net.activations
    unknown = [name for name in names if name not in ONNX_OPERATORS]
    if unknown:
        raise ValueError(f"activation {unknown[0]!r} has no ONNX operator in fastbp.onnx")
    net._sync()  # entries the user replaced in weights/biases
    elem = _TENSOR_TYPES[net.dtype]
    nodes, initializers = [], []
    current = "X"
    for layer, (w, b, name) in enumerate(zip(net.weights, net.biases, names, strict=True)):
        initializers += [
            numpy_helper.from_array(np.asarray(w), f"W{layer}"),
            numpy_helper.from_array(np.asarray(b), f"b{layer}"),
        ]
        out = "Y" if layer == len(names) - 1 else f"A{layer}"
        nodes += [
            helper.make_node("MatMul", [current, f"W{layer}"], [f"Z{layer}_mm"]),
            helper.make_node("Add", [f"Z{layer}_mm", f"b{layer}"], [f"Z{layer}"]),
            helper.make_node(ONNX_OPERATORS[name], [f"Z{layer}"], [out]),
        ]
        current = out
    sizes = net.sizes
    graph = helper.make_graph(
        nodes,
        "fastbp_network",
        [helper.make_tensor_value_info("X", elem, ["n_samples", sizes[0]])],
        [helper.make_tensor_value_info("Y", elem, ["n_samples", sizes[-1]])],
        initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="fastbp",
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=_IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


def save_network(net: Any, path: str | os.PathLike) -> None:
    """Write :func:`network_model` of ``net`` to ``path``, atomically."""
    data = network_model(net).SerializeToString()
    _files.write_atomically(path, lambda f: f.write(data))


register()
