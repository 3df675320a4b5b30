"""Fixtures shared by the foundation tests: which implementations to test, and small cases.

``impl`` runs a test once per implementation under test: the built-in CPU implementations
(naive, numpy, numba, numba_parallel), ``cuda`` wherever it is available in this process (on a
GPU, or on Numba's CUDA simulator when ``NUMBA_ENABLE_CUDASIM=1`` was set before Python
started), then every other known implementation (entry points), available or not.

Without a GPU, ``cuda`` is not a parameter here: tests/test_cuda_sim.py runs a subset of these
shared tests against it in a subprocess with the simulator on. The simulator runs every GPU
thread in Python, so tests too heavy for it carry the ``sim_slow`` marker and skip ``cuda``
there (never on a GPU).

An implementation that is not available here is *skipped with the reason* (the test report says
what was not tested). On CI (environment variable ``CI`` set) the skip is a *failure* for the
required ones, and for any implementation whose own code fails to load (the registry's
``broken``: its module does not import, its entry point is not an Implementation...): an
outside implementation that breaks must not drop out of the tests unnoticed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import bpbench


def pytest_collection_finish(session):
    """Start the long subprocess suites (simulator checks, fuzz children) of the collected test
    modules now, so they run beside the in-process tests (tests/background.py)."""
    if session.config.option.collectonly:
        return
    by_module = {}
    for item in session.items:
        by_module.setdefault(getattr(item, "module", None), []).append(item)
    for module, items in by_module.items():
        start = getattr(module, "start_early", None)
        if start is not None:
            start(items)  # the module starts what its selected tests need


def pytest_sessionfinish(session):
    from background import RUNNING

    RUNNING.stop()


#: implementations that must be available on CI (a missing one there is a failure, not a skip)
REQUIRED = ("naive", "numpy", "numba", "numba_parallel")


def on_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def simulated(name):
    """True for ``cuda`` on Numba's CUDA simulator (as opposed to a GPU)."""
    if name != "cuda":
        return False
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def tested_names():
    """Names the ``impl`` fixture runs over: the required ones, cuda where it is available,
    then every other known name (an unavailable one is skipped with its reason)."""
    table = bpbench.implementations()
    extra = [n for n, info in table.items() if n not in REQUIRED
             and not (n == "cuda" and not info["available"])]
    return list(REQUIRED) + extra


def require(name):
    """The class for ``name``; skip (fail on CI, see the module docstring) when it is
    unavailable, saying why."""
    info = bpbench.implementations()[name]
    if not info["available"]:
        message = f"implementation {name!r} is not tested here: {info['reason']}"
        if on_ci() and (name in REQUIRED or info["broken"]):
            why = (f"every one of {REQUIRED} must be available" if name in REQUIRED
                   else "its own code fails to load")
            pytest.fail(f"on CI {why}; {message}")
        pytest.skip(message)
    return bpbench.get(name)


def _param(request):
    name = request.param
    cls = require(name)
    if simulated(name) and request.node.get_closest_marker("sim_slow"):
        pytest.skip("too heavy for the CUDA simulator (every GPU thread runs in Python); "
                    "runs against cuda on a GPU")
    return cls


@pytest.fixture(params=tested_names())
def impl(request):
    """An implementation class (parametrised over every implementation under test)."""
    return _param(request)


@pytest.fixture(params=[n for n in tested_names() if n != "naive"])
def fast_impl(request):
    """Like ``impl`` without the pure-Python one, for the larger workloads (cuda on the
    simulator skips them all)."""
    if simulated(request.param):
        pytest.skip("larger workloads: too heavy for the CUDA simulator; run on a GPU")
    return _param(request)


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
