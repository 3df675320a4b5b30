"""Mutation check: small faults put into each implementation must make its tests fail.

    python scripts/mutate.py                       # every mutant, the table on stdout
    python scripts/mutate.py --impls numpy,naive   # some implementations
    python scripts/mutate.py --mutants numpy:update-sign --keep
    python scripts/mutate.py --list                # the mutants, without running anything
    python scripts/mutate.py --markdown docs/mutation.md --jobs 2

For every mutant (a named, one-place textual change of an implementation's source: the wrong
derivative of an activation, a loss scaled wrongly, a bias update without its learning rate, a
product with a transpose missing, the update's sign, an off-by-one in a gather or a tile edge,
split-K partial sums dropped; also gradients handed back as the model's own buffers and the
numba epoch fast path switched off, which only tests that can fail notice) the script

1. copies the package into a scratch folder laid out as it is installed: ``bpbench/`` with the
   implementations in ``bpbench/impls/`` (the repository's ``impls/``), ``tests/`` and
   ``pyproject.toml`` beside them; so that ``bpbench`` and ``bpbench.impls`` both resolve to
   the copy with ``PYTHONPATH`` set to it, which the script verifies (the editable install's
   finder comes after ``PYTHONPATH`` on ``sys.path``);
2. applies the change (the original text must occur exactly once, and the file must change);
3. runs the tests that guard that implementation: pytest on the shared tests selected for it
   (``-x``: the first failure suffices), or, for ``cuda``, the simulator checks of
   ``tests/cuda_sim_checks.py`` with ``NUMBA_ENABLE_CUDASIM=1`` under ``python -O``;
4. records whether they failed ("caught") and how long it took.

Before any mutant, each implementation's selection runs on an unmutated copy and must pass: a
selection that fails anyway would "catch" everything. Each run gets its own scratch copy and
its own Numba cache folder (``NUMBA_CACHE_DIR``), so no compiled code of another variant is
reused; the numba mutants therefore each pay a compilation (tens of seconds).

Exit status: 0 when every mutant was caught and every baseline passed, 1 otherwise.
This script is an operator tool: it is not part of the installed package.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: implementation -> (how its tests run, what they are). "pytest": arguments after
#: ``python -m pytest``; "sim": names of checks in tests/cuda_sim_checks.py.
SELECTIONS = {
    "naive": ("pytest", ["tests/test_agreement.py", "tests/test_reference.py",
                         "tests/test_training.py", "tests/test_bad_input.py", "-k", "naive"]),
    "numpy": ("pytest", ["tests/test_agreement.py", "tests/test_reference.py",
                         "tests/test_training.py", "tests/test_bad_input.py", "-k", "numpy"]),
    "numba": ("pytest", ["tests/test_agreement.py", "tests/test_reference.py",
                         "tests/test_training.py", "tests/test_numba.py",
                         "tests/test_bad_input.py", "-k", "numba and not numba_parallel"]),
    "numba_parallel": ("pytest", ["tests/test_agreement.py", "tests/test_reference.py",
                                  "tests/test_training.py", "tests/test_numba.py",
                                  "tests/test_bad_input.py", "-k", "numba_parallel"]),
    "cuda": ("sim", ["agree_f64_ce", "agree_f64_mse", "agree_f32_ce", "agree_f32_mse",
                     "split_k", "sgd_f64", "sgd_f32", "stable_ce_f32", "stable_ce_f64"]),
}

#: the file each implementation's mutants change, relative to the repository root
FILES = {
    "naive": "impls/naive.py",
    "numpy": "impls/numpy_vectorised.py",
    "numba": "impls/_numba_kernels.py",
    "cuda": "impls/_cuda_kernels.py",
}


@dataclass(frozen=True)
class Mutant:
    """One fault: in ``file``, ``old`` (occurring exactly once) becomes ``new``."""

    impl: str          # whose mutant ("numba" mutants also run against numba_parallel)
    name: str
    what: str
    old: str
    new: str
    checks: tuple = ()  # cuda: the simulator checks that guard this part (default: all)
    path: str = ""      # the file, when not the implementation's usual one (FILES)

    @property
    def file(self):
        return self.path or FILES[self.impl]


M = Mutant
MUTANTS = [
    # ---------------------------------------------------------------- naive
    M("naive", "relu-derivative", "relu'(z) = 1 everywhere",
      "return 1.0 if z > 0.0 else 0.0", "return 1.0 if z > 0.0 else 1.0"),
    M("naive", "tanh-derivative", "tanh' = 1 - t instead of 1 - t^2",
      "return 1.0 - t * t", "return 1.0 - t"),
    M("naive", "sigmoid-derivative", "sigmoid' = s instead of s (1 - s)",
      "return s * (1.0 - s)", "return s"),
    M("naive", "mse-scale", "mse gradient (out - y) / n instead of 2 (out - y) / n",
      "g_row.append(2.0 * (o - t) / n)", "g_row.append((o - t) / n)"),
    M("naive", "cross-entropy-scale", "cross-entropy gradient not divided by B",
      "grad.append([g / B for g in p])", "grad.append([g for g in p])"),
    M("naive", "bias-update", "bias update without the learning rate",
      "new_b = [v - lr * g for v, g in zip(b, db, strict=True)]",
      "new_b = [v - g for v, g in zip(b, db, strict=True)]"),
    M("naive", "transposed-product",
      "input gradient through W[j][i] instead of W[i][j] (indices wrapped to stay in range)",
      "sum(d_row[j] * W[i][j] for j in range(n_out))",
      "sum(d_row[j] * W[j % n_in][i % n_out] for j in range(n_out))"),
    M("naive", "update-sign", "W += lr dW",
      "[w - lr * g for w, g in zip(w_row, g_row, strict=True)]",
      "[w + lr * g for w, g in zip(w_row, g_row, strict=True)]"),
    M("naive", "off-by-one", "dW sums over all samples but the last",
      "sum(h[s][i] * delta[s][j] for s in range(len(h)))",
      "sum(h[s][i] * delta[s][j] for s in range(len(h) - 1))"),
    # ---------------------------------------------------------------- numpy
    M("numpy", "relu-derivative", "relu' taken as a >= 0 (always true for a relu's output)",
      "np.multiply(delta, a > 0, out=delta)", "np.multiply(delta, a >= 0, out=delta)"),
    M("numpy", "tanh-derivative", "tanh' = 1 - a instead of 1 - a^2",
      "delta *= 1 - a * a", "delta *= 1 - a"),
    M("numpy", "sigmoid-derivative", "sigmoid' = a instead of a (1 - a)",
      "delta *= a * (1 - a)", "delta *= a"),
    M("numpy", "mse-scale", "mse gradient (out - y) / n instead of 2 (out - y) / n",
      "delta *= 2.0 / delta.size", "delta *= 1.0 / delta.size"),
    M("numpy", "cross-entropy-scale", "cross-entropy gradient not divided by B",
      "delta /= B                      # mean over the batch",
      "delta /= 1                      # mean over the batch"),
    M("numpy", "bias-update", "bias update without the learning rate",
      "db *= lr\n", "pass\n"),
    M("numpy", "transposed-product", "forward product h @ W.T instead of h @ W",
      "np.dot(h, W, out=a)", "np.dot(h, W.T, out=a)"),
    M("numpy", "update-sign", "W += lr dW", "W -= dW", "W += dW"),
    M("numpy", "off-by-one", "the last row's one-hot target is not subtracted",
      "delta[rows, y] -= 1", "delta[rows[:-1], y[:-1]] -= 1"),
    M("numpy", "aliased-gradients", "loss_and_grads hands back its own gradient buffers",
      "return loss, [(dW.copy(), db.copy()) for dW, db in buf.grads]",
      "return loss, [(dW, db) for dW, db in buf.grads]"),
    # ---------------------------------------------------------------- numba (and numba_parallel)
    # the kernels: hand loops (_hand_*, batches below blas_min) and BLAS tiles (_blas_program);
    # _bias_step serves both paths, so its per-path faults sit at the call sites
    M("numba", "relu-derivative", "relu' = 1 everywhere (hand loops)",
      "return one if a > 0 else one - one", "return one"),
    M("numba", "tanh-derivative", "tanh' = 1 - a (hand loops)",
      "        return one - a * a\n", "        return one - a\n"),
    M("numba", "sigmoid-derivative", "sigmoid' = a (hand loops)",
      "        return a * (one - a)\n", "        return a\n"),
    M("numba", "relu-derivative-blas", "relu' = 1 everywhere (BLAS path)",
      "D[i, j] = D[i, j] if A[i, j] > zero else zero", "D[i, j] = D[i, j]"),
    M("numba", "tanh-derivative-blas", "tanh' = 1 - a (BLAS path)",
      "D[i, j] *= one - A[i, j] * A[i, j]", "D[i, j] *= one - A[i, j]"),
    M("numba", "sigmoid-derivative-blas", "sigmoid' = a (BLAS path)",
      "D[i, j] *= A[i, j] * (one - A[i, j])", "D[i, j] *= A[i, j]"),
    M("numba", "mse-scale", "mse gradient (out - y) / (B K) instead of 2 (out - y) / (B K)",
      "scale = 2.0 / (B * K)", "scale = 1.0 / (B * K)"),
    M("numba", "cross-entropy-scale", "cross-entropy gradient not divided by B",
      "inv_b = 1.0 / B", "inv_b = 1.0"),
    M("numba", "bias-update", "bias update without the learning rate (hand loops: _bias_step "
      "called with lr = 1)",
      "_bias_step(dZ, b, db, _ZERO, n_out, lr_t, mode)",
      "_bias_step(dZ, b, db, _ZERO, n_out, theta.dtype.type(1), mode)"),
    M("numba", "bias-update-blas", "bias update without the learning rate (BLAS path: "
      "_bias_step called with lr = 1)",
      "_bias_step(dZ, b, db, j0, j1, lr_t, mode)",
      "_bias_step(dZ, b, db, j0, j1, theta.dtype.type(1), mode)"),
    M("numba", "transposed-product",
      "dH = dZ W[rows]^T with W's block read in the transpose's layout, (n_out, n_in), "
      "instead of its own (BLAS path)",
      "gemm(_NO, _YES, B, p1 - p0, n_out, 1.0, ws, dz_at, n_out, theta,\n"
      "                     w_at + p0 * n_out, n_out, 0.0, ws, dh_at + p0, n_in)",
      "gemm(_NO, _NO, B, p1 - p0, n_out, 1.0, ws, dz_at, n_out, theta,\n"
      "                     w_at + p0, n_in, 0.0, ws, dh_at + p0, n_in)"),
    M("numba", "update-sign", "W += lr H^T dZ (hand loops: the rows taken in pairs and the "
      "odd last one)",
      "h0, h1 = -lr * H[i, p], -lr * H[i + 1, p]\n"
      "                for j in range(n_out):\n"
      "                    W[p, j] += h0 * dZ[i, j] + h1 * dZ[i + 1, j]\n"
      "                i += 2\n"
      "            if i < B:\n"
      "                h0 = -lr * H[i, p]\n",
      "h0, h1 = lr * H[i, p], lr * H[i + 1, p]\n"
      "                for j in range(n_out):\n"
      "                    W[p, j] += h0 * dZ[i, j] + h1 * dZ[i + 1, j]\n"
      "                i += 2\n"
      "            if i < B:\n"
      "                h0 = lr * H[i, p]\n"),
    M("numba", "update-sign-blas", "W += lr H^T dZ (BLAS path: the update riding on the "
      "weight-gradient gemm)",
      "gemm(_YES, _NO, p1 - p0, n_out, B, -lr, flat_h,",
      "gemm(_YES, _NO, p1 - p0, n_out, B, lr, flat_h,"),
    M("numba", "gather-off-by-one", "epoch batch row i gathered from order[start + i - 1]",
      "            src = order[start + i]\n            for j in range(X_all.shape[1]):",
      "            src = order[start + i - 1]\n            for j in range(X_all.shape[1]):"),
    M("numba", "no-epoch-fast-path", "run_epoch falls back to the Python loop of steps",
      '        """The whole epoch in one compiled call: the same kernel and batches as the '
      'Python loop."""\n',
      '        """The whole epoch in one compiled call: the same kernel and batches as the '
      'Python loop."""\n        return Implementation._run_epoch(self, X, y, order, batch_size, '
      'lr)\n', path="impls/_numba_host.py"),
    M("numba", "bias-prefill-blas", "forward BLAS tiles: the bias pre-fill stops one column "
      "short (each tile's last column keeps the workspace's old contents under beta = 1)",
      "_fill_bias_cols(Z, b, j0, j1)\n", "_fill_bias_cols(Z, b, j0, j1 - 1)\n"),
    M("numba", "backward-row-tile-edge", "backward BLAS row tiles: every tile but the first "
      "skips its first row of W (no dH column, no update; invisible with one tile)",
      "            p0, p1 = _split(n_in, n_rt, c)\n",
      "            p0, p1 = _split(n_in, n_rt, c)\n            p0 += min(c, 1)\n"),
    # ---------------------------------------------------------------- cuda
    M("cuda", "relu-derivative", "relu' = 1 everywhere",
      "return one if a > zero else zero", "return one",
      ("agree_f64_ce", "agree_f32_ce")),
    M("cuda", "tanh-derivative", "tanh' = 1 - a",
      "        return one - a * a\n", "        return one - a\n",
      ("agree_f64_ce", "agree_f64_mse")),
    M("cuda", "sigmoid-derivative", "sigmoid' = a",
      "        return a * (one - a)\n", "        return a\n",
      ("agree_f64_ce", "agree_f32_mse")),
    M("cuda", "mse-scale", "mse gradient (out - y) / n instead of 2 (out - y) / n",
      "delta[r, c] = two * d / n", "delta[r, c] = d / n",
      ("agree_f64_mse", "sgd_f64")),
    M("cuda", "cross-entropy-scale", "cross-entropy gradient not divided by B",
      "delta[r, k] = p / n", "delta[r, k] = p",
      ("agree_f64_ce", "stable_ce_f64")),
    M("cuda", "bias-update", "bias update without the learning rate",
      "g[col] -= lr * bias_total[c]", "g[col] -= bias_total[c]",
      ("sgd_f64", "sgd_f32")),
    M("cuda", "transposed-product", "input gradient reads W[k, n] instead of W[n, k]",
      "Bs[tx, j] = W[n, k] if n < n_units and k < inner else zero",
      "Bs[tx, j] = W[k, n] if k < n_units and n < inner else zero",
      ("agree_f64_ce", "agree_f64_mse")),
    M("cuda", "update-sign", "W += lr dW", "G[row, col] -= lr * acc[r, c]",
      "G[row, col] += lr * acc[r, c]", ("sgd_f64", "sgd_f32")),
    M("cuda", "tile-edge", "a partial last TILE of the inner dimension is dropped",
      "steps = (inner + TILE - 1) // TILE", "steps = inner // TILE",
      ("agree_f64_ce", "agree_f64_mse")),
    M("cuda", "gather-off-by-one", "epoch row i gathered from order[i] - 1",
      "        k = order[i]\n        if 0 <= k < src.shape[0]:",
      "        k = order[i] - 1\n        if 0 <= k < src.shape[0]:",
      ("sgd_f64",)),
    M("cuda", "split-k-combine", "split-K: the last slice's partial tile is not added",
      "    for z in range(nsplit):\n        for r in range(MICRO):",
      "    for z in range(nsplit - 1):\n        for r in range(MICRO):",
      ("split_k",)),
]

