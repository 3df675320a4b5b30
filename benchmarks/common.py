"""What every benchmark in this suite shares: the grid, cached points, the skip logic.

- The engine: every point is built by :func:`bpbench.bench.engine.checked_point` (the point
  ``bpbench compare`` times: same seeded net, params and batch, checked against the float64
  reference, warmed up, the run's thread count applied to BLAS, Numba and the peers), and the
  timed body is :meth:`Point.step <bpbench.bench.points.Point.step>` (``step_prepared`` +
  ``synchronize``), the call the engine times. Only the clock is asv's own: its statistics
  (confidence intervals, the significance test of ``asv compare``) need its samples.
- The grid: ``IMPLS`` x ``DEPTHS`` x ``BATCHES`` at ``WIDTH``, ``DTYPE`` (see
  :func:`bpbench.bench.points.grid_net`). ``IMPLS`` is the one contestant list (every
  registered implementation, then every peer), so a new peer appears here by itself; every name
  is a parameter value on every machine, so results line up across machines and commits; what
  cannot run here is skipped.
- Threads: ``$BPBENCH_THREADS``, else every core (``bpbench asv`` sets it explicitly);
  ``TrackThreads`` records the count each run used.
- Skips: asv's mechanism, ``NotImplementedError`` raised in ``setup`` (asv prints the reason):
  an implementation unavailable here (no GPU, PyTorch not installed) or a pure-Python point
  that would take minutes (:func:`bpbench.bench.points.skip_reason`).
- Caching: asv re-runs ``setup`` before every sample, so a point (model checked against the
  reference and warmed up: JIT compiled) is built once per process and reused.
- Cost: asv runs every parameter combination in a fresh process (``launch_method: spawn``), so
  the grids are small; bpbench's measuring tools are imported lazily (a ``track_`` lookup
  costs a process start, not an import of Numba).
- Nothing here is named ``time_*``/``track_*``/``peakmem_*``: asv would take it for a benchmark.
"""

from __future__ import annotations


def _contestants():
    """The one contestant list (``bpbench.bench.points.contestants``), read without SciPy's cost
    beyond ``import bpbench``: the registry's names, then the peers'."""
    from bpbench import registry
    from bpbench.bench import peers

    return list(registry.names()) + peers.names()


#: contestants: every registered implementation, then every peer
IMPLS = _contestants()
DEPTHS = [1, 4]
BATCHES = [1, 32, 1024]
WIDTH = 256
DTYPE = "float32"

#: the peak-memory point: wide and large enough that the step's working set (activations,
#: deltas, gradients: tens of MB) stands out against interpreter and libraries (~100s of MB)
MEM_WIDTH = 1024
MEM_BATCH = 4096

# time to target: the problem and its constants come from bpbench.bench.target (where
# ``bpbench to-target`` finds them too), imported where they are used: asv runs this folder
# against older commits' libraries too, and a module-level import of a newer module would fail
# every benchmark of such a commit, not only the time to target


class StepTiming:
    """asv timing attributes for step-sized calls (microseconds to a fraction of a second).

    How ``asv continuous``/``asv compare`` decide (asv 0.6, ``asv/_stats.py: is_different`` and
    ``commands/compare.py``): a point is flagged when the ratio of the two medians exceeds
    ``--factor`` *and* a Mann-Whitney U test of the two sets of samples, pooled over all rounds,
    gives p < 0.002. Samples are many (``number`` calls each, so a sample lasts >= 10 ms), so
    the test sees even a few percent; what keeps an unchanged commit quiet is the pooled
    median's robustness, and that needs the process-to-process spread (thread placement, BLAS
    pools waking up, memory layout) inside the samples:

    - ``rounds = 8``: each round is a new process per point; asv pools the samples of all
      rounds. On the 2-core CI VM one benchmark process in ten to twenty runs 15-100% slow as
      a whole (all its samples; the shared machine, not the code), and a point is falsely
      flagged when half of one commit's processes are such (``scripts/asv_acceptance.py aa``
      prints each commit's samples round by round). With one round a single process decided a
      point; with four, two slow processes of a point did (A/A runs at 16ffdc5 and 2cc961c);
      with six, three (976f501: numpy (4, 32), 0.89); with eight, four still did in one of
      three A/A compares (469a154: numba_parallel (1, 1), 0.84). Eight is as many as keep the
      step grid's compare under ten minutes (8.5-9.3 min). What eight rounds leave, the second
      pass of ``bpbench asv continuous`` (:mod:`bpbench.bench.continuous`) drops: a flag
      stands only if fresh processes raise it again. docs/measurements.md has the runs;
    - ``repeat = (10, 25, 0.4)``: 10 to 25 samples per process, at most 0.4 s, so the
      processes weigh about the same and the step grid compares two commits, interleaved, in
      under ten minutes on two cores (the process start, not the timing, is most of the cost);
    - ``warmup_time``: short, ``setup`` has already warmed up (compiled) the point.
    """

    rounds = 8
    repeat = (10, 25, 0.4)
    warmup_time = 0.05
    timeout = 300


