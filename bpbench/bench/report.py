"""``bpbench report``: committed results -> ``results/README.md``, ``results/summary.md``, plots.

:func:`load_results` reads asv's JSON (``results/<machine>/<commit>-<env>.json``, with the
parameter names and units of ``results/benchmarks.json``) into one row per benchmark and
parameter combination, for one machine. :func:`write_report` writes, for every machine with
results (the machine name comes from the hardware, :mod:`bpbench.bench.machine`):

- where the figures come from: machine (CPU, cores, GPUs, OS), commit, date, thread count,
  library versions and the command that produced them;
- per depth, the table of median step time by implementation and batch, each cell with its
  speed-up over ``numpy``, fraction of the BLAS floor and fraction of the roofline (the least
  time the machine's measured ceilings allow, :mod:`bpbench.bench.roofline`, from
  ``results/<machine>/ceilings.csv``); the winner per point;
- the other benchmarks (float64, widths, loss_and_grads, peak memory, compile cost, time to
  target) as smaller tables; with matplotlib, ``time_vs_batch.png``, ``speedup_heatmap.png``
  and ``roofline.png`` (achieved GFLOP/s against arithmetic intensity, one marker per
  implementation and point, the measured ceilings drawn) in ``results/<machine>/``;
- when several machines have results, a table across machines: one column per machine, the
  same points. Figures of two machines are never put in one comparison column
  (:func:`format_tables` refuses a frame that mixes machines).

``results/summary.md`` is the short version (the main table of each machine and where it comes
from) for the project README to include. :func:`format_tables` is shared with ``bpbench
compare``. A cell whose relative interquartile range ``(q75 - q25) / median`` exceeds
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
THREADS = "bench_settings.TrackThreads.track_threads"

#: contestants in display order (unknown ones follow alphabetically)
ORDER = ("naive", "numpy", "numba", "numba_parallel", "cuda", "torch", "torch_compile", "jax")

_LEGEND = ("Cells: median time per SGD step (speed-up over numpy, fraction of the BLAS floor = "
           "time of the step's matrix products through NumPy's BLAS / step time, fraction of "
           "the roofline = least time the machine's measured compute peak and memory bandwidth "
           "allow / step time: at most 100%). "
           f"`~`: noisy (interquartile range > {NOISY_SPREAD:.0%} of the median). "
           "`-`: not run here (unavailable, or too slow to be worth timing).")

#: the command that regenerates the committed results (README: "Current results")
REGENERATE = "scripts/regenerate-results"


class MixedMachinesError(ValueError):
    """Figures of two machines were about to share one comparison column."""


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


def _cell(median, spread, speedup, floor_fraction, roofline_fraction=math.nan):
    if not math.isfinite(median):
        return "-"
    extras = []
    if math.isfinite(speedup):
        extras.append(f"{speedup:.2g}×")
    if math.isfinite(floor_fraction):
        extras.append(f"{floor_fraction:.0%}")
    if math.isfinite(roofline_fraction):
        extras.append(f"roof {roofline_fraction:.0%}")
    text = format_seconds(median) + (f" ({', '.join(extras)})" if extras else "")
    return text + (" ~" if math.isfinite(spread) and spread > NOISY_SPREAD else "")


def one_machine(frame):
    """The frame's single machine name (None when it names none); MixedMachinesError for two."""
    if "machine" not in frame or not len(frame):
        return None
    names = sorted(set(frame["machine"].dropna().astype(str)))
    if len(names) > 1:
        raise MixedMachinesError(
            f"results of {len(names)} machines ({', '.join(names)}) in one table: a comparison "
            "column holds one machine's figures; report each machine on its own, or across "
            "machines with one column per machine (bpbench report does both)")
    return names[0] if names else None


