"""Drop-in replacements for scikit-learn's MLPRegressor and MLPClassifier.

:class:`MLPRegressor` and :class:`MLPClassifier` take the same parameters, have the
same defaults, fitted attributes, methods and errors as the installed
scikit-learn's, and, given the same data, hyper-parameters and an integer
``random_state``, produce the same fitted model up to floating-point rounding:
the weights are drawn from the same generator in the same order, the rows are
shuffled and the validation set split by the same calls, and the learning-rate
and stopping rules are the same. All the arithmetic runs in fastbp's compiled
kernels (:mod:`fastbp._loop`): one compiled call per epoch for 'sgd' and 'adam',
one compiled loss-and-gradient per function evaluation for 'lbfgs' (driven by
SciPy's L-BFGS-B exactly as scikit-learn drives it).

Differences from scikit-learn, all deliberate:

* float32 input is trained in float32 with every solver, 'lbfgs' included
  (scikit-learn's L-BFGS path leaves float64 weights after a float32 fit). A
  warm start or ``partial_fit`` trains on in the dtype of the fitted weights.
* Sparse input is accepted, as by scikit-learn, and densified for training;
  predict densifies it a chunk of rows at a time.
* A fit or partial_fit that raises before training starts (bad data, targets,
  sample weights or hyper-parameters) leaves the estimator exactly as it was,
  attribute for attribute, and a ``RandomState`` passed as ``random_state``
  undrawn (scikit-learn may have set ``n_features_in_``, ``classes_``, fresh
  weights... by then).
* Never a non-finite weight. 'sgd' and 'adam' run their epochs as scikit-learn's
  do (same iterations, warnings and printed lines); if the weights end up
  non-finite, fit raises scikit-learn's ValueError ("Solver produced non-finite
  parameter weights...") with the estimator as it was after its last epoch with
  finite weights (weights, optimizer state, ``n_iter_``, ``t_``, ``loss_``,
  ``loss_curve_``), or, with early stopping, with the best weights as of then;
  a partial_fit that diverges leaves the estimator as before the call. 'lbfgs'
  keeps its last iterate with finite weights.
* Ctrl-C (SIGINT, main thread) stops 'sgd' and 'adam' within one step, not at the
  end of the epoch; fit then returns with the "Training interrupted by user."
  warning and the weights of the last complete step, as scikit-learn's does.
* Stricter checks, each a TypeError or ValueError naming the argument:
  ``hidden_layer_sizes`` entries must be integers (not bools or floats) and the
  parameter count must fit in 64 bits; a warm start or partial_fit with other
  ``hidden_layer_sizes`` or another number of outputs is refused (scikit-learn's
  'sgd' and 'adam' silently go on training the fitted layers); MLPRegressor
  refuses string targets (scikit-learn fails in its loss); partial_fit checks
  the hyper-parameters even on a fitted estimator (scikit-learn skips that).
* A warm start after switching from 'lbfgs' to 'sgd'/'adam', or switching
  ``early_stopping``, trains (scikit-learn fails mid-fit, AttributeError).
* No copy of X in fit when it is C-contiguous float32/float64, a read-only
  ``numpy.memmap`` included (shuffling gathers each batch's rows).

Quirks of scikit-learn kept on purpose, for identical results:

* Multi-output regression ('squared_error' with k outputs): the reported loss is
  ``0.5 * mean over outputs of the mean squared error``, but the gradient used
  is that of ``0.5 * sum over outputs``, k times the gradient of the reported
  loss (scikit-learn issue #8349).
* ``MLPRegressor.partial_fit`` exists whatever the solver (scikit-learn's
  availability check on the regressor never fails), while
  ``MLPClassifier.partial_fit`` is only available for 'sgd' and 'adam'.
* A ``fit`` with ``warm_start=True`` keeps the weights but restarts the optimizer
  (Adam moments, momentum velocities, learning rate); ``partial_fit`` keeps it.
"""

# Messages are kept byte for byte as scikit-learn formats them (%-formatting).
# ruff: noqa: UP031

from __future__ import annotations

import contextlib
import itertools
import numbers
import time
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse
from sklearn import neural_network as _skl_nn
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import assert_all_finite, check_random_state, column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from fastbp import _loop, kernels
from fastbp._interrupt import watch
from fastbp._jit import PARALLEL_GEMM
from fastbp._threads import compute_threads, kernel_threads

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_ACTIVATION_CODES = {
    "identity": kernels.IDENTITY,
    "logistic": kernels.LOGISTIC,
    "tanh": kernels.TANH,
    "relu": kernels.RELU,
}
# Output activation -> (activation code of the output layer, loss code).
_OUTPUTS = {
    "identity": (kernels.IDENTITY, kernels.LOSS_SQUARED),
    "exp": (kernels.IDENTITY, kernels.LOSS_POISSON),
    "logistic": (kernels.LOGISTIC, kernels.LOSS_BINARY),
    "softmax": (kernels.IDENTITY, kernels.LOSS_SOFTMAX),
}
# Rows per forward pass when predicting: bounds the scratch memory.
_EVAL_ROWS = 4096
# Ctrl-C during a compiled epoch is routed to the loop (fastbp._interrupt.watch: a
# pipe and a thread, about 0.1-1 ms to set up) from the first epoch on when an epoch
# is at least this many multiply-adds (samples x parameters), else once an epoch
# has taken this long; shorter epochs return to Python, and so to Ctrl-C, anyway.
_WATCH_WORK = 1 << 22
_WATCH_SECONDS = 0.01
_MISSING = object()


