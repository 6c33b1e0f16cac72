"""Property-based tests: random shapes, row patterns and step sequences.

For any sequence of sparse steps:
* ``lazy="exact"`` + ``sync()`` equals the naive dense update fed with zero rows;
* ``lazy="skip"`` equals the naive skip semantics;
* a step naming every row once equals a dense step.
Tolerances as in test_optim.py (float64).
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import NaiveOptimizer
from sparseopt import optim

NAMES = ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"]


@st.composite
def scenarios(draw):
    name = draw(st.sampled_from(NAMES))
    n_rows = draw(st.integers(1, 6))
    shape = (n_rows,) if draw(st.booleans()) else (n_rows, draw(st.integers(1, 3)))
    hyper = {"lr": draw(st.floats(1e-3, 0.3)), "weight_decay": draw(st.sampled_from([0.0, 0.0, 0.05]))}
    if name == "Momentum":
        hyper["momentum"] = draw(st.floats(0.0, 0.95))
        hyper["nesterov"] = draw(st.booleans())
    if name == "RMSProp":
        hyper["rho"] = draw(st.floats(0.0, 0.99))
    if name == "Adam":
        hyper["beta1"] = draw(st.floats(0.0, 0.95))
        hyper["beta2"] = draw(st.floats(0.5, 0.999))
    steps = draw(
        st.lists(st.lists(st.integers(0, n_rows - 1), max_size=2 * n_rows), min_size=1, max_size=25)
    )
    seed = draw(st.integers(0, 2**32 - 1))
    return name, shape, hyper, steps, seed


def _run(lazy, scenario):
    name, shape, hyper, steps, seed = scenario
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(shape)
    opt = getattr(optim, name)(W, lazy=lazy, **hyper)
    ref = NaiveOptimizer(name, W, **hyper)
    for rows in steps:
        v = rng.standard_normal((len(rows),) + shape[1:])
        opt.step_rows(np.array(rows, dtype=np.int64), v)
        if lazy == "exact":
            ref.dense(ref.to_dense(rows, v))
        else:
            ref.skip(rows, v)
    opt.sync()
    return opt, ref


def _close(opt, ref, rtol):
    np.testing.assert_allclose(opt.param, ref.p, rtol=rtol, atol=1e-12)
    for k, v in ref.state.items():
        np.testing.assert_allclose(opt.state[k], v, rtol=rtol, atol=1e-12)


_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(scenarios())
def test_exact_after_sync_equals_dense_with_zero_rows(scenario):
    opt, ref = _run("exact", scenario)
    _close(opt, ref, rtol=1e-9)


@_settings
@given(scenarios())
def test_skip_equals_naive_skip(scenario):
    opt, ref = _run("skip", scenario)
    _close(opt, ref, rtol=1e-12)


@_settings
@given(scenarios(), st.sampled_from(["skip", "exact"]))
def test_all_rows_in_any_order_equals_dense(scenario, lazy):
    name, shape, hyper, steps, seed = scenario
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(shape)
    W2 = W.copy()
    a = getattr(optim, name)(W, lazy=lazy, **hyper)
    b = getattr(optim, name)(W2, lazy=lazy, **hyper)
    for _ in steps:
        g = rng.standard_normal(shape)
        order = rng.permutation(shape[0])
        a.step_rows(order, g[order])
        b.step(g)
    np.testing.assert_allclose(W, W2, rtol=1e-12, atol=1e-14)
