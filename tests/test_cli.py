"""The ``sparseopt`` command line, the svmlight reader and the model file format."""

import gzip
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file

from sparseopt import cli
from sparseopt._io import DataError, load_model, read_svmlight, save_model

# -- helpers --------------------------------------------------------------------


def _blobs(n=300, d=20, n_classes=2, seed=0):
    """Sparse, linearly separable-ish classification data with labels in {-1, +1} (or 0..k-1)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.3, random_state=seed, format="csr")
    W = rng.normal(size=(d, n_classes))
    z = X @ W + 0.1 * rng.normal(size=(n, n_classes))
    y = np.argmax(z, axis=1).astype(np.float64)
    if n_classes == 2:
        y = 2.0 * y - 1.0
    return X, y


def _write(path, text):
    path.write_text(text)
    return str(path)


def _run(argv, capsys):
    """Run the CLI in-process; returns (exit status, stdout, stderr)."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code, err, *fragments):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sparseopt: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def train_file(tmp_path):
    X, y = _blobs()
    path = tmp_path / "train.svm"
    dump_svmlight_file(X, y, str(path), zero_based=False)
    return str(path), X, y


# -- svmlight reading -------------------------------------------------------------


def test_read_svmlight_matches_the_written_matrix(tmp_path):
    X, y = _blobs(50, 7)
    path = tmp_path / "a.svm"
    dump_svmlight_file(X, y, str(path), zero_based=False)
    Xr, yr, zb = read_svmlight(path)
    assert zb is False
    np.testing.assert_array_equal(yr, y)
    np.testing.assert_allclose(Xr.toarray(), X.toarray()[:, : Xr.shape[1]], rtol=1e-12)
    # padded to a requested width; gzip is read too
    gz = tmp_path / "a.svm.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    Xg, yg, _ = read_svmlight(gz, n_features=12)
    assert Xg.shape == (50, 12)
    np.testing.assert_allclose(Xg.toarray()[:, : Xr.shape[1]], Xr.toarray())


def test_read_svmlight_one_based_by_default_zero_based_when_index_0_is_used(tmp_path):
    one = _write(tmp_path / "one.svm", "1 1:2 3:4\n-1 2:1\n")
    X, _, zb = read_svmlight(one)
    assert zb is False and X.toarray().tolist() == [[2, 0, 4], [0, 1, 0]]
    zero = _write(tmp_path / "zero.svm", "1 0:2 2:4 # comment\n\n-1 1:1\n")
    X, _, zb = read_svmlight(zero)
    assert zb is True and X.toarray().tolist() == [[2, 0, 4], [0, 1, 0]]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("1 1:0.5\n-1 2:x\n", ":2: value 'x' of feature 2 is not a number"),
        ("1 1:0.5\n-1 3:1 2:1\n", ":2: feature indices must be strictly increasing"),
        ("spam 1:1\n", ":1: label 'spam' is not a number"),
        ("1 1:0.5 3\n", ":1: '3' is not of the form index:value"),
        ("1 a:0.5\n", ":1: feature index 'a' is not an integer"),
        ("1,2 1:0.5\n", ":1: multi-label line"),
        ("1 1:1\n0 2:nan\n", ":2: value of feature 2 is nan"),
        ("", "no samples"),
    ],
)
def test_read_svmlight_bad_files_name_the_line(tmp_path, text, fragment):
    path = _write(tmp_path / "bad.svm", text)
    with pytest.raises(DataError) as info:
        read_svmlight(path)
    assert fragment in str(info.value)
    assert str(info.value).startswith(path)


def test_read_svmlight_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_svmlight(tmp_path / "nope.svm")
    with pytest.raises(DataError, match="is a directory"):
        read_svmlight(tmp_path)


def test_read_svmlight_too_many_features_for_the_model(tmp_path):
    path = _write(tmp_path / "wide.svm", "1 1:1 9:1\n")
    with pytest.raises(DataError, match="uses feature index 9 but the model has 5 features"):
        read_svmlight(path, n_features=5)


def test_read_svmlight_index_0_in_a_one_based_model(tmp_path):
    path = _write(tmp_path / "z.svm", "1 0:1 2:1\n")
    with pytest.raises(DataError, match=":1: feature index 0 in a file read as one-based"):
        read_svmlight(path, zero_based=False)


