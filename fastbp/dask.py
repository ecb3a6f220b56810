"""Train and predict on a Dask cluster, the data never leaving its workers.

:class:`DaskMLPClassifier` and :class:`DaskMLPRegressor` are fastbp's estimators
with a ``client``; :func:`train` trains a :class:`fastbp.Network`. The rows stay
where Dask holds them: the partitions are persisted on the workers, each
worker concatenates the partitions it holds into one block (its *group*) and
keeps it, with its kernel buffers, as a Dask future in its own memory. Each
round sends the parameters (and optimizer state) to every group and brings
back a gradient or new parameters and a few scalars:

- ``lbfgs`` and full-batch gradient descent are exact: every group returns the
  loss and gradient of its rows (:class:`fastbp.engine.Gradient`), the client
  sums them weighted by the groups' row counts (or weight sums) and drives
  SciPy's L-BFGS-B as the local estimator does. With one group the fit *is*
  the local fit; with several it differs by summation order only.
- ``sgd``, ``adam`` and mini-batch ``Network`` training run *local SGD* (model
  averaging): each group runs ``sync_every`` compiled steps on its own rows from
  the current parameters and optimizer state (one pass over its rows when
  ``sync_every`` is None), then parameters and optimizer moments are averaged,
  weighted by the rows each group used. With one group the fit is the local
  fit bit for bit (same row order, same random draws).

A lost worker costs a recomputation, not the fit: a group's block is a Dask
future computed from the partitions, which Dask recomputes from their graph
(data that was scattered from NumPy is lost with its worker, as any scattered
data). ``import fastbp`` does not import Dask; this module does.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import math
import numbers
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, default_client, get_worker, wait
from sklearn.utils._param_validation import Interval

from fastbp import _loop, engine
from fastbp._files import read_npz, save_npz
from fastbp._threads import compute_threads
from fastbp._validation import all_finite, check_bool, check_int, check_positive_float
from fastbp.engine.dropout import check_rates
from fastbp.network import DivergenceError, History, Network
from fastbp.sklearn import MLPClassifier, MLPRegressor
from fastbp.sklearn._base import STOCHASTIC_SOLVERS
from fastbp.sklearn._checks import check_architecture, check_hidden_layer_sizes
from fastbp.sklearn._solvers import minimize_lbfgs, run_epochs
from fastbp.sklearn._transaction import Transaction

__all__ = ["DaskMLPClassifier", "DaskMLPRegressor", "train"]

# Parameters at most this big travel inside the round's tasks; bigger ones are
# scattered to every worker once per round (one copy per worker, not per task).
INLINE_PARAMS_BYTES = 1 << 20


# -- the client -------------------------------------------------------------------


@contextlib.contextmanager
def _client_for(client: Any) -> Iterator[tuple[Client, bool]]:
    """(client, owned): the given client, Dask's current one, or a LocalCluster
    (one single-threaded worker process per core) started here and closed after."""
    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(
                f"client must be a dask.distributed.Client or None, got {type(client).__name__}"
            )
        yield client, False
        return
    try:
        current = default_client()
    except ValueError:  # no client: the embedded default
        current = None
    if current is not None:
        yield current, False
        return
    cluster = _local_cluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True)
    owned = Client(cluster)
    try:
        yield owned, True
    finally:
        owned.close()
        cluster.close()


def _local_cluster(**kwargs: Any) -> LocalCluster:
    """A LocalCluster that leaves this process's environment as it was: Dask's nanny
    sets OMP_NUM_THREADS=1 (and more) for its workers in the parent's os.environ too,
    which would hold every later fastbp fit in this process to one thread."""
    saved = dict(os.environ)
    try:
        return LocalCluster(**kwargs)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _workers(client: Client) -> dict[str, Any]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        raise ValueError(
            "the Dask cluster has no workers: start some (or wait for them, "
            "client.wait_for_workers(n)) before fitting"
        )
    return workers


def _in_worker() -> bool:
    try:
        get_worker()
    except ValueError:
        return False
    return True


# -- the data -----------------------------------------------------------------------


def _is_frame(a: Any) -> bool:
    return hasattr(a, "to_dask_array") and hasattr(a, "npartitions")


def _check_numeric(name: str, a: Any) -> None:
    """A TypeError naming the non-numeric columns (dask DataFrame) or dtype."""
    if hasattr(a, "dtypes") and not hasattr(a, "dtype"):  # a DataFrame
        bad = [str(c) for c, t in a.dtypes.items() if getattr(t, "kind", "O") not in "biuf"]
        if bad:
            raise TypeError(f"{name} has non-numeric column(s) {bad}: encode them as numbers first")
        return
    kind = getattr(getattr(a, "dtype", None), "kind", "O")
    if kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")


def _to_array(a: Any, name: str, numeric: bool) -> Any:
    """A dask array with known row chunks (a DataFrame or Series converted lazily)."""
    if numeric:
        _check_numeric(name, a)
    if _is_frame(a):
        return a.to_dask_array(lengths=True)
    if isinstance(a, da.Array) and any(math.isnan(c) for c in a.chunks[0]):
        a = a.compute_chunk_sizes()
    return a


def _scatter(client: Client, arrays: list[np.ndarray | None]) -> list[Any]:
    """In-memory arrays as dask arrays of one partition per worker, the same rows of
    each array scattered to the same worker."""
    addresses = sorted(_workers(client))
    n = arrays[0].shape[0]
    bounds = np.linspace(0, n, min(len(addresses), max(n, 1)) + 1).astype(int)
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        parts = []
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            future = client.scatter(a[lo:hi], workers=[addresses[i]], hash=False)
            parts.append(da.from_delayed(future, (hi - lo, *a.shape[1:]), dtype=a.dtype))
        out.append(da.concatenate(parts))
    return out


def _prepare(client: Client, X: Any, y: Any, sw: Any, classifier: bool) -> tuple:
    """(X, y, sw) as dask arrays with the same row chunks, X 2-D in one column
    chunk; plus X's feature names (a DataFrame's columns) or None."""
    names = None
    if hasattr(X, "columns"):  # a dask or pandas DataFrame
        columns = list(X.columns)
        if all(isinstance(c, str) for c in columns):
            names = np.asarray(columns, dtype=object)
    given = [a for a in (X, y, sw) if a is not None]
    lazy = [_is_frame(a) or isinstance(a, da.Array) for a in given]
    if any(lazy) and not all(lazy):
        raise TypeError(
            "X, y and sample_weight must all be dask collections, or all in memory "
            "(NumPy arrays are scattered to the workers)"
        )
    if all(lazy):
        xs = _to_array(X, "X", numeric=True)
        ys = _to_array(y, "y", numeric=not classifier)
        ws = None if sw is None else _to_array(sw, "sample_weight", numeric=True)
    else:
        for name, a in zip(("X", "y", "sample_weight"), (X, y, sw), strict=True):
            if a is not None and (name != "y" or not classifier):
                _check_numeric(name, a if hasattr(a, "dtypes") else np.asarray(a))
        memory = [None if a is None else np.asarray(a) for a in (X, y, sw)]
        if memory[0].ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {memory[0].shape}")
        if memory[0].shape[0] == 0:
            raise ValueError("X has no rows")
        for name, m in (("y", memory[1]), ("sample_weight", memory[2])):
            if m is not None and m.shape[0] != memory[0].shape[0]:
                raise ValueError(f"X has {memory[0].shape[0]} rows but {name} has {m.shape[0]}")
        xs, ys, ws = _scatter(client, memory)
    if xs.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {xs.shape}")
    if xs.shape[0] == 0:
        raise ValueError("X has no rows")
    if len(xs.chunks[1]) > 1:
        xs = xs.rechunk({1: -1})
    if ys.ndim == 2 and len(ys.chunks[1]) > 1:
        ys = ys.rechunk({1: -1})
    for name, a in (("y", ys), ("sample_weight", ws)):
        if a is None:
            continue
        if a.shape[0] != xs.shape[0]:
            raise ValueError(f"X has {xs.shape[0]} rows but {name} has {a.shape[0]}")
        if a.chunks[0] != xs.chunks[0]:
            raise ValueError(
                f"X and {name} are partitioned differently: X's partitions have "
                f"{list(xs.chunks[0])} rows, {name}'s {list(a.chunks[0])}; partition them "
                f"alike ({name}.rechunk(X.chunks[0]), or one DataFrame's columns)"
            )
    if ws is not None and ws.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got shape {ws.shape}")
    return xs, ys, ws, names


def _class_weighted(est: Any, client: Client, y: Any, sw: Any) -> Any:
    """``sample_weight`` times each sample's weight from ``est.class_weight``, as the
    local fit computes it: 'balanced' from the classes' (weighted) counts, counted on
    each partition and summed here in partition order (only the counts travel)."""
    classes = est.classes_

    def counts(labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(
            np.searchsorted(classes, labels), weights=weights, minlength=classes.size
        )

    labels = y.to_delayed().ravel()
    weights = [None] * len(labels) if sw is None else sw.to_delayed().ravel()
    per_part = [dask.delayed(counts)(a, w) for a, w in zip(labels, weights, strict=True)]
    total = np.sum(client.gather(client.compute(per_part)), axis=0)
    # y = the classes, weighed by their counts: compute_class_weight's 'balanced'
    # weights of the whole y (sum of counts / (n_classes * count)).
    per_class = est._class_sample_weight(classes, total, incremental=False)

    def weigh(labels: np.ndarray) -> np.ndarray:
        return per_class[np.searchsorted(classes, labels)]

    factor = y.map_blocks(weigh, dtype=np.float64)
    if sw is None:
        return factor
    # A sample of weight 0 stays 0 (its class's 'balanced' weight may be infinite).
    return da.where(sw == 0, 0.0, sw * factor)


def _partition_futures(client: Client, arrays: list[Any]) -> list[list[Any]]:
    """Persist the arrays; the futures of each one's row partitions, in order."""
    from distributed import futures_of

    persisted = client.persist([a for a in arrays if a is not None])
    out = []
    for a in persisted:
        futures = {f.key: f for f in futures_of(a)}
        out.append([futures[k if a.ndim == 1 else k[0]] for k in a.__dask_keys__()])
    return out


