"""The estimators' public training state: get_training_state / set_training_state.

References: the uninterrupted run (a checkpoint restored into a fresh
estimator must continue ``partial_fit`` bit for bit), SPEC.md's rules
written out in NumPy for the meaning of the optimizer state arrays after one
full-batch step, and the state itself before a rejected restore (bad input
changes nothing).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError

from sparseopt.linear_model import LinearRegression, LogisticRegression

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _task(kind):
    """Small sparse data of each kind, in three chunks of unequal size and row norm."""
    rng = np.random.default_rng({"binary": 0, "multinomial": 1, "regression": 2}[kind])
    n, d = 450, 40
    X = sp.random(n, d, density=0.15, random_state=rng.integers(2**31), format="csr")
    X.data = rng.uniform(0.5, 1.5, size=X.nnz)
    X[300:] *= 2.0  # the last chunk has larger rows: a schedule recomputed per chunk would differ
    z = X @ rng.normal(size=(d, 3))
    if kind == "binary":
        y, est = np.where(z[:, 0] > np.median(z[:, 0]), "spam", "ham"), LogisticRegression
    elif kind == "multinomial":
        y, est = np.argmax(z, axis=1) + 1, LogisticRegression
    else:
        y, est = z[:, 0] + 0.5, LinearRegression
    chunks = [(X[:120], y[:120]), (X[120:300], y[120:300]), (X[300:], y[300:])]
    return est, chunks, np.unique(y) if est is LogisticRegression else None


def _partial_fit(est, X, y, classes):
    return est.partial_fit(X, y, classes=classes) if classes is not None else est.partial_fit(X, y)


def _assert_states_equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("kind", ["binary", "multinomial", "regression"])
def test_restored_checkpoint_continues_bit_identically(tmp_path, kind, name, lazy):
    est_cls, chunks, classes = _task(kind)
    kw = dict(optimizer=name, lazy=lazy, alpha=1e-3, penalty="elasticnet", batch_size=16, random_state=0)
    if kind == "regression" and name in ("adagrad", "rmsprop", "adam"):
        kw["learning_rate"] = 0.05
    run = est_cls(**kw)
    for X, y in chunks[:2]:
        _partial_fit(run, X, y, classes)
    # checkpoint to disk (portable npz, no pickle) in the middle of the stream
    path = tmp_path / "state.npz"
    np.savez(path, **run.get_training_state())
    with np.load(path, allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    resumed = est_cls(**kw).set_training_state(saved)
    _assert_states_equal(resumed.get_training_state(), run.get_training_state())
    # the stream goes on with the chunk of longer rows first: a schedule recomputed from it
    # (instead of restored) would differ; shuffled by the restored generator
    for _ in range(2):
        for X, y in chunks[::-1]:
            _partial_fit(run, X, y, classes)
            _partial_fit(resumed, X, y, classes)
    _assert_states_equal(resumed.get_training_state(), run.get_training_state())
    assert_array_equal(resumed.coef_, run.coef_)
    assert_array_equal(resumed.intercept_, run.intercept_)
    X = sp.vstack([c[0] for c in chunks])
    assert_array_equal(resumed.predict(X), run.predict(X))
    # the restored generator matters: restarting the shuffle from random_state trains otherwise
    again = est_cls(**kw).set_training_state(saved)
    restarted = est_cls(**kw).set_training_state({k: v for k, v in saved.items() if not k.startswith("rng_")})
    for X, y in chunks:
        _partial_fit(again, X, y, classes)
        _partial_fit(restarted, X, y, classes)
    assert restarted.t_ == again.t_
    assert not np.array_equal(restarted.coef_, again.coef_)


@pytest.mark.parametrize("penalty", ["l2", "elasticnet"])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_huge_step_count_trains_like_a_small_one(penalty, batch_size):
    """With a constant rate, AdaGrad's and RMSProp's math does not depend on ``t``: only the
    lazy penalty's bookkeeping of missed steps does.  A state at step 2**60 (beyond a
    float64's exact integers) must continue exactly like the same state at step 5."""
    est_cls, chunks, classes = _task("binary")
    for name in ("adagrad", "rmsprop"):
        kw = dict(optimizer=name, learning_rate=0.05, alpha=1e-3, penalty=penalty,
                  batch_size=batch_size, random_state=0)
        run = _partial_fit(est_cls(**kw), *chunks[0], classes)
        state = run.get_training_state()
        small = est_cls(**kw).set_training_state(dict(state, t=np.int64(5)))
        huge = est_cls(**kw).set_training_state(dict(state, t=np.int64(2**60)))
        for X, y in chunks[1:]:
            _partial_fit(small, X, y, classes)
            _partial_fit(huge, X, y, classes)
        assert huge.t_ == 2**60 + small.t_ - 5
        assert_array_equal(huge.coef_, small.coef_)
        assert_array_equal(huge.intercept_, small.intercept_)
        assert not np.array_equal(small.coef_, run.coef_)