# -- measurement helpers ------------------------------------------------------------


def test_objective_matches_an_independent_computation():
    from sklearn.metrics import log_loss

    X, y = _blobs(100, 6)
    rng = np.random.default_rng(1)
    coef, b = rng.normal(size=(1, 6)), np.array([0.3])
    classes = np.array([-1.0, 1.0])
    p = 1 / (1 + np.exp(-(X @ coef.ravel() + b[0])))
    expect = log_loss(y, p) + 0.01 * 0.5 * np.sum(coef**2)
    got = cli.objective(X, y, coef, b, classes, alpha=0.01, penalty="l2")
    assert got == pytest.approx(expect, rel=1e-12)
    # multinomial and elastic net
    X3, y3 = _blobs(100, 6, n_classes=3)
    W, b3 = rng.normal(size=(3, 6)), rng.normal(size=3)
    z = X3 @ W.T + b3
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    pen = 0.7 * 0.5 * np.sum(W**2) + 0.3 * np.abs(W).sum()
    expect = log_loss(y3, P) + 0.1 * pen
    got = cli.objective(X3, y3, W, b3, np.array([0.0, 1.0, 2.0]), alpha=0.1, penalty="elasticnet", l1_ratio=0.3)
    assert got == pytest.approx(expect, rel=1e-12)
    # squared loss
    w, c = rng.normal(size=6), 0.5
    assert cli.objective(X, y, w, c, None, alpha=0.0) == pytest.approx(0.5 * np.mean((X @ w + c - y) ** 2))


def test_progress_is_shown_on_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream, quiet in ((tty, False), (pipe, False)):
        p = cli.Progress(quiet=quiet, stream=stream)
        p.update("epoch 1/3")
        p.done()
    assert "epoch 1/3" in tty.getvalue()
    assert pipe.getvalue() == ""
    quiet = Tty()
    p = cli.Progress(quiet=True, stream=quiet)
    p.update("epoch 1/3")
    assert quiet.getvalue() == ""


