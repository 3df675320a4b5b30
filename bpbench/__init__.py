"""bpbench: cross-validated benchmarks of neural-network backpropagation.

>>> import bpbench
>>> net = bpbench.Network((64, 128, 10), activation="relu", loss="cross_entropy")
>>> params = net.init(seed=0)
>>> model = bpbench.get("numpy")(net, params)

See ``README.md`` and the contract for the whole surface. Importing bpbench imports neither
Numba nor CUDA: implementations load when first asked for.
"""

from .interface import Implementation, PreparedBatch
from .network import Network
from .registry import UnavailableError, UnknownImplementationError, available, get, implementations
from .training import DivergenceError, History, train

__version__ = "0.1.0"

__all__ = [
    "Network", "Implementation", "PreparedBatch", "available", "implementations", "get",
    "UnavailableError", "UnknownImplementationError", "train", "History", "DivergenceError",
    "fastest", "__version__",
]


def __getattr__(name):
    # bpbench.fastest lives with the measuring tools (bpbench.bench.selection), which
    # ``import bpbench`` does not load: it is imported on first use
    if name == "fastest":
        from .bench.selection import fastest

        return fastest
    raise AttributeError(f"module 'bpbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"fastest"})
