"""Checks of the ``cuda`` implementation on Numba's CUDA simulator, run as a script.

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=. python tests/cuda_sim_checks.py [CHECK ... | --list]

The simulator must be switched on before Numba is imported, so this runs in its own process
(tests/test_cuda_sim.py starts it). Every check compares against something independent of the
kernels: the float64 reference (bpbench.reference), the ``numpy`` implementation, hand-derived
values. Prints ``PASS <name>`` per check and exits non-zero on the first failure, so the caller
can verify which checks ran. Checks raise :class:`CheckFailed` explicitly (no ``assert``
statements: ``python -O`` would strip them; tests/test_cuda_sim.py runs this script with -O).
The simulator runs every thread in Python: shapes are tiny, but the tile constants are the
real ones, and the widths cross them (1, TILE + 1, BLOCK + 1).
"""

from __future__ import annotations

import os
import sys
import time

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    sys.exit("set NUMBA_ENABLE_CUDASIM=1 in the environment before running this script")

import numpy as np  # noqa: E402

import bpbench  # noqa: E402
from bpbench import reference  # noqa: E402
from bpbench.impls import _cuda_kernels as K  # noqa: E402

BOUND = {"float64": 1e-10, "float32": 1e-4}


class CheckFailed(Exception):
    """A check did not hold (raised explicitly: ``python -O`` strips assert statements)."""


def check(condition, message):
    """Raise CheckFailed(message) unless condition holds."""
    if not condition:
        raise CheckFailed(message)


def rel_err(got, want):
    """||got - want|| / ||want|| (absolute error when want is all zeros)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"shape {got.shape} != reference shape {want.shape}")
    scale = np.linalg.norm(want)
    diff = np.linalg.norm(got - want)
    return diff / scale if scale > 0 else diff


def data(net, batch, seed=1):
    """A batch for net: X (batch, sizes[0]) and targets, float32-rounded when net is float32."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(batch, net.sizes[0])).astype(net.dtype)
    if net.loss == "cross_entropy":
        y = rng.integers(0, net.sizes[-1], size=batch)
    else:
        y = rng.normal(size=(batch, net.sizes[-1])).astype(net.dtype)
    return X, y


def assert_grads_agree(net, loss, grads, params, X, y, what):
    ref_loss, ref_grads = reference.loss_and_grads(net, params, X, y)
    bound = BOUND[net.dtype.name]
    err = abs(loss - ref_loss) / max(abs(ref_loss), 1e-300)
    check(err <= bound, f"{what}: loss {loss} vs reference {ref_loss} (rel {err:.2e})")
    check(len(grads) == net.n_layers, f"{what}: {len(grads)} gradient pairs")
    for layer, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads, strict=True)):
        check(dW.dtype == net.dtype and db.dtype == net.dtype, f"{what}: dtype {dW.dtype}")
        for name, g, r in (("dW", dW, rW), ("db", db, rb)):
            e = rel_err(g, r)
            check(e <= bound, f"{what}: layer {layer} {name} rel error {e:.2e} > {bound}")


# ---------------------------------------------------------------------------- the checks
def check_agreement(dtype, loss, sizes, batch, forward=False):
    """loss_and_grads (and optionally forward) against the float64 reference."""
    # one hidden activation per layer: every activation in one network (relu last, after the
    # width-1 sigmoid, so the narrow layer can't die)
    acts = ("tanh", "sigmoid", "relu", "tanh")[:len(sizes) - 2]
    net = bpbench.Network(sizes, activation=acts, loss=loss, dtype=dtype)
    params = net.init(seed=3)
    X, y = data(net, batch)
    model = bpbench.get("cuda")(net, params)
    what = f"{dtype} {loss} {sizes} B={batch}"
    loss_value, grads = model.loss_and_grads(X, y)
    check(isinstance(loss_value, float), f"{what}: loss is {type(loss_value).__name__}")
    assert_grads_agree(net, loss_value, grads, params, X, y, what)
    if forward:
        out = model.forward(X)
        want = reference.forward(net, params, X)[-1]
        e = rel_err(out, want)
        check(out.shape == want.shape and e <= BOUND[dtype],
              f"{what}: forward rel error {e:.2e}")


