"""Tests of the ``fastbp`` command line (fastbp.cli), mostly run in-process."""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import without_compile_notice

from fastbp import DivergenceError, History, Network, cli


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)``: (exit code, stdout, stderr)."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def metric(out: str, part: str, name: str = "accuracy") -> float:
    found = re.search(rf"^{part} {name}: ([0-9.eE+-]+)", out, re.MULTILINE)
    assert found, f"no '{part} {name}' line in:\n{out}"
    return float(found.group(1))


def assert_one_line_error(err: str, message: str = "") -> None:
    """Our own errors: exactly one stderr line, 'fastbp: error: ...'."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastbp: error: "), err
    assert message in lines[0]


def blobs(n: int = 120, n_classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated clusters in [0, 1]^2 with integer labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = np.array([[0.15, 0.15], [0.85, 0.2], [0.5, 0.85], [0.85, 0.85]])[:n_classes]
    X = centres[y] + 0.05 * rng.standard_normal((n, 2))
    return X, y


# -- train ----------------------------------------------------------------------------------


def test_default_train_reaches_090_on_digits(capsys):
    """The acceptance test: `fastbp train` with its defaults."""
    code, out, err = run(capsys, "train")
    assert code == 0, err
    assert "data: digits, 1797 samples x 64 features" in out
    assert "network: 64-64-10 sigmoid, float32, scaling standard" in out
    assert metric(out, "test") >= 0.95
    assert metric(out, "train") >= 0.95
    assert re.search(r"^epoch +1/\d+  loss [0-9.]+  val loss [0-9.]+  val accuracy", out, re.M)
    assert re.search(r"^time: [0-9.]+ m?s wall", out, re.MULTILINE)
    assert without_compile_notice(err) == ""  # no progress bar: stderr is not a terminal


def test_train_is_reproducible_with_a_seed(capsys):
    args = ("train", "--epochs", "3", "--seed", "5", "--no-progress")
    _, first, _ = run(capsys, *args)
    _, second, _ = run(capsys, *args)
    strip = lambda text: [ln for ln in text.splitlines() if not ln.startswith("time:")]  # noqa: E731
    assert strip(first) == strip(second)
    assert "seed 5" in first


def test_xor(capsys):
    code, out, err = run(capsys, "train", "--dataset", "xor", "--no-progress")
    assert code == 0, err
    assert "network: 2-4-1 sigmoid" in out
    assert "batch 4 (full)" in out
    assert metric(out, "train") == 1.0
    assert "no held-out rows" in out
    assert without_compile_notice(err) == ""


def test_log_cadence(capsys):
    _, out, _ = run(capsys, "train", "--dataset", "xor", "--epochs", "30", "--no-progress")
    epochs = [int(m) for m in re.findall(r"^epoch +(\d+)/30", out, re.MULTILINE)]
    assert epochs == [1, 5, 10, 15, 20, 25, 30]
    _, out, _ = run(
        capsys, "train", "--dataset", "xor", "--epochs", "7", "--log-every", "3", "--no-progress"
    )
    epochs = [int(m) for m in re.findall(r"^epoch +(\d+)/7", out, re.MULTILINE)]
    assert epochs == [1, 3, 6, 7]


@pytest.mark.parametrize(
    ("epochs", "every"), [(1, 1), (20, 1), (21, 5), (100, 10), (2000, 200), (35, 5)]
)
def test_log_every_default(epochs, every):
    assert cli._log_every(epochs, None) == every


def test_hidden_layers_and_none(capsys):
    code, out, _ = run(
        capsys, "train", "--dataset", "xor", "--hidden", "3, 2", "--epochs", "2", "--no-progress"
    )
    # 2 epochs cannot learn XOR: training "fails" (exit 3), the network line is what counts
    assert code in (0, cli.EXIT_FAILED) and "network: 2-3-2-1 sigmoid" in out
    for spelling in ("none", "", "0", "NONE"):
        code, out, _ = run(
            capsys, "train", "--dataset", "xor", "--hidden", spelling, "--epochs", "2",
            "--no-progress",
        )  # fmt: skip
        assert code in (0, cli.EXIT_FAILED) and "network: 2-1 sigmoid" in out


def test_activation_is_trained_and_kept(tmp_path: Path, capsys):
    """--activation: the hidden layers' activation, in the model file, kept by --resume."""
    model = tmp_path / "m.npz"
    code, out, err = run(
        capsys, "train", "--dataset", "xor", "--activation", "tanh", "--epochs", "2",
        "--no-progress", "--save", str(model),
    )  # fmt: skip
    assert "network: 2-4-1 tanh hidden" in out
    if code == 0:  # 2 epochs may not learn XOR (exit 3, nothing saved)
        assert cli.load_model(model).net.activations == ["tanh", "logistic"]
    code, _, err = run(capsys, "train", "--activation", "softplus")
    assert code == cli.EXIT_ERROR and "--activation" in err


