"""Tests of sparseopt.linear_model against independent references.

References: a NumPy transcription of SPEC.md's rules and of the proximal
training step (``_reference_fit``, written from the equations, not from
``sparseopt._rules``), scikit-learn's lbfgs ``LogisticRegression``,
``Ridge``, ``Lasso`` and ``ElasticNet`` at the same objective, and closed
forms.  Everything runs in float64; tolerances say why they are what they are.
"""

import math
import pickle
import warnings

import joblib
import numba
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.linear_model import LogisticRegression as SkLogistic
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sparseopt import optim
from sparseopt.datasets import load_a9a, load_sms_spam, make_zipf_classification
from sparseopt.linear_model import LinearRegression, LogisticRegression
from sparseopt.linear_model import _base, _epoch

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------------
# a NumPy reference of the training step (SPEC.md's rules + proximal penalty)
# --------------------------------------------------------------------------

DEFAULTS = {
    "sgd": {},
    "momentum": {"momentum": 0.9, "nesterov": False},
    "adagrad": {"eps": 1e-8, "initial_accumulator_value": 0.0},
    "rmsprop": {"rho": 0.9, "eps": 1e-8},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


def _ref_rule(name, p, g, s, lr, hp, t):
    """SPEC.md's dense rule on arrays; returns (p, state, step size of the proximal step)."""
    if name == "sgd":
        return p - lr * g, s, np.full_like(p, lr)
    if name == "momentum":
        gamma = hp["momentum"]
        v = gamma * s["v"] + lr * g
        step = gamma * v + lr * g if hp["nesterov"] else v
        return p - step, {"v": v}, np.full_like(p, lr / (1 - gamma))
    if name == "adagrad":
        G = s["G"] + g * g
        return p - lr * g / np.sqrt(G + hp["eps"]), {"G": G}, lr / np.sqrt(G + hp["eps"])
    if name == "rmsprop":
        E = hp["rho"] * s["E"] + (1 - hp["rho"]) * g * g
        return p - lr * g / np.sqrt(E + hp["eps"]), {"E": E}, lr / np.sqrt(E + hp["eps"])
    b1, b2 = hp["beta1"], hp["beta2"]
    m = b1 * s["m"] + (1 - b1) * g
    v = b2 * s["v"] + (1 - b2) * g * g
    vhat = v / (1 - b2**t)
    return p - lr * (m / (1 - b1**t)) / (np.sqrt(vhat) + hp["eps"]), {"m": m, "v": v}, lr / (np.sqrt(vhat) + hp["eps"])


def _ref_step_size(name, S, lr, hp, t):
    """The step size of each coordinate at state ``S`` (SPEC.md's rules, per coordinate)."""
    if name == "sgd":
        return lr
    if name == "momentum":
        return lr / (1 - hp["momentum"])
    if name == "adagrad":
        return lr / np.sqrt(S["G"] + hp["eps"])
    if name == "rmsprop":
        return lr / np.sqrt(S["E"] + hp["eps"])
    return lr / (np.sqrt(S["v"] / (1 - hp["beta2"] ** t)) + hp["eps"])


def _ref_prox(w, eta, l1, l2):
    return np.sign(w) * np.maximum(np.abs(w) - eta * l1, 0.0) / (1 + eta * l2)


def _ref_fit(name, X, y, loss, lr, l1, l2, batch, epochs, order_seed, exact=False, hp=None):
    """Dense NumPy training: each step, the rule on the features present, then the proximal
    step on **every** feature (absent ones: with a zero loss gradient, their state frozen in
    ``skip`` mode; in ``exact`` mode the rule also runs on them with a zero gradient)."""
    hp = dict(DEFAULTS[name], **(hp or {}))
    X = np.asarray(X.todense()) if sp.issparse(X) else X
    n, d = X.shape
    K = 1 if loss != "multinomial" else int(y.max()) + 1
    W = np.zeros((d, K))
    b = np.zeros(K)
    names = {"sgd": [], "momentum": ["v"], "adagrad": ["G"], "rmsprop": ["E"], "adam": ["m", "v"]}[name]
    init = hp.get("initial_accumulator_value", 0.0)
    S = {k: np.full((d, K), init if k == "G" else 0.0) for k in names}
    Sb = {k: np.full(K, init if k == "G" else 0.0) for k in names}
    rng = np.random.RandomState(order_seed)
    t = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        eta_last = _ref_step_size(name, S, lr, hp, max(t, 1)) * np.ones((d, K))
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            t += 1
            Z = X[idx] @ W + b
            if loss == "squared":
                dZ = Z - y[idx, None]
            elif loss == "log":
                dZ = -y[idx, None] / (1 + np.exp(y[idx, None] * Z))
            else:
                P = np.exp(Z - Z.max(1, keepdims=True))
                P /= P.sum(1, keepdims=True)
                P[np.arange(len(idx)), y[idx].astype(int)] -= 1
                dZ = P
            dZ /= len(idx)
            G = X[idx].T @ dZ
            present = np.any(X[idx] != 0, axis=0)
            rows = present if not exact or name in ("sgd", "adagrad") else np.ones(d, bool)
            p_new, s_new, eta = _ref_rule(name, W[rows], G[rows], {k: v[rows] for k, v in S.items()}, lr, hp, t)
            W[rows] = p_new
            for k in names:
                S[k][rows] = s_new[k]
            # proximal step on all features: the updated ones with their new step size,
            # the others with the step size of their last update (their state is frozen)
            eta_last[rows] = eta
            W = _ref_prox(W, eta_last, l1, l2)
            bn, sbn, _ = _ref_rule(name, b, dZ.sum(0), Sb, lr, hp, t)
            b, Sb = bn, sbn
    return W, b


def _sparse_problem(n=60, d=12, seed=0, density=0.3):
    rng = np.random.RandomState(seed)
    # feature frequencies from common to rare
    freq = np.linspace(0.9, 0.05, d) * density / 0.45
    mask = rng.rand(n, d) < np.clip(freq, 0.02, 0.95)
    X = np.where(mask, rng.randn(n, d), 0.0)
    w = rng.randn(d)
    return X, w


def _kernel_run(name, X, y, loss_kind, lr, l1, l2, batch, epochs, seed, exact=False):
    """The estimator's kernel fed like the reference (same orders)."""
    est = (LogisticRegression if loss_kind != _epoch.SQUARED else LinearRegression)(
        optimizer=name, learning_rate=lr, batch_size=batch, max_iter=epochs, tol=None,
        penalty="elasticnet", alpha=l1 + l2, l1_ratio=(l1 / (l1 + l2)) if l1 + l2 > 0 else 0.0,
        random_state=np.random.RandomState(seed), lazy="exact" if exact else "skip",
    )
    return est


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.0, 0.05), (0.02, 0.03)])
@pytest.mark.parametrize("batch", [1, 4])
def test_kernel_matches_numpy_reference_logistic(name, l1, l2, batch):
    """lazy='skip' on sparse data equals the dense step-by-step reference (float64: rtol 1e-9,
    the results differ by rounding only)."""
    X, w = _sparse_problem()
    y = np.where(X @ w + 0.3 * np.random.RandomState(1).randn(len(X)) > 0, 1.0, -1.0)
    lr = 0.05
    W_ref, b_ref = _ref_fit(name, X, y, "log", lr, l1, l2, batch, 3, order_seed=7)
    est = _kernel_run(name, X, y, _epoch.LOG, lr, l1, l2, batch, 3, seed=7)
    est.fit(sp.csr_matrix(X), y)
    assert_allclose(est.coef_.ravel(), W_ref.ravel(), rtol=1e-9, atol=1e-12)
    assert_allclose(est.intercept_, b_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,l1,l2", [("sgd", 0.0, 0.05), ("momentum", 0.0, 0.05), ("sgd", 0.02, 0.03),
                                         ("adagrad", 0.0, 0.0), ("adagrad", 0.0, 0.05), ("adam", 0.02, 0.03)])
def test_kernel_beyond_the_batch_loss_size_matches_numpy_reference(name, l1, l2, monkeypatch):
    """On data of more than BATCH_LOSS_MAX_ENTRIES stored entries the one-thread epochs (the
    general kernel; the records, kept on one thread here) compute each sample's log loss as
    they read the sample (libm), on less a mini-batch's at once (the smaller tests): equal to
    the dense reference either way (float64: rtol 1e-9, rounding only)."""
    monkeypatch.setattr(_base, "_two_threads", lambda: False)
    rng = np.random.RandomState(3)
    n, d = 4800, 256
    X = np.where(rng.rand(n, d) < 0.9, rng.randn(n, d) / 16.0, 0.0)
    Xs = sp.csr_matrix(X)
    assert Xs.nnz > _epoch.BATCH_LOSS_MAX_ENTRIES
    y = np.where(X @ rng.randn(d) > 0, 1.0, -1.0)
    W_ref, b_ref = _ref_fit(name, X, y, "log", 0.05, l1, l2, 32, 1, order_seed=5)
    est = _kernel_run(name, X, y, _epoch.LOG, 0.05, l1, l2, 32, 1, seed=5)
    est.fit(Xs, y)
    assert_allclose(est.coef_.ravel(), W_ref.ravel(), rtol=1e-9, atol=1e-12)
    assert_allclose(est.intercept_, b_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("l1,l2", [(0.0, 0.05), (0.02, 0.03)])
def test_records_with_most_entries_repeated_match_numpy_reference(name, l1, l2):
    """Where most entries repeat a feature of their mini-batch (here >= 90%: 12 features, 32
    rows of ~4 entries), the epoch on records switches, after ~2,048 entries, to the margin
    pass that skips the weights already up to date; the rare features, absent from some
    batches, still take their catch-up there.  Equal to the dense reference (float64: rtol
    1e-9, rounding only)."""
    X, w = _sparse_problem(n=1500, d=12, seed=2, density=0.3)
    y = np.where(X @ w + 0.3 * np.random.RandomState(1).randn(len(X)) > 0, 1.0, -1.0)
    assert np.count_nonzero(X) > 2 * 2048
    W_ref, b_ref = _ref_fit(name, X, y, "log", 0.05, l1, l2, 32, 2, order_seed=9)
    est = _kernel_run(name, X, y, _epoch.LOG, 0.05, l1, l2, 32, 2, seed=9)
    est.fit(sp.csr_matrix(X), y)
    assert_allclose(est.coef_.ravel(), W_ref.ravel(), rtol=1e-9, atol=1e-12)
    assert_allclose(est.intercept_, b_ref, rtol=1e-9, atol=1e-12)


def test_thread_split():
    """thread_split: the first feature of the second thread holds the entries near their middle,
    and each row's entries split at it; rows whose indices are not increasing give nothing."""
    X = sp.random(50, 30, density=0.3, random_state=1, format="csr")
    X.sort_indices()
    P = _epoch.thread_split(X.indptr, X.indices, 30)
    assert P.shape == (51,)
    J = P[-1]
    below = np.count_nonzero(X.indices < J)
    assert 2 * below >= X.nnz and 2 * np.count_nonzero(X.indices < J - 1) < X.nnz  # the first J reaching half
    for i in range(50):
        row = X.indices[X.indptr[i]:X.indptr[i + 1]]
        assert P[i] == X.indptr[i] + np.count_nonzero(row < J)
    swapped = X.indices.copy()
    lo = X.indptr[np.argmax(np.diff(X.indptr) > 1)]
    swapped[lo], swapped[lo + 1] = swapped[lo + 1], swapped[lo]
    assert _epoch.thread_split(X.indptr, swapped, 30).size == 0


def _records_run(threaded, kind, loss, X, y, order, batch, h, l1, l2, W0, S0):
    d = X.shape[1]
    W, S1, S2 = W0.copy(), S0[:, :1].copy(), S0[:, 1:].copy()
    b, bs1, bs2 = np.array([0.1]), np.array([0.2]), np.array([0.3])
    R = _epoch.work_arrays(kind, d, 1, d)
    args = (kind, loss, X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data, y, np.ones(X.shape[0]),
            order, batch, W, S1, S2, b, bs1, bs2, h, l1, l2, True, 5, R)
    if threaded:
        out = _epoch._run_epoch_records_threads(*args, _epoch.thread_split(X.indptr, X.indices, d))
    else:
        out = _epoch._run_epoch_records(*args, False)
    return out, (W, S1, S2, b, bs1, bs2)


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="the two-thread epoch needs two Numba threads")
@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("l1,l2", [(0.0, 1e-3), (0.0, 30.0), (0.01, 0.02), (0.05, 0.0)])
@pytest.mark.parametrize(
    "loss,dense,batch", [(_epoch.LOG, False, 7), (_epoch.SQUARED, False, 7), (_epoch.LOG, False, 1), (_epoch.LOG, True, 32)]
)
def test_two_threads_equal_one_thread(name, l1, l2, loss, dense, batch):
    """The epoch on records on two threads, each with its own features, gives the one-thread
    epoch's model, state, steps and loss to rounding (each margin is the sum of two parts
    there), at batch 1 too (where the one-thread epoch updates each row in place); also where
    most entries repeat a feature of their batch (dense rows: the branch that skips up-to-date
    weights) and when the model diverges (nothing written back)."""
    rng = np.random.default_rng(3)
    n, d = (800, 8) if dense else (80, 40)  # (dense: each thread reads 2,048 entries before it skips)
    X = sp.random(n, d, density=0.9 if dense else 0.15, random_state=4, format="csr")
    X.sort_indices()
    y = rng.choice([-1.0, 1.0], n) if loss == _epoch.LOG else rng.normal(size=n)
    kind = {"adagrad": _epoch.ADAGRAD, "rmsprop": _epoch.RMSPROP, "adam": _epoch.ADAM}[name]
    h = LogisticRegression(optimizer=name)._h()
    h[0] = 0.05
    W0 = np.where(rng.random((d, 1)) < 0.7, rng.normal(size=(d, 1)), 0.0)
    S0 = rng.random((d, 2)) + 0.01
    order = rng.permutation(n).astype(np.int64)
    out1, one = _records_run(False, kind, loss, X, y, order, batch, h, l1, l2, W0, S0)
    out2, two = _records_run(True, kind, loss, X, y, order, batch, h, l1, l2, W0, S0)
    assert out1[0] == out2[0] and out1[2] == out2[2] == _epoch.WRITTEN
    assert_allclose(out2[1], out1[1], rtol=1e-12)
    for a, c in zip(one, two):
        assert_allclose(c, a, rtol=1e-10, atol=1e-13)
    if l1 > 0:
        assert_array_equal(one[0] == 0, two[0] == 0)  # the same exact zeros
    assert np.abs(one[0] - W0).max() > 1e-3  # it trained
    huge = h.copy()
    huge[0] = 1e300
    out, two = _records_run(True, kind, loss, X * 1e300, y, order, batch, huge, l1, l2, W0, S0)
    assert out[2] == _epoch.DIVERGED
    assert_array_equal(two[0], W0)
    assert_array_equal(two[1], S0[:, :1])




