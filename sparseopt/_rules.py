"""The math of the five optimizers, written once.

Every update path (dense, lazy ``skip``, lazy ``exact``, CPU and CUDA) calls
the scalar functions of this module; the kernels around them are loops.

Conventions
-----------
Each rule acts on one element: ``p`` the parameter, ``g`` its gradient,
``s1`` / ``s2`` its optimizer state (unused slots are passed through), and
returns the new ``(p, s1, s2)``.  Hyperparameters travel in a small array
``h`` of the parameter's dtype, laid out as::

    h[LR], h[EPS], h[WD], h[A], h[B], h[C1], h[C2], h[AC], h[BC]

with ``AC = 1 - A`` and ``BC = 1 - B`` stored rather than computed: in a
float32 kernel ``1 - h[A]`` would be an int64-float32 expression, which
Numba types as float64, turning the whole update into float64 arithmetic
(Adam 2.7x slower at 10M float32 parameters).

========  ===================  ==================  ===========  ===========
kind      A                    B                   C1           C2
========  ===================  ==================  ===========  ===========
SGD       -                    -                   -            -
MOMENTUM  momentum (gamma)     nesterov (0 or 1)   -            -
ADAGRAD   initial accumulator  -                   -            -
RMSPROP   rho                  -                   -            -
ADAM      beta1                beta2               see below    see below
========  ===================  ==================  ===========  ===========

Adam's bias corrections of step ``t`` are stored as the factors they are
applied with, ``C1 = 1 / (1 - beta1^t)`` and ``C2 = 1 / sqrt(1 - beta2^t)``,
so that ``m_hat = m C1`` and ``sqrt(v_hat) = sqrt(v) C2`` are
multiplications.  Each adaptive rule moves ``p`` by its step size times a
gradient or moment (:func:`root_rate`, :func:`adam_rate`), and a caller that
needs the step size too (the estimators' proximal step) gets it from the same
expression, which LLVM computes once: one division per element where Adam's
estimator update had four and AdaGrad's and RMSProp's two (an epoch on the
Zipf set: Adam's update 37-48M -> 30-32M cycles a thread).

Only the rules use these functions from Python types that CUDA also
supports (``math``, scalars, tuples), so ``numba.cuda`` compiles the very
same functions for the GPU.
"""

import math

from ._jit import rule

# optimizer kinds
SGD, MOMENTUM, ADAGRAD, RMSPROP, ADAM = 0, 1, 2, 3, 4
# number of state arrays of each kind
N_STATE = (0, 1, 1, 1, 2)
# slots of the hyperparameter array
LR, EPS, WD, A, B, C1, C2, AC, BC = 0, 1, 2, 3, 4, 5, 6, 7, 8
H_SIZE = 9


@rule
def sgd_rule(p, g, s1, s2, h):
    g = g + h[WD] * p
    return p - h[LR] * g, s1, s2


@rule
def momentum_rule(p, g, v, s2, h):
    g = g + h[WD] * p
    v = h[A] * v + h[LR] * g
    if h[B] != 0:  # nesterov look-ahead with the new velocity
        return p - (h[A] * v + h[LR] * g), v, s2
    return p - v, v, s2


@rule
def root_rate(s, h):
    """AdaGrad's and RMSProp's step size ``lr / sqrt(s + eps)`` at accumulator ``s``."""
    return h[LR] / math.sqrt(s + h[EPS])


@rule
def adam_rate(v, h, c2):
    """Adam's step size ``lr / (sqrt(v / (1 - beta2^t)) + eps)`` at second moment ``v``, given
    ``c2 = 1 / sqrt(1 - beta2^t)``."""
    return h[LR] / (math.sqrt(v) * c2 + h[EPS])


@rule
def adagrad_rule(p, g, G, s2, h):
    g = g + h[WD] * p
    G = G + g * g
    return p - root_rate(G, h) * g, G, s2


@rule
def rmsprop_rule(p, g, E, s2, h):
    g = g + h[WD] * p
    E = h[A] * E + h[AC] * (g * g)
    return p - root_rate(E, h) * g, E, s2


@rule
def adam_factors(beta1t, beta2t):
    """Adam's bias corrections as factors, ``(1 / (1 - beta1^t), 1 / sqrt(1 - beta2^t))``, from
    ``beta1^t`` and ``beta2^t``."""
    return 1.0 / (1.0 - beta1t), 1.0 / math.sqrt(1.0 - beta2t)


@rule
def adam_step(p, g, m, v, h, c1, c2):
    """Adam with explicit bias corrections ``c1 = 1 / (1 - beta1^t)``, ``c2 = 1 / sqrt(1 - beta2^t)``
    (:func:`adam_factors`)."""
    g = g + h[WD] * p
    m = h[A] * m + h[AC] * g
    v = h[B] * v + h[BC] * (g * g)
    return p - adam_rate(v, h, c2) * (m * c1), m, v


@rule
def adam_rule(p, g, m, v, h):
    return adam_step(p, g, m, v, h, h[C1], h[C2])


@rule
def apply_rule(kind, p, g, s1, s2, h):
    """One dense step of optimizer ``kind`` on one element."""
    if kind == SGD:
        return sgd_rule(p, g, s1, s2, h)
    elif kind == MOMENTUM:
        return momentum_rule(p, g, s1, s2, h)
    elif kind == ADAGRAD:
        return adagrad_rule(p, g, s1, s2, h)
    elif kind == RMSPROP:
        return rmsprop_rule(p, g, s1, s2, h)
    return adam_rule(p, g, s1, s2, h)


