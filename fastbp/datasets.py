"""Data for the command line: bundled data sets, user files, targets and splits.

Every loader returns float64 inputs ``X`` of shape (n_samples, n_features) and
targets ``y`` of shape (n_samples,) or (n_samples, n_outputs). Problems with a
file raise :class:`ValueError` (or :class:`OSError` when it cannot be read at
all) with a one-line message that names the file.

scikit-learn is imported only inside :func:`digits`, so ``import fastbp`` stays light.
"""

from __future__ import annotations

import csv
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_CLASSES",
    "class_labels",
    "digits",
    "is_one_hot",
    "load_file",
    "load_inputs",
    "one_hot",
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


def load_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read training data from a ``.npz`` or ``.csv`` file.

    Parameters
    ----------
    path : str or path-like
        ``.npz``: arrays ``X`` (n_samples, n_features) and ``y`` (n_samples,) or
        (n_samples, n_outputs), loaded with ``allow_pickle=False``.
        ``.csv``: numbers separated by commas, one sample per line, the last
        column the target; a first line that is not all numbers is a header and
        is skipped.

    Returns
    -------
    X : ndarray of float64, shape (n_samples, n_features)
    y : ndarray of float64, shape (n_samples,) or (n_samples, n_outputs)

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
        return X, y
    table = _read_csv(path)
    if table.shape[1] < 2:
        raise ValueError(
            f"{path}: needs at least 2 columns (features, then the target), got {table.shape[1]}"
        )
    return table[:, :-1], table[:, -1].copy()


def load_inputs(path: str | os.PathLike) -> np.ndarray:
    """Read inputs to predict on from a ``.npz`` or ``.csv`` file.

    ``.npz``: the array ``X`` (any other arrays, such as ``y``, are ignored).
    ``.csv``: every column is read (a header line is skipped as in :func:`load_file`);
    the caller decides whether a last column is a target to drop.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_columns)
    """
    path = Path(path)
    if _file_kind(path) == "npz":
        arrays = _read_npz(path, ("X",))
        return _npz_array(path, "X", arrays["X"], ndims=(2,))
    return _read_csv(path)


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise ValueError(f"{path}: unsupported file type ({shown}); use a .npz or .csv file")
    return suffix[1:]


def _read_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
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
            return {name: npz[name] for name in required}
        except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, OSError) as exc:
            raise ValueError(f"{path}: corrupt .npz archive ({_one_line(exc)})") from None
        except ValueError as exc:
            msg = _one_line(exc)
            if "pickle" in msg:
                msg = "it holds Python objects, which are refused (allow_pickle=False)"
            raise ValueError(f"{path}: unreadable array in .npz archive: {msg}") from None


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


def _read_csv(path: Path) -> np.ndarray:
    """A numeric CSV file as a 2-D float64 array, skipping a header line if present."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [
                (number, [cell.strip() for cell in row])
                for number, row in enumerate(csv.reader(f), start=1)
                if row and any(cell.strip() for cell in row)
            ]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: unreadable CSV ({_one_line(exc)})") from None
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # a header line
    if not rows:
        raise ValueError(f"{path}: no data rows")
    width = len(rows[0][1])
    for number, cells in rows:
        if len(cells) != width:
            raise ValueError(
                f"{path}: line {number} has {len(cells)} columns, the first data line has {width}"
            )
    text = np.array([cells for _, cells in rows], dtype=str)
    try:
        table = text.astype(np.float64)
    except ValueError:
        table = None
    if table is None or not np.isfinite(table).all():
        for number, cells in rows:
            for col, cell in enumerate(cells, start=1):
                if not _is_number(cell):
                    shown = f"'{cell}'" if cell else "an empty cell"
                    raise ValueError(
                        f"{path}: line {number}, column {col}: {shown} is not a number"
                    )
                if not np.isfinite(float(cell)):
                    raise ValueError(
                        f"{path}: line {number}, column {col}: '{cell}' is not a finite number"
                    )
        raise ValueError(f"{path}: not a numeric CSV file")  # pragma: no cover - safety net
    return table


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
