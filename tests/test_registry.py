"""The registry: names, availability with reasons, lazy imports, entry points."""

import os
import subprocess
import sys
import textwrap

import pytest

import bpbench
from bpbench import registry
from bpbench.interface import Implementation

BUILTIN = ["naive", "numpy", "numba", "numba_parallel", "cuda"]


def test_every_builtin_is_listed_with_availability_and_reason():
    table = bpbench.implementations()
    assert list(table)[:5] == BUILTIN
    for name, info in table.items():
        assert isinstance(info["available"], bool)
        if info["available"]:
            assert info["reason"] is None and info["description"]
        else:
            assert info["reason"], f"{name} is unavailable without saying why"


def test_available_is_the_usable_subset_and_get_returns_named_classes():
    names = bpbench.available()
    assert "numpy" in names
    for name in names:
        cls = bpbench.get(name)
        assert issubclass(cls, Implementation)
        assert cls.name == name
        assert cls.description


def test_unknown_name_is_a_keyerror_listing_known_names():
    with pytest.raises(KeyError) as info:
        bpbench.get("tensorflow")
    message = str(info.value)
    assert "tensorflow" in message
    for name in BUILTIN:
        assert name in message


def test_cuda_without_gpu_or_simulator_is_unavailable_with_both_remedies():
    # run in a fresh process so the variable is certainly unset before numba is imported
    code = textwrap.dedent("""
        import bpbench
        try:
            bpbench.get("cuda")
        except bpbench.UnavailableError as exc:
            print("UNAVAILABLE", exc)
        else:
            print("AVAILABLE")
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    if out.startswith("AVAILABLE"):
        pytest.skip("a CUDA GPU is present: the unavailable path cannot be exercised here")
    assert out.startswith("UNAVAILABLE")
    assert "NUMBA_ENABLE_CUDASIM" in out and "GPU" in out


def test_import_bpbench_imports_neither_numba_nor_cuda():
    code = ("import sys, bpbench; print(sorted(m for m in sys.modules "
            "if m.startswith(('numba', 'bpbench.impls', 'bpbench.bench'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_subclass_cannot_override_the_validating_public_methods():
    with pytest.raises(TypeError, match="step"):
        class Sneaky(Implementation):  # noqa: F841
            def step(self, X, y, lr):
                return 0.0


def test_entry_point_implementations_are_found(tmp_path, monkeypatch):
    """An outside package registers through the bpbench.impls entry-point group."""
    pkg = tmp_path / "outside_impl.py"
    pkg.write_text(textwrap.dedent("""
        from bpbench.impls.numpy_vectorised import NumpyImplementation

        class Outside(NumpyImplementation):
            name = "outside"
            description = "numpy, registered from an outside package"

        class Broken:
            pass
    """))
    dist = tmp_path / "outside_impl-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-impl\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bpbench.impls]\noutside = outside_impl:Outside\nbroken = outside_impl:Broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(registry, "_entry_points", None)
    table = bpbench.implementations()
    assert table["outside"]["available"], table["outside"]
    assert bpbench.get("outside").description.startswith("numpy, registered")
    assert not table["broken"]["available"]
    assert "not a bpbench.Implementation" in table["broken"]["reason"]
    with pytest.raises(bpbench.UnavailableError, match="broken"):
        bpbench.get("broken")


def test_missing_dependency_reason_names_the_package(monkeypatch):
    monkeypatch.setitem(registry.BUILTINS, "ghost", ("impls.ghost_module:Ghost", "ghost-pkg"))
    monkeypatch.setattr(registry, "_cache", {})
    reason = bpbench.implementations()["ghost"]["reason"]
    assert "impls.ghost_module" in reason


def test_an_implementation_that_fails_to_load_is_listed_as_broken(tmp_path, monkeypatch):
    """A module that raises on import (not only ImportError) must not break listing; the
    registry says the implementation itself is broken, which the test fixtures turn into a
    failure on CI (tests/conftest.py), and a missing dependency is not 'broken'."""
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('bug at import')\n")
    (tmp_path / "imports_missing.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.BUILTINS, "raiser", ("raises_on_import:Impl", None))
    monkeypatch.setitem(registry.BUILTINS, "missing_dep",
                        ("imports_missing:Impl", "some-package"))
    monkeypatch.setattr(registry, "_cache", {})
    table = bpbench.implementations()
    assert not table["raiser"]["available"] and table["raiser"]["broken"]
    assert "RuntimeError" in table["raiser"]["reason"]
    assert not table["missing_dep"]["available"] and not table["missing_dep"]["broken"]
    assert "pip install some-package" in table["missing_dep"]["reason"]
    assert all(not info["broken"] for name, info in table.items() if name in BUILTIN)
    with pytest.raises(bpbench.UnavailableError, match="bug at import"):
        bpbench.get("raiser")
