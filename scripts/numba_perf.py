"""Measurements behind docs/numba.md: numba / numba_parallel beside the peers and the BLAS floor.

Run from the repository root (``NUMBA_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` unset: every
contestant gets the machine's cores; ``--threads`` sets the peers' count)::

    python scripts/numba_perf.py grid --depths 1,2,4,8 --batches 1,16,256,2048
    python scripts/numba_perf.py grid --baseline dfc14f7 --depths 1,8 --batches 1,16
    python scripts/numba_perf.py grid --cpu --contestants numba,torch --threads 1
    python scripts/numba_perf.py overhead --depths 1,4,8
    python scripts/numba_perf.py train
    python scripts/numba_perf.py compile --baseline dfc14f7
    python scripts/numba_perf.py micro --widths 256,1024 --batches 2,4,8,16,32,64

Timing: every contestant steps on the same batch from the same parameters; contestants take
turns, one sample (>= 20 ms of back-to-back ``step_prepared`` calls) each per round, so drift
and load hit all of them alike; each figure is the median over the kept samples with the
interquartile spread. Before each sample the process sleeps 0.15 s, so that the thread pools of
the contestant before (OpenBLAS's, OpenMP's) have stopped spinning. On Linux a sample is kept
only if no task waited for a CPU during more than ``--psi`` of it (``/proc/pressure/cpu``): on a
shared machine, a sample during which another process took a core is dropped instead of
averaged in. ``--cpu`` times the calling
thread's CPU time instead of the wall clock: immune to preemption, meaningful only for
contestants that run on the calling thread (numba, ``--threads 1`` peers, floor1).

Contestants: ``numba``, ``numba_parallel``, the peers of :mod:`bpbench.bench.peers` (``torch``),
``floor`` (the step's products as np.dot with NumPy's BLAS threads: :mod:`bpbench.bench.floor`),
``floor1`` (the same on one thread), and with ``--baseline REV`` the numba flavours of git
revision REV (``base_numba``, ``base_numba_parallel``), imported from a temporary copy.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NUMBA_FILES = ("_numba_kernels.py", "_numba_host.py", "_numba_sync.py", "_numba_blas.py",
               "numba_serial.py", "numba_parallel.py")


# ---------------------------------------------------------------------- sampling
def _stall_us():
    """Microseconds some task has waited for a CPU since boot (None where PSI is missing)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


def _calls_per_sample(fn, seconds):
    warm = time.perf_counter() + 0.1  # warm up (compile, caches, allocators) for 0.1 s
    while time.perf_counter() < warm:
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(seconds / one))


def compare(fns, samples=7, seconds=0.02, max_wall=60.0, psi=0.02, clock=time.perf_counter,
            settle=0.15):
    """{name: [seconds per call of each kept sample]}: contestants take turns, one sample each
    per round, until each has ``samples`` kept samples or ``max_wall`` seconds have passed.

    Each sample starts ``settle`` seconds after the previous one ended: idle thread pools spin
    before they sleep (OpenBLAS's for up to 2**28 cycles, about 0.1 s here; OpenMP's for a few
    ms), and a pool still spinning after one contestant would take cores from the next.
    """
    calls = {k: _calls_per_sample(f, seconds) for k, f in fns.items()}
    kept = {k: [] for k in fns}
    deadline = time.perf_counter() + max_wall
    while min(map(len, kept.values())) < samples and time.perf_counter() < deadline:
        for k, f in fns.items():
            if len(kept[k]) >= samples:
                continue
            f()  # warm again after the others ran
            time.sleep(settle)
            s0, t0 = _stall_us(), clock()
            for _ in range(calls[k]):
                f()
            dt, s1 = clock() - t0, _stall_us()
            if s0 is None or (s1 - s0) * 1e-6 <= psi * dt:
                kept[k].append(dt / calls[k])
    return kept


def _median(values):
    if not values:
        return math.nan, math.nan
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    return float(med), float((q75 - q25) / med)


def _header(args):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "impls", "bpbench"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    clock = ("thread CPU time" if args.cpu else
             f"wall, samples kept when CPU stall <= {args.psi:.0%} of them")
    print(f"# commit {commit}{' (modified)' if dirty else ''}; load {load:.1f}; "
          f"{os.cpu_count()} CPUs; clock: {clock}")
    print(f"# {' '.join(sys.argv)}")


# ---------------------------------------------------------------------- contestants
def _baseline_package(rev):
    """The numba flavours of git revision ``rev`` as package ``bpbench_baseline`` (temp dir)."""
    tmp = Path(tempfile.mkdtemp(prefix="bpbench-baseline-"))
    pkg = tmp / "bpbench_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in NUMBA_FILES:
        out = subprocess.run(["git", "show", f"{rev}:impls/{name}"], cwd=ROOT, capture_output=True,
                             text=True)
        if out.returncode == 0:
            (pkg / name).write_text(out.stdout)
    sys.path.insert(0, str(tmp))
    return tmp