def check_split_products():
    """Products split along the inner dimension (split-K: several blocks per output tile, the
    last one adds the partials, tickets reused launch after launch) against the reference.
    Inner widths of BLOCK + 1 and a batch of 3 TILE + 1 split the forward, input-gradient and
    weight-gradient products in two (the shapes are chosen for that; asserted below); widths
    of BLOCK + 1 also give the weight gradient two tiles of rows."""
    from bpbench.impls import numba_cuda

    sizes, batch = (K.BLOCK + 1, 3, K.BLOCK + 1, 2), 3 * K.TILE + 1
    for out_rows, inner in ((batch, sizes[0]), (sizes[1], sizes[2]), (sizes[0], batch)):
        tiles = -(-out_rows // K.BLOCK)
        check(numba_cuda._split(tiles, inner, K) > 1, "these shapes no longer split")
    net = bpbench.Network(sizes, activation=("tanh", "sigmoid"), loss="cross_entropy")
    params = net.init(seed=4)
    X, y = data(net, batch, seed=2)
    model = bpbench.get("cuda")(net, params)
    loss, grads = model.loss_and_grads(X, y)
    assert_grads_agree(net, loss, grads, params, X, y, f"split {sizes} B={batch}")


def check_sgd_matches_numpy(dtype, epoch):
    """Two plain steps, then (with ``epoch``) one epoch through train() (the device-side epoch
    path, with a short last batch), against the numpy implementation doing the same."""
    net = bpbench.Network((4, 17, 3), activation="tanh", loss="mse", dtype=dtype)
    params = net.init(seed=5)
    X, y = data(net, 5, seed=6)
    cuda_model = bpbench.get("cuda")(net, params)
    numpy_model = bpbench.get("numpy")(net, params)
    bound = BOUND[dtype]
    n_steps = 2
    for i in range(n_steps):
        lc = cuda_model.step(X, y, 0.1)
        ln = numpy_model.step(X, y, 0.1)
        check(abs(lc - ln) <= bound * abs(ln), f"step {i}: loss {lc} vs numpy {ln}")
    n_total = n_steps
    if epoch:
        hc = bpbench.train(cuda_model, X, y, lr=0.1, epochs=1, batch_size=2, seed=7)
        hn = bpbench.train(numpy_model, X, y, lr=0.1, epochs=1, batch_size=2, seed=7)
        n_total += 3  # 5 rows in batches of 2: 3 steps in the epoch
        check(abs(hc[0] - hn[0]) <= bound * n_total * abs(hn[0]), f"epoch loss {hc} vs {hn}")
    pairs = zip(cuda_model.params(), numpy_model.params(), strict=True)
    for layer, ((W, b), (Wn, bn)) in enumerate(pairs):
        for name, g, r in (("W", W, Wn), ("b", b, bn)):
            e = rel_err(g, r)
            check(e <= bound * n_total, f"layer {layer} {name} after {n_total} steps: {e:.2e}")
    # and the update really happened: the parameters moved away from the start
    for layer, ((W, b), (W0, b0)) in enumerate(zip(cuda_model.params(), params, strict=True)):
        check(rel_err(W, W0) > 1e-3 and rel_err(b, b0) > 1e-3,
              f"layer {layer}: the steps did not move W and b")


def check_stable_cross_entropy(dtype):
    """Logits of 1e4: finite loss and gradients equal to the stable reference."""
    net = bpbench.Network((2, 3), loss="cross_entropy", dtype=dtype)
    W = np.array([[1e4, -1e4, 0.0], [0.0, 5e3, -5e3]], dtype=dtype)
    params = [(W, np.zeros(3, dtype))]
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)  # logits up to 1e4
    y = np.array([1, 0, 2])
    model = bpbench.get("cuda")(net, params)
    loss, grads = model.loss_and_grads(X, y)
    check(np.isfinite(loss) and all(np.isfinite(g).all() for pair in grads for g in pair),
          f"{dtype} logits 1e4: non-finite loss {loss} or gradients")
    # by hand: row 0 logits (1e4, -1e4, 0), label 1 -> loss 2e4; row 1 (0, 5e3, -5e3), label 0
    # -> 5e3; row 2 (1e4, -5e3, -5e3), label 2 -> 1.5e4 (the other terms are below e**-5000)
    check(abs(loss - (2e4 + 5e3 + 1.5e4) / 3) <= 1e-6 * loss,
          f"{dtype} logits 1e4: loss {loss}, by hand {(2e4 + 5e3 + 1.5e4) / 3}")
    assert_grads_agree(net, loss, grads, params, X, y, f"{dtype} logits 1e4")
    # logits near 1e4 whose loss is O(1): catches m + log(s) - out[y], which cancels in float32
    W = np.array([[1e4, 1e4 - 1, 1e4 - 2], [0.0, 0.0, 0.0]], dtype=dtype)
    params = [(W, np.zeros(3, dtype))]
    X, y = np.array([[1.0, 0.0]], dtype=dtype), np.array([1])
    loss, grads = bpbench.get("cuda")(net, params).loss_and_grads(X, y)
    assert_grads_agree(net, loss, grads, params, X, y, f"{dtype} logits 1e4, loss O(1)")


