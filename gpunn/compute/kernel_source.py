"""The CUDA kernel sources: where they are, how they compile, and how they are launched.

Three consumers share this module, so that they all see the same text and the same
launches:

* :mod:`gpunn.compute.cuda_kernels` builds the sources with ``cupy.RawModule`` and runs them
  on a GPU;
* :mod:`gpunn.compute.host_kernels` builds the same sources with the host C++ compiler and
  runs every thread of every block on the CPU;
* the tests compile the sources with NVRTC for several GPU architectures on machines
  that have no GPU (:func:`compile_for_arch`).

The sources live in ``kernels/`` at the top of the repository, installed as the package
data ``gpunn.kernels``.  :func:`kernel_code` returns ``gpunn_kernels.cu`` with its
headers (``gpunn_math.cuh``: elementwise arithmetic; ``gpunn_tiles.cuh``: the tiled
products and block reductions) inlined, with ``#line`` markers so that compiler
messages still name the right file and line: the one text every compiler gets.

The ``plan_*`` functions check a call's arrays and turn it into a :class:`Launch`
(kernel name, grid, block, argument tuple); the CuPy and host backends both execute
exactly that.  Kernels index with 32-bit ``int``: a plan refuses sizes whose index
arithmetic could overflow.  Only the NVRTC functions import CuPy, and only when
called.
"""

from __future__ import annotations

import importlib.resources
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gpunn.errors import GpunnError
from gpunn.compute.ops import ACTIVATIONS, OBJECTIVES, TARGET_OBJECTIVES

KERNEL_FILE = "gpunn_kernels.cu"
#: The headers ``gpunn_kernels.cu`` includes, inlined by :func:`kernel_code`.
HEADER_FILES = ("gpunn_math.cuh", "gpunn_tiles.cuh")
HOST_SHIM_FILE = "host_shim.cuh"

#: The kernels in ``gpunn_kernels.cu``, each exported as ``<op>_f32`` and ``<op>_f64``.
OPS = (
    *(f"bias_{name}" for name in ACTIVATIONS),
    *(f"{name}_backward" for name in ACTIVATIONS),
    *(f"dense_forward_{name}" for name in ACTIVATIONS),
    *(f"dense_backward_{name}" for name in ACTIVATIONS),
    "dense_weight_grad",
    *(f"output_delta_{name}" for name in OBJECTIVES),
    "softmax_columns",
    "sgd_update",
    "adam_update",
    "gather_batch",
    "gather_columns",
)
#: Kernels with no float type, exported under their plain name.
UNTYPED_KERNELS = ("advance_step",)
DTYPE_SUFFIXES = {np.dtype(np.float32): "_f32", np.dtype(np.float64): "_f64"}
KERNEL_NAMES = tuple(op + suffix for op in OPS for suffix in DTYPE_SUFFIXES.values()) + UNTYPED_KERNELS

#: Options gpunn gives cupy.RawModule (CuPy adds its include paths, -ftz=true and -arch).
RAWMODULE_OPTIONS = ("--std=c++17",)

#: Threads per block of the elementwise launches.
BLOCK = 256
#: Most blocks of one launch; the grid-stride loops cover larger problems.
MAX_BLOCKS = 65535
#: The tiled products (``gpunn_tiles.cuh``): a (TILE, TILE) block of threads per
#: TILE x TILE tile of the output.
TILE = 16
#: Most threads per block of the output delta (``REDUCE_THREADS`` in gpunn_tiles.cuh).
REDUCE_THREADS = 256
#: Most blocks of an output-delta launch: the slots of :class:`ReductionScratch`.
REDUCE_BLOCKS = 64
_INT32_MAX = 2**31 - 1


class CompilerUnavailable(GpunnError, RuntimeError):
    """The compiler that a kernel build needs (NVRTC or the host C++ compiler) is missing."""


class CudaHeadersUnavailable(CompilerUnavailable):
    """CuPy finds no CUDA runtime headers (``cuda_runtime.h``) to compile gpunn's kernels against."""


#: What to install when CuPy finds no CUDA headers: the ``gpu`` extra brings them as wheels.
CUDA_HEADERS_HINT = (
    'install them with `pip install "gpunn[gpu]"` (it brings cuda-toolkit[cudart,nvrtc,cublas,curand], '
    "the headers and libraries as wheels), or install a CUDA toolkit and set CUDA_PATH to it"
)