@pytest.mark.skipif(numba.get_num_threads() < 2, reason="the two-thread epoch needs two Numba threads")
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("l2,lr", [(1e-3, 0.05), (0.0, 0.05), (30.0, 0.05)])
@pytest.mark.parametrize("loss,dense,batch", [(_epoch.LOG, False, 7), (_epoch.SQUARED, False, 7), (_epoch.LOG, True, 32)])
def test_momentum_two_threads_equal_one_thread(nesterov, l2, lr, loss, dense, batch):
    """Momentum's additive epoch on records on two threads, each with its own features, gives
    the one-thread epoch's model, velocities, steps and loss to rounding (each margin is the sum
    of two parts there, the loss a vectorised form): with an l2 penalty in the weights' scale
    (l2 = 30: the scale is folded into the weights every ~8 steps), without a penalty, Nesterov
    or not, at batch 7 and 32."""
    rng = np.random.default_rng(3)
    n, d = (800, 8) if dense else (80, 40)
    X = sp.random(n, d, density=0.9 if dense else 0.15, random_state=4, format="csr")
    X.sort_indices()
    y = rng.choice([-1.0, 1.0], n) if loss == _epoch.LOG else rng.normal(size=n)
    h = LogisticRegression(optimizer="momentum", optimizer_params={"nesterov": nesterov})._h()
    h[0] = lr
    W0 = np.where(rng.random((d, 1)) < 0.7, rng.normal(size=(d, 1)), 0.0)
    V0 = 0.1 * rng.normal(size=(d, 1))
    order = rng.permutation(n).astype(np.int64)
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    outs, models = [], []
    for threaded in (False, True):
        W, S1 = W0.copy(), V0.copy()
        b, bs1, bs2 = np.array([0.1]), np.array([0.2]), np.array([0.2])
        R = _epoch.work_arrays(_epoch.MOMENTUM, d, 1, X.nnz)
        if threaded:
            out = _epoch._run_epoch_momentum_threads(loss, indptr, indices, X.data, y, np.ones(n), order, batch, W, S1,
                                                     b, bs1, bs2, h, 0.0, l2, True, 5, R,
                                                     _epoch.thread_split(X.indptr, X.indices, d))
        else:
            out = _epoch.run_epoch(_epoch.MOMENTUM, loss, indptr, indices, X.data, y, np.ones(n), order, batch, W, S1,
                                   S1, b, bs1, bs2, h, 0.0, l2, False, True, np.full(d, 5), 5, R, True,
                                   np.empty(0, np.int64))
        outs.append(out)
        models.append((W, S1, b, bs1))
    (t1, loss1, st1), (t2, loss2, st2) = outs
    assert t1 == t2 and st1 == st2 == _epoch.WRITTEN
    assert_allclose(loss2, loss1, rtol=1e-12)
    for a, c in zip(*models):
        assert_allclose(c, a, rtol=1e-10, atol=1e-13)
    assert np.abs(models[0][0] - W0).max() > 1e-3  # it trained



@pytest.mark.skipif(not _base._two_threads(), reason="the two-thread epoch needs two Numba threads and two CPUs")
@pytest.mark.parametrize("name", ["momentum", "adagrad"])
def test_fits_on_two_threads_equal_one_thread(name, monkeypatch):
    """A fit large enough for the two-thread epochs (262,144 stored entries, 16,384 features)
    takes them and gives the one-thread fit's model to rounding (float64: rtol 1e-10)."""
    X, y = make_zipf_classification(6000, 20_000, random_state=1)
    assert X.nnz >= _epoch.THREADS_MIN_ENTRIES and X.shape[1] >= _epoch.THREADS_MIN_FEATURES
    est = LogisticRegression(optimizer=name, max_iter=2, tol=None, random_state=0)
    kind = {"momentum": _epoch.MOMENTUM, "adagrad": _epoch.ADAGRAD}[name]
    args = (kind, 1, 0.0, est.alpha, False, X.nnz, X.shape[1], X.shape[0], est.batch_size)
    assert (_epoch.momentum_on_two_threads(args[0], args[1], est._h(), *args[2:]) if name == "momentum"
            else _epoch.on_two_threads(*args))
    two = clone(est).fit(X, y)
    monkeypatch.setattr(_base, "_two_threads", lambda: False)
    one = clone(est).fit(X, y)
    assert_allclose(two.coef_, one.coef_, rtol=1e-10, atol=1e-13)
    assert_allclose(two.intercept_, one.intercept_, rtol=1e-10, atol=1e-13)
    assert_allclose(two.loss_curve_, one.loss_curve_, rtol=1e-10)

def test_momentum_on_two_threads():
    """Which Momentum epochs run on two threads: the additive epoch on records (one output, no
    weight decay, l2 or no penalty, skip mode, batch > 1) of a large enough fit."""
    on = _epoch.momentum_on_two_threads
    mom, nnz = _epoch.MOMENTUM, 5_000_000
    h = LogisticRegression(optimizer="momentum")._h()
    assert on(mom, 1, h, 0.0, 1e-5, False, nnz, 100_000, 100_000, 32)
    assert on(mom, 1, h, 0.0, 0.0, False, nnz, 100_000, 100_000, 32)  # no penalty
    assert not on(mom, 1, h, 0.0, 1e-5, False, nnz, 100_000, 100_000, 1)  # batch 1: updated in place
    assert not on(mom, 1, h, 1e-5, 1e-5, False, nnz, 100_000, 100_000, 32)  # l1: a proximal step
    assert not on(mom, 1, h, 0.0, 1e-5, True, nnz, 100_000, 100_000, 32)  # exact mode
    assert not on(mom, 3, h, 0.0, 1e-5, False, nnz, 100_000, 100_000, 32)  # several outputs
    assert not on(mom, 1, h, 0.0, 1e-5, False, 200_000, 100_000, 4_000, 32)  # too few entries
    assert not on(mom, 1, h, 0.0, 1e-5, False, nnz, 2**23, 100_000, 32)  # fewer entries than features
    assert not on(_epoch.SGD, 1, h, 0.0, 1e-5, False, nnz, 100_000, 100_000, 32)
    hw = h.copy()
    hw[_epoch.WD] = 1e-4  # (optim.Momentum's weight decay; the estimators leave it 0)
    assert not on(mom, 1, hw, 0.0, 1e-5, False, nnz, 100_000, 100_000, 32)  # weight decay: not linear

@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("l1,l2,batch", [(0.0, 1e-3, 7), (0.01, 0.02, 7), (0.0, 1e-3, 1)])
def test_adam_wide_records_equal_narrow_ones(threaded, l1, l2, batch, monkeypatch):
    """From WIDE_RECORDS records, Adam's are padded to 64 bytes (8 columns of which the
    first 5 are used, as in the 40-byte records): the same model, state, steps and loss, bit
    for bit, on one thread and two."""
    if threaded and numba.get_num_threads() < 2:
        pytest.skip("the two-thread epoch needs two Numba threads")
    rng = np.random.default_rng(2)
    n, d = 80, 40
    X = sp.random(n, d, density=0.15, random_state=4, format="csr")
    X.sort_indices()
    y = rng.choice([-1.0, 1.0], n)
    h = LogisticRegression(optimizer="adam")._h()
    h[0] = 0.05
    W0 = np.where(rng.random((d, 1)) < 0.7, rng.normal(size=(d, 1)), 0.0)
    S0 = rng.random((d, 2)) + 0.01
    order = rng.permutation(n).astype(np.int64)
    assert _epoch.work_arrays(_epoch.ADAM, d, 1, d).shape == (d, 5)
    out5, narrow = _records_run(threaded, _epoch.ADAM, _epoch.LOG, X, y, order, batch, h, l1, l2, W0, S0)
    monkeypatch.setattr(_epoch, "WIDE_RECORDS", d)
    assert _epoch.work_arrays(_epoch.ADAM, d, 1, d).shape == (d, 8)
    out8, wide = _records_run(threaded, _epoch.ADAM, _epoch.LOG, X, y, order, batch, h, l1, l2, W0, S0)
    assert out8 == out5
    for a, c in zip(narrow, wide):
        assert_array_equal(c, a)
    assert np.abs(wide[0] - W0).max() > 1e-3  # it trained


@pytest.mark.parametrize("name,how", [("momentum", "fit"), ("adam", "fit"), ("momentum", "partial_fit"),
                                      ("sgd", "partial_fit"), ("adagrad", "partial_fit")])
