"""An install adds one top-level name, ``bpbench``; the implementations are bpbench.impls."""

import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_outside_the_repository_impls_is_not_a_name_but_bpbench_impls_is(tmp_path):
    # from a folder that is not the repository: only what the install provides is importable
    env_code = ("import importlib.util, sys\n"
                "print(importlib.util.find_spec('impls'))\n"
                "import bpbench.impls.naive as m\n"
                "print(m.__name__)\n")
    proc = _run(env_code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines == ["None", "bpbench.impls.naive"], proc.stdout


def test_the_wheel_has_one_top_level_package(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), ROOT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as archive:
        names = archive.namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"bpbench"}, top
    for module in ("naive", "numpy_vectorised", "numba_serial", "numba_parallel", "numba_cuda",
                   "_numba_kernels", "_cuda_kernels"):
        assert f"bpbench/impls/{module}.py" in names
    assert "bpbench/bench/peers/torch_eager.py" in names
