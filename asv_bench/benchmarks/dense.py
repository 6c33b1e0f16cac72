"""Dense steps: sparseopt's kernels, against ``torch.optim`` and the memory bandwidth.

A dense step streams the parameter, the gradient and the state once, so its
speed limit is memory bandwidth: ``track_fraction_of_triad`` reports the
effective bandwidth (bytes read + written per step / time) over a STREAM
triad measured in the same process.
"""

import numpy as np

from ._common import (
    DENSE_ARRAYS_MOVED,
    OPTIMIZERS,
    dense_data,
    median_time,
    paired_ratio,
    set_parallel,
    sparseopt_optimizer,
    torch_dense_step,
    torch_threads,
    triad_bandwidth,
)


class _ThreadSetting:
    """Benchmarks that change the dense kernels' thread setting and restore it in ``teardown``.

    asv calls ``teardown`` after a ``setup`` that raised ``NotImplementedError``
    (a skipped combination, e.g. no such torch kernel) too: until ``setup``
    has changed the setting there is nothing to restore.
    """

    @staticmethod
    def restore():
        pass

    def teardown(self, *params):
        self.restore()


class DenseStep(_ThreadSetting):
    """One dense step, on one thread or split over threads (``parallel``)."""

    params = [list(OPTIMIZERS), ["float32", "float64"], [10_000, 1_000_000, 10_000_000], [False, True]]
    param_names = ["optimizer", "dtype", "size", "parallel"]
    timeout = 300

    def setup(self, optimizer, dtype, size, parallel):
        self.W, self.g = dense_data(size, np.dtype(dtype))
        self.opt = sparseopt_optimizer(optimizer, self.W)
        self.restore = set_parallel(parallel)
        self.opt.step(self.g)  # compile (or load from the cache) outside the timing

    def time_step(self, *params):
        self.opt.step(self.g)


class DenseVsTorch(_ThreadSetting):
    """torch.optim step time / sparseopt step time, both timed in turn in this process.

    ``threads``: "1" runs sparseopt's serial kernel against torch on one
    thread; "all" the parallel kernel against torch on its default threads.
    """

    params = [list(OPTIMIZERS), ["fused", "foreach"], ["1", "all"]]
    param_names = ["optimizer", "torch", "threads"]
    size = 10_000_000
    repeat = 21
    timeout = 300

    def setup(self, optimizer, impl, threads):
        self.W, self.g = dense_data(self.size, np.float32)
        self.peer = torch_dense_step(optimizer, self.W, self.g, impl)  # NotImplementedError: skipped
        self.opt = sparseopt_optimizer(optimizer, self.W)
        self.restore = set_parallel(threads == "all")
        self.opt.step(self.g)

    def track_speedup(self, optimizer, impl, threads):
        with torch_threads(1 if threads == "1" else None):
            return paired_ratio(lambda: self.opt.step(self.g), self.peer, self.repeat)

    track_speedup.unit = "x"


class DenseBandwidth(_ThreadSetting):
    """Effective bandwidth of a dense step as a fraction of a STREAM triad (float32),
    with sparseopt's serial or parallel kernel."""

    params = [list(OPTIMIZERS), [False, True]]
    param_names = ["optimizer", "parallel"]
    size = 10_000_000
    repeat = 21
    timeout = 300

    def setup(self, optimizer, parallel):
        self.W, self.g = dense_data(self.size, np.float32)
        self.opt = sparseopt_optimizer(optimizer, self.W)
        self.restore = set_parallel(parallel)
        self.opt.step(self.g)

    def track_fraction_of_triad(self, optimizer, parallel):
        t = median_time(lambda: self.opt.step(self.g), self.repeat)
        bandwidth = DENSE_ARRAYS_MOVED[optimizer] * self.W.nbytes / t
        return bandwidth / triad_bandwidth(self.W.size, np.float32, self.repeat)

    track_fraction_of_triad.unit = "fraction"
