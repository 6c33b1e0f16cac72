"""Estimators: seconds per epoch of ``sparseopt.linear_model.LogisticRegression``
against scikit-learn's ``SGDClassifier(loss="log_loss")``.

Data: LIBSVM's a9a (bundled) and a synthetic 100,000 x 100,000 CSR set with
about 50 Zipf-distributed non-zeros a row,
``sparseopt.datasets.make_zipf_classification(random_state=0)``: the set of
``benchmarks/bench_estimators.py``.  Skipped while ``sparseopt.linear_model``
is not importable; the synthetic set is skipped with a ``sparseopt`` that
has no ``make_zipf_classification`` (before it was added, this module made a
different set: other values, row scaling and labels, so ``zipf`` results from
then are not comparable with later ones).

``PartialFit``: the streaming workflow, one ``partial_fit`` call per
1,000-row chunk of a 2**18-feature Zipf set (as hashed text), against
``SGDClassifier.partial_fit``; ``benchmarks/bench_partial_fit.py`` sweeps
chunk sizes and up to 2**20 features.
"""

import functools
import warnings

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
ALPHA = 1e-5  # both estimators fit the same objective (as benchmarks/bench_estimators.py)

# synthetic set: rows, features (the generator's defaults otherwise)
ZIPF_SHAPE = (100_000, 100_000)
ZIPF_SHAPE_QUICK = (5_000, 5_000)
# streaming set: rows per partial_fit call, features, chunks (the first one warms up)
STREAM = (1_000, 2**18, 8)
STREAM_QUICK = (50, 2**10, 3)


def _int32_indices(X):
    # scikit-learn's SGDClassifier accepts CSR with 32-bit indices only
    X.indices = X.indices.astype(np.int32, copy=False)
    X.indptr = X.indptr.astype(np.int32, copy=False)
    return X


@functools.lru_cache(maxsize=None)
def load_data(name, quick=False):
    """``(X, y)`` as CSR float64 (32-bit indices) and labels in {0, 1}: ``"a9a"`` or ``"zipf"``."""
    if name == "a9a":
        from sparseopt.datasets import load_a9a

        X, y = load_a9a("train")
        if quick:
            X, y = X[:2_000], y[:2_000]
        return _int32_indices(X), (y > 0).astype(np.int64)
    if name != "zipf":
        raise ValueError(name)
    return _zipf(*(ZIPF_SHAPE_QUICK if quick else ZIPF_SHAPE))


