"""Synthetic sparse data sets: :func:`make_zipf_classification`."""

import numbers

import numpy as np

from .._validation import check_hyper

__all__ = ["make_zipf_classification"]

_INT32_MAX = np.iinfo(np.int32).max
# draws a row are sought up to this many times nnz_per_row (beyond: ValueError)
_MAX_DRAWS_PER_NONZERO = 100


def _check_positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_index_dtype(index_dtype):
    try:
        dtype = np.dtype(index_dtype)
    except TypeError:
        dtype = None
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise ValueError(f"index_dtype must be np.int32 or np.int64, got {index_dtype!r}")
    return dtype


def _rng(random_state):
    expected = "random_state must be None, a non-negative integer or a numpy Generator"
    if isinstance(random_state, (bool, np.bool_)):
        raise ValueError(f"{expected}, got {random_state!r}")
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{expected}, got {random_state!r} ({exc})") from None


def _rank_probabilities(n_features, zipf_exponent):
    """Probability of each feature *rank* under one draw of :func:`make_zipf_classification`.

    A draw is ``k ~ Zipf(zipf_exponent)`` on 1, 2, ... (``P(k) = k**-s / zeta(s)``)
    and lands on rank ``(k - 1) % n_features``, so rank ``j`` collects
    ``sum_m (j + 1 + m * n_features)**-s / zeta(s)``, a Hurwitz zeta sum.
    Rank 0 is the most frequent feature (column ``perm[0]`` of the permuted
    matrix).  NumPy's sampler never returns values above ``2**63 - 1``; that
    truncation, ignored here, moves a few tenths of a per cent of the draws at
    ``zipf_exponent=1.1`` (more as it nears 1).
    """
    from scipy.special import zeta

    k = np.arange(1, n_features + 1, dtype=np.float64)
    # first term apart: n**-s * zeta(s, k / n) overflows for a large exponent, this does not
    p = k**-zipf_exponent + float(n_features) ** -zipf_exponent * zeta(zipf_exponent, k / n_features + 1.0)
    return p / p.sum()


def _expected_nnz(p, n_draws):
    """Expected number of distinct features among ``n_draws`` draws with probabilities ``p``."""
    with np.errstate(divide="ignore"):  # p == 1: log1p(-1) = -inf, giving 1 - 0 = 1 as it should
        return float(-np.expm1(n_draws * np.log1p(-p)).sum())


def _draws_per_row(n_features, nnz_per_row, zipf_exponent):
    """Fewest draws a row whose expected number of distinct features reaches ``nnz_per_row``."""
    p = _rank_probabilities(n_features, zipf_exponent)
    cap = _MAX_DRAWS_PER_NONZERO * nnz_per_row
    lo = nnz_per_row  # n draws give at most n distinct features
    if _expected_nnz(p, lo) >= nnz_per_row:
        return lo
    hi = lo
    while _expected_nnz(p, hi) < nnz_per_row:
        if hi >= cap:
            raise ValueError(
                f"nnz_per_row={nnz_per_row} is out of reach with n_features={n_features} and "
                f"zipf_exponent={zipf_exponent}: {cap:,} draws a row give {_expected_nnz(p, cap):.1f} "
                "distinct features on average; lower nnz_per_row or zipf_exponent, or add features"
            )
        lo, hi = hi, min(2 * hi, cap)
    while hi - lo > 1:  # _expected_nnz(lo) < nnz_per_row <= _expected_nnz(hi)
        mid = (lo + hi) // 2
        if _expected_nnz(p, mid) >= nnz_per_row:
            hi = mid
        else:
            lo = mid
    return hi


