"""Quick start: lazy Adam on an embedding table, skip vs exact mode.

Run with ``python examples/quickstart.py``.
"""

import numpy as np

from sparseopt.optim import Adam

rng = np.random.default_rng(0)
n_rows, n_cols, n_steps = 100_000, 16, 200

for lazy in ("skip", "exact"):
    W = np.zeros((n_rows, n_cols), dtype=np.float32)
    opt = Adam(W, lr=1e-2, lazy=lazy)
    for _ in range(n_steps):
        rows = rng.integers(0, n_rows, size=256)  # a mini-batch of ids, with repeats
        grad = rng.standard_normal((rows.size, n_cols)).astype(np.float32)
        opt.step_rows(rows, grad)  # touches only these rows
    opt.sync()  # exact mode: catch every row up to step t
    print(f"lazy={lazy!r}: t={opt.t}, |W| = {np.linalg.norm(W):.4f}")
