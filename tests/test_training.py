"""bpbench.train: it learns, it matches an independent float64 loop, and it stops when told."""

import math

import numpy as np
import pytest

import bpbench
from bpbench import datasets, reference
from bpbench.agreement import TOLERANCES, relative_error


def accuracy(model, X, y):
    return float(np.mean(model.forward(X).argmax(axis=1) == y))


# ---------------------------------------------------------------- it learns

@pytest.mark.slow  # about 650 steps; a second with numpy, more for threads on a loaded machine
@pytest.mark.sim_slow
def test_two_spirals_above_95_percent(fast_impl):
    X, y = datasets.two_spirals(200, seed=0)
    X_test, y_test = datasets.two_spirals(1000, seed=1)
    net = bpbench.Network((2, 64, 64, 2), activation="relu")
    model = fast_impl(net, net.init(seed=0))
    # batches of 50: few steps (about 400), so thread start-up in numba_parallel stays cheap
    history = bpbench.train(model, X, y, lr=0.3, epochs=600, batch_size=50, target_loss=0.05)
    assert history.stop_reason == "target", f"loss only reached {history[-1]:.3g}"
    assert accuracy(model, X, y) > 0.95
    assert accuracy(model, X_test, y_test) > 0.95  # held out: it learnt spirals, not points


@pytest.mark.sim_slow
def test_sine_regression_below_0_01_mse(fast_impl):
    X, Y = datasets.sine_regression(200, seed=0)
    X_test, Y_test = datasets.sine_regression(1000, seed=1)
    net = bpbench.Network((1, 32, 32, 1), activation="relu", loss="mse")
    model = fast_impl(net, net.init(seed=0))
    history = bpbench.train(model, X, Y, lr=0.1, epochs=600, batch_size=50, target_loss=0.005)
    assert history.stop_reason == "target", f"loss only reached {history[-1]:.3g}"
    # Var(sin) = 0.5: an MSE below 0.01 on fresh points means the curve was learnt
    assert float(np.mean((model.forward(X_test) - Y_test) ** 2)) < 0.01


@pytest.mark.sim_slow  # 180 steps
def test_every_impl_separates_blobs(impl):
    """The small task (the pure-Python implementation takes it in a fraction of a second)."""
    X, y = datasets.blobs(90, seed=0)
    X_test, y_test = datasets.blobs(300, seed=1)
    net = bpbench.Network((2, 8, 3), activation="tanh")
    model = impl(net, net.init(seed=0))
    history = bpbench.train(model, X, y, lr=0.5, epochs=20, batch_size=10)
    assert history[-1] < 0.5 * history[0]
    assert accuracy(model, X_test, y_test) > 0.95


# ---------------------------------------------------------------- it matches an independent loop

def reference_train(net, params, X, y, lr, epochs, batch_size, seed):
    """The training loop written out with the float64 reference: the contract's order
    (a fresh permutation per epoch from one default_rng(seed)), loss weighted by batch size."""
    params = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(X))
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            loss, params = reference.sgd_step(net, params, X[idx], y[idx], lr)
            total += loss * len(idx)
        history.append(total / len(X))
    return history, params


@pytest.mark.sim_slow  # 40 steps
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_history_and_params_match_the_reference_loop_epoch_by_epoch(impl, dtype, loss):
    net = bpbench.Network((3, 7, 4, 2), activation=("tanh", "relu"), loss=loss, dtype=dtype)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((23, 3)).astype(dtype)  # 23 rows, batches of 5: a short last batch
    y = rng.integers(0, 2, 23) if loss == "cross_entropy" else \
        rng.standard_normal((23, 2)).astype(dtype)
    params = net.init(seed=2)
    epochs = 4
    model = impl(net, params)
    history = bpbench.train(model, X, y, lr=0.2, epochs=epochs, batch_size=5, seed=3)
    want, want_params = reference_train(net, params, X, y, 0.2, epochs, 5, seed=3)
    assert len(history) == epochs and history.stop_reason == "epochs"
    steps = epochs * 5
    bound = TOLERANCES[dtype] * steps
    for epoch, (got, ref) in enumerate(zip(history, want, strict=True)):
        assert relative_error(got, ref) <= bound, f"epoch {epoch + 1}: {got} vs {ref}"
    for (W, b), (W_ref, b_ref) in zip(model.params(), want_params, strict=True):
        assert relative_error(W, W_ref) <= bound and relative_error(b, b_ref) <= bound
    # a different shuffle seed gives a different history: the seed is really used
    other = bpbench.train(impl(net, params), X, y, lr=0.2, epochs=epochs, batch_size=5, seed=4)
    assert relative_error(other, history) > 1e-6


