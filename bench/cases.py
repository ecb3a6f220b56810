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


# -- per-layer kernels ---------------------------------------------------------------

KERNEL_OPS: tuple[str, ...] = ("forward", "backward", "update")


def _floor_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(x, w, out=out)


def _floor_backward(
    delta: np.ndarray,
    a: np.ndarray,
    a_prev: np.ndarray,
    w: np.ndarray,
    dw: np.ndarray,
    db: np.ndarray,
    delta_prev: np.ndarray | None,
) -> None:
    np.matmul(a_prev.T, delta, out=dw)
    if delta_prev is not None:
        np.matmul(delta, w.T, out=delta_prev)


def _floor_loss_grad(a: np.ndarray, y: np.ndarray, grad: np.ndarray) -> float:
    return 0.0


# The GEMM floor as a kernel module: the same signatures, matrix products only.
GEMM_FLOOR_KERNELS = types.SimpleNamespace(
    dense_forward=_floor_forward,
    dense_backward=_floor_backward,
    mse_loss_grad=_floor_loss_grad,
    sgd_update=None,
)

KERNEL_IMPLS: dict[str, Any] = {
    "fastbp": kernels,
    "numpy": reference,
    "gemm-floor": GEMM_FLOOR_KERNELS,
}


def kernel_supported(impl: str, op: str) -> bool:
    """The GEMM floor has no update kernel."""
    return not (impl == "gemm-floor" and op == "update")


def kernel_flops(case: Case, op: str) -> int:
    """FLOPs of one call of ``op`` over all layers for one batch (GEMMs; update: 2 per param)."""
    if op == "update":
        return 2 * sum(n_in * n_out + n_out for n_in, n_out in case.layers)
    return case.gemm_flops(case.batch_rows)[op]


def make_kernel_op(impl: str, op: str, case: Case, dtype: type[np.floating]) -> Runner:
    """One batch through every layer with ``KERNEL_IMPLS[impl]``'s kernels.

    forward: ``dense_forward`` per layer. backward: ``mse_loss_grad`` then
    ``dense_backward`` per layer, top down (the loss gradient rewrites the top delta
    each call, so repeated calls see the same data). update: ``sgd_update`` on every
    weight and bias, as 1-D views.
    """
    mod = KERNEL_IMPLS[impl]
    x, y = case.data(dtype)
    m = case.batch_rows
    xb, yb = x[:m], y[:m]
    weights, biases = reference.init_params(case.sizes, dtype, seed=SEED)
    acts = reference.forward(xb, weights, biases)
    deltas = _small_deltas(acts)  # the GEMM floor never writes the top one
    top = len(weights) - 1

    if op == "forward":

        def run() -> None:
            a_prev = xb
            for w, b, a in zip(weights, biases, acts, strict=True):
                mod.dense_forward(a_prev, w, b, a)
                a_prev = a

    elif op == "backward":
        dws = [np.empty_like(w) for w in weights]
        dbs = [np.empty_like(b) for b in biases]

        def run() -> None:
            mod.mse_loss_grad(acts[top], yb, deltas[top])
            for layer in range(top, -1, -1):
                a_prev = acts[layer - 1] if layer else xb
                below = deltas[layer - 1] if layer else None
                mod.dense_backward(
                    deltas[layer],
                    acts[layer],
                    a_prev,
                    weights[layer],
                    dws[layer],
                    dbs[layer],
                    below,
                )

    elif op == "update":
        params = [p.reshape(-1) for p in weights + biases]
        rng = np.random.default_rng(SEED)
        grads = [rng.standard_normal(p.size).astype(dtype) for p in params]

        def run() -> None:
            for p, g in zip(params, grads, strict=True):
                mod.sgd_update(p, g, 1e-6)

    else:
        raise ValueError(f"unknown kernel op {op!r}")
    return run
