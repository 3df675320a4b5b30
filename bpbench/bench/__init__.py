"""The measuring tools: everything that times, floors, compares, reports or picks.

Built on the contract (:mod:`bpbench.network`, :mod:`bpbench.interface`, :mod:`bpbench.registry`,
...) and never imported by it: ``import bpbench`` loads none of this. Consumers (the CLI, the
asv suite in ``benchmarks/``, scripts) import the module they need, e.g.
``from bpbench.bench import compare``.
"""
