"""Model files (Network.save / Network.load): bit-exact round trips; saving is atomic
(a failed, interrupted or killed save keeps the old file); loading refuses anything
but a valid fastbp model with a clear ValueError naming the file, without ever
running code from it."""

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
from fastbp import Network

SIZES = [3, 4, 2]
UNPICKLED = []


def _unpickle_marker():
    UNPICKLED.append(True)
    return "boom"


class _Marker:
    """Unpickling this runs :func:`_unpickle_marker`: proof that load never unpickles."""

    def __reduce__(self):
        return _unpickle_marker, ()


class _Hostile:
    """Unpickling this writes a marker file: the attack a model file could carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _net(dtype=np.float64) -> Network:
    return Network([4, 5, 3], dtype=dtype, seed=0)


@pytest.fixture
def trained(dtype, rng):
    net = Network(SIZES, dtype=dtype, seed=5)
    x = rng.normal(size=(10, SIZES[0])).astype(dtype)
    y = rng.uniform(size=(10, SIZES[-1])).astype(dtype)
    net.fit(x, y, epochs=3, batch_size=4)
    return net, x, y


def _same(a: Network, b: Network) -> bool:
    return (
        a.sizes == b.sizes
        and a.dtype == b.dtype
        and all(
            x.dtype == y.dtype and x.tobytes() == y.tobytes()
            for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True)
        )
    )


def _arrays(net: Network) -> dict[str, np.ndarray]:
    """A format-1 file of ``net`` (written before activations were recorded)."""
    out = {"fastbp_format": np.array(1), "sizes": np.array(net.sizes, dtype=np.int64)}
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        out[f"W{i}"] = w.copy()
        out[f"b{i}"] = b.copy()
    return out


def _arrays_of(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def _write_npz(path: Path, arrays: dict[str, np.ndarray], allow_pickle: bool = False) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=allow_pickle)
            zf.writestr(f"{name}.npy", buf.getvalue())


def _write(tmp_path, arrays, name="bad.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _with(arrays, **changes):
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)  # (a format-1 file has no activations to remove)
        else:
            out[key] = value
    return out


@pytest.fixture
def saved(tmp_path):
    """A valid float64 model file and its arrays."""
    path = tmp_path / "good.npz"
    Network(SIZES, seed=1).save(path)
    return path, _arrays_of(path)


# -- round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["trained", "fresh"])
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_round_trip_is_bit_exact(trained, dtype, tmp_path, as_str, model):
    """A trained network (3-4-2) and a fresh one (4-5-3) load back bit for bit: sizes,
    dtype, every entry's dtype, shape and bytes; the same predictions, loss and
    further training; and no file but the model in the directory."""
    net, x, y = trained
    if model == "fresh":
        net = _net(dtype)
        x, y = x[:, :1].repeat(4, axis=1), y[:, :1].repeat(3, axis=1)
    path = tmp_path / "model.npz"
    net.save(str(path) if as_str else path)
    loaded = Network.load(str(path) if as_str else path)
    assert _same(net, loaded)
    assert loaded.sizes == net.sizes
    assert loaded.dtype == dtype
    for got, want in zip(loaded.weights + loaded.biases, net.weights + net.biases, strict=True):
        assert got.dtype == dtype
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    assert loaded.predict(x).tobytes() == net.predict(x).tobytes()
    assert loaded.loss(x, y) == net.loss(x, y)
    # the loaded network trains on from the same weights (no shuffle: no generator)
    assert np.array_equal(loaded.fit(x, y, epochs=2).loss, net.fit(x, y, epochs=2).loss)
    assert _listing(tmp_path) == ["model.npz"]
    assert _leftovers(tmp_path, {"model.npz"}) == []


def test_saved_file_is_a_plain_npz(trained, dtype, tmp_path):
    net, _, _ = trained
    net.save(tmp_path / "model.npz")
    arrays = _arrays_of(tmp_path / "model.npz")
    assert set(arrays) == {"fastbp_format", "sizes", "activations", "W0", "b0", "W1", "b1"}
    assert int(arrays["fastbp_format"]) == 2
    assert arrays["activations"].tolist() == ["logistic", "logistic"]
    assert arrays["sizes"].tolist() == SIZES
    assert arrays["W1"].dtype == dtype


def test_loaded_weights_are_writable_views(trained, tmp_path):
    net, x, _ = trained
    net.save(tmp_path / "model.npz")
    loaded = Network.load(tmp_path / "model.npz")
    loaded.weights[0][...] = 0.0
    loaded.biases[0][...] = 0.0
    assert not np.array_equal(loaded.predict(x), net.predict(x))


def test_save_uses_replaced_entries(trained, dtype, tmp_path):
    net, x, _ = trained
    new = np.full((SIZES[1], SIZES[2]), 0.25)
    net.weights[1] = new
    net.save(tmp_path / "model.npz")
    loaded = Network.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.weights[1], new.astype(dtype))
    assert loaded.predict(x).tobytes() == net.predict(x).tobytes()


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
        loaded = Network.load(path)
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
        Network.load(path)
    assert time.perf_counter() - start < 10
    fds = os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []
    assert not any(os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()) for fd in fds)


# -- atomic save --------------------------------------------------------------------------


def test_save_replaces_an_existing_file(dtype, tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old contents")
    first = Network(SIZES, dtype=dtype, seed=1)
    second = Network([2, 2], dtype=np.float64, seed=2)
    first.save(path)
    assert Network.load(path).weights[0].tobytes() == first.weights[0].tobytes()
    second.save(path)
    loaded = Network.load(path)
    assert loaded.sizes == [2, 2]
    assert loaded.weights[0].tobytes() == second.weights[0].tobytes()
    assert _listing(tmp_path) == ["model.npz"]  # no temporary files left behind


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


def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(dtype, tmp_path, monkeypatch):
    """np.savez failing part-way (after writing some bytes) keeps the old file, which
    still loads as the old model, and leaves no temporary file behind."""
    path = tmp_path / "model.npz"
    old = Network(SIZES, dtype=dtype, seed=1)
    old.save(path)
    before = path.read_bytes()

    def savez_failing(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_failing)
    with pytest.raises(OSError, match="disk full"):
        Network(SIZES, dtype=dtype, seed=2).save(path)
    assert path.read_bytes() == before
    assert _same(Network.load(path), old)
    assert _listing(tmp_path) == ["model.npz"]
    assert _leftovers(tmp_path, {"model.npz"}) == []


def test_save_interrupted_keeps_old_file(tmp_path, monkeypatch):
    """A KeyboardInterrupt in the middle of writing behaves like an error."""
    path = tmp_path / "m.npz"
    _net().save(path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Network([4, 5, 3], seed=5).save(path)
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
    assert _same(Network.load(path), old)
    stray = _leftovers(tmp_path, {"m.npz"})
    assert len(stray) == 1
    assert stray[0].startswith(".m.npz.")
    assert stray[0].endswith(".tmp")
    assert (tmp_path / stray[0]).stat().st_size > 16_000_000


def test_save_failure_to_missing_directory(tmp_path):
    with pytest.raises(OSError):
        _net().save(tmp_path / "missing" / "m.npz")
    assert _leftovers(tmp_path, set()) == []


def test_save_with_a_bad_replaced_weight_writes_nothing(tmp_path):
    path = tmp_path / "model.npz"
    net = Network(SIZES, seed=1)
    net.save(path)
    before = path.read_bytes()
    net.weights[0] = np.full((SIZES[0], SIZES[1]), np.nan)
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        net.save(path)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["model.npz"]


# -- load: everything that is not a valid model is a ValueError naming the file ------------


def _bad_models(arrays):
    """Invalid variants of a valid model's arrays (any sizes with one hidden layer)."""
    w0, b0, w1, b1 = arrays["W0"], arrays["b0"], arrays["W1"], arrays["b1"]
    sizes = arrays["sizes"]
    nan_w1 = w1.copy()
    nan_w1[0, 0] = np.nan
    nan_w0 = w0.copy()
    nan_w0[1, 2] = np.nan
    inf_b0 = b0.copy()
    inf_b0[-1] = np.inf
    inf_b1 = b1.copy()
    inf_b1[0] = -np.inf
    wider = sizes.copy()
    wider[1] += 1
    return {
        "missing-W1": _with(arrays, W1=None),
        "missing-b0": _with(arrays, b0=None),
        "missing-sizes": _with(arrays, sizes=None),
        "missing-format": _with(arrays, fastbp_format=None),
        "extra-entry": _with(arrays, W2=np.zeros((2, 2))),
        "extra-W2": _with(arrays, W2=np.ones((sizes[-1], 1))),
        "extra-layer-sizes": _with(arrays, sizes=np.array([*sizes, 2])),
        "W0-transposed": _with(arrays, W0=w0.T.copy()),
        "W0-1d": _with(arrays, W0=w0.ravel()),
        "b0-too-long": _with(arrays, b0=np.zeros(b0.size + 1)),
        "b0-2d": _with(arrays, b0=b0[None]),
        "W0-int": _with(arrays, W0=w0.astype(np.int64)),
        "W0-float16": _with(arrays, W0=w0.astype(np.float16)),
        "W0-bool": _with(arrays, W0=w0 > 0),
        "W0-structured": _with(arrays, W0=np.zeros(w0.shape, dtype=[("a", "f8")])),
        "mixed-dtypes-W0": _with(arrays, W0=w0.astype(np.float32)),
        "mixed-dtypes-W1": _with(arrays, W1=w1.astype(np.float32)),
        "W0-complex": _with(arrays, W0=w0.astype(complex)),
        "W0-strings": _with(arrays, W0=w0.astype(str)),
        "nan-W1": _with(arrays, W1=nan_w1),
        "nan-W0": _with(arrays, W0=nan_w0),
        "inf-b0": _with(arrays, b0=inf_b0),
        "-inf-b1": _with(arrays, b1=inf_b1),
        "zero-width": _with(arrays, sizes=np.array([sizes[0], 0, sizes[2]])),
        "negative-width": _with(arrays, sizes=np.array([sizes[0], -sizes[1], sizes[2]])),
        "sizes-mismatch": _with(arrays, sizes=wider),
        "sizes-huge": _with(arrays, sizes=np.array([2**40, 2**40, sizes[2]])),
        "float-sizes": _with(arrays, sizes=sizes.astype(np.float64)),
        "scalar-sizes": _with(arrays, sizes=np.array(sizes[0])),
        "sizes-2d": _with(arrays, sizes=sizes[None]),
        "sizes-short": _with(arrays, sizes=sizes[:1]),
        "future-format": _with(arrays, fastbp_format=np.array(99)),
        "format-2-without-activations": _with(arrays, fastbp_format=np.array(2), activations=None),
        "format-1-with-activations": _with(
            arrays, fastbp_format=np.array(1), activations=np.array(["logistic"] * 2)
        ),
        "string-format": _with(arrays, fastbp_format=np.array("1")),
        "format-float": _with(arrays, fastbp_format=np.array(1.0)),
        "format-array": _with(arrays, fastbp_format=np.array([1])),
    }


