"""asv continuous with a confirmation pass (bpbench.bench.continuous).

The table below is asv 0.6's own output (a planted-slowdown acceptance run, trimmed); the
selection check uses asv's own benchmark filter, so the regex is judged by asv, not by us."""

import argparse
import itertools
import re
import types

import pytest

from bpbench.bench import asv_tools, continuous

BENCH = "bench_step.TimeStep.time_step"

ASV_OUTPUT = """\
                    jax           4      1024       n/a
              ================ ======= ======= =============

| Change   | Before [469a154b] <wt-e~1>   | After [66b25aa2] <wt-e>   |   Ratio | Benchmark (Parameter)                         |
|----------|------------------------------|---------------------------|---------|-----------------------------------------------|
| +        | 14.2±0.09μs                  | 18.9±0.2μs                |    1.33 | bench_step.TimeStep.time_step('numba', 1, 1)  |
| -        | 19.7±4μs                     | 16.6±0.2μs                |    0.84 | bench_step.TimeStep.time_step('numba_parallel', 1, 1) |
| !        | 460±4μs                      | failed                    |     n/a | bench_step.TimeStep.time_step('numba', 4, 32) |
|          | 38.9±0.4μs                   | 39.1±0.7μs                |    1.01 | bench_step.TimeStep.time_step('numba', 4, 1)  |

SOME BENCHMARKS HAVE CHANGED SIGNIFICANTLY.
PERFORMANCE DECREASED.
"""  # noqa: E501 (asv's table, as printed)


def point(impl, depth, batch):
    return f"{BENCH}('{impl}', {depth}, {batch})"


def table(*rows):
    """asv's table with rows (mark, ratio, name)."""
    lines = ["| Change | Before [aaaaaaaa] | After [bbbbbbbb] | Ratio | Benchmark (Parameter) |",
             "|--------|-------------------|------------------|-------|-----------------------|"]
    lines += [f"| {mark} | 1.0±0.1μs | 1.3±0.1μs | {ratio} | {name} |"
              for mark, ratio, name in rows]
    return "\n".join(["", *lines, ""])


def test_table_rows_reads_asv_output_marks_and_names():
    rows = continuous.table_rows(ASV_OUTPUT)
    assert [(r.mark, r.ratio, r.name) for r in rows] == [
        ("+", "1.33", point("numba", 1, 1)),
        # a "-" mark is not the line under the header
        ("-", "0.84", point("numba_parallel", 1, 1)),
        ("!", "n/a", point("numba", 4, 32)),
        ("", "1.01", point("numba", 4, 1)),
    ]
    assert [r.mark for r in continuous.flagged(rows)] == ["+", "-", "!"]
    assert continuous.table_rows("no table here\n| a | b |\n") == []
    # "x": not comparable (the benchmark's version changed), not a change
    rows = continuous.table_rows(table(("x", "1.50", point("numba", 1, 1))))
    assert len(rows) == 1 and continuous.flagged(rows) == []


@pytest.mark.parametrize("name", [point("numba", 1, 1), point("numba_parallel", 4, 32),
                                  point("numba", 1, 1) + " [machine/env]"])
def test_point_regex_selects_exactly_that_point_by_asvs_own_filter(name):
    from asv.benchmarks import Benchmarks

    impls, depths, batches = ["'numba'", "'numba_parallel'", "'numpy'"], ["1", "4"], ["1", "32"]
    bench = {"name": BENCH, "params": [impls, depths, batches], "param_names": ["i", "d", "b"],
             "version": "1", "type": "time"}
    # a benchmark in a subpackage whose name ends in the same name: must not be selected
    nested = dict(bench, name="legacy." + BENCH)
    conf = types.SimpleNamespace(benchmark_dir="benchmarks")
    chosen = Benchmarks(conf, [bench, nested], regex=[continuous.point_regex(name)])
    combos = [f"{BENCH}({', '.join(c)})" for c in itertools.product(impls, depths, batches)]
    selected = [combos[i] for i in chosen.benchmark_selection[BENCH]]
    assert selected == [name.split(" [")[0]]
    assert chosen.benchmark_selection["legacy." + BENCH] == []


def test_narrowed_replaces_every_spelling_of_the_selection():
    args = ["continuous", "--machine", "m", "-b", "TimeStep", "--bench=Other", "-bThird",
            "--bench", "Fourth", "--interleave-rounds", "--factor", "1.1", "A", "B"]
    names = [point("numba", 1, 1), point("numpy", 4, 32)]
    out = continuous.narrowed(args, names)
    assert out == ["continuous", "-b", continuous.point_regex(names[0]), "-b",
                   continuous.point_regex(names[1]), "--machine", "m", "--interleave-rounds",
                   "--factor", "1.1", "A", "B"]
    with pytest.raises(ValueError, match="args"):
        continuous.narrowed(["run", "A"], names)
    with pytest.raises(ValueError, match="args"):
        continuous.narrowed(["continuous", "A", "B", "-b"], names)


class FakeAsv:
    """Plays asv continuous: each call returns the next (exit, output) and records its argv."""

    def __init__(self, *passes):
        self.passes, self.calls = list(passes), []

    def __call__(self, argv, env=None, cwd=None, echo=True):
        self.calls.append(argv)
        return self.passes.pop(0)


ARGS = ["continuous", "--machine", "m", "--interleave-rounds", "--factor", "1.1", "-b",
        "TimeStep.time_step", "A", "B"]


