"""Time to target: wall time of bpbench.train until the loss reaches a target.

Two spirals (256 points), relu MLP of width 64, SGD with lr 0.1 and mini-batches of ``batch``,
float32, from ``net.init(0)`` and the same shuffling seed for everyone: the number of epochs
is the same for every contestant up to rounding (``track_epochs_to_target``), so the time
is the per-epoch speed over a real training run, Python loop and fast paths included.
Implementations train with :func:`bpbench.train`; a peer (PyTorch...) with its own training
loop (``train_epochs``) over the same batches, from the same init.
"""

from . import common


class TimeToTarget:
    """Seconds to train two spirals to loss 0.1 (fresh model per run, compiled in setup)."""

    params = (common.IMPLS, [2], [32])
    param_names = ["impl", "depth", "batch"]
    rounds = 1
    repeat = (3, 10, 5.0)
    warmup_time = 0
    timeout = 300

    def setup(self, impl, depth, batch):
        self.problem = common.target_problem_for(impl, depth, batch)

    def time_to_target(self, impl, depth, batch):
        common.train_to_target(impl, *self.problem, batch)

    def track_epochs_to_target(self, impl, depth, batch):
        return common.target_epochs[impl, depth, batch]

    track_epochs_to_target.unit = "epochs"
