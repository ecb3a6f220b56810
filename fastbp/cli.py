"""The ``fastbp`` command: train a network on bundled or user data, and predict with it.

``fastbp train`` trains on scikit-learn's handwritten digits by default, or on a
``.csv``/``.npz`` file: features scaled, a validation split with early stopping,
the loss per epoch, then train and test scores and the wall time. ``fastbp
predict`` applies a saved model to raw features and writes the original labels
(or values, for regression). ``fastbp <command> --help`` explains every option.

Exit status: 0 on success; 2 for a user mistake (a bad option, an unreadable or
malformed file, a model that does not fit the data), with ``fastbp: error: <one
line>`` on stderr; 3 when training clearly failed (it diverged, or the trained
model is no better than always predicting the most frequent class or the mean),
with one line saying why and what to change; 130 when interrupted by Ctrl-C
(``train`` first reports, and saves with ``--save``, what was trained so far).
Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastbp import __version__, _files, _jit, datasets, kernels
from fastbp.network import DivergenceError, Network

# Defaults of `fastbp train` (see README "Command line" for what they reach on
# scikit-learn's iris, wine, breast-cancer, digits and diabetes tables). Epochs and
# patience are None: they follow the number of steps per epoch (see _step_defaults).
DEFAULTS = {
    "hidden": [64],
    "epochs": None,
    "lr": None,
    "batch_size": 32,
    "test_fraction": 0.2,
    "val_fraction": 0.1,
    "patience": None,
}
#: Default training length and patience, in gradient steps (at least 200 and 20 epochs).
MIN_STEPS = 4000
PATIENCE_STEPS = 400
MAX_DEFAULT_EPOCHS = 2000
#: Default learning rate: BASE_LR, times sqrt(LR_WIDTH / width) for hidden layers wider
#: than LR_WIDTH (wide sigmoid layers saturate at lr 1: on digits with --hidden 512,256
#: and 60 epochs, test accuracy 0.755 at lr 1, 0.944 at lr 0.5).
BASE_LR = 1.0
LR_WIDTH = 128
# XOR (4 rows): full batch, every row trains, nothing held out.
XOR_DEFAULTS = {
    "hidden": [4],
    "epochs": 2000,
    "lr": 2.0,
    "batch_size": None,
    "test_fraction": 0.0,
    "val_fraction": 0.0,
    "patience": 20,
}
#: Fewer validation rows than this and there is no validation split (nor early stopping).
MIN_VAL_ROWS = 10
#: Integer targets with at most this many distinct values are class labels (``--task auto``).
MAX_AUTO_CLASSES = 100
#: Regression targets are mapped from [min, max] of the training rows onto this range.
TARGET_RANGE = (0.1, 0.9)
# Loss lines printed by default: every epoch up to EVERY_EPOCH_UP_TO epochs, else
# every k epochs (k a round number) for about LOG_LINES lines.
EVERY_EPOCH_UP_TO = 20
LOG_LINES = 10
PREDICT_SUFFIXES = (".csv", ".npy", ".npz")
#: Version of the ``cli_*`` entries this command writes into a model file.
CLI_FORMAT = 1

EXIT_ERROR = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130

TARGET_RULES = f"""\
how targets are used (the network's outputs are sigmoids, in [0, 1]; loss is MSE):
  - integer targets with at most {MAX_AUTO_CLASSES} distinct values (e.g. 0..9, or -1/1):
    class labels. Two classes: one output, thresholded at 0.5; K >= 3 classes: K
    one-hot outputs, accuracy by argmax. The labels are kept in the model file,
    so 'predict' writes them back.
  - other real targets: regression, one output per target column; the targets are
    mapped from their training [min, max] onto [0.1, 0.9] and back, and the run
    reports R^2 (as scikit-learn's score) and the RMSE.
  - a 2-D y (.npz only) whose rows are one-hot: classes by argmax.
  --task classify / regress overrides the guess.
features are scaled (--scale, default standard), fitted on the training rows and
kept in the model file: 'predict' takes raw features."""

TRAIN_EPILOG = f"""\
exit status: 0 trained; 2 a mistake in the options or data (one line on stderr);
{EXIT_FAILED} training failed: it diverged, or the model is no better than always
predicting the most frequent class (or the mean), with the likely cause and the
fix on stderr; 130 interrupted by Ctrl-C, after reporting (and saving, with
--save) the model as trained so far."""


class UserError(Exception):
    """A mistake of the user's: reported as one line, exit status 2."""


# -- argument types -----------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float_where(accept: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: a float for which ``accept`` holds, else an error saying ``rule``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    return parse


_positive_float = _float_where(lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_fraction = _float_where(lambda v: 0.0 <= v < 1.0, "in [0, 1)")


def _batch_size(text: str) -> int | None:
    if text.strip().lower() == "full":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1 or 'full', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (or 'full'), got {value}")
    return value


def parse_hidden(text: str) -> list[int]:
    """Hidden layer widths from ``"64,32"``; ``"none"``, ``""`` or ``"0"`` mean no hidden layer.

    Raises
    ------
    argparse.ArgumentTypeError
        If an entry is not an integer >= 1.
    """
    stripped = text.strip().lower()
    if stripped in ("", "none", "0"):
        return []
    widths = []
    for part in stripped.split(","):
        try:
            width = int(part)
        except ValueError:
            width = 0
        if width < 1:
            raise argparse.ArgumentTypeError(
                f"invalid width {part.strip()!r} in {text!r}: expected comma-separated "
                "integers >= 1, or 'none'"
            )
        widths.append(width)
    return widths


# -- the parser -------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=min(_terminal_width(), 100))


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 100


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f"see '{self.prog} --help'"
        self.exit(EXIT_ERROR, f"fastbp: error: {message} ({hint})\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``fastbp`` argument parser, with its ``train`` and ``predict`` commands."""
    parser = _Parser(
        prog="fastbp",
        description="Train sigmoid multilayer perceptrons by backpropagation (Numba-compiled).",
        epilog="Run 'fastbp train --help' or 'fastbp predict --help' for each command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a network and report its scores (default: the digits data)",
        description=(
            "Train a sigmoid network by mini-batch gradient descent on the mean squared\n"
            "error, with early stopping on a validation split; print the loss per epoch,\n"
            "then the train, validation and test scores and the wall time. With no\n"
            "options: scikit-learn's 8x8 digits (1797 images), a 64-64-10 network.\n\n"
            + TARGET_RULES
        ),
        epilog=TRAIN_EPILOG,
        formatter_class=_Formatter,
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        choices=("digits", "xor"),
        default=None,
        help="bundled data: 'digits' (the default) or 'xor', the 4-row XOR toy",
    )
    source.add_argument(
        "--data",
        metavar="FILE",
        type=Path,
        help="your data instead: a .npz with arrays X (n_samples, n_features) and y, "
        "or a .csv of numbers (comma, semicolon or tab separated, detected) whose last "
        "column is the target, with or without a header row of names",
    )
    train.add_argument(
        "--resume",
        metavar="MODEL",
        type=Path,
        help="continue training a model saved by --save (its network, scaling and "
        "labels) on the data",
    )
    train.add_argument(
        "--task",
        choices=("auto", "classify", "regress"),
        default="auto",
        help="what the target is; auto: class labels if integers with few distinct "
        "values, else regression (default: auto)",
    )
    train.add_argument(
        "--hidden",
        metavar="WIDTHS",
        type=parse_hidden,
        default=None,
        help="hidden layer widths, comma-separated, e.g. 64,32; 'none' (or '' or 0) for "
        "no hidden layer (default: 64; xor: 4)",
    )
    train.add_argument(
        "--activation",
        choices=sorted(kernels.ACTIVATIONS),
        default=None,
        help="activation of the hidden layers; the output layer stays logistic "
        "(default: logistic, or the resumed model's)",
    )
    train.add_argument(
        "--epochs",
        type=_int_at_least(1),
        default=None,
        help=f"most passes over the training rows (default: enough for {MIN_STEPS} "
        f"gradient steps, between 200 and {MAX_DEFAULT_EPOCHS}; xor: {XOR_DEFAULTS['epochs']})",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"learning rate, > 0 (default: {BASE_LR:g}, times sqrt({LR_WIDTH}/width) for "
        f"hidden layers wider than {LR_WIDTH}; xor: {XOR_DEFAULTS['lr']:g})",
    )
    train.add_argument(
        "--batch-size",
        metavar="N",
        type=_batch_size,
        default=None,
        help=f"rows per gradient step, or 'full' for full-batch descent; rows are shuffled "
        f"every epoch (default: {DEFAULTS['batch_size']}; xor: full)",
    )
    train.add_argument(
        "--scale",
        choices=("standard", "minmax", "none"),
        default=None,
        help="feature scaling fitted on the training rows: standard (mean 0, std 1), "
        "minmax (onto [0, 1]) or none (default: standard)",
    )
    train.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="precision of weights and arithmetic; float32 is faster (default: float32, "
        "or the resumed model's)",
    )
    train.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="seed of the initial weights, the shuffling and the splits; the same "
        "seed gives the same run (default: 0)",
    )
    train.add_argument(
        "--test-fraction",
        metavar="F",
        type=_fraction,
        default=None,
        help="share of the rows held out for testing, stratified by class for labels, "
        "in [0, 1); 0 tests on nothing (default: 0.2; xor: 0)",
    )
    train.add_argument(
        "--val-fraction",
        metavar="F",
        type=_fraction,
        default=None,
        help="share of the remaining rows held out for validation, scored every epoch "
        f"for early stopping; 0 for none (default: {DEFAULTS['val_fraction']:g}; none when "
        f"under {MIN_VAL_ROWS} rows)",
    )
    train.add_argument(
        "--patience",
        metavar="N",
        type=_int_at_least(0),
        default=None,
        help="stop after N epochs without a better validation loss and keep the best "
        f"epoch's weights; 0 never stops early (default: {PATIENCE_STEPS} steps' worth, "
        "at least 20)",
    )
    train.add_argument(
        "--save",
        metavar="FILE",
        type=Path,
        help="save the trained model (network, scaling, labels, column names) to FILE, "
        "a .npz archive, for 'fastbp predict' and --resume",
    )
    train.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        help="draw the training loss and the validation score per epoch into FILE "
        "(.png, .pdf or .svg; needs matplotlib: pip install 'fastbp[plot]')",
    )
    train.add_argument(
        "--threads",
        metavar="N",
        type=_int_at_least(1),
        default=None,
        help="threads for fastbp and its BLAS (fastbp.set_num_threads; default: all cores)",
    )
    train.add_argument(
        "--dask",
        metavar="ADDRESS",
        nargs="?",
        const="",
        default=None,
        help="train on a Dask cluster (fastbp.dask.train: each worker steps on its share of "
        "the rows, the weights averaged every epoch): the scheduler at ADDRESS, or a local "
        "cluster of one worker per core when none is given",
    )
    train.add_argument(
        "--log-every",
        metavar="K",
        type=_int_at_least(1),
        default=None,
        help=f"print the loss every K epochs (default: every epoch up to {EVERY_EPOCH_UP_TO} "
        f"epochs, else about {LOG_LINES} lines; the first and last epochs always)",
    )
    train.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (shown on stderr only when it is a terminal)",
    )
    train.set_defaults(func=run_train)

    predict = commands.add_parser(
        "predict",
        help="apply a saved model to a data file",
        description=(
            "Apply a model saved by 'fastbp train --save' to the rows of a data file and\n"
            "write its predictions, in the data's original units and labels: the model\n"
            "file keeps the feature scaling, the class labels and the target scaling.\n\n"
            "input: a .npz with an array X (other arrays, like y, are ignored), or a .csv\n"
            "whose columns are all features (a header row is detected). A .csv with one\n"
            "column more than the model has inputs is training data: its last column is\n"
            "taken as the target and ignored.\n\n"
            "output: one row per sample. Classes: the network's outputs (output_0 ..\n"
            "output_{K-1}, or 'output' for two classes), then 'class', the predicted\n"
            "label. Regression: 'prediction' (prediction_0 .. for several targets).\n"
            "The format follows the suffix of --out: .csv (with a header line), .npy (the\n"
            "outputs array, or the predictions; the class vector with --class-only) or\n"
            ".npz (arrays 'outputs' and 'classes', or 'predictions'); without --out, CSV\n"
            "on stdout."
        ),
        formatter_class=_Formatter,
    )
    predict.add_argument(
        "--model", metavar="FILE", type=Path, required=True, help="a model saved by 'train --save'"
    )
    predict.add_argument(
        "--data", metavar="FILE", type=Path, required=True, help="the inputs: a .npz or .csv file"
    )
    predict.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help="write predictions to FILE (.csv, .npy or .npz) instead of stdout",
    )
    predict.add_argument(
        "--class-only",
        action="store_true",
        help="write only the predicted class label (classification models)",
    )
    predict.set_defaults(func=run_predict)

    compile_ = commands.add_parser(
        "compile",
        help="compile every kernel variant ahead of time, into Numba's cache",
        description=(
            "Compile every variant of fastbp's compiled code that a user can reach (float32\n"
            "and float64; Network, the scikit-learn estimators with each solver, prediction,\n"
            "reproducible mode) into Numba's on-disk cache, so that no later fit pays the\n"
            "first-run compile: for container images ('RUN fastbp compile' in a Dockerfile)\n"
            "and CI jobs. The cache is Numba's: next to the package, or NUMBA_CACHE_DIR."
        ),
        formatter_class=_Formatter,
    )
    compile_.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        action="append",
        help="only the variants of this dtype (repeatable; default: both)",
    )
    compile_.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (shown on stderr only when it is a terminal)",
    )
    compile_.set_defaults(func=run_compile)
    return parser


