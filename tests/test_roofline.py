"""The roofline model: what a step must do, counted by hand; the ceilings' bookkeeping."""

import numpy as np
import pytest

import bpbench
from bpbench.bench import roofline


def test_traffic_of_a_small_step_counted_by_hand():
    # net (3, 2, 2), relu, float32 (4 bytes), batch 2. W0 is chosen so that hidden unit 1 is
    # zero for both rows: its row of W1 needs no reading, no update, no input gradient.
    net = bpbench.Network((3, 2, 2), activation="relu", loss="cross_entropy", dtype="float32")
    W0 = np.array([[1, -1], [0, -1], [0, -1]], np.float32)
    W1 = np.array([[1, 2], [3, 4]], np.float32)
    params = [(W0, np.zeros(2, np.float32)), (W1, np.zeros(2, np.float32))]
    X = np.array([[1, 0, 2], [1, 1, 1]], np.float32)  # 5 non-zeros, every column used
    # hidden: [[1, 0], [1, 0]]: 2 non-zeros, 1 active unit, relu' non-zero at 2 entries
    t = roofline.traffic(net, params, X)
    # FLOPs: layer 0: 4 * n_out(2) * nnz(X)(5) = 40 (forward + weight gradient, no dX);
    #        layer 1: 4 * 2 * 2 = 16, input gradient 2 * 2 * 2 = 8
    assert t["flops"] == 64
    # bytes: W0 3 * 3 rows * 2 * 4 = 72, b0 3 * 2 * 4 = 24, hidden written + read 2 * 2 * 2 * 4
    # = 32, W1 3 * 1 row * 2 * 4 = 24, b1 24, X read once 6 * 4 = 24
    assert t["bytes"] == 200
    # working set: X 24, W0 + b0 32, hidden 16, W1 + b1 24
    assert t["working_set"] == 96


def test_dense_flops_are_the_products_of_the_step_without_the_first_input_gradient():
    # tanh: no zero activations; a dense batch: the model's FLOPs are the dense products'
    net = bpbench.Network((16, 32, 8, 4), activation="tanh", dtype="float64")
    X = np.random.default_rng(0).uniform(0.5, 1.0, (5, 16))
    t = roofline.traffic(net, net.init(0), X)
    assert t["flops"] == net.step_flops(5) - 2 * 5 * 16 * 32


CEIL = {"peak": {"float32": 1e11, "float64": 5e10},
        "levels": [{"level": "L1", "capacity": 2**16, "bandwidth": 4e11},
                   {"level": "L2", "capacity": 2**21, "bandwidth": 2e11},
                   {"level": "DRAM", "capacity": None, "bandwidth": 2e10}]}


def test_the_bound_is_the_larger_of_compute_and_memory_time_at_the_right_level():
    from bpbench.bench.points import grid_net

    small = roofline.bound(grid_net(1), 1, CEIL)  # 256x256 float32 weights: 256 KiB, L2
    assert small["level"] == "L2" and small["bound"] == "memory"
    assert small["memory_s"] == pytest.approx(small["bytes"] / 2e11)
    assert small["roofline_s"] == max(small["compute_s"], small["memory_s"])
    big = roofline.bound(grid_net(1), 1024, CEIL)
    assert big["bound"] == "compute" and big["roofline_s"] == pytest.approx(big["flops"] / 1e11)
    assert roofline.level_for(10**9, CEIL)["level"] == "DRAM"
    assert roofline.level_for(100, CEIL)["level"] == "L1"


def test_remeasured_ceilings_only_go_up():
    old = {"peak": {"float32": 2e11, "float64": 1e11},
           "levels": [{"level": "L1", "capacity": 2**16, "bandwidth": 5e11}]}
    new = {"peak": {"float32": 1e11, "float64": 2e11}, "machine": "m", "threads": 2,
           "levels": [{"level": "L1", "capacity": 2**16, "bandwidth": 3e11}]}
    merged = roofline.merge(old, new)
    assert merged["peak"] == {"float32": 2e11, "float64": 2e11}
    assert merged["levels"][0]["bandwidth"] == 5e11
    assert new["peak"]["float32"] == 1e11  # inputs untouched


def test_cache_levels_scale_private_caches_with_threads():
    one = dict(roofline.cache_levels(1))
    two = dict(roofline.cache_levels(2))
    if not one:
        pytest.skip("no cache information from the OS here")
    assert set(one) == set(two)
    for name, size in one.items():
        assert two[name] in (size, 2 * size)  # private: doubled; shared: the same
