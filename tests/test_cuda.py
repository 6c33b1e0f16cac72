"""The CUDA backend of the optimizers against their CPU path.

CI runs these on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before
Python starts, as ``.ci/run`` does) with tiny arrays and tiny launch
configurations (4 threads per block, at most 2 blocks), so that multi-block
and grid-stride paths run.  On a machine with a GPU and without the variable
they run on the GPU.  The simulator checks logic, not that the kernels
compile for a GPU: ``python -m sparseopt.cuda.check_ptx`` does that.

Tolerances.  Both sides run the same rules (``sparseopt._rules``) in the
parameter's dtype; under the simulator they are the same machine code and
agree to the bit.  On a GPU, FMA contraction and libdevice's ``pow``/``sqrt``
may each differ from the CPU by an ulp, and float atomics may sum a row
repeated three or more times in another order: over the handful of steps
here that stays far below rtol 1e-10 (float64) / 1e-5 (float32, ulp 1.2e-7),
with an absolute floor for values near zero.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import sparseopt.cuda as sc
from sparseopt import optim

try:
    import numba_cuda  # noqa: F401

    HAVE_NUMBA_CUDA = True
except ImportError:
    HAVE_NUMBA_CUDA = False

SIMULATOR = sc.simulator_enabled()
RUNNABLE = HAVE_NUMBA_CUDA and sc.is_available()
needs_cuda = pytest.mark.skipif(not RUNNABLE, reason="needs numba-cuda and a GPU or NUMBA_ENABLE_CUDASIM=1")

from cases import DTYPES, HYPER, NAMES, VARIANTS  # noqa: E402


def tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """4 threads per block, at most 2 blocks: every kernel runs multi-block and grid-stride."""
    if RUNNABLE:
        from sparseopt.cuda import _kernels as K

        monkeypatch.setattr(K, "THREADS_PER_BLOCK", 4)
        monkeypatch.setattr(K, "MAX_BLOCKS", 2)


def cuda():
    from numba import cuda as c

    return c


def dev(a):
    return cuda().to_device(np.ascontiguousarray(a))


class Exporter:
    """A foreign GPU array (like a CuPy array or a torch CUDA tensor) seen only through
    ``__cuda_array_interface__``, over the same bytes as the NumPy array ``host`` (a view of a
    contiguous array keeps its offset and strides).

    Under the simulator "device" memory is host memory, so it exports ``host``'s own buffer
    (``host`` then shows in-place updates); on a GPU it exports a device copy, which ``host``
    reads back.  ``device=False`` exports host memory even there, for tests that never let
    the address be read (no GPU, or a pointer replaced before use)."""

    def __init__(self, host, readonly=False, device=None):
        self._host, self._dev = host, None
        ptr = host.ctypes.data
        if (RUNNABLE and not SIMULATOR) if device is None else device:
            base = host if host.base is None else host.base
            assert isinstance(base, np.ndarray) and base.base is None and base.flags.c_contiguous
            self._offset = ptr - base.ctypes.data
            self._dev = cuda().to_device(base)
            ptr = self._dev.device_ctypes_pointer.value + self._offset
        self.__cuda_array_interface__ = {
            "shape": host.shape,
            "typestr": host.dtype.str,
            "data": (ptr, readonly),
            "strides": None if host.flags.c_contiguous else host.strides,
            "version": 3,
        }

    @property
    def host(self):
        """The exported values, as a NumPy array (read back from the GPU where there is one)."""
        if self._dev is None:
            return self._host
        h = self._host
        return np.ndarray(h.shape, h.dtype, buffer=self._dev.copy_to_host(), offset=self._offset, strides=h.strides)


class Parameter:
    """Like ``torch.nn.Parameter`` on the GPU: refuses ``__cuda_array_interface__`` while it
    requires grad; ``detach()`` gives the same memory."""

    requires_grad = True
    is_cuda = True

    def __init__(self, host):
        self._detached = Exporter(host)

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad")

    def detach(self):
        return self._detached


def pair(name, extra, W, lazy):
    """The same optimizer on the GPU (a device copy of ``W``) and on the CPU (a host copy)."""
    hyper = {**HYPER[name], **extra}
    cls = getattr(optim, name)
    return cls(dev(W), lazy=lazy, **hyper), cls(W.copy(), lazy=lazy, **hyper)


def assert_same(gpu, cpu):
    gpu.sync()
    cpu.sync()
    k = tol(cpu.param.dtype)
    np.testing.assert_allclose(gpu.param.copy_to_host(), cpu.param, **k)
    dg, dc = gpu.state_dict(), cpu.state_dict()
    assert set(dg) == set(dc)
    for key, value in dc.items():
        if isinstance(value, np.ndarray):
            assert isinstance(dg[key], np.ndarray) and dg[key].dtype == value.dtype
            np.testing.assert_allclose(dg[key], value, **k, err_msg=key)
        else:
            assert dg[key] == value, key
    assert gpu.t == cpu.t


def rows_grad(rng, dtype, n_cols, rows):
    return rng.standard_normal((len(rows), n_cols)).astype(dtype)


# --------------------------------------------------------------------------
# every optimizer, dense / skip / exact, float32 / float64
# --------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("mode", ["dense", "skip", "exact"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_cpu(variant, dtype, mode):
    name, extra = variant
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 3)).astype(dtype)
    gpu, cpu = pair(name, extra, W, "skip" if mode == "dense" else mode)
    for step in range(4):
        if mode == "dense":
            g = rng.standard_normal(W.shape).astype(dtype)
            gpu.step(g)
            cpu.step(g)
        else:
            rows = [[4, 0, 4], [1], [], [0, 3, 0, 0, 2]][step]  # repeats, and an empty step
            vals = rows_grad(rng, dtype, 3, rows)
            gpu.step_rows(np.array(rows, dtype=np.int64), vals)
            cpu.step_rows(np.array(rows, dtype=np.int64), vals)
    if mode == "exact":  # a dense step syncs first, then every row is current
        g = rng.standard_normal(W.shape).astype(dtype)
        gpu.step(g)
        cpu.step(g)
    assert_same(gpu, cpu)


@needs_cuda
@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_parameter(name, lazy):
    rng = np.random.default_rng(2)
    W = rng.standard_normal(7)
    gpu, cpu = pair(name, {"weight_decay": 0.05}, W, lazy)
    for rows in ([6, 0, 6], [], [3]):
        vals = rng.standard_normal(len(rows))
        gpu.step_rows(rows, vals)
        cpu.step_rows(rows, vals)
    g = rng.standard_normal(7)
    gpu.step(g)
    cpu.step(g)
    gpu.step_rows([1, 1], [0.5, -0.25])
    cpu.step_rows([1, 1], [0.5, -0.25])
    assert_same(gpu, cpu)


@needs_cuda
@pytest.mark.parametrize("lazy", ["skip", "exact"])
def test_repeated_rows_are_summed(lazy):
    """Twelve entries over three rows (sums cross blocks) equal one pre-summed entry per row."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((6, 2))
    rows = np.array([5, 1, 5, 5, 1, 3, 5, 1, 5, 3, 1, 5])
    vals = rng.standard_normal((12, 2))
    a, _ = pair("Adam", {}, W, lazy)
    b, _ = pair("Adam", {}, W, lazy)
    a.step_rows(dev(rows), dev(vals))
    summed = np.array([vals[rows == r].sum(axis=0) for r in (1, 3, 5)])
    b.step_rows([1, 3, 5], summed)
    np.testing.assert_allclose(a.param.copy_to_host(), b.param.copy_to_host(), rtol=1e-12)
    np.testing.assert_allclose(a.state["v"].copy_to_host(), b.state["v"].copy_to_host(), rtol=1e-12)
    untouched = [0, 2, 4]
    np.testing.assert_array_equal(a.param.copy_to_host()[untouched], W[untouched])