def test_wide_records_give_the_same_model(name, how, monkeypatch):
    """From WIDE_RECORDS records, Adam's are padded to 64 bytes and Momentum's (and SGD's compact
    ones) to 32: the same estimator, bit for bit, in a fit and in partial_fit calls on fewer
    stored entries than features (compact records)."""
    X, w = _sparse_problem(n=120, d=1000, seed=5, density=0.02)
    y = np.where(X @ w > 0, 1, 0)
    Xs = sp.csr_matrix(X)

    def train():
        est = LogisticRegression(optimizer=name, batch_size=4, max_iter=3, tol=None, alpha=1e-3, random_state=0)
        if how == "fit":
            return est.fit(Xs, y)
        for lo in range(0, 120, 20):
            est.partial_fit(Xs[lo:lo + 20], y[lo:lo + 20], classes=[0, 1])
        return est

    assert Xs[:20].nnz < Xs.shape[1] <= Xs.nnz
    narrow = train()
    monkeypatch.setattr(_epoch, "WIDE_RECORDS", 1)
    wide = train()
    assert_array_equal(wide.coef_, narrow.coef_)
    assert_array_equal(wide.intercept_, narrow.intercept_)
    assert np.abs(narrow.coef_).max() > 1e-3  # it trained


@pytest.mark.parametrize("kind,width", [(_epoch.ADAGRAD, 4), (_epoch.RMSPROP, 4), (_epoch.ADAM, 5),
                                        (_epoch.MOMENTUM, 3), (_epoch.SGD, 3)])
@pytest.mark.parametrize("n_features,nnz", [(3, 2), (1000, 999), (2**18, 2**18), (2**18 + 5, 2**18 - 1)])
def test_records_start_a_cache_line(kind, width, n_features, nnz):
    """The records work_arrays allocates are C-contiguous, one per feature or per stored entry
    where there are fewer, of 32 bytes (AdaGrad, RMSProp), 40 (Adam), 24 (Momentum; SGD's
    compact ones), and from WIDE_RECORDS records 64 (Adam) and 32 (Momentum, SGD); they start a
    64-byte cache line (so that records of 32 or 64 bytes never straddle two)."""
    R = _epoch.work_arrays(kind, n_features, 1, nnz)
    if kind == _epoch.SGD and nnz >= n_features:  # (SGD's fit reads its contiguous weights)
        assert R.size == 0
        return
    n_records = min(n_features, nnz)
    if n_records >= _epoch.WIDE_RECORDS and kind in (_epoch.ADAM, _epoch.MOMENTUM, _epoch.SGD):
        width = 8 if kind == _epoch.ADAM else 4
    assert R.shape == (n_records, width)
    assert R.flags.c_contiguous and R.dtype == np.float64
    assert R.ctypes.data % 64 == 0

def test_on_two_threads():
    """Which epochs run on two threads: adaptive rules on records, enough stored entries (at
    least one per feature), and a large model or large mini-batches."""
    on = _epoch.on_two_threads
    ada, nnz = _epoch.ADAGRAD, 5_000_000
    assert on(ada, 1, 0.0, 1e-5, False, nnz, 100_000, 100_000, 1)  # large model
    assert on(ada, 1, 0.0, 1e-5, False, nnz, 2048, 100_000, 32)  # 1,600 entries a batch
    assert not on(ada, 1, 0.0, 1e-5, False, nnz, 2048, 100_000, 1)  # 50
    assert not on(ada, 1, 0.0, 1e-5, False, 450_000, 123, 32_561, 32)  # a9a: 442
    assert not on(ada, 1, 0.0, 1e-5, False, 200_000, 100_000, 4_000, 32)  # too few entries
    assert not on(ada, 1, 0.0, 1e-5, False, nnz, 2**23, 100_000, 32)  # fewer entries than features
    assert not on(ada, 3, 0.0, 1e-5, False, nnz, 100_000, 100_000, 32)  # several outputs
    assert not on(_epoch.SGD, 1, 0.0, 1e-5, False, nnz, 100_000, 100_000, 32)  # not on records
    assert not on(ada, 1, 0.0, 0.0, False, nnz, 100_000, 100_000, 32)  # no penalty: not on records
    assert not on(_epoch.ADAM, 1, 0.0, 1e-5, True, nnz, 100_000, 100_000, 32)  # exact replay


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="the two-thread epoch needs two Numba threads")
def test_fit_on_two_threads(monkeypatch):
    """A fit of a large model runs its epochs on two threads (on_two_threads, thread_split once
    for the run) and gives the one-thread fit's model to rounding; so does an estimator
    trained outside the main thread, which stays on one."""
    X, y = make_zipf_classification(5300, _epoch.THREADS_MIN_FEATURES, random_state=0)
    assert X.nnz >= _epoch.THREADS_MIN_ENTRIES
    splits = []
    split = _epoch.thread_split

    def spy(*args):
        splits.append(split(*args))
        return splits[-1]

    monkeypatch.setattr(_epoch, "thread_split", spy)
    kw = dict(optimizer="adagrad", alpha=1e-4, max_iter=2, tol=None, random_state=0)
    two = LogisticRegression(**kw).fit(X, y)
    assert len(splits) == 1 and splits[0].size == X.shape[0] + 1
    monkeypatch.setattr(_epoch, "thread_split", lambda *args: np.empty(0, np.int64))
    one = LogisticRegression(**kw).fit(X, y)
    assert_allclose(two.coef_, one.coef_, rtol=1e-9, atol=1e-13)
    assert_allclose(two.intercept_, one.intercept_, rtol=1e-9)
    assert_allclose(two.loss_curve_, one.loss_curve_, rtol=1e-12)
    # one thread: outside the main thread, with one Numba thread, or on one CPU
    import threading

    from sparseopt.linear_model import _base

    monkeypatch.setattr(_epoch, "thread_split", spy)
    splits.clear()
    models = []
    worker = threading.Thread(target=lambda: models.append(LogisticRegression(**kw).fit(X, y)))
    worker.start()
    worker.join()
    n_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        models.append(LogisticRegression(**kw).fit(X, y))
    finally:
        numba.set_num_threads(n_threads)
    if hasattr(_base.os, "sched_getaffinity"):
        monkeypatch.setattr(_base.os, "sched_getaffinity", lambda pid: {0})
    else:
        monkeypatch.setattr(_base.os, "cpu_count", lambda: 1)
    models.append(LogisticRegression(**kw).fit(X, y))
    assert not splits
    for model in models:
        assert_array_equal(model.coef_, one.coef_)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("l1,l2", [(0.0, 1e-3), (0.0, 30.0), (0.01, 0.02)])
@pytest.mark.parametrize("batch", [1, 3])
def test_compact_records_equal_full_records(name, l1, l2, batch):
    """A call on few stored entries of a wide model (a partial_fit chunk) makes records only for
    the features it meets and catches the others up in blocks of their non-zero weights
    (work_arrays, _catch_up_rest): bit for bit the model, state and steps of the records of
    every feature, also where a factor is not taken by the vectorised loop (eta l2 >= 0.25 with
    l2 = 30) and with an l1 penalty; more features than one block of the catch-up."""
    rng = np.random.default_rng(0)
    d = 3 * _epoch._REST_BLOCK + 5
    X = sp.random(12, d, density=4.0 / d, random_state=1, format="csr")
    y = np.where(rng.random(12) < 0.5, 1.0, -1.0)
    est = LogisticRegression(optimizer=name)
    kind = {"adagrad": _epoch.ADAGRAD, "rmsprop": _epoch.RMSPROP, "adam": _epoch.ADAM}[name]
    h = est._h()
    h[0] = 0.3
    W0 = np.where(rng.random((d, 1)) < 0.5, rng.normal(size=(d, 1)), 0.0)
    S0 = rng.random((d, 2)) + 0.01
    runs = []
    for compact in (True, False):
        W, S1, S2 = W0.copy(), S0[:, :1].copy(), S0[:, 1:].copy()
        b, bs1, bs2, last = np.array([0.1]), np.array([0.2]), np.array([0.3]), np.full(d, 5, dtype=np.int64)
        R = _epoch.work_arrays(kind, d, 1, X.nnz if compact else d)
        assert (R.shape[0] < d) == compact
        order = rng.permutation(12) if compact else runs[0][-1]
        out = _epoch.run_epoch(kind, _epoch.LOG, X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data, y,
                               np.ones(12), order, batch, W, S1, S2, b, bs1, bs2, h, l1, l2, False, True, last, 5,
                               R, False, np.empty(0, np.int64))
        assert out[2] == _epoch.WRITTEN
        runs.append((W, S1, S2, b, bs1, bs2, last, out[0], out[1], order))
    for a, c in zip(runs[0][:-1], runs[1][:-1]):
        assert_array_equal(a, c)
    assert np.all(runs[0][6] == 5)  # an epoch on records neither reads nor writes last


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.0, 1e-3), (0.0, 30.0), (0.01, 0.02)])
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_compact_copies_equal_the_whole_model(name, l1, l2, exact, batch):
    """Several outputs on few stored entries of a wide model (a multinomial partial_fit chunk):
    the general kernel runs on copies of the rows the call meets and the others are caught up at
    the end (the catch-up's blocks over all outputs, exact mode's replay, the scale's folds:
    l2 = 30 shrinks the scale below 1e-9 every few steps) -- bit for bit the kernel on the whole
    model, for every rule, penalty, lazy mode and batch size; last is neither read nor written,
    and a diverging call writes nothing back."""
    rng = np.random.default_rng(5)
    d, K, n = 2 * _epoch._REST_BLOCK + 5, 3, 12
    X = sp.random(n, d, density=4.0 / d, random_state=2, format="csr")
    assert X.nnz < d
    y = rng.integers(0, K, n).astype(np.float64)
    kind = {"sgd": _epoch.SGD, "momentum": _epoch.MOMENTUM, "adagrad": _epoch.ADAGRAD, "rmsprop": _epoch.RMSPROP,
            "adam": _epoch.ADAM}[name]
    h = LogisticRegression(optimizer=name)._h()
    h[0] = 0.3
    W0 = np.where(rng.random((d, K)) < 0.5, rng.normal(size=(d, K)), 0.0)
    S0 = [rng.random((d, K)) + 0.01, rng.random((d, K)) + 0.01]
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    order = rng.permutation(n).astype(np.int64)

    def state():  # aliased as the estimators pass them: no state is W, one state is S1 twice
        W = W0.copy()
        S = [s.copy() for s in S0[:{"sgd": 0, "adam": 2}.get(name, 1)]] or [W]
        return W, S[0], S[-1], np.array([0.1, -0.2, 0.3]), np.full(K, 0.2), np.full(K, 0.3)

    compact, whole = state(), state()
    last = np.full(d, 5, dtype=np.int64)
    args = (kind, _epoch.MULTINOMIAL, indptr, indices, X.data, y, np.ones(n), order, batch)
    nnz_whole = d  # (work_arrays as for data with a stored entry for each row)
    assert _epoch.writes_nothing_on_divergence(kind, K, l1, l2, exact, h, batch, X.nnz, d)
    out_c = _epoch.run_epoch(*args, *compact, h, l1, l2, exact, True, last, 5,
                             _epoch.work_arrays(kind, d, K, X.nnz), True, np.empty(0, np.int64))
    out_w = _epoch._run_epoch_general(*args, *whole, h, l1, l2, exact, True, np.full(d, 5, dtype=np.int64), 5,
                                      _epoch.work_arrays(kind, d, K, nnz_whole), True, np.empty(0))
    assert out_c[2] == out_w[2] == _epoch.WRITTEN
    assert out_c[:2] == out_w[:2]
    for a, c in zip(compact, whole):
        assert_array_equal(a, c)
    assert np.all(last == 5)  # neither read nor written
    assert np.abs(compact[0] - W0).max() > 1e-3  # it trained
    # a diverging call: the weights and state as they were
    W, S1, S2 = (a.copy() for a in compact[:3])
    huge = h.copy()
    huge[0] = 1e300
    out = _epoch.run_epoch(kind, _epoch.MULTINOMIAL, indptr, indices, X.data * 1e300, y, np.ones(n), order, batch,
                           *compact, huge, l1, l2, exact, True, last, 5, _epoch.work_arrays(kind, d, K, X.nnz), True,
                           np.empty(0, np.int64))
    assert out[2] == _epoch.DIVERGED
    for a, c in zip((W, S1, S2), compact[:3]):
        assert_array_equal(a, c)


