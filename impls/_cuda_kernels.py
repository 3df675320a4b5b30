"""CUDA kernels of the ``cuda`` implementation (Numba ``@cuda.jit``), and their launch table.

Host glue lives in :mod:`bpbench.impls.numba_cuda`; this module holds only device code, the
constants that shape it, and :func:`signatures`, the one table of argument types the host launches
with (the PTX test compiles exactly these, so the two cannot drift).

Layout: every matrix is C-contiguous, rows are samples (B) or a weight's input units (N).

Matrix products: one block of ``TILE x TILE`` threads computes a ``BLOCK x BLOCK`` tile of the
output (``BLOCK = TILE * MICRO``); each thread keeps a ``MICRO x MICRO`` micro-tile in registers.
Its rows are ``ty + TILE*r`` and its columns ``tx + TILE*c`` (strided, not adjacent), so that
neighbouring threads read neighbouring shared-memory words (no bank conflicts) and write
neighbouring global addresses (coalesced). The inner dimension is walked ``TILE`` at a time
through two zero-padded shared tiles, ``As[i, k] = A[row0+i, k0+k]`` and
``Bs[k, j] = B[k0+k, col0+j]``, loaded with consecutive threads on consecutive global addresses
whatever the layout (that is why each product has its own loader), with two ``syncthreads`` per
step. Three products, no transpose ever materialised:

- ``forward_layer``:  Z  = act(H @ W + b)              (B, M), epilogue: bias + activation
- ``input_grad``:     dH = (dZ @ W.T) * act'(H)        (B, N), epilogue: activation derivative
- ``weight_grad``:    dW = H.T @ dZ, db = sum_rows(dZ)  (N, M), epilogue: store, or SGD update

Split-K: when the output has too few tiles to fill the GPU (small batches; a weight gradient of a
narrow layer over a large batch), the host launches ``nsplit`` blocks per output tile along
``blockIdx.z``, each walking one slice of the inner dimension. Each writes its partial tile to a
workspace, and the last block to finish a tile (an atomic ticket per tile, after a
``threadfence``) adds the partials in slice order, so the sum is deterministic, and runs the
epilogue; it also resets the ticket for the next launch. All in one launch.

Shared tiles and accumulators have the inputs' dtype, and every constant is made in that dtype
(``X.dtype.type(1)``): a float32 kernel does no float64 arithmetic (the PTX test checks).
"""

from __future__ import annotations

import math

from numba import cuda, types

from bpbench.codes import IDENTITY, RELU, SIGMOID, TANH

#: threads per block side of the matrix products, and the inner-dimension step
TILE = 16
#: each thread computes a MICRO x MICRO micro-tile of the output
MICRO = 4
#: output rows/columns per block of a matrix product
BLOCK = TILE * MICRO
#: shared tiles stored transposed get one padding column (a constant: shapes must be literals)
BLOCK_PADDED = BLOCK + 1
TILE_PADDED = TILE + 1
#: workspace elements per (output tile, inner slice) of a split product: the partial tile plus
#: one row for the weight gradient's partial bias sums
SLICE = (BLOCK + 1) * BLOCK
#: split a product's inner dimension until about this many blocks run (two per SM of an H100)
SPLIT_TARGET_BLOCKS = 264
#: fewest TILE-deep steps per inner slice
SPLIT_MIN_STEPS = 2
#: most threads of the one block that reduces the loss (a power of two)
LOSS_THREADS = 256
#: threads per block side of the row-gather kernel
GATHER_TILE = 16

#: what the kernels dispatch on (codes from :mod:`bpbench.codes`, shared with every kernel);
#: the host refuses any other before launching (:func:`bpbench.codes.require`)
ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("mse", "cross_entropy")


