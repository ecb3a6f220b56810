"""Compile ahead of time every variant of the compiled code a user can reach.

Numba compiles on first use and keeps the machine code in its on-disk cache;
:func:`precompile` fills that cache, for container images and CI jobs
(``RUN fastbp compile`` in a Dockerfile), so that no fit pays the first-run
compile. The variants are the combinations that change the compiled types: the
dtype (float32, float64); fastbp.Network (fused SGD, C-ordered or strided X,
dropout) and the estimators (Momentum and Adam steps, with and without dropout,
L-BFGS's loss and gradient, every output); steps split by rows over two threads
(``fastbp._rows``); sparse (CSR) input; prediction; and reproducible mode's
threaded kernels. Each is reached by running a tiny fit
through the public API, so that what is compiled is exactly what a fit runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

# Big enough that reproducible mode splits the products over threads
# (rows x inputs x units >= fastbp._jit.PARALLEL_GEMM).
_THREADED = (256, 128, 128)


def _network(dtype: type, order: str, shuffle: bool, dropout: float = 0.0) -> None:
    from fastbp import Network

    rng = np.random.default_rng(0)
    x = np.asarray(rng.random((9, 3)), dtype=dtype, order=order)
    y = rng.random((9, 2)).astype(dtype)
    net = Network([3, 4, 2], dtype=dtype, seed=0)
    net.fit(x, y, epochs=2, lr=0.5, batch_size=4, shuffle=shuffle, dropout=dropout)
    net.predict(x)
    net.gradients(x, y)


def _network_split(dtype: type, order: str) -> None:
    """Steps split by rows over two threads (fastbp.engine.rows)."""
    from fastbp import Network
    from fastbp.engine.rows import forced

    rng = np.random.default_rng(0)
    x = np.asarray(rng.random((20, 3)), dtype=dtype, order=order)
    y = rng.random((20, 2)).astype(dtype)
    with forced():
        Network([3, 4, 2], dtype=dtype, seed=0).fit(x, y, epochs=2, lr=0.5, batch_size=8)


def _network_threaded(dtype: type) -> None:
    from fastbp import Network, get_reproducible, set_reproducible

    rows, n_in, units = _THREADED
    rng = np.random.default_rng(0)
    x = rng.random((rows, n_in)).astype(dtype)
    y = rng.random((rows, 2)).astype(dtype)
    before = get_reproducible()
    set_reproducible(True)
    try:
        net = Network([n_in, units, 2], dtype=dtype, seed=0)
        net.fit(x, y, epochs=1, lr=0.1)
        net.predict(x)
    finally:
        set_reproducible(before)


def _estimators(dtype: type, solver: str, dropout: float = 0.0, split: bool = False) -> None:
    from fastbp.engine.rows import forced

    if split:  # steps split by rows (fastbp.engine.rows): batches of 8 or more rows
        with forced():
            _estimators_on(dtype, solver, 0.0, 24)
        return
    _estimators_on(dtype, solver, dropout, 12)


def _estimators_on(dtype: type, solver: str, dropout: float, rows: int) -> None:
    from fastbp import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(0)
    x = rng.random((rows, 3)).astype(dtype)
    labels = np.arange(rows) % 3
    targets = {
        MLPClassifier: (labels, labels % 2, np.column_stack([labels % 2, labels // 2])),
        MLPRegressor: (x[:, 0], np.round(x[:, :2] * 3)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 2 iterations
        for cls, ys in targets.items():
            for y in ys:
                loss = "poisson" if cls is MLPRegressor and y.ndim == 2 else None
                params = {"loss": loss} if loss else {}
                if dropout:
                    params["dropout"] = dropout
                est = cls(
                    hidden_layer_sizes=(4,), solver=solver, max_iter=2, random_state=0, **params
                )
                est.fit(x, y)
                est.predict(x)


def _sparse(dtype: type) -> None:
    """Sparse (CSR) input: Network's fits and the estimators' solvers."""
    import scipy.sparse

    from fastbp import MLPClassifier, Network

    rng = np.random.default_rng(0)
    x = scipy.sparse.random(12, 5, density=0.4, format="csr", random_state=0, dtype=dtype)
    y = rng.random((12, 2)).astype(dtype)
    net = Network([5, 4, 2], dtype=dtype, seed=0)
    for shuffle in (False, True):
        net.fit(x, y, epochs=2, lr=0.5, batch_size=4, shuffle=shuffle)
    net.predict(x)
    net.gradients(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 2 iterations
        for solver in ("adam", "sgd", "lbfgs"):
            est = MLPClassifier(hidden_layer_sizes=(4,), solver=solver, max_iter=2, random_state=0)
            est.fit(x, np.arange(12) % 2).predict_proba(x)


def variants(
    dtypes: tuple[type, ...] = (np.float32, np.float64),
) -> list[tuple[str, Callable[[], None]]]:
    """(label, task) for every variant in ``dtypes``, in the order :func:`precompile`
    runs them."""
    tasks: list[tuple[str, Callable[[], None]]] = []
    for dtype in dtypes:
        name = np.dtype(dtype).name
        tasks += [
            (f"Network {name}", lambda d=dtype: _network(d, "C", False)),
            (f"Network {name}, shuffled", lambda d=dtype: _network(d, "C", True)),
            (f"Network {name}, strided X", lambda d=dtype: _network(d, "F", False)),
            (f"Network {name}, dropout", lambda d=dtype: _network(d, "C", True, 0.2)),
            (f"Network {name}, reproducible mode", lambda d=dtype: _network_threaded(d)),
            (f"Network {name}, split rows", lambda d=dtype: _network_split(d, "C")),
            (f"Network {name}, split rows, strided X", lambda d=dtype: _network_split(d, "F")),
        ]
        for solver in ("adam", "sgd", "lbfgs"):
            tasks.append(
                (f"estimators {name}, {solver}", lambda d=dtype, s=solver: _estimators(d, s))
            )
        for solver in ("adam", "sgd"):  # split rows: the loop of fastbp._rows
            tasks.append(
                (
                    f"estimators {name}, {solver}, split rows",
                    lambda d=dtype, s=solver: _estimators(d, s, split=True),
                )
            )
        for solver in ("adam", "sgd"):  # dropout: its own variant of the loop
            tasks.append(
                (
                    f"estimators {name}, {solver}, dropout",
                    lambda d=dtype, s=solver: _estimators(d, s, 0.2),
                )
            )
        tasks.append((f"sparse input {name}", lambda d=dtype: _sparse(d)))
    return tasks


def precompile(progress: bool = True, dtypes: tuple[type, ...] = (np.float32, np.float64)) -> int:
    """Run every variant in ``dtypes`` once (see the module docstring); return how many
    there are. With ``progress``, a tqdm bar names the variant being compiled.
    """
    tasks = variants(dtypes)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), unit="variant")
    try:
        for label, task in tasks:
            if bar is not None:
                bar.set_description(label)
            task()
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return len(tasks)