def check_sigmoid_saturates(dtype):
    """Pre-activations of +-1e30 through a sigmoid: 0 and 1, as numpy gives, never an overflow
    (the simulator's math.exp raises where a GPU's returns inf; found by the fuzz suite)."""
    net = bpbench.Network((2, 3, 2), activation="sigmoid", loss="mse", dtype=dtype)
    params = net.init(seed=1)
    X = np.array([[1e30, -1e30], [-1e30, 1e30], [0.5, -0.5]], dtype=dtype)
    y = np.zeros((3, 2), dtype)
    model, oracle = bpbench.get("cuda")(net, params), bpbench.get("numpy")(net, params)
    out, want = model.forward(X), oracle.forward(X)
    check(np.isfinite(out).all() and rel_err(out, want) <= BOUND[dtype],
          f"{dtype} sigmoid at +-1e30: {out} vs numpy {want}")
    loss, grads = model.loss_and_grads(X, y)
    want_loss, want_grads = oracle.loss_and_grads(X, y)
    check(abs(loss - want_loss) <= BOUND[dtype] * abs(want_loss), f"loss {loss} vs {want_loss}")
    for layer, ((dW, db), (rW, rb)) in enumerate(zip(grads, want_grads, strict=True)):
        check(rel_err(dW, rW) <= BOUND[dtype] and rel_err(db, rb) <= BOUND[dtype],
              f"{dtype} sigmoid at +-1e30: layer {layer} gradients differ from numpy's")


def check_bad_input():
    """The shared interface validates before any kernel runs."""
    net = bpbench.Network((3, 2), loss="cross_entropy")
    model = bpbench.get("cuda")(net, net.init())
    cases = [
        (lambda: model.loss_and_grads(np.ones((2, 4)), [0, 1]), "X"),
        (lambda: model.step(np.ones((2, 3)), [0, 2], 0.1), "y"),
        (lambda: model.step(np.ones((2, 3)), [0, 1], -1.0), "lr"),
    ]
    for call, arg in cases:
        before = model.params()
        try:
            call()
        except ValueError as exc:
            check(str(exc).startswith(arg), f"message should name {arg}: {exc}")
        else:
            raise CheckFailed(f"bad {arg} was accepted")
        for (W, b), (W0, b0) in zip(model.params(), before, strict=True):
            check(np.array_equal(W, W0) and np.array_equal(b, b0),
                  f"the model changed although bad {arg} was refused")


def check_registry():
    """Under the simulator the registry lists cuda as available, get returns its class, and
    the class answers for itself: its availability says None here, and without the simulator
    (a fresh process) it says why not and names both remedies."""
    import subprocess

    from numba import config

    from bpbench.impls.numba_cuda import CudaImplementation

    check(config.ENABLE_CUDASIM, "the simulator is not on in this process")
    info = bpbench.implementations()["cuda"]
    check(info["available"] and info["reason"] is None and not info["broken"],
          f"cuda is not listed as available under the simulator: {info}")
    check("cuda" in bpbench.available(), f"available() lacks cuda: {bpbench.available()}")
    cls = bpbench.get("cuda")
    check(cls is CudaImplementation and cls.name == "cuda" and cls.description,
          f"get('cuda') returned {cls!r}")
    check(cls.availability() is None, f"availability under the simulator: {cls.availability()}")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("from bpbench.impls.numba_cuda import CudaImplementation as C\n"
            "print(C.availability())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    reason = out.stdout.strip()
    if reason != "None":  # a machine with a GPU has no reason to give
        check("NUMBA_ENABLE_CUDASIM" in reason and "GPU" in reason,
              f"without the simulator, cuda's reason should name both remedies: {out}")


CHECKS = {
    # widths 1 and TILE + 1 (17 = TILE + 1 in the products' inner and outer dimensions);
    # split_k adds widths of BLOCK + 1 and a batch spanning several TILE-deep steps
    "agree_f64_ce": lambda: check_agreement("float64", "cross_entropy", (3, 17, 1, 5, 2), 5,
                                            forward=True),
    "agree_f64_mse": lambda: check_agreement("float64", "mse", (2, 1, 17, 3), 4),
    "agree_f32_ce": lambda: check_agreement("float32", "cross_entropy", (3, 5, 1, 4, 3), 3,
                                            forward=True),
    "agree_f32_mse": lambda: check_agreement("float32", "mse", (2, 3, 1, 2), 5),
    "split_k": check_split_products,
    "sgd_f64": lambda: check_sgd_matches_numpy("float64", epoch=True),
    "sgd_f32": lambda: check_sgd_matches_numpy("float32", epoch=False),
    "stable_ce_f32": lambda: check_stable_cross_entropy("float32"),
    "stable_ce_f64": lambda: check_stable_cross_entropy("float64"),
    "sigmoid_f32": lambda: check_sigmoid_saturates("float32"),
    "sigmoid_f64": lambda: check_sigmoid_saturates("float64"),
    "bad_input": check_bad_input,
    "registry": check_registry,
}


def main(names):
    if names == ["--list"]:
        print(" ".join(CHECKS))
        return
    names = names or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        sys.exit(f"unknown checks {unknown}; known: {list(CHECKS)}")
    for name in names:
        t0 = time.perf_counter()
        CHECKS[name]()
        print(f"PASS {name} ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