def _activation_text(net: Network) -> str:
    """'sigmoid' for the default network, else its hidden layers' activation."""
    hidden = set(net.activations[:-1]) or {"logistic"}
    return "sigmoid" if hidden == {"logistic"} else f"{'/'.join(sorted(hidden))} hidden"


def run_compile(args: argparse.Namespace) -> int:
    """``fastbp compile``: fill Numba's cache with every variant (fastbp.engine.precompile)."""
    from fastbp.engine.precompile import precompile

    t0 = time.perf_counter()
    dtypes = tuple(np.dtype(name).type for name in args.dtype or ("float32", "float64"))
    count = precompile(progress=not args.no_progress and sys.stderr.isatty(), dtypes=dtypes)
    print(f"compiled {count} variants in {time.perf_counter() - t0:.1f} s")
    return 0


# -- the model file: a Network plus what the command line needs around it ----------------------


@dataclass
class Model:
    """A trained network with the preprocessing that turns raw rows into its inputs.

    Attributes
    ----------
    net : Network
    task : {"classify", "regress"}
    classes : ndarray of float64, shape (n_classes,)
        The original class labels, sorted (classify); empty for regression.
    x_offset, x_scale : ndarray of float64, shape (n_features,)
        The network sees ``(X - x_offset) / x_scale``.
    scale : str
        How ``x_offset`` and ``x_scale`` were fitted: standard, minmax or none.
    y_offset, y_scale : ndarray of float64, shape (n_outputs,)
        Regression: the target is ``output * y_scale + y_offset``. Empty for classes.
    columns : list of str
        Feature names from the training file's header, or empty.
    target : str
        Name of the target column, or ``""``.
    """

    net: Network
    task: str
    classes: np.ndarray
    x_offset: np.ndarray
    x_scale: np.ndarray
    scale: str
    y_offset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    columns: list[str] = field(default_factory=list)
    target: str = ""

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """Raw features -> the network's inputs, in its dtype."""
        scaled = (X - self.x_offset) / self.x_scale
        return _in_dtype(scaled, self.net.dtype)

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Raw targets -> the network's targets, shape (n_samples, n_outputs), float64."""
        if self.task == "regress":
            Y = _2d(y)
            return (Y - self.y_offset) / self.y_scale
        index = class_index(self.classes, y)
        if self.classes.size == 2:
            return index.astype(np.float64).reshape(-1, 1)
        return datasets.one_hot(index, self.classes.size)

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        """Network outputs -> predicted class labels (classify) or target values (regress)."""
        outputs = outputs.astype(np.float64)
        if self.task == "regress":
            return outputs * self.y_scale + self.y_offset
        if outputs.shape[1] == 1:
            index = (outputs[:, 0] >= 0.5).astype(np.int64)
        else:
            index = outputs.argmax(axis=1)
        return self.classes[index]


