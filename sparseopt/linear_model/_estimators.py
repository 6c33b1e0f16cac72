"""``LogisticRegression`` and ``LinearRegression`` trained by the five optimizers."""

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

from . import _epoch
from ._base import BaseSparseLinear, _assign, _checked_chunk, _validate_data, atomic

__all__ = ["LogisticRegression", "LinearRegression"]

_COMMON_PARAMS = """
    optimizer : {"sgd", "momentum", "adagrad", "rmsprop", "adam"} or sparseopt.optim optimizer, default "adagrad"
        The rule of :mod:`sparseopt.optim` that trains the model (an
        optimizer class or instance gives its kind and hyperparameters; an
        instance's ``lr`` and ``weight_decay`` are not used, with a warning).
    optimizer_params : dict, optional
        That optimizer's other hyperparameters (``momentum``, ``nesterov``,
        ``rho``, ``beta1``, ``beta2``, ``eps``, ``initial_accumulator_value``);
        ``lr`` is ``learning_rate`` and the penalty is ``alpha``.
    learning_rate : float, optional
        Constant learning rate.  ``None`` picks a default per optimizer,
        with a schedule: an epoch that starts after ``t`` steps runs at
        ``lr0 / (1 + t / 1000)**p`` with (lr0, p) = sgd (1.0 * s, 2),
        momentum (0.1 * s, 2), adagrad (0.5, 0.5), rmsprop (0.01, 1),
        adam (0.01, 1).  ``s`` scales by the mean squared row norm of the
        data and the curvature of the loss (s = 1 for binary rows with 14
        ones under the log loss, as LIBSVM's a9a, where they were tuned).
        They suit binary, tf-idf or standardised features.  ``fit`` and the
        first ``partial_fit`` compute ``lr0`` (from their data); later
        ``partial_fit`` calls continue that schedule (see
        ``get_training_state``).
    max_iter : int, default 10
        Maximum number of epochs (passes over the data) of ``fit``.
    batch_size : int, default 32
        Samples per step; each step updates the rows of the features present
        in its samples (the mean gradient over the batch).
    penalty : {"l2", "l1", "elasticnet", None}, default "l2"
    alpha : float, default 1e-5
        Penalty strength: the objective is the (sample-weighted) mean loss
        plus ``alpha * R(w)``.  scikit-learn's ``C`` is ``1 / (alpha * n_samples)``.
    l1_ratio : float, default 0.15
        Share of the l1 term for ``penalty="elasticnet"``.
    fit_intercept : bool, default True
        Learn an (unpenalised) intercept.
    tol : float or None, default 1e-4
        Stop when the epoch's loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs (the validation score with
        ``early_stopping``); None runs ``max_iter`` epochs.
    n_iter_no_change : int, default 5
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data and stop on its score.
    validation_fraction : float, default 0.1
    shuffle : bool, default True
        Shuffle the samples at each epoch.
    random_state : int, RandomState or None
        Seeds the shuffling and the validation split.
    warm_start : bool, default False
        Start ``fit`` from the previous ``coef_`` and ``intercept_``.
    lazy : {"skip", "exact"}, default "skip"
        What the optimizer does for a feature absent from a step.  ``"skip"``:
        its optimizer state stays as it is and only the penalty acts
        (the proximal step, caught up in closed form when the feature is next
        seen).  ``"exact"``: the zero-gradient steps of the rule are replayed
        as well (Momentum's velocity keeps moving, RMSProp's and Adam's
        averages decay), step by step when a penalty is set: slower.
    verbose : int, default 0
        Print the loss and time of each epoch.
    device : {"cpu", "cuda"}, default "cpu"
        Where to train.  ``"cuda"`` trains on the GPU (needs numba-cuda and
        an NVIDIA GPU, see :mod:`sparseopt.cuda`): the CSR data, model and
        optimizer state live on the device, each mini-batch's gradient and
        update are kernels, and the model is copied back after each epoch,
        so ``coef_``, ``predict`` and the rest work on the host.  The
        results equal the CPU's up to float rounding.  At most 64 classes.
"""

