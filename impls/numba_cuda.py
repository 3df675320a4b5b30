"""``cuda``: backprop on an NVIDIA GPU with Numba ``@cuda.jit`` kernels (or Numba's CUDA simulator).

Parameters, activations, deltas and gradients live in device memory for the life of the
instance. A ``step`` runs, per layer, one forward kernel (product + bias + activation), then one
loss kernel, then per layer one input-gradient kernel and one weight-gradient kernel whose
epilogue applies the SGD update (3 launches per layer in all); the only host round trip is
reading back the loss scalar. A product whose output has too few tiles to fill the GPU (small
batches; a narrow layer's weight gradient over a large batch) is split along its inner dimension
inside the same launch (split-K, see :mod:`bpbench.impls._cuda_kernels`); ``_split`` decides how
far. ``loss_and_grads``, ``forward`` and ``params`` copy back just what they return. ``run_epoch``
uploads the whole dataset once, permutes it on the device, and reads back the epoch's losses
once at the end.

The kernels are in :mod:`bpbench.impls._cuda_kernels`. Importing this module imports neither Numba
nor CUDA: that happens when the class is first checked or used.
"""

from __future__ import annotations

import os

import numpy as np

from bpbench import codes
from bpbench.interface import Implementation

#: how many batch sizes keep their device buffers at once (bounded memory)
_MAX_PLANS = 8


def _kernels():
    """The kernels module, imported on first use (imports numba.cuda)."""
    from . import _cuda_kernels
    return _cuda_kernels


def _blocks(n, per_block):
    """Blocks needed to cover n items, per_block at a time (ceiling division)."""
    return (n + per_block - 1) // per_block


def _loss_threads(work, most):
    """Threads of the one-block loss kernel: a power of two, no more than the work needs."""
    threads = 32
    while threads < work and threads < most:
        threads *= 2
    return threads