def is_missing_headers(exc: BaseException) -> bool:
    """Whether ``exc`` is CuPy's error for missing CUDA headers (see :func:`missing_headers_error`)."""
    return isinstance(exc, RuntimeError) and "Failed to find CUDA headers" in str(exc)


def missing_headers_error(exc: BaseException) -> CudaHeadersUnavailable:
    """gpunn's error for CuPy's ``RuntimeError: Failed to find CUDA headers ...``.

    CuPy 14.2 raises that from ``assemble_cupy_compiler_options`` (cupy/_core/core.pyx), on
    every RawModule compilation, when neither the header wheels (found by cuda-pathfinder's
    ``find_nvidia_header_directory('cudart')``) nor a CUDA toolkit (or ``$CUDA_PATH``) give it
    ``cuda_runtime.h``.  Its hint names ``cupy-cuda12x[ctk]``, the wrong CUDA major for gpunn.
    """
    return CudaHeadersUnavailable(f"CuPy cannot compile gpunn's CUDA kernels: no CUDA headers found; "
                                  f"{CUDA_HEADERS_HINT} (CuPy said: {exc})")


class KernelCompileError(RuntimeError):
    """The kernel sources failed to compile; the message holds the compiler's log."""


# -- sources --------------------------------------------------------------------


def kernels_dir() -> Path:
    """The folder that holds the kernel sources.

    The installed package data ``gpunn.kernels`` when it can be imported (a normal or
    editable install), else ``kernels/`` beside the ``gpunn`` package folder (a checkout
    used through ``PYTHONPATH``).
    """
    try:
        folder = Path(str(importlib.resources.files("gpunn.kernels")))
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parents[2] / "kernels"
    if not (folder / KERNEL_FILE).is_file():
        raise FileNotFoundError(
            f"gpunn's CUDA sources are missing: no {KERNEL_FILE} in {folder}; "
            "reinstall gpunn (pip install gpunn) or run from a complete checkout"
        )
    return folder


def read_source(name: str) -> str:
    """The text of one file in :func:`kernels_dir`."""
    return (kernels_dir() / name).read_text(encoding="utf-8")


_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"[ \t]*$', re.MULTILINE)


def kernel_code() -> str:
    """``gpunn_kernels.cu`` with each of its ``#include "<header>"`` lines replaced by the header.

    ``#line`` directives keep compiler messages pointing at the original files.  Only
    the :data:`HEADER_FILES` may be included this way; a missing one is an error.
    """
    return inline_includes(KERNEL_FILE, HEADER_FILES)


def inline_includes(name: str, headers: tuple[str, ...]) -> str:
    """The source file ``name`` with its ``#include "<header>"`` lines replaced by the headers.

    The file must include exactly ``headers`` that way (KernelCompileError otherwise), so
    that the text handed to a compiler is all there is: a change of any header changes
    the text, and with it the cache key of a build.
    """
    text = read_source(name)
    included = _LOCAL_INCLUDE.findall(text)
    if sorted(included) != sorted(headers):
        raise KernelCompileError(
            f"{name} must include exactly {', '.join(headers)} (as #include \"name\"), "
            f"found {', '.join(included) or 'none'}"
        )

    def inline(match: re.Match) -> str:
        next_line = text.count("\n", 0, match.start()) + 2
        return (f'#line 1 "{match.group(1)}"\n{read_source(match.group(1))}\n'
                f'#line {next_line} "{name}"')

    return _LOCAL_INCLUDE.sub(inline, text)


# -- NVRTC (no GPU needed) ----------------------------------------------------------


def _nvrtc():
    """CuPy's low-level NVRTC bindings, checked to have a loadable NVRTC library."""
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # ImportError, or the library failing to load
        raise CompilerUnavailable(
            f"NVRTC is not available ({type(exc).__name__}: {exc}); install it with "
            '`pip install "gpunn[kernels]"` (cupy-cuda13x and cuda-toolkit[cudart,nvrtc] 13)'
        ) from None
    return nvrtc


def supported_archs() -> tuple[int, ...]:
    """The ``sm_XX`` numbers the installed NVRTC can compile for, e.g. ``(75, 80, 90)``."""
    return tuple(int(a) for a in _nvrtc().getSupportedArchs())


