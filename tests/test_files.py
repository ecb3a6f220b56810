"""Files: save is atomic, and load refuses anything but a valid fastbp model with a
clear ValueError, without ever running code from the file."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastbp


def _net(dtype=np.float64) -> fastbp.Network:
    return fastbp.Network([4, 5, 3], dtype=dtype, seed=0)


def _same(a: fastbp.Network, b: fastbp.Network) -> bool:
    return (
        a.sizes == b.sizes
        and a.dtype == b.dtype
        and all(
            x.dtype == y.dtype and x.tobytes() == y.tobytes()
            for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True)
        )
    )


def _arrays(net: fastbp.Network) -> dict[str, np.ndarray]:
    out = {"fastbp_format": np.array(1), "sizes": np.array(net.sizes, dtype=np.int64)}
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        out[f"W{i}"] = w.copy()
        out[f"b{i}"] = b.copy()
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray], allow_pickle: bool = False) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=allow_pickle)
            zf.writestr(f"{name}.npy", buf.getvalue())


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_identical(tmp_path, dtype):
    net = _net(dtype)
    net.save(tmp_path / "m.npz")
    again = fastbp.Network.load(tmp_path / "m.npz")
    assert _same(net, again)
    assert _leftovers(tmp_path, {"m.npz"}) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_permissions(tmp_path):
    """Like a plain open(): 0o666 minus the umask for a new file (not mkstemp's
    private 0o600), and an existing file's own mode when it is replaced."""
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "m.npz"
    _net().save(path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    _net().save(path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_save_overwrites_atomically_on_error(tmp_path, monkeypatch):
    """np.savez failing part-way (after writing some bytes) keeps the old file and
    leaves no temporary file behind."""
    path = tmp_path / "m.npz"
    old = _net()
    old.save(path)
    before = path.read_bytes()
    new = fastbp.Network([4, 5, 3], seed=99)

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    assert path.read_bytes() == before
    assert _same(fastbp.Network.load(path), old)
    assert _leftovers(tmp_path, {"m.npz"}) == []


def test_save_interrupted_keeps_old_file(tmp_path, monkeypatch):
    """A KeyboardInterrupt in the middle of writing behaves like an error."""
    path = tmp_path / "m.npz"
    _net().save(path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastbp.Network([4, 5, 3], seed=5).save(path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, {"m.npz"}) == []


_KILLED_SAVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import fastbp

    real_savez = np.savez

    def slow_savez(file, **arrays):
        real_savez(file, **arrays)
        file.flush()
        print("writing", flush=True)
        import time
        time.sleep(60)

    np.savez = slow_savez
    net = fastbp.Network([1000, 2000, 10], seed=1)
    net.save(sys.argv[1])
    """
)


@pytest.mark.slow
def test_save_killed_keeps_old_file(tmp_path):
    """SIGKILL during a large save (16 MB written, not yet renamed): the old file
    is intact. A killed process cannot clean up, so its temporary file stays, but
    under a hidden name (.m.npz.*.tmp) that load never picks up."""
    path = tmp_path / "m.npz"
    old = _net()
    old.save(path)
    before = path.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
    assert path.read_bytes() == before
    assert _same(fastbp.Network.load(path), old)
    stray = _leftovers(tmp_path, {"m.npz"})
    assert len(stray) == 1
    assert stray[0].startswith(".m.npz.")
    assert stray[0].endswith(".tmp")
    assert (tmp_path / stray[0]).stat().st_size > 16_000_000


def test_save_failure_to_missing_directory(tmp_path):
    with pytest.raises(OSError):
        _net().save(tmp_path / "missing" / "m.npz")
    assert _leftovers(tmp_path, set()) == []


# -- load: everything that is not a valid model is a ValueError ---------------------


def _valid_bytes(tmp_path: Path) -> bytes:
    _net().save(tmp_path / "valid.npz")
    return (tmp_path / "valid.npz").read_bytes()


def _foreign_files(tmp_path: Path) -> dict[str, bytes]:
    valid = _valid_bytes(tmp_path)
    rng = np.random.default_rng(0)
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    npy_buf = io.BytesIO()
    np.save(npy_buf, np.arange(10.0))
    other_npz = io.BytesIO()
    np.savez(other_npz, a=np.arange(5), b=np.ones((2, 2)))
    return {
        "empty": b"",
        "text": b"W0 = [[1, 2], [3, 4]]\n",
        "random": rng.bytes(5000),
        "truncated-half": valid[: len(valid) // 2],
        "truncated-tail": valid[:-10],
        "truncated-header": valid[:30],
        "zip-not-npz": zip_buf.getvalue(),
        "npy-not-npz": npy_buf.getvalue(),
        "other-program-npz": other_npz.getvalue(),
        "pickle": pickle.dumps({"W0": np.ones((4, 5))}),
        "corrupt-middle": valid[:200] + bytes(200) + valid[400:],
    }


def test_load_foreign_files(tmp_path):
    for name, content in _foreign_files(tmp_path).items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=r"not a (valid )?fastbp model") as info:
            fastbp.Network.load(path)
            pytest.fail(f"{name} loaded")
        assert str(path) in str(info.value), name


def test_load_zip_entries_that_are_not_arrays(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("fastbp_format", "sizes", "W0", "b0"):
            zf.writestr(f"{name}.npy", b"not npy data")
    with pytest.raises(ValueError, match=r"not a (valid )?fastbp model"):
        fastbp.Network.load(path)


def test_load_compressed_and_corrupt_member(tmp_path):
    """A deflated member with damaged data: a zlib/CRC error becomes ValueError."""
    good = tmp_path / "good.npz"
    arrays = _arrays(_net())
    np.savez_compressed(good, **arrays)
    assert _same(fastbp.Network.load(good), _net())  # compressed models load too
    data = bytearray(good.read_bytes())
    start = data.index(b"W0.npy") + 80
    data[start : start + 40] = bytes(40)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a"):
        fastbp.Network.load(bad)


def test_load_header_claiming_a_huge_array(tmp_path):
    """An .npy header announcing 10**12 elements must not allocate them."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    path = tmp_path / "m.npz"
    base = _arrays(_net())
    _write_npz(path, {k: v for k, v in base.items() if k != "W0"})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("W0.npy", header.getvalue() + bytes(64))
    with pytest.raises(ValueError, match="not a"):
        fastbp.Network.load(path)


def test_load_missing_or_directory_is_oserror(tmp_path):
    with pytest.raises(OSError):
        fastbp.Network.load(tmp_path / "nope.npz")
    with pytest.raises(OSError):
        fastbp.Network.load(tmp_path)


class _Hostile:
    """Unpickling this writes a marker file: the attack a model file could carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_load_never_unpickles(tmp_path):
    marker = tmp_path / "marker"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Hostile(str(marker))
    # Check the payload works: unpickling it really would write the marker.
    pickle.loads(pickle.dumps(hostile))
    assert marker.exists()
    marker.unlink()

    base = _arrays(_net())
    cases = {
        "extra-entry": {**base, "evil": hostile},
        "as-weights": {**base, "W0": hostile},
        "as-sizes": {**base, "sizes": hostile},
        "as-format": {**base, "fastbp_format": hostile},
    }
    for name, arrays in cases.items():
        path = tmp_path / f"{name}.npz"
        _write_npz(path, arrays, allow_pickle=True)
        with pytest.raises(ValueError):
            fastbp.Network.load(path)
        assert not marker.exists(), name
    # np.savez's own pickled object arrays too.
    path = tmp_path / "savez.npz"
    np.savez(path, **{**base, "W1": hostile})
    with pytest.raises(ValueError):
        fastbp.Network.load(path)
    assert not marker.exists()
    # And a plain pickle file named like a model.
    path = tmp_path / "plain.npz"
    path.write_bytes(pickle.dumps(hostile))
    with pytest.raises(ValueError):
        fastbp.Network.load(path)
    assert not marker.exists()


def _bad_models() -> dict[str, dict[str, np.ndarray]]:
    base = _arrays(_net())
    w0 = base["W0"]

    def edit(**changes):
        out = {**base, **changes}
        return {k: v for k, v in out.items() if v is not None}

    nan_w = w0.copy()
    nan_w[1, 2] = np.nan
    inf_b = base["b1"].copy()
    inf_b[0] = -np.inf
    return {
        "no-format": edit(fastbp_format=None),
        "format-2": edit(fastbp_format=np.array(2)),
        "format-float": edit(fastbp_format=np.array(1.0)),
        "format-array": edit(fastbp_format=np.array([1])),
        "no-sizes": edit(sizes=None),
        "sizes-float": edit(sizes=np.array([4.0, 5.0, 3.0])),
        "sizes-2d": edit(sizes=np.array([[4, 5, 3]])),
        "sizes-short": edit(sizes=np.array([4])),
        "sizes-zero": edit(sizes=np.array([4, 0, 3])),
        "sizes-negative": edit(sizes=np.array([4, -5, 3])),
        "sizes-mismatch": edit(sizes=np.array([4, 6, 3])),
        "sizes-more-layers": edit(sizes=np.array([4, 5, 3, 2])),
        "sizes-huge": edit(sizes=np.array([2**40, 2**40, 3])),
        "missing-W1": edit(W1=None),
        "extra-W2": edit(W2=np.ones((3, 1))),
        "W0-transposed": edit(W0=w0.T.copy()),
        "W0-1d": edit(W0=w0.ravel()),
        "b0-2d": edit(b0=base["b0"][None, :]),
        "W0-int": edit(W0=w0.astype(np.int64)),
        "W0-complex": edit(W0=w0.astype(np.complex128)),
        "W0-float16": edit(W0=w0.astype(np.float16)),
        "W0-bool": edit(W0=w0 > 0),
        "W0-str": edit(W0=w0.astype(str)),
        "W0-structured": edit(W0=np.zeros((4, 5), dtype=[("a", "f8")])),
        "mixed-dtypes": edit(W1=base["W1"].astype(np.float32)),
        "W0-nan": edit(W0=nan_w),
        "b1-inf": edit(b1=inf_b),
    }


def test_load_invalid_models(tmp_path):
    for name, arrays in _bad_models().items():
        path = tmp_path / f"{name}.npz"
        _write_npz(path, arrays)
        with pytest.raises(ValueError, match="not a valid fastbp model") as info:
            fastbp.Network.load(path)
            pytest.fail(f"{name} loaded")
        assert str(path) in str(info.value), name


def test_load_big_endian_model_from_another_machine(tmp_path):
    """A consistent big-endian file (as another machine might write) either loads
    exactly or is refused with ValueError: never a crash or wrong numbers."""
    net = _net()
    arrays = _arrays(net)
    for k in list(arrays):
        if k.startswith(("W", "b")):
            arrays[k] = arrays[k].astype(">f8")
    path = tmp_path / "be.npz"
    _write_npz(path, arrays)
    try:
        loaded = fastbp.Network.load(path)
    except ValueError:
        return
    assert loaded.dtype == np.float64
    assert loaded.dtype.isnative
    for a, b in zip(loaded.weights, net.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.ones((2, 4))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


def test_load_does_not_leave_the_file_open(tmp_path):
    path = tmp_path / "m.npz"
    _net().save(path)
    start = time.perf_counter()
    for _ in range(50):
        fastbp.Network.load(path)
    assert time.perf_counter() - start < 10
    fds = os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []
    assert not any(os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()) for fd in fds)
