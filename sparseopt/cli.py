"""The ``sparseopt`` command line (also ``python -m sparseopt``).

Commands
--------
``sparseopt compare``
    Train ``LogisticRegression`` with each of the five optimizers on a
    bundled data set (SMS Spam by default, ``--dataset a9a``) or on any
    svmlight / libsvm file (``--data FILE [--test FILE]``) and print one
    table: epochs, final training objective, test accuracy and log-loss,
    seconds.  ``--plot FILE.png`` draws the curves (needs matplotlib).
``sparseopt train DATA -o MODEL``
    Train a model on an svmlight / libsvm file and save it as a portable
    ``.npz`` (format: :mod:`sparseopt._io`); ``--save-state`` stores the
    training state in it too, and ``--resume MODEL`` continues training such
    a model for ``--epochs`` more epochs, exactly as if it had not stopped.
``sparseopt predict MODEL DATA [-o FILE]``
    Write one prediction (or, with ``--proba``, one line of class
    probabilities) per input line, and print the accuracy.

Bad files give one ``sparseopt: error: ...`` line on stderr and exit
status 1; bad arguments exit with status 2.
"""

import argparse
import os
import sys
import time

import numpy as np

from ._io import DataError, load_model, read_svmlight, save_model

__all__ = ["main", "OPTIMIZERS", "objective", "run_compare", "format_table"]

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
DATASETS = ("sms", "a9a")
PENALTIES = ("l2", "l1", "elasticnet", "none")
DEFAULT_EPOCHS = 10
EXIT_ERROR = 1


class CLIError(Exception):
    """An error reported as one line, without a traceback."""


# -- progress ------------------------------------------------------------------

class Progress:
    """One self-overwriting status line on a terminal; silent when piped or ``--quiet``."""

    def __init__(self, quiet=False, stream=None):
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not quiet and bool(isatty and isatty())
        self._width = 0

    def update(self, text):
        if not self.enabled:
            return
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def done(self):
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# -- measurement -----------------------------------------------------------------

def _penalty_value(coef, penalty, l1_ratio):
    w = np.asarray(coef, dtype=np.float64).ravel()
    l2 = 0.5 * float(w @ w)
    l1 = float(np.abs(w).sum())
    if penalty in (None, "none"):
        return 0.0
    if penalty == "l2":
        return l2
    if penalty == "l1":
        return l1
    return (1.0 - l1_ratio) * l2 + l1_ratio * l1


def objective(X, y, coef, intercept, classes=None, alpha=0.0, penalty="l2", l1_ratio=0.15):
    """Training objective of SPEC.md: mean loss + ``alpha * R(coef)``.

    Log loss (binary or multinomial) when ``classes`` is given, else the
    squared loss ``0.5 * (x.w + b - y)**2``.  Computed here from ``coef`` and
    ``intercept`` alone, so every optimizer is measured the same way.
    """
    from scipy.special import logsumexp

    coef = np.asarray(coef, dtype=np.float64)
    z = X @ np.atleast_2d(coef).T + np.asarray(intercept, dtype=np.float64).reshape(1, -1)
    if classes is None:
        loss = 0.5 * np.mean((z[:, 0] - y) ** 2)
    elif z.shape[1] == 1:
        z = z[:, 0]
        pos = (np.asarray(y) == classes[1]).astype(np.float64)
        loss = np.mean(np.logaddexp(0.0, z) - pos * z)
    else:
        idx = np.searchsorted(classes, y)
        loss = np.mean(logsumexp(z, axis=1) - z[np.arange(z.shape[0]), idx])
    return float(loss) + alpha * _penalty_value(coef, penalty, l1_ratio)


def _test_scores(clf, X, y):
    from sklearn.metrics import log_loss

    proba = clf.predict_proba(X)
    acc = float(np.mean(clf.classes_[np.argmax(proba, axis=1)] == y))
    return acc, float(log_loss(y, proba, labels=clf.classes_))


