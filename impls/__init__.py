"""The contestants: one module per implementation, each importable on its own.

Each module defines one :class:`bpbench.Implementation` subclass; ``bpbench/registry.py`` maps
the registry names to them.
"""
