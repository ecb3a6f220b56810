"""Every compiled kernel against its NumPy twin in :mod:`fastbp.reference`.

One table maps each kernel to a builder of its arguments; each test builds the
arguments once, runs ``{"numpy": reference, "fastbp": kernels}`` on copies of
them and compares what the compiled kernel wrote (and returned) with what the
reference did, within the tolerance table of ``conftest.py``. Kernels that take a
thread count run twice: serially (``threads=None``) and threaded; the largest
shape is big enough for the threaded and BLAS paths.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numba
import numpy as np
import pytest

from fastbp import kernels, reference

IMPLEMENTATIONS = {"numpy": reference, "fastbp": kernels}
ACTIVATIONS = {
    "identity": kernels.IDENTITY,
    "logistic": kernels.LOGISTIC,
    "tanh": kernels.TANH,
    "relu": kernels.RELU,
}

# (m, k, n): rows, inner width, outer width of a layer (m samples, k inputs, n units).
SHAPES = [
    (1, 1, 1),  # one sample, one unit
    (1, 3, 17),  # widths no multiple of a SIMD vector
    (17, 1, 3),
    (3, 17, 33),  # m * k * n = 1683: the plain-loop product
    (33, 17, 17),  # m * k * n = 9537 >= SMALL_GEMM: the BLAS product
    (130, 17, 128),  # m * n = 16640 >= PARALLEL_MIN: the parallel passes
]
# Shapes also run with Fortran-ordered and transposed inputs (loop and BLAS paths).
LAYOUT_SHAPES = [(3, 17, 33), (33, 17, 17)]


@dataclass
class Case:
    """Arguments of one kernel call and how to judge what it wrote."""

    args: list
    # index of each array the kernel writes -> (tolerance kind, magnitude scale)
    outputs: dict[int, tuple[str, np.ndarray | None]]
    # tolerance kind and scale of the return value, if it returns one
    returns: tuple[str, float] | None = None


def _array(rng, shape, dtype, layout="C", low=-1.0, high=1.0):
    """Uniform values in [low, high): C-ordered, F-ordered ("F") or a transposed view ("T")."""
    if layout == "F":
        return np.asfortranarray(rng.uniform(low, high, shape).astype(dtype))
    if layout == "T":
        return rng.uniform(low, high, shape[::-1]).astype(dtype).T
    return rng.uniform(low, high, shape).astype(dtype)


def _layouts(fortran):
    """Layouts of the first and second 2-D input: F-ordered and transposed, or both C."""
    return ("F", "T") if fortran else ("C", "C")


def _activation_values(rng, shape, dtype, activation):
    """Layer outputs ``a`` a real forward pass could produce for ``activation``."""
    if activation == kernels.LOGISTIC:
        return rng.uniform(0.0, 1.0, shape).astype(dtype)
    if activation == kernels.TANH:
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if activation == kernels.RELU:
        return np.maximum(rng.uniform(-1.0, 1.0, shape), 0.0).astype(dtype)  # half exact zeros
    return rng.uniform(-2.0, 2.0, shape).astype(dtype)


def _derivative(a, activation):
    """f'(z) from the output ``a``, in float64."""
    a = a.astype(np.float64)
    if activation == kernels.LOGISTIC:
        return a * (1 - a)
    if activation == kernels.TANH:
        return 1 - a * a
    if activation == kernels.RELU:
        return (a > 0).astype(np.float64)
    return np.ones_like(a)


def _abs64(x):
    return np.abs(x.astype(np.float64))


def build_matmul(rng, shape, dtype, fortran):
    m, k, n = shape
    first, second = _layouts(fortran)
    a = _array(rng, (m, k), dtype, first)
    b = _array(rng, (k, n), dtype, second)
    out = np.full((m, n), np.nan, dtype=dtype)
    return Case([a, b, out], {2: ("sum", _abs64(a) @ _abs64(b))})


def build_dense_forward(rng, shape, dtype, fortran, activation):
    m, k, n = shape
    first, second = _layouts(fortran)
    x = _array(rng, (m, k), dtype, first, -2.0, 2.0)
    w = _array(rng, (k, n), dtype, second)
    b = _array(rng, (n,), dtype)
    out = np.full((m, n), np.nan, dtype=dtype)
    # The activations squash or keep the error of z = x @ w + b; + 1 covers the
    # rounding of a sigmoid or tanh value near 1.
    scale = _abs64(x) @ _abs64(w) + _abs64(b) + 1.0
    return Case([x, w, b, out, activation], {3: ("sum", scale)})


