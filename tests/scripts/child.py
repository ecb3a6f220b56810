"""Workloads the reliability tests run, in-process or as ``python child.py MODE ...``.

Each mode prints one JSON line on stdout as its last line.

digest            train every WORKLOADS entry, print the SHA-256 of each result
threads N         train N models in N Python threads at once, then one after
                  another; print both sets of digests
coldstart         time ``import fastbp`` and a first small fit (for the cache tests)
interrupt         start a long fit, print "fitting", and report when SIGINT lands
memmap PATH ROWS COLS SHUFFLE
                  train on a read-only float32 memmap; report anonymous memory
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402

# Shapes big enough for the parallel paths: every layer output of a batch has at
# least 256 x 128 = 32768 >= PARALLEL_MIN elements, and the products exceed
# PARALLEL_GEMM. 784 inputs is an inner dimension BLAS splits unevenly (> 384,
# not a multiple of 32), where OpenBLAS's own threading is not reproducible.
WORKLOADS = {
    f"{name}-{dtype}-{'shuffle' if shuffle else 'ordered'}": (sizes, dtype, batch, shuffle)
    for name, sizes, batch in (
        ("mlp", [100, 256, 128, 10], 256),
        ("wide-input", [784, 128, 10], 256),
        ("full-batch", [64, 128, 16], None),
    )
    for dtype in ("float32", "float64")
    for shuffle in (False, True)
}
N_ROWS = 1024


def data(n_in: int, n_out: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_ROWS, n_in))
    y = rng.random((N_ROWS, n_out))
    return x, y


def digest(net) -> str:
    h = hashlib.sha256()
    for p in net.weights + net.biases:
        h.update(p.dtype.str.encode())
        h.update(np.ascontiguousarray(p).tobytes())
    h.update(net._rng.bit_generator.state["state"]["state"].to_bytes(16, "little"))
    return h.hexdigest()


def train(name: str, epochs: int = 2, seed: int = 11):
    import fastbp

    sizes, dtype, batch, shuffle = WORKLOADS[name]
    x, y = data(sizes[0], sizes[-1])
    net = fastbp.Network(sizes, dtype=dtype, seed=seed)
    history = net.fit(x, y, epochs=epochs, lr=0.3, batch_size=batch, shuffle=shuffle)
    return net, history


def train_digest(name: str, epochs: int = 2, seed: int = 11) -> str:
    net, history = train(name, epochs, seed)
    return digest(net) + ":" + hashlib.sha256(history.loss.tobytes()).hexdigest()[:16]


def mode_digest() -> dict:
    import numba

    import fastbp

    digests = {name: train_digest(name) for name in WORKLOADS}
    return {
        "threads": fastbp.get_num_threads(),
        "layer": numba.threading_layer() if _ran_parallel() else None,
        "digests": digests,
    }


def _ran_parallel() -> bool:
    try:
        import numba

        numba.threading_layer()
    except ValueError:
        return False
    return True


THREAD_NAMES = [
    "mlp-float64-shuffle",
    "wide-input-float32-ordered",
    "mlp-float32-ordered",
    "wide-input-float64-shuffle",
]


def thread_jobs(n: int) -> list[tuple[str, int]]:
    """(workload, seed) of each of n threads: a mix of dtypes, shapes and shuffling."""
    return [(THREAD_NAMES[i % len(THREAD_NAMES)], i) for i in range(n)]


def mode_threads(n: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import numba

    jobs = thread_jobs(n)
    # Warm up (compile) first, so the concurrent part is about running.
    for name in {name for name, _ in jobs}:
        train_digest(name, epochs=1)
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        concurrent = list(pool.map(lambda job: train_digest(job[0], seed=job[1]), jobs))
    t_concurrent = time.perf_counter() - t
    t = time.perf_counter()
    sequential = [train_digest(name, seed=seed) for name, seed in jobs]
    t_sequential = time.perf_counter() - t
    return {
        "layer": numba.threading_layer(),
        "concurrent": concurrent,
        "sequential": sequential,
        "t_concurrent": t_concurrent,
        "t_sequential": t_sequential,
    }


def mode_coldstart() -> dict:
    t0 = time.perf_counter()
    import fastbp

    t_import = time.perf_counter() - t0
    x, y = data(64, 16)
    net = fastbp.Network([64, 128, 16], seed=3)
    t1 = time.perf_counter()
    net.fit(x[:256], y[:256], epochs=2, lr=0.5)
    t_fit = time.perf_counter() - t1
    return {
        "t_import": t_import,
        "t_fit": t_fit,
        "t_total": time.perf_counter() - T_START,
        "digest": digest(net),
        "threads": fastbp.get_num_threads(),
    }


def mode_interrupt() -> dict:
    import fastbp

    x, y = data(100, 10)
    net = fastbp.Network([100, 256, 128, 10], seed=1)
    net.fit(x, y, epochs=1, lr=0.1, batch_size=64)  # compile first
    print("fitting", time.time(), flush=True)
    t0 = time.time()
    try:
        net.fit(x, y, epochs=1_000_000, lr=0.1, batch_size=64)
    except KeyboardInterrupt:
        caught = time.time()
    else:
        return {"error": "fit finished without an interrupt"}
    return {
        "caught": caught,
        "fit_seconds": caught - t0,
        "finite": bool(all(np.isfinite(p).all() for p in net.weights + net.biases)),
        "predict_finite": bool(np.isfinite(net.predict(x[:10])).all()),
    }


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


def mode_memmap(path: str, rows: int, cols: int, shuffle: bool) -> dict:
    import fastbp

    x = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, cols))
    rng = np.random.default_rng(0)
    y = rng.random((rows, 1), dtype=np.float32)
    net = fastbp.Network([cols, 16, 1], dtype=np.float32, seed=0)
    # Compile and warm up on a small slice (its own small buffers), then measure.
    net.fit(x[:4096], y[:4096], epochs=1, lr=0.1, batch_size=1024, shuffle=shuffle)
    import threading

    before = _status()
    peak = dict(before)
    done = threading.Event()

    def sample():  # fit releases the GIL in its compiled chunks
        while not done.wait(0.005):
            now = _status()
            for key in now:
                peak[key] = max(peak[key], now[key])

    sampler = threading.Thread(target=sample)
    sampler.start()
    t = time.perf_counter()
    try:
        history = net.fit(x, y, epochs=1, lr=0.1, batch_size=1024, shuffle=shuffle)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - t
    after = _status()
    return {
        "before": before,
        "peak": peak,
        "after": after,
        "seconds": seconds,
        "loss": float(history.loss[-1]),
        "finite": bool(all(np.isfinite(p).all() for p in net.weights + net.biases)),
        "y_bytes": int(y.nbytes),
    }


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "digest":
        result = mode_digest()
    elif mode == "threads":
        result = mode_threads(int(argv[1]))
    elif mode == "coldstart":
        result = mode_coldstart()
    elif mode == "interrupt":
        result = mode_interrupt()
    elif mode == "memmap":
        result = mode_memmap(argv[1], int(argv[2]), int(argv[3]), argv[4] == "1")
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