def test_state_entries_mean_what_the_docs_say():
    # one full-batch step without shuffling or penalty from the zero model: every
    # optimizer state array follows from the mean gradient g by SPEC.md's rules
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 5))
    y = np.where(X[:, 0] + X[:, 1] > 0, 1.0, -1.0)
    Xb = np.hstack([X, np.ones((20, 1))])
    g = Xb.T @ (-y / (1.0 + np.exp(0.0))) / 20  # gradient of the mean log loss at zero
    lr = 0.1
    expected = {
        "momentum": {"v": lr * g},
        "adagrad": {"G": 0.1 + g * g},
        "rmsprop": {"E": (1 - 0.8) * g * g},
        "adam": {"m": (1 - 0.8) * g, "v": (1 - 0.9) * g * g},
    }
    hp = {"adagrad": {"initial_accumulator_value": 0.1}, "rmsprop": {"rho": 0.8},
          "adam": {"beta1": 0.8, "beta2": 0.9}}
    for name, states in expected.items():
        clf = LogisticRegression(optimizer=name, optimizer_params=hp.get(name), learning_rate=lr, penalty=None,
                                 batch_size=64, shuffle=False)
        st = clf.partial_fit(X, y, classes=[-1.0, 1.0]).get_training_state()
        assert st["t"] == 1 and st["epochs"] == 1 and st["optimizer"] == name
        assert (st["lr0"], st["lr_power"]) == (lr, 0.0)
        assert_array_equal(st["weights"], clf.coef_.T)
        assert_array_equal(st["intercept"], clf.intercept_)
        for s, ref in states.items():
            assert_allclose(st[f"weights_{s}"][:, 0], ref[:5], rtol=1e-12, atol=1e-15, err_msg=(name, s))
            assert_allclose(st[f"intercept_{s}"], ref[5:], rtol=1e-12, atol=1e-15, err_msg=(name, s))


def test_restore_into_fresh_estimator_sets_the_fitted_attributes():
    est_cls, chunks, classes = _task("multinomial")
    clf = LogisticRegression(optimizer="adam", random_state=0).fit(*chunks[1])
    fresh = LogisticRegression(optimizer="adam").set_training_state(clf.get_training_state())
    assert_array_equal(fresh.classes_, classes)
    assert fresh.n_features_in_ == 40 and fresh.t_ == clf.t_
    assert_array_equal(fresh.coef_, clf.coef_)
    assert_array_equal(fresh.predict_proba(chunks[0][0]), clf.predict_proba(chunks[0][0]))
    assert fresh.loss_curve_ == [] and fresh.n_iter_ == 0
    # a state replaces the model entirely, as fit does (other classes, other width)
    binary = LogisticRegression(optimizer="adam").fit(sp.random(30, 7, density=0.5, random_state=0),
                                                      np.arange(30) % 2)
    binary.set_training_state(clf.get_training_state())
    assert binary.coef_.shape == (3, 40)


def test_string_labels_in_object_arrays_save_without_pickle(tmp_path):
    est_cls, chunks, classes = _task("binary")
    X, y = chunks[1]
    clf = LogisticRegression(random_state=0, max_iter=2).fit(X, y.astype(object))
    assert clf.classes_.dtype == object
    np.savez(tmp_path / "s.npz", **clf.get_training_state())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    back = LogisticRegression(random_state=0, max_iter=2).set_training_state(state)
    assert_array_equal(back.classes_, ["ham", "spam"])
    assert_array_equal(back.partial_fit(X, y.astype(object)).coef_, clf.partial_fit(X, y.astype(object)).coef_)


def test_model_averaging_with_the_state():
    est_cls, chunks, classes = _task("binary")
    kw = dict(optimizer="adagrad", random_state=0, max_iter=3, tol=None)
    a = LogisticRegression(**kw).fit(*chunks[1])
    b = LogisticRegression(**kw).fit(*chunks[2])
    sa, sb = a.get_training_state(), b.get_training_state()
    mixed = {k: (sa[k] + sb[k]) / 2 if k.startswith(("weights", "intercept")) else sa[k] for k in sa}
    avg = LogisticRegression(**kw).set_training_state(mixed)
    assert_allclose(avg.coef_, (a.coef_ + b.coef_) / 2, rtol=1e-15)
    assert_allclose(avg.decision_function(chunks[0][0]),
                    (a.decision_function(chunks[0][0]) + b.decision_function(chunks[0][0])) / 2, rtol=1e-12)


