"""Train the linear models on a Dask cluster by iterative parameter mixing.

``pip install "sparseopt[dask]"`` (dask and distributed).  Importing
:mod:`sparseopt` does not import Dask; importing this module does.

Method
------
*Iterative parameter mixing* (Zinkevich, Weimer, Smola & Li, "Parallelized
stochastic gradient descent", NIPS 2010; McDonald, Hall & Mann, "Distributed
training strategies for the structured perceptron", NAACL 2010).  The rows of
the training data are split into partitions (the chunks of a Dask array) that
stay in the memory of the workers for the whole training.  Each round:

1. the driver sends the current model (weights, intercept and optimizer
   state) to the workers;
2. on every partition, a worker runs ``local_epochs`` epochs of the
   estimator's own training kernel, from that model, with its own mini-batch
   shuffle;
3. the partition models are averaged, weighted by the partition's share of
   the total sample weight (its number of samples without
   ``sample_weight``), on the workers (partial sums of up to 8 models, in a
   fixed tree); the driver receives the average.

The averaged quantities are the weights, the intercept and every float
optimizer state: Momentum's velocity, AdaGrad's sum of squares, RMSProp's
mean square, Adam's two moments (all are averages or sums of per-step
quantities, for which the mean over partitions is the natural estimate; for
AdaGrad this keeps the accumulator at the size one partition's epoch gives
it, i.e. the step sizes of a single-machine run over one partition).  The
step counter ``t`` (Adam's bias correction, and the default learning-rate
schedule, which decays with ``t``) advances by the weighted mean of the
partitions' step counts, rounded: the state stays consistent with the steps
it has seen, and the rate decays with the steps each worker takes, as in
Zinkevich et al., not with the total over all workers.  Every partition of
a round runs at the same rate: the default rate of SGD and Momentum, which
depends on the data's mean squared row norm, is computed over all
partitions.  Only the model travels: per round, one copy from the driver to
each worker, one copy per partition to the worker that sums it into a
partial sum (and so on up the tree), and the average back to the driver.

Trade-offs
----------
* Each round, a partition's model moves about as far as one pass over
  ``1/P`` of the data would move it, and the average of ``P`` such moves is
  no longer than one of them: for a convex loss the mixed model converges
  (Zinkevich et al.; McDonald et al. for the perceptron), but per epoch it
  gains less than a single machine that sees all the data in one sequence.
  With a few partitions and ``local_epochs=1`` the difference after a
  few rounds is small (tested on a9a: within 0.5 accuracy points with each
  optimizer, 4 partitions); with many small partitions, more rounds are
  needed.
* ``local_epochs > 1`` cuts communication (fewer rounds) but lets the
  partition models drift apart between mixes, which costs accuracy when the
  partitions differ (e.g. sorted or per-source files: shuffle rows between
  files if you can).
* A round is synchronous: it lasts as long as the slowest partition, so
  partitions of similar size train best.
* The result depends on the partitioning (as well as ``random_state``): the
  same data split differently gives a (slightly) different model.

Data stays on the workers
-------------------------
:func:`fit_distributed` persists the Dask arrays, validates and converts each
chunk once on its worker (CSR arrays, encoded targets, sample weights) and
keeps the result there for all rounds.  :func:`from_svmlight_files` builds
the arrays from svmlight / libsvm files that the workers read themselves:
the driver never holds the data, only each file's shape.

Failures
--------
A worker that dies is handled by Dask: its partitions are recomputed from
their lineage (re-read from the files, or re-sent from the graph) on another
worker and the round is retried there, and since every round is a pure
function of (model, partition, seed), the result is the model an
uninterrupted run gives.  Dask gives up on a task after the workers running
it died ``distributed.scheduler.allowed-failures`` times (default 3) and
this module then raises :class:`DistributedTrainingError`.  So does any
partition whose preparation or training raises (bad values, unseen labels,
a diverging learning rate): the message names the partition, the round
and the cause; no partially mixed model is ever returned.  ``timeout``
bounds each round (e.g. no workers left).

Estimator API used
------------------
Only the estimators' public API: a partition trains with ``partial_fit``
(one call per local epoch) from the mixed model, which travels as the
estimator's training state (:meth:`get_training_state` /
:meth:`set_training_state` of :class:`~sparseopt.linear_model.LogisticRegression`
and :class:`~sparseopt.linear_model.LinearRegression`): weights, intercept,
optimizer state arrays (the entries averaged are those whose names start
with ``weights`` or ``intercept``), step and epoch counters, the
learning-rate schedule's constants and the shuffling generator, which each
partition seeds with its own seed.  :meth:`initial_training_state` gives
the zero model training starts from and, per partition, the schedule the
estimator would pick for that partition: the default learning rate of SGD
and Momentum (which depends on the data's mean squared row norm) is
computed over all partitions from those and written into the state that
every partition gets.  The tests compare with a NumPy transcription of
parameter mixing and with the single-machine estimator.
"""

