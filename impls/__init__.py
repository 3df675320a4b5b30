"""The contestants, installed as ``bpbench.impls``: one module per implementation.

The repository keeps them in the top-level folder ``impls/`` (beside ``bpbench/``, so the
design's parts stay visible); ``pyproject.toml`` maps that folder onto the package name
``bpbench.impls``, so an install adds one top-level name, ``bpbench``.

- ``naive``: :mod:`bpbench.impls.naive`
- ``numpy``: :mod:`bpbench.impls.numpy_vectorised`
- ``numba``: :mod:`bpbench.impls.numba_serial` (kernels ``_numba_kernels``, host glue
  ``_numba_host``, shared with ``numba_parallel``)
- ``numba_parallel``: :mod:`bpbench.impls.numba_parallel`
- ``cuda``: :mod:`bpbench.impls.numba_cuda` (kernels ``_cuda_kernels``)

Each module defines one :class:`bpbench.Implementation` subclass; :mod:`bpbench.registry` maps
the registry names to them. They import the contract (``bpbench.interface``, ``bpbench.codes``)
and nothing of the measuring tools.
"""
