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


# Imported, not wrapped: importing the submodule bpbench.fastest would otherwise replace a
# wrapper function of the same name on the package with the module (after its first call).
# Cheap: it imports neither Numba nor CUDA.
from .fastest import fastest  # noqa: E402
