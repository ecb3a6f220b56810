"""The one table that drives every benchmark: cases, training implementations, kernels.

A *case* is a network shape, a data size and a batch size. A *trainer* turns a case
and a dtype into a zero-argument callable that trains for a fixed number of epochs;
everything it needs (data, network, buffers) is built before the callable is
returned, so benchmarks time training and nothing else. Kernel benchmarks run the
per-layer kernels of :mod:`fastbp.kernels` and their twins in :mod:`fastbp.reference`
over one batch of a case's shape.

Optional peers (PyTorch, scikit-learn) are imported lazily; :func:`skip_reason`
says why one is unavailable, so the suite skips it instead of failing.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastbp
from fastbp import kernels, reference

DTYPES: tuple[type[np.floating], ...] = (np.float32, np.float64)
SEED = 0


@dataclass(frozen=True)
class Case:
    """One benchmark case: layer widths, samples per epoch, batch size, learning rate.

    ``fastbp_epochs`` epochs run per call in the amortised fastbp row; ``peer_epochs``
    per call in the NumPy, GEMM-floor and peer rows. Times are reported per epoch.
    """

    name: str
    sizes: tuple[int, ...]
    samples: int
    batch: int | None  # None: full batch
    lr: float
    fastbp_epochs: int
    peer_epochs: int
    big: bool = False
    kernels: bool = False  # also benchmark the per-layer kernels on this shape

    @property
    def batch_rows(self) -> int:
        """Rows in a (full) batch."""
        return self.samples if self.batch is None else min(self.batch, self.samples)

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(n_in, n_out) of each layer."""
        return list(itertools.pairwise(self.sizes))

    def gemm_flops(self, rows: int) -> dict[str, int]:
        """Floating-point operations of the matrix products for ``rows`` samples."""
        forward = sum(2 * rows * n_in * n_out for n_in, n_out in self.layers)
        grad_w = forward
        grad_a = sum(2 * rows * n_in * n_out for n_in, n_out in self.layers[1:])
        return {"forward": forward, "backward": grad_w + grad_a, "epoch": forward + grad_w + grad_a}

    @property
    def flops_per_epoch(self) -> int:
        """GEMM FLOPs of one epoch (forward, dW and dA products; element-wise work not counted)."""
        return self.gemm_flops(self.samples)["epoch"]

    def reduced(self) -> Case:
        """The case cut down to one batch per epoch, for the smoke run."""
        return dataclasses.replace(self, name=f"{self.name}-smoke", samples=self.batch_rows)

    def data(self, dtype: type[np.floating]) -> tuple[np.ndarray, np.ndarray]:
        """Random inputs in [0, 1) and targets in [0, 1), C-contiguous, of ``dtype``."""
        rng = np.random.default_rng(SEED)
        x = rng.random((self.samples, self.sizes[0]), dtype=np.float64).astype(dtype)
        y = rng.random((self.samples, self.sizes[-1]), dtype=np.float64).astype(dtype)
        return x, y

    def info(self, dtype: type[np.floating]) -> dict[str, Any]:
        """What every benchmark of this case records in ``extra_info``."""
        return {
            "case": self.name,
            "sizes": list(self.sizes),
            "samples": self.samples,
            "batch": self.batch_rows,
            "batches_per_epoch": -(-self.samples // self.batch_rows),
            "lr": self.lr,
            "dtype": np.dtype(dtype).name,
            "threads": fastbp.get_num_threads(),
            "flops_per_epoch": self.flops_per_epoch,
        }


CASES: tuple[Case, ...] = (
    Case("tiny", (2, 4, 1), 4, None, lr=0.5, fastbp_epochs=1000, peer_epochs=100),
    Case("small", (64, 32, 10), 1797, 32, lr=0.1, fastbp_epochs=50, peer_epochs=5),
    Case(
        "medium", (784, 256, 10), 10000, 128, lr=0.1, fastbp_epochs=3, peer_epochs=1, kernels=True
    ),
    Case(
        "wide",
        (1024, 1024, 1024, 10),
        8192,
        1024,
        lr=0.05,
        fastbp_epochs=2,
        peer_epochs=1,
        big=True,
        kernels=True,
    ),
)
CASE_BY_NAME = {case.name: case for case in CASES}


# -- training implementations ----------------------------------------------------------

Runner = Callable[[], None]


@dataclass(frozen=True)
class Trainer:
    """A training implementation: ``make(case, dtype, epochs)`` returns the timed callable."""

    name: str
    label: str
    make: Callable[[Case, type[np.floating], int], Runner]
    epochs: Callable[[Case], int]
    module: str | None = None  # optional dependency; skipped when not importable


def _fastbp(case: Case, dtype: type[np.floating], epochs: int) -> Runner:
    x, y = case.data(dtype)
    net = fastbp.Network(case.sizes, dtype=dtype, seed=SEED)

    def run() -> None:
        net.fit(x, y, epochs=epochs, lr=case.lr, batch_size=case.batch)

    return run


def _numpy(case: Case, dtype: type[np.floating], epochs: int) -> Runner:
    x, y = case.data(dtype)
    weights, biases = reference.init_params(case.sizes, dtype, seed=SEED)

    def run() -> None:
        reference.train(x, y, weights, biases, epochs=epochs, lr=case.lr, batch_size=case.batch)

    return run


def _gemm_floor(case: Case, dtype: type[np.floating], epochs: int) -> Runner:
    """Only the matrix products of training, through BLAS into preallocated buffers.

    Per batch: Z_l = A_{l-1} @ W_l for every layer, dW_l = A_{l-1}.T @ dZ_l for every
    layer and dA_{l-1} = dZ_l @ W_l.T for every layer but the first. The buffers hold
    whatever the products leave; no activation, loss or update is computed.
    """
    x, _ = case.data(dtype)
    b = case.batch_rows
    weights, _ = reference.init_params(case.sizes, dtype, seed=SEED)
    grads = [np.empty_like(w) for w in weights]
    acts = [np.empty((b, n_out), dtype=dtype) for _, n_out in case.layers]
    deltas = _small_deltas(acts)
    starts = range(0, case.samples, b)
    top = len(weights) - 1

    def run() -> None:
        for _ in range(epochs):
            for start in starts:
                xb = x[start : start + b]
                m = xb.shape[0]
                a_prev = xb
                for w, a in zip(weights, acts, strict=True):
                    np.matmul(a_prev, w, out=a[:m])
                    a_prev = a[:m]
                for layer in range(top, -1, -1):
                    a_in = acts[layer - 1][:m] if layer else xb
                    np.matmul(a_in.T, deltas[layer][:m], out=grads[layer])
                    if layer:
                        np.matmul(deltas[layer][:m], weights[layer].T, out=deltas[layer - 1][:m])

    return run


def _small_deltas(acts: list[np.ndarray]) -> list[np.ndarray]:
    """Finite, small back-propagated values for the products that skip the loss."""
    rng = np.random.default_rng(SEED)
    return [(1e-3 * rng.standard_normal(a.shape)).astype(a.dtype) for a in acts]


def import_optional(module: str) -> types.ModuleType:
    """Import an optional peer with its import-time warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def skip_reason(module: str | None) -> str | None:
    """Why the implementation needing ``module`` cannot run here, or None if it can."""
    if module is None:
        return None
    try:
        import_optional(module)
    except ImportError as exc:
        return f"{module} not installed ({exc})"
    return None


def _torch(case: Case, dtype: type[np.floating], epochs: int) -> Runner:
    """PyTorch CPU: nn.Linear + nn.Sigmoid layers, loss sum((a - y)^2) / M, optim.SGD."""
    torch = import_optional("torch")
    torch.set_num_threads(fastbp.get_num_threads())
    torch.manual_seed(SEED)
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    layers: list[Any] = []
    for n_in, n_out in case.layers:
        layers += [torch.nn.Linear(n_in, n_out, dtype=tdtype), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=case.lr)
    x, y = (torch.from_numpy(arr) for arr in case.data(dtype))
    b = case.batch_rows
    batches = [(x[s : s + b], y[s : s + b]) for s in range(0, case.samples, b)]

    def run() -> None:
        for _ in range(epochs):
            for xb, yb in batches:
                opt.zero_grad(set_to_none=True)
                loss = ((model(xb) - yb) ** 2).sum() / xb.shape[0]
                loss.backward()
                opt.step()

    return run


def _sklearn(case: Case, dtype: type[np.floating], epochs: int) -> Runner:
    """scikit-learn MLPRegressor, plain SGD; one epoch is one ``partial_fit`` call.

    Its output layer is the identity, not a sigmoid, and its loss is half the mean
    over all outputs, so it does slightly less work per batch than the others.
    """
    nn = import_optional("sklearn.neural_network")
    x, y = case.data(dtype)
    target = y.ravel() if y.shape[1] == 1 else y  # a (n, 1) target warns
    model = nn.MLPRegressor(
        hidden_layer_sizes=case.sizes[1:-1],
        activation="logistic",
        solver="sgd",
        learning_rate="constant",
        learning_rate_init=case.lr,
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=0.0,
        batch_size=case.batch_rows,
        shuffle=False,
        random_state=SEED,
    )

    def run() -> None:
        for _ in range(epochs):
            model.partial_fit(x, target)

    return run


TRAINERS: tuple[Trainer, ...] = (
    Trainer("fastbp", "fastbp", _fastbp, lambda c: c.fastbp_epochs),
    Trainer("fastbp-1-epoch-call", "fastbp, fit(epochs=1)", _fastbp, lambda c: 1),
    Trainer("numpy", "fastbp.reference (NumPy)", _numpy, lambda c: c.peer_epochs),
    Trainer("gemm-floor", "GEMM floor (matmuls only)", _gemm_floor, lambda c: c.peer_epochs),
    Trainer("torch", "PyTorch CPU", _torch, lambda c: c.peer_epochs, module="torch"),
    Trainer(
        "sklearn", "scikit-learn MLPRegressor", _sklearn, lambda c: c.peer_epochs, module="sklearn"
    ),
)


# -- the kernel table: drives tests/test_kernels.py and the kernel benchmarks ---------
#
# One row per compiled kernel of fastbp.kernels: the kernel, its NumPy twin in
# fastbp.reference, and a builder of its arguments, ``build(rng, shape, dtype,
# fortran, *variant)`` with shape (m, k, n) = (rows, inputs, units) of a layer and
# ``fortran`` asking for F-ordered and transposed 2-D inputs. The builder also says
# which arrays the kernel writes and how to judge them against the twin (a
# tolerance kind of tests/conftest.py and a bound on the magnitude of the terms).


@dataclass
class KernelCall:
    """Arguments of one kernel call and how to judge what it wrote."""

    args: list[Any]
    # index of each array the kernel writes -> (tolerance kind, magnitude scale)
    outputs: dict[int, tuple[str, np.ndarray | None]]
    # tolerance kind and scale of the return value, if it returns one
    returns: tuple[str, float] | None = None


@dataclass(frozen=True)
class KernelRow:
    """A kernel, its NumPy twin, its argument builder and its variants.

    ``bench``: for the kernels the training loop runs, the variant it runs on layer
    ``l`` (of ``n`` layers) as ``bench(l)``; None for kernels only tests call.
    ``per_layer``: benchmarked once per layer on (batch, n_in, n_out), else once on
    the flat parameter vector. ``reset``: arrays the kernel reads and rewrites
    (restored before each timed call, so every call sees the same data).
    """

    kernel: Callable[..., Any]
    reference: Callable[..., Any]
    build: Callable[..., KernelCall]
    variants: dict[str, tuple[Any, ...]]
    two_d: bool  # takes 2-D inputs: also run with F-ordered and transposed ones
    bench: Callable[[int], str] | None = None
    per_layer: bool = True
    reset: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.reference.__name__


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


def _abs64(x):
    return np.abs(x.astype(np.float64))


def _activation_outputs(rng, shape, dtype, activation):
    """Layer outputs ``a`` a real forward pass could produce: f of uniform z in [-2, 2)."""
    a = rng.uniform(-2.0, 2.0, shape)
    kernels.ACTIVATIONS[activation].forward_numpy(a)
    return a.astype(dtype)


def _derivative(a, activation):
    """|f'(z)| from the output ``a``, in float64 (the twin applied to a delta of ones)."""
    ones = np.ones(a.shape)
    kernels.ACTIVATIONS[activation].delta_numpy(ones, a.astype(np.float64))
    return np.abs(ones)


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
    code = kernels.ACTIVATIONS[activation].code
    return KernelCall([x, w, b, out, code], {3: ("sum", scale)})


def build_dense_backward(rng, shape, dtype, fortran, activation, with_prev):
    m, k, n = shape
    first, second = _layouts(fortran)
    delta = _array(rng, (m, n), dtype)  # written in place: always C-contiguous
    a = _activation_outputs(rng, (m, n), dtype, activation)
    if fortran:
        a = np.asfortranarray(a)
    a_prev = _array(rng, (m, k), dtype, first, 0.0, 1.0)
    w = _array(rng, (k, n), dtype, second)
    dw = np.full((k, n), np.nan, dtype=dtype)
    db = np.full(n, np.nan, dtype=dtype)
    delta_prev = np.full((m, k), np.nan, dtype=dtype) if with_prev else None
    dz = _abs64(delta) * _derivative(a, activation)
    outputs = {
        0: ("elementwise", dz),
        4: ("sum", _abs64(a_prev).T @ dz),
        5: ("sum", dz.sum(axis=0)),
    }
    if with_prev:
        outputs[6] = ("sum", dz @ _abs64(w).T)
    code = kernels.ACTIVATIONS[activation].code
    return KernelCall([delta, a, a_prev, w, dw, db, delta_prev, code], outputs)


def build_dense_backward_sgd(rng, shape, dtype, fortran, activation, with_prev):
    call = build_dense_backward(rng, shape, dtype, fortran, activation, with_prev)
    delta, a, a_prev, w, _, db, delta_prev, code = call.args
    lr = 0.37
    b = _array(rng, db.shape, dtype)
    if fortran:  # w is updated in place: it must stay C-contiguous
        w = np.ascontiguousarray(w)
    dz = call.outputs[0][1]
    outputs = {
        0: call.outputs[0],
        3: ("sum", _abs64(w) + lr * call.outputs[4][1]),
        4: ("sum", _abs64(b) + lr * call.outputs[5][1]),
        5: call.outputs[5],
    }
    if with_prev:
        outputs[6] = ("sum", dz @ _abs64(w).T)
    return KernelCall([delta, a, a_prev, w, b, db, delta_prev, lr, code], outputs)


def build_mse_loss_grad(rng, shape, dtype, fortran, *part):
    """``part``: (k,) for a being a k-th of the batch (the ``rows`` argument)."""
    m, _, n = shape
    first, second = _layouts(fortran)
    a = _array(rng, (m, n), dtype, first, 0.0, 1.0)
    y = _array(rng, (m, n), dtype, second, 0.0, 1.0)
    grad = np.full((m, n), np.nan, dtype=dtype)
    rows = [m * k for k in part]
    loss = float(np.sum((a.astype(np.float64) - y) ** 2)) / (rows[0] if rows else m)
    return KernelCall([a, y, grad, *rows], {2: ("elementwise", None)}, returns=("sum", loss))


def build_output_activation(rng, shape, dtype, fortran, loss):
    m, _, n = shape
    a = _array(rng, (m, n), dtype, "C", -3.0, 3.0)
    return KernelCall([a, kernels.LOSSES[loss].code], {0: ("sum", np.exp(_abs64(a)))})


def _outputs_and_targets(rng, m, n, dtype, loss):
    """Output-layer values and targets such a loss sees in training."""
    if loss == "poisson":
        return _array(rng, (m, n), dtype, "C", 0.1, 3.0), rng.integers(0, 4, (m, n)).astype(dtype)
    if loss == "binary_log_loss":
        return _array(rng, (m, n), dtype, "C", 0.0, 1.0), rng.integers(0, 2, (m, n)).astype(dtype)
    if loss == "log_loss":
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
    code = kernels.LOSSES[loss].code
    # Every term of these losses has one sign: |J| bounds the sum of |terms|.
    value = reference.output_loss_grad(a, y, sw, sw_sum, code, grad.copy())
    return KernelCall(
        [a, y, sw, sw_sum, code, grad], {5: ("elementwise", scale)}, returns=("sum", abs(value))
    )


def build_sum_squares(rng, shape, dtype, fortran):
    m, _, n = shape
    w = _array(rng, (m, n), dtype)
    return KernelCall([w], {}, returns=("sum", float(np.sum(_abs64(w) ** 2))))


def build_l2_add(rng, shape, dtype, fortran):
    m, _, n = shape
    dw = _array(rng, (m, n), dtype)
    w = _array(rng, (m, n), dtype)
    return KernelCall([dw, w, 0.03], {0: ("elementwise", _abs64(dw) + 0.03 * _abs64(w))})


def build_momentum_update(rng, shape, dtype, fortran, nesterov):
    m, _, n = shape
    param, grad, velocity = (_array(rng, (m * n,), dtype) for _ in range(3))
    lr, mu = 0.37, 0.9
    v_scale = mu * _abs64(velocity) + lr * _abs64(grad)
    p_scale = _abs64(param) + mu * v_scale + lr * _abs64(grad)
    return KernelCall(
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
    return KernelCall(
        [param, grad, first, second, lr, b1, b2, eps],
        {0: ("sum", p_scale), 2: ("elementwise", m_scale), 3: ("elementwise", v_scale)},
    )


def build_dropout_rows(rng, shape, dtype, fortran):
    m, k, _ = shape
    x = _array(rng, (m, k), dtype)
    x[rng.uniform(size=(m, k)) < 0.3] = 0  # zeros count for nothing
    rows = np.zeros(m, dtype=np.uint64)
    state = np.array([2**63 + 11, 5], dtype=np.uint64)
    # uint64 outputs, compared as floats here: a wrong key (a mix64 output) is ~2**63
    # away from the right one; tests/test_dropout.py compares them bit for bit.
    return KernelCall([x, rows, state], {1: ("elementwise", None), 2: ("elementwise", None)})


def _dropout_rows_of(rng, m):
    return rng.integers(0, 2**63, m, dtype=np.int64).astype(np.uint64)


def build_dropout_forward(rng, shape, dtype, fortran):
    m, _, n = shape
    a = _array(rng, (m, n), dtype)
    before, mask = np.zeros_like(a), np.zeros_like(a)
    rate = 0.3
    threshold = np.uint64(kernels.dropout_threshold(rate))
    args = [a, before, mask, _dropout_rows_of(rng, m), 1, threshold, 1 / (1 - rate)]
    scale = _abs64(a) / (1 - rate)
    return KernelCall(
        args,
        {0: ("elementwise", scale), 1: ("elementwise", _abs64(a)), 2: ("elementwise", None)},
    )


def build_dropout_backward(rng, shape, dtype, fortran):
    m, _, n = shape
    delta, a, before = (_array(rng, (m, n), dtype) for _ in range(3))
    mask = np.where(rng.uniform(size=(m, n)) < 0.3, 0.0, 2.0).astype(dtype)
    scale = 2 * _abs64(delta)
    return KernelCall(
        [delta, mask, a, before], {0: ("elementwise", scale), 2: ("elementwise", None)}
    )


def _csr_batch(rng, m, k, dtype):
    """(data, indices, indptr, order, start) of a batch of m rows of a CSR matrix with
    m + 3 rows and k columns (about a third stored), in a shuffled order; and the
    batch's rows as a dense array."""
    import scipy.sparse

    x = scipy.sparse.random(m + 3, k, density=0.3, format="csr", random_state=rng, dtype=dtype)
    order = rng.permutation(m + 3).astype(np.int64)
    return [x.data, x.indices, x.indptr, order, 3], x.toarray()[order[3 : 3 + m]]


def build_sparse_forward(rng, shape, dtype, fortran, activation):
    m, k, n = shape
    csr, dense = _csr_batch(rng, m, k, dtype)
    w = _array(rng, (k, n), dtype)
    b = _array(rng, (n,), dtype)
    out = np.full((m, n), np.nan, dtype=dtype)
    scale = _abs64(dense) @ _abs64(w) + _abs64(b) + 1.0  # as build_dense_forward's
    code = kernels.ACTIVATIONS[activation].code
    return KernelCall([*csr, w, b, out, code], {7: ("sum", scale)})


def build_sparse_backward(rng, shape, dtype, fortran, activation):
    m, k, n = shape
    csr, dense = _csr_batch(rng, m, k, dtype)
    delta = _array(rng, (m, n), dtype)
    a = _activation_outputs(rng, (m, n), dtype, activation)
    w = _array(rng, (k, n), dtype)
    dw = np.full((k, n), np.nan, dtype=dtype)  # every row is written
    db = np.full(n, np.nan, dtype=dtype)
    dz = _abs64(delta) * _derivative(a, activation)
    decay = 0.03
    outputs = {
        0: ("elementwise", dz),
        8: ("sum", _abs64(dense).T @ dz + decay * _abs64(w)),
        9: ("sum", dz.sum(axis=0)),
    }
    code = kernels.ACTIVATIONS[activation].code
    return KernelCall([delta, a, *csr, w, dw, db, decay, code], outputs)


def build_sparse_backward_sgd(rng, shape, dtype, fortran, activation):
    call = build_sparse_backward(rng, shape, dtype, fortran, activation)
    delta, a, data, indices, indptr, order, start, w, _, db, _, code = call.args
    lr = 0.37
    b = _array(rng, db.shape, dtype)
    dz = call.outputs[0][1]
    dense_dw = call.outputs[8][1] - 0.03 * _abs64(w)
    outputs = {
        0: call.outputs[0],
        7: ("sum", _abs64(w) + lr * dense_dw),
        8: ("sum", _abs64(b) + lr * dz.sum(axis=0)),
        9: call.outputs[9],
    }
    return KernelCall([delta, a, data, indices, indptr, order, start, w, b, db, lr, code], outputs)


def _with_prev(prefix: str) -> Callable[[int], str]:
    """The variant the loop runs on layer l: no delta_prev below the first layer."""
    return lambda layer: f"{prefix}-{'delta_prev' if layer else 'no_delta_prev'}"


_BACKWARD_VARIANTS = {
    f"{name}-{'delta_prev' if prev else 'no_delta_prev'}": (name, prev)
    for name in kernels.ACTIVATIONS
    for prev in (True, False)
}
_SKLEARN_LOSSES = [loss.name for loss in kernels.LOSSES.values() if loss.term is not None]

KERNEL_TABLE: tuple[KernelRow, ...] = (
    KernelRow(
        kernels.dense_forward,
        reference.dense_forward,
        build_dense_forward,
        {name: (name,) for name in kernels.ACTIVATIONS},
        two_d=True,
        bench=lambda layer: "logistic",
    ),
    KernelRow(
        kernels.dense_backward,
        reference.dense_backward,
        build_dense_backward,
        _BACKWARD_VARIANTS,
        two_d=True,
        bench=_with_prev("logistic"),
        reset=(0,),
    ),
    KernelRow(
        kernels.dense_backward_sgd,
        reference.dense_backward_sgd,
        build_dense_backward_sgd,
        _BACKWARD_VARIANTS,
        two_d=True,
        bench=_with_prev("logistic"),
        reset=(0,),
    ),
    KernelRow(
        kernels.mse_loss_grad,
        reference.mse_loss_grad,
        build_mse_loss_grad,
        {"": (), "half of the batch": (2,)},
        True,
    ),
    KernelRow(
        kernels.output_activation,
        reference.output_activation,
        build_output_activation,
        {name: (name,) for name in _SKLEARN_LOSSES},
        two_d=False,
    ),
    KernelRow(
        kernels.output_loss_grad,
        reference.output_loss_grad,
        build_output_loss_grad,
        {
            f"{name}-{'weighted' if weighted else 'unweighted'}": (name, weighted)
            for name in _SKLEARN_LOSSES
            for weighted in (True, False)
        },
        two_d=False,
    ),
    KernelRow(kernels.sum_squares, reference.sum_squares, build_sum_squares, {"": ()}, False),
    KernelRow(kernels.l2_add, reference.l2_add, build_l2_add, {"": ()}, False),
    KernelRow(
        kernels.momentum_update,
        reference.momentum_update,
        build_momentum_update,
        {"nesterov": (True,), "momentum": (False,)},
        two_d=False,
        bench=lambda layer: "nesterov",  # scikit-learn's default
        per_layer=False,
    ),
    KernelRow(
        kernels.adam_update,
        reference.adam_update,
        build_adam_update,
        {"": ()},
        two_d=False,
        bench=lambda layer: "",
        per_layer=False,
    ),
    KernelRow(kernels.dropout_rows, reference.dropout_rows, build_dropout_rows, {"": ()}, False),
    KernelRow(
        kernels.dropout_forward, reference.dropout_forward, build_dropout_forward, {"": ()}, False
    ),
    KernelRow(
        kernels.dropout_backward,
        reference.dropout_backward,
        build_dropout_backward,
        {"": ()},
        False,
    ),
    # The sparse first layer (CSR input): only tests call these.
    *(
        KernelRow(
            getattr(kernels, name),
            getattr(reference, name),
            build,
            {act: (act,) for act in kernels.ACTIVATIONS},
            two_d=False,
        )
        for name, build in (
            ("sparse_forward", build_sparse_forward),
            ("sparse_backward", build_sparse_backward),
            ("sparse_backward_sgd", build_sparse_backward_sgd),
        )
    ),
)
KERNEL_BY_NAME = {row.name: row for row in KERNEL_TABLE}

# The kernels the training loop runs, in the order of a step.
KERNEL_OPS: tuple[str, ...] = tuple(row.name for row in KERNEL_TABLE if row.bench is not None)


def _floor_forward(x, w, b, out, activation):
    np.matmul(x, w, out=out)


def _floor_backward(delta, a, a_prev, w, dw, db, delta_prev, activation):
    np.matmul(a_prev.T, delta, out=dw)
    if delta_prev is not None:
        np.matmul(delta, w.T, out=delta_prev)


def _floor_backward_sgd(delta, a, a_prev, w, b, db, delta_prev, lr, activation):
    if delta_prev is not None:
        np.matmul(delta, w.T, out=delta_prev)
    np.matmul(a_prev.T, delta, out=w)  # the product only (the kernel adds it to w)


# The GEMM floor: only the matrix products of the kernels that have them.
_GEMM_FLOOR = {
    "dense_forward": _floor_forward,
    "dense_backward": _floor_backward,
    "dense_backward_sgd": _floor_backward_sgd,
}
KERNEL_IMPLS: tuple[str, ...] = ("fastbp", "numpy", "gemm-floor")


def kernel_supported(impl: str, op: str) -> bool:
    """The GEMM floor exists only for the kernels with matrix products."""
    return impl != "gemm-floor" or op in _GEMM_FLOOR


def kernel_flops(case: Case, op: str) -> int:
    """FLOPs of one call of ``op`` over all layers for one batch (GEMMs; updates: per param)."""
    rows = case.batch_rows
    if op == "dense_forward":
        return case.gemm_flops(rows)["forward"]
    if op in ("dense_backward", "dense_backward_sgd"):
        return case.gemm_flops(rows)["backward"]
    n_params = sum(n_in * n_out + n_out for n_in, n_out in case.layers)
    return (2 if op == "momentum_update" else 8) * n_params


def make_kernel_op(impl: str, op: str, case: Case, dtype: type[np.floating]) -> Runner:
    """One batch of ``case`` through kernel ``op`` as the training loop runs it.

    Per-layer kernels run once per layer on (batch, n_in, n_out) with the variant
    the loop uses there (logistic; no delta_prev below the first layer); the
    optimizer updates run once on a vector of the network's parameter count. The
    arguments are built by the kernel table's builder, before timing; arrays the
    kernel reads and rewrites (``reset``) are restored before each call.
    """
    row = KERNEL_BY_NAME[op]
    assert row.bench is not None, f"{op} is not a kernel the training loop runs"
    fn = {"fastbp": row.kernel, "numpy": row.reference}.get(impl) or _GEMM_FLOOR[op]
    rng = np.random.default_rng(SEED)
    m = case.batch_rows
    if row.per_layer:
        shapes = [(m, n_in, n_out) for n_in, n_out in case.layers]
    else:
        shapes = [(1, 1, sum(n_in * n_out + n_out for n_in, n_out in case.layers))]
    calls = [
        row.build(rng, shape, dtype, False, *row.variants[row.bench(layer)])
        for layer, shape in enumerate(shapes)
    ]
    resets = [[(call.args[i], call.args[i].copy()) for i in row.reset] for call in calls]

    def run() -> None:
        for call, saved in zip(calls, resets, strict=True):
            for array, original in saved:
                np.copyto(array, original)
            fn(*call.args)

    return run