def format_tables(frame, heading="###"):
    """Markdown: per depth, median step time by implementation (columns) and batch (rows).

    ``frame``: one row per point with columns impl, depth, batch, median_s, and optionally
    spread, floor_fraction, roofline_fraction, machine (missing ones read as unknown). Each cell
    shows the time, the speed-up over numpy at that point, the fraction of the BLAS floor and of
    the roofline; the last column names the winner (fastest median) of the row.
    Raises :class:`MixedMachinesError` when the rows come from more than one machine.
    """
    import pandas as pd

    one_machine(frame)
    frame = frame.copy()
    for col in ("spread", "floor_fraction", "roofline_fraction"):
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
                                 c["floor_fraction"], c["roofline_fraction"]))
            timed = cells["median_s"].dropna()
            row.append(f"**{timed.idxmin()}**" if len(timed) else "-")
            rows.append(row)
        out.append(_markdown(["batch", *impls, "winner"], rows))
        out.append("")
    return "\n".join(out)


def step_table(frame, ceilings=None):
    """The main benchmark (TimeStep) as compare-style rows: impl, depth, batch, median_s, ...

    ``ceilings``: the machine's roofline ceilings (:func:`load_ceilings`); when given, the
    roofline of each point (:func:`bpbench.bench.roofline.bound`) and its fraction are added.
    """
    one_machine(frame)
    step = frame[frame["benchmark"] == STEP]
    if step.empty:
        raise ResultsError(f"the results hold no {STEP} benchmark")
    step = step[["machine", "impl", "depth", "batch", "value", "spread", "status"]].rename(
        columns={"value": "median_s"})
    # parameters other benchmarks lack are NaN there, so pandas read these columns as floats
    step = step.astype({"depth": int, "batch": int})
    step = _with_roofline(step, ceilings)
    rates = frame[frame["benchmark"].isin([FLOOR, GFLOPS]) & (frame["status"] == "ok")]
    if rates.empty:
        return step.assign(floor_fraction=math.nan)
    rates = rates.pivot_table(index=["impl", "depth", "batch"], columns="benchmark",
                              values="value").reset_index().astype({"depth": int, "batch": int})
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
    return table[["machine", "impl", "depth", "batch", "median_s", "spread", "status",
                  "floor_fraction", "roofline_s", "roofline_fraction", "intensity", "flops_min",
                  "bound"]]


def _with_roofline(step, ceilings):
    """``step`` with roofline_s, roofline_fraction, intensity, flops_min, bound columns."""
    from . import roofline
    from .points import grid_net

    step = step.copy()
    for col in ("roofline_s", "roofline_fraction", "intensity", "flops_min"):
        step[col] = math.nan
    step["bound"] = ""
    if ceilings is None:
        return step
    cache = {}
    for i, row in step.iterrows():
        key = (int(row["depth"]), int(row["batch"]))
        if key not in cache:
            cache[key] = roofline.bound(grid_net(key[0]), key[1], ceilings)
        r = cache[key]
        step.loc[i, ["roofline_s", "intensity", "flops_min"]] = (r["roofline_s"],
                                                                  r["intensity"], r["flops"])
        step.loc[i, "bound"] = r["bound"]
    step["roofline_fraction"] = step["roofline_s"] / step["median_s"]
    return step


def load_ceilings(results_dir, machine):
    """(ceilings dict, provenance row) from ``results/<machine>/ceilings.csv``, or (None, None)."""
    import pandas as pd

    from . import roofline

    path = os.path.join(results_dir, machine, "ceilings.csv")
    if not os.path.exists(path):
        return None, None
    frame = pd.read_csv(path)
    return roofline.from_frame(frame), frame.iloc[0].to_dict()


def _other_tables(frame, heading="###"):
    """Markdown for the other benchmarks: one table per benchmark, impl across."""
    out = []
    skip = {STEP, FLOOR, GFLOPS, MEM_SETUP, THREADS}
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
        out += [f"{heading} {title} ({unit})", "", _markdown([*keys, *impls], rows), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------- plots
def _caption(fig, caption):
    """Where the figure's numbers come from, printed under it."""
    if caption:
        fig.text(0.01, 0.005, caption, fontsize=6, color="0.35", ha="left", va="bottom",
                 wrap=True)
        fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.2))


