"""The estimators with ``device="cuda"`` against the same estimators on the CPU.

The reference is the CPU estimator (``sparseopt.linear_model._epoch``, itself
tested against a NumPy transcription of SPEC.md in ``test_linear_model.py``)
on the same data and ``random_state``, so the same shuffling.  CI runs these
on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) with tiny data and 4
threads per block, at most 2 blocks, so that multi-block and grid-stride
paths run; on a machine with a GPU and without the variable they run there.

Tolerance.  Both sides run the same scalar rules in float64.  The GPU sums
the gradient of a feature repeated in a batch with float atomics (another
order), sums each margin with the intercept in the same order as the CPU,
and takes SGD's and Momentum's pure-l2 shrink as explicit proximal steps
where the CPU keeps a common scale (``wscale``): each of these moves a value
by a few ulps per step.  Over the ~10 steps here that stays below
rtol 1e-9 with an absolute floor of 1e-12 for weights near zero (observed:
< 2e-15).  On a GPU, FMA contraction and libdevice's ``exp``/``log``/``pow``
may add an ulp each per step, still far below that.
"""

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.base import clone

import sparseopt.cuda as sc
from sparseopt.linear_model import LinearRegression, LogisticRegression

try:
    import numba_cuda  # noqa: F401

    HAVE_NUMBA_CUDA = True
except ImportError:
    HAVE_NUMBA_CUDA = False

RUNNABLE = HAVE_NUMBA_CUDA and sc.is_available()
needs_cuda = pytest.mark.skipif(not RUNNABLE, reason="needs numba-cuda and a GPU or NUMBA_ENABLE_CUDASIM=1")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
PENALTIES = ["l2", "l1", None]
LAZY = ["skip", "exact"]
TASKS = ["binary", "multinomial", "regression"]
TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """4 threads per block, at most 2 blocks: every kernel runs multi-block and grid-stride."""
    if RUNNABLE:
        from sparseopt.cuda import _kernels as K

        monkeypatch.setattr(K, "THREADS_PER_BLOCK", 4)
        monkeypatch.setattr(K, "MAX_BLOCKS", 2)


def data(task, n=24, n_features=7, seed=0):
    """Tiny CSR data with an empty row and frequent and rare features (so rows miss steps)."""
    rng = np.random.RandomState(seed)
    dense = rng.randn(n, n_features) * (rng.rand(n, n_features) < np.linspace(0.9, 0.15, n_features))
    dense[3] = 0.0  # a sample with no stored entry
    X = sp.csr_matrix(dense)
    w = rng.randn(n_features)
    z = dense @ w
    if task == "binary":
        y = np.where(z + 0.3 * rng.randn(n) > 0, "yes", "no")
    elif task == "multinomial":
        y = np.digitize(z, np.quantile(z, [0.33, 0.66]))
    else:
        y = z + 0.1 * rng.randn(n) + 0.5
    return X, y


def estimator(task, **kw):
    params = dict(max_iter=2, batch_size=5, alpha=0.05, random_state=0)
    params.update(kw)
    return (LinearRegression if task == "regression" else LogisticRegression)(**params)


def assert_same_model(cpu, gpu):
    assert isinstance(gpu.coef_, np.ndarray) and isinstance(gpu.intercept_, (np.ndarray, float))
    assert_allclose(gpu.coef_, cpu.coef_, **TOL)
    assert_allclose(gpu.intercept_, cpu.intercept_, **TOL)
    assert_allclose(gpu.loss_curve_, cpu.loss_curve_, **TOL)
    assert gpu.t_ == cpu.t_ and gpu.n_iter_ == cpu.n_iter_
    # the training did something: a test of two untrained models could not fail
    assert np.abs(cpu.coef_).max() > 1e-3