@pytest.mark.parametrize("kind", [_epoch.ADAGRAD, _epoch.RMSPROP, _epoch.ADAM])
@pytest.mark.parametrize("l1,l2", [(0.0, 1e-3), (0.0, 30.0), (0.01, 0.02)])
@pytest.mark.parametrize("n_blocks", [1, 5])
def test_catch_up_rest_on_threads_equals_one_thread(kind, l1, l2, n_blocks):
    """The catch-up of the weights a call did not meet shares its blocks out among Numba's threads
    from PARALLEL_MIN_SIZE weights: bit for bit the one-thread pass, on one block (fewer blocks
    than threads) and several (with a partial last block), for each rule and penalty."""
    rng = np.random.default_rng(6)
    d = n_blocks * _epoch._REST_BLOCK - 7
    W0 = np.where(rng.random((d, 1)) < 0.3, rng.normal(size=(d, 1)), 0.0)
    S1, S2 = rng.random((d, 1)) * 5, rng.random((d, 1))
    h = LogisticRegression(optimizer={_epoch.ADAGRAD: "adagrad", _epoch.RMSPROP: "rmsprop",
                                      _epoch.ADAM: "adam"}[kind])._h()
    h[0] = 0.3
    h = _epoch._hyper_step(_epoch._hyper(h), kind, 5)  # the hyperparameters at a step (Adam's corrections)
    one, threads = W0.copy(), W0.copy()
    _epoch._catch_up_rest(kind, one, S1, S2, 31, h, l1, l2)
    _epoch._catch_up_rest_threads(kind, threads, S1, S2, 31, h, l1, l2)
    assert_array_equal(one, threads)
    assert np.abs(one - W0).max() > 1e-6


@pytest.mark.parametrize("kind", [_epoch.ADAGRAD, _epoch.RMSPROP, _epoch.ADAM])
@pytest.mark.parametrize("l2,k", [(1e-7, 31), (1e-7, 100000), (1e-3, 31), (30.0, 3)])
def test_catch_up_rest_equals_each_weights_catch_up(kind, l2, k):
    """The blocked catch-up of the weights a call did not meet gives each weight bit for bit
    ``_lag`` with the catch-up parameter of its state (what the records' own catch-up takes):
    where every weight of a block takes the polynomial forms of log1p and exp (small eta l2,
    the usual case: the polynomials alone), where they are mixed (the vectorised select of both
    forms), where a long lag takes exp's tables, and where eta l2 >= 0.25 (one at a time)."""
    rng = np.random.default_rng(8)
    d = 2 * _epoch._REST_BLOCK + 3
    W0 = np.where(rng.random((d, 1)) < 0.3, rng.normal(size=(d, 1)), 0.0)
    S1, S2 = rng.random((d, 1)) * 5 + 1e-3, rng.random((d, 1)) + 1e-3
    h = LogisticRegression(optimizer={_epoch.ADAGRAD: "adagrad", _epoch.RMSPROP: "rmsprop",
                                      _epoch.ADAM: "adam"}[kind])._h()
    h[0] = 0.3
    hh = _epoch._hyper_step(_epoch._hyper(h), kind, 5)
    W = W0.copy()
    _epoch._catch_up_rest(kind, W, S1, S2, k, hh, 0.0, l2)
    ref = W0.copy()
    for j in np.flatnonzero(W0[:, 0]):
        lc = _epoch._lag_param(_epoch.step_size(kind, S1[j, 0], S2[j, 0], hh), l2)
        ref[j, 0] = _epoch._lag(W0[j, 0], lc, 0.0, l2, lc, float(k))
    assert_array_equal(W, ref)
    assert np.abs(W - W0).max() > 0.0


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
@pytest.mark.parametrize("l1,l2", [(0.0, 1e-3), (0.01, 0.02)])
def test_replay_in_blocks_equals_the_replay_of_each_row(name, l1, l2):
    """Exact mode's replay of a call's missed steps on the weights it did not meet (Adam, RMSProp
    with a penalty) runs over blocks of the moving weights, on one thread or Numba's: bit for bit
    the replay of each row (_catch_up_exact), which skips rows of zeros; several blocks, with a
    partial last one."""
    rng = np.random.default_rng(9)
    kind = {"adam": _epoch.ADAM, "rmsprop": _epoch.RMSPROP}[name]
    d, k, t0 = 3 * _epoch._REST_BLOCK - 11, 7, 40
    moving = rng.random((d, 1)) < 0.4
    W0 = np.where(moving, rng.normal(size=(d, 1)), 0.0)
    S10 = np.where(moving, rng.normal(size=(d, 1)) * 0.1, 0.0)
    S20 = np.where(moving, rng.random((d, 1)), 0.0)
    if kind == _epoch.RMSPROP:
        S10 = np.abs(S10)
    h = LogisticRegression(optimizer=name)._h()
    h[0] = 0.05
    hh = _epoch._hyper_step(_epoch._hyper(h), kind, t0 + k)
    assert _epoch._replays_in_blocks(kind, hh, l1, l2)
    T = _epoch._adam_bias_tables(hh, t0, k if kind == _epoch.ADAM else 0)
    runs = []
    for replay in (_epoch._replay_rest, _epoch._replay_rest_threads):
        W, S1 = W0.copy(), S10.copy()
        S2 = S20.copy() if kind == _epoch.ADAM else S1
        replay(kind, W, S1, S2, k, hh, l1, l2, T)
        runs.append((W, S1, S2))
    W, S1 = W0.copy(), S10.copy()
    S2 = S20.copy() if kind == _epoch.ADAM else S1
    for j in np.flatnonzero(moving[:, 0]):
        _epoch._catch_up_exact(kind, W, S1, S2, j, hh, l1, l2, t0, k, t0, T)
    for run in runs:
        for a, c in zip(run, (W, S1, S2)):
            assert_array_equal(a, c)
    assert np.abs(W - W0).max() > 1e-6
    # and the replay as the rule spells it, one zero-gradient step (sparseopt._rules.catch_up, its
    # own bias corrections) and one proximal step with the step size it leaves at a time; here in
    # Python, whose beta2 ** t (C's pow) may differ from Numba's in the last bit: 1e-13 relative
    from sparseopt import _rules

    for j in np.flatnonzero(moving[:, 0])[:300]:
        p, s1, s2 = W0[j, 0], S10[j, 0], S20[j, 0] if kind == _epoch.ADAM else S10[j, 0]
        for s in range(k):
            p, s1, s2 = _rules.catch_up(kind, p, s1, s2, hh, t0 + s, 1)
            if kind == _epoch.ADAM:
                eta = hh[_rules.LR] / (np.sqrt(s2 / (1.0 - hh[_rules.B] ** (t0 + s + 1))) + hh[_rules.EPS])
            else:
                eta = _epoch.step_size(kind, s1, s2, hh)
            p = _epoch.prox_1(p, eta, l1, l2)
        assert_allclose([p, s1], [W[j, 0], S1[j, 0]], rtol=1e-13, atol=0.0)


def test_threads_only_from_the_main_thread(monkeypatch):
    """The kernels may run a pass over all the weights on Numba's threads only when called from
    the main thread: estimators trained in other threads (Dask workers) would otherwise launch
    parallel kernels at once, which aborts the process under Numba's workqueue layer."""
    import threading

    seen = []
    run_epoch = _epoch.run_epoch
    monkeypatch.setattr(_epoch, "run_epoch", lambda *args: (seen.append(args[-2]), run_epoch(*args))[1])
    X, y = make_zipf_classification(20, 300, random_state=0)
    LogisticRegression(optimizer="adagrad").partial_fit(X, y, classes=[-1, 1])
    worker = threading.Thread(target=lambda: LogisticRegression(optimizer="adagrad").partial_fit(X, y, classes=[-1, 1]))
    worker.start()
    worker.join()
    assert seen == [True, False]


@pytest.mark.parametrize("rule", ["momentum", "nesterov", "sgd"])
@pytest.mark.parametrize("l2", [0.0, 1e-3, 30.0])
@pytest.mark.parametrize("batch", [2, 5])
def test_additive_compact_records_equal_full_records(rule, l2, batch):
    """SGD's and Momentum's additive epochs on compact records (a call on fewer stored entries
    than weights) against the same epoch on every weight: bit for bit the model, velocity and
    intercept, with the weights' scale folded in mid-call (l2 = 30: a shrink below 1e-9 every few
    steps), which the compact epoch applies to the weights it did not meet at the end; neither
    reads nor writes last.  Momentum's other epoch is on records of every feature (a work array
    with a row for each); SGD's reads its weights, forced by explicit zeros that make as many
    stored entries as weights (a zero term adds nothing: the same bits)."""
    from sparseopt.optim import SGD, Momentum

    rng = np.random.default_rng(1)
    d = 500
    X = sp.random(40, d, density=3.0 / d, random_state=2, format="csr")
    y = np.where(rng.random(40) < 0.5, 1.0, -1.0)
    if rule == "sgd":
        kind, h = _epoch.SGD, SGD(np.zeros(1), lr=1.0)._h.astype(np.float64)
    else:
        kind, h = _epoch.MOMENTUM, Momentum(np.zeros(1), lr=1.0, momentum=0.9, nesterov=rule == "nesterov")._h
    h = h.astype(np.float64)
    h[0] = 0.3
    W0 = np.where(rng.random((d, 1)) < 0.5, rng.normal(size=(d, 1)), 0.0)
    V0 = rng.normal(size=(d, 1)) * 0.1
    order = rng.permutation(40).astype(np.int64)
    padded = X.tolil()
    padded[0, np.setdiff1d(np.arange(d), X[0].indices)] = 1.0  # then made explicit zeros
    padded = padded.tocsr()
    padded.data[padded.data == 1.0] = 0.0
    runs = []
    for compact in (True, False):
        Xc = X if compact or rule != "sgd" else padded
        assert (Xc.nnz < d) == (compact or rule != "sgd")
        W, S1, b, bs1 = W0.copy(), V0.copy(), np.array([0.1]), np.array([0.2])
        last = np.full(d, 5, dtype=np.int64)
        R = _epoch.work_arrays(kind, d, 1, Xc.nnz if compact else d)
        assert _epoch.writes_nothing_on_divergence(kind, 1, 0.0, l2, False, h, batch, Xc.nnz if compact else d, d) \
            == compact
        out = _epoch.run_epoch(kind, _epoch.LOG, Xc.indptr.astype(np.int64), Xc.indices.astype(np.int64), Xc.data,
                               y, np.ones(40), order, batch, W, S1, S1, b, bs1, bs1, h, 0.0, l2, False, True, last, 5,
                               R, False, np.empty(0, np.int64))
        assert out[2] == _epoch.WRITTEN
        assert np.all(last == 5)  # neither read nor written
        runs.append((W, S1, b, bs1, out[0], out[1]))
    for a, c in zip(*runs):
        assert_array_equal(a, c)
    assert np.abs(runs[0][0] - W0).max() > 1e-3  # it trained


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_compact_records_number_the_features_in_the_order_met(dtype):
    """_compact_records' hash table: each feature gets one record, numbered in the order the
    rows ``order`` meet it, and each stored entry the record of its feature; with features that
    share their hash slot (multiples of a large power of two) and the dtype's extremes."""
    rng = np.random.default_rng(3)
    hi = np.iinfo(dtype).max
    pool = np.unique(np.concatenate([[0, 1, 2, hi - 1, hi], np.arange(1, 40) << 24 if dtype == np.int64
                                     else np.arange(1, 40) << 20, rng.integers(0, hi, 60)])).astype(dtype)
    rows = [np.sort(rng.choice(pool, size=rng.integers(0, 12), replace=False)) for _ in range(30)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(dtype)
    order = rng.permutation(len(rows)).astype(np.int64)
    met = [j for i in order for j in indices[indptr[i]:indptr[i + 1]]]
    expected = list(dict.fromkeys(met))  # distinct features, in the order met
    feat = np.empty(indices.size, dtype=np.int64)
    E = np.full(indices.size, -1, dtype=dtype)
    n_rec = _epoch._compact_records(indptr, indices, order, indices.size, feat, E)
    assert n_rec == len(expected) and len(expected) > 20
    assert_array_equal(feat[:n_rec], expected)
    assert_array_equal(feat[E], indices)


@pytest.mark.parametrize("optimizer, batch_size, then", [
    ("rmsprop", 4, dict(lazy="exact")),  # records, then exact mode's replay of RMSProp's decay
    ("sgd", 4, dict(penalty="l1")),  # SGD's additive epoch (l2 in the scale), then l1's catch-up
    ("sgd", 1, dict(penalty="elasticnet")),
])
def test_epoch_after_one_that_skips_last_sees_every_row_up_to_date(optimizer, batch_size, then):
    """An epoch on records and SGD's additive epoch leave the estimator's per-row steps (last)
    behind, since every row is up to date after them; an epoch that reads them must see them
    refilled: bit for bit the model continued from its exported training state
    (set_training_state refills them).  tests/test_cuda_linear.py: the same for the GPU."""
    X, y = make_zipf_classification(60, 300, random_state=5)
    kw = dict(optimizer=optimizer, alpha=1e-3, batch_size=batch_size, random_state=0)
    first = LogisticRegression(**kw).partial_fit(X[:30], y[:30], classes=[-1, 1])
    assert first.t_ > 1
    ref = LogisticRegression(**kw)
    ref.set_training_state(first.get_training_state())
    models = [m.set_params(**then).partial_fit(X[30:], y[30:]) for m in (first, ref)]
    assert_array_equal(models[0].coef_, models[1].coef_)
    assert_array_equal(models[0].intercept_, models[1].intercept_)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_closed_form_catch_up_equals_the_replay(nesterov):
    """Momentum's k zero-gradient steps, each with the proximal step of a pure l2 penalty, in
    closed form (momentum_prox_k) against the steps replayed one by one (the rule, then prox_1
    with Momentum's step size): float64, within 1e-12 of the scale of weight and velocity (the
    replay's own rounding grows with k), also where c = 1 / (1 + eta l2) is close to the
    momentum a (a naive (c^k - a^k) / (c - a) would cancel there) and where a = 0."""
    from sparseopt import _rules

    rng = np.random.default_rng(5)
    cases = []
    for _ in range(400):
        a = rng.choice([0.0, 0.5, 0.9, 0.99, 0.999])
        lr = 10.0 ** rng.uniform(-4, 0)
        l2 = 10.0 ** rng.uniform(-6, 0)
        cases.append((a, lr, l2, int(rng.integers(1, 400))))
    # c = a exactly or nearly: 1 / (1 + lr l2 / (1 - a)) = a
    cases += [(0.9, 0.1, (1.0 / 0.9 - 1.0) * (1.0 - 0.9) / 0.1 * f, 300) for f in (1.0, 1.0 + 1e-9, 1.0 - 1e-6)]
    for a, lr, l2, k in cases:
        h = np.zeros(_rules.H_SIZE)
        h[_rules.LR], h[_rules.A], h[_rules.B] = lr, a, 1.0 if nesterov else 0.0
        p0, v0 = rng.normal(), rng.normal()
        p, v = _epoch.momentum_prox_k(p0, v0, h, l2, k)
        q, w = p0, v0
        for s in range(k):
            q, w, _ = _rules.catch_up(_rules.MOMENTUM, q, w, 0.0, h, s, 1)
            q = _epoch.prox_1(q, _epoch.step_size(_rules.MOMENTUM, w, 0.0, h), 0.0, l2)
        scale = abs(p0) + abs(v0) / (1.0 - a)
        assert abs(p - q) <= 1e-12 * scale, (a, lr, l2, k)
        assert abs(v - w) <= 1e-12 * abs(v0)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.01, 0.05), (0.0, 0.05)])