# -- the workers' side -----------------------------------------------------------


class _Spec:
    """What a group's block needs to know about the fit (small; pickled once)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class _Block:
    """One group's rows, its buffers and its row orders; lives in a worker's memory.

    Built once per fit by :func:`_make_block` and kept as a Dask future, so
    every round finds it where it is (a copy of it or a recomputation after a
    lost worker behaves the same: everything here is either read-only or a
    cache that is rebuilt from the fit's start when it does not match).
    """

    def __init__(self, spec: _Spec, parts: list[tuple]) -> None:
        self.spec = spec
        dtype = spec.dtype
        xs, ys, ws = [], [], []
        for index, x, y, w in parts:
            x = _checked(f"X partition {index}", x, dtype)
            if spec.binarizer is not None:
                y = np.asarray(y)
                if y.ndim == 2 and y.shape[1] == 1:
                    y = y.ravel()
                if y.ndim != 1:
                    raise ValueError(f"y partition {index} must be 1-D, got shape {y.shape}")
                labels = y
                unknown = np.setdiff1d(np.unique(labels), spec.binarizer.classes_)
                if unknown.size:
                    raise ValueError(f"y partition {index} has unknown classes {unknown}")
                y = spec.binarizer.transform(labels).astype(bool)  # converted after the split
            else:
                y = _checked(f"y partition {index}", y, dtype)
            if y.ndim == 1:
                y = y.reshape(-1, 1)
            xs.append(x)
            ys.append(y)
            if w is not None:
                ws.append(_checked(f"sample_weight partition {index}", w, dtype))
        x = np.ascontiguousarray(np.concatenate(xs)) if len(xs) > 1 else xs[0]
        y = np.ascontiguousarray(np.concatenate(ys)) if len(ys) > 1 else ys[0]
        sw = (np.concatenate(ws) if len(ws) > 1 else ws[0]) if ws else None
        self.val = None
        self.rng_state = spec.rng
        if spec.early_stopping:
            self._split(x, y, sw)
        else:
            self.x, self.y = x, np.ascontiguousarray(y, dtype=dtype)
            self.sw = np.empty(0, dtype) if sw is None else np.ascontiguousarray(sw)
        self.n = self.x.shape[0]
        self.weight = float(self.sw.sum(dtype=np.float64)) if self.sw.size else float(self.n)
        self.gradient: engine.Gradient | None = None
        self.trainer: engine.Trainer | None = None
        self.drawn = 0  # row orders drawn since the fit's start
        self.order: np.ndarray | None = None
        self.kernel_seconds = 0.0  # inside the compiled calls (bench/dask_scaling.py)

    def _split(self, x: np.ndarray, y: np.ndarray, sw: np.ndarray | None) -> None:
        """The estimator's early-stopping split of this group's rows (its own code,
        on this group's random state)."""
        from fastbp.sklearn._solvers import _split_validation

        scorer = self.spec.scorer
        rng = _random_state(self.rng_state)
        scorer._random_state = rng
        X_train, y_train, sw_train, X_val, y_val, sw_val = _split_validation(scorer, x, y, sw)
        self.rng_state = rng.get_state()
        dtype = self.spec.dtype
        self.x = np.ascontiguousarray(X_train, dtype=dtype)
        self.y = np.ascontiguousarray(y_train, dtype=dtype)
        self.sw = np.empty(0, dtype) if sw_train is None else np.ascontiguousarray(sw_train)
        self.val = (np.ascontiguousarray(X_val, dtype=dtype), y_val, sw_val)

    def summary(self) -> tuple[int, float, int]:
        return self.n, self.weight, 0 if self.val is None else self.val[0].shape[0]

    # -- exact rounds

    def loss_grad(self, params: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
        spec = self.spec
        if self.gradient is None or (
            self.gradient.objective is not None and (self.gradient.objective.alpha != alpha)
        ):
            self.gradient = engine.Gradient(
                spec.layout, self.x, self.y, self.sw, alpha, spec.n_threads
            )
        with compute_threads(spec.layout.sizes, self.n, spec.n_threads):
            t = time.perf_counter()
            value, grads = self.gradient(params)
            self.kernel_seconds += time.perf_counter() - t
        return float(value), grads.copy()

    # -- local SGD rounds

    def _orders(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s row order (0 from the fit's start), as the local front
        end draws it: scikit-learn's composed permutations, or Network's fresh ones."""
        if self.drawn > epoch + 1 or (self.order is None and self.drawn):
            self.drawn = 0
        if self.drawn == 0:
            self.rng = _random_state(self.rng_state)
            self.order = np.arange(self.n, dtype=np.int64)
        while self.drawn < epoch + 1:
            if self.spec.compose:  # MLP*: sample_idx = sample_idx[shuffled arange]
                perm = np.arange(self.n)
                self.rng.shuffle(perm)
                self.order = self.order[perm]
            else:  # Network: a new permutation each epoch
                self.order = np.arange(self.n, dtype=np.int64)
                self.rng.shuffle(self.order)
            self.drawn += 1
        return self.order

    def steps(
        self,
        params: np.ndarray,
        opt_state: tuple,
        epoch: int,
        row: int,
        count: int,
        loss_sum: float,
    ) -> tuple:
        """``count`` steps from ``row`` of epoch ``epoch`` (all inside it); returns
        (params, optimizer state, the epoch's running loss sum, next row)."""
        spec = self.spec
        if self.trainer is None:
            opt = copy.deepcopy(spec.optimizer)  # its state: shipped each round
            opt.state = np.empty((opt.n_state, spec.layout.n_params), spec.dtype)
            self.trainer = engine.Trainer(
                spec.layout,
                np.empty(spec.layout.n_params, spec.dtype),
                self.x,
                self.y,
                self.sw,
                min(spec.batch, self.n),
                opt,
                spec.alpha,
                shuffle=_no_draw if spec.shuffle else None,
                n_threads=spec.n_threads,
            )
        trainer = self.trainer
        np.copyto(trainer.params, params)
        trainer.opt.set_state(opt_state)
        orders = self._orders(epoch).reshape(1, -1) if spec.shuffle else trainer.no_order
        data = _loop.Data(
            self.x, self.y, self.sw, orders, trainer.batch, trainer.gather,
            trainer.xb, trainer.yb, trainer.swb,
        )  # fmt: skip
        # The epoch's running sum continues in the compiled loop: the same additions,
        # in the same order, as the local fit's (one group: its loss bit for bit).
        loss_sums = np.array([loss_sum])
        with compute_threads(spec.layout.sizes, trainer.batch, spec.n_threads):
            # (the driver's one-chunk call; Trainer.steps would restart the sum)
            epoch_end, next_row, seconds = trainer._chunk(data, 0, row, count, loss_sums)
        self.kernel_seconds += seconds
        if epoch_end:
            next_row = self.n
        elif next_row < row + count * trainer.batch:  # fused SGD stopped: non-finite loss
            loss_sums[0] = np.nan
        return trainer.params.copy(), trainer.opt.get_state(), float(loss_sums[0]), next_row

    # -- validation

    def validation(self, params: np.ndarray) -> tuple:
        """(the estimator's score on this group's validation rows, additive stats)."""
        scorer = self.spec.scorer
        x_val, y_val, sw_val = self.val
        outputs = engine.forward(self.spec.layout, params, x_val, n_threads=self.spec.n_threads)
        y_pred = scorer._output_to_prediction(outputs)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan, None
        score = scorer._score_function(y_val, y_pred, sample_weight=sw_val)
        w = np.ones(len(y_val)) if sw_val is None else np.asarray(sw_val, dtype=np.float64)
        if self.spec.binarizer is not None:
            correct = np.asarray(y_pred == y_val, dtype=np.float64)
            return score, np.array([w @ correct, w.sum()])
        yv = np.asarray(y_val, dtype=np.float64).reshape(len(w), -1)
        yp = np.asarray(y_pred, dtype=np.float64).reshape(len(w), -1)
        return score, np.stack([w @ (yv - yp) ** 2, np.full(yv.shape[1], w.sum()), w @ yv,
                                w @ yv**2])  # fmt: skip


def _stateless(opt: engine.Optimizer | None) -> engine.Optimizer | None:
    """A copy of ``opt`` without its state (the blocks get it each round)."""
    if opt is None:
        return None
    template = copy.copy(opt)
    template.state = opt.state[:, :0].copy()
    return template


def _no_draw(orders: np.ndarray) -> None:
    """The trainer's shuffle hook, never called: _Block.steps gives the orders."""
    raise AssertionError("row orders come from _Block._orders")


def _checked(name: str, a: Any, dtype: np.dtype) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(a, dtype=dtype)
    if not all_finite(out):
        raise ValueError(f"{name} contains NaN or infinity (in {np.dtype(dtype).name})")
    return out


def _random_state(state: Any) -> Any:
    """A fresh generator in ``state`` (a RandomState's or a Generator's)."""
    if isinstance(state, dict):  # a Generator's bit generator state
        bits = getattr(np.random, state["bit_generator"])()
        bits.state = state
        return np.random.Generator(bits)
    rng = np.random.RandomState()
    rng.set_state(state)
    return rng


def _group_state(state: Any, group: int) -> Any:
    """Group ``group``'s random state: the front end's own for group 0 (so one group
    draws what the local fit draws), a jumped-ahead stream for the others."""
    if group == 0:
        return state
    if isinstance(state, dict):
        bits = getattr(np.random, state["bit_generator"])()
        bits.state = state
        return bits.jumped(group).state
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": state[1], "pos": state[2]}}
    rng = np.random.RandomState(bits.jumped(group))
    return rng.get_state()


def _make_block(spec: _Spec, indices: list[int], *arrays: Any) -> _Block:
    k = len(indices)
    xs, ys = arrays[:k], arrays[k : 2 * k]
    ws = arrays[2 * k :] or [None] * k
    return _Block(spec, list(zip(indices, xs, ys, ws, strict=True)))


def _summary(block: _Block) -> tuple:
    return block.summary()


def _loss_grad(block: _Block, params: np.ndarray, alpha: float) -> tuple:
    return block.loss_grad(params, alpha)


def _steps(block: _Block, *args: Any) -> tuple:
    return block.steps(*args)


def _validation(block: _Block, params: np.ndarray) -> tuple:
    return block.validation(params)


# -- the client's side -------------------------------------------------------------


class _Cluster:
    """One fit's groups: a block future per worker holding partitions, and the rounds."""

    def __init__(self, client: Client, arrays: list[Any], spec: _Spec) -> None:
        self.client = client
        self.spec = spec
        parts = _partition_futures(client, arrays)
        x_parts = parts[0]
        # Where a partition is known only once it is computed: group them after.
        wait([f for p in parts for f in p])
        who_has = client.who_has(x_parts)
        by_worker: dict[str, list[int]] = {}
        for i, f in enumerate(x_parts):
            holders = sorted(who_has.get(f.key, ())) or ["?"]
            by_worker.setdefault(holders[0], []).append(i)
        self.groups = [by_worker[w] for w in sorted(by_worker)]
        tag = uuid.uuid4().hex[:12]
        self.blocks = []
        for g, indices in enumerate(self.groups):
            group_spec = _Spec(**{**spec.__dict__, "rng": _group_state(spec.rng, g)})
            args = [p[i] for p in parts for i in indices]
            self.blocks.append(
                client.submit(
                    _make_block, group_spec, indices, *args, key=f"fastbp-block-{g}-{tag}"
                )
            )
        summaries = client.gather([client.submit(_summary, b, pure=False) for b in self.blocks])
        self.rows = np.array([s[0] for s in summaries], dtype=np.int64)
        self.weights = np.array([s[1] for s in summaries])
        self.val_rows = int(sum(s[2] for s in summaries))
        if self.rows.min() == 0:
            raise ValueError("a worker's partitions hold no training rows: repartition X")
        self.total_weight = math.fsum(self.weights)

    def _params(self, params: np.ndarray) -> Any:
        """``params`` (or optimizer state) as a round's task argument."""
        if params.nbytes > INLINE_PARAMS_BYTES:
            return self.client.scatter(params, broadcast=True, hash=False)
        return params

    def loss_grad(self, params: np.ndarray, alpha: float = 0.0) -> tuple[float, np.ndarray]:
        """J and dJ/dparams (float64) of all rows: the groups' sums, weighted."""
        shares = self.weights / self.total_weight
        p = self._params(params)
        futures = [
            self.client.submit(_loss_grad, b, p, alpha * s, pure=False)
            for b, s in zip(self.blocks, shares, strict=True)
        ]
        value, grads = 0.0, np.zeros(params.size)
        for (v, g), s in zip(self.client.gather(futures), shares, strict=True):
            value += s * v
            grads += s * g.astype(np.float64)
        return value, grads

    def epoch(
        self,
        params: np.ndarray,
        opt: engine.Optimizer,
        epoch: int,
        sync_every: int | None,
        batch: int,
    ) -> float:
        """One epoch of local SGD (every group one pass over its rows) in rounds of
        ``sync_every`` steps; ``params`` and ``opt`` are updated in place. Returns
        the epoch's mean training loss."""
        rows_left = self.rows.copy()
        row = np.zeros(len(self.blocks), dtype=np.int64)
        loss_sums = np.zeros(len(self.blocks))
        batches = np.minimum(batch, self.rows)
        while (rows_left > 0).any():
            p = self._params(params)
            state, t, lr = opt.get_state()
            state = (self._params(state), t, lr)
            active, futures = [], []
            for g, b in enumerate(self.blocks):
                if rows_left[g] == 0:
                    continue
                steps = -(-int(rows_left[g]) // int(batches[g]))
                if sync_every is not None:
                    steps = min(steps, sync_every)
                active.append(g)
                futures.append(
                    self.client.submit(
                        _steps,
                        b,
                        p,
                        state,
                        epoch,
                        int(row[g]),
                        steps,
                        float(loss_sums[g]),
                        pure=False,
                    )
                )
            results = self.client.gather(futures)
            used = np.array(
                [min(r[3], self.rows[g]) - row[g] for g, r in zip(active, results, strict=True)]
            )
            for g, r in zip(active, results, strict=True):
                if not math.isfinite(r[2]):
                    return math.nan
                loss_sums[g] = r[2]
                rows_left[g] = self.rows[g] - r[3]
                row[g] = r[3]
            _average(params, opt, [r[0] for r in results], [r[1] for r in results], used)
        return math.fsum(loss_sums) / float(self.rows.sum())

    def validation_score(self, params: np.ndarray, classifier: bool) -> float:
        futures = [self.client.submit(_validation, b, params, pure=False) for b in self.blocks]
        results = self.client.gather(futures)
        if len(results) == 1:  # the estimator's own score: the local fit's
            return results[0][0]
        if any(stats is None for _, stats in results):
            return np.nan
        total = sum(stats for _, stats in results)
        if classifier:
            return float(total[0] / total[1])
        ss_res, w, wy, wy2 = total
        ss_tot = wy2 - wy**2 / w
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(r2))

    def close(self) -> None:
        self.client.cancel(self.blocks)
        self.blocks = []


def _average(
    params: np.ndarray,
    opt: engine.Optimizer,
    new_params: list[np.ndarray],
    states: list[tuple],
    rows: np.ndarray,
) -> None:
    """``params`` and ``opt`` become the groups' results averaged, weighted by the
    rows each used (one group: its result as it is)."""
    latest = max(range(len(states)), key=lambda i: states[i][1])  # Adam's largest t
    if len(new_params) == 1:
        np.copyto(params, new_params[0])
        opt.set_state(states[0])
        return
    shares = rows / rows.sum()
    np.copyto(
        params, sum(s * p.astype(np.float64) for s, p in zip(shares, new_params, strict=True))
    )
    state = sum(s * st[0].astype(np.float64) for s, st in zip(shares, states, strict=True))
    opt.set_state((state, states[latest][1], states[latest][2]))


# -- checkpoints -------------------------------------------------------------------


def _checkpoint_key(layout: engine.Layout, dtype: np.dtype, solver: str) -> np.ndarray:
    return np.array(
        [*layout.sizes.tolist(), np.dtype(dtype).itemsize, ["lbfgs", "sgd", "adam", "gd"].index(
            solver)], dtype=np.int64,
    )  # fmt: skip


def _read_checkpoint(path: Any, key: np.ndarray) -> dict[str, np.ndarray] | None:
    if path is None or not Path(path).exists():
        return None
    saved = read_npz(path, "fastbp checkpoint")
    if "key" not in saved or not np.array_equal(saved["key"], key):
        raise ValueError(
            f"checkpoint {path} belongs to another fit (network, dtype or solver differ): "
            "delete it or give another path"
        )
    return saved


# -- the estimators ----------------------------------------------------------------


class _DaskMixin:
    """What both Dask estimators add to the local ones."""

    _local_class: ClassVar[type]
    _dask_parameter_constraints: ClassVar[dict] = {
        "client": "no_validation",
        "sync_every": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "checkpoint": [None, str, os.PathLike],
    }

    def __getstate__(self) -> dict:
        # A client does not pickle (dask-ml and joblib copy estimators into tasks).
        state = dict(self.__dict__)
        state["client"] = None
        state.pop("client_", None)
        return state

    def __sklearn_clone__(self) -> Any:
        # scikit-learn's clone deep-copies every parameter, and a client does not copy:
        # the clone shares it (a client is a handle on the cluster).
        from sklearn.base import _clone_parametrized

        client = self.client
        try:
            self.client = None
            new = _clone_parametrized(self)
        finally:
            self.client = client
        new.client = client
        return new

    def to_local(self) -> Any:
        """A fitted local estimator (``fastbp.MLPClassifier``/``MLPRegressor``) with
        the same parameters and a copy of the weights and fitted attributes."""
        params = {k: v for k, v in self.get_params().items() if k in _local_params(self)}
        local = self._local_class(**params)
        for name, value in self.__dict__.items():
            if name not in self.get_params() and name != "client_":
                local.__dict__[name] = copy.deepcopy(value)
        return local

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit on dask arrays or DataFrames (or NumPy arrays, scattered to the workers).

        Parameters
        ----------
        X : dask array or DataFrame (n_samples, n_features), or array-like
            Numeric; float32 trains in float32, anything else in float64.
        y : dask array or Series (n_samples,) or (n_samples, n_outputs)
            Partitioned as X (the same row chunks).
        sample_weight : dask array (n_samples,), optional
            Partitioned as X.

        Returns
        -------
        self
        """
        self._validate_params()
        if _in_worker() and not (_is_frame(X) or isinstance(X, da.Array)):
            # In-memory data inside a Dask task (a dask-ml search, say): the local fit.
            return self._local_class.fit(self, X, y, sample_weight)
        hidden = check_hidden_layer_sizes(self.hidden_layer_sizes)
        if check_rates(self.dropout, len(hidden)).any():
            # The workers' steps would need the masks' generator state averaged too.
            raise ValueError(
                "dropout is not available on a Dask cluster yet: fit with dropout=0, or "
                "fit in memory (fastbp.MLPClassifier/MLPRegressor)."
            )
        with (
            _client_for(self.client) as (client, owned),
            client.as_current(),
            Transaction(self) as txn,
        ):
            _workers(client)
            self._fit_dask(client, X, y, sample_weight, txn)
            self.client_ = None if owned else client  # a closed client is no use
        return self

    def _fit_dask(self, client: Client, X: Any, y: Any, sw: Any, txn: Transaction) -> None:
        classifier = isinstance(self, MLPClassifier)
        xs, ys, ws, names = _prepare(client, X, y, sw, classifier)
        hidden = check_hidden_layer_sizes(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or not self.warm_start
        dtype = np.dtype(np.float32) if xs.dtype == np.float32 else np.dtype(np.float64)
        n_features = xs.shape[1]
        if not first_pass and n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        binarizer = None
        if classifier:
            if ys.ndim != 1 and not (ys.ndim == 2 and ys.shape[1] == 1):
                raise ValueError("DaskMLPClassifier takes 1-D class labels y (no multilabel)")
            per_part = [dask.delayed(np.unique)(b) for b in ys.ravel().to_delayed()]
            classes = np.unique(np.concatenate(client.gather(client.compute(per_part))))
            if first_pass:
                from sklearn.preprocessing import LabelBinarizer

                self._label_binarizer = LabelBinarizer().fit(classes)
                self.classes_ = self._label_binarizer.classes_
            elif set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                )
            binarizer = self._label_binarizer
            n_outputs = binarizer.transform(classes[:1]).shape[1]
            if self.class_weight is not None:
                ws = _class_weighted(self, client, ys.ravel(), ws)
        else:
            n_outputs = 1 if ys.ndim == 1 else ys.shape[1]
        if first_pass:
            self.n_features_in_ = n_features
            if names is not None:
                self.feature_names_in_ = names
            else:
                self.__dict__.pop("feature_names_in_", None)
        layer_units = [n_features, *hidden, n_outputs]
        from sklearn.utils import check_random_state

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(np.empty((0, n_outputs)), layer_units, dtype)
        else:
            check_architecture(self, layer_units)
        layout, params = self._engine_state()
        stochastic = self.solver in STOCHASTIC_SOLVERS
        key = _checkpoint_key(layout, params.dtype, self.solver)
        saved = _read_checkpoint(self.checkpoint, key)
        opt = None
        if stochastic:
            from fastbp.engine import optimizers

            opt = optimizers.from_estimator(self.solver, self, layout.n_params, params.dtype)
            self._optimizer = opt
            self._continue_stochastic()
        scorer = None
        if stochastic and self.early_stopping:
            scorer = copy.copy(self)
            for name in ("coefs_", "intercepts_", "_best_coefs", "_best_intercepts", "client"):
                scorer.__dict__.pop(name, None)
            scorer.__dict__.pop("_optimizer", None)
        batch = 200 if self.batch_size == "auto" else max(int(self.batch_size), 1)
        spec = _Spec(
            dtype=params.dtype,
            layout=layout,
            binarizer=binarizer,
            early_stopping=bool(stochastic and self.early_stopping),
            scorer=scorer,
            rng=self._random_state.get_state(),
            compose=True,
            shuffle=bool(self.shuffle),
            batch=batch,
            alpha=float(self.alpha),
            optimizer=_stateless(opt),
            n_threads=self.n_threads,
        )
        cluster = _Cluster(client, [xs, ys, ws], spec)
        try:
            if self.early_stopping and stochastic and cluster.val_rows < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            if stochastic:
                diverged = self._dask_stochastic(cluster, layout, params, opt, saved, txn)
            else:
                if saved is not None:
                    params = saved["params"].astype(params.dtype)

                def write(x_k: np.ndarray) -> None:
                    if self.checkpoint is not None:
                        save_npz(self.checkpoint, {"key": key, "params": x_k})

                alpha = float(self.alpha)
                diverged = minimize_lbfgs(
                    self, layout, params, lambda p: cluster.loss_grad(p, alpha), txn,
                    callback=write,
                )  # fmt: skip
        finally:
            cluster.close()
        if diverged or not all(all_finite(w) for w in [*self.coefs_, *self.intercepts_]):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )

    def _dask_stochastic(
        self,
        cluster: _Cluster,
        layout: engine.Layout,
        params: np.ndarray,
        opt: engine.Optimizer,
        saved: dict | None,
        txn: Transaction,
    ) -> bool:
        n_samples = int(cluster.rows.sum())
        if self.batch_size != "auto" and self.batch_size > n_samples:
            import warnings

            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be "
                "clipped",
                stacklevel=3,
            )
        batch = min(200, n_samples) if self.batch_size == "auto" else self.batch_size
        start = 0
        key = _checkpoint_key(layout, params.dtype, self.solver)
        txn.commit()
        opt.astype(params.dtype)
        if saved is not None:
            start = self._restore_checkpoint(saved, layout, params, opt)
        classifier = isinstance(self, MLPClassifier)
        sync_every = self.sync_every

        def runs() -> Iterator[tuple[int, np.ndarray]]:
            for epoch in range(start, self.max_iter):
                loss = cluster.epoch(params, opt, epoch, sync_every, batch)
                try:
                    yield 1, np.array([loss])
                finally:  # after the epoch's bookkeeping, or when the fit stops
                    if self.checkpoint is not None:
                        save_npz(self.checkpoint, self._checkpoint_arrays(key, layout, params))

        def validation_score() -> float:
            return cluster.validation_score(params, classifier)

        return run_epochs(
            self, layout, params, opt, runs(), n_samples,
            validation_score if self.early_stopping else None, False, n_iter=start,
        )  # fmt: skip

    def _checkpoint_arrays(self, key: np.ndarray, layout: engine.Layout, params: np.ndarray):
        opt = self._optimizer
        scores = self.validation_scores_
        best = layout.pack(self._best_coefs, self._best_intercepts, params.dtype)
        return {
            "key": key,
            "params": params,
            "opt_state": opt.state,
            "opt_scalars": np.array([opt.t, opt.learning_rate]),
            "bookkeeping": np.array(
                [
                    self.n_iter_,
                    self.t_,
                    self._no_improvement_count,
                    np.nan if self.best_loss_ is None else self.best_loss_,
                    np.nan if self.best_validation_score_ is None else self.best_validation_score_,
                ]
            ),
            "loss_curve": np.array(self.loss_curve_, dtype=np.float64),
            "validation_scores": np.array([] if scores is None else scores, dtype=np.float64),
            "best_params": best,
        }

    def _restore_checkpoint(
        self, saved: dict, layout: engine.Layout, params: np.ndarray, opt: engine.Optimizer
    ) -> int:
        """Put the saved fit back; returns the epochs it had run."""
        np.copyto(params, saved["params"])
        t, lr = saved["opt_scalars"]
        opt.set_state((saved["opt_state"], int(t), float(lr)))
        n_iter, t_, no_improve, best_loss, best_score = saved["bookkeeping"]
        self.t_ = int(t_)
        self._no_improvement_count = int(no_improve)
        self.loss_curve_ = saved["loss_curve"].tolist()
        if self.early_stopping:
            self.validation_scores_ = saved["validation_scores"].tolist()
            self.best_validation_score_ = float(best_score)
        else:
            self.best_loss_ = float(best_loss)
        best = saved["best_params"].astype(params.dtype)
        self._best_coefs, self._best_intercepts = (
            [a.copy() for a in v] for v in layout.views(best)
        )
        self._set_params(layout, params)
        return int(n_iter)


def _local_params(est: Any) -> set[str]:
    return set(inspect.signature(est._local_class.__init__).parameters) - {"self"}


def _dask_init(local: type) -> Any:
    """An ``__init__`` taking the local estimator's parameters plus the Dask ones, with
    the combined signature (scikit-learn's get_params and clone read it)."""

    def __init__(
        self: Any,
        *args: Any,
        client: Any = None,
        sync_every: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        local.__init__(self, *args, **kwargs)
        self.client = client
        self.sync_every = sync_every
        self.checkpoint = checkpoint

    base = inspect.signature(local.__init__)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
        for name in ("client", "sync_every", "checkpoint")
    ]
    __init__.__signature__ = base.replace(parameters=[*base.parameters.values(), *extra])
    return __init__


class DaskMLPClassifier(_DaskMixin, MLPClassifier):
    """:class:`fastbp.MLPClassifier` trained on a Dask cluster.

    Parameters
    ----------
    client : dask.distributed.Client or None, default=None
        None: Dask's current client, else a LocalCluster started for the fit.
    sync_every : int >= 1 or None, default=None
        Local SGD ('sgd', 'adam'): steps each worker runs between two averagings;
        None: one pass over its rows (an epoch).
    checkpoint : path or None, default=None
        Write parameters, optimizer state and bookkeeping there (atomically) after
        every epoch (every L-BFGS iteration); a fit finding the file continues from it.
    (the others)
        As :class:`fastbp.MLPClassifier`.

    Attributes
    ----------
    client_ : Client or None
        The client of the fit (None when it started its own cluster, closed since).
    (the others)
        As :class:`fastbp.MLPClassifier`.
    """

    _local_class = MLPClassifier
    _parameter_constraints: ClassVar[dict] = {
        **MLPClassifier._parameter_constraints,
        **_DaskMixin._dask_parameter_constraints,
    }
    __init__ = _dask_init(MLPClassifier)

    def predict(self, X: Any) -> Any:
        """Class labels, lazily: a dask array (n_samples,), one task per partition."""
        return _map_rows(self, X, "predict")

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, lazily: a dask array (n_samples, n_classes)."""
        return _map_rows(self, X, "predict_proba")

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against y (weighted by sample_weight)."""
        correct = (_map_rows(self, X, "predict") == _rows_like(y)).astype(np.float64)
        if sample_weight is None:
            return float(correct.mean().compute())
        w = _rows_like(sample_weight).astype(np.float64)
        num, den = dask.compute((correct * w).sum(), w.sum())
        return float(num / den)


class DaskMLPRegressor(_DaskMixin, MLPRegressor):
    """:class:`fastbp.MLPRegressor` trained on a Dask cluster.

    Parameters and attributes: those of :class:`fastbp.MLPRegressor`, plus
    ``client``, ``sync_every``, ``checkpoint`` and ``client_`` as in
    :class:`DaskMLPClassifier`.
    """

    _local_class = MLPRegressor
    _parameter_constraints: ClassVar[dict] = {
        **MLPRegressor._parameter_constraints,
        **_DaskMixin._dask_parameter_constraints,
    }
    __init__ = _dask_init(MLPRegressor)

    def predict(self, X: Any) -> Any:
        """Predictions, lazily: a dask array (n_samples,) or (n_samples, n_outputs)."""
        return _map_rows(self, X, "predict")

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of ``predict(X)`` against y, outputs averaged uniformly (as scikit-learn)."""
        pred = _map_rows(self, X, "predict").astype(np.float64)
        y = _rows_like(y).astype(np.float64)
        if pred.ndim == 1:
            pred, y = pred[:, None], y.reshape(-1, 1)
        w = (
            da.ones(y.shape[0], chunks=y.chunks[0])
            if sample_weight is None
            else _rows_like(sample_weight).astype(np.float64)
        )
        wc = w[:, None]
        ss_res, sw, swy, swy2 = dask.compute(
            (wc * (y - pred) ** 2).sum(axis=0), w.sum(), (wc * y).sum(axis=0),
            (wc * y**2).sum(axis=0),
        )  # fmt: skip
        ss_tot = swy2 - swy**2 / sw
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(r2))


def _rows_like(a: Any) -> Any:
    if _is_frame(a):
        return a.to_dask_array(lengths=True)
    return a if isinstance(a, da.Array) else da.from_array(np.asarray(a))


def _predict_block(block: np.ndarray, model: Any, method: str) -> np.ndarray:
    return getattr(model, method)(block)


def _map_rows(est: Any, X: Any, method: str) -> Any:
    """``method`` of the local model applied to each row partition of X, lazily."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    if _is_frame(X):
        X = X.to_dask_array()
    elif not isinstance(X, da.Array):
        X = da.from_array(np.asarray(X))
    if X.ndim != 2 or X.shape[1] != est.n_features_in_:
        raise ValueError(f"X must have shape (n_samples, {est.n_features_in_}), got {X.shape}")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    model = est.to_local()
    model.__dict__.pop("feature_names_in_", None)  # blocks are arrays: no names
    classifier = isinstance(est, MLPClassifier)
    if method == "predict_proba":
        chunks = (X.chunks[0], (max(len(est.classes_), 2),))
        dtype = est.coefs_[0].dtype
        return X.map_blocks(_predict_block, model, method, chunks=chunks, dtype=dtype)
    dtype = est.classes_.dtype if classifier else est.coefs_[0].dtype
    if classifier or est.n_outputs_ == 1:
        return X.map_blocks(
            _predict_block, model, method, drop_axis=1, chunks=(X.chunks[0],), dtype=dtype
        )
    return X.map_blocks(
        _predict_block, model, method, chunks=(X.chunks[0], (est.n_outputs_,)), dtype=dtype
    )


# -- Network ----------------------------------------------------------------------


def train(
    network: Network,
    X: Any,
    Y: Any,
    *,
    epochs: int,
    lr: float,
    batch_size: int | None = None,
    shuffle: bool = False,
    sync_every: int | None = None,
    client: Any = None,
    callback: Any = None,
) -> History:
    """Train ``network`` in place on a Dask cluster; the :class:`History` of
    :meth:`fastbp.Network.fit`.

    Parameters
    ----------
    network : fastbp.Network
    X : dask array or DataFrame (n_samples, n_features), or array-like
    Y : dask array (n_samples, n_out) or (n_samples,), partitioned as X
    epochs : int >= 1
    lr : float > 0
    batch_size : int >= 1 or None
        None: full-batch gradient descent, exact (the gradient summed over the
        workers). An int: local SGD, each worker stepping on batches of its rows.
    shuffle : bool
        Each worker permutes its rows every epoch (worker 0 with the network's
        generator: one worker draws what Network.fit draws).
    sync_every : int >= 1 or None
        Steps between averagings; None: one pass over each worker's rows.
    client : dask.distributed.Client or None
    callback : callable(epoch, loss), optional
        As in :meth:`fastbp.Network.fit`: after each epoch; True stops training.

    Returns
    -------
    History

    Raises
    ------
    DivergenceError
        A non-finite loss or weights: the network keeps the last finite weights.
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a fastbp.Network, got {type(network).__name__}")
    t0 = time.perf_counter()
    network._sync()
    epochs = check_int("epochs", epochs)
    lr = check_positive_float("lr", lr)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size)
    if sync_every is not None:
        sync_every = check_int("sync_every", sync_every)
    shuffle = check_bool("shuffle", shuffle)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    layout, params, dtype = network._layout, network._params, network.dtype
    with _client_for(client) as (client, _), client.as_current():
        _workers(client)
        xs, ys, _, _ = _prepare(client, X, Y, None, classifier=False)
        if xs.shape[1] != layout.sizes[0]:
            raise ValueError(f"X must have {int(layout.sizes[0])} columns, got {xs.shape[1]}")
        n_out = 1 if ys.ndim == 1 else ys.shape[1]
        if n_out != layout.sizes[-1]:
            raise ValueError(f"Y must have {int(layout.sizes[-1])} columns, got {n_out}")
        opt = engine.FusedSGD(layout.n_params, dtype, lr)
        spec = _Spec(
            dtype=dtype,
            layout=layout,
            binarizer=None,
            early_stopping=False,
            scorer=None,
            rng=network._rng.bit_generator.state,
            compose=False,
            shuffle=shuffle and batch_size is not None,
            batch=batch_size or 1,
            alpha=0.0,
            optimizer=_stateless(opt),
            n_threads=None,
        )
        cluster = _Cluster(client, [xs, ys], spec)
        losses = np.empty(epochs)
        last_good = params.copy()
        try:
            for epoch in range(epochs):
                if batch_size is None:
                    loss, grads = cluster.loss_grad(params)
                    if math.isfinite(loss):
                        params -= (lr * grads).astype(dtype)
                else:
                    loss = cluster.epoch(params, opt, epoch, sync_every, batch_size)
                if not (math.isfinite(loss) and all_finite(params)):
                    np.copyto(params, last_good)
                    raise DivergenceError(
                        f"training diverged in epoch {epoch} (non-finite loss or weights; "
                        f"try a smaller lr than {lr}): the network keeps its last finite "
                        "weights",
                        History(losses[:epoch].copy(), time.perf_counter() - t0),
                    )
                losses[epoch] = loss
                np.copyto(last_good, params)
                answer = None if callback is None else callback(epoch, float(loss))
                if isinstance(answer, bool | np.bool_) and answer:
                    return History(losses[: epoch + 1].copy(), time.perf_counter() - t0)
        finally:
            cluster.close()
    return History(losses, time.perf_counter() - t0)
