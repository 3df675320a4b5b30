"""Every implementation against the float64 reference, and the checker itself.

The sweeps draw random architectures (depth 0-4, widths 1-16, batch 1-16, per-layer
activations, both losses) from fixed seeds, so a failure names a reproducible case. The second
half proves that :mod:`bpbench.agreement` can fail: deliberately broken implementations and a
broken reference are reported as disagreeing.
"""

import math

import numpy as np
import pytest
from conftest import random_case

import bpbench
from bpbench import agreement, reference
from bpbench.agreement import TOLERANCES, compare_gradients, compare_trajectories, relative_error
from bpbench.impls import naive, numpy_vectorised
from bpbench.impls.numpy_vectorised import NumpyImplementation

#: random cases per (implementation, dtype); the pure-Python one gets fewer, smaller ones
SWEEP = {"naive": dict(n=40, max_width=8, max_batch=8)}
SWEEP_DEFAULT = dict(n=80, max_width=16, max_batch=16)


def _failures(rows):
    return [(r["case"], r["array"], r["rel_error"], r["note"]) for r in rows if not r["ok"]]


# ---------------------------------------------------------------- sweeps against the reference

@pytest.mark.sim_slow  # 80 architectures up to width 16 (tests/cuda_sim_checks.py: tiles)
def test_gradients_agree_with_reference_on_random_architectures(impl, dtype):
    plan = SWEEP.get(impl.name, SWEEP_DEFAULT)
    rng = np.random.default_rng(100 if dtype == "float64" else 200)
    rows = []
    seen = set()
    for i in range(plan["n"]):
        net, params, X, y = random_case(rng, dtype, max_width=plan["max_width"],
                                        max_batch=plan["max_batch"])
        seen.add((net.depth, net.loss))
        rows += compare_gradients(impl, net, params, X, y, case=f"#{i} {net} B{len(X)}")
    assert len(rows) > plan["n"] * 3  # a loss and at least one (W, b) per case
    assert not _failures(rows), _failures(rows)[:5]
    # the sweep really covered what it claims: every depth with both losses
    assert {d for d, _ in seen} == {0, 1, 2, 3, 4}
    assert {loss for _, loss in seen} == {"mse", "cross_entropy"}


@pytest.mark.sim_slow  # 80 steps
def test_sgd_trajectories_agree_with_reference_on_random_architectures(impl, dtype):
    rng = np.random.default_rng(300 if dtype == "float64" else 400)
    n = 6 if impl.name == "naive" else 20
    rows = []
    for i in range(n):
        net, params, X, y = random_case(rng, dtype, max_depth=3, max_width=8, max_batch=8)
        batch_size = int(rng.integers(1, len(X) + 1))
        rows += compare_trajectories(impl, net, params, X, y, steps=4, lr=0.1,
                                     batch_size=batch_size, case=f"#{i} {net}")
    assert not _failures(rows), _failures(rows)[:5]


@pytest.mark.sim_slow  # 10 steps of a 2-hidden-layer net
def test_two_implementations_step_by_step(impl):
    """impl and a second implementation take the same 10 steps; params agree after each."""
    other = bpbench.get("naive" if impl.name != "naive" else "numpy")
    net = bpbench.Network((3, 6, 5, 2), activation=("sigmoid", "relu"), loss="cross_entropy")
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((12, 3)), rng.integers(0, 2, 12)
    a, b = impl(net, net.init(seed=5)), other(net, net.init(seed=5))
    for k in range(10):
        rows = slice(3 * (k % 4), 3 * (k % 4) + 3)
        la, lb = a.step(X[rows], y[rows], 0.5), b.step(X[rows], y[rows], 0.5)
        assert relative_error(la, lb) <= 1e-10 * (k + 1)
        for (Wa, ba), (Wb, bb) in zip(a.params(), b.params(), strict=True):
            assert relative_error(Wa, Wb) <= 1e-10 * (k + 1), f"step {k + 1}"
            assert relative_error(ba, bb) <= 1e-10 * (k + 1), f"step {k + 1}"
    # and the steps did something: the parameters moved away from the start
    assert relative_error(a.params()[0][0], net.init(seed=5)[0][0]) > 1e-3