def test_kernel_exact_mode_matches_reference(name, l1, l2):
    """lazy='exact': absent features also take the rule's zero-gradient steps."""
    X, w = _sparse_problem(seed=3)
    y = X @ w + 0.1
    W_ref, b_ref = _ref_fit(name, X, y, "squared", 0.02, l1, l2, 3, 2, order_seed=5, exact=True)
    est = _kernel_run(name, X, y, _epoch.SQUARED, 0.02, l1, l2, 3, 2, seed=5, exact=True)
    est.fit(sp.csr_matrix(X), y)
    assert_allclose(est.coef_, W_ref[:, 0], rtol=1e-9, atol=1e-12)
    assert_allclose(est.intercept_, b_ref[0], rtol=1e-9, atol=1e-12)


def test_kernel_multinomial_matches_reference():
    X, _ = _sparse_problem(seed=4)
    y = np.random.RandomState(0).randint(0, 3, len(X)).astype(float)
    W_ref, b_ref = _ref_fit("adagrad", X, y, "multinomial", 0.1, 0.0, 0.01, 5, 2, order_seed=2)
    est = _kernel_run("adagrad", X, y, _epoch.MULTINOMIAL, 0.1, 0.0, 0.01, 5, 2, seed=2)
    est.fit(sp.csr_matrix(X), y.astype(int))
    assert_allclose(est.coef_, W_ref.T, rtol=1e-9, atol=1e-12)
    assert_allclose(est.intercept_, b_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("l1,l2", [(0.0, 0.3), (0.2, 0.0), (0.1, 0.2), (0.0, 0.0)])
@pytest.mark.parametrize("k", [1, 2, 7, 40])
def test_prox_k_equals_k_single_steps(l1, l2, k):
    """The closed form of k proximal steps equals k single steps (rounding: rtol 1e-12)."""
    from numba import njit

    call = njit(lambda w, eta, l1, l2, k: _epoch.prox_k(w, eta, l1, l2, np.log1p(eta * l2), k))
    for w0 in (1.5, -0.7, 0.05, 0.0):
        w = w0
        for _ in range(k):
            w = float(_ref_prox(np.array(w), 0.1, l1, l2))
        assert_allclose(call(w0, 0.1, l1, l2, k), w, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# real data: a9a against scikit-learn's lbfgs at the same objective
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def a9a():
    X, y = load_a9a("train")
    Xt, yt = load_a9a("test")
    alpha = 1e-5
    sk = SkLogistic(C=1.0 / (alpha * X.shape[0]), tol=1e-10, max_iter=5000).fit(X, y)
    ref = LogisticRegression(alpha=alpha).fit(X[:200], y[:200])
    ref.coef_, ref.intercept_ = sk.coef_.copy(), sk.intercept_.copy()
    return X, y, Xt, yt, ref._objective(X, y), sk.score(Xt, yt)


OBJ_TOL = {"sgd": 0.01, "adagrad": 0.01, "momentum": 0.02, "rmsprop": 0.02, "adam": 0.02}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a9a_defaults_reach_lbfgs(a9a, name):
    """Default settings: test accuracy within 0.5 points of lbfgs; training objective
    within 1% (sgd, adagrad) or 2% (others) of lbfgs's optimum (issue #3)."""
    X, y, Xt, yt, f_opt, acc_opt = a9a
    clf = LogisticRegression(optimizer=name, random_state=0).fit(X, y)
    assert abs(clf.score(Xt, yt) - acc_opt) <= 0.005
    f = clf._objective(X, y)
    assert f >= f_opt * (1 - 1e-6)  # lbfgs found the minimum
    assert f <= f_opt * (1 + OBJ_TOL[name])


def test_a9a_adagrad_within_5_epochs(a9a):
    X, y, Xt, yt, f_opt, acc_opt = a9a
    clf = LogisticRegression(optimizer="adagrad", max_iter=5, tol=None, random_state=1).fit(X, y)
    assert clf.n_iter_ == 5
    assert abs(clf.score(Xt, yt) - acc_opt) <= 0.005


def test_a9a_l1_gives_exact_zeros_and_matches_saga(a9a):
    """l1 penalty: exact zeros, objective within 1% of scikit-learn's saga at the same C."""
    X, y = a9a[0][:6000], a9a[1][:6000]  # saga is slow: a subset
    alpha = 2e-4
    clf = LogisticRegression(penalty="l1", alpha=alpha, max_iter=30, random_state=0).fit(X, y)
    X32 = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)), shape=X.shape)
    with warnings.catch_warnings():  # scikit-learn >= 1.8 deprecates penalty= in favour of l1_ratio=
        warnings.simplefilter("ignore")
        sk = SkLogistic(penalty="l1", solver="saga", C=1 / (alpha * X.shape[0]), tol=1e-6, max_iter=1000)
        sk.fit(X32, y)
    ref = clone(clf).fit(X[:200], y[:200])
    ref.coef_, ref.intercept_ = sk.coef_, sk.intercept_
    assert np.sum(clf.coef_ == 0) >= 5
    assert clf._objective(X, y) <= ref._objective(X, y) * 1.01


# --------------------------------------------------------------------------
# multinomial and regression
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    alpha = 1e-4
    sk = SkLogistic(C=1 / (alpha * len(ytr)), max_iter=5000).fit(Xtr, ytr)
    return Xtr, Xte, ytr, yte, alpha, sk.score(Xte, yte)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_digits_multinomial_accuracy(digits, name):
    Xtr, Xte, ytr, yte, alpha, acc = digits
    clf = LogisticRegression(optimizer=name, alpha=alpha, max_iter=30, random_state=0).fit(Xtr, ytr)
    assert clf.coef_.shape == (10, 64)
    assert abs(clf.score(Xte, yte) - acc) <= 0.01
    proba = clf.predict_proba(Xte)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert_allclose(np.log(proba), clf.predict_log_proba(Xte), rtol=1e-9, atol=1e-12)
    assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(Xte))


REG_LR = {"sgd": None, "momentum": None, "adagrad": 5.0, "rmsprop": 0.1, "adam": 0.3}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_diabetes_r2_matches_ridge(name):
    """R^2 within 0.01 of Ridge(alpha * n) on standardised diabetes.  The targets are in
    the hundreds, so the adaptive rules get a learning rate in those units and the
    intercept starts at the mean target."""
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    alpha = 1e-3
    r2 = Ridge(alpha=alpha * len(y)).fit(X, y).score(X, y)
    reg = LinearRegression(optimizer=name, alpha=alpha, learning_rate=REG_LR[name], max_iter=100, tol=None,
                           random_state=0).fit(X, y, intercept_init=y.mean())
    assert abs(reg.score(X, y) - r2) <= 0.01


def _synthetic_sparse_regression(n=2000, d=300, seed=0):
    rng = np.random.RandomState(seed)
    X = sp.random(n, d, density=0.03, random_state=rng, format="csr")
    X.data = rng.randn(X.nnz)
    w = rng.randn(d)
    y = X @ w + 0.1 * rng.randn(n)
    return X, y


def test_synthetic_sparse_regression_matches_ridge():
    X, y = _synthetic_sparse_regression()
    alpha = 1e-3
    ridge = Ridge(alpha=alpha * X.shape[0], solver="sparse_cg", tol=1e-10).fit(X, y)
    reg = LinearRegression(optimizer="adagrad", alpha=alpha, max_iter=60, tol=None, random_state=0).fit(X, y)
    assert abs(reg.score(X, y) - ridge.score(X, y)) <= 0.01
    # the minimiser of SPEC.md's objective, not of a frequency-weighted variant
    ref = clone(reg).fit(X[:50], y[:50])
    ref.coef_, ref.intercept_ = ridge.coef_, ridge.intercept_
    assert reg._objective(X, y) <= ref._objective(X, y) * 1.02