def roofline_plot(table, ceilings, path, caption=""):
    """Achieved GFLOP/s against arithmetic intensity, one marker per implementation and point.

    x: FLOP per byte a step must move (:func:`bpbench.bench.roofline.traffic`); y: those FLOPs
    over the median step time. Drawn: the compute peak (horizontal) and each memory level's
    bandwidth (diagonals, bandwidth x intensity); a point's own roof is the lower of its level's
    diagonal and the peak, so its height under that roof is its roofline fraction.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    ok = table[table["median_s"].notna() & table["intensity"].notna()]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    xs = np.logspace(np.log10(max(ok["intensity"].min() / 3, 1e-3)),
                     np.log10(ok["intensity"].max() * 3), 100)
    peak = ceilings["peak"]["float32"] / 1e9
    for level in ceilings["levels"]:
        bw = level["bandwidth"] / 1e9
        ax.loglog(xs, np.minimum(bw * xs, peak), lw=1, alpha=0.6,
                  label=f"{level['level']} {bw:.0f} GB/s")
    ax.axhline(peak, color="k", lw=1.2, label=f"float32 peak {peak:.0f} GFLOP/s")
    markers = "osD^v<>P*X"
    for i, impl in enumerate(_ordered(ok["impl"])):
        part = ok[ok["impl"] == impl]
        ax.loglog(part["intensity"], part["flops_min"] / part["median_s"] / 1e9,
                  markers[i % len(markers)], ls="none", label=impl, alpha=0.85)
    ax.set_xlabel("arithmetic intensity (FLOP per byte a step must move)")
    ax.set_ylabel("achieved GFLOP/s (FLOPs a step must do / median time)")
    ax.set_title(f"roofline: {one_machine(table) or ''}, float32 steps (width 256)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _caption(fig, caption)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plots(table, out_dir, caption="", ceilings=None):
    """time_vs_batch.png, speedup_heatmap.png (and roofline.png with ceilings) in ``out_dir``.

    Returns ([paths], None), or ([], why) without matplotlib.
    """
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
    _caption(fig, caption)
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
        _caption(fig, caption)
        path = os.path.join(out_dir, "speedup_heatmap.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    if ceilings is not None and table["intensity"].notna().any():
        files.append(roofline_plot(table, ceilings, os.path.join(out_dir, "roofline.png"),
                                   caption))
    return files, None


# ---------------------------------------------------------------------------- the report
def machine_info(results_dir, machine):
    """asv's machine.json of ``machine`` (its hardware as registered), {} if missing."""
    path = os.path.join(results_dir, machine, "machine.json")
    return _load_json(path) if os.path.exists(path) else {}


def _threads(frame):
    """The thread count the results were measured with (TrackThreads), or '?'."""
    part = frame[(frame["benchmark"] == THREADS) & (frame["status"] == "ok")]
    return str(int(part["value"].iloc[0])) if len(part) else "?"


def provenance_text(frame, info, ceil_prov):
    """One paragraph: machine, hardware, commit, date, threads, versions, command."""
    first = frame.iloc[0]
    versions = ceil_prov.get("versions") if ceil_prov else None
    text = (f"Machine `{first['machine']}` ({info.get('cpu', '?')}, {info.get('num_cpu', '?')} "
            f"CPUs, {info.get('os', '?')}), commit `{first['commit'][:10]}` (commit date "
            f"{first['date']}), environment `{first['env']}`, {_threads(frame)} threads")
    if versions:
        text += f", {versions}"
    if ceil_prov and str(ceil_prov.get("commit", ""))[:40] != first["commit"]:
        text += (f" (ceilings measured at commit `{str(ceil_prov.get('commit'))[:10]}`)")
    return text + f". Command: `{REGENERATE}` (asv via `bpbench asv run`, then `bpbench report`)."