@pytest.mark.sim_slow  # widths up to 16 (tests/cuda_sim_checks.py: forward in agree_*)
def test_forward_matches_reference(impl, dtype):
    rng = np.random.default_rng(17)
    for _ in range(5):
        net, params, X, _ = random_case(rng, dtype, max_width=8, max_batch=8)
        out = impl(net, params).forward(X)
        assert out.dtype == net.dtype and out.shape == (len(X), net.sizes[-1])
        want = reference.forward(net, [(W.astype(float), b.astype(float)) for W, b in params],
                                 X.astype(float))[-1]
        assert relative_error(out, want) <= TOLERANCES[dtype]


@pytest.mark.sim_slow  # widths up to 16 (the fuzz suite checks cuda's types)
def test_outputs_have_the_contract_types(impl, dtype):
    net, params, X, y = random_case(np.random.default_rng(3), dtype, max_depth=2)
    model = impl(net, params)
    loss, grads = model.loss_and_grads(X, y)
    assert type(loss) is float
    assert len(grads) == net.n_layers
    for (dW, db), (W, b) in zip(grads, params, strict=True):
        assert isinstance(dW, np.ndarray) and dW.dtype == net.dtype and dW.shape == W.shape
        assert isinstance(db, np.ndarray) and db.dtype == net.dtype and db.shape == b.shape
    assert type(model.step(X, y, 0.1)) is float
    for W, b in model.params():
        assert W.dtype == b.dtype == net.dtype


def test_validate_default_cases_all_agree():
    names = [n for n in ("naive", "numpy") if n in bpbench.available()]
    frame = agreement.validate(impls=names)
    assert frame["ok"].all(), frame[~frame["ok"]]
    n_cases = len(agreement.default_cases("float64"))
    assert frame["case"].nunique() == n_cases and frame["case"].str.len().min() > 0
    assert set(frame["check"]) == {"gradients", "finite differences", "sgd trajectory"}
    assert set(frame["impl"]) == {"reference", *names}
    assert set(frame["dtype"]) == {"float32", "float64"}
    # finite differences once per case and dtype, not once per implementation
    fd = frame[frame["check"] == "finite differences"]
    assert len(fd) == sum(2 * net.n_layers for _, net, *_ in agreement.default_cases("float64")) * 2


def test_default_cases_cover_what_they_claim():
    cases = agreement.default_cases("float32")
    nets = [net for _, net, *_ in cases]
    assert {net.depth for net in nets} == {0, 1, 2, 3}
    assert {net.loss for net in nets} == {"mse", "cross_entropy"}
    assert {a for net in nets for a in net.activations} == {"relu", "tanh", "sigmoid"}
    assert any(len(set(net.activations)) > 1 for net in nets)
    assert {1, 3, 7} <= {w for net in nets for w in net.sizes}
    assert all(max(net.sizes) <= 16 and 1 <= len(X) <= 8 for _, net, _, X, _ in cases)
    assert all(net.dtype == np.float32 and X.dtype == np.float32 for _, net, _, X, _ in cases)
    assert len({label for label, *_ in cases}) == len(cases)
    # same seeds, same numbers
    again = agreement.default_cases("float32")
    for (_, _, p, X, y), (_, _, p2, X2, y2) in zip(cases, again, strict=True):
        np.testing.assert_array_equal(X, X2)
        np.testing.assert_array_equal(y, y2)
        for (W, b), (W2, b2) in zip(p, p2, strict=True):
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(b, b2)


# ---------------------------------------------------------------- the checker can fail

