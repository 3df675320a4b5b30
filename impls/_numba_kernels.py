"""Numba kernels shared by ``numba`` (one thread) and ``numba_parallel`` (prange).

Layout (chosen so that every call is one compiled function with uniform types):

- ``theta``: every parameter in one flat 1-D array of the net's dtype, layer by layer
  ``W_0 (n_0*n_1, row-major), b_0 (n_1), W_1, b_1, ...``; ``grads`` has the same layout.
- ``sizes``: int64 (L+1,) layer widths; ``codes``: int64 (L,) activation code per layer
  (the last entry, for the affine output layer, is ignored). Codes are data, not types, so
  every activation combination shares one compiled specialisation per dtype.
- ``ws``: one flat workspace of the dtype for batches of up to ``cap`` rows: the batch's inputs
  (layer 0) and the activations of layers 1..L (``B*n_l`` each), two ping-pong delta buffers
  (``B*max(n)`` each) and the batch's mse targets (``B*K``). Views are carved out per call, so a
  smaller batch (the last of an epoch) reuses it. ``yb`` (cap,) int64 holds the batch's labels.
- Targets: ``y_all`` int64 (N,) class indices (cross_entropy) and ``Y_all`` (N, K) of the dtype
  (mse); the unused one is an empty array, so both losses share one specialisation too.

There is ONE entry point per flavour, :func:`run_serial` / :func:`run_parallel`: it walks
``order`` in batches of ``batch_size`` rows (gathering each batch into the workspace) and per
batch runs the forward pass only (MODE_FORWARD), loss and gradients (MODE_GRADS) or a whole SGD
step (MODE_STEP). A single step is the one-batch case, an epoch the many-batch one, so the epoch
fast path runs exactly the step's code, and one compilation per dtype serves every call.

Matrix products: below ``blas_min`` rows they are hand loop nests that stream each weight row
once and fuse the derivative and the SGD update into the same pass; from ``blas_min`` rows up
they are BLAS gemm calls on contiguous views (transposes are flags, never copies; NumPy's own
OpenBLAS, see the BLAS section), the update riding on the weight-gradient gemm, with the
elementwise work fused around them in single passes.

The loop kernels that have ``prange`` loops are plain Python functions jitted twice, serially and
with ``parallel=True`` (:data:`SERIAL`, :data:`PARALLEL`); the orchestration (:func:`_run`,
:func:`_batch_step`) is written once, takes a flavour's kernels as arguments and is inlined into
that flavour's entry point, where the kernels become direct calls.
Threads (``numba_parallel``): the prange loops run only on the hand-loop path (few rows, no
BLAS). On the BLAS path the cores belong to BLAS's own pool and every loop between the gemm calls
is serial: interleaving Numba's OpenMP pool with OpenBLAS's, both of which spin-wait between
regions, made steps 100x slower on a 2-core machine (each pool waiting out the other's time
slices). The gather, loss and bias-gradient passes are O(B*n) and stay serial in both flavours.
Only the two entry points are cached on disk, and they are distinct functions: Numba keys its
cache by the Python function (not by the ``parallel`` flag), so one function jitted both ways
would share cache entries. A cached entry point carries its callees' machine code, so a process
with a warm cache compiles nothing. Parallel loops run over independent rows only (no parallel
reductions), so results do not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from bpbench.codes import CROSS_ENTROPY, MSE, RELU, SIGMOID, TANH

#: what the kernels dispatch on (codes from :mod:`bpbench.codes`, shared with every kernel);
#: the host refuses any other (:func:`bpbench.codes.require`), and the dispatch raises on one
ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("mse", "cross_entropy")

#: what the entry point does per batch
MODE_GRADS, MODE_STEP, MODE_FORWARD = 0, 1, 2

#: floating-point licences: reassociation and FMA contraction let LLVM vectorise reductions.
#: No 'nnan'/'ninf': sigmoid and the softmax legitimately meet exp() overflow to inf.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: small helpers without prange: one serial compilation shared by both flavours
_helper = njit(fastmath=FASTMATH, nogil=True)
#: the orchestration, which takes a flavour's kernels as arguments: inlined into each entry
#: point, so the kernels become direct calls (a function compiled with dispatcher-typed
#: arguments would hold them as run-time function pointers, which Numba cannot cache)
_inline = njit(inline="always", fastmath=FASTMATH, nogil=True)


# ---------------------------------------------------------------------- layout helpers
def workspace_size(sizes, cap):
    """Elements of the flat workspace for batches of up to ``cap`` rows (host side)."""
    return cap * (sum(sizes) + 2 * max(sizes) + sizes[-1])


def act_offset(sizes, batch_size, layer):
    """Where layer ``layer``'s (batch_size, sizes[layer]) block starts in the workspace."""
    return batch_size * sum(sizes[:layer])


