"""GPU speed of sparseopt's CUDA backend against ``torch.optim`` on the same GPU.

Prints, for each optimizer, the median time of one step (synchronised), the
memory bandwidth it reaches, and ratios peer time / sparseopt time (> 1 means
sparseopt is faster), the two timed alternately in the same run:

* dense: one step over ``--size`` float32 parameters (a torch CUDA tensor,
  updated in place by sparseopt) against ``torch.optim`` with
  ``fused=True`` and ``foreach=True``;
* sparse: one ``step_rows`` on a ``--rows`` x 16 float32 table, naming
  ``--touched`` distinct rows ``--indices`` times (repeats summed on the GPU),
  ``lazy="skip"`` and ``"exact"`` (and exact's ``sync()`` of the whole
  table), against ``torch.optim.SparseAdam`` (Adam)
  and sparse-gradient ``torch.optim.Adagrad`` / ``SGD`` fed the same
  uncoalesced ``sparse_coo_tensor`` (as ``nn.Embedding(sparse=True)`` makes);
* estimators: seconds per epoch of ``LogisticRegression(device="cuda")``
  against the same estimator on the CPU (a9a and a synthetic Zipf set), and
  the largest difference of their coefficients (the two must agree).

Needs numba-cuda and an NVIDIA GPU (PyTorch with CUDA for the peers, else
sparseopt alone is timed).  Without a GPU it says so and exits 0.
``--smoke`` runs tiny sizes, also under Numba's CUDA simulator, to check that
the script works (its timings mean nothing there).

Usage::

    python benchmarks/bench_cuda.py                    # 10M dense, 1M x 16 table, estimators
    python benchmarks/bench_cuda.py dense sparse       # the optimizer steps only
    python benchmarks/bench_cuda.py --size 100000000 --rows 10000000
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda.py --smoke
"""

import argparse
import sys
import time

import numpy as np

SECTIONS = ("dense", "sparse", "estimators")
OPTIMIZERS = ("SGD", "Momentum", "AdaGrad", "RMSProp", "Adam")
# arrays read + written by one dense step: p, g read, p written, each state read and written
DENSE_ARRAYS_MOVED = {"SGD": 3, "Momentum": 5, "AdaGrad": 5, "RMSProp": 5, "Adam": 7}
# the same hyperparameters on both sides (torch's RMSprop alpha is our rho; eps placement differs,
# which does not change the cost)
TORCH_DENSE = {
    "SGD": ("SGD", dict(lr=0.01)),
    "Momentum": ("SGD", dict(lr=0.01, momentum=0.9)),
    "AdaGrad": ("Adagrad", dict(lr=0.01)),
    "RMSProp": ("RMSprop", dict(lr=0.001, alpha=0.9)),
    "Adam": ("Adam", dict(lr=0.001)),
}
# sparse-gradient peers: torch.optim classes that accept a sparse .grad
TORCH_SPARSE = {
    "SGD": ("SGD", dict(lr=0.01)),
    "AdaGrad": ("Adagrad", dict(lr=0.01)),
    "Adam": ("SparseAdam", dict(lr=0.001)),
}


def _fmt(x, spec="6.2f"):
    return "n/a".rjust(len(format(1.0, spec))) if x is None else format(x, spec)


class Timer:
    """Median wall time of ``f`` followed by a device synchronisation."""

    def __init__(self, sync, repeat):
        self.sync = sync
        self.repeat = repeat

    def once(self, f):
        t0 = time.perf_counter()
        f()
        self.sync()
        return time.perf_counter() - t0

    def median(self, f):
        f()
        self.sync()  # compile / warm up outside the timing
        return float(np.median([self.once(f) for _ in range(self.repeat)]))

    def paired(self, ours, peer):
        """(median ours, median peer), timed alternately."""
        ours()
        peer()
        self.sync()
        a, b = [], []
        for _ in range(self.repeat):
            a.append(self.once(ours))
            b.append(self.once(peer))
        return float(np.median(a)), float(np.median(b))


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _launch_floor(cuda, timer):
    """Median time of one launch of a one-element kernel plus a synchronisation: the part of
    a step that Python, Numba's dispatch and the driver cost whatever the size."""
    from sparseopt.cuda import _kernels as K

    buf = cuda.device_array(1, dtype=np.float32)
    return timer.median(lambda: K.launch(K.fill, 1, buf, np.float32(0)))


