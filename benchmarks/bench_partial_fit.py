"""Milliseconds per ``partial_fit`` call: sparseopt.linear_model.LogisticRegression vs SGDClassifier.

The streaming (out-of-core) workflow: a model trained chunk after chunk of
hashed text features, one ``partial_fit`` call per chunk.  Each call is one
epoch over a small chunk, so whatever a call costs in proportion to
``n_features`` (rather than to the chunk's stored entries) dominates it on a
wide feature space.  The script prints, for every number of features and
chunk size, the median milliseconds per call of each optimizer and of
scikit-learn's ``SGDClassifier(loss="log_loss")``, and the ratio

* ``x SGDClf``: sparseopt's time / ``SGDClassifier``'s, measured in the same
  run (< 1 means sparseopt is faster; a ratio holds on a busy machine better
  than an absolute time).

Data: ``sparseopt.datasets.make_zipf_classification(n_rows, n_features,
random_state=0)`` (~50 Zipf-distributed non-zeros a row, unit-norm rows,
labels in {-1, +1}, or with ``--classes K`` the argmax of K random linear
scores, 32-bit indices) with n_features 2**16 and 2**20 (the
width of ``HashingVectorizer``'s default), cut into consecutive chunks of
100 and 1,000 rows; ``n_rows`` covers the warm-up chunk and the timed ones
at the largest chunk size (16,000 rows, or 6,000 with ``--quick``). Both
estimators fit log loss + alpha/2 |w|^2 with alpha = 1e-5 (sparseopt at its
default ``batch_size``). Every estimator starts fresh for each (n_features,
chunk size): its first call, with ``classes=``, is a warm-up (compilation,
allocation of the weights and optimizer state) and is not timed; the timed
calls then feed chunks 1, 2, ... to every estimator in turn (round-robin, so
that a change in machine load hits all of them alike). A call's time is the
whole ``partial_fit``: input checks included, chunk slicing not.

sparseopt may run passes over all the weights on Numba's threads (all cores
unless ``--threads`` or ``NUMBA_NUM_THREADS`` says otherwise; the first line
printed names the count); ``SGDClassifier`` trains on one. The BLAS and
OpenMP thread pools that threadpoolctl sees (OpenBLAS, scikit-learn's
OpenMP; not Numba's threads) are limited to one thread while timing, unless
``--pool-threads`` says otherwise: ``SGDClassifier.partial_fit``'s helpers
use them for little work, and on this 2-core machine, with another job on
one core, they made its 0.56 ms calls take 7.9 ms (14x), which no change in
sparseopt would explain.

Usage::

    python benchmarks/bench_partial_fit.py            # 15 timed calls each
    python benchmarks/bench_partial_fit.py --quick    # 5 timed calls each (under ~30 s)
    python benchmarks/bench_partial_fit.py --optimizers sgd adam --chunk-sizes 1000 --n-features 1048576
    python benchmarks/bench_partial_fit.py --threads 1  # sparseopt on one thread, as SGDClassifier
    python benchmarks/bench_partial_fit.py --classes 3  # a multinomial model (SGDClassifier: one-vs-rest)
"""

import argparse
import time

import numba
import numpy as np
from sklearn.linear_model import SGDClassifier
from threadpoolctl import threadpool_limits

from sparseopt.datasets import make_zipf_classification
from sparseopt.linear_model import LogisticRegression

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
ALPHA = 1e-5
CLASSES = np.array([-1.0, 1.0])
PEER = "SGDClassifier(log_loss)"


def time_round_robin(makers, chunks, repeat, classes=CLASSES):
    """Median seconds per ``partial_fit`` call of each estimator.

    Each estimator's first call (``chunks[0]``, with ``classes=``) is not
    timed; then each of ``chunks[1:repeat + 1]`` is fed to every estimator
    in turn.
    """
    models = {}
    for name, make in makers.items():
        X, y = chunks[0]
        models[name] = make().partial_fit(X, y, classes=classes)  # warm-up: compile, allocate
    times = {name: [] for name in makers}
    for X, y in chunks[1 : repeat + 1]:
        for name, model in models.items():
            tic = time.perf_counter()
            model.partial_fit(X, y)
            times[name].append(time.perf_counter() - tic)
    return {name: float(np.median(t)) for name, t in times.items()}


