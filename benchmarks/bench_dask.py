"""Parameter mixing on Dask against single-machine training, on a synthetic sparse set.

Run: ``python benchmarks/bench_dask.py`` (needs ``pip install "sparseopt[dask]"``).
Options: ``--rows``, ``--features``, ``--nnz``, ``--partitions``, ``--epochs``,
``--optimizer``, ``--workers 1,2``, ``--threads`` (in-process workers instead
of worker processes), ``--memory-limit`` (per worker).

The data: binary features whose frequencies follow a Zipf law (exponent
1.1, so a few features are in most rows and most are rare), ``--nnz`` a row
on average, labels from a random linear model with 10% label noise.  Each
worker generates its own partitions from a seed (the driver never holds the
training data); the single-machine run generates the same rows in the
driver process and trains ``LogisticRegression`` with the same optimizer and
epochs.  Printed per setting: seconds to set up (generating and preparing
the partitions, starting workers, loading compiled kernels), seconds per
round (= per epoch) after the first, rounds per second, test accuracy on
held-out rows from the same distribution, and the ratio to the single
machine measured in the same run.

Not a test: timings depend on the machine and on what else runs on it.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp


def make_partition(index, rows, n_features, nnz, seed):
    """Rows of partition ``index`` (CSR of ones) and their labels in {-1, +1}; same on any machine."""
    rng = np.random.default_rng([seed, index])
    w_true = np.random.default_rng([seed, 10**6]).standard_normal(n_features)
    ranks = np.arange(1, n_features + 1, dtype=np.float64)
    p = ranks**-1.1
    p /= p.sum()
    perm = np.random.default_rng([seed, 10**6 + 1]).permutation(n_features)
    counts = rng.poisson(nnz, size=rows).clip(1, None)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    cols = perm[rng.choice(n_features, size=int(indptr[-1]), p=p)]
    X = sp.csr_matrix((np.ones(cols.size), cols, indptr), shape=(rows, n_features))
    X.sum_duplicates()
    X.data[:] = 1.0
    z = X @ w_true / np.sqrt(nnz)
    y = np.where(z > 0, 1.0, -1.0)
    flip = rng.random(rows) < 0.1
    y[flip] = -y[flip]
    return X, y


def _part_X(part):
    return part[0]


def _part_y(part):
    return part[1]


def single_machine(args, sizes, Xt, yt):
    from sparseopt.linear_model import LogisticRegression

    tic = time.perf_counter()
    parts = [make_partition(i, r, args.features, args.nnz, args.seed) for i, r in enumerate(sizes)]
    X = sp.vstack([p[0] for p in parts], format="csr")
    y = np.concatenate([p[1] for p in parts])
    del parts
    setup = time.perf_counter() - tic
    # compile (or load) the kernels outside the timing
    LogisticRegression(optimizer=args.optimizer, max_iter=1, tol=None).fit(X[:100], y[:100])
    est = LogisticRegression(optimizer=args.optimizer, max_iter=1, tol=None, random_state=args.seed)
    times = []
    classes = np.array([-1.0, 1.0])
    for _ in range(args.epochs):
        tic = time.perf_counter()
        est.partial_fit(X, y, classes=classes)
        times.append(time.perf_counter() - tic)
    return {"setting": "single machine", "setup": setup, "per_round": float(np.mean(times[1:] or times)),
            "accuracy": est.score(Xt, yt), "nbytes": X.data.nbytes + X.indices.nbytes + X.indptr.nbytes}


def distributed_run(args, sizes, Xt, yt, n_workers):
    import dask.array as da
    from distributed import Client, LocalCluster

    from sparseopt.dask import fit_distributed
    from sparseopt.linear_model import LogisticRegression

    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=not args.threads,
                               memory_limit=args.memory_limit, dashboard_address=None)
    client = Client(cluster)
    try:
        meta = sp.csr_matrix((0, args.features))
        xs, ys = [], []
        for i, r in enumerate(sizes):
            f = client.submit(make_partition, i, r, args.features, args.nnz, args.seed, pure=False)
            xs.append(da.from_delayed(client.submit(_part_X, f), shape=(r, args.features), dtype=float, meta=meta))
            ys.append(da.from_delayed(client.submit(_part_y, f), shape=(r,), dtype=float, meta=np.empty(0)))
        X = da.concatenate(xs).persist()
        y = da.concatenate(ys).persist()
        times = []
        marks = [time.perf_counter()]

        busy = []

        def on_round(rnd, info):
            marks.append(time.perf_counter())
            times.append(info["seconds"])
            busy.append(sum(info["partition_seconds"]))

        est = LogisticRegression(optimizer=args.optimizer, max_iter=args.epochs, tol=None, random_state=args.seed)
        fit_distributed(est, X, y, client=client, callback=on_round)
        # setup: everything before the first round started (data generation, preparation, kernels)
        setup = (marks[0] - tic) + (marks[1] - marks[0] - times[0])
        return {"setting": f"dask, {n_workers} worker{'s' * (n_workers > 1)}", "setup": setup,
                "per_round": float(np.mean(times[1:] or times)), "accuracy": est.score(Xt, yt),
                "busy": float(np.mean(busy[1:] or busy))}
    finally:
        client.close()
        cluster.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=100_000)
    p.add_argument("--nnz", type=int, default=30, help="mean non-zeros a row")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--optimizer", default="adagrad")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--threads", action="store_true", help="in-process (thread) workers instead of processes")
    p.add_argument("--memory-limit", default="2GiB", help="per worker (default 2GiB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-single", action="store_true", help="skip the single-machine run")
    args = p.parse_args(argv)
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "sparseopt-numba"))

    base, extra = divmod(args.rows, args.partitions)
    sizes = [base + (i < extra) for i in range(args.partitions)]
    Xt, yt = make_partition(10**5, 50_000, args.features, args.nnz, args.seed)
    print(f"synthetic: {args.rows:,} rows x {args.features:,} features, ~{args.nnz} Zipf non-zeros a row, "
          f"{args.partitions} partitions, {args.optimizer}, {args.epochs} epochs (= rounds), "
          f"{os.cpu_count()} CPUs, {'thread' if args.threads else 'process'} workers, "
          f"memory limit {args.memory_limit} each", flush=True)
    results = []
    if not args.no_single:
        results.append(single_machine(args, sizes, Xt, yt))
        print(f"  (training data: {results[0]['nbytes'] / 2**20:.0f} MiB as CSR in one process)", flush=True)
    for k in (int(s) for s in args.workers.split(",")):
        results.append(distributed_run(args, sizes, Xt, yt, k))
    ref = results[0]
    head = (f"{'setting':<18} {'setup s':>8} {'s/round':>8} {'rounds/s':>9} {'vs single':>10} {'test acc':>9} "
            f"{'diff pts':>9} {'train s':>8}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['setting']:<18} {r['setup']:>8.2f} {r['per_round']:>8.3f} {1 / r['per_round']:>9.3f} "
              f"{ref['per_round'] / r['per_round']:>9.2f}x {r['accuracy']:>9.4f} "
              f"{100 * (r['accuracy'] - ref['accuracy']):>+9.2f} {r.get('busy', r['per_round']):>8.2f}")
    print("train s: seconds of training per round summed over the partitions (on their workers); "
          "s/round above it is overhead or waiting for a CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
