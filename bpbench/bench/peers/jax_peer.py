"""JAX as a peer: the whole SGD step as one ``jax.jit`` function, parameters donated.

Written as JAX's own examples write a training step: parameters a plain list of ``(W, b)``,
a pure loss function, ``jax.value_and_grad`` of it, the update ``p - lr * g`` mapped over the
parameters, all under one ``jax.jit`` with ``donate_argnums`` on the parameters (XLA may write
the new parameters over the old buffers). The loss is read back with ``float()``, which waits
for the step: bpbench's ``step`` returns a float too. ``lr`` is a traced argument, so a new
learning rate runs the same compiled code.

Compilation happens in the first step at each batch shape (JAX specialises on shapes), the
benchmarks' warm-up, and is timed: ``compile_seconds`` is the sum of those first steps,
``compile_log`` maps each batch shape to its seconds. In :meth:`train_epochs` the short last
batch of an epoch is a new shape: one extra compile, in the first epoch.

**float64**: JAX computes in float32 unless ``jax_enable_x64`` is on. Every call of a peer
runs inside ``jax.enable_x64(...)`` with the value its network needs (on for float64, off for
float32), so float32 and float64 peers live in one process and JAX's global setting is left
as the user had it.

**Threads**: XLA's CPU client starts its thread pools once per process, when JAX first runs
anything, with one thread per CPU the process may run on (``os.sched_getaffinity``). No
XLA_FLAGS setting changes that in jaxlib 0.10.2: with ``--xla_cpu_multi_thread_eigen=false``
the jax peer still computes on two threads on a 2-CPU machine (``XLA_FLAGS=...
bpbench goals --busy --depths 4 --batches 2048``), and
``intra_op_parallelism_threads`` is not an XLA flag (``XLA_FLAGS=--intra_op_parallelism_threads=1
python -c "import jax; jax.devices()"`` aborts: "Unknown flag in XLA_FLAGS"; without the
dashes it is ignored); a count cannot be set after the start. So a peer asking for
``threads`` fewer than the CPUs starts the
backend (if nothing has yet) with the calling thread's CPU affinity narrowed to the first
``threads`` of its CPUs, and restores the affinity at once: XLA sizes its pools to ``threads``
and its worker threads stay pinned to those CPUs (other contestants' threads are not pinned).
When the backend already runs with another count, the peer is unavailable, saying why.
Count threads at work with ``top -H`` or per-thread CPU times in ``/proc/self/task``.

Optional: install the ``peers`` extra (or ``jax``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time

import numpy as np

#: threads of XLA's CPU pools, once this module has started the backend (None before)
_started_threads = None


def _cpu_count():
    """CPUs this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _backend_running():
    """True when JAX's backends are already started in this process (by anyone)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another JAX: assume the worst, it runs
        return True


def backend_threads():
    """Threads of XLA's CPU pools in this process: None while JAX's backend is not started.

    Known exactly when this module started it; otherwise XLA took the CPUs the process may
    run on, assumed unchanged since.
    """
    if _started_threads is not None:
        return _started_threads
    return _cpu_count() if _backend_running() else None


def unavailable(device="cpu", threads=None):
    """None when a JAX peer with ``threads`` CPU threads can run here, else why not."""
    if importlib.util.find_spec("jax") is None:
        return "JAX is not installed (pip install -e '.[peers]')"
    if device != "cpu":
        return f"the jax peer runs on the CPU only, not on {device!r}"
    if threads is None:
        return None
    running = backend_threads()
    if running is not None:
        if running != threads:
            return (f"JAX's CPU backend already runs with {running} threads in this process "
                    f"(XLA sizes its thread pool once, when JAX first runs); the jax peer "
                    f"cannot use {threads}: run it in a fresh process")
        return None
    cpus = _cpu_count()
    if threads > cpus:
        return (f"this process may run on {cpus} CPUs: XLA gives JAX one thread per CPU, "
                f"so it cannot use {threads}")
    if threads < cpus and not hasattr(os, "sched_setaffinity"):
        return (f"XLA gives JAX one thread per CPU ({cpus}); fewer ({threads}) needs CPU "
                "affinity, which this OS does not offer")
    return None


def _start_backend(threads):
    """Start JAX's CPU backend with ``threads`` threads (see the module docstring)."""
    global _started_threads
    import jax

    if _backend_running():
        return
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if threads is None or cpus is None or threads >= len(cpus):
        jax.devices("cpu")
        _started_threads = _cpu_count()
        return
    # the pools' threads are created now, by this thread: they inherit its affinity
    os.sched_setaffinity(0, cpus[:threads])
    try:
        jax.devices("cpu")
    finally:
        os.sched_setaffinity(0, cpus)
    _started_threads = threads


