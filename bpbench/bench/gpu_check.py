"""The GPU check: validate ``cuda`` on the device, then time one SGD step side by side.

    bpbench gpu-check [--csv results/local/gpu_check.csv]   # on a CUDA GPU
    bpbench gpu-check --smoke                              # on the simulator, tiny grid

1. **Validation** (before anything is timed): ``cuda``'s loss and gradients against the float64
   reference (:mod:`bpbench.agreement`; bounds 1e-10 float64, 1e-4 float32) on cases with widths
   that cross the kernels' tiles, both losses, every activation, both dtypes; SGD trajectories;
   an epoch through :func:`bpbench.train` against ``numpy``; logits of 1e4; and that every kernel
   was compiled only for argument types in the kernels' signature table (what the PTX test
   compiles). Every other contestant gets one gradient check before its rows are timed.
2. **Timing**: one float32 SGD step (``step_prepared``: batch already on the device, so no
   transfers; warm-up first, so no compilation; ``synchronize`` before the clock stops) of
   ``cuda``, ``numba``, ``numpy`` and PyTorch eager on CUDA (TF32 off) for widths 256 and 1024,
   depths 2 and 8, batches 1, 64 and 4096 (relu, cross-entropy, 10 classes). CPU contestants skip
   the cells whose step would take too long (the FLOP caps below), saying so.
3. **Output**: the card's name, a table (median step time, GFLOP/s of the step's products,
   cuda's speed relative to torch) and a CSV (``--csv``).

Needs only numpy and numba-cuda (plus torch for its rows, bpbench's numba implementation for
its rows): missing contestants are skipped with the reason, never a crash. Exit status 0 when
every validation passed, 1 otherwise. Designed to finish within 5 minutes on an H100-class GPU
(a time budget skips remaining cells, saying so, if not).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

#: the timing grid of the real run
WIDTHS, DEPTHS, BATCHES = (256, 1024), (2, 8), (1, 64, 4096)
#: output classes of the timed networks
CLASSES = 10
#: contestants, in table order ("torch" is the PyTorch CUDA peer)
CONTESTANTS = ("cuda", "numba", "numpy", "torch")
#: most FLOP per step a CPU contestant is timed at (above: skipped; one step would take seconds)
CPU_FLOP_CAPS = {"numba": 2e10, "numpy": 1e11}
#: seconds after which the remaining cells are skipped (the whole check must fit in 5 minutes)
TIME_BUDGET = 240.0
#: time_call settings: real run, and the smoke run on the simulator (one sample is enough)
TIMING = {"warmup": 2, "min_time": 0.1, "min_repeats": 5, "max_time": 1.5}
SMOKE_TIMING = {"warmup": 1, "min_time": 0.0, "min_repeats": 1, "max_time": 0.0}

FIELDS = ["impl", "width", "depth", "batch", "dtype", "median_s", "q25_s", "q75_s", "repeats",
          "gflops", "vs_torch", "note"]


# ---------------------------------------------------------------- setup

def _device_name(cuda):
    """The card's name and compute capability, or the simulator's."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return "Numba CUDA simulator (no GPU)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"


def _net(width, depth, dtype="float32"):
    import bpbench

    return bpbench.Network((width,) * (depth + 1) + (CLASSES,), activation="relu",
                           loss="cross_entropy", dtype=dtype)


def _batch(net, batch, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, net.sizes[0])).astype(net.dtype)
    return X, rng.integers(0, net.sizes[-1], batch)


# ---------------------------------------------------------------- 1. validation

def _validation_cases(smoke):
    """(sizes, activation(s), loss, batch) cases for cuda on the device."""
    if smoke:
        return [((3, 5, 2), "tanh", "cross_entropy", 3)]
    return [
        ((33, 65, 17, 3), ("relu", "tanh"), "cross_entropy", 70),
        ((20, 130, 1, 5), ("sigmoid", "tanh"), "mse", 129),
        ((1, 64, 64, 1), ("tanh", "sigmoid"), "mse", 64),
        ((784, 256, 256, 10), "relu", "cross_entropy", 256),
        ((100, 300, 200, 100, 10), ("relu", "sigmoid", "tanh"), "cross_entropy", 1000),
    ]


