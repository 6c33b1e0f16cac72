"""The five optimizers: dense steps and lazy sparse row-wise steps.

Each optimizer updates one parameter array ``W`` (1-D or 2-D, C-contiguous,
float32 or float64) in place.  A gradient is either dense (an array of
``W``'s shape), or sparse by rows: ``step_rows(rows, values)`` or a
``scipy.sparse`` matrix of ``W``'s shape.  Sparse steps touch only the named
rows, in one of two modes:

``lazy="skip"``
    Rows without gradient, and their state, are left as they are
    (LazyAdam / ``torch.optim.SparseAdam`` behaviour).
``lazy="exact"``
    Each row remembers the last step it was brought up to date; when it is
    next touched (or on :meth:`Optimizer.sync`) the steps it missed are
    replayed with zero gradient, in closed form where one exists.  After
    ``sync()`` the parameters and state equal those of the dense update fed
    with zero rows, at the cost of the sparse update.

See ``SPEC.md`` for the equations; each class docstring repeats its rule.

GPU arrays (Numba device arrays, CuPy arrays, PyTorch CUDA tensors: anything
with ``__cuda_array_interface__``) are updated in place on the GPU by the
same optimizers, with the same results; see :mod:`sparseopt.cuda`.
"""

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from . import _rules as R
from ._validation import (as_array, as_rows, check_bool, check_float_array, check_hyper, check_param, check_rows,
                          replaced_array_error, sum_overflow_error)

__all__ = ["Optimizer", "SGD", "Momentum", "AdaGrad", "RMSProp", "Adam", "OPTIMIZERS"]

_LAZY_MODES = ("skip", "exact")
# the largest step count t may hold (load_state_dict, assignment): the kernels count steps in int64
_MAX_STEP = 2**62


def _device_backend(W):
    """The CUDA backend for a GPU array ``W`` (:mod:`sparseopt.cuda`); ``None`` for anything else."""
    from .cuda import backend_for  # imports numba.cuda only when W is a GPU array

    return backend_for(W)


# from this size, a state array starts half a page away from its parameter (_aligned_full_like)
_PAGE_SHIFTED_BYTES = 1 << 16


def _aligned_full_like(W, value, align=64):
    """An array like ``W`` filled with ``value``, its data starting on a cache line.

    A 16-float32 row of the state then spans one cache line instead of two:
    a sparse step fetches one line per state row, not two.

    From 64 KiB, the data also starts 2 KiB past ``W``'s cache line modulo the 4 KiB page.
    A dense step streams ``W``, the gradient and the states in step; where a state sat a few
    bytes above ``W`` in the page (NumPy's large arrays start 16 bytes into a page, an aligned
    state at its 64), the loads ahead matched the low 12 address bits of the stores behind,
    which the CPU takes for a dependency: Adam's serial step on 10M float32 took 7.3 ms there
    against 5.2 ms half a page away (5.5 ms at ``W``'s own offset; AMD EPYC).
    """
    far = W.nbytes >= _PAGE_SHIFTED_BYTES
    buf = np.empty(W.nbytes + (4096 if far else align), dtype=np.uint8)
    if far:
        target = ((W.ctypes.data & -align) + 2048) % 4096
        start = (target - buf.ctypes.data) % 4096
    else:
        start = -buf.ctypes.data % align
    out = buf[start : start + W.nbytes].view(W.dtype).reshape(W.shape)
    out.fill(value)
    return out


def _host_copy(a):
    return a.copy() if isinstance(a, np.ndarray) else a.copy_to_host()


_KERNELS = None


def _kernels():
    """The CPU kernels module, imported on first use (``import sparseopt`` stays cheap)."""
    global _KERNELS
    if _KERNELS is None:
        from . import _kernels

        _KERNELS = _kernels
    return _KERNELS


