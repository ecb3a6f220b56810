"""Tests of fastbp.datasets: bundled data, file loaders, targets and the split."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastbp import datasets

# -- bundled data ---------------------------------------------------------------------


def test_digits_scaled_to_unit_interval():
    X, y = datasets.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))


def test_xor_truth_table():
    X, y = datasets.xor()
    assert X.shape == (4, 2) and y.shape == (4,)
    np.testing.assert_array_equal(y, np.logical_xor(X[:, 0], X[:, 1]).astype(float))


def test_import_fastbp_does_not_import_sklearn():
    code = "import sys, fastbp, fastbp.datasets, fastbp.cli; print('sklearn' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


# -- files ----------------------------------------------------------------------------------


def test_load_npz(tmp_path: Path):
    rng = np.random.default_rng(1)
    X = rng.random((10, 3))
    y = rng.integers(0, 3, 10)
    np.savez(tmp_path / "d.npz", X=X, y=y, extra=np.zeros(2))
    X2, y2 = datasets.load_file(tmp_path / "d.npz")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert X2.dtype == np.float64


def test_load_npz_2d_targets(tmp_path: Path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.eye(4)[:, :3])
    _, y = datasets.load_file(tmp_path / "d.npz")
    assert y.shape == (4, 3)


@pytest.mark.parametrize("header", [True, False])
def test_load_csv(tmp_path: Path, header: bool):
    text = ("x1, x2 ,label\n" if header else "") + "0.5,1,2\n\n1e-3, -4 ,0\n"
    path = tmp_path / "d.CSV"
    path.write_text(text)
    X, y = datasets.load_file(path)
    np.testing.assert_array_equal(X, [[0.5, 1.0], [1e-3, -4.0]])
    np.testing.assert_array_equal(y, [2.0, 0.0])


def test_load_csv_with_byte_order_mark_and_quotes(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes('\ufeff"a","b"\n"1","0"\n'.encode())
    X, y = datasets.load_file(path)
    np.testing.assert_array_equal(X, [[1.0]])
    np.testing.assert_array_equal(y, [0.0])


def test_load_inputs_keeps_every_csv_column_and_ignores_npz_y(tmp_path: Path):
    (tmp_path / "d.csv").write_text("1,2,3\n4,5,6\n")
    assert datasets.load_inputs(tmp_path / "d.csv").shape == (2, 3)
    np.savez(tmp_path / "d.npz", X=np.ones((2, 5)))
    assert datasets.load_inputs(tmp_path / "d.npz").shape == (2, 5)


def _npz(**arrays):
    return lambda path: np.savez(path, **arrays)


def _npy_named_npz(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


def _text(text: str):
    return lambda path: path.write_text(text)


BAD_FILES = [
    ("d.npz", _npz(X=np.zeros((3, 2))), "missing array y"),
    ("d.npz", _npz(y=np.zeros(3)), "missing array X"),
    ("d.npz", _npz(X=np.zeros(3), y=np.zeros(3)), "X must be 2-D"),
    ("d.npz", _npz(X=np.zeros((3, 2)), y=np.zeros((3, 2, 1))), "y must be 1-D or 2-D"),
    ("d.npz", _npz(X=np.zeros((0, 2)), y=np.zeros(0)), "X is empty"),
    ("d.npz", _npz(X=np.zeros((3, 0)), y=np.zeros(3)), "X has no columns"),
    ("d.npz", _npz(X=np.zeros((3, 2)), y=np.zeros(4)), "y has 4 rows but X has 3"),
    ("d.npz", _npz(X=np.full((3, 2), np.nan), y=np.zeros(3)), "NaN or infinity"),
    ("d.npz", _npz(X=np.array([["a", "b"]]), y=np.zeros(1)), "must be numeric"),
    ("d.npz", _npz(X=np.array([[{}]], dtype=object), y=np.zeros(1)), "Python objects"),
    (
        "d.npz",
        _npy_named_npz,
        "single .npy array",
    ),
    ("d.npz", _text("not a zip file\n"), "not a valid .npz"),
    ("d.csv", _text(""), "no data rows"),
    ("d.csv", _text("a,b,c\n"), "no data rows"),
    ("d.csv", _text("1,2,3\n4,x,6\n"), "line 2, column 2: 'x' is not a number"),
    ("d.csv", _text("1,2,3\n4,,6\n"), "line 2, column 2: an empty cell"),
    ("d.csv", _text("1,2,3\n4,nan,6\n"), "'nan' is not a finite number"),
    ("d.csv", _text("1,2,3\n4,5\n"), "line 2 has 2 columns"),
    ("d.csv", _text("1\n2\n"), "at least 2 columns"),
    ("d.csv", _text("a,b,c\n1,2,3\n4,5,6,7\n"), "line 3 has 4 columns"),
    ("d.csv", _text("1,2.3.4,0\n1,2,3\n"), "line 1, column 2: '2.3.4' is not a number"),
    ("d.csv", _text("a;b;c\n1;2;3\n4;x;6\n"), "line 3, column 2: 'x' is not a number"),
    ("d.csv", _text("a,b\n1,2\n3,inf\n"), "line 3, column 2: 'inf' is not a finite"),
    ("d.csv", _text("\n\n1,2,3\n\n4,x,6\n"), "line 5, column 2: 'x'"),
    ("d.csv", lambda p: p.write_bytes(b"\xff\xfe\x00"), "not a UTF-8 text file"),
    ("d.txt", _text("1,2\n"), "unsupported file type ('.txt')"),
    ("d", _text("1,2\n"), "unsupported file type (no suffix)"),
]


@pytest.mark.parametrize(("name", "write", "message"), BAD_FILES)
def test_bad_files_raise_one_line_value_error(tmp_path: Path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as info:
        datasets.load_file(path)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(str(path))


def test_missing_file_and_directory_raise_os_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        datasets.load_file(tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError):
        datasets.load_file(tmp_path / "absent.npz")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(OSError):
        datasets.load_file(tmp_path / "dir.csv")


# -- targets --------------------------------------------------------------------------------


def test_one_hot():
    out = datasets.one_hot(np.array([2, 0, 1, 2]))
    np.testing.assert_array_equal(out, np.eye(3)[[2, 0, 1, 2]])
    assert datasets.one_hot(np.array([0, 1]), n_classes=4).shape == (2, 4)
    with pytest.raises(ValueError, match="does not fit"):
        datasets.one_hot(np.array([0, 5]), n_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        datasets.one_hot(np.array([-1, 0]))
    with pytest.raises(ValueError, match="integer"):
        datasets.one_hot(np.array([0.5]))


def test_class_labels():
    np.testing.assert_array_equal(datasets.class_labels(np.array([0.0, 2.0, 1.0])), [0, 2, 1])
    assert datasets.class_labels(np.array([0.5, 1.0])) is None
    assert datasets.class_labels(np.array([-1, 0])) is None
    assert datasets.class_labels(np.array([0, datasets.MAX_CLASSES])) is None
    assert datasets.class_labels(np.zeros((2, 2))) is None


def test_is_one_hot():
    assert datasets.is_one_hot(np.eye(3))
    assert not datasets.is_one_hot(np.array([[1.0, 1.0], [0.0, 1.0]]))
    assert not datasets.is_one_hot(np.array([[0.5, 0.5]]))
    assert not datasets.is_one_hot(np.ones((3, 1)))


# -- split ------------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_complete():
    X = np.arange(100.0).reshape(50, 2)
    y = np.arange(50)
    a = datasets.train_test_split(X, y, 0.2, seed=3)
    b = datasets.train_test_split(X, y, 0.2, seed=3)
    c = datasets.train_test_split(X, y, 0.2, seed=4)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])
    X_train, _, y_train, y_test = a
    assert len(y_test) == 10 and len(y_train) == 40
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(50))
    np.testing.assert_array_equal(X_train[:, 0], 2 * y_train)


def test_split_stratified_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    X = np.zeros((100, 1))
    _, _, y_train, y_test = datasets.train_test_split(X, labels, 0.2, seed=0, stratify=labels)
    assert np.bincount(y_test).tolist() == [10, 6, 4]
    assert np.bincount(y_train).tolist() == [40, 24, 16]


def test_split_edge_cases():
    X = np.zeros((4, 1))
    y = np.arange(4)
    _, X_test, y_train, _ = datasets.train_test_split(X, y, 0.0)
    assert X_test.shape == (0, 1) and len(y_train) == 4
    _, _, y_train, _ = datasets.train_test_split(X, y, 0.99)
    assert len(y_train) == 1
    _, _, y_train, _ = datasets.train_test_split(X, y, 0.9, stratify=np.zeros(4, dtype=int))
    assert len(y_train) == 1
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.train_test_split(X, y, 1.0)
    with pytest.raises(ValueError, match="rows"):
        datasets.train_test_split(X, y[:3])


# -- CSV detection ------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_delimiter_and_header_are_detected(tmp_path: Path, delimiter: str):
    path = tmp_path / "d.csv"
    rows = [["sepal length (cm)", "width", "target"], ["1.5", "2", "0"], ["3", "-4e-1", "1"]]
    path.write_text("\n".join(delimiter.join(r) for r in rows) + "\n")
    table = datasets.load_table(path)
    np.testing.assert_array_equal(table.X, [[1.5, 2.0], [3.0, -0.4]])
    np.testing.assert_array_equal(table.y, [0.0, 1.0])
    assert table.columns == ["sepal length (cm)", "width"] and table.target == "target"
    assert table.notes[-1] == "header: sepal length (cm), width, target"
    assert (delimiter == ",") == (len(table.notes) == 1)


def test_csv_first_line_mixing_numbers_and_names_is_skipped_and_said(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("1,foo,0\n1,2,0\n3,4,1\n5,6,1\n")
    table = datasets.load_table(path)
    assert table.X.shape == (3, 2) and table.columns == []
    assert table.notes == ["skipped line 1: '1,foo,0' is not numeric"]


def test_csv_without_header_keeps_every_row(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("1,2,0\n3,4,1\n")
    table = datasets.load_table(path)
    assert table.X.shape == (2, 2) and table.notes == [] and table.columns == []


def test_npz_header_claiming_a_huge_array_is_refused(tmp_path: Path):
    """An .npy header announcing 8 TB must be refused before np.load allocates it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    path = tmp_path / "d.npz"
    np.savez(path, y=np.zeros(3))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("X.npy", header.getvalue() + bytes(64))
    with pytest.raises(ValueError, match="announces 8000000000000 bytes but holds"):
        datasets.load_file(path)
