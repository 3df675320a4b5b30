"""bpbench report: asv's JSON -> DataFrame -> tables with speed-ups, floor fractions, winners.

The results here are written by hand in asv's format (asv 0.6: ``result_columns`` + one row
per benchmark), with numbers chosen so every derived value is known exactly.
"""

import argparse
import json
import math

import pytest

from bpbench.bench import points, report

COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
           "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat"]
IMPLS = ["'numpy'", "'numba'", "'torch'"]
STEP = "bench_step.TimeStep.time_step"


def write_results(root, commit="a" * 40, date=1_700_000_000_000, step=None, floor=None,
                  gflops=None, machine="box"):
    """A results folder: TimeStep (+ rates) for numpy, numba, torch at depth 1, batch 1 and 8."""
    (root / machine).mkdir(parents=True, exist_ok=True)
    (root / machine / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    params = [IMPLS, ["1"], ["1", "8"]]
    meta = {STEP: {"param_names": ["impl", "depth", "batch"], "type": "time", "unit": "seconds",
                   "params": params},
            report.FLOOR: {"param_names": ["impl", "depth", "batch"], "type": "track",
                           "unit": "fraction", "params": params},
            report.GFLOPS: {"param_names": ["impl", "depth", "batch"], "type": "track",
                            "unit": "GFLOP/s", "params": params}}
    (root / "benchmarks.json").write_text(json.dumps({**meta, "version": 2}))
    # order of values: itertools.product(impls, depths, batches)
    step = step or [2e-3, 8e-3, 1e-3, 2e-3, float("nan"), None]
    q25 = [v * 0.95 if isinstance(v, float) and v == v else None for v in step]
    q75 = [v * 1.05 if isinstance(v, float) and v == v else None for v in step]
    q75[1] = step[1] * 1.5  # numpy at batch 8: interquartile range 55% of the median: noisy
    results = {STEP: [step, params, "v", 1_700_000_100_000, 1.0, None, None, q25, q75]}
    if floor is not None:
        results[report.FLOOR] = [floor, params, "v", 1_700_000_100_000, 1.0]
        results[report.GFLOPS] = [gflops, params, "v", 1_700_000_100_000, 1.0]
    data = {"commit_hash": commit, "env_name": "existing-py", "date": date, "params": {},
            "python": "3.11", "requirements": {}, "env_vars": {}, "result_columns": COLUMNS,
            "results": results, "durations": {}, "version": 2}
    (root / machine / f"{commit[:8]}-existing-py.json").write_text(json.dumps(data))


def test_load_results_one_row_per_benchmark_and_params(tmp_path):
    write_results(tmp_path)
    frame = report.load_results(str(tmp_path))
    assert len(frame) == 6
    row = frame[(frame["impl"] == "numba") & (frame["batch"] == 8)].iloc[0]
    assert row["depth"] == 1 and row["value"] == 2e-3 and row["status"] == "ok"
    assert row["q25"] == pytest.approx(1.9e-3) and row["spread"] == pytest.approx(0.1)
    torch = frame[frame["impl"] == "torch"].set_index("batch")["status"]
    assert torch[1] == "skipped" and torch[8] == "failed"  # asv: NaN skipped, null failed


def test_tables_have_speedups_winners_and_noise_flags(tmp_path):
    write_results(tmp_path)
    text = report.format_tables(report.step_table(report.load_results(str(tmp_path))))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| 1 ") or line.startswith("| 8 ")}
    # batch 1: numba 1 ms vs numpy 2 ms -> 2x, numba wins
    assert "1 ms (2×)" in rows["1"] and rows["1"].rstrip().endswith("**numba** |")
    # batch 8: numba 2 ms vs numpy 8 ms -> 4x; numpy's wide interquartile range is flagged
    assert "2 ms (4×)" in rows["8"] and "8 ms (1×) ~" in rows["8"]
    assert "### depth 1" in text


def test_floor_fraction_is_rescaled_to_the_step_median(tmp_path):
    net = points.grid_net(1)
    flops = [net.step_flops(b) for b in (1, 8)] * 3
    # the rate benchmark saw each point run twice as slow as TimeStep, at half the floor fraction
    step = [2e-3, 8e-3, 1e-3, 2e-3, 1e-3, 1e-3]
    rate_time = [2 * t for t in step]
    gflops = [f / t / 1e9 for f, t in zip(flops, rate_time, strict=True)]
    floor_s = 5e-4
    floor = [floor_s / t for t in rate_time]
    write_results(tmp_path, step=step, floor=floor, gflops=gflops)
    table = report.step_table(report.load_results(str(tmp_path))).set_index(["impl", "batch"])
    # floor seconds / step median, whatever timing the rate benchmark had
    assert table.loc[("numpy", 1), "floor_fraction"] == pytest.approx(floor_s / 2e-3)
    assert table.loc[("numba", 8), "floor_fraction"] == pytest.approx(floor_s / 2e-3)


def test_latest_commit_by_default_and_prefix_selection(tmp_path):
    write_results(tmp_path, commit="a" * 40, date=1_700_000_000_000)
    write_results(tmp_path, commit="b" * 40, date=1_800_000_000_000,
                  step=[4e-3, 8e-3, 1e-3, 2e-3, float("nan"), None])
    assert set(report.load_results(str(tmp_path))["commit"]) == {"b" * 40}
    old = report.load_results(str(tmp_path), machine="box", commit="aaaa")
    assert set(old["commit"]) == {"a" * 40}
    assert old[(old["impl"] == "numpy") & (old["batch"] == 1)]["value"].iloc[0] == 2e-3


@pytest.mark.parametrize("kwargs, word", [
    ({}, "no asv results"),
    ({"machine": "other"}, "machine 'other'"),
    ({"commit": "ffff"}, "commit 'ffff'"),
])
def test_missing_results_are_clear_errors(tmp_path, kwargs, word):
    if kwargs:
        write_results(tmp_path)
    with pytest.raises(ValueError, match=word):
        report.load_results(str(tmp_path), **kwargs)


def test_report_command_writes_markdown_and_plots(tmp_path, capsys):
    write_results(tmp_path)
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run(parser.parse_args(["--results-dir", str(tmp_path)])) == 0
    text = (tmp_path / "README.md").read_text()
    assert "# bpbench results" in text and "| batch | numpy | numba | torch | winner |" in text
    assert "**Failed**" in text and "time_step [torch]" in text
    assert "Machine `box`" in text and "commit `aaaaaaaaaa`" in text
    pytest.importorskip("matplotlib")
    assert (tmp_path / "box" / "time_vs_batch.png").stat().st_size > 1000
    assert (tmp_path / "box" / "speedup_heatmap.png").stat().st_size > 1000
    assert "![time_vs_batch.png](box/time_vs_batch.png)" in text
    assert "wrote" in capsys.readouterr().out


def test_without_matplotlib_tables_only_said_once(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    write_results(tmp_path)
    path, files, note = report.write_report(report.load_results(str(tmp_path)),
                                            str(tmp_path / "README.md"),
                                            results_dir=str(tmp_path))
    assert files == [] and "tables only" in note
    assert (tmp_path / "README.md").read_text().count("tables only") == 1


def test_format_seconds():
    assert report.format_seconds(4.12e-4) == "412 µs"
    assert report.format_seconds(2.5) == "2.5 s"
    assert report.format_seconds(math.nan) == "-"


def write_ceilings(root, machine="box", peak=1e11, bandwidth=1e11):
    """A ceilings.csv as `bpbench roofline --out` writes it (values chosen by hand)."""
    import pandas as pd

    from bpbench.bench import roofline

    ceil = {"machine": machine, "threads": 2, "peak": {"float32": peak, "float64": peak / 2},
            "levels": [{"level": "L2", "capacity": 2**21, "bandwidth": bandwidth},
                       {"level": "DRAM", "capacity": None, "bandwidth": bandwidth / 4}]}
    record = {"commit": "a" * 40, "command": "bpbench roofline", "timestamp": "now",
              "numpy": "2.0"}
    frame = roofline.to_frame(ceil, record)
    frame.to_csv(root / machine / "ceilings.csv", index=False)
    back = roofline.from_frame(pd.read_csv(root / machine / "ceilings.csv"))
    assert back["peak"] == ceil["peak"] and back["levels"] == ceil["levels"]
    return ceil


def test_roofline_fractions_come_from_the_machines_ceilings(tmp_path):
    write_results(tmp_path)
    ceil = write_ceilings(tmp_path)
    frame = report.load_results(str(tmp_path))
    table = report.step_table(frame, report.load_ceilings(str(tmp_path), "box")[0])
    row = table[(table["impl"] == "numba") & (table["batch"] == 8)].iloc[0]
    # depth 1, batch 8, float32, width 256: compute-bound at 1e11 FLOP/s (the model's own
    # count is checked by hand in test_roofline.py)
    from bpbench.bench import roofline
    expected = roofline.bound(points.grid_net(1), 8, ceil)["roofline_s"]
    assert row["roofline_fraction"] == pytest.approx(expected / 2e-3)
    text = report.format_tables(table)
    assert f"roof {expected / 2e-3:.0%}" in text


def test_two_machines_are_never_one_column_but_a_column_each(tmp_path):
    import pandas as pd

    write_results(tmp_path, machine="amd-epyc-f25m17-2cpu")
    write_results(tmp_path, machine="intel-xeon-f6m143-16cpu",
                  step=[1e-3, 4e-3, 5e-4, 1e-3, float("nan"), None])
    frames = report.load_all(str(tmp_path))
    assert set(frames) == {"amd-epyc-f25m17-2cpu", "intel-xeon-f6m143-16cpu"}
    mixed = pd.concat([report.step_table(f) for f in frames.values()])
    with pytest.raises(report.MixedMachinesError, match="2 machines"):
        report.format_tables(mixed)
    path, _, _ = report.write_report(frames, str(tmp_path / "README.md"), plots=False,
                                     results_dir=str(tmp_path), summary=str(tmp_path / "s.md"))
    text = (tmp_path / "README.md").read_text()
    assert "## amd-epyc-f25m17-2cpu" in text and "## intel-xeon-f6m143-16cpu" in text
    header = "| impl | depth | batch | amd-epyc-f25m17-2cpu | intel-xeon-f6m143-16cpu |"
    assert header in text
    assert "| numpy | 1 | 1 | 2 ms | 1 ms |" in text
    assert "**amd-epyc-f25m17-2cpu**" in (tmp_path / "s.md").read_text()


def write_compare(root, machine="box"):
    """A compare.csv with hand-picked medians: numba wins at batch 1, numpy at batch 64."""
    import pandas as pd

    (root / machine).mkdir(parents=True, exist_ok=True)
    (root / machine / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    rows = []
    for impl, b1, b64 in [("numpy", 3e-5, 1e-4), ("numba", 1e-5, 2e-4)]:
        for batch, median in [(1, b1), (64, b64)]:
            rows.append({"impl": impl, "depth": 2, "batch": batch, "width": 256,
                         "dtype": "float32", "median_s": median, "status": "ok",
                         "commit": "c" * 40, "threads": 2, "command": "bpbench compare"})
    rows.append({**rows[0], "depth": 1, "median_s": 9.0})  # another depth: not in the block
    pd.DataFrame(rows).to_csv(root / machine / "compare.csv", index=False)


def test_readme_block_is_the_depth_two_grid_with_its_provenance(tmp_path):
    write_compare(tmp_path)
    text = "\n".join(report.readme_block(str(tmp_path)))
    assert "**box**, commit `cccccccccc`, 2 threads, `bpbench compare`" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert lines[0] == "| batch | numpy | numba | fastest |"
    assert lines[2:] == ["| 1 | 30 µs | 10 µs | **numba** |",
                         "| 64 | 100 µs | 200 µs | **numpy** |"]
    assert "9.0" not in text and "9 s" not in text
    assert report.readme_block(str(tmp_path / "none")) == []
    # results/local/ (a user's own runs, no machine.json) is not a machine: left out
    write_compare(tmp_path, machine="local")
    (tmp_path / "local" / "machine.json").unlink()
    (tmp_path / "local" / "goals.csv").write_text("old,columns\n1,2\n")
    assert "**local**" not in "\n".join(report.readme_block(str(tmp_path)))


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n\n{report.README_BEGIN}\nold figures\n{report.README_END}\n"
                      "\n## after\n")
    assert report.update_readme(str(readme), ["new figures"]) is True
    assert readme.read_text() == (f"# top\n\n{report.README_BEGIN}\nnew figures\n"
                                  f"{report.README_END}\n\n## after\n")
    assert report.update_readme(str(readme), ["new figures"]) is False  # idempotent
    bare = tmp_path / "BARE.md"
    bare.write_text("# no markers\n")
    with pytest.raises(ValueError, match="BARE.md"):
        report.update_readme(str(bare), ["x"])
    assert bare.read_text() == "# no markers\n"


def test_goals_table_shows_each_peer_ratio_with_its_round_range():
    import pandas as pd

    frame = pd.DataFrame([
        {"dtype": "float32", "width": 256, "depth": 1, "batch": 1, "best_s": 1e-5,
         "best": "numba", "x_torch": 6.0, "x_torch_low": 5.5, "x_torch_high": 6.5,
         "x_jax": 2.0, "x_jax_low": 1.9, "x_jax_high": 2.1, "x_floor": 1.5,
         "x_roofline": 3.0, "verdict_torch": "miss (6.0x < 10x)", "verdict_peers": "ok"},
        {"dtype": "float32", "width": 256, "depth": 1, "batch": 16, "best_s": math.nan,
         "best": "", "x_torch": math.nan, "x_torch_low": math.nan, "x_torch_high": math.nan,
         "x_jax": math.nan, "x_jax_low": math.nan, "x_jax_high": math.nan,
         "x_floor": math.nan, "x_roofline": math.nan, "verdict_torch": "not timed",
         "verdict_peers": "not timed"}])
    lines = report.goals_table(frame).splitlines()
    head = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert head[5:7] == ["x torch", "x jax"]
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells[5:7] == ["6.00 (5.50-6.50)", "2.00 (1.90-2.10)"]
    assert cells[4].endswith("(numba)") and cells[9] == "miss (6.0x < 10x)"
    assert "not timed" in lines[3]


def test_to_target_and_overhead_tables_show_ranges_and_verdicts(tmp_path):
    import pandas as pd

    target = pd.DataFrame([
        {"depth": 2, "contestant": "numba", "seconds": 0.02, "seconds_low": 0.019,
         "seconds_high": 0.025, "epochs": 158, "final_loss": 0.0992, "reached": True,
         "x_torch": 18.0, "x_torch_low": 16.5, "x_torch_high": 19.0, "verdict": "ok"},
        {"depth": 2, "contestant": "jax", "seconds": 0.8, "seconds_low": 0.7,
         "seconds_high": 0.9, "epochs": 1000, "final_loss": 0.3, "reached": False,
         "x_torch": math.nan, "x_torch_low": math.nan, "x_torch_high": math.nan,
         "verdict": "did not reach the target"}])
    lines = report.to_target_table(target).splitlines()
    assert lines[2] == ("| 2 | numba | 0.020 (0.019-0.025) | 158 | 0.0992 | yes | "
                        "18.0 (16.5-19.0) | ok |")
    assert lines[3].split("|")[6:8] == [" no ", " - "]
    over = pd.DataFrame([{"impl": "numba", "depth": 1, "batch": 1, "step_s": 20e-6,
                          "step_prepared_s": 17e-6, "hook_s": 16e-6, "checks_s": 2.5e-6,
                          "overhead_s": 4e-6, "share": 0.2, "share_low": 0.15,
                          "share_high": 0.25, "verdict": "MISS 20%>=10%"}])
    row = report.overhead_table(over).splitlines()[2]
    assert row == ("| numba | 1 | 1 | 20 µs | 17 µs | 16 µs | 2.5 µs | 4 µs | "
                   "20.0% (15.0%-25.0%) | MISS 20%>=10% |")
