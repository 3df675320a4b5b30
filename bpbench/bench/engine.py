"""The one timing engine: every figure bpbench prints is measured here, the same way.

``bpbench compare``, ``bpbench goals``, ``bpbench noise``, :func:`bpbench.fastest`, the GPU check,
the floors and the asv suite (whose setup builds its points here and whose timed body is
:meth:`Point.step <bpbench.bench.points.Point.step>`) all go through this module, so one point
gives one figure whichever command is asked. What can make a timing lie is handled once:

- **the same checked point**: :func:`measure` builds it with :func:`bpbench.bench.points.build`
  (same seeded net, params and batch for every contestant; loss and gradients checked against
  the float64 reference before anything is timed; a disagreeing contestant is not timed);
- **the same threads**: :func:`bpbench.bench.threads.apply` gives every pool (BLAS, OpenMP,
  Numba, the peers) the run's count before the point is built and timed;
- **warm-up**: the point's build takes ``points.WARMUP_STEPS`` untimed steps (the first
  compiles), then :func:`time_call` ``settings.warmup`` more untimed calls;
- **validation, transfers**: the batch is prepared once, outside the clock; the timed call is
  ``step_prepared`` followed by ``synchronize()`` (device work finishes inside the clock);
- **clock resolution**: calls are grouped so a sample lasts at least ``settings.sample_time``;
- **noise**: per point the median of the samples with a distribution-free confidence interval
  of the median (:func:`median_ci`: binomial order statistics, SciPy's ``binom``), and the
  interquartile range; never the mean or the minimum.

The run's provenance (:func:`provenance`: commit, machine, library versions, threads, command)
goes with every result file the tools write.
"""

from __future__ import annotations

import datetime
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from importlib import metadata

import numpy as np

from . import machine, points
from . import threads as pools

#: learning rate of timed steps (also :data:`bpbench.bench.points.TIMING_LR`)
TIMING_LR = points.TIMING_LR