@pytest.mark.parametrize("penalty,sk_est", [("l1", Lasso), ("elasticnet", ElasticNet)])
def test_lasso_and_elasticnet_match_sklearn(penalty, sk_est):
    """Same objective as scikit-learn's Lasso / ElasticNet: coefficients within 2e-2
    (stochastic optimiser with a decaying rate) and the same zero pattern on clear cases."""
    rng = np.random.RandomState(0)
    X = rng.randn(400, 8)
    w = np.array([2.0, -1.0, 0.5, 0, 0, 0, 0, 0])
    y = X @ w + 0.05 * rng.randn(400)
    alpha = 0.05
    sk = sk_est(alpha=alpha, **({"l1_ratio": 0.5} if penalty == "elasticnet" else {})).fit(X, y)
    reg = LinearRegression(optimizer="adagrad", penalty=penalty, alpha=alpha, l1_ratio=0.5, max_iter=80,
                           tol=None, random_state=0).fit(X, y)
    assert_allclose(reg.coef_, sk.coef_, atol=2e-2)
    assert np.all(reg.coef_[3:] == 0.0)  # exact zeros
    assert_allclose(reg.intercept_, sk.intercept_, atol=2e-2)


# --------------------------------------------------------------------------
# input forms and scikit-learn integration
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("penalty", ["l2", "elasticnet"])
def test_dense_equals_csr(name, penalty):
    X, y = load_a9a("train")
    X, y = X[:3000], y[:3000]
    kw = dict(optimizer=name, penalty=penalty, alpha=1e-4, max_iter=2, random_state=0)
    a = LogisticRegression(**kw).fit(X, y)
    b = LogisticRegression(**kw).fit(X.toarray(), y)
    c = LogisticRegression(**kw).fit(sp.csc_matrix(X), y)
    assert_array_equal(a.coef_, b.coef_)
    assert_array_equal(a.intercept_, b.intercept_)
    assert_array_equal(a.coef_, c.coef_)


def test_int64_indices_and_unsorted_duplicates_are_handled():
    X, y = load_a9a("train")
    X, y = X[:500], y[:500]
    a = LogisticRegression(random_state=0, max_iter=2).fit(X, y)
    X64 = X.copy()
    X64.indices = X64.indices.astype(np.int64)
    X64.indptr = X64.indptr.astype(np.int64)
    b = LogisticRegression(random_state=0, max_iter=2).fit(X64, y)
    assert_array_equal(a.coef_, b.coef_)
    # a row holding feature 0 twice (0.5 + 0.5) equals one entry of 1.0
    Xd = sp.csr_matrix((np.array([0.5, 0.5, 1.0]), np.array([0, 0, 1]), np.array([0, 3])), shape=(1, 2))
    Xs = sp.csr_matrix(np.array([[1.0, 1.0]]))
    Xd_data = Xd.data.copy()
    r1 = LinearRegression(random_state=0, max_iter=3, tol=None).fit(sp.vstack([Xd] * 4).tocsr(), np.ones(4))
    r2 = LinearRegression(random_state=0, max_iter=3, tol=None).fit(sp.vstack([Xs] * 4).tocsr(), np.ones(4))
    assert_allclose(r1.coef_, r2.coef_, rtol=1e-12)
    assert_array_equal(Xd.data, Xd_data)


def test_pipelines_on_sms_spam():
    texts, y = load_sms_spam()
    tr, te, ytr, yte = train_test_split(texts, y, test_size=0.25, random_state=0, stratify=y)
    for vec in (HashingVectorizer(n_features=2**16, alternate_sign=False), TfidfVectorizer()):
        pipe = make_pipeline(vec, LogisticRegression(random_state=0)).fit(tr, ytr)
        assert pipe.score(te, yte) > 0.95


def test_grid_search_and_clone():
    X, y = load_a9a("train")
    X, y = X[:2000], y[:2000]
    gs = GridSearchCV(LogisticRegression(random_state=0, max_iter=3),
                      {"optimizer": ["adagrad", "adam"], "alpha": [1e-5, 1e-2]}, cv=3).fit(X, y)
    assert gs.best_score_ > 0.8
    assert hasattr(gs.best_estimator_, "coef_")
    c = clone(gs.best_estimator_)
    assert c.get_params() == gs.best_estimator_.get_params()
    assert not hasattr(c, "coef_")


def test_pickle_roundtrip_and_continued_training(tmp_path):
    X, y = load_a9a("train")
    X, y = X[:3000], y[:3000]
    for est in (LogisticRegression(optimizer="adam", random_state=0, max_iter=2),
                LinearRegression(optimizer="momentum", random_state=0, max_iter=2)):
        est.fit(X, y)
        path = tmp_path / "model.joblib"
        joblib.dump(est, path)
        other = joblib.load(path)
        assert_array_equal(other.predict(X), est.predict(X))
        # optimizer state travels too: one more partial_fit epoch stays identical
        est.partial_fit(X, y)
        other.partial_fit(X, y)
        assert_array_equal(other.coef_, est.coef_)
        other2 = pickle.loads(pickle.dumps(est))
        assert_array_equal(other2.coef_, est.coef_)


def test_partial_fit_streaming(a9a):
    X, y, Xt, yt, _, acc = a9a
    clf = LogisticRegression(optimizer="adagrad", random_state=0)
    for epoch in range(3):
        for start in range(0, X.shape[0], 4000):
            clf.partial_fit(X[start:start + 4000], y[start:start + 4000], classes=[-1.0, 1.0])
    assert clf.n_iter_ == 1
    assert abs(clf.score(Xt, yt) - acc) <= 0.01
    reg = LinearRegression()
    reg.partial_fit(X[:100], y[:100])
    reg.partial_fit(X[100:200], y[100:200])
    assert reg.t_ == 8


def test_warm_start_continues_and_early_stopping_stops(a9a):
    X, y = a9a[0][:5000], a9a[1][:5000]
    clf = LogisticRegression(random_state=0, max_iter=2, warm_start=True).fit(X, y)
    coef = clf.coef_.copy()
    clf.fit(X, y)
    assert not np.array_equal(coef, clf.coef_)
    es = LogisticRegression(random_state=0, max_iter=200, early_stopping=True, n_iter_no_change=2).fit(X, y)
    assert es.n_iter_ < 200


def test_sample_weight_and_class_weight():
    X, y = load_a9a("train")
    X, y = X[:2000], y[:2000]
    sw = np.where(y > 0, 3.0, 1.0)
    a = LogisticRegression(random_state=0, max_iter=2).fit(X, y, sample_weight=sw)
    b = LogisticRegression(random_state=0, max_iter=2, class_weight={1.0: 3.0, -1.0: 1.0}).fit(X, y)
    assert_allclose(a.coef_, b.coef_, rtol=1e-12)
    # integer weights as repetitions: same objective (stochastic path differs)
    c = LogisticRegression(random_state=0, max_iter=2).fit(X, y)
    assert c.predict(X).mean() < a.predict(X).mean()
    # uniform weights of any scale change nothing
    d = LogisticRegression(random_state=0, max_iter=2).fit(X, y, sample_weight=np.full(len(y), 7.0))
    assert_allclose(c.coef_, d.coef_, rtol=1e-12)


def test_optimizer_params_and_instances():
    X, y = load_a9a("train")
    X, y = X[:2000], y[:2000]
    a = LogisticRegression(optimizer="momentum", optimizer_params={"momentum": 0.5, "nesterov": True},
                           random_state=0, max_iter=2).fit(X, y)
    b = LogisticRegression(optimizer=optim.Momentum(np.zeros(1), momentum=0.5, nesterov=True),
                           random_state=0, max_iter=2).fit(X, y)
    assert_array_equal(a.coef_, b.coef_)
    c = LogisticRegression(optimizer="momentum", random_state=0, max_iter=2).fit(X, y)
    assert not np.array_equal(a.coef_, c.coef_)


def test_verbose_prints_epochs(capsys):
    X, y = load_a9a("train")
    LogisticRegression(verbose=1, max_iter=2, random_state=0).fit(X[:500], y[:500])
    out = capsys.readouterr().out
    assert out.count("Epoch") == 2 and "loss" in out


def test_convergence_warning_when_max_iter_reached():
    X, y = load_a9a("train")
    with pytest.warns(ConvergenceWarning):
        LogisticRegression(max_iter=2, random_state=0).fit(X[:500], y[:500])


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


@pytest.fixture
def small():
    X, y = load_a9a("train")
    return X[:300], y[:300]


def test_bad_input_errors(small):
    X, y = small
    clf = LogisticRegression(max_iter=1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(X, y[:-1])
    Xn = X.toarray()
    Xn[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(Xn, y)
    with pytest.raises(ValueError, match="2 classes"):
        clf.fit(X, np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="Negative"):
        clf.fit(X, y, sample_weight=-np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        LogisticRegression(optimizer="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="momentum"):
        LogisticRegression(optimizer="momentum", optimizer_params={"momentum": 1.5}).fit(X, y)
    with pytest.raises(ValueError, match="learning_rate"):
        LogisticRegression(optimizer_params={"lr": 0.1}).fit(X, y)
    with pytest.raises(ValueError, match="penalty"):
        LogisticRegression(penalty="l3").fit(X, y)
    with pytest.raises(ValueError, match="alpha"):
        LogisticRegression(alpha=-1).fit(X, y)
    with pytest.raises(ValueError, match="batch_size"):
        LogisticRegression(batch_size=0).fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, np.linspace(0, 1, X.shape[0]))
    with pytest.raises(NotFittedError):
        LogisticRegression().predict(X)


def test_partial_fit_checks_later_labels_against_the_classes(monkeypatch):
    """After a first call whose classes are class labels (integers, strings, integral floats), later
    calls skip scikit-learn's type_of_target and check each label against classes_ (the same
    errors); classes that are not plain labels (non-integral floats) keep the full check."""
    from sparseopt.linear_model import _estimators

    calls = []
    check = _estimators.check_classification_targets
    monkeypatch.setattr(_estimators, "check_classification_targets", lambda y: (calls.append(1), check(y)))
    X, y = make_zipf_classification(40, 300, random_state=0)
    labels = np.where(y > 0, "spam", "ham")
    for classes, targets, skipped in [([-1, 1], y.astype(int), True), (["ham", "spam"], labels, True),
                                      ([-1.0, 1.0], y, True), ([0.5, 1.0], np.where(y > 0, 1.0, 0.5), False)]:
        calls.clear()
        clf = LogisticRegression(random_state=0)
        if skipped:
            clf.partial_fit(X[:20], targets[:20], classes=classes).partial_fit(X[20:], targets[20:])
            assert len(calls) == 1  # the first call only
            bad = targets[20:].copy()
            bad[3] = {"i": 7, "U": "eggs", "f": 7.0}[bad.dtype.kind]
            with pytest.raises(ValueError, match="not in classes"):
                clf.partial_fit(X[20:], bad)
            if bad.dtype.kind == "i":  # labels of another kind: the full check
                with pytest.raises(ValueError, match="Unknown label type"):
                    clf.partial_fit(X[20:], np.linspace(-1, 1, 20))
        else:
            clf.partial_fit(X[:20], np.ones(20), classes=classes)  # one class seen: 'binary'
            with pytest.raises(ValueError, match="Unknown label type"):
                clf.partial_fit(X[20:], targets[20:])
    assert clf.t_ > 0


@pytest.mark.parametrize("Est", [LogisticRegression, LinearRegression])
def test_partial_fit_shortcut_for_ready_chunks_keeps_the_checks(Est):
    """A later partial_fit call on a chunk already as validate_data would return it (CSR float64,
    the model's width, finite) skips scikit-learn's checks; every chunk that is not still gets
    them, with their errors, and the model is left unchanged."""
    X, y = make_zipf_classification(60, 300, random_state=1)
    est = Est(random_state=0)
    fit = (lambda *a: est.partial_fit(*a, classes=[-1.0, 1.0])) if Est is LogisticRegression else est.partial_fit
    fit(X[:20], y[:20])
    shortcut = est.partial_fit(X[20:40], y[20:40]).coef_.copy()
    ref = Est(random_state=0)
    (ref.partial_fit(X[:20], y[:20], classes=[-1.0, 1.0]) if Est is LogisticRegression else ref.partial_fit(X[:20], y[:20]))
    assert_array_equal(shortcut, ref.partial_fit(X[20:40].toarray(), list(y[20:40])).coef_)  # the checked path
    coef = est.coef_.copy()
    bad = X[40:].copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(bad, y[40:])
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[40:, :200], y[40:])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.partial_fit(X[40:], y[41:])
    y_nan = y[40:].copy()
    y_nan[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(X[40:], y_nan)
    assert_array_equal(est.coef_, coef)


def test_bad_input_leaves_model_unchanged(small):
    X, y = small
    clf = LogisticRegression(max_iter=1, random_state=0).fit(X, y)
    coef, t = clf.coef_.copy(), clf.t_
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :50])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :50], y)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, np.where(y > 0, 2.0, -1.0))
    with pytest.raises(ValueError, match="Negative"):
        clf.partial_fit(X, y, sample_weight=-np.ones(len(y)))
    Xn = X.toarray()
    Xn[0, 0] = np.inf
    with pytest.raises(ValueError):
        clf.partial_fit(Xn, y)
    assert_array_equal(clf.coef_, coef)
    assert clf.t_ == t
    fresh = LogisticRegression()
    with pytest.raises(ValueError, match="classes must be passed"):
        fresh.partial_fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[-1.0, 1.0, 2.0])