def nvrtc_options(arch: str) -> tuple[str, ...]:
    """The options ``cupy.RawModule`` compiles gpunn's kernels with, for ``sm_XX`` ``arch``.

    CuPy 14.2 at run time: ``assemble_cupy_compiler_options`` (its include paths and the
    C++ standard) on our :data:`RAWMODULE_OPTIONS`, then ``-ftz=true``, the
    architecture and ``--device-as-default-execution-space``.  The first is private CuPy
    API, which is why gpunn pins ``cupy-cuda13x==14.2.*``.
    """
    from cupy._core import core

    number = re.fullmatch(r"(?:sm_)?(\d+)", arch)
    if number is None:
        raise ValueError(f"bad GPU architecture {arch!r}: use sm_XX, e.g. sm_80")
    try:
        cupy_options = core.assemble_cupy_compiler_options(RAWMODULE_OPTIONS)
    except RuntimeError as exc:
        if is_missing_headers(exc):
            raise missing_headers_error(exc) from None
        raise
    return cupy_options + (
        "-ftz=true",
        f"--gpu-architecture=sm_{number.group(1)}",
        "--device-as-default-execution-space",
    )


def _compile(arch: str, code: str | None, result):
    """Compile with NVRTC for ``arch`` and return ``result(nvrtc, program)`` (its CUBIN or its PTX)."""
    nvrtc = _nvrtc()
    options = nvrtc_options(arch)
    program = nvrtc.createProgram(kernel_code() if code is None else code, KERNEL_FILE, (), ())
    try:
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(program)
            raise KernelCompileError(
                f"NVRTC failed to compile {KERNEL_FILE} for {arch} ({exc}):\n{log}"
            ) from None
        return result(nvrtc, program)
    finally:
        nvrtc.destroyProgram(program)


def compile_for_arch(arch: str, code: str | None = None) -> bytes:
    """Compile the kernels (or ``code``) with NVRTC for ``arch`` (``"sm_80"``); return the CUBIN.

    Needs NVRTC and the CUDA headers but no GPU or driver.  Raises :class:`CompilerUnavailable`
    when NVRTC is missing (:class:`CudaHeadersUnavailable` when the headers are) and
    :class:`KernelCompileError`, carrying NVRTC's log, when compilation fails.
    """
    return _compile(arch, code, lambda nvrtc, program: nvrtc.getCUBIN(program))


def compile_to_ptx(arch: str, code: str | None = None) -> str:
    """The PTX of the kernels (or ``code``) for ``arch``, compiled as :func:`compile_for_arch` compiles.

    The PTX shows what the compiler did to the arithmetic: ``fma`` instructions, and
    multiplications and additions without a rounding modifier such as ``.rn`` (which ptxas
    may still fuse into one FMA); tests/test_kernels_compile.py reads it.
    """
    return _compile(arch, code, lambda nvrtc, program: nvrtc.getPTX(program).decode())


class KernelResources(NamedTuple):
    """What ptxas reports for one compiled kernel."""

    registers: int  #: per thread
    shared_bytes: int  #: static shared memory per block
    stack_bytes: int  #: stack frame per thread
    spill_stores: int  #: bytes
    spill_loads: int  #: bytes


_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def resource_usage(arch: str) -> dict[str, KernelResources]:
    """Registers, shared memory, stack and spills of every kernel compiled for ``arch``, from ptxas.

    Compiles with the options of :func:`nvrtc_options` plus ``--ptxas-options=-v`` and
    reads ptxas's report from NVRTC's log; no GPU needed.
    """
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(kernel_code(), KERNEL_FILE, (), ())
    try:
        nvrtc.compileProgram(program, nvrtc_options(arch) + ("--ptxas-options=-v",))
        log = nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)
    usage, kernel, frame = {}, None, None
    for line in log.splitlines():
        if match := _PTXAS_ENTRY.search(line):
            kernel, frame = match.group(1), None
        elif kernel and (match := _PTXAS_FRAME.search(line)) and frame is None:
            frame = tuple(int(g) for g in match.groups())
        elif kernel and frame and (match := _PTXAS_USED.search(line)):
            usage[kernel] = KernelResources(int(match.group(1)), int(match.group(2) or 0), *frame)
            kernel = None
    return usage


# -- launches ---------------------------------------------------------------------