class Optimizer:
    """Base class of the five optimizers (not used directly).

    Attributes
    ----------
    param : ndarray
        The parameter array, updated in place (for a GPU array: a Numba
        device array viewing its memory; ``state`` then holds device arrays).
        Write into it, but do not replace it or make it read-only: a step
        then raises.
    t : int
        Number of steps taken.
    lazy : {"skip", "exact"}
        How sparse steps treat rows without gradient (read-only: fixed when
        the optimizer is made, or by :meth:`load_state_dict`).
    state : dict of str to ndarray
        The optimizer's state arrays, of ``param``'s shape and dtype.  In
        ``exact`` mode rows may lag behind; call :meth:`sync` first to read
        them up to date.  Write into them (or use :meth:`load_state_dict`);
        a step raises if one was replaced by another array.
    """

    _kind = -1
    _state_names = ()
    _hyper_order = ()
    _nonneg_states = ()  # the accumulators of squared gradients (>= 0: the rules take their square roots)

    def __init__(self, W, *, lazy="skip", check_finite=False, **hyper):
        self._dev = _device_backend(W)  # None unless W is a GPU array
        W = check_param(W) if self._dev is None else self._dev.param
        lazy = _check_lazy(lazy)
        check_finite = check_bool("check_finite", check_finite)
        if check_finite and not (np.isfinite(W).all() if self._dev is None else self._dev.all_finite(W)):
            raise ValueError("W contains NaN or infinite values (check_finite=True)")
        hyper = self._check_hyper(hyper)
        self.param = W
        self._lazy = lazy
        self.check_finite = check_finite
        self._hyper = hyper
        self._t = 0
        self._rows2d = W.reshape(W.shape[0], -1)
        self._h = np.zeros(R.H_SIZE, dtype=W.dtype)
        self._fill_h()
        init = self._initial_state()
        if self._dev is not None:
            self._dev.allocate(self, init)
            return
        self.state = {name: _aligned_full_like(W, init) for name in self._state_names}
        self._last = np.zeros(W.shape[0] if lazy == "exact" else 1, dtype=np.int64)
        self._bind()

    def _bind(self):
        """Remember the arrays the kernels' views were made from (see :meth:`_check_arrays`)."""
        self._own = (self.param, *(self.state[n] for n in self._state_names))
        self._own_named = tuple(zip(self._state_names, self._own[1:]))

    def _check_arrays(self, state=True):
        """Raise unless ``param`` and (if ``state``) ``state`` are still the optimizer's own arrays, and
        ``param`` writable.

        The kernels write through views made when the arrays were allocated,
        sized by them, and do not check bounds: an array put in their place
        would be written out of bounds, and a parameter made read-only since
        written in spite of its flag.  (About 0.2 us: it runs on every step.)
        """
        W = self.param
        if W is self._own[0] and W.flags.writeable:
            if not state:
                return
            current = self.state
            for name, a in self._own_named:
                if current.get(name) is not a:
                    break
            else:
                return
        if W is not self._own[0]:
            raise replaced_array_error(self, "param")
        if not W.flags.writeable:
            raise ValueError("param has been made read-only; the optimizer updates it in place")
        raise replaced_array_error(self, "state")

    # -- copying -------------------------------------------------------------
    def __getstate__(self):
        d = dict(self.__dict__)
        if d.get("_dev") is None:  # views of param and state: rebuilt from the copies, not copied apart from them
            for k in ("_rows2d", "_row_state_views", "_own", "_own_named"):
                d.pop(k, None)
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        if self._dev is None:
            self._rows2d = self.param.reshape(self.param.shape[0], -1)
            self._bind()

    @property
    def t(self):
        """Steps taken so far (Adam's bias corrections and exact mode's catch-up count from it)."""
        return self._t

    @t.setter
    def t(self, value):
        value = _check_step(value)
        if self._lazy == "exact":
            reached = self._dev.max_last() if self._dev is not None else (int(self._last.max()) if self._last.size else 0)
            if value < reached:
                raise ValueError(f"t={value} is below the step some rows are already at ({reached})")
        self._t = value

    @property
    def check_finite(self):
        """Whether each step checks its gradient values for NaN and infinity (a bool)."""
        return self._check_finite

    @check_finite.setter
    def check_finite(self, value):
        self._check_finite = check_bool("check_finite", value)

    @property
    def lazy(self):
        return self._lazy

    @lazy.setter
    def lazy(self, value):
        # the row counters of exact mode are allocated for it: a skip-mode
        # optimizer switched to exact would write them out of bounds
        raise AttributeError(
            f"{type(self).__name__}.lazy is fixed when the optimizer is made; "
            "load a state_dict with another 'lazy' (or make a new optimizer) to change it"
        )

    # -- hyperparameters ---------------------------------------------------
    @classmethod
    def _check_hyper(cls, hyper):
        raise NotImplementedError

    def _initial_state(self):
        return 0.0

    def _fill_h(self):
        """Write the hyperparameters into the array the kernels read."""
        hp = self.hyperparams
        h = np.zeros(R.H_SIZE)
        h[R.LR] = hp["lr"]
        h[R.EPS] = hp.get("eps", 0.0)
        h[R.WD] = hp["weight_decay"]
        self._fill_h_extra(h)
        h[R.AC] = 1.0 - h[R.A]
        h[R.BC] = 1.0 - h[R.B]
        self._h[:] = h

    def _fill_h_extra(self, h):
        pass

    def _set_step(self, t):
        """Write the step-dependent entries of ``h`` for step ``t``."""

    @property
    def hyperparams(self):
        """The hyperparameters, read-only: change ``lr`` through :attr:`lr`, the others with
        :meth:`load_state_dict` or a new optimizer (each is checked when it is set)."""
        return MappingProxyType(self._hyper)

    @property
    def lr(self):
        """Learning rate; may be changed between steps (for schedules)."""
        return self._hyper["lr"]

    @lr.setter
    def lr(self, value):
        self._hyper["lr"] = check_hyper("lr", value, low=0.0, low_open=True)
        self._fill_h()

    # -- stepping ----------------------------------------------------------
    def _state_args(self, view):
        """The two state slots the kernels take, as views shaped by ``view``."""
        arrays = [view(self.state[name]) for name in self._state_names]
        if not arrays:
            arrays = [view(self.param)]
        if len(arrays) == 1:
            arrays.append(arrays[0])
        return arrays

    def _row_state(self):
        """The two state slots as (n_rows, n_cols) views (cached: the state arrays are never replaced)."""
        views = self.__dict__.get("_row_state_views")
        if views is None:
            views = self._row_state_views = self._state_args(lambda a: a.reshape(a.shape[0], -1))
        return views

    def step(self, grad):
        """Take one step with a dense or ``scipy.sparse`` gradient.

        Parameters
        ----------
        grad : ndarray or scipy.sparse matrix
            Dense: an array of ``param``'s shape; every row is updated.
            Sparse: a matrix of ``param``'s shape (``(n, 1)`` or ``(n,)``
            for a 1-D parameter); the rows holding at least one stored entry
            are updated as by :meth:`step_rows`.
        """
        if self._dev is None:
            self._check_arrays()
        if sp.issparse(grad):
            rows, values = self._sparse_to_rows(grad)
            self._step_rows(rows, values)
            return
        if self._dev is not None:
            return self._dev.step(self, grad)
        g = check_float_array(grad, self.param.dtype, self.param.shape, "grad", self.check_finite)
        if self._lazy == "exact":
            self.sync()
        t = self.t + 1
        self._set_step(t)
        K = _kernels()
        flat = self.param.reshape(-1)
        run = K.dense_step_parallel if flat.size >= K.PARALLEL_MIN_SIZE else K.dense_step_serial
        s1, s2 = self._state_args(lambda a: a.reshape(-1))
        run(self._kind, flat, g.reshape(-1), s1, s2, self._h)
        if self._lazy == "exact":
            self._last[:] = t
        self._t = t

    def step_rows(self, rows, values):
        """Take one step with a gradient that is zero outside ``rows``.

        Parameters
        ----------
        rows : array_like of int, shape (k,)
            Row indices in ``[0, n_rows)``; may be unsorted and repeated
            (repeated rows are summed).  ``k = 0`` is a valid (empty) step.
        values : array_like of float, shape (k,) or (k, n_cols)
            Gradient rows: shape ``(k,)`` for a 1-D parameter, ``(k, n_cols)``
            for a 2-D one.

        Raises
        ------
        IndexError
            A row outside ``[0, n_rows)``.
        ValueError
            Shapes that do not match; with ``check_finite``, NaN or infinite
            values, or repeated rows summing to infinity; a ``param`` made
            read-only.
        RuntimeError
            ``param`` or a ``state`` array replaced by another array.

        Nothing is changed when a step raises.
        """
        if self._dev is not None:  # rows and values may be on the GPU
            return self._dev.step_rows(self, rows, values)
        self._check_arrays()
        # the bounds of rows and, with check_finite, the values are checked by
        # the kernel, in its first pass (before it writes anything)
        idx = as_rows(rows)
        k = idx.shape[0]
        W = self.param
        values_arr = values if type(values) is np.ndarray else as_array(values, "values")
        if values_arr.ndim == 0 or values_arr.shape[0] != k:
            raise ValueError(
                f"rows and values do not match: {k} rows but values has shape {values_arr.shape}"
            )
        ready = values_arr.dtype is W.dtype and values_arr.flags.c_contiguous  # the common case
        if not ready or values_arr.shape[1:] != W.shape[1:]:
            values_arr = check_float_array(values_arr, W.dtype, (k,) + W.shape[1:], "values", False)
        self._step_rows(idx, values_arr.reshape(k, self._rows2d.shape[1]), self.check_finite, rows)

    def _step_rows(self, rows, values2d, check_finite=False, rows_in=None):
        """Step on validated ``rows`` (bounds aside: the kernel checks them) and ``values2d``.

        ``rows_in``: the caller's rows, for the error message of a bad row.
        """
        if self._dev is not None:
            return self._dev.step_rows_checked(self, rows, values2d)
        t = self.t + 1
        self._set_step(t)
        s1, s2 = self._row_state()
        status = _kernels().rows_step(
            self._kind, self._rows2d, rows, values2d, s1, s2, self._h, self._lazy == "exact", self._last, t,
            check_finite,
        )
        if status:
            self._set_step(self.t)
            self._raise_bad_step(status, rows if rows_in is None else rows_in)
        self._t = t

    def _raise_bad_step(self, status, rows):
        """Raise the error ``rows_step`` reported by ``status`` (it wrote nothing)."""
        K = _kernels()
        if status == K.BAD_ROW:
            check_rows(rows, self.param.shape[0])
        elif status == K.NOT_FINITE:
            raise ValueError("values contains NaN or infinite values")
        elif status == K.SUM_OVERFLOW:
            raise sum_overflow_error("values", self.param.dtype)
        raise RuntimeError(f"sparseopt: rows_step failed with status {status}")  # pragma: no cover

    def _sparse_to_rows(self, grad):
        W = self.param
        shape = tuple(grad.shape)
        ok = shape == W.shape or (W.ndim == 1 and shape == (W.shape[0], 1))
        if not ok:
            raise ValueError(f"sparse grad has shape {shape}, expected {W.shape}")
        if grad.dtype.kind != "f":
            raise TypeError(f"sparse grad must hold floating-point values, got dtype {grad.dtype}")
        coo = _checked_coo(grad)
        data = coo.data
        row = coo.coords[0]
        col = coo.coords[1] if len(coo.coords) > 1 else np.zeros_like(row)
        touched, where = np.unique(row, return_inverse=True)
        values = np.zeros((touched.shape[0], self._rows2d.shape[1]), dtype=W.dtype)
        np.add.at(values, (where, col), data)
        # check the sums: a NaN or infinity in data makes one, and so do finite repeated entries overflowing
        if self.check_finite and not np.isfinite(values).all():
            if not np.isfinite(data).all():
                raise ValueError("grad contains NaN or infinite values")
            raise sum_overflow_error("grad", W.dtype, "entries")
        return touched.astype(np.int64), values

    def sync(self, rows=None):
        """Bring rows up to step :attr:`t` (``lazy="exact"``; a no-op for ``"skip"``).

        Parameters
        ----------
        rows : array_like of int, optional
            Catch up only these rows (O(len(rows) * n_cols)), e.g. the rows a
            forward pass is about to read, so that it sees the values the
            dense update would hold.  Default: every row.
        """
        if self._dev is not None:  # rows may be on the GPU; the device backend catches up every row
            return self._dev.sync(self, rows)
        if self._lazy != "exact" or self.t == 0:  # nothing to write
            if rows is not None:
                check_rows(rows, self.param.shape[0])
            return
        self._check_arrays()
        s1, s2 = self._row_state()
        K = _kernels()
        if rows is not None:
            rows = check_rows(rows, self.param.shape[0])
            K.sync_some_rows(self._kind, self._rows2d, rows, s1, s2, self._h, self._last, self.t)
        elif self._catch_up_is_identity():
            self._last.fill(self.t)  # zero-gradient steps change nothing: only the counters move
        else:
            K.sync_rows(self._kind, self._rows2d, s1, s2, self._h, self._last, self.t)

    def _catch_up_is_identity(self):
        """Whether steps with zero gradient leave parameters and state unchanged."""
        return self._kind in (R.SGD, R.ADAGRAD) and self.hyperparams["weight_decay"] == 0

    # -- state -------------------------------------------------------------
    def state_dict(self):
        """Return the optimizer's state as plain numbers and NumPy arrays.

        In ``exact`` mode every row is first brought up to date (:meth:`sync`).
        The result can be saved with ``np.savez(file, **d)`` and restored with
        ``load_state_dict(dict(np.load(file)))``.
        """
        self.sync()
        d = {"optimizer": type(self).__name__, "lazy": self.lazy, "t": self.t}
        d.update(self.hyperparams)
        for name in self._state_names:
            d[name] = _host_copy(self.state[name])
        if self._lazy == "exact":
            d["last"] = _host_copy(self._last)
        return d

    def load_state_dict(self, state_dict):
        """Restore a state saved by :meth:`state_dict` (checks everything first).

        The hyperparameters, step count, lazy mode and state arrays are taken
        from ``state_dict``; the parameter values are not part of it.  State
        arrays must match ``param``'s shape and dtype; accumulators of squared
        gradients (``G``, ``E``, Adam's ``v``) must not be negative, and with
        ``check_finite`` no state may hold NaN or infinity.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping (as state_dict() returns), got {type(state_dict).__name__}")
        # a replaced state is what loading mends (the values go into the optimizer's own arrays);
        # a replaced or read-only param is not
        if self._dev is None:
            self._check_arrays(state=False)
        elif self.param is not self._dev.param:
            self._dev.check_arrays(self)
        d = {k: (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v) for k, v in state_dict.items()}
        name = d.get("optimizer", type(self).__name__)
        if str(name) != type(self).__name__:
            raise ValueError(f"state_dict is for {name}, not {type(self).__name__}")
        missing = [k for k in ("lazy", "t", *self._hyper_order, *self._state_names) if k not in d]
        if missing:
            raise KeyError(f"state_dict lacks {missing}")
        lazy = _check_lazy(d["lazy"])
        hyper = self._check_hyper({k: d[k] for k in self._hyper_order})
        t = _check_step(d["t"])
        W = self.param
        states = {}
        for s in self._state_names:
            arr = np.asarray(d[s])
            if arr.shape != W.shape or arr.dtype != W.dtype:
                raise ValueError(
                    f"state {s!r} has shape {arr.shape} and dtype {arr.dtype}, expected {W.shape} and {W.dtype}"
                )
            if self.check_finite and not np.isfinite(arr).all():
                raise ValueError(f"state {s!r} contains NaN or infinite values")
            if s in self._nonneg_states and (arr < 0).any():
                raise ValueError(f"state {s!r} holds negative values; it is a sum of squares (>= 0)")
            states[s] = arr
        if lazy == "exact":
            if "last" not in d:
                raise KeyError("state_dict with lazy='exact' lacks 'last'")
            last = np.asarray(d["last"])
            if last.shape != (W.shape[0],) or last.dtype.kind not in "iu":
                raise ValueError(f"'last' must be an integer array of shape {(W.shape[0],)}, got {last.shape}")
            if last.size and (last.min() < 0 or last.max() > t):
                raise ValueError("'last' holds steps outside [0, t]")
            last = last.astype(np.int64)
        else:
            last = np.zeros(1, dtype=np.int64)
        # everything checked: commit
        self._hyper = hyper
        self._lazy = lazy
        self._t = t
        if self._dev is not None:
            self._dev.load_state(self, states, last)
        else:
            own = dict(self._own_named)
            for s, arr in states.items():
                np.copyto(own[s], arr)
            self.state = own  # the optimizer's own arrays again, if they were replaced
            self._last = last.copy()
        self._fill_h()

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{type(self).__name__}(shape={self.param.shape}, dtype={self.param.dtype}, {hp}, lazy={self.lazy!r}, t={self.t})"


def _check_step(t):
    """``t`` as an int step count: a non-negative integer of at most ``2**62``, else ``ValueError``."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"t must be a non-negative integer, got {t!r}")
    if t > _MAX_STEP:
        raise ValueError(f"t must be at most 2**62, got {t!r}")
    return int(t)


