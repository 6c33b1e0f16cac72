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

__all__ = ["is_available", "is_device_array", "upload_csr", "batch_layout", "csr_batch_gradient"]

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
    ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors,
    including ``torch.nn.Parameter``).  Imports nothing.
    """
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if getattr(obj, "__cuda_ndarray__", False) or getattr(obj, "is_cuda", False) is True:
        return True
    try:
        return hasattr(obj, "__cuda_array_interface__")
    except Exception:  # an exporter that refuses (not AttributeError): its error says why
        return True


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


# --------------------------------------------------------------------------
# linear models: mini-batch gradients from CSR data on the device
# --------------------------------------------------------------------------


def upload_csr(X, dtype=np.float64):
    """Check a ``scipy.sparse`` matrix once and copy it to the GPU (CSR, int64 indices).

    Returns a namespace with device arrays ``indptr``, ``indices``, ``data``
    (``dtype``), and ``shape`` and ``row_nnz`` on the host.
    """
    _cuda()
    from ._linear import upload_csr as f

    return f(X, dtype)


def batch_layout(X, order):
    """One epoch's sample ``order`` for :func:`csr_batch_gradient` (``X`` from :func:`upload_csr`)."""
    _cuda()
    from ._linear import batch_layout as f

    return f(X, order)


def csr_batch_gradient(X, layout, y, sw, start, stop, W, b, loss):
    """Gradient of a linear model's mini-batch loss on the GPU, as rows and values.

    For the samples ``i = order[start:stop]`` (``m`` of them) of the CSR
    matrix ``X`` and the model ``z_i = x_i W + b``, the batch loss is
    ``sum_i sw_i loss(z_i, y_i) / m`` with ``loss`` ``"squared"``
    (``(z - y)^2 / 2``), ``"log"`` (``log(1 + exp(-y z))``, y in {-1, +1})
    or ``"multinomial"`` (``logsumexp(z) - z[y]``, y the class index, stored
    as a float; ``W`` then has one column per class, at most 64).

    Parameters
    ----------
    X : namespace from :func:`upload_csr`
    layout : namespace from :func:`batch_layout`
    y, sw : device arrays (n_samples,) of ``W``'s dtype
        Targets and sample weights.
    start, stop : int
        The batch is ``layout``'s samples ``start:stop``.
    W : device array (n_features,) or (n_features, n_outputs)
        Weights (e.g. ``opt.param`` of an optimizer on the GPU); one output
        for ``"squared"`` and ``"log"``, one per class for ``"multinomial"``.
    b : device array (n_outputs,)
        Intercept.
    loss : {"squared", "log", "multinomial"}

    Returns
    -------
    rows : device array (nnz,) int64
        The feature of each stored entry of the batch (features repeat).
    values : device array (nnz,) or (nnz, n_outputs)
        ``sw_i x_ij dloss/dz_i / m`` per entry, shaped for ``W``.
    grad_b : device array (n_outputs,)
        Gradient of the batch loss with respect to ``b``.
    loss_sum : device array (1,)
        ``sum_i sw_i loss(z_i, y_i)`` (not divided by ``m``).

    Examples
    --------
    One epoch of mini-batch Adam on the GPU (lazy updates of the features
    present in each batch; the optimizer sums repeated features)::

        Xd = upload_csr(X)
        y_d, sw_d = cuda.to_device(y), cuda.to_device(sw)
        W, b = cuda.to_device(np.zeros(n_features)), cuda.to_device(np.zeros(1))
        opt_W, opt_b = Adam(W, lazy="exact"), Adam(b)
        layout = batch_layout(Xd, rng.permutation(n_samples))
        for start in range(0, n_samples, batch_size):
            stop = min(start + batch_size, n_samples)
            rows, values, gb, _ = csr_batch_gradient(Xd, layout, y_d, sw_d, start, stop, W, b, "log")
            opt_W.step_rows(rows, values)
            opt_b.step(gb)
        opt_W.sync()
    """
    _cuda()
    from ._linear import csr_batch_gradient as f

    return f(X, layout, y, sw, start, stop, W, b, loss)
