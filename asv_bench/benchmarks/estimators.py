"""Estimators: seconds per epoch of ``sparseopt.linear_model.LogisticRegression``
against scikit-learn's ``SGDClassifier(loss="log_loss")``.

Data: LIBSVM's a9a (bundled) and a synthetic 100,000 x 100,000 CSR set with
about 50 Zipf-distributed non-zeros a row.  Skipped while
``sparseopt.linear_model`` is not importable.
"""

import functools
import warnings

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
ALPHA = 1e-5  # both estimators fit the same objective (as benchmarks/bench_estimators.py)

# synthetic set: rows, features, mean non-zeros per row, Zipf exponent
ZIPF_SHAPE = (100_000, 100_000, 50, 1.1)
ZIPF_SHAPE_QUICK = (5_000, 5_000, 50, 1.1)


def _int32_indices(X):
    # scikit-learn's SGDClassifier accepts CSR with 32-bit indices only
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
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
    import scipy.sparse as sp

    n_rows, n_features, nnz_row, s = ZIPF_SHAPE_QUICK if quick else ZIPF_SHAPE
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, n_features + 1) ** s
    features = rng.permutation(n_features)  # frequent features spread over the columns
    # repeats of frequent features merge: draw ~1.33x as many to keep ~nnz_row distinct
    nnz = rng.poisson(1.33 * nnz_row, n_rows)
    indptr = np.concatenate([[0], np.cumsum(nnz)])
    indices = features[rng.choice(n_features, size=indptr[-1], p=weights / weights.sum())]
    data = rng.random(indptr[-1]) + 0.5
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_features))
    X.sum_duplicates()
    w = rng.standard_normal(n_features)
    y = (X @ w + 0.5 * rng.standard_normal(n_rows) > 0).astype(np.int64)
    return _int32_indices(X), y


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
