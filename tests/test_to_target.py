"""``bpbench to-target``: everyone from the same start, whole runs timed in paired rounds."""

import math

import numpy as np
import pandas as pd
import pytest

from bpbench import cli
from bpbench.bench import engine, target, to_target


def assert_starts_at_init(run, net):
    for (W, b), (W0, b0) in zip(run.fresh_model().params(), net.init(0), strict=True):
        np.testing.assert_array_equal(W, W0, err_msg=run.name)
        np.testing.assert_array_equal(b, b0, err_msg=run.name)


def test_every_contestant_starts_from_net_init_0_on_the_same_data():
    net, X, y = target.target_problem(1)
    runs, skipped = to_target.make_runs(["numpy", "numba"], net, X, y, threads=1)
    assert list(runs) == ["numpy", "numba"] and not skipped
    for run in runs.values():
        assert run.X is X and run.y is y
        assert_starts_at_init(run, net)


@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_peers_start_from_net_init_0_too(peer):
    pytest.importorskip(peer)
    net, X, y = target.target_problem(1)
    runs, skipped = to_target.make_runs([peer], net, X, y, threads=1)
    if peer in skipped:
        pytest.skip(skipped[peer])
    assert_starts_at_init(runs[peer], net)


def test_a_peer_without_its_own_loop_is_skipped_saying_so(monkeypatch):
    monkeypatch.setattr(to_target.peers, "unavailable", lambda name, **kw: None)
    monkeypatch.setattr(to_target.peers, "make", lambda *a, **kw: object())
    net, X, y = target.target_problem(0)
    runs, skipped = to_target.make_runs(["torch"], net, X, y, threads=1)
    assert not runs and "train_epochs" in skipped["torch"]


def test_speed_ups_are_per_round_ratios_and_a_miss_of_the_target_is_not_compared():
    seconds = {"numba": [0.1, 0.4, 0.2], "numba_parallel": [0.5, 1.0, 0.5],
               "torch": [3.0, 4.0, 1.0], "jax": [1.0, 1.0, 1.0]}
    outcomes = {"numba": (150, 0.09, True), "numba_parallel": (1000, 0.3, False),
                "torch": (151, 0.099, True), "jax": (150, 0.098, True)}
    table = {r["contestant"]: r for r in to_target.rows(seconds, outcomes)}
    numba = table["numba"]
    assert numba["seconds"] == 0.2 and (numba["seconds_low"], numba["seconds_high"]) == (0.1, 0.4)
    # ratios 30, 10, 5: paired by round, not median(torch) / median(numba) (= 15)
    assert numba["x_torch"] == pytest.approx(10.0)
    assert (numba["x_torch_low"], numba["x_torch_high"]) == pytest.approx((5.0, 30.0))
    assert numba["verdict"] == "ok" and numba["epochs"] == 150 and numba["reached"]
    slow = table["numba_parallel"]
    assert not slow["reached"] and math.isnan(slow["x_torch"])
    assert slow["verdict"] == "did not reach the target"
    assert table["jax"]["verdict"] == "-" and table["jax"]["x_torch"] == 3.0
    assert math.isnan(table["torch"]["x_torch"])
    # a torch that missed the target: nobody is compared with it
    outcomes["torch"] = (1000, 0.5, False)
    table = {r["contestant"]: r for r in to_target.rows(seconds, outcomes)}
    assert math.isnan(table["numba"]["x_torch"])
    assert table["numba"]["verdict"] == "- (torch did not reach)"
    assert to_target.verdict("numba", True, 9.5) == "MISS x9.50<10"
    # torch not run at all (not installed, or left out): said so, not "did not reach"
    del seconds["torch"], outcomes["torch"]
    table = {r["contestant"]: r for r in to_target.rows(seconds, outcomes)}
    assert table["numba"]["verdict"] == "- (torch not run)"


def test_whole_runs_are_timed_one_per_round_in_rotated_order(monkeypatch):
    order = []

    def time_call(fn, *, sync=None, settings=None, **overrides):
        order.append(fn.name)
        fn.history = [0.05]  # reached, without training
        return engine.Timing({"numpy": 2.0, "numba": 1.0}[fn.name] * (len(order)), 0, 0, 1)

    monkeypatch.setattr(engine, "time_call", time_call)
    frame, skipped, _ = to_target.run_to_target(["numpy", "numba"], [0], rounds=2, threads=1,
                                                baseline="numpy", progress=False)
    assert order == ["numpy", "numba", "numba", "numpy"] and not skipped
    row = frame.set_index("contestant").loc["numba"]
    # round 1: numpy 2*1, numba 1*2; round 2: numba 1*3, numpy 2*4 -> ratios 1 and 8/3
    assert row["x_numpy"] == pytest.approx((1 + 8 / 3) / 2)
    assert row["x_numpy_low"] == 1.0 and row["x_numpy_high"] == pytest.approx(8 / 3)


def test_command_reports_a_contestant_that_misses_the_target(tmp_path, monkeypatch, capsys):
    # a target nobody reaches in 2 epochs: reported as missed, never compared
    monkeypatch.setattr(target, "TARGET_MAX_EPOCHS", 2)
    monkeypatch.setattr(target, "TARGET_LOSS", 1e-9)
    out = tmp_path / "t.csv"
    assert cli.main(["to-target", "--contestants", "numba,numpy", "--depths", "1",
                     "--rounds", "1", "--threads", "1", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame["contestant"]) == ["numba", "numpy"]
    for col in ("seconds", "epochs", "final_loss", "reached", "x_torch", "verdict", "commit",
                "versions"):
        assert col in frame.columns, col
    assert list(frame["epochs"]) == [2, 2] and not frame["reached"].any()
    assert frame["x_torch"].isna().all()
    assert frame.set_index("contestant").loc["numba", "verdict"] == "did not reach the target"
    assert " NO " in capsys.readouterr().out


def test_the_real_target_is_reached_by_numba_in_the_same_epochs_as_numpy(monkeypatch):
    monkeypatch.setattr(to_target, "SETTINGS", engine.make_settings(
        "smoke", warmup=0, min_repeats=1, max_repeats=1, sample_time=0))
    frame, _, _ = to_target.run_to_target(["numba", "numpy"], [1], rounds=1, threads=1,
                                          baseline="numpy", progress=False)
    numba, numpy = (frame.set_index("contestant").loc[n] for n in ("numba", "numpy"))
    assert numba["reached"] and numpy["reached"]
    assert numba["final_loss"] <= target.TARGET_LOSS
    assert abs(int(numba["epochs"]) - int(numpy["epochs"])) <= 2
    assert math.isfinite(numba["x_numpy"]) and numba["verdict"] != "did not reach the target"


@pytest.mark.parametrize("option, value", [("--rounds", "0"), ("--depths", "2,x"),
                                           ("--threads", "0")])
def test_bad_option_is_an_argparse_error_naming_it(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["to-target", option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_no_runnable_contestant_is_an_error_naming_contestants(tmp_path, capsys):
    assert cli.main(["to-target", "--contestants", "no_such_one", "--rounds", "1",
                     "--out", str(tmp_path / "x.csv")]) == cli.EXIT_ERROR
    printed = capsys.readouterr()
    assert "contestants" in printed.err and "no_such_one" in printed.out
