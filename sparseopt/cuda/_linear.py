"""Mini-batch gradients of linear models from CSR data on the GPU.

The building blocks an estimator needs to train on the device (see
:func:`sparseopt.cuda.csr_batch_gradient` for the call sequence):

1. :func:`upload_csr` checks a ``scipy.sparse`` matrix once and copies it to
   the device (``indptr``, ``indices`` as int64; ``data`` in the model's dtype).
2. :func:`batch_layout` gives, for an epoch's sample order, where each
   sample's stored entries start in the concatenated mini-batch (host, O(n)).
3. :func:`csr_batch_gradient` runs three kernels for samples
   ``order[start:stop]``: margins ``z = x W + b``; the loss and its
   derivative (``_loss_grad`` of :mod:`sparseopt.linear_model._epoch`:
   the estimators' own math); and one gradient entry per stored entry of
   the batch, ``rows[e] = j``, ``values[e] = sw x_j dloss / m``.  Repeated
   features are *not* summed here: the optimizer's ``step_rows`` sums them
   on the device, so ``opt.step_rows(rows, values)`` takes the step.

Kernels keep to the CUDA subset of Python; scalars reach the shared math
through ``@njit`` rules, arrays only through kernels.
"""

import types

import numpy as np
import scipy.sparse as sp
from numba import cuda, float64

from ..linear_model._epoch import LOG, MULTINOMIAL, SQUARED, _loss_grad
from . import _kernels as K

LOSSES = {"squared": SQUARED, "log": LOG, "multinomial": MULTINOMIAL}
MAX_OUTPUTS = 64  # classes of a multinomial model (a per-thread local array)


@cuda.jit(device=True)
def _sample_of(ptr, start, stop, e):
    """The ``q`` with ``ptr[start + q] <= e < ptr[start + q + 1]`` (binary search)."""
    lo = start
    hi = stop
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ptr[mid] <= e:
            lo = mid
        else:
            hi = mid
    return lo - start


@cuda.jit(cache=True)
def margins(indptr, indices, data, order, start, m, W, b, Z):
    """``Z[q, c] = b[c] + sum_jj data[jj] W[indices[jj], c]`` over the row of sample ``order[start + q]``."""
    n_out = W.shape[1]
    for e in range(cuda.grid(1), m * n_out, cuda.gridsize(1)):
        q = e // n_out
        c = e - q * n_out
        i = order[start + q]
        z = b[c]
        for jj in range(indptr[i], indptr[i + 1]):
            z += data[jj] * W[indices[jj], c]
        Z[q, c] = z


@cuda.jit(cache=True)
def loss_grad(loss, y, sw, order, start, m, Z, DZ, gb, loss_sum):
    """Per sample: ``DZ[q, :] = sw dloss/dz / m``; ``gb += DZ[q, :]``; ``loss_sum[0] += sw loss``.

    The loss is the estimators' own (``_loss_grad`` of
    :mod:`sparseopt.linear_model._epoch`), evaluated in float64 on local
    copies of the margins (at most :data:`MAX_OUTPUTS` of them).
    """
    n_out = Z.shape[1]
    for q in range(cuda.grid(1), m, cuda.gridsize(1)):
        i = order[start + q]
        z = cuda.local.array(MAX_OUTPUTS, float64)
        dz = cuda.local.array(MAX_OUTPUTS, float64)
        for c in range(n_out):
            z[c] = Z[q, c]
        value = _loss_grad(loss, z[:n_out], y[i], dz[:n_out])
        scale = sw[i] / m
        for c in range(n_out):
            d = dz[c] * scale
            DZ[q, c] = d
            cuda.atomic.add(gb, c, d)
        cuda.atomic.add(loss_sum, 0, sw[i] * value)


@cuda.jit(cache=True)
def entry_gradients(indptr, indices, data, order, ptr, start, stop, DZ, rows, values):
    """One gradient entry per stored entry ``e`` of the batch: ``rows[e]``, ``values[e, :]``."""
    base = ptr[start]
    n_out = DZ.shape[1]
    nnz = ptr[stop] - base
    for e in range(cuda.grid(1), nnz, cuda.gridsize(1)):
        q = _sample_of(ptr, start, stop, base + e)
        jj = indptr[order[start + q]] + (base + e - ptr[start + q])
        rows[e] = indices[jj]
        for c in range(n_out):
            values[e, c] = data[jj] * DZ[q, c]


def upload_csr(X, dtype=np.float64):
    """Check the CSR matrix ``X`` once (indices sorted or not, in range) and copy it to the device.

    Returns a namespace with ``indptr``, ``indices`` (int64), ``data``
    (``dtype``) device arrays, ``shape``, and ``row_nnz`` (host, int64).
    The check here is what makes the kernels' unchecked indexing safe.
    """
    if not sp.issparse(X):
        raise TypeError(f"X must be a scipy.sparse matrix, got {type(X).__name__}")
    X = X.tocsr()
    X.check_format(full_check=True)  # indptr monotone, indices in [0, n_features)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    data = np.ascontiguousarray(X.data, dtype=dtype)
    if not np.isfinite(data).all():
        raise ValueError("X contains NaN or infinite values")
    indptr = np.ascontiguousarray(X.indptr, dtype=np.int64)
    return types.SimpleNamespace(
        indptr=cuda.to_device(indptr),
        indices=cuda.to_device(np.ascontiguousarray(X.indices, dtype=np.int64)),
        data=cuda.to_device(data),
        shape=X.shape,
        row_nnz=np.diff(indptr),
    )