def run_compare(Xtr, ytr, Xte, yte, optimizers=OPTIMIZERS, epochs=DEFAULT_EPOCHS, alpha=None,
                learning_rate=None, batch_size=None, seed=0, progress=None, reference=True):
    """Train ``LogisticRegression`` with each optimizer, one epoch at a time.

    Returns a list of dicts, one per optimizer (plus scikit-learn's lbfgs
    optimum of the same objective if ``reference``), with per-epoch
    histories ``objective``, ``accuracy``, ``log_loss`` and the final values.
    Seconds count training only (``partial_fit``), after a warm-up that
    compiles the kernels.
    """
    from .linear_model import LogisticRegression

    progress = progress or Progress(quiet=True)
    classes = np.unique(ytr)
    base = {}
    if alpha is not None:
        base["alpha"] = alpha
    if batch_size is not None:
        base["batch_size"] = batch_size
    results = []
    for name in optimizers:
        clf = LogisticRegression(optimizer=name, learning_rate=learning_rate, random_state=seed, **base)
        progress.update(f"{name}: warming up (compiles on the first run) ...")
        warm = LogisticRegression(optimizer=name, learning_rate=learning_rate, random_state=seed, **base)
        warm.partial_fit(Xtr[:64], ytr[:64], classes=classes)
        params = clf.get_params()
        hist = {"objective": [], "accuracy": [], "log_loss": []}
        seconds = 0.0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            clf.partial_fit(Xtr, ytr, classes=classes)
            seconds += time.perf_counter() - t0
            obj = objective(Xtr, ytr, clf.coef_, clf.intercept_, clf.classes_, params["alpha"],
                            params["penalty"], params["l1_ratio"])
            acc, ll = _test_scores(clf, Xte, yte)
            hist["objective"].append(obj)
            hist["accuracy"].append(acc)
            hist["log_loss"].append(ll)
            progress.update(f"{name}: epoch {epoch}/{epochs}  objective {obj:.5f}  test accuracy {acc:.4f}")
        results.append({"optimizer": name, "epochs": epochs, "seconds": seconds, **hist,
                        "final": {k: v[-1] for k, v in hist.items()}})
    progress.done()
    if reference:
        results.append(_reference(Xtr, ytr, Xte, yte, base))
    return results


