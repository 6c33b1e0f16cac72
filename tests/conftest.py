"""Set-up shared by every test module: how fast the tests run, never what they check.

One BLAS thread (OpenBLAS / MKL, through ``threadpoolctl``).  scikit-learn's
reference fits (lbfgs, saga, ``Ridge``) make many small dense BLAS calls; on
CI's two cores, with Numba's threads and other processes competing for them,
several BLAS threads oversubscribe the machine: an lbfgs fit on a9a took
7.3 s instead of 0.26 s in one measurement, 17 s instead of 7 s in another.
The results do not depend on the number of BLAS threads beyond rounding,
which the tolerances of the tests cover.  Numba's own threads
(``parallel=True`` kernels) are not limited (``user_api="blas"``).

A short GIL switch interval under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, as in CI).  The simulator runs each GPU thread
of a block as a Python thread while the launching thread polls them in a
busy loop for ``syncthreads``; with Python's default 5 ms interval the
poller keeps the GIL from the threads that have work.  At 0.1 ms the
simulated CUDA tests took half the time (a measured 48 s -> 20 s for the
estimator tests of ``test_cuda_linear.py``).  Kernels and results are the
same: only when Python switches threads changes.
"""

import sys

import pytest
from threadpoolctl import threadpool_limits

SIMULATOR_SWITCH_INTERVAL = 1e-4  # seconds; Python's default is 5e-3


def _cuda_simulator_on():
    try:
        from numba import config
    except ImportError:
        return False
    return bool(getattr(config, "ENABLE_CUDASIM", False))


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session", autouse=True)
def _fast_cuda_simulator():
    if not _cuda_simulator_on():
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
