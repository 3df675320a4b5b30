"""PyTorch as a peer: the same network, parameters and batch, trained the way PyTorch users do.

Not an implementation of the contract (it is not cross-validated by the registry); it exists so
benchmarks can put bpbench's contestants side by side with ``torch.nn.Sequential`` +
``torch.optim.SGD`` in eager mode. Optional: install the ``peers`` extra. Everything here has the
``prepare`` / ``step_prepared`` / ``synchronize`` surface that
:func:`bpbench.bench.timing.time_step` times.
"""

from __future__ import annotations

import importlib.util

import numpy as np


def torch_unavailable(device="cpu"):
    """None when PyTorch can run on ``device`` here, else why not (a sentence)."""
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

    def __init__(self, net, params, device="cpu", threads=None):
        import torch
        from torch import nn

        reason = torch_unavailable(device)
        if reason:
            raise RuntimeError(reason)
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

    def params(self):
        """Host copy in bpbench's layout: [(W (n_in, n_out), b), ...]."""
        lins = [m for m in self.module if hasattr(m, "weight")]
        return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
                for m in lins]

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