import numbers
import os
import time
import warnings

import numpy as np
import scipy.sparse as sp

try:
    import dask
    import dask.array as da
    from distributed import CancelledError, Client, get_client
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sparseopt.dask needs dask and distributed: pip install 'sparseopt[dask]'"
    ) from exc

__all__ = [
    "DistributedTrainingError",
    "fit_distributed",
    "from_svmlight_files",
    "train_files",
    "cli_train",
]


class DistributedTrainingError(RuntimeError):
    """A partition could not be prepared or trained (the message names it); no model was produced."""


# ----------------------------------------------------------------------------
# reading svmlight files on the workers
# ----------------------------------------------------------------------------


def _read_file(path, zero_based):
    from ._io import read_svmlight

    X, y, zb = read_svmlight(path, zero_based=zero_based)
    return X, y, zb


def _file_meta(part):
    X, y, zb = part
    return X.shape[0], X.shape[1], zb


def _file_X(part, n_features):
    X = part[0]
    if X.shape[1] < n_features:
        X = X.copy()
        X.resize((X.shape[0], n_features))
    return X


def _file_y(part):
    return part[1]


def _get_client(client):
    if client is not None:
        return client
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "no Dask client: pass client=distributed.Client(...) or create one first "
            "(distributed.Client() starts a local cluster)"
        ) from None