def _kernel_time(cuda, timer, opt, g):
    """Median GPU time of the dense-step kernel alone (CUDA events), or None under the simulator."""
    import sparseopt.cuda as sc
    from sparseopt.cuda import _kernels as K

    if sc.simulator_enabled():
        return None
    dev = opt._dev
    p, s1, s2 = dev._flat
    gd = dev._dense_grad(g, False).reshape(1, p.shape[1])
    kern = K.kernels_for(opt._kind).dense_step
    h = tuple(opt._h)
    start, stop = cuda.event(), cuda.event()

    def once():
        start.record()
        K.launch(kern, p.shape[1], p, gd, s1, s2, h)
        stop.record()
        stop.synchronize()
        return cuda.event_elapsed_time(start, stop) / 1e3

    once()
    return float(np.median([once() for _ in range(timer.repeat)]))


def dense(args, cuda, torch, timer):
    from sparseopt import optim

    n = args.size
    print(f"\n== dense step, {n:,} float32 parameters (median of {timer.repeat}) ==")
    floor = _launch_floor(cuda, timer)
    print(f"(one launch of a one-element kernel, synchronised: {floor * 1e3:.3f} ms)")
    print(f"{'optimizer':9} {'ms':>8} {'GB/s':>7} {'kernel ms':>9} {'kern GB/s':>9} {'x fused':>8} {'x foreach':>9}")
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal(n, dtype=np.float32)
    g0 = rng.standard_normal(n, dtype=np.float32)
    for name in OPTIMIZERS:
        if torch is not None:
            W, g = torch.from_numpy(W0).cuda(), torch.from_numpy(g0).cuda()
        else:
            W, g = cuda.to_device(W0), cuda.to_device(g0)
        opt = getattr(optim, name)(W)
        t = timer.median(lambda: opt.step(g))
        ratios = {}
        for impl in ("fused", "foreach"):
            ratios[impl] = None
            if torch is None:
                continue
            cls, kw = TORCH_DENSE[name]
            p = torch.nn.Parameter(torch.from_numpy(W0).cuda())
            p.grad = torch.from_numpy(g0).cuda()
            try:
                peer = getattr(torch.optim, cls)([p], **kw, **{impl: True})
                peer.step()
            except (TypeError, ValueError, RuntimeError):
                continue
            ours_t, peer_t = timer.paired(lambda: opt.step(g), peer.step)
            ratios[impl] = peer_t / ours_t
        moved = DENSE_ARRAYS_MOVED[name] * W0.nbytes
        tk = _kernel_time(cuda, timer, opt, g)
        print(f"{name:9} {t * 1e3:8.3f} {moved / t / 1e9:7.1f} {_fmt(tk and tk * 1e3, '9.3f')} "
              f"{_fmt(tk and moved / tk / 1e9, '9.1f')} {_fmt(ratios['fused'], '8.2f')} {_fmt(ratios['foreach'], '9.2f')}")


def sparse(args, cuda, torch, timer):
    from sparseopt import optim

    n_rows, n_cols, touched, k = args.rows, 16, args.touched, args.indices
    rng = np.random.default_rng(1)
    W0 = np.zeros((n_rows, n_cols), dtype=np.float32)
    hit = rng.choice(n_rows, size=touched, replace=False)
    rows0 = np.concatenate([hit, rng.choice(hit, size=k - touched)]).astype(np.int64)
    rng.shuffle(rows0)
    vals0 = rng.standard_normal((k, n_cols), dtype=np.float32)
    print(
        f"\n== sparse step: {n_rows:,} x {n_cols} table, {k:,} indices over {touched:,} rows, "
        f"inputs on the GPU (median of {timer.repeat}) =="
    )
    print(f"{'optimizer':9} {'skip ms':>8} {'exact ms':>8} {'sync ms':>8} {'torch peer':>12} {'x skip':>7}")
    for name in OPTIMIZERS:
        times = {}
        for lazy in ("skip", "exact"):
            if torch is not None:
                W = torch.from_numpy(W0).cuda()
                rows, vals = torch.from_numpy(rows0).cuda(), torch.from_numpy(vals0).cuda()
            else:
                W = cuda.to_device(W0)
                rows, vals = cuda.to_device(rows0), cuda.to_device(vals0)
            opt = getattr(optim, name)(W, lazy=lazy)
            times[lazy] = (opt, rows, vals, timer.median(lambda: opt.step_rows(rows, vals)))
        # exact mode's sync(): every row caught up (after a step, so that all rows but k lag)
        opt, rows, vals, _ = times["exact"]
        sync_times = []
        for _ in range(min(timer.repeat, 11)):
            opt.step_rows(rows, vals)
            timer.sync()
            sync_times.append(timer.once(opt.sync))
        t_sync = float(np.median(sync_times))
        peer_name, ratio = "", None
        if torch is not None and name in TORCH_SPARSE:
            cls, kw = TORCH_SPARSE[name]
            p = torch.nn.Parameter(torch.from_numpy(W0).cuda())
            p.grad = torch.sparse_coo_tensor(
                torch.from_numpy(rows0)[None, :].cuda(), torch.from_numpy(vals0).cuda(), W0.shape,
                check_invariants=False,
            )
            peer = getattr(torch.optim, cls)([p], **kw)
            opt, rows, vals, _ = times["skip"]
            ours_t, peer_t = timer.paired(lambda: opt.step_rows(rows, vals), peer.step)
            peer_name, ratio = cls, peer_t / ours_t
        print(
            f"{name:9} {times['skip'][3] * 1e3:8.3f} {times['exact'][3] * 1e3:8.3f} {t_sync * 1e3:8.3f} "
            f"{peer_name:>12} {_fmt(ratio, '7.2f')}"
        )


