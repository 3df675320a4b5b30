"""The one timing engine, the thread setting, the machine name: checked against outside answers."""

import functools
import math
import os
import subprocess
import time

import numpy as np
import pytest

from bpbench.bench import engine, machine, points
from bpbench.bench import threads as pools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- median CI
@pytest.mark.parametrize("n, lo, hi", [(20, 6, 15), (10, 2, 9), (50, 18, 33)])
def test_median_ci_uses_the_textbook_order_statistics(n, lo, hi):
    # 95% distribution-free CI of the median: the ranks tabulated in e.g. Conover, Practical
    # Nonparametric Statistics (n=10: 2nd and 9th, n=20: 6th and 15th, n=50: 18th and 33rd)
    samples = np.arange(1, n + 1, dtype=float)[::-1]  # unsorted on purpose
    assert engine.median_ci(samples, 0.95) == (lo, hi)


def test_median_ci_covers_the_true_median_as_often_as_it_says():
    rng = np.random.default_rng(1)
    true_median = math.log(2)  # of the exponential distribution, scale 1
    trials = 2000
    hits = sum(lo <= true_median <= hi for lo, hi in
               (engine.median_ci(rng.exponential(size=15), 0.95) for _ in range(trials)))
    # exact coverage for n=15 at these ranks is 96.5%; 2000 trials: +-1% at 2 sigma
    assert hits / trials >= 0.94


def test_too_few_samples_give_the_whole_range():
    assert engine.median_ci([3.0, 1.0, 2.0], 0.95) == (1.0, 3.0)


# ---------------------------------------------------------------------------- time_call
def test_time_call_measures_a_known_duration_and_syncs_around_every_sample():
    syncs = []

    def sleep():
        time.sleep(0.002)

    t = engine.time_call(sleep, sync=lambda: syncs.append(1), settings="smoke", min_repeats=5)
    assert 0.002 <= t.median < 0.02  # sleep() never returns early
    assert t.n >= 5 and t.ci_low <= t.median <= t.ci_high and t.best <= t.median
    assert len(syncs) >= 2 * t.n  # before each sample's clock starts and before it stops


def test_time_call_without_sample_time_calls_exactly_warmup_plus_samples():
    # long calls (a whole training run: bpbench to-target) are timed one per sample, and the
    # calibration call, useless then, is not made; with a sample_time it is (one call more)
    calls = []
    t = engine.time_call(lambda: calls.append(1), settings="smoke", warmup=2, min_repeats=3,
                         max_repeats=3, sample_time=0)
    assert t.n == 3 and t.number == 1 and len(calls) == 2 + 3
    calls.clear()
    t = engine.time_call(lambda: calls.append(1), settings="smoke", warmup=2, min_repeats=3,
                         max_repeats=3, sample_time=1e-9)
    assert len(calls) == 2 + 1 + 3 * t.number


@pytest.mark.parametrize("kwargs, word", [
    ({"min_repeats": 0}, "min_repeats"),
    ({"warmup": -1}, "warmup"),
    ({"max_time": math.nan}, "max_time"),
    ({"confidence": 1.0}, "confidence"),
])
def test_bad_settings_are_value_errors(kwargs, word):
    with pytest.raises(ValueError, match=word):
        engine.make_settings("compare", **kwargs)


def test_unknown_preset_is_a_value_error():
    with pytest.raises(ValueError, match="preset"):
        engine.make_settings("fastest-ever")


def test_measure_times_the_checked_point_under_the_given_threads():
    net = points.grid_net(1, 8)
    m = engine.measure("numpy", net, 4, settings="smoke", threads=1)
    assert m.threads == 1 and m.timing.n >= 3 and m.max_rel_error <= 1e-4
    assert m.gflops == pytest.approx(net.step_flops(4) / m.timing.median / 1e9)


# ---------------------------------------------------------------------------- threads
def test_thread_count_explicit_then_environment_then_cores(monkeypatch):
    monkeypatch.delenv(pools.ENV, raising=False)
    assert pools.resolve() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(pools.ENV, "3")
    assert pools.resolve() == 3
    assert pools.resolve(1) == 1


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "two"])
def test_bad_thread_counts_are_value_errors(value, monkeypatch):
    with pytest.raises(ValueError, match="threads"):
        pools.resolve(value)
    monkeypatch.setenv(pools.ENV, str(value))
    with pytest.raises(ValueError, match=pools.ENV):
        pools.resolve()


