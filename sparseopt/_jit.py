"""Numba decorators used by every kernel of sparseopt.

Nothing here compiles anything: kernels are compiled lazily on first call and
cached on disk (``cache=True``).  Numba picks a cache folder next to the
source file, or a per-user folder when the package folder is read-only, or
``NUMBA_CACHE_DIR`` when set.  If none of these is writable, Numba refuses to
decorate a ``cache=True`` function; sparseopt then falls back to an
in-memory compile instead of failing at import time.

Numba invalidates a cached kernel only when the kernel's own source file
changes, not when a function it calls (a rule in another module) does, so
an edited rule could keep running its old compiled code.  sparseopt's cache
entries are therefore stamped with a digest of every source file of the
package the function belongs to.
"""

import functools
import hashlib
import sys
import warnings
from pathlib import Path

from llvmlite import ir
from numba import njit, types
from numba.core import caching, cgutils
from numba.core.errors import TypingError
from numba.core.extending import intrinsic

__all__ = ["kernel", "rule", "lanes", "loop", "prefetch", "stack_buffer", "load_acquire", "store_release",
           "yield_cpu", "fmuladd"]

# The numpy error model lets LLVM vectorise loops that divide (no
# ZeroDivisionError checks); every division in the rules is by a positive
# quantity (sqrt(...) + eps, 1 - beta**t) or yields inf/nan like NumPy.
_OPTIONS = dict(error_model="numpy", nogil=True)


@functools.lru_cache(maxsize=None)
def package_digest(package):
    """SHA-256 over the ``.py`` files of top-level ``package`` (names and contents)."""
    root = Path(sys.modules[package].__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _stamped(locator_class):
    class Stamped(locator_class):
        def get_source_stamp(self):
            return (super().get_source_stamp(), package_digest(self._sparseopt_package))

    Stamped.__name__ = Stamped.__qualname__ = f"PackageStamped{locator_class.__name__}"
    return Stamped


def _package_cache(func):
    """A Numba function cache whose entries are invalidated by any change to ``func``'s package."""
    package = func.__module__.split(".")[0]

    class Impl(caching.CompileResultCacheImpl):
        _locator_classes = [
            type(c.__name__, (_stamped(c),), {"_sparseopt_package": package})
            for c in caching.CompileResultCacheImpl._locator_classes
        ]

    class Cache(caching.FunctionCache):
        _impl_class = Impl

    return Cache(func)


def _njit(func, **options):
    dispatcher = njit(**options)(func)
    try:
        dispatcher._cache = _package_cache(func)  # what cache=True does, with our locators
    except RuntimeError as exc:  # no writable cache location
        warnings.warn(
            f"sparseopt: cannot cache compiled kernels ({exc}); set NUMBA_CACHE_DIR "
            "to a writable folder to avoid recompiling in every process.",
            RuntimeWarning,
            stacklevel=3,
        )
    return dispatcher


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


def lanes(func):
    """Compile ``func``, a small helper of the CPU kernels' loops, inlined at the Numba IR level.

    For the branch-free scalar helpers of vectorised loops: LLVM left a call
    of such a helper (which blocks vectorising the loop) where it was larger
    than its inlining threshold.  Also for a per-row test taking arrays, which
    as a called :func:`rule` would cost a reference-count increment and
    decrement per call.  Not for code that runs on CUDA devices."""
    return _njit(func, inline="always", **_OPTIONS)


def loop(func):
    """Compile ``func``, a loop helper holding a ``prange``, inlined at the Numba IR level.

    ``prange`` only runs in parallel when it sits in the body of a
    ``parallel=True`` kernel, so helpers that hold one are inlined into their
    callers (in serial kernels ``prange`` is a plain ``range``).  Keep them
    small: the scalar math belongs in :func:`rule` functions.
    """
    return _njit(func, inline="always", **_OPTIONS)


# --------------------------------------------------------------------------
# two LLVM-level helpers of the CPU kernels (no effect on results)
# --------------------------------------------------------------------------


def _prefetch(builder, ptr):
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
    # rw = 1 (for writing), locality = 3 (keep in all cache levels), data cache
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])