def make(name, net, params, threads):
    """An object with prepare/step_prepared (and step) for contestant ``name``."""
    import bpbench

    if name in ("numba", "numba_parallel"):
        return bpbench.get(name)(net, params)
    if name in ("base_numba", "base_numba_parallel"):
        from bpbench_baseline import numba_parallel, numba_serial

        cls = (numba_serial.NumbaImplementation if name == "base_numba"
               else numba_parallel.NumbaParallelImplementation)
        return cls(net, params)
    if name in ("floor", "floor1"):
        return _Floor(net, one_thread=name == "floor1")
    from bpbench.bench import peers

    return peers.make(name, net, params, threads=threads)


class _Floor:
    """The step's products as np.dot on contiguous operands (bpbench.bench.floor.gemm_shapes)."""

    def __init__(self, net, one_thread):
        from bpbench.bench.floor import gemm_shapes
        from bpbench.impls._numba_blas import thread_setter

        self.net, self.setter = net, thread_setter() if one_thread else None
        self.shapes = gemm_shapes
        self.ops = []

    def prepare(self, X, y):
        rng = np.random.default_rng(0)
        self.ops = []
        for _, a_shape, b_shape in self.shapes(self.net, X.shape[0]):
            a = rng.standard_normal(a_shape).astype(self.net.dtype)
            b = rng.standard_normal(b_shape).astype(self.net.dtype)
            self.ops.append((a, b, np.empty((a_shape[0], b_shape[1]), self.net.dtype)))

    def step_prepared(self, batch, lr):
        previous = self.setter(1) if self.setter else None
        for a, b, c in self.ops:
            np.dot(a, b, out=c)
        if self.setter:
            self.setter(previous)


def _net(depth, width, dtype):
    import bpbench

    return bpbench.Network((width,) * (depth + 1) + (10,), activation="relu",
                           loss="cross_entropy", dtype=dtype)


def _batch(net, B):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((B, net.sizes[0])).astype(net.dtype),
            rng.integers(0, net.sizes[-1], B))


# ---------------------------------------------------------------------- commands
def grid(args):
    names = args.contestants.split(",")
    clock = time.thread_time if args.cpu else time.perf_counter
    bests = [n for n in names if n in ("numba", "numba_parallel")]
    peer_names = [n for n in names if n not in bests and not n.startswith(("floor", "base_"))]
    print(f"{'dtype':>7} {'width':>5} {'depth':>5} {'batch':>5} {'kept':>4} "
          + " ".join(f"{n + '_us':>20}" for n in names)
          + "  best/peer  floor_ratio")
    for dtype in args.dtypes.split(","):
        for width in map(int, args.widths.split(",")):
            for depth in map(int, args.depths.split(",")):
                net = _net(depth, width, dtype)
                params = net.init(0)
                for B in map(int, args.batches.split(",")):
                    X, y = _batch(net, B)
                    fns = {}
                    for n in names:
                        model = make(n, net, params, args.threads)
                        batch = model.prepare(X, y)
                        fns[n] = (lambda m=model, b=batch: m.step_prepared(b, 1e-4))
                    kept = compare(fns, samples=args.samples, max_wall=args.max_wall,
                                   psi=math.inf if args.cpu else args.psi, clock=clock)
                    med = {n: _median(v) for n, v in kept.items()}
                    cells = " ".join(f"{med[n][0] * 1e6:>12.1f} ±{med[n][1] * 100:>3.0f}%   "
                                     for n in names)
                    best = min((med[n][0] for n in bests), default=math.nan)
                    peer = min((med[n][0] for n in peer_names), default=math.nan)
                    floor = med.get("floor1" if args.cpu else "floor", (math.nan,))[0]
                    print(f"{dtype:>7} {width:>5} {depth:>5} {B:>5} "
                          f"{min(map(len, kept.values())):>4} {cells} {peer / best:>9.2f} "
                          f"{best / floor:>11.2f}", flush=True)


