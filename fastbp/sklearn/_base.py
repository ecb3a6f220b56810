"""What MLPRegressor and MLPClassifier share: parameters, fitting, prediction."""

# Messages are kept byte for byte as scikit-learn formats them (%-formatting).
# ruff: noqa: UP031

from __future__ import annotations

import copy
import functools
import itertools
import numbers
from typing import Any, ClassVar

import numpy as np
import scipy.sparse
from sklearn import neural_network as _skl_nn
from sklearn.base import BaseEstimator, is_classifier
from sklearn.neural_network._base import ACTIVATIONS as _SKLEARN_ACTIVATIONS
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_consistent_length, check_is_fitted

from fastbp import engine, kernels
from fastbp._threads import check_threads
from fastbp._validation import all_finite
from fastbp.engine.init import glorot_uniform
from fastbp.engine.sparse import check_csr
from fastbp.sklearn._checks import (
    check_architecture,
    check_dropout,
    check_hidden_layer_sizes,
    check_parameter_count,
    check_validation_request,
    validate,
)
from fastbp.sklearn._solvers import fit_lbfgs, fit_stochastic
from fastbp.sklearn._transaction import Transaction

STOCHASTIC_SOLVERS = ("sgd", "adam")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# scikit-learn's out_activation_ -> the loss it is the canonical output of.
_LOSS_OF_OUTPUT = {
    entry.out_activation: entry for entry in kernels.LOSSES.values() if entry.out_activation
}


@functools.lru_cache(maxsize=64)
def _layout_of(sizes: tuple[int, ...], activation: str, out_activation: str) -> engine.Layout:
    """One layout per architecture (cached: predicting one row at a time, building
    it would take longer than the forward pass). Never modified once built."""
    loss = _LOSS_OF_OUTPUT[out_activation]
    activations = [kernels.ACTIVATIONS[activation].code] * (len(sizes) - 1)
    activations[-1] = kernels.ACTIVATIONS[loss.layer_activation].code
    return engine.Layout(sizes, activations, loss.code, packing="packed")


