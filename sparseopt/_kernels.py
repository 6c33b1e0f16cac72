"""CPU kernels: thin loops around the rules of :mod:`sparseopt._rules`.

Kernels take flat, already validated arrays (no bounds checks happen here):

* ``p`` the parameter, as a 1-D view (dense kernels) or a 2-D
  ``(n_rows, n_cols)`` view (row kernels; a 1-D parameter is ``(n, 1)``);
* ``s1``, ``s2`` the state arrays of the same shape.  Optimizers with fewer
  states pass any array of the right shape in the unused slots (usually
  ``p`` itself); it is read but never written.
"""

import math

import numpy as np
from numba import carray, prange

from ._jit import kernel, loop, prefetch, rule, stack_buffer
from ._rules import (
    ADAGRAD,
    ADAM,
    H_SIZE,
    MOMENTUM,
    N_STATE,
    RMSPROP,
    SGD,
    A,
    B,
    adam_factors,
    adam_settled,
    adam_step,
    apply_rule,
    catch_up_factors,
    catch_up_is_identity,
    catch_up_with,
)

# _hyper and _update below spell out this layout of the rules' arguments
if H_SIZE != 9 or N_STATE != (0, 1, 1, 1, 2):  # pragma: no cover
    raise ImportError("sparseopt._kernels is out of date with sparseopt._rules (H_SIZE / N_STATE)")

# below this many elements a dense step runs on one thread
PARALLEL_MIN_SIZE = 1 << 17
# sparse steps: columns a row update handles as one block of vector registers,
# and how many rows ahead of the one being updated its loop prefetches
BLOCK = 16
AHEAD = 6
# what rows_step returns
STEP_OK, BAD_ROW, NOT_FINITE, SUM_OVERFLOW = 0, 1, 2, 3


@rule
def _hyper(h):
    """``h`` as a tuple of scalars.

    Kernels hand the rules this tuple instead of the array: the values are
    then loop invariants LLVM keeps in registers, rather than loads it must
    repeat after every store (``h`` might alias ``p`` as far as it knows),
    and the loops vectorise without runtime alias checks on ``h``.
    """
    return (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8])


@loop
def _loop0(kind, p, g, h):
    """Dense step of a stateless optimizer (``prange``: parallel inside parallel kernels)."""
    for i in prange(p.size):
        p[i] = apply_rule(kind, p[i], g[i], p[i], p[i], h)[0]


@loop
def _loop1(kind, p, g, s1, h):
    """Dense step of an optimizer with one state array."""
    for i in prange(p.size):
        p[i], s1[i], _ = apply_rule(kind, p[i], g[i], s1[i], s1[i], h)


@loop
def _loop2(kind, p, g, s1, s2, h):
    """Dense step of an optimizer with two state arrays."""
    for i in prange(p.size):
        p[i], s1[i], s2[i] = apply_rule(kind, p[i], g[i], s1[i], s2[i], h)


@loop
def _update(kind, p, g, s1, s2, h):
    """One dense step over 1-D arrays, with one loop compiled per optimizer.

    Passing ``kind`` as a constant to the inlined loop lets LLVM drop the
    other rules from the loop body, so each loop is branch-free and
    vectorises (``sqrt`` and division included, thanks to the numpy error
    model); a loop over a run-time ``kind`` does not.
    """
    hh = _hyper(h)
    if kind == SGD:
        _loop0(SGD, p, g, hh)
    elif kind == MOMENTUM:
        _loop1(MOMENTUM, p, g, s1, hh)
    elif kind == ADAGRAD:
        _loop1(ADAGRAD, p, g, s1, hh)
    elif kind == RMSPROP:
        _loop1(RMSPROP, p, g, s1, hh)
    else:
        _loop2(ADAM, p, g, s1, s2, hh)


@rule
def _catch_up_row(kind, p, s1, s2, h, t0, k):
    """Bring one row (1-D arrays) from step ``t0`` to ``t0 + k >= t0 + 1`` with zero gradient.

    ``h``: the hyperparameters as a tuple (:func:`_hyper`; an array argument
    costs two atomic reference-count updates per call of a rule).  The
    closed forms' powers are computed once for the row, not per element.
    """
    n_state = N_STATE[kind]
    if kind == ADAM:
        _adam_catch_up_row(p, s1, s2, h, t0, k)
        return
    f = catch_up_factors(kind, h, k)
    if n_state == 0:
        for j in range(p.size):
            p[j] = catch_up_with(kind, p[j], p[j], p[j], h, t0, k, f)[0]
    else:
        for j in range(p.size):
            p[j], s1[j], _ = catch_up_with(kind, p[j], s1[j], s1[j], h, t0, k, f)


