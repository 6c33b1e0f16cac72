"""Reading svmlight / libsvm files and saving linear models as portable ``.npz``.

Used by the ``sparseopt`` command line; importable on its own.

svmlight / libsvm format
------------------------
One sample a line: ``<label> [qid:<int>] <index>:<value> <index>:<value> ...``
with indices strictly increasing, ``#`` starting a comment.  Indices are
one-based (LIBSVM's convention) unless the file uses index 0, in which case
the file is read as zero-based; a saved model remembers which, so that the
files it predicts on are read the same way.  ``.gz`` and ``.bz2`` files are
decompressed on the fly.

Model file format (``.npz``, version 1)
---------------------------------------
A NumPy ``.npz`` archive readable with ``numpy.load(path)`` (no pickle), so
any language with an npz / npy reader can use the model:

==================  ==========================================================
key                 content
==================  ==========================================================
``format``          the string ``"sparseopt.linear_model"``
``format_version``  integer, 1
``estimator``       ``"LogisticRegression"`` or ``"LinearRegression"``
``params``          JSON text: the estimator's hyperparameters (``get_params``)
``coef``            float64, ``coef_`` of the estimator: ``(1, n_features)``
                    for binary, ``(n_classes, n_features)`` for multinomial
                    classification, ``(n_features,)`` for regression
``intercept``       float64, ``intercept_`` (``(1,)``, ``(n_classes,)``, or
                    a 0-d array for regression)
``classes``         the class labels in ``coef`` row order (classification
                    only; float64 or unicode)
``n_features``      integer, number of input features
``zero_based``      bool, whether feature index 0 is the first feature (else
                    index 1 is, as in LIBSVM files)
``sparseopt_version``  the version that wrote the file
``training_state.*``   optional (``save_model(..., training_state=True)``): the
                    entries of the estimator's ``get_training_state()``, each
                    under ``training_state.<name>``; :func:`load_model`
                    restores them, so that ``partial_fit`` continues exactly
==================  ==========================================================

Prediction from the file alone: ``z = X @ coef.T + intercept``; binary
classification: probability of ``classes[1]`` is ``1 / (1 + exp(-z))``;
multinomial: softmax of ``z`` over ``classes``; regression: ``z`` itself.
"""

import json
import os
import zlib

import numpy as np

__all__ = ["DataError", "read_svmlight", "save_model", "load_model", "MODEL_FORMAT", "MODEL_FORMAT_VERSION"]

MODEL_FORMAT = "sparseopt.linear_model"
MODEL_FORMAT_VERSION = 1
_ESTIMATORS = ("LogisticRegression", "LinearRegression")


class DataError(ValueError):
    """A data or model file cannot be used; the message names the file (and line)."""


