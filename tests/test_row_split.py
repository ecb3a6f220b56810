"""Steps split by rows over two threads (fastbp.engine.rows, fastbp._rows).

The guarantees: a split fit gives the same bits on one thread as on two (and
whichever thread runs which half); it trains the same network as the unsplit
loop, up to the order of additions; it stops where the unsplit loop stops
(Ctrl-C, a non-finite loss); one thread alone can run a chunk (no barrier can
block it); and who splits is decided by size, never by the thread count in
reproducible mode.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import fastbp
from fastbp import _rows
from fastbp.engine import driver, rows


@pytest.fixture
def split_everything(monkeypatch):
    """Split every fit that can be split, whatever its size."""
    monkeypatch.setattr(rows, "_forced", True)


@pytest.fixture
def split_nothing(monkeypatch):
    monkeypatch.setattr(driver, "splits", lambda *args: False)


@pytest.fixture
def threads():
    """Set fastbp's thread count for the test; put it back after."""
    before = fastbp.get_num_threads()
    explicit = fastbp._threads._num_threads
    yield fastbp.set_num_threads
    fastbp.set_num_threads(explicit if explicit is not None else before)
    fastbp._threads._num_threads = explicit


def _data(dtype, n=150, n_in=7, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, n_in)).astype(dtype)
    y = rng.random((n, n_out)).astype(dtype)
    return x, y


def _network_fit(dtype, batch, shuffle=False, order="C", epochs=4):
    x, y = _data(dtype)
    x = np.asarray(x, order=order)
    net = fastbp.Network([7, 9, 3], dtype=dtype, seed=0)
    history = net.fit(x, y, epochs=epochs, lr=0.5, batch_size=batch, shuffle=shuffle)
    return net, history.loss


def _estimator_fit(dtype, solver, batch, weights=False, alpha=1e-4, cls=None):
    x, y = _data(dtype)
    labels = (y[:, 0] * 3).astype(int)
    sw = np.linspace(0.5, 2.0, x.shape[0]) if weights else None
    cls = cls or fastbp.MLPClassifier
    target = labels if cls is fastbp.MLPClassifier else y[:, 0]
    model = cls(
        hidden_layer_sizes=(9,), solver=solver, batch_size=batch, max_iter=4, alpha=alpha,
        random_state=0, tol=0.0, n_iter_no_change=100,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 4 iterations
        model.fit(x, target, sample_weight=sw)
    return model


def _bits(model) -> list[bytes]:
    if isinstance(model, fastbp.Network):
        return [model._params.tobytes()]
    return [a.tobytes() for a in model.coefs_ + model.intercepts_]


def _spy_helper(monkeypatch) -> list:
    """Record each chunk handed to a helper thread."""
    handed = []
    submit = rows._Helper.submit

    def spy(self, args):
        handed.append(args)
        submit(self, args)

    monkeypatch.setattr(rows._Helper, "submit", spy)
    return handed


# -- who splits ---------------------------------------------------------------------------


def _layout(sizes):
    return fastbp.engine.Layout(sizes, [0] * (len(sizes) - 1))


def test_small_steps_and_big_products_are_not_split(threads):
    threads(2)
    assert not rows.splits(_layout([2, 4, 1]), 4, False, False)  # tiny
    assert not rows.splits(_layout([64, 32, 10]), 32, False, False)  # too little work
    assert not rows.splits(_layout([784, 256, 10]), 128, False, False)  # column blocks
    assert rows.splits(_layout([64, 64, 10]), 200, False, False)  # the digits fit
    assert not rows.splits(_layout([64, 64, 10]), 200, True, False)  # sparse input
    assert not rows.splits(_layout([64, 64, 10]), 200, False, True)  # dropout


def test_one_thread_does_not_split_unless_reproducible(threads):
    digits = _layout([64, 64, 10])
    threads(1)
    assert not rows.splits(digits, 200, False, False)
    assert rows.splits(digits, 200, False, False, n_threads=2)  # a per-fit count wins
    before = fastbp.get_reproducible()
    fastbp.set_reproducible(True)
    try:
        assert rows.splits(digits, 200, False, False)  # the same results on any count
    finally:
        fastbp.set_reproducible(before)


# -- the same bits on one thread and on two -------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_network_split_fit_is_the_same_on_one_and_two_threads(
    split_everything, threads, monkeypatch, dtype, shuffle
):
    handed = _spy_helper(monkeypatch)
    threads(1)
    one, losses_one = _network_fit(dtype, 16, shuffle)
    assert handed == []
    threads(2)
    two, losses_two = _network_fit(dtype, 16, shuffle)
    assert handed, "the second fit should have run on two threads"
    assert _bits(one) == _bits(two)
    np.testing.assert_array_equal(losses_one, losses_two)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("weights", [False, True])
