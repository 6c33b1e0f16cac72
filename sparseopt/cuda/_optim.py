"""The CUDA backend of :mod:`sparseopt.optim`.

An optimizer built on a GPU array keeps a :class:`DeviceBackend` in its
``_dev`` attribute and routes ``step``, ``step_rows``, ``sync`` and
``load_state_dict`` through it.  Its ``param`` is then a Numba device array
viewing the caller's memory (no copy), its ``state`` and ``_last`` are Numba
device arrays, and the hyperparameters travel to each launch as a tuple of
scalars.

The views the kernels take (the parameter and state as ``(1, size)`` and
``(n_rows, n_cols)``) are made once, and sparse steps reuse device scratch
buffers that grow as needed: a step allocates no device memory and builds
few Python objects, since launch overhead, not memory bandwidth, bounds a
step of up to tens of millions of parameters on a GPU.

Every input is checked before the first kernel that writes the parameter,
state or row counters runs (before any, but those filling scratch memory):
host inputs with :mod:`sparseopt._validation`, GPU inputs on their shape and
dtype and, for row indices (always) and values (``check_finite=True``: the
sums of repeated rows, made in scratch memory), by a read-only reduction
kernel whose result is copied back before the update.
Each update also checks, on the host, that ``param`` and ``state`` are still
the arrays the kernels' views were made from, and in ``exact`` mode that
``t`` is not below the largest row counter (which the backend tracks on the
host, so the check reads nothing back from the GPU).  An optimizer on a GPU
array cannot be copied or pickled; its ``state_dict()`` can.
"""

import ctypes

import numpy as np
from numba import cuda

from .._validation import as_array, check_float_array, check_rows, replaced_array_error, sum_overflow_error
from . import _kernels as K
from . import is_device_array, simulator_enabled

_INT64 = np.iinfo(np.int64)


def _simulated_view(cai):
    """The simulator's device array over the host memory a ``__cuda_array_interface__`` names.

    The simulator has no ``cuda.as_cuda_array``; its "device" memory is host
    memory, so this view shares memory with the exporter just as
    ``as_cuda_array`` does on a GPU.
    """
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    dtype = np.dtype(cai["typestr"])
    shape = tuple(cai["shape"])
    strides = cai.get("strides")
    ptr = cai["data"][0]
    if ptr == 0 or 0 in shape:
        return FakeCUDAArray(np.empty(shape, dtype))
    if strides is None:  # C-contiguous
        span = int(np.prod(shape)) * dtype.itemsize
    else:
        span = sum((n - 1) * s for n, s in zip(shape, strides)) + dtype.itemsize
    buf = (ctypes.c_char * span).from_address(ptr)
    return FakeCUDAArray(np.ndarray(shape, dtype, buffer=buf, strides=strides))


def as_device_array(obj, name="array"):
    """A Numba device array sharing ``obj``'s memory, or ``None`` when ``obj`` is not on the GPU.

    Raises ``ValueError`` for a non-empty array whose ``__cuda_array_interface__``
    names no memory (a null data pointer): there is nothing to read or update.
    """
    if not is_device_array(obj):
        return None
    if getattr(obj, "__cuda_ndarray__", False):  # a Numba (or simulator) device array
        return obj
    if getattr(obj, "requires_grad", False) and hasattr(obj, "detach"):
        obj = obj.detach()  # a torch Parameter: the same memory, outside autograd
    cai = obj.__cuda_array_interface__
    if cai["data"][0] == 0 and 0 not in tuple(cai["shape"]):
        raise ValueError(
            f"{name} is a GPU array of shape {tuple(cai['shape'])} with a null data pointer "
            "(its __cuda_array_interface__ names no memory)"
        )
    if simulator_enabled():
        return _simulated_view(cai)
    # CUDA Array Interface v3: the producer names the stream its pending work is on.  Numba's
    # kernels run on the legacy default stream (1), which already waits for that work when the
    # producer used it too (torch's and CuPy's default): then no host-blocking synchronisation.
    sync = cai.get("stream") not in (None, 1)
    return cuda.from_cuda_array_interface(cai, owner=obj, sync=sync)


