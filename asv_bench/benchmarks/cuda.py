"""GPU steps (``sparseopt.cuda``, numba-cuda): dense and lazy sparse, against
``torch.optim`` on the same GPU.

Skipped without numba-cuda and a GPU.  Numba's CUDA simulator runs the same
code but its timings mean nothing, so it is refused unless a caller sets
``allow_simulator`` (the suite's own smoke test does, on tiny sizes).
"""

import numpy as np

from ._common import OPTIMIZERS, dense_data, paired_ratio, sparse_data, sparseopt_optimizer


def _cuda(allow_simulator):
    try:
        from sparseopt import cuda as sc
    except ImportError as exc:
        raise NotImplementedError(f"sparseopt.cuda is not importable: {exc}")
    if not sc.is_available():
        raise NotImplementedError("no numba-cuda or no GPU")
    if sc.simulator_enabled() and not allow_simulator:
        raise NotImplementedError("Numba's CUDA simulator: timings would mean nothing")
    from numba import cuda

    return cuda


class _Gpu:
    allow_simulator = False

    def _device(self):
        self.cuda = _cuda(self.allow_simulator)
        return self.cuda


class CudaDenseStep(_Gpu):
    """One dense step on the GPU (float32), synchronised."""

    params = [list(OPTIMIZERS), [1_000_000, 10_000_000]]
    param_names = ["optimizer", "size"]

    def setup(self, optimizer, size):
        cuda = self._device()
        W, g = dense_data(size, np.float32)
        self.W = cuda.to_device(W)
        self.g = cuda.to_device(g)
        self.opt = sparseopt_optimizer(optimizer, self.W)
        self.time_step(optimizer, size)  # compile outside the timing

    def time_step(self, *params):
        self.opt.step(self.g)
        self.cuda.synchronize()


class CudaSparseStep(_Gpu):
    """One ``step_rows`` on the GPU: 1,000 rows of a 1,000,000 x 16 table named by 2,000 indices."""

    params = [list(OPTIMIZERS), ["skip", "exact"]]
    param_names = ["optimizer", "lazy"]
    n_rows, n_touched, n_indices = 1_000_000, 1_000, 2_000

    def setup(self, optimizer, lazy):
        cuda = self._device()
        W, rows, values = sparse_data(self.n_rows, 16, self.n_touched, self.n_indices, np.float32)
        self.W = cuda.to_device(W)
        self.rows = cuda.to_device(rows)
        self.values = cuda.to_device(values)
        self.opt = sparseopt_optimizer(optimizer, self.W, lazy=lazy)
        self.time_step_rows(optimizer, lazy)

    def time_step_rows(self, *params):
        self.opt.step_rows(self.rows, self.values)
        self.cuda.synchronize()


class CudaDenseVsTorch(_Gpu):
    """torch.optim (CUDA, ``fused=True``) step time / sparseopt's, 10M float32 on the same GPU."""

    params = [["SGD", "Momentum", "AdaGrad", "Adam"]]
    param_names = ["optimizer"]
    size = 10_000_000
    repeat = 51

    def setup(self, optimizer):
        self._device()
        try:
            import torch
        except ImportError:
            raise NotImplementedError("PyTorch is not installed")
        if not torch.cuda.is_available():
            raise NotImplementedError("this PyTorch has no CUDA")
        from ._common import _TORCH

        W, g = dense_data(self.size, np.float32)
        self.W = torch.from_numpy(W).cuda()
        self.g = torch.from_numpy(g).cuda()
        self.opt = sparseopt_optimizer(optimizer, self.W)  # updates the torch tensor in place
        cls, kwargs = _TORCH[optimizer]
        p = torch.nn.Parameter(self.W.clone())
        p.grad = self.g.clone()
        try:
            self.peer_opt = getattr(torch.optim, cls)([p], **kwargs, fused=True)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise NotImplementedError(f"no fused CUDA torch.optim.{cls}: {exc}")
        self.sync = torch.cuda.synchronize
        self._ours()
        self._peer()

    def _ours(self):
        self.opt.step(self.g)
        self.sync()

    def _peer(self):
        self.peer_opt.step()
        self.sync()

    def track_speedup(self, optimizer):
        return paired_ratio(self._ours, self._peer, self.repeat)

    track_speedup.unit = "x"