def from_svmlight_files(paths, *, n_features=None, zero_based="auto", client=None):
    """Dask arrays of the data in svmlight / libsvm files, read by the workers.

    Each file becomes one partition (one chunk of rows), read on a worker
    with :func:`sparseopt._io.read_svmlight` and kept in that worker's
    memory; the driver only learns each file's number of rows and features.
    The workers must see the files at the given paths (a shared file system,
    or the same files on every machine).

    Parameters
    ----------
    paths : list of str or path-like
        The files (``.gz`` / ``.bz2`` decompressed on the fly).
    n_features : int, optional
        Number of features; ``None``: the largest index in any file decides.
        A file naming a feature beyond ``n_features`` raises.
    zero_based : {"auto", True, False}
        ``"auto"``: one-based (LIBSVM) unless some file uses index 0, in
        which case all files are read as zero-based.
    client : distributed.Client, optional
        Default: the current client.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
        Chunks are ``scipy.sparse.csr_matrix`` (float64), one per file,
        persisted on the workers.
    y : dask.array.Array of shape (n_samples,)
        The labels (float64), chunked as ``X``.
    zero_based : bool
        How the indices were read (save it with the model: ``sparseopt
        predict`` reads files the same way).

    Raises
    ------
    sparseopt._io.DataError
        A file is missing, malformed (the message names the line), empty, or
        has more than ``n_features`` features.
    """
    from ._io import DataError

    client = _get_client(client)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty: give at least one svmlight/libsvm file")
    if zero_based not in ("auto", True, False):
        raise ValueError(f"zero_based must be 'auto', True or False, got {zero_based!r}")
    if n_features is not None and (not isinstance(n_features, numbers.Integral) or n_features < 1):
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    token = dask.base.tokenize(paths, zero_based, time.time_ns())
    parts = [client.submit(_read_file, p, zero_based, key=f"sparseopt-read-{i}-{token}", pure=False)
             for i, p in enumerate(paths)]
    metas = client.gather([client.submit(_file_meta, f, key=f"sparseopt-meta-{i}-{token}")
                           for i, f in enumerate(parts)])
    zbs = [m[2] for m in metas]
    if zero_based == "auto" and any(zbs) and not all(zbs):
        # one file uses index 0: they all are zero-based; re-read the others as such
        parts = [f if zb else client.submit(_read_file, p, True, key=f"sparseopt-reread-{i}-{token}",
                                            pure=False)
                 for i, (f, p, zb) in enumerate(zip(parts, paths, zbs))]
        metas = client.gather([client.submit(_file_meta, f, key=f"sparseopt-meta2-{i}-{token}")
                               for i, f in enumerate(parts)])
    zb = bool(metas[0][2])
    widest = max(m[1] for m in metas)
    if n_features is None:
        n_features = widest
    elif widest > n_features:
        i = int(np.argmax([m[1] for m in metas]))
        raise DataError(f"{paths[i]}: uses feature index {widest - (1 - zb)} but n_features is {n_features}")
    meta_X = sp.csr_matrix((0, n_features), dtype=np.float64)
    xs, ys = [], []
    for i, (f, m) in enumerate(zip(parts, metas)):
        fx = client.submit(_file_X, f, n_features, key=f"sparseopt-X-{i}-{token}")
        fy = client.submit(_file_y, f, key=f"sparseopt-y-{i}-{token}")
        xs.append(da.from_delayed(fx, shape=(m[0], n_features), dtype=np.float64, meta=meta_X))
        ys.append(da.from_delayed(fy, shape=(m[0],), dtype=np.float64, meta=np.empty(0)))
    X = da.concatenate(xs, axis=0)
    y = da.concatenate(ys, axis=0)
    X, y = client.persist([X, y])
    return X, y, zb


# ----------------------------------------------------------------------------
# the estimator side: only its public API (partial_fit and the training state)
# ----------------------------------------------------------------------------


def _is_classifier(est):
    from sklearn.base import is_classifier

    return is_classifier(est)


def _mixed_keys(state):
    """The entries of a training state that are averaged: every float array of the model and its
    optimizer state (``weights``, ``intercept``, ``weights_<s>``, ``intercept_<s>``)."""
    return [k for k in state if k.startswith(("weights", "intercept"))]


def _with_rng(state, seed):
    """``state`` with its shuffling generator seeded by ``seed`` (the ``rng_*`` entries)."""
    _, key, pos, has_gauss, cached = np.random.RandomState(seed).get_state(legacy=True)
    return dict(state, rng_key=key, rng_pos=int(pos), rng_has_gauss=int(has_gauss),
                rng_cached_gaussian=float(cached))


def _without_rng(state):
    return {k: v for k, v in state.items() if not k.startswith("rng_")}


def _zero_state(template, classes, n_features):
    """The training state a fit starts from (zero model, fresh optimizer state), made on the driver.

    ``initial_training_state`` needs data to validate: one empty row of a known
    label.  Its schedule constants (which depend on the data for SGD and
    Momentum) are replaced by those computed over all partitions.
    """
    X = sp.csr_matrix((1, n_features), dtype=np.float64)
    if classes is None:
        return template.initial_training_state(X, np.zeros(1))
    return template.initial_training_state(X, classes[:1], classes=classes)


class _Partition:
    """One partition, validated and converted on its worker: CSR rows, targets, weights."""

    __slots__ = ("index", "X", "y", "sw", "n", "weight", "lr0", "power")

    def __init__(self, index, X, y, sw, weight, lr0, power):
        self.index = index
        self.X = X
        self.y = y
        self.sw = sw
        self.n = int(y.shape[0])
        self.weight = float(weight)
        self.lr0 = float(lr0)
        self.power = float(power)