def _cai_key(obj):
    """What identifies the GPU memory a foreign array (torch, CuPy) names, or ``None``.

    ``(pointer, shape, strides, typestr)``: two inputs with the same key are
    the same view of the same memory, so the Numba view made for the first
    serves the second (a training loop passes the same ``.grad`` at every
    step).  ``None`` for Numba's own arrays, host arrays, tensors that need
    ``detach()`` and producers on a stream that needs a synchronisation:
    those are wrapped every time.  Only the view is reused, never a check of
    the values: contents are checked at every step.
    """
    if getattr(obj, "__cuda_ndarray__", False) or getattr(obj, "requires_grad", False):
        return None
    try:
        cai = obj.__cuda_array_interface__
    except (AttributeError, RuntimeError):
        return None
    if cai.get("stream") not in (None, 1):
        return None
    strides = cai.get("strides")
    return (cai["data"][0], tuple(cai["shape"]), None if strides is None else tuple(strides), cai["typestr"])


def _is_read_only(obj):
    if getattr(obj, "__cuda_ndarray__", False):
        return False
    if getattr(obj, "requires_grad", False) and hasattr(obj, "detach"):
        obj = obj.detach()
    cai = getattr(obj, "__cuda_array_interface__", None)
    return bool(cai and cai.get("data", (0, False))[1])