@needs_cuda
@pytest.mark.parametrize("lazy", ["skip", "exact"])
def test_device_inputs_any_dtype(lazy):
    """Rows (int32) and values (float64 for a float32 parameter) on the device; the caller's
    device values are not modified by the in-place summation of repeats."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((5, 3)).astype(np.float32)
    gpu, cpu = pair("RMSProp", {"weight_decay": 0.1}, W, lazy)
    rows = np.array([2, 0, 2], dtype=np.int32)
    vals = rng.standard_normal((3, 3))
    d_vals = dev(vals)
    gpu.step_rows(dev(rows), d_vals)
    cpu.step_rows(rows, vals)
    np.testing.assert_array_equal(d_vals.copy_to_host(), vals)
    g = rng.standard_normal((5, 3))
    gpu.step(dev(g))
    cpu.step(g)
    grad = sp.csr_matrix(np.where(rng.random((5, 3)) < 0.3, rng.standard_normal((5, 3)), 0.0))
    gpu.step(grad)
    cpu.step(grad)
    assert_same(gpu, cpu)


@needs_cuda
def test_learning_rate_schedule():
    """``lr`` changed between steps reaches the kernels (hyperparameters travel with each launch)."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((4, 2))
    gpu, cpu = pair("Momentum", {}, W, "exact")
    for lr in (0.1, 0.05, 0.01):
        gpu.lr = cpu.lr = lr
        vals = rng.standard_normal((2, 2))
        gpu.step_rows([3, 1], vals)
        cpu.step_rows([3, 1], vals)
    assert_same(gpu, cpu)


@needs_cuda
def test_empty_sparse_step_advances_t():
    W = np.ones((4, 2))
    gpu, cpu = pair("Momentum", {}, W, "exact")
    for opt in (gpu, cpu):
        opt.step_rows([1], np.ones((1, 2)))
        opt.step_rows(dev(np.zeros(0, dtype=np.int64)) if opt is gpu else [], np.zeros((0, 2)))
        opt.step(sp.csr_matrix((4, 2)))
        assert opt.t == 3
    assert_same(gpu, cpu)  # row 1 caught up over the two empty steps


# --------------------------------------------------------------------------
# foreign GPU arrays (__cuda_array_interface__), in place
# --------------------------------------------------------------------------


@needs_cuda
def test_cuda_array_interface_updated_in_place():
    rng = np.random.default_rng(5)
    host = rng.standard_normal((5, 3)).astype(np.float32)
    ref = host.copy()
    W = Exporter(host)
    opt = optim.Adam(W, lr=0.01, lazy="exact")
    cpu = optim.Adam(ref, lr=0.01, lazy="exact")
    rows = Exporter(np.array([1, 4, 1], dtype=np.int64))
    vals_host = rng.standard_normal((3, 3)).astype(np.float32)
    vals = Exporter(vals_host)
    opt.step_rows(rows, vals)
    cpu.step_rows(rows.host, vals_host)
    np.testing.assert_array_equal(vals_host, vals.host)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    opt.step(Exporter(g))
    cpu.step(g)
    opt.sync()
    cpu.sync()
    np.testing.assert_allclose(W.host, ref, **tol(np.float32))  # the exporter's own memory moved
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD(Exporter(np.zeros(3), readonly=True))
    # a parameter that requires grad is updated through its detached view
    p = Parameter(np.ones(3))
    optim.SGD(p, lr=0.5).step(np.ones(3))
    np.testing.assert_array_equal(p.detach().host, 0.5)


