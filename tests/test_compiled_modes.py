"""The training mode is chosen by the types of the optimizer and objective bundles,
while typing: each compiled variant of the loop holds only its own mode's kernels.

The check reads the machine code Numba generates for the loop (so the variants are
compiled afresh here, without the on-disk cache, whose code cannot be inspected).
If a change made Numba type every mode's branch again (an ``if`` on a run-time
value instead of a mode switch), fastbp.Network's loop would contain the Adam
update and the scikit-learn losses, and compile slower: this test fails then.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastbp import _loop, engine, kernels
from fastbp._jit import JIT_OPTIONS

SIZES = [3, 4, 2]


def compiled_ir(
    opt: engine.Optimizer, loss: int | None, dropout: engine.Dropout | None = None
) -> str:
    activations = [kernels.LOGISTIC, kernels.IDENTITY if loss is not None else kernels.LOGISTIC]
    layout = engine.Layout(SIZES, activations, loss, packing="packed")
    params = np.zeros(layout.n_params)
    x = np.zeros((5, SIZES[0]))
    y = np.zeros((5, SIZES[-1]))
    trainer = engine.Trainer(layout, params, x, y, np.empty(0), 5, opt, dropout=dropout)
    data = _loop.Data(
        x, y, trainer.sw, trainer.no_order, 5, False, trainer.xb, trainer.yb, trainer.swb
    )
    args = (
        data,
        trainer.net,
        trainer.bufs,
        trainer.objective,
        opt.bundle(),
        0,
        0,
        1,
        trainer.stop,
        np.zeros(1),
        None,
    )
    fresh = numba.njit(**{**JIT_OPTIONS, "cache": False})(_loop.train_chunk.py_func)
    fresh(*args)
    return fresh.inspect_llvm(fresh.signatures[0])


@pytest.fixture(scope="module")
def network_ir() -> str:
    return compiled_ir(engine.FusedSGD(26, np.float64, 0.1), None)


@pytest.mark.slow
def test_network_loop_holds_no_other_mode(network_ir):
    assert "dense_backward_sgd" in network_ir  # its own kernel is there
    for absent in ("adam_update", "momentum_update", "output_loss_grad", "dense_backward$"):
        name = absent.rstrip("$")
        found = [line for line in network_ir.splitlines() if name in line]
        if absent.endswith("$"):  # dense_backward, not dense_backward_sgd
            found = [line for line in found if f"{name}_sgd" not in line]
        assert not found, f"fastbp.Network's compiled loop calls {name}"


@pytest.fixture(scope="module")
def adam_ir() -> str:
    return compiled_ir(engine.Adam(26, np.float64), kernels.LOSS_SQUARED)


@pytest.mark.slow
def test_adam_loop_holds_its_update_only(adam_ir):
    ir = adam_ir
    assert "adam_update" in ir
    assert "output_loss_grad" in ir
    assert "momentum_update" not in ir
    assert "dense_backward_sgd" not in ir


@pytest.mark.slow
def test_dropout_is_compiled_only_where_used(adam_ir):
    """The loop without dropout (every fit with dropout=0) holds no dropout code; the
    one with dropout calls its kernels."""
    assert "dropout" not in adam_ir
    with_dropout = compiled_ir(
        engine.Adam(26, np.float64), kernels.LOSS_SQUARED, engine.Dropout(np.array([0.5]), 1)
    )
    assert "dropout_forward" in with_dropout
    assert "dropout_backward" in with_dropout