# --------------------------------------------------------------------------
# failing calls change nothing; model files (adversarial inputs)
# --------------------------------------------------------------------------
def _tiny(n=24, d=5, seed=0):
    rng = np.random.RandomState(seed)
    return sp.random(n, d, density=0.6, random_state=seed, format="csr"), rng.randint(0, 3, n)


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("n_classes", [3, 2])
@pytest.mark.parametrize("call", ["fit_new_data_bad_weights", "fit_bad_optimizer_params", "fit_diverges",
                                  "warm_fit_diverges", "partial_fit_diverges", "set_state_t_overflows"])
def test_failing_call_leaves_fitted_estimator_unchanged(call, n_classes):
    # each call used to fail after changing n_features_in_ / classes_ / the weights or the optimizer state;
    # a binary classifier's coef_ (a view of the model) used to keep the diverged weights
    X, y = _tiny()
    y = y % n_classes
    kw = dict(optimizer="adam", max_iter=2, tol=None, random_state=0, warm_start=call == "warm_fit_diverges")
    clf = LogisticRegression(**kw).fit(X, y)
    before, n_iter, curve = clf.get_training_state(), clf.n_iter_, list(clf.loss_curve_)
    coef, intercept = clf.coef_.copy(), clf.intercept_.copy()
    huge = dict(learning_rate=1e300)
    with pytest.raises((ValueError, FloatingPointError)):
        if call == "fit_new_data_bad_weights":
            clf.fit(X[:, :3], y % 2, sample_weight=np.ones(3))
        elif call == "fit_bad_optimizer_params":
            clf.set_params(optimizer_params={"beta1": 5.0}).fit(X[:, :3], y)
        elif call == "set_state_t_overflows":
            clf.set_training_state({**before, "t": 2**70})
        else:
            clf.set_params(**huge)
            (clf.partial_fit if call == "partial_fit_diverges" else clf.fit)(X * 1e300, y)
    clf.set_params(**kw, optimizer_params=None, learning_rate=None)
    _assert_same_state(clf.get_training_state(), before)
    assert clf.n_iter_ == n_iter and clf.loss_curve_ == curve and clf.n_features_in_ == X.shape[1]
    assert_array_equal(clf.coef_, coef)
    assert_array_equal(clf.intercept_, intercept)
    # and training continues as it would have without the failed call
    ref = LogisticRegression(**kw).fit(X, y).partial_fit(X, y)
    assert_array_equal(clf.partial_fit(X, y).coef_, ref.coef_)


