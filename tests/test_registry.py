"""The registries of :mod:`fastbp.kernels`: one source of truth for codes and math.

Every entry's compiled element-wise math against its NumPy twin (both dtypes),
the codes the kernels and the reference use coming from the same registry, the
tables other modules still keep agreeing with it, scikit-learn's own registries
naming the same things, and Numba's on-disk cache noticing an edited registry.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
import pytest

from fastbp import kernels, reference


@numba.njit
def _map_forward(f, z, out):
    for i in range(z.size):
        out[i] = f(z[i])


@numba.njit
def _map_delta(f, delta, a, out):
    for i in range(delta.size):
        out[i] = f(delta[i], a[i])


@numba.njit
def _map_term(f, a, y, lo, hi, out):
    for i in range(a.size):
        out[i] = f(a[i], y[i], lo, hi)


def _preactivations(rng, dtype):
    """z over the ranges that matter: near 0, moderate, saturating; n = 1 included."""
    z = np.concatenate([[0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0, 1e4, -1e4], rng.uniform(-6, 6, 97)])
    return z.astype(dtype)


@pytest.mark.parametrize("name", list(kernels.ACTIVATIONS))
def test_activation_compiled_matches_twin(name, dtype, rng, assert_close):
    entry = kernels.ACTIVATIONS[name]
    z = _preactivations(rng, dtype)
    got = z.copy()
    if entry.forward is not None:  # None: the identity, which the kernels skip
        _map_forward(entry.forward, z, got)
    want = z.copy()
    entry.forward_numpy(want)
    assert got.dtype == want.dtype == dtype
    # the compiled sigmoid is its own exp (about 1 ulp from NumPy's): the + 1 bounds it
    assert_close(got, want, dtype, "elementwise", np.abs(want.astype(np.float64)) + 1)

    delta = rng.uniform(-1, 1, z.size).astype(dtype)
    got_delta = delta.copy()
    if entry.delta is not None:  # None: f' = 1, which the kernels skip
        _map_delta(entry.delta, delta, want, got_delta)
    want_delta = delta.copy()
    entry.delta_numpy(want_delta, want)
    assert got_delta.dtype == dtype
    assert_close(got_delta, want_delta, dtype, "elementwise")


@pytest.mark.parametrize("name", list(kernels.ACTIVATIONS))
def test_activation_derivative_is_taken_from_the_output(name, rng):
    """delta(1, f(z)) is f'(z): checked against central differences of the twin."""
    entry = kernels.ACTIVATIONS[name]
    z = rng.uniform(-3, 3, 50)
    z = z[np.abs(z) > 1e-3]  # away from relu's kink
    h = 1e-6
    up, down, a = z + h, z - h, z.copy()
    for arr in (up, down, a):
        entry.forward_numpy(arr)
    slope = np.ones_like(z)
    entry.delta_numpy(slope, a)
    np.testing.assert_allclose(slope, (up - down) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "name", [loss.name for loss in kernels.LOSSES.values() if loss.term is not None]
)
def test_loss_term_compiled_matches_twin(name, dtype, rng, assert_close):
    entry = kernels.LOSSES[name]
    a = rng.uniform(0.05, 0.95, 64).astype(dtype)
    y = rng.integers(0, 2, 64).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    got = np.full(64, np.nan)
    _map_term(entry.term, a, y, dtype(eps), dtype(1 - eps), got)
    want = entry.term_numpy(a.astype(np.float64), y.astype(np.float64), eps)
    assert_close(got, want, dtype, "sum", np.abs(want) + 1)


def test_codes_are_positions_and_names_are_unique():
    for registry in (kernels.ACTIVATIONS, kernels.LOSSES):
        assert [entry.code for entry in registry.values()] == list(range(len(registry)))
        assert [entry.name for entry in registry.values()] == list(registry)
        with pytest.raises(TypeError):
            registry["new"] = None  # read-only


def test_former_constants_are_aliases_of_the_registry():
    acts, losses = kernels.ACTIVATIONS, kernels.LOSSES
    assert tuple(acts[n].code for n in ("identity", "logistic", "tanh", "relu")) == (
        kernels.IDENTITY,
        kernels.LOGISTIC,
        kernels.TANH,
        kernels.RELU,
    )
    assert tuple(
        losses[n].code for n in ("mse", "squared_error", "poisson", "binary_log_loss", "log_loss")
    ) == (
        kernels.LOSS_MSE,
        kernels.LOSS_SQUARED,
        kernels.LOSS_POISSON,
        kernels.LOSS_BINARY,
        kernels.LOSS_SOFTMAX,
    )


def test_reference_takes_its_codes_from_the_kernels_registry():
    """reference.py defines no code table of its own: it indexes the same entries."""
    assert tuple(kernels.ACTIVATIONS.values()) == reference._ACTIVATION_OF
    assert tuple(kernels.LOSSES.values()) == reference._LOSS_OF
    tree = ast.parse(Path(reference.__file__).read_text(encoding="utf-8"))
    constants = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert constants == []