class _Optimizer:
    """State of a stochastic solver: its code, flat state buffers and learning rate."""

    def __init__(self, solver: str, est: _BaseMLP, n_params: int, dtype: np.dtype) -> None:
        self.solver = solver
        self.learning_rate_init = est.learning_rate_init
        self.learning_rate = float(est.learning_rate_init)
        if solver == "sgd":
            self.code = _loop.OPT_NESTEROV if est.nesterovs_momentum else _loop.OPT_MOMENTUM
            self.state = np.zeros((1, n_params), dtype=dtype)
            self.lr_schedule = est.learning_rate
            self.momentum = est.momentum
            self.power_t = est.power_t
            self.beta_1 = self.beta_2 = self.epsilon = 0.0
        else:
            self.code = _loop.OPT_ADAM
            self.state = np.zeros((2, n_params), dtype=dtype)
            self.lr_schedule = "constant"
            self.momentum = 0.0
            self.power_t = 0.0
            self.beta_1, self.beta_2, self.epsilon = est.beta_1, est.beta_2, est.epsilon
        self.t = 0  # Adam's step count

    def hyper(self, alpha: float) -> np.ndarray:
        hyper = np.zeros(6)
        hyper[_loop.H_LR] = (
            self.learning_rate_init if self.code == _loop.OPT_ADAM else self.learning_rate
        )
        hyper[_loop.H_ALPHA] = alpha
        hyper[_loop.H_MOMENTUM] = self.momentum
        hyper[_loop.H_BETA_1] = self.beta_1
        hyper[_loop.H_BETA_2] = self.beta_2
        hyper[_loop.H_EPSILON] = self.epsilon
        return hyper

    def after_step_count(self) -> None:
        """Adam's current rate, as scikit-learn's AdamOptimizer.learning_rate."""
        if self.code == _loop.OPT_ADAM and self.t > 0:
            self.learning_rate = (
                self.learning_rate_init
                * np.sqrt(1 - self.beta_2**self.t)
                / (1 - self.beta_1**self.t)
            )

    def iteration_ends(self, time_step: int) -> None:
        if self.code != _loop.OPT_ADAM and self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose: Any) -> bool:
        if self.code == _loop.OPT_ADAM or self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


def _threads_for(sizes: np.ndarray, rows: int) -> int | None:
    """The kernels' ``threads`` argument for batches of ``rows``."""
    return kernel_threads(sizes, rows, PARALLEL_GEMM)


