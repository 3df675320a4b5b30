"""The GPU check: validate ``cuda`` on the device, then time one SGD step side by side.

    bpbench gpu-check [--csv results/local/gpu_check.csv]   # on a CUDA GPU
    bpbench gpu-check --smoke                              # on the simulator, tiny grid

1. **Validation** (before anything is timed): ``cuda``'s loss and gradients against the float64
   reference (:mod:`bpbench.agreement`; bounds 1e-10 float64, 1e-4 float32) on cases with widths
   that cross the kernels' tiles, both losses, every activation, both dtypes; SGD trajectories;
   an epoch through :func:`bpbench.train` against ``numpy``; logits of 1e4; and that every kernel
   was compiled only for argument types in the kernels' signature table (what the PTX test
   compiles). Every other contestant gets one gradient check before its rows are timed.
2. **Timing**: one float32 SGD step of every contestant (:func:`bpbench.bench.points.contestants`:
   the implementations, then the peers, which run on CUDA here: PyTorch eager with TF32 off...)
   for widths 256 and 1024, depths 2 and 8, batches 1, 64 and 4096 (relu, cross-entropy, 10
   classes), each measured by the one engine (:func:`bpbench.bench.engine.measure`: the point
   checked against the reference, warmed up, ``step_prepared`` on a batch already on the device,
   ``synchronize`` before the clock stops, median with a confidence interval). CPU contestants
   skip the cells whose step would take too long (:data:`CPU_FLOP_CAP`), saying so.
3. **Output**: the card's name, a table (median step time, GFLOP/s of the step's products,
   cuda's speed relative to torch) and a CSV (``--csv``).

Needs only numpy and numba-cuda (plus torch for its rows, bpbench's numba implementations for
theirs): missing contestants are skipped with the reason, never a crash. Exit status 0 when
every validation passed, 1 otherwise. Designed to finish within 5 minutes on an H100-class GPU
(a time budget skips remaining cells, saying so, if not).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from pathlib import Path

import numpy as np

#: the timing grid of the real run
WIDTHS, DEPTHS, BATCHES = (256, 1024), (2, 8), (1, 64, 4096)
#: output classes of the timed networks
CLASSES = 10
#: most FLOP per step a CPU contestant is timed at (above: skipped; one step would take seconds)
CPU_FLOP_CAP = 2e10
#: the GPU contestants: the cuda implementation and every peer (run with device="cuda")
GPU_IMPLS = ("cuda",)
#: seconds after which the remaining cells are skipped (the whole check must fit in 5 minutes)
TIME_BUDGET = 240.0
#: engine settings: real run, and the smoke run on the simulator (a few samples are enough)
TIMING = "compare"
SMOKE_TIMING = "smoke"

FIELDS = ["impl", "width", "depth", "batch", "dtype", "median_s", "q25_s", "q75_s", "ci_low_s",
          "ci_high_s", "repeats", "gflops", "vs_torch", "note", "machine", "commit", "threads",
          "command"]


# ---------------------------------------------------------------- setup

def _device_name(cuda):
    """The card's name and compute capability, or the simulator's."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return "Numba CUDA simulator (no GPU)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"


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


def contestants():
    """Every contestant (the one list, :func:`bpbench.bench.points.contestants`)."""
    from bpbench.bench import points

    return points.contestants()


def _device(name):
    """Where ``name`` runs in this check: peers on CUDA, implementations where they run."""
    from bpbench.bench import peers

    return "cuda" if name in peers.PEERS else "cpu"


def _contestant_problem(name, smoke):
    """None when ``name`` can be timed here, else why not (a sentence)."""
    from bpbench.bench import points

    if name == "cuda":
        return None  # validated above (the simulator too: its smoke run exercises the path)
    if smoke and name != "numpy":
        return "not in --smoke (its setup would be most of the smoke run)"
    return points.unavailable(name, device=_device(name))


# ---------------------------------------------------------------- 2. timing

