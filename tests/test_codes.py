"""One source for the kernels' activation and loss codes, and loud refusals of what is missing."""

import pytest

import bpbench
from bpbench import codes, reference


def test_codes_follow_the_reference_tables_and_never_collide():
    assert set(codes.ACTIVATION_CODES) == set(reference.ACTIVATIONS)
    assert set(codes.LOSS_CODES) == set(reference.LOSSES)
    activation_codes = list(codes.ACTIVATION_CODES.values()) + [codes.IDENTITY]
    assert len(set(activation_codes)) == len(activation_codes)
    assert len(set(codes.LOSS_CODES.values())) == len(codes.LOSS_CODES)


def test_kernels_take_their_codes_from_the_one_table():
    pytest.importorskip("numba")
    from bpbench.impls import _numba_kernels as numba_kernels

    for name in ("RELU", "TANH", "SIGMOID", "MSE", "CROSS_ENTROPY"):
        assert getattr(numba_kernels, name) == getattr(codes, name)
    assert set(numba_kernels.ACTIVATIONS) == set(codes.ACTIVATION_CODES)


def test_a_new_reference_activation_is_refused_by_every_implementation(impl, monkeypatch):
    # an activation added to the reference tables, implemented nowhere else yet
    monkeypatch.setitem(reference.ACTIVATIONS, "softsign", lambda z: z / (1 + abs(z)))
    monkeypatch.setitem(reference.ACTIVATION_DERIVATIVES, "softsign", lambda a: (1 - abs(a)) ** 2)
    net = bpbench.Network((3, 4, 2), activation="softsign")
    with pytest.raises(NotImplementedError, match="softsign"):
        impl(net, net.init(0))


def test_a_new_reference_loss_is_refused_by_every_implementation(impl, monkeypatch):
    monkeypatch.setitem(reference.LOSSES, "hinge", lambda out, y: 0.0)
    net = bpbench.Network((3, 4, 2), loss="hinge")
    with pytest.raises(NotImplementedError, match="hinge"):
        impl(net, net.init(0))