def machine_section(frame, results_dir, plots=True, heading="##"):
    """Markdown lines of one machine's results (plots written into results/<machine>/)."""
    machine = one_machine(frame)
    info = machine_info(results_dir, machine)
    ceil, ceil_prov = load_ceilings(results_dir, machine)
    table = step_table(frame, ceil)
    caption = (f"machine {machine}, commit {frame.iloc[0]['commit'][:10]}, "
               f"{_threads(frame)} threads; {REGENERATE}")
    out_dir = os.path.join(results_dir, machine)
    files, note = _plots(table, out_dir, caption, ceil) if plots else ([], None)
    lines = [f"{heading} {machine}", "", provenance_text(frame, info, ceil_prov), "",
             f"{heading}# One SGD step (`TimeStep.time_step`): width 256, float32, relu, "
             "cross-entropy", "", format_tables(table, heading=heading + "##")]
    if ceil is None:
        lines += [f"_No `{machine}/ceilings.csv`: roofline fractions left out (`bpbench "
                  f"roofline --out {results_dir}/{machine}/ceilings.csv`)._", ""]
    else:
        over = table[table["roofline_fraction"] > 1]
        levels = ", ".join(f"{lv['level']} {lv['bandwidth'] / 1e9:.0f} GB/s"
                           for lv in ceil["levels"])
        lines += [f"Roofline ceilings ({ceil['threads']} threads): float32 peak "
                  f"{ceil['peak']['float32'] / 1e9:.0f} GFLOP/s, float64 "
                  f"{ceil['peak']['float64'] / 1e9:.0f} GFLOP/s; bandwidth {levels}. "
                  + ("No point exceeds its roofline." if over.empty else
                     f"**{len(over)} point(s) exceed their roofline: the model is wrong there.**"),
                  ""]
    for path in files:
        name = os.path.basename(path)
        lines += [f"![{name}]({machine}/{name})", ""]
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
            f"{r.benchmark} [{r.impl}]" for r in failed.itertuples()
            if isinstance(r.impl, str)))), ""]
    lines += [f"{heading}# Other benchmarks", "", _other_tables(frame, heading + "##"), ""]
    lines += _csv_sections(results_dir, machine, heading + "#")
    return lines, table, files, note


def _csv_sections(results_dir, machine, heading):
    """Markdown of ``results/<machine>/``'s compare.csv, goals.csv, to_target.csv and
    overhead.csv, those present: [lines]."""
    import pandas as pd

    from .engine import header

    lines = []
    path = os.path.join(results_dir, machine, "compare.csv")
    if os.path.exists(path):
        frame = pd.read_csv(path)
        frame = frame[frame["status"] == "ok"] if "status" in frame else frame
        if len(frame):
            r = frame.iloc[0]
            lines += [f"{heading} `bpbench compare` ({machine}/compare.csv): width "
                      f"{int(r['width'])}, {r['dtype']}", "",
                      f"{header(frame)}; command `{r['command']}`, {r['timestamp']}.", "",
                      format_tables(frame, heading=heading + "#"), ""]
    path = os.path.join(results_dir, machine, "goals.csv")
    if os.path.exists(path):
        g = pd.read_csv(path)
        if len(g):
            r = g.iloc[0]
            lines += [f"{heading} `bpbench goals` ({machine}/goals.csv)", "",
                      f"machine {r['machine']}, commit {str(r['commit'])[:12]}, {r['threads']} "
                      f"threads, {r.get('versions', '')}; command `{r['command']}`.", "",
                      goals_table(g), ""]
    for name, command, table in (("to_target.csv", "bpbench to-target", to_target_table),
                                 ("overhead.csv", "bpbench overhead", overhead_table)):
        path = os.path.join(results_dir, machine, name)
        if not os.path.exists(path):
            continue
        t = pd.read_csv(path)
        if len(t):
            r = t.iloc[0]
            lines += [f"{heading} `{command}` ({machine}/{name})", "",
                      f"machine {r['machine']}, commit {str(r['commit'])[:12]}, {r['threads']} "
                      f"threads, {r.get('versions', '')}; command `{r['command']}`.", "",
                      table(t), ""]
    return lines


