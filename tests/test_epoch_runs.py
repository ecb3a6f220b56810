"""Runs of epochs: the estimators run several epochs per compiled chunk when nothing
changes between them (``epochs_ahead`` in ``fastbp.engine.Trainer``), and that never
changes a fit: weights, optimizer state, loss curve, counts and stopping epoch are
bit for bit those of a fit run one step per chunk. A run that ends with non-finite
weights runs again one epoch at a time, so that a diverging fit still ends at its
last finite epoch."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from frontends import DIVERGED, sk_child

from fastbp import sklearn as fb
from fastbp.engine import driver

# (estimator, parameters): each stopping rule and learning-rate schedule, with and
# without shuffling, with dropout and with a float32 fit.
CASES = {
    "adam": ("MLPClassifier", {"solver": "adam"}),
    "adam-stops": ("MLPClassifier", {"solver": "adam", "tol": 1e-2, "n_iter_no_change": 3}),
    "sgd-data-order": ("MLPRegressor", {"solver": "sgd", "shuffle": False}),
    "sgd-adaptive": (
        "MLPRegressor",
        {"solver": "sgd", "learning_rate": "adaptive", "tol": 1e-2, "n_iter_no_change": 2},
    ),
    "sgd-invscaling": ("MLPRegressor", {"solver": "sgd", "learning_rate": "invscaling"}),
    "dropout": ("MLPClassifier", {"solver": "adam", "dropout": 0.2}),
    "float32": ("MLPRegressor", {"solver": "adam", "dtype": np.float32}),
}
# Whether the case's epochs may run several at a time (invscaling's rate changes
# after every epoch).
IN_RUNS = {name: name != "sgd-invscaling" for name in CASES}


def _fit(kind: str, params: dict, max_iter: int = 60):
    params = dict(params)
    dtype = params.pop("dtype", np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 5)).astype(dtype)
    y = x @ rng.standard_normal(5) if kind == "MLPRegressor" else (x[:, 0] > 0).astype(int)
    est = getattr(fb, kind)(
        hidden_layer_sizes=(7,), batch_size=16, max_iter=max_iter, random_state=0, **params
    )
    return est.fit(x, y)


@pytest.fixture
def runs(monkeypatch):
    """The number of epochs of each run of several epochs that the trainer makes."""
    sizes: list[int] = []
    real = driver.Trainer._run_checked

    def spy(self, orders, count, *args):
        sizes.append(count)
        return real(self, orders, count, *args)

    monkeypatch.setattr(driver.Trainer, "_run_checked", spy)
    return sizes


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_runs_of_epochs_fit_as_one_step_per_chunk(name, runs, monkeypatch):
    kind, params = CASES[name]
    est = _fit(kind, params)
    assert bool(runs) == IN_RUNS[name], runs
    # Chunks aimed at 0 s are one step each: every epoch its own run.
    monkeypatch.setattr(driver, "CHUNK_SECONDS", 0.0)
    runs.clear()
    one_step = _fit(kind, params)
    assert not runs
    assert sk_child.digest(est) == sk_child.digest(one_step)
    if "n_iter_no_change" in params:  # the stopping rule ended the fit (or cut the rate)
        assert est.n_iter_ < 60 or params.get("learning_rate") == "adaptive"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_run_stops_where_the_rule_can_first_fire(runs):
    """With the loss improving, a run is n_iter_no_change + 1 epochs: the rule needs
    that many epochs without improvement to fire, so it can fire at a run's last
    epoch only."""
    _fit("MLPClassifier", {"solver": "adam", "tol": 0.0, "n_iter_no_change": 4}, max_iter=30)
    assert runs and max(runs) == 5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_run_ending_non_finite_runs_again_epoch_by_epoch(runs, monkeypatch):
    """A run of epochs that overflows is run again from its start one epoch at a time:
    the fit ends at its last finite epoch, as a fit run one step per chunk does."""
    restored = []
    real = driver.Snapshot.restore

    def restore(self):
        restored.append(sys._getframe(1).f_code.co_name)
        return real(self)

    monkeypatch.setattr(driver.Snapshot, "restore", restore)
    params = {"solver": "sgd", "learning_rate_init": 0.005, "batch_size": 10}

    def diverging():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((40, 6))
        y = rng.standard_normal(40) * 100
        est = fb.MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0, **params)
        with pytest.raises(ValueError, match=DIVERGED):
            est.fit(x, y)
        return est

    est = diverging()
    assert runs and "_run_checked" in restored, (runs, restored)
    assert max(runs) < est.n_iter_ < 30  # several finite epochs in the run that overflowed
    assert all(np.isfinite(p).all() for p in est.coefs_ + est.intercepts_)
    monkeypatch.setattr(driver, "CHUNK_SECONDS", 0.0)
    assert sk_child.digest(est) == sk_child.digest(diverging())
