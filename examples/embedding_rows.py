"""Lazy row-wise updates on a large embedding table: dense vs ``skip`` vs ``exact``.

A table ``W`` of ``n_rows x dim`` float32 embeddings (one million rows by
default) is trained on bags of ids: a sample is ``bag`` ids drawn from a Zipf
law over the rows (a few ids frequent, most rare, as words or users are),
its prediction is the mean of their embeddings, and its target the mean of
the same rows of a hidden table ``T``; the loss is the squared error.  A
mini-batch touches at most ``batch * bag`` rows, a tiny share of the table.

Each of the five optimizers runs the same mini-batches three ways:

``dense``
    the gradient is scattered into a full-size array and ``opt.step(G)``
    updates every row (what a dense optimizer does with an embedding);
``skip``
    ``opt.step_rows(rows, values)`` updates the touched rows only
    (LazyAdam / ``torch.optim.SparseAdam``);
``exact``
    ``step_rows`` in ``lazy="exact"`` mode, ``sync()`` at the end: the
    missed zero-gradient steps of each row are replayed in closed form.

Printed: milliseconds per step of each way (and of exact's final ``sync()``), the loss each reaches, and how
far ``skip`` and ``exact`` end from the dense result.  ``exact`` matches
dense (float32 rounding); ``skip`` differs for the optimizers whose state
moves on zero gradient (Momentum, RMSProp, Adam), not for SGD and AdaGrad.

Run ``python examples/embedding_rows.py`` (``--quick`` for a small table).
"""

import argparse
import sys
import time

import numpy as np

from sparseopt import optim

OPTIMIZERS = {
    "sgd": (optim.SGD, {"lr": 20.0}),
    "momentum": (optim.Momentum, {"lr": 2.0, "momentum": 0.9}),
    "adagrad": (optim.AdaGrad, {"lr": 0.5}),
    "rmsprop": (optim.RMSProp, {"lr": 0.01}),
    "adam": (optim.Adam, {"lr": 0.01}),
}


def zipf_ids(rng, n_rows, size, exponent=1.05):
    """Ids in [0, n_rows) with P(id = k) roughly proportional to 1/(k+1)**exponent (inverse-CDF sampling)."""
    u = rng.random(size)
    # continuous approximation of the Zipf CDF on [1, n_rows + 1)
    a = 1.0 - exponent
    top = (n_rows + 1.0) ** a
    k = (1.0 + u * (top - 1.0)) ** (1.0 / a) - 1.0
    return np.minimum(k.astype(np.int64), n_rows - 1)


def make_batches(n_rows, n_steps, batch, bag, seed):
    rng = np.random.default_rng(seed)
    return [zipf_ids(rng, n_rows, (batch, bag)) for _ in range(n_steps)]


def batch_gradient(W, T, ids):
    """Loss and the gradient rows (with repeats) of the mean-of-bag squared error."""
    bag = ids.shape[1]
    resid = W[ids].mean(axis=1) - T[ids].mean(axis=1)  # (batch, dim)
    loss = 0.5 * float(np.mean(np.sum(resid * resid, axis=1)))
    values = np.repeat(resid / (bag * ids.shape[0]), bag, axis=0)  # one gradient row per id
    return loss, ids.reshape(-1), values.astype(W.dtype)


def evaluate(W, T, eval_ids):
    return batch_gradient(W, T, eval_ids)[0]