# -- usage errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],  # no data, no -o
        ["compare", "--epochs", "0"],
        ["compare", "--dataset", "mnist"],
        ["train", "x.svm", "-o", "m.npz", "--optimizer", "lbfgs"],
        ["compare", "--lr", "-1"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "compare" in capsys.readouterr().err


def test_unknown_optimizer_in_the_list(capsys):
    code, _, err = _run(["compare", "--optimizers", "adagrad,lbfgs", "--quiet"], capsys)
    _assert_one_line_error(code, err, "unknown optimizer lbfgs")


# -- train / predict ------------------------------------------------------------------


def test_train_and_predict_round_trip(train_file, tmp_path, capsys):
    path, X, y = train_file
    model = str(tmp_path / "model.npz")
    code, out, err = _run(["train", path, "-o", model, "--optimizer", "adagrad", "--epochs", "5"], capsys)
    assert code == 0, err
    assert "model saved to" in out and os.path.exists(model)
    assert err == ""  # no progress display when not a terminal

    preds = str(tmp_path / "pred.txt")
    code, out, err = _run(["predict", model, path, "-o", preds], capsys)
    assert code == 0, err
    lines = open(preds).read().splitlines()
    assert len(lines) == X.shape[0]
    assert set(lines) <= {"-1", "1"}
    pred = np.array([float(v) for v in lines])
    acc = np.mean(pred == y)
    assert f"accuracy {acc:.4f} on {y.size} samples" in out
    assert acc > 0.8

    # the saved file alone reproduces the probabilities (documented formula)
    with np.load(model, allow_pickle=False) as z:
        coef, intercept, classes = z["coef"], z["intercept"], z["classes"]
        assert str(z["format"]) == "sparseopt.linear_model" and int(z["format_version"]) == 1
        assert int(z["n_features"]) == X.shape[1] and not bool(z["zero_based"])
    p1 = 1.0 / (1.0 + np.exp(-(X @ coef.ravel() + intercept[0])))
    code, out, err = _run(["predict", model, path, "--proba"], capsys)
    assert code == 0
    proba = np.array([[float(v) for v in line.split("\t")] for line in out.splitlines()])
    np.testing.assert_allclose(proba[:, 1], p1, rtol=1e-5, atol=1e-6)  # written with 6 significant digits
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(classes) == [-1.0, 1.0]
    assert "columns: probability of class -1, 1" in err


def test_train_equals_fit_with_the_saved_hyperparameters(train_file, tmp_path, capsys):
    """The CLI trains the model the Python API trains, and the saved params reproduce it."""
    import json

    from sparseopt.linear_model import LogisticRegression

    path, X, y = train_file
    model = str(tmp_path / "m.npz")
    code, out, err = _run(["train", path, "-o", model, "--optimizer", "momentum", "--epochs", "4", "--seed", "3",
                           "--optimizer-param", "momentum=0.8", "--optimizer-param", "nesterov=true",
                           "--alpha", "1e-3", "--batch-size", "16"], capsys)
    assert code == 0, err
    with np.load(model, allow_pickle=False) as z:
        params, coef, intercept = json.loads(str(z["params"])), z["coef"], z["intercept"]
    assert params["optimizer_params"] == {"momentum": 0.8, "nesterov": True}
    assert (params["max_iter"], params["alpha"], params["batch_size"], params["random_state"]) == (4, 1e-3, 16, 3)
    Xr, yr, _ = read_svmlight(path)
    ref = LogisticRegression(**params).fit(Xr, yr)
    np.testing.assert_allclose(coef, ref.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(intercept, ref.intercept_, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "param, fragment",
    [
        ("beta1", "expects NAME=VALUE"),
        ("beta1=high", "'high' is not a number"),
        ("beta1=2", "beta1"),
        ("momentum=0.9", "momentum"),  # Adam has no momentum
    ],
)
def test_train_bad_optimizer_param(train_file, tmp_path, capsys, param, fragment):
    code, _, err = _run(["train", train_file[0], "-o", str(tmp_path / "m.npz"), "--optimizer", "adam",
                         "--optimizer-param", param], capsys)
    _assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "m.npz").exists()


def test_predict_accepts_fewer_features_and_rejects_more(train_file, tmp_path, capsys):
    path, X, y = train_file
    model = str(tmp_path / "m.npz")
    assert _run(["train", path, "-o", model, "--epochs", "2"], capsys)[0] == 0
    narrow = _write(tmp_path / "narrow.svm", "1 1:1\n-1 2:0.5\n")
    code, out, err = _run(["predict", model, narrow], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    wide = _write(tmp_path / "wide.svm", f"1 1:1 {X.shape[1] + 5}:1\n")
    code, out, err = _run(["predict", model, wide], capsys)
    _assert_one_line_error(code, err, "wide.svm", f"uses feature index {X.shape[1] + 5}",
                           f"the model has {X.shape[1]} features")


def test_multiclass_and_regression_models(tmp_path, capsys):
    X, y = _blobs(300, 10, n_classes=3)
    path = str(tmp_path / "multi.svm")
    dump_svmlight_file(X, y, path, zero_based=True)
    model = str(tmp_path / "multi.npz")
    code, out, err = _run(["train", path, "-o", model, "--epochs", "10", "--optimizer", "adam"], capsys)
    assert code == 0, err and "3 classes" in out
    est, zb = load_model(model)
    assert zb is True and est.coef_.shape == (3, X.shape[1])
    code, out, err = _run(["predict", model, path], capsys)
    pred = np.array([float(v) for v in out.splitlines()])
    assert np.mean(pred == y) > 0.7
    assert "accuracy" in err

    rng = np.random.default_rng(0)
    w = rng.normal(size=10)
    yr = X @ w + 0.01 * rng.normal(size=X.shape[0])
    rpath = str(tmp_path / "reg.svm")
    dump_svmlight_file(X, yr, rpath, zero_based=False)
    rmodel = str(tmp_path / "reg.npz")
    code, out, err = _run(["train", rpath, "-o", rmodel, "--regression", "--epochs", "30",
                           "--alpha", "0"], capsys)
    assert code == 0, err
    code, out, err = _run(["predict", rmodel, rpath], capsys)
    assert code == 0
    pred = np.array([float(v) for v in out.splitlines()])
    r2 = 1 - np.sum((pred - yr) ** 2) / np.sum((yr - yr.mean()) ** 2)
    assert f"R^2 {r2:.4f}" in err
    code, out, err = _run(["predict", rmodel, rpath, "--proba"], capsys)
    _assert_one_line_error(code, err, "--proba needs a classification model")


def test_saved_model_predicts_like_the_estimator(tmp_path):
    from sparseopt.linear_model import LogisticRegression

    X, y = _blobs(200, 8, n_classes=3)
    clf = LogisticRegression(optimizer="rmsprop", max_iter=5, tol=None, random_state=0).fit(X, y)
    path = save_model(tmp_path / "m", clf)
    assert path.endswith(".npz")
    est, _ = load_model(path)
    np.testing.assert_array_equal(est.predict(X), clf.predict(X))
    np.testing.assert_allclose(est.predict_proba(X), clf.predict_proba(X), rtol=1e-12)
    assert est.get_params()["optimizer"] == "rmsprop"


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("not a zip"), "not a sparseopt model file"),
        (lambda p: np.savez(p, coef=np.zeros(3)), "not a sparseopt model file"),
    ],
)
def test_bad_model_files(tmp_path, train_file, capsys, make, fragment):
    model = tmp_path / "bad.npz"
    make(model)
    code, _, err = _run(["predict", str(model), train_file[0]], capsys)
    _assert_one_line_error(code, err, fragment)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("1 1:0.5\n-1 2:x\n", "bad.svm:2: value 'x'"),
        ("1 1:1\n", "all samples have label 1"),
    ],
)
def test_train_bad_data_gives_one_line(tmp_path, capsys, text, fragment):
    path = _write(tmp_path / "bad.svm", text)
    code, _, err = _run(["train", path, "-o", str(tmp_path / "m.npz")], capsys)
    _assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "m.npz").exists()


