"""Run the benchmark suite for real and write ``bench/results/report.md`` and ``speed.png``.

    python bench/report.py                     # startup + full suite + render (~10 min)
    python bench/report.py --from-json FILE    # only render an earlier run's JSON

Then it runs ``bench/concurrency.py`` (k processes sharing the cores, nested fits, a
fit after NumPy BLAS work; ~3 min) into ``bench/results/concurrency.md``, and
``bench/threads.py`` (small networks on one thread against two; ~50 s) into
``bench/results/threads.md``, unless ``--no-concurrency``.

The suite runs in a subprocess with ``--benchmark-enable`` and without
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (they slow NumPy's OpenBLAS); the raw
pytest-benchmark JSON, with the startup figures added, goes to
``bench/results/benchmarks.json`` (kept in the repository with the report).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
X = "\u00d7"  # multiplication sign

# Column order and headings of the training table.
IMPLS: tuple[tuple[str, str], ...] = (
    ("fastbp", "fastbp"),
    ("fastbp-1-epoch-call", "fastbp, fit(epochs=1)"),
    ("numpy", "NumPy ref."),
    ("gemm-floor", "GEMM floor"),
    ("torch", "PyTorch"),
    ("sklearn", "sklearn"),
)
PEERS: tuple[tuple[str, str], ...] = (
    ("numpy", "NumPy"),
    ("torch", "PyTorch"),
    ("sklearn", "sklearn"),
)
CASE_ORDER = ("tiny", "small", "medium", "wide")
# Per case: fastbp must be >= this many times faster than NumPy, and at most this
# many times the GEMM floor (None: no floor target). Every case must beat PyTorch.
TARGETS: dict[str, tuple[float, float | None]] = {
    "tiny": (50.0, None),
    "small": (5.0, None),
    "medium": (1.25, 1.2),
    "wide": (1.1, 1.1),
}


# -- running ---------------------------------------------------------------------------


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all cores busy over ``seconds`` (from /proc/stat; -1 if unavailable)."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return -1.0
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use under ``limit`` of the CPU."""
    import time

    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        print(f"machine busy ({100 * busy:.0f}% CPU used by others); waiting", flush=True)
        busy = cpu_busy(5.0)
    return busy


