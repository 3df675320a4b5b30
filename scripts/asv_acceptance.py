"""Does ``asv continuous`` cry wolf here? A/A runs and a planted slowdown, timed and judged.

    python scripts/asv_acceptance.py aa --runs 3          # three A/A compares: must flag nothing
    python scripts/asv_acceptance.py planted --runs 3     # numba 30% slower at batch <= 32:
                                                          # must flag numba there, nothing else
    python scripts/asv_acceptance.py aa --runs 1 --bench 'TimeStep.time_step' --asv-arg=-a \\
        --asv-arg=rounds=2                                # a quicker, rougher try
    python scripts/asv_acceptance.py slow [FOLDER ...]    # how often a whole benchmark process
                                                          # ran slow in the kept A/A runs

Each run makes a throwaway clone of this checkout's HEAD in a temporary folder with one more
commit on top (``aa``: a comment added to ``bpbench/bench/points.py``; ``planted``:
``impls/numba_serial.py``'s step made 30% slower at batches of at most 32 rows, by spinning for
0.3 times the step's own duration), then runs, exactly as the README documents for comparing
two commits,

    bpbench asv continuous --interleave-rounds --factor 1.1 -b '<bench>' A B

against that clone (the benchmark environment is this checkout's ``.asv/env``, built once and
reused; results go to the temporary folder). Like that command it confirms asv's flags with a
second pass over the flagged points (:mod:`bpbench.bench.continuous`): a flag stands only if
fresh processes raise it again. It reports what each pass flagged ("+": slower, "-": faster),
judges the flags that stand against what the acceptance expects, and says how long the compare
took (both passes). Exit status 0 when every run met the expectation.

Nothing in this checkout is changed: the logs and asv's result files of each run (every sample
of both commits) go to ``results/local/``, which git ignores (the first pass's in
``...-first/`` when a second pass ran, since the second overwrites the samples of its points).
Each flagged point is printed with the median of each of its benchmark processes, in the order
they ran (one far from the others is one unlucky process, not the code). Each run prints the
load average around it: a load above the core count means other processes shared the
cores, and the run says little about the suite.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bpbench.bench import asv_tools, continuous, machine  # noqa: E402

DEFAULT_BENCH = "TimeStep.time_step"
SLOWDOWN = 0.3
MAX_ROWS = 32

PLANT = f'''

    def _step(self, data, lr):  # PLANTED SLOWDOWN (scripts/asv_acceptance.py): not for merging
        import time

        t0 = time.perf_counter()
        loss = super()._step(data, lr)
        if len(data[0]) <= {MAX_ROWS}:
            end = time.perf_counter() + {SLOWDOWN} * (time.perf_counter() - t0)
            while time.perf_counter() < end:
                pass
        return loss
'''


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def make_clone(kind, where):
    """A clone of HEAD plus one commit (the A/A comment or the planted slowdown); (A, B)."""
    git(ROOT, "clone", "--quiet", "--no-hardlinks", ROOT, where)
    git(where, "config", "user.email", "acceptance@bpbench.invalid")
    git(where, "config", "user.name", "bpbench acceptance")
    base = git(where, "rev-parse", "HEAD")
    if kind == "aa":
        path = os.path.join(where, "bpbench", "bench", "points.py")
        with open(path, "a") as f:
            f.write("\n# A/A: this comment is the only difference between the two commits\n")
    else:
        path = os.path.join(where, "impls", "numba_serial.py")
        with open(path, "a") as f:
            f.write(PLANT)
    git(where, "commit", "--quiet", "-am", f"acceptance: {kind}")
    return base, git(where, "rev-parse", "HEAD")


def judge(kind, rows):
    """(ok, why) for the flagged rows of one run."""
    if kind == "aa":
        return (not rows, "nothing flagged" if not rows else f"{len(rows)} false alarm(s)")
    slower_numba = [r for r in rows if r[0] == "+" and "('numba'," in r[2]]
    others = [r for r in rows if r not in slower_numba]
    batches = {int(re.search(r", (\d+)\)$", r[2]).group(1)) for r in slower_numba
               if re.search(r", (\d+)\)$", r[2])}
    ok = bool(slower_numba) and not others and all(b <= MAX_ROWS for b in batches)
    why = (f"numba flagged slower at {len(slower_numba)} point(s) (batches {sorted(batches)}), "
           f"{len(others)} other flag(s)")
    return ok, why


def keep_results(tmp, name):
    """Copy asv's result files of one run (every sample of both commits, in the order asv took
    them) to ``results/local/<name>/``, where a flagged point can be looked at afterwards; the
    folder's path."""
    dest = os.path.join(ROOT, "results", "local", name)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(os.path.join(tmp, "results"), dest, ignore=shutil.ignore_patterns("*.log"),
                    dirs_exist_ok=True)
    return dest