def is_peer(impl):
    """True for a peer (PyTorch...), False for a bpbench implementation."""
    from bpbench.bench import peers

    return impl in peers.PEERS


def is_compiled_peer(impl):
    """True for a peer that compiles per batch shape in its first step at that shape."""
    from bpbench.bench import peers

    return impl in peers.COMPILED


def skip_if_unavailable(impl, net, batch):
    """Raise NotImplementedError (asv's skip) when this point is not to be run here."""
    from bpbench.bench import points

    reason = points.skip_reason(impl, net, batch)
    if reason:
        raise NotImplementedError(reason)


_points = {}


def point(impl, depth, batch, width=WIDTH, dtype=DTYPE, *, warm_batch=None, check_rows=None):
    """The checked, warmed-up :class:`bpbench.bench.points.Point`, built once per process."""
    key = (impl, depth, batch, width, dtype, warm_batch, check_rows)
    if key in _points:  # asv calls setup before every sample: answer in microseconds
        return _points[key]
    from bpbench.bench import engine, points

    net = points.grid_net(depth, width, dtype)
    skip_if_unavailable(impl, net, batch)
    if warm_batch is not None and warm_batch != batch and is_compiled_peer(impl):
        raise NotImplementedError(f"{impl} compiles per batch shape: warmed up on {warm_batch} "
                                  f"rows, its first step on {batch} would compile in the "
                                  "measured call")
    _points[key] = engine.checked_point(impl, net, batch, warm_batch=warm_batch,
                                        check_rows=check_rows)
    return _points[key]


def threads():
    """The thread count of this benchmark process (what every contestant is given)."""
    from bpbench.bench import threads as pools

    return pools.resolve()


def grid_rates():
    """``{(impl, depth, batch): row}`` from one in-process run of the grid (``bpbench compare``).

    Rows have ``status`` ("ok", "skipped", "disagrees"), ``reason``, ``gflops`` and
    ``floor_fraction``. Short timings: this feeds the ``track_`` benchmarks, whose history
    asv plots; ``time_step`` is the careful measurement.
    """
    from bpbench.bench.compare import run_grid

    frame = run_grid(IMPLS, DEPTHS, BATCHES, WIDTH, DTYPE, progress=False, timing="track",
                     roofline=False)
    # plain Python values: the track processes unpickle this without importing pandas
    return {(r["impl"], int(r["depth"]), int(r["batch"])):
            {"status": str(r["status"]), "reason": str(r["reason"]),
             "gflops": float(r["gflops"]), "floor_fraction": float(r["floor_fraction"])}
            for r in frame.to_dict("records")}


def rate_row(cache, impl, depth, batch):
    """The grid row of a point; asv skip when it was skipped, an error when it disagreed."""
    row = cache[impl, depth, batch]
    if row["status"] == "skipped":
        raise NotImplementedError(row["reason"])
    if row["status"] != "ok":
        raise ValueError(row["reason"])
    return row


# ---------------------------------------------------------------------------- time to target
def target_skip(impl):
    """Why ``impl`` is not run to the target here, or None."""
    from bpbench.bench import points

    if impl == "naive":
        return "naive (pure Python) skipped: a run to the target takes about a minute"
    return points.unavailable(impl)


