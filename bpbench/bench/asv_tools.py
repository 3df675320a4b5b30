"""asv under this machine's name, and the noise of this machine measured with asv itself.

``bpbench asv ARGS...`` runs ``python -m asv ARGS...`` after registering this machine
(:func:`bpbench.bench.machine.register`: the name is derived from the hardware) and adds
``--machine <name>`` to the asv commands that take one, so results land under the right name
without anyone typing it. ``bpbench asv continuous`` confirms asv's flags with a second pass over
the flagged points (:mod:`bpbench.bench.continuous`; ``bpbench asv --no-confirm continuous``
runs asv alone). The benchmark processes get ``PYTHONHASHSEED=0`` and
``BPBENCH_THREADS=1`` from ``asv.conf.json`` (``matrix.env_nobuild``, which takes precedence
over the caller's environment: the same in every round and commit; the reason for one thread is
in that file). The asv process itself gets the run's thread count (``BPBENCH_THREADS``,
default every core) for anything it runs outside the matrix.

``bpbench noise`` benchmarks one commit twice (two ``asv run``s into a temporary folder, the same
commit, this checkout's environment) and prints, per point, the two medians, their ratio and the
99% confidence intervals asv computed, and from those the noise ``n`` of the point (the larger
of the A/A difference ``|m2/m1 - 1|`` and the two intervals' half-widths added), then

- ``min_factor = 1 + n``: the smallest ``--factor`` at which this A/A pair raises no alarm;
- ``detectable = (1 + n) / (1 - n)``: the smallest slowdown that is still seen above
  ``min_factor`` when the noise works against it (a true slowdown s is measured as
  ``s * (1 +- n)``), i.e. the smallest slowdown this machine can detect at that point;

and for the suite, the largest of those over the points: the factor to use and the change an
alarm is worth. Two runs give one estimate; run it again to see how stable it is.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

from . import continuous, engine, machine
from . import threads as pools

#: the repository root (asv.conf.json, benchmarks/)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: asv commands that take --machine
MACHINE_COMMANDS = {"run", "continuous", "compare", "dev", "profile", "show", "find"}
#: what the noise measurement runs by default: the step grid
NOISE_BENCH = r"^bench_step\.TimeStep\.time_step$"


def asv_env(threads=None):
    """The environment of an asv process: the run's thread count made explicit."""
    return dict(os.environ, **{pools.ENV: str(pools.resolve(threads))})


def asv_argv(args, name):
    """``args`` with ``--machine name`` added where asv takes one and none was given."""
    args = list(args)
    if not args:
        return args
    command = args[0]
    given = any(a == "--machine" or a.startswith("--machine=") or a == "-m" for a in args[1:])
    if command in MACHINE_COMMANDS and not given:
        args[1:1] = ["--machine", name]
    return args


def run_asv(args):
    """``bpbench asv ...``: register the machine, run asv with its name; asv's exit code."""
    asv_args = list(args.asv_args)
    if asv_args and asv_args[0] == "--":
        asv_args = asv_args[1:]
    if not asv_args:
        raise ValueError("asv_args: give an asv command, e.g. `bpbench asv run --python=same`")
    name = machine.register()
    argv = [sys.executable, "-m", "asv", *asv_argv(asv_args, name)]
    confirm = argv[3] == "continuous" and not getattr(args, "no_confirm", False)
    print(f"bpbench asv: machine {name}, {pools.resolve()} threads"
          f"{', flags confirmed by a second pass' if confirm else ''}: {' '.join(argv[2:])}",
          flush=True)
    if not confirm:
        return subprocess.run(argv, cwd=ROOT, env=asv_env(), check=False).returncode
    outcome = continuous.run(argv[:3], argv[3:], env=asv_env(), cwd=ROOT)
    for line in continuous.summary(outcome):
        print(line)
    return outcome.returncode


def load_conf(path=None):
    """asv.conf.json without its ``//`` comment lines (asv's own format)."""
    with open(path or os.path.join(ROOT, "asv.conf.json")) as f:
        lines = [line for line in f if not line.lstrip().startswith("//")]
    return json.loads("".join(lines))


# ---------------------------------------------------------------------------- noise
def _result_points(results_dir, name):
    """{(benchmark, params...): (median, ci_low, ci_high)} of the one result file of a run."""
    import itertools

    files = [f for f in os.listdir(os.path.join(results_dir, name))
             if f.endswith(".json") and f != "machine.json"]
    if len(files) != 1:
        raise RuntimeError(f"expected one asv result file in {results_dir}/{name}, "
                           f"found {files}")
    with open(os.path.join(results_dir, name, files[0])) as f:
        data = json.load(f)
    cols = data["result_columns"]
    out = {}
    for bench, values in data["results"].items():
        entry = dict(zip(cols[:len(values)], values, strict=True))
        combos = list(itertools.product(*(entry.get("params") or [[]])))
        n = len(entry["result"] or [])
        ci_a = entry.get("stats_ci_99_a") or [None] * n
        ci_b = entry.get("stats_ci_99_b") or [None] * n
        for i, combo in enumerate(combos):
            value = entry["result"][i] if entry["result"] else None
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            out[(bench, *combo)] = (value, ci_a[i] if ci_a[i] is not None else math.nan,
                                    ci_b[i] if ci_b[i] is not None else math.nan)
    return out


