"""Numba kernels shared by ``numba`` (one thread) and ``numba_parallel`` (all of Numba's threads).

Layout (every call is one compiled function with uniform types):

- ``theta``: every parameter in one flat 1-D array of the net's dtype, layer by layer
  ``W_0 (n_0*n_1, row-major), b_0 (n_1), W_1, b_1, ...``; ``grads`` has the same layout.
- ``meta``: int64, ``[L, loss code, max chunks, max shares, sizes (L+1), codes (L), sync,
  labels]`` (:func:`meta_layout`). Activation codes are data, not types, so every activation
  combination shares one compiled specialisation per dtype. ``sync`` holds the phase counters of
  :mod:`bpbench.impls._numba_sync`; ``labels`` the gathered class indices of an epoch's batch.
- ``ws``: one flat workspace of the dtype for batches of up to ``cap`` rows (:func:`ws_size`):
  the activations of layers 0..L (``B*n_l`` each; layer 0 holds an epoch's gathered inputs), two
  ping-pong delta buffers, the gathered mse targets and, for the hand loops, two buffers of
  per-chunk partial products. Views are carved out per batch, so a smaller batch (an epoch's
  last) reuses it.
- ``out``: float64, ``[row losses (cap) | batch losses]``.
- Targets: ``y_all`` int64 (N,) class indices (cross_entropy), ``Y_all`` (N, K) of the dtype
  (mse); the unused one is an empty array, so both losses share one specialisation too.
- ``order``: the rows of an epoch in order of use; empty for a single step (the rows are used
  where they are, nothing is gathered).

There is ONE entry point per flavour, :func:`run_serial` / :func:`run_parallel`: it walks the rows
in batches of ``batch_size`` and runs per batch the forward pass only (MODE_FORWARD), loss and
gradients (MODE_GRADS) or a whole SGD step (MODE_STEP). A single step is the one-batch case, an
epoch the many-batch one, so the epoch fast path runs exactly the step's code.

Each batch is one *program*, a fixed sequence of phases cut into chunks whose bounds depend on the
shapes and on ``meta``'s two chunk limits only, run by :func:`_worker` on every thread (the phase
scheduler of :mod:`bpbench.impls._numba_sync`): ``run_parallel`` starts one ``prange`` region per
batch with one iteration per thread; ``run_serial`` calls the worker once, as thread 0 of 1.
Two programs, by batch size (``blas_min``, chosen by the host):

- **hand loops** (batch 1; up to 3 rows for nets with a layer beyond 2 MB): chunk c of a layer
  owns a block of rows of W (the same rows every step, so they stay in its core's cache).
  Forward: the chunk first finishes its block of the layer's input (the previous layer's
  per-chunk partial products summed in chunk order, bias, activation), then writes its partial
  product ``H[:, rows] @ W[rows, :]``. Backward: for each of its rows p,
  ``dH[:, p] = (dZ W[p]) f'(H[:, p])`` then ``W[p] -= lr H[:, p]^T dZ`` while W[p] is in L1.
  Rows whose inputs are all zero (a relu's, about half at batch 1) add nothing and are skipped.
- **BLAS**: NumPy's OpenBLAS ``gemm`` (:mod:`bpbench.impls._numba_blas`) on tiles, one thread
  each, sized so that OpenBLAS runs them with its small-matrix kernels where it can
  (:func:`_blas_program`). Forward: tiles of W's columns, bias pre-filled (beta=1), activation
  on the tile. Loss: tiles of batch rows. Backward: tiles of W's rows, each
  ``dH[:, rows] = (dZ W[rows]^T) f'(H[:, rows])`` then ``W[rows] += -lr H[:, rows]^T dZ`` (the
  SGD update riding on the weight-gradient gemm, beta=1) and its share of the bias.

Threads: every loop runs on Numba's threads (NUMBA_NUM_THREADS / numba.set_num_threads), BLAS
calls included, one tile per call; the host sets OpenBLAS to one thread for the step, so there is
one pool that owns the cores (OpenBLAS's and Numba's pools both spin-wait and, mixed, made steps
100x slower on a 2-core machine). Results do not depend on the number of threads: chunk bounds do
not, reductions over chunks run in chunk order, and batch losses are summed serially.

Caching: only the two entry points are cached on disk. Numba keys a cache entry by the entry
point's own source file, so they are closures over :data:`FINGERPRINT`, a hash of every kernel
module's source: editing any of them invalidates the cache (Numba hashes closure contents into
the index key).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from numba import njit, prange

from bpbench.codes import CROSS_ENTROPY, MSE, RELU, SIGMOID, TANH

from . import _numba_blas as blas
from . import _numba_sync as sync
from ._numba_blas import gemm
from ._numba_sync import claim, done, first_chunk, wait

#: what the kernels dispatch on (codes from :mod:`bpbench.codes`, shared with every kernel);
#: the host refuses any other (:func:`bpbench.codes.require`), and the dispatch raises on one
ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("mse", "cross_entropy")

#: what the entry point does per batch
MODE_GRADS, MODE_STEP, MODE_FORWARD = 0, 1, 2

#: floating-point licences: reassociation and FMA contraction let LLVM vectorise reductions.
#: No 'nnan'/'ninf': sigmoid and the softmax legitimately meet exp() overflow to inf.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: hand-loop chunks: at least this many rows of W each (fewer chunks for narrow layers)
HAND_ROWS_MIN = np.int64(64)
#: OpenBLAS runs a product of at most this many multiply-adds (m*n*k) with its small-matrix
#: kernels (no packing): ~50 GMAC/s on one core of this machine at few rows, against 10-40 for
#: the packed path (``docs/numba.md``). Backward products are cut into tiles that stay below it.
SMALL_PRODUCT = np.int64(1_000_000)
#: forward tiles of W's columns: TILE_BYTES wide (OpenBLAS's small kernels run a tile whose width
#: is not a multiple of 64 floats 3-8x slower), twice that once products are large anyway
TILE_BYTES = np.int64(256)
#: backward tiles of W's rows: at most TILE_SPLIT rows while products are small (several chunks
#: to share out), TILE_LARGE rows once they are large anyway
TILE_SPLIT, TILE_LARGE = np.int64(64), np.int64(128)
#: the input gradient dZ W[rows]^T reaches OpenBLAS as a transposed-A product, which its small
#: kernels take only when rows * B <= SMALL_TN (its permit for that case; 2-4x faster at 6-64
#: rows than the packed path)
SMALL_TN = np.int64(1200)
#: tiles of batch rows (loss, gather): at least this many rows
TILE_ROWS_MIN = np.int64(32)
#: chunks per phase at most
MAX_CHUNKS = 64
assert MAX_CHUNKS <= sync.MAX_CHUNKS

#: compiled functions; every one is called with one signature only (compile time: a constant
#: argument would be typed as a literal and compile a second specialisation, so call sites pass
#: numpy scalars such as :data:`_NO`, never a bare ``0`` or ``True``)
_k = njit(fastmath=FASTMATH, nogil=True, error_model="numpy")
#: functions with one call site (the programs, the gather), inlined into it: Numba optimises and
#: emits code for every compiled function together with all it calls, so each extra level of
#: whole-program functions compiles the program once more
_once = njit(fastmath=FASTMATH, nogil=True, inline="always", error_model="numpy")
_NO, _YES = np.bool_(False), np.bool_(True)
#: where the layer widths start in ``meta``, after [L, loss code, max chunks, max shares]: chunks
#: that make products faster (small OpenBLAS products) are capped by the first, chunks that only
#: share work out among threads (hand loops, large products, rows of the loss) by the second
_S = 4
_ZERO, _ONE, _TWO = np.int64(0), np.int64(1), np.int64(2)
#: the activation code argument of the output layer (affine: no activation)
_OUTPUT = np.int64(-1)


# ---------------------------------------------------------------------- layout
def meta_layout(n_layers, cap):
    """Offsets in ``meta``: (sizes, codes, sync, labels, total length) for L layers, cap rows."""
    sizes = _S
    codes = sizes + n_layers + 1
    sync_at = codes + n_layers
    labels = sync_at + max_phases.py_func(n_layers) * sync.SLOTS
    return sizes, codes, sync_at, labels, labels + cap


def ws_size(sizes, cap, blas_min):
    """Elements of the workspace for batches of up to ``cap`` rows (host side): activations,
    two delta buffers, mse targets, partial products (hand loops only)."""
    nmax = max(sizes)
    few = min(cap, max(blas_min - 1, 0))
    return cap * (sum(sizes) + 2 * nmax + sizes[-1]) + 2 * MAX_CHUNKS * few * nmax


def param_offsets(sizes):
    """Start of each layer's W in the flat parameter array, plus the total (host side)."""
    offs = [0]
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        offs.append(offs[-1] + n_in * n_out + n_out)
    return offs


