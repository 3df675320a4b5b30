"""``bpbench goals``: the performance goals' table: the best Numba step beside every peer.

    bpbench goals                                   # the table and the verdicts (a few minutes)
    bpbench goals --depths 2 --batches 1,16 --threads 1
    bpbench goals --widths 256,1024 --dtypes float32,float64 --batches 1,16,256,1024,4096
    bpbench goals --busy --depths 4 --batches 2048  # the threads each contestant really uses
    bpbench goals --crossover --depths 4            # numba's hand loops vs BLAS, by batch

Grid: relu, softmax cross-entropy, sizes (width,) * (depth + 1) + (10,)
(:func:`bpbench.bench.points.grid_net`); default float32, width 256, depths 1, 2, 4, 8, batches
1, 16, 256, 2048. Per point every contestant is built once by the one engine's point builder
(same seeded net, parameters and batch; loss and gradients checked against the float64
reference, so a peer that computes something else is reported, not timed; warmed up, so JIT and
graph compilation stay outside the clock) and then timed in ``--rounds`` interleaved rounds
(:func:`bpbench.bench.engine.side_by_side`, order rotated every round). bpbench is timed
through the public ``model.step(X, y, lr)`` (validation included: what a user pays); a peer
through ``step_prepared`` on its own tensors, its loss read back as a float. Every contestant
gets the run's thread count (:mod:`bpbench.bench.threads`).

A speed-up cell is the median over rounds of (peer time / the faster of numba and numba_parallel
in the same round), with the lowest and highest round. Verdicts:

- issue 11 (:data:`GOALS_TORCH`): vs PyTorch eager: >= 10x at batch 1, >= 5x at batch 16, never
  slower; at batch >= 256 at most 1.1x the roofline (:func:`bpbench.bench.roofline.bound`);
- issue 12 (:data:`GOALS_PEERS`): vs the fastest peer present: never slower, >= 5x at batch 1.

The BLAS floor (:func:`bpbench.bench.floor.blas_floor`) is printed beside the roofline as the
"same library" reference. A CSV with provenance goes to ``results/local/goals.csv``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import engine, peers, points
from . import threads as pools
from .argtypes import name_list, non_negative_int_list, positive_int, positive_int_list

GOALS_TORCH = ("issue 11: best of numba/numba_parallel through step >= 10x torch at B=1, "
               ">= 5x at B=16, never slower than torch; B >= 256: at most 1.1x the roofline")
GOALS_PEERS = "issue 12: never slower than the fastest peer; >= 5x the fastest peer at B=1"
DEPTHS = (1, 2, 4, 8)
BATCHES = (1, 16, 256, 2048)
WIDTHS = (256,)
DTYPES = ("float32",)
ROUNDS = 3
FLAVOURS = ("numba", "numba_parallel")
TORCH = "torch"
DEFAULT_OUT = os.path.join("results", "local", "goals.csv")


def need_vs_torch(batch):
    """The speed-up over PyTorch eager the goals ask for at ``batch``."""
    return 10.0 if batch == 1 else 5.0 if batch == 16 else 1.0


def need_vs_peers(batch):
    """The speed-up over the fastest peer the goals ask for at ``batch``."""
    return 5.0 if batch == 1 else 1.0


def verdict_torch(batch, x_torch, x_roof):
    """'ok' or 'MISS ...' against :data:`GOALS_TORCH` (NaN: not measured, not judged)."""
    misses = []
    if math.isfinite(x_torch) and x_torch < need_vs_torch(batch):
        misses.append(f"torch x{x_torch:.2f}<{need_vs_torch(batch):g}")
    if math.isfinite(x_roof) and batch >= 256 and x_roof > 1.1:
        misses.append(f"roofline x{x_roof:.2f}>1.1")
    return "ok" if not misses else "MISS " + ", ".join(misses)


def verdict_peers(batch, x_fastest, fastest):
    """'ok', 'MISS ...' against :data:`GOALS_PEERS`, or '-' when no peer ran."""
    if not math.isfinite(x_fastest):
        return "-"
    if x_fastest < need_vs_peers(batch):
        return f"MISS {fastest} x{x_fastest:.2f}<{need_vs_peers(batch):g}"
    return "ok"


def best_per_round(seconds):
    """Per round, the faster of the Numba flavours present: ``seconds`` is {name: [s, ...]}."""
    return np.min([seconds[f] for f in FLAVOURS if f in seconds], axis=0)


def round_ratios(peer_seconds, best):
    """(median, lowest, highest) over rounds of peer time / best bpbench time, round by round."""
    r = np.asarray(peer_seconds, dtype=np.float64) / np.asarray(best, dtype=np.float64)
    return float(np.median(r)), float(r.min()), float(r.max())


def measure_point(net, batch, names, *, rounds=ROUNDS, settings=None, threads=None):
    """Build every contestant of ``names`` at (net, batch) and time them side by side.

    Returns ``(row, skipped)``: the row's timing columns (see :func:`run_goals`) and
    ``{name: why it was not timed}`` (unavailable, or disagreeing with the reference).
    """
    n = pools.apply(threads)
    built, skipped = {}, {}
    for name in names:
        reason = points.skip_reason(name, net, batch, threads=n)
        if reason is None:
            try:  # float32: one row in float32 plus the float64 twin (points.build)
                built[name] = points.build(name, net, batch, threads=n)
            except points.DisagreementError as exc:
                reason = str(exc)
        if reason is not None:
            skipped[name] = reason
    flavours = [f for f in FLAVOURS if f in built]
    if not flavours:
        return None, skipped
    timed = engine.side_by_side(built, rounds, settings, call="user")
    seconds = {name: [t.median for t in ts] for name, ts in timed.items()}
    best = best_per_round(seconds)
    row = {}
    for name, s in seconds.items():
        row[f"{name}_s"] = float(np.median(s))
    row["best"] = min(flavours, key=lambda f: row[f"{f}_s"])
    row["best_s"] = row[f"{row['best']}_s"]
    present = [p for p in peers.names() if p in timed]
    for p in present:
        row[f"x_{p}"], row[f"x_{p}_low"], row[f"x_{p}_high"] = round_ratios(seconds[p], best)
        log = getattr(built[p].model, "compile_log", None)
        if log:
            row[f"{p}_compile_s"] = float(sum(log.values()))
    if present:
        fastest = np.min([seconds[p] for p in present], axis=0)
        row["fastest_peer"] = min(present, key=lambda p: row[f"{p}_s"])
        (row["x_fastest_peer"], row["x_fastest_peer_low"],
         row["x_fastest_peer_high"]) = round_ratios(fastest, best)
    else:
        row["fastest_peer"], row["x_fastest_peer"] = "", math.nan
    del built
    return row, skipped


def run_goals(depths=DEPTHS, batches=BATCHES, *, widths=WIDTHS, dtypes=DTYPES, threads=None,
              rounds=ROUNDS, settings=None, progress=True, roofline=True, floor=True,
              command=None):
    """One row per (dtype, width, depth, batch): a pandas DataFrame and the provenance record.

    Columns: dtype, width, depth, batch; ``<name>_s`` (median over rounds of each round's median
    step time) for numba, numba_parallel and every peer present; ``best``/``best_s`` (the faster
    flavour); per peer ``x_<peer>`` with ``_low``/``_high`` (see the module docstring) and
    ``<peer>_compile_s`` (compiled peers: seconds of their first step at the shape);
    ``fastest_peer``, ``x_fastest_peer``; ``floor_s``/``x_floor`` (best / BLAS floor);
    ``roofline_s``/``x_roofline``/``bound``; ``verdict_torch``, ``verdict_peers``; ``skipped``;
    and the provenance (machine, commit, threads, command, load).
    """
    import pandas as pd

    from . import floor as blas
    from . import roofline as roof

    n = pools.apply(threads)
    ceil = roof.ceilings(n) if roofline else None
    record = engine.provenance(command)
    names = list(FLAVOURS) + peers.names()
    rows = []
    for dtype in dtypes:
        for width in widths:
            for depth in depths:
                net = points.grid_net(depth, width, dtype)
                for batch in batches:
                    timing, skipped = measure_point(net, batch, names, rounds=rounds,
                                                    settings=settings, threads=n)
                    row = {"dtype": dtype, "width": width, "depth": depth, "batch": batch}
                    if timing is None:
                        row.update(verdict_torch="not timed", verdict_peers="not timed")
                    else:
                        row.update(timing)
                        fl = blas.blas_floor(net, batch) if floor else math.nan
                        row.update(floor_s=fl, x_floor=row["best_s"] / fl)
                        x_roof = math.nan
                        if ceil is not None:
                            r = roof.bound(net, batch, ceil)
                            x_roof = row["best_s"] / r["roofline_s"]
                            row.update(roofline_s=r["roofline_s"], x_roofline=x_roof,
                                       bound=r["bound"])
                        row["verdict_torch"] = verdict_torch(batch, row.get(f"x_{TORCH}",
                                                                            math.nan), x_roof)
                        row["verdict_peers"] = verdict_peers(batch, row["x_fastest_peer"],
                                                             row["fastest_peer"])
                    row["skipped"] = "; ".join(f"{k}: {v}" for k, v in skipped.items())
                    row.update({k: record[k] for k in ("machine", "commit", "threads", "command",
                                                       "load")})
                    rows.append(row)
                    if progress:
                        print(format_row(row), flush=True)
    return pd.DataFrame(rows), record


def header_line():
    """The table's header (times in microseconds; speed-ups: peer / best bpbench)."""
    cols = " ".join(f"{p:>16}" for p in peers.names())
    return (f"{'dtype':>7} {'width':>5} {'depth':>5} {'batch':>5} {'best_us':>10} {'(who)':>14} "
            f"{cols} {'x_floor':>7} {'x_roof':>6}  issue 11 | issue 12")