#: samples one benchmark process takes when time does not cap it (``StepTiming.repeat``'s most)
PER_PROCESS = 25


def kept_samples(kept, bench):
    """``(commit, params, samples)`` for every point of ``bench`` (``module.Class.method``) in
    the result files kept in folder ``kept``; ``params`` as asv prints them (``("'numba'", "4",
    "1")``), ``samples`` in the order asv took them (round after round)."""
    for path in sorted(glob.glob(os.path.join(kept, "*", "*.json"))):
        with open(path) as f:
            data = json.load(f)
        if bench not in data.get("results", {}):
            continue
        # asv leaves trailing columns out of a row when they are empty: not strict
        result = dict(zip(data["result_columns"], data["results"][bench], strict=False))
        if not result.get("samples"):  # asv run without --record-samples
            continue
        for params, samples in zip(itertools.product(*result["params"]), result["samples"],
                                   strict=True):
            if samples:
                yield data.get("commit_hash", ""), params, samples


def per_process(samples):
    """The median of each benchmark process's samples, or None where the processes cannot be
    told apart: asv appends each round's samples to the previous rounds', and only a point
    whose every process took the full :data:`PER_PROCESS` samples (not capped by time) cuts
    back into processes exactly."""
    if len(samples) % PER_PROCESS or len(samples) <= PER_PROCESS:
        return None
    return [statistics.median(samples[i:i + PER_PROCESS])
            for i in range(0, len(samples), PER_PROCESS)]


