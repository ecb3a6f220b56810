"""The ``fastbp`` command: train a network on bundled or user data, and predict with it.

``fastbp train`` trains on scikit-learn's handwritten digits by default and prints
the loss as it goes, then train and test accuracy and the wall time.
``fastbp predict`` applies a saved model to a data file. ``fastbp <command> --help``
explains every option.

User mistakes (bad options, unreadable or malformed files, a model that does not
fit the data, a diverging run) print ``fastbp: error: <one line>`` to stderr and
exit with status 2; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastbp import __version__, datasets
from fastbp.network import DivergenceError, Network

# Defaults of `fastbp train`: on digits, test accuracy 0.969-0.986 over seeds 0-9
# (mean 0.977) in about 0.1 s of training. XOR (4 rows) gets its own, full-batch defaults.
DEFAULTS = {
    "hidden": [64],
    "epochs": 100,
    "lr": 2.0,
    "batch_size": 32,
    "test_fraction": 0.2,
}
XOR_DEFAULTS = {
    "hidden": [4],
    "epochs": 2000,
    "lr": 2.0,
    "batch_size": None,
    "test_fraction": 0.0,
}
# Loss lines printed by default: every epoch up to EVERY_EPOCH_UP_TO epochs, else
# every k epochs (k a round number) for about LOG_LINES lines.
EVERY_EPOCH_UP_TO = 20
LOG_LINES = 10
PREDICT_SUFFIXES = (".csv", ".npy", ".npz")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

TARGET_RULES = f"""\
how targets are used (the network's outputs are sigmoids, in [0, 1]; loss is MSE):
  - integer labels 0..K-1, 3 <= K <= {datasets.MAX_CLASSES} (e.g. digits): classification, one
    output per class (one-hot targets; K = largest label + 1); accuracy = the
    argmax of the outputs matches the label
  - labels 0/1 (e.g. xor): one output; accuracy = output >= 0.5 matches the label
  - other real targets: one output, reported as mean squared error (MSE); they
    must lie in [0, 1], so scale them first
  - a 2-D y (.npz only) with several columns is used as given, one output per
    column; accuracy by argmax if every row is one-hot, else MSE
inputs are used as given: scale features to about [0, 1] for sigmoid units."""


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
        super().__init__(prog, max_help_position=30)


def build_parser() -> argparse.ArgumentParser:
    """The ``fastbp`` argument parser, with its ``train`` and ``predict`` commands."""
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="Train sigmoid multilayer perceptrons by backpropagation (Numba-compiled).",
        epilog="Run 'fastbp train --help' or 'fastbp predict --help' for each command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train a network and report its accuracy (default: the digits data)",
        description=(
            "Train a sigmoid network by mini-batch gradient descent on the mean squared\n"
            "error, printing the loss per epoch, then train and test accuracy and the wall\n"
            "time. With no options: scikit-learn's 8x8 digits (1797 images, pixels scaled\n"
            "to [0, 1]), 20% held out for testing, a 64-64-10 network.\n\n" + TARGET_RULES
        ),
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
        "or a .csv of numbers whose last column is the target (a header line is skipped)",
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
        "--epochs",
        type=_int_at_least(1),
        default=None,
        help=f"passes over the training rows (default: {DEFAULTS['epochs']}; "
        f"xor: {XOR_DEFAULTS['epochs']})",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"learning rate, > 0 (default: {DEFAULTS['lr']:g})",
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
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="precision of weights and arithmetic; float32 is faster (default: float32)",
    )
    train.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="seed of the initial weights, the shuffling and the test split; the same "
        "seed gives the same run (default: 0)",
    )
    train.add_argument(
        "--test-fraction",
        metavar="F",
        type=_fraction,
        default=None,
        help="share of the rows held out for testing, stratified by class for labels, "
        "in [0, 1); 0 tests on nothing (default: 0.2; xor: 0, its 4 rows are all training)",
    )
    train.add_argument(
        "--save",
        metavar="FILE",
        type=Path,
        help="save the trained model to FILE (a .npz archive) for 'fastbp predict'",
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
        help="hide the progress bar (shown on stderr by default)",
    )
    train.set_defaults(func=run_train)

    predict = commands.add_parser(
        "predict",
        help="apply a saved model to a data file",
        description=(
            "Apply a model saved by 'fastbp train --save' to the rows of a data file and\n"
            "write the network's outputs.\n\n"
            "input: a .npz with an array X (other arrays, like y, are ignored), or a .csv\n"
            "whose columns are all features (a header line is skipped). A .csv with one\n"
            "column more than the model has inputs is training data: its last column is\n"
            "taken as the target and ignored.\n\n"
            "output: one row per sample. For a model with several outputs: columns\n"
            "output_0..output_{K-1}, then 'class', the argmax. For a one-output model: the\n"
            "column 'output' (threshold it at 0.5 for 0/1 labels, or use --class-only).\n"
            "The format follows the suffix of --out: .csv (with a header line), .npy (the\n"
            "outputs array; the class vector with --class-only) or .npz (arrays 'outputs'\n"
            "and, for several outputs, 'classes'); without --out, CSV on stdout."
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
        help="write only the predicted class: the argmax of the outputs, or for a "
        "one-output model 1 if output >= 0.5 else 0",
    )
    predict.set_defaults(func=run_predict)
    return parser


# -- targets and metrics --------------------------------------------------------------------


@dataclass
class Task:
    """How targets map to network outputs, and how results are scored.

    Attributes
    ----------
    kind : {"classes", "binary", "one-hot", "regression"}
    Y : ndarray of float64, shape (n_samples, n_outputs)
        The network's targets.
    labels : ndarray of int64 or None
        Class of each sample, for accuracy and a stratified split.
    description : str
    """

    kind: str
    Y: np.ndarray
    labels: np.ndarray | None
    description: str

    @property
    def n_outputs(self) -> int:
        return int(self.Y.shape[1])


def make_task(y: np.ndarray) -> Task:
    """Network targets for raw targets ``y``, following the rules in ``train --help``.

    Raises
    ------
    ValueError
        If real-valued targets fall outside [0, 1], which sigmoid outputs cannot reach.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        labels = datasets.class_labels(y)
        if labels is not None and labels.max() <= 1:
            return Task(
                "binary",
                labels.astype(np.float64).reshape(-1, 1),
                labels,
                "0/1 labels: 1 output, accuracy at threshold 0.5",
            )
        if labels is not None:
            k = int(labels.max()) + 1
            present = np.unique(labels).size
            return Task(
                "classes",
                datasets.one_hot(labels, k),
                labels,
                f"{present} classes (labels 0-{k - 1}): {k} one-hot outputs, accuracy by argmax",
            )
        _check_unit_range(y)
        return Task(
            "regression", y.astype(np.float64).reshape(-1, 1), None, "real target: 1 output, MSE"
        )
    _check_unit_range(y)
    Y = y.astype(np.float64)
    if datasets.is_one_hot(Y):
        return Task(
            "one-hot",
            Y,
            Y.argmax(axis=1),
            f"one-hot targets: {Y.shape[1]} outputs, accuracy by argmax",
        )
    return Task("regression", Y, None, f"real targets: {Y.shape[1]} outputs, MSE")


def _check_unit_range(y: np.ndarray) -> None:
    lo, hi = float(y.min()), float(y.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"targets range over [{lo:g}, {hi:g}], but sigmoid outputs lie in [0, 1]: "
            f"scale real-valued targets into [0, 1], or use integer class labels "
            f"0..{datasets.MAX_CLASSES - 1}"
        )


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Argmax of each row; for a single output, 1 where it is >= 0.5, else 0."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] >= 0.5).astype(np.int64)
    return outputs.argmax(axis=1).astype(np.int64)


def score(task: Task, outputs: np.ndarray, Y: np.ndarray, labels: np.ndarray | None) -> str:
    """``"accuracy: 0.9722 (350/360)"`` or ``"MSE: 0.01234"`` for one part of the data."""
    if labels is not None:
        hits = int((predicted_classes(outputs) == labels).sum())
        return f"accuracy: {hits / labels.size:.4f} ({hits}/{labels.size})"
    return f"MSE: {float(np.mean((outputs - Y) ** 2)):.6g}"


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t >= 0.01 else f"{t * 1000:.1f} ms"


# -- train -------------------------------------------------------------------------------


def _load_training_data(args: argparse.Namespace) -> tuple[str, np.ndarray, np.ndarray]:
    if args.data is not None:
        X, y = datasets.load_file(args.data)
        return str(args.data), X, y
    name = args.dataset or "digits"
    X, y = datasets.digits() if name == "digits" else datasets.xor()
    return name, X, y


def _check_output_path(option: str, path: Path) -> None:
    """Fail before any work when ``path`` clearly cannot be written."""
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: directory {str(parent)!r} does not exist")


def _check_fits_dtype(X: np.ndarray, dtype: np.dtype | str, source: str) -> None:
    """Refuse inputs that would overflow to infinity in ``dtype`` (float32)."""
    biggest = float(np.abs(X).max()) if X.size else 0.0
    limit = float(np.finfo(dtype).max)
    if biggest > limit:
        raise ValueError(
            f"{source}: inputs as large as {biggest:g} overflow {np.dtype(dtype).name} "
            f"(max {limit:g}): scale them, or use --dtype float64"
        )


def _warm_up(dtype: str) -> None:
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


def run_train(args: argparse.Namespace) -> int:
    """``fastbp train``: see ``fastbp train --help``."""
    t_start = time.perf_counter()
    if args.save is not None:
        _check_output_path("--save", args.save)
    defaults = XOR_DEFAULTS if args.dataset == "xor" else DEFAULTS
    hidden = defaults["hidden"] if args.hidden is None else args.hidden
    epochs = defaults["epochs"] if args.epochs is None else args.epochs
    lr = defaults["lr"] if args.lr is None else args.lr
    batch_size = defaults["batch_size"] if args.batch_size is None else args.batch_size
    test_fraction = defaults["test_fraction"] if args.test_fraction is None else args.test_fraction

    t0 = time.perf_counter()
    name, X, y = _load_training_data(args)
    task = make_task(y)
    X_train, X_test, i_train, i_test = datasets.train_test_split(
        X, np.arange(X.shape[0]), test_fraction, seed=args.seed, stratify=task.labels
    )
    Y_train, Y_test = task.Y[i_train], task.Y[i_test]
    l_train = task.labels[i_train] if task.labels is not None else None
    l_test = task.labels[i_test] if task.labels is not None else None

    t_load = time.perf_counter() - t0
    _check_fits_dtype(X, args.dtype, name)
    sizes = [X.shape[1], *hidden, task.n_outputs]
    net = Network(sizes, dtype=args.dtype, seed=args.seed)
    batch = X_train.shape[0] if batch_size is None else min(batch_size, X_train.shape[0])
    batch_text = f"{batch} (full batch)" if batch == X_train.shape[0] else f"{batch}, shuffled"
    split = "stratified" if task.labels is not None else "shuffled"
    print(f"data: {name}, {X.shape[0]} samples x {X.shape[1]} features; {task.description}")
    if X_test.shape[0]:
        print(
            f"split: {X_train.shape[0]} train / {X_test.shape[0]} test ({split}, seed {args.seed})"
        )
    else:
        print(f"split: all {X_train.shape[0]} samples train, none held out for testing")
    print(
        f"network: {'-'.join(map(str, sizes))} sigmoid, {args.dtype}; {epochs} epochs, "
        f"lr {lr:g}, batch size {batch_text}"
    )
    sys.stdout.flush()

    t0 = time.perf_counter()
    _warm_up(args.dtype)
    t_compile = time.perf_counter() - t0

    every = _log_every(epochs, args.log_every)
    show_bar = not args.no_progress
    width = len(str(epochs))

    def log(epoch: int, loss: float) -> None:
        number = epoch + 1
        if number == 1 or number == epochs or number % every == 0:
            line = f"epoch {number:>{width}}/{epochs}  loss {loss:.6f}"
            if show_bar:
                from tqdm import tqdm

                tqdm.write(line, file=sys.stdout)
            else:
                print(line, flush=True)

    history = net.fit(
        X_train,
        Y_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        shuffle=True,
        progress=show_bar,
        callback=log,
    )

    t0 = time.perf_counter()
    train_score = score(task, net.predict(X_train), Y_train, l_train)
    test_score = score(task, net.predict(X_test), Y_test, l_test) if X_test.shape[0] else None
    t_eval = time.perf_counter() - t0

    print(f"train {train_score}")
    print(f"test {test_score}" if test_score else "test: - (no held-out rows)")
    if args.save is not None:
        net.save(args.save)
        print(f"saved model: {args.save}")
    total = time.perf_counter() - t_start
    print(
        f"time: {_seconds(total)} wall: {_seconds(t_load)} loading data, "
        f"{_seconds(t_compile)} compiling (Numba, cached on disk after the first run), "
        f"{_seconds(history.seconds)} training, {_seconds(t_eval)} evaluating"
    )
    return 0


# -- predict -------------------------------------------------------------------------------


def run_predict(args: argparse.Namespace) -> int:
    """``fastbp predict``: see ``fastbp predict --help``."""
    out = args.out
    if out is not None:
        if out.suffix.lower() not in PREDICT_SUFFIXES:
            shown = f"'{out.suffix}'" if out.suffix else "no suffix"
            raise ValueError(
                f"--out {out}: unsupported file type ({shown}); use .csv, .npy or .npz"
            )
        _check_output_path("--out", out)
    net = Network.load(args.model)
    n_in = net.sizes[0]
    X = datasets.load_inputs(args.data)
    if X.shape[1] == n_in + 1 and args.data.suffix.lower() == ".csv":
        print(
            f"fastbp: note: {args.data} has {X.shape[1]} columns and the model {n_in} inputs: "
            "ignoring the last column (a target)",
            file=sys.stderr,
        )
        X = X[:, :n_in]
    elif X.shape[1] != n_in:
        extra = " (or one more, a target, in a .csv)" if args.data.suffix.lower() == ".csv" else ""
        raise ValueError(
            f"{args.data}: {X.shape[1]} input columns, but the model {args.model} "
            f"takes {n_in}{extra}"
        )
    _check_fits_dtype(X, net.dtype, str(args.data))
    outputs = net.predict(X)
    classes = predicted_classes(outputs)
    _write_predictions(out, outputs, classes, args.class_only)
    if out is not None:
        print(f"wrote {outputs.shape[0]} predictions to {out}", file=sys.stderr)
    return 0


def _write_predictions(
    out: Path | None, outputs: np.ndarray, classes: np.ndarray, class_only: bool
) -> None:
    multi = outputs.shape[1] > 1
    suffix = out.suffix.lower() if out is not None else ".csv"
    if suffix == ".npy":
        np.save(out, classes if class_only else outputs)
        return
    if suffix == ".npz":
        arrays = {"classes": classes} if class_only else {"outputs": outputs}
        if multi and not class_only:
            arrays["classes"] = classes
        np.savez(out, **arrays)
        return
    lines = _csv_lines(outputs, classes, class_only)
    if out is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    else:
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.writelines(lines)


def _csv_lines(outputs: np.ndarray, classes: np.ndarray, class_only: bool) -> list[str]:
    """CSV lines; floats written with enough digits to read back exactly."""
    if class_only:
        return ["class\n", *(f"{c}\n" for c in classes.tolist())]
    k = outputs.shape[1]
    header = ["output"] if k == 1 else [f"output_{j}" for j in range(k)] + ["class"]
    fmt = (lambda v: f"{v:.9g}") if outputs.dtype == np.float32 else repr
    lines = [",".join(header) + "\n"]
    for row, c in zip(outputs.tolist(), classes.tolist(), strict=True):
        cells = [fmt(v) for v in row]
        if k > 1:
            cells.append(str(c))
        lines.append(",".join(cells) + "\n")
    return lines


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
        The exit status: 0 on success, 2 for a usage error or a failure (with a
        one-line message on stderr), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
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
    except DivergenceError as exc:
        print(f"fastbp: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ValueError, TypeError) as exc:
        print(f"fastbp: error: {_one_line(_describe(exc))}", file=sys.stderr)
        return EXIT_ERROR