def train_to_target(impl, net, X, y, batch):
    """Train a fresh model from ``net.init(0)`` until the epoch loss <= TARGET_LOSS; the history.

    Implementations run :func:`bpbench.train`; a peer runs its own training loop
    (``train_epochs``) over the same batches (one ``default_rng(0)`` permutation per epoch),
    from the same init, with the same learning rate and stopping rule.
    Raises RuntimeError when the target is not reached in TARGET_MAX_EPOCHS epochs.
    """
    from bpbench import train
    from bpbench.bench import peers, points
    from bpbench.bench.target import TARGET_LOSS, TARGET_LR, TARGET_MAX_EPOCHS

    model = points.make_model(impl, net, net.init(seed=0))
    if impl in peers.PEERS:
        history = model.train_epochs(X, y, TARGET_LR, TARGET_MAX_EPOCHS, batch, seed=0,
                                     target_loss=TARGET_LOSS)
        reached = bool(history) and history[-1] <= TARGET_LOSS
    else:
        history = train(model, X, y, lr=TARGET_LR, epochs=TARGET_MAX_EPOCHS, batch_size=batch,
                        seed=0, target_loss=TARGET_LOSS)
        reached = history.stop_reason == "target"
    model.synchronize()
    if not reached:
        raise RuntimeError(f"{impl} did not reach loss {TARGET_LOSS} in {len(history)} epochs "
                           f"(last {history[-1]:.4g})")
    return history


_problems = {}
#: (impl, depth, batch) -> epochs the setup run needed to reach TARGET_LOSS
target_epochs = {}


def target_problem_for(impl, depth, batch):
    """(net, X, y) for ``impl``, after one untimed run to the target (compiles; it gets there).

    The epochs that run took are in ``target_epochs[impl, depth, batch]``.
    """
    key = (impl, depth, batch)
    if key in _problems:
        return _problems[key]
    reason = target_skip(impl)
    if reason:
        raise NotImplementedError(reason)
    from bpbench.bench.target import target_problem

    problem = target_problem(depth)
    target_epochs[key] = len(train_to_target(impl, *problem, batch))
    _problems[key] = problem
    return problem


# ---------------------------------------------------------------------------- compile cost
def compile_cache_dir():
    """A Numba cache folder shared by the compile benchmarks of one asv run.

    asv runs ``setup_cache`` and the benchmarks in the same temporary working directory and
    deletes it afterwards, so the folder lives exactly as long as the run.
    """
    import os

    path = os.path.abspath("bpbench-numba-cache")
    os.makedirs(path, exist_ok=True)
    return path


def compile_args(impl, depth, batch):
    """(impl, net, batch) for the compile-cost benchmark; asv skip when it does not apply here."""
    if is_peer(impl):
        raise NotImplementedError("the compile benchmark is for bpbench implementations (a "
                                  "peer reports its own compile time)")
    from bpbench.bench import points

    net = points.grid_net(depth, WIDTH, DTYPE)
    skip_if_unavailable(impl, net, batch)
    return impl, net, batch


def first_step_seconds(cache, impl, net, batch, *, warm):
    """Seconds of the first step of a fresh ``impl`` model in a new process.

    cold: an empty Numba cache folder, which the run leaves filled; warm: that folder (filled
    first when the cold benchmark has not run), the state of a script's second run.
    """
    import os

    from bpbench.bench.compile_cost import compile_cost

    folder = os.path.join(cache, impl)
    if warm:
        return compile_cost(impl, net, batch, cache_dir=folder, warm=not os.path.isdir(folder))
    if os.path.isdir(folder):  # filled by an earlier measurement: cold needs an empty one
        import shutil
        shutil.rmtree(folder)
    os.makedirs(folder)
    return compile_cost(impl, net, batch, cache_dir=folder, warm=False)


def reset_peak_rss():
    """:func:`bpbench.bench.points.reset_peak_rss`: forget setup's peaks before a peakmem_ call."""
    from bpbench.bench import points

    return points.reset_peak_rss()
