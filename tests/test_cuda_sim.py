"""The ``cuda`` implementation on Numba's CUDA simulator (no GPU needed), and its availability.

The simulator must be switched on before Numba is imported, and this pytest process may already
have imported Numba without it, so the checks (tests/cuda_sim_checks.py: agreement with the
float64 reference for both losses, every activation, both dtypes and widths crossing the tiles;
SGD steps and an epoch against ``numpy``; logits of 1e4; bad input) run in subprocesses with
``NUMBA_ENABLE_CUDASIM=1``. Two processes share the checks, since the simulator runs every GPU
thread in Python and is slow; ``python -m bpbench.bench.gpu_check --smoke`` runs alongside them.
The test fails unless every check the script knows reports PASS:
it cannot pass by running nothing. (Unavailability without GPU or simulator, with both remedies
in the message, is tested in tests/test_registry.py.)
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "cuda_sim_checks.py"
#: the checks, split in two processes of similar length (about 25 s each on a quiet core)
GROUPS = [
    ["agree_f64_ce", "agree_f64_mse", "agree_f32_ce", "agree_f32_mse", "sgd_f32", "bad_input"],
    ["split_k", "sgd_f64", "stable_ce_f32", "stable_ce_f64", "registry"],
]


def _env(simulate):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def _start(args, simulate=True):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=_env(simulate),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


@pytest.fixture(scope="module")
def simulator_runs(tmp_path_factory):
    """Every simulator subprocess of this module, started at once (they overlap on two cores)."""
    csv_path = tmp_path_factory.mktemp("gpu_check") / "smoke.csv"
    runs = {
        "list": _start([str(SCRIPT), "--list"]),
        "groups": [_start([str(SCRIPT), *group]) for group in GROUPS],
        # the GPU check's own --smoke switches the simulator on itself: start it without
        "smoke": _start(["-m", "bpbench.bench.gpu_check", "--smoke", "--csv", str(csv_path)],
                        simulate=False),
        "csv": csv_path,
    }
    yield runs
    for proc in [runs["list"], runs["smoke"], *runs["groups"]]:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_cuda_on_the_simulator_agrees_with_reference_and_numpy(simulator_runs):
    rc, out = _finish(simulator_runs["list"])
    assert rc == 0, out
    known = out.split()
    assert sorted(known) == sorted(n for g in GROUPS for n in g), \
        f"GROUPS must cover every check in {SCRIPT.name}: {known}"
    for group, proc in zip(GROUPS, simulator_runs["groups"], strict=True):
        rc, out = _finish(proc)
        assert rc == 0, f"simulator checks failed:\n{out}"
        passed = {line.split()[1] for line in out.splitlines() if line.startswith("PASS ")}
        assert passed == set(group), f"expected PASS for {group}, got:\n{out}"


@pytest.mark.slow
def test_gpu_check_smoke_runs_end_to_end_on_the_simulator(simulator_runs):
    rc, out = _finish(simulator_runs["smoke"])
    assert rc == 0, out
    assert "device: Numba CUDA simulator" in out and "all passed" in out, out
    with open(simulator_runs["csv"], newline="") as f:
        rows = {row["impl"]: row for row in csv.DictReader(f)}
    from bpbench.bench import points

    assert list(rows) == points.contestants(), rows  # the one contestant list, in its order
    assert float(rows["cuda"]["median_s"]) > 0 and float(rows["numpy"]["median_s"]) > 0
    assert float(rows["cuda"]["ci_low_s"]) <= float(rows["cuda"]["median_s"])
    assert rows["cuda"]["machine"] and rows["cuda"]["commit"] and rows["cuda"]["threads"]
    # numba is never timed in the smoke run, torch only where it sees a GPU: reasons recorded
    assert rows["numba"]["median_s"] == "" and rows["numba"]["note"].startswith("skipped:")
    assert rows["torch"]["median_s"] != "" or rows["torch"]["note"].startswith("skipped:")


def test_cuda_is_listed_on_the_simulator():
    code = "import bpbench; print(bpbench.available())"
    proc = _start(["-c", code])
    rc, out = _finish(proc, timeout=120)
    assert rc == 0 and "'cuda'" in out, out


def test_importing_bpbench_and_the_cuda_module_imports_no_numba():
    code = ("import sys, bpbench, bpbench.impls.numba_cuda\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'numba_cuda')))")
    rc, out = _finish(_start(["-c", code], simulate=False), timeout=120)
    assert rc == 0 and out.strip() == "[]", out
