"""What only the Numba contestants promise: one-call epochs, both product paths, the cache,
threads, no allocation per step. (Agreement, bad input and training are tested for every
implementation in the shared tests.)

These tests need Numba: without it they are skipped with the reason (failing on CI, as the
shared ``require`` does), never silently passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import bpbench
from bpbench import reference
from bpbench.interface import Implementation

NAMES = ["numba", "numba_parallel"]
BOUND = {"float64": 1e-10, "float32": 1e-4}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=NAMES)
def numba_impl(request):
    return require(request.param)


def _data(net, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, net.sizes[0])).astype(net.dtype)
    if net.loss == "cross_entropy":
        return X, rng.integers(0, net.sizes[-1], n)
    return X, rng.standard_normal((n, net.sizes[-1])).astype(net.dtype)


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def _count_kernel_calls(model):
    """Record (rows of order, batch_size) of every call of the model's compiled entry point."""
    calls = []
    kernel = model._kernel

    def counting(*args):  # args as NumbaBase._call passes them: X 5th, order 8th, batch_size
        # 11th; a single step passes an empty order (the rows are used where they are)
        calls.append((len(args[7]) or len(args[4]), int(args[10])))
        return kernel(*args)

    model._kernel = counting
    return calls


def _reference_epochs(net, params, X, y, lr, epochs, batch_size, seed):
    """The contract's training loop, written out with the float64 reference: per-epoch
    sample-weighted mean losses and the final parameters."""
    params = [(np.float64(W), np.float64(b)) for W, b in params]
    rng = np.random.default_rng(seed)
    n, history = len(X), []
    for _ in range(epochs):
        order, total = rng.permutation(n), 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss, params = reference.sgd_step(net, params, X[idx].astype(np.float64), y[idx], lr)
            total += loss * len(idx)
        history.append(total / n)
    return history, params


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("batch_size,sizes", [
    (1, (6, 9, 7, 3)),  # hand loops
    (16, (6, 9, 7, 3)),  # BLAS; 50 rows: a short last batch
    (1, (6, 140, 130, 3)),  # phases of several chunks: hand loops
    (16, (6, 140, 130, 3)),  # and BLAS tiles
])
def test_epoch_fast_path_equals_the_python_loop(numba_impl, loss, batch_size, sizes, dtype):
    net = bpbench.Network(sizes, activation=("sigmoid", "relu"), loss=loss, dtype=dtype)
    params = net.init(1)
    X, y = _data(net, 50)
    order = np.random.default_rng(5).permutation(50)
    fast, loop = numba_impl(net, params), numba_impl(net, params)
    fast_calls, loop_calls = _count_kernel_calls(fast), _count_kernel_calls(loop)
    fast_losses = fast.run_epoch(X, y, order, batch_size, 0.05)
    loop_losses = Implementation._run_epoch(loop, X, y, order, batch_size, 0.05)  # Python loop
    n_batches = -(-50 // batch_size)
    assert len(fast_losses) == n_batches
    # the fast path ran: the whole epoch in one compiled call; the loop, one call per batch
    assert fast_calls == [(50, batch_size)], fast_calls
    assert len(loop_calls) == n_batches and sum(rows for rows, _ in loop_calls) == 50
    np.testing.assert_array_equal(fast_losses, loop_losses)
    for (W1, b1), (W2, b2) in zip(fast.params(), loop.params(), strict=True):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)
    # and both equal the float64 reference's SGD loop (independent of the kernels)
    ref = [(np.float64(W), np.float64(b)) for W, b in params]
    for k, start in enumerate(range(0, 50, batch_size)):
        idx = order[start:start + batch_size]
        ref_loss, ref = reference.sgd_step(net, ref, X[idx].astype(np.float64), y[idx], 0.05)
        assert abs(fast_losses[k] - ref_loss) <= 10 * BOUND[dtype] * max(abs(ref_loss), 1)
    for (W, b), (Wr, br) in zip(fast.params(), ref, strict=True):
        assert _rel(W, Wr) <= 10 * BOUND[dtype]
        assert _rel(b, br) <= 10 * BOUND[dtype]