#: the implementations each mutant is run against (numba's kernels serve numba_parallel too)
RUNS_AGAINST = {"numba": ("numba", "numba_parallel")}


# ---------------------------------------------------------------- scratch copies
def make_scratch(base, mutant=None):
    """A copy of the package laid out as installed, with ``mutant`` applied; its folder."""
    folder = Path(tempfile.mkdtemp(prefix="mutant-", dir=base))
    ignore = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc")
    shutil.copytree(ROOT / "bpbench", folder / "bpbench", ignore=ignore)
    shutil.rmtree(folder / "bpbench" / "impls", ignore_errors=True)
    shutil.copytree(ROOT / "impls", folder / "bpbench" / "impls", ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    if mutant is not None:
        path = folder / "bpbench" / "impls" / Path(mutant.file).name
        path.write_text(mutated(mutant, path.read_text()))
    return folder


def mutated(mutant, text):
    """text with the mutant applied; SystemExit unless its original occurs exactly once."""
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.impl}:{mutant.name}: the original text occurs "
                         f"{count} times in {mutant.file} (must be once): {mutant.old!r}")
    changed = text.replace(mutant.old, mutant.new)
    if changed == text:
        raise SystemExit(f"mutant {mutant.impl}:{mutant.name} changes nothing")
    return changed