def test_train_several_files_need_a_scheduler(train_file, tmp_path, capsys, monkeypatch):
    code, _, err = _run(["train", train_file[0], train_file[0], "-o", str(tmp_path / "m.npz")], capsys)
    _assert_one_line_error(code, err, "2 training files given", "--scheduler")
    monkeypatch.setitem(sys.modules, "sparseopt.dask", None)  # as if Dask were not installed
    code, _, err = _run(["train", "--scheduler", "tcp://127.0.0.1:9", train_file[0], "-o",
                         str(tmp_path / "m.npz")], capsys)
    _assert_one_line_error(code, err, "--scheduler needs Dask", "pip install")
    assert not (tmp_path / "m.npz").exists()


def test_train_missing_file_and_unwritable_output(tmp_path, train_file, capsys):
    code, _, err = _run(["train", str(tmp_path / "missing.svm"), "-o", str(tmp_path / "m.npz")], capsys)
    _assert_one_line_error(code, err, "missing.svm: no such file")
    code, _, err = _run(["train", train_file[0], "-o", str(tmp_path / "no" / "dir" / "m.npz"),
                         "--epochs", "1"], capsys)
    _assert_one_line_error(code, err, "cannot write")


# -- checkpoints: --save-state and --resume ------------------------------------------


def _npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize(
    "options",
    [
        ["--optimizer", "adam", "--lazy", "exact", "--batch-size", "16"],
        ["--optimizer", "sgd", "--penalty", "elasticnet", "--seed", "5"],  # default rate: schedule from the data
        ["--optimizer", "momentum", "--regression", "--penalty", "none"],
    ],
    ids=["adam-exact", "sgd-elasticnet", "momentum-regression"],
)
def test_resume_equals_training_in_one_go(train_file, tmp_path, capsys, options):
    """M epochs, saved with the state, then N more with --resume: bit for bit the M + N epochs of one run."""
    path, X, y = train_file
    one_go, first, resumed = (str(tmp_path / f"{n}.npz") for n in ("one_go", "first", "resumed"))
    assert _run(["train", path, "-o", one_go, "--epochs", "5", "--save-state", *options], capsys)[0] == 0
    code, out, err = _run(["train", path, "-o", first, "--epochs", "2", "--save-state", *options], capsys)
    assert code == 0, err
    assert out.splitlines()[-1].endswith("with its training state")
    # the options may be repeated (they agree with the model's) or left out
    code, out, err = _run(["train", path, "-o", resumed, "--resume", first, "--epochs", "3", "--save-state",
                           *options[:2]], capsys)
    assert code == 0, err
    assert "3 epochs after 2 (resumed from" in out
    a, b = _npz(one_go), _npz(resumed)
    assert sorted(a) == sorted(b)
    assert int(b["training_state.epochs"]) == 5
    for key in a:  # coef, intercept, optimizer state, counters, shuffling, hyperparameters (max_iter 5)
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)


