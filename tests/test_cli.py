"""The command line: exit codes, one-line errors, and the commands' output."""

import os
import shutil
import subprocess
import sys

import pytest

from bpbench import cli, registry
from bpbench.impls.numpy_vectorised import NumpyImplementation


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "bpbench", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_list_names_every_implementation_with_reason_when_unavailable():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in ("naive", "numpy", "numba", "numba_parallel", "cuda"):
        assert name in result.stdout
    implementations, _, peer_rows = result.stdout.partition("\npeers (")
    for name in ("torch", "torch_compile", "jax"):  # after the implementations, under a header
        assert f"\n{name} " in peer_rows and f"\n{name} " not in implementations
    for line in result.stdout.splitlines():
        if line and not line.startswith("peers ("):
            assert " yes " in line or " no " in line


def test_errors_are_one_line_without_traceback():
    result = run_cli("validate", "--impls", "no_such_impl")
    assert result.returncode == cli.EXIT_ERROR
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpbench: error:")
    assert "no_such_impl" in lines[0]


def test_train_bad_argument_is_a_clear_one_line_error():
    result = run_cli("train", "--impl", "numpy", "--lr", "-1", "--samples", "50", "-q")
    assert result.returncode == cli.EXIT_ERROR
    assert "Traceback" not in result.stderr
    assert "lr" in result.stderr.strip().splitlines()[-1]


def test_train_prints_losses_and_reaches_good_accuracy():
    result = run_cli("train", "--impl", "numpy", "--dataset", "spirals", "--samples", "400",
                     "--epochs", "400", "--target-loss", "0.05", "--lr", "0.3", "-q", "-v")
    assert result.returncode == 0, result.stderr
    assert "epoch    1  loss" in result.stderr
    accuracy = float(result.stdout.split("training accuracy ")[1].split("%")[0])
    assert accuracy > 95.0, result.stdout


def test_validate_passes_for_numpy_and_fails_for_a_broken_implementation(monkeypatch, capsys):
    assert cli.main(["validate", "--impls", "numpy", "--dtypes", "float64"]) == 0
    out = capsys.readouterr().out
    assert "finite differences" in out and "numpy" in out

    class WrongSigmoid(NumpyImplementation):
        """sigmoid' taken as s instead of s (1 - s): a bug the validator must catch."""
        name = "wrong_sigmoid"
        description = "numpy with a wrong sigmoid derivative"

        def _load_params(self, params):
            super()._load_params(params)

            def wrong(delta, a):
                delta *= a

            self._times_derivative = [wrong if name == "sigmoid" else f for name, f in
                                      zip(self.net.activations, self._times_derivative,
                                          strict=True)]

    monkeypatch.setitem(registry.BUILTINS, "wrong_sigmoid", ("tests.test_cli:_unused", None))
    monkeypatch.setattr(registry, "_cache", {"wrong_sigmoid": (WrongSigmoid, None, False)})
    argv = ["validate", "--impls", "wrong_sigmoid", "--dtypes", "float64"]
    assert cli.main(argv) == cli.EXIT_DISAGREE
    out = capsys.readouterr().out
    assert "disagree" in out and "wrong_sigmoid" in out


def console_script():
    """The installed ``bpbench`` command next to this Python (pip puts it there), or None."""
    folder = os.path.dirname(sys.executable)
    return shutil.which("bpbench", path=folder) or shutil.which("bpbench.exe", path=folder)


def test_python_dash_m_and_console_script_share_the_parser():
    script = console_script()
    if script is None:
        message = f"no bpbench console script next to {sys.executable}: pip install -e ."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    # a version, a usage error (argparse) and a one-line error from main (bpbench's handler)
    results = {}
    for args in (["--version"], ["train", "--lr", "-1"], ["validate", "--impls", "nope"]):
        by_module = run_cli(*args)
        by_script = subprocess.run([script, *args], capture_output=True, text=True, env=env,
                                   timeout=300)
        assert by_script.returncode == by_module.returncode, (args, by_script.stderr)
        assert by_script.stdout == by_module.stdout, args
        # the program name in usage errors differs (python -m shows __main__.py): compare the rest
        assert (by_script.stderr.split(": error:")[-1]
                == by_module.stderr.split(": error:")[-1]), args
        results[args[0]] = by_script
    assert results["--version"].returncode == 0
    assert results["--version"].stdout.startswith("bpbench ")
    assert results["train"].returncode == 2 and "--lr" in results["train"].stderr
    assert results["validate"].returncode == cli.EXIT_ERROR
    assert results["validate"].stderr.startswith("bpbench: error:")
    assert "nope" in results["validate"].stderr
