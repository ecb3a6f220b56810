"""The solvers: L-BFGS through SciPy, and the epochs of 'sgd' and 'adam'.

Both run on :mod:`fastbp.engine` (:class:`~fastbp.engine.Gradient` for L-BFGS,
:class:`~fastbp.engine.Trainer` for the stochastic solvers) and do between
epochs exactly what scikit-learn's ``_fit_stochastic`` does: the same iterations,
learning-rate rules, stopping rules, warnings and printed lines.
"""

# Messages are kept byte for byte as scikit-learn formats them (%-formatting).
# ruff: noqa: UP031

from __future__ import annotations

import contextlib
import itertools
import warnings
from typing import Any

import numpy as np
import scipy
import scipy.optimize
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastbp import engine
from fastbp._progress import terminal_progress_bar
from fastbp._threads import compute_threads
from fastbp._validation import all_finite
from fastbp.engine import optimizers
from fastbp.sklearn._checks import check_dropout, private, train_x
from fastbp.sklearn._transaction import Checkpoint, Transaction


def fit_lbfgs(
    est: Any, X: Any, y: np.ndarray, sample_weight: np.ndarray | None, txn: Transaction
) -> bool:
    """Train by L-BFGS-B; True if its result was not finite.

    Then the weights are those of its last iterate with finite weights (the
    starting point if none), and ``n_iter_`` and ``loss_`` are that iterate's.
    """
    layout, params = est._engine_state()  # in the weights' dtype: X's on a first fit
    dtype = params.dtype
    x = train_x(X, dtype)
    yy = private(y, dtype, "y")
    sw = (
        np.empty(0, dtype)
        if sample_weight is None
        else private(sample_weight, dtype, "sample_weight")
    )
    gradient = engine.Gradient(layout, x, yy, sw, float(est.alpha), est.n_threads)
    threads = compute_threads(layout.sizes, x.shape[0], est.n_threads)
    return minimize_lbfgs(est, layout, params, gradient, txn, threads)


