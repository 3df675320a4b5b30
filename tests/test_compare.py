"""bpbench compare: one CSV row per point, checked before timed, the table printed."""

import argparse
import math

import numpy as np
import pandas as pd
import pytest

from bpbench.bench import compare, points

FAST = {"warmup": 1, "min_time": 0.01, "min_repeats": 3, "max_time": 0.1}
#: ceilings written by hand (the real ones are measured once per machine, about 30 s)
CEILINGS = {"peak": {"float32": 1e11, "float64": 5e10},
            "levels": [{"level": "L1", "capacity": 65536, "bandwidth": 3e11},
                       {"level": "DRAM", "capacity": None, "bandwidth": 5e10}]}


def test_every_point_is_a_row_with_consistent_numbers():
    frame = compare.run_grid(["numpy", "naive"], depths=[0, 1], batches=[1, 3], width=8,
                             progress=False, timing=FAST, threads=1, ceilings=CEILINGS)
    assert len(frame) == 2 * 2 * 2
    assert set(frame["status"]) == {"ok"}
    assert list(frame.columns) == list(compare.COLUMNS)
    for row in frame.itertuples():
        net = points.grid_net(row.depth, 8)
        assert row.gflops == pytest.approx(net.step_flops(row.batch) / row.median_s / 1e9)
        assert row.q25_s <= row.median_s <= row.q75_s
        assert row.max_rel_error <= 1e-4  # checked against the reference before timing
        assert row.floor_fraction == pytest.approx(row.floor_s / row.median_s)
        assert row.ci_low_s <= row.median_s <= row.ci_high_s
        assert row.roofline_fraction == pytest.approx(row.roofline_s / row.median_s)
        assert row.threads == 1 and row.machine and row.commit and "numpy" in row.versions
    numpy_rows = frame[frame["impl"] == "numpy"]
    assert np.allclose(numpy_rows["speedup_vs_numpy"], 1.0)


def test_a_wrong_answer_is_not_timed_and_fails_the_command(monkeypatch, tmp_path, capsys):
    real = points.make_model

    class Wrong:
        """numpy, with every gradient doubled."""

        def __init__(self, model):
            self.model = model

        def loss_and_grads(self, X, y):
            loss, grads = self.model.loss_and_grads(X, y)
            return loss, [(2 * dW, 2 * db) for dW, db in grads]

        def __getattr__(self, name):
            return getattr(self.model, name)

    def make(name, net, params, **kwargs):
        model = real(name, net, params, **kwargs)
        return Wrong(model) if name == "naive" else model

    monkeypatch.setattr(points, "make_model", make)
    out = tmp_path / "c.csv"
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    args = parser.parse_args(["--impls", "numpy,naive", "--depths", "1", "--batches", "1,2",
                              "--width", "8", "--out", str(out), "--quiet", "--no-floor",
                              "--no-roofline"])
    monkeypatch.setattr(compare, "TIMING", FAST)
    assert compare.run(args) == compare.EXIT_DISAGREE
    frame = pd.read_csv(out)
    assert len(frame) == 4  # one row per point, the refused ones included
    naive = frame[frame["impl"] == "naive"]
    assert set(naive["status"]) == {"disagrees"} and naive["median_s"].isna().all()
    assert "relative error" in naive["reason"].iloc[0]
    assert set(frame[frame["impl"] == "numpy"]["status"]) == {"ok"}
    printed = capsys.readouterr().out
    assert "### depth 1" in printed and "naive disagrees" in printed


def test_hopeless_and_unavailable_points_are_skipped_with_a_reason():
    frame = compare.run_grid(["naive"], depths=[1], batches=[4096], width=256, progress=False,
                             timing=FAST, floor=False, roofline=False)
    row = frame.iloc[0]
    assert row["status"] == "skipped" and "pure Python" in row["reason"]
    assert math.isnan(row["median_s"])


@pytest.mark.parametrize("kwargs, word", [
    ({"impls": ["nope"]}, "impls"),
    ({"impls": "numpy"}, "impls"),
    ({"depths": []}, "depths"),
    ({"batches": [0]}, "batches"),
    ({"width": 0}, "width"),
    ({"dtype": "float16"}, "dtype"),
])
def test_bad_grid_arguments_are_value_errors(kwargs, word):
    with pytest.raises(ValueError, match=word):
        compare.run_grid(progress=False, **kwargs)