def test_apply_sets_every_blas_pool_and_the_peer_gets_the_same_count():
    from threadpoolctl import threadpool_info

    try:
        pools.apply(1)
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)
        if points.unavailable("torch") is None:
            import torch

            points.make_model("torch", points.grid_net(0, 4), points.grid_net(0, 4).init(0),
                              threads=1)
            assert torch.get_num_threads() == 1
    finally:
        pools.apply()


# ---------------------------------------------------------------------------- machine
EPYC = {"cpu": "AMD EPYC", "cpu_family": 25, "cpu_model": 17, "num_cpu": 2, "gpus": []}
XEON = {"cpu": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", "cpu_family": 6,
        "cpu_model": 143, "num_cpu": 16, "gpus": ["NVIDIA H200", "NVIDIA H200"]}


def test_machine_names_come_from_the_hardware():
    assert machine.name_from(EPYC) == "amd-epyc-f25m17-2cpu"
    assert machine.name_from(XEON) == "intel-xeon-platinum-8480-f6m143-16cpu-2x-nvidia-h200"
    # another CPU generation behind the same model string, or another core count: another name
    assert machine.name_from({**EPYC, "cpu_model": 1}) != machine.name_from(EPYC)
    assert machine.name_from({**EPYC, "num_cpu": 4}) != machine.name_from(EPYC)


def test_this_machine_has_a_name_asv_can_use_as_a_folder():
    name = machine.name()
    assert name == machine.info()["machine"] and 0 < len(name) <= machine.MAX_NAME
    assert all(c.isalnum() or c == "-" for c in name)
    assert f"{os.cpu_count()}cpu" in name


def test_provenance_names_commit_machine_threads_versions_and_command():
    record = engine.provenance(command="bpbench compare")
    assert record["machine"] == machine.name() and record["command"] == "bpbench compare"
    assert record["numpy"] == np.__version__ and record["threads"].isdigit()
    assert len(record["commit"].split("+")[0]) == 40


def test_commit_is_dirty_for_changed_code_but_not_for_rewritten_results(tmp_path, monkeypatch):
    # a throwaway repository with a tracked source file and a tracked result file; the answer
    # comes from git's own HEAD, not from bpbench
    monkeypatch.delenv("BPBENCH_COMMIT", raising=False)
    run = functools.partial(subprocess.run, cwd=tmp_path, check=True, capture_output=True)
    run(["git", "init", "-q"])
    (tmp_path / "results" / "m").mkdir(parents=True)
    (tmp_path / "results" / "m" / "goals.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    run(["git", "add", "."])
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"])
    head = run(["git", "rev-parse", "HEAD"], text=True).stdout.strip()
    assert engine.commit(str(tmp_path)) == head
    (tmp_path / "results" / "m" / "goals.csv").write_text("b\n")  # what measuring does
    (tmp_path / "results" / "m" / "new.csv").write_text("c\n")
    assert engine.commit(str(tmp_path)) == head
    (tmp_path / "code.py").write_text("x = 2\n")  # what changes the measured code
    assert engine.commit(str(tmp_path)) == head + "+dirty"
    assert engine.commit(str(tmp_path / "nowhere")) is None


def test_every_consumer_times_through_the_one_engine():
    # the import graph (import-linter's grimp): compare, fastest, goals, the GPU check, the
    # floors and the noise command import the engine; lint-imports forbids the clock elsewhere
    import grimp

    graph = grimp.build_graph("bpbench", include_external_packages=True)
    users = graph.find_modules_that_directly_import("bpbench.bench.engine")
    for consumer in ("compare", "selection", "goals", "gpu_check", "floor", "roofline",
                     "asv_tools", "compile_cost", "overhead", "to_target"):
        assert f"bpbench.bench.{consumer}" in users, consumer
    clock_readers = {m for m in graph.find_modules_that_directly_import("time")
                     if m.startswith("bpbench.bench.") and ".peers" not in m}
    assert clock_readers == {"bpbench.bench.engine"}
    # the asv suite builds its points with the engine and times Point.step
    with open(os.path.join(ROOT, "benchmarks", "common.py")) as f:
        assert "engine.checked_point(" in f.read()
    with open(os.path.join(ROOT, "benchmarks", "bench_step.py")) as f:
        assert f.read().count("self.point.step()") == 3