def minimize_lbfgs(
    est: Any,
    layout: engine.Layout,
    params: np.ndarray,
    gradient: Any,
    txn: Transaction,
    threads: Any = None,
    callback: Any = None,
) -> bool:
    """SciPy's L-BFGS-B from ``params`` on ``gradient(packed) -> (J, dJ)`` (any front
    end's: one block here, a cluster's reduction in :mod:`fastbp.dask`); sets the
    weights, ``n_iter_`` and ``loss_`` as :func:`fit_lbfgs` says. ``threads``: a context
    held around the run; ``callback(x_k)`` after each iteration."""
    dtype = params.dtype
    start = params.astype(np.float64)
    # The last iterate with finite weights: (x, iteration, loss).
    last: list[Any] = [start.copy(), 0, None]

    def loss_grad(packed: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = gradient(packed)
        if last[2] is None:  # the loss at the starting point
            last[2] = value
        # A new array each call: SciPy keeps references to the gradients it gets.
        return value, grads.astype(np.float64)

    iteration = [0]
    bar = terminal_progress_bar(est.progress, est.max_iter, unit="iteration")

    def record(intermediate_result: Any) -> None:
        iteration[0] += 1
        if bar is not None:
            bar.set_postfix(loss=f"{intermediate_result.fun:.6g}", refresh=False)
            bar.update(1)
        x_k = intermediate_result.x
        with np.errstate(over="ignore"):
            finite = all_finite(x_k) and all_finite(x_k.astype(dtype))
        if finite:
            last[0][:] = x_k
            last[1] = iteration[0]
            last[2] = intermediate_result.fun
        if callback is not None:
            callback(x_k)

    txn.commit()
    with (
        threads if threads is not None else contextlib.nullcontext(),
        contextlib.nullcontext() if bar is None else bar,
    ):
        opt_res = scipy.optimize.minimize(
            loss_grad,
            start,
            method="L-BFGS-B",
            jac=True,
            callback=record,
            options={
                "maxfun": est.max_fun,
                "maxiter": est.max_iter,
                "gtol": est.tol,
                # (no iprint: SciPy >= 1.15 takes none, as scikit-learn passes it)
            },
        )
    est.n_iter_ = _check_lbfgs_result(opt_res, est.max_iter)
    est.loss_ = opt_res.fun
    with np.errstate(over="ignore"):
        final = np.asarray(opt_res.x).astype(dtype)
    diverged = not all_finite(final)
    if diverged:
        final = last[0].astype(dtype)
        est.n_iter_ = min(last[1], est.max_iter)
        est.loss_ = last[2]
    est._set_params(layout, final)
    return diverged


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


def _split_validation(est: Any, X: Any, y: np.ndarray, sample_weight: Any) -> tuple:
    """scikit-learn's early-stopping split: (X_train, y_train, sw_train, X_val, y_val,
    sw_val), the same calls on the same random state."""
    if est.validation_fraction == 0:
        # scikit-learn fails in train_test_split, with an error about its test_size.
        raise ValueError(
            "validation_fraction=0.0 leaves no validation set for early_stopping=True."
        )
    should_stratify = is_classifier(est) and est.n_outputs_ == 1
    stratify = y if should_stratify else None
    arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
    split = train_test_split(
        *arrays,
        random_state=est._random_state,
        test_size=est.validation_fraction,
        stratify=stratify,
    )
    X_train, X_val, y_train, y_val = split[:4]
    sw_train, sw_val = (None, None) if sample_weight is None else split[4:]
    if X_val.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    if is_classifier(est):
        y_val = est._label_binarizer.inverse_transform(y_val)
    return X_train, y_train, sw_train, X_val, y_val, sw_val


def fit_stochastic(
    est: Any,
    X: Any,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    incremental: bool,
    txn: Transaction,
    validation: tuple | None = None,
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

    ``validation`` (X_val, y_val, sample_weight_val), the user's validation set,
    replaces scikit-learn's split; with it, partial_fit does early stopping too:
    each call is one epoch, scored on it, and when the stopping rule fires the
    weights become the best ones and ``stopped_`` is True.
    """
    if est.early_stopping and incremental and validation is None:
        # Checked first, before the optimizer is touched (scikit-learn raises
        # this same error after creating one); its words, though fastbp's
        # partial_fit does early stopping with validation_data.
        raise ValueError("partial_fit does not support early_stopping=True")
    layout, params = est._engine_state()  # in the weights' dtype: X's on a first fit
    dtype = params.dtype
    if not incremental or not hasattr(est, "_optimizer"):
        est._optimizer = optimizers.from_estimator(est.solver, est, layout.n_params, dtype)
    opt = est._optimizer
    est._continue_stochastic()
    early_stopping = est.early_stopping
    if validation is not None:
        X_train, y_train, sw_train = X, y, sample_weight
        X_val, y_val, sw_val = validation
        x_val = train_x(X_val, dtype)
    elif early_stopping:
        X_train, y_train, sw_train, X_val, y_val, sw_val = _split_validation(
            est, X, y, sample_weight
        )
        x_val = train_x(X_val, dtype)
    else:
        X_train, y_train, sw_train = X, y, sample_weight
        x_val = y_val = sw_val = None

    x = train_x(X_train, dtype)
    yy = private(y_train, dtype, "y")
    sw = np.empty(0, dtype) if sw_train is None else private(sw_train, dtype, "sample_weight")
    n_samples = x.shape[0]
    if est.batch_size == "auto":
        batch_size = min(200, n_samples)
    else:
        if est.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than "
                "sample size. It is going to be clipped",
                stacklevel=3,
            )
        batch_size = int(np.clip(est.batch_size, 1, n_samples))

    dropout = _dropout(est, layout.n_layers - 1, incremental)
    sample_idx = np.arange(n_samples, dtype=int)

    def shuffle(orders: np.ndarray) -> None:
        # Each epoch, what sklearn.utils.shuffle(sample_idx, random_state=rs) does,
        # without its argument checks: the same draws, the same result.
        nonlocal sample_idx
        for order in orders:
            perm = np.arange(n_samples)
            est._random_state.shuffle(perm)
            sample_idx = sample_idx[perm]
            order[:] = sample_idx

    # Between two epochs the estimator must act (score, change the learning rate,
    # stop) after every epoch with a validation score, an invscaling rate or
    # partial_fit's single epoch; else the stopping rule (loss not improving for
    # n_iter_no_change epochs) can fire no sooner than this many epochs ahead, and
    # the epochs up to there run in one compiled chunk.
    each_epoch = early_stopping or incremental or opt.changes_each_epoch

    def epochs_ahead() -> int:
        return 1 if each_epoch else est.n_iter_no_change + 1 - est._no_improvement_count

    trainer = engine.Trainer(
        layout,
        params,
        x,
        yy,
        sw,
        batch_size,
        opt,
        float(est.alpha),
        shuffle=shuffle if est.shuffle else None,
        epochs_ahead=epochs_ahead,
        n_threads=est.n_threads,
        dropout=dropout,
    )
    txn.commit()
    opt.astype(dtype)  # weights set by hand in another dtype (after commit: in place)

    def validation_score() -> float:
        return _validation_score(est, layout, params, x_val, y_val, sw_val)

    return run_epochs(
        est,
        layout,
        params,
        opt,
        trainer.run(est.max_iter),
        n_samples,
        validation_score if early_stopping else None,
        incremental,
    )


def run_epochs(
    est: Any,
    layout: engine.Layout,
    params: np.ndarray,
    opt: optimizers.Optimizer,
    runs: Any,
    n_samples: int,
    validation_score: Any,
    incremental: bool,
    n_iter: int = 0,
) -> bool:
    """What scikit-learn does between epochs, for any front end's epochs.

    ``runs`` yields (count, losses) after epochs that left ``params`` and ``opt``
    updated in place (one :meth:`engine.Trainer.run`, or a cluster's rounds);
    ``validation_score()`` scores ``params`` on the validation rows (None without
    early stopping); ``n_iter``: epochs already run (a resumed fit). Returns True if
    the fit left non-finite weights.
    """
    early_stopping = validation_score is not None
    good = Checkpoint(est, params, opt)
    est.n_iter_ = n_iter
    est.stopped_ = stopping = False
    # (not for partial_fit: one bar per call of a loop would be a line per call)
    bar = terminal_progress_bar(est.progress and not incremental, est.max_iter)
    try:
        for _, losses in runs:
            # ``params`` are the last epoch's. Epochs come several at a time only
            # when nothing below changes training between them, and the stopping
            # rule cannot fire before the last (the trainer's epochs_ahead).
            est._set_params(layout, params)
            for loss in losses:
                stopping = _epoch_ends(est, opt, float(loss), n_samples, validation_score)
                if bar is not None:
                    _show_epoch(bar, est, early_stopping)
                if stopping or incremental:
                    break
                if est.n_iter_ == est.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet." % est.max_iter,
                        ConvergenceWarning,
                        stacklevel=3,
                    )
            good.save_if_finite()
            if stopping or incremental:
                break
    except KeyboardInterrupt:
        # Mid-epoch: the weights are those of the last complete step.
        warnings.warn("Training interrupted by user.", stacklevel=3)
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            runs.close()
        if bar is not None:
            bar.close()
        # Whatever ended the fit (an exception included), no weight is left
        # non-finite: back to the last epoch that ended with finite ones.
        diverged = not all_finite(params)
        if diverged:
            # With early stopping, scikit-learn's bookkeeping (the epochs run,
            # the validation scores) stays: fit ends with the best weights.
            # (partial_fit's epoch is undone whole: the call changes nothing.)
            good.restore(bookkeeping=incremental or not early_stopping)
        est._set_params(layout, params)
    est.stopped_ = stopping
    if early_stopping and incremental and not stopping:
        # partial_fit trains on from its latest weights, the best ones only once
        # the stopping rule fires; an error only if they are not finite.
        return diverged
    if early_stopping:
        if incremental:
            # Patience starts over from the best weights if training goes on.
            est._no_improvement_count = 0
        # As scikit-learn, the best weights; an error only if they are not finite
        # (a classifier's accuracy can improve on non-finite weights), and then
        # the best weights as of the last epoch that ended with finite ones.
        diverged = not all(
            all_finite(w) for w in itertools.chain(est._best_coefs, est._best_intercepts)
        )
        if diverged:
            good.restore(bookkeeping=True)
        est.coefs_ = est._best_coefs
        est.intercepts_ = est._best_intercepts
    return diverged


def _epoch_ends(
    est: Any, opt: optimizers.Optimizer, loss: float, n_samples: int, validation_score: Any
) -> bool:
    """scikit-learn's bookkeeping after an epoch of mean loss ``loss``; True to stop."""
    est.n_iter_ += 1
    est.loss_ = loss
    est.t_ += n_samples
    est.loss_curve_.append(est.loss_)
    if est.verbose:
        print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
    _update_no_improvement_count(est, validation_score)
    opt.iteration_ends(est.t_)
    if est._no_improvement_count <= est.n_iter_no_change:
        return False
    what = "Training loss" if validation_score is None else "Validation score"
    msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
        what, est.tol, est.n_iter_no_change
    )  # fmt: skip
    stopping = opt.trigger_stopping(msg, est.verbose)
    if not stopping:
        est._no_improvement_count = 0
    return stopping


def _dropout(est: Any, n_hidden: int, incremental: bool) -> engine.Dropout | None:
    """The fit's dropout, or None (then nothing is drawn: the fit is the one without).

    A fit draws the masks' key from ``est._random_state`` (after the validation
    split, before the shuffles); partial_fit goes on with the previous call's
    generator, so that each call draws new masks.
    """
    rates = check_dropout(est, n_hidden)
    if not rates.any():
        return None
    previous = getattr(est, "_dropout", None)
    if incremental and previous is not None and np.array_equal(previous.rates, rates):
        return previous
    key = est._random_state.randint(np.iinfo(np.int64).max, dtype=np.int64)
    est._dropout = engine.Dropout(rates, int(key))
    return est._dropout


def _show_epoch(bar: Any, est: Any, early_stopping: bool) -> None:
    """One more epoch on the progress bar, with its loss (and validation score)."""
    postfix = {"loss": f"{est.loss_:.6g}"}
    if early_stopping:
        postfix["val"] = f"{est.validation_scores_[-1]:.6g}"
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)


def _validation_score(
    est: Any,
    layout: engine.Layout,
    params: np.ndarray,
    x_val: np.ndarray,
    y_val: Any,
    sample_weight: Any,
) -> float:
    """The estimator's score of ``params`` on the validation rows (NaN for non-finite
    outputs); inside the trainer's run: its thread limits are in force."""
    outputs = engine.forward(layout, params, x_val, threads_set=True, n_threads=est.n_threads)
    y_pred = est._output_to_prediction(outputs)
    if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
        return np.nan
    return est._score_function(y_val, y_pred, sample_weight=sample_weight)


def _update_no_improvement_count(est: Any, validation_score: Any) -> None:
    if validation_score is not None:
        val_score = validation_score()
        est.validation_scores_.append(val_score)
        if est.verbose:
            print("Validation score: %f" % est.validation_scores_[-1])
        last_valid_score = est.validation_scores_[-1]
        if last_valid_score < (est.best_validation_score_ + est.tol):
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if last_valid_score > est.best_validation_score_:
            est.best_validation_score_ = last_valid_score
            est._best_coefs = [c.copy() for c in est.coefs_]
            est._best_intercepts = [i.copy() for i in est.intercepts_]
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if est.loss_curve_[-1] < est.best_loss_:
            est.best_loss_ = est.loss_curve_[-1]
