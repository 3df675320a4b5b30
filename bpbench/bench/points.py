"""One benchmark point, built the same way for every contestant, checked, then warmed up.

A *point* is (contestant, depth, width, batch, dtype). The asv suite in ``benchmarks/``,
``bpbench compare`` and :func:`bpbench.fastest` all build their points here, so every
contestant sees the same seeded network, parameters and batch, and the things that can make a
benchmark lie are handled once:

- **same start**: :func:`grid_net` and :func:`grid_batch` are pure functions of their
  arguments and a seed; params come from ``net.init(seed)``;
- **a wrong answer is not timed**: :func:`build` checks the contestant's loss and gradients
  on the point's own batch against the float64 reference (:mod:`bpbench.reference`) within the
  contract's bounds before returning, and raises :class:`DisagreementError` otherwise (float32
  points: one row in float32 plus the whole batch in float64, see :func:`_check_point`);
- **compilation outside the clock**: :func:`build` runs warm-up steps (the first compiles);
- **validation and transfers outside the clock**: the batch is prepared once
  (``model.prepare``) and :meth:`Point.step` calls ``step_prepared`` then ``synchronize``;
- **hopeless points are refused, not timed**: :func:`skip_reason` says why a point is skipped
  (unavailable here, or pure Python at a size that would take minutes).

Contestants (:func:`contestants`: the one list every tool uses) are the registry's
implementations, then every peer of :mod:`bpbench.bench.peers` (PyTorch eager, ...), each given
the run's thread count (:mod:`bpbench.bench.threads`). Points are timed by
:mod:`bpbench.bench.engine`, which calls :func:`build`.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import numpy as np

from .. import reference, registry
from ..agreement import gradient_rows
from ..checks import check_positive_int
from ..network import Network
from . import peers
from . import threads as pools

#: learning rate used when timing steps: small, so thousands of repeated steps neither
#: diverge nor drive activations into denormals, which would change the speed being measured
TIMING_LR = 1e-4

#: output units of every grid network (a 10-class softmax)
N_CLASSES = 10

#: pure Python (``naive``) only runs points whose step costs at most this many flops: it does
#: about 1e7 flop/s, so this keeps one step under about 0.2 s (batch 1 up to depth 4 at width 256)
NAIVE_MAX_FLOPS = 2e6

#: untimed steps before any timing; the first one compiles JIT implementations
WARMUP_STEPS = 2


class DisagreementError(ValueError):
    """A contestant's loss or gradients disagree with the float64 reference: not timed."""


def grid_net(depth, width=256, dtype="float32"):
    """The grid's network: ``width`` inputs, ``depth`` hidden relu layers of ``width``, 10 classes.

    sizes = (width,) * (depth + 1) + (10,), softmax cross-entropy. Input width = hidden width,
    so every hidden layer costs the same and depth scales the work linearly.
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    return Network((int(width),) * (int(depth) + 1) + (N_CLASSES,), activation="relu",
                   loss="cross_entropy", dtype=dtype)


def grid_batch(net, batch_size, seed=0):
    """A seeded batch for ``net``: X (B, sizes[0]) standard normal of net.dtype, y (B,) classes.

    X is drawn directly in its dtype (no float64 temporary), so building a batch never needs
    more memory than the batch itself (this matters to the peak-memory benchmarks).
    For an ``mse`` network, y is (B, K) standard normal instead.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch_size, net.sizes[0]), dtype=net.dtype.type)
    if net.loss == "cross_entropy":
        y = rng.integers(0, net.sizes[-1], batch_size)
    else:
        y = rng.standard_normal((batch_size, net.sizes[-1]), dtype=net.dtype.type)
    return X, y


def unavailable(name, device="cpu", threads=None):
    """None when contestant ``name`` can be timed here, else why not (a sentence).

    ``device``: where a peer would run (``"cpu"`` or ``"cuda"``); ``threads``: the count it
    would get (default: the count last applied by :func:`bpbench.bench.threads.apply`, else
    the run's setting), which a peer may be unable to honour in this process (JAX).
    """
    if name in peers.PEERS:
        n = pools.resolve(threads) if threads is not None else (pools.applied()
                                                                 or pools.resolve())
        return peers.unavailable(name, device, threads=n)
    if name not in registry.names():
        return f"unknown contestant {name!r}; known: {', '.join(contestants())}"
    if name == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return ("the CUDA simulator (NUMBA_ENABLE_CUDASIM=1) checks correctness; "
                "its speed means nothing")
    try:
        registry.get(name)  # resolves this name only: timing numpy never imports Numba
    except registry.UnavailableError as exc:
        return str(exc)
    return None


