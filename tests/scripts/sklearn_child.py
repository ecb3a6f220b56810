"""Estimator workloads the reliability tests run, in-process or as
``python sklearn_child.py MODE ...`` (the scikit-learn twin of ``child.py``).

Each mode prints one JSON line on stdout as its last line.

digest [NAME...]  fit these WORKLOADS entries (default: all), print the SHA-256 of
                  each fitted model
threads N         fit N estimators in N Python threads at once, then one after
                  another; print both sets of digests
interrupt SOLVER  start a long fit, print "fitting", and report when SIGINT lands
memmap ROWS COLS PATH:DTYPE...
                  fit on read-only memmaps of each DTYPE, shuffled and not; report
                  anonymous memory and the traced (NumPy) allocation peak
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import warnings

import numpy as np

N_ROWS = 512

# name: (estimator, n_features, n_targets, params). The shapes reach BLAS (and,
# in reproducible mode, fastbp's threaded products): 256 x 100 x 256 and
# 256 x 784 x 128 multiply-adds per batch exceed PARALLEL_GEMM; 784 inputs is an
# inner dimension OpenBLAS splits unevenly.
_BASE = {
    "clf-adam": ("MLPClassifier", 100, 10, {"solver": "adam", "hidden_layer_sizes": (256, 128)}),
    "reg-sgd-wide": (
        "MLPRegressor",
        784,
        3,
        {"solver": "sgd", "hidden_layer_sizes": (128,), "learning_rate_init": 0.01},
    ),
    "clf-lbfgs": ("MLPClassifier", 64, 3, {"solver": "lbfgs", "hidden_layer_sizes": (128,)}),
    "reg-adam-early": (
        "MLPRegressor",
        100,
        1,
        {"solver": "adam", "hidden_layer_sizes": (256,), "early_stopping": True},
    ),
}
WORKLOADS = {
    f"{name}-{dtype}-{'shuffle' if shuffle else 'ordered'}": (*spec, dtype, shuffle)
    for name, spec in _BASE.items()
    for dtype in ("float32", "float64")
    for shuffle in ((True, False) if spec[3]["solver"] != "lbfgs" else (False,))
}
EPOCHS = 2


def data(name: str, seed: int = 0):
    est, n_in, n_out, _params, dtype, _shuffle = WORKLOADS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_ROWS, n_in)).astype(dtype)
    if est == "MLPClassifier":
        y = rng.integers(0, n_out, N_ROWS)
    else:
        y = rng.standard_normal((N_ROWS, n_out)).astype(dtype)
        y = y[:, 0] if n_out == 1 else y
    return x, y


def make(name: str, seed: int = 11):
    from fastbp import sklearn as fb

    est, _n_in, _n_out, params, _dtype, shuffle = WORKLOADS[name]
    return getattr(fb, est)(
        **params, shuffle=shuffle, batch_size=256, max_iter=EPOCHS, random_state=seed
    )


def digest(est) -> str:
    """SHA-256 of everything a fit leaves: weights, optimizer state, loss curve, counts."""
    h = hashlib.sha256()
    for p in est.coefs_ + est.intercepts_:
        h.update(p.dtype.str.encode())
        h.update(np.ascontiguousarray(p).tobytes())
    opt = getattr(est, "_optimizer", None)
    if opt is not None:
        h.update(opt.state.tobytes())
        h.update(repr((opt.t, float(opt.learning_rate))).encode())
    counts = (est.n_iter_, est.t_, float(est.loss_), getattr(est, "loss_curve_", None))
    stopping = [
        getattr(est, name, None)
        for name in ("best_loss_", "_no_improvement_count", "validation_scores_")
    ]
    h.update(repr((counts, stopping)).encode())
    return h.hexdigest()


def fit_digest(name: str, seed: int = 11) -> str:
    """Fit a workload, return its digest. max_iter is small on purpose: the caller
    filters the ConvergenceWarning (warning filters are process-wide, so not here,
    where threads run this at once)."""
    x, y = data(name)
    est = make(name, seed)
    est.fit(x, y)
    return digest(est)


def mode_digest(names: list[str]) -> dict:
    import fastbp

    return {
        "threads": fastbp.get_num_threads(),
        "digests": {name: fit_digest(name) for name in names or WORKLOADS},
    }


THREAD_NAMES = [
    "clf-adam-float64-shuffle",
    "reg-sgd-wide-float32-ordered",
    "clf-lbfgs-float64-ordered",
    "reg-adam-early-float32-shuffle",
]


def thread_jobs(n: int) -> list[tuple[str, int]]:
    """(workload, seed) of each of n threads: every solver, both dtypes and estimators."""
    return [(THREAD_NAMES[i % len(THREAD_NAMES)], i) for i in range(n)]


def concurrently(jobs: list[tuple[str, int]]) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: fit_digest(*job), jobs))


def mode_threads(n: int) -> dict:
    import numba

    jobs = thread_jobs(n)
    for name in {name for name, _ in jobs}:  # compile outside the race
        fit_digest(name)
    t = time.perf_counter()
    parallel = concurrently(jobs)
    t_concurrent = time.perf_counter() - t
    sequential = [fit_digest(name, seed) for name, seed in jobs]
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region ran
        layer = None
    return {
        "layer": layer,
        "concurrent": parallel,
        "sequential": sequential,
        "t_concurrent": t_concurrent,
    }


def mode_interrupt(solver: str) -> dict:
    """A fit whose epochs take seconds (about 4.5 s each on 2 AVX-512 cores), interrupted
    (by the caller) in the first: ``n_iter`` 0 means mid-epoch."""
    from fastbp import sklearn as fb

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, 100), dtype=np.float32)
    y = rng.integers(0, 10, 200_000)
    params = {"hidden_layer_sizes": (1024, 512), "solver": solver, "random_state": 0}
    fb.MLPClassifier(**params, max_iter=1).fit(x[:512], y[:512])  # compile first
    est = fb.MLPClassifier(**params, max_iter=1000, batch_size=200)
    print("fitting", time.time(), flush=True)
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(x, y)
    returned = time.time()
    return {
        "returned": returned,
        "fit_seconds": returned - t0,
        "warnings": [str(w.message) for w in caught],
        "n_iter": est.n_iter_,
        "finite": bool(all(np.isfinite(p).all() for p in est.coefs_ + est.intercepts_)),
        "predict_finite": bool(np.isfinite(est.predict_proba(x[:10])).all()),
    }


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _measured_fit(est, x, y) -> dict:
    """Fit, sampling /proc/self/status every 5 ms (fit releases the GIL in its kernels)."""
    import tracemalloc

    before = _status()
    peak = dict(before)
    done = threading.Event()

    def sample():
        while not done.wait(0.005):
            now = _status()
            for key in now:
                peak[key] = max(peak[key], now[key])

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    t = time.perf_counter()
    try:
        est.fit(x, y)
    finally:
        seconds = time.perf_counter() - t
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        done.set()
        sampler.join()
    now = _status()
    for key in now:
        peak[key] = max(peak[key], now[key])
    return {
        "before": before,
        "peak": peak,
        "seconds": seconds,
        "traced_peak": traced_peak,
        "loss": float(est.loss_),
        "weights_dtype": str(est.coefs_[0].dtype),
        "finite": bool(all(np.isfinite(p).all() for p in est.coefs_ + est.intercepts_)),
    }


def mode_memmap(rows: int, cols: int, files: list[str]) -> dict:
    from fastbp import sklearn as fb

    results = {}
    for spec in files:
        path, dtype = spec.rsplit(":", 1)
        x = np.memmap(path, dtype=dtype, mode="r", shape=(rows, cols))
        y = np.random.default_rng(0).standard_normal(rows).astype(dtype)
        result = results[dtype] = {}
        for shuffle in (False, True):
            params = {"hidden_layer_sizes": (16,), "solver": "sgd", "batch_size": 1000}
            params.update(shuffle=shuffle, max_iter=1, random_state=0)
            fb.MLPRegressor(**params).fit(x[:4096], y[:4096])  # compile and warm up
            result["shuffle" if shuffle else "ordered"] = _measured_fit(
                fb.MLPRegressor(**params), x, y
            )
        result["data_bytes"] = int(x.nbytes)
        result["y_bytes"] = int(y.nbytes)
        result["writeable"] = bool(x.flags.writeable)
        del x
    return results


def main(argv: list[str]) -> None:
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is small on purpose
    mode = argv[0]
    if mode == "digest":
        result = mode_digest(argv[1:])
    elif mode == "threads":
        result = mode_threads(int(argv[1]))
    elif mode == "interrupt":
        result = mode_interrupt(argv[1])
    elif mode == "memmap":
        result = mode_memmap(int(argv[1]), int(argv[2]), argv[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
