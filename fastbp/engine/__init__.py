"""fastbp's training engine: one core under every front end.

:class:`Layout` (where everything sits in the flat buffers), the optimizers
(:mod:`fastbp.engine.optimizers`), the chunked driver (:class:`Trainer`:
buffers, Ctrl-C, divergence rollback, thread limits), :class:`Snapshot`,
:class:`Dropout` (rates and mask generator of the hidden layers' dropout),
chunked prediction (:func:`forward`), and the block-level API that works in any
process on any block of rows (:func:`loss_and_gradient`, :func:`run_steps`).
``fastbp.Network``, the scikit-learn estimators and the command line are front
ends on it; the engine imports none of them.
"""

from fastbp.engine.blocks import Gradient, loss_and_gradient, run_steps
from fastbp.engine.driver import Diverged, Snapshot, Trainer, threads_for
from fastbp.engine.dropout import Dropout
from fastbp.engine.layout import Layout
from fastbp.engine.optimizers import SGD, Adam, FusedSGD, Optimizer
from fastbp.engine.predict import forward, iter_forward, kernel_ready

__all__ = [
    "SGD",
    "Adam",
    "Diverged",
    "Dropout",
    "FusedSGD",
    "Gradient",
    "Layout",
    "Optimizer",
    "Snapshot",
    "Trainer",
    "forward",
    "iter_forward",
    "kernel_ready",
    "loss_and_gradient",
    "run_steps",
    "threads_for",
]