def _report_rows(rows, failures):
    """Print one line per case (worst array) and collect the failing rows."""
    by_case = {}
    for row in rows:
        by_case.setdefault((row["check"], row["case"], row["dtype"]), []).append(row)
    for (check, case, dtype), group in by_case.items():
        worst = max(group, key=lambda r: (not r["ok"], r["rel_error"] / r["bound"]))
        bad = [r for r in group if not r["ok"]]
        failures.extend(bad)
        status = "ok  " if not bad else "FAIL"
        print(f"  {status} {check:15s} {dtype:8s} {case:50s} worst {worst['array']:6s} "
              f"rel {worst['rel_error']:.1e} (bound {worst['bound']:.0e})")


def _check_epoch(dtype, failures):
    """One epoch through bpbench.train (cuda's device-side epoch path) against numpy's."""
    import bpbench
    from bpbench.agreement import TOLERANCES, make_case, relative_error

    _, net, params, X, y = make_case((12, 40, 3), "tanh", "cross_entropy", 50, dtype, seed=11)
    models = [bpbench.get(name)(net, params) for name in ("cuda", "numpy")]
    hist = [bpbench.train(m, X, y, lr=0.1, epochs=1, batch_size=16, seed=2) for m in models]
    steps = 4  # 50 rows in batches of 16
    bound = TOLERANCES[dtype] * steps
    pairs = zip(models[0].params(), models[1].params(), strict=True)
    errs = [relative_error(a, b) for pa, pb in pairs
            for a, b in zip(pa, pb, strict=True)]
    errs.append(relative_error(hist[0], hist[1]))
    ok = max(errs) <= bound
    if not ok:
        failures.append({"check": "epoch", "dtype": dtype, "rel_error": max(errs)})
    print(f"  {'ok  ' if ok else 'FAIL'} {'epoch vs numpy':15s} {dtype:8s} "
          f"{'(12, 40, 3) tanh CE, 50 rows, batches of 16':50s} worst rel {max(errs):.1e} "
          f"(bound {bound:.0e})")


def _stable_case(dtype):
    """A case whose logits reach 1e4: a finite, correct loss needs log-sum-exp."""
    import bpbench

    net = bpbench.Network((2, 3), loss="cross_entropy", dtype=dtype)
    W = np.array([[1e4, -1e4, 0.0], [0.0, 5e3, -5e3]], dtype=dtype)
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)
    return net, [(W, np.zeros(3, dtype))], X, np.array([1, 0, 2])


def _check_signatures(failures):
    """Every signature cuda's kernels were compiled for is one the PTX test compiles."""
    from bpbench.impls import _cuda_kernels as K

    allowed = {name: {K.signatures(dt)[name] for dt in ("float32", "float64")}
               for name in K.KERNELS}
    drift = [(name, sig) for name, kernel in K.KERNELS.items()
             for sig in kernel.overloads if tuple(sig) not in allowed[name]]
    for name, sig in drift:
        failures.append({"check": "signature", "case": name, "rel_error": np.inf})
        print(f"  FAIL signature   {name} was launched with {sig}, not in the signature table")
    if not drift:
        n = sum(len(k.overloads) for k in K.KERNELS.values())
        print(f"  ok   signatures      all {n} compiled kernel signatures are in the table")