def contestants():
    """Every contestant name: the built-in and entry-point implementations, then the peers."""
    return list(registry.names()) + peers.names()


def available_contestants(include_peers=True):
    """Names of the contestants that can be timed here, in :func:`contestants` order."""
    return [n for n in contestants()
            if (include_peers or n not in peers.PEERS) and unavailable(n) is None]


def too_slow(name, net, batch_size):
    """None, or why this point would take too long for ``name`` to be worth timing."""
    if name == "naive":
        flops = net.step_flops(batch_size)
        if flops > NAIVE_MAX_FLOPS:
            return (f"naive (pure Python) skipped: a step is {flops:.2g} flops "
                    f"(> {NAIVE_MAX_FLOPS:.0g}, about {flops / 1e7:.2g} s per step)")
    return None


def skip_reason(name, net, batch_size, threads=None):
    """None when the point is to be timed, else why it is skipped (unavailable or too slow)."""
    return unavailable(name, threads=threads) or too_slow(name, net, batch_size)


def make_model(name, net, params, *, threads=None, device="cpu"):
    """A fresh model of contestant ``name`` holding a copy of ``params``.

    ``threads``: the run's thread count (default :func:`bpbench.bench.threads.resolve`), given
    to a peer and applied to every pool again after the model is built (building a Numba
    implementation imports Numba, whose pool then gets the count too). ``device``: where a
    peer runs (``"cpu"`` or ``"cuda"``); implementations decide their own device.
    """
    n = pools.resolve(threads)
    if name in peers.PEERS:
        model = peers.make(name, net, params, threads=n, device=device)
    else:
        model = registry.get(name)(net, params)
    pools.apply(n)
    return model


def check_agreement(name, model, net, params, X, y):
    """Worst relative error of the model's loss and gradients against the float64 reference.

    Raises :class:`DisagreementError` when any array (or the loss) is beyond the contract's
    bound for ``net.dtype`` (:data:`bpbench.agreement.TOLERANCES`). Must run before the model
    takes any step (its parameters are still ``params``).
    """
    ref_loss, ref_grads = reference.loss_and_grads(net, params, X, y)
    loss, grads = model.loss_and_grads(X, y)  # a peer's from its own autodiff
    rows = gradient_rows(name, net, loss, grads, ref_loss, ref_grads)
    bad = [row for row in rows if not row["ok"]]  # beyond the bound, NaN, missing or misshapen
    if bad:
        row = bad[0]
        detail = f" ({row['note']})" if row["note"] else ""
        raise DisagreementError(
            f"{name} disagrees with the float64 reference on {net} at batch {len(X)}: "
            f"relative error of {row['array']} is {row['rel_error']:.3g} > {row['bound']:g}"
            f"{detail}; not timed")
    return max(row["rel_error"] for row in rows)


def _check_point(name, model, net, params, X, y, twin=True, threads=None, device="cpu"):
    """Check ``model`` on (X, y): directly in float64; in float32 on one row plus a float64 twin.

    A float32 check on a large batch fails for every implementation without any bug: some
    relu pre-activation ends up within float32 rounding of zero, its sign differs from the
    float64 reference's, and a whole delta flows where the reference has none (seen at depth
    4, width 256, batch 64: one flipped unit, dW0 off by 1e-2 relative). So a float32 point is
    checked (a) in float32 on its first row, where no flip is likely, catching errors of the
    float32 code path, and (b) with the same implementation in float64 on the whole batch,
    catching errors that depend on the shape (``twin``). Returns the float32 (or float64)
    relative error.
    """
    if net.dtype.name == "float64":
        return check_agreement(name, model, net, params, X, y)
    err = check_agreement(name, model, net, params, X[:1], y[:1])
    if not twin:
        return err
    net64 = net.with_dtype("float64")
    params64 = [(W.astype(np.float64), b.astype(np.float64)) for W, b in params]
    y64 = y if net.loss == "cross_entropy" else y.astype(np.float64)
    check_agreement(name, make_model(name, net64, params64, threads=threads, device=device),
                    net64, params64, X.astype(np.float64), y64)
    return err