def test_a_flag_stands_only_if_the_second_pass_raises_it_the_same_way():
    first = table(("+", "1.33", point("numba", 1, 1)), ("-", "0.84", point("numpy", 1, 32)),
                  ("+", "1.12", point("numpy", 4, 1)))
    # numba comes back slower, numpy (1, 32) does not come back, numpy (4, 1) comes back faster
    second = table(("+", "1.31", point("numba", 1, 1)), ("-", "0.90", point("numpy", 4, 1)))
    asv = FakeAsv((1, first), (1, second))
    outcome = continuous.run(["asv"], ARGS, runner=asv, echo=False)
    assert [(r.mark, r.ratio, r.name) for r in outcome.kept] == [
        ("+", "1.31", point("numba", 1, 1))]
    assert [r.name for r in outcome.dropped] == [point("numpy", 1, 32), point("numpy", 4, 1)]
    assert outcome.returncode == 1
    # the second pass: the same command, the selection narrowed to the three flagged points
    assert asv.calls[0] == ["asv", *ARGS]
    assert asv.calls[1] == ["asv", *continuous.narrowed(ARGS, [point("numba", 1, 1),
                                                               point("numpy", 1, 32),
                                                               point("numpy", 4, 1)])]
    assert "TimeStep.time_step" not in asv.calls[1]
    text = "\n".join(continuous.summary(outcome))
    assert "PERFORMANCE DECREASED (confirmed)" in text and "did not come back (noise): 2" in text


def test_flags_that_do_not_come_back_leave_a_clean_verdict():
    asv = FakeAsv((1, table(("+", "1.52", point("numpy", 1, 1)))), (0, table()))
    outcome = continuous.run(["asv"], ARGS, runner=asv, echo=False)
    assert outcome.returncode == 0 and not outcome.kept and len(outcome.dropped) == 1
    assert outcome.second == []  # it ran, and flagged nothing
    assert "NOT SIGNIFICANTLY CHANGED" in "\n".join(continuous.summary(outcome))


def test_only_faster_flags_are_confirmed_too_and_keep_exit_zero():
    asv = FakeAsv((0, table(("-", "0.80", point("numba", 1, 1)))),
                  (0, table(("-", "0.79", point("numba", 1, 1)))))
    outcome = continuous.run(["asv"], ARGS, runner=asv, echo=False)
    assert outcome.returncode == 0 and [r.mark for r in outcome.kept] == ["-"]
    assert len(asv.calls) == 2
    assert "PERFORMANCE INCREASED (confirmed)" in "\n".join(continuous.summary(outcome))


def test_no_second_pass_when_nothing_is_flagged_or_asv_failed_or_only_failures():
    for first in [(0, table()), (2, "Traceback: asv broke"),
                  (1, table(("!", "n/a", point("numba", 1, 1)))),
                  # asv says "decreased", its table shows nothing slower: asv's verdict stands
                  (1, table(("-", "0.8", point("numba", 1, 1))))]:
        asv = FakeAsv(first)
        outcome = continuous.run(["asv"], ARGS, runner=asv, echo=False)
        assert len(asv.calls) == 1 and outcome.returncode == first[0]
        assert outcome.second is None
    # a failure is kept without a rerun, beside a slower flag that is rerun
    asv = FakeAsv((1, table(("!", "n/a", point("numba", 1, 1)),
                            ("+", "1.2", point("numpy", 1, 1)))), (0, table()))
    outcome = continuous.run(["asv"], ARGS, runner=asv, echo=False)
    assert [r.mark for r in outcome.kept] == ["!"] and outcome.returncode == 1
    assert asv.calls[1] == ["asv", *continuous.narrowed(ARGS, [point("numpy", 1, 1)])]


def test_a_failed_second_pass_keeps_the_first_verdict():
    asv = FakeAsv((1, table(("+", "1.3", point("numba", 1, 1)))), (2, "Traceback"))
    outcome = continuous.run(["asv"], ARGS, runner=asv, echo=False)
    assert outcome.returncode == 1 and [r.mark for r in outcome.kept] == ["+"]
    assert "confirmation pass failed (exit 2)" in "\n".join(continuous.summary(outcome))


def test_the_wrapper_confirms_continuous_unless_told_not_to(monkeypatch):
    seen = []

    def fake_run(prefix, args, env=None, cwd=None, **_):
        seen.append(args)
        return continuous.Outcome(0, [], [], [], [], "")

    monkeypatch.setattr(asv_tools.machine, "register", lambda: "m")
    monkeypatch.setattr(asv_tools.continuous, "run", fake_run)
    monkeypatch.setattr(asv_tools.subprocess, "run",
                        lambda argv, **_: seen.append(("plain", argv)) or types.SimpleNamespace(
                            returncode=0))
    given = ["continuous", "-b", "TimeStep", "A", "B"]
    assert asv_tools.run_asv(argparse.Namespace(asv_args=given, no_confirm=False)) == 0
    assert seen.pop() == ["continuous", "--machine", "m", "-b", "TimeStep", "A", "B"]
    asv_tools.run_asv(argparse.Namespace(asv_args=given, no_confirm=True))
    assert seen.pop()[0] == "plain"
    asv_tools.run_asv(argparse.Namespace(asv_args=["run", "--quick"], no_confirm=False))
    assert seen.pop()[0] == "plain"
    assert re.search("confirm", asv_tools.__doc__)
    # the option is bpbench's, before asv's command; asv's own options pass through untouched
    from bpbench.cli import build_parser

    parsed = build_parser().parse_args(["asv", "--no-confirm", "continuous", "-b", "X", "A", "B"])
    assert parsed.no_confirm and parsed.asv_args == ["continuous", "-b", "X", "A", "B"]
    parsed = build_parser().parse_args(["asv", "continuous", "--factor", "1.1", "A", "B"])
    assert not parsed.no_confirm and parsed.asv_args == ["continuous", "--factor", "1.1", "A", "B"]
