"""The engine's block-level API: what any process computes on a block of rows.

``loss_and_gradient`` equals the front ends' own loss and gradient; ``run_steps``
equals training through the front end, leaves its arguments alone, and resumes
exactly: N steps then M more from the returned state are the N + M steps at once.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastbp import Network, engine, kernels


def _block(rng, n, sizes, dtype):
    x = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.uniform(size=(n, sizes[-1])).astype(dtype)
    return x, y


def test_loss_and_gradient_is_the_networks(dtype, rng, assert_close):
    net = Network([4, 6, 3], dtype=dtype, seed=1)
    x, y = _block(rng, 9, net.sizes, dtype)
    before = net._params.copy()
    J, grad = engine.loss_and_gradient(net._layout, net._params, x, y)
    assert grad.dtype == dtype and grad.shape == net._params.shape
    assert net._params.tobytes() == before.tobytes()
    assert_close(J, net.loss(x, y), dtype, "network")
    dws, dbs = net.gradients(x, y)
    got_w, got_b = net._layout.views(grad)
    for got, want in zip(got_w + got_b, dws + dbs, strict=True):
        assert got.tobytes() == want.tobytes()


def test_run_steps_is_the_networks_fit_and_changes_no_argument(dtype, rng):
    net = Network([4, 6, 3], dtype=dtype, seed=2)
    x, y = _block(rng, 10, net.sizes, dtype)
    opt = engine.FusedSGD(net._layout.n_params, dtype, lr=0.3)
    params = net._params.copy()
    # 6 steps of 4 rows over 10 rows (batches 4, 4, 2, 4, 4, 2): two epochs.
    new, new_opt, loss, row = engine.run_steps(
        net._layout, params, opt, x, y, steps=6, batch_size=4
    )
    assert params.tobytes() == net._params.tobytes()  # the argument is unchanged
    assert new_opt is not opt
    assert row == 0
    assert np.isfinite(loss)
    history = net.fit(x, y, epochs=2, lr=0.3, batch_size=4)
    assert net._params.tobytes() == new.tobytes()
    assert loss == pytest.approx(history.loss.mean(), rel=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_run_steps_resumes_exactly(optimizer, rng):
    """N steps, then M from the returned parameters and optimizer state: the N + M
    steps at once, bit for bit (shuffled, with an objective and an L2 penalty)."""
    sizes = [5, 7, 3]
    codes = [kernels.ACTIVATIONS["relu"].code, kernels.ACTIVATIONS["identity"].code]
    layout = engine.Layout(sizes, codes, kernels.LOSS_SQUARED, packing="packed")
    x, y = _block(rng, 11, sizes, np.float64)
    params = rng.normal(scale=0.3, size=layout.n_params)
    opt = engine.optimizers.OPTIMIZERS[optimizer](layout.n_params, np.float64)
    kw = {"batch_size": 3, "alpha": 1e-3}
    once, opt_once, _, row_once = engine.run_steps(
        layout, params, opt, x, y, steps=7, rng=np.random.default_rng(5), **kw
    )
    # Resumed in data order (a shuffled walk draws its orders per call).
    first, opt_first, _, row = engine.run_steps(layout, params, opt, x, y, steps=4, **kw)
    second, opt_second, _, row2 = engine.run_steps(
        layout, first, opt_first, x, y, steps=3, row=row, **kw
    )
    whole, opt_whole, _, row_whole = engine.run_steps(layout, params, opt, x, y, steps=7, **kw)
    assert (row2, second.tobytes()) == (row_whole, whole.tobytes())
    assert opt_second.state.tobytes() == opt_whole.state.tobytes()
    assert opt_second.t == opt_whole.t
    assert opt.t == 0 and not opt.state.any()  # the argument's state is untouched
    # Shuffled: another walk, the same number of rows.
    assert np.isfinite(once).all() and row_once == row_whole == 9
    assert opt_once.state.any() and once.tobytes() != whole.tobytes()