def environment(folder, simulate=False):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(folder)
    env["NUMBA_CACHE_DIR"] = str(folder / "numba-cache")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env.pop("BPBENCH_FUZZ_SCALE", None)
    return env


def verify_layout(folder):
    """Both bpbench and bpbench.impls must come from the scratch copy, not the repository."""
    code = ("import bpbench, bpbench.impls.naive as n, bpbench.impls.numba_cuda as c\n"
            "print(bpbench.__file__); print(n.__file__); print(c.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=environment(folder),
                         capture_output=True, text=True, timeout=120)
    files = out.stdout.split()
    if out.returncode != 0 or len(files) != 3 or not all(
            Path(f).resolve().is_relative_to(folder.resolve()) for f in files):
        raise SystemExit(f"the scratch copy in {folder} is not what Python imports:\n"
                         f"{out.stdout}{out.stderr}")
    return files


# ---------------------------------------------------------------- running the tests
@dataclass
class Result:
    """One run: a mutant (None: the baseline) against one implementation's tests."""

    label: str
    impl: str
    what: str
    selection: str
    failed: bool
    summary: str
    seconds: float
    mutant: Mutant = None

    @property
    def baseline(self):
        return self.mutant is None


def run_selection(folder, impl, checks=None):
    """Run impl's tests in the scratch folder: (failed, one-line summary, selection text)."""
    kind, args = SELECTIONS[impl]
    if kind == "pytest":
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
        selection = "pytest -x " + " ".join(a if " " not in a else repr(a) for a in args)
        env = environment(folder)
    else:
        names = list(checks or args)
        cmd = [sys.executable, "-O", "tests/cuda_sim_checks.py", *names]
        selection = "python -O tests/cuda_sim_checks.py " + " ".join(names)
        env = environment(folder, simulate=True)
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=3600)
    out = proc.stdout + proc.stderr
    return proc.returncode != 0, summarise(kind, proc.returncode, out), selection


