"""The float64 reference against outside oracles: finite differences and hand-computed values.

Everything else is validated against the reference, so it must not be validated against itself.
Hand-computed nets run through every implementation too, so those give each implementation an
oracle that does not go through the reference at all.
"""

import math

import numpy as np
import pytest
from conftest import random_case

import bpbench
from bpbench import agreement, reference

# ---------------------------------------------------------------- finite differences

def test_reference_gradients_match_central_finite_differences_on_random_nets():
    rng = np.random.default_rng(2024)
    worst = 0.0
    for _ in range(25):
        net, params, X, y = random_case(rng, "float64", max_depth=3, max_width=7, max_batch=5)
        rows = agreement.finite_difference_check(net, params, X, y)
        assert len(rows) == 2 * net.n_layers
        bad = [r for r in rows if not r["ok"]]
        assert not bad, (net, bad)
        worst = max(worst, max(r["rel_error"] for r in rows))
    assert worst < agreement.FD_TOLERANCE


def test_finite_differences_of_a_quadratic_are_exact_enough():
    # the FD helper itself against a hand derivative: 1-1 net, mse, loss = (w x + b - t)^2
    net = bpbench.Network((1, 1), loss="mse")
    (dW, db), = agreement.finite_difference_grads(net, [(np.array([[2.0]]), np.array([1.0]))],
                                                  np.array([[3.0]]), np.array([[5.0]]))
    # d/dw = 2 (w x + b - t) x = 2 * 2 * 3 = 12, d/db = 4
    assert dW[0, 0] == pytest.approx(12.0, rel=1e-8)
    assert db[0] == pytest.approx(4.0, rel=1e-8)


# ---------------------------------------------------------------- losses by hand

def test_cross_entropy_of_two_logits_by_hand():
    # logits (0, ln 3): softmax = (1/4, 3/4)
    logits = np.array([[0.0, math.log(3.0)]])
    assert reference.cross_entropy_loss(logits, np.array([1])) == pytest.approx(math.log(4 / 3))
    assert reference.cross_entropy_loss(logits, np.array([0])) == pytest.approx(math.log(4))
    np.testing.assert_allclose(reference.cross_entropy_gradient(logits, np.array([1])),
                               [[0.25, -0.25]], rtol=1e-14)
    np.testing.assert_allclose(reference.cross_entropy_gradient(logits, np.array([0])),
                               [[-0.75, 0.75]], rtol=1e-14)


def test_cross_entropy_is_a_mean_over_the_batch():
    # rows: uniform over 4 classes (loss ln 4) and logits (0, ln 3) with label 1 (ln 4/3)
    logits = np.array([[1.0, 1.0], [0.0, math.log(3.0)]])
    assert reference.cross_entropy_loss(logits, np.array([0, 1])) == pytest.approx(
        (math.log(2) + math.log(4 / 3)) / 2)
    np.testing.assert_allclose(reference.cross_entropy_gradient(logits, np.array([0, 1])),
                               [[-0.25, 0.25], [0.125, -0.125]], rtol=1e-14)


def test_mse_is_the_mean_over_all_elements_by_hand():
    out = np.array([[1.0, 2.0], [3.0, 4.0]])
    Y = np.zeros((2, 2))
    assert reference.mse_loss(out, Y) == 7.5  # (1 + 4 + 9 + 16) / 4
    # 2 (out - Y) / (B*K): the gradient of the loss reported, not K times it
    np.testing.assert_array_equal(reference.mse_gradient(out, Y), [[0.5, 1.0], [1.5, 2.0]])


def test_cross_entropy_is_stable_at_huge_logits():
    # row 0 at +1e4, row 1 near -1e4: subtracting anything but each row's own max overflows
    # (exp(1e4)) or underflows to log(0) (a batch-wide max)
    logits = np.array([[1e4, 0.0], [-1e4, -1e4 + math.log(3.0)]])
    y = np.array([1, 1])
    loss = reference.cross_entropy_loss(logits, y)
    assert loss == pytest.approx((1e4 + math.log(4 / 3)) / 2, rel=1e-12)
    grad = reference.cross_entropy_gradient(logits, y)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0.5, -0.5], [0.125, -0.125]], rtol=1e-12)


