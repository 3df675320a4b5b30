"""The roofline: the least time a step can take on this machine, per point, from measured ceilings.

A step of point (net, batch) cannot be faster than the larger of

- **compute time**: the FLOPs it must do over the machine's measured GEMM peak for the dtype
  and thread count (the fastest of NumPy's BLAS and, when installed, PyTorch's, on square
  products: the most any library here gets out of the cores), and
- **memory time**: the bytes it must move over the measured bandwidth of the level of the memory
  hierarchy its working set fits in (L1, L2, L3 or DRAM: capacities from the OS, each level's
  bandwidth measured with read and read+write sweeps over buffers that fit in it, on the run's
  threads; the faster of the two kernels is used, so the bound stays a bound).

What a step must do is counted from the point itself (:func:`traffic`), not from the dense
shapes: with relu, an input unit that is zero for every row of the batch needs neither its row
of W read (forward), nor updated (its gradient row is zero), nor its input gradient (relu'(0) =
0). The hand loops of ``numba`` at small batches skip exactly those rows, so at batch 1 about
half of every hidden layer's weights need not move; a dense count would put such a step above
100% of its "floor". Per layer l with input H (B, n_in), n_out outputs, r rows of H's columns
active (non-zero somewhere in the batch), nnz non-zero entries of H, element size s:

- FLOPs: forward ``2 n_out nnz``, weight gradient ``2 n_out nnz``, input gradient
  ``2 n_out nnz'`` (nnz' = entries where the previous activation's derivative is non-zero; the
  first layer needs none);
- bytes: W read in the forward pass and read + written by the fused backward-update,
  ``3 r n_out s``; the bias ``3 n_out s``; X read once; every hidden activation written once and
  read once, ``2 B n s``; deltas and logits are produced and consumed in registers at best
  (not counted: a lower bound counts only what cannot be avoided);
- working set: W, b, X and the activations, which decides the level.

Ceilings are measured once per machine, thread count and library versions and cached on disk
(``roofline.json`` in :func:`bpbench.bench.machine.cache_dir`): measuring takes about a minute;
``bpbench roofline`` prints them (``--refresh`` measures again, on a quiet machine).
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os

import numpy as np

from . import engine, machine
from . import threads as pools

CACHE_FILE = "roofline.json"
#: square GEMM sizes tried for the compute peak (the best rate counts)
GEMM_SIZES = (1024, 2048)
#: the largest sweep buffer, far beyond any last-level cache here: DRAM
DRAM_BYTES = 512 * 2**20
#: sweep timings
SWEEP_SETTINGS = engine.make_settings("floor", min_time=0.05, min_repeats=10, max_time=0.5,
                                      sample_time=2e-3)
GEMM_SETTINGS = engine.make_settings("floor", min_time=0.2, min_repeats=5, max_time=1.0)


# ---------------------------------------------------------------------------- the machine
def cache_levels(threads=None):
    """``[(name, bytes), ...]`` data caches from the OS, capacities usable by ``threads`` threads.

    A private cache (one CPU in ``shared_cpu_list``) counts once per thread; a shared one once.
    Unknown (no sysfs): [] (everything is then measured as DRAM... and the model says so).
    """
    n = pools.resolve(threads)
    levels = {}
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(d, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(d, "level")) as f:
                level = int(f.read())
            with open(os.path.join(d, "size")) as f:
                size = f.read().strip()
            with open(os.path.join(d, "shared_cpu_list")) as f:
                shared = f.read().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
        nbytes = int(size.rstrip("KMG")) * scale
        private = "," not in shared and "-" not in shared
        levels[f"L{level}"] = nbytes * (n if private else 1)
    return sorted(levels.items(), key=lambda kv: kv[1])


@functools.lru_cache(maxsize=1)
def _kernels():
    """The sweep kernels: each of ``parts`` threads sweeps its own slice ``reps`` times.

    The per-slice loops are separate serial functions over a view (Numba vectorises those; a
    reduction written inside the ``prange`` body, or over index bounds, stays scalar and would
    measure the adder, not the memory).
    """
    from numba import njit, prange

    @njit(fastmath=True, cache=True)
    def sum_view(a, reps):
        s = np.float32(0)
        for _ in range(reps):
            for i in range(a.size):
                s += a[i]
        return s

    @njit(fastmath=True, cache=True)
    def update_view(a, reps):
        for _ in range(reps):
            for i in range(a.size):
                a[i] = a[i] * np.float32(0.5) + np.float32(1.0)  # -> 2: no overflow, no denormals
        return a[0]

    @njit(parallel=True, cache=True)
    def read(a, parts, reps):
        chunk = (a.size + parts - 1) // parts
        out = np.zeros(parts, np.float32)
        for p in prange(parts):
            out[p] = sum_view(a[p * chunk:min(a.size, (p + 1) * chunk)], reps)
        return out.sum()

    @njit(parallel=True, cache=True)
    def read_write(a, parts, reps):
        chunk = (a.size + parts - 1) // parts
        for p in prange(parts):
            update_view(a[p * chunk:min(a.size, (p + 1) * chunk)], reps)
        return a[0]

    return read, read_write, sum_view, update_view


def sweep_bandwidth(nbytes, threads=None):
    """(read, read+write) bytes/s of ``threads`` threads sweeping a buffer of ``nbytes``.

    The best sample counts (a ceiling is what the machine can do, not what it usually does).
    With one thread the serial kernels run on the calling thread and are timed in its CPU time
    (:func:`bpbench.bench.engine.thread_cpu_seconds`: time descheduled by other processes does
    not count); with more, the parallel kernels in wall time.
    """
    n = pools.apply(threads)
    read, read_write, sum_view, update_view = _kernels()
    a = np.ones(max(1024, int(nbytes) // 4), dtype=np.float32)
    moved = a.nbytes
    reps = max(1, int(8 * 2**20 // moved))  # >= 8 MB per call: the parallel region's cost vanishes
    if n == 1:
        t_read = engine.thread_cpu_seconds(lambda: sum_view(a, reps))
        t_rw = engine.thread_cpu_seconds(lambda: update_view(a, reps))
    else:
        t_read = engine.time_call(lambda: read(a, n, reps), settings=SWEEP_SETTINGS).best
        t_rw = engine.time_call(lambda: read_write(a, n, reps), settings=SWEEP_SETTINGS).best
    return moved * reps / t_read, 2 * moved * reps / t_rw


def _seconds(fn, n_threads):
    """Best seconds of ``fn()``: thread CPU time on one thread, wall time on more (see above)."""
    if n_threads == 1:
        return engine.thread_cpu_seconds(fn, repeats=5)
    return engine.time_call(fn, settings=GEMM_SETTINGS).best


def gemm_peak(dtype, threads=None):
    """{library: FLOP/s} of square GEMMs of ``dtype`` on ``threads`` threads (best size)."""
    n_threads = pools.apply(threads)
    rates = {}
    rng = np.random.default_rng(0)
    for n in GEMM_SIZES:
        a = rng.standard_normal((n, n)).astype(dtype)
        c = np.empty_like(a)
        t = _seconds(lambda a=a, c=c: np.dot(a, a, out=c), n_threads)
        rates["numpy"] = max(rates.get("numpy", 0.0), 2.0 * n**3 / t)
    try:
        import torch
    except ImportError:
        return rates
    torch.set_num_threads(n_threads)
    for n in GEMM_SIZES:
        a = torch.from_numpy(rng.standard_normal((n, n)).astype(dtype))
        c = torch.empty_like(a)
        t = _seconds(lambda a=a, c=c: torch.mm(a, a, out=c), n_threads)
        rates["torch"] = max(rates.get("torch", 0.0), 2.0 * n**3 / t)
    return rates


def measure_ceilings(threads=None, progress=None):
    """Measure every ceiling now (about a minute); a JSON-ready dict.

    Every rate is measured with the run's ``threads`` threads (wall time) and with one thread
    (the thread's CPU time: time descheduled does not count), and the ceiling is the larger of
    the t-thread rate and t times the one-thread rate. On a shared machine a t-thread
    measurement can only come out low (a thread waits for a busy core, and a parallel region
    waits for its slowest thread); t times what one thread does alone is an upper bound of what
    t threads can do, so the larger of the two is still a ceiling, and the roofline under it
    still a floor (for memory levels shared by the cores, DRAM above all, it may be a loose
    one: each record keeps both figures).

    ``{"machine", "threads", "gemm": {dtype: {"<lib>": FLOP/s, "<lib>/1": one-thread FLOP/s}},
    "peak": {dtype: FLOP/s}, "sweeps": [{"bytes", "read", "read_write", "read/1",
    "read_write/1"}], "levels": [{"level", "capacity", "bandwidth"}]}``. A level's bandwidth is
    the best sweep (read or read+write, ceiling as above) over the buffers that fit in it and not
    in the level before (DRAM: the buffers beyond the last cache).
    """
    n = pools.resolve(threads)
    say = progress or (lambda text: None)
    gemm, peak = {}, {}
    for dt in ("float32", "float64"):
        say(f"GEMM peak {dt}")
        rates = gemm_peak(dt, n)
        ones = gemm_peak(dt, 1) if n > 1 else rates
        gemm[dt] = {**rates, **{f"{lib}/1": r for lib, r in ones.items()}}
        peak[dt] = max(max(rates.values()), n * max(ones.values()))
    caches = cache_levels(n)
    sizes = sorted({2**k for k in range(13, 30, 2) if 2**k <= DRAM_BYTES}
                   | {int(c * f) for _, c in caches for f in (0.25, 0.5)})
    sweeps = []
    for size in sizes:
        say(f"bandwidth {size / 2**10:.0f} KiB")
        r, rw = sweep_bandwidth(size, n)
        r1, rw1 = sweep_bandwidth(size, 1) if n > 1 else (r, rw)
        sweeps.append({"bytes": size, "read": r, "read_write": rw, "read/1": r1,
                       "read_write/1": rw1})
    pools.apply(n)
    levels = []
    lower = 0
    for name, cap in [*caches, ("DRAM", math.inf)]:
        inside = [s for s in sweeps if lower < s["bytes"] <= cap]
        if inside:
            best = max(max(s["read"], s["read_write"], n * s["read/1"], n * s["read_write/1"])
                       for s in inside)
            levels.append({"level": name, "capacity": cap if math.isfinite(cap) else None,
                           "bandwidth": best})
        lower = cap
    return {"machine": machine.name(), "threads": n, "gemm": gemm, "peak": peak,
            "sweeps": sweeps, "levels": levels}


def _cache_path():
    return os.path.join(machine.cache_dir(), CACHE_FILE)


def _key(n):
    from importlib import metadata

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None
    return json.dumps({"machine": machine.name(), "threads": n, "numpy": version("numpy"),
                       "numba": version("numba"), "torch": version("torch")}, sort_keys=True)


_memo = {}


def ceilings(threads=None, refresh=False, progress=None):
    """The ceilings of this machine at ``threads`` threads: from the cache, else measured."""
    n = pools.resolve(threads)
    key = _key(n)
    if not refresh and key in _memo:
        return _memo[key]
    path = _cache_path()
    data = {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if refresh or key not in data:
        new = measure_ceilings(n, progress)
        data[key] = merge(data.get(key), new)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    _memo[key] = data[key]
    return data[key]


def merge(old, new):
    """Ceilings from two measurements of one machine: the larger of each (None: ``new``).

    Every way a measurement goes wrong on a shared machine makes a rate come out low, so the
    best rate ever measured (same machine, threads and library versions: the cache key) is the
    best estimate of the ceiling; measuring again can only raise it.
    """
    if not old:
        return new
    out = json.loads(json.dumps(new))
    for dt in out["peak"]:
        out["peak"][dt] = max(out["peak"][dt], old.get("peak", {}).get(dt, 0.0))
    old_levels = {lv["level"]: lv for lv in old.get("levels", [])}
    for lv in out["levels"]:
        prev = old_levels.get(lv["level"])
        if prev and prev.get("capacity") == lv["capacity"]:
            lv["bandwidth"] = max(lv["bandwidth"], prev["bandwidth"])
    return out


# ---------------------------------------------------------------------------- the step
def traffic(net, params, X):
    """What one SGD step on (params, X) must do: ``{"flops", "bytes", "working_set"}``.

    Counted as the module docstring says, from the activations of the float64 reference's
    forward pass (which units are zero for this batch).
    """
    from .. import reference

    acts = reference.forward(net, [(np.asarray(W, np.float64), np.asarray(b, np.float64))
                                   for W, b in params], np.asarray(X, np.float64))
    s = net.dtype.itemsize
    B = len(X)
    flops = bytes_ = 0
    working = X.size * s
    for layer, (W, _) in enumerate(params):
        n_in, n_out = W.shape
        H = acts[layer]
        nonzero = H != 0
        nnz = int(np.count_nonzero(nonzero))
        rows = int(np.count_nonzero(nonzero.any(axis=0)))
        flops += 4 * n_out * nnz  # forward and weight gradient
        if layer > 0:
            act = net.activations[layer - 1]
            # input gradient: needed where the previous activation's derivative is non-zero
            needed = int(np.count_nonzero(H > 0)) if act == "relu" else H.size
            flops += 2 * n_out * needed
            bytes_ += 2 * B * n_in * s  # this hidden activation: written once, read once
            working += B * n_in * s
        bytes_ += 3 * rows * n_out * s + 3 * n_out * s
        working += (n_in + 1) * n_out * s
    bytes_ += X.size * s
    return {"flops": float(flops), "bytes": float(bytes_), "working_set": float(working)}


def level_for(working_set, ceil):
    """The level (dict of ``ceil["levels"]``) whose capacity holds ``working_set`` bytes."""
    for level in ceil["levels"]:
        if level["capacity"] is None or working_set <= level["capacity"]:
            return level
    return ceil["levels"][-1]


def bound(net, batch, ceil, seed=0):
    """The roofline of point (net, batch) under ceilings ``ceil``: a dict.

    Keys: flops, bytes, working_set, intensity (FLOP/byte), level, compute_s, memory_s,
    roofline_s (the larger), bound ("compute" or "memory"), peak (FLOP/s), bandwidth (B/s).
    The point's params and batch are those every tool times (``net.init(seed)``,
    :func:`bpbench.bench.points.grid_batch`).
    """
    from .points import grid_batch

    X, _ = grid_batch(net, batch, seed)
    t = traffic(net, net.init(seed=seed), X)
    level = level_for(t["working_set"], ceil)
    peak = ceil["peak"][net.dtype.name]
    compute = t["flops"] / peak
    memory = t["bytes"] / level["bandwidth"]
    return {**t, "intensity": t["flops"] / t["bytes"], "level": level["level"],
            "compute_s": compute, "memory_s": memory, "roofline_s": max(compute, memory),
            "bound": "compute" if compute >= memory else "memory", "peak": peak,
            "bandwidth": level["bandwidth"]}


# ---------------------------------------------------------------------------- command line
CSV_COLUMNS = ("kind", "name", "capacity", "value", "machine", "threads", "commit", "versions",
               "command", "timestamp")


def to_frame(ceil, record=None):
    """The ceilings as rows (kind "peak": FLOP/s per dtype; "bandwidth": B/s per level), with
    the provenance ``record`` (:func:`bpbench.bench.engine.provenance`) on every row."""
    import pandas as pd

    record = record or engine.provenance()
    prov = {"machine": ceil["machine"], "threads": ceil["threads"], "commit": record["commit"],
            "versions": engine.versions_text(record), "command": record["command"],
            "timestamp": record["timestamp"]}
    rows = [{"kind": "peak", "name": dt, "capacity": math.nan, "value": v, **prov}
            for dt, v in ceil["peak"].items()]
    rows += [{"kind": "bandwidth", "name": lv["level"],
              "capacity": math.nan if lv["capacity"] is None else lv["capacity"],
              "value": lv["bandwidth"], **prov} for lv in ceil["levels"]]
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def from_frame(frame):
    """Ceilings (the dict :func:`bound` takes) from :func:`to_frame`'s rows."""
    peak = {r.name: float(r.value) for r in frame.itertuples() if r.kind == "peak"}
    levels = [{"level": r.name, "capacity": None if math.isnan(r.capacity) else int(r.capacity),
               "bandwidth": float(r.value)} for r in frame.itertuples() if r.kind == "bandwidth"]
    levels.sort(key=lambda lv: math.inf if lv["capacity"] is None else lv["capacity"])
    first = frame.iloc[0]
    return {"machine": first["machine"], "threads": int(first["threads"]), "peak": peak,
            "levels": levels}


