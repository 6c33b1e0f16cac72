"""The five optimizers against the NumPy transcription of SPEC.md (tests/naive.py).

Tolerances: float64 results are compared at rtol 1e-12 where both sides run
the same arithmetic (dense, skip), and at SPEC.md's 1e-9 for ``exact`` (closed
forms and matrix powers reorder the arithmetic).  float32 runs keep each
operation in float32 on both sides; over tens of steps rounding differences
of a few ulp (1.2e-7 each) accumulate, so rtol 1e-5 (1e-4 for ``exact``,
as SPEC.md states) with an absolute floor for values that cross zero.
"""

import io

import numpy as np
import pytest
import scipy.sparse as sp

from sparseopt import optim
from naive import NaiveOptimizer

from cases import DTYPES, HYPER, NAMES, VARIANTS  # noqa: E402


def tol(dtype, exact=False):
    if dtype == np.float64:
        return dict(rtol=1e-9 if exact else 1e-12, atol=1e-12)
    return dict(rtol=1e-4 if exact else 1e-5, atol=1e-5)


def make(name, W, extra=(), **kw):
    hyper = {**HYPER[name], **dict(extra)}
    return getattr(optim, name)(W, **hyper, **kw), NaiveOptimizer(name, W, **hyper)


def assert_same(opt, ref, exact=False):
    dt = opt.param.dtype
    np.testing.assert_allclose(opt.param, ref.p, **tol(dt, exact))
    for k, v in ref.state.items():
        np.testing.assert_allclose(opt.state[k], v, **tol(dt, exact), err_msg=f"state {k}")
    assert opt.t == ref.t


def random_rows(rng, n_rows, max_k=None):
    k = rng.integers(0, (max_k or 2 * n_rows) + 1)
    return rng.integers(0, n_rows, size=k)


def values_for(rng, W, k):
    return rng.standard_normal((k,) + W.shape[1:]).astype(W.dtype)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (6, 3)], ids=["1d", "2d"])
def test_dense_matches_naive(variant, dtype, shape):
    name, extra = variant
    rng = np.random.default_rng(0)
    W = rng.standard_normal(shape).astype(dtype)
    W0 = W.copy()
    opt, ref = make(name, W, extra)
    for _ in range(40):
        g = rng.standard_normal(shape).astype(dtype)
        opt.step(g)
        ref.dense(g)
    assert_same(opt, ref)
    # the parameter moved (the test would otherwise be vacuous)
    assert not np.allclose(opt.param, W0)


@pytest.mark.parametrize("name", NAMES)
def test_dense_parallel_kernel_matches_serial(name, monkeypatch):
    from sparseopt import _kernels

    rng = np.random.default_rng(1)
    W = rng.standard_normal((50, 4))
    W2 = W.copy()
    a, _ = make(name, W)
    b, _ = make(name, W2)
    monkeypatch.setattr(_kernels, "PARALLEL_MIN_SIZE", 1)
    for _ in range(5):
        g = rng.standard_normal(W.shape)
        a.step(g)
        monkeypatch.setattr(_kernels, "PARALLEL_MIN_SIZE", 10**9)
        b.step(g)
        monkeypatch.setattr(_kernels, "PARALLEL_MIN_SIZE", 1)
    np.testing.assert_array_equal(W, W2)