class DeviceBackend:
    """GPU storage and kernel launches of one optimizer (see the module docstring)."""

    def __init__(self, W, name="W"):
        d = as_device_array(W, name)
        dtype = np.dtype(d.dtype)
        shape = tuple(d.shape)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must have dtype float32 or float64, got {dtype}")
        if len(shape) not in (1, 2):
            raise ValueError(f"{name} must be 1-D or 2-D, got {len(shape)}-D with shape {shape}")
        if d.size == 0:
            raise ValueError(f"{name} is empty (shape {shape}): nothing to optimize")
        if not d.is_c_contiguous():
            raise ValueError(f"{name} must be C-contiguous (it is updated in place); pass a contiguous GPU array")
        if _is_read_only(W):
            raise ValueError(f"{name} is read-only; the optimizer updates it in place")
        self.param = d
        self.dtype = dtype
        self._slot = None  # int32 (n_rows,) scratch of sparse steps, allocated on first use
        self._scratch = {}  # name -> 1-D device buffer, grown on demand (see _buffer)
        self._views = {}  # name -> ((shape, dtype), the view of that scratch buffer last handed out)
        self._inputs = {}  # name -> (_cai_key, checked view) of the last foreign input of that name
        self._bounds_init = np.array([_INT64.max, _INT64.min], dtype=np.int64)
        self._own = ()  # (name, state array) the kernels' views were made from (see check_arrays)
        self._last_max = 0  # the largest entry of the optimizer's ``_last``, tracked on the host

    def __reduce_ex__(self, protocol):
        # the parameter and state are GPU memory, and the kernels' views of them would be
        # copied apart from them (a copy whose steps never reach its own param)
        raise TypeError(
            "an optimizer on a GPU array cannot be copied or pickled: save its state_dict() and load it "
            "into an optimizer made on a copy of the parameter"
        )

    def check_arrays(self, opt):
        """Raise unless ``opt.param`` and ``opt.state`` are still the arrays the kernels' views were made from.

        The kernels write through those views: a replaced array would be
        ignored by every step (and a shorter one would not be what they write).
        """
        if opt.param is not self.param:
            raise replaced_array_error(opt, "param")
        state = opt.state
        for name, a in self._own:
            if not isinstance(state, dict) or state.get(name) is not a:
                raise replaced_array_error(opt, "state")

    def max_last(self):
        """The largest step a row of the optimizer has been brought up to (``lazy="exact"``; 0 for ``"skip"``).

        Known on the host, without reading ``_last`` back: ``t`` may not be set below it.
        """
        return self._last_max

    def _check_ready(self, opt):
        """Raise, before anything is written, if ``opt``'s arrays were replaced or its ``t`` set below
        a step some rows are already at (their catch-up would run backwards)."""
        self.check_arrays(opt)
        if opt.t < self._last_max:
            raise ValueError(
                f"t={opt.t} is below the step some rows are already at ({self._last_max}); "
                "set t to at least that (or load a state_dict)"
            )

    # -- storage ------------------------------------------------------------
    def _full(self, shape, value, dtype):
        a = cuda.device_array(shape, dtype=dtype)
        size = int(np.prod(shape))
        K.launch(K.fill, size, a.reshape(size), np.dtype(dtype).type(value))
        return a

    def allocate(self, opt, init):
        """Give ``opt`` its 2-D view, state arrays and ``last`` on the device."""
        p = self.param
        n_rows = p.shape[0]
        opt._rows2d = p.reshape(n_rows, p.size // n_rows)
        opt.state = {name: self._full(p.shape, init, self.dtype) for name in opt._state_names}
        opt._last = self._full((n_rows if opt.lazy == "exact" else 1,), 0, np.int64)
        self._own = tuple(opt.state.items())
        self._last_max = 0
        n, n_cols = p.size, p.size // n_rows
        # the kernels' views, made once (each view is a Python object, rebuilt at every launch otherwise)
        self._flat = (self.param.reshape(1, n),) + tuple(self._slots(opt, (1, n)))
        self._rows = (opt._rows2d,) + tuple(self._slots(opt, (n_rows, n_cols)))

    def _slots(self, opt, shape):
        arrays = [opt.state[name].reshape(*shape) for name in opt._state_names]
        if not arrays:
            arrays = [self.param.reshape(*shape)]
        if len(arrays) == 1:
            arrays.append(arrays[0])
        return arrays

    def _slot_scratch(self):
        if self._slot is None:
            self._slot = self._full((self.param.shape[0],), K.FREE, np.int32)
        return self._slot

    def _buffer(self, name, shape, dtype):
        """Scratch buffer ``name`` viewed as ``shape`` (allocated, or doubled, when too small).

        The view is kept and handed out again while the shape repeats:
        slicing or reshaping a Numba device array costs tens of microseconds.
        """
        dtype = np.dtype(dtype)
        key = (tuple(shape), dtype)
        hit = self._views.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        size = int(np.prod(shape))
        buf = self._scratch.get(name)
        if buf is None or buf.dtype != dtype or buf.shape[0] < size:
            cap = max(size, 2 * (0 if buf is None else buf.shape[0]), 64)
            buf = self._scratch[name] = cuda.device_array(cap, dtype=dtype)
        view = buf[:size].reshape(tuple(shape))
        self._views[name] = (key, view)
        return view

    def _to_device(self, name, host):
        """``host`` copied into scratch buffer ``name`` (no allocation once the buffer is big enough)."""
        host = np.ascontiguousarray(host)
        d = self._buffer(name, host.shape, host.dtype)
        if host.size:
            d.copy_to_device(host)
        return d

    def _wrap(self, obj, name):
        """``as_device_array(obj)``, reusing the view made for the last input ``name`` when
        :func:`_cai_key` says it is the same memory."""
        key = _cai_key(obj)
        hit = self._inputs.get(name)
        if key is not None and hit is not None and hit[0] == key:
            return hit[1]
        d = as_device_array(obj, name)
        if key is not None:
            self._inputs[name] = (key, d)
        return d

    def all_finite(self, d):
        """Whether no entry of the C-contiguous device array ``d`` is NaN or infinite (a read-only kernel)."""
        count = self._to_device("count", np.zeros(1, dtype=np.int64))
        flat = d if d.ndim == 1 else d.reshape(d.size)  # a reshape costs tens of microseconds
        K.launch(K.count_nonfinite, d.size, flat, count)
        return not count.copy_to_host()[0]

    def _check_finite(self, d, name):
        """Raise if the 1-D device array ``d`` holds NaN or infinite values."""
        if not self.all_finite(d):
            raise ValueError(f"{name} contains NaN or infinite values")

    # -- checks of GPU inputs ---------------------------------------------
    def _device_float(self, d, shape, name):
        """``d`` checked against ``shape``, as a contiguous array of the parameter's dtype (its values are
        not checked: the caller checks them where it needs to, before they are used)."""
        dtype = np.dtype(d.dtype)
        if dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point values, got dtype {dtype}")
        if tuple(d.shape) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(d.shape)}, expected {tuple(shape)}")
        if not d.is_c_contiguous():
            raise ValueError(f"{name} is a non-contiguous GPU array; pass a contiguous one")
        size = d.size
        if dtype != self.dtype:
            out = self._buffer("cast", (size,), self.dtype)
            K.launch(K.copy_cast, size, d.reshape(size), out)
            d = out.reshape(tuple(shape))
        return d

    def _device_rows(self, d, n_rows, name="rows"):
        """``d`` checked as 1-D integer indices in ``[0, n_rows)``, as int64."""
        shape = tuple(d.shape)
        if len(shape) != 1:
            raise ValueError(f"{name} must be 1-D, got shape {shape}")
        k = shape[0]
        if k == 0:
            return cuda.device_array(0, dtype=np.int64)
        dtype = np.dtype(d.dtype)
        if dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {dtype}")
        if not d.is_c_contiguous():
            raise ValueError(f"{name} is a non-contiguous GPU array; pass a contiguous one")
        if dtype == np.uint64:
            # no cast: an index >= 2**63 would wrap around to a negative one; seen as int64 it
            # is negative, and every index passing the check below is the same as an int64
            d = d.view(np.int64)
        elif dtype != np.int64:
            out = self._buffer("rows_cast", (k,), np.int64)
            K.launch(K.copy_cast, k, d, out)
            d = out
        bounds = self._to_device("bounds", self._bounds_init)
        K.launch(K.index_range, k, d, bounds)
        lo, hi = bounds.copy_to_host()
        if lo < 0 and dtype == np.uint64:
            raise IndexError(f"{name} contains index {int(lo) + 2**64}, out of range for {n_rows} rows")
        if lo < 0:
            raise IndexError(f"{name} contains a negative index ({lo}); indices must be in [0, {n_rows})")
        if hi >= n_rows:
            raise IndexError(f"{name} contains index {hi}, out of range for {n_rows} rows")
        return d

    def checked_rows(self, rows, n_rows):
        """``rows``, on the host or the device, checked as 1-D integer indices in ``[0, n_rows)``.

        Returns ``(host, None)`` with an int64 NumPy array for host input, or
        ``(None, device)`` with an int64 device array for a GPU array (Numba's
        or any ``__cuda_array_interface__``).  Every method taking ``rows``
        checks them here.
        """
        rows_d = self._wrap(rows, "rows")
        if rows_d is None:
            return check_rows(rows, n_rows), None
        return None, self._device_rows(rows_d, n_rows)

    def _dense_grad(self, grad, check_finite):
        """The checked gradient as a ``(1, size)`` device array (the dense kernel's view)."""
        n = self.param.size
        key = _cai_key(grad)
        hit = self._inputs.get("grad")
        if key is not None and hit is not None and hit[0] == key:
            g = hit[1]  # the same memory as last step's gradient: checked and viewed then
        else:
            shape = tuple(self.param.shape)
            d = as_device_array(grad, "grad")
            if d is None:
                host = check_float_array(grad, self.dtype, shape, "grad", check_finite)
                return self._to_device("grad", host.reshape(1, n))
            d = self._device_float(d, shape, "grad")
            g = d.reshape(1, n)
            if key is not None and key[3] == self.dtype.str:  # not a cast copy: keep the view
                self._inputs["grad"] = (key, g)
        if check_finite:
            self._check_finite(g.reshape(n), "grad")
        return g

    # -- steps --------------------------------------------------------------
    def step(self, opt, grad):
        """Dense step (``grad`` on the host or the device)."""
        self._check_ready(opt)
        g = self._dense_grad(grad, opt.check_finite)
        if opt.lazy == "exact":
            opt.sync()
        t = opt.t + 1
        opt._set_step(t)
        p, s1, s2 = self._flat
        K.launch(K.kernels_for(opt._kind).dense_step, p.shape[1], p, g, s1, s2, tuple(opt._h))
        if opt.lazy == "exact":
            K.launch(K.fill, opt._last.shape[0], opt._last, t)
            self._last_max = t
        opt._t = t

    def step_rows(self, opt, rows, values):
        """Sparse step from ``rows`` and ``values``, each on the host or the device."""
        self._check_ready(opt)
        n_rows, n_cols = opt._rows2d.shape
        rows_h, rows_d = self.checked_rows(rows, n_rows)
        k = (rows_h if rows_d is None else rows_d).shape[0]
        if k >= K.FREE:  # the int32 row claims index into rows
            raise ValueError(f"at most {K.FREE - 1} rows per step, got {k}")
        expected = (k,) + tuple(self.param.shape[1:])
        values_d = self._wrap(values, "values")
        owned = values_d is None
        unchecked = None  # the caller's device values, left to the check of the sums (see _rows_step)
        if owned:
            values_arr = as_array(values, "values")
            if values_arr.ndim == 0 or values_arr.shape[0] != k:
                raise ValueError(f"rows and values do not match: {k} rows but values has shape {values_arr.shape}")
            values_arr = check_float_array(values_arr, self.dtype, expected, "values", opt.check_finite)
        else:
            vshape = tuple(values_d.shape)
            if len(vshape) == 0 or vshape[0] != k:
                raise ValueError(f"rows and values do not match: {k} rows but values has shape {vshape}")
            checked = self._device_float(values_d, expected, "values")
            owned = checked is not values_d  # a cast copy
            if opt.check_finite:
                unchecked = values_d
            values_d = checked
        # everything checked: transfer what is on the host, then update
        if rows_d is None:
            rows_d = self._to_device("rows", rows_h)
        if values_d is None:
            values_d = self._to_device("values", values_arr.reshape(k, n_cols))
        if tuple(values_d.shape) != (k, n_cols):  # a 1-D parameter's (k,) values
            values_d = values_d.reshape(k, n_cols)
        self._rows_step(opt, rows_d, values_d, owned, opt.check_finite, unchecked)

    def step_rows_checked(self, opt, rows, values2d):
        """Sparse step from checked host arrays: int64 ``rows`` (k,), ``values2d`` (k, n_cols)."""
        self._check_ready(opt)
        self._rows_step(opt, self._to_device("rows", rows), self._to_device("values", values2d), True)

    def _rows_step(self, opt, rows, values, owned, check_finite=False, unchecked=None):
        """Sparse step on checked ``rows`` (k,) and ``values`` (k, n_cols), summing repeated rows.

        ``owned``: ``values`` is the backend's scratch, summed in place.
        ``check_finite``: refuse, having written nothing, a sum holding NaN
        or infinity (finite values may overflow when summed).  A NaN or
        infinity in the values makes their row's sum one too: values not
        checked before (``unchecked``, the caller's device array) are read
        again, in the parameter's dtype, only to tell which error to raise.
        """
        k, n = values.shape
        t = opt.t + 1
        opt._set_step(t)
        if k:
            if owned:  # repeats are summed in place, into each row's first occurrence
                gsum = values
            else:  # the caller's GPU array: sum into a copy
                gsum = self._buffer("gsum", (k, n), self.dtype)
                gsum.copy_to_device(values)
            slot = self._slot_scratch()
            exact = opt.lazy == "exact"
            p, s1, s2 = self._rows
            K.launch(K.claim_rows, k, rows, slot)
            K.launch(K.sum_repeats, k * n, rows, values, slot, gsum)
            if check_finite and not self.all_finite(gsum):
                K.launch(K.release_rows, k, rows, slot, False, opt._last, t)  # the slots only
                opt._set_step(opt.t)
                if unchecked is not None:  # (cast again: a cast copy was summed in place)
                    self._check_finite(self._device_float(unchecked, unchecked.shape, "values"), "values")
                raise sum_overflow_error("values", self.dtype)
            K.launch(K.kernels_for(opt._kind).rows_step, k * n, p, rows, gsum, slot, s1, s2,
                     tuple(opt._h), exact, opt._last, t)
            K.launch(K.release_rows, k, rows, slot, exact, opt._last, t)
            if exact:
                self._last_max = t
        opt._t = t

    def sync(self, opt, rows=None):
        """Catch every row up to step ``opt.t`` (``lazy="exact"``; nothing to do for ``"skip"`` or at ``t = 0``).

        ``rows`` (host or device), the rows the caller needs, are only
        checked: every row is caught up.
        """
        if rows is not None:
            self.checked_rows(rows, opt._rows2d.shape[0])
        if opt.lazy != "exact" or opt.t == 0:
            return
        self._check_ready(opt)
        p, s1, s2 = self._rows
        K.launch(K.kernels_for(opt._kind).sync_rows, p.size, p, s1, s2, tuple(opt._h), opt._last, opt.t)
        K.launch(K.fill, opt._last.shape[0], opt._last, opt.t)
        self._last_max = opt.t

    # -- state --------------------------------------------------------------
    def load_state(self, opt, states, last):
        """Copy checked host state arrays (and ``last``) to the device.

        Into the state arrays the kernels use, which ``opt.state`` names again
        afterwards (a state array replaced since is dropped: loading a state
        is the documented way to reset it).
        """
        if opt.param is not self.param:
            self.check_arrays(opt)  # raises: the states were checked against the replacement's shape
        own = dict(self._own)
        for name, arr in states.items():
            own[name].copy_to_device(np.ascontiguousarray(arr))
        if isinstance(opt.state, dict):
            opt.state.update(own)
        else:
            opt.state = own
        opt._last = cuda.to_device(np.ascontiguousarray(last, dtype=np.int64))
        self._last_max = int(last.max()) if opt.lazy == "exact" and last.size else 0
