"""The :class:`fastbp.Network` trainer against the NumPy reference and finite differences."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from numeric import numeric_gradients

from fastbp import History, Network, reference

SIZES = {"3-5-1": [3, 5, 1], "4-3-2-2": [4, 3, 2, 2]}
N_SAMPLES = [1, 7]
SEED = 12345


def make_data(rng, n, sizes, dtype=np.float64):
    x = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.uniform(size=(n, sizes[-1])).astype(dtype)
    return x, y


def params_of(net):
    """Copies of every weight and bias, for bit-for-bit comparisons."""
    return [w.copy() for w in net.weights] + [b.copy() for b in net.biases]


def assert_layers_close(got, want, dtype, assert_close, kind="network"):
    """Compare lists of arrays layer by layer, relative to each layer's largest entry."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert g.dtype == dtype
        assert_close(g, w, dtype, kind, scale=np.abs(w.astype(np.float64)).max())


def reference_start(sizes, dtype, seed=SEED):
    """The reference's initial parameters and the generator state after them."""
    rng = np.random.default_rng(seed)
    weights, biases = reference.init_params_from(sizes, dtype, rng)
    return weights, biases, rng


# -- construction and attributes --------------------------------------------------------


def test_init_matches_reference_initialisation(dtype):
    net = Network([4, 3, 2, 2], dtype=dtype, seed=SEED)
    weights, biases, _ = reference_start([4, 3, 2, 2], dtype)
    for got, want in zip(net.weights + net.biases, weights + biases, strict=True):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)


def test_attributes_shapes_and_dtypes(dtype, rng):
    sizes = [4, 3, 2, 2]
    net = Network(sizes, dtype=dtype, seed=SEED)
    assert net.sizes == sizes
    assert net.dtype == dtype
    assert [w.shape for w in net.weights] == [(4, 3), (3, 2), (2, 2)]
    assert [b.shape for b in net.biases] == [(3,), (2,), (2,)]
    for arr in net.weights + net.biases:
        assert arr.dtype == dtype
        assert arr.flags.writeable
    x, y = make_data(rng, 5, sizes, dtype)
    out = net.predict(x)
    assert out.shape == (5, 2)
    assert out.dtype == dtype
    assert ((out > 0) & (out < 1)).all()
    loss = net.loss(x, y)
    assert type(loss) is float
    assert loss == pytest.approx(np.mean(np.sum((out.astype(np.float64) - y) ** 2, axis=1)))


def test_same_seed_same_network_different_seed_different_network():
    a, b, c = Network([3, 5, 1], seed=1), Network([3, 5, 1], seed=1), Network([3, 5, 1], seed=2)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_predict_matches_reference_forward(dtype, rng, assert_close):
    sizes = [4, 3, 2, 2]
    net = Network(sizes, dtype=dtype, seed=SEED)
    x, _ = make_data(rng, 9, sizes, dtype)
    want = reference.forward(x, net.weights, net.biases)[-1]
    assert_close(net.predict(x), want, dtype, "sum", scale=np.ones_like(want))


def test_loss_matches_reference(dtype, rng, assert_close):
    sizes = [4, 3, 2, 2]
    net = Network(sizes, dtype=dtype, seed=SEED)
    x, y = make_data(rng, 9, sizes, dtype)
    assert_close(net.loss(x, y), reference.loss(x, y, net.weights, net.biases), dtype, "network")


# -- gradients ------------------------------------------------------------------------


@pytest.mark.parametrize("n", N_SAMPLES)
@pytest.mark.parametrize("sizes", list(SIZES.values()), ids=list(SIZES))
def test_gradients_match_finite_differences(sizes, n, rng):
    net = Network(sizes, dtype=np.float64, seed=SEED)
    x, y = make_data(rng, n, sizes)
    dws, dbs = net.gradients(x, y)
    params = net.weights + net.biases
    for param, grad, numeric in zip(params, dws + dbs, numeric_gradients(net, x, y), strict=True):
        assert grad.shape == param.shape
        # Central differences agree to ~1e-8 at best (see tests/numeric.py).
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", N_SAMPLES)
@pytest.mark.parametrize("sizes", list(SIZES.values()), ids=list(SIZES))
def test_gradients_match_reference(sizes, n, dtype, rng, assert_close):
    net = Network(sizes, dtype=dtype, seed=SEED)
    x, y = make_data(rng, n, sizes, dtype)
    before = params_of(net)
    dws, dbs = net.gradients(x, y)
    want_dws, want_dbs = reference.gradients(x, y, net.weights, net.biases)
    assert_layers_close(dws, want_dws, dtype, assert_close)
    assert_layers_close(dbs, want_dbs, dtype, assert_close)
    for got, old in zip(params_of(net), before, strict=True):
        np.testing.assert_array_equal(got, old)  # gradients do not train


