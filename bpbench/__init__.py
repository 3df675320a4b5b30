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


def fastest(net, batch_size, candidates=None):
    """The implementation class whose ``step`` runs fastest here for this shape and dtype.

    Measured (JIT compile excluded) and cached; see :mod:`bpbench.fastest`.
    """
    from .fastest import fastest as _fastest
    return _fastest(net, batch_size, candidates)
