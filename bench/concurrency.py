"""Shared cores: k fastbp processes training at once, nested fits, a fit after NumPy BLAS.

    python bench/concurrency.py              # every case, k = 1, 2, 3 (~3 min)
    python bench/concurrency.py --quick      # smoke run: one small case, k = 1, 2 (~10 s)
    python bench/concurrency.py --case deep --k 2 --env OPENBLAS_THREAD_TIMEOUT=4

Each process builds its network and data, warms up (compiles, fills the caches),
reports that it is ready, and waits; when all k are ready they start together and
each times blocks of epochs for the same wall time (``--seconds``), so they overlap
from start to end. A process's figure is the median of its blocks, in ms per epoch.

For k processes on c cores (issue #10), each process's epoch time should be at most
``k x`` its time alone (*taking turns*: sharing never loses to running one after
another) and the mean at most ``1.2 x (one-thread time alone) x k / c`` (*ideal*).
The nested cases (``GridSearchCV(n_jobs=2)``, ``joblib.Parallel(n_jobs=2)``, a Dask
``LocalCluster`` of two one-thread workers) time the whole job, against the same job
with ``n_jobs=1`` (taking turns) and ``1.2 x`` the ``n_jobs=1`` one-thread time ``/ c``
(ideal); for joblib and Dask also the same job with each fit replaced by a task that
returns at once but carries the same data (*dispatch alone*: what the scheduler costs
whatever the fit). *After matmul* times a digits ``MLPClassifier`` fit right after a
300 x 300 NumPy matmul, against the same fit alone (target within 1.1x); also the fit
``--late`` seconds after a matmul, the same fits on one thread, and the CPU that
NumPy's BLAS threads use in the ``--late`` seconds after a matmul (they spin before
they sleep).

The report prints markdown tables; ``--json FILE`` also saves the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # they slow NumPy's OpenBLAS
X = "\u00d7"  # multiplication sign

# name: (layer sizes, samples, batch (None: full), learning rate)
CASES: dict[str, tuple[tuple[int, ...], int, int | None, float]] = {
    "tiny": ((2, 4, 1), 4, None, 0.5),
    "small": ((64, 32, 10), 1797, 32, 0.1),
    "medium": ((784, 256, 10), 10000, 128, 0.1),
    "deep": ((64, 512, 256, 10), 1797, 32, 0.1),
}
LABELS = {
    "tiny": "tiny [2, 4, 1], full batch",
    "small": "small [64, 32, 10], b32",
    "medium": "medium [784, 256, 10], b128",
    "deep": "[64, 512, 256, 10], b32",
}


# -- the worker (one process) --------------------------------------------------------


def _network_job(spec: dict[str, Any]):
    """A zero-argument callable training ``epochs`` epochs of the case, and its epochs."""
    import numpy as np

    import fastbp

    sizes, samples, batch, lr = CASES[spec["case"]]
    rng = np.random.default_rng(0)
    x = rng.random((samples, sizes[0])).astype(np.float32)
    y = rng.random((samples, sizes[-1])).astype(np.float32)
    net = fastbp.Network(list(sizes), dtype=np.float32, seed=0)

    def run(epochs: int) -> None:
        net.fit(x, y, epochs=epochs, lr=lr, batch_size=batch)

    return run


def _calibrate(run, block_seconds: float) -> int:
    """Epochs per block so that one block takes about ``block_seconds``."""
    epochs = 1
    while True:
        t0 = time.perf_counter()
        run(epochs)
        took = time.perf_counter() - t0
        if took >= block_seconds / 4 or epochs >= 1 << 20:
            return max(1, round(epochs * block_seconds / max(took, 1e-9)))
        epochs *= 4


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a child: warm up, say ready, wait for "go", time blocks until the deadline."""
    import fastbp

    if spec.get("threads"):
        fastbp.set_num_threads(spec["threads"])
    run = _network_job(spec)
    run(1)  # compile / load the cache
    epochs = _calibrate(run, spec["block"])
    print("ready", flush=True)
    sys.stdin.readline()
    ms = _time_blocks(run, epochs, spec["seconds"])
    info = fastbp.thread_info()
    result = {
        "ms": ms,
        "epochs_per_block": epochs,
        "threads": info.threads,
        "reason": info.reason,
    }
    if spec.get("also_one_thread"):  # alone: the one-thread reference, same process
        fastbp.set_num_threads(1)
        result["one_thread_ms"] = _time_blocks(run, epochs, spec["seconds"])
    return result