@needs_cuda
@pytest.mark.parametrize("lazy", LAZY)
@pytest.mark.parametrize("penalty", PENALTIES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_gpu_equals_cpu(optimizer, penalty, lazy):
    # each (optimizer, penalty) meets every task across the two lazy modes and
    # the penalties, without running the full product (the simulator is slow)
    task = TASKS[(OPTIMIZERS.index(optimizer) + PENALTIES.index(penalty) + LAZY.index(lazy)) % 3]
    X, y = data(task)
    kw = dict(optimizer=optimizer, penalty=penalty, lazy=lazy)
    cpu = estimator(task, **kw).fit(X, y)
    gpu = estimator(task, device="cuda", **kw).fit(X, y)
    assert_same_model(cpu, gpu)
    if task == "regression":
        assert_allclose(gpu.predict(X), cpu.predict(X), **TOL)
    else:
        assert_allclose(gpu.decision_function(X), cpu.decision_function(X), **TOL)
        assert np.array_equal(gpu.predict(X), cpu.predict(X))
    if penalty == "l1":  # the proximal step gives exact zeros, on both sides
        assert np.array_equal(gpu.coef_ == 0, cpu.coef_ == 0)


class _LaunchSpy:
    """Counts the launches of a kernel (``kernel[grid, block](...)``)."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, config):
        self.launches += 1
        return self.kernel[config]


@needs_cuda
@pytest.mark.parametrize("path", ["block", "launches"])
@pytest.mark.parametrize("optimizer, penalty, lazy", [
    ("sgd", "l1", "exact"), ("momentum", "l2", "skip"), ("adagrad", "l2", "exact"),
    ("rmsprop", None, "skip"), ("adam", "l1", "exact"), ("adam", "l2", "skip"),
])
def test_both_epoch_paths_equal_cpu(path, optimizer, penalty, lazy, monkeypatch):
    """Small batches run a whole epoch in one thread block, large ones launch each phase of a
    batch over the grid (``BLOCK_EPOCH_MAX_ENTRIES`` decides): both give the CPU's model."""
    from sparseopt.cuda import _linear

    spy = _LaunchSpy(_linear.epoch_in_block)
    monkeypatch.setattr(_linear, "epoch_in_block", spy)
    monkeypatch.setattr(_linear, "BLOCK_EPOCH_MAX_ENTRIES", 10**9 if path == "block" else 0)
    task = TASKS[(OPTIMIZERS.index(optimizer) + LAZY.index(lazy)) % 3]
    X, y = data(task, seed=3)
    kw = dict(optimizer=optimizer, penalty=penalty, lazy=lazy)
    cpu = estimator(task, **kw).fit(X, y)
    gpu = estimator(task, device="cuda", **kw).fit(X, y)
    assert_same_model(cpu, gpu)
    assert (spy.launches == 2) if path == "block" else (spy.launches == 0)  # one per epoch


@needs_cuda
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_skip_and_exact_differ_and_each_matches(optimizer):
    """The catch-up paths matter here (the CPU models differ), and the GPU follows each."""
    X, y = data("binary", seed=1)
    models = {}
    for lazy in LAZY:
        kw = dict(optimizer=optimizer, penalty="l2", alpha=0.1, lazy=lazy)
        cpu = estimator("binary", **kw).fit(X, y)
        gpu = estimator("binary", device="cuda", **kw).fit(X, y)
        assert_same_model(cpu, gpu)
        models[lazy] = cpu.coef_
    assert np.abs(models["skip"] - models["exact"]).max() > 1e-6


@needs_cuda
def test_weights_elasticnet_single_sample_batches_no_intercept():
    """Sample and class weights, the elastic net, batch_size=1 (the CPU's one-sample path),
    no intercept, no shuffling."""
    X, y = data("multinomial", seed=2)
    sw = np.random.RandomState(3).rand(X.shape[0]) + 0.5
    kw = dict(optimizer="adagrad", penalty="elasticnet", l1_ratio=0.5, class_weight={0: 2.0, 1: 1.0, 2: 0.5},
              batch_size=1, fit_intercept=False, shuffle=False, max_iter=2)
    cpu = estimator("multinomial", **kw).fit(X, y, sample_weight=sw)
    gpu = estimator("multinomial", device="cuda", **kw).fit(X, y, sample_weight=sw)
    assert_same_model(cpu, gpu)
    assert np.all(gpu.intercept_ == 0)
    Xb, yb = data("binary", seed=4)
    kw = dict(optimizer="sgd", penalty="l2", batch_size=1, learning_rate=0.05)
    assert_same_model(estimator("binary", **kw).fit(Xb, yb), estimator("binary", device="cuda", **kw).fit(Xb, yb))


@needs_cuda
def test_partial_fit_and_warm_start_carry_the_state():
    """Optimizer state, steps and ``last`` go back to the host after each epoch and come back."""
    X, y = data("regression", seed=5)
    kw = dict(optimizer="rmsprop", penalty="l1", lazy="skip")
    cpu, gpu = estimator("regression", **kw), estimator("regression", device="cuda", **kw)
    for part in (slice(0, 12), slice(12, 24), slice(0, 24)):
        cpu.partial_fit(X[part], y[part])
        gpu.partial_fit(X[part], y[part])
    assert_same_model(cpu, gpu)
    kw = dict(optimizer="adam", warm_start=True, max_iter=2, lazy="exact")
    cpu, gpu = estimator("regression", **kw), estimator("regression", device="cuda", **kw)
    for _ in range(2):
        cpu.fit(X, y)
        gpu.fit(X, y)
    assert_same_model(cpu, gpu)
    # a GPU model can continue on the CPU and the other way round
    gpu.set_params(device="cpu").partial_fit(X, y)
    cpu.set_params(device="cuda").partial_fit(X, y)
    assert_same_model(cpu, gpu)


@needs_cuda
def test_gpu_continues_after_a_cpu_epoch_on_records():
    """A CPU epoch on records (AdaGrad with a penalty) leaves the per-row steps behind, since every
    row is up to date after it; the GPU, which reads them, must get them refilled."""
    X, y = data("binary", n=40, seed=7)
    cpu, gpu = estimator("binary", optimizer="adagrad"), estimator("binary", optimizer="adagrad")
    for est in (cpu, gpu):
        est.partial_fit(X[:20], y[:20], classes=np.unique(y))
    gpu.set_params(device="cuda").partial_fit(X[20:], y[20:])
    cpu.partial_fit(X[20:], y[20:])
    assert_same_model(cpu, gpu)


@needs_cuda
def test_early_stopping_scores_the_gpu_model():
    X, y = data("binary", n=40, seed=6)
    kw = dict(optimizer="adam", early_stopping=True, validation_fraction=0.25, n_iter_no_change=1, max_iter=4)
    cpu = estimator("binary", **kw).fit(X, y)
    gpu = estimator("binary", device="cuda", **kw).fit(X, y)
    assert_same_model(cpu, gpu)
    assert gpu.score(X, y) == cpu.score(X, y)


def test_device_is_a_parameter():
    est = LogisticRegression(device="cuda")
    assert est.get_params()["device"] == "cuda"
    assert clone(est).device == "cuda"
    assert LinearRegression().get_params()["device"] == "cpu"
    X, y = data("binary")
    for bad in ("gpu", None, "CUDA"):
        with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
            LogisticRegression(device=bad).fit(X, y)


@needs_cuda
def test_more_than_64_classes_not_implemented():
    n = 65
    X = sp.csr_matrix(np.eye(n)[:, :4] + 1.0)
    y = np.arange(n)
    with warnings.catch_warnings(), pytest.raises(NotImplementedError, match="at most 64 classes"):
        warnings.simplefilter("ignore", UserWarning)  # "more classes than half the samples"
        LogisticRegression(device="cuda", max_iter=1).fit(X, y)


def test_without_numba_cuda_a_clear_error(monkeypatch):
    X, y = data("binary")
    monkeypatch.setitem(sys.modules, "numba_cuda", None)  # import numba_cuda now fails
    with pytest.raises(ImportError, match=r"numba-cuda.*pip install"):
        LogisticRegression(device="cuda", max_iter=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LogisticRegression(max_iter=1).fit(X, y)  # the CPU does not care


@pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="needs numba-cuda")
def test_without_gpu_a_clear_error(monkeypatch):
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    X, y = data("regression")
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        LinearRegression(device="cuda", max_iter=1).fit(X, y)