@pytest.mark.parametrize("optimizer", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("penalty,n_classes,n_features", [
    ("l2", 2, 100),  # on records
    (None, 2, 100), ("l2", 3, 100),  # the general kernel, in place
    ("l2", 3, 5000),  # compact copies of the rows met
])
def test_overflowing_optimizer_state_is_divergence(optimizer, penalty, n_classes, n_features):
    """Features of ~1e200 overflow the squared-gradient accumulators (``g^2 = inf``) at a usual
    learning rate, while the weights stay finite (their step size ``lr / inf`` is 0): a model
    that can no longer train.  fit raises as for non-finite weights, on every path, and a failed
    partial_fit leaves the model and state as they were."""
    X, y = make_zipf_classification(200, n_features, random_state=0)
    if n_classes > 2:
        y = np.arange(len(y)) % n_classes
    kw = dict(optimizer=optimizer, penalty=penalty, max_iter=2, tol=None, random_state=0)
    with pytest.raises(FloatingPointError, match="optimizer state"):
        LogisticRegression(**kw).fit(X * 1e200, y)
    clf = LogisticRegression(**kw).fit(X, y)
    before = clf.get_training_state()
    # labels the model gets wrong: those it gets right at margins of ~1e200 have gradient 0
    wrong = clf.classes_[(np.searchsorted(clf.classes_, y[:20]) + 1) % clf.classes_.size]
    with pytest.raises(FloatingPointError, match="optimizer state"):
        clf.partial_fit(X[:20] * 1e200, wrong)
    _assert_same_state(clf.get_training_state(), before)


@pytest.mark.parametrize("assigned", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("optimizer,penalty,batch_size", [
    ("adagrad", "l2", 32), ("rmsprop", "l2", 32), ("adam", "elasticnet", 32),  # on records
    ("momentum", "l2", 32), ("sgd", "l2", 32), ("sgd", None, 32),  # on compact records, the scale's folds kept
    ("sgd", None, 1), ("momentum", "l1", 32), ("adam", None, 32),  # on compact copies of the rows met
    ("sgd", "l2", 1), ("momentum", "l2", 1),  # the same, the scale's folds kept
])
def test_diverging_partial_fit_on_a_wide_model_leaves_it_unchanged(optimizer, penalty, batch_size, n_classes,
                                                                    assigned, monkeypatch):
    """A small chunk of a wide model that diverges: the weights (also where an assigned coef_ had
    been copied into them), optimizer state, steps and coef_ (a view of the model) are as before
    the call, with one output or several.  Such a call copies nothing first (a copy of the model
    and its state costs milliseconds per call at 2**20 features): it runs on records, compact
    records or compact copies of the rows it meets, and writes nothing back when it diverges.
    Only taking an assigned coef_ copies the model."""
    from sparseopt.linear_model import _base

    X, y = make_zipf_classification(200, 20000, random_state=0)
    if n_classes > 2:
        y = np.arange(len(y)) % n_classes
    kw = dict(optimizer=optimizer, penalty=penalty, random_state=0, batch_size=batch_size)
    clf = LogisticRegression(**kw).partial_fit(X[:100], y[:100], classes=np.unique(y))
    view = clf.coef_
    coef, before = view.copy(), clf.get_training_state()
    user_coef = np.full_like(coef, 0.5)
    if assigned:
        clf.coef_ = user_coef
    copies = []
    protect = _base._Undo.protect
    monkeypatch.setattr(_base._Undo, "protect", lambda undo: (copies.append(1), protect(undo))[1])
    clf.set_params(learning_rate=1e300)
    with pytest.raises(FloatingPointError, match="diverged"):
        clf.partial_fit(X[100:110] * 1e300, y[100:110])
    assert bool(copies) == assigned
    assert not hasattr(clf, "_undo")
    assert_array_equal(view, coef)  # the model, in place
    if assigned:
        assert clf.coef_ is user_coef  # still to be taken by the next call
        clf.coef_ = view
    clf.set_params(learning_rate=None)
    _assert_same_state(clf.get_training_state(), before)
    # and training goes on as it would have without the failed call
    ref = LogisticRegression(**kw).partial_fit(X[:100], y[:100], classes=np.unique(y))
    assert_array_equal(clf.partial_fit(X[110:], y[110:]).coef_, ref.partial_fit(X[110:], y[110:]).coef_)


@pytest.mark.parametrize("optimizer,penalty,lazy,batch_size,alpha", [
    ("sgd", "l2", "skip", 1, 1e-4), ("sgd", "l2", "skip", 1, 5.0), ("momentum", "l2", "skip", 1, 5.0),
    ("momentum", None, "skip", 1, 1e-4), ("sgd", "l1", "skip", 5, 1e-4), ("momentum", "l1", "skip", 5, 1e-4),
    ("momentum", "elasticnet", "exact", 5, 1e-4), ("adam", "l2", "exact", 5, 1e-4), ("rmsprop", "l2", "exact", 1, 1e-4),
    ("rmsprop", None, "skip", 5, 1e-4), ("adagrad", None, "exact", 1, 1e-4), ("momentum", "l2", "exact", 3, 1e-4),
])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_partial_fit_on_compact_copies_equals_the_kernel_on_the_whole_model(optimizer, penalty, lazy, batch_size,
                                                                            alpha, n_classes, monkeypatch):
    """A partial_fit chunk with fewer stored entries than weight rows, on a path without records
    (batch 1, the l1 catch-up, exact mode's replay, no penalty, several outputs), runs the general
    kernel on compact copies of the rows it meets: bit for bit the kernel run in place on the whole
    model, call after call, also where a strong l2 shrink folds the weights' common scale into
    them mid-call (alpha = 5: below 1e-9 every few steps), which the compact call applies to the
    rows it did not meet at the end."""
    X, y = make_zipf_classification(40, 20000, random_state=4)
    y = np.arange(len(y)) % n_classes
    kw = dict(optimizer=optimizer, penalty=penalty, lazy=lazy, random_state=0, batch_size=batch_size, alpha=alpha)
    if alpha > 1.0:
        kw["learning_rate"] = 1.0
    run_epoch = _epoch.run_epoch
    compact = []

    def on_copies(*args):
        kind, nnz, K, h, l1, l2, exact = args[0], args[2][-1], args[9].shape[1], args[15], args[16], args[17], args[18]
        compact.append(_epoch.writes_nothing_on_divergence(kind, K, l1, l2, exact, h, batch_size, nnz, X.shape[1])
                       and not _epoch.on_records(kind, K, l1, l2, exact))
        return run_epoch(*args)

    def whole(*args):
        return _epoch._run_epoch_general(*args[:-1], np.empty(0))  # (P: not on records)

    models = []
    for kernel in (on_copies, whole):
        monkeypatch.setattr(_epoch, "run_epoch", kernel)
        clf = LogisticRegression(**kw).partial_fit(X[:20], y[:20], classes=np.arange(n_classes))
        models.append(clf.partial_fit(X[20:], y[20:]))
    assert compact == [True, True]
    assert_array_equal(models[0].coef_, models[1].coef_)
    assert_array_equal(models[0].intercept_, models[1].intercept_)
    assert models[0].loss_curve_ == models[1].loss_curve_
    assert models[0].t_ == models[1].t_


def test_fit_from_fresh_arrays_copies_no_model(monkeypatch):
    """A fit that starts from fresh arrays (not warm_start) changes nothing of the old model in
    place, so a failure only needs the old attributes back: its undo copies no weights nor
    state; a warm-started fit trains the old arrays in place and copies them first."""
    from sparseopt.linear_model import _base

    X, y = _tiny()
    copied = []
    protect = _base._Undo.protect

    def spy(undo):
        protect(undo)
        copied.append(sorted(k for k in (*undo.copies, *undo.lists) if k in ("_W", "_state_w")))

    clf = LogisticRegression(optimizer="adam", max_iter=2, tol=None).fit(X, y)
    monkeypatch.setattr(_base._Undo, "protect", spy)
    clf.fit(X, y)
    assert copied == [[]]
    clf.set_params(warm_start=True).fit(X, y)
    assert copied[-1] == ["_W"]  # (a warm start begins a new optimizer state: fresh arrays)


def test_class_weight_and_init_are_checked():
    X, y = _tiny()
    for cw in ({0: -1.0}, {0: np.nan}):  # NaN used to reach the kernel (a crash with adam's partial_fit)
        with pytest.raises(ValueError, match="class_weight must give finite, non-negative"):
            LogisticRegression(optimizer="adam", class_weight=cw).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"coef_init must be a real array of shape \(3, 5\)"):
        LogisticRegression().fit(X, y, coef_init=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="intercept_init holds NaN"):
        LinearRegression().fit(X, y, intercept_init=np.nan)
    assert LogisticRegression(verbose=False, max_iter=1).fit(X, y).n_iter_ == 1  # bool verbose, as scikit-learn
    # weights whose sum overflows used to be scaled to zeros (nothing learnt, loss 0)
    kw = dict(max_iter=1, random_state=0)
    assert_allclose(LogisticRegression(**kw).fit(X, y, sample_weight=np.full(len(y), 1e308)).coef_,
                    LogisticRegression(**kw).fit(X, y).coef_, rtol=1e-12)
    clf = LogisticRegression(optimizer="adam", max_iter=1, random_state=0).fit(X, y)
    coef = clf.coef_.copy()
    clf.coef_ = np.full_like(coef, np.nan)  # a NaN model used to crash adam's partial_fit (segfault)
    with pytest.raises(ValueError, match="coef_ holds NaN"):
        clf.partial_fit(X, y)
    clf.coef_ = coef[:2]
    with pytest.raises(ValueError, match=r"coef_ must be a real array of shape \(3, 5\)"):
        clf.get_training_state()


def test_model_file_keeps_optimizer_instance_and_class_weight(tmp_path):
    from sparseopt._io import load_model, save_model

    X, y = _tiny()
    # an optimizer class used to be saved as "type"; an instance's hyperparameters were lost;
    # int class_weight keys came back as strings
    for i, opt in enumerate([optim.Adam, optim.Adam(np.zeros(1), beta1=0.5)]):
        clf = LogisticRegression(optimizer=opt, max_iter=2, tol=None, random_state=0,
                                 class_weight={0: 2.0, 1: 1.0, 2: 1.0}).fit(X, y)
        loaded, _ = load_model(save_model(tmp_path / f"m{i}", clf, training_state=True))
        assert loaded.class_weight == clf.class_weight
        assert_array_equal(loaded.partial_fit(X, y).coef_, clf.partial_fit(X, y).coef_)
    with pytest.raises(NotFittedError):
        save_model(tmp_path / "u", LogisticRegression())


@pytest.mark.parametrize("key, value, match", [
    ("coef", np.ones((2, 5)), "coef must be a real array of shape"),
    ("coef", np.full((3, 5), np.nan), "coef holds NaN"),
    ("intercept", np.array("x"), "intercept must be a real array"),
    ("classes", np.array([0, 0, 1]), "classes must be at least 2 sorted"),
    ("params", np.array("{not json"), "'params' is not JSON"),
    ("format_version", np.array("x"), "'format_version' must be a scalar"),
    ("training_state.weights", np.zeros((5, 3)), "training state's model differs"),
])
def test_damaged_model_file_is_a_data_error(tmp_path, key, value, match):
    from sparseopt._io import DataError, load_model, save_model

    X, y = _tiny()
    path = save_model(tmp_path / "m", LogisticRegression(max_iter=1).fit(X, y), training_state=True)
    with np.load(path) as z:
        d = dict(z)
    d[key] = value
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(DataError, match=match):
        load_model(tmp_path / "bad.npz")


def test_optimizer_instance_lr_and_weight_decay_warn_and_are_not_used():
    """An optimizer instance lends its kind and other hyperparameters; its lr and weight_decay
    would be silently ignored (learning_rate and alpha set them), so a warning names them."""
    from sparseopt import optim

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(int)
    inst = optim.Adam(np.zeros(3), lr=0.5, weight_decay=0.1, beta1=0.5)
    with pytest.warns(UserWarning, match=r"lr=0\.5 and weight_decay=0\.1 are not used"):
        a = LogisticRegression(optimizer=inst, max_iter=2, random_state=0, tol=None).fit(X, y)
    b = LogisticRegression(optimizer="adam", optimizer_params={"beta1": 0.5}, max_iter=2, random_state=0,
                           tol=None).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an instance at the class defaults warns nothing
        LogisticRegression(optimizer=optim.Adam(np.zeros(3), beta1=0.5), max_iter=1, tol=None).fit(X, y)


def test_fast_exp_of_nan_and_large_arguments_stays_in_its_tables():
    """The catch-up's exp(-y) reads 64-entry tables indexed from y: NaN (a diverged state) and
    y >= 44 go to libm instead of indexing outside them."""
    from sparseopt.linear_model._epoch import _exp_neg_fast

    assert np.isnan(_exp_neg_fast(np.nan))
    assert _exp_neg_fast(np.inf) == 0.0
    for y in [0.0, 1e-9, 0.3, 43.99, 44.0, 700.0]:
        assert _exp_neg_fast(y) == pytest.approx(np.exp(-y), rel=1e-15, abs=0.0)


def test_fast_exp_is_within_a_few_ulp_on_both_sides_of_its_polynomial_range():
    """Below 0.25 the catch-up's exp(-y) is a polynomial (the usual case: a few steps' decay of
    a small l2 penalty), above it the tables: both agree with libm's exp within 2 ulp, the
    polynomial within 1, also at the switch, and exp(-0) is exactly 1 (an up-to-date weight is
    left as it is)."""
    from sparseopt.linear_model._epoch import _EXP_POLY_MAX, _exp_neg_fast

    edge = _EXP_POLY_MAX
    ys = np.concatenate([np.linspace(0.0, edge, 3001), [np.nextafter(edge, 0.0), edge, np.nextafter(edge, 1.0)],
                         np.geomspace(1e-300, 43.99, 3000)])
    for y in ys:
        ref = math.exp(-y)
        assert abs(_exp_neg_fast(y) - ref) <= (1 if y < edge else 2) * np.spacing(ref), y
    assert _exp_neg_fast(0.0) == 1.0


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (1001, 1)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_weight_sums_against_numpy(shape, order):
    """The penalty's value and the divergence check of every epoch come from one pass
    (four partial sums): NumPy's sums and isfinite are the reference."""
    W = np.asarray(np.random.default_rng(0).normal(size=shape), order=order)
    s1, s2, finite = _epoch.weight_sums(W)
    assert_allclose([s1, s2], [np.abs(W).sum(), (W * W).sum()], rtol=1e-13)
    assert finite
    for bad in (np.nan, np.inf, -np.inf):
        V = W.copy(order=order)
        V.flat[-1] = bad
        assert not _epoch.weight_sums(V)[2]
    # finite weights whose sums overflow are still finite
    assert _epoch.weight_sums(np.full(shape, 1e308, order=order))[2]


def test_huge_finite_user_coef_is_accepted():
    """coef_ is checked with a vectorised sum first: finite values whose sum overflows must
    not be taken for NaN or infinity."""
    X, y = _tiny()
    clf = LinearRegression(max_iter=1, learning_rate=1e-300, random_state=0).fit(X, y.astype(float))
    clf.coef_ = np.full(X.shape[1], 1e308)
    with pytest.raises(FloatingPointError, match="diverged"):  # accepted as input, then overflows in training
        clf.partial_fit(X, y.astype(float))
    clf.coef_ = np.r_[np.full(X.shape[1] - 1, 1.0), np.nan]
    with pytest.raises(ValueError, match="coef_ holds NaN or infinite values"):
        clf.partial_fit(X, y.astype(float))


@pytest.mark.parametrize("kind", ["binary", "multinomial", "regression"])
def test_coef_edited_in_place_or_replaced_is_what_training_continues_from(kind):
    """coef_ is published as a view of the model (no O(n_features K) copy per call): editing it in
    place and assigning a new array must both be taken by the next partial_fit, alike."""
    X, y = _tiny()
    if kind == "binary":
        y = y % 2
    est = LinearRegression if kind == "regression" else LogisticRegression
    kw = dict(optimizer="adagrad", max_iter=2, tol=None, random_state=0)
    edited, replaced, untouched = (est(**kw).fit(X, y) for _ in range(3))
    zero = np.zeros_like(edited.coef_)
    zero.flat[0] = 0.5
    edited.coef_[...] = zero
    replaced.coef_ = zero.copy()
    for m in (edited, replaced, untouched):
        m.partial_fit(X, y)
    assert_array_equal(edited.coef_, replaced.coef_)
    assert not np.array_equal(edited.coef_, untouched.coef_)
    assert_array_equal(edited.predict(X), replaced.predict(X))


def test_log1p_within_3_ulp_of_libm():
    """The catch-up parameter log(1 + eta l2): a Taylor polynomial below 1e-3, 2 atanh(x / (2 + x))
    below 0.25 (no libm call, vectorisable), libm's log1p above; math.log1p is the reference."""
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.geomspace(1e-300, 0.2499, 4000), rng.uniform(0, 0.25, 4000), [1e-3, 0.25, 0.3, 7.0, 1e300]])
    for x in xs:
        ref = np.log1p(x)
        assert abs(_epoch._log1p(x) - ref) <= 3 * np.spacing(ref), x
    assert _epoch._log1p(0.0) == 0.0


def test_fmuladd_rounds_a_times_b_plus_c_once_or_twice():
    """The fast exp's polynomial uses llvm.fmuladd: one fused multiply-add, rounded once, where
    the CPU has one, else a multiply and an add.  Exact rational arithmetic is the reference."""
    from fractions import Fraction

    import numba

    from sparseopt._jit import fmuladd

    f = numba.njit(lambda a, b, c: fmuladd(a, b, c))
    rng = np.random.default_rng(3)
    for a, b, c in rng.normal(size=(2000, 3)) * 10.0 ** rng.integers(-8, 8, size=(2000, 3)):
        fused = float(Fraction(a) * Fraction(b) + Fraction(c))
        assert f(a, b, c) in (fused, a * b + c), (a, b, c)
    assert f(3, 2.0, 1) == 7.0  # (integers are converted)
    with pytest.raises(numba.TypingError, match="three real numbers"):
        f(np.zeros(2), 1.0, 1.0)


def test_log_loss_lanes_within_a_few_ulp_of_the_scalar_loss():
    """The two-thread epoch's vectorised log loss (no branch, no libm call) against the scalar one
    (libm's exp and log1p), both signs of the margin; where |y z| >= 43 or the margin is NaN the
    epoch recomputes with the scalar one, so only the table index must stay in range there."""
    rng = np.random.default_rng(2)
    zs = np.concatenate([rng.normal(0.0, 10.0, 4000), np.geomspace(1e-300, 42.99, 1000), [0.0, -0.0, 1.0, -1.0]])
    for z in zs:
        for y in (-1.0, 1.0):
            value, d = _epoch._log_loss_lanes(z, y)
            ref_value, ref_d = _epoch._loss_grad1(_epoch.LOG, z, y)
            if abs(y * z) < _epoch._LOSS_LANES_MAX:
                assert abs(value - ref_value) <= 4 * np.spacing(ref_value), (z, y)
                assert abs(d - ref_d) <= 4 * np.spacing(abs(ref_d)), (z, y)
    for z in (np.nan, np.inf, 1e300):
        _epoch._log_loss_lanes(z, 1.0)  # (no read outside the exp tables)


def test_decay_lanes_is_the_scalar_catch_up_where_it_says_exact():
    """The vectorised catch-up factor must be bit-identical to the scalar one (exp_neg_fast of
    k log1p(eta l2)) where it reports exact, and report inexact where that one takes libm."""
    rng = np.random.default_rng(1)
    for _ in range(3000):
        eta = 10.0 ** rng.uniform(-4, 5)
        k = float(rng.integers(0, 10**6))
        l2 = 10.0 ** rng.uniform(-8, -1)
        f, exact = _epoch._decay_lanes(eta, k, l2)
        x = eta * l2
        y = k * _epoch._log1p(x)
        assert exact == (x < 0.25 and y < 43.0)
        if exact:
            assert f == _epoch._exp_neg_fast(y)
    assert _epoch._decay_lanes(np.nan, 3.0, 1e-5)[1] is False
