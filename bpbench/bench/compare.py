"""``bpbench compare``: every available contestant on a grid of shapes, side by side, now.

Every point is measured by :func:`bpbench.bench.engine.measure` (the one timing engine: same
seeded net, parameters and batch for everyone, each contestant's loss and gradients checked
against the float64 reference before it is timed, JIT compilation warmed up outside the clock,
the run's thread count given to every pool and peer, median with a confidence interval) -- the
code :func:`bpbench.fastest`, ``bpbench goals`` and the asv suite use. Runs in this process (no
asv, no subprocesses): about a minute with the defaults on a 2-core machine.

Per point it records the median step time and its 95% confidence interval, achieved GFLOP/s
(``net.step_flops`` / time), the speed-up over ``numpy``, the fraction of the BLAS floor
(:func:`bpbench.bench.floor.blas_floor` / time: 1.0 means as fast as the step's matrix products
alone through NumPy's BLAS, the "same library" reference) and the fraction of the roofline
(:func:`bpbench.bench.roofline.bound` / time: the least time this machine's measured compute
peak and memory bandwidth allow; never above 1.0). Every row carries the run's provenance:
machine, commit, thread count, library versions, command (:func:`bpbench.bench.engine.provenance`).
"""

from __future__ import annotations

import math
import os

from . import engine, machine, points
from . import roofline as roofline_mod
from . import threads as pools
from .argtypes import name_list, non_negative_int_list, positive_int, positive_int_list

DEFAULT_DEPTHS = (1, 2, 4)
DEFAULT_BATCHES = (1, 16, 256, 1024)
DEFAULT_WIDTH = 256
DEFAULT_DTYPE = "float32"
#: where the CSV goes unless --out says otherwise: a folder git ignores, so running the main job
#: never dirties a checkout (committed results change only when regenerated on purpose)
DEFAULT_OUT = os.path.join("results", "local", "compare.csv")

#: per point: the engine's "compare" preset (one more warm-up call, then >= 0.2 s of samples)
TIMING = engine.PRESETS["compare"]
#: per (depth, batch): the BLAS floor is a sum of np.dot timings, each needs less
FLOOR_TIMING = engine.PRESETS["floor"]

#: exit code when a contestant disagreed with the reference (same as ``bpbench validate``)
EXIT_DISAGREE = 1

#: provenance columns (the same value on every row of one run)
PROVENANCE = ("machine", "commit", "threads", "versions", "command", "timestamp", "load")

#: CSV columns, in order; one row per (impl, depth, batch)
COLUMNS = ("impl", "depth", "width", "batch", "dtype", "status", "reason", "median_s", "q25_s",
           "q75_s", "ci_low_s", "ci_high_s", "spread", "repeats", "gflops", "floor_s",
           "floor_fraction", "roofline_s", "roofline_fraction", "bound", "level", "intensity",
           "speedup_vs_numpy", "max_rel_error", *PROVENANCE)


def _check_names(impls):
    """The requested contestant names (default: every available one), validated."""
    known = points.contestants()
    if impls is None:
        return points.available_contestants()
    if isinstance(impls, str) or not all(isinstance(n, str) for n in impls) or not impls:
        raise ValueError(f"impls must be a non-empty list of names, got {impls!r}")
    unknown = [n for n in impls if n not in known]
    if unknown:
        raise ValueError(f"impls: unknown {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(known)}")
    return list(dict.fromkeys(impls))