def _reference(Xtr, ytr, Xte, yte, base):
    """scikit-learn's lbfgs on the same objective (alpha = 1 / (C n), SPEC.md)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression as SkLR

    from .linear_model import LogisticRegression

    params = LogisticRegression(**base).get_params()
    alpha, penalty = params["alpha"], params["penalty"]
    kw = {}
    if penalty in ("none", None):
        kw["penalty"] = None
    elif penalty == "l2":
        kw["C"] = 1.0 / (alpha * Xtr.shape[0])
    else:
        return None  # lbfgs cannot do l1; no reference row
    from threadpoolctl import threadpool_limits

    sk = SkLR(tol=1e-8, max_iter=2000, **kw)
    t0 = time.perf_counter()
    # one BLAS thread: lbfgs's small dense updates slow down badly with several (oversubscription)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    obj = objective(Xtr, ytr, sk.coef_, sk.intercept_, sk.classes_, alpha, penalty, params["l1_ratio"])
    acc, ll = _test_scores(sk, Xte, yte)
    n_iter = int(np.max(sk.n_iter_))
    return {"optimizer": "sklearn-lbfgs", "epochs": n_iter, "seconds": seconds, "reference": True,
            "objective": [obj], "accuracy": [acc], "log_loss": [ll],
            "final": {"objective": obj, "accuracy": acc, "log_loss": ll}}


def format_table(results):
    """The compare table as text (one row per optimizer)."""
    rows = [r for r in results if r is not None]
    head = f"{'optimizer':<14} {'epochs':>6} {'train objective':>16} {'test accuracy':>14} {'test log-loss':>14} {'seconds':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        f = r["final"]
        lines.append(
            f"{r['optimizer']:<14} {r['epochs']:>6d} {f['objective']:>16.6f} {f['accuracy']:>14.4f} "
            f"{f['log_loss']:>14.4f} {r['seconds']:>8.3f}"
        )
    return "\n".join(lines)


# -- plotting --------------------------------------------------------------------

def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib (or pip install 'sparseopt[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_compare(results, path, title=""):
    """Training objective (gap to the lbfgs optimum when known) and test accuracy per epoch, to ``path``."""
    plt = _require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    runs = [r for r in results if r is not None and not r.get("reference")]
    ref = next((r for r in results if r is not None and r.get("reference")), None)
    f_opt = ref["final"]["objective"] if ref is not None else None
    for r in runs:
        ep = np.arange(1, len(r["objective"]) + 1)
        obj = np.asarray(r["objective"])
        y = obj if f_opt is None else np.maximum(obj - f_opt, 1e-12)
        ax1.plot(ep, y, marker="o", ms=3, label=r["optimizer"])
        ax2.plot(ep, r["accuracy"], marker="o", ms=3, label=r["optimizer"])
    if ref is not None:
        ax2.axhline(ref["final"]["accuracy"], color="k", ls="--", lw=1, label="sklearn lbfgs (optimum)")
    ax1.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel("training objective" + (" - lbfgs optimum" if f_opt is not None else "") + " (log)")
    ax2.set_ylabel("test accuracy")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


# -- data ------------------------------------------------------------------------

def _split(X, y, test_size, seed):
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise CLIError(f"--test-size must be in (0, 1), got {test_size}")
    classes, counts = np.unique(y, return_counts=True)
    stratify = y if classes.size > 1 and counts.min() >= 2 else None
    return train_test_split(X, y, test_size=test_size, random_state=seed, stratify=stratify)


def sms_features(texts_train, texts_test):
    """tf-idf bag of words (words and bigrams) fitted on the training texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    return vec.fit_transform(texts_train), vec.transform(texts_test), vec


def load_compare_data(dataset="sms", data=None, test=None, test_size=0.25, seed=0):
    """Return ``Xtr, ytr, Xte, yte, description`` for ``sparseopt compare``."""
    from . import datasets

    if data is not None:
        Xtr, ytr, zb = read_svmlight(data)
        if test is not None:
            Xte, yte, _ = read_svmlight(test, zero_based=zb)
            n = max(Xtr.shape[1], Xte.shape[1])
            Xtr.resize((Xtr.shape[0], n))
            Xte.resize((Xte.shape[0], n))
            desc = f"{data} ({Xtr.shape[0]} rows), test {test} ({Xte.shape[0]} rows), {n} features"
        else:
            Xtr, Xte, ytr, yte = _split(Xtr, ytr, test_size, seed)
            desc = f"{data}: {Xtr.shape[0]} train / {Xte.shape[0]} held-out rows, {Xtr.shape[1]} features"
        return Xtr, ytr, Xte, yte, desc
    if test is not None:
        raise CLIError("--test needs --data (the bundled data sets come with their own test split)")
    if dataset == "a9a":
        Xtr, ytr = datasets.load_a9a("train")
        Xte, yte = datasets.load_a9a("test")
        desc = f"a9a (UCI Adult): {Xtr.shape[0]} train / {Xte.shape[0]} test rows, {Xtr.shape[1]} features"
        return Xtr, ytr, Xte, yte, desc
    texts, y = datasets.load_sms_spam()
    idx_tr, idx_te, _, _ = _split(np.arange(len(texts)), y, test_size, seed)
    Xtr, Xte, _ = sms_features([texts[i] for i in idx_tr], [texts[i] for i in idx_te])
    desc = (f"SMS Spam Collection: {Xtr.shape[0]} train / {Xte.shape[0]} test messages, "
            f"tf-idf of {Xtr.shape[1]} words and bigrams")
    return Xtr, y[idx_tr], Xte, y[idx_te], desc


# -- commands --------------------------------------------------------------------

