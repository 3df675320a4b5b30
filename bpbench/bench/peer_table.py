"""One SGD step of bpbench's best CPU implementation beside every peer, in one process.

Run from anywhere (the issue-12 table: float32, relu, softmax cross-entropy, width 256)::

    python -m bpbench.bench.peer_table                                   # depths 1,4,8
    python -m bpbench.bench.peer_table --depths 1 --batches 1,16 --rounds 3
    python -m bpbench.bench.peer_table --busy --depths 4 --batches 2048   # threads really used

Every contestant is built by :func:`bpbench.bench.points.build` on the same seeded network,
parameters and batch, checked against the float64 reference (a peer that disagrees is
reported, not timed) and warmed up (the peers' compilation happens there and is reported
from their ``compile_log``). bpbench is timed through the public ``model.step(X, y, lr)``
(validation included); a peer through ``step_prepared`` on its own arrays, its loss read back
as a float. Threads: every peer gets ``points.TORCH_THREADS`` (or ``--threads``),
``numba_parallel`` the same count of Numba threads (``numba`` is one thread by definition,
its BLAS calls included); check what each really uses with ``--busy``.

The machine may be shared, so each point runs ``rounds`` rounds; in each, every contestant is
timed with :func:`bpbench.bench.timing.time_call` (the median of about ``min_time`` seconds of
samples), in an order rotated from round to round, so that drift hits everyone. A cell is the
median over rounds of (peer time / the faster of numba and numba_parallel in the same round),
with the lowest and highest round in brackets: above 1, bpbench is faster.
"""

from __future__ import annotations

import argparse

import numpy as np

from . import peers, points
from .argtypes import positive_float, positive_int, positive_int_list
from .timing import TIMING_LR, time_call

#: the bpbench side of the table: the best of these, round by round
BPBENCH = ("numba", "numba_parallel")


def measure(depth, batch, *, width=256, dtype="float32", rounds=5, min_time=0.2):
    """Step seconds per contestant and round at one point, with the peers' compile seconds.

    Returns ``(times, compile_seconds, skipped)``: ``{name: [seconds per round]}``,
    ``{peer: seconds of its compiling first step at this shape}`` (compiled peers) and
    ``{name: why it was not timed}``.
    """
    net = points.grid_net(depth, width, dtype)
    built, skipped = {}, {}
    for name in BPBENCH + tuple(peers.names()):
        reason = points.unavailable(name)
        if reason is None:
            try:  # checked on one row (float32) and warmed up: compiles
                built[name] = points.build(name, net, batch, twin=False)
            except points.DisagreementError as exc:
                reason = str(exc)
        if reason is not None:
            skipped[name] = reason
    calls = {name: _call(name, p) for name, p in built.items()}
    times = {name: [] for name in built}
    order = list(built)
    for r in range(rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            timing = time_call(calls[name], sync=built[name].model.synchronize, warmup=1,
                               min_time=min_time, max_time=5 * min_time)
            times[name].append(timing.median)
    compile_seconds = {name: p.model.compile_log.get((batch, width))
                       for name, p in built.items() if hasattr(p.model, "compile_log")}
    return times, compile_seconds, skipped


def busy(depth, batch, *, width=256, dtype="float32", seconds=1.0):
    """{name: [(CPU seconds, thread name), ...]}: the threads each contestant really used.

    Each contestant's step runs for about ``seconds`` under :func:`bpbench.bench.busy
    .busy_threads`; the list's length is its count of working threads.
    """
    import time

    from .busy import busy_threads

    net = points.grid_net(depth, width, dtype)
    out = {}
    for name in BPBENCH + tuple(peers.names()):
        if points.unavailable(name) is None:
            p = points.build(name, net, batch, twin=False)
            call = _call(name, p)
            t0 = time.perf_counter()
            call()
            repeats = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))
            out[name] = busy_threads(call, repeats)
    return out


def _call(name, point):
    """One timed step: a peer's ``step_prepared``, bpbench's public ``step``."""
    if name in peers.PEERS:
        return lambda: point.model.step_prepared(point.batch, TIMING_LR)
    return lambda: point.model.step(point.X, point.y, TIMING_LR)


def ratio_cells(times):
    """{peer: (median, lowest, highest)} of per-round peer time / best bpbench time."""
    best = np.min([times[n] for n in BPBENCH if n in times], axis=0)
    return {name: (float(np.median(r)), float(r.min()), float(r.max()))
            for name in peers.names() if name in times
            for r in [np.asarray(times[name]) / best]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bpbench.bench.peer_table",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=positive_int_list, default=[1, 4, 8])
    parser.add_argument("--batches", type=positive_int_list, default=[1, 16, 256, 2048])
    parser.add_argument("--width", type=positive_int, default=256)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--min-time", type=positive_float, default=0.2,
                        help="seconds of samples per contestant and round")
    parser.add_argument("--threads", type=positive_int, default=points.TORCH_THREADS,
                        help="threads of every peer and of numba_parallel (default: "
                             "%(default)s; BLAS inside numba_parallel: OPENBLAS_NUM_THREADS)")
    parser.add_argument("--busy", action="store_true",
                        help="instead of the table: the threads each contestant really uses "
                             "(per-thread CPU time, Linux) at the first depth and last batch")
    args = parser.parse_args(argv)

    import numba

    points.TORCH_THREADS = args.threads  # the peers' count, read when each peer is made
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.busy:
        depth, batch = args.depths[0], args.batches[-1]
        print(f"busy threads (>= 10% of the busiest one's CPU time) during about 1 s of steps, "
              f"depth {depth}, batch {batch}, {args.dtype}, width {args.width}:")
        for name, threads in busy(depth, batch, width=args.width, dtype=args.dtype).items():
            shown = "unknown (no /proc)" if threads is None else ", ".join(
                f"{name_} {sec:.2f}s" for sec, name_ in threads)
            print(f"{name:>15}: {'?' if threads is None else len(threads)}  ({shown})")
        return 0
    names = peers.names()
    print(f"{args.dtype}, relu, cross-entropy, width {args.width}, {points.TORCH_THREADS} "
          f"threads, {args.rounds} rounds; cells: peer time / best of {' '.join(BPBENCH)} "
          "(median over rounds [lowest-highest]); compile: first step at the shape, seconds")
    print("| depth | batch | bpbench us (best) | " + " | ".join(names)
          + " | compile s " + " / ".join(n for n in names if n != "torch") + " |")
    print("|---" * (4 + len(names)) + "|")
    for depth in args.depths:
        for batch in args.batches:
            times, compiled, skipped = measure(depth, batch, width=args.width,
                                               dtype=args.dtype, rounds=args.rounds,
                                               min_time=args.min_time)
            if not any(n in times for n in BPBENCH):
                print(f"| {depth} | {batch} | not timed: {skipped} |")
                continue
            best = {n: float(np.median(times[n])) for n in BPBENCH if n in times}
            winner = min(best, key=best.get)
            cells = ratio_cells(times)
            row = [f"{c[0]:.2f} [{c[1]:.2f}-{c[2]:.2f}]" if n in cells else "n/a"
                   for n in names for c in [cells.get(n)]]
            comp = " / ".join("n/a" if compiled.get(n) is None else f"{compiled[n]:.1f}"
                              for n in names if n != "torch")
            print(f"| {depth} | {batch} | {best[winner] * 1e6:.1f} ({winner}) | "
                  + " | ".join(row) + f" | {comp} |", flush=True)
            for name, reason in skipped.items():
                print(f"  ({name} not timed: {reason})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
