"""CUDA kernels of the optimizers: thin grid-stride loops around :mod:`sparseopt._rules`.

The math is the very same scalar functions the CPU kernels call:
``numba.cuda`` compiles ``@njit`` functions called from a kernel as device
functions.  Everything here keeps to the subset of Python that CUDA
supports (scalars, tuples, ``math``, array indexing, ``cuda.atomic``): no
NumPy calls, no allocation, no exceptions.  Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) runs these kernels as Python and is what CI
tests; it checks the logic, not that NVVM compiles the kernels.
``python -m sparseopt.cuda.check_ptx`` compiles every kernel to PTX without a
GPU (it needs numba-cuda with NVVM, ``pip install "numba-cuda[cu13]"``).

Conventions (arrays are validated by the caller; nothing is bounds-checked):

* ``p``, ``s1``, ``s2``: the parameter and its two state slots, 2-D
  ``(n_rows, n_cols)``; optimizers with fewer states pass ``p`` in the unused
  slots, which are read but never written.  Dense steps use a ``(1, size)``
  view, so one element helper serves every kernel.
* ``h``: the hyperparameters as a tuple of 7 scalars of ``p``'s dtype
  (``_rules.H_SIZE``), passed by value at launch.
* ``slot``: int32 ``(n_rows,)`` scratch, ``FREE`` everywhere between steps.
  A sparse step claims each touched row for its first occurrence in ``rows``
  (``atomic.min``), sums the repeats into that occurrence, updates each row
  once, then frees the slots again (cost O(k), not O(n_rows)).
* Launches go through :func:`launch`, which sizes the grid from
  :data:`THREADS_PER_BLOCK` and :data:`MAX_BLOCKS` (module globals, so tests
  can make them small and exercise multi-block and grid-stride paths).
"""

import functools
import math
import types

from numba import cuda, int32

from .._rules import N_STATE, apply_rule, catch_up

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 1024
FREE = 2**31 - 1  # an unclaimed slot (larger than any index into ``rows``)