# ---------------------------------------------------------------- whole nets by hand, every impl

def _hand_net(dtype):
    """1-1-1 relu net, mse: W1 = 2, b1 = -1, W2 = 3, b2 = 0.5."""
    net = bpbench.Network((1, 1, 1), activation="relu", loss="mse", dtype=dtype)
    params = [(np.array([[2.0]]), np.array([-1.0])), (np.array([[3.0]]), np.array([0.5]))]
    return net, params


def _check_hand(loss, grads, want_loss, want, rtol):
    assert loss == pytest.approx(want_loss, rel=rtol)
    got = [float(a.ravel()[0]) for pair in grads for a in pair]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


def test_hand_computed_net_reference_and_every_impl(impl, dtype):
    net, params = _hand_net(dtype)
    # x = 1: z1 = 1, a1 = 1, out = 3.5, Y = 0.5: loss 9, dout = 2 (3.5 - 0.5) = 6,
    # dW2 = 6 a1 = 6, db2 = 6, delta1 = 6 * 3 * relu'(1) = 18, dW1 = 18 x = 18, db1 = 18
    X, Y = np.array([[1.0]]), np.array([[0.5]])
    want = [18.0, 18.0, 6.0, 6.0]
    _check_hand(*reference.loss_and_grads(net, params, X, Y), 9.0, want, 1e-15)
    _check_hand(*impl(net, params).loss_and_grads(X, Y), 9.0, want, 1e-7)


def test_relu_derivative_at_zero_is_zero_reference_and_every_impl(impl, dtype):
    net, params = _hand_net(dtype)
    # x = 0.5: z1 = 2 * 0.5 - 1 = 0 exactly, a1 = 0, out = 0.5, Y = 0: loss 0.25, dout = 1,
    # dW2 = dout * a1 = 0, db2 = 1, delta1 = 1 * 3 * relu'(0) = 0: dW1 = db1 = 0
    X, Y = np.array([[0.5]]), np.array([[0.0]])
    want = [0.0, 0.0, 0.0, 1.0]
    _check_hand(*reference.loss_and_grads(net, params, X, Y), 0.25, want, 1e-15)
    _check_hand(*impl(net, params).loss_and_grads(X, Y), 0.25, want, 1e-7)
    assert reference.relu_derivative(np.array([0.0, -0.0, 1e-300]))[:2].tolist() == [0.0, 0.0]


def test_huge_logits_through_every_impl(impl, dtype):
    # x = 1, W = [[1e4, -1e4]] gives logits (1e4, -1e4); label 1: loss 2e4, dlogits = (1, -1)
    # second row x = -1 flips them; label 1 then has p ~ 1: loss ~ 0, dlogits ~ 0
    net = bpbench.Network((1, 2), loss="cross_entropy", dtype=dtype)
    params = [(np.array([[1e4, -1e4]]), np.zeros(2))]
    X, y = np.array([[1.0], [-1.0]]), np.array([1, 1])
    loss, ((dW, db),) = impl(net, params).loss_and_grads(X, y)
    assert math.isfinite(loss) and np.isfinite(dW).all() and np.isfinite(db).all()
    assert loss == pytest.approx(1e4, rel=1e-6)  # (2e4 + 0) / 2
    # dW = x^T dlogits / B = (1 * (1, -1) + (-1) * (0, 0)) / 2
    np.testing.assert_allclose(dW, [[0.5, -0.5]], rtol=1e-6)
    np.testing.assert_allclose(db, [0.5, -0.5], rtol=1e-6)
    assert np.isfinite(impl(net, params).forward(X)).all()


