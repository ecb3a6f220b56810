"""Data for the command line: bundled data sets, user files, targets and splits.

Every loader returns float64 inputs ``X`` of shape (n_samples, n_features) and
targets ``y`` of shape (n_samples,) or (n_samples, n_outputs). Problems with a
file raise :class:`ValueError` (or :class:`OSError` when it cannot be read at
all) with a one-line message that names the file.

scikit-learn is imported only inside :func:`digits`, so ``import fastbp`` stays light.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastbp._files import check_member_sizes

__all__ = [
    "MAX_CLASSES",
    "CsvTable",
    "Table",
    "class_labels",
    "digits",
    "is_one_hot",
    "load_file",
    "load_inputs",
    "load_table",
    "one_hot",
    "read_csv",
    "train_test_split",
    "xor",
]

#: Integer targets 0..MAX_CLASSES-1 are class labels (one output per class).
MAX_CLASSES = 1000


# -- bundled data ---------------------------------------------------------------------


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits, 1797 images of 8 x 8 pixels.

    Returns
    -------
    X : ndarray of float64, shape (1797, 64)
        Pixel intensities scaled from 0..16 to [0, 1].
    y : ndarray of int64, shape (1797,)
        The digit, 0 to 9.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    X = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    return X, y


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The four rows of the XOR truth table.

    Returns
    -------
    X : ndarray of float64, shape (4, 2)
    y : ndarray of float64, shape (4,)
        ``X[:, 0] xor X[:, 1]``, as 0.0 or 1.0.
    """
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    return X, y


# -- files ------------------------------------------------------------------------------


@dataclass
class Table:
    """Training data read from a file, with what was learnt about it on the way.

    Attributes
    ----------
    X : ndarray of float64, shape (n_samples, n_features)
    y : ndarray of float64, shape (n_samples,) or (n_samples, n_outputs)
    columns : list of str
        Names of the features (from a CSV header), or empty when the file has none.
    target : str
        Name of the target column, or ``""``.
    notes : list of str
        One-line remarks on how the file was read (delimiter, header, a skipped line).
    """

    X: np.ndarray
    y: np.ndarray
    columns: list[str] = field(default_factory=list)
    target: str = ""
    notes: list[str] = field(default_factory=list)