# ---------------------------------------------------------------------- device helpers
# Device code cannot raise: an unknown code (which the host never launches with) gives NaN,
# written (x - x) / (x - x) so that it stays in x's dtype, and the loss read back is NaN.
@cuda.jit(device=True, inline=True)
def _activate(z, act, zero, one):
    """f(z) for the activation code ``act``; zero and one are constants of z's dtype."""
    if act == RELU:
        return z if z > zero else zero
    if act == TANH:
        return math.tanh(z)
    if act == SIGMOID:
        # exp of -|z| only, so it never overflows: on a GPU exp(1e30) is inf and 1 / (1 + inf)
        # is right, but the simulator's math.exp raises OverflowError (found by the fuzz suite)
        e = math.exp(-abs(z))
        s = one / (one + e)
        return s if z >= zero else e * s
    if act == IDENTITY:
        return z
    return (z - z) / (z - z)


@cuda.jit(device=True, inline=True)
def _derivative(a, act, zero, one):
    """f'(z) written in terms of the activation's output a = f(z); relu'(0) = 0."""
    if act == RELU:
        return one if a > zero else zero
    if act == TANH:
        return one - a * a
    if act == SIGMOID:
        return a * (one - a)
    if act == IDENTITY:
        return one
    return (a - a) / (a - a)


@cuda.jit(device=True, inline=True)
def _clear(acc, zero):
    """acc[:, :] = zero (loops over constants: unrolled, so acc stays in registers)."""
    for r in range(MICRO):
        for c in range(MICRO):
            acc[r, c] = zero


@cuda.jit(device=True, inline=True)
def _multiply_tiles(As, Bs, acc, a, bv, ty, tx):
    """acc[r, c] += sum_k As[ty + TILE*r, k] * Bs[k, tx + TILE*c] over one TILE-deep step."""
    for k in range(TILE):
        for r in range(MICRO):
            a[r] = As[ty + TILE * r, k]
        for c in range(MICRO):
            bv[c] = Bs[k, tx + TILE * c]
        for r in range(MICRO):
            for c in range(MICRO):
                acc[r, c] += a[r] * bv[c]


@cuda.jit(device=True, inline=True)
def _inner_steps(inner, nsplit):
    """(first, stop) TILE-deep steps of the inner dimension for this block's slice."""
    steps = (inner + TILE - 1) // TILE
    per = (steps + nsplit - 1) // nsplit
    first = cuda.blockIdx.z * per
    return first, min(first + per, steps)


@cuda.jit(device=True, inline=True)
def _combine(acc, P, counters, tile, nsplit, ty, tx, zero):
    """Split-K: publish this block's partial tile; True in the last block of the tile, whose
    acc then holds the sum of all slices' partials (in slice order), else False.

    P: flat workspace, tile-major, slice by slice (SLICE elements each); counters: one int32
    ticket per tile, zero between launches (the last block resets it).
    """
    base = (tile * nsplit + cuda.blockIdx.z) * SLICE
    for r in range(MICRO):
        for c in range(MICRO):
            P[base + (ty + TILE * r) * BLOCK + tx + TILE * c] = acc[r, c]
    cuda.threadfence()  # the partial is visible device-wide before the ticket is taken
    cuda.syncthreads()
    last = cuda.shared.array(1, dtype=types.int32)
    if ty == 0 and tx == 0:
        last[0] = 1 if cuda.atomic.add(counters, tile, 1) == nsplit - 1 else 0
    cuda.syncthreads()
    if last[0] == 0:
        return False
    cuda.threadfence()
    _clear(acc, zero)
    first = tile * nsplit * SLICE
    for z in range(nsplit):
        for r in range(MICRO):
            for c in range(MICRO):
                acc[r, c] += P[first + z * SLICE + (ty + TILE * r) * BLOCK + tx + TILE * c]
    if ty == 0 and tx == 0:
        counters[tile] = 0
    return True


@cuda.jit(device=True, inline=True)
def _load_rows(As, A, row0, k0, ty, tx, zero):
    """As[i, k] = A[row0 + i, k0 + k] (A row-major: threads along k read consecutive words)."""
    nrows, ncols = A.shape
    for m in range(MICRO):
        i = ty + TILE * m
        r = row0 + i
        c = k0 + tx
        As[i, tx] = A[r, c] if r < nrows and c < ncols else zero


