"""Shared set-up for the benchmarks: data, peers (PyTorch) and timers.

Peers are optional: a function needing one raises ``NotImplementedError``
when it is missing, which asv reports as a skipped benchmark (and
``tests/test_asv_suite.py`` as a skipped test).
"""

import time
import warnings

import numpy as np

OPTIMIZERS = ("SGD", "Momentum", "AdaGrad", "RMSProp", "Adam")

# bytes read + written per element by one dense step (parameter, gradient,
# state), counted like STREAM (no write-allocate traffic)
DENSE_ARRAYS_MOVED = {"SGD": 3, "Momentum": 5, "AdaGrad": 5, "RMSProp": 5, "Adam": 7}
TRIAD_ARRAYS_MOVED = 3  # a = b + s * c

# torch.optim counterparts (same hyperparameters where the update agrees)
_TORCH = {
    "SGD": ("SGD", dict(lr=0.01)),
    "Momentum": ("SGD", dict(lr=0.01, momentum=0.9)),
    "AdaGrad": ("Adagrad", dict(lr=0.01)),
    "RMSProp": ("RMSprop", dict(lr=0.001, alpha=0.9)),
    "Adam": ("Adam", dict(lr=0.001)),
}


def sparseopt_optimizer(name, W, **kwargs):
    from sparseopt import optim

    return getattr(optim, name)(W, **kwargs)


def set_parallel(parallel):
    """Force the dense kernels onto one thread (False) or all (True); return a restorer."""
    from sparseopt import _kernels

    old = _kernels.PARALLEL_MIN_SIZE
    if parallel is not None:
        _kernels.PARALLEL_MIN_SIZE = 0 if parallel else np.iinfo(np.int64).max

    def restore():
        _kernels.PARALLEL_MIN_SIZE = old

    return restore


def dense_data(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    g = (1e-3 * rng.standard_normal(n, dtype=np.float32)).astype(dtype)
    return W, g


def sparse_data(n_rows, n_cols, n_touched, n_indices, dtype, seed=0):
    """A table and a row gradient naming ``n_touched`` rows ``n_indices`` times (with repeats)."""
    rng = np.random.default_rng(seed)
    W = np.zeros((n_rows, n_cols), dtype=dtype)
    touched = rng.choice(n_rows, size=n_touched, replace=False)
    rows = np.concatenate([touched, rng.choice(touched, size=n_indices - n_touched)])
    rng.shuffle(rows)
    values = rng.standard_normal((n_indices, n_cols), dtype=np.float32).astype(dtype)
    return W, rows.astype(np.int64), values


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------


def require_torch():
    try:
        import torch
    except ImportError:  # optional benchmark dependency
        raise NotImplementedError("PyTorch is not installed (pip install 'sparseopt[bench]')")
    return torch


def torch_dense_step(name, W, g, impl):
    """A callable taking one ``torch.optim`` step; ``impl`` is "foreach" or "fused"."""
    torch = require_torch()
    cls, kwargs = _TORCH[name]
    p = torch.nn.Parameter(torch.from_numpy(W.copy()))
    p.grad = torch.from_numpy(g.copy())
    try:
        opt = getattr(torch.optim, cls)([p], **kwargs, **{impl: True})
    except (TypeError, ValueError, RuntimeError) as exc:
        raise NotImplementedError(f"torch.optim.{cls} has no {impl} CPU implementation: {exc}")
    try:
        opt.step()
    except RuntimeError as exc:
        raise NotImplementedError(f"torch.optim.{cls}({impl}=True) does not run on CPU: {exc}")
    return opt.step


def torch_sparse_step(peer, W, rows, values):
    """A callable taking one sparse step of ``torch.optim.SparseAdam`` or ``Adagrad``.

    The gradient is an uncoalesced ``sparse_coo_tensor`` (repeated rows, as an
    ``nn.Embedding`` with ``sparse=True`` makes it); the optimizer coalesces
    it inside every step, as in training.
    """
    torch = require_torch()
    p = torch.nn.Parameter(torch.from_numpy(W.copy()))
    p.grad = torch.sparse_coo_tensor(
        torch.from_numpy(rows)[None, :], torch.from_numpy(values), W.shape, check_invariants=False
    )
    if peer == "SparseAdam":
        opt = torch.optim.SparseAdam([p], lr=1e-3)
    elif peer == "Adagrad":
        opt = torch.optim.Adagrad([p], lr=1e-2, foreach=False)
        # its sparse path builds tensors without invariant checks and says so once per process
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    else:
        raise ValueError(peer)
    opt.step()
    return opt.step


# ---------------------------------------------------------------------------
# memory bandwidth and timers
# ---------------------------------------------------------------------------

_TRIAD = {}


def triad(parallel):
    """A Numba STREAM triad ``a[i] = b[i] + s * c[i]`` (compiled once per process)."""
    if parallel not in _TRIAD:
        from numba import njit, prange

        def _triad(a, b, c, s):
            for i in prange(a.size):
                a[i] = b[i] + s * c[i]

        _TRIAD[parallel] = njit(parallel=parallel, nogil=True)(_triad)
    return _TRIAD[parallel]


def triad_bandwidth(n, dtype, repeat=15):
    """Best of the serial and parallel triad, in bytes/s (median of ``repeat`` runs each)."""
    b = np.ones(n, dtype=dtype)
    c = np.ones(n, dtype=dtype)
    a = np.empty_like(b)
    s = np.dtype(dtype).type(0.5)
    best = 0.0
    for parallel in (False, True):
        f = triad(parallel)
        t = median_time(lambda: f(a, b, c, s), repeat)
        best = max(best, TRIAD_ARRAYS_MOVED * a.nbytes / t)
    return best


def median_time(f, repeat, warmup=1):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def paired_ratio(ours, peer, repeat, block=5):
    """median(peer time) / median(our time), timed in alternating blocks of ``block`` calls.

    Alternating keeps a noisy machine's slow spells fair to both; blocks keep
    each side's caches as warm as when it runs alone (timing one call of each
    in turn would run each just after the other has evicted its data).
    """
    ours()
    peer()
    t_ours, t_peer = [], []
    for _ in range(max(1, -(-repeat // block))):
        for f, times in ((ours, t_ours), (peer, t_peer)):
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
    return float(np.median(t_peer) / np.median(t_ours))


class torch_threads:
    """Context manager running torch on ``n`` threads (``None``: its default)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)


def ratio_vs_torch(ours, peer, repeat):
    """:func:`paired_ratio` against a torch step, torch at its default thread count and at
    one thread; the smaller ratio (torch at its faster setting) is returned.

    One thread is often faster for torch on a busy machine (its OpenMP threads
    spin-wait for each other), so this is the conservative figure.
    """
    import torch

    threads = torch.get_num_threads()
    ratios = []
    try:
        for n in sorted({threads, 1}):
            torch.set_num_threads(n)
            ratios.append(paired_ratio(ours, peer, repeat))
    finally:
        torch.set_num_threads(threads)
    return min(ratios)


def peak_allocated(f):
    """Peak bytes allocated while ``f()`` runs, by NumPy and by Numba kernels.

    Both allocate through Python's raw allocator, which ``tracemalloc``
    traces; memory allocated before the call does not count.
    """
    import tracemalloc

    if tracemalloc.is_tracing():
        raise NotImplementedError("tracemalloc is already tracing")
    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
