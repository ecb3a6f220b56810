"""The two front ends on fastbp's engine, as the guarantee modules see them.

``FRONT_ENDS`` maps a name to a :class:`FrontEnd`: how to build a small model, fit
it, predict, capture its complete state (for "a rejected call changes nothing"),
count the compiled calls, and which workloads of ``tests/scripts`` it runs in
another process. A test that holds for both is parametrised over
``FRONT_ENDS`` (the ``front_end`` fixture of a module); a front end's own semantics
(scikit-learn's exact errors and its comparison against scikit-learn's estimators;
Network's callback, progress bar and DivergenceError) stay in tests of their own, in
the module of their guarantee.

Also the helpers the scikit-learn tests share: the estimator's state, the twin
scikit-learn estimator, running a call on both and comparing their rejections.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import pickle
import re
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn import neural_network as skl
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, UndefinedMetricWarning
from sklearn.utils._param_validation import InvalidParameterError

import fastbp
from fastbp import _loop, engine
from fastbp import sklearn as fb

SCRIPTS = Path(__file__).parent / "scripts"


def _load_script(name: str, module: str):
    spec = importlib.util.spec_from_file_location(module, SCRIPTS / name)
    out = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(out)
    return out


#: ``tests/scripts/child.py`` (Network) and ``sklearn_child.py`` (the estimators).
net_child = _load_script("child.py", "fastbp_test_child")
sk_child = _load_script("sklearn_child.py", "fastbp_test_sklearn_child")

N_IN = 3
SOLVERS = ("sgd", "adam", "lbfgs")
ESTIMATORS = ("MLPClassifier", "MLPRegressor")
DIVERGED = "Solver produced non-finite parameter weights"
# Data within this magnitude, on the default hyper-parameters, must train to finite
# weights and predictions (as scikit-learn's does); beyond it overflowing is correct.
MODERATE = 1e3


# -- counting the compiled calls ----------------------------------------------------------------


@contextlib.contextmanager
def kernel_calls():
    """Count the calls of every compiled entry point the front ends use.

    The engine's modules get a stand-in for ``fastbp._loop`` whose entry points
    count their calls; ``fastbp._loop`` itself is left alone, because compiled code
    resolves its globals there when it is first compiled (here, possibly inside
    this context): a counting Python function in its place would not compile.
    """
    calls: list[str] = []
    stand_in = types.SimpleNamespace(**vars(_loop))
    for name in ("train_chunk", "loss_grad", "forward", "gather_rows"):
        real = getattr(_loop, name)

        def counting(*args, _real=real, _name=name):
            calls.append(_name)
            return _real(*args)

        setattr(stand_in, name, counting)
    with pytest.MonkeyPatch.context() as mp:
        for module in (engine.driver, engine.blocks, engine.predict):
            mp.setattr(module, "_loop", stand_in)
        yield calls


def names_argument(message: str, names) -> bool:
    """``message`` names one of ``names`` as a whole word."""
    return any(re.search(rf"(^|\W){re.escape(n)}(?!\w)", message) for n in names)


# -- the front ends -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontEnd:
    """What a shared guarantee needs to know of one front end."""

    name: str
    #: (seed, dtype) -> a small fitted model on ``data``'s shapes
    make: Callable
    #: (rows, seed) -> (X, y) a small model of ``make`` trains on
    data: Callable
    #: (model, X, y) -> the model, trained further
    fit: Callable
    #: (model, X) -> predictions
    predict: Callable
    #: model -> its complete state, comparable with ==
    state: Callable
    #: model -> every parameter array
    params: Callable
    #: the workloads of its script: name -> digest of a fit (``digest(name, seed)``)
    child: types.ModuleType
    digest: Callable
    #: the names of its script's workloads
    workloads: tuple[str, ...]


def _net_make(seed=0, dtype=np.float64):
    return fastbp.Network([N_IN, 5, 2], dtype=dtype, seed=seed)


def _net_data(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, N_IN)), rng.uniform(size=(rows, 2))


def _net_fit(net, x, y):
    net.fit(x, y, epochs=2, batch_size=4, shuffle=True)
    return net


def _net_state(net) -> tuple:
    """Parameters, bit for bit and with their dtypes, and the generator that shuffles."""
    params = tuple((p.dtype.str, p.tobytes()) for p in net._weight_views + net._bias_views)
    return params, repr(net._rng.bit_generator.state)


def state_of(est) -> dict[str, bytes]:
    """Every attribute of the estimator, pickled: weights, optimizer state and step
    count, loss curve, counters, label binarizer, random state, parameters."""
    return {name: pickle.dumps(value) for name, value in est.__dict__.items()}


def _sk_make(seed=0, dtype=np.float64):
    est = fb.MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=seed, batch_size=4)
    x, y = _sk_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(x.astype(dtype), y)


def _sk_data(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, N_IN)), rng.standard_normal((rows, 2))


def _sk_fit(est, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(x, y)


FRONT_ENDS = {
    "Network": FrontEnd(
        name="Network",
        make=_net_make,
        data=_net_data,
        fit=_net_fit,
        predict=lambda net, x: net.predict(x),
        state=_net_state,
        params=lambda net: list(net.weights + net.biases),
        child=net_child,
        digest=lambda name, seed=11: net_child.train_digest(name, seed=seed),
        workloads=tuple(net_child.WORKLOADS),
    ),
    "sklearn": FrontEnd(
        name="sklearn",
        make=_sk_make,
        data=_sk_data,
        fit=_sk_fit,
        predict=lambda est, x: est.predict(x),
        state=state_of,
        params=lambda est: list(est.coefs_ + est.intercepts_),
        child=sk_child,
        digest=lambda name, seed=11: sk_child.fit_digest(name, seed),
        workloads=tuple(sk_child.WORKLOADS),
    ),
}


def all_finite_params(front_end: FrontEnd, model) -> bool:
    return all(np.isfinite(p).all() for p in front_end.params(model))


# -- the scikit-learn estimators against scikit-learn's own -------------------------------------


def assert_unchanged(est, before: dict[str, bytes]) -> None:
    after = state_of(est)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"attributes changed by a rejected call: {changed}"


def all_finite(est) -> bool:
    return all(np.isfinite(p).all() for p in est.coefs_ + est.intercepts_)


def outcome(call):
    """(result, exception) of ``call()``."""
    try:
        return call(), None
    except Exception as exc:  # any exception is an outcome here
        return None, exc


def is_divergence(exc) -> bool:
    return type(exc) is ValueError and str(exc).startswith(DIVERGED)


# fastbp's own parameters, which scikit-learn's estimators do not take.
FASTBP_ONLY = ("n_threads", "progress", "class_weight", "dropout")


def twin(est):
    """scikit-learn's estimator with the same parameters (a RandomState deep-copied)."""
    params = {k: v for k, v in est.get_params().items() if k not in FASTBP_ONLY}
    return getattr(skl, type(est).__name__)(**copy.deepcopy(params))