def _range(row, key, fmt):
    value, low, high = (row.get(k, math.nan) for k in (key, f"{key}_low", f"{key}_high"))
    if not isinstance(value, float) or not math.isfinite(value):
        return "-"
    return f"{value:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def to_target_table(frame):
    """Markdown of a ``bpbench to-target`` CSV: seconds of a whole run to the target loss,
    epochs, and the speed-up over PyTorch's own loop (median of per-round ratios, range)."""
    rows = [[int(r["depth"]), r["contestant"], _range(r, "seconds", ".3f"), int(r["epochs"]),
             f"{r['final_loss']:.4f}", "yes" if r["reached"] else "no",
             _range(r, "x_torch", ".1f"), r["verdict"]] for r in frame.to_dict("records")]
    return _markdown(["depth", "contestant", "seconds (range)", "epochs", "final loss",
                      "reached", "x torch (range)", "issue 11 (>= 10x torch)"], rows)


def overhead_table(frame):
    """Markdown of a ``bpbench overhead`` CSV: per-call time of step, step_prepared, the bare
    hook and the checks alone; step's overhead over the hook and its share of the step."""
    rows = [[r["impl"], int(r["depth"]), int(r["batch"]),
             *[format_seconds(r[k]) for k in ("step_s", "step_prepared_s", "hook_s", "checks_s",
                                              "overhead_s")],
             _range(r, "share", ".1%"), r["verdict"]] for r in frame.to_dict("records")]
    return _markdown(["impl", "depth", "batch", "step", "step_prepared", "hook", "checks alone",
                      "step - hook", "share of step (range)", "issue 11 (< 10%)"], rows)


def goals_table(frame):
    """Markdown of a ``bpbench goals`` CSV: best bpbench step, per peer the speed-up, verdicts.

    A speed-up is the median over interleaved rounds of (peer time / the faster Numba flavour's
    time in the same round), lowest and highest round in brackets: above 1, bpbench is faster.
    """
    from . import peers

    present = [p for p in peers.names() if f"x_{p}" in frame and frame[f"x_{p}"].notna().any()]
    rows = []
    for r in frame.to_dict("records"):
        best = r.get("best_s", math.nan)
        if not isinstance(best, float) or not math.isfinite(best):
            rows.append([r["dtype"], int(r["width"]), int(r["depth"]), int(r["batch"]),
                         "not timed", *["-"] * len(present), "-", "-", "-", "-"])
            continue
        rows.append([r["dtype"], int(r["width"]), int(r["depth"]), int(r["batch"]),
                     f"{format_seconds(best)} ({r['best']})",
                     *[_range(r, f"x_{p}", ".2f") for p in present],
                     f"{r.get('x_floor', math.nan):.2f}", f"{r.get('x_roofline', math.nan):.2f}",
                     r.get("verdict_torch", "-"), r.get("verdict_peers", "-")])
    head = ["dtype", "width", "depth", "batch", "best bpbench step", *[f"x {p}" for p in present],
            "x floor", "x roofline", "issue 11 (vs torch)", "issue 12 (vs fastest peer)"]
    return _markdown(head, rows)


#: where the README's generated results block starts and ends
README_BEGIN = "<!-- results: generated by `bpbench report --readme`; do not edit by hand -->"
README_END = "<!-- /results -->"


