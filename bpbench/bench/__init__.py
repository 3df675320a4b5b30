"""The measuring tools: everything that times, floors, compares, reports or picks.

Built on the contract (:mod:`bpbench.network`, :mod:`bpbench.interface`, :mod:`bpbench.registry`,
...) and never imported by it: ``import bpbench`` loads none of this. Every timing goes through
one engine, :mod:`bpbench.bench.engine` (the only one of these modules that reads a clock; an
import-linter contract checks it), on points built by :mod:`bpbench.bench.points`, under the
thread count of :mod:`bpbench.bench.threads`, on the machine named by
:mod:`bpbench.bench.machine`. Consumers (the CLI, the asv suite in ``benchmarks/``, scripts)
import the module they need, e.g. ``from bpbench.bench import compare``.
"""