def act_offset(sizes, batch_size, layer):
    """Where layer ``layer``'s (batch_size, sizes[layer]) block starts in the workspace."""
    return batch_size * sum(sizes[:layer])


@_k
def max_phases(L):
    """Phase counters a batch needs: a program's (L forward, 1 loss, L backward), then the
    gather's."""
    return 2 * L + 2


@_k
def _n_max(meta, L):
    m = 0
    for k in range(L + 1):
        m = max(m, meta[_S + k])
    return m


@_k
def _weights(theta, meta, layer):
    """(W (n_in, n_out), b (n_out,)) views of layer ``layer`` in a flat parameter array."""
    o = 0
    for k in range(layer):
        o += meta[_S + k] * meta[_S + 1 + k] + meta[_S + 1 + k]
    n_in, n_out = meta[_S + layer], meta[_S + 1 + layer]
    W = theta[o:o + n_in * n_out].reshape((n_in, n_out))
    b = theta[o + n_in * n_out:o + n_in * n_out + n_out]
    return W, b


@_k
def _act(ws, meta, B, layer):
    """(B, sizes[layer]) view of layer ``layer``'s values in the workspace."""
    o = 0
    for k in range(layer):
        o += B * meta[_S + k]
    return ws[o:o + B * meta[_S + layer]].reshape((B, meta[_S + layer]))


