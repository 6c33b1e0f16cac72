"""Training machinery shared by the linear models: checks, state, epochs.

The estimators keep the model as a weight matrix ``W`` of shape
``(n_features, K)`` (one row per feature, so the row of a feature is
contiguous) plus an intercept ``b`` of shape ``(K,)``, with the optimizer
state next to them.  An epoch is one call of the Numba kernel
:func:`sparseopt.linear_model._epoch.run_epoch`; Python only loops over
epochs (learning-rate schedule, stopping rule, ``verbose`` output).
"""

import functools
import inspect
import numbers
import os
import threading
import time
import warnings
from collections.abc import Mapping

import numba
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
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

# the training state (get_training_state / set_training_state)
TRAINING_STATE_FORMAT = "sparseopt.training_state"
TRAINING_STATE_VERSION = 1
# the shuffling generator (numpy.random.RandomState, MT19937): optional, all or none
RNG_KEYS = ("rng_key", "rng_pos", "rng_has_gauss", "rng_cached_gaussian")
# optimizer state arrays that are sums or means of squares, so never negative
_NONNEGATIVE_STATES = {"adagrad": ("G",), "rmsprop": ("E",), "adam": ("v",)}


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


class _Undo:
    """What an :func:`atomic` call puts back if it raises: the attributes, and the arrays it
    changes in place, restored in place (views of them, such as a binary classifier's ``coef_``,
    see the old values).

    The intercept and its state (K values each), the loss curve and the shuffling generator's
    state are copied at once.  The per-row steps need no copy: between calls each row is up to
    date with ``t_`` (the kernels' contract), so they are refilled with it.  The model and its
    optimizer state (each ``n_features`` long: 16 MB for AdaGrad on 2**20 hashed features, a
    few milliseconds a ``partial_fit`` call into fresh memory) are copied by :meth:`protect`,
    which the call runs just before it first changes them in place, and not at all when it does
    not: a ``fit`` that starts from fresh arrays, or a one-epoch run that the kernel undoes itself
    (on records, or on fewer stored entries than weight rows, it writes nothing back when the
    model diverges: :func:`sparseopt.linear_model._epoch.run_epoch`).
    """

    def __init__(self, est, saved):
        self.est = est
        self.saved = saved
        self.outer = saved.get("_undo")  # a running atomic call that this one is part of
        self.copies = {k: saved[k].copy() for k in ("_b",) if k in saved}
        self.lists = {k: [a.copy() for a in saved[k]] for k in ("_state_b",) if k in saved}
        self.curve = list(saved["loss_curve_"]) if "loss_curve_" in saved else None
        rng = saved.get("_rng")
        self.rng_state = rng.get_state() if rng is not None else None
        self.protected = False

    def protect(self):
        """Copy the large arrays that are still the ones the call started with (once)."""
        if self.outer is not None:
            self.outer.protect()
        if self.protected:
            return
        self.protected = True
        now = self.est.__dict__
        if "_W" in self.saved and now.get("_W") is self.saved["_W"]:
            self.copies["_W"] = self.saved["_W"].copy()
        if "_state_w" in self.saved and now.get("_state_w") is self.saved["_state_w"]:
            self.lists["_state_w"] = [a.copy() for a in self.saved["_state_w"]]

    def restore(self):
        est = self.est
        est.__dict__.clear()
        est.__dict__.update(self.saved)
        for k, c in self.copies.items():
            self.saved[k][...] = c
        for k, cs in self.lists.items():
            for a, a0 in zip(self.saved[k], cs):
                a[...] = a0
        if self.curve is not None:
            est.loss_curve_ = self.curve
        if "_last" in self.saved:
            self.saved["_last"].fill(self.saved["t_"])  # between calls every row is up to date with t_
        if self.rng_state is not None:
            self.saved["_rng"].set_state(self.rng_state)


