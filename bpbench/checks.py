"""Validation of everything a user hands an implementation, written once.

Each function takes the user's value, raises ``ValueError`` naming the argument and what was
expected, and returns a clean array (C-contiguous, the network's dtype) that an implementation can
trust. :class:`bpbench.interface.Implementation` calls these before any implementation code runs,
so an implementation cannot forget them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

_INT64 = np.dtype(np.int64)


def _as_real_array(value, name):
    """value as an ndarray of a real (integer or float, not bool/complex) dtype, or ValueError."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, unconvertible objects
        raise ValueError(f"{name} must be a numeric array, could not convert it: {exc}") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError):
            raise ValueError(f"{name} must be a numeric array, got non-numeric values") from None
        except OverflowError:  # a Python int beyond float64's range: finite, yet no float
            raise ValueError(f"{name} holds a number too large for a float64") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _owned(arr, dtype):
    """arr as a C-contiguous, aligned, writeable array of dtype; copied only when it is not.

    Aligned and writeable because a read-only (a broadcast view, say) or unaligned array is
    another argument type to Numba: each would compile its own specialisation of the kernels,
    seconds per call site, for the same computation. Nothing writes into the result.
    """
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not (out.flags.writeable and out.flags.aligned):
        out = out.copy()
    return out


def _require_finite(arr, name):
    # count_nonzero: the cheapest exact test (isfinite + all costs ~1 us more on small arrays)
    if arr.dtype.kind == "f" and np.count_nonzero(np.isfinite(arr)) != arr.size:
        bad = np.flatnonzero(~np.isfinite(arr.ravel()))
        raise ValueError(f"{name} must be finite, found {len(bad)} non-finite value(s) "
                         f"(first at flat index {bad[0]})")


def _is_clean(arr, dtype, shape):
    """True when arr is already what a check returns: a plain C-contiguous, aligned, writeable
    ndarray of ``dtype`` and ``shape`` (nothing to convert, so nothing to check but the values;
    see :func:`_owned` for why writeable and aligned)."""
    if type(arr) is not np.ndarray or arr.dtype != dtype or arr.shape != shape:
        return False
    flags = arr.flags
    return flags.c_contiguous and flags.writeable and flags.aligned


def _require_labels(labels, K, name):
    """Refuse an integer array with an entry outside [0, K), naming its min and max."""
    if labels.size <= 16:  # a Python scan beats NumPy reductions on a few labels
        outside = any(not 0 <= v < K for v in labels.tolist())
    elif labels.dtype.kind == "i":  # negatives become huge as unsigned: one max() tests both ends
        outside = labels.view(labels.dtype.str.replace("i", "u")).max() >= K
    else:
        outside = labels.max() >= K
    if outside:
        raise ValueError(f"{name} holds class indices outside [0, {K}): "
                         f"min {labels.min()}, max {labels.max()}")


def check_inputs(net, X, name="X"):
    """X as a C-contiguous, aligned, writeable (B, sizes[0]) array of net.dtype, B >= 1, all
    finite (a copy when X is not already that)."""
    if type(X) is np.ndarray and X.ndim == 2 and X.shape[0] > 0 and _is_clean(
            X, net.dtype, (X.shape[0], net.sizes[0])):
        _require_finite(X, name)  # already clean (the path below would return it unchanged)
        return X
    arr = _as_real_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, {net.sizes[0]}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: need at least one row")
    if arr.shape[1] != net.sizes[0]:
        raise ValueError(f"{name} must have {net.sizes[0]} columns (the input width sizes[0]), "
                         f"got shape {arr.shape}")
    with np.errstate(over="ignore"):  # no stray RuntimeWarning: the ValueError below says it
        arr = _owned(arr, net.dtype)
    # after the cast: a float64 value beyond float32's range becomes inf here and is caught
    _require_finite(arr, name)
    return arr


def check_targets(net, y, batch_size, name="y"):
    """y as the loss needs it, for a batch of ``batch_size`` rows.

    cross_entropy: (B,) int64 class indices in [0, K). mse: (B, K) of net.dtype, finite
    (a (B,) vector is accepted when K == 1).
    """
    K = net.sizes[-1]
    # already clean (the paths below would return it unchanged): only the values to check
    if net.loss == "cross_entropy" and _is_clean(y, _INT64, (batch_size,)):
        _require_labels(y, K, name)
        return y
    if net.loss != "cross_entropy" and _is_clean(y, net.dtype, (batch_size, K)):
        _require_finite(y, name)
        return y
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be an array, could not convert it: {exc}") from None
    if net.loss == "cross_entropy":
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integer class indices for cross_entropy, "
                             f"got dtype {arr.dtype}")
        if arr.shape != (batch_size,):
            raise ValueError(f"{name} must have shape ({batch_size},) (one class index per row "
                             f"of X), got {arr.shape}")
        _require_labels(arr, K, name)
        return _owned(arr, np.int64)
    arr = _as_real_array(arr, name)
    if arr.ndim == 1 and K == 1 and arr.shape[0] == batch_size:
        arr = arr.reshape(batch_size, 1)
    if arr.shape != (batch_size, K):
        raise ValueError(f"{name} must have shape ({batch_size}, {K}) (targets for every output "
                         f"unit of every row of X), got {arr.shape}")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused just below
        arr = _owned(arr, net.dtype)
    _require_finite(arr, name)
    return arr


