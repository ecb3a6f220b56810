"""The trainer API: :class:`Network`, a sigmoid MLP trained by backpropagation."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastbp import _files, engine, kernels
from fastbp._progress import progress_bar as _progress_bar
from fastbp._validation import (
    FLOAT_DTYPES,
    all_finite,
    check_bool,
    check_data,
    check_dtype,
    check_int,
    check_positive_float,
    check_sizes,
    check_targets,
)
from fastbp.engine import sparse
from fastbp.engine.init import glorot_uniform

# Model files: version 2 records each layer's activation; version 1 files (all
# layers logistic) still load.
FORMAT_VERSION = 2
DEFAULT_ACTIVATION = "logistic"
# "No sample weights" for the compiled loop: an empty array of the data's dtype.
_NO_WEIGHTS = {dt: np.empty(0, dtype=dt) for dt in FLOAT_DTYPES}


def _each_epoch() -> int:
    """With a callback, each epoch ends a chunk (the callback runs between epochs)."""
    return 1


def _check_activation(activation: Any, n_layers: int) -> list[str]:
    """One registered activation name per layer (see :class:`Network`), else a
    TypeError or ValueError naming ``activation``."""
    known = sorted(kernels.ACTIVATIONS)
    if isinstance(activation, str):
        names = [activation] * (n_layers - 1) + [DEFAULT_ACTIVATION]
    elif isinstance(activation, list | tuple):
        names = list(activation)
        if len(names) != n_layers:
            raise ValueError(
                f"activation must be one name, or one per layer ({n_layers}, the output "
                f"layer's last), got {len(names)}"
            )
    else:
        raise TypeError(
            f"activation must be a name or a list of names, got {type(activation).__name__}"
        )
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"activation names must be str, got {type(name).__name__}")
        if name not in kernels.ACTIVATIONS:
            raise ValueError(f"activation must be one of {known}, got {name!r}")
    return names


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or weights.

    The network keeps the last finite weights it had, from a completed step.
    ``history`` holds the losses of the epochs completed before.
    """

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """What :meth:`Network.fit` did.

    Attributes
    ----------
    loss : ndarray of float64, shape (epochs,)
        Training loss J of each epoch: the mean over its batches of the batch's
        J before that batch's update, weighted by batch size (for a full batch,
        J at the start of the epoch).
    seconds : float
        Wall time of the fit, compilation included.
    """

    loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    seconds: float = 0.0