def validate_cuda(smoke):
    """Run every check of cuda on this device; returns the failing rows (empty: all passed)."""
    from bpbench.agreement import compare_gradients, compare_trajectories, default_cases, make_case

    failures = []
    dtypes = ("float64",) if smoke else ("float32", "float64")
    for dtype in dtypes:
        cases = [make_case(*case, dtype, seed) for seed, case in
                 enumerate(_validation_cases(smoke))]
        if not smoke:
            cases += default_cases(dtype)
        rows = []
        for label, net, params, X, y in cases:
            rows += compare_gradients("cuda", net, params, X, y, case=label)
            rows += compare_trajectories("cuda", net, params, X, y, steps=1 if smoke else 3,
                                         batch_size=max(1, len(X) // 2), case=label)
        net, params, X, y = _stable_case(dtype)
        rows += compare_gradients("cuda", net, params, X, y, case="logits 1e4")
        _report_rows(rows, failures)
        if not smoke:
            _check_epoch(dtype, failures)
    from numba import config
    if not config.ENABLE_CUDASIM:  # the simulator keeps no compiled signatures
        _check_signatures(failures)
    return failures


def _contestant_problem(name, smoke):
    """None when ``name`` can be timed here, else why not (a sentence)."""
    import bpbench
    from bpbench.agreement import compare_gradients, make_case
    from bpbench.bench.peers.torch_eager import unavailable as torch_unavailable

    if name == "torch":
        return torch_unavailable("cuda")
    if smoke and name == "numba":
        return "not in --smoke (its JIT compilation would be most of the smoke run)"
    try:
        bpbench.get(name)
    except (bpbench.UnavailableError, KeyError) as exc:
        return str(exc)
    if name == "cuda" or smoke:
        return None  # cuda was validated above; the smoke run keeps the simulator time short
    # a quick cross-check before any of its numbers are trusted
    _, net, params, X, y = make_case((9, 17, 3), "relu", "cross_entropy", 5, "float32", seed=1)
    bad = [r for r in compare_gradients(name, net, params, X, y, case="pre-timing") if not r["ok"]]
    return f"failed validation: {bad[0]}" if bad else None


# ---------------------------------------------------------------- 2. timing

def launch_cost(cuda, timing):
    """Seconds per launch of a trivial kernel, launched back to back and synchronised at the end.

    What each of the ``3 * (depth + 1)`` launches of a cuda step costs at least; at small
    batches the step time is about that many of these (the GPU work itself is shorter).
    """
    from bpbench.bench.timing import time_call
    from bpbench.impls import _cuda_kernels as K

    index = cuda.to_device(np.zeros(1, np.int64))
    out = cuda.device_array(1, np.int64)
    launch = K.gather_labels[1, 32]
    return time_call(lambda: launch(index, index, out), sync=cuda.synchronize, **timing)


def _make(name, net, params):
    import bpbench
    from bpbench.bench.peers.torch_eager import TorchPeer

    if name == "torch":
        return TorchPeer(net, params, device="cuda")
    return bpbench.get(name)(net, params)


def time_grid(widths, depths, batches, problems, timing, deadline):
    """Rows (dicts of FIELDS) for every contestant and cell, skipped ones with their reason."""
    from bpbench.bench.timing import time_step

    rows = []
    for width in widths:
        for depth in depths:
            net = _net(width, depth)
            params = net.init(seed=0)
            for batch in batches:
                X, y = _batch(net, batch)
                flops = net.step_flops(batch)
                cell = []
                for name in CONTESTANTS:
                    row = {"impl": name, "width": width, "depth": depth, "batch": batch,
                           "dtype": net.dtype.name, "median_s": "", "q25_s": "", "q75_s": "",
                           "repeats": "", "gflops": "", "vs_torch": "", "note": ""}
                    cap = CPU_FLOP_CAPS.get(name)
                    if problems[name]:
                        row["note"] = f"skipped: {problems[name]}"
                    elif cap is not None and flops > cap:
                        row["note"] = (f"skipped: {flops:.1e} FLOP per step is over this CPU "
                                       f"contestant's cap of {cap:.0e}")
                    elif time.perf_counter() > deadline:
                        row["note"] = "skipped: the check's time budget is spent"
                    else:
                        model = _make(name, net, params)
                        t = time_step(model, X, y, **timing)
                        row.update(median_s=t.median, q25_s=t.q25, q75_s=t.q75, repeats=t.n,
                                   gflops=flops / t.median / 1e9)
                        del model
                    cell.append(row)
                torch_row = cell[CONTESTANTS.index("torch")]
                for row in cell:
                    if row["median_s"] != "" and torch_row["median_s"] != "":
                        # > 1: faster than PyTorch (torch's median over this one's)
                        row["vs_torch"] = torch_row["median_s"] / row["median_s"]
                rows += cell
                _print_cell(cell)
    return rows


def _print_cell(cell):
    for row in cell:
        if row["median_s"] == "":
            print(f"  {row['impl']:6s} w{row['width']:<5d} d{row['depth']:<2d} "
                  f"B{row['batch']:<5d} {row['note']}")
        else:
            vs = f"{row['vs_torch']:6.2f}x torch" if row["vs_torch"] != "" else ""
            print(f"  {row['impl']:6s} w{row['width']:<5d} d{row['depth']:<2d} "
                  f"B{row['batch']:<5d} {row['median_s'] * 1e6:12.1f} us  "
                  f"(IQR {100 * (row['q75_s'] - row['q25_s']) / row['median_s']:4.0f}%)  "
                  f"{row['gflops']:9.1f} GFLOP/s  {vs}", flush=True)


def _goals(rows):
    """Lines saying whether the issue's performance goals were met in this run."""
    timed = {(r["impl"], r["width"], r["depth"], r["batch"]): r for r in rows
             if r["median_s"] != ""}
    lines = []
    for (impl, width, depth, batch), row in sorted(timed.items()):
        if impl != "cuda" or row["vs_torch"] == "":
            continue
        if batch <= 64:
            ok = row["vs_torch"] > 1
            goal = "faster than torch"
        elif width == 1024 and batch == 4096:
            ok = row["vs_torch"] >= 0.5
            goal = ">= 50% of torch's throughput"
        else:
            continue
        lines.append(f"  {'met    ' if ok else 'NOT met'} w{width} d{depth} B{batch}: {goal} "
                     f"(cuda/torch speed {row['vs_torch']:.2f})")
    return lines


def _write_csv(rows, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------- main

def add_arguments(parser):
    """Options of ``bpbench gpu-check`` (and ``python -m bpbench.bench.gpu_check``)."""
    parser.add_argument("--csv", default=os.path.join("results", "local", "gpu_check.csv"),
                        help="where to write the timings (default: %(default)s, ignored by git)")
    parser.add_argument("--smoke", action="store_true",
                        help="run end to end on Numba's CUDA simulator with a tiny grid (no GPU "
                             "needed; sets NUMBA_ENABLE_CUDASIM=1, so numba must not be "
                             "imported yet)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bpbench.bench.gpu_check",
        description="Validate the cuda implementation on this GPU, then time one SGD step of "
                    "cuda, numba, numpy and PyTorch CUDA side by side.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args):
    """The check; exit status 0, or 1 when validation failed or cuda cannot run here."""
    t_start = time.perf_counter()

    if args.smoke:
        if "numba" in sys.modules and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            raise ValueError("--smoke must switch the simulator on before numba is imported; "
                             "run it in a fresh process (bpbench gpu-check --smoke)")
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

    # numba warns at every small grid (batch 1 needs few blocks): that is the point here
    warnings.filterwarnings("ignore", message="Grid size .* will likely result in GPU "
                                              "under-utilization")
    import bpbench

    try:
        bpbench.get("cuda")
    except bpbench.UnavailableError as exc:
        print(f"cannot run the GPU check: {exc}", file=sys.stderr)
        return 1
    from numba import cuda

    print(f"device: {_device_name(cuda)}")
    try:
        import torch
        print(f"torch {torch.__version__}, CUDA available to torch: {torch.cuda.is_available()}")
    except ImportError:
        print("torch: not installed (its rows are skipped)")

    print("\n1. validation of cuda against the float64 reference")
    failures = validate_cuda(args.smoke)
    print(f"  {'all passed' if not failures else f'{len(failures)} FAILED'} "
          f"({time.perf_counter() - t_start:.0f} s so far)")

    problems = {name: _contestant_problem(name, args.smoke) for name in CONTESTANTS}
    if failures:
        problems["cuda"] = "failed validation on this device (see above); not timed"
    if args.smoke:
        grid, timing = ((5,), (0,), (2,)), SMOKE_TIMING
    else:
        grid, timing = (WIDTHS, DEPTHS, BATCHES), TIMING
    if problems["cuda"] is None:
        t = launch_cost(cuda, timing)
        print(f"\ncuda kernel launch, back to back: {t.median * 1e6:.1f} us each "
              f"(IQR {100 * t.spread:.0f}%); a step launches 3 * (depth + 1) kernels")
    print("\n2. one float32 SGD step (relu, cross-entropy, 10 classes): median time per step, "
          "GFLOP/s of its products, speed relative to torch (>1: faster)")
    rows = time_grid(*grid, problems, timing, deadline=t_start + TIME_BUDGET)

    goals = _goals(rows)
    if goals:
        print("\n3. performance goals (this run)")
        print("\n".join(goals))
    _write_csv(rows, args.csv)
    print(f"\nwrote {args.csv}; total {time.perf_counter() - t_start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