def _split(tiles, inner, K):
    """How many inner-dimension slices (blocks per output tile) a product gets: 1 when its
    ``tiles`` output tiles already fill the GPU or ``inner`` is short, else enough slices to
    reach about SPLIT_TARGET_BLOCKS blocks, each at least SPLIT_MIN_STEPS TILE-deep steps."""
    steps = _blocks(inner, K.TILE)
    if tiles >= K.SPLIT_TARGET_BLOCKS or steps < 2 * K.SPLIT_MIN_STEPS:
        return 1
    wanted = min(steps // K.SPLIT_MIN_STEPS, _blocks(K.SPLIT_TARGET_BLOCKS, tiles))
    return _blocks(steps, _blocks(steps, wanted))  # as many slices as needed, none empty


def _launcher(kernel, grid, block, simulated):
    """kernel configured for (grid, block), ready to call with the kernel's arguments.

    On a GPU, ``kernel[grid, block]`` is a fresh launch configuration worth keeping (it saves
    rebuilding it on every launch). The simulator's ``kernel[grid, block]`` instead reconfigures
    the kernel object itself and returns it, so there the configuration is applied per call.
    """
    if simulated:
        return lambda *args: kernel[grid, block](*args)
    return kernel[grid, block]


class _Plan:
    """Device buffers and launch configurations for one batch size B.

    acts[l] (B, sizes[l]) for l = 1..L: layer outputs (acts[0] is the batch itself);
    deltas[l] (B, sizes[l]): dL/dz of layer l; loss (1,) device scalar. forward, input_grad,
    weight_grad: per layer, (configured kernel, nsplit); work and tickets: the split-K
    workspace and per-tile tickets, shared by all products (they run one after another).
    """

    def __init__(self, net, batch_size, cuda, K, simulated):
        sizes, dt = net.sizes, net.dtype
        self.acts = [None] + [cuda.device_array((batch_size, n), dt) for n in sizes[1:]]
        self.deltas = [None] + [cuda.device_array((batch_size, n), dt) for n in sizes[1:]]
        self.loss = cuda.device_array(1, dt)
        L = net.n_layers
        work, tickets = 1, 1

        def product(kernel, out_rows, out_cols, inner):
            nonlocal work, tickets
            grid = (_blocks(out_rows, K.BLOCK), _blocks(out_cols, K.BLOCK))
            nsplit = _split(grid[0] * grid[1], inner, K)
            if nsplit > 1:
                work = max(work, grid[0] * grid[1] * nsplit * K.SLICE)
                tickets = max(tickets, grid[0] * grid[1])
            return _launcher(kernel, grid + (nsplit,), (K.TILE, K.TILE), simulated), nsplit

        # layer k maps sizes[k] -> sizes[k + 1]
        self.forward = [product(K.forward_layer, batch_size, sizes[k + 1], sizes[k])
                        for k in range(L)]
        self.input_grad = [product(K.input_grad, batch_size, sizes[k], sizes[k + 1])
                           for k in range(L)]
        self.weight_grad = [product(K.weight_grad, sizes[k], sizes[k + 1], batch_size)
                            for k in range(L)]
        self.work = cuda.device_array(work, dt)
        self.tickets = cuda.to_device(np.zeros(tickets, np.int32))  # the kernels keep them 0
        if net.loss == "cross_entropy":
            threads = _loss_threads(batch_size, K.LOSS_THREADS)
            self.loss_kernel = _launcher(K.cross_entropy_grad, 1, threads, simulated)
        else:
            threads = _loss_threads(batch_size * sizes[-1], K.LOSS_THREADS)
            self.loss_kernel = _launcher(K.mse_grad, 1, threads, simulated)


class CudaImplementation(Implementation):
    name = "cuda"
    description = ("Numba @cuda.jit kernels: tiled shared-memory products with register "
                   "micro-tiles, fused bias/activation and SGD epilogues, device-resident state")

    @classmethod
    def availability(cls):
        """None on a CUDA GPU or under the simulator; else why not and both ways to fix it."""
        install = ("install the GPU extra that matches the driver's CUDA version: "
                   "pip install 'bpbench[cuda13]' (or [cuda12])")
        try:
            from numba import config, cuda
        except ImportError as exc:
            return f"numba-cuda is not importable ({exc}); {install}"
        if "numba_cuda" not in (getattr(cuda, "__file__", "") or ""):
            # Numba's own, deprecated CUDA target answers to the same name: not this one
            return (f"numba.cuda is Numba's deprecated built-in CUDA target, not numba-cuda; "
                    f"{install}")
        if config.ENABLE_CUDASIM:
            return None
        if cuda.is_available():
            return None
        late = (" (NUMBA_ENABLE_CUDASIM=1 is set, but only after numba was imported: set it "
                "before starting Python)" if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else "")
        return ("no usable CUDA GPU here (numba.cuda.is_available() is False)" + late + ": run on "
                "a machine with an NVIDIA GPU and its driver, or set NUMBA_ENABLE_CUDASIM=1 in "
                "the environment before starting Python to use Numba's CUDA simulator (exact but "
                "very slow: for tests with tiny shapes)")

    # ------------------------------------------------------------------ state
    def _load_params(self, params):
        from numba import config, cuda

        self._cuda = cuda
        self._simulated = bool(config.ENABLE_CUDASIM)
        self._K = _kernels()
        net = self.net
        self._scalar = net.dtype.type  # lr arrives as a Python float: cast it per dtype
        codes.require(self.name, net, self._K.ACTIVATIONS, self._K.LOSSES)
        self._acts = [codes.ACTIVATION_CODES[a] for a in net.activations]
        self._W = [cuda.to_device(W) for W, _ in params]
        self._b = [cuda.to_device(b) for _, b in params]
        self._grads = None  # (dW, db) device buffers, made by the first loss_and_grads
        self._plans = {}
        # page-locked: the one copy a step makes back to the host is a direct DMA
        self._loss_host = cuda.pinned_array(1, net.dtype)

    def _plan(self, batch_size):
        plan = self._plans.get(batch_size)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[batch_size] = _Plan(self.net, batch_size, self._cuda, self._K,
                                                      self._simulated)
        return plan

    def _get_params(self):
        return [(W.copy_to_host(), b.copy_to_host()) for W, b in zip(self._W, self._b, strict=True)]

    def _to_device(self, X, y):
        return self._cuda.to_device(X), self._cuda.to_device(y)

    def synchronize(self):
        self._cuda.synchronize()

    # ------------------------------------------------------------------ kernels in order
    def _run_forward(self, X, plan):
        """Launch the forward pass; returns the output layer's device buffer."""
        h = X
        last = self.net.n_layers - 1
        for layer in range(self.net.n_layers):
            z = plan.acts[layer + 1]
            act = self._acts[layer] if layer < last else codes.IDENTITY
            launch, nsplit = plan.forward[layer]
            launch(h, self._W[layer], self._b[layer], z, act, plan.work, plan.tickets, nsplit)
            h = z
        return h

    def _run_backward(self, X, y, plan, loss_out, slot, lr=None):
        """Forward, loss into loss_out[slot], backward; gradients into self._grads, or (with
        lr) the SGD update applied in place by the weight-gradient kernels."""
        out = self._run_forward(X, plan)
        L = self.net.n_layers
        plan.loss_kernel(out, y, plan.deltas[L], loss_out, slot)
        for layer in range(L - 1, -1, -1):
            delta = plan.deltas[layer + 1]
            h = X if layer == 0 else plan.acts[layer]
            if layer > 0:
                # uses W[layer] before the weight-gradient kernel below updates it (same stream)
                launch, nsplit = plan.input_grad[layer]
                launch(delta, self._W[layer], h, plan.deltas[layer], self._acts[layer - 1],
                       plan.work, plan.tickets, nsplit)
            launch, nsplit = plan.weight_grad[layer]
            if lr is None:
                dW, db = self._grads[layer]
                launch(h, delta, dW, db, self._scalar(1), 0, plan.work, plan.tickets, nsplit)
            else:
                launch(h, delta, self._W[layer], self._b[layer], lr, 1, plan.work, plan.tickets,
                       nsplit)

    # ------------------------------------------------------------------ hooks
    def _forward(self, X):
        X_d = self._cuda.to_device(X)
        return self._run_forward(X_d, self._plan(X.shape[0])).copy_to_host()

    def _loss_and_grads(self, data):
        X, y = data
        if self._grads is None:
            cuda = self._cuda
            self._grads = [(cuda.device_array_like(W), cuda.device_array_like(b))
                           for W, b in zip(self._W, self._b, strict=True)]
        plan = self._plan(X.shape[0])
        self._run_backward(X, y, plan, plan.loss, 0)
        grads = [(dW.copy_to_host(), db.copy_to_host()) for dW, db in self._grads]
        return float(plan.loss.copy_to_host(self._loss_host)[0]), grads

    def _step(self, data, lr):
        X, y = data
        plan = self._plan(X.shape[0])
        self._run_backward(X, y, plan, plan.loss, 0, self._scalar(lr))
        # the one host round trip of a step: copy_to_host waits for the kernels above
        return float(plan.loss.copy_to_host(self._loss_host)[0])

    def _run_epoch(self, X, y, order, batch_size, lr):
        """The whole dataset goes to the device once and is permuted there (one gather per
        array); batches are then contiguous views of it, and the per-batch losses collect in a
        device array read back once. Same batches and math as the default loop of steps."""
        cuda, K = self._cuda, self._K
        n = len(order)
        order_d = cuda.to_device(order)
        X_all, y_all = cuda.to_device(X), cuda.to_device(y)
        Xp = cuda.device_array_like(X_all)
        yp = cuda.device_array_like(y_all)
        tile = (K.GATHER_TILE, K.GATHER_TILE)
        K.gather_rows[(_blocks(n, K.GATHER_TILE), _blocks(X.shape[1], K.GATHER_TILE)), tile](
            X_all, order_d, Xp)
        if y.ndim == 1:
            threads = K.GATHER_TILE * K.GATHER_TILE
            K.gather_labels[_blocks(n, threads), threads](y_all, order_d, yp)
        else:
            K.gather_rows[(_blocks(n, K.GATHER_TILE), _blocks(y.shape[1], K.GATHER_TILE)),
                          tile](y_all, order_d, yp)
        n_batches = _blocks(n, batch_size)
        losses = cuda.device_array(n_batches, self.net.dtype)
        lr = self._scalar(lr)
        for i in range(n_batches):
            start = i * batch_size
            stop = min(start + batch_size, n)
            plan = self._plan(stop - start)
            self._run_backward(Xp[start:stop], yp[start:stop], plan, losses, i, lr)
        return losses.copy_to_host()