# -- fit against the reference -----------------------------------------------------------

FIT_CASES = {
    "full-batch": {"batch_size": None, "shuffle": False},
    "batch-larger-than-n": {"batch_size": 100, "shuffle": False},
    "mini-batch-partial-last": {"batch_size": 5, "shuffle": False},  # 23 = 4 * 5 + 3
    "shuffled-mini-batch": {"batch_size": 5, "shuffle": True},
    "shuffled-full-batch": {"batch_size": None, "shuffle": True},
}


@pytest.mark.parametrize("case", list(FIT_CASES))
@pytest.mark.parametrize("sizes", list(SIZES.values()), ids=list(SIZES))
def test_fit_matches_reference_train(sizes, case, dtype, rng, assert_close):
    opts = FIT_CASES[case]
    x, y = make_data(rng, 23, sizes, dtype)
    net = Network(sizes, dtype=dtype, seed=SEED)
    history = net.fit(x, y, epochs=5, lr=0.7, **opts)

    weights, biases, ref_rng = reference_start(sizes, dtype)
    losses = reference.train(x, y, weights, biases, epochs=5, lr=0.7, rng=ref_rng, **opts)

    assert isinstance(history, History)
    assert history.loss.shape == (5,)
    assert history.loss.dtype == np.float64
    assert history.seconds > 0
    assert_close(history.loss, losses, dtype, "network")
    assert_layers_close(net.weights, weights, dtype, assert_close)
    assert_layers_close(net.biases, biases, dtype, assert_close)
    # training did something
    assert not np.array_equal(net.weights[0], reference_start(sizes, dtype)[0][0])


def test_fit_continues_from_current_weights(rng, assert_close):
    """Two fits of 2 and 3 epochs equal one fit of 5 (no shuffle: no generator involved)."""
    sizes = [3, 5, 1]
    x, y = make_data(rng, 23, sizes)
    split, whole = Network(sizes, seed=SEED), Network(sizes, seed=SEED)
    first = split.fit(x, y, epochs=2, batch_size=5).loss
    second = split.fit(x, y, epochs=3, batch_size=5).loss
    all_five = whole.fit(x, y, epochs=5, batch_size=5).loss
    np.testing.assert_array_equal(np.concatenate([first, second]), all_five)
    for a, b in zip(params_of(split), params_of(whole), strict=True):
        np.testing.assert_array_equal(a, b)


def test_xor_is_learned():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.float64)
    net = Network([2, 4, 1], seed=0)
    history = net.fit(x, y, epochs=3000, lr=2.0)
    assert history.loss[-1] < 0.01
    assert net.loss(x, y) < 0.01
    np.testing.assert_array_equal(net.predict(x).ravel() > 0.5, y > 0.5)
    assert history.loss[-1] < history.loss[0]


# -- weights are live views ------------------------------------------------------------------


def test_writing_into_weights_changes_the_network(rng, assert_close):
    sizes = [3, 5, 1]
    x, y = make_data(rng, 23, sizes)
    net = Network(sizes, seed=SEED)
    new_w0 = rng.uniform(-1, 1, (3, 5))
    new_b1 = rng.uniform(-1, 1, 1)
    net.weights[0][...] = new_w0
    net.biases[1][:] = new_b1
    history = net.fit(x, y, epochs=5, lr=0.7, batch_size=5)

    weights, biases, _ = reference_start(sizes, np.float64)
    weights[0][...] = new_w0
    biases[1][...] = new_b1
    losses = reference.train(x, y, weights, biases, epochs=5, lr=0.7, batch_size=5)
    assert_close(history.loss, losses, np.float64, "network")
    assert_layers_close(net.weights + net.biases, weights + biases, np.float64, assert_close)