@rule
def _adam_catch_up_row(p, s1, s2, h, t0, k):
    """``catch_up(ADAM, ...)`` on every element of a row (1-D arrays), the columns of a block in step.

    Adam has no closed form: each element replays the zero-gradient steps
    until :func:`adam_settled` lets it stop, up to a few hundred steps
    (``k`` without that stop, under weight decay).  A scalar loop per
    element runs its divisions and square roots one at a time; here the
    steps go column-parallel over blocks of :data:`BLOCK` elements held on
    the stack, an element that has settled keeping its values (masked),
    until every element of the block has.  Same operations in the same
    float64 precision as :func:`catch_up`: bit-identical.
    """
    beta1 = float(h[A])
    beta2 = float(h[B])
    r = beta1 / math.sqrt(beta2)
    P = carray(stack_buffer(np.float64, BLOCK), BLOCK)
    M = carray(stack_buffer(np.float64, BLOCK), BLOCK)
    V = carray(stack_buffer(np.float64, BLOCK), BLOCK)
    S = carray(stack_buffer(np.int64, BLOCK), BLOCK)  # 0: stepping; adam_settled's code; 3: no element
    J = carray(stack_buffer(np.int64, BLOCK), BLOCK)  # the step an element settled at
    n = p.size
    for c0 in range(0, n, BLOCK):
        nb = min(BLOCK, n - c0)
        for c in range(BLOCK):
            P[c] = 0.0
            M[c] = 0.0
            V[c] = 0.0
            S[c] = 3
            J[c] = 0
        for c in range(nb):
            P[c] = p[c0 + c]
            M[c] = s1[c0 + c]
            V[c] = s2[c0 + c]
            S[c] = 0
        b1t = beta1**t0
        b2t = beta2**t0
        j = 0
        stepping = nb
        while j < k and stepping > 0:
            b1t *= beta1
            b2t *= beta2
            c1, c2 = adam_factors(b1t, b2t)
            stepping = 0
            for c in range(BLOCK):
                pc, mc, vc = adam_step(P[c], P[c] - P[c], M[c], V[c], h, c1, c2)
                settled = adam_settled(pc, mc, vc, h, beta1, r)
                live = S[c] == 0
                P[c] = pc if live else P[c]
                M[c] = mc if live else M[c]
                V[c] = vc if live else V[c]
                J[c] = j if live else J[c]
                S[c] = settled if live else S[c]
                stepping += live and settled == 0
            j += 1
        for c in range(nb):
            rest = k - 1 - J[c]
            if S[c] == 1:
                M[c] = M[c] * beta1**rest
            if S[c] == 1 or S[c] == 2:
                V[c] = V[c] * beta2**rest
            p[c0 + c] = P[c]
            s1[c0 + c] = M[c]
            s2[c0 + c] = V[c]


@kernel
def dense_step_serial(kind, p, g, s1, s2, h):
    """Dense step over 1-D arrays on one thread."""
    _update(kind, p, g, s1, s2, h)


@kernel(parallel=True)
def dense_step_parallel(kind, p, g, s1, s2, h):
    """Dense step over 1-D arrays, split over threads."""
    _update(kind, p, g, s1, s2, h)


@rule
def _coalesce(rows, values, n_rows):
    """Sum the repeats of each row in one pass, in O(k * n_cols) time and memory (no sort).

    Returns ``(urows, g, n_unique)``: ``urows[u]`` is the u-th distinct row in
    order of first appearance and ``g[u]`` the sum of its values, added in
    input order (as a stable sort would add them).  Rows are found through an
    open-addressing hash table of at least ``2k`` slots (Fibonacci hashing).
    A row outside ``[0, n_rows)`` stops the pass with ``n_unique = -1``.
    """
    k = rows.size
    n_cols = values.shape[1]
    bits = 1
    while (1 << bits) < 2 * k:
        bits += 1
    mask = (1 << bits) - 1
    table = np.full(1 << bits, -1, dtype=np.int64)  # slot -> index u of its row
    urows = np.empty(k, dtype=np.int64)
    g = np.empty((k, n_cols), dtype=values.dtype)
    n_unique = 0
    for i in range(k):
        r = rows[i]
        if r < 0 or r >= n_rows:
            return urows, g, -1
        slot = ((r * -7046029254386353131) >> (64 - bits)) & mask
        while True:
            u = table[slot]
            if u < 0:
                u = n_unique
                n_unique += 1
                table[slot] = u
                urows[u] = r
                for c in range(n_cols):
                    g[u, c] = values[i, c]
                break
            if urows[u] == r:
                for c in range(n_cols):
                    g[u, c] += values[i, c]
                break
            slot = (slot + 1) & mask
    return urows, g, n_unique