class _Net:
    """The flat-buffer view of a fitted estimator: sizes, offsets, codes, parameters.

    Parameters are packed as scikit-learn packs them for L-BFGS: every W_l
    (row-major) first, then every b_l.
    """

    def __init__(self, est: _BaseMLP, dtype: np.dtype | None = None) -> None:
        coefs, intercepts = est.coefs_, est.intercepts_
        self.dtype = np.dtype(coefs[0].dtype if dtype is None else dtype)
        sizes = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        self.sizes = np.array(sizes, dtype=np.int64)
        n_in, n_out = self.sizes[:-1], self.sizes[1:]
        w_sizes = n_in * n_out
        self.w_off = np.concatenate(([0], np.cumsum(w_sizes)[:-1])).astype(np.int64)
        total_w = int(w_sizes.sum())
        self.b_off = (total_w + np.concatenate(([0], np.cumsum(n_out)[:-1]))).astype(np.int64)
        self.n_params = total_w + int(n_out.sum())
        self.n_units = int(n_out.sum())
        self.params = np.empty(self.n_params, dtype=self.dtype)
        for layer, (c, b) in enumerate(zip(coefs, intercepts, strict=True)):
            w0, b0 = self.w_off[layer], self.b_off[layer]
            self.params[w0 : w0 + c.size] = np.asarray(c).ravel()
            self.params[b0 : b0 + b.size] = b
        hidden = _ACTIVATION_CODES[est.activation]
        out_code, self.loss = _OUTPUTS[est.out_activation_]
        self.activations = np.full(len(coefs), hidden, dtype=np.int64)
        self.activations[-1] = out_code

    def act_offsets(self, capacity: int) -> np.ndarray:
        widths = self.sizes[1:]
        return (capacity * np.concatenate(([0], np.cumsum(widths)[:-1]))).astype(np.int64)

    def unpack(self, params: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Lists (coefs, intercepts) of views into ``params``."""
        coefs, intercepts = [], []
        for layer in range(self.sizes.size - 1):
            w, b = _loop.layer_params(params, self.sizes, self.w_off, self.b_off, layer)
            coefs.append(w)
            intercepts.append(b)
        return coefs, intercepts

    def forward(self, x: Any, threads_set: bool = False) -> np.ndarray:
        """Output layer for x (n, n_features): any real dtype, layout or sparse format.

        An x that is not a writeable C-contiguous array of the net's dtype (a
        read-only memmap, a Fortran-ordered or strided array, another dtype, a
        sparse matrix) is converted one chunk of rows at a time, never as a whole:
        predicting on data larger than memory needs no copy of it, and the kernels
        see a single array type. ``threads_set``: the caller is inside
        :func:`compute_threads` already.
        """
        params = self.params
        n = x.shape[0]
        k = int(self.sizes[-1])
        out = np.empty((n, k), dtype=self.dtype)
        if n == 0:
            return out
        capacity = min(n, _EVAL_ROWS)
        acts = np.empty(capacity * self.n_units, dtype=self.dtype)
        a_off = self.act_offsets(capacity)
        top = a_off[-1]
        threads = _threads_for(self.sizes, capacity)
        if scipy.sparse.issparse(x):
            x = x.tocsr()
        direct = _kernel_ready(x, self.dtype)
        xbuf = None if direct else np.empty((capacity, x.shape[1]), dtype=self.dtype)
        with contextlib.nullcontext() if threads_set else compute_threads():
            for start in range(0, n, capacity):
                m = min(capacity, n - start)
                if direct:
                    xin = x[start : start + m]
                else:
                    chunk = x[start : start + m]
                    if scipy.sparse.issparse(chunk):
                        chunk = chunk.toarray()
                    xin = xbuf[:m]
                    np.copyto(xin, chunk, casting="unsafe")
                _loop.forward_pass(
                    xin,
                    self.sizes,
                    self.w_off,
                    self.b_off,
                    a_off,
                    params,
                    acts,
                    self.activations,
                    self.loss,
                    threads,
                )
                out[start : start + m] = acts[top : top + m * k].reshape(m, k)
        return out


def _kernel_ready(x: Any, dtype: np.dtype) -> bool:
    """Whether the kernels can take x as it is: a writeable C-contiguous ndarray of dtype.

    Other arrays are converted (fit) or copied chunk by chunk (predict), so that
    each kernel is compiled for one array type per dtype. The one exception is a
    read-only C-contiguous X in fit, used as it is (see :func:`_train_x`).
    """
    return (
        isinstance(x, np.ndarray)
        and x.dtype == dtype
        and x.flags.c_contiguous
        and x.flags.writeable
    )


def _train_x(x: Any, dtype: np.dtype) -> np.ndarray:
    """Training samples for the kernels: C-contiguous in ``dtype``, not copied when
    they already are (a read-only ``numpy.memmap`` included)."""
    if scipy.sparse.issparse(x):
        x = x.toarray()
    return np.ascontiguousarray(x, dtype=dtype)


def _private(a: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """A fresh writeable C-contiguous copy of targets or sample weights (small), which
    must fit in ``dtype`` (float32 when X is: the network trains in X's dtype)."""
    if scipy.sparse.issparse(a):
        a = a.toarray()
    with np.errstate(over="ignore"):
        out = np.array(a, dtype=dtype, order="C", copy=True)
    if not _all_finite(out):  # they were checked finite: beyond float32's range
        raise ValueError(
            "%s has values beyond the range of %s, the dtype of X the network trains "
            "in: scale %s, or pass X as float64." % (name, np.dtype(dtype).name, name)
        )
    return out


def _all_finite(a: np.ndarray) -> bool:
    """Whether every element of the float array ``a`` is finite (no temporary array
    unless its sum overflows or is not finite)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return True
    return bool(np.isfinite(a).all())


def _validate_data(est: _BaseMLP, *args: Any, **kwargs: Any) -> Any:
    """scikit-learn's ``validate_data``, without its RuntimeWarning when the data hold
    both +inf and -inf (its finiteness test sums them): its ValueError comes alone."""
    with np.errstate(invalid="ignore", over="ignore"):
        return validate_data(est, *args, **kwargs)


def _check_hidden_layer_sizes(value: Any) -> list:
    """``hidden_layer_sizes`` as a list of ints >= 1, else a TypeError or ValueError
    naming it (scikit-learn's own message for sizes <= 0)."""
    sizes = list(value) if hasattr(value, "__iter__") else [value]
    for size in sizes:
        if isinstance(size, bool | np.bool_) or not isinstance(size, numbers.Integral):
            raise TypeError(
                "hidden_layer_sizes must hold integers (the width of each hidden "
                "layer), got %r of type %s in %r." % (size, type(size).__name__, value)
            )
    if any(size <= 0 for size in sizes):
        raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
    return [int(size) for size in sizes]


def _check_parameter_count(layer_units: list[int], hidden_layer_sizes: Any) -> None:
    """The parameter count must fit the kernels' int64 offsets."""
    n_params = sum(a * b + b for a, b in itertools.pairwise(layer_units))
    if n_params >= 2**62:
        raise ValueError(
            "hidden_layer_sizes=%r gives %d parameters with %d features and %d outputs, "
            "too many to store." % (hidden_layer_sizes, n_params, layer_units[0], layer_units[-1])
        )


def _check_architecture(est: _BaseMLP, layer_units: list[int]) -> None:
    """On a warm start or partial_fit, the data and hidden_layer_sizes must match the
    fitted weights (scikit-learn fails later, in a matrix product)."""
    fitted = [est.coefs_[0].shape[0]] + [c.shape[1] for c in est.coefs_]
    if fitted[-1] != layer_units[-1]:
        raise ValueError(
            "y has %d output(s) but the fitted network has %d: fit from scratch "
            "(warm_start=False) to change them." % (layer_units[-1], fitted[-1])
        )
    if fitted[1:-1] != layer_units[1:-1]:
        raise ValueError(
            "hidden_layer_sizes=%r does not match the fitted network's hidden layers %r: "
            "fit from scratch (warm_start=False) to change them."
            % (est.hidden_layer_sizes, tuple(fitted[1:-1]))
        )


class _Transaction:
    """Undo what fit or partial_fit did to the estimator if they raise before training.

    Checking the arguments sets attributes on the way (``n_features_in_``,
    ``classes_``, fresh weights, an optimizer, draws from a ``RandomState``
    passed as ``random_state``): a call that fails before :meth:`commit` (the
    first kernel call) leaves the estimator exactly as it was, attribute for
    attribute. Nothing is modified in place before that point, so a shallow copy
    of ``__dict__`` is the whole state to put back.
    """

    def __init__(self, est: _BaseMLP) -> None:
        self.est = est
        self.open = True

    def __enter__(self) -> _Transaction:
        self.saved = dict(self.est.__dict__)
        rs = self.est.random_state
        self.rng = rs if isinstance(rs, np.random.RandomState) else None
        self.rng_state = None if self.rng is None else self.rng.get_state()
        return self

    def commit(self) -> None:
        self.open = False

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None and self.open:
            self.est.__dict__.clear()
            self.est.__dict__.update(self.saved)
            if self.rng is not None:
                self.rng.set_state(self.rng_state)
        return False


class _Checkpoint:
    """The training state after the last epoch that ended with finite weights.

    Saved into spare buffers and published by one assignment, so that a
    KeyboardInterrupt landing in the middle of a save leaves the previous
    checkpoint whole.
    """

    # Attributes an epoch rebinds (never modifies in place): saved by reference.
    SCALARS = (
        "n_iter_",
        "t_",
        "loss_",
        "best_loss_",
        "_no_improvement_count",
        "best_validation_score_",
        "_best_coefs",
        "_best_intercepts",
    )

    def __init__(self, est: _BaseMLP, params: np.ndarray, opt: _Optimizer) -> None:
        self.est, self.params, self.opt = est, params, opt
        self.spare = (np.empty_like(params), np.empty_like(opt.state))
        self.saved: tuple | None = None
        self.save_if_finite()

    def save_if_finite(self) -> None:
        if not _all_finite(self.params):
            return
        est, opt = self.est, self.opt
        params, state = self.spare
        np.copyto(params, self.params)
        np.copyto(state, opt.state)
        scores = getattr(est, "validation_scores_", None)
        saved = (
            params,
            state,
            (opt.t, opt.learning_rate),
            {name: getattr(est, name, _MISSING) for name in self.SCALARS},
            len(est.loss_curve_),
            None if scores is None else len(scores),
        )
        if self.saved is None:
            self.spare = (np.empty_like(params), np.empty_like(state))
        else:
            self.spare = self.saved[:2]
        self.saved = saved

    def restore(self, bookkeeping: bool) -> None:
        """Weights and optimizer back; with ``bookkeeping``, the estimator's iteration
        count, losses, validation scores and best weights too."""
        if self.saved is None:  # non-finite from the start: nothing finite to go back to
            return
        params, state, (t, lr), scalars, n_losses, n_scores = self.saved
        np.copyto(self.params, params)
        np.copyto(self.opt.state, state)
        self.opt.t, self.opt.learning_rate = t, lr
        if not bookkeeping:
            return
        for name, value in scalars.items():
            if value is _MISSING:
                self.est.__dict__.pop(name, None)
            else:
                setattr(self.est, name, value)
        del self.est.loss_curve_[n_losses:]
        if n_scores is not None:
            del self.est.validation_scores_[n_scores:]


class _BaseMLP(BaseEstimator):
    """What MLPRegressor and MLPClassifier share (not scikit-learn's private base)."""

    _parameter_constraints: ClassVar[dict] = dict(_skl_nn.MLPRegressor._parameter_constraints)
    _parameter_constraints.pop("loss")

    def __init__(
        self,
        hidden_layer_sizes: Any,
        activation: str,
        solver: str,
        alpha: float,
        batch_size: Any,
        learning_rate: str,
        learning_rate_init: float,
        power_t: float,
        max_iter: int,
        loss: str,
        shuffle: bool,
        random_state: Any,
        tol: float,
        verbose: Any,
        warm_start: bool,
        momentum: float,
        nesterovs_momentum: bool,
        early_stopping: bool,
        validation_fraction: float,
        beta_1: float,
        beta_2: float,
        epsilon: float,
        n_iter_no_change: Any,
        max_fun: int,
    ) -> None:
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    # -- fitting -------------------------------------------------------------------

    def _initialize(self, y: np.ndarray, layer_units: list[int], dtype: np.dtype) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        self.coefs_ = []
        self.intercepts_ = []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in itertools.pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            self.coefs_.append(coef.astype(dtype, copy=False))
            self.intercepts_.append(intercept.astype(dtype, copy=False))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in _STOCHASTIC_SOLVERS:
            self._initialize_stochastic()

    def _initialize_stochastic(self) -> None:
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _continue_stochastic(self) -> None:
        """Bookkeeping a stochastic solver needs, where an earlier fit with other
        settings (solver='lbfgs', early_stopping switched) left none: scikit-learn
        fails with an AttributeError or TypeError mid-fit there."""
        if not hasattr(self, "loss_curve_"):
            self._initialize_stochastic()
        elif self.early_stopping and getattr(self, "validation_scores_", None) is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        elif not self.early_stopping and getattr(self, "best_loss_", None) is None:
            self.best_loss_ = np.inf

    def _fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        incremental: bool = False,
        txn: _Transaction | None = None,
    ) -> Any:
        if txn is None:  # a direct call: the public methods open the transaction
            with _Transaction(self) as txn:
                return self._fit(X, y, sample_weight, incremental, txn)
        hidden_layer_sizes = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_features = X.shape[1]
        if sample_weight is not None:
            with np.errstate(invalid="ignore", over="ignore"):  # as in _validate_data
                sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features, *hidden_layer_sizes, self.n_outputs_]
        _check_parameter_count(layer_units, self.hidden_layer_sizes)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        else:
            _check_architecture(self, layer_units)
        if self.solver in _STOCHASTIC_SOLVERS:
            diverged = self._fit_stochastic(X, y, sample_weight, incremental, txn)
        else:
            diverged = self._fit_lbfgs(X, y, sample_weight, txn)
        if diverged or not all(
            _all_finite(w) for w in itertools.chain(self.coefs_, self.intercepts_)
        ):
            # scikit-learn's error, word for word; the weights are finite, though.
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _set_params_from(self, net: _Net, params: np.ndarray) -> None:
        self.coefs_, self.intercepts_ = net.unpack(params)

    def _fit_lbfgs(
        self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None, txn: _Transaction
    ) -> bool:
        """Train by L-BFGS-B; True if its result was not finite.

        Then the weights are those of its last iterate with finite weights (the
        starting point if none), and ``n_iter_`` and ``loss_`` are that iterate's.
        """
        net = _Net(self)  # in the weights' dtype: X's on a first fit
        dtype = net.dtype
        x = _train_x(X, dtype)
        yy = _private(y, dtype, "y")
        sw = (
            np.empty(0, dtype)
            if sample_weight is None
            else _private(sample_weight, dtype, "sample_weight")
        )
        n = x.shape[0]
        acts = np.empty(n * net.n_units, dtype=dtype)
        deltas = np.empty_like(acts)
        grads = np.zeros(net.n_params, dtype=dtype)
        a_off = net.act_offsets(n)
        params = net.params
        threads = _threads_for(net.sizes, n)
        alpha = float(self.alpha)
        start = params.astype(np.float64)
        # The last iterate with finite weights: (x, iteration, loss).
        last: list[Any] = [start.copy(), 0, None]

        def loss_grad(packed: np.ndarray) -> tuple[float, np.ndarray]:
            with np.errstate(over="ignore"):  # float32 weights: beyond its range is inf
                params[:] = packed
            value = _loop.loss_grad(
                x,
                yy,
                sw,
                net.sizes,
                net.w_off,
                net.b_off,
                a_off,
                params,
                acts,
                grads,
                deltas,
                net.activations,
                net.loss,
                alpha,
                threads,
            )
            if last[2] is None:  # the loss at the starting point
                last[2] = value
            # A new array each call: SciPy keeps references to the gradients it gets.
            return value, grads.astype(np.float64)

        iteration = [0]

        def record(intermediate_result: Any) -> None:
            iteration[0] += 1
            x_k = intermediate_result.x
            with np.errstate(over="ignore"):
                finite = _all_finite(x_k) and _all_finite(x_k.astype(dtype))
            if finite:
                last[0][:] = x_k
                last[1] = iteration[0]
                last[2] = intermediate_result.fun

        txn.commit()
        with compute_threads():
            opt_res = scipy.optimize.minimize(
                loss_grad,
                start,
                method="L-BFGS-B",
                jac=True,
                callback=record,
                options={
                    "maxfun": self.max_fun,
                    "maxiter": self.max_iter,
                    "gtol": self.tol,
                    **_lbfgs_print_option(self.verbose),
                },
            )
        self.n_iter_ = _check_lbfgs_result(opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        with np.errstate(over="ignore"):
            final = np.asarray(opt_res.x).astype(dtype)
        diverged = not _all_finite(final)
        if diverged:
            final = last[0].astype(dtype)
            self.n_iter_ = min(last[1], self.max_iter)
            self.loss_ = last[2]
        self._set_params_from(net, final)
        return diverged

    def _fit_stochastic(
        self,
        X: Any,
        y: np.ndarray,
        sample_weight: np.ndarray | None,
        incremental: bool,
        txn: _Transaction,
    ) -> bool:
        """Train by SGD or Adam; True if it left non-finite weights.

        The epochs run as scikit-learn's do (same iterations, warnings, printed
        lines), and every epoch that ends with finite weights is remembered; if
        the weights are not finite at the end, the estimator is put back as it was
        after the last such epoch (weights, optimizer, ``n_iter_``, ``t_``,
        ``loss_curve_``...), or with early stopping gets the best weights as
        always. Ctrl-C (SIGINT in the main thread) stops the fit within one step,
        which then returns with the weights of the last complete step, as
        scikit-learn's returns after the current batch.
        """
        if self.early_stopping and incremental:
            # Checked first, before the optimizer is touched (scikit-learn raises
            # this same error after creating one).
            raise ValueError("partial_fit does not support early_stopping=True")
        net = _Net(self)  # in the weights' dtype: X's on a first fit
        dtype = net.dtype
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _Optimizer(self.solver, self, net.n_params, dtype)
        opt = self._optimizer
        self._continue_stochastic()
        early_stopping = self.early_stopping
        if early_stopping and self.validation_fraction == 0:
            # scikit-learn fails in train_test_split, with an error about its test_size.
            raise ValueError(
                "validation_fraction=0.0 leaves no validation set for early_stopping=True."
            )
        if early_stopping:
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X,
                    y,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
                sample_weight_train = sample_weight_val = None
            else:
                (X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val) = (
                    train_test_split(
                        X,
                        y,
                        sample_weight,
                        random_state=self._random_state,
                        test_size=self.validation_fraction,
                        stratify=stratify,
                    )
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            x_val = _train_x(X_val, dtype)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            x_val = y_val = sample_weight_val = None

        x = _train_x(X_train, dtype)
        yy = _private(y_train, dtype, "y")
        sw = (
            np.empty(0, dtype)
            if sample_weight_train is None
            else _private(sample_weight_train, dtype, "sample_weight")
        )
        n_samples = x.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped",
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        params = net.params
        grads = np.zeros(net.n_params, dtype=dtype)
        acts = np.empty(batch_size * net.n_units, dtype=dtype)
        deltas = np.empty_like(acts)
        a_off = net.act_offsets(batch_size)
        gather = bool(self.shuffle)
        rows = batch_size if gather else 0
        xb = np.empty((rows, x.shape[1]), dtype=dtype)
        yb = np.empty((rows, yy.shape[1]), dtype=dtype)
        swb = np.empty(rows if sw.size else 0, dtype=dtype)
        position = np.zeros(3, dtype=np.int64)
        position[2] = opt.t
        threads = _threads_for(net.sizes, batch_size)
        no_order = np.empty((0, n_samples), dtype=np.int64)
        alpha = float(self.alpha)
        max_steps = n_samples  # at least one epoch's batches
        stop = np.zeros(1, dtype=np.uint8)  # set on Ctrl-C: the epoch ends at once
        txn.commit()
        if opt.state.dtype != dtype:  # weights set by hand in another dtype
            opt.state = opt.state.astype(dtype)
        good = _Checkpoint(self, params, opt)
        watching = False
        # One thread setup for the whole fit (it costs tens of microseconds).
        with compute_threads(), contextlib.ExitStack() as sigint:
            try:
                # Let Ctrl-C cut an epoch short, from the start if epochs are long.
                if n_samples * net.n_params >= _WATCH_WORK:
                    sigint.enter_context(watch(stop))
                    watching = True
                self.n_iter_ = 0
                for _ in range(self.max_iter):
                    if self.shuffle:
                        # What sklearn.utils.shuffle(sample_idx, random_state=rs) does,
                        # without its argument checks: the same draws, the same result.
                        perm = np.arange(n_samples)
                        self._random_state.shuffle(perm)
                        sample_idx = sample_idx[perm]
                        orders = sample_idx.astype(np.int64, copy=False).reshape(1, -1)
                    else:
                        orders = no_order
                    started = time.perf_counter()
                    loss_sums = np.zeros(1)
                    position[0] = position[1] = 0
                    position[2] = opt.t
                    while position[0] == 0:  # returns early only on Ctrl-C
                        _loop.train_chunk(
                            x,
                            yy,
                            sw,
                            orders,
                            gather,
                            net.sizes,
                            net.w_off,
                            net.b_off,
                            a_off,
                            net.activations,
                            net.loss,
                            params,
                            grads,
                            acts,
                            deltas,
                            xb,
                            yb,
                            swb,
                            opt.code,
                            opt.hyper(alpha),
                            opt.state,
                            batch_size,
                            position,
                            max_steps,
                            stop,
                            loss_sums,
                            threads,
                        )
                    opt.t = int(position[2])
                    opt.after_step_count()
                    self._set_params_from(net, params)
                    self.n_iter_ += 1
                    self.loss_ = float(loss_sums[0] / n_samples)
                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                    self._update_no_improvement_count(
                        early_stopping, net, x_val, y_val, sample_weight_val
                    )
                    opt.iteration_ends(self.t_)
                    stopping = False
                    if self._no_improvement_count > self.n_iter_no_change:
                        if early_stopping:
                            msg = (
                                "Validation score did not improve more than "
                                "tol=%f for %d consecutive epochs."
                                % (self.tol, self.n_iter_no_change)
                            )
                        else:
                            msg = (
                                "Training loss did not improve more than tol=%f"
                                " for %d consecutive epochs." % (self.tol, self.n_iter_no_change)
                            )
                        stopping = opt.trigger_stopping(msg, self.verbose)
                        if not stopping:
                            self._no_improvement_count = 0
                    good.save_if_finite()
                    if stopping or incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn(
                            "Stochastic Optimizer: Maximum iterations (%d) "
                            "reached and the optimization hasn't converged yet." % self.max_iter,
                            ConvergenceWarning,
                            stacklevel=3,
                        )
                    if not watching and time.perf_counter() - started >= _WATCH_SECONDS:
                        sigint.enter_context(watch(stop))
                        watching = True
            except KeyboardInterrupt:
                # Mid-epoch: the weights are those of the last complete step.
                opt.t = int(position[2])
                opt.after_step_count()
                warnings.warn("Training interrupted by user.", stacklevel=3)
            finally:
                # Whatever ended the fit (an exception included), no weight is left
                # non-finite: back to the last epoch that ended with finite ones.
                diverged = not _all_finite(params)
                if diverged:
                    # With early stopping, scikit-learn's bookkeeping (the epochs run,
                    # the validation scores) stays: fit ends with the best weights.
                    good.restore(bookkeeping=not early_stopping)
                self._set_params_from(net, params)
        if early_stopping:
            # As scikit-learn, the best weights; an error only if they are not finite
            # (a classifier's accuracy can improve on non-finite weights), and then
            # the best weights as of the last epoch that ended with finite ones.
            diverged = not all(
                _all_finite(w) for w in itertools.chain(self._best_coefs, self._best_intercepts)
            )
            if diverged:
                good.restore(bookkeeping=True)
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts
        return diverged

    def _update_no_improvement_count(
        self,
        early_stopping: bool,
        net: _Net,
        x_val: np.ndarray | None,
        y_val: Any,
        sample_weight: Any,
    ) -> None:
        if early_stopping:
            y_pred = self._output_to_prediction(net.forward(x_val, threads_set=True))
            if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
                val_score = np.nan
            else:
                val_score = self._score_function(y_val, y_pred, sample_weight=sample_weight)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data, float64 or float32 (kept: float32 trains in float32).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        with _Transaction(self) as txn:
            return self._fit(X, y, sample_weight, incremental=False, txn=txn)

    def _check_score_args(self, X: Any, y: Any, sample_weight: Any) -> None:
        """What score checks before predicting: X as predict does, then the lengths
        as scikit-learn's metrics do first, with their message (scikit-learn's score
        predicts before it finds a length mismatch)."""
        check_is_fitted(self)
        _validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        check_consistent_length(y, X, sample_weight)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    # -- prediction ------------------------------------------------------------------

    def _forward_pass_fast(self, X: Any, check_input: bool = True) -> np.ndarray:
        if check_input:
            X = _validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        x_dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
        dtype = np.result_type(x_dtype, self.coefs_[0].dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        net = _Net(self, dtype)
        return net.forward(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _lbfgs_print_option(verbose: Any) -> dict:
    """``iprint`` as scikit-learn passes it: only to SciPy < 1.15, which still takes it."""
    major, minor = (int(part) for part in scipy.__version__.split(".")[:2])
    if (major, minor) >= (1, 15):
        return {}
    return {"iprint": 1 if verbose is True or verbose >= 1 else -1}


def _check_lbfgs_result(result: Any, max_iter: int) -> int:
    """Iterations of an L-BFGS-B run; a ConvergenceWarning if it did not converge."""
    n_iter = min(result.nit, max_iter)
    if result.status != 0:
        msg = (
            f"lbfgs failed to converge after {n_iter} iteration(s) "
            f"(status={result.status}):\n{result.message}\n"
        )
        if n_iter == max_iter:
            msg += (
                f"\nIncrease the number of iterations to improve the "
                f"convergence (max_iter={max_iter})."
            )
        msg += (
            "\nYou might also want to scale the data as shown in:\n"
            "    https://scikit-learn.org/stable/modules/preprocessing.html"
        )
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    return n_iter


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, scikit-learn's ``MLPClassifier`` compiled.

    The same parameters, defaults, attributes and results as
    :class:`sklearn.neural_network.MLPClassifier` (see the module docstring for
    the few deliberate differences). It minimises the log-loss (softmax output for
    multiclass, logistic for binary and multilabel targets) with an L2 penalty
    ``alpha``, by L-BFGS, SGD or Adam.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
    alpha : float, default=0.0001
    batch_size : int or 'auto', default='auto'
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1 : float, default=0.9
    beta_2 : float, default=0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        All as in scikit-learn.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray, ``coefs_[i].shape == (units_i, units_{i+1})``
    intercepts_ : list of ndarray, ``intercepts_[i].shape == (units_{i+1},)``
        In the dtype of the training data (float32 or float64).
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_,
    feature_names_in_
        As in scikit-learn.
    """

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: Any = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: Any = 10,
        max_fun: int = 15000,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss="log_loss",
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
        )

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple:
        X, y = _validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _score_function(self, y: Any, y_pred: Any, sample_weight: Any = None) -> float:
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _output_to_prediction(self, y_pred: np.ndarray) -> np.ndarray:
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict(self, X: Any) -> np.ndarray:
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        check_is_fitted(self)
        return self._output_to_prediction(self._forward_pass_fast(X))

    @available_if(lambda est: est._check_solver())
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first call.

        Returns
        -------
        self : object
        """
        self._validate_params()
        with _Transaction(self) as txn:
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
            return self._fit(X, y, sample_weight, incremental=True, txn=txn)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``self.predict(X)`` against y, as scikit-learn's; X, y and
        sample_weight are checked before predicting."""
        self._check_score_args(X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, shape (n_samples, n_classes)."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            Probabilities of the classes, in the order of ``classes_``.
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, scikit-learn's ``MLPRegressor`` compiled.

    The same parameters, defaults, attributes and results as
    :class:`sklearn.neural_network.MLPRegressor` (see the module docstring for the
    deliberate differences and the kept quirks). It minimises half the squared
    error (identity output) or half the Poisson deviance (exp output), plus an L2
    penalty ``alpha``, by L-BFGS, SGD or Adam.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
    warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
    beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in :class:`MLPClassifier` and scikit-learn.

    Attributes
    ----------
    coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, t_, n_iter_, n_layers_, n_outputs_, out_activation_,
    n_features_in_, feature_names_in_
        As in scikit-learn; weights in the dtype of the training data.
    """

    _parameter_constraints: ClassVar[dict] = dict(_skl_nn.MLPRegressor._parameter_constraints)

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: Any = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: Any = 10,
        max_fun: int = 15000,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss=loss,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
        )

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple:
        X, y = _validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.dtype.kind not in "biuf":
            # Strings pass scikit-learn's checks and fail in its loss (a UFuncTypeError).
            raise TypeError(
                "MLPRegressor needs numeric targets, got y of dtype %s: convert y to "
                "numbers first." % y.dtype
            )
        # An object y is checked for NaN only, then converted: infinities get through.
        with np.errstate(invalid="ignore", over="ignore"):
            assert_all_finite(y, input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _score_function(self, y: Any, y_pred: Any, sample_weight: Any = None) -> float:
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _output_to_prediction(self, y_pred: np.ndarray) -> np.ndarray:
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def predict(self, X: Any) -> np.ndarray:
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values, in the weights' dtype (or float64 for float64 X).
        """
        check_is_fitted(self)
        return self._output_to_prediction(self._forward_pass_fast(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of ``self.predict(X)`` against y, as scikit-learn's; X, y and
        sample_weight are checked before predicting."""
        self._check_score_args(X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    # scikit-learn's regressor checks ``est._check_solver`` without calling it, so
    # partial_fit is always available on the regressor: kept for parity.
    @available_if(lambda est: est._check_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        self._validate_params()
        with _Transaction(self) as txn:
            return self._fit(X, y, sample_weight, incremental=True, txn=txn)


def _check_partial_fit_first_call(clf: Any, classes: Any = None) -> bool:
    """True on the first call to partial_fit (then sets ``classes_``), as scikit-learn."""
    if getattr(clf, "classes_", None) is None and classes is None:
        raise ValueError("classes must be passed on the first call to partial_fit.")
    if classes is not None:
        if getattr(clf, "classes_", None) is not None:
            if not np.array_equal(clf.classes_, unique_labels(classes)):
                raise ValueError(
                    "`classes=%r` is not the same as on last call "
                    "to partial_fit, was: %r" % (classes, clf.classes_)
                )
        else:
            clf.classes_ = unique_labels(classes)
            return True
    return False