def test_relative_error_definition():
    assert relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert relative_error([3.0, 4.0], [0.0, 0.0]) == 5.0    # ||ref|| = 0: the absolute norm
    assert relative_error([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert relative_error([1.0, 1.0], [1.0, 0.0]) == 1.0
    assert math.isnan(relative_error([np.nan, 1.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        relative_error(np.zeros(3), np.zeros((3, 1)))  # no broadcasting


def _relu_case(dtype="float64"):
    return agreement.make_case((4, 6, 5, 3), "relu", "cross_entropy", 8, dtype, seed=1)[1:]


def test_a_wrong_relu_derivative_is_reported(monkeypatch, dtype):
    net, params, X, y = _relu_case(dtype)
    assert all(r["ok"] for r in compare_gradients("naive", net, params, X, y))
    monkeypatch.setitem(naive.DERIVATIVE, "relu", lambda z: 1.0)  # the classic slip
    rows = {r["array"]: r for r in compare_gradients("naive", net, params, X, y)}
    assert rows["loss"]["ok"]                       # the forward pass is still right
    assert rows["W2"]["ok"] and rows["b2"]["ok"]    # the output layer needs no relu'
    assert not rows["W0"]["ok"] and not rows["b0"]["ok"]
    assert rows["W0"]["rel_error"] > 100 * rows["W0"]["bound"]
    traj = compare_trajectories("naive", net, params, X, y, steps=2)
    assert not all(r["ok"] for r in traj)


def test_a_wrong_sigmoid_derivative_in_numpy_is_reported(monkeypatch):
    net, params, X, y = agreement.make_case((3, 5, 2), "sigmoid", "mse", 4, "float64", 2)[1:]

    def wrong(delta, a):
        delta *= a  # forgot the (1 - a)

    monkeypatch.setitem(numpy_vectorised.TIMES_DERIVATIVE, "sigmoid", wrong)
    failed = _failures(compare_gradients("numpy", net, params, X, y))
    assert {array for _, array, _, _ in failed} == {"W0", "b0"}


class MissingLastLayer(NumpyImplementation):
    name = "missing_last_layer"

    def _loss_and_grads(self, data):
        loss, grads = super()._loss_and_grads(data)
        return loss, grads[:-1]  # a zip over this would silently compare one pair fewer


class TransposedWeights(NumpyImplementation):
    name = "transposed"

    def _loss_and_grads(self, data):
        loss, grads = super()._loss_and_grads(data)
        return loss, [(dW.T, db) for dW, db in grads]


class NaNGradients(NumpyImplementation):
    name = "nan"

    def _loss_and_grads(self, data):
        loss, grads = super()._loss_and_grads(data)
        grads[0][0][0, 0] = np.nan
        return loss, grads


class HalfStep(NumpyImplementation):
    name = "half_step"

    def _step(self, data, lr):
        return super()._step(data, lr / 2)  # right gradients, wrong update


class IgnoresBias(NumpyImplementation):
    name = "ignores_bias"

    def _forward_into(self, X, buf):
        saved = self._params
        self._params = [(W, np.zeros_like(b)) for W, b in saved]
        try:
            return super()._forward_into(X, buf)
        finally:
            self._params = saved


def test_missing_arrays_are_rows_that_fail():
    net, params, X, y = _relu_case()
    rows = compare_gradients(MissingLastLayer, net, params, X, y)
    assert [r["array"] for r in rows] == ["loss", "W0", "b0", "W1", "b1", "W2", "b2"]
    assert rows[0]["ok"] and not any(r["ok"] for r in rows[1:])
    assert "3 (W, b) pairs" in rows[1]["note"]


def test_wrong_shapes_fail_instead_of_broadcasting():
    net, params, X, y = _relu_case()
    rows = {r["array"]: r for r in compare_gradients(TransposedWeights, net, params, X, y)}
    assert not rows["W0"]["ok"] and "shape" in rows["W0"]["note"]
    assert rows["b0"]["ok"]


def test_nan_is_never_ok():
    net, params, X, y = _relu_case()
    rows = {r["array"]: r for r in compare_gradients(NaNGradients, net, params, X, y)}
    assert math.isnan(rows["W0"]["rel_error"]) and not rows["W0"]["ok"]


def test_a_wrong_update_is_caught_by_the_trajectory_not_the_gradients():
    net, params, X, y = _relu_case()
    assert all(r["ok"] for r in compare_gradients(HalfStep, net, params, X, y))
    assert not all(r["ok"] for r in compare_trajectories(HalfStep, net, params, X, y, steps=3))


def test_a_forgotten_bias_is_caught_because_case_biases_are_not_zero():
    net, params, X, y = _relu_case()
    assert not all(r["ok"] for r in compare_gradients(IgnoresBias, net, params, X, y))


def test_validate_reports_a_broken_implementation_beside_a_good_one():
    frame = agreement.validate(impls=["numpy", HalfStep], dtypes=("float64",), steps=2)
    by_impl = frame.groupby("impl")["ok"].all()
    assert by_impl["numpy"] and by_impl["reference"] and not by_impl["half_step"]


def test_finite_differences_catch_a_broken_reference(monkeypatch):
    net, params, X, y = agreement.make_case((3, 4, 2), "tanh", "mse", 5, "float64", 3)[1:]
    assert all(r["ok"] for r in agreement.finite_difference_check(net, params, X, y))
    monkeypatch.setitem(reference.ACTIVATION_DERIVATIVES, "tanh", lambda a: 1 - a)  # not 1 - a^2
    rows = {r["array"]: r for r in agreement.finite_difference_check(net, params, X, y)}
    assert not rows["W0"]["ok"] and rows["W1"]["ok"]


def test_finite_differences_do_not_touch_the_callers_params():
    net, params, X, y = _relu_case()
    before = [(W.copy(), b.copy()) for W, b in params]
    agreement.finite_difference_grads(net, params, X, y)
    for (W, b), (W0, b0) in zip(params, before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_validate_refuses_unknown_and_unavailable_names(monkeypatch):
    from bpbench import registry
    with pytest.raises(ValueError, match="nope"):
        agreement.validate(impls=["numpy", "nope"])
    monkeypatch.setitem(registry.BUILTINS, "ghost", ("impls.ghost_module:Ghost", "ghost-pkg"))
    monkeypatch.setattr(registry, "_cache", {})
    with pytest.raises(ValueError, match="ghost.*unavailable"):
        agreement.validate(impls=["ghost"])
    with pytest.raises(ValueError, match="dtypes"):
        agreement.validate(impls=["numpy"], dtypes=("float16",))
    with pytest.raises(ValueError, match="empty"):
        agreement.validate(impls=[])


@pytest.mark.parametrize("kwargs, name", [
    (dict(steps=0), "steps"), (dict(steps="a"), "steps"), (dict(steps=1.5), "steps"),
    (dict(steps=True), "steps"), (dict(impls=5), "impls"), (dict(dtypes=5), "dtypes"),
    (dict(dtypes=[]), "dtypes"), (dict(cases=[]), "cases"), (dict(cases=5), "cases"),
    (dict(cases=[1]), r"cases\[0\]"), (dict(cases=[("label", "net", [], [], [])]), "cases"),
])
def test_validate_refuses_bad_arguments_naming_them(kwargs, name):
    # found by the fuzz suite: TypeErrors, or an empty table for nothing to validate
    with pytest.raises(ValueError, match=name):
        agreement.validate(impls=kwargs.pop("impls", ["numpy"]), **kwargs)


def test_validate_names_the_case_whose_data_is_bad():
    label, net, params, X, y = agreement.make_case((3, 2), "relu", "mse", 2, "float64", 0)
    for case, name in (((label, net, params, X[:, :2], y), r"cases\[1\] X"),
                       ((label, net, params, X, y[:, :1]), r"cases\[1\] y"),
                       ((label, net, params[:0], X, y), r"cases\[1\] params")):
        good = (label, net, params, X, y)
        with pytest.raises(ValueError, match=name):
            agreement.validate(impls=["numpy"], cases=[good, case])
    # 1e39 fits a float64 case, not its float32 run: refused before any work
    X_big = X.copy()
    X_big[0, 0] = 1e39
    with pytest.raises(ValueError, match=r"cases\[0\] X"):
        agreement.validate(impls=["numpy"], dtypes=("float64", "float32"),
                           cases=[(label, net, params, X_big, y)])


def test_validate_runs_given_cases_in_every_dtype():
    case = agreement.make_case((3, 5, 2), "tanh", "mse", 4, "float64", seed=6)
    frame = agreement.validate(impls=["numpy"], dtypes=("float32", "float64"), cases=[case],
                               steps=2)
    assert set(frame["case"]) == {case[0]}
    assert set(frame["dtype"]) == {"float32", "float64"}
    assert frame["ok"].all()
    bounds = frame.set_index(["check", "dtype"])["bound"].groupby(level=[0, 1]).max()
    assert bounds["sgd trajectory", "float32"] == 2 * TOLERANCES["float32"]
    assert bounds["finite differences", "float64"] == agreement.FD_TOLERANCE
