"""The optimizer updates in one pass over memory on the CPU: compiled loops for the NumPy backend.

:meth:`gpunn.compute.ops.NumpyKernels.adam_update` is about ten NumPy calls, each a
pass over the flat parameter buffer (and the moment buffers): at 200,000 parameters
that was 40% of a relu/softmax/Adam step.  :class:`CpuUpdates` has the same two
methods, ``sgd_update`` and ``adam_update``, with the same arguments and meaning, but
each runs one loop (``kernels/host_updates.cpp``) that reads every parameter, gradient
and moment once and writes each once.  The loop's arithmetic is the CUDA kernels'
(``gpunn_math.cuh``), which does the twins' operations in the twins' order, so both
paths agree to float rounding (they are tested as twins, both dtypes).  One meant
difference: on x86 the float32 loops flush subnormals to zero, as the GPU kernels do
(an always-zero gradient drives Adam's m into the subnormals, where every operation
is slow; ``host_updates.cpp`` says more); a flushed value is off by less than 1.2e-38.

The loops are compiled by the host C++ compiler (``$CXX`` or ``g++``, as the
``emulated`` backend is; cached, see :func:`gpunn.compute.host_kernels.compile_cached`)
the first time an optimizer asks for them.  Where there is no compiler, or it fails,
or ``GPUNN_CPU_UPDATES=numpy``, :func:`cpu_updates` answers None and the optimizers
keep the NumPy twins: same results, slower.

The loops are bound by division and sqrt, so they are built for the widest vectors
this CPU has (AVX-512, AVX2 or the baseline: ``host_updates.cpp`` says how).  Why this
path, measured on the project's 2-core AMD EPYC (Zen 5), Adam over 203,530 float32
parameters, one thread, medians of 300 calls:

* the NumPy twin (ten ufunc passes): 250-290 us;
* the same in 64K-element chunks, to stay in L2: 243 us, not measurably faster (8K-16K: slower);
* numexpr 2.14, four ``evaluate`` calls: over 1 ms;
* Numba 0.68 (``error_model="numpy"``): 45 us, after a 4 s JIT compile in every process;
* these loops: 42 us with AVX-512, 72 us with AVX2, 140 us with SSE2 (g++ at run time,
  each build made once and cached).

So no new dependency: without a compiler the NumPy twins remain, and no chunked variant
of them.  SGD with Nesterov momentum and weight decay: 27 us.

Limits: one thread, never more than the BLAS pool has.  Two OpenMP threads took the
Adam loop from 42 to 25 us, but libgomp's workers spin after the loop and would compete
with OpenBLAS's for the next product on a 2-core machine, for at most ~4 % of an E step;
two Python threads (ctypes releases the GIL) took 200 us against 145 us on one.
"""

from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

from gpunn.compute import kernel_source as ks
from gpunn.compute.host_kernels import compile_cached, load_library

SOURCE_FILE = "host_updates.cpp"
#: -O3 vectorises the loops; -ffp-contract=off keeps a*b + c two roundings, as the twins
#: round it; -fno-math-errno lets sqrt vectorise (it changes no value).  Never fast-math.
FLAGS = ("-O3", "-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-fvisibility=hidden", "-shared",
         "-fPIC")
#: ``GPUNN_CPU_UPDATES``: ``auto`` (default: compiled when a compiler is there), ``compiled``
#: (an error when it cannot be built), ``numpy`` (always the NumPy twins).
MODES = ("auto", "compiled", "numpy")

_C_TYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}
_SUFFIX = {np.dtype(np.float32): "_f32", np.dtype(np.float64): "_f64"}


