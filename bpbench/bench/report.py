"""``bpbench report``: asv results -> a pandas DataFrame -> ``results/README.md`` and plots.

:func:`load_results` reads asv's JSON (``results/<machine>/<commit>-<env>.json``, with the
parameter names and units of ``results/benchmarks.json``) into one row per benchmark and
parameter combination. :func:`write_report` writes, per depth, the table of median step time
by implementation and batch, with each cell's speed-up over ``numpy`` and fraction of the BLAS
floor, the winner per point, and the other benchmarks (float64, widths, loss_and_grads, peak
memory, compile cost, time to target) as smaller tables; with matplotlib (the ``plot`` extra)
also ``time_vs_batch.png`` (log-log, one panel per depth, one line per implementation) and
``speedup_heatmap.png``. :func:`format_tables` is shared with ``bpbench compare``.

A cell whose relative interquartile range ``(q75 - q25) / median`` exceeds
:data:`NOISY_SPREAD` is marked ``~`` (noisy): do not read small differences into it.
"""

from __future__ import annotations

import ast
import datetime
import glob
import itertools
import json
import math
import os

#: relative interquartile range above which a timing is flagged as noisy
NOISY_SPREAD = 0.2

#: asv benchmark names the main table is built from
STEP = "bench_step.TimeStep.time_step"
FLOOR = "bench_rates.TrackStepRate.track_floor_fraction"
GFLOPS = "bench_rates.TrackStepRate.track_gflops"
MEM_STEP = "bench_memory.PeakMemStep.peakmem_step"
MEM_SETUP = "bench_memory.PeakMemStep.peakmem_setup"

#: contestants in display order (unknown ones follow alphabetically)
ORDER = ("naive", "numpy", "numba", "numba_parallel", "cuda", "torch", "torch_compile", "jax")

_LEGEND = ("Cells: median time per SGD step (speed-up over numpy, fraction of the BLAS floor = "
           "time of the step's matrix products through NumPy's BLAS / step time). "
           f"`~`: noisy (interquartile range > {NOISY_SPREAD:.0%} of the median). "
           "`-`: not run here (unavailable, or too slow to be worth timing).")


class ResultsError(ValueError):
    """No usable asv results where they were looked for; the message says what was found."""


# ---------------------------------------------------------------------------- loading
def _load_json(path):
    with open(path) as f:
        return json.load(f)