def format_row(row):
    """One line of the table: best time, per peer the speed-up (lowest-highest round)."""
    def cell(p):
        x = row.get(f"x_{p}", math.nan)
        if not math.isfinite(x):
            return f"{'-':>16}"
        return f"{x:6.2f} ({row[f'x_{p}_low']:.1f}-{row[f'x_{p}_high']:.1f})".rjust(16)
    best = row.get("best_s", math.nan)
    head = f"{row['dtype']:>7} {row['width']:>5} {row['depth']:>5} {row['batch']:>5}"
    if not math.isfinite(best):
        return f"{head}  not timed: {row.get('skipped', '')}"
    cols = " ".join(cell(p) for p in peers.names())
    return (f"{head} {best * 1e6:>10.1f} {'(' + row['best'] + ')':>14} {cols} "
            f"{row.get('x_floor', math.nan):>7.2f} {row.get('x_roofline', math.nan):>6.2f}  "
            f"{row['verdict_torch']} | {row['verdict_peers']}")


def busy(depth, batch, *, width=256, dtype="float32", seconds=1.0, threads=None):
    """{name: [(CPU seconds, thread name), ...]}: the threads each contestant really used.

    Each contestant's step (as timed by the table) runs for about ``seconds`` under
    :func:`bpbench.bench.busy.busy_threads`; the list's length is its count of working threads.
    """
    from .busy import busy_threads

    n = pools.apply(threads)
    net = points.grid_net(depth, width, dtype)
    out = {}
    for name in list(FLAVOURS) + peers.names():
        if points.skip_reason(name, net, batch, threads=n) is None:
            point = points.build(name, net, batch, threads=n, twin=False)
            out[name] = busy_threads(point.user_step, engine.repeats_for(point.user_step,
                                                                         seconds))
            del point
    return out


