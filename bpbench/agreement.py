"""Cross-validation: every implementation against the float64 reference, and the reference
against finite differences. What ``bpbench validate`` and the tests run before anything is timed.

Each check returns rows (dicts), one per compared array::

    {"check": "gradients" | "finite differences" | "sgd trajectory", "impl": name,
     "case": label, "dtype": "float32" | "float64", "array": "loss" | "W0" | "b0" | ...,
     "rel_error": float, "bound": float, "ok": bool, "note": str}

The reference runs in float64 on the inputs rounded to the network's dtype (float32 values are
exact in float64), so a float32 implementation is measured against the exact answer for the
numbers it was actually given. A row is ok only when ``rel_error`` is finite and <= ``bound``:
NaN is never ok. Missing or extra arrays, and arrays of the wrong shape, are rows that are not
ok (``rel_error`` inf, the reason in ``note``), never silently skipped.
"""

from __future__ import annotations

import inspect

import numpy as np

from . import reference
from .checks import (
    check_batch,
    check_inputs,
    check_params,
    check_positive_int,
    check_targets,
)
from .interface import Implementation
from .network import DTYPES, Network

#: relative-error bound per array, by the network's dtype (the contract's numbers)
TOLERANCES = {"float64": 1e-10, "float32": 1e-4}

#: bound on the relative error between the reference gradients and central finite differences
FD_TOLERANCE = 1e-6


# ---------------------------------------------------------------- the measure

