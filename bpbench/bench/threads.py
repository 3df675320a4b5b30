"""How many CPU threads every contestant gets: one explicit setting, applied to every pool.

A timing is only comparable with another taken under the same thread counts, so the count is a
setting of the run, never a library default:

- :func:`resolve` picks it: an explicit value (``--threads N``), else the environment variable
  ``BPBENCH_THREADS``, else the cores this process may run on (``os.sched_getaffinity``, which
  honours ``taskset`` and container CPU sets; ``os.cpu_count()`` where that does not exist);
- :func:`apply` gives it to every pool a contestant can use: the BLAS libraries loaded in the
  process (OpenBLAS, MKL, BLIS) and OpenMP runtimes through threadpoolctl, and Numba's own pool
  (``numba.set_num_threads``) when Numba is loaded. Peers receive it through
  ``peers.make(..., threads=n)`` (PyTorch's intra-op threads);
- :func:`describe` says what the pools really are now, for the record of every result.

``numba`` (the serial implementation) still runs on one thread by design: it limits its own
BLAS calls to one thread; the setting is the most any contestant may use.
"""

from __future__ import annotations

import os
import sys

#: the environment variable that sets the count when no ``--threads`` is given
ENV = "BPBENCH_THREADS"


def machine_cores():
    """Cores this process may run on (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check(value, where):
    if isinstance(value, bool):
        raise ValueError(f"threads must be a positive int, got {value!r} ({where})")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be a positive int, got {value!r} ({where})") from None
    if n < 1 or (not isinstance(value, str) and n != value):
        raise ValueError(f"threads must be a positive int, got {value!r} ({where})")
    return n


def resolve(threads=None):
    """The thread count of this run: ``threads``, else ``$BPBENCH_THREADS``, else the cores.

    Raises ValueError naming ``threads`` for anything but a positive int (or its text).
    """
    if threads is not None:
        return _check(threads, "argument")
    env = os.environ.get(ENV, "").strip()
    if env:
        return _check(env, f"${ENV}")
    return machine_cores()


_applied = None


def apply(threads=None):
    """Set every loaded thread pool to ``resolve(threads)`` threads; returns the count.

    BLAS and OpenMP pools: threadpoolctl (global, until changed again). Numba: only when it is
    already imported (importing it here would cost half a second for the NumPy-only runs);
    :func:`bpbench.bench.points.make_model` calls this again after building a model, so a Numba
    implementation built later gets the count too. Numba's count is capped by the size of its
    pool (``NUMBA_NUM_THREADS``, fixed at import): asking for more raises ValueError.
    """
    global _applied
    n = resolve(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    if "numba" in sys.modules:
        import numba

        pool = numba.config.NUMBA_NUM_THREADS
        if n > pool:
            raise ValueError(f"threads: {n} is more than Numba's pool of {pool} "
                             "(NUMBA_NUM_THREADS, set before numba is imported)")
        numba.set_num_threads(n)
    _applied = n
    return n


def applied():
    """The count the last :func:`apply` set, or None if nothing was applied yet."""
    return _applied


def describe():
    """What the pools are set to now: ``{"threads": n, "blas": "...", "numba": n|None}``.

    ``blas`` lists each loaded BLAS/OpenMP library as ``name:threads`` (threadpoolctl's view).
    """
    from threadpoolctl import threadpool_info

    libs = sorted({f"{i.get('internal_api')}:{i.get('num_threads')}" for i in threadpool_info()})
    numba_threads = None
    if "numba" in sys.modules:
        import numba

        numba_threads = numba.get_num_threads()
    return {"threads": _applied if _applied is not None else resolve(),
            "blas": " ".join(libs), "numba": numba_threads}