def load_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read training data from a ``.npz`` or ``.csv`` file: ``(X, y)`` of :func:`load_table`."""
    table = load_table(path)
    return table.X, table.y


def load_table(path: str | os.PathLike) -> Table:
    """Read training data from a ``.npz`` or ``.csv`` file.

    Parameters
    ----------
    path : str or path-like
        ``.npz``: arrays ``X`` (n_samples, n_features) and ``y`` (n_samples,) or
        (n_samples, n_outputs), loaded with ``allow_pickle=False``.
        ``.csv``: numbers separated by commas, semicolons or tabs (detected), one
        sample per line, the last column the target; see :func:`read_csv` for the
        header row.

    Returns
    -------
    Table

    Raises
    ------
    ValueError
        If the file is not valid training data (wrong type, missing arrays,
        non-numeric or non-finite cells, empty, wrong dimensions).
    OSError
        If the file cannot be read (missing, a directory, no permission).
    """
    path = Path(path)
    kind = _file_kind(path)
    if kind == "npz":
        arrays = _read_npz(path, ("X", "y"))
        X = _npz_array(path, "X", arrays["X"], ndims=(2,))
        y = _npz_array(path, "y", arrays["y"], ndims=(1, 2))
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"{path}: y has {y.shape[0]} rows but X has {X.shape[0]}")
        if y.ndim == 2 and y.shape[1] == 0:
            raise ValueError(f"{path}: y has no columns")
        return Table(X, y)
    csv_table = read_csv(path)
    data = csv_table.data
    if data.shape[1] < 2:
        raise ValueError(
            f"{path}: needs at least 2 columns (features, then the target), got {data.shape[1]}"
        )
    columns = csv_table.columns
    return Table(
        data[:, :-1],
        data[:, -1].copy(),
        columns=columns[:-1],
        target=columns[-1] if columns else "",
        notes=csv_table.notes,
    )


def load_inputs(path: str | os.PathLike) -> np.ndarray:
    """Read inputs to predict on from a ``.npz`` or ``.csv`` file.

    ``.npz``: the array ``X`` (any other arrays, such as ``y``, are ignored).
    ``.csv``: every column is read (a header line is skipped as in :func:`read_csv`);
    the caller decides whether a last column is a target to drop.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_columns)
    """
    path = Path(path)
    if _file_kind(path) == "npz":
        arrays = _read_npz(path, ("X",))
        return _npz_array(path, "X", arrays["X"], ndims=(2,))
    return read_csv(path).data


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise ValueError(f"{path}: unsupported file type ({shown}); use a .npz or .csv file")
    return suffix[1:]


def _read_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    # Opened here, not by np.load, which leaks its handle when the zip directory
    # is corrupt; open() raises the OSErrors.
    with open(path, "rb") as f:
        try:
            loaded = np.load(f, allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise ValueError(f"{path}: not a valid .npz archive ({_one_line(exc)})") from None
        except ValueError as exc:
            msg = _one_line(exc)
            if "pickle" in msg:  # what np.load says about a file it does not recognise
                msg = "not a NumPy file"
            raise ValueError(f"{path}: not a valid .npz archive ({msg})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a .npz archive (it holds a single .npy array)")
        with loaded as npz:
            missing = [name for name in required if name not in npz.files]
            if missing:
                found = ", ".join(sorted(npz.files)) or "none"
                raise ValueError(
                    f"{path}: missing array {' and '.join(missing)} (arrays found: {found})"
                )
            try:
                # A header announcing more bytes than the member holds would make
                # np.load allocate them first: refused before reading anything.
                check_member_sizes(npz.zip)
                arrays = {name: npz[name] for name in required}
            except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, OSError) as exc:
                raise ValueError(f"{path}: corrupt .npz archive ({_one_line(exc)})") from None
            except (ValueError, NotImplementedError, RuntimeError) as exc:
                msg = _one_line(exc)
                if "pickle" in msg:
                    msg = "it holds Python objects, which are refused (allow_pickle=False)"
                raise ValueError(f"{path}: unreadable array in .npz archive: {msg}") from None
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray):  # a member that is not .npy data comes back as bytes
            raise ValueError(f"{path}: {name} is not a NumPy array")
    return arrays


def _npz_array(path: Path, name: str, arr: np.ndarray, ndims: tuple[int, ...]) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{path}: {name} must be {want}, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{path}: {name} is empty (0 rows)")
    if arr.ndim == 2 and name == "X" and arr.shape[1] == 0:
        raise ValueError(f"{path}: X has no columns")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{path}: {name} contains NaN or infinity")
    return out


# -- CSV ---------------------------------------------------------------------------------

#: Delimiters tried, in order of preference when several fit.
DELIMITERS = (",", ";", "\t")
_SNIFF_LINES = 50
# A header cell: starts with a letter or underscore; letters, digits, spaces and
# a little punctuation after that ("sepal length (cm)", "mean_radius", "y-2").
_NAME = re.compile(r"[^\W\d][\w .()\[\]/%#:+-]*\Z")


@dataclass
class CsvTable:
    """A numeric CSV file as read by :func:`read_csv`."""

    data: np.ndarray
    columns: list[str]
    notes: list[str]
    delimiter: str


def read_csv(path: str | os.PathLike) -> CsvTable:
    """A numeric CSV file as a 2-D float64 array, its column names and what was detected.

    The delimiter (comma, semicolon or tab) is the one that splits the first lines
    into the same number of cells. The first non-empty line is a header when its
    cells are names (they start with a letter); a first line mixing numbers and
    names is skipped, with a note saying so. Everything after it must be numbers:
    it is parsed by ``numpy.loadtxt`` (compiled), and only when that fails is the
    file read again, cell by cell, to name the line and column of the first bad cell.

    Raises
    ------
    ValueError
        One line naming the file (and the line and column of a bad cell).
    OSError
        If the file cannot be read.
    """
    path = Path(path)
    head = _head_lines(path)  # [(line number, cells)] of the first non-empty lines
    if not head:
        raise ValueError(f"{path}: no data rows")
    delimiter = _sniff_delimiter([text for _, text in head])
    first_number, first_text = head[0]
    first = _cells(first_text, delimiter)
    columns: list[str] = []
    notes: list[str] = []
    skip = 0  # physical lines before the first data line
    numeric = [_is_number(cell) for cell in first]
    if not all(numeric):
        names = [cell for cell, ok in zip(first, numeric, strict=True) if not ok]
        if not any(numeric) and all(not c or _NAME.match(c) for c in names) and any(names):
            columns = [cell or f"column_{j + 1}" for j, cell in enumerate(first)]
            notes.append(_shorten("header: " + ", ".join(columns)))
            skip = first_number
        elif any(numeric) and all(_NAME.match(c) for c in names):
            notes.append(_shorten(f"skipped line {first_number}: {first_text!r} is not numeric"))
            skip = first_number
    if len(head) == 1 and skip:
        raise ValueError(f"{path}: no data rows")
    if delimiter != ",":
        shown = {";": "semicolon", "\t": "tab"}[delimiter]
        notes.insert(0, f"delimiter: {shown}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": checked below
            data = np.loadtxt(
                path,
                delimiter=delimiter,
                skiprows=skip,
                quotechar='"',
                comments=None,
                ndmin=2,
                dtype=np.float64,
                encoding="utf-8-sig",
            )
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    except ValueError as exc:
        _diagnose(path, delimiter, skip)
        raise ValueError(f"{path}: not a numeric CSV file ({_one_line(exc)})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no data rows")
    if not np.isfinite(data).all():
        _diagnose(path, delimiter, skip)
        raise ValueError(f"{path}: contains NaN or infinity")  # pragma: no cover - safety net
    if columns and len(columns) != data.shape[1]:
        raise ValueError(
            f"{path}: the header has {len(columns)} names but the rows {data.shape[1]} columns"
        )
    return CsvTable(data, columns, notes, delimiter)


def _head_lines(path: Path) -> list[tuple[int, str]]:
    """The first non-empty lines, with their 1-based line numbers."""
    lines = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for number, line in enumerate(f, start=1):
                text = line.rstrip("\r\n")
                if text.strip():
                    lines.append((number, text))
                    if len(lines) == _SNIFF_LINES:
                        break
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    return lines


def _cells(text: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:
        row = text.split(delimiter)
    return [cell.strip() for cell in row]


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits every line into the same number (> 1) of cells."""
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        widths = {len(_cells(line, delimiter)) for line in lines}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    if best_width == 1:  # no consistent split: the one that splits the most, for the error
        counts = {d: sum(line.count(d) for line in lines) for d in DELIMITERS}
        best = max(DELIMITERS, key=lambda d: counts[d])
    return best