_COMMON_ATTRS = """
    n_iter_ : int
        Epochs run by the last ``fit`` (1 for ``partial_fit``).
    t_ : int
        Optimizer steps taken so far (mini-batches).
    n_features_in_ : int
    loss_curve_ : list of float
        Per epoch: mean loss met during the epoch plus the penalty at its end.
"""


class LogisticRegression(LinearClassifierMixin, ClassifierMixin, BaseSparseLinear):
    __doc__ = f"""Logistic regression (binary, or multinomial softmax) trained by a sparseopt optimizer.

    Minimises ``sum_i s_i log_loss(x_i, y_i) / sum_i s_i + alpha R(w)`` with
    the intercept unpenalised (SPEC.md).  Training runs whole epochs in a
    fused Numba kernel that reads CSR rows and updates only the weight rows
    of the features present in each mini-batch; the penalty is applied just
    in time, so it costs nothing for absent features and the model still
    converges to the minimiser of the objective.  Dense input is converted
    to CSR (same model).

    AdaGrad, RMSProp and Adam with one output and a penalty (lazy ``"skip"``,
    or AdaGrad in either mode) train on two of Numba's threads, each with its
    own features, when called from the main thread, on data of 262,144
    stored entries or more (and at least one per feature), rows sorted by
    index, and either 16,384 features or more, or mini-batches of 1,024
    stored entries on average: the same model to rounding, 1.3-1.8x faster.
    ``numba.set_num_threads(1)`` (or ``NUMBA_NUM_THREADS=1``) keeps training
    on one thread.

    Parameters
    ----------{_COMMON_PARAMS}    class_weight : dict, "balanced" or None
        Weights multiplying the sample weights of each class.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        A view of the model: further training updates it in place, and edits
        to it are what the next ``partial_fit`` continues from (copy it to
        keep a snapshot).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,){_COMMON_ATTRS}
    Examples
    --------
    >>> from sparseopt.datasets import load_a9a
    >>> from sparseopt.linear_model import LogisticRegression
    >>> X, y = load_a9a()
    >>> clf = LogisticRegression(optimizer="adagrad", random_state=0).fit(X, y)  # doctest: +SKIP
    """

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
        class_weight=None,
        lazy="skip",
        verbose=0,
        device="cpu",
    ):
        super().__init__(
            optimizer=optimizer, optimizer_params=optimizer_params, learning_rate=learning_rate,
            max_iter=max_iter, batch_size=batch_size, penalty=penalty, alpha=alpha, l1_ratio=l1_ratio,
            fit_intercept=fit_intercept, tol=tol, n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping, validation_fraction=validation_fraction, shuffle=shuffle,
            random_state=random_state, warm_start=warm_start, lazy=lazy, verbose=verbose,
            device=device,
        )
        self.class_weight = class_weight

    # -- targets -----------------------------------------------------------
    def _encode(self, y):
        """Targets as the kernel wants them: ±1 (binary) or the class index (float64)."""
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == y):
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            raise ValueError(f"y contains labels {unseen.tolist()} not in classes {self.classes_.tolist()}")
        if len(self.classes_) == 2:
            return np.where(idx == 1, 1.0, -1.0)
        return idx.astype(np.float64)

    def _weights(self, y, sample_weight, X):
        sw = self._check_sample_weight(sample_weight, X)
        if self.class_weight is not None:
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            if not np.all(np.isfinite(cw)) or np.any(cw < 0):
                raise ValueError(f"class_weight must give finite, non-negative weights, got {self.class_weight!r}")
            cw = cw[np.searchsorted(self.classes_, y)]
            with np.errstate(over="ignore"):
                weighted = sw * cw
            sw = weighted if np.all(np.isfinite(weighted)) else (sw / sw.max()) * cw  # huge weights: same ratios
            if not np.any(sw > 0):
                raise ValueError("sample_weight times class_weight sums to zero: nothing to fit")
        return sw

    def _setup(self, n_classes):
        self._loss_kind = _epoch.LOG if n_classes == 2 else _epoch.MULTINOMIAL
        return 1 if n_classes == 2 else n_classes

    # -- fitting -----------------------------------------------------------
    @atomic
    def fit(self, X, y, sample_weight=None, coef_init=None, intercept_init=None):
        """Fit the model with up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            CSR is fastest; other formats and dense arrays are converted.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights.
        coef_init, intercept_init : ndarray, optional
            Starting point, shapes as ``coef_`` and ``intercept_``.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, order="C")
        check_classification_targets(y)
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(
                f"LogisticRegression needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {classes[0]!r}"
            )
        if self.warm_start and hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
            self._forget()
        self.classes_ = classes
        K = self._setup(classes.size)
        sw = self._weights(y, sample_weight, X)
        y_enc = self._encode(y)
        split = None
        if self.early_stopping:
            split = self._split(y, sw)
            self._val_targets = np.asarray(y)
        coef_init, intercept_init = self._check_init(coef_init, intercept_init, K, X.shape[1])
        return self._fit_common(X, y_enc, sw, K, X.shape[1], split, coef_init, intercept_init)

    @atomic
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch over ``(X, y)``, continuing from the current state.

        Parameters
        ----------
        X, y, sample_weight
            As in :meth:`fit`.
        classes : array-like, required on the first call
            All the classes ``y`` may take in this and later calls.

        Returns
        -------
        self
        """
        self._check_params()
        X, y_enc, sw, K = self._partial_fit_inputs(X, y, not hasattr(self, "classes_"), classes=classes,
                                                   sample_weight=sample_weight)
        return self._partial_fit_common(X, y_enc, sw, K, X.shape[1])

    def _partial_fit_inputs(self, X, y, first, classes=None, sample_weight=None, classes_from_y=False):
        """``partial_fit``'s checks: ``(X, encoded y, weights, K)``; sets ``classes_`` on the first call.

        ``classes_from_y``: on the first call, ``classes=None`` means the labels in ``y``.
        """
        X, y = _checked_chunk(self, X, y, first)
        if first or y.dtype.kind != getattr(self, "_label_kind", None):
            check_classification_targets(y)
        if first:
            if classes is None and classes_from_y:
                classes = y
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            classes = np.unique(np.asarray(classes))
            if classes.size < 2:
                raise ValueError(f"classes must hold at least 2 classes, got {classes.tolist()}")
            self.classes_ = classes
            # later calls skip type_of_target (0.11 ms a call, 5% of a 100-row call at 2**20
            # features) for labels of the kind of these classes, which are then class labels
            # whenever _encode finds each among them (else it raises)
            kind = classes.dtype.kind
            plain = kind in "biuUS" or (kind == "f" and np.all(np.isfinite(classes)) and np.all(classes % 1 == 0))
            self._label_kind = kind if plain and type_of_target(classes) in ("binary", "multiclass") else None
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(
                f"classes={np.unique(np.asarray(classes)).tolist()} differs from the classes of the first "
                f"call to partial_fit, {self.classes_.tolist()}"
            )
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' needs all the data; use fit, or a dict of weights")
        K = self._setup(self.classes_.size)
        y_enc = self._encode(y)
        sw = self._weights(y, sample_weight, X)
        return X, y_enc, sw, K

    def _split(self, y, sw):
        n = y.shape[0]
        idx = np.arange(n)
        try:
            return train_test_split(idx, test_size=self.validation_fraction, stratify=y,
                                    random_state=self.random_state)
        except ValueError as exc:
            raise ValueError(f"early_stopping: cannot hold out validation_fraction={self.validation_fraction} "
                             f"of {n} samples with every class in both parts ({exc})") from None

    def _forget(self):
        for name in ("_W", "_b", "coef_", "intercept_"):
            if hasattr(self, name):
                delattr(self, name)

    # -- the model ---------------------------------------------------------
    def _publish(self):
        self.coef_ = self._W.T  # a view (no O(n_features K) transposed copy per call)
        self.intercept_ = self._b.copy()

    def _read_public(self):
        n_features, K = self._W.shape
        _assign(self._W, self._public("coef_", (K, n_features)).reshape(K, n_features).T, self._protect)
        self._b[:] = self._public("intercept_", (K,)).reshape(K)

    def predict_proba(self, X):
        """Class probabilities: the logistic function (binary) or the softmax of the decision values.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        d = self.decision_function(X)
        if d.ndim == 1:
            p = expit(d)
            return np.column_stack([1.0 - p, p])
        return softmax(d, axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably."""
        d = self.decision_function(X)
        if d.ndim == 1:
            return np.column_stack([log_expit(-d), log_expit(d)])
        return log_softmax(d, axis=1)

    def _objective(self, X, y, sample_weight=None):
        """SPEC.md's objective (mean log loss plus ``alpha R(w)``) of the model on ``(X, y)``."""
        check_is_fitted(self)
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        logp = self.predict_log_proba(X)
        loss = -logp[np.arange(len(y)), np.searchsorted(self.classes_, y)]
        l1, l2 = self._penalty_coefs()
        W = self.coef_
        return float(np.sum(sw * loss) / sw.sum() + l1 * np.abs(W).sum() + 0.5 * l2 * np.sum(W * W))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = True
        return tags