def _check_ints(values, name):
    if isinstance(values, (int, str)) or not values:
        raise ValueError(f"{name} must be a non-empty list of ints, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "depths" else 1):
            kind = "non-negative" if name == "depths" else "positive"
            raise ValueError(f"{name} must hold {kind} ints, got {v!r}")
        out.append(v)
    return sorted(set(out))


def _floor_seconds(net, batch):
    """The BLAS floor of one step (the step's products through NumPy's BLAS)."""
    from .floor import blas_floor

    return float(blas_floor(net, batch, settings=FLOOR_TIMING))


def _timing(timing):
    """A :class:`bpbench.bench.engine.Settings` from None, a preset name, Settings or a dict."""
    if timing is None:
        return TIMING
    if isinstance(timing, dict):
        return engine.make_settings("compare", **timing)
    return engine.make_settings(timing)


def run_grid(impls=None, depths=DEFAULT_DEPTHS, batches=DEFAULT_BATCHES, width=DEFAULT_WIDTH,
             dtype=DEFAULT_DTYPE, *, floor=True, progress=True, timing=None, threads=None,
             roofline=True, ceilings=None, command=None):
    """Time every point of the grid; a pandas DataFrame with :data:`COLUMNS`, one row per point.

    ``impls``: contestant names (default: every available one, see
    :func:`bpbench.bench.points.available_contestants`). Points that are skipped (contestant
    unavailable here, or pure Python at a hopeless size) have ``status == "skipped"`` and the
    reason; a contestant that disagrees with the reference has ``status == "disagrees"`` on that
    point and is not timed on any later point. ``timing``: engine settings (a preset name, a
    :class:`~bpbench.bench.engine.Settings` or a dict of overrides; default :data:`TIMING`).
    ``threads``: the run's thread count (default: ``$BPBENCH_THREADS``, else every core).
    ``roofline``: add the roofline columns, from ``ceilings`` (default: this machine's,
    measured once and cached, :func:`bpbench.bench.roofline.ceilings`).
    """
    import pandas as pd

    names = _check_names(impls)
    depths = _check_ints(depths, "depths")
    batches = _check_ints(batches, "batches")
    nets = {d: points.grid_net(d, width, dtype) for d in depths}  # validates width and dtype
    cfg = _timing(timing)
    n_threads = pools.apply(threads)
    if roofline and ceilings is None:
        if progress:
            print(f"measuring the roofline ceilings of {machine.name()} at {n_threads} threads "
                  "(once; cached)", flush=True)
        ceilings = roofline_mod.ceilings(n_threads)
    record = engine.provenance(command)
    prov = {"machine": record["machine"], "commit": record["commit"], "threads": n_threads,
            "versions": versions_text(record), "command": record["command"],
            "timestamp": record["timestamp"], "load": record["load"]}

    grid = [(d, name, b) for d in depths for name in names for b in batches]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(grid), desc="compare", unit="point", leave=False)
    rows, floors, roofs, wrong = [], {}, {}, {}
    try:
        for depth, name, batch in grid:
            net = nets[depth]
            row = dict.fromkeys(COLUMNS, math.nan)
            row.update(impl=name, depth=depth, width=width, batch=batch, dtype=net.dtype.name,
                       status="ok", reason="", bound="", level="", **prov)
            if bar is not None:
                bar.set_postfix_str(f"{name} depth={depth} batch={batch}")
            reason = wrong.get(name) or points.skip_reason(name, net, batch)
            if reason:
                row.update(status="disagrees" if name in wrong else "skipped", reason=reason)
            else:
                try:
                    m = engine.measure(name, net, batch, settings=cfg, threads=n_threads)
                except points.DisagreementError as exc:
                    wrong[name] = f"disagreed with the reference earlier: {exc}"
                    row.update(status="disagrees", reason=str(exc))
                else:
                    t = m.timing
                    row.update(median_s=t.median, q25_s=t.q25, q75_s=t.q75, ci_low_s=t.ci_low,
                               ci_high_s=t.ci_high, spread=t.spread, repeats=t.n,
                               gflops=m.gflops, max_rel_error=m.max_rel_error)
                    if floor:
                        if (depth, batch) not in floors:
                            floors[depth, batch] = _floor_seconds(net, batch)
                        fl = floors[depth, batch]
                        row.update(floor_s=fl, floor_fraction=fl / t.median)
                    if roofline:
                        if (depth, batch) not in roofs:
                            roofs[depth, batch] = roofline_mod.bound(net, batch, ceilings)
                        r = roofs[depth, batch]
                        row.update(roofline_s=r["roofline_s"],
                                   roofline_fraction=r["roofline_s"] / t.median,
                                   bound=r["bound"], level=r["level"], intensity=r["intensity"])
            rows.append(row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    numpy_time = (frame[frame["impl"] == "numpy"].set_index(["depth", "batch"])["median_s"])
    key = pd.MultiIndex.from_frame(frame[["depth", "batch"]])
    frame["speedup_vs_numpy"] = numpy_time.reindex(key).to_numpy() / frame["median_s"].to_numpy()
    return frame


#: the engine's writer (parent folders created, atomic replace); kept here for callers
write_csv = engine.write_csv
versions_text = engine.versions_text


# ---------------------------------------------------------------------------- command line
def add_arguments(parser):
    """The ``compare`` subcommand's options."""
    parser.add_argument("--impls", type=name_list, default=None,
                        help="comma-separated contestants (default: every available one; "
                             f"known: {', '.join(points.contestants())})")
    parser.add_argument("--depths", type=non_negative_int_list, default=list(DEFAULT_DEPTHS),
                        help="hidden-layer counts (default: %(default)s)")
    parser.add_argument("--batches", type=positive_int_list, default=list(DEFAULT_BATCHES),
                        help="batch sizes (default: %(default)s)")
    parser.add_argument("--width", type=positive_int, default=DEFAULT_WIDTH,
                        help="input and hidden width (default: %(default)s)")
    parser.add_argument("--dtype", default=DEFAULT_DTYPE, choices=("float32", "float64"),
                        help="float32 or float64 (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for every contestant: BLAS, Numba, the peers (default: "
                             f"${pools.ENV}, else every core: {pools.resolve()} here)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="CSV written here, one row per point (default: %(default)s)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip measuring the BLAS floor (faster; no floor fraction)")
    parser.add_argument("--no-roofline", action="store_true",
                        help="no roofline columns (the ceilings are measured once per machine "
                             "and thread count, then cached)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


#: one line of provenance (the engine's)
header = engine.header


def run(args):
    """Run the grid, print tables and notes, write the CSV; exit code 0 (1: a disagreement)."""
    from .report import format_tables

    frame = run_grid(args.impls, args.depths, args.batches, args.width, args.dtype,
                     floor=not args.no_floor, progress=not args.quiet, threads=args.threads,
                     roofline=not args.no_roofline)
    print(f"bpbench compare: median time per SGD step, width {args.width}, {args.dtype}; "
          f"{header(frame)}")
    print(format_tables(frame))
    for (impl, status), part in frame[frame["status"] != "ok"].groupby(["impl", "status"],
                                                                         sort=False):
        print(f"note: {impl} {status} on {len(part)} of {(frame['impl'] == impl).sum()} points, "
              f"e.g. {part['reason'].iloc[0]}")
    note = engine.busy_note()
    if note:
        print(note)
    over = frame[frame["roofline_fraction"] > 1]
    for row in over.itertuples():
        print(f"warning: {row.impl} depth {row.depth} batch {row.batch} ran at "
              f"{row.roofline_fraction:.0%} of its roofline: a floor was beaten, so the model "
              "or a ceiling is wrong there (`bpbench roofline --refresh` on a quiet machine)")
    path = write_csv(frame, args.out)
    print(f"wrote {len(frame)} rows to {path}")
    return EXIT_DISAGREE if (frame["status"] == "disagrees").any() else 0
