"""``asv continuous`` with a confirmation pass: a flag counts only if fresh processes raise it
again.

Why. On a shared machine whole benchmark processes run 15-100% slow, in bursts
(docs/measurements.md, "Where the false alarms come from"). When about half of one commit's
processes of a point land in such a burst and the other commit's do not, asv's statistics, which
pool the samples of all processes, see a real difference and flag the point although the code is
the same. A change in the code moves every process of that point, in any pass; a burst does not
come back at the same point, in the same direction, on a rerun minutes later.

What. :func:`run` runs ``asv continuous`` exactly as given (the first pass). If asv flagged points
(``+`` slower, ``-`` faster), it runs ``asv continuous`` again on those points only: the same
commits and options, ``-b`` narrowed to each point's exact name (asv matches a parameterised
benchmark's regex against ``name(param, ...)``, so one point can be selected), in fresh processes.
A flag is kept only where the second pass flags the same point the same way. A benchmark that
started or stopped failing (``!``, ``*``) is kept without a rerun: that is not noise. The exit
status follows asv continuous: 1 when a confirmed point got slower or a benchmark started to fail.

Cost: the second pass runs only when something was flagged, and only the flagged points, so a
compare that flags nothing costs what plain asv costs; one that does installs both commits once
more and runs the flagged points' rounds again (1.3 min for 4 points, 2.0 min for 6, on a
2-core machine; docs/measurements.md).

``bpbench asv continuous ...`` uses this; ``bpbench asv --no-confirm continuous ...`` runs plain
asv. ``scripts/asv_acceptance.py`` calls :func:`run` with its own asv configuration.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

#: asv's change marks: slower, faster (judged with statistics and --factor), started failing,
#: stopped failing
SLOWER, FASTER, FAILS, FIXED = "+", "-", "!", "*"
#: the marks a second pass confirms; the others are not noise and stand as they are
NOISY = (SLOWER, FASTER)
#: every mark of a change ("x", not comparable: the benchmark's version differs, is none)
CHANGES = (SLOWER, FASTER, FAILS, FIXED)


@dataclass(frozen=True)
class Row:
    """One row of the comparison table ``asv continuous`` prints."""

    mark: str
    before: str
    after: str
    ratio: str
    #: the point as asv names it: ``module.Class.method(param, ...)``
    name: str


def table_rows(output):
    """The rows of the comparison tables in asv's output (tabulate's "github" format,
    ``| + | 14.2±0.1μs | 18.9±0.2μs | 1.33 | bench.Class.method('numba', 1, 1) |``), with a
    header and a separator line skipped. A name with `` [machine/env]`` appended (asv does so
    when it compares several environments) is kept whole."""
    rows = []
    for line in output.splitlines():
        text = line.strip()
        if not (text.startswith("|") and text.endswith("|")):
            continue
        cells = [c.strip() for c in text[1:-1].split("|")]
        if len(cells) != 5 or cells[0] == "Change":
            continue
        if all(cell and set(cell) <= set("-:") for cell in cells):
            continue  # the line under the header
        rows.append(Row(*cells))
    return rows


def flagged(rows):
    """The rows asv marked as changed (:data:`CHANGES`), in its order."""
    return [row for row in rows if row.mark in CHANGES]


def point_regex(name):
    """The ``-b`` regex that selects exactly the point ``name`` (``module.Class.method(params)``,
    as asv prints it; an appended `` [machine/env]`` is dropped)."""
    name = re.sub(r" \[[^\]]*\]$", "", name)
    return "^" + re.escape(name) + "$"


#: asv continuous's benchmark selection, in each spelling argparse accepts
_BENCH_OPTIONS = ("-b", "--bench")


def narrowed(args, names):
    """asv continuous ``args`` (``["continuous", option..., base, branch]``) with every
    benchmark selection replaced by one ``-b`` per point of ``names``."""
    if not args or args[0] != "continuous":
        raise ValueError(f"args: expected an asv continuous command line, got {args!r}")
    kept, skip = [], False
    for arg in args[1:]:
        if skip:
            skip = False
        elif arg in _BENCH_OPTIONS:
            skip = True  # its value is the next argument
        elif arg.startswith("--bench=") or (arg.startswith("-b") and not arg.startswith("--")):
            pass  # "--bench=X", "-bX"
        else:
            kept.append(arg)
    if skip:
        raise ValueError("args: -b/--bench without a value")
    selection = [item for name in names for item in ("-b", point_regex(name))]
    return ["continuous", *selection, *kept]


def run_pass(argv, env=None, cwd=None, echo=True):
    """Run one asv command, its output shown as it comes (``echo``) and kept; (exit, output)."""
    lines = []
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                          errors="replace", bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
    return proc.returncode, "".join(lines)


@dataclass
class Outcome:
    """What a compare with confirmation found."""

    #: exit status, as asv continuous's: 1 when a kept flag says slower or failing
    returncode: int
    #: the flagged rows of the first pass
    first: list
    #: the rows of the second pass; None when no second pass ran (nothing to confirm, or asv
    #: failed), empty when it ran and flagged nothing
    second: list | None
    #: flags that stand: confirmed "+"/"-" (the second pass's row) and every "!"/"*"
    kept: list
    #: first-pass "+"/"-" flags the second pass did not raise again (the first pass's row)
    dropped: list
    #: the whole output of both passes
    output: str
    #: why the first pass's verdict stands unconfirmed, if it does
    note: str = ""


def judge(first, second):
    """(kept, dropped) from the first pass's rows and the second pass's rows."""
    again = {row.name: row for row in flagged(second)}
    kept, dropped = [], []
    for row in flagged(first):
        if row.mark not in NOISY:
            kept.append(row)
        elif row.name in again and again[row.name].mark == row.mark:
            kept.append(again[row.name])
        else:
            dropped.append(row)
    return kept, dropped


def run(prefix, args, env=None, cwd=None, echo=True, between=None, runner=run_pass):
    """``asv continuous`` with a confirmation pass (see the module); an :class:`Outcome`.

    ``prefix`` is the command before asv's arguments (``[python, "-m", "asv", "--config",
    path]``), ``args`` asv's arguments from ``continuous`` on (``--machine`` included where
    wanted). ``between()``, if given, is called after the first pass when a second one follows
    (to keep the first pass's result files, which the second overwrites for its points).
    ``runner(argv, env=, cwd=, echo=)`` runs one pass (tests give their own)."""
    args = list(args)
    narrowed(args, [])  # refuse a command line that is not asv continuous before running it
    code, out = runner([*prefix, *args], env=env, cwd=cwd, echo=echo)
    first = flagged(table_rows(out))
    noisy = [row for row in first if row.mark in NOISY]
    if code not in (0, 1) or not noisy:
        # asv failed (nothing to confirm), or it flagged nothing a rerun could undo
        return Outcome(code, first, None, first, [], out)
    if code == 1 and not any(row.mark in (SLOWER, FAILS) for row in first):
        # asv said "decreased" but no row of its table says so: its verdict stands
        return Outcome(code, first, None, first, [], out,
                       note="asv reported a decrease that its table does not show: its "
                            "verdict stands, unconfirmed")
    if between is not None:
        between()
    say = (f"\nbpbench: confirmation pass: {len(noisy)} flagged point(s) run again in fresh "
           "processes; a flag stands only if it comes back the same way\n")
    if echo:
        print(say, flush=True)
    code2, out2 = runner([*prefix, *narrowed(args, [row.name for row in noisy])], env=env,
                         cwd=cwd, echo=echo)
    output = out + say + out2
    if code2 not in (0, 1):
        # the confirmation itself failed: keep the first pass's verdict, say so
        return Outcome(code, first, None, first, [], output,
                       note=f"the confirmation pass failed (exit {code2}): asv's first "
                            "verdict stands, unconfirmed")
    second = table_rows(out2)
    kept, dropped = judge(first, second)
    code = 1 if any(row.mark in (SLOWER, FAILS) for row in kept) else 0
    return Outcome(code, first, second, kept, dropped, output)


def summary(outcome):
    """The verdict of a compare with confirmation, as lines of text."""
    if not outcome.first:
        return []
    if outcome.note:
        return ["", f"bpbench: {outcome.note}"]
    lines = ["", "bpbench: after the confirmation pass"]
    for title, rows in (("flags that stand", outcome.kept),
                        ("flags that did not come back (noise)", outcome.dropped)):
        lines.append(f"  {title}: {len(rows) or 'none'}")
        lines += [f"    {row.mark} {row.ratio:>7} {row.name}" for row in rows]
    if any(row.mark in (SLOWER, FAILS) for row in outcome.kept):
        lines.append("PERFORMANCE DECREASED (confirmed).")
    elif any(row.mark in (FASTER, FIXED) for row in outcome.kept):
        lines.append("PERFORMANCE INCREASED (confirmed).")
    else:
        lines.append("BENCHMARKS NOT SIGNIFICANTLY CHANGED (no flag came back).")
    return lines
