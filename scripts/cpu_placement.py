"""Where should a one-thread benchmark process run? Fresh processes, placed three ways, compared.

    python scripts/cpu_placement.py                 # 30 rounds: 360 processes, ~9 min on 2 cores
    python scripts/cpu_placement.py --rounds 5 --placements none,last

The asv suite runs every point in fresh one-thread processes and pools their samples, so what
raises a false alarm is a process that runs slow as a whole (issue 10). This counts such
processes. Each round starts, for each placement and each of four step points of the asv grid
(the ones false alarms hit: numba and numba_parallel at depth 4, batch 1; numpy at depth 1,
batches 1 and 32), one fresh process with ``BPBENCH_THREADS=1`` and ``PYTHONHASHSEED=0`` (as
``asv.conf.json`` sets them). The process places itself:

- ``none``: wherever the scheduler puts it (what the asv suite does);
- ``first``: pinned to the first CPU it may use (on the 2-core CI VM, CPU 0 takes the memory
  balloon's interrupts);
- ``last``: pinned to the last one.

It then builds the point as the suite does (checked against the reference, warmed up) and times
``Point.step`` through the engine in 25 samples of >= 10 ms (asv's sample size here). The
table gives, per placement, how many processes ran >= 10% and >= 30% slower than the point's
median over every process, and the 90th percentile of those ratios. Rows go to
``results/local/cpu_placement.csv`` (git-ignored), with each process's round, so bursts of
slow processes show up as rounds. Run it on an otherwise idle machine. What it found is in
docs/measurements.md ("Where the false alarms come from").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINTS = (("numba", 4, 1), ("numba_parallel", 4, 1), ("numpy", 1, 1), ("numpy", 1, 32))
PLACEMENTS = ("none", "first", "last")


def child(impl, depth, batch, placement):
    """Place this process, build and time one point; print one JSON line."""
    sys.path.insert(0, ROOT)
    if placement != "none":
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0] if placement == "first" else cpus[-1]})
    from bpbench.bench import engine, points

    point = engine.checked_point(impl, points.grid_net(depth, 256, "float32"), batch)
    timing = engine.time_point(point, engine.make_settings(
        "compare", warmup=200, sample_time=0.01, min_time=0.0, min_repeats=25, max_repeats=25,
        max_time=10.0))
    with open("/proc/self/stat") as f:
        last_cpu = int(f.read().rsplit(")", 1)[1].split()[36])
    print(json.dumps({"median_s": timing.median, "q25_s": timing.q25, "q75_s": timing.q75,
                      "cpu": last_cpu}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--placements", default=",".join(PLACEMENTS))
    args = parser.parse_args(argv)
    placements = args.placements.split(",")
    if args.rounds < 1 or not placements or not set(placements) <= set(PLACEMENTS):
        parser.error(f"--rounds >= 1 and --placements from {','.join(PLACEMENTS)}")
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        parser.error("needs CPU affinity (Linux) and at least two CPUs")

    import pandas as pd

    from bpbench.bench import engine

    env = dict(os.environ, BPBENCH_THREADS="1", PYTHONHASHSEED="0")
    rows = []
    for r in range(args.rounds):
        for placement in placements:
            for impl, depth, batch in POINTS:
                out = subprocess.run([sys.executable, __file__, "--child", impl, str(depth),
                                      str(batch), placement], env=env, capture_output=True,
                                     text=True, check=False)
                if out.returncode != 0:
                    sys.exit(f"{impl} ({depth}, {batch}) {placement} failed:\n{out.stderr}")
                rows.append({"round": r, "placement": placement, "impl": impl, "depth": depth,
                             "batch": batch, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(f"round {r + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})",
              flush=True)

    frame = pd.DataFrame(rows)
    frame["ratio"] = frame["median_s"] / frame.groupby(["impl", "depth", "batch"])[
        "median_s"].transform("median")
    summary = frame.groupby("placement", sort=False)["ratio"].agg(
        processes="size", slow_10=lambda x: int((x >= 1.1).sum()),
        slow_30=lambda x: int((x >= 1.3).sum()), q90=lambda x: x.quantile(0.9), worst="max")
    prov = engine.provenance(command="python scripts/cpu_placement.py " + " ".join(
        argv if argv is not None else sys.argv[1:]))
    for key in ("commit", "machine", "threads", "command"):
        frame[key] = prov[key]
    path = os.path.join(ROOT, "results", "local", "cpu_placement.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frame.to_csv(path, index=False)
    print(f"\nprocesses >= 10% / >= 30% slower than their point's median "
          f"({prov['machine']}, commit {prov['commit'][:10]}):")
    print(summary.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"wrote {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(main())
