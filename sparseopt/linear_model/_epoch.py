"""Fused Numba epoch kernels of the linear models.

One call of :func:`run_epoch` trains a linear model over one pass of the
data: for every mini-batch it forms the gradient of the loss from the CSR
rows, updates the weight rows of the features present in the batch with
the optimizer rule of :mod:`sparseopt._rules` (``apply_rule``), and the
intercept densely.  There is no Python-level loop per sample or per batch.

The penalty is a proximal step
------------------------------
After the rule, each touched weight ``w`` takes the proximal step of the
penalty ``l1 |w| + l2 w^2 / 2`` with the optimizer's own per-coordinate step
size ``eta_i`` (:func:`step_size`)::

    w <- sign(w) max(|w| - eta_i l1, 0) / (1 + eta_i l2)

The proximal step is taken at **every** step, also by the features absent
from the batch, so that the loss gradient (applied when a feature is
present) and the penalty (applied at every step) balance at the minimiser
of the objective of SPEC.md, not of a frequency-weighted variant of it.
Absent features are not touched: each feature remembers the last step it
was brought up to date (``last``) and, when it is next read, takes the
``k`` missed proximal steps in closed form (:func:`prox_k`).  With
``lazy="skip"`` the optimizer state of an absent feature is left as it is,
so its step size ``eta_i`` is the one of its last update (kept in an array
as ``log(1 + eta_i l2)``, :func:`_lag_param`, so that a catch-up costs no
square root nor logarithm; for Adam ``eta_i`` includes the bias
correction of that step) and the closed form is exact.  Within an epoch the
learning rate is constant; every row is caught up at the end of each call.
With ``lazy="exact"`` the missed steps also replay the rule with zero
gradient (``catch_up``); for Momentum, RMSProp and Adam with a penalty this
runs one step at a time.  ``l1 > 0`` gives exact zeros.  SGD and Momentum
with a pure l2 penalty need no catch-up at all: every weight shrinks by the
same factor, kept as one scale (scikit-learn's ``wscale``).

All arrays are float64; CSR indices are int32 or int64 (normalised by the
caller, so at most two compiled signatures).

Speed notes
-----------
* No function with an array argument is called inside the loops: Numba
  wraps each such call in an atomic reference-count increment and
  decrement (``lock`` instructions, even when LLVM inlines the call), which
  made up about half of an SGD epoch.  The rules get the hyperparameters
  as a tuple (:func:`_hyper`), which they index like the array.
* SGD with no proximal step (a pure l2 penalty in the scale, or none) is
  linear in the gradient, so each sample's term is added straight into
  the weights: no deduplication of a mini-batch's features (as
  ``SGDClassifier``).  Momentum likewise, taking its velocity's decay at a
  feature's first term in the batch (``last[j] != t``), on records of
  weight, velocity and that step in a fit (one cache line per entry, not
  three: 11-15% on the Zipf set's epochs).  Other rules sum
  the batch's gradient per feature through a sparse set (``slot``/
  ``touched``, first terms marked by ``last[j] == t``), which needs no
  clearing.
* The CSR row two samples ahead is prefetched (``_jit.prefetch``): rows are
  read in random order, and a 100,000-row set no longer fits the L3
  (sgd 0.65-0.75x per epoch).  Prefetching the weights, states or
  ``last`` of the next row's features measured no gain: the misses of
  one row already overlap.
* The catch-up is fused into the margin pass and has no branch on
  ``k = 0``; its ``exp`` is :func:`_exp_neg_fast` (no libm call: a
  polynomial below 0.25, where 86-99% of the Zipf set's catch-ups fall, and
  tables above), its ``log(1 + eta l2)`` is computed once per update
  (:func:`_lag_param`), not per catch-up.  In a stripped-down margin pass
  on the Zipf set the table form cost ~6 ns per entry over no ``exp``
  at all, the polynomial ~4 (the table lookups hang on a conversion to
  an integer: a longer chain per entry).
* Where an adaptive epoch goes (AdaGrad, batch 32, Zipf sets, ablations;
  ns per stored entry, 5,000 / 100,000 features): whole epoch 23 / 29-33
  (sgd 6 / 7-9); without a penalty 19 / 25, so the catch-up, proximal step
  and ``log1p`` are 20-25%; finding each entry's feature in the batch's
  set 7-9 / 5-10; gathering, updating and scattering the distinct features
  6-9 / 7; the rest is the margin pass.  A plain gather-sum over the
  entries in the epoch's row order costs 4-5.  In a stripped-down batch-1
  AdaGrad epoch on the 100,000-feature set the catch-up in the margin pass
  costs ~8 ns per entry over sgd's 5-6: ~4 for ``_exp_neg_fast`` and ~3 for
  reading ``last`` and the catch-up parameter, each a cache line of its own.
* So adaptive rules with one output and a penalty run on records
  (:func:`_run_epoch_records`): a feature's weight, catch-up parameter,
  last step, state and gradient sum are one row of an array, one cache
  line instead of four or five (stripped-down epoch: 13 against 19-21 ns
  per entry with separate arrays; the whole kernel, AdaGrad and Adam at
  batch 1 and 32: 10-20% faster).  The batch's features are registered in
  the margin pass, which reads each feature's last step anyway, and the
  gradient is summed into the records: no separate pass finds each entry's
  slot.  Records of 4-5 fields measured best; 8 (a cache line each) was
  slower (the table no longer fits as well in the caches).
* The records are 32 bytes (AdaGrad, RMSProp: the gradient sum kept in the
  catch-up parameter's field, zeroed once the batch's margins have read
  it, :func:`_clear_sums`) or 40 (Adam), and start a cache line
  (:func:`aligned_rows`), so that no record of 32 bytes straddles two;
  Adam's are padded to 64 and Momentum's to 32 on wide models
  (:data:`WIDE_RECORDS`).  Records of 40 or 48 bytes crossed two lines for
  half the features, which wide models pay in memory traffic: 2**20
  features, whole fits, AdaGrad 0.79-0.90x, Adam 0.89x, Momentum
  0.78-0.79x; 100,000 features within noise; a9a 0.98x.
* The catch-up's ``exp`` is computed also for weights already up to date
  (``k = 0``): a branch on it is mispredicted too often where they are
  mixed (Zipf set: 11-36% of entries).  At batch > 1 where most entries
  repeat a feature met earlier in their batch (a9a at batch 32: 78%
  repeats, 98% of entries with ``k = 0``), the kernel switches to the
  branch (``skip_current``, decided every ~2,000 entries from the repeats,
  which the registration counts for free): a9a, AdaGrad, batch 32, 14 ->
  10 ns per entry; no change elsewhere.
* Adaptive rules at batch > 1 gather the batch's features into contiguous
  buffers, update them in one loop per kind (:func:`_update_block`, which
  LLVM vectorises: square roots, divisions and ``log1p``'s polynomial 8 at
  a time) and scatter them back: ~5-15% per epoch on the Zipf set.
  Sending batch 1 the same way was ~1.3-1.5x slower on a9a (14-term rows:
  the per-batch overhead dominates).
* A call on data with fewer stored entries than weights (``partial_fit``
  on a chunk of a hashed model) makes records only for the features it
  meets (numbered through a hash table that stays in cache,
  :func:`_compact_records`; each entry's record is looked up once), and
  leaves the estimator's ``last`` alone (every row is up to date with the
  call's first step on entry and its last on return).  It catches the
  others up at the end, block by block,
  in a loop over their non-zero weights that LLVM vectorises
  (:func:`_catch_up_rest`, :func:`_decay_lanes`: 2**20 weights, 27%
  non-zero, in 3.5 ms; 7.1 over all of them, 14-26 one at a time).  Such
  an epoch writes nothing back when the model diverges, so ``partial_fit``
  need not copy the model first.  For that, ``log(1 + eta l2)`` below
  0.25 is a polynomial or ``2 atanh(x / (2 + x))`` (:func:`_log1p`, within
  3 ulp of libm): AdaGrad's step sizes on a hashed model's rare features
  put 97% of them above the former polynomial's 1e-3, where each took a
  libm call.
* SGD's and Momentum's additive epochs on such a call (batch > 1, l2 in
  the weights' scale or no penalty) run on compact records too: the
  weights the call does not meet are only scaled, at the end, by the
  factors folded in mid-call kept in order (the same bits), so the epoch
  writes nothing back when the model diverges.  2**20 features, 1,000
  rows: Momentum 6.1 -> 3.6 ms, SGD 1.2x faster.
* Every other such call (several outputs, batch 1, an l1 penalty, exact
  mode's replay, no penalty) runs the general kernel on compact copies of
  the rows it meets (:func:`_run_epoch_compact`) and catches the others up
  in one pass at the end: the blocked catch-up over all outputs, the
  replay, or the scale's factors, logged in order by the kernel.  It
  writes nothing back when the model diverges either, so ``partial_fit``
  copies nothing and keeps no undo log (the log of the rows read that this
  replaced was slower: SGD at batch 1, 2**20 features, 1.15-1.55x).  3
  classes, 2**20 features, 1,000 rows: AdaGrad 44.6 -> 14.7 ms a call.
* An epoch on records of enough data (262,144 stored entries, records of
  every feature, and 16,384 features or mini-batches of 1,024 entries on
  average: :func:`on_two_threads`) runs on two threads, each with
  its own features: a run of each CSR row when its indices are in order
  (:func:`thread_split`, once per training run), split where each thread
  holds half the stored entries (:func:`_run_epoch_records_threads`).  They
  wait for each other once per mini-batch, to add their parts of the
  margins (release and acquire through :func:`sparseopt._jit.store_release`
  and :func:`sparseopt._jit.load_acquire`: ~60 ns a wait when neither
  thread is descheduled).  Each core's L2 cache then holds its half of the
  records.  Zipf set, whole fits: AdaGrad, RMSProp and Adam 1.6-1.8x faster
  at batch 32 and at batch 1 (the kernel alone, AdaGrad, batch 32: 122 ->
  70 ms, minimum of 15 in turn).  Prefetching the records of the row two
  samples ahead pays there (72 -> 63 ms; an earlier release found no gain
  in it on one thread).
* Momentum's additive epoch on records of every feature runs on two threads
  likewise where its data is as large (:func:`momentum_on_two_threads`,
  :func:`_run_epoch_momentum_threads`): margins in two parts, the batch's
  loss in one vectorised loop, each thread's terms into its own records, the
  intercept and the weights' common scale on both threads alike.  Whole fits,
  batch 32, one thread against two: 100,000 Zipf rows on 100,000 features
  46.5 -> 30.4 ms an epoch, on 2**20 features 112 -> 63 ms.
* Where the two-thread epoch goes (cycle counters per thread and epoch,
  AdaGrad, batch 32, the Zipf set: 108-113M in all, ~143M in the previous
  release): the margin pass 62M (each feature's first entry in a batch
  misses the L2 cache; without the catch-up's ``exp`` it took 54 of 72M),
  the gradient sum 15M, the update 25-27M (gather 6-8M, vectorised rule 8M,
  scatter 10-11M), the loss 3M, the waits 1-5M.  What brought it there:
  the log loss of a batch's margins in one vectorised loop
  (:func:`_log_loss_lanes`; 16-18M with libm's ``exp`` and ``log1p`` one
  sample at a time); the catch-up's polynomial with fused multiply-adds
  (:func:`sparseopt._jit.fmuladd`); the update's ``log1p`` as the
  division-free polynomial unless a block needs the other form
  (:func:`_update_block`: 11.8 -> 8.5M); the row 8 samples ahead's start,
  split point, target and sample weight prefetched (random reads too:
  margin 70 -> 62M, gradient sum 25 -> 15M, loss 5.5 -> 3M).
* The one-thread epochs at batch > 1 on data of at most
  :data:`BATCH_LOSS_MAX_ENTRIES` stored entries (a9a) compute a mini-batch's
  log loss in one vectorised loop after its margins (:func:`_batch_losses`,
  as the two-thread epoch does), and the records' epoch then sums the
  gradient in a second pass over the batch's rows: a9a, batch 32, whole
  fits in turn: sgd 0.86x, momentum 0.88x, AdaGrad 0.96x, Adam 0.95x.  On
  larger data the rows come from memory and libm's loss, one sample at a
  time, runs under the next row's misses (the batch's loop: sgd 1.02-1.06x
  slower on 30,000-100,000 Zipf rows).
* Tried and not kept (bit-identical, README "Speed"): the batch's set in
  one ``step << 32 | slot`` word per feature (gains within noise); the
  margin pass's catch-up split into a gather loop for LLVM to vectorise
  (it did not: slower); in the two-thread epoch, the gradient summed into
  per-batch buffers found through a slot kept in the record (67.6 against
  60.3 ms, minimum of 21); a fit's records in the order of the features'
  counts (on one thread: 20.4 against 21.6 ns per entry, within noise);
  each update deferred to the feature's next read in a later batch, which
  saves the batch's feature set but puts a square root, divisions and a
  ``log1p`` in the margin pass's chain (25 -> 43 ns per entry).  In the
  two-thread epoch (whole fits in turn, bit-identical unless said): the
  margin pass split in three passes over a batch (register the features,
  their catch-ups' ``exp`` in a vectorised loop, the margins), whose first
  pass alone took 50M cycles, where the fused loop hides its ``exp`` under
  the misses (margin 72 -> 82M); each entry's slot kept for the gradient
  sum to go to an L1 buffer without reading the records again (1.29x
  slower); records of 4 fields (32 bytes, the gradient sum in the catch-up
  parameter's field), aligned to cache lines or to huge pages (within
  noise at 100,000 features; kept since, for wide models: above);
  unsigned indices, without Numba's wraparound code (within noise); the
  update in chunks of 128 features (1.07x slower to 0.96x: noise).
"""

import math

import numpy as np
from numba import prange

from .._jit import fmuladd, kernel, lanes, load_acquire, prefetch, rule, store_release, yield_cpu
from .._kernels import PARALLEL_MIN_SIZE
from .._rules import (ADAGRAD, ADAM, EPS, H_SIZE, LR, MOMENTUM, RMSPROP, SGD, WD, A, AC, B, BC, C1, C2,
                      adam_factors, adam_rate, adam_step, apply_rule, catch_up, root_rate)

__all__ = ["SQUARED", "LOG", "MULTINOMIAL", "DIVERGED", "WRITTEN", "run_epoch", "on_records", "on_two_threads",
           "momentum_on_two_threads", "thread_split", "writes_nothing_on_divergence", "work_arrays", "weight_sums",
           "all_finite", "mean_sq_norm", "step_size", "prox_k"]

# loss kinds
SQUARED, LOG, MULTINOMIAL = 0, 1, 2

# run_epoch's status: the epoch was written (WRITTEN), or the model diverged and nothing was written
# back (DIVERGED: see run_epoch)
DIVERGED, WRITTEN = 0, 1

# run_epoch prefetches the CSR row of the sample this many samples ahead
PREFETCH_ROWS = 2

# the general kernel computes the log loss of a mini-batch in one vectorised loop after its
# margins (_batch_losses) on data of at most this many stored entries (12 MiB of CSR with 32-bit
# indices): there each sample's work is computation, sgd at batch 32 0.84x (a9a) and 0.95x
# (20,000 Zipf rows of 50 entries).  On more, the rows come from memory and libm's exp and log1p,
# one sample at a time, run under the next row's cache misses: the separate loop made sgd
# 1.02x (30,000 Zipf rows) to 1.04-1.06x (100,000) slower (whole fits in turn, medians of 9-11)
BATCH_LOSS_MAX_ENTRIES = 1 << 20


# --------------------------------------------------------------------------
# scalar helpers
# --------------------------------------------------------------------------


@rule
def step_size(kind, s1, s2, h):
    """Per-coordinate step size the rule of ``kind`` gives a gradient, at state ``(s1, s2)``.

    SGD: ``lr``; Momentum: ``lr / (1 - momentum)`` (the total movement one
    gradient causes through the velocity); AdaGrad: ``lr / sqrt(G + eps)``;
    RMSProp: ``lr / sqrt(E + eps)``; Adam: ``lr / (sqrt(v / (1 - beta2^t)) + eps)``.
    The rules compute the adaptive ones alike (:func:`sparseopt._rules.root_rate`,
    :func:`sparseopt._rules.adam_rate`), so that LLVM computes a step size once where a
    rule and this function both need it (:func:`_step_prox`).
    """
    if kind == SGD:
        return h[LR]
    if kind == MOMENTUM:
        return h[LR] / (1.0 - h[A])
    if kind == ADAGRAD or kind == RMSPROP:
        return root_rate(s1, h)
    return adam_rate(s2, h, h[C2])