@functools.lru_cache(maxsize=None)
def load_chunks(quick=False, n_classes=2):
    """The streaming set: a tuple of ``(X, y)`` chunks of ``STREAM`` (``STREAM_QUICK``)'s
    sizes, as :func:`load_data` returns them, cut from one Zipf set; with ``n_classes > 2``,
    the labels are the class of the largest of ``n_classes`` random linear scores."""
    size, n_features, n_chunks = STREAM_QUICK if quick else STREAM
    X, y = _zipf(size * n_chunks, n_features)
    if n_classes > 2:
        y = np.argmax(X @ np.random.default_rng(0).standard_normal((n_features, n_classes)), axis=1)
    return tuple((X[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(n_chunks))


def _zipf(n_rows, n_features):
    try:
        from sparseopt.datasets import make_zipf_classification
    except ImportError as exc:  # an installed sparseopt older than the generator
        raise NotImplementedError(f"sparseopt.datasets.make_zipf_classification is not importable: {exc}")
    X, y = make_zipf_classification(n_rows, n_features, random_state=0)
    return _int32_indices(X), (y > 0).astype(np.int64)


def _logistic_regression():
    try:
        from sparseopt.linear_model import LogisticRegression
    except ImportError as exc:  # written concurrently; benchmark skipped until it lands
        raise NotImplementedError(f"sparseopt.linear_model is not importable: {exc}")
    return LogisticRegression


def _one_epoch_sparseopt(optimizer):
    LogisticRegression = _logistic_regression()
    return LogisticRegression(optimizer=optimizer, alpha=ALPHA, max_iter=1, random_state=0)


def _one_epoch_sklearn():
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", alpha=ALPHA, max_iter=1, tol=None, random_state=0)


class _Stream:
    """Calls ``clf.partial_fit`` on the next chunk each time, cycling through ``chunks[1:]``.

    Made with the first call (on ``chunks[0]``, with ``classes=``), which compiles and
    allocates the weights and optimizer state, outside any timing.
    """

    def __init__(self, clf, chunks, classes=(0, 1)):
        X, y = chunks[0]
        clf.partial_fit(X, y, classes=np.asarray(classes))
        self.clf, self.chunks, self.i = clf, chunks, 0

    def __call__(self):
        self.i = self.i % (len(self.chunks) - 1) + 1
        self.clf.partial_fit(*self.chunks[self.i])


def _fit(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch does not converge, by design
        clf.fit(X, y)


class _Data:
    quick = False

    def _load(self, data):
        self.X, self.y = load_data(data, self.quick)


class LogisticEpoch(_Data):
    """One epoch of ``LogisticRegression(optimizer=...)`` (``fit`` with ``max_iter=1``)."""

    params = [list(OPTIMIZERS), ["a9a", "zipf"]]
    param_names = ["optimizer", "data"]
    timeout = 600

    def setup(self, optimizer, data):
        self._load(data)
        _fit(_one_epoch_sparseopt(optimizer), self.X[:50], self.y[:50])  # compile outside the timing

    def time_epoch(self, optimizer, data):
        _fit(_one_epoch_sparseopt(optimizer), self.X, self.y)

    def peakmem_epoch(self, optimizer, data):
        _fit(_one_epoch_sparseopt(optimizer), self.X, self.y)


class LogisticEpochThreads(_Data):
    """One epoch of the adaptive rules and Momentum on the Zipf set on one Numba thread or two: an
    epoch on records of a large model runs on two threads, each with its own features
    (``sparseopt.linear_model._epoch._run_epoch_records_threads``,
    ``_run_epoch_momentum_threads``), where Numba has two."""

    params = [["momentum", "adagrad", "rmsprop", "adam"], [1, 2]]
    param_names = ["optimizer", "threads"]
    timeout = 600

    def setup(self, optimizer, threads):
        import numba

        self._threads = numba.get_num_threads()  # (restored by teardown, which asv runs after a skip too)
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise NotImplementedError(f"Numba has {numba.config.NUMBA_NUM_THREADS} thread(s)")
        self._load("zipf")
        numba.set_num_threads(threads)
        # compile outside the timing: the whole set, since only a large one takes the two-thread kernels
        _fit(_one_epoch_sparseopt(optimizer), self.X, self.y)

    def teardown(self, optimizer, threads):
        import numba

        numba.set_num_threads(self._threads)

    def time_epoch(self, optimizer, threads):
        _fit(_one_epoch_sparseopt(optimizer), self.X, self.y)


class SGDClassifierEpoch(_Data):
    """The peer: one epoch of scikit-learn's ``SGDClassifier(loss="log_loss")``."""

    params = [["a9a", "zipf"]]
    param_names = ["data"]
    timeout = 600

    def setup(self, data):
        self._load(data)
        _fit(_one_epoch_sklearn(), self.X[:50], self.y[:50])  # first-call costs outside the timing, as above

    def time_epoch(self, data):
        _fit(_one_epoch_sklearn(), self.X, self.y)


class LogisticVsSGDClassifier(_Data):
    """SGDClassifier time / sparseopt time for one epoch, timed in turn in this process."""

    params = [list(OPTIMIZERS), ["a9a", "zipf"]]
    param_names = ["optimizer", "data"]
    repeat = 5
    timeout = 900

    def setup(self, optimizer, data):
        self._load(data)
        _fit(_one_epoch_sparseopt(optimizer), self.X[:50], self.y[:50])

    def track_speedup(self, optimizer, data):
        from ._common import paired_ratio

        return paired_ratio(
            lambda: _fit(_one_epoch_sparseopt(optimizer), self.X, self.y),
            lambda: _fit(_one_epoch_sklearn(), self.X, self.y),
            self.repeat,
        )

    track_speedup.unit = "x"


class PartialFit:
    """One ``partial_fit`` call of ``LogisticRegression(optimizer=...)`` on the next
    1,000-row chunk of the streaming set (2**18 features), with 2 classes or 3 (a
    multinomial model; ``SGDClassifier`` trains one-vs-rest); ``track_speedup``:
    ``SGDClassifier(loss="log_loss").partial_fit``'s time / sparseopt's, timed in
    turn in this process, each estimator on its own stream of the same chunks.

    A call costs what it costs per stored entry plus what it costs per feature:
    the second dominates at this width (``benchmarks/bench_partial_fit.py``).
    The BLAS and OpenMP pools (not Numba's threads) run on one thread meanwhile,
    as in that script: ``SGDClassifier.partial_fit``'s helpers use them for little
    work and, with another job on the machine, took 14x longer on two threads.
    """

    params = [list(OPTIMIZERS), [2, 3]]
    param_names = ["optimizer", "n_classes"]
    quick = False
    repeat = 20
    timeout = 300

    def setup(self, optimizer, n_classes):
        from sklearn.linear_model import SGDClassifier
        from threadpoolctl import threadpool_limits

        self.pools = threadpool_limits(1)
        chunks = load_chunks(self.quick, n_classes)
        LogisticRegression = _logistic_regression()
        classes = np.arange(n_classes)
        self.ours = _Stream(LogisticRegression(optimizer=optimizer, alpha=ALPHA, random_state=0), chunks, classes)
        self.peer = _Stream(SGDClassifier(loss="log_loss", alpha=ALPHA, random_state=0), chunks, classes)

    def teardown(self, optimizer, n_classes):
        if hasattr(self, "pools"):
            self.pools.restore_original_limits()

    def time_partial_fit(self, optimizer, n_classes):
        self.ours()

    def track_speedup(self, optimizer, n_classes):
        from ._common import paired_ratio

        return paired_ratio(self.ours, self.peer, self.repeat)

    track_speedup.unit = "x"