def _check_lazy(lazy):
    if not isinstance(lazy, str) or lazy not in _LAZY_MODES:
        raise ValueError(f"lazy must be one of {_LAZY_MODES}, got {lazy!r}")
    return str(lazy)


def _checked_coo(grad):
    """``grad`` (a ``scipy.sparse`` matrix or array) in COO form, its structure checked.

    scipy checks a matrix's structure when it is built, not when its
    attributes are changed afterwards, and ``tocoo`` trusts it: a decreasing
    ``indptr`` puts entries in the wrong rows, and a COO matrix's
    coordinates are used as they are (a negative column would wrap around).
    Nothing of ``grad`` is changed.
    """
    try:
        if hasattr(grad, "indptr"):  # CSR, CSC, BSR: check a copy (check_format may rewrite what it checks)
            grad = grad.copy()
            grad.check_format(full_check=True)
        coo = grad.tocoo()
    except ValueError as exc:
        raise ValueError(f"sparse grad is malformed: {exc}") from None
    data = coo.data
    if data.ndim != 1 or any(np.ndim(c) != 1 or len(c) != data.shape[0] for c in coo.coords):
        raise ValueError("sparse grad is malformed: its coordinate and data arrays differ in length")
    if data.size:
        for axis, (c, n) in enumerate(zip(coo.coords, coo.shape)):
            lo, hi = c.min(), c.max()
            if lo < 0 or hi >= n:
                raise IndexError(
                    f"sparse grad is malformed: {('row', 'column')[axis]} index {lo if lo < 0 else hi} "
                    f"is outside [0, {n})"
                )
    return coo


