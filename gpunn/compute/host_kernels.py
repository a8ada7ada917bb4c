"""The CUDA kernels compiled for the CPU: run the GPU arithmetic where there is no GPU.

:class:`HostKernels` has the methods of :class:`gpunn.compute.ops.NumpyKernels` and works on
NumPy arrays, but every operation runs the kernel source of ``kernels/gpunn_kernels.cu``,
compiled by the host C++ compiler with ``kernels/host_shim.cuh``.  Launches use the
same grid, block and arguments as :class:`gpunn.compute.cuda_kernels.CupyKernels`, planned by
:mod:`gpunn.compute.kernel_source`.  This is the ``emulated`` backend: it exists so that the
kernels' arithmetic can be tested against the NumPy twins on machines without a GPU.
:class:`HostModule` does the same for any CUDA source text with its own kernel names
(the tests use it for kernels of their own).

The shim runs the blocks of a launch one after another (in order, or shuffled:
:func:`shuffle_blocks`) and the threads of a block as fibers that switch at
``__syncthreads()``, with one poisoned copy of the ``__shared__`` variables per block;
1-, 2- and 3-D grids and blocks.  A block whose threads do not all reach the same
barriers fails the launch with :class:`KernelLaunchError`.

Limits: slow (one C function call per emulated thread, a fiber switch per thread and
barrier); fibers switch only at barriers, in thread order, so races within a barrier
interval cannot show; no warp-level intrinsics and no dynamic shared memory; launches
of one library run one at a time; float32 subnormals are kept, where the GPU flushes
them to zero; the host compiler does not contract ``a*b + c`` into an FMA, where the
GPU may.  ``host_shim.cuh`` says more.

The compiler is ``$CXX`` or ``g++``, with ``-O2 -std=c++17 -ffp-contract=off`` and no
fast-math.  The shared library is cached under ``$XDG_CACHE_HOME/gpunn`` (else
``~/.cache/gpunn``, else the temporary folder), named by a hash of the sources, the
compiler, its version, the machine type and the flags, so it is built once per change of
any of them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gpunn.compute import kernel_source as ks

CXX_FLAGS = (
    "-O2", "-std=c++17", "-ffp-contract=off", "-fvisibility=hidden", "-pthread", "-shared", "-fPIC",
)

_LIBRARIES: dict[Path, ctypes.CDLL] = {}
_BUILD_LOCK = threading.Lock()


class KernelLaunchError(RuntimeError):
    """The host shim refused or aborted a launch (bad dimensions, barrier divergence)."""


def _compiler() -> str:
    """Path of the host C++ compiler, or CompilerUnavailable saying how to get one."""
    name = os.environ.get("CXX") or "g++"
    path = shutil.which(name)
    if path is None:
        raise ks.CompilerUnavailable(
            f"the host C++ compiler {name!r} was not found; install g++ "
            "(e.g. `apt-get install g++`) or set CXX, or use --backend numpy"
        )
    return path


@functools.cache
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


def host_code(
    code: str | None = None, kernel_names: Iterable[str] | None = None, defines: Iterable[str] = ()
) -> str:
    """The C++ translation unit: macros, shim, kernel source and one export per kernel.

    ``code`` defaults to gpunn's kernels and ``kernel_names`` to theirs
    (:data:`~gpunn.compute.kernel_source.KERNEL_NAMES`); each of ``defines`` is defined to 1
    before the shim.
    """
    names = ks.KERNEL_NAMES if kernel_names is None else kernel_names
    macros = "".join(f"#define {macro} 1\n" for macro in defines)
    exports = "\n".join(f"GPUNN_HOST_EXPORT({name})" for name in names)
    return (
        f'{macros}#line 1 "{ks.HOST_SHIM_FILE}"\n{ks.read_source(ks.HOST_SHIM_FILE)}\n'
        f"{ks.kernel_code() if code is None else code}\n"
        f'#line 1 "<host exports>"\n{exports}\n'
    )


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpunn"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"gpunn-{os.getuid()}"
    fallback.mkdir(exist_ok=True)
    return fallback


def build_host_library(
    code: str | None = None, kernel_names: Iterable[str] | None = None, defines: Iterable[str] = ()
) -> Path:
    """Compile the kernels (or ``code``) into a shared library for this CPU; return its path.

    The arguments are those of :func:`host_code`.  Reuses a cached build of the same
    text, compiler and flags.  Raises :class:`~gpunn.compute.kernel_source.CompilerUnavailable`
    when there is no compiler and :class:`~gpunn.compute.kernel_source.KernelCompileError`, with
    the compiler's messages, when the source does not compile.
    """
    return compile_cached(host_code(code, kernel_names, defines), CXX_FLAGS, "host_kernels")


def compile_cached(source: str, flags: tuple[str, ...], stem: str) -> Path:
    """Compile the C++ translation unit ``source`` with ``flags`` into a cached shared library.

    The library is ``<cache>/<stem>-<hash>.so``, the hash taken over the text, the
    compiler, its version, the machine type and the flags, so it is built once per
    change of any of them.  Errors as :func:`build_host_library`.
    """
    cxx = _compiler()
    key = "\0".join([source, cxx, _compiler_version(cxx), platform.machine(), *flags])
    digest = hashlib.sha256(key.encode()).hexdigest()
    target = _cache_dir() / f"{stem}-{digest[:24]}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        cpp = Path(work) / f"{stem}.cpp"
        cpp.write_text(source, encoding="utf-8")
        built = Path(work) / target.name
        result = subprocess.run(
            [cxx, *flags, str(cpp), "-o", str(built)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ks.KernelCompileError(
                f"{Path(cxx).name} failed to compile {stem} for the host "
                f"(exit {result.returncode}):\n{result.stderr}"
            )
        os.replace(built, target)  # atomic: a concurrent build of the same text is harmless
    return target


def load_library(path: Path) -> ctypes.CDLL:
    """The library at ``path``, loaded once per process."""
    with _BUILD_LOCK:
        library = _LIBRARIES.get(path)
        if library is None:
            library = _LIBRARIES[path] = ctypes.CDLL(str(path))
        return library


@functools.lru_cache(maxsize=256)
def _c_dims(extent: int | tuple[int, ...]):
    """``extent`` as the shim's ``unsigned[3]`` (shared: the shim only reads it)."""
    return (ctypes.c_uint * 3)(*ks.dim3(extent))


