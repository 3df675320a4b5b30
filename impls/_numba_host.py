"""Host glue shared by ``numba`` and ``numba_parallel``: flat buffers in, one kernel call per step.

The instance keeps every parameter in one flat array (see :mod:`bpbench.impls._numba_kernels` for
the layout), a gradient array of the same layout, and one workspace sized for the largest batch seen
so far (allocated when a larger batch arrives, reused for every smaller one). ``step``,
``loss_and_grads``, ``forward`` and a whole epoch are each a single call of one compiled entry
point; nothing is allocated per step. The two public classes differ in which entry point (serial or
parallel) they call and in how many chunks a phase is cut into (one for ``numba``).
"""

from __future__ import annotations

import numba
import numpy as np

from bpbench import codes
from bpbench.interface import Implementation

from . import _numba_blas as blas
from . import _numba_kernels as K

#: batches of at least this many rows use BLAS gemm tiles for the matrix products; smaller ones
#: use the hand loops, which stream each weight matrix once forward and once (read and write)
#: backward. With a layer of more than BIG_LAYER_BYTES of weights (beyond a core's L2, so every
#: pass over it is a trip to L3) the hand loops win up to BLAS_MIN_ROWS_BIG - 1 rows.
#: Measured with ``python -m bpbench.bench.goals --crossover`` (docs/numba.md).
BLAS_MIN_ROWS = 2
BLAS_MIN_ROWS_BIG = 4
BIG_LAYER_BYTES = 2 << 20


#: start of the flat arrays (parameters, gradients, workspace), in bytes: see _aligned_empty
ALIGN = 4096


def _aligned_empty(n, dtype, align=ALIGN):
    """An uninitialised 1-D array of ``n`` elements whose data starts at a multiple of ``align``
    bytes.

    NumPy's allocations start at a multiple of 16 bytes only, so where a weight row starts
    within a cache line (and a page) changed from one model to the next, and with it the speed
    of the same step: per-model medians of one batch-1 step spread over 20% in one process
    while each model's own samples spread 2%. asv read that spread between processes as
    regressions. Every row of the flat arrays now starts where the same model's did.
    """
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n * dtype.itemsize].view(dtype)


