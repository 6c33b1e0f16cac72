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

:class:`DeviceEpochs` is the training loop of the estimators with
``device="cuda"``: the epoch of ``sparseopt.linear_model._epoch.run_epoch``
(lazy catch-up, rule, proximal penalty step, intercept) as kernels calling
the same scalar functions.

Kernels keep to the CUDA subset of Python; scalars reach the shared math
through ``@njit`` rules (with thread-local arrays for ``h`` and the margins),
arrays only through kernels.
"""

import types

import numpy as np
import scipy.sparse as sp
from numba import cuda, float64

from ..linear_model._epoch import LOG, MULTINOMIAL, SQUARED, _loss_grad
from . import _kernels as K

LOSSES = {"squared": SQUARED, "log": LOG, "multinomial": MULTINOMIAL}
MAX_OUTPUTS = 64  # classes of a multinomial model (a per-thread local array)
# DeviceEpochs runs a whole epoch in one thread block (``epoch_in_block``) when a mini-batch
# holds at most this many gradient entries (stored entries x outputs) on average: below it,
# the ~9 launches of a mini-batch cost more than its work; above it, the per-phase launches
# spread a batch over the whole GPU
BLOCK_EPOCH_MAX_ENTRIES = 8192


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


@cuda.jit(device=True)
def _sample_loss(loss, y, sw, i, m, Z, DZ, q):
    """``DZ[q, :] = sw dloss/dz / m`` for sample ``i`` (margins ``Z[q, :]``); returns ``sw * loss``.

    The loss is the estimators' own (``_loss_grad`` of
    :mod:`sparseopt.linear_model._epoch`), evaluated in float64 on local
    copies of the margins (at most :data:`MAX_OUTPUTS` of them).
    """
    n_out = Z.shape[1]
    z = cuda.local.array(MAX_OUTPUTS, float64)
    dz = cuda.local.array(MAX_OUTPUTS, float64)
    for c in range(n_out):
        z[c] = Z[q, c]
    value = _loss_grad(loss, z[:n_out], y[i], dz[:n_out])
    scale = sw[i] / m
    for c in range(n_out):
        DZ[q, c] = dz[c] * scale
    return sw[i] * value


@cuda.jit(cache=True)
def loss_grad(loss, y, sw, order, start, m, Z, DZ, gb, loss_sum):
    """Per sample: ``DZ[q, :] = sw dloss/dz / m``; ``gb += DZ[q, :]``; ``loss_sum[0] += sw loss``."""
    for q in range(cuda.grid(1), m, cuda.gridsize(1)):
        value = _sample_loss(loss, y, sw, order[start + q], m, Z, DZ, q)
        for c in range(Z.shape[1]):
            cuda.atomic.add(gb, c, DZ[q, c])
        cuda.atomic.add(loss_sum, 0, value)


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
    K.launch(batch_margins, m * n_out, X.indptr, X.indices, X.data, order, start, m, W2, b, Z)
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
        (f"batch_margins[{fl}]", batch_margins, (i1, i1, a1, i1, i64, i64, a2, a1, a2)),
        (f"loss_grad[{fl}]", loss_grad, (i64, a1, a1, i1, i64, i64, a2, a2, a1, a1)),
        (f"entry_gradients[{fl}]", entry_gradients, (i1, i1, a1, i1, i1, i64, i64, a2, i1, a2)),
    ] + (_epoch_signatures() if fl == nt.float64 else [])


def _epoch_signatures():
    """Launch signatures of :class:`DeviceEpochs` (float64 only, as the estimators)."""
    from numba import types as nt

    i64, b1, f8 = nt.int64, nt.boolean, nt.float64
    i1 = nt.Array(i64, 1, "C")
    a1 = nt.Array(f8, 1, "C")
    a2 = nt.Array(f8, 2, "C")
    slot = nt.Array(nt.int32, 1, "C")
    return [
        ("epoch.gather_entries", gather_entries, (i1, i1, a1, i1, i1, i1, a1, i1)),
        ("epoch.init_eta", init_eta, (i64, a1, i64, a2, a2, a2)),
        ("epoch.catch_up_rows", catch_up_rows,
         (i64, a1, i1, slot, a2, a2, a2, a2, i1, f8, f8, b1, b1, f8, f8, i64)),
        ("epoch.catch_up_all", catch_up_all, (i64, a1, a2, a2, a2, a2, i1, f8, f8, b1, b1, b1, f8, f8, i64)),
        ("epoch.batch_loss", batch_loss, (i64, a1, a1, i1, i64, i64, a2, a2, a1)),
        ("epoch.entry_grads", entry_grads, (a1, i1, i64, a2, a2)),
        ("epoch.update_rows", update_rows, (i64, a1, i64, i1, slot, a2, a2, a2, a2, a2, b1, f8, f8)),
        ("epoch.update_intercept", update_intercept, (i64, a1, i64, i64, a2, a1, a1, a1)),
        ("epoch.epoch_in_block", epoch_in_block,
         (i64, i64, a1, i64, i64, f8, f8, b1, b1, b1, f8, f8, b1, b1, i1, i1, a1, a1, a1, i1, i1, i1, a1, i1, slot,
          a2, a2, a2, a2, i1, a1, a1, a1, a2, a2, a2, a1)),
    ]


# --------------------------------------------------------------------------
# the estimators' epoch on the device (``device="cuda"``)
# --------------------------------------------------------------------------
#
# :class:`DeviceEpochs` runs the epochs of ``sparseopt.linear_model`` with the
# semantics of ``_epoch.run_epoch`` (read that docstring first): each
# mini-batch is one optimizer step ``t``; the rows of the features present are
# first caught up to step ``t - 1`` (the missed proximal steps, and with
# ``lazy="exact"`` the zero-gradient steps of rules that move at zero
# gradient), then take the rule and one proximal step with their own step
# size; the intercept takes the dense rule.  Every scalar is computed by the
# same ``@rule`` functions as on the CPU (``apply_rule``, ``catch_up``,
# ``step_size``, ``prox_1``, ``_prox_lag``, ``_step_prox``, ``_loss_grad``,
# ``_set_step``, ``_lazy_setup``), called with local copies of the
# hyperparameter array ``h``.  One difference, in the arithmetic only: the CPU
# kernel keeps SGD and Momentum with a pure l2 penalty as scaled weights
# (``wscale``); here they take the same proximal steps explicitly (the same
# values up to rounding).  Sums of repeated features use float atomics, so
# their order (and the last bits) may differ from the CPU's.

from .._rules import H_SIZE, MOMENTUM, RMSPROP, WD  # noqa: E402
from ..linear_model._epoch import (  # noqa: E402
    _lazy_setup, _prox_lag, _set_step, _step_prox, apply_rule, catch_up, momentum_prox_k, prox_1,
    rmsprop_prox_steps, step_size,
)


@cuda.jit(device=True)
def _fill_h(hl, h, kind, t):
    """``hl[:] = h`` with the bias corrections of step ``t`` (``hl`` thread-local)."""
    for r in range(H_SIZE):
        hl[r] = h[r]
    _set_step(kind, hl, t)


@cuda.jit(device=True)
def _catch_up_row(kind, W, S1, S2, j, h, hs, l1, l2, slow, uniform, eta_u, lc_u, ETA, t0, k):
    """Bring weight row ``j`` from step ``t0`` to ``t0 + k`` (``_epoch``'s lazy catch-up).

    ``slow``: replay the rule with zero gradient (one step at a time, each
    followed by a proximal step, when penalised: ``_catch_up_exact``); else
    ``k`` proximal steps in closed form (``_prox_lag``).  ``hs`` is scratch
    for the per-step hyperparameters.  Unused state slots alias ``S1`` or
    ``W``: the real values are written last.
    """
    penalised = l1 > 0.0 or l2 > 0.0
    closed = kind == MOMENTUM and l1 == 0.0 and h[WD] == 0.0
    for c in range(W.shape[1]):
        if slow:
            p, s1, s2 = W[j, c], S1[j, c], S2[j, c]
            if not penalised:
                p, s1, s2 = catch_up(kind, p, s1, s2, h, t0, k)
            elif closed:  # Momentum with a pure l2 penalty: in closed form
                p, s1 = momentum_prox_k(p, s1, h, l2, k)
            elif kind == RMSPROP and h[WD] == 0.0:
                p, s1 = rmsprop_prox_steps(p, s1, h, l1, l2, k)
            else:
                for s in range(k):
                    p, s1, s2 = catch_up(kind, p, s1, s2, h, t0 + s, 1)
                    _fill_h(hs, h, kind, t0 + s + 1)
                    p = prox_1(p, step_size(kind, s1, s2, hs), l1, l2)
            S2[j, c] = s2
            S1[j, c] = s1
            W[j, c] = p
        else:
            W[j, c] = _prox_lag(W[j, c], ETA[j, c], l1, l2, uniform, eta_u, lc_u, k)


@cuda.jit(cache=True)
def gather_entries(indptr, indices, data, order, ptr, rows, vals, samples):
    """Per stored entry ``e`` of the epoch (samples in ``order``): feature, value, position in ``order``."""
    n = order.shape[0]
    for e in range(cuda.grid(1), ptr[n], cuda.gridsize(1)):
        q = _sample_of(ptr, 0, n, e)
        jj = indptr[order[q]] + (e - ptr[q])
        rows[e] = indices[jj]
        vals[e] = data[jj]
        samples[e] = q


@cuda.jit(cache=True)
def init_eta(kind, h, t, S1, S2, ETA):
    """``ETA = step_size`` of each weight's state (an epoch's start, ``t`` >= 1)."""
    hl = cuda.local.array(H_SIZE, float64)
    _fill_h(hl, h, kind, t)
    n = ETA.shape[1]
    for e in range(cuda.grid(1), ETA.shape[0] * n, cuda.gridsize(1)):
        j = e // n
        c = e - j * n
        ETA[j, c] = step_size(kind, S1[j, c], S2[j, c], hl)


@cuda.jit(device=True)
def catch_up_rows_phase(first, stride, kind, h, rows, slot, W, S1, S2, ETA, last, l1, l2, slow, uniform, eta_u,
                        lc_u, t):
    """Catch the rows of the batch (each once: its first occurrence in ``rows``) up to step ``t``."""
    hl = cuda.local.array(H_SIZE, float64)
    _fill_h(hl, h, kind, t)
    hs = cuda.local.array(H_SIZE, float64)
    for i in range(first, rows.shape[0], stride):
        j = rows[i]
        if slot[j] != i:
            continue
        t0 = last[j]
        if t0 < t:
            _catch_up_row(kind, W, S1, S2, j, hl, hs, l1, l2, slow, uniform, eta_u, lc_u, ETA, t0, t - t0)
            last[j] = t


@cuda.jit(cache=True)
def catch_up_rows(kind, h, rows, slot, W, S1, S2, ETA, last, l1, l2, slow, uniform, eta_u, lc_u, t):
    """Catch the rows of the batch (each once: its first occurrence in ``rows``) up to step ``t``."""
    catch_up_rows_phase(cuda.grid(1), cuda.gridsize(1), kind, h, rows, slot, W, S1, S2, ETA, last, l1, l2, slow,
                        uniform, eta_u, lc_u, t)


@cuda.jit(cache=True)
def catch_up_all(kind, h, W, S1, S2, ETA, last, l1, l2, need, slow, uniform, eta_u, lc_u, t):
    """An epoch's end: every row up to step ``t`` (``last[:] = t``)."""
    hl = cuda.local.array(H_SIZE, float64)
    _fill_h(hl, h, kind, t)
    hs = cuda.local.array(H_SIZE, float64)
    for j in range(cuda.grid(1), W.shape[0], cuda.gridsize(1)):
        t0 = last[j]
        if need and t0 < t:
            _catch_up_row(kind, W, S1, S2, j, hl, hs, l1, l2, slow, uniform, eta_u, lc_u, ETA, t0, t - t0)
        last[j] = t


