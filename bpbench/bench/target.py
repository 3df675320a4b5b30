"""The time-to-target problem: two spirals, a small relu MLP, SGD until the loss reaches a target.

One definition for ``bpbench to-target`` (:mod:`bpbench.bench.to_target`) and the asv suite's
time-to-target benchmark (``benchmarks/common.py`` imports it from here). Everyone trains from
``net.init(0)`` on the same data with the same learning rate, batch size and shuffling seed
(:func:`bpbench.train`'s batches: one ``default_rng(0)`` permutation per epoch), so the number of
epochs to the target is the same for every contestant up to float32 rounding and the time is
the per-epoch speed over a real run.
"""

from __future__ import annotations

from .. import datasets
from ..network import Network

#: two spirals of 256 points, relu MLP of width 64, SGD lr 0.1, float32; NumPy reaches the
#: target in about a hundred epochs
TARGET_SAMPLES = 256
TARGET_WIDTH = 64
TARGET_LR = 0.1
TARGET_LOSS = 0.1
TARGET_MAX_EPOCHS = 1000
#: mini-batch rows (the last batch of an epoch may be shorter)
TARGET_BATCH = 32
#: default dtype of the problem
TARGET_DTYPE = "float32"


def target_problem(depth, dtype=TARGET_DTYPE):
    """(net, X, y): sizes (2,) + (64,) * depth + (2,), relu, softmax cross-entropy.

    X: (256, 2) of ``net.dtype``; y: (256,) int class labels (0 or 1).
    """
    X, y = datasets.two_spirals(TARGET_SAMPLES, noise=0.0, seed=0)
    net = Network((2,) + (TARGET_WIDTH,) * depth + (2,), activation="relu",
                  loss="cross_entropy", dtype=dtype)
    return net, X.astype(net.dtype), y
