"""The validation fast paths (arrays that are already clean skip conversion) refuse exactly what
the general path refuses, with the same messages.

The oracle is written here, independently of bpbench.checks: a label is bad when it is outside
[0, K); a value is bad when it is not finite; messages follow the documented wording.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import bpbench
from bpbench import checks

NET = bpbench.Network((5, 4, 3), dtype="float32")
NET_MSE = bpbench.Network((5, 4, 3), loss="mse", dtype="float64")
INT_DTYPES = ["int64", "int32", "int8", "uint8", "uint64", ">i8"]


def _label_error(y, K=3):
    y = np.asarray(y)
    if np.any((y < 0) | (y >= K)):
        return f"y holds class indices outside [0, {K}): min {y.min()}, max {y.max()}"
    return None


@pytest.mark.parametrize("size", [1, 2, 16, 17, 40])  # both sides of the Python-scan cutoff
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_labels_are_refused_exactly_when_one_is_outside_the_classes(size, dtype):
    rng = np.random.default_rng(size)
    low = 0 if np.dtype(dtype).kind == "u" else -2
    cases = [rng.integers(0, 3, size), rng.integers(low, 5, size)]
    edge = rng.integers(0, 3, size)
    edge[size // 2] = 3 if low == 0 else -1  # exactly one bad label, in the middle
    cases.append(edge)
    for labels in cases:
        y = labels.astype(dtype)
        expected = _label_error(y)
        for given in (y, list(y.tolist())):  # fast path (int64 only) and the general path
            if expected is None:
                out = checks.check_targets(NET, given, size)
                assert out.dtype == np.int64 and out.flags.c_contiguous
                np.testing.assert_array_equal(out, labels.astype(dtype).astype(np.int64))
            else:
                with pytest.raises(ValueError, match=re.escape(expected)):
                    checks.check_targets(NET, given, size)


@pytest.mark.parametrize("rows", [1, 3, 64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_inputs_are_refused_exactly_when_a_value_is_not_finite(rows, bad):
    rng = np.random.default_rng(rows)
    X = rng.standard_normal((rows, 5)).astype(np.float32)
    assert checks.check_inputs(NET, X) is X  # clean: returned as is
    at = [3, rows * 5 - 1]
    X.flat[at] = bad
    expected = "X must be finite, found 2 non-finite value(s) (first at flat index 3)"
    for given in (X, X.astype(np.float64), X.tolist(), np.asfortranarray(X)):
        with pytest.raises(ValueError, match=re.escape(expected)):
            checks.check_inputs(NET, given)


def test_large_finite_values_are_not_refused():
    X = np.full((2, 5), 3e38, dtype=np.float32)  # finite, though their sum overflows
    assert checks.check_inputs(NET, X) is X


def test_clean_regression_targets_are_checked_for_finite_values():
    Y = np.zeros((2, 3))
    assert checks.check_targets(NET_MSE, Y, 2) is Y
    Y[1, 2] = np.nan
    with pytest.raises(ValueError, match=re.escape("y must be finite, found 1 non-finite value(s) "
                                                   "(first at flat index 5)")):
        checks.check_targets(NET_MSE, Y, 2)


def _batch_error(X, y, net):
    """The oracle for a batch: X's problem first, then y's (the documented order)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    bad = np.flatnonzero(~np.isfinite(X.ravel()))
    if len(bad):
        return (f"X must be finite, found {len(bad)} non-finite value(s) "
                f"(first at flat index {bad[0]})")
    if net.loss == "cross_entropy":
        return _label_error(y, net.sizes[-1])
    bad = np.flatnonzero(~np.isfinite(y.ravel()))
    if len(bad):
        return (f"y must be finite, found {len(bad)} non-finite value(s) "
                f"(first at flat index {bad[0]})")
    return None


@pytest.mark.parametrize("net", [NET, NET_MSE], ids=["cross_entropy", "mse"])
@pytest.mark.parametrize("case", ["clean", "bad X", "bad y", "both bad"])
def test_check_batch_fast_path_refuses_what_the_general_path_refuses(net, case):
    """check_batch on arrays that are already clean (its fast path) against the oracle, and
    against the same values as lists (the general path): same refusals, same messages; a clean
    batch comes back as the very same arrays, anything else as clean copies."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4, 5)).astype(net.dtype)
    y = (rng.integers(0, 3, 4) if net.loss == "cross_entropy"
         else rng.standard_normal((4, 3)).astype(net.dtype))
    if case in ("bad X", "both bad"):
        X[2, 1] = np.nan
    if case in ("bad y", "both bad"):
        if net.loss == "cross_entropy":
            y[3] = 3
        else:
            y[0, 2] = np.inf
    expected = _batch_error(X, y, net)
    assert (expected is None) == (case == "clean")
    read_only = X.copy()
    read_only.flags.writeable = False
    for given_X, given_y in ((X, y), (X.tolist(), y.tolist()), (read_only, y)):
        if expected is None:
            out_X, out_y = checks.check_batch(net, given_X, given_y)
            np.testing.assert_array_equal(out_X, X)
            np.testing.assert_array_equal(out_y, y)
            assert out_X.flags.carray and out_y.flags.carray and out_X.dtype == net.dtype
            if given_X is X:
                assert out_X is X and out_y is y  # nothing to convert: nothing copied
            else:
                assert out_X is not given_X
        else:
            with pytest.raises(ValueError, match=re.escape(expected)):
                checks.check_batch(net, given_X, given_y)
