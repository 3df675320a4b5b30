"""Every bad input the contract lists raises ValueError naming the argument, for every
implementation; and nothing the caller hands in is ever modified."""

import numpy as np
import pytest

import bpbench

CE = bpbench.Network((3, 4, 2), activation="relu", loss="cross_entropy")
MSE = bpbench.Network((3, 4, 2), activation="tanh", loss="mse")
X_OK = np.arange(15, dtype=np.float64).reshape(5, 3) / 10
Y_CE = np.array([0, 1, 1, 0, 1])
Y_MSE = np.ones((5, 2))


def _with(arr, index, value):
    arr = np.array(arr, dtype=np.float64)
    arr[index] = value
    return arr


BAD_X = [
    ("1-D", X_OK[0], "X"),
    ("3-D", X_OK[None], "X"),
    ("wrong width", np.ones((5, 4)), "X"),
    ("empty batch", np.ones((0, 3)), "X"),
    ("strings", [["a", "b", "c"]] * 5, "X"),
    ("ragged", [[1.0, 2.0, 3.0], [1.0]], "X"),
    ("complex", np.ones((5, 3), complex), "X"),
    ("bool", np.ones((5, 3), bool), "X"),
    ("None", None, "X"),
    ("nan", _with(X_OK, (2, 1), np.nan), "X"),
    ("inf", _with(X_OK, (0, 0), np.inf), "X"),
    ("beyond float32 range", _with(X_OK, (0, 0), 1e300), "X"),  # only bad for float32 nets
]


@pytest.mark.parametrize("label, X, name", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_X_names_X(impl, label, X, name):
    net = CE.with_dtype("float32")
    model = impl(net, net.init(0))
    for call in (lambda: model.loss_and_grads(X, Y_CE), lambda: model.step(X, Y_CE, 0.1),
                 lambda: model.forward(X), lambda: model.prepare(X, Y_CE)):
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            call()


BAD_Y_CE = [
    ("float labels", np.array([0.0, 1, 1, 0, 1])),
    ("negative label", np.array([0, -1, 1, 0, 1])),
    ("label == K", np.array([0, 2, 1, 0, 1])),
    ("too few", Y_CE[:4]),
    ("2-D", Y_CE[:, None]),
    ("strings", np.array(["0", "1", "1", "0", "1"])),
    ("one-hot", np.eye(2)[Y_CE]),
    ("bool", Y_CE.astype(bool)),
]


@pytest.mark.parametrize("label, y", BAD_Y_CE, ids=[c[0] for c in BAD_Y_CE])
def test_bad_class_labels_name_y(impl, label, y):
    model = impl(CE, CE.init(0))
    for call in (lambda: model.loss_and_grads(X_OK, y), lambda: model.step(X_OK, y, 0.1)):
        with pytest.raises(ValueError, match=r"\by\b"):
            call()


BAD_Y_MSE = [
    ("wrong K", np.ones((5, 3))),
    ("wrong B", np.ones((4, 2))),
    ("1-D with K=2", np.ones(5)),
    ("nan", _with(Y_MSE, (1, 1), np.nan)),
    ("inf", _with(Y_MSE, (1, 1), -np.inf)),
    ("strings", [["x", "y"]] * 5),
]


@pytest.mark.parametrize("label, y", BAD_Y_MSE, ids=[c[0] for c in BAD_Y_MSE])
def test_bad_regression_targets_name_y(impl, label, y):
    model = impl(MSE, MSE.init(0))
    for call in (lambda: model.loss_and_grads(X_OK, y), lambda: model.step(X_OK, y, 0.1)):
        with pytest.raises(ValueError, match=r"\by\b"):
            call()


def _params_variants():
    good = CE.init(0)
    (W0, b0), (W1, b1) = good
    return [
        ("too few pairs", good[:1], "params"),
        ("too many pairs", good + good[:1], "params"),
        ("not a list", W0, "params"),
        ("None", None, "params"),
        ("not pairs", [W0, W1], r"params\[0\]"),
        ("W transposed", [(W0.T, b0), (W1, b1)], r"params\[0\] W"),
        ("b wrong length", [(W0, b0), (W1, np.zeros(3))], r"params\[1\] b"),
        ("b as a column", [(W0, b0[:, None]), (W1, b1)], r"params\[0\] b"),
        ("nan in W", [(W0, b0), (_with(W1, (0, 0), np.nan), b1)], r"params\[1\] W"),
        ("inf in b", [(W0, _with(b0, 2, np.inf)), (W1, b1)], r"params\[0\] b"),
        ("strings", [(W0.astype(str), b0), (W1, b1)], r"params\[0\] W"),
    ]


@pytest.mark.parametrize("label", [v[0] for v in _params_variants()])
def test_bad_params_name_params(impl, label):
    params, name = {v[0]: v[1:] for v in _params_variants()}[label]
    with pytest.raises(ValueError, match=name):
        impl(CE, params)


def test_params_of_another_network_are_refused(impl):
    other = bpbench.Network((3, 5, 2))
    with pytest.raises(ValueError, match="params"):
        impl(CE, other.init(0))


def test_net_must_be_a_network(impl):
    with pytest.raises(ValueError, match="net"):
        impl((3, 4, 2), CE.init(0))


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf"), True, False, "0.1", None,
                                [0.1], np.array([0.1])])
