"""Training machinery shared by the linear models: checks, state, epochs.

The estimators keep the model as a weight matrix ``W`` of shape
``(n_features, K)`` (one row per feature, so the row of a feature is
contiguous) plus an intercept ``b`` of shape ``(K,)``, with the optimizer
state next to them.  An epoch is one call of the Numba kernel
:func:`sparseopt.linear_model._epoch.run_epoch`; Python only loops over
epochs (learning-rate schedule, stopping rule, ``verbose`` output).
"""

import numbers
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from .. import _rules as R
from .. import optim
from . import _epoch

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


__all__ = ["BaseSparseLinear"]

OPTIMIZERS = optim.OPTIMIZERS

# learning_rate=None: (initial rate, decay power) per optimizer.  An epoch
# that starts after t steps runs at lr0 / (1 + t / DECAY_STEPS) ** power
# (about one a9a epoch per DECAY_STEPS at the default batch size).  For
# "sgd" and "momentum" lr0 is scaled by the data (see _curvature_scale).
DEFAULT_LR = {
    "sgd": (1.0, 2.0),
    "momentum": (0.1, 2.0),
    "adagrad": (0.5, 0.5),
    "rmsprop": (0.01, 1.0),
    "adam": (0.01, 1.0),
}

DECAY_STEPS = 1000

PENALTIES = ("l2", "l1", "elasticnet", None)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_number(name, value, low, high=None, integer=False, low_open=False, allow_none=False):
    if value is None and allow_none:
        return None
    ok_type = _is_int(value) if integer else (
        isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    )
    if not ok_type:
        kind = "an integer" if integer else "a real number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    ok = np.isfinite(value) and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and value <= high
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}{']' if high is not None else ')'}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return value


def to_csr(X):
    """``X`` (already validated, float64) as a canonical CSR matrix with int32 or int64 indices.

    Dense input becomes CSR (zeros dropped), so that dense and sparse forms
    of the same data train the same model.  The caller's arrays are never
    modified: anything that must change is copied.
    """
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
    else:
        X = sp.csr_matrix(X)
    itype = np.int32 if X.nnz < np.iinfo(np.int32).max and X.shape[1] < np.iinfo(np.int32).max else np.int64
    indptr = np.require(X.indptr, dtype=itype, requirements=["C", "W"])
    indices = np.require(X.indices, dtype=itype, requirements=["C", "W"])
    data = np.require(X.data, dtype=np.float64, requirements=["C", "W"])
    return indptr, indices, data