def run_one(name, way, n_rows, dim, T, batches, eval_ids, replay=None):
    """Train with one optimizer one way; ``replay``: feed these recorded (rows, values) instead."""
    cls, hyper = OPTIMIZERS[name]
    W = np.zeros((n_rows, dim), dtype=np.float32)
    opt = cls(W, lazy="skip" if way in ("dense", "skip") else "exact", **hyper)
    # compile outside the timed loop (a dense step on a large table runs the parallel kernel)
    warm = cls(np.zeros_like(W) if way == "dense" else np.zeros((4, dim), np.float32), lazy=opt.lazy, **hyper)
    warm.step_rows(np.array([0, 2]), np.ones((2, dim), dtype=np.float32))
    warm.step(np.zeros_like(warm.param))
    warm.sync()
    del warm
    record = []
    t0 = time.perf_counter()
    for i, ids in enumerate(batches):
        if replay is None:
            _, rows, values = batch_gradient(W, T, ids)
        else:
            rows, values = replay[i]
        if way == "dense":
            record.append((rows, values))
            G = np.zeros_like(W)
            np.add.at(G, rows, values)
            opt.step(G)
        else:
            opt.step_rows(rows, values)
    t1 = time.perf_counter()
    opt.sync()
    t2 = time.perf_counter()
    return W, (t1 - t0, t2 - t1), evaluate(W, T, eval_ids), record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small table and few steps (for tests)")
    parser.add_argument("--rows", type=int, default=None, help="rows of the table (default 1,000,000)")
    parser.add_argument("--steps", type=int, default=None, help="mini-batch steps (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n_rows = args.rows or (20_000 if args.quick else 1_000_000)
    n_steps = args.steps or (20 if args.quick else 100)
    dim, batch, bag = 16, 64, 20

    rng = np.random.default_rng(args.seed)
    T = rng.standard_normal((n_rows, dim)).astype(np.float32)
    batches = make_batches(n_rows, n_steps, batch, bag, args.seed + 1)
    eval_ids = make_batches(n_rows, 1, 4096, bag, args.seed + 2)[0]
    touched = np.unique(np.concatenate([b.ravel() for b in batches])).size
    print(f"table {n_rows:,} x {dim} float32 ({n_rows * dim * 4 / 2**20:.0f} MiB); {n_steps} steps of "
          f"{batch} bags of {bag} Zipf ids; {touched:,} distinct rows touched ({100 * touched / n_rows:.2f}%)")
    print(f"initial loss {evaluate(np.zeros((n_rows, dim), np.float32), T, eval_ids):.4f}")
    head = (f"{'optimizer':<9} {'dense ms/step':>13} {'skip ms/step':>12} {'exact ms/step':>13} "
            f"{'sync ms':>8} {'loss dense':>10} {'loss skip':>10} {'loss exact':>10} "
            f"{'|skip-dense|':>12} {'|exact-dense|':>13} {'replayed':>9}")
    print(head)
    print("-" * len(head))
    for name in OPTIMIZERS:
        out = {way: run_one(name, way, n_rows, dim, T, batches, eval_ids) for way in ("dense", "skip", "exact")}
        Wd = out["dense"][0]
        out["replayed"] = run_one(name, "exact", n_rows, dim, T, batches, eval_ids, replay=out["dense"][3])
        scale = max(float(np.abs(Wd).max()), 1e-30)
        diff = {w: float(np.abs(out[w][0] - Wd).max()) / scale for w in ("skip", "exact", "replayed")}
        ms = {w: 1e3 * out[w][1][0] / n_steps for w in out}
        sync_ms = 1e3 * out["exact"][1][1]
        print(f"{name:<9} {ms['dense']:>13.3f} {ms['skip']:>12.3f} {ms['exact']:>13.3f} "
              f"{sync_ms:>8.1f} {out['dense'][2]:>10.4f} {out['skip'][2]:>10.4f} "
              f"{out['exact'][2]:>10.4f} {diff['skip']:>12.2e} {diff['exact']:>13.2e} {diff['replayed']:>9.2e}")
        del out, Wd
    print("|x-dense|: max abs difference of the final tables, relative to max |W_dense|; sync ms: the one final "
          "sync() of the exact run (a dense step syncs first, so dense ms/step needs none).\nreplayed: lazy='exact' fed the dense run's own gradients: equal to dense up to float32 "
          "rounding.\n|exact-dense| is larger for Momentum and Adam because there the gradient is computed from "
          "rows that\nhave not yet received the drift of their missed steps (they are caught up when stepped, "
          "not when read).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