@pytest.mark.parametrize("kind", ["ndarray", "float32-array", "list"])
def test_replacing_a_weight_entry(kind, rng, assert_close):
    sizes = [3, 5, 1]
    x, y = make_data(rng, 23, sizes)
    net = Network(sizes, seed=SEED)
    new_w1 = rng.uniform(-1, 1, (5, 1))
    value = {"ndarray": new_w1, "float32-array": new_w1.astype(np.float32), "list": new_w1.tolist()}
    net.weights[1] = value[kind]
    expected_w1 = np.asarray(value[kind], dtype=np.float64)
    # predict, loss and gradients see the replacement too
    weights, biases, _ = reference_start(sizes, np.float64)
    weights[1] = expected_w1.copy()
    assert_close(net.loss(x, y), reference.loss(x, y, weights, biases), np.float64, "network")

    net.weights[1] = value[kind]
    history = net.fit(x, y, epochs=5, lr=0.7)
    losses = reference.train(x, y, weights, biases, epochs=5, lr=0.7)
    assert_close(history.loss, losses, np.float64, "network")
    assert_layers_close(net.weights + net.biases, weights + biases, np.float64, assert_close)
    # the entry is the network's own view again: writable, float64, not the user's array
    assert net.weights[1] is not value[kind]
    assert net.weights[1].dtype == np.float64
    net.weights[1][0, 0] = 0.25
    assert net.weights[1][0, 0] == 0.25
    if kind == "ndarray":
        assert not np.shares_memory(net.weights[1], new_w1)


def test_assigning_the_whole_list(rng):
    sizes = [3, 5, 1]
    net = Network(sizes, seed=SEED)
    other = Network(sizes, seed=SEED + 1)
    net.weights = [w.copy() for w in other.weights]
    net.biases = tuple(b.copy() for b in other.biases)
    x, _ = make_data(rng, 4, sizes)
    np.testing.assert_array_equal(net.predict(x), other.predict(x))


# -- accepted input forms ----------------------------------------------------------------------