def _in_dtype(X: np.ndarray, dtype: np.dtype) -> np.ndarray:
    biggest = float(np.abs(X).max()) if X.size else 0.0
    limit = float(np.finfo(dtype).max)
    if biggest > limit:
        raise UserError(
            f"inputs as large as {biggest:g} overflow {np.dtype(dtype).name} "
            f"(max {limit:g}) even after scaling: use --dtype float64"
        )
    return np.ascontiguousarray(X, dtype=dtype)


def class_index(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of each label of ``y`` in the sorted ``classes``.

    Raises
    ------
    UserError
        If a label is not one of ``classes``.
    """
    index = np.searchsorted(classes, y)
    index = np.minimum(index, classes.size - 1)
    unknown = classes[index] != y
    if unknown.any():
        raise UserError(
            f"label {y[unknown][0]:g} is not one of the model's classes ({_list(classes)})"
        )
    return index.astype(np.int64)


def _list(values: np.ndarray, most: int = 8) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:most])
    return shown + (", ..." if values.size > most else "")


def save_model(path: Path, model: Model) -> None:
    """Write ``model`` to ``path`` as one ``.npz``, atomically (temporary file, then rename).

    The archive holds the entries of :meth:`Network.save` plus ``cli_*`` entries
    (numbers and strings only); :func:`load_model` reads it back.
    """
    arrays = model.net._to_arrays()
    arrays.update(
        cli_format=np.array(CLI_FORMAT),
        cli_task=np.array(model.task),
        cli_classes=model.classes.astype(np.float64),
        cli_scale=np.array(model.scale),
        cli_x_offset=model.x_offset.astype(np.float64),
        cli_x_scale=model.x_scale.astype(np.float64),
        cli_y_offset=model.y_offset.astype(np.float64),
        cli_y_scale=model.y_scale.astype(np.float64),
        cli_columns=np.array(model.columns, dtype=str).reshape(-1),
        cli_target=np.array(model.target),
    )
    _files.save_npz(path, arrays)


def load_model(path: Path) -> Model:
    """Read a model written by :func:`save_model`, or a bare :meth:`Network.save` file.

    Nothing is unpickled, and a member whose header announces more data than it
    holds is refused before anything is allocated. A bare network file has no
    scaling; its classes are 0..K-1 (0 and 1 for one output).

    Raises
    ------
    UserError
        If the file is not a fastbp model (one line naming the file).
    OSError
        If it cannot be read.
    """

    def bad(why: str) -> UserError:
        return UserError(f"{path}: not a fastbp model file ({why})")

    try:
        arrays = _files.read_npz(path)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    meta = {name: arrays.pop(name) for name in list(arrays) if name.startswith("cli_")}
    try:
        net = Network._from_arrays(arrays, str(path))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    n_in, n_out = net.sizes[0], net.sizes[-1]
    if not meta:
        classes = np.arange(max(n_out, 2), dtype=np.float64)
        return Model(net, "classify", classes, np.zeros(n_in), np.ones(n_in), "none")
    return _model_from(net, meta, n_in, n_out, bad)


def _model_from(net: Network, meta: dict[str, np.ndarray], n_in: int, n_out: int, bad) -> Model:
    def get(name: str, kind: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        arr = meta.get(f"cli_{name}")
        if arr is None:
            raise bad(f"no cli_{name} entry")
        if arr.dtype.kind not in kind:
            raise bad(f"cli_{name} has dtype {arr.dtype}")
        if shape is not None and arr.shape != shape:
            raise bad(f"cli_{name} has shape {arr.shape}, expected {shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise bad(f"cli_{name} contains NaN or infinity")
        return arr

    expected = {
        f"cli_{name}"
        for name in (
            "format", "task", "classes", "scale", "x_offset", "x_scale", "y_offset",
            "y_scale", "columns", "target",
        )
    }  # fmt: skip
    if set(meta) != expected:
        raise bad(f"cli entries {sorted(meta)}, expected {sorted(expected)}")
    if int(get("format", "iu", ())) != CLI_FORMAT:
        raise bad(f"cli_format {int(meta['cli_format'])}; this fastbp reads {CLI_FORMAT}")
    task = str(get("task", "U", ()))
    scale = str(get("scale", "U", ()))
    if task not in ("classify", "regress") or scale not in ("standard", "minmax", "none"):
        raise bad(f"task {task!r}, scale {scale!r}")
    x_offset = get("x_offset", "f", (n_in,))
    x_scale = get("x_scale", "f", (n_in,))
    if (x_scale <= 0).any():
        raise bad("cli_x_scale must be > 0")
    columns = get("columns", "U")
    if columns.ndim != 1 or columns.size not in (0, n_in):
        raise bad(f"cli_columns has shape {columns.shape}, expected ({n_in},) or (0,)")
    target = str(get("target", "U", ()))
    if task == "classify":
        classes = get("classes", "f")
        k = classes.size
        if classes.ndim != 1 or k < 2 or n_out != (1 if k == 2 else k):
            raise bad(f"{classes.size} classes for {n_out} outputs")
        if (np.diff(classes) <= 0).any():
            raise bad("cli_classes must be sorted and distinct")
        return Model(net, task, classes, x_offset, x_scale, scale, columns=columns.tolist(),
                     target=target)  # fmt: skip
    y_offset = get("y_offset", "f", (n_out,))
    y_scale = get("y_scale", "f", (n_out,))
    if (y_scale <= 0).any():
        raise bad("cli_y_scale must be > 0")
    return Model(
        net, task, np.zeros(0), x_offset, x_scale, scale, y_offset, y_scale, columns.tolist(),
        target,
    )  # fmt: skip


# -- targets, scaling and scores -----------------------------------------------------------------


def infer_task(y: np.ndarray, task: str) -> tuple[str, np.ndarray]:
    """``("classify", sorted labels)`` or ``("regress", empty)`` for raw targets ``y``.

    ``task`` is ``auto`` (integers with at most :data:`MAX_AUTO_CLASSES` distinct
    values are labels), ``classify`` or ``regress``.
    """
    if y.ndim == 2 and y.shape[1] > 1:
        if task != "regress" and datasets.is_one_hot(y):
            return "classify", np.arange(y.shape[1], dtype=np.float64)
        if task == "classify":
            raise UserError("--task classify needs a 1-D target or one-hot rows")
        return "regress", np.zeros(0)
    values = np.unique(y)
    if task == "regress":
        return "regress", np.zeros(0)
    integral = bool((values == np.round(values)).all())
    if task == "classify" or (integral and values.size <= MAX_AUTO_CLASSES):
        if values.size < 2:
            raise UserError(f"the target has a single value ({values[0]:g}): nothing to learn")
        if values.size > datasets.MAX_CLASSES:
            raise UserError(f"{values.size} classes: at most {datasets.MAX_CLASSES}")
        return "classify", values.astype(np.float64)
    return "regress", np.zeros(0)


def fit_scaling(X: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)`` per feature for ``--scale``; a constant column gets scale 1."""
    n = X.shape[1]
    if scale == "none" or X.shape[0] == 0:
        return np.zeros(n), np.ones(n)
    if scale == "standard":
        offset, spread = X.mean(axis=0), X.std(axis=0)
    else:
        offset = X.min(axis=0)
        spread = X.max(axis=0) - offset
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    return offset, spread


def fit_target_scaling(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)`` mapping each column's [min, max] onto :data:`TARGET_RANGE`."""
    Y = _2d(Y)
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    low, high = TARGET_RANGE
    y_scale = span / (high - low)
    return lo - low * y_scale, y_scale


def _2d(y: np.ndarray) -> np.ndarray:
    """A target vector as one column; 2-D targets unchanged."""
    return y.reshape(-1, 1) if y.ndim == 1 else y


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination, averaged over outputs (as scikit-learn's ``score``)."""
    y, pred = _2d(y), _2d(pred)
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
    return float(r2.mean())


@dataclass
class Part:
    """One part of the data (train, validation, test): raw targets and network arrays."""

    name: str
    X: np.ndarray  # the network's inputs
    Y: np.ndarray  # the network's targets
    y: np.ndarray  # raw targets

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


def evaluate(model: Model, part: Part) -> tuple[float, float]:
    """``(loss, score)``: the network's MSE loss and accuracy or R² on ``part``."""
    out = model.net.predict(part.X).astype(np.float64)
    loss = float(((out - part.Y) ** 2).sum(axis=1).mean())
    pred = model.labels(out)
    if model.task == "classify":
        return loss, float((pred == part.y).mean())
    return loss, r2_score(part.y, pred)


def _score_text(model: Model, part: Part, score: float) -> str:
    if model.task == "classify":
        hits = round(score * part.rows)
        return f"{part.name} accuracy: {score:.4f} ({hits}/{part.rows})"
    pred = model.labels(model.net.predict(part.X))
    rmse = float(np.sqrt(np.mean((pred - _2d(part.y)) ** 2)))
    return f"{part.name} R²: {score:.4f} (RMSE {rmse:.4g})"


def _baseline(model: Model, train_y: np.ndarray, part: Part) -> float:
    """The score of always predicting the training rows' most frequent class (or mean)."""
    if model.task == "classify":
        values, counts = np.unique(train_y, return_counts=True)
        return float((part.y == values[counts.argmax()]).mean())
    mean = _2d(train_y).mean(axis=0)
    return r2_score(part.y, np.broadcast_to(mean, _2d(part.y).shape))


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t >= 0.01 else f"{t * 1000:.1f} ms"


# -- train -------------------------------------------------------------------------------


def _load_training_data(args: argparse.Namespace) -> tuple[str, datasets.Table]:
    if args.data is not None:
        return str(args.data), datasets.load_table(args.data)
    name = args.dataset or "digits"
    X, y = datasets.digits() if name == "digits" else datasets.xor()
    return name, datasets.Table(X, y)


def _check_output_path(option: str, path: Path) -> None:
    """Fail before any work when ``path`` clearly cannot be written."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: directory {str(parent)!r} does not exist")


def _warm_up(dtype: np.dtype | str) -> None:
    """Compile (or load from Numba's cache) the kernels a fit and a predict use."""
    x = np.zeros((2, 2), dtype=dtype)
    y = np.zeros((2, 1), dtype=dtype)
    net = Network([2, 2, 1], dtype=dtype, seed=0)
    net.fit(x, y, epochs=1, lr=0.1, batch_size=1, shuffle=True)
    net.predict(x)


def _log_every(epochs: int, requested: int | None) -> int:
    if requested is not None:
        return requested
    if epochs <= EVERY_EPOCH_UP_TO:
        return 1
    step = epochs / LOG_LINES
    magnitude = 10 ** math.floor(math.log10(step))
    for nice in (1, 2, 5, 10):  # a round number: 1, 2, 5, 10, 20, 50, ...
        if nice * magnitude >= step:
            return int(nice * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def _check_plotting(path: Path) -> None:
    _check_output_path("--plot", path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise UserError(f"--plot {path}: unsupported file type ({shown}); use .png, .pdf or .svg")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(
            "--plot needs matplotlib, which is not installed: pip install 'fastbp[plot]'"
        ) from None


def _new_model(args, table, task, classes, X_train, y_train, hidden, dtype) -> Model:
    scale = args.scale or "standard"
    x_offset, x_scale = fit_scaling(X_train, scale)
    if task == "classify":
        n_out = 1 if classes.size == 2 else classes.size
        y_offset = y_scale = np.zeros(0)
    else:
        n_out = 1 if table.y.ndim == 1 else table.y.shape[1]
        y_offset, y_scale = fit_target_scaling(y_train)
    activation = args.activation or "logistic"
    net = Network(
        [X_train.shape[1], *hidden, n_out], dtype=dtype, seed=args.seed, activation=activation
    )
    return Model(
        net, task, classes, x_offset, x_scale, scale, y_offset, y_scale, list(table.columns),
        table.target,
    )  # fmt: skip


def _resumed_model(args, table: datasets.Table, hidden_given: list[int] | None) -> Model:
    model = load_model(args.resume)
    sizes = model.net.sizes
    if table.X.shape[1] != sizes[0]:
        raise UserError(
            f"--resume {args.resume}: the model takes {sizes[0]} features, "
            f"the data has {table.X.shape[1]}"
        )
    if hidden_given is not None and hidden_given != sizes[1:-1]:
        raise UserError(
            f"--hidden {','.join(map(str, hidden_given)) or 'none'} differs from the resumed "
            f"model's {'-'.join(map(str, sizes))}: leave --hidden out"
        )
    if args.dtype is not None and np.dtype(args.dtype) != model.net.dtype:
        raise UserError(f"--dtype {args.dtype} differs from the resumed model's {model.net.dtype}")
    if args.scale is not None and args.scale != model.scale:
        raise UserError(f"--scale {args.scale} differs from the resumed model's {model.scale}")
    n_out = sizes[-1]
    if model.task == "regress" and (1 if table.y.ndim == 1 else table.y.shape[1]) != n_out:
        raise UserError(f"--resume {args.resume}: the model has {n_out} outputs")
    if model.task == "classify":
        class_index(model.classes, table.y if table.y.ndim == 1 else table.y.argmax(axis=1))
    # Reseed the shuffling: the same --seed gives the same continued run.
    if args.activation is not None and args.activation != model.net.activations[0]:
        raise UserError(
            f"--activation {args.activation}: the resumed model's hidden layers are "
            f"{model.net.activations[0]}"
        )
    resumed = Network(
        sizes, dtype=model.net.dtype, seed=args.seed, activation=model.net.activations
    )
    resumed.weights = model.net.weights
    resumed.biases = model.net.biases
    model.net = resumed
    return model


def _split(seed: int, table: datasets.Table, task: str, test_fraction: float, val_fraction: float):
    """Row indices of the train, validation and test parts (stratified for classes)."""
    y = table.y
    labels = None
    if task == "classify":
        raw = y if y.ndim == 1 else y.argmax(axis=1)
        labels = np.unique(raw, return_inverse=True)[1]
    rows = np.arange(table.X.shape[0])
    strat = labels
    i_train, i_test, _, _ = datasets.train_test_split(
        rows, rows, test_fraction, seed=seed, stratify=strat
    )
    i_val = np.zeros(0, dtype=np.int64)
    if val_fraction > 0 and round(i_train.size * val_fraction) >= MIN_VAL_ROWS:
        strat = labels[i_train] if labels is not None else None
        i_train, i_val, _, _ = datasets.train_test_split(
            i_train, i_train, val_fraction, seed=seed + 1, stratify=strat
        )
    return i_train, i_val, i_test


def default_lr(hidden: Sequence[int]) -> float:
    """The default ``--lr`` for hidden layers ``hidden`` (see :data:`BASE_LR`)."""
    widest = max(hidden, default=1)
    return BASE_LR * min(1.0, math.sqrt(LR_WIDTH / widest))


def _step_defaults(rows: int, batch: int | None) -> tuple[int, int]:
    """Default ``(epochs, patience)``: enough steps on small tables, 200 and 20 on big ones."""
    steps = max(1, math.ceil(rows / (batch or rows)))
    epochs = min(MAX_DEFAULT_EPOCHS, max(200, math.ceil(MIN_STEPS / steps)))
    patience = min(MAX_DEFAULT_EPOCHS // 10, max(20, math.ceil(PATIENCE_STEPS / steps)))
    return epochs, patience


def _stalled_since(losses: np.ndarray, rtol: float = 1e-3) -> int | None:
    """First epoch (from 1) after which the loss stayed within ``rtol`` of its last value."""
    if losses.size < 10:
        return None
    last = losses[-1]
    off = np.flatnonzero(np.abs(losses - last) > rtol * max(abs(last), 1e-12))
    start = int(off[-1]) + 2 if off.size else 1
    return start if losses.size - start >= 9 else None


def run_train(args: argparse.Namespace) -> int:
    """``fastbp train``: see ``fastbp train --help``."""
    t_start = time.perf_counter()
    if args.save is not None:
        _check_output_path("--save", args.save)
    if args.plot is not None:
        _check_plotting(args.plot)
    if args.threads is not None:
        import fastbp

        fastbp.set_num_threads(args.threads)
    defaults = XOR_DEFAULTS if args.dataset == "xor" else DEFAULTS

    def pick(name: str):
        value = getattr(args, name)
        return defaults[name] if value is None else value

    hidden = pick("hidden")
    epochs, lr, batch_size = pick("epochs"), pick("lr"), pick("batch_size")
    patience = pick("patience")

    t0 = time.perf_counter()
    name, table = _load_training_data(args)
    if args.resume is not None:
        model = _resumed_model(args, table, args.hidden)
        task = model.task
    else:
        task, classes = infer_task(table.y, args.task)
    if task == "classify" and table.y.ndim == 2:  # one-hot rows: their class numbers
        table.y = table.y.argmax(axis=1).astype(np.float64)
    fractions = pick("test_fraction"), pick("val_fraction")
    i_train, i_val, i_test = _split(args.seed, table, task, *fractions)
    if args.resume is None:
        dtype = args.dtype or "float32"
        X_train, y_train = table.X[i_train], table.y[i_train]
        model = _new_model(args, table, task, classes, X_train, y_train, hidden, dtype)
    parts = [
        Part(part, model.inputs(table.X[rows]), model.targets(table.y[rows]), table.y[rows])
        for part, rows in (("train", i_train), ("val", i_val), ("test", i_test))
    ]
    train, val, test = parts
    t_load = time.perf_counter() - t0
    if lr is None:
        lr = default_lr(model.net.sizes[1:-1])
    epochs_by_steps, patience_by_steps = _step_defaults(train.rows, batch_size)
    epochs = epochs_by_steps if epochs is None else epochs
    patience = patience_by_steps if patience is None else patience

    net = model.net
    sizes = net.sizes
    X_shape = table.X.shape
    for note in table.notes:
        print(f"read: {note}")
    print(f"data: {name}, {X_shape[0]} samples x {X_shape[1]} features")
    if model.task == "classify":
        k = model.classes.size
        outputs = "1 output at 0.5" if k == 2 else f"{k} one-hot outputs"
        print(f"task: {k} classes ({_list(model.classes, 5)}): {outputs}, accuracy")
    else:
        print(f"task: regression, {sizes[-1]} output(s) scaled to [0.1, 0.9] and back, R²")
    held = f"{val.rows} validation / {test.rows} test"
    how = "stratified" if model.task == "classify" else "shuffled"
    print(f"split: {train.rows} train / {held} ({how}, seed {args.seed})")
    batch = train.rows if batch_size is None else min(batch_size, train.rows)
    batch_text = f"{batch} (full)" if batch == train.rows else f"{batch}, shuffled"
    print(
        f"network: {'-'.join(map(str, sizes))} {_activation_text(net)}, {net.dtype.name}, scaling "
        f"{model.scale}; lr {lr:.3g}, batch {batch_text}"
    )
    stopping = val.rows > 0 and patience > 0
    if args.resume is not None:
        print(f"resumed: {args.resume} (its weights, scaling and labels)")
    print(
        f"epochs: up to {epochs}"
        + (f", early stopping after {patience} without a better val loss" if stopping else "")
    )
    sys.stdout.flush()

    t0 = time.perf_counter()
    with _jit.notices_to(sys.stderr):  # "compiling kernels, first run only..." if it does
        _warm_up(net.dtype)
    t_compile = time.perf_counter() - t0

    every = _log_every(epochs, args.log_every)
    show_bar = not args.no_progress and sys.stderr.isatty()
    width = len(str(epochs))
    losses: list[float] = []
    val_curve: list[tuple[float, float]] = []
    best = {"loss": math.inf, "epoch": 0, "weights": None}

    def emit(line: str) -> None:
        if show_bar:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def after_epoch(epoch: int, loss: float) -> bool:
        number = epoch + 1
        losses.append(loss)
        line = f"epoch {number:>{width}}/{epochs}  loss {loss:.6f}"
        stop = False
        if val.rows:
            v_loss, v_score = evaluate(model, val)
            val_curve.append((v_loss, v_score))
            label = "accuracy" if model.task == "classify" else "R²"
            line += f"  val loss {v_loss:.6f}  val {label} {v_score:.4f}"
            if v_loss < best["loss"]:
                best.update(loss=v_loss, epoch=number, weights=_copy_params(net))
            stop = stopping and number - best["epoch"] >= patience
        if number == 1 or number == epochs or number % every == 0 or stop:
            emit(line)
        return stop

    interrupted = False
    failure = None
    t0 = time.perf_counter()
    try:
        if args.dask is not None:
            _train_on_dask(args.dask, net, train, epochs, lr, batch_size, after_epoch)
        else:
            net.fit(
                train.X,
                train.Y,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                shuffle=True,
                progress=show_bar,
                callback=after_epoch,
            )
    except KeyboardInterrupt:
        interrupted = True
    except DivergenceError as exc:
        failure = (
            f"training diverged in epoch {len(exc.history.loss) + 1} (the loss or the "
            f"weights became infinite): lower --lr (now {lr:g})"
        )
    t_train = time.perf_counter() - t0
    done = len(losses)
    if interrupted:
        print(f"interrupted in epoch {done + 1}: the model as trained so far", flush=True)
    if best["weights"] is not None and best["epoch"] < done:
        net.weights, net.biases = best["weights"]
        why = "early stopping" if done < epochs and not interrupted else "kept"
        print(f"{why}: weights of epoch {best['epoch']}, the best val loss ({best['loss']:.6f})")

    t0 = time.perf_counter()
    scores = {}
    for part in parts:
        if part.rows:
            _, scores[part.name] = evaluate(model, part)
            print(_score_text(model, part, scores[part.name]))
    if not test.rows:
        print("test: - (no held-out rows)")
    t_eval = time.perf_counter() - t0

    warning = None
    if failure is None and done and not interrupted:  # an interrupted run is not judged
        failure, warning = _diagnose(model, args, lr, np.array(losses), train, test, scores)
    if args.save is not None:
        if failure is None:
            save_model(args.save, model)
            print(f"saved model: {args.save}")
        else:
            print(f"not saved: {args.save} (training failed)")
    if args.plot is not None and done:
        _plot(args.plot, model, np.array(losses), val_curve, best["epoch"])
        print(f"saved plot: {args.plot}")
    total = time.perf_counter() - t_start
    print(
        f"time: {_seconds(total)} wall ({_seconds(t_load)} data, {_seconds(t_compile)} "
        f"compile, {_seconds(t_train)} training, {_seconds(t_eval)} scoring)"
    )
    sys.stdout.flush()
    if warning is not None:
        print(f"fastbp: warning: {warning}", file=sys.stderr)
    if interrupted:
        print("fastbp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if failure is not None:
        print(f"fastbp: error: {failure}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _train_on_dask(address: str, net: Network, train: Part, epochs, lr, batch_size, callback):
    """``fastbp train --dask``: the same epochs on a Dask cluster (fastbp.dask.train)."""
    try:
        from distributed import Client

        from fastbp import dask as fastbp_dask
    except ImportError as exc:
        raise UserError(f"--dask needs Dask: pip install 'fastbp[dask]' ({exc})") from None
    client = Client(address) if address else None
    try:
        fastbp_dask.train(
            net, train.X, train.Y, epochs=epochs, lr=lr, batch_size=batch_size,
            shuffle=True, client=client, callback=callback,
        )  # fmt: skip
    finally:
        if client is not None:
            client.close()


def _copy_params(net: Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [w.copy() for w in net.weights], [b.copy() for b in net.biases]


def _diagnose(
    model: Model, args, lr: float, losses: np.ndarray, train: Part, test: Part, scores: dict
) -> tuple[str | None, str | None]:
    """``(failure, warning)``: one line each, or None, on how training went."""
    what = "accuracy" if model.task == "classify" else "R²"
    always = "the most frequent class" if model.task == "classify" else "the mean"
    baseline = _baseline(model, train.y, train)
    stalled = _stalled_since(losses)
    biggest = float(np.abs(train.X).max(initial=0.0))
    if scores["train"] <= baseline + 1e-9:
        print(f"train {what} no better than always predicting {always} ({baseline:.4f})")
        if model.scale == "none" and biggest > 10:
            failure = f"inputs up to {biggest:.3g} saturate the sigmoids: use --scale standard"
        elif stalled is not None:
            failure = f"loss stuck at {losses[-1]:.4g} (saturated sigmoids): lower --lr"
            failure += f" (now {lr:g})"
        else:
            failure = f"loss still falling: raise --epochs (now {losses.size})"
            failure += f" or --lr (now {lr:g})"
        return f"training failed, {failure}", None
    if test.rows and scores["test"] <= _baseline(model, train.y, test) + 1e-9:
        return None, f"test {what} no better than always predicting {always}: overfitted?"
    return None, None


def _plot(path: Path, model: Model, losses, val_curve, best_epoch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = np.arange(1, losses.size + 1)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    ax_loss.plot(epochs, losses, label="training loss")
    if val_curve:
        v = np.array(val_curve)
        ax_loss.plot(epochs[: len(v)], v[:, 0], label="validation loss")
        ax_score.plot(epochs[: len(v)], v[:, 1], color="C1")
        if best_epoch:
            for ax in (ax_loss, ax_score):
                ax.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
    else:
        ax_score.text(0.5, 0.5, "no validation rows", ha="center", transform=ax_score.transAxes)
    ax_loss.set(xlabel="epoch", ylabel="MSE loss", yscale="log", title="loss")
    ax_loss.legend()
    label = "accuracy" if model.task == "classify" else "R²"
    ax_score.set(xlabel="epoch", ylabel=label, title=f"validation {label}")
    fig.savefig(path)
    plt.close(fig)


# -- predict -------------------------------------------------------------------------------


def run_predict(args: argparse.Namespace) -> int:
    """``fastbp predict``: see ``fastbp predict --help``."""
    out = args.out
    if out is not None:
        if out.suffix.lower() not in PREDICT_SUFFIXES:
            shown = f"'{out.suffix}'" if out.suffix else "no suffix"
            raise UserError(f"--out {out}: unsupported file type ({shown}); use .csv, .npy or .npz")
        _check_output_path("--out", out)
    model = load_model(args.model)
    n_in = model.net.sizes[0]
    X = datasets.load_inputs(args.data)
    is_csv = args.data.suffix.lower() == ".csv"
    if X.shape[1] == n_in + 1 and is_csv:
        print(
            f"fastbp: note: {args.data} has {X.shape[1]} columns and the model {n_in} inputs: "
            "ignoring the last column (a target)",
            file=sys.stderr,
        )
        X = X[:, :n_in]
    elif X.shape[1] != n_in:
        extra = " (or one more, a target, in a .csv)" if is_csv else ""
        raise UserError(
            f"{args.data}: {X.shape[1]} input columns, but the model {args.model} "
            f"takes {n_in}{extra}"
        )
    if args.class_only and model.task != "classify":
        raise UserError(f"--class-only: {args.model} is a regression model")
    outputs = model.net.predict(model.inputs(X))
    _write_predictions(out, model, outputs, args.class_only)
    if out is not None:
        print(f"wrote {outputs.shape[0]} predictions to {out}", file=sys.stderr)
    return 0


def _as_labels(values: np.ndarray) -> np.ndarray:
    """Class labels as int64 when they are all integers, else float64."""
    if (values == np.round(values)).all() and np.abs(values).max(initial=0) < 2**53:
        return values.astype(np.int64)
    return values


def _write_predictions(out: Path | None, model: Model, outputs: np.ndarray, class_only: bool):
    suffix = out.suffix.lower() if out is not None else ".csv"
    predicted = model.labels(outputs)
    if model.task == "classify":
        predicted = _as_labels(predicted)
        arrays = {"classes": predicted} if class_only else {"outputs": outputs}
        if not class_only:
            arrays["classes"] = predicted
    else:
        arrays = {"predictions": predicted if predicted.shape[1] > 1 else predicted[:, 0]}
    if suffix == ".npy":
        np.save(out, arrays["classes"] if class_only else next(iter(arrays.values())))
        return
    if suffix == ".npz":
        np.savez(out, **arrays)
        return
    lines = _csv_lines(model, outputs, predicted, class_only)
    if out is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    else:
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.writelines(lines)


def _csv_lines(model: Model, outputs: np.ndarray, predicted: np.ndarray, class_only: bool):
    """CSV lines; floats written with enough digits to read back exactly."""
    fmt = (lambda v: f"{v:.9g}") if outputs.dtype == np.float32 else repr
    if model.task == "regress":
        k = predicted.shape[1]
        header = ["prediction"] if k == 1 else [f"prediction_{j}" for j in range(k)]
        rows = ([repr(v) for v in row] for row in predicted.tolist())
    elif class_only:
        header = ["class"]
        rows = ([str(c)] for c in predicted.tolist())
    else:
        k = outputs.shape[1]
        header = ["output"] if k == 1 else [f"output_{j}" for j in range(k)]
        header.append("class")
        rows = (
            [*(fmt(v) for v in row), str(c)]
            for row, c in zip(outputs.tolist(), predicted.tolist(), strict=True)
        )
    return [",".join(header) + "\n", *(",".join(cells) + "\n" for cells in rows)]


# -- entry point ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastbp`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a user mistake (one line on stderr),
        3 when training failed, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    if args.command is None:  # bare `fastbp`
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nfastbp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `fastbp predict ... | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (OSError, ValueError, UserError) as exc:
        # Only what users cause: options and files (UserError), unreadable files
        # (OSError), data the loaders or Network reject (ValueError). A TypeError
        # is a bug and keeps its traceback.
        print(f"fastbp: error: {_one_line(_describe(exc))}", file=sys.stderr)
        return EXIT_ERROR