@cuda.jit(device=True, inline=True)
def _load_cols(Bs, Bm, k0, col0, ty, tx, zero):
    """Bs[k, j] = Bm[k0 + k, col0 + j] (threads along j read consecutive words)."""
    nrows, ncols = Bm.shape
    r = k0 + ty
    for m in range(MICRO):
        j = tx + TILE * m
        c = col0 + j
        Bs[ty, j] = Bm[r, c] if r < nrows and c < ncols else zero


# ---------------------------------------------------------------------- matrix products
@cuda.jit
def forward_layer(H, W, b, Z, act, P, counters, nsplit):
    """Z = act(H @ W + b). H (B, N), W (N, M), b (M,), Z (B, M); act: activation code.

    Grid: (ceil(B / BLOCK), ceil(M / BLOCK), nsplit) blocks of (TILE, TILE) threads; P,
    counters: the split-K workspace and tickets (unused when nsplit == 1).
    """
    As = cuda.shared.array((BLOCK, TILE), dtype=H.dtype)
    Bs = cuda.shared.array((TILE, BLOCK), dtype=H.dtype)
    acc = cuda.local.array((MICRO, MICRO), dtype=H.dtype)
    a = cuda.local.array(MICRO, dtype=H.dtype)
    bv = cuda.local.array(MICRO, dtype=H.dtype)
    zero = H.dtype.type(0)
    one = H.dtype.type(1)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row0 = cuda.blockIdx.x * BLOCK
    col0 = cuda.blockIdx.y * BLOCK
    _clear(acc, zero)
    first, stop = _inner_steps(H.shape[1], nsplit)
    for step in range(first, stop):
        k0 = step * TILE
        _load_rows(As, H, row0, k0, ty, tx, zero)
        _load_cols(Bs, W, k0, col0, ty, tx, zero)
        cuda.syncthreads()
        _multiply_tiles(As, Bs, acc, a, bv, ty, tx)
        cuda.syncthreads()
    if nsplit > 1:
        tile = cuda.blockIdx.x * cuda.gridDim.y + cuda.blockIdx.y
        if not _combine(acc, P, counters, tile, nsplit, ty, tx, zero):
            return
    for r in range(MICRO):
        row = row0 + ty + TILE * r
        if row < Z.shape[0]:
            for c in range(MICRO):
                col = col0 + tx + TILE * c
                if col < Z.shape[1]:
                    Z[row, col] = acc[r, c] + b[col]
    if act != IDENTITY:
        # A second pass over the values this thread just wrote (cached): fused into the loop
        # above, the inlined tanh/exp made that loop too big for the compiler to unroll, and
        # acc, indexed by loop counters, went to local memory (the PTX test catches that).
        for r in range(MICRO):
            row = row0 + ty + TILE * r
            if row < Z.shape[0]:
                for c in range(MICRO):
                    col = col0 + tx + TILE * c
                    if col < Z.shape[1]:
                        Z[row, col] = _activate(Z[row, col], act, zero, one)