@rule
def _exp_neg(y):
    """``exp(-y)`` for ``y >= 0``; a Taylor polynomial below 1e-3 (relative error < 1e-17)."""
    if y < 1e-3:
        return 1.0 - y * (1.0 - y * (0.5 - y * (1.0 / 6.0 - y * (1.0 / 24.0 - y * (1.0 / 120.0)))))
    return math.exp(-y)


# exp(-y) = 2^(-m/64) exp(-r), m = floor(64 y / log 2) < 4096 (y < 44), r = y - m log(2) / 64
# in [0, 0.0109): 2^(-m/64) = 2^-(m >> 6) 2^(-(m & 63)/64) from two tables of 64 (the
# first exact), exp(-r) from its Taylor polynomial to r^6 (truncation < 4e-18 relative)
# in Estrin's form (a short dependency chain); log(2) / 64 split in two so that
# m * _LN2_64_HI is exact
_EXP_HI = np.array([2.0 ** -q for q in range(64)])
_EXP_LO = np.array([2.0 ** (-i / 64.0) for i in range(64)])
_LN2_64_HI = float.fromhex("0x1.62e42fee00000p-7")  # fdlibm's split of log(2), over 64
_LN2_64_LO = float.fromhex("0x1.a39ef35793c76p-39")


@rule
def _exp_neg_fast(y):
    """``exp(-y)`` for ``y >= 0`` within 2 ulp of libm's, without a libm call below ``y = 44``
    (exactly 1 at ``y = 0``): :func:`_exp_neg_poly` below 0.25, :func:`_exp_neg_table` above
    (one branch, predicted where most catch-ups are short).  CPU only (global tables)."""
    if y < _EXP_POLY_MAX:
        return _exp_neg_poly(y)
    if not y < 44.0:  # also NaN: int(NaN) is undefined and would index outside the tables
        return math.exp(-y)
    return _exp_neg_table(y)


# below this, exp(-y) is a polynomial (no table, no conversion to an integer).  At 0.25
# rather than 0.125 (Taylor, an earlier release): AdaGrad's first epoch at its default
# learning rate puts 26% of the Zipf set's catch-ups above 0.125 but 14% above 0.25 (later
# epochs: 5% and 0.8%), and the branch to the tables, taken that often, is mispredicted.
# A near-minimax polynomial on the wider range costs one multiply-add fewer than Taylor's on
# the narrower one: that epoch 54 -> 48 ms, later ones even (AdaGrad, batch 32, medians of 9
# in turn).  Up to 0.5 (degree 11): that epoch 46 ms, later ones 2.5% slower.
_EXP_POLY_MAX = 0.25


# exp(-y) = 1 - y + y^2 T(y) below _EXP_POLY_MAX, T of degree 7: the Chebyshev fit of
# (exp(-y) - 1 + y) / y^2 on [0, 0.25] (mpmath.chebyfit, 50 digits; error < 1.2e-16, so
# < 1e-17 relative in exp(-y)), coefficients rounded to float64
_EXP_T = tuple(float.fromhex(c) for c in (
    "0x1.ffffffffffffep-2",
    "-0x1.5555555554ce3p-3",
    "0x1.55555554a3c4cp-5",
    "-0x1.111110b8207cfp-7",
    "0x1.6c16959de0c5ep-10",
    "-0x1.a00e4475e29c1p-13",
    "0x1.9e5a34fb16151p-16",
    "-0x1.4ecda9b0da864p-19",
))


@lanes
def _exp_neg_poly(y):
    """``exp(-y)`` for ``0 <= y < 0.25``: ``1 + (y^2 T(y) - y)`` with ``T`` the near-minimax
    polynomial ``_EXP_T`` in Estrin's form (a short chain), with fused multiply-adds
    (:func:`sparseopt._jit.fmuladd`).  Only the last addition rounds at the result's scale:
    within 1 ulp of libm's, exactly 1 at ``y = 0``."""
    a = _EXP_T
    y2 = y * y
    q0 = fmuladd(y2, fmuladd(y, a[3], a[2]), fmuladd(y, a[1], a[0]))
    q1 = fmuladd(y2, fmuladd(y, a[7], a[6]), fmuladd(y, a[5], a[4]))
    return 1.0 + fmuladd(y2, fmuladd(y2 * y2, q1, q0), -y)


@lanes
def _exp_neg_lanes(y):
    """:func:`_exp_neg_fast` for ``0 <= y < 44`` without a branch (both forms computed, one kept)."""
    return _exp_neg_poly(y) if y < _EXP_POLY_MAX else _exp_neg_table(y)


@lanes
def _exp_neg_table(y):
    """:func:`_exp_neg_fast` for ``0 <= y < 44``: the tables and the polynomial, no branch."""
    m = int(y * (64.0 / math.log(2.0)))
    r = (y - m * _LN2_64_HI) - m * _LN2_64_LO
    r2 = r * r
    p = (1.0 - r) + r2 * ((0.5 - r * (1.0 / 6.0)) + r2 * ((1.0 / 24.0 - r * (1.0 / 120.0)) + r2 * (1.0 / 720.0)))
    return (_EXP_HI[m >> 6] * _EXP_LO[m & 63]) * p


@lanes
def _decay_lanes(eta, k, l2):
    """``(exp(-k log(1 + eta l2)), exact)``: ``k`` missed proximal steps of a pure l2 penalty with
    step size ``eta`` (:func:`_lag`), without a branch, so that a loop over contiguous weights
    vectorises.  Bit-identical to ``_exp_neg_fast(k * _lag_param(eta, l2))`` where ``exact``;
    elsewhere (``eta l2 >= 0.25`` or ``k log(1 + eta l2) >= 43``, where those take their other
    branch; also NaN) the factor is 1 and the caller recomputes it one weight at a time."""
    x = eta * l2
    y = k * _log1p_lanes(x)
    exact = x < _LOG1P_LANES_MAX and 0.0 <= y < 43.0
    return _exp_neg_lanes(y if exact else 0.0), exact


@rule
def _one_minus_exp_neg(y):
    """``1 - exp(-y) = -expm1(-y)`` for ``y >= 0``, without cancellation."""
    if y < 1e-3:
        return y * (1.0 - y * (0.5 - y * (1.0 / 6.0 - y * (1.0 / 24.0 - y * (1.0 / 120.0)))))
    return -math.expm1(-y)


# _log1p's range without a libm call: log(1 + eta l2) of AdaGrad's large step sizes (rare
# features, a hashed model's) reaches 1e-3 .. 1e-1
_LOG1P_LANES_MAX = 0.25


@rule
def _log1p(x):
    """``log(1 + x)`` for ``x >= 0``: :func:`_log1p_poly` below 1e-3, :func:`_log1p_atanh` below
    0.25, else libm's (CPU and GPU).

    The catch-up parameter ``log(1 + eta l2)`` is computed at every update of
    a weight: the polynomials save a libm call there, and let loops over
    contiguous arrays vectorise (:func:`_log1p_lanes`) with the same bits."""
    if x < 1e-3:
        return _log1p_poly(x)
    if x < _LOG1P_LANES_MAX:
        return _log1p_atanh(x)
    return math.log1p(x)


@lanes
def _log1p_lanes(x):
    """:func:`_log1p` for ``0 <= x < 0.25`` without a branch (both forms computed, one kept), for
    vectorised loops (CPU)."""
    return _log1p_poly(x) if x < 1e-3 else _log1p_atanh(x)


@rule
def _log1p_atanh(x):
    """``log(1 + x) = 2 atanh(s)``, ``s = x / (2 + x)``, to ``s^19``: for ``1e-3 <= x < 0.25``
    (truncation < 1e-19 relative; within 3 ulp of libm's ``log1p``, the rounding of ``s``)."""
    s = x / (2.0 + x)
    s2 = s * s
    p = 1.0 / 17.0 + s2 * (1.0 / 19.0)
    p = 1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 * p)
    p = 1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * p)
    p = 1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * p)
    p = 1.0 + s2 * (1.0 / 3.0 + s2 * p)
    return 2.0 * s * p


@rule
def _log1p_poly(x):
    """The Taylor polynomial of ``log(1 + x)`` to ``x^6`` (truncation < 2e-19 relative below 1e-3)."""
    return x * (1.0 - x * (0.5 - x * (1.0 / 3.0 - x * (0.25 - x * (0.2 - x * (1.0 / 6.0))))))


@rule
def prox_k(w, eta, l1, l2, lc, k):
    """``k`` proximal steps of ``l1 |w| + l2 w^2 / 2`` with step ``eta``, in closed form.

    One step maps ``u = |w|`` to ``(u - eta l1) / c`` with ``c = 1 + eta l2``,
    clipped at 0, so ``k`` steps give ``u c^-k - eta l1 (1 - c^-k) / (c - 1)``
    (``u - k eta l1`` when ``l2 = 0``).  ``lc`` is ``log(c)``, passed in so
    that callers with a common step size compute it once.
    """
    if w == 0.0:
        return w
    u = abs(w)
    if l2 > 0.0:
        ck = _exp_neg(k * lc)
        u = u * ck
        if l1 > 0.0:
            u -= l1 * _one_minus_exp_neg(k * lc) / l2
    else:
        u -= k * eta * l1
    if u <= 0.0:
        return 0.0
    return u if w > 0.0 else -u


@rule
def _lag(w, eta, l1, l2, lc, k):
    """:func:`prox_k` as the CPU kernel takes it: a pure l2 penalty (the usual case) is one
    multiplication by :func:`_exp_neg_fast` (``k = 0`` leaves ``w`` as it is)."""
    if l1 == 0.0:
        if l2 > 0.0:
            return w * _exp_neg_fast(k * lc)
        return w
    return prox_k(w, eta, l1, l2, lc, k)


@rule
def _prox_lag(w, eta_j, l1, l2, uniform, eta_u, lc_u, k):
    """Weight ``w`` after ``k`` missed proximal steps with step ``eta_u`` (uniform) or ``eta_j``."""
    if uniform:
        return prox_k(w, eta_u, l1, l2, lc_u, k)
    if w == 0.0:
        return w
    return prox_k(w, eta_j, l1, l2, _log1p(eta_j * l2), k)


@rule
def _lag_param(eta, l2):
    """What a feature keeps for its catch-up (:func:`prox_k`'s ``lc``, and its ``eta`` when ``l2 = 0``):
    ``log(1 + eta l2)`` when ``l2 > 0``, else ``eta``.  Computed once per update rather than per catch-up."""
    if l2 > 0.0:
        return _log1p(eta * l2)
    return eta


@rule
def prox_1(w, eta, l1, l2):
    """One proximal step of ``l1 |w| + l2 w^2 / 2`` with step ``eta`` (``prox_k`` with k = 1)."""
    u = abs(w) - eta * l1
    if u <= 0.0:
        return 0.0
    u /= 1.0 + eta * l2
    return u if w > 0.0 else -u


@rule
def _set_step(kind, h, t):
    """Adam's bias corrections of step ``t`` (the same values as ``optim.Adam``)."""
    if kind == ADAM:
        h[C1], h[C2] = adam_factors(h[A] ** t, h[B] ** t)


@rule
def _hyper(h):
    """The hyperparameter array ``h`` as a tuple, which the rules index alike.

    In the hot loops of :func:`run_epoch` the rules get this tuple, not the
    array: every call of a function with an array argument costs an atomic
    reference-count increment and decrement (Numba's NRT), even when LLVM
    inlines the call, which made up about half of an SGD epoch; and a tuple
    lives in registers, not reloaded after each store to the weights.
    """
    return (h[LR], h[EPS], h[WD], h[A], h[B], h[C1], h[C2], h[AC], h[BC])


@rule
def _hyper_step(hh, kind, t):
    """The tuple ``hh`` with Adam's bias corrections of step ``t`` (the values :func:`_set_step` writes)."""
    if kind != ADAM:
        return hh
    c1, c2 = adam_factors(hh[A] ** t, hh[B] ** t)
    return (hh[LR], hh[EPS], hh[WD], hh[A], hh[B], c1, c2, hh[AC], hh[BC])


# _hyper lists the slots in order
assert (LR, EPS, WD, A, B, C1, C2, AC, BC) == tuple(range(H_SIZE))


@rule
def _rule_moves_at_zero(kind):
    """Whether a zero-gradient step changes the parameter or the state (without weight decay)."""
    return kind == MOMENTUM or kind == RMSPROP or kind == ADAM


@rule
def _store(W, S1, S2, j, c, p, s1, s2):
    """Write one element back.  Unused state slots alias ``S1`` or ``W`` (as in
    :mod:`sparseopt._kernels`) and hold pass-through values, so the real
    values are written last: ``S2``, then ``S1``, then ``W``."""
    S2[j, c] = s2
    S1[j, c] = s1
    W[j, c] = p


@lanes
def _row_moves(W, S1, S2, j):
    """Whether row ``j``'s weights or states hold a non-zero: a row of zeros (a feature never
    met, most of a hashed model's) stays zeros in a zero-gradient replay and its proximal steps
    (every rule's step is 0 at p = state = 0), so :func:`_catch_up_exact`, one step at a time
    with a penalty, is skipped for it (Adam, exact mode, partial_fit on 2**20 features: ~1.1 s
    a call before)."""
    nonzero = False
    for c in range(W.shape[1]):
        nonzero |= W[j, c] != 0.0 or S1[j, c] != 0.0 or S2[j, c] != 0.0
    return nonzero


@rule
def momentum_prox_k(p, v, h, l2, k):
    """``k`` zero-gradient steps of Momentum (no weight decay), each followed by the proximal
    step of a pure l2 penalty with Momentum's step size ``eta = lr / (1 - a)``, in closed form:
    ``(p, v)`` after them.

    Step ``s`` maps ``v`` to ``a^s v`` and ``p`` to ``(p - m a^s v) c`` with
    ``c = 1 / (1 + eta l2)`` and ``m = 1`` (``a`` for Nesterov), so after ``k`` steps
    ``c^k p - m a v G`` with ``G = sum_{s<k} c^(k-s) a^s``; with ``y = log(a / c)``,
    ``G = c^k expm1(k y) / expm1(y)`` where ``a < c`` and ``a^k (-expm1(-k y)) / expm1(y)``
    where ``a > c``: no overflow, and no cancellation where ``a`` is close to ``c``.  O(1)
    instead of ``k`` steps (``lazy="exact"``, Momentum with an l2 penalty on a 20,000-row
    Zipf set: ~530 ns per stored entry with the steps replayed).
    """
    ck, ma, G, ak = _momentum_prox_consts(h, l2, k)
    if h[A] == 0.0:
        return p * ck, 0.0 * v
    return ck * p - ma * v * G, v * ak


@kernel
def _momentum_prox_table(h, l2, n):
    """:func:`_momentum_prox_consts` for ``k = 1 .. n`` missed steps, in row ``k`` of an
    ``(n + 1, 4)`` array (row 0 unused): an epoch's catch-ups of Momentum's exact mode with an l2
    penalty look them up rather than computing a ``log`` and two ``expm1`` per row caught up."""
    M = np.zeros((n + 1, 4))
    for k in range(1, n + 1):
        M[k, 0], M[k, 1], M[k, 2], M[k, 3] = _momentum_prox_consts(h, l2, k)
    return M


@lanes
def _momentum_catch_up_row(W, S1, j, MT, k, a_zero):
    """:func:`momentum_prox_k` on row ``j`` of the weights ``W`` and velocities ``S1`` (Momentum's
    one state), with its constants for ``k`` steps looked up in ``MT`` (:func:`_momentum_prox_table`;
    ``a_zero``: no momentum): the same bits."""
    for c in range(W.shape[1]):
        pv = W[j, c]
        vv = S1[j, c]
        W[j, c] = pv * MT[k, 0] if a_zero else MT[k, 0] * pv - MT[k, 1] * vv * MT[k, 2]
        S1[j, c] = 0.0 * vv if a_zero else vv * MT[k, 3]


@rule
def _momentum_prox_consts(h, l2, k):
    """:func:`momentum_prox_k`'s constants, the same for every weight: ``(c^k, m a, G, a^k)``
    (``G`` and ``a^k`` are 0 where ``a = 0``)."""
    a = h[A]
    lc = _log1p(step_size(MOMENTUM, 0.0, 0.0, h) * l2)  # -log(c)
    ck = _exp_neg(k * lc)
    if a == 0.0:
        return ck, 0.0, 0.0, 0.0
    y = math.log(a) + lc
    if y < 0.0:
        G = ck * (math.expm1(k * y) / math.expm1(y))
    elif y > 0.0:
        G = a ** k * (-math.expm1(-k * y) / math.expm1(y))
    else:
        G = ck * k
    m = a if h[B] != 0.0 else 1.0
    return ck, m * a, G, a ** k