# --------------------------------------------------------------------------
# catching up k steps with zero gradient (lazy="exact")
# --------------------------------------------------------------------------


@rule
def _matpow2(a, b, c, d, k):
    """[[a, b], [c, d]] ** k by repeated squaring (k >= 0)."""
    ra, rb, rc, rd = 1.0, 0.0, 0.0, 1.0
    while k > 0:
        if k & 1:
            ra, rb, rc, rd = ra * a + rb * c, ra * b + rb * d, rc * a + rd * c, rc * b + rd * d
        a, b, c, d = a * a + b * c, a * b + b * d, c * a + d * c, c * b + d * d
        k >>= 1
    return ra, rb, rc, rd


@rule
def _zero_steps(kind, p, s1, s2, h, t0, k):
    """Run the dense rule ``k`` times with zero gradient, from step ``t0 + 1``."""
    zero = p - p
    if kind != ADAM:
        for _ in range(k):
            p, s1, s2 = apply_rule(kind, p, zero, s1, s2, h)
        return p, s1, s2
    beta1 = float(h[A])
    beta2 = float(h[B])
    b1t = beta1**t0
    b2t = beta2**t0
    # Without weight decay the remaining movement of p is bounded by a
    # geometric series in r = beta1 / sqrt(beta2) (|m| decays as beta1^j,
    # sqrt(v) as beta2^(j/2), and 1 - beta1^s >= 1 - beta1); once that bound
    # is below the last bit of p, the rest is v <- beta2^j v in closed form.
    r = beta1 / math.sqrt(beta2)
    for j in range(k):
        b1t *= beta1
        b2t *= beta2
        c1, c2 = adam_factors(b1t, b2t)
        p, s1, s2 = adam_step(p, zero, s1, s2, h, c1, c2)
        settled = adam_settled(p, s1, s2, h, beta1, r)
        if settled == 1:
            rest = k - 1 - j
            return p, s1 * beta1**rest, s2 * beta2**rest
        if settled == 2:
            rest = k - 1 - j
            return p, s1, s2 * beta2**rest
    return p, s1, s2


@rule
def adam_settled(p, m, v, h, beta1, r):
    """Whether zero-gradient Adam steps can stop moving ``p`` (``r = beta1 / sqrt(beta2)``).

    Returns 1 when the rest of ``p``'s movement is below float64 resolution
    (``m`` and ``v`` then decay in closed form), 2 when ``m == 0`` (only ``v``
    moves, in closed form), else 0.  Only without weight decay.
    """
    use_bound = h[WD] == 0 and r < 1.0
    if use_bound and v > 0:
        bound = float(h[LR]) * abs(float(m)) / ((1.0 - beta1) * math.sqrt(float(v)) * (1.0 - r))
        if bound <= 1e-18 * abs(float(p)):
            return 1
    elif use_bound and m == 0:
        return 2
    return 0


@rule
def catch_up(kind, p, s1, s2, h, t0, k):
    """State after ``k`` zero-gradient steps ``t0 + 1 .. t0 + k`` of ``kind``.

    Closed forms where SPEC.md gives them, else the rule itself in a loop.
    """
    if k <= 0:
        return p, s1, s2
    return catch_up_with(kind, p, s1, s2, h, t0, k, catch_up_factors(kind, h, k))


@rule
def catch_up_is_identity(kind, h):
    """Whether zero-gradient steps leave parameter and state as they are (SGD, AdaGrad without weight decay)."""
    return (kind == SGD or kind == ADAGRAD) and h[WD] == 0


@rule
def catch_up_factors(kind, h, k):
    """The constants of :func:`catch_up`'s closed forms for ``k >= 1`` steps, as 4 floats.

    The same for every element: a row computes them once, then
    :func:`catch_up_with` on each element (powers and matrix powers are
    then not recomputed per element).
    """
    wd = float(h[WD])
    if kind == SGD:
        return (1.0 - float(h[LR]) * wd) ** k, 0.0, 0.0, 0.0
    if kind == MOMENTUM:
        gamma = float(h[A])
        eta_wd = float(h[LR]) * wd
        if wd == 0:
            gk = gamma**k
            shift = (gamma if h[B] == 0 else gamma * gamma) * (1.0 - gk) / (1.0 - gamma)
            return shift, gk, 0.0, 0.0
        if h[B] != 0:  # nesterov
            return _matpow2(1.0 - eta_wd * (1.0 + gamma), -gamma * gamma, eta_wd, gamma, k)
        return _matpow2(1.0 - eta_wd, -gamma, eta_wd, gamma, k)
    if kind == RMSPROP:
        return float(h[A]) ** k, 0.0, 0.0, 0.0
    return 0.0, 0.0, 0.0, 0.0


@rule
def catch_up_with(kind, p, s1, s2, h, t0, k, f):
    """:func:`catch_up` for ``k >= 1`` steps, given ``f = catch_up_factors(kind, h, k)``."""
    wd = float(h[WD])
    if kind == SGD:
        if wd == 0:
            return p, s1, s2
        return p * f[0], s1, s2
    if kind == MOMENTUM:
        if wd == 0:  # f = (shift, gamma**k)
            return p - s1 * f[0], s1 * f[1], s2
        pf = float(p)  # f: the matrix power [[a, b], [c, d]]
        vf = float(s1)
        return f[0] * pf + f[1] * vf, f[2] * pf + f[3] * vf, s2
    if kind == ADAGRAD and wd == 0:
        return p, s1, s2
    if kind == RMSPROP and wd == 0:
        return p, s1 * f[0], s2
    return _zero_steps(kind, p, s1, s2, h, t0, k)