def flagged_medians(kept, bench, commits, slices=4):
    """[(commit, what, [medians])] of one flagged point (``bench`` as asv prints it,
    ``module.Class.method(params)``), in the order of ``commits``: the median of each
    benchmark process where they can be told apart (:func:`per_process`), else of ``slices``
    consecutive slices of the samples (roughly the rounds). A process far from the others is
    one unlucky process, not the code."""
    name, _, params = bench.partition("(")
    wanted = tuple(p.strip() for p in params.rstrip(")").split(","))
    prefixes = [c[:8] for c in commits]
    found = []
    for commit, point, samples in kept_samples(kept, name):
        if point != wanted or commit[:8] not in prefixes:
            continue
        medians = per_process(samples)
        if medians is not None:
            found.append((commit, "per benchmark process", medians))
        else:
            size = max(1, -(-len(samples) // slices))
            found.append((commit, f"{slices} slices of the samples in time order",
                          [statistics.median(samples[i:i + size])
                           for i in range(0, len(samples), size)]))
    return sorted(found, key=lambda item: prefixes.index(item[0][:8]))


def slow_processes(folders, threshold=1.15):
    """How often a whole benchmark process runs slow, from kept A/A runs, and what that rate
    would mean for false alarms if slow processes came independently (they come in bursts, so
    the real rates are higher). Prints; returns the rate."""
    from scipy.stats import binom

    ratios, groups, runs = [], 0, 0
    for folder in folders:
        points = [m for m in (per_process(samples) for _, _, samples in
                              kept_samples(folder, f"bench_step.{DEFAULT_BENCH}")) if m]
        runs += bool(points)
        groups += len(points)
        for medians in points:
            mid = statistics.median(medians)
            ratios += [m / mid for m in medians]
    if not ratios:
        sys.exit("no kept results with whole rounds in " + " ".join(folders))
    slow = sorted(r for r in ratios if r >= threshold)
    rate = len(slow) / len(ratios)
    print(f"{len(slow)} of {len(ratios)} benchmark processes ({rate:.1%}) ran >= "
          f"{threshold:g}x their point's median ({len(folders)} folders, {groups} "
          f"commit-points): {', '.join(f'{r:.2f}' for r in slow)}")
    per_compare = max(1, round(groups / max(1, runs)))
    for rounds in (4, 6, 8, 10):
        half = rounds // 2
        one = binom.sf(half - 1, rounds, rate)  # P(at least half of a commit's processes slow)
        some = 1 - (1 - one) ** per_compare
        print(f"  {rounds} rounds: P(>= {half} of {rounds} slow) = {one:.4f} per commit-point; "
              f"some of {per_compare} commit-points in a compare: {some:.0%}")
    return rate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("aa", "planted", "slow"))
    parser.add_argument("folders", nargs="*",
                        help="slow: folders of kept runs (default: results/local/acceptance-aa-N)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bench", default=DEFAULT_BENCH)
    parser.add_argument("--factor", default="1.1")
    parser.add_argument("--asv-arg", action="append", default=[],
                        help="extra asv continuous argument (repeatable)")
    args = parser.parse_args(argv)
    if args.kind == "slow":
        slow_processes(args.folders or sorted(glob.glob(
            os.path.join(ROOT, "results", "local", "acceptance-aa-*[0-9]"))))
        return 0
    if args.folders:
        parser.error("folders are for 'slow' only")

    name = machine.register()
    conf = asv_tools.load_conf()
    results = []
    for run in range(1, args.runs + 1):
        tmp = tempfile.mkdtemp(prefix=f"bpbench-{args.kind}-")
        try:
            clone = os.path.join(tmp, "repo")
            a, b = make_clone(args.kind, clone)
            conf_run = dict(conf, repo=clone, benchmark_dir=os.path.join(ROOT, "benchmarks"),
                            results_dir=os.path.join(tmp, "results"),
                            html_dir=os.path.join(tmp, "html"),
                            env_dir=os.path.join(ROOT, ".asv", "env"))
            path = os.path.join(tmp, "asv.conf.json")
            with open(path, "w") as f:
                json.dump(conf_run, f)
            argv_asv = [sys.executable, "-m", "asv", "--config", path, "continuous",
                        "--machine", name, "--interleave-rounds", "--factor", args.factor,
                        "-b", args.bench, *args.asv_arg, a, b]
            print(f"run {run}/{args.runs} ({args.kind}): asv continuous {a[:8]} {b[:8]} "
                  f"{' '.join(argv_asv[6:-2])}", flush=True)
            t0 = time.perf_counter()
            load_before = os.getloadavg()[0]
            label = f"acceptance-{args.kind}-{run}"
            outcome = continuous.run(
                argv_asv[:5], argv_asv[5:], env=asv_tools.asv_env(), cwd=tmp, echo=False,
                between=lambda label=label, tmp=tmp: keep_results(tmp, label + "-first"))
            minutes = (time.perf_counter() - t0) / 60
            load = f"load average {load_before:.1f} before, {os.getloadavg()[1]:.1f} over the " \
                   f"last 5 min after ({os.cpu_count()} cores)"
            text = outcome.output
            with open(os.path.join(ROOT, "results", "local", label + ".log"), "w") as f:
                f.write(text + "\n".join(continuous.summary(outcome)) + "\n")
            rows = [(row.mark, row.ratio, row.name) for row in outcome.kept]
            ok, why = judge(args.kind, rows)
            kept = keep_results(tmp, label)
            first = os.path.join(ROOT, "results", "local", label + "-first")
            confirmed = outcome.second is not None  # a second pass ran
            if not confirmed:
                shutil.rmtree(first, ignore_errors=True)  # no second pass: no stale copy
            if "Traceback" in text or outcome.returncode not in (0, 1):
                ok, why = False, f"asv failed (exit {outcome.returncode}); see the log"
            results.append(ok)
            print(f"  {'PASS' if ok else 'FAIL'}: {why}; exit {outcome.returncode}; "
                  f"{minutes:.1f} min; {load}", flush=True)
            for title, found, folder in (
                    ("first pass flagged", outcome.first, first if confirmed else kept),
                    ("second pass confirmed", outcome.kept if confirmed else [], kept)):
                if found:
                    print(f"    {title} {len(found)}:")
                for row in found:
                    print(f"      {row.mark} {row.ratio:>6} {row.name}")
                    for commit, what, medians in flagged_medians(folder, row.name, (a, b)):
                        print(f"          {commit[:8]}: "
                              + ", ".join(f"{m * 1e6:.4g}" for m in medians)
                              + f" us (medians {what})")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{sum(results)} of {len(results)} {args.kind} runs as expected "
          f"(logs: results/local/acceptance-{args.kind}-*.log)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    os.makedirs(os.path.join(ROOT, "results", "local"), exist_ok=True)
    sys.exit(main())