def param_offsets(sizes):
    """Start of each layer's W in the flat parameter array, plus the total (host side)."""
    offs = [0]
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        offs.append(offs[-1] + n_in * n_out + n_out)
    return offs


@_helper
def _weights(theta, sizes, layer):
    """(W (n_in, n_out), b (n_out,)) views of layer ``layer`` in a flat parameter array."""
    o = 0
    for k in range(layer):
        o += sizes[k] * sizes[k + 1] + sizes[k + 1]
    n_in, n_out = sizes[layer], sizes[layer + 1]
    W = theta[o:o + n_in * n_out].reshape((n_in, n_out))
    b = theta[o + n_in * n_out:o + n_in * n_out + n_out]
    return W, b


@_helper
def _act_view(ws, sizes, B, layer):
    """(B, sizes[layer]) view of layer ``layer``'s values (0: the batch's inputs)."""
    o = 0
    for k in range(layer):
        o += B * sizes[k]
    return ws[o:o + B * sizes[layer]].reshape((B, sizes[layer]))


@_helper
def _tail_offset(ws, sizes, B):
    """Start of the delta buffers: after every layer's values."""
    o = 0
    for k in range(len(sizes)):
        o += B * sizes[k]
    return o


@_helper
def _delta_view(ws, sizes, B, which, width):
    """(B, width) view of ping-pong delta buffer ``which`` (0 or 1)."""
    maxw = 0
    for k in range(len(sizes)):
        maxw = max(maxw, sizes[k])
    o = _tail_offset(ws, sizes, B) + which * B * maxw
    return ws[o:o + B * width].reshape((B, width))


@_helper
def _target_view(ws, sizes, B):
    """(B, K) view of the batch's mse targets, after the two delta buffers."""
    maxw = 0
    for k in range(len(sizes)):
        maxw = max(maxw, sizes[k])
    K = sizes[len(sizes) - 1]
    o = _tail_offset(ws, sizes, B) + 2 * B * maxw
    return ws[o:o + B * K].reshape((B, K))


# ---------------------------------------------------------------------- elementwise math
@_helper
def _derivative(a, one, code):
    """f'(z) from the activation's output a = f(z) (relu'(0) = 0); ``one`` = 1 of a's dtype."""
    if code == RELU:
        return one if a > 0 else one - one
    if code == TANH:
        return one - a * a
    if code == SIGMOID:
        return a * (one - a)
    raise ValueError("unknown activation code")


@_helper
def _bias_activate_row(z, b, code, activate):
    """z += b, then the activation in place (when ``activate``), one pass over a row."""
    n = z.shape[0]
    # constants of the array's dtype: a bare 0 or 1 would promote float32 math to float64
    zero = z.dtype.type(0)
    one = z.dtype.type(1)
    if not activate:
        for j in range(n):
            z[j] += b[j]
    elif code == RELU:
        for j in range(n):
            z[j] = max(z[j] + b[j], zero)
    elif code == TANH:
        for j in range(n):
            z[j] = np.tanh(z[j] + b[j])
    elif code == SIGMOID:
        for j in range(n):
            z[j] = one / (one + np.exp(-(z[j] + b[j])))
    else:
        raise ValueError("unknown activation code")


