"""The fuzz suite, run in a child process: hypothesis drives the public entry points with
generated good and bad arguments (tests/fuzz_values.py tags each one valid or not).

    PYTHONPATH=. python tests/fuzz_child.py IMPL [--examples N] [--log PATH]
    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=. python tests/fuzz_child.py cuda --examples 8

``IMPL`` is an implementation name (``naive``, ``numpy``, ``numba``, ``numba_parallel``,
``cuda``...): sessions build a model from generated params and make a random sequence of calls
(``loss_and_grads``, ``step``, ``forward``, ``params``, ``prepare``, ``step_prepared``,
``loss_and_grads_prepared``, ``run_epoch``, ``synchronize``, ``bpbench.train``), each with
good or bad arguments, in lockstep with a fresh ``numpy`` model (the oracle). ``api`` fuzzes the
entry points that belong to no implementation: ``Network(...)``, ``net.init``, ``bpbench.get``,
``bpbench.fastest``, ``bpbench.agreement.validate`` and the CLI (``bpbench.cli.main``).

What passes, per call:
- no crash, and no exception but the documented ones: ``ValueError`` naming one of the bad
  arguments, ``DivergenceError`` (a ValueError) from ``train`` where the numpy oracle diverges
  on the same call too (or once extreme values have made the two differ), ``KeyError`` /
  ``UnavailableError`` from ``get``;
- a valid call is accepted and an invalid one refused (the tags say which);
- the caller's arguments are unchanged (pickled before and after), and so is the model after a
  refusal; arrays handed back earlier are unchanged by later calls (no aliasing);
- an accepted call returns the documented types, shapes and dtypes, and, on well-conditioned
  input, what the ``numpy`` oracle returns, within the contract's tolerance for the dtype
  (:data:`bpbench.agreement.TOLERANCES`) times the number of SGD updates so far. After an
  accepted call on extreme values (finite, but huge: |x| ~ 1e30, lr ~ 1e300) results are no
  longer compared in that session: the contract accepts finite input and computes with it; an
  overflow then gives a non-finite loss from ``step`` and a ``DivergenceError`` from ``train``.

Before each call, one line describing it goes to the log (``--log``, flushed), so a crash
(a signal: the process dies) names the call that caused it; the parent test prints the log's
tail. Hypothesis runs derandomized with no example database: the same examples every run.
Exit status 0 when every property held, 1 otherwise (hypothesis prints the falsifying example),
3 when the implementation is not available here (the reason on stdout).
The last line of stdout is a JSON summary: calls per entry point and outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import os
import pickle
import re
import sys
import tempfile
import traceback
from collections import Counter

import numpy as np
from fuzz_values import (
    Arg,
    arguments,
    bad,
    good,
    inputs,
    learning_rates,
    nets,
    orders,
    param_lists,
    positive_ints,
    seeds,
    split,
    targets,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import bpbench
from bpbench.agreement import TOLERANCES

#: per implementation: sessions of mixed calls (hypothesis examples), then sessions of each
#: single entry point (``each``), calls per session, largest width, depth, batch and dataset
#: rows, a large batch (9 rows: the numba kernels' BLAS path starts at 8), epochs of train.
#: The CUDA simulator runs every GPU thread in Python: tiny and few.
PLANS = {
    "naive": dict(examples=600, each=30, calls=8, width=4, depth=2, batch=4, rows=6, big=9,
                  epochs=2),
    "numpy": dict(examples=600, each=30, calls=8, width=4, depth=2, batch=4, rows=6, big=9,
                  epochs=2),
    "numba": dict(examples=600, each=30, calls=8, width=4, depth=2, batch=4, rows=6, big=9,
                  epochs=2),
    "numba_parallel": dict(examples=200, each=10, calls=8, width=4, depth=2, batch=4, rows=6,
                           big=9, epochs=2),
    "cuda": dict(examples=8, each=5, calls=3, width=3, depth=1, batch=2, rows=3, big=None,
                 epochs=1),
}
DEFAULT_PLAN = PLANS["numba"]
#: ``api``: examples per entry point (get and validate draw from small finite sets: hypothesis
#: stops when it has tried them all)
API_EXAMPLES = {"network": 300, "get": 60, "fastest": 40, "validate": 20, "cli": 40}

#: exit status of a child whose implementation is not available here (the parent skips it)
EXIT_UNAVAILABLE = 3

STATS = Counter()
LOG = sys.stderr
#: hypothesis phases: no example database, no explanation phase (slow); shrinking is on unless
#: the environment says BPBENCH_FUZZ_SHRINK=0 (quicker failures while developing), and off for
#: cuda (main() decides): its examples are tiny already, and the simulator would make
#: shrinking take many minutes
PHASES = [Phase.explicit, Phase.generate] + (
    [] if os.environ.get("BPBENCH_FUZZ_SHRINK") == "0" else [Phase.shrink])


class Failure(AssertionError):
    """A property of the contract did not hold (hypothesis reports the example)."""


def fail(message):
    raise Failure(message)


def _snap(value):
    """Bytes that change when the value's contents do (None when it cannot be pickled).

    A prepared batch is its validated X and y (it also refers to its model, whose state calls
    are meant to change); a model is not compared (training is meant to change it)."""
    if isinstance(value, bpbench.PreparedBatch):
        value = (value.X, value.y)
    if isinstance(value, bpbench.Implementation):
        return None
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:  # generators, lambdas: not compared
        return None


def _names(message, names):
    """True when the message names one of the arguments (as a word: 'lr', not 'lr_max')."""
    return any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", message) for n in names)


def describe(arg):
    return f"{arg.label}{'' if arg.ok else ' [bad]'}{' [extreme]' if arg.extreme else ''}"


class Outcome:
    """What one call did: accepted with a result, or refused with an exception."""

    def __init__(self, accepted, result=None, error=None):
        self.accepted, self.result, self.error = accepted, result, error


def invoke(entry, fn, args, *, model=None, allowed=(ValueError,), divergence=False):
    """Call ``fn(**values of args)`` and check what the contract says of any call.

    args: name -> Arg. ``model``: an implementation whose parameters must be unchanged when
    the call is refused. ``divergence``: DivergenceError is documented here (train; whether
    it was right is up to the caller, which compares with the oracle). Returns an Outcome.
    """
    bad_names = [n for n, a in args.items() if not a.ok]
    LOG.write(f"{entry}({', '.join(f'{n}={describe(a)}' for n, a in args.items())})\n")
    LOG.flush()
    before = {n: _snap(a.value) for n, a in args.items()}
    model_before = _snap(model.params()) if model is not None else None
    try:
        result = fn(**{n: a.value for n, a in args.items()})
    except bpbench.DivergenceError as exc:
        if not divergence or bad_names:
            fail(f"{entry}: DivergenceError where none is documented, or instead of refusing "
                 f"{bad_names}: {exc}")
        outcome = Outcome(False, error=exc)
        STATS[f"{entry}: diverged"] += 1
    except allowed as exc:
        if not bad_names:
            fail(f"{entry}: a valid call was refused: {type(exc).__name__}: {exc}")
        if isinstance(exc, ValueError) and not _names(str(exc), bad_names):
            fail(f"{entry}: the ValueError names none of the bad arguments {bad_names}: {exc}")
        outcome = Outcome(False, error=exc)
        STATS[f"{entry}: refused"] += 1
    except Failure:
        raise
    except Exception as exc:
        fail(f"{entry}: undocumented {type(exc).__name__}: {exc}\n"
             + "".join(traceback.format_exception(exc)))
    else:
        if bad_names:
            fail(f"{entry}: accepted invalid {bad_names} (returned {type(result).__name__})")
        outcome = Outcome(True, result=result)
        STATS[f"{entry}: accepted"] += 1
    for name, a in args.items():
        if before[name] is not None and _snap(a.value) != before[name]:
            fail(f"{entry}: the caller's {name} was modified")
    diverged = isinstance(outcome.error, bpbench.DivergenceError)  # trained, then diverged
    if (not outcome.accepted and not diverged and model is not None
            and _snap(model.params()) != model_before):
        fail(f"{entry}: the model changed although the call was refused")
    return outcome


# ---------------------------------------------------------------- comparisons with the oracle
def _norm(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).ravel()))


def assert_close(what, got, want, bound):
    """got == want within ``bound``, relative to the largest array compared (so an array that
    is nearly zero is measured on the scale of the computation, not its own; all zero: the
    absolute error, as :func:`bpbench.agreement.relative_error` does).

    Returns False, comparing nothing, when the oracle's values are not all finite (the
    computation overflowed: then ``got`` must have overflowed too), else True.
    """
    got_flat = [np.asarray(g, np.float64) for g in got]
    want_flat = [np.asarray(w, np.float64) for w in want]
    if len(got_flat) != len(want_flat):
        fail(f"{what}: {len(got_flat)} values, the oracle has {len(want_flat)}")
    for i, (g, w) in enumerate(zip(got_flat, want_flat, strict=True)):
        if g.shape != w.shape:
            fail(f"{what}[{i}]: shape {g.shape}, the oracle's {w.shape}")
    if not all(np.isfinite(w).all() for w in want_flat):
        if all(np.isfinite(g).all() for g in got_flat):
            fail(f"{what}: finite where the numpy oracle overflowed:\n got {got_flat}\n"
                 f"want {want_flat}")
        return False
    scale = max(_norm(w) for w in want_flat)
    for i, (g, w) in enumerate(zip(got_flat, want_flat, strict=True)):
        if not np.isfinite(g).all():
            fail(f"{what}[{i}]: non-finite values where the numpy oracle's are finite:\n"
                 f" got {g}\nwant {w}")
        err = _norm(g - w) / (max(_norm(w), 1e-2 * scale) or 1.0)
        if not err <= bound:
            fail(f"{what}[{i}]: relative error {err:.3g} > {bound:.3g} against the numpy "
                 f"oracle\n got {g}\nwant {w}")
    return True


def _flat(pairs):
    return [a for pair in pairs for a in pair]


def check_params_shape(net, params, what):
    if not isinstance(params, list) or len(params) != net.n_layers:
        fail(f"{what}: expected a list of {net.n_layers} pairs, got {type(params).__name__}")
    for layer, (pair, (w_shape, b_shape)) in enumerate(zip(params, net.shapes(), strict=True)):
        if len(pair) != 2:
            fail(f"{what}[{layer}]: not a (W, b) pair")
        for arr, shape in zip(pair, (w_shape, b_shape), strict=True):
            if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != net.dtype:
                fail(f"{what}[{layer}]: expected an ndarray {shape} of {net.dtype}, got "
                     f"{type(arr).__name__} {getattr(arr, 'shape', '')} "
                     f"{getattr(arr, 'dtype', '')}")


# ---------------------------------------------------------------- a session with one model
class Session:
    """One model of the implementation under test and its numpy oracle, called in lockstep."""

    def __init__(self, impl, net, model, oracle, plan):
        self.impl, self.net, self.model, self.oracle, self.plan = impl, net, model, oracle, plan
        self.updates = 0
        self.synced = True          # False after an accepted call on extreme values
        self.batches = []           # (model's PreparedBatch, oracle's PreparedBatch)
        self.handed_out = []        # (what, array, bytes): results the caller now owns

    @property
    def bound(self):
        return 16 * TOLERANCES[self.net.dtype.name] * (1 + self.updates)

    def keep(self, what, arrays):
        for a in arrays:
            self.handed_out.append((what, a, a.tobytes()))

    def check_handed_out(self, after):
        for what, a, data in self.handed_out:
            if a.tobytes() != data:
                fail(f"{what}, returned earlier, changed during {after}: the model aliases it")

    def close(self, what, got, want):
        """Compare with the oracle; stop comparing from here on if the oracle overflowed."""
        if not assert_close(what, got, want, self.bound):
            self.synced = False

    def oracle_call(self, entry, fn):
        try:
            return fn()
        except Exception as exc:
            fail(f"{entry}: numpy refused what {self.impl} accepted: {type(exc).__name__}: {exc}")

    def after(self, args, changed):
        """After a call that may have changed the model (``changed``) on extreme input, stop
        comparing with the oracle: from here on the two may legitimately differ."""
        if changed and any(a.extreme for a in args.values()):
            self.synced = False

    def compared(self, args):
        return self.synced and not any(a.extreme for a in args.values())

    # ------------------------------------------------------------ data for the calls
    def rows(self, data, most):
        """A batch or dataset size: small, or (where the plan says) large enough for the
        numba kernels' BLAS path."""
        sizes = st.integers(1, most)
        if self.plan["big"]:
            sizes = st.one_of(sizes, st.just(self.plan["big"]))
        return data.draw(sizes, label="rows")

    def batch_specs(self, B, with_y=True):
        specs = {"X": inputs(self.net, B)}
        if with_y:
            specs["y"] = targets(self.net, B)
        return specs

    def batch_args(self, data, with_y=True):
        B = self.rows(data, self.plan["batch"])
        return B, arguments(data, self.batch_specs(B, with_y))

    @staticmethod
    def values(args):
        return {n: a.value for n, a in args.items()}

    # ------------------------------------------------------------ the calls
    def loss_and_grads(self, data):
        _, args = self.batch_args(data)
        out = invoke("loss_and_grads", self.model.loss_and_grads, args, model=self.model)
        if out.accepted:
            self.check_loss_and_grads("loss_and_grads", out.result, args,
                                      lambda: self.oracle.loss_and_grads(**self.values(args)))

    def check_loss_and_grads(self, entry, result, args, oracle_fn):
        loss, grads = result
        if type(loss) is not float:
            fail(f"{entry}: loss is {type(loss).__name__}, not float")
        check_params_shape(self.net, grads, f"{entry} grads")
        self.keep(f"{entry} grads", _flat(grads))
        if self.compared(args):
            want = self.oracle_call(entry, oracle_fn)
            self.close(f"{entry} loss", [loss], [want[0]])
            self.close(f"{entry} grads", _flat(grads), _flat(want[1]))

    def step(self, data):
        B = self.rows(data, self.plan["batch"])
        args = arguments(data, {**self.batch_specs(B), "lr": learning_rates()})
        out = invoke("step", self.model.step, args, model=self.model)
        if out.accepted:
            if type(out.result) is not float:
                fail(f"step returned {type(out.result).__name__}, not float")
            self.lockstep("step", args, out.result, lambda: self.oracle.step(**self.values(args)))
        self.after(args, out.accepted)

    def lockstep(self, entry, args, got, oracle_fn, updates=1):
        """Run the oracle on the same arguments, compare results and parameters."""
        if not self.compared(args):
            return
        want = self.oracle_call(entry, oracle_fn)
        self.updates += updates
        self.close(entry, [got], [want])
        self.compare_params(entry)

    def compare_params(self, entry):
        got, want = self.model.params(), self.oracle.params()
        check_params_shape(self.net, got, f"params after {entry}")
        self.close(f"params after {entry}", _flat(got), _flat(want))

    def forward(self, data):
        B, args = self.batch_args(data, with_y=False)
        out = invoke("forward", self.model.forward, args, model=self.model)
        if out.accepted:
            got = out.result
            shape = (B, self.net.sizes[-1])
            if not (isinstance(got, np.ndarray) and got.shape == shape
                    and got.dtype == self.net.dtype):
                fail(f"forward: expected an ndarray {shape} of {self.net.dtype}, got "
                     f"{type(got).__name__} {getattr(got, 'shape', '')}")
            self.keep("forward output", [got])
            if self.compared(args):
                want = self.oracle_call("forward", lambda: self.oracle.forward(args["X"].value))
                self.close("forward", [got], [want])

    def params(self, data):
        out = invoke("params", self.model.params, {}, model=self.model)
        check_params_shape(self.net, out.result, "params()")
        self.keep("params()", _flat(out.result))
        if self.synced:
            self.compare_params("params()")

    def synchronize(self, data):
        out = invoke("synchronize", self.model.synchronize, {}, model=self.model)
        if out.result is not None:
            fail(f"synchronize returned {out.result!r}")

    def prepare(self, data):
        _, args = self.batch_args(data)
        out = invoke("prepare", self.model.prepare, args, model=self.model)
        if out.accepted:
            batch = out.result
            if not isinstance(batch, bpbench.PreparedBatch):
                fail(f"prepare returned {type(batch).__name__}")
            twin = None
            if self.compared(args):
                twin = self.oracle_call("prepare",
                                        lambda: self.oracle.prepare(**self.values(args)))
            self.batches.append((batch, twin, any(a.extreme for a in args.values())))

    def batches_spec(self):
        """batch: (one of this model's prepared batches, something else). A valid batch Arg's
        value is (the model's batch, the oracle's twin or None)."""
        net = self.net
        X = np.zeros((1, net.sizes[0]))
        y = [0] if net.loss == "cross_entropy" else np.zeros((1, net.sizes[-1]))

        def foreign(kind):
            if kind == "another model's":
                return bad(type(self.model)(net, net.init(0)).prepare(X, y), kind)
            if kind == "the numpy oracle's":
                return bad(self.oracle.prepare(X, y), kind)
            if kind == "(X, y)":
                return bad((X, np.zeros(1, int)), kind)
            return bad(None, "None")

        bads = st.sampled_from(["another model's", "the numpy oracle's", "(X, y)", "None"]
                               ).map(foreign)
        goods = st.sampled_from(self.batches).map(
            lambda b: good(b[0], f"prepared B={b[0].size}", b[2])) if self.batches else None
        return goods, bads

    def twin_of(self, batch):
        return next((twin for b, twin, _ in self.batches if b is batch), None)

    def draw_batch_args(self, data, specs):
        if not self.batches:  # prepare one first (that call may be refused, too)
            self.prepare(data)
        goods, bads = self.batches_spec()
        if goods is None:  # nothing prepared yet: only a foreign batch to offer
            goods = bads
        return arguments(data, {"batch": (goods, bads), **specs})

    def step_prepared(self, data):
        args = self.draw_batch_args(data, {"lr": learning_rates()})
        out = invoke("step_prepared", self.model.step_prepared, args, model=self.model)
        if out.accepted:
            if type(out.result) is not float:
                fail(f"step_prepared returned {type(out.result).__name__}, not float")
            twin = self.twin_of(args["batch"].value)
            if twin is None:
                self.synced = False  # prepared from extreme values: not compared
            else:
                self.lockstep("step_prepared", args, out.result,
                              lambda: self.oracle.step_prepared(twin, args["lr"].value))
        self.after(args, out.accepted)

    def loss_and_grads_prepared(self, data):
        args = self.draw_batch_args(data, {})
        out = invoke("loss_and_grads_prepared", self.model.loss_and_grads_prepared, args,
                     model=self.model)
        if out.accepted:
            twin = self.twin_of(args["batch"].value)
            if twin is None:  # prepared from extreme values: check shapes only
                args = {**args, "batch": Arg(None, True, "", extreme=True)}
            self.check_loss_and_grads("loss_and_grads_prepared", out.result, args,
                                      lambda: self.oracle.loss_and_grads_prepared(twin))

    def run_epoch(self, data):
        n = self.rows(data, self.plan["rows"])
        args = arguments(data, {**self.batch_specs(n), "order": orders(n),
                                "batch_size": positive_ints("batch_size", 1, n + 1),
                                "lr": learning_rates()})
        out = invoke("run_epoch", self.model.run_epoch, args, model=self.model)
        if out.accepted:
            losses = out.result
            shape = (-(-n // int(args["batch_size"].value)),)
            if not (isinstance(losses, np.ndarray) and losses.dtype == np.float64
                    and losses.shape == shape):
                fail(f"run_epoch: expected a float64 array {shape}, got {type(losses).__name__} "
                     f"{getattr(losses, 'dtype', '')} {getattr(losses, 'shape', '')}")
            self.keep("run_epoch losses", [losses])
            self.lockstep("run_epoch", args, losses,
                          lambda: self.oracle.run_epoch(**self.values(args)), shape[0])
        self.after(args, out.accepted)

    def train(self, data):
        n = self.rows(data, self.plan["rows"])
        specs = {
            "model": split([good(self.model, "the model"), bad(None, "None"),
                            bad("numpy", "'numpy'"), bad(type(self.model), "the class")]),
            **self.batch_specs(n),
            "lr": learning_rates(),
            "epochs": positive_ints("epochs", 1, self.plan["epochs"], huge=False),
            "batch_size": positive_ints("batch_size", 1, n + 1),
            "seed": seeds(),
            "target_loss": split([
                good(None, "None"), good(1e6, "1e6 (reached at once)"), good(-1.0, "-1 (never)"),
                good(np.float32(1e6), "np.float32(1e6)"), bad(float("nan"), "nan"),
                bad(float("inf"), "inf"), bad("0.1", "'0.1'"), bad(True, "True"),
                bad(10**400, "10**400")]),
            "tol": split([
                good(None, "None"), good(1e6, "1e6 (no epoch improves on the best by that)"),
                bad(-1.0, "-1"), bad(float("nan"), "nan"), bad("x", "'x'"), bad(True, "True"),
                bad(10**400, "10**400")]),
            "patience": positive_ints("patience", 1, 2, huge=False),
            "progress": split([good(False, "False"), good(True, "True"),
                               good(np.False_, "np.False_"), bad(1, "1"), bad("yes", "'yes'"),
                               bad(None, "None")]),
            "callback": split([good(None, "None"), good(lambda e, v: None, "returns None"),
                               good(lambda e, v: True, "stops training"), bad(1, "1"),
                               bad("print", "'print'")]),
        }
        args = arguments(data, specs)
        with contextlib.redirect_stderr(io.StringIO()):  # the progress bar, if asked for
            out = invoke("train", bpbench.train, args, model=self.model, divergence=True)
        values = {**self.values(args), "model": self.oracle, "progress": False}
        if isinstance(out.error, bpbench.DivergenceError) and self.compared(args):
            try:  # diverging is right when numpy diverges too
                bpbench.train(**values)
            except bpbench.DivergenceError:
                self.synced = False
            else:
                fail(f"train diverged where numpy did not: {out.error}")
        if out.accepted:
            history = out.result
            if not (isinstance(history, list) and all(type(v) is float for v in history)
                    and 1 <= len(history) <= int(args["epochs"].value)):
                fail(f"train: expected a History of 1..epochs floats, got {history!r}")
            if history.stop_reason not in ("epochs", "target", "patience", "callback"):
                fail(f"train: stop_reason {history.stop_reason!r}")
            if self.compared(args):
                want = self.oracle_call("train", lambda: bpbench.train(**values))
                bs = min(int(args["batch_size"].value), n)
                self.updates += len(want) * -(-n // bs)
                if history.stop_reason != want.stop_reason or len(history) != len(want):
                    fail(f"train: stopped after {len(history)} epochs ({history.stop_reason}), "
                         f"numpy after {len(want)} ({want.stop_reason})")
                self.close("train history", [history], [list(want)])
                self.compare_params("train")
        self.after(args, out.accepted or isinstance(out.error, bpbench.DivergenceError))


CALLS = ["loss_and_grads", "step", "forward", "params", "synchronize", "prepare",
         "step_prepared", "loss_and_grads_prepared", "run_epoch", "train"]


def impl_fuzz(impl, examples, calls=CALLS):
    """The property test for one implementation (a hypothesis test function); ``calls``: the
    entry points its sessions call (all by default). Sessions that call a single entry point
    always build their model from valid arguments (construction is fuzzed by the others)."""
    cls = bpbench.get(impl)
    oracle_cls = bpbench.get("numpy")
    plan = PLANS.get(impl, DEFAULT_PLAN)

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=PHASES)
    @given(st.data())
    def session(data):
        net = data.draw(nets(plan["width"], plan["depth"]), label="net")
        if not net.dtype.isnative or net.dtype.name not in ("float32", "float64"):
            fail(f"Network stored dtype {net.dtype!r}: expected native float32 or float64")
        specs = {"net": split([good(net, repr(net)), bad(net.sizes, "a tuple of sizes"),
                               bad(None, "None"), bad("net", "'net'")]),
                 "params": param_lists(net)}
        if len(calls) == 1:
            specs = {name: (valid, None) for name, (valid, _) in specs.items()}
        args = arguments(data, specs)
        params = args["params"]
        out = invoke(f"{impl}(net, params)", cls, args)
        if not out.accepted:
            return
        model = out.result
        got = model.params()
        check_params_shape(net, got, "params() after construction")
        # the model holds exactly the caller's values, in the net's dtype
        want = [(np.asarray(np.asarray(W, dtype=np.float64 if _is_object(W) else None),
                            dtype=net.dtype),
                 np.asarray(np.asarray(b, dtype=np.float64 if _is_object(b) else None),
                            dtype=net.dtype))
                for W, b in params.value]
        for (W, b), (Wr, br) in zip(got, want, strict=True):
            if not (np.array_equal(W, Wr) and np.array_equal(b, br)):
                fail("params() after construction differ from the params given")
        s = Session(impl, net, model, oracle_cls(net, got), plan)
        for _ in range(data.draw(st.integers(1, plan["calls"]), label="calls")):
            name = data.draw(st.sampled_from(calls), label="call")
            getattr(s, name)(data)
            s.check_handed_out(name)

    return session


def _is_object(value):
    return isinstance(value, list) or (isinstance(value, np.ndarray) and value.dtype == object)


# ---------------------------------------------------------------- entry points of no model
def sizes_args(depth):
    """sizes of a net with ``depth`` hidden layers: (valid spellings, invalid values)."""
    widths = [3, 4, 1, 5, 2][:depth + 1] + [2]
    goods = [good(tuple(widths), "a tuple"), good(list(widths), "a list"),
             good(np.array(widths), "an int64 array"),
             good(np.array(widths, dtype=np.uint8), "a uint8 array"),
             good((np.int64(widths[0]), *widths[1:]), "with an np.int64"),
             good(range(1, depth + 3), "a range"),
             good(np.array(widths, dtype=object), "an object array of ints")]
    bads = [bad((3,), "(3,)"), bad((), "()"), bad((3, 0, 2), "a zero"), bad((3, -1), "-1"),
            bad((3, 2.5), "2.5"), bad((3, 2.0), "2.0"), bad((3, True), "True"),
            bad("32", "'32'"), bad(None, "None"), bad(5, "5"), bad(np.array(5), "0-d array"),
            bad(np.array([[3, 2]]), "2-D array"), bad({3: 1, 2: 1}, "dict"),
            bad({3, 2}, "set"), bad((3, None), "None in it"), bad([[3], [2]], "nested"),
            bad(np.array([3.0, 2.0]), "float array"), bad((3, "2"), "'2' in it"),
            bad(b"\x03\x02", "bytes")]
    return split(goods + bads)


def activation_args(depth):
    names = ["relu", "tanh", "sigmoid"]
    goods = [good(n, n) for n in names] + [good(np.str_("tanh"), "np.str_('tanh')")]
    goods.append(good(tuple(names[i % 3] for i in range(depth)), f"{depth} names"))
    goods.append(good([names[(i + 1) % 3] for i in range(depth)], f"list of {depth} names"))
    not_a_name = ("relu",) * (depth - 1) + (3,) if depth else ("relu",)  # too long at depth 0
    bads = [bad("gelu", "'gelu'"), bad(None, "None"), bad(5, "5"), bad(b"relu", "b'relu'"),
            bad(("relu",) * (depth + 1), f"{depth + 1} names"), bad(not_a_name, "a non-name"),
            bad(np.array(["relu"] * depth), "array of names"), bad("", "''")]
    return split(goods + bads)


def loss_args():
    return split([good("mse", "mse"), good("cross_entropy", "cross_entropy"),
                            good(np.str_("mse"), "np.str_('mse')"), bad("hinge", "'hinge'"),
                            bad(None, "None"), bad(["mse"], "['mse']"), bad("MSE", "'MSE'")])


def dtype_args():
    return split([good(v, repr(v)) for v in (
        "float32", "float64", np.float32, np.float64, np.dtype("float32"), "f4", "f8", "<f8",
        ">f8", np.dtype(">f4"), "single", "double", float)] + [bad(v, repr(v)) for v in (
            None, "float16", "int32", "complex64", "nonsense", np.int64, "f8,f8", [1],
            {"a": 1}, ("f8", 2), 5, "")])


def api_network(examples):
    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False, phases=PHASES)
    @given(st.data())
    def network(data):
        depth = data.draw(st.integers(0, 3), label="depth")
        args = arguments(data, {"sizes": sizes_args(depth), "activation": activation_args(depth),
                                "loss": loss_args(), "dtype": dtype_args()})
        sizes = args["sizes"]
        out = invoke("Network", bpbench.Network, args)
        if not out.accepted:
            return
        net = out.result
        if net.sizes != tuple(int(s) for s in sizes.value) or not all(
                type(s) is int for s in net.sizes):
            fail(f"Network: sizes {net.sizes!r} from {sizes.value!r}")
        if net.dtype.name not in ("float32", "float64") or not net.dtype.isnative:
            fail(f"Network: dtype {net.dtype!r} (expected native float32 or float64)")
        if len(net.activations) != net.depth:
            fail(f"Network: {len(net.activations)} activations for depth {net.depth}")
        seed = arguments(data, {"seed": seeds()})["seed"]
        out = invoke("Network.init", net.init, {"seed": seed})
        if out.accepted:
            params = out.result
            check_params_shape(net, params, "init")
            again = net.init(seed.value)
            if _snap(again) != _snap(params):
                fail("init: the same seed gave different numbers")
            for layer, (W, b) in enumerate(params):
                n_in, n_out = W.shape
                limit = np.sqrt(6.0 / (n_in if net.init_scheme(layer) == "he"
                                       else n_in + n_out))
                if np.abs(W).max() > limit or b.any():
                    fail(f"init: layer {layer} outside U(-{limit}, {limit}) or nonzero bias")

    return network


def api_get(examples):
    known = ["naive", "numpy", "numba", "numba_parallel", "cuda"]

    here = bpbench.available()
    names = [good(n, n) if n in here else bad(n, f"{n} (unavailable here)") for n in known]

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False, phases=PHASES)
    @given(st.sampled_from(names + [bad(v, repr(v)) for v in (
        "nope", "", "NUMPY", None, 5, ["numpy"], b"numpy", " numpy", ("numpy",))]))
    def get(name):
        out = invoke("get", bpbench.get, {"name": name},
                     allowed=(KeyError, bpbench.UnavailableError))
        info = bpbench.implementations().get(name.value) if name.value in known else None
        if out.accepted:
            cls = out.result
            if not (isinstance(cls, type) and issubclass(cls, bpbench.Implementation)
                    and cls.name == name.value and cls.description and info["available"]):
                fail(f"get({name.value!r}) returned {cls!r}")
        elif isinstance(out.error, KeyError):
            if not all(k in str(out.error) for k in known):
                fail(f"get: the KeyError does not list the known names: {out.error}")
        elif info is None or info["available"] or not info["reason"]:
            fail(f"get({name.value!r}): UnavailableError, yet it is listed as {info}")

    return get


