"""Drop-in replacements for scikit-learn's MLPRegressor and MLPClassifier.

:class:`MLPRegressor` and :class:`MLPClassifier` take the same parameters, have the
same defaults, fitted attributes, methods and errors as the installed
scikit-learn's, and, given the same data, hyper-parameters and an integer
``random_state``, produce the same fitted model up to floating-point rounding:
the weights are drawn from the same generator in the same order, the rows are
shuffled and the validation set split by the same calls, and the learning-rate
and stopping rules are the same. All the arithmetic runs in fastbp's engine
(:mod:`fastbp.engine`): compiled chunks of steps for 'sgd' and 'adam', one
compiled loss-and-gradient per function evaluation for 'lbfgs' (driven by SciPy's
L-BFGS-B exactly as scikit-learn drives it).

The package: :mod:`._estimators` (the two classes), :mod:`._base` (what they
share: fitting, prediction), :mod:`._solvers` (L-BFGS and the stochastic
solvers' epochs, on :class:`fastbp.engine.Trainer`; the optimizers themselves are
:mod:`fastbp.engine.optimizers`), :mod:`._transaction` (rejected calls change
nothing; the last finite epoch comes back), :mod:`._checks` (argument checks).

Differences from scikit-learn, all deliberate:

* float32 input is trained in float32 with every solver, 'lbfgs' included
  (scikit-learn's L-BFGS path leaves float64 weights after a float32 fit). A
  warm start or ``partial_fit`` trains on in the dtype of the fitted weights.
* Sparse input is accepted, as by scikit-learn, and never densified: fit and
  predict read the rows of a CSR matrix where they are (the first layer's
  products are sparse x dense, as scikit-learn's). CSC is converted to CSR once
  (a copy of its stored entries; scikit-learn slices it as it is), other formats
  as scikit-learn converts them. Unsorted indices and duplicate entries are used
  as they are (duplicates add up, as in ``X @ W``). Index arrays that do not fit
  the matrix's shape are refused with a ValueError naming X (scikit-learn
  does not check them).
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
  When nothing changes between epochs, they run several to a compiled chunk (up
  to about 0.1 s of them, and never past the first epoch where the stopping rule
  could fire): the epochs that the interrupted chunk completed are in the
  weights, but not in ``n_iter_``, ``t_`` and ``loss_curve_``, and the chunk's row
  orders were drawn from ``random_state`` (scikit-learn counts and draws every
  epoch it started).
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
* ``dropout`` (fastbp's own; scikit-learn issue #6175): inverted dropout on the
  hidden layers, one rate or one per hidden layer, in [0, 1); default 0, which is
  the fit without it, bit for bit (nothing extra is drawn or compiled). Only for
  'sgd' and 'adam': with 'lbfgs' it is refused (ValueError, estimator unchanged),
  because L-BFGS minimises a fixed function (its line search and curvature pairs
  compare values of it), and dropout makes every evaluation a different random
  function. ``loss_`` and ``loss_curve_`` are the training loss of the
  dropped-out network; predictions and validation scores use the whole network.
  The masks come from one draw from ``random_state`` (after the validation
  split), then are a hash of that draw, the step, the row's values and the unit:
  fits repeat bit for bit, and a row of integer sample weight k trains as k
  copies of it would (identical rows in a batch share their masks).

fastbp's own features, each off by default (the defaults give scikit-learn's
results), from what scikit-learn's users asked for (see the README, "Beyond scikit-learn's MLP"):

* ``class_weight`` on MLPClassifier (None, 'balanced' or a dict), as in
  LogisticRegression: the fit with ``sample_weight`` times the class weights.
* ``validation_data=(X_val, y_val[, sample_weight_val])`` on fit and partial_fit:
  the early-stopping validation set in place of the ``validation_fraction``
  split; partial_fit then does early stopping across calls, and ``stopped_``
  says when the stopping rule fired (the weights are then the best epoch's).
* ``to_sklearn()``: the fitted scikit-learn estimator with the same weights.
* ONNX export: ``import fastbp.onnx`` registers both estimators with skl2onnx's
  MLP converters (``skl2onnx.to_onnx(est, X)``); extra ``fastbp[onnx]``.
* ``progress=True``: a tqdm bar of the epochs when stderr is a terminal.

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

from fastbp.sklearn._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
