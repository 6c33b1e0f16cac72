"""sparseopt.dask: iterative parameter mixing on a distributed.LocalCluster.

References: a NumPy transcription of parameter mixing with full-batch local
epochs (tests/naive.py's rules of SPEC.md; each partition takes one step of
the mean gradient over its rows, the driver averages the parameters and the
optimizer state by partition weight), the single-machine estimator trained
with the same optimizer and epochs (a9a test accuracy), and the
uninterrupted run (worker loss).  The partitions train through the
estimators' public API only (``partial_fit`` and the training state).  The cluster runs two in-process workers
(``processes=False``): the kernels release the GIL, so the workers train in
parallel, and no process start or recompilation is paid.
"""

import gzip
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from naive import NaiveOptimizer  # noqa: E402
from sklearn.datasets import dump_svmlight_file  # noqa: E402

from sparseopt import cli  # noqa: E402
from sparseopt._io import DataError, load_model  # noqa: E402
from sparseopt.dask import DistributedTrainingError, fit_distributed, from_svmlight_files  # noqa: E402
from sparseopt.datasets import load_a9a  # noqa: E402
from sparseopt.linear_model import LinearRegression, LogisticRegression  # noqa: E402

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
NAIVE = {"sgd": "SGD", "momentum": "Momentum", "adagrad": "AdaGrad", "rmsprop": "RMSProp", "adam": "Adam"}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def cluster():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None)
    yield lc
    lc.close()


@pytest.fixture(scope="module")
def client(cluster):
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()


def _split(X, y, sizes):
    """Dask arrays with row chunks of the given sizes."""
    chunks = (tuple(sizes),)
    Xd = da.from_array(X, chunks=(chunks[0], X.shape[1]), asarray=False)
    return Xd, da.from_array(y, chunks=chunks)


# --------------------------------------------------------------------------
# the mixing itself, against a NumPy transcription
# --------------------------------------------------------------------------


def _naive_mixing(name, X, y, parts, loss, lr, rounds, hp):
    """Parameter mixing where each partition's local epoch is one full-batch step.

    The parameter vector is ``[w, b]`` (the intercept follows the same rule,
    unpenalised).  Each round every partition copies the mixed parameters and
    state, takes one step of SPEC.md's rule with its mean gradient, and the
    copies are averaged with weights proportional to the partition sizes.
    """
    Xb = np.hstack([X, np.ones((X.shape[0], 1))])
    theta = np.zeros(Xb.shape[1])
    mixed = NaiveOptimizer(NAIVE[name], theta, lr=lr, **hp)
    bounds = np.cumsum([0, *parts])
    for _ in range(rounds):
        locals_ = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            Xp, yp = Xb[a:b], y[a:b]
            z = Xp @ mixed.p
            dz = z - yp if loss == "squared" else -yp / (1.0 + np.exp(yp * z))
            g = Xp.T @ dz / (b - a)
            opt = NaiveOptimizer(NAIVE[name], mixed.p, lr=lr, **hp)
            opt.state = {k: v.copy() for k, v in mixed.state.items()}
            opt.t = mixed.t
            opt.dense(g)
            locals_.append(opt)
        w = np.asarray(parts, dtype=np.float64) / sum(parts)
        mixed.p = sum(wi * o.p for wi, o in zip(w, locals_))
        mixed.state = {k: sum(wi * o.state[k] for wi, o in zip(w, locals_)) for k in mixed.state}
        mixed.t += 1
    return mixed.p[:-1], mixed.p[-1]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("kind", ["logistic", "squared"])
def test_mixing_matches_numpy_reference(client, name, kind):
    # dense data (every feature in every partition, so the lazy updates are
    # dense ones), partitions of unequal size, batch_size >= any partition:
    # each local epoch is one step of the partition's mean gradient
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 6))
    if kind == "logistic":
        y = np.where(X @ rng.normal(size=6) + 0.3 * rng.normal(size=100) > 0, 1.0, -1.0)
        est = LogisticRegression
    else:
        y = X @ rng.normal(size=6) + 0.5 + 0.1 * rng.normal(size=100)
        est = LinearRegression
    hp = {"momentum": {"momentum": 0.8}, "rmsprop": {"rho": 0.8}, "adam": {"beta1": 0.8, "beta2": 0.9}}.get(name, {})
    lr = 0.05
    parts = [50, 30, 20]
    Xd, yd = _split(X, y, parts)
    model = est(optimizer=name, optimizer_params=hp or None, learning_rate=lr, penalty=None, batch_size=128,
                tol=None, random_state=0)
    fit_distributed(model, Xd, yd, client=client, n_rounds=4)
    w_ref, b_ref = _naive_mixing(name, X, y, parts, "logistic" if kind == "logistic" else "squared", lr, 4, hp)
    # float64: the kernel sums the batch gradient in another order than NumPy (rounding ~1e-15
    # per step, amplified a little by AdaGrad/RMSProp/Adam's division by small roots)
    assert_allclose(np.ravel(model.coef_), w_ref, rtol=1e-9, atol=1e-12)
    assert_allclose(np.ravel(model.intercept_), b_ref, rtol=1e-9, atol=1e-12)
    assert model.n_iter_ == 4 and model.t_ == 4