def api_fastest(examples):
    tiny = bpbench.Network((3, 4, 2), dtype="float32")

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False, phases=PHASES)
    @given(st.data())
    def fastest(data):
        candidates = split([
            good(["numpy"], "['numpy']"), good(("naive",), "('naive',)"),
            good(["numpy", "numpy"], "numpy twice"), good(np.array(["numpy"]), "array"),
            good(["naive"], "['naive']"), good(["naive", "numpy"], "a race of two"),
            bad([], "[]"), bad(["nope"], "['nope']"), bad("numpy", "'numpy' (a str)"),
            bad(5, "5"), bad([["numpy"]], "[['numpy']]"), bad([None], "[None]"),
            bad(["cuda"], "['cuda'] (unavailable here)")])
        args = arguments(data, {
            "net": split([good(tiny, "tiny net"), bad(None, "None"), bad((3, 4, 2), "a tuple"),
                          bad("net", "'net'")]),
            "batch_size": positive_ints("batch_size", 1, 3, huge=False),
            "candidates": candidates})
        out = invoke("fastest", bpbench.fastest, args)
        if out.accepted and out.result.name not in set(args["candidates"].value):
            fail(f"fastest returned {out.result.name}, not one of {args['candidates'].value}")

    return fastest


def api_validate(examples):
    from bpbench import agreement
    from bpbench.impls.numpy_vectorised import NumpyImplementation

    case = agreement.make_case((3, 2), "relu", "mse", 2, "float64", 0)

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False, phases=PHASES)
    @given(st.data())
    def validate(data):
        args = arguments(data, {
            "impls": split([
                good(["numpy"], "['numpy']"), good("numpy", "'numpy'"),
                good([NumpyImplementation], "[class]"), bad(["nope"], "['nope']"),
                bad([], "[]"), bad(5, "5"), bad([5], "[5]"), bad(["cuda"], "['cuda']")]),
            "dtypes": split([
                good("float64", "'float64'"), good(("float32",), "('float32',)"),
                good(["float32", "float64"], "both"), bad("float16", "'float16'"),
                bad(5, "5"), bad([None], "[None]"), bad([], "[]")]),
            "cases": split([
                good(None, "None"), good([case], "one tiny case"), bad([1], "[1]"),
                bad([case[:3]], "a case of 3 items"), bad("cases", "'cases'"), bad(5, "5"),
                bad([], "[]"),
                bad([case[:3] + (np.ones((2, 4)), case[4])], "a case with a bad X")]),
            "steps": split([
                good(1, "1"), good(2, "2"), bad(0, "0"), bad(-1, "-1"), bad(1.5, "1.5"),
                bad("a", "'a'"), bad(True, "True"), bad(None, "None")]),
        })
        out = invoke("validate", agreement.validate, args)
        if out.accepted:
            frame = out.result
            if "ok" not in frame or len(frame) == 0 or not frame["ok"].all():
                fail(f"validate: expected rows, all ok, got\n{frame}")

    return validate