@_k
def _tail_start(meta, L, B):
    """Where the buffers after the activations start in the workspace."""
    return B * _sum_sizes(meta, L + 1)


@_k
def _delta_at(meta, L, B, k):
    """Start of delta buffer k (0 or 1): (B, n) row-major, n <= n_max."""
    return _tail_start(meta, L, B) + k * B * _n_max(meta, L)


@_k
def _delta(ws, meta, L, B, k, width):
    """(B, width) view of delta buffer k."""
    o = _delta_at(meta, L, B, k)
    return ws[o:o + B * width].reshape((B, width))


@_k
def _targets(ws, meta, L, B):
    """(B, K) view of the gathered mse targets."""
    o = _tail_start(meta, L, B) + 2 * B * _n_max(meta, L)
    return ws[o:o + B * meta[_S + L]].reshape((B, meta[_S + L]))


@_k
def _partials(ws, meta, L, B, which):
    """(MAX_CHUNKS, B, n_max) view of partial-product buffer ``which`` (0 or 1)."""
    nmax = _n_max(meta, L)
    o = _tail_start(meta, L, B) + 2 * B * nmax + B * meta[_S + L] + which * MAX_CHUNKS * B * nmax
    return ws[o:o + MAX_CHUNKS * B * nmax].reshape((MAX_CHUNKS, B, nmax))


@_k
def _split(n, parts, c):
    """Bounds [lo, hi) of part c when n items are cut into ``parts`` near-equal parts."""
    return (c * n) // parts, ((c + 1) * n) // parts


@_k
def _n_chunks(n, per_chunk_min, max_chunks):
    """How many chunks n items are cut into: >= per_chunk_min each, at most max_chunks."""
    c = n // per_chunk_min
    return max(1, min(c, max_chunks))


# ---------------------------------------------------------------------- elementwise math
@_k
def _bias_activate_rows(Z, b, i0, i1, code, activate):
    """Z[i] = f(Z[i] + b) for rows i0..i1 (f only when ``activate``), one pass per row."""
    n = Z.shape[1]
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    for i in range(i0, i1):
        if not activate:
            for j in range(n):
                Z[i, j] += b[j]
        elif code == RELU:
            for j in range(n):
                Z[i, j] = max(Z[i, j] + b[j], zero)
        elif code == TANH:
            for j in range(n):
                Z[i, j] = np.tanh(Z[i, j] + b[j])
        elif code == SIGMOID:
            for j in range(n):
                Z[i, j] = one / (one + np.exp(-(Z[i, j] + b[j])))
        else:
            raise ValueError("unknown activation code")


@_k
def _derivative(a, one, code):
    """f'(z) from the activation's output a = f(z) (relu'(0) = 0); ``one``: 1 in a's dtype."""
    if code == RELU:
        return one if a > 0 else one - one
    if code == TANH:
        return one - a * a
    if code == SIGMOID:
        return a * (one - a)
    raise ValueError("unknown activation code")


@_k
def _loss_rows(out, y_all, Y_all, y0, loss_code, delta, rowloss, i0, i1, B):
    """Row losses of rows i0..i1 of ``out`` (B, K) into ``rowloss`` and dL/d(out) into ``delta``.

    Targets of row i: ``y_all[y0 + i]`` (class index) or ``Y_all[y0 + i]`` (mse row).
    cross_entropy: softmax of the row shifted by its max (log-sum-exp, so logits of 1e4 stay
    finite), minus the one-hot target, over B; mse: 2 (out - Y) / (B K). Row losses are float64;
    the batch loss is their sum in row order (:func:`_batch_loss`), whatever the thread count.
    """
    K = out.shape[1]
    if loss_code == MSE:
        scale = 2.0 / (B * K)
        for i in range(i0, i1):
            s = 0.0
            for j in range(K):
                diff = out[i, j] - Y_all[y0 + i, j]
                s += float(diff) * float(diff)
                delta[i, j] = diff * scale
            rowloss[i] = s
        return
    if loss_code != CROSS_ENTROPY:
        raise ValueError("unknown loss code")
    inv_b = 1.0 / B
    for i in range(i0, i1):
        m = out[i, 0]
        for j in range(1, K):
            m = max(m, out[i, j])
        s = 0.0
        for j in range(K):
            e = np.exp(out[i, j] - m)
            delta[i, j] = e
            s += float(e)
        t = y_all[y0 + i]
        rowloss[i] = np.log(s) + float(m) - float(out[i, t])
        scale = inv_b / s
        for j in range(K):
            delta[i, j] *= scale
        delta[i, t] -= inv_b


@_k
def _batch_loss(rowloss, B, K, loss_code):
    """The batch loss from its row losses, summed in row order."""
    total = 0.0
    for i in range(B):
        total += rowloss[i]
    return total / (B * K) if loss_code == MSE else total / B