def _param_value(text):
    """asv stores parameter values as their repr: "'numpy'" -> 'numpy', "256" -> 256."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _result_files(results_dir, machine):
    files = []
    for path in sorted(glob.glob(os.path.join(results_dir, machine, "*.json"))):
        if os.path.basename(path) == "machine.json":
            continue
        data = _load_json(path)
        if isinstance(data, dict) and "results" in data and "commit_hash" in data:
            files.append((path, data))
    return files


def _machines(results_dir):
    return sorted(os.path.basename(os.path.dirname(p))
                  for p in glob.glob(os.path.join(results_dir, "*", "machine.json")))


def _choose(results_dir, machine, commit):
    """(machine, [result file data]) for the requested or latest machine and commit."""
    machines = _machines(results_dir)
    if not machines:
        raise ResultsError(f"no asv results under {results_dir!r} (expected "
                           f"{results_dir}/<machine>/machine.json); run `asv machine --yes` "
                           "and `asv run --python=same --set-commit-hash=$(git rev-parse HEAD)` "
                           "first")
    if machine is not None and machine not in machines:
        raise ResultsError(f"machine {machine!r} has no results in {results_dir!r}; "
                           f"found: {', '.join(machines)}")
    candidates = [(m, d) for m in ([machine] if machine else machines)
                  for _, d in _result_files(results_dir, m)]
    if commit is not None:
        candidates = [(m, d) for m, d in candidates if d["commit_hash"].startswith(commit)]
    if not candidates:
        where = f"machine {machine!r}" if machine else f"{results_dir!r}"
        what = f" for commit {commit!r}" if commit else ""
        raise ResultsError(f"no asv result files{what} in {where}")
    # the latest: newest commit date, then the most recently started run
    def recency(item):
        data = item[1]
        columns = data.get("result_columns") or []
        at = columns.index("started_at") if "started_at" in columns else None
        started = max((row[at] for row in data["results"].values()
                       if at is not None and len(row) > at and row[at]), default=0)
        return (data.get("date") or 0, started)
    # one file: one environment (asv writes one file per commit and environment; mixing two
    # environments would put two numbers in one cell)
    best_machine, best = max(candidates, key=recency)
    return best_machine, [best]


def load_results(results_dir="results", machine=None, commit=None):
    """asv results of one machine and commit as a DataFrame, one row per benchmark x params.

    ``machine``: a folder name under ``results_dir`` (default: the one with the latest
    results); ``commit``: a commit hash or prefix (default: the latest one benchmarked there).
    When several environments ran that commit, the most recently run one is read.
    Columns: machine, commit, env, date, benchmark (asv name, e.g.
    ``bench_step.TimeStep.time_step``), kind (time/peakmemory/track), unit, one column per
    parameter (impl, depth, batch, width...), value (median for time benchmarks), q25, q75,
    spread ((q75 - q25) / value), status ("ok", "skipped", "failed").
    Raises :class:`ResultsError` (a ValueError) when nothing matches.
    """
    import pandas as pd

    machine, files = _choose(results_dir, machine, commit)
    meta_path = os.path.join(results_dir, "benchmarks.json")
    meta = _load_json(meta_path) if os.path.exists(meta_path) else {}
    rows = []
    for data in files:
        columns = data.get("result_columns") or ["result", "params"]
        date = data.get("date")
        when = (datetime.datetime.fromtimestamp(date / 1000, datetime.timezone.utc)
                .isoformat(timespec="seconds") if date else "")
        for name, values in data["results"].items():
            # asv leaves out trailing empty columns: a row may be shorter, never longer
            entry = dict(zip(columns[:len(values)], values, strict=True))
            info = meta.get(name, {})
            param_names = info.get("param_names") or [f"param{i}" for i in
                                                      range(len(entry.get("params") or []))]
            combos = list(itertools.product(*(entry.get("params") or [])))
            results = entry.get("result")
            if results is None:
                results = [None] * max(len(combos), 1)
            q25 = entry.get("stats_q_25") or [None] * len(results)
            q75 = entry.get("stats_q_75") or [None] * len(results)
            for i, value in enumerate(results):
                row = {"machine": machine, "commit": data["commit_hash"],
                       "env": data.get("env_name", ""), "date": when, "benchmark": name,
                       "kind": info.get("type", name.rsplit(".", 1)[-1].split("_", 1)[0]),
                       "unit": info.get("unit", "")}
                if combos:
                    row.update({p: _param_value(v)
                                for p, v in zip(param_names, combos[i], strict=True)})
                if value is None:
                    status, value = "failed", math.nan
                elif isinstance(value, float) and math.isnan(value):
                    status = "skipped"
                else:
                    status = "ok"
                lo = q25[i] if i < len(q25) and q25[i] is not None else math.nan
                hi = q75[i] if i < len(q75) and q75[i] is not None else math.nan
                spread = (hi - lo) / value if status == "ok" and value else math.nan
                row.update(value=float(value), q25=float(lo), q75=float(hi), spread=spread,
                           status=status)
                rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- formatting
def format_seconds(seconds):
    """'412 µs', '1.23 ms', '2.5 s'; '-' for NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return "-"


def format_bytes(n):
    """'12.3 MB' (decimal units); '-' for NaN."""
    if n is None or not math.isfinite(n):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _ordered(names):
    names = list(dict.fromkeys(names))
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(median, spread, speedup, floor_fraction):
    if not math.isfinite(median):
        return "-"
    extras = []
    if math.isfinite(speedup):
        extras.append(f"{speedup:.2g}×")
    if math.isfinite(floor_fraction):
        extras.append(f"{floor_fraction:.0%}")
    text = format_seconds(median) + (f" ({', '.join(extras)})" if extras else "")
    return text + (" ~" if math.isfinite(spread) and spread > NOISY_SPREAD else "")


def format_tables(frame, heading="###"):
    """Markdown: per depth, median step time by implementation (columns) and batch (rows).

    ``frame``: one row per point with columns impl, depth, batch, median_s, and optionally
    spread, floor_fraction (missing ones read as unknown). Each cell shows the time, the
    speed-up over numpy at that point and the fraction of the BLAS floor; the last column
    names the winner (fastest median) of the row.
    """
    import pandas as pd

    frame = frame.copy()
    for col in ("spread", "floor_fraction"):
        if col not in frame:
            frame[col] = math.nan
    frame["median_s"] = pd.to_numeric(frame["median_s"], errors="coerce")
    impls = _ordered(frame["impl"])
    out = [_LEGEND, ""]
    for depth in sorted(frame["depth"].unique()):
        part = frame[frame["depth"] == depth]
        out.append(f"{heading} depth {depth}")
        rows = []
        for batch in sorted(part["batch"].unique()):
            cells = part[part["batch"] == batch].set_index("impl")
            numpy_time = cells["median_s"].get("numpy", math.nan)
            row = [batch]
            for impl in impls:
                if impl not in cells.index:
                    row.append("-")
                    continue
                c = cells.loc[impl]
                row.append(_cell(c["median_s"], c["spread"], numpy_time / c["median_s"],
                                 c["floor_fraction"]))
            timed = cells["median_s"].dropna()
            row.append(f"**{timed.idxmin()}**" if len(timed) else "-")
            rows.append(row)
        out.append(_markdown(["batch", *impls, "winner"], rows))
        out.append("")
    return "\n".join(out)


