"""Command line: ``bpbench list | validate | train | compare | goals | overhead | to-target | report
| fastest | gpu-check | roofline | noise | machine | asv``.

The top layer: it imports the contract and the measuring tools (:mod:`bpbench.bench`), and
nothing imports it. Options are typed (:mod:`bpbench.bench.argtypes`), so a bad value is an
argparse usage error naming the option before anything runs.

Every error prints one line (``bpbench: error: ...``) and exits non-zero; set
``BPBENCH_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from .bench.argtypes import (
    finite_float,
    name_list,
    non_negative_int,
    positive_float,
    positive_int,
    positive_int_list,
)

EXIT_DISAGREE = 1
EXIT_ERROR = 2


# ---------------------------------------------------------------------------- list
def cmd_list(args):
    from .bench import peers
    from .bench import threads as pools
    from .registry import implementations

    threads = pools.resolve()
    table = implementations()
    width = max(len(n) for n in [*table, *peers.names()])
    for name, info in table.items():
        if info["available"]:
            print(f"{name:<{width}}  yes  {info['description']}")
        else:
            print(f"{name:<{width}}  no   {info['reason']}")
    # the peers: other frameworks timed beside the implementations (not implementations)
    print(f"\npeers (other frameworks timed beside bpbench, {threads} threads each, "
          f"like every contestant; ${pools.ENV} or --threads changes it):")
    for name in peers.names():
        reason = peers.unavailable(name, threads=threads)
        if reason is None:
            print(f"{name:<{width}}  yes  {peers.describe(name)}")
        else:
            print(f"{name:<{width}}  no   {reason}")
    return 0


# ---------------------------------------------------------------------------- validate
def _summarise(frame):
    """One row per (check, impl, dtype): worst relative error against its bound."""
    frame = frame.assign(margin=frame["rel_error"] / frame["bound"])
    groups = frame.groupby(["check", "impl", "dtype"], sort=False)
    summary = groups.agg(arrays=("array", "size"), cases=("case", "nunique"),
                         worst_rel_error=("rel_error", "max"), bound=("bound", "max"),
                         ok=("ok", "all"))
    return summary.reset_index()


def cmd_validate(args):
    import pandas as pd

    from . import agreement

    frame = agreement.validate(impls=args.impls, dtypes=args.dtypes)
    summary = _summarise(frame)
    with pd.option_context("display.width", 120, "display.max_rows", 200,
                           "display.float_format", "{:.2e}".format):
        print(summary.to_string(index=False))
    bad = frame[~frame["ok"]]
    if len(bad):
        print(f"\n{len(bad)} array(s) disagree beyond the bound:")
        with pd.option_context("display.width", 160, "display.max_rows", 50):
            print(bad[["check", "impl", "case", "dtype", "array", "rel_error", "bound"]]
                  .to_string(index=False))
        return EXIT_DISAGREE
    print(f"\nall {len(frame)} comparisons within bounds "
          f"({frame['case'].nunique()} cases, "
          f"implementations: {', '.join(frame['impl'].unique())})")
    return 0


# ---------------------------------------------------------------------------- train
def cmd_train(args):
    import numpy as np

    from . import datasets
    from .network import Network
    from .registry import get
    from .training import train

    if args.dataset == "spirals":
        X, y = datasets.two_spirals(args.samples, seed=args.seed)
        loss, n_out = "cross_entropy", 2
    else:
        X, y = datasets.sine_regression(args.samples, seed=args.seed)
        loss, n_out = "mse", y.shape[1]
    net = Network((X.shape[1], *args.hidden, n_out), activation=args.activation, loss=loss,
                  dtype=args.dtype)
    model = get(args.impl)(net, net.init(seed=args.seed))
    print(f"training {args.impl} on {args.dataset} ({len(X)} samples): {net}")

    def report(epoch, value):
        if args.verbose:
            print(f"epoch {epoch + 1:4d}  loss {value:.6g}", file=sys.stderr)

    history = train(model, X, y, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                    seed=args.seed, target_loss=args.target_loss, progress=not args.quiet,
                    callback=report)
    out = model.forward(X)
    print(f"stopped after {len(history)} epochs ({history.stop_reason}); "
          f"final loss {history[-1]:.6g}")
    if loss == "cross_entropy":
        print(f"training accuracy {np.mean(out.argmax(axis=1) == y):.1%}")
    else:
        print(f"training MSE {np.mean((out - y) ** 2):.4g}")
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="bpbench",
        description="Cross-validated benchmarks of neural-network backpropagation.")
    parser.add_argument("--version", action="version", version=f"bpbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="every implementation and peer: available here, or why not")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("validate", help="agreement of every implementation with the float64 "
                       "reference, and of the reference with finite differences")
    p.add_argument("--impls", type=name_list, default=None,
                   help="comma-separated names (default: every available one)")
    p.add_argument("--dtypes", type=name_list, default=["float32", "float64"],
                   help="comma-separated dtypes (default: float32,float64)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("train", help="train one implementation on a generated dataset")
    p.add_argument("--impl", default="numpy", help="implementation name (default: numpy)")
    p.add_argument("--dataset", choices=["spirals", "sine"], default="spirals",
                   help="two-spiral classification or sine regression (default: spirals)")
    p.add_argument("--samples", type=positive_int, default=1000,
                   help="dataset size (default: 1000)")
    p.add_argument("--hidden", type=positive_int_list, default=[64, 64],
                   help="hidden widths, comma-separated (default: 64,64)")
    p.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                   help="float32 or float64 (default: float64)")
    p.add_argument("--epochs", type=positive_int, default=300, help="maximum epochs (default: 300)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="mini-batch size (default: 32)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="learning rate (default: 0.1)")
    p.add_argument("--target-loss", type=finite_float, default=None,
                   help="stop once the epoch loss is at or below this")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for data, init and shuffling")
    p.add_argument("--verbose", "-v", action="store_true", help="print the loss of every epoch")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    from .bench import (
        asv_tools,
        compare,
        goals,
        gpu_check,
        machine,
        overhead,
        report,
        roofline,
        selection,
        to_target,
    )
    p = sub.add_parser("compare", help="time every available implementation on a grid, "
                       "side by side, and print the table (the main job)")
    compare.add_arguments(p)
    p.set_defaults(func=compare.run)

    p = sub.add_parser("goals", help="the performance goals' table: best Numba step vs PyTorch, "
                       "the BLAS floor and the roofline, with verdicts")
    goals.add_arguments(p)
    p.set_defaults(func=goals.run)

    p = sub.add_parser("overhead", help="per-call cost of step beyond the bare step at batch 1 "
                       "(validation, dispatch): step vs step_prepared vs the hook, with verdicts")
    overhead.add_arguments(p)
    p.set_defaults(func=overhead.run)

    p = sub.add_parser("to-target", help="seconds to train two spirals to the target loss: "
                       "numba's epoch fast path vs each peer's own loop, with verdicts")
    to_target.add_arguments(p)
    p.set_defaults(func=to_target.run)

    p = sub.add_parser("report", help="turn asv results into tables and plots (results/README.md)")
    report.add_arguments(p)
    p.set_defaults(func=report.run)

    p = sub.add_parser("fastest", help="the fastest implementation here for a shape "
                       "(measured once, cached); --clear forgets the cache")
    selection.add_arguments(p)
    p.set_defaults(func=selection.run)

    p = sub.add_parser("gpu-check", help="validate cuda on the GPU, then time it beside the CPU "
                       "implementations and PyTorch on CUDA (--smoke: on the simulator)")
    gpu_check.add_arguments(p)
    p.set_defaults(func=gpu_check.run)

    p = sub.add_parser("roofline", help="this machine's measured ceilings: GEMM peak, memory "
                       "bandwidth per cache level (measured once, cached)")
    roofline.add_arguments(p)
    p.set_defaults(func=roofline.run)

    p = sub.add_parser("machine", help="this machine's name, derived from its hardware "
                       "(--register: record it as asv's machine)")
    machine.add_arguments(p)
    p.set_defaults(func=machine.run)

    p = sub.add_parser("noise", help="benchmark one commit twice with asv: per point the "
                       "spread and the smallest slowdown this machine can detect")
    asv_tools.add_noise_arguments(p)
    p.set_defaults(func=asv_tools.run_noise)

    p = sub.add_parser("asv", help="run asv under this machine's name (registers it, adds "
                       "--machine): bpbench asv run ..., bpbench asv continuous ... (whose "
                       "flags are confirmed by a second pass over the flagged points)")
    p.add_argument("--no-confirm", action="store_true",
                   help="asv continuous: no confirmation pass, asv's own verdict")
    p.add_argument("asv_args", nargs=argparse.REMAINDER, help="asv's command and options")
    p.set_defaults(func=asv_tools.run_asv)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.environ.get("BPBENCH_DEBUG"):
        return args.func(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("bpbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, no traceback (BPBENCH_DEBUG=1 shows it)
        message = str(exc) or type(exc).__name__
        print(f"bpbench: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
