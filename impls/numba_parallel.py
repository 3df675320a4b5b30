"""``numba_parallel``: the ``numba`` step with its loops as ``prange`` (``@njit(parallel=True)``).

Same kernels, layout and single-call step as :mod:`bpbench.impls.numba_serial`; the loops over rows
of the batch and rows of W run on Numba's thread pool, sized by ``NUMBA_NUM_THREADS`` or
``numba.set_num_threads(n)`` (read at every call). BLAS calls inside the step run on BLAS's own
pool (``OPENBLAS_NUM_THREADS``), outside the parallel loops, so the two never nest.
"""

from __future__ import annotations

from . import _numba_kernels as K
from ._numba_host import NumbaBase


class NumbaParallelImplementation(NumbaBase):
    name = "numba_parallel"
    description = "@njit(parallel=True): the numba step with prange over rows, one compiled call"

    _kernel = staticmethod(K.run_parallel)
