"""Compile every CUDA kernel of sparseopt to PTX, without a GPU.

The CUDA simulator that CI uses runs the kernels as Python, so it cannot
tell whether they keep to the subset of Python that compiles for a GPU.
This script can: it runs Numba's CUDA compiler (NVVM) for each kernel and
each signature the optimizers launch, and prints one line per kernel.

Usage (needs numba-cuda with the CUDA toolkit's NVVM, not a GPU; the
simulator must be off)::

    pip install "numba-cuda[cu13]"
    python -m sparseopt.cuda.check_ptx [--cc 8.0]

Exit status 0 when everything compiles.
"""

import argparse
import os
import sys
import time


def signatures():
    """``(name, kernel, argument types)`` for every launch the CUDA backend makes."""
    from numba import types

    from .._rules import H_SIZE
    from . import _kernels as K
    from . import _linear as L

    i64, i32, b1 = types.int64, types.int32, types.boolean
    out = []
    for fl in (types.float32, types.float64):
        a2 = types.Array(fl, 2, "C")
        a1 = types.Array(fl, 1, "C")
        i1 = types.Array(i64, 1, "C")
        h = types.UniTuple(fl, H_SIZE)
        slot = types.Array(i32, 1, "C")
        for kind, kname in enumerate(("SGD", "Momentum", "AdaGrad", "RMSProp", "Adam")):
            kk = K.kernels_for(kind)
            out += [
                (f"{kname}.dense_step[{fl}]", kk.dense_step, (a2, a2, a2, a2, h)),
                (f"{kname}.rows_step[{fl}]", kk.rows_step, (a2, i1, a2, slot, a2, a2, h, b1, i1, i64)),
                (f"{kname}.sync_rows[{fl}]", kk.sync_rows, (a2, a2, a2, h, i1, i64)),
            ]
        out += [
            (f"sum_repeats[{fl}]", K.sum_repeats, (i1, a2, slot, a2)),
            (f"fill[{fl}]", K.fill, (a1, fl)),
            (f"copy_cast[float64->{fl}]", K.copy_cast, (types.Array(types.float64, 1, "C"), a1)),
            (f"count_nonfinite[{fl}]", K.count_nonfinite, (a1, i1)),
        ]
        out += L.signatures(fl)
    i1 = types.Array(i64, 1, "C")
    out += [
        ("claim_rows", K.claim_rows, (i1, types.Array(i32, 1, "C"))),
        ("release_rows", K.release_rows, (i1, types.Array(i32, 1, "C"), b1, i1, i64)),
        ("fill[int32]", K.fill, (types.Array(i32, 1, "C"), i32)),
        ("fill[int64]", K.fill, (i1, i64)),
        ("copy_cast[int32->int64]", K.copy_cast, (types.Array(i32, 1, "C"), i1)),
        ("index_range", K.index_range, (i1, i1)),
    ]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="8.0", help="compute capability to compile for (default 8.0)")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("check_ptx: unset NUMBA_ENABLE_CUDASIM (the simulator compiles nothing)", file=sys.stderr)
        return 2
    from numba import cuda
    from numba.cuda import dispatcher

    cc = tuple(int(x) for x in args.cc.split("."))

    class _NoDevice:  # device functions ask the current device for its cc: answer without a GPU
        compute_capability = cc

    dispatcher.get_current_device = lambda: _NoDevice
    failed = 0
    for name, kernel, sig in signatures():
        start = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        except Exception as exc:  # report every failure, then exit non-zero
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        print(f"ok   {name}: {len(ptx.splitlines())} PTX lines, {time.perf_counter() - start:.1f} s")
    print(f"{'all kernels compile' if not failed else f'{failed} kernel(s) failed'} for sm_{cc[0]}{cc[1]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