def _reusable_buffer(host):
    """A foreign GPU array over a copy of ``host`` and a function that overwrites its contents
    in place (the same memory, as a training loop's ``.grad``): the exporter stand-in under
    the simulator, a torch CUDA tensor on a GPU."""
    if SIMULATOR:
        buf = host.copy()
        return Exporter(buf), lambda a: buf.__setitem__(Ellipsis, a)
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no torch with CUDA")
    t = torch.from_numpy(host.copy()).cuda()
    return t, lambda a: (t.copy_(torch.from_numpy(np.ascontiguousarray(a))), torch.cuda.synchronize())


@needs_cuda
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_reused_input_memory_is_read_and_checked_each_step(name):
    """The backend keeps the view it made of a foreign input and reuses it when the next input
    is the same memory: the values must still be read, and checked, at every step."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((6, 3)).astype(np.float32)
    gpu, cpu = pair(name, {}, W, "exact")
    gpu.check_finite = cpu.check_finite = True
    grad, set_grad = _reusable_buffer(np.zeros((6, 3), dtype=np.float32))
    rows, set_rows = _reusable_buffer(np.zeros(4, dtype=np.int64))
    vals, set_vals = _reusable_buffer(np.zeros((4, 3), dtype=np.float32))
    for _ in range(3):
        g = rng.standard_normal((6, 3)).astype(np.float32)
        r = rng.integers(0, 6, size=4)
        v = rng.standard_normal((4, 3)).astype(np.float32)
        set_grad(g)
        set_rows(r)
        set_vals(v)
        gpu.step(grad)
        cpu.step(g)
        gpu.step_rows(rows, vals)
        cpu.step_rows(r, v)
    assert_same(gpu, cpu)
    snap = snapshot(gpu)
    set_grad(np.full((6, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        gpu.step(grad)
    set_rows(np.array([0, 1, 6, 2]))
    with pytest.raises(IndexError, match="out of range"):
        gpu.step_rows(rows, vals)
    set_rows(np.array([0, 1, 2, 3]))
    set_vals(np.full((4, 3), np.inf, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        gpu.step_rows(rows, vals)
    assert_unchanged(gpu, snap)
    assert gpu.t == cpu.t


@needs_cuda
def test_torch_and_cupy_if_present():
    """Real foreign GPU arrays, when this machine has them (never under the simulator)."""
    if SIMULATOR:
        pytest.skip("simulator: no real GPU memory to share")
    done = 0
    for make in _foreign_makers():
        W = make(np.arange(6, dtype=np.float32).reshape(3, 2))
        ref = np.arange(6, dtype=np.float32).reshape(3, 2)
        opt, cpu = optim.SGD(W, lr=0.5), optim.SGD(ref, lr=0.5)
        opt.step_rows(make(np.array([2, 0, 2])), make(np.ones((3, 2), dtype=np.float32)))
        cpu.step_rows([2, 0, 2], np.ones((3, 2), dtype=np.float32))
        np.testing.assert_allclose(opt.param.copy_to_host(), ref)
        done += 1
    if not done:
        pytest.skip("neither torch with CUDA nor CuPy installed")


def _foreign_makers():
    try:
        import torch

        if torch.cuda.is_available():
            yield lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()
    except ImportError:
        pass
    try:
        import cupy

        yield cupy.asarray
    except ImportError:
        pass


# --------------------------------------------------------------------------
# state dicts move between CPU and GPU
# --------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_moves_between_cpu_and_gpu(name, tmp_path):
    rng = np.random.default_rng(6)
    W = rng.standard_normal((5, 2))
    gpu, cpu = pair(name, {"weight_decay": 0.01}, W, "exact")
    for rows in ([0, 3, 0], [2]):
        vals = rng.standard_normal((len(rows), 2))
        gpu.step_rows(rows, vals)
        cpu.step_rows(rows, vals)
    # GPU -> file -> CPU, continuing from the GPU's parameters
    np.savez(tmp_path / "s.npz", **gpu.state_dict())
    cpu2 = getattr(optim, name)(gpu.param.copy_to_host(), **HYPER[name])
    cpu2.load_state_dict(dict(np.load(tmp_path / "s.npz")))
    # CPU -> GPU (state_dict syncs the CPU optimizer's parameters too)
    d = cpu.state_dict()
    gpu2 = getattr(optim, name)(dev(cpu.param), **HYPER[name])
    gpu2.load_state_dict(d)
    assert gpu2.lazy == "exact" and gpu2.t == 2
    for rows in ([4, 4], [], [1, 0]):
        vals = rng.standard_normal((len(rows), 2))
        for opt in (gpu, cpu, cpu2, gpu2):
            opt.step_rows(rows, vals)
    assert_same(gpu, cpu)
    assert_same(gpu2, cpu2)
    assert_same(gpu2, cpu)


# --------------------------------------------------------------------------
# bad input: a clear error, nothing changed
# --------------------------------------------------------------------------


def snapshot(opt):
    d = opt.state_dict()
    return opt.param.copy_to_host(), d


def assert_unchanged(opt, snap):
    p, d = snap
    np.testing.assert_array_equal(opt.param.copy_to_host(), p)
    d2 = opt.state_dict()
    for k, v in d.items():
        np.testing.assert_array_equal(d2[k], v, err_msg=k)


BAD_ROWS = [
    pytest.param(lambda: ([0, 5], np.ones((2, 3))), IndexError, "out of range", id="host-row-too-large"),
    pytest.param(lambda: (dev(np.array([0, 5])), np.ones((2, 3))), IndexError, "out of range", id="device-row-too-large"),
    pytest.param(lambda: (dev(np.array([-1, 2])), dev(np.ones((2, 3)))), IndexError, "negative", id="device-row-negative"),
    pytest.param(lambda: (dev(np.array([0.0, 1.0])), np.ones((2, 3))), TypeError, "integers", id="device-float-rows"),
    pytest.param(lambda: (dev(np.zeros((2, 1), dtype=np.int64)), np.ones((2, 3))), ValueError, "1-D", id="device-2d-rows"),
    pytest.param(lambda: ([0, 1], dev(np.ones((3, 3)))), ValueError, "do not match", id="device-values-wrong-k"),
    pytest.param(lambda: ([0, 1], dev(np.ones((2, 4)))), ValueError, "shape", id="device-values-wrong-cols"),
    pytest.param(lambda: ([0, 1], dev(np.ones((2, 3), dtype=np.int64))), TypeError, "floating", id="device-int-values"),
    pytest.param(lambda: ([0, 1], np.ones((2, 3), dtype=np.int64)), TypeError, "floating", id="host-int-values"),
    pytest.param(lambda: ([0, 1], dev(np.array([[1.0, np.nan, 0], [0, 0, 0]]))), ValueError, "NaN", id="device-nan"),
    pytest.param(lambda: ([0, 1], np.array([[1.0, np.inf, 0], [0, 0, 0]])), ValueError, "NaN", id="host-inf"),
    # numpy's own message ("inhomogeneous shape") named neither values nor the problem
    pytest.param(lambda: ([0, 1], [[1.0, 2.0, 3.0], [1.0]]), ValueError, "values is not a regular",
                 id="host-ragged-values"),
    # the cast to int64 wrapped 2**63 + 1 around to a negative index (simulator: OverflowError)
    pytest.param(lambda: (dev(np.array([1, 2**63 + 1], dtype=np.uint64)), np.ones((2, 3))), IndexError,
                 "index 9223372036854775809, out of range for 5 rows", id="device-uint64-beyond-int64"),
    pytest.param(lambda: (dev(np.array([2**64 - 1], dtype=np.uint64)), np.ones((1, 3))), IndexError,
                 "index 18446744073709551615, out of range", id="device-uint64-max"),
    pytest.param(lambda: (dev(np.array([0, 9, 1, 9]))[::2], np.ones((2, 3))), ValueError, "rows is a non-contiguous",
                 id="device-strided-rows"),
]


@needs_cuda
@pytest.mark.parametrize("make_input, error, match", BAD_ROWS)
def test_bad_rows_change_nothing(make_input, error, match):
    rng = np.random.default_rng(7)
    opt, _ = pair("Adam", {}, rng.standard_normal((5, 3)), "exact")
    opt.check_finite = True
    opt.step_rows([1, 2], np.ones((2, 3)))
    snap = snapshot(opt)
    rows, values = make_input()
    with pytest.raises(error, match=match):
        opt.step_rows(rows, values)
    assert opt.t == 1
    assert_unchanged(opt, snap)


BAD_DENSE = [
    pytest.param(lambda: dev(np.ones((5, 2))), ValueError, "shape", id="device-wrong-shape"),
    # a strided view (a transpose is not it: on a GPU, Numba's .T of a 2-D array is a contiguous copy)
    pytest.param(lambda: dev(np.ones((5, 6)))[:, ::2], ValueError, "contiguous", id="device-strided"),
    pytest.param(lambda: dev(np.ones((5, 3), dtype=np.int32)), TypeError, "floating", id="device-int"),
    pytest.param(lambda: dev(np.full((5, 3), np.nan)), ValueError, "NaN", id="device-nan"),
    pytest.param(lambda: np.ones(15), ValueError, "shape", id="host-wrong-shape"),
    pytest.param(lambda: sp.csr_matrix((5, 4)), ValueError, "shape", id="sparse-wrong-shape"),
]


@needs_cuda
@pytest.mark.parametrize("make_grad, error, match", BAD_DENSE)
def test_bad_dense_grad_changes_nothing(make_grad, error, match):
    opt, _ = pair("Momentum", {}, np.ones((5, 3), dtype=np.float32), "exact")
    opt.check_finite = True
    opt.step_rows([0], np.ones((1, 3)))
    snap = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.step(make_grad())
    assert opt.t == 1
    assert_unchanged(opt, snap)


@needs_cuda
def test_non_contiguous_device_values_rejected():
    opt, _ = pair("SGD", {}, np.ones((5, 3)), "skip")
    values = dev(np.ones((2, 6)))[:, ::2]  # shape (2, 3), a strided view
    assert not values.is_c_contiguous()
    with pytest.raises(ValueError, match="contiguous"):
        opt.step_rows([0, 1], values)
    assert opt.t == 0


@needs_cuda
@pytest.mark.parametrize(
    "make_W, error, match",
    [
        (lambda: dev(np.ones((2, 2), dtype=np.int64)), TypeError, "float32 or float64"),
        (lambda: dev(np.ones((2, 2, 2))), ValueError, "1-D or 2-D"),
        (lambda: dev(np.ones((0, 2))), ValueError, "empty"),
        (lambda: dev(np.ones((3, 4)))[:, :2], ValueError, "C-contiguous"),
        (lambda: Exporter(np.ones((3, 4))[:, ::2]), ValueError, "C-contiguous"),
        (lambda: Exporter(np.ones((3, 4), dtype=np.float16)), TypeError, "float32 or float64"),
    ],
)
def test_bad_device_parameter(make_W, error, match):
    with pytest.raises(error, match=match):
        optim.Adam(make_W())


@needs_cuda
def test_unsigned_device_rows_in_range_are_used_as_they_are():
    rng = np.random.default_rng(13)
    W = rng.standard_normal((5, 2))
    gpu, cpu = pair("Momentum", {}, W, "exact")
    for rows in ([4, 0, 4], [3]):
        vals = rng.standard_normal((len(rows), 2))
        gpu.step_rows(dev(np.array(rows, dtype=np.uint64)), vals)
        cpu.step_rows(rows, vals)
    assert_same(gpu, cpu)


def _null_exporter(shape):
    """A foreign GPU array whose ``__cuda_array_interface__`` names no memory."""
    e = Exporter(np.zeros(shape), device=False)
    e.__cuda_array_interface__ = dict(e.__cuda_array_interface__, data=(0, False))
    return e


@needs_cuda
def test_null_data_pointer_rejected():
    # under the simulator such a parameter became a private uninitialised buffer, updated silently
    with pytest.raises(ValueError, match="W is a GPU array of shape \\(3, 2\\) with a null data pointer"):
        optim.Adam(_null_exporter((3, 2)))
    opt = optim.SGD(dev(np.ones((3, 2))))
    with pytest.raises(ValueError, match="grad is a GPU array .* null data pointer"):
        opt.step(_null_exporter((3, 2)))
    with pytest.raises(ValueError, match="values is a GPU array .* null data pointer"):
        opt.step_rows([0], _null_exporter((1, 2)))
    assert opt.t == 0
    np.testing.assert_array_equal(opt.param.copy_to_host(), 1.0)
    optim.SGD(dev(np.ones(2))).step_rows(np.zeros(0, np.int64), _null_exporter((0,)))  # empty: no memory needed


@needs_cuda
@pytest.mark.parametrize("wrap", [dev, Exporter], ids=["numba", "exporter"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_checks_the_parameter_when_the_optimizer_is_made(wrap, bad):
    # as on the CPU; the GPU backend made the optimizer, and its steps spread the NaN
    host = np.array([[0.0, 1.0], [bad, 2.0], [3.0, 4.0]])
    W = wrap(host.copy())
    with pytest.raises(ValueError, match="W contains NaN or infinite values \\(check_finite=True\\)"):
        optim.Adam(W, lr=0.1, check_finite=True)
    got = W.copy_to_host() if hasattr(W, "copy_to_host") else W.host
    np.testing.assert_array_equal(got, host)
    optim.Adam(W, lr=0.1)  # without the check, as on the CPU
    optim.Adam(wrap(np.ones((3, 2))), check_finite=True)  # a finite parameter passes


def _int_null_exporter(shape):
    e = _null_exporter(shape)
    e.__cuda_array_interface__ = dict(e.__cuda_array_interface__, typestr=np.dtype(np.int64).str)
    return e


# device rows, numba's own and foreign (seen only through __cuda_array_interface__)
BAD_DEVICE_ROWS = [
    pytest.param(lambda: Exporter(np.array([0, 5])), IndexError, "index 5, out of range for 5 rows",
                 id="exporter-too-large"),
    pytest.param(lambda: Exporter(np.array([-1, 2])), IndexError, "negative index \\(-1\\)", id="exporter-negative"),
    pytest.param(lambda: Exporter(np.array([1, 2**63 + 1], dtype=np.uint64)), IndexError,
                 "index 9223372036854775809, out of range for 5 rows", id="exporter-uint64-beyond-int64"),
    pytest.param(lambda: dev(np.array([1, 2**63 + 1], dtype=np.uint64)), IndexError,
                 "index 9223372036854775809, out of range for 5 rows", id="device-uint64-beyond-int64"),
    pytest.param(lambda: Exporter(np.array([0.0, 1.0])), TypeError, "rows must hold integers", id="exporter-float"),
    pytest.param(lambda: Exporter(np.zeros((2, 1), dtype=np.int64)), ValueError, "rows must be 1-D",
                 id="exporter-2d"),
    pytest.param(lambda: Exporter(np.array([0, 9, 1, 9])[::2]), ValueError, "rows is a non-contiguous",
                 id="exporter-strided"),
    pytest.param(lambda: dev(np.array([0, 9, 1, 9]))[::2], ValueError, "rows is a non-contiguous",
                 id="device-strided"),
    pytest.param(lambda: _int_null_exporter((2,)), ValueError, "rows is a GPU array of shape \\(2,\\) with a null",
                 id="exporter-null-pointer"),
]


@needs_cuda
@pytest.mark.parametrize("lazy, n_steps", [("exact", 1), ("skip", 0)])
@pytest.mark.parametrize("make_rows, error, match", BAD_DEVICE_ROWS)
def test_sync_checks_device_rows_as_step_rows_does(make_rows, error, match, lazy, n_steps):
    """sync(rows) checked device rows with the host's check_rows: a foreign GPU array was refused
    as if the optimizer were on the host, and a strided Numba one accepted (simulator)."""
    opt = optim.Adam(dev(np.ones((5, 3))), lazy=lazy, weight_decay=0.1)
    for _ in range(n_steps):
        opt.step_rows([1], np.ones((1, 3)))
    raw = _raw(opt)
    for call in (lambda r: opt.step_rows(r, np.ones((2, 3))), opt.sync):
        with pytest.raises(error, match=match):
            call(make_rows())
        _assert_raw_equal(opt, raw)


@needs_cuda
def test_sync_takes_foreign_device_rows():
    gpu, cpu = pair("Momentum", {"weight_decay": 0.1}, np.ones((5, 3)), "exact")
    for opt in (gpu, cpu):
        opt.step_rows([1, 3], np.ones((2, 3)))
        opt.step_rows([0], np.ones((1, 3)))
    gpu.sync(Exporter(np.array([1, 1, 4], dtype=np.int32)))
    cpu.sync([1, 1, 4])
    assert_same(gpu, cpu)


OVERFLOW = {np.float64: 1e308, np.float32: 3e38}


@needs_cuda
@pytest.mark.filterwarnings("ignore:.*overflow encountered:RuntimeWarning")  # the simulator's atomic add
@pytest.mark.parametrize("dtype, where", [(np.float64, "host"), (np.float64, "device"), (np.float32, "host"),
                                          (np.float32, "device"), (np.float32, "device-cast"),
                                          (np.float32, "exporter")])
def test_repeated_rows_summing_to_infinity_are_rejected(dtype, where):
    """With check_finite, finite values whose repeated rows sum beyond the float range are refused
    (the device summed them into an infinity that went into param and state), as on the CPU."""
    big = OVERFLOW[dtype]
    opt, cpu = pair("Adam", {}, np.ones((4, 2), dtype=dtype), "exact")
    opt.check_finite = True
    for o in (opt, cpu):
        o.step_rows([0, 1], np.ones((2, 2)))
    raw = _raw(opt)
    host = np.array([[big, 1.0], [1.0, 1.0], [big, -1.0], [1.0, -big], [1.0, -big]], dtype=dtype)
    wrap = {"host": lambda a: a, "device": dev, "device-cast": lambda a: dev(a.astype(np.float64)),
            "exporter": Exporter}[where]
    with pytest.raises(ValueError, match=f"values holds only finite values, but summed over repeated rows "
                                         f"in {np.dtype(dtype).name} they overflow to infinity"):
        opt.step_rows([2, 0, 2, 3, 3], wrap(host))
    _assert_raw_equal(opt, raw)
    host[1, 1] = np.nan  # a NaN is named as such, repeats or not
    with pytest.raises(ValueError, match="values contains NaN or infinite values"):
        opt.step_rows([2, 0, 2, 3, 3], wrap(host))
    _assert_raw_equal(opt, raw)
    if where == "device-cast":  # beyond float32 once cast: infinite in the parameter's dtype, as on the CPU
        with pytest.raises(ValueError, match="values contains NaN or infinite values"):
            opt.step_rows([1], dev(np.full((1, 2), 1e300)))
        _assert_raw_equal(opt, raw)
    # the refused steps freed the rows they had claimed: row 2 is not taken for row 3's sum
    opt.step_rows([3, 2, 0, 2], wrap(np.ones((4, 2), dtype=dtype)))
    cpu.step_rows([3, 2, 0, 2], np.ones((4, 2)))
    assert_same(opt, cpu)


def _raw(opt):
    """param, state, t and last as they are (``state_dict`` would catch rows up first)."""
    return (opt.param.copy_to_host(), {k: v.copy_to_host() for k, v in opt.state.items()}, opt.t,
            opt._last.copy_to_host())


def _assert_raw_equal(opt, raw, t=None):
    W, state, t0, last = raw
    np.testing.assert_array_equal(opt.param.copy_to_host(), W)
    for k, v in state.items():
        np.testing.assert_array_equal(opt.state[k].copy_to_host(), v, err_msg=k)
    assert opt.t == (t0 if t is None else t)
    np.testing.assert_array_equal(opt._last.copy_to_host(), last)


@needs_cuda
@pytest.mark.parametrize("name", ["Momentum", "Adam"])
def test_replaced_param_or_state_raises(name):
    """The kernels write through views made at construction: an array put in ``param``'s or a
    state's place was ignored by every step (the original moved on unseen)."""
    opt = optim.__dict__[name](dev(np.ones((3, 2))), lazy="exact")
    opt.step_rows([1], np.ones((1, 2)))
    own_param, own_state = opt.param, dict(opt.state)
    raw = _raw(opt)
    opt.param = dev(np.zeros((3, 2)))
    for call in (lambda: opt.step(np.ones((3, 2))), lambda: opt.step_rows([0], np.ones((1, 2))),
                 lambda: opt.step(sp.csr_matrix(np.eye(3, 2))), opt.sync):
        with pytest.raises(RuntimeError, match="param was replaced"):
            call()
    assert not opt.param.copy_to_host().any()
    opt.param = own_param
    _assert_raw_equal(opt, raw)
    key = opt._state_names[0]
    opt.state[key] = dev(np.zeros(2))
    with pytest.raises(RuntimeError, match="state was replaced"):
        opt.step(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match="state was replaced"):
        opt.state_dict()  # it syncs first
    # load_state_dict, the way out, loads into the optimizer's own arrays and names them again
    _, cpu = pair(name, {}, np.ones((3, 2)), "exact")
    cpu.step_rows([1], np.ones((1, 2)))
    d = cpu.state_dict()
    opt.load_state_dict(d)
    assert opt.state[key] is own_state[key]
    opt.step_rows([2], np.ones((1, 2)))
    cpu.step_rows([2], np.ones((1, 2)))
    opt.param.copy_to_device(cpu.param)  # load_state_dict does not carry param
    opt.step_rows([0], np.ones((1, 2)))
    cpu.step_rows([0], np.ones((1, 2)))
    np.testing.assert_allclose(opt.param.copy_to_host(), cpu.param, rtol=1e-12)
    for k in opt.state:
        np.testing.assert_allclose(opt.state[k].copy_to_host(), cpu.state[k], rtol=1e-12, err_msg=k)