class CpuUpdates:
    """The single-pass SGD and Adam/AdamW updates, twins of :class:`~gpunn.compute.ops.NumpyKernels`'.

    ``sgd_update`` and ``adam_update`` take the twins' arguments.  A trainer that updates
    the same buffers at every step binds them once instead (:meth:`bind_sgd`,
    :meth:`bind_adam`): the checks and the buffers' addresses are worked out then, and
    each step is one foreign call of a few microseconds.
    """

    def __init__(self, library: ctypes.CDLL, isa_level: int):
        #: the x86-64 level the loops were built for: 4 (AVX-512), 3 (AVX2), 1 (baseline or not x86)
        self.isa_level = isa_level
        self._sgd, self._adam = {}, {}
        for dtype, suffix in _SUFFIX.items():
            real, pointer = _C_TYPES[dtype], ctypes.c_void_p
            sgd = getattr(library, f"gpunn_sgd_update{suffix}")
            sgd.argtypes = (pointer,) * 4 + (ctypes.c_long, real, real, real, ctypes.c_int, real)
            sgd.restype = None
            adam = getattr(library, f"gpunn_adam_update{suffix}")
            adam.argtypes = (pointer,) * 4 + (ctypes.c_long, pointer) + (ctypes.c_double,) * 5 + (ctypes.c_int, real)
            adam.restype = None
            self._sgd[dtype], self._adam[dtype] = sgd, adam

    def sgd_update(self, theta, grad, velocity, lr, inv_m, momentum=0.0, weight_decay=0.0, nesterov=False,
                   lr_scale=None) -> None:
        """:meth:`NumpyKernels.sgd_update <gpunn.compute.ops.NumpyKernels.sgd_update>` in one pass.

        ``grad`` is left as it was (the twin uses it as scratch; callers may rely on neither).
        """
        self.bind_sgd(theta, grad, velocity, lr, momentum, weight_decay, nesterov, lr_scale)(inv_m)

    def adam_update(self, theta, grad, m, v, step, inv_m, lr, beta1, beta2, eps, weight_decay=0.0,
                    decoupled=False) -> None:
        """:meth:`NumpyKernels.adam_update <gpunn.compute.ops.NumpyKernels.adam_update>` in one pass.

        ``step`` is the 0-d int32 array holding this step's number (already advanced).
        """
        self.bind_adam(theta, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled)(inv_m)

    def bind_sgd(self, theta, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
                 lr_scale=None) -> "BoundUpdate":
        """The SGD update of these buffers with these settings, as a call that takes ``inv_m``."""
        _check(theta, grad, velocity, lr_scale)
        if momentum and velocity is None:
            raise TypeError("SGD with momentum needs its velocity buffer")
        call = functools.partial(self._sgd[theta.dtype], theta.ctypes.data, grad.ctypes.data, _address(velocity),
                                 _address(lr_scale), theta.size, lr, momentum, weight_decay, int(bool(nesterov)))
        return BoundUpdate(call, (theta, grad, velocity, lr_scale))

    def bind_adam(self, theta, grad, m, v, step, lr, beta1, beta2, eps, weight_decay=0.0,
                  decoupled=False) -> "BoundUpdate":
        """The Adam/AdamW update of these buffers, as a call that takes ``inv_m``.

        The loop reads the step number from ``step`` (a 0-d int32 array) at each call, as
        the kernel does, so the bound call stays right as the trainer advances it.
        """
        _check(theta, grad, m, v)
        if not (isinstance(step, np.ndarray) and step.shape == () and step.dtype == np.int32):
            raise TypeError(f"the step counter must be a 0-d int32 NumPy array, got {step!r}")
        call = functools.partial(self._adam[theta.dtype], theta.ctypes.data, grad.ctypes.data, m.ctypes.data,
                                 v.ctypes.data, theta.size, step.ctypes.data, lr, beta1, beta2, eps, weight_decay,
                                 int(bool(decoupled)))
        return BoundUpdate(call, (theta, grad, m, v, step))


class BoundUpdate:
    """One optimizer's update of fixed buffers: ``bound(inv_m)`` runs it.

    Holds the buffers, so that their memory lives as long as the addresses the call was given.
    """

    __slots__ = ("_call", "_buffers")

    def __init__(self, call, buffers):
        self._call, self._buffers = call, buffers

    def __call__(self, inv_m: float) -> None:
        self._call(inv_m)


def _address(array) -> int | None:
    return None if array is None else array.ctypes.data


def _check(theta, *others) -> None:
    """The loops index flat, C-contiguous buffers of one float dtype and one length: anything else is a bug."""
    for array in (theta, *others):
        if array is None:
            continue
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable
                and array.dtype == theta.dtype and array.size == theta.size and array.dtype in _SUFFIX):
            raise TypeError("the compiled updates take writable, C-contiguous float32 or float64 NumPy buffers "
                            f"of one dtype and length, got {type(array).__name__} {getattr(array, 'dtype', '')} "
                            f"{getattr(array, 'shape', '')}")


def mode() -> str:
    """``$GPUNN_CPU_UPDATES`` (default ``auto``); ValueError naming the choices for anything else."""
    value = os.environ.get("GPUNN_CPU_UPDATES", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"GPUNN_CPU_UPDATES={value!r} is not one of {', '.join(MODES)}")
    return value


#: ``-march`` for each x86-64 level the loops are built for (see ``host_updates.cpp``); 1 is the baseline.
LEVEL_FLAGS = {1: (), 3: ("-march=x86-64-v3",), 4: ("-march=x86-64-v4",)}


def build(level: int | None = None) -> CpuUpdates:
    """The loops built (or loaded from the cache) for x86-64 ``level`` (1, 3 or 4), or for this CPU.

    ``None``: build the baseline, ask it this CPU's level, and build for the highest level
    up to that one that the compiler accepts (GCC before 11 knows no ``-march=x86-64-v3``:
    the baseline then).  Errors as :func:`gpunn.compute.host_kernels.compile_cached`.
    """
    source = ks.inline_includes(SOURCE_FILE, ("gpunn_math.cuh",))
    if level is not None:
        return CpuUpdates(load_library(compile_cached(source, FLAGS + LEVEL_FLAGS[level], "host_updates")), level)
    baseline = load_library(compile_cached(source, FLAGS, "host_updates"))
    supported = baseline.gpunn_host_isa_level()
    for candidate in sorted((known for known in LEVEL_FLAGS if 1 < known <= supported), reverse=True):
        try:
            return build(candidate)
        except ks.KernelCompileError:
            continue
    return CpuUpdates(baseline, 1)


#: The build for this CPU, made once per process.
_best = functools.cache(build)


def cpu_updates() -> CpuUpdates | None:
    """The compiled updates when ``GPUNN_CPU_UPDATES`` allows them and they build, else None.

    Built (or loaded from the cache) on the first call of the process.  In ``auto`` mode a
    missing compiler or a failed build means None (the NumPy twins); in ``compiled`` mode
    it raises :class:`~gpunn.compute.kernel_source.CompilerUnavailable` or
    :class:`~gpunn.compute.kernel_source.KernelCompileError`.
    """
    wanted = mode()
    if wanted == "numpy":
        return None
    try:
        return _best()
    except (ks.CompilerUnavailable, ks.KernelCompileError, OSError):
        if wanted == "compiled":
            raise
        return None