# ---------------------------------------------------------------------- few rows: hand loops
# _urange: an inner loop over a sub-range [lo, hi) runs on uint64 indices. Numba wraps negative
# int64 indices around (a compare and select per access), which LLVM can drop only when it
# proves the index >= 0: for range(0, n) it can, for range(lo, hi) with an unknown lo it cannot,
# and the loop stays scalar. Unsigned indices carry no such fix-up.
@_k
def _hand_forward(H, W, P, c, r0, r1):
    """P[c, i, :n_out] = H[i, r0:r1] @ W[r0:r1, :] for every row i of H (B, n_in).

    Rows of W whose inputs are zero (after a relu, about half at batch 1) are not read. Four
    rows of W per sweep over the output row: one load and store of P per four multiply-adds.
    """
    B = H.shape[0]
    n_out = W.shape[1]
    for i in range(B):
        z = P[c, i]
        for j in range(n_out):
            z[j] = 0
        k = 0  # nonzero inputs collected so far: q0..q2, then the sweep
        q0 = q1 = q2 = r0
        for p in range(r0, r1):
            if H[i, p] == 0:
                continue
            if k == 0:
                q0 = p
            elif k == 1:
                q1 = p
            elif k == 2:
                q2 = p
            else:
                x0, x1, x2, x3 = H[i, q0], H[i, q1], H[i, q2], H[i, p]
                for j in range(n_out):
                    z[j] += x0 * W[q0, j] + x1 * W[q1, j] + x2 * W[q2, j] + x3 * W[p, j]
                k = -1
            k += 1
        for r in range(k):  # the last one to three nonzero inputs
            q = q0 if r == 0 else (q1 if r == 1 else q2)
            x = H[i, q]
            for j in range(n_out):
                z[j] += x * W[q, j]


@_k
def _hand_finish_inputs(P, n_parts, b, H, r0, r1, code):
    """H[:, r0:r1] = f(sum over chunks of P[:, :, r0:r1] + b[r0:r1]), chunks in order."""
    B = H.shape[0]
    zero = H.dtype.type(0)
    one = H.dtype.type(1)
    lo, hi = np.uint64(r0), np.uint64(r1)  # unsigned: see _urange
    for i in range(B):
        for p in range(lo, hi):
            H[i, p] = b[p]
        for c in range(n_parts):
            for p in range(lo, hi):
                H[i, p] += P[c, i, p]
        if code == RELU:
            for p in range(lo, hi):
                H[i, p] = max(H[i, p], zero)
        elif code == TANH:
            for p in range(lo, hi):
                H[i, p] = np.tanh(H[i, p])
        elif code == SIGMOID:
            for p in range(lo, hi):
                H[i, p] = one / (one + np.exp(-H[i, p]))
        elif code >= 0:
            raise ValueError("unknown activation code")
        # code < 0: the output layer, no activation


@_k
def _hand_backward(H, dZ, W, dW, dH, r0, r1, code_below, need_dh, lr, mode):
    """Backward of rows r0..r1 of one layer's W, one pass over each row W[p].

    ``dH[:, p] = (dZ @ W[p]) * f'(H[:, p])`` when ``need_dh``; then ``W[p] -= lr H[:, p]^T dZ``
    (MODE_STEP; W[p] is no longer needed once dH[:, p] has used it) or ``dW[p] = H[:, p]^T dZ``.
    """
    B, n_out = dZ.shape
    zero = W.dtype.type(0)
    one = W.dtype.type(1)
    for p in range(r0, r1):
        silent = True  # every input of this row zero: it adds nothing to W[p]'s gradient
        for i in range(B):
            if H[i, p] != 0:
                silent = False
                break
        if need_dh:
            if silent and code_below == RELU:  # and f'(0) = 0: no gradient flows down
                for i in range(B):
                    dH[i, p] = zero
            else:
                for i in range(B):
                    s = zero
                    for j in range(n_out):
                        s += dZ[i, j] * W[p, j]
                    dH[i, p] = s * _derivative(H[i, p], one, code_below)
        if mode == MODE_STEP:
            if silent:
                continue
            i = 0
            while i + 2 <= B:
                h0, h1 = -lr * H[i, p], -lr * H[i + 1, p]
                for j in range(n_out):
                    W[p, j] += h0 * dZ[i, j] + h1 * dZ[i + 1, j]
                i += 2
            if i < B:
                h0 = -lr * H[i, p]
                for j in range(n_out):
                    W[p, j] += h0 * dZ[i, j]
        else:
            for j in range(n_out):
                dW[p, j] = zero
            if silent:
                continue
            for i in range(B):
                h0 = H[i, p]
                for j in range(n_out):
                    dW[p, j] += h0 * dZ[i, j]


@_k
def _bias_step(dZ, b, db, j0, j1, lr, mode):
    """db[j0:j1] = column sums of dZ (rows in order); b -= lr db there too (MODE_STEP)."""
    B = dZ.shape[0]
    lo, hi = np.uint64(j0), np.uint64(j1)  # unsigned: see _urange
    for j in range(lo, hi):
        db[j] = 0
    for i in range(B):
        for j in range(lo, hi):
            db[j] += dZ[i, j]
    if mode == MODE_STEP:
        for j in range(lo, hi):
            b[j] -= lr * db[j]


