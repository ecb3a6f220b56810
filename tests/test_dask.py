"""fastbp.dask on a real LocalCluster: two single-threaded worker processes, started
once for the module (each worker process compiles or loads fastbp's kernels)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask.dataframe")

import dask.array as da
import dask.dataframe as dd
import pandas as pd
from child_process import modules_after
from distributed import Client, LocalCluster, futures_of
from distributed.protocol import dask_serialize
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp import dask as fd

# Every fit here stops at max_iter on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

HIDDEN = (5,)


@pytest.fixture
def client(dask_client):
    # Dask's nanny sets OMP_NUM_THREADS=1 (and BLAS limits) in this process's
    # environment whenever it (re)starts a worker (the fault tests): put it back.
    saved = dict(os.environ)
    yield dask_client
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def workers(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def classification(rows=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def regression(rows=120, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    return X, y


def on_one_worker(client, worker, *arrays, chunks=30):
    """Dask arrays of ``arrays`` in row chunks, all persisted on ``worker``."""
    lazy = [da.from_array(a, chunks=(chunks, *a.shape[1:])) for a in arrays]
    return client.persist(lazy, workers=[worker])


def weights_of(est):
    return [*est.coefs_, *est.intercepts_]


def assert_same_bits(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def max_rel(a, b):
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y))) for x, y in zip(a, b, strict=True))


def state(est):
    return {k: pickle.dumps(v) for k, v in est.__dict__.items() if k not in ("client", "client_")}


# -- exact: L-BFGS and full-batch gradient descent ---------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_equals_local_fit(client, weighted):
    """Two workers (NumPy data scattered, one partition each): the local fit to 1e-10."""
    X, y = regression(seed=2) if weighted else classification()
    sw = np.random.default_rng(3).uniform(0.5, 2.0, len(y)) if weighted else None
    kw = dict(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=30, random_state=0, alpha=1e-3)
    Dask, Local = (fd.DaskMLPRegressor, fastbp.MLPRegressor) if weighted else (
        fd.DaskMLPClassifier, fastbp.MLPClassifier)  # fmt: skip
    ours = Dask(client=client, **kw).fit(X, y, sample_weight=sw)
    want = Local(**kw).fit(X, y, sample_weight=sw)
    assert ours.n_iter_ == want.n_iter_
    assert max_rel(weights_of(ours), weights_of(want)) <= 1e-10
    assert abs(ours.loss_ - want.loss_) <= 1e-10 * abs(want.loss_)
    assert ours.client_ is client
    local = ours.to_local()
    assert type(local) is Local
    assert_same_bits(weights_of(local), weights_of(ours))


@pytest.mark.parametrize("weighted", [False, True])
def test_class_weight_equals_local_fit(client, weighted):
    """class_weight='balanced' counts the classes on the workers (weighted by
    sample_weight): the local fit's weights, within L-BFGS's 1e-10."""
    X, y = classification()
    sw = np.random.default_rng(4).integers(1, 4, len(y)).astype(float) if weighted else None
    kw = dict(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=20, random_state=0)
    kw["class_weight"] = "balanced"
    ours = fd.DaskMLPClassifier(client=client, **kw).fit(X, y, sample_weight=sw)
    want = fastbp.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    unweighted = fastbp.MLPClassifier(**{**kw, "class_weight": None}).fit(X, y, sw)
    assert max_rel(weights_of(ours), weights_of(want)) <= 1e-10
    assert max_rel(weights_of(unweighted), weights_of(want)) > 1e-3  # the weights count


def test_full_batch_train_equals_network_fit(client):
    X, y = regression(rows=90)
    Y = 1 / (1 + np.exp(-y))  # in the logistic output's range
    net, want = fastbp.Network([3, 4, 1], seed=5), fastbp.Network([3, 4, 1], seed=5)
    history = fd.train(net, da.from_array(X, chunks=30), da.from_array(Y, chunks=30),
                       epochs=20, lr=0.5, client=client)  # fmt: skip
    expected = want.fit(X, Y, epochs=20, lr=0.5)
    np.testing.assert_allclose(history.loss, expected.loss, rtol=1e-10)
    assert max_rel(net.weights + net.biases, want.weights + want.biases) <= 1e-10


# -- local SGD ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("solver", "extra"),
    [
        ("sgd", {}),
        ("adam", {}),
        ("adam", {"sync_every": 2}),
        ("sgd", {"early_stopping": True, "validation_fraction": 0.2}),
        ("sgd", {"n_iter_no_change": 1, "tol": 0.05, "learning_rate": "adaptive"}),
    ],
)
def test_one_worker_equals_local_fit_bit_for_bit(client, workers, solver, extra):
    X, y = classification()
    Xd, yd = on_one_worker(client, workers[0], X, y)
    kw = dict(hidden_layer_sizes=HIDDEN, solver=solver, max_iter=6, random_state=0,
              batch_size=16, learning_rate_init=0.01)  # fmt: skip
    ours = fd.DaskMLPClassifier(client=client, **kw, **extra).fit(Xd, yd)
    local_kw = {k: v for k, v in extra.items() if k != "sync_every"}
    want = fastbp.MLPClassifier(**kw, **local_kw).fit(X, y)
    assert_same_bits(weights_of(ours), weights_of(want))
    assert ours.loss_curve_ == want.loss_curve_
    assert ours.n_iter_ == want.n_iter_ and ours.t_ == want.t_
    assert ours.validation_scores_ == want.validation_scores_
    np.testing.assert_array_equal(ours._optimizer.state, want._optimizer.state)


def test_one_worker_warm_start_equals_local(client, workers):
    X, y = regression()
    Xd, yd = on_one_worker(client, workers[0], X, y)
    kw = dict(hidden_layer_sizes=HIDDEN, solver="adam", max_iter=3, random_state=1,
              warm_start=True, early_stopping=True)  # fmt: skip
    ours, want = fd.DaskMLPRegressor(client=client, **kw), fastbp.MLPRegressor(**kw)
    for _ in range(2):
        ours.fit(Xd, yd)
        want.fit(X, y)
    assert_same_bits(weights_of(ours), weights_of(want))
    assert ours.loss_curve_ == want.loss_curve_
    assert ours.validation_scores_ == want.validation_scores_


def test_two_workers_early_stopping_scores_all_validation_rows(client):
    """Validation rows come from both workers, scored together each epoch."""
    X, y = regression(rows=200)
    est = fd.DaskMLPRegressor(hidden_layer_sizes=HIDDEN, solver="adam", max_iter=20,
                              early_stopping=True, learning_rate_init=0.05, random_state=0,
                              client=client).fit(X, y)  # fmt: skip
    assert len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert 0.5 < est.best_validation_score_ <= 1


def test_one_worker_minibatch_train_equals_network_fit(client, workers):
    X, y = regression(rows=90)
    Y = 1 / (1 + np.exp(-y))
    Xd, Yd = on_one_worker(client, workers[1], X, Y)
    net, want = fastbp.Network([3, 4, 1], seed=6), fastbp.Network([3, 4, 1], seed=6)
    history = fd.train(net, Xd, Yd, epochs=4, lr=0.5, batch_size=8, shuffle=True, client=client)
    expected = want.fit(X, Y, epochs=4, lr=0.5, batch_size=8, shuffle=True)
    np.testing.assert_array_equal(history.loss, expected.loss)
    assert_same_bits(net.weights + net.biases, want.weights + want.biases)


def test_two_workers_sgd_converges(client):
    X, y = regression(rows=400)
    Xd, yd = da.from_array(X, chunks=100), da.from_array(y, chunks=100)
    est = fd.DaskMLPRegressor(hidden_layer_sizes=(8,), solver="adam", learning_rate_init=0.02,
                              max_iter=40, random_state=0, client=client).fit(Xd, yd)  # fmt: skip
    assert est.loss_curve_[-1] < est.loss_curve_[0] / 5
    assert est.score(Xd, yd) > 0.9
    np.testing.assert_allclose(est.score(Xd, yd), est.to_local().score(X, y), rtol=1e-12)


# -- prediction --------------------------------------------------------------------


def test_predictions_are_lazy_and_equal_the_local_model(client):
    X, y = classification()
    est = fd.DaskMLPClassifier(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=10,
                               random_state=0, client=client).fit(X, y)  # fmt: skip
    local = est.to_local()
    Xd = da.from_array(X, chunks=40)
    for method in ("predict", "predict_proba"):
        lazy = getattr(est, method)(Xd)
        assert isinstance(lazy, da.Array) and lazy.numblocks[0] == 3
        np.testing.assert_array_equal(lazy.compute(), getattr(local, method)(X))
    frame = dd.from_pandas(pd.DataFrame(X, columns=list("abcd")), npartitions=2)
    np.testing.assert_array_equal(est.predict(frame).compute(), local.predict(X))
    assert est.score(Xd, da.from_array(y, chunks=40)) == local.score(X, y)


def test_dataframe_fit_keeps_feature_names(client):
    X, y = regression()
    frame = dd.from_pandas(pd.DataFrame(X, columns=["u", "v", "w"]), npartitions=3)
    target = dd.from_pandas(pd.Series(y), npartitions=3)
    est = fd.DaskMLPRegressor(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=5,
                              client=client).fit(frame, target)  # fmt: skip
    assert list(est.feature_names_in_) == ["u", "v", "w"]
    want = fastbp.MLPRegressor(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=5)
    assert est.n_features_in_ == 3 and est.coefs_[0].shape == (3, 5) and want is not None


class _Pinned(np.ndarray):
    """A partition that cannot be pickled: it fails the fit if it ever leaves its worker."""

    def __reduce__(self):
        raise RuntimeError("a partition of X left its worker")


@dask_serialize.register(_Pinned)
def _refuse(block):
    raise RuntimeError("a partition of X left its worker")


def _pin(block):
    return block.view(_Pinned)


def test_partitions_never_leave_their_workers(client, workers):
    """X's partitions are made on the workers and cannot be pickled: neither the fit nor
    the predictions move them (only parameters, gradients and scalars travel)."""
    rs = da.random.RandomState(0)
    X = rs.normal(size=(200, 4), chunks=(50, 4)).map_blocks(_pin, dtype=np.float64)
    y = (rs.normal(size=200, chunks=50) > 0).astype(int)
    X, y = client.persist([X, y], workers=[workers[0]])
    est = fd.DaskMLPClassifier(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=5,
                               client=client, random_state=0).fit(X, y)  # fmt: skip
    assert est.n_iter_ == 5
    assert est.predict(X).compute().shape == (200,)
    with pytest.raises(Exception, match="left its worker"):  # the guard works
        client.gather(futures_of(X))


def test_train_rejects_bad_arguments(client):
    net = fastbp.Network([3, 4, 1], seed=0)
    before = [w.copy() for w in net.weights]
    X, y = regression()
    Xd, yd = da.from_array(X, chunks=60), da.from_array(y, chunks=60)
    with pytest.raises(TypeError, match="network"):
        fd.train("net", Xd, yd, epochs=1, lr=0.1, client=client)
    with pytest.raises(ValueError, match="epochs"):
        fd.train(net, Xd, yd, epochs=0, lr=0.1, client=client)
    with pytest.raises(ValueError, match="Y must have 1 columns"):
        fd.train(net, Xd, da.stack([yd, yd], axis=1), epochs=1, lr=0.1, client=client)
    assert_same_bits(net.weights, before)


# -- bad input ---------------------------------------------------------------------


def test_bad_inputs_raise_before_training_and_change_nothing(client):
    X, y = classification()
    est = fd.DaskMLPClassifier(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=3,
                               random_state=0, client=client).fit(X, y)  # fmt: skip
    before = state(est)
    Xd, yd = da.from_array(X, chunks=40), da.from_array(y, chunks=40)
    bad_x = X.copy()
    bad_x[100, 2] = np.nan  # in partition 2 (rows 80..119)
    frame = dd.from_pandas(pd.DataFrame({"a": X[:, 0], "b": ["x"] * len(X)}), npartitions=2)
    cases = [
        (TypeError, "client", lambda: est.set_params(client="tcp://nowhere").fit(Xd, yd)),
        (ValueError, "partitioned differently", lambda: est.fit(Xd, yd.rechunk(60))),
        (TypeError, r"non-numeric column\(s\) \['b'\]", lambda: est.fit(frame, yd)),
        (ValueError, "X partition 2 contains NaN", lambda: est.fit(
            da.from_array(bad_x, chunks=40), yd)),
        (TypeError, "all be dask collections", lambda: est.fit(Xd, y)),
    ]  # fmt: skip
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()
        est.set_params(client=client)
        assert state(est) == before


def test_dropout_is_refused_before_anything(client):
    X, y = classification()
    est = fd.DaskMLPClassifier(client=client, hidden_layer_sizes=HIDDEN, dropout=0.2)
    before = state(est)
    with pytest.raises(ValueError, match="dropout is not available on a Dask cluster"):
        est.fit(X, y)
    assert state(est) == before


def test_no_workers_is_a_clear_error():
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as empty,
    ):
        est = fd.DaskMLPRegressor(client=empty)
        X, y = regression()
        with pytest.raises(ValueError, match="no workers"):
            est.fit(da.from_array(X, chunks=60), da.from_array(y, chunks=60))
        assert not hasattr(est, "coefs_")


# -- checkpoints and faults --------------------------------------------------------


def test_checkpoint_resumes_the_fit(client, workers, tmp_path):
    X, y = classification()
    Xd, yd = on_one_worker(client, workers[0], X, y)
    path = tmp_path / "fit.npz"
    kw = dict(hidden_layer_sizes=HIDDEN, solver="adam", random_state=0, batch_size=16,
              learning_rate_init=0.01, client=client)  # fmt: skip
    fd.DaskMLPClassifier(max_iter=3, checkpoint=path, **kw).fit(Xd, yd)
    resumed = fd.DaskMLPClassifier(max_iter=7, checkpoint=path, **kw).fit(Xd, yd)
    straight = fd.DaskMLPClassifier(max_iter=7, **kw).fit(Xd, yd)
    assert_same_bits(weights_of(resumed), weights_of(straight))
    assert resumed.loss_curve_ == straight.loss_curve_
    assert resumed.n_iter_ == 7
    with pytest.raises(ValueError, match="belongs to another fit"):
        fd.DaskMLPClassifier(max_iter=3, checkpoint=path, **{**kw, "solver": "sgd"}).fit(Xd, yd)


def test_lbfgs_checkpoint_continues_from_the_saved_weights(client, tmp_path):
    X, y = regression()
    path = tmp_path / "lbfgs.npz"
    kw = dict(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=5, random_state=0,
              client=client, checkpoint=path)  # fmt: skip
    first = fd.DaskMLPRegressor(**kw).fit(X, y)
    saved = np.load(path)["params"]
    _, params = first._engine_state(np.float64)
    np.testing.assert_array_equal(saved, params)  # the last iterate
    second = fd.DaskMLPRegressor(**kw).fit(X, y)
    assert second.loss_ < first.loss_


@pytest.mark.slow
def test_checkpoint_survives_a_killed_client(client, workers, tmp_path):
    """A client process killed mid-fit: a new fit with its checkpoint continues it."""
    X, y = classification()
    data = tmp_path / "data.npz"
    np.savez(data, X=X, y=y)
    path = tmp_path / "fit.npz"
    script = f"""