class Launch(NamedTuple):
    """One kernel launch: what both the CuPy and the host backend execute."""

    name: str  #: exported kernel name, e.g. ``bias_sigmoid_f32``
    grid: int | tuple[int, ...]  #: blocks: ``x`` or ``(x[, y[, z]])`` (see :func:`dim3`)
    block: int | tuple[int, ...]  #: threads per block: ``x`` or ``(x[, y[, z]])``
    args: tuple  #: arrays (NumPy or CuPy), ``None`` for NULL, NumPy scalars; kernel order


def dim3(extent: int | tuple[int, ...]) -> tuple[int, int, int]:
    """A launch's grid or block as ``(x, y, z)``: an int is ``(x, 1, 1)``, a missing y or z is 1.

    ValueError unless it is 1 to 3 sizes, each from 1 to 2^31 - 1.  CUDA's tighter
    limits (1024 threads per block, ...) are left to the launch.
    """
    sizes = (extent,) if isinstance(extent, (int, np.integer)) else tuple(extent)
    if not 1 <= len(sizes) <= 3 or not all(1 <= size <= _INT32_MAX for size in sizes):
        raise ValueError(f"a launch grid or block is 1 to 3 positive sizes (x[, y[, z]]), not {extent!r}")
    return tuple(int(size) for size in sizes) + (1,) * (3 - len(sizes))


def grid_for(threads_wanted: int) -> int:
    """Blocks for ``threads_wanted`` threads of :data:`BLOCK`, at least 1, at most :data:`MAX_BLOCKS`."""
    return max(1, min(math.ceil(threads_wanted / BLOCK), MAX_BLOCKS))


def _check_index_range(size: int, grid: int, what: str) -> None:
    # A grid-stride loop computes index + stride before comparing it with the size, so
    # both together must fit in a 32-bit int.
    if size + grid * BLOCK > _INT32_MAX:
        raise ValueError(
            f"{what} has {size} elements, too many for the kernels' 32-bit indices "
            f"(at most {_INT32_MAX - grid * BLOCK}); use smaller batches or layers"
        )


def _suffix(*arrays) -> str:
    """The kernel-name suffix for the arrays' common float dtype; TypeError otherwise."""
    dtype = arrays[0].dtype
    suffix = DTYPE_SUFFIXES.get(dtype)
    if suffix is None:
        raise TypeError(f"the fused kernels take float32 or float64 arrays, not {dtype}")
    for other in arrays[1:]:
        if other.dtype != dtype:
            raise TypeError(f"mixed dtypes: {dtype} and {other.dtype}; convert to one of them")
    return suffix


def _matrix_shape(array, name: str) -> tuple[int, int]:
    if array.ndim != 2:
        raise ValueError(f"{name} must be a (units, samples) matrix, not shape {array.shape}")
    return array.shape


def _check(array, name: str, shape: tuple | None = None, dtype=None) -> None:
    """ValueError/TypeError unless ``array`` is C-contiguous (with this shape and dtype)."""
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{name} has dtype {array.dtype}, expected {np.dtype(dtype)}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use ascontiguousarray)")


def _check_activation(activation: str, allowed) -> None:
    if activation not in allowed:
        raise ValueError(f"unknown activation {activation!r}: use one of {', '.join(allowed)}")


def plan_bias_act(z, b, activation: str) -> Launch:
    """z <- act(z + b[:, None]) in place; z (units, samples), b (units,); act may be ``identity``."""
    _check_activation(activation, ACTIVATIONS)
    suffix = _suffix(z, b)
    rows, cols = _matrix_shape(z, "z")
    _check(z, "z")
    _check(b, "b", (rows,))
    grid = grid_for(z.size)
    _check_index_range(z.size, grid, "z")
    return Launch(f"bias_{activation}{suffix}", grid, BLOCK, (z, b, np.int32(rows), np.int32(cols)))


def plan_act_backward(g, a, activation: str) -> Launch:
    """g <- g * act'(z) in place, act' from the saved outputs ``a``."""
    _check_activation(activation, ACTIVATIONS)
    suffix = _suffix(g, a)
    _check(g, "g")
    _check(a, "a", g.shape)
    grid = grid_for(g.size)
    _check_index_range(g.size, grid, "g")
    return Launch(f"{activation}_backward{suffix}", grid, BLOCK, (g, a, np.int32(g.size)))