BAD_MODELS = list(_bad_models(_arrays(Network(SIZES, seed=1))))


@pytest.mark.parametrize("writer", ["savez", "zipfile"])
@pytest.mark.parametrize("case", BAD_MODELS)
def test_load_rejects_invalid_models(case, writer, saved, tmp_path):
    """Written by np.savez from a 3-4-2 model, and entry by entry into a zip from a
    4-5-3 model: "not a fastbp model file", naming the file."""
    if writer == "savez":
        path = _write(tmp_path, _bad_models(saved[1])[case])
    else:
        path = tmp_path / "bad.npz"
        _write_npz(path, _bad_models(_arrays(_net()))[case])
    with pytest.raises(ValueError, match=r"bad\.npz") as info:
        Network.load(path)
    assert "not a fastbp model file" in str(info.value)
    assert str(path) in str(info.value)


def test_load_rejects_pickled_objects_without_unpickling(saved, tmp_path):
    """Object arrays anywhere (an extra entry, the weights, the sizes, the format),
    written by np.savez or entry by entry, and a plain pickle named like a model: a
    ValueError naming the file, and nothing unpickled (neither marker fires)."""
    marker = tmp_path / "marker"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Hostile(str(marker))
    # Check the payload works: unpickling it really would write the marker.
    pickle.loads(pickle.dumps(hostile))
    assert marker.exists()
    marker.unlink()

    arrays = saved[1]
    for entry in ("W0", "sizes", "extra"):
        path = _write(tmp_path, _with(arrays, **{entry: np.array([_Marker()], dtype=object)}))
        with pytest.raises(ValueError, match=r"bad\.npz"):
            Network.load(path)

    base = _arrays(_net())
    cases = {
        "extra-entry": {**base, "evil": hostile},
        "as-weights": {**base, "W0": hostile},
        "as-sizes": {**base, "sizes": hostile},
        "as-format": {**base, "fastbp_format": hostile},
    }
    for name, bad in cases.items():
        path = tmp_path / f"{name}.npz"
        _write_npz(path, bad, allow_pickle=True)
        with pytest.raises(ValueError, match=rf"{name}\.npz"):
            Network.load(path)
        assert not marker.exists(), name
    # np.savez's own pickled object arrays too.
    path = tmp_path / "savez.npz"
    np.savez(path, **{**base, "W1": hostile})
    with pytest.raises(ValueError, match=r"savez\.npz"):
        Network.load(path)
    assert not marker.exists()
    # And a plain pickle file named like a model.
    path = tmp_path / "plain.npz"
    path.write_bytes(pickle.dumps(hostile))
    with pytest.raises(ValueError, match=r"plain\.npz"):
        Network.load(path)
    assert not marker.exists()
    assert UNPICKLED == []


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_load_rejects_truncated_files(fraction, saved, tmp_path):
    data = saved[0].read_bytes()
    path = tmp_path / "bad.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match=r"bad\.npz"):
        Network.load(path)