def _parse_optimizers(text):
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in OPTIMIZERS]
    if bad or not names:
        raise CLIError(f"unknown optimizer {', '.join(bad) or repr(text)}; choose from {', '.join(OPTIMIZERS)}")
    return names


def cmd_compare(args, out):
    optimizers = _parse_optimizers(args.optimizers)
    if args.plot:
        _require_matplotlib()  # fail before training, not after
    progress = Progress(args.quiet)
    progress.update("loading data ...")
    Xtr, ytr, Xte, yte, desc = load_compare_data(args.dataset, args.data, args.test, args.test_size, args.seed)
    progress.done()
    if np.unique(ytr).size < 2:
        raise CLIError("the training data hold a single class; logistic regression needs two or more")
    try:
        results = run_compare(Xtr, ytr, Xte, yte, optimizers, args.epochs, args.alpha, args.learning_rate,
                              args.batch_size, args.seed, progress, reference=not args.no_reference)
    except ValueError as exc:  # the estimator's checks, e.g. real-valued labels
        progress.done()
        raise CLIError(str(exc)) from None
    print(f"LogisticRegression on {desc}", file=out)
    print(format_table(results), file=out)
    if args.plot:
        plot_compare(results, args.plot, title=desc)
        print(f"plot written to {args.plot}", file=out)
    return 0


def _optimizer_params(items):
    """``["momentum=0.95", "nesterov=true"]`` -> ``{"momentum": 0.95, "nesterov": True}``."""
    params = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--optimizer-param expects NAME=VALUE, got {item!r}")
        low = value.strip().lower()
        if low in ("true", "false"):
            params[key] = low == "true"
            continue
        try:
            params[key] = float(value)
        except ValueError:
            raise CLIError(f"--optimizer-param {key}: {value!r} is not a number or true/false") from None
    return params or None


def _estimator_kwargs(args):
    kw = {"optimizer": args.optimizer, "learning_rate": args.learning_rate, "penalty": _penalty(args.penalty),
          "random_state": args.seed, "lazy": args.lazy,
          "optimizer_params": _optimizer_params(args.optimizer_param),
          # the saved hyperparameters then retrain the same model with fit()
          "max_iter": args.epochs, "tol": None}
    for key in ("alpha", "l1_ratio", "batch_size"):
        value = getattr(args, key)
        if value is not None:
            kw[key] = value
    return kw


def _penalty(p):
    return None if p == "none" else p


def _fmt_label(v):
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


# defaults of `sparseopt train`'s options that --resume takes from the model instead
TRAIN_DEFAULTS = {"optimizer": "adagrad", "penalty": "l2", "lazy": "skip", "seed": 0}
# option (args attribute) -> estimator parameter it sets; --resume refuses a different value
_RESUME_CHECKED = {"optimizer": "optimizer", "learning_rate": "learning_rate", "alpha": "alpha",
                   "batch_size": "batch_size", "penalty": "penalty", "l1_ratio": "l1_ratio", "lazy": "lazy",
                   "seed": "random_state", "optimizer_param": "optimizer_params"}


def _option_value(args, key):
    """The estimator parameter value option ``key`` asks for (``None``: not given)."""
    value = getattr(args, key)
    if value is None:
        return None
    if key == "penalty":
        return _penalty(value)
    if key == "optimizer_param":
        return _optimizer_params(value)
    return value


def _load_for_resume(args):
    """The model of ``--resume`` with its training state, checked against the options; ``(est, zb, state)``."""
    from sklearn.exceptions import NotFittedError

    est, zb = load_model(args.resume)
    try:
        state = est.get_training_state()
    except NotFittedError:
        raise CLIError(f"{args.resume}: no training state to resume from (train it with --save-state)") from None
    kind = type(est).__name__
    if args.regression and kind != "LinearRegression":
        raise CLIError(f"--regression: {args.resume} holds a {kind}; --resume continues the model's own kind")
    params = est.get_params(deep=False)
    for key, name in _RESUME_CHECKED.items():
        wanted = _option_value(args, key)
        if wanted is not None and wanted != params[name]:
            flag = "--" + key.replace("_", "-")
            if key == "optimizer":
                raise CLIError(f"{args.resume} was trained with optimizer {params[name]}, not {wanted}: "
                               "--resume continues with the model's optimizer (omit --optimizer)")
            raise CLIError(f"{flag} asks for {name}={wanted!r} but {args.resume} was trained with "
                           f"{name}={params[name]!r}: --resume continues with the model's settings (omit {flag})")
    return est, zb, state