def noise_table(first, second):
    """Per point of two runs of one commit: a DataFrame with the noise figures (see module)."""
    import pandas as pd

    rows = []
    for key in sorted(set(first) & set(second), key=str):
        (m1, a1, b1), (m2, a2, b2) = first[key], second[key]
        half = (b1 - a1) / 2 / m1 + (b2 - a2) / 2 / m2
        n = max(abs(m2 / m1 - 1), half if math.isfinite(half) else 0.0)
        rows.append({"benchmark": key[0], "params": ", ".join(str(p) for p in key[1:]),
                     "median_1": m1, "median_2": m2, "ratio": m2 / m1, "ci_half": half,
                     "noise": n, "min_factor": 1 + n,
                     "detectable": (1 + n) / (1 - n) if n < 1 else math.inf})
    return pd.DataFrame(rows)


def add_noise_arguments(parser):
    """Options of ``bpbench noise``."""
    parser.add_argument("--commit", default="HEAD",
                        help="the commit the results are recorded under (default: HEAD; the "
                             "code run is this checkout's installed bpbench)")
    parser.add_argument("--bench", "-b", default=NOISE_BENCH,
                        help="asv benchmark regex (default: the step grid, %(default)s)")
    parser.add_argument("--factor", type=float, default=1.1,
                        help="the asv --factor to judge (default: %(default)s)")
    parser.add_argument("--out", default=os.path.join("results", "local", "noise.csv"),
                        help="CSV written here (default: %(default)s)")
    parser.add_argument("--asv-arg", action="append", default=[],
                        help="extra argument for both asv runs, e.g. --asv-arg=-a "
                             "--asv-arg=rounds=2 (repeatable)")


def run_noise(args):
    """``bpbench noise``: two asv runs of one commit; print and write the noise per point."""
    import pandas as pd

    clock = engine.stopwatch()
    name = machine.register()
    commit = subprocess.run(["git", "rev-parse", args.commit], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    conf = load_conf()
    tmp = tempfile.mkdtemp(prefix="bpbench-noise-")
    runs = []
    try:
        for i in (1, 2):
            results = os.path.join(tmp, f"run{i}")
            conf_i = dict(conf, repo=ROOT, benchmark_dir=os.path.join(ROOT, "benchmarks"),
                          results_dir=results, html_dir=os.path.join(tmp, "html"),
                          env_dir=os.path.join(ROOT, ".asv", "env"))
            path = os.path.join(tmp, f"asv{i}.conf.json")
            with open(path, "w") as f:
                json.dump(conf_i, f)
            argv = [sys.executable, "-m", "asv", "--config", path, "run", "--python=same",
                    "--machine", name, f"--set-commit-hash={commit}", "--record-samples",
                    "-b", args.bench, *args.asv_arg]
            print(f"run {i}/2: {' '.join(argv[2:])}", flush=True)
            out = subprocess.run(argv, cwd=tmp, env=dict(asv_env(), ASV_PYTHONPATH=ROOT),
                                 check=False)
            if out.returncode != 0:
                raise RuntimeError(f"asv run {i} failed (exit {out.returncode})")
            runs.append(_result_points(results, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = noise_table(*runs)
    if table.empty:
        raise RuntimeError("the two runs have no point in common (every point skipped?)")
    with pd.option_context("display.width", 160, "display.max_rows", 500,
                           "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    worst = table.loc[table["noise"].idxmax()]
    quiet = (table["min_factor"] < args.factor).sum()
    print(f"\nmachine {name}, commit {commit[:12]}, {pools.resolve()} threads, "
          f"{clock() / 60:.1f} min, load average over the last 15 min "
          f"{os.getloadavg()[2]:.1f} on {os.cpu_count()} cores (above the core count: other "
          "processes were part of the noise)")
    print(f"noise per point: median {table['noise'].median():.1%}, worst {worst['noise']:.1%} "
          f"({worst['benchmark']} [{worst['params']}])")
    print(f"smallest slowdown detectable at every point: {table['detectable'].max():.2f}x "
          f"(median point: {table['detectable'].median():.2f}x); "
          f"--factor {args.factor}: {quiet} of {len(table)} points are quiet enough "
          f"(min_factor below it)")
    record = engine.provenance()
    for key in ("machine", "commit", "threads", "command"):
        table[key] = record[key] if key != "commit" else commit
    print(f"wrote {engine.write_csv(table, args.out)}")
    return 0
