"""Read-only memmaps: a read-only numpy.memmap trains without a copy, for both front
ends. Data larger than memory (Network: ~2 GB float32; the estimators: 229 MiB float32
and 458 MiB float64), shuffled and not, without a hidden copy: anonymous memory grows
by a small fixed amount, not by the data size (page cache, RssFile, may grow: that is
the file). Small memmaps of any dtype and order train and predict like the same data
in memory, and are never written to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from frontends import ESTIMATORS, SOLVERS, sk_child, train_data

import fastbp
from fastbp import sklearn as fb

SCRIPT = Path(__file__).parent / "scripts" / "child.py"
SK_SCRIPT = Path(__file__).parent / "scripts" / "sklearn_child.py"
ROWS, COLS = 1 << 21, 256  # 2**29 float32 = 2 GiB
LIMIT = 100 * 2**20  # anonymous memory growth allowed during the fit


@pytest.fixture(scope="module")
def big_memmap(tmp_path_factory):
    directory = tmp_path_factory.mktemp("memmap")
    size = ROWS * COLS * 4
    if shutil.disk_usage(directory).free < size + (2 << 30):
        pytest.skip(f"needs {size / 2**30:.1f} GiB free in {directory}")
    path = directory / "x.f32"
    try:
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(ROWS, COLS))
        rng = np.random.default_rng(0)
        chunk = 1 << 16
        for start in range(0, ROWS, chunk):
            mm[start : start + chunk] = rng.standard_normal((chunk, COLS), dtype=np.float32)
        mm.flush()
        del mm
        yield path
    finally:
        path.unlink(missing_ok=True)


def _run(path: Path, shuffle: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "memmap", str(path), str(ROWS), str(COLS), str(int(shuffle))],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("front_end", "shuffle"),
    [("Network", False), ("Network", True), ("sklearn", None)],
    ids=["Network-ordered", "Network-shuffled", "sklearn-both"],
)
def test_memmap_trains_without_a_copy(request, front_end, shuffle):
    """Network on the 2 GiB float32 file, shuffled and not; the estimators on the
    float32 and float64 files, each in one process, shuffled and not."""
    if front_end == "sklearn":
        _sklearn_trains_without_a_copy(request.getfixturevalue("big_memmaps"))
        return
    result = _run(request.getfixturevalue("big_memmap"), shuffle)
    growth = result["peak"]["RssAnon"] - result["before"]["RssAnon"]
    print(
        f"\nshuffle={shuffle}: RssAnon +{growth / 2**20:.1f} MiB at peak, "
        f"RssFile {result['peak']['RssFile'] / 2**20:.0f} MiB, fit {result['seconds']:.1f} s"
    )
    assert result["finite"]
    assert np.isfinite(result["loss"])
    assert growth < LIMIT, f"anonymous memory grew by {growth / 2**20:.0f} MiB"


@pytest.mark.parametrize("net_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("order", ["C", "F"])
def test_read_only_memmap(tmp_path, net_dtype, data_dtype, order):
    """Network: a small read-only memmap (any dtype, C or F order) works everywhere."""
    rng = np.random.default_rng(0)
    path = tmp_path / "x.bin"
    x = np.memmap(path, dtype=data_dtype, mode="w+", shape=(20, 3), order=order)
    x[:] = rng.standard_normal((20, 3)) * 3
    x.flush()
    del x
    x = np.memmap(path, dtype=data_dtype, mode="r", shape=(20, 3), order=order)
    y = rng.random((20, 2))
    net = fastbp.Network([3, 4, 2], dtype=net_dtype, seed=0)
    net.fit(x, y, epochs=2, batch_size=7, shuffle=True)
    net.fit(x, y, epochs=2)
    assert np.isfinite(net.predict(x)).all()
    assert np.isfinite(net.loss(x, y))
    assert all(np.isfinite(g).all() for g in net.gradients(x, y)[0])
    assert not x.flags.writeable


def test_fit_and_predict_accept_read_only_memmap(tmp_path, rng):
    """Network: np.load(mmap_mode="r") data trains and predicts like the same data in memory."""
    x = rng.normal(size=(23, 3))
    y = rng.uniform(size=(23, 1))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert isinstance(xm, np.memmap)
    assert not xm.flags.writeable
    plain, mapped = fastbp.Network([3, 5, 1], seed=12345), fastbp.Network([3, 5, 1], seed=12345)
    want = plain.fit(x, y, epochs=2, batch_size=5).loss
    got = mapped.fit(xm, ym, epochs=2, batch_size=5).loss
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(mapped.predict(xm), plain.predict(x))
    del xm, ym  # close the maps before tmp_path goes


# -- the scikit-learn estimators ------------------------------------------------------------


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(("dtype", "order"), [(np.float32, "C"), (np.float64, "C")])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_read_only_memmap_trains_like_an_array(tmp_path, kind, solver, dtype, order):
    """A small read-only memmap (shuffled or not) gives the very bits the same data in
    memory gives, in fit, partial_fit and predict, and is never written to."""
    x, y = train_data(kind, 50)
    x = x.astype(dtype)
    path = tmp_path / "x.bin"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=x.shape, order=order)
    mm[:] = x
    mm.flush()
    del mm
    x_map = np.memmap(path, dtype=dtype, mode="r", shape=x.shape, order=order)
    for shuffle in (False, True):
        params = {"hidden_layer_sizes": (5,), "solver": solver, "shuffle": shuffle}
        params.update(batch_size=16, max_iter=3, random_state=0)
        on_map = getattr(fb, kind)(**params).fit(x_map, y)
        in_memory = getattr(fb, kind)(**params).fit(x, y)
        assert on_map.coefs_[0].dtype == dtype
        if solver != "lbfgs" or kind == "MLPRegressor":
            extra = {"classes": [0, 1, 2]} if kind == "MLPClassifier" else {}
            on_map.partial_fit(x_map, y, **extra)
            in_memory.partial_fit(x, y, **extra)
        assert sk_child.digest(on_map) == sk_child.digest(in_memory)
        assert on_map.predict(x_map).tobytes() == in_memory.predict(x).tobytes()
    assert not x_map.flags.writeable
    assert np.array_equal(np.asarray(x_map), x)


MEMMAP_ROWS, MEMMAP_COLS = 500_000, 120  # 229 MiB as float32, 458 MiB as float64
MEMMAP_LIMIT = 48 * 2**20  # anonymous memory growth allowed during a fit


@pytest.fixture(scope="module")
def big_memmaps(tmp_path_factory):
    """A float32 and a float64 file of MEMMAP_ROWS x MEMMAP_COLS standard normals."""
    directory = tmp_path_factory.mktemp("memmap")
    size = MEMMAP_ROWS * MEMMAP_COLS * (4 + 8)
    if shutil.disk_usage(directory).free < size + (1 << 30):
        pytest.skip(f"needs {size / 2**30:.1f} GiB free in {directory}")
    paths = {}
    try:
        for dtype in (np.float32, np.float64):
            path = paths[np.dtype(dtype).name] = directory / f"x.{np.dtype(dtype).name}"
            mm = np.memmap(path, dtype=dtype, mode="w+", shape=(MEMMAP_ROWS, MEMMAP_COLS))
            rng = np.random.default_rng(0)
            chunk = 1 << 16
            for start in range(0, MEMMAP_ROWS, chunk):
                rows = min(chunk, MEMMAP_ROWS - start)
                mm[start : start + rows] = rng.standard_normal((rows, MEMMAP_COLS), dtype=dtype)
            mm.flush()
            del mm
        yield paths
    finally:
        for path in paths.values():
            path.unlink(missing_ok=True)


def _sklearn_trains_without_a_copy(big_memmaps):
    """Read-only memmaps, float32 and float64 (each trained in its own dtype), shuffled
    and not: anonymous memory (RssAnon) and NumPy's traced allocations grow by a few
    MiB (targets and row orders), not by the data size."""
    files = [f"{path}:{dtype}" for dtype, path in big_memmaps.items()]
    proc = subprocess.run(
        [sys.executable, str(SK_SCRIPT), "memmap", str(MEMMAP_ROWS), str(MEMMAP_COLS), *files],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == ["float32", "float64"]
    for dtype, result in results.items():
        assert not result["writeable"]
        for mode in ("ordered", "shuffle"):
            fit = result[mode]
            growth = fit["peak"]["RssAnon"] - fit["before"]["RssAnon"]
            print(
                f"\n{dtype} {mode}: data {result['data_bytes'] / 2**20:.0f} MiB, RssAnon "
                f"+{growth / 2**20:.1f} MiB at peak, traced peak "
                f"{fit['traced_peak'] / 2**20:.1f} MiB, fit {fit['seconds']:.2f} s"
            )
            assert fit["weights_dtype"] == dtype
            assert fit["finite"]
            assert np.isfinite(fit["loss"])
            assert growth < MEMMAP_LIMIT, f"anonymous memory grew by {growth / 2**20:.0f} MiB"
            assert fit["traced_peak"] < MEMMAP_LIMIT
