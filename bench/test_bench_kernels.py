"""The kernels the training loop runs, over one batch: groups ``kernel|<op>|<case>|<dtype>``.

``op`` is the kernel's name (``dense_forward``, ``dense_backward``,
``dense_backward_sgd``, ``momentum_update``, ``adam_update``: the rows of
``bench.cases.KERNEL_TABLE`` with a ``bench`` variant, built by the same builders as
the kernel tests). fastbp's compiled kernels, their NumPy twins in
:mod:`fastbp.reference` and the GEMM floor (matrix products only), on the shapes of
the cases marked ``kernels``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.cases import (
    CASES,
    DTYPES,
    KERNEL_IMPLS,
    KERNEL_OPS,
    Case,
    kernel_flops,
    kernel_supported,
    make_kernel_op,
)
from bench.conftest import Measure, effective_case


def _params() -> list[object]:
    params = []
    for case in CASES:
        if not case.kernels:
            continue
        marks = [pytest.mark.big] if case.big else []
        for op in KERNEL_OPS:
            for dtype in DTYPES:
                for impl in KERNEL_IMPLS:
                    if kernel_supported(impl, op):
                        ident = f"{op}-{case.name}-{np.dtype(dtype).name}-{impl}"
                        params.append(pytest.param(op, case, dtype, impl, id=ident, marks=marks))
    return params


@pytest.mark.parametrize(("op", "case", "dtype", "impl"), _params())
def test_kernel(
    op: str,
    case: Case,
    dtype: type[np.floating],
    impl: str,
    measure: Measure,
    benchmark: object,
    request: pytest.FixtureRequest,
) -> None:
    run_case = effective_case(case, request.config)
    benchmark.group = f"kernel|{op}|{case.name}|{np.dtype(dtype).name}"  # type: ignore[attr-defined]
    fn = make_kernel_op(impl, op, run_case, dtype)
    info = run_case.info(dtype)
    info.update(impl=impl, op=op, kind="kernel", flops_per_call=kernel_flops(run_case, op))
    measure(fn, info)
