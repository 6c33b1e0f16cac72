"""Seconds per epoch of sparseopt.linear_model.LogisticRegression vs scikit-learn's SGDClassifier.

Both train the same objective (log loss + alpha/2 |w|^2, alpha = 1e-5) for
the same number of epochs, measured in the same run; the script prints the
median seconds per epoch and ratios, which hold on a busy machine better
than absolute times:

* ``x SGDClf``: sparseopt's time / ``SGDClassifier(loss="log_loss")``'s
  (goal for ``optimizer="sgd"``: <= 1);
* ``x sgd``: each optimizer's time / ``optimizer="sgd"``'s (goal: <= 1.5).

Data: LIBSVM a9a (32,561 x 123) and a synthetic 100,000 x 100,000 CSR set
with ~50 Zipf-distributed non-zeros a row
(``sparseopt.datasets.make_zipf_classification(random_state=0)``, the same
set as the asv estimator benchmarks at full size).  Compile time is excluded (one
warm-up fit first).  Seconds per epoch are a whole ``fit``'s time over the
number of epochs, for both estimators: input checks and, for sparseopt's
"sgd" and "momentum", the pass over the data that scales the default
learning rate are included.

Usage::

    python benchmarks/bench_estimators.py            # both data sets
    python benchmarks/bench_estimators.py --quick    # fewer repeats, 20k-row synthetic set
    python benchmarks/bench_estimators.py --optimizers sgd adagrad --batch-sizes 32
    python benchmarks/bench_estimators.py --threads 1   # sparseopt on one thread, as SGDClassifier
    python benchmarks/bench_estimators.py --zipf-features 1048576 --skip-a9a   # a hashed model's width

The adaptive rules (AdaGrad, RMSProp, Adam) and momentum train the Zipf set on two of
Numba's threads, each with its own features (``_epoch._run_epoch_records_threads``,
``_epoch._run_epoch_momentum_threads``), where Numba has two; SGDClassifier and sparseopt's
sgd run on one.
"""

import argparse
import time
import warnings

import numba
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from sparseopt.datasets import load_a9a, make_zipf_classification
from sparseopt.linear_model import LogisticRegression

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
ALPHA = 1e-5


def zipf_csr(n_rows, n_features, seed=0):
    """The synthetic set: ``make_zipf_classification`` at its defaults (~50 non-zeros a row,
    unit-norm rows, labels in {-1, +1}, 32-bit indices) with ``n_rows`` x ``n_features``.

    Same output as the generator this script used to define here (kept under
    this name for ``bench_cuda.py``).
    """
    return make_zipf_classification(n_rows, n_features, random_state=seed)


def time_round_robin(makers, X, y, epochs, repeat):
    """Median seconds per epoch of each estimator, fitted in turn ``repeat`` times
    (round-robin, so that a change in machine load hits all of them alike)."""
    for make in makers.values():
        make().fit(X, y)  # warm-up: compile, caches
    times = {name: [] for name in makers}
    for _ in range(repeat):
        for name, make in makers.items():
            est = make()
            tic = time.perf_counter()
            est.fit(X, y)
            times[name].append((time.perf_counter() - tic) / epochs)
    return {name: float(np.median(t)) for name, t in times.items()}


def run(label, X, y, epochs, repeat, batch_sizes, optimizers=OPTIMIZERS):
    print(f"\n== {label}: {X.shape[0]:,} x {X.shape[1]:,}, {X.nnz / X.shape[0]:.1f} nnz/row, "
          f"{epochs} epochs, median of {repeat} ==")
    makers = {"SGDClassifier(log_loss)": lambda: SGDClassifier(loss="log_loss", alpha=ALPHA, max_iter=epochs,
                                                               tol=None, random_state=0)}
    optimizers = ["sgd"] + [name for name in optimizers if name != "sgd"]  # the "x sgd" base
    for bs in batch_sizes:
        for name in optimizers:
            makers[(name, bs)] = (lambda name=name, bs=bs: LogisticRegression(
                optimizer=name, alpha=ALPHA, max_iter=epochs, tol=None, batch_size=bs, random_state=0))
    t = time_round_robin(makers, X, y, epochs, repeat)
    sk = t["SGDClassifier(log_loss)"]
    print(f"{'estimator':34} {'s/epoch':>9} {'x SGDClf':>9} {'x sgd':>7}")
    print(f"{'SGDClassifier(log_loss)':34} {sk:9.4f} {1.0:9.2f} {'':>7}")
    for bs in batch_sizes:
        base = t[("sgd", bs)]
        for name in optimizers:
            v = t[(name, bs)]
            print(f"{f'sparseopt {name} (batch {bs})':34} {v:9.4f} {v / sk:9.2f} {v / base:7.2f}")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats and a 20,000-row synthetic set (not 100,000)")
    parser.add_argument("--epochs", type=_positive_int, default=5, help="epochs per fit (default: 5)")
    parser.add_argument(
        "--optimizers", nargs="+", choices=OPTIMIZERS, default=OPTIMIZERS, help="default: all; sgd is always timed"
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=_positive_int, default=[32, 1], help="sparseopt's batch_size (default: 32 1)"
    )
    parser.add_argument(
        "--zipf-features", type=_positive_int, default=100_000,
        help="features of the synthetic set (default: 100,000; HashingVectorizer's default is 1048576)",
    )
    parser.add_argument("--skip-a9a", action="store_true", help="the synthetic set only")
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="Numba threads for sparseopt (default: Numba's default)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads > numba.config.NUMBA_NUM_THREADS:
            parser.error(f"--threads {args.threads}: Numba has {numba.config.NUMBA_NUM_THREADS} threads at most here "
                         "(NUMBA_NUM_THREADS)")
        numba.set_num_threads(args.threads)
    # (the adaptive rules' epochs on records run on two of them on the large Zipf set)
    print(f"sparseopt on {numba.get_num_threads()} Numba thread(s), SGDClassifier on one")
    warnings.simplefilter("ignore", ConvergenceWarning)
    repeat = 3 if args.quick else 7
    if not args.skip_a9a:
        X, y = load_a9a("train")
        X.indices = X.indices.astype(np.int32)  # SGDClassifier takes int32 indices only
        X.indptr = X.indptr.astype(np.int32)
        run("a9a", X, y, args.epochs, repeat, args.batch_sizes, args.optimizers)
    n = 20_000 if args.quick else 100_000
    X, y = make_zipf_classification(n, args.zipf_features, random_state=0)
    run("synthetic Zipf", X, y, args.epochs, max(3, repeat - 2), args.batch_sizes, args.optimizers)


if __name__ == "__main__":
    main()
