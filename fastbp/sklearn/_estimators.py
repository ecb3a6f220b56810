"""fastbp's MLPClassifier and MLPRegressor."""

# Messages are kept byte for byte as scikit-learn formats them (%-formatting).
# ruff: noqa: UP031

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn import neural_network as _skl_nn
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import assert_all_finite, column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from fastbp.sklearn._base import _BaseMLP
from fastbp.sklearn._checks import validate
from fastbp.sklearn._transaction import Transaction

__all__ = ["MLPClassifier", "MLPRegressor"]


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
    n_threads : int >= 1 or None, default=None
        Threads for this estimator's fits and predictions (fastbp's own; an
        explicit count wins over every limit). None: fastbp's thread budget, the
        CPUs the process may use (:func:`fastbp.thread_info` says how many, and why).
    progress : bool, default=False
        fastbp's own: a tqdm bar of fit's epochs ('lbfgs': iterations) on stderr
        with the loss and, with early stopping, the validation score; shown only
        when stderr is a terminal (and not by partial_fit). ``verbose`` prints
        scikit-learn's lines all the same.
    class_weight : dict, 'balanced' or None, default=None
        fastbp's own, as in scikit-learn's LogisticRegression: each sample's weight
        is multiplied by its class's weight, ``{label: weight}`` (1 for a class not
        in the dict; a key that is no class is an error) or 'balanced',
        ``n_samples / (n_classes * np.bincount(y))`` with the classes counted by
        sample weight. A fit is the fit with
        ``sample_weight=compute_sample_weight(class_weight, y)`` (times the sample
        weights, for a dict), bit for bit. partial_fit takes a dict only, as
        SGDClassifier: with 'balanced' it is unavailable (AttributeError).
    dropout : float in [0, 1) or sequence of floats, default=0.0
        fastbp's own: inverted dropout on the hidden layers while training with
        'sgd' or 'adam' (refused with 'lbfgs'): each hidden unit of each sample of
        a batch is dropped with probability ``dropout`` (or its layer's entry of a
        sequence of one rate per hidden layer), the kept ones scaled by
        ``1 / (1 - rate)``; prediction drops nothing. The masks come from a
        generator seeded by one draw from ``random_state``, so fits repeat bit for
        bit. 0 trains exactly as without it (and draws nothing).

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
    stopped_ : bool
        fastbp's own, set by 'sgd' and 'adam': True when the stopping rule
        (``n_iter_no_change`` epochs without improving the validation score, or
        the training loss without early stopping) ended the last call to fit or
        partial_fit. A partial_fit with ``validation_data`` then leaves the best
        epoch's weights, as fit does; another call trains on from them, with a
        fresh count of epochs without improvement.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        # fastbp's own, as in scikit-learn's linear models.
        "class_weight": [StrOptions({"balanced"}), dict, None],
    }

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
        n_threads: int | None = None,
        progress: bool = False,
        class_weight: Any = None,
        dropout: Any = 0.0,
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
            n_threads=n_threads,
            progress=progress,
            dropout=dropout,
        )
        self.class_weight = class_weight

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple:
        X, y = validate(
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
        labels = y
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y, labels

    def _class_sample_weight(
        self, y: np.ndarray, sample_weight: np.ndarray | None, incremental: bool
    ) -> np.ndarray:
        """Each sample's weight from ``class_weight``, as scikit-learn's
        LogisticRegression computes it: ``compute_class_weight(class_weight,
        classes=classes_, y=y, sample_weight=sample_weight)`` at each sample's class.
        'balanced' thus counts the classes by weight (a weight of 2 is a repeated
        sample); without sample weights, and always with a dict, this is
        ``compute_sample_weight(class_weight, y)``, which multilabel targets get.
        On partial_fit (a dict only: see ``_check_partial_fit``) a batch need not
        hold every class of ``classes_``."""
        class_weight = self.class_weight
        if y.ndim != 1:
            return compute_sample_weight(class_weight, y)
        if isinstance(class_weight, dict):
            # scikit-learn ignores a key that no class has: a typo would weigh nothing.
            known = set(self.classes_.tolist())
            unknown = [key for key in class_weight if key not in known]
            if unknown:
                where = "classes_" if incremental else "y"
                raise ValueError(
                    f"class_weight has classes {unknown} that are not in {where} "
                    f"(classes {self.classes_.tolist()})."
                )
        # A class of weight 0 gets an infinite 'balanced' weight, never used.
        with np.errstate(divide="ignore"):
            weights = compute_class_weight(
                class_weight, classes=self.classes_, y=y, sample_weight=sample_weight
            )
        return weights[np.searchsorted(self.classes_, y)]

    def _validation_targets(self, y: np.ndarray) -> np.ndarray:
        """y_val checked against the fitted classes (see ``_validation_set``)."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self._label_binarizer.y_type_.startswith("multilabel"):
            if type_of_target(y) != "multilabel-indicator" or y.shape[1] != len(self.classes_):
                raise ValueError(
                    f"y_val must be a label indicator matrix of {len(self.classes_)} "
                    f"columns, as y, got {type_of_target(y)} targets of shape {y.shape}."
                )
            return y
        unknown = np.setdiff1d(unique_labels(y), self.classes_)
        if len(unknown):
            raise ValueError(
                f"y_val has classes {unknown.tolist()} that the classifier does not "
                f"have (classes_ {self.classes_.tolist()})."
            )
        return y

    def _score_function(self, y: Any, y_pred: Any, sample_weight: Any = None) -> float:
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _output_to_prediction(self, y_pred: np.ndarray) -> np.ndarray:
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        lb = self._label_binarizer
        # LabelBinarizer.inverse_transform's own rules for the common cases, without
        # its checks (a third of a one-row predict): the first largest output for
        # multiclass, output > (pos_label + neg_label) / 2 for binary.
        if lb.pos_label == 1 and lb.neg_label == 0 and not lb.sparse_input_:
            if lb.y_type_ == "multiclass":
                return lb.classes_.take(y_pred.argmax(axis=1), mode="clip")
            if lb.y_type_ == "binary" and y_pred.ndim == 1 and len(lb.classes_) == 2:
                return lb.classes_[(y_pred > 0.5).astype(int)]
        return lb.inverse_transform(y_pred)

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

    def _check_partial_fit(self) -> bool:
        """partial_fit's availability: a stochastic solver, and no 'balanced' class
        weights (SGDClassifier's message; an AttributeError, as for 'lbfgs', so that
        ``hasattr(est, "partial_fit")`` tells)."""
        self._check_solver()
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise AttributeError(
                "class_weight 'balanced' is not supported for "
                "partial_fit. In order to use 'balanced' weights,"
                " use compute_class_weight('balanced', "
                "classes=classes, y=y). "
                "In place of y you can use a large enough sample "
                "of the full training set target to properly "
                "estimate the class frequency distributions. "
                "Pass the resulting weights as the class_weight "
                "parameter."
            )
        return True

    @available_if(lambda est: est._check_partial_fit())
    def partial_fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        classes: Any = None,
        *,
        validation_data: Any = None,
    ) -> MLPClassifier:
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first call.
        validation_data : tuple (X_val, y_val[, sample_weight_val]), default=None
            fastbp's own: early stopping across calls (see :meth:`fit` and the
            ``stopped_`` attribute); required with ``early_stopping=True``.

        Returns
        -------
        self : object
        """
        self._validate_params()
        with Transaction(self) as txn:
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
            return self._fit(X, y, sample_weight, True, txn, validation_data)

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
    beta_1, beta_2, epsilon, n_iter_no_change, max_fun, n_threads, progress, dropout
        As in :class:`MLPClassifier` (and scikit-learn).

    Attributes
    ----------
    coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, t_, n_iter_, n_layers_, n_outputs_, out_activation_,
    n_features_in_, feature_names_in_
        As in scikit-learn; weights in the dtype of the training data.
    stopped_ : bool
        As in :class:`MLPClassifier`.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_skl_nn.MLPRegressor._parameter_constraints,
        "progress": ["boolean"],
        "dropout": _BaseMLP._parameter_constraints["dropout"],
    }

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
        n_threads: int | None = None,
        progress: bool = False,
        dropout: Any = 0.0,
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
            n_threads=n_threads,
            progress=progress,
            dropout=dropout,
        )

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple:
        X, y = validate(
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
        return X, y, None

    def _validation_targets(self, y: np.ndarray) -> np.ndarray:
        """y_val checked against the fitted outputs (see ``_validation_set``)."""
        if y.dtype.kind not in "biuf":
            raise TypeError("y_val must be numeric, got dtype %s." % y.dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if n_outputs != self.n_outputs_:
            raise ValueError("y_val has %d output(s), y has %d." % (n_outputs, self.n_outputs_))
        return y

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
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, validation_data: Any = None
    ) -> MLPRegressor:
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        validation_data : tuple (X_val, y_val[, sample_weight_val]), default=None
            As in :meth:`MLPClassifier.partial_fit`.

        Returns
        -------
        self : object
        """
        self._validate_params()
        with Transaction(self) as txn:
            return self._fit(X, y, sample_weight, True, txn, validation_data)


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