def summarise(kind, rc, out):
    """A one-line account of a run: counts and the first failure."""
    if rc < 0:
        return f"crashed (signal {-rc})"
    if kind == "pytest":
        counts = re.findall(r"^=*\s*(\d+ (?:passed|failed|error|deselected).*?) in [\d.]+s",
                            out, re.MULTILINE)
        first = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
        text = re.sub(r", \d+ deselected", "", counts[-1]) if counts else f"exit {rc}"
        return text + (f"; first: {first.group(1)}" if first else "")
    passed = re.findall(r"^PASS (\S+)", out, re.MULTILINE)
    failure = [line for line in out.strip().splitlines() if "CheckFailed" in line
               or "Error" in line][-1:]
    text = f"{len(passed)} passed"
    return text + (f"; failed: {failure[0].strip()[:160]}" if rc != 0 and failure else
                   ("" if rc == 0 else f"; exit {rc}"))


def run_one(base, label, impl, mutant=None):
    start = time.perf_counter()
    folder = make_scratch(base, mutant)
    try:
        verify_layout(folder)
        failed, summary, selection = run_selection(folder, impl,
                                                   mutant.checks if mutant else None)
    finally:
        if not KEEP:
            shutil.rmtree(folder, ignore_errors=True)
    return Result(label, impl, mutant.what if mutant else "", selection, failed, summary,
                  time.perf_counter() - start, mutant)