@needs_cuda
@pytest.mark.parametrize("name", ["Momentum", "RMSProp", "Adam"])
def test_t_below_caught_up_rows_writes_nothing(name):
    """``t`` set below the step some rows are at (in exact mode) would run their catch-up
    backwards: refused (at the assignment or at the next step, sync or state_dict), nothing
    written, and a ``t`` at least that step works again."""
    opt = optim.__dict__[name](dev(np.ones((4, 2))), lazy="exact", weight_decay=0.1)
    for rows in ([1], [2], [2]):
        opt.step_rows(rows, np.ones((1, 2)))
    raw = _raw(opt)
    for call in (lambda: opt.step_rows([2], np.ones((1, 2))), lambda: opt.step(np.ones((4, 2))), opt.sync,
                 opt.state_dict, lambda: opt.step(sp.csr_matrix(np.eye(4, 2)))):
        with pytest.raises(ValueError, match="t=1 is below the step some rows are already at \\(3\\)"):
            opt.t = 1  # accepted on the GPU path by optim.Optimizer.t (it reads no device state)
            call()
        _assert_raw_equal(opt, raw, t=opt.t)
    opt.t = 3
    _assert_raw_equal(opt, raw)
    opt.step_rows([0], np.ones((1, 2)))
    assert opt.t == 4