def test_train_uses_the_fast_path_and_matches_the_loop(numba_impl):
    net = bpbench.Network((5, 8, 3), activation="tanh", dtype="float64")
    X, y = _data(net, 40)
    fast = numba_impl(net, net.init(0))
    calls = _count_kernel_calls(fast)
    hist_fast = bpbench.train(fast, X, y, lr=0.1, epochs=3, batch_size=16)
    assert calls == [(40, 16)] * 3, calls  # one compiled call per epoch
    loop = numba_impl(net, net.init(0))
    loop._run_epoch = lambda *a: Implementation._run_epoch(loop, *a)  # force the Python loop
    hist_loop = bpbench.train(loop, X, y, lr=0.1, epochs=3, batch_size=16)
    assert list(hist_fast) == list(hist_loop)
    # and both are the contract's loop, computed independently with the float64 reference
    want, ref_params = _reference_epochs(net, net.init(0), X, y, 0.1, 3, 16, seed=0)
    np.testing.assert_allclose(hist_fast, want, rtol=1e-10)
    for (W, b), (Wr, br) in zip(fast.params(), ref_params, strict=True):
        assert _rel(W, Wr) <= 1e-9 and _rel(b, br) <= 1e-9


@pytest.mark.parametrize("path,blas_min", [("hand loops", 1 << 30), ("BLAS", 1)])
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_both_product_paths_agree_with_the_reference(numba_impl, path, blas_min, act, dtype):
    for loss in ("cross_entropy", "mse"):
        net = bpbench.Network((7, 11, 9, 4), activation=act, loss=loss, dtype=dtype)
        rng = np.random.default_rng(3)
        params = [(W, rng.uniform(-0.5, 0.5, b.shape).astype(dtype)) for W, b in net.init(2)]
        X, y = _data(net, 5)
        model = numba_impl(net, params)
        model.blas_min = blas_min
        loss_value, grads = model.loss_and_grads(X, y)
        ref_loss, ref_grads = reference.loss_and_grads(net, params, X, y)
        assert abs(loss_value - ref_loss) <= BOUND[dtype] * abs(ref_loss)
        for (dW, db), (rW, rb) in zip(grads, ref_grads, strict=True):
            assert _rel(dW, rW) <= BOUND[dtype], (path, loss, "W")
            assert _rel(db, rb) <= BOUND[dtype], (path, loss, "b")
        np.testing.assert_allclose(model.forward(X), reference.forward(net, params, X)[-1],
                                   rtol=BOUND[dtype], atol=BOUND[dtype])
        model.step(X, y, 0.1)
        _, ref_new = reference.sgd_step(net, params, X, y, 0.1)
        for (W, b), (rW, rb) in zip(model.params(), ref_new, strict=True):
            assert _rel(W, rW) <= BOUND[dtype] and _rel(b, rb) <= BOUND[dtype], (path, loss)


@pytest.mark.parametrize("batch", [1, 3, 40])  # hand loops; BLAS with few rows; BLAS tiles
def test_phases_cut_into_chunks_agree_with_the_reference(numba_impl, batch, dtype):
    """Layers wide enough that every phase is cut into several chunks (partial products summed
    across chunks, tiles of W's columns and rows, tiles of batch rows), against the reference."""
    from bpbench.impls import _numba_kernels as K

    sizes = (150, 140, 130, 7)
    assert K._n_chunks.py_func(130, K.HAND_ROWS_MIN, K.MAX_CHUNKS) >= 2
    assert K._row_tiles_of_w.py_func(130, batch, 140, K.MAX_CHUNKS, K.MAX_CHUNKS) >= 2
    assert K._column_tile_width.py_func(140, batch, 150, 8, K.MAX_CHUNKS, K.MAX_CHUNKS) < 140
    for loss in ("cross_entropy", "mse"):
        net = bpbench.Network(sizes, activation=("tanh", "relu"), loss=loss, dtype=dtype)
        rng = np.random.default_rng(4)
        params = [(W, rng.uniform(-0.5, 0.5, b.shape).astype(dtype)) for W, b in net.init(3)]
        X, y = _data(net, batch, seed=batch)
        model = numba_impl(net, params)
        loss_value, grads = model.loss_and_grads(X, y)
        ref_loss, ref_grads = reference.loss_and_grads(net, params, X, y)
        assert abs(loss_value - ref_loss) <= BOUND[dtype] * abs(ref_loss)
        for (dW, db), (rW, rb) in zip(grads, ref_grads, strict=True):
            assert _rel(dW, rW) <= BOUND[dtype] and _rel(db, rb) <= BOUND[dtype], loss
        model.step(X, y, 0.1)
        _, ref_new = reference.sgd_step(net, params, X, y, 0.1)
        for (W, b), (rW, rb) in zip(model.params(), ref_new, strict=True):
            assert _rel(W, rW) <= BOUND[dtype] and _rel(b, rb) <= BOUND[dtype], loss