def _common(hyper):
    return {
        "lr": check_hyper("lr", hyper["lr"], low=0.0, low_open=True),
        "weight_decay": check_hyper("weight_decay", hyper["weight_decay"], low=0.0),
    }


def _unit(name, value):
    return check_hyper(name, value, low=0.0, high=1.0, high_open=True)


def _eps(value):
    return check_hyper("eps", value, low=0.0, low_open=True)


class SGD(Optimizer):
    r"""Stochastic gradient descent.

    .. math:: \theta \leftarrow \theta - \eta\,(g + \lambda\theta)

    Parameters
    ----------
    W : ndarray
        Parameter (1-D or 2-D, C-contiguous, float32/float64), updated in place.
    lr : float, default 0.01
        Learning rate :math:`\eta > 0`.
    weight_decay : float, default 0
        Coupled L2 coefficient :math:`\lambda \ge 0` (added to the gradient).
    lazy : {"skip", "exact"}, default "skip"
        Sparse-step mode.  For SGD they agree unless ``weight_decay > 0``,
        where ``exact`` applies the missed decay :math:`(1-\eta\lambda)^k`.
    check_finite : bool, default False
        Reject gradients holding NaN or infinity (costs one pass), or whose
        repeated rows (entries of a sparse grad) sum to infinity, and a
        parameter holding NaN or infinity when the optimizer is made.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseopt.optim import SGD
    >>> W = np.ones((4, 2))
    >>> opt = SGD(W, lr=0.5)
    >>> opt.step_rows([1], np.ones((1, 2)))
    >>> W[:2]
    array([[1. , 1. ],
           [0.5, 0.5]])
    """

    _kind = R.SGD
    _hyper_order = ("lr", "weight_decay")

    def __init__(self, W, lr=0.01, weight_decay=0.0, lazy="skip", check_finite=False):
        super().__init__(W, lr=lr, weight_decay=weight_decay, lazy=lazy, check_finite=check_finite)

    @classmethod
    def _check_hyper(cls, hyper):
        return _common(hyper)