def _read_resume_data(args, est, zb):
    """The training data of ``--resume``, checked against the model's features and classes."""
    n = est.n_features_in_
    X, y, _ = read_svmlight(args.data, zero_based=zb)
    if X.shape[1] > n:
        raise CLIError(f"{args.data} has {X.shape[1]} features but {args.resume} was trained on {n}: "
                       "--resume needs data with the model's features")
    if X.shape[1] < n:  # svmlight files need not name the last features
        X.resize((X.shape[0], n))
    if hasattr(est, "classes_"):
        unknown = np.setdiff1d(np.unique(y), est.classes_)
        if unknown.size:
            shown = ", ".join(_fmt_label(v) for v in unknown[:5]) + (", ..." if unknown.size > 5 else "")
            raise CLIError(f"{args.data} has labels {shown} that {args.resume} does not know (its classes: "
                           f"{', '.join(_fmt_label(c) for c in est.classes_)})")
    return X, y


def cmd_train(args, out):
    from .linear_model import LinearRegression, LogisticRegression

    if args.scheduler and (args.resume or args.save_state):
        raise CLIError(f"{'--resume' if args.resume else '--save-state'} is not available with --scheduler")
    if args.resume is None:
        for key, value in TRAIN_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.scheduler:
        try:
            from .dask import cli_train
        except ImportError as exc:
            raise CLIError(f"--scheduler needs Dask ({exc}): pip install 'sparseopt[dask]'") from None
        return cli_train(args, out)
    if len(args.data) > 1:
        raise CLIError(f"{len(args.data)} training files given: several files need --scheduler ADDRESS "
                       "(one partition per file on a Dask cluster); concatenate them to train here")
    args.data = args.data[0]
    progress = Progress(args.quiet)
    done = 0
    if args.resume is not None:
        est, zb, state = _load_for_resume(args)
        X, y = _read_resume_data(args, est, zb)
        done = state["epochs"]
        # the saved hyperparameters then retrain the same model with fit(), as below
        est.set_params(max_iter=done + args.epochs)
        fit_kw = {}
    elif args.regression:
        X, y, zb = read_svmlight(args.data)
        est = LinearRegression(**_estimator_kwargs(args))
        fit_kw = {}
    else:
        X, y, zb = read_svmlight(args.data)
        kw = _estimator_kwargs(args)
        classes = np.unique(y)
        if classes.size < 2:
            raise CLIError(f"{args.data}: all samples have label {_fmt_label(classes[0])}; "
                           "classification needs two or more classes (use --regression for real-valued targets)")
        est = LogisticRegression(**kw)
        fit_kw = {"classes": classes}
    params = est.get_params()
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        try:
            est.partial_fit(X, y, **fit_kw)
        except ValueError as exc:  # the estimator's checks: bad --optimizer-param, ...
            raise CLIError(str(exc)) from None
        obj = objective(X, y, est.coef_, est.intercept_, getattr(est, "classes_", None), params["alpha"],
                        params["penalty"], params["l1_ratio"])
        progress.update(f"epoch {epoch}/{args.epochs}  objective {obj:.6f}  {time.perf_counter() - t0:.1f}s")
    seconds = time.perf_counter() - t0
    progress.done()
    path = _save(args.output, est, zb, training_state=args.save_state)
    is_clf = hasattr(est, "classes_")
    kind = f"LogisticRegression ({len(est.classes_)} classes)" if is_clf else "LinearRegression"
    resumed = f" after {done} (resumed from {args.resume})" if args.resume is not None else ""
    print(f"trained {kind} with {params['optimizer']} on {X.shape[0]} samples x {X.shape[1]} features, "
          f"{args.epochs} epochs{resumed}, {seconds:.2f} s", file=out)
    print(f"training objective {obj:.6f}", file=out)
    if is_clf:
        print(f"training accuracy {est.score(X, y):.4f}", file=out)
    print(f"model saved to {path}" + (" with its training state" if args.save_state else ""), file=out)
    return 0