class _BaseMLP(BaseEstimator):
    """What MLPRegressor and MLPClassifier share (not scikit-learn's private base)."""

    _parameter_constraints: ClassVar[dict] = {
        **_skl_nn.MLPRegressor._parameter_constraints,
        # The registry's activations (scikit-learn's four, and any fastbp adds).
        "activation": [StrOptions(set(kernels.ACTIVATIONS))],
        # fastbp's own: threads for this estimator's fits and predictions (None:
        # fastbp's budget, fastbp.thread_info()).
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        # fastbp's own: dropout on the hidden layers (one rate, or one per layer,
        # checked against the layers in fit: fastbp.engine.dropout.check_rates).
        "dropout": [Interval(numbers.Real, 0, 1, closed="left"), "array-like"],
        # fastbp's own: a tqdm bar of the epochs when stderr is a terminal.
        "progress": ["boolean"],
    }
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
        n_threads: int | None,
        dropout: Any = 0.0,
        progress: bool = False,
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
        self.n_threads = n_threads
        self.dropout = dropout
        self.progress = progress

    def _validate_params(self) -> None:
        super()._validate_params()
        # scikit-learn's Interval takes True for 1: fastbp's thread counts refuse bools.
        check_threads("n_threads", self.n_threads)

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
        factor = kernels.ACTIVATIONS[self.activation].init_factor
        self.coefs_, self.intercepts_ = glorot_uniform(
            layer_units, dtype, self._random_state, factor
        )
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in STOCHASTIC_SOLVERS:
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
        txn: Transaction | None = None,
        validation_data: Any = None,
    ) -> Any:
        if txn is None:  # a direct call: the public methods open the transaction
            with Transaction(self) as txn:
                return self._fit(X, y, sample_weight, incremental, txn, validation_data)
        hidden_layer_sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        check_dropout(self, len(hidden_layer_sizes))
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        check_validation_request(self, validation_data)
        X, y, labels = self._validate_input(X, y, incremental, reset=first_pass)
        if scipy.sparse.issparse(X):
            # Checked (index arrays, not only values) and made CSR once, before
            # anything indexes it: see fastbp.engine.sparse for what is copied.
            X = check_csr("X", X, X.dtype)
        n_features = X.shape[1]
        if getattr(self, "class_weight", None) is not None:
            # In float64, as a user's sample_weight * class weights would be (then in
            # X's dtype below).
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            factor = self._class_sample_weight(labels, sample_weight, incremental)
            if sample_weight is None:
                sample_weight = factor
            else:
                with np.errstate(invalid="ignore"):  # infinite weight of a 0-weight class
                    sample_weight = np.where(sample_weight == 0, 0.0, sample_weight * factor)
        if sample_weight is not None:
            with np.errstate(invalid="ignore", over="ignore"):  # as in _validate_data
                sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features, *hidden_layer_sizes, self.n_outputs_]
        check_parameter_count(layer_units, self.hidden_layer_sizes)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        else:
            check_architecture(self, layer_units)
        validation = None if validation_data is None else self._validation_set(validation_data)
        if self.solver in STOCHASTIC_SOLVERS:
            diverged = fit_stochastic(self, X, y, sample_weight, incremental, txn, validation)
        else:
            diverged = fit_lbfgs(self, X, y, sample_weight, txn)
        if diverged or not all(
            all_finite(w) for w in itertools.chain(self.coefs_, self.intercepts_)
        ):
            # scikit-learn's error, word for word; the weights are finite, though.
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _validation_set(self, validation_data: Any) -> tuple:
        """``validation_data`` as (X_val, y_val, sample_weight_val or None), checked
        against the network as fitted so far: its columns and feature names, its
        classes (classifier) or number of outputs (regressor). Errors name
        ``validation_data``."""
        X_val, y_val, *rest = validation_data
        sw_val = rest[0] if rest else None
        try:
            X_val, y_val = validate(
                self,
                X_val,
                y_val,
                reset=False,
                accept_sparse=["csr", "csc"],
                multi_output=True,
                y_numeric=not is_classifier(self),
                dtype=(np.float64, np.float32),
            )
            y_val = self._validation_targets(y_val)
            if sw_val is not None:
                with np.errstate(invalid="ignore", over="ignore"):
                    sw_val = _check_sample_weight(sw_val, X_val)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"validation_data: {exc}") from exc
        return X_val, y_val, sw_val

    def _layout(self) -> engine.Layout:
        """The engine's layout of the fitted network (scikit-learn's packed order)."""
        sizes = (self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_))
        return _layout_of(sizes, self.activation, self.out_activation_)

    def _engine_state(self, dtype: Any = None) -> tuple[engine.Layout, np.ndarray]:
        """(layout, a new flat parameter vector) of the fitted network, in ``dtype``
        (default: the weights' own)."""
        layout = self._layout()
        dtype = self.coefs_[0].dtype if dtype is None else dtype
        return layout, layout.pack(self.coefs_, self.intercepts_, dtype)

    def _set_params(self, layout: engine.Layout, params: np.ndarray) -> None:
        """``coefs_`` and ``intercepts_`` become views of the flat ``params``."""
        self.coefs_, self.intercepts_ = layout.views(params)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, *, validation_data: Any = None) -> Any:
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
        validation_data : tuple (X_val, y_val) or (X_val, y_val, sample_weight_val), \
