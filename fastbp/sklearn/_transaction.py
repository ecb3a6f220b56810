"""Rejected calls change nothing; a diverged fit goes back to its last finite epoch."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastbp import engine

_MISSING = object()


class Transaction:
    """Undo what fit or partial_fit did to the estimator if they raise before training.

    Checking the arguments sets attributes on the way (``n_features_in_``,
    ``classes_``, fresh weights, an optimizer, draws from a ``RandomState``
    passed as ``random_state``): a call that fails before :meth:`commit` (the
    first kernel call) leaves the estimator exactly as it was, attribute for
    attribute. Nothing is modified in place before that point, so a shallow copy
    of ``__dict__`` is the whole state to put back.
    """

    def __init__(self, est: Any) -> None:
        self.est = est
        self.open = True

    def __enter__(self) -> Transaction:
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


class Checkpoint:
    """The training state after the last epoch that ended with finite weights.

    The weights and optimizer are an :class:`fastbp.engine.Snapshot`; the
    estimator's bookkeeping (iteration count, losses, validation scores, best
    weights) is saved with them.
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

    def __init__(self, est: Any, params: np.ndarray, opt: engine.Optimizer) -> None:
        self.est = est
        self.snapshot = engine.Snapshot(params, opt)
        self.save_if_finite()

    def save_if_finite(self) -> None:
        est = self.est
        scores = getattr(est, "validation_scores_", None)
        self.snapshot.save_if_finite(
            (
                {name: getattr(est, name, _MISSING) for name in self.SCALARS},
                len(est.loss_curve_),
                None if scores is None else len(scores),
            )
        )

    def restore(self, bookkeeping: bool) -> None:
        """Weights and optimizer back; with ``bookkeeping``, the estimator's iteration
        count, losses, validation scores and best weights too."""
        saved = self.snapshot.restore()
        if saved is None or not bookkeeping:  # None: nothing finite to go back to
            return
        scalars, n_losses, n_scores = saved
        for name, value in scalars.items():
            if value is _MISSING:
                self.est.__dict__.pop(name, None)
            else:
                setattr(self.est, name, value)
        del self.est.loss_curve_[n_losses:]
        if n_scores is not None:
            del self.est.validation_scores_[n_scores:]
