"""``numba``: the whole SGD step as one ``@njit`` call on one thread (BLAS for large products).

Parameters live in one flat array; forward, loss, backward and update run in a single compiled
call with no Python between layers and no allocation per step (:mod:`bpbench.impls._numba_host`).
Small batches use fused hand loops, large ones BLAS gemm inside the kernel
(:mod:`bpbench.impls._numba_kernels`). Everything runs on the calling thread: the program's phases
are single chunks, and the BLAS calls inside the step are limited to one thread (OpenBLAS's
thread count is set to 1 for the duration of the call; see
:func:`bpbench.impls._numba_blas.thread_setter`).
"""

from __future__ import annotations

from . import _numba_kernels as K
from ._numba_host import NumbaBase


class NumbaImplementation(NumbaBase):
    name = "numba"
    description = "@njit, one thread: whole step in one compiled call, fused loops or BLAS by shape"

    _kernel = staticmethod(K.run_serial)
    # one thread: chunks only where they make OpenBLAS's products faster (small products)
    max_shares = 1
