"""Packaging promises: importing compiles nothing; a read-only install still works."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import sparseopt

PKG = Path(sparseopt.__file__).parent


def _run(code, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_import_compiles_nothing():
    code = """
import sys, sparseopt
assert "numba" not in sys.modules, "import sparseopt imported numba"
import sparseopt.optim, sparseopt._kernels, sparseopt._rules
from numba.core.registry import CPUDispatcher
compiled = [
    f"{mod.__name__}.{name}"
    for mod in (sparseopt._kernels, sparseopt._rules)
    for name, obj in vars(mod).items()
    if isinstance(obj, CPUDispatcher) and obj.signatures
]
assert not compiled, compiled
print("ok")
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_install_imports_and_runs(tmp_path):
    _read_only_check(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_no_writable_cache_location_falls_back(tmp_path, monkeypatch):
    """Where Numba finds no writable cache folder, sparseopt still imports and steps (uncached)."""
    code = """
import numpy as np, warnings
from numba.core import caching

caching.CacheImpl._locator_classes = []  # as if no folder were writable
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    from sparseopt.optim import Adam
W = np.ones(3)
Adam(W, lr=0.1).step(np.ones(3))
assert (W < 1).all()
assert any("cannot cache" in str(x.message) for x in w)
print("ok")
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def _read_only_check(tmp_path):
    dst = tmp_path / "site" / "sparseopt"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    for p in [dst, *dst.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(dst.parent)
    env["HOME"] = str(tmp_path / "home")
    code = "import numpy as np\nfrom sparseopt.optim import SGD\nW = np.ones(2)\nSGD(W).step(np.ones(2))\nprint(W)"
    out = _run(code, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "0.99" in out.stdout


def test_cache_invalidated_when_a_called_rule_changes(tmp_path):
    """Editing a rule in another module must not leave its callers' cached code running."""
    pkg = tmp_path / "pkg_under_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "kern.py").write_text(
        "from sparseopt._jit import kernel\nfrom .rules import f\n\n"
        "@kernel\ndef run(x):\n    return f(x)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    code = "from pkg_under_test.kern import run; print(run(2.0), sum(run.stats.cache_hits.values()))"
    outputs = []
    for factor in (3, 3, 5):
        (pkg / "rules.py").write_text(
            f"from sparseopt._jit import rule\n\n@rule\ndef f(x):\n    return {factor}.0 * x\n"
        )
        out = _run(code, env=env)
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.split())
    assert outputs[0] == ["6.0", "0"]  # compiled
    assert outputs[1] == ["6.0", "1"]  # loaded from the cache
    assert outputs[2] == ["10.0", "0"]  # the rule changed: recompiled, not the stale 6.0
