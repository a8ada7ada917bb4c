"""The fused operations on a GPU: gpunn's CUDA kernels, built by CuPy and launched on CuPy arrays.

:class:`CupyKernels` has the methods of :class:`gpunn.compute.ops.NumpyKernels`.  The kernel source
(:func:`gpunn.compute.kernel_source.kernel_code`) is compiled once per device by ``cupy.RawModule``
(CuPy also caches the binary on disk) and its functions are looked up once; the
launches are planned by :mod:`gpunn.compute.kernel_source`, exactly as for the host emulation.

Every launch goes to the current stream of the kernels' device and nothing here waits
for the GPU or reads device memory, so a training step made of these calls can be
captured in a CUDA graph.  Scalars (learning rate, ...) must be host numbers.

Only :mod:`gpunn.compute.backend` imports this module, when a CuPy backend is chosen.
"""

from __future__ import annotations

import cupy

from gpunn.compute import kernel_source as ks

#: device id -> {kernel name: cupy RawKernel}; one compiled module per device.
_MODULES: dict[int, dict[str, object]] = {}


def _kernel_functions(device_id: int) -> dict[str, object]:
    functions = _MODULES.get(device_id)
    if functions is None:
        with cupy.cuda.Device(device_id):
            try:
                module = cupy.RawModule(code=ks.kernel_code(), options=ks.RAWMODULE_OPTIONS)
                functions = {name: module.get_function(name) for name in ks.KERNEL_NAMES}
            except RuntimeError as exc:
                if ks.is_missing_headers(exc):  # no cuda_runtime.h: say what to install
                    raise ks.missing_headers_error(exc) from None
                raise
        _MODULES[device_id] = functions
    return functions


class CupyKernels(ks.PlannedKernels):
    """The fused operations of :class:`gpunn.compute.ops.NumpyKernels` on CuPy arrays of one device.

    Launches of one instance share the output delta's reduction scratch, so they must
    run on one stream at a time (as a training run does).
    """

    def __init__(self, device_id: int = 0):
        self.device_id = device_id
        # cupy.RawModule.get_function compiles and loads the module, and looks the
        # kernel up (CuPy 14.2, cupy/_core/raw.pyx, RawModule.get_function:
        # ``func = ker.kernel``), so after this no launch compiles or loads anything
        # and the launches can be captured in a CUDA graph without a warm-up.
        self._functions = _kernel_functions(device_id)
        with cupy.cuda.Device(device_id):
            self._scratch = ks.ReductionScratch.zeros(cupy)

    def _run(self, launch: ks.Launch) -> None:
        with cupy.cuda.Device(self.device_id):
            self._functions[launch.name](ks.dim3(launch.grid), ks.dim3(launch.block), launch.args)