def run(X, y, chunk_sizes, repeat, optimizers, pool_threads):
    """Time every estimator on ``X``'s leading chunks of each size; print one table.

    ``pool_threads``: threadpoolctl's limit on the BLAS and OpenMP pools while timing
    (``None``: as they are).
    """
    n_features = X.shape[1]
    timings = {}
    for size in chunk_sizes:
        chunks = [(X[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(repeat + 1)]
        makers = {PEER: lambda: SGDClassifier(loss="log_loss", alpha=ALPHA, random_state=0)}
        for name in optimizers:
            makers[name] = lambda name=name: LogisticRegression(optimizer=name, alpha=ALPHA, random_state=0)
        with threadpool_limits(pool_threads):
            timings[size] = time_round_robin(makers, chunks, repeat, np.unique(y))
    power = n_features.bit_length() - 1
    width = f"2**{power} = {n_features:,}" if n_features == 1 << power else f"{n_features:,}"
    n_classes = np.unique(y).size
    print(f"\n== n_features {width}, {X.nnz / X.shape[0]:.1f} nnz/row, {n_classes} classes, median of {repeat} calls ==")
    header = f"{'estimator':26}" + "".join(f" {f'ms ({size:,} rows)':>16} {'x SGDClf':>9}" for size in chunk_sizes)
    print(header)
    print("-" * len(header))
    for name in [PEER] + list(optimizers):
        label = name if name == PEER else f"sparseopt {name}"
        row = f"{label:26}"
        for size in chunk_sizes:
            t = timings[size]
            row += f" {1e3 * t[name]:16.2f} {t[name] / t[PEER]:9.2f}"
        print(row)


def _int_at_least(low, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 timed calls per estimator (not 15)")
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=OPTIMIZERS, help="default: all")
    parser.add_argument(
        "--chunk-sizes", nargs="+", type=_positive_int, default=[100, 1000], help="rows per call (default: 100 1000)"
    )
    parser.add_argument(
        "--n-features", nargs="+", type=_positive_int, default=[2**16, 2**20],
        help="default: 65536 1048576 (2**16 2**20)",
    )
    parser.add_argument(
        "--classes", type=_int_at_least(2, "an integer of at least 2"), default=2,
        help="classes (default: 2; more: a multinomial model, SGDClassifier one-vs-rest)",
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="Numba threads for sparseopt (default: Numba's default)"
    )
    parser.add_argument(
        "--pool-threads", type=_int_at_least(0, "a non-negative integer"), default=1,
        help="threads of the BLAS/OpenMP pools while timing (default: 1; 0: leave them as they are)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads > numba.config.NUMBA_NUM_THREADS:
            parser.error(f"--threads {args.threads}: Numba has {numba.config.NUMBA_NUM_THREADS} threads at most here "
                         "(NUMBA_NUM_THREADS)")
        numba.set_num_threads(args.threads)
    repeat = 5 if args.quick else 15
    pools = "as they are" if not args.pool_threads else f"limited to {args.pool_threads}"
    print(f"sparseopt on {numba.get_num_threads()} Numba thread(s); BLAS/OpenMP pool threads {pools}")
    for n_features in args.n_features:
        # just the rows timed: the warm-up chunk and ``repeat`` more of the largest size
        X, y = make_zipf_classification((repeat + 1) * max(args.chunk_sizes), n_features, random_state=0)
        if args.classes > 2:  # the class of the largest of args.classes random linear scores
            y = np.argmax(X @ np.random.default_rng(0).standard_normal((n_features, args.classes)), axis=1)
        run(X, y, args.chunk_sizes, repeat, args.optimizers, args.pool_threads or None)


if __name__ == "__main__":
    main()