def relative_error(value, ref):
    """``||value - ref|| / ||ref||`` (Frobenius norm, computed in float64).

    When ``||ref|| == 0`` the ratio is undefined; then the result is 0 if ``value`` is all zero
    too and the absolute norm ``||value||`` otherwise (so a spurious non-zero gradient where the
    true one vanishes is still measured). NaN or inf anywhere in ``value`` gives NaN or inf,
    which no bound accepts. Shapes must match exactly (no broadcasting): ValueError otherwise.
    """
    value = np.asarray(value, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if value.shape != ref.shape:
        raise ValueError(f"value has shape {value.shape} but ref has shape {ref.shape}")
    diff = float(np.linalg.norm((value - ref).ravel()))
    scale = float(np.linalg.norm(ref.ravel()))
    if scale == 0.0:
        return diff  # ||value - 0|| = ||value||: 0 when value is all zero as well
    return diff / scale


def _row(check, impl, case, dtype, array, rel_error, bound, note=""):
    rel_error = float(rel_error)
    return {"check": check, "impl": impl, "case": case, "dtype": dtype, "array": array,
            "rel_error": rel_error, "bound": float(bound),
            "ok": bool(np.isfinite(rel_error) and rel_error <= bound), "note": note}


def _array_names(n_layers):
    return [name for layer in range(n_layers) for name in (f"W{layer}", f"b{layer}")]


def _compare_arrays(check, impl, case, dtype, got, want, bound):
    """Rows comparing two lists of (W, b) pairs array by array; counts and shapes checked."""
    want_flat = [a for pair in want for a in pair]
    names = _array_names(len(want))
    try:
        got_flat = [a for pair in got for a in pair]
        pairs_ok = all(len(pair) == 2 for pair in got)
    except TypeError:
        got_flat, pairs_ok = [], False
    if not pairs_ok or len(got_flat) != len(want_flat):
        note = (f"expected {len(want)} (W, b) pairs, got "
                f"{len(got) if hasattr(got, '__len__') else type(got).__name__}")
        return [_row(check, impl, case, dtype, name, np.inf, bound, note) for name in names]
    rows = []
    for name, g, w in zip(names, got_flat, want_flat, strict=True):
        g = np.asarray(g)
        if g.shape != w.shape:
            rows.append(_row(check, impl, case, dtype, name, np.inf, bound,
                             f"shape {g.shape}, expected {w.shape}"))
        else:
            rows.append(_row(check, impl, case, dtype, name, relative_error(g, w), bound))
    return rows


# ---------------------------------------------------------------- helpers

def _resolve(impl):
    """(class, label) for a registry name or an Implementation subclass; ValueError otherwise."""
    if isinstance(impl, str):
        from .registry import UnavailableError, get
        try:
            cls = get(impl)
        except KeyError as exc:
            raise ValueError(f"impls: {exc}") from None
        except UnavailableError as exc:
            raise ValueError(f"impls: {exc}") from None
        return cls, impl
    if inspect.isclass(impl) and issubclass(impl, Implementation):
        return impl, impl.name or impl.__name__
    raise ValueError(f"impls must hold registry names or Implementation subclasses, got {impl!r}")


def _rounded(net, params, X, y):
    """params, X, y validated and rounded to net.dtype: what every implementation computes on."""
    X, y = check_batch(net, X, y)
    return check_params(net, params), X, y


def _float64(params):
    """Fresh float64 copies (callers may write into them)."""
    return [(np.array(W, np.float64), np.array(b, np.float64)) for W, b in params]


# ---------------------------------------------------------------- the checks

def compare_gradients(impl, net, params, X, y, *, case=""):
    """Rows for one implementation's loss and gradients against the float64 reference."""
    cls, label = _resolve(impl)
    params_r, X_r, y_r = _rounded(net, params, X, y)
    ref_loss, ref_grads = reference.loss_and_grads(net, _float64(params_r), X_r, y_r)
    loss, grads = cls(net, params).loss_and_grads(X, y)
    return gradient_rows(label, net, loss, grads, ref_loss, ref_grads, case=case)


def gradient_rows(label, net, loss, grads, ref_loss, ref_grads, *, case=""):
    """Rows ("gradients") for a loss and gradients already computed, against the reference's.

    The bound is the contract's for ``net.dtype``; missing, extra or misshapen arrays are
    failing rows (see :func:`_compare_arrays`).
    """
    bound = TOLERANCES[net.dtype.name]
    dtype = net.dtype.name
    rows = [_row("gradients", label, case, dtype, "loss", relative_error(loss, ref_loss), bound)]
    rows += _compare_arrays("gradients", label, case, dtype, grads, ref_grads, bound)
    return rows


def finite_difference_grads(net, params, X, y, h=1e-6):
    """Central differences ``(L(w + h) - L(w - h)) / 2h`` of the float64 reference loss.

    One pair of reference forward passes per parameter (each vectorised over the batch), so it
    is meant for tiny nets. Returns ``[(dW, db), ...]`` shaped like params, float64.
    """
    base = _float64(params)
    grads = []
    for layer in range(len(base)):
        pair = []
        for k in range(2):  # 0: W, 1: b
            target = base[layer][k]
            g = np.empty_like(target)
            for idx in np.ndindex(target.shape):
                saved = target[idx]
                target[idx] = saved + h
                up = reference.loss(net, base, X, y)
                target[idx] = saved - h
                down = reference.loss(net, base, X, y)
                target[idx] = saved
                g[idx] = (up - down) / (2 * h)
            pair.append(g)
        grads.append(tuple(pair))
    return grads


def finite_difference_check(net, params, X, y, h=1e-6, *, case=""):
    """Rows (impl "reference") comparing the reference gradients with central differences."""
    params_r, X_r, y_r = _rounded(net, params, X, y)
    _, ref_grads = reference.loss_and_grads(net, _float64(params_r), X_r, y_r)
    fd = finite_difference_grads(net, params_r, X_r, y_r, h)
    return _compare_arrays("finite differences", "reference", case, net.dtype.name, ref_grads,
                           fd, FD_TOLERANCE)


def _batches(n, batch_size, steps):
    """Row slices of the steps: consecutive batches of batch_size rows, wrapping around."""
    if batch_size is None or batch_size >= n:
        return [slice(0, n)] * steps
    starts = list(range(0, n, batch_size))
    return [slice(starts[k % len(starts)], starts[k % len(starts)] + batch_size)
            for k in range(steps)]


def compare_trajectories(impl, net, params, X, y, steps=5, lr=0.1, batch_size=None, *, case=""):
    """Rows for ``steps`` SGD steps of one implementation against the float64 reference.

    Both start from the same (dtype-rounded) params and take the same batches: the whole of
    (X, y) each step when ``batch_size`` is None, else consecutive ``batch_size``-row slices,
    wrapping around. Compared: the vector of per-step losses ("losses") and every final array;
    the bound is the dtype's tolerance times ``steps``.
    """
    cls, label = _resolve(impl)
    params_r, X_r, y_r = _rounded(net, params, X, y)
    model = cls(net, params)
    ref_params = _float64(params_r)
    losses, ref_losses = [], []
    for rows in _batches(len(X_r), batch_size, steps):
        losses.append(model.step(X_r[rows], y_r[rows], lr))
        ref_loss, ref_params = reference.sgd_step(net, ref_params, X_r[rows], y_r[rows], lr)
        ref_losses.append(ref_loss)
    bound = TOLERANCES[net.dtype.name] * steps
    dtype = net.dtype.name
    out = [_row("sgd trajectory", label, case, dtype, "losses",
                relative_error(losses, ref_losses), bound)]
    out += _compare_arrays("sgd trajectory", label, case, dtype, model.params(), ref_params, bound)
    return out


# ---------------------------------------------------------------- the cases

#: (sizes, activation(s), loss, batch size): depth 0..3, odd widths, both losses, every activation
_CASES = [
    ((3, 1), "relu", "mse", 1),
    ((4, 3), "relu", "cross_entropy", 5),
    ((5, 7, 3), "relu", "cross_entropy", 8),
    ((2, 3, 2), "tanh", "mse", 4),
    ((6, 7, 5, 4), "sigmoid", "cross_entropy", 3),
    ((3, 16, 1, 2), ("relu", "tanh"), "mse", 8),
    ((7, 9, 3, 5, 3), ("tanh", "sigmoid", "relu"), "cross_entropy", 6),
    ((4, 16, 15, 7, 1), "relu", "mse", 2),
]


def _label(net, batch):
    acts = "+".join(net.activations) if net.depth else "affine"
    sizes = "-".join(map(str, net.sizes))
    return f"d{net.depth} {acts} {net.loss} {sizes} B{batch}"


def make_case(sizes, activation, loss, batch, dtype, seed):
    """(label, net, params, X, y): a seeded case; biases random too, so bias bugs show."""
    net = Network(sizes, activation=activation, loss=loss, dtype=dtype)
    rng = np.random.default_rng(seed)
    params = [(W, rng.uniform(-0.5, 0.5, b.shape).astype(dtype)) for W, b in net.init(seed)]
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], batch)
    else:
        y = rng.standard_normal((batch, sizes[-1])).astype(dtype)
    return _label(net, batch), net, params, X, y