@intrinsic
def prefetch(typingctx, arr, index):
    """Hint the CPU to fetch row ``index`` of ``arr`` into cache, for writing (``llvm.prefetch``).

    ``arr``: a C-contiguous 1-D array (the element at ``index``) or 2-D array
    (the lines of the row's first and last elements, and every 16th element
    between).  A prefetch never faults and never changes memory, so any
    ``index`` is safe; it only pays when issued a few hundred cycles before
    the loads it serves (independent random rows).  One intrinsic rather
    than a jitted loop: inlining that into every caller slowed compiling.
    """
    if not isinstance(arr, types.Array) or arr.layout != "C" or arr.ndim > 2 or not isinstance(index, types.Integer):
        raise TypingError("prefetch(arr, index) takes a C-contiguous 1-D or 2-D array and an integer")

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        if aryty.ndim == 1:
            _prefetch(builder, builder.gep(ary.data, [idx]))  # plain (not inbounds) address arithmetic
            return context.get_dummy_value()
        n_cols = cgutils.unpack_tuple(builder, ary.shape)[1]
        start = builder.mul(idx, n_cols)
        last = builder.sub(builder.add(start, n_cols), ir.Constant(start.type, 1))
        _prefetch(builder, builder.gep(ary.data, [start]))
        with cgutils.for_range_slice(builder, builder.add(start, ir.Constant(start.type, 16)), last,
                                     ir.Constant(start.type, 16)) as (off, _):
            _prefetch(builder, builder.gep(ary.data, [off]))
        _prefetch(builder, builder.gep(ary.data, [last]))  # rows need not be aligned to cache lines
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@intrinsic(prefer_literal=True)
def stack_buffer(typingctx, like, size):
    """A pointer to ``size`` (a compile-time constant) elements of ``like``'s dtype on the stack.

    ``like``: an array, or a NumPy scalar type (``np.float64``).

    Wrap it with ``numba.carray(ptr, size)``, in the function that uses it
    (the memory lives as long as that function's frame).  LLVM knows such a
    buffer aliases no array argument, so loops copying a row into it, or
    computing in it, vectorise without run-time alias checks; the buffer
    itself usually ends up in vector registers.
    """
    if isinstance(like, types.Array):
        dtype = like.dtype
    elif isinstance(like, types.NumberClass):
        dtype = like.instance_type
    else:
        dtype = None
    if dtype is None or not isinstance(size, types.IntegerLiteral):
        raise TypingError("stack_buffer(like, size) takes an array or a NumPy scalar type, and a constant integer")
    n = size.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(dtype), size=n)

    return types.CPointer(dtype)(like, size), codegen


# --------------------------------------------------------------------------
# two threads that wait for each other (an epoch on two threads, _epoch)
# --------------------------------------------------------------------------


def _int64_element(arr, index):
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.layout == "C"
            and isinstance(index, types.Integer)):
        raise TypingError("takes a C-contiguous int64 array and an integer index")


@intrinsic
def load_acquire(typingctx, arr, index):
    """``arr[index]`` (int64) read with acquire ordering: the writes another thread made before
    its :func:`store_release` of the value read are visible after this read.  Also never
    hoisted out of a loop, so ``while load_acquire(flags, i) < t: pass`` waits for another
    thread (a plain read would be read once).  No bounds check."""
    _int64_element(arr, index)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, index), codegen


@intrinsic
def store_release(typingctx, arr, index, value):
    """``arr[index] = value`` (int64) written with release ordering: a thread that reads the
    value with :func:`load_acquire` sees every write made before.  No bounds check."""
    _int64_element(arr, index)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        value = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(value, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, index, value), codegen


@intrinsic
def yield_cpu(typingctx):
    """Give the CPU to another thread (``sched_yield``; a no-op on Windows): for a thread that
    has waited long for another, which may be waiting for this CPU (more threads than CPUs)."""

    def codegen(context, builder, signature, args):
        if sys.platform != "win32":
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def fmuladd(typingctx, a, b, c):
    """``a * b + c`` (float64) as ``llvm.fmuladd``: one fused multiply-add, rounded once, where
    the CPU has one (x86-64 since 2013, ARM64), else a multiply and an add.  For polynomials
    in hot loops, which Numba otherwise compiles to separate multiplies and adds (it does not
    contract them): fewer instructions and a shorter chain of dependent ones.  Results may
    differ in the last bit between CPUs with and without the instruction."""

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d, d]), "llvm.fmuladd.f64")
        return builder.call(fn, [context.cast(builder, v, t, types.float64) for v, t in zip(args, signature.args)])

    if not all(isinstance(x, (types.Float, types.Integer)) for x in (a, b, c)):
        raise TypingError("fmuladd(a, b, c) takes three real numbers")
    return types.float64(a, b, c), codegen