def launch(kernel, n, *args):
    """Run ``kernel`` over ``n`` work items (grid-stride: any grid size covers them)."""
    if n <= 0:
        return
    tpb = THREADS_PER_BLOCK
    blocks = min((n + tpb - 1) // tpb, MAX_BLOCKS)
    kernel[blocks, tpb](*args)


# --------------------------------------------------------------------------
# the update kernels, compiled per optimizer kind
# --------------------------------------------------------------------------


@cuda.jit(device=True)
def _store(n_state, p, s1, s2, r, j, a, b, c):
    """Write a rule's result to element ``(r, j)``: the parameter and the states it uses."""
    p[r, j] = a
    if n_state >= 1:
        s1[r, j] = b
    if n_state >= 2:
        s2[r, j] = c


@functools.lru_cache(maxsize=None)
def kernels_for(kind):
    """The update kernels of optimizer ``kind``: ``dense_step``, ``rows_step``, ``sync_rows``.

    ``kind`` and its number of state arrays are closure constants, so each
    kernel holds one rule only (smaller code, and only the optimizers in use
    are compiled).  Each kernel writes the state slots its rule uses.
    """
    KIND = kind
    N = N_STATE[kind]

    @cuda.jit(cache=True)
    def dense_step(p, g, s1, s2, h):
        """Dense step on ``(1, size)`` views."""
        for j in range(cuda.grid(1), p.shape[1], cuda.gridsize(1)):
            a, b, c = apply_rule(KIND, p[0, j], g[0, j], s1[0, j], s2[0, j], h)
            _store(N, p, s1, s2, 0, j, a, b, c)

    @cuda.jit(cache=True)
    def rows_step(p, rows, gsum, slot, s1, s2, h, exact, last, t):
        """Lazy step ``t`` on the rows claimed by :func:`claim_rows`, gradients ``gsum``.

        ``exact``: each row is first caught up over the steps it missed
        (stored, then read back, as the CPU kernel does).
        """
        k = rows.shape[0]
        n = p.shape[1]
        for e in range(cuda.grid(1), k * n, cuda.gridsize(1)):
            i = e // n
            j = e - i * n
            r = rows[i]
            if slot[r] != i:  # a repeat, summed into the row's first occurrence
                continue
            if exact:
                lag = t - 1 - last[r]
                if lag > 0:
                    a, b, c = catch_up(KIND, p[r, j], s1[r, j], s2[r, j], h, last[r], lag)
                    _store(N, p, s1, s2, r, j, a, b, c)
            a, b, c = apply_rule(KIND, p[r, j], gsum[i, j], s1[r, j], s2[r, j], h)
            _store(N, p, s1, s2, r, j, a, b, c)

    @cuda.jit(cache=True)
    def sync_rows(p, s1, s2, h, last, t):
        """Catch every element up to step ``t`` (then :func:`fill` ``last`` with ``t``)."""
        n = p.shape[1]
        for e in range(cuda.grid(1), p.shape[0] * n, cuda.gridsize(1)):
            r = e // n
            j = e - r * n
            lag = t - last[r]
            if lag > 0:
                a, b, c = catch_up(KIND, p[r, j], s1[r, j], s2[r, j], h, last[r], lag)
                _store(N, p, s1, s2, r, j, a, b, c)

    return types.SimpleNamespace(dense_step=dense_step, rows_step=rows_step, sync_rows=sync_rows)


# --------------------------------------------------------------------------
# kind-independent kernels
# --------------------------------------------------------------------------


# Each takes the first work item and the stride of the calling thread: a kernel
# passes its grid position and size (the launches of one sparse step), and a
# kernel that runs a whole epoch in one thread block passes the thread's index
# and the block size, with a barrier between the phases.


@cuda.jit(device=True)
def claim_rows_phase(first, stride, rows, slot):
    """``slot[r]`` = first position of row ``r`` in ``rows`` (slots start ``FREE``)."""
    for i in range(first, rows.shape[0], stride):
        cuda.atomic.min(slot, rows[i], int32(i))


@cuda.jit(device=True)
def sum_repeats_phase(first, stride, rows, values, slot, gsum):
    """Add each repeated row of ``values`` into its first occurrence in ``gsum`` (see :func:`sum_repeats`)."""
    k = rows.shape[0]
    n = values.shape[1]
    for e in range(first, k * n, stride):
        i = e // n
        j = e - i * n
        first_i = slot[rows[i]]
        if first_i != i:
            cuda.atomic.add(gsum, (first_i, j), values[i, j])


@cuda.jit(device=True)
def release_rows_phase(first, stride, rows, slot, exact, last, t):
    """Free the slots claimed by :func:`claim_rows` (``exact``: ``last[r] = t``)."""
    for i in range(first, rows.shape[0], stride):
        r = rows[i]
        if slot[r] == i:  # only the first occurrence writes
            if exact:
                last[r] = t
            slot[r] = FREE


@cuda.jit(cache=True)
def claim_rows(rows, slot):
    """``slot[r]`` = first position of row ``r`` in ``rows`` (slots start ``FREE``)."""
    claim_rows_phase(cuda.grid(1), cuda.gridsize(1), rows, slot)


@cuda.jit(cache=True)
def sum_repeats(rows, values, slot, gsum):
    """Add each repeated row of ``values`` into its first occurrence in ``gsum``.

    ``gsum`` starts as a copy of ``values``.  Float atomics: with three or
    more occurrences of a row the order of the additions, and so the last
    bit of the sum, may vary from run to run.
    """
    sum_repeats_phase(cuda.grid(1), cuda.gridsize(1), rows, values, slot, gsum)


@cuda.jit(cache=True)
def release_rows(rows, slot, exact, last, t):
    """Free the slots claimed by :func:`claim_rows` (``exact``: ``last[r] = t``)."""
    release_rows_phase(cuda.grid(1), cuda.gridsize(1), rows, slot, exact, last, t)


@cuda.jit(cache=True)
def fill(a, value):
    """``a[:] = value`` for a 1-D array."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


@cuda.jit(cache=True)
def copy_cast(src, dst):
    """``dst[:] = src`` for 1-D arrays, converting to ``dst``'s dtype."""
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


# --------------------------------------------------------------------------
# input checks on the device (read only; the caller raises on the result)
# --------------------------------------------------------------------------


@cuda.jit(cache=True)
def index_range(rows, out):
    """``out[0] = min(rows)``, ``out[1] = max(rows)`` (``out`` starts at +inf, -inf)."""
    for i in range(cuda.grid(1), rows.shape[0], cuda.gridsize(1)):
        cuda.atomic.min(out, 0, rows[i])
        cuda.atomic.max(out, 1, rows[i])


@cuda.jit(cache=True)
def count_nonfinite(x, out):
    """``out[0] +=`` the number of NaN or infinite entries of the 1-D array ``x``."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if math.isnan(x[i]) or math.isinf(x[i]):
            cuda.atomic.add(out, 0, 1)