def build_dense_backward(rng, shape, dtype, fortran, activation, with_prev):
    m, k, n = shape
    first, second = _layouts(fortran)
    delta = _array(rng, (m, n), dtype)  # written in place: always C-contiguous
    a = _activation_values(rng, (m, n), dtype, activation)
    if fortran:
        a = np.asfortranarray(a)
    a_prev = _array(rng, (m, k), dtype, first, 0.0, 1.0)
    w = _array(rng, (k, n), dtype, second)
    dw = np.full((k, n), np.nan, dtype=dtype)
    db = np.full(n, np.nan, dtype=dtype)
    delta_prev = np.full((m, k), np.nan, dtype=dtype) if with_prev else None
    dz = _abs64(delta) * np.abs(_derivative(a, activation))
    outputs = {
        0: ("elementwise", dz),
        4: ("sum", _abs64(a_prev).T @ dz),
        5: ("sum", dz.sum(axis=0)),
    }
    if with_prev:
        outputs[6] = ("sum", dz @ _abs64(w).T)
    return Case([delta, a, a_prev, w, dw, db, delta_prev, activation], outputs)


def build_dense_backward_sgd(rng, shape, dtype, fortran, activation, with_prev):
    case = build_dense_backward(rng, shape, dtype, fortran, activation, with_prev)
    delta, a, a_prev, w, _, db, delta_prev, _ = case.args
    lr = 0.37
    b = _array(rng, db.shape, dtype)
    if fortran:  # w is updated in place: it must stay C-contiguous
        w = np.ascontiguousarray(w)
    dz = case.outputs[0][1]
    outputs = {
        0: case.outputs[0],
        3: ("sum", _abs64(w) + lr * case.outputs[4][1]),
        4: ("sum", _abs64(b) + lr * case.outputs[5][1]),
        5: case.outputs[5],
    }
    if with_prev:
        outputs[6] = ("sum", dz @ _abs64(w).T)
    return Case([delta, a, a_prev, w, b, db, delta_prev, lr, activation], outputs)


def build_mse_loss_grad(rng, shape, dtype, fortran):
    m, _, n = shape
    first, second = _layouts(fortran)
    a = _array(rng, (m, n), dtype, first, 0.0, 1.0)
    y = _array(rng, (m, n), dtype, second, 0.0, 1.0)
    grad = np.full((m, n), np.nan, dtype=dtype)
    loss = float(np.sum((a.astype(np.float64) - y) ** 2)) / m
    return Case([a, y, grad], {2: ("elementwise", None)}, returns=("sum", loss))


def build_sgd_update(rng, shape, dtype, fortran):
    m, _, n = shape
    param = _array(rng, (m * n,), dtype)
    grad = _array(rng, (m * n,), dtype)
    return Case([param, grad, 0.37], {0: ("elementwise", None)})


# kernel name -> (argument builder, variants (id -> extra builder arguments), takes 2-D inputs)
KERNELS = {
    "matmul": (build_matmul, {"": ()}, True),
    "dense_forward": (
        build_dense_forward,
        {name: (code,) for name, code in ACTIVATIONS.items()},
        True,
    ),
    "dense_backward": (
        build_dense_backward,
        {
            f"{name}-{'delta_prev' if prev else 'no_delta_prev'}": (code, prev)
            for name, code in ACTIVATIONS.items()
            for prev in (True, False)
        },
        True,
    ),
    "dense_backward_sgd": (
        build_dense_backward_sgd,
        {
            f"{name}-{'delta_prev' if prev else 'no_delta_prev'}": (code, prev)
            for name, code in ACTIVATIONS.items()
            for prev in (True, False)
        },
        True,
    ),
    "mse_loss_grad": (build_mse_loss_grad, {"": ()}, True),
    "sgd_update": (build_sgd_update, {"": ()}, False),  # 1-D: layout does not apply
}


# -- the scikit-learn estimators' kernels: output layers, losses, optimizers ---------

LOSSES = {
    "squared": kernels.LOSS_SQUARED,
    "poisson": kernels.LOSS_POISSON,
    "binary": kernels.LOSS_BINARY,
    "softmax": kernels.LOSS_SOFTMAX,
}


def build_output_activation(rng, shape, dtype, fortran, loss):
    m, _, n = shape
    a = _array(rng, (m, n), dtype, "C", -3.0, 3.0)
    return Case([a, loss], {0: ("sum", np.exp(_abs64(a)))})


