"""The kernel sources compile, without a GPU: NVRTC for several architectures, and the host compiler.

NVRTC gets the options CuPy uses at run time (gpunn.compute.kernel_source.nvrtc_options).  A
missing NVRTC or host compiler skips these tests, except when ``$CI`` is set: there it
fails them (kernel_cases.missing_tool).
"""

import re

import pytest

from gpunn.compute import host_kernels
from gpunn.compute import kernel_source
from gpunn.compute.ops import ACTIVATIONS
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
    with pytest.raises(kernel_source.CompilerUnavailable, match=r"cuda-toolkit\[cudart,nvrtc\]"):
        kernel_source.compile_for_arch("sm_80")


def test_missing_cuda_headers_are_reported(nvrtc_archs, monkeypatch):
    """CuPy's RuntimeError (no cuda_runtime.h: no toolkit and no cuda-toolkit wheels) becomes
    gpunn's CompilerUnavailable saying what to install, which the nvrtc_archs fixture turns
    into a skip (a failure under CI)."""
    from cupy._core import core

    def no_headers(options):
        raise RuntimeError("Failed to find CUDA headers. Please install CUDA toolkit headers "
                           "(e.g., pip install cupy-cuda12x[ctk]) or specify CUDA_PATH environment variable.")

    monkeypatch.setattr(core, "assemble_cupy_compiler_options", no_headers)
    for compile_ in (kernel_source.compile_for_arch, kernel_source.compile_to_ptx):
        with pytest.raises(kernel_source.CudaHeadersUnavailable, match=r"gpunn\[gpu\]") as info:
            compile_("sm_90")
        assert isinstance(info.value, kernel_source.CompilerUnavailable)
        assert "Failed to find CUDA headers" in str(info.value)


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


# -- no FMA contraction where the twin test is exact ----------------------------------
# NVRTC compiles with --fmad=true by default (and CuPy adds only -ftz=true), so a*b + c may
# become one FMA, rounded once instead of twice: the NumPy twin's result to within an ulp,
# not to the bit.  Either NVVM contracts it (an `fma` in the PTX) or it leaves a `mul`
# without a rounding modifier feeding an `add`/`sub` without one, which ptxas may still fuse
# (a `.rn` on either instruction forbids that: PTX ISA, "mul"/"add": "mul/add with an explicit
# rounding modifier ... are not contracted").  The kernels below are compared bit for bit
# with their twins (kernel_cases.py, `exact`), so their PTX must hold neither.

#: Kernels whose every output is compared exactly with the twin (kernel_cases.py).
EXACT_OPS = (
    *(f"{name}_backward" for name in ACTIVATIONS),  # g * act'(a)
    "bias_relu", "bias_identity",                    # one addition (and a comparison)
    "gather_batch", "gather_columns",                # copies
    "output_delta_squared_error",                    # a - t (times the weight); its loss rounded op by op too
)
#: The exactly compared part of a kernel that also holds tolerance-checked work (the output
#: delta's loss uses log and a sum in double): each wrapped alone in a probe kernel.
EXACT_PROBES = {
    "quadratic_delta": "gpunn::quadratic_delta(a[i], t[i])",
    "cross_entropy_delta": "gpunn::cross_entropy_delta(a[i], t[i])",
    "sigmoid_grad": "gpunn::Sigmoid::grad_from_output(a[i]) * t[i]",
    "tanh_grad": "gpunn::Tanh::grad_from_output(a[i]) * t[i]",
    "weighted_delta": "gpunn::mul_rn(gpunn::quadratic_delta(a[i], t[i]), t[i])",  # sample_weight
}

_PTX_FUNCTION = re.compile(r"^(?:\.visible\s+|\.weak\s+)?\.(entry|func)\s+(?:\([^)]*\)\s*)?(\w+)\(", re.MULTILINE)
_PTX_FLOAT_OP = re.compile(
    r"^\s*(?:@!?%\w+\s+)?(mul|add|sub|fma|mad|neg|mov)((?:\.\w+)*?)\.(f32|f64)\s+([^;]*);", re.MULTILINE
)
_ROUNDING = {".rn", ".rz", ".rm", ".rp"}