def launch_cost(cuda, timing):
    """Seconds per launch of a trivial kernel, launched back to back and synchronised at the end.

    What each of the ``3 * (depth + 1)`` launches of a cuda step costs at least; at small
    batches the step time is about that many of these (the GPU work itself is shorter).
    """
    from bpbench.bench import engine
    from bpbench.impls import _cuda_kernels as K

    index = cuda.to_device(np.zeros(1, np.int64))
    out = cuda.device_array(1, np.int64)
    launch = K.gather_labels[1, 32]
    return engine.time_call(lambda: launch(index, index, out), sync=cuda.synchronize,
                            settings=timing)


def _too_slow(name, net, batch):
    from bpbench.bench import points

    reason = points.too_slow(name, net, batch)
    if reason or name in GPU_IMPLS or _device(name) == "cuda":
        return reason
    flops = net.step_flops(batch)
    if flops > CPU_FLOP_CAP:
        return (f"{flops:.1e} FLOP per step is over the CPU contestants' cap of "
                f"{CPU_FLOP_CAP:.0e}")
    return None


def time_grid(widths, depths, batches, problems, timing, over_budget):
    """Rows (dicts of FIELDS) for every contestant and cell, skipped ones with their reason.

    ``over_budget()``: True once the remaining cells are to be skipped.
    """
    from bpbench.bench import engine, points

    record = engine.provenance()
    names = list(problems)
    rows = []
    for width in widths:
        for depth in depths:
            net = points.grid_net(depth, width)
            for batch in batches:
                cell = []
                for name in names:
                    row = dict.fromkeys(FIELDS, "")
                    row.update(impl=name, width=width, depth=depth, batch=batch,
                               dtype=net.dtype.name,
                               **{k: record[k] for k in ("machine", "commit", "threads",
                                                         "command")})
                    slow = _too_slow(name, net, batch)
                    if problems[name]:
                        row["note"] = f"skipped: {problems[name]}"
                    elif slow:
                        row["note"] = f"skipped: {slow}"
                    elif over_budget():
                        row["note"] = "skipped: the check's time budget is spent"
                    else:
                        try:
                            m = engine.measure(name, net, batch, settings=timing,
                                               device=_device(name))
                        except points.DisagreementError as exc:
                            row["note"] = f"not timed: {exc}"
                        else:
                            t = m.timing
                            row.update(median_s=t.median, q25_s=t.q25, q75_s=t.q75,
                                       ci_low_s=t.ci_low, ci_high_s=t.ci_high, repeats=t.n,
                                       gflops=m.gflops)
                    cell.append(row)
                torch_row = next((r for r in cell if r["impl"] == "torch"), None)
                for row in cell:
                    if (torch_row is not None and row["median_s"] != ""
                            and torch_row["median_s"] != ""):
                        # > 1: faster than PyTorch (torch's median over this one's)
                        row["vs_torch"] = torch_row["median_s"] / row["median_s"]
                rows += cell
                _print_cell(cell)
    return rows


def _print_cell(cell):
    for row in cell:
        if row["median_s"] == "":
            print(f"  {row['impl']:14s} w{row['width']:<5d} d{row['depth']:<2d} "
                  f"B{row['batch']:<5d} {row['note']}")
        else:
            vs = f"{row['vs_torch']:6.2f}x torch" if row["vs_torch"] != "" else ""
            print(f"  {row['impl']:14s} w{row['width']:<5d} d{row['depth']:<2d} "
                  f"B{row['batch']:<5d} {row['median_s'] * 1e6:12.1f} us  "
                  f"(95% CI {row['ci_low_s'] * 1e6:.1f}-{row['ci_high_s'] * 1e6:.1f})  "
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
    from bpbench.bench.engine import stopwatch

    clock = stopwatch()

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
          f"({clock():.0f} s so far)")

    problems = {name: _contestant_problem(name, args.smoke) for name in contestants()}
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
    rows = time_grid(*grid, problems, timing, over_budget=lambda: clock() > TIME_BUDGET)

    goals = _goals(rows)
    if goals:
        print("\n3. performance goals (this run)")
        print("\n".join(goals))
    _write_csv(rows, args.csv)
    print(f"\nwrote {args.csv}; total {clock():.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