def train_data(kind: str, n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN))
    y = np.arange(n) % 3 if kind == "MLPClassifier" else rng.standard_normal(n)
    return x, y


def fitted_pair(kind: str, solver: str, dtype=np.float64, **params):
    """A fitted fastbp estimator and its fitted scikit-learn twin, from the same state."""
    params = {"hidden_layer_sizes": (4,), "max_iter": 2, "random_state": 0, **params}
    ours = getattr(fb, kind)(solver=solver, **params)
    theirs = twin(ours)
    x, y = train_data(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(x.astype(dtype), y)
        theirs.fit(x.astype(dtype), y)
    return ours, theirs


ALLOWED_WARNINGS = (ConvergenceWarning, DataConversionWarning, UndefinedMetricWarning)


def run_ours(call, huge: bool = False):
    """Run ``call`` on a fastbp estimator: (result, exception, kernel calls). Only the
    warnings scikit-learn gives in the same situation may be emitted: with ``huge``
    data (beyond MODERATE) also NumPy's overflow warnings, which scikit-learn's
    scoring gives on such data too (see :func:`run_theirs`)."""
    with kernel_calls() as calls, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, exc = outcome(call)
    for w in caught:
        clipped = w.category is UserWarning and "batch_size" in str(w.message)
        overflow = huge and w.category is RuntimeWarning and str(w.message).startswith("overflow")
        assert issubclass(w.category, ALLOWED_WARNINGS) or clipped or overflow, (
            w.category,
            w.message,
        )
    return result, exc, list(calls)


def run_theirs(call):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scikit-learn's own overflow warnings
        return outcome(call)


# Rejections where scikit-learn goes on (deliberate differences, listed in the
# docstring of fastbp.sklearn): a warm start or partial_fit with other
# hidden_layer_sizes, which scikit-learn's sgd and adam silently ignore; targets or
# sample weights beyond float32's range for float32 X, trained in float32 (where
# scikit-learn overflows); infinite regression targets given as an object array
# (which scikit-learn checks for NaN only).
STRICTER = (
    "does not match the fitted network's hidden layers",
    "beyond the range of float32",
    "Input y contains infinity",
)


# Where scikit-learn fails mid-fit on settings changed between calls (solver from
# 'lbfgs' to 'sgd'/'adam', early_stopping switched) and fastbp trains: a deliberate
# difference too.
SKLEARN_CRASHES = (
    "object has no attribute 'loss_curve_'",
    "'NoneType' object has no attribute 'append'",
    "unsupported operand type(s) for -: 'NoneType' and 'float'",
)


def accepted_by_sklearn(their_exc) -> bool:
    """scikit-learn accepted the call: it trained (perhaps to non-finite weights, or
    crashing on settings it cannot continue from)."""
    if their_exc is None or is_divergence(their_exc):
        return True
    crashed = isinstance(their_exc, AttributeError | TypeError)
    return crashed and any(text in str(their_exc) for text in SKLEARN_CRASHES)


def check_rejection(exc, names, their_exc, checks_params_anyway: bool = False) -> None:
    """A rejection: ValueError/TypeError, naming the argument or, where scikit-learn
    rejects the same call, with scikit-learn's error. Where scikit-learn accepts the
    call, only a deliberate difference: STRICTER, or ``checks_params_anyway``, a
    partial_fit on a fitted estimator, where scikit-learn skips its parameter checks
    and fastbp does not."""
    assert isinstance(exc, ValueError | TypeError), f"{type(exc).__name__}: {exc}"
    if their_exc is None:
        stricter = any(text in str(exc) for text in STRICTER)
        params = checks_params_anyway and type(exc) is InvalidParameterError
        assert stricter or params, f"scikit-learn accepts what fastbp rejects: {exc}"
    same = type(exc) is type(their_exc) and str(exc) == str(their_exc)
    assert same or names_argument(str(exc), names), (exc, their_exc)