def _time_blocks(run, epochs: int, seconds: float) -> float:
    """Median ms per epoch of blocks of ``epochs`` run for ``seconds`` (at least 3)."""
    deadline = time.perf_counter() + seconds
    per_epoch = []
    while time.perf_counter() < deadline or len(per_epoch) < 3:
        t0 = time.perf_counter()
        run(epochs)
        per_epoch.append((time.perf_counter() - t0) / epochs * 1e3)
    return statistics.median(per_epoch)


# -- the parent ----------------------------------------------------------------------


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_together(spec: dict[str, Any], k: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """Start k workers, wait until all are warm, start them at once; their results."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(env),
        )
        for _ in range(k)
    ]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"worker failed before starting: {line!r}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            if p.returncode:
                raise RuntimeError(f"worker exited with status {p.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def fmt(ms: float) -> str:
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def network_table(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], list]:
    c = cores()
    lines = [
        f"Processes training at once on {c} cores, ms per epoch (float32; each process "
        f"the median of its own blocks over {args.seconds:g} s; *worst* is the slowest "
        "process):",
        "",
        f"| case | k | fastbp threads | each process (median, worst) | taking turns (k {X} alone) "
        f"| ideal (1.2 {X} 1-thread {X} k ÷ c) | ≤ turns | mean ≤ ideal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    raw = []
    for case in args.case:
        base = {"case": case, "seconds": args.seconds, "block": args.block}
        alone = one = None
        for k in args.k:  # k = 1 first
            res = run_together({**base, "also_one_thread": k == 1}, k, env)
            ms = [r["ms"] for r in res]
            if k == 1:
                alone, one = ms[0], res[0]["one_thread_ms"]
            turns = k * alone
            ideal = 1.2 * one * k / c
            mean = statistics.fmean(ms)
            verdicts = (
                ("yes" if max(ms) <= turns else "no", "yes" if mean <= ideal else "no")
                if k > 1
                else ("—", "—")
            )
            lines.append(
                f"| {LABELS[case]} | {k} | {res[0]['threads']} "
                f"| {fmt(statistics.median(ms))}, {fmt(max(ms))} | {fmt(turns)} "
                f"| {fmt(ideal) if k > 1 else f'(1 thread: {fmt(one)})'} "
                f"| {verdicts[0]} | {verdicts[1]} |"
            )
            raw.append({"case": case, "k": k, "ms": ms, "one_thread_alone": one, "runs": res})
            print(lines[-1], file=sys.stderr, flush=True)
    return lines, raw


# -- nested: many fits in one job ------------------------------------------------------


NESTED_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
from sklearn.datasets import load_digits
import fastbp

spec = json.loads(sys.argv[1])
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
fits, iters = spec["fits"], spec["iters"]


def make(seed):
    return fastbp.MLPClassifier(hidden_layer_sizes=(64,), max_iter=iters, random_state=seed,
                                n_iter_no_change=iters + 1)


def no_fit(seed):
    # the same data shipped as one_fit's (X and y are its globals), no training
    return float(X[seed, 0]) + float(y[seed])


def one_fit(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make(seed).fit(X, y).coefs_[0].sum()


def job(n_jobs):
    if spec["kind"] == "grid":
        from sklearn.model_selection import GridSearchCV
        grid = {"random_state": list(range(fits))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GridSearchCV(make(0), grid, cv=2, n_jobs=n_jobs).fit(X, y)
    elif spec["kind"] == "dask":
        client = dask_client(n_jobs)
        client.gather(client.map(task, range(fits), pure=False))
    else:
        from joblib import Parallel, delayed
        Parallel(n_jobs=n_jobs)(delayed(task)(s) for s in range(fits))


task = no_fit if spec.get("no_fit") else one_fit


clients = {}


def dask_client(n_workers):
    # one LocalCluster per worker count, started once (outside the timing)
    if n_workers not in clients:
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        clients[n_workers] = Client(cluster)
    return clients[n_workers]


out = []
for run in spec["runs"]:  # [n_jobs, threads or None]
    fastbp.set_num_threads(run[1])  # the parent's fits only; workers have their budget
    job(run[0])  # warm up: compile, start the worker processes (loky reuses them)
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        job(run[0])
        times.append(time.perf_counter() - t0)
    out.append(sorted(times)[len(times) // 2])
for client in clients.values():
    client.cluster.close()
    client.close()
print(json.dumps(out))
"""


def nested(spec: dict[str, Any], env: dict[str, str]) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", NESTED_SCRIPT, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=child_env(env),
        timeout=600,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def nested_table(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], list]:
    c = cores()
    lines = [
        f"Nested fits (digits, `MLPClassifier(hidden_layer_sizes=(64,), max_iter={args.iters})`, "
        f"{args.fits} fits per job), seconds per job (median of {args.repeats}):",
        "",
        f"| job | n_jobs=2 | taking turns (n_jobs=1) | ideal (1.2 {X} 1-thread n_jobs=1 ÷ c) "
        "| ≤ turns | ≤ ideal | dispatch alone (n_jobs=2, tasks that do not fit) |",
        "|---|---|---|---|---|---|---|",
    ]
    raw = []
    names = {
        "grid": "GridSearchCV(cv=2, n_jobs=2)",
        "parallel": "joblib.Parallel(n_jobs=2)",
        "dask": "Dask LocalCluster(n_workers=2, threads_per_worker=1)",
    }
    for kind in args.nested:
        spec = {"kind": kind, "fits": args.fits, "iters": args.iters, "repeats": args.repeats}
        runs = [[2, None], [1, None]] + ([] if args.quick else [[1, 1]])
        two, turns, *one = nested({**spec, "runs": runs}, env)
        ideal = 1.2 * one[0] / c if one else None
        dispatch = None
        if kind != "grid":  # (GridSearchCV's tasks are its estimator's fits)
            (dispatch,) = nested({**spec, "no_fit": True, "runs": [[2, None]]}, env)
        lines.append(
            f"| {names[kind]} | {two:.3g} | {turns:.3g} "
            f"| {'—' if ideal is None else f'{ideal:.3g}'} "
            f"| {'yes' if two <= turns else 'no'} "
            f"| {'—' if ideal is None else ('yes' if two <= ideal else 'no')} "
            f"| {'—' if dispatch is None else f'{dispatch:.3g}'} |"
        )
        raw.append(
            {"kind": kind, "n_jobs_2": two, "n_jobs_1": turns, "one_thread": one,
             "dispatch_alone": dispatch}
        )  # fmt: skip
        print(lines[-1], file=sys.stderr, flush=True)
    return lines, raw


