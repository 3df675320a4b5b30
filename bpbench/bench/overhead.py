"""``bpbench overhead``: what a call of ``step`` costs beyond the implementation's own step.

    bpbench overhead                                  # numpy, numba, numba_parallel; depths 1, 8
    bpbench overhead --impls numba --depths 1,4,8 --rounds 15 --threads 1

Per implementation and depth (net :func:`bpbench.bench.points.grid_net`: relu, softmax
cross-entropy, sizes (width,) * (depth + 1) + (10,); batch ``--batch``, default 1) one model is
built from ``net.init(0)`` on the seeded batch of :func:`bpbench.bench.points.grid_batch`, and
these calls are timed side by side:

- ``step``: ``model.step(X, y, lr)``, what a user calls: validates X, y and lr
  (:mod:`bpbench.checks`), puts the batch in the implementation's layout, runs the hook;
- ``step_prepared``: ``model.step_prepared(batch, lr)`` on a batch from ``prepare``: checks the
  batch's owner and lr, runs the hook;
- ``hook``: ``model._step(batch.data, lr)``, the implementation's step alone (for ``numba`` at
  batch 1 that is one direct call of the compiled kernel: ``NumbaBase._step``);
- ``checks``: ``check_batch(net, X, y)`` and ``check_lr(lr)`` without any model: the validation
  part of ``step``'s overhead.

Timing: ``--rounds`` rounds; in each, every call is timed once by the engine
(:func:`bpbench.bench.engine.time_call`, :data:`SETTINGS`: the median of many samples), in an
order rotated from round to round, so drift on a shared machine hits every call alike. A
call's figure is the median over rounds; the overhead of ``step`` is computed round by round,
from the paired times of the same round: ``overhead = step - hook`` and its share of the step
``(step - hook) / step``, each the median over rounds, the share with its lowest and highest
round. The learning rate is tiny (:data:`LR`), so thousands of steps leave the model sane.

Issue 11's goal (:data:`GOAL`): the per-call overhead of ``step`` at batch 1 is under 10% of the
step; the verdict column judges the median share. A CSV with the provenance goes to
``results/local/overhead.csv``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..checks import check_batch, check_lr
from . import engine, points
from . import threads as pools
from .argtypes import name_list, non_negative_int_list, positive_int

GOAL = "issue 11: per-call overhead of step (validation, dispatch) at batch 1 < 10% of the step"
#: the goal's bound on (step - hook) / step
MAX_SHARE = 0.10
IMPLS = ("numpy", "numba", "numba_parallel")
DEPTHS = (1, 8)
WIDTH = 256
DTYPE = "float32"
BATCH = 1
ROUNDS = 7
#: learning rate of every timed call: tiny, so thousands of steps neither diverge nor drive
#: activations into denormals (which would change the speed being measured)
LR = 1e-6
#: untimed steps before the rounds (the first compiles a JIT implementation or loads its cache)
WARMUP_STEPS = 20
#: one call's timing in one round: ~0.1-0.5 s of samples (a call lasts microseconds)
SETTINGS = engine.make_settings("compare", warmup=10, min_time=0.1, max_time=0.5)
#: the timed calls, in display order
VARIANTS = ("step", "step_prepared", "hook", "checks")
DEFAULT_OUT = os.path.join("results", "local", "overhead.csv")


def variants(model, X, y, lr=LR):
    """{name: a function making one call}: every :data:`VARIANTS` entry on the same batch."""
    batch = model.prepare(X, y)
    data = batch.data
    net = model.net
    return {
        "step": lambda: model.step(X, y, lr),
        "step_prepared": lambda: model.step_prepared(batch, lr),
        # the private hook on purpose: the bare step the public methods wrap
        "hook": lambda: model._step(data, lr),
        "checks": lambda: (check_batch(net, X, y), check_lr(lr)),
    }


def time_rounds(calls, rounds, settings=SETTINGS):
    """{name: [seconds per call, one per round]}: every call timed once per round by the engine.

    The order rotates by one from round to round, so each call is timed early and late alike.
    """
    names = list(calls)
    out = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(engine.time_call(calls[name], settings=settings).median)
    return out


def summarise(seconds):
    """The row's figures from per-round seconds ``{variant: [s, ...]}`` (rounds paired by index).

    ``<variant>_s``: median over rounds; ``overhead_s``: median of the per-round ``step -
    hook``; ``prepared_overhead_s``: the same for ``step_prepared``; ``share``,
    ``share_low``, ``share_high``: median, lowest and highest of the per-round
    ``(step - hook) / step``; ``verdict``: 'ok' or 'MISS ...' against :data:`MAX_SHARE`.
    """
    s = {name: np.asarray(v, dtype=np.float64) for name, v in seconds.items()}
    row = {f"{name}_s": float(np.median(v)) for name, v in s.items()}
    over = s["step"] - s["hook"]
    share = over / s["step"]
    row["overhead_s"] = float(np.median(over))
    row["prepared_overhead_s"] = float(np.median(s["step_prepared"] - s["hook"]))
    row["share"] = float(np.median(share))
    row["share_low"], row["share_high"] = float(share.min()), float(share.max())
    row["verdict"] = verdict(row["share"])
    return row


def verdict(share):
    """'ok' when the overhead's share of the step is under :data:`MAX_SHARE`, else 'MISS ...'."""
    if not math.isfinite(share):
        return "-"
    return "ok" if share < MAX_SHARE else f"MISS {share:.0%}>={MAX_SHARE:.0%}"


