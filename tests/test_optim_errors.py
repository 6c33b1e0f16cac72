"""Bad input raises a clear exception and changes nothing (W, state, t, last)."""

import copy
import pickle

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
    ("ragged values", lambda o: o.step_rows([0, 1], [[1.0, 2.0, 3.0], [1.0]]), ValueError, "values is not a regular"),
    ("huge Python int row", lambda o: o.step_rows([2**64], np.ones((1, 3))), TypeError, "integers"),
]


def _coo(row, col, shape=(5, 3)):
    """A COO matrix whose coordinates were changed after scipy checked them."""
    m = sp.coo_matrix((np.ones(len(row)), (np.zeros(len(row), int), np.zeros(len(row), int))), shape=shape)
    m.row[:] = row
    m.col[:] = col
    return m


def _csr(indices, indptr, shape=(5, 3)):
    """A CSR matrix whose index arrays were replaced after scipy checked them."""
    m = sp.csr_matrix(shape)
    m.data = np.ones(len(indices))
    m.indices = np.array(indices, dtype=np.int32)
    m.indptr = np.array(indptr, dtype=np.int32)
    return m


# scipy checks a matrix when it is built, not when its arrays change later,
# and tocoo() trusts them: before these checks, a negative column wrapped
# around to the last one and a decreasing indptr moved entries to other rows
MALFORMED_SPARSE = [
    ("coo negative column", _coo([1], [-1]), IndexError, "column index -1 is outside"),
    ("coo column out of range", _coo([1, 2], [0, 3]), IndexError, "column index 3 is outside"),
    ("coo negative row", _coo([-1], [0]), IndexError, "row index -1 is outside"),
    ("coo row out of range", _coo([5], [0]), IndexError, "row index 5 is outside"),
    ("csr negative index", _csr([-1], [0, 1, 1, 1, 1, 1]), ValueError, "malformed.*>= 0"),
    ("csr index out of range", _csr([3], [0, 1, 1, 1, 1, 1]), ValueError, "malformed.*< 3"),
    ("csr decreasing indptr", _csr([0, 1], [0, 1, 0, 2, 2, 2]), ValueError, "malformed.*non-decreasing"),
    ("csr indptr beyond data", _csr([0], [0, 5, 5, 5, 5, 5]), ValueError, "malformed.*index pointer"),
]
BAD_STEPS += [
    (f"sparse {desc}", lambda o, m=m: o.step(m), exc, match) for desc, m, exc, match in MALFORMED_SPARSE
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


@pytest.mark.parametrize("case", MALFORMED_SPARSE, ids=[c[0] for c in MALFORMED_SPARSE])
def test_malformed_sparse_grad_is_left_as_it_was(case):
    _, m, exc, match = case
    arrays = {k: getattr(m, k).copy() for k in ("data", "row", "col", "indices", "indptr") if hasattr(m, k)}
    opt = optim.SGD(np.zeros((5, 3)))
    with pytest.raises(exc, match=match):
        opt.step(m)
    for k, a in arrays.items():
        np.testing.assert_array_equal(getattr(m, k), a, err_msg=k)


def test_sparse_grad_column_of_one_d_param_is_checked():
    # a 1-D parameter takes an (n, 1) matrix: its column index must be 0, not ignored
    opt = optim.SGD(np.zeros(5))
    snap = snapshot(opt)
    with pytest.raises(IndexError, match="column index 2 is outside"):
        opt.step(_coo([1], [2], shape=(5, 1)))
    assert_unchanged(opt, snap)


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
        (np.matrix(np.ones((3, 2))), TypeError, "plain NumPy array"),  # matrix.reshape(-1) is 2-D
        (np.ma.masked_array(np.ones(3), mask=[0, 1, 0]), TypeError, "plain NumPy array"),
    ],
    ids=["strided", "fortran", "int", "float16", "3d", "0d", "empty", "list", "matrix", "masked"],
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


# the kernels write through views of the parameter made at construction:
# without a check, they wrote into a parameter made read-only since
FROZEN_CALLS = [
    ("dense", lambda o: o.step(np.ones((5, 3)))),
    ("rows", lambda o: o.step_rows([1], np.ones((1, 3)))),
    ("sparse", lambda o: o.step(sp.csr_matrix(np.eye(5, 3)))),
    ("sync", lambda o: o.sync()),
    ("sync rows", lambda o: o.sync([1])),
    ("load_state_dict", lambda o: o.load_state_dict(o.state_dict())),
]