# -- a fit right after NumPy's BLAS --------------------------------------------------


AFTER_SCRIPT = r"""
import json, os, sys, threading, time, warnings
import numpy as np
from sklearn.datasets import load_digits
import fastbp

spec = json.loads(sys.argv[1])
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
a = np.random.default_rng(0).random((300, 300))


def fit():
    model = fastbp.MLPClassifier(hidden_layer_sizes=(64,), max_iter=spec["iters"],
                                 random_state=0, n_iter_no_change=spec["iters"] + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - t0


def sk_fit():
    from sklearn.neural_network import MLPClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=0).fit(X, y)


def others_cpu():
    # CPU time (s) of this process's threads but the calling one (/proc schedstat, ns)
    me, total = str(threading.get_native_id()), 0
    for tid in os.listdir("/proc/self/task"):
        if tid != me:
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                return None
    return total * 1e-9


fit(); a @ a; sk_fit()  # warm up
runs = {k: [] for k in ("alone", "after", "late", "after_sklearn", "alone_1", "after_1", "spin")}
for _ in range(spec["repeats"]):
    fastbp.set_num_threads(None)
    time.sleep(spec["pause"])  # let every pool go to sleep
    runs["alone"].append(fit())
    time.sleep(spec["pause"])
    a @ a
    runs["after"].append(fit())
    time.sleep(spec["pause"])
    a @ a
    time.sleep(spec["late"])
    runs["late"].append(fit())
    time.sleep(spec["pause"])
    sk_fit()
    runs["after_sklearn"].append(fit())
    fastbp.set_num_threads(1)
    time.sleep(spec["pause"])
    runs["alone_1"].append(fit())
    time.sleep(spec["pause"])
    a @ a
    runs["after_1"].append(fit())
    # NumPy's BLAS threads after a product, while this thread sleeps
    time.sleep(spec["pause"])
    before = others_cpu()
    a @ a
    time.sleep(spec["late"])
    after = others_cpu()
    runs["spin"].append(None if before is None or after is None else after - before)
fastbp.set_num_threads(None)
med = lambda v: None if None in v else sorted(v)[len(v) // 2] * 1e3
print(json.dumps({k: med(v) for k, v in runs.items()}))
"""