class BaseSparseLinear(BaseEstimator):
    """Base class of :class:`LogisticRegression` and :class:`LinearRegression`."""

    _loss_kind = None  # set by subclasses (or per fit for the classifier)

    def __init__(
        self,
        optimizer="adagrad",
        optimizer_params=None,
        learning_rate=None,
        max_iter=10,
        batch_size=32,
        penalty="l2",
        alpha=1e-5,
        l1_ratio=0.15,
        fit_intercept=True,
        tol=1e-4,
        n_iter_no_change=5,
        early_stopping=False,
        validation_fraction=0.1,
        shuffle=True,
        random_state=None,
        warm_start=False,
        lazy="skip",
        verbose=0,
        device="cpu",
    ):
        self.optimizer = optimizer
        self.optimizer_params = optimizer_params
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.lazy = lazy
        self.verbose = verbose
        self.device = device

    # ------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------
    def _check_params(self):
        """Check the constructor parameters; raise ``ValueError`` naming the bad one."""
        _check_number("max_iter", self.max_iter, 1, integer=True)
        _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("alpha", self.alpha, 0.0)
        _check_number("l1_ratio", self.l1_ratio, 0.0, 1.0)
        _check_number("tol", self.tol, 0.0, allow_none=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, 1, integer=True)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 1.0, low_open=True)
        if self.validation_fraction >= 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        _check_number("verbose", self.verbose, 0, integer=True)
        _check_number("learning_rate", self.learning_rate, 0.0, low_open=True, allow_none=True)
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.lazy not in ("skip", "exact"):
            raise ValueError(f"lazy must be 'skip' or 'exact', got {self.lazy!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        for name in ("fit_intercept", "early_stopping", "shuffle", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def _penalty_coefs(self):
        """``(l1, l2)`` such that ``alpha * R(w) = l1 |w|_1 + l2 |w|^2 / 2``."""
        a = float(self.alpha)
        if self.penalty is None:
            return 0.0, 0.0
        if self.penalty == "l2":
            return 0.0, a
        if self.penalty == "l1":
            return a, 0.0
        rho = float(self.l1_ratio)
        return a * rho, a * (1.0 - rho)

    def _optimizer_spec(self):
        """``(name, optimizer class, dict of its hyperparameters but lr)``, checked."""
        opt = self.optimizer
        params = {} if self.optimizer_params is None else self.optimizer_params
        if not isinstance(params, dict):
            raise ValueError(f"optimizer_params must be a dict or None, got {type(params).__name__}")
        for key in ("lr", "weight_decay", "lazy", "check_finite"):
            if key in params:
                where = {"lr": "learning_rate", "weight_decay": "alpha and penalty", "lazy": "lazy"}.get(key, "")
                raise ValueError(
                    f"optimizer_params may not set {key!r}" + (f"; use the estimator's {where}" if where else "")
                )
        if isinstance(opt, str):
            if opt not in OPTIMIZERS:
                raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or a sparseopt.optim optimizer, "
                                 f"got {opt!r}")
            return opt, OPTIMIZERS[opt], dict(params)
        cls = type(opt) if isinstance(opt, optim.Optimizer) else opt
        for name, c in OPTIMIZERS.items():
            if cls is c:
                hp = {}
                if isinstance(opt, optim.Optimizer):
                    hp = {k: v for k, v in opt.hyperparams.items() if k not in ("lr", "weight_decay")}
                hp.update(params)
                return name, c, hp
        raise ValueError(
            f"optimizer must be one of {sorted(OPTIMIZERS)} or a sparseopt.optim optimizer, got {opt!r}"
        )

    def _make_optimizers(self, lr):
        """Optimizers for ``W`` and ``b`` (validating the hyperparameters) and the kernel's ``h``."""
        name, cls, hp = self._optimizer_spec()
        try:
            opt_w = cls(self._W, lr=lr, **hp)
            opt_b = cls(self._b, lr=lr, **hp)
        except TypeError as exc:
            raise ValueError(f"bad optimizer_params for optimizer {name!r}: {exc}") from None
        return name, opt_w, opt_b

    # ------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------
    def _init_state(self, n_features, K, coef_init=None, intercept_init=None):
        """Fresh weights (or the given ones) and fresh optimizer state."""
        self._W = np.zeros((n_features, K)) if coef_init is None else np.array(coef_init, dtype=np.float64, order="C")
        self._b = np.zeros(K) if intercept_init is None else np.array(intercept_init, dtype=np.float64, order="C")
        self._new_optimizer_state()

    def _new_optimizer_state(self):
        name, opt_w, opt_b = self._make_optimizers(1.0)
        self._opt_name = name
        self._opt_hyper = dict(opt_w.hyperparams)
        self._kind = opt_w._kind
        self._state_w = [opt_w.state[s] for s in opt_w._state_names]
        self._state_b = [opt_b.state[s] for s in opt_b._state_names]
        self._last = np.zeros(self._W.shape[0], dtype=np.int64)
        self.t_ = 0
        self._epochs_done = 0

    def _state_args(self):
        sw = self._state_w or [self._W]
        sb = self._state_b or [self._b]
        return sw[0], sw[-1], sb[0], sb[-1]

    def _probe(self):
        """The configured optimizer on a one-element dummy (checks its hyperparameters)."""
        name, cls, hp = self._optimizer_spec()
        try:
            return name, cls(np.zeros(1), lr=1.0, **hp)
        except TypeError as exc:
            raise ValueError(f"bad optimizer_params for optimizer {name!r}: {exc}") from None

    def _h(self):
        """The kernel's hyperparameter array (``h[LR]`` is set per epoch)."""
        return self._probe()[1]._h.astype(np.float64)

    def _same_optimizer(self):
        """Whether the current parameters describe the optimizer the state belongs to."""
        name, probe = self._probe()
        return name == getattr(self, "_opt_name", None) and probe.hyperparams == self._opt_hyper

    def _lr0(self, X_data, n_samples, sw):
        """Initial learning rate (``learning_rate`` or the optimizer's default)."""
        if self.learning_rate is not None:
            return float(self.learning_rate), 0.0
        lr0, power = DEFAULT_LR[self._opt_name]
        if self._opt_name in ("sgd", "momentum"):
            lr0 = lr0 * self._curvature_scale(X_data, n_samples, sw)
        return lr0, power

    def _curvature_scale(self, X_data, n_samples, sw):
        """``15 / (c (mean |x|^2 + fit_intercept))``: 1 on a9a-like data, where the defaults were tuned.

        ``c`` is 1 for the log loss, 2 for the multinomial loss and 30 for the
        squared loss, whose curvature is exactly ``|x|^2`` (the log loss's is at
        most ``|x|^2 / 4`` and much less once the model is confident), so
        that ``lr * |x|^2`` stays below 1/2 for least squares.
        """
        indptr, data = X_data
        counts = np.diff(indptr)
        sq = np.zeros(n_samples)
        if data.size:
            sums = np.add.reduceat(data * data, indptr[:-1][counts > 0])
            sq[counts > 0] = sums
        mean_sq = float(np.average(sq, weights=sw)) if sq.size else 0.0
        c = {_epoch.SQUARED: 30.0, _epoch.LOG: 1.0, _epoch.MULTINOMIAL: 2.0}[self._loss_kind]
        return 15.0 / (c * (mean_sq + float(self.fit_intercept)) + 1e-12)

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    def _run(self, Xc, y_enc, sw, max_iter, val=None, in_fit=True):
        """Train for up to ``max_iter`` epochs on CSR parts ``Xc`` (indptr, indices, data).

        ``y_enc``: float64 targets (±1, class index or value); ``sw``: sample
        weights (not yet normalised).  ``val``: ``(X, y)`` for early stopping.
        """
        indptr, indices, data = Xc
        n = indptr.size - 1
        sw = np.asarray(sw, dtype=np.float64)
        sw = sw / sw.mean()
        l1, l2 = self._penalty_coefs()
        lr0, power = self._lr0((indptr, data), n, sw)
        rng = check_random_state(self.random_state) if not hasattr(self, "_rng") or in_fit else self._rng
        self._rng = rng
        S1, S2, bs1, bs2 = self._state_args()
        exact = self.lazy == "exact"
        tol = self.tol
        best_loss, best_score, no_improve = np.inf, -np.inf, 0
        self.loss_curve_ = getattr(self, "loss_curve_", []) if not in_fit else []
        n_iter = 0
        h = self._h()
        gpu = self._device_epochs(Xc, y_enc, sw, S1, S2, bs1, bs2) if self.device == "cuda" else None
        for _ in range(max_iter):
            h[R.LR] = lr0 / (1.0 + self.t_ / DECAY_STEPS) ** power
            order = rng.permutation(n).astype(np.int64) if self.shuffle else np.arange(n, dtype=np.int64)
            tic = time.perf_counter()
            if gpu is not None:  # the same epoch on the GPU; the model is copied back after it
                t, loss_sum = gpu.run_epoch(self._kind, self._loss_kind, order, int(self.batch_size), h, l1, l2,
                                            exact, bool(self.fit_intercept), self.t_)
            else:
                t, loss_sum = _epoch.run_epoch(
                    self._kind, self._loss_kind, indptr, indices, data, y_enc, sw, order, int(self.batch_size),
                    self._W, S1, S2, self._b, bs1, bs2, h, l1, l2, exact, bool(self.fit_intercept), self._last,
                    self.t_,
                )
            self.t_ = int(t)
            self._epochs_done += 1
            n_iter += 1
            if not np.all(np.isfinite(self._W)) or not np.all(np.isfinite(self._b)):
                raise FloatingPointError(
                    "training diverged (non-finite weights); lower learning_rate or scale the features"
                )
            loss = loss_sum / n + self._penalty_value(l1, l2)
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"-- Epoch {self._epochs_done}: loss {loss:.6g}, lr {h[R.LR]:.3g}, "
                      f"{time.perf_counter() - tic:.3f} s")
            if not in_fit:
                continue
            if val is not None:
                self._publish()
                score = self.score(*val)
                if tol is not None and score < best_score + tol:
                    no_improve += 1
                else:
                    no_improve = 0
                best_score = max(best_score, score)
            elif tol is not None:
                if loss > best_loss - tol:
                    no_improve += 1
                else:
                    no_improve = 0
                best_loss = min(best_loss, loss)
            if tol is not None and no_improve >= self.n_iter_no_change:
                break
        else:
            if in_fit and tol is not None and max_iter > 1:
                warnings.warn(
                    f"Maximum number of epochs ({max_iter}) reached and the stopping rule (tol={tol}) "
                    "was not met; increase max_iter if the loss is still falling.",
                    ConvergenceWarning,
                )
        self.n_iter_ = n_iter
        self._publish()
        return self

    def _device_epochs(self, Xc, y_enc, sw, S1, S2, bs1, bs2):
        """The GPU runner of this training run (``device="cuda"``), with the data and state on the device.

        Raises ``ImportError`` / ``RuntimeError`` saying what is missing
        without numba-cuda or a GPU (the simulator counts as one).
        """
        from ..cuda import _cuda

        _cuda()
        from ..cuda._linear import DeviceEpochs

        arrays = dict(W=self._W, S1=S1, S2=S2, b=self._b, bs1=bs1, bs2=bs2, last=self._last)
        return DeviceEpochs(Xc, y_enc, sw, arrays)

    def _penalty_value(self, l1, l2):
        W = self._W
        return l1 * float(np.abs(W).sum()) + 0.5 * l2 * float(np.einsum("ij,ij->", W, W))

    def _objective(self, X, y, sample_weight=None):
        """SPEC.md's objective of the current model on ``(X, y)`` (for tests and reports)."""
        raise NotImplementedError

    def _read_public(self):
        """Take ``coef_`` / ``intercept_`` (which the user may have set) as the model."""
        raise NotImplementedError

    def _publish(self):
        """Expose ``W`` and ``b`` as ``coef_`` and ``intercept_``."""
        raise NotImplementedError

    def _fit_common(self, X, y_enc, sw, K, n_features, validation_split, coef_init=None, intercept_init=None):
        Xc = to_csr(X)
        warm = self.warm_start and hasattr(self, "_W") and self._W.shape == (n_features, K)
        if coef_init is not None or intercept_init is not None:
            warm = False
        if warm:
            self._read_public()
            self._new_optimizer_state()
        else:
            self._init_state(n_features, K, coef_init, intercept_init)
        val = None
        if self.early_stopping:
            train_idx, val_idx = validation_split
            val = (X[val_idx], self._val_targets[val_idx])
            Xc = to_csr(X[train_idx])
            y_enc, sw = y_enc[train_idx], sw[train_idx]
        return self._run(Xc, y_enc, sw, int(self.max_iter), val=val, in_fit=True)

    def _partial_fit_common(self, X, y_enc, sw, K, n_features):
        Xc = to_csr(X)
        if not hasattr(self, "_W"):
            self._init_state(n_features, K)
        else:
            self._read_public()
            if not self._same_optimizer():
                self._new_optimizer_state()
        return self._run(Xc, y_enc, sw, 1, in_fit=False)

    def _check_sample_weight(self, sample_weight, X):
        from sklearn.utils.validation import _check_sample_weight

        n = X.shape[0]
        if sample_weight is None:
            return np.ones(n)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if np.any(sw < 0):
            raise ValueError("Negative values in data passed to sample_weight")
        if not np.all(np.isfinite(sw)):
            raise ValueError("sample_weight contains NaN or infinite values")
        if sw.sum() <= 0:
            raise ValueError("sample_weight sums to zero: nothing to fit")
        return sw

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
