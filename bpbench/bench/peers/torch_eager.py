"""PyTorch eager as a peer: the same network, parameters and batch, trained as PyTorch users do.

``torch.nn.Sequential`` + ``torch.optim.SGD`` in eager mode, with the peer surface of
:mod:`bpbench.bench.peers`. Optional: install the ``peers`` extra.
"""

from __future__ import annotations

import importlib.util

import numpy as np


def unavailable(device="cpu", threads=None):
    """None when PyTorch can run on ``device`` here, else why not (a sentence).

    ``threads``: any count is fine (``torch.set_num_threads``).
    """
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install -e '.[peers]')"
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            return "PyTorch sees no CUDA device"
    return None


class TorchPeer:
    """One SGD step in PyTorch eager mode on a copy of bpbench parameters.

    ``device``: ``"cpu"`` or ``"cuda"``. ``threads``: intra-op threads on the CPU (None leaves
    PyTorch's default). On CUDA, TF32 is switched off so fp32 means fp32, as in bpbench.
    The step reads the loss back with ``.item()``, as bpbench's ``step`` returns a float.
    """

    name = "torch"
    #: eager mode compiles nothing
    compile_seconds = None

    def __init__(self, net, params, device="cpu", threads=None):
        import torch
        from torch import nn

        reason = unavailable(device)
        if reason:
            raise RuntimeError(reason)
        self.threads = threads
        if threads is not None:
            torch.set_num_threads(int(threads))
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.torch = torch
        self.net = net
        self.device = torch.device(device)
        self.dtype = getattr(torch, net.dtype.name)
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
        layers = []
        for layer, (W, b) in enumerate(params):
            lin = nn.Linear(W.shape[0], W.shape[1], device=self.device, dtype=self.dtype)
            with torch.no_grad():  # torch keeps W as (out, in)
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T, net.dtype)))
                lin.bias.copy_(torch.from_numpy(np.asarray(b, net.dtype)))
            layers.append(lin)
            if layer < net.n_layers - 1:
                layers.append(acts[net.activations[layer]]())
        self.module = nn.Sequential(*layers)
        self.loss_fn = nn.MSELoss() if net.loss == "mse" else nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=0.01)

    def prepare(self, X, y):
        """Batch as device tensors (copied once, outside any timing)."""
        torch = self.torch
        Xt = torch.as_tensor(np.asarray(X, self.net.dtype), device=self.device)
        if self.net.loss == "cross_entropy":
            yt = torch.as_tensor(np.asarray(y, np.int64), device=self.device)
        else:
            yt = torch.as_tensor(np.asarray(y, self.net.dtype), device=self.device)
        return Xt, yt

    def step_prepared(self, batch, lr):
        X, y = batch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.module(X), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def step(self, X, y, lr):
        return self.step_prepared(self.prepare(X, y), lr)

    def loss_and_grads(self, X, y):
        """Loss and [(dW, db)] in bpbench's layout from PyTorch's autograd (no update)."""
        Xt, yt = self.prepare(X, y)
        self.module.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.module(Xt), yt)
        loss.backward()
        grads = [(m.weight.grad.detach().cpu().numpy().T.copy(),
                  m.bias.grad.detach().cpu().numpy().copy()) for m in self._linears()]
        self.module.zero_grad(set_to_none=True)
        return float(loss.item()), grads

    def train_epochs(self, X, y, lr, epochs, batch_size, seed=0, target_loss=None):
        """PyTorch's own loop over :func:`bpbench.train`'s batches; the per-epoch losses.

        One ``numpy.random.default_rng(seed)`` permutation per epoch, consecutive batches of
        ``batch_size`` rows (the last may be shorter), one SGD step each; the epoch loss is the
        sample-weighted mean of the batch losses, each read back before its update. Stops after
        ``epochs`` epochs or at the first epoch whose loss is <= ``target_loss``.
        """
        Xt, yt = self.prepare(X, y)
        n = Xt.shape[0]
        rng = np.random.default_rng(seed)
        history = []
        for _ in range(epochs):
            order = self.torch.as_tensor(rng.permutation(n), device=self.device)
            Xe, ye = Xt[order], yt[order]
            total = 0.0
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                total += self.step_prepared((Xe[start:stop], ye[start:stop]), lr) * (stop - start)
            history.append(total / n)
            if target_loss is not None and history[-1] <= target_loss:
                break
        return history

    def _linears(self):
        return [m for m in self.module if hasattr(m, "weight")]

    def params(self):
        """Host copy in bpbench's layout: [(W (n_in, n_out), b), ...]."""
        return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
                for m in self._linears()]

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
