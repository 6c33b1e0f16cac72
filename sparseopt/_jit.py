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

__all__ = ["kernel", "rule", "loop"]

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
    """Compile ``func`` as a scalar helper called from kernels.

    Rules are plain scalar functions, so the same source also compiles for
    CUDA devices (``numba.cuda`` can call ``@njit`` functions).  They are
    inlined by LLVM, not at the Numba IR level: IR inlining (``inline=
    "always"``) of the rules multiplied compile times by ten.
    """
    return _njit(func, **_OPTIONS)


def loop(func):
    """Compile ``func``, a loop helper holding a ``prange``, inlined at the Numba IR level.

    ``prange`` only runs in parallel when it sits in the body of a
    ``parallel=True`` kernel, so helpers that hold one are inlined into their
    callers (in serial kernels ``prange`` is a plain ``range``).  Keep them
    small: the scalar math belongs in :func:`rule` functions.
    """
    return _njit(func, inline="always", **_OPTIONS)