@needs_cuda
def test_max_last_follows_the_row_counters():
    """The host's record of the largest row counter (what the check above compares ``t`` with)
    equals the device counters' maximum after every kind of update."""
    opt = optim.Adam(dev(np.ones((4, 2))), lazy="exact")
    be = opt._dev

    def check():
        assert be.max_last() == opt._last.copy_to_host().max()

    check()
    opt.step_rows([1, 1], np.ones((2, 2)))
    check()
    opt.step_rows([], np.zeros((0, 2)))
    check()
    opt.step(np.ones((4, 2)))
    check()
    opt.step_rows([3], np.ones((1, 2)))
    opt.t = 7
    opt.sync()
    check()
    d = opt.state_dict()
    d["last"] = np.array([2, 5, 0, 1])
    opt.load_state_dict(d)
    check()
    d["lazy"] = "skip"
    opt.load_state_dict(d)
    assert opt.lazy == "skip" and be.max_last() == 0


@needs_cuda
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copy_is_refused_clearly(how):
    """Copies of the device views came apart from the copied param (under the simulator a
    deepcopy's steps raised AttributeError, pickling recursed without end)."""
    import copy
    import pickle

    opt = optim.Adam(dev(np.ones((3, 2))), lazy="exact")
    opt.step_rows([1], np.ones((1, 2)))
    raw = _raw(opt)
    with pytest.raises(TypeError, match="cannot be copied or pickled: save its state_dict"):
        copy.deepcopy(opt) if how == "deepcopy" else pickle.dumps(opt)
    _assert_raw_equal(opt, raw)
    opt.step_rows([2], np.ones((1, 2)))
    assert opt.t == 2


