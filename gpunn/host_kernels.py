"""The CUDA kernels compiled for the CPU: run the GPU arithmetic where there is no GPU.

:class:`HostKernels` has the methods of :class:`gpunn.ops.NumpyKernels` and works on
NumPy arrays, but every operation runs the kernel source of ``kernels/gpunn_kernels.cu``,
compiled by the host C++ compiler with ``kernels/host_shim.cuh`` (which defines the CUDA
qualifiers away and runs each block and thread of a launch in turn).  Launches use the
same grid, block and arguments as :class:`gpunn.cuda_kernels.CupyKernels`, planned by
:mod:`gpunn.kernel_source`.  This is the ``emulated`` backend: it exists so that the
kernels' arithmetic can be tested against the NumPy twins on machines without a GPU.

Limits: slow (one C function call per emulated thread); threads run one after another,
so races cannot show; float32 subnormals are kept, where the GPU flushes them to zero;
the host compiler does not contract ``a*b + c`` into an FMA, where the GPU may.

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
from pathlib import Path

import numpy as np

from . import kernel_source as ks

CXX_FLAGS = ("-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC")

_LIBRARIES: dict[Path, ctypes.CDLL] = {}
_BUILD_LOCK = threading.Lock()


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


def host_code(code: str | None = None) -> str:
    """The C++ translation unit: shim, kernel source (or ``code``) and one export per kernel."""
    exports = "\n".join(f"GPUNN_HOST_EXPORT({name})" for name in ks.KERNEL_NAMES)
    return (
        f'#line 1 "{ks.HOST_SHIM_FILE}"\n{ks.read_source(ks.HOST_SHIM_FILE)}\n'
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


def build_host_library(code: str | None = None) -> Path:
    """Compile the kernels (or ``code``) into a shared library for this CPU; return its path.

    Reuses a cached build of the same text, compiler and flags.  Raises
    :class:`~gpunn.kernel_source.CompilerUnavailable` when there is no compiler and
    :class:`~gpunn.kernel_source.KernelCompileError`, with the compiler's messages, when
    the source does not compile.
    """
    cxx = _compiler()
    source = host_code(code)
    key = "\0".join([source, cxx, _compiler_version(cxx), platform.machine(), *CXX_FLAGS])
    digest = hashlib.sha256(key.encode()).hexdigest()
    target = _cache_dir() / f"host_kernels-{digest[:24]}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        cpp = Path(work) / "host_kernels.cpp"
        cpp.write_text(source, encoding="utf-8")
        built = Path(work) / target.name
        result = subprocess.run(
            [cxx, *CXX_FLAGS, str(cpp), "-o", str(built)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ks.KernelCompileError(
                f"{Path(cxx).name} failed to compile the kernels for the host "
                f"(exit {result.returncode}):\n{result.stderr}"
            )
        os.replace(built, target)  # atomic: a concurrent build of the same text is harmless
    return target


def _library() -> ctypes.CDLL:
    """The host build of the current sources, compiled (or found in the cache) and loaded once."""
    with _BUILD_LOCK:
        path = build_host_library()
        library = _LIBRARIES.get(path)
        if library is None:
            library = _LIBRARIES[path] = ctypes.CDLL(str(path))
        return library


class _HostKernel:
    """One exported kernel of the host library, callable with a :class:`~gpunn.kernel_source.Launch`."""

    def __init__(self, library: ctypes.CDLL, name: str):
        self.name = name
        self._launch = getattr(library, f"launch_{name}")
        self._launch.argtypes = (ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p))
        self._launch.restype = None
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
        self._launch(launch.grid, launch.block, args)


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


class HostKernels(ks.PlannedKernels):
    """The fused operations of :class:`gpunn.ops.NumpyKernels`, run by the CUDA kernel sources on the CPU."""

    def __init__(self):
        library = _library()
        self._kernels = {name: _HostKernel(library, name) for name in ks.KERNEL_NAMES}

    def _run(self, launch: ks.Launch) -> None:
        self._kernels[launch.name](launch)