@cuda.jit(device=True)
def batch_margins_phase(first, stride, indptr, indices, data, order, start, m, W, b, Z):
    """``Z[q, c] = sum_jj data[jj] W[indices[jj], c] + b[c]`` for sample ``order[start + q]`` (CPU order)."""
    n_out = W.shape[1]
    for e in range(first, m * n_out, stride):
        q = e // n_out
        c = e - q * n_out
        i = order[start + q]
        z = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            z += data[jj] * W[indices[jj], c]
        Z[q, c] = z + b[c]


@cuda.jit(cache=True)
def batch_margins(indptr, indices, data, order, start, m, W, b, Z):
    """``Z[q, c] = sum_jj data[jj] W[indices[jj], c] + b[c]`` for sample ``order[start + q]`` (CPU order)."""
    batch_margins_phase(cuda.grid(1), cuda.gridsize(1), indptr, indices, data, order, start, m, W, b, Z)


@cuda.jit(device=True)
def batch_loss_phase(first, stride, loss, y, sw, order, start, m, Z, DZ, losses):
    """``DZ[q, :] = dloss/dz sw / m`` and ``losses[start + q] = sw loss`` per sample of the batch."""
    for q in range(first, m, stride):
        losses[start + q] = _sample_loss(loss, y, sw, order[start + q], m, Z, DZ, q)


