"""The integer codes compiled kernels use for activations and losses, defined once.

Kernels take codes (data, not types) so that one compiled specialisation serves every activation
and loss. Every kernel module imports its codes from here, so the Numba and CUDA kernels cannot
number them differently, and the tables follow :mod:`bpbench.reference`: a new activation or
loss added there gets a code here automatically, and every implementation that has not
implemented it refuses a net that uses it (:func:`require`) instead of computing something else.
"""

from __future__ import annotations

from .reference import ACTIVATIONS, LOSSES

#: the affine output layer (no activation); never a hidden layer's code
IDENTITY = 0

#: activation name -> code, in the reference table's order, from 1
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS, start=1)}
RELU = ACTIVATION_CODES["relu"]
TANH = ACTIVATION_CODES["tanh"]
SIGMOID = ACTIVATION_CODES["sigmoid"]

#: loss name -> code, in the reference table's order, from 0
LOSS_CODES = {name: code for code, name in enumerate(LOSSES)}
MSE = LOSS_CODES["mse"]
CROSS_ENTROPY = LOSS_CODES["cross_entropy"]


class NotImplementedByError(NotImplementedError):
    """An implementation was given a net with an activation or loss it does not implement."""


def require(impl_name, net, activations, losses):
    """Refuse ``net`` unless ``impl_name`` implements all its activations and its loss.

    ``activations``, ``losses``: the names the implementation's kernels dispatch on. Raises
    :class:`NotImplementedByError` naming what is missing; called when a model is built, before
    any kernel runs, so an unknown code never reaches a kernel's dispatch.
    """
    missing = sorted(set(net.activations) - set(activations))
    if net.loss not in losses:
        missing.append(net.loss)
    if missing:
        raise NotImplementedByError(
            f"{impl_name} does not implement {', '.join(map(repr, missing))} (it implements "
            f"{', '.join(sorted(activations))} and the losses {', '.join(sorted(losses))}); "
            "add it to its kernels or use another implementation")