def test_estimator_split_fit_is_the_same_on_one_and_two_threads(
    split_everything, threads, dtype, solver, weights
):
    threads(1)
    one = _estimator_fit(dtype, solver, 16, weights)
    threads(2)
    two = _estimator_fit(dtype, solver, 16, weights)
    assert _bits(one) == _bits(two)
    assert one.loss_curve_ == two.loss_curve_


# -- the same network as the unsplit loop ------------------------------------------------------


# Batches of 16 (halves of 8 rows), of 13 (a half of 6 and one of 7; 150 rows leave a
# partial batch of 7) and of 149 (the last batch is one row: an empty second half).
@pytest.mark.parametrize("batch", [16, 13, 149])
@pytest.mark.parametrize("order", ["C", "F"])
def test_network_split_fit_matches_the_unsplit_loop(monkeypatch, assert_close, dtype, batch, order):
    monkeypatch.setattr(rows, "_forced", True)
    split, split_losses = _network_fit(dtype, batch, shuffle=True, order=order)
    monkeypatch.setattr(driver, "splits", lambda *args: False)
    plain, plain_losses = _network_fit(dtype, batch, shuffle=True, order=order)
    assert_close(split._params, plain._params, dtype, "network", scale=1.0)
    assert_close(split_losses, plain_losses, dtype, "network")


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("regressor", [False, True])
def test_estimator_split_fit_matches_the_unsplit_loop(
    monkeypatch, assert_close, dtype, solver, weights, regressor
):
    cls = fastbp.MLPRegressor if regressor else fastbp.MLPClassifier
    monkeypatch.setattr(rows, "_forced", True)
    split = _estimator_fit(dtype, solver, 13, weights, alpha=0.01, cls=cls)
    monkeypatch.setattr(driver, "splits", lambda *args: False)
    plain = _estimator_fit(dtype, solver, 13, weights, alpha=0.01, cls=cls)
    for got, want in zip(
        split.coefs_ + split.intercepts_, plain.coefs_ + plain.intercepts_, strict=True
    ):
        assert_close(got, want, dtype, "network", scale=1.0)
    assert_close(split.loss_curve_, plain.loss_curve_, dtype, "network")
    if solver == "adam":
        assert split._optimizer.t == plain._optimizer.t


# -- stopping, and one thread alone -------------------------------------------------------------


def _chunk_args(dtype, steps, monkeypatch, lr=0.5, y_scale=1.0):
    """The arguments of one split chunk of a small Network fit (captured)."""
    captured = []
    real = _rows.train_part

    class Spy:
        def __call__(self, *args):
            captured.append(args)
            return real(*args)

    monkeypatch.setattr(rows._rows, "train_part", Spy())
    monkeypatch.setattr(rows, "_forced", True)
    x, y = _data(dtype)
    net = fastbp.Network([7, 9, 3], dtype=dtype, seed=0)
    net.fit(x, y * y_scale, epochs=1, lr=lr, batch_size=16)
    monkeypatch.undo()
    parts, net_, objective, opt, _, _, _, stop, _, _, shared = captured[0]
    sync = np.zeros(_rows.SIZE, dtype=np.int64)
    sync[_rows.CUTOFF] = _rows.NO_CUTOFF
    loss_sums = np.zeros(3)
    return [parts, net_, objective, opt, 0, 0, steps, stop, loss_sums, sync, shared]


