"""Optimizers: one small class each, as scikit-learn's ``_stochastic_optimizers``.

Each holds its hyper-parameters and its state (a float array ``state`` of shape
(k, n_params) in the parameters' dtype, and for Adam the step count ``t``), and
gives the compiled loop its bundle (:meth:`Optimizer.bundle`): the bundle's type
selects the compiled update (:mod:`fastbp._loop`). The update itself runs in
compiled code; what scikit-learn does between epochs (learning-rate schedules,
the adaptive rate's stopping rule) is here, with scikit-learn's messages.

A state can be copied out and back (:meth:`Optimizer.get_state` /
:meth:`Optimizer.set_state`): a snapshot, a checkpoint file, or another process
running the next steps from it.
"""

# Messages are kept byte for byte as scikit-learn formats them (%-formatting).
# ruff: noqa: UP031

from __future__ import annotations

from typing import Any

import numpy as np

from fastbp import _loop


class Optimizer:
    """Base class: the state and the between-epoch rules (none by default)."""

    #: The registry name (:data:`OPTIMIZERS`).
    name: str = ""
    #: Rows of ``state``.
    n_state: int = 0

    def __init__(self, n_params: int, dtype: Any) -> None:
        self.state = np.zeros((self.n_state, n_params), dtype=dtype)
        self.t = 0

    def bundle(self) -> Any:
        """What the compiled loop takes for this optimizer (a :mod:`fastbp._loop` bundle)."""
        raise NotImplementedError

    def after_steps(self, bundle: Any) -> None:
        """Read back what the compiled steps changed outside ``state`` (Adam's t)."""

    def iteration_ends(self, time_step: int) -> None:
        """Called after each epoch with the number of samples seen so far."""

    @property
    def changes_each_epoch(self) -> bool:
        """Whether :meth:`iteration_ends` changes the next epoch's steps."""
        return False

    def trigger_stopping(self, msg: str, verbose: Any) -> bool:
        """The training loss or validation score stopped improving: stop (True)?"""
        if verbose:
            print(msg + " Stopping.")
        return True

    def get_state(self) -> tuple[np.ndarray, int, float]:
        """A copy of everything the next step depends on: (state, t, learning rate)."""
        return self.state.copy(), self.t, self.learning_rate

    def set_state(self, saved: tuple[np.ndarray, int, float]) -> None:
        state, self.t, self.learning_rate = saved
        np.copyto(self.state, state)

    def astype(self, dtype: Any) -> None:
        """Keep the state in ``dtype`` (the parameters' dtype)."""
        if self.state.dtype != dtype:
            self.state = self.state.astype(dtype)


class FusedSGD(Optimizer):
    """fastbp.Network's plain gradient descent ``theta -= lr * dJ/dtheta``, fused into
    the backward pass (no state)."""

    name = "fused_sgd"

    def __init__(self, n_params: int, dtype: Any, lr: float = 0.5) -> None:
        super().__init__(n_params, dtype)
        self.learning_rate = float(lr)

    def bundle(self) -> _loop.FusedSGD:
        return _loop.FusedSGD(self.learning_rate)


class SGD(Optimizer):
    """scikit-learn's ``SGDOptimizer``: momentum or Nesterov momentum, and the
    'constant', 'invscaling' and 'adaptive' learning-rate schedules."""

    name = "sgd"
    n_state = 1

    def __init__(
        self,
        n_params: int,
        dtype: Any,
        learning_rate_init: float = 0.1,
        lr_schedule: str = "constant",
        momentum: float = 0.9,
        nesterov: bool = True,
        power_t: float = 0.5,
    ) -> None:
        super().__init__(n_params, dtype)
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.power_t = power_t

    def bundle(self) -> _loop.Momentum:
        return _loop.Momentum(
            float(self.learning_rate), float(self.momentum), self.nesterov, self.state[0]
        )

    def iteration_ends(self, time_step: int) -> None:
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    @property
    def changes_each_epoch(self) -> bool:
        return self.lr_schedule == "invscaling"

    def trigger_stopping(self, msg: str, verbose: Any) -> bool:
        if self.lr_schedule != "adaptive":
            return super().trigger_stopping(msg, verbose)
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class Adam(Optimizer):
    """scikit-learn's ``AdamOptimizer``: ``state`` holds the moments m and v."""

    name = "adam"
    n_state = 2

    def __init__(
        self,
        n_params: int,
        dtype: Any,
        learning_rate_init: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(n_params, dtype)
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def bundle(self) -> _loop.Adam:
        return _loop.Adam(
            float(self.learning_rate_init),
            float(self.beta_1),
            float(self.beta_2),
            float(self.epsilon),
            self.state[0],
            self.state[1],
            np.array([self.t], dtype=np.int64),
        )

    def after_steps(self, bundle: _loop.Adam) -> None:
        self.t = int(bundle.t[0])
        if self.t > 0:  # scikit-learn's AdamOptimizer.learning_rate after step t
            self.learning_rate = float(
                _loop.adam_rate(self.learning_rate_init, self.beta_1, self.beta_2, float(self.t))
            )


#: Every optimizer by name. Adding one: its update kernel (``kernels.py``, with its
#: twin in ``reference.py``), a bundle type in ``_loop.py`` with its branch of
#: ``_loop.apply_update``, its class here, and this line.
OPTIMIZERS = {cls.name: cls for cls in (FusedSGD, SGD, Adam)}


def from_estimator(solver: str, est: Any, n_params: int, dtype: Any) -> Optimizer:
    """The optimizer of a scikit-learn-style estimator's ``solver`` ('sgd' or 'adam')."""
    if solver == "sgd":
        return OPTIMIZERS["sgd"](
            n_params,
            dtype,
            est.learning_rate_init,
            est.learning_rate,
            est.momentum,
            est.nesterovs_momentum,
            est.power_t,
        )
    return OPTIMIZERS["adam"](
        n_params, dtype, est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon
    )
