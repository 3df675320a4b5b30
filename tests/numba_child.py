"""Run in a fresh process by tests/test_numba.py: cache use and allocations of the numba step.

    NUMBA_NRT_STATS=1 PYTHONPATH=. python tests/numba_child.py IMPL

Prints one JSON line: ``cache_hits`` / ``cache_misses`` of the compiled entry point after the
first steps (a warm on-disk cache loads, it does not compile); ``allocs``: Numba runtime
allocations per step, for nets of two depths and batches on both product paths (hand loops and
BLAS). Passing a NumPy array into a compiled function allocates one small wrapper per array
argument, so the count is constant; an allocation inside the step would grow with depth or
differ by path. ``numpy_bytes``: NumPy memory traced by tracemalloc over the timed steps (a
buffer allocated per step would show as at least its size, ``workspace_bytes``).
"""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np

import bpbench


def main(name):
    from numba.core.runtime import rtsys

    cls = bpbench.get(name)
    rng = np.random.default_rng(0)
    allocs = {}
    traced = 0
    for depth in (1, 4):
        net = bpbench.Network((48,) + (40,) * depth + (5,), activation="tanh", dtype="float64")
        model = cls(net, net.init(0))
        for B in (3, 64):  # both product paths: hand loops and BLAS
            batch = model.prepare(rng.standard_normal((B, 48)), rng.integers(0, 5, B))
            model.step_prepared(batch, 1e-3)  # compile or load, size the workspace
            before = rtsys.get_allocation_stats().alloc
            tracemalloc.start()
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(10):
                model.step_prepared(batch, 1e-3)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            traced = max(traced, peak - start)
            allocs[f"depth{depth}_batch{B}"] = (rtsys.get_allocation_stats().alloc - before) / 10
    kernel = cls._kernel
    print(json.dumps({"cache_hits": sum(kernel.stats.cache_hits.values()),
                      "cache_misses": sum(kernel.stats.cache_misses.values()),
                      "allocs": allocs, "numpy_bytes": traced,
                      "workspace_bytes": model._ws.nbytes}))


if __name__ == "__main__":
    main(sys.argv[1])
