"""The training mode is chosen by the types of the optimizer and objective bundles,
while typing: each compiled variant of the loop holds only its own mode's kernels.

The check reads the machine code Numba generates for the loop (so the variants are
compiled afresh here, without the on-disk cache, whose code cannot be inspected).
If a change made Numba type every mode's branch again (an ``if`` on a run-time
value instead of a mode switch), fastbp.Network's loop would contain the Adam
update and the scikit-learn losses, and compile slower: this test fails then.
"""

from __future__ import annotations

import re

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
    for absent in ("adam_update", "momentum_update", "_output_loss_terms", "dense_backward$"):
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
    assert "momentum_update" not in ir
    assert "dense_backward_sgd" not in ir


@pytest.mark.slow
def test_loop_holds_its_own_loss_only(adam_ir):
    """The loss is part of the objective's type: the squared-error variant holds
    that loss's loops and no other loss's (kernels.LOSS_KERNELS)."""
    for entry in kernels.LOSSES.values():
        if entry.term is None:
            continue
        for function in ("_output_loss_terms_", "_output_function_"):
            present = function + entry.name in adam_ir
            assert present == (entry.code == kernels.LOSS_SQUARED), function + entry.name


@pytest.mark.slow
def test_dropout_is_compiled_only_where_used(adam_ir):
    """The loop without dropout (every fit with dropout=0) holds no dropout code; the
    one with dropout calls its kernels."""
    # Mangled names of the dropout kernels: "kernels", their name's length, their name.
    kernel = re.compile(r"kernels\d+dropout_(forward|backward)")
    assert not kernel.search(adam_ir)
    with_dropout = compiled_ir(
        engine.Adam(26, np.float64), kernels.LOSS_SQUARED, engine.Dropout(np.array([0.5]), 1)
    )
    assert {m.group(1) for m in kernel.finditer(with_dropout)} == {"forward", "backward"}
