"""The first-step cost users feel: JIT compilation (or cache load) + one step, in a fresh process.

Within one process a JIT implementation compiles once and every later model reuses the code, so
the first-call cost is only measurable in a new interpreter. :func:`compile_cost` starts one
(``python -m bpbench.bench.compile_cost SPEC``), which imports the implementation, then times
constructing a model and its first ``step`` (:func:`bpbench.bench.engine.time_first_call`).

- cold: Numba's cache directory (``NUMBA_CACHE_DIR``) is an empty temporary directory, so
  everything compiles;
- warm: a first process fills the cache directory, a second one, timed, loads from it.

Importing the implementation's module (Numba itself: a few tenths of a second) happens before
the clock starts and is reported separately by :func:`first_step_report`.

Command line: ``python -m bpbench.bench.compile_cost '{"impl": "numba", "sizes": [256, 256, 10],
"batch_size": 64}'`` prints a JSON report (extra keys: activation, loss, dtype).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: the directory holding the bpbench package (and impls/), put on the child's PYTHONPATH
_ROOT = str(Path(__file__).resolve().parent.parent)


def _spec(impl_name, net, batch_size):
    return {"impl": impl_name, "sizes": list(net.sizes), "activation": list(net.activations),
            "loss": net.loss, "dtype": net.dtype.name, "batch_size": int(batch_size)}


def _run_child(spec, cache_dir):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "bpbench.bench.compile_cost", json.dumps(spec)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"first-step measurement of {spec['impl']!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_step_report(impl_name, net, batch_size, cache_dir=None, warm=False):
    """The child's report: ``{"import_seconds", "first_step_seconds", "step_seconds"}``.

    ``first_step_seconds``: constructing the model through its first step (compile or cache
    load included); ``step_seconds``: a second step of the same model (no compilation), so
    the difference is the compile/load cost. ``cache_dir``: Numba cache directory to use (it
    should be empty for a cold measurement); by default a fresh temporary one.
    """
    spec = _spec(impl_name, net, batch_size)
    with tempfile.TemporaryDirectory(prefix="bpbench-numba-cache-") as tmp:
        directory = cache_dir if cache_dir is not None else tmp
        if warm:
            _run_child(spec, directory)  # fills the cache
        return _run_child(spec, directory)


def compile_cost(impl_name, net, batch_size, cache_dir=None, warm=False):
    """Seconds of the first step of a fresh model in a NEW process (construct + first step).

    cold (``warm=False``): with an empty Numba cache directory, so the JIT compiles; warm: after
    one process has filled the cache. Works for any registered name (for an implementation
    without a JIT it is just construction plus one step).
    """
    return first_step_report(impl_name, net, batch_size, cache_dir, warm)["first_step_seconds"]


def _measure(spec):
    """In the child: import, then time the first step of a fresh model (and a second one)."""
    import numpy as np

    import bpbench
    from bpbench.bench.engine import TIMING_LR, stopwatch, time_first_call

    clock = stopwatch()
    cls = bpbench.get(spec["impl"])
    import_seconds = clock()
    acts = spec.get("activation") or "relu"
    if isinstance(acts, list) and len(acts) == 0:
        acts = "relu"
    net = bpbench.Network(spec["sizes"], activation=acts, loss=spec.get("loss", "cross_entropy"),
                          dtype=spec.get("dtype", "float32"))
    params = net.init(0)
    rng = np.random.default_rng(0)
    B = spec["batch_size"]
    X = rng.standard_normal((B, net.sizes[0])).astype(net.dtype)
    if net.loss == "cross_entropy":
        y = rng.integers(0, net.sizes[-1], B)
    else:
        y = rng.standard_normal((B, net.sizes[-1])).astype(net.dtype)
    models = []
    first = time_first_call(lambda: models.append(cls(net, params)) or models[-1], X, y, TIMING_LR)
    clock = stopwatch()
    models[-1].step(X, y, TIMING_LR)
    models[-1].synchronize()
    step = clock()
    return {"import_seconds": import_seconds, "first_step_seconds": first, "step_seconds": step}


if __name__ == "__main__":
    print(json.dumps(_measure(json.loads(sys.argv[1]))))