class Network:
    """A multilayer perceptron with sigmoid layers, trained on mean squared error.

    Each layer computes ``A = sigmoid(A_prev @ W + b)`` with samples as rows. The
    loss is ``J = (1/M) * sum_i ||a_i - y_i||^2`` over the M samples of a batch,
    minimised by (mini-batch) gradient descent ``theta -= lr * dJ/dtheta``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, inputs first: ``[64, 32, 10]`` is 64 inputs, one hidden
        layer of 32 units and 10 outputs.
    dtype : float32 or float64
        Precision of the weights and of all arithmetic. Data of another dtype is
        converted (a copy); data already in this dtype is used in place.
    seed : int or None
        Seed of the network's generator, ``numpy.random.default_rng(seed)``, used
        for the initial weights and then for shuffling.
    activation : str or sequence of str, default "logistic"
        A registered activation (``fastbp.kernels.ACTIVATIONS``: "logistic",
        "tanh", "relu", "identity") for every hidden layer, the output layer
        staying logistic; or one name per layer, the output layer's last. Each
        derivative is taken from the layer's stored output. Initial weights are
        uniform in ``±sqrt(f / (fan_in + fan_out))`` with f = 2 for logistic
        hidden layers (the blog's) and scikit-learn's f = 6 for the others.

    Attributes
    ----------
    weights : list of ndarray, ``weights[l].shape == (sizes[l], sizes[l + 1])``
    biases : list of ndarray, ``biases[l].shape == (sizes[l + 1],)``
        Writable views into the network's parameters: ``net.weights[0][:] = w``
        changes the network. Replacing an entry (``net.weights[0] = w``) works
        too; the new array is checked and copied in when the network next runs.
    """

    def __init__(
        self,
        sizes: Any,
        dtype: Any = np.float64,
        seed: int | None = None,
        activation: str | Sequence[str] = DEFAULT_ACTIVATION,
    ) -> None:
        sizes = check_sizes(sizes)
        dt = check_dtype(dtype)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        activations = _check_activation(activation, sizes.size - 1)
        self._init(sizes, dt, activations)
        self._rng = np.random.default_rng(seed)
        # Glorot's bound for the hidden layers' activation: the blog's sqrt(2 / (fan_in +
        # fan_out)) for logistic layers, scikit-learn's factor 6 for the others.
        factor = kernels.ACTIVATIONS[activations[0]].init_factor
        weights, biases = glorot_uniform(sizes, dt, self._rng, factor)
        for view, value in zip(
            self._weight_views + self._bias_views, weights + biases, strict=True
        ):
            view[...] = value

    def _init(self, sizes: np.ndarray, dtype: np.dtype, activations: list[str]) -> None:
        # The loss is the mean squared error (None), on the output layer's activation.
        codes = [kernels.ACTIVATIONS[name].code for name in activations]
        self._activations = list(activations)
        self._layout = engine.Layout(sizes, codes)
        self._dtype = dtype
        self._params = np.zeros(self._layout.n_params, dtype=dtype)
        self._weight_views, self._bias_views = self._layout.views(self._params)
        self._weights = list(self._weight_views)
        self._biases = list(self._bias_views)

    # -- properties ------------------------------------------------------------

    @property
    def sizes(self) -> list[int]:
        """Layer widths, inputs first."""
        return [int(s) for s in self._layout.sizes]

    @property
    def activations(self) -> list[str]:
        """Each layer's activation (registry names), the output layer's last."""
        return list(self._activations)

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64: the dtype of the parameters and of every result."""
        return self._dtype

    @property
    def weights(self) -> list[np.ndarray]:
        return self._weights

    @weights.setter
    def weights(self, values: Any) -> None:
        self._set_params(values, self._biases)

    @property
    def biases(self) -> list[np.ndarray]:
        return self._biases

    @biases.setter
    def biases(self, values: Any) -> None:
        self._set_params(self._weights, values)

    def _set_params(self, weights: Any, biases: Any) -> None:
        for name, values, views in (
            ("weights", weights, self._weight_views),
            ("biases", biases, self._bias_views),
        ):
            if not isinstance(values, list | tuple) or len(values) != len(views):
                raise ValueError(f"{name} must be a list of {len(views)} arrays")
        self._weights = list(weights)
        self._biases = list(biases)
        self._sync()

    def _sync(self) -> None:
        """Copy entries the user replaced in ``weights``/``biases`` into the parameters.

        All are checked first, so a bad one leaves the network unchanged.
        """
        pending = []
        for name, entries, views in (
            ("weights", self._weights, self._weight_views),
            ("biases", self._biases, self._bias_views),
        ):
            for layer, (entry, view) in enumerate(zip(entries, views, strict=True)):
                if entry is view:
                    continue
                label = f"{name}[{layer}]"
                try:
                    arr = np.asarray(entry)
                except (TypeError, ValueError) as exc:  # ragged nested lists, ...
                    raise TypeError(f"{label} must be a real numeric array: {exc}") from None
                if arr.dtype.kind not in "biuf":
                    raise TypeError(f"{label} must be a real numeric array, got dtype {arr.dtype}")
                if arr.shape != view.shape:
                    raise ValueError(f"{label} must have shape {view.shape}, got {arr.shape}")
                # Converted first: float64 values beyond float32's range become inf.
                with np.errstate(over="ignore", invalid="ignore"):
                    arr = arr.astype(view.dtype, copy=False)
                if not all_finite(arr):
                    raise ValueError(f"{label} contains NaN or infinity (in {view.dtype})")
                pending.append((entries, layer, arr, view))
        for entries, layer, arr, view in pending:
            view[...] = arr
            entries[layer] = view

    # -- evaluation --------------------------------------------------------------

    def _check_xy(self, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
        sizes = self._layout.sizes
        x = self._check_x(X)
        y = check_targets("Y", Y, self._dtype, int(sizes[-1]), x.shape[0])
        return x, y

    def _check_x(self, X: Any) -> Any:
        """X checked: an array, or a SciPy sparse matrix as CSR (never densified; see
        :mod:`fastbp.engine.sparse` for what is copied)."""
        n_features = int(self._layout.sizes[0])
        if sparse.is_sparse(X):
            x = sparse.check_csr("X", X, self._dtype, n_features)
            if x.shape[0] == 0:
                raise ValueError("X is empty: it has 0 samples")
            return x
        return check_data("X", X, self._dtype, n_features)

    def predict(self, X: Any) -> np.ndarray:
        """Network outputs.

        Parameters
        ----------
        X : array-like or SciPy sparse matrix, shape (n_samples, n_features)
            Sparse: read as CSR (rows times W_1, never densified).

        Returns
        -------
        ndarray, shape (n_samples, n_out), the network's dtype
        """
        self._sync()
        x = self._check_x(X)
        return engine.forward(self._layout, self._params, x)

    def loss(self, X: Any, Y: Any) -> float:
        """``J = (1/M) * sum_i ||a_i - y_i||^2`` over the M samples of (X, Y).

        Y has shape (n_samples, n_out), or (n_samples,) when n_out == 1.
        """
        self._sync()
        x, y = self._check_xy(X, Y)
        total = 0.0
        for start, stop, a in engine.iter_forward(self._layout, self._params, x):
            d = a - y[start:stop]
            total += float(np.vdot(d, d))
        return total / x.shape[0]

    def gradients(self, X: Any, Y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``dJ/dW_l`` and ``dJ/db_l`` of every layer at the current parameters.

        Returns
        -------
        dWs, dBs : lists of ndarray shaped like ``weights`` and ``biases``
        """
        self._sync()
        x, y = self._check_xy(X, Y)
        # The compiled passes take C-contiguous data; gradients are a diagnostic
        # on one batch, so a contiguous copy of other layouts is acceptable here.
        if not sparse.is_sparse(x):
            x = np.ascontiguousarray(x)
        _, grads = engine.loss_and_gradient(self._layout, self._params, x, np.ascontiguousarray(y))
        dws, dbs = self._layout.views(grads)
        return dws, dbs

    # -- training ------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        Y: Any,
        epochs: int = 100,
        lr: float = 0.5,
        batch_size: int | None = None,
        shuffle: bool = False,
        *,
        progress: bool = False,
        callback: Callable[[int, float], Any] | None = None,
        dropout: Any = 0.0,
    ) -> History:
        """Train by mini-batch gradient descent on the mean squared error.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Any layout (strided, Fortran-ordered, read-only, ``numpy.memmap``):
            batches are read from it directly. In the network's dtype it is not
            copied; in any other dtype it is converted first. A SciPy sparse matrix
            is trained on as CSR, never densified (see :mod:`fastbp.engine.sparse`).
        Y : array-like, shape (n_samples, n_out), or (n_samples,) when n_out == 1
        epochs : int >= 1
        lr : float > 0
            Learning rate.
        batch_size : int >= 1 or None
            Rows per step; None (or more than n_samples) is full batch. Batches
            are consecutive slices of the rows; a partial last batch is averaged
            over its own size.
        shuffle : bool
            Permute the rows each epoch with the network's seeded generator.
        progress : bool
            Show a progress bar (tqdm) with the latest epoch's loss.
        callback : callable(epoch, loss), optional
            Called after each epoch, in order, with the epoch number (from 0) and
            its loss. Returning True stops training after that epoch.
        dropout : float in [0, 1) or sequence of floats
            Inverted dropout on the hidden layers during this fit: one rate, or
            one per hidden layer (see :mod:`fastbp.engine.dropout`). The masks'
            key is drawn from the network's seeded generator (only when a rate is
            > 0: 0 is the fit without dropout, bit for bit). Prediction and
            :meth:`loss` drop nothing.

        Returns
        -------
        History
            ``loss`` has one entry per completed epoch.

        Raises
        ------
        DivergenceError
            If the loss or the weights become non-finite (learning rate too
            high). The network then keeps the last finite weights it had.
        """
        t0 = time.perf_counter()
        self._sync()
        x, y = self._check_xy(X, Y)
        epochs = check_int("epochs", epochs)
        lr = check_positive_float("lr", lr)
        finfo = np.finfo(self._dtype)
        if not float(finfo.tiny) <= lr <= float(finfo.max):
            raise ValueError(f"lr must be a normal {self._dtype.name} number, got {lr!r}")
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size)
        shuffle = check_bool("shuffle", shuffle)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        rates = engine.dropout.check_rates(dropout, self._layout.n_layers - 1)
        masks = None
        if rates.any():  # drawn last: a rejected call leaves the generator as it was
            masks = engine.Dropout(rates, int(self._rng.integers(2**63)))

        n = x.shape[0]
        batch = n if batch_size is None else min(batch_size, n)
        trainer = engine.Trainer(
            self._layout,
            self._params,
            x,
            y,
            _NO_WEIGHTS[self._dtype],
            batch,
            engine.FusedSGD(self._layout.n_params, self._dtype, lr),
            shuffle=self._shuffle if shuffle else None,
            stop_on_divergence=True,
            epochs_ahead=None if callback is None else _each_epoch,
            dropout=masks,
        )
        losses = np.empty(epochs)
        bar = _progress_bar(epochs) if progress else None
        done = 0
        try:
            with contextlib.closing(trainer.run(epochs)) as runs:
                for count, block in runs:
                    losses[done : done + count] = block
                    for k in range(count):
                        answer = None if callback is None else callback(done + k, float(block[k]))
                        if isinstance(answer, bool | np.bool_) and answer:
                            done += k + 1
                            return History(losses[:done].copy(), time.perf_counter() - t0)
                    done += count
                    if bar is not None:
                        bar.update(count)
                        bar.set_postfix(loss=f"{block[count - 1]:.6g}")
        except engine.Diverged:
            history = History(losses[:done].copy(), time.perf_counter() - t0)
            raise DivergenceError(
                f"training diverged in epoch {done} (non-finite loss or "
                f"weights; try a smaller lr than {lr}): the network keeps its last finite weights",
                history,
            ) from None
        finally:
            if bar is not None:
                bar.close()
        return History(losses, time.perf_counter() - t0)

    def _shuffle(self, orders: np.ndarray) -> None:
        """Fill each row of ``orders`` with a permutation of the rows, from the
        network's generator (the same draws as ``rng.permutation(n)``)."""
        for order in orders:
            order[:] = np.arange(order.size)
            self._rng.shuffle(order)

    # -- files -----------------------------------------------------------------------

    def to_onnx(self, path: str | os.PathLike) -> None:
        """Write the network to ``path`` as an ONNX model, atomically.

        Needs the optional extra ``fastbp[onnx]``. The graph takes ``X`` (n_samples,
        sizes[0]) and gives ``Y`` (n_samples, sizes[-1]) in the network's dtype:
        per layer a MatMul, an Add and the activation's operator
        (:data:`fastbp.onnx.ONNX_OPERATORS`). onnxruntime's outputs equal
        :meth:`predict`'s up to float rounding.
        """
        from fastbp.onnx import save_network

        save_network(self, path)

    def save(self, path: str | os.PathLike) -> None:
        """Write the network to ``path`` as an ``.npz`` file, atomically.

        The file is written next to ``path`` under a temporary name and renamed
        over it, so a crash mid-save leaves any previous file intact.
        """
        _files.save_npz(path, self._to_arrays())

    def _to_arrays(self) -> dict[str, np.ndarray]:
        """The entries of a model file (format :data:`FORMAT_VERSION`)."""
        self._sync()
        arrays = {
            "fastbp_format": np.array(FORMAT_VERSION),
            "sizes": self._layout.sizes,
            "activations": np.array(self.activations),
        }
        for layer, (w, b) in enumerate(zip(self._weight_views, self._bias_views, strict=True)):
            arrays[f"W{layer}"] = w
            arrays[f"b{layer}"] = b
        return arrays

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        """Read a network written by :meth:`save` (any format version up to this one's).

        Pickled objects are refused, so loading never runs code from the file.
        Every array is checked (names, shapes, dtypes, finiteness) before use.

        Raises
        ------
        ValueError
            If the file is not a valid fastbp model (truncated, foreign, corrupt).
        OSError
            If it cannot be read at all (missing, a directory, no permission).
        """
        return cls._from_arrays(_files.read_npz(path), str(path))

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], source: str) -> Network:
        def bad(why: str) -> ValueError:
            return ValueError(f"{source}: not a fastbp model file ({why})")

        version = arrays.get("fastbp_format")
        if version is None or version.shape != () or version.dtype.kind not in "iu":
            raise bad("no fastbp_format entry")
        if not 1 <= int(version) <= FORMAT_VERSION:
            raise bad(f"format version {int(version)}; this fastbp reads 1 to {FORMAT_VERSION}")
        sizes = arrays.get("sizes")
        if sizes is None or sizes.ndim != 1 or sizes.dtype.kind not in "iu" or sizes.size < 2:
            raise bad("sizes must be a 1-D integer array of at least 2 widths")
        if (sizes < 1).any():
            raise bad(f"layer widths must be >= 1, got {sizes.tolist()}")
        n_layers = sizes.size - 1
        expected = {"fastbp_format", "sizes"}
        expected |= {f"W{i}" for i in range(n_layers)} | {f"b{i}" for i in range(n_layers)}
        if int(version) >= 2:
            expected.add("activations")
        if set(arrays) != expected:
            raise bad(f"entries {sorted(arrays)}, expected {sorted(expected)}")
        activations = [DEFAULT_ACTIVATION] * n_layers  # version 1: all logistic
        if "activations" in arrays:
            names = arrays["activations"]
            if names.dtype.kind != "U" or names.shape != (n_layers,):
                raise bad(f"activations must be {n_layers} names, got {names.dtype} {names.shape}")
            unknown = sorted(set(names.tolist()) - set(kernels.ACTIVATIONS))
            if unknown:
                raise bad(f"unknown activation {unknown[0]!r}")
            activations = names.tolist()
        dtype = arrays["W0"].dtype
        if dtype not in FLOAT_DTYPES:
            raise bad(f"weights must be float32 or float64, got {dtype}")
        for layer in range(n_layers):
            for name, shape in (
                (f"W{layer}", (int(sizes[layer]), int(sizes[layer + 1]))),
                (f"b{layer}", (int(sizes[layer + 1]),)),
            ):
                arr = arrays[name]
                if arr.dtype != dtype:
                    raise bad(f"{name} has dtype {arr.dtype}, W0 has {dtype}")
                if arr.shape != shape:
                    raise bad(f"{name} has shape {arr.shape}, expected {shape}")
                if not all_finite(arr):
                    raise bad(f"{name} contains NaN or infinity")
        net = cls.__new__(cls)
        net._init(sizes.astype(np.int64), dtype, activations)
        net._rng = np.random.default_rng()
        for layer in range(n_layers):
            net._weight_views[layer][...] = arrays[f"W{layer}"]
            net._bias_views[layer][...] = arrays[f"b{layer}"]
        return net

    def __repr__(self) -> str:
        names = self.activations
        hidden, output = names[:-1], names[-1]
        if output == DEFAULT_ACTIVATION and len(set(hidden)) <= 1:
            same = hidden[0] if hidden else DEFAULT_ACTIVATION
            activation = "" if same == DEFAULT_ACTIVATION else f", activation={same!r}"
        else:
            activation = f", activation={names!r}"
        return f"Network({self.sizes}, dtype={self._dtype.name}{activation})"