@_helper
def _times_derivative_row(d, a, code):
    """d *= f'(z) with f' written in terms of the output a = f(z), one row."""
    n = d.shape[0]
    zero = d.dtype.type(0)
    one = d.dtype.type(1)
    if code == RELU:
        for j in range(n):
            d[j] = d[j] if a[j] > zero else zero
    elif code == TANH:
        for j in range(n):
            d[j] *= one - a[j] * a[j]
    elif code == SIGMOID:
        for j in range(n):
            d[j] *= a[j] * (one - a[j])
    else:
        raise ValueError("unknown activation code")


@_helper
def _row_times_matrix(h, W, z):
    """z = h @ W for one row: h (n_in,), W (n_in, n_out), z (n_out,).

    Only rows of W whose h[p] is nonzero are read (after a relu about half are zero), four per
    sweep over z: one load and one store of z per four multiply-adds instead of per one (the
    sweep is bound by L1 traffic, not by FMA throughput).
    """
    n_in, n_out = W.shape
    for j in range(n_out):
        z[j] = 0
    k = 0  # nonzero rows collected so far: q0..q3
    q0 = q1 = q2 = 0
    for p in range(n_in):
        if h[p] == 0:
            continue
        if k == 0:
            q0 = p
        elif k == 1:
            q1 = p
        elif k == 2:
            q2 = p
        else:
            x0, x1, x2, x3 = h[q0], h[q1], h[q2], h[p]
            w0, w1, w2, w3 = W[q0], W[q1], W[q2], W[p]
            for j in range(n_out):
                z[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
            k = -1
        k += 1
    for r in range(k):  # the last one to three nonzero rows
        q = q0 if r == 0 else (q1 if r == 1 else q2)
        x = h[q]
        w = W[q]
        for j in range(n_out):
            z[j] += x * w[j]


@_helper
def _add_outer_row(g, col, D, scale):
    """g += scale * (col @ D): g (n,), col (B,) (a column of H), D (B, n); four rows a sweep."""
    B, n = D.shape
    i = 0
    while i + 4 <= B:
        c0, c1, c2, c3 = scale * col[i], scale * col[i + 1], scale * col[i + 2], scale * col[i + 3]
        d0, d1, d2, d3 = D[i], D[i + 1], D[i + 2], D[i + 3]
        for j in range(n):
            g[j] += c0 * d0[j] + c1 * d1[j] + c2 * d2[j] + c3 * d3[j]
        i += 4
    while i < B:
        c = scale * col[i]
        d = D[i]
        for j in range(n):
            g[j] += c * d[j]
        i += 1


@_helper
def _rows_dot(D, w, out, zero):
    """out[i] = D[i] @ w for every row of D (B, n); four rows share each load of w."""
    B, n = D.shape
    i = 0
    while i + 4 <= B:
        d0, d1, d2, d3 = D[i], D[i + 1], D[i + 2], D[i + 3]
        s0 = s1 = s2 = s3 = zero
        for j in range(n):
            wj = w[j]
            s0 += d0[j] * wj
            s1 += d1[j] * wj
            s2 += d2[j] * wj
            s3 += d3[j] * wj
        out[i], out[i + 1], out[i + 2], out[i + 3] = s0, s1, s2, s3
        i += 4
    while i < B:
        d = D[i]
        s = zero
        for j in range(n):
            s += d[j] * w[j]
        out[i] = s
        i += 1



# ---------------------------------------------------------------------- BLAS
# Numba's own np.dot calls SciPy's BLAS (in SciPy's wheels a separately built OpenBLAS); the
# floor the step is judged against is NumPy's. On this project's machines NumPy's OpenBLAS is up
# to 1.75x faster on the skinny products of small batches, and cblas_?gemm's alpha/beta let the
# SGD update ride on the weight-gradient product (W += -lr H^T dZ, no dW buffer, no extra
# pass). So the kernels call NumPy's cblas_sgemm/dgemm directly when NumPy bundles OpenBLAS
# (its wheels do), by symbol name registered with LLVM at import: a cached kernel refers to the
# name, not to an address, so it stays cacheable. Otherwise they fall back to np.dot.

#: CBLAS enum values
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _find_numpy_openblas():
    """NumPy's bundled OpenBLAS (ILP64, ``scipy_`` symbol prefix) as a ctypes CDLL, or None."""
    base = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/libscipy_openblas64_*", "numpy/.dylibs/libscipy_openblas64_*"):
        for path in sorted(glob.glob(os.path.join(base, pattern))):
            try:
                lib = ctypes.CDLL(path)
                lib.scipy_cblas_sgemm64_, lib.scipy_cblas_dgemm64_  # noqa: B018 (both present)
            except (OSError, AttributeError):
                continue
            return lib
    return None


#: the OpenBLAS the kernels call (None: NumPy links another BLAS; np.dot is used instead)
BLAS_LIBRARY = _find_numpy_openblas()
#: compile-time switch of the kernels (a module global, frozen into the compiled code)
HAVE_CBLAS = BLAS_LIBRARY is not None
if HAVE_CBLAS:
    for _name, _fn in (("bpbench_cblas_sgemm", BLAS_LIBRARY.scipy_cblas_sgemm64_),
                       ("bpbench_cblas_dgemm", BLAS_LIBRARY.scipy_cblas_dgemm64_)):
        llvm.add_symbol(_name, ctypes.cast(_fn, ctypes.c_void_p).value)


def _gemm_signature(real):
    # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc (ILP64: int64 sizes)
    return types.void(types.int32, types.int32, types.int32, types.int64, types.int64,
                      types.int64, real, types.voidptr, types.int64, types.voidptr, types.int64,
                      real, types.voidptr, types.int64)


_cblas_sgemm = types.ExternalFunction("bpbench_cblas_sgemm", _gemm_signature(types.float32))
_cblas_dgemm = types.ExternalFunction("bpbench_cblas_dgemm", _gemm_signature(types.float64))


@intrinsic
def _data_pointer(typingctx, arr):
    """The address of an array's first element, as void*."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, cgutils.voidptr_t)
    return types.voidptr(arr), codegen


@_helper
def _gemm(A, trans_a, B, trans_b, C, alpha, beta):
    """C = alpha op(A) op(B) + beta C for C-ordered A, B, C; op(X) = X.T when trans_x.

    NumPy's cblas_?gemm when available; else np.dot (only alpha = 1, beta = 0 is needed then).
    """
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if HAVE_CBLAS:
        ta = _TRANS if trans_a else _NO_TRANS
        tb = _TRANS if trans_b else _NO_TRANS
        if C.itemsize == 4:
            _cblas_sgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float32(alpha), _data_pointer(A),
                         A.shape[1], _data_pointer(B), B.shape[1], np.float32(beta),
                         _data_pointer(C), n)
        else:
            _cblas_dgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float64(alpha), _data_pointer(A),
                         A.shape[1], _data_pointer(B), B.shape[1], np.float64(beta),
                         _data_pointer(C), n)
    elif trans_a:  # transposes are F-ordered views: np.dot hands them to BLAS as such, no copy
        np.dot(A.T, B, C)
    elif trans_b:
        np.dot(A, B.T, C)
    else:
        np.dot(A, B, C)


# ---------------------------------------------------------------------- layers
def _affine(H, W, b, Z, code, activate, use_blas):
    """Z = f(H @ W + b). H (B, n_in), W (n_in, n_out), b (n_out,), Z (B, n_out)."""
    B = H.shape[0]
    if use_blas:
        _gemm(H, False, W, False, Z, 1.0, 0.0)
        # serial on purpose: BLAS owns the cores here (see "Threads" in the module docstring)
        for i in range(B):
            _bias_activate_row(Z[i], b, code, activate)
    else:
        for i in prange(B):
            _row_times_matrix(H[i], W, Z[i])
            _bias_activate_row(Z[i], b, code, activate)


def _output_delta(out, y_idx, Y, loss_code, delta, rowloss):
    """Loss of the batch and dL/d(out) into ``delta`` (B, K); one pass per row.

    cross_entropy: softmax of the row shifted by its max (log-sum-exp, so logits of 1e4 stay
    finite), minus the one-hot target, over B; mse: 2 (out - Y) / (B K). Row losses are summed
    in float64 serially, so the loss does not depend on the thread count.
    """
    B, K = out.shape
    if loss_code == MSE:
        scale = 2.0 / (B * K)
        for i in range(B):
            s = 0.0
            for j in range(K):
                diff = out[i, j] - Y[i, j]
                s += float(diff) * float(diff)
                delta[i, j] = diff * scale
            rowloss[i] = s
        total = 0.0
        for i in range(B):
            total += rowloss[i]
        return total / (B * K)
    if loss_code != CROSS_ENTROPY:
        raise ValueError("unknown loss code")
    inv_b = 1.0 / B
    for i in range(B):
        m = out[i, 0]
        for j in range(1, K):
            m = max(m, out[i, j])
        s = 0.0
        for j in range(K):
            e = np.exp(out[i, j] - m)
            delta[i, j] = e
            s += float(e)
        t = y_idx[i]
        rowloss[i] = np.log(s) + float(m) - float(out[i, t])
        scale = inv_b / s
        for j in range(K):
            delta[i, j] *= scale
        delta[i, t] -= inv_b
    total = 0.0
    for i in range(B):
        total += rowloss[i]
    return total / B


@_helper
def _column_sums(D, out):
    """out[j] = sum_i D[i, j] (rows in order: deterministic)."""
    B, n = D.shape
    for j in range(n):
        out[j] = 0
    for i in range(B):
        for j in range(n):
            out[j] += D[i, j]


def _backward_small(H, dZ, W, b, dW, db, dH, code_below, need_dh, lr, mode):
    """One layer's backward for few rows, one pass over W's rows.

    For every row p of W (in parallel): dH[:, p] = (dZ @ W[p]) * f'(H[:, p]) when ``need_dh``,
    then either dW[p] = H[:, p] @ dZ (MODE_GRADS) or W[p] -= lr H[:, p] @ dZ (MODE_STEP, W[p]
    is no longer needed once dH[:, p] is done). Bias: db = colsum(dZ), or b -= lr colsum(dZ).
    """
    B, n_out = dZ.shape
    n_in = W.shape[0]
    zero = W.dtype.type(0)
    one = W.dtype.type(1)
    for p in prange(n_in):
        w = W[p]
        h = H[:, p]
        # an input that is zero for every row (a relu's, often, for a batch of one) adds
        # nothing to W[p]'s gradient and, below a relu, gets a zero gradient itself
        silent = True
        for i in range(B):
            if h[i] != 0:
                silent = False
                break
        if need_dh:
            col = dH[:, p]
            if silent and code_below == RELU:
                for i in range(B):
                    col[i] = zero
            else:
                _rows_dot(dZ, w, col, zero)
                for i in range(B):
                    col[i] *= _derivative(h[i], one, code_below)
        if mode == MODE_STEP:
            if not silent:
                _add_outer_row(w, h, dZ, -lr)
        else:
            g = dW[p]
            for j in range(n_out):
                g[j] = 0
            _add_outer_row(g, h, dZ, one)
    _column_sums(dZ, db)
    if mode == MODE_STEP:
        for j in range(n_out):
            b[j] -= lr * db[j]


def _backward_blas(H, dZ, W, b, dW, db, dH, code_below, need_dh, lr, mode):
    """One layer's backward with BLAS: dH = (dZ W^T) * f'(H), then dW = H^T dZ or the update.

    MODE_STEP with NumPy's cblas: W += -lr H^T dZ as one gemm (beta = 1), after dH has used W;
    without it, dW (scratch) then a fused update pass. Transposes are flags, never copies.
    """
    _column_sums(dZ, db)
    if need_dh:
        _gemm(dZ, False, W, True, dH, 1.0, 0.0)
        for i in range(dH.shape[0]):  # serial: BLAS owns the cores (module docstring, Threads)
            _times_derivative_row(dH[i], H[i], code_below)
    if mode != MODE_STEP:
        _gemm(H, True, dZ, False, dW, 1.0, 0.0)
        return
    if HAVE_CBLAS:
        _gemm(H, True, dZ, False, W, -lr, 1.0)
    else:
        _gemm(H, True, dZ, False, dW, 1.0, 0.0)
        for p in range(W.shape[0]):
            w = W[p]
            g = dW[p]
            for j in range(w.shape[0]):
                w[j] -= lr * g[j]
    for j in range(b.shape[0]):
        b[j] -= lr * db[j]


def _gather(X_all, y_all, Y_all, order, start, Xb, yb, Yb, loss_code, mode):
    """Copy the batch's rows order[start:start+B] of X_all (and its targets) into Xb/yb/Yb.

    Bounds-safe whatever the caller checked: a row index outside X_all, or a class index
    outside the output layer, raises instead of reading (or later indexing) out of bounds.
    """
    B, n_in = Xb.shape
    n_rows = X_all.shape[0]
    K = Yb.shape[1]
    for r in range(B):
        src = order[start + r]
        if src < 0 or src >= n_rows:
            raise IndexError("order holds a row index outside X")
        for c in range(n_in):
            Xb[r, c] = X_all[src, c]
        if mode != MODE_FORWARD:
            if loss_code == MSE:
                for c in range(K):
                    Yb[r, c] = Y_all[src, c]
            else:
                label = y_all[src]
                if label < 0 or label >= K:
                    raise IndexError("y holds a class index outside the output layer")
                yb[r] = label


_gather_serial = njit(fastmath=FASTMATH, nogil=True)(_gather)
_output_delta_serial = njit(fastmath=FASTMATH, nogil=True)(_output_delta)
_backward_blas_serial = njit(fastmath=FASTMATH, nogil=True)(_backward_blas)


class Kernels:
    """The loop kernels with ``prange``, jitted for one flavour (serial or parallel)."""

    def __init__(self, **options):
        jit = njit(fastmath=FASTMATH, nogil=True, **options)
        # serial in both flavours: gather and the loss pass are O(B*n) work, and on the BLAS
        # path the cores belong to BLAS (module docstring, Threads)
        self.gather = _gather_serial
        self.affine = jit(_affine)
        self.output_delta = _output_delta_serial
        self.backward_small = jit(_backward_small)
        self.backward_blas = _backward_blas_serial  # BLAS owns the cores on this path


#: prange loops run as plain loops
SERIAL = Kernels()
#: prange loops run on Numba's thread pool (NUMBA_NUM_THREADS / numba.set_num_threads)
PARALLEL = Kernels(parallel=True)


# ---------------------------------------------------------------------- whole passes
@_inline
def _batch_step(affine, output_delta, backward_small, backward_blas, theta, grads, sizes, codes,
                loss_code, ws, B, yb, rowloss, lr, mode, blas_min):
    """Forward, then (unless MODE_FORWARD) loss, backward and (MODE_STEP) the SGD update.

    The first four arguments are one flavour's kernels (:class:`Kernels`). The batch's inputs
    are already in the workspace (layer 0), its labels in ``yb``/the target view. MODE_GRADS
    writes the gradients into ``grads`` (theta's layout) and leaves theta alone; MODE_STEP
    updates theta layer by layer from the top, each W as soon as the chain rule no longer needs
    it (``grads`` is scratch then). Returns the loss (0 for MODE_FORWARD).
    """
    L = len(sizes) - 1
    use_blas = B >= blas_min
    lr_t = theta.dtype.type(lr)  # in the dtype, so float32 updates stay float32 math
    for layer in range(L):
        W, b = _weights(theta, sizes, layer)
        affine(_act_view(ws, sizes, B, layer), W, b, _act_view(ws, sizes, B, layer + 1),
               codes[layer], layer < L - 1, use_blas)
    if mode == MODE_FORWARD:
        return 0.0
    loss = output_delta(_act_view(ws, sizes, B, L), yb[:B], _target_view(ws, sizes, B),
                        loss_code, _delta_view(ws, sizes, B, L % 2, sizes[L]), rowloss)
    # dL/dz of layer l+1 sits in ping-pong buffer (l+1) % 2; dH of layer l goes to l % 2.
    # The first layer needs no input gradient (need_dh False: its dH view is never touched).
    for layer in range(L - 1, -1, -1):
        W, b = _weights(theta, sizes, layer)
        dW, db = _weights(grads, sizes, layer)
        H = _act_view(ws, sizes, B, layer)
        dZ = _delta_view(ws, sizes, B, (layer + 1) % 2, sizes[layer + 1])
        dH = _delta_view(ws, sizes, B, layer % 2, sizes[layer])
        code_below = codes[max(layer - 1, 0)]
        if use_blas:
            backward_blas(H, dZ, W, b, dW, db, dH, code_below, layer > 0, lr_t, mode)
        else:
            backward_small(H, dZ, W, b, dW, db, dH, code_below, layer > 0, lr_t, mode)
    return loss


@_inline
def _run(gather, affine, output_delta, backward_small, backward_blas, theta, grads, sizes,
         codes, loss_code, X_all, y_all, Y_all, order, batch_size, lr, mode, ws, yb, rowloss,
         losses, blas_min):
    """Walk ``order`` in batches of ``batch_size`` rows; losses[k] = loss of batch k.

    Each batch's rows of X_all (and targets) are gathered into the workspace, then
    :func:`_batch_step` runs on them. One batch (order = arange(B)) is a single step.
    """
    n = order.shape[0]
    k = 0
    for start in range(0, n, batch_size):
        B = min(batch_size, n - start)
        gather(X_all, y_all, Y_all, order, start, _act_view(ws, sizes, B, 0), yb,
               _target_view(ws, sizes, B), loss_code, mode)
        losses[k] = _batch_step(affine, output_delta, backward_small, backward_blas, theta,
                                grads, sizes, codes, loss_code, ws, B, yb, rowloss, lr, mode,
                                blas_min)
        k += 1


# ---------------------------------------------------------------------- entry points
# Only these two are cached on disk (see the module docstring for why they are two functions).
# Numba resolves module globals, not attributes of Python objects: one name per kernel.
_gather_s, _affine_s, _delta_s, _small_s, _blas_s = (
    SERIAL.gather, SERIAL.affine, SERIAL.output_delta, SERIAL.backward_small, SERIAL.backward_blas)
_gather_p, _affine_p, _delta_p, _small_p, _blas_p = (
    PARALLEL.gather, PARALLEL.affine, PARALLEL.output_delta, PARALLEL.backward_small,
    PARALLEL.backward_blas)


@njit(cache=True, fastmath=FASTMATH, nogil=True)
def run_serial(theta, grads, sizes, codes, loss_code, X_all, y_all, Y_all, order, batch_size,
               lr, mode, ws, yb, rowloss, losses, blas_min):
    """Serial entry point; arguments as :func:`_run` after the kernels."""
    _run(_gather_s, _affine_s, _delta_s, _small_s, _blas_s, theta, grads, sizes, codes,
         loss_code, X_all, y_all, Y_all, order, batch_size, lr, mode, ws, yb, rowloss, losses,
         blas_min)


@njit(cache=True, fastmath=FASTMATH, nogil=True)
def run_parallel(theta, grads, sizes, codes, loss_code, X_all, y_all, Y_all, order,
                 batch_size, lr, mode, ws, yb, rowloss, losses, blas_min):
    """Parallel entry point (its kernels' prange loops use Numba's thread pool)."""
    _run(_gather_p, _affine_p, _delta_p, _small_p, _blas_p, theta, grads, sizes, codes,
         loss_code, X_all, y_all, Y_all, order, batch_size, lr, mode, ws, yb, rowloss, losses,
         blas_min)