def api_cli(examples):
    from bpbench import cli

    train_good = [["--impl", "numpy"], ["--impl", "naive", "--hidden", "3"], ["--samples", "7"],
                  ["--epochs", "2"], ["--dataset", "sine"], ["--dtype", "float32"],
                  ["--activation", "relu"], ["--batch-size", "3"], ["--lr", "0.05"],
                  ["--target-loss", "0.5"], ["--seed", "3"], ["-v"], ["--hidden", "2,3"]]
    train_bad = [["--impl", "nope"], ["--samples", "0"], ["--samples", "x"], ["--epochs", "0"],
                 ["--hidden", "0"], ["--hidden", "a"], ["--activation", "gelu"],
                 ["--dtype", "float16"], ["--lr", "0"], ["--lr", "nan"], ["--lr", "-1"],
                 ["--target-loss", "inf"], ["--seed", "-1"], ["--batch-size", "0"],
                 ["--nope"], ["--impl", "cuda"], ["--dataset", "mnist"], ["--samples"]]
    others_bad = [["compare", "--depths", "-1"], ["compare", "--batches", "0"],
                  ["compare", "--width", "x"], ["compare", "--dtype", "float16"],
                  ["report", "--nope"], ["gpu-check", "--nope"], ["fastest", "--sizes", "a,b"],
                  ["fastest", "--batch-size", "0"], ["fastest", "--dtype", "float16"],
                  ["fastest", "--activation", "gelu"], ["fastest", "--loss", "hinge"],
                  ["validate", "--impls", "nope"], ["validate", "--dtypes", "float16"],
                  ["validate", "--impls", ""], ["nope"], [], ["--nope"], ["list", "--nope"]]
    others_good = [["list"], ["--version"], ["--help"], ["train", "--help"],
                   ["validate", "--impls", "numpy", "--dtypes", "float64"],
                   ["fastest", "--clear"]]

    @st.composite
    def argvs(draw):
        if draw(st.booleans()):
            opts = draw(st.lists(st.sampled_from(range(len(train_good) + len(train_bad))),
                                 max_size=4))
            argv = ["train", "-q", "--samples", "20", "--epochs", "3", "--hidden", "4"]
            ok = True
            for i in opts:
                if i < len(train_good):
                    argv += train_good[i]
                else:
                    argv += train_bad[i - len(train_good)]
                    ok = False
            return Arg(argv, ok, " ".join(argv))
        if draw(st.booleans()):
            argv = draw(st.sampled_from(others_good))
            return good(argv, " ".join(argv))
        argv = draw(st.sampled_from(others_bad))
        return bad(argv, " ".join(argv) or "(nothing)")

    def run_cli(argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(argv))
            except SystemExit as exc:  # argparse: --help, --version, usage errors
                code = exc.code
        return code, out.getvalue(), err.getvalue()

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False, phases=PHASES)
    @given(argvs())
    def command_line(argv):
        # every argv returns an exit code: invoke logs the call and checks argv is unchanged;
        # what the code must be is checked below
        out = invoke("cli", run_cli, {"argv": Arg(argv.value, True, describe(argv))})
        code, stdout, stderr = out.result
        if "Traceback" in stderr or "Traceback" in stdout:
            fail(f"cli {argv.value}: a traceback:\n{stderr}")
        if argv.ok and code not in (0, None):
            fail(f"cli {argv.value}: exit {code} for valid options:\n{stderr}")
        if not argv.ok:
            last = stderr.strip().splitlines()[-1:] or [""]
            if code != cli.EXIT_ERROR or "error:" not in last[0]:
                fail(f"cli {argv.value}: expected exit 2 and an error line, got {code}:\n"
                     f"{stderr}")

    return command_line