def step_table(frame):
    """The main benchmark (TimeStep) as compare-style rows: impl, depth, batch, median_s, ..."""
    step = frame[frame["benchmark"] == STEP]
    if step.empty:
        raise ResultsError(f"the results hold no {STEP} benchmark")
    step = step[["impl", "depth", "batch", "value", "spread", "status"]].rename(
        columns={"value": "median_s"})
    rates = frame[frame["benchmark"].isin([FLOOR, GFLOPS]) & (frame["status"] == "ok")]
    if rates.empty:
        return step.assign(floor_fraction=math.nan)
    rates = rates.pivot_table(index=["impl", "depth", "batch"], columns="benchmark",
                              values="value").reset_index()
    table = step.merge(rates, on=["impl", "depth", "batch"], how="left")
    # The tracked fraction comes from the rate benchmark's own (shorter) timing of the point:
    # floor seconds = fraction * that timing = fraction * flops / GFLOP/s. Divided by this
    # table's median it describes the same measurement as the cell's time.
    from .points import grid_net

    flops = [grid_net(int(d)).step_flops(int(b))
             for d, b in zip(table["depth"], table["batch"], strict=True)]
    rate_time = [f / (g * 1e9) if g and g > 0 else math.nan
                 for f, g in zip(flops, table.get(GFLOPS, [math.nan] * len(table)), strict=True)]
    floor_s = table.get(FLOOR, math.nan) * rate_time
    table["floor_fraction"] = floor_s / table["median_s"]
    return table[["impl", "depth", "batch", "median_s", "spread", "status", "floor_fraction"]]