@rule
def _all_finite(values):
    """Whether no entry of the C-contiguous array ``values`` is NaN or infinite (one vectorised pass)."""
    flat = values.reshape(values.size)
    bad = False
    for i in range(flat.size):
        x = flat[i]
        bad |= not (x - x == 0)  # x - x is NaN exactly for NaN and +-inf
    return not bad


@loop
def _rule_on_row(kind, p, s1, s2, g, r, u, h):
    """The rule of ``kind`` on row ``r`` of ``p``, ``s1``, ``s2`` with gradient row ``g[u]``."""
    n_state = N_STATE[kind]
    if kind == ADAM:
        _rule_on_row_blocks(kind, p, s1, s2, g, r, u, h)
    elif n_state == 0:
        for c in range(p.shape[1]):
            p[r, c] = apply_rule(kind, p[r, c], g[u, c], p[r, c], p[r, c], h)[0]
    else:
        for c in range(p.shape[1]):
            p[r, c], s1[r, c], _ = apply_rule(kind, p[r, c], g[u, c], s1[r, c], s1[r, c], h)


@loop
def _rule_on_row_blocks(kind, p, s1, s2, g, r, u, h):
    """:func:`_rule_on_row` for a two-state rule, by blocks of :data:`BLOCK` columns through buffers on the stack.

    LLVM cannot tell that ``p``, ``s1`` and ``s2`` are distinct arrays, so a
    loop over them directly needs run-time alias checks, and a row of 16
    columns falls short of its vector body (64 wide) into the remainder
    loop.  On buffers on the stack, the loop over a block of 16 is one
    vector wide (Adam: its three divisions and square root are 4 vector
    instructions a block, with the same scalar rule: bit-identical).  The
    cheaper rules do not gain: LLVM fully unrolls their block loops, and
    Numba does not run the SLP vectoriser that would vectorise the result.
    """
    n_cols = p.shape[1]
    P = carray(stack_buffer(p, BLOCK), BLOCK)
    M = carray(stack_buffer(p, BLOCK), BLOCK)
    V = carray(stack_buffer(p, BLOCK), BLOCK)
    end = n_cols - n_cols % BLOCK
    for c0 in range(0, end, BLOCK):
        for c in range(BLOCK):
            P[c] = p[r, c0 + c]
        for c in range(BLOCK):
            M[c] = s1[r, c0 + c]
        for c in range(BLOCK):
            V[c] = s2[r, c0 + c]
        for c in range(BLOCK):
            P[c], M[c], V[c] = apply_rule(kind, P[c], g[u, c0 + c], M[c], V[c], h)
        for c in range(BLOCK):
            p[r, c0 + c] = P[c]
        for c in range(BLOCK):
            s1[r, c0 + c] = M[c]
        for c in range(BLOCK):
            s2[r, c0 + c] = V[c]
    for c in range(end, n_cols):  # the last n_cols % BLOCK columns, one at a time
        p[r, c], s1[r, c], s2[r, c] = apply_rule(kind, p[r, c], g[u, c], s1[r, c], s2[r, c], h)


@rule
def _rows_loop(kind, any_kind, p, urows, n_unique, g, s1, s2, h, exact, last, t):
    """Sparse step of ``kind`` (a constant in each caller): row ``urows[u]`` gets gradient ``g[u]``.

    ``any_kind`` is ``kind`` as a run-time value, for the catch-up: it is
    then compiled once, not once per optimizer (it calls many rules, and
    Numba compiles a function again for every constant it is given).

    The rows are independent random accesses: each iteration prefetches the
    rows :data:`AHEAD` iterations on, so that their cache (and TLB) misses
    overlap instead of coming one after the other.  With ``exact``, each row
    is first caught up over the steps it missed since ``last[row]``.
    """
    n_state = N_STATE[kind]
    hh = _hyper(h)
    identity = catch_up_is_identity(any_kind, hh)  # no catch-up needed
    for u in range(n_unique):
        if u + AHEAD < n_unique:
            q = urows[u + AHEAD]
            prefetch(p, q)
            if n_state >= 1:
                prefetch(s1, q)
            if n_state == 2:
                prefetch(s2, q)
            if exact:
                prefetch(last, q)
        r = urows[u]
        if exact:
            lag = t - 1 - last[r]
            if lag > 0 and not identity:
                _catch_up_row(any_kind, p[r], s1[r], s2[r], hh, last[r], lag)
            last[r] = t
        _rule_on_row(kind, p, s1, s2, g, r, u, hh)