@needs_cuda
def test_bad_state_dict_changes_nothing():
    opt, _ = pair("Adam", {}, np.ones((4, 2)), "exact")
    opt.step_rows([0, 0, 3], np.ones((3, 2)))
    snap = snapshot(opt)
    d = opt.state_dict()
    d["m"] = d["m"].astype(np.float32)
    with pytest.raises(ValueError, match="dtype"):
        opt.load_state_dict(d)
    assert_unchanged(opt, snap)


# --------------------------------------------------------------------------
# without numba-cuda or without a GPU
# --------------------------------------------------------------------------


def test_without_numba_cuda_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba_cuda", None)  # import numba_cuda now fails
    assert not sc.is_available()
    with pytest.raises(ImportError, match=r"numba-cuda.*pip install"):
        optim.Adam(Exporter(np.zeros((3, 2)), device=False))
    # the CPU path does not care
    W = np.ones(3)
    optim.SGD(W, lr=0.5).step(np.ones(3))
    np.testing.assert_array_equal(W, 0.5)


@pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="needs numba-cuda")
def test_without_gpu_a_clear_error(monkeypatch):
    c = cuda()
    monkeypatch.setattr(c, "is_available", lambda: False)
    assert not sc.is_available()
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        optim.Momentum(Exporter(np.zeros((3, 2)), device=False))