def batch_layout(X, order):
    """An epoch's sample order on the device, with where each sample's entries start.

    ``X`` from :func:`upload_csr`; ``order`` (host) the samples in the order
    they are visited (a permutation, or any sequence of sample indices).
    Returns a namespace: ``order`` and ``ptr`` device arrays (int64, ``ptr``
    of length ``len(order) + 1``: sample ``order[q]``'s entries start at
    ``ptr[q]`` of the concatenated batch) and ``ptr_host``, its host copy.
    """
    order = np.asarray(order)
    n = X.shape[0]
    if order.ndim != 1 or order.dtype.kind not in "iu":
        raise TypeError(f"order must be a 1-D integer array, got dtype {order.dtype} and shape {order.shape}")
    if order.size and (order.min() < 0 or order.max() >= n):
        raise IndexError(f"order holds sample indices outside [0, {n})")
    order = np.ascontiguousarray(order, dtype=np.int64)
    ptr = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(X.row_nnz[order], out=ptr[1:])
    return types.SimpleNamespace(order=cuda.to_device(order), ptr=cuda.to_device(ptr), ptr_host=ptr)


def csr_batch_gradient(X, layout, y, sw, start, stop, W, b, loss):
    """See :func:`sparseopt.cuda.csr_batch_gradient` (this is the implementation)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    n, n_features = X.shape
    W2 = W.reshape(W.shape[0], 1) if len(W.shape) == 1 else W
    n_out = W2.shape[1] if len(W2.shape) == 2 else 0
    if len(W2.shape) != 2 or W2.shape[0] != n_features:
        raise ValueError(f"W has shape {tuple(W.shape)}, expected ({n_features},) or ({n_features}, n_outputs)")
    multi = loss == "multinomial"
    if not (2 <= n_out <= MAX_OUTPUTS if multi else n_out == 1):
        need = f"2 to {MAX_OUTPUTS}" if multi else "1"
        raise ValueError(f"loss {loss!r} needs {need} output columns in W, got {n_out}")
    if tuple(b.shape) != (n_out,):
        raise ValueError(f"b has shape {tuple(b.shape)}, expected ({n_out},)")
    dtype = np.dtype(W.dtype)
    for name, a in (("X.data", X.data), ("y", y), ("sw", sw), ("b", b)):
        if np.dtype(a.dtype) != dtype:
            raise TypeError(f"{name} has dtype {np.dtype(a.dtype)}, expected W's {dtype}")
    if tuple(y.shape) != (n,) or tuple(sw.shape) != (n,):
        raise ValueError(f"y and sw must have shape ({n},), got {tuple(y.shape)} and {tuple(sw.shape)}")
    n_order = layout.ptr_host.shape[0] - 1
    ok = isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))
    if not (ok and 0 <= start < stop <= n_order):
        raise ValueError(f"need 0 <= start < stop <= len(order) = {n_order}, got start={start!r}, stop={stop!r}")
    start, stop = int(start), int(stop)
    m = stop - start
    nnz = int(layout.ptr_host[stop] - layout.ptr_host[start])
    Z = cuda.device_array((m, n_out), dtype=dtype)
    DZ = cuda.device_array((m, n_out), dtype=dtype)
    acc = cuda.to_device(np.zeros(n_out + 1, dtype=dtype))  # intercept gradient, loss sum
    gb, loss_sum = acc[:n_out], acc[n_out:]
    rows = cuda.device_array(nnz, dtype=np.int64)
    values = cuda.device_array((nnz, n_out), dtype=dtype)
    order, ptr = layout.order, layout.ptr
    K.launch(margins, m * n_out, X.indptr, X.indices, X.data, order, start, m, W2, b, Z)
    K.launch(loss_grad, m, LOSSES[loss], y, sw, order, start, m, Z, DZ, gb, loss_sum)
    K.launch(entry_gradients, nnz, X.indptr, X.indices, X.data, order, ptr, start, stop, DZ, rows, values)
    if len(W.shape) == 1:
        values = values.reshape(nnz)
    return rows, values, gb, loss_sum


def signatures(fl):
    """Launch signatures for :mod:`sparseopt.cuda.check_ptx`."""
    from numba import types as nt

    i64 = nt.int64
    i1 = nt.Array(i64, 1, "C")
    a1 = nt.Array(fl, 1, "C")
    a2 = nt.Array(fl, 2, "C")
    return [
        (f"margins[{fl}]", margins, (i1, i1, a1, i1, i64, i64, a2, a1, a2)),
        (f"loss_grad[{fl}]", loss_grad, (i64, a1, a1, i1, i64, i64, a2, a2, a1, a1)),
        (f"entry_gradients[{fl}]", entry_gradients, (i1, i1, a1, i1, i1, i64, i64, a2, i1, a2)),
    ]