def test_resume_on_new_data_continues_partial_fit(train_file, tmp_path, capsys):
    """--resume on another file (naming fewer features) is partial_fit on it, from the saved estimator."""
    from sparseopt.linear_model import LogisticRegression

    path, X, y = train_file
    first, resumed = str(tmp_path / "first.npz"), str(tmp_path / "resumed.npz")
    assert _run(["train", path, "-o", first, "--epochs", "2", "--save-state", "--optimizer", "rmsprop"],
                capsys)[0] == 0
    X2, y2 = X[:120, :15], y[:120]  # the last features are not named
    new = str(tmp_path / "new.svm")
    dump_svmlight_file(X2, y2, new, zero_based=False)
    code, out, err = _run(["train", new, "-o", resumed, "--resume", first, "--epochs", "2"], capsys)
    assert code == 0, err
    assert f"120 samples x {X.shape[1]} features" in out
    saved = _npz(resumed)
    assert not any(k.startswith("training_state.") for k in saved)  # no --save-state this time
    Xr, yr, _ = read_svmlight(path)
    ref = LogisticRegression(optimizer="rmsprop", random_state=0, max_iter=2, tol=None)
    for _ in range(2):
        ref.partial_fit(Xr, yr, classes=np.unique(yr))
    X2r, y2r, _ = read_svmlight(new, n_features=X.shape[1])
    for _ in range(2):
        ref.partial_fit(X2r, y2r)
    np.testing.assert_array_equal(saved["coef"], ref.coef_)
    np.testing.assert_array_equal(saved["intercept"], ref.intercept_)


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("no-state", ["no training state to resume from", "--save-state"]),
        ("optimizer", ["trained with optimizer adam, not sgd", "omit --optimizer"]),
        ("alpha", ["--alpha asks for alpha=0.01", "alpha=1e-05"]),
        ("wide", ["has 25 features but", "was trained on 20"]),
        ("labels", ["has labels 0, 3 that", "its classes: -1, 1"]),
        ("regression", ["--regression", "holds a LogisticRegression"]),
        ("scheduler", ["--resume is not available with --scheduler"]),
    ],
)
def test_resume_refuses_what_cannot_continue(train_file, tmp_path, capsys, case, fragments):
    path, X, y = train_file
    model, out_model = str(tmp_path / "m.npz"), str(tmp_path / "out.npz")
    state = [] if case == "no-state" else ["--save-state"]
    assert _run(["train", path, "-o", model, "--epochs", "1", "--optimizer", "adam", *state], capsys)[0] == 0
    extra = {"optimizer": ["--optimizer", "sgd"], "alpha": ["--alpha", "0.01"], "regression": ["--regression"],
             "scheduler": ["--scheduler", "tcp://127.0.0.1:9"]}.get(case, [])
    data = path
    if case == "wide":
        data = _write(tmp_path / "wide.svm", "1 1:1 25:1\n-1 2:1\n")
    elif case == "labels":
        data = _write(tmp_path / "labels.svm", "1 1:1\n3 2:1\n0 3:1\n")
    before = _npz(model)
    code, _, err = _run(["train", data, "-o", out_model, "--resume", model, *extra], capsys)
    _assert_one_line_error(code, err, *fragments)
    assert not os.path.exists(out_model)
    after = _npz(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_save_state_is_refused_with_a_scheduler(train_file, tmp_path, capsys):
    code, _, err = _run(["train", "--scheduler", "tcp://127.0.0.1:9", train_file[0], "-o",
                         str(tmp_path / "m.npz"), "--save-state"], capsys)
    _assert_one_line_error(code, err, "--save-state is not available with --scheduler")


# -- compare --------------------------------------------------------------------------


def _table_rows(out):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    return [line.split() for line in lines[start + 2:] if line.strip() and not line.startswith("plot")]


def test_compare_on_svmlight_files(tmp_path, capsys):
    X, y = _blobs(400, 15)
    tr, te = str(tmp_path / "tr.svm"), str(tmp_path / "te.svm")
    dump_svmlight_file(X[:300], y[:300], tr, zero_based=False)
    dump_svmlight_file(X[300:], y[300:], te, zero_based=False)
    code, out, err = _run(["compare", "--data", tr, "--test", te, "--epochs", "3"], capsys)
    assert code == 0, err
    rows = _table_rows(out)
    assert [r[0] for r in rows] == list(cli.OPTIMIZERS) + ["sklearn-lbfgs"]
    for r in rows[:-1]:
        assert int(r[1]) == 3
        objective, acc, ll, secs = map(float, r[2:6])
        # objective is at least the lbfgs optimum (up to its tolerance)
        assert objective >= float(rows[-1][2]) - 1e-6
        assert 0.5 < acc <= 1.0 and ll > 0 and secs >= 0
    # held-out split when there is no test file
    code, out, err = _run(["compare", "--data", tr, "--epochs", "1", "--optimizers", "sgd,adam",
                           "--no-reference", "--test-size", "0.3"], capsys)
    assert code == 0, err
    assert "210 train / 90 held-out rows" in out
    assert [r[0] for r in _table_rows(out)] == ["sgd", "adam"]


def test_compare_default_is_sms_spam(capsys):
    code, out, err = _run(["compare", "--epochs", "2", "--quiet"], capsys)
    assert code == 0, err
    assert "SMS Spam Collection: 4180 train / 1394 test messages" in out
    rows = _table_rows(out)
    assert len(rows) == 6
    assert all(float(r[3]) > 0.85 for r in rows)  # test accuracy: 13.4% spam, so > majority class


def test_compare_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X, y = _blobs(200, 10)
    tr = str(tmp_path / "tr.svm")
    dump_svmlight_file(X, y, tr, zero_based=False)
    png = tmp_path / "curves.png"
    code, out, err = _run(["compare", "--data", tr, "--epochs", "2", "--plot", str(png)], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {png}" in out


def test_compare_plot_without_matplotlib_fails_fast(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = _run(["compare", "--plot", "x.png"], capsys)
    _assert_one_line_error(code, err, "--plot needs matplotlib", "pip install")
    assert out == ""


def test_compare_bad_data_and_options(tmp_path, capsys):
    bad = _write(tmp_path / "bad.svm", "1 1:1\n1 2:1 1:1\n")
    code, _, err = _run(["compare", "--data", bad], capsys)
    _assert_one_line_error(code, err, "bad.svm:2: feature indices must be strictly increasing")
    code, _, err = _run(["compare", "--test", bad], capsys)
    _assert_one_line_error(code, err, "--test needs --data")
    one = _write(tmp_path / "one.svm", "1 1:1\n1 2:1\n1 1:2\n1 2:2\n")
    code, _, err = _run(["compare", "--data", one], capsys)
    _assert_one_line_error(code, err, "single class")
    real = _write(tmp_path / "real.svm", "".join(f"{0.37 * i} 1:{i}\n" for i in range(1, 41)))
    code, _, err = _run(["compare", "--data", real, "--test", real], capsys)
    _assert_one_line_error(code, err, "continuous")


# -- entry points (subprocesses: real exit codes, piped output) ---------------------------


def _env():
    env = dict(os.environ)
    env.pop("SPARSEOPT_DEBUG", None)
    return env


def test_python_m_sparseopt_exit_codes_and_quiet_when_piped(train_file, tmp_path):
    path = train_file[0]
    model = str(tmp_path / "m.npz")
    run = subprocess.run([sys.executable, "-m", "sparseopt", "train", path, "-o", model, "--epochs", "2"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # piped: no progress display
    assert "model saved to" in run.stdout
    run = subprocess.run([sys.executable, "-m", "sparseopt", "predict", model, str(tmp_path / "nope.svm")],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [f"sparseopt: error: {tmp_path / 'nope.svm'}: no such file"]


def test_console_script():
    exe = shutil.which("sparseopt")
    if exe is None:
        pytest.skip("the sparseopt console script is not installed (pip install -e .)")
    run = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0
    from sparseopt import __version__

    assert run.stdout.strip() == f"sparseopt {__version__}"
