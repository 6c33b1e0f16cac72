"""Spam filtering with a scikit-learn Pipeline: tf-idf + sparseopt's LogisticRegression.

The SMS Spam Collection (5,574 messages, bundled) is split 75/25
(stratified).  Each of the five optimizers trains
``Pipeline([("tfidf", TfidfVectorizer(...)), ("clf", LogisticRegression(optimizer=...))])``
with default settings; scikit-learn's ``SGDClassifier(loss="log_loss")`` and
``LogisticRegression`` (lbfgs) are trained on the same features with the
same penalty (alpha = 1 / (C n), see SPEC.md) for comparison.

Printed: test accuracy, spam precision / recall / F1, test log-loss, fit
seconds (vectorizer included, kernels compiled beforehand), and the top spam
words of the AdaGrad model.

Run ``python examples/sms_spam.py`` (``--quick``: a subset, for tests).
"""

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from sparseopt.datasets import load_sms_spam
from sparseopt.linear_model import LogisticRegression

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")


def vectorizer():
    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,500 messages and 3 epochs (for tests)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the estimator's max_iter)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    texts, y = load_sms_spam()
    if args.quick:
        texts, y = texts[:1500], y[:1500]
    epochs = args.epochs or (3 if args.quick else None)
    X_train, X_test, y_train, y_test = train_test_split(
        np.array(texts, dtype=object), y, test_size=0.25, random_state=args.seed, stratify=y)
    print(f"SMS Spam Collection: {len(X_train)} training / {len(X_test)} test messages "
          f"({y_test.mean():.1%} spam in the test set)")

    base = LogisticRegression(random_state=args.seed)
    if epochs:
        base.set_params(max_iter=epochs)
    alpha = base.alpha
    n_iter = base.max_iter
    models = {f"sparseopt {name}": clone(base).set_params(optimizer=name) for name in OPTIMIZERS}
    models["sklearn SGDClassifier"] = SGDClassifier(loss="log_loss", alpha=alpha, max_iter=n_iter, tol=1e-4,
                                                    random_state=args.seed)
    models["sklearn lbfgs"] = None  # C depends on n: set below

    # compile the kernels outside the timings (cached on disk after the first run)
    Xw = vectorizer().fit_transform(X_train[:200])
    for name in OPTIMIZERS:
        clone(base).set_params(optimizer=name, max_iter=1).fit(Xw, y_train[:200])

    head = (f"{'model':<24} {'accuracy':>8} {'precision':>9} {'recall':>7} {'F1':>7} {'log-loss':>9} "
            f"{'epochs':>6} {'fit s':>7}")
    print(head)
    print("-" * len(head))
    fitted = {}
    for label, clf in models.items():
        if clf is None:
            clf = SkLogisticRegression(C=1.0 / (alpha * len(X_train)), max_iter=1000)
        pipe = Pipeline([("tfidf", vectorizer()), ("clf", clf)])
        # one BLAS thread: lbfgs slows down badly with several on a busy machine (oversubscription)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            pipe.fit(X_train, y_train)
            seconds = time.perf_counter() - t0
        pred = pipe.predict(X_test)
        proba = pipe.predict_proba(X_test)
        p, r, f, _ = precision_recall_fscore_support(y_test, pred, average="binary", zero_division=0)
        iters = int(np.max(getattr(pipe[-1], "n_iter_", 0)))
        print(f"{label:<24} {accuracy_score(y_test, pred):>8.4f} {p:>9.4f} {r:>7.4f} {f:>7.4f} "
              f"{log_loss(y_test, proba):>9.4f} {iters:>6d} {seconds:>7.3f}")
        fitted[label] = pipe

    pipe = fitted["sparseopt adagrad"]
    words = pipe[0].get_feature_names_out()
    top = np.argsort(pipe[-1].coef_.ravel())[::-1][:10]
    print("top spam words (adagrad): " + ", ".join(words[top]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
