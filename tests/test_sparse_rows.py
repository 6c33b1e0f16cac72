"""Sparse row steps on rows as wide as the kernels' column blocks, against tests/naive.py.

``rows_step`` updates Adam rows by blocks of 16 columns (then one column at
a time), prefetches rows a few unique rows ahead, and catches Adam rows up
column-parallel; rows of 16 and 37 columns with more distinct rows than the
prefetch distance run every one of these paths.  Tolerances as in
tests/test_optim.py.
"""

import numpy as np
import pytest

from sparseopt import _kernels
from test_optim import assert_same, make, tol

from cases import DTYPES, VARIANTS

WIDTHS = [16, 37]


@pytest.mark.parametrize("n_cols", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_wide_rows_skip_match_naive(variant, dtype, n_cols):
    name, extra = variant
    rng = np.random.default_rng(n_cols)
    n_rows = 3 * _kernels.AHEAD
    W = rng.standard_normal((n_rows, n_cols)).astype(dtype)
    opt, ref = make(name, W, extra, lazy="skip")
    for _ in range(6):
        rows = rng.integers(0, n_rows, size=2 * n_rows)  # repeats, more unique rows than AHEAD
        v = rng.standard_normal((rows.size, n_cols)).astype(dtype)
        opt.step_rows(rows, v)
        ref.skip(rows, v)
    assert_same(opt, ref)


@pytest.mark.parametrize("n_cols", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extra", [{}, {"weight_decay": 0.1}], ids=["plain", "wd"])
def test_adam_wide_rows_long_absence(extra, dtype, n_cols):
    """Adam rows absent for hundreds of steps, their elements settling at different steps."""
    rng = np.random.default_rng(1)
    scale = np.array([1e-6, 1e-2, 1.0, 1e3])[np.arange(n_cols) % 4]  # per column: very different settling steps
    W = rng.standard_normal((4, n_cols)) * scale
    if extra:  # weight decay pulls p to 0, where Adam's lr-sized steps would flip its sign: keep |p| >> lr * steps
        W = 10.0 + np.abs(W)
    W = W.astype(dtype)
    opt, ref = make("Adam", W, extra, lazy="exact")
    g = (rng.standard_normal((4, n_cols)) * scale[::-1]).astype(dtype)
    opt.step(g)
    ref.dense(g)
    zero = np.zeros_like(W)
    rows = np.array([0, 2, 0])
    for s in range(400):
        if s in (3, 150):
            v = rng.standard_normal((3, n_cols)).astype(dtype)
            opt.step_rows(rows, v)
            ref.dense(ref.to_dense(rows, v))
        else:
            opt.step_rows(rows[:0], np.zeros((0, n_cols), dtype))
            ref.dense(zero)
    opt.step_rows([2], np.ones((1, n_cols), dtype))  # row 2 catches up 249 steps, in the step itself
    ref.dense(ref.to_dense(np.array([2]), np.ones((1, n_cols), dtype)))
    np.testing.assert_allclose(opt.param[2], ref.p[2], **tol(dtype, exact=True))
    opt.sync()
    assert_same(opt, ref, exact=True)
    if dtype == np.float64:  # the moments have decayed to tiny values: compare them relatively too
        for k, v in ref.state.items():
            np.testing.assert_allclose(opt.state[k], v, rtol=1e-9, atol=0, err_msg=f"state {k}")