def test_bad_lr_names_lr(impl, lr):
    model = impl(CE, CE.init(0))
    with pytest.raises(ValueError, match=r"\blr\b"):
        model.step(X_OK, Y_CE, lr)
    batch = model.prepare(X_OK, Y_CE)
    with pytest.raises(ValueError, match=r"\blr\b"):
        model.run_epoch(batch.X, batch.y, np.arange(5), 2, lr)


@pytest.mark.sim_slow  # 4 steps (the fuzz suite steps cuda with every lr type)
def test_lr_may_be_any_positive_real(impl):
    model = impl(CE, CE.init(0))
    for lr in (1, np.float32(0.1), np.int64(1), np.array(0.5)):
        assert np.isfinite(model.step(X_OK, Y_CE, lr))


def test_prepared_batches_belong_to_their_model(impl):
    a, b = impl(CE, CE.init(0)), impl(CE, CE.init(0))
    with pytest.raises(ValueError, match="batch"):
        a.step_prepared(b.prepare(X_OK, Y_CE), 0.1)
    with pytest.raises(ValueError, match="batch"):
        a.loss_and_grads_prepared((X_OK, Y_CE))


# ---------------------------------------------------------------- the Network's own arguments

@pytest.mark.parametrize("kwargs, name", [
    (dict(sizes=(3,)), "sizes"),
    (dict(sizes=()), "sizes"),
    (dict(sizes=(3, 0, 2)), "sizes"),
    (dict(sizes=(3, -1, 2)), "sizes"),
    (dict(sizes=(3, 2.5, 2)), "sizes"),
    (dict(sizes=(3, True, 2)), "sizes"),
    (dict(sizes="32"), "sizes"),
    (dict(sizes=None), "sizes"),
    (dict(sizes=5), "sizes"),
    (dict(sizes=(3, 4, 2), activation="gelu"), "activation"),
    (dict(sizes=(3, 4, 2), activation=None), "activation"),
    (dict(sizes=(3, 4, 4, 2), activation=("relu",)), "activation"),
    (dict(sizes=(3, 4, 2), activation=("relu", "tanh")), "activation"),
    (dict(sizes=(3, 4, 2), loss="hinge"), "loss"),
    (dict(sizes=(3, 4, 2), loss=None), "loss"),
    (dict(sizes=(3, 4, 2), dtype="float16"), "dtype"),
    (dict(sizes=(3, 4, 2), dtype="int32"), "dtype"),
    (dict(sizes=(3, 4, 2), dtype="nonsense"), "dtype"),
    (dict(sizes=(3, 4, 2), dtype=None), "dtype"),
])
def test_bad_network_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        bpbench.Network(**kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed_names_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        CE.init(seed=seed)


def test_network_accepts_numpy_ints_and_dtype_objects():
    net = bpbench.Network(np.array([3, 4, 2]), dtype=np.float32)
    assert net.sizes == (3, 4, 2) and net.dtype == np.float32
    assert all(type(s) is int for s in net.sizes)


def test_get_unknown_name_is_a_keyerror_listing_known_names():
    with pytest.raises(KeyError) as info:
        bpbench.get("nope")
    assert isinstance(info.value, bpbench.UnknownImplementationError)
    for name in ("naive", "numpy", "numba", "numba_parallel", "cuda"):
        assert name in str(info.value)


# ---------------------------------------------------------------- nothing of the caller's changes

def _snapshot(params, X, y):
    return [(W.copy(), b.copy()) for W, b in params], X.copy(), y.copy()


def _assert_unchanged(params, X, y, snap):
    for (W, b), (W0, b0) in zip(params, snap[0], strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(X, snap[1])
    np.testing.assert_array_equal(y, snap[2])


@pytest.mark.sim_slow  # about 16 steps per net (the fuzz suite checks this for cuda)
@pytest.mark.parametrize("net", [CE, MSE, MSE.with_dtype("float32")], ids=str)
def test_callers_arrays_are_never_modified(impl, net):
    # float64 arrays in the net's own dtype are the risky case: no conversion copy happens
    params = net.init(0)
    X = X_OK.astype(net.dtype)
    y = Y_CE.copy() if net.loss == "cross_entropy" else Y_MSE.astype(net.dtype)
    snap = _snapshot(params, X, y)
    model = impl(net, params)
    model.loss_and_grads(X, y)
    model.step(X, y, 0.5)
    model.forward(X)
    bpbench.train(model, X, y, lr=0.5, epochs=3, batch_size=2)
    batch = model.prepare(X, y)
    model.step_prepared(batch, 0.5)
    model.run_epoch(batch.X, batch.y, np.arange(len(X)), 2, 0.5)
    _assert_unchanged(params, X, y, snap)
    # the model trained: its parameters moved, the caller's did not
    assert not np.array_equal(model.params()[0][0], params[0][0])


def test_model_does_not_alias_callers_or_returned_arrays(impl):
    params = CE.init(0)
    model = impl(CE, params)
    params[0][0][...] = 7.0           # caller edits its arrays after construction
    got = model.params()
    assert not (got[0][0] == 7.0).any()
    got[0][0][...] = 9.0              # caller edits the returned copy
    assert not (model.params()[0][0] == 9.0).any()


def test_results_are_the_callers_to_keep(impl):
    """Gradients, outputs and parameters handed back are not the model's buffers: later calls
    (another batch, a step) leave the first results exactly as they were."""
    model = impl(CE, CE.init(0))
    _, grads = model.loss_and_grads(X_OK, Y_CE)
    out = model.forward(X_OK)
    params = model.params()
    kept = [a.copy() for pair in grads + params for a in pair] + [out.copy()]
    X2, y2 = X_OK[::-1] * 3 - 1, 1 - Y_CE  # another batch: other gradients, other outputs
    _, grads2 = model.loss_and_grads(X2, y2)
    out2 = model.forward(X2)
    model.step(X2, y2, 0.5)
    for first, copy in zip([a for pair in grads + params for a in pair] + [out], kept,
                           strict=True):
        np.testing.assert_array_equal(first, copy)
    # the second results differ from the first, so a shared buffer would have shown
    for (dW, db), (dW2, db2) in zip(grads, grads2, strict=True):
        assert not np.array_equal(dW, dW2) and not np.array_equal(db, db2)
    assert not np.array_equal(out[:, 0], out2[:, 0])


def test_values_beyond_float32_range_are_refused_cleanly(impl, recwarn):
    # finite in float64, inf once rounded to a float32 net's dtype: a ValueError, no warning
    net = MSE.with_dtype("float32")
    model = impl(net, net.init(0))
    with pytest.raises(ValueError, match=r"\by\b"):
        model.loss_and_grads(X_OK, _with(Y_MSE, (0, 0), 1e39))
    (W0, b0), (W1, b1) = net.init(0)
    with pytest.raises(ValueError, match=r"params\[1\] W"):
        impl(net, [(W0, b0), (_with(W1, (0, 0), -1e39), b1)])
    with pytest.raises(ValueError, match=r"\bX\b"):
        model.forward(_with(X_OK, (0, 0), 1e300))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ---------------------------------------------------------------- run_epoch and step_prepared

BAD_ORDERS = [
    ("index past the end", np.array([0, 1, 2, 3, 10**9]), "order"),
    ("index == N", np.array([0, 1, 2, 3, 5]), "order"),
    ("negative index", np.array([0, 1, 2, 3, -1]), "order"),
    ("fractional", np.array([0, 1.5, 2, 3, 4]), "order"),
    ("whole floats", np.arange(5.0), "order"),
    ("bools", np.ones(5, bool), "order"),
    ("repeated row", np.array([0, 1, 1, 3, 4]), "order"),
    ("too short", np.arange(4), "order"),
    ("too long", np.arange(6) % 5, "order"),
    ("2-D", np.arange(5)[None], "order"),
    ("strings", np.array(list("01234")), "order"),
    ("None", None, "order"),
]


def _params_and_data(model):
    return [(W.copy(), b.copy()) for W, b in model.params()]


@pytest.mark.parametrize("label, order, name", BAD_ORDERS, ids=[c[0] for c in BAD_ORDERS])
def test_run_epoch_refuses_a_bad_order_before_changing_the_model(impl, label, order, name):
    model = impl(CE, CE.init(0))
    before = _params_and_data(model)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        model.run_epoch(X_OK, Y_CE, order, 2, 0.1)
    for (W, b), (W0, b0) in zip(model.params(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("X, y, name", [
    (np.ones((5, 2)), Y_CE, "X"),                       # wrong width
    (np.ones((5, 3)), np.array([0, 1, 1, 0, 7]), "y"),  # label out of range
    (np.ones((5, 3)), Y_CE[:4], "y"),                   # one label short
    (_with(X_OK, (1, 1), np.nan), Y_CE, "X"),
    (np.ones((5, 3)), Y_CE.astype(float), "y"),
], ids=["X width", "label out of range", "y short", "nan in X", "float labels"])
def test_run_epoch_checks_X_and_y_like_step(impl, X, y, name):
    model = impl(CE, CE.init(0))
    before = _params_and_data(model)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        model.run_epoch(X, y, np.arange(5), 2, 0.1)
    for (W, b), (W0, b0) in zip(model.params(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.sim_slow  # 12 steps
def test_run_epoch_accepts_any_integer_permutation(impl):
    # int32, uint8, a list and a reversed view are all permutations of the rows
    model = impl(CE, CE.init(0))
    reference = impl(CE, CE.init(0)).run_epoch(X_OK, Y_CE, np.arange(5)[::-1].copy(), 2, 0.1)
    for order in (np.arange(5)[::-1], [4, 3, 2, 1, 0], np.arange(5, dtype=np.uint8)[::-1]):
        model = impl(CE, CE.init(0))
        np.testing.assert_array_equal(model.run_epoch(X_OK, Y_CE, order, 2, 0.1), reference)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf"), -float("inf"), None, "1"])
def test_step_prepared_refuses_a_bad_lr_before_changing_the_model(impl, lr):
    model = impl(CE, CE.init(0))
    batch = model.prepare(X_OK, Y_CE)
    before = _params_and_data(model)
    with pytest.raises(ValueError, match=r"\blr\b"):
        model.step_prepared(batch, lr)
    for (W, b), (W0, b0) in zip(model.params(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(sizes=(3, 2), activation="relux"), "activation"),      # no hidden layer to use it
    (dict(sizes=(3, 2), activation=5), "activation"),
    (dict(sizes=(3, 2), activation=("tanh",)), "activation"),
    (dict(sizes=(3, 4, 2), activation=("relu", 3)), "activation"),
    (dict(sizes=(3, 4, 2), loss=["mse"]), "loss"),
])
def test_network_arguments_are_checked_even_when_unused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        bpbench.Network(**kwargs)


# ---------------------------------------------------------------- found by the fuzz suite

@pytest.mark.parametrize("spelling", [">f8", np.dtype(">f4"), "double"])
def test_any_spelling_of_the_dtype_is_the_native_one(impl, spelling):
    # a big-endian dtype is still float32/float64: the net stores the native one (it used to
    # keep '>f8', which numpy's out= buffers refused and Numba could not type)
    net = bpbench.Network((3, 4, 2), dtype=spelling)
    assert net.dtype.isnative and net.dtype.name in ("float32", "float64")
    assert net == bpbench.Network((3, 4, 2), dtype=net.dtype.name)
    model = impl(net, net.init(0))
    assert np.isfinite(model.step(X_OK, Y_CE, 0.1))
    assert all(W.dtype.isnative and b.dtype.isnative for W, b in model.params())


def test_python_ints_beyond_float_range_are_refused_naming_the_argument(impl):
    # finite as Python ints, no float can hold them: a ValueError, not an OverflowError
    huge = 10**400
    model = impl(MSE, MSE.init(0))
    X = X_OK.tolist()
    X[1][2] = huge
    with pytest.raises(ValueError, match=r"\bX\b"):
        model.forward(X)
    y = Y_MSE.tolist()
    y[0][1] = -huge
    with pytest.raises(ValueError, match=r"\by\b"):
        model.loss_and_grads(X_OK, y)
    for lr in (huge, -huge):
        with pytest.raises(ValueError, match=r"\blr\b"):
            model.step(X_OK, Y_MSE, lr)
    (W0, b0), (W1, b1) = MSE.init(0)
    W1 = W1.tolist()
    W1[0][0] = huge
    with pytest.raises(ValueError, match=r"params\[1\] W"):
        impl(MSE, [(W0, b0), (W1, b1)])
    for name in ("target_loss", "tol"):
        with pytest.raises(ValueError, match=name):
            bpbench.train(model, X_OK, Y_MSE, epochs=1, **{name: huge})


def test_read_only_and_unaligned_inputs_are_accepted_and_copied_once(impl):
    # a broadcast view (read-only, zero strides) and an unaligned array: valid input, handed
    # to the implementation as a clean (C-contiguous, aligned, writeable) copy
    model = impl(CE, CE.init(0))
    X = np.broadcast_to(X_OK[:1], X_OK.shape)
    raw = np.zeros(X_OK.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(X_OK.shape)
    unaligned[...] = X_OK
    assert not X.flags.writeable and not unaligned.flags.aligned
    for data in (X, unaligned):
        batch = model.prepare(data, Y_CE)
        flags = batch.X.flags
        assert flags.c_contiguous and flags.aligned and flags.writeable
        np.testing.assert_array_equal(batch.X, data)
    reference = impl(CE, CE.init(0))
    np.testing.assert_array_equal(model.forward(unaligned), reference.forward(X_OK))


@pytest.mark.parametrize("sizes", [np.array(5), np.array([[3, 2]])], ids=["0-d", "2-D"])
def test_sizes_must_be_one_dimensional(sizes):
    with pytest.raises(ValueError, match="sizes"):
        bpbench.Network(sizes)