@pytest.mark.sim_slow  # 30 steps
def test_two_implementations_train_alike(impl):
    other = bpbench.get("numpy" if impl.name != "numpy" else "naive")
    X, y = datasets.blobs(40, seed=3)
    net = bpbench.Network((2, 5, 3), activation="sigmoid")
    a, b = impl(net, net.init(1)), other(net, net.init(1))
    ha = bpbench.train(a, X, y, lr=0.3, epochs=5, batch_size=7, seed=9)
    hb = bpbench.train(b, X, y, lr=0.3, epochs=5, batch_size=7, seed=9)
    for epoch, (la, lb) in enumerate(zip(ha, hb, strict=True)):
        assert relative_error(la, lb) <= 1e-10 * (epoch + 1) * 6  # 6 steps per epoch


@pytest.mark.sim_slow  # 10 steps (tests/cuda_sim_checks.py sgd_f64 runs an epoch)
def test_run_epoch_matches_a_loop_of_steps(impl, dtype):
    net = bpbench.Network((4, 9, 3), activation="sigmoid", loss="cross_entropy", dtype=dtype)
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((17, 4)), rng.integers(0, 3, 17)
    order = rng.permutation(17)
    fast, slow = impl(net, net.init(1)), impl(net, net.init(1))
    batch = fast.prepare(X, y)
    losses = fast.run_epoch(batch.X, batch.y, order, 4, 0.3)
    assert losses.shape == (5,) and losses.dtype == np.float64  # ceil(17 / 4) batches
    manual = [slow.step(X[order[s:s + 4]], y[order[s:s + 4]], 0.3) for s in range(0, 17, 4)]
    bound = TOLERANCES[dtype]
    assert relative_error(losses, manual) <= bound
    for (W, b), (W2, b2) in zip(fast.params(), slow.params(), strict=True):
        assert relative_error(W, W2) <= bound * 5 and relative_error(b, b2) <= bound * 5


# ---------------------------------------------------------------- stopping

def _blob_model(name="numpy", lr_net=None):
    X, y = datasets.blobs(60, seed=0)
    net = bpbench.Network((2, 6, 3), activation="tanh")
    return bpbench.get(name)(net, net.init(0)), X, y


def test_target_loss_stops_at_the_first_epoch_at_or_below_it():
    model, X, y = _blob_model()
    history = bpbench.train(model, X, y, lr=0.5, epochs=200, batch_size=10, target_loss=0.1)
    assert history.stop_reason == "target"
    assert history[-1] <= 0.1 and all(loss > 0.1 for loss in history[:-1])
    assert len(history) < 200


def test_patience_stops_when_the_loss_stops_improving():
    model, X, y = _blob_model()
    # lr so small that no epoch improves by more than tol: stop after 1 + patience epochs
    history = bpbench.train(model, X, y, lr=1e-9, epochs=100, batch_size=10, tol=1e-3,
                            patience=3)
    assert history.stop_reason == "patience" and len(history) == 4


def test_patience_does_not_stop_an_improving_run():
    model, X, y = _blob_model()
    history = bpbench.train(model, X, y, lr=0.3, epochs=8, batch_size=10, tol=1e-6, patience=2)
    assert history.stop_reason == "epochs" and len(history) == 8