def default_cases(dtype):
    """A handful of small seeded cases: [(label, net, params, X, y), ...] of that dtype.

    Both losses, every activation (and mixed per layer), depth 0..3, widths from 1 to 16,
    batches from 1 to 8: small enough for the naive implementation and the CUDA simulator.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return [make_case(sizes, act, loss, batch, dtype, seed)
            for seed, (sizes, act, loss, batch) in enumerate(_CASES)]


def _sequence(value, name):
    """value as a list, or ValueError naming it (a str or a non-iterable is not a sequence)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list, got {value!r}")
    return list(value)


def _check_case(case, dtype, name):
    """A (label, net, params, X, y) case, valid in ``dtype``, or ValueError naming it."""
    if not isinstance(case, (tuple, list)) or len(case) != 5 or not isinstance(case[1], Network):
        raise ValueError(f"{name} must be a (label, net, params, X, y) tuple with a "
                         f"bpbench.Network, got {case!r}")
    _, net, params, X, y = case
    net = net.with_dtype(dtype)
    check_params(net, params, f"{name} params")
    X = check_inputs(net, X, f"{name} X")
    check_targets(net, y, X.shape[0], f"{name} y")


def validate(impls=None, dtypes=("float32", "float64"), cases=None, steps=3):
    """Every check on every case: a pandas DataFrame with one row per compared array.

    ``impls``: registry names or Implementation subclasses (None: ``bpbench.available()``);
    an unknown or unavailable name raises ValueError. ``cases``: (label, net, params, X, y)
    tuples (None: :func:`default_cases`), each run in every dtype of ``dtypes``. Finite
    differences run once per case and dtype; gradients and an SGD trajectory of ``steps`` steps
    (a positive int; batches of half the rows) once per implementation, case and dtype.
    Every argument is checked before any work: a bad one raises ValueError naming it.
    """
    import pandas as pd

    from .registry import available

    if impls is None:
        impls = available()
    if isinstance(impls, str) or inspect.isclass(impls):
        impls = [impls]
    resolved = [_resolve(impl) for impl in _sequence(impls, "impls")]  # before any work
    if not resolved:
        raise ValueError("impls is empty: nothing to validate")
    dtypes = [dtypes] if isinstance(dtypes, str) else _sequence(dtypes, "dtypes")
    if not dtypes:
        raise ValueError("dtypes is empty: nothing to validate")
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"dtypes must be among {DTYPES}, got {dtype!r}")
    steps = check_positive_int(steps, "steps")
    if cases is not None:
        cases = _sequence(cases, "cases")
        if not cases:
            raise ValueError("cases is empty: nothing to validate (None: the default cases)")
        for dtype in dtypes:  # every case checked in every dtype before any work
            for i, case in enumerate(cases):
                _check_case(case, dtype, f"cases[{i}]")

    rows = []
    for dtype in dtypes:
        if cases is None:
            todo = default_cases(dtype)
        else:
            todo = [(label, net.with_dtype(dtype), params, X, y)
                    for label, net, params, X, y in cases]
        for label, net, params, X, y in todo:
            rows += finite_difference_check(net, params, X, y, case=label)
            half = max(1, -(-len(X) // 2))
            for cls, _ in resolved:
                rows += compare_gradients(cls, net, params, X, y, case=label)
                rows += compare_trajectories(cls, net, params, X, y, steps=steps,
                                             batch_size=half, case=label)
    return pd.DataFrame(rows)