def test_loss_activations_are_registered():
    for loss in kernels.LOSSES.values():
        if loss.layer_activation is not None:
            assert loss.layer_activation in kernels.ACTIVATIONS
        # an output function is applied after an identity layer, never on top of another
        if loss.output is not None:
            assert loss.layer_activation == "identity"
            assert loss.output_numpy is not None


def test_optimizers_registry_names_each_class_and_its_compiled_update():
    """Each registered optimizer: a class with its bundle, whose type picks the update."""
    from fastbp.engine import optimizers

    for name, cls in optimizers.OPTIMIZERS.items():
        assert cls.name == name
        opt = cls(5, np.float64)
        bundle = opt.bundle()
        assert type(bundle).__module__ == "fastbp._loop"
        assert opt.state.shape == (cls.n_state, 5)


def test_registries_name_what_scikit_learn_names():
    base = pytest.importorskip("sklearn.neural_network._base")
    # every activation and loss of scikit-learn's MLP is registered, under its name
    # (the registries may hold more: fastbp.Network is not limited to scikit-learn's)
    assert set(base.DERIVATIVES) <= set(kernels.ACTIVATIONS)
    outputs = {loss.out_activation for loss in kernels.LOSSES.values()} - {None}
    assert set(base.ACTIVATIONS) <= set(kernels.ACTIVATIONS) | outputs
    sklearn_losses = {loss.name for loss in kernels.LOSSES.values() if loss.term is not None}
    assert set(base.LOSS_FUNCTIONS) <= sklearn_losses
    rng = np.random.default_rng(0)
    for name in base.DERIVATIVES:
        entry = kernels.ACTIVATIONS[name]
        z = rng.uniform(-4, 4, (7, 3))
        ours, theirs = z.copy(), z.copy()
        entry.forward_numpy(ours)
        base.ACTIVATIONS[name](theirs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-15)
        delta = rng.uniform(-1, 1, z.shape)
        ours_d, theirs_d = delta.copy(), delta.copy()
        entry.delta_numpy(ours_d, ours)
        base.DERIVATIVES[name](ours, theirs_d)
        np.testing.assert_allclose(ours_d, theirs_d, rtol=1e-15)
    for loss in kernels.LOSSES.values():
        if loss.output_numpy is not None:
            z = rng.uniform(-4, 4, (7, 3))
            ours, theirs = z.copy(), z.copy()
            loss.output_numpy(ours)
            base.ACTIVATIONS[loss.out_activation](theirs)
            np.testing.assert_allclose(ours, theirs, rtol=1e-14)


def test_generated_dispatch_takes_any_registry():
    """A new entry needs only its math and a line: the dispatch is generated from the list."""

    class Entry(NamedTuple):
        name: str
        forward: object
        code: int = -1

    @kernels.jit_inline
    def softplus(z):
        return np.log1p(np.exp(z))

    entries = kernels._registry(*kernels.ACTIVATIONS.values(), Entry("softplus", softplus))
    apply = kernels._per_code(
        "apply",
        "z",
        entries.values(),
        "forward",
        case="for i in range(z.size):\n    z[i] = {fn}(z[i])",
    )

    @numba.njit
    def run(z, code):
        apply(z, code)

    z = np.linspace(-3, 3, 13)
    for code, expected in (
        (entries["softplus"].code, np.log1p(np.exp(z))),
        (1, 1 / (1 + np.exp(-z))),
    ):
        got = z.copy()
        run(got, code)
        np.testing.assert_allclose(got, expected, rtol=1e-14)


_CACHE_CHILD = textwrap.dedent(
    """
    import numpy as np
    from fastbp import kernels
    x = np.array([[-1.0, 2.0]]); w = np.eye(2); b = np.zeros(2); out = np.empty((1, 2))
    kernels.dense_forward(x, w, b, out, kernels.RELU, None)
    hits = sum(kernels.dense_forward.stats.cache_hits.values())
    print(kernels.__file__, hits, repr(out.tolist()))
    """
)


@pytest.mark.slow
def test_editing_the_registry_recompiles_the_cached_kernels(tmp_path):
    """Numba checks a cached function against its own file only: the registries share
    kernels.py with the kernels compiled from them, so editing one recompiles the other."""
    package = tmp_path / "fastbp"
    shutil.copytree(
        Path(kernels.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FASTBP_CACHE", "FASTBP_FASTMATH")}
    env.update(PYTHONPATH=str(tmp_path), NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run():
        proc = subprocess.run(
            [sys.executable, "-c", _CACHE_CHILD],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        where, hits, result = proc.stdout.split(maxsplit=2)
        assert Path(where).parent == package
        return int(hits), result.strip()

    assert run() == (0, "[[0.0, 2.0]]")  # relu; compiles and fills the cache
    assert run() == (1, "[[0.0, 2.0]]")  # from the cache
    source = package / "kernels.py"
    line = 'Activation("relu", _relu, '
    text = source.read_text(encoding="utf-8")
    assert line in text
    source.write_text(text.replace(line, 'Activation("relu", None, '), encoding="utf-8")
    assert run() == (0, "[[-1.0, 2.0]]")  # recompiled: the edited entry, not the cached relu