@cuda.jit(cache=True)
def batch_loss(loss, y, sw, order, start, m, Z, DZ, losses):
    """``DZ[q, :] = dloss/dz sw / m`` and ``losses[start + q] = sw loss`` per sample of the batch."""
    batch_loss_phase(cuda.grid(1), cuda.gridsize(1), loss, y, sw, order, start, m, Z, DZ, losses)


@cuda.jit(device=True)
def entry_grads_phase(first, stride, vals, samples, start, DZ, G):
    """``G[e, c] = vals[e] DZ[q, c]`` for the batch's entries (``q`` the entry's sample)."""
    n_out = DZ.shape[1]
    for e in range(first, vals.shape[0] * n_out, stride):
        i = e // n_out
        c = e - i * n_out
        G[i, c] = vals[i] * DZ[samples[i] - start, c]


@cuda.jit(cache=True)
def entry_grads(vals, samples, start, DZ, G):
    """``G[e, c] = vals[e] DZ[q, c]`` for the batch's entries (``q`` the entry's sample)."""
    entry_grads_phase(cuda.grid(1), cuda.gridsize(1), vals, samples, start, DZ, G)


@cuda.jit(device=True)
def update_rows_phase(first, stride, kind, h, t, rows, slot, G, W, S1, S2, ETA, keep_eta, l1, l2):
    """Step ``t`` on each row of the batch (its first occurrence holds the summed gradient):
    the rule, then one proximal step with the rule's step size (``_step_prox``)."""
    hl = cuda.local.array(H_SIZE, float64)
    _fill_h(hl, h, kind, t)
    n = W.shape[1]
    for e in range(first, rows.shape[0] * n, stride):
        i = e // n
        c = e - i * n
        j = rows[i]
        if slot[j] != i:
            continue
        p, s1, s2, eta = _step_prox(kind, W[j, c], G[i, c], S1[j, c], S2[j, c], hl, l1, l2)
        if keep_eta:
            ETA[j, c] = eta
        S2[j, c] = s2
        S1[j, c] = s1
        W[j, c] = p