@cuda.jit
def input_grad(dZ, W, H, dH, act, P, counters, nsplit):
    """dH = (dZ @ W.T) * act'(H): the delta of the layer below.

    dZ (B, M) delta of this layer; W (N, M) its weights; H (B, N) the activation output of the
    layer below (act is that layer's activation code); dH (B, N). W.T is read in place:
    ``Bs[k, j] = W[col0 + j, k0 + k]``, threads along k for coalescing; Bs has one padding
    column so that this transposing store does not hit one shared-memory bank 16 times.
    Grid: (ceil(B / BLOCK), ceil(N / BLOCK), nsplit) blocks of (TILE, TILE) threads (split-K
    as in forward_layer).
    """
    As = cuda.shared.array((BLOCK, TILE), dtype=dZ.dtype)
    Bs = cuda.shared.array((TILE, BLOCK_PADDED), dtype=dZ.dtype)
    acc = cuda.local.array((MICRO, MICRO), dtype=dZ.dtype)
    a = cuda.local.array(MICRO, dtype=dZ.dtype)
    bv = cuda.local.array(MICRO, dtype=dZ.dtype)
    zero = dZ.dtype.type(0)
    one = dZ.dtype.type(1)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row0 = cuda.blockIdx.x * BLOCK
    col0 = cuda.blockIdx.y * BLOCK
    n_units, inner = W.shape
    _clear(acc, zero)
    first, stop = _inner_steps(inner, nsplit)
    for step in range(first, stop):
        k0 = step * TILE
        _load_rows(As, dZ, row0, k0, ty, tx, zero)
        k = k0 + tx
        for m in range(MICRO):
            j = ty + TILE * m
            n = col0 + j
            Bs[tx, j] = W[n, k] if n < n_units and k < inner else zero
        cuda.syncthreads()
        _multiply_tiles(As, Bs, acc, a, bv, ty, tx)
        cuda.syncthreads()
    if nsplit > 1:
        tile = cuda.blockIdx.x * cuda.gridDim.y + cuda.blockIdx.y
        if not _combine(acc, P, counters, tile, nsplit, ty, tx, zero):
            return
    for r in range(MICRO):
        row = row0 + ty + TILE * r
        if row < dH.shape[0]:
            for c in range(MICRO):
                col = col0 + tx + TILE * c
                if col < dH.shape[1]:
                    dH[row, col] = acc[r, c] * _derivative(H[row, col], act, zero, one)


@cuda.jit
def weight_grad(H, dZ, G, g, lr, update, P, counters, nsplit):
    """dW = H.T @ dZ and db = dZ summed over rows; stored, or applied as an SGD step.

    H (B, N) the layer's input; dZ (B, M) its delta. ``update == 0``: G (N, M) and g (M,)
    receive dW and db. ``update == 1``: G, g are the layer's W and b and get
    ``W -= lr * dW``, ``b -= lr * db`` in place (the gradient never touches global memory).
    H.T is read in place: ``As[i, k] = H[k0 + k, row0 + i]``, threads along i (coalesced), As
    padded by one column against bank conflicts. The bias sums come from the dZ tiles already
    in shared memory: in the blocks on the first row of tiles (``blockIdx.x == 0``, uniform over
    the block, so the extra ``syncthreads`` below are safe) thread (ty, tx) adds up row ty of
    each tile, and the TILE partial sums are added at the end.
    Grid: (ceil(N / BLOCK), ceil(M / BLOCK), nsplit) blocks of (TILE, TILE) threads (split-K
    over the batch as in forward_layer; the partial bias sums travel in the workspace's extra row).
    """
    As = cuda.shared.array((BLOCK, TILE_PADDED), dtype=H.dtype)
    Bs = cuda.shared.array((TILE, BLOCK), dtype=H.dtype)
    acc = cuda.local.array((MICRO, MICRO), dtype=H.dtype)
    a = cuda.local.array(MICRO, dtype=H.dtype)
    bv = cuda.local.array(MICRO, dtype=H.dtype)
    bias = cuda.local.array(MICRO, dtype=H.dtype)
    bias_total = cuda.local.array(MICRO, dtype=H.dtype)
    zero = H.dtype.type(0)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row0 = cuda.blockIdx.x * BLOCK
    col0 = cuda.blockIdx.y * BLOCK
    batch, n_units = H.shape
    sums_bias = cuda.blockIdx.x == 0
    _clear(acc, zero)
    for c in range(MICRO):
        bias[c] = zero
    first, stop = _inner_steps(batch, nsplit)
    for step in range(first, stop):
        k0 = step * TILE
        s = k0 + ty
        for m in range(MICRO):
            i = tx + TILE * m
            n = row0 + i
            As[i, ty] = H[s, n] if s < batch and n < n_units else zero
        _load_cols(Bs, dZ, k0, col0, ty, tx, zero)
        cuda.syncthreads()
        if sums_bias:
            for c in range(MICRO):
                bias[c] += Bs[ty, tx + TILE * c]
        _multiply_tiles(As, Bs, acc, a, bv, ty, tx)
        cuda.syncthreads()
    if sums_bias:
        # Bs is free after the loop's last syncthreads: it collects the TILE partial sums
        for c in range(MICRO):
            Bs[ty, tx + TILE * c] = bias[c]
        cuda.syncthreads()
        if ty == 0:
            for c in range(MICRO):
                bias_total[c] = zero
                for k in range(TILE):
                    bias_total[c] += Bs[k, tx + TILE * c]
    if nsplit > 1:
        tile = cuda.blockIdx.x * cuda.gridDim.y + cuda.blockIdx.y
        if sums_bias and ty == 0:  # published with the partial tile, by _combine's fence
            at = (tile * nsplit + cuda.blockIdx.z) * SLICE + BLOCK * BLOCK
            for c in range(MICRO):
                P[at + tx + TILE * c] = bias_total[c]
        if not _combine(acc, P, counters, tile, nsplit, ty, tx, zero):
            return
        if sums_bias and ty == 0:
            at = tile * nsplit * SLICE + BLOCK * BLOCK
            for c in range(MICRO):
                bias_total[c] = zero
            for z in range(nsplit):
                for c in range(MICRO):
                    bias_total[c] += P[at + z * SLICE + tx + TILE * c]
    for r in range(MICRO):
        row = row0 + ty + TILE * r
        if row < G.shape[0]:
            for c in range(MICRO):
                col = col0 + tx + TILE * c
                if col < G.shape[1]:
                    if update:
                        G[row, col] -= lr * acc[r, c]
                    else:
                        G[row, col] = acc[r, c]
    if sums_bias and ty == 0:
        for c in range(MICRO):
            col = col0 + tx + TILE * c
            if col < g.shape[0]:
                if update:
                    g[col] -= lr * bias_total[c]
                else:
                    g[col] = bias_total[c]