def test_a_small_batch_after_a_large_one_reuses_the_workspace(numba_impl):
    net = bpbench.Network((6, 8, 3), activation="relu", dtype="float64")
    params = net.init(0)
    model = numba_impl(net, params)
    X, y = _data(net, 32)
    model.loss_and_grads(X, y)
    ws = model._ws
    loss, grads = model.loss_and_grads(X[:3], y[:3])
    assert model._ws is ws  # no reallocation for the smaller batch
    ref_loss, ref_grads = reference.loss_and_grads(net, params, X[:3], y[:3])
    assert abs(loss - ref_loss) <= 1e-12
    for (dW, db), (rW, rb) in zip(grads, ref_grads, strict=True):
        assert _rel(dW, rW) <= 1e-10 and _rel(db, rb) <= 1e-10


#: thread counts compared: one, the usual two, an odd count and more threads than any test
#: machine has cores (the kernel then runs some threads' shares one after another)
THREAD_COUNTS = (1, 2, 3, 7)


def test_thread_count_does_not_change_results():
    """numba_parallel gives bit-identical losses and parameters for every thread count, on both
    product paths, with phases cut into several chunks (so chunk reductions are exercised)."""
    numba = pytest.importorskip("numba")
    cls = require("numba_parallel")
    from bpbench.impls import _numba_kernels as K

    net = bpbench.Network((150, 140, 130, 5), activation=("sigmoid", "relu"), dtype="float32")
    # several chunks per phase on both paths, or the comparison would not test a reduction
    assert K._n_chunks.py_func(130, K.HAND_ROWS_MIN, K.MAX_CHUNKS) >= 2
    assert K._row_tiles.py_func(80, K.MAX_CHUNKS) >= 2
    assert K._row_tiles_of_w.py_func(130, 80, 140, K.MAX_CHUNKS, K.MAX_CHUNKS) >= 2
    X, y = _data(net, 80)
    runs = []
    for threads in THREAD_COUNTS:
        model = cls(net, net.init(0))
        model.threads = threads
        losses = [model.step(X[:b], y[:b], 0.1) for b in (3, 80)]  # hand loops, BLAS
        losses += list(model.run_epoch(X, y, np.arange(80)[::-1], 32, 0.1))
        runs.append((threads, losses, model.params()))
    # and Numba's own setting: one thread against the default count
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            model = cls(net, net.init(0))
            losses = [model.step(X[:b], y[:b], 0.1) for b in (3, 80)]
            losses += list(model.run_epoch(X, y, np.arange(80)[::-1], 32, 0.1))
            runs.append((f"numba.set_num_threads({threads})", losses, model.params()))
    finally:
        numba.set_num_threads(before)
    assert len(runs) >= len(THREAD_COUNTS) + 1
    first_label, first_losses, first_params = runs[0]
    for label, losses, params in runs[1:]:
        assert losses == first_losses, (label, first_label)
        for (W, b), (W0, b0) in zip(params, first_params, strict=True):
            np.testing.assert_array_equal(W, W0, err_msg=str(label))
            np.testing.assert_array_equal(b, b0, err_msg=str(label))
    # and the steps are right: the float64 reference on the same batches (3 rows, 80 rows)
    ref = [(np.float64(W), np.float64(b)) for W, b in net.init(0)]
    for k, rows in enumerate((3, 80)):
        ref_loss, ref = reference.sgd_step(net, ref, X[:rows].astype(np.float64), y[:rows], 0.1)
        assert abs(first_losses[k] - ref_loss) <= 1e-4 * abs(ref_loss)


def test_warm_cache_loads_and_steps_allocate_nothing(numba_impl):
    """A fresh process loads the compiled step from the on-disk cache (no compilation), and the
    step allocates no buffers: Numba's runtime allocation count per step is the same for
    every depth and both product paths (only the per-argument wrappers of the call)."""
    env = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=str(ROOT))
    env.pop("NUMBA_CACHE_DIR", None)
    cmd = [sys.executable, str(ROOT / "tests" / "numba_child.py"), numba_impl.name]
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # fills the cache if cold
    proc = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cache_hits"] >= 1 and report["cache_misses"] == 0, report
    counts = set(report["allocs"].values())
    assert len(counts) == 1 and counts.pop() <= 16, report["allocs"]
    assert report["numpy_bytes"] < report["workspace_bytes"] / 10, report