class Momentum(Optimizer):
    r"""SGD with (heavy-ball or Nesterov) momentum.

    .. math::
        v \leftarrow \gamma v + \eta g, \qquad
        \theta \leftarrow \theta - v
        \quad(\text{nesterov: } \theta \leftarrow \theta - (\gamma v + \eta g))

    with :math:`g` including weight decay.  The velocity carries the
    learning rate, so ``v`` equals ``lr`` times PyTorch's momentum buffer when
    ``lr`` is constant.  State: ``"v"``.

    Parameters
    ----------
    W : ndarray
        Parameter, updated in place.
    lr : float, default 0.01
    momentum : float, default 0.9
        :math:`0 \le \gamma < 1`.
    nesterov : bool, default False
    weight_decay : float, default 0
    lazy : {"skip", "exact"}, default "skip"
        ``exact`` replays missed steps in closed form (a geometric series;
        a 2x2 matrix power with weight decay).
    check_finite : bool, default False
    """

    _kind = R.MOMENTUM
    _state_names = ("v",)
    _hyper_order = ("lr", "momentum", "nesterov", "weight_decay")

    def __init__(self, W, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0, lazy="skip", check_finite=False):
        super().__init__(
            W, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
            lazy=lazy, check_finite=check_finite,
        )

    @classmethod
    def _check_hyper(cls, hyper):
        out = _common(hyper)
        out["momentum"] = _unit("momentum", hyper["momentum"])
        out["nesterov"] = check_bool("nesterov", hyper["nesterov"])
        return out

    def _fill_h_extra(self, h):
        h[R.A] = self.hyperparams["momentum"]
        h[R.B] = 1.0 if self.hyperparams["nesterov"] else 0.0


