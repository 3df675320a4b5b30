"""``bpbench to-target``: seconds to train two spirals to the target loss, bpbench vs each peer.

    bpbench to-target                                 # depth 2, 5 rounds
    bpbench to-target --depths 2,4 --rounds 9 --threads 1

The problem is :mod:`bpbench.bench.target`'s (two spirals of 256 points, relu MLP of width 64,
SGD lr 0.1, batches of 32, float32, until the epoch loss is <= 0.1, at most 1000 epochs).
Contestants: ``numba`` and ``numba_parallel`` through :func:`bpbench.train` (the epoch fast
path: one compiled call per epoch), and every peer present that has a training loop of its own
(``train_epochs``: PyTorch eager, JAX; ``torch_compile`` has none and is skipped, saying so).
Everyone starts from ``net.init(0)`` on the same data with the same batches (one
``default_rng(0)`` permutation per epoch) and the same thread count
(:mod:`bpbench.bench.threads`).

A timed run is the whole thing: build a fresh model from those parameters, train to the target.
Each run is timed by the engine (:func:`bpbench.bench.engine.time_call`, :data:`SETTINGS`: one
untimed warm-up run right before it, which also compiles in the first round and lets the thread
pools of the contestant before go quiet, then one timed run), in ``--rounds`` rounds with the
order of the contestants rotated from round to round. Per contestant: the median seconds over
rounds (lowest, highest), epochs run, final loss, whether it reached the target, and the
speed-up over PyTorch eager, the median over rounds of (torch's seconds / its seconds in the
same round) with the lowest and highest round. A contestant that did not reach the target (or a
torch that did not) is reported as such and not compared.

Issue 11's goal (:data:`GOAL`): training to the target at least 10x faster than PyTorch's own
loop; the verdict column judges numba and numba_parallel. A CSV with the provenance goes to
``results/local/to_target.csv``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import registry
from ..training import train
from . import engine, peers, points, target
from . import threads as pools
from .argtypes import name_list, non_negative_int_list, positive_int

GOAL = "issue 11: training to the target >= 10x faster than PyTorch's own loop"
#: the speed-up over :data:`BASELINE` the goal asks for
NEED_X = 10.0
#: the contestant the speed-ups are computed against
BASELINE = "torch"
#: bpbench's contestants (judged against the goal)
OURS = ("numba", "numba_parallel")
DEPTHS = (2,)
ROUNDS = 5
#: per round and contestant: one untimed warm-up run, then one timed run (no calibration call)
SETTINGS = engine.make_settings("compare", warmup=1, min_repeats=1, max_repeats=1,
                                min_time=0.0, max_time=0.0, sample_time=0.0)
DEFAULT_OUT = os.path.join("results", "local", "to_target.csv")


def default_contestants():
    """numba, numba_parallel, then every peer (those without a loop of their own are skipped)."""
    return list(OURS) + peers.names()


class Run:
    """One contestant's whole run, callable: a fresh model from ``params``, trained to target.

    ``params``: the shared start (``net.init(0)``), copied into every fresh model.
    After a call, ``history`` holds the per-epoch losses of that run.
    """

    def __init__(self, name, net, X, y, params, *, threads, lr=None, max_epochs=None,
                 batch_size=None, target_loss=None):
        self.name, self.net, self.X, self.y, self.params = name, net, X, y, params
        self.threads = threads
        # None: the problem's setting (bpbench.bench.target), read now
        self.lr = target.TARGET_LR if lr is None else lr
        self.max_epochs = target.TARGET_MAX_EPOCHS if max_epochs is None else max_epochs
        self.batch_size = target.TARGET_BATCH if batch_size is None else batch_size
        self.target_loss = target.TARGET_LOSS if target_loss is None else target_loss
        self.history = []

    @property
    def is_peer(self):
        return self.name in peers.PEERS

    def fresh_model(self):
        """A new model holding a copy of ``params``.

        Built directly, not through :func:`bpbench.bench.points.make_model`: that one applies
        the thread count to every pool after building (threadpoolctl: milliseconds), which
        would land inside the clock; :func:`run_to_target` applied it once before timing.
        """
        if self.is_peer:
            return peers.make(self.name, self.net, self.params, threads=self.threads)
        return registry.get(self.name)(self.net, self.params)

    def __call__(self):
        model = self.fresh_model()
        if self.is_peer:  # the peer's own loop over the same batches
            history = model.train_epochs(self.X, self.y, self.lr, self.max_epochs,
                                         self.batch_size, seed=0, target_loss=self.target_loss)
        else:
            history = train(model, self.X, self.y, lr=self.lr, epochs=self.max_epochs,
                            batch_size=self.batch_size, seed=0, target_loss=self.target_loss)
        model.synchronize()
        self.history = list(history)

    @property
    def reached(self):
        """True when the last run ended at or below the target loss."""
        return bool(self.history) and self.history[-1] <= self.target_loss


def unavailable(name, threads):
    """None when ``name`` can be built here, else why not (a sentence)."""
    if name in peers.PEERS:
        return peers.unavailable(name, threads=threads)
    if name not in registry.names():
        return (f"unknown contestant {name!r}; known: "
                f"{', '.join(list(registry.names()) + peers.names())}")
    return points.unavailable(name, threads=threads)


def make_runs(names, net, X, y, *, threads, **options):
    """({name: Run}, {name: why skipped}) for ``names``, all starting from ``net.init(0)``.

    A peer without a training loop of its own (no ``train_epochs``) is skipped, saying so.
    """
    params = net.init(0)
    runs, skipped = {}, {}
    for name in names:
        reason = unavailable(name, threads)
        if reason is None:
            run = Run(name, net, X, y, params, threads=threads, **options)
            if run.is_peer and not hasattr(run.fresh_model(), "train_epochs"):
                reason = "has no training loop of its own (train_epochs)"
            else:
                runs[name] = run
        if reason is not None:
            skipped[name] = reason
    return runs, skipped


def time_rounds(runs, rounds, settings=SETTINGS):
    """{name: [seconds of the timed run, one per round]}; the order rotates every round."""
    names = list(runs)
    out = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            out[name].append(engine.time_call(runs[name], settings=settings).median)
    return out


def rows(seconds, outcomes, baseline=BASELINE):
    """One row per contestant from per-round ``seconds`` and ``outcomes``.

    ``outcomes``: {name: (epochs, final loss, reached)}. Row: contestant, seconds (median over
    rounds), seconds_low/high, epochs, final_loss, reached, ``x_<baseline>`` (median over
    rounds of baseline seconds / its seconds, NaN unless both reached), ``x_..._low/high``,
    verdict (:data:`OURS` only: 'ok', 'MISS ...', 'did not reach the target', or '-' without a
    baseline to compare with; '-' for the others).
    """
    out = []
    base = np.asarray(seconds[baseline], dtype=np.float64) if baseline in seconds else None
    base_reached = baseline in outcomes and outcomes[baseline][2]
    for name, s in seconds.items():
        s = np.asarray(s, dtype=np.float64)
        epochs, final, reached = outcomes[name]
        row = {"contestant": name, "seconds": float(np.median(s)), "seconds_low": float(s.min()),
               "seconds_high": float(s.max()), "epochs": int(epochs), "final_loss": float(final),
               "reached": bool(reached)}
        x = lo = hi = math.nan
        if name != baseline and base is not None and reached and base_reached:
            ratio = base / s  # paired: the same round
            x, lo, hi = float(np.median(ratio)), float(ratio.min()), float(ratio.max())
        row[f"x_{baseline}"], row[f"x_{baseline}_low"], row[f"x_{baseline}_high"] = x, lo, hi
        row["verdict"] = verdict(name, reached, x, baseline,
                                 base_reached if base is not None else None)
        out.append(row)
    return out


def verdict(name, reached, x, baseline=BASELINE, baseline_reached=True):
    """Against :data:`GOAL`, for :data:`OURS` (others: '-'); ``baseline_reached`` None: the
    baseline did not run."""
    if not reached:
        return "did not reach the target"
    if name not in OURS:
        return "-"
    if not math.isfinite(x):
        if baseline_reached is None:
            return f"- ({baseline} not run)"
        return f"- ({baseline} absent)" if baseline_reached else f"- ({baseline} did not reach)"
    return "ok" if x >= NEED_X else f"MISS x{x:.2f}<{NEED_X:g}"


def run_to_target(names=None, depths=DEPTHS, *, rounds=ROUNDS, settings=None, threads=None,
                  baseline=BASELINE, progress=True, command=None, **options):
    """Time every contestant to the target at every depth.

    Returns ``(frame, skipped, record)``: a DataFrame of :func:`rows` with ``depth`` and the
    provenance columns, ``{name: why not timed}`` and the provenance record. ``options``: of
    :class:`Run` (``lr``, ``max_epochs``, ``batch_size``, ``target_loss``; tests shrink them).
    """
    import pandas as pd

    settings = SETTINGS if settings is None else settings
    n = pools.apply(threads)
    record = engine.provenance(command)
    names = default_contestants() if names is None else list(names)
    frames, skipped = [], {}
    for depth in depths:
        net, X, y = target.target_problem(depth)
        runs, why = make_runs(names, net, X, y, threads=n, **options)
        skipped.update(why)
        pools.apply(n)  # building a Numba model imported Numba: its pool gets the count too
        seconds = time_rounds(runs, rounds, settings)
        outcomes = {name: (len(r.history), r.history[-1] if r.history else math.nan, r.reached)
                    for name, r in runs.items()}
        table = rows(seconds, outcomes, baseline)
        for row in table:
            row.update({"depth": depth, "rounds": rounds},
                       **{k: record[k] for k in ("machine", "commit", "threads", "command",
                                                 "load")})
            if progress:
                print(format_row(row, baseline), flush=True)
        frames.append(pd.DataFrame(table))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, skipped, record


def header_line(baseline=BASELINE):
    return (f"{'depth':>5} {'contestant':>15} {'median_s':>9} {'(low-high)':>17} {'epochs':>6} "
            f"{'final':>7} {'reached':>7} {'x_' + baseline + ' (low-high)':>22}  verdict")


def format_row(row, baseline=BASELINE):
    """One line of the table."""
    x = row[f"x_{baseline}"]
    cell = (f"{x:.2f} ({row[f'x_{baseline}_low']:.1f}-{row[f'x_{baseline}_high']:.1f})"
            if math.isfinite(x) else "-")
    spread = f"({row['seconds_low']:.3f}-{row['seconds_high']:.3f})"
    return (f"{row['depth']:>5} {row['contestant']:>15} {row['seconds']:>9.3f} {spread:>17} "
            f"{row['epochs']:>6} {row['final_loss']:>7.4f} {'yes' if row['reached'] else 'NO':>7} "
            f"{cell:>22}  {row['verdict']}")


# ---------------------------------------------------------------------------- command line
def add_arguments(parser):
    """Options of ``bpbench to-target``."""
    parser.add_argument("--depths", type=non_negative_int_list, default=list(DEPTHS),
                        help="hidden layers of width 64 (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=ROUNDS,
                        help="interleaved rounds, one timed run each (default: %(default)s)")
    parser.add_argument("--contestants", type=name_list, default=None,
                        help="comma-separated (default: numba, numba_parallel and every peer "
                             "with a training loop of its own)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"threads for every contestant (default: ${pools.ENV}, else every "
                             "core)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="CSV written here (default: %(default)s)")


def run(args):
    """``bpbench to-target``: print the table and the verdicts; write the CSV. Exit 0."""
    print(GOAL)
    print(f"two spirals ({target.TARGET_SAMPLES} points), relu width {target.TARGET_WIDTH}, "
          f"lr {target.TARGET_LR:g}, batch {target.TARGET_BATCH}, target loss "
          f"{target.TARGET_LOSS:g} (at most {target.TARGET_MAX_EPOCHS} epochs); "
          f"{args.rounds} rounds; seconds of a whole run (fresh model + training)")
    print(header_line(), flush=True)
    frame, skipped, record = run_to_target(args.contestants, args.depths, rounds=args.rounds,
                                           threads=args.threads)
    record = {**record, "versions": engine.versions_text(record)}
    for name, reason in skipped.items():
        print(f"({name} not run: {reason})")
    if frame.empty:
        raise ValueError("contestants: none of them can run here")
    judged = frame[frame["contestant"].isin(OURS)]
    print(f"issue 11 (>= {NEED_X:g}x torch to the target): {(judged['verdict'] == 'ok').sum()} "
          f"of {len(judged)} rows; {engine.header(record)}")
    engine.finish_table(frame, record, args.out)
    return 0