@rule
def rmsprop_prox_steps(p, E, h, l1, l2, k):
    """``k`` zero-gradient steps of RMSProp (no weight decay: ``E <- rho E``, ``p`` unchanged),
    each followed by the proximal step with the step size it leaves, ``lr / sqrt(E + eps)``:
    ``(p, E)`` after them.  The step size changes at every step, so there is no closed form;
    this is the replay of :func:`catch_up` and :func:`prox_1` with the same arithmetic (the same
    bits) without recomputing ``rho ** 1`` and the other closed-form constants at each step.
    """
    rho = h[A]
    for s in range(k):
        E = E * rho
        p = prox_1(p, step_size(RMSPROP, E, 0.0, h), l1, l2)
    return p, E


@kernel
def _adam_bias_tables(h, t_first, n):
    """Adam's bias corrections of the steps ``t_first + 1 .. t_first + n`` (index ``a - t_first - 1``
    for step ``a``), as factors (:func:`sparseopt._rules.adam_factors`), as :func:`_catch_up_exact`'s
    replay computed them at each step: both from ``beta^(a-1) * beta`` as
    :func:`sparseopt._rules.catch_up` does, and the second from ``beta2^a`` as the step size
    (:func:`step_size` with :func:`_hyper_step`): the same bits, without three powers per step
    and weight."""
    beta1 = float(h[A])
    beta2 = float(h[B])
    T = np.empty((3, max(n, 0)))
    for i in range(n):
        a = t_first + i + 1
        T[0, i], T[1, i] = adam_factors(beta1 ** (a - 1) * beta1, beta2 ** (a - 1) * beta2)
        T[2, i] = adam_factors(h[A] ** a, h[B] ** a)[1]
    return T


@kernel
def _catch_up_exact(kind, W, S1, S2, j, h, l1, l2, t0, k, t_first, T):
    """``lazy="exact"`` for rules that move at zero gradient (Momentum, RMSProp, Adam):
    bring weight row ``j`` from step ``t0`` to ``t0 + k``, replaying the rule
    with zero gradient and, with a penalty, one proximal step after each
    (Momentum with a pure l2 penalty: :func:`momentum_prox_k`, in closed form).
    Adam with a penalty takes its bias corrections from ``T``
    (:func:`_adam_bias_tables` from ``t_first <= t0``, up to ``t0 + k`` at least).

    A called function, not inlined: its code stays out of the hot loops.
    """
    penalised = l1 > 0.0 or l2 > 0.0
    closed = kind == MOMENTUM and l1 == 0.0 and h[WD] == 0.0
    for c in range(W.shape[1]):
        p, s1, s2 = W[j, c], S1[j, c], S2[j, c]
        if not penalised:
            p, s1, s2 = catch_up(kind, p, s1, s2, h, t0, k)
        elif closed:
            p, s1 = momentum_prox_k(p, s1, h, l2, k)
        elif kind == RMSPROP and h[WD] == 0.0:
            p, s1 = rmsprop_prox_steps(p, s1, h, l1, l2, k)
        elif kind == ADAM:
            zero = p - p
            for s in range(k):
                i = t0 + s - t_first
                p, s1, s2 = adam_step(p, zero, s1, s2, h, T[0, i], T[1, i])
                p = prox_1(p, adam_rate(s2, h, T[2, i]), l1, l2)
        else:
            for s in range(k):
                p, s1, s2 = catch_up(kind, p, s1, s2, h, t0 + s, 1)
                p = prox_1(p, step_size(kind, s1, s2, h), l1, l2)
        _store(W, S1, S2, j, c, p, s1, s2)


@lanes
def _prefetch_sample(indptr, y, sw, i):
    """Prefetch sample ``i``'s row start, target and weight: the epochs read samples in random
    order, so these are cache misses like its CSR row (Zipf set, whole fits 0.79-0.89x)."""
    prefetch(indptr, i)
    prefetch(y, i)
    prefetch(sw, i)


@rule
def _loss_grad1(loss, z, y):
    """Loss and its derivative for one margin ``z``: SQUARED ``(z - y)^2 / 2``;
    LOG ``log(1 + exp(-y z))`` with y in {-1, +1}."""
    if loss == SQUARED:
        r = z - y
        return 0.5 * r * r, r
    yz = y * z
    if yz > 0:
        e = math.exp(-yz)
        return math.log1p(e), -y * e / (1.0 + e)
    e = math.exp(yz)
    return math.log1p(e) - yz, -y / (1.0 + e)


# below this |y z| the log loss's lanes form (_log_loss_lanes) holds: exp(-|y z|) without libm
_LOSS_LANES_MAX = 43.0


@lanes
def _log1p_unit(e):
    """``log(1 + e)`` for ``0 <= e <= 1`` without a branch nor libm call: ``2 atanh(s)`` with
    ``s = e / (2 + e) <= 1/3``, its series to ``s^33`` (truncation < 1e-17 relative)."""
    s = e / (2.0 + e)
    s2 = s * s
    p = 1.0 / 31.0 + s2 * (1.0 / 33.0)
    for k in range(14, -1, -1):  # (unrolled by LLVM)
        p = 1.0 / (2 * k + 1) + s2 * p
    return 2.0 * s * p


@lanes
def _log_loss_lanes(z, y):
    """:func:`_loss_grad1`'s log loss and derivative without a branch nor libm call, for
    ``|y z| < _LOSS_LANES_MAX`` (the caller recomputes the others with :func:`_loss_grad1`), so
    that a loop over a mini-batch's margins vectorises.  Within a few ulp of
    :func:`_loss_grad1` (:func:`_exp_neg_lanes`, :func:`_log1p_unit`).  CPU only (tables)."""
    yz = y * z
    a = abs(yz)
    e = _exp_neg_lanes(a if a < _LOSS_LANES_MAX else _LOSS_LANES_MAX)  # (NaN too: a table index)
    return _log1p_unit(e) + max(-yz, 0.0), -y * (e if yz > 0.0 else 1.0) / (1.0 + e)


@lanes
def _batch_losses(loss, M, Y, V, D, m):
    """Loss and derivative of a mini-batch's ``m`` margins ``M`` with targets ``Y``, into ``V``
    and ``D`` (one output).  The log loss in one loop LLVM vectorises (:func:`_log_loss_lanes`:
    ``exp`` and ``log1p`` 4 at a time, ~160 -> ~60 cycles a sample), margins beyond its range
    (``|y z| >= 43``, NaN) recomputed by :func:`_loss_grad1`; the squared loss as it is."""
    if loss == LOG:
        for q in range(m):
            V[q], D[q] = _log_loss_lanes(M[q], Y[q])
        for q in range(m):
            if not abs(Y[q] * M[q]) < _LOSS_LANES_MAX:  # (also NaN)
                V[q], D[q] = _loss_grad1(LOG, M[q], Y[q])
    else:
        for q in range(m):
            V[q], D[q] = _loss_grad1(loss, M[q], Y[q])


@lanes
def _batch_gradient(loss, M, Y, V, dz, m, order, start, sw, lo_at, hi_at, R, E, data, loss_sum):
    """After a mini-batch's margins on records: their losses and derivatives at once
    (:func:`_batch_losses`, into ``V`` and ``dz``), each sample's weighted loss added to
    ``loss_sum`` (returned), and its term of the batch's gradient summed into the records of
    its entries ``lo_at[i] .. hi_at[i] - 1`` (record ``E[jj]``, field ``_RGS``); ``dz`` then
    holds the terms' factors."""
    _batch_losses(loss, M, Y, V, dz, m)
    for q in range(m):
        i = order[start + q]
        loss_sum += sw[i] * V[q]
        d0 = dz[q] * (sw[i] / m)
        dz[q] = d0
        for jj in range(lo_at[i], hi_at[i]):
            R[E[jj], _RGS] += data[jj] * d0
    return loss_sum


@rule
def _loss_grad(loss, z, y, dz):
    """Loss of margins ``z`` (K,) for target ``y``; writes d loss / d z into ``dz``.

    K = 1: :func:`_loss_grad1`; MULTINOMIAL: ``logsumexp(z) - z[y]`` with y
    the class index.
    """
    if loss != MULTINOMIAL:
        value, dz[0] = _loss_grad1(loss, z[0], y)
        return value
    zmax = z[0]
    for c in range(1, z.size):
        zmax = max(zmax, z[c])
    total = 0.0
    for c in range(z.size):
        dz[c] = math.exp(z[c] - zmax)
        total += dz[c]
    yi = int(y)
    for c in range(z.size):
        dz[c] /= total
    dz[yi] -= 1.0
    return math.log(total) + zmax - z[yi]


@rule
def _step_prox(kind, p, g, s1, s2, h, l1, l2):
    """The rule with gradient ``g``, then one proximal step with the rule's step size;
    returns ``(p, s1, s2, step size)``."""
    p, s1, s2 = apply_rule(kind, p, g, s1, s2, h)
    eta = step_size(kind, s1, s2, h)
    return prox_1(p, eta, l1, l2), s1, s2, eta


@rule
def _update_block(kind, P, G, S1, S2, E, L, n, h, l1, l2):
    """:func:`_step_prox` on the contiguous ``P[:n]`` etc. with gradients ``G``: step sizes into
    ``E``, the catch-up parameters :func:`_lag_param` into ``L`` (``_log1p_lanes(E l2)`` where
    ``E l2 < 0.25``).

    One loop per adaptive kind (AdaGrad, RMSProp, else Adam), where the kind is a
    constant: LLVM vectorises it.  ``L`` takes :func:`_log1p_poly` first, which needs no
    division; only where some ``E l2`` reaches 1e-3 does a second loop take
    :func:`_log1p_lanes` (the same bits either way)."""
    n_big = 0
    if kind == ADAGRAD:
        for r in range(n):
            p, s1, s2, eta = _step_prox(ADAGRAD, P[r], G[r], S1[r], S2[r], h, l1, l2)
            P[r], S1[r], S2[r], E[r], L[r] = p, s1, s2, eta, _log1p_poly(eta * l2)
            n_big += 0 if eta * l2 < 1e-3 else 1  # (NaN too)
    elif kind == RMSPROP:
        for r in range(n):
            p, s1, s2, eta = _step_prox(RMSPROP, P[r], G[r], S1[r], S2[r], h, l1, l2)
            P[r], S1[r], S2[r], E[r], L[r] = p, s1, s2, eta, _log1p_poly(eta * l2)
            n_big += 0 if eta * l2 < 1e-3 else 1  # (NaN too)
    else:
        for r in range(n):
            p, s1, s2, eta = _step_prox(ADAM, P[r], G[r], S1[r], S2[r], h, l1, l2)
            P[r], S1[r], S2[r], E[r], L[r] = p, s1, s2, eta, _log1p_poly(eta * l2)
            n_big += 0 if eta * l2 < 1e-3 else 1  # (NaN too)
    if not l2 > 0.0:
        for r in range(n):
            L[r] = E[r]
    elif n_big > 0:
        for r in range(n):
            L[r] = _log1p_lanes(E[r] * l2)
        for r in range(n):
            if not E[r] * l2 < _LOG1P_LANES_MAX:  # (NaN too)
                L[r] = _lag_param(E[r], l2)


@rule
def _step_scaled(kind, u, g, s1, s2, h, wscale, inv_wscale):
    """The rule on the weight ``wscale * u``; returns the new ``u`` (the shrink is in ``wscale``)."""
    p, s1, s2 = apply_rule(kind, wscale * u, g, s1, s2, h)
    return p * inv_wscale, s1, s2


@rule
def on_records(kind, K, l1, l2, exact):
    """Whether :func:`run_epoch` trains on records (:func:`_run_epoch_records`): an adaptive rule
    (AdaGrad, RMSProp, Adam) with one output and a penalty, and no replay of missed steps (skip
    mode, or AdaGrad in either mode).  Such an epoch writes nothing back when the model diverges."""
    adaptive = kind == ADAGRAD or kind == RMSPROP or kind == ADAM
    slow = exact and _rule_moves_at_zero(kind)
    return K == 1 and adaptive and (l1 > 0.0 or l2 > 0.0) and not slow


@rule
def _additive_on_records(kind, K, hh, l1, l2, exact, batch_size, nnz, n_features):
    """Whether :func:`run_epoch` runs SGD's or Momentum's additive epoch on records (``MR``):
    one output, no weight decay in the rule, l2 in the weights' scale or no penalty, skip mode
    (no catch-up), mini-batches of more than one sample; SGD only on compact records (``nnz``
    stored entries fewer than ``n_features`` weights: a fit reads its contiguous weights)."""
    need, slow, uniform, use_scale, eta_u, lc_u = _lazy_setup(kind, hh, l1, l2, exact)
    linear = _linear_in_gradient(K, hh, need, use_scale, l1, l2) and batch_size != 1
    return linear and (kind == MOMENTUM or (kind == SGD and nnz < n_features))


@rule
def _linear_in_gradient(K, hh, need, use_scale, l1, l2):
    """Whether SGD's and Momentum's step is linear in the gradient (so that each sample's term
    can go straight into the weights): one output, no weight decay in the rule, no catch-up,
    and an l2 penalty in the weights' scale or none (``need``, ``use_scale``: :func:`_lazy_setup`)."""
    return K == 1 and hh[WD] == 0.0 and not need and (use_scale or (l1 == 0.0 and l2 == 0.0))


@kernel
def writes_nothing_on_divergence(kind, K, l1, l2, exact, h, batch_size, nnz, n_features):
    """Whether :func:`run_epoch` leaves the weights, their state and ``last`` as they were when
    the model diverges (DIVERGED), so that its caller need not copy them first: an epoch on
    records (:func:`on_records`), and every call on fewer stored entries than weights but SGD's
    additive step at batch 1: SGD's and Momentum's additive epochs on compact records
    (:func:`_additive_on_records`) and the general kernel on compact copies of the rows
    (:func:`_compact_general`)."""
    if on_records(kind, K, l1, l2, exact) or _compact_general(kind, K, h, l1, l2, exact, batch_size, nnz,
                                                              n_features):
        return True
    hh = _hyper_step(_hyper(h), kind, 1)
    return nnz < n_features and _additive_on_records(kind, K, hh, l1, l2, exact, batch_size, nnz, n_features)


@rule
def _lazy_setup(kind, h, l1, l2, exact):
    """How missed steps are handled: ``(need, slow, uniform, use_scale, eta_u, lc_u)``.

    ``need``: rows must be caught up before they are read; ``slow``: the
    catch-up replays the rule (:func:`_catch_up_exact`); ``uniform``: the
    step size is the same for every coordinate (SGD, Momentum), ``eta_u``,
    with ``lc_u = log(1 + eta_u l2)``; ``use_scale``: SGD and Momentum with
    an l2 penalty only, where every weight shrinks by the same factor at each
    step, so the weights are stored divided by a common scale and need no
    catch-up (scikit-learn's ``wscale``).
    """
    slow = exact and _rule_moves_at_zero(kind)
    need = slow or l1 > 0.0 or l2 > 0.0
    uniform = kind == SGD or kind == MOMENTUM
    eta_u = step_size(kind, 0.0, 0.0, h) if uniform else 0.0
    lc_u = math.log1p(eta_u * l2)
    use_scale = need and uniform and not slow and l1 == 0.0
    if use_scale:
        need = False
    return need, slow, uniform, use_scale, eta_u, lc_u


@kernel
def sync_last(last, t):
    """Fill ``last`` (one value for every row, see :func:`run_epoch`) with ``t`` unless it holds it."""
    if last.size > 0 and last[0] != t:
        last[:] = t


@kernel
def all_finite(A):
    """Whether every element of ``A`` is finite, in one pass without temporaries (the divergence
    check of optimizer state): four partial sums of ``a * 0``, which is NaN for an infinite or
    NaN ``a``, else 0."""
    flat = A.reshape(-1) if A.flags.c_contiguous else A.copy().reshape(-1)
    n = flat.size
    n4 = n - n % 4
    z0 = z1 = z2 = z3 = 0.0
    for i in range(0, n4, 4):
        z0 += flat[i] * 0.0
        z1 += flat[i + 1] * 0.0
        z2 += flat[i + 2] * 0.0
        z3 += flat[i + 3] * 0.0
    for i in range(n4, n):
        z0 += flat[i] * 0.0
    return (z0 + z1) + (z2 + z3) == 0.0