@_once
def _hand_program(t, T, theta, grads, ws, meta, H0, y_all, Y_all, y0, out, lr, B, mode):
    """One batch of few rows on thread t of T (module docstring, "few rows")."""
    L = meta[0]
    loss_code = meta[1]
    max_chunks = meta[3]  # hand-loop chunks only share work out
    s = meta[_S + L + 1 + L:]  # the phase counters
    phase = _ZERO
    n_parts = _ZERO  # chunks of the previous layer's partial products
    for layer in range(L):
        W, b = _weights(theta, meta, layer)
        n_in = W.shape[0]
        H = H0 if layer == 0 else _act(ws, meta, B, layer)
        P = _partials(ws, meta, L, B, layer % 2)
        Pin = _partials(ws, meta, L, B, (layer + 1) % 2)
        n_chunks = _n_chunks(n_in, HAND_ROWS_MIN, max_chunks)
        c, cursor = claim(s, phase, n_chunks, first_chunk(t, T, n_chunks), _ZERO)
        while c >= 0:
            r0, r1 = _split(n_in, n_chunks, c)
            if layer > 0:
                _, b_in = _weights(theta, meta, layer - 1)
                _hand_finish_inputs(Pin, n_parts, b_in, H, r0, r1, meta[_S + L + 1 + layer - 1])
            _hand_forward(H, W, P, c, r0, r1)
            done(s, phase)
            c, cursor = claim(s, phase, n_chunks, first_chunk(t, T, n_chunks), cursor)
        wait(s, phase, n_chunks)
        phase += 1
        n_parts = n_chunks
    # the output layer's values, then (unless only the forward pass is asked) the loss
    K = meta[_S + L]
    Z = _act(ws, meta, B, L)
    c, cursor = claim(s, phase, _ONE, _ZERO, _ZERO)
    if c >= 0:
        _, b_out = _weights(theta, meta, L - 1)
        _hand_finish_inputs(_partials(ws, meta, L, B, (L - 1) % 2), n_parts, b_out, Z, _ZERO, K,
                            _OUTPUT)
        if mode != MODE_FORWARD:
            _loss_rows(Z, y_all, Y_all, y0, loss_code, _delta(ws, meta, L, B, L % 2, K), out,
                       _ZERO, B, B)
        done(s, phase)
    wait(s, phase, _ONE)
    phase += 1
    if mode == MODE_FORWARD:
        return
    lr_t = theta.dtype.type(lr)  # in the dtype, so float32 updates stay float32 math
    # dL/dz of layer l+1 sits in delta buffer (l+1) % 2; dH of layer l goes to l % 2
    for layer in range(L - 1, -1, -1):
        W, b = _weights(theta, meta, layer)
        dW, db = _weights(grads, meta, layer)
        n_in, n_out = W.shape
        H = H0 if layer == 0 else _act(ws, meta, B, layer)
        dZ = _delta(ws, meta, L, B, (layer + 1) % 2, n_out)
        dH = _delta(ws, meta, L, B, layer % 2, n_in)
        code_below = meta[_S + L + 1 + max(layer - 1, 0)]
        n_chunks = _n_chunks(n_in, HAND_ROWS_MIN, max_chunks)
        c, cursor = claim(s, phase, n_chunks, first_chunk(t, T, n_chunks), _ZERO)
        while c >= 0:
            r0, r1 = _split(n_in, n_chunks, c)
            _hand_backward(H, dZ, W, dW, dH, r0, r1, code_below, layer > 0, lr_t, mode)
            if c == 0:
                _bias_step(dZ, b, db, _ZERO, n_out, lr_t, mode)
            done(s, phase)
            c, cursor = claim(s, phase, n_chunks, first_chunk(t, T, n_chunks), cursor)
        wait(s, phase, n_chunks)
        phase += 1


# ---------------------------------------------------------------------- BLAS tiles
@_k
def _row_tiles(B, max_chunks):
    """How many tiles of batch rows (the loss and the gather): TILE_ROWS_MIN rows each at least."""
    return _n_chunks(B, TILE_ROWS_MIN, max_chunks)