class AdaGrad(Optimizer):
    r"""AdaGrad: per-coordinate step sizes from the sum of squared gradients.

    .. math::
        G \leftarrow G + g^2, \qquad
        \theta \leftarrow \theta - \eta\, g / \sqrt{G + \epsilon}

    :math:`\epsilon` sits inside the square root and :math:`G` is updated
    before dividing (PyTorch adds :math:`\epsilon` outside).  Rare
    coordinates keep a large step size, frequent ones a small one.
    State: ``"G"``.

    Parameters
    ----------
    W : ndarray
        Parameter, updated in place.
    lr : float, default 0.01
    eps : float, default 1e-8
    initial_accumulator_value : float, default 0
        Starting value of :math:`G` (:math:`\ge 0`).
    weight_decay : float, default 0
    lazy : {"skip", "exact"}, default "skip"
        Without weight decay both modes agree (a zero gradient changes
        nothing); with it, ``exact`` replays the missed decay steps.
    check_finite : bool, default False
    """

    _kind = R.ADAGRAD
    _state_names = ("G",)
    _nonneg_states = ("G",)
    _hyper_order = ("lr", "eps", "initial_accumulator_value", "weight_decay")

    def __init__(self, W, lr=0.01, eps=1e-8, initial_accumulator_value=0.0, weight_decay=0.0,
                 lazy="skip", check_finite=False):
        super().__init__(
            W, lr=lr, eps=eps, initial_accumulator_value=initial_accumulator_value,
            weight_decay=weight_decay, lazy=lazy, check_finite=check_finite,
        )

    @classmethod
    def _check_hyper(cls, hyper):
        out = _common(hyper)
        out["eps"] = _eps(hyper["eps"])
        out["initial_accumulator_value"] = check_hyper(
            "initial_accumulator_value", hyper["initial_accumulator_value"], low=0.0
        )
        return out

    def _initial_state(self):
        return self.hyperparams["initial_accumulator_value"]

    def _fill_h_extra(self, h):
        h[R.A] = self.hyperparams["initial_accumulator_value"]