def test_one_thread_alone_runs_a_whole_chunk(monkeypatch, dtype):
    args = _chunk_args(dtype, 25, monkeypatch)
    done, epoch, row, status = _rows.train_part(*args)
    per_epoch = -(-150 // 16)
    assert (done, epoch, row, status) == (25, 25 // per_epoch, 25 % per_epoch * 16, 0)
    sync = args[9]
    assert sync[_rows.DONE] == 25 * _rows.TICKETS


def test_a_helper_that_comes_late_changes_nothing(monkeypatch, dtype):
    args = _chunk_args(dtype, 10, monkeypatch)
    params = args[0][0].bufs.params
    _rows.train_part(*args)
    after = params.copy()
    late = threading.Thread(target=_rows.train_part, args=tuple(args))
    late.start()
    late.join(timeout=60)
    assert not late.is_alive()
    np.testing.assert_array_equal(params, after)


def test_two_threads_give_the_bits_of_one(monkeypatch, dtype):
    first = _chunk_args(dtype, 40, monkeypatch)
    second = _chunk_args(dtype, 40, monkeypatch)
    _rows.train_part(*first)
    helper = threading.Thread(target=_rows.train_part, args=tuple(second))
    helper.start()
    _rows.train_part(*second)
    helper.join(timeout=60)
    assert first[0][0].bufs.params.tobytes() == second[0][0].bufs.params.tobytes()
    np.testing.assert_array_equal(first[8], second[8])


def test_the_stop_flag_ends_the_chunk_before_any_change(monkeypatch, dtype):
    args = _chunk_args(dtype, 10, monkeypatch)
    params = args[0][0].bufs.params
    before = params.copy()
    args[7] = np.ones(1, dtype=np.uint8)
    assert _rows.train_part(*args) == (0, 0, 0, 0)
    np.testing.assert_array_equal(params, before)
    assert not args[8].any()


def test_a_non_finite_loss_stops_before_its_update(monkeypatch, dtype):
    """Fused SGD (fastbp.Network) stops at a non-finite J, as the unsplit loop."""
    args = _chunk_args(dtype, 10, monkeypatch)
    parts = args[0]
    params = parts[0].bufs.params
    for part in parts:  # targets of inf: J is inf on the first step
        part.data.y[:] = np.inf
    before = params.copy()
    done, epoch, row, status = _rows.train_part(*args)
    assert (done, epoch, row, status) == (0, 0, 0, 1)
    np.testing.assert_array_equal(params, before)


def test_a_diverging_split_fit_ends_as_the_unsplit_one(monkeypatch, assert_close, dtype):
    """Targets so big that J overflows in the third batch: DivergenceError, no epoch
    done, and the weights of the start of the chunk that diverged, as in the
    unsplit loop (tests/test_divergence.py)."""
    x, y = _data(dtype)
    y[40] = 1e20 if dtype is np.float32 else 1e160
    ends = []
    for split in (True, False):
        if split:
            monkeypatch.setattr(rows, "_forced", True)
        else:
            monkeypatch.setattr(driver, "splits", lambda *args: False)
        net = fastbp.Network([7, 9, 3], dtype=dtype, seed=3)
        with pytest.raises(fastbp.DivergenceError) as info:
            net.fit(x, y, epochs=5, lr=0.5, batch_size=16)
        assert len(info.value.history.loss) == 0
        assert np.isfinite(net._params).all()
        ends.append(net._params)
    assert_close(ends[0], ends[1], dtype, "network", scale=1.0)


def test_position_follows_the_unsplit_walk():
    """Step s of a chunk starting at (epoch, row) is where train_chunk would be."""
    n, batch = 150, 16
    per_epoch = -(-n // batch)
    for row in (0, 32, 144):
        first = -(-(n - row) // batch)
        epoch, r = 0, row
        for s in range(40):
            assert _rows._position.py_func(0, row, s, first, per_epoch, batch) == (epoch, r)
            r += batch
            if r >= n:
                epoch, r = epoch + 1, 0