def _diagnose(path: Path, delimiter: str, skip: int) -> None:
    """Raise a one-line ValueError naming the first bad line and column after ``skip`` lines."""
    width = None
    with open(path, newline="", encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if number <= skip or not line.strip():
                continue
            cells = _cells(line.rstrip("\r\n"), delimiter)
            if width is None:
                width = len(cells)
            elif len(cells) != width:
                raise ValueError(
                    f"{path}: line {number} has {len(cells)} columns, "
                    f"the first data line has {width}"
                )
            for col, cell in enumerate(cells, start=1):
                if not _is_number(cell):
                    shown = f"{_shorten(cell, 40)!r}" if cell else "an empty cell"
                    raise ValueError(
                        f"{path}: line {number}, column {col}: {shown} is not a number"
                    )
                if not math.isfinite(float(cell)):
                    raise ValueError(
                        f"{path}: line {number}, column {col}: '{cell}' is not a finite number"
                    )


def _shorten(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- targets ------------------------------------------------------------------------------


def class_labels(y: np.ndarray, max_classes: int = MAX_CLASSES) -> np.ndarray | None:
    """``y`` as int64 class labels if it is a vector of labels 0..max_classes-1, else None.

    0/1 vectors count as labels too; the caller decides whether two classes get
    one output or two.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        return None
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            return None
    elif y.dtype.kind not in "biu":
        return None
    if y.min() < 0 or y.max() >= max_classes:
        return None
    return y.astype(np.int64)


def one_hot(labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """One-hot rows for integer class labels.

    Parameters
    ----------
    labels : array of int, shape (n_samples,)
        Class of each sample, 0 to n_classes - 1.
    n_classes : int, optional
        Number of columns; ``labels.max() + 1`` by default.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_classes)
        1.0 in column ``labels[i]`` of row i, 0.0 elsewhere.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and labels.max() >= n_classes:
        raise ValueError(f"label {labels.max()} does not fit in {n_classes} classes")
    out = np.zeros((labels.size, n_classes))
    out[np.arange(labels.size), labels] = 1.0
    return out


def is_one_hot(Y: np.ndarray) -> bool:
    """Whether every row of 2-D ``Y`` is 0 except for a single 1."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] < 2 or Y.shape[0] == 0:
        return False
    return bool(((Y == 0) | (Y == 1)).all() and (Y.sum(axis=1) == 1).all())


def train_test_split(
    X: np.ndarray,
    y: np.ndarray,
    test_fraction: float = 0.2,
    seed: int | None = 0,
    stratify: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split rows into shuffled train and test parts, reproducibly.

    Parameters
    ----------
    X, y : arrays with the same number of rows
    test_fraction : float in [0, 1)
        Share of the rows held out (rounded; per class when stratified). At least
        one row always stays in the training part.
    seed : int or None
        Seed of ``numpy.random.default_rng``, which shuffles the rows.
    stratify : array of int, shape (n_samples,), optional
        Class labels: each class is split in the same proportion.

    Returns
    -------
    X_train, X_test, y_train, y_test
        Copies; the test parts have 0 rows when ``test_fraction`` rounds to none.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n = X.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    if stratify is None:
        order = rng.permutation(n)
        n_test = min(round(n * test_fraction), n - 1)
        test, train = order[:n_test], order[n_test:]
    else:
        groups = np.asarray(stratify)
        if groups.shape != (n,):
            raise ValueError(f"stratify must have shape ({n},), got {groups.shape}")
        test_parts, train_parts = [], []
        for label in np.unique(groups):
            members = rng.permutation(np.flatnonzero(groups == label))
            n_test = round(members.size * test_fraction)
            test_parts.append(members[:n_test])
            train_parts.append(members[n_test:])
        test = rng.permutation(np.concatenate(test_parts))
        train = rng.permutation(np.concatenate(train_parts))
        if train.size == 0:  # every class rounded entirely into the test part
            train, test = test[:1], test[1:]
    return X[train], X[test], y[train], y[test]
