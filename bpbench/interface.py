"""The one interface every implementation has.

The public methods (``loss_and_grads``, ``step``, ``forward``, ``params``, ...) live here and are
final: they validate the user's input once (:mod:`bpbench.checks`) and then call the private hooks
an implementation writes. A subclass that tries to override a public method is refused when its
class is created, so no implementation can forget validation or copy semantics.

Hooks an implementation writes (all inputs already validated, of ``net.dtype``, C-contiguous)::

    _load_params(params)        params: fresh list of (W, b) host arrays the instance may keep
    _to_device(X, y) -> data    whatever _step/_loss_and_grads take (default: the tuple (X, y))
    _forward(X) -> out          (B, K) host array
    _loss_and_grads(data) -> (loss, [(dW, db), ...])   host arrays shaped like params
    _step(data, lr) -> loss     one SGD update in place; the loss before the update
    _get_params() -> [(W, b), ...]   host copies
    _run_epoch(X, y, order, batch_size, lr) -> per-batch losses   (optional fast path)
    synchronize()               wait for queued device work (GPU implementations)
"""

from __future__ import annotations

import numpy as np

from .checks import (
    check_batch,
    check_inputs,
    check_lr,
    check_order,
    check_params,
    check_positive_int,
)
from .network import Network

_FINAL = ("__init__", "loss_and_grads", "step", "forward", "params", "prepare",
          "step_prepared", "loss_and_grads_prepared", "run_epoch")


class PreparedBatch:
    """A validated batch already in an implementation's own layout (device memory for GPUs).

    Made by :meth:`Implementation.prepare`; used by benchmarks so that validation and host-device
    copies stay outside the timed step. ``X`` and ``y`` are the validated host arrays.
    """

    __slots__ = ("X", "y", "data", "owner")

    def __init__(self, X, y, data, owner):
        self.X, self.y, self.data, self.owner = X, y, data, owner

    @property
    def size(self):
        """Number of samples B."""
        return self.X.shape[0]


class Implementation:
    """Base class of every backprop implementation.

    ``model = Impl(net, params)`` copies ``params`` in (the caller's arrays are never modified).
    Subclasses set the class attributes ``name`` and ``description`` and write the hooks listed
    in the module docstring.
    """

    #: registry name
    name: str = ""
    #: one line saying what this implementation is
    description: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        overridden = [m for m in _FINAL if m in cls.__dict__]
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {overridden}: implementations write the private hooks "
                "(_load_params, _forward, _loss_and_grads, _step, _get_params, ...); the public "
                "methods are the shared, validating interface")

    @classmethod
    def availability(cls):
        """None when usable here, else a sentence saying why not and what would make it usable."""
        return None

    # ------------------------------------------------------------------ public, final
    def __init__(self, net, params):
        if not isinstance(net, Network):
            raise ValueError(f"net must be a bpbench.Network, got {type(net).__name__}")
        self.net = net
        self._load_params(check_params(net, params))

    def loss_and_grads(self, X, y):
        """(loss as float, [(dW, db), ...] host arrays shaped like params) on this batch."""
        return self.loss_and_grads_prepared(self.prepare(X, y))

    def step(self, X, y, lr):
        """One SGD step ``w -= lr * dL/dw`` on this batch; returns the loss before the update."""
        lr = check_lr(lr)
        X, y = check_batch(self.net, X, y)  # what prepare(X, y) does, without its wrapper
        return float(self._step(self._to_device(X, y), lr))

    def forward(self, X):
        """Output-layer values (logits for cross_entropy), a (B, K) host array."""
        return self._forward(check_inputs(self.net, X))

    def params(self):
        """Host copy of the current parameters: [(W, b), ...] of net.dtype."""
        return [(np.array(W, copy=True), np.array(b, copy=True)) for W, b in self._get_params()]

    def prepare(self, X, y):
        """Validate a batch once and put it in this implementation's layout (see PreparedBatch)."""
        X, y = check_batch(self.net, X, y)
        return PreparedBatch(X, y, self._to_device(X, y), self)

    def step_prepared(self, batch, lr):
        """:meth:`step` on a batch from :meth:`prepare`: X and y are not validated again (they
        were by ``prepare``); ``lr`` is (a plain positive float costs one comparison)."""
        self._check_prepared(batch)
        lr = check_lr(lr)
        return float(self._step(batch.data, lr))

    def loss_and_grads_prepared(self, batch):
        """:meth:`loss_and_grads` on a batch from :meth:`prepare`."""
        self._check_prepared(batch)
        loss, grads = self._loss_and_grads(batch.data)
        return float(loss), [(np.asarray(dW), np.asarray(db)) for dW, db in grads]

    def run_epoch(self, X, y, order, batch_size, lr):
        """One pass of SGD over a dataset in the given row order; the per-batch losses.

        X, y: the whole dataset, checked exactly as :meth:`step` checks a batch. order: an
        integer (N,) permutation of ``range(N)`` (each row once; anything else is refused);
        consecutive slices of ``batch_size`` rows of it are the batches (the last may be
        shorter). Returns the per-batch losses (before each update), a float64 array of length
        ceil(N / batch_size). Every argument is checked before the model changes.
        Used by :func:`bpbench.train`.
        """
        X, y = check_batch(self.net, X, y)
        order = check_order(order, X.shape[0])
        batch_size = check_positive_int(batch_size, "batch_size")
        lr = check_lr(lr)
        return np.asarray(self._run_epoch(X, y, order, batch_size, lr), dtype=np.float64)

    def synchronize(self):
        """Wait until queued device work has finished (a no-op on the CPU)."""

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} for {self.net!r}>"

    # ------------------------------------------------------------------ hooks
    def _check_prepared(self, batch):
        if not isinstance(batch, PreparedBatch) or batch.owner is not self:
            raise ValueError("batch must come from this model's prepare(X, y)")

    def _load_params(self, params):
        raise NotImplementedError

    def _to_device(self, X, y):
        return X, y

    def _forward(self, X):
        raise NotImplementedError

    def _loss_and_grads(self, data):
        raise NotImplementedError

    def _step(self, data, lr):
        raise NotImplementedError

    def _get_params(self):
        raise NotImplementedError

    def _run_epoch(self, X, y, order, batch_size, lr):
        """Default epoch: a Python loop of _step over the batches. Fast paths must match it."""
        n = len(order)
        losses = np.empty(-(-n // batch_size))
        for i, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            losses[i] = self._step(self._to_device(X[idx], y[idx]), lr)
        return losses
