"""AdaGrad on rare features: where it wins, and where it does not, by measurement.

A logistic regression is trained by mini-batch steps of each of the five
optimizers of ``sparseopt.optim`` on data whose features follow a Zipf
frequency law (a few frequent, many rare), each at its best learning rate
from a small grid, for the same number of epochs.  The objective is the
mean log loss + alpha/2 ||w||^2; its exact minimiser ``w_opt`` comes from
scikit-learn's lbfgs, so the distance ``w - w_opt`` of every weight can be
measured and grouped by how often its feature occurs.

Two data sets go through the same code:

1. synthetic: binary features drawn from a Zipf law, labels from a known
   logistic model;
2. real text: the SMS Spam Collection as binary bag of words, bucketed by
   word frequency.

Printed (and plotted to ``docs/rare_features.png``):

(a) the training objective's gap to the optimum, per epoch;
(b) the relative weight error ||w - w_opt|| / ||w_opt|| per frequency
    bucket, at the end of training;
(c) AdaGrad's effective per-feature learning rate lr / sqrt(G + eps)
    against feature frequency (it falls like 1/sqrt(count)).

Run ``python examples/rare_features.py`` (about a minute; ``--quick`` for a
few seconds, ``--no-plot`` to skip the figure).
"""

import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from sparseopt import optim

OPTIMIZERS = optim.OPTIMIZERS
# learning-rate grids (each spans the optimizer's usual range)
GRIDS = {
    "sgd": [0.1, 0.3, 1.0, 3.0],
    "momentum": [0.01, 0.03, 0.1, 0.3],
    "adagrad": [0.03, 0.1, 0.3, 1.0],
    "rmsprop": [0.001, 0.003, 0.01, 0.03],
    "adam": [0.001, 0.003, 0.01, 0.03],
}
BUCKET_EDGES = [1, 10, 100, 1000, np.inf]  # occurrences of a feature in the training data


# -- data ------------------------------------------------------------------------

def zipf_data(n_samples, n_features, nnz_per_row, exponent=1.1, seed=0):
    """Binary features with P(feature j) proportional to 1/(j+1)**exponent; labels from a logistic model."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_features + 1) ** exponent
    p /= p.sum()
    cols = rng.choice(n_features, size=(n_samples, nnz_per_row), p=p)
    rows = np.repeat(np.arange(n_samples), nnz_per_row)
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols.ravel())), shape=(n_samples, n_features))
    X.data[:] = 1.0  # duplicates were summed: keep the features binary
    w_true = rng.normal(0.0, 1.0, n_features)
    u = rng.random(n_samples)
    y = (u < expit(X @ w_true)).astype(np.float64)
    return X, y, w_true, u


def drifted_labels(X, w_true, u, n_flip):
    """Labels after a drift: the weights of the ``n_flip`` most frequent features change sign."""
    w = w_true.copy()
    w[:n_flip] *= -1.0
    return (u < expit(X @ w)).astype(np.float64)


def sms_bag_of_words(max_rows=None):
    from sklearn.feature_extraction.text import CountVectorizer

    from sparseopt.datasets import load_sms_spam

    texts, y = load_sms_spam()
    if max_rows:
        texts, y = texts[:max_rows], y[:max_rows]
    X = CountVectorizer(binary=True).fit_transform(texts).astype(np.float64).tocsr()
    return X, y.astype(np.float64)


# -- the experiment ----------------------------------------------------------------

def objective(X, y, w, alpha):
    z = X @ w
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * alpha * (w @ w))


def optimum(X, y, alpha):
    """Exact minimiser of mean log loss + alpha/2 ||w||^2 (no intercept), by lbfgs."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0 / (alpha * X.shape[0]), fit_intercept=False, tol=1e-10, max_iter=10_000)
    clf.fit(X, y)
    return clf.coef_.ravel().copy()


