"""``numba_parallel``: the ``numba`` step on all of Numba's threads (``@njit(parallel=True)``).

Same kernels, layout and single-call step as :mod:`bpbench.impls.numba_serial`. Threads: one
``prange`` region per batch with one iteration per Numba thread (``NUMBA_NUM_THREADS`` or
``numba.set_num_threads(n)``, read at every call); each thread runs the batch's phases, claiming
chunks of each (its own share of every weight matrix first, the same share every step) and
waiting for the phase to complete before the next. BLAS products run inside those threads, one
tile per call with OpenBLAS set to one thread for the step, so Numba's pool is the only one that
runs. Chunk bounds depend on the shapes only, so results do not depend on the thread count.
"""

from __future__ import annotations

from . import _numba_kernels as K
from ._numba_host import NumbaBase


class NumbaParallelImplementation(NumbaBase):
    name = "numba_parallel"
    description = ("@njit(parallel=True): the numba step split in chunks over Numba's threads, "
                   "one compiled call")

    _kernel = staticmethod(K.run_parallel)