class LinearRegression(RegressorMixin, BaseSparseLinear):
    __doc__ = f"""Least-squares linear regression trained by a sparseopt optimizer.

    Minimises ``sum_i s_i (w.x_i + b - y_i)^2 / 2 / sum_i s_i + alpha R(w)``
    (SPEC.md): ridge regression for ``penalty="l2"`` (scikit-learn's
    ``Ridge(alpha=alpha * n_samples)``), the lasso for ``"l1"``, the elastic
    net for ``"elasticnet"``.  Training is as in :class:`LogisticRegression`.

    Parameters
    ----------{_COMMON_PARAMS}
    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        A view of the model, as for :class:`LogisticRegression`.
    intercept_ : float{_COMMON_ATTRS}"""

    _loss_kind = _epoch.SQUARED

    @atomic
    def fit(self, X, y, sample_weight=None, coef_init=None, intercept_init=None):
        """Fit the model with up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        coef_init : ndarray of shape (n_features,), optional
        intercept_init : float, optional

        Returns
        -------
        self
        """
        self._check_params()
        X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, order="C", y_numeric=True)
        y = np.require(y, dtype=np.float64, requirements=["C", "W"])  # one kernel signature
        sw = self._check_sample_weight(sample_weight, X)
        split = None
        if self.early_stopping:
            idx = np.arange(X.shape[0])
            split = train_test_split(idx, test_size=self.validation_fraction, random_state=self.random_state)
            self._val_targets = y
        coef_init, intercept_init = self._check_init(coef_init, intercept_init, 1, X.shape[1])
        return self._fit_common(X, y, sw, 1, X.shape[1], split, coef_init, intercept_init)

    @atomic
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch over ``(X, y)``, continuing from the current state."""
        self._check_params()
        X, y, sw, K = self._partial_fit_inputs(X, y, not hasattr(self, "_W"), sample_weight=sample_weight)
        return self._partial_fit_common(X, y, sw, K, X.shape[1])

    def _partial_fit_inputs(self, X, y, first, sample_weight=None):
        """``partial_fit``'s checks: ``(X, y as float64, weights, 1)``."""
        X, y = _checked_chunk(self, X, y, first, y_numeric=True)
        y = np.require(y, dtype=np.float64, requirements=["C", "W"])  # one kernel signature
        sw = self._check_sample_weight(sample_weight, X)
        return X, y, sw, 1

    def _publish(self):
        self.coef_ = self._W[:, 0]  # a view
        self.intercept_ = float(self._b[0])

    def _read_public(self):
        _assign(self._W[:, 0], self._public("coef_", (self._W.shape[0],)).reshape(-1), self._protect)
        self._b[0] = self._public("intercept_", ()).item()

    def predict(self, X):
        """Predicted targets ``X @ coef_ + intercept_``."""
        check_is_fitted(self)
        X = _validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        return np.asarray(X @ self.coef_).reshape(-1) + self.intercept_

    def _objective(self, X, y, sample_weight=None):
        """SPEC.md's objective (half mean squared error plus ``alpha R(w)``) of the model on ``(X, y)``."""
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        r = self.predict(X) - np.asarray(y, dtype=np.float64)
        l1, l2 = self._penalty_coefs()
        w = self.coef_
        return float(0.5 * np.sum(sw * r * r) / sw.sum() + l1 * np.abs(w).sum() + 0.5 * l2 * w @ w)