@pytest.mark.parametrize("n", [10, 40_000])
@pytest.mark.parametrize("offset", [0, 16, 48, 2056])
def test_state_arrays_start_a_cache_line_half_a_page_from_a_large_parameter(n, offset):
    """State arrays start a cache line (a sparse step's 16-float32 rows then span one line),
    and from 64 KiB half a page (mod 4 KiB) past the parameter's line, wherever the parameter
    starts: a state a few bytes above the parameter in the page made Adam's dense step 1.4x
    slower (the CPU took the loads ahead for dependents of the stores behind).  The steps
    themselves do not depend on where the arrays are."""
    buf = np.zeros(n * 4 + 8192, dtype=np.uint8)
    start = (offset - buf.ctypes.data) % 4096
    W = buf[start:start + n * 4].view(np.float32)
    W[:] = np.linspace(-1, 1, n, dtype=np.float32)
    assert W.ctypes.data % 4096 == offset % 4096
    opt = optim.Adam(W.copy(), lr=0.01)
    opt2 = optim.Adam(W, lr=0.01)
    for name in ("m", "v"):
        data = opt2.state[name].ctypes.data
        assert data % 64 == 0
        if n * 4 >= optim._PAGE_SHIFTED_BYTES:
            assert (data - (W.ctypes.data & -64)) % 4096 == 2048
    g = np.cos(np.arange(n, dtype=np.float32))
    for _ in range(3):
        opt.step(g)
        opt2.step(g)
    np.testing.assert_array_equal(opt.param, opt2.param)
    np.testing.assert_array_equal(opt.state["v"], opt2.state["v"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("shape", [(9,), (8, 3)], ids=["1d", "2d"])
def test_step_rows_all_rows_equals_dense(variant, lazy, shape):
    name, extra = variant
    rng = np.random.default_rng(2)
    W = rng.standard_normal(shape)
    opt, ref = make(name, W, extra, lazy=lazy)
    rows = np.arange(shape[0])
    for _ in range(10):
        v = values_for(rng, W, shape[0])
        perm = rng.permutation(rows)  # every row once, in any order
        opt.step_rows(perm, v[perm])
        ref.dense(v)
    assert_same(opt, ref)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_unsorted_rows_are_summed(variant, lazy, dtype):
    name, extra = variant
    rng = np.random.default_rng(3)
    W = rng.standard_normal((6, 2)).astype(dtype)
    W2 = W.copy()
    a, _ = make(name, W, extra, lazy=lazy)
    b, _ = make(name, W2, extra, lazy=lazy)
    for _ in range(8):
        rows = np.array([4, 1, 4, 0, 1, 4])
        v = values_for(rng, W, rows.size)
        a.step_rows(rows, v)
        summed = np.zeros((6, 2), dtype)
        np.add.at(summed, rows, v)
        b.step_rows(np.array([0, 1, 4]), summed[[0, 1, 4]])
    a.sync(), b.sync()
    np.testing.assert_allclose(W, W2, **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("fmt", ["csr", "coo", "csc"])
def test_scipy_sparse_equals_step_rows(name, lazy, fmt):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((10, 3))
    W2 = W.copy()
    a, _ = make(name, W, lazy=lazy)
    b, _ = make(name, W2, lazy=lazy)
    for _ in range(6):
        dense = np.zeros((10, 3))
        rows = rng.choice(10, size=4, replace=False)
        dense[rows] = rng.standard_normal((4, 3))
        dense[rows[0], :] = 0.0
        dense[rows[0], 1] = 1.5  # a touched row with missing entries
        a.step(sp.random(10, 3, density=0, format=fmt) + sp.coo_matrix(dense).asformat(fmt))
        b.step_rows(rows, dense[rows])
    a.sync(), b.sync()
    np.testing.assert_array_equal(W, W2)


def test_scipy_sparse_explicit_zero_touches_row():
    """A stored zero makes its row 'touched' (SPEC.md): Adam moves it through momentum."""
    W = np.zeros((3, 2))
    opt = optim.Adam(W, lr=0.1)
    opt.step_rows([1], [[1.0, 1.0]])
    g = sp.csr_matrix((np.array([0.0]), (np.array([1]), np.array([0]))), shape=(3, 2))
    before = W.copy()
    opt.step(g)
    assert not np.array_equal(W[1], before[1])
    np.testing.assert_array_equal(W[[0, 2]], before[[0, 2]])


@pytest.mark.parametrize("name", NAMES)
def test_scipy_sparse_1d_param(name):
    rng = np.random.default_rng(5)
    W = rng.standard_normal(12)
    W2, W3 = W.copy(), W.copy()
    a, _ = make(name, W)
    b, _ = make(name, W2)
    c, _ = make(name, W3)
    rows = np.array([1, 5, 7])
    v = rng.standard_normal(3)
    a.step(sp.csr_matrix((v, (rows, np.zeros(3, int))), shape=(12, 1)))
    b.step(sp.coo_array((v, (rows,)), shape=(12,)))
    c.step_rows(rows, v)
    np.testing.assert_array_equal(W, W3)
    np.testing.assert_array_equal(W2, W3)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (10, 3)], ids=["1d", "2d"])
def test_skip_matches_naive_skip(variant, dtype, shape):
    name, extra = variant
    rng = np.random.default_rng(6)
    W = rng.standard_normal(shape).astype(dtype)
    opt, ref = make(name, W, extra, lazy="skip")
    for _ in range(30):
        rows = random_rows(rng, shape[0], max_k=4)
        v = values_for(rng, W, rows.size)
        opt.step_rows(rows, v)
        ref.skip(rows, v)
    assert_same(opt, ref)


def _exact_schedule(rng, n_rows, n_steps):
    """Row patterns with long absences: row 0 never, row 1 at steps 1 and last only, others random."""
    for s in range(1, n_steps + 1):
        rows = list(rng.choice(np.arange(2, n_rows), size=rng.integers(0, 3), replace=True))
        if s in (1, n_steps):
            rows.append(1)
        if s % 37 == 0:
            rows = []  # empty steps: every row lags
        yield np.array(rows, dtype=np.int64)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8,), (8, 3)], ids=["1d", "2d"])