class _ErrorBuffer(threading.local):
    """Room for the message of a refused launch, one per Python thread."""

    def __init__(self):
        self.buffer = ctypes.create_string_buffer(512)


_ERROR = _ErrorBuffer()


class _HostKernel:
    """One exported kernel of a host library, callable with a :class:`~gpunn.compute.kernel_source.Launch`."""

    def __init__(self, library: ctypes.CDLL, name: str):
        self.name = name
        self._launch = getattr(library, f"launch_{name}")
        self._launch.argtypes = (
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        )
        self._launch.restype = ctypes.c_int
        arg_sizes = getattr(library, f"arg_sizes_{name}")
        arg_sizes.argtypes = (ctypes.POINTER(ctypes.c_size_t), ctypes.c_int)
        arg_sizes.restype = ctypes.c_int
        capacity = 16
        sizes = (ctypes.c_size_t * capacity)()
        count = arg_sizes(sizes, capacity)
        self.param_sizes = tuple(sizes[:count])

    def __call__(self, launch: ks.Launch) -> None:
        if len(launch.args) != len(self.param_sizes):
            raise TypeError(
                f"{self.name} takes {len(self.param_sizes)} arguments, got {len(launch.args)}"
            )
        # Each argument's value lives in a ctypes object; args[i] points at it.
        values = [_argument_value(arg) for arg in launch.args]
        for i, (value, size) in enumerate(zip(values, self.param_sizes)):
            if ctypes.sizeof(value) != size:
                raise TypeError(
                    f"{self.name} argument {i}: {ctypes.sizeof(value)} bytes given, "
                    f"the kernel's parameter has {size} (wrong scalar type?)"
                )
        args = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        error = _ERROR.buffer
        if self._launch(_c_dims(launch.grid), _c_dims(launch.block), args, error, len(error)) != 0:
            raise KernelLaunchError(f"{self.name}: {error.value.decode(errors='replace')}")


def _argument_value(arg):
    """A ctypes object holding a kernel argument's value: a pointer for arrays and None."""
    if arg is None:
        return ctypes.c_void_p(None)
    if isinstance(arg, np.ndarray):
        return ctypes.c_void_p(arg.ctypes.data)
    if isinstance(arg, np.generic):
        return ctypes.create_string_buffer(arg.tobytes(), arg.itemsize)
    raise TypeError(
        f"host kernels take NumPy arrays and NumPy scalars, not {type(arg).__name__}"
    )


class HostModule:
    """CUDA source text compiled for the CPU; runs launches of its ``kernel_names``.


    ``code`` is CUDA C++ whose kernels ``kernel_names`` are ``extern "C" __global__``
    functions, the same text NVRTC compiles (:func:`~gpunn.compute.kernel_source.compile_for_arch`);
    ``defines`` are macros set to 1 before the shim (the tests build shim mutants with
    them).  Built and cached by :func:`build_host_library`, loaded once per process.
    """

    def __init__(self, code: str, kernel_names: Iterable[str], defines: Iterable[str] = ()):
        names = tuple(kernel_names)
        library = load_library(build_host_library(code, names, tuple(defines)))
        self._kernels = {name: _HostKernel(library, name) for name in names}
        self._shuffle = library.gpunn_host_shuffle_blocks
        self._shuffle.argtypes = (ctypes.c_ulonglong,)
        self._shuffle.restype = None

    def run(self, launch: ks.Launch) -> None:
        """Execute ``launch`` on NumPy arrays; KernelLaunchError if the shim refuses or aborts it."""
        self._kernels[launch.name](launch)

    def shuffle_blocks(self, seed: int) -> None:
        """Run the blocks of every later launch in a pseudo-random order drawn from ``seed``; 0: in order.

        Applies to this module's library (shared by every HostModule of the same
        source) until changed.  A GPU runs blocks in no promised order; a kernel whose
        result depends on the order gives different results under different seeds.
        """
        self._shuffle(int(seed))


class HostKernels(ks.PlannedKernels):
    """The fused operations of :class:`gpunn.compute.ops.NumpyKernels`, run by the CUDA kernel sources on the CPU."""

    def __init__(self):
        self._module = HostModule(ks.kernel_code(), ks.KERNEL_NAMES)
        self._scratch = ks.ReductionScratch.zeros(np)

    def _run(self, launch: ks.Launch) -> None:
        self._module.run(launch)

    def shuffle_blocks(self, seed: int) -> None:
        """Run the blocks of later launches in an order drawn from ``seed`` (0: in order); see HostModule."""
        self._module.shuffle_blocks(seed)
