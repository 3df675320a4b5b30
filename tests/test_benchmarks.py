"""The asv suite: it passes ``asv check``, and one real point runs through asv into a report.

Both run asv in subprocesses against this checkout with ``--python=same`` (bpbench is put on
the benchmark processes' path through ``ASV_PYTHONPATH``; asv drops ``PYTHONPATH``). The smoke
run uses a temporary configuration, results folder and HOME (for asv's machine file), so it
touches nothing in the repository.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from bpbench.bench import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASV = [sys.executable, "-m", "asv"]

pytest.importorskip("asv")


def asv_env(home):
    return dict(os.environ, HOME=str(home), ASV_PYTHONPATH=ROOT)


def load_conf():
    """asv.conf.json without its // comments (asv's own format)."""
    with open(os.path.join(ROOT, "asv.conf.json")) as f:
        lines = [line for line in f if not line.lstrip().startswith("//")]
    return json.loads("".join(lines))


def test_config_says_what_the_suite_needs():
    conf = load_conf()
    assert conf["version"] == 1 and conf["project"] == "bpbench" and conf["repo"] == "."
    assert conf["benchmark_dir"] == "benchmarks" and conf["results_dir"] == "results"
    assert conf["branches"] == ["main"]
    # the HTML site outside results/ (asv scans results/ for result files and warns)
    assert not os.path.abspath(conf["html_dir"]).startswith(os.path.abspath(conf["results_dir"]))
    assert conf["matrix"]["env_nobuild"]["PYTHONHASHSEED"] == ["0"]
    assert conf["matrix"]["env_nobuild"]["BPBENCH_THREADS"] == ["1"]
    assert conf["launch_method"] == "spawn"  # CUDA cannot run in a forked child
    assert conf["environment_type"] == "virtualenv"


def test_asv_check_passes(tmp_path):
    out = subprocess.run([*ASV, "check", "--python=same"], cwd=ROOT, env=asv_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="asv needs git to name the commit")
def test_one_point_through_asv_into_a_report(tmp_path):
    conf = load_conf()
    conf.update(repo=ROOT, benchmark_dir=os.path.join(ROOT, "benchmarks"),
                results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"),
                env_dir=str(tmp_path / "env"))
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps(conf))
    env = asv_env(tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run([*ASV, "--config", str(config), "machine", "--yes", "--machine", "smoke"],
                   cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60)
    out = subprocess.run(
        [*ASV, "--config", str(config), "run", "--python=same", "--quick", "--machine", "smoke",
         f"--set-commit-hash={head}", "--show-stderr",
         "--bench", r"TimeStep\.time_step\('numpy', 1, 32\)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    frame = report.load_results(str(tmp_path / "results"))
    step = frame[(frame["benchmark"] == report.STEP) & (frame["status"] == "ok")]
    assert len(step) == 1
    row = step.iloc[0]
    assert (row["impl"], row["depth"], row["batch"]) == ("numpy", 1, 32)
    assert 0 < row["value"] < 1  # seconds per step: a batch of 32 at width 256 is far below 1 s
    text = report.format_tables(report.step_table(frame))
    assert "### depth 1" in text and "**numpy**" in text


def test_setup_peaks_are_forgotten_before_a_peakmem_call():
    # What PeakMemStep relies on, in a fresh process started by a small one: Linux carries the
    # launching process's peak RSS into a child's ru_maxrss (vfork + exec), and pytest's is big.
    code = (
        "import resource, numpy as np\n"
        "from bpbench.bench import points\n"
        "rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "big = np.ones(40_000_000)\n"  # 320 MB, freed: a transient peak of setup
        "del big\n"
        "before = rss()\n"
        "ok = points.reset_peak_rss()\n"
        "print(ok, before, rss())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    relay = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    out = subprocess.run([sys.executable, "-c", relay, sys.executable, "-c", code],
                         capture_output=True, text=True, env=env, timeout=60, check=True)
    ok, before, after = out.stdout.split()
    if ok != "True":
        pytest.skip("no /proc/self/clear_refs here: peakmem_ values include setup's peak")
    assert int(before) > 300e6 and int(after) < int(before) - 250e6


def test_suite_names_every_contestant():
    # the one contestant list: every implementation and every peer, in the library's order
    from benchmarks import common
    from bpbench.bench import peers, points

    assert common.IMPLS == points.contestants()
    assert set(peers.names()) <= set(common.IMPLS) and "numpy" in common.IMPLS


def test_suite_modules_import_nothing_of_bpbench_at_module_level():
    """asv runs this checkout's benchmarks/ against other commits' libraries (asv continuous
    BASE HEAD): a module-level import of a bpbench module that an older commit lacks would fail
    every benchmark of that commit. The suite's modules import only each other at module level
    (bpbench is imported inside functions)."""
    import ast

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
    found = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Import):
                found += [(name, a.name) for a in node.names if a.name.startswith("bpbench")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bpbench"):
                found.append((name, node.module))
    assert len([n for n in os.listdir(folder) if n.endswith(".py")]) >= 6
    assert found == []