def after_table(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], dict]:
    spec = {"iters": args.iters, "repeats": args.repeats, "pause": args.pause, "late": args.late}
    out = subprocess.run(
        [sys.executable, "-c", AFTER_SCRIPT, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=child_env(env),
        timeout=600,
        check=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    alone, alone_1 = r["alone"], r["alone_1"]
    matmul = f"a 300{X}300 NumPy matmul"
    lines = [
        f"One process: digits `MLPClassifier(hidden_layer_sizes=(64,), max_iter={args.iters})` "
        "fit, ms (median):",
        "",
        "| fit | ms | vs alone |",
        "|---|---|---|",
        f"| alone ({args.pause:g} s after any other work) | {alone:.3g} | 1.00{X} |",
        f"| right after {matmul} | {r['after']:.3g} | {r['after'] / alone:.2f}{X} |",
        f"| {args.late:g} s after {matmul} | {r['late']:.3g} | {r['late'] / alone:.2f}{X} |",
        f"| right after a scikit-learn MLPClassifier fit | {r['after_sklearn']:.3g} "
        f"| {r['after_sklearn'] / alone:.2f}{X} |",
        f"| one thread, alone | {alone_1:.3g} | {alone_1 / alone:.2f}{X} |",
        f"| one thread, right after {matmul} | {r['after_1']:.3g} "
        f"| {r['after_1'] / alone:.2f}{X} ({r['after_1'] / alone_1:.2f}{X} one thread alone) |",
    ]
    if r["spin"] is not None:
        lines += [
            "",
            f"NumPy's BLAS threads used {r['spin']:.3g} ms of CPU in the {args.late:g} s after "
            f"starting {matmul}, while the calling thread slept (median; the product itself "
            "takes about a millisecond): its idle workers spin before they sleep.",
        ]
    print("\n".join(lines[4:]), file=sys.stderr, flush=True)
    return lines, r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: small case, k = 1, 2")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="(repeatable)")
    parser.add_argument("--k", type=int, action="append", help="processes at once (repeatable)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per process")
    parser.add_argument("--block", type=float, default=0.1, help="seconds per timed block")
    parser.add_argument(
        "--nested", action="append", choices=["grid", "parallel", "dask"], help="(repeatable)"
    )
    parser.add_argument("--fits", type=int, default=4, help="fits per nested job")
    parser.add_argument("--iters", type=int, default=30, help="max_iter of the nested fits")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (nested, after)")
    parser.add_argument("--pause", type=float, default=0.5, help="idle seconds before a fit")
    parser.add_argument(
        "--late", type=float, default=0.3, help="seconds after a matmul for the late fit"
    )
    parser.add_argument(
        "--parts",
        default="network,nested,after",
        help="comma-separated subset of network,nested,after (default: all)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="for every child"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.quick:
        args.case = args.case or ["small"]
        args.k = args.k or [1, 2]
        args.seconds, args.block = min(args.seconds, 0.3), min(args.block, 0.03)
        args.nested = args.nested or ["parallel"]
        args.fits, args.iters, args.repeats, args.pause, args.late = 2, 2, 1, 0.05, 0.05
    args.case = args.case or list(CASES)
    args.k = sorted(set(args.k or [1, 2, 3]) | {1})
    args.nested = args.nested or ["grid", "parallel", "dask"]
    env = dict(item.split("=", 1) for item in args.env)

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = " ".join(["python", "bench/concurrency.py", *(argv or sys.argv[1:])])
    out = [f"`{command}` ({stamp}; {machine.describe()})", ""]
    parts = set(args.parts.split(","))
    raw_net = raw_nested = raw_after = None
    if "network" in parts:
        lines, raw_net = network_table(args, env)
        out += [*lines, ""]
    if "nested" in parts:
        lines, raw_nested = nested_table(args, env)
        out += [*lines, ""]
    if "after" in parts:
        lines, raw_after = after_table(args, env)
        out += lines
    print("\n".join(out))
    if args.json:
        args.json.write_text(
            json.dumps({"network": raw_net, "nested": raw_nested, "after": raw_after}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