def test_default_schedule_is_kept_by_partial_fit():
    # SGD's default lr0 scales with the data's row norms: fit and the first
    # partial_fit compute it, later partial_fit calls continue that schedule
    est_cls, chunks, classes = _task("binary")
    (X1, y1), _, (X3, y3) = chunks
    clf = LogisticRegression(optimizer="sgd", random_state=0).partial_fit(X1, y1, classes=classes)
    lr0 = clf.get_training_state()["lr0"]
    assert lr0 == LogisticRegression(optimizer="sgd").initial_training_state(X1, y1)["lr0"]
    clf.partial_fit(X3, y3)
    assert clf.get_training_state()["lr0"] == lr0
    other = LogisticRegression(optimizer="sgd").initial_training_state(X3, y3)["lr0"]
    assert other < lr0 / 3  # rows twice as long: about a quarter of the rate
    assert clf.fit(X3, y3).get_training_state()["lr0"] == other  # fit starts afresh
    clf.set_params(learning_rate=0.05).partial_fit(X1, y1)
    assert (clf.get_training_state()["lr0"], clf.get_training_state()["lr_power"]) == (0.05, 0.0)


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_initial_training_state_starts_like_partial_fit(kind):
    est_cls, chunks, classes = _task(kind)
    kw = dict(optimizer="momentum", random_state=0)
    est = est_cls(**kw)
    fit_kw = {"classes": classes} if classes is not None else {}
    st = est.initial_training_state(*chunks[0], **fit_kw)
    assert not hasattr(est, "coef_") and not hasattr(est, "n_features_in_")  # unchanged
    assert not any(k.startswith("rng_") for k in st)
    assert st["t"] == 0 and st["epochs"] == 0
    assert not np.any(st["weights"]) and not np.any(st["weights_v"]) and not np.any(st["intercept"])
    a = est_cls(**kw).set_training_state(st).partial_fit(*chunks[0])
    b = _partial_fit(est_cls(**kw), *chunks[0], classes)
    _assert_states_equal(a.get_training_state(), b.get_training_state())


# --------------------------------------------------------------------------
# bad states: a clear ValueError naming the entry, the estimator unchanged
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    est_cls, chunks, classes = _task("multinomial")
    return LogisticRegression(optimizer="adam", random_state=0, max_iter=2, tol=None).fit(*chunks[1])


def _edit(state, **changes):
    s = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    for k, v in changes.items():
        if v is None:
            del s[k]
        else:
            s[k] = v(s[k]) if callable(v) else v
    return s


