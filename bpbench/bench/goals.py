"""One SGD step of ``numba`` / ``numba_parallel`` beside PyTorch CPU eager and the BLAS floor.

Run from the repository root::

    PYTHONPATH=. python benchmarks/step_vs_torch.py            # the grid table
    PYTHONPATH=. python benchmarks/step_vs_torch.py --crossover  # hand loops vs BLAS by batch
    PYTHONPATH=. python benchmarks/step_vs_torch.py --compile    # first-step (compile) costs

Grid: float32, softmax cross-entropy, sizes (256,) + (256,) * depth + (10,). Every contestant
gets the same params and batch; steps are timed with :func:`bpbench.bench.timing.time_step`
(warm-up, so compilation is excluded; validation outside the clock). PyTorch:
``TorchPeer(threads=2)``. Floor: :func:`bpbench.bench.floor.blas_floor` (the step's own products as
np.dot, measured in the same run, NumPy's BLAS with its default threads); physical limit:
:func:`bpbench.bench.floor.physical_limit`. Compare the ratios of one run, not absolute times across
runs. On a busy machine multi-threaded timings (PyTorch, BLAS, numba_parallel) are ruined by
descheduled worker threads; for a one-thread comparison run::

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONPATH=. python benchmarks/step_vs_torch.py \
        --torch-threads 1

This file is a script, not an asv benchmark: nothing at module level is named ``time_*`` and
importing it runs nothing.
"""

from __future__ import annotations

import argparse

import numpy as np

GOALS = "goals: best >= 10x torch at B=1, >= 5x at B=16, never slower; B >= 256: <= 1.1x floor"


def _net(depth, dtype="float32", width=256, classes=10):
    from bpbench import Network
    return Network((width,) + (width,) * depth + (classes,), activation="relu",
                   loss="cross_entropy", dtype=dtype)


def _batch(net, B, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, net.sizes[0])).astype(net.dtype),
            rng.integers(0, net.sizes[-1], B))


def _verdict(B, speedup, floor_ratio):
    need = 10.0 if B == 1 else 5.0 if B == 16 else 1.0
    misses = []
    if speedup < need:
        misses.append(f"torch x{speedup:.1f}<{need:g}")
    if floor_ratio is not None and B >= 256 and floor_ratio > 1.1:
        misses.append(f"floor x{floor_ratio:.2f}>1.1")
    return "ok" if not misses else "MISS " + ", ".join(misses)


def grid(depths, batches, min_time, torch_threads=2):
    import bpbench
    from bpbench.bench.floor import blas_floor, physical_limit
    from bpbench.bench.peers.torch_eager import TorchPeer
    from bpbench.bench.peers.torch_eager import unavailable as torch_unavailable
    from bpbench.bench.timing import time_step

    names = ["numba", "numba_parallel"]
    reason = torch_unavailable()
    print(GOALS)
    header = (f"{'depth':>5} {'batch':>5} {'torch_us':>9} {'numba_us':>9} {'par_us':>9} "
              f"{'x_torch':>7} {'floor_us':>9} {'x_floor':>7} {'phys_us':>8} {'x_phys':>6}"
              "  verdict")
    print(header)
    for depth in depths:
        net = _net(depth)
        params = net.init(0)
        for B in batches:
            X, y = _batch(net, B)
            t = {n: time_step(bpbench.get(n)(net, params), X, y, min_time=min_time).median
                 for n in names}
            t_torch = float("nan")
            if reason is None:
                peer = TorchPeer(net, params, threads=torch_threads)
                t_torch = time_step(peer, X, y, min_time=min_time).median
            best = min(t.values())
            floor = blas_floor(net, B, min_time=min_time)
            phys = physical_limit(net, B)
            speedup = t_torch / best
            print(f"{depth:>5} {B:>5} {t_torch * 1e6:>9.1f} {t['numba'] * 1e6:>9.1f} "
                  f"{t['numba_parallel'] * 1e6:>9.1f} {speedup:>7.1f} {floor * 1e6:>9.1f} "
                  f"{best / floor:>7.2f} {phys * 1e6:>8.1f} {best / phys:>6.2f}  "
                  f"{_verdict(B, speedup, best / floor)}", flush=True)
    if reason:
        print(f"(torch column empty: {reason})")


def crossover(batches, depth, min_time):
    """Step time with every product as hand loops vs as BLAS, per batch size."""
    import bpbench
    from bpbench.bench.timing import time_step

    net = _net(depth)
    params = net.init(0)
    print(f"depth {depth}: step us, hand loops vs BLAS (blas_min forced)")
    print(f"{'batch':>5} {'impl':>15} {'hand_us':>9} {'blas_us':>9} {'hand/blas':>9}")
    for B in batches:
        X, y = _batch(net, B)
        for name in ("numba", "numba_parallel"):
            res = {}
            for path, blas_min in (("hand", 1 << 30), ("blas", 1)):
                model = bpbench.get(name)(net, params)
                model.blas_min = blas_min
                res[path] = time_step(model, X, y, min_time=min_time).median
            print(f"{B:>5} {name:>15} {res['hand'] * 1e6:>9.1f} {res['blas'] * 1e6:>9.1f} "
                  f"{res['hand'] / res['blas']:>9.2f}", flush=True)


def compile_costs(depth, batch_size):
    from bpbench.bench.compile_cost import first_step_report

    net = _net(depth)
    print(f"first step of a fresh process, sizes {net.sizes}, batch {batch_size}, float32")
    print(f"{'impl':>15} {'cache':>5} {'import_s':>8} {'first_step_s':>12} {'later_step_s':>12}")
    for name in ("numba", "numba_parallel"):
        for warm in (False, True):
            r = first_step_report(name, net, batch_size, warm=warm)
            print(f"{name:>15} {'warm' if warm else 'cold':>5} {r['import_seconds']:>8.2f} "
                  f"{r['first_step_seconds']:>12.2f} {r['step_seconds']:>12.4f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1,2,4,8")
    parser.add_argument("--batches", default="1,16,256,1024,2048")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds timed per point")
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=2,
                        help="PyTorch intra-op threads (BLAS and Numba threads: environment "
                             "variables OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS)")
    args = parser.parse_args(argv)
    depths = [int(v) for v in args.depths.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    if args.crossover:
        crossover(batches if args.batches != parser.get_default("batches")
                  else [1, 2, 4, 8, 16, 32, 64], depths[0], args.min_time)
    elif args.compile:
        compile_costs(depths[0], batches[0])
    else:
        grid(depths, batches, args.min_time, args.torch_threads)


if __name__ == "__main__":
    main()
