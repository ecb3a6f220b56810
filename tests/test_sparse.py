"""Sparse (SciPy CSR) input: the first layer's kernels against their NumPy twins, the
whole network against finite differences and against dense input, the estimators
against scikit-learn's on sparse data, no dense copy, and bad sparse input refused."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import DTYPES, assert_close
from frontends import assert_unchanged, state_of
from numeric import numeric_gradients
from sklearn import neural_network as skl
from sklearn.datasets import load_digits

from fastbp import Network, kernels, reference
from fastbp import sklearn as fb
from fastbp.engine import predict as engine_predict

IMPLS = {"numpy": reference, "fastbp": kernels}
RTOL = 1e-13  # tests/test_sklearn_parity.py's


def _messy(x):
    """x with each row's entries reversed (unsorted indices) and its first entry split
    into two halves (a duplicate): the same matrix, not in canonical form."""
    data, indices, indptr = [], [], [0]
    for r in range(x.shape[0]):
        lo, hi = x.indptr[r], x.indptr[r + 1]
        d, i = list(x.data[lo:hi][::-1]), list(x.indices[lo:hi][::-1])
        if d:
            d[0] *= 0.5
            d.append(d[0])
            i.append(i[0])
        data += d
        indices += i
        indptr.append(len(data))
    out = sp.csr_matrix(
        (np.array(data, dtype=x.dtype), np.array(indices, np.int32), np.array(indptr, np.int32)),
        shape=x.shape,
    )
    assert not out.has_canonical_format
    return out


def _csr(rng, rows, cols, density, dtype, empty_rows=(), messy=False):
    """A random CSR matrix; ``messy``: see :func:`_messy`."""
    x = sp.random(rows, cols, density=density, format="csr", random_state=rng, dtype=dtype)
    x = x.tolil()
    for r in empty_rows:
        x.rows[r], x.data[r] = [], []
    x = x.tocsr()
    return _messy(x) if messy else x


# name: (rows, cols, units, density, batch rows, start, shuffled, empty rows, messy, threads)
KERNEL_CASES = {
    "batch-1-unit-1": (5, 7, 1, 0.4, 1, 2, False, (), False, None),
    "empty-rows": (9, 6, 3, 0.3, 9, 0, False, (0, 4, 8), False, None),
    "partial-last-batch": (11, 8, 5, 0.3, 3, 8, False, (), False, None),
    "shuffled": (12, 10, 17, 0.3, 5, 4, True, (3,), False, None),
    "unsorted-duplicates": (8, 9, 4, 0.4, 8, 0, True, (), True, None),
    "threads": (64, 300, 64, 0.3, 64, 0, True, (), False, 2),
}


def _kernel_args(rng, case, dtype):
    rows, cols, h, density, m, start, shuffled, empty, messy, threads = KERNEL_CASES[case]
    x = _csr(rng, rows, cols, density, dtype, empty, messy)
    order = rng.permutation(rows).astype(np.int64) if shuffled else np.empty(0, np.int64)
    w = rng.uniform(-1, 1, (cols, h)).astype(dtype)
    b = rng.uniform(-1, 1, h).astype(dtype)
    rows_of = order[start : start + m] if shuffled else np.arange(start, start + m)
    dense = x.toarray()[rows_of]
    return x, order, start, m, w, b, dense, threads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_sparse_forward_matches_reference(rng, case, dtype):
    x, order, start, m, w, b, dense, threads = _kernel_args(rng, case, dtype)
    inputs = [a.copy() for a in (x.data, x.indices, x.indptr, order, w, b)]
    outs = {}
    for name, impl in IMPLS.items():
        out = np.empty((m, w.shape[1]), dtype=dtype)
        impl.sparse_forward(x.data, x.indices, x.indptr, order, start, w, b, out, 2, threads)
        outs[name] = out
    assert outs["fastbp"].dtype == dtype
    # tanh has slope <= 1: the error of the sum bounds the error of the output.
    scale = np.abs(dense) @ np.abs(w) + np.abs(b)
    assert_close(outs["fastbp"], outs["numpy"], dtype, "sum", scale)
    for got, want in zip((x.data, x.indices, x.indptr, order, w, b), inputs, strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decay", [0.0, 0.3])
@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_sparse_backward_matches_reference(rng, case, decay, dtype):
    x, order, start, m, w, b, dense, threads = _kernel_args(rng, case, dtype)
    h = w.shape[1]
    a = rng.uniform(0.05, 0.95, (m, h)).astype(dtype)
    delta0 = rng.normal(size=(m, h)).astype(dtype)
    results = {}
    for name, impl in IMPLS.items():
        delta = delta0.copy()
        dw = np.full_like(w, np.nan)  # every row must be written
        db = np.full_like(b, np.nan)
        args = (x.data, x.indices, x.indptr, order, start, w, dw, db, decay, 1, threads)
        impl.sparse_backward(delta, a, *args)
        results[name] = delta, dw, db
    delta, dw, db = results["fastbp"]
    ref_delta, ref_dw, ref_db = results["numpy"]
    assert dw.dtype == dtype
    assert_close(delta, ref_delta, dtype, "elementwise")
    assert_close(db, ref_db, dtype, "sum", np.abs(ref_delta).sum(axis=0))
    assert_close(dw, ref_dw, dtype, "sum", np.abs(dense).T @ np.abs(ref_delta) + decay * abs(w))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_sparse_backward_sgd_matches_reference(rng, case, dtype):
    x, order, start, m, w0, b0, dense, threads = _kernel_args(rng, case, dtype)
    h = w0.shape[1]
    a = rng.uniform(0.05, 0.95, (m, h)).astype(dtype)
    delta0 = rng.normal(size=(m, h)).astype(dtype)
    lr = 0.1
    results = {}
    for name, impl in IMPLS.items():
        w, b, delta, db = w0.copy(), b0.copy(), delta0.copy(), np.empty_like(b0)
        args = (x.data, x.indices, x.indptr, order, start, w, b, db, lr, 1, threads)
        impl.sparse_backward_sgd(delta, a, *args)
        results[name] = w, b, delta
    scale = np.abs(w0) + lr * (np.abs(dense).T @ np.abs(results["numpy"][2]))
    assert_close(results["fastbp"][0], results["numpy"][0], dtype, "sum", scale)
    assert_close(results["fastbp"][1], results["numpy"][1], dtype, "sum", np.abs(b0) + lr * m)
    untouched = np.abs(dense).sum(axis=0) == 0  # rows of w no batch entry touches
    assert np.array_equal(results["fastbp"][0][untouched], w0[untouched])


# -- the whole network: Network ------------------------------------------------------------


def test_network_gradient_matches_finite_differences(rng):
    x = _csr(rng, 7, 12, 0.3, np.float64, empty_rows=(2,))
    y = rng.uniform(size=(7, 2))
    net = Network([12, 3, 2], seed=1, activation=["tanh", "logistic"])
    dws, dbs = net.gradients(x, y)
    numeric = numeric_gradients(net, x, y)
    for got, want in zip(dws + dbs, numeric, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_sparse_fit_equals_dense_fit(rng, dtype):
    x = _csr(rng, 40, 30, 0.15, np.float64, empty_rows=(5,))
    y = rng.uniform(size=(40, 2))
    nets = [Network([30, 6, 2], seed=2, dtype=dtype) for _ in range(2)]
    hs = [
        net.fit(xx, y, epochs=15, lr=0.5, batch_size=7, shuffle=True)
        for net, xx in zip(nets, (x, x.toarray()), strict=True)
    ]
    assert_close(hs[0].loss, hs[1].loss, dtype, "network")
    for a, b in zip(
        nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases, strict=True
    ):
        assert a.dtype == dtype
        assert_close(a, b, dtype, "network", np.abs(b) + 1)
    pred = nets[0].predict(x)
    assert pred.dtype == dtype
    assert_close(pred, nets[1].predict(x.toarray()), dtype, "network")


def test_network_predict_is_chunked(rng, monkeypatch):
    x = _csr(rng, 23, 9, 0.3, np.float64)
    net = Network([9, 4, 3], seed=0)
    want = net.predict(x.toarray())
    monkeypatch.setattr(engine_predict, "EVAL_ROWS", 5)
    assert_close(net.predict(x), want, np.float64, "sum", np.abs(want) + 1)
    assert_close(net.predict(x.tocsc()), want, np.float64, "sum", np.abs(want) + 1)


# -- the estimators against scikit-learn's -------------------------------------------------


def _digits_sparse(rows=150):
    x, y = load_digits(return_X_y=True)
    x = x[:rows] / 16.0
    x[x < 0.3] = 0.0  # about half the entries zero
    return sp.csr_matrix(x), y[:rows]


BASE = {"hidden_layer_sizes": (7,), "random_state": 0, "max_iter": 4, "alpha": 1e-3}
# name: (estimator parameters, calls as (method, use sample weights))
ESTIMATOR_CASES = {
    "adam": ({"solver": "adam", "batch_size": 32}, [("fit", False)]),
    "sgd": ({"solver": "sgd", "batch_size": 40, "momentum": 0.8}, [("fit", False)]),
    "lbfgs": ({"solver": "lbfgs"}, [("fit", False)]),
    "sample-weight": ({"solver": "adam", "batch_size": 32}, [("fit", True)]),
    "lbfgs-sample-weight": ({"solver": "lbfgs"}, [("fit", True)]),
    "partial-fit": ({"solver": "sgd", "batch_size": 50}, [("partial_fit", False)] * 3),
    "warm-start": (
        {"solver": "adam", "warm_start": True, "batch_size": 64},
        [("fit", False), ("fit", False)],
    ),
    "early-stopping": (
        {"solver": "adam", "early_stopping": True, "batch_size": 32, "max_iter": 6},
        [("fit", False)],
    ),
    "no-shuffle": ({"solver": "adam", "shuffle": False, "batch_size": 64}, [("fit", False)]),
}


def _run(est, calls, x, y, sw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method, weighted in calls:
            kwargs = {"sample_weight": sw} if weighted else {}
            if method == "partial_fit":
                kwargs["classes"] = np.unique(y)
            getattr(est, method)(x, y, **kwargs)


@pytest.mark.parametrize("case", list(ESTIMATOR_CASES))
def test_estimator_matches_sklearn_on_sparse(case):
    x, y = _digits_sparse()
    sw = np.random.default_rng(0).uniform(0.5, 2.0, x.shape[0])
    params, calls = ESTIMATOR_CASES[case]
    params = {**BASE, **params}
    ours, theirs = fb.MLPClassifier(**params), skl.MLPClassifier(**params)
    _run(ours, calls, x, y, sw)
    _run(theirs, calls, x, y, sw)
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=1e-10)


def test_regressor_float32_on_sparse_tracks_sklearn():
    x, y = _digits_sparse()
    x = x.astype(np.float32)
    target = y.astype(np.float32) / 9.0
    params = {**BASE, "solver": "adam", "batch_size": 32}
    ours, theirs = fb.MLPRegressor(**params), skl.MLPRegressor(**params)
    _run(ours, [("fit", False)], x, target, None)
    _run(theirs, [("fit", False)], x, target, None)
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert a.dtype == np.float32
        assert np.max(np.abs(a - b)) <= 1e-3 * np.max(np.abs(b))  # parity file's float32 bound
    assert ours.predict(x).dtype == np.float32


@pytest.mark.parametrize("form", ["csc", "coo", "messy", "dense"])
def test_estimator_sparse_forms_equal_csr(form):
    """CSC and COO are converted to CSR; unsorted indices and duplicates are used as
    they are (duplicates add up); dense X is the same data: all the same fit."""
    x, y = _digits_sparse(80)
    forms = {"messy": _messy, "dense": lambda x: x.toarray()}
    other = forms.get(form, lambda x: x.asformat(form))(x)
    params = {**BASE, "solver": "adam", "batch_size": 20}
    a, b = fb.MLPClassifier(**params), fb.MLPClassifier(**params)
    _run(a, [("fit", False)], x, y, None)
    _run(b, [("fit", False)], other, y, None)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert np.max(np.abs(u - v)) <= 1e-12 * np.max(np.abs(v))


# -- no dense copy ----------------------------------------------------------------------


def test_no_dense_copy():
    """2,000 x 200,000 float64 would be 3.2 GB dense: fitting and predicting add a few
    times the weights (1.6 MB each), nothing of the order of rows x columns."""
    rng = np.random.default_rng(0)
    rows, cols = 2000, 200_000
    x = sp.random(rows, cols, density=5 / cols, format="csr", random_state=rng)
    y = rng.integers(0, 2, rows)
    yy = rng.uniform(size=(rows, 1))
    small = (x[:50], y[:50], yy[:50])
    budget = 40 << 20
    fits = {
        "MLPClassifier": lambda x, y, yy: (
            fb.MLPClassifier(hidden_layer_sizes=(1,), max_iter=1, random_state=0)
            .fit(x, y)
            .predict_proba(x)
        ),
        "Network": lambda x, y, yy: Network([cols, 1, 1], seed=0).fit(
            x, yy, epochs=1, batch_size=100
        ),
    }
    for name, fit in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(*small)  # compiled outside the measurement
            tracemalloc.start()
            try:
                fit(x, y, yy)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert peak < budget, f"{name}: {peak / 2**20:.0f} MiB"


# -- bad sparse input --------------------------------------------------------------------


def _broken(kind):
    x, _ = _digits_sparse(30)
    x = x.copy()
    if kind == "nan":
        x.data[3] = np.nan
    elif kind == "inf":
        x.data[0] = -np.inf
    elif kind == "index-too-large":
        x.indices[5] = 64
    elif kind == "index-negative":
        x.indices[2] = -1
    elif kind == "indptr-decreasing":
        x.indptr[3] = x.indptr[5] + 1
    elif kind == "indptr-beyond-data":
        x.indptr[-1] = x.data.size + 3
    elif kind == "csc-index-too-large":
        x = x.tocsc()
        x.indices[1] = 30
    elif kind == "coo-index-too-large":
        x = x.tocoo()
        x.coords[1][4] = 64
    elif kind == "too-few-columns":
        x = x[:, :60]
    return x


BAD = [
    "nan",
    "inf",
    "index-too-large",
    "index-negative",
    "indptr-decreasing",
    "indptr-beyond-data",
    "csc-index-too-large",
    "too-few-columns",
]


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        (kind, call)
        for kind in BAD
        for call in ("fit", "partial_fit", "warm_fit", "predict")
        if (kind, call) != ("too-few-columns", "fit")  # a new fit may change the width
    ],
)
def test_bad_sparse_input_estimator(kind, call):
    x, y = _digits_sparse(30)
    est = fb.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    est.set_params(warm_start=call == "warm_fit", solver="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x, y)
    before = state_of(est)
    bad = _broken(kind)
    with pytest.raises(ValueError, match="X"):
        if call == "predict":
            est.predict(bad)
        elif call == "partial_fit":
            est.partial_fit(bad, y)
        else:
            est.fit(bad, y)
    assert_unchanged(est, before)


# (Not for the estimators: scikit-learn's checks convert COO to CSR first, unchecked.)
@pytest.mark.parametrize("kind", [*BAD, "coo-index-too-large"])
@pytest.mark.parametrize("call", ["fit", "predict"])
def test_bad_sparse_input_network(kind, call):
    net = Network([64, 3, 1], seed=0)
    before = [p.copy() for p in net.weights + net.biases]
    bad = _broken(kind)
    with pytest.raises(ValueError, match="X"):
        if call == "predict":
            net.predict(bad)
        else:
            net.fit(bad, np.zeros(30), epochs=1)
    for got, want in zip(net.weights + net.biases, before, strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_kernels_do_not_depend_on_threads(rng, dtype):
    """Each output element sums its terms in one order however the work is split."""
    x, order, start, m, w, b, _, _ = _kernel_args(rng, "threads", dtype)
    delta0 = rng.normal(size=(m, w.shape[1])).astype(dtype)
    outs = []
    for threads in (None, 2):
        out, dw, db, delta = (
            np.empty((m, w.shape[1]), dtype),
            np.empty_like(w),
            b.copy(),
            delta0.copy(),
        )
        csr = (x.data, x.indices, x.indptr, order, start)
        kernels.sparse_forward(*csr, w, b, out, 1, threads)
        kernels.sparse_backward(delta, out, *csr, w, dw, db, 0.1, 1, threads)
        outs.append((out, dw, db))
    for got, want in zip(outs[0], outs[1], strict=True):
        assert got.tobytes() == want.tobytes()
