"""The kernel sources compile, without a GPU: NVRTC for several architectures, and the host compiler.

NVRTC gets the options CuPy uses at run time (gpunn.compute.kernel_source.nvrtc_options).  A
missing NVRTC or host compiler skips these tests, except when ``$CI`` is set: there it
fails them (kernel_cases.missing_tool).
"""

import pytest

from gpunn.compute import host_kernels
from gpunn.compute import kernel_source
from kernel_cases import missing_tool

REQUIRED_ARCHS = (75, 80, 90)
OPTIONAL_ARCHS = (100, 120)


@pytest.mark.parametrize("arch", REQUIRED_ARCHS + OPTIONAL_ARCHS)
def test_kernels_compile_with_nvrtc(nvrtc_archs, arch):
    if arch in OPTIONAL_ARCHS and arch not in nvrtc_archs:
        pytest.skip(f"this NVRTC does not support sm_{arch} (it supports {nvrtc_archs})")
    cubin = kernel_source.compile_for_arch(f"sm_{arch}")
    for name in kernel_source.KERNEL_NAMES:
        assert name.encode() in cubin, f"{name} is not exported unmangled"


def test_nvrtc_errors_carry_the_compiler_log(nvrtc_archs):
    code = kernel_source.kernel_code() + "\n#error deliberate\n"
    with pytest.raises(kernel_source.KernelCompileError, match="deliberate") as info:
        kernel_source.compile_for_arch("sm_80", code)
    assert kernel_source.KERNEL_FILE in str(info.value)


def test_nvrtc_options_are_cupys(nvrtc_archs):
    options = kernel_source.nvrtc_options("sm_90")
    assert "-ftz=true" in options and "--gpu-architecture=sm_90" in options
    assert not any("fast-math" in o or "use_fast_math" in o for o in options)


def test_kernels_compile_for_the_host():
    try:
        path = host_kernels.build_host_library()
    except kernel_source.CompilerUnavailable as exc:
        missing_tool(str(exc))
    assert path.is_file()


def test_host_compile_errors_carry_the_compiler_output():
    code = kernel_source.kernel_code() + "\n#error deliberate\n"
    try:
        with pytest.raises(kernel_source.KernelCompileError, match="deliberate"):
            host_kernels.build_host_library(code)
    except kernel_source.CompilerUnavailable as exc:
        missing_tool(str(exc))


def test_a_missing_host_compiler_is_reported(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-gpunn")
    with pytest.raises(kernel_source.CompilerUnavailable, match="no-such-compiler-gpunn"):
        host_kernels.build_host_library()


def test_a_missing_nvrtc_library_is_reported(nvrtc_archs, monkeypatch):
    from cupy.cuda import nvrtc

    def no_library():
        raise OSError("libnvrtc.so.13: cannot open shared object file")

    monkeypatch.setattr(nvrtc, "getVersion", no_library)
    with pytest.raises(kernel_source.CompilerUnavailable, match="nvidia-cuda-nvrtc"):
        kernel_source.compile_for_arch("sm_80")


@pytest.mark.parametrize("ci", ["", "1"])
def test_missing_tool_skips_locally_and_fails_on_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected):
        missing_tool("no compiler")


def test_no_kernel_spills_on_sm_90_and_the_tiles_use_the_shared_memory_they_declare(nvrtc_archs):
    """ptxas's report (through NVRTC) for every kernel: no stack, no spills; the tiled products
    hold two TILE_K x (TILE + 1) slices, the output delta its two 256-entry sum trees and a flag."""
    usage = kernel_source.resource_usage("sm_90")
    assert set(usage) == set(kernel_source.KERNEL_NAMES)
    for name, resources in usage.items():
        assert (resources.stack_bytes, resources.spill_stores, resources.spill_loads) == (0, 0, 0), name
        assert resources.registers <= 128, name
    for suffix, size in (("_f32", 4), ("_f64", 8)):
        assert usage["dense_weight_grad" + suffix].shared_bytes == 2 * 32 * 17 * size
        assert usage["output_delta_quadratic" + suffix].shared_bytes == 256 * 8 * 2 + 4
