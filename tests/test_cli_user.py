"""``fastbp`` as a user runs it: a fresh process through the real entry point.

Each test checks stdout, stderr and the exit status of ``python -m fastbp ...``
(the console script runs the same ``fastbp.cli:main``, see test_cli.py).
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    TABLES,
    child_env,
    export_csv,
    fastbp,
    reported,
    without_compile_notice,
)

from fastbp import cli

MAX_WIDTH = 100

# scikit-learn 1.9.1's test scores, seed 0, as printed by tests/scripts/cli_defaults.py:
# make_pipeline(StandardScaler(), MLPClassifier/MLPRegressor(random_state=0)) on the rows
# `fastbp train --data <table>.csv` trains (train + validation) and tests on.
SKLEARN_SEED_0 = {
    "iris": 0.8667,
    "wine": 1.0,
    "breast_cancer": 0.9912,
    "digits": 0.9721,
    # The pipeline's MLPRegressor does not converge on diabetes' unscaled targets in 200
    # epochs (R² -1.0951): the bar is the same pipeline with standardised targets
    # (TransformedTargetRegressor), which reaches 0.4824.
    "diabetes": 0.4824,
}


def assert_narrow(*texts: str) -> None:
    """Every line the command printed fits in MAX_WIDTH characters."""
    for text in texts:
        for line in text.splitlines():
            assert len(line) <= MAX_WIDTH, f"{len(line)} characters: {line!r}"


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbp: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def blob_csv(path: Path, labels=(10, 20, 30), n: int = 90, scale: float = 1000.0) -> Path:
    """Separable clusters with raw features in the thousands and labels ``labels``, a header."""
    rng = np.random.default_rng(7)
    k = np.arange(n) % len(labels)
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]])[: len(labels)]
    X = scale * (centres[k] + 0.05 * rng.standard_normal((n, 2)))
    y = np.asarray(labels)[k]
    with open(path, "w") as f:
        f.write("width (mm),height (mm),kind\n")
        np.savetxt(f, np.column_stack([X, y]), delimiter=",", fmt="%.6g")
    return path


# -- 1. defaults that work on real tables ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TABLES))
def test_defaults_reach_sklearn_on_its_bundled_tables(tmp_path: Path, name: str):
    """Only --data: at least scikit-learn's MLP accuracy minus 2 points (R² minus 0.05).

    scikit-learn: ``make_pipeline(StandardScaler(), MLPClassifier/MLPRegressor(random_state=0))``
    on the same train (train + validation) and test rows. Seeds 0-4 are measured by
    ``tests/scripts/cli_defaults.py``; the test runs seed 0 against scikit-learn's
    scores recorded by that script (fitting its MLP here would take 10-40 s).
    """
    path = export_csv(name, tmp_path / f"{name}.csv")
    run = fastbp("train", "--data", path.name, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert_narrow(run.stdout, run.stderr)
    assert run.stdout.startswith("read: header: ")
    if TABLES[name] == "classify":
        ours, margin = reported(run.stdout, "test", "accuracy"), 0.02
    else:
        ours, margin = reported(run.stdout, "test", "R²"), 0.05
        assert "task: regression" in run.stdout
    theirs = SKLEARN_SEED_0[name]
    assert ours >= theirs - margin, (ours, theirs)


# -- 2. no silent failure ----------------------------------------------------------------------


@pytest.mark.slow
def test_saturated_training_fails_loudly():
    run = fastbp("train", "--lr", "1e6", "--epochs", "15")
    assert run.returncode == cli.EXIT_FAILED
    assert_one_error_line(
        run.stderr, "loss stuck at", "saturated sigmoids", "lower --lr (now 1e+06)"
    )
    assert "no better than always predicting the most frequent class" in run.stdout
    assert_narrow(run.stdout, run.stderr)


@pytest.mark.slow
def test_unscaled_features_fail_loudly_and_the_model_is_not_saved(tmp_path: Path):
    path = export_csv("breast_cancer", tmp_path / "bc.csv")
    model = tmp_path / "m.npz"
    run = fastbp(
        "train", "--data", str(path), "--scale", "none", "--epochs", "5", "--save", str(model)
    )
    assert run.returncode == cli.EXIT_FAILED
    assert_one_error_line(run.stderr, "saturate the sigmoids: use --scale standard")
    assert f"not saved: {model} (training failed)" in run.stdout
    assert not model.exists()


# -- 3. honest, fast data reading --------------------------------------------------------------


def test_csv_detection_is_said_in_one_line(tmp_path: Path):
    semicolons = tmp_path / "semi.csv"
    blob_csv(tmp_path / "blobs.csv")
    text = (tmp_path / "blobs.csv").read_text().replace(",", ";")
    semicolons.write_text(text)
    run = fastbp("train", "--data", str(semicolons), "--epochs", "30")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(
        "read: delimiter: semicolon\nread: header: width (mm), height (mm), kind\ndata: "
    )
    assert "semi.csv, 90 samples x 2 features\n" in run.stdout
    mixed = tmp_path / "mixed.csv"
    lines = text.replace(";", ",").splitlines()
    mixed.write_text("\n".join(["1,foo,10", *lines[1:]]) + "\n")
    run = fastbp("train", "--data", str(mixed), "--epochs", "30")
    assert run.returncode == 0, run.stderr
    assert "read: skipped line 1: '1,foo,10' is not numeric\n" in run.stdout
    assert "90 samples" in run.stdout
    # a bad cell (one line naming its line and column): test_datasets.py and test_cli.py


# -- 4. long runs behave -----------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal(tmp_path: Path):
    args = [sys.executable, "-m", "fastbp", "train", "--dataset", "xor", "--epochs", "3000"]
    logged = subprocess.run(args, env=child_env(), capture_output=True, text=True, timeout=300)
    assert logged.returncode == 0, logged.stderr
    # nothing for a log file (but the one-line notice of a first compile)
    assert without_compile_notice(logged.stderr) == "" and "\r" not in logged.stdout
    main_fd, tty_fd = pty.openpty()
    # a terminal 100 columns wide (a fresh pty has 0 columns: tqdm would draw nothing)
    fcntl.ioctl(tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(main_fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        on_tty = subprocess.run(
            args, env=child_env(), stdout=subprocess.PIPE, stderr=tty_fd, text=True, timeout=300
        )
    finally:
        os.close(tty_fd)
        reader.join(timeout=10)
        os.close(main_fd)
    bar = b"".join(chunks).decode(errors="replace")
    assert on_tty.returncode == 0
    assert "epoch/s" in bar and "3000/3000" in bar


@pytest.mark.slow
def test_ctrl_c_reports_and_saves_what_was_trained(tmp_path: Path):
    """SIGINT to a real `fastbp train`: it stops, reports the scores, saves, exits 130."""
    model = tmp_path / "m.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastbp", "train", "--epochs", "100000", "--patience", "0",
         "--log-every", "1", "--save", str(model)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if line.split()[:2] == ["epoch", "3/100000"]:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "fastbp: interrupted"
    assert "Traceback" not in err
    assert "interrupted in epoch" in rest
    assert reported(rest, "test", "accuracy") > 0.5
    assert f"saved model: {model}" in rest
    assert cli.load_model(model).net.sizes == [64, 64, 10]


@pytest.mark.slow
def test_resume_continues_a_saved_model(tmp_path: Path):
    data = blob_csv(tmp_path / "blobs.csv")
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    run = fastbp(
        "train", "--data", str(data), "--hidden", "5", "--epochs", "30", "--save", str(first)
    )
    assert run.returncode == 0, run.stderr
    run = fastbp(
        "train", "--data", str(data), "--resume", str(first), "--save", str(second),
        "--threads", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"resumed: {first} (its weights, scaling and labels)" in run.stdout
    assert "network: 2-5-3 sigmoid" in run.stdout
    assert reported(run.stdout, "test", "accuracy") == 1.0
    # predict: raw features in, the original labels (10, 20, 30) out
    raw = tmp_path / "raw.csv"
    raw.write_text("width (mm),height (mm)\n0,0\n1000,0\n500,1000\n")
    run = fastbp("predict", "--model", str(second), "--data", str(raw), "--class-only")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["class", "10", "20", "30"]


@pytest.mark.slow
def test_plot_writes_curves(tmp_path: Path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.png"
    data = blob_csv(tmp_path / "blobs.csv")
    run = fastbp("train", "--data", str(data), "--epochs", "40", "--plot", str(plot))
    assert run.returncode == 0, run.stderr
    assert f"saved plot: {plot}" in run.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from fastbp.cli import main\n"
        f"sys.exit(main(['train', '--plot', {str(tmp_path / 'c.png')!r}]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2
    assert_one_error_line(run.stderr, "--plot needs matplotlib", "pip install 'fastbp[plot]'")


def test_regression_predicts_in_the_original_units(tmp_path: Path):
    rng = np.random.default_rng(0)
    X = rng.random((300, 2))
    y = 1000 + 500 * X[:, 0] - 300 * X[:, 1]
    path = tmp_path / "reg.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter="\t", header="a\tb\tprice", comments="")
    model = tmp_path / "m.npz"
    run = fastbp("train", "--data", str(path), "--save", str(model))
    assert run.returncode == 0, run.stderr
    assert "read: delimiter: tab" in run.stdout
    assert reported(run.stdout, "test", "R²") > 0.95
    run = fastbp("predict", "--model", str(model), "--data", str(path))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split()
    assert lines[0] == "prediction"
    predicted = np.array(lines[1:], dtype=float)
    assert np.abs(predicted - y).max() < 100  # in the target's units, not [0, 1]


# -- 5. the command's manners ------------------------------------------------------------------


def test_bare_fastbp_shows_help():
    run = fastbp()
    assert run.returncode == 0
    assert run.stdout.startswith("usage: fastbp") and "train" in run.stdout
    assert_narrow(run.stdout)


def test_option_errors_are_one_line():
    """The --threads and other option errors are checked in-process by test_cli.py."""
    run = fastbp("train", "--epochs", "-5")
    assert run.returncode == 2 and run.stdout == ""
    assert_one_error_line(
        run.stderr, "argument --epochs: must be >= 1, got -5", "(see 'fastbp train --help')"
    )


def _write_npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


def test_a_model_that_is_not_a_model_says_so(tmp_path: Path):
    data = tmp_path / "x.csv"
    data.write_text("1,2\n")
    for name, write in (
        ("text.npz", lambda p: p.write_text("hello\n")),
        ("array.npz", _write_npy),
        ("data.npz", lambda p: np.savez(p, X=np.zeros((2, 2)))),
    ):
        path = tmp_path / name
        write(path)
        run = fastbp("predict", "--model", str(path), "--data", str(data))
        assert run.returncode == 2
        assert_one_error_line(run.stderr, f"{path}: not a fastbp model file")
        assert "allow_pickle" not in run.stderr