class ReductionScratch(NamedTuple):
    """Device memory for the output delta's sum over blocks (``sum_over_blocks`` in gpunn_tiles.cuh).

    One slot per block of a launch for its partial loss and hit count, and the
    counter of blocks that have arrived (0 between launches: the last block resets
    it).  Made once per kernel set, before anything is captured in a CUDA graph;
    launches that share it must run one after another (one stream).
    """

    block_loss: object  #: (REDUCE_BLOCKS,) float64
    block_hits: object  #: (REDUCE_BLOCKS,) int64 (the kernel's unsigned long long)
    arrivals: object  #: (1,) uint32, zero

    @classmethod
    def zeros(cls, xp) -> "ReductionScratch":
        return cls(xp.zeros(REDUCE_BLOCKS, np.float64), xp.zeros(REDUCE_BLOCKS, np.int64),
                   xp.zeros(1, np.uint32))


def reduce_launch(cols: int) -> tuple[int, int]:
    """(blocks, threads per block) of an output-delta launch over ``cols`` samples.

    Threads: the power of two from 32 to :data:`REDUCE_THREADS` that covers ``cols``,
    so a batch of 10 does not run 256 threads; blocks: enough for one sample per
    thread, at most :data:`REDUCE_BLOCKS`.  Both depend on ``cols`` alone, so the
    order of the sums is fixed by the shape.
    """
    threads = min(REDUCE_THREADS, max(32, 1 << max(cols - 1, 0).bit_length()))
    return max(1, min(math.ceil(cols / threads), REDUCE_BLOCKS)), threads


