"""Every compiled kernel against its NumPy twin in :mod:`fastbp.reference`.

One table, ``bench.cases.KERNEL_TABLE`` (shared with the kernel benchmarks), maps
each kernel to its twin and a builder of its arguments, with one variant per
registry entry (activation, loss); each test builds the arguments once, runs the
twin and the kernel on copies of them and compares what the kernel wrote (and
returned) with what the reference did, within the tolerance table of
``conftest.py``. Kernels that take a thread count run twice: serially
(``threads=None``) and threaded; the largest shape is big enough for the threaded
and BLAS paths.
"""

from __future__ import annotations

import inspect

import numba
import numpy as np
import pytest

from bench.cases import KERNEL_BY_NAME, KERNEL_OPS, KERNEL_TABLE, _array
from fastbp import _loop, kernels, reference

# (m, k, n): rows, inner width, outer width of a layer (m samples, k inputs, n units).
SHAPES = [
    (1, 1, 1),  # one sample, one unit
    (1, 3, 17),  # widths no multiple of a SIMD vector
    (17, 1, 3),
    (3, 17, 33),  # m * k * n = 1683: the plain-loop product
    (33, 17, 17),  # m * k * n = 9537 >= SMALL_GEMM: the BLAS product
    (130, 17, 128),  # m * n = 16640 >= PARALLEL_MIN: the parallel passes
]
# Shapes also run with Fortran-ordered and transposed inputs (loop and BLAS paths).
LAYOUT_SHAPES = [(3, 17, 33), (33, 17, 17)]


def _params(layouts):
    for row in KERNEL_TABLE:
        name = row.name
        for variant in row.variants:
            if layouts and not row.two_d:
                continue
            kid = f"{name}-{variant}" if variant else name
            for shape in LAYOUT_SHAPES if layouts else SHAPES:
                yield pytest.param(name, variant, shape, id=f"{kid}-{'x'.join(map(str, shape))}")


def _copy(value):
    return value.copy(order="K") if isinstance(value, np.ndarray) else value


def _run_and_compare(name, variant, shape, dtype, fortran, rng, assert_close):
    row = KERNEL_BY_NAME[name]
    case = row.build(rng, shape, dtype, fortran, *row.variants[variant])
    results = {}
    # threads=None is the serial code; a count enables the threaded paths. Both are
    # passed explicitly, as the training loop does, to share its compiled versions.
    threaded = "threads" in inspect.signature(row.kernel.py_func).parameters
    runs = [
        ("numpy", row.reference, {}),
        ("fastbp", row.kernel, {"threads": None} if threaded else {}),
    ]
    if threaded and not fortran:
        runs.append(("fastbp-threads", row.kernel, {"threads": numba.config.NUMBA_NUM_THREADS}))
    for impl_name, fn, kwargs in runs:
        args = [_copy(arg) for arg in case.args]
        before = [_copy(arg) for arg in args]
        returned = fn(*args, **kwargs)
        for i, (arg, old) in enumerate(zip(args, before, strict=True)):
            if not isinstance(arg, np.ndarray):
                continue
            # (index arrays, of the sparse kernels, keep their integer dtype)
            want_dtype = dtype if old.dtype.kind == "f" else old.dtype
            assert arg.dtype == want_dtype, f"{impl_name}: argument {i} changed dtype"
            assert arg.flags.f_contiguous == old.flags.f_contiguous
            if i not in case.outputs:
                np.testing.assert_array_equal(arg, old, err_msg=f"{impl_name} changed input {i}")
        for i in case.outputs:
            assert np.isfinite(args[i]).all(), f"{impl_name} left output {i} unwritten"
        results[impl_name] = (args, returned)

    want_args, want_ret = results.pop("numpy")
    for got_args, got_ret in results.values():
        for i, (kind, scale) in case.outputs.items():
            assert_close(got_args[i], want_args[i], dtype, kind, scale)
        if case.returns is None:
            assert got_ret is None
            assert want_ret is None
        else:
            kind, scale = case.returns
            assert isinstance(got_ret, float)
            assert_close(got_ret, want_ret, dtype, kind, scale)


@pytest.mark.parametrize(("name", "variant", "shape"), list(_params(layouts=False)))
def test_kernel_matches_reference(name, variant, shape, dtype, rng, assert_close):
    _run_and_compare(name, variant, shape, dtype, False, rng, assert_close)


@pytest.mark.parametrize(("name", "variant", "shape"), list(_params(layouts=True)))
def test_kernel_accepts_fortran_and_transposed_inputs(
    name, variant, shape, dtype, rng, assert_close
):
    _run_and_compare(name, variant, shape, dtype, True, rng, assert_close)


def test_builders_make_the_layouts_they_claim(rng):
    """The layout tests really pass F-ordered and transposed (non-C) inputs."""
    f_ordered = _array(rng, (3, 4), np.float64, "F")
    transposed = _array(rng, (3, 4), np.float64, "T")
    assert f_ordered.flags.f_contiguous
    assert not f_ordered.flags.c_contiguous
    assert transposed.flags.f_contiguous
    assert not transposed.flags.c_contiguous
    assert transposed.base is not None


def test_kernel_table_covers_every_kernel():
    """Every public compiled function of fastbp.kernels has one row, with its NumPy twin
    of the same name in fastbp.reference; every registry entry is a variant."""
    public = {
        name
        for name, obj in vars(kernels).items()
        if isinstance(obj, numba.core.dispatcher.Dispatcher)
        and not name.startswith("_")
        and obj.py_func.__module__ == kernels.__name__
    }
    assert {"dense_forward", "dense_backward", "dense_backward_sgd", "adam_update"} <= public
    assert [row.name for row in KERNEL_TABLE] == list(KERNEL_BY_NAME)
    assert set(KERNEL_BY_NAME) == public
    for row in KERNEL_TABLE:
        assert row.kernel is getattr(kernels, row.name)
        assert row.reference is getattr(reference, row.name)
    assert set(KERNEL_BY_NAME["dense_forward"].variants) == set(kernels.ACTIVATIONS)
    sklearn_losses = {loss.name for loss in kernels.LOSSES.values() if loss.term is not None}
    assert set(KERNEL_BY_NAME["output_activation"].variants) == sklearn_losses


def test_benchmarks_time_the_kernels_the_loop_runs():
    """The kernel benchmarks time exactly the kernels the compiled training loop calls."""
    loop_source = inspect.getsource(_loop)
    called = {row.name for row in KERNEL_TABLE if f"kernels.{row.name}(" in loop_source}
    per_step = {"dense_forward", "dense_backward", "dense_backward_sgd", "adam_update"}
    assert per_step | {"momentum_update"} <= called
    assert per_step | {"momentum_update"} == set(KERNEL_OPS)
