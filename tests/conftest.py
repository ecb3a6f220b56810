"""Shared fixtures and the one tolerance table of the core test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest

# fastbp's default thread count follows the machine's load (fastbp._threads), and
# in the default mode a wide product rounds differently on 1 and 2 threads. The
# suite compares runs bit for bit, in this process and in the children it starts
# (which inherit this), so it holds the count still; tests/test_thread_budget.py
# switches the load check back on where it tests it.
os.environ["FASTBP_LOAD_AWARE"] = "0"

DTYPES = (np.float32, np.float64)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the files of slow tests first (whole files marked slow, then files with
    some), each file's tests in their order. pyproject.toml runs the suite on two
    pytest-xdist workers, a file to a worker (``--dist loadfile``): a long file
    handed out last leaves the other worker idle. Measured here, cold cache, in
    collection order: 770 s, the last 3 minutes test_cache.py's ``fastbp compile``
    alone on one worker."""
    slow: dict[object, list[bool]] = {}
    for item in items:
        slow.setdefault(item.path, []).append(item.get_closest_marker("slow") is not None)
    rank = {path: 0 if all(marks) else 1 if any(marks) else 2 for path, marks in slow.items()}
    items.sort(key=lambda item: rank[item.path])


# Relative tolerance per dtype and kind of quantity. A comparison passes when
# |got - want| <= rtol * scale elementwise, where ``scale`` bounds the magnitude
# of the terms that produced ``want`` (|want| itself for element-wise results,
# the sum of the absolute values of the summed terms for products and sums), so
# cancellation in a sum cannot make a correct result look wrong.
TOLERANCE = {
    # a handful of roundings, done in the same order: expected to agree to the last bits
    (np.float32, "elementwise"): 1e-6,
    (np.float64, "elementwise"): 1e-14,
    # sums of products, added in another order (BLAS blocks, loop order)
    (np.float32, "sum"): 1e-5,
    (np.float64, "sum"): 1e-10,
    # several layers of products through a whole network (gradients, training)
    (np.float32, "network"): 1e-4,
    (np.float64, "network"): 1e-10,
}


def tolerance(dtype, kind: str) -> float:
    return TOLERANCE[np.dtype(dtype).type, kind]


def assert_close(got, want, dtype, kind: str, scale=None) -> None:
    """Assert ``|got - want| <= rtol * scale`` elementwise (see :data:`TOLERANCE`)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = np.abs(want) if scale is None else np.asarray(scale, dtype=np.float64)
    bound = tolerance(dtype, kind) * np.maximum(scale, np.finfo(dtype).tiny)
    err = np.abs(got - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    assert np.all(err <= bound), (
        f"{kind} mismatch ({np.dtype(dtype).name}): |error| {err[worst]:.3g} > "
        f"{bound[worst]:.3g} at {worst}"
    )


@pytest.fixture(name="assert_close")
def assert_close_fixture():
    """:func:`assert_close`, for the test modules."""
    return assert_close


@pytest.fixture(name="tolerance")
def tolerance_fixture():
    """:func:`tolerance`, for the test modules."""
    return tolerance


@pytest.fixture
def rng():
    """A fresh generator with a fixed seed: every test sees the same data."""
    return np.random.default_rng(20261127)


@pytest.fixture(params=DTYPES, ids=lambda t: np.dtype(t).name)
def dtype(request):
    return request.param


@pytest.fixture(scope="session")
def dask_client():
    """A client of one real LocalCluster (two worker processes, one thread each) for
    the whole session: started once, as it costs seconds."""
    distributed = pytest.importorskip("distributed")
    # The workers inherit this process's environment (PYTHONPATH, FASTBP_LOAD_AWARE=0
    # from above, Numba's cache): they load the kernels compiled before them.
    env = {k: v for k, v in os.environ.items() if k.startswith(("FASTBP_", "NUMBA_"))}
    saved = dict(os.environ)  # Dask's nanny sets OMP_NUM_THREADS=1 here too: put it back
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", env=env
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        os.environ.clear()
        os.environ.update(saved)
        yield client
    os.environ.clear()  # and after a restarted worker (the fault tests)
    os.environ.update(saved)