@cuda.jit(cache=True)
def update_rows(kind, h, t, rows, slot, G, W, S1, S2, ETA, keep_eta, l1, l2):
    """Step ``t`` on each row of the batch (see :func:`update_rows_phase`)."""
    update_rows_phase(cuda.grid(1), cuda.gridsize(1), kind, h, t, rows, slot, G, W, S1, S2, ETA, keep_eta, l1, l2)


@cuda.jit(device=True)
def update_intercept_phase(first, stride, kind, h, t, m, DZ, b, bs1, bs2):
    """The intercept's dense step ``t``: gradient ``sum_q DZ[q, c]`` (summed in sample order)."""
    hl = cuda.local.array(H_SIZE, float64)
    _fill_h(hl, h, kind, t)
    for c in range(first, b.shape[0], stride):
        g = 0.0
        for q in range(m):
            g += DZ[q, c]
        p, s1, s2 = apply_rule(kind, b[c], g, bs1[c], bs2[c], hl)
        bs2[c] = s2
        bs1[c] = s1
        b[c] = p


@cuda.jit(cache=True)
def update_intercept(kind, h, t, m, DZ, b, bs1, bs2):
    """The intercept's dense step ``t`` (see :func:`update_intercept_phase`)."""
    update_intercept_phase(cuda.grid(1), cuda.gridsize(1), kind, h, t, m, DZ, b, bs1, bs2)