def _strided_columns(x):
    wide = np.empty((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)
    wide[:, ::2] = x
    wide[:, 1::2] = np.nan  # never read
    return wide[:, ::2]


def _strided_rows(a):
    tall = np.full((2 * a.shape[0], *a.shape[1:]), np.nan, dtype=a.dtype)
    tall[::2] = a
    return tall[::2]


def _read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


# name -> (X transform, Y transform, data made of integers/bools first)
FORMS = {
    "lists": (lambda x: x.tolist(), lambda y: y.tolist(), None),
    "integers": (lambda x: x.astype(np.int32), lambda y: y.astype(np.int64), "int"),
    "bools": (lambda x: x.astype(bool), lambda y: y.astype(bool), "bool"),
    "fortran": (np.asfortranarray, lambda y: y, None),
    # Y strided too: the same compiled specialisation as strided-rows (both 'A' layout)
    "strided-columns": (_strided_columns, _strided_rows, None),
    "strided-rows": (_strided_rows, _strided_rows, None),
    "read-only": (_read_only, _read_only, None),
    "1-D-Y": (lambda x: x, lambda y: y.ravel(), None),
    "float32-data": (lambda x: x.astype(np.float32), lambda y: y.astype(np.float32), None),
}


def _form_data(rng, form, n=23, sizes=(3, 5, 1)):
    x, y = make_data(rng, n, sizes)
    values = FORMS[form][2]
    if values == "int":
        x = rng.integers(-3, 4, x.shape).astype(np.float64)
        y = rng.integers(0, 2, y.shape).astype(np.float64)
    elif values == "bool":
        x = rng.integers(0, 2, x.shape).astype(np.float64)
        y = rng.integers(0, 2, y.shape).astype(np.float64)
    elif form == "float32-data":
        x = x.astype(np.float32).astype(np.float64)
        y = y.astype(np.float32).astype(np.float64)
    return x, y


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("form", list(FORMS))
def test_fit_accepts_input_forms(form, shuffle, rng):
    x, y = _form_data(rng, form)
    x_form, y_form = FORMS[form][0](x), FORMS[form][1](y)
    x_before, y_before = np.array(x_form), np.array(y_form)
    plain, other = Network([3, 5, 1], seed=SEED), Network([3, 5, 1], seed=SEED)
    want = plain.fit(x, y, epochs=3, batch_size=5, shuffle=shuffle).loss
    got = other.fit(x_form, y_form, epochs=3, batch_size=5, shuffle=shuffle).loss
    # the same float64 numbers in the same order: the same arithmetic, bit for bit
    np.testing.assert_array_equal(got, want)
    for a, b in zip(params_of(other), params_of(plain), strict=True):
        np.testing.assert_array_equal(a, b)
    # the data was only read
    np.testing.assert_array_equal(np.array(x_form), x_before)
    np.testing.assert_array_equal(np.array(y_form), y_before)


@pytest.mark.parametrize("form", list(FORMS))
def test_predict_and_loss_accept_input_forms(form, rng):
    x, y = _form_data(rng, form, n=9)
    net = Network([3, 5, 1], seed=SEED)
    x_form, y_form = FORMS[form][0](x), FORMS[form][1](y)
    np.testing.assert_array_equal(net.predict(x_form), net.predict(x))
    assert net.loss(x_form, y_form) == net.loss(x, y)
    for got, want in zip(net.gradients(x_form, y_form), net.gradients(x, y), strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


class _Peak(int):
    """A traced peak in bytes, whose repr lists the largest live allocations at the end."""

    sites: str = ""

    def __repr__(self):
        return f"{int(self)} bytes; largest allocations left:\n{self.sites}"


def _traced_peak(fn):
    tracemalloc.start(5)
    try:
        fn()
        peak = _Peak(tracemalloc.get_traced_memory()[1])
        top = tracemalloc.take_snapshot().statistics("traceback")[:3]
        peak.sites = "\n".join("\n".join(stat.traceback.format()) for stat in top)
        return peak
    finally:
        tracemalloc.stop()


def test_float32_network_does_not_copy_float32_data(rng):
    """NumPy reports every array buffer to tracemalloc: the peak shows any copy of X.

    A float32 network on float32 C-contiguous data must stay far below the size
    of X (the finiteness check's bool temporary is a quarter of it); the same
    data given to a float64 network is converted, which the method must see.
    """
    n, k = 100_000, 16
    x = rng.normal(size=(n, k)).astype(np.float32)
    y = rng.uniform(size=(n, 1)).astype(np.float32)
    net32 = Network([k, 4, 1], dtype=np.float32, seed=SEED)
    net64 = Network([k, 4, 1], dtype=np.float64, seed=SEED)
    for net in (net32, net64):  # compile (and start threads) outside the measurement
        net.fit(x[:5000], y[:5000], epochs=1, batch_size=1000)
        net.predict(x[:5000])

    peak32 = _traced_peak(lambda: net32.fit(x, y, epochs=1, batch_size=1000))
    assert peak32 < x.nbytes / 2
    peak32 = _traced_peak(lambda: net32.predict(x))
    assert peak32 < x.nbytes / 2
    peak64 = _traced_peak(lambda: net64.fit(x, y, epochs=1, batch_size=1000))
    assert peak64 >= 2 * x.nbytes


# -- callbacks (divergence: test_divergence.py) ----------------------------------------------------


def test_callback_called_once_per_epoch_in_order(rng):
    sizes = [3, 5, 1]
    x, y = make_data(rng, 23, sizes)
    calls = []
    net = Network(sizes, seed=SEED)
    history = net.fit(x, y, epochs=30, batch_size=5, callback=lambda *args: calls.append(args))
    assert [epoch for epoch, _ in calls] == list(range(30))
    for epoch, loss in calls:
        assert type(loss) is float
        assert loss == history.loss[epoch]


@pytest.mark.parametrize("stop_after", [0, 4, 150])
@pytest.mark.parametrize("batch_size", [None, 5], ids=["full-batch", "mini-batch"])
def test_callback_returning_true_stops_after_that_epoch(stop_after, batch_size, rng):
    sizes = [3, 5, 1]
    x, y = make_data(rng, 23, sizes)
    calls = []

    def callback(epoch, loss):
        calls.append(epoch)
        return epoch == stop_after

    net = Network(sizes, seed=SEED)
    history = net.fit(x, y, epochs=400, batch_size=batch_size, callback=callback)
    assert calls == list(range(stop_after + 1))
    assert history.loss.shape == (stop_after + 1,)
    # the weights are those after exactly stop_after + 1 epochs, not more
    fresh = Network(sizes, seed=SEED)
    np.testing.assert_array_equal(
        fresh.fit(x, y, epochs=stop_after + 1, batch_size=batch_size).loss, history.loss
    )
    for got, want in zip(params_of(net), params_of(fresh), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("value", [None, False, 0.5], ids=["None", "False", "a-float"])
def test_callback_returning_other_values_does_not_stop(value, rng):
    x, y = make_data(rng, 7, [3, 5, 1])
    net = Network([3, 5, 1], seed=SEED)
    history = net.fit(x, y, epochs=4, callback=lambda epoch, loss: value)
    assert history.loss.shape == (4,)
