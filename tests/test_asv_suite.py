"""The asv suite (asv_bench/) cannot rot silently.

Imports every benchmark module and runs each ``time_*`` / ``peakmem_*`` /
``track_*`` benchmark once for every parameter combination, with the sizes
shrunk (``TINY``).  A combination whose ``setup`` raises
``NotImplementedError`` is what asv reports as skipped (a missing peer such
as PyTorch, no GPU, ``sparseopt.linear_model`` not importable yet); asv
still calls its ``teardown``, and so does this test.  A benchmark whose
every combination is skipped is skipped here too.
"""

import importlib
import inspect
import itertools
import json
import math
import pathlib
import re
import sys

import pytest

ASV_DIR = pathlib.Path(__file__).resolve().parents[1] / "asv_bench"
MODULES = ("dense", "sparse", "estimators", "cuda")
PREFIXES = ("time_", "peakmem_", "track_")

# parameter values and class attributes that set sizes, replaced by tiny ones
TINY_PARAMS = {"size": [256], "n_rows": [64], "n_indices": [40]}
TINY_ATTRS = {
    "size": 256,
    "n_rows": 64,
    "sizes": (64, 128),
    "n_touched": 10,
    "n_indices": 40,
    "repeat": 2,
    "quick": True,
    "allow_simulator": True,
}
# Numba's CUDA simulator runs every GPU thread in Python: fewer and smaller cases there
TINY_BY_MODULE = {
    "cuda": (
        {"optimizer": ["SGD", "Adam"]},
        {"size": 64, "n_rows": 16, "n_touched": 4, "n_indices": 8},
    )
}


def _module(name):
    if str(ASV_DIR) not in sys.path:
        sys.path.insert(0, str(ASV_DIR))
    return importlib.import_module(f"benchmarks.{name}")


def _benchmarks():
    for mod_name in MODULES:
        mod = _module(mod_name)
        for cls_name, cls in vars(mod).items():
            if not inspect.isclass(cls) or cls.__module__ != mod.__name__ or cls_name.startswith("_"):
                continue
            for meth in dir(cls):
                if meth.startswith(PREFIXES):
                    yield pytest.param(mod_name, cls_name, meth, id=f"{mod_name}.{cls_name}.{meth}")


def _combinations(cls, tiny_params):
    params = getattr(cls, "params", [])
    names = getattr(cls, "param_names", [])
    if params and not isinstance(params[0], (list, tuple)):
        params = [params]
    values = [tiny_params.get(n, list(v)) for n, v in zip(names, params)]
    return list(itertools.product(*values)) if values else [()]


def test_modules_import_and_declare_params():
    """Each benchmark class names its parameters; every module defines benchmarks."""
    for mod_name in MODULES:
        mod = _module(mod_name)
        classes = [c for n, c in vars(mod).items() if inspect.isclass(c) and c.__module__ == mod.__name__]
        assert any(m.startswith(PREFIXES) for c in classes for m in dir(c)), mod_name
        for cls in classes:
            params = getattr(cls, "params", None)
            if params is not None:
                assert len(params) == len(cls.param_names), cls.__name__


def test_asv_conf_builds_with_pip_wheel():
    text = (ASV_DIR / "asv.conf.json").read_text()
    conf = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))  # asv allows // comments
    assert (ASV_DIR / conf["benchmark_dir"]).is_dir()
    assert any("pip wheel --no-deps" in c for c in conf["build_command"])
    assert conf["repo"] == ".."


@pytest.mark.parametrize("mod_name, cls_name, meth", list(_benchmarks()))
def test_benchmark_runs_once(mod_name, cls_name, meth):
    cls = getattr(_module(mod_name), cls_name)
    extra_params, extra_attrs = TINY_BY_MODULE.get(mod_name, ({}, {}))
    ran, skipped = 0, []
    for combo in _combinations(cls, {**TINY_PARAMS, **extra_params}):
        bench = cls()
        for attr, value in {**TINY_ATTRS, **extra_attrs}.items():
            if hasattr(bench, attr):
                setattr(bench, attr, value)
        try:
            if hasattr(bench, "setup"):
                bench.setup(*combo)
        except NotImplementedError as exc:
            skipped.append(f"{combo}: {exc}")
            if hasattr(bench, "teardown"):
                bench.teardown(*combo)  # asv tears a skipped combination down too
            continue
        try:
            result = getattr(bench, meth)(*combo)
        finally:
            if hasattr(bench, "teardown"):
                bench.teardown(*combo)
        if meth.startswith("track_"):
            assert isinstance(result, float | int) and math.isfinite(result), (combo, result)
            assert result >= 0, (combo, result)
        ran += 1
    if not ran:
        pytest.skip(f"every combination skipped, e.g. {skipped[0]}")


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("lazy", ["skip", "exact"])
def test_sparse_step_allocates_independently_of_table_size(optimizer, lazy):
    """What ``SparseMemory`` tracks: a sparse step's scratch memory is O(k * n_cols).

    The same gradient (k indices) on a 100x larger table allocates the same
    bytes, and far less than the table (counted by tracemalloc, which sees
    NumPy's and Numba's allocations: deterministic, not a timing).
    """
    sparse = _module("sparse")
    k = 400
    allocated = {}
    for n_rows in (2_000, 200_000):
        bench = sparse.SparseMemory()
        bench.setup(optimizer, lazy, n_rows, k)
        allocated[n_rows] = bench.track_step_peak_allocated()
        table_bytes = bench.W.nbytes
    values_bytes = k * sparse.N_COLS * 4
    assert abs(allocated[2_000] - allocated[200_000]) <= 4096, allocated
    assert 0 < allocated[200_000] <= 4 * values_bytes < table_bytes / 100, (allocated, values_bytes)


def _script(name):
    """Import a script of benchmarks/ (not a package) by its path."""
    import importlib.util

    path = ASV_DIR.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_optim_arguments():
    """No section means all of them (Python 3.11's argparse refuses an empty list
    checked against ``choices``); an unknown section is refused by name."""
    bench = _script("bench_optim")
    assert bench.parse_args([]).sections == []
    args = bench.parse_args(["sparse", "dense", "--quick"])
    assert args.sections == ["sparse", "dense"] and args.quick
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["spars"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv", [["--epochs", "0"], ["--batch-sizes", "32", "-1"], ["--epochs", "x"], ["--threads", "0"],
             ["--zipf-features", "0"]]
)
def test_bench_estimators_refuses_bad_counts(argv, capsys):
    bench = _script("bench_estimators")
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_size_independence_reports_large_over_small():
    """``track_large_over_small`` is the large table's step time / the small one's
    (> 1 when the large table is slower), checked with a large-table step made slow."""
    import time

    sparse = _module("sparse")

    class Quick:
        def step_rows(self, rows, values):
            pass

    bench = sparse.SparseSizeIndependence()
    bench.repeat = 3
    bench.small = Quick(), None, None
    bench._step = lambda: time.sleep(0.002)
    assert bench.track_large_over_small("SGD", "skip") > 5