class RMSProp(Optimizer):
    r"""RMSProp: step sizes from a running mean of squared gradients.

    .. math::
        E \leftarrow \rho E + (1-\rho) g^2, \qquad
        \theta \leftarrow \theta - \eta\, g / \sqrt{E + \epsilon}

    :math:`\epsilon` sits inside the square root (PyTorch: outside, and its
    default :math:`\rho` is 0.99).  State: ``"E"``.

    Parameters
    ----------
    W : ndarray
        Parameter, updated in place.
    lr : float, default 0.001
    rho : float, default 0.9
        :math:`0 \le \rho < 1`.
    eps : float, default 1e-8
    weight_decay : float, default 0
    lazy : {"skip", "exact"}, default "skip"
        ``exact`` decays the missed steps in closed form, :math:`E \leftarrow \rho^k E`.
    check_finite : bool, default False
    """

    _kind = R.RMSPROP
    _state_names = ("E",)
    _nonneg_states = ("E",)
    _hyper_order = ("lr", "rho", "eps", "weight_decay")

    def __init__(self, W, lr=0.001, rho=0.9, eps=1e-8, weight_decay=0.0, lazy="skip", check_finite=False):
        super().__init__(W, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, lazy=lazy, check_finite=check_finite)

    @classmethod
    def _check_hyper(cls, hyper):
        out = _common(hyper)
        out["rho"] = _unit("rho", hyper["rho"])
        out["eps"] = _eps(hyper["eps"])
        return out

    def _fill_h_extra(self, h):
        h[R.A] = self.hyperparams["rho"]