def crossover(batches, depth, *, threads=None, settings=None):
    """numba / numba_parallel step time with every product as hand loops vs as BLAS, per batch.

    Sets the implementations' ``blas_min`` attribute (rows from which BLAS is used) on the
    checked point's model, then times it with the engine.
    """
    n = pools.apply(threads)
    cfg = engine.make_settings(settings or "compare")
    net = points.grid_net(depth)
    print(f"depth {depth}: step us, hand loops vs BLAS (blas_min forced); {n} threads")
    print(f"{'batch':>5} {'impl':>15} {'hand_us':>9} {'blas_us':>9} {'hand/blas':>9}")
    for batch in batches:
        for name in FLAVOURS:
            res = {}
            for path, blas_min in (("hand", 1 << 30), ("blas", 1)):
                point = points.build(name, net, batch, threads=n)
                point.model.blas_min = blas_min
                res[path] = engine.time_point(point, cfg).median
            print(f"{batch:>5} {name:>15} {res['hand'] * 1e6:>9.1f} {res['blas'] * 1e6:>9.1f} "
                  f"{res['hand'] / res['blas']:>9.2f}", flush=True)


# ---------------------------------------------------------------------------- command line
def add_arguments(parser):
    """Options of ``bpbench goals``."""
    parser.add_argument("--depths", type=non_negative_int_list, default=list(DEPTHS),
                        help="hidden-layer counts (default: %(default)s)")
    parser.add_argument("--batches", type=positive_int_list, default=list(BATCHES),
                        help="batch sizes (default: %(default)s)")
    parser.add_argument("--widths", type=positive_int_list, default=list(WIDTHS),
                        help="input and hidden widths (default: %(default)s)")
    parser.add_argument("--dtypes", type=name_list, default=list(DTYPES),
                        help="float32 and/or float64 (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=ROUNDS,
                        help="interleaved timing rounds per point (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"threads for every contestant (default: ${pools.ENV}, else every "
                             "core)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="CSV written here (default: %(default)s)")
    parser.add_argument("--no-roofline", action="store_true", help="no roofline columns")
    parser.add_argument("--busy", action="store_true",
                        help="instead: the threads each contestant really uses (per-thread CPU "
                             "time, Linux) at the first depth, width, dtype and last batch")
    parser.add_argument("--crossover", action="store_true",
                        help="instead: hand loops vs BLAS by batch at the first depth")


def run(args):
    """``bpbench goals``: print the table and the verdicts; write the CSV. Exit 0."""
    bad = [d for d in args.dtypes if d not in ("float32", "float64")]
    if bad:
        raise ValueError(f"dtypes must be float32 or float64, got {bad[0]!r}")
    if args.crossover:
        crossover(args.batches, args.depths[0], threads=args.threads)
        return 0
    for name in FLAVOURS:
        reason = points.unavailable(name)
        if reason:
            raise ValueError(f"goals need {name}: {reason}")
    if args.busy:
        depth, batch = args.depths[0], args.batches[-1]
        print(f"busy threads (>= 10% of the busiest one's CPU time) during about 1 s of steps, "
              f"depth {depth}, batch {batch}, {args.dtypes[0]}, width {args.widths[0]}:")
        for name, used in busy(depth, batch, width=args.widths[0], dtype=args.dtypes[0],
                               threads=args.threads).items():
            shown = "unknown (no /proc)" if used is None else ", ".join(
                f"{who} {sec:.2f}s" for sec, who in used)
            print(f"{name:>15}: {'?' if used is None else len(used)}  ({shown})")
        return 0
    missing = {p: points.unavailable(p) for p in peers.names()}
    print(GOALS_TORCH)
    print(GOALS_PEERS)
    print("cells: peer time / best of numba, numba_parallel (median over rounds, lowest-highest)")
    print(header_line(), flush=True)
    frame, record = run_goals(args.depths, args.batches, widths=args.widths, dtypes=args.dtypes,
                              threads=args.threads, rounds=args.rounds,
                              roofline=not args.no_roofline)
    record = {**record, "versions": engine.versions_text(record)}
    for p, reason in missing.items():
        if reason:
            print(f"({p} column empty: {reason})")
    timed = frame[frame["verdict_torch"] != "not timed"]
    print(f"issue 11: {(timed['verdict_torch'] == 'ok').sum()} of {len(timed)} points meet the "
          f"goals; issue 12: {(timed['verdict_peers'] == 'ok').sum()} of {len(timed)}; "
          f"{engine.header(record)}")
    engine.finish_table(frame, record, args.out)
    return 0