def estimators(args, cuda, torch, timer):
    """LogisticRegression(device="cuda") against the same estimator on the CPU: seconds per
    epoch (one warm-up fit first) and the largest coefficient difference, which checks on a
    real GPU that both devices train the same model."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from sparseopt.datasets import load_a9a, make_zipf_classification
    from sparseopt.linear_model import LogisticRegression

    warnings.simplefilter("ignore", ConvergenceWarning)
    sets = [("a9a", *load_a9a("train"))]
    if args.smoke:
        X, y = sets[0][1][:300], sets[0][2][:300]
        sets = [("a9a[:300]", X, y)]
    else:
        sets.append(("Zipf", *make_zipf_classification(args.est_rows, 100_000, random_state=0)))
    epochs = 1 if args.smoke else args.epochs
    for label, X, y in sets:
        print(f"\n== LogisticRegression epochs, {label}: {X.shape[0]:,} x {X.shape[1]:,}, "
              f"{X.nnz / X.shape[0]:.1f} nnz/row, {epochs} epochs ==")
        print(f"{'optimizer':9} {'batch':>6} {'cpu s/ep':>9} {'cuda s/ep':>10} {'cpu/cuda':>9} {'max|dcoef|':>11}")
        for name in ("sgd", "adagrad", "adam"):
            for bs in args.est_batches:
                models, secs = {}, {}
                for device in ("cpu", "cuda"):
                    def make(n_epochs):
                        return LogisticRegression(optimizer=name, batch_size=bs, max_iter=n_epochs, tol=None,
                                                  random_state=0, device=device)
                    # compile outside the timing, with batches of the timed size: a small batch
                    # runs the epoch in one thread block, a large one launches the phases
                    warm = max(64, 2 * bs)
                    make(1).fit(X[:warm], y[:warm])
                    tic = time.perf_counter()
                    models[device] = make(epochs).fit(X, y)
                    secs[device] = (time.perf_counter() - tic) / epochs
                diff = float(np.abs(models["cpu"].coef_ - models["cuda"].coef_).max())
                print(f"{name:9} {bs:6d} {secs['cpu']:9.4f} {secs['cuda']:10.4f} "
                      f"{secs['cpu'] / secs['cuda']:9.2f} {diff:11.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help="dense, sparse and/or estimators (default all)")
    parser.add_argument("--size", type=int, default=10_000_000, help="dense parameters (default 10M)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the sparse table (default 1M)")
    parser.add_argument("--touched", type=int, default=10_000, help="distinct rows per sparse step")
    parser.add_argument("--indices", type=int, default=20_000, help="row indices per sparse step")
    parser.add_argument("--repeat", type=int, default=51, help="timed steps per measurement")
    parser.add_argument("--est-rows", type=int, default=100_000, help="rows of the synthetic Zipf set (estimators)")
    parser.add_argument("--est-batches", type=int, nargs="+", default=[32, 4096], help="estimator batch sizes")
    parser.add_argument("--epochs", type=int, default=2, help="estimator epochs timed")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (works under the simulator)")
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
    import sparseopt.cuda as sc

    if not sc.is_available():
        print("bench_cuda: skipped: no numba-cuda or no CUDA GPU here (sparseopt.cuda.is_available() is False)")
        return 0
    if sc.simulator_enabled() and not args.smoke:
        print("bench_cuda: skipped: Numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM); use --smoke to test the script")
        return 0
    if args.smoke:
        args.size, args.rows, args.touched, args.indices, args.repeat = 64, 50, 5, 9, 2
        args.est_batches = [16]
    from numba import cuda

    torch = None if sc.simulator_enabled() else _torch_cuda()
    if torch is None:
        print("(no PyTorch with CUDA: timing sparseopt alone)")
        sync = cuda.synchronize
    else:
        print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")

        def sync():
            torch.cuda.synchronize()

    timer = Timer(sync, args.repeat)
    for section in args.sections or SECTIONS:
        globals()[section](args, cuda, torch, timer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