def make_batches(X, y, epochs, batch_size, seed):
    """The same shuffled mini-batches (X_b, X_b^T, y_b) for every optimizer and learning rate."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        perm = rng.permutation(X.shape[0])
        Xp, yp = X[perm], y[perm]
        epoch = []
        for i in range(0, X.shape[0], batch_size):
            Xb = Xp[i:i + batch_size]
            epoch.append((Xb, Xb.T.tocsr(), yp[i:i + batch_size]))
        out.append(epoch)
    return out


def train(name, lr, X, y, batches, alpha, opt=None):
    """Mini-batch training with one optimizer (or continuing ``opt``).

    Returns w, the optimizer, and the objective per epoch (epoch 0 first).
    """
    if opt is None:
        opt = OPTIMIZERS[name](np.zeros(X.shape[1]), lr=lr)
    w = opt.param
    curve = [objective(X, y, w, alpha)]
    for epoch in batches:
        for Xb, XbT, yb in epoch:
            g = XbT @ ((expit(Xb @ w) - yb) / yb.size)
            g += alpha * w
            opt.step(g)
        curve.append(objective(X, y, w, alpha) if np.all(np.isfinite(w)) else np.inf)
    return w, opt, np.array(curve)


def bucket_of(counts):
    return np.digitize(counts, BUCKET_EDGES) - 1  # 0 .. len(edges)-2


def bucket_labels():
    labels = []
    for lo, hi in zip(BUCKET_EDGES[:-1], BUCKET_EDGES[1:]):
        labels.append(f"{lo}+" if not np.isfinite(hi) else f"{lo}-{int(hi) - 1}")
    return labels


def relative_errors(w, w_opt, buckets, n_buckets):
    err = np.full(n_buckets, np.nan)
    for b in range(n_buckets):
        m = buckets == b
        if m.any():
            err[b] = np.linalg.norm(w[m] - w_opt[m]) / max(np.linalg.norm(w_opt[m]), 1e-12)
    return err


def run(X, y, alpha, epochs, batch_size, grids, seed=0, log=print):
    """The whole measurement on one data set; returns a dict of numbers (printed by ``report``)."""
    counts = np.asarray((X != 0).sum(axis=0)).ravel()
    present = counts > 0
    buckets = np.where(present, bucket_of(np.maximum(counts, 1)), -1)
    n_buckets = len(BUCKET_EDGES) - 1
    w_opt = optimum(X, y, alpha)
    f_opt = objective(X, y, w_opt, alpha)
    batches = make_batches(X, y, epochs, batch_size, seed)
    best = {}
    for name, grid in grids.items():
        t0 = time.perf_counter()
        runs = [(lr, *train(name, lr, X, y, batches, alpha)) for lr in grid]
        lr, w, opt, curve = min(runs, key=lambda r: r[3][-1])
        best[name] = {"lr": lr, "w": w, "opt": opt, "curve": curve,
                      "errors": relative_errors(w, w_opt, buckets, n_buckets),
                      "grid": {r[0]: r[3][-1] for r in runs}}
        log(f"  {name:<9} best lr {lr:<6g} final objective {curve[-1]:.6f} ({time.perf_counter() - t0:.1f}s)")
    G = best["adagrad"]["opt"].state["G"]
    eff_lr = best["adagrad"]["lr"] / np.sqrt(G + best["adagrad"]["opt"].hyperparams["eps"])
    return {"counts": counts, "present": present, "buckets": buckets, "n_buckets": n_buckets,
            "bucket_sizes": np.array([(buckets == b).sum() for b in range(n_buckets)]),
            "w_opt": w_opt, "f_opt": f_opt, "best": best, "adagrad_eff_lr": eff_lr}


def run_drift(X, y_before, y_after, alpha, epochs, batch_size, lrs, seed=0, log=print):
    """Train on ``y_before``, then continue the same optimizers on ``y_after``; measure the second phase."""
    counts = np.asarray((X != 0).sum(axis=0)).ravel()
    buckets = np.where(counts > 0, bucket_of(np.maximum(counts, 1)), -1)
    n_buckets = len(BUCKET_EDGES) - 1
    w_opt = optimum(X, y_after, alpha)
    f_opt = objective(X, y_after, w_opt, alpha)
    b1 = make_batches(X, y_before, epochs, batch_size, seed)
    b2 = make_batches(X, y_after, epochs, batch_size, seed + 1)
    best = {}
    for name, lr in lrs.items():
        _, opt, _ = train(name, lr, X, y_before, b1, alpha)
        w, opt, curve = train(name, lr, X, y_after, b2[:1], alpha, opt=opt)
        err1 = relative_errors(w, w_opt, buckets, n_buckets)
        w, opt, rest = train(name, lr, X, y_after, b2[1:], alpha, opt=opt)
        best[name] = {"lr": lr, "w": w, "opt": opt, "curve": np.concatenate([curve, rest[1:]]),
                      "errors": err1, "errors_end": relative_errors(w, w_opt, buckets, n_buckets)}
    log(f"  drift: done ({len(lrs)} optimizers)")
    return {"counts": counts, "present": counts > 0, "buckets": buckets, "n_buckets": n_buckets,
            "bucket_sizes": np.array([(buckets == b).sum() for b in range(n_buckets)]),
            "w_opt": w_opt, "f_opt": f_opt, "best": best}


def report(title, res, out=None, when="at the end of training"):
    out = out or sys.stdout
    labels = bucket_labels()
    best = res["best"]
    print(f"\n== {title} ==", file=out)
    print(f"optimum objective (lbfgs): {res['f_opt']:.6f}", file=out)
    print("(a) objective gap to the optimum per epoch, each optimizer at its best learning rate", file=out)
    n_ep = len(next(iter(best.values()))["curve"])
    print(f"{'optimizer':<10} {'lr':>6} " + " ".join(f"{'ep ' + str(e):>9}" for e in range(1, n_ep)), file=out)
    for name, b in best.items():
        gaps = b["curve"][1:] - res["f_opt"]
        print(f"{name:<10} {b['lr']:>6g} " + " ".join(f"{g:>9.2e}" for g in gaps), file=out)
    print(f"(b) relative weight error ||w - w_opt|| / ||w_opt|| by feature frequency (occurrences), {when}",
          file=out)
    print(f"{'bucket':<10} {'features':>8} " + " ".join(f"{n:>9}" for n in best) + "   best", file=out)
    for k, lab in enumerate(labels):
        if res["bucket_sizes"][k] == 0:
            continue
        errs = {n: b["errors"][k] for n, b in best.items()}
        winner = min(errs, key=lambda n: errs[n] if np.isfinite(errs[n]) else np.inf)
        print(f"{lab:<10} {res['bucket_sizes'][k]:>8d} " + " ".join(f"{e:>9.3f}" for e in errs.values())
              + f"   {winner}", file=out)
    if "adagrad_eff_lr" not in res:
        print("(b') the same after the whole second phase", file=out)
        for k, lab in enumerate(labels):
            if res["bucket_sizes"][k] == 0:
                continue
            errs = {n: b["errors_end"][k] for n, b in best.items()}
            winner = min(errs, key=lambda n: errs[n] if np.isfinite(errs[n]) else np.inf)
            print(f"{lab:<10} {res['bucket_sizes'][k]:>8d} " + " ".join(f"{e:>9.3f}" for e in errs.values())
                  + f"   {winner}", file=out)
        return
    print("(c) AdaGrad's effective learning rate lr/sqrt(G+eps) by feature frequency (median)", file=out)
    eff = res["adagrad_eff_lr"]
    for k, lab in enumerate(labels):
        m = res["buckets"] == k
        if m.any():
            print(f"{lab:<10} {np.median(eff[m]):>10.4g}", file=out)
    m = res["present"]
    slope = np.polyfit(np.log(res["counts"][m]), np.log(eff[m]), 1)[0]
    print(f"log-log slope of effective rate vs count: {slope:.3f} (1/sqrt(count) would be -0.5)", file=out)


def adagrad_vs_best_other(res, key="errors"):
    """Per non-empty bucket: (label, adagrad's error, best other optimizer, its error)."""
    labels = bucket_labels()
    rows = []
    for k, lab in enumerate(labels):
        if res["bucket_sizes"][k] == 0:
            continue
        others = {n: b[key][k] for n, b in res["best"].items() if n != "adagrad"}
        other = min(others, key=others.get)
        rows.append((lab, res["best"]["adagrad"][key][k], other, others[other]))
    return rows


def summary(results, out=None):
    out = out or sys.stdout
    print("\n== where AdaGrad wins and where it does not (relative weight error, AdaGrad / best other) ==",
          file=out)
    for title, res in results:
        when = "1 epoch after the drift" if "adagrad_eff_lr" not in res else "end of training"
        for lab, ada, other, err in adagrad_vs_best_other(res):
            verdict = "wins" if ada < err else "loses"
            print(f"{title + ', ' + when:<44} features seen {lab:<9} adagrad {ada:.3f} vs {other:<8} {err:.3f}: "
                  f"{verdict} ({ada / err:.2f}x)", file=out)


def _bars(ax, res, labels, key, title):
    best = res["best"]
    ks = [k for k in range(res["n_buckets"]) if res["bucket_sizes"][k] > 0]
    width = 0.8 / len(best)
    for i, (name, b) in enumerate(best.items()):
        ax.bar(np.arange(len(ks)) + i * width, [b[key][k] for k in ks], width, label=name)
    ax.set_xticks(np.arange(len(ks)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{labels[k]}\n({res['bucket_sizes'][k]} feat.)" for k in ks], fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("feature occurrences in the training data")
    ax.set_ylabel("||w - w_opt|| / ||w_opt|| (log)")
    ax.set_title(title)
    ax.legend(fontsize=8)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = bucket_labels()
    fig, axes = plt.subplots(len(results), 3, figsize=(15, 4.2 * len(results)), squeeze=False)
    for row, (title, res) in zip(axes, results):
        best = res["best"]
        ax = row[0]
        for name, b in best.items():
            gap = np.maximum(b["curve"] - res["f_opt"], 1e-12)
            ax.plot(np.arange(gap.size), gap, marker="o", ms=3, label=f"{name} (lr {b['lr']:g})")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("objective - optimum")
        ax.set_title(f"{title}: (a) training objective gap")
        ax.legend(fontsize=8)
        if "adagrad_eff_lr" not in res:  # the drift experiment
            row[0].set_title(f"{title}: (a) objective gap after the drift")
            _bars(row[1], res, labels, "errors", "(b) weight error, 1 epoch after the drift")
            _bars(row[2], res, labels, "errors_end", "(b') weight error at the end")
            continue
        _bars(row[1], res, labels, "errors", "(b) weight error by feature frequency")
        ax = row[2]
        m = res["present"]
        ax.scatter(res["counts"][m], res["adagrad_eff_lr"][m], s=4, alpha=0.4, label="AdaGrad, per feature")
        sgd_lr = best["sgd"]["lr"]
        ax.axhline(sgd_lr, color="C0", ls="--", label=f"SGD's rate ({sgd_lr:g}, every feature)")
        c = np.logspace(0, np.log10(res["counts"][m].max()), 50)
        ref = np.median(res["adagrad_eff_lr"][m] * np.sqrt(res["counts"][m]))
        ax.plot(c, ref / np.sqrt(c), color="k", lw=1, label="∝ 1/sqrt(count)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("feature occurrences")
        ax.set_ylabel("effective learning rate")
        ax.set_title("(c) AdaGrad's per-feature rate after training")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def experiment(quick=False, seed=0, log=print):
    """Run the three measurements; returns ``[(title, result), ...]`` in plotting order."""
    if quick:
        n, d, nnz, epochs, batch, sms_rows = 3000, 400, 8, 3, 32, 1500
        grids = {k: v[1:3] for k, v in GRIDS.items()}
    else:
        n, d, nnz, epochs, batch, sms_rows = 20_000, 2000, 8, 10, 32, None
        grids = GRIDS
    alpha = 1e-4
    log(f"synthetic Zipf data: {n} samples, {d} features, {nnz} draws a row; alpha {alpha}, "
        f"{epochs} epochs, batch {batch}")
    X, y, w_true, u = zipf_data(n, d, nnz, seed=seed)
    synthetic = run(X, y, alpha, epochs, batch, grids, seed, log)

    n_flip = max(d // 100, 1)
    log(f"drift: the same data, labels re-drawn after the weights of the {n_flip} most frequent features "
        f"flip sign; each optimizer (best lr above) continues from its trained state for {epochs} epochs")
    lrs = {name: b["lr"] for name, b in synthetic["best"].items()}
    drift = run_drift(X, y, drifted_labels(X, w_true, u, n_flip), alpha, epochs, batch, lrs, seed, log)

    X, y = sms_bag_of_words(sms_rows)
    log(f"SMS Spam Collection, binary bag of words: {X.shape[0]} messages, {X.shape[1]} words; "
        f"alpha {alpha}, {epochs} epochs, batch {batch}")
    sms = run(X, y, alpha, epochs, batch, grids, seed, log)
    return [("synthetic Zipf", synthetic), ("SMS spam words", sms), ("synthetic, drift", drift)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and grids (a few seconds; for tests)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs"),
                        help="folder for rare_features.png (default: the repository's docs/)")
    parser.add_argument("--no-plot", action="store_true", help="print the numbers only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    results = experiment(args.quick, args.seed)
    for title, res in results:
        if "adagrad_eff_lr" in res:
            report(title, res)
        else:
            report("synthetic Zipf, after a drift of the frequent features", res, when="one epoch after the drift")
    summary(results)

    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("\nno plot: matplotlib is not installed (pip install matplotlib)")
            return 0
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "rare_features.png")
        plot(results, path)
        print(f"\nplot written to {os.path.normpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
