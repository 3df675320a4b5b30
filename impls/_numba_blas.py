"""NumPy's own OpenBLAS, called from compiled Numba code, and its thread count.

Numba's ``np.dot`` calls SciPy's BLAS (in SciPy's wheels a separately built OpenBLAS); the floor
the step is judged against is NumPy's. NumPy's OpenBLAS is up to 1.75x faster on the skinny
products of small batches, and ``cblas_?gemm``'s alpha/beta, leading dimensions and offsets let a
kernel multiply tiles of larger matrices in place and let the SGD update ride on the
weight-gradient product (``W[:, tile] += -lr H^T dZ[:, tile]``: no gradient buffer, no extra
pass). So the kernels call NumPy's ``cblas_sgemm``/``cblas_dgemm`` directly when NumPy bundles
OpenBLAS (its wheels do), by a symbol name registered with LLVM at import: a cached kernel refers
to the name, not to an address, so it stays cacheable. Otherwise (:data:`HAVE_CBLAS` False) they
fall back to ``np.dot`` on contiguous operands.

Threads: inside a step the products run on Numba's threads, one tile per call, so OpenBLAS must
not start its own threads there. The host sets OpenBLAS's thread count to 1 for the duration of
the step (:func:`thread_setter`) and restores it afterwards. In NumPy's OpenBLAS builds (pthreads,
not OpenMP) that setting is process-wide, whatever its name says: an ``np.dot`` running in another
Python thread during a step runs on one thread too.
"""

from __future__ import annotations

import ctypes
import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: CBLAS enum values
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _find_numpy_openblas():
    """NumPy's bundled OpenBLAS (ILP64, ``scipy_`` symbol prefix) as a ctypes CDLL, or None.

    ``BPBENCH_NUMBA_NO_CBLAS=1`` in the environment pretends there is none (to test the np.dot
    fallback on a machine whose NumPy does bundle OpenBLAS).
    """
    if os.environ.get("BPBENCH_NUMBA_NO_CBLAS") == "1":
        return None
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
LIBRARY = _find_numpy_openblas()
#: compile-time switch of the kernels (a module global, frozen into the compiled code)
HAVE_CBLAS = LIBRARY is not None
if HAVE_CBLAS:
    for _name, _fn in (("bpbench_cblas_sgemm", LIBRARY.scipy_cblas_sgemm64_),
                       ("bpbench_cblas_dgemm", LIBRARY.scipy_cblas_dgemm64_)):
        llvm.add_symbol(_name, ctypes.cast(_fn, ctypes.c_void_p).value)


def _gemm_signature(real):
    # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc (ILP64: int64 sizes)
    return types.void(types.int32, types.int32, types.int32, types.int64, types.int64,
                      types.int64, real, types.voidptr, types.int64, types.voidptr, types.int64,
                      real, types.voidptr, types.int64)


_cblas_sgemm = types.ExternalFunction("bpbench_cblas_sgemm", _gemm_signature(types.float32))
_cblas_dgemm = types.ExternalFunction("bpbench_cblas_dgemm", _gemm_signature(types.float64))


@intrinsic
def _element_pointer(typingctx, arr, offset):
    """The address of ``arr.flat[offset]`` (a C-contiguous array), as void*."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(builder.gep(ary.data, [args[1]]), cgutils.voidptr_t)
    return types.voidptr(arr, types.intp), codegen


@njit(nogil=True)
def gemm(trans_a, trans_b, m, n, k, alpha, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
    """C = alpha op(A) op(B) + beta C on row-major blocks of flat arrays; op(X) = X^T if trans_x.

    A, B, C are 1-D C-contiguous arrays of one dtype; a block starts at flat offset a0/b0/c0 and
    its rows are lda/ldb/ldc elements apart. op(A) is (m, k), op(B) (k, n), C (m, n).
    Without NumPy's cblas (np.dot fallback) every block must be contiguous (ld = row length)
    and beta must be 0.
    """
    if m == 0 or n == 0:
        return
    if HAVE_CBLAS:
        ta = _TRANS if trans_a else _NO_TRANS
        tb = _TRANS if trans_b else _NO_TRANS
        if C.itemsize == 4:
            _cblas_sgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float32(alpha), _element_pointer(A, a0),
                         lda, _element_pointer(B, b0), ldb, np.float32(beta),
                         _element_pointer(C, c0), ldc)
        else:
            _cblas_dgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float64(alpha), _element_pointer(A, a0),
                         lda, _element_pointer(B, b0), ldb, np.float64(beta),
                         _element_pointer(C, c0), ldc)
        return
    if beta != 0 or ldc != n:
        raise ValueError("np.dot fallback: C must be a whole contiguous block and beta 0")
    if lda != (m if trans_a else k) or ldb != (k if trans_b else n):
        raise ValueError("np.dot fallback: A and B must be contiguous")
    out = C[c0:c0 + m * n].reshape((m, n))
    # one np.dot per combination, so that each sees its operands' own layout (C, or F for a
    # transpose): a variable holding either would be typed 'A' and np.dot would copy it
    if trans_a and trans_b:
        np.dot(A[a0:a0 + k * m].reshape((k, m)).T, B[b0:b0 + n * k].reshape((n, k)).T, out)
    elif trans_a:
        np.dot(A[a0:a0 + k * m].reshape((k, m)).T, B[b0:b0 + k * n].reshape((k, n)), out)
    elif trans_b:
        np.dot(A[a0:a0 + m * k].reshape((m, k)), B[b0:b0 + n * k].reshape((n, k)).T, out)
    else:
        np.dot(A[a0:a0 + m * k].reshape((m, k)), B[b0:b0 + k * n].reshape((k, n)), out)
    if alpha != 1:
        for i in range(m * n):
            C[c0 + i] *= alpha


# ---------------------------------------------------------------------- host side
def _find_thread_setter():
    """``openblas_set_num_threads_local`` of the BLAS the kernels call, or None.

    The kernels call NumPy's bundled OpenBLAS when there is one (:data:`LIBRARY`), else np.dot,
    which Numba routes to SciPy's BLAS (in SciPy's wheels another bundled OpenBLAS). The setter
    (OpenBLAS >= 0.3.27) returns the previous count. None when neither is an OpenBLAS with it:
    then BLAS keeps its own thread count (OPENBLAS_NUM_THREADS / MKL_NUM_THREADS).
    """
    libraries = [LIBRARY] if LIBRARY is not None else []
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


_setter = []  # [setter or None], found on first use


def thread_setter():
    """The cached result of :func:`_find_thread_setter`: ``setter(n) -> previous n``."""
    if not _setter:
        _setter.append(_find_thread_setter())
    return _setter[0]