def test_exact_equals_dense_with_zero_rows(variant, dtype, shape):
    name, extra = variant
    rng = np.random.default_rng(7)
    W = rng.standard_normal(shape).astype(dtype)
    opt, ref = make(name, W, extra, lazy="exact")
    # start from a non-trivial state so that the catch-up has something to decay
    g0 = rng.standard_normal(shape).astype(dtype)
    opt.step(g0)
    ref.dense(g0)
    for rows in _exact_schedule(rng, shape[0], 150):
        v = values_for(rng, W, rows.size)
        opt.step_rows(rows, v)
        ref.dense(ref.to_dense(rows, v))
        # rows touched now are up to date even before sync()
        if rows.size:
            np.testing.assert_allclose(opt.param[rows], ref.p[rows], **tol(dtype, exact=True))
    opt.sync()
    assert_same(opt, ref, exact=True)
    # a dense step in exact mode syncs first
    v = values_for(rng, W, 1)
    opt.step_rows([2], v)
    ref.dense(ref.to_dense([2], v))
    g = rng.standard_normal(shape).astype(dtype)
    opt.step(g)
    ref.dense(g)
    assert_same(opt, ref, exact=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_long_absence(name, dtype):
    """A row absent for thousands of steps is caught up exactly (Adam: loop with early stop)."""
    W = np.linspace(-1, 1, 6).astype(dtype).reshape(3, 2)
    opt, ref = make(name, W, lazy="exact")
    g = np.array([[0.5, -1.0], [2.0, 0.1], [-0.3, 0.7]], dtype)
    opt.step(g)
    ref.dense(g)
    zero = np.zeros_like(g)
    for _ in range(3000):
        opt.step_rows(np.array([], dtype=np.int64), np.zeros((0, 2), dtype))
        ref.dense(zero)
    opt.sync()
    assert_same(opt, ref, exact=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lazy", ["skip", "exact"])
def test_empty_step_advances_t(name, lazy):
    W = np.ones((4, 2))
    opt, _ = make(name, W, lazy=lazy)
    opt.step_rows([], np.zeros((0, 2)))
    opt.step(sp.csr_matrix((4, 2)))
    assert opt.t == 2
    np.testing.assert_array_equal(W, 1.0)


# ---------------------------------------------------------------- state


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("via_npz", [False, True])
def test_state_dict_round_trip_bit_for_bit(variant, lazy, via_npz):
    name, extra = variant
    rng = np.random.default_rng(8)
    W = rng.standard_normal((6, 2)).astype(np.float32)
    opt, _ = make(name, W, extra, lazy=lazy)

    def some_steps(o, seed):
        r = np.random.default_rng(seed)
        for i in range(12):
            if i % 4 == 3:
                o.step(r.standard_normal((6, 2)).astype(np.float32))
            else:
                rows = r.integers(0, 6, size=3)
                o.step_rows(rows, r.standard_normal((3, 2)).astype(np.float32))

    some_steps(opt, 1)
    d = opt.state_dict()
    if via_npz:
        buf = io.BytesIO()
        np.savez(buf, **d)
        buf.seek(0)
        d = dict(np.load(buf))
    W2 = W.copy()
    opt2 = getattr(optim, name)(W2)  # default hyperparameters: load_state_dict restores them
    opt2.load_state_dict(d)
    assert opt2.t == opt.t and opt2.lazy == lazy and opt2.hyperparams == opt.hyperparams
    some_steps(opt, 2)
    some_steps(opt2, 2)
    opt.sync(), opt2.sync()
    np.testing.assert_array_equal(W, W2)
    for k in opt.state:
        np.testing.assert_array_equal(opt.state[k], opt2.state[k])


def test_state_dict_is_a_copy():
    W = np.ones(3)
    opt = optim.Adam(W)
    d = opt.state_dict()
    opt.step(np.ones(3))
    assert d["t"] == 0 and not d["m"].any()


def test_lr_can_change_between_steps():
    W = np.ones(2)
    opt = optim.SGD(W, lr=0.1)
    opt.step(np.ones(2))
    opt.lr = 0.5
    opt.step(np.ones(2))
    np.testing.assert_allclose(W, 1 - 0.1 - 0.5)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 0.5


def test_repr_names_the_optimizer():
    assert "Adam" in repr(optim.Adam(np.ones(2)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lazy", ["skip", "exact"])
def test_sparse_step_allocates_nothing_of_table_size(name, lazy):
    """A sparse step on a 2M x 4 table allocates O(k * n_cols) on the Python side, not O(n_rows)."""
    import tracemalloc

    W = np.zeros((2_000_000, 4), dtype=np.float32)  # 32 MB
    opt, _ = make(name, W, lazy=lazy)
    rows = np.array([5, 1_999_999, 5, 17])
    v = np.ones((4, 4), dtype=np.float32)
    opt.step_rows(rows, v)  # compile outside the measurement
    tracemalloc.start()
    for _ in range(3):
        opt.step_rows(rows, v)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024, peak
    assert W[[0, 2]].sum() == 0 and W[5].any()


@pytest.mark.parametrize("variant", VARIANTS)
def test_sync_some_rows_before_reading(variant):
    """Catching up only the rows about to be read gives them their dense values (gradient from the table)."""
    name, extra = variant
    rng = np.random.default_rng(11)
    W = rng.standard_normal((12, 2))
    opt, ref = make(name, W, extra, lazy="exact")
    for _ in range(60):
        rows = rng.integers(0, 12, size=3)
        opt.sync(rows)
        np.testing.assert_allclose(W[rows], ref.p[rows], **tol(np.float64, exact=True))
        v = W[rows] - 0.5  # a gradient read from the current rows (as a forward pass would)
        opt.step_rows(rows, v)
        ref.dense(ref.to_dense(rows, ref.p[rows] - 0.5))
    opt.sync()
    assert_same(opt, ref, exact=True)


def test_sync_rows_checks_rows():
    W = np.ones((3, 2))
    opt = optim.Adam(W, lazy="exact")
    opt.step_rows([0], np.ones((1, 2)))
    with pytest.raises(IndexError):
        opt.sync([3])
    with pytest.raises(IndexError):
        optim.Adam(np.ones(2)).sync([-1])