def test_callback_sees_every_epoch_and_can_stop():
    model, X, y = _blob_model()
    seen = []
    history = bpbench.train(model, X, y, lr=0.3, epochs=10, batch_size=10,
                            callback=lambda epoch, loss: seen.append((epoch, loss)) or epoch == 2)
    assert [e for e, _ in seen] == [0, 1, 2] and [value for _, value in seen] == list(history)
    assert history.stop_reason == "callback"


@pytest.mark.sim_slow  # 5 steps (the fuzz suite diverges cuda on extreme values)
def test_huge_lr_diverges_with_a_clear_error(impl):
    X, Y = datasets.sine_regression(40, seed=0)
    net = bpbench.Network((1, 8, 1), activation="relu", loss="mse")
    model = impl(net, net.init(0))
    with np.errstate(all="ignore"), pytest.raises(bpbench.DivergenceError, match="lr"):
        bpbench.train(model, X * 100, Y * 100, lr=1e6, epochs=50, batch_size=8)
    assert issubclass(bpbench.DivergenceError, ValueError)


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=0), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=True), "lr"),
    (dict(epochs=0), "epochs"), (dict(epochs=2.5), "epochs"), (dict(epochs=True), "epochs"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=None), "batch_size"),
    (dict(patience=0), "patience"),
    (dict(target_loss=float("nan")), "target_loss"), (dict(tol=-1.0), "tol"),
    (dict(tol=float("inf")), "tol"),
    (dict(target_loss="0.1"), "target_loss"), (dict(target_loss=True), "target_loss"),
    (dict(tol="x"), "tol"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(seed=None), "seed"), (dict(progress="yes"), "progress"), (dict(callback=5), "callback"),
])
def test_bad_train_arguments_name_the_argument(kwargs, name):
    model, X, y = _blob_model()
    with pytest.raises(ValueError, match=name):
        bpbench.train(model, X, y, **{"epochs": 2, **kwargs})


def test_train_validates_model_and_data():
    model, X, y = _blob_model()
    with pytest.raises(ValueError, match="model"):
        bpbench.train("numpy", X, y)
    with pytest.raises(ValueError, match=r"\by\b"):
        bpbench.train(model, X, y[:-1])
    with pytest.raises(ValueError, match=r"\bX\b"):
        bpbench.train(model, X[:, :1], y)


# ---------------------------------------------------------------- the generators

@pytest.mark.parametrize("make, shapes", [
    (lambda: datasets.two_spirals(50, noise=0.1, seed=2), ((50, 2), (50,))),
    (lambda: datasets.sine_regression(50, noise=0.1, seed=2), ((50, 1), (50, 1))),
    (lambda: datasets.blobs(50, classes=4, dim=3, seed=2), ((50, 3), (50,))),
])
def test_datasets_shapes_determinism(make, shapes):
    (X, y), (X2, y2) = make(), make()
    assert (X.shape, y.shape) == shapes
    assert X.dtype == np.float64 and np.isfinite(X).all()
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_dataset_values():
    X, y = datasets.two_spirals(400, seed=0)
    assert set(y.tolist()) == {0, 1} and y.dtype == np.int64 and abs(y.mean() - 0.5) < 0.01
    assert 2.5 < np.abs(X).max() <= 3.0
    # class 1 is class 0 turned by 180 degrees: radii have the same distribution
    r = np.hypot(X[:, 0], X[:, 1])
    assert abs(r[y == 0].mean() - r[y == 1].mean()) < 0.1
    X, Y = datasets.sine_regression(100, seed=0)
    np.testing.assert_allclose(Y, np.sin(X * math.pi), atol=1e-12)
    X, y = datasets.blobs(90, classes=3, seed=0)
    assert np.bincount(y).tolist() == [30, 30, 30]
    with pytest.raises(ValueError, match="noise"):
        datasets.two_spirals(10, noise=-1)
    with pytest.raises(ValueError, match=r"\bn\b"):
        datasets.sine_regression(0)
    with pytest.raises(ValueError, match="seed"):
        datasets.blobs(10, seed=-1)