def overhead(args):
    """Per-call cost of step() beyond the compiled step, at batch 1 (thread CPU time: meaningful
    for ``numba``, whose step runs on the calling thread)."""
    import bpbench

    print(f"{'impl':>15} {'depth':>5} {'kernel_us':>10} {'prepared_us':>12} {'step_us':>9} "
          f"{'overhead_us':>12} {'share':>6}")
    for name in args.contestants.split(","):
        for depth in map(int, args.depths.split(",")):
            net = _net(depth, args.widths_first, args.dtypes.split(",")[0])
            model = bpbench.get(name)(net, net.init(0))
            X, y = _batch(net, 1)
            batch = model.prepare(X, y)
            model.step_prepared(batch, 1e-4)
            data = batch.data
            kernel_args = (model._theta, model._grads, model._ws, model._meta, *data,
                           model._in_place, model._out, 1e-4, 1, 1, model.blas_min,
                           model.threads or 0)
            kernel = model._kernel
            fns = {"kernel": lambda k=kernel, a=kernel_args: k(*a),
                   "prepared": lambda m=model, b=batch: m.step_prepared(b, 1e-4),
                   "step": lambda m=model, X=X, y=y: m.step(X, y, 1e-4)}
            kept = compare(fns, samples=args.samples, max_wall=args.max_wall, psi=math.inf,
                           clock=time.thread_time)
            k, p, s = (_median(kept[n])[0] * 1e6 for n in ("kernel", "prepared", "step"))
            print(f"{name:>15} {depth:>5} {k:>10.2f} {p:>12.2f} {s:>9.2f} {s - k:>12.2f} "
                  f"{(s - k) / s:>6.1%}", flush=True)


def train(args):
    """Two spirals to loss 0.1 (benchmarks/common.py's time-to-target problem): bpbench.train
    (epoch fast path) against each peer's own loop on the same data, init and batches."""
    sys.path.insert(0, str(ROOT))
    import bpbench
    from benchmarks import common

    net, X, y = common.target_problem(2)
    clock = time.thread_time if args.cpu else time.perf_counter

    def ours(name):
        def run():
            model = make(name, net, net.init(0), args.threads)
            run.history = bpbench.train(model, X, y, lr=common.TARGET_LR,
                                        epochs=common.TARGET_MAX_EPOCHS, batch_size=32, seed=0,
                                        target_loss=common.TARGET_LOSS)
        return run

    def theirs(name):
        def run():
            peer = make(name, net, net.init(0), args.threads)
            run.history = peer.train_epochs(X, y, common.TARGET_LR, common.TARGET_MAX_EPOCHS, 32,
                                            seed=0, target_loss=common.TARGET_LOSS)
        return run

    fns = {n: (ours(n) if n in ("numba", "numba_parallel") or n.startswith("base_")
               else theirs(n)) for n in args.contestants.split(",") if not n.startswith("floor")}
    for fn in fns.values():
        fn()
    kept = compare(fns, samples=args.samples, seconds=0.2, max_wall=args.max_wall,
                   psi=math.inf if args.cpu else args.psi, clock=clock)
    for n, fn in fns.items():
        med, spread = _median(kept[n])
        print(f"{n:>20}: {med * 1e3:9.2f} ms ±{spread * 100:.0f}% ({len(kept[n])} samples), "
              f"{len(fn.history)} epochs, final loss {fn.history[-1]:.4f}")


def compile_cost(args):
    """Cold (empty cache) and warm first step of each flavour in fresh processes: the
    process's CPU seconds (unlike wall time, not inflated by other processes)."""
    names = args.contestants.split(",")
    code = ("import sys, time, numpy as np, bpbench\n"
            "sys.path[:0] = sys.argv[2:]\n"
            "name = sys.argv[1]\n"
            "if name.startswith('base_'):\n"
            "    from bpbench_baseline import numba_serial, numba_parallel\n"
            "    cls = (numba_serial.NumbaImplementation if name == 'base_numba'\n"
            "           else numba_parallel.NumbaParallelImplementation)\n"
            "else:\n"
            "    cls = bpbench.get(name)\n"
            "net = bpbench.Network((256, 256, 10), dtype='float32')\n"
            "t0 = time.process_time()\n"
            "cls(net, net.init(0)).step(np.ones((1, 256), 'float32'), np.zeros(1, int), 0.1)\n"
            "print(time.process_time() - t0)\n")
    extra = [str(Path(sys.path[0]))] if args.baseline else []
    print(f"{'impl':>20} {'cold_cpu_s':>10} {'warm_cpu_s':>10}")
    for name in names:
        for _ in range(args.samples):
            with tempfile.TemporaryDirectory(prefix="bpbench-numba-cache-") as cache:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                cost = [float(subprocess.run([sys.executable, "-c", code, name, *extra], env=env,
                                             capture_output=True, text=True, check=True,
                                             cwd=ROOT).stdout.split()[-1]) for _ in range(2)]
            print(f"{name:>20} {cost[0]:>10.2f} {cost[1]:>10.2f}", flush=True)