default=None
            fastbp's own: the validation set of early stopping (solver 'sgd' or
            'adam' with ``early_stopping=True``), in place of the
            ``validation_fraction`` split: all of X trains. X_val must have X's
            columns, y_val only classes (or the number of outputs) of y.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        with Transaction(self) as txn:
            return self._fit(X, y, sample_weight, False, txn, validation_data)

    def _check_score_args(self, X: Any, y: Any, sample_weight: Any) -> None:
        """What score checks before predicting: X as predict does, then the lengths
        as scikit-learn's metrics do first, with their message (scikit-learn's score
        predicts before it finds a length mismatch)."""
        check_is_fitted(self)
        validate(self, X, accept_sparse=["csr", "csc"], reset=False)
        check_consistent_length(y, X, sample_weight)

    def _check_solver(self) -> bool:
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    # -- export ----------------------------------------------------------------------

    # Fitted state scikit-learn's estimators have besides the public attributes.
    _SKLEARN_PRIVATE = (
        "_label_binarizer",
        "_best_coefs",
        "_best_intercepts",
        "_no_improvement_count",
    )
    # fastbp's own fitted attributes, which scikit-learn's estimators do not have.
    _FASTBP_ATTRIBUTES = ("stopped_",)

    def to_sklearn(self) -> Any:
        """The fitted model as scikit-learn's estimator of the same name.

        The result has the same weights (copies, in their dtype), classes,
        output activation and other fitted attributes, and the parameters
        scikit-learn's estimator takes (fastbp's own, such as ``n_threads`` and
        ``class_weight``, are left out). Its predictions equal fastbp's (see the
        tests for where float rounding may differ). It does not share the
        optimizer state: a ``partial_fit`` on it starts a fresh optimizer.

        Returns
        -------
        sklearn.neural_network.MLPClassifier or MLPRegressor
            A new fitted estimator; this one is not changed.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If this estimator is not fitted.
        ValueError
            If its activation is one of fastbp's that scikit-learn does not have.
        """
        check_is_fitted(self)
        cls = getattr(_skl_nn, type(self).__name__)
        if self.activation not in _SKLEARN_ACTIVATIONS:
            raise ValueError(
                "activation=%r is fastbp's own: scikit-learn's %s has %s."
                % (self.activation, cls.__name__, sorted(_SKLEARN_ACTIVATIONS))
            )
        names = cls().get_params(deep=False)
        params = {k: v for k, v in self.get_params(deep=False).items() if k in names}
        est = cls(**copy.deepcopy(params))
        for name, value in vars(self).items():
            public = name.endswith("_") and not name.startswith("_")
            if (public and name not in self._FASTBP_ATTRIBUTES) or name in self._SKLEARN_PRIVATE:
                setattr(est, name, copy.deepcopy(value))
        # Contiguous copies, not views of one flat vector.
        est.coefs_ = [np.array(c) for c in self.coefs_]
        est.intercepts_ = [np.array(b) for b in self.intercepts_]
        return est

    # -- prediction ------------------------------------------------------------------

    def _forward_pass_fast(self, X: Any, check_input: bool = True) -> np.ndarray:
        if check_input:
            ready = self._ready_input(X)
            X = (
                ready
                if ready is not None
                else validate(self, X, accept_sparse=["csr", "csc"], reset=False)
            )
        x_dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
        dtype = np.result_type(x_dtype, self.coefs_[0].dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        layout, params = self._engine_state(dtype)
        return engine.forward(layout, params, X, n_threads=self.n_threads)

    def _ready_input(self, X: Any) -> np.ndarray | None:
        """X itself when scikit-learn's checks would pass it through unchanged, else None.

        The fast path of prediction (one row at a time, in serving): a 2-D float32
        or float64 ndarray with at least one row, the fitted number of columns and
        only finite values, given to an estimator fitted without feature names.
        Anything else goes through ``validate_data``, with scikit-learn's errors
        and warnings.
        """
        if (
            type(X) is not np.ndarray
            or X.ndim != 2
            or X.dtype not in _FLOATS
            or X.shape[0] == 0
            or X.shape[1] != getattr(self, "n_features_in_", -1)
            or hasattr(self, "feature_names_in_")
            or not all_finite(X)
        ):
            return None
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
