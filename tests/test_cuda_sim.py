"""The ``cuda`` implementation on Numba's CUDA simulator (no GPU needed), and its availability.

The simulator must be switched on before Numba is imported, and this pytest process may already
have imported Numba without it, so everything here runs in subprocesses with
``NUMBA_ENABLE_CUDASIM=1``, started at once (the simulator runs every GPU thread in Python and
is slow):

- the checks of tests/cuda_sim_checks.py (agreement with the float64 reference for both losses,
  every activation, both dtypes and widths crossing the tiles; split-K; SGD steps and an epoch
  against ``numpy``; logits of 1e4; bad input; the registry), in two processes, under
  ``python -O`` (the checks raise explicitly; asserts would vanish there). The test fails
  unless every check the script knows reports PASS: it cannot pass by running nothing;
- the shared contract tests (bad input, the hand-computed reference cases, codes, agreement,
  training) against ``cuda``: pytest with ``-k cuda``, less those marked ``sim_slow``
  (tests/conftest.py), which run against cuda where a GPU is;
- ``python -m bpbench.bench.gpu_check --smoke``.

(Unavailability without GPU or simulator, with both remedies in the message, is tested in
tests/test_registry.py.)
"""

import csv
import os
import re
import sys
from pathlib import Path

import pytest
from background import RUNNING

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "cuda_sim_checks.py"
#: the checks, split in two processes of similar length (about 25 s each on a quiet core)
GROUPS = [
    ["agree_f64_ce", "agree_f64_mse", "agree_f32_ce", "agree_f32_mse", "sgd_f32", "bad_input"],
    ["split_k", "sgd_f64", "stable_ce_f32", "stable_ce_f64", "sigmoid_f32", "sigmoid_f64",
     "registry"],
]


def _env(simulate):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def _start(key, args, simulate=True):
    return RUNNING.start(key, [sys.executable, *args], cwd=ROOT, env=_env(simulate))


#: the shared contract tests run against cuda on the simulator (``-k cuda``, not sim_slow)
SHARED = ["tests/test_bad_input.py", "tests/test_reference.py", "tests/test_codes.py",
          "tests/test_agreement.py", "tests/test_training.py"]
#: at least this many of them must pass (93 at the commit that added this); fewer means
#: tests went missing
SHARED_AT_LEAST = 85


def _finish(key, timeout=300):
    return RUNNING.finish(key, timeout)


def start_early(items=None):
    """Start every simulator subprocess of this module at once (tests/conftest.py calls this
    with the selected tests of this module when they are collected, so the subprocesses run
    beside the in-process tests); nothing when no selected test needs them."""
    if items is not None and not any("simulator_runs" in item.fixturenames for item in items):
        return None
    csv_path = RUNNING.path("gpu_check_smoke.csv")
    _start("sim list", [str(SCRIPT), "--list"])
    for i, group in enumerate(GROUPS):
        _start(f"sim group {i}", ["-O", str(SCRIPT), *group])
    _start("sim shared", ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not sim_slow",
                          "-k", "cuda", *SHARED])
    # the GPU check's own --smoke switches the simulator on itself: start it without
    _start("sim smoke", ["-m", "bpbench.bench.gpu_check", "--smoke", "--csv", str(csv_path)],
           simulate=False)
    return csv_path


@pytest.fixture(scope="module")
def simulator_runs():
    """The smoke run's CSV path, once every subprocess has started (if not already)."""
    return {"csv": start_early()}


@pytest.mark.slow
def test_cuda_on_the_simulator_agrees_with_reference_and_numpy(simulator_runs):
    rc, out = _finish("sim list")
    assert rc == 0, out
    known = out.split()
    assert sorted(known) == sorted(n for g in GROUPS for n in g), \
        f"GROUPS must cover every check in {SCRIPT.name}: {known}"
    for i, group in enumerate(GROUPS):
        rc, out = _finish(f"sim group {i}")
        assert rc == 0, f"simulator checks failed:\n{out}"
        passed = {line.split()[1] for line in out.splitlines() if line.startswith("PASS ")}
        assert passed == set(group), f"expected PASS for {group}, got:\n{out}"


@pytest.mark.slow
def test_shared_contract_tests_pass_against_cuda_on_the_simulator(simulator_runs):
    rc, out = _finish("sim shared", timeout=600)
    assert rc == 0, f"shared tests against cuda on the simulator failed:\n{out[-12000:]}"
    summary = out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= SHARED_AT_LEAST, summary
    # nothing skipped: cuda is available on the simulator, and sim_slow tests are deselected
    assert "skipped" not in summary and "failed" not in summary, summary


@pytest.mark.slow
def test_gpu_check_smoke_runs_end_to_end_on_the_simulator(simulator_runs):
    rc, out = _finish("sim smoke")
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
    _start("sim listed", ["-c", code])
    rc, out = _finish("sim listed", timeout=120)
    assert rc == 0 and "'cuda'" in out, out


def test_importing_bpbench_and_the_cuda_module_imports_no_numba():
    code = ("import sys, bpbench, bpbench.impls.numba_cuda\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'numba_cuda')))")
    _start("no numba", ["-c", code], simulate=False)
    rc, out = _finish("no numba", timeout=120)
    assert rc == 0 and out.strip() == "[]", out