def add_arguments(parser):
    """Options of ``bpbench roofline``."""
    from .argtypes import positive_int

    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads (default: $BPBENCH_THREADS, else every core)")
    parser.add_argument("--refresh", action="store_true",
                        help="measure again (the cache keeps the larger of old and new)")
    parser.add_argument("--out", default=None,
                        help="also write the ceilings to this CSV, with provenance (the "
                             "committed results keep results/<machine>/ceilings.csv)")


def run(args):
    """``bpbench roofline``: print (measuring if needed) this machine's ceilings."""
    ceil = ceilings(args.threads, refresh=args.refresh,
                    progress=lambda text: print(f"  measuring {text}", flush=True))
    print(f"machine {ceil['machine']}, {ceil['threads']} threads")
    for dt, rates in ceil.get("gemm", {}).items():
        libs = ", ".join(f"{lib} {r / 1e9:.1f}" for lib, r in rates.items())
        print(f"  GEMM peak {dt}: {ceil['peak'][dt] / 1e9:.1f} GFLOP/s ({libs})")
    for level in ceil["levels"]:
        cap = "beyond" if level["capacity"] is None else f"<= {level['capacity'] / 2**10:.0f} KiB"
        print(f"  {level['level']:>4} ({cap}): {level['bandwidth'] / 1e9:.1f} GB/s")
    if args.out:
        print(f"wrote {engine.write_csv(to_frame(ceil), args.out)}")
    return 0