def atomic(method):
    """Run ``method`` so that, if it raises, the estimator is left exactly as it was.

    ``fit``, ``partial_fit`` and ``set_training_state`` check their input
    before they change anything, but some failures come later (training
    that diverges, an optimizer hyperparameter rejected once the data is
    read, a ``fit`` on new data whose sample weights are bad): the
    attributes and the arrays the training kernel updates in place are
    restored (:class:`_Undo`; code that changes the model or its optimizer
    state in place first calls ``BaseSparseLinear._protect``).
    """
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        saved = dict(self.__dict__)
        undo = _Undo(self, saved)
        self.__dict__["_undo"] = undo
        try:
            return method(self, *args, **kwargs)
        except Exception:
            undo.restore()  # also puts back the outer call's _undo, or none
            raise
        finally:
            if self.__dict__.get("_undo") is undo:
                if "_undo" in saved:
                    self.__dict__["_undo"] = saved["_undo"]
                else:
                    del self.__dict__["_undo"]
    return wrapper


def _two_threads():
    """Whether an epoch may run on two threads that wait for each other
    (``_epoch._run_epoch_records_threads``): Numba has two threads (with one, its two halves
    would run in turn and the first would wait for the second forever), and the process may
    run on two CPUs (on one, each wait would last until the other thread is scheduled)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # (not on Linux)
        cpus = os.cpu_count() or 1
    return numba.get_num_threads() >= 2 and cpus >= 2


def _unit_mean(sw):
    """Sample weights ``sw`` scaled to mean 1 (huge weights, whose sum overflows, first scaled by their maximum)."""
    sw = np.asarray(sw, dtype=np.float64)
    with np.errstate(over="ignore"):
        total = sw.sum()
    if not np.isfinite(total):
        sw = sw / sw.max()
    return sw / sw.mean()


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



def _real_finite(name, value, size, shape):
    """``value`` as a float64 array of ``size`` elements (any shape holding them; ``shape`` is the one
    the message names), else ``ValueError``: not real, wrong size, NaN or infinite values."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.size != size:
        raise ValueError(f"{name} must be a real array of shape {shape}, got {a.dtype} of shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        total = a.sum()  # vectorised; finite only if every value is
    if not np.isfinite(total) and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _checked_chunk(estimator, X, y, first, y_numeric=False):
    """``partial_fit``'s ``validate_data``, with a shortcut for a later call's chunk already in the
    form that validate_data would return as it is: CSR of float64 with as many columns as the
    model, finite stored values, at least one row, and a 1-D NumPy ``y`` of the same length
    (finite where numeric; strings only for a classifier), from an estimator fitted without
    feature names.  scikit-learn's checks cost 0.15 ms a call (6% of a 100-row call at 2**20
    features).  The first call, and anything else, go through validate_data and its errors."""
    if (not first and sp.issparse(X) and X.format == "csr" and X.dtype == np.float64 and X.ndim == 2
            and X.shape[0] > 0 and X.shape[1] == getattr(estimator, "n_features_in_", -1)
            and not hasattr(estimator, "feature_names_in_")
            and isinstance(y, np.ndarray) and y.ndim == 1 and y.shape[0] == X.shape[0]
            and (y.dtype.kind in "biu" or (y.dtype.kind == "f" and np.isfinite(y).all())
                 or (not y_numeric and y.dtype.kind in "US"))
            and np.isfinite(X.data).all()):
        return X, y
    return _validate_data(estimator, X, y, accept_sparse="csr", dtype=np.float64, order="C", reset=first,
                          y_numeric=y_numeric)


def _assign(dst, src, before=None):
    """``dst[...] = src``, skipped when ``src`` is ``dst``'s own memory in the same layout: the
    published ``coef_`` (a view of the model) read back, which would be an O(n_features) copy
    per ``partial_fit`` call for nothing.  ``before()``, if given, runs before a copy."""
    if src.ctypes.data == dst.ctypes.data and src.shape == dst.shape and src.strides == dst.strides:
        return
    if before is not None:
        before()
    dst[...] = src


def _warn_unused_instance_settings(opt, cls):
    """Warn when an optimizer instance given as ``optimizer`` sets ``lr`` or ``weight_decay``, which the
    estimator takes from its own ``learning_rate`` and ``alpha``/``penalty`` instead."""
    defaults = inspect.signature(cls).parameters
    unused = [
        f"{key}={opt.hyperparams[key]!r}"
        for key in ("lr", "weight_decay")
        if key in opt.hyperparams and key in defaults and opt.hyperparams[key] != defaults[key].default
    ]
    if unused:
        warnings.warn(
            f"the optimizer instance's {' and '.join(unused)} are not used: the estimator's learning_rate sets "
            "the step size and alpha/penalty the penalty (only its other hyperparameters are taken)",
            UserWarning,
            stacklevel=4,
        )

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
            raise ValueError(f"validation_fraction must be in (0.0, 1.0), got {self.validation_fraction!r}")
        if not isinstance(self.verbose, (bool, np.bool_)):
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
                    _warn_unused_instance_settings(opt, c)
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
        self._schedule = None  # (lr0, power), set by the first training run

    # ------------------------------------------------------------------
    # the training state, public
    # ------------------------------------------------------------------
    def get_training_state(self):
        """The full training state: model, optimizer state, counters, schedule, shuffling.

        Everything that decides how training continues, as NumPy arrays and
        Python scalars: save it with ``np.savez(path, **state)`` (no pickle
        unless the class labels are Python objects other than str) and restore it with
        ``set_training_state(dict(np.load(path)))``.  An estimator with the
        same parameters that gets this state continues ``partial_fit``
        exactly (bit for bit) as this one does.

        Returns
        -------
        state : dict
            Copies, never views of the estimator's arrays:

            ``format``, ``format_version``
                ``"sparseopt.training_state"`` and 1.
            ``estimator``, ``optimizer``
                The class name and the optimizer's name (``"adam"``, ...).
            ``n_features_in``
                Number of features.
            ``classes``
                The class labels (:class:`LogisticRegression` only).
            ``weights``, ``intercept``
                float64 arrays of shape ``(n_features, K)`` and ``(K,)``, with
                ``K`` = 1 for regression and binary classification, else the
                number of classes: ``weights`` is ``coef_`` transposed
                (``coef_[:, None]`` for regression).
            ``weights_<s>``, ``intercept_<s>``
                The optimizer's state array ``s`` of each, same shapes:
                Momentum ``v`` (velocity), AdaGrad ``G`` (sum of squared
                gradients), RMSProp ``E`` (mean square), Adam ``m`` and ``v``
                (moments); none for SGD.  Every float array of the model and
                its optimizer state is a key starting with ``weights`` or
                ``intercept`` (what model averaging averages).
            ``t``, ``epochs``
                Optimizer steps (mini-batches) and epochs taken: ``t`` drives
                Adam's bias correction and the learning-rate schedule.
            ``lr0``, ``lr_power``
                The schedule's constants: an epoch that starts after ``t``
                steps runs at ``lr0 / (1 + t / 1000) ** lr_power`` (``lr_power``
                is 0 for a constant ``learning_rate``).  With
                ``learning_rate=None``, ``fit`` and the first ``partial_fit``
                compute them (from the data for SGD and Momentum) and later
                ``partial_fit`` calls keep them; a constant ``learning_rate``
                overrides them.  ``lr0`` is NaN when not known yet (trained
                with a constant rate only): the next ``partial_fit`` computes it.
            ``rng_key``, ``rng_pos``, ``rng_has_gauss``, ``rng_cached_gaussian``
                The state of the generator that shuffles the samples of each
                epoch (``numpy.random.RandomState.get_state()``'s fields).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before the first ``fit`` / ``partial_fit`` / ``set_training_state``.

        Notes
        -----
        ``loss_curve_`` and ``n_iter_`` describe past calls and are not part of
        the state; neither are the optimizer's hyperparameters (``optimizer_params``),
        which are the estimator's parameters.  Every weight row is up to date with step ``t`` between
        training calls (the lazy penalty and ``lazy="exact"`` catch-ups are
        applied at the end of each epoch), so no per-row step counter is needed.
        """
        if not hasattr(self, "_W"):
            raise NotFittedError(
                f"This {type(self).__name__} instance has no training state yet; call fit, partial_fit or "
                "set_training_state first"
            )
        if hasattr(self, "coef_"):
            self._read_public()  # the model partial_fit would continue from (coef_ may have been set)
        state = {
            "format": TRAINING_STATE_FORMAT,
            "format_version": TRAINING_STATE_VERSION,
            "estimator": type(self).__name__,
            "optimizer": self._opt_name,
            "n_features_in": int(self._W.shape[0]),
        }
        if hasattr(self, "classes_"):
            classes = np.array(self.classes_, copy=True)
            if classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes):
                classes = classes.astype(str)  # saved without pickle
            state["classes"] = classes
        state["weights"] = self._W.copy()
        state["intercept"] = self._b.copy()
        for s, aw, ab in zip(OPTIMIZERS[self._opt_name]._state_names, self._state_w, self._state_b):
            state[f"weights_{s}"] = aw.copy()
            state[f"intercept_{s}"] = ab.copy()
        state["t"] = int(self.t_)
        state["epochs"] = int(self._epochs_done)
        lr0, power = self._current_schedule()
        state["lr0"], state["lr_power"] = float(lr0), float(power)
        if getattr(self, "_rng", None) is not None:
            _, key, pos, has_gauss, cached = self._rng.get_state(legacy=True)
            state.update(rng_key=np.array(key, dtype=np.uint32), rng_pos=int(pos), rng_has_gauss=int(has_gauss),
                         rng_cached_gaussian=float(cached))
        return state

    def _current_schedule(self):
        """The ``(lr0, power)`` the next ``partial_fit`` uses."""
        if self.learning_rate is not None:
            return float(self.learning_rate), 0.0
        if getattr(self, "_schedule", None) is not None:
            return self._schedule
        # trained with a constant rate and learning_rate reset to None since: the next
        # partial_fit computes the default schedule from its data
        return float("nan"), DEFAULT_LR[self._opt_name][1]

    @atomic
    def set_training_state(self, state):
        """Restore a training state made by :meth:`get_training_state` (or edited from one).

        Replaces the model, the optimizer state, the step and epoch counters,
        the learning-rate schedule, the shuffling generator, ``n_features_in_``
        and (classifier) ``classes_``, as ``fit`` would; ``coef_`` and
        ``intercept_`` follow.  With the same parameters, training then
        continues exactly as from the estimator the state came from.
        Everything is checked before anything changes: on error the estimator
        is left as it was.

        Parameters
        ----------
        state : mapping
            The entries listed in :meth:`get_training_state`; 0-d arrays (as
            ``np.load`` gives them) are accepted for scalars.  The ``rng_*``
            entries are optional (all or none): without them the shuffling
            restarts from ``random_state``, as after ``fit``.  Float arrays
            must have a floating dtype and are copied as float64.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            An entry is missing, unknown, of the wrong type, shape or dtype,
            not finite, out of range (negative step count or accumulator of
            squares), or made for another estimator class or optimizer than
            this estimator's ``optimizer``; the message names the entry.
            Also for invalid estimator parameters.
        TypeError
            ``state`` is not a mapping.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping (a dict from get_training_state), got {type(state).__name__}")
        self._check_params()
        name, _ = self._probe()
        checked = self._check_training_state(dict(state), name)
        # everything checked: commit
        n_features = checked["n_features_in"]
        if getattr(self, "n_features_in_", n_features) != n_features and hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if "classes" in checked:
            self.classes_ = checked["classes"]
            self._setup(checked["classes"].size)
        self._W = checked["weights"]
        self._b = checked["intercept"]
        self._new_optimizer_state()
        for s, aw, ab in zip(OPTIMIZERS[name]._state_names, self._state_w, self._state_b):
            aw[...] = checked[f"weights_{s}"]
            ab[...] = checked[f"intercept_{s}"]
        self.t_ = checked["t"]
        self._last[:] = checked["t"]
        self._epochs_done = checked["epochs"]
        self._schedule = None if np.isnan(checked["lr0"]) else (checked["lr0"], checked["lr_power"])
        if "rng_key" in checked:
            rng = np.random.RandomState()
            rng.set_state(("MT19937", checked["rng_key"], checked["rng_pos"], checked["rng_has_gauss"],
                           checked["rng_cached_gaussian"]))
            self._rng = rng
        elif hasattr(self, "_rng"):
            del self._rng
        self.n_features_in_ = n_features
        self.n_iter_ = 0
        self.loss_curve_ = []
        self._publish()
        return self

    def _check_training_state(self, d, name):
        """The entries of state ``d`` converted and checked for optimizer ``name``; raises ``ValueError``."""
        clf = is_classifier(self)
        state_names = OPTIMIZERS[name]._state_names
        arrays = ["weights", "intercept"] + [f"{p}_{s}" for s in state_names for p in ("weights", "intercept")]
        required = ["format", "format_version", "estimator", "optimizer", "n_features_in", *(["classes"] * clf),
                    *arrays, "t", "epochs", "lr0", "lr_power"]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"training state lacks {', '.join(map(repr, missing))}")
        unknown = sorted(str(k) for k in d if k not in required and k not in RNG_KEYS)
        if unknown:
            raise ValueError(f"training state has unknown entries {unknown} (for {type(self).__name__} with "
                             f"optimizer {name!r}, whose state arrays are {list(state_names)})")

        def scalar(key):
            v = d[key]
            if isinstance(v, np.ndarray):
                if v.ndim != 0:
                    raise ValueError(f"training state entry {key!r} must be a scalar, got an array of shape {v.shape}")
                v = v.item()
            return v

        def text(key, expected):
            v = scalar(key)
            if not isinstance(v, str) or v != expected:
                raise ValueError(f"training state entry {key!r} is {v!r}, expected {expected!r}")

        def integer(key, low, high=np.iinfo(np.int64).max):
            v = scalar(key)
            if not _is_int(v) or v < low or v > high:
                rng = f"[{low}, {high}]" if high < np.iinfo(np.int64).max else f">= {low}" + (
                    " (and below 2**63)" if _is_int(v) and v > high else "")
                raise ValueError(f"training state entry {key!r} must be an integer {rng}, got {v!r}")
            return int(v)

        def real(key, low, low_open):
            v = scalar(key)
            if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)) or not np.isfinite(v) or (
                    v <= low if low_open else v < low):
                raise ValueError(f"training state entry {key!r} must be a finite number "
                                 f"{'>' if low_open else '>='} {low}, got {v!r}")
            return float(v)

        text("format", TRAINING_STATE_FORMAT)
        integer("format_version", TRAINING_STATE_VERSION, TRAINING_STATE_VERSION)
        text("estimator", type(self).__name__)
        v = scalar("optimizer")
        if v != name:
            raise ValueError(f"training state entry 'optimizer' is {v!r} but this estimator's optimizer is {name!r}")
        out = {"n_features_in": integer("n_features_in", 1)}
        n_features = out["n_features_in"]
        K = 1
        if clf:
            classes = np.asarray(d["classes"])
            if classes.ndim != 1 or classes.size < 2 or classes.dtype.kind not in "biufUSO":
                raise ValueError(f"training state entry 'classes' must be a 1-d array of at least 2 labels, "
                                 f"got {classes!r}")
            if not np.array_equal(np.unique(classes), classes):
                raise ValueError("training state entry 'classes' must be sorted and without repeats "
                                 f"(as classes_), got {classes.tolist()}")
            out["classes"] = classes.copy()
            K = 1 if classes.size == 2 else classes.size
        for key in arrays:
            a = np.asarray(d[key])
            shape = (n_features, K) if key.startswith("weights") else (K,)
            if a.shape != shape or a.dtype.kind != "f":
                raise ValueError(f"training state entry {key!r} must be a float array of shape {shape}, "
                                 f"got {a.dtype} of shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"training state entry {key!r} holds NaN or infinite values")
            if key.partition("_")[2] in _NONNEGATIVE_STATES.get(name, ()) and np.any(a < 0):
                raise ValueError(f"training state entry {key!r} holds negative values (a sum or mean of squares)")
            out[key] = np.array(a, dtype=np.float64, order="C", copy=True)
        out["t"] = integer("t", 0)
        out["epochs"] = integer("epochs", 0)
        lr0 = scalar("lr0")
        out["lr0"] = lr0 if isinstance(lr0, float) and np.isnan(lr0) else real("lr0", 0.0, True)
        out["lr_power"] = real("lr_power", 0.0, False)
        present = [k for k in RNG_KEYS if k in d]
        if present and len(present) < len(RNG_KEYS):
            raise ValueError(f"training state has {present} but lacks "
                             f"{[k for k in RNG_KEYS if k not in d]}: give all the rng_* entries or none")
        if present:
            key = np.asarray(d["rng_key"])
            if key.shape != (624,) or key.dtype.kind not in "iu" or key.min() < 0 or key.max() >= 2**32:
                raise ValueError(f"training state entry 'rng_key' must be 624 integers in [0, 2**32), "
                                 f"got {key.dtype} of shape {key.shape}")
            out["rng_key"] = key.astype(np.uint32)
            out["rng_pos"] = integer("rng_pos", 0, 624)
            out["rng_has_gauss"] = integer("rng_has_gauss", 0, 1)
            out["rng_cached_gaussian"] = real("rng_cached_gaussian", -np.inf, True)
        return out

    def initial_training_state(self, X, y, **fit_params):
        """The training state that training on ``(X, y)`` would start from, without training.

        A zero model with fresh optimizer state at step 0, and the
        learning-rate schedule's constants for this data (the default rate of
        SGD and Momentum scales with the data's mean squared row norm).  The
        estimator is not changed.  Useful to build a state to start from
        (e.g. set ``weights`` to a known model) or to learn the schedule a
        data set gets: :mod:`sparseopt.dask` uses it to prepare each partition.

        Parameters
        ----------
        X, y
            As in ``partial_fit`` (validated the same way).
        **fit_params
            ``partial_fit``'s other arguments: ``sample_weight`` and, for
            :class:`LogisticRegression`, ``classes`` (default: the labels in
            ``y``).

        Returns
        -------
        state : dict
            As :meth:`get_training_state`, without the ``rng_*`` entries
            (the shuffling starts from ``random_state``).
        """
        est = clone(self)
        est._check_params()
        if is_classifier(est):
            fit_params["classes_from_y"] = True
        X, y_enc, sw, K = est._partial_fit_inputs(X, y, first=True, **fit_params)
        est._init_state(X.shape[1], K)
        indptr, _, data = to_csr(X)
        est._schedule = est._lr0((indptr, data), indptr.size - 1, _unit_mean(sw))
        return est.get_training_state()

    def _protect(self):
        """Run before changing the model or its optimizer state in place: the running
        :func:`atomic` call copies them (once), so that it can undo the change."""
        undo = self.__dict__.get("_undo")
        if undo is not None:
            undo.protect()

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

    def _schedule_of_run(self, X_data, n_samples, sw, in_fit):
        """``(lr0, power)`` of a training run: a constant ``learning_rate``, or the default schedule.

        The default schedule's constants are computed by ``fit`` and by the
        first ``partial_fit`` (from its data), then kept: later ``partial_fit``
        calls continue the same schedule (they are part of the training state).
        """
        if self.learning_rate is not None:
            return float(self.learning_rate), 0.0
        if in_fit or getattr(self, "_schedule", None) is None:
            self._schedule = self._lr0(X_data, n_samples, sw)
        return self._schedule

    def _curvature_scale(self, X_data, n_samples, sw):
        """``15 / (c (mean |x|^2 + fit_intercept))``: 1 on a9a-like data, where the defaults were tuned.

        ``c`` is 1 for the log loss, 2 for the multinomial loss and 30 for the
        squared loss, whose curvature is exactly ``|x|^2`` (the log loss's is at
        most ``|x|^2 / 4`` and much less once the model is confident), so
        that ``lr * |x|^2`` stays below 1/2 for least squares.
        """
        indptr, data = X_data
        mean_sq = _epoch.mean_sq_norm(indptr, data, sw)
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
        sw = _unit_mean(sw)
        l1, l2 = self._penalty_coefs()
        lr0, power = self._schedule_of_run((indptr, data), n, sw, in_fit)
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
        work = _epoch.work_arrays(self._kind, *self._W.shape, indptr[-1]) if gpu is None else None
        # a one-epoch run (partial_fit) that the kernel can undo needs no copy of the model: on
        # records, or on data with fewer stored entries than weight rows (compact records or
        # compact copies of the rows met), it writes nothing back if the model diverges
        n_features, K = self._W.shape
        undoes_itself = _epoch.writes_nothing_on_divergence(self._kind, K, l1, l2, exact, h, int(self.batch_size),
                                                            indptr[-1], n_features)
        # passes over all the weights on Numba's threads from the main thread only: two parallel
        # kernels at once (estimators trained in threads: Dask workers, joblib's threading
        # backend) abort the process under Numba's workqueue threading layer
        threads = threading.current_thread() is threading.main_thread()
        # an epoch on records of enough data (a large model, or large mini-batches) runs on two
        # threads, each with its own features (how they share them out is computed once for all
        # the run's epochs); only with two threads and two CPUs, since the threads wait for each
        # other
        P = np.empty(0, dtype=np.int64)
        if (gpu is None and threads and _two_threads()
                and (_epoch.on_two_threads(self._kind, K, l1, l2, exact, indptr[-1], n_features, n,
                                           int(self.batch_size))
                     or _epoch.momentum_on_two_threads(self._kind, K, h, l1, l2, exact, indptr[-1], n_features, n,
                                                       int(self.batch_size)))):
            P = _epoch.thread_split(indptr, indices, n_features)
        if not (gpu is None and max_iter == 1 and undoes_itself):
            self._protect()
        for _ in range(max_iter):
            h[R.LR] = lr0 / (1.0 + self.t_ / DECAY_STEPS) ** power
            order = rng.permutation(n).astype(np.int64) if self.shuffle else np.arange(n, dtype=np.int64)
            tic = time.perf_counter()
            status = _epoch.WRITTEN
            if gpu is not None:  # the same epoch on the GPU; the model is copied back after it
                t, loss_sum = gpu.run_epoch(self._kind, self._loss_kind, order, int(self.batch_size), h, l1, l2,
                                            exact, bool(self.fit_intercept), self.t_)
            else:
                t, loss_sum, status = _epoch.run_epoch(
                    self._kind, self._loss_kind, indptr, indices, data, y_enc, sw, order, int(self.batch_size),
                    self._W, S1, S2, self._b, bs1, bs2, h, l1, l2, exact, bool(self.fit_intercept), self._last,
                    self.t_, work, threads, P,
                )
            written = status != _epoch.DIVERGED
            sum_abs, sum_sq, finite = _epoch.weight_sums(self._W) if written else (np.nan, np.nan, False)
            if finite and (gpu is not None or not undoes_itself):
                # an overflowing accumulator leaves its weight finite (its step size 0); the
                # epochs that write nothing back on divergence checked the state they wrote
                finite = all(_epoch.all_finite(s) for s in self._state_w)
            self.t_ = int(t)
            self._epochs_done += 1
            n_iter += 1
            if not finite or not all(np.all(np.isfinite(a)) for a in [self._b, *self._state_b]):
                raise FloatingPointError(
                    "training diverged (non-finite weights or optimizer state); lower learning_rate or scale "
                    "the features"
                )
            loss = loss_sum / n + l1 * sum_abs + 0.5 * l2 * sum_sq
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

        _epoch.sync_last(self._last, self.t_)  # (CPU epochs on records and SGD's additive one leave it behind)
        arrays = dict(W=self._W, S1=S1, S2=S2, b=self._b, bs1=bs1, bs2=bs2, last=self._last)
        return DeviceEpochs(Xc, y_enc, sw, arrays)

    def _objective(self, X, y, sample_weight=None):
        """SPEC.md's objective of the current model on ``(X, y)`` (for tests and reports)."""
        raise NotImplementedError

    def _read_public(self):
        """Take ``coef_`` / ``intercept_`` (which the user may have set) as the model."""
        raise NotImplementedError

    def _public(self, name, shape):
        """Attribute ``name`` (``coef_`` or ``intercept_``, which the user may have set) as float64, checked.

        Any shape with the expected number of elements is accepted, as before; anything else,
        or NaN / infinite values, raise ``ValueError`` (before the model or its state change).
        """
        return _real_finite(name, getattr(self, name), int(np.prod(shape)), shape)

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
        if not np.any(sw > 0):
            raise ValueError("sample_weight sums to zero: nothing to fit")
        return sw

    def _check_init(self, coef_init, intercept_init, K, n_features):
        """``coef_init`` / ``intercept_init`` (shapes of ``coef_`` / ``intercept_``) as ``W`` / ``b``, or None."""
        if coef_init is not None:
            shape = (n_features,) if self._loss_kind == _epoch.SQUARED else (K, n_features)
            coef_init = _real_finite("coef_init", coef_init, K * n_features, shape).reshape(K, n_features).T
        if intercept_init is not None:
            intercept_init = _real_finite("intercept_init", intercept_init, K, (K,)).reshape(K)
        return coef_init, intercept_init

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
