"""Lazy sparse steps on an embedding-like table, against ``torch.optim.SparseAdam``.

The gradient names 1,000 distinct rows as 2,000 indices with repeats; the
cost of a step should depend on that, not on the table's size, and so should
the memory a step allocates (``track_step_peak_allocated``).
"""

import numpy as np

from ._common import (
    OPTIMIZERS,
    paired_ratio,
    peak_allocated,
    ratio_vs_torch,
    sparse_data,
    sparseopt_optimizer,
    torch_sparse_step,
)

N_COLS, N_TOUCHED, N_INDICES = 16, 1_000, 2_000


class _Table:
    n_cols, n_touched, n_indices = N_COLS, N_TOUCHED, N_INDICES

    def _build(self, optimizer, lazy, dtype, n_rows, n_indices=None, n_touched=None):
        n_indices = self.n_indices if n_indices is None else n_indices
        n_touched = min(self.n_touched if n_touched is None else n_touched, n_indices, n_rows)
        self.W, self.rows, self.values = sparse_data(n_rows, self.n_cols, n_touched, n_indices, np.dtype(dtype))
        self.opt = sparseopt_optimizer(optimizer, self.W, lazy=lazy)
        self.opt.step_rows(self.rows, self.values)  # compile outside the timing

    def _step(self):
        self.opt.step_rows(self.rows, self.values)


class SparseStep(_Table):
    """One ``step_rows`` (validation included) on a table of ``n_rows`` x 16."""

    params = [list(OPTIMIZERS), ["skip", "exact"], ["float32", "float64"], [10_000, 1_000_000]]
    param_names = ["optimizer", "lazy", "dtype", "n_rows"]

    def setup(self, optimizer, lazy, dtype, n_rows):
        self._build(optimizer, lazy, dtype, n_rows)

    def time_step_rows(self, *params):
        self._step()


class SparseSizeIndependence(_Table):
    """Step time on a 1,000,000-row table / on a 10,000-row table (goal: <= 1.5)."""

    params = [list(OPTIMIZERS), ["skip", "exact"]]
    param_names = ["optimizer", "lazy"]
    sizes = (10_000, 1_000_000)
    repeat = 201

    def setup(self, optimizer, lazy):
        self._build(optimizer, lazy, "float32", self.sizes[0])
        self.small = self.opt, self.rows, self.values
        self._build(optimizer, lazy, "float32", self.sizes[1])

    def track_large_over_small(self, optimizer, lazy):
        small, rows, values = self.small
        # paired_ratio(a, b) is b's time / a's: here the large table's time / the small one's
        return paired_ratio(lambda: small.step_rows(rows, values), self._step, self.repeat)

    track_large_over_small.unit = "x"


class SparseVsTorch(_Table):
    """torch step time / sparseopt step time, 1,000,000 x 16 float32 table.

    The torch gradient is an uncoalesced sparse COO tensor, coalesced inside
    every ``step`` as in training.  torch runs with its default threads and
    with one thread; the ratio is taken against the faster of the two.
    """

    params = [list(OPTIMIZERS), ["skip", "exact"], ["SparseAdam", "Adagrad"]]
    param_names = ["optimizer", "lazy", "torch"]
    n_rows = 1_000_000
    repeat = 101

    def setup(self, optimizer, lazy, peer):
        self._build(optimizer, lazy, "float32", self.n_rows)
        self.peer = torch_sparse_step(peer, self.W.copy(), self.rows, self.values)  # NotImplementedError: skipped

    def track_speedup(self, optimizer, lazy, peer):
        return ratio_vs_torch(self._step, self.peer, self.repeat)

    track_speedup.unit = "x"


class SparseMemory(_Table):
    """Memory of a sparse step: it allocates O(k * n_cols), never O(n_rows * n_cols).

    ``peakmem_step_rows`` is asv's peak RSS of the whole process (the table
    and the state included); ``track_step_peak_allocated`` the peak memory
    allocated during one step alone (NumPy and Numba, by ``tracemalloc``),
    which grows with ``n_indices`` but not with ``n_rows``.
    """

    params = [["AdaGrad", "Adam"], ["skip", "exact"], [10_000, 1_000_000], [2_000, 200_000]]
    param_names = ["optimizer", "lazy", "n_rows", "n_indices"]

    def setup(self, optimizer, lazy, n_rows, n_indices):
        self._build(optimizer, lazy, "float32", n_rows, n_indices, n_touched=n_indices // 2)

    def peakmem_step_rows(self, *params):
        self._step()

    def track_step_peak_allocated(self, *params):
        return peak_allocated(self._step)

    track_step_peak_allocated.unit = "bytes"


class SparseCatchUp(_Table):
    """``lazy="exact"``: one step on rows last touched ``lag`` steps ago (1,000,000 x 16 float32).

    Each row first replays the zero-gradient steps it missed: in closed form
    for SGD, Momentum, RMSProp (and AdaGrad, where they change nothing);
    Adam has none and replays them, its elements column-parallel, until the
    rest of their movement is below float64 resolution (a few hundred steps
    at most).  Compare with ``SparseStep.time_step_rows`` (no lag).
    """

    params = [list(OPTIMIZERS), [10, 1_000]]
    param_names = ["optimizer", "lag"]
    n_rows = 1_000_000

    def setup(self, optimizer, lag):
        self._build(optimizer, "exact", "float32", self.n_rows)
        self.lag = lag

    def time_step_rows_after_absence(self, optimizer, lag):
        self.opt.t += self.lag - 1  # as if lag - 1 steps had named other rows
        self._step()