# ---------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="an implementation name, or 'api'")
    parser.add_argument("--examples", type=int, default=None,
                        help="hypothesis examples per property (default: per target, times "
                             "$BPBENCH_FUZZ_SCALE)")
    parser.add_argument("--log", default=None, help="file for the one-line-per-call log")
    parser.add_argument("--calls", default=",".join(CALLS),
                        help="comma-separated entry points a session calls (default: all)")
    args = parser.parse_args(argv)
    global LOG
    LOG = open(args.log, "w", buffering=1) if args.log else open(os.devnull, "w")
    if args.target == "cuda" and os.environ.get("BPBENCH_FUZZ_SHRINK") != "1":
        PHASES[:] = [p for p in PHASES if p != Phase.shrink]
    faulthandler.enable()  # a crash prints the Python stack to stderr
    scale = float(os.environ.get("BPBENCH_FUZZ_SCALE", "1"))
    if args.target == "api":
        os.environ["BPBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="bpbench-fuzz-cache-")
        properties = [(name, make(args.examples or max(1, int(n * scale))))
                      for name, make, n in [
                          ("network", api_network, API_EXAMPLES["network"]),
                          ("get", api_get, API_EXAMPLES["get"]),
                          ("fastest", api_fastest, API_EXAMPLES["fastest"]),
                          ("validate", api_validate, API_EXAMPLES["validate"]),
                          ("cli", api_cli, API_EXAMPLES["cli"])]]
    else:
        reason = bpbench.implementations().get(args.target, {}).get("reason", "unknown name")
        if reason:
            print(f"UNAVAILABLE {args.target}: {reason}", flush=True)
            return EXIT_UNAVAILABLE
        plan = PLANS.get(args.target, DEFAULT_PLAN)
        examples = args.examples or max(1, int(plan["examples"] * scale))
        each = args.examples or max(1, int(plan["each"] * scale))
        calls = [c for c in args.calls.split(",") if c]
        unknown = sorted(set(calls) - set(CALLS))
        if unknown or not calls:
            parser.error(f"--calls: unknown {unknown or 'empty list'}; known: {', '.join(CALLS)}")
        # sessions of mixed calls (state carried from call to call), then every entry point on
        # its own, so that each gets its share of examples whatever the mix drew
        properties = [(f"{args.target} mixed", impl_fuzz(args.target, examples, calls))]
        if len(calls) > 1:
            properties += [(f"{args.target} {c}", impl_fuzz(args.target, each, [c]))
                           for c in calls]
    failed = []
    for name, prop in properties:
        LOG.write(f"# property {name}\n")
        try:
            prop()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"{'FAIL' if name in failed else 'PASS'} {name}", flush=True)
    print(json.dumps({"target": args.target, "failed": failed, "calls": dict(sorted(
        STATS.items()))}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
