"""``bpbench goals``: the goals table: the best Numba step against PyTorch and the floors.

    bpbench goals                                   # the table and the verdicts (about 2-3 min)
    bpbench goals --depths 2 --batches 1,16 --threads 1
    bpbench goals --crossover --depths 4            # numba's hand loops vs BLAS, by batch

Grid: float32, relu, softmax cross-entropy, sizes (256,) * (depth + 1) + (10,)
(:func:`bpbench.bench.points.grid_net`), depths 1, 2, 4, 8, batches 1, 16, 256, 2048. Every
figure comes from the one engine (:func:`bpbench.bench.engine.measure`): the same checked,
warmed-up point for ``numba``, ``numba_parallel`` and the PyTorch peer, the run's thread count
for all of them, median with a 95% confidence interval. Per point it prints the medians, the
speed-up of the faster Numba flavour over PyTorch (with its range from the confidence intervals:
torch's low end over the best's high end, and the reverse), the BLAS floor
(:func:`bpbench.bench.floor.blas_floor`) and the roofline (:func:`bpbench.bench.roofline.bound`),
and the verdict against :data:`GOALS`. A CSV with provenance goes to ``results/local/goals.csv``.
"""

from __future__ import annotations

import math
import os

from . import engine, points
from . import threads as pools
from .argtypes import non_negative_int_list, positive_int, positive_int_list

GOALS = ("goals: best of numba/numba_parallel >= 10x torch at B=1, >= 5x at B=16, never slower "
         "than torch; B >= 256: at most 1.1x the BLAS floor")
DEPTHS = (1, 2, 4, 8)
BATCHES = (1, 16, 256, 2048)
FLAVOURS = ("numba", "numba_parallel")
PEER = "torch"
DEFAULT_OUT = os.path.join("results", "local", "goals.csv")


def need(batch):
    """The speed-up over PyTorch the goals ask for at ``batch``."""
    return 10.0 if batch == 1 else 5.0 if batch == 16 else 1.0


def verdict(batch, speedup, floor_ratio):
    """'ok' or 'MISS ...' for one point (speed-up over torch, best time / BLAS floor)."""
    misses = []
    if math.isfinite(speedup) and speedup < need(batch):
        misses.append(f"torch x{speedup:.1f}<{need(batch):g}")
    if math.isfinite(floor_ratio) and batch >= 256 and floor_ratio > 1.1:
        misses.append(f"floor x{floor_ratio:.2f}>1.1")
    return "ok" if not misses else "MISS " + ", ".join(misses)


def run_goals(depths=DEPTHS, batches=BATCHES, *, threads=None, settings=None, progress=True,
              roofline=True, command=None):
    """One row per (depth, batch): a pandas DataFrame (columns: see the CSV) and the provenance."""
    import pandas as pd

    from . import floor
    from . import roofline as roof

    n = pools.apply(threads)
    cfg = engine.make_settings(settings or "compare")
    ceil = roof.ceilings(n) if roofline else None
    record = engine.provenance(command)
    peer_missing = points.unavailable(PEER)
    rows = []
    for depth in depths:
        net = points.grid_net(depth)
        for batch in batches:
            t = {}
            for name in (*FLAVOURS, PEER):
                if name == PEER and peer_missing:
                    continue
                t[name] = engine.measure(name, net, batch, settings=cfg, threads=n).timing
            best_name = min(FLAVOURS, key=lambda k: t[k].median)
            best = t[best_name]
            fl = floor.blas_floor(net, batch)
            row = {"depth": depth, "batch": batch, "best": best_name}
            for name, timing in t.items():
                row[f"{name}_s"] = timing.median
                row[f"{name}_ci_low_s"] = timing.ci_low
                row[f"{name}_ci_high_s"] = timing.ci_high
            if PEER in t:
                row["x_torch"] = t[PEER].median / best.median
                row["x_torch_low"] = t[PEER].ci_low / best.ci_high
                row["x_torch_high"] = t[PEER].ci_high / best.ci_low
            else:
                row["x_torch"] = row["x_torch_low"] = row["x_torch_high"] = math.nan
            row["floor_s"] = fl
            row["x_floor"] = best.median / fl
            if ceil is not None:
                r = roof.bound(net, batch, ceil)
                row.update(roofline_s=r["roofline_s"], x_roofline=best.median / r["roofline_s"],
                           bound=r["bound"])
            row["verdict"] = verdict(batch, row["x_torch"], row["x_floor"])
            row.update({k: record[k] for k in ("machine", "commit", "threads", "command",
                                               "load")})
            rows.append(row)
            if progress:
                print(format_row(row), flush=True)
    return pd.DataFrame(rows), record


HEADER = (f"{'depth':>5} {'batch':>5} {'torch_us':>9} {'numba_us':>9} {'par_us':>9} "
          f"{'x_torch':>7} {'(95% range)':>13} {'floor_us':>9} {'x_floor':>7} {'roof_us':>8} "
          f"{'x_roof':>6}  verdict")


def format_row(row):
    """One line of the table (times in microseconds)."""
    def us(key):
        v = row.get(key, math.nan)
        return f"{v * 1e6:9.1f}" if math.isfinite(v) else f"{'-':>9}"
    rng = (f"{row['x_torch_low']:5.1f}-{row['x_torch_high']:<5.1f}"
           if math.isfinite(row["x_torch"]) else "-")
    roof = row.get("roofline_s", math.nan)
    return (f"{row['depth']:>5} {row['batch']:>5} {us(PEER + '_s')} {us('numba_s')} "
            f"{us('numba_parallel_s')} {row['x_torch']:>7.1f} {rng:>13} {us('floor_s')} "
            f"{row['x_floor']:>7.2f} {roof * 1e6 if math.isfinite(roof) else math.nan:>8.1f} "
            f"{row.get('x_roofline', math.nan):>6.1f}  {row['verdict']}")


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
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"threads for every contestant (default: ${pools.ENV}, else every "
                             "core)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="CSV written here (default: %(default)s)")
    parser.add_argument("--no-roofline", action="store_true", help="no roofline columns")
    parser.add_argument("--crossover", action="store_true",
                        help="instead: hand loops vs BLAS by batch at the first depth")


def run(args):
    """``bpbench goals``: print the table and the verdicts; write the CSV. Exit 0."""
    from .compare import header, versions_text, write_csv

    if args.crossover:
        crossover(args.batches, args.depths[0], threads=args.threads)
        return 0
    for name in FLAVOURS:
        reason = points.unavailable(name)
        if reason:
            raise ValueError(f"goals need {name}: {reason}")
    print(GOALS)
    print(HEADER, flush=True)
    frame, record = run_goals(args.depths, args.batches, threads=args.threads,
                              roofline=not args.no_roofline)
    record = {**record, "versions": versions_text(record)}
    if frame["x_torch"].isna().all():
        print(f"(torch columns empty: {points.unavailable(PEER)})")
    met = (frame["verdict"] == "ok").sum()
    print(f"{met} of {len(frame)} points meet the goals; {header(record)}")
    note = engine.busy_note()
    if note:
        print(note)
    frame.insert(len(frame.columns), "versions", record["versions"])
    path = write_csv(frame, args.out)
    print(f"wrote {path}")
    return 0
