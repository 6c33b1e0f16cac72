"""sparseopt: Numba-compiled optimizers for sparse machine learning.

Submodules
----------
optim
    SGD, Momentum, AdaGrad, RMSProp and Adam with dense and lazy sparse
    row-wise updates (``lazy="skip"`` or ``lazy="exact"``).

Importing sparseopt compiles nothing: kernels compile on first use and are
cached on disk.
"""

__version__ = "0.1.0"

__all__ = ["optim", "__version__"]


def __getattr__(name):
    # lazy submodule access: ``sparseopt.optim`` without importing it up front
    import importlib

    if name in {"optim", "linear_model"}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