def report_env() -> dict[str, str]:
    """The environment of the measured subprocesses: ours without the OpenBLAS overrides.

    OMP_WAIT_POLICY=PASSIVE (unless set): PyTorch's and Numba's OpenMP pools
    otherwise spin after each parallel region and steal a core from whatever
    runs next in the same process (measured: 61 % spread between rounds of
    the medium case after the PyTorch rows; 6 % with PASSIVE).
    """
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_startup(env: dict[str, str], repeat: int) -> dict[str, Any]:
    """bench/startup.py in a subprocess; its JSON."""
    cmd = [sys.executable, str(HERE / "startup.py"), "--repeat", str(repeat)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def run_suite(env: dict[str, str], json_path: Path, args: argparse.Namespace) -> None:
    """The benchmark suite, timed, writing pytest-benchmark's JSON to ``json_path``."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",  # one process: pytest-benchmark times nothing on xdist workers
        "0",
        "--dist",
        "no",
        "--benchmark-enable",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=median,iqr,rounds,iterations",
        "--benchmark-sort=name",
        f"--bench-budget={args.budget}",
        f"--bench-min-rounds={args.min_rounds}",
        f"--bench-wait-quiet={args.wait_quiet}",
    ]
    if args.threads is not None:
        cmd.append(f"--bench-threads={args.threads}")
    if args.k:
        cmd += ["-k", args.k]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        print(f"warning: pytest exited with {proc.returncode}; rendering what was measured")
    if not json_path.exists():
        raise SystemExit("no benchmark JSON was written")


# -- reading -----------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' JSON as one: per benchmark, the run with the least outside load.

    Only runs on the first run's thread count are used. Machine details and startup
    figures come from the first run that has them. On
    a shared machine this lets a partial re-run (``-k``) replace disturbed rows.
    """
    merged = dict(runs[0])
    best: dict[str, dict[str, Any]] = {}
    threads = {b["extra_info"].get("threads") for b in runs[0]["benchmarks"]}
    for run in runs:
        for bench in run["benchmarks"]:
            if bench["extra_info"].get("threads") not in threads:
                print(f"skipping {bench['name']}: measured on other thread counts")
                continue
            load_now = bench["extra_info"].get("other_cpu")
            current = best.get(bench["fullname"])
            if current is None:
                best[bench["fullname"]] = bench
                continue
            load_then = current["extra_info"].get("other_cpu")
            if load_now is not None and (load_then is None or load_now < load_then):
                best[bench["fullname"]] = bench
    merged["benchmarks"] = list(best.values())
    for key in ("fastbp_startup", "fastbp_machine", "fastbp_report_env"):
        merged[key] = next((run[key] for run in runs if run.get(key)), None)
    merged["merged_from"] = sum(run.get("merged_from", 1) for run in runs)
    return merged


def train_times(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """{(case, dtype): {impl: row}} with row["ms"] the median ms per epoch."""
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("kind") != "train":
            continue
        stats = bench["stats"]
        epochs = info["epochs_per_call"]
        table[(info["case"], info["dtype"])][info["impl"]] = {
            "ms": 1e3 * stats["median"] / epochs,
            "iqr_ms": 1e3 * stats["iqr"] / epochs,
            "rounds": stats["rounds"],
            "epochs": epochs,
            "flops": info["flops_per_epoch"],
            "other_cpu": info.get("other_cpu"),
            "info": info,
        }
    return table


def kernel_times(data: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """{(op, case, dtype): {impl: row}} with row["ms"] the median ms per call."""
    table: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("kind") != "kernel":
            continue
        stats = bench["stats"]
        table[(info["op"], info["case"], info["dtype"])][info["impl"]] = {
            "ms": 1e3 * stats["median"],
            "iqr_ms": 1e3 * stats["iqr"],
            "rounds": stats["rounds"],
            "flops": info["flops_per_call"],
            "other_cpu": info.get("other_cpu"),
        }
    return table


def _case_key(case: str) -> int:
    base = case.removesuffix("-smoke")
    return CASE_ORDER.index(base) if base in CASE_ORDER else len(CASE_ORDER)


# -- rendering ---------------------------------------------------------------------------


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 1:
        return f"{ms:.3g}"
    return f"{ms:.2g}" if ms >= 0.01 else f"{ms:.2e}"


def fmt_ratio(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.3g}{X}"


def _ms(rows: dict[str, dict[str, Any]], impl: str) -> float | None:
    row = rows.get(impl)
    return None if row is None else row["ms"]


def target_check(case: str, rows: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The target text and whether it is met, for one case and dtype."""
    base = case.removesuffix("-smoke")
    fast = _ms(rows, "fastbp")
    parts: list[str] = []
    misses: list[str] = []
    unknown: list[str] = []
    if base in TARGETS:
        vs_numpy, vs_floor = TARGETS[base]
        parts.append(f"≥{vs_numpy:g}{X} NumPy")
        np_ms = _ms(rows, "numpy")
        if fast is None or np_ms is None:
            unknown.append("NumPy")
        elif np_ms / fast < vs_numpy:
            misses.append("NumPy")
        if vs_floor is not None:
            parts.append(f"≤{vs_floor:g}{X} floor")
            floor = _ms(rows, "gemm-floor")
            if fast is None or floor is None:
                unknown.append("floor")
            elif fast / floor > vs_floor:
                misses.append("floor")
    parts.append("< PyTorch")
    torch_ms = _ms(rows, "torch")
    if fast is None or torch_ms is None:
        unknown.append("PyTorch")
    elif fast >= torch_ms:
        misses.append("PyTorch")
    if misses:
        met = "**no** (" + ", ".join(misses) + ")"
    elif unknown:
        met = "? (" + ", ".join(unknown) + " not measured)"
    else:
        met = "yes"
    return ", ".join(parts), met


def render_training(data: dict[str, Any]) -> list[str]:
    table = train_times(data)
    keys = sorted(table, key=lambda k: (_case_key(k[0]), k[1]))
    head = ["case", "dtype", "epochs/call"] + [label for _, label in IMPLS]
    head += [f"fastbp vs {label}" for _, label in PEERS]
    head += ["fastbp / floor", "fastbp GFLOP/s", "noise", "other load", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, dtype in keys:
        rows = table[(case, dtype)]
        fast = _ms(rows, "fastbp")
        epochs = rows.get("fastbp", {}).get("epochs", "?")
        others = {row["epochs"] for impl, row in rows.items() if not impl.startswith("fastbp")}
        cells = [case, dtype, f"{epochs} / {'/'.join(str(e) for e in sorted(others)) or '—'}"]
        cells += [fmt_ms(_ms(rows, impl)) for impl, _ in IMPLS]
        for impl, _ in PEERS:
            other = _ms(rows, impl)
            cells.append(fmt_ratio(None if fast is None or other is None else other / fast))
        floor = _ms(rows, "gemm-floor")
        cells.append(fmt_ratio(None if fast is None or floor is None else fast / floor))
        flops = rows.get("fastbp", {}).get("flops")
        cells.append("—" if fast is None or flops is None else f"{flops / fast / 1e6:.3g}")
        noise = max(
            (row["iqr_ms"] / row["ms"] for row in rows.values() if row["ms"] > 0), default=0
        )
        cells.append(f"{100 * noise:.0f}%")
        loads = [row["other_cpu"] for row in rows.values() if row.get("other_cpu") is not None]
        cells.append(f"{100 * max(loads):.0f}%" if loads else "—")
        cells += list(target_check(case, rows))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_kernels(data: dict[str, Any]) -> list[str]:
    table = kernel_times(data)
    if not table:
        return []
    # The kernels in the order of a training step (bench.cases.KERNEL_OPS); others last.
    ops = (
        "dense_forward",
        "dense_backward",
        "dense_backward_sgd",
        "momentum_update",
        "adam_update",
    )
    keys = sorted(
        table, key=lambda k: (_case_key(k[1]), k[2], ops.index(k[0]) if k[0] in ops else len(ops))
    )
    head = ["kernel", "case", "dtype", "fastbp", "NumPy ref.", "GEMM floor", "fastbp vs NumPy"]
    head += ["fastbp / floor", "other load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op, case, dtype in keys:
        rows = table[(op, case, dtype)]
        fast, ref, floor = (_ms(rows, impl) for impl in ("fastbp", "numpy", "gemm-floor"))
        cells = [op, case, dtype, fmt_ms(fast), fmt_ms(ref), fmt_ms(floor)]
        cells.append(fmt_ratio(None if fast is None or ref is None else ref / fast))
        cells.append(fmt_ratio(None if fast is None or floor is None else fast / floor))
        loads = [row["other_cpu"] for row in rows.values() if row.get("other_cpu") is not None]
        cells.append(f"{100 * max(loads):.0f}%" if loads else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_other(data: dict[str, Any]) -> list[str]:
    """Benchmarks outside the training and kernel tables (e.g. other test files' groups)."""
    rows = [b for b in data["benchmarks"] if b["extra_info"].get("kind") not in ("train", "kernel")]
    if not rows:
        return []
    head = ["group", "implementation", "median ms per call", "epochs/call", "ms per epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for bench in sorted(rows, key=lambda b: (b["group"] or "", b["name"])):
        info = bench["extra_info"]
        ms = 1e3 * bench["stats"]["median"]
        epochs = info.get("epochs_per_call")
        per_epoch = fmt_ms(ms / epochs) if epochs else "—"
        impl = info.get("impl", bench["name"])
        group = (bench["group"] or "").replace("|", "\\|")  # a bare | splits the cell
        cells = [group, impl, fmt_ms(ms), str(epochs or "—"), per_epoch]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_startup(startup: dict[str, Any] | None) -> list[str]:
    if not startup:
        return ["Startup not measured (run `python bench/startup.py`)."]
    cold = startup["cold"]["median"]
    warm = startup["warm"]["median"]
    imp = startup["import"]["median"]
    met = "yes" if startup["warm_met"] else "**no**"
    n = startup["repeat"]
    k = startup.get("cold_repeat", 1)
    cold_runs = f" (median of {k}, alternating with (d) and (f))" if k > 1 else ""
    return [
        "| measurement | process wall (s) | `import fastbp` (s) | first `fit` (s) | target "
        "| met? |",
        "|---|---|---|---|---|---|",
        f"| (a) cold: empty cache, import + first fit{cold_runs} | {cold['process_s']:.2f} | "
        f"{cold['import_s']:.2f} | {cold['fit_s']:.2f} | | |",
        f"| (b) warm cache, import + first fit (median of {n}) | {warm['process_s']:.2f} | "
        f"{warm['import_s']:.2f} | {warm['fit_s']:.2f} | "
        f"≤{startup['warm_target_s']:g} s process wall | {met} |",
        f"| (c) `import fastbp` alone (median of {n}) | {imp['process_s']:.2f} | "
        f"{imp['import_s']:.2f} | | | |",
        *_render_estimator_startup(startup, n),
        "",
        f"Tiny case `[2, 4, 1]`, {startup['dtype']}, `fit(epochs=1)`; process wall time includes "
        "the interpreter's own start.",
    ]


def _render_estimator_startup(startup: dict[str, Any], n: int) -> list[str]:
    if "estimator_cold" not in startup:  # a report from before these were measured
        return []
    cold = startup["estimator_cold"]["median"]
    warm = startup["estimator_warm"]["median"]
    k = startup.get("cold_repeat", 1)
    of_k = f" (median of {k})" if k > 1 else ""
    lines = [
        f"| (d) cold: first `MLPClassifier((64,))` fit on digits{of_k} | "
        f"{cold['process_s']:.2f} | {cold['import_s']:.2f} | {cold['fit_s']:.2f} | | |",
        f"| (e) warm: the same (median of {n}) | {warm['process_s']:.2f} | "
        f"{warm['import_s']:.2f} | {warm['fit_s']:.2f} | | |",
    ]
    if "floor_cold" in startup:
        floor = startup["floor_cold"]["median"]
        lines.append(
            f"| (f) cold: a bare three-function Numba trainer, not fastbp "
            f"(`bench/compile_floor.py`; import column: NumPy and Numba){of_k} | "
            f"{floor['process_s']:.2f} | {floor['import_s']:.2f} | {floor['fit_s']:.2f} | | |"
        )
    return lines


def render_machine(data: dict[str, Any]) -> list[str]:
    m = data.get("fastbp_machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    blas = "; ".join(
        f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('prefix')}, "
        f"kernel {lib.get('architecture')}, {lib.get('num_threads')} threads)"
        for lib in m.get("threadpools", [])
    )
    env = data.get("fastbp_report_env", {})
    unset = ", ".join(f"{k}={v}" for k, v in env.get("unset", {}).items()) or "none were set"
    return [
        f"- **CPU**: {m.get('cpu_model', '?')} — {m.get('logical_cores', '?')} logical cores "
        f"({m.get('affinity_cores', '?')} usable); SIMD: {', '.join(m.get('cpu_flags', []))}",
        f"- **Threads**: fastbp {m.get('fastbp_threads', '?')} (Numba layer "
        f"`{m.get('numba_threading_layer')}`); BLAS and PyTorch pinned to the same count "
        f"(default here: {m.get('affinity_cores', '?')})",
        f"- **Versions**: {versions}",
        f"- **Thread pools / BLAS** (threadpoolctl): {blas}",
        f"- **OpenBLAS overrides removed for the run**: {unset}",
        f"- **Run**: {data.get('datetime', '?')}"
        + (f" (merged from {data['merged_from']} runs)" if data.get("merged_from", 1) > 1 else ""),
        f"- **Other load**: {busy_note(env)}",
    ]


def busy_note(env: dict[str, Any]) -> str:
    """How busy the shared machine was around the run, with a warning when it was."""
    before, after = env.get("cpu_busy_before"), env.get("cpu_busy_after")
    if before is None or after is None:
        return "not recorded"
    load = env.get("loadavg_after")
    text = f"CPU {100 * before:.0f}% busy before the run, {100 * after:.0f}% after"
    if load:
        text += f"; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    if max(before, after) > 0.1:
        text += (
            ". **Other processes were running: multi-threaded BLAS and Numba slow down "
            "badly when a core is taken; treat the numbers with care.**"
        )
    return text


def render(data: dict[str, Any]) -> str:
    lines = ["# fastbp speed report", ""]
    lines += ["Generated by `python bench/report.py`; raw numbers in `benchmarks.json`.", ""]
    lines += render_machine(data)
    lines += [
        "",
        "## Training: median ms per epoch",
        "",
        "Lower is better. `fastbp` runs `fit(epochs=N)` per call (N = first number in "
        "*epochs/call*) and is reported per epoch, so `fit`'s fixed per-call cost is "
        "amortised; `fastbp, fit(epochs=1)` is one epoch per `fit` call. The others run the "
        "second number of epochs per call. *GEMM floor*: only the matrix products of "
        "training (forward X@W, backward Aᵀ@dZ and dZ@Wᵀ) through NumPy's BLAS into "
        "preallocated buffers, run from a Python loop: the limit to compare with for "
        "medium and wide; for tiny and small NumPy's per-call cost dominates it. "
        f"*vs X*: X's time / fastbp's time (above 1{X} means fastbp "
        "is faster). sklearn's output layer is the identity, not a sigmoid. "
        "GFLOP/s counts only the GEMM FLOPs. *noise*: the largest interquartile range "
        "of the row's rounds, relative to its median. *other load*: the largest share of the "
        "cores that other processes used while a benchmark of the row ran; above ~10% the "
        "row is suspect (two-thread BLAS and Numba regions stall when a core is taken).",
        "",
    ]
    lines += render_training(data)
    kernels = render_kernels(data)
    if kernels:
        lines += ["", "## Kernels: median ms per call (one batch through every layer)", ""]
        lines += kernels
    other = render_other(data)
    if other:
        lines += ["", "## Other benchmark groups", ""]
        lines += other
    lines += ["", "## Startup", ""]
    lines += render_startup(data.get("fastbp_startup"))
    lines += ["", "## Spread", ""]
    lines += [
        "Largest interquartile range relative to the median, over all benchmarks: "
        + spread_note(data)
        + ". The machine is shared, so single rows can be off by that much.",
        "",
    ]
    return "\n".join(lines)


def spread_note(data: dict[str, Any]) -> str:
    worst = None
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        if stats["median"] > 0:
            rel = stats["iqr"] / stats["median"]
            if worst is None or rel > worst[0]:
                worst = (rel, bench["name"], stats["rounds"])
    if worst is None:
        return "n/a"
    return f"{100 * worst[0]:.0f}% (`{worst[1]}`, {worst[2]} rounds)"


def chart(data: dict[str, Any], path: Path) -> None:
    """Bar chart of ms/epoch per implementation, one group per case and dtype (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = train_times(data)
    keys = sorted(table, key=lambda k: (_case_key(k[0]), k[1]))
    impls = [(impl, label) for impl, label in IMPLS if any(impl in table[k] for k in keys)]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 8), constrained_layout=True)
    width = 0.8 / max(len(impls), 1)
    for i, (impl, label) in enumerate(impls):
        xs, ys = [], []
        for j, key in enumerate(keys):
            ms = _ms(table[key], impl)
            if ms is not None:
                xs.append(j + (i - (len(impls) - 1) / 2) * width)
                ys.append(ms)
        ax.bar(xs, ys, width, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("median ms per epoch (log)")
    ax.set_xticks(range(len(keys)), [f"{c}\n{d}" for c, d in keys])
    ax.set_title("Training time per epoch (lower is better)")
    ax.legend(fontsize=8, ncol=3)
    peers = [(impl, label) for impl, label in (*PEERS, ("gemm-floor", "GEMM floor"))]
    width2 = 0.8 / len(peers)
    for i, (impl, label) in enumerate(peers):
        xs, ys = [], []
        for j, key in enumerate(keys):
            fast, other = _ms(table[key], "fastbp"), _ms(table[key], impl)
            if fast is not None and other is not None:
                xs.append(j + (i - (len(peers) - 1) / 2) * width2)
                ys.append(other / fast)
        ax2.bar(xs, ys, width2, label=f"vs {label}")
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_yscale("log")
    ax2.set_ylabel("other time / fastbp time (log)")
    ax2.set_xticks(range(len(keys)), [f"{c}\n{d}" for c, d in keys])
    ax2.set_title("Speedup of fastbp (above 1: fastbp faster)")
    ax2.legend(fontsize=8, ncol=4)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(data: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.md"
    report.write_text(render(data), encoding="utf-8")
    chart(data, out_dir / "speed.png")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark fastbp and write the speed report.")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="only render earlier runs' JSON (several: per benchmark the least disturbed run)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--budget", type=float, default=1.0, help="timed seconds per benchmark")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument("--startup-repeat", type=int, default=5)
    parser.add_argument("--no-startup", action="store_true", help="skip bench/startup.py")
    parser.add_argument("--threads", type=int, help="threads for everything (default: fastbp's)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for other processes to leave the CPU idle, before the "
        "run and before each benchmark",
    )
    parser.add_argument("-k", help="pytest -k expression, to run part of the suite")
    parser.add_argument(
        "--no-concurrency",
        action="store_true",
        help="skip bench/concurrency.py and bench/threads.py (concurrency.md, threads.md)",
    )
    args = parser.parse_args(argv)

    if args.from_json is not None:
        data = merge([load(path) for path in args.from_json])
    else:
        env = report_env()
        busy_before = wait_quiet(0.1, args.wait_quiet) if args.wait_quiet else cpu_busy()
        json_path = args.out_dir / "benchmarks.json"
        args.out_dir.mkdir(parents=True, exist_ok=True)
        startup = None
        if not args.no_startup:
            print("startup: bench/startup.py", flush=True)
            startup = run_startup(env, args.startup_repeat)
        run_suite(env, json_path, args)
        data = load(json_path)
        data["fastbp_startup"] = startup
        data["fastbp_report_env"] = {
            "unset": {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ},
            "cpu_busy_before": busy_before,
            "cpu_busy_after": cpu_busy(),
            "loadavg_after": os.getloadavg(),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        json_path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    report = write_outputs(data, args.out_dir)
    print(f"wrote {report} and {args.out_dir / 'speed.png'}")
    if args.from_json is None and not args.no_concurrency:
        for script, out in (("concurrency.py", "concurrency.md"), ("threads.py", "threads.md")):
            print(f"{out[:-3]}: bench/{script}", flush=True)
            tables = subprocess.run(
                [sys.executable, str(HERE / script)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            (args.out_dir / out).write_text(tables, encoding="utf-8")
            print(f"wrote {args.out_dir / out}")


if __name__ == "__main__":
    main()