def _outputs_and_targets(rng, m, n, dtype, loss):
    """Output-layer values and targets such a loss sees in training."""
    if loss == kernels.LOSS_POISSON:
        return _array(rng, (m, n), dtype, "C", 0.1, 3.0), rng.integers(0, 4, (m, n)).astype(dtype)
    if loss == kernels.LOSS_BINARY:
        return _array(rng, (m, n), dtype, "C", 0.0, 1.0), rng.integers(0, 2, (m, n)).astype(dtype)
    if loss == kernels.LOSS_SOFTMAX:
        a = _array(rng, (m, n), dtype, "C", 0.01, 1.0)
        a /= a.sum(axis=1, keepdims=True)
        y = np.eye(n, dtype=dtype)[rng.integers(0, n, m)]
        return a, y
    return _array(rng, (m, n), dtype), _array(rng, (m, n), dtype)


def build_output_loss_grad(rng, shape, dtype, fortran, loss, weighted):
    m, _, n = shape
    a, y = _outputs_and_targets(rng, m, n, dtype, loss)
    sw = _array(rng, (m,), dtype, "C", 0.1, 2.0) if weighted else np.empty(0, dtype)
    sw_sum = float(sw.astype(np.float64).sum()) if weighted else float(m)
    grad = np.full((m, n), np.nan, dtype=dtype)
    w = sw.astype(np.float64) if weighted else np.ones(m)
    scale = _abs64(a - y) * (w / sw_sum)[:, None]
    # Every term of these losses has one sign: |J| bounds the sum of |terms|.
    value = reference.output_loss_grad(a, y, sw, sw_sum, loss, grad.copy())
    return Case(
        [a, y, sw, sw_sum, loss, grad], {5: ("elementwise", scale)}, returns=("sum", abs(value))
    )


def build_sum_squares(rng, shape, dtype, fortran):
    m, _, n = shape
    w = _array(rng, (m, n), dtype)
    return Case([w], {}, returns=("sum", float(np.sum(_abs64(w) ** 2))))


def build_l2_add(rng, shape, dtype, fortran):
    m, _, n = shape
    dw = _array(rng, (m, n), dtype)
    w = _array(rng, (m, n), dtype)
    return Case([dw, w, 0.03], {0: ("elementwise", _abs64(dw) + 0.03 * _abs64(w))})


def build_momentum_update(rng, shape, dtype, fortran, nesterov):
    m, _, n = shape
    param, grad, velocity = (_array(rng, (m * n,), dtype) for _ in range(3))
    lr, mu = 0.37, 0.9
    v_scale = mu * _abs64(velocity) + lr * _abs64(grad)
    p_scale = _abs64(param) + mu * v_scale + lr * _abs64(grad)
    return Case(
        [param, grad, velocity, lr, mu, nesterov],
        {0: ("elementwise", p_scale), 2: ("elementwise", v_scale)},
    )


def build_adam_update(rng, shape, dtype, fortran):
    m, _, n = shape
    param, grad, first = (_array(rng, (m * n,), dtype) for _ in range(3))
    second = _array(rng, (m * n,), dtype, "C", 0.0, 1.0)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    m_scale = b1 * _abs64(first) + (1 - b1) * _abs64(grad)
    v_scale = b2 * _abs64(second) + (1 - b2) * _abs64(grad) ** 2
    p_scale = _abs64(param) + lr * m_scale / (np.sqrt(b2 * second.astype(np.float64)) + eps)
    return Case(
        [param, grad, first, second, lr, b1, b2, eps],
        {0: ("sum", p_scale), 2: ("elementwise", m_scale), 3: ("elementwise", v_scale)},
    )


KERNELS.update(
    {
        "output_activation": (
            build_output_activation,
            {name: (code,) for name, code in LOSSES.items()},
            False,
        ),
        "output_loss_grad": (
            build_output_loss_grad,
            {
                f"{name}-{'weighted' if weighted else 'unweighted'}": (code, weighted)
                for name, code in LOSSES.items()
                for weighted in (True, False)
            },
            False,
        ),
        "sum_squares": (build_sum_squares, {"": ()}, False),
        "l2_add": (build_l2_add, {"": ()}, False),
        "momentum_update": (
            build_momentum_update,
            {"nesterov": (True,), "momentum": (False,)},
            False,
        ),
        "adam_update": (build_adam_update, {"": ()}, False),
    }
)


