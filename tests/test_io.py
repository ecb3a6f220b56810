"""Network.save / Network.load: bit-exact round trips, strict loading, atomic saving."""

from __future__ import annotations

import os

import numpy as np
import pytest

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


@pytest.fixture
def trained(dtype, rng):
    net = Network(SIZES, dtype=dtype, seed=5)
    x = rng.normal(size=(10, SIZES[0])).astype(dtype)
    y = rng.uniform(size=(10, SIZES[-1])).astype(dtype)
    net.fit(x, y, epochs=3, batch_size=4)
    return net, x, y


def _arrays_of(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


# -- round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_round_trip_is_bit_exact(trained, dtype, tmp_path, as_str):
    net, x, y = trained
    path = tmp_path / "model.npz"
    net.save(str(path) if as_str else path)
    loaded = Network.load(str(path) if as_str else path)
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


def test_saved_file_is_a_plain_npz(trained, dtype, tmp_path):
    net, _, _ = trained
    net.save(tmp_path / "model.npz")
    arrays = _arrays_of(tmp_path / "model.npz")
    assert set(arrays) == {"fastbp_format", "sizes", "W0", "b0", "W1", "b1"}
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


def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(dtype, tmp_path, monkeypatch):
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
    assert _listing(tmp_path) == ["model.npz"]


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


# -- load rejects -------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """A valid float64 model file and its arrays."""
    path = tmp_path / "good.npz"
    Network(SIZES, seed=1).save(path)
    return path, _arrays_of(path)


def _write(tmp_path, arrays, name="bad.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _with(arrays, **changes):
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


def _bad_models(arrays):
    w0, b0, w1 = arrays["W0"], arrays["b0"], arrays["W1"]
    nan_w1 = w1.copy()
    nan_w1[0, 0] = np.nan
    inf_b0 = b0.copy()
    inf_b0[-1] = np.inf
    return {
        "missing-W1": _with(arrays, W1=None),
        "missing-b0": _with(arrays, b0=None),
        "missing-sizes": _with(arrays, sizes=None),
        "missing-format": _with(arrays, fastbp_format=None),
        "extra-entry": _with(arrays, W2=np.zeros((2, 2))),
        "extra-layer-sizes": _with(arrays, sizes=np.array([3, 4, 2, 2])),
        "W0-transposed": _with(arrays, W0=w0.T.copy()),
        "b0-too-long": _with(arrays, b0=np.zeros(b0.size + 1)),
        "W0-2-D-bias": _with(arrays, b0=b0[None]),
        "W0-int": _with(arrays, W0=w0.astype(np.int64)),
        "W0-float16": _with(arrays, W0=w0.astype(np.float16)),
        "mixed-dtypes": _with(arrays, W0=w0.astype(np.float32)),
        "W0-complex": _with(arrays, W0=w0.astype(complex)),
        "W0-strings": _with(arrays, W0=w0.astype(str)),
        "nan-weight": _with(arrays, W1=nan_w1),
        "inf-bias": _with(arrays, b0=inf_b0),
        "zero-width": _with(arrays, sizes=np.array([3, 0, 2])),
        "float-sizes": _with(arrays, sizes=np.array([3.0, 4.0, 2.0])),
        "scalar-sizes": _with(arrays, sizes=np.array(3)),
        "future-format": _with(arrays, fastbp_format=np.array(99)),
        "string-format": _with(arrays, fastbp_format=np.array("1")),
    }


BAD_MODELS = list(
    _bad_models(
        {
            "fastbp_format": np.array(1),
            "sizes": np.array(SIZES),
            "W0": np.zeros((3, 4)),
            "b0": np.zeros(4),
            "W1": np.zeros((4, 2)),
            "b1": np.zeros(2),
        }
    )
)


@pytest.mark.parametrize("case", BAD_MODELS)
def test_load_rejects_invalid_models(case, saved, tmp_path):
    path = _write(tmp_path, _bad_models(saved[1])[case])
    with pytest.raises(ValueError, match=r"bad\.npz"):
        Network.load(path)


def test_load_rejects_pickled_objects_without_unpickling(saved, tmp_path):
    arrays = saved[1]
    for entry in ("W0", "sizes", "extra"):
        path = _write(tmp_path, _with(arrays, **{entry: np.array([_Marker()], dtype=object)}))
        with pytest.raises(ValueError, match=r"bad\.npz"):
            Network.load(path)
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


def test_load_missing_file_is_oserror(tmp_path):
    with pytest.raises(OSError):
        Network.load(tmp_path / "nowhere.npz")
    assert not os.path.exists(tmp_path / "nowhere.npz")