@pytest.mark.parametrize("name", ["SGD", "Adam"])
@pytest.mark.parametrize("call", FROZEN_CALLS, ids=[c[0] for c in FROZEN_CALLS])
def test_param_made_read_only_after_construction(name, call):
    opt = warmed(name)
    opt.step_rows([0], np.ones((1, 3)))  # rows 1-4 lag: sync has something to write
    opt.param.flags.writeable = False
    snap = snapshot(opt)
    with pytest.raises(ValueError, match="param has been made read-only"):
        call[1](opt)
    assert_unchanged(opt, snap)


def test_state_dict_of_read_only_param_in_skip_mode():
    opt = warmed("Adam", lazy="skip")
    opt.param.flags.writeable = False
    d = opt.state_dict()  # nothing to catch up: reading is fine
    assert d["t"] == opt.t


def test_replaced_state_array_is_not_written_out_of_bounds():
    # the dense kernel sizes its loop by param and does not check bounds:
    # before the check, a shorter array put in state was written past its end
    buf = np.zeros(40)
    opt = optim.Momentum(np.ones(10))
    opt.state["v"] = buf[:2]
    with pytest.raises(RuntimeError, match="state was replaced"):
        opt.step(np.ones(10))
    assert not buf.any()
    assert opt.t == 0


def test_replaced_param_is_not_written():
    opt = optim.SGD(np.ones(4))
    opt.param = np.ones(8)
    with pytest.raises(RuntimeError, match="param was replaced"):
        opt.step_rows([6], np.ones(1))
    np.testing.assert_array_equal(opt.param, np.ones(8))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("lazy", ["skip", "exact"])
def test_copied_optimizer_updates_its_own_param(how, lazy):
    # the kernels' views of param and state used to be copied apart from
    # them: a copy's steps then moved t and hidden arrays, never its param
    opt = optim.Adam(np.ones((4, 2)), lazy=lazy, weight_decay=0.1)
    opt.step_rows([0, 3], np.ones((2, 2)))
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    before = opt.param.copy()
    for o in (opt, twin):  # the same steps on both
        o.step_rows([1, 3], np.full((2, 2), 0.5))
        o.step(np.full((4, 2), 0.25))
    np.testing.assert_array_equal(twin.param, opt.param)
    for k in opt.state:
        np.testing.assert_array_equal(twin.state[k], opt.state[k])
    assert not np.array_equal(twin.param, before)
    assert not np.shares_memory(twin.param, opt.param)


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
    ("SGD", "lr", 10**400),  # float() of it overflowed, with a message not naming lr
    ("Momentum", "nesterov", None),
]


@pytest.mark.parametrize("name, param, value", BAD_HYPER)
def test_bad_hyperparameter_names_it(name, param, value):
    with pytest.raises(ValueError, match=param):
        getattr(optim, name)(np.ones(3), **{param: value})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "lazy", ["lazy", "Exact", None, "dense", np.array("exact"), np.array(["skip", "exact"])], ids=str
)
def test_unknown_lazy_mode(name, lazy):
    with pytest.raises(ValueError, match="lazy must be one of"):
        getattr(optim, name)(np.ones(3), lazy=lazy)


@pytest.mark.parametrize("name", NAMES)
def test_lazy_is_read_only(name):
    # a skip-mode optimizer has one row counter: switched to exact by
    # assignment, its next sparse step wrote a counter for each row past it
    opt = warmed(name, lazy="skip")
    snap = snapshot(opt)
    with pytest.raises(AttributeError, match="lazy is fixed"):
        opt.lazy = "exact"
    assert_unchanged(opt, snap)
    d = opt.state_dict()  # the way to change it: a state_dict with another mode
    d["lazy"] = "exact"
    d["last"] = np.full(5, d["t"])
    opt.load_state_dict(d)
    assert opt.lazy == "exact" and opt._last.shape == (5,)
    opt.step_rows([4], np.ones((1, 3)))
    assert opt._last[4] == opt.t


@pytest.mark.parametrize("value", ["no", "False", None, 2, 0.5, np.array(True)], ids=repr)
def test_check_finite_must_be_a_bool(value):
    # bool("False") is True: a string used to switch the checks on silently
    with pytest.raises(ValueError, match="check_finite must be True or False"):
        optim.SGD(np.ones(3), check_finite=value)


def test_check_finite_accepts_bools():
    assert optim.SGD(np.ones(3), check_finite=np.bool_(True)).check_finite is True
    assert optim.SGD(np.ones(3), check_finite=0).check_finite is False


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
    # the kernels count steps in int64: t = 2**63 - 1 overflowed in the next step, after it wrote W
    ("t beyond int64", lambda d: d.update(t=2**63 - 1), ValueError, "t must be at most"),
    ("t as a string", lambda d: d.update(t="3"), ValueError, "t must be"),
    ("lazy as an array", lambda d: d.update(lazy=np.array(["skip"])), ValueError, "lazy must be one of"),
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