def _save(path, est, zb, training_state=False):
    try:
        return save_model(path, est, zero_based=zb, training_state=training_state)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_predict(args, out):
    est, zb = load_model(args.model)
    X, y, _ = read_svmlight(args.data, n_features=est.n_features_in_, zero_based=zb)
    is_clf = hasattr(est, "classes_")
    if args.proba and not is_clf:
        raise CLIError("--proba needs a classification model; this one is a LinearRegression")
    pred = est.predict(X)
    if args.proba:
        lines = ["\t".join(f"{p:.6g}" for p in row) for row in est.predict_proba(X)]
    else:
        lines = [_fmt_label(v) for v in pred] if is_clf else [f"{v:.10g}" for v in pred]
    text = "\n".join(lines) + "\n"
    if args.output:
        try:
            with open(args.output, "w") as f:
                f.write(text)
        except OSError as exc:
            raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        report = out
    else:
        out.write(text)
        report = sys.stderr
    if is_clf:
        if args.proba:
            print("columns: probability of class " + ", ".join(_fmt_label(c) for c in est.classes_), file=report)
        if np.isin(y, est.classes_).all():
            print(f"accuracy {np.mean(pred == y):.4f} on {y.size} samples", file=report)
        else:
            print(f"no accuracy: labels of {args.data} are not the model's classes", file=report)
    else:
        ss_res = float(np.sum((y - pred) ** 2))
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
        print(f"R^2 {r2:.4f}, RMSE {np.sqrt(ss_res / y.size):.6g} on {y.size} samples", file=report)
    if args.output:
        print(f"{len(lines)} predictions written to {args.output}", file=report)
    return 0


# -- parser ----------------------------------------------------------------------

def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _finite_float(strict):
    """An argparse type: a finite number, ``> 0`` (``strict``) or ``>= 0``."""
    want = "a positive number" if strict else "a number >= 0"

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (np.isfinite(v) and (v > 0 if strict else v >= 0)):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text}")
        return v

    return parse


_positive_float = _finite_float(True)
_nonneg_float = _finite_float(False)