# ---------------------------------------------------------------------------- the math
def _activation(name):
    import jax
    import jax.numpy as jnp

    # jax.nn.relu's derivative at 0 is 0, as the contract says (jnp.maximum's would be 1/2)
    return {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[name]


def _loss(params, X, y, activations, loss):
    """The network's loss: affine layers, hidden activations, then mean MSE or cross-entropy."""
    import jax
    import jax.numpy as jnp

    h = X
    for layer, (W, b) in enumerate(params):
        h = h @ W + b
        if layer < len(params) - 1:
            h = _activation(activations[layer])(h)
    if loss == "cross_entropy":
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return jnp.mean((h - y) ** 2)


def _loss_and_grads(params, X, y, *, activations, loss):
    import jax

    return jax.value_and_grad(_loss)(params, X, y, activations, loss)


def _sgd_step(params, X, y, lr, *, activations, loss):
    """(params - lr * grads, loss before the update)."""
    import jax

    value, grads = jax.value_and_grad(_loss)(params, X, y, activations, loss)
    new = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return new, value


class JaxPeer:
    """One SGD step as a ``jax.jit`` function on a copy of bpbench parameters (CPU).

    ``threads``: the CPU threads of XLA's pools (see the module docstring; None: one per CPU).
    """

    name = "jax"

    def __init__(self, net, params, device="cpu", threads=None):
        reason = unavailable(device, threads)
        if reason:
            raise RuntimeError(reason)
        _start_backend(threads)
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.jnp = jnp
        self.net = net
        self.threads = threads
        self._x64 = net.dtype.name == "float64"
        with self._precision():
            self._params = [(jnp.array(W, net.dtype), jnp.array(b, net.dtype))
                            for W, b in params]
        static = {"activations": tuple(net.activations), "loss": net.loss}
        # one jit per peer: its own cache, so compile_seconds is this peer's own compilation
        self._step = jax.jit(functools.partial(_sgd_step, **static), donate_argnums=0)
        self._grads = jax.jit(functools.partial(_loss_and_grads, **static))
        self._lr = None
        self._lr_value = None
        self.compile_seconds = 0.0
        #: batch shape -> seconds of the first (compiling) step at that shape
        self.compile_log = {}

    def _precision(self):
        """The x64 setting this peer's network needs, for the duration of a call."""
        return self.jax.enable_x64(self._x64)

    def prepare(self, X, y):
        """Batch as JAX arrays on the CPU device (copied once, outside any timing)."""
        y = np.asarray(y, np.int32) if self.net.loss == "cross_entropy" else \
            np.asarray(y, self.net.dtype)
        with self._precision():
            return (self.jax.device_put(np.asarray(X, self.net.dtype)), self.jax.device_put(y))

    def step_prepared(self, batch, lr):
        X, y = batch
        with self._precision():
            if lr != self._lr_value:  # a traced argument: a new value compiles nothing
                self._lr = self.jnp.asarray(lr, self.net.dtype)
                self._lr_value = lr
            shape = tuple(X.shape)
            if shape in self.compile_log:
                self._params, loss = self._step(self._params, X, y, self._lr)
                return float(loss)
            t0 = time.perf_counter()
            self._params, loss = self._step(self._params, X, y, self._lr)
            value = float(loss)
            seconds = time.perf_counter() - t0
        self.compile_log[shape] = seconds
        self.compile_seconds += seconds
        return value

    def step(self, X, y, lr):
        return self.step_prepared(self.prepare(X, y), lr)

    def loss_and_grads(self, X, y):
        """Loss and [(dW, db)] in bpbench's layout from ``jax.value_and_grad`` (no update)."""
        with self._precision():
            loss, grads = self._grads(self._params, *self.prepare(X, y))
            return float(loss), [(np.array(dW), np.array(db)) for dW, db in grads]

    def train_epochs(self, X, y, lr, epochs, batch_size, seed=0, target_loss=None):
        """JAX's own loop over :func:`bpbench.train`'s batches; the per-epoch losses.

        One ``numpy.random.default_rng(seed)`` permutation per epoch, consecutive batches of
        ``batch_size`` rows (the last may be shorter: one more compile), one jitted step each;
        the epoch loss is the sample-weighted mean of the batch losses, each read back before
        its update. Stops after ``epochs`` epochs or at the first epoch whose loss is
        <= ``target_loss``.
        """
        Xj, yj = self.prepare(X, y)
        n = Xj.shape[0]
        rng = np.random.default_rng(seed)
        history = []
        for _ in range(epochs):
            with self._precision():
                order = self.jax.device_put(rng.permutation(n).astype(np.int32))
                Xe, ye = Xj[order], yj[order]
            total = 0.0
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                with self._precision():
                    batch = (Xe[start:stop], ye[start:stop])
                total += self.step_prepared(batch, lr) * (stop - start)
            history.append(total / n)
            if target_loss is not None and history[-1] <= target_loss:
                break
        return history

    def params(self):
        """Host copy in bpbench's layout: [(W (n_in, n_out), b), ...]."""
        return [(np.array(W), np.array(b)) for W, b in self._params]

    def synchronize(self):
        self.jax.block_until_ready(self._params)