def _other_tables(frame):
    """Markdown for the other benchmarks: one table per benchmark, impl across."""
    out = []
    skip = {STEP, FLOOR, GFLOPS, MEM_SETUP}
    for name in sorted(frame["benchmark"].unique()):
        if name in skip:
            continue
        part = frame[frame["benchmark"] == name].copy()
        if "impl" not in part or not (part["status"] == "ok").any():
            continue
        unit = part["unit"].iloc[0]
        if name == MEM_STEP:
            base = frame[frame["benchmark"] == MEM_SETUP].set_index(["impl", "depth", "batch"])
            idx = part.set_index(["impl", "depth", "batch"]).index
            part["value"] = part["value"].to_numpy() - base["value"].reindex(idx).to_numpy()
            title = f"{name} minus peakmem_setup: the step's own working memory"
        else:
            title = name
        keys = [c for c in part.columns if c not in
                ("machine", "commit", "env", "date", "benchmark", "kind", "unit", "value", "q25",
                 "q75", "spread", "status", "impl") and part[c].notna().any()]
        impls = _ordered(part["impl"])
        rows = []
        for key, group in part.groupby(keys, sort=True) if keys else [((), part)]:
            key = key if isinstance(key, tuple) else (key,)
            cells = group.set_index("impl")
            # parameter columns other benchmarks lack hold NaN there, so pandas made them floats
            row = [int(k) if isinstance(k, float) and k.is_integer() else k for k in key]
            for impl in impls:
                v = cells["value"].get(impl, math.nan)
                s = cells["spread"].get(impl, math.nan)
                if unit == "seconds":
                    text = format_seconds(v)
                elif unit == "bytes":
                    text = format_bytes(v)
                else:
                    text = "-" if not math.isfinite(v) else f"{v:.3g}"
                if math.isfinite(v) and math.isfinite(s) and s > NOISY_SPREAD:
                    text += " ~"
                row.append(text)
            rows.append(row)
        out += [f"### {title} ({unit})", "", _markdown([*keys, *impls], rows), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------- plots
def _plots(table, out_dir):
    """time_vs_batch.png and speedup_heatmap.png; [] (and why) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return [], "matplotlib is not installed (pip install -e '.[plot]'): tables only, no plots"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = table[table["median_s"].notna()]
    depths = sorted(ok["depth"].unique())
    impls = _ordered(ok["impl"])
    files = []
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.8), squeeze=False,
                             sharey=True)
    for ax, depth in zip(axes[0], depths, strict=True):
        part = ok[ok["depth"] == depth]
        for impl in impls:
            line = part[part["impl"] == impl].sort_values("batch")
            if len(line):
                ax.loglog(line["batch"], line["median_s"], marker="o", label=impl)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("median seconds per SGD step")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "time_vs_batch.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)

    numpy_time = ok[ok["impl"] == "numpy"].set_index(["depth", "batch"])["median_s"]
    if len(numpy_time):
        points = sorted({(d, b) for d, b in zip(ok["depth"], ok["batch"], strict=True)})
        grid = np.full((len(impls), len(points)), np.nan)
        for i, impl in enumerate(impls):
            part = ok[ok["impl"] == impl].set_index(["depth", "batch"])["median_s"]
            for j, p in enumerate(points):
                if p in part.index and p in numpy_time.index:
                    grid[i, j] = numpy_time[p] / part[p]
        fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(points), 1.5 + 0.5 * len(impls)))
        logs = np.log2(grid)
        lim = max(1.0, float(np.nanmax(np.abs(logs)))) if np.isfinite(logs).any() else 1.0
        im = ax.imshow(logs, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(impls)):
            for j in range(len(points)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", fontsize=7)
        ax.set_yticks(range(len(impls)), impls)
        ax.set_xticks(range(len(points)), [f"d{d}\nB{b}" for d, b in points], fontsize=7)
        ax.set_title("speed-up over numpy (blue: faster)")
        fig.colorbar(im, ax=ax, label="log2 speed-up")
        fig.tight_layout()
        path = os.path.join(out_dir, "speedup_heatmap.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files, None


# ---------------------------------------------------------------------------- the report
def write_report(frame, out="results/README.md", plots=True):
    """Write the markdown report (and PNGs beside it); returns (path, [png paths], note or None)."""
    table = step_table(frame)
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    files, note = _plots(table, out_dir) if plots else ([], None)
    first = frame.iloc[0]
    lines = [
        "# bpbench results",
        "",
        f"Machine `{first['machine']}`, commit `{first['commit'][:10]}` "
        f"(commit date {first['date']}), environment `{first['env']}`. "
        "Written by `bpbench report` from the asv results in this folder; regenerate with "
        "`bpbench report` after `asv run` (see the README's regression-tracking section).",
        "",
        "## One SGD step (`TimeStep.time_step`): width 256, float32, relu, cross-entropy",
        "",
        format_tables(table),
    ]
    for path in files:
        name = os.path.basename(path)
        lines += [f"![{name}]({name})", ""]
    if note:
        lines += [f"_{note}._", ""]
    skipped = frame[(frame["benchmark"] == STEP) & (frame["status"] == "skipped")]
    failed = frame[frame["status"] == "failed"]
    if len(skipped):
        lines += ["Not run here: " + ", ".join(
            f"{impl} ({n} points)" for impl, n in skipped.groupby("impl").size().items())
            + " (asv prints each reason: unavailable, or pure Python at a size that would take "
            "minutes).", ""]
    if len(failed):
        lines += ["**Failed**: " + ", ".join(sorted(set(
            f"{r.benchmark} [{r.impl}]" for r in failed.itertuples()))), ""]
    lines += ["## Other benchmarks", "", _other_tables(frame)]
    with open(out, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return out, files, note


def add_arguments(parser):
    """Options of ``bpbench report``."""
    parser.add_argument("--results-dir", default="results",
                        help="asv results folder (default: %(default)s)")
    parser.add_argument("--machine", default=None,
                        help="machine name (a folder in the results; default: the latest)")
    parser.add_argument("--commit", default=None,
                        help="commit hash or prefix (default: the latest benchmarked)")
    parser.add_argument("--out", default=None,
                        help="markdown file to write (default: <results-dir>/README.md)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")


def run(args):
    """``bpbench report``: load, write README.md (+ plots), print the main tables."""
    frame = load_results(args.results_dir, args.machine, args.commit)
    out = args.out or os.path.join(args.results_dir, "README.md")
    path, files, note = write_report(frame, out, plots=not args.no_plots)
    print(format_tables(step_table(frame)))
    if note:
        print(f"note: {note}")
    pngs = ", ".join(os.path.basename(p) for p in files)
    print(f"wrote {path}" + (f" and {pngs}" if files else ""))
    return 0