def _add_training_options(p):
    p.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS,
                   help=f"passes over the training data (default {DEFAULT_EPOCHS})")
    p.add_argument("--learning-rate", "--lr", type=_positive_float, default=None,
                   help="learning rate (default: the per-optimizer default of LogisticRegression)")
    p.add_argument("--alpha", type=_nonneg_float, default=None,
                   help="penalty strength alpha (default: the estimator's, 1e-5)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="mini-batch size (default: the estimator's)")
    p.add_argument("--seed", type=int, default=0, help="random seed for shuffling and splits (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display (it is off anyway when piped)")


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sparseopt",
        description="Train sparse linear models with Numba-compiled SGD, Momentum, AdaGrad, RMSProp and Adam.",
        epilog="Start with: sparseopt compare",
    )
    parser.add_argument("--version", action="version", version=f"sparseopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("compare", help="train LogisticRegression with each optimizer and print one table",
                       description="Train LogisticRegression with each of the five optimizers on the same data "
                                   "and print epochs, final training objective, test accuracy, test log-loss and "
                                   "seconds (training only, kernels compiled beforehand). The last row is "
                                   "scikit-learn's lbfgs optimum of the same objective, for reference.")
    src = p.add_argument_group("data (default: the bundled SMS Spam Collection, tf-idf, 25%% held out)")
    src.add_argument("--dataset", choices=DATASETS, default="sms", help="bundled data set (default sms)")
    src.add_argument("--data", metavar="FILE", help="an svmlight/libsvm training file instead")
    src.add_argument("--test", metavar="FILE", help="an svmlight/libsvm test file for --data")
    src.add_argument("--test-size", type=float, default=0.25,
                     help="held-out fraction when there is no test file (default 0.25)")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                   help=f"comma-separated subset of {','.join(OPTIMIZERS)} (default all)")
    _add_training_options(p)
    p.add_argument("--plot", metavar="FILE.png", help="write loss and accuracy curves (needs matplotlib)")
    p.add_argument("--no-reference", action="store_true", help="skip the scikit-learn lbfgs reference row")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train a model on an svmlight/libsvm file and save it (.npz)",
                       description="Train LogisticRegression (or --regression: LinearRegression) on an "
                                   "svmlight/libsvm file and save it as a portable .npz model.")
    p.add_argument("data", metavar="DATA", nargs="+",
                   help="svmlight/libsvm training file (.gz/.bz2 accepted); several with --scheduler")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="where to save the model (.npz)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="train on a Dask cluster (sparseopt.dask, pip install 'sparseopt[dask]'), one partition "
                        "per DATA file, --epochs rounds of parameter mixing")
    p.add_argument("--save-state", action="store_true",
                   help="store the training state (optimizer state, counters, shuffling) in MODEL, "
                        "so that --resume can continue training it exactly")
    p.add_argument("--resume", metavar="MODEL.npz",
                   help="continue training a model saved with --save-state on DATA for --epochs more "
                        "epochs, with its own settings (options given must agree with them)")
    # None: not given (the default, or with --resume the model's own setting; see TRAIN_DEFAULTS)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="default adagrad")
    p.add_argument("--penalty", choices=PENALTIES, default=None, help="default l2")
    p.add_argument("--l1-ratio", type=_nonneg_float, default=None, help="elastic-net mixing (default 0.15)")
    p.add_argument("--lazy", choices=("skip", "exact"), default=None,
                   help="lazy sparse update mode of the optimizer (default skip)")
    p.add_argument("--optimizer-param", action="append", metavar="NAME=VALUE",
                   help="another hyperparameter of the optimizer, e.g. momentum=0.95, beta2=0.99, "
                        "nesterov=true (repeatable)")
    p.add_argument("--regression", action="store_true", help="LinearRegression (squared loss) instead")
    _add_training_options(p)
    p.set_defaults(func=cmd_train, seed=None)  # seed 0 unless --resume (TRAIN_DEFAULTS)

    p = sub.add_parser("predict", help="predict with a saved model; print accuracy",
                       description="Write one prediction per line of DATA, in input order, and print the "
                                   "accuracy (R^2 for regression) against DATA's labels.")
    p.add_argument("model", metavar="MODEL", help="a model saved by 'sparseopt train'")
    p.add_argument("data", metavar="DATA", help="svmlight/libsvm file")
    p.add_argument("-o", "--output", metavar="FILE", help="write predictions here (default: standard output)")
    p.add_argument("--proba", action="store_true",
                   help="write class probabilities (tab-separated, in the model's class order)")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv=None, out=None):
    """Run the command line; returns the exit status (0 ok, 1 error, 2 bad usage)."""
    out = sys.stdout if out is None else out
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args, out)
    except (CLIError, DataError) as exc:
        print(f"sparseopt: error: {exc}", file=sys.stderr)
    except FloatingPointError as exc:  # training diverged
        print(f"sparseopt: error: {exc}", file=sys.stderr)
    except MemoryError:
        print("sparseopt: error: out of memory", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nsparseopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # anything else: still one line, traceback on request
        if os.environ.get("SPARSEOPT_DEBUG"):
            raise
        print(f"sparseopt: error: {type(exc).__name__}: {exc} (set SPARSEOPT_DEBUG=1 for the traceback)",
              file=sys.stderr)
    return EXIT_ERROR