def _nan_at_0(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


BAD = [
    ({"weights_v": None}, "lacks 'weights_v'"),
    ({"weights_G": np.zeros((40, 3))}, "unknown entries ['weights_G']"),
    ({"format": "sparseopt.linear_model"}, "'format'"),
    ({"format_version": 2}, "'format_version'"),
    ({"estimator": "LinearRegression"}, "'estimator'"),
    ({"optimizer": "rmsprop"}, "'optimizer' is 'rmsprop' but this estimator's optimizer is 'adam'"),
    ({"n_features_in": 0}, "'n_features_in'"),
    ({"weights": lambda a: a[:-1]}, "'weights' must be a float array of shape (40, 3)"),
    ({"weights_m": lambda a: a.T}, "'weights_m' must be a float array of shape (40, 3)"),
    ({"intercept": lambda a: a.astype(np.int64)}, "'intercept' must be a float array of shape (3,)"),
    ({"intercept_m": _nan_at_0}, "'intercept_m' holds NaN"),
    ({"weights_v": lambda a: a - 1.0}, "'weights_v' holds negative values"),
    ({"classes": lambda c: c[::-1]}, "'classes' must be sorted"),
    ({"classes": lambda c: c[:1]}, "'classes' must be a 1-d array of at least 2"),
    ({"t": -1}, "'t' must be an integer >= 0"),
    ({"t": 3.0}, "'t' must be an integer >= 0"),
    ({"epochs": np.array([1, 2])}, "'epochs' must be a scalar"),
    ({"lr0": 0.0}, "'lr0' must be a finite number > 0"),
    ({"lr_power": np.inf}, "'lr_power' must be a finite number >= 0"),
    ({"rng_pos": None}, "lacks ['rng_pos']"),
    ({"rng_key": lambda k: k[:10]}, "'rng_key' must be 624 integers"),
    ({"rng_has_gauss": 2}, "'rng_has_gauss' must be an integer [0, 1]"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[m for _, m in BAD])
def test_bad_state_is_rejected_and_changes_nothing(fitted, changes, message):
    before = fitted.get_training_state()
    coef = fitted.coef_.copy()
    with pytest.raises(ValueError) as info:
        fitted.set_training_state(_edit(before, **changes))
    assert message in str(info.value)
    _assert_states_equal(fitted.get_training_state(), before)
    assert_array_equal(fitted.coef_, coef)


def test_other_misuse():
    with pytest.raises(NotFittedError, match="no training state yet"):
        LogisticRegression().get_training_state()
    with pytest.raises(TypeError, match="must be a mapping"):
        LogisticRegression().set_training_state([("t", 0)])
    reg = LinearRegression(optimizer="sgd").fit(np.eye(3), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown entries \\['classes'\\]"):
        reg.set_training_state(dict(reg.get_training_state(), classes=np.array([0, 1])))
    with pytest.raises(ValueError, match="optimizer_params"):  # bad parameters are reported first
        LinearRegression(optimizer="sgd", optimizer_params={"momentum": 0.5}).set_training_state(
            reg.get_training_state())
    assert not hasattr(LinearRegression(), "coef_")


# --------------------------------------------------------------------------
# the model file of the command line (sparseopt._io) can carry the state
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_model_file_with_training_state_continues_exactly(tmp_path, kind):
    from sparseopt._io import DataError, load_model, save_model

    est_cls, chunks, classes = _task(kind)
    kw = dict(optimizer="rmsprop", learning_rate=0.01, random_state=0)
    run = est_cls(**kw)
    _partial_fit(run, *chunks[0], classes)
    path = save_model(tmp_path / "model", run, training_state=True)
    loaded, _ = load_model(path)
    _assert_states_equal(loaded.get_training_state(), run.get_training_state())
    for X, y in chunks:
        _partial_fit(run, X, y, classes)
        _partial_fit(loaded, X, y, classes)
    assert_array_equal(loaded.coef_, run.coef_)
    assert_array_equal(loaded.intercept_, run.intercept_)
    # without the state the file holds the model only, as before
    plain, _ = load_model(save_model(tmp_path / "plain", run))
    assert_array_equal(plain.coef_, run.coef_)
    with pytest.raises(NotFittedError):
        plain.get_training_state()
    # a damaged state is a DataError naming the file and the entry
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["training_state.t"] = np.array(-3)
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(DataError, match="bad.npz: bad training state .*'t' must be an integer"):
        load_model(tmp_path / "bad.npz")


# --------------------------------------------------------------------------
# device="cuda": the state lives on the host between epochs
# --------------------------------------------------------------------------


def _cuda_runnable():
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        return False
    import sparseopt.cuda as sc

    return sc.is_available()


@pytest.mark.skipif(not _cuda_runnable(), reason="needs numba-cuda and a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_cuda_state_resumes_on_the_gpu_and_on_the_cpu(monkeypatch):
    """A GPU run's state restored on the GPU, or on the CPU, continues that run.

    Tolerance as in test_cuda_linear.py: the GPU sums a batch's repeated
    features with float atomics (another order), a few ulps per step.
    """
    from sparseopt.cuda import _kernels as K

    monkeypatch.setattr(K, "THREADS_PER_BLOCK", 4)  # multi-block paths on the simulator too
    monkeypatch.setattr(K, "MAX_BLOCKS", 2)
    est_cls, chunks, classes = _task("multinomial")
    (X1, y1), (X2, y2) = [(X[:24], y[:24]) for X, y in chunks[:2]]
    kw = dict(optimizer="adam", learning_rate=0.05, batch_size=8, random_state=0, device="cuda")
    run = LogisticRegression(**kw).partial_fit(X1, y1, classes=classes)
    state = run.get_training_state()
    on_gpu = LogisticRegression(**kw).set_training_state(state).partial_fit(X2, y2)
    on_cpu = LogisticRegression(**dict(kw, device="cpu")).set_training_state(state).partial_fit(X2, y2)
    run.partial_fit(X2, y2)
    for other in (on_gpu, on_cpu):
        assert other.t_ == run.t_
        assert_allclose(other.coef_, run.coef_, rtol=1e-9, atol=1e-12)
        assert_allclose(other.intercept_, run.intercept_, rtol=1e-9, atol=1e-12)
