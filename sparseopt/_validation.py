"""Input checks shared by the optimizers and estimators.

Numba kernels do not check bounds, so everything a kernel will index is
checked here first; every check raises before anything is modified.
"""

import numbers

import numpy as np

__all__ = [
    "check_param",
    "check_float_array",
    "check_rows",
    "as_rows",
    "as_array",
    "check_hyper",
    "check_bool",
]


def check_param(W, name="W"):
    """Check that ``W`` is a parameter sparseopt can update in place."""
    if not isinstance(W, np.ndarray):
        raise TypeError(
            f"{name} must be a NumPy array (float32 or float64) updated in place, got {type(W).__name__}"
        )
    if isinstance(W, (np.matrix, np.ma.MaskedArray)):  # reshape(-1) stays 2-D / the mask would be ignored
        raise TypeError(f"{name} must be a plain NumPy array, not {type(W).__module__}.{type(W).__name__}")
    if W.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {W.dtype}")
    if W.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got {W.ndim}-D with shape {W.shape}")
    if W.size == 0:
        raise ValueError(f"{name} is empty (shape {W.shape}): nothing to optimize")
    if not W.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place); use np.ascontiguousarray")
    if not W.flags.writeable:
        raise ValueError(f"{name} is read-only; the optimizer updates it in place")
    return W


def check_float_array(x, dtype, shape, name, check_finite):
    """Return ``x`` as a C-contiguous array of ``dtype`` and ``shape``.

    Float inputs of another precision are converted; integer, boolean,
    complex or object inputs raise ``TypeError``.
    """
    arr = as_array(x, name)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold floating-point values, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


_INT64 = np.dtype(np.int64)


def as_array(x, name):
    """``np.asarray(x)``, a ragged or otherwise unconvertible ``x`` raising ``ValueError`` naming ``name``.

    A GPU array (``__cuda_array_interface__``) for a host optimizer raises ``TypeError``: NumPy would
    either misread it as an object scalar or copy it to the host on every step, unseen.
    """
    if not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} is a GPU array but the optimizer's parameter is a NumPy array on the host: make the "
            f"optimizer on a GPU array (sparseopt.cuda) or copy {name} to the host"
        )
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} is not a regular array of numbers ({exc})") from None


def as_rows(rows, name="rows"):
    """Return ``rows`` as a 1-D C-contiguous int64 array, checking its type but not its bounds.

    For kernels that check the bounds themselves, in a pass they make anyway
    before writing anything (``rows_step``); when one reports a bad row,
    :func:`check_rows` on the same input raises the error.
    """
    if type(rows) is np.ndarray and rows.dtype is _INT64 and rows.ndim == 1 and rows.flags.c_contiguous:
        return rows  # the common case, at the cost of four attribute checks
    arr = as_array(rows, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_rows(rows, n_rows, name="rows"):
    """Return ``rows`` as a 1-D int64 array of indices in ``[0, n_rows)``."""
    arr = as_array(rows, name)
    out = as_rows(arr, name)
    # one pass: seen as uint64, a negative index is >= 2**63 > n_rows
    if out.size == 0 or out.view(np.uint64).max() < n_rows:
        return out
    lo = arr.min()  # the caller's values (a huge uint64 wraps around in int64)
    if lo < 0:
        raise IndexError(f"{name} contains a negative index ({lo}); indices must be in [0, {n_rows})")
    raise IndexError(f"{name} contains index {arr.max()}, out of range for {n_rows} rows")


def check_hyper(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a float within the given bounds, else ``ValueError`` naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int (or Fraction) beyond the float range
        raise ValueError(f"{name} must be a finite real number, got one beyond the float range") from None
    ok = np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        rng = f"{lo or '(-inf'}, {hi or 'inf)'}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return value


def replaced_array_error(opt, what):
    """The error a step raises when ``opt``'s ``what`` (``"param"`` or ``"state"``) is no longer the array
    its kernels write through (CPU and GPU alike)."""
    if what == "param":
        return RuntimeError(
            f"{type(opt).__name__}: param was replaced by another array; the optimizer updates the array "
            "it was given in place (write into it, or make a new optimizer)"
        )
    return RuntimeError(
        f"{type(opt).__name__}: state was replaced by other arrays; the optimizer updates its own state "
        "arrays in place (write into them, or use load_state_dict)"
    )


def sum_overflow_error(name, dtype, what="rows"):
    """The error a step with ``check_finite`` raises when the finite gradient ``name``, its repeated
    ``what`` (``"rows"``, ``"entries"``) summed in ``dtype``, overflows to infinity (CPU and GPU alike)."""
    return ValueError(
        f"{name} holds only finite values, but summed over repeated {what} in {np.dtype(dtype).name} they "
        "overflow to infinity (check_finite=True)"
    )


def check_bool(name, value):
    """Return ``value`` as a bool: ``True``, ``False`` (or NumPy's, or the integers 0 and 1), else ``ValueError``.

    Anything else (a string such as ``"False"``, ``None``, an array) is
    rejected rather than judged by its truth value.
    """
    if not isinstance(value, (bool, np.bool_, numbers.Integral)) or value not in (0, 1):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
