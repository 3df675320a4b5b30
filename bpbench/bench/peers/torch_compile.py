"""PyTorch with ``torch.compile`` as a peer: the whole SGD step compiled into one graph.

PyTorch's advice is to compile the highest-level function there is: the training step with its
optimizer update, without the loop. Written imperatively (``zero_grad``, ``loss.backward()``,
``optimizer.step()``), that function breaks into several graphs with Python between them --
Dynamo does not trace ``Tensor.backward()`` or ``Optimizer.zero_grad`` (``TORCH_LOGS=
graph_breaks`` lists them) -- which costs most at small batches, where the step is short. So
this peer writes the step functionally, as PyTorch documents ``torch.func`` transforms for use
inside ``torch.compile``: ``torch.func.grad_and_value`` of the loss of
``torch.func.functional_call(module, params, X)``, then ``p -= lr * g`` (``torch.optim.SGD``
without momentum), all in one function compiled with ``fullgraph=True`` (a graph break is an
error, not a silent fallback). It runs on the same ``nn.Sequential`` as the eager peer
(:class:`~bpbench.bench.peers.torch_eager.TorchPeer`).

Compilation (Dynamo, AOTAutograd, Inductor's generated C++) happens in the first step at each
batch shape -- the benchmarks' warm-up -- and is timed: ``compile_seconds`` is the sum of those
first steps, ``compile_log`` maps each batch shape to its seconds. Inductor keeps a cache of
compiled graphs on disk, so a shape compiled by an earlier process costs less.

Recompilation:

- ``lr`` is a 0-d tensor argument of the compiled step, refilled only when it changes: a new
  learning rate runs the same compiled code (a Python float would be guarded as a constant);
- shapes are static (``dynamic=False``): a new batch size compiles once more. The short last
  batch of an epoch in :meth:`train_epochs` is such a shape: one extra compile, in the first
  epoch, counted in ``compile_seconds``;
- Dynamo keeps compiled code per Python code object, with a limit on entries per object (then
  it silently runs eagerly). Each peer therefore compiles its own copy of the step function
  (:func:`_own_code`), so building many peers in one process (the benchmark grid, the tests)
  never reaches that limit and never shares guards with another peer.

``loss_and_grads`` (what the benchmarks check against the float64 reference) is compiled too,
from the same loss function without the update, so the check runs Inductor's code, not eager.
Optional: install the ``peers`` extra. Inductor on the CPU needs a C++ compiler.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
import types

from .torch_eager import TorchPeer


def unavailable(device="cpu", threads=None):
    """None when ``torch.compile`` can run on ``device`` here, else why not (a sentence).

    ``threads``: any count is fine (``torch.set_num_threads``).
    """
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install -e '.[peers]')"
    if device != "cpu":
        return f"the torch_compile peer runs on the CPU only, not on {device!r}"
    # Inductor's CPU backend compiles generated C++ with $CXX, else g++ (clang++ on macOS)
    cxx = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
    if shutil.which(cxx) is None:
        return (f"torch.compile's CPU backend needs a C++ compiler: {cxx!r} not found "
                "(install one or set CXX)")
    return None


def _own_code(fn):
    """A copy of function ``fn`` with its own code object (Dynamo caches per code object)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def _loss_and_grads(module, loss_fn, params, X, y):
    """(loss, {name: dL/dparam}) of ``loss_fn(module(X), y)`` with ``params`` swapped in."""
    import torch

    def loss_of(p):
        return loss_fn(torch.func.functional_call(module, p, (X,)), y)

    grads, loss = torch.func.grad_and_value(loss_of)(params)
    return loss, grads


def _sgd_step(module, loss_fn, params, X, y, lr):
    """One SGD step in place on ``params`` (``p -= lr * g``); the loss before it (0-d tensor)."""
    import torch

    def loss_of(p):
        return loss_fn(torch.func.functional_call(module, p, (X,)), y)

    grads, loss = torch.func.grad_and_value(loss_of)(params)
    with torch.no_grad():
        for name, p in params.items():
            p.sub_(lr * grads[name])
    return loss


class TorchCompilePeer(TorchPeer):
    """One SGD step compiled with ``torch.compile`` (Inductor) on a copy of bpbench parameters.

    ``threads``: intra-op threads (``torch.set_num_threads``, before compiling: Inductor's
    generated loops use the count current at compile time). CPU only. The step reads the loss
    back with ``.item()``, as bpbench's ``step`` returns a float.
    """

    name = "torch_compile"

    def __init__(self, net, params, device="cpu", threads=None):
        reason = unavailable(device)
        if reason:
            raise RuntimeError(reason)
        super().__init__(net, params, device=device, threads=threads)
        torch = self.torch
        # the module's parameters, detached: updated in place by the compiled step, so
        # params() (which reads the module) sees every update
        self._params = {k: v.detach() for k, v in self.module.named_parameters()}
        self._names = [(f"{i}.weight", f"{i}.bias") for i, m in enumerate(self.module)
                       if hasattr(m, "weight")]
        self._lr = torch.zeros((), dtype=self.dtype, device=self.device)
        self._lr_value = None
        self._step = torch.compile(_own_code(_sgd_step), fullgraph=True, dynamic=False)
        self._grads = torch.compile(_own_code(_loss_and_grads), fullgraph=True, dynamic=False)
        self.compile_seconds = 0.0
        #: batch shape -> seconds of the first (compiling) step at that shape
        self.compile_log = {}

    def step_prepared(self, batch, lr):
        X, y = batch
        if lr != self._lr_value:  # a new value in the same tensor: no recompilation
            self._lr.fill_(lr)
            self._lr_value = lr
        shape = tuple(X.shape)
        if shape in self.compile_log:
            return self._step(self.module, self.loss_fn, self._params, X, y, self._lr).item()
        t0 = time.perf_counter()
        loss = self._step(self.module, self.loss_fn, self._params, X, y, self._lr).item()
        seconds = time.perf_counter() - t0
        self.compile_log[shape] = seconds
        self.compile_seconds += seconds
        return loss

    def loss_and_grads(self, X, y):
        """Loss and [(dW, db)] in bpbench's layout from the compiled autodiff (no update)."""
        Xt, yt = self.prepare(X, y)
        loss, grads = self._grads(self.module, self.loss_fn, self._params, Xt, yt)
        out = [(grads[w].detach().cpu().numpy().T.copy(), grads[b].detach().cpu().numpy().copy())
               for w, b in self._names]
        return float(loss.item()), out