def micro(args):
    """The small facts the kernels' design rests on (docs/numba.md): the cost of a prange region,
    of asking Numba's thread count from Python, and OpenBLAS's speed on one thread by shape."""
    import numba
    from numba import njit, prange

    from bpbench.impls._numba_blas import gemm, thread_setter

    @njit(parallel=True)
    def regions(a, k):
        for _ in range(k):
            for t in prange(a.shape[0]):
                a[t] += 1.0

    a = np.zeros(numba.get_num_threads())
    regions(a, 1)
    kept = compare({"1 region": lambda: regions(a, 1), "21 regions": lambda: regions(a, 21),
                    "numba.get_num_threads()": numba.get_num_threads},
                   samples=args.samples, max_wall=args.max_wall, psi=args.psi)
    one, many, ask = (_median(kept[k])[0] * 1e6 for k in kept)
    print(f"prange region: {(many - one) / 20:.2f} us each ({numba.get_num_threads()} threads); "
          f"numba.get_num_threads() from Python: {ask:.2f} us")

    no, yes = np.bool_(False), np.bool_(True)

    @njit
    def tiles(kind, A, Bm, C, B, n, width):
        for p0 in range(0, n, width):
            w = min(n, p0 + width) - p0
            if kind == 0:  # forward: Z[:, cols] = H W[:, cols]
                gemm(no, no, B, w, n, 1.0, A, 0, n, Bm, p0, n, 0.0, C, p0, n)
            elif kind == 1:  # input gradient: dH[:, rows] = dZ W[rows]^T
                gemm(no, yes, B, w, n, 1.0, A, 0, n, Bm, p0 * n, n, 0.0, C, p0, n)
            else:  # update: W[rows] += -lr H[:, rows]^T dZ
                gemm(yes, no, w, n, B, -1e-9, A, p0, n, Bm, 0, n, 1.0, C, p0 * n, n)

    previous = thread_setter()(1)
    try:
        for dtype in args.dtypes.split(","):
            for n in map(int, args.widths.split(",")):
                print(f"OpenBLAS on one thread, {dtype}, width {n}: GMAC/s whole product / "
                      "tiled as the kernels tile it")
                print(f"{'batch':>5} {'forward':>15} {'input_grad':>15} {'update':>15}")
                W = np.random.default_rng(0).standard_normal(n * n).astype(dtype)
                for B in map(int, args.batches.split(",")):
                    H = np.random.default_rng(1).standard_normal(B * n).astype(dtype)
                    out = np.empty(B * n, dtype)
                    unit = 256 // W.itemsize
                    rows = min(64, 1200 // B, 1_000_000 // (B * n))
                    widths = {0: unit if B * n * unit <= 1_000_000 else 2 * unit,
                              1: rows if rows >= 16 else 128, 2: rows if rows >= 16 else 128}
                    cells = []
                    for kind, C in ((0, out), (1, out), (2, W)):
                        second = W if kind < 2 else H  # the update's dZ: any (B, n) array
                        fns = {w: (lambda k=kind, A=H, M=second, C=C, B=B, n=n, w=w:
                                   tiles(k, A, M, C, B, n, w))
                               for w in (n, widths[kind])}
                        kept = compare(fns, samples=3, max_wall=args.max_wall, psi=math.inf,
                                       clock=time.thread_time)
                        cells.append("/".join(f"{B * n * n / _median(kept[w])[0] / 1e9:5.1f}"
                                              for w in fns))
                    print(f"{B:>5} " + " ".join(f"{c:>15}" for c in cells), flush=True)
    finally:
        thread_setter()(previous)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["grid", "overhead", "train", "compile", "micro"])
    parser.add_argument("--contestants", default=None)
    parser.add_argument("--depths", default="1,2,4,8")
    parser.add_argument("--batches", default="1,16,256,2048")
    parser.add_argument("--widths", default="256")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="the peers' CPU threads (bpbench's: NUMBA_NUM_THREADS, default all)")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--max-wall", type=float, default=60.0, help="seconds per point at most")
    parser.add_argument("--psi", type=float, default=0.02,
                        help="drop a sample when tasks waited for a CPU during more than this "
                             "fraction of it")
    parser.add_argument("--cpu", action="store_true", help="thread CPU time instead of wall")
    parser.add_argument("--baseline", default=None, help="git revision to time alongside")
    args = parser.parse_args(argv)
    if args.baseline:
        _baseline_package(args.baseline)
    if args.contestants is None:
        base = ["base_numba", "base_numba_parallel"] if args.baseline else []
        args.contestants = ",".join(
            {"grid": ["floor", "torch", "numba", "numba_parallel"] + base,
             "overhead": ["numba"],
             "train": ["torch", "numba", "numba_parallel"] + base,
             "compile": ["numba", "numba_parallel"] + base,
             "micro": []}[args.command])
    args.widths_first = int(args.widths.split(",")[0])
    args.cpu = args.cpu or args.command in ("overhead", "compile")
    _header(args)
    {"grid": grid, "overhead": overhead, "train": train, "compile": compile_cost,
     "micro": micro}[args.command](args)


if __name__ == "__main__":
    main()