def test_load_rejects_every_one_byte_truncation_near_the_end(saved, tmp_path):
    data = saved[0].read_bytes()
    path = tmp_path / "bad.npz"
    for cut in range(1, 40):
        path.write_bytes(data[:-cut])
        with pytest.raises(ValueError, match=r"bad\.npz"):
            Network.load(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a model\n", bytes(range(256)) * 4, b"PK\x03\x04" + b"\0" * 60],
    ids=["empty", "text", "binary", "zip-magic-only"],
)
def test_load_rejects_non_zip_files(content, tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.npz"):
        Network.load(path)


def test_load_rejects_a_single_npy_array(saved, tmp_path):
    path = tmp_path / "bad.npz"
    with open(path, "wb") as f:
        np.save(f, saved[1]["W0"])
    with pytest.raises(ValueError, match=r"bad\.npz"):
        Network.load(path)


def _foreign_files(tmp_path: Path) -> dict[str, bytes]:
    _net().save(tmp_path / "valid.npz")
    valid = (tmp_path / "valid.npz").read_bytes()
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
            Network.load(path)
            pytest.fail(f"{name} loaded")
        assert str(path) in str(info.value), name


def test_load_zip_entries_that_are_not_arrays(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("fastbp_format", "sizes", "W0", "b0"):
            zf.writestr(f"{name}.npy", b"not npy data")
    with pytest.raises(ValueError, match=r"not a (valid )?fastbp model"):
        Network.load(path)


def test_load_compressed_and_corrupt_member(tmp_path):
    """A deflated member with damaged data: a zlib/CRC error becomes ValueError."""
    good = tmp_path / "good.npz"
    arrays = _arrays(_net())
    np.savez_compressed(good, **arrays)
    assert _same(Network.load(good), _net())  # compressed models load too
    data = bytearray(good.read_bytes())
    start = data.index(b"W0.npy") + 80
    data[start : start + 40] = bytes(40)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a"):
        Network.load(bad)


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
        Network.load(path)


def test_load_missing_file_or_directory_is_oserror(tmp_path):
    """A missing path or a directory: OSError (not ValueError), and nothing created."""
    with pytest.raises(OSError):
        Network.load(tmp_path / "nowhere.npz")
    assert not os.path.exists(tmp_path / "nowhere.npz")
    with pytest.raises(OSError):
        fastbp.Network.load(tmp_path)