def test_host_arrays_never_use_the_gpu_backend():
    assert not sc.is_device_array(np.zeros(3))
    assert not sc.is_device_array([1.0, 2.0])
    assert sc.is_device_array(Exporter(np.zeros(3), device=False))
    with pytest.raises(TypeError, match="NumPy array"):
        optim.SGD([1.0, 2.0])


def test_import_sparseopt_does_not_load_numba_cuda():
    code = (
        "import sys, numpy as np, sparseopt, sparseopt.optim as o; "
        "o.SGD(np.ones(2)); "
        "assert 'numba_cuda' not in sys.modules and 'numba.cuda' not in sys.modules, "
        "sorted(m for m in sys.modules if 'cuda' in m)"
    )
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


@pytest.mark.skipif(
    SIMULATOR or not HAVE_NUMBA_CUDA or os.environ.get("SPARSEOPT_CHECK_PTX") != "1",
    reason="compiles every kernel with NVVM (minutes): set SPARSEOPT_CHECK_PTX=1 without the simulator",
)
def test_kernels_compile_to_ptx():
    from sparseopt.cuda import check_ptx

    assert check_ptx.main([]) == 0


# --------------------------------------------------------------------------
# linear models: CSR mini-batch gradients on the device
# --------------------------------------------------------------------------


def _toy_problem(rng, n=9, n_features=6, dtype=np.float64):
    X = sp.random(n, n_features, density=0.4, random_state=1, format="csr", dtype=dtype)
    keep = np.ones(n)
    keep[3] = 0.0  # a sample without stored entries
    X = sp.csr_matrix(sp.diags(keep) @ X)
    X.eliminate_zeros()
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(dtype)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype)
    return X, y, sw


def _reference_gradient(X, y, sw, idx, W, b, loss):
    """NumPy: gradient of sum_i sw_i loss(x_i W + b, y_i) / m over samples idx, and the loss sum."""
    Xb = X[idx].toarray()
    z = Xb @ W + b
    if loss == "squared":
        value, d = 0.5 * (z - y[idx]) ** 2, z - y[idx]
    else:
        value = np.logaddexp(0.0, -y[idx] * z)
        d = -y[idx] / (1.0 + np.exp(y[idx] * z))
    d = d * sw[idx] / len(idx)
    return Xb.T @ d, d.sum(), float((sw[idx] * value).sum())


