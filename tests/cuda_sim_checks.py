"""Checks of the ``cuda`` implementation on Numba's CUDA simulator, run as a script.

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=. python tests/cuda_sim_checks.py [CHECK ... | --list]

The simulator must be switched on before Numba is imported, so this runs in its own process
(tests/test_cuda_sim.py starts it). Every check compares against something independent of the
kernels: the float64 reference (bpbench.reference), the ``numpy`` implementation, hand-derived
values. Prints ``PASS <name>`` per check and exits non-zero on the first failure, so the caller
can verify which checks ran. The simulator runs every thread in Python: shapes are tiny, but the
tile constants are the real ones, and the widths cross them (1, TILE + 1, BLOCK + 1).
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


def rel_err(got, want):
    """||got - want|| / ||want|| (absolute error when want is all zeros)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} != reference shape {want.shape}")
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
    assert err <= bound, f"{what}: loss {loss} vs reference {ref_loss} (rel {err:.2e})"
    assert len(grads) == net.n_layers, f"{what}: {len(grads)} gradient pairs"
    for layer, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads, strict=True)):
        assert dW.dtype == net.dtype and db.dtype == net.dtype, f"{what}: dtype {dW.dtype}"
        for name, g, r in (("dW", dW, rW), ("db", db, rb)):
            e = rel_err(g, r)
            assert e <= bound, f"{what}: layer {layer} {name} rel error {e:.2e} > {bound}"


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
    assert isinstance(loss_value, float)
    assert_grads_agree(net, loss_value, grads, params, X, y, what)
    if forward:
        out = model.forward(X)
        want = reference.forward(net, params, X)[-1]
        e = rel_err(out, want)
        assert out.shape == want.shape and e <= BOUND[dtype], f"{what}: forward rel error {e:.2e}"


def check_split_products():
    """Products split along the inner dimension (split-K: several blocks per output tile, the
    last one adds the partials, tickets reused launch after launch) against the reference.
    Inner widths of BLOCK + 1 and a batch of 3 TILE + 1 split the forward, input-gradient and
    weight-gradient products in two (the shapes are chosen for that; asserted below); widths
    of BLOCK + 1 also give the weight gradient two tiles of rows."""
    from impls import numba_cuda

    sizes, batch = (K.BLOCK + 1, 3, K.BLOCK + 1, 2), 3 * K.TILE + 1
    for out_rows, inner in ((batch, sizes[0]), (sizes[1], sizes[2]), (sizes[0], batch)):
        tiles = -(-out_rows // K.BLOCK)
        assert numba_cuda._split(tiles, inner, K) > 1, "these shapes no longer split"
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
        assert abs(lc - ln) <= bound * abs(ln), f"step {i}: loss {lc} vs numpy {ln}"
    n_total = n_steps
    if epoch:
        hc = bpbench.train(cuda_model, X, y, lr=0.1, epochs=1, batch_size=2, seed=7)
        hn = bpbench.train(numpy_model, X, y, lr=0.1, epochs=1, batch_size=2, seed=7)
        n_total += 3  # 5 rows in batches of 2: 3 steps in the epoch
        assert abs(hc[0] - hn[0]) <= bound * n_total * abs(hn[0]), f"epoch loss {hc} vs {hn}"
    pairs = zip(cuda_model.params(), numpy_model.params(), strict=True)
    for layer, ((W, b), (Wn, bn)) in enumerate(pairs):
        for name, g, r in (("W", W, Wn), ("b", b, bn)):
            e = rel_err(g, r)
            assert e <= bound * n_total, f"layer {layer} {name} after {n_total} steps: {e:.2e}"
    # and the update really happened: the parameters moved away from the start
    assert rel_err(cuda_model.params()[0][0], params[0][0]) > 1e-3


def check_stable_cross_entropy(dtype):
    """Logits of 1e4: finite loss and gradients equal to the stable reference."""
    net = bpbench.Network((2, 3), loss="cross_entropy", dtype=dtype)
    W = np.array([[1e4, -1e4, 0.0], [0.0, 5e3, -5e3]], dtype=dtype)
    params = [(W, np.zeros(3, dtype))]
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)  # logits up to 1e4
    y = np.array([1, 0, 2])
    model = bpbench.get("cuda")(net, params)
    loss, grads = model.loss_and_grads(X, y)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for pair in grads for g in pair)
    # by hand: row 0 logits (1e4, -1e4, 0), label 1 -> loss 2e4; row 1 (0, 5e3, -5e3), label 0
    # -> 5e3; row 2 (1e4, -5e3, -5e3), label 2 -> 1.5e4 (the other terms are below e**-5000)
    assert abs(loss - (2e4 + 5e3 + 1.5e4) / 3) <= 1e-6 * loss, loss
    assert_grads_agree(net, loss, grads, params, X, y, f"{dtype} logits 1e4")
    # logits near 1e4 whose loss is O(1): catches m + log(s) - out[y], which cancels in float32
    W = np.array([[1e4, 1e4 - 1, 1e4 - 2], [0.0, 0.0, 0.0]], dtype=dtype)
    params = [(W, np.zeros(3, dtype))]
    X, y = np.array([[1.0, 0.0]], dtype=dtype), np.array([1])
    loss, grads = bpbench.get("cuda")(net, params).loss_and_grads(X, y)
    assert_grads_agree(net, loss, grads, params, X, y, f"{dtype} logits 1e4, loss O(1)")


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
        try:
            call()
        except ValueError as exc:
            assert str(exc).startswith(arg), f"message should name {arg}: {exc}"
        else:
            raise AssertionError(f"bad {arg} was accepted")


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
    "bad_input": check_bad_input,
    "registry": lambda: bpbench.get("cuda"),
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
