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
  (scikit-learn's L-BFGS path leaves float64 weights after a float32 fit).
* Sparse input is accepted, as by scikit-learn, and densified for training.

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
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastbp import _loop, kernels
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

    def forward(self, x: np.ndarray, threads_set: bool = False) -> np.ndarray:
        """Output layer for x (n, n_features), C-contiguous in the net's dtype.

        ``threads_set``: the caller is inside :func:`compute_threads` already.
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
        with contextlib.nullcontext() if threads_set else compute_threads():
            for start in range(0, n, capacity):
                m = min(capacity, n - start)
                _loop.forward_pass(
                    x[start : start + m],
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


def _dense(x: Any, dtype: np.dtype) -> np.ndarray:
    """x as a C-contiguous dense array of ``dtype``."""
    if scipy.sparse.issparse(x):
        x = x.toarray()
    return np.ascontiguousarray(x, dtype=dtype)


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

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> Any:
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_features = X.shape[1]
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features, *hidden_layer_sizes, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, y, sample_weight, incremental)
        elif self.solver == "lbfgs":
            self._fit_lbfgs(X, y, sample_weight)
        if not all(np.isfinite(w).all() for w in itertools.chain(self.coefs_, self.intercepts_)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _set_params_from(self, net: _Net, params: np.ndarray) -> None:
        self.coefs_, self.intercepts_ = net.unpack(params)

    def _fit_lbfgs(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        net = _Net(self, X.dtype)
        dtype = net.dtype
        x = _dense(X, dtype)
        yy = np.ascontiguousarray(y, dtype=dtype)
        sw = np.empty(0, dtype) if sample_weight is None else _dense(sample_weight, dtype)
        n = x.shape[0]
        acts = np.empty(n * net.n_units, dtype=dtype)
        deltas = np.empty_like(acts)
        grads = np.zeros(net.n_params, dtype=dtype)
        a_off = net.act_offsets(n)
        params = net.params
        threads = _threads_for(net.sizes, n)
        alpha = float(self.alpha)

        def loss_grad(packed: np.ndarray) -> tuple[float, np.ndarray]:
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
            # A new array each call: SciPy keeps references to the gradients it gets.
            return value, grads.astype(np.float64)

        with compute_threads():
            opt_res = scipy.optimize.minimize(
                loss_grad,
                params.astype(np.float64),
                method="L-BFGS-B",
                jac=True,
                options={
                    "maxfun": self.max_fun,
                    "maxiter": self.max_iter,
                    "gtol": self.tol,
                    **_lbfgs_print_option(self.verbose),
                },
            )
        self.n_iter_ = _check_lbfgs_result(opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        final = np.asarray(opt_res.x).astype(dtype)
        self._set_params_from(net, final)

    def _fit_stochastic(
        self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None, incremental: bool
    ) -> None:
        net = _Net(self, X.dtype)
        dtype = net.dtype
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _Optimizer(self.solver, self, net.n_params, dtype)
        opt = self._optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
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
            x_val = _dense(X_val, dtype)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            x_val = y_val = sample_weight_val = None

        x = _dense(X_train, dtype)
        yy = np.ascontiguousarray(y_train, dtype=dtype)
        sw = (
            np.empty(0, dtype)
            if sample_weight_train is None
            else _dense(sample_weight_train, dtype)
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
        threads = _threads_for(net.sizes, batch_size)
        no_order = np.empty((0, n_samples), dtype=np.int64)
        alpha = float(self.alpha)
        max_steps = n_samples  # at least one epoch's batches
        no_stop = np.zeros(1, dtype=np.uint8)  # one epoch per call: Ctrl-C waits for it
        # One thread setup for the whole fit (it costs tens of microseconds).
        with compute_threads():
            try:
                self.n_iter_ = 0
                for _ in range(self.max_iter):
                    if self.shuffle:
                        # What sklearn.utils.shuffle(sample_idx, random_state=rs) does,
                        # without its argument checks: the same draws, the same result.
                        perm = np.arange(n_samples)
                        self._random_state.shuffle(perm)
                        sample_idx = sample_idx[perm]
                        orders = sample_idx.astype(np.int64).reshape(1, -1)
                    else:
                        orders = no_order
                    loss_sums = np.zeros(1)
                    position[0] = position[1] = 0
                    position[2] = opt.t
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
                        no_stop,
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
                        if opt.trigger_stopping(msg, self.verbose):
                            break
                        self._no_improvement_count = 0
                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn(
                            "Stochastic Optimizer: Maximum iterations (%d) "
                            "reached and the optimization hasn't converged yet." % self.max_iter,
                            ConvergenceWarning,
                            stacklevel=3,
                        )
            except KeyboardInterrupt:
                warnings.warn("Training interrupted by user.", stacklevel=3)
        self._set_params_from(net, params)
        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

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
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

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
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        x_dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
        dtype = np.result_type(x_dtype, self.coefs_[0].dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        net = _Net(self, dtype)
        return net.forward(_dense(X, dtype))

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
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
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
        X, y = validate_data(
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
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

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
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
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
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


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