# ---------------------------------------------------------------------- losses
@cuda.jit(device=True, inline=True)
def _block_sum(partial, value):
    """Sum of ``value`` over the block (blockDim.x a power of two); the result in thread 0."""
    t = cuda.threadIdx.x
    partial[t] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        cuda.syncthreads()
        half //= 2
    return partial[0]


@cuda.jit
def cross_entropy_grad(out, y, delta, loss, slot):
    """Softmax cross-entropy: loss[slot] = mean_b(-log softmax(out[b])[y[b]]), and its gradient
    delta = (softmax(out) - onehot(y)) / B. out, delta (B, K); y (B,) int64.

    Log-sum-exp: every exponent is shifted by its row's max, so logits of 1e4 stay finite.
    One block; thread t handles rows t, t + blockDim.x, ...; the loss is summed in the block.
    """
    partial = cuda.shared.array(LOSS_THREADS, dtype=out.dtype)
    zero = out.dtype.type(0)
    one = out.dtype.type(1)
    rows, classes = out.shape
    n = out.dtype.type(rows)
    total = zero
    for r in range(cuda.threadIdx.x, rows, cuda.blockDim.x):
        m = out[r, 0]
        for k in range(1, classes):
            m = max(m, out[r, k])
        s = zero
        for k in range(classes):
            s += math.exp(out[r, k] - m)
        label = y[r]
        if label < 0 or label >= classes:  # never read outside the row: a NaN loss instead
            total += (s - s) / (s - s)
            label = 0
        # log(s) - (out[y] - m): two small terms, so float32 loses nothing at logits of 1e4
        # (m + log(s) - out[y] would cancel two numbers near m)
        total += math.log(s) - (out[r, label] - m)
        for k in range(classes):
            p = math.exp(out[r, k] - m) / s
            if k == label:
                p -= one
            delta[r, k] = p / n
    total = _block_sum(partial, total)
    if cuda.threadIdx.x == 0:
        loss[slot] = total / n