@dataclass
class Point:
    """A checked, warmed-up model and its prepared batch: ready to be timed.

    ``step()`` is exactly what a step benchmark times: ``step_prepared`` on the prepared batch
    (no validation, no host-device copy) followed by ``synchronize()``.
    """

    name: str
    net: Network
    batch_size: int
    model: object
    batch: object
    X: np.ndarray
    y: np.ndarray
    max_rel_error: float

    @property
    def flops(self):
        """Flops of the matrix products of one step (``net.step_flops``)."""
        return self.net.step_flops(self.batch_size)

    def step(self):
        """One SGD step at the timing learning rate, device work finished."""
        loss = self.model.step_prepared(self.batch, TIMING_LR)
        self.model.synchronize()
        return loss

    def user_step(self):
        """One SGD step as a user calls it, device work finished: an implementation's public
        ``step(X, y, lr)`` (validation and layout included), a peer's ``step_prepared`` on its
        own arrays (a peer's public surface is its framework's tensors)."""
        if self.name in peers.PEERS:
            loss = self.model.step_prepared(self.batch, TIMING_LR)
        else:
            loss = self.model.step(self.X, self.y, TIMING_LR)
        self.model.synchronize()
        return loss

    def loss_and_grads(self):
        """Loss and host gradients of the prepared batch (implementations only, not peers)."""
        out = self.model.loss_and_grads_prepared(self.batch)
        self.model.synchronize()
        return out


def build(name, net, batch_size, *, seed=0, warmup=WARMUP_STEPS, warm_batch=None, check=True,
          check_rows=None, twin=True, threads=None, device="cpu"):
    """A :class:`Point` for contestant ``name`` on ``net`` at ``batch_size``.

    Builds the model from ``net.init(seed)`` and the batch from ``grid_batch(net, batch_size,
    seed)``, checks agreement with the reference on that batch (``check``; on its first
    ``check_rows`` rows when given), then takes ``warmup`` untimed steps on it, or on a
    ``warm_batch``-row batch when given. The peak-memory benchmarks use ``check_rows`` and
    ``warm_batch`` so that setup never holds the working set of a step on the full batch.
    ``twin=False`` leaves out the float64 twin check of a float32 point (see
    :func:`_check_point`; it compiles the float64 code too). ``threads``, ``device``: see
    :func:`make_model`.
    Raises ValueError (:class:`DisagreementError`) for a wrong answer, and
    ``bpbench.UnavailableError`` / RuntimeError when the contestant cannot run here.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    params = net.init(seed=seed)
    X, y = grid_batch(net, batch_size, seed)
    model = make_model(name, net, params, threads=threads, device=device)
    max_err = float("nan")
    if check:
        rows = batch_size if check_rows is None else min(int(check_rows), batch_size)
        max_err = _check_point(name, model, net, params, X[:rows], y[:rows], twin, threads,
                               device)
    batch = model.prepare(X, y)
    if warmup:
        warm = batch
        if warm_batch is not None:
            warm = model.prepare(*grid_batch(net, warm_batch, seed + 1))
        for _ in range(warmup):
            model.step_prepared(warm, TIMING_LR)
        model.synchronize()
    return Point(name, net, batch_size, model, batch, X, y, max_err)


def _malloc_trim():
    """Hand free heap memory back to the OS (glibc's malloc_trim); False where there is none."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:
        return False
    trim(0)
    return True


def reset_peak_rss():
    """Reset the process's peak resident set size to its current size; True if it could.

    Linux only (``/proc/self/clear_refs``, value 5, kernel >= 4.0): afterwards
    ``getrusage().ru_maxrss`` -- what asv's ``peakmem_`` benchmarks report -- counts from now,
    so the transient peaks of setup (JIT compilation, imports, data generation) do not hide
    the peak of the call that follows. Garbage is collected and free heap memory handed back
    to the OS first (glibc), so the call cannot silently reuse memory setup had freed but
    still held. Elsewhere it does nothing and returns False.
    """
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
