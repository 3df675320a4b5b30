"""The fuzz suite: hypothesis drives every public entry point of every implementation with
generated good and bad arguments (tests/fuzz_child.py, tests/fuzz_values.py).

Each target runs in its own child process, all started at once (most of them as soon as the
tests are collected: tests/background.py): a crash in compiled code (a signal) kills the child,
not this run, and fails that target's test, which prints the calls the
child logged last (the one that crashed among them) and its output. Targets: ``api`` (the
entry points of no implementation: Network, init, get, fastest, validate, the CLI), then every
implementation: the built-ins (``cuda`` on Numba's CUDA simulator, tiny shapes) and any other
known one. Hypothesis runs derandomized, with no example database: the same examples on every
run. ``BPBENCH_FUZZ_SCALE=10 python -m pytest tests/test_fuzz.py`` runs ten times as many.

Besides passing, a child must have exercised what it claims: every entry point called, with
accepted and refused calls where it takes arguments (read from its JSON summary), so the test
cannot pass by fuzzing nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from background import RUNNING
from conftest import REQUIRED, on_ci

import bpbench

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "fuzz_child.py"
#: exit status of a child whose implementation is unavailable (fuzz_child.EXIT_UNAVAILABLE)
EXIT_UNAVAILABLE = 3
BUILTIN = ["naive", "numpy", "numba", "numba_parallel", "cuda"]
#: seconds a child may take (they take well under a minute; hypothesis shrinking a failure takes
#: longer, up to its own limit of a few minutes)
TIMEOUT = 600
TARGETS = ["api"] + BUILTIN + [n for n in bpbench.implementations() if n not in BUILTIN]

#: entry points every implementation child must have called, accepted and refused
WITH_ARGUMENTS = ["loss_and_grads", "step", "forward", "prepare", "step_prepared",
                  "loss_and_grads_prepared", "run_epoch", "train"]
WITHOUT = ["params", "synchronize"]
API = {"Network": True, "Network.init": True, "get": True, "fastest": True, "validate": True,
       "cli": False}


def _env(target):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if target == "cuda":  # before numba is imported: in the child's environment
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


#: children started as soon as the tests are collected (tests/conftest.py): they compile no
#: Numba code for the CPU, so they cannot race the in-process tests for the on-disk cache; the
#: numba children start with this module, once the in-process tests have filled that cache
EARLY = ["api", "naive", "numpy", "cuda"]


def _start(target):
    log = RUNNING.path(f"fuzz-{target}.log")
    RUNNING.start(f"fuzz {target}", [sys.executable, str(CHILD), target, "--log", str(log)],
                  cwd=ROOT, env=_env(target))
    return log


def _selected(items):
    return [item.callspec.params["target"] for item in items if hasattr(item, "callspec")]


def start_early(items):
    """Start the EARLY children whose tests are selected (tests/conftest.py calls this)."""
    for target in _selected(items):
        if target in EARLY:
            _start(target)


@pytest.fixture(scope="module")
def logs(request):
    """target -> its child's log, every selected child started (they overlap on the CPUs)."""
    items = [item for item in request.session.items
             if getattr(item, "module", None) is request.module]
    return {target: _start(target) for target in _selected(items)}


def _tail(path, n=15):
    try:
        return "\n".join(path.read_text().splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def _finish(target, log):
    """The child's summary (dict), after failing the test on any failure or crash."""
    rc, out = RUNNING.finish(f"fuzz {target}", timeout=TIMEOUT)
    if rc is None:
        pytest.fail(f"the {target} fuzz child took more than {TIMEOUT} s and was stopped; its "
                    f"last calls:\n{_tail(log)}\n--- output ---\n{out[-8000:]}")
    if rc == EXIT_UNAVAILABLE:
        message = out.strip().splitlines()[-1]
        if on_ci() and (target in REQUIRED or target == "cuda"):
            pytest.fail(f"on CI {target} must be fuzzed: {message}")
        pytest.skip(message)
    if rc < 0:
        name = signal.Signals(-rc).name
        pytest.fail(f"the {target} fuzz child crashed ({name}); its last calls (the last one "
                    f"crashed):\n{_tail(log)}\n--- output ---\n{out[-4000:]}")
    if rc != 0:
        pytest.fail(f"the {target} fuzz found a failure (exit {rc}); its last calls:\n"
                    f"{_tail(log)}\n--- output (hypothesis prints the falsifying example) ---\n"
                    f"{out[-12000:]}")
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz(logs, target):
    summary = _finish(target, logs[target])
    assert summary["failed"] == [], summary
    calls = summary["calls"]
    if target == "api":
        expected = API
    else:
        expected = {f"{target}(net, params)": True, **{e: True for e in WITH_ARGUMENTS},
                    **{e: False for e in WITHOUT}}
    for entry, refusable in expected.items():
        assert calls.get(f"{entry}: accepted", 0) > 0, (entry, calls)
        if refusable:
            assert calls.get(f"{entry}: refused", 0) > 0, (entry, calls)