class Adam(Optimizer):
    r"""Adam with bias correction.

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
        \theta \leftarrow \theta - \eta\,\hat m / (\sqrt{\hat v} + \epsilon)

    with :math:`\hat m = m/(1-\beta_1^t)`, :math:`\hat v = v/(1-\beta_2^t)`
    (as ``torch.optim.Adam``; ``SparseAdam`` and Keras scale :math:`\epsilon`
    by :math:`\sqrt{1-\beta_2^t}`).  In sparse steps the bias correction uses
    the global step count.  State: ``"m"``, ``"v"``.

    Parameters
    ----------
    W : ndarray
        Parameter, updated in place.
    lr : float, default 0.001
    beta1, beta2 : float, default 0.9, 0.999
        In :math:`[0, 1)`.
    eps : float, default 1e-8
    weight_decay : float, default 0
    lazy : {"skip", "exact"}, default "skip"
        ``skip`` is LazyAdam; ``exact`` replays the missed zero-gradient
        steps (a short loop: the moments decay geometrically, and the loop
        stops once the remaining movement is below float64 resolution).
    check_finite : bool, default False
    """

    _kind = R.ADAM
    _state_names = ("m", "v")
    _nonneg_states = ("v",)
    _hyper_order = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, W, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 lazy="skip", check_finite=False):
        super().__init__(
            W, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
            lazy=lazy, check_finite=check_finite,
        )

    @classmethod
    def _check_hyper(cls, hyper):
        out = _common(hyper)
        out["beta1"] = _unit("beta1", hyper["beta1"])
        out["beta2"] = _unit("beta2", hyper["beta2"])
        out["eps"] = _eps(hyper["eps"])
        return out

    def _fill_h_extra(self, h):
        h[R.A] = self.hyperparams["beta1"]
        h[R.B] = self.hyperparams["beta2"]

    def _set_step(self, t):
        hp = self.hyperparams
        self._h[R.C1], self._h[R.C2] = R.adam_factors(hp["beta1"] ** t, hp["beta2"] ** t)


#: The optimizers by the lower-case names the estimators and the command line use.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam}
