"""The network spec: layer widths, activations, loss, dtype; and its deterministic init."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .checks import check_seed
from .reference import ACTIVATIONS, LOSSES

#: dtypes an implementation must support
DTYPES = ("float32", "float64")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Network:
    """A multilayer perceptron's shape and math, with no parameters.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, output last, e.g. ``(64, 128, 128, 10)``. At least two
        entries, every one a positive int. ``depth = len(sizes) - 2`` hidden layers.
    activation : str or sequence of str
        Hidden-layer nonlinearity: ``"relu"``, ``"tanh"`` or ``"sigmoid"``, or one name per
        hidden layer. The output layer is affine; the loss owns what follows it.
    loss : {"mse", "cross_entropy"}
        ``mse``: mean over all B*K elements of (out - Y)**2, Y float (B, K).
        ``cross_entropy``: softmax then mean over the batch of -log p[y], y int (B,) in [0, K).
    dtype : {"float32", "float64"}
        dtype of parameters, activations and gradients. Stored as a ``numpy.dtype``.

    Networks are immutable and compare equal (and hash alike) when every field is equal.
    """

    __slots__ = ("sizes", "activations", "loss", "dtype")

    def __init__(self, sizes, activation="relu", loss="cross_entropy", dtype="float64"):
        if (isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray))
                or getattr(sizes, "ndim", 1) != 1):
            raise ValueError("sizes must be a sequence of layer widths like (64, 128, 10), "
                             f"got {sizes!r}")
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError("sizes needs at least two entries (input and output width), "
                             f"got {sizes!r}")
        for s in sizes:
            if not _is_int(s) or s < 1:
                raise ValueError(f"sizes must hold positive ints, got {s!r} in {sizes!r}")
        sizes = tuple(int(s) for s in sizes)
        depth = len(sizes) - 2

        # every argument is checked whether or not this net uses it (a net without hidden
        # layers has no activation, but a misspelt name is still a mistake worth hearing of)
        if isinstance(activation, str):
            names = (activation,)
            activations = (activation,) * depth
        elif isinstance(activation, Sequence):
            names = activations = tuple(activation)
            if len(activations) != depth:
                raise ValueError(
                    f"activation: got {len(activations)} names for {depth} hidden layers; "
                    "give one name, or one per hidden layer")
        else:
            raise ValueError("activation must be a name or a sequence of names, "
                             f"got {activation!r}")
        for a in names:
            if not isinstance(a, str) or a not in ACTIVATIONS:
                raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {a!r}")

        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")

        try:
            # np.dtype(None) is float64: refuse None rather than guess
            dt = None if dtype is None else np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is None or dt.name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        # the native byte order, whatever the spelling ('>f8' is float64 too): kernels and
        # NumPy's out= buffers work in native order only
        dt = np.dtype(dt.name)

        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activations", activations)
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "dtype", dt)

    def __setattr__(self, name, value):
        raise AttributeError("Network is immutable; make a new one")

    # ------------------------------------------------------------------ derived facts
    def _layer_widths(self):
        """``[(n_in, n_out), ...]``, one pair per affine layer."""
        return list(zip(self.sizes[:-1], self.sizes[1:], strict=True))

    @property
    def depth(self):
        """Number of hidden layers, ``len(sizes) - 2``."""
        return len(self.sizes) - 2

    @property
    def n_layers(self):
        """Number of affine layers (``(W, b)`` pairs), ``len(sizes) - 1``."""
        return len(self.sizes) - 1

    @property
    def activation(self):
        """The hidden activation's name when all hidden layers share one, else the tuple."""
        if len(set(self.activations)) <= 1:
            return self.activations[0] if self.activations else "relu"
        return self.activations

    @property
    def n_params(self):
        """Total number of scalars in W and b over all layers."""
        return sum(i * o + o for i, o in self._layer_widths())

    def shapes(self):
        """``[((n_in, n_out), (n_out,)), ...]``, one entry per layer."""
        return [((i, o), (o,)) for i, o in self._layer_widths()]

    def step_flops(self, batch_size):
        """FLOPs of the matrix products of one SGD step, ``6*B*sum(n_in*n_out)``.

        Forward X@W (2BNM), weight gradient H^T@dZ (2BNM), input gradient dZ@W^T (2BNM);
        everything else (bias, activation, loss, update) is O(B*N) and not counted.
        """
        return 6 * int(batch_size) * sum(i * o for i, o in self._layer_widths())

    # ------------------------------------------------------------------ parameters
    def init_scheme(self, layer):
        """``"he"`` or ``"glorot"``: the uniform initialisation used for ``layer``'s W.

        Hidden layer l is followed by activation l; the output layer is fed by the last hidden
        activation. He-uniform where that activation is relu, Glorot-uniform for tanh/sigmoid
        and for a network without hidden layers.
        """
        if not self.activations:
            return "glorot"
        act = self.activations[min(layer, self.depth - 1)]
        return "he" if act == "relu" else "glorot"

    def init(self, seed=0):
        """Fresh parameters: a list of ``(W, b)``, W (n_in, n_out), b (n_out,), of ``self.dtype``.

        He-uniform: U(-sqrt(6/n_in), +sqrt(6/n_in)); Glorot-uniform: U(-sqrt(6/(n_in+n_out)), ...);
        biases zero. Drawn in float64 from ``numpy.random.default_rng(seed)`` layer by layer, then
        rounded to the dtype, so the same seed gives the same numbers on every machine, and the
        float32 parameters are the rounded float64 ones.
        """
        rng = np.random.default_rng(check_seed(seed))
        params = []
        for layer, (n_in, n_out) in enumerate(self._layer_widths()):
            if self.init_scheme(layer) == "he":
                limit = np.sqrt(6.0 / n_in)
            else:
                limit = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-limit, limit, size=(n_in, n_out)).astype(self.dtype)
            b = np.zeros(n_out, dtype=self.dtype)
            params.append((W, b))
        return params

    # ------------------------------------------------------------------ identity
    def _key(self):
        return (self.sizes, self.activations, self.loss, self.dtype.name)

    def __eq__(self, other):
        return isinstance(other, Network) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        act = self.activation
        return (f"Network(sizes={self.sizes}, activation={act!r}, loss={self.loss!r}, "
                f"dtype={self.dtype.name!r})")

    def with_dtype(self, dtype):
        """The same network in another dtype."""
        return Network(self.sizes, self.activations if self.depth else "relu", self.loss, dtype)
