"""``bpbench overhead``: the per-call cost of step beyond the hook, from paired rounds."""

import math

import numpy as np
import pandas as pd
import pytest

from bpbench import cli
from bpbench.bench import engine, overhead, points


def fake_timings(monkeypatch, table):
    """engine.time_call replaced: each fn gets the next median of ``table[fn]``; calls logged."""
    queues = {fn: list(values) for fn, values in table.items()}
    order = []

    def time_call(fn, *, sync=None, settings=None, **overrides):
        order.append(fn)
        return engine.Timing(queues[fn].pop(0), 0.0, 0.0, 1)

    monkeypatch.setattr(engine, "time_call", time_call)
    return order


def test_rounds_are_paired_by_index_and_the_order_rotates(monkeypatch):
    def a():
        pass

    def b():
        pass

    def c():
        pass

    order = fake_timings(monkeypatch, {a: [1, 2, 3], b: [10, 20, 30], c: [5, 6, 7]})
    seconds = overhead.time_rounds({"a": a, "b": b, "c": c}, 3)
    assert seconds == {"a": [1, 2, 3], "b": [10, 20, 30], "c": [5, 6, 7]}
    assert order == [a, b, c, b, c, a, c, a, b]


def test_overhead_and_share_come_from_per_round_differences():
    # round 2 is slow for everyone (drift): per-round pairing must not mix it with the others
    seconds = {"step": [12e-6, 24e-6, 11e-6], "hook": [10e-6, 20e-6, 10.5e-6],
               "step_prepared": [10.5e-6, 21e-6, 10.2e-6], "checks": [3e-6, 3e-6, 3e-6]}
    row = overhead.summarise(seconds)
    assert row["step_s"] == 12e-6 and row["hook_s"] == 10.5e-6 and row["checks_s"] == 3e-6
    # median of 2, 4, 0.5 us; not median(step) - median(hook) = 1.5 us
    assert row["overhead_s"] == pytest.approx(2e-6, rel=1e-12)
    assert row["prepared_overhead_s"] == pytest.approx(0.5e-6, rel=1e-12)  # of .5, 1, -.3
    shares = [2 / 12, 4 / 24, 0.5 / 11]
    assert row["share"] == pytest.approx(np.median(shares), rel=1e-12)
    assert row["share_low"] == pytest.approx(0.5 / 11, rel=1e-12)
    assert row["share_high"] == pytest.approx(2 / 12, rel=1e-12)
    assert row["verdict"] == "MISS 17%>=10%"
    assert overhead.verdict(0.099) == "ok" and overhead.verdict(0.1).startswith("MISS")
    assert overhead.verdict(math.nan) == "-"


def test_each_variant_is_the_call_it_names():
    net = points.grid_net(1, 16)
    X, y = points.grid_batch(net, 1)
    expected = points.make_model("numpy", net, net.init(0))
    expected.step(X, y, overhead.LR)
    for name in ("step", "step_prepared", "hook", "checks"):
        model = points.make_model("numpy", net, net.init(0))
        overhead.variants(model, X, y)[name]()
        want = net.init(0) if name == "checks" else expected.params()  # checks: no step
        for (W, b), (W0, b0) in zip(model.params(), want, strict=True):
            np.testing.assert_array_equal(W, W0, err_msg=name)
            np.testing.assert_array_equal(b, b0, err_msg=name)


def test_command_writes_the_csv_with_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(overhead, "SETTINGS", engine.make_settings("smoke"))
    out = tmp_path / "overhead.csv"
    assert cli.main(["overhead", "--impls", "numpy",
                     "--depths", "0,1", "--width", "16", "--rounds", "1", "--threads", "1",
                     "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame["depth"]) == [0, 1] and set(frame["impl"]) == {"numpy"}
    for col in ("step_s", "step_prepared_s", "hook_s", "checks_s", "overhead_s", "share",
                "share_low", "share_high", "verdict", "commit", "machine", "threads",
                "versions"):
        assert col in frame.columns, col
    # one round: the overhead is exactly that round's step - hook
    np.testing.assert_allclose(frame["overhead_s"], frame["step_s"] - frame["hook_s"],
                               rtol=1e-12)
    assert (frame["threads"] == 1).all()
    printed = capsys.readouterr().out
    assert "issue 11" in printed and "share" in printed and "commit" in printed


@pytest.mark.parametrize("option, value", [("--rounds", "0"), ("--depths", "one"),
                                           ("--batch", "-1"), ("--dtype", "float16")])
def test_bad_option_is_an_argparse_error_naming_it(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["overhead", option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_unknown_implementation_is_an_error_naming_impls(capsys):
    assert cli.main(["overhead", "--impls", "no_such_impl"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "impls" in err and "no_such_impl" in err