@cuda.jit(cache=True)
def epoch_in_block(kind, loss, h, t, batch_size, l1, l2, need, slow, uniform, eta_u, lc_u, keep_eta,
                   fit_intercept, indptr, indices, data, y, sw, order, ptr, rows, vals, samples, slot,
                   W, S1, S2, ETA, last, b, bs1, bs2, Z, DZ, G, losses):
    """A whole epoch in one launch of one thread block: the mini-batches in turn, each the
    phases that :meth:`DeviceEpochs.run_epoch` otherwise launches one by one, with a barrier
    between phases.  For small batches, where a launch costs more than its work; the host
    counts the steps (``t`` + the number of batches)."""
    first = cuda.threadIdx.x
    stride = cuda.blockDim.x
    n = order.shape[0]
    start = 0
    while start < n:  # the same trip count in every thread: the barriers below are uniform
        stop = min(start + batch_size, n)
        m = stop - start
        t += 1
        lo = ptr[start]
        hi = ptr[stop]
        brows = rows[lo:hi]
        if hi > lo:
            K.claim_rows_phase(first, stride, brows, slot)
            cuda.syncthreads()
            if need:
                catch_up_rows_phase(first, stride, kind, h, brows, slot, W, S1, S2, ETA, last, l1, l2, slow,
                                    uniform, eta_u, lc_u, t - 1)
                cuda.syncthreads()
        batch_margins_phase(first, stride, indptr, indices, data, order, start, m, W, b, Z)
        cuda.syncthreads()
        batch_loss_phase(first, stride, loss, y, sw, order, start, m, Z, DZ, losses)
        cuda.syncthreads()
        if hi > lo:
            Gk = G[: hi - lo]
            entry_grads_phase(first, stride, vals[lo:hi], samples[lo:hi], start, DZ, Gk)
            cuda.syncthreads()
            K.sum_repeats_phase(first, stride, brows, Gk, slot, Gk)
            cuda.syncthreads()
            update_rows_phase(first, stride, kind, h, t, brows, slot, Gk, W, S1, S2, ETA, keep_eta, l1, l2)
            cuda.syncthreads()
            K.release_rows_phase(first, stride, brows, slot, need, last, t)
        if fit_intercept:
            update_intercept_phase(first, stride, kind, h, t, m, DZ, b, bs1, bs2)
        cuda.syncthreads()
        start = stop