def readme_block(results_dir="results"):
    """Markdown for the project README: per machine, the default compare grid at depth 2 and
    the goals' verdict counts, each with its machine, commit and command. [] without results."""
    import pandas as pd

    lines = []
    for machine in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        path = os.path.join(results_dir, machine, "compare.csv")
        # a machine's folder has asv's machine.json (results/local/, a user's own runs, not)
        if not (os.path.exists(path)
                and os.path.exists(os.path.join(results_dir, machine, "machine.json"))):
            continue
        frame = pd.read_csv(path)
        ok = frame[frame["status"] == "ok"]
        if not len(ok):
            continue
        depth = 2 if (ok["depth"] == 2).any() else int(ok["depth"].min())
        part = ok[ok["depth"] == depth]
        impls = _ordered(part["impl"].unique())
        rows = []
        for batch in sorted(part["batch"].unique()):
            at = part[part["batch"] == batch].set_index("impl")["median_s"]
            winner = at.idxmin()
            rows.append([int(batch), *[format_seconds(at.get(i, math.nan)) for i in impls],
                         f"**{winner}**"])
        r = ok.iloc[0]
        lines += [f"**{machine}**, commit `{str(r['commit'])[:10]}`, {r['threads']} threads, "
                  f"`{r['command']}`: median time of one SGD step, width {int(r['width'])}, "
                  f"depth {depth}, {r['dtype']}, relu, softmax cross-entropy "
                  f"([all depths, roofline fractions, plots](results/README.md)).", "",
                  _markdown(["batch", *impls, "fastest"], rows), ""]
        goals_path = os.path.join(results_dir, machine, "goals.csv")
        if os.path.exists(goals_path):
            g = pd.read_csv(goals_path)
            timed = g[g["verdict_torch"] != "not timed"]
            if len(timed):
                gr = timed.iloc[0]
                lines += [f"`{gr['command']}` (commit `{str(gr['commit'])[:10]}`): the performance "
                          f"goals are met at {(timed['verdict_torch'] == 'ok').sum()} of "
                          f"{len(timed)} points against PyTorch eager (issue 11) and at "
                          f"{(timed['verdict_peers'] == 'ok').sum()} of {len(timed)} against the "
                          "fastest peer (issue 12); the table is in "
                          "[results/README.md](results/README.md).", ""]
        target_path = os.path.join(results_dir, machine, "to_target.csv")
        if os.path.exists(target_path):
            t = pd.read_csv(target_path)
            if len(t):
                lines += [f"`{t.iloc[0]['command']}` (commit `{str(t.iloc[0]['commit'])[:10]}`): "
                          "seconds to train two spirals to loss 0.1, each contestant's own "
                          "loop, and the speed-up over PyTorch eager's loop (range over rounds).",
                          "", to_target_table(t), ""]
    return lines


def update_readme(path, lines):
    """Replace the generated block of the README at ``path`` with ``lines``; True if changed.

    The block is everything between :data:`README_BEGIN` and :data:`README_END`; a README
    without both markers is left alone (ValueError naming the file).
    """
    with open(path) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{path} has no generated results block ({README_BEGIN} ... "
                         f"{README_END})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + README_BEGIN + "\n" + "\n".join(lines).rstrip() + "\n" + README_END + tail
    if new == text:
        return False
    with open(path, "w") as f:
        f.write(new)
    return True


def across_machines(tables):
    """Markdown: one row per (impl, depth, batch), one column per machine (median step time)."""
    names = sorted(tables)
    keyed = {m: t.set_index(["impl", "depth", "batch"])["median_s"] for m, t in tables.items()}
    keys = sorted(set().union(*(k.index for k in keyed.values())),
                  key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k))
    rows = []
    for key in keys:
        cells = [format_seconds(keyed[m].get(key, math.nan)) for m in names]
        if any(c != "-" for c in cells):
            rows.append([*key, *cells])
    return _markdown(["impl", "depth", "batch", *names], rows)


