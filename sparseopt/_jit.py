"""Numba decorators used by every kernel of sparseopt.

Nothing here compiles anything: kernels are compiled lazily on first call and
cached on disk (``cache=True``).  Numba picks a cache folder next to the
source file, or a per-user folder when the package folder is read-only, or
``NUMBA_CACHE_DIR`` when set.  If none of these is writable, Numba refuses to
decorate a ``cache=True`` function; sparseopt then falls back to an
in-memory compile instead of failing at import time.
"""

import warnings

from numba import njit

__all__ = ["kernel", "rule"]

# The numpy error model lets LLVM vectorise loops that divide (no
# ZeroDivisionError checks); every division in the rules is by a positive
# quantity (sqrt(...) + eps, 1 - beta**t) or yields inf/nan like NumPy.
_OPTIONS = dict(error_model="numpy", nogil=True)


def _njit(func, **options):
    try:
        return njit(cache=True, **options)(func)
    except RuntimeError as exc:  # no writable cache location
        warnings.warn(
            f"sparseopt: cannot cache compiled kernels ({exc}); set NUMBA_CACHE_DIR "
            "to a writable folder to avoid recompiling in every process.",
            RuntimeWarning,
            stacklevel=3,
        )
        return njit(cache=False, **options)(func)


def kernel(func=None, *, parallel=False):
    """Compile ``func`` as a sparseopt CPU kernel (lazily, cached)."""
    if func is None:
        return lambda f: kernel(f, parallel=parallel)
    return _njit(func, parallel=parallel, **_OPTIONS)


def rule(func):
    """Compile ``func`` as a small scalar helper inlined into kernels.

    Rules are plain scalar functions, so the same source also compiles for
    CUDA devices (``numba.cuda`` can call ``@njit`` functions).
    """
    return _njit(func, inline="always", **_OPTIONS)
