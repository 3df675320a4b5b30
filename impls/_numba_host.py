"""Host glue shared by ``numba`` and ``numba_parallel``: flat buffers in, one kernel call per step.

The instance keeps every parameter in one flat array (see :mod:`bpbench.impls._numba_kernels` for
the layout), a gradient array of the same layout, and one workspace sized for the largest batch seen
so far (allocated when a larger batch arrives, reused for every smaller one). ``step``,
``loss_and_grads``, ``forward`` and a whole epoch are each a single call of one compiled entry
point; nothing is allocated per step. The two public classes differ only in which entry point
(serial or parallel) they call.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from bpbench import codes
from bpbench.interface import Implementation

from . import _numba_kernels as K

#: batches of at least this many rows use BLAS gemm for the matrix products; smaller ones
#: use the fused hand loops. Measured with ``python benchmarks/step_vs_torch.py --crossover``.
BLAS_MIN_ROWS = 8


def _find_blas_thread_setter():
    """``openblas_set_num_threads_local`` of the BLAS the kernels call, or None.

    The kernels call NumPy's bundled OpenBLAS when there is one (:data:`K.BLAS_LIBRARY`), else
    np.dot, which Numba routes to SciPy's BLAS (in SciPy's wheels another bundled OpenBLAS).
    The thread-local setter (OpenBLAS >= 0.3.27) changes the thread count for the calling
    thread only. None when neither is an OpenBLAS with it: then BLAS keeps its own thread count
    (OPENBLAS_NUM_THREADS / MKL_NUM_THREADS).
    """
    libraries = [K.BLAS_LIBRARY] if K.BLAS_LIBRARY is not None else []
    if not libraries:
        import scipy.linalg.cython_blas  # noqa: F401  (the library must be loaded)

        base = os.path.dirname(os.path.dirname(scipy.linalg.cython_blas.__file__))
        for pattern in ("../scipy.libs/libscipy_openblas*", ".dylibs/libscipy_openblas*"):
            for path in sorted(glob.glob(os.path.join(base, pattern))):
                try:
                    libraries.append(ctypes.CDLL(path))
                except OSError:
                    continue
    for lib in libraries:
        setter = getattr(lib, "openblas_set_num_threads_local", None)
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter.restype = ctypes.c_int
            return setter
    return None


_blas_setter = []  # [setter or None], found on first use


def blas_thread_setter():
    """The cached result of :func:`_find_blas_thread_setter`."""
    if not _blas_setter:
        _blas_setter.append(_find_blas_thread_setter())
    return _blas_setter[0]


class NumbaBase(Implementation):
    """Everything but the choice of compiled entry points (set by the subclasses)."""

    #: the compiled entry point (a staticmethod-wrapped dispatcher), set by subclasses
    _kernel = None

    #: rows from which products go to BLAS; an instance attribute may override it (tests use
    #: 1 and a large number to exercise both paths)
    blas_min = BLAS_MIN_ROWS

    #: BLAS threads for the products inside the step (None: leave BLAS's own setting)
    blas_threads = None

    def _load_params(self, params):
        net = self.net
        codes.require(self.name, net, K.ACTIVATIONS, K.LOSSES)
        self._sizes = np.array(net.sizes, dtype=np.int64)
        # one code per layer; the output layer's entry is ignored (it is affine)
        self._codes = np.array([codes.ACTIVATION_CODES[a] for a in net.activations]
                               + [codes.IDENTITY], dtype=np.int64)
        self._loss_code = codes.LOSS_CODES[net.loss]
        self._offs = K.param_offsets(net.sizes)
        self._theta = np.empty(self._offs[-1], dtype=net.dtype)
        self._grads = np.zeros_like(self._theta)
        self._views = self._layers(self._theta)
        for (Wv, bv), (W, b) in zip(self._views, params, strict=True):
            Wv[...] = W
            bv[...] = b
        # the target array a loss does not use: empty, so both losses share one specialisation
        self._no_idx = np.empty(0, dtype=np.int64)
        self._no_Y = np.empty((0, net.sizes[-1]), dtype=net.dtype)
        self._one_loss = np.empty(1, dtype=np.float64)
        self._cap = 0
        self._ws = self._yb = self._rowloss = self._arange = None

    def _layers(self, flat):
        """[(W, b), ...] views into a flat array of theta's layout."""
        views = []
        for layer, (w_shape, b_shape) in enumerate(self.net.shapes()):
            o = self._offs[layer]
            n = w_shape[0] * w_shape[1]
            views.append((flat[o:o + n].reshape(w_shape), flat[o + n:o + n + b_shape[0]]))
        return views

    def _workspace(self, batch_size):
        """Grow the workspace (and row buffers) only when a larger batch than ever arrives."""
        if batch_size > self._cap:
            self._ws = np.empty(K.workspace_size(self.net.sizes, batch_size), self.net.dtype)
            self._yb = np.empty(batch_size, dtype=np.int64)
            self._rowloss = np.empty(batch_size, dtype=np.float64)
            self._arange = np.arange(batch_size, dtype=np.int64)  # the order of a lone batch
            self._cap = batch_size

    def _get_params(self):
        return self._views

    def _to_device(self, X, y):
        if self._loss_code == codes.MSE:
            return X, self._no_idx, y
        return X, y, self._no_Y

    def _call(self, X, y_idx, Y, order, batch_size, lr, mode, losses):
        self._workspace(batch_size)
        args = (self._theta, self._grads, self._sizes, self._codes, self._loss_code, X, y_idx, Y,
                order, batch_size, lr, mode, self._ws, self._yb, self._rowloss, losses,
                self.blas_min)
        setter = blas_thread_setter() if self.blas_threads and batch_size >= self.blas_min else None
        if setter is None:  # hand loops only, or BLAS left alone
            self._kernel(*args)
            return
        previous = setter(self.blas_threads)  # this thread only; restored right after
        try:
            self._kernel(*args)
        finally:
            setter(previous)

    def _batch(self, data, lr, mode):
        X, y_idx, Y = data
        B = X.shape[0]
        self._workspace(B)
        self._call(X, y_idx, Y, self._arange[:B], B, lr, mode, self._one_loss)
        return self._one_loss[0]

    def _step(self, data, lr):
        return self._batch(data, lr, K.MODE_STEP)

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
        losses = np.empty(-(-len(order) // batch_size), dtype=np.float64)
        self._call(X, y_idx, Y, order, batch_size, lr, K.MODE_STEP, losses)
        return losses
