"""sparseopt: Numba-compiled optimizers for sparse machine learning.

Submodules
----------
optim
    SGD, Momentum, AdaGrad, RMSProp and Adam with dense and lazy sparse
    row-wise updates (``lazy="skip"`` or ``lazy="exact"``).
linear_model
    scikit-learn-style ``LinearRegression`` and ``LogisticRegression``
    trained by those optimizers on sparse data.
datasets
    Real data sets bundled with the package (a9a, w8a, SMS Spam, Sentiment
    Labelled Sentences) and the synthetic Zipf set of the benchmarks.
cuda
    The same optimizers on GPU arrays (needs ``numba-cuda`` and a GPU).

Importing sparseopt compiles nothing: kernels compile on first use and are
cached on disk.
"""

__version__ = "0.1.0"

_SUBMODULES = ("optim", "linear_model", "datasets", "cuda")

__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name):
    # lazy submodule access: ``sparseopt.optim`` without importing it up front
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