def _prepare(index, template, classes, n_features, X, y, sw):
    """Validate chunk ``index`` as the estimator's ``partial_fit`` would and convert it (runs on a worker).

    The rows become a canonical CSR matrix once, here, so that every epoch's
    ``partial_fit`` finds them ready.  The partition's weight in the average
    is its total sample weight (times the class weights), and its learning-rate
    schedule is the one the estimator would pick for it alone.
    """
    from sklearn.base import clone
    from sklearn.utils import check_X_y
    from sklearn.utils.class_weight import compute_class_weight

    if sp.issparse(X) and X.format != "csr":
        X = X.tocsr()
    X, y = check_X_y(X, y, accept_sparse="csr", dtype=np.float64, order="C", y_numeric=classes is None)
    if X.shape[1] != n_features:
        raise ValueError(f"chunk has {X.shape[1]} features, expected {n_features}")
    X = sp.csr_matrix(X)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    est = clone(template)
    fit_kw = {"sample_weight": sw} if classes is None else {"sample_weight": sw, "classes": classes}
    state = est.initial_training_state(X, y, **fit_kw)  # checks X, y, sw and the labels
    w = np.ones(X.shape[0]) if sw is None else np.asarray(sw, dtype=np.float64)
    if classes is not None and template.class_weight is not None:
        cw = compute_class_weight(template.class_weight, classes=classes, y=y)
        w = w * cw[np.searchsorted(classes, y)]
    if w.sum() <= 0:
        raise ValueError("the sample weights of this partition sum to zero")
    return _Partition(index, X, y, sw, w.sum(), state["lr0"], state["lr_power"])


def _summary(part):
    return part.n, part.weight, part.lr0, part.power


def _labels(y):
    labels, counts = np.unique(np.asarray(y), return_counts=True)
    return labels, counts


def _local_round(template, state, part, seed, epochs):
    """``epochs`` epochs of ``partial_fit`` on one partition from ``state`` (runs on a worker)."""
    from sklearn.base import clone

    est = clone(template).set_training_state(_with_rng(state, seed))
    tic = time.perf_counter()
    for _ in range(epochs):
        est.partial_fit(part.X, part.y, sample_weight=part.sw)
    seconds = time.perf_counter() - tic
    return {"state": _without_rng(est.get_training_state()), "seconds": seconds,
            "loss": float(est.loss_curve_[-1]), "weight": part.weight}


# partial sums of at most this many models are formed on the workers, in a
# fixed tree over the partitions (so that the average is deterministic)
_FAN_IN = 8


def _weighted_sum(items, leaf):
    """Sum of ``weight * model`` over partition results (``leaf``) or of partial sums.

    A partial sum has the form of a result whose fields are already weighted
    (and its step count in ``t``).
    """
    acc = None
    for r in items:
        w = r["weight"] if leaf else 1.0
        state = r["state"]
        keys = _mixed_keys(state)
        if acc is None:
            acc = {"state": dict(state), "t": 0.0, "loss": 0.0, "weight": 0.0, "seconds": []}
            for k in keys:
                acc["state"][k] = w * state[k]
        else:
            for k in keys:
                acc["state"][k] += w * state[k]
        acc["t"] += w * state["t"] if leaf else r["t"]
        acc["loss"] += w * r["loss"]
        acc["weight"] += r["weight"]
        acc["seconds"] += [r["seconds"]] if leaf else r["seconds"]
    return acc


def _mix(items, leaf):
    """The weighted average of the partition models, from results (``leaf``) or partial sums.

    Returns ``{"state": the averaged training state, "loss": ..., "partition_seconds": [...]}``.
    """
    total = _weighted_sum(items, leaf)
    inv = 1.0 / total["weight"]
    state = total["state"]
    for k in _mixed_keys(state):
        state[k] = state[k] * inv
    state["t"] = int(round(total["t"] * inv))
    return {"state": state, "loss": float(total["loss"] * inv), "partition_seconds": total["seconds"]}


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------