@kernel
def weight_sums(W):
    """``(sum |w|, sum w^2, all finite)`` of the weights ``W`` in one pass, without temporaries
    (the penalty's value and the divergence check of every epoch, O(n_features) each).

    Four partial sums of each, so that the additions are not one chain of
    dependent adds (4x faster on 2**20 weights); a finite ``sum |w|`` shows
    that every weight is finite, else they are looked at one by one."""
    a0 = a1 = a2 = a3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    flat = W.reshape(-1) if W.flags.c_contiguous else W.copy().reshape(-1)
    n = flat.size
    n4 = n - n % 4
    for i in range(0, n4, 4):
        w0, w1, w2, w3 = flat[i], flat[i + 1], flat[i + 2], flat[i + 3]
        a0 += abs(w0)
        a1 += abs(w1)
        a2 += abs(w2)
        a3 += abs(w3)
        q0 += w0 * w0
        q1 += w1 * w1
        q2 += w2 * w2
        q3 += w3 * w3
    for i in range(n4, n):
        a0 += abs(flat[i])
        q0 += flat[i] * flat[i]
    s1 = (a0 + a1) + (a2 + a3)
    s2 = (q0 + q1) + (q2 + q3)
    finite = math.isfinite(s1)
    if not finite:  # an infinite or NaN weight, or finite ones whose sum overflows
        finite = True
        for i in range(n):
            finite &= math.isfinite(flat[i])
    return s1, s2, finite


@kernel
def mean_sq_norm(indptr, data, sw):
    """``sum_i sw_i |x_i|^2 / sum_i sw_i`` over the CSR rows (0 without rows): one pass, no copy."""
    num = 0.0
    den = 0.0
    for i in range(indptr.size - 1):
        s = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            s += data[jj] * data[jj]
        num += sw[i] * s
        den += sw[i]
    return num / den if den > 0.0 else 0.0


# the fields of a feature's record in _run_epoch_records (one row of R): weight, catch-up
# parameter (_lag_param), last step (a float), optimizer state, Adam's second state.  At
# batch > 1 the catch-up parameter's field holds the batch's gradient sum (_RGS) from the
# feature's first entry of the batch, where the margin pass has read the parameter, until the
# update writes the new one
_RW, _RLC, _RLAST, _RS1, _RS2 = 0, 1, 2, 3, 4
_RGS = _RLC


# Adam's records are padded to 64 bytes, Momentum's to 32, from this many records (records of
# 40 or 24 bytes, half or a quarter of them across two cache lines, cost more than the extra
# memory once they outgrow the caches: whole fits on 100,000 Zipf rows of 50 entries, Adam, 64
# against 40 bytes, 100,000 features 1.03x, 250,000 even, 400,000 0.95x, 2**20 0.91x;
# Momentum, 32 against 24 bytes, 250,000 0.98x, 2**20 0.78-0.79x; the same code against itself
# differs by up to 7% here)
WIDE_RECORDS = 1 << 18


@rule
def record_width(kind):
    """Fields of a feature's record in :func:`_run_epoch_records`: 4 (32 bytes), 5 for Adam,
    which keeps two states.  An array of records may have more columns (:func:`work_arrays`)."""
    return _RS2 + 1 if kind == ADAM else _RS1 + 1


def record_columns(kind, n_records):
    """The columns of :func:`work_arrays`' ``n_records`` records: :func:`record_width`, or 8 (64
    bytes) for Adam's from :data:`WIDE_RECORDS`; Momentum's and SGD's compact records
    (:func:`_run_epoch_general`), 3, or 4 from :data:`WIDE_RECORDS`."""
    if kind == MOMENTUM or kind == SGD:
        return 4 if n_records >= WIDE_RECORDS else 3
    return 8 if kind == ADAM and n_records >= WIDE_RECORDS else record_width(kind)


def work_arrays(kind, n_features, K, nnz):
    """The work array ``R`` :func:`run_epoch` takes, allocated by NumPy (huge pages).

    Adaptive rules: ``R`` holds the records (one output) or the catch-up
    parameters (``(n_features, K)``), used when there is a penalty (NumPy
    does not touch the memory of an unused one).  With one output and data of
    ``nnz`` stored entries fewer than ``n_features`` (a ``partial_fit`` chunk
    on a large model; 1,000 Zipf rows on 2**16 features: 5-5.5 against
    6-6.4 ms a call with records of every feature), the records are compact:
    ``nnz`` of them, made for the features the call meets.  Momentum with
    one output, and SGD with one output on fewer entries than weights:
    ``min(n_features, nnz)`` records (:func:`record_columns`), compact likewise (used
    where the epoch is additive, :func:`run_epoch`).  Other rules: empty.  Records start a
    cache line (:func:`aligned_rows`)."""
    if (kind == MOMENTUM or (kind == SGD and nnz < n_features)) and K == 1:
        n_records = min(n_features, nnz)
        return aligned_rows(n_records, record_columns(kind, n_records))
    if kind != ADAGRAD and kind != RMSPROP and kind != ADAM:
        return np.empty((0, 1))
    if K > 1:  # (the kernel allocates its few rows where the call is compact: _compact_general)
        return np.empty((n_features if nnz >= n_features else 0, K))
    n_records = min(n_features, nnz)
    return aligned_rows(n_records, record_columns(kind, n_records))