def measure_row(name, depth, *, width=WIDTH, dtype=DTYPE, batch=BATCH, rounds=ROUNDS,
                settings=SETTINGS, threads=None):
    """One implementation at one depth: the :func:`summarise` row plus what was measured."""
    net = points.grid_net(depth, width, dtype)
    X, y = points.grid_batch(net, batch)
    model = points.make_model(name, net, net.init(0), threads=threads)
    calls = variants(model, X, y)
    for fn in calls.values():  # compile (or load the cache), size the buffers
        for _ in range(WARMUP_STEPS):
            fn()
    row = {"impl": name, "dtype": dtype, "width": width, "depth": depth, "batch": batch,
           "rounds": rounds}
    row.update(summarise(time_rounds(calls, rounds, settings)))
    if batch != 1:  # the goal is stated at batch 1 only
        row["verdict"] = "-"
    return row


def run_overhead(impls=IMPLS, depths=DEPTHS, *, width=WIDTH, dtype=DTYPE, batch=BATCH,
                 rounds=ROUNDS, settings=None, threads=None, progress=True, command=None):
    """A DataFrame with one :func:`measure_row` per (impl, depth), the skipped, the record.

    Returns ``(frame, skipped, record)``: ``skipped`` is ``{impl: why not}`` for the
    implementations not available here; ``record`` the provenance (:func:`engine.provenance`).
    """
    import pandas as pd

    settings = SETTINGS if settings is None else settings
    n = pools.apply(threads)
    record = engine.provenance(command)
    skipped = {}
    rows = []
    for name in impls:
        reason = points.unavailable(name, threads=n)
        if reason is not None:
            skipped[name] = reason
            continue
        for depth in depths:
            row = measure_row(name, depth, width=width, dtype=dtype, batch=batch, rounds=rounds,
                              settings=settings, threads=n)
            row.update({k: record[k] for k in ("machine", "commit", "threads", "command",
                                               "load")})
            rows.append(row)
            if progress:
                print(format_row(row), flush=True)
    return pd.DataFrame(rows), skipped, record


def header_line():
    """The table's header: microseconds per call, the overhead and its share of the step."""
    return (f"{'impl':>15} {'depth':>5} {'step_us':>9} {'prepared_us':>11} {'hook_us':>9} "
            f"{'checks_us':>9} {'overhead_us':>11} {'share (low-high)':>18}  verdict")


def format_row(row):
    """One line of the table (times in microseconds)."""
    us = {k: row[f"{k}_s"] * 1e6 for k in VARIANTS}
    share = f"{row['share']:.1%} ({row['share_low']:.0%}-{row['share_high']:.0%})"
    return (f"{row['impl']:>15} {row['depth']:>5} {us['step']:>9.2f} {us['step_prepared']:>11.2f} "
            f"{us['hook']:>9.2f} {us['checks']:>9.2f} {row['overhead_s'] * 1e6:>11.2f} "
            f"{share:>18}  {row['verdict']}")


# ---------------------------------------------------------------------------- command line
def add_arguments(parser):
    """Options of ``bpbench overhead``."""
    parser.add_argument("--impls", type=name_list, default=list(IMPLS),
                        help="implementations (default: %(default)s, those available)")
    parser.add_argument("--depths", type=non_negative_int_list, default=list(DEPTHS),
                        help="hidden-layer counts (default: %(default)s)")
    parser.add_argument("--width", type=positive_int, default=WIDTH,
                        help="input and hidden width (default: %(default)s)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=DTYPE,
                        help="(default: %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=BATCH,
                        help="batch rows (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=ROUNDS,
                        help="interleaved timing rounds (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"threads for every pool (default: ${pools.ENV}, else every core)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="CSV written here (default: %(default)s)")


def run(args):
    """``bpbench overhead``: print the table and the verdicts; write the CSV. Exit 0."""
    from .. import registry

    unknown = [n for n in args.impls if n not in registry.names()]
    if unknown:
        raise ValueError(f"impls: unknown implementation {unknown[0]!r}; known: "
                         f"{', '.join(registry.names())}")
    print(GOAL)
    print(f"per call at batch {args.batch}, width {args.width}, {args.dtype}, lr {LR:g}; "
          f"{args.rounds} rounds; share = (step - hook) / step, median over rounds "
          "(lowest-highest round)")
    print(header_line(), flush=True)
    frame, skipped, record = run_overhead(args.impls, args.depths, width=args.width,
                                          dtype=args.dtype, batch=args.batch,
                                          rounds=args.rounds, threads=args.threads)
    record = {**record, "versions": engine.versions_text(record)}
    for name, reason in skipped.items():
        print(f"({name} not measured: {reason})")
    if frame.empty:
        raise ValueError(f"impls: none of {', '.join(args.impls)} is available here")
    ok = int((frame["verdict"] == "ok").sum())
    print(f"issue 11 (overhead < 10% of the step): {ok} of {len(frame)} rows; "
          f"{engine.header(record)}")
    engine.finish_table(frame, record, args.out)
    return 0
