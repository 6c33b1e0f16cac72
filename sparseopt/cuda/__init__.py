"""GPU support for sparseopt, with ``numba-cuda``.

The optimizers of :mod:`sparseopt.optim` run on the GPU when given a GPU
array: a Numba device array or any object exposing
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors).  The array
is updated in place, without a copy; gradients may be on the GPU or on the
host; the state lives on the GPU, and ``state_dict()`` / ``load_state_dict()``
use host NumPy arrays, so a run can move between CPU and GPU::

    import torch
    from sparseopt.optim import Adam

    W = torch.zeros(1_000_000, 16, device="cuda")
    opt = Adam(W, lr=1e-3, lazy="exact")
    rows = torch.tensor([3, 17, 3], device="cuda")     # repeats are summed
    opt.step_rows(rows, torch.randn(3, 16, device="cuda"))
    opt.sync()

Requirements: the ``numba-cuda`` package (``pip install "sparseopt[cuda]"``,
which brings the CUDA 12 toolkit libraries; ``"sparseopt[cuda13]"`` for
CUDA 13 drivers) and an NVIDIA GPU.  Without them, ``import sparseopt`` and
every CPU feature work as usual; handing a GPU array to an optimizer raises
an error that says what is missing.

Kernels run on the default CUDA stream and keep to the subset of Python
that CUDA supports.  CI tests them on Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which checks their logic but not that they
compile for a GPU; ``python -m sparseopt.cuda.check_ptx`` compiles every
kernel to PTX without a GPU (it needs the toolkit: ``numba-cuda[cu13]``).
"""

import os

import numpy as np

__all__ = ["is_available", "is_device_array"]

_MISSING_NUMBA_CUDA = (
    "sparseopt's GPU support needs the numba-cuda package, which is not installed: "
    'pip install "sparseopt[cuda]" (CUDA 12) or "sparseopt[cuda13]" (CUDA 13). '
    "(numba's own, deprecated numba.cuda is not supported.)"
)
_NO_GPU = (
    "sparseopt was given a GPU array but finds no usable CUDA GPU: numba.cuda.is_available() "
    "is False (no NVIDIA GPU, or its driver could not be loaded). "
    'Run `python -c "from numba import cuda; cuda.detect()"` for details, '
    "or set NUMBA_ENABLE_CUDASIM=1 before Python starts to use Numba's CUDA simulator."
)


def is_device_array(obj):
    """Whether ``obj`` is a GPU array sparseopt hands to its CUDA backend.

    True for Numba device arrays and for objects exposing
    ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors).
    Imports nothing.
    """
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if getattr(obj, "__cuda_ndarray__", False):
        return True
    try:
        return hasattr(obj, "__cuda_array_interface__")
    except Exception:  # an exporter that raises anything but AttributeError
        return False


def simulator_enabled():
    """Whether Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM`` set before import)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _cuda():
    """``numba.cuda`` from numba-cuda, with a GPU (or the simulator); else a clear error."""
    try:
        import numba_cuda  # noqa: F401  (numba-cuda installs numba.cuda in its place)
    except ImportError as exc:
        raise ImportError(_MISSING_NUMBA_CUDA) from exc
    from numba import cuda

    if not cuda.is_available():
        raise RuntimeError(_NO_GPU)
    return cuda


def is_available():
    """Whether the GPU backend can run here (numba-cuda, and a GPU or the simulator)."""
    try:
        _cuda()
    except (ImportError, RuntimeError):
        return False
    return True


def backend_for(W):
    """The CUDA backend of an optimizer for the GPU array ``W`` (``None`` for anything else).

    Raises ``ImportError`` / ``RuntimeError`` saying what is missing when
    ``W`` is a GPU array but numba-cuda or the GPU is not there.
    """
    if not is_device_array(W):
        return None
    _cuda()
    from ._optim import DeviceBackend

    return DeviceBackend(W)
