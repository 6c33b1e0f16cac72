"""``sparseopt.datasets.make_zipf_classification``: the synthetic set of the estimator benchmarks.

References: ``_reference`` below, the generator ``benchmarks/bench_estimators.py``
defined as ``zipf_csr`` before the package had one (README figures were
measured with it), written the plain way (COO triplets, a diagonal scaling
matrix), with the number of draws a row as an argument; and that number
derived independently from the Zipf law by brute-force summation
(``_draws_by_summation``).  Row norms, sortedness and frequencies are
checked with NumPy on the arrays themselves.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sparseopt import datasets
from sparseopt.datasets import make_zipf_classification


def _reference(n_rows, n_features, draws_per_row=60, a=1.1, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    ids = (rng.zipf(a, size=n_rows * draws_per_row) - 1) % n_features
    ids = rng.permutation(n_features)[ids]
    rows = np.repeat(np.arange(n_rows), draws_per_row)
    X = sp.csr_matrix((np.ones(ids.size), (rows, ids)), shape=(n_rows, n_features))
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    X = X.tocsr()
    X.sum_duplicates()
    w = rng.standard_normal(n_features)
    y = np.where(X @ w + noise * rng.standard_normal(n_rows) > 0, 1.0, -1.0)
    return X, y


def _law(n_features, a, n_terms=2_000_000):
    """Probability of each rank ``(k - 1) % n_features`` under Zipf(a), summed over
    k = 1 .. n_terms, the rest (spread evenly by the wrap-around) by the integral of k**-a."""
    k = np.arange(1, n_terms + 1, dtype=np.float64)
    p = np.bincount((np.arange(n_terms) % n_features), weights=k**-a, minlength=n_features)
    p += (n_terms + 0.5) ** (1.0 - a) / (a - 1.0) / n_features
    return p / p.sum()


def _draws_by_summation(n_features, nnz_per_row, a):
    """Fewest draws whose expected number of distinct features reaches ``nnz_per_row``."""
    p = _law(n_features, a)
    d = nnz_per_row
    while np.sum(1.0 - (1.0 - p) ** d) < nnz_per_row:
        d += 1
    return d


def _same(X, y, X_ref, y_ref):
    assert X.shape == X_ref.shape
    np.testing.assert_array_equal(X.indptr, X_ref.indptr)
    np.testing.assert_array_equal(X.indices, X_ref.indices)
    np.testing.assert_array_equal(X.data, X_ref.data)  # bit for bit
    np.testing.assert_array_equal(y, y_ref)


def test_exported():
    assert "make_zipf_classification" in datasets.__all__
    assert "make_zipf_classification" in datasets.__doc__


@pytest.mark.parametrize("n_rows, n_features, seed", [(300, 5_000, 0), (200, 20_000, 7)])
def test_defaults_reproduce_the_benchmark_generator(n_rows, n_features, seed):
    # nnz_per_row=50 and exponent 1.1 mean 60 draws a row, as the benchmark's helper had
    X, y = make_zipf_classification(n_rows, n_features, random_state=seed)
    _same(X, y, *_reference(n_rows, n_features, seed=seed))


@pytest.mark.parametrize("n_features, nnz_per_row, a", [(50, 8, 2.0), (400, 20, 1.5), (30, 25, 1.05)])
def test_draws_follow_the_expected_distinct_count(n_features, nnz_per_row, a):
    d = _draws_by_summation(n_features, nnz_per_row, a)
    X, y = make_zipf_classification(
        40, n_features, nnz_per_row=nnz_per_row, zipf_exponent=a, noise=0.3, random_state=3
    )
    _same(X, y, *_reference(40, n_features, draws_per_row=d, a=a, noise=0.3, seed=3))


def test_format_shape_and_unit_rows():
    X, y = make_zipf_classification(500, 3_000, nnz_per_row=20, random_state=1)
    assert sp.issparse(X) and X.format == "csr" and X.shape == (500, 3_000)
    assert X.dtype == np.float64 and X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
    assert X.has_canonical_format and X.has_sorted_indices
    for i in range(X.shape[0]):  # sorted, no repeats: strictly increasing within each row
        assert np.all(np.diff(X.indices[X.indptr[i] : X.indptr[i + 1]]) > 0)
    assert np.all(X.data > 0)  # no explicit zeros
    np.testing.assert_allclose(np.sqrt(np.add.reduceat(X.data**2, X.indptr[:-1])), 1.0, rtol=1e-14)
    assert np.all(np.diff(X.indptr) >= 1)
    assert y.shape == (500,) and y.dtype == np.float64 and set(np.unique(y)) == {-1.0, 1.0}
    # values are draw counts over the row's norm: each row's values are multiples of its smallest
    row = X[0].data
    ratios = row / row.min()
    np.testing.assert_allclose(ratios, np.round(ratios), atol=1e-12)


def test_index_dtype_int64_same_content():
    X32, y32 = make_zipf_classification(100, 2_000, nnz_per_row=10, random_state=2)
    X64, y64 = make_zipf_classification(100, 2_000, nnz_per_row=10, random_state=2, index_dtype=np.int64)
    assert X64.indices.dtype == np.int64 and X64.indptr.dtype == np.int64 and X64.has_canonical_format
    _same(X64, y64, X32, y32)


@pytest.mark.parametrize("n_features, nnz_per_row, a", [(5_000, 50, 1.1), (2_000, 10, 1.5)])
def test_nnz_per_row_close_to_target(n_features, nnz_per_row, a):
    X, _ = make_zipf_classification(2_000, n_features, nnz_per_row=nnz_per_row, zipf_exponent=a, random_state=0)
    mean = X.nnz / X.shape[0]
    assert nnz_per_row - 0.5 < mean < nnz_per_row + 1.0, mean


def test_determinism_and_seeds():
    args = dict(n_samples=200, n_features=1_000, nnz_per_row=15)
    X1, y1 = make_zipf_classification(**args, random_state=5)
    X2, y2 = make_zipf_classification(**args, random_state=5)
    _same(X1, y1, X2, y2)
    X3, y3 = make_zipf_classification(**args, random_state=np.random.default_rng(5))
    _same(X1, y1, X3, y3)  # a Generator seeded alike gives the same data
    X4, _ = make_zipf_classification(**args, random_state=6)
    assert X4.nnz != X1.nnz or not np.array_equal(X4.indices, X1.indices)


def test_noise_changes_labels_only():
    args = dict(n_samples=2_000, n_features=1_000, nnz_per_row=15, random_state=4)
    X0, y0 = make_zipf_classification(**args, noise=0.0)
    X1, y1 = make_zipf_classification(**args, noise=1.0)
    _same(X0, y0 * 0, X1, y1 * 0)  # same X
    flipped = np.mean(y0 != y1)
    assert 0.0 < flipped < 0.5


def test_zipf_frequency_skew():
    n_rows, n_features, a = 2_000, 5_000, 1.1
    X, _ = make_zipf_classification(n_rows, n_features, zipf_exponent=a, random_state=0)
    df = np.bincount(X.indices, minlength=n_features)  # rows holding each feature
    order = np.argsort(-df, kind="stable")
    ranked = df[order].astype(float)
    # expected rows holding the feature of each rank, 60 draws a row (see the test above)
    expected = n_rows * (1.0 - (1.0 - _law(n_features, a)) ** 60)
    r = np.arange(30, 300)  # below: nearly every row holds them; above: a few rows each
    slope = np.polyfit(np.log(r), np.log(ranked[r]), 1)[0]
    slope_expected = np.polyfit(np.log(r), np.log(expected[r]), 1)[0]
    assert slope_expected < -0.8  # power-law-like (flattened by the wrapped-around tail)
    assert abs(slope - slope_expected) < 0.06, (slope, slope_expected)
    for rank in (0, 3, 30):
        assert abs(ranked[rank] - expected[rank]) < 5 * np.sqrt(expected[rank]) + 0.02 * expected[rank]
    assert ranked[:50].sum() > 0.2 * X.nnz  # 1 % of the features hold a quarter of the entries (uniform: 1 %)
    # frequent features spread over the index range (a random permutation), not packed at its start
    assert 1_000 < order[:20].mean() < 4_000, order[:20]


BAD = [
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=2.5), "n_samples"),
    (dict(n_samples=True), "n_samples"),
    (dict(n_features=-3), "n_features"),
    (dict(n_features="100"), "n_features"),
    (dict(nnz_per_row=0), "nnz_per_row"),
    (dict(nnz_per_row=101), "nnz_per_row=101 exceeds n_features=100"),
    (dict(nnz_per_row=60, zipf_exponent=3.0), "out of reach"),
    (dict(zipf_exponent=1.0), "zipf_exponent"),
    (dict(zipf_exponent=0.5), "zipf_exponent"),
    (dict(zipf_exponent=float("nan")), "zipf_exponent"),
    (dict(zipf_exponent="1.1"), "zipf_exponent"),
    (dict(noise=-0.1), "noise"),
    (dict(noise=float("inf")), "noise"),
    (dict(random_state=-1), "random_state"),
    (dict(random_state="seed"), "random_state"),
    (dict(random_state=True), "random_state"),
    (dict(index_dtype=np.float64), "index_dtype"),
    (dict(index_dtype=np.int16), "index_dtype"),
    (dict(n_samples=500_000_000, index_dtype=np.int32), "32-bit"),
]


@pytest.mark.parametrize("kwargs, match", BAD, ids=[str(k) for k, _ in BAD])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_zipf_classification(**{"n_samples": 10, "n_features": 100, "nnz_per_row": 5, **kwargs})


def test_bad_arguments_leave_a_generator_untouched():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(ValueError, match="nnz_per_row"):
        make_zipf_classification(10, 100, nnz_per_row=200, random_state=rng)
    with pytest.raises(ValueError, match="32-bit"):
        make_zipf_classification(500_000_000, 100, nnz_per_row=5, random_state=rng)
    assert rng.bit_generator.state == state