class NumbaBase(Implementation):
    """Everything but the choice of compiled entry point (set by the subclasses)."""

    #: the compiled entry point (a staticmethod-wrapped dispatcher), set by subclasses
    _kernel = None

    #: chunks per phase at most: where chunks make products faster (OpenBLAS's small-matrix
    #: kernels), and where they only share work out among threads (1: such phases run whole)
    max_chunks = K.MAX_CHUNKS
    max_shares = K.MAX_CHUNKS

    #: rows from which products go to BLAS (BLAS_MIN_ROWS_BIG for nets with a big layer); an
    #: instance attribute may override it (tests use 1 and a large number for both paths)
    blas_min = BLAS_MIN_ROWS

    #: threads the step runs on (None: Numba's current count, read by the kernel at each call,
    #: which follows NUMBA_NUM_THREADS and numba.set_num_threads); ignored by ``numba``. Any
    #: count works, more than Numba's pool included (tests use that to go beyond the cores)
    threads = None

    def _load_params(self, params):
        net = self.net
        numba.get_num_threads()  # starts Numba's threading layer, which the kernels ask
        codes.require(self.name, net, K.ACTIVATIONS, K.LOSSES)
        self._loss_code = codes.LOSS_CODES[net.loss]
        biggest = max(n_in * n_out for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:],
                                                             strict=True))
        if biggest * net.dtype.itemsize > BIG_LAYER_BYTES:
            self.blas_min = BLAS_MIN_ROWS_BIG
        self._offs = K.param_offsets(net.sizes)
        self._theta = _aligned_empty(self._offs[-1], net.dtype)
        self._grads = _aligned_empty(self._offs[-1], net.dtype)
        self._grads[...] = 0
        self._views = self._layers(self._theta)
        for (Wv, bv), (W, b) in zip(self._views, params, strict=True):
            Wv[...] = W
            bv[...] = b
        # the target array a loss does not use: empty, so both losses share one specialisation
        self._no_idx = np.empty(0, dtype=np.int64)
        self._no_Y = np.empty((0, net.sizes[-1]), dtype=net.dtype)
        self._in_place = np.empty(0, dtype=np.int64)  # order of a single step: rows in place
        self._cap = 0
        self._sized_for = None
        self._ws = self._meta = self._out = None

    def _layers(self, flat):
        """[(W, b), ...] views into a flat array of theta's layout."""
        views = []
        for layer, (w_shape, b_shape) in enumerate(self.net.shapes()):
            o = self._offs[layer]
            n = w_shape[0] * w_shape[1]
            views.append((flat[o:o + n].reshape(w_shape), flat[o + n:o + n + b_shape[0]]))
        return views

    def _workspace(self, batch_size):
        """Grow the buffers only when a larger batch than ever arrives (or blas_min changed)."""
        if batch_size <= self._cap and self._sized_for == self.blas_min:
            return
        cap = max(batch_size, self._cap)
        net = self.net
        L = net.n_layers
        at_sizes, at_codes, _, _, total = K.meta_layout(L, cap)
        meta = np.zeros(total, dtype=np.int64)
        meta[:4] = (L, self._loss_code, self.max_chunks, self.max_shares)
        meta[at_sizes:at_sizes + L + 1] = net.sizes
        # one code per layer; the output layer's entry is ignored (it is affine)
        meta[at_codes:at_codes + L] = ([codes.ACTIVATION_CODES[a] for a in net.activations]
                                       + [codes.IDENTITY])
        self._meta = meta
        self._ws = _aligned_empty(K.ws_size(net.sizes, cap, self.blas_min), net.dtype)
        self._out = np.empty(cap + 1, dtype=np.float64)  # row losses, then the batch's loss
        self._cap = cap
        self._sized_for = self.blas_min

    def _get_params(self):
        return self._views

    def _to_device(self, X, y):
        if self._loss_code == codes.MSE:
            return X, self._no_idx, y
        return X, y, self._no_Y

    def _call(self, X, y_idx, Y, order, batch_size, lr, mode, out):
        """One kernel call; returns the last batch's loss."""
        args = (self._theta, self._grads, self._ws, self._meta, X, y_idx, Y, order, out, lr,
                batch_size, mode, self.blas_min, self.threads or 0)
        setter = blas.thread_setter() if batch_size >= self.blas_min else None
        if setter is None:  # hand loops only (or a BLAS without a thread setter)
            return self._kernel(*args)
        # the products run on the kernel's threads, one tile each: OpenBLAS's own pool stays
        # out (process-wide in NumPy's OpenBLAS; restored right after)
        previous = setter(1)
        try:
            return self._kernel(*args)
        finally:
            setter(previous)

    def _batch(self, data, lr, mode):
        X, y_idx, Y = data
        B = X.shape[0]
        self._workspace(B)
        return self._call(X, y_idx, Y, self._in_place, B, lr, mode, self._out)

    def _step(self, data, lr):
        # the hot path of step/step_prepared: the kernel called directly when no BLAS setting
        # is needed (~1 us saved per call at batch 1)
        X, y_idx, Y = data
        B = X.shape[0]
        if B >= self.blas_min or B > self._cap or self._sized_for != self.blas_min:
            return self._batch(data, lr, K.MODE_STEP)
        return self._kernel(self._theta, self._grads, self._ws, self._meta, X, y_idx, Y,
                            self._in_place, self._out, lr, B, K.MODE_STEP, self.blas_min,
                            self.threads or 0)

    def _loss_and_grads(self, data):
        loss = self._batch(data, 1.0, K.MODE_GRADS)
        return loss, [(dW.copy(), db.copy()) for dW, db in self._layers(self._grads)]

    def _forward(self, X):
        B = X.shape[0]
        self._batch((X, self._no_idx, self._no_Y), 1.0, K.MODE_FORWARD)
        o = K.act_offset(self.net.sizes, B, self.net.n_layers)
        return self._ws[o:o + B * self.net.sizes[-1]].reshape(B, -1).copy()

    def _run_epoch(self, X, y, order, batch_size, lr):
        """The whole epoch in one compiled call: the same kernel and batches as the Python loop."""
        if self._loss_code == codes.MSE:
            y_idx, Y = self._no_idx, y
        else:
            y_idx, Y = y, self._no_Y
        batch_size = min(batch_size, len(order))
        self._workspace(batch_size)
        n_batches = -(-len(order) // batch_size)
        out = np.empty(self._cap + n_batches, dtype=np.float64)
        self._call(X, y_idx, Y, order, batch_size, lr, K.MODE_STEP, out)
        return out[self._cap:]
