"""Time of one SGD step and of loss_and_grads, per contestant and shape.

Every point is built by :func:`benchmarks.common.point`: same seeded net, params and batch for
every contestant, loss and gradients checked against the float64 reference, warmed up (JIT
compiled) in setup; the timed call is ``step_prepared`` on a prepared batch followed by
``synchronize()`` (validation and host-device copies outside the clock).
"""

from . import common


class TimeStep(common.StepTiming):
    """One SGD step: width 256, float32, relu, softmax cross-entropy; the main grid."""

    params = (common.IMPLS, common.DEPTHS, common.BATCHES)
    param_names = ["impl", "depth", "batch"]

    def setup(self, impl, depth, batch):
        self.point = common.point(impl, depth, batch)

    def time_step(self, impl, depth, batch):
        self.point.step()


class TimeStepFloat64(common.StepTiming):
    """One SGD step in float64 (otherwise as TimeStep), at one shape."""

    params = (common.IMPLS, [2], [256])
    param_names = ["impl", "depth", "batch"]

    def setup(self, impl, depth, batch):
        self.point = common.point(impl, depth, batch, dtype="float64")

    def time_step(self, impl, depth, batch):
        self.point.step()


class TimeStepWidth(common.StepTiming):
    """One SGD step at a larger width than the main grid's 256 (float32, depth 2, batch 256)."""

    params = (common.IMPLS, [2], [256], [1024])
    param_names = ["impl", "depth", "batch", "width"]

    def setup(self, impl, depth, batch, width):
        self.point = common.point(impl, depth, batch, width=width)

    def time_step(self, impl, depth, batch, width):
        self.point.step()


class TimeLossAndGrads(common.StepTiming):
    """loss_and_grads: forward, backward and the gradients copied to the host, no update."""

    params = (common.IMPLS, [2], [256])
    param_names = ["impl", "depth", "batch"]

    def setup(self, impl, depth, batch):
        if impl in common.PEERS:
            raise NotImplementedError("the peers are timed on the step only")
        self.point = common.point(impl, depth, batch)

    def time_loss_and_grads(self, impl, depth, batch):
        self.point.loss_and_grads()
