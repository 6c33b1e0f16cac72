"""Speed of sparseopt against its peers, measured in the same run.

Prints medians and ratios (peer time / sparseopt time, so > 1 means
sparseopt is faster), which hold on a noisy machine better than absolute
times.  Peers: a Numba STREAM triad (the memory-bandwidth ceiling),
``torch.optim`` (CPU; ``foreach`` and ``fused``), ``torch.optim.SparseAdam``
and sparse-gradient ``Adagrad``; scikit-learn's ``SGDClassifier`` for the
estimators.  PyTorch is optional (``pip install 'sparseopt[bench]'``).

Usage::

    python benchmarks/bench_optim.py                  # everything
    python benchmarks/bench_optim.py dense sparse     # some sections
    python benchmarks/bench_optim.py --quick          # fewer repeats, smaller sizes
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "asv_bench"))

from benchmarks import _common as C  # noqa: E402


def _fmt_ratio(x):
    return "   n/a" if x is None else f"{x:6.2f}"


def dense(args):
    n = 1_000_000 if args.quick else 10_000_000
    dtype = np.float32
    rep = 5 if args.quick else 21
    triad = C.triad_bandwidth(n, dtype, repeat=rep)
    try:
        C.require_torch()
        have_torch = True
    except NotImplementedError:
        have_torch = False
    print(f"\n== dense step, {n:,} float32 parameters (medians of {rep}) ==")
    print(f"STREAM triad (best of 1 and all threads): {triad / 1e9:.1f} GB/s")
    print(
        f"{'optimizer':9} {'1 thread':>8} {'all':>7} {'auto':>7} {'GB/s':>5} {'%triad':>6}"
        f" {'x fused':>8} {'x fused':>8} {'x foreach':>9} {'x foreach':>9}"
    )
    print(f"{'':9} {'ms':>8} {'ms':>7} {'ms':>7} {'best':>5} {'best':>6} {'1 thread':>8} {'all':>8} {'1 thread':>9} {'all':>9}")
    for name in C.OPTIMIZERS:
        W, g = C.dense_data(n, dtype)
        opt = C.sparseopt_optimizer(name, W)
        step = lambda: opt.step(g)  # noqa: E731
        times = {}
        for mode in (False, True, None):
            restore = C.set_parallel(mode)
            try:
                times[mode] = C.median_time(step, rep)
            finally:
                restore()
        best = min(times[False], times[True])
        bw = C.DENSE_ARRAYS_MOVED[name] * W.nbytes / best
        ratios = {}
        for impl in ("fused", "foreach"):
            for parallel in (False, True):
                try:
                    if not have_torch:
                        raise NotImplementedError
                    peer = C.torch_dense_step(name, W, g, impl)
                except NotImplementedError:
                    ratios[impl, parallel] = None
                    continue
                restore = C.set_parallel(parallel)
                try:
                    with C.torch_threads(None if parallel else 1):
                        ratios[impl, parallel] = C.paired_ratio(step, peer, rep)
                finally:
                    restore()
        print(
            f"{name:9} {times[False] * 1e3:8.2f} {times[True] * 1e3:7.2f} {times[None] * 1e3:7.2f}"
            f" {bw / 1e9:5.1f} {100 * bw / triad:5.0f}%"
            + "".join(
                f" {_fmt_ratio(ratios[impl, par]):>{w}}"
                for impl, w in (("fused", 8), ("foreach", 9))
                for par in (False, True)
            )
        )
    print(
        "x fused / x foreach: torch.optim step time / sparseopt step time, timed in turn, sparseopt's serial kernel "
        "against torch on 1 thread, its parallel kernel against torch's default threads (n/a: no such torch kernel); "
        "auto: sparseopt's own choice (PARALLEL_MIN_SIZE)"
    )


def dense_sizes(args):
    """Serial vs parallel kernels by size: where PARALLEL_MIN_SIZE should sit."""
    from sparseopt import _kernels

    sizes = [10_000, 100_000, 1_000_000] + ([] if args.quick else [10_000_000])
    print(f"\n== parallel / serial step time by size (float32; PARALLEL_MIN_SIZE = {_kernels.PARALLEL_MIN_SIZE:,}) ==")
    print(f"{'size':>11} " + " ".join(f"{n:>8}" for n in C.OPTIMIZERS))
    for n in sizes:
        rep = int(np.clip(3e7 // n, 5, 301)) if not args.quick else 5
        row = []
        for name in C.OPTIMIZERS:
            W, g = C.dense_data(n, np.float32)
            opt = C.sparseopt_optimizer(name, W)
            t = {}
            for mode in (False, True):
                restore = C.set_parallel(mode)
                try:
                    t[mode] = C.median_time(lambda: opt.step(g), rep)
                finally:
                    restore()
            row.append(t[True] / t[False])
        print(f"{n:>11,} " + " ".join(f"{r:8.2f}" for r in row))
    print("< 1: the parallel kernel is faster")


def sparse(args):
    n_cols, n_touched, n_idx = 16, 1_000, 2_000
    rep = 21 if args.quick else 301
    print(f"\n== sparse step: {n_touched:,} rows of {n_cols} float32 given as {n_idx:,} indices (medians of {rep}) ==")
    try:
        C.require_torch()
        have_torch = True
    except NotImplementedError:
        have_torch = False
    peers = {}
    if have_torch:
        import torch

        threads = torch.get_num_threads()
        thread_counts = sorted({threads, 1})
        for n_rows in (1_000_000, 10_000):
            W, rows, values = C.sparse_data(n_rows, n_cols, n_touched, n_idx, np.float32)
            for peer in ("SparseAdam", "Adagrad"):
                step = C.torch_sparse_step(peer, W, rows, values)
                for n in thread_counts:
                    torch.set_num_threads(n)
                    peers[peer, n_rows, n] = C.median_time(step, rep)
                torch.set_num_threads(threads)
        for peer in ("SparseAdam", "Adagrad"):
            print(
                f"torch.optim.{peer}: "
                + ", ".join(
                    f"{n_rows:,} rows {peers[peer, n_rows, n] * 1e6:.0f} us ({n} thread{'s' if n > 1 else ''})"
                    for n_rows in (1_000_000, 10_000)
                    for n in thread_counts
                )
            )
    print(
        f"{'optimizer':9} {'lazy':5} {'us/step':>8} {'x SparseAdam':>12} {'x Adagrad':>9}"
        f" {'10k-row us':>10} {'1M/10k':>6} {'kernel us':>9} {'fresh us':>8}"
    )
    from sparseopt import _kernels

    # rows of 64 other gradients of the same shape: steps cycling through them touch rows
    # that are not in cache (as in training, where each batch names other rows)
    fresh_rows = [C.sparse_data(1_000_000, n_cols, n_touched, n_idx, np.float32, seed=s)[1] for s in range(1, 65)]

    for name in C.OPTIMIZERS:
        for lazy in ("skip", "exact"):
            t = {}
            steps = {}
            ratio = None
            for n_rows in (1_000_000, 10_000):
                W, rows, values = C.sparse_data(n_rows, n_cols, n_touched, n_idx, np.float32)
                opt = C.sparseopt_optimizer(name, W, lazy=lazy)
                step = steps[n_rows] = (lambda o, r, v: lambda: o.step_rows(r, v))(opt, rows, values)
                t[n_rows] = C.median_time(step, rep)
                if n_rows == 1_000_000:
                    # the kernel alone (no validation, no Python): what bounds the step
                    s1, s2 = opt._state_args(lambda a: a.reshape(a.shape[0], -1))
                    exact = lazy == "exact"

                    def kern():
                        opt.t += 1
                        opt._set_step(opt.t)
                        _kernels.rows_step(opt._kind, opt._rows2d, rows, values, s1, s2, opt._h, exact, opt._last, opt.t, False)

                    t_kernel = C.median_time(kern, rep)
                    cycle = iter(fresh_rows * (rep // len(fresh_rows) + 2))
                    t_fresh = C.median_time(lambda: opt.step_rows(next(cycle), values), rep)
                    if have_torch:
                        peer = C.torch_sparse_step("SparseAdam", W.copy(), rows, values)
                        ratio = C.ratio_vs_torch(step, peer, rep)
            ada = min(v for k, v in peers.items() if k[:2] == ("Adagrad", 1_000_000)) if have_torch else None
            # 1M-row time / 10k-row time, the two timed in turn (a slow spell then hits both)
            large_over_small = C.paired_ratio(steps[10_000], steps[1_000_000], rep)
            print(
                f"{name:9} {lazy:5} {t[1_000_000] * 1e6:8.1f} {_fmt_ratio(ratio):>12}"
                f" {_fmt_ratio(ada / t[1_000_000] if ada else None):>9} {t[10_000] * 1e6:10.1f}"
                f" {large_over_small:6.2f} {t_kernel * 1e6:9.1f} {t_fresh * 1e6:8.1f}"
            )
    print(
        "x SparseAdam: SparseAdam time / ours, timed in turn, torch at its faster thread count; "
        "x Adagrad: torch's best median / ours; 1M/10k: the two tables' steps timed in turn; "
        "kernel us: rows_step alone (the rest is Python and validation); "
        "fresh us: 1M rows, each step naming other rows (not in cache; in exact mode they lag ~64 steps)"
    )


def estimators(args):
    try:
        from sparseopt.linear_model import LogisticRegression
    except ImportError as exc:
        print(f"\n== estimators: skipped (sparseopt.linear_model not importable: {exc}) ==")
        return
    from sklearn.linear_model import SGDClassifier

    from benchmarks.estimators import ALPHA, load_data

    epochs = 2 if args.quick else 5
    rep = 3 if args.quick else 5

    def seconds_per_epoch(make, X, y):
        """Median over ``rep`` whole fits (after a warm-up fit: compilation, first-call costs)."""
        make().fit(X[:100], y[:100])
        times = []
        for _ in range(rep):
            est = make()
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append((time.perf_counter() - t0) / max(int(np.max(getattr(est, "n_iter_", epochs))), 1))
        return float(np.median(times))

    for data in ("a9a", "zipf"):
        X, y = load_data(data, quick=args.quick)
        print(
            f"\n== estimators on {data} ({X.shape[0]:,} x {X.shape[1]:,}, {X.nnz:,} non-zeros), "
            f"s/epoch over {epochs} epochs (medians of {rep} fits) =="
        )
        t_ref = seconds_per_epoch(
            lambda: SGDClassifier(loss="log_loss", alpha=ALPHA, max_iter=epochs, tol=None, random_state=0), X, y
        )
        print(f"SGDClassifier(loss='log_loss'): {t_ref:.4f} s/epoch")
        for name in ("sgd", "momentum", "adagrad", "rmsprop", "adam"):
            t = seconds_per_epoch(
                lambda: LogisticRegression(optimizer=name, alpha=ALPHA, max_iter=epochs, tol=None, random_state=0),
                X,
                y,
            )
            print(f"{name:9} {t:.4f} s/epoch   SGDClassifier / this: {t_ref / t:5.2f}")

SECTIONS = {"dense": dense, "sizes": dense_sizes, "sparse": sparse, "estimators": estimators}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # no ``choices``: Python < 3.12 checks an empty ``nargs="*"`` list against them and refuses it
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (choose from {', '.join(SECTIONS)})")
    return args


def main(argv=None):
    args = parse_args(argv)
    import numba

    try:
        import torch

        peer = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        peer = "torch not installed"
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads; {peer}; {os.cpu_count()} CPUs")
    for name in args.sections or SECTIONS:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