def plan_output_delta(a, labels, delta, loss_sum, correct, scratch: ReductionScratch,
                      objective="quadratic", targets=None, weights=None) -> Launch:
    """The output layer's delta with the loss sum and correct count: one thread per sample.

    The totals are added over the launch in a fixed order through ``scratch``.
    ``squared_error`` (a regression network) reads the float ``targets`` (shaped like
    ``a``) instead of ``labels`` (which may then be None) and adds no correct answers.
    ``weights``: optional (samples,) per-sample weights of the delta and the loss.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    suffix = _suffix(a, delta)
    rows, cols = _matrix_shape(a, "a")
    _check(a, "a")
    _check(delta, "delta", (rows, cols))
    if objective in TARGET_OBJECTIVES:
        if targets is None:
            raise ValueError(f"the {objective} objective needs float targets shaped like a")
        _suffix(a, targets)
        _check(targets, "targets", (rows, cols))
        answers = targets
    else:
        _check(labels, "labels", (cols,), np.int32)
        answers = labels
    if weights is not None:
        _suffix(a, weights)
        _check(weights, "weights", (cols,))
    _check(loss_sum, "loss_sum", (), np.float64)
    _check(correct, "correct", (), np.int64)
    _check(scratch.block_loss, "block_loss", (REDUCE_BLOCKS,), np.float64)
    _check(scratch.block_hits, "block_hits", (REDUCE_BLOCKS,), np.int64)
    _check(scratch.arrivals, "arrivals", (1,), np.uint32)
    grid, threads = reduce_launch(cols)
    _check_index_range(a.size, grid, "a")
    return Launch(
        f"output_delta_{objective}{suffix}",
        grid,
        threads,
        (a, answers, weights, delta, loss_sum, correct, *scratch, np.int32(rows), np.int32(cols)),
    )


def _product_grid(rows: int, cols: int) -> tuple[int, int]:
    """The grid of a tiled product with a ``rows`` x ``cols`` output: one block per TILE x TILE tile."""
    grid = (max(1, math.ceil(cols / TILE)), max(1, math.ceil(rows / TILE)))
    if grid[1] > 65535:
        raise ValueError(f"a layer product with {rows} output rows is too tall for one launch "
                         f"(at most {65535 * TILE}); use narrower layers")
    return grid


def _check_int32_sizes(**arrays) -> None:
    for name, array in arrays.items():
        if array.size > _INT32_MAX:
            raise ValueError(f"{name} has {array.size} elements, too many for the kernels' 32-bit indices; "
                             "use smaller batches or layers")


def plan_dense_forward(wb, a_in, z, activation: str) -> Launch:
    """z <- act([W; b]^T [A_prev; 1]): a layer's weighted sums, bias and activation in one kernel.

    ``wb``: the layer's ``[W; b]`` block, (inputs + 1, units); ``a_in``: the previous
    layer's activations with their row of ones, (inputs + 1, samples); ``z``: the
    output, (units, samples).  ``activation`` may be ``identity`` (a softmax layer's logits).
    """
    _check_activation(activation, ACTIVATIONS)
    suffix = _suffix(wb, a_in, z)
    depth, units = _matrix_shape(wb, "wb")
    _check(wb, "wb")
    _check(a_in, "a_in")
    if a_in.shape[0] != depth:
        raise ValueError(f"a_in has {a_in.shape[0]} rows but wb has {depth} (inputs + 1)")
    samples = a_in.shape[1]
    _check(z, "z", (units, samples))
    _check_int32_sizes(wb=wb, a_in=a_in, z=z)
    return Launch(f"dense_forward_{activation}{suffix}", _product_grid(units, samples), (TILE, TILE),
                  (wb, a_in, z, np.int32(depth), np.int32(units), np.int32(samples)))


def plan_dense_backward(w, delta, a_below, delta_below, activation: str) -> Launch:
    """delta_below <- (W delta) * act'(a_below): the chain rule one layer down, in one kernel.

    ``w``: the layer's weights without the bias row, (inputs, units); ``delta``: its
    delta, (units, samples); ``a_below``: the saved outputs of the layer below,
    (inputs, samples), from which ``act'`` is computed; ``delta_below``: the output.
    """
    _check_activation(activation, ACTIVATIONS)
    suffix = _suffix(w, delta, a_below, delta_below)
    inputs, units = _matrix_shape(w, "w")
    _check(w, "w")
    _check(delta, "delta")
    if delta.shape[0] != units:
        raise ValueError(f"delta has {delta.shape[0]} rows but w has {units} columns (units)")
    samples = delta.shape[1]
    _check(a_below, "a_below", (inputs, samples))
    _check(delta_below, "delta_below", (inputs, samples))
    _check_int32_sizes(w=w, delta=delta, delta_below=delta_below)
    return Launch(f"dense_backward_{activation}{suffix}", _product_grid(inputs, samples), (TILE, TILE),
                  (w, delta, a_below, delta_below, np.int32(inputs), np.int32(units), np.int32(samples)))


def plan_dense_weight_grad(a_in, delta, grad) -> Launch:
    """grad <- [A_prev; 1] delta^T: a layer's gradient block, the bias gradient as its last row.

    ``a_in``: (inputs + 1, samples) with the row of ones; ``delta``: (units, samples);
    ``grad``: the layer's (inputs + 1, units) block of the flat gradient buffer.
    """
    suffix = _suffix(a_in, delta, grad)
    depth, samples = _matrix_shape(a_in, "a_in")
    _check(a_in, "a_in")
    _check(delta, "delta")
    if delta.shape[1] != samples:
        raise ValueError(f"delta has {delta.shape[1]} samples but a_in has {samples}")
    units = delta.shape[0]
    _check(grad, "grad", (depth, units))
    _check_int32_sizes(a_in=a_in, delta=delta, grad=grad)
    return Launch(f"dense_weight_grad{suffix}", _product_grid(depth, units), (TILE, TILE),
                  (a_in, delta, grad, np.int32(depth), np.int32(units), np.int32(samples)))


def plan_softmax_columns(z) -> Launch:
    """Each column of z (one sample's logits) becomes its softmax probabilities, in place."""
    suffix = _suffix(z)
    rows, cols = _matrix_shape(z, "z")
    _check(z, "z")
    grid = grid_for(cols)
    _check_index_range(z.size, grid, "z")
    return Launch(f"softmax_columns{suffix}", grid, BLOCK, (z, np.int32(rows), np.int32(cols)))


def plan_sgd_update(theta, grad, velocity, lr, inv_m, momentum=0.0, weight_decay=0.0, nesterov=False,
                    lr_scale=None) -> Launch:
    """One SGD step over the flat buffer; ``velocity`` is passed as NULL when momentum is 0.

    ``lr``, ``inv_m``, ``momentum`` and ``weight_decay`` are host numbers (never device
    arrays, whose conversion would synchronize); ``lr_scale`` is an optional
    per-parameter multiplier of the step, shaped like ``theta``.
    """
    suffix = _suffix(theta, grad)
    _check(theta, "theta")
    _check(grad, "grad", theta.shape)
    if momentum:
        if velocity is None:
            raise ValueError("momentum needs a velocity buffer shaped like theta")
        _suffix(theta, velocity)
        _check(velocity, "velocity", theta.shape)
    if nesterov and not momentum:
        raise ValueError("Nesterov momentum needs a momentum above 0")
    if lr_scale is not None:
        _suffix(theta, lr_scale)
        _check(lr_scale, "lr_scale", theta.shape)
    grid = grid_for(theta.size)
    _check_index_range(theta.size, grid, "theta")
    scalar = theta.dtype.type
    return Launch(
        "sgd_update" + suffix,
        grid,
        BLOCK,
        (
            theta,
            grad,
            velocity if momentum else None,
            lr_scale,
            np.int32(theta.size),
            scalar(lr),
            scalar(inv_m),
            scalar(momentum),
            scalar(weight_decay),
            np.int32(bool(nesterov)),
        ),
    )


def plan_adam_update(theta, grad, m, v, step, inv_m, lr, beta1, beta2, eps, weight_decay=0.0,
                     decoupled=False) -> Launch:
    """One Adam/AdamW step over the flat buffer; ``step`` is a 0-d int32 device array (this step's number).

    The hyper-parameters are host numbers, passed in double as PyTorch keeps them.
    """
    suffix = _suffix(theta, grad, m, v)
    _check(theta, "theta")
    for name, array in (("grad", grad), ("m", m), ("v", v)):
        _check(array, name, theta.shape)
    _check(step, "step", (), np.int32)
    grid = grid_for(theta.size)
    _check_index_range(theta.size, grid, "theta")
    return Launch(
        "adam_update" + suffix,
        grid,
        BLOCK,
        (theta, grad, m, v, step, np.int32(theta.size), theta.dtype.type(inv_m), np.float64(lr),
         np.float64(beta1), np.float64(beta2), np.float64(eps), np.float64(weight_decay),
         np.int32(bool(decoupled))),
    )


def plan_gather_batch(src, labels_src, order, step, out, labels_out, batch, first=0) -> Launch:
    """Gather the minibatch that the device-side ``step`` counter points at.

    ``out[:, c] = src[:, order[step * batch + first + c]]`` and the labels likewise, for
    ``c < out.shape[1]``.  ``step`` is a 0-d int32 device array, so a CUDA graph that
    contains this launch gathers a different batch at each replay.
    """
    suffix = _suffix(src, out)
    rows, n_total = _matrix_shape(src, "src")
    _check(src, "src")
    _check(out, "out")
    if out.shape[0] != rows:
        raise ValueError(f"out has {out.shape[0]} rows but src has {rows}")
    cols = out.shape[1]
    _check(labels_src, "labels_src", (n_total,), np.int32)
    _check(order, "order", (n_total,), np.int64)
    _check(step, "step", (), np.int32)
    _check(labels_out, "labels_out", (cols,), np.int32)
    if not (0 <= first and first + cols <= batch):
        raise ValueError(f"columns {first}..{first + cols} do not fit in a batch of {batch}")
    grid = grid_for(out.size)
    _check_index_range(out.size, grid, "out")
    _check_index_range(n_total, 0, "src's samples")
    return Launch(
        "gather_batch" + suffix,
        grid,
        BLOCK,
        (src, labels_src, order, step, out, labels_out, np.int32(rows), np.int32(cols),
         np.int32(n_total), np.int32(batch), np.int32(first)),
    )


def plan_gather_columns(src, order, step, out, batch, first=0) -> Launch:
    """``out[:, c] = src[:, order[step * batch + first + c]]``: :func:`plan_gather_batch` without labels.

    For the float rows a graph-replayed step gathers beside its inputs: a regression
    network's targets and the samples' weights.
    """
    suffix = _suffix(src, out)
    rows, n_total = _matrix_shape(src, "src")
    _check(src, "src")
    _check(out, "out")
    if out.shape[0] != rows:
        raise ValueError(f"out has {out.shape[0]} rows but src has {rows}")
    cols = out.shape[1]
    _check(order, "order", (n_total,), np.int64)
    _check(step, "step", (), np.int32)
    if not (0 <= first and first + cols <= batch):
        raise ValueError(f"columns {first}..{first + cols} do not fit in a batch of {batch}")
    grid = grid_for(out.size)
    _check_index_range(out.size, grid, "out")
    _check_index_range(n_total, 0, "src's samples")
    return Launch("gather_columns" + suffix, grid, BLOCK,
                  (src, order, step, out, np.int32(rows), np.int32(cols), np.int32(n_total), np.int32(batch),
                   np.int32(first)))


def plan_advance_step(step) -> Launch:
    """``step += 1`` on the device (the last launch of a graph-replayed step)."""
    _check(step, "step", (), np.int32)
    return Launch("advance_step", 1, 1, (step,))


class PlannedKernels:
    """The fused operations of :class:`gpunn.compute.ops.NumpyKernels`, as launches of the CUDA kernels.

    Each method plans its launch here; a subclass executes it in :meth:`_run`, on a GPU
    (:class:`gpunn.compute.cuda_kernels.CupyKernels`) or on the CPU
    (:class:`gpunn.compute.host_kernels.HostKernels`), so both run exactly the same launches.
    A subclass also sets ``self._scratch``, the :class:`ReductionScratch` of its
    output-delta launches, when it is made (so never inside a CUDA-graph capture).
    """

    _scratch: ReductionScratch

    def _run(self, launch: Launch) -> None:
        raise TypeError(f"{type(self).__name__} must define _run to execute a kernel launch")

    def bias_act(self, z, b, activation) -> None:
        """z <- act(z + b[:, None]) in place."""
        self._run(plan_bias_act(z, b, activation))

    def act_backward(self, g, a, activation, tmp=None) -> None:
        """g <- g * act'(z) in place, from the saved outputs ``a`` (``tmp``, NumPy's scratch, is not needed)."""
        self._run(plan_act_backward(g, a, activation))

    def softmax_(self, z) -> None:
        """Each column of z (logits) becomes its softmax probabilities, in place."""
        self._run(plan_softmax_columns(z))

    def output_delta(self, a, labels, delta, loss_sum, correct, objective="quadratic", targets=None,
                     weights=None):
        """The output layer's delta, added to the loss sum and correct count (see :func:`plan_output_delta`).

        ``targets`` is read by the float-target objectives only (the label objectives take ``labels``).
        """
        self._run(plan_output_delta(a, labels, delta, loss_sum, correct, self._scratch, objective,
                                    targets if objective in TARGET_OBJECTIVES else None, weights))

    def dense_forward(self, wb, a_in, z, activation) -> None:
        """z <- act([W; b]^T [A_prev; 1]) in one kernel (see :func:`plan_dense_forward`)."""
        self._run(plan_dense_forward(wb, a_in, z, activation))

    def dense_backward(self, w, delta, a_below, delta_below, activation) -> None:
        """delta_below <- (W delta) * act'(a_below) in one kernel (see :func:`plan_dense_backward`)."""
        self._run(plan_dense_backward(w, delta, a_below, delta_below, activation))

    def dense_weight_grad(self, a_in, delta, grad) -> None:
        """grad <- [A_prev; 1] delta^T in one kernel (see :func:`plan_dense_weight_grad`)."""
        self._run(plan_dense_weight_grad(a_in, delta, grad))

    def sgd_update(self, theta, grad, velocity, lr, inv_m, momentum=0.0, weight_decay=0.0, nesterov=False,
                   lr_scale=None):
        """One SGD step over the flat parameter buffer, in place (``grad`` is left unchanged)."""
        self._run(plan_sgd_update(theta, grad, velocity, lr, inv_m, momentum, weight_decay, nesterov, lr_scale))

    def adam_update(self, theta, grad, m, v, step, inv_m, lr, beta1, beta2, eps, weight_decay=0.0,
                    decoupled=False):
        """One Adam/AdamW step over the flat parameter buffer, in place (``grad`` is left unchanged)."""
        self._run(plan_adam_update(theta, grad, m, v, step, inv_m, lr, beta1, beta2, eps, weight_decay,
                                   decoupled))

    def gather_batch(self, src, labels_src, order, step, out, labels_out, batch, first=0):
        """Gather the batch the device counter ``step`` points at (see :func:`plan_gather_batch`)."""
        self._run(plan_gather_batch(src, labels_src, order, step, out, labels_out, batch, first))

    def gather_columns(self, src, order, step, out, batch, first=0):
        """Gather the float rows of the batch the counter ``step`` points at (see :func:`plan_gather_columns`)."""
        self._run(plan_gather_columns(src, order, step, out, batch, first))

    def advance_step(self, step):
        """step += 1 on the device."""
        self._run(plan_advance_step(step))
