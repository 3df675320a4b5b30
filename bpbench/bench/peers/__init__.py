"""Peers: the same training step written with the frameworks a user would otherwise pick.

A peer is not an implementation of the contract (the registry does not list it); it exists so
that bpbench's implementations are timed beside what users really run. Every peer has the same
surface, which the timing engine and the checks use:

``name``                           its contestant name
``net``                            the :class:`bpbench.Network` it was built for
``threads``                        the CPU threads it was given (the same count as everyone else)
``compile_seconds``                seconds its warm-up spent compiling (None for eager peers;
                                   compiled peers also keep ``compile_log``: batch shape ->
                                   seconds of the first, compiling, step at that shape)
``prepare(X, y) -> batch``         the batch in the peer's own arrays (outside any clock)
``step_prepared(batch, lr) -> float``   one SGD step, the loss before it read back as a float
``synchronize()``                  wait for queued device work
``loss_and_grads(X, y)``           (loss, [(dW (n_in, n_out), db (n_out,)), ...]) as NumPy arrays
                                   in bpbench's layout, from the peer's own autodiff: what the
                                   agreement check compares with the float64 reference
``params()``                       [(W, b), ...] in bpbench's layout
``train_epochs(X, y, lr, epochs, batch_size, seed, target_loss=None) -> [epoch losses]``
                                   the peer's own training loop over the same batches as
                                   :func:`bpbench.train` (one ``default_rng(seed)`` permutation
                                   per epoch, consecutive batches, sample-weighted epoch loss,
                                   stop at the first epoch at or below ``target_loss``)

The peers: ``torch`` (PyTorch eager, :mod:`.torch_eager`), ``torch_compile`` (the whole step as
one ``torch.compile`` graph, :mod:`.torch_compile`) and ``jax`` (the whole step under
``jax.jit``, :mod:`.jax_peer`). Peers import their framework lazily: importing this package
imports neither PyTorch nor JAX. They are not candidates of :func:`bpbench.fastest` (its
answer must honour the contract); ``bpbench compare`` and
``bpbench goals`` time them beside the implementations.
"""

from __future__ import annotations

import importlib

#: peer name -> ("module:Class", what to install when it is missing)
PEERS = {
    "torch": ("bpbench.bench.peers.torch_eager:TorchPeer", "pip install -e '.[peers]'"),
    "torch_compile": ("bpbench.bench.peers.torch_compile:TorchCompilePeer",
                      "pip install -e '.[peers]'"),
    "jax": ("bpbench.bench.peers.jax_peer:JaxPeer", "pip install -e '.[peers]'"),
}

#: the peers that compile for each batch shape in their first step at it (a benchmark must warm
#: them up on the shape it times, or the compilation lands inside the measured call)
COMPILED = ("torch_compile", "jax")

#: peer name -> one line saying what is timed (``bpbench list``)
DESCRIPTIONS = {
    "torch": "PyTorch eager: nn.Sequential, torch.optim.SGD, loss.item()",
    "torch_compile": "PyTorch torch.compile (Inductor): the whole SGD step as one graph",
    "jax": "JAX jax.jit: the whole SGD step, parameters donated, float(loss)",
}


def names():
    """Every peer name, in display order."""
    return list(PEERS)


def describe(name):
    """One line saying what peer ``name`` runs (no framework is imported)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return DESCRIPTIONS[name]


def unavailable(name, device="cpu", threads=None):
    """None when peer ``name`` can run on ``device`` (with ``threads``) here, else why not.

    A sentence: not installed (and what to install), no such device, or a thread count the
    framework cannot honour in this process (JAX: see :mod:`bpbench.bench.peers.jax_peer`).
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return _module(name).unavailable(device, threads)


def make(name, net, params, *, threads, device="cpu"):
    """A peer holding a copy of ``params`` for ``net``, using ``threads`` CPU threads."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    target = PEERS[name][0]
    return getattr(_module(name), target.partition(":")[2])(net, params, device=device,
                                                            threads=threads)


def _module(name):
    return importlib.import_module(PEERS[name][0].partition(":")[0])
