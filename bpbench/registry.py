"""Name -> implementation class, with availability and the reason when unavailable.

Built-in implementations are lazy import targets (``"module:Class"``), so ``import bpbench``
imports neither Numba nor CUDA. Outside packages register through the entry-point group
``bpbench.impls``: ``myimpl = "mypackage.module:MyImplementation"``.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from .interface import Implementation

#: built-in name -> (import target, the pip package that provides what it imports)
BUILTINS = {
    "naive": ("bpbench.impls.naive:NaiveImplementation", None),
    "numpy": ("bpbench.impls.numpy_vectorised:NumpyImplementation", None),
    "numba": ("bpbench.impls.numba_serial:NumbaImplementation", "numba"),
    "numba_parallel": ("bpbench.impls.numba_parallel:NumbaParallelImplementation", "numba"),
    "cuda": ("bpbench.impls.numba_cuda:CudaImplementation", "numba-cuda"),
}

ENTRY_POINT_GROUP = "bpbench.impls"


class UnavailableError(RuntimeError):
    """A known implementation that cannot run here; the message says why and what would fix it."""


class UnknownImplementationError(KeyError):
    """A name no implementation is registered under; the message lists the known names."""

    def __str__(self):  # KeyError's str() is the repr of its argument; show the sentence
        return str(self.args[0]) if self.args else ""


_entry_points = None


def _targets():
    """name -> (target, pip package) for built-ins and entry points (built-ins win on a clash).

    Entry points are scanned once per process (a scan of every installed distribution costs
    tens of milliseconds); ``refresh()`` rescans.
    """
    global _entry_points
    if _entry_points is None:
        _entry_points = {ep.name: (ep.value, ep.dist.name if ep.dist else None)
                         for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return {**_entry_points, **BUILTINS}


def refresh():
    """Forget cached entry points and availability (after installing a package, say)."""
    global _entry_points
    _entry_points = None
    _cache.clear()


def _load(name, target, package):
    """(class, None, False) or (None, reason, broken).

    ``broken``: the implementation's own code is at fault (its module fails to import, or the
    target is not an Implementation subclass), as opposed to a missing dependency.
    """
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if package and not module_name.startswith(missing):
            # a dependency is missing (numba, numba-cuda), not the implementation's own module
            return (None, f"{missing or 'a dependency'} is not installed: pip install {package}",
                    False)
        return None, f"cannot import {module_name}: {exc}", True
    except Exception as exc:  # a module that raises on import must not break listing
        return None, f"cannot import {module_name}: {type(exc).__name__}: {exc}", True
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Implementation)):
        return None, f"{target} is not a bpbench.Implementation subclass", True
    return cls, None, False


_cache = {}


def _resolve(name):
    """(class or None, reason or None, broken) for a known name; cached per process."""
    if name not in _cache:
        target, package = _targets()[name]
        cls, reason, broken = _load(name, target, package)
        if cls is not None:
            try:
                reason = cls.availability()
            except Exception as exc:  # an availability probe must never break listing
                reason = f"availability check failed: {type(exc).__name__}: {exc}"
                broken = True
        _cache[name] = (cls, reason, broken)
    return _cache[name]


def names():
    """Every known implementation name, built-ins first in registry order."""
    targets = _targets()
    return list(BUILTINS) + sorted(n for n in targets if n not in BUILTINS)


def implementations():
    """Every known name -> {"available": bool, "reason": str or None, "description": str,
    "broken": bool}.

    ``broken``: unavailable through a fault of the implementation itself (its module does not
    import, its target is not an Implementation, its availability check raises), not for want
    of a dependency or a device.
    """
    table = {}
    for name in names():
        cls, reason, broken = _resolve(name)
        table[name] = {
            "available": cls is not None and reason is None,
            "reason": reason,
            "description": getattr(cls, "description", "") if cls is not None else "",
            "broken": broken,
        }
    return table


def available():
    """Names of the implementations usable here, in registry order."""
    return [n for n, info in implementations().items() if info["available"]]


def get(name):
    """The implementation class registered as ``name``.

    Raises UnknownImplementationError (a KeyError) for an unknown name, listing the known ones,
    and UnavailableError when it is known but unusable here, saying why.
    """
    if not isinstance(name, str) or name not in _targets():
        raise UnknownImplementationError(
            f"unknown implementation {name!r}; known: {', '.join(names())}")
    cls, reason, _ = _resolve(name)
    if cls is None or reason is not None:
        raise UnavailableError(f"implementation {name!r} is unavailable here: {reason}")
    return cls
