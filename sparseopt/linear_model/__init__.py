"""Linear models trained by the sparseopt optimizers, scikit-learn style.

``LogisticRegression`` (binary and multinomial) and ``LinearRegression``
minimise SPEC.md's objective, the sample-weighted mean loss plus
``alpha * R(w)``, with any of the five optimizers of :mod:`sparseopt.optim`
on dense arrays or ``scipy.sparse`` input (CSR fastest).  Whole epochs run
in fused Numba kernels (:mod:`sparseopt.linear_model._epoch`).

The full training state (weights, intercept, optimizer state, step and
epoch counters, learning-rate schedule, shuffling generator) is public:
``get_training_state()`` returns it as NumPy arrays and scalars (save it
with ``np.savez``), ``set_training_state(state)`` checks and restores it,
and ``initial_training_state(X, y)`` gives the state training starts from.
A restored estimator continues ``partial_fit`` bit for bit; the states of
several estimators can be averaged (:mod:`sparseopt.dask` does).
"""

from ._estimators import LinearRegression, LogisticRegression

__all__ = ["LogisticRegression", "LinearRegression"]
