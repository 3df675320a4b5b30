"""Fixtures shared by the foundation tests: which implementations to test, and small cases.

``impl`` runs a test once per implementation under test: every built-in CPU implementation
(naive, numpy, numba, numba_parallel) plus any other available one (entry points), but not
``cuda``, which tests/test_cuda*.py exercise on the simulator. An implementation that is not
available here is *skipped with the reason* (so the test report says what was not tested); on
CI (environment variable ``CI`` set) it *fails* instead, because there all four must run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import bpbench

#: implementations that must be available on CI (a missing one there is a failure, not a skip)
REQUIRED = ("naive", "numpy", "numba", "numba_parallel")

#: tested elsewhere (on the CUDA simulator)
NOT_HERE = ("cuda",)


def tested_names():
    """Names the ``impl`` fixture runs over: the required ones, then any other available one."""
    extra = [n for n in bpbench.available() if n not in REQUIRED and n not in NOT_HERE]
    return list(REQUIRED) + extra


def require(name):
    """The class for ``name``; skip (fail on CI) when it is unavailable, saying why."""
    info = bpbench.implementations()[name]
    if not info["available"]:
        message = f"implementation {name!r} is not tested here: {info['reason']}"
        if os.environ.get("CI") and name in REQUIRED:
            pytest.fail(f"on CI every one of {REQUIRED} must be available; {message}")
        pytest.skip(message)
    return bpbench.get(name)


@pytest.fixture(params=tested_names())
def impl(request):
    """An implementation class (parametrised over every implementation under test)."""
    return require(request.param)


@pytest.fixture(params=[n for n in tested_names() if n != "naive"])
def fast_impl(request):
    """Like ``impl`` without the pure-Python one, for the larger workloads."""
    return require(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def random_case(rng, dtype, max_depth=4, max_width=16, max_batch=16, loss=None):
    """(net, params, X, y) with a random architecture: depth, widths, per-layer activations,
    loss, batch size, and random biases (so a bias ignored in the forward pass shows)."""
    depth = int(rng.integers(0, max_depth + 1))
    sizes = tuple(int(w) for w in rng.integers(1, max_width + 1, depth + 2))
    acts = [str(a) for a in rng.choice(["relu", "tanh", "sigmoid"], depth)]
    loss = loss or str(rng.choice(["mse", "cross_entropy"]))
    net = bpbench.Network(sizes, activation=acts, loss=loss, dtype=dtype)
    params = [(W, rng.uniform(-0.5, 0.5, b.shape).astype(dtype))
              for W, b in net.init(int(rng.integers(2**31)))]
    batch = int(rng.integers(1, max_batch + 1))
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], batch)
    else:
        y = rng.standard_normal((batch, sizes[-1])).astype(dtype)
    return net, params, X, y


@pytest.fixture
def small_case():
    """A fixed small float64 case: net (4, 5, 3) tanh, cross entropy, batch 6."""
    net = bpbench.Network((4, 5, 3), activation="tanh", loss="cross_entropy")
    rng = np.random.default_rng(7)
    return net, net.init(seed=3), rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