@_k
def _row_tiles_of_w(n, B, K, max_chunks, max_shares):
    """How many tiles n rows of W are cut into (near-equal) for the backward's products of B
    batch rows and inner length K: while they can be small (SMALL_PRODUCT, SMALL_TN) at most
    TILE_SPLIT rows and max_chunks tiles; else TILE_LARGE rows and at most max_shares tiles."""
    rows = min(TILE_SPLIT, SMALL_TN // B, SMALL_PRODUCT // max(B * K, 1))
    if rows >= 16:
        return max(1, min((n + rows - 1) // rows, max_chunks))
    return max(1, min((n + TILE_LARGE - 1) // TILE_LARGE, max_shares))


@_k
def _column_tile_width(n, B, K, itemsize, max_chunks, max_large):
    """Width of the forward's tiles of W's columns (all but the last): TILE_BYTES wide while
    products are small (widened to keep at most max_chunks tiles), twice that once they are large
    anyway (widened to keep at most max_large)."""
    unit = TILE_BYTES // itemsize
    small = B * K * unit <= SMALL_PRODUCT
    width = unit if small else 2 * unit
    limit = max_chunks if small else max_large
    while (n + width - 1) // width > limit:
        width += unit
    return width


@_k
def _activate_cols(Z, j0, j1, code):
    """Z[:, j0:j1] = f(Z[:, j0:j1]) in place (the bias is already in)."""
    B = Z.shape[0]
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    lo, hi = np.uint64(j0), np.uint64(j1)  # unsigned: see _urange
    for i in range(B):
        if code == RELU:
            for j in range(lo, hi):
                Z[i, j] = max(Z[i, j], zero)
        elif code == TANH:
            for j in range(lo, hi):
                Z[i, j] = np.tanh(Z[i, j])
        elif code == SIGMOID:
            for j in range(lo, hi):
                Z[i, j] = one / (one + np.exp(-Z[i, j]))
        else:
            raise ValueError("unknown activation code")


@_k
def _times_derivative_cols(D, A, j0, j1, code):
    """D[:, j0:j1] *= f'(z), f' written in terms of the output A = f(z) (relu'(0) = 0)."""
    B = D.shape[0]
    zero = D.dtype.type(0)
    one = D.dtype.type(1)
    lo, hi = np.uint64(j0), np.uint64(j1)  # unsigned: see _urange
    for i in range(B):
        if code == RELU:
            for j in range(lo, hi):
                D[i, j] = D[i, j] if A[i, j] > zero else zero
        elif code == TANH:
            for j in range(lo, hi):
                D[i, j] *= one - A[i, j] * A[i, j]
        elif code == SIGMOID:
            for j in range(lo, hi):
                D[i, j] *= A[i, j] * (one - A[i, j])
        else:
            raise ValueError("unknown activation code")


@_once
def _blas_program(t, T, theta, grads, ws, meta, H0, y_all, Y_all, y0, out, lr, B, mode):
    """One batch of two rows or more on thread t of T (module docstring, "BLAS").

    Forward: chunk c of a layer owns columns of W: ``Z[:, cols] = f(H W[:, cols] + b[cols])``.
    Loss: tiles of batch rows. Backward: chunk c owns rows of W: ``dH[:, rows] =
    (dZ W[rows]^T) f'(H[:, rows])``, then ``W[rows] += -lr H[:, rows]^T dZ`` (W[rows] is no
    longer needed), and its share of the bias. No chunk needs another's result within a phase.
    Tile sizes keep OpenBLAS on its small-matrix kernels where they can (SMALL_PRODUCT,
    SMALL_TN, TILE_BYTES). Without NumPy's cblas (np.dot needs whole contiguous blocks) every
    phase but the loss is one chunk.
    """
    L = meta[0]
    loss_code = meta[1]
    max_chunks = meta[2]
    # without NumPy's cblas, np.dot takes whole contiguous blocks only: one chunk per layer
    small = max_chunks if blas.HAVE_CBLAS else _ONE
    large = meta[3] if blas.HAVE_CBLAS else _ONE
    s = meta[_S + L + 1 + L:]
    flat_x = H0.reshape(H0.size)
    phase = _ZERO
    for layer in range(L):
        W, b = _weights(theta, meta, layer)
        n_in, n_out = W.shape
        Z = _act(ws, meta, B, layer + 1)
        flat_h = flat_x if layer == 0 else ws
        h_at = 0 if layer == 0 else B * _sum_sizes(meta, layer)
        z_at = B * _sum_sizes(meta, layer + 1)
        w_at = _param_offset(meta, layer)
        code = meta[_S + L + 1 + layer]
        width = _column_tile_width(n_out, B, n_in, theta.itemsize, small, large)
        n_ct = (n_out + width - 1) // width
        c, cursor = claim(s, phase, n_ct, first_chunk(t, T, n_ct), _ZERO)
        while c >= 0:
            j0, j1 = c * width, min(n_out, (c + 1) * width)
            if blas.HAVE_CBLAS:  # bias first, then Z += H W (beta 1): no separate bias pass
                _fill_bias_cols(Z, b, j0, j1)
                gemm(_NO, _NO, B, j1 - j0, n_in, 1.0, flat_h, h_at, n_in, theta, w_at + j0,
                     n_out, 1.0, ws, z_at + j0, n_out)
                if layer < L - 1:
                    _activate_cols(Z, j0, j1, code)
            else:
                gemm(_NO, _NO, B, n_out, n_in, 1.0, flat_h, h_at, n_in, theta, w_at, n_out,
                     0.0, ws, z_at, n_out)
                _bias_activate_rows(Z, b, _ZERO, B, code, layer < L - 1)
            done(s, phase)
            c, cursor = claim(s, phase, n_ct, first_chunk(t, T, n_ct), cursor)
        wait(s, phase, n_ct)
        phase += 1
    if mode == MODE_FORWARD:
        return
    K = meta[_S + L]
    Z = _act(ws, meta, B, L)
    delta = _delta(ws, meta, L, B, L % 2, K)
    n_rt = _row_tiles(B, meta[3])
    c, cursor = claim(s, phase, n_rt, first_chunk(t, T, n_rt), _ZERO)
    while c >= 0:
        i0, i1 = _split(B, n_rt, c)
        _loss_rows(Z, y_all, Y_all, y0, loss_code, delta, out, i0, i1, B)
        done(s, phase)
        c, cursor = claim(s, phase, n_rt, first_chunk(t, T, n_rt), cursor)
    wait(s, phase, n_rt)
    phase += 1
    lr_t = theta.dtype.type(lr)
    # dL/dz of layer l+1 sits in delta buffer (l+1) % 2; dH of layer l goes to l % 2
    for layer in range(L - 1, -1, -1):
        W, b = _weights(theta, meta, layer)
        dW, db = _weights(grads, meta, layer)
        n_in, n_out = W.shape
        H = H0 if layer == 0 else _act(ws, meta, B, layer)
        flat_h = flat_x if layer == 0 else ws
        h_at = 0 if layer == 0 else B * _sum_sizes(meta, layer)
        w_at = _param_offset(meta, layer)
        dz_at = _delta_at(meta, L, B, (layer + 1) % 2)
        dh_at = _delta_at(meta, L, B, layer % 2)
        dZ = _delta(ws, meta, L, B, (layer + 1) % 2, n_out)
        dH = _delta(ws, meta, L, B, layer % 2, n_in)
        code_below = meta[_S + L + 1 + max(layer - 1, 0)]
        n_rt = _row_tiles_of_w(n_in, B, n_out, small, large)
        c, cursor = claim(s, phase, n_rt, first_chunk(t, T, n_rt), _ZERO)
        while c >= 0:
            p0, p1 = _split(n_in, n_rt, c)
            if layer > 0:  # dH[:, rows] = dZ W[rows]^T, then f' (before W[rows] changes)
                gemm(_NO, _YES, B, p1 - p0, n_out, 1.0, ws, dz_at, n_out, theta,
                     w_at + p0 * n_out, n_out, 0.0, ws, dh_at + p0, n_in)
                _times_derivative_cols(dH, H, p0, p1, code_below)
            if mode == MODE_STEP and blas.HAVE_CBLAS:  # W[rows] += -lr H[:, rows]^T dZ
                gemm(_YES, _NO, p1 - p0, n_out, B, -lr, flat_h, h_at + p0, n_in, ws, dz_at,
                     n_out, 1.0, theta, w_at + p0 * n_out, n_out)
            else:
                gemm(_YES, _NO, p1 - p0, n_out, B, 1.0, flat_h, h_at + p0, n_in, ws, dz_at,
                     n_out, 0.0, grads, w_at + p0 * n_out, n_out)
                if mode == MODE_STEP:  # the np.dot fallback: one chunk, then the update
                    for p in range(n_in):
                        for j in range(n_out):
                            W[p, j] -= lr_t * dW[p, j]
            j0, j1 = _split(n_out, n_rt, c)  # the bias: this chunk's share of its entries
            _bias_step(dZ, b, db, j0, j1, lr_t, mode)
            done(s, phase)
            c, cursor = claim(s, phase, n_rt, first_chunk(t, T, n_rt), cursor)
        wait(s, phase, n_rt)
        phase += 1


@_k
def _fill_bias_cols(Z, b, j0, j1):
    """Z[:, j0:j1] = b[j0:j1] on every row."""
    lo, hi = np.uint64(j0), np.uint64(j1)  # unsigned: see _urange
    for i in range(Z.shape[0]):
        for j in range(lo, hi):
            Z[i, j] = b[j]


@_k
def _sum_sizes(meta, layer):
    """sizes[0] + ... + sizes[layer - 1]."""
    o = 0
    for k in range(layer):
        o += meta[_S + k]
    return o


@_k
def _param_offset(meta, layer):
    """Start of layer ``layer``'s W in theta."""
    o = 0
    for k in range(layer):
        o += meta[_S + k] * meta[_S + 1 + k] + meta[_S + 1 + k]
    return o


@_k
def _worker(t, T, theta, grads, ws, meta, X_all, y_all, Y_all, order, out, lr, B, start,
            mode, blas_min):
    """Thread t of T: gather the batch's rows (an epoch) or take them in place (a step), then
    run the batch's program."""
    L = meta[0]
    n0 = X_all.shape[1]
    if order.shape[0] == 0:  # a single step: the rows where they are
        H0 = X_all.reshape(X_all.size)[start * n0:(start + B) * n0].reshape((B, n0))
        ys, Ys, y0 = y_all, Y_all, start
    else:
        H0 = _act(ws, meta, B, _ZERO)
        Ys = _targets(ws, meta, L, B)
        ys = meta[_S + L + 1 + L + max_phases(L) * sync.SLOTS:]
        y0 = _ZERO
        _gather(t, T, meta, X_all, y_all, Y_all, order, start, H0, ys, Ys, mode)
    if B >= blas_min:
        _blas_program(t, T, theta, grads, ws, meta, H0, ys, Ys, y0, out, lr, B, mode)
    else:
        _hand_program(t, T, theta, grads, ws, meta, H0, ys, Ys, y0, out, lr, B, mode)


@_once
def _gather(t, T, meta, X_all, y_all, Y_all, order, start, H0, labels, Yb, mode):
    """Rows order[start:start+B] of X_all (and their targets) into H0/labels/Yb: a phase of its
    own on tiles of batch rows, counted in the last phase slot."""
    L = meta[0]
    B = H0.shape[0]
    s = meta[_S + L + 1 + L:]
    phase = max_phases(L) - 1
    n_tiles = _n_chunks(B, TILE_ROWS_MIN, meta[3])
    c, cursor = claim(s, phase, n_tiles, first_chunk(t, T, n_tiles), _ZERO)
    while c >= 0:
        i0, i1 = _split(B, n_tiles, c)
        for i in range(i0, i1):
            src = order[start + i]
            for j in range(X_all.shape[1]):
                H0[i, j] = X_all[src, j]
            if mode != MODE_FORWARD:
                if meta[1] == MSE:
                    for j in range(Yb.shape[1]):
                        Yb[i, j] = Y_all[src, j]
                else:
                    labels[i] = y_all[src]
        done(s, phase)
        c, cursor = claim(s, phase, n_tiles, first_chunk(t, T, n_tiles), cursor)
    wait(s, phase, n_tiles)


@_k
def _check_batch(meta, X_all, y_all, order, start, B, mode):
    """Refuse (IndexError) a row index outside X or a class index outside the output layer.

    The public methods validate first; this keeps the kernels bounds-safe whatever their caller
    checked. Serial, before the batch's parallel region (no exception leaves a worker).
    """
    K = meta[_S + meta[0]]
    n_rows = X_all.shape[0]
    cross_entropy = meta[1] == CROSS_ENTROPY and mode != MODE_FORWARD
    for i in range(B):
        src = start + i
        if order.shape[0] > 0:
            src = order[start + i]
            if src < 0 or src >= n_rows:
                raise IndexError("order holds a row index outside X")
        elif src >= n_rows:
            raise IndexError("the batch runs past the rows of X")
        if cross_entropy:
            label = y_all[src]
            if label < 0 or label >= K:
                raise IndexError("y holds a class index outside the output layer")


@_k
def _reset(meta):
    """Zero the phase counters before a batch."""
    L = meta[0]
    at = _S + L + 1 + L
    for phase in range(max_phases(L)):
        for k in range(at + phase * sync.SLOTS, at + phase * sync.SLOTS + MAX_CHUNKS + 1):
            meta[k] = 0


def _fingerprint():
    """A hash of the source of every module whose compiled code the entry points contain."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("_numba_kernels.py", "_numba_sync.py", "_numba_blas.py"):
        with open(os.path.join(here, name), "rb") as f:
            h.update(f.read())
    return int(h.hexdigest()[:15], 16)


#: a hash of the kernel modules' sources; see "Caching" in the module docstring
FINGERPRINT = _fingerprint()


def _entry_points(fingerprint):
    """The two cached entry points, closures over ``fingerprint`` (so it keys their cache)."""

    def run_serial(theta, grads, ws, meta, X_all, y_all, Y_all, order, out, lr, batch_size,
                   mode, blas_min, n_threads):
        """Every batch on the calling thread; arguments as in the module docstring
        (``n_threads`` is ignored: the serial flavour takes the parallel one's arguments).
        Returns the last batch's loss."""
        _ = fingerprint
        n = order.shape[0] if order.shape[0] > 0 else X_all.shape[0]
        cap = out.shape[0] - (n + batch_size - 1) // batch_size
        k = 0
        for start in range(0, n, batch_size):
            B = min(batch_size, n - start)
            _check_batch(meta, X_all, y_all, order, start, B, mode)
            _reset(meta)
            _worker(_ZERO, _ONE, theta, grads, ws, meta, X_all, y_all, Y_all, order, out, lr, B,
                    start, mode, blas_min)
            out[cap + k] = _batch_loss(out, B, meta[_S + meta[0]], meta[1])
            k += 1
        return out[cap + k - 1]

    def run_parallel(theta, grads, ws, meta, X_all, y_all, Y_all, order, out, lr, batch_size,
                     mode, blas_min, n_threads):
        """Every batch on ``n_threads`` threads (0: Numba's current count): one prange region
        per batch. Returns the last batch's loss."""
        _ = fingerprint
        n = order.shape[0] if order.shape[0] > 0 else X_all.shape[0]
        cap = out.shape[0] - (n + batch_size - 1) // batch_size
        k = 0
        for start in range(0, n, batch_size):
            B = min(batch_size, n - start)
            _check_batch(meta, X_all, y_all, order, start, B, mode)
            _reset(meta)
            T = n_threads if n_threads > 0 else sync.num_threads()
            for t in prange(T):
                # np.int64: the gufunc's index is unsigned, and a second signature would compile
                # the whole program twice
                _worker(np.int64(t), T, theta, grads, ws, meta, X_all, y_all, Y_all, order, out,
                        lr, B, start, mode, blas_min)
            out[cap + k] = _batch_loss(out, B, meta[_S + meta[0]], meta[1])
            k += 1
        return out[cap + k - 1]

    return (njit(cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")(run_serial),
            njit(cache=True, fastmath=FASTMATH, nogil=True, parallel=True,
                 error_model="numpy")(run_parallel))


run_serial, run_parallel = _entry_points(FINGERPRINT)