def ptx_entries(ptx: str) -> dict[str, str]:
    """Each ``.entry`` of a PTX module: name -> its text (up to the next entry or function)."""
    starts = [(m.start(), m.group(1), m.group(2)) for m in _PTX_FUNCTION.finditer(ptx)]
    return {name: ptx[start:(starts[i + 1][0] if i + 1 < len(starts) else len(ptx))]
            for i, (start, kind, name) in enumerate(starts) if kind == "entry"}


def contractions(body: str) -> list[str]:
    """The float instructions of one PTX function that are, or may become, an FMA.

    Every ``fma``/``mad`` on f32/f64, and every ``add``/``sub`` without a rounding modifier
    that reads (directly, or through ``mov``/``neg``) the result of a ``mul`` without one.
    Flow-insensitive, so it may over-report, never under-report, within one function.
    """
    found, unrounded_products, ops = [], set(), []
    for match in _PTX_FLOAT_OP.finditer(body):
        op, modifiers, type_, operands = match.groups()
        dest, *sources = [x.strip() for x in operands.split(",")]
        rounded = bool(_ROUNDING & set(re.findall(r"\.\w+", modifiers)))
        text = " ".join(match.group(0).split()).rstrip(";")
        ops.append((op, rounded, dest, sources, text))
        if op in ("fma", "mad"):
            found.append(text)
        elif op == "mul" and not rounded:
            unrounded_products.add(dest)
    changed = True
    while changed:  # a product copied or negated is still a product
        changed = False
        for op, _, dest, sources, _ in ops:
            if op in ("mov", "neg") and sources[0] in unrounded_products and dest not in unrounded_products:
                unrounded_products.add(dest)
                changed = True
    for op, rounded, dest, sources, text in ops:
        if op in ("add", "sub") and not rounded and unrounded_products & set(sources):
            found.append(text)
    return found


def _probe_code() -> str:
    probes = []
    for name, expression in EXACT_PROBES.items():
        for T, suffix in (("float", "_f32"), ("double", "_f64")):
            probes.append(f'extern "C" __global__ void probe_{name}{suffix}(const {T}* a, const {T}* t, '
                          f'{T}* out, int n) {{\n'
                          f"    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = {expression};\n}}")
    return kernel_code_with("\n".join(probes))


def kernel_code_with(extra: str) -> str:
    return kernel_source.kernel_code() + "\n" + extra + "\n"


def test_the_contraction_finder_finds_contractions():
    ptx = """.visible .entry k(
	mul.ftz.f32 	%f2, %f1, %f1;
	mov.f32 	%f3, 0f3F800000;
	sub.ftz.f32 	%f4, %f3, %f2;
	mul.rn.f32 	%f5, %f1, %f1;
	add.f32 	%f6, %f5, %f3;
	mul.f64 	%fd1, %fd2, %fd3;
	neg.f64 	%fd4, %fd1;
	add.rn.f64 	%fd5, %fd4, %fd2;
	add.f64 	%fd6, %fd2, %fd4;
	fma.rn.f32 	%f7, %f1, %f2, %f3;
}"""
    assert contractions(ptx_entries(ptx)["k"]) == [
        "fma.rn.f32 %f7, %f1, %f2, %f3", "sub.ftz.f32 %f4, %f3, %f2", "add.f64 %fd6, %fd2, %fd4"]


@pytest.mark.parametrize("arch", (75, 90))
def test_exactly_tested_kernels_hold_nothing_an_fma_could_contract(nvrtc_archs, arch):
    entries = ptx_entries(kernel_source.compile_to_ptx(f"sm_{arch}", _probe_code()))
    names = [op + suffix for op in EXACT_OPS for suffix in ("_f32", "_f64")] + ["advance_step"]
    names += [f"probe_{name}{suffix}" for name in EXACT_PROBES for suffix in ("_f32", "_f64")]
    assert set(names) <= set(entries), "an exactly tested kernel is missing from the PTX"
    found = {name: contractions(entries[name]) for name in names}
    found = {name: instructions for name, instructions in found.items() if instructions}
    assert not found, "\n".join(f"{name}: {'; '.join(i)}" for name, i in found.items())
