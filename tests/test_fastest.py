"""bpbench.fastest: an available class, chosen by a measured race, memoised and cached on disk.

Races use small nets and the pure-Python and NumPy implementations only (no JIT compile, so
the tests stay fast); the choice logic is checked against a race whose outcome is fixed.
"""

import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import bpbench
from bpbench.interface import Implementation

fastest_mod = importlib.import_module("bpbench.bench.selection")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets its own empty disk cache and an empty in-process memo."""
    monkeypatch.setenv("BPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    fastest_mod._memo.clear()
    yield tmp_path / "cache"
    fastest_mod._memo.clear()


NET = bpbench.Network((16, 32, 4), dtype="float32")
PAIR = ["naive", "numpy"]


def test_returns_an_available_implementation_class_then_answers_instantly(cache_dir):
    cls = bpbench.fastest(NET, 8, candidates=PAIR)
    assert isinstance(cls, type) and issubclass(cls, Implementation)
    assert cls.name in PAIR and cls.name in bpbench.available()
    assert (cache_dir / "fastest.json").exists()
    t0 = time.perf_counter()
    again = bpbench.fastest(NET, 8, candidates=PAIR)
    assert time.perf_counter() - t0 < 0.05
    assert again is cls


def test_the_winner_is_the_fastest_median_of_the_race(monkeypatch):
    # a race with a fixed outcome: the slower of the two implementations is made the winner
    monkeypatch.setattr(fastest_mod, "race", lambda net, b, names: {"numpy": 2.0, "naive": 1.0})
    assert bpbench.fastest(NET, 4, candidates=PAIR).name == "naive"
    monkeypatch.setattr(fastest_mod, "race", lambda net, b, names: {"numpy": 1.0, "naive": 2.0})
    assert bpbench.fastest(NET, 5, candidates=PAIR).name == "numpy"


def test_real_race_prefers_numpy_over_pure_python_at_a_large_batch():
    # at batch 256 pure Python is ~100x slower than NumPy: a race that got this wrong is broken
    assert bpbench.fastest(NET, 256, candidates=PAIR).name == "numpy"


def test_a_new_process_answers_from_the_disk_cache(cache_dir):
    first = bpbench.fastest(NET, 8, candidates=PAIR).name
    # in a new process the race is replaced by an error: an answer must come from the file
    code = ("import importlib, bpbench\n"
            "f = importlib.import_module('bpbench.bench.selection')\n"
            "def boom(*a):\n    raise AssertionError('raced again')\n"
            "f.race = boom\n"
            "net = bpbench.Network((16, 32, 4), dtype='float32')\n"
            "print(f.fastest(net, 8, candidates=['naive', 'numpy']).name)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == first


def test_entries_from_other_versions_are_ignored_and_dropped(cache_dir, monkeypatch):
    calls = []

    def fake_race(net, b, names):
        calls.append(b)
        return {"numpy": 1.0, "naive": 2.0}

    monkeypatch.setattr(fastest_mod, "race", fake_race)
    bpbench.fastest(NET, 8, candidates=PAIR)
    path = cache_dir / "fastest.json"
    data = json.loads(path.read_text())
    # rewrite the entry as if an older numpy had written it, with a winner the race never picks
    (key, entry), = data.items()
    old = json.loads(key)
    old["numpy"] = "0.0.1"
    path.write_text(json.dumps({json.dumps(old, sort_keys=True): {"winner": "naive"}}))
    fastest_mod._memo.clear()
    assert bpbench.fastest(NET, 8, candidates=PAIR).name == "numpy"
    assert calls == [8, 8]  # raced again: the stale entry was not used
    assert all(json.loads(k)["numpy"] != "0.0.1" for k in json.loads(path.read_text()))


def test_clear_cache_forgets_memo_and_file(cache_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(fastest_mod, "race",
                        lambda net, b, names: calls.append(b) or {"numpy": 1.0, "naive": 2.0})
    bpbench.fastest(NET, 8, candidates=PAIR)
    path = fastest_mod.clear_cache()
    assert path == str(cache_dir / "fastest.json") and not os.path.exists(path)
    bpbench.fastest(NET, 8, candidates=PAIR)
    assert calls == [8, 8]


def test_cli_clear(cache_dir):
    (cache_dir).mkdir(parents=True)
    (cache_dir / "fastest.json").write_text("{}")
    import argparse
    parser = argparse.ArgumentParser()
    fastest_mod.add_arguments(parser)
    assert fastest_mod.run(parser.parse_args(["--clear"])) == 0
    assert not (cache_dir / "fastest.json").exists()


def test_single_candidate_needs_no_race(monkeypatch):
    monkeypatch.setattr(fastest_mod, "race", lambda *a: pytest.fail("raced one candidate"))
    assert bpbench.fastest(NET, 8, candidates=["numpy"]).name == "numpy"


@pytest.mark.parametrize("args, word", [
    (("not a net", 8), "net"),
    ((NET, 0), "batch_size"),
    ((NET, True), "batch_size"),
    ((NET, 2.5), "batch_size"),
    ((NET, 8, ["numpy", "no_such"]), "candidates"),
    ((NET, 8, "numpy"), "candidates"),
    ((NET, 8, []), "candidates"),
    ((NET, 8, [["numpy"]]), "candidates"),   # unhashable (the fuzz suite found a TypeError)
    ((NET, 8, 5), "candidates"),             # not iterable
])
def test_bad_arguments_are_value_errors_naming_the_argument(args, word):
    with pytest.raises(ValueError, match=word):
        bpbench.fastest(*args)


def test_a_remembered_answer_does_not_skip_the_checks():
    # 2.0 == 2 as a dict key: a float batch size must not hit the memo of batch size 2
    assert bpbench.fastest(NET, 2, candidates=["numpy"]).name == "numpy"
    for batch_size in (2.0, np.float64(2)):
        with pytest.raises(ValueError, match="batch_size"):
            bpbench.fastest(NET, batch_size, candidates=["numpy"])
