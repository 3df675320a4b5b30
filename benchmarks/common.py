"""What every benchmark in this suite shares: the grid, cached points, the skip logic.

- The grid: ``IMPLS`` x ``DEPTHS`` x ``BATCHES`` at ``WIDTH``, ``DTYPE`` (see
  :func:`bpbench.bench.points.grid_net`). Every contestant name is a parameter value on every
  machine, so results line up across machines and commits; what cannot run here is skipped.
- Skips: asv's mechanism, ``NotImplementedError`` raised in ``setup`` (asv prints the reason):
  an implementation unavailable here (no GPU, PyTorch not installed) or a pure-Python point
  that would take minutes (:func:`bpbench.bench.points.skip_reason`).
- Caching: asv re-runs ``setup`` before every sample, so a point (model checked against the
  reference and warmed up: JIT compiled) is built once per process and reused.
- Cost: asv runs every parameter combination in a fresh process (``launch_method: spawn``), so
  the grids are small and bpbench is imported lazily (a ``track_`` lookup costs a process
  start, not an import of NumPy, SciPy and Numba).
- Nothing here is named ``time_*``/``track_*``/``peakmem_*``: asv would take it for a benchmark.
"""

from __future__ import annotations

#: contestants: the five built-in implementations, then the peers (PyTorch eager,
#: torch.compile, JAX jit; the same names as bpbench.bench.points.CONTESTANTS, written out so
#: that importing this module stays cheap)
IMPLS = ["naive", "numpy", "numba", "numba_parallel", "cuda", "torch", "torch_compile", "jax"]
#: the peers among IMPLS (bpbench.bench.peers.PEERS): timed per step, not through bpbench.train
PEERS = ("torch", "torch_compile", "jax")
#: the peers that compile for each batch shape in their first step at it
COMPILED_PEERS = ("torch_compile", "jax")
DEPTHS = [1, 4]
BATCHES = [1, 32, 1024]
WIDTH = 256
DTYPE = "float32"

#: the peak-memory point: wide and large enough that the step's working set (activations,
#: deltas, gradients: tens of MB) stands out against interpreter and libraries (~100s of MB)
MEM_WIDTH = 1024
MEM_BATCH = 4096

#: time-to-target: two spirals (256 points), relu MLP of width 64, SGD lr 0.1, float32;
#: NumPy reaches the target in about a hundred epochs
TARGET_SAMPLES = 256
TARGET_WIDTH = 64
TARGET_LR = 0.1
TARGET_LOSS = 0.1
TARGET_MAX_EPOCHS = 1000


class StepTiming:
    """asv timing attributes for step-sized calls (microseconds to a fraction of a second).

    asv times one call per sample when a benchmark has a setup; 10 to 100 samples within about
    a second give a stable median and quartiles. ``setup`` already warmed up (compiled), so
    asv's own warm-up is short; one round because every point is its own process anyway.
    """

    rounds = 1
    repeat = (10, 100, 1.0)
    warmup_time = 0.05
    timeout = 300


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
    from bpbench.bench import points

    net = points.grid_net(depth, width, dtype)
    skip_if_unavailable(impl, net, batch)
    if warm_batch is not None and warm_batch != batch and impl in COMPILED_PEERS:
        raise NotImplementedError(f"{impl} compiles per batch shape: warmed up on {warm_batch} "
                                  f"rows, its first step on {batch} would compile in the "
                                  "measured call")
    _points[key] = points.build(impl, net, batch, warm_batch=warm_batch, check_rows=check_rows)
    return _points[key]


def grid_rates():
    """``{(impl, depth, batch): row}`` from one in-process run of the grid (``bpbench compare``).

    Rows have ``status`` ("ok", "skipped", "disagrees"), ``reason``, ``gflops`` and
    ``floor_fraction``. Short timings: this feeds the ``track_`` benchmarks, whose history
    asv plots; ``time_step`` is the careful measurement.
    """
    from bpbench.bench.compare import run_grid

    frame = run_grid(IMPLS, DEPTHS, BATCHES, WIDTH, DTYPE, progress=False,
                     timing={"warmup": 1, "min_time": 0.05, "min_repeats": 5, "max_time": 0.3})
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
def target_problem(depth, dtype=DTYPE):
    """(net, X, y) of the time-to-target benchmark: two spirals, relu MLP, float32."""
    from bpbench import Network, datasets

    X, y = datasets.two_spirals(TARGET_SAMPLES, noise=0.0, seed=0)
    net = Network((2,) + (TARGET_WIDTH,) * depth + (2,), activation="relu",
                         loss="cross_entropy", dtype=dtype)
    return net, X.astype(net.dtype), y


def target_skip(impl):
    """Why ``impl`` is not run to the target here, or None."""
    from bpbench.bench import points

    if impl in PEERS:
        return "bpbench.train drives bpbench implementations; the peers are timed per step"
    if impl == "naive":
        return "naive (pure Python) skipped: a run to the target takes about a minute"
    return points.unavailable(impl)


def train_to_target(impl, net, X, y, batch):
    """Train a fresh model from ``net.init(0)`` until the epoch loss <= TARGET_LOSS; the history.

    Raises RuntimeError when the target is not reached in TARGET_MAX_EPOCHS epochs.
    """
    from bpbench import train
    from bpbench.bench import points

    model = points.make_model(impl, net, net.init(seed=0))
    history = train(model, X, y, lr=TARGET_LR, epochs=TARGET_MAX_EPOCHS, batch_size=batch,
                    seed=0, target_loss=TARGET_LOSS)
    model.synchronize()
    if history.stop_reason != "target":
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
    if impl in PEERS:
        raise NotImplementedError("the compile benchmark is for bpbench implementations; a "
                                  "compiled peer reports its own compile_seconds")
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