def _params(layouts):
    for name, (_, variants, two_d) in KERNELS.items():
        for variant in variants:
            if layouts and not two_d:
                continue
            kid = f"{name}-{variant}" if variant else name
            for shape in LAYOUT_SHAPES if layouts else SHAPES:
                yield pytest.param(name, variant, shape, id=f"{kid}-{'x'.join(map(str, shape))}")


def _copy(value):
    return value.copy(order="K") if isinstance(value, np.ndarray) else value


def _run_and_compare(name, variant, shape, dtype, fortran, rng, assert_close):
    builder, variants, _ = KERNELS[name]
    case = builder(rng, shape, dtype, fortran, *variants[variant])
    results = {}
    # threads=None is the serial code; a count enables the threaded paths. Both are
    # passed explicitly, as the training loop does, to share its compiled versions.
    threaded = "threads" in inspect.signature(getattr(kernels, name).py_func).parameters
    runs = [
        (impl_name, impl, {"threads": None} if threaded and impl is kernels else {})
        for impl_name, impl in IMPLEMENTATIONS.items()
    ]
    if threaded and not fortran:
        runs.append(("fastbp-threads", kernels, {"threads": numba.config.NUMBA_NUM_THREADS}))
    for impl_name, impl, kwargs in runs:
        args = [_copy(arg) for arg in case.args]
        before = [_copy(arg) for arg in args]
        returned = getattr(impl, name)(*args, **kwargs)
        for i, (arg, old) in enumerate(zip(args, before, strict=True)):
            if not isinstance(arg, np.ndarray):
                continue
            assert arg.dtype == dtype, f"{impl_name}: argument {i} changed dtype"
            assert arg.flags.f_contiguous == old.flags.f_contiguous
            if i not in case.outputs:
                np.testing.assert_array_equal(arg, old, err_msg=f"{impl_name} changed input {i}")
        for i in case.outputs:
            assert np.isfinite(args[i]).all(), f"{impl_name} left output {i} unwritten"
        results[impl_name] = (args, returned)

    want_args, want_ret = results.pop("numpy")
    for got_args, got_ret in results.values():
        for i, (kind, scale) in case.outputs.items():
            assert_close(got_args[i], want_args[i], dtype, kind, scale)
        if case.returns is None:
            assert got_ret is None
            assert want_ret is None
        else:
            kind, scale = case.returns
            assert isinstance(got_ret, float)
            assert_close(got_ret, want_ret, dtype, kind, scale)


@pytest.mark.parametrize(("name", "variant", "shape"), list(_params(layouts=False)))
def test_kernel_matches_reference(name, variant, shape, dtype, rng, assert_close):
    _run_and_compare(name, variant, shape, dtype, False, rng, assert_close)


@pytest.mark.parametrize(("name", "variant", "shape"), list(_params(layouts=True)))
def test_kernel_accepts_fortran_and_transposed_inputs(
    name, variant, shape, dtype, rng, assert_close
):
    _run_and_compare(name, variant, shape, dtype, True, rng, assert_close)


def test_builders_make_the_layouts_they_claim(rng):
    """The layout tests really pass F-ordered and transposed (non-C) inputs."""
    f_ordered = _array(rng, (3, 4), np.float64, "F")
    transposed = _array(rng, (3, 4), np.float64, "T")
    assert f_ordered.flags.f_contiguous
    assert not f_ordered.flags.c_contiguous
    assert transposed.flags.f_contiguous
    assert not transposed.flags.c_contiguous
    assert transposed.base is not None


def test_kernel_table_covers_every_kernel():
    """Every public compiled function of fastbp.kernels has a row and a NumPy twin."""
    public = {
        name
        for name, obj in vars(kernels).items()
        if isinstance(obj, numba.core.dispatcher.Dispatcher)
        and not name.startswith("_")
        and obj.py_func.__module__ == kernels.__name__
    }
    assert {"matmul", "dense_forward", "dense_backward", "mse_loss_grad", "sgd_update"} <= public
    assert set(KERNELS) == public
    for name in public:
        assert callable(getattr(reference, name))


def test_sgd_update_keeps_float32_arithmetic():
    """lr is rounded to float32 first, as in the reference: float32 in, float32 math."""
    param = np.ones(5, dtype=np.float32)
    grad = np.full(5, 3.0, dtype=np.float32)
    lr = 0.1
    kernels.sgd_update(param, grad, lr)
    expected = np.float32(1) - np.float32(lr) * np.float32(3)
    assert param.dtype == np.float32
    np.testing.assert_array_equal(param, np.full(5, expected, dtype=np.float32))