def _as_row_chunked(X, y, sw):
    """``X`` with one column chunk; ``y`` and ``sw`` as Dask arrays chunked like ``X``'s rows."""
    if not isinstance(X, da.Array):
        raise TypeError(
            f"X must be a dask.array.Array (chunks of scipy.sparse CSR or NumPy rows), got {type(X).__name__}; "
            "use dask.array.from_array(X, chunks=(rows, n_features)) or from_svmlight_files"
        )
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got {X.ndim} dimensions")
    if any(np.isnan(c) for c in X.chunks[0]) or np.isnan(X.shape[1]):
        raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    rows = X.chunks[0]

    def like(a, name):
        if a is None:
            return None
        if not isinstance(a, da.Array):
            a = np.asarray(a)
            if a.ndim != 1 or a.shape[0] != X.shape[0]:
                raise ValueError(f"{name} must have shape ({X.shape[0]},), got {a.shape}")
            return da.from_array(a, chunks=(rows,))
        if a.ndim != 1 or a.shape[0] != X.shape[0]:
            raise ValueError(f"{name} must have shape ({X.shape[0]},) like X's rows, got {a.shape}")
        return a if a.chunks[0] == rows else a.rechunk((rows,))

    return X, like(y, "y"), like(sw, "sample_weight")


def _base_seed(random_state):
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {random_state!r}")


def _partition_seed(base, rnd, index):
    return int(np.random.SeedSequence([base, rnd, index]).generate_state(1)[0])