def make_zipf_classification(
    n_samples=100_000,
    n_features=100_000,
    *,
    nnz_per_row=50,
    zipf_exponent=1.1,
    noise=0.1,
    random_state=None,
    index_dtype=np.int32,
):
    """Sparse binary classification data with Zipf-distributed feature frequencies.

    The synthetic set of sparseopt's estimator benchmarks (``benchmarks/``
    and ``asv_bench/``), shaped like a bag of words: a few features occur in
    most rows, most features in few.  Each row is built from ``n_draws``
    independent draws of a feature:

    1. draw ``k ~ Zipf(zipf_exponent)`` (``numpy.random.Generator.zipf``:
       ``P(k) ∝ k**-zipf_exponent`` on 1, 2, ...), take the rank
       ``(k - 1) % n_features`` (draws past the last feature wrap around),
       and map ranks to columns through one random permutation, so that the
       frequent features are spread over the index range rather than packed
       at its start;
    2. a feature drawn ``c`` times gets the value ``c``; each row is then
       scaled to unit Euclidean norm;
    3. labels: ``y = sign(X @ w + noise * e)`` with ``w`` and ``e``
       standard normal (a random linear model, Gaussian noise on the margin).

    ``n_draws`` is the fewest draws whose expected number of *distinct*
    features reaches ``nnz_per_row`` (repeats of a frequent feature merge):
    60 draws for the defaults, which give 50.3 non-zeros a row on average.

    Parameters
    ----------
    n_samples : int, default=100_000
        Number of rows.
    n_features : int, default=100_000
        Number of columns.
    nnz_per_row : int, default=50
        Target mean number of stored entries (distinct features) per row.
        The mean of the generated rows lies within about one of it (it is
        at least ``nnz_per_row`` in expectation under the wrapped Zipf law;
        NumPy's sampler truncating at ``2**63`` lowers it by a few hundredths
        at the defaults).  A row holds between 1 and ``n_draws`` entries.
    zipf_exponent : float, default=1.1
        Exponent ``s > 1`` of the Zipf law (NumPy's ``a``).  At 1.1 the most
        frequent feature takes 9.5 % of the draws; larger values concentrate
        the draws further, so that more draws are needed for ``nnz_per_row``.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to the margin
        ``X @ w`` before taking its sign (0: separable by ``w``).  The noise
        is drawn whatever its scale, so data sets differing only in
        ``noise`` share ``X`` and ``w``.
    random_state : None, int or numpy.random.Generator, default=None
        Seed of ``numpy.random.default_rng``; pass an int for reproducible
        output.  A Generator is used (and advanced) as it is.
    index_dtype : {np.int32, np.int64}, default=np.int32
        Dtype of ``X.indices`` and ``X.indptr``.  scikit-learn's
        ``SGDClassifier`` takes 32-bit indices only.

    Returns
    -------
    X : scipy.sparse.csr_matrix of float64, shape (n_samples, n_features)
        In canonical format (sorted indices, no duplicates, flagged so), no
        explicit zeros, every row of unit Euclidean norm.
    y : ndarray of float64, shape (n_samples,)
        Labels in {-1.0, +1.0}, as :func:`load_a9a` and :func:`load_w8a`
        return them (for {0, 1}: ``(y > 0).astype(int)``).  The classes need
        not be balanced: the few most frequent features dominate the margin,
        so the share of +1 depends on the signs of their weights (30 % at
        the defaults with ``random_state=0``).

    Raises
    ------
    ValueError
        If a count is not a positive integer, ``zipf_exponent`` is not a
        finite number above 1, ``noise`` is negative or not finite,
        ``nnz_per_row`` exceeds ``n_features`` or would need more than 100
        draws per requested entry, ``random_state`` is not a seed,
        ``index_dtype`` is neither int32 nor int64, or, with int32, the
        draws (``n_samples * n_draws``) exceed ``2**31 - 1``.  Arguments are
        checked before ``random_state`` is used.

    Notes
    -----
    With the same arguments and ``random_state`` the output is the same bit
    for bit (for a given NumPy and SciPy), and it equals that of the
    ``zipf_csr(n_samples, n_features, draws_per_row=60, a=1.1, seed=...)``
    helper that ``benchmarks/bench_estimators.py`` used before this
    function, whenever ``n_draws`` comes out as 60 (as at the defaults and
    for 5,000 features).

    Examples
    --------
    >>> from sparseopt.datasets import make_zipf_classification
    >>> X, y = make_zipf_classification(1_000, 5_000, random_state=0)
    >>> X.shape, X.nnz // 1_000
    ((1000, 5000), 50)
    """
    n_samples = _check_positive_int("n_samples", n_samples)
    n_features = _check_positive_int("n_features", n_features)
    nnz_per_row = _check_positive_int("nnz_per_row", nnz_per_row)
    zipf_exponent = check_hyper("zipf_exponent", zipf_exponent, low=1.0, low_open=True)
    noise = check_hyper("noise", noise, low=0.0)
    index_dtype = _check_index_dtype(index_dtype)
    if nnz_per_row > n_features:
        raise ValueError(f"nnz_per_row={nnz_per_row} exceeds n_features={n_features}")
    if index_dtype == np.int32 and n_features > _INT32_MAX:
        raise ValueError(f"n_features={n_features} does not fit 32-bit indices; pass index_dtype=np.int64")
    n_draws = _draws_per_row(n_features, nnz_per_row, zipf_exponent)
    if index_dtype == np.int32 and n_samples * n_draws > _INT32_MAX:
        # checked on the draws (merged entries are ~84 % of them at the defaults), before any is made
        raise ValueError(
            f"{n_samples:,} rows of {n_draws} draws may exceed what 32-bit indices can address; "
            "pass index_dtype=np.int64"
        )
    rng = _rng(random_state)

    import scipy.sparse as sp

    ranks = (rng.zipf(zipf_exponent, size=n_samples * n_draws) - 1) % n_features
    columns = rng.permutation(n_features)[ranks]  # frequent features spread over the index range
    del ranks
    indptr = np.arange(0, n_samples * n_draws + 1, n_draws, dtype=np.int64)
    X = sp.csr_matrix((np.ones(columns.size), columns, indptr), shape=(n_samples, n_features))
    del columns
    X.sum_duplicates()  # sorts each row's columns; a feature drawn c times holds c
    counts = np.diff(X.indptr)
    norms = np.sqrt(np.add.reduceat(X.data * X.data, X.indptr[:-1]))  # every row holds >= 1 entry
    X.data *= np.repeat(1.0 / norms, counts)
    w = rng.standard_normal(n_features)
    y = np.where(X @ w + noise * rng.standard_normal(n_samples) > 0, 1.0, -1.0)
    X.indices = X.indices.astype(index_dtype, copy=False)
    X.indptr = X.indptr.astype(index_dtype, copy=False)
    X.has_canonical_format = True  # sorted, summed above; restated after the index arrays changed
    return X, y