def aligned_rows(n_rows, n_cols):
    """An uninitialised ``(n_rows, n_cols)`` float64 array whose first row starts a 64-byte cache
    line, so that records of 32 bytes never straddle two lines (NumPy's large allocations start
    16 bytes into one)."""
    buf = np.empty(n_rows * n_cols + 8)
    skip = (-(buf.ctypes.data % 64) // 8) % 8
    return buf[skip:skip + n_rows * n_cols].reshape(n_rows, n_cols)


@rule
def _most_records(indptr, order, n_features):
    """The most compact records a call on the rows ``order`` can need: one per stored entry,
    at most one per feature."""
    n = 0
    for i in order:
        n += indptr[i + 1] - indptr[i]
    return min(n, n_features)


@rule
def _compact_records(indptr, indices, order, n_rows, feat, E):
    """Number the features that the rows ``order`` hold, in the order met: ``feat[r]`` is the
    feature of record ``r``, and ``E[jj]`` the record of stored entry ``jj``; returns the count.

    A hash table of the call's features (open addressing, Fibonacci hashing; at least twice as
    many slots as ``n_rows``, the most records there can be) stays in cache, where an array of
    ``n_features`` slots would be read at random and filled every call (8 MB at 2**20 features:
    1,000 Zipf rows, 7% of a ``partial_fit`` call; 100 rows, 13%)."""
    bits = 4
    while (1 << bits) < 2 * n_rows:
        bits += 1
    hmask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    keys = np.full(1 << bits, -1, dtype=indices.dtype)
    recs = np.empty(1 << bits, dtype=indices.dtype)
    n_rec = 0
    for i in order:
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            q = np.int64((np.uint64(j) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
            while True:
                key = keys[q]
                if key == j:
                    r = recs[q]
                    break
                if key < 0:  # a feature not met before: a new record
                    r = n_rec
                    keys[q] = j
                    recs[q] = r
                    feat[r] = j
                    n_rec += 1
                    break
                q = (q + 1) & hmask
            E[jj] = r
    return n_rec


@kernel
def _max_row_length(indptr, order):
    """The most stored entries of the rows ``order``."""
    m = 0
    for i in order:
        m = max(m, indptr[i + 1] - indptr[i])
    return m


# _catch_up_rest takes the weights in blocks of this many; _catch_up_rest_threads in this many
# runs of blocks at most, which Numba's threads share out
_REST_BLOCK = 4096
_REST_RUNS = 32


@rule
def _catch_up_rest(kind, W, S1, S2, k, h, l1, l2):
    """Take ``k`` missed proximal steps on every weight of one output, with the catch-up
    parameter of its state (:func:`_lag`): the catch-up of the weights a call did not meet, all
    up to date at the call's start.  The call overwrites the others afterwards (its records),
    so every weight is taken.

    A zero weight stays zero, and most of a hashed model's are (features never met: 73% of
    2**20 after 16 chunks of 1,000 Zipf rows), so each block of weights first lists its non-zero
    ones, gathers their state into a contiguous buffer, and computes their factors there with a
    pure l2 penalty (the usual case) in one loop per kind that LLVM vectorises
    (:func:`_decay_lanes`); the scatter redoes the few weights that loop cannot take exactly one
    at a time (and all of them with l1).  2**20 AdaGrad weights, 27% non-zero: 3.5 ms, against
    7.1 when every weight was computed; :func:`_catch_up_rest_threads` shares the blocks out
    among Numba's threads.  Called once per call (array arguments cost reference counting per
    call only)."""
    _catch_up_blocks(kind, W, S1, S2, k, h, l1, l2, 0, (W.shape[0] + _REST_BLOCK - 1) // _REST_BLOCK)


@kernel(parallel=True)
def _catch_up_rest_threads(kind, W, S1, S2, k, h, l1, l2):
    """:func:`_catch_up_rest` on Numba's threads, a run of blocks each: the same bits, since the
    blocks are independent (2**20 AdaGrad weights, 27% non-zero, 2 threads: 3.3-4.3 -> 1.6-2.1 ms;
    used from ``_kernels.PARALLEL_MIN_SIZE`` weights, as the dense steps are)."""
    n_blocks = (W.shape[0] + _REST_BLOCK - 1) // _REST_BLOCK
    n_runs = min(_REST_RUNS, n_blocks)  # (numba.get_num_threads() here would make the kernels uncacheable)
    for c in prange(n_runs):
        _catch_up_blocks(kind, W, S1, S2, k, h, l1, l2, c * n_blocks // n_runs, (c + 1) * n_blocks // n_runs)


@rule
def _catch_up_blocks(kind, W, S1, S2, k, h, l1, l2, first, stop):
    """:func:`_catch_up_rest` of the blocks ``first <= b < stop`` of ``_REST_BLOCK`` weights."""
    n = W.shape[0]
    kf = float(k)
    pure_l2 = l1 == 0.0 and l2 > 0.0
    at = np.empty(_REST_BLOCK, dtype=np.int64)  # the block's non-zero weights
    sb = np.empty(_REST_BLOCK)  # their state (S2 for Adam, else S1)
    fb = np.empty(_REST_BLOCK)  # their factors
    exact = np.zeros(_REST_BLOCK, dtype=np.bool_)  # which factors the vectorised loop got exactly
    # below this eta l2, log(1 + eta l2) and exp(-k log(1 + eta l2)) take their polynomials
    x_short = min(1e-3, 0.1 / kf) if kf > 0.0 else 1e-3
    for j0 in range(first * _REST_BLOCK, min(stop * _REST_BLOCK, n), _REST_BLOCK):
        m = 0
        for j in range(j0, min(j0 + _REST_BLOCK, n)):
            at[m] = j
            m += W[j, 0] != 0.0
        if pure_l2:
            # the step sizes (one loop per kind, where the kind is a constant)
            if kind == ADAGRAD:
                for q in range(m):
                    sb[q] = S1[at[q], 0]
                for q in range(m):
                    fb[q] = step_size(ADAGRAD, sb[q], 0.0, h)
            elif kind == RMSPROP:
                for q in range(m):
                    sb[q] = S1[at[q], 0]
                for q in range(m):
                    fb[q] = step_size(RMSPROP, sb[q], 0.0, h)
            else:
                for q in range(m):
                    sb[q] = S2[at[q], 0]
                for q in range(m):
                    fb[q] = step_size(ADAM, 0.0, sb[q], h)
            # where every weight of the block has eta l2 below x_short, its log1p and exp take
            # their polynomials (y = k log(1 + eta l2) <= k eta l2 < 0.1): those alone, without
            # the other forms _decay_lanes computes to select from (a division, table lookups);
            # the same bits.  The usual case: a call's k steps of AdaGrad's small step sizes
            ok = True
            for q in range(m):
                ok &= fb[q] * l2 < x_short  # (false for NaN)
            if ok:
                for q in range(m):
                    fb[q] = _exp_neg_poly(kf * _log1p_poly(fb[q] * l2))
                    exact[q] = True
            else:
                for q in range(m):
                    fb[q], exact[q] = _decay_lanes(fb[q], kf, l2)
        for q in range(m):
            j = at[q]
            if exact[q]:
                W[j, 0] *= fb[q]
            else:
                lc = _lag_param(step_size(kind, S1[j, 0], S2[j, 0], h), l2)
                W[j, 0] = _lag(W[j, 0], lc, l1, l2, lc, kf)


@rule
def _replays_in_blocks(kind, h, l1, l2):
    """Whether exact mode's replay of missed steps runs in blocks (:func:`_replay_rest`): Adam, and
    RMSProp without weight decay, with a penalty (no closed form: one step at a time)."""
    return (l1 > 0.0 or l2 > 0.0) and (kind == ADAM or (kind == RMSPROP and h[WD] == 0.0))


@rule
def _replay_rest(kind, W, S1, S2, k, h, l1, l2, T):
    """Exact mode's replay (:func:`_catch_up_exact`) of ``k`` missed steps, with their proximal
    steps, on every weight of one output that moves (weight or state non-zero), all up to date at
    the same step (``T``: :func:`_adam_bias_tables` from it): the catch-up of the weights a call
    did not meet, for Adam and RMSProp with a penalty (:func:`_replays_in_blocks`).

    Each block's moving weights are gathered into contiguous buffers and replayed step by step
    over the whole block, a loop LLVM vectorises, where one weight at a time waits on its own
    chain of divisions and square roots (3 classes, 2**20 features, 1,000 rows: Adam ~0.55 s a
    call).  The same arithmetic per weight: the same bits."""
    _replay_blocks(kind, W, S1, S2, k, h, l1, l2, T, 0, (W.shape[0] + _REST_BLOCK - 1) // _REST_BLOCK)


@kernel(parallel=True)
def _replay_rest_threads(kind, W, S1, S2, k, h, l1, l2, T):
    """:func:`_replay_rest` on Numba's threads, a run of blocks each (the same bits)."""
    n_blocks = (W.shape[0] + _REST_BLOCK - 1) // _REST_BLOCK
    n_runs = min(_REST_RUNS, n_blocks)
    for c in prange(n_runs):
        _replay_blocks(kind, W, S1, S2, k, h, l1, l2, T, c * n_blocks // n_runs, (c + 1) * n_blocks // n_runs)


@rule
def _replay_blocks(kind, W, S1, S2, k, h, l1, l2, T, first, stop):
    """:func:`_replay_rest` of the blocks ``first <= b < stop`` of ``_REST_BLOCK`` weights."""
    n = W.shape[0]
    at = np.empty(_REST_BLOCK, dtype=np.int64)  # the block's moving weights
    pb = np.empty(_REST_BLOCK)
    mb = np.empty(_REST_BLOCK)
    vb = np.empty(_REST_BLOCK)
    for j0 in range(first * _REST_BLOCK, min(stop * _REST_BLOCK, n), _REST_BLOCK):
        m = 0
        for j in range(j0, min(j0 + _REST_BLOCK, n)):
            at[m] = j
            m += W[j, 0] != 0.0 or S1[j, 0] != 0.0 or S2[j, 0] != 0.0
        for q in range(m):
            j = at[q]
            pb[q] = W[j, 0]
            mb[q] = S1[j, 0]
            vb[q] = S2[j, 0]
        if kind == ADAM:
            for s in range(k):
                c1 = T[0, s]
                c2 = T[1, s]
                c2e = T[2, s]
                for q in range(m):
                    p, mm, vv = adam_step(pb[q], pb[q] - pb[q], mb[q], vb[q], h, c1, c2)
                    pb[q] = prox_1(p, adam_rate(vv, h, c2e), l1, l2)
                    mb[q] = mm
                    vb[q] = vv
        else:  # RMSProp without weight decay: rmsprop_prox_steps
            rho = h[A]
            for s in range(k):
                for q in range(m):
                    E = mb[q] * rho
                    pb[q] = prox_1(pb[q], step_size(RMSPROP, E, 0.0, h), l1, l2)
                    mb[q] = E
        for q in range(m):
            j = at[q]
            S2[j, 0] = vb[q]  # unused state slots alias S1 or W: real values last
            S1[j, 0] = mb[q]
            W[j, 0] = pb[q]


@kernel
def _run_epoch_records(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                       W, S1, S2, b, bs1, bs2, h, l1, l2, fit_intercept, t, R, threads):
    """:func:`run_epoch` for an adaptive rule (AdaGrad, RMSProp, Adam) with one output, a
    penalty and no replay of the rule (skip mode, or AdaGrad in either mode).

    The arithmetic the general kernel did for these rules, in the same order
    (bit-identical results), on records: each feature's weight, catch-up parameter, last
    step, state and gradient sum are one row of ``R``, so that reading a
    feature costs one cache line instead of four or five (ablation on the
    100,000-feature Zipf set, batch 1: 13 against 19-21 ns per entry).  The
    records are packed from ``W``, ``S1``, ``S2`` on entry and unpacked on
    return (``O(n_features)``, as the catch-up of every row at the end).

    Every row is up to date with step ``t`` on entry and with the returned
    step on return, so the records count their last steps from ``t`` and the
    estimator's ``last`` is neither read nor written (:func:`run_epoch`).

    The batch's features are registered in the margin pass, which reads each
    feature's last step anyway: ``last == t`` marks a feature met earlier in
    the batch (``<= t - 1`` before), and its gradient is summed into its own
    record, so no separate pass finds each entry's slot.

    ``R``: the records, ``(n_features, c)`` float64 with ``c >= record_width(kind)``,
    any values (allocated here if too small; :func:`work_arrays` aligns them to
    cache lines).  Allocated by NumPy, whose large allocations get huge pages,
    it saves the ~17 ms of page faults per 2**20 features that an allocation
    here costs (Numba's allocator gets 4 kB pages), which dominated a
    ``partial_fit`` call on a small chunk.

    Compact records, where ``R`` has fewer rows than there are features
    (:func:`work_arrays`: a call with fewer stored entries than features):
    records are made for the features the call's rows hold
    (:func:`_compact_records`), and the features it does not meet are caught
    up from ``W`` and the state at the end, so that a call costs
    O(n_features) only in that last pass.  Same results either way.
    """
    n = order.size
    n_features = W.shape[0]
    adam = kind == ADAM
    nw = record_width(kind)
    h0 = _hyper(h)
    hh = _hyper_step(h0, kind, max(t, 1))
    # last steps are kept as floats, counted from t on entry (exact below 2**53 steps a call)
    t_in = t
    hh_in = hh
    compact = R.shape[0] < n_features
    n_rows = n_features
    if compact:
        n_rows = _most_records(indptr, order, n_features)
    if R.shape[0] < n_rows or R.shape[1] < nw:
        R = np.empty((n_rows, nw))
    # compact: a record for each feature the call meets, in the order met (feat: its feature)
    feat = np.empty(n_rows if compact else 0, dtype=np.int64)
    n_rec = 0
    # E[jj]: the record of stored entry jj, its feature, or (compact) the record of its feature
    # looked up once here, so that the passes below read E in order
    E = indices
    if compact:
        E = np.empty(indices.size, dtype=indices.dtype)
        n_rec = _compact_records(indptr, indices, order, n_rows, feat, E)
    _pack_records(kind, W, S1, S2, R, feat, 0, n_rec if compact else n_features, hh_in, l2)
    pure_l2 = l1 == 0.0 and l2 > 0.0
    single = batch_size == 1
    dz = np.empty(max(batch_size, 1))
    # a mini-batch's log loss at once after its margins on data that stays in the caches, then
    # each sample's term of its gradient in a second pass (see BATCH_LOSS_MAX_ENTRIES)
    batch_loss = not single and indptr[indptr.size - 1] <= BATCH_LOSS_MAX_ENTRIES
    nb = max(batch_size, 1) if batch_loss else 1
    Mb, Yb, Vb = np.empty(nb), np.empty(nb), np.empty(nb)  # margins, targets, losses
    ends = indptr[1:]  # (sample i's entries: indptr[i] .. ends[i] - 1)
    # the features of a mini-batch, in the order first met (one sample: its CSR row,
    # which holds each feature once, is updated in place instead)
    nvec = 1 if single else min(n_features, batch_size * _max_row_length(indptr, order))
    touched = np.empty(nvec + 1, dtype=np.int64)
    Wb, S1b, Gb, Eb, Lb = np.empty(nvec), np.empty(nvec), np.empty(nvec), np.empty(nvec), np.empty(nvec)
    S2b = np.zeros(nvec)  # passed through by AdaGrad and RMSProp
    # at batch > 1, the catch-up's exp is skipped for weights already up to date (k = 0,
    # an exact no-op) where at least 60% of the last ~2,000 entries read were repeats
    # within their batch (a9a at batch 32: 78%, and 98% of its entries have k = 0; the
    # Zipf set at batch 32: ~30% and 36%, where the branch would be mispredicted too often)
    skip_current = False
    n_repeat = 0
    n_read = 0
    loss_sum = 0.0
    start = 0
    while start < n:
        stop = min(start + batch_size, n)
        m = stop - start
        t += 1
        hh = _hyper_step(h0, kind, t)
        tf = float(t - t_in)
        tm1 = tf - 1.0
        n_touched = 0
        n_in = 0
        for q in range(m):
            i = order[start + q]
            lo = indptr[i]
            hi = indptr[i + 1]
            if start + q + 4 * PREFETCH_ROWS < n:
                # (as in the general kernel: AdaGrad on one thread, Zipf set, whole fits 0.79x)
                _prefetch_sample(indptr, y, sw, order[start + q + 4 * PREFETCH_ROWS])
            if start + q + PREFETCH_ROWS < n:
                i2 = order[start + q + PREFETCH_ROWS]
                for jj in range(indptr[i2], indptr[i2 + 1], 8):
                    prefetch(E, jj)  # (what the loops read: indices, or compact records' own array)
                    prefetch(data, jj)
            # each weight of the sample brought up to step t - 1 as it is read (k = 0 is an
            # exact no-op of prox_k: no branch on it unless most are 0, see skip_current),
            # and registered in the batch; one loop for each case (LLVM does not unswitch it)
            z0 = 0.0
            n0 = n_touched
            if single:
                for jj in range(lo, hi):
                    r = E[jj]
                    k = tm1 - R[r, _RLAST]
                    R[r, _RLAST] = tf
                    if pure_l2:
                        wv = R[r, _RW] * _exp_neg_fast(k * R[r, _RLC])
                    else:
                        wv = prox_k(R[r, _RW], R[r, _RLC], l1, l2, R[r, _RLC], k)
                    R[r, _RW] = wv
                    z0 += data[jj] * wv
            else:
                z0, n_touched = _margin_batch(R, E, data, lo, hi, touched, n_touched, tf, pure_l2, skip_current,
                                              l1, l2)
                n_in += hi - lo
                if batch_loss:  # (the loss of the whole batch, and the gradient, below)
                    Mb[q] = z0 + b[0]
                    Yb[q] = y[i]
                    continue
            value, d0 = _loss_grad1(loss, z0 + b[0], y[i])
            loss_sum += sw[i] * value
            if single:
                d0 *= sw[i]
                dz[0] = d0
                for jj in range(lo, hi):
                    r = E[jj]
                    p, s1, s2, eta = _step_prox(kind, R[r, _RW], data[jj] * d0, R[r, _RS1],
                                                R[r, _RS2] if adam else 0.0, hh, l1, l2)
                    R[r, _RLC] = _lag_param(eta, l2)
                    if adam:
                        R[r, _RS2] = s2
                    R[r, _RS1] = s1
                    R[r, _RW] = p
            else:
                # the sample's term of the batch's gradient, summed into each feature's
                # record while its row and records are in L1
                d0 *= sw[i] / m
                dz[q] = d0
                _clear_sums(R, touched, n0, n_touched)  # (the features first met in this sample)
                for jj in range(lo, hi):
                    R[E[jj], _RGS] += data[jj] * d0
        if batch_loss:
            _clear_sums(R, touched, 0, n_touched)
            loss_sum = _batch_gradient(loss, Mb, Yb, Vb, dz, m, order, start, sw, indptr, ends, R, E, data,
                                       loss_sum)
        if not single:
            skip_current, n_read, n_repeat = _skip_rule(skip_current, n_read + n_in, n_repeat + n_in - n_touched)
            _update_touched(kind, R, touched, n_touched, Wb, Gb, S1b, S2b, Eb, Lb, hh, l1, l2)
        if fit_intercept:
            g = 0.0
            for q in range(m):
                g += dz[q]
            p, s1, s2 = apply_rule(kind, b[0], g, bs1[0], bs2[0], hh)
            bs2[0] = s2
            bs1[0] = s1
            b[0] = p
        start = stop
    # a diverged model is not written back: the caller raises, with the weights and the state as
    # they were on entry (only b, bs1, bs2 changed), so that it need not copy them first
    n_kept = n_rec if compact else n_features
    if not _records_finite(kind, R, n_kept, b):
        return t, loss_sum, DIVERGED
    if compact:
        # the features the call did not meet missed every step: their catch-up, from W and the
        # state (the others are overwritten below)
        if threads and n_features >= PARALLEL_MIN_SIZE:
            _catch_up_rest_threads(kind, W, S1, S2, t - t_in, hh_in, l1, l2)
        else:
            _catch_up_rest(kind, W, S1, S2, t - t_in, hh_in, l1, l2)
    _unpack_records(kind, W, S1, S2, R, feat, n_kept, l1, l2, float(t - t_in))
    return t, loss_sum, WRITTEN


@lanes
def _skip_rule(skip_current, n_read, n_repeat):
    """``(skip_current, n_read, n_repeat)`` after a mini-batch: every ~2,048 entries read, whether
    the margin pass skips the catch-up's ``exp`` of weights already up to date (at least 60% of
    the entries read repeated a feature of their batch), and the counts restarted."""
    if n_read >= 2048:
        return n_repeat >= 0.6 * n_read, 0, 0
    return skip_current, n_read, n_repeat


@lanes
def _register(R, touched, n_touched, r, tf):
    """Record ``r`` met in the mini-batch of step ``tf``: its last step set to ``tf``, and at its
    first entry of the batch (the last step was not ``tf``) the record added to ``touched``;
    returns ``(last step as read, catch-up parameter, n_touched)``.  No branch: the slot past
    the batch's features is written, and kept only at a first entry.

    The catch-up parameter's field holds the batch's gradient sum (:data:`_RGS`) once
    :func:`_clear_sums` has zeroed it, after the margins that read the parameter.  Where the sum
    is made sample by sample, a later entry of the batch reads the sum so far as the parameter,
    which the catch-up, whose ``k`` is 0 there, multiplies by 0."""
    lastr = R[r, _RLAST]
    first = lastr != tf
    R[r, _RLAST] = tf
    touched[n_touched] = r
    return lastr, R[r, _RLC], n_touched + (1 if first else 0)


@lanes
def _clear_sums(R, touched, first, stop):
    """Zero the gradient-sum field (:data:`_RGS`) of the batch's records ``touched[first:stop]``
    after their margins, which read the catch-up parameter it held (a zeroing in the margin
    pass, at the first entries, made a9a's epochs 1.06-1.75x slower)."""
    for u in range(first, stop):
        R[touched[u], _RGS] = 0.0


@lanes
def _margin_batch(R, E, data, lo, hi, touched, n_touched, tf, pure_l2, skip_current, l1, l2):
    """A sample's margin at batch > 1 on records (entries ``lo .. hi - 1``, record ``E[jj]``),
    each weight brought up to step ``tf - 1`` as it is read and its feature registered in the
    batch's ``touched`` at its first entry of the batch (last step ``tf`` marks it); returns
    ``(margin without intercept, n_touched)``.  The catch-up's ``exp`` is computed also where
    ``k = 0`` (an exact no-op), unless ``skip_current``.  One loop for each case: the usual one
    (a pure l2 penalty, most weights behind) alone in its loop (LLVM does not unswitch it), and
    a pure l2 penalty with ``skip_current`` in its own, which neither stores an up-to-date
    weight nor tests ``k`` apart from the last step (a9a, batch 32, AdaGrad and RMSProp 0.94x,
    whole fits in turn; the same bits).
    Inlined (``lanes``): a called function with array arguments would cost reference counting
    per sample."""
    tm1 = tf - 1.0
    z0 = 0.0
    if pure_l2 and not skip_current:
        for jj in range(lo, hi):
            r = E[jj]
            lastr, lc, n_touched = _register(R, touched, n_touched, r, tf)
            wv = R[r, _RW] * _exp_neg_fast(max(tm1 - lastr, 0.0) * lc)
            R[r, _RW] = wv
            z0 += data[jj] * wv
    elif pure_l2:
        # skip_current: most weights are up to date (k = 0), so a branch skips their catch-up
        # (predicted) and its store; k > 0 only at a feature's first entry of the batch
        for jj in range(lo, hi):
            r = E[jj]
            lastr, lc, n_touched = _register(R, touched, n_touched, r, tf)
            wv = R[r, _RW]
            if lastr < tm1:
                wv *= _exp_neg_fast((tm1 - lastr) * lc)
                R[r, _RW] = wv
            z0 += data[jj] * wv
    else:
        for jj in range(lo, hi):
            r = E[jj]
            lastr, lc, n_touched = _register(R, touched, n_touched, r, tf)
            k = tm1 - lastr if lastr != tf else 0.0
            wv = R[r, _RW]
            if skip_current and k == 0.0:
                pass
            elif pure_l2:
                wv *= _exp_neg_fast(k * lc)
            else:
                wv = prox_k(wv, lc, l1, l2, lc, k)
            R[r, _RW] = wv
            z0 += data[jj] * wv
    return z0, n_touched


@rule
def _pack_records(kind, W, S1, S2, R, feat, first, stop, hh, l2):
    """Records ``first .. stop - 1`` of an epoch on records from the rows of ``W``, ``S1``, ``S2``
    (row ``feat[r]`` for record ``r``, or row ``r`` where ``feat`` is empty), up to date with the
    epoch's first step (last step 0).  (The gradient sum's field holds the catch-up parameter
    until the margins of a batch have read it: :func:`_clear_sums`.)"""
    for r in range(first, stop):
        j = feat[r] if feat.size > 0 else r
        w = W[j, 0]
        R[r, _RW] = w
        # a zero weight stays zero in a catch-up, whatever its parameter: no square root,
        # division nor log1p for the features not yet seen (most of a hashed model's)
        R[r, _RLC] = _lag_param(step_size(kind, S1[j, 0], S2[j, 0], hh), l2) if w != 0.0 else 0.0
        R[r, _RLAST] = 0.0  # every row is up to date with the first step on entry (last is not read)
        R[r, _RS1] = S1[j, 0]
        if kind == ADAM:
            R[r, _RS2] = S2[j, 0]


@lanes
def _update_touched(kind, R, touched, n_touched, Wb, Gb, S1b, S2b, Eb, Lb, hh, l1, l2):
    """The step of a mini-batch's features ``touched[:n_touched]`` on records: gathered into
    contiguous buffers (their gradient sums reset), updated in a loop LLVM vectorises
    (:func:`_update_block`: square roots and divisions 8 at a time), scattered back with their
    catch-up parameters.  Inlined (``lanes``): a called function with array arguments would
    cost reference counting per mini-batch."""
    adam = kind == ADAM
    for u in range(n_touched):
        r = touched[u]
        Wb[u] = R[r, _RW]
        S1b[u] = R[r, _RS1]
        if adam:
            S2b[u] = R[r, _RS2]
        Gb[u] = R[r, _RGS]
    _update_block(kind, Wb, Gb, S1b, S2b, Eb, Lb, n_touched, hh, l1, l2)
    for u in range(n_touched):
        r = touched[u]
        if adam:
            R[r, _RS2] = S2b[u]
        R[r, _RS1] = S1b[u]
        R[r, _RW] = Wb[u]
        R[r, _RLC] = Lb[u]


@rule
def _records_finite(kind, R, n_kept, b):
    """Whether the first ``n_kept`` records' weights and states and the intercept ``b[0]`` are
    finite.  (An overflowing accumulator leaves its weight finite but its step size 0: the
    model diverged all the same.)"""
    finite = math.isfinite(b[0])
    for r in range(n_kept):
        finite &= math.isfinite(R[r, _RW]) & math.isfinite(R[r, _RS1])
    if kind == ADAM:
        for r in range(n_kept):
            finite &= math.isfinite(R[r, _RS2])
    return finite


@rule
def _unpack_records(kind, W, S1, S2, R, feat, n_kept, l1, l2, tf):
    """The end of an epoch on records: records ``0 .. n_kept - 1`` brought up to step ``tf``
    (counted from the epoch's start) and written back to their rows of ``W``, ``S1``, ``S2``
    (``feat[r]``, or ``r`` where ``feat`` is empty).  Unused state slots alias ``S1`` or ``W``:
    the real values are written last."""
    for r in range(n_kept):
        j = feat[r] if feat.size > 0 else r
        lastr = R[r, _RLAST]
        wv = R[r, _RW]
        if lastr < tf and wv != 0.0:  # a zero weight stays zero
            wv = _lag(wv, R[r, _RLC], l1, l2, R[r, _RLC], tf - lastr)
        if kind == ADAM:
            S2[j, 0] = R[r, _RS2]
        S1[j, 0] = R[r, _RS1]
        W[j, 0] = wv


# an epoch on records on two threads (_run_epoch_records_threads): from this many stored
# entries (a launch of the threads costs tens of microseconds), and from this many features
# (too many records for one core's L2 cache) or this many entries a mini-batch on average (work
# enough between two waits).  Whole fits, AdaGrad, 100,000 Zipf rows of 50 entries, one thread
# against two: 2,048 features, batch 32, 1.3-1.6x faster, batch 1 even; 16,384 features, 1.4-1.6x
# at either; a9a (123 features, 14 entries a row): batch 32 even, batch 1 1.3x slower
THREADS_MIN_ENTRIES = 1 << 18
THREADS_MIN_FEATURES = 1 << 14
THREADS_MIN_BATCH_ENTRIES = 1024


@rule
def on_two_threads(kind, K, l1, l2, exact, nnz, n_features, n_rows, batch_size):
    """Whether an epoch on records (:func:`on_records`) may run on two threads
    (:func:`_run_epoch_records_threads`, given :func:`thread_split` of the data): records of every
    feature (``nnz >= n_features``), enough stored entries (:data:`THREADS_MIN_ENTRIES`), and
    either a large model (:data:`THREADS_MIN_FEATURES`) or large mini-batches
    (:data:`THREADS_MIN_BATCH_ENTRIES` entries on average, ``n_rows`` rows).  The caller also
    checks that Numba has two threads, the process two CPUs, and that it runs on the main thread."""
    return on_records(kind, K, l1, l2, exact) and _threads_pay(nnz, n_features, n_rows, batch_size)


@rule
def _threads_pay(nnz, n_features, n_rows, batch_size):
    """The sizes from which an epoch on records of every feature runs on two threads
    (:func:`on_two_threads`, :func:`momentum_on_two_threads`)."""
    large = n_features >= THREADS_MIN_FEATURES or batch_size * nnz >= THREADS_MIN_BATCH_ENTRIES * n_rows
    return n_features >= 2 and nnz >= max(n_features, THREADS_MIN_ENTRIES) and large


@kernel(parallel=True)
def thread_split(indptr, indices, n_features):
    """How :func:`_run_epoch_records_threads` shares the features out: ``P`` (int64, one more
    than there are rows) with ``P[-1] = J``, the first feature of the second thread, chosen so
    that each thread's features hold about half of the stored entries, and ``P[i]`` the first
    entry of row ``i`` whose feature is ``J`` or more.  Empty where a row's indices are not in
    increasing order (the features of a thread would not be one run of each row).

    ``J`` is counted on evenly spaced rows holding ~2**18 entries (it only balances the
    threads' work); the order check and the split points, one pass over each row, run on
    Numba's threads (called where there are two).  The Zipf set's 5 million entries: 12 ->
    6 ms (once per ``fit``, and per ``partial_fit`` call that runs on two threads)."""
    n_rows = indptr.size - 1
    nnz = indptr[n_rows]
    counts = np.zeros(n_features, dtype=np.int64)
    step = max(1, nnz // (1 << 18))
    n_counted = 0
    for i in range(0, n_rows, step):
        for jj in range(indptr[i], indptr[i + 1]):
            counts[indices[jj]] += 1
        n_counted += indptr[i + 1] - indptr[i]
    J = 1
    acc = counts[0]
    while J < n_features - 1 and 2 * acc < n_counted:
        acc += counts[J]
        J += 1
    P = np.empty(n_rows + 1, dtype=np.int64)
    P[n_rows] = J
    unordered = 0
    for i in prange(n_rows):
        lo = indptr[i]
        hi = indptr[i + 1]
        below = 0
        bad = 0
        prev = -1
        for jj in range(lo, hi):
            j = indices[jj]
            below += 1 if j < J else 0
            bad += 1 if j <= prev else 0
            prev = j
        P[i] = lo + below
        unordered += bad
    return P if unordered == 0 else P[:0]


@kernel(parallel=True)
def _run_epoch_records_threads(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                               W, S1, S2, b, bs1, bs2, h, l1, l2, fit_intercept, t, R, P):
    """:func:`_run_epoch_records` on two threads, each with its own features.

    Thread 0 keeps the records of features ``0 .. J - 1``, thread 1 the rest (``P``:
    :func:`thread_split`; each row's entries are one run of each thread's features).  In each
    mini-batch, each thread computes its part of the samples' margins (the catch-up of its
    features as they are read, as the one-thread epoch does), then waits for the other's
    (:func:`sparseopt._jit.load_acquire`; the parts go through ``Z``, one buffer per batch
    parity), forms every sample's loss gradient from the sum of the two parts, sums the
    batch's gradient into its own records and updates its own features.  Both threads update
    the intercept alike.  So the threads never write the same record, and wait for each
    other once per mini-batch (~60 ns when neither is descheduled).

    The same arithmetic as the one-thread epoch but for each margin, which is the sum of the
    two threads' parts rather than one sum in row order, and the log loss, computed for a
    whole mini-batch in a vectorised loop (:func:`_log_loss_lanes`, within a few ulp of
    libm's): the results agree to rounding, the same for any number of Numba threads (from
    two: the caller checks).  Records of every
    feature (``R``, :func:`work_arrays`), packed and unpacked as in the one-thread epoch; a
    diverged model is not written back (DIVERGED).
    """
    n_features = W.shape[0]
    nw = record_width(kind)
    if R.shape[0] < n_features or R.shape[1] < nw:
        R = np.empty((n_features, nw))
    Z = np.empty((2, 2, max(batch_size, 1)))  # [thread, batch parity, sample]: parts of the margins
    flags = np.zeros(16, dtype=np.int64)  # flags[8 p]: the steps thread p has published (own cache line)
    out = np.zeros((2, 4))  # each thread's loss sum and intercept, its two states
    for p in prange(2):
        _records_part(p, kind, loss, indptr, indices, data, y, sw, order, batch_size, W, S1, S2, b, bs1, bs2,
                      h, l1, l2, fit_intercept, t, R, P, Z, flags, out)
    t_end = t + (order.size + batch_size - 1) // batch_size
    if fit_intercept:
        bs2[0] = out[0, 3]
        bs1[0] = out[0, 2]
        b[0] = out[0, 1]
    if not _records_finite(kind, R, n_features, b):
        return t_end, out[0, 0], DIVERGED
    _unpack_records(kind, W, S1, S2, R, P[:0], n_features, l1, l2, float(t_end - t))
    return t_end, out[0, 0], WRITTEN


@lanes
def _prefetch_part(p, indptr, indices, data, y, sw, order, P, R, u):
    """The prefetches of thread ``p`` of a two-thread epoch at the ``u``-th sample of ``order``:
    the row 8 samples ahead's start, split point, target and weight, this thread's part of the
    CSR row 4 samples ahead, and of the records (rows of ``R``) of the one 2 samples ahead (the
    Zipf set, AdaGrad, kernel: 72 -> 63 ms an epoch, minimum of 21, median 105 -> 74; the first,
    later: 0.81-0.86x, minimum of 11; 12, 6 and 3 ahead: within noise)."""
    n = order.size
    if u + 8 < n:
        i3 = order[u + 8]
        _prefetch_sample(indptr, y, sw, i3)
        prefetch(P, i3)
    if u + 4 < n:
        i2 = order[u + 4]
        for jj in range(indptr[i2] if p == 0 else P[i2], P[i2] if p == 0 else indptr[i2 + 1], 8):
            prefetch(indices, jj)
            prefetch(data, jj)
    if u + 2 < n:
        i2 = order[u + 2]
        for jj in range(indptr[i2] if p == 0 else P[i2], P[i2] if p == 0 else indptr[i2 + 1]):
            prefetch(R, indices[jj])


@lanes
def _momentum_term(MR, r, lg, tf, a, move, c1, inv_wscale):
    """A sample's term ``lg`` (``lr`` times its gradient) added into Momentum's record ``r`` (weight
    over the common scale, velocity, step of the last decay) in the batch of step ``tf``, the
    velocity's decay ``a`` taken at the feature's first term in the batch (see
    :func:`_run_epoch_general`: ``move``, ``c1``)."""
    first = MR[r, 2] != tf
    v = MR[r, 1] * (a if first else 1.0)
    MR[r, 0] -= (move * v if first else 0.0) * inv_wscale + c1 * lg
    MR[r, 1] = v + lg
    MR[r, 2] = tf


@lanes
def _thread_features(p, P, n_features):
    """``(first, stop)``: the features of thread ``p`` of a two-thread epoch (:func:`thread_split`)."""
    J = P[P.size - 1]
    return (0, J) if p == 0 else (J, n_features)


@lanes
def _wait_for(flags, other, step):
    """Wait until the other thread of a two-thread epoch has published ``step``
    (``flags[other]``, :func:`sparseopt._jit.load_acquire`)."""
    spins = 0
    while load_acquire(flags, other) < step:
        spins += 1
        if spins > 4096:  # (some microseconds: the other thread may be waiting for this CPU)
            yield_cpu()


@rule
def _records_part(p, kind, loss, indptr, indices, data, y, sw, order, batch_size, W, S1, S2, b, bs1, bs2,
                  h, l1, l2, fit_intercept, t, R, P, Z, flags, out):
    """Thread ``p``'s share of :func:`_run_epoch_records_threads`: the one-thread epoch's
    mini-batch loop (:func:`_run_epoch_records`) on the features of thread ``p``."""
    n = order.size
    first_r, stop_r = _thread_features(p, P, W.shape[0])
    h0 = _hyper(h)
    hh = _hyper_step(h0, kind, max(t, 1))
    t_in = t
    _pack_records(kind, W, S1, S2, R, P[:0], first_r, stop_r, hh, l2)
    pure_l2 = l1 == 0.0 and l2 > 0.0
    dz = np.empty(batch_size)
    Mb, Yb, Vb = np.empty(batch_size), np.empty(batch_size), np.empty(batch_size)  # margins, targets, losses
    ends = indptr[1:]  # (sample i's entries: indptr[i] .. ends[i] - 1)
    nvec = min(stop_r - first_r, batch_size * _max_row_length(indptr, order))
    touched = np.empty(nvec + 1, dtype=np.int64)
    Wb, S1b, Gb, Eb, Lb = np.empty(nvec), np.empty(nvec), np.empty(nvec), np.empty(nvec), np.empty(nvec)
    S2b = np.zeros(nvec)
    skip_current = False
    n_repeat = 0
    n_read = 0
    loss_sum = 0.0
    bl, bs1l, bs2l = b[0], bs1[0], bs2[0]  # this thread's copy of the intercept
    other = 8 * (1 - p)
    start = 0
    while start < n:
        stop = min(start + batch_size, n)
        m = stop - start
        t += 1
        hh = _hyper_step(h0, kind, t)
        tf = float(t - t_in)
        par = t & 1
        n_touched = 0
        n_in = 0
        for q in range(m):
            i = order[start + q]
            lo = indptr[i] if p == 0 else P[i]
            hi = P[i] if p == 0 else indptr[i + 1]
            _prefetch_part(p, indptr, indices, data, y, sw, order, P, R, start + q)
            z0, n_touched = _margin_batch(R, indices, data, lo, hi, touched, n_touched, tf, pure_l2, skip_current,
                                          l1, l2)
            Z[p, par, q] = z0
            n_in += hi - lo
        # publish this thread's parts of the margins, wait for the other's
        store_release(flags, 8 * p, t - t_in)
        _clear_sums(R, touched, 0, n_touched)  # (while the other thread may still be at its margins)
        _wait_for(flags, other, t - t_in)
        # the samples' losses and derivatives, in a loop LLVM vectorises (log loss: exp and
        # log1p 4 at a time; 160 -> ~60 cycles a sample with the gathers and the sum), then
        # the sample's term of the batch's gradient summed into each feature's record
        for q in range(m):
            i = order[start + q]
            Mb[q] = (Z[0, par, q] + Z[1, par, q]) + bl
            Yb[q] = y[i]
        if p == 0:  # (two calls: indptr and P may differ in dtype)
            loss_sum = _batch_gradient(loss, Mb, Yb, Vb, dz, m, order, start, sw, indptr, P, R, indices, data,
                                       loss_sum)
        else:
            loss_sum = _batch_gradient(loss, Mb, Yb, Vb, dz, m, order, start, sw, P, ends, R, indices, data,
                                       loss_sum)
        skip_current, n_read, n_repeat = _skip_rule(skip_current, n_read + n_in, n_repeat + n_in - n_touched)
        _update_touched(kind, R, touched, n_touched, Wb, Gb, S1b, S2b, Eb, Lb, hh, l1, l2)
        if fit_intercept:
            g = 0.0
            for q in range(m):
                g += dz[q]
            bl, bs1l, bs2l = apply_rule(kind, bl, g, bs1l, bs2l, hh)
        start = stop
    out[p, 0] = loss_sum
    out[p, 1] = bl
    out[p, 2] = bs1l
    out[p, 3] = bs2l


@rule
def momentum_on_two_threads(kind, K, h, l1, l2, exact, nnz, n_features, n_rows, batch_size):
    """Whether Momentum's additive epoch on records (:func:`_additive_on_records`, records of
    every feature) may run on two threads (:func:`_run_epoch_momentum_threads`, given
    :func:`thread_split` of the data): the sizes of :func:`on_two_threads`.  The caller also
    checks that Numba has two threads, the process two CPUs, and that it runs on the main
    thread."""
    if kind != MOMENTUM or K != 1 or batch_size < 2:
        return False
    hh = _hyper_step(_hyper(h), kind, 1)
    return (_additive_on_records(kind, K, hh, l1, l2, exact, batch_size, nnz, n_features)
            and _threads_pay(nnz, n_features, n_rows, batch_size))


@kernel(parallel=True)
def _run_epoch_momentum_threads(loss, indptr, indices, data, y, sw, order, batch_size,
                                W, S1, b, bs1, bs2, h, l1, l2, fit_intercept, t, R, P):
    """Momentum's additive epoch on records (:func:`_run_epoch_general`, ``packed``, records of
    every feature) on two threads, each with its own features, as
    :func:`_run_epoch_records_threads` shares them out (``P``: :func:`thread_split`).

    In each mini-batch each thread sums its part of the samples' margins, publishes it and
    waits for the other's, forms every sample's loss derivative from the sum of the two parts
    (a vectorised loop, :func:`_batch_losses`), then adds the samples' terms into its own
    records (taking a velocity's decay at its feature's first term in the batch).  Both threads
    update the intercept and the weights' common scale alike (folding it into their own
    records when it gets small).  The same arithmetic as the one-thread epoch but for each
    margin, the sum of two parts, and the loss (within a few ulp of libm's): the results agree
    to rounding.  Writes the model back in place and returns WRITTEN, as the one-thread epoch
    on records of every feature does; ``last`` is neither read nor written.
    """
    n_features = W.shape[0]
    MR = R if R.shape[0] >= n_features and R.shape[1] >= 3 else np.empty((n_features, 3))
    Z = np.empty((2, 2, max(batch_size, 1)))  # [thread, batch parity, sample]: parts of the margins
    flags = np.zeros(16, dtype=np.int64)  # flags[8 p]: the steps thread p has published (own cache line)
    out = np.zeros((2, 5))  # each thread's loss sum, intercept, its two states, the weights' scale
    for p in prange(2):
        _momentum_part(p, loss, indptr, indices, data, y, sw, order, batch_size, W, S1, b, bs1, bs2,
                       h, l1, l2, fit_intercept, t, MR, P, Z, flags, out)
    if fit_intercept:
        bs2[0] = out[0, 3]
        bs1[0] = out[0, 2]
        b[0] = out[0, 1]
    wscale = out[0, 4]
    for r in range(n_features):
        S1[r, 0] = MR[r, 1]
        W[r, 0] = MR[r, 0] * wscale
    return t + (order.size + batch_size - 1) // batch_size, out[0, 0], WRITTEN


@rule
def _momentum_part(p, loss, indptr, indices, data, y, sw, order, batch_size, W, S1, b, bs1, bs2,
                   h, l1, l2, fit_intercept, t, MR, P, Z, flags, out):
    """Thread ``p``'s share of :func:`_run_epoch_momentum_threads`: the one-thread epoch's
    mini-batch loop (Momentum, additive, on records) on the features of thread ``p``."""
    n = order.size
    first_r, stop_r = _thread_features(p, P, W.shape[0])
    h0 = _hyper(h)
    hh = _hyper_step(h0, MOMENTUM, max(t, 1))
    need, slow, uniform, use_scale, eta_u, lc_u = _lazy_setup(MOMENTUM, hh, l1, l2, False)
    shrink = 1.0 / (1.0 + eta_u * l2) if use_scale else 1.0
    for r in range(first_r, stop_r):
        MR[r, 0] = W[r, 0]
        MR[r, 1] = S1[r, 0]
        MR[r, 2] = 0.0  # steps counted from the call's start: no decay taken yet
    wscale = 1.0
    inv_wscale = 1.0
    dz = np.empty(batch_size)
    Mb, Yb, Vb = np.empty(batch_size), np.empty(batch_size), np.empty(batch_size)  # margins, targets, losses
    ends = indptr[1:]  # (sample i's entries: indptr[i] .. ends[i] - 1)
    loss_sum = 0.0
    bl, bs1l, bs2l = b[0], bs1[0], bs2[0]  # this thread's copy of the intercept
    other = 8 * (1 - p)
    t_in = t
    start = 0
    while start < n:
        stop = min(start + batch_size, n)
        m = stop - start
        t += 1
        hh = _hyper_step(h0, MOMENTUM, t)
        par = t & 1
        for q in range(m):
            i = order[start + q]
            lo = indptr[i] if p == 0 else P[i]
            hi = P[i] if p == 0 else indptr[i + 1]
            _prefetch_part(p, indptr, indices, data, y, sw, order, P, MR, start + q)
            z0 = 0.0
            for jj in range(lo, hi):
                z0 += data[jj] * MR[indices[jj], 0]
            Z[p, par, q] = z0
        # publish this thread's parts of the margins, wait for the other's
        store_release(flags, 8 * p, t - t_in)
        _wait_for(flags, other, t - t_in)
        for q in range(m):
            Mb[q] = wscale * (Z[0, par, q] + Z[1, par, q]) + bl
            Yb[q] = y[order[start + q]]
        _batch_losses(loss, Mb, Yb, Vb, dz, m)
        # momentum_rule with g the sum of the samples' terms, linear in g once the velocity's
        # decay is taken at a feature's first term in the batch (see _run_epoch_general)
        a = hh[A]
        move = a if hh[B] != 0.0 else 1.0
        c1 = (1.0 + a if hh[B] != 0.0 else 1.0) * inv_wscale
        tf = float(t - t_in)
        for q in range(m):
            i = order[start + q]
            loss_sum += sw[i] * Vb[q]
            dz[q] *= sw[i] / m
            d0 = hh[LR] * dz[q]
            for jj in range(indptr[i] if p == 0 else P[i], P[i] if p == 0 else ends[i]):
                _momentum_term(MR, indices[jj], data[jj] * d0, tf, a, move, c1, inv_wscale)
        if fit_intercept:
            g = 0.0
            for q in range(m):
                g += dz[q]
            bl, bs1l, bs2l = apply_rule(MOMENTUM, bl, g, bs1l, bs2l, hh)
        if use_scale:
            wscale *= shrink
            if wscale < 1e-9:
                for r in range(first_r, stop_r):
                    MR[r, 0] *= wscale
                wscale = 1.0
            inv_wscale = 1.0 / wscale
        start = stop
    out[p, 0] = loss_sum
    out[p, 1] = bl
    out[p, 2] = bs1l
    out[p, 3] = bs2l
    out[p, 4] = wscale


@rule
def _compact_general(kind, K, h, l1, l2, exact, batch_size, nnz, n_features):
    """Whether :func:`run_epoch` runs the general kernel on compact copies of the rows the call
    meets (:func:`_run_epoch_compact`): data of ``nnz`` stored entries fewer than ``n_features``
    weight rows (a ``partial_fit`` chunk on a large model), with several outputs, or with one
    output on neither the records (:func:`on_records`) nor SGD's and Momentum's additive epochs
    on compact records (:func:`_additive_on_records`)."""
    if nnz >= n_features:
        return False
    if K > 1:
        return True
    hh = _hyper_step(_hyper(h), kind, 1)
    return not (on_records(kind, K, l1, l2, exact)
                or _additive_on_records(kind, K, hh, l1, l2, exact, batch_size, nnz, n_features))


@kernel
def _run_epoch_compact(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                       W, S1, S2, b, bs1, bs2, h, l1, l2, exact, fit_intercept, t, R, threads):
    """:func:`run_epoch` on data with fewer stored entries than weight rows, where the call has
    neither records nor compact records (:func:`_compact_general`: several outputs; one output at
    batch 1, with an l1 penalty, in exact mode's replay, or without a penalty).

    The general kernel (:func:`_run_epoch_general`) runs on copies of the rows the call meets,
    numbered as the compact records are (:func:`_compact_records`), with their own last steps;
    the rows it does not meet missed every step of the call and are caught up at the end in one
    pass over the model (:func:`_catch_up_rest` on the weights as one column, the replay of
    ``lazy="exact"``, the scale factors of SGD and Momentum, or nothing without a penalty).  So a
    call costs O(n_features K) in that pass only, where the kernel on the whole model computed
    every weight's catch-up parameter at the start, read and wrote ``last`` of every row, and
    caught every row up at the end (2**20 features, 3 classes: two passes of ~20 ms; with one
    output, SGD at batch 1 kept a log of the rows it read to undo a divergence, 1.15-1.55x
    slower).  Same results, bit for bit.

    Like the epochs on records, it writes nothing back when the model diverges (``W``, ``S1``,
    ``S2`` as they were; ``b``, ``bs1``, ``bs2`` changed), and leaves ``last`` alone: it holds
    ``t`` on entry for every row, and :func:`sync_last` refills it for the readers that need
    the returned step.
    """
    n_features = W.shape[0]
    K = W.shape[1]
    t_in = t
    n_rows = _most_records(indptr, order, n_features)
    feat = np.empty(n_rows, dtype=np.int64)
    E = np.empty(indices.size, dtype=indices.dtype)
    n_rec = _compact_records(indptr, indices, order, n_rows, feat, E)
    # the copies alias as the state does (no state: S1 and S2 are W; one: S2 is S1)
    n_states = 0 if kind == SGD else (2 if kind == ADAM else 1)
    Wc = np.empty((n_rec, K))
    S1c = Wc if n_states == 0 else np.empty((n_rec, K))
    S2c = S1c if n_states < 2 else np.empty((n_rec, K))
    for r in range(n_rec):
        j = feat[r]
        for c in range(K):
            Wc[r, c] = W[j, c]
            if n_states > 0:
                S1c[r, c] = S1[j, c]
            if n_states > 1:
                S2c[r, c] = S2[j, c]
    lastc = np.full(n_rec, t_in, dtype=np.int64)
    scales = np.empty(order.size // max(batch_size, 1) + 3)
    t, loss_sum, status = _run_epoch_general(kind, loss, indptr, E, data, y, sw, order, batch_size, Wc, S1c, S2c,
                                             b, bs1, bs2, h, l1, l2, exact, fit_intercept, lastc, t, R, threads,
                                             scales)
    finite = True
    for c in range(K):
        finite &= math.isfinite(b[c])
    for r in range(n_rec):
        for c in range(K):
            finite &= math.isfinite(Wc[r, c]) & math.isfinite(S1c[r, c]) & math.isfinite(S2c[r, c])
    if not finite:
        return t, loss_sum, DIVERGED
    # the rows met are zeroed in the model first: a zero row stays zero in every catch-up below
    # (and is skipped by it), and is overwritten with its copy afterwards
    for r in range(n_rec):
        j = feat[r]
        for c in range(K):
            S2[j, c] = 0.0
            S1[j, c] = 0.0
            W[j, c] = 0.0
    h0 = _hyper(h)
    hh_in = _hyper_step(h0, kind, max(t_in, 1))
    need, slow, uniform, use_scale, eta_u, lc_u = _lazy_setup(kind, hh_in, l1, l2, exact)
    k = t - t_in
    # every weight is its own (output, feature) pair: the blocked passes take them as one column
    W1 = W.reshape((n_features * K, 1))
    S11 = S1.reshape((n_features * K, 1))
    S21 = S2.reshape((n_features * K, 1))
    if use_scale:
        # the factors the kernel folded into its rows, in the same order (the same bits)
        n_scales = int(scales[0])
        if n_scales == 1:  # the usual case, the final scale only: a loop LLVM vectorises (2**20 x 3: 7 -> 1 ms)
            s1 = scales[1]
            for i in range(W1.shape[0]):
                W1[i, 0] *= s1
        elif n_scales > 1:
            for i in range(W1.shape[0]):
                wv = W1[i, 0]
                for f in range(1, n_scales + 1):
                    wv *= scales[f]
                W1[i, 0] = wv
    elif need and k > 0:
        if slow:
            hh = _hyper_step(h0, kind, t)  # (the step the kernel's own catch-up at the end had)
            T = _adam_bias_tables(h0, t_in, k if kind == ADAM else 0)
            if kind == MOMENTUM and l1 == 0.0 and l2 > 0.0 and hh[WD] == 0.0:
                # momentum_prox_k, whose constants are the same for every weight: one loop over them
                # (2**20 features, 1,000 rows: 18 -> 3 ms a call)
                ck, ma, G, ak = _momentum_prox_consts(hh, l2, k)
                if hh[A] == 0.0:
                    for i in range(W1.shape[0]):
                        W1[i, 0] = W1[i, 0] * ck
                        S11[i, 0] = 0.0 * S11[i, 0]
                else:
                    for i in range(W1.shape[0]):
                        pv = W1[i, 0]
                        vv = S11[i, 0]
                        W1[i, 0] = ck * pv - ma * vv * G
                        S11[i, 0] = vv * ak
            elif _replays_in_blocks(kind, hh, l1, l2):
                if threads and n_features * K >= PARALLEL_MIN_SIZE:
                    _replay_rest_threads(kind, W1, S11, S21, k, hh, l1, l2, T)
                else:
                    _replay_rest(kind, W1, S11, S21, k, hh, l1, l2, T)
            else:
                for j in range(n_features):
                    if _row_moves(W, S1, S2, j):
                        _catch_up_exact(kind, W, S1, S2, j, hh, l1, l2, t_in, k, t_in, T)
        elif uniform:
            for j in range(n_features):
                for c in range(K):
                    W[j, c] = _lag(W[j, c], eta_u, l1, l2, lc_u, k)
        else:
            if threads and n_features * K >= PARALLEL_MIN_SIZE:
                _catch_up_rest_threads(kind, W1, S11, S21, k, hh_in, l1, l2)
            else:
                _catch_up_rest(kind, W1, S11, S21, k, hh_in, l1, l2)
    for r in range(n_rec):
        j = feat[r]
        for c in range(K):
            S2[j, c] = S2c[r, c]  # unused state slots alias S1 or W: real values last
            S1[j, c] = S1c[r, c]
            W[j, c] = Wc[r, c]
    return t, loss_sum, WRITTEN


@kernel
def run_epoch(kind, loss, indptr, indices, data, y, sw, order, batch_size,
              W, S1, S2, b, bs1, bs2, h, l1, l2, exact, fit_intercept, last, t, R, threads, P):
    """One pass over the samples ``order`` in mini-batches; returns ``(t, sum of sw * loss, status)``.

    ``W``, ``S1``, ``S2``: (n_features, K) weights and optimizer states
    (unused state slots may alias ``S1`` or ``W``: the real values are
    written last); ``b``, ``bs1``, ``bs2``: (K,) intercept and its states;
    ``sw``: sample weights divided by their mean; ``last``: (n_features,)
    int64, work space for the step each weight row is up to date with: every
    row is up to date with ``t`` on entry and with the returned step on
    return, and ``last`` holds one value for all rows, refilled with ``t``
    here where it is not ``t`` (an epoch on records and SGD's additive epoch
    neither read nor write it, which spares a ``partial_fit`` call a pass
    over all the weights, and on records two random accesses per feature
    met; :func:`sync_last` refills it for other readers); ``t``: steps taken so far; ``R``: work array,
    :func:`work_arrays` (see :func:`_run_epoch_records`); ``threads``:
    whether a pass over all the weights may run on Numba's threads (from
    ``_kernels.PARALLEL_MIN_SIZE`` weights; the caller says no where
    another thread may be running a parallel kernel at the same time, which
    Numba's workqueue threading layer does not survive); ``P``:
    :func:`thread_split` of the data where :func:`on_two_threads` says so
    and Numba has at least two threads (an epoch on records then runs on two
    threads when ``threads`` is true: :func:`_run_epoch_records_threads`),
    else empty (int64).  Each
    mini-batch is one step, whose gradient is the mean over the batch of
    ``sw * d loss``.  The loss is summed with the weights each sample met.

    ``status`` (:data:`WRITTEN`, :data:`DIVERGED`) lets a caller that must
    undo a diverged call (``partial_fit``) skip copying the model first.  An
    epoch on records (:func:`on_records`), and every call on data with fewer
    stored entries than weight rows (:func:`writes_nothing_on_divergence`:
    compact records, or the general kernel on compact copies of the rows the
    call meets, :func:`_run_epoch_compact`), that ends with a non-finite
    weight or intercept writes nothing back: ``W``, ``S1``, ``S2`` and
    ``last`` are as they were (``b``, ``bs1``, ``bs2`` have changed),
    DIVERGED.  Other epochs change the rows in place, return WRITTEN, and
    leave the divergence check to the caller.
    """
    K = W.shape[1]
    n_features = W.shape[0]
    if on_records(kind, K, l1, l2, exact):
        if threads and P.size == indptr.size and on_two_threads(kind, K, l1, l2, exact, indptr[indptr.size - 1],
                                                                n_features, indptr.size - 1, batch_size):
            return _run_epoch_records_threads(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                                              W, S1, S2, b, bs1, bs2, h, l1, l2, fit_intercept, t, R, P)
        return _run_epoch_records(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                                  W, S1, S2, b, bs1, bs2, h, l1, l2, fit_intercept, t, R, threads)
    if threads and P.size == indptr.size and momentum_on_two_threads(kind, K, h, l1, l2, exact,
                                                                     indptr[indptr.size - 1], n_features,
                                                                     indptr.size - 1, batch_size):
        return _run_epoch_momentum_threads(loss, indptr, indices, data, y, sw, order, batch_size,
                                           W, S1, b, bs1, bs2, h, l1, l2, fit_intercept, t, R, P)
    if _compact_general(kind, K, h, l1, l2, exact, batch_size, indptr[indptr.size - 1], n_features):
        return _run_epoch_compact(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                                  W, S1, S2, b, bs1, bs2, h, l1, l2, exact, fit_intercept, t, R, threads)
    t, loss_sum, status = _run_epoch_general(kind, loss, indptr, indices, data, y, sw, order, batch_size, W, S1, S2,
                                             b, bs1, bs2, h, l1, l2, exact, fit_intercept, last, t, R, threads,
                                             np.empty(0))
    return t, loss_sum, status


@lanes
def _log_scale(scales, factor):
    """Append ``factor`` to ``scales`` (count in ``scales[0]``) where it has room (a compact call)."""
    if scales.size > 0:
        scales[0] += 1.0
        scales[int(scales[0])] = factor


@kernel
def _run_epoch_general(kind, loss, indptr, indices, data, y, sw, order, batch_size,
                       W, S1, S2, b, bs1, bs2, h, l1, l2, exact, fit_intercept, last, t, R, threads, scales):
    """:func:`run_epoch` on the rows of ``W`` etc. in place (every rule and output count but the
    epochs on records), as run_epoch's docstring says, with run_epoch's arguments (``threads``
    unused: this kernel has no pass on threads) and ``scales``.

    ``scales``: empty, or (a compact call, :func:`_run_epoch_compact`) room for one factor per
    step and one more: where the weights' common scale is folded into them (SGD and Momentum
    with an l2 penalty), ``scales[0]`` counts the factors and ``scales[1:]`` lists them in
    the order taken (mid-call folds, then the final scale), for the weights it does not hold.
    """
    n = order.size
    K = W.shape[1]
    n_features = W.shape[0]
    h0 = _hyper(h)
    hh = _hyper_step(h0, kind, max(t, 1))
    need, slow, uniform, use_scale, eta_u, lc_u = _lazy_setup(kind, hh, l1, l2, exact)
    sync_last(last, t)
    if scales.size > 0:
        scales[0] = 0.0
    shrink = 1.0 / (1.0 + eta_u * l2) if use_scale else 1.0
    # adaptive rules in skip mode: the catch-up parameter (_lag_param) of each
    # weight's step size as of its last update (its state does not change while
    # it is absent); at the start, from the state
    keep_eta = need and not slow and not uniform
    # (the work array when it has the shape: NumPy's allocation, see _run_epoch_records)
    LC = R if keep_eta and R.shape[0] == n_features and R.shape[1] == K else np.empty((n_features if keep_eta else 1, K))
    if keep_eta:
        for j in range(n_features):
            for c in range(K):
                # a zero weight stays zero in a catch-up, whatever its parameter
                LC[j, c] = _lag_param(step_size(kind, S1[j, c], S2[j, c], hh), l2) if W[j, c] != 0.0 else 0.0
    fused = need and not slow and K == 1
    pure_l2 = l1 == 0.0 and l2 > 0.0
    wscale = 1.0
    inv_wscale = 1.0
    single = batch_size == 1 and K == 1
    # SGD without a proximal step (pure l2 in the scale, or no penalty) and
    # without weight decay in h: the step is linear in the gradient, so each
    # sample's contribution goes straight into the weights (as
    # SGDClassifier does), with no deduplication of the batch's features
    additive = kind == SGD and _linear_in_gradient(K, hh, need, use_scale, l1, l2)
    # Momentum likewise, once per feature and batch taking its velocity's decay (additive_momentum),
    # at batch > 1 on records: weight, velocity and the step of the last decay in one row of MR,
    # one cache line per entry instead of three (Zipf set, batch 32, kernel alone: 11.9 -> 9.8 ns
    # per entry, minimum of 15 interleaved epochs).  Records of every feature where the work array
    # has a row for each (a fit), else compact: records of the features the call meets only,
    # numbered as on the records of the adaptive rules (E), and the weights it does not meet are
    # only scaled, at the end, so that it writes nothing back when the model diverges (a
    # partial_fit call needs no copy; 2**20 features, 1,000 rows: 6.1 -> 3.6 ms).
    # SGD's additive epoch too, on compact records only (a fit reads its contiguous weights)
    packed = _additive_on_records(kind, K, hh, l1, l2, exact, batch_size, indptr[indptr.size - 1], n_features)
    additive_momentum = kind == MOMENTUM and _linear_in_gradient(K, hh, need, use_scale, l1, l2)
    compact = packed and R.shape[0] < n_features
    E = indices  # E[jj]: the record of stored entry jj (see _run_epoch_records)
    n_rec = n_features if packed else 0
    feat = np.empty(0, dtype=np.int64)
    if compact:
        n_rec = _most_records(indptr, order, n_features)
        feat = np.empty(n_rec, dtype=np.int64)
        E = np.empty(indices.size, dtype=indices.dtype)
    # (the work array when it has the shape: NumPy's allocation, see _run_epoch_records)
    MR = R if R.shape[0] >= n_rec and R.shape[1] >= 3 else np.empty((n_rec, 3))
    if compact:
        n_rec = _compact_records(indptr, indices, order, n_rec, feat, E)
    for r in range(n_rec):
        j = feat[r] if compact else r
        MR[r, 0] = W[j, 0]
        MR[r, 1] = S1[j, 0]
        MR[r, 2] = 0.0  # steps counted from the call's start: no decay taken yet
    # compact: the scale folded into the weights mid-call, kept for the end (those it does not meet
    # are scaled then, by the same factors in the same order: the bits of records of every feature)
    folds = np.empty(n // max(batch_size, 1) + 2 if compact else 0)
    n_folds = 0
    t_in = t
    # Adam's bias corrections of the epoch's steps, for exact mode's replay (_catch_up_exact)
    n_steps = (n + max(batch_size, 1) - 1) // max(batch_size, 1)
    T = _adam_bias_tables(h0, t_in, n_steps if slow and kind == ADAM else 0)
    # Momentum's exact mode with a pure l2 penalty (momentum_prox_k, in closed form): its constants
    # for every number of missed steps an epoch can have, looked up by each row's catch-up
    mom_closed = slow and kind == MOMENTUM and l1 == 0.0 and l2 > 0.0 and hh[WD] == 0.0
    MT = _momentum_prox_table(h0, l2, n_steps if mom_closed else 0)
    a_zero = hh[A] == 0.0
    z = np.empty(K)
    dz = np.empty((max(batch_size, 1), K))
    # one output at batch > 1 on data that stays in the caches: the loss of the whole batch at
    # once, after its margins (_batch_losses), into the batch's margins, targets, losses and
    # derivatives (see BATCH_LOSS_MAX_ENTRIES)
    batch_loss = K == 1 and not single and indptr[indptr.size - 1] <= BATCH_LOSS_MAX_ENTRIES
    nb = max(batch_size, 1) if batch_loss else 1
    Mb, Yb, Vb, Db = np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb)
    # the features present in a mini-batch: touched[:n_touched], with their
    # gradient in gbuf[r] (K == 1) or grad[r] (K > 1) for touched[r], found
    # through slot[j], a sparse set that needs no clearing (first terms marked
    # by last[j] == t; slot[j] is read only once set in the batch); sized by the
    # batch's entries, and slot not zeroed, so that a call on a small chunk
    # touches few pages of a large model's n_features
    nbuf = 1 if single else min(n_features, batch_size * _max_row_length(indptr, order))
    touched = np.empty(nbuf, dtype=np.int64)
    slot = np.empty(1 if single else n_features, dtype=np.int32)
    gbuf = np.empty(nbuf if K == 1 else 1)
    grad = np.empty((1 if K == 1 else nbuf, K))
    loss_sum = 0.0
    start = 0
    while start < n:
        stop = min(start + batch_size, n)
        m = stop - start
        t += 1
        hh = _hyper_step(h0, kind, t)
        for q in range(m):
            i = order[start + q]
            lo = indptr[i]
            hi = indptr[i + 1]
            if start + q + 4 * PREFETCH_ROWS < n:
                # the start, target and weight of the row 4 PREFETCH_ROWS samples ahead (random
                # reads too: Zipf set, batch 32, whole fits: sgd 0.86x, momentum 0.89x; a9a sgd 0.94x)
                _prefetch_sample(indptr, y, sw, order[start + q + 4 * PREFETCH_ROWS])
            if start + q + PREFETCH_ROWS < n:
                # the CSR row PREFETCH_ROWS samples ahead (rows are read in random order)
                i2 = order[start + q + PREFETCH_ROWS]
                for jj in range(indptr[i2], indptr[i2 + 1], 8):
                    prefetch(indices, jj)
                    prefetch(data, jj)
            if need and (slow or K > 1):
                # bring each weight row of the sample up to step t - 1
                for jj in range(lo, hi):
                    j = indices[jj]
                    t0 = last[j]
                    if t0 < t - 1:
                        if mom_closed:
                            _momentum_catch_up_row(W, S1, j, MT, t - 1 - t0, a_zero)
                        elif slow:
                            if _row_moves(W, S1, S2, j):
                                _catch_up_exact(kind, W, S1, S2, j, hh, l1, l2, t0, t - 1 - t0, t_in, T)
                        else:
                            for c in range(K):
                                # _prox_lag, spelled out: LLVM does not inline that call here (~7%)
                                wv = W[j, c]
                                if uniform:
                                    W[j, c] = _lag(wv, eta_u, l1, l2, lc_u, t - 1 - t0)
                                else:
                                    W[j, c] = _lag(wv, LC[j, c], l1, l2, LC[j, c], t - 1 - t0)
                        last[j] = t - 1
            if K == 1:
                z0 = 0.0
                if fused:
                    # each weight of the sample brought up to step t - 1 as it is read (k = 0
                    # is an exact no-op of prox_k: no branch on it)
                    for jj in range(lo, hi):
                        j = indices[jj]
                        k = t - 1 - last[j]
                        last[j] = t - 1
                        if pure_l2:  # prox_k of a pure l2 penalty, inlined
                            wv = W[j, 0] * _exp_neg_fast(k * lc_u)
                        else:
                            wv = prox_k(W[j, 0], eta_u, l1, l2, lc_u, k)
                        W[j, 0] = wv
                        z0 += data[jj] * wv
                elif packed:
                    for jj in range(lo, hi):
                        z0 += data[jj] * MR[E[jj], 0]
                else:
                    for jj in range(lo, hi):
                        z0 += data[jj] * W[indices[jj], 0]
                if batch_loss:  # (the loss of the whole batch below)
                    Mb[q] = wscale * z0 + b[0]
                    Yb[q] = y[i]
                    continue
                value, d0 = _loss_grad1(loss, wscale * z0 + b[0], y[i])
                loss_sum += sw[i] * value
                if not single:
                    dz[q, 0] = d0 * (sw[i] / m)
                    continue
                d0 *= sw[i]
                dz[0, 0] = d0
                # one sample: its CSR row holds each feature once, update in place
                if additive:
                    d0 *= -hh[LR] * inv_wscale
                    for jj in range(lo, hi):
                        W[indices[jj], 0] += data[jj] * d0
                    continue
                for jj in range(lo, hi):
                    j = indices[jj]
                    if use_scale:
                        p, s1, s2 = _step_scaled(kind, W[j, 0], data[jj] * d0, S1[j, 0], S2[j, 0], hh,
                                                 wscale, inv_wscale)
                    else:
                        p, s1, s2, eta = _step_prox(kind, W[j, 0], data[jj] * d0, S1[j, 0], S2[j, 0], hh,
                                                    l1, l2)
                    # only the state slots kind uses (unused ones alias S1 or W)
                    if kind == ADAM:
                        S2[j, 0] = s2
                    if kind != SGD:
                        S1[j, 0] = s1
                    W[j, 0] = p
                    if need:
                        last[j] = t
            else:
                for c in range(K):
                    z[c] = 0.0
                for jj in range(lo, hi):
                    j = indices[jj]
                    x = data[jj]
                    for c in range(K):
                        z[c] += x * W[j, c]
                for c in range(K):
                    z[c] = wscale * z[c] + b[c]
                loss_sum += sw[i] * _loss_grad(loss, z, y[i], dz[q])
                scale = sw[i] / m
                for c in range(K):
                    dz[q, c] *= scale
        if batch_loss:
            _batch_losses(loss, Mb, Yb, Vb, Db, m)
            for q in range(m):
                i = order[start + q]
                loss_sum += sw[i] * Vb[q]
                dz[q, 0] = Db[q] * (sw[i] / m)
        if additive and not single:
            # the rule is p - lr g with g the sum of the samples' terms (see above)
            c0 = -hh[LR] * inv_wscale
            for q in range(m):
                i = order[start + q]
                d0 = c0 * dz[q, 0]
                if packed:  # compact records (MR)
                    for jj in range(indptr[i], indptr[i + 1]):
                        MR[E[jj], 0] += data[jj] * d0
                    continue
                for jj in range(indptr[i], indptr[i + 1]):
                    W[indices[jj], 0] += data[jj] * d0
        elif additive_momentum and not single:
            # momentum_rule with g the sum of the samples' terms, v <- a v + lr g and
            # p <- p - v (Nesterov: p - (a v + lr g)), is linear in g once the velocity's
            # decay is taken at a feature's first term in the batch (last[j] != t):
            # p - a v - lr g (Nesterov: p - a a v - (1 + a) lr g); weights scaled as above
            a = hh[A]
            move = a if hh[B] != 0.0 else 1.0  # the part of the decayed velocity p moves by
            c0 = hh[LR]
            c1 = (1.0 + a if hh[B] != 0.0 else 1.0) * inv_wscale
            tf = float(t - t_in)
            for q in range(m):
                i = order[start + q]
                d0 = c0 * dz[q, 0]
                if packed:  # the same on records (MR)
                    # (the loop of _momentum_term, spelled out: with the helper this one-thread
                    # epoch measured 1.04-1.05x slower by the median of 9-11 fits, 1.00-1.02x
                    # by the minimum)
                    for jj in range(indptr[i], indptr[i + 1]):
                        r = E[jj]
                        first = MR[r, 2] != tf
                        v = MR[r, 1] * (a if first else 1.0)
                        lg = data[jj] * d0
                        MR[r, 0] -= (move * v if first else 0.0) * inv_wscale + c1 * lg
                        MR[r, 1] = v + lg
                        MR[r, 2] = tf
                    continue
                for jj in range(indptr[i], indptr[i + 1]):
                    j = indices[jj]
                    first = last[j] != t
                    v = S1[j, 0] * (a if first else 1.0)
                    lg = data[jj] * d0
                    W[j, 0] -= (move * v if first else 0.0) * inv_wscale + c1 * lg
                    S1[j, 0] = v + lg
                    last[j] = t
        elif K == 1 and not single:
            # sum the batch's gradient over the features present
            n_touched = 0
            for q in range(m):
                i = order[start + q]
                d0 = dz[q, 0]
                for jj in range(indptr[i], indptr[i + 1]):
                    # last[j] == t marks a feature met earlier in this batch (last <= t - 1
                    # before); no data-dependent branch: every store is done
                    j = indices[jj]
                    seen = last[j] == t
                    r = slot[j] if seen else n_touched
                    g0 = gbuf[r] if seen else 0.0
                    gbuf[r] = g0 + data[jj] * d0
                    slot[j] = r
                    touched[r] = j
                    last[j] = t
                    n_touched += 0 if seen else 1
            for r in range(n_touched):
                j = touched[r]
                if use_scale:
                    p, s1, s2 = _step_scaled(kind, W[j, 0], gbuf[r], S1[j, 0], S2[j, 0], hh, wscale, inv_wscale)
                else:
                    p, s1, s2, eta = _step_prox(kind, W[j, 0], gbuf[r], S1[j, 0], S2[j, 0], hh, l1, l2)
                if kind == ADAM:
                    S2[j, 0] = s2
                if kind != SGD:
                    S1[j, 0] = s1
                W[j, 0] = p
        elif K > 1:
            n_touched = 0
            for q in range(m):
                i = order[start + q]
                for jj in range(indptr[i], indptr[i + 1]):
                    j = indices[jj]
                    if last[j] != t:  # first term of feature j in the batch (last[j] <= t - 1 before)
                        last[j] = t
                        slot[j] = n_touched
                        touched[n_touched] = j
                        for c in range(K):
                            grad[n_touched, c] = 0.0
                        n_touched += 1
                    r = slot[j]
                    x = data[jj]
                    for c in range(K):
                        grad[r, c] += x * dz[q, c]
            for r in range(n_touched):
                j = touched[r]
                for c in range(K):
                    if use_scale:
                        p, s1, s2 = _step_scaled(kind, W[j, c], grad[r, c], S1[j, c], S2[j, c], hh,
                                                 wscale, inv_wscale)
                    else:
                        p, s1, s2, eta = _step_prox(kind, W[j, c], grad[r, c], S1[j, c], S2[j, c], hh, l1, l2)
                        if keep_eta:
                            LC[j, c] = _lag_param(eta, l2)
                    S2[j, c] = s2  # unused state slots alias S1 or W: real values last
                    S1[j, c] = s1
                    W[j, c] = p
        if fit_intercept:
            for c in range(K):
                g = 0.0
                for q in range(m):
                    g += dz[q, c]
                p, s1, s2 = apply_rule(kind, b[c], g, bs1[c], bs2[c], hh)
                bs2[c] = s2
                bs1[c] = s1
                b[c] = p
        if use_scale:
            wscale *= shrink
            if wscale < 1e-9:
                if compact:
                    folds[n_folds] = wscale
                    n_folds += 1
                else:
                    W *= wscale
                    _log_scale(scales, wscale)
                for r in range(n_rec):
                    MR[r, 0] *= wscale
                wscale = 1.0
            inv_wscale = 1.0 / wscale
        start = stop
    if compact:
        # nothing written back if the model diverged (the caller raises; b, bs1, bs2 changed)
        finite = math.isfinite(b[0])
        for r in range(n_rec):
            finite &= math.isfinite(MR[r, 0])
        if not finite:
            return t, loss_sum, DIVERGED
        # the weights the call did not meet: the folds, then the scale, as on records of every
        # feature (the others are overwritten below)
        if n_folds == 0 and use_scale:  # the usual case: a loop LLVM vectorises (2**20: 0.9 -> 0.4 ms)
            for j in range(n_features):
                W[j, 0] *= wscale
        elif n_folds > 0 or use_scale:  # (without a penalty they stay as they are)
            for j in range(n_features):
                wv = W[j, 0]
                for f in range(n_folds):
                    wv *= folds[f]
                W[j, 0] = wv * wscale if use_scale else wv
        for r in range(n_rec):
            if kind == MOMENTUM:  # (SGD's S1 may alias W)
                S1[feat[r], 0] = MR[r, 1]
            W[feat[r], 0] = MR[r, 0] * wscale if use_scale else MR[r, 0]
        # last is neither read nor written: it still holds t_in for every row (sync_last)
        return t, loss_sum, WRITTEN
    # unpack (records of every feature)
    for r in range(n_rec):
        S1[r, 0] = MR[r, 1]
        W[r, 0] = MR[r, 0]
    if use_scale:
        W *= wscale
        _log_scale(scales, wscale)
    if additive or packed:
        # SGD's additive epoch and Momentum's on records neither read nor write last: it still holds
        # one value for every row (t_in), which sync_last refills where it is read (2**20 weights:
        # a 16 MB pass saved)
        return t, loss_sum, WRITTEN
    # bring every row up to step t
    for j in range(n_features):
        t0 = last[j]
        if need and t0 < t:
            if mom_closed:
                _momentum_catch_up_row(W, S1, j, MT, t - t0, a_zero)
            elif slow:
                if _row_moves(W, S1, S2, j):
                    _catch_up_exact(kind, W, S1, S2, j, hh, l1, l2, t0, t - t0, t_in, T)
            else:
                for c in range(K):
                    if uniform:
                        W[j, c] = _lag(W[j, c], eta_u, l1, l2, lc_u, t - t0)
                    elif W[j, c] != 0.0:
                        W[j, c] = _lag(W[j, c], LC[j, c], l1, l2, LC[j, c], t - t0)
        last[j] = t
    return t, loss_sum, WRITTEN