KEEP = False


def verdict(r):
    if r.baseline:
        return "baseline passes" if not r.failed else "BASELINE FAILS"
    return "yes" if r.failed else "NO"


def table(results):
    """Plain-text table: one line per run."""
    rows = [("mutant", "implementation", "caught", "seconds", "tests run: outcome")]
    rows += [(r.label, r.impl, verdict(r), f"{r.seconds:.0f}", r.summary) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  "
                     f"{row[3]:>{widths[3]}}  {row[4]}" for row in rows)


def markdown(results):
    """Markdown: the test selection per implementation, then one row per run."""
    def cell(text):
        return text.replace("|", "\\|")

    lines = ["| implementation | tests run (every run of its mutants) |", "|---|---|"]
    for r in results:
        if r.baseline:
            lines.append(f"| {r.impl} | `{cell(r.selection)}` (baseline: {cell(r.summary)}) |")
    lines += ["", "| mutant | fault | run against | caught | tests run: outcome | s |",
              "|---|---|---|---|---|---|"]
    for r in results:
        if not r.baseline:
            checks = (f" ({', '.join(r.mutant.checks)})"
                      if r.mutant.checks and SELECTIONS[r.impl][0] == "sim" else "")
            lines.append(f"| {r.label} | {cell(r.what)} | {r.impl} | {verdict(r)} | "
                         f"{cell(r.summary)}{checks} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    global KEEP
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impls", default=",".join(SELECTIONS),
                        help="comma-separated implementations (default: all)")
    parser.add_argument("--mutants", default=None,
                        help="comma-separated IMPL:NAME mutants (default: all of --impls)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--markdown", default=None,
                        help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    KEEP = args.keep
    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(SELECTIONS))
    if unknown:
        parser.error(f"--impls: unknown {unknown}; known: {', '.join(SELECTIONS)}")
    chosen = [m for m in MUTANTS
              if set(RUNS_AGAINST.get(m.impl, (m.impl,))) & set(impls)]
    if args.mutants:
        wanted = set(args.mutants.split(","))
        chosen = [m for m in chosen if f"{m.impl}:{m.name}" in wanted]
        missing = wanted - {f"{m.impl}:{m.name}" for m in chosen}
        if missing:
            parser.error(f"--mutants: unknown {sorted(missing)}")
    for m in chosen:  # every mutant applies, before anything runs
        mutated(m, (ROOT / m.file).read_text())
    if args.list:
        for m in chosen:
            print(f"{m.impl + ':' + m.name:<30} {m.file}: {m.what}")
        return 0

    runs = [("(none: baseline)", impl, None) for impl in impls]
    for m in chosen:
        for impl in RUNS_AGAINST.get(m.impl, (m.impl,)):
            if impl in impls:
                runs.append((f"{m.impl}:{m.name}", impl, m))
    base = Path(tempfile.mkdtemp(prefix="bpbench-mutation-"))
    print(f"{len(runs)} runs ({len(impls)} baselines), scratch copies under {base}",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, base, label, impl, m) for label, impl, m in runs]
        results = []
        for future in futures:
            r = future.result()
            results.append(r)
            print(f"{r.label} [{r.impl}]: {'failed' if r.failed else 'passed'} "
                  f"({r.seconds:.0f} s) {r.summary}", file=sys.stderr, flush=True)
    if not KEEP:
        shutil.rmtree(base, ignore_errors=True)
    total = time.perf_counter() - started
    print(table(results))
    baselines_ok = all(not r.failed for r in results if r.baseline)
    survivors = [r for r in results if not r.baseline and not r.failed]
    print(f"\n{sum(not r.baseline for r in results)} mutant runs, "
          f"{len(survivors)} not caught; baselines {'pass' if baselines_ok else 'FAIL'}; "
          f"{total:.0f} s with {args.jobs} job(s)")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results) + "\n")
    return 0 if baselines_ok and not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