@dataclass(frozen=True)
class Settings:
    """How long a point is timed.

    ``warmup`` untimed calls, then samples of ``number`` calls each (``number`` chosen so a
    sample lasts >= ``sample_time`` s), until ``min_time`` s were measured and ``min_repeats``
    samples taken, or ``max_time`` s passed, or ``max_repeats`` samples were taken.
    ``confidence``: level of the median's confidence interval.
    """

    warmup: int = 1
    min_time: float = 0.2
    min_repeats: int = 7
    max_repeats: int = 10_000
    max_time: float = 1.0
    sample_time: float = 1e-3
    confidence: float = 0.95

    def __post_init__(self):
        for field, least in (("warmup", 0), ("min_repeats", 1), ("max_repeats", 1)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"{field} must be an int >= {least}, got {v!r}")
        for field in ("min_time", "max_time", "sample_time"):
            v = getattr(self, field)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{field} must be a non-negative number of seconds, got {v!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")


#: named settings: every consumer picks one of these (or derives one with ``replace``)
PRESETS = {
    # bpbench compare / goals: ~0.2-1 s per point
    "compare": Settings(),
    # fastest's race: ~0.1 s per candidate
    "race": Settings(min_time=0.1, min_repeats=5, max_time=0.5),
    # the floors' np.dot timings (many per point)
    "floor": Settings(min_time=0.05, min_repeats=5, max_time=0.5),
    # the asv rate benchmarks' one-process grid run (asv's own time_ benchmarks are the careful
    # measurement)
    "track": Settings(min_time=0.05, min_repeats=5, max_time=0.3),
    # tests and the GPU check's simulator smoke run: one sample is enough to exercise the path
    "smoke": Settings(warmup=1, min_time=0.0, min_repeats=3, max_time=0.0),
}


def make_settings(preset="compare", **overrides):
    """The :class:`Settings` of a preset, with fields overridden (validated).

    ``preset``: a name of :data:`PRESETS`, a :class:`Settings`, or a dict of overrides of the
    ``"compare"`` preset.
    """
    if isinstance(preset, dict):
        return make_settings("compare", **{**preset, **overrides})
    if isinstance(preset, Settings):
        base = preset
    elif isinstance(preset, str) and preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return replace(base, **overrides) if overrides else base


def median_ci(samples, confidence=0.95):
    """(low, high): a distribution-free confidence interval of the median of ``samples``.

    Binomial order statistics: with n samples, the number below the true median is
    Binomial(n, 1/2), so the interval between the j-th smallest and the j-th largest sample,
    with j the largest rank such that P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2, covers
    the median with probability >= ``confidence`` (exact, no assumption on the distribution;
    samples assumed independent). Too few samples for that (n < 6 at 95%): (min, max).
    """
    from scipy.stats import binom

    s = np.sort(np.asarray(samples, dtype=np.float64))
    n = s.size
    if n == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    # cdf(j - 1) = P(X <= j - 1) = P(X < j); largest j with that <= alpha
    j = int(binom.ppf(alpha, n, 0.5))
    while j > 0 and binom.cdf(j - 1, n, 0.5) > alpha:
        j -= 1
    if j < 1:
        return float(s[0]), float(s[-1])
    return float(s[j - 1]), float(s[n - j])


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, quartiles, the median's confidence interval, over ``n`` samples.

    ``number`` calls were timed together per sample (the sample's time divided by it);
    ``best``: the fastest sample (what a ceiling measurement wants; never a point's figure).
    """

    median: float
    q25: float
    q75: float
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    number: int = 1
    confidence: float = 0.95
    best: float = math.nan

    @property
    def spread(self):
        """(q75 - q25) / median: the relative interquartile range; > 0.2 reads as noisy."""
        return (self.q75 - self.q25) / self.median if self.median > 0 else 0.0

    @property
    def ci_rel(self):
        """Half the confidence interval's width over the median (0.05: +-5%)."""
        if not self.median > 0 or not math.isfinite(self.ci_high - self.ci_low):
            return math.nan
        return (self.ci_high - self.ci_low) / 2 / self.median

    @classmethod
    def from_samples(cls, samples, number=1, confidence=0.95):
        s = np.asarray(samples, dtype=np.float64)
        if s.size == 0:
            raise ValueError("samples must not be empty")
        q25, med, q75 = np.percentile(s, [25, 50, 75])
        lo, hi = median_ci(s, confidence)
        return cls(float(med), float(q25), float(q75), int(s.size), lo, hi, int(number),
                   confidence, float(s.min()))


def time_call(fn, *, sync=None, settings=None, **overrides):
    """Time ``fn()`` repeatedly; a :class:`Timing` of seconds per call.

    ``settings``: a :class:`Settings` or preset name (default ``"compare"``); keyword arguments
    override its fields. ``sync()``, when given, runs before each sample's clock starts and
    before it stops (queued device work finishes inside the measurement). Calls of ``fn``:
    ``warmup``, one calibration call (none when ``sample_time`` is 0: one call per sample),
    then ``number`` per sample.
    """
    cfg = make_settings(settings or "compare", **overrides)
    sync = sync or (lambda: None)
    for _ in range(cfg.warmup):
        fn()
    sync()
    number = 1
    if cfg.sample_time:
        # calibrate: how many calls make a sample of at least sample_time seconds (with
        # sample_time 0 a sample is one call: no calibration call, which for long calls such
        # as a whole training run would cost as much as a sample)
        t0 = time.perf_counter()
        fn()
        sync()
        one = max(time.perf_counter() - t0, 1e-9)
        number = max(1, min(10_000, math.ceil(cfg.sample_time / one)))
    samples = []
    spent = 0.0
    deadline = time.perf_counter() + cfg.max_time
    while len(samples) < cfg.max_repeats:
        sync()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        dt = time.perf_counter() - t0
        samples.append(dt / number)
        spent += dt
        if len(samples) >= cfg.min_repeats and (spent >= cfg.min_time
                                                 or time.perf_counter() > deadline):
            break
    return Timing.from_samples(samples, number, cfg.confidence)


def thread_cpu_seconds(fn, repeats=10, warmup=1):
    """The least CPU time of the calling thread one call of ``fn()`` took, over ``repeats`` calls.

    For single-threaded *ceiling* measurements on a shared machine: CPU time counts only while
    the thread runs, so time spent descheduled (another process on the core) is not counted,
    as it is in a wall-clock timing. Not for timing a point (a point's figure is wall time).
    """
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def time_first_call(make_model, X, y, lr=TIMING_LR):
    """Seconds of the first ``step`` of a fresh model: JIT compilation (or cache load) + one step.

    Meaningful only in a fresh process for JIT implementations (later models reuse compiled
    code); :mod:`bpbench.bench.compile_cost` runs it in a subprocess for that reason.
    """
    t0 = time.perf_counter()
    model = make_model()
    model.step(X, y, lr)
    model.synchronize()
    return time.perf_counter() - t0


def stopwatch():
    """A function returning seconds since this call (for durations that are not timings)."""
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


# ---------------------------------------------------------------------------- points
@dataclass(frozen=True)
class Measurement:
    """One timed point: who, where, how long, how sure, under which threads."""

    name: str
    net: object
    batch: int
    timing: Timing
    max_rel_error: float
    threads: int

    @property
    def flops(self):
        """FLOPs of the step's matrix products (``net.step_flops``)."""
        return self.net.step_flops(self.batch)

    @property
    def gflops(self):
        return self.flops / self.timing.median / 1e9


def checked_point(name, net, batch, *, threads=None, device="cpu", **build):
    """The point :func:`measure` would time, built under the run's thread count, not timed.

    For timers that bring their own clock (asv: its statistics need its own samples): they
    time :meth:`Point.step <bpbench.bench.points.Point.step>`, the call :func:`time_point` times.
    """
    n = pools.apply(threads)
    return points.build(name, net, batch, threads=n, device=device, **build)


def time_point(point, settings=None, **overrides):
    """:class:`Timing` of :meth:`Point.step <bpbench.bench.points.Point.step>` (step + sync)."""
    return time_call(point.step, settings=settings, **overrides)


def side_by_side(built, rounds, settings=None, *, call="step"):
    """Time several built points in ``rounds`` interleaved rounds: ``{name: [Timing, ...]}``.

    ``built``: ``{name: Point}`` (same net and batch). In every round each point is timed once,
    in an order rotated from round to round, so drift on a shared machine hits every contestant
    alike; compare contestants round by round (ratios within a round), not across rounds.
    ``call``: ``"step"`` times :meth:`Point.step <bpbench.bench.points.Point.step>` (prepared
    batch), ``"user"`` :meth:`Point.user_step <bpbench.bench.points.Point.user_step>` (an
    implementation's public ``step``, validation included).
    """
    if call not in ("step", "user"):
        raise ValueError(f"call must be 'step' or 'user', got {call!r}")
    cfg = make_settings(settings or "compare")
    order = list(built)
    out = {name: [] for name in order}
    for r in range(rounds):
        shift = r % len(order) if order else 0
        for name in order[shift:] + order[:shift]:
            point = built[name]
            fn = point.step if call == "step" else point.user_step
            out[name].append(time_call(fn, settings=cfg))
    return out


def repeats_for(fn, seconds):
    """How many calls of ``fn()`` take about ``seconds`` (one call timed; at least 1)."""
    t0 = time.perf_counter()
    fn()
    return max(1, int(seconds / max(time.perf_counter() - t0, 1e-9)))


def measure(name, net, batch, *, settings=None, threads=None, device="cpu", **build):
    """Build the checked point of ``name`` on ``net`` at ``batch`` and time it.

    ``threads``: the thread count (default :func:`bpbench.bench.threads.resolve`), applied
    before the point is built. ``build``: keyword arguments of
    :func:`bpbench.bench.points.build` (``check_rows``, ``twin``...). Raises what ``build``
    raises (:class:`bpbench.bench.points.DisagreementError` for a wrong answer: not timed).
    """
    n = pools.apply(threads)
    point = points.build(name, net, batch, threads=n, device=device, **build)
    try:
        timing = time_point(point, settings)
    finally:
        err = point.max_rel_error
        del point  # free the model before the next one is built
    return Measurement(name, net, int(batch), timing, err, n)


# ---------------------------------------------------------------------------- provenance
def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _git(*args, cwd=_ROOT):
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit(root=_ROOT):
    """The commit hash of the checkout at ``root`` (bpbench's own by default), with ``+dirty``
    when tracked files outside ``results/`` differ; None outside git.

    ``results/`` is left out because measuring writes there: ``scripts/regenerate-results``
    rewrites the committed ``results/<machine>/`` files one after the other, and the code that
    is measured is the same whether or not the previous file has been rewritten yet.
    An environment variable ``BPBENCH_COMMIT`` (set by asv wrappers) wins.
    """
    if os.environ.get("BPBENCH_COMMIT"):
        return os.environ["BPBENCH_COMMIT"]
    head = _git("rev-parse", "HEAD", cwd=root)
    if head is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":(exclude)results", cwd=root)
    return head + ("+dirty" if dirty else "")


#: libraries whose versions change timings
LIBRARIES = ("bpbench", "numpy", "numba", "scipy", "threadpoolctl", "torch", "jax", "numba-cuda")


def provenance(command=None):
    """Where a result comes from: a flat dict of strings (goes into CSVs and report headers).

    Keys: commit, machine, cpu, gpus, threads, blas_threads, python, <library> versions,
    command (default: this process's argv), timestamp (UTC).
    """
    info = machine.info()
    now = pools.describe()
    record = {
        "commit": commit() or "unknown",
        "machine": info["machine"],
        "cpu": info["cpu"],
        "gpus": ", ".join(info["gpus"]) or "none",
        "threads": str(now["threads"]),
        "blas_threads": now["blas"],
        "python": sys.version.split()[0],
    }
    for lib in LIBRARIES:
        record[lib] = _version(lib) or "-"
    if command is None:
        prog = sys.argv[0] if sys.argv else ""
        if os.path.basename(prog) == "bpbench" or prog.endswith(
                os.path.join("bpbench", "__main__.py")):
            prog = "bpbench"  # the console script or python -m bpbench
        command = " ".join([os.path.basename(prog), *sys.argv[1:]])
    record["command"] = command
    record["timestamp"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    record["load"] = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "-"
    return record


def busy_note():
    """A warning when the machine is busy (1-minute load average above 1.5x its cores), or None.

    Other processes on the cores make multi-threaded timings (BLAS, numba_parallel, the peers)
    wait for their slowest thread: such figures are not worth keeping.
    """
    if not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= 1.5 * cores:
        return None
    return (f"note: this machine is busy (load average {load:.1f} on {cores} cores): other "
            "processes share the cores, and multi-threaded timings suffer most; rerun on a quiet "
            "machine before believing small differences")


def provenance_lines(record, prefix="# "):
    """The record as ``key: value`` comment lines (the header of a CSV or a text table)."""
    return [f"{prefix}{k}: {v}" for k, v in record.items()]


def versions_text(record):
    """'numpy 2.4.6, numba 0.68.1, ...' from a provenance record (libraries present only)."""
    return ", ".join(f"{lib} {record[lib]}" for lib in LIBRARIES
                     if record.get(lib, "-") != "-")


def write_csv(frame, path):
    """Write a DataFrame to ``path`` (parent folders created, atomic replace); returns the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def finish_table(frame, record, path):
    """The end of a measuring command: print :func:`busy_note` if any, add the ``versions``
    column from ``record`` (after the rows' own provenance columns), write the CSV to ``path``
    and say where; returns the path."""
    note = busy_note()
    if note:
        print(note)
    frame.insert(len(frame.columns), "versions", record["versions"])
    path = write_csv(frame, path)
    print(f"wrote {path}")
    return path


def header(record_or_frame):
    """One line: machine, commit, threads, versions (from a provenance record or a frame)."""
    r = record_or_frame
    if hasattr(r, "iloc"):
        r = r.iloc[0]
    return (f"machine {r['machine']}, commit {str(r['commit'])[:12]}, {r['threads']} threads, "
            f"{r['versions']}")