def test_softmax_shifts_each_row_by_its_own_max_every_impl(impl, dtype):
    # rows at +1e4 and -1e4: a shift by the batch-wide max sends row 2 to exp(-2e4) = 0 and
    # log(0); no shift overflows row 1. Both rows have softmax (1, e) / (1 + e).
    net = bpbench.Network((1, 2), loss="cross_entropy", dtype=dtype)
    params = [(np.array([[1e4, 1e4]]), np.array([0.0, 1.0]))]
    X, y = np.array([[1.0], [-1.0]]), np.array([0, 1])
    p0, p1 = 1 / (1 + math.e), math.e / (1 + math.e)
    for loss, ((dW, db),) in (reference.loss_and_grads(net, params, X, y),
                              impl(net, params).loss_and_grads(X, y)):
        assert loss == pytest.approx((-math.log(p0) - math.log(p1)) / 2, rel=1e-6)
        # dlogits = (p - onehot) / 2 per row; dW = x^T dlogits; db = column sums
        np.testing.assert_allclose(dW, [[-0.5, 0.5]], rtol=1e-6)
        np.testing.assert_allclose(db, [p0 - 0.5, p1 - 0.5], rtol=1e-6)


def test_hand_computed_sgd_step_every_impl(impl):
    net, params = _hand_net("float64")
    model = impl(net, params)
    loss = model.step(np.array([[1.0]]), np.array([[0.5]]), 0.01)
    assert loss == 9.0
    got = [float(a.ravel()[0]) for pair in model.params() for a in pair]
    # w -= 0.01 * grad with the grads of the hand-computed case above
    np.testing.assert_allclose(got, [2 - 0.18, -1 - 0.18, 3 - 0.06, 0.5 - 0.06], rtol=1e-15)


# ---------------------------------------------------------------- initialisation

def test_init_is_deterministic_per_seed_and_differs_between_seeds():
    net = bpbench.Network((5, 8, 3), activation="relu")
    a, b, c = net.init(seed=4), net.init(seed=4), net.init(seed=5)
    for (Wa, ba), (Wb, bb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_init_draws_layer_by_layer_from_default_rng():
    # the contract: numpy.random.default_rng(seed), He for relu, in layer order
    net = bpbench.Network((5, 8, 3), activation="relu")
    rng = np.random.default_rng(11)
    want0 = rng.uniform(-math.sqrt(6 / 5), math.sqrt(6 / 5), (5, 8))
    want1 = rng.uniform(-math.sqrt(6 / 8), math.sqrt(6 / 8), (8, 3))
    (W0, b0), (W1, b1) = net.init(seed=11)
    np.testing.assert_array_equal(W0, want0)
    np.testing.assert_array_equal(W1, want1)
    np.testing.assert_array_equal(b0, np.zeros(8))  # zero biases, the contract says
    np.testing.assert_array_equal(b1, np.zeros(3))


@pytest.mark.parametrize("activation, scheme", [("relu", "he"), ("tanh", "glorot"),
                                                ("sigmoid", "glorot")])
def test_init_limits_he_and_glorot(activation, scheme):
    n_in, n_hidden, n_out = 300, 200, 100
    net = bpbench.Network((n_in, n_hidden, n_out), activation=activation)
    for (W, b), (i, o) in zip(net.init(seed=0), [(n_in, n_hidden), (n_hidden, n_out)],
                              strict=True):
        limit = math.sqrt(6 / i) if scheme == "he" else math.sqrt(6 / (i + o))
        # uniform on (-limit, limit): nothing outside, and the extremes come close to it
        assert np.abs(W).max() <= limit
        assert np.abs(W).max() > 0.99 * limit
        assert abs(W.mean()) < 0.01 * limit
        np.testing.assert_array_equal(b, 0)


def test_init_without_hidden_layers_is_glorot():
    W, b = bpbench.Network((400, 200)).init(seed=1)[0]
    limit = math.sqrt(6 / 600)
    assert 0.99 * limit < np.abs(W).max() <= limit


def test_init_dtype_and_float32_is_the_rounded_float64():
    net64 = bpbench.Network((6, 4, 2), activation="tanh", dtype="float64")
    net32 = bpbench.Network((6, 4, 2), activation="tanh", dtype="float32")
    p64, p32 = net64.init(seed=9), net32.init(seed=9)
    for (W64, b64), (W32, b32) in zip(p64, p32, strict=True):
        assert W64.dtype == b64.dtype == np.float64
        assert W32.dtype == b32.dtype == np.float32
        np.testing.assert_array_equal(W32, W64.astype(np.float32))
        assert W32.shape == W64.shape and b32.shape == b64.shape
