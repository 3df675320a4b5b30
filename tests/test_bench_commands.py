"""The measuring commands around the engine: goals, machine, asv wrapper, noise, time to target."""

import math
import os
import subprocess
import sys

import pytest

from bpbench.bench import asv_tools, goals, machine, peers, points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bpbench(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "bpbench", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def test_machine_command_prints_the_hardware_name():
    out = bpbench("machine")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == machine.name()
    assert "cpu:" in out.stdout and "num_cpu:" in out.stdout


def test_register_writes_every_field_under_the_hardware_name(tmp_path):
    import json

    path = tmp_path / "asv-machine.json"
    assert machine.register(path=str(path)) == machine.name()
    record = json.loads(path.read_text())[machine.name()]
    assert record["machine"] == machine.name()
    assert record["num_cpu"] == str(os.cpu_count()) and record["arch"] and record["os"]


def test_asv_wrapper_names_the_machine_where_asv_takes_one():
    assert asv_tools.asv_argv(["run", "--quick"], "m") == ["run", "--machine", "m", "--quick"]
    assert asv_tools.asv_argv(["continuous", "A", "B"], "m")[:3] == ["continuous", "--machine",
                                                                     "m"]
    assert asv_tools.asv_argv(["publish"], "m") == ["publish"]
    assert asv_tools.asv_argv(["run", "--machine", "x"], "m") == ["run", "--machine", "x"]


def test_asv_wrapper_without_a_command_is_a_clear_error():
    out = bpbench("asv")
    assert out.returncode == 2 and "asv_args" in out.stderr


def test_noise_figures_from_two_runs_by_hand():
    first = {("b", "'numpy'"): (1.0, 0.98, 1.02), ("b", "'numba'"): (2.0, 1.9, 2.1)}
    second = {("b", "'numpy'"): (1.05, 1.04, 1.06), ("b", "'numba'"): (2.0, 1.8, 2.2)}
    table = asv_tools.noise_table(first, second).set_index("params")
    numpy = table.loc["'numpy'"]
    # A/A ratio 1.05 beats the intervals (0.02 + 0.0095): noise 5%
    assert numpy["ratio"] == pytest.approx(1.05) and numpy["noise"] == pytest.approx(0.05)
    assert numpy["min_factor"] == pytest.approx(1.05)
    assert numpy["detectable"] == pytest.approx(1.05 / 0.95)
    numba = table.loc["'numba'"]
    # equal medians: the intervals decide, 0.05 + 0.1
    assert numba["noise"] == pytest.approx(0.15)


def test_goals_table_compares_the_best_numba_flavour_with_every_peer():
    frame, record = goals.run_goals([0], [1], threads=1, settings="smoke", progress=False,
                                    roofline=False, rounds=3)
    row = frame.iloc[0]
    best = min(row["numba_s"], row["numba_parallel_s"])
    assert row["best"] in goals.FLAVOURS and row[f"{row['best']}_s"] == best
    assert row["x_floor"] == pytest.approx(best / row["floor_s"])
    present = [p for p in peers.names() if points.unavailable(p) is None]
    for p in present:
        assert row[f"x_{p}_low"] <= row[f"x_{p}"] <= row[f"x_{p}_high"]
    if present:
        assert row["fastest_peer"] in present
        assert row["x_fastest_peer"] <= min(row[f"x_{p}_high"] for p in present)
    assert row["verdict_torch"] == goals.verdict_torch(1, row.get("x_torch", math.nan),
                                                       math.nan)
    assert record["threads"] == "1" and row["threads"] == "1"


def test_goal_verdicts():
    assert goals.verdict_torch(1, 12.0, 0.9) == "ok"
    assert goals.verdict_torch(1, 9.0, 0.9).startswith("MISS torch x9.00<10")
    assert goals.verdict_torch(256, 1.5, 1.2) == "MISS roofline x1.20>1.1"
    assert goals.verdict_torch(16, math.nan, 1.0) == "ok"
    assert goals.verdict_peers(1, 6.0, "jax") == "ok"
    assert goals.verdict_peers(1, 4.0, "jax") == "MISS jax x4.00<5"
    assert goals.verdict_peers(2048, 0.9, "torch_compile") == "MISS torch_compile x0.90<1"
    assert goals.verdict_peers(2048, math.nan, "") == "-"


def test_time_to_target_runs_the_peers_own_loop_to_the_same_target():
    pytest.importorskip("torch")
    from benchmarks import common
    from bpbench.bench.target import TARGET_LOSS, target_problem

    problem = target_problem(2)
    ours = common.train_to_target("numpy", *problem, 32)
    theirs = common.train_to_target("torch", *problem, 32)
    assert theirs[-1] <= TARGET_LOSS
    # same data, init, batches and learning rate: the same number of epochs up to rounding
    assert abs(len(theirs) - len(ours)) <= 2
    # and the same first-epoch loss (float32 rounding apart)
    assert theirs[0] == pytest.approx(ours[0], rel=1e-4)


def test_compare_command_reads_the_cached_ceilings_and_writes_provenance(tmp_path):
    import json

    import pandas as pd

    from bpbench.bench import roofline

    # a cached entry for this machine, 1 thread and these versions: compare must not measure
    ceil = {"machine": machine.name(), "threads": 1, "peak": {"float32": 1e11, "float64": 5e10},
            "levels": [{"level": "DRAM", "capacity": None, "bandwidth": 1e10}]}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / roofline.CACHE_FILE).write_text(json.dumps({roofline._key(1): ceil}))
    env = dict(os.environ, BPBENCH_CACHE_DIR=str(tmp_path / "cache"), BPBENCH_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "bpbench", "compare", "--impls", "numpy",
                          "--depths", "0", "--batches", "1,4", "--width", "8", "--quiet",
                          "--no-floor", "--out", str(tmp_path / "c.csv")],
                         capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "measuring" not in out.stdout and f"machine {machine.name()}" in out.stdout
    frame = pd.read_csv(tmp_path / "c.csv")
    net = points.grid_net(0, 8)
    for row in frame.itertuples():
        bound = roofline.bound(net, row.batch, ceil)
        assert row.roofline_s == pytest.approx(bound["roofline_s"])
        assert row.threads == 1 and row.machine == machine.name()
        assert "bpbench compare" in row.command and "numpy" in row.versions
