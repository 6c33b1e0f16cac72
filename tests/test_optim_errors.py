"""Bad input raises a clear exception and changes nothing (W, state, t, last)."""

import numpy as np
import pytest
import scipy.sparse as sp

from sparseopt import optim

NAMES = ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"]


def snapshot(opt):
    return (
        opt.param.copy(),
        {k: v.copy() for k, v in opt.state.items()},
        opt.t,
        opt._last.copy(),
        dict(opt.hyperparams),
        opt.lazy,
    )


def assert_unchanged(opt, snap):
    W, state, t, last, hyper, lazy = snap
    np.testing.assert_array_equal(opt.param, W)
    for k, v in state.items():
        np.testing.assert_array_equal(opt.state[k], v)
    assert opt.t == t
    np.testing.assert_array_equal(opt._last, last)
    assert opt.hyperparams == hyper
    assert opt.lazy == lazy


def warmed(name, shape=(5, 3), lazy="exact", check_finite=True):
    """An optimizer a few steps in, with lagging rows in exact mode."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal(shape)
    opt = getattr(optim, name)(W, lazy=lazy, check_finite=check_finite)
    opt.step(rng.standard_normal(shape))
    opt.step_rows([0], rng.standard_normal((1,) + shape[1:]))
    opt.step_rows([], np.zeros((0,) + shape[1:]))
    return opt


# each case: (description, call on a 2-D (5, 3) optimizer, exception, message fragment)
BAD_STEPS = [
    ("row out of range", lambda o: o.step_rows([1, 5], np.ones((2, 3))), IndexError, "out of range"),
    ("negative row", lambda o: o.step_rows([-1], np.ones((1, 3))), IndexError, "negative"),
    ("length mismatch", lambda o: o.step_rows([0, 1], np.ones((3, 3))), ValueError, "do not match"),
    ("values wrong n_cols", lambda o: o.step_rows([0, 1], np.ones((2, 4))), ValueError, "values has shape"),
    ("values 1-D for 2-D W", lambda o: o.step_rows([0, 1], np.ones(2)), ValueError, "values has shape"),
    ("scalar values", lambda o: o.step_rows([0], 1.0), ValueError, "do not match"),
    ("integer values", lambda o: o.step_rows([0], np.ones((1, 3), dtype=int)), TypeError, "floating"),
    ("float rows", lambda o: o.step_rows([0.0, 1.0], np.ones((2, 3))), TypeError, "integers"),
    ("bool rows", lambda o: o.step_rows([True], np.ones((1, 3))), TypeError, "integers"),
    ("2-D rows", lambda o: o.step_rows([[0, 1]], np.ones((2, 3))), ValueError, "1-D"),
    ("NaN values", lambda o: o.step_rows([0], np.full((1, 3), np.nan)), ValueError, "NaN"),
    ("Inf values", lambda o: o.step_rows([0], np.full((1, 3), np.inf)), ValueError, "NaN or infinite"),
    ("dense wrong shape", lambda o: o.step(np.ones((5, 4))), ValueError, "grad has shape"),
    ("dense transposed", lambda o: o.step(np.ones((3, 5))), ValueError, "grad has shape"),
    ("dense integer", lambda o: o.step(np.ones((5, 3), dtype=np.int64)), TypeError, "floating"),
    ("dense complex", lambda o: o.step(np.ones((5, 3), dtype=complex)), TypeError, "floating"),
    ("dense NaN", lambda o: o.step(np.full((5, 3), np.nan)), ValueError, "NaN"),
    ("dense -Inf", lambda o: o.step(np.full((5, 3), -np.inf)), ValueError, "NaN or infinite"),
    ("sparse wrong shape", lambda o: o.step(sp.csr_matrix((6, 3))), ValueError, "sparse grad has shape"),
    ("sparse integer", lambda o: o.step(sp.csr_matrix(np.ones((5, 3), dtype=int))), TypeError, "floating"),
    (
        "sparse NaN",
        lambda o: o.step(sp.csr_matrix((np.array([np.nan]), (np.array([1]), np.array([0]))), shape=(5, 3))),
        ValueError,
        "NaN",
    ),
    ("string grad", lambda o: o.step("gradient"), TypeError, "floating"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", BAD_STEPS, ids=[c[0] for c in BAD_STEPS])
def test_bad_step_raises_and_changes_nothing(name, case):
    _, call, exc, match = case
    opt = warmed(name)
    snap = snapshot(opt)
    with pytest.raises(exc, match=match):
        call(opt)
    assert_unchanged(opt, snap)
    # and the optimizer still works afterwards
    opt.step_rows([1], np.ones((1, 3)))
    assert opt.t == snap[2] + 1


def test_non_finite_accepted_without_check_finite():
    W = np.zeros(3)
    opt = optim.SGD(W, check_finite=False)
    opt.step(np.array([np.nan, 0.0, 0.0]))
    assert np.isnan(W[0]) and W[1] == 0


@pytest.mark.parametrize(
    "W, exc, match",
    [
        (np.ones((4, 3))[:, ::2], ValueError, "C-contiguous"),
        (np.ones((3, 4)).T, ValueError, "C-contiguous"),
        (np.ones(3, dtype=np.int64), TypeError, "float32 or float64"),
        (np.ones(3, dtype=np.float16), TypeError, "float32 or float64"),
        (np.ones((2, 2, 2)), ValueError, "1-D or 2-D"),
        (np.ones(()), ValueError, "1-D or 2-D"),
        (np.ones((0, 3)), ValueError, "empty"),
        ([1.0, 2.0], TypeError, "NumPy array"),
    ],
    ids=["strided", "fortran", "int", "float16", "3d", "0d", "empty", "list"],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_param(name, W, exc, match):
    with pytest.raises(exc, match=match):
        getattr(optim, name)(W)


def test_read_only_param():
    W = np.ones(3)
    W.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.Adam(W)


BAD_HYPER = [
    ("SGD", "lr", 0.0),
    ("SGD", "lr", -0.1),
    ("SGD", "lr", float("nan")),
    ("SGD", "lr", float("inf")),
    ("SGD", "lr", "0.1"),
    ("SGD", "lr", None),
    ("SGD", "lr", True),
    ("SGD", "weight_decay", -1e-3),
    ("Momentum", "momentum", 1.0),
    ("Momentum", "momentum", -0.1),
    ("Momentum", "nesterov", "yes"),
    ("Momentum", "nesterov", 2),
    ("AdaGrad", "eps", 0.0),
    ("AdaGrad", "initial_accumulator_value", -1.0),
    ("RMSProp", "rho", 1.5),
    ("RMSProp", "eps", -1e-8),
    ("Adam", "beta1", 1.0),
    ("Adam", "beta1", -0.5),
    ("Adam", "beta2", 1.0),
    ("Adam", "eps", 0.0),
    ("Adam", "weight_decay", float("nan")),
]


@pytest.mark.parametrize("name, param, value", BAD_HYPER)
def test_bad_hyperparameter_names_it(name, param, value):
    with pytest.raises(ValueError, match=param):
        getattr(optim, name)(np.ones(3), **{param: value})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lazy", ["lazy", "Exact", None, "dense"])
def test_unknown_lazy_mode(name, lazy):
    with pytest.raises(ValueError, match="lazy"):
        getattr(optim, name)(np.ones(3), lazy=lazy)


def test_boundary_hyperparameters_are_accepted():
    optim.Momentum(np.ones(2), momentum=0.0)
    optim.RMSProp(np.ones(2), rho=0.0)
    optim.Adam(np.ones(2), beta1=0.0, beta2=0.0, weight_decay=0.0)


# ---------------------------------------------------------------- load_state_dict


def _bad_state(name, mutate):
    src = warmed(name)
    d = src.state_dict()
    mutate(d)
    return d


BAD_STATES = [
    ("wrong optimizer", lambda d: d.update(optimizer="Other"), ValueError, "state_dict is for"),
    ("missing t", lambda d: d.pop("t"), KeyError, "lacks"),
    ("negative t", lambda d: d.update(t=-1), ValueError, "t must be"),
    ("bad lr", lambda d: d.update(lr=-1.0), ValueError, "lr"),
    ("bad lazy", lambda d: d.update(lazy="sometimes"), ValueError, "lazy"),
    ("missing last", lambda d: d.pop("last"), KeyError, "last"),
    ("last beyond t", lambda d: d["last"].__setitem__(0, d["t"] + 1), ValueError, "last"),
    ("last wrong shape", lambda d: d.update(last=np.zeros(2, dtype=np.int64)), ValueError, "last"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_bad_state_dict_changes_nothing(name, case):
    _, mutate, exc, match = case
    d = _bad_state(name, mutate)
    opt = warmed(name)
    opt.step_rows([2], np.ones((1, 3)))
    snap = snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.load_state_dict(d)
    assert_unchanged(opt, snap)


@pytest.mark.parametrize("name", ["Momentum", "AdaGrad", "RMSProp", "Adam"])
@pytest.mark.parametrize("bad", ["shape", "dtype"])
def test_state_array_mismatch(name, bad):
    d = warmed(name).state_dict()
    key = optim.__dict__[name]._state_names[0]
    d[key] = d[key][:, :2] if bad == "shape" else d[key].astype(np.float32)
    opt = warmed(name)
    snap = snapshot(opt)
    with pytest.raises(ValueError, match=key):
        opt.load_state_dict(d)
    assert_unchanged(opt, snap)


# ---------------------------------------------------------------- checks inside the kernel
# step_rows checks the bounds of rows (and, with check_finite, the values) in
# the kernel's first pass, before it writes anything: a bad entry anywhere,
# after good repeated rows, must still leave everything unchanged.

KERNEL_CHECKED = [
    ("out of range after repeats", [0, 2, 0, 4, 2, 5], None, IndexError, "index 5, out of range for 5 rows"),
    ("negative after repeats", [1, 1, 3, -2], None, IndexError, r"negative index \(-2\)"),
    ("huge uint64", np.array([1, 2**63 + 1], dtype=np.uint64), None, IndexError, "out of range"),
    ("int32 out of range", np.array([0, 7], dtype=np.int32), None, IndexError, "index 7"),
    ("Inf in last value of a repeated row", [3, 1, 3], (2, 2), ValueError, "values contains NaN or infinite"),
    ("NaN in the first value", [0, 4], (0, 0), ValueError, "values contains NaN or infinite"),
]


@pytest.mark.parametrize("lazy", ["skip", "exact"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", KERNEL_CHECKED, ids=[c[0] for c in KERNEL_CHECKED])
def test_kernel_checks_change_nothing(name, lazy, case):
    _, rows, bad_at, exc, match = case
    opt = warmed(name, lazy=lazy)
    values = np.ones((len(rows), 3))
    if bad_at is not None:
        values[bad_at] = np.inf if bad_at[0] else np.nan
    snap = snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.step_rows(rows, values)
    assert_unchanged(opt, snap)


def test_non_finite_rows_accepted_without_check_finite():
    opt = optim.SGD(np.zeros((3, 2), dtype=np.float32), check_finite=False)
    opt.step_rows([2, 0], np.array([[np.inf, 1.0], [2.0, 3.0]], dtype=np.float32))
    assert np.isneginf(opt.param[2, 0]) and opt.param[0, 1] == np.float32(-0.03)