@needs_cuda
@pytest.mark.parametrize("loss", ["squared", "log"])
def test_csr_batch_gradient_matches_numpy(loss):
    rng = np.random.default_rng(8)
    X, y, sw = _toy_problem(rng)
    W = rng.standard_normal(X.shape[1])
    b = np.array([0.3])
    Xd = sc.upload_csr(X)
    order = rng.permutation(X.shape[0])
    layout = sc.batch_layout(Xd, order)
    for start, stop in [(0, 4), (4, 9), (2, 3)]:
        rows, values, gb, loss_sum = sc.csr_batch_gradient(Xd, layout, dev(y), dev(sw), start, stop, dev(W), dev(b), loss)
        g = np.zeros(X.shape[1])
        np.add.at(g, rows.copy_to_host(), values.copy_to_host())
        ref_g, ref_gb, ref_loss = _reference_gradient(X, y, sw, order[start:stop], W, b[0], loss)
        np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gb.copy_to_host()[0], ref_gb, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(loss_sum.copy_to_host()[0], ref_loss, rtol=1e-12)


@needs_cuda
def test_csr_batch_gradient_multinomial():
    rng = np.random.default_rng(12)
    X, _, sw = _toy_problem(rng)
    n, n_features = X.shape
    n_classes = 3
    y = rng.integers(0, n_classes, n).astype(np.float64)
    W = rng.standard_normal((n_features, n_classes))
    b = rng.standard_normal(n_classes)
    Xd = sc.upload_csr(X)
    order = rng.permutation(n)
    layout = sc.batch_layout(Xd, order)
    rows, values, gb, loss_sum = sc.csr_batch_gradient(Xd, layout, dev(y), dev(sw), 1, 7, dev(W), dev(b), "multinomial")
    g = np.zeros_like(W)
    np.add.at(g, rows.copy_to_host(), values.copy_to_host())
    idx = order[1:7]
    Z = X[idx].toarray() @ W + b
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    D = P.copy()
    D[np.arange(len(idx)), y[idx].astype(int)] -= 1.0
    D *= (sw[idx] / len(idx))[:, None]
    ref_loss = (sw[idx] * -np.log(P[np.arange(len(idx)), y[idx].astype(int)])).sum()
    np.testing.assert_allclose(g, X[idx].toarray().T @ D, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb.copy_to_host(), D.sum(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loss_sum.copy_to_host()[0], ref_loss, rtol=1e-12)


@needs_cuda
def test_csr_training_epoch_matches_cpu():
    """One epoch of mini-batch exact-lazy Adam on the device equals the same epoch on the CPU."""
    rng = np.random.default_rng(9)
    X, y, sw = _toy_problem(rng)
    n, n_features = X.shape
    Xd = sc.upload_csr(X)
    y_d, sw_d = dev(y), dev(sw)
    W, b = dev(np.zeros(n_features)), dev(np.zeros(1))
    opt_W, opt_b = optim.Adam(W, lr=0.1, lazy="exact"), optim.Adam(b, lr=0.1)
    Wc, bc = np.zeros(n_features), np.zeros(1)
    cpu_W, cpu_b = optim.Adam(Wc, lr=0.1, lazy="exact"), optim.Adam(bc, lr=0.1)
    order = rng.permutation(n)
    layout = sc.batch_layout(Xd, order)
    for start in range(0, n, 4):
        stop = min(start + 4, n)
        rows, values, gb, _ = sc.csr_batch_gradient(Xd, layout, y_d, sw_d, start, stop, W, b, "log")
        opt_W.step_rows(rows, values)
        opt_b.step(gb)
        g, g_b, _ = _reference_gradient(X, y, sw, order[start:stop], Wc, bc[0], "log")
        touched = np.unique(X[order[start:stop]].indices)
        cpu_W.step_rows(touched, g[touched])
        cpu_b.step(np.array([g_b]))
    opt_W.sync()
    cpu_W.sync()
    np.testing.assert_allclose(W.copy_to_host(), Wc, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.copy_to_host(), bc, rtol=1e-10, atol=1e-12)
    assert np.abs(Wc).max() > 0.05  # the epoch moved the weights


@needs_cuda
def test_csr_bad_input():
    rng = np.random.default_rng(10)
    X, y, sw = _toy_problem(rng)
    Xd = sc.upload_csr(X)
    layout = sc.batch_layout(Xd, np.arange(X.shape[0]))
    W, b = dev(np.zeros(X.shape[1])), dev(np.zeros(1))
    args = (dev(y), dev(sw))
    with pytest.raises(ValueError, match="start < stop"):
        sc.csr_batch_gradient(Xd, layout, *args, 5, 5, W, b, "log")
    with pytest.raises(ValueError, match="loss"):
        sc.csr_batch_gradient(Xd, layout, *args, 0, 2, W, b, "hinge")
    with pytest.raises(ValueError, match="W has shape"):
        sc.csr_batch_gradient(Xd, layout, *args, 0, 2, dev(np.zeros(3)), b, "log")
    with pytest.raises(ValueError, match="output columns"):
        sc.csr_batch_gradient(Xd, layout, *args, 0, 2, W, b, "multinomial")
    with pytest.raises(ValueError, match="b has shape"):
        sc.csr_batch_gradient(Xd, layout, *args, 0, 2, dev(np.zeros((X.shape[1], 3))), b, "multinomial")
    with pytest.raises(TypeError, match="dtype"):
        sc.csr_batch_gradient(Xd, layout, *args, 0, 2, dev(np.zeros(X.shape[1], np.float32)), b, "log")
    with pytest.raises(IndexError, match="order"):
        sc.batch_layout(Xd, [0, X.shape[0]])
    with pytest.raises(TypeError, match="scipy.sparse"):
        sc.upload_csr(X.toarray())


@needs_cuda
@pytest.mark.skipif(not SIMULATOR, reason="on a GPU, run the benchmark itself")
def test_benchmark_script_runs(capsys):
    """benchmarks/bench_cuda.py --smoke: the script a GPU session will run does not rot."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_cuda.py")
    spec = importlib.util.spec_from_file_location("bench_cuda", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "dense step" in out and "sparse step" in out and "Adam" in out