@cuda.jit
def mse_grad(out, Y, delta, loss, slot):
    """loss[slot] = mean((out - Y)**2) over all B*K elements; delta = 2 (out - Y) / (B*K).

    out, Y, delta (B, K). One block; threads stride over the flattened elements.
    """
    partial = cuda.shared.array(LOSS_THREADS, dtype=out.dtype)
    zero = out.dtype.type(0)
    two = out.dtype.type(2)
    rows, cols = out.shape
    n = out.dtype.type(rows * cols)
    total = zero
    for e in range(cuda.threadIdx.x, rows * cols, cuda.blockDim.x):
        r = e // cols
        c = e - r * cols
        d = out[r, c] - Y[r, c]
        total += d * d
        delta[r, c] = two * d / n
    total = _block_sum(partial, total)
    if cuda.threadIdx.x == 0:
        loss[slot] = total / n


# ---------------------------------------------------------------------- data movement
@cuda.jit
def gather_rows(src, order, dst):
    """dst[i, :] = src[order[i], :]; src (N, C), order (R,) int64, dst (R, C).

    Grid: (ceil(R / GATHER_TILE), ceil(C / GATHER_TILE)) blocks of (GATHER_TILE, GATHER_TILE),
    threadIdx.x along the columns so that reads and writes of one row are coalesced.
    Bounds-safe: a row index outside src (which the host refuses) gathers NaN, never memory
    outside src.
    """
    i = cuda.blockIdx.x * GATHER_TILE + cuda.threadIdx.y
    j = cuda.blockIdx.y * GATHER_TILE + cuda.threadIdx.x
    if i < dst.shape[0] and j < dst.shape[1]:
        k = order[i]
        if 0 <= k < src.shape[0]:
            dst[i, j] = src[k, j]
        else:
            v = src[0, j]
            dst[i, j] = (v - v) / (v - v)


@cuda.jit
def gather_labels(src, order, dst):
    """dst[i] = src[order[i]]; src (N,) int64, order (R,) int64, dst (R,) int64. 1-D grid.

    Bounds-safe: a row index outside src gathers -1, which the loss kernel turns into NaN.
    """
    i = cuda.grid(1)
    if i < dst.shape[0]:
        k = order[i]
        dst[i] = src[k] if 0 <= k < src.shape[0] else -1


# ---------------------------------------------------------------------- launch table
#: every kernel the host launches, by name
KERNELS = {
    "forward_layer": forward_layer,
    "input_grad": input_grad,
    "weight_grad": weight_grad,
    "cross_entropy_grad": cross_entropy_grad,
    "mse_grad": mse_grad,
    "gather_rows": gather_rows,
    "gather_labels": gather_labels,
}


def signatures(dtype):
    """name -> tuple of Numba argument types the host launches that kernel with, for ``dtype``.

    ``dtype``: "float32" or "float64". Device arrays are C-contiguous, Python ints (activation
    codes, the update flag, loss slots) arrive as int64, the learning rate as a scalar of the
    dtype (the host casts it), split-K tickets as int32. Used by tests/test_cuda_ptx.py to
    compile every kernel to PTX.
    """
    f = getattr(types, str(dtype))
    mat, vec = types.Array(f, 2, "C"), types.Array(f, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    tickets = types.Array(types.int32, 1, "C")
    i64 = types.int64
    split = (vec, tickets, i64)  # workspace, tickets, nsplit
    return {
        "forward_layer": (mat, mat, vec, mat, i64) + split,
        "input_grad": (mat, mat, mat, mat, i64) + split,
        "weight_grad": (mat, mat, mat, vec, f, i64) + split,
        "cross_entropy_grad": (mat, ints, mat, vec, i64),
        "mse_grad": (mat, mat, mat, vec, i64),
        "gather_rows": (mat, ints, mat),
        "gather_labels": (ints, ints, ints),
    }