def test_parse_hidden():
    assert cli.parse_hidden("64,32") == [64, 32]
    assert cli.parse_hidden(" 8 ") == [8]
    assert cli.parse_hidden("none") == []
    for bad in ("64,", "a", "64,0", "-1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_hidden(bad)


def test_train_on_npz_classes(tmp_path: Path, capsys):
    X, y = blobs()
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    code, out, err = run(
        capsys, "train", "--data", str(tmp_path / "blobs.npz"), "--hidden", "8", "--epochs",
        "200", "--batch-size", "16", "--dtype", "float64", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "task: 3 classes (0, 1, 2): 3 one-hot outputs" in out
    assert "network: 2-8-3 sigmoid, float64" in out
    assert re.search(r"^split: \d+ train / \d+ validation / 24 test \(stratified", out, re.M)
    assert metric(out, "test") >= 0.9


def test_train_on_csv_binary_with_header(tmp_path: Path, capsys):
    X, y = blobs(n=80, n_classes=2, seed=2)
    path = tmp_path / "two.csv"
    lines = ["f1,f2,target"] + [
        f"{a!r},{b!r},{t}" for (a, b), t in zip(X.tolist(), y.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run(
        capsys, "train", "--data", str(path), "--epochs", "300", "--batch-size", "full",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "task: 2 classes (0, 1): 1 output at 0.5" in out
    assert "network: 2-64-1 sigmoid" in out
    assert metric(out, "test") >= 0.9


def test_train_regression_reports_r2(tmp_path: Path, capsys):
    rng = np.random.default_rng(3)
    X = rng.random((200, 2))
    y = 200 + 300 * X[:, 0] - 200 * X[:, 1]  # far outside the sigmoid's [0, 1]
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    code, out, err = run(capsys, "train", "--data", str(tmp_path / "reg.npz"), "--no-progress")
    assert code == 0, err
    assert "task: regression, 1 output(s) scaled to [0.1, 0.9] and back, R²" in out
    assert "split: 144 train / 16 validation / 40 test (shuffled" in out
    assert metric(out, "test", "R²") > 0.95


def test_train_one_hot_npz_targets(tmp_path: Path, capsys):
    X, y = blobs()
    np.savez(tmp_path / "oh.npz", X=X, y=np.eye(3)[y])
    code, out, err = run(
        capsys, "train", "--data", str(tmp_path / "oh.npz"), "--epochs", "5", "--no-progress"
    )
    assert code in (0, cli.EXIT_FAILED), err
    assert "task: 3 classes (0, 1, 2): 3 one-hot outputs, accuracy" in out
    assert metric(out, "test") >= 0.0


# -- save and predict ---------------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path: Path, capsys) -> tuple[Path, np.ndarray]:
    """A 3-class model trained on blobs, and inputs for it."""
    X, y = blobs(seed=4)
    np.savez(tmp_path / "train.npz", X=X, y=y)
    model = tmp_path / "model.npz"
    code, out, err = run(
        capsys, "train", "--data", str(tmp_path / "train.npz"), "--hidden", "6", "--epochs",
        "20", "--save", str(model), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"saved model: {model}" in out
    return model, X


def predict(path: Path, X: np.ndarray) -> np.ndarray:
    """The outputs of the network saved in ``path`` on raw inputs ``X``, through its scaling."""
    model = cli.load_model(path)
    return model.net.predict(model.inputs(X))


def read_csv(text: str) -> tuple[list[str], np.ndarray]:
    lines = text.strip().splitlines()
    return lines[0].split(","), np.array([[float(c) for c in ln.split(",")] for ln in lines[1:]])


def test_predict_round_trip_stdout_csv(trained, tmp_path: Path, capsys):
    model, X = trained
    np.savez(tmp_path / "inputs.npz", X=X)
    code, out, err = run(
        capsys, "predict", "--model", str(model), "--data", str(tmp_path / "inputs.npz")
    )
    assert code == 0, err
    header, table = read_csv(out)
    assert header == ["output_0", "output_1", "output_2", "class"]
    expected = predict(model, X)
    np.testing.assert_array_equal(table[:, :3].astype(np.float32), expected)
    np.testing.assert_array_equal(table[:, 3], expected.argmax(axis=1))


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".npz"])
def test_predict_round_trip_out_files(trained, tmp_path: Path, capsys, suffix):
    model, X = trained
    csv_in = tmp_path / "inputs.csv"
    csv_in.write_text("".join(",".join(repr(v) for v in row) + "\n" for row in X.tolist()))
    out_path = tmp_path / f"pred{suffix}"
    code, out, err = run(
        capsys, "predict", "--model", str(model), "--data", str(csv_in), "--out", str(out_path)
    )
    assert code == 0, err
    assert out == "" and f"wrote {len(X)} predictions to {out_path}" in err
    expected = predict(model, X)
    if suffix == ".csv":
        _, table = read_csv(out_path.read_text())
        got, classes = table[:, :3].astype(np.float32), table[:, 3]
    elif suffix == ".npy":
        got, classes = np.load(out_path), expected.argmax(axis=1)
    else:
        with np.load(out_path) as npz:
            got, classes = npz["outputs"], npz["classes"]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(classes, expected.argmax(axis=1))


def test_predict_ignores_a_target_column_and_class_only(trained, tmp_path: Path, capsys):
    model, X = trained
    path = tmp_path / "with_y.csv"
    path.write_text("a,b,y\n" + "".join(f"{a!r},{b!r},1\n" for a, b in X.tolist()))
    code, out, err = run(
        capsys, "predict", "--model", str(model), "--data", str(path), "--class-only"
    )
    assert code == 0
    assert "ignoring the last column" in err
    lines = out.split()
    assert lines[0] == "class"
    expected = predict(model, X).argmax(axis=1)
    np.testing.assert_array_equal(np.array(lines[1:], dtype=int), expected)


def test_predict_one_output_model_float64(tmp_path: Path, capsys):
    model = tmp_path / "xor.npz"
    code, _, _ = run(
        capsys, "train", "--dataset", "xor", "--dtype", "float64", "--save", str(model),
        "--no-progress",
    )  # fmt: skip
    assert code == 0
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    np.savez(tmp_path / "x.npz", X=X)
    code, out, _ = run(capsys, "predict", "--model", str(model), "--data", str(tmp_path / "x.npz"))
    assert code == 0
    header, table = read_csv(out)
    assert header == ["output", "class"]
    outputs = predict(model, X)
    np.testing.assert_array_equal(table[:, :1], outputs)  # exact in float64
    np.testing.assert_array_equal(table[:, 1], outputs[:, 0] >= 0.5)
    code, out, _ = run(
        capsys, "predict", "--model", str(model), "--data", str(tmp_path / "x.npz"),
        "--class-only",
    )  # fmt: skip
    assert out.split() == ["class", "0", "1", "1", "0"]


def test_model_file_keeps_scaling_labels_and_names_and_is_read_safely(tmp_path: Path, capsys):
    X, y = blobs(n=60, seed=5)
    data = tmp_path / "named.csv"
    rows = [f"{a!r},{b!r},{[5, 7, 9][t]}" for (a, b), t in zip(X.tolist(), y.tolist(), strict=True)]
    data.write_text("left,right,label\n" + "\n".join(rows) + "\n")
    path = tmp_path / "m.npz"
    code, _, err = run(capsys, "train", "--data", str(data), "--save", str(path), "--no-progress")
    assert code == 0, err
    model = cli.load_model(path)
    assert model.task == "classify" and model.scale == "standard"
    assert model.columns == ["left", "right"] and model.target == "label"
    np.testing.assert_array_equal(model.classes, [5.0, 7.0, 9.0])
    assert model.x_scale.shape == (2,) and (model.x_scale > 0).all()
    # an entry whose .npy header announces 8 TB is refused before anything is allocated
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("cli_extra.npy", header.getvalue() + bytes(64))
    with pytest.raises(cli.UserError, match="announces 8000000000000 bytes"):
        cli.load_model(path)


# -- errors --------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Bad and good files for the error tests."""
    X, y = blobs(n=30)
    paths = {name: tmp_path / name for name in (
        "good.npz", "bad.csv", "ragged.csv", "empty.csv", "noy.npz", "junk.npz", "const.npz",
        "huge.npz", "dir.csv", "model.npz", "notmodel.npz", "wide.npz", "wide.csv",
    )}  # fmt: skip
    np.savez(paths["good.npz"], X=X, y=y)
    paths["bad.csv"].write_text("a,b,c\n1,2,0\n3,oops,1\n")
    paths["ragged.csv"].write_text("1,2,0\n3,4\n")
    paths["empty.csv"].write_text("")
    np.savez(paths["noy.npz"], X=X)
    paths["junk.npz"].write_text("not a zip\n")
    np.savez(paths["const.npz"], X=X, y=np.ones(30))
    np.savez(paths["huge.npz"], X=np.full((30, 2), 1e39), y=y)
    paths["dir.csv"].mkdir()
    Network([2, 3, 3], dtype=np.float32, seed=0).save(paths["model.npz"])
    np.savez(paths["notmodel.npz"], W0=np.zeros((2, 3)))
    np.savez(paths["wide.npz"], X=np.zeros((4, 5)), y=np.arange(4) % 2)
    paths["wide.csv"].write_text("1,2,3,4\n")
    return paths


BAD_TRAIN = [
    (["--data", "{bad.csv}"], "line 3, column 2: 'oops' is not a number"),
    (["--data", "{ragged.csv}"], "line 2 has 2 columns"),
    (["--data", "{empty.csv}"], "no data rows"),
    (["--data", "{noy.npz}"], "missing array y"),
    (["--data", "{junk.npz}"], "not a valid .npz archive"),
    (["--data", "{const.npz}"], "the target has a single value (1)"),
    (["--data", "{huge.npz}", "--scale", "none"], "overflow float32"),
    (["--data", "{good.npz}", "--resume", "{junk.npz}"], "not a fastbp model file"),
    (["--data", "{good.npz}", "--resume", "{model.npz}", "--hidden", "4"], "leave --hidden out"),
    (["--data", "{wide.npz}", "--resume", "{model.npz}"], "the model takes 2 features"),
    (["--data", "{good.npz}", "--plot", "{tmp}/c.gif"], "use .png, .pdf or .svg"),
    (["--data", "{dir.csv}"], "Is a directory"),
    (["--data", "{tmp}/absent.csv"], "No such file or directory"),
    (["--data", "{tmp}/data.txt"], "unsupported file type"),
    (["--save", "{tmp}/no/such/dir/m.npz"], "does not exist"),
    (["--save", "{tmp}"], "is a directory"),
]
BAD_PREDICT = [
    (["--model", "{tmp}/absent.npz", "--data", "{good.npz}"], "No such file or directory"),
    (["--model", "{notmodel.npz}", "--data", "{good.npz}"], "not a fastbp model file"),
    (["--model", "{junk.npz}", "--data", "{good.npz}"], "not a fastbp model file"),
    (["--model", "{dir.csv}", "--data", "{good.npz}"], "Is a directory"),
    (["--model", "{model.npz}", "--data", "{wide.npz}"], "5 input columns, but the model"),
    (["--model", "{model.npz}", "--data", "{wide.csv}"], "or one more, a target"),
    (["--model", "{model.npz}", "--data", "{bad.csv}"], "'oops' is not a number"),
    (["--model", "{model.npz}", "--data", "{good.npz}", "--out", "{tmp}/p.txt"], "use .csv"),
    (["--model", "{model.npz}", "--data", "{good.npz}", "--out", "{tmp}/x/p.csv"], "not exist"),
    (["--model", "{model.npz}", "--data", "{good.npz}", "--out", "{dir.csv}"], "is a directory"),
]


def _expand(arg: str, files: dict[str, Path], tmp_path: Path) -> str:
    for name, path in files.items():
        arg = arg.replace("{" + name + "}", str(path))
    return arg.replace("{tmp}", str(tmp_path))


@pytest.mark.parametrize(("args", "message"), BAD_TRAIN)
def test_train_errors_are_one_line(files, tmp_path: Path, capsys, args, message):
    argv = ["train", "--epochs", "2", "--no-progress", *(_expand(a, files, tmp_path) for a in args)]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, message)


@pytest.mark.parametrize(("args", "message"), BAD_PREDICT)
def test_predict_errors_are_one_line(files, tmp_path: Path, capsys, args, message):
    code, out, err = run(capsys, "predict", *(_expand(a, files, tmp_path) for a in args))
    assert code == 2
    assert_one_line_error(err, message)
    assert out == ""


BAD_USAGE = [
    ["frobnicate"],
    ["train", "--epochs", "-3"],
    ["train", "--epochs", "0"],
    ["train", "--epochs", "2.5"],
    ["train", "--lr", "0"],
    ["train", "--lr", "-1"],
    ["train", "--lr", "inf"],
    ["train", "--lr", "fast"],
    ["train", "--batch-size", "0"],
    ["train", "--batch-size", "big"],
    ["train", "--hidden", "64,x"],
    ["train", "--hidden", "-4"],
    ["train", "--dtype", "float16"],
    ["train", "--dtype", "int32"],
    ["train", "--seed", "-1"],
    ["train", "--test-fraction", "1"],
    ["train", "--log-every", "0"],
    ["train", "--threads", "0"],
    ["train", "--threads", "-2"],
    ["train", "--threads", "two"],
    ["train", "--scale", "log"],
    ["train", "--task", "cluster"],
    ["train", "--patience", "-1"],
    ["train", "--val-fraction", "1.5"],
    ["train", "--dataset", "mnist"],
    ["train", "--dataset", "xor", "--data", "x.csv"],
    ["train", "--no-such-option"],
    ["predict", "--data", "x.csv"],
    ["predict", "--model", "m.npz"],
]


@pytest.mark.parametrize("argv", BAD_USAGE, ids=lambda a: " ".join(a) or "no-arguments")
def test_usage_errors_exit_2_with_one_error_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, "--help')")


def test_divergence_is_a_one_line_error(monkeypatch, capsys):
    real_fit = Network.fit

    def diverge(self, *args, **kwargs):
        if kwargs.get("callback") is None:  # the warm-up's compile fit
            return real_fit(self, *args, **kwargs)
        raise DivergenceError(
            "training diverged in epoch 3 (non-finite loss or weights; try a smaller lr than 2.0)",
            History(),
        )

    monkeypatch.setattr(Network, "fit", diverge)
    code, out, err = run(capsys, "train", "--dataset", "xor", "--no-progress")
    assert code == cli.EXIT_FAILED
    assert_one_line_error(err, "training diverged in epoch 1 ")
    assert "lower --lr (now 2)" in err
    assert "train accuracy" in out  # the scores of the last finite weights are reported


def test_keyboard_interrupt_before_training_exits_130(monkeypatch, capsys):
    """Ctrl-C while compiling: nothing trained, one line. (During training: test_cli_user.)"""

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Network, "fit", interrupt)
    code, out, err = run(capsys, "train", "--dataset", "xor", "--no-progress")
    assert code == 130
    assert err.strip() == "fastbp: interrupted"
    assert "train accuracy" not in out


def test_a_type_error_is_a_bug_and_keeps_its_traceback(monkeypatch, capsys):
    """Only user mistakes become one-line errors: a TypeError from the code propagates."""

    def broken(self, *args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(Network, "fit", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        cli.main(["train", "--dataset", "xor", "--no-progress"])


# -- help and entry points ------------------------------------------------------------------------


TRAIN_OPTIONS = [
    "--dataset", "--data", "--hidden", "--epochs", "--lr", "--batch-size", "--dtype", "--seed",
    "--test-fraction", "--save", "--log-every", "--no-progress", "--resume", "--task", "--scale",
    "--val-fraction", "--patience", "--plot", "--threads", "--activation", "--dask",
]  # fmt: skip
PREDICT_OPTIONS = ["--model", "--data", "--out", "--class-only"]


def _options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        opt
        for action in sub.choices[command]._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }


@pytest.mark.parametrize(
    ("command", "options"), [("train", TRAIN_OPTIONS), ("predict", PREDICT_OPTIONS)]
)
def test_help_lists_every_option(capsys, command, options):
    assert _options(cli.build_parser(), command) == set(options)
    code, out, err = run(capsys, command, "--help")
    assert code == 0 and err == ""
    for option in options:
        assert re.search(rf"^\s+{option}\b.*\S", out, re.MULTILINE), option
    if command == "train":
        assert "one-hot" in out and "0.5" in out and "R^2" in out  # the target rules
        assert "exit status" in out
        assert "none" in out  # no hidden layer


def test_train_help_fits_100_columns(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--threads" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_top_level_help_and_version(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "train" in out and "predict" in out
    code, bare, _ = run(capsys)
    assert code == 0 and bare == out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("fastbp ")


def _console_script() -> str:
    name = "fastbp.exe" if os.name == "nt" else "fastbp"
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which("fastbp")
    if found is None:
        pytest.fail("the fastbp console script is not installed (pip install -e .)")
    return found


@pytest.mark.slow
def test_console_script_trains(tmp_path: Path):
    model = tmp_path / "m.npz"
    result = subprocess.run(
        [_console_script(), "train", "--epochs", "5", "--no-progress", "--save", str(model)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^test accuracy: [0-9.]+", result.stdout, re.MULTILINE)
    assert model.exists()


@pytest.mark.slow
def test_python_dash_m_and_error_exit_code(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "fastbp", "train", "--data", str(tmp_path / "absent.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fastbp: error: {tmp_path / 'absent.csv'}: No such file or directory"
    ]