import numpy as np, dask.array as da
from distributed import Client
from fastbp.dask import DaskMLPClassifier
d = np.load({str(data)!r})
client = Client({client.scheduler.address!r})
X, y = client.persist([da.from_array(d["X"], chunks=30), da.from_array(d["y"], chunks=30)],
                      workers=[{workers[0]!r}])
DaskMLPClassifier(hidden_layer_sizes=(5,), solver="sgd", random_state=0, batch_size=16,
                  max_iter=100000, checkpoint={str(path)!r}, client=client).fit(X, y)
"""
    child = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.exists(), "the child never wrote its checkpoint"
        time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = int(np.load(path)["bookkeeping"][0])
    assert 0 < done < 100000
    Xd, yd = on_one_worker(client, workers[0], X, y)
    kw = dict(hidden_layer_sizes=HIDDEN, solver="sgd", random_state=0, batch_size=16,
              client=client)  # fmt: skip
    resumed = fd.DaskMLPClassifier(max_iter=done + 2, checkpoint=path, **kw).fit(Xd, yd)
    straight = fd.DaskMLPClassifier(max_iter=done + 2, **kw).fit(Xd, yd)
    assert_same_bits(weights_of(resumed), weights_of(straight))


# -- dask-ml -----------------------------------------------------------------------


def test_dask_ml_incremental_and_search(client):
    dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
    model_selection = pytest.importorskip("dask_ml.model_selection")
    X, y = classification(rows=160)
    Xd, yd = da.from_array(X, chunks=40), da.from_array(y, chunks=40)
    inc = dask_ml_wrappers.Incremental(
        fd.DaskMLPClassifier(
            hidden_layer_sizes=HIDDEN, solver="adam", random_state=0, learning_rate_init=0.05
        ),
        scoring="accuracy",
    )
    inc.fit(Xd, yd, classes=[0, 1, 2])
    assert inc.score(Xd, yd) > 0.5
    search = model_selection.GridSearchCV(
        fd.DaskMLPClassifier(
            hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=20, random_state=0
        ),
        {"alpha": [1e-4, 1e-1]},
        cv=2,
    )
    search.fit(X, y)
    assert set(search.cv_results_["param_alpha"]) == {1e-4, 1e-1}
    assert search.best_score_ > 0.5


# -- the last: it kills a worker of the module's cluster ----------------------------


@pytest.mark.slow
def test_lbfgs_fit_survives_a_killed_worker(client, monkeypatch):
    X, y = classification()
    Xd, yd = da.from_array(X, chunks=30), da.from_array(y, chunks=30)  # recomputable
    kw = dict(hidden_layer_sizes=HIDDEN, solver="lbfgs", max_iter=25, random_state=0,
              client=client)  # fmt: skip
    undisturbed = fd.DaskMLPClassifier(**kw).fit(Xd, yd)
    calls = []
    real = fd._Cluster.loss_grad

    def killing(self, params, alpha=0.0):
        calls.append(1)
        if len(calls) == 3:  # mid-fit: kill the worker holding the first block
            holder = sorted(client.who_has(self.blocks[:1])[self.blocks[0].key])[0]
            pid = client.run(os.getpid, workers=[holder])[holder]
            os.kill(pid, signal.SIGKILL)
        return real(self, params, alpha)

    monkeypatch.setattr(fd._Cluster, "loss_grad", killing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        disturbed = fd.DaskMLPClassifier(**kw).fit(Xd, yd)
    assert len(calls) > 3
    assert disturbed.n_iter_ == undisturbed.n_iter_
    assert max_rel(weights_of(disturbed), weights_of(undisturbed)) <= 1e-10
    client.wait_for_workers(2, timeout=60)


def test_import_fastbp_does_not_import_dask():
    assert modules_after("fastbp", {"dask", "distributed"}) == []


def test_estimators_pickle_without_their_client(client):
    est = fd.DaskMLPRegressor(client=client, hidden_layer_sizes=HIDDEN)
    copy_ = pickle.loads(pickle.dumps(est))  # as dask-ml and joblib send it to workers
    assert copy_.client is None and est.client is client
    assert copy_.get_params()["hidden_layer_sizes"] == HIDDEN
    assert clone(est).client is client  # scikit-learn's clone shares the client


def test_cli_train_on_the_cluster(client, capsys):
    """``fastbp train --dask ADDRESS``: full batch (xor), the local run's losses."""
    from fastbp.cli import main

    args = ["train", "--dataset", "xor", "--epochs", "30", "--log-every", "1", "--dtype", "float64"]
    outputs = []
    for extra in ([], ["--dask", client.scheduler.address]):
        main([*args, *extra])  # exit status 3: xor is not learned in 30 epochs
        lines = [line for line in capsys.readouterr().out.splitlines() if "loss" in line]
        outputs.append([float(line.split()[-1]) for line in lines])
    assert len(outputs[0]) == 30
    # printed with 6 decimals: equal, or one unit apart where a rounding boundary falls
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1.01e-6)