def check_batch(net, X, y):
    """(X, y) checked against each other and the network."""
    # The arrays a training loop passes are usually already what the checks return (ndarrays
    # of the right dtype and shape, C-contiguous, aligned, writeable: ``flags.carray``): then
    # only their values are checked, in the order and with the messages of the general path
    # below (``bpbench overhead`` measures what this saves per step).
    if (type(X) is np.ndarray and type(y) is np.ndarray and X.ndim == 2 and X.dtype == net.dtype
            and X.flags.carray and y.flags.carray):
        B = X.shape[0]
        if B and X.shape[1] == net.sizes[0]:
            if net.loss == "cross_entropy":
                if y.dtype == _INT64 and y.shape == (B,):
                    _require_finite(X, "X")
                    _require_labels(y, net.sizes[-1], "y")
                    return X, y
            elif y.dtype == net.dtype and y.shape == (B, net.sizes[-1]):
                _require_finite(X, "X")
                _require_finite(y, "y")
                return X, y
    X = check_inputs(net, X, "X")
    return X, check_targets(net, y, X.shape[0], "y")


def check_params(net, params, name="params"):
    """A fresh list of (W, b) copies of net.dtype, C-contiguous, with the net's shapes."""
    if isinstance(params, np.ndarray) or not hasattr(params, "__len__"):
        raise ValueError(f"{name} must be a list of (W, b) pairs, one per layer, "
                         f"got {type(params).__name__}")
    if len(params) != net.n_layers:
        raise ValueError(f"{name} must have {net.n_layers} (W, b) pairs for sizes {net.sizes}, "
                         f"got {len(params)}")
    clean = []
    for layer, ((w_shape, b_shape), pair) in enumerate(zip(net.shapes(), params, strict=True)):
        try:
            W, b = pair
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{layer}] must be a (W, b) pair") from None
        W = _as_real_array(W, f"{name}[{layer}] W")
        b = _as_real_array(b, f"{name}[{layer}] b")
        if W.shape != w_shape:
            raise ValueError(f"{name}[{layer}] W must have shape {w_shape}, got {W.shape}")
        if b.shape != b_shape:
            raise ValueError(f"{name}[{layer}] b must have shape {b_shape}, got {b.shape}")
        # np.array(copy=True): the instance owns its copy; the caller's arrays are never touched
        with np.errstate(over="ignore"):  # beyond float32's range: inf, refused just below
            W = np.array(W, dtype=net.dtype, order="C", copy=True)
            b = np.array(b, dtype=net.dtype, order="C", copy=True)
        _require_finite(W, f"{name}[{layer}] W")
        _require_finite(b, f"{name}[{layer}] b")
        clean.append((W, b))
    return clean


def check_lr(lr, name="lr"):
    """lr as a positive finite float.

    A plain positive float (what every caller passes in a training loop) takes one type test
    and one chained comparison (NaN fails it too): this runs on every ``step_prepared``.
    """
    if type(lr) is float and 0.0 < lr < math.inf:
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        if isinstance(lr, np.ndarray) and lr.ndim == 0 and lr.dtype.kind in "iuf":
            lr = lr.item()
        else:
            raise ValueError(f"{name} must be a positive real number, got {lr!r}")
    try:
        lr = float(lr)
    except OverflowError:  # an int beyond float64's range
        lr = math.inf if lr > 0 else -math.inf
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name} must be positive and finite, got {lr!r}")
    return lr


def check_order(order, n, name="order"):
    """order as a C-contiguous int64 (n,) permutation of ``range(n)`` (the rows of a dataset).

    Integer dtypes only (no bools, no floats that happen to be whole), exactly ``n`` entries,
    each row exactly once: a repeated or missing row would train on another dataset than the
    one given, and an index outside ``[0, n)`` would read outside the arrays in a kernel.
    """
    try:
        arr = np.asarray(order)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be an integer array, could not convert it: {exc}") from None
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer row indices, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (a permutation of the {n} rows of X), "
                         f"got {arr.shape}")
    if n and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{name} holds row indices outside [0, {n}): "
                         f"min {arr.min()}, max {arr.max()}")
    arr = _owned(arr, np.int64)
    seen = np.bincount(arr, minlength=n)
    if n and seen.max() > 1:
        row = int(np.argmax(seen > 1))
        raise ValueError(f"{name} must be a permutation of range({n}): row {row} appears "
                         f"{int(seen[row])} times")
    return arr


def check_seed(seed, name="seed"):
    """seed as a non-negative int (what ``numpy.random.default_rng`` takes; bools refused)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed!r}")
    return int(seed)


def check_positive_int(value, name):
    """value as a positive int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