@rule
def _update_rows(kind, p, urows, n_unique, g, s1, s2, h, exact, last, t):
    """Sparse step on the grouped rows, one loop compiled per optimizer (as :func:`_update`)."""
    if kind == SGD:
        _rows_loop(SGD, kind, p, urows, n_unique, g, s1, s2, h, exact, last, t)
    elif kind == MOMENTUM:
        _rows_loop(MOMENTUM, kind, p, urows, n_unique, g, s1, s2, h, exact, last, t)
    elif kind == ADAGRAD:
        _rows_loop(ADAGRAD, kind, p, urows, n_unique, g, s1, s2, h, exact, last, t)
    elif kind == RMSPROP:
        _rows_loop(RMSPROP, kind, p, urows, n_unique, g, s1, s2, h, exact, last, t)
    else:
        _rows_loop(ADAM, kind, p, urows, n_unique, g, s1, s2, h, exact, last, t)


@kernel
def rows_step(kind, p, rows, values, s1, s2, h, exact, last, t, check_finite):
    """Lazy step ``t`` on the rows named by ``rows`` (unsorted, repeats summed).

    ``p``, ``s1``, ``s2``: (n_rows, n_cols); ``rows``: int64 (k,);
    ``values``: (k, n_cols).  With ``exact``, each row is first caught up
    over the steps it missed since ``last[row]``, and ``last[row] = t``.
    Time and scratch memory are O(k * n_cols), whatever ``n_rows``.

    Returns :data:`STEP_OK`; or, having written nothing, :data:`BAD_ROW` (a
    row outside ``[0, n_rows)``, checked first), :data:`NOT_FINITE` (NaN
    or infinity in ``values``) or :data:`SUM_OVERFLOW` (finite ``values``
    whose repeated rows sum to infinity); the last two only with
    ``check_finite``, which checks the summed rows: a NaN or infinity in
    ``values`` makes its sum one too, so ``values`` itself is read again
    only to tell the two apart.
    """
    if rows.size == 0:
        return STEP_OK
    urows, g, n_unique = _coalesce(rows, values, p.shape[0])
    if n_unique < 0:
        return BAD_ROW
    if check_finite and not _all_finite(g[:n_unique]):
        return NOT_FINITE if not _all_finite(values) else SUM_OVERFLOW
    _update_rows(kind, p, urows, n_unique, g, s1, s2, h, exact, last, t)
    return STEP_OK


@loop
def _sync(kind, p, s1, s2, h, last, t):
    hh = _hyper(h)
    for r in prange(p.shape[0]):
        lag = t - last[r]
        if lag > 0:
            _catch_up_row(kind, p[r], s1[r], s2[r], hh, last[r], lag)
            last[r] = t


@kernel
def sync_rows_serial(kind, p, s1, s2, h, last, t):
    """Catch every row up to step ``t`` (``lazy="exact"``), on one thread."""
    _sync(kind, p, s1, s2, h, last, t)


@kernel(parallel=True)
def sync_rows_parallel(kind, p, s1, s2, h, last, t):
    """Catch every row up to step ``t`` (``lazy="exact"``), split over threads."""
    _sync(kind, p, s1, s2, h, last, t)


def sync_rows(kind, p, s1, s2, h, last, t):
    """Catch every row up to step ``t``; threads only pay off for large tables."""
    run = sync_rows_parallel if p.size >= PARALLEL_MIN_SIZE else sync_rows_serial
    run(kind, p, s1, s2, h, last, t)


@kernel
def sync_some_rows(kind, p, rows, s1, s2, h, last, t):
    """Catch the rows named by ``rows`` (repeats allowed) up to step ``t``: O(len(rows) * n_cols)."""
    hh = _hyper(h)
    for i in range(rows.size):
        r = rows[i]
        lag = t - last[r]
        if lag > 0:
            _catch_up_row(kind, p[r], s1[r], s2[r], hh, last[r], lag)
            last[r] = t
