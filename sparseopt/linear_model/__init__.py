"""Linear models trained by the sparseopt optimizers, scikit-learn style.

``LogisticRegression`` (binary and multinomial) and ``LinearRegression``
minimise SPEC.md's objective, the sample-weighted mean loss plus
``alpha * R(w)``, with any of the five optimizers of :mod:`sparseopt.optim`
on dense arrays or ``scipy.sparse`` input (CSR fastest).  Whole epochs run
in fused Numba kernels (:mod:`sparseopt.linear_model._epoch`).
"""

from ._estimators import LinearRegression, LogisticRegression

__all__ = ["LogisticRegression", "LinearRegression"]