def write_report(frame, out="results/README.md", plots=True, results_dir=None, summary=None):
    """Write the markdown report for one machine's ``frame`` or a {machine: frame} dict.

    Returns (path, [png paths], note or None). ``summary``: also write the short version
    (each machine's main tables and where they come from) there.
    """
    frames = frame if isinstance(frame, dict) else {one_machine(frame): frame}
    results_dir = results_dir or os.path.dirname(os.path.abspath(out))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    lines = ["# bpbench results", "",
             f"Generated by `bpbench report` from the committed asv results in this folder, one "
             f"section per machine (the name comes from the hardware: `bpbench machine`); "
             f"regenerate everything with `{REGENERATE}`. Do not edit by hand.", ""]
    short = ["<!-- generated by `bpbench report`; regenerate with "
             f"`{REGENERATE}` -->", ""]
    all_files, notes, tables = [], [], {}
    for machine in sorted(frames):
        section, table, files, note = machine_section(frames[machine], results_dir, plots)
        lines += section
        all_files += files
        notes.append(note)
        tables[machine] = table
        first = frames[machine].iloc[0]
        short += [f"**{machine}**: asv, commit `{first['commit'][:10]}`, "
                  f"{_threads(frames[machine])} threads ([details](results/README.md)).", "",
                  format_tables(table, heading="####"), ""]
        short += _csv_sections(results_dir, machine, "###")
    if len(tables) > 1:
        lines += ["## Across machines: median step time (TimeStep), one column per machine", "",
                  across_machines(tables), ""]
    with open(out, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    if summary:
        with open(summary, "w") as f:
            f.write("\n".join(short).rstrip() + "\n")
    return out, all_files, next((n for n in notes if n), None)


def load_all(results_dir="results"):
    """{machine: frame of its latest results} for every machine with asv results."""
    frames = {}
    for machine in _machines(results_dir):
        try:
            frames[machine] = load_results(results_dir, machine)
        except ResultsError:
            continue
    if not frames:
        _choose(results_dir, None, None)  # raises the explanatory ResultsError
    return frames


def add_arguments(parser):
    """Options of ``bpbench report``."""
    parser.add_argument("--results-dir", default="results",
                        help="asv results folder (default: %(default)s)")
    parser.add_argument("--machine", default=None,
                        help="one machine (a folder in the results; default: every machine)")
    parser.add_argument("--commit", default=None,
                        help="commit hash or prefix (default: each machine's latest)")
    parser.add_argument("--out", default=None,
                        help="markdown file to write (default: <results-dir>/README.md)")
    parser.add_argument("--summary", default=None,
                        help="also write the short version here (default with --readme: "
                             "<results-dir>/summary.md)")
    parser.add_argument("--readme", action="store_true",
                        help="the README's figures: every machine, results/README.md, "
                             "results/summary.md and the generated block of the project's "
                             "README.md (what scripts/regenerate-results runs)")
    parser.add_argument("--readme-file", default="README.md",
                        help="the project README whose results block --readme rewrites "
                             "(default: %(default)s)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")


def run(args):
    """``bpbench report``: load, write README.md (+ plots, summary), print the main tables."""
    if args.machine or args.commit:
        frame = load_results(args.results_dir, args.machine, args.commit)
        frames = {one_machine(frame): frame}
    else:
        frames = load_all(args.results_dir)
    out = args.out or os.path.join(args.results_dir, "README.md")
    summary = args.summary or (os.path.join(args.results_dir, "summary.md")
                               if args.readme else None)
    path, files, note = write_report(frames, out, plots=not args.no_plots,
                                     results_dir=args.results_dir, summary=summary)
    for machine, frame in sorted(frames.items()):
        ceil, _ = load_ceilings(args.results_dir, machine)
        print(f"## {machine}")
        print(format_tables(step_table(frame, ceil)))
    if note:
        print(f"note: {note}")
    if args.readme:
        changed = update_readme(args.readme_file, readme_block(args.results_dir))
        print(f"{'updated' if changed else 'unchanged'}: the results block of {args.readme_file}")
    pngs = ", ".join(os.path.relpath(p, args.results_dir) for p in files)
    print(f"wrote {path}" + (f" and {pngs}" if files else "")
          + (f"; summary {summary}" if summary else ""))
    return 0