def _wait_all(futures, what, rnd, timeout, name="partition", labels=None):
    """Wait for ``futures``; raise :class:`DistributedTrainingError` naming the first failed one.

    Partitions are named by their row-chunk index (``labels``).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    labels = range(len(futures)) if labels is None else labels
    for i, f in zip(labels, futures):
        where = (f"{name} {i}" if name == "partition" else name) + (f" in round {rnd}" if rnd is not None else "")
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            exc = f.exception(timeout=left)  # waits on the future's own client
        except TimeoutError:  # distributed's TimeoutError is the built-in one
            raise DistributedTrainingError(
                f"{what} did not finish within {timeout} s (are workers alive? see the Dask dashboard)"
            ) from None
        except CancelledError:
            raise DistributedTrainingError(
                f"{what}: {where} was cancelled (workers lost or client closed)") from None
        if exc is not None:
            raise DistributedTrainingError(f"{what}: {where} failed: {type(exc).__name__}: {exc}") from exc


def fit_distributed(estimator, X, y, sample_weight=None, *, classes=None, client=None, n_rounds=None,
                    local_epochs=1, timeout=None, callback=None):
    """Fit a sparseopt linear model on a Dask cluster by iterative parameter mixing.

    Parameters
    ----------
    estimator : sparseopt.linear_model.LogisticRegression or LinearRegression
        Its parameters (optimizer, learning rate and schedule, batch size,
        penalty, ``random_state``, ...) define the training; it is fitted in
        place and returned.  ``early_stopping`` is not supported.  With
        ``warm_start=True`` a fitted estimator starts from its ``coef_`` and
        ``intercept_`` (with fresh optimizer state, as ``fit``).
    X : dask.array.Array of shape (n_samples, n_features)
        Row chunks are the partitions: ``scipy.sparse`` matrices (CSR best)
        or NumPy arrays.  Column chunks are merged.
    y : dask.array.Array or array-like of shape (n_samples,)
    sample_weight : dask.array.Array or array-like of shape (n_samples,), optional
    classes : array-like, optional
        All class labels (classifier); default: the labels found in ``y``.
    client : distributed.Client, optional
        Default: the current client.
    n_rounds : int, optional
        Mixing rounds; default ``estimator.max_iter``.  Training stops
        earlier by the estimator's ``tol`` / ``n_iter_no_change`` rule,
        applied to the mixed training loss of each round.
    local_epochs : int, default 1
        Epochs each partition runs between two mixes.
    timeout : float, optional
        Seconds a round (or the preparation) may take before
        :class:`DistributedTrainingError` is raised.
    callback : callable, optional
        ``callback(round, info)`` after each round, with ``info`` a dict:
        ``loss`` (mixed training loss), ``seconds`` (the round's wall time),
        ``partition_seconds`` (each partition's training time on its
        worker), ``t`` and ``epochs`` (the counters after the round).

    Returns
    -------
    estimator
        Fitted: ``coef_``, ``intercept_``, ``classes_``, ``n_iter_`` (rounds
        run), ``loss_curve_`` (mixed loss per round), ``t_``; it predicts,
        pickles and continues with ``partial_fit`` as after ``fit``.

    Raises
    ------
    DistributedTrainingError
        A partition failed to prepare or train (message names it), or a
        round timed out.
    """
    from sklearn.base import clone
    from sklearn.utils.class_weight import compute_class_weight

    from .linear_model import LinearRegression, LogisticRegression

    if not isinstance(estimator, (LogisticRegression, LinearRegression)):
        raise TypeError(f"estimator must be a sparseopt.linear_model estimator, got {type(estimator).__name__}")
    if estimator.early_stopping:
        raise ValueError("early_stopping=True is not supported by fit_distributed; use tol / n_iter_no_change")
    n_rounds = estimator.max_iter if n_rounds is None else n_rounds
    for name, v in (("n_rounds", n_rounds), ("local_epochs", local_epochs)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if timeout is not None and not (isinstance(timeout, numbers.Real) and timeout > 0):
        raise ValueError(f"timeout must be a positive number or None, got {timeout!r}")
    client = _get_client(client)
    X, y, sample_weight = _as_row_chunked(X, y, sample_weight)
    n_features = int(X.shape[1])
    is_clf = _is_classifier(estimator)
    seed0 = _base_seed(estimator.random_state)

    # -- the data on the workers -----------------------------------------------------
    arrays = [X, y] + ([sample_weight] if sample_weight is not None else [])
    arrays = client.persist(arrays)
    # one partition per non-empty row chunk
    keep = [i for i, rows in enumerate(X.chunks[0]) if rows > 0]
    if not keep:
        raise ValueError("X has no rows")

    def blocks(a):
        return [f for i, f in enumerate(client.compute(list(a.to_delayed().ravel()))) if i in set(keep)]

    parts_X = blocks(arrays[0])
    parts_y = blocks(arrays[1])
    parts_w = blocks(arrays[2]) if sample_weight is not None else [None] * len(parts_X)
    token = dask.base.tokenize(seed0, time.time_ns(), id(estimator))

    template = clone(estimator).set_params(verbose=0, warm_start=False)
    if is_clf:
        found = [client.submit(_labels, f, key=f"sparseopt-labels-{i}-{token}") for i, f in enumerate(parts_y)]
        _wait_all(found, "reading the labels", None, timeout, labels=keep)
        found = client.gather(found)
        labels = np.unique(np.concatenate([f[0] for f in found]))
        if classes is None:
            classes = labels
        else:
            classes = np.unique(np.asarray(classes))
            unseen = np.setdiff1d(labels, classes)
            if unseen.size:
                raise ValueError(f"y contains labels {unseen.tolist()} not in classes {classes.tolist()}")
        if classes.size < 2:
            raise ValueError(f"LogisticRegression needs at least 2 classes; the data hold only {classes.tolist()}")
        if isinstance(estimator.class_weight, str) and estimator.class_weight == "balanced":
            # balanced weights need the class counts of all partitions
            counts = np.zeros(classes.size)
            for lab, cnt in found:
                counts[np.searchsorted(classes, lab)] += cnt
            y_rep = np.repeat(classes, counts.astype(np.int64))
            cw = compute_class_weight("balanced", classes=classes, y=y_rep)
            template.set_params(class_weight=dict(zip(classes.tolist(), cw)))
    else:
        classes = None
    # the model training starts from; checks the estimator's parameters (ValueError)
    state = _zero_state(template, classes, n_features)

    prepared = [client.submit(_prepare, i, template, classes, n_features, fx, fy, fw,
                              key=f"sparseopt-prepare-{i}-{token}")
                for i, (fx, fy, fw) in enumerate(zip(parts_X, parts_y, parts_w))]
    _wait_all(prepared, "preparing the data", None, timeout, labels=keep)
    summaries = client.gather([client.submit(_summary, p, key=f"sparseopt-summary-{i}-{token}")
                               for i, p in enumerate(prepared)])
    weights = np.array([s[1] for s in summaries])
    # learning_rate=None for SGD / Momentum scales lr0 by 1 / (mean |x|^2 + c): the value
    # over all the data is the weighted harmonic mean of the partitions' values (the
    # other optimizers' lr0 does not depend on the data: all partitions agree)
    lr0s = np.array([s[2] for s in summaries])
    lr0 = float(lr0s[0]) if np.all(lr0s == lr0s[0]) else float(weights.sum() / np.sum(weights / lr0s))
    state["lr0"], state["lr_power"] = lr0, float(summaries[0][3])
    # ``arrays`` stays referenced until the end: if a worker dies, Dask recomputes the
    # prepared partitions it held from these chunks (or from their own lineage)

    # -- the model ---------------------------------------------------------------------------
    K = state["weights"].shape[1]
    if estimator.warm_start and hasattr(estimator, "coef_") and (not is_clf or (
            hasattr(estimator, "classes_") and np.array_equal(estimator.classes_, classes))):
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        if coef.size == n_features * K:  # the state's weights are coef_ transposed
            state["weights"] = np.ascontiguousarray(coef.reshape(K, n_features).T)
            state["intercept"] = np.asarray(estimator.intercept_, dtype=np.float64).reshape(K).copy()

    # -- rounds --------------------------------------------------------------------------------
    tol = estimator.tol
    best, no_improve = np.inf, 0
    losses = []
    converged = False
    for rnd in range(n_rounds):
        tic = time.perf_counter()
        [state_f] = client.scatter([state], broadcast=True, hash=False)
        futs = [client.submit(_local_round, template, state_f, p, _partition_seed(seed0, rnd, i), local_epochs,
                              key=f"sparseopt-round{rnd}-part{i}-{token}")
                for i, p in enumerate(prepared)]
        _wait_all(futs, "training", rnd, timeout, labels=keep)
        level, leaf, depth = futs, True, 0
        while len(level) > _FAN_IN:  # partial sums on the workers, in a fixed tree
            level = [client.submit(_weighted_sum, level[j:j + _FAN_IN], leaf,
                                   key=f"sparseopt-sum{rnd}-{depth}-{j}-{token}")
                     for j in range(0, len(level), _FAN_IN)]
            leaf, depth = False, depth + 1
        mixed = client.submit(_mix, level, leaf, key=f"sparseopt-mix{rnd}-{token}")
        _wait_all([mixed], "mixing", rnd, timeout, name="the average")
        result = mixed.result()
        del futs, level, mixed, state_f
        state = result["state"]
        if not all(np.all(np.isfinite(state[k])) for k in _mixed_keys(state)):
            raise DistributedTrainingError(f"training diverged in round {rnd} (non-finite weights); "
                                           "lower learning_rate or scale the features")
        loss = result["loss"]
        part_seconds = result["partition_seconds"]
        losses.append(loss)
        if callback is not None:
            callback(rnd, {"loss": loss, "seconds": time.perf_counter() - tic, "t": state["t"],
                           "epochs": state["epochs"], "partition_seconds": part_seconds})
        if tol is not None:
            no_improve = no_improve + 1 if loss > best - tol else 0
            best = min(best, loss)
            if no_improve >= estimator.n_iter_no_change:
                converged = True
                break
    if tol is not None and not converged and n_rounds > 1:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"Maximum number of rounds ({n_rounds}) reached and the stopping rule (tol={tol}) was not "
            "met; increase n_rounds if the loss is still falling.",
            ConvergenceWarning,
        )

    # -- the fitted estimator ----------------------------------------------------------------
    # no rng_* entries: a later partial_fit shuffles from random_state, as after fit
    estimator.set_training_state(state)
    estimator.n_iter_ = len(losses)
    estimator.loss_curve_ = losses
    return estimator


# ----------------------------------------------------------------------------
# the command line's entry point
# ----------------------------------------------------------------------------


def train_files(scheduler, paths, estimator, *, n_rounds=None, local_epochs=1, timeout=None, callback=None):
    """Train ``estimator`` on svmlight files with the Dask cluster at ``scheduler``.

    What ``sparseopt train --scheduler ADDRESS FILES...`` runs.  Each file
    is one partition, read by a worker (see :func:`from_svmlight_files`;
    paths are made absolute, and the workers must see them).

    Parameters
    ----------
    scheduler : str or distributed.Client
        Scheduler address (``tcp://host:8786``) or an open client.
    paths : list of str
    estimator : LogisticRegression or LinearRegression
    n_rounds, local_epochs, timeout, callback
        As in :func:`fit_distributed`.

    Returns
    -------
    estimator : the fitted estimator
    info : dict
        ``zero_based``, ``n_samples``, ``n_features``, ``n_partitions``,
        ``n_workers`` (at the start), ``seconds``.
    """
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    own = not isinstance(scheduler, Client)
    client = Client(scheduler, set_as_default=False) if own else scheduler
    try:
        tic = time.perf_counter()
        n_workers = len(client.scheduler_info()["workers"])
        X, y, zb = from_svmlight_files(paths, client=client)
        fit_distributed(estimator, X, y, client=client, n_rounds=n_rounds, local_epochs=local_epochs,
                        timeout=timeout, callback=callback)
        info = {"zero_based": zb, "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
                "n_partitions": len(paths), "n_workers": n_workers,
                "seconds": time.perf_counter() - tic}
        del X, y
    finally:
        if own:
            client.close()
    return estimator, info


def cli_train(args, out):
    """``sparseopt train --scheduler ADDRESS FILES... -o MODEL``: called by :mod:`sparseopt.cli`.

    Trains on the cluster with one partition per file, ``--epochs`` rounds
    of one local epoch each, and saves the model as ``sparseopt train``
    does.  Errors are raised as the command line's one-line errors.
    """
    from . import cli
    from ._io import DataError
    from .linear_model import LinearRegression, LogisticRegression

    kw = cli._estimator_kwargs(args)
    est = LinearRegression(**kw) if args.regression else LogisticRegression(**kw)
    progress = cli.Progress(args.quiet)
    progress.update(f"connecting to {args.scheduler} ...")

    def on_round(rnd, info):
        progress.update(f"round {rnd + 1}/{args.epochs}  mixed loss {info['loss']:.6f}  {info['seconds']:.1f}s")

    try:
        client = Client(args.scheduler, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise cli.CLIError(f"cannot connect to the Dask scheduler at {args.scheduler}: {exc}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=30)
        except TimeoutError:
            raise cli.CLIError(f"the Dask scheduler at {args.scheduler} has no workers after 30 s; start some "
                               f"with: dask worker {args.scheduler}") from None
        est, info = train_files(client, args.data, est, n_rounds=args.epochs, callback=on_round)
    except DataError:
        raise  # the command line prints it as FILE: reason
    except (DistributedTrainingError, ValueError, TypeError) as exc:
        raise cli.CLIError(str(exc)) from None
    finally:
        progress.done()
        client.close()
    path = cli._save(args.output, est, info["zero_based"])
    kind = "LinearRegression" if args.regression else f"LogisticRegression ({len(est.classes_)} classes)"
    print(f"trained {kind} with {args.optimizer} on {info['n_samples']} samples x {info['n_features']} features "
          f"in {info['n_partitions']} partitions on {info['n_workers']} Dask worker"
          f"{'s' * (info['n_workers'] != 1)}, {est.n_iter_} rounds, "
          f"{info['seconds']:.2f} s", file=out)
    print(f"mixed training loss {est.loss_curve_[-1]:.6f} (last round)", file=out)
    print(f"model saved to {path}", file=out)
    return 0