@pytest.mark.parametrize("bad", [None, [("t", 3)], "state"], ids=repr)
def test_state_dict_not_a_mapping(bad):
    opt = warmed("Adam")
    snap = snapshot(opt)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        opt.load_state_dict(bad)
    assert_unchanged(opt, snap)


@pytest.mark.parametrize("name, key", [("AdaGrad", "G"), ("RMSProp", "E"), ("Adam", "v")])
def test_negative_accumulator_in_state_dict(name, key):
    # sums of squares: a negative one makes the rule's square root NaN
    d = warmed(name).state_dict()
    d[key][1, 2] = -1e-3
    opt = warmed(name)
    snap = snapshot(opt)
    with pytest.raises(ValueError, match=f"state '{key}' holds negative values"):
        opt.load_state_dict(d)
    assert_unchanged(opt, snap)


def test_negative_signed_state_is_accepted():
    # velocity and first moment are signed: loading them negative is fine
    for name, key in [("Momentum", "v"), ("Adam", "m")]:
        d = warmed(name).state_dict()
        d[key][:] = -1.0
        opt = warmed(name)
        opt.load_state_dict(d)
        np.testing.assert_array_equal(opt.state[key], -1.0)


@pytest.mark.parametrize("name", ["Momentum", "AdaGrad", "RMSProp", "Adam"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_state_dict_with_check_finite(name, value):
    key = optim.__dict__[name]._state_names[0]
    d = warmed(name).state_dict()
    d[key][0, 0] = value
    opt = warmed(name, check_finite=True)
    snap = snapshot(opt)
    with pytest.raises(ValueError, match=f"state '{key}' contains NaN or infinite"):
        opt.load_state_dict(d)
    assert_unchanged(opt, snap)
    # without check_finite, as for gradients, non-finite values are taken as they are
    lax = warmed(name, check_finite=False)
    lax.load_state_dict(d)
    assert np.isnan(lax.state[key][0, 0]) or np.isinf(lax.state[key][0, 0])


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


# with check_finite, the gradient the update uses is checked, not only its parts: repeated
# rows of step_rows and repeated entries of a sparse grad are summed first, and finite values
# can sum beyond the float range (the infinity went into the parameter and state)
OVERFLOW = {np.float64: 1e308, np.float32: 3e38}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # np.add.at's, before the check raises
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_repeated_rows_summing_to_infinity_are_rejected(name, dtype):
    big = OVERFLOW[dtype]
    opt = getattr(optim, name)(np.ones((5, 3), dtype=dtype), lazy="exact", check_finite=True)
    opt.step_rows([0, 1], np.ones((2, 3), dtype=dtype))
    snap = snapshot(opt)
    values = np.array([[big, 1.0, -big], [1.0, 1.0, 1.0], [big, 1.0, -big]], dtype=dtype)
    with pytest.raises(ValueError, match=f"values holds only finite values, but summed over repeated rows "
                                         f"in {np.dtype(dtype).name} they overflow to infinity"):
        opt.step_rows([2, 0, 2], values)
    assert_unchanged(opt, snap)
    coo = sp.coo_matrix((np.array([big, 2.0, big]), (np.array([3, 1, 3]), np.array([2, 2, 2]))), shape=(5, 3))
    with pytest.raises(ValueError, match="grad holds only finite values, but summed over repeated entries"):
        opt.step(coo)
    assert_unchanged(opt, snap)
    opt.step_rows([2, 0, 2], np.ones((3, 3), dtype=dtype))  # and the optimizer works on
    assert opt.t == snap[2] + 1


def test_repeated_rows_summing_to_infinity_accepted_without_check_finite():
    opt = optim.SGD(np.zeros((3, 2)), lr=1.0)
    opt.step_rows([1, 1], np.full((2, 2), 1e308))
    assert np.isneginf(opt.param[1]).all()


def test_non_finite_rows_accepted_without_check_finite():
    opt = optim.SGD(np.zeros((3, 2), dtype=np.float32), check_finite=False)
    opt.step_rows([2, 0], np.array([[np.inf, 1.0], [2.0, 3.0]], dtype=np.float32))
    assert np.isneginf(opt.param[2, 0]) and opt.param[0, 1] == np.float32(-0.03)


@pytest.mark.parametrize("value, match", [
    (-1, "non-negative integer"), (2.0, "non-negative integer"), (True, "non-negative integer"),
    (2**63 - 1, "at most 2\\*\\*62"), (1, "below the step some rows"),
])
def test_assigning_t_is_checked_and_changes_nothing(value, match):
    """``t`` drives Adam's bias corrections and exact mode's catch-up count: an assignment that
    would overflow or put rows ahead of ``t`` raises, and the optimizer is left as it was."""
    W = np.zeros((4, 2))
    opt = optim.Adam(W, lr=0.1, lazy="exact")
    opt.step_rows(np.array([1]), np.ones((1, 2)))
    opt.step_rows(np.array([2]), np.ones((1, 2)))
    before = (W.copy(), {k: v.copy() for k, v in opt.state.items()}, opt.t)
    with pytest.raises(ValueError, match=match):
        opt.t = value
    assert opt.t == before[2]
    np.testing.assert_array_equal(W, before[0])
    for k, v in opt.state.items():
        np.testing.assert_array_equal(v, before[1][k])


def test_assigning_t_forward_is_a_valid_step_count():
    W = np.zeros(3)
    opt = optim.Adam(W, lr=0.1)
    opt.t = np.int64(5)
    opt.step(np.ones(3))
    assert opt.t == 6 and isinstance(opt.t, int)
    # the step used t = 6 in the bias corrections (m = v = 0 before, g = 1)
    hp = opt.hyperparams
    m_hat = (1 - hp["beta1"]) / (1 - hp["beta1"] ** 6)
    v_hat = (1 - hp["beta2"]) / (1 - hp["beta2"] ** 6)
    np.testing.assert_allclose(W, -0.1 * m_hat / (np.sqrt(v_hat) + hp["eps"]), rtol=1e-12)


def test_hyperparams_are_read_only_and_lr_is_checked():
    """Editing ``hyperparams`` in place would bypass the checks (and reach only some kernels):
    it is a read-only view; ``lr`` has its own checked setter."""
    W = np.zeros(3)
    opt = optim.Momentum(W, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError):
        opt.hyperparams["momentum"] = 5.0
    assert opt.hyperparams["momentum"] == 0.9
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 0.1
    opt.lr = 0.2
    assert opt.hyperparams["lr"] == 0.2
    opt.step(np.ones(3))
    np.testing.assert_allclose(W, -0.2)


def test_assigning_check_finite_is_checked():
    opt = optim.SGD(np.zeros(3), lr=0.1)
    with pytest.raises((TypeError, ValueError), match="check_finite"):
        opt.check_finite = "no"
    assert opt.check_finite is False
    opt.check_finite = True
    with pytest.raises(ValueError, match="NaN"):
        opt.step(np.array([0.0, np.nan, 0.0]))


def test_load_state_dict_mends_a_replaced_state_but_not_a_replaced_param():
    """Steps refuse a replaced state (the kernels write through the original arrays); the error
    points to load_state_dict, which loads into the optimizer's own arrays and names them again."""
    W = np.zeros((3, 2))
    opt = optim.Adam(W, lr=0.1)
    opt.step(np.ones((3, 2)))
    d = opt.state_dict()
    own_m = opt.state["m"]
    opt.state["m"] = np.zeros(2)
    with pytest.raises(RuntimeError, match="load_state_dict"):
        opt.step(np.ones((3, 2)))
    opt.load_state_dict(d)
    assert opt.state["m"] is own_m
    np.testing.assert_array_equal(own_m, d["m"])
    opt.step(np.ones((3, 2)))  # steps again
    opt.param = np.zeros((3, 2))
    with pytest.raises(RuntimeError, match="param was replaced"):
        opt.load_state_dict(d)


class _FakeGpuArray:
    """Stands for a CuPy / torch / Numba device array: only ``__cuda_array_interface__``."""

    def __init__(self, shape, typestr="<f8"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0, False), "version": 3}


@pytest.mark.parametrize("call", ["step", "step_rows_values", "step_rows_rows"])
def test_gpu_input_for_a_host_optimizer_names_the_device(call):
    W = np.zeros((4, 2))
    opt = optim.AdaGrad(W, lr=0.1)
    before = (W.copy(), opt.state["G"].copy(), opt.t)
    with pytest.raises(TypeError, match="GPU array .* on the host"):
        if call == "step":
            opt.step(_FakeGpuArray((4, 2)))
        elif call == "step_rows_values":
            opt.step_rows(np.array([1]), _FakeGpuArray((1, 2)))
        else:
            opt.step_rows(_FakeGpuArray((1,), "<i8"), np.ones((1, 2)))
    np.testing.assert_array_equal(W, before[0])
    np.testing.assert_array_equal(opt.state["G"], before[1])
    assert opt.t == before[2]


def test_check_finite_also_checks_the_parameter_when_the_optimizer_is_made():
    W = np.array([0.0, np.inf])
    with pytest.raises(ValueError, match="W contains NaN or infinite"):
        optim.Adam(W, lr=0.1, check_finite=True)
    optim.Adam(W, lr=0.1)  # without the check, as NumPy would
