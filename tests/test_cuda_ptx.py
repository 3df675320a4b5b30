"""Every CUDA kernel compiles to PTX for compute capability 9.0 (H100/H200), no GPU needed.

Compiles with the exact argument types the host launches
(``bpbench.impls._cuda_kernels.signatures``, the one table), for float32 and float64, then reads the
PTX for what would hurt on hardware: local-memory traffic (``.local``: registers spilled, or a
per-thread array the compiler could not keep in registers) and, in float32 kernels, float64
arithmetic (a Python float literal or a float64 learning rate promoting the math); and, for the
three matrix products, ptxas's own report (through nvJitLink) of registers and local memory, where
real spills show. Needs NVVM (numba-cuda's ``cu13`` extra): without it the tests skip with the
reason, except under CI (env CI=true), where they fail.

Runs in this process, which must not have the CUDA simulator on (the simulator does not compile);
tests/test_cuda_sim.py keeps the simulator in its own subprocesses.
"""

import functools
import os
import re

import pytest

CC = (9, 0)
DTYPES = ("float32", "float64")


def _toolchain_problem():
    """None when compile_ptx can run here, else why not."""
    try:
        from numba import config, cuda
    except ImportError as exc:
        return f"numba-cuda is not importable ({exc}); install numba-cuda[cu13]"
    if config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM=1 is set: the simulator does not compile (run without it)"
    try:
        from bpbench.impls import _cuda_kernels as K

        cuda.compile_ptx(K.gather_labels.py_func, K.signatures("float32")["gather_labels"], cc=CC)
    except Exception as exc:  # NVVM missing shows up as several error types: report, not hide
        return f"cannot compile PTX here ({type(exc).__name__}: {exc}); install numba-cuda[cu13]"
    return None


_PROBLEM = _toolchain_problem()
if _PROBLEM:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(f"CI must compile the CUDA kernels: {_PROBLEM}")
    pytest.skip(_PROBLEM, allow_module_level=True)

from numba import cuda  # noqa: E402

from bpbench.impls import _cuda_kernels as K  # noqa: E402

_F64_OP = re.compile(r"^\s*(?:@%p\d+\s+)?[a-z]+(?:\.[a-z0-9]+)*\.f64\b", re.MULTILINE)


@functools.lru_cache(maxsize=None)
def _ptx(name, dtype):
    """PTX of one kernel for one dtype (compiled once per test session)."""
    ptx, _ = cuda.compile_ptx(K.KERNELS[name].py_func, K.signatures(dtype)[name], cc=CC)
    return ptx


def _cases():
    for dtype in DTYPES:
        for name in K.signatures(dtype):
            yield pytest.param(dtype, name, id=f"{name}-{dtype}")


def test_the_table_names_every_kernel():
    for dtype in DTYPES:
        assert set(K.signatures(dtype)) == set(K.KERNELS)


@pytest.mark.parametrize("dtype, name", list(_cases()))
def test_kernel_compiles_without_local_memory_or_float64_in_float32(dtype, name):
    ptx = _ptx(name, dtype)
    assert ".entry" in ptx
    assert ".local" not in ptx, f"{name} ({dtype}) uses local memory: spills or a dynamic index"
    if dtype == "float32":
        ops = sorted(set(m.group(0).strip() for m in _F64_OP.finditer(ptx)))
        assert not ops, f"{name} (float32) does float64 arithmetic: {ops[:5]}"


def _sass_report(ptx):
    """ptxas's verbose report for this PTX assembled for sm_90 by nvJitLink (registers, stack,
    local memory), or pytest.skip/fail when nvJitLink is missing."""
    try:
        from cuda.bindings import nvjitlink
    except ImportError as exc:
        reason = f"nvJitLink is not importable ({exc}); install numba-cuda[cu13]"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = [f"-arch=sm_{CC[0]}{CC[1]}", "-verbose"]
    handle = nvjitlink.create(len(options), options)
    try:
        data = ptx.encode()
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel.ptx")
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
    finally:
        nvjitlink.destroy(handle)
    return log.decode(errors="replace").rstrip("\x00")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["forward_layer", "input_grad", "weight_grad"])
def test_products_assemble_without_spills(dtype, name):
    """The register micro-tiles fit: ptxas reports no local memory (spills) and no stack."""
    report = _sass_report(_ptx(name, dtype))
    lmem = re.search(r"(\d+) bytes lmem", report)
    regs = re.search(r"used (\d+) registers", report)
    assert lmem and regs, f"unexpected ptxas report: {report}"
    assert int(lmem.group(1)) == 0, f"{name} ({dtype}) spills: {report}"
    assert "0 bytes stack frame" in report or " 0 stack" in report, report
    if dtype == "float32":  # the timed dtype: 256 threads x <= 128 registers = 2 blocks per SM
        assert int(regs.group(1)) <= 128, f"{name} ({dtype}): {regs.group(0)}"


def test_the_float64_check_would_see_float64_arithmetic():
    """The pattern above must catch a float32 kernel promoted by a Python float literal."""
    from numba import types

    def scaled(x, out):
        i = cuda.grid(1)
        if i < x.size:
            out[i] = x[i] * 0.1  # 0.1 is float64 in Numba's typing (and inexact in float32)

    vec = types.Array(types.float32, 1, "C")
    ptx, _ = cuda.compile_ptx(scaled, (vec, vec), cc=CC)
    assert _F64_OP.search(ptx)
