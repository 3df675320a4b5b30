"""What validation costs per call: ``step`` vs ``step_prepared`` vs the bare hook, at batch 1.

    python scripts/validation_cost.py                      # numpy and numba, (256, 256, 10)
    python scripts/validation_cost.py --impls numba --rounds 30 --calls 500

``step(X, y, lr)`` validates X, y and lr on every call (bpbench.checks) and then runs the
implementation's hook; ``step_prepared(batch, lr)`` checks only that the batch is this model's
and the lr; ``_step(data, lr)`` is the hook alone; "checks only" times the validation of
``step`` without any model (``check_batch`` and ``check_lr``). All run side by side in one
process, one model per implementation on the same batch, in rounds: each round times
``--calls`` calls of every variant, in an order that rotates from round to round (so drift and
cache warmth hit all of them alike). Reported per implementation and variant: the median over
rounds of the time per call and the interquartile range; then the cost over the bare hook,
from the paired differences within each round (median and IQR). The learning rate is tiny,
so thousands of steps leave the model well-conditioned.

An operator tool, not part of the installed package. Prints the commit it ran on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import bpbench
from bpbench.checks import check_batch, check_lr

ROOT = Path(__file__).resolve().parents[1]


def commit():
    """The checked-out commit, with ``+dirty`` when the working tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def variants(model, X, y, lr):
    """name -> a function making one call, all on the same batch."""
    batch = model.prepare(X, y)
    data = batch.data
    return {
        "step": lambda: model.step(X, y, lr),
        "step_prepared": lambda: model.step_prepared(batch, lr),
        "hook": lambda: model._step(data, lr),
    }


def checks_only(net, X, y, lr):
    """What step validates, alone: X and y (bpbench.checks.check_batch) and lr."""
    return lambda: (check_batch(net, X, y), check_lr(lr))


def measure(calls_by_name, rounds, calls):
    """name -> array of per-call seconds, one per round (orders rotate every round)."""
    names = list(calls_by_name)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = calls_by_name[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: np.array(v) for name, v in times.items()}


def quartiles(a):
    q1, q2, q3 = np.percentile(a, [25, 50, 75])
    return q2, q1, q3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impls", default="numpy,numba", help="comma-separated names")
    parser.add_argument("--sizes", default="256,256,10", help="layer widths (default 256,256,10)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--calls", type=int, default=300, help="calls per variant per round")
    args = parser.parse_args(argv)
    sizes = tuple(int(v) for v in args.sizes.split(","))
    net = bpbench.Network(sizes, activation="relu", loss="cross_entropy", dtype=args.dtype)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, sizes[0])).astype(args.dtype)
    y = np.array([3])
    lr = 1e-6

    all_calls = {}
    for name in args.impls.split(","):
        model = bpbench.get(name)(net, net.init(0))
        for variant, fn in variants(model, X, y, lr).items():
            for _ in range(20):  # warm-up: compilation, buffers, caches
                fn()
            all_calls[(name, variant)] = fn
    all_calls[("-", "checks only")] = checks_only(net, X, y, lr)
    # every implementation's variants interleave in one rotation
    results = measure(all_calls, args.rounds, args.calls)

    print(f"validation cost at batch 1: {net}, {args.rounds} rounds x {args.calls} calls, "
          f"commit {commit()}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(f"{'impl':<8} {'variant':<14} {'median us':>10} {'IQR us':>17} "
          f"{'over hook us':>13} {'IQR us':>17}")
    for name in args.impls.split(","):
        hook = results[(name, "hook")]
        for variant in ("step", "step_prepared", "hook"):
            t = results[(name, variant)]
            med, q1, q3 = quartiles(t * 1e6)
            line = f"{name:<8} {variant:<14} {med:>10.2f} {f'[{q1:.2f}, {q3:.2f}]':>17}"
            if variant != "hook":
                dmed, d1, d3 = quartiles((t - hook) * 1e6)  # paired: same round
                line += f" {dmed:>13.2f} {f'[{d1:.2f}, {d3:.2f}]':>17}"
            print(line)
    med, q1, q3 = quartiles(results[("-", "checks only")] * 1e6)
    print(f"{'-':<8} {'checks only':<14} {med:>10.2f} {f'[{q1:.2f}, {q3:.2f}]':>17}   "
          "(check_batch + check_lr: what step validates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