def test_compile_cost_runs_in_a_new_process():
    from bpbench.bench.compile_cost import compile_cost, first_step_report

    net = bpbench.Network((4, 5, 3), dtype="float32")
    seconds = compile_cost("numpy", net, 2)
    assert 0 < seconds < 30
    report = first_step_report("numpy", net, 2)
    assert set(report) == {"import_seconds", "first_step_seconds", "step_seconds"}
    with pytest.raises(RuntimeError, match="no_such_impl"):
        compile_cost("no_such_impl", net, 2)


def test_read_only_and_unaligned_arrays_compile_nothing_new(numba_impl):
    """Numba types a read-only or unaligned array apart from a plain one (a new compilation
    of the whole entry point, seconds each); validation hands the kernels clean copies, so
    every call below reuses the one specialisation per dtype (found by the fuzz suite)."""
    net = bpbench.Network((3, 4, 2), dtype="float64")
    model = numba_impl(net, net.init(0))
    X, y = _data(net, 6)
    model.step(X, y, 0.1)  # the plain specialisation (compiled or loaded from the cache)
    before = len(model._kernel.signatures)
    ro_X, ro_y, ro_order = X.copy(), y.copy(), np.arange(6)
    for a in (ro_X, ro_y, ro_order):
        a.flags.writeable = False
    raw = np.zeros(X.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(X.shape)
    unaligned[...] = X
    model.step(ro_X, ro_y, 0.1)
    model.step(unaligned, y, 0.1)
    model.run_epoch(ro_X, ro_y, ro_order, 2, 0.1)
    model.forward(np.broadcast_to(X[:1], X.shape))
    assert len(model._kernel.signatures) == before, model._kernel.signatures


def test_the_np_dot_fallback_of_gemm_matches_numpy():
    """Without NumPy's cblas the kernels' gemm falls back to np.dot on contiguous blocks: checked
    in a fresh process that pretends there is no cblas (BPBENCH_NUMBA_NO_CBLAS=1), every
    transpose combination and an alpha, against NumPy's own product."""
    code = """
import numpy as np
from bpbench.impls import _numba_blas as blas
assert not blas.HAVE_CBLAS
rng = np.random.default_rng(0)
m, n, k = 3, 4, 5
for dtype in (np.float32, np.float64):
    for ta in (False, True):
        for tb in (False, True):
            A = rng.standard_normal(2 + m * k).astype(dtype)
            B = rng.standard_normal(1 + k * n).astype(dtype)
            C = np.full(3 + m * n, 7.0, dtype)
            blas.gemm(np.bool_(ta), np.bool_(tb), m, n, k, -0.5, A, 2, m if ta else k,
                      B, 1, k if tb else n, 0.0, C, 3, n)
            a = A[2:].reshape((k, m)).T if ta else A[2:].reshape((m, k))
            b = B[1:].reshape((n, k)).T if tb else B[1:].reshape((k, n))
            want = -0.5 * (a.astype(np.float64) @ b)
            assert np.allclose(C[3:].reshape((m, n)), want, rtol=1e-5, atol=1e-5), (ta, tb)
            assert np.all(C[:3] == 7.0)  # nothing written before the block
print("ok")
"""
    env = dict(os.environ, BPBENCH_NUMBA_NO_CBLAS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_flat_arrays_start_on_a_page_boundary(numba_impl):
    """Parameters, gradients and workspace start at a multiple of ALIGN bytes in every model (a
    start that moved within a cache line from model to model moved the step's time by up to
    20%), and the aligned views are the arrays the kernel updates: a step through them matches
    the float64 reference."""
    from bpbench.impls import _numba_host as host

    net = bpbench.Network((256, 64, 10), dtype="float32")
    X, y = _data(net, 3)
    for seed in range(3):
        np.empty(seed * 12_345 + 1)  # allocations in between would move an unaligned start
        model = numba_impl(net, net.init(seed))
        model.step(X, y, 0.1)
        for arr in (model._theta, model._grads, model._ws):
            assert arr.ctypes.data % host.ALIGN == 0 and arr.flags.carray
        _, ref = reference.sgd_step(net, [(np.float64(W), np.float64(b)) for W, b in
                                          net.init(seed)], X.astype(np.float64), y, 0.1)
        for (W, b), (Wr, br) in zip(model.params(), ref, strict=True):
            assert _rel(W, Wr) <= 2e-4 and _rel(b, br) <= 2e-4
