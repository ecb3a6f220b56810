"""A steady-state training step allocates nothing.

Compiled code cannot allocate at all: every compiled function is built without
Numba's runtime (``_nrt=False``, set in :mod:`fastbp._jit`), under which Numba
refuses to compile anything that would allocate an array. The tests below check
that flag on every compiled function and measure the result.

Numba's NRT statistics count every allocation made by compiled code (including the
boxing of arguments at each call from Python); they are only collected when
``NUMBA_NRT_STATS=1`` is set before Numba starts, hence the subprocess. A compiled
chunk of 500 steps must allocate exactly as much as a chunk of 1 step. tracemalloc
(which sees NumPy's allocations) shows the Python side is flat too: a fit of 10x more
epochs has the same peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

from fastbp import _blas, _loop, _math, _rows, kernels
from fastbp._jit import jit

SCRIPT = textwrap.dedent(
    """
    import json, sys, tracemalloc
    import numpy as np
    from numba.core.runtime import rtsys
    import fastbp
    from fastbp._threads import compute_threads
    from fastbp import _loop, engine

    sizes, n, batch, shuffle, reproducible = json.loads(sys.argv[1])
    fastbp.set_reproducible(reproducible)
    rng = np.random.default_rng(0)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    Y = rng.random((n, sizes[-1]), dtype=np.float32)
    net = fastbp.Network(sizes, dtype=np.float32, seed=0)
    net.fit(X, Y, epochs=2, lr=0.1, batch_size=batch, shuffle=shuffle)  # compile
    out = {"threads": None}

    opt = engine.FusedSGD(net._layout.n_params, np.float32, 0.1)
    no_weights = np.empty(0, dtype=np.float32)
    keep = (lambda orders: None) if shuffle else None
    trainer = engine.Trainer(
        net._layout, net._params, X, Y, no_weights, batch or n, opt, shuffle=keep
    )
    out["threads"] = trainer.threads
    out["split"] = trainer.rows is not None
    epochs = 600
    orders = np.tile(np.arange(n), (epochs, 1)) if shuffle else trainer.no_order
    data = _loop.Data(
        X, Y, no_weights, orders, trainer.batch, trainer.gather, trainer.xb, trainer.yb, trainer.swb
    )
    for steps in (1, 500):
        loss_sums = np.zeros(epochs)
        with compute_threads():
            before = rtsys.get_allocation_stats().alloc
            trainer._chunk(data, 0, 0, steps, loss_sums)
            out[f"nrt_{steps}"] = rtsys.get_allocation_stats().alloc - before

    for epochs in (5, 50):
        tracemalloc.start()
        net.fit(X, Y, epochs=epochs, lr=0.1, batch_size=batch, shuffle=shuffle)
        out[f"peak_{epochs}"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sizes", "n", "batch", "shuffle", "reproducible", "exercises"),
    [
        ([2, 4, 1], 4, None, False, False, None),  # tiny: serial code only
        ([64, 32, 10], 300, 32, True, False, None),  # shuffled, partial last batch
        ([300, 256, 10], 512, 256, False, False, None),  # BLAS's threads
        ([300, 256, 10], 512, 256, False, True, "threads"),  # fastbp's threaded kernels
        ([64, 64, 10], 500, 200, True, True, "split"),  # steps split by rows (fastbp._rows)
    ],
)
def test_training_step_allocates_nothing(sizes, n, batch, shuffle, reproducible, exercises):
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    args = json.dumps([sizes, n, batch, shuffle, reproducible])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, args], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if exercises == "threads":
        assert out["threads"] is not None, "this case should exercise the threaded kernels"
    assert out["split"] == (exercises == "split")
    # Boxing the arguments costs the same for any chunk; the steps themselves add nothing.
    assert out["nrt_500"] == out["nrt_1"]
    # Python-side buffers are made once per fit: 10x the epochs, about the same peak
    # (the per-epoch loss array grows by 8 bytes an epoch, plus small bookkeeping).
    assert out["peak_50"] <= out["peak_5"] + 64 * 1024


def test_every_compiled_function_is_built_without_the_runtime():
    compiled = [
        obj
        for module in (kernels, _loop, _blas, _math, _rows)
        for obj in vars(module).values()
        if isinstance(obj, CPUDispatcher)
    ]
    assert len(compiled) > 20
    assert [f.py_func.__name__ for f in compiled if f.targetoptions.get("_nrt") is not False] == []


def _allocates(n):
    return np.zeros(n).sum()


def test_an_allocating_function_does_not_compile():
    """The guarantee's mechanism: with fastbp's options, allocating is a compile error."""
    from numba.core.errors import TypingError

    with pytest.raises(TypingError, match="zeros"):
        jit(_allocates)(3)