class DeviceEpochs:
    """The epochs of one ``fit`` / ``partial_fit`` of a linear model, on the GPU.

    Parameters
    ----------
    Xc : (indptr, indices, data)
        The training data as CSR parts (checked by the estimator: canonical,
        float64 data).
    y, sw : ndarray (n_samples,) float64
        Encoded targets and normalised sample weights.
    arrays : dict name -> ndarray
        The host model and optimizer state, ``W``, ``S1``, ``S2`` (n_features,
        K), ``b``, ``bs1``, ``bs2`` (K,) float64 and ``last`` (n_features,)
        int64.  Unused state slots are the same object as ``W`` or ``S1`` (or
        ``b`` / ``bs1``); they stay aliased on the device.  Copied to the
        device once; :meth:`run_epoch` copies them back after each epoch.
    """

    def __init__(self, Xc, y, sw, arrays):
        indptr, indices, data = Xc
        n = indptr.shape[0] - 1
        self.n = n
        self.indptr = cuda.to_device(np.ascontiguousarray(indptr, dtype=np.int64))
        self.indices = cuda.to_device(np.ascontiguousarray(indices, dtype=np.int64))
        self.data = cuda.to_device(np.ascontiguousarray(data, dtype=np.float64))
        self.row_nnz = np.diff(np.asarray(indptr, dtype=np.int64))
        self.y = cuda.to_device(np.ascontiguousarray(y, dtype=np.float64))
        self.sw = cuda.to_device(np.ascontiguousarray(sw, dtype=np.float64))
        self.host = arrays
        by_id = {}  # aliased host arrays share one device array
        self.dev = {}
        self._pairs = []
        for name, a in arrays.items():
            if id(a) not in by_id:
                by_id[id(a)] = cuda.to_device(a)
                self._pairs.append((a, by_id[id(a)]))
            self.dev[name] = by_id[id(a)]
        n_features, n_out = arrays["W"].shape
        if n_out > MAX_OUTPUTS:
            raise NotImplementedError(
                f"device='cuda' supports at most {MAX_OUTPUTS} classes (one margin per class in a "
                f"thread's local memory), got {n_out}; use device='cpu'"
            )
        self.slot = cuda.device_array(n_features, dtype=np.int32)
        K.launch(K.fill, n_features, self.slot, K.FREE)
        nnz = int(self.row_nnz.sum())
        self.rows = cuda.device_array(max(nnz, 1), dtype=np.int64)
        self.vals = cuda.device_array(max(nnz, 1), dtype=np.float64)
        self.samples = cuda.device_array(max(nnz, 1), dtype=np.int64)
        self.losses = cuda.device_array(max(n, 1), dtype=np.float64)
        self.ETA = None

    def run_epoch(self, kind, loss, order, batch_size, h, l1, l2, exact, fit_intercept, t):
        """One pass over ``order`` in mini-batches (``_epoch.run_epoch``'s arguments); returns
        ``(t, sum of sw * loss)`` and leaves the model and state in the host arrays."""
        d = self.dev
        W, S1, S2, b, bs1, bs2, last = (d[k] for k in ("W", "S1", "S2", "b", "bs1", "bs2", "last"))
        n_features, n_out = W.shape
        hh = np.array(h, dtype=np.float64)
        need, slow, uniform, use_scale, eta_u, lc_u = _lazy_setup(kind, hh.copy(), l1, l2, exact)
        if use_scale:  # the CPU's scaled weights are the same proximal steps: take them explicitly
            need = True
        keep_eta = need and not slow and not uniform
        if keep_eta:
            if self.ETA is None:
                self.ETA = cuda.device_array((n_features, n_out), dtype=np.float64)
            ETA = self.ETA
            K.launch(init_eta, n_features * n_out, kind, hh, max(t, 1), S1, S2, ETA)
        else:
            ETA = W  # unused
        h_d = cuda.to_device(hh)
        order = np.ascontiguousarray(order, dtype=np.int64)
        n = order.shape[0]
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.row_nnz[order], out=ptr[1:])
        order_d = cuda.to_device(order)
        K.launch(gather_entries, int(ptr[n]), self.indptr, self.indices, self.data, order_d,
                  cuda.to_device(ptr), self.rows, self.vals, self.samples)
        m_max = min(batch_size, n)
        Z = cuda.device_array((max(m_max, 1), n_out), dtype=np.float64)
        DZ = cuda.device_array((max(m_max, 1), n_out), dtype=np.float64)
        n_batches = -(-n // batch_size)
        if n and ptr[n] * n_out <= BLOCK_EPOCH_MAX_ENTRIES * n_batches:
            # small batches: the whole epoch in one launch of one block
            starts = np.arange(0, n, batch_size)
            k_max = int((ptr[np.minimum(starts + batch_size, n)] - ptr[starts]).max())
            G = cuda.device_array((max(k_max, 1), n_out), dtype=np.float64)
            epoch_in_block[1, K.THREADS_PER_BLOCK](
                kind, loss, h_d, t, batch_size, l1, l2, need, slow, uniform, eta_u, lc_u, keep_eta,
                fit_intercept, self.indptr, self.indices, self.data, self.y, self.sw, order_d, cuda.to_device(ptr),
                self.rows, self.vals, self.samples, self.slot, W, S1, S2, ETA, last, b, bs1, bs2, Z, DZ, G,
                self.losses)
            t += n_batches
            return self._finish(kind, h_d, W, S1, S2, ETA, last, l1, l2, need, slow, uniform, eta_u, lc_u, t, n)
        G = None
        start = 0
        while start < n:
            stop = min(start + batch_size, n)
            m = stop - start
            t += 1
            lo, hi = int(ptr[start]), int(ptr[stop])
            k = hi - lo
            rows = self.rows[lo:hi]
            if k:
                K.launch(K.claim_rows, k, rows, self.slot)
                if need:
                    K.launch(catch_up_rows, k, kind, h_d, rows, self.slot, W, S1, S2, ETA, last,
                              l1, l2, slow, uniform, eta_u, lc_u, t - 1)
            K.launch(batch_margins, m * n_out, self.indptr, self.indices, self.data, order_d, start, m, W, b, Z)
            K.launch(batch_loss, m, loss, self.y, self.sw, order_d, start, m, Z, DZ, self.losses)
            if k:
                if G is None or G.shape[0] < k:
                    G = cuda.device_array((max(k, 2 * (0 if G is None else G.shape[0])), n_out), dtype=np.float64)
                Gk = G[:k]
                K.launch(entry_grads, k * n_out, self.vals[lo:hi], self.samples[lo:hi], start, DZ, Gk)
                K.launch(K.sum_repeats, k * n_out, rows, Gk, self.slot, Gk)
                K.launch(update_rows, k * n_out, kind, h_d, t, rows, self.slot, Gk, W, S1, S2, ETA,
                          keep_eta, l1, l2)
                K.launch(K.release_rows, k, rows, self.slot, need, last, t)
            if fit_intercept:
                K.launch(update_intercept, n_out, kind, h_d, t, m, DZ, b, bs1, bs2)
            start = stop
        return self._finish(kind, h_d, W, S1, S2, ETA, last, l1, l2, need, slow, uniform, eta_u, lc_u, t, n)

    def _finish(self, kind, h_d, W, S1, S2, ETA, last, l1, l2, need, slow, uniform, eta_u, lc_u, t, n):
        """An epoch's end: every row caught up to step ``t``, the model and state copied to the
        host; returns ``(t, sum of sw * loss)``."""
        K.launch(catch_up_all, W.shape[0], kind, h_d, W, S1, S2, ETA, last, l1, l2, need, slow,
                 uniform, eta_u, lc_u, t)
        loss_sum = float(np.cumsum(self.losses.copy_to_host()[:n])[-1]) if n else 0.0
        for host, dev in self._pairs:
            dev.copy_to_host(host)
        return t, loss_sum
