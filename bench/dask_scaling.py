"""The distributed fit (fastbp.dask) on a LocalCluster with one and two workers.

    flock /tmp/fastbp-bench.lock python bench/dask_scaling.py            # ~3 min
    flock /tmp/fastbp-bench.lock python bench/dask_scaling.py --quick    # smoke run

The data ([784, 256, 10] float32, ``--rows`` rows of random pixels and labels) is
generated on the workers and is larger than one worker's ``memory_limit``
(``--limit-mb``): two workers hold half each; one worker holds it all, over its
limit (the workers' spill, pause and terminate thresholds are switched off for
this run, else that worker would stall or be killed). For each cluster it times:

- *exact rounds* (L-BFGS / full batch): every worker's loss and gradient over all
  its rows, summed on the client: rows/s and seconds per round;
- *local SGD rounds*: one epoch in rounds of ``sync_every`` steps of 200 rows;
- the share of a round spent outside the compiled kernels (the round's wall time
  minus the slowest worker's time inside them, over the round's wall time);
- the round's fixed cost on a tiny network and tiny data (latency), and the cost per
  byte of parameters sent and gathered on the wide [1024, 1024, 1024, 10] network
  with tiny data (the client's star: every worker's parameters pass through it);
- a round that builds its kernel buffers anew (``engine.loss_and_gradient``) against
  the kept ones (:class:`fastbp.engine.Gradient` cached in the worker's block).

Figures are medians of ``--repeats`` rounds; the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def _cluster(n_workers: int, limit_mb: int):
    import dask
    from distributed import Client, LocalCluster

    env = {k: v for k, v in os.environ.items() if k.startswith(("FASTBP_", "NUMBA_"))}
    # The one-worker run holds more than its limit on purpose: no spilling, pause or
    # kill (the nanny passes this process's config to its worker).
    dask.config.set({f"distributed.worker.memory.{k}": False for k in
                     ("target", "spill", "pause", "terminate")})  # fmt: skip
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=f"{limit_mb}MB",
        dashboard_address=":0",
        env=env,
    )
    return cluster, Client(cluster)


def _fit_cluster(client, sizes, rows, chunks, seed=0):
    """A fastbp.dask _Cluster (the estimators' blocks) on generated data."""
    import dask.array as da
    from sklearn.preprocessing import LabelBinarizer

    from fastbp import dask as fd
    from fastbp import engine, kernels

    rs = da.random.RandomState(seed)
    X = rs.random_sample((rows, sizes[0]), chunks=(chunks, sizes[0])).astype(np.float32)
    y = rs.randint(0, sizes[-1], size=rows, chunks=chunks)
    binarizer = LabelBinarizer().fit(np.arange(sizes[-1]))
    acts = [kernels.ACTIVATIONS["relu"].code] * (len(sizes) - 1)
    acts[-1] = kernels.ACTIVATIONS["identity"].code
    layout = engine.Layout(sizes, acts, kernels.LOSSES["log_loss"].code, packing="packed")
    opt = engine.Adam(layout.n_params, np.float32, 1e-3)
    spec = fd._Spec(
        dtype=np.dtype(np.float32), layout=layout, binarizer=binarizer, early_stopping=False,
        scorer=None, rng=np.random.RandomState(seed).get_state(), compose=True, shuffle=True,
        batch=200, alpha=1e-4, optimizer=fd._stateless(opt), n_threads=None,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    params = (rng.standard_normal(layout.n_params) * 0.05).astype(np.float32)
    return fd._Cluster(client, [X, y, None], spec), layout, params, opt


def _kernel_seconds(cluster) -> list[float]:
    return cluster.client.gather(
        [cluster.client.submit(lambda b: b.kernel_seconds, b, pure=False) for b in cluster.blocks]
    )


def _rounds(cluster, params, repeats):
    """(median wall seconds per exact round, median share outside the kernels)."""
    walls, shares = [], []
    cluster.loss_grad(params.astype(np.float64), 1e-4)  # warm: compiled, buffers made
    for _ in range(repeats):
        before = _kernel_seconds(cluster)
        t = time.perf_counter()
        cluster.loss_grad(params.astype(np.float64), 1e-4)
        wall = time.perf_counter() - t
        inside = max(a - b for a, b in zip(_kernel_seconds(cluster), before, strict=True))
        walls.append(wall)
        shares.append(1 - inside / wall)
    return statistics.median(walls), statistics.median(shares)


def _rebuilt_round(cluster, layout, params, repeats):
    """Median seconds of a round that makes its buffers anew on every worker."""
    from fastbp import engine

    def fresh(block, p):
        return engine.loss_and_gradient(layout, p.astype(np.float32), block.x, block.y)

    client = cluster.client
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        p = cluster._params(params.astype(np.float64))  # as the kept round sends them
        results = client.gather([client.submit(fresh, b, p, pure=False) for b in cluster.blocks])
        sum(g.astype(np.float64) for _, g in results)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def run(args) -> dict:
    from fastbp import dask as fd

    results = {"load": os.getloadavg(), "rows": args.rows, "limit_mb": args.limit_mb}
    data_mb = args.rows * 784 * 4 / 1e6
    print(f"data: {args.rows} rows x 784 float32 = {data_mb:.0f} MB; worker limit "
          f"{args.limit_mb} MB; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    for n_workers in (1, 2):
        cluster_, client = _cluster(n_workers, args.limit_mb)
        try:
            out = {}
            t = time.perf_counter()
            fit, layout, params, opt = _fit_cluster(
                client, [784, 256, 10], args.rows, args.rows // 8
            )
            out["setup_s"] = time.perf_counter() - t
            wall, share = _rounds(fit, params, args.repeats)
            out["exact_round_s"], out["exact_outside_share"] = wall, share
            out["exact_rows_per_s"] = args.rows / wall
            out["rebuilt_round_s"] = _rebuilt_round(fit, layout, params, args.repeats)
            sync_every = 50
            p = params.copy()
            warm = [client.submit(fd._steps, b, p, opt.get_state(), 0, 0, 1, 0.0, pure=False)
                    for b in fit.blocks]  # fmt: skip
            client.gather(warm)  # compiled, buffers made
            before = sum(_kernel_seconds(fit))
            t = time.perf_counter()
            fit.epoch(p, opt, 1, sync_every, 200)
            epoch_s = time.perf_counter() - t
            per_worker_steps = -(-(args.rows // n_workers) // 200)
            n_rounds = -(-per_worker_steps // sync_every)
            inside = (sum(_kernel_seconds(fit)) - before) / n_workers
            out["sgd_epoch_s"] = epoch_s
            out["sgd_round_s"] = epoch_s / n_rounds
            out["sgd_rows_per_s"] = args.rows / epoch_s
            out["sgd_outside_share"] = 1 - inside / epoch_s
            fit.close()
            # Fixed cost of a round: tiny network, tiny data.
            tiny, _, tparams, _ = _fit_cluster(client, [8, 4, 2], 64 * n_workers, 64)
            out["latency_s"], _ = _rounds(tiny, tparams, args.repeats * 3)
            tiny.close()
            # Cost per byte: the wide network on tiny data.
            wide, wlayout, wparams, _ = _fit_cluster(
                client, [1024, 1024, 1024, 10], 64 * n_workers, 64
            )
            wall, share = _rounds(wide, wparams, args.repeats)
            # Sent: float64 parameters to each worker; gathered: float32 gradients.
            moved = n_workers * wlayout.n_params * (8 + 4)
            out["wide_round_s"] = wall
            out["wide_outside_share"] = share
            out["bytes_per_s"] = moved / max(wall * share - out["latency_s"], 1e-9)
            wide.close()
        finally:
            client.close()
            cluster_.close()
        results[n_workers] = out
        print(f"{n_workers} worker(s): " + ", ".join(f"{k} {v:.4g}" for k, v in out.items()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--limit-mb", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="8000 rows, 2 repeats")
    parser.add_argument("--json", metavar="FILE", help="also save the figures")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats, args.limit_mb = 8000, 2, 20
    os.environ.setdefault("FASTBP_LOAD_AWARE", "0")
    results = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)


if __name__ == "__main__":
    main()