@pytest.mark.parametrize("parts", [[6] * 9 + [10] * 4, [3] * 70])
def test_mixing_tree_of_many_partitions(client, parts):
    # more partitions than the fan-in of the averaging tree (8): partial sums, then the average
    rng = np.random.default_rng(2)
    n = sum(parts)
    X = rng.normal(size=(n, 4))
    y = np.where(X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
    model = LogisticRegression(optimizer="adagrad", learning_rate=0.1, penalty=None, batch_size=64, tol=None,
                               random_state=0)
    fit_distributed(model, *_split(X, y, parts), client=client, n_rounds=3)
    w_ref, b_ref = _naive_mixing("adagrad", X, y, parts, "logistic", 0.1, 3, {})
    assert_allclose(model.coef_.ravel(), w_ref, rtol=1e-9, atol=1e-12)
    assert_allclose(model.intercept_, [b_ref], rtol=1e-9, atol=1e-12)


def test_one_partition_without_shuffle_equals_fit(client):
    # one partition, no shuffling: mixing is the identity, so the rounds must
    # continue each other exactly as fit's epochs do (optimizer state, step and
    # epoch counters, learning-rate schedule, penalty)
    X, y = load_a9a()
    X, y = X[:3000], y[:3000]
    for name in ("adam", "momentum"):
        kw = dict(optimizer=name, shuffle=False, tol=None, max_iter=3, alpha=1e-4, lazy="exact")
        single = LogisticRegression(**kw).fit(X, y)
        Xd, yd = _split(X, y, [3000])
        dist = fit_distributed(LogisticRegression(**kw), Xd, yd, client=client)
        assert_allclose(dist.coef_, single.coef_, rtol=1e-12, atol=1e-15)
        assert_allclose(dist.intercept_, single.intercept_, rtol=1e-12, atol=1e-15)
        assert dist.t_ == single.t_
        assert_allclose(dist.loss_curve_, single.loss_curve_, rtol=1e-12)
        # the whole training state (optimizer arrays, counters, schedule) is fit's too
        s_dist, s_single = dist.get_training_state(), single.get_training_state()
        assert sorted(s_dist) == sorted(k for k in s_single if not k.startswith("rng_"))
        for k, v in s_dist.items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                assert_allclose(v, s_single[k], rtol=1e-12, atol=1e-15, err_msg=k)
            else:
                assert_array_equal(v, s_single[k], err_msg=k)


# --------------------------------------------------------------------------
# a9a: 4 partitions against the single machine
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def a9a():
    X, y = load_a9a("train")
    Xt, yt = load_a9a("test")
    return X, y, Xt, yt


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a9a_four_partitions_match_single_machine(client, a9a, name):
    X, y, Xt, yt = a9a
    epochs = 5
    single = LogisticRegression(optimizer=name, max_iter=epochs, tol=None, random_state=0).fit(X, y)
    n = X.shape[0]
    Xd, yd = _split(X, y, [n // 4] * 3 + [n - 3 * (n // 4)])
    dist = fit_distributed(LogisticRegression(optimizer=name, max_iter=epochs, tol=None, random_state=0),
                           Xd, yd, client=client)
    acc_single, acc_dist = single.score(Xt, yt), dist.score(Xt, yt)
    assert abs(acc_dist - acc_single) <= 0.005, (acc_single, acc_dist)
    assert acc_dist > 0.84  # a9a's linear models score about 0.85
    assert dist.n_iter_ == epochs and len(dist.loss_curve_) == epochs
    # deterministic given random_state and the partitioning
    again = fit_distributed(LogisticRegression(optimizer=name, max_iter=epochs, tol=None, random_state=0),
                            Xd, yd, client=client)
    assert_array_equal(again.coef_, dist.coef_)
    assert_array_equal(again.intercept_, dist.intercept_)


def test_seed_and_partitioning_change_the_model(client, a9a):
    X, y, _, _ = a9a
    X, y = X[:4000], y[:4000]
    kw = dict(optimizer="adagrad", max_iter=2, tol=None)
    a = fit_distributed(LogisticRegression(random_state=0, **kw), *_split(X, y, [1000] * 4), client=client)
    b = fit_distributed(LogisticRegression(random_state=1, **kw), *_split(X, y, [1000] * 4), client=client)
    c = fit_distributed(LogisticRegression(random_state=0, **kw), *_split(X, y, [2000] * 2), client=client)
    assert not np.array_equal(a.coef_, b.coef_)
    assert not np.array_equal(a.coef_, c.coef_)


# --------------------------------------------------------------------------
# the fitted estimator, inputs
# --------------------------------------------------------------------------


def test_fitted_estimator_is_ordinary(client, a9a):
    X, y, Xt, yt = a9a
    X, y = X[:6000], y[:6000]
    est = fit_distributed(LogisticRegression(optimizer="adagrad", max_iter=2, tol=None, random_state=0),
                          *_split(X, y, [2000] * 3), client=client)
    assert_array_equal(est.classes_, [-1.0, 1.0])
    assert est.coef_.shape == (1, 123) and est.n_features_in_ == 123
    clone = pickle.loads(pickle.dumps(est))
    assert_array_equal(clone.predict(Xt), est.predict(Xt))
    assert_allclose(clone.predict_proba(Xt[:10]).sum(axis=1), 1.0)
    before = est.coef_.copy()
    est.partial_fit(X, y)  # continues from the mixed model and optimizer state
    assert est.coef_.shape == before.shape and not np.array_equal(est.coef_, before)
    assert est.score(Xt, yt) > 0.83


def test_dense_chunks_give_the_sparse_model(client):
    rng = np.random.default_rng(0)
    X = sp.random(400, 30, density=0.2, random_state=1, format="csr")
    y = (X @ rng.normal(size=30) > 0).astype(np.int64)
    kw = dict(optimizer="rmsprop", max_iter=3, tol=None, random_state=3)
    a = fit_distributed(LogisticRegression(**kw), *_split(X, y, [200, 200]), client=client)
    b = fit_distributed(LogisticRegression(**kw), *_split(X.toarray(), y, [200, 200]), client=client)
    assert_allclose(a.coef_, b.coef_, rtol=1e-12, atol=1e-15)
    assert_array_equal(a.classes_, [0, 1])


def test_multinomial_and_regression(client):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    kw = dict(optimizer="adam", max_iter=10, tol=None, random_state=0)
    single = LogisticRegression(**kw).fit(X[:1400], y[:1400])
    dist = fit_distributed(LogisticRegression(**kw), *_split(X[:1400], y[:1400], [350] * 4), client=client)
    assert dist.coef_.shape == (10, 64)
    assert abs(dist.score(X[1400:], y[1400:]) - single.score(X[1400:], y[1400:])) < 0.02

    rng = np.random.default_rng(0)
    Xr = sp.random(2000, 50, density=0.2, random_state=2, format="csr")
    yr = Xr @ rng.normal(size=50) + 1.0 + 0.01 * rng.normal(size=2000)
    kw = dict(optimizer="adagrad", max_iter=20, tol=None, random_state=0)
    single = LinearRegression(**kw).fit(Xr, yr)
    dist = fit_distributed(LinearRegression(**kw), *_split(Xr, yr, [500] * 4), client=client)
    assert np.ndim(dist.coef_) == 1 and np.ndim(dist.intercept_) == 0
    assert abs(dist.score(Xr, yr) - single.score(Xr, yr)) < 0.01


def test_sample_weight_weights_partitions(client):
    # zero weight on half of each partition = training on the other half only,
    # and integer weights = repeated rows (same mean gradient with full batches)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.where(X[:, 0] + 0.2 * rng.normal(size=120) > 0, 1.0, -1.0)
    sw = np.tile([2.0, 1.0], 60)
    sw[:40] = 0.5  # partition 0 weighs less in the average than its size says
    kw = dict(optimizer="sgd", learning_rate=0.1, penalty=None, batch_size=500, tol=None, random_state=0)
    a = fit_distributed(LogisticRegression(**kw), *_split(X, y, [40, 80]), sample_weight=sw, client=client,
                        n_rounds=3)
    # reference: full-batch GD on the weighted objective = mixing with weights sum(sw_p)
    w = np.zeros(5)
    Xb = np.hstack([X, np.ones((120, 1))])
    for _ in range(3):
        g = Xb.T @ (sw * -y / (1 + np.exp(y * (Xb @ w)))) / sw.sum()
        w = w - 0.1 * g
    assert_allclose(np.r_[a.coef_.ravel(), a.intercept_], w, rtol=1e-10)


def test_from_svmlight_files_reads_on_workers(client, tmp_path, a9a):
    X, y, Xt, yt = a9a
    paths = []
    for i in range(3):
        p = tmp_path / f"part{i}.svm.gz"
        with gzip.open(p, "wb") as f:
            dump_svmlight_file(X[i * 1000:(i + 1) * 1000], y[i * 1000:(i + 1) * 1000], f, zero_based=False)
        paths.append(str(p))
    Xd, yd, zb = from_svmlight_files(paths, client=client)
    assert zb is False
    assert Xd.shape[0] == 3000 and Xd.numblocks == (3, 1)
    assert isinstance(client.compute(Xd.blocks[1]).result(), sp.csr_matrix)
    # one-based files: the last column may be missing from every file; the widest file decides
    assert Xd.shape[1] <= 123
    assert_array_equal(client.compute(yd).result(), y[:3000])
    got = client.compute(Xd).result()
    assert_allclose(got.toarray(), X[:3000, :got.shape[1]].toarray())
    Xd2, _, _ = from_svmlight_files(paths, client=client, n_features=123)
    assert Xd2.shape == (3000, 123)
    with pytest.raises(DataError, match="no such file"):
        from_svmlight_files([*paths, str(tmp_path / "missing.svm")], client=client)


def test_from_svmlight_files_zero_based_auto(client, tmp_path):
    a = tmp_path / "a.svm"
    b = tmp_path / "b.svm"
    a.write_text("1 0:1 2:1\n-1 1:1\n")   # uses index 0: zero-based
    b.write_text("1 1:2 3:1\n-1 2:1\n")   # alone it would read as one-based
    Xd, yd, zb = from_svmlight_files([str(a), str(b)], client=client)
    assert zb is True and Xd.shape == (4, 4)
    assert_array_equal(client.compute(Xd).result().toarray(), [[1, 0, 1, 0], [0, 1, 0, 0], [0, 2, 0, 1], [0, 0, 1, 0]])


# --------------------------------------------------------------------------
# failures
# --------------------------------------------------------------------------


def test_bad_partition_is_named(client):
    X = np.ones((60, 3))
    X[45, 1] = np.nan
    y = np.tile([0, 1], 30)
    with pytest.raises(DistributedTrainingError, match=r"partition 2 failed: ValueError: .*NaN"):
        fit_distributed(LogisticRegression(max_iter=1), *_split(X, y, [20, 20, 20]), client=client)
    # partitions are named by their row-chunk index; empty chunks are skipped
    with pytest.raises(DistributedTrainingError, match=r"partition 3 failed: ValueError: .*NaN"):
        fit_distributed(LogisticRegression(max_iter=1), *_split(X, y, [20, 0, 20, 20]), client=client)
    ok = fit_distributed(LogisticRegression(max_iter=1, tol=None), *_split(np.ones((60, 3)), y, [30, 0, 30]),
                         client=client)
    assert ok.n_iter_ == 1
    with pytest.raises(ValueError, match=r"labels \[1\] not in classes"):
        fit_distributed(LogisticRegression(max_iter=1), *_split(np.ones((60, 3)), y, [20, 20, 20]),
                        classes=[0, 2], client=client)


def test_diverging_round_is_an_error(client):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) * 1e100  # the first steps overflow
    y = X @ np.ones(3)
    est = LinearRegression(optimizer="sgd", learning_rate=10.0, penalty=None, tol=None, max_iter=3)
    with pytest.raises(DistributedTrainingError, match=r"partition \d in round 0 failed: FloatingPointError"):
        fit_distributed(est, *_split(X, y, [100, 100]), client=client)
    assert not hasattr(est, "coef_")  # nothing half-fitted


def test_bad_arguments(client):
    X, y = _split(np.ones((10, 2)), np.tile([0, 1], 5), [5, 5])
    with pytest.raises(TypeError, match="dask.array"):
        fit_distributed(LogisticRegression(), np.ones((10, 2)), np.tile([0, 1], 5), client=client)
    with pytest.raises(ValueError, match="n_rounds"):
        fit_distributed(LogisticRegression(), X, y, client=client, n_rounds=0)
    with pytest.raises(ValueError, match="early_stopping"):
        fit_distributed(LogisticRegression(early_stopping=True), X, y, client=client)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_distributed(LogisticRegression(), X, da.zeros(10, chunks=5), client=client)
    with pytest.raises(ValueError, match="no Dask client"):
        fit_distributed(LogisticRegression(), X, y)


def test_worker_loss_recomputes_and_gives_the_same_model(tmp_path):
    # data read from files by the workers; one worker is closed after round 1:
    # Dask re-reads its partitions on the other worker and the rounds go on,
    # giving exactly the model of the uninterrupted run
    X, y = load_a9a()
    paths = []
    for i in range(4):
        p = tmp_path / f"p{i}.svm"
        dump_svmlight_file(X[i * 800:(i + 1) * 800], y[i * 800:(i + 1) * 800], str(p), zero_based=False)
        paths.append(str(p))
    kw = dict(optimizer="adam", max_iter=4, tol=None, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as lc, distributed.Client(lc) as c:
            Xd, yd, _ = from_svmlight_files(paths, client=c, n_features=123)
            ref = fit_distributed(LogisticRegression(**kw), Xd, yd, client=c)
            closed = []

            def lose_a_worker(rnd, info):
                if rnd == 1:
                    name, w = sorted(lc.workers.items())[0]
                    n_keys = len(w.data)
                    lc.sync(w.close)
                    closed.append(n_keys)

            est = fit_distributed(LogisticRegression(**kw), Xd, yd, client=c, callback=lose_a_worker)
            assert closed and closed[0] > 0  # the closed worker held data
            assert len(c.scheduler_info()["workers"]) == 1
    assert_array_equal(est.coef_, ref.coef_)
    assert_array_equal(est.intercept_, ref.intercept_)


def test_no_worker_times_out():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as lc, \
                distributed.Client(lc) as c:
            X, y = _split(np.ones((10, 2)), np.tile([0, 1], 5), [5, 5])
            with pytest.raises(DistributedTrainingError, match="did not finish within 1"):
                fit_distributed(LogisticRegression(), X, y, client=c, timeout=1)


# --------------------------------------------------------------------------
# package layout, CLI
# --------------------------------------------------------------------------


def test_import_sparseopt_does_not_import_dask():
    code = ("import sys, sparseopt, sparseopt.linear_model, sparseopt.cli; "
            "print(any(m == 'dask' or m.startswith('dask.') or m == 'distributed' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dask_ml_incremental_partial_fit(client, a9a):
    # documented in the README; runs where dask-ml is installed
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y, Xt, yt = a9a
    X, y = X[:8000], y[:8000]
    inc = wrappers.Incremental(LogisticRegression(optimizer="adagrad", random_state=0), scoring="accuracy")
    with distributed.Client(client.scheduler.address, set_as_default=True):
        inc.fit(*_split(X, y, [2000] * 4), classes=[-1.0, 1.0])
    assert inc.estimator_.score(Xt, yt) > 0.83


def test_cli_train_with_scheduler(client, tmp_path, capsys, a9a):
    X, y, Xt, yt = a9a
    paths = []
    for i in range(3):
        p = tmp_path / f"train{i}.svm"
        dump_svmlight_file(X[i * 1500:(i + 1) * 1500], y[i * 1500:(i + 1) * 1500], str(p), zero_based=False)
        paths.append(str(p))
    model = tmp_path / "model.npz"
    code = cli.main(["train", "--scheduler", client.scheduler.address, *paths, "-o", str(model),
                     "--optimizer", "adam", "--epochs", "3", "--seed", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "3 partitions on 2 Dask workers, 3 rounds" in captured.out
    est, zb = load_model(model)
    assert zb is False
    # the same training through the Python API gives the saved model
    Xd, yd, _ = from_svmlight_files(paths, client=client)
    ref = fit_distributed(LogisticRegression(optimizer="adam", max_iter=3, tol=None, random_state=0), Xd, yd,
                          client=client)
    assert_allclose(est.coef_, ref.coef_, rtol=1e-15)
    assert est.n_features_in_ == ref.n_features_in_
    # several files without --scheduler, and a dead scheduler: one-line errors
    code = cli.main(["train", *paths, "-o", str(model)])
    assert code == 1 and "--scheduler" in capsys.readouterr().err
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = cli.main(["train", "--scheduler", "tcp://127.0.0.1:9", paths[0], "-o", str(model)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in err, err