def _open_text(path):
    import bz2
    import gzip

    path = os.fspath(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if path.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _check_exists(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a data file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: permission denied")


def _short(token, limit=40):
    return repr(token if len(token) <= limit else token[:limit] + "...")


def _find_bad_line(path, zero_based):
    """Walk the file line by line; return ``"<path>:<line>: <reason>"`` for the first bad line, else None."""
    with _open_text(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            where = f"{os.fspath(path)}:{lineno}"
            label = tokens[0]
            if "," in label:
                return f"{where}: multi-label line ({_short(label)}); only one label per sample is supported"
            try:
                float(label)
            except ValueError:
                return f"{where}: label {_short(label)} is not a number"
            if ":" in label:
                return f"{where}: the line starts with {_short(label)}; it must start with a label"
            prev = -1
            for k, tok in enumerate(tokens[1:]):
                if k == 0 and tok.startswith("qid:"):
                    continue
                idx, sep, val = tok.partition(":")
                if not sep:
                    return f"{where}: {_short(tok)} is not of the form index:value"
                try:
                    i = int(idx)
                except ValueError:
                    return f"{where}: feature index {_short(idx)} is not an integer"
                try:
                    v = float(val)
                except ValueError:
                    return f"{where}: value {_short(val)} of feature {idx} is not a number"
                if i < 0:
                    return f"{where}: negative feature index {i}"
                if i == 0 and not zero_based:
                    return (
                        f"{where}: feature index 0 in a file read as one-based (LIBSVM); "
                        "the model was trained on one-based indices"
                    )
                if i <= prev:
                    return f"{where}: feature indices must be strictly increasing ({prev} then {i})"
                if not np.isfinite(v):
                    return f"{where}: value of feature {i} is {val} (NaN or infinite)"
                prev = i
    return None


def read_svmlight(path, n_features=None, zero_based="auto"):
    """Read an svmlight / libsvm file into a CSR matrix and a label vector.

    Parameters
    ----------
    path : str or path-like
        The file (``.gz`` / ``.bz2`` are decompressed).
    n_features : int, optional
        Number of features the result must have.  A file naming a feature
        beyond it raises :class:`DataError`; fewer features are padded with
        zero columns.  ``None``: the largest index in the file decides.
    zero_based : {"auto", True, False}
        ``"auto"``: one-based (LIBSVM) unless the file uses index 0.

    Returns
    -------
    X : scipy.sparse.csr_matrix of float64
    y : ndarray of float64
    zero_based : bool
        How the indices were read.

    Raises
    ------
    DataError
        Missing or unreadable file, malformed line (the message names the
        line), non-finite values, no samples, or more features than
        ``n_features``.
    """
    from sklearn.datasets import load_svmlight_file

    _check_exists(path)
    path = os.fspath(path)
    if zero_based == "auto":
        candidates = (False, True)
    else:
        candidates = (bool(zero_based),)
    X = y = None
    error = None
    for zb in candidates:
        try:
            X, y = load_svmlight_file(path, zero_based=zb, dtype=np.float64)
            zero_based = zb
            break
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            error = exc
            if zero_based == "auto" and zb is False and "Invalid index 0" in str(exc):
                continue
            break
        except (OSError, EOFError, zlib.error) as exc:  # corrupt archive, unreadable file
            raise DataError(f"{path}: cannot read ({exc})") from None
    if X is None:
        try:
            reason = _find_bad_line(path, zero_based if zero_based != "auto" else True)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
        raise DataError(reason or f"{path}: not a valid svmlight/libsvm file ({error})")
    if X.shape[0] == 0:
        raise DataError(f"{path}: no samples (empty file?)")
    if not np.isfinite(X.data).all() or not np.isfinite(y).all():
        reason = _find_bad_line(path, zero_based)
        raise DataError(reason or f"{path}: contains NaN or infinite values")
    X = X.tocsr()
    if n_features is not None:
        if X.shape[1] > n_features:
            last = X.indices.max() + (0 if zero_based else 1)
            raise DataError(
                f"{path}: uses feature index {last} but the model has {n_features} features "
                f"(indices {'0' if zero_based else '1'}..{n_features - 1 + (0 if zero_based else 1)})"
            )
        if X.shape[1] < n_features:
            X.resize((X.shape[0], n_features))
    return X, y, bool(zero_based)


# -- models ------------------------------------------------------------------

def _jsonable_params(estimator):
    """``get_params()`` as JSON-ready values.

    An optimizer given as a class or instance is stored as its name, with an
    instance's hyperparameters merged into ``optimizer_params`` (so that the
    loaded estimator trains with the same rule); ``class_weight`` keys become
    plain Python labels (JSON turns them into strings: :func:`load_model` maps
    them back to ``classes``).
    """
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if key == "optimizer" and not isinstance(value, str):
            name, _, hp = estimator._optimizer_spec()
            value, params["optimizer_params"] = name, {k: _plain(v) for k, v in hp.items()} or None
        elif key == "optimizer_params" and "optimizer_params" in params:
            continue
        elif key == "class_weight" and isinstance(value, dict):
            value = {_plain(k): _plain(v) for k, v in value.items()}
        value = _plain(value)
        try:
            json.dumps(value)
        except TypeError:
            value = None  # e.g. a RandomState instance: not portable, not needed to predict
        params[key] = value
    return params


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


_STATE_PREFIX = "training_state."


def save_model(path, estimator, zero_based=False, training_state=False):
    """Save a fitted ``LogisticRegression`` / ``LinearRegression`` as ``.npz`` (see module docs).

    ``training_state=True`` also stores the estimator's training state
    (optimizer state, counters, schedule, shuffling: ``get_training_state``),
    so that the loaded model continues training exactly as this one would.

    Returns the path written (NumPy appends ``.npz`` when missing).
    """
    from . import __version__

    from sklearn.utils.validation import check_is_fitted

    name = type(estimator).__name__
    if name not in _ESTIMATORS:
        raise TypeError(f"cannot save a {name}; expected one of {_ESTIMATORS}")
    check_is_fitted(estimator, ("coef_", "intercept_"))
    arrays = {
        "format": np.array(MODEL_FORMAT),
        "format_version": np.array(MODEL_FORMAT_VERSION),
        "estimator": np.array(name),
        "params": np.array(json.dumps(_jsonable_params(estimator), sort_keys=True)),
        "coef": np.asarray(estimator.coef_, dtype=np.float64),
        "intercept": np.asarray(estimator.intercept_, dtype=np.float64),
        "n_features": np.array(int(estimator.n_features_in_)),
        "zero_based": np.array(bool(zero_based)),
        "sparseopt_version": np.array(__version__),
    }
    if hasattr(estimator, "classes_"):
        classes = np.asarray(estimator.classes_)
        if classes.dtype.kind not in "biuf":
            classes = classes.astype(str)
        arrays["classes"] = classes
    if training_state:
        for key, value in estimator.get_training_state().items():
            value = np.asarray(value)
            arrays[_STATE_PREFIX + key] = value.astype(str) if value.dtype.kind == "O" else value
    path = os.fspath(path)
    np.savez(path, **arrays)
    return path if path.endswith(".npz") else path + ".npz"


def load_model(path):
    """Load a model saved by :func:`save_model`.

    Returns
    -------
    estimator : LogisticRegression or LinearRegression
        Fitted: ``predict`` etc. work; with a stored training state,
        ``partial_fit`` continues exactly where the saved estimator was.
    zero_based : bool
        How the training file's feature indices were read.

    Raises
    ------
    DataError
        Missing file, not an npz archive, or not a sparseopt model.
    """
    _check_exists(path)
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError ...
        raise DataError(f"{path}: not a sparseopt model file ({type(exc).__name__}: {exc})") from None
    try:
        return _model_from_arrays(path, d)
    except DataError:
        raise
    except Exception as exc:  # a damaged entry that a check below did not foresee
        raise DataError(f"{path}: damaged model file ({type(exc).__name__}: {exc})") from None


def _model_from_arrays(path, d):
    """The estimator and ``zero_based`` of the entries ``d`` of model file ``path``; raises ``DataError``."""
    def scalar(key, kinds):
        v = np.asarray(d[key])
        if v.ndim != 0 or v.dtype.kind not in kinds:
            raise DataError(f"{path}: model file entry {key!r} must be a scalar, got {v.dtype} of shape {v.shape}")
        return v.item()

    if "format" not in d or np.asarray(d["format"]).ndim != 0 or str(d["format"]) != MODEL_FORMAT:
        raise DataError(f"{path}: not a sparseopt model file (no format={MODEL_FORMAT!r} entry)")
    version = scalar("format_version", "iu") if "format_version" in d else -1
    if version != MODEL_FORMAT_VERSION:
        raise DataError(f"{path}: model format version {version}; this sparseopt reads version {MODEL_FORMAT_VERSION}")
    missing = [k for k in ("estimator", "params", "coef", "intercept", "n_features", "zero_based") if k not in d]
    name = str(d.get("estimator", ""))
    if name == "LogisticRegression" and "classes" not in d:
        missing.append("classes")
    if missing:
        raise DataError(f"{path}: model file lacks {', '.join(missing)}")
    if name not in _ESTIMATORS:
        raise DataError(f"{path}: unknown estimator {name!r}")
    from . import linear_model

    try:
        params = json.loads(str(scalar("params", "U")))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: model file entry 'params' is not JSON ({exc})") from None
    if not isinstance(params, dict):
        raise DataError(f"{path}: model file entry 'params' must be a JSON object, got {type(params).__name__}")
    cls = getattr(linear_model, name)
    valid = cls().get_params(deep=False)
    # None is a value too (penalty=None, tol=None), or a random_state that could not be stored
    est = cls(**{k: v for k, v in params.items() if k in valid})
    n_features = scalar("n_features", "iu")
    zero_based = scalar("zero_based", "b")
    if n_features < 1:
        raise DataError(f"{path}: n_features is {n_features}; it must be at least 1")
    K = 1
    if name == "LogisticRegression":
        classes = np.asarray(d["classes"])
        if classes.ndim != 1 or classes.size < 2 or classes.dtype.kind not in "biufU" or not np.array_equal(
                np.unique(classes), classes):
            raise DataError(f"{path}: classes must be at least 2 sorted, distinct labels, got {classes!r}")
        est.classes_ = classes
        K = 1 if classes.size == 2 else classes.size
        if isinstance(est.class_weight, dict):  # JSON made the labels strings
            by_text = {str(c): c for c in classes.tolist()}
            by_text.update({str(int(c)): c for c in classes.tolist() if isinstance(c, float) and c.is_integer()})
            est.class_weight = {by_text.get(k, k): v for k, v in est.class_weight.items()}
    coef_shape, intercept_shapes = ((n_features,), [(), (1,)]) if K == 1 and name == "LinearRegression" else (
        (K, n_features), [(K,)])
    coef, intercept = np.asarray(d["coef"]), np.asarray(d["intercept"])
    for key, a, shapes in (("coef", coef, [coef_shape]), ("intercept", intercept, intercept_shapes)):
        if a.dtype.kind not in "biuf" or a.shape not in shapes:
            raise DataError(f"{path}: {key} must be a real array of shape {shapes[0]} (n_features is {n_features}"
                            f"{f', {K} classes' if K > 1 else ''}), got {a.dtype} of shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise DataError(f"{path}: {key} holds NaN or infinite values")
    est.coef_ = coef.astype(np.float64)
    est.intercept_ = float(intercept) if name == "LinearRegression" else intercept.astype(np.float64)
    est.n_features_in_ = n_features
    state = {k[len(_STATE_PREFIX):]: v for k, v in d.items() if k.startswith(_STATE_PREFIX)}
    if state:
        try:
            est.set_training_state(state)
        except ValueError as exc:
            raise DataError(f"{path}: bad training state ({exc})") from None
        if not np.array_equal(est.coef_, coef) or not np.array_equal(np.ravel(est.intercept_), np.ravel(intercept)):
            raise DataError(f"{path}: the training state's model differs from coef / intercept")
    return est, bool(zero_based)
