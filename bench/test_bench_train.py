"""One training epoch per implementation, per case and dtype: groups ``train|<case>|<dtype>``."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cases import CASES, DTYPES, TRAINERS, Case, Trainer, skip_reason
from bench.conftest import Measure, effective_case


def _params() -> list[object]:
    params = []
    for case in CASES:
        marks = [pytest.mark.big] if case.big else []
        for dtype in DTYPES:
            for trainer in TRAINERS:
                ident = f"{case.name}-{np.dtype(dtype).name}-{trainer.name}"
                params.append(pytest.param(case, dtype, trainer, id=ident, marks=marks))
    return params


@pytest.mark.parametrize(("case", "dtype", "trainer"), _params())
def test_train(
    case: Case,
    dtype: type[np.floating],
    trainer: Trainer,
    measure: Measure,
    benchmark: object,
    request: pytest.FixtureRequest,
) -> None:
    reason = skip_reason(trainer.module)
    if reason is not None:
        pytest.skip(reason)
    run_case = effective_case(case, request.config)
    epochs = trainer.epochs(run_case)
    benchmark.group = f"train|{case.name}|{np.dtype(dtype).name}"  # type: ignore[attr-defined]
    fn = trainer.make(run_case, dtype, epochs)
    info = run_case.info(dtype)
    info.update(impl=trainer.name, label=trainer.label, epochs_per_call=epochs, kind="train")
    measure(fn, info)
